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

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

use super::{cvt, setsockopt_int};
use crate::pool::{Buf, Pool, LARGE};
use crate::wire::vnet;

/// Size of one ring block; for V3 it must hold the largest GSO super-frame with headers.
const BLOCK_SIZE: u32 = 1 << 17;
/// Blocks in the ring.
const BLOCK_NR: u32 = 32;
/// Slot size: V2's real one; for V3 a nominal value the kernel checks.
const FRAME_SIZE: u32 = 2048;
/// Slots in a V2 ring.
const FRAME_NR: u32 = BLOCK_SIZE / FRAME_SIZE * BLOCK_NR;
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
}

/// An AF_PACKET socket bound to one interface.
pub struct AfPacket {
    sock: Socket,
    ring: NonNull<u8>,
    ring_len: usize,
    kind: RingKind,
    /// Next block (V3) or slot (V2) to read.
    next: u32,
    ifindex: u32,
    /// Where V2 reads super-frames that did not fit a slot.
    copy_buf: Box<[u8]>,
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
        // Protocol 0: receive nothing until bind, so the ring starts clean.
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        let fd = sock.as_raw_fd();
        let version = match kind {
            RingKind::V2 => libc::tpacket_versions::TPACKET_V2,
            RingKind::V3 => libc::tpacket_versions::TPACKET_V3,
        };
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VERSION, version as i32)?;
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        // veths have no qdisc worth going through; skipping it saves a lock per frame.
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
        // Room for a few batches of super-frames in flight.
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20)
            .or_else(|_| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20));

        if kind == RingKind::V2 {
            setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_COPY_THRESH, 1)?;
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20)
                .or_else(|_| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20));
        }
        // V2 reads the first four fields of the same request and ignores the rest.
        let req = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE,
            tp_block_nr: BLOCK_NR,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: FRAME_NR,
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
        let ring_len = (BLOCK_SIZE * BLOCK_NR) as usize;
        // SAFETY: mapping the ring the kernel just allocated for this socket; the result
        // is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ring =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        let copy_buf = match kind {
            RingKind::V2 => vec![0u8; COPY_MAX].into_boxed_slice(),
            RingKind::V3 => Box::default(),
        };
        let port = AfPacket {
            sock,
            ring,
            ring_len,
            kind,
            next: 0,
            ifindex,
            copy_buf,
        };

        // SAFETY: sockaddr_ll is plain old data; all-zero is valid before we fill it.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
        cvt(unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
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

    fn block_ptr(&self, i: u32) -> *mut u8 {
        // SAFETY: i < BLOCK_NR, so the offset stays inside the mapping.
        unsafe { self.ring.as_ptr().add((i * BLOCK_SIZE) as usize) }
    }

    fn slot_ptr(&self, i: u32) -> *mut u8 {
        let per_block = BLOCK_SIZE / FRAME_SIZE;
        // SAFETY: i < FRAME_NR, so block and slot offsets stay inside the mapping.
        unsafe {
            self.block_ptr(i / per_block)
                .add(((i % per_block) * FRAME_SIZE) as usize)
        }
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
        self.status().load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// Hands up to `budget` ready frames (V2) or blocks (V3) to `f`; returns frames seen.
    /// Super-frames (V2) are read into `spare`, refilled from `pool` whenever `f` keeps it.
    pub fn rx(
        &mut self,
        budget: usize,
        pool: &Pool,
        spare: &mut Option<Buf>,
        mut f: impl FnMut(Rx<'_>),
    ) -> usize {
        let mut n = 0;
        for _ in 0..budget {
            let status = self.status();
            let st = status.load(Ordering::Acquire);
            if st & libc::TP_STATUS_USER == 0 {
                break;
            }
            match self.kind {
                RingKind::V3 => {
                    let base = self.block_ptr(self.next);
                    // SAFETY: the block is ours (TP_STATUS_USER) until we hand it back
                    // below; it is BLOCK_SIZE bytes of initialised memory in the mapping.
                    let blk = unsafe {
                        std::slice::from_raw_parts(base as *const u8, BLOCK_SIZE as usize)
                    };
                    n += walk_block(blk, &mut |fr| f(Rx::Frame(fr)));
                    self.status()
                        .store(libc::TP_STATUS_KERNEL, Ordering::Release);
                    self.next = (self.next + 1) % BLOCK_NR;
                }
                RingKind::V2 => {
                    let base = self.slot_ptr(self.next);
                    // SAFETY: the slot is ours until handed back below; FRAME_SIZE bytes of
                    // initialised memory in the mapping.
                    let slot = unsafe {
                        std::slice::from_raw_parts(base as *const u8, FRAME_SIZE as usize)
                    };
                    if st & libc::TP_STATUS_COPY != 0 {
                        // The whole frame waits on the socket queue, in ring order. Read it
                        // into a pool buffer if there is one, so it can go out as is.
                        n += 1;
                        let vlan = slot_vlan(slot, st);
                        if spare.is_none() {
                            *spare = pool.get(LARGE);
                        }
                        match spare.as_mut() {
                            Some(b) => match recv_copy(&self.sock, b.spare()) {
                                Some(len) if len >= vnet::LEN => {
                                    b.set_len(len);
                                    f(Rx::Owned { buf: spare, vlan });
                                }
                                _ => f(Rx::Frame(CUT)),
                            },
                            // No pool buffer free: read into our own, for the receiver to copy.
                            None => match recv_copy(&self.sock, &mut self.copy_buf) {
                                Some(len) if len >= vnet::LEN => {
                                    let (vnet_hdr, frame) =
                                        self.copy_buf[..len].split_at(vnet::LEN);
                                    f(Rx::Frame(RxFrame {
                                        vnet: vnet_hdr,
                                        frame,
                                        vlan,
                                        truncated: false,
                                    }));
                                }
                                _ => f(Rx::Frame(CUT)),
                            },
                        }
                    } else if let Some(fr) = parse_slot(slot, st) {
                        f(Rx::Frame(fr));
                        n += 1;
                    }
                    self.status()
                        .store(libc::TP_STATUS_KERNEL, Ordering::Release);
                    self.next = (self.next + 1) % FRAME_NR;
                }
            }
        }
        n
    }

    /// Sends frames; see [`send_mmsg`].
    pub fn send(&self, frames: &[&[u8]], errors: &mut u64) -> io::Result<usize> {
        send_mmsg(self.sock.as_raw_fd(), frames, errors)
    }

    /// Frames the kernel dropped because the ring was full, since the last call.
    pub fn ring_drops(&self) -> u64 {
        // SAFETY: tpacket_stats_v3 is plain old data.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes of the sizes given.
        let r = unsafe {
            libc::getsockopt(
                self.sock.as_raw_fd(),
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
}

impl AsRawFd for AfPacket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl Drop for AfPacket {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `open`, once.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), self.ring_len) };
    }
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
fn walk_block(blk: &[u8], f: &mut impl FnMut(RxFrame<'_>)) -> usize {
    // tpacket_block_desc: version u32, offset_to_priv u32, then tpacket_hdr_v1:
    // block_status, num_pkts, offset_to_first_pkt, blk_len.
    let (Some(num), Some(mut off)) = (rd_u32(blk, 12), rd_u32(blk, 16)) else {
        return 0;
    };
    let mut n = 0;
    for _ in 0..num {
        let at = off as usize;
        // tpacket3_hdr: next_offset 0, sec 4, nsec 8, snaplen 12, len 16, status 20,
        // mac 24 (u16), net 26, hv1: rxhash 28, vlan_tci 32, vlan_tpid 36.
        let (Some(next), Some(snap), Some(len), Some(st), Some(mac), Some(tci), Some(tpid)) = (
            rd_u32(blk, at),
            rd_u32(blk, at + 12),
            rd_u32(blk, at + 16),
            rd_u32(blk, at + 20),
            rd_u16(blk, at + 24),
            rd_u32(blk, at + 32),
            rd_u16(blk, at + 36),
        ) else {
            break;
        };
        let start = at + mac as usize;
        let (Some(frame), Some(vnet)) = (
            blk.get(start..start + snap as usize),
            start.checked_sub(vnet::LEN).and_then(|s| blk.get(s..start)),
        ) else {
            break;
        };
        let vlan = (st & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
            // Old kernels leave the TPID out (TP_STATUS_VLAN_TPID_VALID unset): 802.1Q.
            let tpid = if st & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
                tpid
            } else {
                crate::wire::vlan::TPID_8021Q
            };
            (tpid, tci as u16)
        });
        f(RxFrame {
            vnet,
            frame,
            vlan,
            truncated: snap < len,
        });
        n += 1;
        if next == 0 {
            break;
        }
        off = match off.checked_add(next) {
            Some(o) => o,
            None => break,
        };
    }
    n
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
            walk_block(&blk, &mut |f: RxFrame<'_>| lens
                .push((f.frame.len(), f.vnet.len()))),
            2
        );
        assert_eq!(lens, vec![(60, vnet::LEN), (70, vnet::LEN)]);
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
