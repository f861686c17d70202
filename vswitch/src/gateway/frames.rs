//! The frames the gateway reads and writes itself: ARP (RFC 826) requests and replies,
//! ICMP echo replies and ICMP errors (RFC 792), and the Ethernet header of routed
//! packets. Everything works on `vnet header + frame` buffers as ports carry them; every
//! header is read and written through the `wire` crate's views and reprs.

use std::net::Ipv4Addr;

use wire::arp::{ArpPacket, PACKET_LEN as ARP_LEN};
use wire::checksum::{finish, pseudo_v4, sum, update};
use wire::ethernet::{emit_header, field as eth};
use wire::icmp::{msg_type, IcmpPacket, IcmpRepr};
use wire::ipv4::{Ipv4Packet, Ipv4Repr, MIN_HEADER_LEN as IP_HEADER};
use wire::{ip_proto, WireError};

use crate::pool::Buf;
use crate::wire::{vnet, MacAddr};

/// Ethernet header length (untagged).
pub const ETH: usize = wire::ethernet::HEADER_LEN;
/// ARP operations.
pub use wire::arp::{OP_REPLY as ARP_REPLY, OP_REQUEST as ARP_REQUEST};
/// EtherTypes the gateway speaks.
pub use wire::ethertype::{ARP, IPV4};
/// An Ethernet/IPv4 ARP packet.
pub use wire::ArpRepr as Arp;

/// Minimum Ethernet frame without FCS: short frames are padded, as NICs do.
const MIN_FRAME: usize = 60;
/// Quoted bytes in an ICMP error, at most: an error stays within the 576 bytes every
/// host accepts (RFC 1812 4.3.2.3).
const QUOTE_MAX: usize = 576 - IP_HEADER - wire::icmp::HEADER_LEN;
/// TTL of the packets the gateway originates (Linux's default).
const TTL: u8 = 64;

/// Reads the ARP packet of an untagged frame; `None` unless it is Ethernet/IPv4 ARP.
pub fn parse_arp(frame: &[u8]) -> Option<Arp> {
    let p = ArpPacket::new_checked(frame.get(ETH..)?).ok()?;
    Arp::parse(&p).ok()
}

/// Fills `buf` with a frame from `src` to `dst` of `ethertype` whose payload `body`
/// writes into the slice it is given (`len` bytes); no offload in the vnet header.
/// False (the buffer left empty) if it does not fit or `body` fails.
fn build(
    buf: &mut Buf,
    dst: MacAddr,
    src: MacAddr,
    ethertype: u16,
    len: usize,
    body: impl FnOnce(&mut [u8]) -> Result<(), WireError>,
) -> bool {
    let frame_len = (ETH + len).max(MIN_FRAME);
    let total = vnet::LEN + frame_len;
    if total > buf.capacity() {
        return false;
    }
    let b = buf.spare();
    b[..total].fill(0);
    let f = &mut b[vnet::LEN..total];
    if emit_header(f, dst, src, ethertype).is_err() || body(&mut f[ETH..ETH + len]).is_err() {
        return false;
    }
    buf.set_len(total);
    true
}

/// Writes an ARP packet into `buf`, sent from `src` to `dst` at the Ethernet level.
pub fn write_arp(buf: &mut Buf, dst: MacAddr, src: MacAddr, arp: &Arp) -> bool {
    build(buf, dst, src, ARP, ARP_LEN, |a| {
        arp.emit(&mut ArpPacket::new_checked(a)?);
        Ok(())
    })
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
    let icmp = IcmpRepr::Error {
        msg_type: ty,
        code,
        quoted: q,
    };
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: ip_proto::ICMP,
        payload_len: icmp.buffer_len(),
        ttl: TTL,
    };
    build(
        buf,
        eth_dst,
        eth_src,
        IPV4,
        IP_HEADER + icmp.buffer_len(),
        |p| {
            ip.emit(p)?;
            icmp.emit(&mut p[IP_HEADER..])
        },
    )
}

/// Writes a UDP datagram from `src`:`sport` to `dst`:`dport` carrying `payload`, its
/// checksums complete (the gateway's own DNS answers and queries).
#[allow(clippy::too_many_arguments)]
pub fn write_udp(
    buf: &mut Buf,
    eth_dst: MacAddr,
    eth_src: MacAddr,
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    payload: &[u8],
) -> bool {
    let udp_len = wire::udp::HEADER_LEN + payload.len();
    let Ok(len16) = u16::try_from(udp_len) else {
        return false;
    };
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: ip_proto::UDP,
        payload_len: udp_len,
        ttl: TTL,
    };
    build(buf, eth_dst, eth_src, IPV4, IP_HEADER + udp_len, |p| {
        ip.emit(p)?;
        let u = &mut p[IP_HEADER..];
        u[8..].copy_from_slice(payload);
        let mut h = wire::udp::UdpPacket::new_checked(&mut *u)?;
        h.set_src_port(sport);
        h.set_dst_port(dport);
        h.set_len_field(len16);
        h.set_checksum(0);
        let ps = pseudo_v4(src.octets(), dst.octets(), ip_proto::UDP, len16);
        let c = finish(sum(&*u, ps));
        u[6..8].copy_from_slice(&c.to_be_bytes());
        Ok(())
    })
}

/// Writes the TCP reset that refuses `seg` (a TCP segment from its IP header on, as
/// the client sent it), from the address and port it was sent to (RFC 793 3.4: a
/// segment with ACK gets a reset at its acknowledgment number; one without gets a reset
/// with ACK acknowledging what it carried).
pub fn write_tcp_rst(buf: &mut Buf, eth_dst: MacAddr, eth_src: MacAddr, seg: &[u8]) -> bool {
    use wire::tcp::{field as tf, flags, TcpPacket, MIN_HEADER_LEN as TCP_HEADER};
    let Ok(ip) = Ipv4Packet::new_checked(seg) else {
        return false;
    };
    let Ok(t) = TcpPacket::new_checked(ip.payload()) else {
        return false;
    };
    let (src, dst) = (ip.dst(), ip.src());
    let f = t.flags();
    let (seq, ack, out_flags) = if f & flags::ACK != 0 {
        (t.ack(), 0, flags::RST)
    } else {
        let len = t.payload().len() as u32
            + u32::from(f & flags::SYN != 0)
            + u32::from(f & flags::FIN != 0);
        (0, t.seq().wrapping_add(len), flags::RST | flags::ACK)
    };
    let (sport, dport) = (t.dst_port(), t.src_port());
    let repr = Ipv4Repr {
        src,
        dst,
        protocol: ip_proto::TCP,
        payload_len: TCP_HEADER,
        ttl: TTL,
    };
    build(buf, eth_dst, eth_src, IPV4, IP_HEADER + TCP_HEADER, |p| {
        repr.emit(p)?;
        let h = &mut p[IP_HEADER..IP_HEADER + TCP_HEADER];
        h[tf::SRC_PORT].copy_from_slice(&sport.to_be_bytes());
        h[tf::DST_PORT].copy_from_slice(&dport.to_be_bytes());
        h[tf::SEQ].copy_from_slice(&seq.to_be_bytes());
        h[tf::ACK].copy_from_slice(&ack.to_be_bytes());
        h[tf::DATA_OFF] = ((TCP_HEADER / 4) as u8) << 4;
        h[tf::FLAGS] = out_flags;
        let ps = pseudo_v4(src.octets(), dst.octets(), ip_proto::TCP, TCP_HEADER as u16);
        let c = finish(sum(h, ps));
        h[tf::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        Ok(())
    })
}

/// Turns the ICMP echo request in `frame` (IPv4 header at [`ETH`], `hl` bytes long,
/// `total` bytes in all) into its reply, in place: addresses and MACs swapped, type 0,
/// a fresh TTL, checksums fixed up.
pub fn echo_reply_in_place(frame: &mut [u8], hl: usize, total: usize) -> bool {
    let (Some(d), Some(s)) = (
        MacAddr::read(frame, eth::DST.start),
        MacAddr::read(frame, eth::SRC.start),
    ) else {
        return false;
    };
    let Some(ip) = frame.get_mut(ETH..ETH + total) else {
        return false;
    };
    if !Ipv4Packet::new_truncated(&*ip).is_ok_and(|p| p.header_len() == hl) {
        return false;
    }
    let (head, rest) = ip.split_at_mut(hl);
    let (Ok(mut p), Ok(mut icmp)) = (
        Ipv4Packet::new_truncated(head),
        IcmpPacket::new_checked(rest),
    ) else {
        return false;
    };
    if icmp.msg_type() != msg_type::ECHO_REQUEST {
        return false;
    }
    let (src, dst) = (p.src(), p.dst());
    p.set_src_raw(dst);
    p.set_dst_raw(src);
    let old_ttl = [p.ttl(), p.protocol()];
    p.set_ttl_raw(TTL);
    // Swapping the addresses leaves the header sum as it was; only the TTL changed.
    let hc = update(p.checksum(), &old_ttl, &[TTL, old_ttl[1]]);
    p.set_checksum(hc);
    let code = icmp.code();
    let c = update(
        icmp.checksum(),
        &[msg_type::ECHO_REQUEST, code],
        &[msg_type::ECHO_REPLY, code],
    );
    icmp.set_msg_type(msg_type::ECHO_REPLY);
    icmp.set_checksum(c);
    set_macs(frame, s, d);
    true
}

/// Decrements the TTL of the IPv4 header `ip`, checksum fixed up incrementally;
/// false (nothing changed) if the packet must not be forwarded (TTL 0 or 1).
pub fn decrement_ttl(ip: &mut [u8]) -> bool {
    let Ok(mut p) = Ipv4Packet::new_truncated(ip) else {
        return false;
    };
    if p.ttl() <= 1 {
        return false;
    }
    let old = [p.ttl(), p.protocol()];
    let new = [old[0] - 1, old[1]];
    p.set_ttl_raw(new[0]);
    let hc = update(p.checksum(), &old, &new);
    p.set_checksum(hc);
    true
}

/// Sets the Ethernet addresses of `frame`.
pub fn set_macs(frame: &mut [u8], dst: MacAddr, src: MacAddr) {
    if let Some(a) = frame.get_mut(eth::DST.start..eth::SRC.end) {
        a[eth::DST].copy_from_slice(&dst.0);
        a[eth::SRC].copy_from_slice(&src.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pool;
    use wire::checksum::checksum;

    /// An IPv4 header (no options) for `payload_len` bytes of protocol `proto`.
    fn ip_header(h: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize) {
        let r = Ipv4Repr {
            src,
            dst,
            protocol: proto,
            payload_len,
            ttl: TTL,
        };
        r.emit(h).unwrap();
    }

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
        let ip = Ipv4Packet::new_checked(&f[ETH..]).unwrap();
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
        let ip = Ipv4Packet::new_checked(&req[ETH..]).unwrap();
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
