//! The NAT engine: Docker's bridge-network rules applied by one state machine that
//! takes a packet, the side it came from and the time, rewrites the packet in place
//! and says where it goes ([`Verdict`]). This module owns the policy and the port
//! mappings; flows live in [`crate::conntrack`], rewrites in [`crate::rewrite`].
//!
//! - **Masquerade** (Docker's `MASQUERADE` for the network's subnet): a new flow from
//!   a network to the outside leaves from the uplink address. The source port (ICMP
//!   echo identifier) is kept if no other inside endpoint holds it, else one is taken
//!   from [`PORT_MIN`]..=[`PORT_MAX`]. The mapping is endpoint-independent (RFC 4787
//!   REQ-1, RFC 5382 REQ-1): while any flow uses it, the same inside address and port
//!   leave by the same outside port whatever the destination. Filtering is by flow
//!   (only replies of a tracked flow come back), as Linux does.
//! - **Published ports** (Docker's `DNAT` for `-p HOSTPORT:PORT`): a new flow from
//!   outside to the uplink address's published port goes to the container, the
//!   client's address and port kept.
//! - **Hairpin**: a container reaching the uplink address's published port (its own
//!   included) is DNAT'ed to the target and SNAT'ed to the target network's gateway
//!   address, so that the reply comes back through the switch.
//! - **Isolation** (Docker's `DOCKER-ISOLATION`): networks do not reach each other;
//!   from outside, only published ports reach containers.
//! - **ICMP errors** about a tracked flow are translated, quoted packet included.
//!
//! Fragments are dropped (counted), not reassembled.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::conntrack::{Dir, Entry, FlowId, InsertError, State, Table, DEFAULT_LIMIT};
use crate::lb::{BackendStats, Balancer, Pick, Service};
use crate::packet::Ipv4Packet;
use crate::rewrite::{rewrite_error, rewrite_with};
use crate::tuple::{parse, Endpoint, Kind, ParseError, Parsed, Proto, Tuple};

/// Lowest masquerade port (Linux's `ip_local_port_range` default, as Docker uses).
pub const PORT_MIN: u16 = 32768;
/// Highest masquerade port.
pub const PORT_MAX: u16 = 60999;

/// An IPv4 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// The subnet `addr/prefix` (host bits cleared), or `None` if `prefix` > 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        (prefix <= 32).then(|| Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True if `a` is in the subnet.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & mask(self.prefix) == u32::from(self.addr)
    }

    /// True if the two subnets share an address.
    pub fn overlaps(&self, o: &Ipv4Net) -> bool {
        self.contains(o.addr) || o.contains(self.addr)
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// A bridge network: its subnet and the gateway address the switch owns in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The subnet.
    pub subnet: Ipv4Net,
    /// The gateway address (inside the subnet).
    pub gateway: Ipv4Addr,
}

/// A published port: `proto` `host_port` on the uplink address goes to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// TCP or UDP.
    pub proto: Proto,
    /// The port on the uplink address.
    pub host_port: u16,
    /// The container address and port.
    pub target: Endpoint,
}

/// What the engine needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The inside networks.
    pub networks: Vec<Network>,
    /// The switch's address on the uplink.
    pub uplink: Ipv4Addr,
    /// Published ports.
    pub published: Vec<Published>,
    /// The conntrack limit.
    pub ct_limit: usize,
    /// Services: VIPs spread over backends ([`crate::lb`]).
    pub services: Vec<Service>,
    /// Mesh addresses: one per network at most, an address of that network this node
    /// owns (a cluster overlay's routing mesh). A flow from the uplink to a service of
    /// that network is source-NAT'ed to it, so that a backend on another node, whose
    /// gateway is another node's copy of the same anycast gateway, answers through this
    /// node, which holds the flow.
    pub mesh: Vec<Ipv4Addr>,
}

impl Config {
    /// A configuration with no network and no published port.
    pub fn new(uplink: Ipv4Addr) -> Config {
        Config {
            networks: Vec::new(),
            uplink,
            published: Vec::new(),
            ct_limit: DEFAULT_LIMIT,
            services: Vec::new(),
            mesh: Vec::new(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Two networks' subnets overlap.
    #[error("subnets {0}/{1} and {2}/{3} overlap")]
    Overlap(Ipv4Addr, u8, Ipv4Addr, u8),
    /// A gateway is outside its subnet (or is its network address).
    #[error("gateway {0} is not a host address of its subnet")]
    GatewayOutside(Ipv4Addr),
    /// A published port is ICMP.
    #[error("only tcp and udp ports can be published")]
    PublishedProto,
    /// The same protocol and host port are published twice.
    #[error("{0} port {1} is already published")]
    Duplicate(&'static str, u16),
    /// A published port's target is in no network.
    #[error("{0} is in no network")]
    TargetOutside(Ipv4Addr),
    /// A VIP is in no network, or is a gateway's address.
    #[error("VIP {0} is not a host address of a network (nor a gateway's)")]
    VipOutside(Ipv4Addr),
    /// Two services share a VIP.
    #[error("VIP {0} is taken by another service")]
    VipTwice(Ipv4Addr),
    /// A backend is outside its service's network.
    #[error("backend {0} is not in the network of VIP {1}")]
    BackendOutside(Ipv4Addr, Ipv4Addr),
    /// A mesh address is in no network, is a gateway's or a VIP, or is its network's
    /// second.
    #[error("mesh address {0} is not a free host address of a network")]
    MeshOutside(Ipv4Addr),
}

impl Config {
    /// Checks the configuration: subnets disjoint, gateways inside, published ports
    /// TCP/UDP, unique, and aimed at a network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, a) in self.networks.iter().enumerate() {
            if !a.subnet.contains(a.gateway) || a.gateway == a.subnet.addr() {
                return Err(ConfigError::GatewayOutside(a.gateway));
            }
            if let Some(b) = self
                .networks
                .iter()
                .skip(i + 1)
                .find(|b| a.subnet.overlaps(&b.subnet))
            {
                let (x, y) = (a.subnet, b.subnet);
                return Err(ConfigError::Overlap(
                    x.addr(),
                    x.prefix(),
                    y.addr(),
                    y.prefix(),
                ));
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            let net = self
                .networks
                .iter()
                .find(|n| {
                    n.subnet.contains(s.vip) && n.gateway != s.vip && n.subnet.addr() != s.vip
                })
                .ok_or(ConfigError::VipOutside(s.vip))?;
            if self.services.iter().skip(i + 1).any(|o| o.vip == s.vip) {
                return Err(ConfigError::VipTwice(s.vip));
            }
            if let Some(b) = s.backends.iter().find(|b| !net.subnet.contains(b.addr)) {
                return Err(ConfigError::BackendOutside(b.addr, s.vip));
            }
        }
        for (i, m) in self.mesh.iter().enumerate() {
            let net = self
                .networks
                .iter()
                .find(|n| n.subnet.contains(*m) && n.gateway != *m && n.subnet.addr() != *m)
                .ok_or(ConfigError::MeshOutside(*m))?;
            let twice = self.mesh[i + 1..].iter().any(|o| net.subnet.contains(*o));
            if twice || self.services.iter().any(|s| s.vip == *m) {
                return Err(ConfigError::MeshOutside(*m));
            }
        }
        for (i, p) in self.published.iter().enumerate() {
            if p.proto == Proto::Icmp {
                return Err(ConfigError::PublishedProto);
            }
            if self
                .published
                .iter()
                .skip(i + 1)
                .any(|q| q.proto == p.proto && q.host_port == p.host_port)
            {
                return Err(ConfigError::Duplicate(p.proto.as_str(), p.host_port));
            }
            if !self
                .networks
                .iter()
                .any(|n| n.subnet.contains(p.target.addr))
            {
                return Err(ConfigError::TargetOutside(p.target.addr));
            }
        }
        Ok(())
    }
}

/// The side a packet arrives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a container network (routed to the gateway).
    FromInside,
    /// From the uplink.
    FromOutside,
}

/// The side a forwarded packet leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Into a container network (the packet's destination address says which).
    Inside,
    /// Out of the uplink.
    Outside,
}

metrics_decl::counters! {
    /// Why a packet was dropped. Declared once: the name is what `vsctl stats` prints
    /// and the doc is the Prometheus help.
    #[derive(Debug, thiserror::Error)]
    pub enum DropReason {
        /// Not a well-formed IPv4 packet, or an L4 header cut short.
        Malformed => "malformed" [error("malformed packet")],
        /// An IP fragment (not reassembled).
        Fragment => "fragment" [error("IP fragment")],
        /// A protocol or ICMP type that is not translated.
        Unsupported => "unsupported" [error("protocol not translated")],
        /// Refused by the flow's state machine, or a first packet that cannot start a flow.
        Invalid => "invalid" [error("invalid for the connection state")],
        /// The conntrack table is full.
        TableFull => "table_full" [error("conntrack table full")],
        /// Unsolicited from outside: no flow and no published port.
        NoMapping => "no_mapping" [error("no mapping (unsolicited, unpublished)")],
        /// No free masquerade port.
        PortsExhausted => "ports_exhausted" [error("masquerade ports exhausted")],
        /// Between two networks.
        Isolated => "isolated" [error("networks are isolated")],
        /// A source address from the wrong side.
        Spoofed => "spoofed" [error("source address from the wrong side")],
        /// The translated flow would collide with another flow.
        Conflict => "conflict" [error("tuple collides with another flow")],
        /// To a service VIP with no healthy backend (or a port it does not serve): the
        /// client was refused (TCP reset, ICMP port unreachable).
        NoBackend => "no_backend" [error("no healthy backend")],
    }
}

impl DropReason {
    /// The counter name (kept for callers; the same as [`DropReason::name`]).
    pub fn as_str(self) -> &'static str {
        self.name()
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What to do with a packet after [`Nat::process`] or [`Nat::process_csum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten) packet out by this side.
    Forward(Egress),
    /// For the switch itself (a gateway or the uplink address, not published): the
    /// gateway answers it (ARP, echo) or drops it. The packet is unchanged.
    Local,
    /// Drop it; the reason has been counted.
    Drop(DropReason),
    /// Refuse it: a new flow to a service with no healthy backend. The gateway answers
    /// with a TCP reset or an ICMP port unreachable at once; the packet is unchanged
    /// and counted as `no_backend`.
    Reject,
}

/// Masquerade mappings: inside endpoint → outside port per outside address.
#[derive(Debug, Clone, Default)]
struct Mappings {
    by_inside: HashMap<(Proto, Ipv4Addr, Endpoint), (u16, u32)>,
    by_outside: HashMap<(Proto, Ipv4Addr, u16), Endpoint>,
    next: u16,
}

impl Mappings {
    /// The outside port of `inside` on `out`, taking a reference on it.
    fn acquire(
        &mut self,
        proto: Proto,
        out: Ipv4Addr,
        inside: Endpoint,
        reserved: impl Fn(u16) -> bool,
    ) -> Option<u16> {
        if let Some((port, refs)) = self.by_inside.get_mut(&(proto, out, inside)) {
            *refs += 1;
            return Some(*port);
        }
        let free = |m: &Self, p: u16| !reserved(p) && !m.by_outside.contains_key(&(proto, out, p));
        let port = if free(self, inside.port) {
            inside.port
        } else {
            let span = PORT_MAX - PORT_MIN + 1;
            let start = self.next.clamp(PORT_MIN, PORT_MAX) - PORT_MIN;
            let p = (0..span)
                .map(|k| PORT_MIN + (start + k) % span)
                .find(|&p| free(self, p))?;
            self.next = if p == PORT_MAX { PORT_MIN } else { p + 1 };
            p
        };
        self.by_inside.insert((proto, out, inside), (port, 1));
        self.by_outside.insert((proto, out, port), inside);
        Some(port)
    }

    /// Drops a reference on the mapping of `inside` on `out` at `port`.
    fn release(&mut self, proto: Proto, out: Ipv4Addr, inside: Endpoint, port: u16) {
        let key = (proto, out, inside);
        if let Some((p, refs)) = self.by_inside.get_mut(&key) {
            if *p != port {
                return;
            }
            *refs -= 1;
            if *refs == 0 {
                self.by_inside.remove(&key);
                self.by_outside.remove(&(proto, out, port));
            }
        }
    }

    /// Drops the reference a removed flow held, if it was source-NAT'ed.
    fn release_for(&mut self, e: &Entry) {
        if e.reply.dst != e.orig.src {
            self.release(e.orig.proto, e.reply.dst.addr, e.orig.src, e.reply.dst.port);
        }
    }

    fn clear(&mut self) {
        self.by_inside.clear();
        self.by_outside.clear();
    }
}

/// One packet on its way through [`Nat::process_csum`].
struct Packet<'a> {
    bytes: &'a mut [u8],
    parsed: Parsed,
    /// The IP total length (what conntrack counts).
    len: usize,
    now: u64,
    /// The TCP/UDP checksum field holds a partial checksum.
    partial: bool,
    /// The mark a new flow gets (a service backend's id, or 0).
    mark: u32,
}

/// The NAT engine: configuration, flow table, mappings, drop counters.
#[derive(Debug, Clone)]
pub struct Nat {
    config: Config,
    published: HashMap<(Proto, u16), Endpoint>,
    table: Table,
    mappings: Mappings,
    lb: Balancer,
    drops: [u64; DropReason::ALL.len()],
}

impl Nat {
    /// An engine for a valid configuration.
    pub fn new(config: Config) -> Result<Nat, ConfigError> {
        config.validate()?;
        let mut n = Nat {
            table: Table::new(config.ct_limit),
            config: Config::new(config.uplink),
            published: HashMap::new(),
            mappings: Mappings {
                next: PORT_MIN,
                ..Mappings::default()
            },
            lb: Balancer::default(),
            drops: [0; DropReason::ALL.len()],
        };
        n.install(config);
        Ok(n)
    }

    fn install(&mut self, config: Config) {
        self.published = config
            .published
            .iter()
            .map(|p| ((p.proto, p.host_port), p.target))
            .collect();
        self.table.set_limit(config.ct_limit);
        let left = self.lb.configure(&config.services);
        if !left.is_empty() {
            // A removed backend's UDP flows are forgotten, so that the client's next
            // datagram is balanced again (UDP has no end a client would notice, and
            // each datagram would refresh the flow forever), as kube-proxy clears the
            // UDP conntrack entries of removed endpoints. Its TCP connections carry on:
            // the backend may well be alive (a rolling update removes it first and
            // stops it later), a TCP client notices a dead one by itself (reset,
            // timeout) and reconnects to a new pick, and the README promises that
            // established connections stay where they are.
            self.drop_flows(|e| left.contains(&e.mark) && e.orig.proto != Proto::Tcp);
            for e in self.table.iter() {
                if left.contains(&e.mark) {
                    self.lb.count_draining(e.mark);
                }
            }
            self.lb.settle();
        }
        self.config = config;
    }

    /// Removes the flows `pred` selects, their mappings and backend counts with them.
    fn drop_flows(&mut self, pred: impl FnMut(&Entry) -> bool) -> usize {
        let (maps, lb) = (&mut self.mappings, &mut self.lb);
        self.table.remove_if(pred, |e| {
            maps.release_for(&e);
            lb.retire(&e);
        })
    }

    /// Replaces the configuration if valid; tracked flows carry on as they were.
    pub fn set_config(&mut self, config: Config) -> Result<(), ConfigError> {
        config.validate()?;
        self.install(config);
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The flow table (read-only: `len`, `refused`, `limit`).
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Every tracked flow (for `ct-show`).
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.table.iter()
    }

    /// Masquerade mappings in use.
    pub fn mappings(&self) -> usize {
        self.mappings.by_inside.len()
    }

    /// Packets dropped for `reason` since creation.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }

    /// Removes every expired flow and frees its mapping; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let (maps, lb) = (&mut self.mappings, &mut self.lb);
        self.table.expire(now, |e| {
            maps.release_for(&e);
            lb.retire(&e);
        })
    }

    /// [`Nat::expire`] over at most `budget` table slots (bounded work per call).
    pub fn expire_some(&mut self, now: u64, budget: usize) -> usize {
        let (maps, lb) = (&mut self.mappings, &mut self.lb);
        self.table.expire_some(now, budget, |e| {
            maps.release_for(&e);
            lb.retire(&e);
        })
    }

    /// The services' scheduler (VIPs, backends' health).
    pub fn lb(&self) -> &Balancer {
        &self.lb
    }

    /// Marks the backends at `addr` of the service at `vip` healthy or not (the
    /// gateway's health checks). True if it changed. A backend going down loses its UDP
    /// flows, so that the client's next datagram goes to a healthy backend: each one
    /// would otherwise refresh the flow and keep it on the dead backend forever. TCP
    /// flows stay: a failed check may be a slow backend whose connections still work,
    /// and a TCP client of a dead one gets a reset or times out and reconnects, which
    /// the scheduler sends elsewhere (as kube-proxy does, which clears UDP entries only).
    pub fn set_health(&mut self, vip: Ipv4Addr, addr: Ipv4Addr, up: bool) -> bool {
        let changed = self.lb.set_health(vip, addr, up);
        if changed && !up {
            let marks = self.lb.marks(vip, addr);
            self.drop_flows(|e| e.orig.proto == Proto::Udp && marks.contains(&e.mark));
        }
        changed
    }

    /// Each service's VIP and its backends with health, active flows and packets.
    pub fn service_stats(&self, now: u64) -> Vec<(Ipv4Addr, Vec<BackendStats>)> {
        self.lb.stats(self.table.iter(), now)
    }

    /// Removes every flow and mapping (`ct-flush`).
    pub fn flush(&mut self) {
        self.table.flush();
        self.mappings.clear();
        self.lb.forget_flows();
    }

    fn drop(&mut self, r: DropReason) -> Verdict {
        if let Some(c) = self.drops.get_mut(r.index()) {
            *c += 1;
        }
        Verdict::Drop(r)
    }

    /// The mesh address of `a`'s network, if it has one.
    fn mesh_of(&self, a: Ipv4Addr) -> Option<Ipv4Addr> {
        let n = self.network_of(a)?;
        self.config
            .mesh
            .iter()
            .copied()
            .find(|m| n.subnet.contains(*m))
    }

    /// True if `t` goes between two stations of one network, neither of them the
    /// switch (its gateway, mesh or VIP addresses).
    fn within_network(&self, t: Tuple) -> bool {
        let (src, dst) = (t.src.addr, t.dst.addr);
        self.network_of(src)
            .is_some_and(|n| n.subnet.contains(dst) && n.gateway != dst && n.subnet.addr() != dst)
            && !self.config.mesh.contains(&dst)
            && !self.lb.is_vip(dst)
    }

    fn network_of(&self, a: Ipv4Addr) -> Option<&Network> {
        self.config.networks.iter().find(|n| n.subnet.contains(a))
    }

    fn is_inside(&self, a: Ipv4Addr) -> bool {
        self.network_of(a).is_some()
    }

    fn egress(&self, dst: Ipv4Addr) -> Egress {
        if self.is_inside(dst) {
            Egress::Inside
        } else {
            Egress::Outside
        }
    }

    fn remove(&mut self, id: FlowId) {
        if let Some(e) = self.table.remove(id) {
            self.mappings.release_for(&e);
            self.lb.retire(&e);
        }
    }

    /// The live flow a tuple belongs to; an expired one is removed on the way.
    fn live(&mut self, t: &Tuple, now: u64) -> Option<(FlowId, Dir)> {
        let (id, d) = self.table.lookup(t)?;
        if self.table.get(id).is_some_and(|e| e.is_expired(now)) {
            self.remove(id);
            return None;
        }
        Some((id, d))
    }

    /// Translates one packet (starting at its IPv4 header) that arrived from `dir` at
    /// `now` (ms): finds or creates its flow, steps the flow's state, rewrites the
    /// packet in place with its checksums fixed up, and says what to do with it. A
    /// packet that is not forwarded is left unchanged. Every checksum is taken to be
    /// complete; see [`Nat::process_csum`] for a partial one.
    pub fn process(&mut self, pkt: &mut [u8], dir: Direction, now: u64) -> Verdict {
        self.process_csum(pkt, dir, now, false)
    }

    /// [`Nat::process`] for a packet whose TCP or UDP checksum may be partial
    /// (`partial`: the virtio-net header's NEEDS_CSUM, the kernel's CHECKSUM_PARTIAL):
    /// the field then holds the folded pseudo-header sum, which the rewrite keeps
    /// right for the new addresses only, and the device (or the software fallback)
    /// completes it over header and payload later. The flag is ignored for ICMP, whose
    /// checksum a sender always completes, and ICMP errors' quotes are always full.
    pub fn process_csum(
        &mut self,
        pkt: &mut [u8],
        dir: Direction,
        now: u64,
        partial: bool,
    ) -> Verdict {
        let parsed = match parse(pkt) {
            Ok(p) => p,
            Err(ParseError::Malformed) => return self.drop(DropReason::Malformed),
            Err(ParseError::Fragment) => return self.drop(DropReason::Fragment),
            Err(ParseError::Unsupported) => return self.drop(DropReason::Unsupported),
        };
        let len = Ipv4Packet::new_checked(&*pkt).map_or(0, |p| usize::from(p.total_len()));
        let t = parsed.tuple;
        if self.is_inside(t.src.addr) != (dir == Direction::FromInside) {
            return self.drop(DropReason::Spoofed);
        }
        if let Kind::Error { quoted } = parsed.kind {
            return self.icmp_error(pkt, dir, t, quoted, len, now);
        }
        let mut pk = Packet {
            bytes: pkt,
            parsed,
            len,
            now,
            partial,
            mark: 0,
        };
        match self.live(&t, now) {
            // A new connection on a closed flow's tuple: the old flow ends here and this
            // SYN gets its own translation (and backend) below.
            Some((id, d)) if self.table.reopens(id, d, &parsed.kind) => self.remove(id),
            Some((id, d)) => {
                if self.table.track(id, d, &parsed.kind, len, now).is_err() {
                    return self.drop(DropReason::Invalid);
                }
                let Some(to) = self.table.get(id).map(|e| e.translated(d)) else {
                    return self.drop(DropReason::Invalid);
                };
                return self.emit(&mut pk, &to);
            }
            None => {}
        }
        // A VIP is nobody's address: a flow from one would send its replies to a VIP.
        if self.lb.is_vip(t.src.addr) {
            return self.drop(DropReason::Spoofed);
        }
        match dir {
            Direction::FromInside => self.new_from_inside(&mut pk),
            Direction::FromOutside => self.new_from_outside(&mut pk),
        }
    }

    fn emit(&mut self, pk: &mut Packet<'_>, to: &Tuple) -> Verdict {
        match rewrite_with(pk.bytes, to, pk.partial) {
            Ok(()) => Verdict::Forward(self.egress(to.dst.addr)),
            Err(_) => self.drop(DropReason::Malformed),
        }
    }

    fn published(&self, t: &Tuple) -> Option<Endpoint> {
        if t.dst.addr != self.config.uplink || t.proto == Proto::Icmp {
            return None;
        }
        self.published.get(&(t.proto, t.dst.port)).copied()
    }

    /// The endpoint a new flow to `target` goes to: `target` itself, or when it is a
    /// VIP the backend the scheduler picks (its mark put on the packet). `Err`: the
    /// verdict for a VIP that refuses the flow.
    fn resolve(&mut self, pk: &mut Packet<'_>, target: Endpoint) -> Result<Endpoint, Verdict> {
        let t = pk.parsed.tuple;
        // Found by the fuzzer: a packet that cannot start a flow (a stray ACK) must not
        // move the scheduler.
        if State::initial(&pk.parsed.kind).is_none() {
            return Err(self.drop(DropReason::Invalid));
        }
        match self.lb.pick(t.proto, t.src.addr, target) {
            Pick::NotService => Ok(target),
            Pick::To(e, mark) => {
                pk.mark = mark;
                Ok(e)
            }
            Pick::Refused => Err(self.reject()),
        }
    }

    fn reject(&mut self) -> Verdict {
        if let Some(c) = self.drops.get_mut(DropReason::NoBackend.index()) {
            *c += 1;
        }
        Verdict::Reject
    }

    fn new_from_inside(&mut self, pk: &mut Packet<'_>) -> Verdict {
        let t = pk.parsed.tuple;
        if self.config.networks.iter().any(|n| n.gateway == t.dst.addr) {
            return Verdict::Local;
        }
        if self.lb.is_vip(t.dst.addr) {
            // A VIP answers its own network only (networks stay isolated).
            if !self
                .network_of(t.dst.addr)
                .is_some_and(|n| n.subnet.contains(t.src.addr))
            {
                return self.drop(DropReason::Isolated);
            }
            if t.proto == Proto::Icmp {
                return Verdict::Local;
            }
            let backend = match self.resolve(pk, t.dst) {
                Ok(b) => b,
                Err(v) => return v,
            };
            if backend.addr == t.src.addr {
                // The client is the only healthy backend: a packet from itself to
                // itself would be a martian, so it comes from the gateway (or mesh
                // address) as a hairpinned one does, and so do the replies' way back
                // (kube-proxy masquerades this case too).
                let Some(gw) = self.network_of(backend.addr).map(|n| n.gateway) else {
                    return self.drop(DropReason::NoMapping);
                };
                let snat = self.mesh_of(backend.addr).unwrap_or(gw);
                return self.create(pk, snat, Some(backend));
            }
            // DNAT only: the backend sees the client; its replies come back through
            // the gateway because the pipeline hands them to it.
            return self.create_dnat(pk, backend);
        }
        if t.dst.addr == self.config.uplink {
            let Some(target) = self.published(&t) else {
                return Verdict::Local;
            };
            let target = match self.resolve(pk, target) {
                Ok(b) => b,
                Err(v) => return v,
            };
            // Hairpin: DNAT to the target, SNAT to its network's gateway (or mesh
            // address, which replies from another node reach).
            let Some(gw) = self.network_of(target.addr).map(|n| n.gateway) else {
                return self.drop(DropReason::NoMapping);
            };
            let snat = self.mesh_of(target.addr).unwrap_or(gw);
            return self.create(pk, snat, Some(target));
        }
        if self.config.mesh.contains(&t.dst.addr) {
            // For the switch: a backend answering a health check.
            return Verdict::Local;
        }
        if let Some(dst_net) = self.network_of(t.dst.addr) {
            if dst_net.subnet.contains(t.src.addr) {
                return Verdict::Forward(Egress::Inside);
            }
            return self.drop(DropReason::Isolated);
        }
        let uplink = self.config.uplink;
        self.create(pk, uplink, None)
    }

    fn new_from_outside(&mut self, pk: &mut Packet<'_>) -> Verdict {
        let t = pk.parsed.tuple;
        if t.dst.addr == self.config.uplink {
            if let Some(target) = self.published(&t) {
                return match self.resolve(pk, target) {
                    // The routing mesh: the backend may live on another node.
                    Ok(b) => match self.mesh_of(b.addr) {
                        Some(m) => self.create(pk, m, Some(b)),
                        None => self.create_dnat(pk, b),
                    },
                    Err(v) => v,
                };
            }
            if pk.parsed.kind == (Kind::Echo { request: true }) {
                return Verdict::Local;
            }
        }
        self.drop(DropReason::NoMapping)
    }

    /// A new flow source-NAT'ed to `snat` (a masquerade port taken for it), and
    /// destination-NAT'ed to `dnat` if given.
    fn create(&mut self, pk: &mut Packet<'_>, snat: Ipv4Addr, dnat: Option<Endpoint>) -> Verdict {
        let t = pk.parsed.tuple;
        let Some(state) = State::initial(&pk.parsed.kind) else {
            return self.drop(DropReason::Invalid);
        };
        let (uplink, published) = (self.config.uplink, &self.published);
        let mesh = self.config.mesh.contains(&snat);
        let reserved = |port| {
            (snat == uplink && t.proto != Proto::Icmp && published.contains_key(&(t.proto, port)))
                // The switch's own ports on a mesh address (health checks) stay free.
                || (mesh && port > PORT_MAX)
        };
        let Some(port) = self.mappings.acquire(t.proto, snat, t.src, reserved) else {
            return self.drop(DropReason::PortsExhausted);
        };
        let mut out = Tuple::new(t.proto, Endpoint::new(snat, port), dnat.unwrap_or(t.dst));
        if let Kind::Echo { request: true } = pk.parsed.kind {
            out.dst.port = 0;
        }
        let v = self.insert(pk, out, state);
        if matches!(v, Verdict::Drop(_)) {
            self.mappings.release(t.proto, snat, t.src, port);
        }
        v
    }

    /// A new flow to a published port: DNAT only, the client kept.
    fn create_dnat(&mut self, pk: &mut Packet<'_>, target: Endpoint) -> Verdict {
        let Some(state) = State::initial(&pk.parsed.kind) else {
            return self.drop(DropReason::Invalid);
        };
        let out = Tuple::new(pk.parsed.tuple.proto, pk.parsed.tuple.src, target);
        self.insert(pk, out, state)
    }

    fn insert(&mut self, pk: &mut Packet<'_>, out: Tuple, state: State) -> Verdict {
        let (orig, len, now) = (pk.parsed.tuple, pk.len, pk.now);
        let (maps, lb) = (&mut self.mappings, &mut self.lb);
        let made = self
            .table
            .insert_evicting(orig, out.reverse(), state, len, now, |e| {
                maps.release_for(&e);
                lb.retire(&e);
            });
        match made {
            Ok(id) => match rewrite_with(pk.bytes, &out, pk.partial) {
                Ok(()) if pk.mark != 0 => {
                    self.table.set_mark(id, pk.mark);
                    self.lb.count(pk.mark);
                    Verdict::Forward(self.egress(out.dst.addr))
                }
                Ok(()) => Verdict::Forward(self.egress(out.dst.addr)),
                Err(_) => {
                    self.remove(id);
                    self.drop(DropReason::Malformed)
                }
            },
            Err(InsertError::Full) => self.drop(DropReason::TableFull),
            Err(InsertError::Exists) => self.drop(DropReason::Conflict),
        }
    }

    /// An ICMP error about the packet `quoted` of a tracked flow: the error travels the
    /// way replies to that packet do, so it is translated as they are, and its quote is
    /// turned back into the packet as it was before translation.
    fn icmp_error(
        &mut self,
        pkt: &mut [u8],
        dir: Direction,
        outer: Tuple,
        quoted: Tuple,
        len: usize,
        now: u64,
    ) -> Verdict {
        let Some((id, d)) = self.live(&quoted.reverse(), now) else {
            if dir == Direction::FromInside && self.within_network(outer) {
                // Between two stations of one network, about no flow of ours: an error
                // the bridge handed over only because it came from a service backend
                // (it may have been about a VIP flow); it goes on as it is, as the
                // backends' other packets do.
                return Verdict::Forward(Egress::Inside);
            }
            return self.drop(DropReason::NoMapping);
        };
        let Some(e) = self.table.get(id) else {
            return self.drop(DropReason::NoMapping);
        };
        let (arrive, leave) = (e.tuple(d), e.translated(d));
        // The quoted packet left by the side the error comes from, where replies to it
        // come from too: an error from the other side quoting it is forged (from the
        // uplink, it would be reflected back out of it).
        if self.is_inside(arrive.src.addr) != (dir == Direction::FromInside) {
            return self.drop(DropReason::Spoofed);
        }
        let back = match d {
            Dir::Original => e.tuple(Dir::Reply),
            Dir::Reply => e.tuple(Dir::Original),
        };
        let dst = leave.dst.addr;
        // The sender's address is kept for an error from a router on the way, except
        // that nothing leaves by the uplink with an inside address (MASQUERADE).
        let leaves_inside_addr = self.is_inside(outer.src.addr) && !self.is_inside(dst);
        let src = if outer.src.addr == arrive.src.addr || leaves_inside_addr {
            leave.src.addr
        } else {
            outer.src.addr
        };
        if rewrite_error(pkt, src, dst, &back).is_err() {
            return self.drop(DropReason::Malformed);
        }
        self.table.count(id, d, len);
        Verdict::Forward(self.egress(dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::TcpState;
    use crate::packet::tcp_flags::*;
    use crate::testutil::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const U: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
    const GW_A: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
    const C1: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
    const C2: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 3);
    const C3: Ipv4Addr = Ipv4Addr::new(172, 19, 0, 2);
    const WAN: Ipv4Addr = B;
    const IN: Direction = Direction::FromInside;
    const OUT: Direction = Direction::FromOutside;
    const FWD_OUT: Verdict = Verdict::Forward(Egress::Outside);
    const FWD_IN: Verdict = Verdict::Forward(Egress::Inside);

    fn net(a: [u8; 4], p: u8, gw: [u8; 4]) -> Network {
        Network {
            subnet: Ipv4Net::new(Ipv4Addr::from(a), p).unwrap(),
            gateway: Ipv4Addr::from(gw),
        }
    }

    fn config(limit: usize) -> Config {
        Config {
            networks: vec![
                net([172, 18, 0, 0], 24, [172, 18, 0, 1]),
                net([172, 19, 0, 0], 24, [172, 19, 0, 1]),
            ],
            uplink: U,
            published: vec![
                Published {
                    proto: Proto::Tcp,
                    host_port: 8080,
                    target: Endpoint::new(C1, 80),
                },
                Published {
                    proto: Proto::Udp,
                    host_port: 5353,
                    target: Endpoint::new(C1, 53),
                },
            ],
            ct_limit: limit,
            services: Vec::new(),
            mesh: Vec::new(),
        }
    }

    fn nat() -> Nat {
        Nat::new(config(DEFAULT_LIMIT)).unwrap()
    }

    /// Processes a copy of `p`; returns the verdict and the packet as it left.
    fn go(n: &mut Nat, p: &[u8], dir: Direction, now: u64) -> (Verdict, Vec<u8>) {
        let mut b = p.to_vec();
        let v = n.process(&mut b, dir, now);
        if matches!(v, Verdict::Forward(_)) {
            checksums_ok(&b).unwrap();
        } else {
            assert_eq!(b, p, "a packet not forwarded is unchanged");
        }
        (v, b)
    }

    fn with_service(c: &mut Config) {
        c.services.push(crate::lb::Service {
            vip: VIP,
            ports: vec![(Proto::Tcp, 80), (Proto::Udp, 53)],
            backends: vec![
                crate::lb::Backend {
                    addr: C1,
                    port: None,
                },
                crate::lb::Backend {
                    addr: C2,
                    port: None,
                },
            ],
            sched: crate::lb::Sched::RoundRobin,
        });
        c.published.push(Published {
            proto: Proto::Tcp,
            host_port: 9000,
            target: Endpoint::new(VIP, 80),
        });
    }

    const VIP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 100);
    const CL: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 50);

    const MESH: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 200);

    #[test]
    fn mesh_flows_are_source_natted_to_the_mesh_address() {
        let mut c = config(DEFAULT_LIMIT);
        with_service(&mut c);
        c.mesh.push(MESH);
        let mut n = Nat::new(c.clone()).unwrap();
        let (v, o) = go(&mut n, &tcp(WAN, 40000, U, 9000, SYN, b""), OUT, 0);
        assert_eq!((v, o), (FWD_IN, tcp(MESH, 40000, C1, 80, SYN, b"")));
        let (v, o) = go(&mut n, &tcp(C1, 80, MESH, 40000, SYN | ACK, b""), IN, 1);
        assert_eq!((v, o), (FWD_OUT, tcp(U, 9000, WAN, 40000, SYN | ACK, b"")));
        // A client port among the switch's own is not kept.
        let (v, o) = go(&mut n, &tcp(WAN, 62000, U, 9000, SYN, b""), OUT, 2);
        assert_eq!(v, FWD_IN);
        let sport = u16::from_be_bytes([o[20], o[21]]);
        assert!((PORT_MIN..=PORT_MAX).contains(&sport), "{sport}");
        // Unsolicited to the mesh address: for the switch (a health check's answer).
        let (v, _) = go(&mut n, &tcp(C2, 80, MESH, 61000, SYN | ACK, b""), IN, 3);
        assert_eq!(v, Verdict::Local);
        // A container's own flows to the VIP keep the client's address.
        let (_, o) = go(&mut n, &tcp(CL, 1000, VIP, 80, SYN, b""), IN, 4);
        assert_eq!(o[12..16], CL.octets());
        for bad in [GW_A, VIP, Ipv4Addr::new(10, 9, 9, 9)] {
            let mut c2 = c.clone();
            c2.mesh = vec![bad];
            assert_eq!(c2.validate(), Err(ConfigError::MeshOutside(bad)));
        }
        c.mesh.push(Ipv4Addr::new(172, 18, 0, 201));
        assert!(c.validate().is_err(), "two mesh addresses in one network");
    }

    #[test]
    fn nothing_starts_from_a_vip() {
        let mut c = config(DEFAULT_LIMIT);
        with_service(&mut c);
        let mut n = Nat::new(c).unwrap();
        // Found by the `services` fuzz target: a packet with a VIP as its source, to
        // another service or anywhere, would make a flow whose replies go to the VIP.
        for p in [
            udp(VIP, 80, C1, 80, b""),
            udp(VIP, 53, VIP, 53, b""),
            tcp(VIP, 80, WAN, 443, SYN, b""),
        ] {
            assert_eq!(go(&mut n, &p, IN, 0).0, Verdict::Drop(DropReason::Spoofed));
        }
        assert_eq!(n.table().len(), 0);
        // Replies of the VIP's own flows still leave from it.
        go(&mut n, &tcp(CL, 1000, VIP, 80, SYN, b""), IN, 1);
        let (v, o) = go(&mut n, &tcp(C1, 80, CL, 1000, SYN | ACK, b""), IN, 2);
        assert_eq!((v, o), (FWD_IN, tcp(VIP, 80, CL, 1000, SYN | ACK, b"")));
    }

    #[test]
    fn vip_flows_are_spread_and_stay_on_their_backend() {
        let mut c = config(DEFAULT_LIMIT);
        with_service(&mut c);
        let mut n = Nat::new(c).unwrap();
        // Two new connections: one to each backend, the client's address kept.
        let (v, o) = go(&mut n, &tcp(CL, 1000, VIP, 80, SYN, b""), IN, 0);
        assert_eq!((v, o), (FWD_IN, tcp(CL, 1000, C1, 80, SYN, b"")));
        let (v, o) = go(&mut n, &tcp(CL, 1001, VIP, 80, SYN, b""), IN, 0);
        assert_eq!((v, o), (FWD_IN, tcp(CL, 1001, C2, 80, SYN, b"")));
        // The backend's reply goes back from the VIP.
        let (v, o) = go(&mut n, &tcp(C1, 80, CL, 1000, SYN | ACK, b""), IN, 1);
        assert_eq!((v, o), (FWD_IN, tcp(VIP, 80, CL, 1000, SYN | ACK, b"")));
        // C1 goes down: the established flow stays on it, new ones go to C2.
        assert!(n.set_health(VIP, C1, false));
        let (_, o) = go(&mut n, &tcp(CL, 1000, VIP, 80, ACK, b"x"), IN, 2);
        assert_eq!(o, tcp(CL, 1000, C1, 80, ACK, b"x"));
        let (_, o) = go(&mut n, &tcp(CL, 1002, VIP, 80, SYN, b""), IN, 2);
        assert_eq!(o, tcp(CL, 1002, C2, 80, SYN, b""));
        let s = n.service_stats(3);
        assert_eq!(s[0].0, VIP);
        let b = &s[0].1;
        assert_eq!(
            (b[0].up, b[0].connections, b[0].packets, b[0].active),
            (false, 1, 3, 1)
        );
        assert_eq!((b[1].up, b[1].connections, b[1].packets), (true, 2, 2));
        // Expired flows keep their packets in the counters.
        n.expire(u64::MAX);
        let b = &n.service_stats(u64::MAX)[0].1;
        assert_eq!((b[0].packets, b[0].active, b[1].packets), (3, 0, 2));
        // No healthy backend: refused, packet unchanged, counted.
        n.set_health(VIP, C2, false);
        let p = tcp(CL, 1003, VIP, 80, SYN, b"");
        let mut b = p.clone();
        assert_eq!(n.process(&mut b, IN, 4), Verdict::Reject);
        assert_eq!(b, p);
        assert_eq!(n.drops(DropReason::NoBackend), 1);
        // A port the service does not serve is refused too; ICMP echo is the gateway's.
        n.set_health(VIP, C2, true);
        assert_eq!(
            go(&mut n, &tcp(CL, 1, VIP, 81, SYN, b""), IN, 4).0,
            Verdict::Reject
        );
        assert_eq!(go(&mut n, &echo(CL, VIP, true, 1), IN, 4).0, Verdict::Local);
        // Another network does not reach the VIP.
        assert_eq!(
            go(&mut n, &tcp(C3, 1, VIP, 80, SYN, b""), IN, 4).0,
            Verdict::Drop(DropReason::Isolated)
        );
    }

    #[test]
    fn syn_on_a_closed_vip_flow_is_a_new_connection_rebalanced() {
        let mut c = config(DEFAULT_LIMIT);
        with_service(&mut c);
        let mut n = Nat::new(c).unwrap();
        let syn = tcp(CL, 1000, VIP, 80, SYN, b"");
        // Each round: a connection the backend closes first (the client then keeps no
        // TIME_WAIT), then the client's next SYN from the same port, with the last ACK
        // seen or not (lost), or the flow reset instead.
        let endings: [&[(u8, bool)]; 4] = [
            &[
                (FIN | ACK, false),
                (ACK, true),
                (FIN | ACK, true),
                (ACK, false),
            ],
            &[(FIN | ACK, false), (ACK, true), (FIN | ACK, true)],
            &[(FIN | ACK, false)],
            &[(RST | ACK, false)],
        ];
        let backends = [C1, C2];
        for (round, end) in endings.iter().enumerate() {
            let be = backends[round % 2];
            let now = round as u64 * 10;
            let (v, o) = go(&mut n, &syn, IN, now);
            assert_eq!((v, o), (FWD_IN, tcp(CL, 1000, be, 80, SYN, b"")), "{round}");
            go(&mut n, &tcp(be, 80, CL, 1000, SYN | ACK, b""), IN, now);
            go(&mut n, &tcp(CL, 1000, VIP, 80, ACK, b""), IN, now);
            for &(f, from_client) in end.iter() {
                let p = if from_client {
                    tcp(CL, 1000, VIP, 80, f, b"")
                } else {
                    tcp(be, 80, CL, 1000, f, b"")
                };
                assert_eq!(go(&mut n, &p, IN, now + 1).0, FWD_IN);
            }
            // One flow for the tuple at any time: the closed one ended with the SYN.
            assert_eq!(n.table().len(), 1);
        }
        let (_, o) = go(&mut n, &syn, IN, 100);
        assert_eq!(o, tcp(CL, 1000, C1, 80, SYN, b""));
        let e = n.iter().next().unwrap();
        assert_eq!(
            (e.state, e.counters[0].packets),
            (State::Tcp(TcpState::SynSent), 1)
        );
        // Five connections counted, every packet kept in its backend's count.
        let b = &n.service_stats(100)[0].1;
        assert_eq!((b[0].connections, b[1].connections), (3, 2));
        assert_eq!(b[0].packets + b[1].packets, 3 * 4 + 4 + 3 + 1 + 1 + 1);
        // A retransmitted SYN on an open connection stays on its flow and backend.
        let (_, o) = go(&mut n, &syn, IN, 101);
        assert_eq!(o, tcp(CL, 1000, C1, 80, SYN, b""));
        assert_eq!(n.service_stats(101)[0].1[1].connections, 2);
        assert_eq!(n.service_stats(101)[0].1[0].connections, 3);
    }

    #[test]
    fn a_packet_that_starts_no_flow_is_not_a_connection() {
        let mut c = config(DEFAULT_LIMIT);
        with_service(&mut c);
        let mut n = Nat::new(c).unwrap();
        for f in [ACK, FIN | ACK, RST, SYN | ACK] {
            let v = go(&mut n, &tcp(CL, 2000, VIP, 80, f, b""), IN, 0).0;
            assert_eq!(v, Verdict::Drop(DropReason::Invalid), "{f:#x}");
        }
        let b = &n.service_stats(0)[0].1;
        assert_eq!((b[0].connections, b[1].connections), (0, 0));
        // The scheduler did not move: the first SYN goes to the first backend.
        let (_, o) = go(&mut n, &tcp(CL, 2001, VIP, 80, SYN, b""), IN, 1);
        assert_eq!(o, tcp(CL, 2001, C1, 80, SYN, b""));
        assert_eq!(n.service_stats(1)[0].1[0].connections, 1);
    }

    #[test]
    fn syn_on_a_closed_masqueraded_flow_starts_a_new_one() {
        let mut n = nat();
        go(&mut n, &tcp(C1, 40000, WAN, 80, SYN, b""), IN, 0);
        go(&mut n, &tcp(WAN, 80, U, 40000, RST | ACK, b""), OUT, 0);
        assert_eq!(n.iter().next().unwrap().state, State::Tcp(TcpState::Close));
        let (v, o) = go(&mut n, &tcp(C1, 40000, WAN, 80, SYN, b""), IN, 1);
        assert_eq!((v, o), (FWD_OUT, tcp(U, 40000, WAN, 80, SYN, b"")));
        let e = n.iter().next().unwrap();
        assert_eq!(
            (e.state, e.counters),
            (
                State::Tcp(TcpState::SynSent),
                [
                    crate::conntrack::Counters {
                        packets: 1,
                        bytes: 40
                    },
                    Default::default()
                ]
            )
        );
        assert_eq!((n.table().len(), n.mappings()), (1, 1));
    }

    #[test]
    fn published_service_from_outside() {
        let mut c = config(DEFAULT_LIMIT);
        with_service(&mut c);
        let mut n = Nat::new(c).unwrap();
        let (v, o) = go(&mut n, &tcp(WAN, 5000, U, 9000, SYN, b""), OUT, 0);
        assert_eq!((v, o), (FWD_IN, tcp(WAN, 5000, C1, 80, SYN, b"")));
        let (v, o) = go(&mut n, &tcp(C1, 80, WAN, 5000, SYN | ACK, b""), IN, 1);
        assert_eq!((v, o), (FWD_OUT, tcp(U, 9000, WAN, 5000, SYN | ACK, b"")));
        let (_, o) = go(&mut n, &tcp(WAN, 5001, U, 9000, SYN, b""), OUT, 1);
        assert_eq!(o, tcp(WAN, 5001, C2, 80, SYN, b""));
        n.set_health(VIP, C1, false);
        n.set_health(VIP, C2, false);
        assert_eq!(
            go(&mut n, &tcp(WAN, 5002, U, 9000, SYN, b""), OUT, 1).0,
            Verdict::Reject
        );
    }

    #[test]
    fn service_config_is_checked() {
        let mut c = config(10);
        with_service(&mut c);
        c.services[0].vip = WAN;
        assert_eq!(Nat::new(c).err(), Some(ConfigError::VipOutside(WAN)));
        let mut c = config(10);
        with_service(&mut c);
        c.services[0].vip = GW_A;
        assert_eq!(Nat::new(c).err(), Some(ConfigError::VipOutside(GW_A)));
        let mut c = config(10);
        with_service(&mut c);
        c.services[0].backends[0].addr = C3;
        assert_eq!(
            Nat::new(c).err(),
            Some(ConfigError::BackendOutside(C3, VIP))
        );
        let mut c = config(10);
        with_service(&mut c);
        let again = c.services[0].clone();
        c.services.push(again);
        assert_eq!(Nat::new(c).err(), Some(ConfigError::VipTwice(VIP)));
    }

    #[test]
    fn masquerade_tcp_connection() {
        let mut n = nat();
        let (v, o) = go(&mut n, &tcp(C1, 40000, WAN, 80, SYN, b""), IN, 0);
        assert_eq!((v, o), (FWD_OUT, tcp(U, 40000, WAN, 80, SYN, b"")));
        let (v, o) = go(&mut n, &tcp(WAN, 80, U, 40000, SYN | ACK, b""), OUT, 1);
        assert_eq!((v, o), (FWD_IN, tcp(WAN, 80, C1, 40000, SYN | ACK, b"")));
        let (v, _) = go(&mut n, &tcp(C1, 40000, WAN, 80, ACK, b"GET /"), IN, 2);
        assert_eq!(v, FWD_OUT);
        let e = n.iter().next().unwrap();
        assert_eq!(e.state, State::Tcp(TcpState::Established));
        assert_eq!(
            e.orig,
            Tuple::new(Proto::Tcp, Endpoint::new(C1, 40000), Endpoint::new(WAN, 80))
        );
        assert_eq!(
            e.reply,
            Tuple::new(Proto::Tcp, Endpoint::new(WAN, 80), Endpoint::new(U, 40000))
        );
        assert_eq!((e.counters[0].packets, e.counters[1].packets), (2, 1));
        assert_eq!(e.timeout_left(2), 432_000);
        // RST tears down to CLOSE (10 s), then the flow expires and frees its mapping.
        assert_eq!(
            go(&mut n, &tcp(WAN, 80, U, 40000, RST, b""), OUT, 3).0,
            FWD_IN
        );
        assert_eq!(n.iter().next().unwrap().state, State::Tcp(TcpState::Close));
        assert_eq!(n.mappings(), 1);
        assert_eq!(n.expire(10_002), 0);
        assert_eq!(n.expire(10_003), 1);
        assert_eq!((n.table().len(), n.mappings()), (0, 0));
        // A late segment from outside now has no flow.
        let late = tcp(WAN, 80, U, 40000, ACK, b"");
        assert_eq!(
            go(&mut n, &late, OUT, 20_000).0,
            Verdict::Drop(DropReason::NoMapping)
        );
        assert_eq!(n.drops(DropReason::NoMapping), 1);
    }

    /// [`go`] in partial mode: `p` is a complete packet, handed over in partial form;
    /// returns the verdict and the packet as it left, completed as a device would.
    fn go_partial(n: &mut Nat, p: &[u8], dir: Direction, now: u64) -> (Verdict, Vec<u8>) {
        let mut b = p.to_vec();
        partial_form(&mut b);
        let handed = b.clone();
        let v = n.process_csum(&mut b, dir, now, true);
        if matches!(v, Verdict::Forward(_)) {
            // What leaves is itself a partial form, for the device to complete.
            let mut want = b.clone();
            complete(&mut want);
            partial_form(&mut want);
            assert_eq!(b, want, "a partial form on the way out");
            complete(&mut b);
            checksums_ok(&b).unwrap();
        } else {
            assert_eq!(b, handed, "a packet not forwarded is unchanged");
            b.copy_from_slice(p);
        }
        (v, b)
    }

    #[test]
    fn partial_checksums_through_masquerade_dnat_and_hairpin() {
        let mut n = nat();
        // Masquerade out and the reply in, TCP and UDP (the port kept, then one taken).
        let steps = [
            (
                tcp(C1, 40000, WAN, 80, SYN, b""),
                IN,
                FWD_OUT,
                tcp(U, 40000, WAN, 80, SYN, b""),
            ),
            (
                tcp(WAN, 80, U, 40000, SYN | ACK, b""),
                OUT,
                FWD_IN,
                tcp(WAN, 80, C1, 40000, SYN | ACK, b""),
            ),
            (
                tcp(C1, 40000, WAN, 80, ACK, b"GET / HTTP/1.1\r\n"),
                IN,
                FWD_OUT,
                tcp(U, 40000, WAN, 80, ACK, b"GET / HTTP/1.1\r\n"),
            ),
            (
                udp(C1, 5000, WAN, 53, b"q"),
                IN,
                FWD_OUT,
                udp(U, 5000, WAN, 53, b"q"),
            ),
            (
                udp(C2, 5000, WAN, 53, b"q2"),
                IN,
                FWD_OUT,
                udp(U, PORT_MIN, WAN, 53, b"q2"),
            ),
            (
                udp(WAN, 53, U, PORT_MIN, b"a2"),
                OUT,
                FWD_IN,
                udp(WAN, 53, C2, 5000, b"a2"),
            ),
            // Published port: only the destination address and port change.
            (
                tcp(WAN, 51000, U, 8080, SYN, b""),
                OUT,
                FWD_IN,
                tcp(WAN, 51000, C1, 80, SYN, b""),
            ),
            (
                tcp(C1, 80, WAN, 51000, SYN | ACK, b""),
                IN,
                FWD_OUT,
                tcp(U, 8080, WAN, 51000, SYN | ACK, b""),
            ),
            // Hairpin: both addresses change.
            (
                tcp(C2, 45000, U, 8080, SYN, b""),
                IN,
                FWD_IN,
                tcp(GW_A, 45000, C1, 80, SYN, b""),
            ),
            (
                tcp(C1, 80, GW_A, 45000, SYN | ACK, b"x"),
                IN,
                FWD_IN,
                tcp(U, 8080, C2, 45000, SYN | ACK, b"x"),
            ),
        ];
        for (i, (p, dir, v, want)) in steps.into_iter().enumerate() {
            assert_eq!(go_partial(&mut n, &p, dir, 1), (v, want), "step {i}");
        }
        // Each translation equals what full mode makes of the same packets.
        let mut full = nat();
        let mut part = nat();
        for (p, dir) in [
            (tcp(C1, 40000, WAN, 80, SYN, b""), IN),
            (udp(C2, 7, WAN, 53, b"zz"), IN),
            (udp(WAN, 53, U, 7, b"zz"), OUT),
        ] {
            let (vf, f) = go(&mut full, &p, dir, 0);
            assert_eq!(go_partial(&mut part, &p, dir, 0), (vf, f));
        }
        // ICMP is never partial: the flag changes nothing for echo or errors.
        let (v, e) = go(&mut n, &echo(C1, WAN, true, 9), IN, 2);
        let mut b = echo(C1, WAN, true, 9);
        assert_eq!(n.process_csum(&mut b, IN, 2, true), v);
        assert_eq!(b, e);
        let err = icmp_error(WAN, U, 3, 3, &udp(U, PORT_MIN, WAN, 53, b"q2"));
        let mut b = err.clone();
        assert_eq!(n.process_csum(&mut b, OUT, 2, true), FWD_IN);
        assert_eq!(b, icmp_error(WAN, C2, 3, 3, &udp(C2, 5000, WAN, 53, b"q2")));
    }

    #[test]
    fn simultaneous_open_through_masquerade() {
        // TCP hole punching: each side sends a SYN to the other's public endpoint.
        let mut n = nat();
        let (v, _) = go(&mut n, &tcp(C1, 40000, WAN, 5000, SYN, b""), IN, 0);
        assert_eq!(v, FWD_OUT);
        let (v, o) = go(&mut n, &tcp(WAN, 5000, U, 40000, SYN, b""), OUT, 1);
        assert_eq!((v, o), (FWD_IN, tcp(WAN, 5000, C1, 40000, SYN, b"")));
        let st = |n: &Nat| n.iter().next().unwrap().state;
        assert_eq!(st(&n), State::Tcp(TcpState::SynSent2));
        let (v, _) = go(&mut n, &tcp(C1, 40000, WAN, 5000, SYN | ACK, b""), IN, 2);
        assert_eq!(v, FWD_OUT);
        assert_eq!(st(&n), State::Tcp(TcpState::SynRecv));
        let (v, _) = go(&mut n, &tcp(WAN, 5000, U, 40000, SYN | ACK, b""), OUT, 3);
        assert_eq!(v, FWD_IN);
        let (v, _) = go(&mut n, &tcp(C1, 40000, WAN, 5000, ACK, b""), IN, 4);
        assert_eq!(v, FWD_OUT);
        assert_eq!(st(&n), State::Tcp(TcpState::Established));
        assert_eq!((n.table().len(), n.mappings()), (1, 1));
    }

    #[test]
    fn tcp_close_from_either_side_then_expiry_frees_the_port() {
        for outside_closes in [false, true] {
            let mut n = nat();
            go(&mut n, &tcp(C1, 40000, WAN, 80, SYN, b""), IN, 0);
            go(&mut n, &tcp(WAN, 80, U, 40000, SYN | ACK, b""), OUT, 0);
            go(&mut n, &tcp(C1, 40000, WAN, 80, ACK, b""), IN, 0);
            let fin_in = tcp(C1, 40000, WAN, 80, FIN | ACK, b"");
            let fin_out = tcp(WAN, 80, U, 40000, FIN | ACK, b"");
            let ack_in = tcp(C1, 40000, WAN, 80, ACK, b"");
            let ack_out = tcp(WAN, 80, U, 40000, ACK, b"");
            let seq = if outside_closes {
                [(fin_out, OUT), (ack_in, IN), (fin_in, IN), (ack_out, OUT)]
            } else {
                [(fin_in, IN), (ack_out, OUT), (fin_out, OUT), (ack_in, IN)]
            };
            let states = [
                TcpState::FinWait,
                TcpState::CloseWait,
                TcpState::LastAck,
                TcpState::TimeWait,
            ];
            for (k, ((p, dir), s)) in seq.into_iter().zip(states).enumerate() {
                let now = 1 + k as u64;
                assert!(matches!(go(&mut n, &p, dir, now).0, Verdict::Forward(_)));
                let e = n.iter().next().unwrap();
                assert_eq!(e.state, State::Tcp(s));
                assert_eq!(e.timeout_left(now), s.timeout());
            }
            assert_eq!(n.expire(4 + 120_000 - 1), 0);
            assert_eq!(n.expire(4 + 120_000), 1);
            assert_eq!((n.table().len(), n.mappings()), (0, 0));
        }
    }

    #[test]
    fn non_syn_first_packet_is_invalid_and_not_tracked() {
        let mut n = nat();
        for f in [ACK, SYN | ACK, FIN | ACK, RST, 0] {
            let v = go(&mut n, &tcp(C1, 40000, WAN, 80, f, b""), IN, 0).0;
            assert_eq!(v, Verdict::Drop(DropReason::Invalid));
            let v = go(&mut n, &tcp(WAN, 1234, U, 8080, f, b""), OUT, 0).0;
            assert_eq!(v, Verdict::Drop(DropReason::Invalid));
        }
        assert_eq!((n.table().len(), n.mappings()), (0, 0));
        assert_eq!(n.drops(DropReason::Invalid), 10);
    }

    #[test]
    fn port_kept_when_free_else_from_range_and_endpoint_independent() {
        let mut n = nat();
        let (_, o1) = go(&mut n, &udp(C1, 5000, WAN, 53, b"a"), IN, 0);
        let (_, o2) = go(&mut n, &udp(C2, 5000, WAN, 53, b"b"), IN, 0);
        let (_, o3) = go(&mut n, &udp(C1, 5000, C, 53, b"c"), IN, 0);
        let (_, o4) = go(&mut n, &udp(C2, 5000, C, 123, b"d"), IN, 0);
        assert_eq!(o1, udp(U, 5000, WAN, 53, b"a"));
        assert_eq!(o2, udp(U, PORT_MIN, WAN, 53, b"b"));
        assert_eq!(
            o3,
            udp(U, 5000, C, 53, b"c"),
            "same inside endpoint, same outside port"
        );
        assert_eq!(o4, udp(U, PORT_MIN, C, 123, b"d"));
        // A published host port is never a masquerade source port.
        let (_, o5) = go(&mut n, &udp(C2, 5353, WAN, 53, b"e"), IN, 0);
        assert_eq!(o5, udp(U, PORT_MIN + 1, WAN, 53, b"e"));
        // Replies come back to the right container.
        let (v, r) = go(&mut n, &udp(C, 123, U, PORT_MIN, b"r"), OUT, 1);
        assert_eq!((v, r), (FWD_IN, udp(C, 123, C2, 5000, b"r")));
        // Filtering is per flow: another host cannot use the mapping.
        let v = go(&mut n, &udp(C, 999, U, PORT_MIN, b"x"), OUT, 1).0;
        assert_eq!(v, Verdict::Drop(DropReason::NoMapping));
        assert_eq!(n.mappings(), 3);
        // UDP: 30 s unreplied, 120 s once replied.
        assert_eq!(n.expire(30_000), 4);
        assert_eq!(n.mappings(), 1);
        assert_eq!(n.expire(121_000), 1);
        assert_eq!(n.mappings(), 0);
    }

    #[test]
    fn published_port_dnat_keeps_the_client() {
        let mut n = nat();
        let (v, o) = go(&mut n, &tcp(WAN, 51000, U, 8080, SYN, b""), OUT, 0);
        assert_eq!((v, o), (FWD_IN, tcp(WAN, 51000, C1, 80, SYN, b"")));
        let (v, o) = go(&mut n, &tcp(C1, 80, WAN, 51000, SYN | ACK, b""), IN, 0);
        assert_eq!((v, o), (FWD_OUT, tcp(U, 8080, WAN, 51000, SYN | ACK, b"")));
        assert_eq!(n.mappings(), 0);
        let (v, o) = go(&mut n, &udp(WAN, 7000, U, 5353, b"q"), OUT, 0);
        assert_eq!((v, o), (FWD_IN, udp(WAN, 7000, C1, 53, b"q")));
        // Unpublished port, or a container address directly: refused.
        for p in [
            tcp(WAN, 51000, U, 8081, SYN, b""),
            tcp(WAN, 51000, C1, 80, SYN, b""),
            udp(WAN, 1, U, 5354, b""),
        ] {
            assert_eq!(
                go(&mut n, &p, OUT, 0).0,
                Verdict::Drop(DropReason::NoMapping)
            );
        }
        // Echo to the uplink address is the switch's to answer.
        assert_eq!(go(&mut n, &echo(WAN, U, true, 1), OUT, 0).0, Verdict::Local);
        assert_eq!(
            go(&mut n, &echo(WAN, U, false, 1), OUT, 0).0,
            Verdict::Drop(DropReason::NoMapping)
        );
    }

    #[test]
    fn hairpin_to_a_published_port_even_ones_own() {
        let mut n = nat();
        // The second client's port is taken on the gateway address: it gets another.
        for (client, gp) in [(C2, 45000), (C1, PORT_MIN)] {
            let (v, o) = go(&mut n, &tcp(client, 45000, U, 8080, SYN, b""), IN, 0);
            assert_eq!((v, o), (FWD_IN, tcp(GW_A, gp, C1, 80, SYN, b"")));
            let (v, o) = go(&mut n, &tcp(C1, 80, GW_A, gp, SYN | ACK, b""), IN, 0);
            assert_eq!(
                (v, o),
                (FWD_IN, tcp(U, 8080, client, 45000, SYN | ACK, b""))
            );
        }
        // Two clients with the same port got different gateway ports.
        let ports: HashSet<u16> = n.iter().map(|e| e.reply.dst.port).collect();
        assert_eq!(ports.len(), 2);
        // The uplink address for anything else is local.
        assert_eq!(
            go(&mut n, &tcp(C2, 1, U, 22, SYN, b""), IN, 0).0,
            Verdict::Local
        );
    }

    #[test]
    fn isolation_gateway_and_spoofing() {
        let mut n = nat();
        let v = go(&mut n, &tcp(C1, 1000, C3, 80, SYN, b""), IN, 0).0;
        assert_eq!(v, Verdict::Drop(DropReason::Isolated));
        assert_eq!(
            go(&mut n, &echo(C3, C1, true, 1), IN, 0).0,
            Verdict::Drop(DropReason::Isolated)
        );
        assert_eq!(go(&mut n, &udp(C1, 1, C2, 2, b""), IN, 0).0, FWD_IN);
        assert_eq!(
            go(&mut n, &echo(C1, GW_A, true, 1), IN, 0).0,
            Verdict::Local
        );
        assert_eq!(
            go(&mut n, &udp(WAN, 1, C, 2, b""), IN, 0).0,
            Verdict::Drop(DropReason::Spoofed)
        );
        assert_eq!(
            go(&mut n, &udp(C1, 1, U, 5353, b""), OUT, 0).0,
            Verdict::Drop(DropReason::Spoofed)
        );
        assert_eq!(n.table().len(), 0);
    }

    #[test]
    fn ping_from_two_containers_with_one_id() {
        let mut n = nat();
        let (_, a) = go(&mut n, &echo(C1, WAN, true, 7), IN, 0);
        let (_, b) = go(&mut n, &echo(C2, WAN, true, 7), IN, 0);
        assert_eq!(a, echo(U, WAN, true, 7));
        assert_eq!(b, echo(U, WAN, true, PORT_MIN));
        assert_eq!(
            go(&mut n, &echo(WAN, U, false, PORT_MIN), OUT, 1),
            (FWD_IN, echo(WAN, C2, false, 7))
        );
        assert_eq!(
            go(&mut n, &echo(WAN, U, false, 7), OUT, 1),
            (FWD_IN, echo(WAN, C1, false, 7))
        );
        assert!(n.iter().all(|e| e.assured));
        assert_eq!(n.expire(30_000), 0);
        assert_eq!(n.expire(30_001), 2);
    }

    #[test]
    fn icmp_errors_are_translated_back() {
        let mut n = nat();
        // Port unreachable for a masqueraded UDP datagram.
        let inside = udp(C2, 5000, WAN, 53, b"query");
        go(&mut n, &udp(C1, 5000, WAN, 53, b"x"), IN, 0);
        let (_, outside) = go(&mut n, &inside, IN, 0);
        assert_eq!(outside, udp(U, PORT_MIN, WAN, 53, b"query"));
        let (v, e) = go(&mut n, &icmp_error(WAN, U, 3, 3, &outside), OUT, 1);
        assert_eq!((v, e), (FWD_IN, icmp_error(WAN, C2, 3, 3, &inside)));
        // Time exceeded from a router on the way: its address is kept.
        let (v, e) = go(&mut n, &icmp_error(C, U, 11, 0, &outside), OUT, 1);
        assert_eq!((v, e), (FWD_IN, icmp_error(C, C2, 11, 0, &inside)));
        // Fragmentation needed from the container about a published-port reply.
        let (_, _) = go(&mut n, &tcp(WAN, 51000, U, 8080, SYN, b""), OUT, 0);
        let from_c1 = tcp(C1, 80, WAN, 51000, SYN | ACK, b"");
        let (_, out) = go(&mut n, &from_c1, IN, 0);
        let (v, e) = go(&mut n, &icmp_error(WAN, U, 3, 4, &out), OUT, 1);
        assert_eq!(v, FWD_IN);
        assert_eq!(&e[..12], &icmp_error(WAN, C1, 3, 4, &from_c1)[..12]);
        assert_eq!(e, icmp_error(WAN, C1, 3, 4, &from_c1));
        // Found by the `nat` fuzz target: an error from the uplink quoting a packet that
        // left inside (the published flow's, as sent to C1) is forged; translated, it
        // would go back out of the uplink to the client.
        let to_c1 = tcp(WAN, 51000, C1, 80, SYN, b"");
        let forged = icmp_error(Ipv4Addr::new(198, 51, 100, 77), WAN, 3, 3, &to_c1);
        assert_eq!(
            go(&mut n, &forged, OUT, 1).0,
            Verdict::Drop(DropReason::Spoofed)
        );
        // And the same the other way: from inside, quoting what left by the uplink.
        let forged = icmp_error(C2, U, 3, 3, &outside);
        assert_eq!(
            go(&mut n, &forged, IN, 1).0,
            Verdict::Drop(DropReason::Spoofed)
        );
        // An error about nothing tracked is dropped.
        let stray = icmp_error(WAN, U, 3, 3, &udp(U, 1, WAN, 2, b""));
        assert_eq!(
            go(&mut n, &stray, OUT, 1).0,
            Verdict::Drop(DropReason::NoMapping)
        );
    }

    #[test]
    fn table_full_refuses_new_keeps_existing() {
        let mut n = Nat::new(config(2)).unwrap();
        go(&mut n, &udp(C1, 1, WAN, 53, b""), IN, 0);
        go(&mut n, &udp(C1, 2, WAN, 53, b""), IN, 0);
        // Answered (assured): neither may be evicted for a new flow.
        go(&mut n, &udp(WAN, 53, U, 1, b""), OUT, 0);
        go(&mut n, &udp(WAN, 53, U, 2, b""), OUT, 0);
        let v = go(&mut n, &udp(C1, 3, WAN, 53, b""), IN, 0).0;
        assert_eq!(v, Verdict::Drop(DropReason::TableFull));
        assert_eq!(
            (
                n.table().refused(),
                n.drops(DropReason::TableFull),
                n.mappings()
            ),
            (1, 1, 2)
        );
        assert_eq!(go(&mut n, &udp(WAN, 53, U, 2, b""), OUT, 1).0, FWD_IN);
        n.flush();
        assert_eq!((n.table().len(), n.mappings()), (0, 0));
        assert_eq!(go(&mut n, &udp(C1, 3, WAN, 53, b""), IN, 0).0, FWD_OUT);
    }

    #[test]
    fn spoofed_syns_to_a_published_port_do_not_lock_containers_out() {
        let limit = 100;
        let mut n = Nat::new(config(limit)).unwrap();
        // An established connection of C2's first.
        go(&mut n, &tcp(C2, 7000, WAN, 80, SYN, b""), IN, 0);
        go(&mut n, &tcp(WAN, 80, U, 7000, SYN | ACK, b""), OUT, 0);
        go(&mut n, &tcp(C2, 7000, WAN, 80, ACK, b""), IN, 0);
        // SYNs from forged addresses to the published port, answered by C1 (SYN_RECV:
        // half-open for 60 s): they fill the table, and keep coming.
        for i in 0..3 * limit as u16 {
            let spoofed = Ipv4Addr::new(10, 99, (i >> 8) as u8, i as u8);
            let (v, _) = go(&mut n, &tcp(spoofed, 1024 + i, U, 8080, SYN, b""), OUT, 1);
            assert_eq!(v, FWD_IN);
            let (v, _) = go(
                &mut n,
                &tcp(C1, 80, spoofed, 1024 + i, SYN | ACK, b""),
                IN,
                1,
            );
            assert_eq!(v, FWD_OUT);
            assert!(n.table().len() <= limit);
        }
        assert_eq!(n.table().len(), limit);
        // A container's new connections still get in, one unanswered flow making room
        // each time; the established one is never the one evicted.
        for p in 0..10 {
            let (v, _) = go(&mut n, &tcp(C1, 40000 + p, WAN, 443, SYN, b""), IN, 2);
            assert_eq!(v, FWD_OUT, "new connection {p}");
        }
        let (v, o) = go(&mut n, &tcp(WAN, 80, U, 7000, ACK, b"data"), OUT, 3);
        assert_eq!((v, o), (FWD_IN, tcp(WAN, 80, C2, 7000, ACK, b"data")));
        assert_eq!(n.drops(DropReason::TableFull), 0);
        assert_eq!(n.table().evicted(), 2 * limit as u64 + 1 + 10);
        // Mappings went with the evicted flows: one per live masqueraded flow.
        assert_eq!(n.mappings(), 11);
    }

    #[test]
    fn a_backend_reaching_its_own_vip_is_never_sent_to_itself() {
        for sched in [crate::lb::Sched::RoundRobin, crate::lb::Sched::SourceHash] {
            let mut c = config(DEFAULT_LIMIT);
            with_service(&mut c);
            c.services[0].sched = sched;
            let mut n = Nat::new(c).unwrap();
            // C1 is a backend: every connection of its goes to the other one, C2, with
            // its own address kept.
            for p in 0..6 {
                let (v, o) = go(&mut n, &tcp(C1, 3000 + p, VIP, 80, SYN, b""), IN, 0);
                assert_eq!((v, o), (FWD_IN, tcp(C1, 3000 + p, C2, 80, SYN, b"")));
            }
            // Other clients still use both.
            let mut seen = HashSet::new();
            for h in 50..80 {
                let cl = Ipv4Addr::new(172, 18, 0, h);
                let (_, o) = go(&mut n, &tcp(cl, 1000, VIP, 80, SYN, b""), IN, 0);
                seen.insert(o[16..20].to_vec());
            }
            assert_eq!(seen.len(), 2, "{sched:?}");
            // C2 down: C1 is the only healthy backend. It reaches itself from the
            // gateway's address, and its answer goes back to it from the VIP.
            n.set_health(VIP, C2, false);
            let (v, o) = go(&mut n, &tcp(C1, 4000, VIP, 80, SYN, b""), IN, 1);
            assert_eq!(v, FWD_IN);
            let (src, sport) = (
                Ipv4Addr::new(o[12], o[13], o[14], o[15]),
                u16::from_be_bytes([o[20], o[21]]),
            );
            assert_eq!(src, GW_A);
            assert_eq!(o, tcp(GW_A, sport, C1, 80, SYN, b""));
            let (v, o) = go(&mut n, &tcp(C1, 80, GW_A, sport, SYN | ACK, b""), IN, 2);
            assert_eq!((v, o), (FWD_IN, tcp(VIP, 80, C1, 4000, SYN | ACK, b"")));
            let (v, o) = go(&mut n, &tcp(C1, 4000, VIP, 80, ACK, b"x"), IN, 3);
            assert_eq!((v, o), (FWD_IN, tcp(GW_A, sport, C1, 80, ACK, b"x")));
        }
    }

    #[test]
    fn a_removed_backend_drains_its_tcp_flows_and_loses_its_udp_ones() {
        let mut c = config(DEFAULT_LIMIT);
        with_service(&mut c);
        let mut n = Nat::new(c.clone()).unwrap();
        // A TCP connection and a UDP flow on C1.
        go(&mut n, &tcp(CL, 1000, VIP, 80, SYN, b""), IN, 0);
        go(&mut n, &tcp(C1, 80, CL, 1000, SYN | ACK, b""), IN, 0);
        go(&mut n, &tcp(CL, 1000, VIP, 80, ACK, b""), IN, 0);
        let (_, o) = go(&mut n, &tcp(CL, 1500, VIP, 80, SYN, b""), IN, 0);
        assert_eq!(o, tcp(CL, 1500, C2, 80, SYN, b""));
        let (_, o) = go(&mut n, &udp(CL, 2000, VIP, 53, b"q"), IN, 0);
        assert_eq!(o, udp(CL, 2000, C1, 53, b"q"));
        let epoch = n.lb().epoch();
        // set-backends C2: C1 leaves.
        c.services[0].backends.remove(0);
        n.set_config(c.clone()).unwrap();
        assert_ne!(n.lb().epoch(), epoch);
        // Its TCP connection carries on, and its replies are still a service's.
        assert!(n.lb().is_reply_source(Proto::Tcp, Endpoint::new(C1, 80)));
        assert!(n.lb().is_backend(C1));
        assert_eq!(
            n.lb().draining_sources().collect::<Vec<_>>(),
            [(C1, Some((Proto::Tcp, 80))), (C1, Some((Proto::Udp, 53)))]
        );
        let (v, o) = go(&mut n, &tcp(C1, 80, CL, 1000, ACK, b"late"), IN, 1);
        assert_eq!((v, o), (FWD_IN, tcp(VIP, 80, CL, 1000, ACK, b"late")));
        // Its UDP flow is gone: the next datagram is balanced again, to C2.
        let (_, o) = go(&mut n, &udp(CL, 2000, VIP, 53, b"q"), IN, 1);
        assert_eq!(o, udp(CL, 2000, C2, 53, b"q"));
        // Once its last flow is gone, it is no service's backend any more.
        let epoch = n.lb().epoch();
        go(&mut n, &tcp(CL, 1000, VIP, 80, RST, b""), IN, 2);
        n.expire(20_000);
        assert!(!n.lb().is_reply_source(Proto::Tcp, Endpoint::new(C1, 80)));
        assert!(!n.lb().is_backend(C1));
        assert_ne!(n.lb().epoch(), epoch);
        // A backend leaving with no flow does not drain; a deleted service's do.
        n.flush();
        c.services[0].backends = vec![crate::lb::Backend {
            addr: C1,
            port: None,
        }];
        n.set_config(c.clone()).unwrap();
        go(&mut n, &tcp(CL, 1001, VIP, 80, SYN, b""), IN, 3);
        c.services.clear();
        c.published.clear();
        n.set_config(c).unwrap();
        assert!(n.lb().is_reply_source(Proto::Tcp, Endpoint::new(C1, 80)));
        assert!(!n.lb().is_reply_source(Proto::Tcp, Endpoint::new(C2, 80)));
        n.flush();
        assert!(!n.lb().is_backend(C1));
    }

    #[test]
    fn a_backend_that_goes_down_loses_its_udp_flows_keeps_its_tcp_ones() {
        let mut c = config(DEFAULT_LIMIT);
        with_service(&mut c);
        let mut n = Nat::new(c).unwrap();
        let (_, o) = go(&mut n, &udp(CL, 2000, VIP, 53, b"q"), IN, 0);
        assert_eq!(o, udp(CL, 2000, C1, 53, b"q"));
        go(&mut n, &udp(C1, 53, CL, 2000, b"a"), IN, 0);
        let (_, o) = go(&mut n, &tcp(CL, 1000, VIP, 80, SYN, b""), IN, 0);
        assert_eq!(o, tcp(CL, 1000, C2, 80, SYN, b""));
        let (_, o) = go(&mut n, &tcp(CL, 1001, VIP, 80, SYN, b""), IN, 0);
        assert_eq!(o, tcp(CL, 1001, C1, 80, SYN, b""));
        // The client keeps sending: its flow would stay on C1 for ever.
        for t in 1..5 {
            let (_, o) = go(&mut n, &udp(CL, 2000, VIP, 53, b"q"), IN, t * 1000);
            assert_eq!(o, udp(CL, 2000, C1, 53, b"q"));
        }
        n.set_health(VIP, C1, false);
        let (_, o) = go(&mut n, &udp(CL, 2000, VIP, 53, b"q"), IN, 6000);
        assert_eq!(o, udp(CL, 2000, C2, 53, b"q"));
        let (_, o) = go(&mut n, &tcp(CL, 1001, VIP, 80, SYN, b""), IN, 6000);
        assert_eq!(o, tcp(CL, 1001, C1, 80, SYN, b""));
        // Its packets stay in its counts.
        let b = &n.service_stats(6000)[0].1;
        assert_eq!((b[0].connections, b[0].packets), (2, 8));
    }

    #[test]
    fn a_backends_icmp_error_about_a_vip_flow_is_translated_others_pass() {
        let mut c = config(DEFAULT_LIMIT);
        with_service(&mut c);
        let mut n = Nat::new(c).unwrap();
        let (_, to_backend) = go(&mut n, &udp(CL, 2000, VIP, 53, b"q"), IN, 0);
        assert_eq!(to_backend, udp(CL, 2000, C1, 53, b"q"));
        // Port unreachable from the backend: the client gets it from the VIP, about
        // the datagram it sent.
        let (v, e) = go(&mut n, &icmp_error(C1, CL, 3, 3, &to_backend), IN, 1);
        assert_eq!(
            (v, e),
            (
                FWD_IN,
                icmp_error(VIP, CL, 3, 3, &udp(CL, 2000, VIP, 53, b"q"))
            )
        );
        // An error between two stations of the network about no flow goes on as is.
        let direct = icmp_error(C1, CL, 3, 3, &udp(CL, 2001, C1, 53, b"q"));
        assert_eq!(go(&mut n, &direct, IN, 1), (FWD_IN, direct.clone()));
        // To the gateway or across networks, it is still nobody's.
        for stray in [
            icmp_error(C1, GW_A, 3, 3, &udp(GW_A, 9, C1, 53, b"")),
            icmp_error(C1, C3, 3, 3, &udp(C3, 9, C1, 53, b"")),
        ] {
            assert_eq!(
                go(&mut n, &stray, IN, 1).0,
                Verdict::Drop(DropReason::NoMapping)
            );
        }
    }

    #[test]
    fn ports_exhausted() {
        let mut c = Config::new(U);
        c.networks.push(net([10, 0, 0, 0], 8, [10, 0, 0, 1]));
        let mut n = Nat::new(c).unwrap();
        let base = u32::from(Ipv4Addr::new(10, 1, 0, 0));
        // All from port 7: the first keeps it, every other takes one from the range.
        let span = u32::from(PORT_MAX - PORT_MIN) + 1;
        for i in 0..=span {
            let v = go(
                &mut n,
                &udp(Ipv4Addr::from(base + i), 7, WAN, 53, b""),
                IN,
                0,
            )
            .0;
            assert_eq!(v, FWD_OUT, "flow {i}");
        }
        let v = go(
            &mut n,
            &udp(Ipv4Addr::new(10, 2, 0, 0), 7, WAN, 53, b""),
            IN,
            0,
        )
        .0;
        assert_eq!(v, Verdict::Drop(DropReason::PortsExhausted));
        assert_eq!(n.table().len() as u32, span + 1);
    }

    #[test]
    fn refusals_and_config() {
        let mut n = nat();
        let mut f = udp(C1, 1, WAN, 2, b"x");
        f[6] = 0x20;
        assert_eq!(go(&mut n, &f, IN, 0).0, Verdict::Drop(DropReason::Fragment));
        assert_eq!(
            go(&mut n, &[0x45, 0], IN, 0).0,
            Verdict::Drop(DropReason::Malformed)
        );
        let mut g = udp(C1, 1, WAN, 2, b"x");
        g[9] = 47;
        assert_eq!(
            go(&mut n, &g, IN, 0).0,
            Verdict::Drop(DropReason::Unsupported)
        );
        assert_eq!(metrics_decl::check::<DropReason>(), Ok(()));
        let names: HashSet<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut c = config(10);
        c.networks
            .push(net([172, 18, 0, 128], 25, [172, 18, 0, 129]));
        assert!(matches!(Nat::new(c), Err(ConfigError::Overlap(..))));
        let mut c = config(10);
        c.networks[0].gateway = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(
            Nat::new(c).err(),
            Some(ConfigError::GatewayOutside(Ipv4Addr::new(10, 0, 0, 1)))
        );
        let mut c = config(10);
        c.published.push(Published {
            proto: Proto::Tcp,
            host_port: 8080,
            target: Endpoint::new(C2, 1),
        });
        assert_eq!(Nat::new(c).err(), Some(ConfigError::Duplicate("tcp", 8080)));
        let mut c = config(10);
        c.published.push(Published {
            proto: Proto::Tcp,
            host_port: 1,
            target: Endpoint::new(WAN, 1),
        });
        assert_eq!(n.set_config(c).err(), Some(ConfigError::TargetOutside(WAN)));
        let mut c = config(10);
        c.published.clear();
        n.set_config(c).unwrap();
        assert_eq!(
            go(&mut n, &tcp(WAN, 1, U, 8080, SYN, b""), OUT, 0).0,
            Verdict::Drop(DropReason::NoMapping)
        );
        assert_eq!(n.config().ct_limit, 10);
        assert!(Ipv4Net::new(C1, 33).is_none());
        assert!(Ipv4Net::new(C1, 0).unwrap().contains(WAN));
    }

    /// Source ports inside endpoints collide on: published host ports (TCP 8080, UDP
    /// 5353), both ends of the masquerade range, and two others.
    const SPORTS: [u16; 6] = [8080, 5353, PORT_MIN, PORT_MAX, 40000, 1000];

    fn inside_addr() -> impl Strategy<Value = Ipv4Addr> {
        (2u8..20).prop_map(|h| Ipv4Addr::new(172, 18, 0, h))
    }

    fn outside_addr() -> impl Strategy<Value = Ipv4Addr> {
        (1u8..6).prop_map(|h| Ipv4Addr::new(192, 0, 2, h))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random outbound UDP flows: every reply comes back to exactly the inside
        /// endpoint that sent, the same inside endpoint always has the same outside
        /// port (endpoint-independent), and no two inside endpoints share one.
        #[test]
        fn masquerade_round_trips_and_mapping_is_endpoint_independent(
            flows in proptest::collection::vec((inside_addr(), 1000u16..1010, outside_addr(), 50u16..53, proptest::collection::vec(any::<u8>(), 0..20)), 1..60)
        ) {
            let mut n = nat();
            let mut port_of: HashMap<(Ipv4Addr, u16), u16> = HashMap::new();
            let mut owner: HashMap<u16, (Ipv4Addr, u16)> = HashMap::new();
            for (c, sp, d, dp, pl) in flows {
                let (v, o) = go(&mut n, &udp(c, sp, d, dp, &pl), IN, 0);
                prop_assert_eq!(v, FWD_OUT);
                let t = parse(&o).unwrap().tuple;
                prop_assert_eq!(t.src.addr, U);
                prop_assert_eq!(o.clone(), udp(U, t.src.port, d, dp, &pl));
                let p = *port_of.entry((c, sp)).or_insert(t.src.port);
                prop_assert_eq!(p, t.src.port);
                let who = *owner.entry(p).or_insert((c, sp));
                prop_assert_eq!(who, (c, sp));
                let (v, r) = go(&mut n, &udp(d, dp, U, p, &pl), OUT, 1);
                prop_assert_eq!((v, r), (FWD_IN, udp(d, dp, c, sp, &pl)));
            }
        }

        /// A flood of random new flows never grows the table past its limit, and every
        /// refusal is counted.
        #[test]
        fn flood_never_exceeds_limit(limit in 0usize..40, flows in proptest::collection::vec((inside_addr(), any::<u16>(), outside_addr(), any::<u16>(), 0u64..100_000), 0..200)) {
            let mut n = Nat::new(config(limit)).unwrap();
            for (c, sp, d, dp, now) in flows {
                let _ = go(&mut n, &udp(c, sp, d, dp, b""), IN, now);
                let _ = go(&mut n, &tcp(d, dp, U, 8080, SYN, b""), OUT, now);
                prop_assert!(n.table().len() <= limit);
                prop_assert!(n.mappings() <= n.table().len());
                if now % 5 == 0 { n.expire_some(now, 4); }
            }
            prop_assert_eq!(n.table().refused(), n.drops(DropReason::TableFull));
        }

        /// Masquerade port allocation under churn: inside endpoints of two networks
        /// collide on a few source ports (published host ports and range ports among
        /// them) and open UDP, TCP, echo and hairpin flows; flows are reset, flows come
        /// in to a published port, and time jumps so that flows expire. After every
        /// step: no two inside endpoints share an outside (protocol, address, port);
        /// an inside endpoint has one port per outside address; every port is the kept
        /// source port or in 32768-60999 and never a published host port of its
        /// protocol on the uplink; no mapping outlives its flows.
        #[test]
        fn masquerade_ports_never_shared_under_churn(
            ops in proptest::collection::vec(
                (0u8..6, any::<bool>(), 2u8..24, 0usize..SPORTS.len(), outside_addr(), 0u64..15_000),
                1..300,
            )
        ) {
            let mut n = nat();
            let published: HashSet<(Proto, u16)> =
                n.config().published.iter().map(|p| (p.proto, p.host_port)).collect();
            let mut now = 0u64;
            for (i, (op, second_net, h, sp, d, dt)) in ops.into_iter().enumerate() {
                now += dt;
                let c = Ipv4Addr::new(172, if second_net { 19 } else { 18 }, 0, h);
                let sp = SPORTS[sp];
                match op {
                    0 => { go(&mut n, &udp(c, sp, d, 53, b"u"), IN, now); }
                    1 => { go(&mut n, &tcp(c, sp, d, 80, SYN, b""), IN, now); }
                    2 => { go(&mut n, &echo(c, d, true, sp), IN, now); }
                    3 => { go(&mut n, &tcp(c, sp, U, 8080, SYN, b""), IN, now); }
                    4 => {
                        // Reset, from the far side, one of this endpoint's TCP flows.
                        let far = n.iter().find(|e| e.orig.proto == Proto::Tcp && e.orig.src.addr == c).map(|e| e.reply);
                        if let Some(r) = far {
                            let dir = if n.is_inside(r.src.addr) { IN } else { OUT };
                            go(&mut n, &tcp(r.src.addr, r.src.port, r.dst.addr, r.dst.port, RST, b""), dir, now);
                        }
                    }
                    _ => { go(&mut n, &tcp(d, sp, U, 8080, SYN, b""), OUT, now); }
                }
                if i % 4 == 0 { n.expire(now); } else { n.expire_some(now, 8); }

                let mut owner: HashMap<(Proto, Ipv4Addr, u16), Endpoint> = HashMap::new();
                let mut port_of: HashMap<(Proto, Ipv4Addr, Endpoint), u16> = HashMap::new();
                for e in n.iter() {
                    let (inside, out) = (e.orig.src, e.reply.dst);
                    if out == inside {
                        continue; // not source-NAT'ed (a published port's flow)
                    }
                    let proto = e.orig.proto;
                    let who = *owner.entry((proto, out.addr, out.port)).or_insert(inside);
                    prop_assert_eq!(who, inside, "{} shared", out);
                    let p = *port_of.entry((proto, out.addr, inside)).or_insert(out.port);
                    prop_assert_eq!(p, out.port, "{} has two ports", inside);
                    prop_assert!(
                        out.port == inside.port || (PORT_MIN..=PORT_MAX).contains(&out.port),
                        "{} -> {}", inside, out
                    );
                    if out.addr == U {
                        prop_assert!(!published.contains(&(proto, out.port)), "published {}", out);
                    }
                }
                prop_assert_eq!(n.mappings(), port_of.len(), "a mapping without a flow");
                prop_assert_eq!(n.iter().count(), n.table().len());
            }
            n.expire(u64::MAX);
            prop_assert_eq!((n.table().len(), n.mappings()), (0, 0));
            // Every port came back: a fresh endpoint keeps any unpublished one.
            for (k, sp) in SPORTS.into_iter().enumerate() {
                let c = Ipv4Addr::new(172, 18, 0, 100 + k as u8);
                let u = go(&mut n, &udp(c, sp, WAN, 53, b""), IN, now).1;
                let t = go(&mut n, &tcp(c, sp, WAN, 80, SYN, b""), IN, now).1;
                let e = go(&mut n, &echo(c, WAN, true, sp), IN, now).1;
                for (proto, out) in [(Proto::Udp, u), (Proto::Tcp, t), (Proto::Icmp, e)] {
                    let kept = parse(&out).unwrap().tuple.src.port == sp;
                    prop_assert_eq!(kept, !published.contains(&(proto, sp)), "{:?} {}", proto, sp);
                }
                // A published port's flow took a range port another round may want.
                n.expire(u64::MAX);
            }
        }

        /// `process` is total on arbitrary bytes from either side, and leaves
        /// unforwarded packets as they were.
        #[test]
        fn process_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..100), inside in any::<bool>()) {
            let mut n = nat();
            let dir = if inside { IN } else { OUT };
            let mut b = bytes.clone();
            if !matches!(n.process(&mut b, dir, 0), Verdict::Forward(_)) {
                prop_assert_eq!(b, bytes);
            }
        }

        /// Near-valid packets (one byte changed) with addresses on both sides of the
        /// NAT: total, and forwarded packets keep right checksums.
        #[test]
        fn process_is_total_near_valid(p in arb_packet(), c in inside_addr(), i in any::<usize>(), v in any::<u8>(), inside in any::<bool>()) {
            let mut n = nat();
            let mut p = p;
            // Put an inside address at the source so some packets are translated.
            if inside { p[12..16].copy_from_slice(&c.octets()); }
            let i = i % p.len();
            p[i] = v;
            let dir = if inside { IN } else { OUT };
            let mut b = p.clone();
            let _ = n.process(&mut b, dir, 0);
            let _ = n.process(&mut b, dir, 1);
            n.expire(u64::MAX);
            prop_assert_eq!(n.table().len(), 0);
        }
    }
}
