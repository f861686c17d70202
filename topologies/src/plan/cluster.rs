//! The cluster part of a topology: the etcd the run starts (`etcd:`), the overlays made
//! in it (`overlays:`), the switches that join it (a switch's `cluster:`) and the hosts
//! plugged into an overlay by `vsctl attach` (a host's `attach:`).
//!
//! An attached host's address is the cluster's choice, known only once the run is built;
//! until then a check that aims at it holds a placeholder from 0.0.0.0/8 (an address no
//! host can have), which the runner swaps for the real one ([`Plan::placeholder`]).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::model::{TopologyFile, S};

use super::errors::Cx;
use super::{Cidr, NodeKind, Nodes, Plan};

/// The etcd of a run: `members` processes in `host`'s namespace, on its address `ip`.
#[derive(Debug, Clone)]
pub struct Etcd {
    pub host: String,
    pub ip: Ipv4Addr,
    pub members: u32,
}

/// First client port of the run's etcd members; member `i` listens on `BASE + 2i` for
/// clients and `BASE + 2i + 1` for peers. The namespace is the run's own, so they are free.
pub const ETCD_BASE_PORT: u16 = 2379;

impl Etcd {
    /// `(client, peer)` ports of member `i`.
    pub fn ports(&self, i: u32) -> (u16, u16) {
        let base = ETCD_BASE_PORT + 2 * i as u16;
        (base, base + 1)
    }

    /// The `--cluster-store` URL every cluster switch gets.
    pub fn store_url(&self) -> String {
        let eps: Vec<String> = (0..self.members)
            .map(|i| format!("{}:{}", self.ip, self.ports(i).0))
            .collect();
        format!("etcd://{}", eps.join(","))
    }

    /// The client endpoints, comma-separated (for `etcdctl --endpoints`).
    pub fn endpoints(&self) -> String {
        (0..self.members)
            .map(|i| format!("{}:{}", self.ip, self.ports(i).0))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// An overlay network of the cluster.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub name: String,
    pub subnet: Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub vni: Option<u32>,
}

impl Overlay {
    /// `vsctl add-overlay …`.
    pub fn add_args(&self) -> Vec<String> {
        let mut v = vec![
            "add-overlay".into(),
            self.name.clone(),
            "--subnet".into(),
            self.subnet.to_string(),
        ];
        if let Some(g) = self.gateway {
            v.extend(["--gateway".into(), g.to_string()]);
        }
        if let Some(n) = self.vni {
            v.extend(["--vni".into(), n.to_string()]);
        }
        v
    }
}

/// How a switch joins the cluster.
#[derive(Debug, Clone)]
pub struct Join {
    pub advertise: Ipv4Addr,
    pub ttl: Option<u32>,
}

/// A host attached to an overlay on a cluster switch.
#[derive(Debug, Clone)]
pub struct Attach {
    pub switch: String,
    pub overlay: String,
}

/// MTU of an attached host's interface: a 1500-byte underlay less VXLAN's 50 bytes.
pub const OVERLAY_MTU: u32 = 1450;

impl Plan {
    /// The stand-in address of attached host `host` until the run knows the real one.
    pub fn placeholder(&self, host: &str) -> Option<Ipv4Addr> {
        let i = self
            .hosts
            .iter()
            .position(|h| h.name == host && h.attach.is_some())?;
        Some(Ipv4Addr::from(i as u32 + 1))
    }

    /// True for an address [`Plan::placeholder`] hands out.
    pub fn is_placeholder(ip: Ipv4Addr) -> bool {
        ip.octets()[0] == 0
    }

    /// The hosts attached to overlay `ov`, in file order.
    pub fn attached_to<'a>(&'a self, ov: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.hosts
            .iter()
            .filter(move |h| h.attach.as_ref().is_some_and(|a| a.overlay == ov))
            .map(|h| h.name.as_str())
    }
}

/// `etcd:`, `overlays:`, the switches' `cluster:` and the hosts' `attach:`.
pub(super) fn resolve_cluster(cx: &mut Cx<'_>, tf: &TopologyFile, nodes: &Nodes, plan: &mut Plan) {
    if let Some(e) = &tf.etcd {
        plan.etcd = resolve_etcd(cx, &e.value, nodes, plan);
    }
    let mut names: HashMap<String, u64> = HashMap::new();
    for o in &tf.overlays {
        let o = &o.value;
        if tf.etcd.is_none() {
            cx.err(
                &o.name.referenced,
                "an overlay needs the cluster's store: add `etcd:`",
            );
        }
        if let Err(e) = ctl::validate::bridge_name(&o.name.value) {
            cx.err(&o.name.referenced, e);
        }
        if let Some(line) = names.insert(o.name.value.clone(), o.name.referenced.line()) {
            cx.err(
                &o.name.referenced,
                format!(
                    "duplicate overlay `{}` (first at line {line})",
                    o.name.value
                ),
            );
        }
        let subnet = match ctl::validate::subnet(&o.subnet.value) {
            Ok((ip, prefix)) => Cidr { ip, prefix },
            Err(e) => {
                cx.err(&o.subnet.referenced, e);
                continue;
            }
        };
        if let Some(other) = plan.overlays.iter().find(|x| x.subnet.overlaps(&subnet)) {
            cx.err(
                &o.subnet.referenced,
                format!(
                    "subnet {subnet} overlaps {} of overlay {}",
                    other.subnet, other.name
                ),
            );
        }
        let gateway = o.gateway.as_ref().and_then(|g| {
            let Ok(ip) = g.value.parse::<Ipv4Addr>() else {
                return cx.fail(
                    &g.referenced,
                    format!("gateway {:?} is not an IPv4 address", g.value),
                );
            };
            match ctl::validate::host_in("gateway", ip, subnet.ip, subnet.prefix) {
                Ok(()) => Some(ip),
                Err(e) => cx.fail(&g.referenced, e),
            }
        });
        let vni = o.vni.as_ref().and_then(|v| {
            let n = u32::try_from(v.value).map_err(|_| format!("VNI {} is negative", v.value));
            match n.and_then(|n| ctl::validate::vni(n).map(|()| n)) {
                Ok(n) => Some(n),
                Err(e) => cx.fail(&v.referenced, e),
            }
        });
        plan.overlays.push(Overlay {
            name: o.name.value.clone(),
            subnet,
            gateway,
            vni,
        });
    }
    for (i, s) in tf.switches.iter().enumerate() {
        let Some(c) = &s.value.cluster else { continue };
        let join = resolve_join(cx, &c.value, &s.value.host, tf.etcd.is_some(), plan);
        if let Some(b) = s
            .value
            .bridges
            .iter()
            .find(|b| plan.overlays.iter().any(|o| o.name == b.value.name.value))
        {
            cx.err(
                &b.value.name.referenced,
                format!(
                    "bridge {} of a cluster switch is the name of an overlay (the cluster makes that bridge)",
                    b.value.name.value
                ),
            );
        }
        if let Some(sw) = plan.switches.get_mut(i) {
            sw.cluster = join;
        }
    }
    for (i, h) in tf.hosts.iter().enumerate() {
        let Some(a) = &h.value.attach else { continue };
        let a = &a.value;
        if !h.value.interfaces.is_empty() || h.value.gateway.is_some() {
            cx.err(
                &a.switch.referenced,
                format!(
                    "host {} is attached to an overlay: its interface and address come from the cluster (no `interfaces` or `gateway`)",
                    h.value.name.value
                ),
            );
        }
        match nodes.kind(&a.switch.value) {
            Some(NodeKind::Switch) => {
                if plan
                    .switch(&a.switch.value)
                    .is_some_and(|s| s.cluster.is_none())
                {
                    cx.err(
                        &a.switch.referenced,
                        format!(
                            "switch {} is not in the cluster (give it `cluster:`)",
                            a.switch.value
                        ),
                    );
                }
            }
            _ => cx.err(
                &a.switch.referenced,
                format!("unknown switch `{}`", a.switch.value),
            ),
        }
        if !plan.overlays.iter().any(|o| o.name == a.overlay.value) {
            cx.err(
                &a.overlay.referenced,
                format!("unknown overlay `{}`", a.overlay.value),
            );
        }
        if let Some(host) = plan.hosts.get_mut(i) {
            host.attach = Some(Attach {
                switch: a.switch.value.clone(),
                overlay: a.overlay.value.clone(),
            });
        }
    }
}

fn resolve_etcd(
    cx: &mut Cx<'_>,
    e: &crate::model::EtcdSpec,
    nodes: &Nodes,
    plan: &Plan,
) -> Option<Etcd> {
    let members = e.members.as_ref().map(|m| m.value).unwrap_or(1);
    if let Some(m) = &e.members {
        if ![1, 3].contains(&m.value) {
            cx.err(&m.referenced, format!("members {} is not 1 or 3", m.value));
        }
    }
    if nodes.kind(&e.host.value) != Some(NodeKind::Host) {
        return cx.fail(
            &e.host.referenced,
            format!("unknown host `{}` for etcd", e.host.value),
        );
    }
    let ip = plan
        .host(&e.host.value)
        .and_then(|h| h.ifaces.iter().find_map(|i| i.addr))
        .map(|c| c.ip);
    let Some(ip) = ip else {
        return cx.fail(
            &e.host.referenced,
            format!("host {} has no address for etcd to listen on", e.host.value),
        );
    };
    Some(Etcd {
        host: e.host.value.clone(),
        ip,
        members,
    })
}

fn resolve_join(
    cx: &mut Cx<'_>,
    c: &crate::model::ClusterSpec,
    host: &Option<S<String>>,
    has_etcd: bool,
    plan: &Plan,
) -> Option<Join> {
    if !has_etcd {
        return cx.fail(
            &c.advertise.referenced,
            "a cluster switch needs the cluster's store: add `etcd:`",
        );
    }
    let Some(host) = host else {
        return cx.fail(
            &c.advertise.referenced,
            "a cluster switch runs in a machine: give it `host:`",
        );
    };
    if let Some(t) = &c.ttl {
        if !(1..=3600).contains(&t.value) {
            cx.err(
                &t.referenced,
                format!("ttl {} is outside 1..=3600", t.value),
            );
        }
    }
    let addrs: Vec<(String, Ipv4Addr)> = plan
        .host(&host.value)
        .map(|h| {
            h.ifaces
                .iter()
                .filter_map(|i| i.addr.map(|a| (i.name.clone(), a.ip)))
                .collect()
        })
        .unwrap_or_default();
    let text = c.advertise.value.as_str();
    let found = match text.split_once(':') {
        Some((h, i)) if h == host.value => addrs.iter().find(|(n, _)| n == i).map(|x| x.1),
        Some(_) => None,
        None => text
            .parse::<Ipv4Addr>()
            .ok()
            .filter(|ip| addrs.iter().any(|(_, a)| a == ip)),
    };
    match found {
        Some(advertise) => Some(Join {
            advertise,
            ttl: c.ttl.as_ref().map(|t| t.value),
        }),
        None => cx.fail(
            &c.advertise.referenced,
            format!(
                "advertise `{text}` is not an address of {}, the switch's host (HOST:IFACE or an IPv4 address)",
                host.value
            ),
        ),
    }
}
