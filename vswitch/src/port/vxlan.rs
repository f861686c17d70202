//! Tunnel ports: a bridge's port onto a VXLAN tunnel. Nothing of its own to read (its
//! VTEP's socket is read by the VTEP's worker, [`crate::pipeline::tunnel`]); what is
//! queued to it is encapsulated and sent through the VTEP's sockets
//! ([`crate::tunnel::transmit`]).

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use super::{Driver, Read, RxScratch, Sent};
use crate::dataplane::PortRt;
use crate::pool::Buf;
use crate::sys::afpacket::Rx;

/// A tunnel port's I/O: its tunnel's, reached through the port.
pub struct Vxlan;

impl Driver for Vxlan {
    fn fd(&self) -> Option<RawFd> {
        None
    }

    fn rx_batch(&self, _rx: &mut RxScratch<'_>, _each: impl FnMut(Rx<'_>)) -> Read {
        Read::default()
    }

    fn tx_batch(
        &self,
        port: &PortRt,
        pending: &mut VecDeque<Buf>,
        n: usize,
        scratch: &mut Vec<u8>,
    ) -> io::Result<Sent> {
        let mut sent = Sent::default();
        sent.taken = match port.tunnel.as_ref() {
            Some(t) => crate::tunnel::transmit(
                t,
                pending,
                n,
                scratch,
                &mut sent.errors,
                &mut sent.oversize,
            ),
            // A tunnel port always has its tunnel; without one, nothing can be sent.
            None => {
                sent.errors = n as u64;
                n
            }
        };
        sent.errors += sent.oversize;
        Ok(sent)
    }
}
