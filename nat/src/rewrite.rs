//! In-place rewriting of a packet's addresses and ports, with every checksum it
//! touches fixed up incrementally (RFC 1624): the IPv4 header checksum, the TCP or UDP
//! checksum over the pseudo-header and ports (a UDP checksum of 0, "none", stays 0),
//! the ICMP checksum over an echo identifier, and for an ICMP error the quoted IP
//! header, its quoted ports or identifier and checksum, and the error's own checksum
//! over all of those. No rewrite sums a payload; cost does not grow with packet size,
//! and a checksum that was wrong before stays exactly as wrong after.
//!
//! A TCP or UDP packet may carry a partial checksum instead ([`rewrite_with`]): the
//! virtio-net header's NEEDS_CSUM (the kernel's CHECKSUM_PARTIAL) from a veth or TAP,
//! where the field holds the folded pseudo-header sum and the device completes it over
//! header and payload on the way out. Then only address changes reach the field (ports
//! are summed later by the device, with whatever value they have by then), it is not
//! complemented, and a UDP 0 is a sum like any other. The IPv4 header checksum is
//! always full; ICMP is never partial.

use std::net::Ipv4Addr;

use crate::packet::{field, icmp_type, proto, Ipv4Packet};
use crate::tuple::{parse, Kind, ParseError, Tuple};
use wire::bytes::{be16, put16};
use wire::checksum::{update, update_partial, update_udp};

/// Rewrites the IP header and the first bytes of L4 of the packet at the start of `ip`
/// (possibly a quoted, truncated one) to carry `to`. Checksums of fields absent from a
/// truncated packet (TCP's, at offset 16) are left alone. `partial`: a TCP or UDP
/// checksum field holds the pseudo-header sum (see the module doc).
fn apply(ip: &mut [u8], to: &Tuple, partial: bool) -> Result<(), ParseError> {
    let v = Ipv4Packet::new_truncated(&*ip).map_err(|_| ParseError::Malformed)?;
    let (hl, p) = (v.header_len(), v.protocol());
    if p != to.proto.number() {
        return Err(ParseError::Unsupported);
    }
    let mut old = [0u8; 12];
    old[..8].copy_from_slice(
        ip.get(field::IP_ADDRS..field::IP_ADDRS + 8)
            .ok_or(ParseError::Malformed)?,
    );
    let mut new = [0u8; 12];
    new[..4].copy_from_slice(&to.src.addr.octets());
    new[4..8].copy_from_slice(&to.dst.addr.octets());
    let hc = be16(ip, field::IP_CHECKSUM).ok_or(ParseError::Malformed)?;
    let (head, l4) = ip.split_at_mut(hl);
    put16(head, field::IP_CHECKSUM, update(hc, &old[..8], &new[..8]));
    head[field::IP_ADDRS..field::IP_ADDRS + 8].copy_from_slice(&new[..8]);
    match p {
        proto::TCP | proto::UDP => {
            let ports = l4.get_mut(..4).ok_or(ParseError::Malformed)?;
            old[8..].copy_from_slice(ports);
            new[8..10].copy_from_slice(&to.src.port.to_be_bytes());
            new[10..].copy_from_slice(&to.dst.port.to_be_bytes());
            ports.copy_from_slice(&new[8..]);
            let at = if p == proto::TCP {
                field::TCP_CHECKSUM
            } else {
                field::UDP_CHECKSUM
            };
            if let Some(c) = be16(l4, at) {
                let c = if partial {
                    update_partial(c, &old[..8], &new[..8])
                } else if p == proto::TCP {
                    update(c, &old, &new)
                } else {
                    update_udp(c, &old, &new)
                };
                put16(l4, at, c);
            }
        }
        _ => {
            let ty = *l4.first().ok_or(ParseError::Malformed)?;
            let id = match ty {
                icmp_type::ECHO_REQUEST => to.src.port,
                icmp_type::ECHO_REPLY => to.dst.port,
                _ => return Err(ParseError::Unsupported),
            };
            let old_id = be16(l4, field::ICMP_ID).ok_or(ParseError::Malformed)?;
            let c = be16(l4, field::ICMP_CHECKSUM).ok_or(ParseError::Malformed)?;
            put16(
                l4,
                field::ICMP_CHECKSUM,
                update(c, &old_id.to_be_bytes(), &id.to_be_bytes()),
            );
            put16(l4, field::ICMP_ID, id);
        }
    }
    Ok(())
}

/// Rewrites a TCP, UDP or ICMP echo packet (not an ICMP error, not a fragment) so that
/// its tuple becomes `to` (same protocol; for echo, the identifier is `to`'s source port
/// in a request and its destination port in a reply). On error nothing was changed.
pub fn rewrite(pkt: &mut [u8], to: &Tuple) -> Result<(), ParseError> {
    rewrite_with(pkt, to, false)
}

/// [`rewrite`], with `partial` saying that a TCP or UDP packet's checksum field holds a
/// partial checksum (the pseudo-header sum a device completes later; see the module
/// doc). `partial` is ignored for ICMP, whose checksum is always full.
pub fn rewrite_with(pkt: &mut [u8], to: &Tuple, partial: bool) -> Result<(), ParseError> {
    let parsed = parse(pkt)?;
    if matches!(parsed.kind, Kind::Error { .. }) || parsed.tuple.proto != to.proto {
        return Err(ParseError::Unsupported);
    }
    apply(pkt, to, partial)
}

/// Rewrites an ICMP error: the outer addresses become `src` → `dst`, and the quoted
/// packet's tuple becomes `quoted` (its IP header, ports or echo identifier, and the
/// quoted UDP or ICMP checksum), with the error's checksum kept right. On error nothing
/// was changed.
pub fn rewrite_error(
    pkt: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    quoted: &Tuple,
) -> Result<(), ParseError> {
    let parsed = parse(pkt)?;
    let Kind::Error { quoted: q } = parsed.kind else {
        return Err(ParseError::Unsupported);
    };
    if q.proto != quoted.proto {
        return Err(ParseError::Unsupported);
    }
    let v = Ipv4Packet::new_checked(&*pkt).map_err(|_| ParseError::Malformed)?;
    let hl = v.header_len();
    let total = usize::from(v.total_len());
    let (head, icmp) = pkt
        .get_mut(..total)
        .ok_or(ParseError::Malformed)?
        .split_at_mut(hl);
    // The quoted packet: its IP header and the 8 bytes of L4 `parse` made sure are there.
    let qhl = Ipv4Packet::new_truncated(icmp.get(8..).ok_or(ParseError::Malformed)?)
        .map_err(|_| ParseError::Malformed)?
        .header_len();
    let region = icmp.get_mut(8..8 + qhl + 8).ok_or(ParseError::Malformed)?;
    let before = wire::checksum::fold(wire::checksum::sum(region, 0));
    // A quoted packet's checksum was complete when it was sent.
    apply(region, quoted, false)?;
    let after = wire::checksum::fold(wire::checksum::sum(region, 0));
    let c = be16(icmp, field::ICMP_CHECKSUM).ok_or(ParseError::Malformed)?;
    put16(
        icmp,
        field::ICMP_CHECKSUM,
        update(c, &before.to_be_bytes(), &after.to_be_bytes()),
    );
    // The outer header: ICMP has no pseudo-header, so only the IP checksum changes.
    let mut old = [0u8; 8];
    old.copy_from_slice(&head[field::IP_ADDRS..field::IP_ADDRS + 8]);
    let mut new = [0u8; 8];
    new[..4].copy_from_slice(&src.octets());
    new[4..].copy_from_slice(&dst.octets());
    let hc = be16(head, field::IP_CHECKSUM).ok_or(ParseError::Malformed)?;
    put16(head, field::IP_CHECKSUM, update(hc, &old, &new));
    head[field::IP_ADDRS..field::IP_ADDRS + 8].copy_from_slice(&new);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::tuple::{Endpoint, Proto};
    use proptest::prelude::*;

    const U: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

    #[test]
    fn tcp_snat_matches_a_packet_built_translated() {
        let mut p = tcp(A, 40000, B, 80, 0x02, b"hello");
        let to = Tuple::new(Proto::Tcp, Endpoint::new(U, 33000), Endpoint::new(B, 80));
        rewrite(&mut p, &to).unwrap();
        assert_eq!(p, tcp(U, 33000, B, 80, 0x02, b"hello"));
        checksums_ok(&p).unwrap();
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut p = udp_nocsum(A, 5000, B, 53, b"q");
        rewrite(
            &mut p,
            &Tuple::new(Proto::Udp, Endpoint::new(U, 5000), Endpoint::new(B, 53)),
        )
        .unwrap();
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(p, udp_nocsum(U, 5000, B, 53, b"q"));
    }

    #[test]
    fn echo_id_rewritten_by_direction() {
        let mut p = echo(A, B, true, 7);
        rewrite(
            &mut p,
            &Tuple::new(Proto::Icmp, Endpoint::new(U, 40000), Endpoint::new(B, 0)),
        )
        .unwrap();
        assert_eq!(p, echo(U, B, true, 40000));
        let mut r = echo(B, U, false, 40000);
        rewrite(
            &mut r,
            &Tuple::new(Proto::Icmp, Endpoint::new(B, 0), Endpoint::new(A, 7)),
        )
        .unwrap();
        assert_eq!(r, echo(B, A, false, 7));
    }

    #[test]
    fn icmp_error_translated_with_its_quote() {
        // A sent UDP A:5000 -> C:53, masqueraded to U:33000; C says port unreachable.
        let sent_inside = udp(A, 5000, C, 53, b"query!");
        let sent_outside = udp(U, 33000, C, 53, b"query!");
        let mut e = icmp_error(C, U, 3, 3, &sent_outside);
        checksums_ok(&e).unwrap();
        let q = Tuple::new(Proto::Udp, Endpoint::new(A, 5000), Endpoint::new(C, 53));
        rewrite_error(&mut e, C, A, &q).unwrap();
        assert_eq!(e, icmp_error(C, A, 3, 3, &sent_inside));
        checksums_ok(&e).unwrap();
        // Not an error: refused, unchanged.
        let mut u = udp(A, 1, B, 2, b"");
        let before = u.clone();
        assert!(rewrite_error(&mut u, C, A, &q).is_err());
        assert!(rewrite(&mut e.clone(), &q).is_err());
        assert_eq!(u, before);
    }

    #[test]
    fn icmp_error_about_echo_and_tcp() {
        let out = echo(U, B, true, 40000);
        let mut e = icmp_error(C, U, 11, 0, &out);
        let q = Tuple::new(Proto::Icmp, Endpoint::new(A, 7), Endpoint::new(B, 0));
        rewrite_error(&mut e, C, A, &q).unwrap();
        assert_eq!(e, icmp_error(C, A, 11, 0, &echo(A, B, true, 7)));
        let out = tcp(U, 33000, B, 443, 0x02, b"");
        let mut e = icmp_error(C, U, 3, 4, &out);
        let q = Tuple::new(Proto::Tcp, Endpoint::new(A, 40000), Endpoint::new(B, 443));
        rewrite_error(&mut e, C, A, &q).unwrap();
        checksums_ok(&e).unwrap();
        // The quoted TCP header is cut at 8 bytes: addresses and ports translated, the
        // quoted IP checksum right.
        let inside = tcp(A, 40000, B, 443, 0x02, b"");
        assert_eq!(&e[28..28 + 28], &inside[..28]);
    }

    fn tuple_of(p: &[u8]) -> Tuple {
        parse(p).unwrap().tuple
    }

    /// What a test packet is made of, so that it can be built again from scratch with
    /// other addresses and ports: the reference a rewrite must match byte for byte.
    #[derive(Debug, Clone)]
    struct Spec {
        /// 0 TCP, 1 UDP, 2 UDP without checksum, 3 echo, 4..=6 an ICMP error about
        /// UDP, TCP or echo.
        kind: u8,
        flags: u8,
        ip_opts: usize,
        payload: Vec<u8>,
    }

    impl Spec {
        /// The packet `s:sp -> d:dp`; an error goes `d -> s` and quotes that packet.
        fn build(&self, s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16) -> Vec<u8> {
            let (fl, pl) = (self.flags, &self.payload[..]);
            let request = fl & 1 == 0;
            let echo_id = if request { sp } else { dp };
            match self.kind {
                0 => tcp_opts(s, sp, d, dp, fl, &vec![1u8; self.ip_opts * 4], pl),
                1 => udp(s, sp, d, dp, pl),
                2 => udp_nocsum(s, sp, d, dp, pl),
                3 => echo(s, d, request, echo_id),
                4 => icmp_error(d, s, 3, 3, &udp(s, sp, d, dp, pl)),
                5 => icmp_error(d, s, 11, 0, &tcp(s, sp, d, dp, fl, pl)),
                _ => icmp_error(d, s, 3, 4, &echo(s, d, request, echo_id)),
            }
        }
    }

    fn arb_spec(kinds: std::ops::Range<u8>) -> impl Strategy<Value = Spec> {
        (
            kinds,
            any::<u8>(),
            0usize..3,
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(kind, flags, ip_opts, payload)| Spec {
                kind,
                flags,
                ip_opts,
                payload,
            })
    }

    /// Rewrites `p` to the tuple (or outer addresses and quoted tuple) of `want`.
    fn rewrite_like(p: &mut [u8], want: &[u8], partial: bool) -> Result<(), ParseError> {
        let w = parse(want)?;
        match w.kind {
            Kind::Error { quoted } => rewrite_error(p, w.tuple.src.addr, w.tuple.dst.addr, &quoted),
            _ => rewrite_with(p, &w.tuple, partial),
        }
    }

    #[test]
    fn partial_port_change_leaves_the_field() {
        for mut p in [
            tcp(A, 40000, B, 80, 0x10, b"data"),
            udp(A, 5000, B, 53, b"q"),
        ] {
            partial_form(&mut p);
            let t = tuple_of(&p);
            let before = p.clone();
            let to = Tuple::new(t.proto, Endpoint::new(A, 33000), Endpoint::new(B, 8080));
            rewrite_with(&mut p, &to, true).unwrap();
            // Only the ports moved; the device sums them later, so the field stays.
            let at = if t.proto == Proto::Tcp { 36 } else { 26 };
            assert_eq!(p[at..at + 2], before[at..at + 2]);
            assert_eq!(p[..20], before[..20]);
            complete(&mut p);
            checksums_ok(&p).unwrap();
            // Full mode on the same change does touch it.
            let mut full = before.clone();
            complete(&mut full);
            rewrite(&mut full, &to).unwrap();
            assert_eq!(full, p);
        }
    }

    #[test]
    fn partial_udp_zero_field_is_a_sum_not_none() {
        // 245.227.0.0 makes this datagram's pseudo-header sum 0xffff, which a field may
        // carry as 0 (the same one's-complement value): in partial mode that 0 is a
        // sum to update, not "no checksum".
        let d = Ipv4Addr::new(245, 227, 0, 0);
        let mut p = udp(A, 5000, d, 53, b"q");
        partial_form(&mut p);
        assert_eq!(&p[26..28], &[0xff, 0xff]);
        p[26..28].copy_from_slice(&[0, 0]);
        let to = Tuple::new(Proto::Udp, Endpoint::new(U, 5000), Endpoint::new(d, 53));
        rewrite_with(&mut p, &to, true).unwrap();
        let mut want = udp(U, 5000, d, 53, b"q");
        partial_form(&mut want);
        assert_eq!(p, want);
        complete(&mut p);
        assert_eq!(p, udp(U, 5000, d, 53, b"q"));
    }

    #[test]
    fn partial_flag_is_ignored_for_icmp() {
        let to = Tuple::new(Proto::Icmp, Endpoint::new(U, 40000), Endpoint::new(B, 0));
        let mut p = echo(A, B, true, 7);
        rewrite_with(&mut p, &to, true).unwrap();
        assert_eq!(p, echo(U, B, true, 40000));
    }

    proptest! {
        #[test]
        fn rewrite_then_back_is_identity_and_checksums_stay_right(
            p in arb_packet(), s in arb_addr(), d in arb_addr(), sp in any::<u16>(), dp in any::<u16>()
        ) {
            let orig = p.clone();
            let mut p = p;
            let Ok(parsed) = parse(&p) else { return Ok(()) };
            match parsed.kind {
                Kind::Error { quoted } => {
                    let outer = parsed.tuple;
                    let to = Tuple::new(quoted.proto, Endpoint::new(s, sp), Endpoint::new(d, dp));
                    rewrite_error(&mut p, d, s, &to).unwrap();
                    checksums_ok(&p).map_err(TestCaseError::fail)?;
                    rewrite_error(&mut p, outer.src.addr, outer.dst.addr, &quoted).unwrap();
                }
                _ => {
                    let from = tuple_of(&p);
                    let mut to = Tuple::new(from.proto, Endpoint::new(s, sp), Endpoint::new(d, dp));
                    if let Kind::Echo { request } = parsed.kind {
                        // The other port of an echo tuple is always 0.
                        if request { to.dst.port = 0 } else { to.src.port = 0 }
                    }
                    rewrite(&mut p, &to).unwrap();
                    checksums_ok(&p).map_err(TestCaseError::fail)?;
                    prop_assert_eq!(tuple_of(&p), to);
                    rewrite(&mut p, &from).unwrap();
                }
            }
            prop_assert_eq!(p, orig);
        }

        /// The rewritten packet is byte for byte the packet built from scratch with
        /// the new tuple: every checksum equals a full recomputation, for TCP (with IP
        /// options), UDP with and without checksum, echo, and ICMP errors about each.
        #[test]
        fn rewrite_equals_the_packet_built_translated(
            spec in arb_spec(0..7),
            a in (arb_addr(), any::<u16>(), arb_addr(), any::<u16>()),
            b in (arb_addr(), any::<u16>(), arb_addr(), any::<u16>()),
        ) {
            let mut p = spec.build(a.0, a.1, a.2, a.3);
            let want = spec.build(b.0, b.1, b.2, b.3);
            rewrite_like(&mut p, &want, false).unwrap();
            checksums_ok(&p).map_err(TestCaseError::fail)?;
            prop_assert_eq!(p, want);
        }

        /// Partial mode: a TCP or UDP packet in partial form (the field holds the
        /// pseudo-header sum), rewritten, then completed as a device would, is the
        /// packet built from scratch with the new tuple, and what full mode gives.
        #[test]
        fn partial_rewrite_then_device_completion_equals_full(
            spec in arb_spec(0..2),
            a in (arb_addr(), any::<u16>(), arb_addr(), any::<u16>()),
            b in (arb_addr(), any::<u16>(), arb_addr(), any::<u16>()),
        ) {
            let full_in = spec.build(a.0, a.1, a.2, a.3);
            let want = spec.build(b.0, b.1, b.2, b.3);
            let mut p = full_in.clone();
            partial_form(&mut p);
            rewrite_like(&mut p, &want, true).unwrap();
            // Still a partial form: the pseudo-header sum of the new addresses.
            let mut want_partial = want.clone();
            partial_form(&mut want_partial);
            prop_assert_eq!(&p, &want_partial);
            complete(&mut p);
            prop_assert_eq!(&p, &want);
            let mut full = full_in;
            rewrite_like(&mut full, &want, false).unwrap();
            prop_assert_eq!(full, p);
        }

        #[test]
        fn rewrite_is_total(mut bytes in proptest::collection::vec(any::<u8>(), 0..100), t in (arb_addr(), any::<u16>(), arb_addr(), any::<u16>())) {
            for proto in [Proto::Tcp, Proto::Udp, Proto::Icmp] {
                let to = Tuple::new(proto, Endpoint::new(t.0, t.1), Endpoint::new(t.2, t.3));
                let _ = rewrite(&mut bytes, &to);
                let _ = rewrite_with(&mut bytes, &to, true);
                let _ = rewrite_error(&mut bytes, t.0, t.2, &to);
            }
        }

        #[test]
        fn rewrite_is_total_near_valid(mut p in arb_packet(), i in any::<usize>(), v in any::<u8>(), t in (arb_addr(), any::<u16>())) {
            let i = i % p.len();
            p[i] = v;
            for proto in [Proto::Tcp, Proto::Udp, Proto::Icmp] {
                let to = Tuple::new(proto, Endpoint::new(t.0, t.1), Endpoint::new(t.0, t.1));
                let _ = rewrite(&mut p, &to);
                let _ = rewrite_with(&mut p, &to, true);
                let _ = rewrite_error(&mut p, t.0, t.0, &to);
            }
        }
    }
}
