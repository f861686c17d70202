//! The worker's receive side: a port's batch into the pipeline, whose output is queued
//! on the destination ports (the [`Queues`] sink) and noted for the turn's flush.

use std::sync::Arc;

use super::Worker;
use crate::counters::Drop;
use crate::dataplane::{PortRt, Shared, Snapshot, UPLINK_BRIDGE};
use crate::fdb::PortId;
use crate::gateway::Side;
use crate::pipeline::{self, Frame, Ingress, Origin, Sink};
use crate::pool::Buf;
use crate::port::{Rx, RxFrame, RxScratch};

impl Worker {
    /// Reads a batch from port `id` into the pipeline. A tunnel port receives through
    /// its VTEP (`rx_vtep`) and a gateway port from its queue (`route`): both read nothing
    /// here.
    pub(super) fn rx_port(&mut self, snap: &Snapshot, id: PortId) {
        let w = self.idx;
        let shared = &*self.shared;
        let Some(slot) = self.slots.get_mut(id as usize).and_then(|s| s.as_mut()) else {
            return;
        };
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
        let mut scratch = RxScratch {
            pool: &shared.pool,
            spare: &mut self.spare,
            scratch: &mut self.scratch,
        };
        let read = slot.io.rx_batch(&mut scratch, |rx| match (&ing, rx) {
            (Ok(ing), Rx::Frame(f)) => {
                ing.prefetch(f.ahead);
                ing.frame(frame_of(&f), &mut sink);
            }
            (Ok(ing), Rx::Owned { buf, vlan }) => {
                ing.frame_owned(buf, vlan, &mut sink);
            }
            // Reconfiguration in flight: read and drop, so the ring does not stall.
            (Err(d), _) => rt.counters.drop(w, *d, 1),
        });
        self.after_read(id, read);
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
        let mut scratch = RxScratch {
            pool,
            spare: &mut self.spare,
            scratch: &mut self.scratch,
        };
        let read = slot.io.rx_batch(&mut scratch, |rx| {
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
        });
        self.after_read(id, read);
    }

    /// What a read of port `id` leaves to do: count, come back for more, poll a new
    /// descriptor, or take the port down.
    fn after_read(&mut self, id: PortId, read: crate::port::Read) {
        self.turn_frames += read.frames;
        if read.more {
            self.rx_more.push(id);
        }
        if let Some(fd) = read.rearm {
            self.rearm(id, fd);
        }
        if let Some(why) = read.failure {
            self.detach(id, Some(why));
        }
    }
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
pub(super) struct Touched {
    pub(super) ports: Vec<PortId>,
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
    pub(super) fn clear(&mut self, id: PortId) {
        if let Some(m) = self.mark.get_mut(id as usize / 64) {
            *m &= !(1u64 << (id % 64));
        }
    }
}

/// The worker's [`Sink`]: what the pipeline sends is queued on the destination port's
/// lock-free TX queue (dropped and counted when it is full) and the port noted for the
/// turn's flush.
pub(super) struct Queues<'a> {
    pub(super) shared: &'a Shared,
    pub(super) w: usize,
    pub(super) touched: &'a mut Touched,
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
