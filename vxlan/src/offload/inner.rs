//! The offload description of a frame that arrived over VXLAN, or over a port that
//! carries no virtio-net header (AF_XDP), for the port it goes out of (a veth or TAP
//! with a virtio-net header).
//!
//! A Linux vxlan peer whose inner traffic is TSO'd hands its underlay whole TCP
//! super-packets (up to 64 KB): the kernel delivers such a GSO skb to a plain UDP
//! socket unsegmented, with the inner TCP checksum still partial (the field holds the
//! pseudo-header sum over the full TCP length, folded, not inverted). Small frames from
//! a local peer may be partial too. Instead of a pass over the payload, the switch
//! describes them to the receiving port as the sender did: GSO plus `NEEDS_CSUM` for
//! super-packets, `NEEDS_CSUM` alone for small partial frames. The port's kernel (or
//! [`super::encap_segments`], if the frame goes back into a tunnel) does the rest.

use super::layers::{IpVersion, Transport};
use super::{Gso, Offload, UDP_MAX_SEGMENTS};
use wire::bytes::{be16, put16};
use wire::checksum::{fold, sum};

/// How to hand an inner frame of a decapsulated datagram to a port, given the inner
/// MTU (largest IP packet) of the path it came over. Never fails: a frame it cannot
/// read gets [`Offload::NONE`] and passes as it is.
///
/// - TCP or UDP packet longer than `inner_mtu`: a GSO frame (`TcpV4`/`TcpV6`/`UdpL4`)
///   whose segments are `inner_mtu` bytes of IP (`gso_size = inner_mtu − IP header −
///   TCP/UDP header`), `hdr_len` = Ethernet to end of TCP/UDP, `needs_csum` with
///   `csum_start` at TCP/UDP and `csum_offset` 16 or 6. The checksum field is rewritten
///   to the pseudo-header sum (whatever it held), as the receiving kernel expects.
/// - A shorter TCP/UDP packet whose checksum field equals its pseudo-header sum:
///   `needs_csum` with those offsets, no GSO, frame untouched. Should a complete
///   checksum happen to equal the pseudo-header sum, completing it again rewrites the
///   same value, so the test is safe either way.
/// - Anything else (including UDP over IPv4 without a checksum, and a UDP super-packet
///   whose UDP length disagrees with its IP length): [`Offload::NONE`].
pub fn offload_for_inner(frame: &mut [u8], inner_mtu: usize) -> Offload {
    describe(frame, inner_mtu).unwrap_or(Offload::NONE)
}

fn describe(frame: &mut [u8], inner_mtu: usize) -> Option<Offload> {
    let t = Transport::of(frame)?;
    let ip_len = t.end.checked_sub(t.l3)?;
    let l4_len = ip_len.checked_sub(t.ip_hdr_len)?;
    let co = t.csum_offset();
    let field_at = t.l4 + co;
    let partial = fold(t.pseudo(frame, l4_len)?);
    let mark = csum_mark(&t)?;
    // The receiving kernel adjusts the checksum of each UDP segment from the super-
    // packet's UDP length field: it must agree with the IP length.
    let lengths_agree = t.tcp || be16(frame, t.l4 + 4).map(usize::from) == Some(l4_len);
    if ip_len > inner_mtu && lengths_agree && intact(frame, &t, l4_len, partial)? {
        if let Some(gso_size) = inner_mtu
            .checked_sub(t.ip_hdr_len + t.l4_hdr_len)
            // 0xffff is GSO_BY_FRAGS to the kernel, which refuses it from virtio.
            .filter(|&g| g > 0 && g < usize::from(u16::MAX))
            .and_then(|g| u16::try_from(g).ok())
            // The kernel refuses a UDP super-packet of more than UDP_MAX_SEGMENTS.
            .filter(|&g| {
                t.tcp || l4_len.saturating_sub(t.l4_hdr_len) <= usize::from(g) * UDP_MAX_SEGMENTS
            })
        {
            // Whatever the field held (partial or complete), segmentation needs the
            // pseudo-header sum over the whole length there.
            put16(frame, field_at, partial)?;
            let cwr = t.tcp && frame.get(t.l4 + 13).is_some_and(|f| f & 0x80 != 0);
            return Some(Offload {
                gso: match (t.tcp, t.version) {
                    (true, IpVersion::V4) => Gso::TcpV4,
                    (true, IpVersion::V6) => Gso::TcpV6,
                    (false, _) => Gso::UdpL4,
                },
                ecn: cwr,
                hdr_len: u16::try_from(t.hdrs_len()).ok()?,
                gso_size,
                ..mark
            });
        }
        // An MTU too small for even the headers: no GSO can help; fall through.
    }
    partial_mark(frame, &t, partial)
}

/// The offload description of a frame read from a port without a virtio-net header
/// (AF_XDP on a veth sees the far end's frames before anything completes their
/// checksums): `needs_csum` at its TCP/UDP checksum if that field holds the
/// pseudo-header sum, as a sender with checksum offload leaves it; [`Offload::NONE`]
/// otherwise. Reads only; total on any input. Super-frames are not recognised (such a
/// port never carries one).
pub fn partial_checksum(frame: &[u8]) -> Offload {
    let mark = || {
        let t = Transport::of(frame)?;
        let l4_len = t.end.checked_sub(t.l3)?.checked_sub(t.ip_hdr_len)?;
        partial_mark(frame, &t, fold(t.pseudo(frame, l4_len)?))
    };
    mark().unwrap_or(Offload::NONE)
}

/// `needs_csum` at `t`'s checksum if its field holds the pseudo-header sum `partial`
/// and nothing follows the IP packet: a sender that leaves a checksum partial never
/// pads, and completing a complete checksum that happened to match would then sum the
/// padding too and write a wrong one.
fn partial_mark(frame: &[u8], t: &Transport, partial: u16) -> Option<Offload> {
    let field = be16(frame, t.l4 + t.csum_offset())?;
    if t.end == frame.len() && holds_partial(field, partial, t.tcp) {
        csum_mark(t)
    } else {
        None
    }
}

/// `needs_csum` at `t`'s checksum, nothing else.
fn csum_mark(t: &Transport) -> Option<Offload> {
    Some(Offload {
        needs_csum: true,
        csum_start: u16::try_from(t.l4).ok()?,
        csum_offset: u16::try_from(t.csum_offset()).ok()?,
        ..Offload::NONE
    })
}

/// True if a checksum `field` holds the pseudo-header sum `partial`.
/// True if a super-packet's checksum may be left to the receiving kernel: the field
/// holds the partial sum (the sender left it to "hardware", nothing to check), UDP
/// says "no checksum", or the complete checksum verifies. Marking the frame to be
/// completed throws the old checksum away, so a corrupt one must not be marked: the
/// container's kernel then drops it (a kernel peer sends the outer UDP checksum as 0,
/// so the inner one is all there is).
fn intact(frame: &[u8], t: &Transport, l4_len: usize, partial: u16) -> Option<bool> {
    let field = be16(frame, t.l4 + t.csum_offset())?;
    if holds_partial(field, partial, t.tcp) || (!t.tcp && field == 0) {
        return Some(true);
    }
    let seg = frame.get(t.l4..t.end)?;
    Some(fold(sum(seg, t.pseudo(frame, l4_len)?)) == 0xffff)
}

fn holds_partial(field: u16, partial: u16, tcp: bool) -> bool {
    if tcp {
        // 0x0000 and 0xffff are the same number in one's complement.
        field == partial || (field == 0 && partial == 0xffff) || (field == 0xffff && partial == 0)
    } else {
        // UDP: 0 means "no checksum" (IPv4); a partial sum folds to non-zero.
        field == partial && field != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::encap_segments;
    use crate::testutil::{frame, pattern, verify, Csum, Spec};
    use proptest::prelude::*;
    use wire::checksum::complete;

    #[test]
    fn super_packets_become_gso_frames() {
        let cases = [
            (Spec::tcp4(30_000), Gso::TcpV4, 34, 16, 1450 - 40),
            (Spec::tcp6(30_000), Gso::TcpV6, 54, 16, 1450 - 60),
            (Spec::udp4(30_000), Gso::UdpL4, 34, 6, 1450 - 28),
            (Spec::udp6(30_000), Gso::UdpL4, 54, 6, 1450 - 48),
        ];
        for (spec, gso, start, offset, size) in cases {
            for csum in [Csum::Partial, Csum::Complete, Csum::Value(0)] {
                let mut f = frame(&Spec {
                    csum,
                    ..spec.clone()
                });
                if csum == Csum::Value(0) && offset == 16 {
                    // A TCP checksum that is neither partial nor right: not marked, and
                    // left for the container's kernel to drop.
                    let before = f.clone();
                    assert_eq!(offload_for_inner(&mut f, 1450), Offload::NONE);
                    assert_eq!(f, before);
                    continue;
                }
                let off = offload_for_inner(&mut f, 1450);
                assert_eq!(
                    (off.gso, off.needs_csum, off.csum_start, off.csum_offset),
                    (gso, true, start, offset)
                );
                assert_eq!(usize::from(off.gso_size), size);
                assert_eq!(
                    usize::from(off.hdr_len),
                    start as usize + if offset == 16 { 20 } else { 8 }
                );
                // The field now holds the pseudo-header sum, like a TSO sender's.
                let partial = frame(&Spec {
                    csum: Csum::Partial,
                    ..spec.clone()
                });
                assert_eq!(f, partial);
            }
        }
    }

    /// Completing the checksum `off` describes leaves frame `f` valid.
    fn assert_completes(mut f: Vec<u8>, off: &Offload) {
        let (start, offset) = (usize::from(off.csum_start), usize::from(off.csum_offset));
        complete(&mut f, start, offset).unwrap();
        verify(&f).unwrap();
    }

    #[test]
    fn small_partial_frames_are_marked_complete_ones_are_not() {
        for spec in [
            Spec::tcp4(100),
            Spec::tcp6(100),
            Spec::udp4(100),
            Spec::udp6(100),
        ] {
            let mut f = frame(&spec);
            assert_eq!(offload_for_inner(&mut f, 1450), Offload::NONE);
            let mut f = frame(&Spec {
                csum: Csum::Partial,
                ..spec.clone()
            });
            let before = f.clone();
            let off = offload_for_inner(&mut f, 1450);
            assert!(off.needs_csum && off.gso == Gso::None);
            assert_eq!(f, before, "a small frame is not rewritten");
            assert_completes(f, &off);
        }
        // UDP without a checksum stays without one.
        let mut f = frame(&Spec {
            csum: Csum::Value(0),
            ..Spec::udp4(100)
        });
        assert_eq!(offload_for_inner(&mut f, 1450), Offload::NONE);
    }

    #[test]
    fn partial_checksum_marks_what_offload_for_inner_marks_without_writing() {
        for spec in [
            Spec::tcp4(100),
            Spec::tcp6(1400),
            Spec::udp4(0),
            Spec::udp6(100),
            Spec {
                tags: 1,
                ip_options: 8,
                tcp_options: 12,
                ..Spec::tcp4(30)
            },
        ] {
            for csum in [Csum::Partial, Csum::Complete, Csum::Value(0)] {
                let f = frame(&Spec {
                    csum,
                    ..spec.clone()
                });
                let off = partial_checksum(&f);
                assert_eq!(off, offload_for_inner(&mut f.clone(), usize::MAX));
                assert_eq!(off.needs_csum, csum == Csum::Partial, "{spec:?} {csum:?}");
                if off.needs_csum {
                    assert_completes(f, &off);
                }
            }
        }
        // An IPv4 fragment's checksum field is not where a TCP/UDP header would be.
        let mut f = frame(&Spec {
            csum: Csum::Partial,
            ..Spec::udp4(100)
        });
        f[14 + 6] |= 0x20;
        assert_eq!(partial_checksum(&f), Offload::NONE);
        // Two tags (802.1ad, then 802.1Q) in front: the offsets count them.
        let f = frame(&Spec {
            csum: Csum::Partial,
            tags: 2,
            ..Spec::udp6(10)
        });
        let off = partial_checksum(&f);
        assert_eq!(
            (off.needs_csum, off.csum_start, off.csum_offset),
            (true, 14 + 8 + 40, 6)
        );
        // Padding after the IP packet: never partial (a sender that pads completes).
        let mut f = frame(&Spec {
            csum: Csum::Partial,
            ..Spec::tcp4(0)
        });
        f.extend_from_slice(&[0xa5; 6]);
        assert_eq!(partial_checksum(&f), Offload::NONE);
        assert_eq!(offload_for_inner(&mut f, 1450), Offload::NONE);
    }

    #[test]
    fn zero_forms() {
        assert!(holds_partial(0x1234, 0x1234, true));
        assert!(holds_partial(0, 0xffff, true));
        assert!(holds_partial(0xffff, 0, true));
        assert!(!holds_partial(0x1234, 0x1235, true));
        assert!(holds_partial(0xffff, 0xffff, false));
        assert!(!holds_partial(0, 0xffff, false));
        assert!(!holds_partial(0, 0, false));
    }

    #[test]
    fn garbage_and_non_ip_get_nothing() {
        for mut f in [
            vec![],
            vec![0u8; 13],
            vec![0xff; 100],
            frame(&Spec::tcp4(10))[..40].to_vec(),
        ] {
            assert_eq!(offload_for_inner(&mut f, 1450), Offload::NONE);
        }
        // An MTU smaller than the headers: no GSO, but a partial frame is still marked.
        let mut f = frame(&Spec {
            csum: Csum::Partial,
            ..Spec::tcp4(3000)
        });
        let off = offload_for_inner(&mut f, 30);
        assert_eq!((off.gso, off.needs_csum), (Gso::None, true));
    }

    #[test]
    fn udp_super_packet_with_a_wrong_length_is_not_gso() {
        let mut f = frame(&Spec::udp4(5000));
        f[34 + 4..34 + 6].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(offload_for_inner(&mut f, 1450), Offload::NONE);
    }

    #[test]
    fn udp_super_packet_of_too_many_segments_is_not_gso() {
        // 64 segments of 600 - 28 bytes hold 36608 bytes of payload.
        let mut f = frame(&Spec::udp4(36_608));
        assert_eq!(offload_for_inner(&mut f, 600).gso, Gso::UdpL4);
        let mut f = frame(&Spec::udp4(36_609));
        assert_eq!(offload_for_inner(&mut f, 600), Offload::NONE);
    }

    #[test]
    fn cwr_sets_ecn() {
        let mut f = frame(&Spec {
            flags: 0x90,
            ..Spec::tcp4(5000)
        });
        assert!(offload_for_inner(&mut f, 1450).ecn);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The kernel peer → switch → another tunnel path: a partial super-packet,
        /// described by offload_for_inner, segmented by encap_segments.
        #[test]
        fn kernel_super_packet_segments_cleanly(v6 in any::<bool>(), tcp in any::<bool>(), tagged in any::<bool>(), len in 0usize..64000, mtu in 600usize..9000, complete_csum in any::<bool>()) {
            // The kernel takes no UDP super-packet of more than 64 segments (and none
            // comes whole from a kernel peer: the kernel cuts UDP GSO itself).
            prop_assume!(tcp || len <= (mtu - 48) * UDP_MAX_SEGMENTS);
            let spec = Spec {
                v6,
                tcp,
                tags: u8::from(tagged),
                flags: 0x18,
                csum: if complete_csum { Csum::Complete } else { Csum::Partial },
                ..Spec::tcp4(len)
            };
            let mut f = frame(&spec);
            let off = offload_for_inner(&mut f, mtu);
            let max_frame = mtu + 14 + 4 * usize::from(tagged);
            let mut out = Vec::new();
            let s = encap_segments(&f, &off, max_frame, 3, &mut out).unwrap();
            let mut joined = Vec::new();
            for d in out.chunks(s.stride) {
                let inner = &d[8..];
                prop_assert!(inner.len() <= max_frame);
                let seg = verify(inner).map_err(TestCaseError::fail)?;
                joined.extend_from_slice(&seg.payload);
            }
            prop_assert_eq!(joined, pattern(len));
        }

        #[test]
        fn total_on_arbitrary_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..300), mtu in any::<usize>(), et in prop_oneof![Just(0x0800u16), Just(0x86dd), any::<u16>()]) {
            if bytes.len() >= 15 {
                bytes[12..14].copy_from_slice(&et.to_be_bytes());
                bytes[14] = if et == 0x86dd { 0x60 } else { 0x45 };
            }
            let read_only = partial_checksum(&bytes);
            if read_only.needs_csum {
                prop_assert!(usize::from(read_only.csum_start) + usize::from(read_only.csum_offset) + 2 <= bytes.len());
            }
            let off = offload_for_inner(&mut bytes, mtu);
            if off.needs_csum {
                prop_assert!(usize::from(off.csum_start) + usize::from(off.csum_offset) + 2 <= bytes.len());
            }
        }
    }
}
