//! Hosts: their interfaces (name, address, MAC, MTU) and default gateway, and that no
//! address is on two interfaces.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::model::{HostSpec, TopologyFile};

use super::errors::Cx;
use super::{check_mtu, iface_name, parse_mac, Cidr};

/// A host namespace.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub ifaces: Vec<Iface>,
    pub gateway: Option<Ipv4Addr>,
    pub forward: bool,
    /// A `wireguard-go` interface (and a kernel vxlan device on it).
    pub wireguard: Option<super::WgHost>,
    /// Plugged into an overlay by `vsctl attach` (its `eth0` and address come then).
    pub attach: Option<super::Attach>,
}

/// An interface of a host.
#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    pub addr: Option<Cidr>,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
}

pub(super) fn resolve_host(cx: &mut Cx<'_>, h: &HostSpec) -> Host {
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut names: HashMap<&str, u64> = HashMap::new();
    for i in &h.interfaces {
        let i = &i.value;
        if let Err(e) = iface_name(&i.name.value) {
            cx.err(&i.name.referenced, e);
        }
        if let Some(line) = names.insert(&i.name.value, i.name.referenced.line()) {
            cx.err(
                &i.name.referenced,
                format!(
                    "duplicate interface `{}` on host {} (first at line {line})",
                    i.name.value, h.name.value
                ),
            );
        }
        let addr = i.ip.as_ref().and_then(|ip| match Cidr::parse(&ip.value) {
            Ok(c) => Some(c),
            Err(e) => cx.fail(&ip.referenced, format!("bad address: {e}")),
        });
        let mac = i.mac.as_ref().and_then(|m| match parse_mac(&m.value) {
            Ok(m) => Some(m),
            Err(e) => cx.fail(&m.referenced, e),
        });
        if let Some(m) = &i.mtu {
            check_mtu(cx, m);
        }
        ifaces.push(Iface {
            name: i.name.value.clone(),
            addr,
            mac,
            mtu: i.mtu.as_ref().map(|m| m.value),
        });
    }
    let gateway = h.gateway.as_ref().and_then(|g| {
        let Ok(ip) = g.value.parse::<Ipv4Addr>() else {
            return cx.fail(
                &g.referenced,
                format!("gateway {:?} is not an IPv4 address", g.value),
            );
        };
        let on_link = ifaces
            .iter()
            .filter_map(|i| i.addr)
            .any(|c| c.contains(ip) && c.ip != ip);
        if !on_link {
            return cx.fail(
                &g.referenced,
                format!(
                    "gateway {ip} is not inside the subnet of any address of host {}",
                    h.name.value
                ),
            );
        }
        Some(ip)
    });
    Host {
        name: h.name.value.clone(),
        ifaces,
        gateway,
        forward: h.forward,
        wireguard: h
            .wireguard
            .as_ref()
            .and_then(|w| super::wireguard::resolve_wg(cx, &w.value)),
        attach: None,
    }
}

/// The same address on two interfaces would make every check ambiguous.
pub(super) fn check_unique_addrs(cx: &mut Cx<'_>, tf: &TopologyFile) {
    let mut seen: HashMap<Ipv4Addr, (String, u64)> = HashMap::new();
    for h in &tf.hosts {
        for i in &h.value.interfaces {
            let Some(ip) = &i.value.ip else { continue };
            let Ok(c) = Cidr::parse(&ip.value) else {
                continue;
            };
            let who = format!("{}:{}", h.value.name.value, i.value.name.value);
            if let Some((other, line)) = seen.get(&c.ip) {
                cx.err(
                    &ip.referenced,
                    format!(
                        "address {} of {who} is already {other}'s (line {line})",
                        c.ip
                    ),
                );
            } else {
                seen.insert(c.ip, (who, ip.referenced.line()));
            }
        }
    }
}
