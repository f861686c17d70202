//! A neighbour table for one side of the gateway (a network or the uplink): IPv4
//! address → MAC, learned from ARP, with the frames waiting for an address to resolve.
//! Everything is bounded: entries per side, frames per address and frames in all; what
//! does not fit is handed back to be counted and dropped, never queued without limit.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use crate::pool::Buf;
use crate::wire::MacAddr;

/// Neighbours one side remembers.
pub const MAX_ENTRIES: usize = 4096;
/// Frames waiting for one address (Linux's `unres_qlen` is of this order).
pub const QUEUE_PER_ADDR: usize = 32;
/// Frames waiting on one side in all.
pub const QUEUE_TOTAL: usize = 256;
/// ARP requests sent for an address before its waiting frames are dropped.
pub const TRIES: u8 = 3;
/// Between two requests for an unresolved address, ms.
pub const RETRY_MS: u64 = 1000;
/// An entry not confirmed for this long is re-probed when used (it is still used).
pub const STALE_MS: u64 = 60_000;
/// An entry not confirmed for this long is forgotten.
pub const EXPIRE_MS: u64 = 300_000;

#[derive(Debug, Clone, Copy)]
struct Neigh {
    mac: MacAddr,
    confirmed: u64,
    probed: u64,
}

struct Pending {
    frames: VecDeque<Buf>,
    tries: u8,
    last: u64,
}

/// What [`Neighbours::resolve`] decided.
pub enum Resolved {
    /// Send to this MAC; `probe`: ask again, the entry is getting old.
    Known { mac: MacAddr, probe: bool },
    /// Queued until the address answers; `request`: send an ARP request now.
    Queued { request: bool },
    /// No room to wait: the frame comes back to be dropped.
    Full(Buf),
}

/// One side's neighbours.
#[derive(Default)]
pub struct Neighbours {
    entries: HashMap<Ipv4Addr, Neigh>,
    pending: HashMap<Ipv4Addr, Pending>,
    queued: usize,
}

impl Neighbours {
    /// Known neighbours.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no neighbour is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Frames waiting for resolution.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// The MAC of `ip`, or queues `buf` until it is known.
    pub fn resolve(&mut self, ip: Ipv4Addr, buf: Buf, now: u64) -> (Resolved, Option<Buf>) {
        if let Some(n) = self.entries.get_mut(&ip) {
            let probe = now.saturating_sub(n.confirmed) >= STALE_MS
                && now.saturating_sub(n.probed) >= RETRY_MS;
            if probe {
                n.probed = now;
            }
            return (Resolved::Known { mac: n.mac, probe }, Some(buf));
        }
        if self.queued >= QUEUE_TOTAL {
            return (Resolved::Full(buf), None);
        }
        let fresh = !self.pending.contains_key(&ip);
        if fresh && self.pending.len() >= QUEUE_TOTAL {
            return (Resolved::Full(buf), None);
        }
        let p = self.pending.entry(ip).or_insert_with(|| Pending {
            frames: VecDeque::new(),
            tries: 1,
            last: now,
        });
        if p.frames.len() >= QUEUE_PER_ADDR {
            return (Resolved::Full(buf), None);
        }
        p.frames.push_back(buf);
        self.queued += 1;
        (Resolved::Queued { request: fresh }, None)
    }

    /// Records that `ip` is at `mac`. A new entry is made only if `create` (the
    /// neighbour talked to us) or frames wait for it; otherwise only a known one is
    /// updated. Returns the frames that waited for it.
    pub fn learn(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: u64,
        create: bool,
    ) -> Option<VecDeque<Buf>> {
        let waiting = self.pending.remove(&ip).map(|p| p.frames);
        if let Some(w) = &waiting {
            self.queued -= w.len();
        }
        let room = self.entries.len() < MAX_ENTRIES;
        match self.entries.get_mut(&ip) {
            Some(n) => {
                n.mac = mac;
                n.confirmed = now;
            }
            None if (create || waiting.is_some()) && room => {
                self.entries.insert(
                    ip,
                    Neigh {
                        mac,
                        confirmed: now,
                        probed: now,
                    },
                );
            }
            None => {}
        }
        waiting
    }

    /// The MAC of `ip` if known.
    pub fn get(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.entries.get(&ip).map(|n| n.mac)
    }

    /// Periodic work: repeats requests for unresolved addresses (`request`), gives up
    /// on those that never answered (their frames go to `dropped`), forgets old entries.
    pub fn tick(
        &mut self,
        now: u64,
        mut request: impl FnMut(Ipv4Addr),
        mut dropped: impl FnMut(Buf),
    ) {
        let mut gone = 0;
        self.pending.retain(|&ip, p| {
            if now.saturating_sub(p.last) < RETRY_MS {
                return true;
            }
            if p.tries >= TRIES {
                gone += p.frames.len();
                for b in p.frames.drain(..) {
                    dropped(b);
                }
                return false;
            }
            p.tries += 1;
            p.last = now;
            request(ip);
            true
        });
        self.queued -= gone;
        self.entries
            .retain(|_, n| now.saturating_sub(n.confirmed) < EXPIRE_MS);
    }

    /// Forgets everything; waiting frames go to `dropped`.
    pub fn clear(&mut self, mut dropped: impl FnMut(Buf)) {
        for (_, p) in self.pending.drain() {
            for b in p.frames {
                dropped(b);
            }
        }
        self.entries.clear();
        self.queued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pool;

    const M: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    #[test]
    fn queue_until_learned_then_release_in_order() {
        let pool = Pool::new(64, 1);
        let mut n = Neighbours::default();
        let ip = Ipv4Addr::new(10, 0, 0, 9);
        for i in 0..3u8 {
            let mut b = pool.get(10).unwrap();
            b.spare()[0] = i;
            b.set_len(1);
            let (r, back) = n.resolve(ip, b, 0);
            assert!(back.is_none());
            assert!(matches!(r, Resolved::Queued { request } if request == (i == 0)));
        }
        assert_eq!(n.queued(), 3);
        let w = n.learn(ip, M, 5, false).unwrap();
        assert_eq!(
            w.iter().map(|b| b.bytes()[0]).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(n.queued(), 0);
        let (r, back) = n.resolve(ip, pool.get(10).unwrap(), 10);
        assert!(matches!(r, Resolved::Known { mac, probe: false } if mac == M));
        assert!(back.is_some());
        // Old entries are probed once per retry interval, then forgotten.
        let (r, _) = n.resolve(ip, pool.get(10).unwrap(), STALE_MS + 10);
        assert!(matches!(r, Resolved::Known { probe: true, .. }));
        let (r, _) = n.resolve(ip, pool.get(10).unwrap(), STALE_MS + 20);
        assert!(matches!(r, Resolved::Known { probe: false, .. }));
        n.tick(EXPIRE_MS + 10, |_| {}, |_| {});
        assert!(n.get(ip).is_none());
    }

    #[test]
    fn bounded_and_given_up_after_tries() {
        let pool = Pool::new(1024, 1);
        let mut n = Neighbours::default();
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let mut full = 0;
        for _ in 0..QUEUE_PER_ADDR + 5 {
            if let (Resolved::Full(_), _) = n.resolve(ip, pool.get(10).unwrap(), 0) {
                full += 1;
            }
        }
        assert_eq!(full, 5);
        for k in 0..QUEUE_TOTAL as u32 {
            let _ = n.resolve(Ipv4Addr::from(0x0a01_0000 + k), pool.get(10).unwrap(), 0);
        }
        assert_eq!(n.queued(), QUEUE_TOTAL);
        let (mut asked, mut dropped) = (0, 0);
        for t in 1..=TRIES as u64 + 1 {
            n.tick(t * RETRY_MS, |_| asked += 1, |_| dropped += 1);
        }
        assert_eq!(dropped, QUEUE_TOTAL);
        assert_eq!(n.queued(), 0);
        assert!(asked > 0);
        // Unsolicited ARP does not create entries; a neighbour that talked to us does.
        assert!(n.learn(ip, M, 0, false).is_none());
        assert!(n.get(ip).is_none());
        n.learn(ip, M, 0, true);
        assert_eq!(n.get(ip), Some(M));
    }
}
