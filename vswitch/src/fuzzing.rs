//! The harnesses behind the cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`).
//!
//! This module owns, for each target, the `pub fn` that takes the fuzzer's bytes, drives
//! them through the real code path — a small bridge with its gateway, the NAT engine,
//! the VTEP table and VXLAN offloads, the controller behind the control socket, the
//! config store — and checks invariants that must hold whatever the bytes are. A broken
//! invariant panics, which libFuzzer reports as a crash; nothing else does. The
//! harnesses live here rather than in the targets so that they can reach the crate's own
//! types, are built and linted with the workspace, and are unit-tested below.
//!
//! The checks compare against independent computations where one exists: checksums
//! are recomputed from scratch (not with the incremental update under test), a NAT
//! rewrite is undone and must restore every byte, a frame written with its tag pushed
//! or popped is compared byte for byte with the one that came in.
//!
//! Input format: the frame and packet harnesses read their bytes as [`records`]: one
//! control byte (what to do with the record: which port or side, whether to fix the
//! checksums first, how far to move the clock, …, documented per harness), a big-endian
//! `u16` length, and that many bytes of frame or packet. The other harnesses take the
//! bytes as they come (a datagram after a short header, JSON lines, a config file).
//!
//! The bridge harness runs frames through the real [`pipeline`](crate::pipeline), the
//! functions a worker calls, on a real snapshot; only the sockets are missing. The module
//! is compiled for the fuzz crate (feature `fuzzing`) and for the unit tests alone: it is
//! not part of the library's surface.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use nat::checksum::{fold, pseudo_v4, sum};
use nat::nat::{Ipv4Net, Network, Published};
use nat::tuple::{Endpoint, Kind, Proto, Tuple};
use nat::{Direction, Egress, Nat, Verdict as NatVerdict};

use crate::dataplane::{
    BridgeRt, BridgeView, GatewayGuard, GatewayRt, GatewayView, PortRt, Snapshot, UPLINK_BRIDGE,
};
use crate::fdb::{port_of, PortId};
use crate::gateway::frames::{self, ARP, ETH, IPV4};
use crate::gateway::{Gateway, NetSpec, Out, Side, UplinkSpec};
use crate::pipeline::{Arrival, Frame, Ingress, Origin, Sink, TagAction, Tags, Verdict};
use crate::pool::{Buf, Pool};
use crate::vlan::VlanTable;
use crate::wire::{vnet, MacAddr, VnetHdr};

// ---------------------------------------------------------------------------------------
// Input records
// ---------------------------------------------------------------------------------------

/// Most records one input is read as: bounds the time one input takes.
pub const MAX_RECORDS: usize = 64;

/// Splits fuzz input into records of (control byte, bytes): each record is the control
/// byte, a big-endian `u16` length, then that many bytes (fewer if the input ends
/// first). At most [`MAX_RECORDS`]; trailing bytes too short for a header are ignored.
pub fn records(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> + '_ {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&[ctl, hi, lo], tail) = rest.split_first_chunk::<3>()?;
        let n = usize::from(u16::from_be_bytes([hi, lo])).min(tail.len());
        let (body, after) = tail.split_at(n);
        rest = after;
        Some((ctl, body))
    })
    .take(MAX_RECORDS)
}

/// Encodes records in the format [`records`] reads (for seeds and tests).
pub fn encode_records(recs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ctl, body) in recs {
        let n = body.len().min(usize::from(u16::MAX));
        out.push(*ctl);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&body[..n]);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Checksums computed from scratch, the oracle for every incremental update
// ---------------------------------------------------------------------------------------

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at.checked_add(1)?)?,
    ]))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// The checksum a sender computes over `data` with the 16-bit field at `skip` (an even
/// offset) counted as zero, starting from the (pseudo-header) sum `init`.
fn fresh(data: &[u8], skip: usize, init: u64) -> u16 {
    let head = data.get(..skip).unwrap_or(data);
    let tail = data.get(skip + 2..).unwrap_or(&[]);
    // `head` has an even length, so summing the two parts equals summing the whole.
    !fold(sum(tail, sum(head, init)))
}

/// One checksum field of a packet and the value a fresh computation puts there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Offset of the 16-bit field in the bytes examined.
    pub at: usize,
    /// What a sender computing it from scratch writes.
    pub want: u16,
}

impl Field {
    /// True if `bytes` hold the fresh value.
    pub fn holds(&self, bytes: &[u8]) -> bool {
        be16(bytes, self.at) == Some(self.want)
    }

    /// True if `bytes` hold a checksum a receiver accepts: the fresh value or, where
    /// that is 0x0000, its other one's-complement form 0xffff (what a NIC completing
    /// TCP and UDP checksums alike writes, and `vxlan::checksum::complete` with it).
    pub fn valid(&self, bytes: &[u8]) -> bool {
        self.holds(bytes) || (self.want == 0 && be16(bytes, self.at) == Some(0xffff))
    }

    /// [`Field::holds`], or the field holds 0x0000 where a fresh computation gives
    /// 0xffff: what an incremental update (RFC 1624 eqn. 3, as Linux's `csum_replace`)
    /// yields when every byte it covers is zero, which only an ICMP message can be (an
    /// echo reply with identifier, sequence and data all 0).
    pub fn holds_updated(&self, bytes: &[u8]) -> bool {
        self.holds(bytes) || (self.want == 0xffff && be16(bytes, self.at) == Some(0))
    }
}

/// What kind of checksum a [`Field`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// The header checksum of the IPv4 packet quoted by an ICMP error.
    QuotedIp,
    /// TCP, UDP or ICMP, over the whole payload (TCP and UDP with the pseudo-header).
    L4,
    /// The IPv4 header checksum.
    Ip,
}

/// The checksum fields of the IPv4 packet at the start of `ip`, each with its fresh
/// value: the quoted header's of an ICMP error, the TCP/UDP/ICMP one, the header's.
/// The L4 field is left out for fragments, for L4 headers cut short and for a UDP
/// checksum of 0 (none). `None` if `ip` is no IPv4 packet whose total length fits.
pub fn ipv4_fields(ip: &[u8]) -> Option<Vec<(FieldKind, Field)>> {
    let vihl = *ip.first()?;
    let hl = usize::from(vihl & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    if vihl >> 4 != 4 || hl < 20 || total < hl || total > ip.len() {
        return None;
    }
    let mut out = Vec::with_capacity(3);
    let frag = be16(ip, 6)? & 0x3fff != 0;
    let l4 = &ip[hl..total];
    let (src, dst) = (
        [ip[12], ip[13], ip[14], ip[15]],
        [ip[16], ip[17], ip[18], ip[19]],
    );
    let ps = |p: u8| pseudo_v4(src, dst, p, l4.len() as u16);
    match ip[9] {
        _ if frag => {}
        6 if l4.len() >= 20 => out.push((
            FieldKind::L4,
            Field {
                at: hl + 16,
                want: fresh(l4, 16, ps(6)),
            },
        )),
        17 if l4.len() >= 8 && be16(l4, 6) != Some(0) => {
            let c = fresh(l4, 6, ps(17));
            out.push((
                FieldKind::L4,
                Field {
                    at: hl + 6,
                    // RFC 768: a computed 0 is sent as all ones.
                    want: if c == 0 { 0xffff } else { c },
                },
            ));
        }
        1 if l4.len() >= 4 => {
            if matches!(l4[0], 3 | 4 | 5 | 11 | 12) && l4.len() >= 28 {
                let q = &l4[8..];
                let qhl = usize::from(q[0] & 0x0f) * 4;
                if q[0] >> 4 == 4 && qhl >= 20 && qhl <= q.len() {
                    out.push((
                        FieldKind::QuotedIp,
                        Field {
                            at: hl + 8 + 10,
                            want: fresh(&q[..qhl], 10, 0),
                        },
                    ));
                }
            }
            out.push((
                FieldKind::L4,
                Field {
                    at: hl + 2,
                    want: fresh(l4, 2, 0),
                },
            ));
        }
        _ => {}
    }
    out.push((
        FieldKind::Ip,
        Field {
            at: 10,
            want: fresh(&ip[..hl], 10, 0),
        },
    ));
    Some(out)
}

/// Offsets of the checksum fields of `ip` that hold their fresh value.
pub fn ipv4_good(ip: &[u8]) -> Vec<usize> {
    ipv4_fields(ip)
        .unwrap_or_default()
        .iter()
        .filter(|(_, f)| f.holds(ip))
        .map(|(_, f)| f.at)
        .collect()
}

/// Writes every checksum of the IPv4 packet at the start of `ip` as a sender would
/// (quoted header first, since the ICMP checksum covers it). False if it is no IPv4
/// packet [`ipv4_fields`] can read.
pub fn ipv4_fix(ip: &mut [u8]) -> bool {
    // Each pass writes the first stale field; the ones after it are recomputed over
    // what it wrote.
    for _ in 0..4 {
        let Some(fields) = ipv4_fields(ip) else {
            return false;
        };
        match fields.iter().find(|(_, f)| !f.holds(ip)) {
            Some((_, f)) => put16(ip, f.at, f.want),
            None => return true,
        }
    }
    true
}

/// For a TCP or UDP packet (not a fragment) at the start of `ip`: the offset of its
/// checksum field and the partial checksum (CHECKSUM_PARTIAL: the folded pseudo-header
/// sum, not complemented) that belongs there.
pub fn ipv4_partial(ip: &[u8]) -> Option<Field> {
    let hl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    if ip.first()? >> 4 != 4 || hl < 20 || total < hl || total > ip.len() {
        return None;
    }
    if be16(ip, 6)? & 0x3fff != 0 {
        return None;
    }
    let l4_len = total - hl;
    let at = match ip[9] {
        6 if l4_len >= 20 => hl + 16,
        17 if l4_len >= 8 => hl + 6,
        _ => return None,
    };
    let (src, dst) = (
        [ip[12], ip[13], ip[14], ip[15]],
        [ip[16], ip[17], ip[18], ip[19]],
    );
    Some(Field {
        at,
        want: fold(pseudo_v4(src, dst, ip[9], l4_len as u16)),
    })
}

/// For an Ethernet frame (VLAN tags, IPv4 or IPv6) carrying TCP or UDP: the L4
/// checksum field (offset in the frame) with its fresh value. Layout from
/// [`vxlan::offload::headers`]; the arithmetic is this module's own.
pub fn frame_l4_field(frame: &[u8]) -> Option<Field> {
    let l = vxlan::offload::headers(frame)?;
    let ip = l.ip?;
    let l4 = ip.l4?;
    let end = l.l3 + ip.len;
    let seg = frame.get(l4.offset..end)?;
    let tcp = ip.proto == 6;
    let co = if tcp { 16 } else { 6 };
    let len = seg.len();
    let ps = match ip.version {
        vxlan::offload::IpVersion::V4 => {
            let a = frame.get(l.l3 + 12..l.l3 + 20)?;
            sum(a, 0) + u64::from(ip.proto) + len as u64
        }
        vxlan::offload::IpVersion::V6 => {
            let a = frame.get(l.l3 + 8..l.l3 + 40)?;
            sum(a, 0) + u64::from(ip.proto) + (len as u64 >> 16) + (len as u64 & 0xffff)
        }
    };
    let c = fresh(seg, co, ps);
    Some(Field {
        at: l4.offset + co,
        want: if !tcp && c == 0 { 0xffff } else { c },
    })
}

/// For an Ethernet frame carrying IPv4: its header checksum field with the fresh value.
pub fn frame_ip_field(frame: &[u8]) -> Option<Field> {
    let l = vxlan::offload::headers(frame)?;
    let ip = l.ip?;
    if ip.version != vxlan::offload::IpVersion::V4 {
        return None;
    }
    let h = frame.get(l.l3..l.l3 + ip.hdr_len)?;
    Some(Field {
        at: l.l3 + 10,
        want: fresh(h, 10, 0),
    })
}

// ---------------------------------------------------------------------------------------
// Addresses the frame and packet harnesses use
// ---------------------------------------------------------------------------------------

const NET0: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 0);
const GW0: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
const NET1: Ipv4Addr = Ipv4Addr::new(172, 19, 0, 0);
const GW1: Ipv4Addr = Ipv4Addr::new(172, 19, 0, 1);
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const UPLINK_NET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);
const WAN_GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const GW0_MAC: MacAddr = MacAddr([0x02, 0x76, 0, 0, 0, 0x01]);
const GW1_MAC: MacAddr = MacAddr([0x02, 0x76, 0, 0, 0, 0x02]);
const UPLINK_MAC: MacAddr = MacAddr([0x02, 0x76, 0, 0, 0, 0xff]);

/// Addresses a record's "map" bit picks from (by the low bits of an address byte), so
/// that mutated packets keep hitting the networks, gateways, published ports and the
/// uplink instead of random addresses.
const ADDRS: [Ipv4Addr; 12] = [
    Ipv4Addr::new(172, 18, 0, 2),
    Ipv4Addr::new(172, 18, 0, 3),
    GW0,
    Ipv4Addr::new(172, 19, 0, 2),
    GW1,
    UPLINK,
    WAN_GW,
    Ipv4Addr::new(198, 51, 100, 7),
    Ipv4Addr::new(203, 0, 113, 7),
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::BROADCAST,
    Ipv4Addr::new(172, 18, 0, 255),
];

fn map_addr(b: &mut [u8], at: usize) {
    if let Some(s) = b.get_mut(at..at + 4) {
        let a = ADDRS[usize::from(s[0]) % ADDRS.len()];
        s.copy_from_slice(&a.octets());
    }
}

/// Clock steps (ms) a record's time bits choose from: none, small, past the UDP and
/// ICMP timeouts, past TCP's established timeout.
const STEPS_MS: [u64; 8] = [
    0,
    1,
    1_000,
    31_000,
    121_000,
    600_000,
    3_600_000,
    432_001_000,
];

fn net(a: Ipv4Addr, p: u8) -> Ipv4Net {
    // Prefixes here are constants ≤ 32.
    Ipv4Net::new(a, p).unwrap_or_else(|| unreachable!("prefix {p} > 32"))
}

fn nat_config(ct_limit: usize) -> nat::Config {
    let mut c = nat::Config::new(UPLINK);
    c.networks = vec![
        Network {
            subnet: net(NET0, 24),
            gateway: GW0,
        },
        Network {
            subnet: net(NET1, 24),
            gateway: GW1,
        },
    ];
    let publish = |proto, host_port, a, port| Published {
        proto,
        host_port,
        target: Endpoint::new(a, port),
    };
    c.published = vec![
        publish(Proto::Tcp, 8080, Ipv4Addr::new(172, 18, 0, 2), 80),
        publish(Proto::Udp, 5353, Ipv4Addr::new(172, 18, 0, 3), 53),
        publish(Proto::Tcp, 2222, Ipv4Addr::new(172, 19, 0, 2), 22),
    ];
    c.ct_limit = ct_limit;
    c
}

/// True for an address of a container (inside a network, not the gateway's own).
fn is_container(a: Ipv4Addr) -> bool {
    (net(NET0, 24).contains(a) && a != GW0) || (net(NET1, 24).contains(a) && a != GW1)
}

// ---------------------------------------------------------------------------------------
// NAT: nat::Nat::process_csum over a sequence of packets
// ---------------------------------------------------------------------------------------

/// Byte ranges of the IPv4 packet `ip` that a NAT rewrite may change: addresses and
/// the header checksum; ports and the TCP/UDP checksum; an echo's identifier and
/// checksum; for an ICMP error its checksum and the quoted packet's addresses, header
/// checksum, ports (or identifier) and checksum. Everything else must stay as it was.
pub fn nat_writable(ip: &[u8]) -> Vec<Range<usize>> {
    let mut w: Vec<Range<usize>> = Vec::with_capacity(8);
    w.push(10..20);
    let hl = usize::from(ip.first().map_or(0, |v| v & 0x0f)) * 4;
    match ip.get(9) {
        Some(6) => w.extend([hl..hl + 4, hl + 16..hl + 18]),
        Some(17) => w.extend([hl..hl + 4, hl + 6..hl + 8]),
        Some(1) => {
            w.push(hl + 2..hl + 6);
            let q = hl + 8;
            let qhl = usize::from(ip.get(q).map_or(0, |v| v & 0x0f)) * 4;
            w.extend([
                q + 10..q + 20,
                q + qhl..q + qhl + 8,
                q + qhl + 16..q + qhl + 18,
            ]);
        }
        _ => {}
    }
    w
}

/// Panics unless `after` equals `before` outside the `writable` ranges.
fn assert_only_writable(before: &[u8], after: &[u8], writable: &[Range<usize>], what: &str) {
    assert_eq!(before.len(), after.len(), "{what}: length changed");
    for (i, (a, b)) in before.iter().zip(after).enumerate() {
        if a != b {
            assert!(
                writable.iter().any(|r| r.contains(&i)),
                "{what}: byte {i} changed ({a:#04x} -> {b:#04x}), outside the fields NAT may rewrite"
            );
        }
    }
}

/// Panics unless each checksum field that held its fresh value in `before` still does
/// in `after` (an incremental update equals a full recomputation). `skip`: offsets
/// not to check (a partial checksum).
fn assert_checksums_kept(before: &[u8], after: &[u8], skip: Option<usize>, what: &str) {
    let good = ipv4_good(before);
    let Some(fields) = ipv4_fields(after) else {
        panic!("{what}: no longer a readable IPv4 packet");
    };
    for (kind, f) in fields {
        if Some(f.at) == skip || !good.contains(&f.at) {
            continue;
        }
        assert!(
            f.holds_updated(after),
            "{what}: {kind:?} checksum at {} is {:#06x} after the rewrite, a full computation gives {:#06x}",
            f.at,
            be16(after, f.at).unwrap_or(0),
            f.want
        );
    }
}

/// The control byte of a NAT record: bit 0 the direction (set: from the uplink),
/// bit 1 fix the packet's checksums first, bit 2 treat its TCP/UDP checksum as partial
/// (and, with bit 1, write the pseudo-header sum there), bits 3-5 the clock step
/// ([`STEPS_MS`]), bit 6 expire flows first, bit 7 map its addresses onto known ones.
pub mod nat_ctl {
    pub const OUTSIDE: u8 = 0x01;
    pub const FIX: u8 = 0x02;
    pub const PARTIAL: u8 = 0x04;
    pub const TIME_SHIFT: u8 = 3;
    pub const EXPIRE: u8 = 0x40;
    pub const MAP: u8 = 0x80;
}

/// Prepares a record's packet as its control byte says (map, fix, partial).
fn prepare_ip(ctl: u8, pkt: &mut [u8], map: u8, fix: u8, partial: u8) {
    if ctl & map != 0 {
        map_addr(pkt, 12);
        map_addr(pkt, 16);
    }
    if ctl & fix != 0 {
        ipv4_fix(pkt);
        if ctl & partial != 0 {
            if let Some(f) = ipv4_partial(pkt) {
                put16(pkt, f.at, f.want);
            }
        }
    }
}

/// Fuzz target `nat`: IPv4 packets (records, see [`nat_ctl`]) through a NAT engine with
/// two networks, an uplink and three published ports (conntrack limit 32), in both
/// directions, with the clock moving. Checks: a packet that is not forwarded is left
/// as it was; a forwarded one is still a packet NAT can read, changed only in the fields
/// NAT owns, with every checksum that was right before still right (full
/// recomputation), or its partial checksum moved to the new pseudo-header; nothing from
/// inside leaves by the uplink with a container's address, nothing from the uplink is
/// sent back to it; a reply to a masqueraded UDP datagram or echo request comes back to
/// the sender's own address and port; the table never exceeds its limit.
pub fn nat(data: &[u8]) {
    let limit = 32;
    let Ok(mut nat) = Nat::new(nat_config(limit)) else {
        panic!("the harness's NAT config is refused");
    };
    let mut now = 1u64;
    for (ctl, body) in records(data) {
        now += STEPS_MS[usize::from(ctl >> nat_ctl::TIME_SHIFT) & 7];
        if ctl & nat_ctl::EXPIRE != 0 {
            nat.expire_some(now, 64);
        }
        let dir = if ctl & nat_ctl::OUTSIDE != 0 {
            Direction::FromOutside
        } else {
            Direction::FromInside
        };
        let partial = ctl & nat_ctl::PARTIAL != 0;
        let mut pkt = body.to_vec();
        prepare_ip(ctl, &mut pkt, nat_ctl::MAP, nat_ctl::FIX, nat_ctl::PARTIAL);
        let before = pkt.clone();
        let v = nat.process_csum(&mut pkt, dir, now, partial);
        match v {
            NatVerdict::Forward(egress) => {
                check_forwarded(&before, &pkt, partial, "nat");
                let Ok(out) = nat::tuple::parse(&pkt) else {
                    panic!("nat: forwarded packet no longer parses");
                };
                match (dir, egress) {
                    (Direction::FromOutside, Egress::Outside) => {
                        panic!("nat: a packet from the uplink is sent back out of it")
                    }
                    (_, Egress::Outside) => assert!(
                        !is_container(out.tuple.src.addr),
                        "nat: container address {} leaves by the uplink",
                        out.tuple.src.addr
                    ),
                    (_, Egress::Inside) => assert!(
                        net(NET0, 24).contains(out.tuple.dst.addr)
                            || net(NET1, 24).contains(out.tuple.dst.addr),
                        "nat: sent inside to {}, in no network",
                        out.tuple.dst.addr
                    ),
                }
                if dir == Direction::FromInside && egress == Egress::Outside {
                    check_reply(&mut nat, &before, &pkt, now);
                }
            }
            NatVerdict::Local | NatVerdict::Drop(_) => {
                assert_eq!(
                    pkt, before,
                    "nat: a packet not forwarded was changed ({v:?})"
                );
            }
        }
        assert!(nat.table().len() <= limit, "nat: table above its limit");
    }
}

/// The checks on a packet NAT forwarded: it changed only where NAT may write, and its
/// checksums are as right as they were (a partial TCP/UDP checksum follows the new
/// pseudo-header instead).
fn check_forwarded(before: &[u8], after: &[u8], partial: bool, what: &str) {
    assert_only_writable(before, after, &nat_writable(before), what);
    let part = if partial { ipv4_partial(before) } else { None };
    assert_checksums_kept(before, after, part.map(|f| f.at), what);
    if let Some(f) = part {
        if f.holds(before) {
            let g = ipv4_partial(after);
            assert!(
                g.is_some_and(|g| g.holds(after)),
                "{what}: partial checksum does not follow the rewritten pseudo-header"
            );
        }
    }
}

/// For a UDP datagram or echo request masqueraded out of the uplink (`orig` before,
/// `out` after): the reply from its destination must come back to the original
/// sender's address and port (or identifier).
fn check_reply(nat: &mut Nat, orig: &[u8], out: &[u8], now: u64) {
    let (Ok(o), Ok(x)) = (nat::tuple::parse(orig), nat::tuple::parse(out)) else {
        return;
    };
    let mut r = out.to_vec();
    let hl = usize::from(r[0] & 0x0f) * 4;
    let want = match o.kind {
        Kind::Udp => {
            r.copy_within(12..16, 0);
            r.copy_within(16..20, 12);
            r.copy_within(0..4, 16);
            r[..4].copy_from_slice(&orig[..4]);
            let (sp, dp) = (be16(&r, hl), be16(&r, hl + 2));
            put16(&mut r, hl, dp.unwrap_or(0));
            put16(&mut r, hl + 2, sp.unwrap_or(0));
            o.tuple.reverse()
        }
        Kind::Echo { request: true } => {
            r.copy_within(12..16, 0);
            r.copy_within(16..20, 12);
            r.copy_within(0..4, 16);
            r[..4].copy_from_slice(&orig[..4]);
            r[hl] = 0;
            Tuple::new(
                Proto::Icmp,
                Endpoint::new(o.tuple.dst.addr, 0),
                Endpoint::new(o.tuple.src.addr, o.tuple.src.port),
            )
        }
        _ => return,
    };
    // A reply from the destination the packet went to; the checksums right.
    if x.tuple.dst.addr != o.tuple.dst.addr {
        return;
    }
    ipv4_fix(&mut r);
    let v = nat.process_csum(&mut r, Direction::FromOutside, now, false);
    let Ok(back) = nat::tuple::parse(&r) else {
        panic!("nat: reply no longer parses");
    };
    assert_eq!(
        (v, back.tuple),
        (NatVerdict::Forward(Egress::Inside), want),
        "nat: the reply to {} (sent out as {}) does not come back to its sender",
        o.tuple,
        x.tuple
    );
}

// ---------------------------------------------------------------------------------------
// NAT rewrites: nat::rewrite and its inverse
// ---------------------------------------------------------------------------------------

/// The tuple `parse` reads back from a packet rewritten to `to`: an echo carries one
/// identifier, the source's in a request and the destination's in a reply.
fn as_parsed(kind: Kind, to: &Tuple) -> Tuple {
    match kind {
        Kind::Echo { request: true } => Tuple::new(to.proto, to.src, Endpoint::new(to.dst.addr, 0)),
        Kind::Echo { request: false } => {
            Tuple::new(to.proto, Endpoint::new(to.src.addr, 0), to.dst)
        }
        _ => *to,
    }
}

/// The same, for the packet an ICMP error quotes (whose own kind `parse` does not say).
fn as_quoted(q: &[u8], to: &Tuple) -> Tuple {
    let hl = usize::from(q.first().map_or(0, |v| v & 0x0f)) * 4;
    match (to.proto, q.get(hl)) {
        (Proto::Icmp, Some(8)) => as_parsed(Kind::Echo { request: true }, to),
        (Proto::Icmp, Some(0)) => as_parsed(Kind::Echo { request: false }, to),
        _ => *to,
    }
}

/// Offsets of every checksum field a rewrite of `ip` may update: the header's, the
/// TCP/UDP/ICMP one, and for an ICMP error the quoted header's and the quoted L4 one.
fn checksum_offsets(ip: &[u8]) -> Vec<usize> {
    let hl = usize::from(ip.first().map_or(0, |v| v & 0x0f)) * 4;
    let mut v = vec![10];
    match ip.get(9) {
        Some(6) => v.push(hl + 16),
        Some(17) => v.push(hl + 6),
        Some(1) => {
            let q = hl + 8;
            let qhl = usize::from(ip.get(q).map_or(0, |v| v & 0x0f)) * 4;
            v.extend([hl + 2, q + 10]);
            match ip.get(q + 9) {
                Some(6) => v.push(q + qhl + 16),
                Some(17) => v.push(q + qhl + 6),
                Some(1) => v.push(q + qhl + 2),
                _ => {}
            }
        }
        _ => {}
    }
    v
}

/// Panics unless `a` and `b` are equal but for checksum fields (offsets in `fields`)
/// where one holds 0x0000 and the other 0xffff: the two one's-complement zeros, which
/// an incremental update may swap when a field held the non-canonical one.
fn assert_restored(a: &[u8], b: &[u8], fields: &[usize], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length changed");
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            let at = fields.iter().copied().find(|&f| f == i || f + 1 == i);
            let zeros = at.is_some_and(|f| {
                let (x, y) = (be16(a, f), be16(b, f));
                matches!((x, y), (Some(0), Some(0xffff)) | (Some(0xffff), Some(0)))
            });
            assert!(
                zeros,
                "{what}: byte {i} is {:#04x} after rewriting there and back, was {:#04x}",
                b[i], a[i]
            );
        }
        i += 1;
    }
}

/// Fuzz target `nat_rewrite`: one IPv4 packet, rewritten in place to a tuple taken from
/// the input, then back. Input: a control byte (bit 0: fix the checksums first, bit 1:
/// the TCP/UDP checksum is partial), 12 bytes of tuple (source address, destination
/// address, source port, destination port), the packet. Checks: what `parse` refuses,
/// the rewrite refuses and leaves alone; otherwise the rewrite succeeds, `parse` reads
/// the new tuple back, only NAT's fields changed, every checksum that was right stays
/// right (full recomputation) or the partial one follows the pseudo-header, and
/// rewriting back to the old tuple restores every byte. ICMP errors go through
/// `rewrite_error` the same way (outer addresses and quoted tuple).
pub fn nat_rewrite(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let Some((t, pkt)) = rest.split_first_chunk::<12>() else {
        return;
    };
    let mut pkt = pkt.to_vec();
    let partial = ctl & 2 != 0;
    prepare_ip(ctl & 3, &mut pkt, 0, 1, 2);
    let a = Ipv4Addr::new(t[0], t[1], t[2], t[3]);
    let b = Ipv4Addr::new(t[4], t[5], t[6], t[7]);
    let (sp, dp) = (
        u16::from_be_bytes([t[8], t[9]]),
        u16::from_be_bytes([t[10], t[11]]),
    );
    let before = pkt.clone();
    let fields = checksum_offsets(&before);
    let parsed = match nat::tuple::parse(&pkt) {
        Ok(p) => p,
        Err(_) => {
            let to = Tuple::new(Proto::Udp, Endpoint::new(a, sp), Endpoint::new(b, dp));
            assert!(nat::rewrite::rewrite_with(&mut pkt, &to, partial).is_err());
            assert_eq!(pkt, before, "nat_rewrite: a refused packet was changed");
            return;
        }
    };
    match parsed.kind {
        Kind::Error { quoted } => {
            let to = Tuple::new(quoted.proto, Endpoint::new(b, dp), Endpoint::new(a, sp));
            let (src, dst) = (parsed.tuple.src.addr, parsed.tuple.dst.addr);
            let r = nat::rewrite::rewrite_error(&mut pkt, a, b, &to);
            assert!(
                r.is_ok(),
                "nat_rewrite: rewrite_error refused a parsed error: {r:?}"
            );
            let Ok(p2) = nat::tuple::parse(&pkt) else {
                panic!("nat_rewrite: rewritten ICMP error no longer parses");
            };
            let hl = usize::from(pkt[0] & 0x0f) * 4;
            let want = as_quoted(pkt.get(hl + 8..).unwrap_or(&[]), &to);
            assert_eq!(
                p2.kind,
                Kind::Error { quoted: want },
                "nat_rewrite: quoted tuple"
            );
            assert_eq!((p2.tuple.src.addr, p2.tuple.dst.addr), (a, b));
            assert_only_writable(&before, &pkt, &nat_writable(&before), "nat_rewrite");
            assert_checksums_kept(&before, &pkt, None, "nat_rewrite");
            let r = nat::rewrite::rewrite_error(&mut pkt, src, dst, &quoted);
            assert!(
                r.is_ok(),
                "nat_rewrite: rewriting the error back refused: {r:?}"
            );
            assert_restored(&before, &pkt, &fields, "nat_rewrite (error)");
        }
        kind => {
            let to = Tuple::new(
                parsed.tuple.proto,
                Endpoint::new(a, sp),
                Endpoint::new(b, dp),
            );
            let r = nat::rewrite::rewrite_with(&mut pkt, &to, partial);
            assert!(
                r.is_ok(),
                "nat_rewrite: rewrite refused a parsed packet: {r:?}"
            );
            let Ok(p2) = nat::tuple::parse(&pkt) else {
                panic!("nat_rewrite: rewritten packet no longer parses");
            };
            assert_eq!(
                p2.tuple,
                as_parsed(kind, &to),
                "nat_rewrite: tuple read back"
            );
            assert_eq!(p2.kind, kind, "nat_rewrite: kind changed");
            let partial_l4 = partial && parsed.tuple.proto != Proto::Icmp;
            check_forwarded(&before, &pkt, partial_l4, "nat_rewrite");
            let r = nat::rewrite::rewrite_with(&mut pkt, &parsed.tuple, partial);
            assert!(r.is_ok(), "nat_rewrite: rewriting back refused: {r:?}");
            assert_restored(&before, &pkt, &fields, "nat_rewrite");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The gateway: ARP, ICMP, routing and NAT for frames on either side
// ---------------------------------------------------------------------------------------

/// Small buffers in a harness's pool: few enough that a long input exhausts it.
const POOL_SMALL: usize = 512;
/// Large buffers in a harness's pool.
const POOL_LARGE: usize = 8;

/// How the harness configures its gateway (see [`gw_ctl`]'s reconfiguration records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// Networks 0 and 1 (bridges 0 and 1), the uplink in 198.51.100.0/24.
    Full,
    /// Network 0 alone, no uplink.
    NoUplink,
    /// Networks 0 and 1, the uplink with the same address in a /25.
    NarrowUplink,
}

/// The gateway's configuration for `setup`, NAT as in [`nat`] (conntrack limit 64;
/// only the published ports whose network is there).
fn configure_lab(g: &mut Gateway, pool: &Pool, setup: Setup, two_nets: bool) {
    let mut nets = vec![NetSpec {
        bridge: 0,
        subnet: net(NET0, 24),
        gateway: GW0,
        mac: GW0_MAC,
    }];
    if two_nets && setup != Setup::NoUplink {
        nets.push(NetSpec {
            bridge: 1,
            subnet: net(NET1, 24),
            gateway: GW1,
            mac: GW1_MAC,
        });
    }
    let mut cfg = nat_config(64);
    cfg.networks.truncate(nets.len());
    cfg.published
        .retain(|p| nets.iter().any(|n| n.subnet.contains(p.target.addr)));
    let up = UplinkSpec {
        addr: UPLINK,
        subnet: net(
            UPLINK_NET,
            if setup == Setup::NarrowUplink { 25 } else { 24 },
        ),
        gw: Some(WAN_GW),
        mac: UPLINK_MAC,
    };
    let up = (setup != Setup::NoUplink).then_some(up);
    if let Err(e) = g.configure(cfg, &nets, up, pool) {
        panic!("the harness's gateway config ({setup:?}) is refused: {e}");
    }
}

/// A gateway configured as [`Setup::Full`] (with network 1 only if `two_nets`).
fn lab_gateway(pool: &Pool, two_nets: bool) -> Gateway {
    let mut g = Gateway::new();
    configure_lab(&mut g, pool, Setup::Full, two_nets);
    g
}

/// The gateway's address and MAC on `side` in [`lab_gateway`].
fn lab_side(side: Side) -> (Ipv4Addr, MacAddr) {
    match side {
        Side::Uplink => (UPLINK, UPLINK_MAC),
        Side::Net(1) => (GW1, GW1_MAC),
        Side::Net(_) => (GW0, GW0_MAC),
    }
}

/// Panics unless every buffer of `pool` is back: the gateway is emptied first (its
/// neighbour queues hold buffers), then as many buffers are taken as the pool has made;
/// if one was lost, the pool has to make (or refuse) one more to hand them out.
fn assert_pool_whole(g: &mut Gateway, pool: &Pool, what: &str) {
    let r = g.configure(nat::Config::new(Ipv4Addr::UNSPECIFIED), &[], None, pool);
    assert!(r.is_ok(), "{what}: an empty gateway config is refused");
    let made = pool.allocated();
    let mut taken = Vec::with_capacity(made.0 + made.1);
    // Small buffers first (a small request takes a large one only when no small one
    // is left to make), then large ones.
    for _ in 0..made.0 {
        taken.extend(pool.get(64));
    }
    for _ in 0..made.1 {
        taken.extend(pool.get(crate::pool::LARGE));
    }
    let now = pool.allocated();
    let n = taken.len();
    for b in taken {
        pool.put(b);
    }
    assert!(
        n == made.0 + made.1 && now == made,
        "{what}: buffers lost: {made:?} made (small, large), {n} back, {now:?} after taking them"
    );
}

/// What the frames fed so far allow to be checked on what comes out.
#[derive(Debug, Clone, Copy)]
struct Clean {
    /// Every IPv4 frame fed had its checksums fixed: all checksums out must be right.
    fixed: bool,
}

/// The checks on a frame the gateway sends on `side`: from the gateway's MAC on that
/// side; ARP from its own address; IPv4 with a right header checksum (and, when every
/// input had right checksums, right L4 and quoted-header checksums too, or a partial
/// checksum that follows the pseudo-header); no container's address on the uplink.
fn check_gateway_out(side: Side, b: &Buf, clean: Clean, what: &str) {
    let bytes = b.bytes();
    assert!(bytes.len() >= vnet::LEN + ETH, "{what}: runt frame sent");
    let (my_ip, my_mac) = lab_side(side);
    let f = &bytes[vnet::LEN..];
    assert_eq!(
        f[6..12],
        my_mac.0,
        "{what}: sent on {side:?} from another MAC"
    );
    match be16(f, 12) {
        Some(ARP) => {
            let Some(a) = frames::parse_arp(f) else {
                panic!("{what}: unreadable ARP sent");
            };
            assert_eq!(
                (a.sha, a.spa),
                (my_mac, my_ip),
                "{what}: ARP for someone else"
            );
        }
        Some(IPV4) => {
            let ip = &f[ETH..];
            let Some(v) = nat::packet::Ipv4Packet::new_checked(ip) else {
                panic!("{what}: unreadable IPv4 sent");
            };
            assert!(v.verify_checksum(), "{what}: IPv4 header checksum wrong");
            if side == Side::Uplink {
                assert!(!is_container(v.src()), "{what}: {} on the uplink", v.src());
            }
            if clean.fixed {
                let partial = bytes[0] & vnet::F_NEEDS_CSUM != 0;
                let part = if partial { ipv4_partial(ip) } else { None };
                for (kind, fl) in ipv4_fields(ip).unwrap_or_default() {
                    if Some(fl.at) == part.map(|p| p.at) {
                        continue;
                    }
                    assert!(
                        fl.holds_updated(ip),
                        "{what}: {kind:?} checksum wrong in a frame sent on {side:?}"
                    );
                }
                if let Some(p) = part {
                    assert!(p.holds(ip), "{what}: partial checksum wrong on {side:?}");
                }
            }
        }
        t => panic!("{what}: sent ethertype {t:?}: the gateway only speaks ARP and IPv4"),
    }
}

/// The control byte of a gateway record: bits 0-1 the side (0 network 0, 1 network 1,
/// 2 the uplink, 3 no frame: bits 2-3 then say what happens instead — 0 the
/// once-a-second tick, 1 the configuration installed again unchanged, 2 network 1 and
/// the uplink removed, 3 both back with the uplink's subnet narrowed to a /25, as the
/// controller does on `del-uplink`, `set-uplink`, `add-net`), bit 2 fix the IPv4 checksums
/// first, bit 3 address the frame to the gateway's MAC on that side, bit 4 mark it
/// NEEDS_CSUM (with bit 2, the TCP/UDP field then holds the pseudo-header sum), bit 5
/// map its addresses onto known ones, bit 6 force its ethertype (bit 7: ARP, else IPv4).
pub mod gw_ctl {
    pub const SIDE: u8 = 0x03;
    pub const FIX: u8 = 0x04;
    pub const TO_GW: u8 = 0x08;
    pub const PARTIAL: u8 = 0x10;
    pub const MAP: u8 = 0x20;
    pub const FORCE_TYPE: u8 = 0x40;
    pub const ARP: u8 = 0x80;
}

/// Builds the `vnet header + frame` of a gateway record as its control byte says.
fn gateway_frame(ctl: u8, body: &[u8], my_mac: MacAddr) -> Vec<u8> {
    let mut f = body.to_vec();
    if f.len() >= ETH {
        if ctl & gw_ctl::TO_GW != 0 {
            f[..6].copy_from_slice(&my_mac.0);
        }
        if ctl & gw_ctl::FORCE_TYPE != 0 {
            let t = if ctl & gw_ctl::ARP != 0 { ARP } else { IPV4 };
            f[12..14].copy_from_slice(&t.to_be_bytes());
        }
    }
    let ethertype = be16(&f, 12);
    if ethertype == Some(ARP) && ctl & gw_ctl::MAP != 0 {
        map_addr(&mut f, ETH + 14);
        map_addr(&mut f, ETH + 24);
    }
    let mut vh = [0u8; vnet::LEN];
    if ethertype == Some(IPV4) {
        if let Some(ip) = f.get_mut(ETH..) {
            prepare_ip(ctl, ip, gw_ctl::MAP, gw_ctl::FIX, gw_ctl::PARTIAL);
            if ctl & gw_ctl::PARTIAL != 0 {
                vh[0] = vnet::F_NEEDS_CSUM;
                if let Some(p) = ipv4_partial(ip) {
                    let hl = usize::from(ip[0] & 0x0f) * 4;
                    vh[6..8].copy_from_slice(&((ETH + hl) as u16).to_le_bytes());
                    vh[8..10].copy_from_slice(&((p.at - hl) as u16).to_le_bytes());
                }
            }
        }
    }
    let mut out = vh.to_vec();
    out.extend_from_slice(&f);
    out
}

/// Fuzz target `gateway`: Ethernet frames (records, see [`gw_ctl`]) into
/// `Gateway::handle` on either of two networks or the uplink: ARP requests and replies
/// (spoofed ones too), IPv4 with options, TCP, UDP, ICMP echo and errors, TTLs that run
/// out, traffic that needs the uplink's next hop resolved first. Checks every frame the
/// gateway sends (see `check_gateway_out`: its own MAC and address, right checksums,
/// no container address on the uplink) and, at the end, that no buffer was lost.
pub fn gateway(data: &[u8]) {
    let pool = Pool::new(POOL_SMALL, POOL_LARGE);
    let mut g = lab_gateway(&pool, true);
    let mut out = Out::new();
    let mut clean = Clean { fixed: true };
    for (ctl, body) in records(data) {
        let side = match ctl & gw_ctl::SIDE {
            0 => Side::Net(0),
            1 => Side::Net(1),
            2 => Side::Uplink,
            _ => {
                match (ctl >> 2) & 3 {
                    0 => g.tick(&pool, &mut out),
                    1 => configure_lab(&mut g, &pool, Setup::Full, true),
                    2 => configure_lab(&mut g, &pool, Setup::NoUplink, true),
                    _ => configure_lab(&mut g, &pool, Setup::NarrowUplink, true),
                }
                drain_gateway_out(&mut out, &pool, clean, "gateway (tick)");
                continue;
            }
        };
        let f = gateway_frame(ctl, body, lab_side(side).1);
        clean.fixed &= ctl & gw_ctl::FIX != 0;
        let Some(mut b) = pool.get(f.len()) else {
            continue;
        };
        if !b.fill(&[&f]) {
            pool.put(b);
            continue;
        }
        g.handle(side, b, &pool, &mut out);
        drain_gateway_out(&mut out, &pool, clean, "gateway");
    }
    assert_pool_whole(&mut g, &pool, "gateway");
}

fn drain_gateway_out(out: &mut Out, pool: &Pool, clean: Clean, what: &str) {
    for (side, b) in out.drain(..) {
        check_gateway_out(side, &b, clean, what);
        pool.put(b);
    }
}

// ---------------------------------------------------------------------------------------
// The bridge: 802.1Q classification, learning, forwarding, tag push/pop, the gateway
// ---------------------------------------------------------------------------------------

/// Port ids of [`BridgeLab`].
pub mod lab_port {
    use crate::fdb::PortId;
    /// VLAN-unaware.
    pub const UNAWARE: PortId = 1;
    /// Access port of VLAN 10.
    pub const ACCESS: PortId = 2;
    /// Trunk: VLANs 10 and 20 tagged, 1 native (untagged, PVID).
    pub const TRUNK_NATIVE: PortId = 3;
    /// Trunk: VLANs 10, 20 and 30 tagged, no native VLAN.
    pub const TRUNK: PortId = 4;
    /// Another VLAN-unaware port.
    pub const UNAWARE2: PortId = 5;
    /// The gateway's port on the bridge.
    pub const GATEWAY: PortId = 6;
    /// The gateway's uplink (no bridge's port).
    pub const UPLINK: PortId = 7;
}

/// FDB limit of the lab's bridge: small, so a fuzzed MAC flood reaches it.
const LAB_MAC_LIMIT: u32 = 32;
/// FDB aging of the lab's bridge, seconds.
const LAB_AGING: u32 = 30;
/// Frames the gateway routes per record at most, so a loop between the bridge and the
/// gateway cannot make one input run for ever.
const LAB_HOPS: usize = 64;

/// A bridge of six ports ([`lab_port`]) whose network has a gateway that also has an
/// uplink, as the daemon's controller publishes it: a real [`Snapshot`] driven through
/// the real [`pipeline`](crate::pipeline) — the very functions a worker calls — with a
/// [`Sink`] that checks every frame instead of queueing it. What the bridge sends to the
/// gateway's port is routed by `Gateway::handle` and emitted by the pipeline's gateway
/// entry, as the gateway's worker does.
pub struct BridgeLab {
    snap: Snapshot,
    pool: Pool,
    now: u32,
    clean: Clean,
    guard: GatewayGuard,
}

impl Default for BridgeLab {
    fn default() -> Self {
        Self::new()
    }
}

/// The lab's [`Sink`]: checks each frame the pipeline sends against what it was made
/// from; frames for the gateway's port are kept for the gateway, the rest go back to
/// the pool.
struct LabSink<'a> {
    snap: &'a Snapshot,
    pool: &'a Pool,
    to_gateway: Vec<Buf>,
}

impl Sink for LabSink<'_> {
    fn deliver(&mut self, dst: &Arc<PortRt>, remote: u16, buf: Buf, from: Origin<'_>) {
        assert_eq!(remote, 0, "bridge: a remote on a lab port");
        let table = self.snap.vlan(dst.id);
        match from {
            Origin::Copied(a, tag) => {
                check_egress(dst.id, table, &a.tags, tag, buf.bytes(), Some(a))
            }
            Origin::Moved(tags) => {
                check_egress(dst.id, table, &tags, TagAction::Keep, buf.bytes(), None)
            }
            Origin::Gateway => assert_eq!(dst.id, lab_port::UPLINK, "bridge: gateway frame"),
        }
        if dst.id == lab_port::GATEWAY {
            self.to_gateway.push(buf);
        } else {
            self.pool.put(buf);
        }
    }
}

impl BridgeLab {
    /// The lab, with an empty FDB.
    pub fn new() -> Self {
        let pool = Pool::new(POOL_SMALL, POOL_LARGE);
        let vl = |untagged: &[u16], tagged: &[u16], pvid: Option<u16>| {
            VlanTable::new(&ctl::PortVlans {
                pvid,
                untagged: untagged.to_vec(),
                tagged: tagged.to_vec(),
            })
        };
        let port = |id: PortId, kind: ctl::PortKind, bridge: u32| {
            let p = Arc::new(PortRt::new(id, "lab", kind, bridge, 0, 1));
            p.up.store(true, std::sync::atomic::Ordering::Relaxed);
            p
        };
        let guard = GatewayGuard {
            mac: GW0_MAC,
            ip: GW0.octets(),
        };
        let mut snap = Snapshot::default();
        let mut ports = Vec::new();
        for (id, table) in [
            (lab_port::UNAWARE, None),
            (lab_port::ACCESS, vl(&[10], &[], Some(10))),
            (lab_port::TRUNK_NATIVE, vl(&[1], &[10, 20], Some(1))),
            (lab_port::TRUNK, vl(&[], &[10, 20, 30], None)),
            (lab_port::UNAWARE2, None),
        ] {
            let p = port(id, ctl::PortKind::Afpacket, 0);
            snap.put_port(p.clone(), table);
            ports.push(p);
        }
        let gw = port(lab_port::GATEWAY, ctl::PortKind::Gateway, 0);
        snap.put_port(gw.clone(), None);
        ports.push(gw.clone());
        let uplink = port(lab_port::UPLINK, ctl::PortKind::Afpacket, UPLINK_BRIDGE);
        snap.put_port(uplink.clone(), None);
        snap.put_bridge(BridgeView {
            rt: Arc::new(BridgeRt::new(0, "lab", LAB_AGING, LAB_MAC_LIMIT, 1)),
            ports,
            guard: Some(guard),
        });
        snap.gateway = Some(GatewayView {
            rt: Arc::new(GatewayRt {
                owner: 0,
                state: std::sync::Mutex::new(lab_gateway(&pool, false)),
            }),
            uplink: Some(uplink),
            ports: vec![gw],
        });
        BridgeLab {
            snap,
            pool,
            now: 1,
            clean: Clean { fixed: true },
            guard,
        }
    }

    fn sink(&self) -> LabSink<'_> {
        LabSink {
            snap: &self.snap,
            pool: &self.pool,
            to_gateway: Vec::new(),
        }
    }

    /// Moves the bridge's clock on by `secs`.
    pub fn advance(&mut self, secs: u32) {
        self.now = self.now.saturating_add(secs);
    }

    /// Receives `vnet_hdr + frame` at port `port` (`aux`: the tag the kernel stripped)
    /// and follows it and everything it causes (gateway replies, routed packets)
    /// through the bridge and the gateway. A frame too large for a small buffer comes
    /// in a buffer of its own, as a ring hands it over.
    pub fn receive(
        &mut self,
        port: PortId,
        vnet_hdr: &[u8],
        frame: &[u8],
        aux: Option<(u16, u16)>,
    ) {
        let Some(rt) = self.snap.port(port) else {
            return;
        };
        let Ok(ing) = Ingress::new(&self.snap, &self.pool, rt, port, self.now, 0) else {
            panic!("bridge: port {port} has no bridge");
        };
        let mut sink = self.sink();
        let v = if vnet_hdr.len() + frame.len() > crate::pool::SMALL {
            let mut slot = self.pool.get(vnet_hdr.len() + frame.len());
            if let Some(b) = slot.as_mut() {
                assert!(
                    b.fill(&[vnet_hdr, frame]),
                    "bridge: a large buffer is too small"
                );
            }
            let v = ing.frame_owned(&mut slot, aux, &mut sink);
            if let Some(b) = slot {
                self.pool.put(b);
            }
            v
        } else {
            let f = Frame {
                vnet: vnet_hdr,
                bytes: frame,
                aux,
                truncated: false,
            };
            ing.frame(f, &mut sink)
        };
        if let Verdict::Forward(p) = v {
            assert_ne!(
                port_of(p),
                port,
                "bridge: forwarded back out of its ingress port"
            );
        }
        if let Some(t) = self.snap.vlan(port) {
            if let Ok(a) = ing.classify(Frame::split(&[vnet_hdr, frame].concat(), aux)) {
                assert!(
                    t.is_member(a.tags.class.vid),
                    "bridge: classified into VLAN {} it is no member of",
                    a.tags.class.vid
                );
            }
        }
        let pending = std::mem::take(&mut sink.to_gateway);
        drop(ing);
        self.route(
            pending.into_iter().map(|b| (Side::Net(0), b)).collect(),
            false,
        );
    }

    /// Receives `vnet_hdr + frame` on the gateway's uplink.
    pub fn receive_uplink(&mut self, vnet_hdr: &[u8], frame: &[u8]) {
        let Some(up) = self.snap.port(lab_port::UPLINK) else {
            return;
        };
        let f = Frame {
            vnet: vnet_hdr,
            bytes: frame,
            aux: None,
            truncated: false,
        };
        // A frame the uplink refuses is counted there and goes no further.
        if let Ok(b) = crate::pipeline::gateway::from_uplink(up, &self.pool, 0, f) {
            self.route(vec![(Side::Uplink, b)], false);
        }
    }

    /// The once-a-second tick of the gateway (ARP retries, expiry).
    pub fn tick(&mut self) {
        self.route(Vec::new(), true);
    }

    /// The gateway's turn, as its worker takes it, until nothing more is for the
    /// gateway or [`LAB_HOPS`] frames were routed: each frame the gateway sends is
    /// checked (`check_gateway_out`) before the pipeline's gateway entry emits it.
    fn route(&mut self, mut input: Vec<(Side, Buf)>, mut tick: bool) {
        let mut hops = 0;
        let Some(gv) = self.snap.gateway.as_ref() else {
            return;
        };
        while !input.is_empty() || tick {
            let mut out = Out::new();
            {
                let mut g = gv.rt.state.lock().unwrap_or_else(|p| p.into_inner());
                for (side, b) in input.drain(..) {
                    hops += 1;
                    if hops > LAB_HOPS {
                        self.pool.put(b);
                    } else {
                        g.handle(side, b, &self.pool, &mut out);
                    }
                }
                if std::mem::take(&mut tick) {
                    g.tick(&self.pool, &mut out);
                }
            }
            for (side, b) in &out {
                check_gateway_out(*side, b, self.clean, "bridge (gateway)");
            }
            let mut sink = LabSink {
                snap: &self.snap,
                pool: &self.pool,
                to_gateway: Vec::new(),
            };
            crate::pipeline::gateway::emit(
                &self.snap, &self.pool, gv, self.now, 0, &mut out, &mut sink,
            );
            input.extend(sink.to_gateway.into_iter().map(|b| (Side::Net(0), b)));
        }
    }

    /// The checks on the bridge's state after a record: the gateway's MAC is learned
    /// nowhere but at the gateway's port, in any VLAN; the FDB is within its limit.
    fn check_state(&self) {
        let Some(b) = self.snap.bridge(0) else {
            panic!("bridge: the lab's bridge is gone");
        };
        let fdb = b.rt.fdb.load();
        assert!(
            fdb.len() <= LAB_MAC_LIMIT as usize,
            "bridge: FDB holds {} entries, above its limit",
            fdb.len()
        );
        for vid in [0, 1, 10, 20, 30] {
            let at = fdb.lookup(vid, self.guard.mac, self.now, LAB_AGING);
            assert!(
                at.is_none() || at == Some(lab_port::GATEWAY),
                "bridge: the gateway's MAC is learned at port {at:?} in VLAN {vid}"
            );
        }
    }

    /// Ends the run: panics if a buffer was lost.
    pub fn finish(self) {
        let Some(gv) = self.snap.gateway.as_ref() else {
            return;
        };
        let mut g = gv.rt.state.lock().unwrap_or_else(|p| p.into_inner());
        assert_pool_whole(&mut g, &self.pool, "bridge");
    }
}

/// The checks on a frame the bridge sent to port `port` (VLAN table `table`), made from
/// a frame classified as `tags` with tag action `tag`: its tag is the frame's VLAN with
/// its priority and TPID, or gone, as the port's VLAN rules say; nothing leaves a trunk
/// untagged with a tag exposed; an access port gets its VLAN only; it never goes back out
/// of its ingress port. With the arrival `a` it was copied from: every other byte is the
/// received frame's, and the virtio-net offsets still point at the same bytes.
fn check_egress(
    port: PortId,
    table: Option<&VlanTable>,
    tags: &Tags,
    tag: TagAction,
    out: &[u8],
    a: Option<&Arrival<'_>>,
) {
    assert_ne!(
        port, tags.ingress,
        "bridge: sent back out of its ingress port"
    );
    let tagged = match tag {
        TagAction::Set(..) => true,
        TagAction::Strip => false,
        TagAction::Keep => tags.tag_in_frame,
    };
    let in_len = if tags.tag_in_frame { 4 } else { 0 };
    let out_len = if tagged { 4 } else { 0 };
    let o = &out[vnet::LEN..];
    if tagged {
        let (tpid, tci) = tags.class.tag();
        assert_eq!(
            (be16(o, 12), be16(o, 14)),
            (Some(tpid), Some(tci)),
            "bridge: tag pushed"
        );
        assert_eq!(tci & 0x0fff, tags.class.vid);
    }
    if let Some(t) = table {
        assert!(
            t.is_member(tags.class.vid),
            "bridge: VLAN {} leaves a non-member",
            tags.class.vid
        );
        if !tagged && t.is_trunk() {
            assert!(
                !matches!(be16(o, 12), Some(0x8100 | 0x88a8)),
                "bridge: a tagged frame leaves trunk {port} untagged in VLAN {}: the peer takes its inner tag for its VLAN",
                tags.class.vid
            );
        }
    }
    if port == lab_port::ACCESS {
        assert!(
            !tagged && tags.class.vid == 10,
            "bridge: access port gets VLAN {}",
            tags.class.vid
        );
    }
    let Some(a) = a else { return };
    assert_eq!(
        o.len(),
        a.frame.len() + out_len - in_len,
        "bridge: frame length"
    );
    assert_eq!(o[..12], a.frame[..12], "bridge: MAC addresses changed");
    assert_eq!(
        o[12 + out_len..],
        a.frame[12 + in_len..],
        "bridge: payload changed"
    );
    // The virtio-net offsets moved with the tag: they point at the same bytes.
    if let (Some(hi), Some(ho)) = (VnetHdr::new_checked(a.vnet), VnetHdr::new_checked(out)) {
        let shift = out_len as isize - in_len as isize;
        let same = |i: u16, o: u16| {
            let i = usize::from(i);
            let moved = i as isize + shift;
            // Offsets into the MAC header, past the frame, or past what a u16 holds
            // after the move point at nothing in particular.
            i < 12 + in_len
                || a.frame.get(i).is_none()
                || moved > u16::MAX as isize
                || moved as usize == usize::from(o)
        };
        if hi.flags() & vnet::F_NEEDS_CSUM != 0 {
            assert!(
                same(hi.csum_start(), ho.csum_start()),
                "bridge: csum_start not moved with the tag"
            );
        }
        if hi.gso_type() != vnet::GSO_NONE {
            assert!(
                same(hi.hdr_len(), ho.hdr_len()),
                "bridge: hdr_len not moved with the tag"
            );
        }
    }
}

/// The control byte of a bridge record: bits 0-2 the port (1-6, see [`lab_port`];
/// 0: the uplink; 7: no frame, the gateway's tick), bit 3 the first 4 bytes are a tag
/// the kernel stripped (TPID, TCI), bit 4 the next 10 bytes are the virtio-net header
/// (else none), bits 5-6 the clock step (0, 1, 20, 100 s), bit 7 fix IPv4 checksums.
pub mod bridge_ctl {
    pub const PORT: u8 = 0x07;
    pub const AUX: u8 = 0x08;
    pub const VNET: u8 = 0x10;
    pub const TIME_SHIFT: u8 = 5;
    pub const FIX: u8 = 0x80;
}

/// Fuzz target `frame`: Ethernet frames — untagged, 802.1Q, QinQ, priority-tagged,
/// tags the kernel stripped, ARP, IPv4 to and through the gateway — through the
/// bridge of [`BridgeLab`] and its gateway. Checks: VLAN membership on the way in and
/// out, every byte of each copy against the received frame, tags pushed with PCP, DEI
/// and TPID kept, no double-tag VLAN hop, the FDB within its limit and the gateway's MAC
/// never learned elsewhere, the gateway's frames as in [`gateway`], no buffer lost.
pub fn frame(data: &[u8]) {
    let mut lab = BridgeLab::new();
    for (ctl, body) in records(data) {
        lab.advance([0, 1, 20, 100][usize::from(ctl >> bridge_ctl::TIME_SHIFT) & 3]);
        let mut rest = body;
        let mut aux = None;
        if ctl & bridge_ctl::AUX != 0 {
            let Some((t, r)) = rest.split_first_chunk::<4>() else {
                continue;
            };
            aux = Some((
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
            ));
            rest = r;
        }
        let mut vh = [0u8; vnet::LEN];
        if ctl & bridge_ctl::VNET != 0 {
            let Some((v, r)) = rest.split_first_chunk::<{ vnet::LEN }>() else {
                continue;
            };
            vh = *v;
            rest = r;
        }
        let mut f = rest.to_vec();
        lab.clean.fixed &= ctl & bridge_ctl::FIX != 0 && vh[0] & vnet::F_NEEDS_CSUM == 0;
        if ctl & bridge_ctl::FIX != 0 && be16(&f, 12) == Some(IPV4) {
            if let Some(ip) = f.get_mut(ETH..) {
                ipv4_fix(ip);
            }
        }
        match PortId::from(ctl & bridge_ctl::PORT) {
            0 => lab.receive_uplink(&vh, &f),
            7 => lab.tick(),
            p => lab.receive(p, &vh, &f, aux),
        }
        lab.check_state();
    }
    lab.finish();
}

// ---------------------------------------------------------------------------------------
// VXLAN: the VTEP table, decapsulation offloads, encapsulation, receive coalescing
// ---------------------------------------------------------------------------------------

/// Underlay MTUs the VXLAN harnesses pick from.
const UNDERLAY_MTUS: [u32; 8] = [1500, 1450, 9000, 576, 1280, 100, 68, 65535];

fn underlay(sel: u8) -> (usize, usize) {
    let mtu = UNDERLAY_MTUS[usize::from(sel) % UNDERLAY_MTUS.len()];
    // As `tunnel::RemoteRt` derives them: largest inner frame, inner MTU.
    (
        mtu.saturating_sub(crate::tunnel::OVERHEAD) as usize,
        mtu.saturating_sub(crate::tunnel::INNER_MTU_OVERHEAD) as usize,
    )
}

/// Senders the VXLAN decap harness picks from: the remotes of the lab's tunnels, one of
/// them in its IPv4-mapped IPv6 form, and a stranger.
fn vtep_senders() -> [IpAddr; 5] {
    [
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
        IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped()),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)),
    ]
}

fn vtep_table() -> vxlan::decap::VtepTable {
    let mut t = vxlan::decap::VtepTable::new();
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    t.insert(100, 7, vec![(v4(10, 0, 0, 2), 1), (v4(10, 0, 0, 3), 2)]);
    t.insert(
        200,
        8,
        vec![(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
            1,
        )],
    );
    t.insert(0xff_ffff, 9, vec![(v4(10, 0, 0, 2), 3)]);
    // Above the 24-bit VNI space: stored, never matched.
    t.insert(0x100_0064, 10, vec![(v4(10, 0, 0, 2), 1)]);
    t
}

/// What [`vtep_table`] must say about a datagram from `src`, worked out independently.
fn vtep_expect(src: IpAddr, d: &[u8]) -> Result<(u32, u32, u16), vxlan::decap::DropReason> {
    use vxlan::decap::DropReason as R;
    if d.len() < 8 + 14 {
        return Err(R::Truncated);
    }
    if d[0] & 0x08 == 0 {
        return Err(R::BadFlags);
    }
    let vni = u32::from_be_bytes([0, d[4], d[5], d[6]]);
    let src = match src {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let a = |x| IpAddr::V4(Ipv4Addr::new(10, 0, 0, x));
    let (port, remotes): (u32, Vec<(IpAddr, u16)>) = match vni {
        100 => (7, vec![(a(2), 1), (a(3), 2)]),
        200 => (
            8,
            vec![(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
                1,
            )],
        ),
        0xff_ffff => (9, vec![(a(2), 3)]),
        _ => return Err(R::UnknownVni),
    };
    let slot = remotes
        .iter()
        .find(|(r, _)| *r == src)
        .map(|(_, s)| *s)
        .ok_or(R::UnknownRemote)?;
    Ok((vni, port, slot))
}

/// Fuzz target `vxlan_decap`: a VXLAN datagram (the UDP payload: header and inner
/// frame) through `VtepTable::classify` and, when it belongs to a tunnel,
/// `offload_for_inner`, as the worker's VTEP receive path does. Input: a sender byte
/// (which remote, see `vtep_senders`), an underlay-MTU byte, the datagram. Checks: the
/// table's answer against one worked out independently; the offload description
/// survives a trip through the virtio-net header; a frame not described as GSO is left
/// untouched, a GSO one changed in its checksum field alone; a partial checksum, once
/// completed, is the right one; a GSO super-frame can be segmented again for the
/// underlay (`encap_segments`), into datagrams that fit, with right checksums.
pub fn vxlan_decap(data: &[u8]) {
    let [s, m, ref d @ ..] = *data else {
        return;
    };
    let src = vtep_senders()[usize::from(s) % 5];
    let (max_frame, inner_mtu) = underlay(m);
    let table = vtep_table();
    let got = table.classify(src, d);
    let want = vtep_expect(src, d);
    match (&got, want) {
        (Ok(x), Ok((vni, port, slot))) => {
            assert_eq!(
                (x.vni, x.port, x.remote),
                (vni, port, slot),
                "vxlan_decap: classify"
            );
            assert_eq!(x.inner, 8..d.len(), "vxlan_decap: inner frame range");
        }
        (Err(e), Err(w)) => assert_eq!(*e, w, "vxlan_decap: drop reason"),
        (g, w) => panic!("vxlan_decap: classify says {g:?}, expected {w:?}"),
    }
    let Ok(x) = got else { return };
    let mut inner = d[x.inner.clone()].to_vec();
    let before = inner.clone();
    let off = vxlan::offload::offload_for_inner(&mut inner, inner_mtu);
    assert_eq!(
        vxlan::offload::Offload::from_virtio(&off.to_virtio()),
        Ok(off),
        "vxlan_decap: offload does not survive the virtio-net header"
    );
    let field = usize::from(off.csum_start) + usize::from(off.csum_offset);
    if off.gso == vxlan::offload::Gso::None {
        assert_eq!(
            inner, before,
            "vxlan_decap: a frame without GSO was changed"
        );
    } else {
        let mut allowed = before.clone();
        if let Some(s) = allowed.get_mut(field..field + 2) {
            s.copy_from_slice(&inner[field..field + 2]);
        }
        assert_eq!(
            inner, allowed,
            "vxlan_decap: a GSO frame changed beyond its checksum field"
        );
        assert!(
            off.needs_csum && off.gso_size > 0,
            "vxlan_decap: GSO without partial checksum"
        );
        assert!(
            usize::from(off.hdr_len) <= inner.len(),
            "vxlan_decap: hdr_len past the frame"
        );
    }
    if off.needs_csum {
        assert!(
            field + 2 <= inner.len(),
            "vxlan_decap: checksum field past the frame"
        );
        let mut done = inner.clone();
        let r = vxlan::checksum::complete(
            &mut done,
            usize::from(off.csum_start),
            usize::from(off.csum_offset),
        );
        assert!(
            r.is_ok(),
            "vxlan_decap: the partial checksum cannot be completed"
        );
        // Completion sums to the end of the frame, as the device does; bytes after the
        // IP packet (padding) are trimmed by the IP receiver before it looks, so the
        // result is only checked for a frame the IP packet fills.
        let fills = vxlan::offload::headers(&done)
            .and_then(|l| Some(l.l3 + l.ip?.len))
            .is_some_and(|end| end == done.len());
        if let Some(f) = frame_l4_field(&done).filter(|f| fills && f.at == field) {
            assert!(f.valid(&done), "vxlan_decap: completed checksum is wrong");
        }
    }
    if off.gso != vxlan::offload::Gso::None {
        let mut out = Vec::new();
        let r = vxlan::offload::encap_segments(&inner, &off, max_frame, x.vni, &mut out);
        match r {
            Ok(segs) => check_segments(&inner, &off, max_frame, x.vni, &out, segs, "vxlan_decap"),
            // VLAN tags count against the frame size but not against the inner MTU the
            // segment size comes from: on a tiny MTU the headers alone may not fit.
            Err(vxlan::offload::OffloadError::TooBig) if usize::from(off.hdr_len) >= max_frame => {}
            Err(e) => panic!("vxlan_decap: a GSO frame made from a datagram cannot be segmented again: {e:?} ({off:?})"),
        }
    }
}

/// The checks on datagrams `encap_segments` laid out for `frame` described by `off`:
/// the layout `segs` claims, each a VXLAN header for `vni` and an inner frame of at most
/// `max_frame` bytes; `chunks` covers them in whole datagrams; a single datagram is the
/// frame (its partial checksum completed); segments carry the payload in order, with
/// right IPv4 header and TCP/UDP checksums and consecutive TCP sequence numbers.
fn check_segments(
    frame: &[u8],
    off: &vxlan::offload::Offload,
    max_frame: usize,
    vni: u32,
    out: &[u8],
    segs: vxlan::offload::Segments,
    what: &str,
) {
    use vxlan::offload::Gso;
    assert_eq!(out.len(), segs.total, "{what}: total length");
    assert!(
        segs.count >= 1 && segs.stride > 8,
        "{what}: layout {segs:?}"
    );
    assert!(
        (segs.count - 1) * segs.stride < segs.total && segs.total <= segs.count * segs.stride,
        "{what}: {segs:?} does not add up"
    );
    let dgrams: Vec<&[u8]> = out.chunks(segs.stride).collect();
    assert_eq!(dgrams.len(), segs.count, "{what}: datagram count");
    for d in &dgrams {
        assert_eq!(d[..8], vxlan::header::encode(vni), "{what}: VXLAN header");
        assert!(
            d.len() - 8 <= max_frame,
            "{what}: inner frame of {} > {max_frame}",
            d.len() - 8
        );
    }
    let mut at = 0;
    for c in segs.chunks(vxlan::offload::MAX_UDP_PAYLOAD) {
        assert_eq!(c.start, at, "{what}: chunks not contiguous");
        assert!(
            c.len() <= vxlan::offload::MAX_UDP_PAYLOAD.max(segs.stride),
            "{what}: chunk of {} bytes",
            c.len()
        );
        assert!(c.len().div_ceil(segs.stride) <= vxlan::offload::UDP_MAX_SEGMENTS);
        assert!(
            c.end == segs.total || c.len() % segs.stride == 0,
            "{what}: chunk cuts a datagram"
        );
        at = c.end;
    }
    assert_eq!(at, segs.total, "{what}: chunks do not cover the datagrams");
    if off.gso == Gso::None {
        assert_eq!(
            segs.count, 1,
            "{what}: a plain frame became several datagrams"
        );
        let inner = &out[8..];
        assert_eq!(
            inner.len(),
            frame.len(),
            "{what}: a plain frame changed length"
        );
        let field = usize::from(off.csum_start) + usize::from(off.csum_offset);
        for (i, (a, b)) in frame.iter().zip(inner).enumerate() {
            if a != b {
                assert!(
                    off.needs_csum && (field..field + 2).contains(&i),
                    "{what}: byte {i} changed"
                );
            }
        }
        return;
    }
    // Segments of a super-frame: same headers, the payload cut in order.
    let Some(l) = vxlan::offload::headers(frame) else {
        panic!("{what}: segmented a frame without headers");
    };
    let (Some(ip), true) = (l.ip, frame.len() >= l.l3) else {
        panic!("{what}: segmented a frame without IP");
    };
    let Some(l4) = ip.l4 else {
        panic!("{what}: segmented a frame without TCP/UDP");
    };
    let hdrs = l4.offset + l4.hdr_len;
    let payload = &frame[hdrs..l.l3 + ip.len];
    let mut joined = Vec::with_capacity(payload.len());
    let tcp = ip.proto == 6;
    let mut seq = be32(frame, l4.offset + 4);
    for d in &dgrams {
        let s = &d[8..];
        let Some(sl) = vxlan::offload::headers(s) else {
            panic!("{what}: a segment has no headers");
        };
        let (Some(sip), Some(sl4)) = (sl.ip, sl.ip.and_then(|i| i.l4)) else {
            panic!("{what}: a segment lost its IP or TCP/UDP header");
        };
        assert_eq!(sl.l3 + sip.len, s.len(), "{what}: segment's IP length");
        if let Some(f) = frame_ip_field(s) {
            assert!(f.valid(s), "{what}: segment's IPv4 header checksum");
        }
        if let Some(f) = frame_l4_field(s) {
            assert!(
                f.valid(s),
                "{what}: segment's {} checksum",
                if tcp { "TCP" } else { "UDP" }
            );
        }
        let sp = &s[sl4.offset + sl4.hdr_len..];
        if tcp {
            assert_eq!(
                be32(s, sl4.offset + 4),
                seq,
                "{what}: segment's sequence number"
            );
            seq = seq.map(|q| q.wrapping_add(sp.len() as u32));
        }
        joined.extend_from_slice(sp);
    }
    assert!(
        joined == payload,
        "{what}: segments do not carry the payload in order"
    );
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Fuzz target `vxlan_encap`: a frame and its virtio-net header through
/// `Offload::from_virtio` and `encap_segments` (VXLAN encapsulation with software
/// checksum completion and TSO/USO), as a tunnel port's transmit path does. Input: the
/// 10-byte virtio-net header, an underlay-MTU byte, the frame. Checks: the decoded
/// header survives encoding; a refusal leaves no output; what is laid out is what the
/// returned layout says (see `check_segments`).
pub fn vxlan_encap(data: &[u8]) {
    let Some((vh, rest)) = data.split_first_chunk::<{ vxlan::offload::VIRTIO_LEN }>() else {
        return;
    };
    let Some((&m, frame)) = rest.split_first() else {
        return;
    };
    let Ok(off) = vxlan::offload::Offload::from_virtio(vh) else {
        return;
    };
    assert_eq!(
        vxlan::offload::Offload::from_virtio(&off.to_virtio()),
        Ok(off),
        "vxlan_encap: offload does not survive the virtio-net header"
    );
    let (max_frame, _) = underlay(m);
    let vni = 0x12_3456;
    let mut out = vec![0xee; 3];
    match vxlan::offload::encap_segments(frame, &off, max_frame, vni, &mut out) {
        Ok(segs) => check_segments(frame, &off, max_frame, vni, &out, segs, "vxlan_encap"),
        Err(_) => assert!(out.is_empty(), "vxlan_encap: output left after a refusal"),
    }
}

/// Fuzz target `vxlan_gro`: a run of VXLAN datagrams as one `UDP_GRO` read returns
/// them, through `gro::merge_tcp`. Input: the stride (big-endian `u16`), the run.
/// Checks: a refused run is left untouched; a merged one covers every datagram, its
/// inner frame has consistent IP lengths, the first segment's sequence number, every
/// segment's payload in order and a partial checksum that completes to the right one;
/// and segmenting it again for the original datagram size gives as many datagrams.
pub fn vxlan_gro(data: &[u8]) {
    let Some((s, run)) = data.split_first_chunk::<2>() else {
        return;
    };
    let stride = usize::from(u16::from_be_bytes(*s));
    let mut buf = run.to_vec();
    let before = buf.clone();
    let Some(m) = vxlan::gro::merge_tcp(&mut buf, stride) else {
        assert_eq!(buf, before, "vxlan_gro: a refused run was changed");
        return;
    };
    let n = before.len().div_ceil(stride);
    assert_eq!(m.segments, n, "vxlan_gro: not every datagram merged");
    assert!(n >= 2);
    assert_eq!(
        m.vni,
        u32::from_be_bytes([0, before[4], before[5], before[6]])
    );
    let Some(merged) = buf.get(m.inner.clone()) else {
        panic!("vxlan_gro: merged frame {:?} outside the buffer", m.inner);
    };
    let Some(l) = vxlan::offload::headers(merged) else {
        panic!("vxlan_gro: merged frame has no headers");
    };
    let (Some(ip), Some(l4)) = (l.ip, l.ip.and_then(|i| i.l4)) else {
        panic!("vxlan_gro: merged frame lost its IP or TCP header");
    };
    assert_eq!(l.l3 + ip.len, merged.len(), "vxlan_gro: merged IP length");
    let mut joined = Vec::new();
    for d in before.chunks(stride) {
        let f = d.get(8..).unwrap_or_default();
        let (Some(fl), true) = (vxlan::offload::headers(f), f.len() > 14) else {
            panic!("vxlan_gro: merged a datagram without headers");
        };
        let (Some(fip), Some(fl4)) = (fl.ip, fl.ip.and_then(|i| i.l4)) else {
            panic!("vxlan_gro: merged a datagram without TCP");
        };
        joined.extend_from_slice(&f[fl4.offset + fl4.hdr_len..fl.l3 + fip.len]);
    }
    let first = &before[8..stride];
    assert_eq!(
        be32(merged, l4.offset + 4),
        be32(first, l4.offset + 4),
        "vxlan_gro: sequence number of the merged frame"
    );
    assert!(
        merged[l4.offset + l4.hdr_len..] == joined[..],
        "vxlan_gro: merged payload is not the segments' payloads in order"
    );
    let off = m.offload;
    assert!(
        off.needs_csum && off.gso != vxlan::offload::Gso::None,
        "vxlan_gro: {off:?}"
    );
    let mut done = merged.to_vec();
    let r = vxlan::checksum::complete(
        &mut done,
        usize::from(off.csum_start),
        usize::from(off.csum_offset),
    );
    assert!(r.is_ok(), "vxlan_gro: partial checksum outside the frame");
    if let Some(f) = frame_l4_field(&done) {
        assert!(
            f.valid(&done),
            "vxlan_gro: completed checksum of the merged frame is wrong"
        );
    }
    let mut out = Vec::new();
    match vxlan::offload::encap_segments(merged, &off, stride - 8, m.vni, &mut out) {
        Ok(segs) => {
            check_segments(merged, &off, stride - 8, m.vni, &out, segs, "vxlan_gro");
            assert_eq!(
                segs.count, n,
                "vxlan_gro: segmenting again gives another count"
            );
        }
        Err(e) => panic!("vxlan_gro: the merged frame cannot be segmented again: {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The control protocol and the config file
// ---------------------------------------------------------------------------------------

/// A scratch directory for one harness in this process: under `$VSWITCH_FUZZ_SCRATCH`
/// if set (`scripts/fuzz.sh` sets it and removes it after the run), else on tmpfs when
/// there is one, since the store writes and fsyncs on every accepted change.
fn scratch(tag: &str) -> PathBuf {
    let base = std::env::var_os("VSWITCH_FUZZ_SCRATCH")
        .map(PathBuf::from)
        .or_else(|| {
            ["/dev/shm", "/run/shm"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_dir())
        })
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("vswitch-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A `Shared` without workers: messages to them go nowhere, and whoever waits for an
/// answer is told at once (the sender is dropped).
fn shared_without_workers() -> Arc<crate::dataplane::Shared> {
    Arc::new(crate::dataplane::Shared {
        snapshot: arc_swap::ArcSwap::from_pointee(crate::dataplane::Snapshot::default()),
        pool: Pool::new(64, 1),
        clock: Default::default(),
        workers: 1,
        busy_poll: std::time::Duration::ZERO,
        rx_ring: Default::default(),
        inboxes: Vec::new(),
        wakers: Vec::new(),
        shutdown: AtomicBool::new(false),
    })
}

/// True for requests the control harness does not hand to the controller because they
/// reach the host: they open or create interfaces (afpacket and TAP ports, the uplink),
/// bind UDP sockets (tunnels) or enter network namespaces (attach, detach).
pub fn touches_host(r: &ctl::Request) -> bool {
    use ctl::{PortKind, Request as R};
    matches!(
        r,
        R::AddPort {
            kind: PortKind::Afpacket | PortKind::Tap,
            ..
        } | R::SetUplink { .. }
            | R::AddTunnel { .. }
            | R::Attach { .. }
            | R::Detach { .. }
    )
}

/// Panics unless the error a client is sent is one line (the line protocol, and what
/// `vsctl` prints on stderr).
fn assert_one_line(r: &ctl::Response) {
    let e = r.error.as_deref().unwrap_or("");
    assert!(
        !e.contains(['\n', '\r']),
        "control: a client is sent a multi-line error: {e:?}"
    );
}

/// Most request lines one input is read as.
const MAX_LINES: usize = 32;

/// Fuzz target `control`: JSON lines as a client sends them on the control socket,
/// read as `server::client` reads them (a line at most `MAX_REQUEST_BYTES`, lossy UTF-8,
/// trimmed) into `ctl::Request`, and handled by a real `Controller` (no workers; its
/// config file in a scratch directory) — except the requests that reach the host (see
/// [`touches_host`]). Checks: a request survives the trip `vsctl` makes it take
/// (serialise, parse); a refused request gets a one-line error and leaves the config file
/// and `show` as they were; after an accepted one the file loads again; every answer
/// survives serialisation and renders; and a controller restored from the file shows the
/// same as the one that wrote it (a restart loses nothing).
pub fn control(data: &[u8]) {
    use crate::config::{Config, Store};
    use crate::controller::Controller;
    use ctl::{Request, Response};
    let dir = scratch("control");
    let path = dir.join("conf.json");
    let _ = std::fs::remove_file(&path);
    let cfg = Config {
        version: 1,
        ..Config::default()
    };
    let mut c = Controller::new(cfg, Store::new(&path), shared_without_workers());
    let file = || std::fs::read(&path).ok();
    let show = |c: &mut Controller| c.handle(Request::Show);
    for line in data.split_inclusive(|&b| b == b'\n').take(MAX_LINES) {
        if line.len() > ctl::MAX_REQUEST_BYTES {
            // The server answers "request too large" and closes the connection.
            break;
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let req = match serde_json::from_str::<Request>(text) {
            Ok(r) => r,
            Err(e) => {
                // What the server answers a line it cannot read.
                assert_one_line(&Response::err(format!("malformed request: {e}")));
                continue;
            }
        };
        let again = serde_json::to_string(&req)
            .ok()
            .and_then(|s| serde_json::from_str::<Request>(&s).ok());
        assert_eq!(
            again.as_ref(),
            Some(&req),
            "control: request does not survive serialisation"
        );
        if touches_host(&req) {
            continue;
        }
        let (file0, show0) = (file(), show(&mut c));
        let what = format!("{req:?}");
        let resp = match c.handle(req) {
            Ok(d) => {
                let loaded = Store::new(&path).load();
                assert!(
                    loaded.is_ok(),
                    "control: after {what} the config file does not load: {loaded:?}"
                );
                let _ = ctl::render(&d);
                Response::ok(d)
            }
            Err(e) => {
                let r = Response::err(e);
                assert_one_line(&r);
                assert!(
                    file() == file0,
                    "control: refused {what} changed the config file"
                );
                assert!(
                    show(&mut c) == show0,
                    "control: refused {what} changed what show says"
                );
                r
            }
        };
        let text = serde_json::to_string(&resp).unwrap_or_default();
        let back = serde_json::from_str::<Response>(&text).ok();
        assert_eq!(
            back.as_ref(),
            Some(&resp),
            "control: response does not survive serialisation"
        );
    }
    let before = show(&mut c);
    let store = Store::new(&path);
    let Ok(cfg) = store.load() else {
        panic!("control: the config file written does not load");
    };
    let mut restored = Controller::new(cfg, store, shared_without_workers());
    assert!(
        show(&mut restored) == before,
        "control: a controller restored from the config file shows something else"
    );
}

/// Fuzz target `config`: a config file (`vswitchd --db`) through `Store::load` (read,
/// parse, validate). Checks, for a file it accepts: the config validates; written back
/// with `Store::save` it loads as the same config and is written the same again (stable
/// files); the NAT engine and the gateway accept what it asks of them (a file that
/// loads never leaves the daemon with a refused gateway); each port's VLAN table says
/// what its VLANs say.
pub fn config(data: &[u8]) {
    use crate::config::Store;
    let dir = scratch("config");
    let path = dir.join("conf.json");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(cfg) = Store::new(&path).load() else {
        return;
    };
    assert!(
        cfg.validate().is_ok(),
        "config: loaded but does not validate"
    );
    let again = dir.join("again.json");
    let s = Store::new(&again);
    assert!(s.save(&cfg).is_ok(), "config: cannot write it back");
    let written = std::fs::read(&again).ok();
    let back = s.load();
    assert_eq!(
        back.as_ref().ok(),
        Some(&cfg),
        "config: does not load back the same: {back:?}"
    );
    assert!(s.save(&cfg).is_ok());
    assert_eq!(
        std::fs::read(&again).ok(),
        written,
        "config: written differently twice"
    );
    let nc = cfg.nat_config();
    assert!(
        Nat::new(nc.clone()).is_ok(),
        "config: the NAT engine refuses it"
    );
    let nets: Vec<NetSpec> = cfg
        .nets()
        .zip(0u32..)
        .map(|((b, subnet, gateway), bridge)| NetSpec {
            bridge,
            subnet,
            gateway,
            mac: crate::gateway::gateway_mac(&b.name),
        })
        .collect();
    let uplink = cfg.uplink_addr().map(|(addr, subnet)| UplinkSpec {
        addr,
        subnet,
        gw: cfg.uplink.as_ref().and_then(|u| u.gw),
        mac: UPLINK_MAC,
    });
    let pool = Pool::new(4, 1);
    let r = Gateway::new().configure(nc, &nets, uplink, &pool);
    assert!(
        r.is_ok(),
        "config: the gateway refuses a config that loads: {r:?}"
    );
    for p in cfg.bridges.iter().flat_map(|b| &b.ports) {
        let Some(v) = &p.vlans else { continue };
        let Some(t) = VlanTable::new(v) else {
            assert!(
                v.is_empty(),
                "config: port {} has VLANs but no table",
                p.name
            );
            continue;
        };
        for &vid in &v.untagged {
            assert!(
                t.is_member(vid) && t.is_untagged(vid),
                "config: VLAN {vid} untagged"
            );
        }
        for &vid in &v.tagged {
            assert!(
                t.is_member(vid) && !t.is_untagged(vid),
                "config: VLAN {vid} tagged"
            );
        }
        if let Some(pvid) = v.pvid {
            let c = crate::vlan::classify(Some(&t), None);
            assert_eq!(
                c.map(|c| c.vid),
                Ok(pvid),
                "config: untagged frames not in the PVID"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/UDP/ICMP packet from `src` to `dst` with right checksums.
    fn packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 20 + l4.len()];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        p[20..].copy_from_slice(l4);
        assert!(ipv4_fix(&mut p));
        p
    }

    fn udp(sp: u16, dp: u16) -> Vec<u8> {
        let mut u = vec![0u8; 12];
        u[0..2].copy_from_slice(&sp.to_be_bytes());
        u[2..4].copy_from_slice(&dp.to_be_bytes());
        u[4..6].copy_from_slice(&12u16.to_be_bytes());
        u[6] = 1; // non-zero: a checksum is present
        u[8..].copy_from_slice(b"ping");
        u
    }

    fn eth(dst: MacAddr, src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = dst.0.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn records_round_trip() {
        let e = encode_records(&[(1, b"ab"), (2, b""), (3, b"xyz")]);
        let r: Vec<(u8, &[u8])> = records(&e).collect();
        assert_eq!(r, vec![(1, &b"ab"[..]), (2, &b""[..]), (3, &b"xyz"[..])]);
        // A length past the end takes what is there.
        let r: Vec<(u8, &[u8])> = records(&[9, 0, 10, 1, 2]).collect();
        assert_eq!(r, vec![(9, &[1u8, 2][..])]);
    }

    #[test]
    fn fresh_checksums_agree_with_nat_and_etherparse() {
        let p = packet(
            Ipv4Addr::new(172, 18, 0, 2),
            Ipv4Addr::new(203, 0, 113, 7),
            17,
            &udp(40000, 53),
        );
        let v = etherparse::SlicedPacket::from_ip(&p).unwrap();
        let Some(etherparse::TransportSlice::Udp(u)) = v.transport else {
            panic!("not UDP");
        };
        let src = [172, 18, 0, 2];
        let dst = [203, 0, 113, 7];
        assert_eq!(
            u.to_header()
                .calc_checksum_ipv4_raw(src, dst, u.payload())
                .unwrap(),
            u16::from_be_bytes([p[26], p[27]])
        );
        assert!(nat::packet::Ipv4Packet::new_checked(&p[..])
            .unwrap()
            .verify_checksum());
        assert_eq!(ipv4_good(&p), vec![26, 10]);
    }

    #[test]
    fn harnesses_accept_ordinary_traffic() {
        let c1 = Ipv4Addr::new(172, 18, 0, 2);
        let far = Ipv4Addr::new(203, 0, 113, 7);
        let out = packet(c1, far, 17, &udp(40000, 53));
        let recs = encode_records(&[(0, &out), (nat_ctl::FIX, &out)]);
        nat(&recs);
        let mut t = vec![0u8, 198, 51, 100, 2, 203, 0, 113, 7, 0x80, 0, 0, 53];
        t.extend_from_slice(&out);
        nat_rewrite(&t);
        // A container ARPs for its gateway, then sends a datagram out.
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2];
        arp.extend_from_slice(&c1.octets());
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&GW0.octets());
        let c1_mac = [2, 0, 0, 0, 0, 2];
        let a = eth(MacAddr([0xff; 6]), c1_mac, ARP, &arp);
        let d = eth(GW0_MAC, c1_mac, IPV4, &out);
        // The uplink's next hop answers, so nothing is left waiting for it.
        let wan_mac = [2, 0, 0, 0, 0, 0x99];
        let mut rep = vec![0, 1, 8, 0, 6, 4, 0, 2];
        rep.extend_from_slice(&wan_mac);
        rep.extend_from_slice(&WAN_GW.octets());
        rep.extend_from_slice(&UPLINK_MAC.0);
        rep.extend_from_slice(&UPLINK.octets());
        let r = eth(UPLINK_MAC, wan_mac, ARP, &rep);
        gateway(&encode_records(&[(0, &a), (gw_ctl::FIX, &d), (2, &r)]));
        frame(&encode_records(&[
            (1, &a),
            (0, &r),
            (1 | bridge_ctl::FIX, &d),
            (
                bridge_ctl::FIX,
                &eth(UPLINK_MAC, [2, 0, 0, 0, 0, 0x99], IPV4, &out),
            ),
        ]));
    }

    #[test]
    fn vxlan_harnesses_accept_a_datagram() {
        let c1 = Ipv4Addr::new(10, 1, 0, 2);
        let mut tcp = vec![0u8; 20];
        tcp[12] = 5 << 4;
        tcp[13] = 0x18;
        tcp.extend_from_slice(&[7u8; 3000]);
        let ip = packet(c1, Ipv4Addr::new(10, 1, 0, 3), 6, &tcp);
        let f = eth(MacAddr([2, 0, 0, 0, 0, 3]), [2, 0, 0, 0, 0, 2], IPV4, &ip);
        let mut d = vec![0u8, 0];
        d.extend_from_slice(&vxlan::header::encode(100));
        d.extend_from_slice(&f);
        vxlan_decap(&d);
        let mut e = vxlan::offload::Offload {
            gso: vxlan::offload::Gso::TcpV4,
            gso_size: 1448,
            hdr_len: 54,
            needs_csum: true,
            csum_start: 34,
            csum_offset: 16,
            ..vxlan::offload::Offload::NONE
        }
        .to_virtio()
        .to_vec();
        e.push(0);
        let mut ff = f.clone();
        let p = ipv4_partial(&ff[ETH..]).unwrap();
        put16(&mut ff, ETH + p.at, p.want);
        e.extend_from_slice(&ff);
        vxlan_encap(&e);
    }

    #[test]
    fn control_and_config_harnesses_run() {
        control(
            b"{\"op\":\"add-br\",\"bridge\":\"br0\"}\n\
              {\"op\":\"add-net\",\"bridge\":\"br0\",\"subnet\":\"172.18.0.0/24\",\"gateway\":\"172.18.0.1\"}\n\
              {\"op\":\"add-br\",\"bridge\":\"br0\"}\n\
              {\"op\":\"show\"}\n",
        );
        config(b"{\"version\":1,\"bridges\":[{\"name\":\"br0\",\"ports\":[]}]}");
    }
}
