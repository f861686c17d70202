//! DNS over TCP at the gateway (RFC 7766): a small TCP endpoint per network, at the
//! gateway's address port 53, made of `smoltcp` sockets over an in-memory device. The
//! gateway owns no kernel socket in a network (the network exists only in the switch),
//! so its TCP is userspace TCP: smoltcp's state machine, fed the IP packets NAT says
//! are local, polled on each of them and once a second for retransmissions; what it
//! sends is routed back to the client like any packet the gateway originates.
//!
//! Each connection carries length-prefixed queries; each goes to the same
//! [`Resolver`](super::dns::Resolver) as UDP queries, and its answer (local, or an
//! upstream's, which is asked over UDP) is written back into the connection it came on.
//!
//! An upstream's UDP answer may be truncated (TC, past 512 bytes or the EDNS size),
//! which a TCP client cannot do anything with: the endpoint then asks the same upstream
//! again over TCP, from a client socket of its own at the gateway's address, through
//! NAT and out of the uplink as its UDP queries go; the whole answer goes back into the
//! client's connection. Like everything here it never blocks: the connection advances
//! as packets arrive and once a second, and the resolver's timeout bounds it.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use super::dns::{Client, Outcome, Reply, Upstream, PORT};
use super::frames::ETH;
use super::{Ev, Gateway, Out, Side};
use crate::pool::{Buf, Pool};
use crate::wire::vnet;

/// Connections a network's gateway serves at once (more wait in their SYN retries).
const CONNS: usize = 8;
/// Receive buffer of a connection: a query is a few hundred bytes at most in practice;
/// a longer one is refused (the connection closed).
const RX_BUF: usize = 4096;
/// Send buffer of a connection: room for a large answer or several pipelined ones.
const TX_BUF: usize = 16 * 1024;
/// A connection idle this long is closed (RFC 7766 6.2.3 asks for seconds, not minutes).
const IDLE: SmolDuration = SmolDuration::from_secs(10);
/// The MTU the endpoint assumes (the network's; larger segments are the sender's GSO).
const MTU: usize = 1500;
/// Queries a network's endpoint asks upstreams again over TCP at once; one more gets
/// SERVFAIL at once.
const UP_CONNS: usize = 8;
/// Receive buffer of such a connection: the answer is read out of it as it comes, into
/// a buffer that grows to the answer's length (at most 64 KiB).
const UP_RX_BUF: usize = 8 * 1024;

/// IP packets in and out of a network's TCP endpoint.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) rx: VecDeque<Vec<u8>>,
    pub(super) tx: Vec<Vec<u8>>,
}

impl Queue {
    /// A queue and the smoltcp interface on it that holds `addr/prefix` (IP medium: the
    /// gateway does the Ethernet framing and ARP itself).
    pub(super) fn with_iface(
        addr: Ipv4Addr,
        prefix: u8,
        seed: u64,
        now: u64,
    ) -> (Queue, Interface) {
        let mut dev = Queue::default();
        let mut cfg = Config::new(HardwareAddress::Ip);
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut dev, SmolInstant::from_millis(now as i64));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), prefix));
        });
        (dev, iface)
    }
}

pub(super) struct Rx(Vec<u8>);
pub(super) struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut v = vec![0u8; len];
        let r = f(&mut v);
        self.0.push(v);
        r
    }
}

impl Device for Queue {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: SmolInstant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _t: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = MTU;
        // The IP header was checked before NAT; a container's TCP checksum is often
        // partial (left to offload), so it is not checked again on the way in.
        c.checksum.ipv4 = Checksum::Tx;
        c.checksum.tcp = Checksum::Tx;
        c
    }
}

/// One connection slot: a smoltcp socket, the connection's id while it is one, and the
/// bytes of its current query so far.
struct Slot {
    handle: SocketHandle,
    conn: u32,
    buf: Vec<u8>,
}

/// A query asked again of an upstream over TCP: the client socket, the local port
/// (the query's key in the resolver), the query to send once connected, the answer so
/// far.
struct UpSlot {
    handle: SocketHandle,
    sport: u16,
    query: Vec<u8>,
    /// Bytes of `query` written into the socket.
    sent: usize,
    answer: Vec<u8>,
    /// Answered or given up: the socket goes once it has closed.
    done: bool,
}

/// A network's TCP endpoint.
pub(super) struct TcpNet {
    bridge: u32,
    addr: Ipv4Addr,
    prefix: u8,
    iface: Interface,
    dev: Queue,
    sockets: SocketSet<'static>,
    slots: Vec<Slot>,
    up: Vec<UpSlot>,
}

impl TcpNet {
    fn new(bridge: u32, addr: Ipv4Addr, prefix: u8, seed: u64, now: u64) -> Self {
        let (dev, mut iface) = Queue::with_iface(addr, prefix, seed, now);
        // Upstreams are outside the network: smoltcp sends nowhere without a route.
        // Any next hop does on an IP medium; what leaves goes through NAT, not to it.
        let _ = iface.routes_mut().add_default_ipv4_route(addr);
        let mut sockets = SocketSet::new(Vec::new());
        let slots = (0..CONNS)
            .map(|_| {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; RX_BUF]),
                    tcp::SocketBuffer::new(vec![0; TX_BUF]),
                );
                let _ = s.listen(PORT);
                Slot {
                    handle: sockets.add(s),
                    conn: 0,
                    buf: Vec::new(),
                }
            })
            .collect();
        TcpNet {
            bridge,
            addr,
            prefix,
            iface,
            dev,
            sockets,
            slots,
            up: Vec::new(),
        }
    }

    /// Opens a connection to `u.upstream` port 53 from `u.sport` for `u.query`; false if
    /// none can be opened (all [`UP_CONNS`] busy, or smoltcp refused).
    fn connect_upstream(&mut self, u: &Upstream) -> bool {
        let Ok(len) = u16::try_from(u.query.len()) else {
            return false;
        };
        if self.up.iter().filter(|x| !x.done).count() >= UP_CONNS {
            return false;
        }
        let mut query = Vec::with_capacity(2 + u.query.len());
        query.extend_from_slice(&len.to_be_bytes());
        query.extend_from_slice(&u.query);
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; UP_RX_BUF]),
            tcp::SocketBuffer::new(vec![0; query.len()]),
        );
        s.set_timeout(Some(IDLE));
        let remote = (IpAddress::Ipv4(u.upstream), PORT);
        if s.connect(self.iface.context(), remote, u.sport).is_err() {
            return false;
        }
        self.up.push(UpSlot {
            handle: self.sockets.add(s),
            sport: u.sport,
            query,
            sent: 0,
            answer: Vec::new(),
            done: false,
        });
        true
    }
}

/// The TCP endpoints of every network.
#[derive(Default)]
pub(super) struct TcpEndpoints {
    nets: Vec<TcpNet>,
    next_conn: u32,
}

impl TcpEndpoints {
    /// Keeps the endpoints of networks whose gateway address stays, makes the others.
    pub(super) fn configure(&mut self, want: &[(u32, Ipv4Addr, u8)], seed: u64, now: u64) {
        let mut old = std::mem::take(&mut self.nets);
        for &(bridge, addr, prefix) in want {
            match old
                .iter()
                .position(|n| n.bridge == bridge && n.addr == addr && n.prefix == prefix)
            {
                Some(i) => self.nets.push(old.swap_remove(i)),
                None => self.nets.push(TcpNet::new(
                    bridge,
                    addr,
                    prefix,
                    seed ^ u64::from(bridge),
                    now,
                )),
            }
        }
    }
}

impl Gateway {
    /// A TCP packet for the gateway's address on network `bridge` (NAT said local):
    /// into that network's endpoint if it is for port 53 of its own gateway.
    pub(super) fn dns_tcp_segment(
        &mut self,
        bridge: u32,
        buf: Buf,
        total: usize,
        pool: &Pool,
        out: &mut Out,
    ) {
        let start = vnet::LEN + ETH;
        let pkt = buf.bytes().get(start..start + total).map(<[u8]>::to_vec);
        pool.put(buf);
        let Some(pkt) = pkt else {
            return self.count(Ev::BadIp);
        };
        let for_dns = wire::Ipv4Packet::new_checked(&pkt[..]).ok().and_then(|ip| {
            let l4 = pkt.get(ip.header_len()..)?;
            let dport = wire::bytes::be16(l4, 2)?;
            Some(dport == PORT && self.me(Side::Net(bridge)).is_some_and(|m| m.0 == ip.dst()))
        });
        if for_dns != Some(true) {
            // Not DNS: maybe a backend answering a health check.
            return self.health_segment(bridge, pkt, pool, out);
        }
        let Some(n) = self.dns_tcp.nets.iter_mut().find(|n| n.bridge == bridge) else {
            return self.count(Ev::LocalUnhandled);
        };
        n.dev.rx.push_back(pkt);
        self.dns_tcp_poll(bridge, pool, out);
    }

    /// Runs network `bridge`'s endpoint: packets in, connections served, packets out.
    pub(super) fn dns_tcp_poll(&mut self, bridge: u32, pool: &Pool, out: &mut Out) {
        let now = self.now();
        let t = SmolInstant::from_millis(now as i64);
        let mut queries: Vec<(u32, Vec<u8>)> = Vec::new();
        let Some(n) = self.dns_tcp.nets.iter_mut().find(|n| n.bridge == bridge) else {
            return;
        };
        // Upstream connections that are over leave once closed (an aborted one has sent
        // its reset by now).
        let sockets = &mut n.sockets;
        n.up.retain(|u| {
            let open = sockets.get_mut::<tcp::Socket>(u.handle).is_open();
            if u.done && !open {
                sockets.remove(u.handle);
            }
            !u.done || open
        });
        // Closed connections listen again before the next SYN is looked at.
        for slot in &mut n.slots {
            let s = n.sockets.get_mut::<tcp::Socket>(slot.handle);
            if !s.is_open() {
                if slot.conn != 0 {
                    self.dns.forget_tcp(slot.conn);
                }
                slot.conn = 0;
                slot.buf.clear();
                let _ = s.listen(PORT);
            }
        }
        n.iface.poll(t, &mut n.dev, &mut n.sockets);
        let mut malformed = 0u64;
        for slot in &mut n.slots {
            let s = n.sockets.get_mut::<tcp::Socket>(slot.handle);
            if !s.is_open() {
                continue;
            }
            if s.is_active() && slot.conn == 0 {
                self.dns_tcp.next_conn = self.dns_tcp.next_conn.wrapping_add(1).max(1);
                slot.conn = self.dns_tcp.next_conn;
                s.set_timeout(Some(IDLE));
            }
            while s.can_recv() {
                let mut chunk = [0u8; 512];
                match s.recv_slice(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => slot.buf.extend_from_slice(&chunk[..k]),
                }
            }
            // Length-prefixed messages (RFC 1035 4.2.2), possibly several.
            while let Some(len) = wire::bytes::be16(&slot.buf, 0).map(usize::from) {
                if len == 0 || len > RX_BUF - 2 {
                    malformed += 1;
                    s.abort();
                    slot.buf.clear();
                    break;
                }
                if slot.buf.len() < 2 + len {
                    break;
                }
                let q: Vec<u8> = slot.buf.drain(..2 + len).skip(2).collect();
                queries.push((slot.conn, q));
            }
            if slot.buf.len() > RX_BUF {
                malformed += 1;
                s.abort();
                slot.buf.clear();
            }
            if s.state() == tcp::State::CloseWait
                && s.send_queue() == 0
                && !self.dns.waits_for(Client::Tcp(slot.conn))
            {
                // The client is done, and has every answer it asked for.
                s.close();
            }
        }
        // Upstream connections: the query out once connected, the answer in.
        let mut answers: Vec<(u16, Vec<u8>)> = Vec::new();
        let mut failed: Vec<u16> = Vec::new();
        for u in n.up.iter_mut().filter(|u| !u.done) {
            let s = n.sockets.get_mut::<tcp::Socket>(u.handle);
            if !self.dns.waits_tcp(u.sport) {
                // Timed out (SERVFAIL sent), or its client left.
                s.abort();
                u.done = true;
                continue;
            }
            if s.may_send() {
                if let Some(rest) = u.query.get(u.sent..).filter(|r| !r.is_empty()) {
                    u.sent += s.send_slice(rest).unwrap_or(0);
                }
            }
            while s.can_recv() {
                let mut chunk = [0u8; 1024];
                match s.recv_slice(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => u.answer.extend_from_slice(&chunk[..k]),
                }
            }
            let want = wire::bytes::be16(&u.answer, 0).map(|l| 2 + usize::from(l));
            if let Some(whole) = want.filter(|&w| u.answer.len() >= w) {
                answers.push((u.sport, u.answer.get(2..whole).unwrap_or_default().to_vec()));
                s.abort();
                u.done = true;
            } else if !matches!(s.state(), tcp::State::SynSent | tcp::State::SynReceived)
                && !s.may_recv()
            {
                // Refused, reset, timed out, or closed before the whole answer.
                failed.push(u.sport);
                s.abort();
                u.done = true;
            }
        }
        self.events[Ev::DnsMalformed as usize] += malformed;
        for (sport, a) in answers {
            match self.dns.tcp_answer(sport, &a) {
                Some(r) => {
                    self.count(Ev::DnsAnswered);
                    self.dns_reply(r, pool, out);
                }
                None => failed.push(sport),
            }
        }
        for sport in failed {
            if let Some(r) = self.dns.tcp_failed(sport) {
                self.count(Ev::DnsServfail);
                self.dns_reply(r, pool, out);
            }
        }
        for (conn, q) in queries {
            match self.dns.query(bridge, Client::Tcp(conn), &q, now) {
                Outcome::Malformed => {
                    self.count(Ev::DnsMalformed);
                    self.dns_tcp_close(bridge, conn);
                }
                Outcome::Answer(bytes) => {
                    self.count(Ev::DnsAnswered);
                    self.dns_tcp_write(bridge, conn, &bytes);
                }
                Outcome::Forward(u) => {
                    self.count(Ev::DnsForwarded);
                    self.dns_upstream(u, pool, out);
                }
            }
        }
        self.dns_tcp_flush(bridge, t, pool, out);
    }

    /// Asks `u`'s query again of its upstream over TCP (its UDP answer was truncated
    /// and the client asked over TCP); SERVFAIL for the client if no connection can be
    /// opened.
    pub(super) fn dns_tcp_ask(&mut self, u: Upstream, pool: &Pool, out: &mut Out) {
        let opened = self
            .dns_tcp
            .nets
            .iter_mut()
            .find(|n| n.bridge == u.bridge)
            .is_some_and(|n| n.connect_upstream(&u));
        if !opened {
            if let Some(r) = self.dns.tcp_failed(u.sport) {
                self.count(Ev::DnsServfail);
                self.dns_reply(r, pool, out);
            }
            return;
        }
        self.dns_tcp_poll(u.bridge, pool, out);
    }

    /// A TCP segment NAT translated back to one of the gateway's addresses from outside:
    /// an upstream's, for a query asked again over TCP.
    pub(super) fn dns_tcp_from_upstream(&mut self, buf: Buf, pool: &Pool, out: &mut Out) {
        let start = vnet::LEN + ETH;
        let pkt = buf.bytes().get(start..).and_then(|ip| {
            let v = wire::Ipv4Packet::new_checked(ip).ok()?;
            let end = usize::from(v.total_len()).min(ip.len());
            Some((v.dst(), ip.get(..end)?.to_vec()))
        });
        pool.put(buf);
        let Some((dst, pkt)) = pkt else {
            return self.count(Ev::BadIp);
        };
        let Some(n) = self.dns_tcp.nets.iter_mut().find(|n| n.addr == dst) else {
            return self.count(Ev::LocalUnhandled);
        };
        let bridge = n.bridge;
        n.dev.rx.push_back(pkt);
        self.dns_tcp_poll(bridge, pool, out);
    }

    /// An answer for TCP connection `conn` (from an upstream, or SERVFAIL).
    pub(super) fn dns_tcp_reply(&mut self, r: &Reply, pool: &Pool, out: &mut Out) {
        let Client::Tcp(conn) = r.client else { return };
        self.dns_tcp_write(r.bridge, conn, &r.bytes);
        let t = SmolInstant::from_millis(self.now() as i64);
        self.dns_tcp_flush(r.bridge, t, pool, out);
    }

    fn dns_tcp_write(&mut self, bridge: u32, conn: u32, bytes: &[u8]) {
        let Some(n) = self.dns_tcp.nets.iter_mut().find(|n| n.bridge == bridge) else {
            return;
        };
        let Some(slot) = n.slots.iter().find(|s| s.conn == conn) else {
            return;
        };
        let s = n.sockets.get_mut::<tcp::Socket>(slot.handle);
        let Ok(len) = u16::try_from(bytes.len()) else {
            return;
        };
        if s.send_capacity() - s.send_queue() < 2 + bytes.len() {
            // The client does not read its answers: it loses the connection.
            s.abort();
            return;
        }
        let _ = s.send_slice(&len.to_be_bytes());
        let _ = s.send_slice(bytes);
    }

    fn dns_tcp_close(&mut self, bridge: u32, conn: u32) {
        if let Some(n) = self.dns_tcp.nets.iter_mut().find(|n| n.bridge == bridge) {
            if let Some(slot) = n.slots.iter().find(|s| s.conn == conn) {
                n.sockets.get_mut::<tcp::Socket>(slot.handle).abort();
            }
        }
    }

    /// Polls the endpoint once more and routes what it sends to the clients.
    fn dns_tcp_flush(&mut self, bridge: u32, t: SmolInstant, pool: &Pool, out: &mut Out) {
        let Some(n) = self.dns_tcp.nets.iter_mut().find(|n| n.bridge == bridge) else {
            return;
        };
        n.iface.poll(t, &mut n.dev, &mut n.sockets);
        let sent = std::mem::take(&mut n.dev.tx);
        self.send_ip(bridge, sent, pool, out);
    }

    /// Routes IP packets the gateway's own TCP made (DNS answers, health checks) to
    /// their destinations in network `bridge`; those for outside (queries asked of an
    /// upstream over TCP) go through NAT first, as the gateway's UDP queries do.
    pub(super) fn send_ip(&mut self, bridge: u32, sent: Vec<Vec<u8>>, pool: &Pool, out: &mut Out) {
        let Some((_, my_mac)) = self.me(Side::Net(bridge)) else {
            return;
        };
        let subnet = self.subnet(Side::Net(bridge));
        let now = self.now();
        for mut p in sent {
            let Ok(dst) = wire::Ipv4Packet::new_checked(&p[..]).map(|ip| ip.dst()) else {
                continue;
            };
            if !subnet.is_some_and(|s| s.contains(dst)) {
                self.send_ip_out(&mut p, my_mac, now, pool, out);
                continue;
            }
            let Some(mut b) = pool.get(vnet::LEN + ETH + p.len()) else {
                self.count(Ev::NoBuffer);
                continue;
            };
            let mut eth = [0u8; ETH];
            eth[6..12].copy_from_slice(&my_mac.0);
            eth[12..14].copy_from_slice(&wire::ethertype::IPV4.to_be_bytes());
            if !b.fill(&[&[0u8; vnet::LEN], &eth, &p]) {
                pool.put(b);
                continue;
            }
            self.send(Side::Net(bridge), dst, b, now, pool, out);
        }
    }

    /// Sends an IP packet of the gateway's own from a network to outside: through NAT
    /// (masqueraded out of the uplink) and routed.
    fn send_ip_out(
        &mut self,
        p: &mut [u8],
        my_mac: crate::wire::MacAddr,
        now: u64,
        pool: &Pool,
        out: &mut Out,
    ) {
        let verdict = self.nat.process(p, nat::Direction::FromInside, now);
        let nat::Verdict::Forward(egress) = verdict else {
            return self.count(Ev::NoRoute);
        };
        let Some(mut b) = pool.get(vnet::LEN + ETH + p.len()) else {
            return self.count(Ev::NoBuffer);
        };
        let mut eth = [0u8; ETH];
        eth[6..12].copy_from_slice(&my_mac.0);
        eth[12..14].copy_from_slice(&wire::ethertype::IPV4.to_be_bytes());
        if !b.fill(&[&[0u8; vnet::LEN], &eth, p]) {
            return pool.put(b);
        }
        self.forward(egress, wire::ip_proto::TCP, b, now, pool, out);
    }

    /// Once a second: every endpoint's timers (retransmissions, idle connections).
    pub(super) fn dns_tcp_tick(&mut self, pool: &Pool, out: &mut Out) {
        let bridges: Vec<u32> = self.dns_tcp.nets.iter().map(|n| n.bridge).collect();
        for b in bridges {
            self.dns_tcp_poll(b, pool, out);
        }
    }
}
