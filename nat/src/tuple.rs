//! The 5-tuple that names a flow in one direction (protocol, source address:port,
//! destination address:port) and reading it out of a packet. ICMP echo uses its
//! identifier as a port: a request carries it as the source port (destination port
//! 0), a reply as the destination port (source port 0), so the reverse of a request's
//! tuple is its reply's. This module owns that mapping and the classification of a
//! packet into what conntrack needs (TCP flags, echo or error, the quoted tuple).

use std::fmt;
use std::net::Ipv4Addr;

use crate::packet::{icmp_type, proto, IcmpPacket, Ipv4Packet, Ports, TcpPacket, UdpPacket};

/// A tracked transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (echo, by identifier).
    Icmp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => proto::TCP,
            Proto::Udp => proto::UDP,
            Proto::Icmp => proto::ICMP,
        }
    }

    /// The protocol for an IP protocol number, if tracked.
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            proto::TCP => Some(Proto::Tcp),
            proto::UDP => Some(Proto::Udp),
            proto::ICMP => Some(Proto::Icmp),
            _ => None,
        }
    }

    /// The lower-case name (`tcp`, `udp`, `icmp`), as `conntrack -L` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

/// An address and a port (for ICMP echo, the identifier or 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// The IPv4 address.
    pub addr: Ipv4Addr,
    /// The port.
    pub port: u16,
}

impl Endpoint {
    /// An endpoint from its parts.
    pub const fn new(addr: Ipv4Addr, port: u16) -> Endpoint {
        Endpoint { addr, port }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

/// A flow's 5-tuple in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    /// The protocol.
    pub proto: Proto,
    /// The sender.
    pub src: Endpoint,
    /// The receiver.
    pub dst: Endpoint,
}

impl Tuple {
    /// A tuple from its parts.
    pub const fn new(proto: Proto, src: Endpoint, dst: Endpoint) -> Tuple {
        Tuple { proto, src, dst }
    }

    /// The same flow seen from the other side: source and destination swapped.
    pub fn reverse(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
        }
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.proto.as_str(), self.src, self.dst)
    }
}

/// What kind of packet a tuple came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TCP segment with these flags.
    Tcp {
        /// The flags byte.
        flags: u8,
    },
    /// A UDP datagram.
    Udp,
    /// An ICMP echo request (`true`) or reply (`false`).
    Echo {
        /// True for a request.
        request: bool,
    },
    /// An ICMP error quoting a packet whose tuple is `quoted` (as that packet was sent).
    Error {
        /// The tuple of the quoted packet.
        quoted: Tuple,
    },
}

/// Why a packet has no tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a well-formed IPv4 packet, or its L4 header is cut short.
    #[error("malformed packet")]
    Malformed,
    /// A fragment (not reassembled here).
    #[error("fragment")]
    Fragment,
    /// A protocol or ICMP type that is not tracked.
    #[error("protocol not tracked")]
    Unsupported,
}

/// A packet's tuple and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// The tuple the packet travels with.
    pub tuple: Tuple,
    /// What kind of packet it is.
    pub kind: Kind,
}

/// The L4 tuple of `l4` (the bytes after an IP header with protocol `p`), and its kind.
/// `quoted` relaxes the lengths for the piece of a packet an ICMP error quotes (only the
/// first 8 bytes of L4 are there) and refuses nested errors.
fn l4(p: u8, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8], quoted: bool) -> Result<Parsed, ParseError> {
    let tuple = |pr, sp, dp| Tuple::new(pr, Endpoint::new(src, sp), Endpoint::new(dst, dp));
    match Proto::from_number(p) {
        Some(Proto::Tcp) if quoted => {
            let v = Ports::new_checked(l4).map_err(|_| ParseError::Malformed)?;
            Ok(Parsed {
                tuple: tuple(Proto::Tcp, v.src_port(), v.dst_port()),
                kind: Kind::Tcp { flags: 0 },
            })
        }
        Some(Proto::Tcp) => {
            let v = TcpPacket::new_checked(l4).map_err(|_| ParseError::Malformed)?;
            Ok(Parsed {
                tuple: tuple(Proto::Tcp, v.src_port(), v.dst_port()),
                kind: Kind::Tcp { flags: v.flags() },
            })
        }
        Some(Proto::Udp) => {
            let v = UdpPacket::new_checked(l4).map_err(|_| ParseError::Malformed)?;
            Ok(Parsed {
                tuple: tuple(Proto::Udp, v.src_port(), v.dst_port()),
                kind: Kind::Udp,
            })
        }
        Some(Proto::Icmp) => {
            let v = IcmpPacket::new_checked(l4).map_err(|_| ParseError::Malformed)?;
            match v.msg_type() {
                icmp_type::ECHO_REQUEST => Ok(Parsed {
                    tuple: tuple(Proto::Icmp, v.echo_id(), 0),
                    kind: Kind::Echo { request: true },
                }),
                icmp_type::ECHO_REPLY => Ok(Parsed {
                    tuple: tuple(Proto::Icmp, 0, v.echo_id()),
                    kind: Kind::Echo { request: false },
                }),
                _ if v.is_error() && !quoted => {
                    let q = v.quoted().ok_or(ParseError::Malformed)?;
                    if q.is_fragment() && q.frag_offset() != 0 {
                        return Err(ParseError::Unsupported);
                    }
                    let inner = l4_of(&q, true)?;
                    if matches!(inner.kind, Kind::Echo { .. } | Kind::Tcp { .. } | Kind::Udp) {
                        Ok(Parsed {
                            tuple: tuple(Proto::Icmp, 0, 0),
                            kind: Kind::Error {
                                quoted: inner.tuple,
                            },
                        })
                    } else {
                        Err(ParseError::Unsupported)
                    }
                }
                _ => Err(ParseError::Unsupported),
            }
        }
        None => Err(ParseError::Unsupported),
    }
}

fn l4_of<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>, quoted: bool) -> Result<Parsed, ParseError> {
    l4(ip.protocol(), ip.src(), ip.dst(), ip.payload(), quoted)
}

/// Reads the tuple and kind of an IPv4 packet (starting at its IP header). Fragments
/// are refused: the first has the ports but the others do not, so none is tracked.
pub fn parse(pkt: &[u8]) -> Result<Parsed, ParseError> {
    let ip = Ipv4Packet::new_checked(pkt).map_err(|_| ParseError::Malformed)?;
    if ip.is_fragment() {
        return Err(ParseError::Fragment);
    }
    l4_of(&ip, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use proptest::prelude::*;

    #[test]
    fn tcp_udp_icmp_tuples() {
        let p = tcp(A, 1000, B, 80, 0x02, b"");
        let t = parse(&p).unwrap();
        assert_eq!(
            t.tuple,
            Tuple::new(Proto::Tcp, Endpoint::new(A, 1000), Endpoint::new(B, 80))
        );
        assert_eq!(t.kind, Kind::Tcp { flags: 0x02 });
        let u = parse(&udp(A, 53, B, 5353, b"hi")).unwrap();
        assert_eq!(u.kind, Kind::Udp);
        assert_eq!(u.tuple.reverse().src, Endpoint::new(B, 5353));
        let req = parse(&echo(A, B, true, 77)).unwrap();
        let rep = parse(&echo(B, A, false, 77)).unwrap();
        assert_eq!(req.tuple.reverse(), rep.tuple);
        assert_eq!(req.tuple.to_string(), "icmp 10.0.0.2:77 -> 192.0.2.9:0");
    }

    #[test]
    fn icmp_error_quotes() {
        let inner = udp(B, 5000, C, 53, b"query");
        let e = icmp_error(C, B, 3, 3, &inner);
        let t = parse(&e).unwrap();
        assert_eq!(
            t.kind,
            Kind::Error {
                quoted: Tuple::new(Proto::Udp, Endpoint::new(B, 5000), Endpoint::new(C, 53))
            }
        );
        // An error quoting an error is not followed.
        let nested = icmp_error(C, B, 11, 0, &e);
        assert_eq!(parse(&nested), Err(ParseError::Unsupported));
        // A quote shorter than header + 8 bytes is malformed.
        let mut short = icmp_error(C, B, 3, 3, &inner);
        let l = short.len() - (inner.len() - 27);
        short.truncate(l);
        fix_ip_len(&mut short);
        assert_eq!(parse(&short), Err(ParseError::Malformed));
    }

    #[test]
    fn refusals() {
        let mut f = udp(A, 1, B, 2, b"x");
        f[6] = 0x20;
        assert_eq!(parse(&f), Err(ParseError::Fragment));
        let mut g = udp(A, 1, B, 2, b"x");
        g[9] = 47;
        assert_eq!(parse(&g), Err(ParseError::Unsupported));
        assert_eq!(parse(&[0x45]), Err(ParseError::Malformed));
        let ts = icmp_raw(A, B, 13, 0, &[0; 12]);
        assert_eq!(parse(&ts), Err(ParseError::Unsupported));
    }

    proptest! {
        #[test]
        fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_is_total_on_near_valid(mut p in arb_packet(), i in any::<usize>(), v in any::<u8>()) {
            let i = i % p.len();
            p[i] = v;
            let _ = parse(&p);
        }
    }
}
