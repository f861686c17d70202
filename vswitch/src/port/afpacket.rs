//! Afpacket ports: an existing Ethernet interface (a container's veth, a NIC) read and
//! written through an AF_PACKET socket with an RX ring ([`crate::sys::afpacket`]).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;

use super::{Driver, Read, RxScratch, Sent};
use crate::counters::{Drop, PortCounters};
use crate::dataplane::PortRt;
use crate::pool::Buf;
use crate::sys::afpacket::{send_mmsg, tx_socket, AfPacket, RingKind, Rx, TX_BATCH};
use crate::sys::iface;

/// Ring blocks (V3) read per turn, so one busy port cannot starve the others.
const RX_BLOCKS_PER_TURN: usize = 8;
/// Ring slots (V2) read per turn.
const RX_FRAMES_PER_TURN: usize = 64;

/// An interface attached through AF_PACKET sockets: one with the RX ring, one to send.
pub struct Afpacket {
    /// The RX socket's descriptor, which the owner polls.
    fd: RawFd,
    /// The socket frames are sent through (with `sendmmsg`, no ring state), polled
    /// only while the kernel pushes back.
    tx: socket2::Socket,
    ifindex: u32,
    /// The socket and its RX ring. Only the owner reads, so the lock is never contended;
    /// it is what lets senders on other workers share this value.
    ring: Mutex<AfPacket>,
    /// Why this afpacket port stands in for an afxdp one.
    fallback: Option<String>,
}

impl Afpacket {
    /// Attaches to interface `name`, bringing it up if it is down, as ovs-vswitchd does
    /// for the interfaces it is given.
    pub fn open(name: &str, ring: RingKind) -> io::Result<Self> {
        iface::ethernet_up(name)?;
        let sock = AfPacket::open(name, ring)?;
        Ok(Afpacket {
            fd: sock.as_raw_fd(),
            tx: tx_socket(sock.ifindex())?,
            ifindex: sock.ifindex(),
            ring: Mutex::new(sock),
            fallback: None,
        })
    }

    /// Marks this port as standing in for an afxdp port that could not attach.
    pub fn fell_back(mut self, why: String) -> Self {
        self.fallback = Some(why);
        self
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, AfPacket> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Driver for Afpacket {
    fn fd(&self) -> Option<RawFd> {
        Some(self.fd)
    }

    fn tx_fd(&self) -> Option<RawFd> {
        Some(self.tx.as_raw_fd())
    }

    fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn backend(&self) -> Option<String> {
        self.fallback
            .as_ref()
            .map(|why| format!("afpacket (afxdp fall-back: {why})"))
    }

    #[inline]
    fn rx_batch(&self, rx: &mut RxScratch<'_>, each: impl FnMut(Rx<'_>)) -> Read {
        let mut ring = self.ring();
        let budget = match ring.kind() {
            RingKind::V2 => RX_FRAMES_PER_TURN,
            RingKind::V3 => RX_BLOCKS_PER_TURN,
        };
        let mut rearm = None;
        let frames = ring.rx(budget, rx.pool, rx.spare, &mut rearm, each);
        Read {
            frames,
            more: ring.rx_ready(),
            failure: ring.failed().map(|e| e.to_string()),
            rearm,
        }
    }

    #[inline]
    fn tx_batch(
        &self,
        _port: &PortRt,
        pending: &mut VecDeque<Buf>,
        n: usize,
        _scratch: &mut Vec<u8>,
    ) -> io::Result<Sent> {
        let mut refs: [&[u8]; TX_BATCH] = [&[]; TX_BATCH];
        for (r, b) in refs.iter_mut().zip(pending.iter()) {
            *r = b.bytes();
        }
        let mut errors = 0;
        let taken = send_mmsg(self.tx.as_raw_fd(), &refs[..n.min(TX_BATCH)], &mut errors)?;
        Ok(Sent {
            taken,
            errors,
            oversize: 0,
        })
    }

    fn poll_counters(&self, w: usize, counters: &PortCounters) {
        let d = self.ring().ring_drops();
        if d > 0 {
            counters.drop(w, Drop::RxRing, d);
        }
    }

    fn take_error(&self) -> Option<io::Error> {
        self.ring().take_error()
    }
}
