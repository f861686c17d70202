//! The worker's VTEPs: the VXLAN sockets it reads, each datagram handed to the
//! pipeline's tunnel entry ([`crate::pipeline::tunnel`]).

use std::os::fd::AsRawFd;
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::rx::Queues;
use super::{Worker, VTEP_TOKEN_BASE};
use crate::dataplane::Snapshot;
use crate::pipeline::tunnel::{Datagram, Vtep};
use crate::pool::LARGE;
use crate::sys::udp::{self, RecvMeta};
use crate::tunnel::{VtepRt, DGRAM_OFFSET};

/// `recvmmsg` batches read from one VTEP per turn.
const VTEP_BATCHES_PER_TURN: usize = 4;
/// Datagram buffers a worker keeps for its VTEPs: each takes a whole 64 KiB datagram,
/// since a kernel peer sends unsegmented super-packets.
const VTEP_RX_BUFS: usize = 16;

impl Worker {
    /// Starts reading VTEP `v`'s socket.
    pub(super) fn attach_vtep(&mut self, v: Arc<VtepRt>) {
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

    /// Stops reading VTEP `id`; the last one gone gives its buffers back.
    pub(super) fn detach_vtep(&mut self, id: u32) {
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
    }

    /// Reads a batch of VXLAN datagrams from VTEP `id` and hands each to the pipeline's
    /// tunnel entry, which decapsulates it and forwards the inner frame as if it had
    /// arrived on the tunnel port. A datagram is read where its inner frame can stay.
    pub(super) fn rx_vtep(&mut self, snap: &Snapshot, id: u32) {
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
                    sport: m.port,
                    len: m.len,
                    gro: m.gro,
                    truncated: m.truncated,
                };
                match &vtep.wg {
                    Some(w) => {
                        let mut reply = |msg: &[u8], to: std::net::SocketAddrV4| {
                            // Non-blocking: a handshake answer the kernel has no room
                            // for is lost, and the peer retries.
                            let _ = vtep.rx.send_to(msg, &to.into());
                        };
                        v.receive_sealed(w, &d, slot, &mut sink, &mut reply)
                    }
                    None => v.receive(&d, slot, &mut sink),
                }
            }
            if n < meta.len().min(self.vtep_bufs.len()) {
                return;
            }
        }
        self.vtep_more.push(id);
    }
}
