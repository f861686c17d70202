//! Fuzz targets `vxlan_decap`, `vxlan_encap` and `vxlan_gro`.

use super::*;

/// Underlay MTUs the VXLAN harnesses pick from.
pub(super) const UNDERLAY_MTUS: [u32; 8] = [1500, 1450, 9000, 576, 1280, 100, 68, 65535];

pub(super) fn underlay(sel: u8) -> (usize, usize) {
    let mtu = UNDERLAY_MTUS[usize::from(sel) % UNDERLAY_MTUS.len()];
    // As `tunnel::RemoteRt` derives them: largest inner frame, inner MTU.
    (
        mtu.saturating_sub(crate::tunnel::OVERHEAD) as usize,
        mtu.saturating_sub(crate::tunnel::INNER_MTU_OVERHEAD) as usize,
    )
}

/// Senders the VXLAN decap harness picks from: the remotes of the lab's tunnels, one of
/// them in its IPv4-mapped IPv6 form, and a stranger.
pub(super) fn vtep_senders() -> [IpAddr; 5] {
    [
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
        IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped()),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)),
    ]
}

pub(super) fn vtep_table() -> vxlan::decap::VtepTable {
    let mut t = vxlan::decap::VtepTable::new();
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    t.insert(100, 7, vec![(v4(10, 0, 0, 2), 1), (v4(10, 0, 0, 3), 2)]);
    t.insert(
        200,
        8,
        vec![(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
            1,
        )],
    );
    t.insert(0xff_ffff, 9, vec![(v4(10, 0, 0, 2), 3)]);
    // Above the 24-bit VNI space: stored, never matched.
    t.insert(0x100_0064, 10, vec![(v4(10, 0, 0, 2), 1)]);
    t
}

/// What [`vtep_table`] must say about a datagram from `src`, worked out independently.
pub(super) fn vtep_expect(
    src: IpAddr,
    d: &[u8],
) -> Result<(u32, u32, u16), vxlan::decap::DropReason> {
    use vxlan::decap::DropReason as R;
    if d.len() < 8 + 14 {
        return Err(R::Truncated);
    }
    if d[0] & 0x08 == 0 {
        return Err(R::BadFlags);
    }
    let vni = u32::from_be_bytes([0, d[4], d[5], d[6]]);
    let src = match src {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let a = |x| IpAddr::V4(Ipv4Addr::new(10, 0, 0, x));
    let (port, remotes): (u32, Vec<(IpAddr, u16)>) = match vni {
        100 => (7, vec![(a(2), 1), (a(3), 2)]),
        200 => (
            8,
            vec![(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
                1,
            )],
        ),
        0xff_ffff => (9, vec![(a(2), 3)]),
        _ => return Err(R::UnknownVni),
    };
    let slot = remotes
        .iter()
        .find(|(r, _)| *r == src)
        .map(|(_, s)| *s)
        .ok_or(R::UnknownRemote)?;
    Ok((vni, port, slot))
}

/// Fuzz target `vxlan_decap`: a VXLAN datagram (the UDP payload: header and inner
/// frame) through `VtepTable::classify` and, when it belongs to a tunnel,
/// `offload_for_inner`, as the worker's VTEP receive path does. Input: a sender byte
/// (which remote, see `vtep_senders`), an underlay-MTU byte, the datagram. Checks: the
/// table's answer against one worked out independently; the offload description
/// survives a trip through the virtio-net header; a frame not described as GSO is left
/// untouched, a GSO one changed in its checksum field alone; a partial checksum, once
/// completed, is the right one; a GSO super-frame can be segmented again for the
/// underlay (`encap_segments`), into datagrams that fit, with right checksums.
pub fn vxlan_decap(data: &[u8]) {
    let [s, m, ref d @ ..] = *data else {
        return;
    };
    let src = vtep_senders()[usize::from(s) % 5];
    let (max_frame, inner_mtu) = underlay(m);
    let table = vtep_table();
    let got = table.classify(src, d);
    let want = vtep_expect(src, d);
    match (&got, want) {
        (Ok(x), Ok((vni, port, slot))) => {
            assert_eq!(
                (x.vni, x.port, x.remote),
                (vni, port, slot),
                "vxlan_decap: classify"
            );
            assert_eq!(x.inner, 8..d.len(), "vxlan_decap: inner frame range");
        }
        (Err(e), Err(w)) => assert_eq!(*e, w, "vxlan_decap: drop reason"),
        (g, w) => panic!("vxlan_decap: classify says {g:?}, expected {w:?}"),
    }
    let Ok(x) = got else { return };
    let mut inner = d[x.inner.clone()].to_vec();
    let before = inner.clone();
    let off = vxlan::offload::offload_for_inner(&mut inner, inner_mtu);
    assert_eq!(
        vxlan::offload::Offload::from_virtio(&off.to_virtio()),
        Ok(off),
        "vxlan_decap: offload does not survive the virtio-net header"
    );
    let field = usize::from(off.csum_start) + usize::from(off.csum_offset);
    if off.gso == vxlan::offload::Gso::None {
        assert_eq!(
            inner, before,
            "vxlan_decap: a frame without GSO was changed"
        );
    } else {
        let mut allowed = before.clone();
        if let Some(s) = allowed.get_mut(field..field + 2) {
            s.copy_from_slice(&inner[field..field + 2]);
        }
        assert_eq!(
            inner, allowed,
            "vxlan_decap: a GSO frame changed beyond its checksum field"
        );
        assert!(
            off.needs_csum && off.gso_size > 0,
            "vxlan_decap: GSO without partial checksum"
        );
        assert!(
            usize::from(off.hdr_len) <= inner.len(),
            "vxlan_decap: hdr_len past the frame"
        );
    }
    if off.needs_csum {
        assert!(
            field + 2 <= inner.len(),
            "vxlan_decap: checksum field past the frame"
        );
        let mut done = inner.clone();
        let r = wire::checksum::complete(
            &mut done,
            usize::from(off.csum_start),
            usize::from(off.csum_offset),
        );
        assert!(
            r.is_ok(),
            "vxlan_decap: the partial checksum cannot be completed"
        );
        // Completion sums to the end of the frame, as the device does; bytes after the
        // IP packet (padding) are trimmed by the IP receiver before it looks, so the
        // result is only checked for a frame the IP packet fills.
        let fills = vxlan::offload::headers(&done)
            .and_then(|l| Some(l.l3 + l.ip?.len))
            .is_some_and(|end| end == done.len());
        if let Some(f) = frame_l4_field(&done).filter(|f| fills && f.at == field) {
            assert!(f.valid(&done), "vxlan_decap: completed checksum is wrong");
        }
    }
    if off.gso != vxlan::offload::Gso::None {
        let mut out = Vec::new();
        let r = vxlan::offload::encap_segments(&inner, &off, max_frame, x.vni, &mut out);
        match r {
            Ok(segs) => check_segments(&inner, &off, max_frame, x.vni, &out, segs, "vxlan_decap"),
            // VLAN tags count against the frame size but not against the inner MTU the
            // segment size comes from: on a tiny MTU the headers alone may not fit.
            Err(vxlan::offload::OffloadError::TooBig) if usize::from(off.hdr_len) >= max_frame => {}
            Err(e) => panic!("vxlan_decap: a GSO frame made from a datagram cannot be segmented again: {e:?} ({off:?})"),
        }
    }
}

/// The checks on datagrams `encap_segments` laid out for `frame` described by `off`:
/// the layout `segs` claims, each a VXLAN header for `vni` and an inner frame of at most
/// `max_frame` bytes; `chunks` covers them in whole datagrams; a single datagram is the
/// frame (its partial checksum completed); segments carry the payload in order, with
/// right IPv4 header and TCP/UDP checksums and consecutive TCP sequence numbers.
pub(super) fn check_segments(
    frame: &[u8],
    off: &vxlan::offload::Offload,
    max_frame: usize,
    vni: u32,
    out: &[u8],
    segs: vxlan::offload::Segments,
    what: &str,
) {
    use vxlan::offload::Gso;
    assert_eq!(out.len(), segs.total, "{what}: total length");
    assert!(
        segs.count >= 1 && segs.stride > 8,
        "{what}: layout {segs:?}"
    );
    assert!(
        (segs.count - 1) * segs.stride < segs.total && segs.total <= segs.count * segs.stride,
        "{what}: {segs:?} does not add up"
    );
    let dgrams: Vec<&[u8]> = out.chunks(segs.stride).collect();
    assert_eq!(dgrams.len(), segs.count, "{what}: datagram count");
    for d in &dgrams {
        assert_eq!(d[..8], vxlan::header::encode(vni), "{what}: VXLAN header");
        assert!(
            d.len() - 8 <= max_frame,
            "{what}: inner frame of {} > {max_frame}",
            d.len() - 8
        );
    }
    let mut at = 0;
    for c in segs.chunks(vxlan::offload::MAX_UDP_PAYLOAD) {
        assert_eq!(c.start, at, "{what}: chunks not contiguous");
        assert!(
            c.len() <= vxlan::offload::MAX_UDP_PAYLOAD.max(segs.stride),
            "{what}: chunk of {} bytes",
            c.len()
        );
        assert!(c.len().div_ceil(segs.stride) <= vxlan::offload::UDP_MAX_SEGMENTS);
        assert!(
            c.end == segs.total || c.len() % segs.stride == 0,
            "{what}: chunk cuts a datagram"
        );
        at = c.end;
    }
    assert_eq!(at, segs.total, "{what}: chunks do not cover the datagrams");
    if off.gso == Gso::None {
        assert_eq!(
            segs.count, 1,
            "{what}: a plain frame became several datagrams"
        );
        let inner = &out[8..];
        assert_eq!(
            inner.len(),
            frame.len(),
            "{what}: a plain frame changed length"
        );
        let field = usize::from(off.csum_start) + usize::from(off.csum_offset);
        for (i, (a, b)) in frame.iter().zip(inner).enumerate() {
            if a != b {
                assert!(
                    off.needs_csum && (field..field + 2).contains(&i),
                    "{what}: byte {i} changed"
                );
            }
        }
        return;
    }
    // Segments of a super-frame: same headers, the payload cut in order.
    let Some(l) = vxlan::offload::headers(frame) else {
        panic!("{what}: segmented a frame without headers");
    };
    let (Some(ip), true) = (l.ip, frame.len() >= l.l3) else {
        panic!("{what}: segmented a frame without IP");
    };
    let Some(l4) = ip.l4 else {
        panic!("{what}: segmented a frame without TCP/UDP");
    };
    let hdrs = l4.offset + l4.hdr_len;
    let payload = &frame[hdrs..l.l3 + ip.len];
    let mut joined = Vec::with_capacity(payload.len());
    let tcp = ip.proto == 6;
    let mut seq = be32(frame, l4.offset + 4);
    for d in &dgrams {
        let s = &d[8..];
        let Some(sl) = vxlan::offload::headers(s) else {
            panic!("{what}: a segment has no headers");
        };
        let (Some(sip), Some(sl4)) = (sl.ip, sl.ip.and_then(|i| i.l4)) else {
            panic!("{what}: a segment lost its IP or TCP/UDP header");
        };
        assert_eq!(sl.l3 + sip.len, s.len(), "{what}: segment's IP length");
        if let Some(f) = frame_ip_field(s) {
            assert!(f.valid(s), "{what}: segment's IPv4 header checksum");
        }
        if let Some(f) = frame_l4_field(s) {
            assert!(
                f.valid(s),
                "{what}: segment's {} checksum",
                if tcp { "TCP" } else { "UDP" }
            );
        }
        let sp = &s[sl4.offset + sl4.hdr_len..];
        if tcp {
            assert_eq!(
                be32(s, sl4.offset + 4),
                seq,
                "{what}: segment's sequence number"
            );
            seq = seq.map(|q| q.wrapping_add(sp.len() as u32));
        }
        joined.extend_from_slice(sp);
    }
    assert!(
        joined == payload,
        "{what}: segments do not carry the payload in order"
    );
}

pub(super) use wire::bytes::be32;

/// Fuzz target `vxlan_encap`: a frame and its virtio-net header through
/// `Offload::from_virtio` and `encap_segments` (VXLAN encapsulation with software
/// checksum completion and TSO/USO), as a tunnel port's transmit path does. Input: the
/// 10-byte virtio-net header, an underlay-MTU byte, the frame. Checks: the decoded
/// header survives encoding; a refusal leaves no output; what is laid out is what the
/// returned layout says (see `check_segments`).
pub fn vxlan_encap(data: &[u8]) {
    let Some((vh, rest)) = data.split_first_chunk::<{ vxlan::offload::VIRTIO_LEN }>() else {
        return;
    };
    let Some((&m, frame)) = rest.split_first() else {
        return;
    };
    let Ok(off) = vxlan::offload::Offload::from_virtio(vh) else {
        return;
    };
    assert_eq!(
        vxlan::offload::Offload::from_virtio(&off.to_virtio()),
        Ok(off),
        "vxlan_encap: offload does not survive the virtio-net header"
    );
    let (max_frame, _) = underlay(m);
    let vni = 0x12_3456;
    let mut out = vec![0xee; 3];
    let segs = vxlan::offload::encap_segments(frame, &off, max_frame, vni, &mut out);
    match segs {
        Ok(segs) => check_segments(frame, &off, max_frame, vni, &out, segs, "vxlan_encap"),
        Err(_) => assert!(out.is_empty(), "vxlan_encap: output left after a refusal"),
    }
    check_whole(frame, &off, max_frame, vni, segs.ok());
}

/// The same super-frame encapsulated whole (the GSO TAP's path): whatever is accepted
/// whole is also accepted by the segmenting path, which makes as many datagrams of as
/// many bytes as the kernel will; and the header describes the frame it goes in front
/// of (outer lengths and checksum, offsets inside the packet, segment size within the
/// path MTU).
fn check_whole(
    frame: &[u8],
    off: &vxlan::offload::Offload,
    max_frame: usize,
    vni: u32,
    segs: Option<vxlan::offload::Segments>,
) {
    use vxlan::offload::whole::{OUTER_LEN, TUNNEL_VIRTIO_LEN};
    let outer = vxlan::offload::Outer {
        dst_mac: [2, 0, 0, 0, 0, 1],
        src_mac: [2, 0, 0, 0, 0, 2],
        src: std::net::Ipv4Addr::new(198, 51, 100, 1),
        dst: std::net::Ipv4Addr::new(198, 51, 100, 2),
        sport: 40000,
        dport: 4789,
        ip_id: 1,
    };
    let mut hdr = [0u8; vxlan::offload::WHOLE_LEN];
    let Ok(w) = vxlan::offload::encap_whole(frame, off, max_frame, vni, &outer, &mut hdr) else {
        return;
    };
    let Some(segs) = segs else {
        panic!("vxlan_encap: accepted whole, refused by the segmenting path");
    };
    assert_eq!(
        (w.segments, w.bytes),
        (segs.count as u64, segs.total as u64),
        "vxlan_encap: whole and segmented disagree on datagrams and bytes"
    );
    let (vh, pkt) = hdr.split_at(TUNNEL_VIRTIO_LEN);
    let ne = |at: usize| usize::from(u16::from_ne_bytes([vh[at], vh[at + 1]]));
    let (hdr_len, mss, csum_start) = (ne(2), ne(4), ne(6));
    let (outer_th, inner_nh) = (ne(20), ne(22));
    let len = OUTER_LEN + frame.len();
    assert!(
        outer_th == 34
            && inner_nh > OUTER_LEN
            && inner_nh < csum_start
            && csum_start + 18 <= hdr_len,
        "vxlan_encap: offsets {outer_th} {inner_nh} {csum_start} {hdr_len}"
    );
    assert!(
        hdr_len <= len && mss >= 1,
        "vxlan_encap: hdr_len {hdr_len}, mss {mss}"
    );
    assert!(
        hdr_len - OUTER_LEN + mss <= max_frame,
        "vxlan_encap: a {mss}-byte segment does not fit {max_frame}"
    );
    let ip = wire::Ipv4Packet::new_truncated(&pkt[14..34]);
    assert!(
        ip.as_ref()
            .is_ok_and(|ip| ip.verify_checksum() && usize::from(ip.total_len()) == len - 14),
        "vxlan_encap: outer IPv4 header {:02x?}",
        &pkt[14..34]
    );
    assert_eq!(
        pkt[42..50],
        vxlan::header::encode(vni),
        "vxlan_encap: VXLAN header"
    );
}

/// Fuzz target `vxlan_gro`: a run of VXLAN datagrams as one `UDP_GRO` read returns
/// them, through `gro::merge_tcp`. Input: the stride (big-endian `u16`), the run.
/// Checks: a refused run is left untouched; a merged one covers every datagram, its
/// inner frame has consistent IP lengths, the first segment's sequence number, every
/// segment's payload in order and a partial checksum that completes to the right one;
/// and segmenting it again for the original datagram size gives as many datagrams.
pub fn vxlan_gro(data: &[u8]) {
    let Some((s, run)) = data.split_first_chunk::<2>() else {
        return;
    };
    let stride = usize::from(u16::from_be_bytes(*s));
    let mut buf = run.to_vec();
    let before = buf.clone();
    let Some(m) = vxlan::gro::merge_tcp(&mut buf, stride) else {
        assert_eq!(buf, before, "vxlan_gro: a refused run was changed");
        return;
    };
    let n = before.len().div_ceil(stride);
    assert_eq!(m.segments, n, "vxlan_gro: not every datagram merged");
    assert!(n >= 2);
    assert_eq!(
        m.vni,
        u32::from_be_bytes([0, before[4], before[5], before[6]])
    );
    let Some(merged) = buf.get(m.inner.clone()) else {
        panic!("vxlan_gro: merged frame {:?} outside the buffer", m.inner);
    };
    let Some(l) = vxlan::offload::headers(merged) else {
        panic!("vxlan_gro: merged frame has no headers");
    };
    let (Some(ip), Some(l4)) = (l.ip, l.ip.and_then(|i| i.l4)) else {
        panic!("vxlan_gro: merged frame lost its IP or TCP header");
    };
    assert_eq!(l.l3 + ip.len, merged.len(), "vxlan_gro: merged IP length");
    let mut joined = Vec::new();
    for d in before.chunks(stride) {
        let f = d.get(8..).unwrap_or_default();
        let (Some(fl), true) = (vxlan::offload::headers(f), f.len() > 14) else {
            panic!("vxlan_gro: merged a datagram without headers");
        };
        let (Some(fip), Some(fl4)) = (fl.ip, fl.ip.and_then(|i| i.l4)) else {
            panic!("vxlan_gro: merged a datagram without TCP");
        };
        joined.extend_from_slice(&f[fl4.offset + fl4.hdr_len..fl.l3 + fip.len]);
    }
    let first = &before[8..stride];
    assert_eq!(
        be32(merged, l4.offset + 4),
        be32(first, l4.offset + 4),
        "vxlan_gro: sequence number of the merged frame"
    );
    assert!(
        merged[l4.offset + l4.hdr_len..] == joined[..],
        "vxlan_gro: merged payload is not the segments' payloads in order"
    );
    let off = m.offload;
    assert!(
        off.needs_csum && off.gso != vxlan::offload::Gso::None,
        "vxlan_gro: {off:?}"
    );
    let mut done = merged.to_vec();
    let r = wire::checksum::complete(
        &mut done,
        usize::from(off.csum_start),
        usize::from(off.csum_offset),
    );
    assert!(r.is_ok(), "vxlan_gro: partial checksum outside the frame");
    if let Some(f) = frame_l4_field(&done) {
        assert!(
            f.valid(&done),
            "vxlan_gro: completed checksum of the merged frame is wrong"
        );
    }
    let mut out = Vec::new();
    match vxlan::offload::encap_segments(merged, &off, stride - 8, m.vni, &mut out) {
        Ok(segs) => {
            check_segments(merged, &off, stride - 8, m.vni, &out, segs, "vxlan_gro");
            assert_eq!(
                segs.count, n,
                "vxlan_gro: segmenting again gives another count"
            );
        }
        Err(e) => panic!("vxlan_gro: the merged frame cannot be segmented again: {e:?}"),
    }
}
