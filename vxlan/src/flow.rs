//! The hash of an inner flow that picks the outer UDP source port (RFC 7348 §5), so
//! the underlay (ECMP, RSS) can spread flows over paths and queues while each flow's
//! packets stay on one path, in order.

use crate::offload::layers::{headers, PROTO_TCP, PROTO_UDP};

/// Lowest outer source port by default (the kernel's `ip_local_port_range`, which the
/// kernel vxlan device uses too).
pub const SRC_PORT_MIN: u16 = 32768;
/// Highest outer source port by default.
pub const SRC_PORT_MAX: u16 = 60999;

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// One step: the folded 128-bit product (as in wyhash), which carries every input
/// bit into both halves of the state.
#[inline]
fn mix(h: u64, v: u64) -> u64 {
    let p = u128::from(h ^ v) * u128::from(K);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Up to 8 bytes as one big-endian word (fewer bytes: zero-extended).
#[inline]
fn word(b: &[u8]) -> u64 {
    b.iter().take(8).fold(0u64, |a, &x| (a << 8) | u64::from(x))
}

/// A hash of the inner frame's flow: Ethernet addresses and EtherType, and when
/// present the IP addresses, protocol and TCP/UDP ports, so two connections between
/// the same hosts hash apart. Directional (A→B and B→A may differ). Total on any input.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut h = mix(SEED, word(frame.get(..6).unwrap_or(frame)));
    h = mix(h, word(frame.get(6..12).unwrap_or(&[])));
    if let Some(l) = headers(frame) {
        h = mix(h, u64::from(l.ethertype));
        if let Some(ip) = l.ip {
            // Source and destination addresses: 8 bytes for IPv4, 32 for IPv6.
            let (at, n) = match ip.version {
                crate::offload::IpVersion::V4 => (l.l3 + 12, 8),
                crate::offload::IpVersion::V6 => (l.l3 + 8, 32),
            };
            if let Some(addrs) = frame.get(at..at + n) {
                for c in addrs.chunks(8) {
                    h = mix(h, word(c));
                }
            }
            let ports = match ip.l4 {
                Some(l4) if matches!(ip.proto, PROTO_TCP | PROTO_UDP) => {
                    word(frame.get(l4.offset..l4.offset + 4).unwrap_or(&[]))
                }
                _ => 0,
            };
            h = mix(h, u64::from(ip.proto) << 32 | ports);
        }
    }
    // Final avalanche (murmur3's fmix64) so every output bit depends on every input.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h ^ (h >> 32)) as u32
}

/// Maps a hash into `[lo, hi]` (bounds in either order), by multiply-and-shift like
/// the kernel's `udp_flow_src_port`: no division, spread evenly.
pub fn source_port(hash: u32, lo: u16, hi: u16) -> u16 {
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let span = u64::from(hi - lo) + 1;
    // (hash * span) >> 32 < span ≤ 65536, so it fits a u16 offset from lo.
    let off = (u64::from(hash) * span) >> 32;
    lo.saturating_add(off as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{frame, Spec};
    use proptest::prelude::*;

    fn tcp(sport: u16) -> Vec<u8> {
        let mut f = frame(&Spec::tcp4(10));
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f
    }

    #[test]
    fn flows_differ_and_repeat() {
        let a = flow_hash(&tcp(40000));
        assert_eq!(a, flow_hash(&tcp(40000)));
        // 64 connections between the same hosts spread over 16 buckets.
        let buckets: std::collections::HashSet<u32> =
            (0..64).map(|p| flow_hash(&tcp(40000 + p)) % 16).collect();
        assert!(buckets.len() >= 12, "{buckets:?}");
        // The payload does not matter, the addresses do.
        let mut other = tcp(40000);
        *other.last_mut().unwrap() ^= 1;
        assert_eq!(flow_hash(&other), a);
        other[29] ^= 1; // source IP
        assert_ne!(flow_hash(&other), a);
        let v6 = frame(&Spec::tcp6(10));
        let mut v6b = v6.clone();
        v6b[54 + 2] ^= 1; // destination port
        assert_ne!(flow_hash(&v6), flow_hash(&v6b));
        assert_eq!(flow_hash(&[]), flow_hash(&[]));
    }

    #[test]
    fn ports_cover_the_range() {
        assert_eq!(source_port(0, SRC_PORT_MIN, SRC_PORT_MAX), SRC_PORT_MIN);
        assert_eq!(
            source_port(u32::MAX, SRC_PORT_MIN, SRC_PORT_MAX),
            SRC_PORT_MAX
        );
        assert_eq!(source_port(u32::MAX, 0, u16::MAX), u16::MAX);
        assert_eq!(source_port(u32::MAX, 7, 7), 7);
        assert_eq!(source_port(u32::MAX / 2, 100, 0), 50);
    }

    proptest! {
        #[test]
        fn total_and_in_range(bytes in proptest::collection::vec(any::<u8>(), 0..120), hash in any::<u32>(), lo in any::<u16>(), hi in any::<u16>()) {
            let _ = flow_hash(&bytes);
            let p = source_port(hash, lo, hi);
            prop_assert!(p >= lo.min(hi) && p <= lo.max(hi));
        }
    }
}
