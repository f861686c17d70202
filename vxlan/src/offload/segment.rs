//! Encapsulation: a frame and its offload description in, VXLAN datagrams out, laid
//! out back to back so they leave in one `UDP_SEGMENT` send (or a few: see
//! [`Segments::chunks`]). A datagram cannot carry a partial checksum or a super-frame,
//! so this is where the switch does in software what a NIC would: complete the
//! checksum, or segment as the kernel's `tcp_gso_segment`/`__udp_gso_segment` do.

use std::ops::Range;

use super::layers::{IpVersion, Transport};
use super::{Gso, Offload, OffloadError};
use crate::header::{encode, HEADER_LEN};
use wire::bytes::{be16, be32, put16, put32};
use wire::checksum::{self, finish, fold, sum};

/// Largest UDP payload over IPv4 (65535 − 20 − 8): the most one send may carry.
pub const MAX_UDP_PAYLOAD: usize = 65507;
/// Most segments the kernel takes in one `UDP_SEGMENT` send (`UDP_MAX_SEGMENTS`; 64
/// before Linux 6.9, 128 since: the lower bound works everywhere).
pub const UDP_MAX_SEGMENTS: usize = 64;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
const ETH_LEN: usize = 14;

/// Datagrams laid out by [`encap_segments`]: `count` of them back to back, each
/// `stride` bytes but the last, which may be shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// How many datagrams.
    pub count: usize,
    /// Bytes of each but the last, VXLAN header included: the `UDP_SEGMENT` size.
    pub stride: usize,
    /// Bytes in all.
    pub total: usize,
}

impl Segments {
    /// Byte ranges of whole datagrams, in order, each at most `max_total` bytes and
    /// [`UDP_MAX_SEGMENTS`] datagrams (but at least one datagram): one `UDP_SEGMENT`
    /// send each, with segment size `stride`. Pass [`MAX_UDP_PAYLOAD`] for IPv4.
    pub fn chunks(&self, max_total: usize) -> impl Iterator<Item = Range<usize>> {
        let stride = self.stride.max(1);
        let per = (max_total / stride).clamp(1, UDP_MAX_SEGMENTS) * stride;
        let total = self.total;
        (0..total)
            .step_by(per)
            .map(move |s| s..s.saturating_add(per).min(total))
    }
}

/// Lays out `frame`, described by `off`, in `out` (cleared first) as VXLAN datagrams
/// for `vni`, each holding an inner frame of at most `max_frame` bytes (Ethernet header
/// included).
///
/// - `Gso::None`: one datagram; the checksum completed if `needs_csum`. `TooBig` if
///   the frame is longer than `max_frame`.
/// - `TcpV4`/`TcpV6`: software TSO. Payload per segment: `min(gso_size, max_frame −
///   headers)`. Each segment has the original headers with the IP length, the IPv4 ID
///   (+ i) and header checksum, the sequence number (+ offset), the flags (CWR on the
///   first only, FIN and PSH on the last only) and a full TCP checksum.
/// - `UdpL4`: the UDP payload cut likewise; each datagram gets its UDP length, IPv4
///   ID (+ i) and a full checksum (0 sent as 0xffff).
///
/// Errors leave `out` empty and never panic, whatever the bytes and offsets.
pub fn encap_segments(
    frame: &[u8],
    off: &Offload,
    max_frame: usize,
    vni: u32,
    out: &mut Vec<u8>,
) -> Result<Segments, OffloadError> {
    out.clear();
    let r = if off.gso == Gso::None {
        single(frame, off, max_frame, vni, out)
    } else {
        segment(frame, off, max_frame, vni, out)
    };
    if r.is_err() {
        out.clear();
    }
    r
}

/// One datagram: header + frame, checksum completed if partial.
fn single(
    frame: &[u8],
    off: &Offload,
    max_frame: usize,
    vni: u32,
    out: &mut Vec<u8>,
) -> Result<Segments, OffloadError> {
    if frame.len() < ETH_LEN {
        return Err(OffloadError::Malformed);
    }
    if frame.len() > max_frame {
        return Err(OffloadError::TooBig);
    }
    out.reserve(HEADER_LEN + frame.len());
    out.extend_from_slice(&encode(vni));
    out.extend_from_slice(frame);
    if off.needs_csum {
        let inner = out.get_mut(HEADER_LEN..).ok_or(OffloadError::Malformed)?;
        checksum::complete(
            inner,
            usize::from(off.csum_start),
            usize::from(off.csum_offset),
        )?;
    }
    Ok(Segments {
        count: 1,
        stride: out.len(),
        total: out.len(),
    })
}

/// What every segment of one super-frame shares: where its headers are, the segment
/// payload size, the fields each segment's own values derive from.
struct Cut<'f> {
    t: Transport,
    headers: &'f [u8],
    /// Offset of the payload in the frame, and its length.
    payload: Range<usize>,
    mss: usize,
    count: usize,
    ip_id: u16,
    seq: u32,
    /// The pseudo-header sum minus its length field: the same for every segment.
    pseudo0: u64,
}

impl<'f> Cut<'f> {
    /// Checks `frame` against `off` and works out the segments (software TSO/USO).
    fn of(frame: &'f [u8], off: &Offload, max_frame: usize) -> Result<Self, OffloadError> {
        let t = Transport::of(frame).ok_or(OffloadError::Malformed)?;
        let fits = match off.gso {
            Gso::TcpV4 => t.tcp && t.version == IpVersion::V4,
            Gso::TcpV6 => t.tcp && t.version == IpVersion::V6,
            Gso::UdpL4 => !t.tcp,
            Gso::None => false,
        };
        if !fits || off.gso_size == 0 || usize::from(off.hdr_len) > frame.len() {
            return Err(OffloadError::Malformed);
        }
        let hl = t.hdrs_len();
        let room = max_frame
            .checked_sub(hl)
            .filter(|&r| r > 0)
            .ok_or(OffloadError::TooBig)?;
        let mss = usize::from(off.gso_size).min(room);
        let headers = frame.get(..hl).ok_or(OffloadError::Malformed)?;
        let payload_len = frame.get(hl..t.end).ok_or(OffloadError::Malformed)?.len();
        Ok(Cut {
            headers,
            payload: hl..t.end,
            mss,
            count: payload_len.div_ceil(mss).max(1),
            ip_id: be16(frame, t.l3 + 4).ok_or(OffloadError::Malformed)?,
            seq: be32(frame, t.l4 + 4).ok_or(OffloadError::Malformed)?,
            pseudo0: t.pseudo(frame, 0).ok_or(OffloadError::Malformed)?,
            t,
        })
    }

    /// The frame's byte range of segment `i`'s payload.
    fn chunk(&self, i: usize) -> Range<usize> {
        let s = (self.payload.start + i * self.mss).min(self.payload.end);
        s..(s + self.mss).min(self.payload.end)
    }

    /// Writes segment `i`'s headers, VXLAN header first, at the end of `out`; the
    /// checksum covers `payload`, which follows them in the datagram.
    fn push_headers(
        &self,
        i: usize,
        vxlan: &[u8; HEADER_LEN],
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), OffloadError> {
        out.extend_from_slice(vxlan);
        let start = out.len();
        out.extend_from_slice(self.headers);
        let l4_len = self.headers.len() - self.t.l4 + payload.len();
        let hdr = out.get_mut(start..).ok_or(OffloadError::Malformed)?;
        fix_headers(hdr, self, i, l4_len, sum(payload, 0)).ok_or(OffloadError::Malformed)
    }
}

/// Software TSO/USO into one buffer: each segment's headers, then a copy of its
/// payload (what a sealed, encrypted datagram needs).
fn segment(
    frame: &[u8],
    off: &Offload,
    max_frame: usize,
    vni: u32,
    out: &mut Vec<u8>,
) -> Result<Segments, OffloadError> {
    let c = Cut::of(frame, off, max_frame)?;
    let hl = c.headers.len();
    let vxlan = encode(vni);
    out.reserve(c.count * (HEADER_LEN + hl) + c.payload.len());
    for i in 0..c.count {
        let chunk = frame.get(c.chunk(i)).ok_or(OffloadError::Malformed)?;
        c.push_headers(i, &vxlan, chunk, out)?;
        out.extend_from_slice(chunk);
    }
    Ok(Segments {
        count: c.count,
        stride: if c.count > 1 {
            HEADER_LEN + hl + c.mss
        } else {
            out.len()
        },
        total: out.len(),
    })
}

/// A super-frame's datagrams as [`encap_split`] lays them out: datagram `i` is
/// `header(i)` of the header buffer, then `payload(i)` of the frame, unmoved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// How many datagrams.
    pub count: usize,
    /// Bytes of each datagram's headers, VXLAN header included.
    pub hdr_len: usize,
    /// Payload bytes of each datagram but the last.
    pub mss: usize,
    /// The payload's byte range in the frame.
    pub payload: Range<usize>,
}

impl Split {
    /// Bytes of each datagram but the last: the `UDP_SEGMENT` size.
    pub fn stride(&self) -> usize {
        self.hdr_len + self.mss
    }
    /// Datagram `i`'s headers in the header buffer.
    pub fn header(&self, i: usize) -> Range<usize> {
        i * self.hdr_len..(i + 1) * self.hdr_len
    }
    /// Datagram `i`'s payload in the frame.
    pub fn payload(&self, i: usize) -> Range<usize> {
        let s = (self.payload.start + i * self.mss).min(self.payload.end);
        s..(s + self.mss).min(self.payload.end)
    }
    /// Bytes of datagram `i`.
    pub fn len(&self, i: usize) -> usize {
        self.hdr_len + self.payload(i).len()
    }
    /// True if there is no datagram.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Runs of whole datagrams (index ranges), each at most `max_total` bytes and
    /// [`UDP_MAX_SEGMENTS`] datagrams (but at least one): one `UDP_SEGMENT` send each,
    /// as [`Segments::chunks`] cuts a laid-out buffer.
    pub fn runs(&self, max_total: usize) -> impl Iterator<Item = Range<usize>> {
        let per = (max_total / self.stride().max(1)).clamp(1, UDP_MAX_SEGMENTS);
        let count = self.count;
        (0..count)
            .step_by(per)
            .map(move |s| s..(s + per).min(count))
    }
}

/// Encapsulation of a TSO/USO super-frame without copying its payload: each datagram's
/// headers (VXLAN, then the inner headers fixed up as [`encap_segments`] does, with the
/// full TCP/UDP checksum over the payload) are written to `hdrs` (cleared first), and
/// the payload stays in `frame`, to be gathered by the send (`sendmsg` with one
/// `iovec` per piece). The datagrams are byte for byte those of [`encap_segments`].
///
/// Only for super-frames (`off.gso` is not `Gso::None`: a single frame is
/// encapsulated in place); errors leave `hdrs` empty and never panic.
pub fn encap_split(
    frame: &[u8],
    off: &Offload,
    max_frame: usize,
    vni: u32,
    hdrs: &mut Vec<u8>,
) -> Result<Split, OffloadError> {
    hdrs.clear();
    let r = split_into(frame, off, max_frame, vni, hdrs);
    if r.is_err() {
        hdrs.clear();
    }
    r
}

fn split_into(
    frame: &[u8],
    off: &Offload,
    max_frame: usize,
    vni: u32,
    hdrs: &mut Vec<u8>,
) -> Result<Split, OffloadError> {
    let c = Cut::of(frame, off, max_frame)?;
    let vxlan = encode(vni);
    hdrs.reserve(c.count * (HEADER_LEN + c.headers.len()));
    for i in 0..c.count {
        let chunk = frame.get(c.chunk(i)).ok_or(OffloadError::Malformed)?;
        c.push_headers(i, &vxlan, chunk, hdrs)?;
    }
    Ok(Split {
        count: c.count,
        hdr_len: HEADER_LEN + c.headers.len(),
        mss: c.mss,
        payload: c.payload.clone(),
    })
}

/// Rewrites the headers of segment `i` (copied from the super-frame into `hdr`; its
/// payload, `l4_len` minus the TCP/UDP header bytes whose sum is `payload_sum`, follows
/// them in the datagram): lengths, IPv4 ID and header checksum, TCP sequence number and
/// flags (CWR on the first only, FIN and PSH on the last only), and the full TCP/UDP
/// checksum. `None` only if the headers were not where `c.t` says.
#[inline]
fn fix_headers(
    hdr: &mut [u8],
    c: &Cut<'_>,
    i: usize,
    l4_len: usize,
    payload_sum: u64,
) -> Option<()> {
    let t = &c.t;
    let hdr = hdr.get_mut(..t.hdrs_len())?;
    let ip_len = l4_len + t.ip_hdr_len;
    t.set_ip_len(hdr, ip_len)?;
    if t.version == IpVersion::V4 {
        // Linux increments the ID per segment unless told otherwise (FIXEDID).
        put16(hdr, t.l3 + 4, c.ip_id.wrapping_add(i as u16))?;
        put16(hdr, t.l3 + 10, 0)?;
        let ck = !fold(sum(hdr.get(t.l3..t.l3 + t.ip_hdr_len)?, 0));
        put16(hdr, t.l3 + 10, ck)?;
    }
    if t.tcp {
        put32(hdr, t.l4 + 4, c.seq.wrapping_add((i * c.mss) as u32))?;
        let flags = hdr.get_mut(t.l4 + 13)?;
        if i > 0 {
            *flags &= !TCP_CWR;
        }
        if i + 1 < c.count {
            *flags &= !(TCP_FIN | TCP_PSH);
        }
    } else {
        put16(hdr, t.l4 + 4, u16::try_from(l4_len).ok()?)?;
    }
    let co = t.l4 + t.csum_offset();
    put16(hdr, co, 0)?;
    // The length goes into the pseudo-header as a 16-bit word (IPv6: two words, the
    // upper one zero for any segment we make). The TCP/UDP header's length is even
    // (TCP: a multiple of 4; UDP: 8), so the payload's sum adds on without a shift.
    let pseudo = c.pseudo0 + l4_len as u64;
    let ck = finish(sum(hdr.get(t.l4..)?, pseudo) + payload_sum);
    put16(hdr, co, ck)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decap::parse;
    use crate::testutil::{frame, pattern, verify, Csum, Seg, Spec};
    use proptest::prelude::*;

    fn tso(gso: Gso, mss: u16) -> Offload {
        Offload {
            needs_csum: true,
            gso,
            gso_size: mss,
            ..Offload::NONE
        }
    }

    /// Encapsulates, checks the layout, and verifies every inner frame.
    fn run(f: &[u8], off: &Offload, max_frame: usize) -> Result<Vec<Seg>, OffloadError> {
        let mut out = vec![0xee; 7];
        let s = encap_segments(f, off, max_frame, 77, &mut out)?;
        assert_eq!(s.total, out.len());
        let dgrams: Vec<&[u8]> = out.chunks(s.stride).collect();
        assert_eq!(dgrams.len(), s.count);
        let mut segs = Vec::new();
        for (i, d) in dgrams.iter().enumerate() {
            if i + 1 < s.count {
                assert_eq!(d.len(), s.stride);
            }
            assert_eq!(parse(d).unwrap(), (77, HEADER_LEN));
            let inner = &d[HEADER_LEN..];
            assert!(inner.len() <= max_frame, "{} > {max_frame}", inner.len());
            segs.push(verify(inner).unwrap_or_else(|e| panic!("segment {i}: {e}")));
        }
        Ok(segs)
    }

    #[test]
    fn plain_frame_is_copied_and_partial_checksum_completed() {
        let f = frame(&Spec {
            csum: Csum::Partial,
            ..Spec::tcp4(100)
        });
        assert!(verify(&f).is_err());
        let off = Offload {
            needs_csum: true,
            csum_start: 34,
            csum_offset: 16,
            ..Offload::NONE
        };
        let segs = run(&f, &off, 1464).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].payload, pattern(100));
        // Without needs_csum the bytes pass as they are.
        let mut out = Vec::new();
        encap_segments(&f, &Offload::NONE, 1464, 5, &mut out).unwrap();
        assert_eq!(&out[8..], &f[..]);
    }

    #[test]
    fn plain_frame_errors() {
        let mut out = vec![1, 2, 3];
        let big = vec![0u8; 1465];
        assert_eq!(
            encap_segments(&big, &Offload::NONE, 1464, 1, &mut out),
            Err(OffloadError::TooBig)
        );
        assert!(out.is_empty());
        assert_eq!(
            encap_segments(&[0; 13], &Offload::NONE, 1464, 1, &mut out),
            Err(OffloadError::Malformed)
        );
        let off = Offload {
            needs_csum: true,
            csum_start: 50,
            csum_offset: 9,
            ..Offload::NONE
        };
        assert_eq!(
            encap_segments(&[0; 60], &off, 1464, 1, &mut out),
            Err(OffloadError::Malformed)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn tso_ipv4_flags_ids_and_sequence() {
        let f = frame(&Spec {
            flags: 0x80 | 0x10 | 0x08 | 0x01, // CWR ACK PSH FIN
            seq: u32::MAX - 1000,
            ip_id: 0xfffe,
            csum: Csum::Partial,
            ..Spec::tcp4(4000)
        });
        let segs = run(&f, &tso(Gso::TcpV4, 1448), 1514).unwrap();
        assert_eq!(segs.len(), 3);
        let ids: Vec<_> = segs.iter().map(|s| s.ip_id.unwrap()).collect();
        assert_eq!(ids, [0xfffe, 0xffff, 0]);
        let seqs: Vec<_> = segs.iter().map(|s| s.seq).collect();
        assert_eq!(
            seqs,
            [u32::MAX - 1000, (u32::MAX - 1000).wrapping_add(1448), 1895]
        );
        let flags: Vec<_> = segs.iter().map(|s| s.flags).collect();
        assert_eq!(flags, [0x90, 0x10, 0x19]);
        let lens: Vec<_> = segs.iter().map(|s| s.payload.len()).collect();
        assert_eq!(lens, [1448, 1448, 1104]);
    }

    #[test]
    fn tso_mss_shrinks_to_fit_max_frame() {
        // Options and two tags: 22 + 24 + 32 = 78 bytes of headers.
        let f = frame(&Spec {
            tags: 2,
            ip_options: 4,
            tcp_options: 12,
            ..Spec::tcp4(10_000)
        });
        let mut out = Vec::new();
        let s = encap_segments(&f, &tso(Gso::TcpV4, 1448), 1464, 1, &mut out).unwrap();
        assert_eq!(s.stride, 8 + 1464);
        assert_eq!(s.count, 10_000usize.div_ceil(1464 - 78));
        let segs = run(&f, &tso(Gso::TcpV4, 1448), 1464).unwrap();
        let joined: Vec<u8> = segs.iter().flat_map(|s| s.payload.clone()).collect();
        assert_eq!(joined, pattern(10_000));
    }

    #[test]
    fn tso_ipv6_and_small_super_frames() {
        let f = frame(&Spec::tcp6(3000));
        let segs = run(&f, &tso(Gso::TcpV6, 1000), 1514).unwrap();
        assert_eq!(segs.len(), 3);
        // A super-frame no bigger than one segment, and one with no payload at all.
        for n in [0, 500] {
            let f = frame(&Spec::tcp6(n));
            let mut out = Vec::new();
            let s = encap_segments(&f, &tso(Gso::TcpV6, 1000), 1514, 1, &mut out).unwrap();
            assert_eq!((s.count, s.stride, s.total), (1, out.len(), out.len()));
            assert_eq!(
                run(&f, &tso(Gso::TcpV6, 1000), 1514).unwrap()[0]
                    .payload
                    .len(),
                n
            );
        }
    }

    #[test]
    fn uso_ipv4_and_ipv6() {
        for spec in [Spec::udp4(5000), Spec::udp6(5000)] {
            let f = frame(&Spec {
                csum: Csum::Value(0),
                ..spec
            });
            let segs = run(&f, &tso(Gso::UdpL4, 1200), 1514).unwrap();
            let lens: Vec<_> = segs.iter().map(|s| s.payload.len()).collect();
            assert_eq!(lens, [1200, 1200, 1200, 1200, 200]);
            if let Some(id) = segs[0].ip_id {
                assert_eq!(segs[4].ip_id, Some(id + 4));
            }
        }
    }

    #[test]
    fn offload_that_disagrees_with_the_frame_is_refused() {
        let t4 = frame(&Spec::tcp4(3000));
        let t6 = frame(&Spec::tcp6(3000));
        let u4 = frame(&Spec::udp4(3000));
        let mut out = Vec::new();
        let mut e = |f: &[u8], off: Offload, max: usize| encap_segments(f, &off, max, 1, &mut out);
        assert_eq!(
            e(&t6, tso(Gso::TcpV4, 1000), 1514),
            Err(OffloadError::Malformed)
        );
        assert_eq!(
            e(&t4, tso(Gso::TcpV6, 1000), 1514),
            Err(OffloadError::Malformed)
        );
        assert_eq!(
            e(&t4, tso(Gso::UdpL4, 1000), 1514),
            Err(OffloadError::Malformed)
        );
        assert_eq!(
            e(&u4, tso(Gso::TcpV4, 1000), 1514),
            Err(OffloadError::Malformed)
        );
        assert_eq!(
            e(&t4, tso(Gso::TcpV4, 0), 1514),
            Err(OffloadError::Malformed)
        );
        assert_eq!(e(&t4, tso(Gso::TcpV4, 1000), 54), Err(OffloadError::TooBig));
        let far = Offload {
            hdr_len: 4000,
            ..tso(Gso::TcpV4, 1000)
        };
        assert_eq!(e(&t4, far, 1514), Err(OffloadError::Malformed));
        assert_eq!(
            e(&t4[..100], tso(Gso::TcpV4, 1000), 1514),
            Err(OffloadError::Malformed)
        );
        let mut frag = t4.clone();
        frag[20] = 0x20;
        assert_eq!(
            e(&frag, tso(Gso::TcpV4, 1000), 1514),
            Err(OffloadError::Malformed)
        );
        assert_eq!(
            e(&[0; 100], tso(Gso::TcpV4, 1000), 1514),
            Err(OffloadError::Malformed)
        );
    }

    #[test]
    fn chunks_hold_whole_segments() {
        let s = Segments {
            count: 5,
            stride: 100,
            total: 450,
        };
        let c: Vec<_> = s.chunks(250).collect();
        assert_eq!(c, vec![0..200, 200..400, 400..450]);
        assert_eq!(s.chunks(10).count(), 5);
        assert_eq!(s.chunks(usize::MAX).collect::<Vec<_>>(), vec![0..450]);
        let many = Segments {
            count: 200,
            stride: 100,
            total: 19_950,
        };
        let c: Vec<_> = many.chunks(MAX_UDP_PAYLOAD).collect();
        assert_eq!(c, vec![0..6400, 6400..12800, 12800..19200, 19200..19950]);
        let none = Segments {
            count: 0,
            stride: 0,
            total: 0,
        };
        assert_eq!(none.chunks(0).count(), 0);
    }

    /// Builds a TCP or UDP super-frame from the strategy's parts.
    fn super_frame(
        v6: bool,
        tcp: bool,
        tagged: bool,
        len: usize,
        flags: u8,
        seq: u32,
        opts: usize,
    ) -> Vec<u8> {
        frame(&Spec {
            v6,
            tcp,
            tags: u8::from(tagged),
            tcp_options: if tcp { opts * 4 } else { 0 },
            ip_options: if v6 { 0 } else { opts * 4 },
            payload: pattern(len),
            flags,
            seq,
            ip_id: seq as u16,
            csum: Csum::Partial,
        })
    }

    /// The datagrams of a split, gathered as a `sendmsg` would, back to back.
    fn gathered(frame: &[u8], hdrs: &[u8], s: &Split) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..s.count {
            out.extend_from_slice(&hdrs[s.header(i)]);
            out.extend_from_slice(&frame[s.payload(i)]);
        }
        out
    }

    #[test]
    fn split_is_the_laid_out_datagrams_without_the_payload_copy() {
        for (f, off, max) in [
            (frame(&Spec::tcp4(64_000)), tso(Gso::TcpV4, 1448), 1464),
            (frame(&Spec::tcp6(3000)), tso(Gso::TcpV6, 1000), 1514),
            (frame(&Spec::udp4(5000)), tso(Gso::UdpL4, 1200), 1514),
            (frame(&Spec::tcp4(0)), tso(Gso::TcpV4, 1448), 1464),
        ] {
            let mut laid = Vec::new();
            let segs = encap_segments(&f, &off, max, 9, &mut laid).unwrap();
            let mut hdrs = vec![1, 2, 3];
            let s = encap_split(&f, &off, max, 9, &mut hdrs).unwrap();
            assert_eq!(s.count, segs.count);
            assert_eq!(hdrs.len(), s.count * s.hdr_len);
            if s.count > 1 {
                assert_eq!(s.stride(), segs.stride);
            }
            assert_eq!(gathered(&f, &hdrs, &s), laid);
            let lens: usize = (0..s.count).map(|i| s.len(i)).sum();
            assert_eq!(lens, segs.total);
        }
        // Errors leave the header buffer empty, as encap_segments leaves its buffer.
        let mut hdrs = vec![1];
        let t4 = frame(&Spec::tcp4(3000));
        assert_eq!(
            encap_split(&t4, &tso(Gso::TcpV6, 1000), 1514, 1, &mut hdrs),
            Err(OffloadError::Malformed)
        );
        assert!(hdrs.is_empty());
        assert_eq!(
            encap_split(&t4, &tso(Gso::TcpV4, 1000), 54, 1, &mut hdrs),
            Err(OffloadError::TooBig)
        );
        assert!(hdrs.is_empty());
    }

    #[test]
    fn split_runs_hold_whole_datagrams() {
        let s = Split {
            count: 200,
            hdr_len: 74,
            mss: 26,
            payload: 0..0,
        };
        let runs: Vec<_> = s.runs(250).collect();
        assert_eq!(runs[0], 0..2);
        assert_eq!(runs.last(), Some(&(198..200)));
        let runs: Vec<_> = s.runs(MAX_UDP_PAYLOAD).collect();
        assert_eq!(runs, vec![0..64, 64..128, 128..192, 192..200]);
        assert_eq!(s.runs(1).count(), 200);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn split_gathers_to_encap_segments(v6 in any::<bool>(), tcp in any::<bool>(), tagged in any::<bool>(), len in 0usize..64000, mss in 200u16..1460, max_frame in 700usize..1600, opts in 0usize..4) {
            let f = super_frame(v6, tcp, tagged, len, 0x18, 77, opts);
            let gso = match (tcp, v6) { (false, _) => Gso::UdpL4, (true, false) => Gso::TcpV4, (true, true) => Gso::TcpV6 };
            let mut laid = Vec::new();
            let a = encap_segments(&f, &tso(gso, mss), max_frame, 3, &mut laid);
            let mut hdrs = Vec::new();
            let b = encap_split(&f, &tso(gso, mss), max_frame, 3, &mut hdrs);
            prop_assert_eq!(a.is_ok(), b.is_ok());
            if let Ok(s) = b {
                prop_assert_eq!(gathered(&f, &hdrs, &s), laid);
            }
        }

        #[test]
        fn encap_then_parse_is_identity(vni in 0u32..=0xff_ffff, f in proptest::collection::vec(any::<u8>(), 14..2000)) {
            let mut out = Vec::new();
            let s = encap_segments(&f, &Offload::NONE, 2000, vni, &mut out).unwrap();
            prop_assert_eq!((s.count, s.total), (1, f.len() + 8));
            let (v, at) = parse(&out).unwrap();
            prop_assert_eq!(v, vni);
            prop_assert_eq!(&out[at..], &f[..]);
        }

        #[test]
        fn tso_reassembles(v6 in any::<bool>(), tagged in any::<bool>(), len in 0usize..64000, mss in 500u16..1460, max_frame in 700usize..1600, flags in any::<u8>(), seq in any::<u32>(), opts in 0usize..4) {
            let f = super_frame(v6, true, tagged, len, flags | 0x10, seq, opts);
            let gso = if v6 { Gso::TcpV6 } else { Gso::TcpV4 };
            let segs = run(&f, &tso(gso, mss), max_frame).unwrap();
            let mut expect = seq;
            let mut joined = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let (first, last) = (i == 0, i + 1 == segs.len());
                prop_assert_eq!(s.seq, expect);
                expect = expect.wrapping_add(s.payload.len() as u32);
                prop_assert!(s.payload.len() <= usize::from(mss));
                prop_assert!(last || s.payload.len() == segs[0].payload.len());
                let want = (flags | 0x10) & !(if first { 0 } else { 0x80 }) & !(if last { 0 } else { 0x09 });
                prop_assert_eq!(s.flags, want);
                if let Some(id) = s.ip_id {
                    prop_assert_eq!(id, (seq as u16).wrapping_add(i as u16));
                }
                joined.extend_from_slice(&s.payload);
            }
            prop_assert_eq!(joined, pattern(len));
        }

        #[test]
        fn uso_reassembles(v6 in any::<bool>(), tagged in any::<bool>(), len in 0usize..64000, size in 200u16..1460, max_frame in 700usize..1600) {
            let f = super_frame(v6, false, tagged, len, 0, 9, 0);
            let segs = run(&f, &tso(Gso::UdpL4, size), max_frame).unwrap();
            let mut joined = Vec::new();
            for s in &segs {
                prop_assert!(s.payload.len() <= usize::from(size));
                joined.extend_from_slice(&s.payload);
            }
            prop_assert_eq!(joined, pattern(len));
        }

        #[test]
        fn chunks_cover_everything_in_whole_segments(count in 1usize..300, stride in 1usize..2000, last in 1usize..2000, max_total in 0usize..70000) {
            let last = last.min(stride);
            let s = Segments { count, stride, total: (count - 1) * stride + last };
            let mut at = 0;
            for r in s.chunks(max_total) {
                prop_assert_eq!(r.start, at);
                prop_assert!(r.start % stride == 0);
                prop_assert!(r.end == s.total || r.len() % stride == 0);
                prop_assert!(r.len() <= max_total.max(stride));
                prop_assert!(r.len().div_ceil(stride) <= UDP_MAX_SEGMENTS);
                at = r.end;
            }
            prop_assert_eq!(at, s.total);
        }
    }
}
