//! Stage 4a, divert: a service backend's reply to a client in its own network goes to
//! the gateway instead of straight to the client. The VIP's flows are DNAT'ed without
//! SNAT (the backend sees the client's real address), so the backend answers the
//! client directly at L2, and the reply would arrive from the backend's address where
//! the client expects the VIP's. Linux has the same problem with kube-proxy on a bridge
//! and solves it with `br_netfilter`, which makes bridged packets pass conntrack; here
//! the bridge hands exactly the packets that can be such replies (IPv4 TCP/UDP from a
//! backend's service port) to the gateway, whose conntrack translates them back (or,
//! for a flow that never went through the VIP, routes them on unchanged).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use nat::tuple::Proto;

/// The endpoints of a bridge whose packets may be replies of a service's flows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replies {
    /// (address, IP protocol, source port).
    endpoints: HashSet<([u8; 4], u8, u16)>,
    /// Backends of services that serve every port: any TCP/UDP packet from them.
    any_port: HashSet<[u8; 4]>,
}

impl Replies {
    /// The set for `sources` (what [`nat::lb::Service::reply_sources`] gives).
    pub fn new(sources: impl IntoIterator<Item = (Ipv4Addr, Option<(Proto, u16)>)>) -> Self {
        let mut r = Replies::default();
        for (a, pp) in sources {
            match pp {
                Some((p, port)) => {
                    r.endpoints.insert((a.octets(), p.number(), port));
                }
                None => {
                    r.any_port.insert(a.octets());
                }
            }
        }
        r
    }

    /// True if no packet needs diverting.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty() && self.any_port.is_empty()
    }

    /// True if `payload` (what follows an IPv4 EtherType) is TCP or UDP from one of the
    /// endpoints. A fragment past the first carries no ports and is not looked at.
    #[inline]
    pub fn matches(&self, payload: &[u8]) -> bool {
        let Ok(ip) = wire::ipv4::Ipv4Packet::new_checked(payload) else {
            return false;
        };
        let proto = ip.protocol();
        if proto != wire::ip_proto::TCP && proto != wire::ip_proto::UDP {
            return false;
        }
        let src = ip.src().octets();
        if self.any_port.contains(&src) {
            return true;
        }
        match wire::bytes::be16(ip.payload(), 0) {
            Some(sport) => self.endpoints.contains(&(src, proto, sport)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(src: [u8; 4], proto: u8, sport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&[10, 0, 0, 9]);
        let c = wire::checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p
    }

    #[test]
    fn matches_backend_replies_only() {
        let r = Replies::new([
            (Ipv4Addr::new(10, 0, 0, 2), Some((Proto::Tcp, 80))),
            (Ipv4Addr::new(10, 0, 0, 3), None),
        ]);
        assert!(r.matches(&ip([10, 0, 0, 2], 6, 80)));
        assert!(!r.matches(&ip([10, 0, 0, 2], 6, 81)));
        assert!(!r.matches(&ip([10, 0, 0, 2], 17, 80)));
        assert!(!r.matches(&ip([10, 0, 0, 4], 6, 80)));
        assert!(r.matches(&ip([10, 0, 0, 3], 17, 5353)));
        assert!(!r.matches(&ip([10, 0, 0, 3], 1, 0)));
        assert!(!r.matches(&[0x45, 0]));
        assert!(Replies::default().is_empty() && !r.is_empty());
    }
}
