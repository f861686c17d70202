//! Tunnel ports: adding and changing VXLAN tunnels and their remotes, the VTEPs (UDP
//! sockets) they share, and keeping each VTEP's VNI table and each remote's path MTU in
//! step with the tunnels.

use super::*;

impl Controller {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_tunnel(
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
    pub(super) fn tunnel(
        &self,
        bridge: &str,
        name: &str,
    ) -> Result<(Arc<PortRt>, TunnelConf), ControlError> {
        let pc = port_conf(self.bridge_conf(bridge)?, name)?;
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
    pub(super) fn change_tunnel(
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

    pub(super) fn add_remote(
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
            self.add_remote_rts(t, &tc, [a]);
        }
        self.refresh_tunnels();
        Ok(Data::Done)
    }

    pub(super) fn del_remote(
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

    /// The VTEP for `key`, bound now if no tunnel uses it yet (read by the worker of
    /// bridge `bid`, where the bridge's first ports are: reading it on the other worker
    /// measured 4.2 against 5.0–5.3 Gbit/s vswitchd to vswitchd on 2 cores, the
    /// cross-thread hand-off costing more than the second core gave).
    pub(super) fn vtep_for(&mut self, t: &TunnelConf, bid: u32) -> Result<Arc<VtepRt>, VtepError> {
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
        let v = Arc::new(VtepRt::open(
            id,
            key,
            owner,
            wg,
            self.shared.gso_tap.as_deref(),
        )?);
        if v.wg.is_some() {
            crate::encrypt::spawn_timers(Arc::downgrade(&v));
        }
        self.vteps.insert(key, v.clone());
        self.shared.tell(owner, WorkerMsg::AttachVtep(v.clone()));
        Ok(v)
    }

    /// Closes VTEPs no tunnel uses any more.
    pub(super) fn release_vteps(&mut self) {
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
    pub(super) fn retry_tunnels(&mut self) {
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
    pub(super) fn refresh_tunnels(&mut self) {
        self.release_vteps();
        // The GSO TAPs first: a filter found missing is forgotten there, for the
        // remotes below to add it again.
        for (k, v) in &self.vteps {
            if let Some(g) = &v.gso {
                g.refresh(*k);
            }
        }
        let mut tables: HashMap<VtepKey, vxlan::decap::VtepTable> = HashMap::new();
        let mut remotes: HashMap<VtepKey, Vec<Ipv4Addr>> = HashMap::new();
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
                    crate::sys::udp::path_mtu(t.vtep.key.local, r.addr, t.vtep.key.dstport)
                {
                    r.mtu.store(mtu, Ordering::Relaxed);
                }
                if let Some(g) = &t.vtep.gso {
                    g.refresh_remote(t.vtep.key, r);
                    remotes.entry(t.vtep.key).or_default().push(r.addr);
                }
            }
        }
        for (k, v) in &self.vteps {
            if let Some(g) = &v.gso {
                g.forget_remotes_but(remotes.get(k).map(Vec::as_slice).unwrap_or_default());
            }
            v.table
                .store(Arc::new(tables.remove(k).unwrap_or_default()));
        }
    }

    /// Looks again for the way whole super-frames reach the remotes that have none yet
    /// for want of a neighbour entry for the next hop (until the first frame to it).
    pub(super) fn retry_whole_paths(&self) {
        for rt in self.ports.values() {
            let Some(t) = &rt.tunnel else { continue };
            let Some(g) = &t.vtep.gso else { continue };
            for r in t.remotes.load().iter() {
                if g.retry_soon(r) {
                    g.refresh_remote(t.vtep.key, r);
                }
            }
        }
    }

    /// Adds runtime remotes for `addrs` to the running tunnel `t`, each in the lowest
    /// free slot (what picks its outer source ports and its WireGuard peer index).
    pub(super) fn add_remote_rts(
        &self,
        t: &TunnelRt,
        tc: &TunnelConf,
        addrs: impl IntoIterator<Item = Ipv4Addr>,
    ) {
        let mut next: Vec<Arc<RemoteRt>> = t.remotes.load().iter().cloned().collect();
        for a in addrs {
            let slot = (1u16..)
                .find(|s| !next.iter().any(|r| r.slot == *s))
                .unwrap_or(u16::MAX);
            next.push(Arc::new(remote_rt(
                &self.shared.wg_key,
                &t.vtep,
                tc,
                slot,
                a,
            )));
        }
        t.remotes.store(Arc::new(next));
    }
}

pub(super) fn not_a_tunnel(bridge: &str, port: &str) -> ControlError {
    ControlError::NotATunnel {
        port: port.to_string(),
        bridge: bridge.to_string(),
    }
}

/// The VTEP a tunnel's settings put it on.
pub(super) fn vtep_key(t: &TunnelConf) -> VtepKey {
    VtepKey {
        local: t.local,
        dstport: t.encrypt.as_ref().map_or(t.dstport, |e| e.listen_port),
        encrypted: t.encrypt.is_some(),
    }
}

/// Remote `addr` of tunnel `t` in `slot`, with its WireGuard peer if `t` is encrypted
/// (its VTEP `vtep` then has the listener).
pub(super) fn remote_rt(
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
