//! Checks of who gets through to whom: `ping`, `pingall`, `tcp` and `broadcast`.

use std::collections::BTreeSet;

use crate::model::{
    BroadcastSpec, Location, Matrix, PingSpec, PingallSpec, Reach, TcpSpec, TcpState,
};

use super::{count, need_node, seconds, server_node, tcp_port, CheckKind, Pair, Resolved};
use crate::plan::errors::Cx;
use crate::plan::{resolve_addr, Nodes, Plan};

/// `ping`: from a node to an address, reachable or not.
pub(super) fn ping(cx: &mut Cx<'_>, p: &PingSpec, nodes: &Nodes, plan: &Plan) -> Resolved {
    let from = need_node(cx, &p.from, nodes);
    let to = resolve_addr(cx, &p.to, plan);
    let count = count(cx, &p.count, 3);
    let reachable = p.expect.unwrap_or(Reach::Reachable) == Reach::Reachable;
    let (from, (to, _)) = (from?, to?);
    Some((
        p.name.clone().unwrap_or_else(|| {
            format!(
                "ping {from} -> {}{}",
                p.to.value,
                if reachable { "" } else { " (unreachable)" }
            )
        }),
        CheckKind::Ping {
            from,
            to,
            count,
            reachable,
        },
    ))
}

/// `pingall`: every ordered pair of a group of hosts, with the pairs expected to answer.
pub(super) fn pingall(cx: &mut Cx<'_>, p: &PingallSpec, at: &Location, plan: &Plan) -> Resolved {
    let count = count(cx, &p.count, 1);
    let group: Vec<String> = match &p.hosts {
        Some(list) => {
            let mut g = Vec::new();
            for h in list {
                match plan.host(&h.value) {
                    None => cx.err(&h.referenced, format!("unknown host `{}`", h.value)),
                    Some(host)
                        if host.attach.is_none()
                            && host.ifaces.iter().all(|i| i.addr.is_none()) =>
                    {
                        cx.err(
                            &h.referenced,
                            format!("host {} has no address to ping", h.value),
                        )
                    }
                    Some(_) if g.contains(&h.value) => {
                        cx.err(&h.referenced, format!("host {} is listed twice", h.value))
                    }
                    Some(_) => g.push(h.value.clone()),
                }
            }
            g
        }
        None => plan
            .hosts
            .iter()
            .filter(|h| h.attach.is_some() || h.ifaces.iter().any(|i| i.addr.is_some()))
            .map(|h| h.name.clone())
            .collect(),
    };
    if group.len() < 2 {
        cx.err(at, "pingall needs at least two hosts with an address");
    }
    let mut reach: BTreeSet<(String, String)> = BTreeSet::new();
    let mut word = "all".to_string();
    match p.expect.as_ref().map(|e| (&e.value, e.referenced)) {
        None => add_all(&mut reach, &group),
        Some((Matrix::Word(w), at)) => match w.as_str() {
            "all" => add_all(&mut reach, &group),
            "none" => word = "none".into(),
            other => cx.err(
                &at,
                format!("expect {other:?}: use `all`, `none` or a map FROM: [TO, …]"),
            ),
        },
        Some((Matrix::Map(m), at)) => {
            word = "matrix".into();
            for (from, tos) in m {
                if !group.contains(from) {
                    cx.err(&at, format!("`{from}` in expect is not in the group"));
                }
                for t in tos {
                    if !group.contains(&t.value) {
                        cx.err(
                            &t.referenced,
                            format!("`{}` in expect is not in the group", t.value),
                        );
                    } else if &t.value == from {
                        cx.err(&t.referenced, format!("{from} -> {from} is not a pair"));
                    } else {
                        reach.insert((from.clone(), t.value.clone()));
                    }
                }
            }
        }
    }
    let mut pairs = Vec::new();
    for a in &group {
        for b in &group {
            if a == b {
                continue;
            }
            let ip = plan.placeholder(b).or_else(|| {
                plan.host(b)
                    .and_then(|h| h.ifaces.iter().find_map(|i| i.addr))
                    .map(|c| c.ip)
            })?;
            pairs.push(Pair {
                from: a.clone(),
                to: b.clone(),
                ip,
                reachable: reach.contains(&(a.clone(), b.clone())),
            });
        }
    }
    Some((
        p.name
            .clone()
            .unwrap_or_else(|| format!("pingall {} (expect {word})", group.join(" "))),
        CheckKind::Pingall { pairs, count },
    ))
}

fn add_all(reach: &mut BTreeSet<(String, String)>, group: &[String]) {
    for a in group {
        for b in group {
            if a != b {
                reach.insert((a.clone(), b.clone()));
            }
        }
    }
}

/// `tcp`: a connection attempt and the state it must find (open, refused, filtered).
pub(super) fn tcp(cx: &mut Cx<'_>, t: &TcpSpec, nodes: &Nodes, plan: &Plan) -> Resolved {
    let from = need_node(cx, &t.from, nodes);
    let to = resolve_addr(cx, &t.to, plan);
    let port = tcp_port(cx, &t.port);
    let expect = t.expect.unwrap_or(TcpState::Open);
    let listen = t.listen.unwrap_or(expect != TcpState::Refused);
    let server_port = t
        .server_port
        .as_ref()
        .map(|p| tcp_port(cx, p))
        .unwrap_or(port);
    let timeout = seconds(cx, &t.timeout, 2.0, 30.0);
    let (to, owner) = to?;
    let listener = if listen {
        Some((
            server_node(cx, &t.server, owner, &t.to, nodes)?,
            server_port,
        ))
    } else {
        None
    };
    let from = from?;
    Some((
        t.name.clone().unwrap_or_else(|| {
            format!("tcp {from} -> {}:{port} ({})", t.to.value, expect.as_str())
        }),
        CheckKind::Tcp {
            from,
            to,
            port,
            listener,
            expect,
            timeout,
        },
    ))
}

/// `broadcast`: datagrams to a subnet's broadcast address and the hosts that must get them.
pub(super) fn broadcast(cx: &mut Cx<'_>, b: &BroadcastSpec, plan: &Plan) -> Resolved {
    let count = count(cx, &b.count, 3);
    let port = b.port.as_ref().map(|p| tcp_port(cx, p)).unwrap_or(9999);
    let (h, i) = match b.from.value.split_once(':') {
        Some((h, i)) => (h, Some(i)),
        None => (b.from.value.as_str(), None),
    };
    let Some(host) = plan.host(h) else {
        return cx.fail(
            &b.from.referenced,
            format!("`{}` is neither a host nor HOST:IFACE", b.from.value),
        );
    };
    let subnet = match i {
        Some(i) => host
            .ifaces
            .iter()
            .find(|x| x.name == i)
            .and_then(|x| x.addr),
        None => host.ifaces.iter().find_map(|x| x.addr),
    };
    let Some(subnet) = subnet else {
        return cx.fail(
            &b.from.referenced,
            format!("`{}` has no IPv4 address to send from", b.from.value),
        );
    };
    if subnet.prefix > 30 {
        return cx.fail(
            &b.from.referenced,
            format!("{subnet} has no broadcast address (prefix longer than /30)"),
        );
    }
    let bcast = subnet.broadcast();
    let accepts = |name: &str| {
        plan.host(name).is_some_and(|x| {
            x.ifaces
                .iter()
                .filter_map(|i| i.addr)
                .any(|c| c.broadcast() == bcast && c.prefix == subnet.prefix)
        })
    };
    let to: Vec<String> = match &b.to {
        Some(list) => {
            let mut v: Vec<String> = Vec::new();
            for t in list {
                if plan.host(&t.value).is_none() {
                    cx.err(&t.referenced, format!("unknown host `{}`", t.value));
                } else if t.value == h {
                    cx.err(&t.referenced, format!("`{}` is the sender", t.value));
                } else if !accepts(&t.value) {
                    cx.err(
                        &t.referenced,
                        format!(
                            "host {} has no address in {}/{}, so it would not accept broadcasts to {bcast}",
                            t.value,
                            subnet.network(),
                            subnet.prefix
                        ),
                    );
                } else if v.contains(&t.value) {
                    cx.err(&t.referenced, format!("host {} is listed twice", t.value));
                } else {
                    v.push(t.value.clone());
                }
            }
            v
        }
        None => {
            let v: Vec<String> = plan
                .hosts
                .iter()
                .filter(|x| x.name != h && accepts(&x.name))
                .map(|x| x.name.clone())
                .collect();
            if v.is_empty() {
                cx.err(
                    &b.from.referenced,
                    format!(
                        "no other host has an address in {}/{} to receive broadcasts",
                        subnet.network(),
                        subnet.prefix
                    ),
                );
            }
            v
        }
    };
    Some((
        b.name.clone().unwrap_or_else(|| {
            format!(
                "broadcast {h} -> {bcast}:{port} x{count} reaches {}",
                to.join(", ")
            )
        }),
        CheckKind::Broadcast {
            from: h.to_string(),
            subnet,
            port,
            count,
            to,
        },
    ))
}
