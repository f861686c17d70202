//! The switch's router: the gateway of each bridge network and the switch's address on
//! the uplink. It owns the addresses and MACs of each side, the neighbour tables, the
//! NAT engine (`nat::Nat`: conntrack, masquerade, published ports, isolation) and the
//! gateway's counters. It answers ARP and ICMP echo for its addresses, decrements TTLs
//! (ICMP time-exceeded when one runs out), and routes what NAT lets through to the
//! neighbour on the side NAT names.
//!
//! No I/O here: frames come in as pool buffers (`vnet header + frame`) with the side
//! they arrived on, and go out as (side, buffer) pairs for the worker to queue. One
//! worker owns the gateway and calls it once per batch, under one lock per batch.

pub mod dns;
mod dns_tcp;
mod dns_udp;
pub mod frames;
pub mod health;
pub mod neigh;
mod services;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use nat::nat::Ipv4Net;
use nat::{Direction, DropReason, Egress, Nat, Verdict};
use wire::ethernet::field as eth;
use wire::icmp::msg_type;
use wire::Ipv4Packet;

use crate::pool::{Buf, Pool, SMALL};
use crate::wire::{vnet, MacAddr};
use frames::{Arp, ARP, ARP_REPLY, ARP_REQUEST, ETH, IPV4};
use neigh::{Neighbours, Resolved};

/// Where a frame came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The uplink.
    Uplink,
    /// The network of the bridge with this id.
    Net(u32),
}

/// Frames to send: where, and the buffer.
pub type Out = Vec<(Side, Buf)>;

/// ICMP errors the gateway sends per second at most (Linux limits them too).
const ICMP_ERRORS_PER_SEC: u32 = 100;
/// Conntrack slots examined for expiry per tick.
const EXPIRE_BUDGET: usize = 65_536;

metrics_decl::counters! {
    /// What the gateway counts. Declared once: the name is what `vsctl stats` prints, the
    /// doc is the Prometheus help. Order matters: from `BadFrame` on they are drops.
    #[derive(Debug)]
    pub enum Ev {
        /// Packets routed between a network and the uplink (or two networks).
        Routed => "routed",
        /// ARP requests for a gateway address answered.
        ArpReplied => "arp_replied",
        /// ARP requests sent to resolve a next hop.
        ArpRequested => "arp_requested",
        /// ICMP echo requests to a gateway address answered.
        EchoReplied => "echo_replied",
        /// DNS answers sent to clients (local, forwarded back, or errors).
        DnsAnswered => "dns_answered",
        /// DNS queries forwarded to an upstream resolver.
        DnsForwarded => "dns_forwarded",
        /// DNS queries no upstream answered in time: the client got SERVFAIL.
        DnsServfail => "dns_servfail",
        /// New connections to a service with no healthy backend, refused at once (TCP
        /// reset, ICMP port unreachable).
        Refused => "service_refused",
        /// Not for the gateway (unicast to another MAC flooded by the bridge, IPv6, …).
        Ignored => "ignored",
        /// A frame too short for an Ethernet header, or an ARP packet that does not parse.
        BadFrame => "bad_frame",
        /// An IPv4 header that fails its checks (length, checksum) or a packet cut short.
        BadIp => "bad_ip",
        /// An ARP packet from another MAC claiming a gateway address: never believed.
        ArpSpoofed => "arp_spoofed",
        /// TTL ran out: dropped, answered with an ICMP time-exceeded (rate-limited).
        TtlExceeded => "ttl_exceeded",
        /// No side to send on: no network or uplink for the destination, or no next hop.
        NoRoute => "no_route",
        /// The next hop never answered ARP: the packets waiting for it were dropped.
        NeighUnresolved => "neigh_unresolved",
        /// Too many packets already waiting for the next hop's ARP answer.
        NeighQueueFull => "neigh_queue_full",
        /// For a gateway address, let through by NAT, but not an ICMP echo request.
        LocalUnhandled => "local_unhandled",
        /// No free buffer for a reply or an ARP request.
        NoBuffer => "no_buffer",
        /// A DNS query that does not parse (truncated, bad labels, compression loops,
        /// too long), or a DNS response sent to the gateway's port 53.
        DnsMalformed => "dns_malformed",
        /// A DNS answer from an upstream that no query of the gateway waits for (late,
        /// spoofed, wrong ID).
        DnsUnexpected => "dns_unexpected",
    }
}

impl Ev {
    /// Whether the event is a dropped packet (`vsctl stats` lists it under drops).
    pub fn is_drop(self) -> bool {
        self as usize >= Ev::BadFrame as usize
    }
}

/// A network's side: its bridge, subnet, the gateway's address and MAC in it.
struct NetSide {
    bridge: u32,
    subnet: Ipv4Net,
    addr: Ipv4Addr,
    mac: MacAddr,
    /// The node's own address and MAC in a cluster overlay (the routing mesh's source
    /// address), if it has one.
    mesh: Option<(Ipv4Addr, MacAddr)>,
    neigh: Neighbours,
}

/// The uplink's side.
struct UplinkSide {
    subnet: Ipv4Net,
    addr: Ipv4Addr,
    gw: Option<Ipv4Addr>,
    mac: MacAddr,
    neigh: Neighbours,
}

/// A network as the controller configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetSpec {
    pub bridge: u32,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub mac: MacAddr,
    /// The node's mesh address and MAC in it (a cluster overlay), answered and
    /// received like the gateway's own, and the source of its health checks.
    pub mesh: Option<(Ipv4Addr, MacAddr)>,
}

/// The uplink as the controller configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkSpec {
    pub addr: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub gw: Option<Ipv4Addr>,
    pub mac: MacAddr,
}

/// The gateway's state.
pub struct Gateway {
    nat: Nat,
    nets: Vec<NetSide>,
    uplink: Option<UplinkSide>,
    start: Instant,
    events: [u64; Ev::ALL.len()],
    /// ICMP errors sent in the current second.
    icmp_sent: u32,
    /// The networks' names and the DNS queries in flight.
    dns: dns::Resolver,
    /// Each network's TCP endpoint for DNS over TCP.
    dns_tcp: dns_tcp::TcpEndpoints,
    /// Health checks of service backends.
    health: health::Checks,
    /// Each bridge's lingering endpoints, as its snapshots share them.
    replies: Vec<(u32, std::sync::Arc<crate::pipeline::services::Lingering>)>,
}

impl Default for Gateway {
    fn default() -> Self {
        Self::new()
    }
}

impl Gateway {
    /// A gateway with no network and no uplink.
    pub fn new() -> Self {
        let nat = Nat::new(nat::Config::new(Ipv4Addr::UNSPECIFIED));
        Gateway {
            // An empty configuration is always valid.
            nat: nat.unwrap_or_else(|_| unreachable!("empty NAT config is valid")),
            nets: Vec::new(),
            uplink: None,
            start: Instant::now(),
            events: [0; Ev::ALL.len()],
            icmp_sent: 0,
            dns: dns::Resolver::new(),
            dns_tcp: dns_tcp::TcpEndpoints::default(),
            health: health::Checks::default(),
            replies: Vec::new(),
        }
    }

    /// Milliseconds since the gateway started (NAT's clock).
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Installs a configuration (already validated by the controller). Sides that stay
    /// keep their neighbours; tracked flows stay unless the uplink address changed.
    pub fn configure(
        &mut self,
        nat_cfg: nat::Config,
        nets: &[NetSpec],
        uplink: Option<UplinkSpec>,
        pool: &Pool,
    ) -> Result<(), nat::nat::ConfigError> {
        let old_uplink = self.nat.config().uplink;
        self.nat.set_config(nat_cfg)?;
        if self.nat.config().uplink != old_uplink {
            self.nat.flush();
        }
        self.push_lingering();
        let mut old: Vec<NetSide> = std::mem::take(&mut self.nets);
        for n in nets {
            let neigh = match old
                .iter()
                .position(|o| o.bridge == n.bridge && o.subnet == n.subnet)
            {
                Some(i) => old.swap_remove(i).neigh,
                None => Neighbours::default(),
            };
            self.nets.push(NetSide {
                bridge: n.bridge,
                subnet: n.subnet,
                addr: n.gateway,
                mac: n.mac,
                mesh: n.mesh,
                neigh,
            });
        }
        for mut o in old {
            o.neigh.clear(|b| pool.put(b));
        }
        let want: Vec<(u32, Ipv4Addr, u8)> = nets
            .iter()
            .map(|n| (n.bridge, n.gateway, n.subnet.prefix()))
            .collect();
        let seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            self.now(),
        );
        self.dns_tcp.configure(&want, seed, self.now());
        // The uplink's neighbours (and the frames waiting for them) stay if its address
        // and subnet do; otherwise the waiting frames go back to the pool.
        let keep = match self.uplink.take() {
            Some(u) if uplink.is_some_and(|s| s.subnet == u.subnet && s.addr == u.addr) => Some(u),
            Some(mut u) => {
                u.neigh.clear(|b| pool.put(b));
                None
            }
            None => None,
        };
        self.uplink = uplink.map(|s| UplinkSide {
            subnet: s.subnet,
            addr: s.addr,
            gw: s.gw,
            mac: s.mac,
            neigh: keep.map(|k| k.neigh).unwrap_or_default(),
        });
        Ok(())
    }

    /// The NAT engine (for `ct-show`, counters).
    pub fn nat(&self) -> &Nat {
        &self.nat
    }

    /// Installs the networks' DNS records and upstreams.
    pub fn configure_dns(&mut self, nets: Vec<dns::NetDns>) {
        self.dns.configure(nets);
        let lb = self.nat.lb();
        self.dns.mark_backends(|vip, addr| lb.healthy(vip, addr));
    }

    /// The DNS resolver (for `dns-show`).
    pub fn dns(&self) -> &dns::Resolver {
        &self.dns
    }

    /// Forgets every tracked connection.
    pub fn flush(&mut self) {
        self.nat.flush();
        self.push_lingering();
    }

    fn count(&mut self, e: Ev) {
        self.events[e as usize] += 1;
    }

    fn discard(&mut self, pool: &Pool, buf: Buf, e: Ev) {
        self.count(e);
        pool.put(buf);
    }

    /// The gateway's address and MAC on `side`, if that side exists.
    fn me(&self, side: Side) -> Option<(Ipv4Addr, MacAddr)> {
        match side {
            Side::Uplink => self.uplink.as_ref().map(|u| (u.addr, u.mac)),
            Side::Net(b) => self
                .nets
                .iter()
                .find(|n| n.bridge == b)
                .map(|n| (n.addr, n.mac)),
        }
    }

    fn neighbours(&mut self, side: Side) -> Option<&mut Neighbours> {
        match side {
            Side::Uplink => self.uplink.as_mut().map(|u| &mut u.neigh),
            Side::Net(b) => self
                .nets
                .iter_mut()
                .find(|n| n.bridge == b)
                .map(|n| &mut n.neigh),
        }
    }

    /// The mesh address and MAC on `side`, if it has them.
    fn mesh_of(&self, side: Side) -> Option<(Ipv4Addr, MacAddr)> {
        match side {
            Side::Uplink => None,
            Side::Net(b) => self.nets.iter().find(|n| n.bridge == b)?.mesh,
        }
    }

    /// The source MAC of a routed frame on `side`: on a network with a mesh address,
    /// the mesh MAC, since another node's tunnel refuses frames from the anycast
    /// gateway's MAC (its own gateway has it), and a routed frame may be for a backend
    /// there; else the gateway's. ARP keeps the gateway's.
    fn src_mac(&self, side: Side, _b: &Buf, gateway: MacAddr) -> MacAddr {
        self.mesh_of(side).map_or(gateway, |(_, mac)| mac)
    }

    fn mesh_mac_is(&self, side: Side, dst: Option<&[u8]>) -> bool {
        self.mesh_of(side)
            .is_some_and(|(_, m)| dst == Some(&m.0[..]))
    }

    fn subnet(&self, side: Side) -> Option<Ipv4Net> {
        match side {
            Side::Uplink => self.uplink.as_ref().map(|u| u.subnet),
            Side::Net(b) => self.nets.iter().find(|n| n.bridge == b).map(|n| n.subnet),
        }
    }

    /// True if `a` is one of the gateway's own addresses.
    fn is_mine(&self, a: Ipv4Addr) -> bool {
        self.nets
            .iter()
            .any(|n| n.addr == a || n.mesh.is_some_and(|(m, _)| m == a))
            || self.uplink.as_ref().is_some_and(|u| u.addr == a)
            || self.nat.lb().is_vip(a)
    }

    /// Handles one frame that arrived on `side`; what it sends goes to `out`.
    pub fn handle(&mut self, side: Side, buf: Buf, pool: &Pool, out: &mut Out) {
        let Some((_, my_mac)) = self.me(side) else {
            return self.discard(pool, buf, Ev::NoRoute);
        };
        let b = buf.bytes();
        if b.len() < vnet::LEN + ETH {
            return self.discard(pool, buf, Ev::BadFrame);
        }
        let f = &b[vnet::LEN..];
        match wire::bytes::be16(f, eth::ETHERTYPE.start) {
            Some(ARP) => self.arp(side, buf, pool, out),
            Some(IPV4)
                if f.get(eth::DST) == Some(&my_mac.0[..])
                    || self.mesh_mac_is(side, f.get(eth::DST))
                    || self.diverted(side, f) =>
            {
                self.ipv4(side, buf, pool, out)
            }
            _ => self.discard(pool, buf, Ev::Ignored),
        }
    }

    fn arp(&mut self, side: Side, mut buf: Buf, pool: &Pool, out: &mut Out) {
        let Some((my_ip, my_mac)) = self.me(side) else {
            return self.discard(pool, buf, Ev::NoRoute);
        };
        let Some(a) = frames::parse_arp(&buf.bytes()[vnet::LEN..]) else {
            return self.discard(pool, buf, Ev::BadFrame);
        };
        let mesh = self.mesh_of(side).filter(|(m, _)| *m == a.tpa);
        if self.is_mine(a.spa) && a.sha != my_mac {
            // Someone claims the gateway's address: never believed, counted.
            return self.discard(pool, buf, Ev::ArpSpoofed);
        }
        let for_us = a.tpa == my_ip || self.vip_on(side, a.tpa) || mesh.is_some();
        let now = self.now();
        if self.subnet(side).is_some_and(|s| s.contains(a.spa)) && !a.sha.is_multicast() {
            let released = self
                .neighbours(side)
                .and_then(|n| n.learn(a.spa, a.sha, now, for_us));
            for mut w in released.into_iter().flatten() {
                let src = self.src_mac(side, &w, my_mac);
                if let Some(f) = w.bytes_mut().get_mut(vnet::LEN..) {
                    frames::set_macs(f, a.sha, src);
                }
                self.count(Ev::Routed);
                out.push((side, w));
            }
        }
        if a.op == ARP_REQUEST && for_us {
            let reply = Arp {
                op: ARP_REPLY,
                sha: mesh.map_or(my_mac, |(_, mm)| mm),
                spa: a.tpa,
                tha: a.sha,
                tpa: a.spa,
            };
            if frames::write_arp(&mut buf, a.sha, my_mac, &reply) {
                self.count(Ev::ArpReplied);
                out.push((side, buf));
                return;
            }
        }
        pool.put(buf);
    }

    fn ipv4(&mut self, side: Side, mut buf: Buf, pool: &Pool, out: &mut Out) {
        let (partial, hl, total, ttl, dst, proto) = {
            let b = buf.bytes();
            let partial = b[0] & vnet::F_NEEDS_CSUM != 0;
            match Ipv4Packet::new_checked(&b[vnet::LEN + ETH..]) {
                Ok(ip) if ip.verify_checksum() => (
                    partial,
                    ip.header_len(),
                    usize::from(ip.total_len()),
                    ip.ttl(),
                    ip.dst(),
                    ip.protocol(),
                ),
                _ => return self.discard(pool, buf, Ev::BadIp),
            }
        };
        if ttl <= 1 && !self.is_mine(dst) {
            return self.time_exceeded(side, buf, pool, out);
        }
        let dir = match side {
            Side::Uplink => Direction::FromOutside,
            Side::Net(_) => Direction::FromInside,
        };
        let now = self.now();
        let start = vnet::LEN + ETH;
        let verdict = match buf.bytes_mut().get_mut(start..start + total) {
            Some(pkt) => self.nat.process_csum(pkt, dir, now, partial),
            None => return self.discard(pool, buf, Ev::BadIp),
        };
        match verdict {
            Verdict::Drop(_) => pool.put(buf),
            Verdict::Reject => self.reject(side, buf, pool, out),
            Verdict::Local => {
                if let (wire::ip_proto::UDP, Side::Net(bridge)) = (proto, side) {
                    return self.dns_udp_query(bridge, buf, pool, out);
                }
                if let (wire::ip_proto::TCP, Side::Net(bridge)) = (proto, side) {
                    return self.dns_tcp_segment(bridge, buf, total, pool, out);
                }
                let f = &mut buf.bytes_mut()[vnet::LEN..];
                if proto == wire::ip_proto::ICMP && frames::echo_reply_in_place(f, hl, total) {
                    self.count(Ev::EchoReplied);
                    out.push((side, buf));
                } else {
                    self.discard(pool, buf, Ev::LocalUnhandled);
                }
            }
            Verdict::Forward(egress) => self.forward(egress, proto, buf, now, pool, out),
        }
    }

    /// Routes a packet NAT let through (and translated) towards `egress`; one for the
    /// gateway's own address is an upstream's DNS answer.
    fn forward(
        &mut self,
        egress: Egress,
        proto: u8,
        mut buf: Buf,
        now: u64,
        pool: &Pool,
        out: &mut Out,
    ) {
        let start = vnet::LEN + ETH;
        let to_me = buf
            .bytes()
            .get(start..)
            .and_then(|ip| Ipv4Packet::new_truncated(ip).ok())
            .is_some_and(|p| self.is_mine(p.dst()));
        if to_me {
            if proto == wire::ip_proto::UDP {
                return self.dns_udp_answer(buf, pool, out);
            }
            if proto == wire::ip_proto::TCP && egress == Egress::Inside {
                return self.dns_tcp_from_upstream(buf, pool, out);
            }
            return self.discard(pool, buf, Ev::LocalUnhandled);
        }
        let ip = &mut buf.bytes_mut()[start..];
        if !frames::decrement_ttl(ip) {
            return self.discard(pool, buf, Ev::TtlExceeded);
        }
        let Ok(dst) = Ipv4Packet::new_truncated(&*ip).map(|p| p.dst()) else {
            return self.discard(pool, buf, Ev::BadIp);
        };
        let (to, hop) = match egress {
            Egress::Outside => match &self.uplink {
                Some(u) if u.subnet.contains(dst) => (Side::Uplink, Some(dst)),
                Some(u) => (Side::Uplink, u.gw),
                None => (Side::Uplink, None),
            },
            Egress::Inside => match self.nets.iter().find(|n| n.subnet.contains(dst)) {
                Some(n) => (Side::Net(n.bridge), Some(dst)),
                None => (Side::Uplink, None),
            },
        };
        match hop {
            Some(hop) => self.send(to, hop, buf, now, pool, out),
            None => self.discard(pool, buf, Ev::NoRoute),
        }
    }

    /// Sends a routed packet to neighbour `hop` on `side`, or waits for its address.
    fn send(&mut self, side: Side, hop: Ipv4Addr, buf: Buf, now: u64, pool: &Pool, out: &mut Out) {
        let Some((_, my_mac)) = self.me(side) else {
            return self.discard(pool, buf, Ev::NoRoute);
        };
        let Some(n) = self.neighbours(side) else {
            return self.discard(pool, buf, Ev::NoRoute);
        };
        match n.resolve(hop, buf, now) {
            (Resolved::Known { mac, probe }, Some(mut b)) => {
                let src = self.src_mac(side, &b, my_mac);
                if let Some(f) = b.bytes_mut().get_mut(vnet::LEN..) {
                    frames::set_macs(f, mac, src);
                }
                self.count(Ev::Routed);
                out.push((side, b));
                if probe {
                    self.arp_request(side, hop, pool, out);
                }
            }
            (Resolved::Known { .. }, None) => {}
            (Resolved::Queued { request }, _) => {
                if request {
                    self.arp_request(side, hop, pool, out);
                }
            }
            (Resolved::Full(b), _) => self.discard(pool, b, Ev::NeighQueueFull),
        }
    }

    fn arp_request(&mut self, side: Side, ip: Ipv4Addr, pool: &Pool, out: &mut Out) {
        let Some((my_ip, my_mac)) = self.me(side) else {
            return;
        };
        let Some(mut b) = pool.get(64) else {
            return self.count(Ev::NoBuffer);
        };
        let req = Arp {
            op: ARP_REQUEST,
            sha: my_mac,
            spa: my_ip,
            tha: MacAddr([0; 6]),
            tpa: ip,
        };
        if frames::write_arp(&mut b, MacAddr([0xff; 6]), my_mac, &req) {
            self.count(Ev::ArpRequested);
            out.push((side, b));
        } else {
            pool.put(b);
        }
    }

    /// Drops a packet whose TTL ran out here and tells its sender, as a router does
    /// (never about an ICMP error, and at most [`ICMP_ERRORS_PER_SEC`] a second).
    fn time_exceeded(&mut self, side: Side, buf: Buf, pool: &Pool, out: &mut Out) {
        self.count(Ev::TtlExceeded);
        let Some((my_ip, my_mac)) = self.me(side) else {
            return pool.put(buf);
        };
        let f = &buf.bytes()[vnet::LEN..];
        let ip = &f[ETH..];
        let Ok(v) = Ipv4Packet::new_checked(ip) else {
            return pool.put(buf);
        };
        let hl = v.header_len();
        let is_error = v.protocol() == wire::ip_proto::ICMP
            && ip
                .get(hl)
                .is_some_and(|&t| t != msg_type::ECHO_REQUEST && t != msg_type::ECHO_REPLY);
        if is_error || self.icmp_sent >= ICMP_ERRORS_PER_SEC || v.src().is_unspecified() {
            return pool.put(buf);
        }
        let Some(mut e) = pool.get(SMALL) else {
            self.count(Ev::NoBuffer);
            return pool.put(buf);
        };
        let src_mac = MacAddr::read(f, eth::SRC.start).unwrap_or_default();
        let total = usize::from(v.total_len());
        if frames::write_icmp_error(
            &mut e,
            src_mac,
            my_mac,
            my_ip,
            v.src(),
            msg_type::TIME_EXCEEDED,
            0,
            &ip[..total],
        ) {
            self.icmp_sent += 1;
            out.push((side, e));
        } else {
            pool.put(e);
        }
        pool.put(buf);
    }

    /// Once a second: ARP retries and give-ups, neighbour and conntrack expiry.
    pub fn tick(&mut self, pool: &Pool, out: &mut Out) {
        let now = self.now();
        self.icmp_sent = 0;
        let mut ask: Vec<(Side, Ipv4Addr)> = Vec::new();
        let mut gave_up = 0u64;
        for n in &mut self.nets {
            let side = Side::Net(n.bridge);
            n.neigh.tick(
                now,
                |ip| ask.push((side, ip)),
                |b| {
                    gave_up += 1;
                    pool.put(b)
                },
            );
        }
        if let Some(u) = &mut self.uplink {
            u.neigh.tick(
                now,
                |ip| ask.push((Side::Uplink, ip)),
                |b| {
                    gave_up += 1;
                    pool.put(b)
                },
            );
        }
        self.events[Ev::NeighUnresolved as usize] += gave_up;
        for (side, ip) in ask {
            self.arp_request(side, ip, pool, out);
        }
        self.nat.expire_some(now, EXPIRE_BUDGET);
        // A draining backend's last flow may just have expired.
        self.push_lingering();
        self.dns_tick(pool, out);
        self.dns_tcp_tick(pool, out);
        self.health_tick(pool, out);
    }

    /// The gateway's counters for `stats`.
    pub fn stats(&self) -> ctl::GatewayStats {
        let mut counters = BTreeMap::new();
        let mut drops = BTreeMap::new();
        for e in Ev::ALL {
            let n = self.events[e as usize];
            if n > 0 {
                if e.is_drop() {
                    drops.insert(e.name().to_string(), n);
                } else {
                    counters.insert(e.name().to_string(), n);
                }
            }
        }
        for r in DropReason::ALL {
            let n = self.nat.drops(r);
            if n > 0 {
                drops.insert(r.as_str().to_string(), n);
            }
        }
        let neighbours = self.nets.iter().map(|n| n.neigh.len()).sum::<usize>()
            + self.uplink.as_ref().map_or(0, |u| u.neigh.len());
        if neighbours > 0 {
            counters.insert("neighbours".into(), neighbours as u64);
        }
        let t = self.nat.table();
        if t.evicted() > 0 {
            // Flows evicted to make room at the limit: not an `Ev` (whose names are
            // fixed) but the table's own count, next to `ct_refused`'s.
            counters.insert("ct_evicted".into(), t.evicted());
        }
        ctl::GatewayStats {
            conntrack: t.len() as u64,
            ct_limit: t.limit() as u64,
            ct_refused: t.refused(),
            mappings: self.nat.mappings() as u64,
            counters,
            drops,
        }
    }

    /// Every tracked connection, as `ct-show` lists them.
    pub fn conntrack(&self) -> Vec<ctl::CtEntry> {
        let now = self.now();
        // An echo's identifier is its "port": the source's going out, the
        // destination's coming back; conntrack(8) shows it as `id=` on both sides.
        let tuple = |t: &nat::tuple::Tuple, reply: bool| {
            let icmp = t.proto == nat::tuple::Proto::Icmp;
            let (sport, dport) = match (icmp, reply) {
                (true, false) => (t.src.port, 0),
                (true, true) => (t.dst.port, 0),
                (false, _) => (t.src.port, t.dst.port),
            };
            ctl::CtTuple {
                src: t.src.addr.to_string(),
                dst: t.dst.addr.to_string(),
                sport,
                dport,
            }
        };
        self.nat
            .iter()
            .filter(|e| !e.is_expired(now))
            .map(|e| ctl::CtEntry {
                proto: e.orig.proto.as_str().to_string(),
                state: e.state.name().map(str::to_string),
                timeout: e.timeout_left(now),
                orig: tuple(&e.orig, false),
                reply: tuple(&e.reply, true),
                packets: [e.counters[0].packets, e.counters[1].packets],
                bytes: [e.counters[0].bytes, e.counters[1].bytes],
                replied: e.seen_reply,
                assured: e.assured,
            })
            .collect()
    }
}

/// The MAC of a bridge's gateway: locally administered, derived from the bridge name so
/// that it stays the same across restarts (containers' ARP caches stay right).
pub fn gateway_mac(bridge: &str) -> MacAddr {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bridge.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let x = h.to_be_bytes();
    MacAddr([0x02, 0x76, x[0], x[1], x[2], x[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use wire::checksum::{checksum, pseudo_v4, sum};

    const G: MacAddr = MacAddr([2, 0x76, 0, 0, 0, 1]);
    const GB: MacAddr = MacAddr([2, 0x76, 0, 0, 0, 2]);
    const U: MacAddr = MacAddr([2, 0x76, 0, 0, 0, 0xff]);
    const C1: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const WAN: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x99]);
    const C1_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
    const GW_A: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
    const UP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const WAN_GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const FAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

    fn net(a: [u8; 4], p: u8) -> Ipv4Net {
        Ipv4Net::new(Ipv4Addr::from(a), p).unwrap()
    }

    fn gateway(pool: &Pool) -> Gateway {
        let mut g = Gateway::new();
        let nets = [
            NetSpec {
                bridge: 0,
                subnet: net([172, 18, 0, 0], 24),
                gateway: GW_A,
                mac: G,
                mesh: None,
            },
            NetSpec {
                bridge: 1,
                subnet: net([172, 19, 0, 0], 24),
                gateway: Ipv4Addr::new(172, 19, 0, 1),
                mac: GB,
                mesh: None,
            },
        ];
        let mut cfg = nat::Config::new(UP);
        cfg.networks = nets
            .iter()
            .map(|n| nat::nat::Network {
                subnet: n.subnet,
                gateway: n.gateway,
            })
            .collect();
        let up = UplinkSpec {
            addr: UP,
            subnet: net([198, 51, 100, 0], 24),
            gw: Some(WAN_GW),
            mac: U,
        };
        g.configure(cfg, &nets, Some(up), pool).unwrap();
        g
    }

    fn buf(pool: &Pool, frame: &[u8]) -> Buf {
        let mut b = pool.get(vnet::LEN + frame.len()).unwrap();
        assert!(b.fill(&[&[0u8; vnet::LEN], frame]));
        b
    }

    fn arp(op: u16, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr, dst: MacAddr) -> Vec<u8> {
        let pool = Pool::new(2, 1);
        let mut b = pool.get(64).unwrap();
        let a = Arp {
            op,
            sha,
            spa,
            tha: MacAddr([0; 6]),
            tpa,
        };
        assert!(frames::write_arp(&mut b, dst, sha, &a));
        b.bytes()[vnet::LEN..].to_vec()
    }

    /// An IPv4/`proto` frame with a valid header checksum and L4 checksum.
    fn ip_frame(
        dst_mac: MacAddr,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
        proto: u8,
        l4: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![0u8; ETH + 20 + l4.len()];
        f[0..6].copy_from_slice(&dst_mac.0);
        f[6..12].copy_from_slice(&C1.0);
        f[12..14].copy_from_slice(&IPV4.to_be_bytes());
        let ip = &mut f[ETH..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        ip[8] = ttl;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let c = checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip[20..].copy_from_slice(l4);
        let l4c = match proto {
            1 => checksum(&ip[20..]),
            _ => {
                let ps = pseudo_v4(src.octets(), dst.octets(), proto, l4.len() as u16);
                wire::checksum::fold(sum(&ip[20..], ps)) ^ 0xffff
            }
        };
        let at = if proto == 6 {
            20 + 16
        } else if proto == 17 {
            20 + 6
        } else {
            20 + 2
        };
        ip[at..at + 2].copy_from_slice(&l4c.to_be_bytes());
        f
    }

    fn syn(sport: u16, dport: u16) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x02;
        t
    }

    fn l4_ok(ip: &[u8]) -> bool {
        let v = Ipv4Packet::new_checked(ip).unwrap();
        let payload = &ip[v.header_len()..usize::from(v.total_len())];
        let ps = pseudo_v4(
            v.src().octets(),
            v.dst().octets(),
            v.protocol(),
            payload.len() as u16,
        );
        v.verify_checksum() && wire::checksum::fold(sum(payload, ps)) == 0xffff
    }

    #[test]
    fn answers_arp_and_echo_and_ignores_others() {
        let pool = Pool::new(64, 4);
        let mut g = gateway(&pool);
        let mut out = Out::new();
        let req = arp(ARP_REQUEST, C1, C1_IP, GW_A, MacAddr([0xff; 6]));
        g.handle(Side::Net(0), buf(&pool, &req), &pool, &mut out);
        assert_eq!(out.len(), 1);
        let (side, r) = out.pop().unwrap();
        assert_eq!(side, Side::Net(0));
        let a = frames::parse_arp(&r.bytes()[vnet::LEN..]).unwrap();
        assert_eq!(
            (a.op, a.sha, a.spa, a.tha, a.tpa),
            (ARP_REPLY, G, GW_A, C1, C1_IP)
        );
        assert_eq!(&r.bytes()[vnet::LEN..vnet::LEN + 6], &C1.0);
        // A request for someone else is not answered.
        let other = arp(
            ARP_REQUEST,
            C1,
            C1_IP,
            Ipv4Addr::new(172, 18, 0, 3),
            MacAddr([0xff; 6]),
        );
        g.handle(Side::Net(0), buf(&pool, &other), &pool, &mut out);
        assert!(out.is_empty());
        // Echo to the gateway.
        let mut echo = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        echo.extend_from_slice(b"ping");
        let f = ip_frame(G, C1_IP, GW_A, 64, 1, &echo);
        g.handle(Side::Net(0), buf(&pool, &f), &pool, &mut out);
        let (_, r) = out.pop().unwrap();
        let ip = &r.bytes()[vnet::LEN + ETH..];
        assert_eq!(ip[20], 0);
        assert!(Ipv4Packet::new_checked(ip).unwrap().verify_checksum());
        assert_eq!(checksum(&ip[20..]), 0);
        // Unicast to another MAC (flooded by the bridge) and IPv6 are ignored.
        let f = ip_frame(C1, C1_IP, GW_A, 64, 1, &echo);
        g.handle(Side::Net(0), buf(&pool, &f), &pool, &mut out);
        assert!(out.is_empty());
        assert_eq!(g.stats().counters.get("ignored"), Some(&1));
    }

    #[test]
    fn spoofed_gateway_arp_is_refused() {
        let pool = Pool::new(64, 4);
        let mut g = gateway(&pool);
        let mut out = Out::new();
        let spoof = arp(ARP_REPLY, C1, GW_A, C1_IP, MacAddr([0xff; 6]));
        g.handle(Side::Net(0), buf(&pool, &spoof), &pool, &mut out);
        assert!(out.is_empty());
        assert_eq!(g.stats().drops.get("arp_spoofed"), Some(&1));
    }

    #[test]
    fn masquerades_after_resolving_the_next_hop() {
        let pool = Pool::new(64, 4);
        let mut g = gateway(&pool);
        let mut out = Out::new();
        let f = ip_frame(G, C1_IP, FAR, 64, 6, &syn(40000, 80));
        g.handle(Side::Net(0), buf(&pool, &f), &pool, &mut out);
        // Waiting for the uplink's next hop: an ARP request goes out there.
        assert_eq!(out.len(), 1);
        let (side, r) = out.pop().unwrap();
        assert_eq!(side, Side::Uplink);
        let a = frames::parse_arp(&r.bytes()[vnet::LEN..]).unwrap();
        assert_eq!((a.op, a.sha, a.spa, a.tpa), (ARP_REQUEST, U, UP, WAN_GW));
        let reply = arp(ARP_REPLY, WAN, WAN_GW, UP, U);
        g.handle(Side::Uplink, buf(&pool, &reply), &pool, &mut out);
        assert_eq!(out.len(), 1);
        let (side, r) = out.pop().unwrap();
        assert_eq!(side, Side::Uplink);
        let fr = &r.bytes()[vnet::LEN..];
        assert_eq!((&fr[0..6], &fr[6..12]), (&WAN.0[..], &U.0[..]));
        let ip = &fr[ETH..];
        let v = Ipv4Packet::new_checked(ip).unwrap();
        assert_eq!((v.src(), v.dst(), v.ttl()), (UP, FAR, 63));
        assert!(l4_ok(ip));
        assert_eq!(g.conntrack().len(), 1);
        // From outside, a packet to a container's address is not let in.
        let f = ip_frame(U, FAR, C1_IP, 64, 6, &syn(80, 40000));
        g.handle(Side::Uplink, buf(&pool, &f), &pool, &mut out);
        assert!(out.is_empty());
        assert_eq!(g.stats().drops.get("no_mapping"), Some(&1));
    }

    #[test]
    fn ttl_expiry_and_isolation() {
        let pool = Pool::new(64, 4);
        let mut g = gateway(&pool);
        let mut out = Out::new();
        let f = ip_frame(G, C1_IP, FAR, 1, 17, &[0, 53, 0, 53, 0, 8, 0, 0]);
        g.handle(Side::Net(0), buf(&pool, &f), &pool, &mut out);
        let (side, r) = out.pop().unwrap();
        assert_eq!(side, Side::Net(0));
        let ip = &r.bytes()[vnet::LEN + ETH..];
        let v = Ipv4Packet::new_checked(ip).unwrap();
        assert_eq!((v.src(), v.dst(), ip[20], ip[21]), (GW_A, C1_IP, 11, 0));
        assert_eq!(&ip[28..48], &f[ETH..ETH + 20]);
        assert!(g.conntrack().is_empty());
        let f = ip_frame(
            G,
            C1_IP,
            Ipv4Addr::new(172, 19, 0, 2),
            64,
            17,
            &[0, 53, 0, 53, 0, 8, 0, 0],
        );
        g.handle(Side::Net(0), buf(&pool, &f), &pool, &mut out);
        assert!(out.is_empty());
        assert_eq!(g.stats().drops.get("isolated"), Some(&1));
        assert_eq!(g.stats().drops.get("ttl_exceeded"), Some(&1));
    }

    #[test]
    fn dns_over_tcp_handshake() {
        let pool = Pool::new(64, 4);
        let mut g = gateway(&pool);
        let mut out = Out::new();
        // The client's MAC is known from its ARP request first.
        let req = arp(ARP_REQUEST, C1, C1_IP, GW_A, MacAddr([0xff; 6]));
        g.handle(Side::Net(0), buf(&pool, &req), &pool, &mut out);
        for (_, b) in out.drain(..) {
            pool.put(b);
        }
        let mut s = syn(40000, 53);
        s[14..16].copy_from_slice(&64240u16.to_be_bytes());
        let f = ip_frame(G, C1_IP, GW_A, 64, 6, &s);
        g.handle(Side::Net(0), buf(&pool, &f), &pool, &mut out);
        assert_eq!(out.len(), 1, "no SYN-ACK: {:?}", g.stats());
        let (side, r) = out.pop().unwrap();
        assert_eq!(side, Side::Net(0));
        let ip = &r.bytes()[vnet::LEN + ETH..];
        let v = Ipv4Packet::new_checked(ip).unwrap();
        assert_eq!((v.src(), v.dst()), (GW_A, C1_IP));
        assert_eq!(ip[20 + 13], 0x12, "SYN-ACK");
        assert!(l4_ok(ip));
        let their = u32::from_be_bytes(ip[24..28].try_into().unwrap());
        // ACK with a query for "web" in it, length-prefixed.
        let q: &[u8] = &[
            0, 21, 0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'e', b'b', 0, 0, 1, 0, 1,
        ];
        let mut seg = syn(40000, 53);
        seg[4..8].copy_from_slice(&1u32.to_be_bytes());
        seg[8..12].copy_from_slice(&their.wrapping_add(1).to_be_bytes());
        seg[13] = 0x18;
        seg[14..16].copy_from_slice(&64240u16.to_be_bytes());
        seg.extend_from_slice(q);
        let f = ip_frame(G, C1_IP, GW_A, 64, 6, &seg);
        pool.put(r);
        g.handle(Side::Net(0), buf(&pool, &f), &pool, &mut out);
        assert!(!out.is_empty(), "no answer: {:?}", g.stats());
        let (_, r) = out.remove(0);
        let ip = &r.bytes()[vnet::LEN + ETH..];
        let v = Ipv4Packet::new_checked(ip).unwrap();
        let data = &ip[20 + usize::from(ip[32] >> 4) * 4..usize::from(v.total_len())];
        assert_eq!(&data[2..4], &[0xab, 0xcd], "{data:?}");
        assert!(l4_ok(ip));
    }

    /// The gateway's configuration with a service at .100 over `backends` (port 80).
    fn with_service(g: &mut Gateway, pool: &Pool, backends: &[Ipv4Addr]) {
        let mut cfg = g.nat.config().clone();
        cfg.services = vec![nat::lb::Service {
            vip: Ipv4Addr::new(172, 18, 0, 100),
            ports: vec![(nat::tuple::Proto::Tcp, 80)],
            backends: backends
                .iter()
                .map(|&addr| nat::lb::Backend { addr, port: None })
                .collect(),
            sched: nat::lb::Sched::RoundRobin,
        }];
        let nets: Vec<NetSpec> = g
            .nets
            .iter()
            .map(|n| NetSpec {
                bridge: n.bridge,
                subnet: n.subnet,
                gateway: n.addr,
                mac: n.mac,
                mesh: n.mesh,
            })
            .collect();
        let up = g.uplink.as_ref().map(|u| UplinkSpec {
            addr: u.addr,
            subnet: u.subnet,
            gw: u.gw,
            mac: u.mac,
        });
        g.configure(cfg, &nets, up, pool).unwrap();
    }

    #[test]
    fn a_removed_backend_lingers_in_the_bridges_replies_while_its_flow_lives() {
        use crate::dataplane::{BridgeRt, BridgeView, Snapshot};
        use crate::pipeline::services::{lingering, Replies};
        use std::sync::Arc;
        let pool = Pool::new(64, 4);
        let mut g = gateway(&pool);
        let (b1, b2) = (C1_IP, Ipv4Addr::new(172, 18, 0, 3));
        with_service(&mut g, &pool, &[b1, b2]);
        // The snapshot the workers run: the bridge's Replies, sharing its lingering
        // endpoints with every later snapshot's.
        let replies = |backends: &[Ipv4Addr]| {
            let sources = backends
                .iter()
                .map(|&a| (a, Some((nat::tuple::Proto::Tcp, 80))));
            Arc::new(Replies::new(sources).with_lingering(lingering("gw-test-linger")))
        };
        let snap = |r: Arc<Replies>| Snapshot {
            bridges: vec![Some(BridgeView {
                rt: Arc::new(BridgeRt::new(0, "gw-test-linger", 300, 64, 1)),
                ports: Vec::new(),
                guard: None,
                ip_checks: false,
                services: Some(r),
            })],
            ..Snapshot::default()
        };
        let first = snap(replies(&[b1, b2]));
        g.sync_replies(&first);
        // A client's connection through the VIP, to b1.
        let client = Ipv4Addr::new(172, 18, 0, 50);
        let f = ip_frame(
            G,
            client,
            Ipv4Addr::new(172, 18, 0, 100),
            64,
            6,
            &syn(40000, 80),
        );
        let mut out = Out::new();
        g.handle(Side::Net(0), buf(&pool, &f), &pool, &mut out);
        assert_eq!(g.conntrack().len(), 1);
        let reply = ip_frame(
            MacAddr([2, 0, 0, 0, 0, 0x50]),
            b1,
            client,
            64,
            6,
            &syn(80, 40000),
        );
        // b1 is a backend: the bridge hands its replies to the gateway.
        let current = first.bridges[0].as_ref().and_then(|b| b.services.clone());
        assert!(current.unwrap().matches(&reply[ETH..]));
        // set-backends b2: before the new snapshot exists, b1 lingers in the endpoints
        // it will share; its replies are still diverted, and the gateway takes them.
        with_service(&mut g, &pool, &[b2]);
        let next = snap(replies(&[b2]));
        let r = next.bridges[0].as_ref().unwrap().services.as_ref().unwrap();
        assert!(r.diverts(&reply[ETH..]));
        assert!(g.diverted(Side::Net(0), &reply));
        g.sync_replies(&next);
        assert!(Arc::ptr_eq(
            g.lingering_of(0).unwrap(),
            next.bridges[0]
                .as_ref()
                .unwrap()
                .services
                .as_ref()
                .unwrap()
                .lingering()
        ));
        // Its flow gone, it lingers no more.
        g.flush();
        assert!(!r.diverts(&reply[ETH..]));
        assert!(!g.diverted(Side::Net(0), &reply));
        for (_, b) in out.drain(..) {
            pool.put(b);
        }
    }

    proptest! {
        #[test]
        fn any_bytes_on_any_side_are_handled_and_no_buffer_is_lost(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..20),
            uplink in any::<bool>(),
            to_gw in any::<bool>(),
            ipv4 in any::<bool>(),
        ) {
            let pool = Pool::new(256, 4);
            let mut g = gateway(&pool);
            let mut out = Out::new();
            let side = if uplink { Side::Uplink } else { Side::Net(0) };
            for mut f in frames {
                if f.len() >= 14 {
                    if to_gw {
                        f[..6].copy_from_slice(&if uplink { U } else { G }.0);
                    }
                    if ipv4 {
                        f[12..14].copy_from_slice(&IPV4.to_be_bytes());
                    }
                }
                let mut b = pool.get(vnet::LEN + f.len()).unwrap();
                prop_assert!(b.fill(&[&[0u8; vnet::LEN], &f]));
                g.handle(side, b, &pool, &mut out);
            }
            g.tick(&pool, &mut out);
            for (_, b) in out.drain(..) {
                pool.put(b);
            }
            let mut waiting = 0;
            for n in &g.nets {
                waiting += n.neigh.queued();
            }
            waiting += g.uplink.as_ref().map_or(0, |u| u.neigh.queued());
            // Every buffer is back in the pool or waiting for a neighbour: as many
            // can be taken again as the pool may hold.
            let (small, large) = (256, 4);
            let mut taken = Vec::new();
            while let Some(b) = pool.get(64) {
                taken.push(b);
            }
            prop_assert_eq!(taken.len() + waiting, small + large);
        }
    }
}
