//! The gateway's part in services (VIPs spread over backends by `nat::lb`): it answers
//! ARP for each VIP in the VIP's network as for its own address, takes the backends'
//! replies that the pipeline hands it (they are addressed to the client's MAC, since
//! the backend sees the client's own address, and must go back from the VIP), and
//! refuses at once a new connection that no healthy backend can take: a TCP reset, or
//! an ICMP port unreachable for UDP. It also keeps each bridge's lingering endpoints
//! (backends that left with connections still open, see
//! [`crate::pipeline::services::Lingering`]) in line with NAT's.

use std::net::Ipv4Addr;
use std::sync::Arc;

use nat::tuple::{Endpoint, Proto};
use wire::ethernet::field as eth;
use wire::icmp::msg_type;
use wire::Ipv4Packet;

use super::frames::{self, ETH};
use super::{Ev, Gateway, Out, Side, ICMP_ERRORS_PER_SEC};
use crate::dataplane::Snapshot;
use crate::pipeline::services::Sources;
use crate::pool::{Buf, Pool, SMALL};
use crate::wire::{vnet, MacAddr};

/// ICMP port unreachable.
const PORT_UNREACHABLE: u8 = 3;

impl Gateway {
    /// True if `a` is a VIP of the network on `side`.
    pub(super) fn vip_on(&self, side: Side, a: Ipv4Addr) -> bool {
        matches!(side, Side::Net(_))
            && self.nat.lb().is_vip(a)
            && self.subnet(side).is_some_and(|s| s.contains(a))
    }

    /// True if `f` (an Ethernet frame from a network, for another MAC than the
    /// gateway's) is one the pipeline hands the gateway because it may be a backend's
    /// reply to a client of a VIP: IPv4 TCP or UDP from a backend's service port (a
    /// draining backend's included), or an ICMP error from a backend.
    pub(super) fn diverted(&self, side: Side, f: &[u8]) -> bool {
        if !matches!(side, Side::Net(_)) {
            return false;
        }
        let Some(ip) = f.get(ETH..).and_then(|b| Ipv4Packet::new_checked(b).ok()) else {
            return false;
        };
        let proto = match Proto::from_number(ip.protocol()) {
            Some(p @ (Proto::Tcp | Proto::Udp)) => p,
            Some(Proto::Icmp) => {
                let error = ip.frag_offset() == 0
                    && wire::icmp::IcmpPacket::new_checked(ip.payload())
                        .is_ok_and(|m| m.is_error());
                return error && self.nat.lb().is_backend(ip.src());
            }
            None => return false,
        };
        let Some(sport) = wire::bytes::be16(ip.payload(), 0) else {
            return false;
        };
        self.nat
            .lb()
            .is_reply_source(proto, Endpoint::new(ip.src(), sport))
    }

    /// Learns the bridges' lingering endpoints from the snapshot the workers run
    /// (each bridge's one is shared by all its snapshots), and brings them in line
    /// with NAT's draining backends. Runs with each routed batch; without a change it
    /// costs a pointer compare and an atomic load per bridge with services.
    pub fn sync_replies(&mut self, snap: &Snapshot) {
        for (id, bv) in snap.bridges.iter().enumerate() {
            let Some(r) = bv.as_ref().and_then(|b| b.services.as_ref()) else {
                continue;
            };
            let l = r.lingering();
            let id = id as u32;
            match self.replies.iter_mut().find(|(b, _)| *b == id) {
                Some((_, have)) if Arc::ptr_eq(have, l) => {}
                Some((_, have)) => *have = l.clone(),
                None => self.replies.push((id, l.clone())),
            }
        }
        self.replies.retain(|(id, _)| {
            snap.bridges
                .get(*id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|b| b.services.is_some())
        });
        self.push_lingering();
    }

    /// Writes NAT's draining backends into each known bridge's lingering endpoints, if
    /// they changed since last written. Runs before a new configuration's snapshot
    /// is published too (from [`Gateway::configure`]), so a backend taken out is never
    /// missing from them.
    pub(super) fn push_lingering(&self) {
        let epoch = self.nat.lb().epoch();
        for (bridge, l) in &self.replies {
            if l.epoch() == epoch {
                continue;
            }
            let subnet = self.subnet(Side::Net(*bridge));
            let mine = self
                .nat
                .lb()
                .draining_sources()
                .filter(|(a, _)| subnet.is_some_and(|s| s.contains(*a)));
            l.store(Sources::new(mine), epoch);
        }
    }

    /// The lingering endpoints the gateway keeps, by bridge (for tests).
    #[cfg(test)]
    pub(super) fn lingering_of(
        &self,
        bridge: u32,
    ) -> Option<&Arc<crate::pipeline::services::Lingering>> {
        self.replies
            .iter()
            .find(|(b, _)| *b == bridge)
            .map(|(_, l)| l)
    }

    /// Refuses the packet in `buf` (NAT said no backend can take it): a TCP reset or an
    /// ICMP port unreachable back to its sender, from the address it was sent to.
    pub(super) fn reject(&mut self, side: Side, buf: Buf, pool: &Pool, out: &mut Out) {
        let Some((_, my_mac)) = self.me(side) else {
            return pool.put(buf);
        };
        let f = &buf.bytes()[vnet::LEN..];
        let to_mac = MacAddr::read(f, eth::SRC.start).unwrap_or_default();
        let Some(ip) = f.get(ETH..) else {
            return pool.put(buf);
        };
        let Ok(v) = Ipv4Packet::new_checked(ip) else {
            return pool.put(buf);
        };
        let total = usize::from(v.total_len()).min(ip.len());
        let Some(mut e) = pool.get(SMALL) else {
            self.count(Ev::NoBuffer);
            return pool.put(buf);
        };
        let written = match v.protocol() {
            wire::ip_proto::TCP => frames::write_tcp_rst(&mut e, to_mac, my_mac, &ip[..total]),
            wire::ip_proto::UDP if self.icmp_sent < ICMP_ERRORS_PER_SEC => {
                self.icmp_sent += 1;
                frames::write_icmp_error(
                    &mut e,
                    to_mac,
                    my_mac,
                    v.dst(),
                    v.src(),
                    msg_type::DEST_UNREACHABLE,
                    PORT_UNREACHABLE,
                    &ip[..total],
                )
            }
            _ => false,
        };
        if written {
            self.count(Ev::Refused);
            out.push((side, e));
        } else {
            pool.put(e);
        }
        pool.put(buf);
    }
}
