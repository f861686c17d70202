//! Giving the heap's free pages back to the kernel. glibc keeps what a thread frees in
//! that thread's arena for its next allocations and returns only the top of each heap;
//! after a burst (a cluster of thousands of endpoints synced, a large `fdb-show`) that
//! left tens of MiB resident that nothing used again. The housekeeper asks a
//! [`Trimmer`] once a second: it reads the resident size, and trims only when that grew
//! by more than [`SLACK`] since the last look and the allocator holds that much free.
//! Nothing on the hot path allocates, so the workers never wait on a trim.

/// Growth of the resident size (and free heap bytes) that is worth a trim: small, so
/// that the tail of a burst goes back too; a daemon whose size does not grow never
/// trims.
pub const SLACK: usize = 1 << 20;

/// The resident size at the last trim, or the lowest seen since.
#[derive(Debug)]
pub struct Trimmer {
    floor: usize,
}

impl Default for Trimmer {
    fn default() -> Self {
        Trimmer {
            floor: resident().unwrap_or(0),
        }
    }
}

impl Trimmer {
    /// Gives the heap's free pages back if the resident size grew by more than
    /// [`SLACK`] and as much of the heap is free; returns the resident sizes before
    /// and after when it did.
    pub fn tick(&mut self) -> Option<(usize, usize)> {
        let rss = resident()?;
        if rss < self.floor + SLACK {
            self.floor = self.floor.min(rss);
            return None;
        }
        if free_heap() < SLACK {
            // Grown with memory in use: the new normal.
            self.floor = rss;
            return None;
        }
        release();
        let after = resident().unwrap_or(rss);
        self.floor = after;
        Some((rss, after))
    }
}

/// The process's resident size, bytes (`VmRSS` of /proc/self/status).
pub fn resident() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: usize = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Bytes the allocator holds free in its arenas.
#[cfg(target_env = "gnu")]
fn free_heap() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics, under its own locks.
    unsafe { libc::mallinfo2() }.fordblks
}

/// Gives the arenas' free pages back to the kernel.
#[cfg(target_env = "gnu")]
fn release() {
    // SAFETY: malloc_trim releases whole free pages of every arena, under each arena's
    // lock; memory in use is not touched.
    unsafe { libc::malloc_trim(0) };
}

// Other allocators return memory by themselves, or not at all.
#[cfg(not(target_env = "gnu"))]
fn free_heap() -> usize {
    0
}

#[cfg(not(target_env = "gnu"))]
fn release() {}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_env = "gnu")]
    fn freed_slack_is_given_back() {
        let mut t = super::Trimmer::default();
        // Many small blocks, nearly all freed: free space inside the heap that only a
        // trim gives back (a large block is mapped and unmapped on its own).
        let mut v: Vec<Vec<u8>> = (0..100_000).map(|_| vec![1u8; 400]).collect();
        let keep: Vec<Vec<u8>> = v.iter().step_by(64).cloned().collect();
        v.clear();
        v.shrink_to_fit();
        let (before, after) = t.tick().expect("40 MB freed and not trimmed");
        assert!(after + 2 * super::SLACK < before, "{before} -> {after}");
        drop(keep);
    }
}
