//! A transmit-only AF_PACKET socket with a PACKET_TX_RING (TPACKET_V2): frames are
//! written into mapped ring slots and handed to the kernel with one `send` per batch.
//! The kernel builds each skb around the slot's pages instead of copying the frame, so a
//! super-frame costs one copy (ours, into the slot) where `sendmmsg` costs the kernel's.
//!
//! Opt-in (`--tx-ring`): issue 20's lever, measured in README "What limits it".

use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

use super::{cvt, setsockopt_int};

/// Bytes before a frame's data in its slot: the V2 header, aligned (TPACKET2_HDRLEN minus
/// the sockaddr_ll the kernel does not write on transmit).
const DATA_OFF: usize = 32;
/// One slot holds the largest GSO super-frame with its virtio-net header.
const SLOT_SIZE: u32 = 69_632;
/// Slots in the ring: 2.2 MiB, as many super-frames as one TX batch can be in flight.
const SLOTS: u32 = 32;

/// A transmit ring bound to one interface.
pub struct TxRing {
    sock: Socket,
    ring: NonNull<u8>,
    /// Next slot to fill; the kernel walks the slots in the same order.
    next: u32,
}

// SAFETY: the mapping belongs to this value alone; moving it moves that ownership.
unsafe impl Send for TxRing {}

impl TxRing {
    /// Opens the ring's socket on interface `ifindex`.
    pub fn open(ifindex: u32) -> io::Result<TxRing> {
        // Protocol 0: it receives nothing.
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        let fd = sock.as_raw_fd();
        setsockopt_int(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            libc::tpacket_versions::TPACKET_V2 as i32,
        )?;
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
        // A frame the kernel refuses is skipped (made available again) rather than
        // stopping the ring's walk at it for good.
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_LOSS, 1)?;
        // The kernel charges each slot's whole frame to the send buffer until the skb
        // is freed: room for the ring's worth of super-frames.
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20)
            .or_else(|_| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20));
        let req = libc::tpacket_req {
            tp_block_size: SLOT_SIZE,
            tp_block_nr: SLOTS,
            tp_frame_size: SLOT_SIZE,
            tp_frame_nr: SLOTS,
        };
        // SAFETY: `req` is a valid tpacket_req and its exact size is passed.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_TX_RING,
                (&req as *const libc::tpacket_req).cast(),
                std::mem::size_of::<libc::tpacket_req>() as libc::socklen_t,
            )
        })?;
        let len = SLOT_SIZE as usize * SLOTS as usize;
        // SAFETY: mapping the ring the kernel just made for this socket; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ring = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap null"))?;
        let tx = TxRing {
            sock,
            ring,
            next: 0,
        };
        // SAFETY: sockaddr_ll is plain old data; all-zero is valid before we fill it.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
        cvt(unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(tx)
    }

    fn slot(&self, i: u32) -> *mut u8 {
        // SAFETY: `i < SLOTS`, so the offset stays inside the mapping.
        unsafe { self.ring.as_ptr().add(i as usize * SLOT_SIZE as usize) }
    }

    fn status(&self, i: u32) -> &AtomicU32 {
        // SAFETY: the slot's first four bytes are its tp_status, aligned (the mapping is
        // page-aligned and slots are page multiples); the kernel updates it concurrently,
        // which is what the atomic is for.
        unsafe { &*(self.slot(i) as *const AtomicU32) }
    }

    /// Queues `frames` (each starting with its virtio-net header) and kicks the kernel.
    /// Returns how many were taken; frames the kernel refused are counted in `errors`.
    pub fn send(&mut self, frames: &[&[u8]], errors: &mut u64) -> io::Result<usize> {
        let mut queued = 0;
        for fr in frames {
            if fr.len() > SLOT_SIZE as usize - DATA_OFF {
                // Cannot be a valid frame; refuse it as the kernel would.
                *errors += 1;
                queued += 1;
                continue;
            }
            let st = self.status(self.next);
            if st.load(Ordering::Acquire) != libc::TP_STATUS_AVAILABLE {
                break;
            }
            let base = self.slot(self.next);
            // SAFETY: the slot is ours while AVAILABLE (or refused); the frame fits after
            // the header, checked above; tp_len is at offset 4 and aligned.
            unsafe {
                std::ptr::copy_nonoverlapping(fr.as_ptr(), base.add(DATA_OFF), fr.len());
                (*(base.add(4) as *const AtomicU32)).store(fr.len() as u32, Ordering::Relaxed);
            }
            st.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.next = (self.next + 1) % SLOTS;
            queued += 1;
        }
        // Kick even when nothing fitted: slots a refused kick (a full send buffer) left
        // waiting go out now.
        self.kick()?;
        Ok(queued)
    }

    fn kick(&self) -> io::Result<()> {
        loop {
            // SAFETY: a zero-length send with no buffer: the kernel reads only the ring.
            let r = unsafe {
                libc::send(
                    self.sock.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => return Ok(()),
                Some(libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
    }
}

impl Drop for TxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, never handed out.
        unsafe {
            libc::munmap(
                self.ring.as_ptr().cast(),
                SLOT_SIZE as usize * SLOTS as usize,
            )
        };
    }
}
