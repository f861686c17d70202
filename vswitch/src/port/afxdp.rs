//! Afxdp ports: an existing Ethernet interface read and written through an AF_XDP socket
//! ([`crate::sys::xdp`]) instead of AF_PACKET. Where the socket or its XDP program
//! cannot be attached (no native XDP, an MTU too large for it, another program already
//! there), [`super::PortIo::open`] falls back to an afpacket port and says why.
//!
//! AF_XDP carries no virtio-net header. A received frame whose TCP/UDP checksum field
//! holds the pseudo-header sum was left partial by a sender with checksum offload (a
//! veth's far end with default settings): it is handed up with the `NEEDS_CSUM`
//! description an afpacket port would have read, so the far end needs no `ethtool`
//! and the checksum is completed only where a step needs it. What the pipeline sends
//! with an offload description — a TSO super-frame from an afpacket or TAP port, a
//! partial checksum — is finished here in software (`vxlan::offload::encap_segments`
//! does what a NIC would) before it goes on the TX ring, one interface-MTU frame per
//! chunk.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use vxlan::header::HEADER_LEN;
use vxlan::offload::{encap_segments, partial_checksum, Gso, Offload, OffloadError};

use super::{Driver, Read, RxScratch, Sent};
use crate::counters::{Drop, PortCounters};
use crate::dataplane::PortRt;
use crate::pool::Buf;
use crate::sys::afpacket::{Rx, RxFrame};
use crate::sys::iface;
use crate::sys::xdp::{Xsk, RX_FRAME_MAX, TX_CHUNKS};
use crate::wire::vnet;

/// Frames read per turn, as for an afpacket V2 ring.
const RX_FRAMES_PER_TURN: u32 = 64;

/// An interface attached through an AF_XDP socket.
pub struct Afxdp {
    /// Boxed: its rings make it several times the size of the other kinds' I/O.
    xsk: Box<Xsk>,
    ifindex: u32,
    /// Largest frame sent (the interface's MTU plus the Ethernet header).
    max_frame: usize,
    /// Kernel drops already counted.
    drops_seen: AtomicU64,
}

impl Afxdp {
    /// Attaches to interface `name` (brought up if down). `NotFound` and `InvalidInput`
    /// are about the interface itself; any other error is about AF_XDP on it.
    pub fn open(name: &str) -> io::Result<Self> {
        let ifindex = iface::ethernet_up(name)?;
        // One socket serves queue 0; frames the interface spread over other queues would
        // pass to the switch's own stack and be lost to the bridge.
        let queues = rx_queues(name);
        if queues > 1 {
            return Err(io::Error::other(format!(
                "{queues} receive queues; afxdp serves queue 0 only"
            )));
        }
        let mtu = iface::mtu(name)? as usize;
        let max_frame = mtu + 14;
        let xsk = Xsk::open(ifindex)?;
        // After the attach, so a jumbo veth is refused by the kernel's own check first.
        if max_frame > RX_FRAME_MAX {
            return Err(io::Error::other(format!(
                "MTU {mtu} is larger than an AF_XDP chunk takes ({} bytes)",
                RX_FRAME_MAX - 14
            )));
        }
        Ok(Afxdp {
            xsk: Box::new(xsk),
            ifindex,
            max_frame,
            drops_seen: AtomicU64::new(0),
        })
    }
}

/// The interface's receive queues as this namespace's sysfs lists them (1 when it does
/// not: sysfs mounted for another namespace).
fn rx_queues(name: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

impl Driver for Afxdp {
    fn fd(&self) -> Option<RawFd> {
        Some(self.xsk.fd())
    }

    fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn backend(&self) -> Option<String> {
        Some("afxdp".into())
    }

    #[inline]
    fn rx_batch(&self, _rx: &mut RxScratch<'_>, mut each: impl FnMut(Rx<'_>)) -> Read {
        let (frames, more) = self.xsk.rx().recv(RX_FRAMES_PER_TURN, |frame| {
            let vnet = partial_checksum(frame).to_virtio();
            each(Rx::Frame(RxFrame {
                vnet: &vnet,
                frame,
                vlan: None,
                truncated: false,
                ahead: &[],
            }))
        });
        Read {
            frames,
            more,
            failure: None,
            rearm: None,
        }
    }

    fn tx_batch(
        &self,
        _port: &PortRt,
        pending: &mut VecDeque<Buf>,
        n: usize,
        scratch: &mut Vec<u8>,
    ) -> io::Result<Sent> {
        let mut tx = self.xsk.tx();
        let mut room = tx.room();
        let mut sent = Sent::default();
        for b in pending.iter().take(n) {
            let refuse = |sent: &mut Sent, oversize: bool| {
                sent.taken += 1;
                sent.errors += 1;
                sent.oversize += u64::from(oversize);
            };
            let Some((hdr, frame)) = b.bytes().split_first_chunk::<{ vnet::LEN }>() else {
                refuse(&mut sent, false);
                continue;
            };
            let off = match Offload::from_virtio(hdr) {
                Ok(o) => o,
                Err(_) => {
                    refuse(&mut sent, false);
                    continue;
                }
            };
            if off.gso == Gso::None && !off.needs_csum {
                if frame.len() > self.max_frame {
                    refuse(&mut sent, true);
                    continue;
                }
                if room == 0 {
                    break;
                }
                tx.stage(frame);
                room -= 1;
                sent.taken += 1;
                continue;
            }
            // One frame per datagram, behind a VXLAN header that is skipped.
            match encap_segments(frame, &off, self.max_frame, 0, scratch) {
                Ok(segs) if segs.count > TX_CHUNKS as usize => refuse(&mut sent, false),
                Ok(segs) => {
                    if room < segs.count {
                        break;
                    }
                    for i in 0..segs.count {
                        let start = i * segs.stride;
                        let end = (start + segs.stride).min(segs.total);
                        if let Some(f) = scratch.get(start + HEADER_LEN..end) {
                            tx.stage(f);
                        }
                    }
                    room -= segs.count;
                    sent.taken += 1;
                }
                Err(OffloadError::TooBig) => refuse(&mut sent, true),
                Err(_) => refuse(&mut sent, false),
            }
        }
        tx.kick()?;
        Ok(sent)
    }

    fn poll_counters(&self, w: usize, counters: &PortCounters) {
        let now = self.xsk.rx_dropped();
        let before = self.drops_seen.swap(now, Ordering::Relaxed);
        if now > before {
            counters.drop(w, Drop::RxRing, now - before);
        }
    }

    fn take_error(&self) -> Option<io::Error> {
        self.xsk.take_error()
    }
}
