//! What a switch is to the outside: its uplink (address, next hop and the link it sits
//! on), the ports it publishes on the uplink address, and the addresses switches own
//! (bridge gateways, uplinks) that no host may take.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ctl::L4Proto;

use crate::model::{Location, SwitchSpec, TopologyFile, UplinkSpec, S};

use super::errors::Cx;
use super::{resolve_addr, Cidr, HostEnd, Link, Network, Plan};

/// A switch's uplink (`vsctl set-uplink PORT --ip ADDR [--gw GW]`).
#[derive(Debug, Clone)]
pub struct Uplink {
    /// The interface in the switch's namespace: the switch end of the uplink link.
    pub port: String,
    /// The host interface at the other end.
    pub peer: HostEnd,
    /// The switch's own address on the uplink, with the uplink subnet's prefix.
    pub addr: Cidr,
    /// The next hop beyond the uplink's subnet.
    pub gw: Option<Ipv4Addr>,
}

impl Uplink {
    /// The `vsctl` arguments that set it.
    pub fn set_args(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "set-uplink".into(),
            self.port.clone(),
            "--ip".into(),
            self.addr.to_string(),
        ];
        if let Some(g) = self.gw {
            v.push("--gw".into());
            v.push(g.to_string());
        }
        v
    }
}

/// A published port (`vsctl publish PROTO HOST_PORT TARGET:PORT`).
#[derive(Debug, Clone)]
pub struct Published {
    pub proto: L4Proto,
    pub host_port: u16,
    /// The container's address.
    pub target: Ipv4Addr,
    /// The container's port.
    pub port: u16,
    /// How the file named the container.
    pub named: String,
}

impl Published {
    /// The `vsctl` arguments that publish it.
    pub fn publish_args(&self) -> Vec<String> {
        vec![
            "publish".into(),
            self.proto.as_str().into(),
            self.host_port.to_string(),
            format!("{}:{}", self.target, self.port),
        ]
    }
}

/// Every switch's uplink (its address, next hop and link) and published ports, and the
/// host addresses that would clash with the addresses the switches own.
pub(super) fn resolve_gateways(cx: &mut Cx<'_>, tf: &TopologyFile, plan: &mut Plan) {
    for (si, s) in tf.switches.iter().enumerate() {
        let spec = &s.value;
        let Some(sw) = plan.switches.get(si).cloned() else {
            continue;
        };
        let nets: Vec<(String, Network)> = sw
            .bridges
            .iter()
            .filter_map(|b| b.network.map(|n| (b.name.clone(), n)))
            .collect();
        let uplink = spec
            .uplink
            .as_ref()
            .and_then(|u| resolve_uplink(cx, u, &sw.name, &nets, plan));
        let published = resolve_published(cx, spec, &sw.name, &nets, plan);
        if let Some(x) = plan.switches.get_mut(si) {
            x.uplink = uplink;
            x.published = published;
        }
    }
    check_owned_addrs(cx, tf, plan);
}

/// The `publish` list of switch `switch`, whose bridges' networks are `nets`.
fn resolve_published(
    cx: &mut Cx<'_>,
    spec: &SwitchSpec,
    switch: &str,
    nets: &[(String, Network)],
    plan: &Plan,
) -> Vec<Published> {
    let mut published: Vec<Published> = Vec::new();
    let mut seen: HashMap<(L4Proto, u16), u64> = HashMap::new();
    for p in &spec.publish {
        let at = p.referenced;
        let p = &p.value;
        if spec.uplink.is_none() {
            cx.err(
                &at,
                format!(
                    "switch {switch} publishes ports but has no `uplink` (a published port is a port of the uplink address)"
                ),
            );
        }
        let proto = match &p.proto {
            None => L4Proto::Tcp,
            Some(x) => match x.value.parse::<L4Proto>() {
                Ok(v) => v,
                Err(e) => {
                    cx.err(&x.referenced, e);
                    continue;
                }
            },
        };
        let Some(host_port) = port_number(cx, "host_port", &p.host_port) else {
            continue;
        };
        let port = match &p.port {
            None => host_port,
            Some(x) => match port_number(cx, "port", x) {
                Some(v) => v,
                None => continue,
            },
        };
        if let Some(line) = seen.insert((proto, host_port), p.host_port.referenced.line()) {
            cx.err(
                &p.host_port.referenced,
                format!(
                    "{}/{host_port} is already published (line {line})",
                    proto.as_str()
                ),
            );
            continue;
        }
        let Some((target, _)) = resolve_addr(cx, &p.to, plan) else {
            continue;
        };
        let declared = spec
            .bridges
            .iter()
            .filter(|b| b.value.network.is_some())
            .count();
        if nets.len() < declared {
            // A network with an error of its own: that error says more.
            continue;
        }
        if !nets.iter().any(|(_, n)| n.subnet.contains(target)) {
            let list: Vec<String> = nets
                .iter()
                .map(|(b, n)| format!("{} on {b}", n.subnet))
                .collect();
            cx.err(
                &p.to.referenced,
                format!(
                    "publish target {target} (`{}`) is in no network of switch {} ({})",
                    p.to.value,
                    switch,
                    if list.is_empty() {
                        "it has none; give a bridge `network: {subnet, gateway}`".to_string()
                    } else {
                        format!("its networks: {}", list.join(", "))
                    }
                ),
            );
            continue;
        }
        if let Some((b, _)) = nets.iter().find(|(_, n)| n.gateway == target) {
            cx.err(
                &p.to.referenced,
                format!(
                    "publish target {target} is the gateway of {switch}:{b}, the switch itself"
                ),
            );
            continue;
        }
        published.push(Published {
            proto,
            host_port,
            target,
            port,
            named: p.to.value.clone(),
        });
    }
    published
}

/// Addresses the switches own: no host may have one, and a host on a bridge with a
/// network must be inside it.
fn check_owned_addrs(cx: &mut Cx<'_>, tf: &TopologyFile, plan: &Plan) {
    let mut owned: Vec<(Ipv4Addr, String)> = Vec::new();
    for sw in &plan.switches {
        for b in &sw.bridges {
            if let Some(n) = b.network {
                owned.push((n.gateway, format!("the gateway of {}:{}", sw.name, b.name)));
            }
        }
        if let Some(u) = &sw.uplink {
            owned.push((u.addr.ip, format!("switch {}'s uplink address", sw.name)));
        }
    }
    for h in &plan.hosts {
        for i in &h.ifaces {
            let Some(a) = i.addr else { continue };
            if let Some((_, what)) = owned.iter().find(|(ip, _)| *ip == a.ip) {
                cx.err(
                    &iface_loc(tf, &h.name, &i.name),
                    format!("address {} of {}:{} is {what}", a.ip, h.name, i.name),
                );
            }
        }
    }
    for l in &plan.links {
        let Link::HostSwitch { host, port, .. } = l else {
            continue;
        };
        let Some(net) = plan
            .switch(&port.switch)
            .and_then(|s| s.bridges.iter().find(|b| b.name == port.bridge))
            .and_then(|b| b.network)
        else {
            continue;
        };
        let Some(a) = iface_addr(plan, host) else {
            continue;
        };
        if !net.subnet.contains(a.ip) {
            cx.err(
                &iface_loc(tf, &host.host, &host.iface),
                format!(
                    "address {a} of {}:{} is outside network {} of {}:{}, the bridge it is linked to",
                    host.host, host.iface, net.subnet, port.switch, port.bridge
                ),
            );
        }
    }
}

/// A switch's `uplink: {ip, gw}` with the link it sits on.
fn resolve_uplink(
    cx: &mut Cx<'_>,
    u: &S<UplinkSpec>,
    switch: &str,
    nets: &[(String, Network)],
    plan: &Plan,
) -> Option<Uplink> {
    let spec = &u.value;
    let addr = match ctl::validate::uplink_ip(&spec.ip.value) {
        Ok((ip, prefix)) => Cidr { ip, prefix },
        Err(e) => {
            return cx.fail(&spec.ip.referenced, e);
        }
    };
    for (b, n) in nets {
        if n.subnet.overlaps(&addr.subnet()) {
            cx.err(
                &spec.ip.referenced,
                format!(
                    "the uplink's subnet {} overlaps network {} of bridge {b}",
                    addr.subnet(),
                    n.subnet
                ),
            );
        }
    }
    let gw = match &spec.gw {
        None => None,
        Some(g) => match g.value.parse::<Ipv4Addr>() {
            Err(_) => cx.fail(
                &g.referenced,
                format!("gw {:?} is not an IPv4 address", g.value),
            ),
            Ok(ip) => {
                if let Err(e) = ctl::validate::host_in("next hop", ip, addr.network(), addr.prefix)
                {
                    cx.err(&g.referenced, e);
                } else if ip == addr.ip {
                    cx.err(
                        &g.referenced,
                        format!("next hop {ip} is the uplink's own address"),
                    );
                }
                Some(ip)
            }
        },
    };
    let link = plan.links.iter().find_map(|l| match l {
        Link::Uplink {
            host,
            switch: s,
            port,
            ..
        } if s == switch => Some((host.clone(), port.clone())),
        _ => None,
    });
    let Some((peer, port)) = link else {
        return cx.fail(
            &u.referenced,
            format!(
                "switch {switch} has an `uplink` but no link ends on it; add one: \
                 `- endpoints: [HOST, {{node: {switch}, uplink: true}}]`"
            ),
        );
    };
    if let Some(a) = iface_addr(plan, &peer) {
        if !addr.contains(a.ip) {
            cx.err(
                &spec.ip.referenced,
                format!(
                    "the far end of the uplink, {}:{} ({a}), is outside the uplink's subnet {}",
                    peer.host,
                    peer.iface,
                    addr.subnet()
                ),
            );
        }
    }
    Some(Uplink {
        port,
        peer,
        addr,
        gw,
    })
}

/// A port number of a published port, 1..=65535.
fn port_number(cx: &mut Cx<'_>, what: &str, p: &S<i64>) -> Option<u16> {
    let v = u16::try_from(p.value).ok().filter(|x| *x > 0);
    if v.is_none() {
        cx.err(
            &p.referenced,
            format!("{what} {} is outside 1..=65535", p.value),
        );
    }
    v
}

/// The address of a host interface, if it has one.
fn iface_addr(plan: &Plan, e: &HostEnd) -> Option<Cidr> {
    plan.host(&e.host)?
        .ifaces
        .iter()
        .find(|i| i.name == e.iface)?
        .addr
}

/// Where the file gives `host:iface` its address (or the host's name, without one).
fn iface_loc(tf: &TopologyFile, host: &str, iface: &str) -> Location {
    tf.hosts
        .iter()
        .find(|h| h.value.name.value == host)
        .map(|h| {
            h.value
                .interfaces
                .iter()
                .find(|i| i.value.name.value == iface)
                .map(|i| {
                    i.value
                        .ip
                        .as_ref()
                        .map(|ip| ip.referenced)
                        .unwrap_or(i.value.name.referenced)
                })
                .unwrap_or(h.value.name.referenced)
        })
        .unwrap_or(Location::UNKNOWN)
}
