//! The controller's side of the cluster: it turns the cluster's desired state (overlays
//! and the nodes' VTEPs, handed over by the `cluster` crate) into bridges and VXLAN
//! ports, exactly as requests do, and caches that state in the config so that a restart
//! while the store is away still forwards. It never talks to etcd itself.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ctl::{validate, OverlayInfo, PortKind, Request};

use super::{ControlError, Controller};
use crate::config::{BridgeConf, ClusterConf, ConfigError};

/// The name of an overlay's VXLAN port on its bridge.
pub fn overlay_port(vni: u32) -> String {
    format!("vxo{vni}")
}

impl Controller {
    /// The cluster membership and last state, if this node is in a cluster.
    pub fn cluster_conf(&self) -> Option<&ClusterConf> {
        self.cfg.cluster.as_ref()
    }

    /// Whether bridge `name` exists and is not an overlay's.
    pub fn has_local_bridge(&self, name: &str) -> bool {
        self.cfg.bridge(name).is_some() && !self.cfg.is_overlay_bridge(name)
    }

    /// Whether overlay `name` has its bridge and tunnel here.
    pub fn carries_overlay(&self, name: &str, vni: u32) -> bool {
        self.cfg.is_overlay_bridge(name)
            && self
                .cfg
                .bridge(name)
                .is_some_and(|b| b.ports.iter().any(|p| p.name == overlay_port(vni)))
    }

    /// Refuses a request that would change what the cluster owns: an overlay's bridge,
    /// its tunnel and its network (subnet and gateway) follow the cluster
    /// (`del-overlay`), though containers may be attached to the bridge as to any other
    /// and its DNS set (`set-dns`) on each node.
    pub(super) fn guard_overlays(&self, req: &Request) -> Result<(), ControlError> {
        let bridge = match req {
            Request::DelBr { bridge }
            // A tunnel of one's own would be taken for a stale one and removed.
            | Request::AddTunnel { bridge, .. }
            | Request::DelTunnel { bridge, .. }
            | Request::AddRemote { bridge, .. }
            | Request::DelRemote { bridge, .. }
            | Request::AddNet { bridge, .. }
            | Request::DelNet { bridge } => bridge,
            Request::DelPort { bridge, iface } => {
                let tunnel = self
                    .cfg
                    .bridge(bridge)
                    .and_then(|b| b.ports.iter().find(|p| &p.name == iface))
                    .is_some_and(|p| p.kind == PortKind::Vxlan);
                if !tunnel {
                    return Ok(());
                }
                bridge
            }
            _ => return Ok(()),
        };
        if self.cfg.is_overlay_bridge(bridge) {
            return Err(ControlError::OverlayBridge(bridge.to_string()));
        }
        Ok(())
    }

    /// Joins (or rejoins) with `conf`: keeps the overlay bridges already made, and the
    /// cached state if it is the same cluster.
    pub fn set_cluster(&mut self, conf: ClusterConf) -> Result<(), ConfigError> {
        let mut next = self.cfg.clone();
        next.cluster = Some(conf);
        self.commit(next)
    }

    /// Makes bridges and tunnels follow `state`, and caches it. Idempotent; what fails
    /// (a port that cannot be bound, a name taken by a local bridge) is logged and tried
    /// again on the next call.
    pub fn apply_cluster(&mut self, state: impl Into<Arc<cluster::State>>) {
        let Some(cc) = self.cfg.cluster.clone() else {
            return;
        };
        let shared = state.into();
        let state = &*shared;
        if !Arc::ptr_eq(&cc.state, &shared) && *cc.state != *state {
            let mut next = self.cfg.clone();
            if let Some(c) = next.cluster.as_mut() {
                c.state = shared.clone();
            }
            if let Err(e) = self.commit(next) {
                tracing::warn!("cannot cache the cluster state: {e}");
            }
        }
        let remotes: Vec<(Ipv4Addr, Option<String>)> = state
            .remotes(&cc.node, cc.advertise)
            .into_iter()
            .map(|a| (a, None))
            .collect();
        // An encrypted overlay reaches only the nodes that published a key.
        let peers: Vec<(Ipv4Addr, Option<String>)> = state
            .peers(&cc.node, cc.advertise)
            .into_iter()
            .map(|(a, k)| (a, Some(k)))
            .collect();
        for b in &cc.bridges {
            if !state.overlays.contains_key(b) {
                if let Err(e) = self.remove_overlay_bridge(b) {
                    tracing::warn!(overlay = %b, "cannot remove the overlay's bridge: {e}");
                }
            }
        }
        for o in state.overlays.values() {
            let rs = if o.encrypted { &peers } else { &remotes };
            if let Err(e) = self.ensure_overlay(o, rs, cc.advertise) {
                tracing::warn!(overlay = %o.name, "cannot carry the overlay: {e}");
            }
        }
        self.apply_services(state);
        self.apply_endpoints(state);
    }

    /// Applies the cached state again (to retry what failed).
    pub fn reconcile_cluster(&mut self) {
        if let Some(s) = self.cfg.cluster.as_ref().map(|c| c.state.clone()) {
            self.apply_cluster(s);
        }
    }

    fn remove_overlay_bridge(&mut self, name: &str) -> Result<(), ControlError> {
        if self.cfg.bridge(name).is_some() {
            // del-br without the overlay guard.
            self.del_bridge(name)?;
        }
        let mut next = self.cfg.clone();
        if let Some(c) = next.cluster.as_mut() {
            c.bridges.retain(|b| b != name);
        }
        self.commit(next)?;
        tracing::info!(overlay = %name, "overlay bridge removed");
        Ok(())
    }

    /// Makes overlay `o`'s bridge and tunnel exist towards exactly `remotes` (each with
    /// its public key if `o` is encrypted).
    fn ensure_overlay(
        &mut self,
        o: &cluster::OverlayRecord,
        remotes: &[(Ipv4Addr, Option<String>)],
        local: Ipv4Addr,
    ) -> Result<(), ControlError> {
        let port = overlay_port(o.vni);
        if self.cfg.bridge(&o.name).is_none() {
            validate::bridge_name(&o.name)?;
            let bc = BridgeConf::new(&o.name);
            let mut next = self.cfg.clone();
            next.bridges.push(bc.clone());
            if let Some(c) = next.cluster.as_mut() {
                if !c.bridges.contains(&o.name) {
                    c.bridges.push(o.name.clone());
                }
            }
            self.commit(next)?;
            self.create_bridge_rt(&bc);
            self.publish();
            tracing::info!(overlay = %o.name, vni = o.vni, "overlay bridge created");
        } else if !self.cfg.is_overlay_bridge(&o.name) {
            return Err(ControlError::BridgeExists(o.name.clone()));
        }
        self.ensure_overlay_net(o)?;
        let Some(b) = self.cfg.bridge(&o.name) else {
            return Ok(());
        };
        // A tunnel of an earlier overlay of the same name (another VNI) goes first.
        let stale: Vec<String> = b
            .ports
            .iter()
            .filter(|p| p.kind == PortKind::Vxlan && p.name != port)
            .map(|p| p.name.clone())
            .collect();
        let current = b
            .ports
            .iter()
            .find(|p| p.name == port)
            .and_then(|p| p.tunnel.clone());
        for p in stale {
            self.del_port(&o.name, &p, true)?;
        }
        let listen_port = o.listen_port.filter(|_| o.encrypted);
        let peer = |k: &Option<String>| {
            k.as_ref().map(|k| ctl::PeerSpec {
                public_key: k.clone(),
                inner_remote: None,
            })
        };
        match current {
            Some(t)
                if t.vni == o.vni
                    && t.local == Some(local)
                    && t.encrypt.as_ref().map(|e| e.listen_port) == listen_port =>
            {
                let new: Vec<(Ipv4Addr, Option<ctl::PeerSpec>)> = remotes
                    .iter()
                    .filter(|(r, _)| !t.remotes.contains(r))
                    .map(|(r, k)| (*r, peer(k)))
                    .collect();
                self.add_remotes(&o.name, &port, &new)?;
                for (r, _) in &new {
                    tracing::info!(overlay = %o.name, remote = %r, "remote VTEP added");
                }
                for r in t
                    .remotes
                    .iter()
                    .filter(|r| !remotes.iter().any(|(a, _)| a == *r))
                {
                    self.del_remote(&o.name, &port, IpAddr::V4(*r))?;
                    tracing::info!(overlay = %o.name, remote = %r, "remote VTEP removed");
                }
                if let Some(e) = &t.encrypt {
                    for (r, k) in remotes {
                        let (Some(k), Some(p)) = (k, e.peer(*r)) else {
                            continue;
                        };
                        if wg::PublicKey::parse(k).ok() != wg::PublicKey::parse(&p.public_key).ok()
                        {
                            self.set_peer_key(&o.name, &port, *r, k)?;
                            tracing::info!(overlay = %o.name, remote = %r, key = %k, "remote's public key changed");
                        }
                    }
                }
            }
            Some(_) => {
                self.del_port(&o.name, &port, true)?;
                return self.ensure_overlay(o, remotes, local);
            }
            None => {
                let rs: Vec<IpAddr> = remotes.iter().map(|(r, _)| IpAddr::V4(*r)).collect();
                let encrypt = listen_port.map(|listen_port| ctl::EncryptSpec {
                    listen_port,
                    inner_local: None,
                    peers: remotes.iter().filter_map(|(_, k)| peer(k)).collect(),
                });
                self.add_tunnel(
                    &o.name,
                    &port,
                    o.vni,
                    &rs,
                    Some(IpAddr::V4(local)),
                    ctl::DEFAULT_VXLAN_PORT,
                    None,
                    encrypt.as_ref(),
                )?;
                let remotes: Vec<Ipv4Addr> = remotes.iter().map(|(r, _)| *r).collect();
                tracing::info!(overlay = %o.name, vni = o.vni, remotes = ?remotes, encrypted = o.encrypted, "overlay tunnel created");
            }
        }
        Ok(())
    }

    /// Serves the overlay's gateway on this node: the bridge gets the overlay's subnet
    /// and gateway address as its network, so that the gateway answers ARP, ping and
    /// DNS (with every node's endpoints' names) and routes to the uplink here. Every
    /// node serves the same address with the same MAC (it follows the bridge's name),
    /// as an anycast gateway: a container's traffic to it never leaves its node. DNS
    /// settings made on this node are kept.
    fn ensure_overlay_net(&mut self, o: &cluster::OverlayRecord) -> Result<(), ControlError> {
        let Some(b) = self.cfg.bridge(&o.name) else {
            return Ok(());
        };
        if b.net
            .as_ref()
            .is_some_and(|n| n.subnet == o.subnet && n.gateway == o.gateway)
        {
            return Ok(());
        }
        let mut next = self.cfg.clone();
        if let Some(b) = next.bridge_mut(&o.name) {
            let (domain, upstream, records) = b
                .net
                .take()
                .map(|n| (n.domain, n.upstream, n.records))
                .unwrap_or_default();
            b.net = Some(crate::config::NetConf {
                subnet: o.subnet.clone(),
                gateway: o.gateway,
                domain,
                upstream,
                records,
            });
        }
        self.commit(next)?;
        self.sync_gateway();
        tracing::info!(overlay = %o.name, gateway = %o.gateway, "overlay gateway served");
        Ok(())
    }

    /// The ports of overlay `name`'s bridge here other than its tunnel.
    pub fn overlay_ports(&self, name: &str) -> Vec<String> {
        self.cfg
            .bridge(name)
            .filter(|_| self.cfg.is_overlay_bridge(name))
            .map(|b| {
                b.ports
                    .iter()
                    .filter(|p| p.kind != PortKind::Vxlan)
                    .map(|p| p.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The overlays of `state` as `list-overlays` shows them from this node.
    pub fn overlay_infos(&self, state: &cluster::State) -> Vec<OverlayInfo> {
        state
            .overlays
            .values()
            .map(|o| {
                let bridge = self
                    .cfg
                    .bridge(&o.name)
                    .filter(|_| self.cfg.is_overlay_bridge(&o.name));
                let remotes = bridge
                    .and_then(|b| b.ports.iter().find(|p| p.name == overlay_port(o.vni)))
                    .and_then(|p| p.tunnel.as_ref())
                    .map(|t| t.remotes.iter().map(|r| r.to_string()).collect())
                    .unwrap_or_default();
                let reserved = self
                    .reserved()
                    .iter()
                    .filter(|r| r.overlay == o.name)
                    .map(|r| format!("{} {}", r.ip, r.container))
                    .collect();
                OverlayInfo {
                    name: o.name.clone(),
                    vni: o.vni,
                    subnet: o.subnet.clone(),
                    gateway: o.gateway.to_string(),
                    bridge: bridge.map(|b| b.name.clone()),
                    remotes,
                    encrypted: o.encrypted,
                    listen_port: o.listen_port,
                    reserved,
                }
            })
            .collect()
    }
}
