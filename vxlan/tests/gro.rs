#![allow(clippy::unwrap_used)]
//! Receive coalescing: what `encap_segments` cut up, `merge_tcp` puts back together,
//! and anything that is not one flow's consecutive, intact segments is left alone.

use etherparse::PacketBuilder;
use proptest::prelude::*;
use vxlan::gro::merge_tcp;
use vxlan::offload::{encap_segments, Gso, Offload};
use wire::checksum::{complete, fold, sum};

fn tcp_frame(v6: bool, payload: &[u8], flags_psh: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let b = if v6 {
        b.ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
    } else {
        b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
    };
    let b = b.tcp(40000, 5201, 7777, 512).ack(99);
    let b = if flags_psh { b.psh() } else { b };
    let mut f = Vec::new();
    b.write(&mut f, payload).unwrap();
    f
}

fn segments(f: &[u8], v6: bool, mss: u16) -> (Vec<u8>, usize) {
    let off = Offload {
        needs_csum: true,
        gso: if v6 { Gso::TcpV6 } else { Gso::TcpV4 },
        gso_size: mss,
        ..Offload::NONE
    };
    let mut out = Vec::new();
    let s = encap_segments(f, &off, 1464, 42, &mut out).unwrap();
    (out, s.stride)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn segments_merge_back_into_the_super_frame(v6 in any::<bool>(), len in 2000usize..60000, mss in 600u16..1400, psh in any::<bool>()) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let f = tcp_frame(v6, &payload, psh);
        let (mut out, stride) = segments(&f, v6, mss);
        let m = merge_tcp(&mut out, stride).expect("merges");
        prop_assert_eq!(m.vni, 42);
        // Segments were cut to fit 1464-byte inner frames as well as to the MSS.
        let hl = 14 + if v6 { 40 } else { 20 } + 20;
        let eff = usize::from(mss).min(1464 - hl);
        prop_assert_eq!(m.segments, len.div_ceil(eff));
        prop_assert_eq!(usize::from(m.offload.gso_size), eff);
        prop_assert_eq!(m.offload.gso, if v6 { Gso::TcpV6 } else { Gso::TcpV4 });
        let mut merged = out[m.inner.clone()].to_vec();
        // Completing the checksum as the receiving kernel would gives the original frame
        // (the builder's frame has a complete checksum and ID 0, as the first segment).
        complete(&mut merged, usize::from(m.offload.csum_start), usize::from(m.offload.csum_offset)).unwrap();
        prop_assert_eq!(merged.len(), f.len());
        prop_assert_eq!(&merged[..], &f[..]);
        if !v6 {
            prop_assert_eq!(fold(sum(&merged[14..34], 0)), 0xffff);
        }
    }

    #[test]
    fn anything_else_is_left_alone(len in 3000usize..20000, which in 0usize..5, at in any::<prop::sample::Index>()) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 3) as u8).collect();
        let f = tcp_frame(false, &payload, false);
        let (mut out, stride) = segments(&f, false, 1000);
        let n = out.len().div_ceil(stride);
        let seg = at.index(n);
        let base = seg * stride;
        match which {
            0 => out[base + 8 + 50] ^= 0xff,          // TCP payload corrupted: checksum fails
            1 => out[base + 8 + 34 + 3] ^= 1,         // sequence number off
            2 => out[base + 6] ^= 1,                  // another VNI
            3 => out[base + 8 + 26] ^= 1,             // another source address
            _ => out[base + 8 + 34 + 13] |= 0x01,     // FIN in the middle
        }
        if which == 4 && seg + 1 == n {
            // FIN on the last segment is not the case under test.
            return Ok(());
        }
        let before = out.clone();
        prop_assert!(merge_tcp(&mut out, stride).is_none());
        prop_assert_eq!(out, before);
    }

    #[test]
    fn total_on_arbitrary_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..4000), stride in 0usize..2000) {
        let _ = merge_tcp(&mut bytes, stride);
    }
}
