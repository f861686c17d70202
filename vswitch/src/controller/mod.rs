//! The control plane: applies requests to the desired state, persists it, and turns it
//! into runtime objects and a new dataplane snapshot. Also the housekeeper: ages FDBs,
//! compacts them, and re-attaches ports whose interface came back.
//!
//! Every mutating request is checked in full, and anything that can fail (opening the
//! interface, writing the file) happens before the running state changes, so a refused
//! request leaves config and dataplane exactly as they were.

mod attach;
pub(crate) use attach::dns_name;
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

    /// Deletes bridge `bridge` with its ports.
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
        let b = self.bridge_conf(bridge)?;
        let pc = b
            .ports
            .iter()
            .find(|p| p.name == port)
            .ok_or_else(|| no_port(bridge, port))?;
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
        self.commit(next)?;
        if let Some(rt) = self.ports.remove(iface) {
            self.publish();
            self.remove_port(&rt);
            if let Some(br) = self.bridges.get(bridge) {
                br.fdb.load().flush_port(rt.id);
            }
        }
        self.refresh_tunnels();
        Ok(Data::Done)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_tunnel(
        &mut self,
        bridge: &str,
        name: &str,
        vni: u32,
        remotes: &[IpAddr],
        local: Option<IpAddr>,
        dstport: u16,
        vlan: Option<u16>,
        encrypt: Option<&ctl::EncryptSpec>,
    ) -> Result<Data, ControlError> {
        self.check_new_port(bridge, name)?;
        // VNI, port, duplicate remotes and the VLAN are checked with the whole config
        // below; here only what turns the request's addresses into IPv4 ones.
        let rs = remotes
            .iter()
            .map(validate::remote)
            .collect::<Result<Vec<Ipv4Addr>, _>>()?;
        let local = match local {
            Some(l) => Some(validate::local(&l)?).filter(|a| !a.is_unspecified()),
            None => None,
        };
        let encrypt = encrypt
            .map(|e| crate::encrypt::EncryptConf::from_spec(e, &rs))
            .transpose()
            .map_err(ConfigError::Invalid)?;
        let tc = TunnelConf {
            vni,
            remotes: rs,
            local,
            dstport,
            encrypt,
        };
        let pc = PortConf {
            name: name.to_string(),
            kind: PortKind::Vxlan,
            mac: None,
            external_ids: Default::default(),
            attach: None,
            vlans: vlan.map(|v| PortVlans {
                pvid: Some(v),
                untagged: vec![v],
                tagged: vec![],
            }),
            tunnel: Some(tc.clone()),
            allowed: None,
            storm_pps: 0,
            names: Vec::new(),
        };
        let mut next = self.cfg.clone();
        if let Some(b) = next.bridge_mut(bridge) {
            b.ports.push(pc.clone());
        }
        // Check the whole config before binding, so a refused tunnel binds nothing.
        next.validate()?;
        let bid = self.bridges.get(bridge).map(|b| b.id).unwrap_or(0);
        let key = vtep_key(&tc);
        let fresh = !self.vteps.contains_key(&key);
        self.vtep_for(&tc, bid)?;
        if let Err(e) = self.commit(next) {
            if fresh {
                self.release_vteps();
            }
            return Err(e.into());
        }
        let rt = self.create_port_rt(bridge, &pc);
        self.publish();
        self.attach(&rt, PortIo::Vxlan(crate::port::Vxlan));
        self.refresh_tunnels();
        Ok(Data::Done)
    }

    /// The tunnel port `name` of `bridge` with its config.
    fn tunnel(&self, bridge: &str, name: &str) -> Result<(Arc<PortRt>, TunnelConf), ControlError> {
        let b = self.bridge_conf(bridge)?;
        let pc = b
            .ports
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| no_port(bridge, name))?;
        let tc = pc
            .tunnel
            .clone()
            .ok_or_else(|| not_a_tunnel(bridge, name))?;
        let rt = self
            .ports
            .get(name)
            .cloned()
            .ok_or_else(|| no_port(bridge, name))?;
        Ok((rt, tc))
    }

    /// Commits `tc` as tunnel `name`'s settings, `f` applied to the bridge too.
    fn change_tunnel(
        &mut self,
        bridge: &str,
        name: &str,
        tc: TunnelConf,
        f: impl FnOnce(&mut BridgeConf),
    ) -> Result<(), ControlError> {
        let mut next = self.cfg.clone();
        let b = next
            .bridge_mut(bridge)
            .ok_or_else(|| ControlError::NoBridge(bridge.to_string()))?;
        if let Some(p) = b.ports.iter_mut().find(|p| p.name == name) {
            p.tunnel = Some(tc);
        }
        f(b);
        Ok(self.commit(next)?)
    }

    fn add_remote(
        &mut self,
        bridge: &str,
        name: &str,
        remote: IpAddr,
        peer: Option<&ctl::PeerSpec>,
    ) -> Result<Data, ControlError> {
        let (rt, mut tc) = self.tunnel(bridge, name)?;
        let a = validate::remote(&remote)?;
        if tc.remotes.contains(&a) {
            return Err(ControlError::RemoteExists {
                remote: a,
                tunnel: name.to_string(),
            });
        }
        match (&mut tc.encrypt, peer) {
            (Some(e), Some(p)) => e
                .peers
                .push(crate::encrypt::PeerConf::from_spec(a, p).map_err(ConfigError::Invalid)?),
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "tunnel {name} is not encrypted: --public-key does not apply"
                ))
                .into())
            }
            // An encrypted tunnel's check refuses a remote without a key.
            _ => {}
        }
        tc.remotes.push(a);
        self.change_tunnel(bridge, name, tc.clone(), |_| {})?;
        if let Some(t) = &rt.tunnel {
            let cur = t.remotes.load();
            let slot = (1u16..)
                .find(|s| !cur.iter().any(|r| r.slot == *s))
                .unwrap_or(u16::MAX);
            let mut next: Vec<Arc<RemoteRt>> = cur.iter().cloned().collect();
            next.push(Arc::new(remote_rt(
                &self.shared.wg_key,
                &t.vtep,
                &tc,
                slot,
                a,
            )));
            t.remotes.store(Arc::new(next));
        }
        self.refresh_tunnels();
        Ok(Data::Done)
    }

    fn del_remote(
        &mut self,
        bridge: &str,
        name: &str,
        remote: IpAddr,
    ) -> Result<Data, ControlError> {
        let (rt, mut tc) = self.tunnel(bridge, name)?;
        let a = validate::remote(&remote)?;
        if !tc.remotes.contains(&a) {
            return Err(ControlError::NotARemote {
                remote: a,
                tunnel: name.to_string(),
            });
        }
        tc.remotes.retain(|r| *r != a);
        if let Some(e) = &mut tc.encrypt {
            e.peers.retain(|p| p.remote != a);
        }
        self.change_tunnel(bridge, name, tc, |b| {
            b.static_fdb
                .retain(|f| !(f.port == name && f.remote == Some(a)));
        })?;
        if let Some(t) = &rt.tunnel {
            let cur = t.remotes.load_full();
            let next: Vec<Arc<RemoteRt>> = cur.iter().filter(|r| r.addr != a).cloned().collect();
            // Stop taking its datagrams first, let every worker finish the turn that
            // may still learn behind it, then forget what was learned there.
            t.remotes.store(Arc::new(next));
            self.refresh_tunnels();
            self.barrier();
            if let Some(gone) = cur.iter().find(|r| r.addr == a) {
                if let Some(br) = self.bridges.get(bridge) {
                    br.fdb.load().flush_remote(rt.id, gone.slot);
                }
            }
        }
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
        let pc = b
            .ports
            .iter()
            .find(|p| p.name == port)
            .ok_or_else(|| no_port(bridge, port))?;
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

    /// The VTEP for `key`, bound now if no tunnel uses it yet (read by the worker of
    /// bridge `bid`, where the bridge's first ports are: reading it on the other worker
    /// measured 4.2 against 5.0–5.3 Gbit/s vswitchd to vswitchd on 2 cores, the
    /// cross-thread hand-off costing more than the second core gave).
    fn vtep_for(&mut self, t: &TunnelConf, bid: u32) -> Result<Arc<VtepRt>, VtepError> {
        let key = vtep_key(t);
        if let Some(v) = self.vteps.get(&key) {
            return Ok(v.clone());
        }
        let id = (0..)
            .find(|i| !self.vteps.values().any(|v| v.id == *i))
            .unwrap_or(0);
        let owner = bid as usize % self.shared.workers.max(1);
        let wg = t.encrypt.as_ref().map(|e| {
            let src = e.inner_local.or(t.local).unwrap_or(Ipv4Addr::UNSPECIFIED);
            crate::encrypt::WgVtep::new(&self.shared.wg_key, src, e.inner_local)
        });
        let v = Arc::new(VtepRt::open(id, key, owner, wg)?);
        if v.wg.is_some() {
            crate::encrypt::spawn_timers(Arc::downgrade(&v));
        }
        self.vteps.insert(key, v.clone());
        self.shared.tell(owner, WorkerMsg::AttachVtep(v.clone()));
        Ok(v)
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

    /// Closes VTEPs no tunnel uses any more.
    fn release_vteps(&mut self) {
        let used: std::collections::HashSet<VtepKey> = self
            .cfg
            .bridges
            .iter()
            .flat_map(|b| b.ports.iter())
            .filter_map(|p| p.tunnel.as_ref().map(vtep_key))
            .collect();
        let gone: Vec<VtepKey> = self
            .vteps
            .keys()
            .filter(|k| !used.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(v) = self.vteps.remove(&k) {
                let (done, wait) = crossbeam::channel::bounded(1);
                self.shared
                    .tell(v.owner, WorkerMsg::DetachVtep(v.id, Some(done)));
                let _ = wait.recv_timeout(std::time::Duration::from_secs(2));
            }
        }
    }

    /// Tunnels whose VTEP could not be bound (their `--local` address missing when the
    /// daemon started, say) try again, and come up once it works.
    fn retry_tunnels(&mut self) {
        let stuck: Vec<(String, PortConf)> = self
            .cfg
            .bridges
            .iter()
            .flat_map(|b| b.ports.iter().map(move |p| (b, p)))
            .filter(|(_, p)| p.tunnel.is_some())
            .filter(|(_, p)| {
                self.ports
                    .get(&p.name)
                    .is_some_and(|rt| rt.tunnel.is_none())
            })
            .map(|(b, p)| (b.name.clone(), p.clone()))
            .collect();
        for (bridge, pc) in stuck {
            let Some(t) = &pc.tunnel else { continue };
            let bid = self.bridges.get(&bridge).map(|b| b.id).unwrap_or(0);
            if let Err(e) = self.vtep_for(t, bid) {
                if let Some(rt) = self.ports.get(&pc.name) {
                    rt.set_down(e.to_string());
                }
                continue;
            }
            tracing::info!(port = %pc.name, "VXLAN socket bound, tunnel coming up");
            self.ports.remove(&pc.name);
            let rt = self.create_port_rt(&bridge, &pc);
            self.publish();
            self.attach(&rt, PortIo::Vxlan(crate::port::Vxlan));
            self.refresh_tunnels();
            if let Some(b) = self.cfg.bridge(&bridge).cloned() {
                self.install_statics(&b);
            }
        }
    }

    /// Rebuilds every VTEP's VNI table from the tunnels, refreshes the remotes' path
    /// MTUs, and closes VTEPs left unused.
    fn refresh_tunnels(&mut self) {
        self.release_vteps();
        let mut tables: HashMap<VtepKey, vxlan::decap::VtepTable> = HashMap::new();
        for rt in self.ports.values() {
            let Some(t) = &rt.tunnel else { continue };
            tables
                .entry(t.vtep.key)
                .or_default()
                .insert(t.vni, rt.id, t.table_remotes());
            if let Some(w) = &t.vtep.wg {
                w.remotes.store(t.remotes.load_full());
            }
            for r in t.remotes.load().iter() {
                if let Some(mtu) =
                    crate::sys::udp::route_mtu(t.vtep.key.local, r.addr, t.vtep.key.dstport)
                {
                    r.mtu.store(mtu, Ordering::Relaxed);
                }
            }
        }
        for (k, v) in &self.vteps {
            v.table
                .store(Arc::new(tables.remove(k).unwrap_or_default()));
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

    fn show(&self) -> Data {
        let bridges = self
            .cfg
            .bridges
            .iter()
            .map(|b| BridgeInfo {
                name: b.name.clone(),
                aging_secs: b.aging_secs,
                mac_limit: b.mac_limit,
                ip_checks: b.ip_checks,
                fdb_entries: self
                    .bridges
                    .get(&b.name)
                    .map(|r| r.fdb.load().len() as u64)
                    .unwrap_or(0),
                ports: b
                    .ports
                    .iter()
                    .map(|p| {
                        let reason = self
                            .ports
                            .get(&p.name)
                            .map(|r| r.down_reason())
                            .unwrap_or(Some("unknown".into()));
                        PortInfo {
                            name: p.name.clone(),
                            kind: p.kind,
                            state: if reason.is_none() { "up" } else { "down" }.into(),
                            reason,
                            vlans: p.vlans.clone(),
                            tunnel: p.tunnel.as_ref().map(|t| self.tunnel_info(p, t)),
                            external_ids: p.external_ids.clone(),
                            attach: p.attach.as_ref().map(|a| ctl::AttachInfo {
                                names: a.name.iter().chain(&a.aliases).cloned().collect(),
                                container: a.container.clone(),
                                netns: a.netns.clone(),
                                ifname: a.ifname.clone(),
                                ip: a.ip.clone(),
                            }),
                            allowed: p.allowed.clone(),
                            storm_pps: p.storm_pps,
                            io: self
                                .ports
                                .get(&p.name)
                                .and_then(|r| r.backend.lock().ok().and_then(|b| b.clone())),
                            names: p.names.clone(),
                        }
                    })
                    .collect(),
                net: self.net_info(&b.name),
                services: self.services_info(&b.name),
            })
            .collect();
        Data::Show {
            public_key: Some(self.shared.wg_key.public().to_string()),
            bridges,
            uplink: self.uplink_info(),
            published: self.published_info(),
        }
    }

    fn tunnel_info(&self, p: &PortConf, t: &TunnelConf) -> TunnelInfo {
        let live = self
            .ports
            .get(&p.name)
            .and_then(|rt| rt.tunnel.as_ref())
            .map(|t| t.remotes.load_full());
        let remotes = t
            .remotes
            .iter()
            .map(|a| {
                let r = live
                    .as_ref()
                    .and_then(|l| l.iter().find(|r| r.addr == *a).cloned());
                let get = |f: fn(&RemoteRt) -> u64| r.as_deref().map(f).unwrap_or(0);
                let peer = t.encrypt.as_ref().and_then(|e| e.peer(*a)).map(|p| {
                    let live = r.as_deref().and_then(|r| r.wg.as_ref());
                    ctl::PeerInfo {
                        public_key: p.public_key.clone(),
                        inner_remote: p.inner_remote.map(|i| i.to_string()),
                        handshake_secs_ago: live
                            .and_then(|w| w.peer().last_handshake())
                            .map(|d| d.as_secs()),
                        handshakes: live.map(|w| w.peer().handshakes()).unwrap_or(0),
                        cookies_received: live.map(|w| w.peer().cookies()).unwrap_or(0),
                    }
                });
                RemoteInfo {
                    peer,
                    ip: a.to_string(),
                    mtu: r
                        .as_deref()
                        .map(|r| r.mtu.load(Ordering::Relaxed))
                        .unwrap_or(crate::tunnel::DEFAULT_MTU),
                    tx_packets: get(|r| r.tx_packets.load(Ordering::Relaxed)),
                    tx_bytes: get(|r| r.tx_bytes.load(Ordering::Relaxed)),
                    rx_packets: get(|r| r.rx_packets.load(Ordering::Relaxed)),
                    rx_bytes: get(|r| r.rx_bytes.load(Ordering::Relaxed)),
                }
            })
            .collect();
        TunnelInfo {
            vni: t.vni,
            local: t.local.map(|l| l.to_string()),
            dstport: t.dstport,
            vlan: p.vlans.as_ref().and_then(|v| v.pvid),
            remotes,
            encrypt: t.encrypt.as_ref().map(|e| ctl::EncryptInfo {
                listen_port: e.listen_port,
                inner_local: e.inner_local.map(|i| i.to_string()),
            }),
        }
    }

    fn fdb_show(&self, bridge: &str) -> Result<Data, ControlError> {
        self.bridge_conf(bridge)?;
        let rt = self
            .bridges
            .get(bridge)
            .ok_or_else(|| ControlError::NoBridge(bridge.to_string()))?;
        let now = self.shared.clock.now();
        let aging = rt.aging.load(Ordering::Relaxed);
        let ports: HashMap<PortId, &Arc<PortRt>> = self
            .ports
            .values()
            .filter(|p| p.bridge == rt.id)
            .map(|p| (p.id, p))
            .collect();
        let mut entries: Vec<FdbEntry> = rt
            .fdb
            .load()
            .entries()
            .into_iter()
            .filter(|e| now.saturating_sub(e.seen) <= aging)
            .filter_map(|e| {
                let p = ports.get(&port_of(e.port))?;
                let remote = match (remote_of(e.port), &p.tunnel) {
                    (0, _) | (_, None) => None,
                    (slot, Some(t)) => Some(t.remote(slot)?.addr.to_string()),
                };
                Some(FdbEntry {
                    port: p.name.clone(),
                    vlan: e.vlan,
                    mac: e.mac.to_string(),
                    age: if e.is_static() {
                        0
                    } else {
                        now.saturating_sub(e.seen)
                    },
                    remote,
                    is_static: e.is_static(),
                })
            })
            .collect();
        entries.sort_by(|a, b| (&a.port, a.vlan, &a.mac).cmp(&(&b.port, b.vlan, &b.mac)));
        Ok(Data::Fdb {
            bridge: bridge.to_string(),
            entries,
        })
    }

    fn stats(&self, bridge: Option<&str>, port: Option<&str>) -> Result<Data, ControlError> {
        let (bridges, vteps) = self.counters(bridge, port)?;
        Ok(Data::Stats {
            gateway: self.gateway_stats(),
            bridges,
            vteps,
        })
    }

    /// The bridges' (ports') and VTEPs' counters, read from atomics only.
    fn counters(
        &self,
        bridge: Option<&str>,
        port: Option<&str>,
    ) -> Result<(Vec<BridgeStats>, Vec<VtepStats>), ControlError> {
        if let Some(b) = bridge {
            let bc = self.bridge_conf(b)?;
            if let Some(p) = port {
                if !bc.ports.iter().any(|x| x.name == p) {
                    return Err(no_port(b, p));
                }
            }
        }
        let mut out = Vec::new();
        for b in self
            .cfg
            .bridges
            .iter()
            .filter(|b| bridge.is_none_or(|n| n == b.name))
        {
            let Some(rt) = self.bridges.get(&b.name) else {
                continue;
            };
            let ports = b
                .ports
                .iter()
                .filter(|p| port.is_none_or(|n| n == p.name))
                .filter_map(|p| self.ports.get(&p.name))
                .map(|p| {
                    let t = p.counters.totals();
                    PortStats {
                        name: p.name.clone(),
                        rx_packets: t.rx_packets,
                        rx_bytes: t.rx_bytes,
                        tx_packets: t.tx_packets,
                        tx_bytes: t.tx_bytes,
                        drops: t.drops,
                    }
                })
                .collect();
            out.push(BridgeStats {
                name: b.name.clone(),
                fdb_entries: rt.fdb.load().len() as u64,
                counters: rt.counters.totals(),
                ports,
            });
        }
        let mut vteps: Vec<VtepStats> = self
            .vteps
            .values()
            .map(|v| VtepStats {
                local: v.key.local.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                dstport: v.key.dstport,
                rx_datagrams: v.counters.rx_datagrams.load(Ordering::Relaxed),
                rx_bytes: v.counters.rx_bytes.load(Ordering::Relaxed),
                drops: {
                    let mut d = v.counters.drops();
                    if let Some(w) = &v.wg {
                        d.extend(w.drops());
                    }
                    d
                },
            })
            .collect();
        vteps.sort_by(|a, b| (&a.local, a.dstport).cmp(&(&b.local, b.dstport)));
        Ok((out, vteps))
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

fn no_port(bridge: &str, port: &str) -> ControlError {
    ControlError::NoPort {
        bridge: bridge.to_string(),
        port: port.to_string(),
    }
}

fn not_a_tunnel(bridge: &str, port: &str) -> ControlError {
    ControlError::NotATunnel {
        port: port.to_string(),
        bridge: bridge.to_string(),
    }
}

/// The VTEP a tunnel's settings put it on.
fn vtep_key(t: &TunnelConf) -> VtepKey {
    VtepKey {
        local: t.local,
        dstport: t.encrypt.as_ref().map_or(t.dstport, |e| e.listen_port),
        encrypted: t.encrypt.is_some(),
    }
}

/// Remote `addr` of tunnel `t` in `slot`, with its WireGuard peer if `t` is encrypted
/// (its VTEP `vtep` then has the listener).
fn remote_rt(
    key: &wg::PrivateKey,
    vtep: &VtepRt,
    t: &TunnelConf,
    slot: u16,
    addr: Ipv4Addr,
) -> RemoteRt {
    let mut r = RemoteRt::new(slot, addr);
    if let (Some(e), Some(w)) = (&t.encrypt, &vtep.wg) {
        let endpoint = std::net::SocketAddrV4::new(addr, e.listen_port);
        r.wg = e
            .peer(addr)
            .and_then(|p| crate::encrypt::WgRemote::new(key, &w.limiter, slot, endpoint, p))
            .map(Box::new);
    }
    r
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
