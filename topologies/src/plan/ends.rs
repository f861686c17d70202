//! One end of a link as the file names it (`h1`, `h1:eth0`, `sw1:br0` or a map), looked
//! up: a host interface, a bridge of a switch with its port's name, kind and VLANs, or
//! the switch end of an uplink.

use ctl::PortKind;

use crate::model::{EndpointMap, EndpointSpec, Location, S};

use super::errors::Cx;
use super::{vid, HostEnd, NodeKind, Nodes, Plan, Vlans};

/// One endpoint after lookup.
pub(super) enum End {
    Host(HostEnd),
    Switch {
        switch: String,
        bridge: String,
        port: Option<S<String>>,
        kind: Option<(PortKind, Location)>,
        vlans: Vlans,
    },
    /// The switch end of an uplink link.
    Uplink {
        switch: String,
        port: Option<S<String>>,
        at: Location,
    },
}

pub(super) fn resolve_end(
    cx: &mut Cx<'_>,
    e: &S<EndpointSpec>,
    plan: &Plan,
    nodes: &Nodes,
) -> Option<End> {
    let at = e.referenced;
    let (node_text, node_at, named, map) = match &e.value {
        EndpointSpec::Short(s) => (s.as_str(), at, None, None),
        EndpointSpec::Full(m) => (
            m.node.value.as_str(),
            m.node.referenced,
            m.iface.as_ref().or(m.bridge.as_ref()),
            Some(m),
        ),
    };
    let (node, colon_name) = match node_text.split_once(':') {
        Some((n, rest)) => (n, Some(rest)),
        None => (node_text, None),
    };
    if colon_name.is_some() && named.is_some() {
        return cx.fail(
            &node_at,
            format!("`{node_text}` names its interface or bridge twice (after `:` and as a key)"),
        );
    }
    let name: Option<(&str, Location)> = colon_name
        .map(|n| (n, node_at))
        .or_else(|| named.map(|n| (n.value.as_str(), n.referenced)));
    match nodes.kind(node) {
        None => {
            let mut known: Vec<&str> = nodes.kinds.keys().map(String::as_str).collect();
            known.sort_unstable();
            cx.fail(
                &node_at,
                format!(
                    "unknown node `{node}` in a link (known: {})",
                    known.join(", ")
                ),
            )
        }
        Some(NodeKind::Host) => {
            let host = plan.host(node)?;
            if let Some(m) = map {
                for (key, loc) in [
                    ("bridge", m.bridge.as_ref().map(|x| x.referenced)),
                    ("port", m.port.as_ref().map(|x| x.referenced)),
                    ("type", m.kind.as_ref().map(|x| x.referenced)),
                    ("vlan", m.vlan.as_ref().map(|x| x.referenced)),
                    ("trunk", m.trunk.as_ref().map(|x| x.referenced)),
                    ("uplink", m.uplink.as_ref().map(|x| x.referenced)),
                ] {
                    if let Some(loc) = loc {
                        cx.err(
                            &loc,
                            format!("`{key}` belongs on a switch end; `{node}` is a host"),
                        );
                    }
                }
            }
            let iface = match name {
                Some((n, loc)) => {
                    if host.ifaces.iter().all(|i| i.name != n) {
                        return cx.fail(
                            &loc,
                            format!(
                                "host {node} has no interface `{n}` (declare it under the host's `interfaces`)"
                            ),
                        );
                    }
                    n.to_string()
                }
                None => match host.ifaces.as_slice() {
                    [only] => only.name.clone(),
                    [] => {
                        return cx.fail(
                            &node_at,
                            format!("host {node} has no interfaces to link (add `interfaces`)"),
                        );
                    }
                    many => {
                        return cx.fail(
                            &node_at,
                            format!(
                                "host {node} has {} interfaces; say which: {node}:IFACE",
                                many.len()
                            ),
                        );
                    }
                },
            };
            Some(End::Host(HostEnd {
                host: node.to_string(),
                iface,
            }))
        }
        Some(NodeKind::Switch) => {
            let sw = plan.switch(node)?;
            if let Some(m) = map.filter(|m| m.uplink.as_ref().is_some_and(|u| u.value)) {
                let at = m.uplink.as_ref().map(|u| u.referenced).unwrap_or(node_at);
                if let Some((_, loc)) = name {
                    cx.err(
                        &loc,
                        "an uplink end is on no bridge (the uplink is not a bridge port); drop the bridge",
                    );
                }
                for (key, loc) in [
                    ("iface", m.iface.as_ref().map(|x| x.referenced)),
                    ("type", m.kind.as_ref().map(|x| x.referenced)),
                    ("vlan", m.vlan.as_ref().map(|x| x.referenced)),
                    ("trunk", m.trunk.as_ref().map(|x| x.referenced)),
                ] {
                    if let Some(loc) = loc {
                        cx.err(
                            &loc,
                            format!(
                                "`{key}` does not apply to an uplink end (it is not a bridge port)"
                            ),
                        );
                    }
                }
                return Some(End::Uplink {
                    switch: node.to_string(),
                    port: m.port.clone(),
                    at,
                });
            }
            let mut kind = None;
            let mut port = None;
            let mut vlans = Vlans::Unaware;
            if let Some(m) = map {
                if let Some(i) = &m.iface {
                    cx.err(
                        &i.referenced,
                        format!(
                            "`iface` belongs on a host end; `{node}` is a switch (use `bridge`)"
                        ),
                    );
                }
                if let Some(k) = &m.kind {
                    match k.value.parse::<PortKind>() {
                        Ok(pk) => kind = Some((pk, k.referenced)),
                        Err(e) => cx.err(&k.referenced, e),
                    }
                }
                port = m.port.clone();
                vlans = resolve_vlans(cx, m);
            }
            let bridge = match name {
                Some((n, loc)) => {
                    if sw.bridges.iter().all(|b| b.name != n) {
                        return cx.fail(&loc, format!("switch {node} has no bridge `{n}`"));
                    }
                    n.to_string()
                }
                None => match sw.bridges.as_slice() {
                    [only] => only.name.clone(),
                    [] => {
                        return cx.fail(&node_at, format!("switch {node} has no bridges"));
                    }
                    many => {
                        return cx.fail(
                            &node_at,
                            format!(
                                "switch {node} has {} bridges; say which: {node}:BRIDGE",
                                many.len()
                            ),
                        );
                    }
                },
            };
            Some(End::Switch {
                switch: node.to_string(),
                bridge,
                port,
                kind,
                vlans,
            })
        }
    }
}

/// The VLAN membership an endpoint asks for: `vlan: N` (access) or `trunk: [N, …]`.
fn resolve_vlans(cx: &mut Cx<'_>, m: &EndpointMap) -> Vlans {
    match (&m.vlan, &m.trunk) {
        (Some(v), Some(t)) => {
            cx.err(
                &t.referenced,
                format!(
                    "a port is an access port (`vlan`, line {}) or a trunk (`trunk`), not both",
                    v.referenced.line()
                ),
            );
            Vlans::Unaware
        }
        (Some(v), None) => match vid(cx, v) {
            Some(n) => Vlans::Access(n),
            None => Vlans::Unaware,
        },
        (None, Some(t)) => {
            if t.value.is_empty() {
                cx.err(&t.referenced, "`trunk` lists no VLAN");
            }
            let mut vids: Vec<u16> = Vec::new();
            for v in &t.value {
                let Some(n) = vid(cx, v) else { continue };
                if vids.contains(&n) {
                    cx.err(&v.referenced, format!("VLAN {n} is listed twice"));
                } else {
                    vids.push(n);
                }
            }
            Vlans::Trunk(vids)
        }
        (None, None) => Vlans::Unaware,
    }
}
