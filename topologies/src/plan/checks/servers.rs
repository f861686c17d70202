//! Checks that start a server and send traffic to it: `iperf` and `http`.

use crate::model::{HttpSpec, IperfSpec, Proto};

use super::{need_node, server_node, tcp_port, CheckKind, Resolved};
use crate::plan::errors::Cx;
use crate::plan::{resolve_addr, Nodes, Plan};

/// `iperf`: a throughput run against a server the check starts; `idx` spreads the
/// default ports so checks never share one.
pub(super) fn iperf(
    cx: &mut Cx<'_>,
    i: &IperfSpec,
    idx: usize,
    nodes: &Nodes,
    plan: &Plan,
) -> Resolved {
    let from = need_node(cx, &i.from, nodes);
    let to = resolve_addr(cx, &i.to, plan);
    let udp = i.protocol == Some(Proto::Udp);
    let seconds = match &i.seconds {
        Some(s) if !(1..=60).contains(&s.value) => {
            cx.err(
                &s.referenced,
                format!("seconds {} is outside 1..=60", s.value),
            );
            2
        }
        Some(s) => s.value,
        None => 2,
    };
    let min_gbps = match &i.min_gbps {
        Some(m) if !(m.value >= 0.0 && m.value.is_finite()) => {
            cx.err(&m.referenced, "min_gbps must be a number >= 0");
            0.0
        }
        Some(m) => m.value,
        None => 0.0,
    };
    let rate = match &i.rate {
        Some(r) => {
            let ok = r
                .value
                .strip_suffix(['K', 'M', 'G', 'k', 'm', 'g'])
                .unwrap_or(&r.value)
                .parse::<f64>()
                .is_ok_and(|x| x > 0.0);
            if !ok {
                cx.err(
                    &r.referenced,
                    format!("rate {:?} is not like 500M or 1G", r.value),
                );
            }
            if !udp {
                cx.err(&r.referenced, "`rate` applies to `protocol: udp` only");
            }
            r.value.clone()
        }
        None => "500M".into(),
    };
    let max_loss = i.max_loss.as_ref().map(|m| {
        if !(0.0..=100.0).contains(&m.value) {
            cx.err(
                &m.referenced,
                format!("max_loss {} is outside 0..=100 (%)", m.value),
            );
        }
        if !udp {
            cx.err(&m.referenced, "`max_loss` applies to `protocol: udp` only");
        }
        m.value
    });
    let port = i
        .port
        .as_ref()
        .map(|p| tcp_port(cx, p))
        .unwrap_or(5201 + u16::try_from(idx % 1000).unwrap_or(0));
    let (to, owner) = to?;
    let server = server_node(cx, &i.server, owner, &i.to, nodes)?;
    let from = from?;
    Some((
        i.name.clone().unwrap_or_else(|| {
            format!(
                "iperf {from} -> {} {} {seconds} s",
                i.to.value,
                if udp { "udp" } else { "tcp" }
            )
        }),
        CheckKind::Iperf {
            from,
            to,
            server,
            port,
            udp,
            seconds,
            rate,
            min_gbps,
            max_loss,
        },
    ))
}

/// `http`: a GET against a server the check starts, with the status and client address
/// the server must see.
pub(super) fn http(cx: &mut Cx<'_>, h: &HttpSpec, nodes: &Nodes, plan: &Plan) -> Resolved {
    let from = need_node(cx, &h.from, nodes);
    let to = resolve_addr(cx, &h.to, plan);
    let port = h.port.as_ref().map(|p| tcp_port(cx, p)).unwrap_or(8000);
    let server_port = h
        .server_port
        .as_ref()
        .map(|p| tcp_port(cx, p))
        .unwrap_or(port);
    let path = match &h.path {
        Some(p) => {
            if !p.value.starts_with('/') || p.value.contains(char::is_whitespace) {
                cx.err(
                    &p.referenced,
                    format!("path {:?} must start with / and contain no spaces", p.value),
                );
            }
            p.value.clone()
        }
        None => "/".into(),
    };
    let status = match &h.status {
        Some(s) => match u16::try_from(s.value)
            .ok()
            .filter(|s| (100..=599).contains(s))
        {
            Some(v) => v,
            None => {
                cx.err(
                    &s.referenced,
                    format!("status {} is outside 100..=599", s.value),
                );
                200
            }
        },
        None => 200,
    };
    let client = match &h.client {
        Some(c) => Some(resolve_addr(cx, c, plan)?.0),
        None => None,
    };
    let (to, owner) = to?;
    let server = server_node(cx, &h.server, owner, &h.to, nodes)?;
    let from = from?;
    Some((
        h.name.clone().unwrap_or_else(|| {
            format!(
                "http {from} -> GET http://{to}:{port}{path} (expect {status}{})",
                client.map(|c| format!(", client {c}")).unwrap_or_default()
            )
        }),
        CheckKind::Http {
            from,
            to,
            port,
            path,
            status,
            server,
            server_port,
            client,
        },
    ))
}
