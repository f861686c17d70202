//! VXLAN tunnel ports at run time: the sockets a group of tunnels shares (a VTEP: one
//! local address and UDP port), each tunnel's remotes with their counters, and the
//! transmit side that turns queued frames into VXLAN datagrams.
//!
//! The wire format, the VNI/remote table, checksums and segmentation are the `vxlan`
//! crate's; this module only does the I/O around them.
//!
//! A VTEP receives on one socket bound to its UDP port. It sends from a small set of
//! sockets bound to ephemeral ports (the kernel takes them from `ip_local_port_range`,
//! 32768–60999 by default, the kernel vxlan device's own range), one picked per frame by
//! a hash of the inner flow: an ordinary UDP socket cannot choose its source port per
//! datagram, and varying it per flow is what lets the underlay spread flows over
//! paths (RFC 7348 §5).
//!
//! Unless `--no-vxlan-gso-tap`, a VTEP also has a TAP device ([`GsoTap`]) through which
//! TCP super-frames leave encapsulated whole, the kernel segmenting them (or, on a veth
//! underlay, carrying them whole to the peer): one write per super-frame instead of a
//! `UDP_SEGMENT` send of segments a kernel receiver cuts apart again.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use socket2::Socket;
use vxlan::decap::{DropReason, VtepTable};
use vxlan::offload::{encap_split, encap_whole, Gso, Offload, Outer, UDP_MAX_SEGMENTS, WHOLE_LEN};

use crate::pool::Buf;
use crate::sys::afpacket::TX_BATCH;
use crate::sys::gso_tap::GsoTap;
use crate::sys::udp;
use crate::wire::vnet;

/// Sending sockets per VTEP: how many distinct outer source ports flows spread over.
pub const TX_SOCKETS: usize = 16;
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) bytes: an inner frame, Ethernet header
/// included, may be the underlay MTU minus this.
pub const OVERHEAD: u32 = 36;
/// The inner MTU (IP packet) is the underlay's minus this (RFC 7348 §4: 50 bytes).
pub const INNER_MTU_OVERHEAD: u32 = 50;
/// Underlay MTU assumed until the route to a remote is known.
pub const DEFAULT_MTU: u32 = 1500;
/// Where a datagram starts in a frame buffer: the VXLAN header takes the last bytes of
/// the virtio-net header's room, so the inner frame stays where a frame goes.
pub const DGRAM_OFFSET: usize = vnet::LEN - vxlan::header::HEADER_LEN;
/// Largest UDP payload over IPv4.
const MAX_UDP_PAYLOAD: usize = 65507;

/// What identifies a VTEP: the address it binds (any if `None`) and its UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VtepKey {
    pub local: Option<Ipv4Addr>,
    pub dstport: u16,
    /// A WireGuard listener (`dstport` is its listen port), not a VXLAN socket.
    pub encrypted: bool,
}

impl std::fmt::Display for VtepKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}",
            self.local.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.dstport
        )?;
        if self.encrypted {
            f.write_str(" (wireguard)")?;
        }
        Ok(())
    }
}

/// Counters of a VTEP's receive side (written by its owner worker only).
#[derive(Default)]
pub struct VtepCounters {
    pub rx_datagrams: AtomicU64,
    pub rx_bytes: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
}

impl VtepCounters {
    /// Counts a datagram dropped for `why`.
    pub fn drop(&self, why: DropReason) {
        self.drops[why as usize].fetch_add(1, Ordering::Relaxed);
    }
    /// Non-zero drop counters by reason.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        DropReason::ALL
            .into_iter()
            .zip(&self.drops)
            .map(|(r, c)| (r.name().to_string(), c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Why a VTEP's sockets could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VtepError {
    #[error("cannot bind VXLAN socket {key}: {why}")]
    Bind { key: VtepKey, why: String },
    #[error("cannot open VXLAN sending sockets on {key}: {why}")]
    SendSockets { key: VtepKey, why: String },
}

/// A VTEP: the sockets of one (local address, UDP port), shared by the tunnels on it.
pub struct VtepRt {
    pub id: u32,
    pub key: VtepKey,
    /// The worker that reads `rx`.
    pub owner: usize,
    pub rx: Socket,
    pub tx: Vec<Socket>,
    /// VNI → tunnel port and its remotes; replaced whole when tunnels change.
    pub table: ArcSwap<VtepTable>,
    pub counters: VtepCounters,
    /// An encrypted tunnel's listener: what arrives is WireGuard, and only that.
    pub wg: Option<crate::encrypt::WgVtep>,
    /// Where TCP super-frames leave whole (unless `--no-vxlan-gso-tap`), if the TAP
    /// could be made.
    pub gso: Option<GsoTx>,
}

/// A VTEP's TAP for whole super-frames, and the IPv4 ID its packets count from.
pub struct GsoTx {
    pub tap: GsoTap,
    ip_id: AtomicU16,
    /// The outer source port of each sending socket (a flow's, whichever way it goes).
    ports: Vec<u16>,
    /// Nothing the host has changed would make the kernel drop what the TAP carries
    /// (checked with the path MTUs).
    usable: std::sync::atomic::AtomicBool,
    /// Why not, when not usable (for `vsctl stats`).
    why: std::sync::Mutex<Option<String>>,
    /// Remotes super-frames cannot reach whole, and why (logged when it changes).
    remote_why: std::sync::Mutex<std::collections::HashMap<Ipv4Addr, String>>,
}

impl GsoTx {
    /// Re-checks whether the kernel still takes what the TAP carries (putting back a
    /// qdisc or filter removed under it); logs a change.
    pub fn refresh(&self, key: VtepKey) {
        let why = self.tap.blocker();
        let was = self.usable.swap(why.is_none(), Ordering::Relaxed);
        *self.why.lock().unwrap_or_else(|p| p.into_inner()) = why.clone();
        match why {
            Some(why) if was => tracing::warn!(
                vtep = %key, tap = self.tap.name(),
                "TCP super-frames segmented here again: {why}"
            ),
            None if !was => tracing::info!(
                vtep = %key, tap = self.tap.name(),
                "TCP super-frames leave whole through the TAP, handed by its filters to the underlay devices"
            ),
            _ => {}
        }
    }

    /// Finds again how whole super-frames reach remote `r` (device, next hop, the TAP's
    /// filter); logs when that starts or stops working, or why it does not.
    pub fn refresh_remote(&self, key: VtepKey, r: &RemoteRt) {
        let mut why = self.remote_why.lock().unwrap_or_else(|p| p.into_inner());
        match whole_path(self, key.local, r.addr) {
            Ok(hop) => {
                r.whole_hop.store(Some(Arc::new(hop)));
                if why
                    .remove(&r.addr)
                    .is_some_and(|w| !w.starts_with(NO_NEIGHBOUR))
                {
                    tracing::info!(vtep = %key, remote = %r.addr, "TCP super-frames to it leave whole again");
                }
            }
            Err(e) => {
                r.whole_hop.store(None);
                if why.get(&r.addr) != Some(&e) {
                    // Before the first frame to a remote its next hop is not resolved:
                    // the usual start, not worth a warning.
                    if e.starts_with(NO_NEIGHBOUR) {
                        tracing::debug!(vtep = %key, remote = %r.addr, "TCP super-frames to it segmented: {e}");
                    } else {
                        tracing::warn!(vtep = %key, remote = %r.addr, "TCP super-frames to it segmented: {e}");
                    }
                    why.insert(r.addr, e);
                }
            }
        }
    }

    /// Whether remote `r` is worth looking at again before the 5 s refresh: it has no
    /// whole path yet, and the last try lacked only the next hop's neighbour entry (which
    /// the first frames through the sockets make), or there was none. Other reasons
    /// (a loopback route, tc refusing) wait for the refresh.
    pub fn retry_soon(&self, r: &RemoteRt) -> bool {
        r.whole_hop.load().is_none()
            && self
                .remote_why
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&r.addr)
                .is_none_or(|w| w.starts_with(NO_NEIGHBOUR))
    }

    /// Drops what it knows of remotes no longer configured.
    pub fn forget_remotes_but(&self, remotes: &[Ipv4Addr]) {
        self.remote_why
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|a, _| remotes.contains(a));
    }

    /// What `vsctl stats` says of it.
    pub fn stats(&self) -> ctl::GsoTapStats {
        ctl::GsoTapStats {
            name: self.tap.name().to_string(),
            whole: self.usable.load(Ordering::Relaxed),
            why: self.why.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            packets: self.tap.written(),
            segmented: self
                .remote_why
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(a, w)| (a.to_string(), w.clone()))
                .collect(),
        }
    }
}

impl VtepRt {
    /// Binds the VTEP's sockets; fails (with a message naming the address) if the UDP
    /// port is taken.
    pub fn open(
        id: u32,
        key: VtepKey,
        owner: usize,
        wg: Option<crate::encrypt::WgVtep>,
        gso_tap: Option<&str>,
    ) -> Result<VtepRt, VtepError> {
        let rx = udp::bind(key.local, key.dstport).map_err(|e| VtepError::Bind {
            key,
            why: e.to_string(),
        })?;
        if wg.is_some() {
            // Sealed messages go out of the listen socket itself (a WireGuard peer
            // answers the address and port it heard from): no spread of source ports.
            if let Err(e) = udp::enable_gro(&rx) {
                tracing::warn!(vtep = %key, "no UDP_GRO on the WireGuard socket: {e}");
            }
            return Ok(VtepRt {
                id,
                key,
                owner,
                rx,
                tx: Vec::new(),
                table: ArcSwap::from_pointee(VtepTable::default()),
                counters: VtepCounters::default(),
                wg,
                gso: None,
            });
        }
        if let Err(e) = udp::enable_gro(&rx) {
            // Still works: the kernel then splits runs before we read them.
            tracing::warn!(vtep = %key, "no UDP_GRO on the VXLAN socket: {e}");
        }
        let tx = (0..TX_SOCKETS)
            .map(|_| udp::bind_send_only(key.local))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| VtepError::SendSockets {
                key,
                why: e.to_string(),
            })?;
        // A port of every sending socket, in order, or no TAP: a flow's frames must leave
        // from one source port whichever way they go.
        let gso = gso_tap.and_then(|name| {
            let ports = tx.iter().map(udp::local_port).collect::<Option<Vec<_>>>()?;
            open_gso_tap(key, ports, name)
        });
        Ok(VtepRt {
            id,
            key,
            owner,
            rx,
            tx,
            table: ArcSwap::from_pointee(VtepTable::default()),
            counters: VtepCounters::default(),
            wg: None,
            gso,
        })
    }

    /// The outer source ports flows are spread over.
    pub fn source_ports(&self) -> Vec<u16> {
        self.tx.iter().filter_map(udp::local_port).collect()
    }
}

/// The TAP of VTEP `id` for whole super-frames; `None` (logged: the VTEP then sends
/// every frame through its sockets) if this kernel or host cannot have one.
fn open_gso_tap(key: VtepKey, ports: Vec<u16>, name: &str) -> Option<GsoTx> {
    match GsoTap::create(name) {
        Ok(tap) => {
            let g = GsoTx {
                tap,
                ip_id: AtomicU16::new(0),
                ports,
                usable: std::sync::atomic::AtomicBool::new(false),
                why: std::sync::Mutex::new(None),
                remote_why: Default::default(),
            };
            g.refresh(key);
            if let Some(why) = g.stats().why {
                tracing::warn!(
                    vtep = %key, tap = g.tap.name(),
                    "TCP super-frames segmented here until that changes: {why}"
                );
            }
            Some(g)
        }
        Err(e) => {
            tracing::warn!(vtep = %key, "no TAP for whole super-frames: {e}; segmenting instead");
            None
        }
    }
}

/// One remote VTEP of a tunnel.
pub struct RemoteRt {
    /// Its slot in FDB destinations (≥ 1, stable while it is configured).
    pub slot: u16,
    pub addr: Ipv4Addr,
    /// Underlay path MTU, refreshed by the housekeeper.
    pub mtu: AtomicU32,
    /// For whole super-frames through the VTEP's TAP: the outer addresses (`None` while
    /// unknown), refreshed with `mtu`. Swapped as one, so a frame never carries one
    /// device's MAC with another path's next hop or source (the TAP's filter picks the
    /// device by the source MAC).
    pub whole_hop: ArcSwapOption<WholeHop>,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// On an encrypted tunnel: its WireGuard peer. Boxed: a peer's session state is
    /// some 20 KiB, which every remote of a plain tunnel would otherwise carry unused
    /// (a cluster of 200 nodes: 4 MiB per overlay).
    pub wg: Option<Box<crate::encrypt::WgRemote>>,
}

impl RemoteRt {
    /// A remote with zeroed counters.
    pub fn new(slot: u16, addr: Ipv4Addr) -> Self {
        RemoteRt {
            slot,
            addr,
            mtu: AtomicU32::new(DEFAULT_MTU),
            whole_hop: ArcSwapOption::empty(),
            tx_packets: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            wg: None,
        }
    }
    /// What an encapsulated frame adds to the underlay packet.
    fn overhead(&self) -> u32 {
        if self.wg.is_some() {
            wg::OVERHEAD
        } else {
            OVERHEAD
        }
    }
    /// Counts `packets` datagrams of `bytes` in all sent to this remote.
    pub fn count_tx(&self, packets: u64, bytes: u64) {
        self.tx_packets.fetch_add(packets, Ordering::Relaxed);
        self.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    /// Counts `packets` datagrams of `bytes` in all received from this remote.
    pub fn count_rx(&self, packets: u64, bytes: u64) {
        self.rx_packets.fetch_add(packets, Ordering::Relaxed);
        self.rx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    /// The largest inner frame (Ethernet header included) that fits one datagram.
    pub fn max_frame(&self) -> usize {
        self.mtu
            .load(Ordering::Relaxed)
            .saturating_sub(self.overhead()) as usize
    }
    /// The inner MTU (largest inner IP packet).
    pub fn inner_mtu(&self) -> usize {
        let extra = self.overhead() - OVERHEAD;
        self.mtu
            .load(Ordering::Relaxed)
            .saturating_sub(INNER_MTU_OVERHEAD + extra) as usize
    }
}

/// A tunnel port's VXLAN side.
pub struct TunnelRt {
    pub vni: u32,
    pub vtep: Arc<VtepRt>,
    /// Replaced whole on add-remote/del-remote; a remote keeps its counters meanwhile.
    pub remotes: ArcSwap<Vec<Arc<RemoteRt>>>,
}

impl TunnelRt {
    /// The remote in `slot`.
    pub fn remote(&self, slot: u16) -> Option<Arc<RemoteRt>> {
        self.remotes.load().iter().find(|r| r.slot == slot).cloned()
    }
    /// The table rows this tunnel adds to its VTEP's table.
    pub fn table_remotes(&self) -> Vec<(IpAddr, u16)> {
        self.remotes
            .load()
            .iter()
            .map(|r| (IpAddr::V4(r.addr), r.slot))
            .collect()
    }
}

/// Marks (in the vnet header's flags byte, which virtio never sets so) a frame whose
/// VXLAN header is already laid out, so a retry after the kernel pushed back does not
/// read that header as offload information.
const PREPARED: u8 = 0x80;

/// How one queued frame goes out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Refused (malformed offload, too big, no remote): counted, dropped.
    Drop,
    /// One datagram, already laid out in its buffer after the vnet header's first bytes.
    Plain(usize),
    /// A super-frame to segment to `max_frame`-byte frames as `Offload` says; from
    /// this sending socket.
    Gso(usize, Offload, usize),
    /// Larger than the underlay carries and not a super-frame: counted as oversize
    /// (containers behind a tunnel need an MTU 50 below the underlay's).
    TooBig,
}

/// The remotes a frame goes to: the one in its slot, or every remote (slot 0, or a
/// slot no remote has any more: a MAC learned behind a remote just removed floods, as
/// one learned on a port that is gone does).
pub(crate) fn targets(
    remotes: &[Arc<RemoteRt>],
    slot: u16,
) -> impl Iterator<Item = &Arc<RemoteRt>> {
    let known = slot != 0 && remotes.iter().any(|r| r.slot == slot);
    remotes.iter().filter(move |r| !known || r.slot == slot)
}

/// Readies a frame in place: checksum completed where left partial, VXLAN header
/// written over the tail of the vnet header so the datagram is `bytes[DGRAM_OFFSET..]`.
fn prepare(b: &mut Buf, hdr: &[u8; 8], remotes: &[Arc<RemoteRt>], socks: usize) -> Plan {
    let slot = b.remote();
    let Some(max_frame) = targets(remotes, slot).map(|r| r.max_frame()).min() else {
        return Plan::Drop;
    };
    let bytes = b.bytes_mut();
    if bytes.len() < vnet::LEN + crate::wire::ethernet::HEADER_LEN {
        return Plan::Drop;
    }
    let (vh, frame) = bytes.split_at_mut(vnet::LEN);
    if vh[0] == PREPARED {
        // Laid out by an earlier turn that the kernel pushed back on.
        return Plan::Plain(vxlan::flow::flow_hash(frame) as usize % socks.max(1));
    }
    let mut raw = [0u8; vnet::LEN];
    raw.copy_from_slice(vh);
    let Ok(off) = Offload::from_virtio(&raw) else {
        return Plan::Drop;
    };
    let sock = vxlan::flow::flow_hash(frame) as usize % socks.max(1);
    if off.gso != Gso::None {
        return Plan::Gso(sock, off, max_frame);
    }
    if frame.len() > max_frame {
        return Plan::TooBig;
    }
    if off.needs_csum
        && wire::checksum::complete(frame, off.csum_start as usize, off.csum_offset as usize)
            .is_err()
    {
        return Plan::Drop;
    }
    vh[0] = PREPARED;
    vh[DGRAM_OFFSET..].copy_from_slice(hdr);
    Plan::Plain(sock)
}

/// Sends the first `n` frames of `pending` through tunnel `t`; returns how many were
/// taken (sent, or refused and counted in `errors`, or in `oversize` if too big for
/// the underlay). Fewer than `n` means the kernel pushed back. `scratch` holds
/// segmented super-frames.
pub fn transmit(
    t: &TunnelRt,
    pending: &mut VecDeque<Buf>,
    n: usize,
    scratch: &mut Vec<u8>,
    errors: &mut u64,
    oversize: &mut u64,
) -> usize {
    if let Some(w) = &t.vtep.wg {
        return crate::encrypt::tx::transmit(t, w, pending, n, scratch, errors, oversize);
    }
    let n = n.min(pending.len()).min(TX_BATCH);
    let remotes = t.remotes.load();
    let socks = &t.vtep.tx;
    let dstport = t.vtep.key.dstport;
    let hdr = vxlan::header::encode(t.vni);
    let mut plan = [Plan::Drop; TX_BATCH];
    for (p, b) in plan.iter_mut().zip(pending.iter_mut()).take(n) {
        *p = prepare(b, &hdr, &remotes, socks.len());
    }
    let mut i = 0;
    while i < n {
        match plan[i] {
            Plan::Drop => {
                *errors += 1;
                i += 1;
            }
            Plan::TooBig => {
                *oversize += 1;
                i += 1;
            }
            Plan::Gso(sock, off, max_frame) => {
                let b = &pending[i];
                if let Some(g) = t
                    .vtep
                    .gso
                    .as_ref()
                    .filter(|g| g.usable.load(Ordering::Relaxed))
                {
                    if let Some(lost) = send_whole(t, g, b, &off, &remotes, sock) {
                        *errors += lost.min(1);
                        i += 1;
                        continue;
                    }
                }
                match send_super(t, b, &off, max_frame, &remotes, &socks[sock], scratch) {
                    Ok(lost) => *errors += lost.min(1),
                    Err(()) => return i,
                }
                i += 1;
            }
            Plan::Plain(sock) => {
                // A run of plain frames leaving by the same socket: one sendmmsg.
                let mut msgs: Vec<(&[u8], SocketAddrV4)> = Vec::new();
                let mut owners: Vec<(usize, &Arc<RemoteRt>)> = Vec::new();
                let mut j = i;
                while j < n && plan[j] == Plan::Plain(sock) {
                    let dgram = &pending[j].bytes()[DGRAM_OFFSET..];
                    for r in targets(&remotes, pending[j].remote()) {
                        msgs.push((dgram, SocketAddrV4::new(r.addr, dstport)));
                        owners.push((j, r));
                    }
                    j += 1;
                }
                let mut ok = vec![true; msgs.len()];
                let sent = udp::send_batch(socks[sock].as_raw_fd(), &msgs, |i| {
                    if let Some(o) = ok.get_mut(i) {
                        *o = false;
                    }
                });
                *errors += sent.errors;
                for (((_, r), (d, _)), _) in owners
                    .iter()
                    .zip(&msgs)
                    .zip(&ok)
                    .take(sent.done)
                    .filter(|(_, ok)| **ok)
                {
                    r.count_tx(1, d.len() as u64);
                }
                if sent.blocked {
                    // A frame whose copies went out in part counts as sent: resending
                    // it would duplicate it at the remotes that have it.
                    let first_unsent = owners.get(sent.done).map(|(f, _)| *f).unwrap_or(j);
                    let partly = sent.done > 0 && owners[sent.done - 1].0 == first_unsent;
                    return first_unsent + usize::from(partly);
                }
                i = j;
            }
        }
    }
    n
}

/// Most remotes a super-frame goes to whole (a flood to more is segmented).
const WHOLE_MAX_REMOTES: usize = 4;

/// Sends a TCP super-frame to each of its remotes as one packet through the VTEP's TAP,
/// for the kernel to segment. `None` if it must be segmented here instead (a UDP
/// super-frame, a remote whose route is not known yet, or the TAP refused it before
/// any remote got it); else how many remotes did not get it (the TAP refused it after
/// others had: a resend would duplicate it there).
fn send_whole(
    t: &TunnelRt,
    g: &GsoTx,
    b: &Buf,
    off: &Offload,
    remotes: &[Arc<RemoteRt>],
    sock: usize,
) -> Option<u64> {
    let &sport = g.ports.get(sock)?;
    let frame = b.bytes().get(vnet::LEN..).unwrap_or_default();
    let mut hdrs = [[0u8; WHOLE_LEN]; WHOLE_MAX_REMOTES];
    let mut to: [Option<(&Arc<RemoteRt>, vxlan::offload::Whole)>; WHOLE_MAX_REMOTES] =
        [None; WHOLE_MAX_REMOTES];
    // Every header first: a frame goes whole to all its remotes, or is left to the
    // segmenting path for all of them (never to some twice).
    let mut n = 0;
    for r in targets(remotes, b.remote()) {
        if n == WHOLE_MAX_REMOTES {
            return None;
        }
        let hop = r.whole_hop.load();
        let hop = hop.as_deref()?;
        let outer = Outer {
            dst_mac: hop.next,
            src_mac: hop.dev,
            src: hop.src,
            dst: r.addr,
            sport,
            dport: t.vtep.key.dstport,
            // DF is set, so the IDs need not be unique (RFC 6864): spread per frame.
            ip_id: g.ip_id.fetch_add(64, Ordering::Relaxed),
        };
        let w = encap_whole(frame, off, r.max_frame(), t.vni, &outer, &mut hdrs[n]).ok()?;
        to[n] = Some((r, w));
        n += 1;
    }
    let mut lost = 0;
    for (i, (slot, hdr)) in to.iter().zip(&hdrs).take(n).enumerate() {
        let Some((r, w)) = slot else { continue };
        match g.tap.send(hdr, frame) {
            Ok(()) => r.count_tx(w.segments, w.bytes),
            Err(e) if i == 0 => {
                tracing::debug!(tap = g.tap.name(), "whole super-frame refused: {e}");
                return None;
            }
            Err(_) => lost += 1,
        }
    }
    Some(lost)
}

/// The outer addresses of whole super-frames to one remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeHop {
    /// The VTEP's own address, or the route's source when it binds none.
    pub src: Ipv4Addr,
    /// The next hop's MAC, from the neighbour table.
    pub next: [u8; 6],
    /// The underlay device's MAC.
    pub dev: [u8; 6],
}

const NO_NEIGHBOUR: &str = "no neighbour entry";

/// Where whole super-frames to remote `addr` leave: the underlay device the kernel routes
/// it through (from `local`), whose MAC they carry as source and whose TAP filter
/// `g` is made to have, the next hop's MAC from the neighbour table, and the source
/// address (`local`, else the route's); `Err` says why not (the frames are then
/// segmented).
pub fn whole_path(g: &GsoTx, local: Option<Ipv4Addr>, addr: Ipv4Addr) -> Result<WholeHop, String> {
    use crate::sys::{iface, rtnl};
    let hop = rtnl::route(addr, local).map_err(|e| format!("no route: {e}"))?;
    let src = local
        .or(hop.src)
        .filter(|s| !s.is_unspecified())
        .ok_or("the route names no source address")?;
    let dev = iface::name_of(hop.ifindex)
        .ok_or_else(|| format!("no device with index {}", hop.ifindex))?;
    let (family, dev_mac) = iface::link_addr(&dev).map_err(|e| e.to_string())?;
    if family != libc::ARPHRD_ETHER {
        return Err(format!("{dev} is not an Ethernet device"));
    }
    if dev_mac == [0; 6] {
        return Err(format!("{dev} has no MAC address"));
    }
    let next = hop.next(addr);
    let next_mac = rtnl::neighbour(hop.ifindex, next)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{NO_NEIGHBOUR} for {next} on {dev} yet"))?;
    g.tap
        .steer(hop.ifindex, &dev, dev_mac)
        .map_err(|e| e.to_string())?;
    Ok(WholeHop {
        src,
        next: next_mac,
        dev: dev_mac,
    })
}

/// Segments a super-frame (`off` and `max_frame` as `prepare` found them) to fit the
/// smallest path MTU of its remotes and sends it to each with one `UDP_SEGMENT` send
/// per 64 KiB. Only the datagrams' headers are written (into `scratch`); the kernel
/// gathers each datagram's payload from the frame itself, so the payload is copied once
/// (into the kernel's buffer) instead of twice. Returns the datagrams lost (refused,
/// or not sent because the kernel pushed back after part of the frame had gone: a
/// resend would duplicate what went); `Err` if the kernel pushed back before anything
/// went, so the caller retries the whole frame later.
fn send_super(
    t: &TunnelRt,
    b: &Buf,
    off: &Offload,
    max_frame: usize,
    remotes: &[Arc<RemoteRt>],
    sock: &Socket,
    scratch: &mut Vec<u8>,
) -> Result<u64, ()> {
    let slot = b.remote();
    let dstport = t.vtep.key.dstport;
    let frame = b.bytes().get(vnet::LEN..).unwrap_or_default();
    let Ok(split) = encap_split(frame, off, max_frame, t.vni, scratch) else {
        return Ok(1);
    };
    let hdrs: &[u8] = scratch;
    let stride = split.stride();
    let mut any = false;
    let mut lost = 0u64;
    for r in targets(remotes, slot) {
        let to = SocketAddrV4::new(r.addr, dstport);
        for run in split.runs(MAX_UDP_PAYLOAD) {
            let mut parts = [IoSlice::new(&[]); 2 * UDP_MAX_SEGMENTS];
            let mut n = 0;
            let mut len = 0;
            for i in run.clone() {
                let (Some(h), Some(p)) = (hdrs.get(split.header(i)), frame.get(split.payload(i)))
                else {
                    continue;
                };
                parts[n] = IoSlice::new(h);
                parts[n + 1] = IoSlice::new(p);
                n += 2;
                len += h.len() + p.len();
            }
            let count = run.len() as u64;
            match udp::send_gso_vectored(sock.as_raw_fd(), &parts[..n], to, stride) {
                Ok(()) => {
                    any = true;
                    r.count_tx(count, len as u64);
                }
                Err(e)
                    if !any
                        && (e.kind() == io::ErrorKind::WouldBlock
                            || e.raw_os_error() == Some(libc::ENOBUFS)) =>
                {
                    return Err(())
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL)) => {
                    // No UDP GSO on this route (checksum offload turned off on the
                    // underlay device, say): send the datagrams one by one instead,
                    // each laid out whole (rare: a copy is fine here).
                    let dgrams: Vec<Vec<u8>> = run
                        .clone()
                        .filter_map(|i| {
                            let h = hdrs.get(split.header(i))?;
                            let p = frame.get(split.payload(i))?;
                            Some([h, p].concat())
                        })
                        .collect();
                    let msgs: Vec<(&[u8], SocketAddrV4)> =
                        dgrams.iter().map(|d| (d.as_slice(), to)).collect();
                    let sent = udp::send_batch(sock.as_raw_fd(), &msgs, |_| {});
                    let ok = sent.done as u64 - sent.errors;
                    any |= ok > 0;
                    lost += count - ok;
                    let bytes: usize = msgs.iter().take(sent.done).map(|(d, _)| d.len()).sum();
                    r.count_tx(ok, bytes as u64);
                }
                Err(_) => lost += count,
            }
        }
    }
    Ok(lost)
}
