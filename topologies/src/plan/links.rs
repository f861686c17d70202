//! Links: veth pairs and TAP ports between hosts and switches, the switch ports they
//! create and their names, one uplink link per switch at most, and no interface left on
//! no link.

use std::collections::HashMap;

use ctl::PortKind;

use crate::model::{LinkSpec, Location, TopologyFile, S};

use super::ends::{resolve_end, End};
use super::errors::Cx;
use super::{check_mtu, iface_name, Nodes, Plan};

/// A switch port a link creates.
#[derive(Debug, Clone)]
pub struct Port {
    pub switch: String,
    pub bridge: String,
    /// The port's (and its interface's) name in the switch's namespace.
    pub name: String,
    pub kind: PortKind,
    pub vlans: Vlans,
}

/// A port's VLAN membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Vlans {
    /// No VLAN configured: the port carries every frame as it is.
    #[default]
    Unaware,
    /// Member of one VLAN only, untagged, as its PVID (`vsctl add-vlan … --access`).
    Access(u16),
    /// Tagged member of these VLANs (`vsctl add-vlan BR PORT 10,20`).
    Trunk(Vec<u16>),
}

/// One host interface at the end of a link.
#[derive(Debug, Clone)]
pub struct HostEnd {
    pub host: String,
    pub iface: String,
}

/// A link.
#[derive(Debug, Clone)]
pub enum Link {
    /// A host interface on a switch port: a veth pair (afpacket) or a TAP the switch
    /// creates and that moves into the host.
    HostSwitch {
        host: HostEnd,
        port: Port,
        mtu: Option<u32>,
    },
    /// A veth pair between two hosts.
    HostHost {
        a: HostEnd,
        b: HostEnd,
        mtu: Option<u32>,
    },
    /// A veth pair between two switch ports (a trunk between switches).
    SwitchSwitch { a: Port, b: Port, mtu: Option<u32> },
    /// A veth pair from a host interface to a switch's uplink: the switch end (`port`) is
    /// no bridge port, it is the interface of `vsctl set-uplink`.
    Uplink {
        host: HostEnd,
        switch: String,
        port: String,
        mtu: Option<u32>,
    },
}

impl Link {
    /// The devices the link puts into switches' namespaces: (switch, device name).
    pub fn switch_ends(&self) -> Vec<(&str, &str)> {
        match self {
            Link::HostSwitch { port, .. } => vec![(port.switch.as_str(), port.name.as_str())],
            Link::SwitchSwitch { a, b, .. } => vec![
                (a.switch.as_str(), a.name.as_str()),
                (b.switch.as_str(), b.name.as_str()),
            ],
            Link::Uplink { switch, port, .. } => vec![(switch.as_str(), port.as_str())],
            Link::HostHost { .. } => vec![],
        }
    }
}

/// Port name of a switch end: given, or `PEER-PEERNAME`.
fn port_name(cx: &mut Cx<'_>, given: &Option<S<String>>, default: String, at: &Location) -> String {
    match given {
        Some(p) => {
            if let Err(e) = iface_name(&p.value) {
                cx.err(&p.referenced, format!("port {e}"));
            }
            p.value.clone()
        }
        None => {
            if iface_name(&default).is_err() {
                cx.err(
                    at,
                    format!(
                        "the default port name `{default}` is not a valid interface name (1..=15 characters); \
                         name the port: {{node: …, port: NAME}}"
                    ),
                );
            }
            default
        }
    }
}

pub(super) fn resolve_links(cx: &mut Cx<'_>, tf: &TopologyFile, nodes: &Nodes, plan: &mut Plan) {
    let mut used: HashMap<(String, String), u64> = HashMap::new();
    // switch -> line of its uplink link
    let mut uplinks: HashMap<String, u64> = HashMap::new();
    let errs_before = cx.errs.len();
    for l in &tf.links {
        let LinkSpec { endpoints, mtu } = &l.value;
        if let Some(m) = mtu {
            check_mtu(cx, m);
        }
        let mtu = mtu.as_ref().map(|m| m.value);
        if endpoints.value.len() != 2 {
            cx.err(
                &endpoints.referenced,
                format!(
                    "a link has exactly two endpoints, this one has {}",
                    endpoints.value.len()
                ),
            );
            continue;
        }
        let a = resolve_end(cx, &endpoints.value[0], plan, nodes);
        let b = resolve_end(cx, &endpoints.value[1], plan, nodes);
        let (Some(a), Some(b)) = (a, b) else { continue };
        let locs = [endpoints.value[0].referenced, endpoints.value[1].referenced];
        for (e, loc) in [(&a, &locs[0]), (&b, &locs[1])] {
            if let End::Host(h) = e {
                let key = (h.host.clone(), h.iface.clone());
                if let Some(line) = used.get(&key) {
                    cx.err(
                        loc,
                        format!(
                            "interface {}:{} is already on the link at line {line}",
                            h.host, h.iface
                        ),
                    );
                } else {
                    used.insert(key, loc.line());
                }
            }
        }
        let link = match (a, b) {
            (End::Host(h), End::Uplink { switch, port, .. })
            | (End::Uplink { switch, port, .. }, End::Host(h)) => {
                let name = port_name(
                    cx,
                    &port,
                    format!("{}-{}", h.host, h.iface),
                    &endpoints.referenced,
                );
                Link::Uplink {
                    host: h,
                    switch,
                    port: name,
                    mtu,
                }
            }
            (End::Uplink { at, .. }, _) | (_, End::Uplink { at, .. }) => {
                cx.err(
                    &at,
                    "an uplink links its switch to a host (the outside); the other end here is a switch",
                );
                continue;
            }
            (End::Host(a), End::Host(b)) => Link::HostHost { a, b, mtu },
            (
                End::Host(h),
                End::Switch {
                    switch,
                    bridge,
                    port,
                    kind,
                    vlans,
                },
            )
            | (
                End::Switch {
                    switch,
                    bridge,
                    port,
                    kind,
                    vlans,
                },
                End::Host(h),
            ) => {
                let name = port_name(
                    cx,
                    &port,
                    format!("{}-{}", h.host, h.iface),
                    &endpoints.referenced,
                );
                Link::HostSwitch {
                    port: Port {
                        switch,
                        bridge,
                        name,
                        kind: kind.map(|k| k.0).unwrap_or_default(),
                        vlans,
                    },
                    host: h,
                    mtu,
                }
            }
            (
                End::Switch {
                    switch: sa,
                    bridge: ba,
                    port: pa,
                    kind: ka,
                    vlans: va,
                },
                End::Switch {
                    switch: sb,
                    bridge: bb,
                    port: pb,
                    kind: kb,
                    vlans: vb,
                },
            ) => {
                for (k, loc) in [ka, kb].into_iter().flatten() {
                    if k == PortKind::Tap {
                        cx.err(&loc, "a TAP port needs a host at the other end of its link");
                    }
                }
                if sa == sb && ba == bb {
                    cx.err(
                        &endpoints.referenced,
                        format!("a link from bridge {sa}:{ba} to itself"),
                    );
                    continue;
                }
                let na = port_name(cx, &pa, format!("{sb}-{bb}"), &locs[0]);
                let nb = port_name(cx, &pb, format!("{sa}-{ba}"), &locs[1]);
                Link::SwitchSwitch {
                    a: Port {
                        switch: sa,
                        bridge: ba,
                        name: na,
                        kind: PortKind::Afpacket,
                        vlans: va,
                    },
                    b: Port {
                        switch: sb,
                        bridge: bb,
                        name: nb,
                        kind: PortKind::Afpacket,
                        vlans: vb,
                    },
                    mtu,
                }
            }
        };
        if let Link::Uplink { switch, .. } = &link {
            if let Some(line) = uplinks.insert(switch.clone(), l.referenced.line()) {
                cx.err(
                    &l.referenced,
                    format!("switch {switch} already has its uplink on the link at line {line} (a switch has one uplink)"),
                );
            } else if tf
                .switches
                .iter()
                .any(|s| s.value.name.value == *switch && s.value.uplink.is_none())
            {
                cx.err(
                    &l.referenced,
                    format!(
                        "switch {switch} has no `uplink: {{ip: …}}` for this uplink link to stand for"
                    ),
                );
            }
        }
        // Device names must be unique in each namespace, port names in each switch.
        plan.links.push(link);
        check_names_after_link(cx, plan, &l.referenced);
    }
    if cx.errs.len() > errs_before {
        // A link that failed to resolve was probably meant for the interfaces that now
        // look unused: its own error says more than theirs would.
        return;
    }
    for h in &tf.hosts {
        for i in &h.value.interfaces {
            let key = (h.value.name.value.clone(), i.value.name.value.clone());
            if !used.contains_key(&key) {
                cx.err(
                    &i.value.name.referenced,
                    format!(
                        "interface {}:{} is on no link (add one under `links`)",
                        key.0, key.1
                    ),
                );
            }
        }
    }
}

/// After a link was added: its new port names must not clash with a device already in
/// the same namespace nor with another port of the same switch.
fn check_names_after_link(cx: &mut Cx<'_>, plan: &Plan, at: &Location) {
    let Some(last) = plan.links.last() else {
        return;
    };
    let new_ports = last.switch_ends();
    let earlier = &plan.links[..plan.links.len() - 1];
    for (i, (sw, name)) in new_ports.iter().enumerate() {
        let Some(ns) = plan.ns_node(sw) else {
            continue;
        };
        // Devices already in that namespace: host interfaces (if it is a host's) and the
        // ports of every switch there, from earlier links and from this one.
        let mut taken: Vec<&str> = plan
            .host(ns)
            .map(|h| h.ifaces.iter().map(|i| i.name.as_str()).collect())
            .unwrap_or_default();
        for (qs, qn) in earlier
            .iter()
            .flat_map(Link::switch_ends)
            .chain(new_ports[..i].iter().copied())
        {
            if plan.ns_node(qs) == Some(ns) {
                taken.push(qn);
            }
        }
        if taken.contains(name) {
            cx.err(
                at,
                format!(
                    "port name `{name}` is already taken in the namespace of {ns}; name the port: {{node: {sw}, port: NAME}}"
                ),
            );
        }
    }
}
