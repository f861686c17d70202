//! A worker thread: owns the I/O of its ports, reads them in batches, hands each frame to
//! the [`pipeline`](crate::pipeline), pushes what it returns onto the destination ports'
//! TX queues, and drains the queues of the ports it owns. Data flows one way:
//! port → worker → pipeline → queue → port. No per-frame decision is taken here.
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

use crate::counters::{bump, Drop};
use crate::dataplane::{PortRt, Shared, Snapshot, TxIo, TxState, WorkerMsg, UPLINK_BRIDGE};
use crate::fdb::PortId;
use crate::gateway::{self, Side};
use crate::pipeline::tunnel::{Datagram, Vtep};
use crate::pipeline::{self, Frame, Ingress, Origin, Sink};
use crate::pool::{Buf, Pool, LARGE};
use crate::port::PortIo;
use crate::sys::afpacket::{send_mmsg, RingKind, Rx, RxFrame, TX_BATCH};
use crate::sys::tap::write_frame;
use crate::sys::udp::{self, RecvMeta};
use crate::tunnel::{VtepRt, DGRAM_OFFSET};
use crate::wire::vnet;

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
    /// Ports frames were queued to this turn.
    touched: Touched,
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
            touched: Touched::default(),
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
        let mut sink = Queues {
            shared,
            w,
            touched: &mut self.touched,
        };
        let ing = Ingress::new(snap, &shared.pool, &rt, rt.id, shared.clock.now(), w);
        let read = read_port(
            &mut slot.io,
            &shared.pool,
            &mut self.spare,
            &mut self.scratch,
            |rx| match (&ing, rx) {
                (Ok(ing), Rx::Frame(f)) => {
                    ing.frame(frame_of(&f), &mut sink);
                }
                (Ok(ing), Rx::Owned { buf, vlan }) => {
                    ing.frame_owned(buf, vlan, &mut sink);
                }
                // Reconfiguration in flight: read and drop, so the ring does not stall.
                (Err(d), _) => rt.counters.drop(w, *d, 1),
            },
        );
        self.turn_frames += read.frames;
        if read.more {
            self.rx_more.push(id);
        }
        if let Some(why) = read.failure {
            self.detach(id, Some(why));
        }
    }

    /// Reads a batch of VXLAN datagrams from VTEP `id` and hands each to the pipeline's
    /// tunnel entry, which decapsulates it and forwards the inner frame as if it had
    /// arrived on the tunnel port. A datagram is read where its inner frame can stay.
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
            let v = Vtep {
                table: &table,
                counters: &vtep.counters,
                snap,
                pool: &shared.pool,
                now: shared.clock.now(),
                w,
            };
            let mut sink = Queues {
                shared,
                w,
                touched: &mut self.touched,
            };
            for m in &meta[..n] {
                let Some(slot) = self.vtep_bufs.get_mut(m.slot) else {
                    continue;
                };
                let d = Datagram {
                    src: std::net::IpAddr::V4(m.src),
                    len: m.len,
                    gro: m.gro,
                    truncated: m.truncated,
                };
                v.receive(&d, slot, &mut sink);
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
        for k in 0..self.touched.ports.len() {
            let id = self.touched.ports[k];
            self.touched.clear(id);
            let Some(rt) = snap.port(id) else { continue };
            if self.turn_frames > DIRECT_TX_MAX && rt.owner != self.idx {
                self.wake[rt.owner] = true;
                continue;
            }
            let result = try_drain(self.idx, &self.shared.pool, rt);
            self.settle(rt, result);
        }
        self.touched.ports.clear();
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
        let rt = &slot.rt;
        let gw_in = &mut self.gw_in;
        let read = read_port(
            &mut slot.io,
            pool,
            &mut self.spare,
            &mut self.scratch,
            |rx| {
                let taken = match rx {
                    Rx::Frame(f) => pipeline::gateway::from_uplink(rt, pool, w, frame_of(&f)),
                    Rx::Owned { buf, vlan } => match buf.take() {
                        Some(b) => pipeline::gateway::owned_from_uplink(rt, pool, w, b, vlan),
                        None => return,
                    },
                };
                match taken {
                    Ok(b) => gw_in.push((Side::Uplink, b)),
                    Err(d) => rt.counters.drop(w, d, 1),
                }
            },
        );
        self.turn_frames += read.frames;
        if read.more {
            self.rx_more.push(id);
        }
        if let Some(why) = read.failure {
            self.detach(id, Some(why));
        }
    }

    /// The gateway's turn, on its worker: takes what bridges queued on gateway ports,
    /// and hands it with what was read from the uplink to the pipeline's gateway entry.
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
        if tick {
            self.gw_tick = Instant::now();
        }
        let shared = &*self.shared;
        let mut sink = Queues {
            shared,
            w,
            touched: &mut self.touched,
        };
        pipeline::gateway::route(
            snap,
            &shared.pool,
            gv,
            shared.clock.now(),
            w,
            &mut self.gw_in,
            tick,
            &mut self.gw_out,
            &mut sink,
        );
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

/// What one turn's read of a port brought.
struct Read {
    frames: usize,
    /// More is waiting than the turn's budget took.
    more: bool,
    /// The port failed for good: why.
    failure: Option<String>,
}

/// Reads one port's frames for a turn, within its budget, and gives each to `each`; a
/// read error that takes the port down comes back as the reason.
fn read_port(
    io: &mut PortIo,
    pool: &Pool,
    spare: &mut Option<Buf>,
    scratch: &mut [u8],
    mut each: impl FnMut(Rx<'_>),
) -> Read {
    let mut read = Read {
        frames: 0,
        more: false,
        failure: None,
    };
    match io {
        PortIo::Afpacket(a) => {
            let budget = match a.kind() {
                RingKind::V2 => RX_FRAMES_PER_TURN,
                RingKind::V3 => RX_BLOCKS_PER_TURN,
            };
            read.frames = a.rx(budget, pool, spare, each);
            read.more = a.rx_ready();
        }
        PortIo::Tap(t) => loop {
            if read.frames == TAP_FRAMES_PER_TURN {
                read.more = true;
                break;
            }
            if spare.is_none() {
                *spare = pool.get(LARGE);
            }
            let got = match spare.as_mut() {
                Some(b) => t.recv(b.spare()).inspect(|&len| b.set_len(len)),
                None => t.recv(scratch),
            };
            match got {
                Ok(len) if len >= vnet::LEN && spare.is_some() => each(Rx::Owned {
                    buf: spare,
                    vlan: None,
                }),
                Ok(len) => {
                    let bytes = match spare.as_ref() {
                        Some(b) => &b.bytes()[..len],
                        None => &scratch[..len],
                    };
                    // Shorter than the virtio-net header: all of it is a runt frame.
                    let (vnet, frame) =
                        bytes.split_at(if len >= vnet::LEN { vnet::LEN } else { 0 });
                    each(Rx::Frame(RxFrame {
                        vnet,
                        frame,
                        vlan: None,
                        truncated: false,
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    read.failure = Some(format!("TAP read failed: {e}"));
                    break;
                }
            }
            read.frames += 1;
        },
        PortIo::Vxlan | PortIo::Gateway => {}
    }
    read
}

/// The pipeline's view of a frame read from a ring.
#[inline]
fn frame_of<'f>(f: &RxFrame<'f>) -> Frame<'f> {
    Frame {
        vnet: f.vnet,
        bytes: f.frame,
        aux: f.vlan,
        truncated: f.truncated,
    }
}

/// Ports frames were queued to this turn, each once: flushed at the end of the turn.
#[derive(Default)]
struct Touched {
    ports: Vec<PortId>,
    /// One bit per port id: already in `ports`.
    mark: Vec<u64>,
}

impl Touched {
    /// Notes port `id` (once per turn).
    #[inline]
    fn note(&mut self, id: PortId) {
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        if self.mark.len() <= word {
            // Grows once per new highest port id, not per frame.
            self.mark.resize(word + 1, 0);
        }
        if self.mark[word] & bit == 0 {
            self.mark[word] |= bit;
            self.ports.push(id);
        }
    }

    /// Forgets port `id` (flushed).
    #[inline]
    fn clear(&mut self, id: PortId) {
        if let Some(m) = self.mark.get_mut(id as usize / 64) {
            *m &= !(1u64 << (id % 64));
        }
    }
}

/// The worker's [`Sink`]: what the pipeline sends is queued on the destination port's
/// lock-free TX queue (dropped and counted when it is full) and the port noted for the
/// turn's flush.
struct Queues<'a> {
    shared: &'a Shared,
    w: usize,
    touched: &'a mut Touched,
}

impl Sink for Queues<'_> {
    #[inline]
    fn deliver(&mut self, dst: &Arc<PortRt>, remote: u16, mut buf: Buf, _from: Origin<'_>) {
        buf.set_remote(remote);
        match dst.txq.push(buf) {
            Ok(()) => self.touched.note(dst.id),
            Err(buf) => {
                self.shared.pool.put(buf);
                dst.counters.drop(self.w, Drop::TxQueueFull, 1);
            }
        }
    }
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
