//! Fuzz target `frame`: frames through a bridge and its gateway by the real pipeline.

use super::*;

/// Port ids of [`BridgeLab`].
pub mod lab_port {
    use crate::fdb::PortId;
    /// VLAN-unaware.
    pub const UNAWARE: PortId = 1;
    /// Access port of VLAN 10.
    pub const ACCESS: PortId = 2;
    /// Trunk: VLANs 10 and 20 tagged, 1 native (untagged, PVID).
    pub const TRUNK_NATIVE: PortId = 3;
    /// Trunk: VLANs 10, 20 and 30 tagged, no native VLAN.
    pub const TRUNK: PortId = 4;
    /// Another VLAN-unaware port.
    pub const UNAWARE2: PortId = 5;
    /// [`UNAWARE2`] is bound to this MAC and [`BOUND_IP`], with a storm limit of
    /// [`BOUND_STORM_PPS`].
    pub const BOUND_MAC: crate::wire::MacAddr = crate::wire::MacAddr([2, 0, 0, 0, 0, 5]);
    pub const BOUND_IP: [u8; 4] = [10, 1, 0, 5];
    pub const BOUND_STORM_PPS: u32 = 1000;
    /// The gateway's port on the bridge.
    pub const GATEWAY: PortId = 6;
    /// The gateway's uplink (no bridge's port).
    pub const UPLINK: PortId = 7;
}

/// FDB limit of the lab's bridge: small, so a fuzzed MAC flood reaches it.
pub(super) const LAB_MAC_LIMIT: u32 = 32;
/// FDB aging of the lab's bridge, seconds.
pub(super) const LAB_AGING: u32 = 30;
/// Frames the gateway routes per record at most, so a loop between the bridge and the
/// gateway cannot make one input run for ever.
pub(super) const LAB_HOPS: usize = 64;

/// A bridge of six ports ([`lab_port`]) whose network has a gateway that also has an
/// uplink, as the daemon's controller publishes it: a real [`Snapshot`] driven through
/// the real [`pipeline`](crate::pipeline) — the very functions a worker calls — with a
/// [`Sink`] that checks every frame instead of queueing it. What the bridge sends to the
/// gateway's port is routed by `Gateway::handle` and emitted by the pipeline's gateway
/// entry, as the gateway's worker does.
pub struct BridgeLab {
    snap: Snapshot,
    pool: Pool,
    now: u32,
    clean: Clean,
    guard: GatewayGuard,
}

impl Default for BridgeLab {
    fn default() -> Self {
        Self::new()
    }
}

/// The lab's [`Sink`]: checks each frame the pipeline sends against what it was made
/// from; frames for the gateway's port are kept for the gateway, the rest go back to
/// the pool.
pub(super) struct LabSink<'a> {
    snap: &'a Snapshot,
    pool: &'a Pool,
    to_gateway: Vec<Buf>,
}

impl Sink for LabSink<'_> {
    fn deliver(&mut self, dst: &Arc<PortRt>, remote: u16, buf: Buf, from: Origin<'_>) {
        assert_eq!(remote, 0, "bridge: a remote on a lab port");
        let table = self.snap.vlan(dst.id);
        let ingress = match from {
            Origin::Copied(a, _) => Some(a.tags.ingress),
            Origin::Moved(t) => Some(t.ingress),
            Origin::Gateway | Origin::Answer => None,
        };
        if ingress == Some(lab_port::UNAWARE2) {
            assert_eq!(
                crate::wire::MacAddr::read(buf.bytes(), crate::wire::vnet::LEN + 6),
                Some(lab_port::BOUND_MAC),
                "bridge: a bound port's frame from another MAC left"
            );
        }
        match from {
            Origin::Copied(a, tag) => {
                check_egress(dst.id, table, &a.tags, tag, buf.bytes(), Some(a))
            }
            Origin::Moved(tags) => {
                check_egress(dst.id, table, &tags, TagAction::Keep, buf.bytes(), None)
            }
            Origin::Gateway => assert_eq!(dst.id, lab_port::UPLINK, "bridge: gateway frame"),
            // The lab's bridges have no ARP table: nothing is answered.
            Origin::Answer => panic!("bridge: an ARP answer without a table"),
        }
        if dst.id == lab_port::GATEWAY {
            self.to_gateway.push(buf);
        } else {
            self.pool.put(buf);
        }
    }
}

impl BridgeLab {
    /// The lab, with an empty FDB.
    pub fn new() -> Self {
        let pool = Pool::new(POOL_SMALL, POOL_LARGE);
        let vl = |untagged: &[u16], tagged: &[u16], pvid: Option<u16>| {
            VlanTable::new(&ctl::PortVlans {
                pvid,
                untagged: untagged.to_vec(),
                tagged: tagged.to_vec(),
            })
        };
        let port = |id: PortId, kind: ctl::PortKind, bridge: u32| {
            // The sink checks frames instead of queueing them: one slot is enough.
            let p = Arc::new(PortRt::with_txq_len(id, "lab", kind, bridge, 0, 1, 1));
            p.up.store(true, std::sync::atomic::Ordering::Relaxed);
            p
        };
        let guard = GatewayGuard {
            mac: GW0_MAC,
            ip: GW0.octets(),
        };
        let mut snap = Snapshot::default();
        let mut ports = Vec::new();
        for (id, table) in [
            (lab_port::UNAWARE, None),
            (lab_port::ACCESS, vl(&[10], &[], Some(10))),
            (lab_port::TRUNK_NATIVE, vl(&[1], &[10, 20], Some(1))),
            (lab_port::TRUNK, vl(&[], &[10, 20, 30], None)),
            (lab_port::UNAWARE2, None),
        ] {
            let p = port(id, ctl::PortKind::Afpacket, 0);
            snap.put_port(p.clone(), table);
            ports.push(p);
        }
        let gw = port(lab_port::GATEWAY, ctl::PortKind::Gateway, 0);
        snap.put_port(gw.clone(), None);
        ports.push(gw.clone());
        snap.put_binding(
            lab_port::UNAWARE2,
            Some(crate::portsec::Binding {
                mac: lab_port::BOUND_MAC,
                ips: vec![lab_port::BOUND_IP].into(),
            }),
        );
        if let Some(p) = snap.port(lab_port::UNAWARE2) {
            p.storm.set_rate(lab_port::BOUND_STORM_PPS);
        }
        let uplink = port(lab_port::UPLINK, ctl::PortKind::Afpacket, UPLINK_BRIDGE);
        snap.put_port(uplink.clone(), None);
        snap.put_bridge(BridgeView {
            rt: Arc::new(BridgeRt::new(0, "lab", LAB_AGING, LAB_MAC_LIMIT, 1)),
            ports,
            guard: Some(guard),
            ip_checks: true,
            services: None,
        });
        snap.gateway = Some(GatewayView {
            rt: Arc::new(GatewayRt {
                owner: 0,
                state: std::sync::Mutex::new(lab_gateway(&pool, false)),
                published: Default::default(),
            }),
            uplink: Some(uplink),
            ports: vec![gw],
        });
        BridgeLab {
            snap,
            pool,
            now: 1,
            clean: Clean { fixed: true },
            guard,
        }
    }

    fn sink(&self) -> LabSink<'_> {
        LabSink {
            snap: &self.snap,
            pool: &self.pool,
            to_gateway: Vec::new(),
        }
    }

    /// Moves the bridge's clock on by `secs`.
    pub fn advance(&mut self, secs: u32) {
        self.now = self.now.saturating_add(secs);
    }

    /// Receives `vnet_hdr + frame` at port `port` (`aux`: the tag the kernel stripped)
    /// and follows it and everything it causes (gateway replies, routed packets)
    /// through the bridge and the gateway. A frame too large for a small buffer comes
    /// in a buffer of its own, as a ring hands it over.
    pub fn receive(
        &mut self,
        port: PortId,
        vnet_hdr: &[u8],
        frame: &[u8],
        aux: Option<(u16, u16)>,
    ) {
        let Some(rt) = self.snap.port(port) else {
            return;
        };
        let Ok(ing) = Ingress::new(&self.snap, &self.pool, rt, port, self.now, 0) else {
            panic!("bridge: port {port} has no bridge");
        };
        let mut sink = self.sink();
        let v = if vnet_hdr.len() + frame.len() > crate::pool::SMALL {
            let mut slot = self.pool.get(vnet_hdr.len() + frame.len());
            if let Some(b) = slot.as_mut() {
                assert!(
                    b.fill(&[vnet_hdr, frame]),
                    "bridge: a large buffer is too small"
                );
            }
            let v = ing.frame_owned(&mut slot, aux, &mut sink);
            if let Some(b) = slot {
                self.pool.put(b);
            }
            v
        } else {
            let f = Frame {
                vnet: vnet_hdr,
                bytes: frame,
                aux,
                truncated: false,
            };
            ing.frame(f, &mut sink)
        };
        if let Verdict::Forward(p) = v {
            assert_ne!(
                port_of(p),
                port,
                "bridge: forwarded back out of its ingress port"
            );
        }
        if let Some(t) = self.snap.vlan(port) {
            if let Ok(a) = ing.classify(Frame::split(&[vnet_hdr, frame].concat(), aux)) {
                assert!(
                    t.is_member(a.tags.class.vid),
                    "bridge: classified into VLAN {} it is no member of",
                    a.tags.class.vid
                );
            }
        }
        let pending = std::mem::take(&mut sink.to_gateway);
        drop(ing);
        self.route(
            pending.into_iter().map(|b| (Side::Net(0), b)).collect(),
            false,
        );
    }

    /// Receives `vnet_hdr + frame` on the gateway's uplink.
    pub fn receive_uplink(&mut self, vnet_hdr: &[u8], frame: &[u8]) {
        let Some(up) = self.snap.port(lab_port::UPLINK) else {
            return;
        };
        let f = Frame {
            vnet: vnet_hdr,
            bytes: frame,
            aux: None,
            truncated: false,
        };
        // A frame the uplink refuses is counted there and goes no further.
        if let Ok(b) = crate::pipeline::gateway::from_uplink(up, &self.pool, 0, f) {
            self.route(vec![(Side::Uplink, b)], false);
        }
    }

    /// The once-a-second tick of the gateway (ARP retries, expiry).
    pub fn tick(&mut self) {
        self.route(Vec::new(), true);
    }

    /// The gateway's turn, as its worker takes it, until nothing more is for the
    /// gateway or [`LAB_HOPS`] frames were routed: each frame the gateway sends is
    /// checked (`check_gateway_out`) before the pipeline's gateway entry emits it.
    fn route(&mut self, mut input: Vec<(Side, Buf)>, mut tick: bool) {
        let mut hops = 0;
        let Some(gv) = self.snap.gateway.as_ref() else {
            return;
        };
        while !input.is_empty() || tick {
            let mut out = Out::new();
            {
                let mut g = gv.rt.state.lock().unwrap_or_else(|p| p.into_inner());
                for (side, b) in input.drain(..) {
                    hops += 1;
                    if hops > LAB_HOPS {
                        self.pool.put(b);
                    } else {
                        g.handle(side, b, &self.pool, &mut out);
                    }
                }
                if std::mem::take(&mut tick) {
                    g.tick(&self.pool, &mut out);
                }
            }
            for (side, b) in &out {
                check_gateway_out(*side, b, self.clean, "bridge (gateway)");
            }
            let mut sink = LabSink {
                snap: &self.snap,
                pool: &self.pool,
                to_gateway: Vec::new(),
            };
            crate::pipeline::gateway::emit(
                &self.snap, &self.pool, gv, self.now, 0, &mut out, &mut sink,
            );
            input.extend(sink.to_gateway.into_iter().map(|b| (Side::Net(0), b)));
        }
    }

    /// The checks on the bridge's state after a record: the gateway's MAC is learned
    /// nowhere but at the gateway's port, in any VLAN; the FDB is within its limit.
    fn check_state(&self) {
        let Some(b) = self.snap.bridge(0) else {
            panic!("bridge: the lab's bridge is gone");
        };
        let fdb = b.rt.fdb.load();
        assert!(
            fdb.len() <= LAB_MAC_LIMIT as usize,
            "bridge: FDB holds {} entries, above its limit",
            fdb.len()
        );
        for vid in [0, 1, 10, 20, 30] {
            let at = fdb.lookup(vid, self.guard.mac, self.now, LAB_AGING);
            assert!(
                at.is_none() || at == Some(lab_port::GATEWAY),
                "bridge: the gateway's MAC is learned at port {at:?} in VLAN {vid}"
            );
        }
    }

    /// Ends the run: panics if a buffer was lost.
    pub fn finish(self) {
        let Some(gv) = self.snap.gateway.as_ref() else {
            return;
        };
        let mut g = gv.rt.state.lock().unwrap_or_else(|p| p.into_inner());
        assert_pool_whole(&mut g, &self.pool, "bridge");
    }
}

/// The checks on a frame the bridge sent to port `port` (VLAN table `table`), made from
/// a frame classified as `tags` with tag action `tag`: its tag is the frame's VLAN with
/// its priority and TPID, or gone, as the port's VLAN rules say; nothing leaves a trunk
/// untagged with a tag exposed; an access port gets its VLAN only; it never goes back out
/// of its ingress port. With the arrival `a` it was copied from: every other byte is the
/// received frame's, and the virtio-net offsets still point at the same bytes.
pub(super) fn check_egress(
    port: PortId,
    table: Option<&VlanTable>,
    tags: &Tags,
    tag: TagAction,
    out: &[u8],
    a: Option<&Arrival<'_>>,
) {
    assert_ne!(
        port, tags.ingress,
        "bridge: sent back out of its ingress port"
    );
    let tagged = match tag {
        TagAction::Set(..) => true,
        TagAction::Strip => false,
        TagAction::Keep => tags.tag_in_frame,
    };
    let in_len = if tags.tag_in_frame { 4 } else { 0 };
    let out_len = if tagged { 4 } else { 0 };
    let o = &out[vnet::LEN..];
    if tagged {
        let (tpid, tci) = tags.class.tag();
        assert_eq!(
            (be16(o, 12), be16(o, 14)),
            (Some(tpid), Some(tci)),
            "bridge: tag pushed"
        );
        assert_eq!(tci & 0x0fff, tags.class.vid);
    }
    if let Some(t) = table {
        assert!(
            t.is_member(tags.class.vid),
            "bridge: VLAN {} leaves a non-member",
            tags.class.vid
        );
        if !tagged && t.is_trunk() {
            assert!(
                !matches!(be16(o, 12), Some(0x8100 | 0x88a8)),
                "bridge: a tagged frame leaves trunk {port} untagged in VLAN {}: the peer takes its inner tag for its VLAN",
                tags.class.vid
            );
        }
    }
    if port == lab_port::ACCESS {
        assert!(
            !tagged && tags.class.vid == 10,
            "bridge: access port gets VLAN {}",
            tags.class.vid
        );
    }
    let Some(a) = a else { return };
    assert_eq!(
        o.len(),
        a.frame.len() + out_len - in_len,
        "bridge: frame length"
    );
    assert_eq!(o[..12], a.frame[..12], "bridge: MAC addresses changed");
    assert_eq!(
        o[12 + out_len..],
        a.frame[12 + in_len..],
        "bridge: payload changed"
    );
    // The virtio-net offsets moved with the tag: they point at the same bytes.
    if let (Some(hi), Some(ho)) = (VnetHdr::new_checked(a.vnet), VnetHdr::new_checked(out)) {
        let shift = out_len as isize - in_len as isize;
        let same = |i: u16, o: u16| {
            let i = usize::from(i);
            let moved = i as isize + shift;
            // Offsets into the MAC header, past the frame, or past what a u16 holds
            // after the move point at nothing in particular.
            i < 12 + in_len
                || a.frame.get(i).is_none()
                || moved > u16::MAX as isize
                || moved as usize == usize::from(o)
        };
        if hi.flags() & vnet::F_NEEDS_CSUM != 0 {
            assert!(
                same(hi.csum_start(), ho.csum_start()),
                "bridge: csum_start not moved with the tag"
            );
        }
        if hi.gso_type() != vnet::GSO_NONE {
            assert!(
                same(hi.hdr_len(), ho.hdr_len()),
                "bridge: hdr_len not moved with the tag"
            );
        }
    }
}

/// The control byte of a bridge record: bits 0-2 the port (1-6, see [`lab_port`];
/// 0: the uplink; 7: no frame, the gateway's tick), bit 3 the first 4 bytes are a tag
/// the kernel stripped (TPID, TCI), bit 4 the next 10 bytes are the virtio-net header
/// (else none), bits 5-6 the clock step (0, 1, 20, 100 s), bit 7 fix IPv4 checksums.
pub mod bridge_ctl {
    pub const PORT: u8 = 0x07;
    pub const AUX: u8 = 0x08;
    pub const VNET: u8 = 0x10;
    pub const TIME_SHIFT: u8 = 5;
    pub const FIX: u8 = 0x80;
}

/// Fuzz target `frame`: Ethernet frames — untagged, 802.1Q, QinQ, priority-tagged,
/// tags the kernel stripped, ARP, IPv4 to and through the gateway — through the
/// bridge of [`BridgeLab`] and its gateway. Checks: VLAN membership on the way in and
/// out, every byte of each copy against the received frame, tags pushed with PCP, DEI
/// and TPID kept, no double-tag VLAN hop, the FDB within its limit and the gateway's MAC
/// never learned elsewhere, the gateway's frames as in [`gateway`], no buffer lost.
pub fn frame(data: &[u8]) {
    let mut lab = BridgeLab::new();
    for (ctl, body) in records(data) {
        lab.advance([0, 1, 20, 100][usize::from(ctl >> bridge_ctl::TIME_SHIFT) & 3]);
        let mut rest = body;
        let mut aux = None;
        if ctl & bridge_ctl::AUX != 0 {
            let Some((t, r)) = rest.split_first_chunk::<4>() else {
                continue;
            };
            aux = Some((
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
            ));
            rest = r;
        }
        let mut vh = [0u8; vnet::LEN];
        if ctl & bridge_ctl::VNET != 0 {
            let Some((v, r)) = rest.split_first_chunk::<{ vnet::LEN }>() else {
                continue;
            };
            vh = *v;
            rest = r;
        }
        let mut f = rest.to_vec();
        lab.clean.fixed &= ctl & bridge_ctl::FIX != 0 && vh[0] & vnet::F_NEEDS_CSUM == 0;
        if ctl & bridge_ctl::FIX != 0 && be16(&f, 12) == Some(IPV4) {
            if let Some(ip) = f.get_mut(ETH..) {
                ipv4_fix(ip);
            }
        }
        match PortId::from(ctl & bridge_ctl::PORT) {
            0 => lab.receive_uplink(&vh, &f),
            7 => lab.tick(),
            p => lab.receive(p, &vh, &f, aux),
        }
        lab.check_state();
    }
    lab.finish();
}
