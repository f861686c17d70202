//! Gateway ports: a bridge's port onto its network's gateway. Frames queued to it are
//! taken by the gateway's worker, which routes them ([`crate::pipeline::gateway`]); what
//! the gateway sends into the bridge enters at this port.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use super::{Driver, Read, RxScratch, Sent};
use crate::dataplane::PortRt;
use crate::pool::Buf;
use crate::sys::afpacket::Rx;

/// A gateway port's I/O: none of its own.
pub struct Gateway;

impl Driver for Gateway {
    fn fd(&self) -> Option<RawFd> {
        None
    }

    fn rx_batch(&self, _rx: &mut RxScratch<'_>, _each: impl FnMut(Rx<'_>)) -> Read {
        Read::default()
    }

    fn sends(&self) -> bool {
        false
    }

    fn tx_batch(
        &self,
        _port: &PortRt,
        _pending: &mut VecDeque<Buf>,
        _n: usize,
        _scratch: &mut Vec<u8>,
    ) -> io::Result<Sent> {
        // Never called: `sends` is false, the gateway's worker empties the queue.
        Ok(Sent::default())
    }
}
