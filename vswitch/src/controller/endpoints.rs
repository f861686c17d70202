//! The controller's side of endpoint distribution: the cluster's endpoints become, on
//! each overlay bridge, static FDB entries towards the VTEP of the node each remote
//! endpoint lives on (and towards the port of each local one), and the bridge's ARP table (every endpoint's address and MAC), so
//! the first frame to a remote container is neither flooded nor preceded by a flooded
//! ARP request. It also says which endpoints this node owns: its live containers
//! attached to overlays, which the cluster keeps under the node's lease.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use super::cluster::overlay_port;
use super::Controller;
use crate::fdb::{dest, Dest};
use crate::pipeline::suppress::ArpTable;
use crate::sys::netns;
use crate::wire::MacAddr;

/// A DNS name of an endpoint on another node, which this node's gateway answers for
/// the overlay as it does for its own containers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RemoteName {
    pub name: String,
    pub addr: Ipv4Addr,
    pub node: String,
}

impl Controller {
    /// Makes the overlay bridges' static entries and ARP tables follow the endpoints of
    /// `state`. Idempotent: entries that vanished (a flushed remote, a rebuilt table) are
    /// put back on the next call.
    pub(super) fn apply_endpoints(&mut self, state: &cluster::State) {
        let Some(me) = self.cfg.cluster.as_ref().map(|c| c.node.clone()) else {
            return;
        };
        let mut seen = Vec::new();
        let mut names_changed = false;
        for o in state.overlays.values() {
            if !self.cfg.is_overlay_bridge(&o.name) {
                continue;
            }
            let (Some(br), Some(tun)) = (
                self.bridges.get(&o.name).cloned(),
                self.ports.get(&overlay_port(o.vni)).cloned(),
            ) else {
                continue;
            };
            seen.push(o.name.clone());
            let slots: Vec<(Ipv4Addr, u16)> = tun
                .tunnel
                .as_ref()
                .map(|t| t.remotes.load().iter().map(|r| (r.addr, r.slot)).collect())
                .unwrap_or_default();
            // This node's attached containers on the bridge, by MAC.
            let local: HashMap<String, crate::fdb::PortId> = self
                .cfg
                .bridge(&o.name)
                .into_iter()
                .flat_map(|b| &b.ports)
                .filter_map(|p| {
                    let mac = p.attach.as_ref()?.mac.clone()?;
                    Some((mac, self.ports.get(&p.name)?.id))
                })
                .collect();
            let mut want: HashMap<MacAddr, Dest> = HashMap::new();
            let mut arp = Vec::new();
            let mut names = Vec::new();
            // The overlay's gateway is served on every node with the same address and
            // MAC (the MAC follows the bridge's name): a container's ARP for it is
            // answered here and never crosses the underlay to another node's copy.
            // Its MAC is pinned to the gateway's port, so that a frame to it is never
            // unknown unicast flooded to the other nodes before the gateway has spoken.
            if let Some(n) = self.cfg.bridge(&o.name).and_then(|b| b.net.as_ref()) {
                let mac = crate::gateway::gateway_mac(&o.name);
                arp.push((n.gateway, mac));
                if let Some(g) = self.ports.get(&super::gateway::gateway_key(&o.name)) {
                    want.insert(mac, dest(g.id, 0));
                }
            }
            for e in state
                .members
                .get(&o.name)
                .into_iter()
                .flat_map(|m| m.values())
            {
                let Ok(mac) = e.mac.parse::<MacAddr>() else {
                    continue;
                };
                if e.node == me {
                    // Pinned to its port, so that it never ages into unknown unicast
                    // that would be flooded to every host.
                    if let Some(p) = local.get(&e.mac) {
                        want.insert(mac, dest(*p, 0));
                    } else if self.cfg.mesh_of(&o.name).is_some_and(|(_, m)| m == mac) {
                        // This node's mesh address belongs to its gateway.
                        if let Some(g) = self.ports.get(&super::gateway::gateway_key(&o.name)) {
                            want.insert(mac, dest(g.id, 0));
                        }
                    }
                    arp.push((e.ip, mac));
                    continue;
                }
                // A remote endpoint is reachable through its node's VTEP, while that
                // node is alive and a remote of the tunnel.
                let Some(slot) = state
                    .nodes
                    .get(&e.node)
                    .and_then(|n| slots.iter().find(|(a, _)| *a == n.vtep))
                    .map(|(_, s)| *s)
                else {
                    continue;
                };
                want.insert(mac, dest(tun.id, slot));
                arp.push((e.ip, mac));
                names.extend(e.names.iter().map(|n| RemoteName {
                    name: n.clone(),
                    addr: e.ip,
                    node: e.node.clone(),
                }));
            }
            let fdb = br.fdb.load();
            let had = self.cluster_fdb.remove(&o.name).unwrap_or_default();
            for (mac, _) in had.iter().filter(|(m, _)| !want.contains_key(*m)) {
                fdb.remove_static(0, *mac);
            }
            for (mac, d) in &want {
                if !fdb.set_static(0, *mac, *d) {
                    tracing::warn!(overlay = %o.name, %mac, "FDB full: remote endpoint not installed");
                }
            }
            let table = ArpTable::new(arp);
            if br.suppress.load().as_deref() != Some(&table) {
                tracing::debug!(overlay = %o.name, endpoints = table.len(), remote = want.len(), "endpoints applied");
                br.suppress.store(Some(Arc::new(table)));
            }
            self.cluster_fdb.insert(o.name.clone(), want);
            names.sort();
            if self.cluster_names.get(&o.name) != Some(&names) {
                self.cluster_names.insert(o.name.clone(), names);
                names_changed = true;
            }
        }
        self.cluster_fdb.retain(|b, _| seen.contains(b));
        let before = self.cluster_names.len();
        self.cluster_names.retain(|b, _| seen.contains(b));
        if names_changed || self.cluster_names.len() != before {
            self.sync_dns();
        }
    }

    /// The endpoints this node owns: containers attached to overlay bridges (with the
    /// MAC and address the cluster gave them) whose namespace still lives.
    pub fn cluster_endpoints(&self) -> Vec<cluster::EndpointRecord> {
        let Some(cc) = self.cfg.cluster.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for b in cc.bridges.iter().filter_map(|b| self.cfg.bridge(b)) {
            for p in &b.ports {
                let Some(a) = &p.attach else { continue };
                let (Some(mac), Some(ip)) = (
                    a.mac.clone(),
                    a.ip.split_once('/')
                        .and_then(|(ip, _)| ip.parse::<Ipv4Addr>().ok()),
                ) else {
                    continue;
                };
                let alive = netns::id(Path::new(&a.netns)).is_ok_and(|id| id == a.netns_id);
                if !alive {
                    continue;
                }
                out.push(cluster::EndpointRecord {
                    overlay: b.name.clone(),
                    mac,
                    ip,
                    node: cc.node.clone(),
                    container: a.container.clone(),
                    names: dns_names(p),
                });
            }
        }
        // Reserved for containers others plug in (Docker's IPAM driver): theirs until
        // released, whether or not the container is plugged in yet. Once one is (a port
        // of the overlay bound to the address), it carries that port's `set-names`
        // names, so that the other nodes answer them too.
        out.extend(cc.reserved.iter().map(|r| {
            let mut r = r.clone();
            r.names = self
                .cfg
                .bridge(&r.overlay)
                .into_iter()
                .flat_map(|b| &b.ports)
                .find(|p| p.attach.is_none() && super::names::port_addr(p) == Some(r.ip))
                .map(dns_names)
                .unwrap_or_default();
            r
        }));
        // The mesh addresses of this node's gateway.
        out.extend(cc.mesh.iter().cloned());
        out
    }

    /// The endpoint a port of overlay bridge `bridge` attached as `ifname` in `netns`
    /// (or to `container`) stands for, if it is one.
    pub fn overlay_endpoint(
        &self,
        bridge: &str,
        netns_path: &str,
        ifname: &str,
        container: Option<&str>,
    ) -> Option<cluster::EndpointRecord> {
        let cc = self.cfg.cluster.as_ref()?;
        if !self.cfg.is_overlay_bridge(bridge) {
            return None;
        }
        let pc = self.find_attached(bridge, netns_path, ifname, container)?;
        let a = pc.attach.as_ref()?;
        Some(cluster::EndpointRecord {
            overlay: bridge.to_string(),
            mac: a.mac.clone()?,
            ip: a.ip.split_once('/')?.0.parse().ok()?,
            node: cc.node.clone(),
            container: a.container.clone(),
            names: dns_names(&pc),
        })
    }

    /// Whether bridge `name` is a cluster overlay's.
    pub fn is_overlay_bridge(&self, name: &str) -> bool {
        self.cfg.is_overlay_bridge(name)
    }
}

/// The DNS names of a port, as published with its endpoint (lower case, as the gateway
/// answers them): those it was attached with, then those `set-names` gave it.
fn dns_names(p: &crate::config::PortConf) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let attached = p
        .attach
        .iter()
        .flat_map(|a| a.name.iter().chain(&a.aliases));
    for n in attached.chain(&p.names).map(|n| n.to_ascii_lowercase()) {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}
