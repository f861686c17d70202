//! A TCP super-frame encapsulated whole, for a kernel that segments VXLAN itself: the
//! bytes to write in front of the inner frame to a TAP device that takes UDP-tunnel GSO
//! (virtio's `GSO_UDP_TUNNEL_IPV4`, `TUN_F_UDP_TUNNEL_GSO` since Linux 6.17). The kernel
//! then carries one packet per super-frame instead of one per segment, to the underlay
//! device and, on a veth underlay, to the peer's VXLAN device, which decapsulates it
//! whole: the per-segment work [`super::encap_split`] leaves to both ends disappears.
//!
//! The header written is `struct virtio_net_hdr_v1_hash_tunnel` (24 bytes, in the
//! host's byte order as the TAP reads it: see `wire::vnet`), then the outer Ethernet, IPv4, UDP and VXLAN headers. The inner frame
//! follows unchanged: its partial TCP checksum (the pseudo-header sum a TSO sender
//! leaves) is completed per segment by the kernel.

use std::net::Ipv4Addr;

use wire::bytes::put16;

use super::layers::{IpVersion, Transport, TCP_CSUM_OFFSET};
use super::{Gso, Offload, OffloadError, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6};
use crate::header::{encode, HEADER_LEN};

/// Size of `struct virtio_net_hdr_v1_hash_tunnel`: the TAP's virtio-net header size.
pub const TUNNEL_VIRTIO_LEN: usize = 24;
/// Outer Ethernet (14), IPv4 (20), UDP (8) and VXLAN (8) headers.
pub const OUTER_LEN: usize = 14 + IPV4_LEN + UDP_LEN + HEADER_LEN;
/// Everything written in front of the inner frame.
pub const WHOLE_LEN: usize = TUNNEL_VIRTIO_LEN + OUTER_LEN;
/// virtio's GSO type bit for an IPv4 UDP tunnel (`VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`).
pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;

const IPV4_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// Where the outer UDP header starts in the packet.
const OUTER_TH: usize = 14 + IPV4_LEN;
/// Largest IPv4 packet.
const MAX_IP_LEN: usize = 65535;

/// The outer headers' addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// Destination MAC: the TAP's own, so its kernel side takes the packet as its host's.
    pub dst_mac: [u8; 6],
    /// Source MAC (anything unicast).
    pub src_mac: [u8; 6],
    /// The VTEP's address.
    pub src: Ipv4Addr,
    /// The remote VTEP.
    pub dst: Ipv4Addr,
    /// UDP source port (per inner flow).
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
    /// IPv4 identification of the first segment (the kernel counts up from it).
    pub ip_id: u16,
}

/// What the kernel will send for one super-frame: datagrams, and their UDP payload
/// bytes (VXLAN header and inner frame), as a tunnel's counters count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole {
    pub segments: u64,
    pub bytes: u64,
}

/// Writes into `out` the tunnel-GSO virtio-net header and outer headers that make the
/// TCP super-frame `frame` (described by `off`) one VXLAN packet the kernel segments, each
/// inner frame at most `max_frame` bytes. `Unsupported` for what only [`super::encap_split`]
/// sends (UDP super-frames, Ethernet padding, more than an IPv4 packet holds); other
/// errors as `encap_split`'s. Total on any input.
pub fn encap_whole(
    frame: &[u8],
    off: &Offload,
    max_frame: usize,
    vni: u32,
    outer: &Outer,
    out: &mut [u8; WHOLE_LEN],
) -> Result<Whole, OffloadError> {
    let inner_gso = match off.gso {
        Gso::TcpV4 => GSO_TCPV4,
        Gso::TcpV6 => GSO_TCPV6,
        Gso::UdpL4 => return Err(OffloadError::Unsupported),
        Gso::None => return Err(OffloadError::Malformed),
    };
    let t = Transport::of(frame).ok_or(OffloadError::Malformed)?;
    let version = if off.gso == Gso::TcpV4 {
        IpVersion::V4
    } else {
        IpVersion::V6
    };
    if !t.tcp
        || t.version != version
        || off.gso_size == 0
        || !off.needs_csum
        || usize::from(off.hdr_len) > frame.len()
    {
        return Err(OffloadError::Malformed);
    }
    if usize::from(off.csum_start) != t.l4 || usize::from(off.csum_offset) != TCP_CSUM_OFFSET {
        return Err(OffloadError::Malformed);
    }
    if t.end != frame.len() || IPV4_LEN + UDP_LEN + HEADER_LEN + frame.len() > MAX_IP_LEN {
        return Err(OffloadError::Unsupported);
    }
    let hl = t.hdrs_len();
    let mss = max_frame
        .checked_sub(hl)
        .filter(|&r| r > 0)
        .ok_or(OffloadError::TooBig)?
        .min(usize::from(off.gso_size));
    let payload = frame.len() - hl;
    let segments = payload.div_ceil(mss).max(1);

    out.fill(0);
    let (vh, pkt) = out.split_at_mut(TUNNEL_VIRTIO_LEN);
    let ecn = if off.ecn { GSO_ECN } else { 0 };
    let ne = |v: usize| (v as u16).to_ne_bytes();
    vh[0] = F_NEEDS_CSUM;
    vh[1] = GSO_UDP_TUNNEL_IPV4 | inner_gso | ecn;
    vh[2..4].copy_from_slice(&ne(OUTER_LEN + hl));
    vh[4..6].copy_from_slice(&ne(mss));
    vh[6..8].copy_from_slice(&ne(OUTER_LEN + t.l4));
    vh[8..10].copy_from_slice(&ne(TCP_CSUM_OFFSET));
    // num_buffers, hash_value, hash_report and padding stay 0.
    vh[20..22].copy_from_slice(&ne(OUTER_TH));
    vh[22..24].copy_from_slice(&ne(OUTER_LEN + t.l3));

    let udp_len = UDP_LEN + HEADER_LEN + frame.len();
    let ip_len = IPV4_LEN + udp_len;
    pkt[0..6].copy_from_slice(&outer.dst_mac);
    pkt[6..12].copy_from_slice(&outer.src_mac);
    put16(pkt, 12, wire::ethertype::IPV4).ok_or(OffloadError::Malformed)?;
    let ip = &mut pkt[14..OUTER_TH];
    ip[0] = 0x45;
    put16(ip, 2, ip_len as u16).ok_or(OffloadError::Malformed)?;
    put16(ip, 4, outer.ip_id).ok_or(OffloadError::Malformed)?;
    // Don't fragment, as the segmenting path's sockets send: a path MTU smaller than the
    // route's comes back as ICMP, for the route (and `max_frame`) to learn.
    put16(ip, 6, 0x4000).ok_or(OffloadError::Malformed)?;
    ip[8] = 64;
    ip[9] = wire::ip_proto::UDP;
    ip[12..16].copy_from_slice(&outer.src.octets());
    ip[16..20].copy_from_slice(&outer.dst.octets());
    let csum = wire::checksum::checksum(ip);
    put16(ip, 10, csum).ok_or(OffloadError::Malformed)?;
    let udp = &mut pkt[OUTER_TH..OUTER_TH + UDP_LEN];
    put16(udp, 0, outer.sport).ok_or(OffloadError::Malformed)?;
    put16(udp, 2, outer.dport).ok_or(OffloadError::Malformed)?;
    put16(udp, 4, udp_len as u16).ok_or(OffloadError::Malformed)?;
    // UDP checksum 0: allowed over IPv4 (RFC 7348 §5), and what Linux's vxlan sends.
    pkt[OUTER_TH + UDP_LEN..].copy_from_slice(&encode(vni));
    Ok(Whole {
        segments: segments as u64,
        bytes: (segments * (HEADER_LEN + hl) + payload) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{frame, Spec};

    fn outer() -> Outer {
        Outer {
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::new(198, 51, 100, 1),
            dst: Ipv4Addr::new(198, 51, 100, 2),
            sport: 40000,
            dport: 4789,
            ip_id: 7,
        }
    }

    fn tso(gso: Gso, f: &[u8], mss: u16) -> Offload {
        let t = Transport::of(f).unwrap();
        Offload {
            needs_csum: true,
            gso,
            ecn: false,
            hdr_len: t.hdrs_len() as u16,
            gso_size: mss,
            csum_start: t.l4 as u16,
            csum_offset: TCP_CSUM_OFFSET as u16,
        }
    }

    fn ne16(b: &[u8], at: usize) -> usize {
        usize::from(u16::from_ne_bytes([b[at], b[at + 1]]))
    }

    #[test]
    fn a_tcp4_super_frame_gets_a_tunnel_header_the_kernel_can_segment() {
        let f = frame(&Spec::tcp4(30000));
        let mut out = [0xaa; WHOLE_LEN];
        let w = encap_whole(&f, &tso(Gso::TcpV4, &f, 1448), 1464, 42, &outer(), &mut out).unwrap();
        let (vh, pkt) = out.split_at(TUNNEL_VIRTIO_LEN);
        assert_eq!(vh[0], F_NEEDS_CSUM);
        assert_eq!(vh[1], GSO_UDP_TUNNEL_IPV4 | GSO_TCPV4);
        // The path MTU cuts the sender's 1448 to 1464 - 54 header bytes.
        assert_eq!(ne16(vh, 4), 1410);
        assert_eq!(ne16(vh, 6), OUTER_LEN + 34);
        assert_eq!(ne16(vh, 8), 16);
        assert_eq!(ne16(vh, 20), 34);
        assert_eq!(ne16(vh, 22), OUTER_LEN + 14);
        assert_eq!(ne16(vh, 2), OUTER_LEN + 54);
        assert_eq!(&pkt[..6], &outer().dst_mac);
        let ip = wire::Ipv4Packet::new_truncated(&pkt[14..34]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), 36 + f.len());
        assert_eq!(ip.src(), outer().src);
        assert!(ip.dont_fragment());
        assert_eq!(ip.dst(), outer().dst);
        assert_eq!(u16::from_be_bytes([pkt[34], pkt[35]]), 40000);
        assert_eq!(u16::from_be_bytes([pkt[36], pkt[37]]), 4789);
        assert_eq!(
            usize::from(u16::from_be_bytes([pkt[38], pkt[39]])),
            16 + f.len()
        );
        assert_eq!(&pkt[42..50], &encode(42));
        assert_eq!(w.segments, 30000u64.div_ceil(1410));
        assert_eq!(w.bytes, w.segments * (8 + 54) + 30000);
    }

    #[test]
    fn a_tcp6_super_frame_is_marked_tcpv6_inside_an_ipv4_tunnel() {
        let f = frame(&Spec::tcp6(5000));
        let mut out = [0; WHOLE_LEN];
        let mut off = tso(Gso::TcpV6, &f, 1000);
        off.ecn = true;
        encap_whole(&f, &off, 1464, 1, &outer(), &mut out).unwrap();
        assert_eq!(out[1], GSO_UDP_TUNNEL_IPV4 | GSO_TCPV6 | GSO_ECN);
        assert_eq!(ne16(&out, 4), 1000);
    }

    #[test]
    fn what_only_the_segmenting_path_sends_is_unsupported_and_bad_offloads_are_malformed() {
        let mut out = [0; WHOLE_LEN];
        let u = frame(&Spec::udp4(3000));
        let mut off = tso(Gso::TcpV4, &frame(&Spec::tcp4(3000)), 1000);
        let mut udp = off;
        udp.gso = Gso::UdpL4;
        assert_eq!(
            encap_whole(&u, &udp, 1464, 1, &outer(), &mut out),
            Err(OffloadError::Unsupported)
        );
        let t4 = frame(&Spec::tcp4(3000));
        let mut padded = t4.clone();
        padded.push(0);
        assert_eq!(
            encap_whole(&padded, &off, 1464, 1, &outer(), &mut out),
            Err(OffloadError::Unsupported)
        );
        assert_eq!(
            encap_whole(
                &t4,
                &tso(Gso::TcpV6, &t4, 1000),
                1464,
                1,
                &outer(),
                &mut out
            ),
            Err(OffloadError::Malformed)
        );
        assert_eq!(
            encap_whole(&t4, &off, 54, 1, &outer(), &mut out),
            Err(OffloadError::TooBig)
        );
        off.csum_start += 1;
        assert_eq!(
            encap_whole(&t4, &off, 1464, 1, &outer(), &mut out),
            Err(OffloadError::Malformed)
        );
        for cut in 0..60 {
            assert!(encap_whole(&t4[..cut], &off, 1464, 1, &outer(), &mut out).is_err());
        }
    }
}
