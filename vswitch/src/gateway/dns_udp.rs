//! DNS over UDP at the gateway: queries to a network's gateway address port 53 go to the
//! [`Resolver`](super::dns::Resolver); its answers go back to the client, its queries
//! to upstreams leave from the gateway's address in that network and through NAT, so
//! they are masqueraded out of the uplink exactly as a container's would be, and the
//! upstream's answers come back through NAT to the gateway.

use std::net::Ipv4Addr;

use wire::udp::{UdpPacket, HEADER_LEN as UDP_HEADER};
use wire::Ipv4Packet;

use super::dns::{Answered, Client, Outcome, Reply, Upstream, PORT};
use super::frames::{self, ETH};
use super::{Ev, Gateway, Out, Side};
use crate::pool::{Buf, Pool};
use crate::wire::{vnet, MacAddr};
use nat::{Direction, Verdict};

/// An address and port.
type Addr = (Ipv4Addr, u16);

/// (source, destination, payload range) of the UDP datagram in a `vnet + frame` buffer.
fn udp_of(b: &[u8]) -> Option<(Addr, Addr, std::ops::Range<usize>)> {
    let start = vnet::LEN + ETH;
    let ip = Ipv4Packet::new_checked(b.get(start..)?).ok()?;
    if ip.protocol() != wire::ip_proto::UDP || ip.is_fragment() {
        return None;
    }
    let hl = ip.header_len();
    let end = start + usize::from(ip.total_len());
    let u = UdpPacket::new_checked(b.get(start + hl..end)?).ok()?;
    let ulen = usize::from(u.len_field());
    if ulen < UDP_HEADER || start + hl + ulen > end {
        return None;
    }
    Some((
        (ip.src(), u.src_port()),
        (ip.dst(), u.dst_port()),
        start + hl + UDP_HEADER..start + hl + ulen,
    ))
}

impl Gateway {
    /// A UDP packet for the gateway's address on network `bridge` (NAT said local):
    /// a DNS query if it is for port 53 of that network's own gateway.
    pub(super) fn dns_udp_query(&mut self, bridge: u32, buf: Buf, pool: &Pool, out: &mut Out) {
        let Some((src, dst, range)) = udp_of(buf.bytes()) else {
            return self.discard(pool, buf, Ev::DnsMalformed);
        };
        let mine = self.me(Side::Net(bridge)).map(|m| m.0);
        if dst.1 != PORT || mine != Some(dst.0) {
            // Another network's gateway: names stay in their network.
            return self.discard(pool, buf, Ev::LocalUnhandled);
        }
        let now = self.now();
        let outcome = self
            .dns
            .query(bridge, Client::Udp(src.0, src.1), &buf.bytes()[range], now);
        pool.put(buf);
        match outcome {
            Outcome::Malformed => self.count(Ev::DnsMalformed),
            Outcome::Answer(bytes) => {
                self.count(Ev::DnsAnswered);
                self.dns_reply(
                    Reply {
                        bridge,
                        client: Client::Udp(src.0, src.1),
                        bytes,
                    },
                    pool,
                    out,
                );
            }
            Outcome::Forward(u) => {
                self.count(Ev::DnsForwarded);
                self.dns_upstream(u, pool, out);
            }
        }
    }

    /// A UDP packet NAT let through to one of the gateway's addresses (after its
    /// translation back): an upstream's answer to a query of ours, or nothing. A
    /// truncated answer for a client that asked over TCP is asked again over TCP.
    pub(super) fn dns_udp_answer(&mut self, buf: Buf, pool: &Pool, out: &mut Out) {
        let Some((src, dst, range)) = udp_of(buf.bytes()) else {
            return self.discard(pool, buf, Ev::DnsMalformed);
        };
        let now = self.now();
        let r = if src.1 == PORT {
            self.dns
                .upstream_answer_at(src.0, dst.1, &buf.bytes()[range], now)
        } else {
            None
        };
        pool.put(buf);
        match r {
            Some(Answered::Reply(r)) => {
                self.count(Ev::DnsAnswered);
                self.dns_reply(r, pool, out);
            }
            Some(Answered::AskTcp(u)) => {
                self.count(Ev::DnsForwarded);
                self.dns_tcp_ask(u, pool, out);
            }
            None => self.count(Ev::DnsUnexpected),
        }
    }

    /// Sends a query to an upstream: from the gateway's address in the client's network,
    /// through NAT, routed as a packet from that network.
    pub(super) fn dns_upstream(&mut self, u: Upstream, pool: &Pool, out: &mut Out) {
        let Some((my_ip, my_mac)) = self.me(Side::Net(u.bridge)) else {
            return;
        };
        let Some(mut b) = pool.get(vnet::LEN + ETH + 28 + u.query.len()) else {
            return self.count(Ev::NoBuffer);
        };
        // The MACs are the routing step's to set.
        if !frames::write_udp(
            &mut b,
            MacAddr([0; 6]),
            my_mac,
            (my_ip, u.sport),
            (u.upstream, PORT),
            &u.query,
        ) {
            return self.discard(pool, b, Ev::NoBuffer);
        }
        let now = self.now();
        let start = vnet::LEN + ETH;
        let end = start + 28 + u.query.len();
        let verdict = match b.bytes_mut().get_mut(start..end) {
            Some(pkt) => self.nat.process(pkt, Direction::FromInside, now),
            None => return self.discard(pool, b, Ev::NoBuffer),
        };
        match verdict {
            Verdict::Forward(egress) => {
                self.forward(egress, wire::ip_proto::UDP, b, now, pool, out)
            }
            _ => self.discard(pool, b, Ev::NoRoute),
        }
    }

    /// Sends an answer to its client (over UDP, or into its TCP connection).
    pub(super) fn dns_reply(&mut self, r: Reply, pool: &Pool, out: &mut Out) {
        let Client::Udp(ip, port) = r.client else {
            return self.dns_tcp_reply(&r, pool, out);
        };
        let side = Side::Net(r.bridge);
        let Some((my_ip, my_mac)) = self.me(side) else {
            return;
        };
        let Some(mut b) = pool.get(vnet::LEN + ETH + 28 + r.bytes.len()) else {
            return self.count(Ev::NoBuffer);
        };
        if !frames::write_udp(
            &mut b,
            MacAddr([0; 6]),
            my_mac,
            (my_ip, PORT),
            (ip, port),
            &r.bytes,
        ) {
            return self.discard(pool, b, Ev::NoBuffer);
        }
        let now = self.now();
        self.send(side, ip, b, now, pool, out);
    }

    /// Once a second: queries past their time asked again elsewhere or failed.
    pub(super) fn dns_tick(&mut self, pool: &Pool, out: &mut Out) {
        let now = self.now();
        let (mut resend, mut fail) = (Vec::new(), Vec::new());
        self.dns.expire(now, &mut resend, &mut fail);
        for u in resend {
            self.dns_upstream(u, pool, out);
        }
        for r in fail {
            self.count(Ev::DnsServfail);
            self.dns_reply(r, pool, out);
        }
    }
}
