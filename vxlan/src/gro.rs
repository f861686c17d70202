//! Receive coalescing: the inner TCP segments of a run of VXLAN datagrams (what one
//! `UDP_GRO` read returns: datagrams of `stride` bytes back to back) merged into one
//! TCP super-frame, so the container behind the port gets one GSO frame instead of
//! dozens of segments — what the kernel vxlan device's GRO does for its bridge.
//!
//! Merging is all or nothing: every datagram must carry the same VNI and a TCP segment
//! of the same flow with identical headers but for lengths, IDs, checksums and the
//! sequence number, the sequence numbers must follow on, every segment but the last
//! must be full, and every TCP checksum must verify (the merged frame's checksum is
//! left for the receiving kernel to compute, so a corrupt segment must not slip in).
//! Otherwise nothing is changed and the caller handles the datagrams one by one.

use std::ops::Range;

use crate::decap::parse;
use crate::header::HEADER_LEN;
use crate::offload::layers::{IpVersion, Transport};
use crate::offload::{Gso, Offload};
use wire::bytes::be32;
use wire::checksum::{fold, sum};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_URG: u8 = 0x20;

/// A merged super-frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub vni: u32,
    /// Where the merged inner frame now is in the buffer.
    pub inner: Range<usize>,
    /// How to describe it to the port (GSO TCP, checksum to complete).
    pub offload: Offload,
    /// Segments merged.
    pub segments: usize,
}

/// Bytes of the fields allowed to differ between segments of one flow: (offset from
/// the IP header, length). IPv4: total length, ID, header checksum.
const V4_VARY: [(usize, usize); 3] = [(2, 2), (4, 2), (10, 2)];
/// IPv6: payload length.
const V6_VARY: [(usize, usize); 1] = [(4, 2)];

/// True if `a` and `b` are equal outside the byte ranges `vary` (offsets into both).
fn same_except(a: &[u8], b: &[u8], vary: &[(usize, usize)]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut at = 0;
    for &(o, n) in vary {
        if a.get(at..o) != b.get(at..o) {
            return false;
        }
        at = o + n;
    }
    a.get(at..) == b.get(at..)
}

/// Merges the datagrams in `buf` (each `stride` bytes but the last) in place; `None`
/// (and `buf` untouched) if they cannot be merged.
pub fn merge_tcp(buf: &mut [u8], stride: usize) -> Option<Merged> {
    if stride <= HEADER_LEN || buf.len() <= stride {
        return None;
    }
    let n = buf.len().div_ceil(stride);
    let first = buf.get(..stride)?;
    let (vni, at) = parse(first).ok()?;
    let f0 = first.get(at..)?;
    let t = Transport::of(f0)?;
    if !t.tcp || t.end != f0.len() {
        return None;
    }
    let hl = t.hdrs_len();
    let mss = f0.len() - hl;
    if mss == 0 {
        return None;
    }
    let seq0 = be32(f0, t.l4 + 4)?;
    let flags0 = *f0.get(t.l4 + 13)?;
    if flags0 & (TCP_FIN | TCP_SYN | TCP_RST | TCP_URG | TCP_PSH) != 0 {
        return None;
    }
    let ip_vary: &[(usize, usize)] = match t.version {
        IpVersion::V4 => &V4_VARY,
        IpVersion::V6 => &V6_VARY,
    };
    // Check every datagram first: nothing is changed unless all of them merge.
    let mut total = 0usize;
    let mut last_flags = flags0;
    for i in 0..n {
        let d = buf.get(i * stride..((i + 1) * stride).min(buf.len()))?;
        let (v, a) = parse(d).ok()?;
        let f = d.get(a..)?;
        if v != vni {
            return None;
        }
        let ti = Transport::of(f)?;
        if (Transport { end: t.end, ..ti }) != t || ti.end != f.len() {
            return None;
        }
        let len = f.len() - hl;
        if len == 0 || (i + 1 < n && len != mss) || len > mss {
            return None;
        }
        // Ethernet (and tags) identical; IP identical but for lengths, ID, checksum.
        if f.get(..t.l3)? != f0.get(..t.l3)?
            || !same_except(f.get(t.l3..t.l4)?, f0.get(t.l3..t.l4)?, ip_vary)
        {
            return None;
        }
        // TCP identical but for sequence number, flags and checksum.
        let (th, th0) = (f.get(t.l4..hl)?, f0.get(t.l4..hl)?);
        if !same_except(th, th0, &[(4, 4), (13, 1), (16, 2)]) {
            return None;
        }
        if be32(f, t.l4 + 4)? != seq0.wrapping_add((i * mss) as u32) {
            return None;
        }
        let fl = *f.get(t.l4 + 13)?;
        if i + 1 < n && fl != flags0 || i + 1 == n && fl & !TCP_PSH != flags0 {
            return None;
        }
        last_flags = fl;
        let l4_len = f.len() - t.l4;
        if fold(sum(f.get(t.l4..)?, t.pseudo(f, l4_len)?)) != 0xffff {
            return None;
        }
        total += len;
    }
    // Merge: each payload moves down behind the first frame's headers.
    let base = at;
    let mut w = base + hl + mss;
    for i in 1..n {
        let s = i * stride + at + hl;
        let e = ((i + 1) * stride).min(buf.len());
        buf.copy_within(s..e, w);
        w += e - s;
    }
    let f = buf.get_mut(base..w)?;
    let ip_len = w - base - t.l3;
    match t.version {
        IpVersion::V4 => {
            let ip = f.get_mut(t.l3..t.l4)?;
            ip.get_mut(2..4)?
                .copy_from_slice(&u16::try_from(ip_len).ok()?.to_be_bytes());
            ip.get_mut(10..12)?.copy_from_slice(&[0, 0]);
            let c = !fold(sum(ip, 0));
            ip.get_mut(10..12)?.copy_from_slice(&c.to_be_bytes());
        }
        IpVersion::V6 => {
            let pl = u16::try_from(ip_len - t.ip_hdr_len).ok()?;
            f.get_mut(t.l3 + 4..t.l3 + 6)?
                .copy_from_slice(&pl.to_be_bytes());
        }
    }
    *f.get_mut(t.l4 + 13)? = flags0 | (last_flags & TCP_PSH);
    let l4_len = w - base - t.l4;
    let partial = fold(t.pseudo(f, l4_len)?);
    f.get_mut(t.l4 + 16..t.l4 + 18)?
        .copy_from_slice(&partial.to_be_bytes());
    debug_assert_eq!(total, w - base - hl);
    Some(Merged {
        vni,
        inner: base..w,
        offload: Offload {
            needs_csum: true,
            gso: match t.version {
                IpVersion::V4 => Gso::TcpV4,
                IpVersion::V6 => Gso::TcpV6,
            },
            ecn: false,
            hdr_len: u16::try_from(hl).ok()?,
            gso_size: u16::try_from(mss).ok()?,
            csum_start: u16::try_from(t.l4).ok()?,
            csum_offset: 16,
        },
        segments: n,
    })
}
