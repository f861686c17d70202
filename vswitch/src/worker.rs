//! A worker thread: owns the I/O of its ports, reads them in batches, decides where each
//! frame goes, pushes it onto the destination ports' TX queues, and drains the queues of
//! the ports it owns. Data flows one way: port → worker → decision → queue → port.
//!
//! Nothing here locks or allocates per frame: buffers come from the pool, queues are
//! lock-free, counters are this worker's own, and the snapshot is read through arc-swap.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::counters::{bump, BridgeEvent, Drop};
use crate::dataplane::{
    GatewayGuard, Guarded, PortRt, Shared, Snapshot, TxIo, TxState, WorkerMsg, UPLINK_BRIDGE,
};
use crate::fdb::{dest, port_of, remote_of, Dest, PortId};
use crate::forward::{decide, Ctx, Verdict};
use crate::gateway::{self, Side};
use crate::pool::{Buf, Pool, LARGE, SMALL};
use crate::port::PortIo;
use crate::sys::afpacket::{send_mmsg, RingKind, Rx, TX_BATCH};
use crate::sys::tap::write_frame;
use crate::sys::udp::{self, RecvMeta};
use crate::tunnel::{RemoteRt, VtepRt, DGRAM_OFFSET};
use crate::vlan::{self, Class};
use crate::wire::{vnet, EthernetFrame};
use vxlan::decap::DropReason;

/// Frames the gateway takes per turn (from the uplink and from each gateway port).
const GW_BATCH: usize = 256;

/// Token of the worker's waker.
pub const WAKER: Token = Token(usize::MAX);
/// Ring blocks (V3) read from one port per turn, so one busy port cannot starve others.
const RX_BLOCKS_PER_TURN: usize = 8;
/// Ring slots (V2) read from one port per turn.
const RX_FRAMES_PER_TURN: usize = 64;
/// A turn that received at most this many frames sends them itself, at once, instead of
/// handing them to the destination's owner: at low rates latency is what matters, and a
/// cross-thread wake-up costs more than the send. Busier turns leave sending to the
/// owners, so receiving and sending run on different cores.
const DIRECT_TX_MAX: usize = 4;
/// TAP frames read from one port per turn.
const TAP_FRAMES_PER_TURN: usize = 64;
/// TX batches drained from one port per turn.
const TX_BATCHES_PER_TURN: usize = 8;
/// Tokens at and above this are VTEPs (`base + VTEP id`); below, port ids.
const VTEP_TOKEN_BASE: usize = 1 << 24;
/// `recvmmsg` batches read from one VTEP per turn.
const VTEP_BATCHES_PER_TURN: usize = 4;
/// Datagram buffers a worker keeps for its VTEPs: each takes a whole 64 KiB datagram,
/// since a kernel peer sends unsegmented super-packets.
const VTEP_RX_BUFS: usize = 16;

struct Slot {
    rt: Arc<PortRt>,
    io: PortIo,
}

/// One worker thread's state.
pub struct Worker {
    idx: usize,
    shared: Arc<Shared>,
    poll: Poll,
    inbox: Receiver<WorkerMsg>,
    slots: Vec<Option<Slot>>,
    /// Ports with more to read than one turn took.
    rx_more: Vec<PortId>,
    /// Some port's TX the kernel pushed back on: retry shortly.
    tx_blocked: bool,
    /// Some owned TX queue still holds frames after a turn: come back at once.
    tx_more: bool,
    /// Scratch for TAP reads when the pool has no large buffer.
    scratch: Box<[u8]>,
    /// A large pool buffer frames of unknown size are read into; a receiver that sends
    /// it on as is takes it, and the next read gets another from the pool.
    spare: Option<Buf>,
    /// Workers to wake because frames were queued for their ports.
    wake: Vec<bool>,
    /// Frames received this turn.
    turn_frames: usize,
    /// Ports frames were queued to this turn (deduplicated by `touched_mark`).
    touched: Vec<PortId>,
    touched_mark: Vec<u64>,
    /// VTEPs whose socket this worker reads.
    vteps: Vec<Arc<VtepRt>>,
    /// VTEPs with more to read than one turn took.
    vtep_more: Vec<u32>,
    /// Receive buffers for VTEP datagrams; a slot is emptied when its frame is sent on
    /// in that very buffer, and refilled from the pool.
    vtep_bufs: Vec<Option<Buf>>,
    /// Frames for the gateway this turn (read from the uplink, taken from gateway ports).
    gw_in: Vec<(Side, Buf)>,
    /// Frames the gateway sends.
    gw_out: gateway::Out,
    /// When the gateway last had its periodic tick.
    gw_tick: Instant,
}

impl Worker {
    /// A worker with its own poll instance; `poll` must already have `WAKER` registered.
    pub fn new(idx: usize, shared: Arc<Shared>, poll: Poll, inbox: Receiver<WorkerMsg>) -> Self {
        let n = shared.workers;
        Worker {
            idx,
            shared,
            poll,
            inbox,
            slots: Vec::new(),
            rx_more: Vec::new(),
            tx_blocked: false,
            tx_more: false,
            scratch: vec![0u8; LARGE].into_boxed_slice(),
            spare: None,
            wake: vec![false; n],
            turn_frames: 0,
            touched: Vec::with_capacity(64),
            touched_mark: Vec::new(),
            vteps: Vec::new(),
            vtep_more: Vec::new(),
            vtep_bufs: Vec::new(),
            gw_in: Vec::with_capacity(GW_BATCH),
            gw_out: Vec::with_capacity(GW_BATCH),
            gw_tick: Instant::now(),
        }
    }

    /// Runs until shutdown.
    pub fn run(mut self) {
        let shared = self.shared.clone();
        let mut events = Events::with_capacity(256);
        let mut ready: Vec<PortId> = Vec::with_capacity(64);
        let mut vtep_ready: Vec<u32> = Vec::new();
        let mut errored: Vec<PortId> = Vec::new();
        let mut last_house = Instant::now();
        // Busy-polling keeps the thread awake for a while after traffic, so the next
        // frame (a reply, say) skips the sleep/wake-up round trip.
        let busy_poll = shared.busy_poll;
        let mut last_rx = Instant::now()
            .checked_sub(busy_poll)
            .unwrap_or_else(Instant::now);
        while !shared.shutdown.load(Ordering::Acquire) {
            let spinning = !busy_poll.is_zero() && last_rx.elapsed() < busy_poll;
            let more = !self.rx_more.is_empty() || !self.vtep_more.is_empty();
            let timeout = if more || self.tx_more || spinning {
                Duration::ZERO
            } else if self.tx_blocked {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(200)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(worker = self.idx, "poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            while let Ok(msg) = self.inbox.try_recv() {
                self.handle_msg(msg);
            }
            ready.clear();
            errored.clear();
            ready.append(&mut self.rx_more);
            vtep_ready.clear();
            vtep_ready.append(&mut self.vtep_more);
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                if ev.token().0 >= VTEP_TOKEN_BASE {
                    let id = (ev.token().0 - VTEP_TOKEN_BASE) as u32;
                    if !vtep_ready.contains(&id) {
                        vtep_ready.push(id);
                    }
                    continue;
                }
                let id = ev.token().0 as PortId;
                if ev.is_error() {
                    errored.push(id);
                }
                if !ready.contains(&id) {
                    ready.push(id);
                }
            }
            for &id in &errored {
                self.check_error(id);
            }
            let snap = shared.snapshot.load();
            self.turn_frames = 0;
            for &id in &ready {
                self.rx_port(&snap, id);
            }
            for &id in &vtep_ready {
                self.rx_vtep(&snap, id);
            }
            self.route(&snap);
            if self.turn_frames > 0 && !busy_poll.is_zero() {
                last_rx = Instant::now();
            }
            self.flush_touched(&snap);
            self.drain_all();
            for w in 0..self.wake.len() {
                if std::mem::take(&mut self.wake[w]) && w != self.idx {
                    shared.wake(w);
                }
            }
            if last_house.elapsed() >= Duration::from_secs(1) {
                last_house = Instant::now();
                self.housekeeping();
            }
        }
        // Leaving drops every slot, which closes sockets and removes the TAPs we made.
    }

    fn handle_msg(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Attach(rt, io) => {
                let id = rt.id as usize;
                self.detach(rt.id, None);
                if let Some(fd) = io.fd() {
                    if let Err(e) = self.poll.registry().register(
                        &mut SourceFd(&fd),
                        Token(id),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        rt.set_down(format!("cannot poll interface: {e}"));
                        rt.attach_pending.store(false, Ordering::Release);
                        return;
                    }
                }
                if self.slots.len() <= id {
                    self.slots.resize_with(id + 1, || None);
                }
                rt.ifindex.store(io.ifindex(), Ordering::Relaxed);
                rt.up.store(true, Ordering::Release);
                rt.attach_pending.store(false, Ordering::Release);
                tracing::info!(port = %rt.name, worker = self.idx, "port up");
                let tx_io = match &io {
                    PortIo::Afpacket(a) => TxIo::Afpacket(a.as_raw_fd()),
                    PortIo::Tap(t) => TxIo::Tap(t.as_raw_fd()),
                    PortIo::Vxlan => TxIo::Vxlan,
                    PortIo::Gateway => TxIo::Gateway,
                };
                lock(&rt.tx).io = Some(tx_io);
                self.slots[id] = Some(Slot { rt, io });
                // Anything that arrived before registration is read now.
                self.rx_more.push(id as PortId);
            }
            WorkerMsg::Detach(id, why, done) => {
                self.detach(id, Some(why));
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            WorkerMsg::AttachVtep(v) => {
                let fd = v.rx.as_raw_fd();
                let token = Token(VTEP_TOKEN_BASE + v.id as usize);
                match self
                    .poll
                    .registry()
                    .register(&mut SourceFd(&fd), token, Interest::READABLE)
                {
                    Ok(()) => {
                        tracing::info!(vtep = %v.key, worker = self.idx, "VTEP up");
                        self.vtep_more.push(v.id);
                        self.vteps.push(v);
                        if self.vtep_bufs.is_empty() {
                            self.vtep_bufs.resize_with(VTEP_RX_BUFS, || None);
                        }
                    }
                    Err(e) => tracing::error!(vtep = %v.key, "cannot poll VXLAN socket: {e}"),
                }
            }
            WorkerMsg::Barrier(done) => {
                let _ = done.send(());
            }
            WorkerMsg::DetachVtep(id, done) => {
                if let Some(i) = self.vteps.iter().position(|v| v.id == id) {
                    let v = self.vteps.swap_remove(i);
                    let fd = v.rx.as_raw_fd();
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                }
                self.vtep_more.retain(|&x| x != id);
                if self.vteps.is_empty() {
                    for b in self.vtep_bufs.drain(..).flatten() {
                        self.shared.pool.put(b);
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Stops serving port `id`; with a reason, marks it down.
    fn detach(&mut self, id: PortId, why: Option<String>) {
        let Some(slot) = self.slots.get_mut(id as usize).and_then(|s| s.take()) else {
            return;
        };
        if let Some(fd) = slot.io.fd() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        let mut dropped = 0u64;
        {
            // Waits for any worker sending on this fd right now; after this, nobody will.
            let mut tx = lock(&slot.rt.tx);
            tx.io = None;
            for b in tx.pending.drain(..) {
                self.shared.pool.put(b);
                dropped += 1;
            }
        }
        while let Some(b) = slot.rt.txq.pop() {
            self.shared.pool.put(b);
            dropped += 1;
        }
        slot.rt.counters.drop(self.idx, Drop::PortDown, dropped);
        self.rx_more.retain(|&p| p != id);
        if let Some(why) = why {
            tracing::warn!(port = %slot.rt.name, "port down: {why}");
            slot.rt.set_down(why);
        }
    }

    fn check_error(&mut self, id: PortId) {
        let Some(slot) = self.slots.get(id as usize).and_then(|s| s.as_ref()) else {
            return;
        };
        if let PortIo::Afpacket(a) = &slot.io {
            if let Some(e) = a.take_error() {
                self.detach(id, Some(format!("interface error: {e}")));
            }
        }
    }

    fn rx_port(&mut self, snap: &Snapshot, id: PortId) {
        let w = self.idx;
        let shared = &*self.shared;
        let spare = &mut self.spare;
        let touched = &mut self.touched;
        let touched_mark = &mut self.touched_mark;
        let Some(slot) = self.slots.get_mut(id as usize).and_then(|s| s.as_mut()) else {
            return;
        };
        if matches!(slot.io, PortIo::Vxlan | PortIo::Gateway) {
            // A tunnel receives through its VTEP (`rx_vtep`); a gateway port, from its
            // queue (`route`).
            return;
        }
        let rt = slot.rt.clone();
        if rt.bridge == UPLINK_BRIDGE {
            return self.rx_uplink(id);
        }
        if snap.bridge(rt.bridge).is_none() {
            // Reconfiguration in flight: read and drop, so the ring does not stall.
            let n = match &mut slot.io {
                PortIo::Afpacket(a) => {
                    a.rx(RX_BLOCKS_PER_TURN, &shared.pool, &mut self.spare, |_| {})
                }
                PortIo::Tap(t) => t.recv(&mut self.scratch).map(|_| 1).unwrap_or(0),
                PortIo::Vxlan | PortIo::Gateway => 0,
            };
            rt.counters.drop(w, Drop::NoBridge, n as u64);
            return;
        }
        let scratch = &mut self.scratch;
        let rx_more = &mut self.rx_more;
        let turn_frames = &mut self.turn_frames;
        let failure = with_ingress(shared, snap, touched, touched_mark, w, &rt, rt.id, |ing| {
            rx_frames(ing, &mut slot.io, id, spare, scratch, rx_more, turn_frames)
        })
        .flatten();
        if let Some(why) = failure {
            self.detach(id, Some(why));
        }
    }

    /// Reads a batch of VXLAN datagrams from VTEP `id`, checks each against the VTEP's
    /// table (VNI, flags, remote) and forwards the inner frame as if it had arrived on
    /// the tunnel port, learned behind the remote it came from. A datagram is read
    /// where its inner frame can stay: the virtio-net header the kernel peer did not
    /// send is written over the VXLAN header's bytes.
    fn rx_vtep(&mut self, snap: &Snapshot, id: u32) {
        let Some(vtep) = self.vteps.iter().find(|v| v.id == id).cloned() else {
            return;
        };
        let w = self.idx;
        let shared = &*self.shared;
        let mut meta = [RecvMeta::default(); VTEP_RX_BUFS];
        for _ in 0..VTEP_BATCHES_PER_TURN {
            for b in self.vtep_bufs.iter_mut().filter(|b| b.is_none()) {
                *b = shared.pool.get(LARGE);
            }
            let n = match udp::recv_batch(
                vtep.rx.as_raw_fd(),
                &mut self.vtep_bufs,
                DGRAM_OFFSET,
                &mut meta,
            ) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(vtep = %vtep.key, "VXLAN receive failed: {e}");
                    0
                }
            };
            if n == 0 {
                return;
            }
            self.turn_frames += n;
            let table = vtep.table.load();
            let c = &vtep.counters;
            for m in &meta[..n] {
                c.rx_bytes.fetch_add(m.len as u64, Ordering::Relaxed);
                let src = std::net::IpAddr::V4(m.src);
                let Some(slot) = self.vtep_bufs.get_mut(m.slot) else {
                    continue;
                };
                let Some(buf) = slot.as_mut() else { continue };
                if m.truncated {
                    c.rx_datagrams.fetch_add(1, Ordering::Relaxed);
                    c.drop(DropReason::Truncated);
                    continue;
                }
                if m.gro > 0 && m.len > m.gro {
                    // A run of datagrams from one sender (a peer's UDP_SEGMENT send).
                    let count = m.len.div_ceil(m.gro);
                    c.rx_datagrams.fetch_add(count as u64, Ordering::Relaxed);
                    let run = &mut buf.bytes_mut()[DGRAM_OFFSET..];
                    let merged = resolve(&table, snap, src, &run[..m.gro])
                        .ok()
                        .and_then(|first| Some((first, vxlan::gro::merge_tcp(run, m.gro)?)))
                        .filter(|((_, _, d), mg)| {
                            mg.vni == d.vni && mg.inner.start == vxlan::header::HEADER_LEN
                        });
                    if let Some(((rt, remote, d), mg)) = merged {
                        // One super-frame for the port, sent on in this very buffer.
                        remote.count_rx(count as u64, m.len as u64);
                        buf.set_len(DGRAM_OFFSET + mg.inner.end);
                        buf.bytes_mut()[..vnet::LEN].copy_from_slice(&mg.offload.to_virtio());
                        with_ingress(
                            shared,
                            snap,
                            &mut self.touched,
                            &mut self.touched_mark,
                            w,
                            &rt,
                            dest(rt.id, d.remote),
                            |ing| ing.frame_owned(slot, None),
                        );
                        continue;
                    }
                    for i in 0..count {
                        let run = &mut buf.bytes_mut()[DGRAM_OFFSET..];
                        let seg = &mut run[i * m.gro..((i + 1) * m.gro).min(m.len)];
                        let (rt, remote, d) = match resolve(&table, snap, src, seg) {
                            Ok(x) => x,
                            Err(why) => {
                                c.drop(why);
                                continue;
                            }
                        };
                        remote.count_rx(1, seg.len() as u64);
                        let inner = &mut seg[d.inner.clone()];
                        let vh = vxlan::offload::offload_for_inner(inner, remote.inner_mtu())
                            .to_virtio();
                        with_ingress(
                            shared,
                            snap,
                            &mut self.touched,
                            &mut self.touched_mark,
                            w,
                            &rt,
                            dest(rt.id, d.remote),
                            |ing| ing.frame(&vh, inner, None),
                        );
                    }
                    continue;
                }
                c.rx_datagrams.fetch_add(1, Ordering::Relaxed);
                let (rt, remote, d) = match resolve(&table, snap, src, &buf.bytes()[DGRAM_OFFSET..])
                {
                    // The inner frame must start where the vnet header ends.
                    Ok(x) if x.2.inner.start == vxlan::header::HEADER_LEN => x,
                    Ok(_) => {
                        c.drop(DropReason::Truncated);
                        continue;
                    }
                    Err(why) => {
                        c.drop(why);
                        continue;
                    }
                };
                remote.count_rx(1, m.len as u64);
                let (vh, inner) = buf.bytes_mut().split_at_mut(vnet::LEN);
                let off = vxlan::offload::offload_for_inner(inner, remote.inner_mtu());
                vh.copy_from_slice(&off.to_virtio());
                with_ingress(
                    shared,
                    snap,
                    &mut self.touched,
                    &mut self.touched_mark,
                    w,
                    &rt,
                    dest(rt.id, d.remote),
                    |ing| ing.frame_owned(slot, None),
                );
            }
            if n < meta.len().min(self.vtep_bufs.len()) {
                return;
            }
        }
        self.vtep_more.push(id);
    }

    /// Sends what this turn queued, from this worker, for every port whose transmit side
    /// is free; the rest is left to the owner, which is woken.
    fn flush_touched(&mut self, snap: &Snapshot) {
        for k in 0..self.touched.len() {
            let id = self.touched[k];
            if let Some(m) = self.touched_mark.get_mut(id as usize / 64) {
                *m &= !(1u64 << (id % 64));
            }
            let Some(rt) = snap.port(id) else { continue };
            if self.turn_frames > DIRECT_TX_MAX && rt.owner != self.idx {
                self.wake[rt.owner] = true;
                continue;
            }
            let result = try_drain(self.idx, &self.shared.pool, rt);
            self.settle(rt, result);
        }
        self.touched.clear();
    }

    /// Acts on how a drain of `rt` ended: work left on a port this worker owns brings
    /// it back soon; on another's port, its owner is woken; a failed send takes the
    /// port down.
    fn settle(&mut self, rt: &Arc<PortRt>, result: io::Result<Drained>) {
        match result {
            Ok(Drained::Empty) => {}
            Ok(Drained::Blocked) if rt.owner == self.idx => self.tx_blocked = true,
            Ok(_) if rt.owner == self.idx => self.tx_more = true,
            Ok(_) => self.wake[rt.owner] = true,
            Err(e) => self.tx_failed(rt, e),
        }
    }

    /// A send on `rt` failed for good: its owner takes it down.
    fn tx_failed(&mut self, rt: &Arc<PortRt>, e: io::Error) {
        let why = format!("transmit failed: {e}");
        if rt.owner == self.idx {
            self.detach(rt.id, Some(why));
        } else {
            self.shared
                .tell(rt.owner, WorkerMsg::Detach(rt.id, why, None));
        }
    }

    /// The owner's duty: whatever is still queued on its ports gets sent.
    fn drain_all(&mut self) {
        self.tx_blocked = false;
        self.tx_more = false;
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots[i].as_ref() else {
                continue;
            };
            let result = try_drain(self.idx, &self.shared.pool, &slot.rt);
            if !matches!(result, Ok(Drained::Empty)) {
                // Only now is the port needed past the borrow of `slots`.
                let rt = slot.rt.clone();
                self.settle(&rt, result);
            }
        }
    }

    /// Reads the uplink's frames for the gateway; the uplink is no bridge's port.
    fn rx_uplink(&mut self, id: PortId) {
        let w = self.idx;
        let pool = &self.shared.pool;
        let Some(slot) = self.slots.get_mut(id as usize).and_then(|s| s.as_mut()) else {
            return;
        };
        let PortIo::Afpacket(a) = &mut slot.io else {
            return;
        };
        let rt = &slot.rt;
        let gw_in = &mut self.gw_in;
        let budget = match a.kind() {
            RingKind::V2 => RX_FRAMES_PER_TURN,
            RingKind::V3 => RX_BLOCKS_PER_TURN,
        };
        let c = rt.counters.block(w);
        self.turn_frames += a.rx(budget, pool, &mut self.spare, |rx| {
            let buf = match rx {
                Rx::Frame(f) => {
                    bump(&c.rx_packets, 1);
                    bump(&c.rx_bytes, f.frame.len() as u64);
                    if f.truncated {
                        return rt.counters.drop(w, Drop::Oversize, 1);
                    }
                    if f.vlan.is_some() {
                        // The uplink is untagged; a tagged frame is for no address of ours.
                        return rt.counters.drop(w, Drop::VlanNotMember, 1);
                    }
                    let Some(mut b) = pool.get(vnet::LEN + f.frame.len()) else {
                        return rt.counters.drop(w, Drop::NoBuffer, 1);
                    };
                    if !b.fill(&[f.vnet, f.frame]) {
                        pool.put(b);
                        return rt.counters.drop(w, Drop::Oversize, 1);
                    }
                    b
                }
                Rx::Owned { buf, vlan } => {
                    let Some(b) = buf.take() else { return };
                    bump(&c.rx_packets, 1);
                    bump(
                        &c.rx_bytes,
                        b.bytes().len().saturating_sub(vnet::LEN) as u64,
                    );
                    if vlan.is_some() {
                        pool.put(b);
                        return rt.counters.drop(w, Drop::VlanNotMember, 1);
                    }
                    b
                }
            };
            gw_in.push((Side::Uplink, buf));
        });
        if a.rx_ready() {
            self.rx_more.push(id);
        }
    }

    /// The gateway's turn, on its worker: takes what was read from the uplink and what
    /// bridges queued on gateway ports, routes it under one lock, and sends the result
    /// on (to the uplink's queue, or into a bridge as if received on its gateway port).
    fn route(&mut self, snap: &Snapshot) {
        let Some(gv) = snap.gateway.as_ref() else {
            return;
        };
        if gv.rt.owner != self.idx {
            return;
        }
        let w = self.idx;
        for p in &gv.ports {
            let c = p.counters.block(w);
            for _ in 0..GW_BATCH {
                let Some(b) = p.txq.pop() else { break };
                bump(&c.tx_packets, 1);
                bump(
                    &c.tx_bytes,
                    b.bytes().len().saturating_sub(vnet::LEN) as u64,
                );
                self.gw_in.push((Side::Net(p.bridge), b));
            }
            if !p.txq.is_empty() {
                self.tx_more = true;
            }
        }
        let tick = self.gw_tick.elapsed() >= Duration::from_secs(1);
        if self.gw_in.is_empty() && !tick {
            return;
        }
        {
            let pool = &self.shared.pool;
            let mut g = lock(&gv.rt.state);
            for (side, b) in self.gw_in.drain(..) {
                g.handle(side, b, pool, &mut self.gw_out);
            }
            if tick {
                self.gw_tick = Instant::now();
                g.tick(pool, &mut self.gw_out);
            }
        }
        self.emit(snap, gv);
    }

    /// Sends what the gateway produced.
    fn emit(&mut self, snap: &Snapshot, gv: &crate::dataplane::GatewayView) {
        let w = self.idx;
        let shared = &*self.shared;
        let mut out = std::mem::take(&mut self.gw_out);
        // Runs of frames for the same side go out together, from the front.
        while let Some(&(side, _)) = out.first() {
            let end = out
                .iter()
                .position(|(s, _)| *s != side)
                .unwrap_or(out.len());
            match side {
                Side::Uplink => {
                    for (_, b) in out.drain(..end) {
                        match gv.uplink.as_ref().filter(|u| u.up.load(Ordering::Relaxed)) {
                            Some(u) => queue_on(
                                shared,
                                w,
                                u,
                                b,
                                0,
                                &mut self.touched,
                                &mut self.touched_mark,
                            ),
                            None => shared.pool.put(b),
                        }
                    }
                }
                Side::Net(bid) => {
                    let frames = out.drain(..end);
                    match gv.ports.iter().find(|p| p.bridge == bid) {
                        Some(gp) => {
                            with_ingress(
                                shared,
                                snap,
                                &mut self.touched,
                                &mut self.touched_mark,
                                w,
                                gp,
                                gp.id as Dest,
                                |ing| {
                                    for (_, b) in frames {
                                        let mut slot = Some(b);
                                        ing.frame_owned(&mut slot, None);
                                        if let Some(b) = slot {
                                            shared.pool.put(b);
                                        }
                                    }
                                },
                            );
                        }
                        None => frames.for_each(|(_, b)| shared.pool.put(b)),
                    }
                }
            }
        }
        out.clear();
        self.gw_out = out;
    }

    fn housekeeping(&mut self) {
        for slot in self.slots.iter().flatten() {
            if let PortIo::Afpacket(a) = &slot.io {
                let d = a.ring_drops();
                if d > 0 {
                    slot.rt.counters.drop(self.idx, Drop::RxRing, d);
                }
            }
        }
    }
}

/// Reads one port's frames for a turn and forwards them through `ing`; a read error
/// that takes the port down comes back as the reason.
fn rx_frames(
    ing: &mut Ingress<'_>,
    io: &mut PortIo,
    id: PortId,
    spare: &mut Option<Buf>,
    scratch: &mut [u8],
    rx_more: &mut Vec<PortId>,
    turn_frames: &mut usize,
) -> Option<String> {
    let shared = ing.shared;
    let mut failure = None;
    match io {
        PortIo::Afpacket(a) => {
            let budget = match a.kind() {
                RingKind::V2 => RX_FRAMES_PER_TURN,
                RingKind::V3 => RX_BLOCKS_PER_TURN,
            };
            *turn_frames += a.rx(budget, &shared.pool, spare, |rx| match rx {
                Rx::Frame(f) if f.truncated => {
                    ing.rx_count(f.frame.len());
                    ing.rt.counters.drop(ing.w, Drop::Oversize, 1);
                }
                Rx::Frame(f) => ing.frame(f.vnet, f.frame, f.vlan),
                Rx::Owned { buf, vlan } => ing.frame_owned(buf, vlan),
            });
            if a.rx_ready() {
                rx_more.push(id);
            }
        }
        PortIo::Tap(t) => {
            let mut n = 0;
            loop {
                if n == TAP_FRAMES_PER_TURN {
                    rx_more.push(id);
                    break;
                }
                if spare.is_none() {
                    *spare = shared.pool.get(LARGE);
                }
                let read = match spare.as_mut() {
                    Some(b) => t.recv(b.spare()).inspect(|&len| b.set_len(len)),
                    None => t.recv(scratch),
                };
                match read {
                    Ok(len) if len >= vnet::LEN && spare.is_some() => ing.frame_owned(spare, None),
                    Ok(len) if len >= vnet::LEN => {
                        ing.frame(&scratch[..vnet::LEN], &scratch[vnet::LEN..len], None);
                    }
                    Ok(len) => {
                        ing.rx_count(len);
                        ing.rt.counters.drop(ing.w, Drop::Runt, 1);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        failure = Some(format!("TAP read failed: {e}"));
                        break;
                    }
                }
                n += 1;
            }
            *turn_frames += n;
        }
        PortIo::Vxlan | PortIo::Gateway => {}
    }
    failure
}

/// Which tunnel port and remote a VXLAN datagram from `src` belongs to, or why it is
/// dropped.
fn resolve(
    table: &vxlan::decap::VtepTable,
    snap: &Snapshot,
    src: std::net::IpAddr,
    datagram: &[u8],
) -> Result<(Arc<PortRt>, Arc<RemoteRt>, vxlan::decap::Decap), DropReason> {
    let d = table.classify(src, datagram)?;
    let rt = snap
        .port(d.port as PortId)
        .cloned()
        .ok_or(DropReason::UnknownVni)?;
    let remote = rt
        .tunnel
        .as_ref()
        .and_then(|t| {
            t.remotes
                .load()
                .iter()
                .find(|r| r.slot == d.remote)
                .cloned()
        })
        .ok_or(DropReason::UnknownRemote)?;
    Ok((rt, remote, d))
}

/// Runs `f` with the ingress context of tunnel port `rt` for a frame learned as
/// `learn_as` (the port and the remote it came from).
#[allow(clippy::too_many_arguments)]
fn with_ingress<R>(
    shared: &Shared,
    snap: &Snapshot,
    touched: &mut Vec<PortId>,
    touched_mark: &mut Vec<u64>,
    w: usize,
    rt: &Arc<PortRt>,
    learn_as: Dest,
    f: impl FnOnce(&mut Ingress<'_>) -> R,
) -> Option<R> {
    let Some(bv) = snap.bridge(rt.bridge) else {
        rt.counters.drop(w, Drop::NoBridge, 1);
        return None;
    };
    let fdb = bv.rt.fdb.load();
    let ctx = Ctx {
        fdb: &fdb,
        counters: &bv.rt.counters,
        worker: w,
        now: shared.clock.now(),
        aging: bv.rt.aging.load(Ordering::Relaxed),
    };
    let mut ing = Ingress {
        shared,
        snap,
        ctx: &ctx,
        rt,
        learn_as,
        bridge_ports: &bv.ports,
        guard: bv.guard.filter(|_| rt.kind != ctl::PortKind::Gateway),
        touched,
        touched_mark,
        w,
    };
    Some(f(&mut ing))
}

/// Per-batch context for frames arriving on one port.
struct Ingress<'a> {
    shared: &'a Shared,
    snap: &'a Snapshot,
    ctx: &'a Ctx<'a>,
    rt: &'a PortRt,
    /// What the source MAC is learned as: the port, and on a tunnel the remote.
    learn_as: Dest,
    bridge_ports: &'a [Arc<PortRt>],
    /// The gateway's identity on this bridge, when the ingress port is not the gateway.
    guard: Option<GatewayGuard>,
    touched: &'a mut Vec<PortId>,
    touched_mark: &'a mut Vec<u64>,
    w: usize,
}

/// A received frame as the forwarding step sees it.
#[derive(Clone, Copy)]
struct Arrival<'f> {
    vnet: &'f [u8],
    frame: &'f [u8],
    /// The frame still has its outer tag in its bytes (at offset 12).
    tag_in_frame: bool,
    /// Behind its outer tag the frame carries another one.
    inner_tag: bool,
    /// The frame's VLAN, priority and TPID.
    class: Class,
}

impl Ingress<'_> {
    #[inline]
    fn rx_count(&self, len: usize) {
        let b = self.rt.counters.block(self.w);
        bump(&b.rx_packets, 1);
        bump(&b.rx_bytes, len as u64);
    }

    /// Forwards one frame. `aux` is a tag the receive path stripped.
    #[inline]
    fn frame(&mut self, vnet_hdr: &[u8], frame: &[u8], aux: Option<(u16, u16)>) {
        self.rx_count(frame.len());
        match self.classify(vnet_hdr, frame, aux) {
            Ok((v, a)) => self.dispatch(v, &a),
            Err(d) => self.rt.counters.drop(self.w, d, 1),
        }
    }

    /// Finds the frame's VLAN (the port's VLAN rules applied to its outer tag) and decides
    /// where it goes.
    #[inline]
    fn classify<'f>(
        &mut self,
        vnet_hdr: &'f [u8],
        frame: &'f [u8],
        aux: Option<(u16, u16)>,
    ) -> Result<(Verdict, Arrival<'f>), Drop> {
        let eth = EthernetFrame::new_checked(frame).map_err(|_| Drop::Runt)?;
        let outer = vlan::outer(&eth, aux);
        let class = vlan::classify(self.snap.vlan(self.rt.id), outer.tag)?;
        let v = match self.guard {
            Some(g) => {
                self.guarded(g.check(eth.src(), outer.next_type, &frame[outer.next_at..]))?
            }
            None => None,
        };
        let v = v.unwrap_or_else(|| decide(self.ctx, frame, self.learn_as, class.vid));
        Ok((
            v,
            Arrival {
                vnet: vnet_hdr,
                frame,
                tag_in_frame: outer.in_frame,
                inner_tag: outer.inner_tag(),
                class,
            },
        ))
    }

    /// What the gateway's guard makes of a frame from another port: a frame from the
    /// gateway's MAC is refused (it would move the gateway in the FDB to this port); an
    /// ARP packet that claims the gateway's address goes to the gateway alone, which
    /// counts it as `arp_spoofed` and drops it, instead of reaching the neighbours whose
    /// entry for the gateway it would overwrite. `None`: an ordinary frame.
    #[inline]
    fn guarded(&self, g: Guarded) -> Result<Option<Verdict>, Drop> {
        match g {
            Guarded::Clear => return Ok(None),
            Guarded::SpoofedMac => return Err(Drop::GatewaySpoof),
            Guarded::SpoofedArp => {}
        }
        let gw = self
            .bridge_ports
            .iter()
            .find(|p| p.kind == ctl::PortKind::Gateway);
        Ok(Some(match gw {
            Some(p) => Verdict::Forward(dest(p.id, 0)),
            None => Verdict::Drop(Drop::GatewaySpoof),
        }))
    }

    /// Forwards a frame that sits in a pool buffer of its own (virtio-net header first).
    /// A super-frame going to one port unchanged is sent in that very buffer: the copy
    /// saved is 64 KiB per TCP super-frame.
    fn frame_owned(&mut self, slot: &mut Option<Buf>, aux: Option<(u16, u16)>) {
        let Some(b) = slot.as_ref() else { return };
        let bytes = b.bytes();
        let (vnet_hdr, frame) = bytes.split_at(vnet::LEN.min(bytes.len()));
        self.rx_count(frame.len());
        let (v, a) = match self.classify(vnet_hdr, frame, aux) {
            Ok(x) => x,
            Err(d) => return self.rt.counters.drop(self.w, d, 1),
        };
        if let (Verdict::Forward(p), None, true) = (v, aux, bytes.len() > SMALL) {
            if let Some(dst) = deliverable(self.snap, self.rt, port_of(p)) {
                // Unchanged on the way out: tagged in and out with the same tag, or
                // untagged both ways.
                let out_tagged = self.egress_to(dst, &a);
                let same = match out_tagged {
                    Some(true) => {
                        a.tag_in_frame
                            && u16::from_be_bytes([a.frame[14], a.frame[15]]) & 0x0fff
                                == a.class.vid
                    }
                    Some(false) => !a.tag_in_frame,
                    None => false,
                };
                if same {
                    if let Some(buf) = slot.take() {
                        self.push(dst, buf, remote_of(p));
                    }
                    return;
                }
            }
        }
        self.dispatch(v, &a);
    }

    /// Whether `a` leaves `dst` and tagged or not: the port's VLAN rules, and one more.
    /// A frame whose outer tag would be popped on a trunk (its native VLAN) while another
    /// tag sits behind it is refused: the peer would switch it in the inner tag's VLAN,
    /// which is how a double-tagged frame from an access port hops VLANs.
    #[inline]
    fn egress_to(&self, dst: &PortRt, a: &Arrival<'_>) -> Option<bool> {
        let table = self.snap.vlan(dst.id);
        let out = vlan::egress(table, &a.class);
        if out == Some(false) && a.inner_tag && table.is_some_and(|t| t.is_trunk()) {
            self.rt.counters.drop(self.w, Drop::VlanDoubleTag, 1);
            return None;
        }
        out
    }

    #[inline]
    fn dispatch(&mut self, v: Verdict, a: &Arrival<'_>) {
        match v {
            Verdict::Drop(d) => self.rt.counters.drop(self.w, d, 1),
            Verdict::Filtered => self.ctx.counters.add(self.w, BridgeEvent::Filtered, 1),
            Verdict::Forward(p) => match deliverable(self.snap, self.rt, port_of(p)) {
                Some(dst) => match self.egress_to(dst, a) {
                    Some(tagged) => self.enqueue(dst, a, tagged, remote_of(p)),
                    None => self.ctx.counters.add(self.w, BridgeEvent::VlanFiltered, 1),
                },
                // Learned on a port that is gone or down: fall back to flooding.
                None => self.flood(a),
            },
            Verdict::Flood => self.flood(a),
        }
    }

    /// Sends to every other port of the bridge that is up and carries the frame's VLAN.
    fn flood(&mut self, a: &Arrival<'_>) {
        self.ctx.counters.add(self.w, BridgeEvent::Flooded, 1);
        let ports = self.bridge_ports;
        for dst in ports {
            if dst.id == self.rt.id || !dst.up.load(Ordering::Relaxed) {
                continue;
            }
            if let Some(tagged) = self.egress_to(dst, a) {
                // Remote 0: a tunnel replicates it to every remote.
                self.enqueue(dst, a, tagged, 0);
            }
        }
    }

    /// Copies the frame into a pool buffer for `dst`, pushing or popping the outer tag on
    /// the way (PCP, DEI and TPID kept), and queues it (for remote `remote` of a tunnel).
    #[inline]
    fn enqueue(&mut self, dst: &PortRt, a: &Arrival<'_>, tagged: bool, remote: u16) {
        let frame = a.frame;
        let in_len = if a.tag_in_frame { 4 } else { 0 };
        let out_len = if tagged { 4 } else { 0 };
        let want = vnet::LEN + frame.len() + out_len - in_len;
        let Some(mut buf) = self.shared.pool.get(want) else {
            let why = if want > LARGE {
                Drop::Oversize
            } else {
                Drop::NoBuffer
            };
            dst.counters.drop(self.w, why, 1);
            return;
        };
        let out_tag = tagged.then(|| a.class.tag());
        if !vlan::write_frame(&mut buf, a.vnet, frame, a.tag_in_frame, out_tag) {
            self.shared.pool.put(buf);
            dst.counters.drop(self.w, Drop::Oversize, 1);
            return;
        }
        self.push(dst, buf, remote);
    }

    /// Queues `buf` on `dst` (for remote `remote` of a tunnel) and notes the port for
    /// this turn's flush.
    #[inline]
    fn push(&mut self, dst: &PortRt, buf: Buf, remote: u16) {
        queue_on(
            self.shared,
            self.w,
            dst,
            buf,
            remote,
            self.touched,
            self.touched_mark,
        );
    }
}

/// Queues `buf` on `dst` (for remote `remote` of a tunnel) and notes the port in
/// `touched` for the turn's flush.
#[inline]
fn queue_on(
    shared: &Shared,
    w: usize,
    dst: &PortRt,
    mut buf: Buf,
    remote: u16,
    touched: &mut Vec<PortId>,
    touched_mark: &mut Vec<u64>,
) {
    buf.set_remote(remote);
    match dst.txq.push(buf) {
        Ok(()) => {
            let (word, bit) = (dst.id as usize / 64, 1u64 << (dst.id % 64));
            if touched_mark.len() <= word {
                // Grows once per new highest port id, not per frame.
                touched_mark.resize(word + 1, 0);
            }
            if touched_mark[word] & bit == 0 {
                touched_mark[word] |= bit;
                touched.push(dst.id);
            }
        }
        Err(buf) => {
            shared.pool.put(buf);
            dst.counters.drop(w, Drop::TxQueueFull, 1);
        }
    }
}

/// Port `p` of `snap` if frames arriving on `from` may be sent to it now. The result
/// borrows the snapshot, not the worker, so no reference count is touched per frame.
#[inline]
fn deliverable<'s>(snap: &'s Snapshot, from: &PortRt, p: PortId) -> Option<&'s Arc<PortRt>> {
    snap.port(p)
        .filter(|d| d.bridge == from.bridge && d.up.load(Ordering::Relaxed))
}

/// How a TX turn ended.
enum Drained {
    /// The queue is empty.
    Empty,
    /// The kernel pushed back: retry shortly.
    Blocked,
    /// The turn's budget ran out with frames still queued.
    More,
}

/// Drains `rt` if its transmit lock is free (an idle port costs one failed pop); if
/// another worker holds the lock, reports work left so the caller checks again.
fn try_drain(w: usize, pool: &Pool, rt: &PortRt) -> io::Result<Drained> {
    match rt.tx.try_lock() {
        Ok(mut tx) => drain(w, pool, rt, &mut tx),
        Err(_) => Ok(Drained::More),
    }
}

/// Sends what is queued on one port, holding its transmit lock; an error means the
/// interface is unusable.
fn drain(w: usize, pool: &Pool, rt: &PortRt, tx: &mut TxState) -> io::Result<Drained> {
    let Some(io) = tx.io else {
        // Not attached (down, or being detached): the owner discards what is queued.
        return Ok(Drained::Empty);
    };
    if let TxIo::Gateway = io {
        // The gateway's worker takes these in `route`; it only has to be woken.
        return Ok(if rt.txq.is_empty() {
            Drained::Empty
        } else {
            Drained::More
        });
    }
    let c = rt.counters.block(w);
    for _ in 0..TX_BATCHES_PER_TURN {
        while tx.pending.len() < TX_BATCH {
            match rt.txq.pop() {
                Some(b) => tx.pending.push_back(b),
                None => break,
            }
        }
        if tx.pending.is_empty() {
            return Ok(Drained::Empty);
        }
        let n = tx.pending.len();
        // Taken, not sent, and counted as oversize rather than as a transmit error.
        let mut oversize = 0u64;
        let (taken, errors) = match io {
            TxIo::Afpacket(fd) => {
                let mut refs: [&[u8]; TX_BATCH] = [&[]; TX_BATCH];
                for (r, b) in refs.iter_mut().zip(tx.pending.iter()) {
                    *r = b.bytes();
                }
                let mut errors = 0;
                let taken = send_mmsg(fd, &refs[..n], &mut errors)?;
                (taken, errors)
            }
            TxIo::Vxlan => {
                let mut errors = 0;
                let taken = match rt.tunnel.as_ref() {
                    Some(t) => crate::tunnel::transmit(
                        t,
                        &mut tx.pending,
                        n,
                        &mut tx.scratch,
                        &mut errors,
                        &mut oversize,
                    ),
                    None => {
                        errors = n as u64;
                        n
                    }
                };
                if oversize > 0 {
                    rt.counters.drop(w, Drop::Oversize, oversize);
                }
                (taken, errors + oversize)
            }
            TxIo::Gateway => (0, 0),
            TxIo::Tap(fd) => {
                let mut taken = 0;
                let mut errors = 0;
                for b in tx.pending.iter() {
                    match write_frame(fd, b.bytes()) {
                        Ok(_) => taken += 1,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                            // This frame alone was refused (bad GSO header for the device).
                            taken += 1;
                            errors += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
                (taken, errors)
            }
        };
        let mut bytes = 0u64;
        for b in tx.pending.drain(..taken) {
            bytes += b.bytes().len().saturating_sub(vnet::LEN) as u64;
            pool.put(b);
        }
        bump(&c.tx_packets, (taken as u64).saturating_sub(errors));
        bump(&c.tx_bytes, bytes);
        if errors > oversize {
            rt.counters.drop(w, Drop::TxError, errors - oversize);
        }
        if taken < n {
            return Ok(Drained::Blocked);
        }
    }
    Ok(if rt.txq.is_empty() {
        Drained::Empty
    } else {
        Drained::More
    })
}

/// Locks a mutex whose holder may have panicked (the state stays usable).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
