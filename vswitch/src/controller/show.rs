//! What the controller reports: `show`, `fdb-show` and `stats` (the per-port, per-VTEP
//! and per-bridge counters).

use super::*;

impl Controller {
    pub(super) fn show(&self) -> Data {
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

    pub(super) fn tunnel_info(&self, p: &PortConf, t: &TunnelConf) -> TunnelInfo {
        let tunnel = self.ports.get(&p.name).and_then(|rt| rt.tunnel.as_ref());
        let live = tunnel.map(|t| t.remotes.load_full());
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
            gso_tap: tunnel.and_then(|t| t.vtep.gso.as_ref()).map(|g| g.stats()),
        }
    }

    pub(super) fn fdb_show(&self, bridge: &str) -> Result<Data, ControlError> {
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

    pub(super) fn stats(
        &self,
        bridge: Option<&str>,
        port: Option<&str>,
    ) -> Result<Data, ControlError> {
        let (bridges, vteps) = self.counters(bridge, port)?;
        Ok(Data::Stats {
            gateway: self.gateway_stats(),
            bridges,
            vteps,
        })
    }

    /// The bridges' (ports') and VTEPs' counters, read from atomics only.
    pub(super) fn counters(
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
                gso_tap: v.gso.as_ref().map(|g| g.stats()),
            })
            .collect();
        vteps.sort_by(|a, b| (&a.local, a.dstport).cmp(&(&b.local, b.dstport)));
        Ok((out, vteps))
    }
}
