//! Interface lookups and flags through ioctls on a throwaway socket.

use std::ffi::CString;
use std::io;

use super::cvt;

/// The index of interface `name` in this network namespace, if it exists.
pub fn index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// The name of the interface with index `ifindex` in this network namespace, if any.
pub fn name_of(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: `buf` holds IFNAMSIZ bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    let c = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    c.to_str().ok().map(str::to_string)
}

/// A zeroed `ifreq` naming interface `name`, after checking the name fits.
pub(crate) fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

struct CtlSock(libc::c_int);
impl CtlSock {
    fn new() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned by the returned guard.
        let fd =
            cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
        Ok(CtlSock(fd))
    }
}
impl Drop for CtlSock {
    fn drop(&mut self) {
        // SAFETY: we own the fd and close it once.
        unsafe { libc::close(self.0) };
    }
}

/// Runs interface ioctl `op` (a SIOCG*/SIOCS* request on an `ifreq`) on `req`.
fn ioctl(op: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    let s = CtlSock::new()?;
    // SAFETY: the interface ioctls read and write only the `ifreq` they are given, and
    // `req` is a valid one for the duration of the call.
    cvt(unsafe { libc::ioctl(s.0, op as _, req as *mut libc::ifreq) })?;
    Ok(())
}

/// `req` for `name` after the query ioctl `op` filled it in.
fn query(name: &str, op: libc::c_ulong) -> io::Result<libc::ifreq> {
    let mut req = ifreq_for(name)?;
    ioctl(op, &mut req)?;
    Ok(req)
}

/// The interface's flags (IFF_UP, IFF_RUNNING, …).
pub fn flags(name: &str) -> io::Result<u32> {
    let req = query(name, libc::SIOCGIFFLAGS)?;
    // SAFETY: after SIOCGIFFLAGS the union holds ifru_flags.
    Ok(unsafe { req.ifr_ifru.ifru_flags } as u16 as u32)
}

/// Brings the interface administratively up.
pub fn set_up(name: &str) -> io::Result<()> {
    let mut req = query(name, libc::SIOCGIFFLAGS)?;
    // SAFETY: the union holds ifru_flags after SIOCGIFFLAGS; we update it in place.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl(libc::SIOCSIFFLAGS, &mut req)
}

/// The interface's MAC address.
pub fn hw_addr(name: &str) -> io::Result<[u8; 6]> {
    link_addr(name).map(|(_, mac)| mac)
}

/// The interface's link-layer type (ARPHRD_*) and the first six bytes of its address,
/// from one query, so that the two cannot come from different devices when a name
/// is reused between two reads.
pub fn link_addr(name: &str) -> io::Result<(u16, [u8; 6])> {
    let req = query(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: after SIOCGIFHWADDR the union holds ifru_hwaddr.
    let a = unsafe { req.ifr_ifru.ifru_hwaddr };
    let d = a.sa_data;
    Ok((
        a.sa_family,
        [
            d[0] as u8, d[1] as u8, d[2] as u8, d[3] as u8, d[4] as u8, d[5] as u8,
        ],
    ))
}

/// Sets the interface's MAC address.
pub fn set_hw_addr(name: &str, mac: [u8; 6]) -> io::Result<()> {
    let mut req = ifreq_for(name)?;
    // SAFETY: writing the ifru_hwaddr member of a zeroed union, as SIOCSIFHWADDR expects.
    unsafe {
        req.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
        for (d, s) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
            *d = s as libc::c_char;
        }
    }
    ioctl(libc::SIOCSIFHWADDR, &mut req)
}

/// The interface's MTU.
pub fn mtu(name: &str) -> io::Result<u32> {
    let req = query(name, libc::SIOCGIFMTU)?;
    // SAFETY: after SIOCGIFMTU the union holds ifru_mtu.
    Ok(unsafe { req.ifr_ifru.ifru_mtu }.max(0) as u32)
}

/// The link-layer type of the interface (ARPHRD_*), to refuse non-Ethernet devices.
pub fn hw_type(name: &str) -> io::Result<u16> {
    link_addr(name).map(|(family, _)| family)
}

/// Interface `name` made ready for a port: it must exist (`NotFound`) and be an
/// Ethernet device (`InvalidInput`); brought up if down. Its index.
pub fn ethernet_up(name: &str) -> io::Result<u32> {
    let ifindex = index(name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name}"),
        )
    })?;
    if hw_type(name)? != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface {name} is not an Ethernet device"),
        ));
    }
    if flags(name)? & libc::IFF_UP as u32 == 0 {
        set_up(name)?;
    }
    Ok(ifindex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_names_are_checked() {
        assert_eq!(index("lo"), Some(1));
        assert_eq!(index("no-such-if-xyz"), None);
        assert!(flags("lo").unwrap() & libc::IFF_UP as u32 != 0);
        assert_eq!(hw_type("lo").unwrap(), libc::ARPHRD_LOOPBACK);
        assert_eq!(link_addr("lo").unwrap(), (libc::ARPHRD_LOOPBACK, [0; 6]));
        assert!(flags("this-name-is-way-too-long").is_err());
    }
}
