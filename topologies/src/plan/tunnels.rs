//! VXLAN tunnels: each tunnel's bridge, VNI, UDP port, VLAN, local address and remotes
//! (a switch, a host, `HOST:IFACE` or an address), and one VXLAN socket per host address
//! and port.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::model::{TopologyFile, S};

use super::errors::Cx;
use super::{iface_name, vid, Cidr, NodeKind, Nodes, Plan};

/// The VXLAN port of the IANA.
pub const VXLAN_PORT: u16 = 4789;

/// A VXLAN tunnel port of a switch (`vsctl add-tunnel`).
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// The port's name.
    pub name: String,
    pub bridge: String,
    pub vni: u32,
    pub remotes: Vec<Remote>,
    /// The underlay address to bind (none: the kernel chooses).
    pub local: Option<Ipv4Addr>,
    pub dstport: u16,
    /// The bridge VLAN the tunnel carries as an access port.
    pub vlan: Option<u16>,
    /// VXLAN inside WireGuard, with the remotes' keys.
    pub crypto: Option<super::Crypto>,
}

/// A far VTEP of a tunnel.
#[derive(Debug, Clone)]
pub struct Remote {
    pub ip: Ipv4Addr,
    /// How the file named it (a switch, a host, `HOST:IFACE` or the address itself).
    pub named: String,
}

impl Tunnel {
    /// The `vsctl` arguments that create it.
    pub fn add_args(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "add-tunnel".into(),
            self.bridge.clone(),
            self.name.clone(),
            "--vni".into(),
            self.vni.to_string(),
        ];
        for r in &self.remotes {
            v.push("--remote".into());
            v.push(r.ip.to_string());
        }
        if let Some(l) = self.local {
            v.push("--local".into());
            v.push(l.to_string());
        }
        if self.dstport != VXLAN_PORT {
            v.push("--dstport".into());
            v.push(self.dstport.to_string());
        }
        if let Some(vid) = self.vlan {
            v.push("--vlan".into());
            v.push(vid.to_string());
        }
        if let Some(c) = &self.crypto {
            v.extend(c.args());
        }
        v
    }
}

/// The addresses of host `name` (empty for an unknown host).
fn host_addrs(plan: &Plan, name: &str) -> Vec<(String, Cidr)> {
    plan.host(name)
        .map(|h| {
            h.ifaces
                .iter()
                .filter_map(|i| i.addr.map(|a| (i.name.clone(), a)))
                .collect()
        })
        .unwrap_or_default()
}

/// A far VTEP as the file names it: a switch or host (its address on a subnet the
/// local host shares), `HOST:IFACE`, or an IPv4 address. `own` is the switch's host.
fn resolve_remote(
    cx: &mut Cx<'_>,
    r: &S<String>,
    own: &str,
    plan: &Plan,
    nodes: &Nodes,
) -> Option<Ipv4Addr> {
    let text = r.value.as_str();
    let mine = host_addrs(plan, own);
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        if let Err(e) = ctl::validate::remote(&ip.into()) {
            return cx.fail(&r.referenced, e);
        }
        if mine.iter().any(|(_, c)| c.ip == ip) {
            return cx.fail(
                &r.referenced,
                format!("remote {ip} is an address of {own}, this switch's own host"),
            );
        }
        return Some(ip);
    }
    if let Some((h, i)) = text.split_once(':') {
        let Some(host) = plan.host(h) else {
            return cx.fail(
                &r.referenced,
                format!("remote `{text}`: unknown host `{h}`"),
            );
        };
        if h == own {
            return cx.fail(
                &r.referenced,
                format!("remote `{text}` is on {own}, this switch's own host"),
            );
        }
        return match host.ifaces.iter().find(|x| x.name == i) {
            Some(x) => match x.addr {
                Some(c) => Some(c.ip),
                None => cx.fail(
                    &r.referenced,
                    format!("remote `{text}` has no IPv4 address"),
                ),
            },
            None => cx.fail(
                &r.referenced,
                format!("remote `{text}`: host {h} has no interface `{i}`"),
            ),
        };
    }
    let host = match nodes.kind(text) {
        Some(NodeKind::Host) => text.to_string(),
        Some(NodeKind::Switch) => match plan.switch(text).and_then(|s| s.host.clone()) {
            Some(h) => h,
            None => {
                return cx.fail(
                    &r.referenced,
                    format!(
                        "remote `{text}` is a switch in a namespace of its own, with no underlay address; \
                         give it `host:` or name an address"
                    ),
                );
            }
        },
        None => {
            return cx.fail(
                &r.referenced,
                format!(
                    "remote `{text}` is neither a switch, a host, HOST:IFACE nor an IPv4 address"
                ),
            );
        }
    };
    if host == own {
        return cx.fail(
            &r.referenced,
            format!("remote `{text}` runs on {own}, this switch's own host"),
        );
    }
    let shared: Vec<(String, Cidr)> = host_addrs(plan, &host)
        .into_iter()
        .filter(|(_, c)| {
            mine.iter()
                .any(|(_, m)| m.contains(c.ip) && c.contains(m.ip))
        })
        .collect();
    match shared.as_slice() {
        [(_, c)] => Some(c.ip),
        [] => {
            let mine: Vec<String> = mine.iter().map(|(_, c)| c.to_string()).collect();
            cx.fail(
                &r.referenced,
                format!(
                    "remote `{text}`: host {host} has no address on a subnet of {own} ({}); \
                     add an underlay link between them or name an address",
                    if mine.is_empty() {
                        "no addresses".to_string()
                    } else {
                        mine.join(", ")
                    }
                ),
            )
        }
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|(i, c)| format!("{host}:{i} {}", c.ip))
                .collect();
            cx.fail(
                &r.referenced,
                format!(
                    "remote `{text}`: host {host} has several addresses on {own}'s subnets ({}); name one as HOST:IFACE",
                    names.join(", ")
                ),
            )
        }
    }
}

/// The `tunnels` of every switch: VNI, remotes, local address, port, VLAN, and names
/// that clash with nothing.
pub(super) fn resolve_tunnels(cx: &mut Cx<'_>, tf: &TopologyFile, nodes: &Nodes, plan: &mut Plan) {
    // (host, local, dstport) -> (switch, line): one VXLAN socket per address and port.
    let mut sockets: HashMap<(String, Option<Ipv4Addr>, u16), (String, u64)> = HashMap::new();
    for (si, s) in tf.switches.iter().enumerate() {
        let s = &s.value;
        let Some(sw) = plan.switches.get(si).cloned() else {
            continue;
        };
        let mut tunnels: Vec<Tunnel> = Vec::new();
        // (local, dstport, vni) -> (tunnel, line)
        let mut vnis: HashMap<(Option<Ipv4Addr>, u16, u32), (String, u64)> = HashMap::new();
        for t in &s.tunnels {
            let at = t.referenced;
            let t = &t.value;
            let Some(own) = sw.host.clone() else {
                cx.err(
                    &at,
                    format!(
                        "switch {} has tunnels but runs in a namespace of its own; give it `host:` \
                         (the machine whose interfaces are its underlay)",
                        sw.name
                    ),
                );
                continue;
            };
            let errs_before = cx.errs.len();
            let bridge = match &t.bridge {
                Some(b) => {
                    if sw.bridges.iter().all(|x| x.name != b.value) {
                        cx.err(
                            &b.referenced,
                            format!("switch {} has no bridge `{}`", sw.name, b.value),
                        );
                    }
                    b.value.clone()
                }
                None => match sw.bridges.as_slice() {
                    [only] => only.name.clone(),
                    [] => {
                        cx.err(
                            &at,
                            format!("switch {} has no bridges for a tunnel", sw.name),
                        );
                        String::new()
                    }
                    _ => {
                        cx.err(
                            &at,
                            format!(
                                "switch {} has several bridges; add `bridge:` to the tunnel",
                                sw.name
                            ),
                        );
                        String::new()
                    }
                },
            };
            let vni = match u32::try_from(t.vni.value)
                .ok()
                .filter(|v| ctl::validate::vni(*v).is_ok())
            {
                Some(v) => v,
                None => {
                    cx.err(
                        &t.vni.referenced,
                        format!(
                            "VNI {} is outside 0..={}",
                            t.vni.value,
                            ctl::validate::VNI_MAX
                        ),
                    );
                    0
                }
            };
            let dstport = match &t.dstport {
                Some(p) => match u16::try_from(p.value).ok().filter(|p| *p > 0) {
                    Some(p) => p,
                    None => {
                        cx.err(
                            &p.referenced,
                            format!("dstport {} is outside 1..=65535", p.value),
                        );
                        VXLAN_PORT
                    }
                },
                None => VXLAN_PORT,
            };
            let vlan = t.vlan.as_ref().and_then(|v| vid(cx, v));
            let name = match &t.name {
                Some(n) => {
                    if let Err(e) = iface_name(&n.value) {
                        cx.err(&n.referenced, format!("tunnel {e}"));
                    }
                    n.value.clone()
                }
                None => format!("vxlan{vni}"),
            };
            let name_at = t.name.as_ref().map(|n| n.referenced).unwrap_or(at);
            if plan.ports_of(&sw.name).any(|p| p.name == name) {
                cx.err(
                    &name_at,
                    format!(
                        "tunnel name `{name}` is already a port of switch {} (from a link); name the tunnel: `name: …`",
                        sw.name
                    ),
                );
            } else if tunnels.iter().any(|x| x.name == name) {
                cx.err(
                    &name_at,
                    format!("switch {} already has a tunnel `{name}`", sw.name),
                );
            }
            let mine = host_addrs(plan, &own);
            let local = match &t.local {
                None => None,
                Some(l) => {
                    let found = match l.value.split_once(':') {
                        Some((h, i)) if h == own => {
                            mine.iter().find(|(n, _)| n == i).map(|(_, c)| c.ip)
                        }
                        Some(_) => None,
                        None => l
                            .value
                            .parse::<Ipv4Addr>()
                            .ok()
                            .filter(|ip| mine.iter().any(|(_, c)| c.ip == *ip)),
                    };
                    if found.is_none() {
                        let list: Vec<String> = mine
                            .iter()
                            .map(|(i, c)| format!("{own}:{i} {}", c.ip))
                            .collect();
                        cx.err(
                            &l.referenced,
                            format!(
                                "local `{}` is not an address of {own}, this switch's host (its addresses: {})",
                                l.value,
                                if list.is_empty() { "none".to_string() } else { list.join(", ") }
                            ),
                        );
                    }
                    found
                }
            };
            if t.remotes.value.is_empty() {
                cx.err(&t.remotes.referenced, "`remotes` lists no VTEP");
            }
            let mut remotes: Vec<Remote> = Vec::new();
            for r in &t.remotes.value {
                let Some(ip) = resolve_remote(cx, r, &own, plan, nodes) else {
                    continue;
                };
                if let Some(first) = remotes.iter().find(|x| x.ip == ip) {
                    cx.err(
                        &r.referenced,
                        format!(
                            "remote `{}` is {ip}, already listed as `{}`",
                            r.value, first.named
                        ),
                    );
                    continue;
                }
                remotes.push(Remote {
                    ip,
                    named: r.value.clone(),
                });
            }
            let named: Vec<(String, Ipv4Addr)> =
                remotes.iter().map(|r| (r.named.clone(), r.ip)).collect();
            let crypto = super::wireguard::resolve_crypto(cx, t, &at, &named);
            if cx.errs.len() > errs_before {
                continue;
            }
            if let Some((other, line)) =
                vnis.insert((local, dstport, vni), (name.clone(), at.line()))
            {
                cx.err(
                    &t.vni.referenced,
                    format!(
                        "VNI {vni} on UDP port {dstport} is already tunnel {other} (line {line})"
                    ),
                );
                continue;
            }
            // An encrypted tunnel's socket is its WireGuard listen port.
            let key = (
                own.clone(),
                local,
                crypto.as_ref().map_or(dstport, |c| c.listen_port),
            );
            match sockets.get(&key) {
                Some((other, line)) if *other != sw.name => {
                    cx.err(
                        &at,
                        format!(
                            "switch {other} (line {line}) already has tunnels on UDP port {dstport} of host {own}; \
                             give this tunnel another `dstport` or `local`"
                        ),
                    );
                    continue;
                }
                Some(_) => {}
                None => {
                    sockets.insert(key, (sw.name.clone(), at.line()));
                }
            }
            tunnels.push(Tunnel {
                name,
                bridge,
                vni,
                remotes,
                local,
                dstport,
                vlan,
                crypto,
            });
        }
        if let Some(x) = plan.switches.get_mut(si) {
            x.tunnels = tunnels;
        }
    }
}
