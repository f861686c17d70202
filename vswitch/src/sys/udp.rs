//! UDP sockets for VXLAN: bound, non-blocking, read with `recvmmsg` and written with
//! `sendmmsg` (or one `sendmsg` with `UDP_SEGMENT` for a run of equal-size datagrams),
//! and the underlay path MTU towards a remote.

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::cvt;
use crate::pool::Buf;

/// Datagrams read or written by one `recvmmsg`/`sendmmsg` call at most.
pub const BATCH: usize = 32;

/// Socket buffer size asked for: a burst of super-frames must not overflow it.
const SOCK_BUF: usize = 4 << 20;

/// A non-blocking UDP socket bound to `local` (any address if `None`) and `port` (0: an
/// ephemeral port the kernel picks from `ip_local_port_range`).
pub fn bind(local: Option<Ipv4Addr>, port: u16) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    // As root the FORCE variants pass rmem_max/wmem_max; otherwise the plain ones cap.
    if super::setsockopt_int(
        s.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        SOCK_BUF as libc::c_int,
    )
    .is_err()
    {
        let _ = s.set_recv_buffer_size(SOCK_BUF);
    }
    if super::setsockopt_int(
        s.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        SOCK_BUF as libc::c_int,
    )
    .is_err()
    {
        let _ = s.set_send_buffer_size(SOCK_BUF);
    }
    let addr = SocketAddrV4::new(local.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
    s.bind(&SocketAddr::V4(addr).into())?;
    Ok(s)
}

/// A socket that only sends: bound like [`bind`] but with the smallest receive buffer
/// and a filter that drops whatever arrives, so datagrams sent to its port by anyone on
/// the underlay cannot pin kernel memory in a queue nobody reads.
pub fn bind_send_only(local: Option<Ipv4Addr>) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    // "return 0": accept no bytes of any packet.
    s.attach_filter(&[libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }])?;
    let _ = s.set_recv_buffer_size(0);
    if super::setsockopt_int(
        s.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        SOCK_BUF as libc::c_int,
    )
    .is_err()
    {
        let _ = s.set_send_buffer_size(SOCK_BUF);
    }
    let addr = SocketAddrV4::new(local.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
    s.bind(&SocketAddr::V4(addr).into())?;
    Ok(s)
}

/// The local port a socket is bound to.
pub fn local_port(s: &Socket) -> Option<u16> {
    s.local_addr().ok()?.as_socket().map(|a| a.port())
}

/// What one received datagram was.
#[derive(Debug, Clone, Copy)]
pub struct RecvMeta {
    /// Index of the buffer it was read into.
    pub slot: usize,
    pub len: usize,
    pub src: Ipv4Addr,
    /// The sender's UDP port.
    pub port: u16,
    /// Larger than its buffer: cut.
    pub truncated: bool,
    /// With `UDP_GRO`: the size of each datagram of the run this read holds back to
    /// back (the last may be shorter); 0 for a single datagram.
    pub gro: usize,
}

impl Default for RecvMeta {
    fn default() -> Self {
        RecvMeta {
            slot: 0,
            len: 0,
            src: Ipv4Addr::UNSPECIFIED,
            port: 0,
            truncated: false,
            gro: 0,
        }
    }
}

/// `UDP_GRO` (linux/udp.h): receive runs of same-size datagrams from one sender in one
/// read, with their size in a control message.
const UDP_GRO: libc::c_int = 104;

/// Asks the kernel to hand `s` runs of datagrams whole (`UDP_GRO`): one read, and no
/// segmenting in the kernel, for what a peer sent with `UDP_SEGMENT`.
pub fn enable_gro(s: &Socket) -> io::Result<()> {
    super::setsockopt_int(s.as_raw_fd(), libc::SOL_UDP, UDP_GRO, 1)
}

/// Room for one control message with an `int`: the `UDP_GRO` segment size.
#[repr(C)]
#[derive(Clone, Copy)]
struct IntCmsg {
    hdr: libc::cmsghdr,
    val: libc::c_int,
    _pad: libc::c_int,
}

/// Reads up to [`BATCH`] datagrams, one into each buffer of `bufs` that is there,
/// starting `offset` bytes in (room for a header the caller writes in front). Fills
/// `meta` and returns how many arrived (0 when none is waiting).
pub fn recv_batch(
    fd: RawFd,
    bufs: &mut [Option<Buf>],
    offset: usize,
    meta: &mut [RecvMeta],
) -> io::Result<usize> {
    // SAFETY: iovec, mmsghdr and sockaddr_in are plain old data; zero is valid for each.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut names: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above (cmsghdr and c_int are plain old data).
    let mut ctrl: [IntCmsg; BATCH] = unsafe { std::mem::zeroed() };
    let mut slots = [0usize; BATCH];
    let mut n = 0;
    for (i, b) in bufs.iter_mut().enumerate() {
        if n == BATCH || n == meta.len() {
            break;
        }
        let Some(b) = b.as_mut() else { continue };
        let Some(room) = b.spare().get_mut(offset..) else {
            continue;
        };
        iov[n].iov_base = room.as_mut_ptr().cast();
        iov[n].iov_len = room.len();
        slots[n] = i;
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    for i in 0..n {
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
        msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        msgs[i].msg_hdr.msg_control = (&mut ctrl[i] as *mut IntCmsg).cast();
        msgs[i].msg_hdr.msg_controllen = std::mem::size_of::<IntCmsg>();
    }
    // SAFETY: each message points at its own iovec (a part of one of the caller's
    // buffers, valid for writes of that length and not aliased by another), its own
    // sockaddr_in and its own control block; all outlive the call.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
            _ => Err(e),
        };
    }
    let got = r as usize;
    for i in 0..got {
        let cap = iov[i].iov_len;
        let len = (msgs[i].msg_len as usize).min(cap);
        if let Some(b) = bufs[slots[i]].as_mut() {
            b.set_len(offset + len);
        }
        meta[i] = RecvMeta {
            slot: slots[i],
            len,
            src: Ipv4Addr::from(u32::from_be(names[i].sin_addr.s_addr)),
            port: u16::from_be(names[i].sin_port),
            truncated: msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            gro: gro_size(&msgs[i].msg_hdr, &ctrl[i]),
        };
    }
    Ok(got)
}

/// The `UDP_GRO` segment size in a received message's control block, if there is one.
fn gro_size(hdr: &libc::msghdr, c: &IntCmsg) -> usize {
    // The kernel writes at most one message here (the only control option we set); it
    // is laid out as CMSG_FIRSTHDR/CMSG_DATA say: the header, then the int.
    let whole = std::mem::size_of::<libc::cmsghdr>() + std::mem::size_of::<libc::c_int>();
    if hdr.msg_controllen < whole
        || c.hdr.cmsg_level != libc::SOL_UDP
        || c.hdr.cmsg_type != UDP_GRO
        || c.val <= 0
    {
        return 0;
    }
    c.val as usize
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// How a batch send ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams handed to the kernel or refused for good (counted in `errors`).
    pub done: usize,
    /// Of those, refused (no route, too big, …).
    pub errors: u64,
    /// The socket's buffer is full: the rest is to be retried.
    pub blocked: bool,
}

/// Sends each `(datagram, destination)` with as few `sendmmsg` calls as possible. A
/// datagram the kernel refuses by itself (no route to the remote, too big) is counted
/// and skipped, so one unreachable remote does not stall the others.
pub fn send_batch(
    fd: RawFd,
    msgs: &[(&[u8], SocketAddrV4)],
    mut refused: impl FnMut(usize),
) -> Sent {
    let mut out = Sent::default();
    while out.done < msgs.len() {
        let chunk = &msgs[out.done..msgs.len().min(out.done + BATCH)];
        // SAFETY: plain old data, zero is valid.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut names: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, (data, to)) in chunk.iter().enumerate() {
            iov[i].iov_base = data.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = data.len();
            names[i] = sockaddr(*to);
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
            hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        }
        // SAFETY: the headers point at `iov` and `names`, which point at the caller's
        // datagrams; all outlive the call and the kernel only reads them.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                chunk.len() as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ENOBUFS) => {
                    out.blocked = true;
                    return out;
                }
                // The first datagram was refused by itself: count it, go on.
                _ => {
                    refused(out.done);
                    out.errors += 1;
                    out.done += 1;
                }
            }
        } else {
            out.done += r as usize;
        }
    }
    out
}

/// `UDP_SEGMENT` control message: the segment size of a GSO send.
#[repr(C)]
struct GsoCmsg {
    hdr: libc::cmsghdr,
    size: u16,
    _pad: [u8; 6],
}

/// Sends `data` to `to` as datagrams of `seg` bytes each (the last may be shorter) with
/// one `sendmsg`: the kernel (or the receiving end) splits it, so a whole TCP
/// super-frame costs one system call. `seg` 0 or ≥ `data.len()` sends one datagram.
pub fn send_gso(fd: RawFd, data: &[u8], to: SocketAddrV4, seg: usize) -> io::Result<()> {
    send_gso_vectored(fd, &[IoSlice::new(data)], to, seg)
}

/// [`send_gso`] of the concatenation of `parts`, gathered by the kernel as it copies
/// them: a datagram's headers and its payload need not be next to each other in
/// memory, so a super-frame's payload is sent from where it was received.
pub fn send_gso_vectored(
    fd: RawFd,
    parts: &[IoSlice<'_>],
    to: SocketAddrV4,
    seg: usize,
) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut name = sockaddr(to);
    // SAFETY: plain old data; zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec on Unix (std's documented guarantee); the
    // kernel only reads through it.
    msg.msg_iov = parts.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = parts.len();
    msg.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    // SAFETY: as above.
    let mut cmsg: GsoCmsg = unsafe { std::mem::zeroed() };
    if seg > 0 && seg < len {
        cmsg.hdr.cmsg_level = libc::SOL_UDP;
        cmsg.hdr.cmsg_type = libc::UDP_SEGMENT;
        cmsg.hdr.cmsg_len = std::mem::size_of::<libc::cmsghdr>() + std::mem::size_of::<u16>();
        cmsg.size = seg.min(u16::MAX as usize) as u16;
        msg.msg_control = (&mut cmsg as *mut GsoCmsg).cast();
        msg.msg_controllen = std::mem::size_of::<GsoCmsg>();
    }
    // SAFETY: `msg` points at `parts` (the caller's bytes), `name` and `cmsg`, all alive
    // for the call; the control block is laid out as CMSG_FIRSTHDR expects (header,
    // then data, padded to alignment).
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The MTU of the path from `local` (any if `None`) to `remote` (port `port`) as the
/// kernel sees it now: the egress interface's, or a learned path MTU. `None` if there
/// is no route.
pub fn path_mtu(local: Option<Ipv4Addr>, remote: Ipv4Addr, port: u16) -> Option<u32> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).ok()?;
    if let Some(l) = local {
        s.bind(&SocketAddr::V4(SocketAddrV4::new(l, 0)).into())
            .ok()?;
    }
    s.connect(&SocketAddr::V4(SocketAddrV4::new(remote, port)).into())
        .ok()?;
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `mtu` and `len` are valid for writes and `len` holds `mtu`'s size.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    cvt(r).ok()?;
    u32::try_from(mtu).ok().filter(|&m| m > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip_on_loopback() {
        let rx = bind(Some(Ipv4Addr::LOCALHOST), 0).unwrap();
        let port = local_port(&rx).unwrap();
        let tx = bind_send_only(Some(Ipv4Addr::LOCALHOST)).unwrap();
        let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let a = [1u8; 10];
        let b = [2u8; 3000];
        let sent = send_batch(tx.as_raw_fd(), &[(&a, to), (&b, to)], |_| {});
        assert_eq!(sent.done, 2);
        assert_eq!(sent.errors, 0);
        // A GSO send of 2.5 segments arrives as three datagrams.
        send_gso(tx.as_raw_fd(), &[7u8; 250], to, 100).unwrap();
        let pool = crate::pool::Pool::new(4, 1);
        let mut bufs = vec![pool.get(100), None, pool.get(4000)];
        let mut got = Vec::new();
        for _ in 0..50 {
            let mut meta = [RecvMeta::default(); 4];
            let n = recv_batch(rx.as_raw_fd(), &mut bufs, 2, &mut meta).unwrap();
            for m in &meta[..n] {
                assert_eq!(m.src, Ipv4Addr::LOCALHOST);
                assert_ne!(m.slot, 1, "no buffer in slot 1");
                let b = bufs[m.slot].as_ref().unwrap();
                assert_eq!(b.bytes().len(), 2 + m.len);
                got.push(m.len);
            }
            if got.len() >= 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, vec![10, 3000, 100, 100, 50]);
        // With UDP_GRO, a GSO send arrives as one read with its segment size.
        enable_gro(&rx).unwrap();
        send_gso(tx.as_raw_fd(), &[9u8; 250], to, 100).unwrap();
        let mut seen = None;
        for _ in 0..50 {
            let mut meta = [RecvMeta::default(); 4];
            let n = recv_batch(rx.as_raw_fd(), &mut bufs, 2, &mut meta).unwrap();
            if n > 0 {
                seen = Some((meta[0].len, meta[0].gro));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(seen, Some((250, 100)));
        // Gathered from pieces, it is the same run.
        let (a, b) = ([9u8; 130], [9u8; 120]);
        send_gso_vectored(
            tx.as_raw_fd(),
            &[IoSlice::new(&a), IoSlice::new(&b)],
            to,
            100,
        )
        .unwrap();
        let mut seen = None;
        for _ in 0..50 {
            let mut meta = [RecvMeta::default(); 4];
            let n = recv_batch(rx.as_raw_fd(), &mut bufs, 2, &mut meta).unwrap();
            if n > 0 {
                let m = meta[0];
                let got = &bufs[m.slot].as_ref().unwrap().bytes()[2..];
                assert!(got.iter().all(|&x| x == 9));
                seen = Some((m.len, m.gro));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(seen, Some((250, 100)));
        assert!(path_mtu(None, Ipv4Addr::LOCALHOST, port).unwrap() > 0);
    }
}
