#![allow(clippy::unwrap_used)]
//! Property tests: encapsulation round-trips, segmentation reassembles to the original
//! with valid checksums, and every entry point is total on arbitrary bytes.

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use proptest::prelude::*;
use vxlan::decap::{parse, VtepTable};
use vxlan::offload::{encap_segments, headers, offload_for_inner, Gso, IpVersion, Offload};

/// Independent of the crate's code: the one's complement sum of 16-bit words.
fn naive(parts: &[&[u8]]) -> u16 {
    let mut s: u32 = 0;
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(p);
    }
    for c in bytes.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        s += u32::from(w);
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A TCP super-frame: `payload` behind Ethernet (optionally one 802.1Q tag), IPv4 or
/// IPv6, TCP with `flags`, checksum field left partial as a TSO sender leaves it.
fn tcp_frame(v6: bool, tagged: bool, payload: &[u8], flags: u8, seq: u32) -> Vec<u8> {
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
    let b = b.tcp(40000, 5201, seq, 512);
    let mut f = Vec::new();
    b.write(&mut f, payload).unwrap();
    let l4 = if v6 { 14 + 40 } else { 14 + 20 };
    f[l4 + 13] = flags;
    f[l4 + 16] = 0x12;
    f[l4 + 17] = 0x34;
    if tagged {
        f.splice(12..12, [0x81, 0x00, 0x20, 0x0a]);
    }
    f
}

fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(40000, 443);
    let mut f = Vec::new();
    b.write(&mut f, payload).unwrap();
    f
}

/// Arbitrary bytes, or a valid TCP/UDP frame with a few bytes of its headers changed
/// and perhaps cut short: those reach the code behind the header checks.
fn frames() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        any::<bool>(),
        any::<bool>(),
        0usize..4000,
        proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
        any::<Option<usize>>(),
    )
        .prop_map(|(v6, tcp, len, flips, cut)| {
            let payload = vec![0x5a; len];
            let mut f = if tcp {
                tcp_frame(v6, false, &payload, 0x18, 1)
            } else {
                udp_frame(&payload)
            };
            for (at, b) in flips {
                if let Some(x) = f.get_mut(at) {
                    *x = b;
                }
            }
            if let Some(c) = cut {
                f.truncate(c % (f.len() + 1));
            }
            f
        });
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..3000), mutated]
}

/// Any offload description, sensible or not.
fn offloads() -> impl Strategy<Value = Offload> {
    (
        any::<bool>(),
        prop_oneof![
            Just(Gso::None),
            Just(Gso::TcpV4),
            Just(Gso::TcpV6),
            Just(Gso::UdpL4)
        ],
        any::<bool>(),
        any::<[u16; 4]>(),
        prop_oneof![Just(0u16), 1u16..2000, any::<u16>()],
    )
        .prop_map(
            |(needs_csum, gso, ecn, [hdr_len, gso_size, csum_start, csum_offset], small)| Offload {
                needs_csum,
                gso,
                ecn,
                hdr_len: hdr_len % 128,
                gso_size: if gso_size % 2 == 0 { small } else { gso_size },
                csum_start: csum_start % 128,
                csum_offset: if csum_offset % 2 == 0 {
                    csum_offset % 32
                } else {
                    csum_offset
                },
            },
        )
}

/// What any successful encapsulation must look like.
fn check_layout(
    r: Result<vxlan::offload::Segments, vxlan::offload::OffloadError>,
    out: &[u8],
    max_frame: usize,
) {
    let Ok(s) = r else {
        assert!(out.is_empty(), "an error leaves nothing behind");
        return;
    };
    assert_eq!(s.total, out.len());
    assert!(s.count >= 1 && s.stride >= 1);
    assert!(s.total > (s.count - 1) * s.stride && s.total <= s.count * s.stride);
    let mut at = 0;
    for r in s.chunks(65507) {
        assert_eq!(r.start, at);
        at = r.end;
    }
    assert_eq!(at, s.total);
    for d in out.chunks(s.stride) {
        assert!(parse(d).is_ok());
        assert!(d.len() - 8 <= max_frame);
    }
}

/// Checks every segment and returns the TCP (or UDP) payloads in order.
fn check_segments(
    out: &[u8],
    segs: &vxlan::offload::Segments,
    max_frame: usize,
    vni: u32,
    tcp: bool,
) -> Vec<(u32, Vec<u8>, bool, bool)> {
    let mut got = Vec::new();
    assert_eq!(segs.total, out.len());
    for (i, d) in out.chunks(segs.stride).enumerate() {
        assert!(i < segs.count);
        if i + 1 < segs.count {
            assert_eq!(d.len(), segs.stride, "only the last segment is short");
        }
        let (v, at) = parse(d).unwrap();
        assert_eq!(v, vni);
        let inner = &d[at..];
        assert!(
            inner.len() <= max_frame,
            "segment {} bytes > {}",
            inner.len(),
            max_frame
        );
        let l = headers(inner).expect("segment parses");
        let ipl = l.ip.expect("segment is IP");
        let ip = &inner[l.l3..l.l3 + ipl.len];
        let l4 = &ip[ipl.hdr_len..];
        let pseudo: Vec<u8> = if ipl.version == IpVersion::V4 {
            assert_eq!(naive(&[&ip[..ipl.hdr_len]]), 0xffff, "IPv4 header checksum");
            [
                &ip[12..20],
                &[0, ipl.proto],
                &(l4.len() as u16).to_be_bytes()[..],
            ]
            .concat()
        } else {
            [
                &ip[8..40],
                &(l4.len() as u32).to_be_bytes()[..],
                &[0, 0, 0, ipl.proto],
            ]
            .concat()
        };
        assert_eq!(naive(&[&pseudo, l4]), 0xffff, "L4 checksum of segment {i}");
        let sp = SlicedPacket::from_ethernet(inner).unwrap();
        match sp.transport {
            Some(TransportSlice::Tcp(t)) if tcp => {
                got.push((t.sequence_number(), t.payload().to_vec(), t.fin(), t.psh()));
            }
            Some(TransportSlice::Udp(u)) if !tcp => {
                assert_eq!(usize::from(u.length()), l4.len());
                got.push((0, u.payload().to_vec(), false, false));
            }
            other => panic!("unexpected transport {other:?}"),
        }
    }
    assert_eq!(got.len(), segs.count);
    got
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn encap_then_decap_is_identity(vni in 0u32..=0xff_ffff, frame in proptest::collection::vec(any::<u8>(), 14..2000)) {
        let mut out = Vec::new();
        let segs = encap_segments(&frame, &Offload::default(), 4000, vni, &mut out).unwrap();
        prop_assert_eq!(segs.count, 1);
        let (v, at) = parse(&out).unwrap();
        prop_assert_eq!(v, vni);
        prop_assert_eq!(&out[at..], &frame[..]);
        let mut t = VtepTable::default();
        let src = "198.51.100.7".parse().unwrap();
        t.insert(vni, 3, vec![(src, 1)]);
        let d = t.classify(src, &out).unwrap();
        prop_assert_eq!(&out[d.inner], &frame[..]);
    }

    #[test]
    fn tso_segments_reassemble(v6 in any::<bool>(), tagged in any::<bool>(), len in 0usize..64000, mss in 500u16..1460, max_frame in 600usize..1600, fin in any::<bool>(), psh in any::<bool>(), cwr in any::<bool>(), seq in any::<u32>()) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let flags = 0x10 | if fin { 1 } else { 0 } | if psh { 8 } else { 0 } | if cwr { 0x80 } else { 0 };
        let f = tcp_frame(v6, tagged, &payload, flags, seq);
        let off = Offload { needs_csum: true, gso: if v6 { Gso::TcpV6 } else { Gso::TcpV4 }, gso_size: mss, ..Offload::default() };
        let mut out = Vec::new();
        let segs = encap_segments(&f, &off, max_frame, 42, &mut out).unwrap();
        let got = check_segments(&out, &segs, max_frame, 42, true);
        let mut joined = Vec::new();
        let mut expect_seq = seq;
        for (i, (s, p, sfin, spsh)) in got.iter().enumerate() {
            prop_assert_eq!(*s, expect_seq);
            expect_seq = expect_seq.wrapping_add(p.len() as u32);
            joined.extend_from_slice(p);
            let last = i + 1 == got.len();
            prop_assert_eq!(*sfin, fin && last);
            prop_assert_eq!(*spsh, psh && last);
        }
        prop_assert_eq!(joined, payload);
    }

    #[test]
    fn udp_gso_segments_reassemble(len in 1usize..60000, size in 200u16..1400) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
        let f = udp_frame(&payload);
        let off = Offload { needs_csum: true, gso: Gso::UdpL4, gso_size: size, ..Offload::default() };
        let mut out = Vec::new();
        let segs = encap_segments(&f, &off, 1464, 7, &mut out).unwrap();
        let got = check_segments(&out, &segs, 1464, 7, false);
        let joined: Vec<u8> = got.into_iter().flat_map(|g| g.1).collect();
        prop_assert_eq!(joined, payload);
    }

    #[test]
    fn kernel_super_packet_goes_to_a_container_and_back_out(v6 in any::<bool>(), len in 1500usize..64000) {
        // What a kernel vxlan peer sends: a whole super-packet, checksum partial.
        let payload: Vec<u8> = (0..len).map(|i| (i * 5) as u8).collect();
        let mut f = tcp_frame(v6, false, &payload, 0x18, 1000);
        // The partial form: the pseudo-header sum, not inverted, in the checksum field.
        let (l3, l4) = (14, if v6 { 54 } else { 34 });
        let l4_len = f.len() - l4;
        let pseudo = if v6 {
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            a.copy_from_slice(&f[l3 + 8..l3 + 24]);
            b.copy_from_slice(&f[l3 + 24..l3 + 40]);
            wire::checksum::pseudo_v6(a, b, 6, l4_len as u32)
        } else {
            let a = [f[l3 + 12], f[l3 + 13], f[l3 + 14], f[l3 + 15]];
            let b = [f[l3 + 16], f[l3 + 17], f[l3 + 18], f[l3 + 19]];
            wire::checksum::pseudo_v4(a, b, 6, l4_len as u16)
        };
        let partial = wire::checksum::fold(pseudo);
        f[l4 + 16..l4 + 18].copy_from_slice(&partial.to_be_bytes());
        let off = offload_for_inner(&mut f, 1450);
        prop_assert!(off.needs_csum);
        prop_assert_eq!(off.gso, if v6 { Gso::TcpV6 } else { Gso::TcpV4 });
        prop_assert_eq!(usize::from(off.gso_size), 1450 - if v6 { 40 } else { 20 } - 20);
        // Segmenting it with that description gives valid frames of at most 1464 bytes.
        let mut out = Vec::new();
        let segs = encap_segments(&f, &off, 1464, 9, &mut out).unwrap();
        let got = check_segments(&out, &segs, 1464, 9, true);
        let joined: Vec<u8> = got.into_iter().flat_map(|g| g.1).collect();
        prop_assert_eq!(joined, payload);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn everything_is_total(bytes in frames(), off in offloads(), hdr in any::<[u8; 10]>(), max_frame in prop_oneof![0usize..100, 0usize..3000, Just(usize::MAX)], mtu in prop_oneof![0usize..100, 0usize..3000, Just(usize::MAX)]) {
        let mut out = Vec::new();
        for off in [Some(off), Offload::from_virtio(&hdr).ok()].into_iter().flatten() {
            let _ = off.to_virtio();
            check_layout(encap_segments(&bytes, &off, max_frame, 1, &mut out), &out, max_frame);
        }
        let mut b = bytes.clone();
        let inner = offload_for_inner(&mut b, mtu);
        if inner.needs_csum {
            prop_assert!(usize::from(inner.csum_start) + usize::from(inner.csum_offset) + 2 <= b.len());
        }
        check_layout(encap_segments(&b, &inner, max_frame, 1, &mut out), &out, max_frame);
        let _ = headers(&bytes);
        let h = vxlan::flow::flow_hash(&bytes);
        let _ = vxlan::flow::source_port(h, hdr[0].into(), hdr[1].into());
        let _ = parse(&bytes);
        if let Some(v) = vxlan::header::Header::new_checked(&bytes[..]) {
            let _ = (v.vni(), v.flags(), v.reserved_clear(), v.payload());
        }
        let mut t = VtepTable::default();
        t.insert(1, 1, vec![("10.0.0.1".parse().unwrap(), 1)]);
        let _ = t.classify("10.0.0.1".parse().unwrap(), &bytes);
        let _ = wire::checksum::fold(wire::checksum::sum(&bytes, u64::MAX));
        let mut c = bytes.clone();
        let _ = wire::checksum::complete(&mut c, usize::from(off.csum_start), usize::from(off.csum_offset));
    }
}

#[test]
fn small_partial_frames_are_marked_complete_ones_are_not() {
    let mut f = tcp_frame(false, false, b"hello", 0x18, 1);
    // The builder wrote a complete checksum; we overwrote it with 0x1234 (neither).
    let off = offload_for_inner(&mut f, 1450);
    assert!(!off.needs_csum);
    // Now the partial form: the pseudo-header sum.
    let ip = &f[14..34];
    let l4_len = f.len() - 34;
    let pseudo = naive(&[&ip[12..20], &[0, 6], &(l4_len as u16).to_be_bytes()]);
    f[34 + 16..34 + 18].copy_from_slice(&pseudo.to_be_bytes());
    let off = offload_for_inner(&mut f, 1450);
    assert!(off.needs_csum);
    assert_eq!(
        (off.csum_start, off.csum_offset, off.gso),
        (34, 16, Gso::None)
    );
    // Completing it gives a valid checksum.
    let mut out = Vec::new();
    encap_segments(&f, &off, 1464, 1, &mut out).unwrap();
    let inner = &out[8..];
    assert_eq!(
        naive(&[
            &inner[26..34],
            &[0, 6],
            &(l4_len as u16).to_be_bytes(),
            &inner[34..]
        ]),
        0xffff
    );
}

#[test]
fn a_plain_frame_too_big_is_refused() {
    let f = vec![0u8; 1600];
    let mut out = Vec::new();
    assert!(encap_segments(&f, &Offload::default(), 1464, 1, &mut out).is_err());
}
