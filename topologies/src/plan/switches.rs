//! Switches: where each `vswitchd` runs, its workers and log level, its bridges and the
//! network (subnet and gateway) a bridge routes for.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::model::{NetworkSpec, SwitchSpec};

use super::errors::Cx;
use super::{Cidr, NodeKind, Nodes, Published, Tunnel, Uplink};

/// A `vswitchd`.
#[derive(Debug, Clone)]
pub struct Switch {
    pub name: String,
    /// The host whose namespace it runs in, if not its own.
    pub host: Option<String>,
    pub workers: Option<u32>,
    pub log_level: String,
    pub bridges: Vec<Bridge>,
    /// VXLAN tunnel ports, added once the host's underlay addresses are up.
    pub tunnels: Vec<Tunnel>,
    /// The switch's address toward the outside, on the switch end of an uplink link.
    pub uplink: Option<Uplink>,
    /// Ports of the uplink address forwarded to containers, in file order.
    pub published: Vec<Published>,
    /// Its WireGuard private key, written to its key file before it starts.
    pub private_key: Option<String>,
    /// Joins the run's etcd (`--cluster-store`), started once the underlay is up.
    pub cluster: Option<super::Join>,
}

/// A bridge's IPv4 network and the gateway address the switch owns in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The subnet (its `ip` is the network address).
    pub subnet: Cidr,
    pub gateway: Ipv4Addr,
}

/// A bridge of a switch.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    pub aging: Option<u32>,
    pub mac_limit: Option<u32>,
    /// The network the switch routes for (`vsctl add-net`).
    pub network: Option<Network>,
}

impl Bridge {
    /// The `vsctl` arguments that give it its network, if it has one.
    pub fn add_net_args(&self) -> Option<Vec<String>> {
        self.network.map(|n| {
            vec![
                "add-net".into(),
                self.name.clone(),
                n.subnet.to_string(),
                "--gateway".into(),
                n.gateway.to_string(),
            ]
        })
    }
}

const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

pub(super) fn resolve_switch(cx: &mut Cx<'_>, s: &SwitchSpec, nodes: &Nodes) -> Switch {
    if let Some(h) = &s.host {
        match nodes.kind(&h.value) {
            Some(NodeKind::Host) => {}
            Some(NodeKind::Switch) => cx.err(
                &h.referenced,
                format!(
                    "`host: {}` names a switch; it must name an entry of `hosts`",
                    h.value
                ),
            ),
            None => cx.err(
                &h.referenced,
                format!(
                    "unknown host `{}` (a switch's `host` names an entry of `hosts`)",
                    h.value
                ),
            ),
        }
    }
    if let Some(w) = &s.workers {
        if !(1..=64).contains(&w.value) {
            cx.err(
                &w.referenced,
                format!("workers {} is outside 1..=64", w.value),
            );
        }
    }
    if let Some(l) = &s.log_level {
        if !LOG_LEVELS.contains(&l.value.as_str()) {
            cx.err(
                &l.referenced,
                format!(
                    "log_level {:?} is not one of {}",
                    l.value,
                    LOG_LEVELS.join(", ")
                ),
            );
        }
    }
    let mut names: HashMap<&str, u64> = HashMap::new();
    let mut bridges = Vec::new();
    for b in &s.bridges {
        let b = &b.value;
        if let Err(e) = ctl::validate::bridge_name(&b.name.value) {
            cx.err(&b.name.referenced, e);
        }
        if let Some(line) = names.insert(&b.name.value, b.name.referenced.line()) {
            cx.err(
                &b.name.referenced,
                format!(
                    "duplicate bridge `{}` on switch {} (first at line {line})",
                    b.name.value, s.name.value
                ),
            );
        }
        if let Some(a) = &b.aging {
            if let Err(e) = ctl::validate::aging(a.value) {
                cx.err(&a.referenced, e);
            }
        }
        if let Some(m) = &b.mac_limit {
            if let Err(e) = ctl::validate::mac_limit(m.value) {
                cx.err(&m.referenced, e);
            }
        }
        let network = b
            .network
            .as_ref()
            .and_then(|n| resolve_network(cx, &n.value));
        if let (Some(n), Some(spec)) = (network, &b.network) {
            let clash = bridges.iter().find_map(|x: &Bridge| {
                x.network
                    .filter(|m| m.subnet.overlaps(&n.subnet))
                    .map(|m| (x.name.clone(), m))
            });
            if let Some((other, m)) = clash {
                cx.err(
                    &spec.value.subnet.referenced,
                    format!(
                        "subnet {} overlaps {} of bridge {other} on switch {}",
                        n.subnet, m.subnet, s.name.value
                    ),
                );
            }
        }
        bridges.push(Bridge {
            name: b.name.value.clone(),
            aging: b.aging.as_ref().map(|a| a.value),
            mac_limit: b.mac_limit.as_ref().map(|m| m.value),
            network,
        });
    }
    Switch {
        name: s.name.value.clone(),
        host: s.host.as_ref().map(|h| h.value.clone()),
        workers: s.workers.as_ref().map(|w| w.value),
        log_level: s
            .log_level
            .as_ref()
            .map(|l| l.value.clone())
            .unwrap_or_else(|| "info".into()),
        bridges,
        tunnels: Vec::new(),
        uplink: None,
        published: Vec::new(),
        private_key: s
            .private_key
            .as_ref()
            .and_then(|k| super::wireguard::private_key(cx, k)),
        cluster: None,
    }
}

/// A bridge's `network: {subnet, gateway}`.
fn resolve_network(cx: &mut Cx<'_>, n: &NetworkSpec) -> Option<Network> {
    let subnet = match ctl::validate::subnet(&n.subnet.value) {
        Ok((ip, prefix)) => Cidr { ip, prefix },
        Err(e) => {
            return cx.fail(&n.subnet.referenced, e);
        }
    };
    let Ok(gateway) = n.gateway.value.parse::<Ipv4Addr>() else {
        return cx.fail(
            &n.gateway.referenced,
            format!("gateway {:?} is not an IPv4 address", n.gateway.value),
        );
    };
    if let Err(e) = ctl::validate::host_in("gateway", gateway, subnet.ip, subnet.prefix) {
        return cx.fail(&n.gateway.referenced, e);
    }
    Some(Network { subnet, gateway })
}
