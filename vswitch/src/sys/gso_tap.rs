//! A TAP device through which VXLAN super-packets leave whole. The kernel takes a TCP
//! super-frame with its outer headers written in front (UDP-tunnel GSO: a 24-byte
//! virtio-net header, Linux 6.17 or later), puts it on the underlay device's queue, and
//! segments it only where a device needs that: a veth underlay carries it whole to the
//! peer's namespace, where a kernel vxlan device decapsulates it whole too.
//!
//! The kernel does not route what arrives on the TAP: an ingress filter on the TAP (tc's
//! `u32` classifier and `mirred` action) hands each packet straight to the underlay
//! device's transmit queue, picked by the packet's outer source MAC, which is that
//! device's own (set up over rtnetlink by [`super::tc`]; no `tc` program is run). So no
//! routing is turned on anywhere, and neither reverse path filtering
//! nor any iptables chain (FORWARD, OUTPUT, POSTROUTING) sees these packets, as none sees
//! what Open vSwitch's userspace datapath sends out of its underlay port. The outer
//! destination MAC is the next hop's, from the kernel's neighbour table. The TAP has no
//! address: IPv6 is off on it so that the kernel does not queue neighbour discovery
//! there for nobody to read. Everything this changes is on the TAP, which disappears
//! with the daemon.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

/// `TUN_F_UDP_TUNNEL_GSO` (linux/if_tun.h, 6.17): the TAP takes UDP-tunnel super-packets.
const TUN_F_UDP_TUNNEL_GSO: libc::c_ulong = 0x080;

/// A TAP device to write whole VXLAN super-packets to.
pub struct GsoTap {
    file: File,
    name: String,
    /// The TAP's interface index: the filters hang on it, and a device of the same name
    /// but another index is not ours.
    ifindex: u32,
    /// Underlay devices (by index) the TAP's ingress filter hands packets to.
    steered: Mutex<HashMap<u32, Steer>>,
    /// The priority the next filter gets. Never reused: a filter added at the priority
    /// of one still in the kernel would be tried after it.
    next_prio: AtomicU32,
    /// Packets written whole.
    written: AtomicU64,
}

/// One filter of the TAP: packets with source MAC `mac` go out of device `dev`.
#[derive(Debug, Clone)]
struct Steer {
    dev: String,
    mac: [u8; 6],
    prio: u16,
}

impl GsoTap {
    /// Creates a TAP device for UDP-tunnel super-packets, named from `pattern` (a `%d`
    /// in it is the first free number, picked by the kernel, so that daemons sharing a
    /// namespace each get their own), gives it an ingress qdisc for the filters `steer`
    /// adds, and brings it up. Fails with a message naming what is missing on kernels
    /// without UDP-tunnel GSO on TAP devices or without tc's ingress qdisc.
    pub fn create(pattern: &str) -> io::Result<GsoTap> {
        let offloads = (libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6) as libc::c_ulong
            | TUN_F_UDP_TUNNEL_GSO;
        let (file, name) =
            super::tap::open(pattern, vxlan::offload::whole::TUNNEL_VIRTIO_LEN, offloads).map_err(
                |e| match e.raw_os_error() {
                    Some(libc::EINVAL) => io::Error::new(
                        io::ErrorKind::Unsupported,
                        "this kernel's TAP devices take no UDP-tunnel GSO (Linux 6.17 or later)",
                    ),
                    _ => e,
                },
            )?;
        let ifindex = super::iface::index(&name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name} vanished")))?;
        // Without IPv6 (a kernel built without it) there is nothing to turn off.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        super::tc::add_ingress(ifindex)?;
        super::iface::set_up(&name)?;
        Ok(GsoTap {
            file,
            name,
            ifindex,
            steered: Mutex::new(HashMap::new()),
            next_prio: AtomicU32::new(1),
            written: AtomicU64::new(0),
        })
    }

    /// Makes packets written with outer source MAC `mac` leave through device `dev`
    /// (index `ifindex`, whose MAC `mac` is), adding the TAP's filter for it unless it is
    /// there. Fails if another device in use has the same MAC (a VLAN device and its
    /// parent: the filter could not tell them apart) or the kernel refuses the filter.
    pub fn steer(&self, ifindex: u32, dev: &str, mac: [u8; 6]) -> io::Result<()> {
        let mut steered = self.steered.lock().unwrap_or_else(|p| p.into_inner());
        if steered
            .get(&ifindex)
            .is_some_and(|s| s.mac == mac && s.dev == dev)
        {
            return Ok(());
        }
        // A device gone (or renumbered: deleted and made again) leaves a filter that
        // would take its MAC's packets to nowhere.
        let stale: Vec<u32> = steered
            .iter()
            .filter(|(i, s)| {
                **i == ifindex || (s.mac == mac && super::iface::index(&s.dev) != Some(**i))
            })
            .map(|(i, _)| *i)
            .collect();
        for i in stale {
            if let Some(s) = steered.remove(&i) {
                self.unfilter(&s);
            }
        }
        if let Some(other) = steered.values().find(|s| s.mac == mac) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{dev} has the MAC address of {}, also in use", other.dev),
            ));
        }
        // tc priorities are 16-bit; a daemon would need 65535 device changes to wrap.
        let prio = (self.next_prio.fetch_add(1, Ordering::Relaxed) % 0xffff + 1) as u16;
        super::tc::add_redirect(self.ifindex, prio, mac, ifindex)?;
        steered.insert(
            ifindex,
            Steer {
                dev: dev.to_string(),
                mac,
                prio,
            },
        );
        Ok(())
    }

    /// Why the kernel would drop what is written to the TAP now, if it would: the TAP
    /// deleted or down. A qdisc or filter removed under the daemon is put back here
    /// (or, failing that, reported).
    pub fn blocker(&self) -> Option<String> {
        if super::iface::index(&self.name) != Some(self.ifindex) {
            return Some(format!("{} was deleted", self.name));
        }
        if super::iface::flags(&self.name).is_ok_and(|f| f & libc::IFF_UP as u32 == 0) {
            return Some(format!("{} is down", self.name));
        }
        let has_ingress = match super::tc::has_ingress(self.ifindex) {
            Ok(h) => h,
            Err(e) => return Some(e.to_string()),
        };
        let mut steered = self.steered.lock().unwrap_or_else(|p| p.into_inner());
        if !has_ingress {
            steered.clear();
            if let Err(e) = super::tc::add_ingress(self.ifindex) {
                return Some(e.to_string());
            }
        }
        let filters = match super::tc::redirects(self.ifindex) {
            Ok(f) => f,
            Err(e) => return Some(e.to_string()),
        };
        // A filter gone, or whose device went (its redirect then names device 0, or
        // another index once a device of that name is made again): deleted, for `steer`
        // to add it again; one left behind would drop what it matches.
        steered.retain(|&to, s| {
            let ok = filters.contains(&super::tc::Redirect { prio: s.prio, to });
            if !ok {
                self.unfilter(s);
            }
            ok
        });
        None
    }

    /// Deletes the TAP's filter of `s` (gone already is fine).
    fn unfilter(&self, s: &Steer) {
        if let Err(e) = super::tc::del_filter(self.ifindex, s.prio) {
            tracing::warn!(tap = %self.name, dev = %s.dev, "{e}");
        }
    }

    /// Packets written whole so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes one packet: `hdr` (virtio-net and outer headers) then the inner `frame`.
    /// The kernel has put it on the underlay device's queue (or dropped it) before the
    /// call returns; it never blocks.
    pub fn send(&self, hdr: &[u8], frame: &[u8]) -> io::Result<()> {
        let want = hdr.len() + frame.len();
        let n = (&self.file).write_vectored(&[IoSlice::new(hdr), IoSlice::new(frame)])?;
        if n == want {
            self.written.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the TAP",
            ))
        }
    }
}
