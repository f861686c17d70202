//! The frame path: what happens to one frame that arrives on a bridge port, as a list of
//! named stages in the order the frame meets them.
//!
//! ```text
//! receive ─► classify ─► guard ──────────────────────► learn ─► suppress ──────► decide ─────► police ─► egress ─────► rewrite ─► Sink
//!  (count)   (tag, VLAN) (headers, binding, gateway)   (FDB)   (ARP answered   (FDB, flood) (storm)  (VLAN rule) (tag push/pop)
//!                                                               from the cluster)
//! ```
//!
//! The pipeline owns no socket, thread or queue. It takes a received frame, the port it
//! came in on and a read-only [`Snapshot`], and returns its [`Verdict`]; each copy it
//! decides to send is written, tag and virtio-net offsets adjusted, into a pool buffer
//! and handed to a [`Sink`] for the destination port. The worker's sink queues it on the
//! port's TX queue; the fuzz harnesses' sink checks it byte for byte; the benches' sink
//! counts it. Every drop is counted with its reason where it happens.
//!
//! Frames reach a bridge from three places, each with its entry here: a port's receive
//! ring or TAP ([`Ingress::frame`], [`Ingress::frame_owned`]), a VTEP's socket
//! ([`tunnel`]: decapsulated, then into the tunnel port's ingress) and the gateway
//! ([`gateway`]: routed frames enter their bridge at its gateway port).

pub mod encrypted;
pub mod gateway;
pub mod services;
pub mod suppress;
pub mod tunnel;

#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::counters::{bump, BridgeEvent, Drop};
use crate::dataplane::{BridgeView, GatewayGuard, Guarded, PortRt, Snapshot};
use crate::fdb::{dest, port_of, remote_of, Dest, Fdb, Learn};
use crate::pool::{Buf, Pool, LARGE, SMALL};
use crate::vlan::{self, Class, VlanTable};
use crate::wire::{vnet, EthernetFrame};

/// Where the frames the pipeline sends go.
pub trait Sink {
    /// Takes `buf` (virtio-net header and frame, ready to send) for port `dst`, and on a
    /// tunnel port for remote `remote` (0: every remote); `from` says what it was made
    /// from. The sink owns `buf` from here on.
    fn deliver(&mut self, dst: &Arc<PortRt>, remote: u16, buf: Buf, from: Origin<'_>);
}

/// What a frame handed to a [`Sink`] was made from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A copy of this arrival, its tag rewritten as [`TagAction`] said.
    Copied(&'a Arrival<'a>, TagAction),
    /// The arrival's own buffer, sent on unchanged: its bytes are the delivered ones.
    Moved(Tags),
    /// A frame the gateway sends out of the uplink.
    Gateway,
    /// An ARP reply the switch made for a cluster endpoint ([`suppress`]).
    Answer,
}

/// A frame as a port's receive path hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'f> {
    /// The virtio-net header in front of it (offload state).
    pub vnet: &'f [u8],
    /// The Ethernet frame.
    pub bytes: &'f [u8],
    /// The outer tag (TPID, TCI) the kernel took off it, if any.
    pub aux: Option<(u16, u16)>,
    /// The receive ring kept only part of it.
    pub truncated: bool,
}

impl<'f> Frame<'f> {
    /// A frame read whole with its virtio-net header in front (a TAP read, a buffer):
    /// anything shorter than the header is all frame, and classified as a runt.
    pub fn split(bytes: &'f [u8], aux: Option<(u16, u16)>) -> Self {
        let (vnet, bytes) = bytes.split_at(vnet::LEN.min(bytes.len()));
        Frame {
            vnet,
            bytes,
            aux,
            truncated: false,
        }
    }
}

/// What classification found out about a frame, apart from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tags {
    /// The frame's VLAN, priority and TPID as the ingress port classified it.
    pub class: Class,
    /// The frame still has its outer tag in its bytes (at offset 12).
    pub tag_in_frame: bool,
    /// Behind its outer tag the frame carries another one.
    pub inner_tag: bool,
    /// The port it arrived on.
    pub ingress: crate::fdb::PortId,
}

/// A received frame once classified: what the later stages need of it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'f> {
    /// The virtio-net header it came with.
    pub vnet: &'f [u8],
    /// The frame as received.
    pub frame: &'f [u8],
    /// The frame's Ethernet header, checked.
    pub eth: EthernetFrame<&'f [u8]>,
    /// Its VLAN and tags.
    pub tags: Tags,
    /// Where what follows the outer tag starts in the frame's bytes.
    pub next_at: usize,
    /// The EtherType behind the outer tag (the frame's own when untagged).
    pub next_type: u16,
}

/// Where a frame goes, as the decision stages see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Drop and count at the ingress port.
    Drop(Drop),
    /// The destination sits on the ingress port: nothing to send (normal bridge filtering).
    Filtered,
    /// Send to this one port (and, on a tunnel, this one remote).
    Forward(Dest),
    /// Send to every other port of the bridge.
    Flood,
    /// An ARP request for a cluster endpoint: the switch answers it with this MAC on the
    /// ingress port, and nothing is flooded ([`suppress`]).
    Answer(crate::wire::MacAddr),
}

/// What happens to a frame's outer tag on the way out of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagAction {
    /// The frame leaves as it came (tagged in and out with the same VLAN, or untagged).
    Keep,
    /// It leaves with this tag (TPID, TCI): pushed, or written over the one it had.
    Set(u16, u16),
    /// Its tag is taken off.
    Strip,
}

/// The context of a batch of frames arriving on one port of a bridge: what every stage
/// reads, fixed for the batch.
pub struct Ingress<'a> {
    snap: &'a Snapshot,
    pool: &'a Pool,
    port: &'a PortRt,
    bridge: &'a BridgeView,
    fdb: arc_swap::Guard<Arc<Fdb>>,
    /// The ingress port's VLAN table (`None`: VLAN-unaware).
    vlans: Option<&'a VlanTable>,
    /// What the source MAC is learned as: the port, and on a tunnel the remote.
    learn_as: Dest,
    /// The gateway's identity on this bridge, when the ingress port is not the gateway.
    guard: Option<GatewayGuard>,
    /// IPv4 and ARP headers are checked ([`check_headers`]): the bridge's `ip-checks`,
    /// except at the gateway's port, whose frames the switch built itself.
    ip_checks: bool,
    /// The ingress port's address binding (`set-port PORT allowed=`).
    binding: Option<&'a crate::portsec::Binding>,
    /// The ingress port's storm limit and the batch's time in nanoseconds, when it has
    /// one (`set-port PORT storm=`).
    storm: Option<(u32, u64)>,
    now: u32,
    aging: u32,
    /// The worker whose counters are written.
    w: usize,
}

impl<'a> Ingress<'a> {
    /// The context for frames arriving on `port` (learned as `learn_as`) at time `now`,
    /// counted as worker `w`'s; `Err(NoBridge)` while the port's bridge is being
    /// reconfigured away.
    pub fn new(
        snap: &'a Snapshot,
        pool: &'a Pool,
        port: &'a PortRt,
        learn_as: Dest,
        now: u32,
        w: usize,
    ) -> Result<Self, Drop> {
        let bridge = snap.bridge(port.bridge).ok_or(Drop::NoBridge)?;
        Ok(Ingress {
            snap,
            pool,
            port,
            bridge,
            fdb: bridge.rt.fdb.load(),
            vlans: snap.vlan(port.id),
            learn_as,
            guard: bridge.guard.filter(|_| port.kind != ctl::PortKind::Gateway),
            ip_checks: bridge.ip_checks && port.kind != ctl::PortKind::Gateway,
            binding: snap.binding(port.id),
            storm: match port.storm.rate() {
                0 => None,
                pps => Some((pps, crate::portsec::now_ns())),
            },
            now,
            aging: bridge.rt.aging.load(Ordering::Relaxed),
            w,
        })
    }

    /// Runs one frame through every stage; its copies go to `sink`.
    #[inline]
    pub fn frame(&self, f: Frame<'_>, sink: &mut impl Sink) -> Verdict {
        match self.decided(f) {
            Ok((v, a)) => {
                self.dispatch(v, &a, sink);
                v
            }
            Err(d) => self.drop(d),
        }
    }

    /// Runs a frame that sits in a pool buffer of its own (virtio-net header first). A
    /// super-frame forwarded to one port unchanged leaves in that very buffer (`slot` is
    /// emptied): the copy saved is 64 KiB per TCP super-frame.
    #[inline]
    pub fn frame_owned(
        &self,
        slot: &mut Option<Buf>,
        aux: Option<(u16, u16)>,
        sink: &mut impl Sink,
    ) -> Verdict {
        let Some(b) = slot.as_ref() else {
            return Verdict::Filtered;
        };
        let large = b.bytes().len() > SMALL;
        let (v, a) = match self.decided(Frame::split(b.bytes(), aux)) {
            Ok(x) => x,
            Err(d) => return self.drop(d),
        };
        if let (Verdict::Forward(p), true) = (v, large) {
            if let Some(dst) = self.deliverable(port_of(p)) {
                match self.egress(dst, &a) {
                    Some(TagAction::Keep) => {
                        let tags = a.tags;
                        if let Some(buf) = slot.take() {
                            sink.deliver(dst, remote_of(p), buf, Origin::Moved(tags));
                        }
                    }
                    Some(tag) => self.rewrite(dst, &a, tag, remote_of(p), sink),
                    None => self
                        .bridge
                        .rt
                        .counters
                        .add(self.w, BridgeEvent::VlanFiltered, 1),
                }
                return v;
            }
        }
        self.dispatch(v, &a, sink);
        v
    }

    /// Stages 0 to 5: the frame counted, classified, guarded, learned, decided and
    /// policed.
    #[inline]
    fn decided<'f>(&self, f: Frame<'f>) -> Result<(Verdict, Arrival<'f>), Drop> {
        self.receive(&f)?;
        let a = self.classify(f)?;
        let v = match self.guard(&a)? {
            Some(v) => v,
            None => match self.learn(&a) {
                Ok(()) => self.suppress(&a).unwrap_or_else(|| {
                    self.police(self.divert(&a).unwrap_or_else(|| self.decide(&a)))
                }),
                Err(d) => Verdict::Drop(d),
            },
        };
        Ok((v, a))
    }

    /// Stage 0, receive: counts the frame at its port and refuses one the ring cut.
    #[inline]
    fn receive(&self, f: &Frame<'_>) -> Result<(), Drop> {
        let b = self.port.counters.block(self.w);
        bump(&b.rx_packets, 1);
        bump(&b.rx_bytes, f.bytes.len() as u64);
        if f.truncated {
            return Err(Drop::Oversize);
        }
        Ok(())
    }

    /// Stage 1, classify: the Ethernet header, the outer tag (in the frame or taken off
    /// by the kernel) and the VLAN the ingress port's rules put the frame in.
    #[inline]
    pub fn classify<'f>(&self, f: Frame<'f>) -> Result<Arrival<'f>, Drop> {
        let eth = EthernetFrame::new_checked(f.bytes).map_err(|_| Drop::Runt)?;
        let outer = vlan::outer(&eth, f.aux);
        let class = vlan::classify(self.vlans, outer.tag)?;
        Ok(Arrival {
            vnet: f.vnet,
            frame: f.bytes,
            eth,
            tags: Tags {
                class,
                tag_in_frame: outer.in_frame,
                inner_tag: outer.inner_tag(),
                ingress: self.port.id,
            },
            next_at: outer.next_at,
            next_type: outer.next_type,
        })
    }

    /// Starts loading the FDB slot of a frame still to come (the ring's `ahead`), so its
    /// lookup does not wait on memory: in the VLAN an untagged or in-frame-tagged frame is
    /// classified in (a tag the kernel took off is not known yet; a wrong guess only
    /// wastes the prefetch).
    #[inline]
    pub fn prefetch(&self, ahead: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(ahead) else {
            return;
        };
        let dst = eth.dst();
        if dst.is_multicast() {
            return;
        }
        if let Ok(class) = vlan::classify(self.vlans, vlan::outer(&eth, None).tag) {
            self.fdb.prefetch(class.vid, dst);
        }
    }

    /// Stage 2, guard: with `ip-checks` on, a malformed IPv4 or ARP header (behind the
    /// outer tag, as classified) is dropped before anything is learned from the frame
    /// ([`check_headers`]). On a bridge with a gateway, no other port may send from the
    /// gateway's MAC (it would move the gateway in the FDB to that port) or claim its
    /// address in ARP: such ARP goes to the gateway alone, which counts it as
    /// `arp_spoofed`, instead of reaching the neighbours whose entry for the gateway it
    /// would overwrite. A port bound to its addresses sends from those alone
    /// ([`crate::portsec::Binding::permits`], `spoofed_src`). `Ok(None)`: an ordinary
    /// frame, on to learning.
    #[inline]
    fn guard(&self, a: &Arrival<'_>) -> Result<Option<Verdict>, Drop> {
        let payload = a.frame.get(a.next_at..).unwrap_or(&[]);
        if self.ip_checks {
            check_headers(a.next_type, payload)?;
        }
        if let Some(b) = self.binding {
            if !b.permits(a.eth.src(), a.next_type, payload) {
                return Err(Drop::SpoofedSrc);
            }
        }
        let Some(g) = self.guard else {
            return Ok(None);
        };
        let src = a.eth.src();
        match g.check(src, a.next_type, payload) {
            Guarded::Clear => Ok(None),
            Guarded::SpoofedMac => Err(Drop::GatewaySpoof),
            Guarded::SpoofedArp => Ok(Some(
                match self
                    .bridge
                    .ports
                    .iter()
                    .find(|p| p.kind == ctl::PortKind::Gateway)
                {
                    Some(p) => Verdict::Forward(dest(p.id, 0)),
                    None => Verdict::Drop(Drop::GatewaySpoof),
                },
            )),
        }
    }

    /// Stage 3, learn: the source MAC, which must be a station's (not multicast, not
    /// zero), is learned in the frame's VLAN at the ingress port (and remote).
    #[inline]
    fn learn(&self, a: &Arrival<'_>) -> Result<(), Drop> {
        let src = a.eth.src();
        if src.is_multicast() || src.is_zero() {
            return Err(Drop::InvalidSrc);
        }
        let event = match self
            .fdb
            .learn(a.tags.class.vid, src, self.learn_as, self.now)
        {
            Learn::Known | Learn::Refreshed => return Ok(()),
            Learn::Added => BridgeEvent::Learned,
            Learn::Moved => BridgeEvent::Moved,
            Learn::LimitReached => BridgeEvent::MacLimit,
            Learn::TableFull => BridgeEvent::TableFull,
        };
        self.bridge.rt.counters.add(self.w, event, 1);
        Ok(())
    }

    /// Stage 3b, suppress: on a bridge with an ARP table (a cluster overlay), an ARP
    /// request from a local port for an address in the table is answered by the switch.
    #[inline]
    fn suppress(&self, a: &Arrival<'_>) -> Option<Verdict> {
        if a.next_type != wire::ethertype::ARP || self.port.kind == ctl::PortKind::Vxlan {
            return None;
        }
        let table = self.bridge.rt.suppress.load();
        suppress::answer(table.as_deref()?, a).map(Verdict::Answer)
    }

    /// Stage 4a, divert ([`services`]): on a bridge with services, a unicast IPv4
    /// packet from a backend's service port (or a backend that left but still has
    /// connections), or an ICMP error from a backend, to another station goes to the
    /// gateway, which translates it back if it belongs to a VIP's flow.
    #[inline]
    fn divert(&self, a: &Arrival<'_>) -> Option<Verdict> {
        let replies = self.bridge.services.as_deref()?;
        let g = self.guard?;
        let dst = a.eth.dst();
        if a.next_type != wire::ethertype::IPV4 || dst.is_multicast() || dst == g.mac {
            return None;
        }
        if !replies.diverts(a.frame.get(a.next_at..)?) {
            return None;
        }
        // A reply to a station behind a tunnel (a client of another node's gateway, or
        // another node's mesh address) is that node's to translate: it goes on as is.
        if let Some(p) = self.fdb.lookup(a.tags.class.vid, dst, self.now, self.aging) {
            let behind_tunnel = self
                .bridge
                .ports
                .iter()
                .any(|q| q.id == port_of(p) && q.kind == ctl::PortKind::Vxlan);
            if behind_tunnel {
                return None;
            }
        }
        let gw = self
            .bridge
            .ports
            .iter()
            .find(|p| p.kind == ctl::PortKind::Gateway)?;
        Some(Verdict::Forward(dest(gw.id, 0)))
    }

    /// Stage 4, decide: broadcast, multicast and unknown unicast flood; 802.1D
    /// link-local destinations never leave; a known destination is forwarded, unless it
    /// sits behind the ingress port (on any of its remotes: a tunnel never relays
    /// between its own remotes).
    #[inline]
    fn decide(&self, a: &Arrival<'_>) -> Verdict {
        let dst = a.eth.dst();
        if dst.is_multicast() {
            if dst.is_link_local() {
                return Verdict::Drop(Drop::LinkLocal);
            }
            return Verdict::Flood;
        }
        match self.fdb.lookup(a.tags.class.vid, dst, self.now, self.aging) {
            Some(p) if port_of(p) == port_of(self.learn_as) => Verdict::Filtered,
            Some(p) => Verdict::Forward(p),
            None => Verdict::Flood,
        }
    }

    /// Stage 5, police: on a port with a storm limit, what would be flooded (broadcast,
    /// multicast, unknown unicast) takes a token from its bucket or is dropped
    /// (`storm_dropped`); known unicast is never limited.
    #[inline]
    fn police(&self, v: Verdict) -> Verdict {
        match (v, self.storm) {
            (Verdict::Flood, Some((pps, now))) if !self.port.storm.admit(pps, now) => {
                Verdict::Drop(Drop::StormDropped)
            }
            _ => v,
        }
    }

    /// Carries the verdict out: one port, every port, or none.
    #[inline]
    fn dispatch(&self, v: Verdict, a: &Arrival<'_>, sink: &mut impl Sink) {
        let c = &self.bridge.rt.counters;
        match v {
            Verdict::Drop(d) => {
                self.drop(d);
            }
            Verdict::Filtered => c.add(self.w, BridgeEvent::Filtered, 1),
            Verdict::Forward(p) => match self.deliverable(port_of(p)) {
                Some(dst) => match self.egress(dst, a) {
                    Some(tag) => self.rewrite(dst, a, tag, remote_of(p), sink),
                    None => c.add(self.w, BridgeEvent::VlanFiltered, 1),
                },
                // Learned on a port that is gone or down: fall back to flooding.
                None => self.flood(a, sink),
            },
            Verdict::Flood => self.flood(a, sink),
            Verdict::Answer(mac) => self.answer(a, mac, sink),
        }
    }

    /// Sends the ARP reply for `a` from `mac` back out of the ingress port.
    fn answer(&self, a: &Arrival<'_>, mac: crate::wire::MacAddr, sink: &mut impl Sink) {
        let mut frame = [0u8; suppress::REPLY_LEN];
        let Some(me) = self.snap.port(self.port.id) else {
            return;
        };
        if !suppress::reply(a, mac, &mut frame) {
            return;
        }
        let Some(mut buf) = self.pool.get(vnet::LEN + frame.len()) else {
            return me.counters.drop(self.w, Drop::NoBuffer, 1);
        };
        if !buf.fill(&[&[0u8; vnet::LEN], &frame]) {
            self.pool.put(buf);
            return me.counters.drop(self.w, Drop::Oversize, 1);
        }
        self.bridge
            .rt
            .counters
            .add(self.w, BridgeEvent::ArpSuppressed, 1);
        sink.deliver(me, remote_of(self.learn_as), buf, Origin::Answer);
    }

    /// Sends a copy to every other port of the bridge that is up and carries the
    /// frame's VLAN (to every remote of a tunnel).
    fn flood(&self, a: &Arrival<'_>, sink: &mut impl Sink) {
        self.bridge.rt.counters.add(self.w, BridgeEvent::Flooded, 1);
        for dst in &self.bridge.ports {
            if dst.id == self.port.id || !dst.up.load(Ordering::Relaxed) {
                continue;
            }
            if dst.tunnel.is_some() {
                self.bridge
                    .rt
                    .counters
                    .add(self.w, BridgeEvent::TunnelFlooded, 1);
            }
            if let Some(tag) = self.egress(dst, a) {
                self.rewrite(dst, a, tag, 0, sink);
            }
        }
    }

    /// Stage 6, egress: whether the frame may leave `dst` and what happens to its tag,
    /// by the port's VLAN rules and one more: a frame whose outer tag would be popped on
    /// a trunk (its native VLAN) while another tag sits behind it is refused, since the
    /// peer would switch it in the inner tag's VLAN (the double-tagging VLAN hop).
    #[inline]
    pub fn egress(&self, dst: &PortRt, a: &Arrival<'_>) -> Option<TagAction> {
        let table = self.snap.vlan(dst.id);
        let tagged = vlan::egress(table, &a.tags.class)?;
        if !tagged && a.tags.inner_tag && table.is_some_and(|t| t.is_trunk()) {
            self.drop(Drop::VlanDoubleTag);
            return None;
        }
        Some(match (tagged, a.tags.tag_in_frame) {
            (true, true) if a.frame_vid() == a.tags.class.vid => TagAction::Keep,
            (true, _) => {
                let (tpid, tci) = a.tags.class.tag();
                TagAction::Set(tpid, tci)
            }
            (false, true) => TagAction::Strip,
            (false, false) => TagAction::Keep,
        })
    }

    /// Stage 7, rewrite: the frame as it leaves `dst`, its tag pushed, popped or kept
    /// (PCP, DEI and TPID kept) and the virtio-net offsets moved to match, in a pool
    /// buffer of its own, handed to the sink.
    #[inline]
    fn rewrite(
        &self,
        dst: &Arc<PortRt>,
        a: &Arrival<'_>,
        tag: TagAction,
        remote: u16,
        sink: &mut impl Sink,
    ) {
        let (strip, out_tag) = match tag {
            TagAction::Keep => (false, None),
            TagAction::Set(tpid, tci) => (a.tags.tag_in_frame, Some((tpid, tci))),
            TagAction::Strip => (true, None),
        };
        let want = vnet::LEN + a.frame.len() + if out_tag.is_some() { 4 } else { 0 }
            - if strip { 4 } else { 0 };
        let Some(mut buf) = self.pool.get(want) else {
            let why = if want > LARGE {
                Drop::Oversize
            } else {
                Drop::NoBuffer
            };
            return dst.counters.drop(self.w, why, 1);
        };
        if !vlan::write_frame(&mut buf, a.vnet, a.frame, strip, out_tag) {
            self.pool.put(buf);
            return dst.counters.drop(self.w, Drop::Oversize, 1);
        }
        sink.deliver(dst, remote, buf, Origin::Copied(a, tag));
    }

    /// Port `p` if frames arriving here may be sent to it now: on the same bridge, up.
    /// The result borrows the snapshot, so no reference count is touched per frame.
    #[inline]
    fn deliverable(&self, p: crate::fdb::PortId) -> Option<&'a Arc<PortRt>> {
        self.snap
            .port(p)
            .filter(|d| d.bridge == self.port.bridge && d.up.load(Ordering::Relaxed))
    }

    /// Counts a drop at the ingress port.
    #[inline]
    fn drop(&self, why: Drop) -> Verdict {
        self.port.counters.drop(self.w, why, 1);
        Verdict::Drop(why)
    }
}

/// The header checks of `ip-checks`, as the Linux bridge's `br_netfilter` (which
/// Docker's bridge enables) makes of IPv4 before it is forwarded, and ARP's length:
/// `payload` is what follows EtherType `ethertype`. Other EtherTypes pass untouched.
///
/// The IPv4 header checksum is checked whatever the virtio-net header says: its
/// `NEEDS_CSUM` leaves the L4 checksum to offload, never the IPv4 header's, which the
/// sender's stack always fills (`ip_send_check`), for a TSO/GSO super-frame too (whose
/// total length is its own length, as its header says). Ethernet padding past the total
/// length is allowed.
#[inline]
pub fn check_headers(ethertype: u16, payload: &[u8]) -> Result<(), Drop> {
    match ethertype {
        wire::ethertype::IPV4 => wire::ipv4::check_header(payload).map_err(|_| Drop::BadIpHeader),
        wire::ethertype::ARP => wire::arp::ArpPacket::new_checked(payload)
            .map(|_| ())
            .map_err(|_| Drop::BadArp),
        _ => Ok(()),
    }
}

impl Arrival<'_> {
    /// The VLAN id in the frame's own outer tag (meaningful when `tag_in_frame`).
    #[inline]
    fn frame_vid(&self) -> u16 {
        self.eth.vlan()
    }
}
