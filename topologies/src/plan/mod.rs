//! From a parsed file to a [`Plan`]: every reference resolved, every name and number
//! checked, every default filled in. This module owns the meaning of the format and all
//! its error messages; it touches no system state, so a file that is wrong anywhere is
//! rejected, with `FILE:LINE: message` for each problem, before anything is built.
//!
//! One module a part of the topology, in the order they are planned (each may look at
//! what the earlier ones resolved): `hosts`, `switches`, `links` (with `ends`, one end of
//! a link), `tunnels`, `gateways` (uplinks, published ports) and `checks`. This file
//! holds the [`Plan`], the entry points and the helpers several of them share.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::model::{Location, TopologyFile, S};

mod addr;
mod checks;
mod cluster;
mod dns;
mod ends;
mod errors;
mod gateways;
mod hosts;
mod links;
mod switches;
mod tunnels;
mod wireguard;

#[cfg(test)]
mod tests;

pub use addr::{parse_mac, Cidr};
pub use checks::{Check, CheckKind, MacRef, Pair};
pub use cluster::{Attach, Etcd, Join, Overlay, ETCD_BASE_PORT, OVERLAY_MTU};
pub use errors::{FileError, FileErrors};
pub use gateways::{Published, Uplink};
pub use hosts::{Host, Iface};
pub use links::{HostEnd, Link, Port, Vlans};
pub use switches::{Bridge, Network, Switch};
pub use tunnels::{Remote, Tunnel, VXLAN_PORT};
pub use wireguard::{Crypto, CryptoPeer, WgHost, WgVxlan, WG_PORT};

use errors::{serde_error, Cx};

/// The only format version so far.
pub const VERSION: u32 = 1;
/// Longest node name: the namespace is `RUN-NODE` and stays readable.
pub const NODE_NAME_MAX: usize = 24;

/// A topology ready to build: names resolved, defaults filled in.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file as named on the command line.
    pub source: String,
    pub name: String,
    pub description: Option<String>,
    pub hosts: Vec<Host>,
    pub switches: Vec<Switch>,
    pub links: Vec<Link>,
    pub checks: Vec<Check>,
    /// The etcd the run starts, if it has a cluster.
    pub etcd: Option<Etcd>,
    /// The cluster's overlays, made once the cluster switches have joined.
    pub overlays: Vec<Overlay>,
}

impl Plan {
    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The switch named `name`.
    pub fn switch(&self, name: &str) -> Option<&Switch> {
        self.switches.iter().find(|s| s.name == name)
    }

    /// The node whose namespace `node` (a host or a switch) lives in.
    pub fn ns_node<'a>(&'a self, node: &'a str) -> Option<&'a str> {
        if self.host(node).is_some() {
            return Some(node);
        }
        self.switch(node)
            .map(|s| s.host.as_deref().unwrap_or(s.name.as_str()))
    }

    /// The nodes that get a namespace of their own, in creation order.
    pub fn namespaces(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .map(|h| h.name.as_str())
            .chain(
                self.switches
                    .iter()
                    .filter(|s| s.host.is_none())
                    .map(|s| s.name.as_str()),
            )
            .collect()
    }

    /// Every port of `switch`, in link order.
    pub fn ports_of<'a>(&'a self, switch: &'a str) -> impl Iterator<Item = &'a Port> + 'a {
        self.links
            .iter()
            .flat_map(|l| match l {
                Link::HostSwitch { port, .. } => vec![port],
                Link::SwitchSwitch { a, b, .. } => vec![a, b],
                Link::HostHost { .. } | Link::Uplink { .. } => vec![],
            })
            .filter(move |p| p.switch == switch)
    }

    /// The names of every port of `switch` on `bridge`: link ports and tunnels.
    pub fn port_names(&self, switch: &str, bridge: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .ports_of(switch)
            .filter(|p| p.bridge == bridge)
            .map(|p| p.name.clone())
            .collect();
        if let Some(s) = self.switch(switch) {
            v.extend(
                s.tunnels
                    .iter()
                    .filter(|t| t.bridge == bridge)
                    .map(|t| t.name.clone()),
            );
        }
        v
    }
}

/// Reads and resolves `path`; every error carries the path as given and a line.
pub fn load(path: &Path) -> Result<Plan, FileErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        FileErrors(vec![FileError {
            file: file.clone(),
            line: 0,
            msg: format!("cannot read: {e}"),
        }])
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "topology".into());
    parse(&text, &file, &stem)
}

/// Parses and resolves `text`; `file` names it in errors, `stem` is the default name.
pub fn parse(text: &str, file: &str, stem: &str) -> Result<Plan, FileErrors> {
    let tf: TopologyFile =
        serde_saphyr::from_str(text).map_err(|e| FileErrors(vec![serde_error(file, &e)]))?;
    let mut cx = Cx {
        file,
        errs: Vec::new(),
    };
    let plan = resolve(&mut cx, tf, file, stem);
    if cx.errs.is_empty() {
        Ok(plan)
    } else {
        cx.errs.sort_by_key(|e| e.line);
        Err(FileErrors(cx.errs))
    }
}

/// What a node name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Host,
    Switch,
}

/// The resolver's view of the nodes declared so far.
struct Nodes {
    kinds: HashMap<String, (NodeKind, u64)>,
}

impl Nodes {
    fn kind(&self, n: &str) -> Option<NodeKind> {
        self.kinds.get(n).map(|k| k.0)
    }
}

fn resolve(cx: &mut Cx<'_>, tf: TopologyFile, file: &str, stem: &str) -> Plan {
    if let Some(v) = &tf.version {
        if v.value != VERSION {
            cx.err(
                &v.referenced,
                format!(
                    "version {} is not understood by this vstopo (it knows version {VERSION})",
                    v.value
                ),
            );
        }
    }
    let name = match &tf.name {
        Some(n) => {
            if let Err(e) = node_name(&n.value) {
                cx.err(&n.referenced, format!("topology {e}"));
            }
            n.value.clone()
        }
        None => stem.to_string(),
    };
    if tf.hosts.is_empty() && tf.switches.is_empty() {
        cx.err(
            &Location::UNKNOWN,
            "the file describes nothing: no `hosts` and no `switches`",
        );
    }

    let mut nodes = Nodes {
        kinds: HashMap::new(),
    };
    let mut declare = |cx: &mut Cx<'_>, n: &S<String>, kind: NodeKind| {
        if let Err(e) = node_name(&n.value) {
            cx.err(&n.referenced, e);
            return;
        }
        if let Some((k, line)) = nodes.kinds.get(&n.value) {
            let what = match k {
                NodeKind::Host => "host",
                NodeKind::Switch => "switch",
            };
            cx.err(
                &n.referenced,
                format!(
                    "duplicate name `{}`: already a {what} at line {line} (hosts and switches share one name space)",
                    n.value
                ),
            );
            return;
        }
        nodes
            .kinds
            .insert(n.value.clone(), (kind, n.referenced.line()));
    };
    for h in &tf.hosts {
        declare(cx, &h.value.name, NodeKind::Host);
    }
    for s in &tf.switches {
        declare(cx, &s.value.name, NodeKind::Switch);
    }

    let hosts: Vec<Host> = tf
        .hosts
        .iter()
        .map(|h| hosts::resolve_host(cx, &h.value))
        .collect();
    let switches: Vec<Switch> = tf
        .switches
        .iter()
        .map(|s| switches::resolve_switch(cx, &s.value, &nodes))
        .collect();

    hosts::check_unique_addrs(cx, &tf);

    let mut plan = Plan {
        source: file.to_string(),
        name,
        description: tf.description.clone(),
        hosts,
        switches,
        links: Vec::new(),
        checks: Vec::new(),
        etcd: None,
        overlays: Vec::new(),
    };
    links::resolve_links(cx, &tf, &nodes, &mut plan);
    cluster::resolve_cluster(cx, &tf, &nodes, &mut plan);
    tunnels::resolve_tunnels(cx, &tf, &nodes, &mut plan);
    gateways::resolve_gateways(cx, &tf, &mut plan);
    for (idx, c) in tf.checks.iter().enumerate() {
        if let Some(check) = checks::resolve_check(cx, c, idx, &nodes, &plan) {
            plan.checks.push(check);
        }
    }
    plan
}

fn node_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > NODE_NAME_MAX {
        return Err(format!("name {s:?} must be 1..={NODE_NAME_MAX} characters"));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("name {s:?} must start with a letter or digit"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(format!(
            "name {s:?} contains {c:?} (allowed: letters, digits, - _)"
        ));
    }
    Ok(())
}

fn iface_name(s: &str) -> Result<(), String> {
    ctl::validate::iface_name(s)?;
    if s == "lo" {
        return Err("interface name \"lo\" is taken by the loopback device".into());
    }
    Ok(())
}

fn check_mtu(cx: &mut Cx<'_>, m: &S<u32>) {
    if !(68..=65535).contains(&m.value) {
        cx.err(
            &m.referenced,
            format!("MTU {} is outside 68..=65535", m.value),
        );
    }
}

/// A VLAN id: 1..=4094 (0 means "no VLAN" and 4095 is reserved by 802.1Q).
fn vid(cx: &mut Cx<'_>, v: &S<i64>) -> Option<u16> {
    match u16::try_from(v.value)
        .ok()
        .filter(|n| (1..=4094).contains(n))
    {
        Some(n) => Some(n),
        None => cx.fail(
            &v.referenced,
            format!("VLAN {} is outside 1..=4094", v.value),
        ),
    }
}

/// An address a check aims at, and the host that owns it (if any).
fn resolve_addr(cx: &mut Cx<'_>, s: &S<String>, plan: &Plan) -> Option<(Ipv4Addr, Option<String>)> {
    let text = s.value.as_str();
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        let owner = plan
            .hosts
            .iter()
            .find(|h| h.ifaces.iter().any(|i| i.addr.map(|c| c.ip) == Some(ip)))
            .map(|h| h.name.clone());
        return Some((ip, owner));
    }
    let (node, iface) = match text.split_once(':') {
        Some((n, i)) => (n, Some(i)),
        None => (text, None),
    };
    if let (Some(ph), None) = (plan.placeholder(node), iface) {
        return Some((ph, Some(node.to_string())));
    }
    let Some(host) = plan.host(node) else {
        if let Some(sw) = plan.switch(node) {
            match (iface, &sw.uplink) {
                (None, Some(u)) => return Some((u.addr.ip, None)),
                (Some(b), _) => match sw.bridges.iter().find(|x| x.name == b) {
                    Some(Bridge {
                        network: Some(n), ..
                    }) => return Some((n.gateway, None)),
                    Some(_) => cx.err(
                        &s.referenced,
                        format!("bridge {node}:{b} has no `network`, so no gateway address"),
                    ),
                    None => cx.err(&s.referenced, format!("switch {node} has no bridge `{b}`")),
                },
                (None, None) => cx.err(
                    &s.referenced,
                    format!(
                        "switch {node} has no address (no `uplink`); aim at a host, HOST:IFACE, \
                         SWITCH:BRIDGE (its network's gateway) or an IPv4 address"
                    ),
                ),
            }
        } else {
            cx.err(
                &s.referenced,
                format!("`{text}` is neither a host, HOST:IFACE nor an IPv4 address"),
            );
        }
        return None;
    };
    let found = match iface {
        Some(i) => match host.ifaces.iter().find(|x| x.name == i) {
            Some(x) => x.addr,
            None => {
                return cx.fail(&s.referenced, format!("host {node} has no interface `{i}`"));
            }
        },
        None => host.ifaces.iter().find_map(|i| i.addr),
    };
    match found {
        Some(c) => Some((c.ip, Some(node.to_string()))),
        None => cx.fail(&s.referenced, format!("`{text}` has no IPv4 address")),
    }
}

/// Node name → namespace name for a run with prefix `run`.
pub fn ns_name(run: &str, node: &str) -> String {
    format!("{run}-{node}")
}
