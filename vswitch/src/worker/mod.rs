//! A worker thread: owns the I/O of its ports, reads them in batches, hands each frame to
//! the [`pipeline`](crate::pipeline), pushes what it returns onto the destination ports'
//! TX queues, and drains the queues of the ports it owns. Data flows one way:
//! port → worker → pipeline → queue → port. No per-frame decision is taken here.
//!
//! Nothing here locks or allocates per frame: buffers come from the pool, queues are
//! lock-free, counters are this worker's own, and the snapshot is read through arc-swap.

//!
//! By job: this file runs the loop and keeps the ports ([`Slot`]s) the worker owns;
//! `rx` reads ports into the pipeline, `tx` drains TX queues into ports, `vtep` reads
//! VXLAN sockets, `gateway` takes the gateway's turn. What differs between port kinds
//! lives in [`crate::port`]; nothing here matches on a kind.

mod gateway;
mod rx;
mod tx;
mod vtep;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::counters::Drop;
use crate::dataplane::{PortRt, Shared, WorkerMsg};
use crate::fdb::PortId;
use crate::gateway::Side;
use crate::pool::{Buf, LARGE};
use crate::port::PortIo;
use crate::tunnel::VtepRt;

use gateway::GW_BATCH;
use rx::Touched;

/// Token of the worker's waker.
pub const WAKER: Token = Token(usize::MAX);
/// Tokens at and above this are VTEPs (`base + VTEP id`); below, port ids.
const VTEP_TOKEN_BASE: usize = 1 << 24;

/// A port this worker owns: read here, and drained here when nobody else does.
struct Slot {
    rt: Arc<PortRt>,
    /// Shared with the port's transmit side while attached.
    io: Arc<PortIo>,
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
    /// Owned ports whose own send descriptor is polled for room, because the kernel
    /// pushed back on it.
    tx_watched: Vec<PortId>,
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
    gw_out: crate::gateway::Out,
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
            tx_watched: Vec::new(),
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
            // Busy from here to the next wait: one clock read per wake-up, not per frame.
            let woke = Instant::now();
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
            if let Some(c) = shared.busy_ns.get(self.idx) {
                crate::counters::bump(c, woke.elapsed().as_nanos() as u64);
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
                let io = Arc::new(io);
                lock(&rt.tx).io = Some(io.clone());
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
            WorkerMsg::AttachVtep(v) => self.attach_vtep(v),
            WorkerMsg::Barrier(done) => {
                let _ = done.send(());
            }
            WorkerMsg::DetachVtep(id, done) => {
                self.detach_vtep(id);
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
        self.unwatch_tx(id, slot.io.tx_fd());
        let mut dropped = 0u64;
        {
            // Waits for any worker sending on this port right now; after this, nobody
            // will, and the interface closes as `slot` goes.
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

    /// Polls `fd` for port `id` too: the port now receives on it. It leaves the poller
    /// by itself when the port closes it.
    pub(super) fn rearm(&mut self, id: PortId, fd: std::os::fd::RawFd) {
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(id as usize),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.detach(id, Some(format!("cannot poll interface: {e}")));
        }
    }

    fn check_error(&mut self, id: PortId) {
        let Some(slot) = self.slots.get(id as usize).and_then(|s| s.as_ref()) else {
            return;
        };
        if let Some(e) = slot.io.take_error() {
            self.detach(id, Some(format!("interface error: {e}")));
        }
    }

    fn housekeeping(&mut self) {
        for slot in self.slots.iter().flatten() {
            slot.io.poll_counters(self.idx, &slot.rt.counters);
        }
    }
}

/// Locks a mutex whose holder may have panicked (the state stays usable).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
