//! Ports: what sits behind each port of a bridge, one module per kind. A kind implements
//! [`Driver`] — its file descriptor, reading a batch, sending a batch, its own counters
//! — and [`PortIo`] holds one value of some kind. The worker that owns a port reads it
//! through its `PortIo`; any worker that holds the port's transmit lock sends through
//! the same value, shared under [`TxState`](crate::dataplane::TxState), so a port's I/O
//! is one thing with one lifetime: it closes when the last holder lets go.
//!
//! Adding a kind is one module here, one [`PortIo`] arm and one `PortKind` variant with
//! its spelling; the worker only dispatches.

mod afpacket;
mod afxdp;
mod gateway;
mod tap;
mod vxlan;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use ctl::PortKind;

use crate::counters::PortCounters;
use crate::dataplane::PortRt;
use crate::pool::{Buf, Pool};
use crate::sys::afpacket::RingKind;
pub use crate::sys::afpacket::{Rx, RxFrame};
use crate::wire::MacAddr;

pub use afpacket::Afpacket;
pub use afxdp::Afxdp;
pub use gateway::Gateway;
pub use tap::Tap;
pub use vxlan::Vxlan;

/// What a worker lends a port for one read.
pub struct RxScratch<'a> {
    /// Where buffers come from.
    pub pool: &'a Pool,
    /// A large buffer frames of unknown size are read into; a receiver that keeps the
    /// frame takes it, and the next read gets another from the pool.
    pub spare: &'a mut Option<Buf>,
    /// Room to read into when the pool has no large buffer.
    pub scratch: &'a mut [u8],
}

/// What one read of a port brought.
#[derive(Debug, Default)]
pub struct Read {
    /// Frames handed up.
    pub frames: usize,
    /// More is waiting than the turn's budget took.
    pub more: bool,
    /// The port failed for good: why.
    pub failure: Option<String>,
    /// Frames now arrive on this descriptor too (the port's ring grew): poll it.
    pub rearm: Option<RawFd>,
}

/// What one transmit batch did with the frames it was given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Frames taken from the front of the batch: sent, or refused one by one.
    pub taken: usize,
    /// Of those taken, refused (transmit errors, oversize included).
    pub errors: u64,
    /// Of those refused, too large for the port: counted as oversize, not as errors.
    pub oversize: u64,
}

/// One kind of port.
pub trait Driver {
    /// The descriptor the owner polls for received frames; `None` for a port that is
    /// fed by something else (a tunnel by its VTEP, a gateway port by its queue).
    fn fd(&self) -> Option<RawFd>;

    /// A descriptor of its own that frames are sent through, which the owner polls for
    /// room only while the kernel pushes back (`None`: sends go through [`Driver::fd`],
    /// or are not polled for).
    fn tx_fd(&self) -> Option<RawFd> {
        None
    }

    /// The interface index the port is bound to (0 when it has none it keeps).
    fn ifindex(&self) -> u32 {
        0
    }

    /// The MAC address of an interface the port created.
    fn created_mac(&self) -> Option<MacAddr> {
        None
    }

    /// The I/O behind the port when it is not what its kind says by itself: "afxdp",
    /// or the afpacket fall-back of an afxdp port and why.
    fn backend(&self) -> Option<String> {
        None
    }

    /// Reads up to a turn's budget of frames and hands each to `each`.
    fn rx_batch(&self, rx: &mut RxScratch<'_>, each: impl FnMut(Rx<'_>)) -> Read;

    /// Whether frames queued to the port are sent by [`Driver::tx_batch`]; a gateway
    /// port's queue is emptied by the gateway's worker instead.
    fn sends(&self) -> bool {
        true
    }

    /// Sends the first `n` frames of `pending` (each behind its virtio-net header) for
    /// `port`; `scratch` is the port's own room for rewriting them. An error means the
    /// port is unusable.
    fn tx_batch(
        &self,
        port: &PortRt,
        pending: &mut VecDeque<Buf>,
        n: usize,
        scratch: &mut Vec<u8>,
    ) -> io::Result<Sent>;

    /// Folds what the kind counts on its own (kernel ring drops) into the port's
    /// counters, as worker `w`.
    fn poll_counters(&self, _w: usize, _counters: &PortCounters) {}

    /// A pending error that takes the port down (the interface vanished).
    fn take_error(&self) -> Option<io::Error> {
        None
    }
}

/// The I/O of one port, of whichever kind it is.
pub enum PortIo {
    /// An existing interface, through an AF_PACKET socket.
    Afpacket(Afpacket),
    /// An existing interface, through an AF_XDP socket.
    Afxdp(Afxdp),
    /// A TAP device the switch created.
    Tap(Tap),
    /// A tunnel port: sends through its VTEP's sockets.
    Vxlan(Vxlan),
    /// A bridge's gateway port.
    Gateway(Gateway),
}

/// Calls `$body` with `$p` bound to whichever kind `$io` holds.
macro_rules! dispatch {
    ($io:expr, $p:ident => $body:expr) => {
        match $io {
            PortIo::Afpacket($p) => $body,
            PortIo::Afxdp($p) => $body,
            PortIo::Tap($p) => $body,
            PortIo::Vxlan($p) => $body,
            PortIo::Gateway($p) => $body,
        }
    };
}

impl PortIo {
    /// Opens the interface for a port of `kind`: attaches to an existing interface
    /// (afpacket), or creates the TAP device (tap) with MAC `tap_mac` if given.
    pub fn open(
        kind: PortKind,
        name: &str,
        ring: RingKind,
        tap_mac: Option<MacAddr>,
    ) -> io::Result<PortIo> {
        Ok(match kind {
            PortKind::Afpacket => PortIo::Afpacket(Afpacket::open(name, ring)?),
            PortKind::Afxdp => match Afxdp::open(name) {
                Ok(p) => PortIo::Afxdp(p),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                    ) =>
                {
                    return Err(e)
                }
                Err(e) => {
                    tracing::warn!(port = name, "afxdp cannot attach, using afpacket: {e}");
                    PortIo::Afpacket(Afpacket::open(name, ring)?.fell_back(e.to_string()))
                }
            },
            PortKind::Tap => PortIo::Tap(Tap::create(name, tap_mac)?),
            PortKind::Vxlan => PortIo::Vxlan(Vxlan),
            PortKind::Gateway => PortIo::Gateway(Gateway),
        })
    }

    /// The MAC address of a TAP this handle created.
    pub fn tap_mac(&self) -> Option<MacAddr> {
        dispatch!(self, p => p.created_mac())
    }

    /// See [`Driver::backend`].
    pub fn backend(&self) -> Option<String> {
        dispatch!(self, p => p.backend())
    }

    /// See [`Driver::ifindex`].
    pub fn ifindex(&self) -> u32 {
        dispatch!(self, p => p.ifindex())
    }

    /// See [`Driver::fd`].
    pub fn fd(&self) -> Option<RawFd> {
        dispatch!(self, p => p.fd())
    }

    /// See [`Driver::tx_fd`].
    pub fn tx_fd(&self) -> Option<RawFd> {
        dispatch!(self, p => p.tx_fd())
    }

    /// See [`Driver::rx_batch`].
    #[inline]
    pub fn rx_batch(&self, rx: &mut RxScratch<'_>, each: impl FnMut(Rx<'_>)) -> Read {
        dispatch!(self, p => p.rx_batch(rx, each))
    }

    /// See [`Driver::sends`].
    #[inline]
    pub fn sends(&self) -> bool {
        dispatch!(self, p => p.sends())
    }

    /// See [`Driver::tx_batch`].
    #[inline]
    pub fn tx_batch(
        &self,
        port: &PortRt,
        pending: &mut VecDeque<Buf>,
        n: usize,
        scratch: &mut Vec<u8>,
    ) -> io::Result<Sent> {
        dispatch!(self, p => p.tx_batch(port, pending, n, scratch))
    }

    /// See [`Driver::poll_counters`].
    pub fn poll_counters(&self, w: usize, counters: &PortCounters) {
        dispatch!(self, p => p.poll_counters(w, counters))
    }

    /// See [`Driver::take_error`].
    pub fn take_error(&self) -> Option<io::Error> {
        dispatch!(self, p => p.take_error())
    }
}
