//! Test packets with right checksums, and a check of every checksum by etherparse (an
//! independent full recomputation).

use std::net::Ipv4Addr;

use proptest::prelude::*;

/// An inside address.
pub const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// An outside address.
pub const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
/// Another outside address.
pub const C: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn csum(data: &[u8], init: u32) -> u16 {
    let mut s = init;
    for p in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An IPv4 packet around `l4` with `opts` (a multiple of 4 bytes) of options.
pub fn ip_opts(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, opts: &[u8], l4: &[u8]) -> Vec<u8> {
    let hl = 20 + opts.len();
    let total = (hl + l4.len()) as u16;
    let mut p = vec![0x40 | (hl / 4) as u8, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(opts);
    let c = csum(&p, 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for o in [src.octets(), dst.octets()] {
        s += u32::from(u16::from_be_bytes([o[0], o[1]]))
            + u32::from(u16::from_be_bytes([o[2], o[3]]));
    }
    s + u32::from(proto) + len as u32
}

/// A TCP segment (no options) in an IPv4 packet.
pub fn tcp(src: Ipv4Addr, sp: u16, dst: Ipv4Addr, dp: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_opts(src, sp, dst, dp, flags, &[], payload)
}

/// A TCP segment in an IPv4 packet with IP options `opts`.
pub fn tcp_opts(
    src: Ipv4Addr,
    sp: u16,
    dst: Ipv4Addr,
    dp: u16,
    flags: u8,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sp.to_be_bytes());
    t.extend_from_slice(&dp.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let c = csum(&t, pseudo(src, dst, 6, t.len()));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ip_opts(src, dst, 6, opts, &t)
}

/// A UDP datagram in an IPv4 packet (with a checksum).
pub fn udp(src: Ipv4Addr, sp: u16, dst: Ipv4Addr, dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sp.to_be_bytes());
    u.extend_from_slice(&dp.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = match csum(&u, pseudo(src, dst, 17, u.len())) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ip_opts(src, dst, 17, &[], &u)
}

/// A UDP datagram without a checksum (field 0).
pub fn udp_nocsum(src: Ipv4Addr, sp: u16, dst: Ipv4Addr, dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = udp(src, sp, dst, dp, payload);
    p[26] = 0;
    p[27] = 0;
    p
}

/// An ICMP message of type `ty`, code `code`, with `rest` after the checksum field.
pub fn icmp_raw(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(rest);
    let c = csum(&m, 0);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ip_opts(src, dst, 1, &[], &m)
}

/// An ICMP echo request or reply with identifier `id`.
pub fn echo(src: Ipv4Addr, dst: Ipv4Addr, request: bool, id: u16) -> Vec<u8> {
    let mut rest = id.to_be_bytes().to_vec();
    rest.extend_from_slice(&[0, 1, b'p', b'i', b'n', b'g']);
    icmp_raw(src, dst, if request { 8 } else { 0 }, 0, &rest)
}

/// An ICMP error quoting the IP header and first 8 bytes of L4 of `about`.
pub fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, code: u8, about: &[u8]) -> Vec<u8> {
    let hl = usize::from(about[0] & 0x0f) * 4;
    let mut rest = vec![0, 0, 0, 0];
    rest.extend_from_slice(&about[..(hl + 8).min(about.len())]);
    icmp_raw(src, dst, ty, code, &rest)
}

/// Sets the IP total length to the buffer's and refreshes the header checksum.
pub fn fix_ip_len(p: &mut [u8]) {
    let l = p.len() as u16;
    p[2..4].copy_from_slice(&l.to_be_bytes());
    p[10] = 0;
    p[11] = 0;
    let hl = usize::from(p[0] & 0x0f) * 4;
    let c = csum(&p[..hl], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Checks every checksum of a packet with etherparse: the IP header, TCP/UDP (UDP 0
/// allowed), ICMP, and for ICMP errors the quoted IP header. Returns what failed.
pub fn checksums_ok(p: &[u8]) -> Result<(), String> {
    use etherparse::{Icmpv4Slice, Ipv4Header, TcpHeader, UdpHeader};
    let (ip, rest) = Ipv4Header::from_slice(p).map_err(|e| format!("ip: {e}"))?;
    if ip.calc_header_checksum() != ip.header_checksum {
        return Err("ip header checksum".into());
    }
    let l4 = &rest[..usize::from(ip.total_len) - ip.header_len()];
    match ip.protocol.0 {
        6 => {
            let (t, payload) = TcpHeader::from_slice(l4).map_err(|e| format!("tcp: {e}"))?;
            let c = t
                .calc_checksum_ipv4_raw(ip.source, ip.destination, payload)
                .map_err(|e| e.to_string())?;
            if c != t.checksum {
                return Err(format!("tcp checksum {:#x} != {:#x}", t.checksum, c));
            }
        }
        17 => {
            let (u, payload) = UdpHeader::from_slice(l4).map_err(|e| format!("udp: {e}"))?;
            if u.checksum != 0 {
                let c = u
                    .calc_checksum_ipv4_raw(ip.source, ip.destination, payload)
                    .map_err(|e| e.to_string())?;
                if c != u.checksum {
                    return Err(format!("udp checksum {:#x} != {:#x}", u.checksum, c));
                }
            }
        }
        1 => {
            let s = Icmpv4Slice::from_slice(l4).map_err(|e| format!("icmp: {e}"))?;
            let c = csum(l4, 0);
            // A right checksum makes the whole message sum to all ones (complement 0).
            if c != 0 {
                return Err(format!(
                    "icmp checksum {:#x} (type {})",
                    s.checksum(),
                    s.type_u8()
                ));
            }
            if matches!(s.type_u8(), 3 | 4 | 5 | 11 | 12) {
                let (q, _) =
                    Ipv4Header::from_slice(&l4[8..]).map_err(|e| format!("quoted ip: {e}"))?;
                if q.calc_header_checksum() != q.header_checksum {
                    return Err("quoted ip header checksum".into());
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The offset of the TCP or UDP checksum field in `p`, if it is one of those.
fn l4_csum_at(p: &[u8]) -> Option<usize> {
    let hl = usize::from(p[0] & 0x0f) * 4;
    match p[9] {
        6 => Some(hl + 16),
        17 => Some(hl + 6),
        _ => None,
    }
}

/// Turns a TCP or UDP packet into what a veth hands over with NEEDS_CSUM (the
/// kernel's CHECKSUM_PARTIAL): the L4 checksum field holds the folded pseudo-header
/// sum, not complemented. Other packets are left alone.
pub fn partial_form(p: &mut [u8]) {
    let Some(at) = l4_csum_at(p) else { return };
    let hl = usize::from(p[0] & 0x0f) * 4;
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let l4_len = usize::from(u16::from_be_bytes([p[2], p[3]])) - hl;
    // `csum` complements; the partial field is the sum itself.
    let c = !csum(&[], pseudo(src, dst, p[9], l4_len));
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Completes a partial checksum as a device does: sums header and payload with the
/// field as it is, and writes the complement (a UDP 0 sent as 0xffff, RFC 768).
pub fn complete(p: &mut [u8]) {
    let Some(at) = l4_csum_at(p) else { return };
    let hl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    let c = match csum(&p[hl..total], 0) {
        0 if p[9] == 17 => 0xffff,
        c => c,
    };
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Any address.
pub fn arb_addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

/// A valid TCP, UDP (with or without checksum), ICMP echo or ICMP error (about UDP,
/// TCP or echo) packet with random fields.
pub fn arb_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..7,
        arb_addr(),
        arb_addr(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        0usize..3,
    )
        .prop_map(|(k, s, d, sp, dp, fl, pl, nopt)| match k {
            0 => tcp_opts(s, sp, d, dp, fl, &vec![1u8; nopt * 4], &pl),
            1 => udp(s, sp, d, dp, &pl),
            2 => udp_nocsum(s, sp, d, dp, &pl),
            3 => echo(s, d, fl & 1 == 0, sp),
            4 => icmp_error(s, d, 3, 3, &udp(d, sp, C, dp, &pl)),
            5 => icmp_error(s, d, 11, 0, &tcp(d, sp, C, dp, fl, &pl)),
            _ => icmp_error(s, d, 3, 4, &echo(d, C, fl & 1 == 0, sp)),
        })
}
