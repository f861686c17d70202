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

pub mod frames;
pub mod neigh;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use nat::nat::Ipv4Net;
use nat::packet::Ipv4Packet;
use nat::{Direction, DropReason, Egress, Nat, Verdict};

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

/// What the gateway counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Ev {
    Routed,
    ArpReplied,
    ArpRequested,
    EchoReplied,
    /// Not for the gateway (unicast to another MAC flooded by the bridge, IPv6, …).
    Ignored,
    // Drops from here on.
    BadFrame,
    BadIp,
    ArpSpoofed,
    TtlExceeded,
    NoRoute,
    NeighUnresolved,
    NeighQueueFull,
    LocalUnhandled,
    NoBuffer,
}

impl Ev {
    const ALL: [Ev; 14] = [
        Ev::Routed,
        Ev::ArpReplied,
        Ev::ArpRequested,
        Ev::EchoReplied,
        Ev::Ignored,
        Ev::BadFrame,
        Ev::BadIp,
        Ev::ArpSpoofed,
        Ev::TtlExceeded,
        Ev::NoRoute,
        Ev::NeighUnresolved,
        Ev::NeighQueueFull,
        Ev::LocalUnhandled,
        Ev::NoBuffer,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Ev::Routed => "routed",
            Ev::ArpReplied => "arp_replied",
            Ev::ArpRequested => "arp_requested",
            Ev::EchoReplied => "echo_replied",
            Ev::Ignored => "ignored",
            Ev::BadFrame => "bad_frame",
            Ev::BadIp => "bad_ip",
            Ev::ArpSpoofed => "arp_spoofed",
            Ev::TtlExceeded => "ttl_exceeded",
            Ev::NoRoute => "no_route",
            Ev::NeighUnresolved => "neigh_unresolved",
            Ev::NeighQueueFull => "neigh_queue_full",
            Ev::LocalUnhandled => "local_unhandled",
            Ev::NoBuffer => "no_buffer",
        }
    }

    fn is_drop(self) -> bool {
        self as usize >= Ev::BadFrame as usize
    }
}

/// A network's side: its bridge, subnet, the gateway's address and MAC in it.
struct NetSide {
    bridge: u32,
    subnet: Ipv4Net,
    addr: Ipv4Addr,
    mac: MacAddr,
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
    ) -> Result<(), String> {
        let old_uplink = self.nat.config().uplink;
        self.nat.set_config(nat_cfg).map_err(|e| e.to_string())?;
        if self.nat.config().uplink != old_uplink {
            self.nat.flush();
        }
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
                neigh,
            });
        }
        for mut o in old {
            o.neigh.clear(|b| pool.put(b));
        }
        let keep = self
            .uplink
            .take()
            .filter(|u| uplink.is_some_and(|s| s.subnet == u.subnet && s.addr == u.addr));
        if keep.is_none() {
            if let Some(mut u) = self.uplink.take() {
                u.neigh.clear(|b| pool.put(b));
            }
        }
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

    /// Forgets every tracked connection.
    pub fn flush(&mut self) {
        self.nat.flush();
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

    fn subnet(&self, side: Side) -> Option<Ipv4Net> {
        match side {
            Side::Uplink => self.uplink.as_ref().map(|u| u.subnet),
            Side::Net(b) => self.nets.iter().find(|n| n.bridge == b).map(|n| n.subnet),
        }
    }

    /// True if `a` is one of the gateway's own addresses.
    fn is_mine(&self, a: Ipv4Addr) -> bool {
        self.nets.iter().any(|n| n.addr == a) || self.uplink.as_ref().is_some_and(|u| u.addr == a)
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
        match u16::from_be_bytes([f[12], f[13]]) {
            ARP => self.arp(side, buf, pool, out),
            IPV4 if f[..6] == my_mac.0 => self.ipv4(side, buf, pool, out),
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
        if self.is_mine(a.spa) && a.sha != my_mac {
            // Someone claims the gateway's address: never believed, counted.
            return self.discard(pool, buf, Ev::ArpSpoofed);
        }
        let for_us = a.tpa == my_ip;
        let now = self.now();
        if self.subnet(side).is_some_and(|s| s.contains(a.spa)) && !a.sha.is_multicast() {
            let released = self
                .neighbours(side)
                .and_then(|n| n.learn(a.spa, a.sha, now, for_us));
            for mut w in released.into_iter().flatten() {
                if let Some(f) = w.bytes_mut().get_mut(vnet::LEN..) {
                    frames::set_macs(f, a.sha, my_mac);
                }
                self.count(Ev::Routed);
                out.push((side, w));
            }
        }
        if a.op == ARP_REQUEST && for_us {
            let reply = Arp {
                op: ARP_REPLY,
                sha: my_mac,
                spa: my_ip,
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
                Some(ip) if ip.verify_checksum() => (
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
            Verdict::Local => {
                let f = &mut buf.bytes_mut()[vnet::LEN..];
                if proto == nat::packet::proto::ICMP && frames::echo_reply_in_place(f, hl, total) {
                    self.count(Ev::EchoReplied);
                    out.push((side, buf));
                } else {
                    self.discard(pool, buf, Ev::LocalUnhandled);
                }
            }
            Verdict::Forward(egress) => {
                let ip = &mut buf.bytes_mut()[start..];
                if !frames::decrement_ttl(ip) {
                    return self.discard(pool, buf, Ev::TtlExceeded);
                }
                let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
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
                if let Some(f) = b.bytes_mut().get_mut(vnet::LEN..) {
                    frames::set_macs(f, mac, my_mac);
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
        let Some(v) = Ipv4Packet::new_checked(ip) else {
            return pool.put(buf);
        };
        let hl = v.header_len();
        let is_error = v.protocol() == nat::packet::proto::ICMP
            && ip.get(hl).is_some_and(|&t| t != 8 && t != 0);
        if is_error || self.icmp_sent >= ICMP_ERRORS_PER_SEC || v.src().is_unspecified() {
            return pool.put(buf);
        }
        let Some(mut e) = pool.get(SMALL) else {
            self.count(Ev::NoBuffer);
            return pool.put(buf);
        };
        let mut src_mac = [0u8; 6];
        src_mac.copy_from_slice(&f[6..12]);
        let total = usize::from(v.total_len());
        if frames::write_icmp_error(
            &mut e,
            MacAddr(src_mac),
            my_mac,
            my_ip,
            v.src(),
            11,
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
    }

    /// The gateway's counters for `stats`.
    pub fn stats(&self) -> ctl::GatewayStats {
        let mut counters = BTreeMap::new();
        let mut drops = BTreeMap::new();
        for e in Ev::ALL {
            let n = self.events[e as usize];
            if n > 0 {
                if e.is_drop() {
                    drops.insert(e.as_str().to_string(), n);
                } else {
                    counters.insert(e.as_str().to_string(), n);
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
