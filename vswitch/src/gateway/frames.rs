//! The frames the gateway reads and writes itself: ARP (RFC 826) requests and replies,
//! ICMP echo replies and ICMP errors (RFC 792), and the Ethernet header of routed
//! packets. Everything works on `vnet header + frame` buffers as ports carry them; IPv4,
//! TCP, UDP and ICMP headers are read through `nat::packet`, the one owner of those
//! views.

use std::net::Ipv4Addr;

use wire::checksum::{checksum, update};

use crate::pool::Buf;
use crate::wire::{vnet, MacAddr};

/// Ethernet header length (untagged).
pub const ETH: usize = 14;
/// EtherType of IPv4.
pub const IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ARP: u16 = 0x0806;
/// ARP operation: request.
pub const ARP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const ARP_REPLY: u16 = 2;
/// Length of an Ethernet/IPv4 ARP packet.
const ARP_LEN: usize = 28;
/// Minimum Ethernet frame without FCS: short frames are padded, as NICs do.
const MIN_FRAME: usize = 60;
/// Quoted bytes in an ICMP error, at most: an error stays within the 576 bytes every
/// host accepts (RFC 1812 4.3.2.3).
const QUOTE_MAX: usize = 576 - 20 - 8;
/// TTL of the packets the gateway originates (Linux's default).
const TTL: u8 = 64;

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sha: MacAddr,
    pub spa: Ipv4Addr,
    pub tha: MacAddr,
    pub tpa: Ipv4Addr,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn mac_at(b: &[u8], at: usize) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    MacAddr(m)
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Reads the ARP packet of an untagged frame; `None` unless it is Ethernet/IPv4 ARP.
pub fn parse_arp(frame: &[u8]) -> Option<Arp> {
    let a = frame.get(ETH..ETH + ARP_LEN)?;
    if be16(a, 0) != 1 || be16(a, 2) != IPV4 || a[4] != 6 || a[5] != 4 {
        return None;
    }
    Some(Arp {
        op: be16(a, 6),
        sha: mac_at(a, 8),
        spa: ip_at(a, 14),
        tha: mac_at(a, 18),
        tpa: ip_at(a, 24),
    })
}

/// Fills `buf` with a frame from `src` to `dst` of `ethertype` whose payload `body`
/// writes into the slice it is given (`len` bytes); no offload in the vnet header.
fn build(
    buf: &mut Buf,
    dst: MacAddr,
    src: MacAddr,
    ethertype: u16,
    len: usize,
    body: impl FnOnce(&mut [u8]),
) -> bool {
    let frame_len = (ETH + len).max(MIN_FRAME);
    let total = vnet::LEN + frame_len;
    if total > buf.capacity() {
        return false;
    }
    let b = buf.spare();
    b[..total].fill(0);
    let f = &mut b[vnet::LEN..total];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    body(&mut f[ETH..ETH + len]);
    buf.set_len(total);
    true
}

/// Writes an ARP packet into `buf`, sent from `src` to `dst` at the Ethernet level.
pub fn write_arp(buf: &mut Buf, dst: MacAddr, src: MacAddr, arp: &Arp) -> bool {
    build(buf, dst, src, ARP, ARP_LEN, |a| {
        a[0..2].copy_from_slice(&1u16.to_be_bytes());
        a[2..4].copy_from_slice(&IPV4.to_be_bytes());
        a[4] = 6;
        a[5] = 4;
        a[6..8].copy_from_slice(&arp.op.to_be_bytes());
        a[8..14].copy_from_slice(&arp.sha.0);
        a[14..18].copy_from_slice(&arp.spa.octets());
        a[18..24].copy_from_slice(&arp.tha.0);
        a[24..28].copy_from_slice(&arp.tpa.octets());
    })
}

/// Writes an IPv4 header (no options) for `payload_len` bytes of protocol `proto`.
fn ip_header(h: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize) {
    let total = (20 + payload_len) as u16;
    h[0] = 0x45;
    h[1] = 0;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..8].fill(0);
    h[8] = TTL;
    h[9] = proto;
    h[10..12].fill(0);
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&h[..20]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Writes an ICMP error of `ty`/`code` from `src` to `dst` quoting `quoted` (the
/// offending packet from its IP header on; cut to what an error may carry).
#[allow(clippy::too_many_arguments)]
pub fn write_icmp_error(
    buf: &mut Buf,
    eth_dst: MacAddr,
    eth_src: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ty: u8,
    code: u8,
    quoted: &[u8],
) -> bool {
    let q = &quoted[..quoted.len().min(QUOTE_MAX)];
    build(buf, eth_dst, eth_src, IPV4, 20 + 8 + q.len(), |p| {
        ip_header(&mut p[..20], src, dst, 1, 8 + q.len());
        let icmp = &mut p[20..];
        icmp[0] = ty;
        icmp[1] = code;
        icmp[2..8].fill(0);
        icmp[8..].copy_from_slice(q);
        let c = checksum(icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
    })
}

/// Turns the ICMP echo request in `frame` (IPv4 header at [`ETH`], `hl` bytes long,
/// `total` bytes in all) into its reply, in place: addresses and MACs swapped, type 0,
/// a fresh TTL, checksums fixed up.
pub fn echo_reply_in_place(frame: &mut [u8], hl: usize, total: usize) -> bool {
    let Some(ip) = frame.get_mut(ETH..ETH + total) else {
        return false;
    };
    if ip.len() < hl + 8 || ip[hl] != 8 {
        return false;
    }
    let (src, dst) = (ip_at(ip, 12), ip_at(ip, 16));
    ip[12..16].copy_from_slice(&dst.octets());
    ip[16..20].copy_from_slice(&src.octets());
    let old_ttl = [ip[8], ip[9]];
    ip[8] = TTL;
    let hc = be16(ip, 10);
    // Swapping the addresses leaves the header sum as it was; only the TTL changed.
    let hc = update(hc, &old_ttl, &[ip[8], ip[9]]);
    ip[10..12].copy_from_slice(&hc.to_be_bytes());
    let icmp = &mut ip[hl..];
    let c = be16(icmp, 2);
    let c = update(c, &[8, icmp[1]], &[0, icmp[1]]);
    icmp[0] = 0;
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let (d, s) = (mac_at(frame, 0), mac_at(frame, 6));
    frame[0..6].copy_from_slice(&s.0);
    frame[6..12].copy_from_slice(&d.0);
    true
}

/// Decrements the TTL of the IPv4 header `ip`, checksum fixed up incrementally;
/// false (nothing changed) if the packet must not be forwarded (TTL 0 or 1).
pub fn decrement_ttl(ip: &mut [u8]) -> bool {
    if ip.len() < 20 || ip[8] <= 1 {
        return false;
    }
    let old = [ip[8], ip[9]];
    ip[8] -= 1;
    let hc = update(be16(ip, 10), &old, &[ip[8], ip[9]]);
    ip[10..12].copy_from_slice(&hc.to_be_bytes());
    true
}

/// Sets the Ethernet addresses of `frame`.
pub fn set_macs(frame: &mut [u8], dst: MacAddr, src: MacAddr) {
    if frame.len() >= 12 {
        frame[0..6].copy_from_slice(&dst.0);
        frame[6..12].copy_from_slice(&src.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pool;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn arp_round_trips_and_is_padded() {
        let pool = Pool::new(4, 1);
        let mut b = pool.get(64).unwrap();
        let arp = Arp {
            op: ARP_REQUEST,
            sha: A,
            spa: Ipv4Addr::new(172, 18, 0, 2),
            tha: MacAddr([0; 6]),
            tpa: Ipv4Addr::new(172, 18, 0, 1),
        };
        assert!(write_arp(&mut b, MacAddr([0xff; 6]), A, &arp));
        let f = &b.bytes()[vnet::LEN..];
        assert_eq!(f.len(), 60);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(parse_arp(f), Some(arp));
        assert_eq!(parse_arp(&f[..30]), None);
    }

    #[test]
    fn icmp_error_and_echo_reply_have_valid_checksums() {
        let pool = Pool::new(4, 1);
        let mut b = pool.get(600).unwrap();
        let quoted = [0x45u8; 40];
        let (s, d) = (Ipv4Addr::new(172, 18, 0, 1), Ipv4Addr::new(172, 18, 0, 2));
        assert!(write_icmp_error(&mut b, B, A, s, d, 11, 0, &quoted));
        let f = &b.bytes()[vnet::LEN..];
        let ip = nat::packet::Ipv4Packet::new_checked(&f[ETH..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(checksum(&f[ETH + 20..ETH + 20 + 8 + 40]), 0);
        // An echo request, then its reply in place.
        let mut req = vec![0u8; ETH + 20 + 12];
        req[12..14].copy_from_slice(&IPV4.to_be_bytes());
        req[..6].copy_from_slice(&A.0);
        req[6..12].copy_from_slice(&B.0);
        ip_header(&mut req[ETH..ETH + 20], d, s, 1, 12);
        req[ETH + 20] = 8;
        req[ETH + 24..ETH + 26].copy_from_slice(&[0x12, 0x34]);
        let c = checksum(&req[ETH + 20..]);
        req[ETH + 22..ETH + 24].copy_from_slice(&c.to_be_bytes());
        assert!(echo_reply_in_place(&mut req, 20, 32));
        let ip = nat::packet::Ipv4Packet::new_checked(&req[ETH..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src(), ip.dst()), (s, d));
        assert_eq!(req[ETH + 20], 0);
        assert_eq!(checksum(&req[ETH + 20..]), 0);
        assert_eq!(&req[..6], &B.0);
        let mut ttl = req[ETH..].to_vec();
        ttl[8] = 1;
        assert!(!decrement_ttl(&mut ttl));
        ttl[8] = 64;
        ttl[10..12].fill(0);
        let c = checksum(&ttl[..20]);
        ttl[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(decrement_ttl(&mut ttl));
        assert_eq!(checksum(&ttl[..20]), 0);
    }
}
