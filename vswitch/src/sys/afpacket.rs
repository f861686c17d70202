//! An AF_PACKET port socket: an mmap'ed RX ring, batched TX with `sendmmsg`, virtio-net
//! headers on both directions (PACKET_VNET_HDR) so TSO/GSO super-frames and partial
//! checksums pass intact, promiscuous, and blind to its own transmissions
//! (PACKET_IGNORE_OUTGOING). socket2 makes the socket; libc does what socket2 lacks.
//!
//! Two ring layouts ([`RingKind`]):
//! - **TPACKET_V3**: frames packed into large blocks; the kernel hands a block over when
//!   it is full or after a 1 ms timeout. Fewest wake-ups under load, but at low rates
//!   every frame waits up to that timeout (it is a millisecond floor on latency).
//! - **TPACKET_V2**: one 2 KiB slot per frame, handed over (and the worker woken) frame
//!   by frame, so a lone ping is forwarded at once. A super-frame that does not fit a
//!   slot is queued whole on the socket (PACKET_COPY_THRESH) and its slot says so
//!   (TP_STATUS_COPY); we read it with `recvmsg` at that point, so order is kept.
//!
//! A VLAN tag stripped by rx-vlan offload survives only in the ring's `tp_vlan_tci`;
//! [`RxFrame::vlan_tci`] hands it up so the caller can put it back.
//!
//! Rings start small ([`BLOCKS_IDLE`]) and grow to [`BLOCKS_BUSY`] the first time a port
//! shows load (a burst waiting in one turn, or a frame dropped because the ring was
//! full): a ring is mapped into our address space whole, so a host with hundreds of idle
//! containers would otherwise keep megabytes of empty ring per port. Every port socket is
//! alone in a fanout group whose program picks the member that receives. Growing makes a
//! second socket with the big ring on a short-lived thread (allocating the ring takes
//! milliseconds, while the small ring fills), joins it to the group, points the program
//! at it, and empties the old ring twice, 200 µs apart: no frame is doubled or reordered,
//! none the kernel steered to the old socket before that is lost.
//!
//! Frames are sent through a socket of their own ([`tx_socket`]), never polled while
//! the kernel takes what it is given: the kernel wakes a socket's pollers each time it
//! frees a frame sent through it (`sock_def_write_space`, epoll's callback under the
//! wait queue's lock: 4% of a worker's time forwarding 64-byte frames), and a worker
//! needs that only while it waits for room.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;

use socket2::{Domain, Protocol, Socket, Type};

use super::{cvt, setsockopt_int};
use crate::pool::{Buf, Pool, LARGE};
use crate::wire::vnet;

/// Size of one ring block; for V3 it must hold the largest GSO super-frame with headers.
const BLOCK_SIZE: u32 = 1 << 17;
/// Blocks in the ring of a port that has shown no load yet (256 KiB: 128 V2 slots).
pub const BLOCKS_IDLE: u32 = 2;
/// Blocks in the ring of a port that has (4 MiB: 2048 V2 slots).
pub const BLOCKS_BUSY: u32 = 32;
/// Frames read in one turn that make a small ring grow: an eighth of its V2 slots.
const GROW_AT_FRAMES: usize = 16;
/// Slot size: V2's real one; for V3 a nominal value the kernel checks.
const FRAME_SIZE: u32 = 2048;
/// V2 slots per block.
const SLOTS_PER_BLOCK: u32 = BLOCK_SIZE / FRAME_SIZE;
/// Largest frame a V2 `recvmsg` can bring in (a GSO super-frame plus its vnet header).
const COPY_MAX: usize = 65536 + 512;

/// Which RX ring layout a port uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingKind {
    /// One slot per frame; per-frame wake-ups, lowest latency.
    #[default]
    V2,
    /// Frames packed in blocks handed over when full or after 1 ms.
    V3,
}

/// A `--rx-ring` value that names no ring layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ring kind {0:?} (expected v2 or v3)")]
pub struct UnknownRingKind(pub String);

impl std::str::FromStr for RingKind {
    type Err = UnknownRingKind;
    fn from_str(s: &str) -> Result<Self, UnknownRingKind> {
        match s {
            "v2" | "V2" => Ok(RingKind::V2),
            "v3" | "V3" => Ok(RingKind::V3),
            _ => Err(UnknownRingKind(s.to_string())),
        }
    }
}
/// How long the kernel keeps a partly filled block before handing it over, in ms.
const RETIRE_TOV_MS: u32 = 1;
/// Most frames sent per `sendmmsg`.
pub const TX_BATCH: usize = 64;

/// What the ring hands up: a frame borrowed from it, or a super-frame read whole into a
/// pool buffer, which the receiver may keep (take it out of the `Option`) to send on
/// without another copy.
pub enum Rx<'a> {
    Frame(RxFrame<'a>),
    Owned {
        /// Virtio-net header followed by the frame.
        buf: &'a mut Option<Buf>,
        vlan: Option<(u16, u16)>,
    },
}

/// A frame that could not be read whole: counted as oversize by the receiver.
const CUT: RxFrame<'static> = RxFrame {
    vnet: &[0; vnet::LEN],
    frame: &[],
    vlan: None,
    truncated: true,
    ahead: &[],
};

/// One received frame, borrowed from the ring.
pub struct RxFrame<'a> {
    /// The virtio-net header in front of the frame.
    pub vnet: &'a [u8],
    /// The frame as captured.
    pub frame: &'a [u8],
    /// The VLAN tag (TPID, TCI) the receive path stripped, if any.
    pub vlan: Option<(u16, u16)>,
    /// The frame was longer than what the ring kept.
    pub truncated: bool,
    /// The next frame of the batch when the ring already holds it (else empty): the
    /// pipeline starts loading its destination's FDB slot while this one runs.
    pub ahead: &'a [u8],
}

/// An AF_PACKET socket bound to one interface.
pub struct AfPacket {
    /// The socket bound at open: frames are read from it until a grow moves reading to
    /// `grown`.
    sock: Socket,
    /// The socket with the big ring, once grown (the fanout group's receiving member).
    grown: Option<Socket>,
    /// The big ring's socket being made on another thread.
    preparing: Option<mpsc::Receiver<io::Result<Prepared>>>,
    /// The mapped ring; dangling when `blocks` is 0 (a ring that could not be re-made).
    ring: NonNull<u8>,
    /// Blocks in the ring now; 0 only after a failed grow.
    blocks: u32,
    kind: RingKind,
    /// Next block (V3) or slot (V2) to read.
    next: u32,
    ifindex: u32,
    /// Where V2 reads super-frames that did not fit a slot when no pool buffer is free;
    /// allocated the first time, so an idle port does not keep it.
    copy_buf: Vec<u8>,
    /// The ring should grow at the next read (the kernel reported it full).
    want_grow: bool,
    /// Growing failed once; the port keeps its small ring rather than retry per read.
    grow_failed: bool,
    /// Why the ring is gone, if growing it failed; the port is then taken down.
    failed: Option<io::ErrorKind>,
}

// SAFETY: the ring is a private MAP_SHARED mapping owned by this value alone; nothing
// else holds the pointer, so moving the owner to another thread is sound.
unsafe impl Send for AfPacket {}

impl AfPacket {
    /// Opens a port socket on interface `name` with an RX ring of layout `kind`.
    pub fn open(name: &str, kind: RingKind) -> io::Result<AfPacket> {
        let ifindex = super::iface::index(name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface named {name}"),
            )
        })?;
        let (sock, ring) = new_socket(kind, BLOCKS_IDLE)?;
        let fd = sock.as_raw_fd();
        let mut port = AfPacket {
            sock,
            ring,
            blocks: BLOCKS_IDLE,
            kind,
            next: 0,
            ifindex,
            copy_buf: Vec::new(),
            want_grow: false,
            grow_failed: false,
            grown: None,
            preparing: None,
            failed: None,
        };
        bind_promisc(fd, ifindex)?;
        // A fanout group of one, so that the ring can later move to a bigger socket of
        // the same group without losing or doubling a frame (see `grow`).
        if let Err(e) = join_fanout(fd, None) {
            // No way to grow later: grow now, while there is nothing to lose yet.
            tracing::debug!("afpacket: no fanout group ({e}); the ring starts full size");
            port.regrow_in_place();
        }
        Ok(port)
    }

    /// The ring layout.
    pub fn kind(&self) -> RingKind {
        self.kind
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// A pending socket error (ENETDOWN when the interface went down or vanished).
    pub fn take_error(&self) -> Option<io::Error> {
        self.sock.take_error().ok().flatten()
    }

    /// Blocks in the ring now.
    pub fn blocks(&self) -> u32 {
        self.blocks
    }

    /// Units the ring holds: blocks (V3) or slots (V2).
    fn units(&self) -> u32 {
        match self.kind {
            RingKind::V3 => self.blocks,
            RingKind::V2 => self.blocks * SLOTS_PER_BLOCK,
        }
    }

    fn block_ptr(&self, i: u32) -> *mut u8 {
        // SAFETY: i < self.blocks (callers index modulo `units`), so the offset stays
        // inside the mapping.
        unsafe { self.ring.as_ptr().add((i * BLOCK_SIZE) as usize) }
    }

    fn slot_ptr(&self, i: u32) -> *mut u8 {
        // SAFETY: i < units(), so block and slot offsets stay inside the mapping.
        unsafe {
            self.block_ptr(i / SLOTS_PER_BLOCK)
                .add(((i % SLOTS_PER_BLOCK) * FRAME_SIZE) as usize)
        }
    }

    /// The frame in the V2 slot after the current one when the kernel has filled it
    /// already (else empty): the current frame's look-ahead.
    fn v2_ahead(&self) -> &[u8] {
        let i = (self.next + 1) % self.units();
        let p = self.slot_ptr(i);
        // SAFETY: as in `status`, the slot's first word, 4-byte aligned in the mapping,
        // shared with the kernel and only accessed atomically.
        let st = unsafe { AtomicU32::from_ptr(p.cast::<u32>()) }.load(Ordering::Acquire);
        if st & libc::TP_STATUS_USER == 0 || st & libc::TP_STATUS_COPY != 0 {
            return &[];
        }
        // SAFETY: the slot is ours (TP_STATUS_USER): the kernel does not write it until
        // it is handed back, after it is read in its own turn; FRAME_SIZE bytes of
        // initialised memory in the mapping, which lives as long as `self`.
        let slot = unsafe { std::slice::from_raw_parts(p as *const u8, FRAME_SIZE as usize) };
        parse_slot(slot, st).map_or(&[], |fr| fr.frame)
    }

    /// The status word the kernel and we hand the next block (V3) or slot (V2) over by.
    fn status(&self) -> &AtomicU32 {
        let p = match self.kind {
            // tpacket_hdr_v1.block_status sits at offset 8 of the block descriptor.
            // SAFETY: offset 8 is inside the block.
            RingKind::V3 => unsafe { self.block_ptr(self.next).add(8) },
            // tpacket2_hdr.tp_status is the slot's first word.
            RingKind::V2 => self.slot_ptr(self.next),
        };
        // SAFETY: the word is 4-byte aligned inside the mapping, lives as long as `self`,
        // and is shared with the kernel, so it is only ever accessed atomically.
        unsafe { AtomicU32::from_ptr(p.cast::<u32>()) }
    }

    /// True if a frame (V2) or block (V3) is ready to read.
    pub fn rx_ready(&self) -> bool {
        self.blocks > 0 && self.status().load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// Why the ring is gone, if re-making it failed.
    pub fn failed(&self) -> Option<io::Error> {
        self.failed
            .map(|k| io::Error::new(k, "cannot re-make the receive ring"))
    }

    /// Hands up to `budget` ready frames (V2) or blocks (V3) to `f`; returns frames seen.
    /// Super-frames (V2) are read into `spare`, refilled from `pool` whenever `f` keeps it.
    /// A small ring under load starts growing here, and switches once the big one is
    /// ready; `rearm` is then set to the descriptor frames now arrive on, which the caller
    /// must add to its poller.
    pub fn rx(
        &mut self,
        budget: usize,
        pool: &Pool,
        spare: &mut Option<Buf>,
        rearm: &mut Option<RawFd>,
        mut f: impl FnMut(Rx<'_>),
    ) -> usize {
        let mut n = 0;
        for _ in 0..budget {
            match self.take_one(pool, spare, &mut f) {
                Some(k) => n += k,
                None => break,
            }
        }
        if let Some(ready) = &self.preparing {
            match ready.try_recv() {
                Ok(Ok(p)) => {
                    self.preparing = None;
                    n += self.switch(p, pool, spare, &mut f);
                    if let Some(g) = &self.grown {
                        *rearm = Some(g.as_raw_fd());
                    }
                }
                Ok(Err(e)) => self.give_up_growing(&e),
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.give_up_growing(&io::Error::other("the thread making it stopped"))
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
        } else if self.blocks < BLOCKS_BUSY
            && !self.grow_failed
            // A burst waiting at once: the small ring must still have room while the
            // big one is made.
            && (self.want_grow || n >= GROW_AT_FRAMES)
        {
            self.want_grow = false;
            if let Err(e) = self.start_growing() {
                self.give_up_growing(&e);
            }
        }
        n
    }

    /// Starts making the big ring's socket, on a thread of its own.
    fn start_growing(&mut self) -> io::Result<()> {
        let group = fanout_group(self.sock.as_raw_fd())?;
        let (kind, ifindex) = (self.kind, self.ifindex);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("afpacket-grow".into())
            .spawn(move || {
                // A closed port no longer listens: `Prepared` then unmaps as it drops.
                let _ = tx.send(prepare(kind, ifindex, group));
            })?;
        self.preparing = Some(rx);
        Ok(())
    }

    fn give_up_growing(&mut self, e: &io::Error) {
        self.preparing = None;
        self.grow_failed = true;
        tracing::warn!(
            ifindex = self.ifindex,
            "afpacket: cannot grow the receive ring, keeping the small one: {e}"
        );
    }

    /// Makes the prepared socket the receiving one; returns the frames handed up while
    /// emptying the old ring.
    fn switch(
        &mut self,
        mut p: Prepared,
        pool: &Pool,
        spare: &mut Option<Buf>,
        f: &mut impl FnMut(Rx<'_>),
    ) -> usize {
        let (Some(sock), Some(ring)) = (p.sock.take(), p.ring.take()) else {
            return 0;
        };
        // Member 0 is the first socket, member 1 the prepared one.
        if let Err(e) = set_fanout_target(sock.as_raw_fd(), 1) {
            p.ring = Some(ring);
            self.give_up_growing(&e);
            return 0;
        }
        // Whatever the old socket was given before the switch is in its ring now, or is
        // being written there on another CPU this very microsecond: read, wait a
        // moment, read again.
        let mut n = 0;
        while let Some(k) = self.take_one(pool, spare, f) {
            n += k;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
        while let Some(k) = self.take_one(pool, spare, f) {
            n += k;
        }
        // SAFETY: unmapping exactly the current mapping of `self.blocks` blocks, once; it
        // is replaced right below. The kernel keeps the small ring with the first socket.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), ring_len(self.blocks)) };
        self.ring = ring;
        self.blocks = BLOCKS_BUSY;
        self.next = 0;
        self.grown = Some(sock);
        tracing::info!(
            ifindex = self.ifindex,
            "afpacket: receive ring grown to {} KiB under load",
            ring_len(BLOCKS_BUSY) >> 10
        );
        n
    }

    /// The socket frames are read from.
    fn rx_sock(&self) -> &Socket {
        self.grown.as_ref().unwrap_or(&self.sock)
    }

    /// Hands up the next ready block (V3) or slot (V2), if any; returns its frame count.
    fn take_one(
        &mut self,
        pool: &Pool,
        spare: &mut Option<Buf>,
        f: &mut impl FnMut(Rx<'_>),
    ) -> Option<usize> {
        if self.blocks == 0 {
            return None;
        }
        let status = self.status();
        let st = status.load(Ordering::Acquire);
        if st & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let mut n = 0;
        match self.kind {
            RingKind::V3 => {
                let base = self.block_ptr(self.next);
                // SAFETY: the block is ours (TP_STATUS_USER) until we hand it back
                // below; it is BLOCK_SIZE bytes of initialised memory in the mapping.
                let blk =
                    unsafe { std::slice::from_raw_parts(base as *const u8, BLOCK_SIZE as usize) };
                n += walk_block(blk, &mut |fr| f(Rx::Frame(fr)));
            }
            RingKind::V2 => {
                let base = self.slot_ptr(self.next);
                // SAFETY: the slot is ours until handed back below; FRAME_SIZE bytes of
                // initialised memory in the mapping.
                let slot =
                    unsafe { std::slice::from_raw_parts(base as *const u8, FRAME_SIZE as usize) };
                if st & libc::TP_STATUS_COPY != 0 {
                    // The whole frame waits on the socket queue, in ring order. Read it
                    // into a pool buffer if there is one, so it can go out as is.
                    n += 1;
                    let vlan = slot_vlan(slot, st);
                    if spare.is_none() {
                        *spare = pool.get(LARGE);
                    }
                    match spare.as_mut() {
                        Some(b) => match recv_copy(self.rx_sock(), b.spare()) {
                            Some(len) if len >= vnet::LEN => {
                                b.set_len(len);
                                f(Rx::Owned { buf: spare, vlan });
                            }
                            _ => f(Rx::Frame(CUT)),
                        },
                        // No pool buffer free: read into our own, for the receiver to copy.
                        None => {
                            if self.copy_buf.is_empty() {
                                self.copy_buf = vec![0u8; COPY_MAX];
                            }
                            let sock = self.grown.as_ref().unwrap_or(&self.sock);
                            match recv_copy(sock, &mut self.copy_buf) {
                                Some(len) if len >= vnet::LEN => {
                                    let (vnet_hdr, frame) =
                                        self.copy_buf[..len].split_at(vnet::LEN);
                                    f(Rx::Frame(RxFrame {
                                        vnet: vnet_hdr,
                                        frame,
                                        vlan,
                                        truncated: false,
                                        ahead: &[],
                                    }));
                                }
                                _ => f(Rx::Frame(CUT)),
                            }
                        }
                    }
                } else if let Some(mut fr) = parse_slot(slot, st) {
                    fr.ahead = self.v2_ahead();
                    f(Rx::Frame(fr));
                    n += 1;
                }
            }
        }
        self.status()
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % self.units();
        Some(n)
    }

    /// Re-makes the ring at full size on the same socket, for a port that cannot join a
    /// fanout group; only right after opening, when there is nothing to lose yet.
    fn regrow_in_place(&mut self) {
        let fd = self.sock.as_raw_fd();
        self.unmap();
        match map_ring(fd, self.kind, BLOCKS_BUSY)
            .map(|r| (r, BLOCKS_BUSY))
            .or_else(|_| map_ring(fd, self.kind, BLOCKS_IDLE).map(|r| (r, BLOCKS_IDLE)))
        {
            Ok((ring, blocks)) => {
                self.ring = ring;
                self.blocks = blocks;
            }
            Err(e) => self.failed = Some(e.kind()),
        }
        self.next = 0;
        self.grow_failed = true;
        // Frames that came while there was no ring waited on the socket queue.
        for _ in 0..1 << 16 {
            if !discard_one(fd) {
                break;
            }
        }
    }

    /// Unmaps the ring and frees it in the kernel (a zero-block request).
    fn unmap(&mut self) {
        if self.blocks == 0 {
            return;
        }
        // SAFETY: unmapping exactly the mapping made for `self.blocks` blocks, once; the
        // pointer is not used again until replaced.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), ring_len(self.blocks)) };
        self.blocks = 0;
        self.ring = NonNull::dangling();
        let _ = request_ring(self.sock.as_raw_fd(), self.kind, 0);
    }

    /// Frames the kernel dropped because the ring was full, since the last call; a small
    /// ring that dropped grows at the next read.
    pub fn ring_drops(&mut self) -> u64 {
        let mut d = socket_drops(&self.sock);
        if let Some(g) = &self.grown {
            d += socket_drops(g);
        }
        if d > 0 && self.blocks < BLOCKS_BUSY {
            self.want_grow = true;
        }
        d
    }
}

impl AsRawFd for AfPacket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl Drop for AfPacket {
    fn drop(&mut self) {
        if self.blocks > 0 {
            // SAFETY: unmapping exactly the mapping of `self.blocks` blocks, once.
            unsafe { libc::munmap(self.ring.as_ptr().cast(), ring_len(self.blocks)) };
        }
    }
}

/// Bytes in a ring of `blocks` blocks.
fn ring_len(blocks: u32) -> usize {
    BLOCK_SIZE as usize * blocks as usize
}

/// Asks the kernel for a ring of `blocks` blocks (0 frees the current one).
fn request_ring(fd: RawFd, kind: RingKind, blocks: u32) -> io::Result<()> {
    // V2 reads the first four fields of the same request and ignores the rest.
    let req = libc::tpacket_req3 {
        tp_block_size: if blocks == 0 { 0 } else { BLOCK_SIZE },
        tp_block_nr: blocks,
        tp_frame_size: if blocks == 0 { 0 } else { FRAME_SIZE },
        tp_frame_nr: blocks * SLOTS_PER_BLOCK,
        tp_retire_blk_tov: RETIRE_TOV_MS,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    let req_len = match kind {
        RingKind::V2 => std::mem::size_of::<libc::tpacket_req>(),
        RingKind::V3 => std::mem::size_of::<libc::tpacket_req3>(),
    };
    // SAFETY: `req` is a valid tpacket_req3, whose prefix is a tpacket_req; `req_len`
    // is at most its size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            (&req as *const libc::tpacket_req3).cast(),
            req_len as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Makes a ring of `blocks` blocks for socket `fd` and maps it.
fn map_ring(fd: RawFd, kind: RingKind, blocks: u32) -> io::Result<NonNull<u8>> {
    request_ring(fd, kind, blocks)?;
    // SAFETY: mapping the ring the kernel just allocated for this socket; the result
    // is checked against MAP_FAILED before use.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ring_len(blocks),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        let _ = request_ring(fd, kind, 0);
        return Err(e);
    }
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// A socket with a mapped ring of [`BLOCKS_BUSY`] blocks, unmapped when dropped unless
/// the ring is taken.
struct Prepared {
    sock: Option<Socket>,
    ring: Option<NonNull<u8>>,
}

// SAFETY: the mapping belongs to this value alone until taken; moving it to another
// thread moves that ownership with it.
unsafe impl Send for Prepared {}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.take() {
            // SAFETY: the mapping made for this value and never handed out.
            unsafe { libc::munmap(ring.as_ptr().cast(), ring_len(BLOCKS_BUSY)) };
        }
    }
}

/// Makes the big ring's socket for interface `ifindex` and joins it to fanout group
/// `group`, where it receives nothing until the group's program picks it.
fn prepare(kind: RingKind, ifindex: u32, group: u16) -> io::Result<Prepared> {
    let (sock, ring) = new_socket(kind, BLOCKS_BUSY)?;
    let fd = sock.as_raw_fd();
    let p = Prepared {
        sock: Some(sock),
        ring: Some(ring),
    };
    // Bound but not yet in the group, it would take a copy of every frame.
    set_drop_all(fd, true)?;
    bind_promisc(fd, ifindex)?;
    join_fanout(fd, Some(group))?;
    set_drop_all(fd, false)?;
    Ok(p)
}

/// Frames socket `sock` dropped because its ring was full, since the last call.
fn socket_drops(sock: &Socket) -> u64 {
    // SAFETY: tpacket_stats_v3 is plain old data.
    let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `st` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats_v3).cast(),
            &mut len,
        )
    };
    if r < 0 {
        0
    } else {
        u64::from(st.tp_drops)
    }
}

/// A packet socket of ring layout `kind`, not yet bound (protocol 0: it receives
/// nothing), with a mapped ring of `blocks` blocks.
fn new_socket(kind: RingKind, blocks: u32) -> io::Result<(Socket, NonNull<u8>)> {
    let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
    let fd = sock.as_raw_fd();
    let version = match kind {
        RingKind::V2 => libc::tpacket_versions::TPACKET_V2,
        RingKind::V3 => libc::tpacket_versions::TPACKET_V3,
    };
    setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VERSION, version as i32)?;
    setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
    setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
    if kind == RingKind::V2 {
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_COPY_THRESH, 1)?;
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20)
            .or_else(|_| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20));
    }
    let ring = map_ring(fd, kind, blocks)?;
    Ok((sock, ring))
}

/// A socket that only sends, on interface `ifindex` (frames behind their virtio-net
/// header, through [`send_mmsg`]): bound with protocol 0, so the kernel hands it no
/// frame.
pub fn tx_socket(ifindex: u32) -> io::Result<Socket> {
    let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
    let fd = sock.as_raw_fd();
    setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
    // veths have no qdisc worth going through; skipping it saves a lock per frame.
    setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
    // Room for a few batches of super-frames in flight.
    let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20)
        .or_else(|_| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20));
    bind_ll(fd, ifindex, 0)?;
    Ok(sock)
}

/// Binds socket `fd` to interface `ifindex` for EtherType `protocol` (host order; 0
/// receives nothing).
fn bind_ll(fd: RawFd, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid before we fill it.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
    cvt(unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Binds socket `fd` to every protocol on interface `ifindex`, in promiscuous mode.
fn bind_promisc(fd: RawFd, ifindex: u32) -> io::Result<()> {
    bind_ll(fd, ifindex, libc::ETH_P_ALL as u16)?;
    let mreq = libc::packet_mreq {
        mr_ifindex: ifindex as i32,
        mr_type: libc::PACKET_MR_PROMISC as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: `mreq` is a valid packet_mreq and its exact size is passed. The
    // membership is dropped by the kernel when the socket closes.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// The fanout mode of a port's group: a classic BPF program picks the member.
/// PACKET_IGNORE_OUTGOING is a per-socket option the group's own hook does not see, so
/// the group carries it as a flag.
const FANOUT_TYPE: u32 = libc::PACKET_FANOUT_CBPF | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;

/// Joins bound socket `fd` to fanout group `id`, or to a new group with an id of the
/// kernel's choosing (`None`).
fn join_fanout(fd: RawFd, id: Option<u16>) -> io::Result<()> {
    let (id, flags) = match id {
        Some(id) => (u32::from(id), FANOUT_TYPE),
        None => (0, FANOUT_TYPE | libc::PACKET_FANOUT_FLAG_UNIQUEID),
    };
    setsockopt_int(
        fd,
        libc::SOL_PACKET,
        libc::PACKET_FANOUT,
        (id | flags << 16) as i32,
    )
}

/// The id of the fanout group socket `fd` is in.
fn fanout_group(fd: RawFd) -> io::Result<u16> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok((v & 0xffff) as u16)
}

/// Sets the program of `fd`'s fanout group: every frame to member `index`.
fn set_fanout_target(fd: RawFd, index: u32) -> io::Result<()> {
    set_cbpf(fd, libc::SOL_PACKET, libc::PACKET_FANOUT_DATA, index)
}

/// Installs the one-instruction classic BPF program `return k` as option `name`.
fn set_cbpf(fd: RawFd, level: libc::c_int, name: libc::c_int, k: u32) -> io::Result<()> {
    let mut insn = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: insn.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `insn`, both live across the call; the kernel copies them.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Attaches (or removes) a socket filter that accepts nothing (returns 0 bytes).
fn set_drop_all(fd: RawFd, on: bool) -> io::Result<()> {
    if on {
        set_cbpf(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, 0)
    } else {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, 0)
    }
}

/// Takes one frame off the socket's receive queue and throws it away; false if the
/// queue was empty.
fn discard_one(fd: RawFd) -> bool {
    let mut sink = [0u8; 1];
    // SAFETY: `sink` is valid for writes of its length for the duration of the call.
    let r = unsafe {
        libc::recv(
            fd,
            sink.as_mut_ptr().cast(),
            sink.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    r >= 0
}

/// Sends frames (each starting with its virtio-net header) with one `sendmmsg` per
/// [`TX_BATCH`]. Returns how many were taken: sent or refused by the kernel for that
/// frame alone (refusals are counted in `errors`). Stops early only when the socket
/// is full (`WouldBlock`), leaving the rest for later.
pub fn send_mmsg(fd: RawFd, frames: &[&[u8]], errors: &mut u64) -> io::Result<usize> {
    let mut done = 0;
    while done < frames.len() {
        let chunk = &frames[done..frames.len().min(done + TX_BATCH)];
        // SAFETY: iovec and mmsghdr are plain old data; zero is a valid initial value.
        let mut iov: [libc::iovec; TX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { std::mem::zeroed() };
        for (i, fr) in chunk.iter().enumerate() {
            iov[i].iov_base = fr.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = fr.len();
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..chunk.len()]` point at `iov`, which point at the caller's
        // frames; all outlive the call, and the kernel only reads them.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr(),
                chunk.len() as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => return Ok(done),
                // The first frame of the chunk was refused by itself (too big for
                // the MTU, bad GSO header, peer queue full): drop it, keep going.
                Some(libc::EMSGSIZE) | Some(libc::EINVAL) | Some(libc::ENOBUFS)
                | Some(libc::EPERM) => {
                    *errors += 1;
                    done += 1;
                }
                _ => return Err(e),
            }
        } else {
            done += r as usize;
        }
    }
    Ok(done)
}

/// Reads one queued super-frame (vnet header first); `None` if nothing was there.
fn recv_copy(sock: &Socket, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `buf` is valid for writes of its length for the duration of the call.
    let r = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    // MSG_TRUNC reports the real length: larger than the buffer means it was cut.
    (r > 0 && (r as usize) <= buf.len()).then_some(r as usize)
}

/// The stripped VLAN tag recorded in a V2 slot header.
fn slot_vlan(slot: &[u8], st: u32) -> Option<(u16, u16)> {
    if st & libc::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    // tpacket2_hdr: vlan_tci at 24, vlan_tpid at 26.
    let tci = rd_u16(slot, 24)?;
    let tpid = rd_u16(slot, 26)
        .filter(|&t| t != 0 && st & libc::TP_STATUS_VLAN_TPID_VALID != 0)
        .unwrap_or(crate::wire::vlan::TPID_8021Q);
    Some((tpid, tci))
}

/// The frame in a V2 slot. Offsets come from the kernel but are bounds-checked anyway.
fn parse_slot(slot: &[u8], st: u32) -> Option<RxFrame<'_>> {
    // tpacket2_hdr: status 0, len 4, snaplen 8, mac 12 (u16).
    let len = rd_u32(slot, 4)?;
    let snap = rd_u32(slot, 8)?;
    let mac = rd_u16(slot, 12)? as usize;
    let frame = slot.get(mac..mac.checked_add(snap as usize)?)?;
    let vnet_hdr = slot.get(mac.checked_sub(vnet::LEN)?..mac)?;
    Some(RxFrame {
        vnet: vnet_hdr,
        frame,
        vlan: slot_vlan(slot, st),
        truncated: snap < len,
        ahead: &[],
    })
}

fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn rd_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Walks the frames of one retired V3 block. Every offset comes from the kernel but is
/// still bounds-checked: a bad one ends the walk instead of reading outside the block.
/// Each frame is handed up with the next one as its `ahead`.
fn walk_block(blk: &[u8], f: &mut impl FnMut(RxFrame<'_>)) -> usize {
    // tpacket_block_desc: version u32, offset_to_priv u32, then tpacket_hdr_v1:
    // block_status, num_pkts, offset_to_first_pkt, blk_len.
    let (Some(num), Some(off)) = (rd_u32(blk, 12), rd_u32(blk, 16)) else {
        return 0;
    };
    let mut n = 0;
    let mut cur = if num > 0 { v3_frame(blk, off) } else { None };
    while let Some((mut fr, next)) = cur {
        n += 1;
        cur = match (n < num as usize, next) {
            (true, Some(at)) => v3_frame(blk, at),
            _ => None,
        };
        if let Some((after, _)) = &cur {
            fr.ahead = after.frame;
        }
        f(fr);
    }
    n
}

/// The V3 frame whose header is at `off` in `blk`, and where the next one's is.
fn v3_frame(blk: &[u8], off: u32) -> Option<(RxFrame<'_>, Option<u32>)> {
    let at = off as usize;
    // tpacket3_hdr: next_offset 0, sec 4, nsec 8, snaplen 12, len 16, status 20,
    // mac 24 (u16), net 26, hv1: rxhash 28, vlan_tci 32, vlan_tpid 36.
    let next = rd_u32(blk, at)?;
    let snap = rd_u32(blk, at + 12)?;
    let len = rd_u32(blk, at + 16)?;
    let st = rd_u32(blk, at + 20)?;
    let mac = rd_u16(blk, at + 24)?;
    let tci = rd_u32(blk, at + 32)?;
    let tpid = rd_u16(blk, at + 36)?;
    let start = at + mac as usize;
    let frame = blk.get(start..start + snap as usize)?;
    let vnet = blk.get(start.checked_sub(vnet::LEN)?..start)?;
    let vlan = (st & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
        // Old kernels leave the TPID out (TP_STATUS_VLAN_TPID_VALID unset): 802.1Q.
        let tpid = if st & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
            tpid
        } else {
            crate::wire::vlan::TPID_8021Q
        };
        (tpid, tci as u16)
    });
    let fr = RxFrame {
        vnet,
        frame,
        vlan,
        truncated: snap < len,
        ahead: &[],
    };
    let next = match next {
        0 => None,
        d => off.checked_add(d),
    };
    Some((fr, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    #[test]
    fn walks_a_well_formed_v3_block() {
        let mut blk = vec![0u8; 4096];
        put_u32(&mut blk, 12, 2); // num_pkts
        put_u32(&mut blk, 16, 48); // offset_to_first_pkt
        for (at, next, len) in [(48usize, 160u32, 60u32), (208, 0, 70)] {
            put_u32(&mut blk, at, next);
            put_u32(&mut blk, at + 12, len);
            put_u32(&mut blk, at + 16, len);
            blk[at + 24..at + 26].copy_from_slice(&80u16.to_ne_bytes());
        }
        let mut lens = vec![];
        assert_eq!(
            walk_block(&blk, &mut |f: RxFrame<'_>| lens.push((
                f.frame.len(),
                f.vnet.len(),
                f.ahead.len()
            ))),
            2
        );
        // Each frame comes with the next as its look-ahead; the last with none.
        assert_eq!(lens, vec![(60, vnet::LEN, 70), (70, vnet::LEN, 0)]);
    }

    proptest::proptest! {
        #[test]
        fn ring_parsers_never_read_outside_what_they_are_given(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            st in proptest::num::u32::ANY,
        ) {
            let mut seen = 0usize;
            walk_block(&bytes, &mut |f: RxFrame<'_>| seen += f.frame.len());
            if let Some(f) = parse_slot(&bytes, st) {
                proptest::prop_assert!(f.frame.len() <= bytes.len());
                proptest::prop_assert_eq!(f.vnet.len(), vnet::LEN);
            }
        }
    }
}
