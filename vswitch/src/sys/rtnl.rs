//! Two rtnetlink questions the VTEP's GSO TAP needs answered every few seconds per
//! remote, asked directly rather than by running iproute2: which device and next hop
//! the kernel routes a remote through (`RTM_GETROUTE`, policy routing included), and
//! the link-layer address it has for that next hop (`RTM_GETNEIGH` of one entry,
//! Linux 5.0 or later). One request, one reply; no dumps, no subscriptions.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::cvt;

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
/// `struct rtmsg` and `struct ndmsg` are both 12 bytes.
const BODY: usize = 12;
const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Neighbour states whose link-layer address can be used: reachable, stale (usable,
/// to be confirmed by the next sender), delay, probe, permanent.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x80;

/// Where the kernel sends a packet to a remote: the output device and, when the remote
/// is not on its link, the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub ifindex: u32,
    pub gateway: Option<Ipv4Addr>,
}

impl Hop {
    /// The address whose neighbour entry the packet is sent to.
    pub fn next(&self, dst: Ipv4Addr) -> Ipv4Addr {
        self.gateway.unwrap_or(dst)
    }
}

/// The route the kernel would use from `src` (any source if `None`) to `dst`.
pub fn route(dst: Ipv4Addr, src: Option<Ipv4Addr>) -> io::Result<Hop> {
    let mut body = [0u8; BODY];
    body[0] = libc::AF_INET as u8;
    body[1] = 32;
    body[2] = if src.is_some() { 32 } else { 0 };
    let mut msg = header(RTM_GETROUTE, &body);
    attr(&mut msg, RTA_DST, &dst.octets());
    if let Some(s) = src {
        attr(&mut msg, RTA_SRC, &s.octets());
    }
    let reply = ask(&mut msg, RTM_NEWROUTE)?;
    let mut hop = Hop {
        ifindex: 0,
        gateway: None,
    };
    for (kind, data) in attrs(&reply) {
        match (kind, data.len()) {
            (RTA_OIF, 4) => hop.ifindex = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]),
            (RTA_GATEWAY, 4) => {
                hop.gateway = Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]))
            }
            _ => {}
        }
    }
    if hop.ifindex == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the route to {dst} names no output device"),
        ));
    }
    Ok(hop)
}

/// The Ethernet address the kernel's neighbour table holds for `ip` on device
/// `ifindex`, if it has a usable one (`None`: unknown, incomplete or failed).
pub fn neighbour(ifindex: u32, ip: Ipv4Addr) -> io::Result<Option<[u8; 6]>> {
    let mut body = [0u8; BODY];
    body[0] = libc::AF_INET as u8;
    body[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    let mut msg = header(RTM_GETNEIGH, &body);
    attr(&mut msg, NDA_DST, &ip.octets());
    let reply = match ask(&mut msg, RTM_NEWNEIGH) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        r => r?,
    };
    let state = u16::from_ne_bytes([reply[8], reply[9]]);
    if state & NUD_USABLE == 0 {
        return Ok(None);
    }
    let mac = attrs(&reply)
        .find(|(k, d)| *k == NDA_LLADDR && d.len() == 6)
        .map(|(_, d)| [d[0], d[1], d[2], d[3], d[4], d[5]]);
    Ok(mac.filter(|m| *m != [0; 6]))
}

/// A request: netlink header (length fixed up by `ask`) and the 12-byte body.
fn header(kind: u16, body: &[u8; BODY]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

fn attr(m: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    m.extend_from_slice(&(len as u16).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(data);
    m.resize(m.len().next_multiple_of(4), 0);
}

/// The attributes after the body of a reply (`reply` starts at the body).
fn attrs(reply: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = reply.get(BODY..).unwrap_or_default();
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*rest.first()?, *rest.get(1)?]));
        let kind = u16::from_ne_bytes([*rest.get(2)?, *rest.get(3)?]);
        let data = rest.get(4..len)?;
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind & 0x3fff, data))
    })
}

/// Sends request `msg` and returns the body (and attributes) of its one reply, which
/// must be of type `want`; a netlink error comes back as the errno it carries.
fn ask(msg: &mut [u8], want: u16) -> io::Result<Vec<u8>> {
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
    // SAFETY: plain socket(2) call; the descriptor is owned right after.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: `tv` lives across the call and its size is passed exactly.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    // SAFETY: sockaddr_nl is plain old data; zero is the kernel's address (pid 0).
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `msg` and `to` are valid for reads of the lengths passed.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&to as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    parse_reply(&buf[..n as usize], want)
}

/// The body of the first message in `buf`, checked to be of type `want`.
fn parse_reply(buf: &[u8], want: u16) -> io::Result<Vec<u8>> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("rtnetlink: {why}"));
    let hdr = buf.get(..NLMSG_HDR).ok_or_else(|| bad("short reply"))?;
    let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    let kind = u16::from_ne_bytes([hdr[4], hdr[5]]);
    let body = buf
        .get(NLMSG_HDR..len.min(buf.len()))
        .ok_or_else(|| bad("bad length"))?;
    if kind == NLMSG_ERROR {
        let code = body
            .get(..4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .ok_or_else(|| bad("short error"))?;
        return Err(if code < 0 {
            io::Error::from_raw_os_error(-code)
        } else {
            bad("acknowledgement instead of an answer")
        });
    }
    if kind != want || body.len() < BODY {
        return Err(bad("unexpected reply"));
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_routes_through_lo_without_a_gateway() {
        let hop = route(Ipv4Addr::LOCALHOST, None).unwrap();
        assert_eq!(Some(hop.ifindex), crate::sys::iface::index("lo"));
        assert_eq!(hop.gateway, None);
        assert_eq!(hop.next(Ipv4Addr::LOCALHOST), Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn an_unknown_neighbour_is_none_not_an_error() {
        let lo = crate::sys::iface::index("lo").unwrap();
        assert_eq!(neighbour(lo, Ipv4Addr::new(203, 0, 113, 77)).unwrap(), None);
    }

    #[test]
    fn replies_are_parsed_defensively() {
        assert!(parse_reply(&[1, 2, 3], RTM_NEWROUTE).is_err());
        // An error message carrying -ENOENT.
        let mut m = header(NLMSG_ERROR, &[0; BODY]);
        m[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        let e = parse_reply(&m, RTM_NEWROUTE).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        // A route reply with an OIF attribute and a truncated one after it.
        let mut m = header(RTM_NEWROUTE, &[0; BODY]);
        attr(&mut m, RTA_OIF, &7u32.to_ne_bytes());
        m.extend_from_slice(&[200, 0, 5, 0]);
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        let body = parse_reply(&m, RTM_NEWROUTE).unwrap();
        let got: Vec<_> = attrs(&body).collect();
        assert_eq!(got, vec![(RTA_OIF, &7u32.to_ne_bytes()[..])]);
        assert!(parse_reply(&m, RTM_NEWNEIGH).is_err());
    }
}
