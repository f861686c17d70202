//! TAP ports: a TAP device the switch creates and serves ([`crate::sys::tap`]); it
//! disappears with the port.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use super::{Driver, Read, RxScratch, Sent};
use crate::dataplane::PortRt;
use crate::pool::{Buf, LARGE};
use crate::sys::afpacket::{Rx, RxFrame};
use crate::sys::iface;
use crate::sys::tap::{write_frame, Tap as Device};
use crate::wire::{vnet, MacAddr};

/// Frames read per turn.
const FRAMES_PER_TURN: usize = 64;

/// A TAP device served by this port.
pub struct Tap {
    dev: Device,
}

impl Tap {
    /// Creates TAP device `name` with MAC `mac` if given, so a re-created TAP looks the
    /// same to its neighbours.
    pub fn create(name: &str, mac: Option<MacAddr>) -> io::Result<Self> {
        Ok(Tap {
            dev: Device::create(name, mac.map(|m| m.0))?,
        })
    }
}

#[cfg(test)]
impl Tap {
    /// A port over any datagram file (a Unix datagram socket in tests).
    pub(crate) fn from_file(file: std::fs::File) -> Self {
        Tap {
            dev: Device::from_file(file, "test"),
        }
    }
}

impl Driver for Tap {
    fn fd(&self) -> Option<RawFd> {
        Some(self.dev.as_raw_fd())
    }

    fn created_mac(&self) -> Option<MacAddr> {
        iface::hw_addr(self.dev.name()).ok().map(MacAddr)
    }

    fn rx_batch(&self, rx: &mut RxScratch<'_>, mut each: impl FnMut(Rx<'_>)) -> Read {
        let mut read = Read::default();
        loop {
            if read.frames == FRAMES_PER_TURN {
                read.more = true;
                break;
            }
            if rx.spare.is_none() {
                *rx.spare = rx.pool.get(LARGE);
            }
            let got = match rx.spare.as_mut() {
                Some(b) => self.dev.recv(b.spare()).inspect(|&len| b.set_len(len)),
                None => self.dev.recv(rx.scratch),
            };
            match got {
                Ok(len) if len >= vnet::LEN && rx.spare.is_some() => each(Rx::Owned {
                    buf: rx.spare,
                    vlan: None,
                }),
                Ok(len) => {
                    let bytes = match rx.spare.as_ref() {
                        Some(b) => &b.bytes()[..len],
                        None => &rx.scratch[..len],
                    };
                    // Shorter than the virtio-net header: all of it is a runt frame.
                    let (vnet, frame) =
                        bytes.split_at(if len >= vnet::LEN { vnet::LEN } else { 0 });
                    each(Rx::Frame(RxFrame {
                        vnet,
                        frame,
                        vlan: None,
                        truncated: false,
                        ahead: &[],
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    read.failure = Some(format!("TAP read failed: {e}"));
                    break;
                }
            }
            read.frames += 1;
        }
        read
    }

    fn tx_batch(
        &self,
        _port: &PortRt,
        pending: &mut VecDeque<Buf>,
        n: usize,
        _scratch: &mut Vec<u8>,
    ) -> io::Result<Sent> {
        let fd = self.dev.as_raw_fd();
        let mut sent = Sent::default();
        for b in pending.iter().take(n) {
            match write_frame(fd, b.bytes()) {
                Ok(_) => sent.taken += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // This frame alone was refused (bad GSO header for the device).
                    sent.taken += 1;
                    sent.errors += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }
}
