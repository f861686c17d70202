//! The rtnetlink requests the VTEP's GSO TAP makes, asked directly rather than by
//! running iproute2: which device and next hop the kernel routes a remote through
//! (`RTM_GETROUTE`, policy routing included), and the link-layer address it has for
//! that next hop (`RTM_GETNEIGH` of one entry, Linux 5.0 or later); and the plumbing
//! [`super::tc`] shares: one socket per request, an answer (a reply, an acknowledgement
//! or a dump) waited for at most a second, kernel errors as their errno.
//! netlink-packet-route builds and parses the messages; netlink-sys is the socket.

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// How long the kernel gets to answer a request.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Where the kernel sends a packet to a remote: the output device and, when the remote
/// is not on its link, the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub ifindex: u32,
    pub gateway: Option<Ipv4Addr>,
    /// The source address the kernel picked (absent when the request named one).
    pub src: Option<Ipv4Addr>,
}

impl Hop {
    /// The address whose neighbour entry the packet is sent to.
    pub fn next(&self, dst: Ipv4Addr) -> Ipv4Addr {
        self.gateway.unwrap_or(dst)
    }
}

/// The route the kernel would use from `src` (any source if `None`) to `dst`.
pub fn route(dst: Ipv4Addr, src: Option<Ipv4Addr>) -> io::Result<Hop> {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = 32;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    if let Some(s) = src {
        m.header.source_prefix_length = 32;
        m.attributes
            .push(RouteAttribute::Source(RouteAddress::Inet(s)));
    }
    let reply = match ask(RouteNetlinkMessage::GetRoute(m))? {
        RouteNetlinkMessage::NewRoute(r) => r,
        _ => return Err(bad("a route request answered with something else")),
    };
    hop_of(&reply).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("the route to {dst} names no output device"),
        )
    })
}

/// The output device, gateway and source a route reply names, if it names a device.
fn hop_of(r: &RouteMessage) -> Option<Hop> {
    let mut hop = Hop {
        ifindex: 0,
        gateway: None,
        src: None,
    };
    for a in &r.attributes {
        match a {
            RouteAttribute::Oif(i) => hop.ifindex = *i,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => hop.gateway = Some(*g),
            RouteAttribute::PrefSource(RouteAddress::Inet(s)) => hop.src = Some(*s),
            _ => {}
        }
    }
    (hop.ifindex != 0).then_some(hop)
}

/// The Ethernet address the kernel's neighbour table holds for `ip` on device
/// `ifindex`, if it has a usable one (`None`: unknown, incomplete or failed).
pub fn neighbour(ifindex: u32, ip: Ipv4Addr) -> io::Result<Option<[u8; 6]>> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = ifindex;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    let reply = match ask(RouteNetlinkMessage::GetNeighbour(m)) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Ok(RouteNetlinkMessage::NewNeighbour(n)) => n,
        Ok(_) => return Err(bad("a neighbour request answered with something else")),
        Err(e) => return Err(e),
    };
    Ok(usable_mac(&reply))
}

/// The link-layer address of a neighbour entry whose state lets it be used: reachable,
/// stale (usable, to be confirmed by the next sender), delay, probe, permanent.
fn usable_mac(n: &NeighbourMessage) -> Option<[u8; 6]> {
    use NeighbourState as S;
    if !matches!(
        n.header.state,
        S::Reachable | S::Stale | S::Delay | S::Probe | S::Permanent
    ) {
        return None;
    }
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(m) if m.len() == 6 && m.iter().any(|&b| b != 0) => {
            Some([m[0], m[1], m[2], m[3], m[4], m[5]])
        }
        _ => None,
    })
}

/// Sends request `msg` and returns its one reply.
pub(super) fn ask(msg: RouteNetlinkMessage) -> io::Result<RouteNetlinkMessage> {
    let sock = open()?;
    send(&sock, msg, 0)?;
    let mut reply = None;
    read(&sock, |raw| match parse(raw)?.payload {
        NetlinkPayload::InnerMessage(inner) => {
            reply = Some(inner);
            Ok(true)
        }
        NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_io()),
        NetlinkPayload::Error(_) => Err(bad("an acknowledgement instead of an answer")),
        _ => Ok(false),
    })?;
    reply.ok_or_else(|| bad("no answer"))
}

/// Sends `msg` (with `flags` added) asking for an acknowledgement, and waits for it.
pub(super) fn ack(msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    let sock = open()?;
    send(&sock, msg, flags | NLM_F_ACK)?;
    read(&sock, |raw| match parse(raw)?.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(true),
            Some(_) => Err(e.to_io()),
        },
        _ => Ok(false),
    })
}

/// Sends dump request `msg` and collects what comes back until the dump's end: the
/// messages `keep` accepts (it sees each one's bytes, netlink header first, before
/// they are parsed: what is not ours is never parsed).
pub(super) fn dump(
    msg: RouteNetlinkMessage,
    keep: impl Fn(&[u8]) -> bool,
) -> io::Result<Vec<RouteNetlinkMessage>> {
    let sock = open()?;
    send(&sock, msg, NLM_F_DUMP)?;
    let mut out = Vec::new();
    read(&sock, |raw| {
        // Below 16 (NLMSG_MIN_TYPE): netlink's own (error, done, …), always read.
        let kind = u16::from_ne_bytes([raw[4], raw[5]]);
        if kind >= 16 && !keep(raw) {
            return Ok(false);
        }
        match parse(raw)?.payload {
            NetlinkPayload::InnerMessage(inner) => {
                out.push(inner);
                Ok(false)
            }
            // A dump the kernel could not finish ends with its errno in the DONE
            // message: what came before is not the whole answer.
            NetlinkPayload::Done(d) if d.code < 0 => {
                Err(io::Error::from_raw_os_error(d.code.saturating_neg()))
            }
            NetlinkPayload::Done(_) => Ok(true),
            NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_io()),
            NetlinkPayload::Error(_) => Err(bad("an acknowledgement instead of a dump")),
            _ => Ok(false),
        }
    })?;
    Ok(out)
}

fn open() -> io::Result<Socket> {
    let sock = Socket::new(NETLINK_ROUTE)?;
    socket2::SockRef::from(&sock).set_read_timeout(Some(ANSWER_WITHIN))?;
    Ok(sock)
}

fn send(sock: &Socket, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = 1;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    sock.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
    Ok(())
}

/// Reads the answer, handing each message's bytes (at least a netlink header's worth)
/// to `each` until it says the answer is complete (or fails); a second without one is
/// a timeout.
fn read(sock: &Socket, mut each: impl FnMut(&[u8]) -> io::Result<bool>) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    loop {
        buf.clear();
        let n = sock.recv(&mut buf, 0).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "rtnetlink: no answer from the kernel within 1 s",
                )
            } else {
                e
            }
        })?;
        for m in messages(&buf[..n.min(buf.len())]) {
            if each(m?)? {
                return Ok(());
            }
        }
    }
}

/// The netlink messages in one datagram, each checked to hold a header and to lie
/// within it; after one that does not, nothing more is read.
fn messages(mut rest: &[u8]) -> impl Iterator<Item = io::Result<&[u8]>> {
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = rest
            .get(..4)
            .map(|l| u32::from_ne_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .filter(|&l| l >= 16 && l <= rest.len());
        let Some(len) = len else {
            rest = &[];
            return Some(Err(bad("a truncated message")));
        };
        let m = &rest[..len];
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some(Ok(m))
    })
}

/// One message parsed; a message that does not parse is an error, not a panic.
fn parse(raw: &[u8]) -> io::Result<NetlinkMessage<RouteNetlinkMessage>> {
    NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw).map_err(|e| bad(&e.to_string()))
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("rtnetlink: {why}"))
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
        let collect = |b: &[u8]| messages(b).map(|m| m.and_then(parse)).collect::<Vec<_>>();
        // Too short for a header, and a length beyond the datagram.
        assert!(collect(&[1, 2, 3])[0].is_err());
        let mut long = vec![0u8; 20];
        long[..4].copy_from_slice(&200u32.to_ne_bytes());
        assert!(collect(&long)[0].is_err());
        // An error message carrying -ENOENT, then nothing.
        let mut e = vec![0u8; 36];
        e[..4].copy_from_slice(&36u32.to_ne_bytes());
        e[4..6].copy_from_slice(&2u16.to_ne_bytes());
        e[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        e[20..24].copy_from_slice(&20u32.to_ne_bytes());
        let got = collect(&e);
        assert_eq!(got.len(), 1);
        let NetlinkPayload::Error(err) = &got[0].as_ref().unwrap().payload else {
            panic!("{:?}", got[0]);
        };
        assert_eq!(err.to_io().raw_os_error(), Some(libc::ENOENT));
        // A route reply naming a device and a gateway, with a truncated attribute
        // after them: a parse error, not a panic.
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.attributes = vec![
            RouteAttribute::Oif(7),
            RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(192, 0, 2, 1))),
            RouteAttribute::PrefSource(RouteAddress::Inet(Ipv4Addr::new(192, 0, 2, 9))),
        ];
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)),
        );
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        let Ok(NetlinkMessage {
            payload: NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(back)),
            ..
        }) = collect(&buf).remove(0)
        else {
            panic!("the route reply did not parse back");
        };
        assert_eq!(
            hop_of(&back),
            Some(Hop {
                ifindex: 7,
                gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
                src: Some(Ipv4Addr::new(192, 0, 2, 9)),
            })
        );
        let mut cut = buf.clone();
        cut.extend_from_slice(&[200, 0, 5, 0]);
        let len = cut.len() as u32;
        cut[..4].copy_from_slice(&len.to_ne_bytes());
        assert!(collect(&cut).remove(0).is_err());
    }

    #[test]
    fn only_usable_neighbour_states_give_a_mac() {
        let mut n = NeighbourMessage::default();
        n.attributes = vec![NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 9])];
        n.header.state = NeighbourState::Stale;
        assert_eq!(usable_mac(&n), Some([2, 0, 0, 0, 0, 9]));
        for s in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::None,
        ] {
            n.header.state = s;
            assert_eq!(usable_mac(&n), None, "{s:?}");
        }
        n.header.state = NeighbourState::Reachable;
        n.attributes = vec![NeighbourAttribute::LinkLayerAddress(vec![0; 6])];
        assert_eq!(usable_mac(&n), None);
    }
}
