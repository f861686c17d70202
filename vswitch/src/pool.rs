//! Frame buffers, recycled so the forwarding path does not allocate per frame.
//!
//! Two size classes: most frames fit a small buffer; TSO/GSO super-frames (up to 64 KiB
//! plus the virtio-net header) need a large one. Each class has a hard cap on buffers
//! in existence, which bounds the switch's memory whatever arrives: when a class is
//! exhausted the frame is dropped and counted, never waited for.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam::queue::ArrayQueue;

/// Capacity of a small buffer: a 1500-byte-MTU frame with tags and the vnet header.
pub const SMALL: usize = 2048;
/// Capacity of a large buffer: the largest GSO super-frame plus headers.
pub const LARGE: usize = 65536 + 256;

/// A frame buffer: `data[..len]` holds the virtio-net header followed by the frame.
pub struct Buf {
    data: Box<[u8]>,
    len: usize,
    /// On a tunnel port's queue: the remote slot to send to (0: every remote).
    remote: u16,
}

impl Buf {
    /// The remote slot this frame goes to on a tunnel port (0: all of them).
    #[inline]
    pub fn remote(&self) -> u16 {
        self.remote
    }
    /// Sets the remote slot (see [`Buf::remote`]).
    #[inline]
    pub fn set_remote(&mut self, r: u16) {
        self.remote = r;
    }
    /// The filled part.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
    /// The filled part, mutable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }
    /// The whole capacity, for filling; call [`Buf::set_len`] after.
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.data
    }
    /// Sets the filled length (clamped to the capacity).
    #[inline]
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.data.len());
    }
    /// Capacity in bytes.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.data.len()
    }
    /// Copies `parts` back to back into the buffer; false if they do not fit.
    #[inline]
    pub fn fill(&mut self, parts: &[&[u8]]) -> bool {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > self.data.len() {
            return false;
        }
        let mut at = 0;
        for p in parts {
            self.data[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        self.len = total;
        true
    }
}

struct Class {
    free: ArrayQueue<Buf>,
    made: AtomicUsize,
    max: usize,
    size: usize,
}

impl Class {
    fn new(size: usize, max: usize) -> Self {
        Class {
            free: ArrayQueue::new(max),
            made: AtomicUsize::new(0),
            max,
            size,
        }
    }
    fn get(&self) -> Option<Buf> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        // Allocation happens only while the pool warms up to its cap.
        if self.made.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.made.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Buf {
            data: vec![0u8; self.size].into_boxed_slice(),
            len: 0,
            remote: 0,
        })
    }
}

/// The shared buffer pool.
pub struct Pool {
    small: Class,
    large: Class,
}

impl Pool {
    /// A pool of at most `small` small and `large` large buffers.
    pub fn new(small: usize, large: usize) -> Self {
        Pool {
            small: Class::new(SMALL, small.max(1)),
            large: Class::new(LARGE, large.max(1)),
        }
    }

    /// A buffer that holds at least `len` bytes, or `None` if too big or exhausted.
    #[inline]
    pub fn get(&self, len: usize) -> Option<Buf> {
        if len <= SMALL {
            self.small.get().or_else(|| self.large.get())
        } else if len <= LARGE {
            self.large.get()
        } else {
            None
        }
    }

    /// Returns a buffer for reuse.
    #[inline]
    pub fn put(&self, mut b: Buf) {
        b.len = 0;
        b.remote = 0;
        let class = if b.data.len() == SMALL {
            &self.small
        } else {
            &self.large
        };
        if class.free.push(b).is_err() {
            // Cannot happen while buffers come only from this pool; if one does, let it go.
            class.made.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Buffers in existence (small, large).
    pub fn allocated(&self) -> (usize, usize) {
        (
            self.small.made.load(Ordering::Relaxed),
            self.large.made.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_caps() {
        let p = Pool::new(2, 1);
        let a = p.get(60).unwrap();
        let b = p.get(1500).unwrap();
        assert_eq!(a.capacity(), SMALL);
        // Small class exhausted: falls back to a large buffer, then nothing.
        let c = p.get(100).unwrap();
        assert_eq!(c.capacity(), LARGE);
        assert!(p.get(100).is_none());
        assert!(p.get(LARGE + 1).is_none());
        p.put(a);
        p.put(c);
        let big = p.get(30000).unwrap();
        assert_eq!(big.capacity(), LARGE);
        p.put(b);
        p.put(big);
        assert_eq!(p.allocated(), (2, 1));
    }

    #[test]
    fn fill_checks_capacity() {
        let p = Pool::new(1, 1);
        let mut b = p.get(10).unwrap();
        assert!(b.fill(&[&[1, 2], &[3]]));
        assert_eq!(b.bytes(), &[1, 2, 3]);
        assert!(!b.fill(&[&vec![0u8; SMALL + 1]]));
    }
}
