//! The inner IPv4/UDP header a VXLAN datagram travels behind inside WireGuard: the
//! packet a kernel vxlan device on a WireGuard interface hands its TUN, so that a plain
//! WireGuard peer (wireguard-go, the kernel's) with such a device can be the far end.

use std::net::Ipv4Addr;
use std::ops::Range;

use wire::ipv4::{Ipv4Packet, Ipv4Repr};
use wire::udp::UdpPacket;

use crate::DropReason;

/// Inner IPv4 (20, no options) + UDP (8).
pub const HEADER_LEN: usize = 28;
/// The inner UDP destination port: VXLAN's.
pub const VXLAN_PORT: u16 = 4789;

/// Writes the inner IPv4 and UDP headers for a `payload_len`-byte VXLAN datagram into
/// `out[..HEADER_LEN]`: `src` → `dst`, from `sport` to port 4789. The UDP checksum is
/// zero (allowed over IPv4, as the kernel vxlan device sends by default; the AEAD
/// protects the packet). `None` if `out` is too short or the packet too large.
pub fn wrap(
    out: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    payload_len: usize,
) -> Option<()> {
    let udp_len = u16::try_from(payload_len.checked_add(8)?).ok()?;
    let repr = Ipv4Repr {
        src,
        dst,
        protocol: wire::ip_proto::UDP,
        payload_len: usize::from(udp_len),
        ttl: 64,
    };
    repr.emit(out).ok()?;
    let u = out.get_mut(20..HEADER_LEN)?;
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&VXLAN_PORT.to_be_bytes());
    u[4..6].copy_from_slice(&udp_len.to_be_bytes());
    u[6..8].fill(0);
    Some(())
}

/// Checks a decrypted packet: IPv4 with a valid header, not a fragment, UDP to port
/// 4789, to `local` and (when given) from `remote`. Returns where the VXLAN datagram
/// lies in `packet`.
pub fn unwrap(
    packet: &[u8],
    local: Ipv4Addr,
    remote: Option<Ipv4Addr>,
) -> Result<Range<usize>, DropReason> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| DropReason::InnerNotVxlan)?;
    if ip.protocol() != wire::ip_proto::UDP
        || ip.is_fragment()
        || !ip.verify_checksum()
        || ip.dst() != local
        || remote.is_some_and(|r| r != ip.src())
    {
        return Err(DropReason::InnerNotVxlan);
    }
    let hl = ip.header_len();
    let total = usize::from(ip.total_len());
    let udp = UdpPacket::new_checked(&packet[hl..total]).map_err(|_| DropReason::InnerNotVxlan)?;
    let ulen = usize::from(udp.len_field());
    if udp.dst_port() != VXLAN_PORT || ulen < 8 || hl + ulen > total {
        return Err(DropReason::InnerNotVxlan);
    }
    Ok(hl + 8..hl + ulen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

    #[test]
    fn wraps_and_unwraps() {
        let mut p = vec![0u8; HEADER_LEN + 30];
        p[HEADER_LEN..].fill(7);
        wrap(&mut p, A, B, 40000, 30).unwrap();
        let parsed = etherparse::SlicedPacket::from_ip(&p).unwrap();
        match parsed.transport {
            Some(etherparse::TransportSlice::Udp(u)) => {
                assert_eq!(u.destination_port(), 4789);
                assert_eq!(u.source_port(), 40000);
                assert_eq!(u.length(), 38);
            }
            other => panic!("not UDP: {other:?}"),
        }
        assert_eq!(unwrap(&p, B, Some(A)), Ok(HEADER_LEN..HEADER_LEN + 30));
        assert_eq!(unwrap(&p, B, None), Ok(HEADER_LEN..HEADER_LEN + 30));
    }

    #[test]
    fn refuses_what_is_not_for_the_tunnel() {
        let mut p = vec![0u8; HEADER_LEN + 30];
        wrap(&mut p, A, B, 40000, 30).unwrap();
        assert_eq!(unwrap(&p, A, None), Err(DropReason::InnerNotVxlan));
        assert_eq!(unwrap(&p, B, Some(B)), Err(DropReason::InnerNotVxlan));
        let mut q = p.clone();
        q[22..24].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(unwrap(&q, B, None), Err(DropReason::InnerNotVxlan));
        let mut c = p.clone();
        c[10] ^= 1;
        assert_eq!(unwrap(&c, B, None), Err(DropReason::InnerNotVxlan));
        for n in 0..p.len() {
            assert!(unwrap(&p[..n], B, None).is_err());
        }
    }
}
