//! The control plane: applies requests to the desired state, persists it, and turns it
//! into runtime objects and a new dataplane snapshot. Also the housekeeper: ages FDBs,
//! compacts them, and re-attaches ports whose interface came back.
//!
//! Every mutating request is checked in full, and anything that can fail (opening the
//! interface, writing the file) happens before the running state changes, so a refused
//! request leaves config and dataplane exactly as they were.

mod attach;
pub(crate) use attach::{check_names, dns_name};
mod cluster;
mod dns;
mod endpoints;
mod error;
mod gateway;
mod mesh;
mod metrics;
mod names;
mod overlay_keys;
mod overlay_remotes;
mod portsec;
mod reserve;
mod show;
mod tunnels;
use tunnels::{not_a_tunnel, remote_rt, vtep_key};
pub(crate) mod services;
#[cfg(test)]
mod tests;

pub use attach::AttachError;
pub use cluster::overlay_port;
pub use error::ControlError;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::net::{IpAddr, Ipv4Addr};

use ctl::{
    validate, BridgeInfo, BridgeStats, Data, FdbEntry, PortInfo, PortKind, PortStats, PortVlans,
    RemoteInfo, Request, TunnelInfo, VlanRow, VtepStats,
};

use crate::config::{
    check_vlans, BridgeConf, Config, ConfigError, PortConf, StaticFdb, Store, TunnelConf,
};
use crate::dataplane::{
    BridgeRt, BridgeView, GatewayGuard, GatewayRt, GatewayView, PortRt, Shared, Snapshot,
    WorkerMsg, UPLINK_BRIDGE,
};
use crate::fdb::{dest, port_of, remote_of, Fdb, PortId, PORT_ID_LIMIT};
use crate::port::PortIo;
use crate::sys::iface;
use crate::tunnel::{RemoteRt, TunnelRt, VtepError, VtepKey, VtepRt};
use crate::vlan::VlanTable;
use crate::wire::MacAddr;

/// Ports of a bridge that share one worker before the next worker is used.
const PORTS_PER_WORKER_GROUP: usize = 8;

/// The control plane's state.
pub struct Controller {
    cfg: Config,
    store: Store,
    shared: Arc<Shared>,
    bridges: HashMap<String, Arc<BridgeRt>>,
    /// By interface name.
    ports: HashMap<String, Arc<PortRt>>,
    /// VXLAN sockets, shared by the tunnels on the same local address and UDP port.
    vteps: HashMap<VtepKey, Arc<VtepRt>>,
    /// Housekeeping rounds so far.
    tick: u64,
    /// The gateway (routes only once a network or the uplink is configured).
    gateway: Arc<GatewayRt>,
    /// The uplink interface's MAC as last read.
    uplink_mac: Option<MacAddr>,
    /// Static entries made for remote cluster endpoints, by overlay bridge.
    cluster_fdb: HashMap<String, HashMap<MacAddr, crate::fdb::Dest>>,
    /// The DNS names of remote cluster endpoints, by overlay bridge.
    cluster_names: HashMap<String, Vec<endpoints::RemoteName>>,
}

impl Controller {
    /// Restores `cfg` (already loaded from `store`): creates every bridge and port and
    /// attaches the ports whose interfaces are there.
    pub fn new(cfg: Config, store: Store, shared: Arc<Shared>) -> Self {
        let mut c = Controller {
            cfg: Config::default(),
            store,
            shared,
            bridges: HashMap::new(),
            ports: HashMap::new(),
            vteps: HashMap::new(),
            cluster_fdb: HashMap::new(),
            cluster_names: HashMap::new(),
            tick: 0,
            gateway: Arc::new(GatewayRt {
                // The first bridge's ports are on worker 0 too: its traffic to the
                // uplink then needs no hand-off between threads.
                owner: 0,
                state: std::sync::Mutex::new(crate::gateway::Gateway::new()),
                published: Default::default(),
            }),
            uplink_mac: None,
        };
        for b in &cfg.bridges {
            let br = c.create_bridge_rt(b);
            for p in &b.ports {
                if let Some(t) = &p.tunnel {
                    if let Err(e) = c.vtep_for(t, br.id) {
                        let rt = c.create_port_rt(&b.name, p);
                        rt.set_down(e.to_string());
                        continue;
                    }
                }
                let rt = c.create_port_rt(&b.name, p);
                let opened = PortIo::open(p.kind, &p.name, c.shared.rx_ring, rt.tap_mac)
                    .map_err(|e| e.to_string())
                    .and_then(|io| {
                        // An attached TAP died with the last daemon: back into its
                        // container first.
                        if p.kind == PortKind::Tap {
                            c.replace_tap(p).map_err(|e| e.to_string())?;
                        }
                        Ok(io)
                    });
                match opened {
                    Ok(io) => c.attach(&rt, io),
                    Err(e) => rt.set_down(e),
                }
            }
        }
        c.cfg = cfg;
        c.sync_gateway();
        c.refresh_tunnels();
        for b in &c.cfg.bridges {
            c.install_statics(b);
        }
        // The overlays of the last cluster state seen, until the store says more.
        c.reconcile_cluster();
        c
    }

    /// Handles one request.
    pub fn handle(&mut self, req: Request) -> Result<Data, ControlError> {
        self.guard_overlays(&req)?;
        match req {
            Request::AddBr { bridge } => {
                validate::bridge_name(&bridge)?;
                if self.cfg.bridge(&bridge).is_some() {
                    return Err(ControlError::BridgeExists(bridge));
                }
                let bc = BridgeConf::new(&bridge);
                let mut next = self.cfg.clone();
                next.bridges.push(bc.clone());
                self.commit(next)?;
                self.create_bridge_rt(&bc);
                self.publish();
                Ok(Data::Done)
            }
            Request::DelBr { bridge } => self.del_bridge(&bridge),
            Request::ListBr => Ok(Data::Bridges {
                bridges: self.cfg.bridges.iter().map(|b| b.name.clone()).collect(),
            }),
            Request::AddPort {
                bridge,
                iface,
                kind,
                external_ids,
            } => self.add_port(&bridge, &iface, kind, external_ids),
            Request::DelPort { bridge, iface } => self.del_port(&bridge, &iface, false),
            Request::AddTunnel {
                bridge,
                name,
                vni,
                remotes,
                local,
                dstport,
                vlan,
                encrypt,
            } => self.add_tunnel(
                &bridge,
                &name,
                vni,
                &remotes,
                local,
                dstport,
                vlan,
                encrypt.as_ref(),
            ),
            Request::DelTunnel { bridge, name } => self.del_port(&bridge, &name, true),
            Request::AddRemote {
                bridge,
                name,
                remote,
                peer,
            } => self.add_remote(&bridge, &name, remote, peer.as_ref()),
            Request::DelRemote {
                bridge,
                name,
                remote,
            } => self.del_remote(&bridge, &name, remote),
            Request::AddFdb {
                bridge,
                mac,
                port,
                remote,
                vlan,
            } => self.add_fdb(&bridge, &mac, &port, remote, vlan),
            Request::DelFdb { bridge, mac, vlan } => self.del_fdb(&bridge, &mac, vlan),
            Request::ListPorts { bridge } => {
                let b = self.bridge_conf(&bridge)?;
                Ok(Data::Ports {
                    ports: b.ports.iter().map(|p| p.name.clone()).collect(),
                })
            }
            Request::Show => Ok(self.show()),
            Request::FdbShow { bridge } => self.fdb_show(&bridge),
            Request::SetAging { bridge, seconds } => {
                self.bridge_conf(&bridge)?;
                validate::aging(seconds)?;
                let br = self.change_bridge(&bridge, |b| b.aging_secs = seconds)?;
                br.aging.store(seconds, Ordering::Relaxed);
                Ok(Data::Done)
            }
            Request::SetMacLimit { bridge, limit } => {
                self.bridge_conf(&bridge)?;
                validate::mac_limit(limit)?;
                let br = self.change_bridge(&bridge, |b| b.mac_limit = limit)?;
                let old = br.fdb.load();
                br.fdb.store(Arc::new(old.rebuilt(limit as usize)));
                Ok(Data::Done)
            }
            Request::SetBridge { bridge, ip_checks } => {
                self.bridge_conf(&bridge)?;
                let Some(on) = ip_checks else {
                    return Err(ControlError::Invalid(
                        "set-bridge: nothing to set (settings: ip-checks=on|off)".into(),
                    ));
                };
                self.change_bridge(&bridge, |b| b.ip_checks = on)?;
                // The setting lives in the snapshot: workers see it from their next batch.
                self.publish();
                Ok(Data::Done)
            }
            Request::SetPort {
                port,
                allowed,
                storm_pps,
            } => self.set_port(&port, allowed, storm_pps),
            Request::Stats { bridge, port } => self.stats(bridge.as_deref(), port.as_deref()),
            Request::AddVlan {
                bridge,
                port,
                vids,
                untagged,
                pvid,
                access,
            } => self.change_vlans(&bridge, &port, |v| {
                for &vid in &vids {
                    validate::vid(vid)?;
                }
                let single = match vids.as_slice() {
                    [one] => Some(*one),
                    _ => None,
                };
                if access {
                    let vid = single.ok_or(ControlError::AccessNeedsOneVlan)?;
                    *v = PortVlans {
                        pvid: Some(vid),
                        untagged: vec![vid],
                        tagged: vec![],
                    };
                    return Ok(());
                }
                if vids.is_empty() {
                    return Err(ControlError::NoVlanGiven);
                }
                for &vid in &vids {
                    v.untagged.retain(|&x| x != vid);
                    v.tagged.retain(|&x| x != vid);
                    if untagged {
                        v.untagged.push(vid);
                    } else {
                        v.tagged.push(vid);
                    }
                }
                if pvid {
                    v.pvid = Some(single.ok_or(ControlError::PvidNeedsOneVlan)?);
                }
                Ok(())
            }),
            Request::DelVlan { bridge, port, vids } => self.change_vlans(&bridge, &port, |v| {
                if vids.is_empty() {
                    return Err(ControlError::NoVlanGiven);
                }
                if let Some(&vid) = vids.iter().find(|&&x| !v.has(x)) {
                    return Err(ControlError::NotVlanMember {
                        port: port.clone(),
                        vid,
                    });
                }
                v.untagged.retain(|x| !vids.contains(x));
                v.tagged.retain(|x| !vids.contains(x));
                if v.pvid.is_some_and(|p| vids.contains(&p)) {
                    v.pvid = None;
                }
                Ok(())
            }),
            Request::ListVlans { bridge } => {
                let b = self.bridge_conf(&bridge)?;
                let ports = b
                    .ports
                    .iter()
                    .map(|p| VlanRow {
                        port: p.name.clone(),
                        vlans: p.vlans.clone().unwrap_or_default(),
                    })
                    .collect();
                Ok(Data::Vlans { bridge, ports })
            }
            Request::Attach {
                bridge,
                netns,
                container,
                ifname,
                ip,
                gw,
                mac,
                mtu,
                vlan,
                kind,
                name,
                aliases,
            } => self.attach_container(
                &bridge,
                attach::Spec {
                    netns,
                    container,
                    ifname,
                    ip,
                    gw,
                    mac,
                    mtu,
                    vlan,
                    kind,
                    name,
                    aliases,
                },
            ),
            Request::Detach {
                bridge,
                netns,
                ifname,
                container,
            } => self.detach_container(&bridge, &netns, &ifname, container.as_deref()),
            Request::AddNet {
                bridge,
                subnet,
                gateway,
            } => self.add_net(&bridge, &subnet, gateway),
            Request::DelNet { bridge } => self.del_net(&bridge),
            Request::SetDns {
                bridge,
                upstream,
                domain,
                records,
            } => self.set_dns(&bridge, upstream, domain, records),
            Request::SetNames { port, names } => self.set_names(&port, names),
            Request::DnsShow { bridge } => self.dns_show(&bridge),
            Request::SetUplink { iface, ip, gw } => self.set_uplink(&iface, &ip, gw),
            Request::DelUplink => self.del_uplink(),
            Request::Publish {
                proto,
                host_port,
                target,
            } => self.publish_port(proto, host_port, target),
            Request::Unpublish { proto, host_port } => self.unpublish_port(proto, host_port),
            Request::ListPublished => Ok(Data::Published {
                published: self.published_info(),
            }),
            Request::PublishService {
                proto,
                host_port,
                service,
            } => self.publish_service(proto, host_port, &service),
            Request::AddService { bridge, spec } => self.add_service(&bridge, spec),
            Request::DelService { bridge, name } => self.del_service(&bridge, &name),
            Request::SetBackends {
                bridge,
                name,
                backends,
            } => self.set_backends(&bridge, &name, backends),
            Request::ListServices { bridge } => self.list_services(bridge.as_deref()),
            Request::CtShow => Ok(self.ct_show()),
            Request::CtFlush => Ok(self.ct_flush()),
            Request::SetCtLimit { limit } => self.set_ct_limit(limit),
            Request::AddOverlay { .. }
            | Request::DelOverlay { .. }
            | Request::ListOverlays
            | Request::ListNodes
            | Request::IpamClaim { .. }
            | Request::IpamRelease { .. } => Err(ControlError::NotInCluster),
        }
    }

    /// Deletes bridge `bridge` with its ports (and the containers' veths of attached
    /// ones, as `detach`).
    fn del_bridge(&mut self, bridge: &str) -> Result<Data, ControlError> {
        let b = self.bridge_conf(bridge)?.clone();
        if let Some(n) = &b.net {
            self.check_unpublished(bridge, &n.subnet)?;
        }
        let mut next = self.cfg.clone();
        next.bridges.retain(|x| x.name != bridge);
        self.commit(next)?;
        self.bridges.remove(bridge);
        let gone: Vec<Arc<PortRt>> = b
            .ports
            .iter()
            .filter_map(|p| self.ports.remove(&p.name))
            .collect();
        self.publish();
        for rt in gone {
            self.remove_port(&rt);
        }
        b.ports.iter().for_each(unplug_attached);
        self.refresh_tunnels();
        if b.net.is_some() {
            self.sync_gateway();
        }
        Ok(Data::Done)
    }

    /// Applies `f` to bridge `bridge`'s settings in a copy of the config and commits it;
    /// returns the bridge's runtime for the caller to follow.
    fn change_bridge(
        &mut self,
        bridge: &str,
        f: impl FnOnce(&mut BridgeConf),
    ) -> Result<Arc<BridgeRt>, ControlError> {
        let rt = self
            .bridges
            .get(bridge)
            .cloned()
            .ok_or_else(|| ControlError::NoBridge(bridge.to_string()))?;
        let mut next = self.cfg.clone();
        f(next
            .bridge_mut(bridge)
            .ok_or_else(|| ControlError::NoBridge(bridge.to_string()))?);
        self.commit(next)?;
        Ok(rt)
    }

    /// Applies `f` to a copy of a port's VLANs; commits and republishes if it succeeds.
    fn change_vlans(
        &mut self,
        bridge: &str,
        port: &str,
        f: impl FnOnce(&mut PortVlans) -> Result<(), ControlError>,
    ) -> Result<Data, ControlError> {
        let pc = port_conf(self.bridge_conf(bridge)?, port)?;
        let old = pc.vlans.clone().unwrap_or_default();
        let mut v = old.clone();
        f(&mut v)?;
        v.untagged.sort_unstable();
        v.tagged.sort_unstable();
        check_vlans(&v)?;
        let mut next = self.cfg.clone();
        if let Some(p) = next
            .bridge_mut(bridge)
            .and_then(|b| b.ports.iter_mut().find(|p| p.name == port))
        {
            p.vlans = (!v.is_empty()).then_some(v.clone());
        }
        self.commit(next)?;
        self.publish();
        // What the port learned in VLANs it left is stale at once, as on the Linux
        // bridge: a host learned untagged (VLAN 0) just before its port became a trunk
        // must not linger there.
        let now = vlan_members(&v);
        let gone: Vec<u16> = vlan_members(&old)
            .into_iter()
            .filter(|x| !now.contains(x))
            .collect();
        if let (false, Some(rt), Some(br)) = (
            gone.is_empty(),
            self.ports.get(port),
            self.bridges.get(bridge),
        ) {
            br.fdb.load().flush_port_vlans(rt.id, &gone);
        }
        Ok(Data::Done)
    }

    fn bridge_conf(&self, name: &str) -> Result<&BridgeConf, ControlError> {
        self.cfg
            .bridge(name)
            .ok_or_else(|| ControlError::NoBridge(name.to_string()))
    }

    /// Refuses a new port named `iface` on `bridge` if the name is taken or there is
    /// no room for another port id.
    fn check_new_port(&self, bridge: &str, iface: &str) -> Result<(), ControlError> {
        self.bridge_conf(bridge)?;
        validate::iface_name(iface)?;
        if let Some(owner) = self.cfg.port_owner(iface) {
            return Err(if owner.name == bridge {
                ControlError::PortExists {
                    bridge: bridge.to_string(),
                    port: iface.to_string(),
                }
            } else {
                ControlError::PortOfOtherBridge {
                    iface: iface.to_string(),
                    bridge: owner.name.clone(),
                }
            });
        }
        if self.cfg.uplink.as_ref().is_some_and(|u| u.iface == iface) {
            return Err(ControlError::IsUplink(iface.to_string()));
        }
        if self.ports.len() + 1 >= PORT_ID_LIMIT as usize {
            return Err(ControlError::NoRoom(PORT_ID_LIMIT - 2));
        }
        Ok(())
    }

    fn add_port(
        &mut self,
        bridge: &str,
        iface: &str,
        kind: PortKind,
        external_ids: std::collections::BTreeMap<String, String>,
    ) -> Result<Data, ControlError> {
        let mut pc = self.plan_port(bridge, iface, kind, external_ids)?;
        // Open first: if the interface cannot be used, nothing has changed yet.
        let io = PortIo::open(kind, iface, self.shared.rx_ring, None).map_err(|e| {
            match (kind, e.kind()) {
                (PortKind::Afpacket | PortKind::Afxdp, std::io::ErrorKind::NotFound) => {
                    ControlError::Open(e.to_string())
                }
                (PortKind::Afpacket | PortKind::Afxdp, _) => ControlError::CannotAttach {
                    iface: iface.to_string(),
                    why: e.to_string(),
                },
                (PortKind::Tap, _) => ControlError::CannotCreateTap {
                    iface: iface.to_string(),
                    why: e.to_string(),
                },
                (PortKind::Vxlan | PortKind::Gateway, _) => ControlError::Open(e.to_string()),
            }
        })?;
        pc.mac = io.tap_mac().map(|m| m.to_string());
        self.install_port(bridge, pc, io)?;
        Ok(Data::Done)
    }

    /// The checks of an `add-port` that need nothing from the host, and the port's
    /// settings if they pass (its MAC is known only once a TAP is made).
    fn plan_port(
        &self,
        bridge: &str,
        iface: &str,
        kind: PortKind,
        external_ids: std::collections::BTreeMap<String, String>,
    ) -> Result<PortConf, ControlError> {
        self.check_new_port(bridge, iface)?;
        for (k, v) in &external_ids {
            validate::external_id(k, v)?;
        }
        if external_ids.len() > validate::EXTERNAL_IDS_MAX {
            return Err(ControlError::TooManyExternalIds(validate::EXTERNAL_IDS_MAX));
        }
        match kind {
            PortKind::Vxlan => return Err(ControlError::VxlanNeedsAddTunnel),
            PortKind::Gateway => return Err(ControlError::GatewayNeedsAddNet),
            PortKind::Afpacket | PortKind::Tap | PortKind::Afxdp => {}
        }
        Ok(PortConf {
            name: iface.to_string(),
            kind,
            mac: None,
            vlans: None,
            tunnel: None,
            external_ids,
            attach: None,
            allowed: None,
            storm_pps: 0,
            names: Vec::new(),
        })
    }

    /// Commits port `pc` of `bridge` and starts serving it with `io`; on error `io`
    /// drops (removing a TAP just made) and nothing has changed.
    fn install_port(&mut self, bridge: &str, pc: PortConf, io: PortIo) -> Result<(), ControlError> {
        let mut next = self.cfg.clone();
        if let Some(b) = next.bridge_mut(bridge) {
            b.ports.push(pc.clone());
        }
        self.commit(next)?;
        let rt = self.create_port_rt(bridge, &pc);
        self.publish();
        self.attach(&rt, io);
        Ok(())
    }

    /// Removes port `iface` (for `del-tunnel`, only if it is a tunnel), its static FDB
    /// entries with it.
    fn del_port(
        &mut self,
        bridge: &str,
        iface: &str,
        tunnel_only: bool,
    ) -> Result<Data, ControlError> {
        let b = self.bridge_conf(bridge)?;
        let Some(pc) = b.ports.iter().find(|p| p.name == iface) else {
            return Err(no_port(bridge, iface));
        };
        if tunnel_only && pc.tunnel.is_none() {
            return Err(not_a_tunnel(bridge, iface));
        }
        let mut next = self.cfg.clone();
        if let Some(b) = next.bridge_mut(bridge) {
            b.ports.retain(|p| p.name != iface);
            b.static_fdb.retain(|f| f.port != iface);
        }
        let pc = pc.clone();
        self.commit(next)?;
        if let Some(rt) = self.ports.remove(iface) {
            self.publish();
            self.remove_port(&rt);
            if let Some(br) = self.bridges.get(bridge) {
                br.fdb.load().flush_port(rt.id);
            }
        }
        unplug_attached(&pc);
        self.refresh_tunnels();
        Ok(Data::Done)
    }

    fn add_fdb(
        &mut self,
        bridge: &str,
        mac: &str,
        port: &str,
        remote: Option<IpAddr>,
        vlan: u16,
    ) -> Result<Data, ControlError> {
        let b = self.bridge_conf(bridge)?;
        let m = MacAddr(validate::unicast_mac(mac)?);
        if vlan != 0 {
            validate::vid(vlan)?;
        }
        let pc = port_conf(b, port)?;
        // On a port of one VLAN (an access port, a tunnel with --vlan) the MAC is in that
        // VLAN unless told otherwise.
        let vlan = match (&pc.vlans, vlan) {
            (Some(v), 0) => v.pvid.unwrap_or(0),
            (_, v) => v,
        };
        let remote = match (remote, &pc.tunnel) {
            (Some(r), _) => Some(validate::remote(&r)?),
            // A tunnel with one remote: that is where the MAC is.
            (None, Some(t)) if t.remotes.len() == 1 => t.remotes.first().copied(),
            (None, _) => None,
        };
        let entry = StaticFdb {
            mac: m.to_string(),
            port: port.to_string(),
            remote,
            vlan,
        };
        let mut next = self.cfg.clone();
        if let Some(b) = next.bridge_mut(bridge) {
            b.static_fdb
                .retain(|f| !(f.mac == entry.mac && f.vlan == vlan));
            b.static_fdb.push(entry);
        }
        self.commit(next)?;
        if let Some(b) = self.cfg.bridge(bridge).cloned() {
            self.install_statics(&b);
        }
        Ok(Data::Done)
    }

    fn del_fdb(&mut self, bridge: &str, mac: &str, vlan: u16) -> Result<Data, ControlError> {
        let b = self.bridge_conf(bridge)?;
        let m = MacAddr(validate::mac(mac)?);
        let key = m.to_string();
        if !b.static_fdb.iter().any(|f| f.mac == key && f.vlan == vlan) {
            return Err(ControlError::NoStaticEntry {
                bridge: bridge.to_string(),
                mac: key,
                vlan,
            });
        }
        let mut next = self.cfg.clone();
        if let Some(b) = next.bridge_mut(bridge) {
            b.static_fdb.retain(|f| !(f.mac == key && f.vlan == vlan));
        }
        self.commit(next)?;
        if let Some(br) = self.bridges.get(bridge) {
            br.fdb.load().remove_static(vlan, m);
        }
        Ok(Data::Done)
    }

    /// Puts bridge `b`'s static entries into its FDB.
    fn install_statics(&self, b: &BridgeConf) {
        let Some(br) = self.bridges.get(&b.name) else {
            return;
        };
        let fdb = br.fdb.load();
        for f in &b.static_fdb {
            let (Ok(m), Some(rt)) = (f.mac.parse::<MacAddr>(), self.ports.get(&f.port)) else {
                continue;
            };
            let slot = match (f.remote, &rt.tunnel) {
                (Some(a), Some(t)) => t
                    .remotes
                    .load()
                    .iter()
                    .find(|r| r.addr == a)
                    .map(|r| r.slot)
                    .unwrap_or(0),
                _ => 0,
            };
            if !fdb.set_static(f.vlan, m, dest(rt.id, slot)) {
                tracing::warn!(bridge = %b.name, mac = %f.mac, "FDB full: static entry not installed");
            }
        }
    }

    /// Waits (briefly) until every worker has finished the turn it was in.
    fn barrier(&self) {
        let (done, wait) = crossbeam::channel::bounded(self.shared.workers.max(1));
        for w in 0..self.shared.workers {
            self.shared.tell(w, WorkerMsg::Barrier(done.clone()));
        }
        for _ in 0..self.shared.workers {
            if wait
                .recv_timeout(std::time::Duration::from_secs(2))
                .is_err()
            {
                tracing::warn!("a worker did not answer a barrier");
                break;
            }
        }
    }

    /// Validates and persists `next`, then makes it the current config.
    fn commit(&mut self, next: Config) -> Result<(), ConfigError> {
        next.validate()?;
        self.store.save(&next)?;
        self.cfg = next;
        Ok(())
    }

    fn create_bridge_rt(&mut self, b: &BridgeConf) -> Arc<BridgeRt> {
        let used: Vec<u32> = self.bridges.values().map(|b| b.id).collect();
        let id = (0..).find(|i| !used.contains(i)).unwrap_or(0);
        let rt = Arc::new(BridgeRt::new(
            id,
            &b.name,
            b.aging_secs,
            b.mac_limit,
            self.shared.workers,
        ));
        self.bridges.insert(b.name.clone(), rt.clone());
        rt
    }

    /// The smallest free port id. Ids are reused, smallest first, so snapshot vectors
    /// stay small; a stale FDB entry for a reused id is harmless because workers check
    /// the port's bridge, and it is flushed when the id is taken again.
    fn next_port_id(&self) -> PortId {
        let mut used: Vec<PortId> = self.ports.values().map(|p| p.id).collect();
        used.sort_unstable();
        let mut id: PortId = 1;
        for u in used {
            if u == id {
                id += 1;
            } else if u > id {
                break;
            }
        }
        for b in self.bridges.values() {
            b.fdb.load().flush_port(id);
        }
        id
    }

    fn create_port_rt(&mut self, bridge: &str, p: &PortConf) -> Arc<PortRt> {
        let id = self.next_port_id();
        let bid = self.bridges.get(bridge).map(|b| b.id).unwrap_or(u32::MAX);
        // Ports of one bridge share a worker, eight at a time: frames between them then
        // move without a cross-thread hand-off (on a 2-core host with the endpoints on
        // the same cores, TCP between two ports of one worker measured 11-13 Gbit/s
        // against 6-8 when they sat on two), while bridges, and the ports of big bridges
        // beyond the first eight, still spread over all workers.
        let nth = self.ports.values().filter(|p| p.bridge == bid).count();
        let owner = (bid as usize + nth / PORTS_PER_WORKER_GROUP) % self.shared.workers.max(1);
        let mut rt = PortRt::new(id, &p.name, p.kind, bid, owner, self.shared.workers);
        rt.tap_mac = p.mac.as_deref().and_then(|m| m.parse().ok());
        rt.storm.set_rate(p.storm_pps);
        rt.tunnel = p.tunnel.as_ref().and_then(|t| {
            let vtep = self.vteps.get(&vtep_key(t))?.clone();
            let remotes = t
                .remotes
                .iter()
                .zip(1u16..)
                .map(|(&a, slot)| Arc::new(remote_rt(&self.shared.wg_key, &vtep, t, slot, a)))
                .collect();
            Some(Arc::new(TunnelRt {
                vni: t.vni,
                vtep,
                remotes: arc_swap::ArcSwap::from_pointee(remotes),
            }))
        });
        let rt = Arc::new(rt);
        self.ports.insert(p.name.clone(), rt.clone());
        rt
    }

    /// Has the owner let go of a removed port, and waits (briefly) until it has: the
    /// request is answered only once a TAP we created is gone, so the same name can be
    /// added again at once.
    fn remove_port(&self, rt: &Arc<PortRt>) {
        let (done, wait) = crossbeam::channel::bounded(1);
        self.shared.tell(
            rt.owner,
            WorkerMsg::Detach(rt.id, "removed".into(), Some(done)),
        );
        if wait
            .recv_timeout(std::time::Duration::from_secs(2))
            .is_err()
        {
            tracing::warn!(port = %rt.name, "worker did not confirm the port's removal");
        }
    }

    fn attach(&self, rt: &Arc<PortRt>, io: PortIo) {
        if let Ok(mut b) = rt.backend.lock() {
            *b = io.backend();
        }
        rt.attach_pending.store(true, Ordering::Release);
        self.shared
            .tell(rt.owner, WorkerMsg::Attach(rt.clone(), io));
    }

    /// Builds and installs a snapshot of the current runtime objects.
    fn publish(&self) {
        let mut snap = Snapshot::default();
        let nb = self
            .bridges
            .values()
            .map(|b| b.id as usize + 1)
            .max()
            .unwrap_or(0);
        snap.bridges.resize_with(nb, || None);
        let np = self
            .ports
            .values()
            .map(|p| p.id as usize + 1)
            .max()
            .unwrap_or(0);
        snap.ports.resize_with(np, || None);
        snap.vlans.resize_with(np, || None);
        for b in &self.cfg.bridges {
            let Some(rt) = self.bridges.get(&b.name) else {
                continue;
            };
            let ports: Vec<Arc<PortRt>> = b
                .ports
                .iter()
                .filter_map(|p| self.ports.get(&p.name).cloned())
                .collect();
            for p in &ports {
                snap.ports[p.id as usize] = Some(p.clone());
            }
            for pc in &b.ports {
                let Some(rt) = self.ports.get(&pc.name) else {
                    continue;
                };
                snap.put_binding(
                    rt.id,
                    pc.allowed.as_ref().and_then(crate::portsec::Binding::new),
                );
                snap.vlans[rt.id as usize] = match (&pc.vlans, &pc.tunnel) {
                    (Some(v), _) => VlanTable::new(v),
                    // A tunnel without --vlan carries the bridge's untagged traffic only.
                    (None, Some(_)) => Some(VlanTable::untagged_only()),
                    (None, None) => None,
                };
            }
            snap.bridges[rt.id as usize] = Some(BridgeView {
                rt: rt.clone(),
                ports,
                guard: b.net.as_ref().map(|n| GatewayGuard {
                    mac: crate::gateway::gateway_mac(&b.name),
                    ip: n.gateway.octets(),
                }),
                ip_checks: b.ip_checks,
                services: Self::service_replies(b),
            });
        }
        let mut gw_ports = Vec::new();
        let mut uplink = None;
        for p in self.ports.values() {
            if p.kind == PortKind::Gateway {
                if let Some(Some(bv)) = snap.bridges.get_mut(p.bridge as usize) {
                    bv.ports.push(p.clone());
                    snap.ports[p.id as usize] = Some(p.clone());
                    gw_ports.push(p.clone());
                }
            } else if p.bridge == UPLINK_BRIDGE {
                snap.ports[p.id as usize] = Some(p.clone());
                uplink = Some(p.clone());
            }
        }
        if !gw_ports.is_empty() || uplink.is_some() {
            snap.gateway = Some(GatewayView {
                rt: self.gateway.clone(),
                uplink,
                ports: gw_ports,
            });
        }
        self.shared.snapshot.store(Arc::new(snap));
        self.shared.wake_all();
        // Ports came or went: the names that point at them follow.
        self.sync_dns();
    }

    /// Periodic work: age and compact FDBs, and bring ports back whose interface is there
    /// again (or detach those whose interface was replaced).
    pub fn housekeeping(&mut self) {
        let now = self.shared.clock.now();
        for b in self.bridges.values() {
            let fdb = b.fdb.load();
            fdb.age(now, b.aging.load(Ordering::Relaxed));
            if fdb.needs_compaction() {
                let fresh: Fdb = fdb.rebuilt(fdb.limit());
                b.fdb.store(Arc::new(fresh));
            }
        }
        self.retry_tunnels();
        self.refresh_uplink();
        self.tick = self.tick.wrapping_add(1);
        if self.tick.is_multiple_of(5) {
            // Path MTUs change with routes and interfaces; a tunnel follows.
            self.refresh_tunnels();
        } else {
            // A remote's first frames resolve its next hop: whole super-frames need not
            // wait for the 5 s refresh to follow them.
            self.retry_whole_paths();
        }
        for rt in self.ports.values() {
            if rt.attach_pending.load(Ordering::Acquire)
                || matches!(rt.kind, PortKind::Vxlan | PortKind::Gateway)
            {
                continue;
            }
            if rt.up.load(Ordering::Acquire) {
                // A veth deleted and re-created under the same name between two checks
                // leaves our socket on the dead one: notice by index.
                if matches!(rt.kind, PortKind::Afpacket | PortKind::Afxdp) {
                    let now_idx = iface::index(&rt.name);
                    if now_idx != Some(rt.ifindex.load(Ordering::Relaxed)) {
                        self.shared.tell(
                            rt.owner,
                            WorkerMsg::Detach(rt.id, "interface vanished".into(), None),
                        );
                    }
                }
                continue;
            }
            match rt.kind {
                PortKind::Afpacket if iface::index(&rt.name).is_none() => {
                    rt.set_down(format!("no interface named {}", rt.name));
                }
                _ => {
                    let attached = self
                        .cfg
                        .port_owner(&rt.name)
                        .and_then(|b| b.ports.iter().find(|p| p.name == rt.name))
                        .filter(|p| p.kind == PortKind::Tap && p.attach.is_some())
                        .cloned();
                    if let Some(pc) = &attached {
                        if let Err(e) = self.container_alive(pc) {
                            rt.set_down(e.to_string());
                            continue;
                        }
                    }
                    match PortIo::open(rt.kind, &rt.name, self.shared.rx_ring, rt.tap_mac) {
                        Ok(io) => {
                            if let Some(pc) = &attached {
                                if let Err(e) = self.replace_tap(pc) {
                                    rt.set_down(e.to_string());
                                    continue;
                                }
                            }
                            tracing::info!(port = %rt.name, "interface is back, re-attaching");
                            self.attach(rt, io);
                        }
                        Err(e) => rt.set_down(e.to_string()),
                    }
                }
            }
        }
    }
}

/// Port `port`'s config on bridge `b`.
fn port_conf<'a>(b: &'a BridgeConf, port: &str) -> Result<&'a PortConf, ControlError> {
    b.ports
        .iter()
        .find(|p| p.name == port)
        .ok_or_else(|| no_port(&b.name, port))
}

fn no_port(bridge: &str, port: &str) -> ControlError {
    ControlError::NoPort {
        bridge: bridge.to_string(),
        port: port.to_string(),
    }
}

/// Locks a mutex whose holder may have panicked (the state stays usable).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The VLANs a port's frames are learned in: VLAN 0 for a VLAN-unaware port.
fn vlan_members(v: &PortVlans) -> Vec<u16> {
    if v.is_empty() {
        return vec![0];
    }
    v.untagged.iter().chain(&v.tagged).copied().collect()
}

/// Removes the veth of a port made by `attach` once the port is gone, as `detach`
/// does: its far end in the container would otherwise stay, addressed and dead, and
/// the next `attach` of that container and interface would find the name taken. A
/// TAP went when its file was closed.
fn unplug_attached(pc: &PortConf) {
    // Gone already when the container's namespace went.
    if pc.attach.is_some() && pc.kind == PortKind::Afpacket && iface::index(&pc.name).is_some() {
        if let Err(e) = crate::sys::netns::delete(&pc.name) {
            tracing::warn!(port = %pc.name, "cannot remove the attached veth: {e}");
        }
    }
}
