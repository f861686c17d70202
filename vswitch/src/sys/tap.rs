//! TAP devices with virtio-net headers.
//!
//! Written by hand rather than with the tun-tap crate: tun-tap cannot set IFF_VNET_HDR
//! or TUNSETOFFLOAD, and without them the kernel segments and checksums every TCP
//! super-frame before handing it to us (slow) and we could not hand it super-frames
//! either. The device is not persistent: it disappears when the fd closes, which is how
//! `vswitchd` removes the interfaces it created on shutdown or crash.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::cvt;
use crate::wire::vnet;

/// A TAP device served by this process.
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Creates TAP device `name` (it must not exist), with virtio-net headers and TSO
    /// enabled, with MAC address `mac` if given (so a re-created TAP looks the same to
    /// its neighbours), and brings it up.
    pub fn create(name: &str, mac: Option<[u8; 6]>) -> io::Result<Tap> {
        // What we accept from the kernel: partial checksums and TCP super-frames. UDP
        // segmentation offload stays off: AF_PACKET peers could not always take it.
        let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
        // The kernel would read a `%` as "pick a number": a port's name is its own.
        if name.contains('%') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TAP name {name:?} contains '%'"),
            ));
        }
        let (file, _) = open(name, vnet::LEN, offloads as libc::c_ulong)?;
        if let Some(mac) = mac {
            super::iface::set_hw_addr(name, mac)?;
        }
        super::iface::set_up(name)?;
        Ok(Tap {
            file,
            name: name.to_string(),
        })
    }

    /// A "device" that is any datagram file, for tests of the batch logic without a
    /// namespace: one read or write per frame, as a TAP does.
    #[cfg(test)]
    pub(crate) fn from_file(file: File, name: &str) -> Tap {
        Tap {
            file,
            name: name.to_string(),
        }
    }

    /// The device name it was created with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame (virtio-net header first) into `buf`; `Ok(0)` never happens for a
    /// live device. `WouldBlock` when nothing is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame (virtio-net header first).
    pub fn send(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.file.write(frame)
    }
}

/// Creates TAP device `name` (not yet up; it must not exist) with virtio-net headers of
/// `hdr_len` bytes and the offloads `offloads` (`TUN_F_*`) on. A name with `%d` in it
/// lets the kernel pick the first free number; the name the device got comes back.
pub(super) fn open(
    name: &str,
    hdr_len: usize,
    offloads: libc::c_ulong,
) -> io::Result<(File, String)> {
    if !name.contains('%') && super::iface::index(name).is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("interface {name} already exists"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/net/tun: {e}")))?;
    let mut req = super::iface::ifreq_for(name)?;
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    let fd = file.as_raw_fd();
    // SAFETY: TUNSETIFF reads and writes only `req`, a valid ifreq.
    cvt(unsafe { libc::ioctl(fd, libc::TUNSETIFF as _, &mut req) })?;
    let hdr = hdr_len as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer.
    cvt(unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ as _, &hdr) })?;
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    cvt(unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD as _, offloads) })?;
    // TUNSETIFF wrote the device's name back, NUL-terminated within IFNAMSIZ.
    let got: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((file, String::from_utf8_lossy(&got).into_owned()))
}

/// Writes one frame (virtio-net header first) to a TAP's fd, from any thread.
pub fn write_frame(fd: RawFd, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: `frame` is valid for reads of its length for the duration of the call.
    let r = unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
