//! Fuzz targets `nat` and `nat_rewrite`: conntrack and NAT over sequences of packets, and rewrites undone.

use super::*;

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
pub(super) fn assert_only_writable(
    before: &[u8],
    after: &[u8],
    writable: &[Range<usize>],
    what: &str,
) {
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
pub(super) fn assert_checksums_kept(before: &[u8], after: &[u8], skip: Option<usize>, what: &str) {
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
pub(super) fn prepare_ip(ctl: u8, pkt: &mut [u8], map: u8, fix: u8, partial: u8) {
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
            NatVerdict::Local | NatVerdict::Drop(_) | NatVerdict::Reject => {
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
pub(super) fn check_forwarded(before: &[u8], after: &[u8], partial: bool, what: &str) {
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
pub(super) fn check_reply(nat: &mut Nat, orig: &[u8], out: &[u8], now: u64) {
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
pub(super) fn as_parsed(kind: Kind, to: &Tuple) -> Tuple {
    match kind {
        Kind::Echo { request: true } => Tuple::new(to.proto, to.src, Endpoint::new(to.dst.addr, 0)),
        Kind::Echo { request: false } => {
            Tuple::new(to.proto, Endpoint::new(to.src.addr, 0), to.dst)
        }
        _ => *to,
    }
}

/// The same, for the packet an ICMP error quotes (whose own kind `parse` does not say).
pub(super) fn as_quoted(q: &[u8], to: &Tuple) -> Tuple {
    let hl = usize::from(q.first().map_or(0, |v| v & 0x0f)) * 4;
    match (to.proto, q.get(hl)) {
        (Proto::Icmp, Some(8)) => as_parsed(Kind::Echo { request: true }, to),
        (Proto::Icmp, Some(0)) => as_parsed(Kind::Echo { request: false }, to),
        _ => *to,
    }
}

/// Offsets of every checksum field a rewrite of `ip` may update: the header's, the
/// TCP/UDP/ICMP one, and for an ICMP error the quoted header's and the quoted L4 one.
pub(super) fn checksum_offsets(ip: &[u8]) -> Vec<usize> {
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
pub(super) fn assert_restored(a: &[u8], b: &[u8], fields: &[usize], what: &str) {
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
