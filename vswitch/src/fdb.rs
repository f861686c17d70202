//! The forwarding database of one bridge: (VLAN, MAC) → (port, last seen).
//!
//! Every worker learns and looks up on every frame, so the table takes no lock: it is
//! a fixed-capacity open-addressing table of atomic slots. A key, once written into a
//! slot, stays there (an aged or flushed entry just has its value cleared), which keeps
//! linear probing correct without coordination; the housekeeper rebuilds the table when
//! dead keys pile up ([`Fdb::needs_compaction`]). The limit on live entries is enforced
//! with one counter, so a MAC flood cannot grow memory: the table is sized from the
//! limit at creation.
//!
//! Slot encoding: key = `1<<63 | vlan<<48 | mac`, 0 = never used; value =
//! `dest<<32 | seen`, 0 = no live entry (port ids start at 1). `dest` is a [`Dest`]: the
//! port, and for a tunnel port the remote VTEP the MAC sits behind. `seen` is seconds
//! since the daemon's clock epoch, so `u32` lasts 136 years; [`STATIC`] marks an entry
//! configured by hand, which never ages and is never moved by learning.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::wire::MacAddr;

/// A port's id; 0 is never a port. Ids stay below [`PORT_ID_LIMIT`].
pub type PortId = u32;

/// Where a MAC sits: a port id in the low 16 bits and, for a tunnel port, the slot of
/// the remote VTEP in the high 16 (0: none, or every remote when flooding).
pub type Dest = u32;

/// Port ids must fit the low half of a [`Dest`].
pub const PORT_ID_LIMIT: u32 = 1 << 16;

/// The `seen` value of static entries.
pub const STATIC: u32 = u32::MAX;

/// The destination "`port`, behind remote `remote`".
#[inline]
pub const fn dest(port: PortId, remote: u16) -> Dest {
    (port & 0xffff) | ((remote as u32) << 16)
}

/// The port of a destination.
#[inline]
pub const fn port_of(d: Dest) -> PortId {
    d & 0xffff
}

/// The remote slot of a destination (0: none).
#[inline]
pub const fn remote_of(d: Dest) -> u16 {
    (d >> 16) as u16
}

const KEY_USED: u64 = 1 << 63;

#[derive(Default)]
struct Slot {
    key: AtomicU64,
    val: AtomicU64,
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// Already known on this port and seen this second: nothing written.
    Known,
    /// Known on this port; its last-seen time was refreshed.
    Refreshed,
    /// A new entry.
    Added,
    /// The MAC moved here from another port.
    Moved,
    /// Not learned: the bridge is at its MAC limit.
    LimitReached,
    /// Not learned: the table has no free slot until the next compaction.
    TableFull,
}

/// One live entry, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub vlan: u16,
    pub mac: MacAddr,
    /// The destination ([`port_of`], [`remote_of`]).
    pub port: Dest,
    /// Last seen, or [`STATIC`].
    pub seen: u32,
}

impl Entry {
    /// Configured by hand rather than learned.
    pub fn is_static(&self) -> bool {
        self.seen == STATIC
    }
}

/// A lock-free (VLAN, MAC) table with a hard limit on live entries.
pub struct Fdb {
    slots: Box<[Slot]>,
    mask: usize,
    limit: usize,
    live: AtomicUsize,
    /// Slots whose key is set (live or dead): drives compaction.
    used: AtomicUsize,
}

#[inline]
fn key_of(vlan: u16, mac: MacAddr) -> u64 {
    KEY_USED | (u64::from(vlan & 0x0fff) << 48) | mac.to_u64()
}

#[inline]
fn hash(key: u64) -> usize {
    // A multiply-xorshift mix: MACs share vendor prefixes, so the low bits alone are poor.
    let mut h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (h ^ (h >> 32)) as usize
}

#[inline]
fn pack(port: PortId, seen: u32) -> u64 {
    (u64::from(port) << 32) | u64::from(seen)
}

#[inline]
fn unpack(v: u64) -> (PortId, u32) {
    ((v >> 32) as u32, v as u32)
}

impl Fdb {
    /// A table for at most `limit` live entries.
    pub fn new(limit: usize) -> Self {
        // Twice the limit keeps probes short at full load; dead keys get the rest until
        // compaction.
        let cap = (limit.max(1) * 2).next_power_of_two().max(1024);
        // Zeroed memory straight from the allocator: pages are not touched (and not in
        // RSS) until a MAC hashes there, so an idle bridge costs next to nothing.
        // SAFETY: a Slot is two AtomicU64s, which have the layout of u64, and all-zero is
        // the valid empty slot.
        let slots: Box<[Slot]> = unsafe { Box::<[Slot]>::new_zeroed_slice(cap).assume_init() };
        Fdb {
            slots,
            mask: cap - 1,
            limit,
            live: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
        }
    }

    /// The limit on live entries.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Live entries (including ones past their age that the sweeper has not cleared).
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// True when no entry is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts loading the slot that `mac` in `vlan` hashes to, so that a [`Self::lookup`]
    /// made after other work finds it in cache: with thousands of remote endpoints the
    /// table is megabytes and that slot is otherwise a cache miss on every frame (about a
    /// fifth of a frame's cost at 10,000 endpoints, `cargo bench --bench cluster`).
    #[inline]
    pub fn prefetch(&self, vlan: u16, mac: MacAddr) {
        let slot = &self.slots[hash(key_of(vlan, mac)) & self.mask];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: PREFETCHT0 is only a hint: it loads nothing the program sees and cannot
        // fault, and the pointer is to a live slot of this table besides.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(slot).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    /// The port `mac` was last seen on in `vlan`, if seen within `max_age` seconds.
    #[inline]
    pub fn lookup(&self, vlan: u16, mac: MacAddr, now: u32, max_age: u32) -> Option<PortId> {
        let key = key_of(vlan, mac);
        let mut i = hash(key) & self.mask;
        for _ in 0..=self.mask {
            let slot = &self.slots[i];
            let k = slot.key.load(Ordering::Acquire);
            if k == key {
                let v = slot.val.load(Ordering::Acquire);
                if v == 0 {
                    return None;
                }
                let (port, seen) = unpack(v);
                return (now.saturating_sub(seen) <= max_age).then_some(port);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Records that `mac` in `vlan` was seen at `port` (a [`Dest`]) at `now`.
    #[inline]
    pub fn learn(&self, vlan: u16, mac: MacAddr, port: Dest, now: u32) -> Learn {
        debug_assert!(port != 0);
        let key = key_of(vlan, mac);
        let new = pack(port, now);
        let mut i = hash(key) & self.mask;
        for _ in 0..=self.mask {
            let slot = &self.slots[i];
            let mut k = slot.key.load(Ordering::Acquire);
            if k == 0 {
                // Claim a fresh slot; leave one slot in four empty so lookups of absent
                // keys always terminate quickly.
                if self.used.load(Ordering::Relaxed) >= self.slots.len() / 4 * 3 {
                    return Learn::TableFull;
                }
                if !self.reserve() {
                    return Learn::LimitReached;
                }
                match slot
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        self.used.fetch_add(1, Ordering::Relaxed);
                        slot.val.store(new, Ordering::Release);
                        return Learn::Added;
                    }
                    Err(cur) => {
                        self.live.fetch_sub(1, Ordering::Relaxed);
                        k = cur;
                    }
                }
            }
            if k == key {
                return self.update(slot, port, now, new);
            }
            i = (i + 1) & self.mask;
        }
        Learn::TableFull
    }

    fn reserve(&self) -> bool {
        if self.live.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn update(&self, slot: &Slot, port: PortId, now: u32, new: u64) -> Learn {
        let mut v = slot.val.load(Ordering::Acquire);
        loop {
            if v == 0 {
                // A dead entry for this key: revive it if the limit allows.
                if !self.reserve() {
                    return Learn::LimitReached;
                }
                match slot
                    .val
                    .compare_exchange(0, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return Learn::Added,
                    Err(cur) => {
                        self.live.fetch_sub(1, Ordering::Relaxed);
                        v = cur;
                        continue;
                    }
                }
            }
            let (old_port, seen) = unpack(v);
            if seen == STATIC || (old_port == port && seen == now) {
                // The common case: no write, so the cache line stays shared between workers.
                return Learn::Known;
            }
            match slot
                .val
                .compare_exchange_weak(v, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return if old_port == port {
                        Learn::Refreshed
                    } else {
                        Learn::Moved
                    }
                }
                Err(cur) => v = cur,
            }
        }
    }

    /// Clears entries matching `pred`; returns how many were cleared.
    pub fn remove_where(&self, mut pred: impl FnMut(&Entry) -> bool) -> usize {
        let mut n = 0;
        for slot in self.slots.iter() {
            let k = slot.key.load(Ordering::Acquire);
            if k == 0 {
                continue;
            }
            let v = slot.val.load(Ordering::Acquire);
            if v == 0 {
                continue;
            }
            let (port, seen) = unpack(v);
            let e = Entry {
                vlan: ((k >> 48) & 0x0fff) as u16,
                mac: MacAddr::from_u64(k),
                port,
                seen,
            };
            if pred(&e)
                && slot
                    .val
                    .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                self.live.fetch_sub(1, Ordering::Relaxed);
                n += 1;
            }
        }
        n
    }

    /// Clears entries not seen for more than `max_age` seconds (static ones stay).
    pub fn age(&self, now: u32, max_age: u32) -> usize {
        self.remove_where(|e| !e.is_static() && now.saturating_sub(e.seen) > max_age)
    }

    /// Clears every entry on `port`, static ones included.
    pub fn flush_port(&self, port: PortId) -> usize {
        self.remove_where(|e| port_of(e.port) == port)
    }

    /// Clears the learned entries of `port` in the VLANs `vlans` (the port left them).
    pub fn flush_port_vlans(&self, port: PortId, vlans: &[u16]) -> usize {
        self.remove_where(|e| !e.is_static() && port_of(e.port) == port && vlans.contains(&e.vlan))
    }

    /// Clears every entry behind remote `remote` of tunnel port `port`.
    pub fn flush_remote(&self, port: PortId, remote: u16) -> usize {
        self.remove_where(|e| e.port == dest(port, remote))
    }

    /// Installs a static entry: `mac` in `vlan` is at `to`, whatever learning sees. It
    /// counts as a live entry but is not refused at the limit (configured entries are
    /// few and bounded by the config); false only if the table has no free slot.
    pub fn set_static(&self, vlan: u16, mac: MacAddr, to: Dest) -> bool {
        let key = key_of(vlan, mac);
        let new = pack(to, STATIC);
        let mut i = hash(key) & self.mask;
        for _ in 0..=self.mask {
            let slot = &self.slots[i];
            let mut k = slot.key.load(Ordering::Acquire);
            if k == 0 {
                match slot
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        self.used.fetch_add(1, Ordering::Relaxed);
                        self.live.fetch_add(1, Ordering::Relaxed);
                        slot.val.store(new, Ordering::Release);
                        return true;
                    }
                    Err(cur) => k = cur,
                }
            }
            if k == key {
                if slot.val.swap(new, Ordering::AcqRel) == 0 {
                    self.live.fetch_add(1, Ordering::Relaxed);
                }
                return true;
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// Removes the static entry for `mac` in `vlan`; true if there was one.
    pub fn remove_static(&self, vlan: u16, mac: MacAddr) -> bool {
        let key = key_of(vlan, mac);
        self.remove_where(|e| e.is_static() && key_of(e.vlan, e.mac) == key) > 0
    }

    /// Every live entry.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for slot in self.slots.iter() {
            let k = slot.key.load(Ordering::Acquire);
            let v = slot.val.load(Ordering::Acquire);
            if k != 0 && v != 0 {
                let (port, seen) = unpack(v);
                out.push(Entry {
                    vlan: ((k >> 48) & 0x0fff) as u16,
                    mac: MacAddr::from_u64(k),
                    port,
                    seen,
                });
            }
        }
        out
    }

    /// True when dead keys take enough of the table that it should be rebuilt.
    pub fn needs_compaction(&self) -> bool {
        let used = self.used.load(Ordering::Relaxed);
        used >= self.slots.len() / 2 && used >= 2 * self.len()
    }

    /// A fresh table with `limit` holding this one's static entries and its learned
    /// ones (up to the limit).
    pub fn rebuilt(&self, limit: usize) -> Fdb {
        let t = Fdb::new(limit);
        let (fixed, learned): (Vec<Entry>, Vec<Entry>) =
            self.entries().into_iter().partition(Entry::is_static);
        for e in fixed {
            t.set_static(e.vlan, e.mac, e.port);
        }
        for e in learned {
            t.learn(e.vlan, e.mac, e.port, e.seen);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([2, 0, b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn learn_lookup_move() {
        let f = Fdb::new(16);
        assert_eq!(f.lookup(0, mac(1), 0, 300), None);
        assert_eq!(f.learn(0, mac(1), 1, 10), Learn::Added);
        assert_eq!(f.learn(0, mac(1), 1, 10), Learn::Known);
        assert_eq!(f.learn(0, mac(1), 1, 11), Learn::Refreshed);
        assert_eq!(f.lookup(0, mac(1), 11, 300), Some(1));
        assert_eq!(f.learn(0, mac(1), 2, 12), Learn::Moved);
        assert_eq!(f.lookup(0, mac(1), 12, 300), Some(2));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn vlans_are_separate_keys() {
        let f = Fdb::new(16);
        f.learn(10, mac(1), 1, 0);
        f.learn(20, mac(1), 2, 0);
        assert_eq!(f.lookup(10, mac(1), 0, 300), Some(1));
        assert_eq!(f.lookup(20, mac(1), 0, 300), Some(2));
        assert_eq!(f.lookup(0, mac(1), 0, 300), None);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn aging_hides_then_clears() {
        let f = Fdb::new(16);
        f.learn(0, mac(1), 1, 100);
        f.learn(0, mac(2), 1, 350);
        assert_eq!(f.lookup(0, mac(1), 400, 300), Some(1));
        assert_eq!(
            f.lookup(0, mac(1), 401, 300),
            None,
            "expired entries are not used"
        );
        assert_eq!(f.age(401, 300), 1);
        assert_eq!(f.len(), 1);
        assert_eq!(f.lookup(0, mac(2), 401, 300), Some(1));
        // A dead key comes back to life when the MAC is seen again.
        assert_eq!(f.learn(0, mac(1), 3, 402), Learn::Added);
        assert_eq!(f.lookup(0, mac(1), 402, 300), Some(3));
    }

    #[test]
    fn limit_is_hard_and_existing_entries_keep_working() {
        let f = Fdb::new(100);
        for i in 0..100 {
            assert_eq!(f.learn(0, mac(i), 1, 0), Learn::Added);
        }
        for i in 100..1000 {
            assert_eq!(f.learn(0, mac(i), 2, 0), Learn::LimitReached);
        }
        assert_eq!(f.len(), 100);
        assert_eq!(f.lookup(0, mac(5), 0, 300), Some(1));
        assert_eq!(
            f.learn(0, mac(5), 2, 1),
            Learn::Moved,
            "moves are allowed at the limit"
        );
        assert_eq!(f.lookup(0, mac(500), 0, 300), None);
    }

    #[test]
    fn flush_port_and_compaction() {
        let f = Fdb::new(1000);
        for i in 0..800 {
            f.learn(0, mac(i), 1 + (i % 2), 0);
        }
        assert_eq!(f.flush_port(1), 400);
        assert_eq!(f.len(), 400);
        assert!(f.entries().iter().all(|e| e.port == 2));
        assert_eq!(f.age(1000, 300), 400);
        assert!(f.is_empty());
        assert!(!f.needs_compaction());
        // Churn through distinct MACs until dead keys fill the table.
        let mut i = 10_000;
        while !f.needs_compaction() {
            assert_ne!(f.learn(0, mac(i), 1, 2000), Learn::TableFull);
            f.age(3000, 300);
            i += 1;
        }
        let g = f.rebuilt(1000);
        assert!(!g.needs_compaction());
    }

    #[test]
    fn table_full_is_reported_not_looped() {
        let f = Fdb::new(1024);
        let cap = 2048usize;
        let mut full = false;
        for i in 0..(cap as u32 * 2) {
            match f.learn(0, mac(i), 1, 0) {
                Learn::Added => {
                    f.age(1000, 1);
                }
                Learn::TableFull => {
                    full = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(full);
        assert_eq!(f.lookup(0, mac(u32::MAX), 0, 300), None);
    }

    #[test]
    fn concurrent_learning_respects_the_limit() {
        let f = std::sync::Arc::new(Fdb::new(5000));
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let f = f.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u32 {
                        f.learn(0, mac(i * 4 + t), 1, 0);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(f.len(), 5000);
        assert_eq!(f.entries().len(), 5000);
    }

    #[test]
    fn static_entries_stay_put_and_remotes_flush_alone() {
        let f = Fdb::new(4);
        assert!(f.set_static(0, mac(1), dest(3, 2)));
        assert_eq!(f.lookup(0, mac(1), 1000, 10), Some(dest(3, 2)));
        // Learning does not move it, aging does not clear it.
        assert_eq!(f.learn(0, mac(1), 5, 1000), Learn::Known);
        assert_eq!(f.age(100_000, 10), 0);
        assert_eq!(f.lookup(0, mac(1), 100_000, 10), Some(dest(3, 2)));
        // Rebuilding keeps it.
        let g = f.rebuilt(4);
        assert_eq!(g.lookup(0, mac(1), 5, 10), Some(dest(3, 2)));
        assert!(g.entries()[0].is_static());
        // Learned entries behind two remotes of one tunnel port.
        f.learn(0, mac(2), dest(3, 1), 5);
        f.learn(0, mac(3), dest(3, 2), 5);
        assert_eq!(f.flush_remote(3, 1), 1);
        assert_eq!(f.lookup(0, mac(3), 5, 10), Some(dest(3, 2)));
        assert!(f.remove_static(0, mac(1)));
        assert!(
            !f.remove_static(0, mac(3)),
            "learned entries are not static"
        );
        assert_eq!(f.flush_port(3), 1);
        assert!(f.is_empty());
        assert_eq!(port_of(dest(7, 9)), 7);
        assert_eq!(remote_of(dest(7, 9)), 9);
    }
}
