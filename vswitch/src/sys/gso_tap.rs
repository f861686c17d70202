//! A TAP device through which VXLAN super-packets leave whole. The kernel takes a TCP
//! super-frame with its outer headers written in front (UDP-tunnel GSO: a 24-byte
//! virtio-net header, Linux 6.17 or later), routes it to the underlay as a packet that
//! arrived on the TAP, and segments it only where a device needs that: a veth underlay
//! carries it whole to the peer's namespace, where a kernel vxlan device decapsulates it
//! whole too.
//!
//! Routing is turned on for this device alone (`net.ipv4.conf.<tap>.forwarding`; the
//! host's `ip_forward` is left as it is, so nothing arriving elsewhere is routed), and
//! `accept_local` lets the kernel take a packet from one of its own addresses (the
//! VTEP's) arriving on it. The device has no address and takes no traffic: IPv6 is off
//! on it so that the kernel does not queue neighbour discovery there for nobody to read.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// `TUN_F_UDP_TUNNEL_GSO` (linux/if_tun.h, 6.17): the TAP takes UDP-tunnel super-packets.
const TUN_F_UDP_TUNNEL_GSO: libc::c_ulong = 0x080;

/// A TAP device to write whole VXLAN super-packets to.
pub struct GsoTap {
    file: File,
    name: String,
    mac: [u8; 6],
    /// Packets written whole.
    written: AtomicU64,
}

impl GsoTap {
    /// Creates TAP device `name` (it must not exist) for UDP-tunnel super-packets, lets
    /// the kernel route what arrives on it, and brings it up. Fails with a message
    /// naming what is missing on kernels without UDP-tunnel GSO on TAP devices.
    pub fn create(name: &str) -> io::Result<GsoTap> {
        let offloads = (libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6) as libc::c_ulong
            | TUN_F_UDP_TUNNEL_GSO;
        let file = super::tap::open(name, vxlan::offload::whole::TUNNEL_VIRTIO_LEN, offloads)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this kernel's TAP devices take no UDP-tunnel GSO (Linux 6.17 or later)",
                ),
                _ => e,
            })?;
        for (key, val) in [
            ("forwarding", "1"),
            ("accept_local", "1"),
            ("rp_filter", "0"),
        ] {
            let path = conf(name, key);
            std::fs::write(&path, val)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot write {path}: {e}")))?;
        }
        // Without IPv6 (a kernel built without it) there is nothing to turn off.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        super::iface::set_up(name)?;
        let mac = super::iface::hw_addr(name)?;
        Ok(GsoTap {
            file,
            name: name.to_string(),
            mac,
            written: AtomicU64::new(0),
        })
    }

    /// Why the kernel would drop what is written to the TAP now, if it would: the TAP
    /// deleted or down, `accept_local` or routing turned off for it again (writing
    /// `ip_forward` resets every device's), or reverse path filtering turned on for all
    /// devices (a packet from the host's own address arriving on a device without one
    /// fails it, loose or strict).
    pub fn blocker(&self) -> Option<String> {
        let read = |dev: &str, key: &str| {
            std::fs::read_to_string(conf(dev, key))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        if super::iface::index(&self.name).is_none() {
            return Some(format!("{} was deleted", self.name));
        }
        if super::iface::flags(&self.name).is_ok_and(|f| f & libc::IFF_UP as u32 == 0) {
            return Some(format!("{} is down", self.name));
        }
        let accept = read(&self.name, "accept_local");
        if accept != "1" {
            return Some(format!(
                "net.ipv4.conf.{}.accept_local is {accept:?}, not 1",
                self.name
            ));
        }
        let fwd = read(&self.name, "forwarding");
        if fwd != "1" {
            return Some(format!(
                "net.ipv4.conf.{}.forwarding is {fwd:?}, not 1",
                self.name
            ));
        }
        for dev in ["all", self.name.as_str()] {
            let v = read(dev, "rp_filter");
            if v != "0" {
                return Some(format!("net.ipv4.conf.{dev}.rp_filter is {v:?}, not 0"));
            }
        }
        None
    }

    /// Packets written whole so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its MAC address: the outer destination that makes the kernel take a packet.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Writes one packet: `hdr` (virtio-net and outer headers) then the inner `frame`.
    /// The kernel routes it before the call returns; it never blocks.
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

/// The IPv4 sysctl `key` of device `dev` (or `all`), in this network namespace.
fn conf(dev: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{dev}/{key}")
}
