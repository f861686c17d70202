//! The control plane of the gateway: networks (`add-net`), the uplink (`set-uplink`),
//! published ports, the conntrack limit, and `ct-show`/`ct-flush`. It keeps the runtime
//! in step with the config: a gateway port per bridge with a network, the uplink's
//! afpacket port, and the gateway's sides and NAT rules.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ctl::{validate, Data, L4Proto, NetInfo, PortKind, PublishedInfo, UplinkInfo};

use super::{ControlError, Controller};
use crate::config::{NetConf, PublishConf, UplinkConf};
use crate::dataplane::{PortRt, UPLINK_BRIDGE};
use crate::gateway::{gateway_mac, NetSpec, UplinkSpec};
use crate::port::PortIo;
use crate::sys::iface;
use crate::wire::MacAddr;

/// The key of a bridge's gateway port among the ports (never an interface name: those
/// have no spaces).
pub(super) fn gateway_key(bridge: &str) -> String {
    format!("gateway of {bridge}")
}

impl Controller {
    pub(super) fn add_net(
        &mut self,
        bridge: &str,
        subnet: &str,
        gateway: Ipv4Addr,
    ) -> Result<Data, ControlError> {
        let (net, prefix) = validate::subnet(subnet)?;
        validate::host_in("gateway", gateway, net, prefix)?;
        let b = self.bridge_conf(bridge)?;
        if let Some(n) = &b.net {
            return Err(ControlError::NetExists {
                bridge: bridge.to_string(),
                subnet: n.subnet.clone(),
            });
        }
        let mut next = self.cfg.clone();
        if let Some(b) = next.bridge_mut(bridge) {
            b.net = Some(NetConf {
                subnet: subnet.to_string(),
                gateway,
                domain: None,
                upstream: Vec::new(),
                records: Vec::new(),
            });
        }
        self.commit(next)?;
        self.sync_gateway();
        Ok(Data::Done)
    }

    pub(super) fn del_net(&mut self, bridge: &str) -> Result<Data, ControlError> {
        let b = self.bridge_conf(bridge)?;
        let Some(n) = &b.net else {
            return Err(ControlError::NoNet(bridge.to_string()));
        };
        self.check_unpublished(bridge, &n.subnet)?;
        let mut next = self.cfg.clone();
        if let Some(b) = next.bridge_mut(bridge) {
            b.net = None;
        }
        self.commit(next)?;
        self.sync_gateway();
        Ok(Data::Done)
    }

    /// Refuses to take away a network that a published port still points into.
    pub(super) fn check_unpublished(&self, bridge: &str, subnet: &str) -> Result<(), ControlError> {
        let Ok((addr, prefix)) = validate::cidr(subnet) else {
            return Ok(());
        };
        let Some(net) = nat::nat::Ipv4Net::new(addr, prefix) else {
            return Ok(());
        };
        if let Some(p) = self
            .cfg
            .published
            .iter()
            .find(|p| net.contains(*p.target.ip()))
        {
            return Err(ControlError::StillPublished {
                proto: p.proto.as_str(),
                host_port: p.host_port,
                target: p.target,
                bridge: bridge.to_string(),
            });
        }
        Ok(())
    }

    pub(super) fn set_uplink(
        &mut self,
        iface_name: &str,
        ip: &str,
        gw: Option<Ipv4Addr>,
    ) -> Result<Data, ControlError> {
        validate::iface_name(iface_name)?;
        validate::uplink_ip(ip)?;
        if iface::index(iface_name).is_none() {
            return Err(ControlError::NoInterface(iface_name.to_string()));
        }
        let mut next = self.cfg.clone();
        next.uplink = Some(UplinkConf {
            iface: iface_name.to_string(),
            ip: ip.to_string(),
            gw,
        });
        self.commit(next)?;
        self.sync_gateway();
        Ok(Data::Done)
    }

    pub(super) fn del_uplink(&mut self) -> Result<Data, ControlError> {
        if self.cfg.uplink.is_none() {
            return Err(ControlError::NoUplink);
        }
        let mut next = self.cfg.clone();
        next.uplink = None;
        self.commit(next)?;
        self.sync_gateway();
        Ok(Data::Done)
    }

    pub(super) fn publish_port(
        &mut self,
        proto: L4Proto,
        host_port: u16,
        target: SocketAddrV4,
    ) -> Result<Data, ControlError> {
        validate::host_port(host_port)?;
        let mut next = self.cfg.clone();
        next.published.push(PublishConf {
            proto,
            host_port,
            target,
        });
        self.commit(next)?;
        self.configure_gateway();
        Ok(Data::Done)
    }

    pub(super) fn unpublish_port(
        &mut self,
        proto: L4Proto,
        host_port: u16,
    ) -> Result<Data, ControlError> {
        let mut next = self.cfg.clone();
        let before = next.published.len();
        next.published
            .retain(|p| !(p.proto == proto && p.host_port == host_port));
        if next.published.len() == before {
            return Err(ControlError::NotPublished {
                proto: proto.as_str(),
                host_port,
            });
        }
        self.commit(next)?;
        self.configure_gateway();
        Ok(Data::Done)
    }

    pub(super) fn set_ct_limit(&mut self, limit: u32) -> Result<Data, ControlError> {
        validate::ct_limit(limit)?;
        let mut next = self.cfg.clone();
        next.ct_limit = Some(limit);
        self.commit(next)?;
        self.configure_gateway();
        Ok(Data::Done)
    }

    pub(super) fn published_info(&self) -> Vec<PublishedInfo> {
        self.cfg
            .published
            .iter()
            .map(|p| PublishedInfo {
                proto: p.proto,
                host_port: p.host_port,
                target: match self.service_at(*p.target.ip()) {
                    Some(s) => format!("service:{} ({})", s.name, p.target),
                    None => p.target.to_string(),
                },
            })
            .collect()
    }

    pub(super) fn ct_show(&self) -> Data {
        let g = super::lock(&self.gateway.state);
        Data::Conntrack {
            entries: g.conntrack(),
            limit: g.nat().table().limit() as u64,
        }
    }

    pub(super) fn ct_flush(&self) -> Data {
        super::lock(&self.gateway.state).flush();
        Data::Done
    }

    /// The gateway's counters, once there is anything to route.
    pub(super) fn gateway_stats(&self) -> Option<ctl::GatewayStats> {
        if !self.gateway_stats_configured() {
            return None;
        }
        Some(super::lock(&self.gateway.state).stats())
    }

    /// True once there is anything to route (a network or the uplink).
    pub(super) fn gateway_stats_configured(&self) -> bool {
        self.cfg.uplink.is_some() || self.cfg.bridges.iter().any(|b| b.net.is_some())
    }

    pub(super) fn net_info(&self, bridge: &str) -> Option<NetInfo> {
        let n = self.cfg.bridge(bridge)?.net.as_ref()?;
        Some(NetInfo {
            subnet: n.subnet.clone(),
            gateway: n.gateway.to_string(),
            mac: gateway_mac(bridge).to_string(),
            domain: n.domain.clone(),
            upstream: n.upstream.iter().map(|a| a.to_string()).collect(),
        })
    }

    pub(super) fn uplink_info(&self) -> Option<UplinkInfo> {
        let u = self.cfg.uplink.as_ref()?;
        let reason = match self.uplink_port() {
            Some(rt) => rt.down_reason(),
            None => Some("not attached".into()),
        };
        Some(UplinkInfo {
            iface: u.iface.clone(),
            ip: u.ip.clone(),
            gw: u.gw.map(|g| g.to_string()),
            mac: self
                .uplink_mac
                .map(|m| m.to_string())
                .unwrap_or_else(|| "unknown".into()),
            state: if reason.is_none() { "up" } else { "down" }.into(),
            reason,
        })
    }

    pub(super) fn uplink_port(&self) -> Option<&Arc<PortRt>> {
        self.ports.values().find(|p| p.bridge == UPLINK_BRIDGE)
    }

    /// Brings the runtime in line with the config's networks and uplink: gateway ports
    /// made or removed, the uplink port moved, the gateway reconfigured, a new snapshot.
    pub(super) fn sync_gateway(&mut self) {
        let want: Vec<(String, u32)> = self
            .cfg
            .bridges
            .iter()
            .filter(|b| b.net.is_some())
            .filter_map(|b| Some((gateway_key(&b.name), self.bridges.get(&b.name)?.id)))
            .collect();
        let stale: Vec<String> = self
            .ports
            .iter()
            .filter(|(k, p)| {
                p.kind == PortKind::Gateway && !want.iter().any(|(w, b)| w == *k && *b == p.bridge)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut gone = Vec::new();
        for k in stale {
            gone.extend(self.ports.remove(&k));
        }
        let owner = self.gateway.owner;
        for (key, bid) in want {
            if self.ports.contains_key(&key) {
                continue;
            }
            let id = self.next_port_id();
            let rt = Arc::new(PortRt::new(
                id,
                &key,
                PortKind::Gateway,
                bid,
                owner,
                self.shared.workers,
            ));
            self.ports.insert(key, rt.clone());
            self.attach(&rt, PortIo::Gateway(crate::port::Gateway));
        }
        let want_up = self.cfg.uplink.as_ref().map(|u| u.iface.clone());
        if let Some(cur) = self.uplink_port().cloned() {
            if want_up.as_deref() != Some(cur.name.as_str()) {
                self.ports.remove(&cur.name);
                gone.push(cur);
            }
        }
        if let Some(name) = want_up {
            if self.uplink_port().is_none() {
                let id = self.next_port_id();
                let rt = Arc::new(PortRt::new(
                    id,
                    &name,
                    PortKind::Afpacket,
                    UPLINK_BRIDGE,
                    owner,
                    self.shared.workers,
                ));
                self.ports.insert(name.clone(), rt.clone());
                match PortIo::open(PortKind::Afpacket, &name, self.shared.rx_ring, None) {
                    Ok(io) => self.attach(&rt, io),
                    Err(e) => rt.set_down(e.to_string()),
                }
            }
        }
        self.configure_gateway();
        self.publish();
        for rt in gone {
            self.remove_port(&rt);
        }
    }

    /// Tells the gateway its sides and NAT rules.
    pub(super) fn configure_gateway(&mut self) {
        let nets: Vec<NetSpec> = self
            .cfg
            .nets()
            .filter_map(|(b, subnet, gateway)| {
                Some(NetSpec {
                    bridge: self.bridges.get(&b.name)?.id,
                    subnet,
                    gateway,
                    mac: gateway_mac(&b.name),
                    mesh: self.cfg.mesh_of(&b.name),
                })
            })
            .collect();
        self.uplink_mac = self
            .cfg
            .uplink
            .as_ref()
            .and_then(|u| iface::hw_addr(&u.iface).ok())
            .map(MacAddr);
        let uplink = match (self.cfg.uplink_addr(), &self.cfg.uplink, self.uplink_mac) {
            (Some((addr, subnet)), Some(u), Some(mac)) => Some(UplinkSpec {
                addr,
                subnet,
                gw: u.gw,
                mac,
            }),
            _ => None,
        };
        let r = super::lock(&self.gateway.state).configure(
            self.cfg.nat_config(),
            &nets,
            uplink,
            &self.shared.pool,
        );
        if let Err(e) = r {
            tracing::error!("gateway refused its configuration: {e}");
        }
        let checks = self.health_specs();
        super::lock(&self.gateway.state).configure_health(&checks);
    }

    /// Housekeeping: an uplink interface re-created with another MAC is followed.
    pub(super) fn refresh_uplink(&mut self) {
        let Some(u) = &self.cfg.uplink else { return };
        let mac = iface::hw_addr(&u.iface).ok().map(MacAddr);
        if mac != self.uplink_mac {
            self.configure_gateway();
        }
        if let Some(rt) = self.uplink_port() {
            if !rt.up.load(Ordering::Acquire) {
                tracing::debug!(uplink = %rt.name, "uplink down");
            }
        }
    }
}
