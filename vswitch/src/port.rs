//! A port's I/O handle: the one thing that touches its interface. Owned by exactly one
//! worker, which reads it and drains the port's TX queue into it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use ctl::PortKind;

use crate::sys::afpacket::{AfPacket, RingKind};
use crate::sys::iface;
use crate::sys::tap::Tap;
use crate::wire::MacAddr;

/// The interface behind a port.
pub enum PortIo {
    Afpacket(AfPacket),
    Tap(Tap),
    /// A tunnel port: nothing of its own to read (its VTEP's socket is read by the
    /// VTEP's worker); the owner drains its TX queue into the VTEP's sockets.
    Vxlan,
    /// A bridge's gateway port: frames queued to it are routed by the gateway's worker.
    Gateway,
}

impl PortIo {
    /// Opens the interface for a port of `kind`: attaches to an existing interface
    /// (afpacket), or creates the TAP device (tap).
    /// `tap_mac` is the MAC a TAP is created with (ignored for afpacket).
    pub fn open(
        kind: PortKind,
        name: &str,
        ring: RingKind,
        tap_mac: Option<MacAddr>,
    ) -> io::Result<PortIo> {
        match kind {
            PortKind::Afpacket => {
                if iface::index(name).is_none() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no interface named {name}"),
                    ));
                }
                let hw = iface::hw_type(name)?;
                if hw != libc::ARPHRD_ETHER {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("interface {name} is not an Ethernet device"),
                    ));
                }
                if iface::flags(name)? & libc::IFF_UP as u32 == 0 {
                    // Bring it up, as ovs-vswitchd does for the interfaces it is given.
                    iface::set_up(name)?;
                }
                Ok(PortIo::Afpacket(AfPacket::open(name, ring)?))
            }
            PortKind::Tap => Ok(PortIo::Tap(Tap::create(name, tap_mac.map(|m| m.0))?)),
            PortKind::Vxlan => Ok(PortIo::Vxlan),
            PortKind::Gateway => Ok(PortIo::Gateway),
        }
    }

    /// The MAC address of a TAP this handle created.
    pub fn tap_mac(&self) -> Option<MacAddr> {
        match self {
            PortIo::Afpacket(_) | PortIo::Vxlan | PortIo::Gateway => None,
            PortIo::Tap(t) => iface::hw_addr(t.name()).ok().map(MacAddr),
        }
    }

    /// The interface index this handle is bound to (0 for a TAP, which may move to
    /// another namespace).
    pub fn ifindex(&self) -> u32 {
        match self {
            PortIo::Afpacket(a) => a.ifindex(),
            PortIo::Tap(_) | PortIo::Vxlan | PortIo::Gateway => 0,
        }
    }

    /// The file descriptor the owner polls for received frames, if the port has one.
    pub fn fd(&self) -> Option<RawFd> {
        match self {
            PortIo::Afpacket(a) => Some(a.as_raw_fd()),
            PortIo::Tap(t) => Some(t.as_raw_fd()),
            PortIo::Vxlan | PortIo::Gateway => None,
        }
    }
}
