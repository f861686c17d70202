//! The hash of an inner flow that picks the outer UDP source port, so the underlay
//! (ECMP, RSS) can spread flows while each flow's packets stay in order.

use crate::offload::headers;

/// Lowest outer source port by default (the kernel's `ip_local_port_range`).
pub const SRC_PORT_MIN: u16 = 32768;
/// Highest outer source port by default.
pub const SRC_PORT_MAX: u16 = 60999;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    let x = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

fn word(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x))
}

/// A hash of the inner frame's flow: Ethernet addresses and type, and when present the
/// IP addresses, protocol and TCP/UDP ports. Total on any input.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut h = mix(0x5bd1_e995, word(frame.get(..6).unwrap_or(frame)));
    h = mix(h, word(frame.get(6..14).unwrap_or(&[])));
    if let Some(l) = headers(frame) {
        let (a, n) = if l.ipv4 {
            (l.l3 + 12, 8)
        } else {
            (l.l3 + 8, 32)
        };
        if let Some(addrs) = frame.get(a..a + n) {
            for c in addrs.chunks(8) {
                h = mix(h, word(c));
            }
        }
        if l.proto != 0 {
            h = mix(
                h,
                u64::from(l.proto) << 32 | word(frame.get(l.l4..l.l4 + 4).unwrap_or(&[])),
            );
        }
    }
    (h ^ (h >> 32)) as u32
}

/// Maps a hash into `[lo, hi]`.
pub fn source_port(hash: u32, lo: u16, hi: u16) -> u16 {
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let span = u32::from(hi - lo) + 1;
    lo + (hash % span) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&5201u16.to_be_bytes());
        f[46] = 0x50;
        f
    }

    #[test]
    fn flows_differ_and_ports_stay_in_range() {
        let a = flow_hash(&tcp(40000));
        assert_eq!(a, flow_hash(&tcp(40000)));
        let distinct: std::collections::HashSet<u32> =
            (0..64).map(|p| flow_hash(&tcp(40000 + p)) % 16).collect();
        assert!(distinct.len() > 8, "{distinct:?}");
        for h in [0, 1, u32::MAX, a] {
            let p = source_port(h, SRC_PORT_MIN, SRC_PORT_MAX);
            assert!((SRC_PORT_MIN..=SRC_PORT_MAX).contains(&p));
        }
        assert_eq!(flow_hash(&[]), flow_hash(&[]));
    }
}
