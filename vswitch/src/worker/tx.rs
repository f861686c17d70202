//! The worker's transmit side: what a turn queued is sent at once where the port's
//! transmit lock is free, the rest is left to the port's owner, which drains its ports'
//! queues in batches through the port's own [`tx_batch`](crate::port::Driver::tx_batch).

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::Worker;
use crate::counters::{bump, Drop};
use crate::dataplane::{PortRt, Snapshot, TxState, WorkerMsg};
use crate::pool::Pool;
use crate::sys::afpacket::TX_BATCH;
use crate::wire::vnet;

/// A turn that received at most this many frames sends them itself, at once, instead of
/// handing them to the destination's owner: at low rates latency is what matters, and a
/// cross-thread wake-up costs more than the send. Busier turns leave sending to the
/// owners, so receiving and sending run on different cores.
const DIRECT_TX_MAX: usize = 4;
/// TX batches drained from one port per turn.
const TX_BATCHES_PER_TURN: usize = 8;

impl Worker {
    /// Sends what this turn queued, from this worker, for every port whose transmit side
    /// is free; the rest is left to the owner, which is woken.
    pub(super) fn flush_touched(&mut self, snap: &Snapshot) {
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
            Ok(Drained::Blocked) if rt.owner == self.idx => {
                self.tx_blocked = true;
                self.watch_tx(rt.id);
            }
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
    pub(super) fn drain_all(&mut self) {
        self.tx_blocked = false;
        self.tx_more = false;
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots[i].as_ref() else {
                continue;
            };
            let (id, tx_fd) = (slot.rt.id, slot.io.tx_fd());
            let result = try_drain(self.idx, &self.shared.pool, &slot.rt);
            if !self.tx_watched.is_empty() && !matches!(result, Ok(Drained::Blocked)) {
                self.unwatch_tx(id, tx_fd);
            }
            if !matches!(result, Ok(Drained::Empty)) {
                // Only now is the port needed past the borrow of `slots`.
                let Some(rt) = self.slots[i].as_ref().map(|s| s.rt.clone()) else {
                    continue;
                };
                self.settle(&rt, result);
            }
        }
    }

    /// Polls port `id`'s own send descriptor for room (under the port's token), while
    /// the kernel pushes back on it. A port that sends through its receive descriptor
    /// is polled for room there all along.
    fn watch_tx(&mut self, id: crate::fdb::PortId) {
        if self.tx_watched.contains(&id) {
            return;
        }
        let Some(fd) = self
            .slots
            .get(id as usize)
            .and_then(|s| s.as_ref())
            .and_then(|s| s.io.tx_fd())
        else {
            return;
        };
        // Registering reports room already there, so none freed meanwhile is missed;
        // should it fail, the blocked turn's short timeout retries anyway.
        if self
            .poll
            .registry()
            .register(&mut SourceFd(&fd), Token(id as usize), Interest::WRITABLE)
            .is_ok()
        {
            self.tx_watched.push(id);
        }
    }

    /// Stops polling port `id`'s send descriptor `tx_fd`, if it was watched: the kernel
    /// takes its frames again, or the port goes. Polled, every frame it frees would wake
    /// the poller.
    pub(super) fn unwatch_tx(&mut self, id: crate::fdb::PortId, tx_fd: Option<RawFd>) {
        let Some(i) = self.tx_watched.iter().position(|&p| p == id) else {
            return;
        };
        self.tx_watched.swap_remove(i);
        if let Some(fd) = tx_fd {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
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
    let TxState {
        io,
        pending,
        scratch,
    } = tx;
    let Some(io) = io.as_deref() else {
        // Not attached (down, or being detached): the owner discards what is queued.
        return Ok(Drained::Empty);
    };
    if !io.sends() {
        // Someone else takes these (the gateway's worker, in `route`); it only has to be
        // woken.
        return Ok(if rt.txq.is_empty() {
            Drained::Empty
        } else {
            Drained::More
        });
    }
    let c = rt.counters.block(w);
    for _ in 0..TX_BATCHES_PER_TURN {
        while pending.len() < TX_BATCH {
            match rt.txq.pop() {
                Some(b) => pending.push_back(b),
                None => break,
            }
        }
        if pending.is_empty() {
            return Ok(Drained::Empty);
        }
        let n = pending.len();
        let sent = io.tx_batch(rt, pending, n, scratch)?;
        let mut bytes = 0u64;
        for b in pending.drain(..sent.taken) {
            bytes += b.bytes().len().saturating_sub(vnet::LEN) as u64;
            pool.put(b);
        }
        bump(
            &c.tx_packets,
            (sent.taken as u64).saturating_sub(sent.errors),
        );
        bump(&c.tx_bytes, bytes);
        if sent.oversize > 0 {
            rt.counters.drop(w, Drop::Oversize, sent.oversize);
        }
        if sent.errors > sent.oversize {
            rt.counters
                .drop(w, Drop::TxError, sent.errors - sent.oversize);
        }
        if sent.taken < n {
            return Ok(Drained::Blocked);
        }
    }
    Ok(if rt.txq.is_empty() {
        Drained::Empty
    } else {
        Drained::More
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;
    use std::sync::Arc;

    use super::*;
    use crate::port::{Gateway, PortIo, Tap};

    fn queued(rt: &PortRt, pool: &Pool, n: usize) {
        for i in 0..n {
            let mut b = pool.get(100).expect("buffer");
            let mut f = vec![0u8; vnet::LEN];
            f.extend(vec![i as u8; 50]);
            assert!(b.fill(&[&f]));
            assert!(rt.txq.push(b).is_ok());
        }
    }

    #[test]
    fn drain_sends_the_queue_and_counts_it() {
        let (ours, wire) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let io = PortIo::Tap(Tap::from_file(std::fs::File::from(OwnedFd::from(ours))));
        let pool = Pool::new(8, 1);
        let rt = PortRt::with_txq_len(1, "p", ctl::PortKind::Tap, 0, 0, 1, 8);
        queued(&rt, &pool, 3);
        rt.tx.lock().unwrap().io = Some(Arc::new(io));
        assert!(matches!(try_drain(0, &pool, &rt), Ok(Drained::Empty)));
        let t = rt.counters.totals();
        assert_eq!(
            (t.tx_packets, t.tx_bytes),
            (3, 150),
            "bytes behind the vnet header"
        );
        assert!(t.drops.is_empty());
        let mut buf = [0u8; 128];
        for i in 0..3u8 {
            let n = wire.recv(&mut buf).unwrap();
            assert_eq!(buf[n - 1], i, "in queue order");
        }
        // All eight buffers can be had again only if the three sent went back.
        let again: Vec<_> = (0..8).map_while(|_| pool.get(100)).collect();
        assert_eq!(again.len(), 8, "every sent buffer went back to the pool");
    }

    /// An afpacket port sends through a socket of its own, which the worker polls for
    /// room only while the kernel pushes back: registered once under the port's token
    /// (room is reported at once), dropped when the port drains, and on detach.
    #[test]
    fn a_port_with_its_own_send_socket_is_polled_for_room_only_while_blocked() {
        crate::sys::in_new_netns(|| {
            let ip = |args: &[&str]| {
                let st = std::process::Command::new("ip")
                    .args(args)
                    .status()
                    .unwrap();
                assert!(st.success(), "ip {args:?}");
            };
            ip(&[
                "link", "add", "wtx0", "type", "veth", "peer", "name", "wtx1",
            ]);
            ip(&["link", "set", "wtx1", "up"]);
            let io =
                crate::port::Afpacket::open("wtx0", crate::sys::afpacket::RingKind::V2).unwrap();
            let io = Arc::new(PortIo::Afpacket(io));
            let tx_fd = io.tx_fd().expect("an afpacket port has a send socket");
            assert_ne!(Some(tx_fd), io.fd(), "and it is not the polled RX socket");
            let shared = crate::dataplane::Shared::without_workers();
            let (_tell, inbox) = crossbeam::channel::unbounded();
            let mut w = Worker::new(0, shared, mio::Poll::new().unwrap(), inbox);
            let rt = Arc::new(PortRt::with_txq_len(
                3,
                "wtx0",
                ctl::PortKind::Afpacket,
                0,
                0,
                1,
                8,
            ));
            rt.tx.lock().unwrap().io = Some(io.clone());
            w.slots.resize_with(4, || None);
            w.slots[3] = Some(super::super::Slot { rt, io });

            w.watch_tx(3);
            w.watch_tx(3);
            assert_eq!(w.tx_watched, vec![3], "watched once");
            let mut events = mio::Events::with_capacity(8);
            w.poll
                .poll(&mut events, Some(std::time::Duration::from_secs(1)))
                .unwrap();
            assert!(
                events
                    .iter()
                    .any(|e| e.token() == mio::Token(3) && e.is_writable()),
                "room there already is reported under the port's token"
            );
            // Nothing queued: the drain ends empty and the socket is no longer polled.
            w.drain_all();
            assert!(w.tx_watched.is_empty());
            // Deregistered for real: registering the descriptor again succeeds.
            w.watch_tx(3);
            assert_eq!(w.tx_watched, vec![3]);
            w.detach(3, None);
            assert!(w.tx_watched.is_empty(), "a detached port is not watched");
        });
    }

    #[test]
    fn drain_of_a_detached_port_leaves_its_queue_to_the_owner() {
        let pool = Pool::new(8, 1);
        let rt = PortRt::with_txq_len(1, "p", ctl::PortKind::Tap, 0, 0, 1, 8);
        queued(&rt, &pool, 2);
        assert!(matches!(try_drain(0, &pool, &rt), Ok(Drained::Empty)));
        assert_eq!(rt.txq.len(), 2);
    }

    #[test]
    fn drain_of_a_gateway_port_only_says_there_is_work() {
        let pool = Pool::new(8, 1);
        let rt = PortRt::with_txq_len(1, "gw", ctl::PortKind::Gateway, 0, 0, 1, 8);
        rt.tx.lock().unwrap().io = Some(Arc::new(PortIo::Gateway(Gateway)));
        assert!(matches!(try_drain(0, &pool, &rt), Ok(Drained::Empty)));
        queued(&rt, &pool, 1);
        assert!(matches!(try_drain(0, &pool, &rt), Ok(Drained::More)));
        assert_eq!(
            rt.txq.len(),
            1,
            "the gateway's worker takes it, not the drain"
        );
    }

    #[test]
    fn drain_into_a_dead_device_is_an_error_for_the_port() {
        let (ours, wire) = UnixDatagram::pair().unwrap();
        drop(wire);
        let io = PortIo::Tap(Tap::from_file(std::fs::File::from(OwnedFd::from(ours))));
        let pool = Pool::new(8, 1);
        let rt = PortRt::with_txq_len(1, "p", ctl::PortKind::Tap, 0, 0, 1, 8);
        queued(&rt, &pool, 1);
        rt.tx.lock().unwrap().io = Some(Arc::new(io));
        assert!(try_drain(0, &pool, &rt).is_err());
    }
}
