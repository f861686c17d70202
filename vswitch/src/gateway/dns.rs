//! The gateway's DNS server, as Docker's embedded DNS: each network's gateway answers
//! for the names of that network's endpoints (A, and PTR for their addresses), says
//! NXDOMAIN for unknown names in the network's own domain, and forwards everything else
//! to the network's upstream resolvers, answering SERVFAIL when none replies in time.
//!
//! This module owns the records, the queries waiting for an upstream and the DNS
//! messages; the wire format is `hickory-proto`'s. It sees DNS payloads only: the
//! gateway's UDP and TCP paths ([`super::dns_udp`], [`super::dns_tcp`]) carry them.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nat::nat::Ipv4Net;

use crate::dataplane::PortRt;

/// The DNS port.
pub const PORT: u16 = 53;
/// TTL of the records the gateway answers with (Docker's embedded DNS uses 600 s).
const RECORD_TTL: u32 = 600;
/// After this long without an answer, the next upstream is asked (milliseconds).
const TRY_MS: u64 = 1000;
/// After this long without an answer, the client gets SERVFAIL (milliseconds); a query
/// asked again over TCP gets this long again from then.
pub const TIMEOUT_MS: u64 = 2000;
/// Queries waiting for an upstream at most; more are answered SERVFAIL at once, so a
/// flood of queries for slow names cannot grow the table.
pub const PENDING_MAX: usize = 1024;
/// Source ports the gateway's own queries to upstreams leave from (IANA's dynamic range:
/// a random port per query, as RFC 5452 asks, against spoofed answers).
const SPORT_MIN: u16 = 49152;
/// The largest UDP answer for a client that did not say (RFC 1035 4.2.1).
const UDP_MIN_PAYLOAD: usize = 512;

/// One name of an endpoint in a network.
#[derive(Clone)]
pub struct Entry {
    /// Lower case, no trailing dot.
    pub name: String,
    pub addr: Ipv4Addr,
    /// The endpoint's port: its records are answered only while it is up, so a dead
    /// container's name stops resolving at once.
    pub port: Option<Arc<PortRt>>,
    /// For a `dnsrr` service's name, the service's VIP: the record is answered only
    /// while its backend passes its health checks.
    pub backend_of: Option<Ipv4Addr>,
    /// The backend failed its health checks.
    pub down: bool,
}

impl Entry {
    /// A name of an address, answered while `port` (if any) is up.
    pub fn new(name: String, addr: Ipv4Addr, port: Option<Arc<PortRt>>) -> Self {
        Entry {
            name,
            addr,
            port,
            backend_of: None,
            down: false,
        }
    }

    /// Whether the endpoint is alive (its port up, or being attached; a backend healthy).
    pub fn live(&self) -> bool {
        !self.down
            && self.port.as_ref().is_none_or(|p| {
                p.up.load(Ordering::Relaxed) || p.attach_pending.load(Ordering::Relaxed)
            })
    }
}

/// A network's DNS: what its gateway answers and where it forwards.
#[derive(Clone)]
pub struct NetDns {
    pub bridge: u32,
    pub subnet: Ipv4Net,
    /// The network's own domain (lower case, no trailing dot), if any.
    pub domain: Option<String>,
    pub upstreams: Vec<Ipv4Addr>,
    pub records: Vec<Entry>,
}

impl NetDns {
    /// The live addresses of `name` (relative to the network, lower case).
    fn addrs(&self, name: &str) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self
            .records
            .iter()
            .filter(|e| e.name == name && e.live())
            .map(|e| e.addr)
            .collect();
        v.dedup();
        v
    }

    /// The fully qualified names of live endpoints with address `a`.
    fn names_of(&self, a: Ipv4Addr) -> Vec<String> {
        let mut v: Vec<String> = self
            .records
            .iter()
            .filter(|e| e.addr == a && e.live())
            .map(|e| match &self.domain {
                Some(d) => format!("{}.{d}.", e.name),
                None => format!("{}.", e.name),
            })
            .collect();
        v.dedup();
        v
    }
}

/// Where an answer to a client goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// A UDP client: its address and port.
    Udp(Ipv4Addr, u16),
    /// A TCP connection of the gateway's (its handle there).
    Tcp(u32),
}

/// A query waiting for an upstream.
struct Pending {
    bridge: u32,
    client: Client,
    /// The client's query (its own ID in front).
    query: Vec<u8>,
    /// The ID the upstream was asked with.
    upstream_id: u16,
    started: u64,
    /// Index of the upstream last asked.
    tried: usize,
    /// The client's largest UDP answer.
    limit: usize,
    /// Asked again over TCP (of the upstream that answered truncated).
    tcp: bool,
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answer the client with these bytes.
    Answer(Vec<u8>),
    /// Send `query` to `upstream` port 53 from `sport` of the network's gateway.
    Forward(Upstream),
    /// Not a query the gateway takes (a response, unparseable): dropped.
    Malformed,
}

/// A query to send to an upstream.
#[derive(Debug, PartialEq, Eq)]
pub struct Upstream {
    pub bridge: u32,
    pub upstream: Ipv4Addr,
    pub sport: u16,
    pub query: Vec<u8>,
}

/// An answer to send to a client of network `bridge`.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub bridge: u32,
    pub client: Client,
    pub bytes: Vec<u8>,
}

/// What an upstream's UDP answer calls for.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// Send this to the client.
    Reply(Reply),
    /// The answer was truncated and the client asked over TCP, where it can take the
    /// whole answer: ask the same upstream this query (`upstream_id` in front) over
    /// TCP, from local port `sport`, then hand its answer to
    /// [`Resolver::tcp_answer`].
    AskTcp(Upstream),
}

/// The records of every network and the queries in flight.
pub struct Resolver {
    nets: Vec<NetDns>,
    pending: HashMap<u16, Pending>,
    rng: u64,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    /// A resolver with no network.
    pub fn new() -> Self {
        Resolver {
            nets: Vec::new(),
            pending: HashMap::new(),
            rng: RandomState::new().hash_one(0x5eed_u64) | 1,
        }
    }

    /// Installs the networks' records and upstreams; queries of networks that are gone
    /// are forgotten.
    pub fn configure(&mut self, nets: Vec<NetDns>) {
        self.pending
            .retain(|_, p| nets.iter().any(|n| n.bridge == p.bridge));
        self.nets = nets;
    }

    /// The networks as configured (for `dns-show`).
    /// Marks each `dnsrr` backend's records by `healthy(vip, backend)`.
    pub fn mark_backends(&mut self, healthy: impl Fn(Ipv4Addr, Ipv4Addr) -> bool) {
        for e in self.nets.iter_mut().flat_map(|n| n.records.iter_mut()) {
            if let Some(vip) = e.backend_of {
                e.down = !healthy(vip, e.addr);
            }
        }
    }

    pub fn nets(&self) -> &[NetDns] {
        &self.nets
    }

    /// Queries waiting for an upstream.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: per-query IDs and ports need to be unguessable from outside,
        // not cryptographic; the seed is the OS's randomness.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Handles a query from `client` on network `bridge` at time `now` (ms).
    pub fn query(&mut self, bridge: u32, client: Client, bytes: &[u8], now: u64) -> Outcome {
        let Ok(msg) = Message::from_vec(bytes) else {
            return Outcome::Malformed;
        };
        if msg.message_type() != MessageType::Query {
            return Outcome::Malformed;
        }
        let limit = match client {
            Client::Tcp(_) => usize::from(u16::MAX),
            Client::Udp(..) => usize::from(msg.max_payload()).max(UDP_MIN_PAYLOAD),
        };
        let Some(net) = self.nets.iter().find(|n| n.bridge == bridge) else {
            return Outcome::Answer(error(&msg, ResponseCode::Refused));
        };
        if msg.op_code() != OpCode::Query {
            return Outcome::Answer(error(&msg, ResponseCode::NotImp));
        }
        let [q] = msg.queries() else {
            return Outcome::Answer(error(&msg, ResponseCode::FormErr));
        };
        let name = q.name().to_lowercase().to_ascii();
        let name = name.trim_end_matches('.');
        let local = match local_answer(net, name, q.query_type(), q.query_class()) {
            Some(l) => l,
            None => {
                return self.forward(bridge, client, bytes, limit, now, &msg);
            }
        };
        let mut r = response(&msg);
        r.set_authoritative(true);
        match local {
            Local::Records(recs) => {
                r.add_answers(recs.into_iter().map(|rd| {
                    let mut rec = Record::from_rdata(q.name().clone(), RECORD_TTL, rd);
                    rec.set_dns_class(DNSClass::IN);
                    rec
                }));
            }
            Local::NxDomain => {
                r.set_response_code(ResponseCode::NXDomain);
            }
        }
        Outcome::Answer(encode(&r, limit))
    }

    fn forward(
        &mut self,
        bridge: u32,
        client: Client,
        bytes: &[u8],
        limit: usize,
        now: u64,
        msg: &Message,
    ) -> Outcome {
        let upstream = self
            .nets
            .iter()
            .find(|n| n.bridge == bridge)
            .and_then(|n| n.upstreams.first().copied());
        let Some(upstream) = upstream else {
            return Outcome::Answer(error(msg, ResponseCode::ServFail));
        };
        if self.pending.len() >= PENDING_MAX {
            return Outcome::Answer(error(msg, ResponseCode::ServFail));
        }
        let (sport, upstream_id) = loop {
            let r = self.random();
            let sport = SPORT_MIN + (r % u64::from(u16::MAX - SPORT_MIN + 1)) as u16;
            if !self.pending.contains_key(&sport) {
                break (sport, (r >> 32) as u16);
            }
        };
        let query = with_id(bytes, upstream_id);
        self.pending.insert(
            sport,
            Pending {
                bridge,
                client,
                query: bytes.to_vec(),
                upstream_id,
                started: now,
                tried: 0,
                limit,
                tcp: false,
            },
        );
        Outcome::Forward(Upstream {
            bridge,
            upstream,
            sport,
            query,
        })
    }

    /// An answer from `from` to the gateway's port `sport`: the reply for the client that
    /// asked, or `None` if no query of ours waits for it (late, spoofed, malformed). A
    /// truncated answer is passed on as it is, to a TCP client too (see
    /// [`Resolver::upstream_answer_at`], which asks again over TCP instead).
    pub fn upstream_answer(&mut self, from: Ipv4Addr, sport: u16, bytes: &[u8]) -> Option<Reply> {
        match self.udp_answer(from, sport, bytes, None)? {
            Answered::Reply(r) => Some(r),
            Answered::AskTcp(_) => None,
        }
    }

    /// [`Resolver::upstream_answer`], except that a truncated answer to a query that
    /// came over TCP is not passed on (it would stay truncated for ever: the client
    /// already uses TCP): the query is to be asked again over TCP ([`Answered::AskTcp`]),
    /// and waits [`TIMEOUT_MS`] more from `now` for that answer.
    pub fn upstream_answer_at(
        &mut self,
        from: Ipv4Addr,
        sport: u16,
        bytes: &[u8],
        now: u64,
    ) -> Option<Answered> {
        self.udp_answer(from, sport, bytes, Some(now))
    }

    fn udp_answer(
        &mut self,
        from: Ipv4Addr,
        sport: u16,
        bytes: &[u8],
        tcp_at: Option<u64>,
    ) -> Option<Answered> {
        let p = self.pending.get(&sport)?;
        let net = self.nets.iter().find(|n| n.bridge == p.bridge)?;
        if p.tcp || !net.upstreams.contains(&from) {
            return None;
        }
        let msg = Message::from_vec(bytes).ok()?;
        if msg.id() != p.upstream_id || msg.message_type() != MessageType::Response {
            return None;
        }
        if let (Some(now), true, Client::Tcp(_)) = (tcp_at, msg.truncated(), p.client) {
            let p = self.pending.get_mut(&sport)?;
            p.tcp = true;
            p.started = now;
            return Some(Answered::AskTcp(Upstream {
                bridge: p.bridge,
                upstream: from,
                sport,
                query: with_id(&p.query, p.upstream_id),
            }));
        }
        let p = self.pending.remove(&sport)?;
        let client_id = Message::from_vec(&p.query).map(|m| m.id()).unwrap_or(0);
        let bytes = if bytes.len() > p.limit {
            // The client cannot take it over UDP: it asks again over TCP.
            let mut t = msg.truncate();
            t.set_id(client_id);
            t.to_vec().ok()?
        } else {
            with_id(bytes, client_id)
        };
        Some(Answered::Reply(Reply {
            bridge: p.bridge,
            client: p.client,
            bytes,
        }))
    }

    /// The whole answer (`bytes`, without its length prefix) to the query asked again
    /// over TCP from local port `sport`: the reply for the client, or `None` if no query
    /// waits for it there or it is not the answer (wrong ID, not a response).
    pub fn tcp_answer(&mut self, sport: u16, bytes: &[u8]) -> Option<Reply> {
        let p = self.pending.get(&sport).filter(|p| p.tcp)?;
        let msg = Message::from_vec(bytes).ok()?;
        if msg.id() != p.upstream_id || msg.message_type() != MessageType::Response {
            return None;
        }
        let p = self.pending.remove(&sport)?;
        let client_id = Message::from_vec(&p.query).map(|m| m.id()).unwrap_or(0);
        Some(Reply {
            bridge: p.bridge,
            client: p.client,
            bytes: with_id(bytes, client_id),
        })
    }

    /// The query asked again over TCP from `sport` cannot be (no connection free) or got
    /// no answer (the connection failed): SERVFAIL for its client at once.
    pub fn tcp_failed(&mut self, sport: u16) -> Option<Reply> {
        self.pending.get(&sport).filter(|p| p.tcp)?;
        let p = self.pending.remove(&sport)?;
        let m = Message::from_vec(&p.query).ok()?;
        Some(Reply {
            bridge: p.bridge,
            client: p.client,
            bytes: error(&m, ResponseCode::ServFail),
        })
    }

    /// Whether a query asked again over TCP from `sport` still waits for its answer.
    pub fn waits_tcp(&self, sport: u16) -> bool {
        self.pending.get(&sport).is_some_and(|p| p.tcp)
    }

    /// Queries gone unanswered: those past [`TIMEOUT_MS`] are answered SERVFAIL, those
    /// past [`TRY_MS`] asked again of the next upstream (not one asked over TCP: it
    /// waits for the upstream that answered truncated).
    pub fn expire(&mut self, now: u64, resend: &mut Vec<Upstream>, fail: &mut Vec<Reply>) {
        let mut dead = Vec::new();
        for (&sport, p) in &mut self.pending {
            let age = now.saturating_sub(p.started);
            if age >= TIMEOUT_MS {
                dead.push(sport);
                continue;
            }
            let want = (age / TRY_MS) as usize;
            let Some(net) = self.nets.iter().find(|n| n.bridge == p.bridge) else {
                continue;
            };
            if p.tcp {
                continue;
            }
            if want > p.tried && want < net.upstreams.len() {
                p.tried = want;
                resend.push(Upstream {
                    bridge: p.bridge,
                    upstream: net.upstreams[want],
                    sport,
                    query: with_id(&p.query, p.upstream_id),
                });
            }
        }
        for sport in dead {
            if let Some(p) = self.pending.remove(&sport) {
                if let Ok(m) = Message::from_vec(&p.query) {
                    fail.push(Reply {
                        bridge: p.bridge,
                        client: p.client,
                        bytes: error(&m, ResponseCode::ServFail),
                    });
                }
            }
        }
    }

    /// Whether a query of `client` waits for an upstream.
    pub fn waits_for(&self, client: Client) -> bool {
        self.pending.values().any(|p| p.client == client)
    }

    /// Forgets the queries of TCP connection `conn` (it closed).
    pub fn forget_tcp(&mut self, conn: u32) {
        self.pending.retain(|_, p| p.client != Client::Tcp(conn));
    }
}

/// What the gateway knows about a name itself.
enum Local {
    Records(Vec<RData>),
    NxDomain,
}

/// The local answer for `name` (lower case, no trailing dot), or `None`: forward it.
fn local_answer(net: &NetDns, name: &str, ty: RecordType, class: DNSClass) -> Option<Local> {
    if class != DNSClass::IN && class != DNSClass::ANY {
        return None;
    }
    let want_a = matches!(ty, RecordType::A | RecordType::ANY);
    let rel = match &net.domain {
        Some(d) if name == d => Some(""),
        Some(d) => name.strip_suffix(d).and_then(|r| r.strip_suffix('.')),
        None => None,
    };
    let in_domain = rel.is_some();
    let rel = rel.unwrap_or(name);
    let addrs = net.addrs(rel);
    if !addrs.is_empty() {
        let rd = if want_a {
            addrs.into_iter().map(|a| RData::A(A(a))).collect()
        } else {
            Vec::new()
        };
        return Some(Local::Records(rd));
    }
    if in_domain {
        return Some(if rel.is_empty() {
            Local::Records(Vec::new())
        } else {
            Local::NxDomain
        });
    }
    if let Some(addr) = reverse(name) {
        if net.subnet.contains(addr) {
            let names = net.names_of(addr);
            if names.is_empty() {
                return Some(Local::NxDomain);
            }
            if !matches!(ty, RecordType::PTR | RecordType::ANY) {
                return Some(Local::Records(Vec::new()));
            }
            let rd = names
                .iter()
                .filter_map(|n| Name::from_ascii(n).ok())
                .map(|n| RData::PTR(PTR(n)))
                .collect();
            return Some(Local::Records(rd));
        }
    }
    None
}

/// The address an `in-addr.arpa` name stands for, if it names one whole address.
fn reverse(name: &str) -> Option<Ipv4Addr> {
    let digits = name.strip_suffix(".in-addr.arpa")?;
    let o: Vec<u8> = digits
        .split('.')
        .map(|p| p.parse::<u8>().ok())
        .collect::<Option<_>>()?;
    let [d, c, b, a] = o[..] else { return None };
    Some(Ipv4Addr::new(a, b, c, d))
}

/// The response skeleton to `q`: its ID, opcode, question and RD flag.
fn response(q: &Message) -> Message {
    let mut r = Message::new();
    r.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_op_code(q.op_code())
        .set_recursion_desired(q.recursion_desired())
        .set_recursion_available(true);
    r.add_queries(q.queries().iter().cloned());
    r
}

/// An error answer to `q`.
fn error(q: &Message, code: ResponseCode) -> Vec<u8> {
    let mut r = response(q);
    r.set_response_code(code);
    encode(&r, usize::from(u16::MAX))
}

/// `r` encoded, truncated (TC set, no records) if it is longer than `limit`.
fn encode(r: &Message, limit: usize) -> Vec<u8> {
    match r.to_vec() {
        Ok(b) if b.len() <= limit => b,
        _ => r.truncate().to_vec().unwrap_or_default(),
    }
}

/// `msg` with its ID replaced: the ID is the header's first two bytes (RFC 1035 4.1.1),
/// so the client's bytes go upstream (and the upstream's back) exactly as they were
/// sent, EDNS options and all, instead of being re-encoded.
fn with_id(msg: &[u8], id: u16) -> Vec<u8> {
    let mut v = msg.to_vec();
    if let Some(h) = v.get_mut(..2) {
        h.copy_from_slice(&id.to_be_bytes());
    }
    v
}

#[cfg(test)]
mod tests;
