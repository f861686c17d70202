//! The gateway's turn, on the worker that owns the gateway: frames bridges queued on
//! gateway ports and frames read from the uplink go to the pipeline's gateway entry.

use std::time::{Duration, Instant};

use super::rx::Queues;
use super::Worker;
use crate::counters::bump;
use crate::dataplane::Snapshot;
use crate::gateway::Side;
use crate::pipeline;
use crate::wire::vnet;

/// Frames the gateway takes per turn (from the uplink and from each gateway port).
pub(super) const GW_BATCH: usize = 256;

impl Worker {
    /// The gateway's turn, on its worker: takes what bridges queued on gateway ports,
    /// and hands it with what was read from the uplink to the pipeline's gateway entry.
    pub(super) fn route(&mut self, snap: &Snapshot) {
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
        if tick {
            // This worker already takes the lock per batch; a scrape must not.
            let stats = super::lock(&gv.rt.state).stats();
            gv.rt.published.store(Some(std::sync::Arc::new(stats)));
        }
    }
}
