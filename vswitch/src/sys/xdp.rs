//! AF_XDP through raw syscalls: one XSK socket on queue 0 of an interface, its UMEM and
//! four rings, and the XDP program that hands it every frame (an XSKMAP lookup on the
//! receive queue, `XDP_PASS` when nothing is bound there).
//!
//! No libbpf/libxdp: the program is five instructions built here, the map is made with
//! `BPF_MAP_CREATE` and the program is attached with `BPF_LINK_CREATE`, so the kernel
//! detaches it when the link's descriptor closes — when the port goes, or the daemon
//! dies, even by `kill -9`. Native (driver) mode only: generic XDP would cost more than
//! the AF_PACKET socket it replaces, so an interface without native XDP is refused and
//! the port falls back. Copy mode: veth has no zero-copy.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::cvt;

/// Bytes per UMEM chunk; a received frame starts `XDP_PACKET_HEADROOM` (256) in, so
/// frames up to 1792 bytes fit.
pub const CHUNK: usize = 2048;
/// Largest frame a chunk can receive.
pub const RX_FRAME_MAX: usize = CHUNK - 256;
/// Chunks lent to the kernel for receiving (the fill and RX rings hold as many): with
/// 1024, a busy 2-core machine dropped 1.5% of a TCP stream's frames on a full RX ring
/// while the worker waited for a core.
const RX_CHUNKS: u32 = 2048;
/// Chunks for sending (the TX and completion rings hold as many).
pub const TX_CHUNKS: u32 = 512;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

/// A `union bpf_attr`, zeroed, 8-byte aligned; fields are written at their offsets.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32(mut self, off: usize, v: u32) -> Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, off: usize, v: u64) -> Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

/// `bpf(cmd, attr)`; a returned descriptor is owned by the caller.
fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_int> {
    // SAFETY: `attr` is a valid, writable `bpf_attr`-sized buffer for the call; every
    // pointer stored in it points at memory the caller keeps alive across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    cvt(r as libc::c_int)
}

fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
fn redirect_program(map_fd: RawFd) -> [Insn; 6] {
    [
        // r2 = *(u32 *)(r1 + offsetof(struct xdp_md, rx_queue_index))
        insn(0x61, 2, 1, 16, 0),
        // r1 = the map (a 64-bit immediate over two slots)
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        // r3 = XDP_PASS: what the helper returns when no socket is at that queue
        insn(0xb7, 3, 0, 0, XDP_PASS),
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        insn(0x95, 0, 0, 0, 0),
    ]
}

/// The XSKMAP and the program, attached to an interface for as long as this lives.
struct Program {
    _map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl Program {
    /// Makes the map with `sock` at queue 0, loads the program and attaches it to
    /// `ifindex` in native mode.
    fn attach(ifindex: u32, sock: RawFd) -> io::Result<Program> {
        let map = owned(
            bpf(
                BPF_MAP_CREATE,
                &mut Attr::new()
                    .u32(0, BPF_MAP_TYPE_XSKMAP)
                    .u32(4, 4)
                    .u32(8, 4)
                    .u32(12, 1),
            )
            .map_err(|e| with_context(e, "creating the XSKMAP"))?,
        );
        let key: u32 = 0;
        let value: u32 = sock as u32;
        bpf(
            BPF_MAP_UPDATE_ELEM,
            &mut Attr::new()
                .u32(0, map.as_raw_fd() as u32)
                .u64(8, &key as *const u32 as u64)
                .u64(16, &value as *const u32 as u64),
        )
        .map_err(|e| with_context(e, "adding the socket to the XSKMAP"))?;
        let insns = redirect_program(map.as_raw_fd());
        let license = b"GPL\0";
        let prog = owned(
            bpf(
                BPF_PROG_LOAD,
                &mut Attr::new()
                    .u32(0, BPF_PROG_TYPE_XDP)
                    .u32(4, insns.len() as u32)
                    .u64(8, insns.as_ptr() as u64)
                    .u64(16, license.as_ptr() as u64)
                    .u32(68, BPF_XDP),
            )
            .map_err(|e| with_context(e, "loading the XDP program"))?,
        );
        let link = owned(
            bpf(
                BPF_LINK_CREATE,
                &mut Attr::new()
                    .u32(0, prog.as_raw_fd() as u32)
                    .u32(4, ifindex)
                    .u32(8, BPF_XDP)
                    .u32(12, XDP_FLAGS_DRV_MODE),
            )
            .map_err(|e| with_context(e, "attaching XDP in native mode"))?,
        );
        Ok(Program {
            _map: map,
            _prog: prog,
            _link: link,
        })
    }
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// An anonymous or ring mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize, pgoff: libc::off_t) -> io::Result<Mapping> {
        let (flags, fd) = if fd < 0 {
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
        } else {
            (libc::MAP_SHARED | libc::MAP_POPULATE, fd)
        };
        // SAFETY: a fresh mapping at an address the kernel picks; nothing aliases it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p.cast())
            .map(|ptr| Mapping { ptr, len })
            .ok_or_else(|| io::Error::other("mmap returned null"))
    }
}

// SAFETY: a mapping is an owned region of memory; what reads and writes it (the rings,
// the UMEM halves) synchronises on its own.
unsafe impl Send for Mapping {}
// SAFETY: as above: `Mapping` itself only unmaps, on drop.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made with this address and length and is unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One of the socket's shared rings of `T` (a `u64` address on the fill and completion
/// rings, an [`XdpDesc`] on RX and TX). This side owns one index, the kernel the other.
struct Ring<T> {
    _map: Mapping,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    _t: PhantomData<T>,
}

/// `struct xdp_desc`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

impl<T: Copy> Ring<T> {
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, entries: u32, pgoff: u64) -> io::Result<Self> {
        let len = off.desc as usize + entries as usize * std::mem::size_of::<T>();
        let map = Mapping::new(fd, len, pgoff as libc::off_t)?;
        let at = |o: u64| -> io::Result<NonNull<u8>> {
            if o as usize >= len {
                return Err(io::Error::other("ring offsets outside the mapping"));
            }
            // SAFETY: `o` is inside the mapping, checked above.
            Ok(unsafe { map.ptr.add(o as usize) })
        };
        let producer = at(off.producer)?.cast();
        let consumer = at(off.consumer)?.cast();
        let descs = at(off.desc)?.cast();
        Ok(Ring {
            _map: map,
            producer,
            consumer,
            descs,
            mask: entries - 1,
            _t: PhantomData,
        })
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: the index is a 4-aligned u32 inside the live mapping, shared with the
        // kernel, which is why it is only ever touched atomically.
        unsafe { self.producer.as_ref() }
    }

    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as for `prod`.
        unsafe { self.consumer.as_ref() }
    }

    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: `idx & mask` < entries, and the mapping holds `entries` descriptors
        // from `descs`.
        unsafe { self.descs.as_ptr().add((idx & self.mask) as usize) }
    }

    /// Producer side: free slots.
    fn room(&self) -> u32 {
        let prod = self.prod().load(Ordering::Relaxed);
        let cons = self.cons().load(Ordering::Acquire);
        (self.mask + 1).wrapping_sub(prod.wrapping_sub(cons))
    }

    /// Producer side: writes `v` `i` slots past the producer index (not yet published).
    fn put(&mut self, i: u32, v: T) {
        let idx = self.prod().load(Ordering::Relaxed).wrapping_add(i);
        // SAFETY: the caller checked `room`, so the kernel is not reading this slot.
        unsafe { self.slot(idx).write(v) };
    }

    /// Producer side: hands `n` written slots to the kernel.
    fn publish(&mut self, n: u32) {
        let p = self.prod().load(Ordering::Relaxed);
        self.prod().store(p.wrapping_add(n), Ordering::Release);
    }

    /// Consumer side: slots ready to read.
    fn ready(&self) -> u32 {
        let prod = self.prod().load(Ordering::Acquire);
        prod.wrapping_sub(self.cons().load(Ordering::Relaxed))
    }

    /// Consumer side: the `i`-th ready slot.
    fn get(&self, i: u32) -> T {
        let idx = self.cons().load(Ordering::Relaxed).wrapping_add(i);
        // SAFETY: `i` < `ready()`: the kernel wrote this slot and will not touch it
        // until the consumer index passes it.
        unsafe { self.slot(idx).read() }
    }

    /// Consumer side: gives `n` read slots back.
    fn release(&mut self, n: u32) {
        let c = self.cons().load(Ordering::Relaxed);
        self.cons().store(c.wrapping_add(n), Ordering::Release);
    }

    /// Producer side: the kernel has consumed everything published.
    fn drained(&self) -> bool {
        self.prod().load(Ordering::Relaxed) == self.cons().load(Ordering::Acquire)
    }
}

/// The receive half: frames come on the RX ring, their chunks go back on the fill ring.
pub struct RxRings {
    rx: Ring<XdpDesc>,
    fill: Ring<u64>,
    umem: NonNull<u8>,
}

/// The transmit half: frames go on the TX ring in free chunks, which come back on the
/// completion ring once the kernel has copied them.
pub struct TxRings {
    tx: Ring<XdpDesc>,
    comp: Ring<u64>,
    umem: NonNull<u8>,
    free: Vec<u64>,
    /// Descriptors written but not yet published.
    staged: u32,
    fd: RawFd,
}

// SAFETY: the rings point into mappings owned by the same `Xsk`, which outlives them;
// each half is only used under its own lock, and the halves touch disjoint chunks of
// the UMEM (RX chunks below `RX_CHUNKS`, TX chunks above).
unsafe impl Send for RxRings {}
// SAFETY: as for `RxRings`.
unsafe impl Send for TxRings {}

/// An AF_XDP socket bound to queue 0 of one interface, with its program attached.
pub struct Xsk {
    // Field order is drop order: detach the program first, then the rings, the socket
    // and last the UMEM the kernel may still be reading.
    _prog: Program,
    rx: Mutex<RxRings>,
    tx: Mutex<TxRings>,
    sock: OwnedFd,
    _umem: Mapping,
}

impl Xsk {
    /// Opens a socket on `ifindex`, queue 0, and attaches the redirecting program.
    pub fn open(ifindex: u32) -> io::Result<Xsk> {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let fd = cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })
            .map_err(|e| with_context(e, "AF_XDP socket"))?;
        let sock = owned(fd);
        let umem_len = (RX_CHUNKS + TX_CHUNKS) as usize * CHUNK;
        let umem = Mapping::new(-1, umem_len, 0)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: umem_len as u64,
            chunk_size: CHUNK as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(fd, libc::XDP_UMEM_REG, &reg).map_err(|e| with_context(e, "UMEM"))?;
        setsockopt(fd, libc::XDP_UMEM_FILL_RING, &(RX_CHUNKS as libc::c_int))?;
        setsockopt(
            fd,
            libc::XDP_UMEM_COMPLETION_RING,
            &(TX_CHUNKS as libc::c_int),
        )?;
        setsockopt(fd, libc::XDP_RX_RING, &(RX_CHUNKS as libc::c_int))?;
        setsockopt(fd, libc::XDP_TX_RING, &(TX_CHUNKS as libc::c_int))?;
        // SAFETY: plain old data; all-zero is valid.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` is writable for `len` bytes and `len` is passed by pointer.
        cvt(unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        })?;
        let rx = Ring::map(fd, &off.rx, RX_CHUNKS, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = Ring::map(fd, &off.tx, TX_CHUNKS, libc::XDP_PGOFF_TX_RING as u64)?;
        let mut fill = Ring::map(fd, &off.fr, RX_CHUNKS, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let comp = Ring::map(fd, &off.cr, TX_CHUNKS, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
        for i in 0..RX_CHUNKS {
            fill.put(i, u64::from(i) * CHUNK as u64);
        }
        fill.publish(RX_CHUNKS);
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: 0,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a valid sockaddr_xdp of the size passed.
        cvt(unsafe {
            libc::bind(
                fd,
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        })
        .map_err(|e| with_context(e, "binding the AF_XDP socket"))?;
        let prog = Program::attach(ifindex, fd)?;
        let free = (RX_CHUNKS..RX_CHUNKS + TX_CHUNKS)
            .map(|i| u64::from(i) * CHUNK as u64)
            .collect();
        Ok(Xsk {
            _prog: prog,
            rx: Mutex::new(RxRings {
                rx,
                fill,
                umem: umem.ptr,
            }),
            tx: Mutex::new(TxRings {
                tx,
                comp,
                umem: umem.ptr,
                free,
                staged: 0,
                fd,
            }),
            sock,
            _umem: umem,
        })
    }

    /// The socket's descriptor, readable when frames are on the RX ring.
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The receive half (only the port's owner reads, so this is never contended).
    pub fn rx(&self) -> MutexGuard<'_, RxRings> {
        self.rx.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The transmit half.
    pub fn tx(&self) -> MutexGuard<'_, TxRings> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frames the kernel dropped for want of room (RX ring full, no fill chunk, too
    /// long for a chunk), since the socket opened.
    pub fn rx_dropped(&self) -> u64 {
        // SAFETY: plain old data; all-zero is valid.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return 0;
        }
        st.rx_dropped + st.rx_ring_full
    }

    /// A pending socket error (the interface went away).
    pub fn take_error(&self) -> Option<io::Error> {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` is writable for `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (r == 0 && err != 0).then(|| io::Error::from_raw_os_error(err))
    }
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a valid `T` for the call and its size is passed exactly.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

impl RxRings {
    /// Hands up to `budget` received frames to `f`, then returns their chunks to the
    /// fill ring. Returns how many, and whether more are waiting.
    pub fn recv(&mut self, budget: u32, mut f: impl FnMut(&[u8])) -> (usize, bool) {
        let ready = self.rx.ready();
        let n = ready.min(budget);
        let umem_len = (RX_CHUNKS as usize) * CHUNK;
        for i in 0..n {
            let d = self.rx.get(i);
            let (start, len) = (d.addr as usize, d.len as usize);
            if start.checked_add(len).is_some_and(|end| end <= umem_len) {
                // SAFETY: the range is inside the RX part of the UMEM (checked), which
                // the kernel wrote before publishing the descriptor and does not touch
                // again until the chunk is back on the fill ring.
                f(unsafe { std::slice::from_raw_parts(self.umem.as_ptr().add(start), len) });
            }
        }
        // Every chunk taken off the RX ring goes straight back: the fill ring has room
        // for all RX chunks, so this never fails.
        for i in 0..n {
            let addr = self.rx.get(i).addr & !(CHUNK as u64 - 1);
            self.fill.put(i, addr);
        }
        self.fill.publish(n);
        self.rx.release(n);
        (n as usize, ready > n)
    }
}

impl TxRings {
    /// Takes back the chunks the kernel has finished sending.
    fn reap(&mut self) {
        let n = self.comp.ready();
        for i in 0..n {
            let a = self.comp.get(i) & !(CHUNK as u64 - 1);
            self.free.push(a);
        }
        self.comp.release(n);
    }

    /// Frames that can be staged now.
    pub fn room(&mut self) -> usize {
        self.reap();
        (self.free.len()).min(self.tx.room().saturating_sub(self.staged) as usize)
    }

    /// Copies `frame` into a free chunk and stages it; false when there is no room (the
    /// caller checks [`TxRings::room`] first) or it does not fit a chunk.
    pub fn stage(&mut self, frame: &[u8]) -> bool {
        if frame.len() > CHUNK || self.tx.room() <= self.staged {
            return false;
        }
        let Some(addr) = self.free.pop() else {
            return false;
        };
        // SAFETY: `addr` is a free TX chunk (above the RX part, not on the TX ring), so
        // neither the kernel nor the receive half reads it; `frame` fits the chunk.
        unsafe {
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                self.umem.as_ptr().add(addr as usize),
                frame.len(),
            )
        };
        self.tx.put(
            self.staged,
            XdpDesc {
                addr,
                len: frame.len() as u32,
                options: 0,
            },
        );
        self.staged += 1;
        true
    }

    /// Publishes what is staged and has the kernel send it: in copy mode it sends only
    /// inside `sendto`, a few dozen frames per call, so this loops until the ring is
    /// empty or the device pushes back.
    pub fn kick(&mut self) -> io::Result<()> {
        if self.staged > 0 {
            self.tx.publish(self.staged);
            self.staged = 0;
        }
        for _ in 0..64 {
            if self.tx.drained() {
                break;
            }
            // SAFETY: a zero-length send with no buffer and no address.
            let r = unsafe {
                libc::sendto(
                    self.fd,
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                    // The device's queue or the completion ring is full: what is on the
                    // ring goes with the next kick.
                    Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                        self.reap();
                        break;
                    }
                    _ => return Err(e),
                }
            }
        }
        self.reap();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_layout() {
        let p = redirect_program(7);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(p[1].imm, 7);
        assert_eq!(p[1].regs, 1 | (BPF_PSEUDO_MAP_FD << 4));
        assert_eq!(p[5].code, 0x95);
    }
}
