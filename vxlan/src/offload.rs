//! Offload descriptions (the virtio-net header's fields) and what the switch must do
//! in software because a datagram cannot carry them: complete partial checksums,
//! segment TSO/GSO super-frames to the underlay's MTU (encap), and describe the
//! unsegmented super-packets a kernel peer sends as GSO frames (decap).

use crate::checksum::{self, finish, fold, pseudo_v4, pseudo_v6, sum};
use crate::header::{encode, HEADER_LEN};

/// Size of the virtio-net header.
pub const VIRTIO_LEN: usize = 10;
const F_NEEDS_CSUM: u8 = 1;
const GSO_ECN: u8 = 0x80;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a frame cannot be sent as described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// Headers missing, inconsistent, or not what the offload says.
    #[error("malformed frame or offload description")]
    Malformed,
    /// Bigger than the underlay allows, and not a super-frame that can be segmented.
    #[error("frame too big for the underlay")]
    TooBig,
    /// An offload this code does not do (UFO).
    #[error("unsupported offload")]
    Unsupported,
}

/// Segmentation a super-frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gso {
    #[default]
    None,
    TcpV4,
    TcpV6,
    UdpL4,
}

/// What the sender left to the "hardware": the virtio-net header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offload {
    pub needs_csum: bool,
    pub gso: Gso,
    /// The sender set ECN on the super-frame (virtio's GSO_ECN bit).
    pub ecn: bool,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl Offload {
    /// Decodes a (little-endian) virtio-net header.
    pub fn from_virtio(b: &[u8; VIRTIO_LEN]) -> Result<Offload, OffloadError> {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let gso = match b[1] & !GSO_ECN {
            0 => Gso::None,
            1 => Gso::TcpV4,
            4 => Gso::TcpV6,
            5 => Gso::UdpL4,
            _ => return Err(OffloadError::Unsupported),
        };
        Ok(Offload {
            needs_csum: b[0] & F_NEEDS_CSUM != 0,
            gso,
            ecn: b[1] & GSO_ECN != 0,
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// Encodes as a (little-endian) virtio-net header.
    pub fn to_virtio(&self) -> [u8; VIRTIO_LEN] {
        let mut b = [0u8; VIRTIO_LEN];
        b[0] = if self.needs_csum { F_NEEDS_CSUM } else { 0 };
        b[1] = match self.gso {
            Gso::None => 0,
            Gso::TcpV4 => 1,
            Gso::TcpV6 => 4,
            Gso::UdpL4 => 5,
        } | if self.ecn && self.gso != Gso::None {
            GSO_ECN
        } else {
            0
        };
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// Where a frame's headers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// Offset of the IP header.
    pub l3: usize,
    pub ipv4: bool,
    /// IPv4 header with options, or the 40-byte IPv6 header.
    pub ip_hdr_len: usize,
    /// The IP packet's length by its header (IPv4 total length, IPv6 40 + payload).
    pub l3_len: usize,
    /// TCP or UDP (other protocols and IPv4 fragments: 0).
    pub proto: u8,
    /// Offset of the TCP/UDP header (meaningful when `proto` is set).
    pub l4: usize,
    /// TCP header with options, or 8 for UDP.
    pub l4_hdr_len: usize,
}

impl Layers {
    /// Bytes of all headers, Ethernet to TCP/UDP.
    pub fn hdrs_len(&self) -> usize {
        self.l4 + self.l4_hdr_len
    }
    /// The TCP/UDP checksum field's offset within the L4 header.
    fn csum_offset(&self) -> usize {
        if self.proto == PROTO_TCP {
            16
        } else {
            6
        }
    }
    /// The pseudo-header sum of `frame` for an L4 length of `l4_len`.
    fn pseudo(&self, frame: &[u8], l4_len: usize) -> u64 {
        let ip = &frame[self.l3..];
        if self.ipv4 {
            let a = |i: usize| [ip[i], ip[i + 1], ip[i + 2], ip[i + 3]];
            pseudo_v4(a(12), a(16), self.proto, l4_len as u16)
        } else {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            pseudo_v6(s, d, self.proto, l4_len as u32)
        }
    }
}

/// Finds the IP and TCP/UDP headers of an Ethernet frame (up to two 802.1Q/802.1ad
/// tags skipped); `None` if it is not IP or a header is cut.
pub fn headers(frame: &[u8]) -> Option<Layers> {
    let be16 = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*frame.get(i)?, *frame.get(i + 1)?]))
    };
    let mut at = 12;
    let mut et = be16(at)?;
    for _ in 0..2 {
        if et == 0x8100 || et == 0x88a8 {
            at += 4;
            et = be16(at)?;
        }
    }
    let l3 = at + 2;
    let (ipv4, ip_hdr_len, l3_len, mut proto) = match et {
        ETH_P_IPV4 => {
            let vihl = *frame.get(l3)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 || frame.len() < l3 + ihl {
                return None;
            }
            let total = usize::from(be16(l3 + 2)?);
            let frag = be16(l3 + 6)?;
            // A fragment carries no L4 header we can use (or only part of the data).
            let proto = if frag & 0x3fff != 0 { 0 } else { frame[l3 + 9] };
            (true, ihl, total, proto)
        }
        ETH_P_IPV6 => {
            if frame.len() < l3 + 40 || frame[l3] >> 4 != 6 {
                return None;
            }
            (false, 40, 40 + usize::from(be16(l3 + 4)?), frame[l3 + 6])
        }
        _ => return None,
    };
    if l3_len < ip_hdr_len || l3 + l3_len > frame.len() {
        return None;
    }
    let l4 = l3 + ip_hdr_len;
    let l4_hdr_len = match proto {
        PROTO_TCP => {
            let doff = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
            if doff < 20 || l4 + doff > l3 + l3_len {
                return None;
            }
            doff
        }
        PROTO_UDP if l4 + 8 <= l3 + l3_len => 8,
        _ => {
            proto = 0;
            0
        }
    };
    Some(Layers {
        l3,
        ipv4,
        ip_hdr_len,
        l3_len,
        proto,
        l4,
        l4_hdr_len,
    })
}

/// Datagrams laid out by [`encap_segments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// How many datagrams.
    pub count: usize,
    /// Bytes of each but the last (VXLAN header included): the `UDP_SEGMENT` size.
    pub stride: usize,
    /// Bytes in all.
    pub total: usize,
}

impl Segments {
    /// Byte ranges of whole datagrams, each range at most `max_total` bytes (but at
    /// least one datagram): one `UDP_SEGMENT` send each.
    pub fn chunks(&self, max_total: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        let stride = self.stride.max(1);
        let per = (max_total / stride).max(1) * stride;
        let total = self.total;
        (0..total)
            .step_by(per)
            .map(move |s| s..(s + per).min(total))
    }
}

/// Lays out `frame` (described by `off`) in `out` as VXLAN datagrams for `vni`, each
/// holding an inner frame of at most `max_frame` bytes: a super-frame is segmented as
/// the kernel's TSO/USO would (headers copied, lengths, IDs, sequence numbers, flags and
/// checksums fixed per segment), a partial checksum is completed.
pub fn encap_segments(
    frame: &[u8],
    off: &Offload,
    max_frame: usize,
    vni: u32,
    out: &mut Vec<u8>,
) -> Result<Segments, OffloadError> {
    out.clear();
    let hdr = encode(vni);
    if off.gso == Gso::None {
        if frame.len() > max_frame {
            return Err(OffloadError::TooBig);
        }
        out.extend_from_slice(&hdr);
        out.extend_from_slice(frame);
        if off.needs_csum {
            checksum::complete(
                &mut out[HEADER_LEN..],
                usize::from(off.csum_start),
                usize::from(off.csum_offset),
            )?;
        }
        return Ok(Segments {
            count: 1,
            stride: out.len(),
            total: out.len(),
        });
    }
    let l = headers(frame).ok_or(OffloadError::Malformed)?;
    let want = match off.gso {
        Gso::TcpV4 => (PROTO_TCP, true),
        Gso::TcpV6 => (PROTO_TCP, false),
        _ => (PROTO_UDP, l.ipv4),
    };
    if (l.proto, l.ipv4) != want || off.gso_size == 0 {
        return Err(OffloadError::Malformed);
    }
    let hl = l.hdrs_len();
    let end = l.l3 + l.l3_len;
    if max_frame <= hl {
        return Err(OffloadError::TooBig);
    }
    let payload = &frame[hl..end];
    let mss = usize::from(off.gso_size).min(max_frame - hl);
    let count = payload.len().div_ceil(mss).max(1);
    out.reserve(count * (HEADER_LEN + hl) + payload.len());
    let tcp = l.proto == PROTO_TCP;
    let ip_id = u16::from_be_bytes([frame[l.l3 + 4], frame[l.l3 + 5]]);
    let seq = u32::from_be_bytes([
        frame[l.l4 + 4],
        frame[l.l4 + 5],
        frame[l.l4 + 6],
        frame[l.l4 + 7],
    ]);
    for i in 0..count {
        let chunk = payload
            .get(i * mss..((i + 1) * mss).min(payload.len()))
            .unwrap_or(&[]);
        let start = out.len() + HEADER_LEN;
        out.extend_from_slice(&hdr);
        out.extend_from_slice(&frame[..hl]);
        out.extend_from_slice(chunk);
        let seg = &mut out[start..];
        let ip_len = hl - l.l3 + chunk.len();
        let l4_len = ip_len - l.ip_hdr_len;
        let ip = &mut seg[l.l3..];
        if l.ipv4 {
            ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&ip_id.wrapping_add(i as u16).to_be_bytes());
            ip[10..12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&ip[..l.ip_hdr_len], 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            ip[4..6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        }
        let l4 = &mut seg[l.l4..];
        if tcp {
            let s = seq.wrapping_add((i * mss) as u32);
            l4[4..8].copy_from_slice(&s.to_be_bytes());
            let mut flags = l4[13];
            if i > 0 {
                flags &= !TCP_CWR;
            }
            if i + 1 < count {
                flags &= !(TCP_FIN | TCP_PSH);
            }
            l4[13] = flags;
        } else {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        let co = l.csum_offset();
        l4[co..co + 2].copy_from_slice(&[0, 0]);
        let pseudo = l.pseudo(seg, l4_len);
        let c = finish(sum(&seg[l.l4..l.l4 + l4_len], pseudo));
        seg[l.l4 + co..l.l4 + co + 2].copy_from_slice(&c.to_be_bytes());
    }
    Ok(Segments {
        count,
        stride: HEADER_LEN + hl + mss,
        total: out.len(),
    })
}

/// How to hand an inner frame that arrived over VXLAN to a port. A kernel peer sends
/// whole TCP (or UDP GSO) super-packets with the checksum left partial (the field
/// holds the pseudo-header sum); a packet larger than `inner_mtu` becomes a GSO frame
/// with segments that fit the inner MTU and its checksum to be completed (the field is
/// rewritten to the pseudo-header sum, as the receiving kernel expects). A small frame
/// whose checksum field holds exactly the pseudo-header sum is marked to complete too,
/// which costs no pass over its payload. Anything else is passed as it is.
pub fn offload_for_inner(frame: &mut [u8], inner_mtu: usize) -> Offload {
    let Some(l) = headers(frame) else {
        return Offload::default();
    };
    if l.proto == 0 {
        return Offload::default();
    }
    let l4_len = l.l3_len - l.ip_hdr_len;
    let co = l.csum_offset();
    let field_at = l.l4 + co;
    let partial = fold(l.pseudo(frame, l4_len));
    let mark = Offload {
        needs_csum: true,
        csum_start: l.l4 as u16,
        csum_offset: co as u16,
        ..Offload::default()
    };
    if l.l3_len > inner_mtu {
        let Some(gso_size) = inner_mtu
            .checked_sub(l.ip_hdr_len + l.l4_hdr_len)
            .filter(|&g| g > 0)
        else {
            return Offload::default();
        };
        frame[field_at..field_at + 2].copy_from_slice(&partial.to_be_bytes());
        return Offload {
            gso: match (l.proto, l.ipv4) {
                (PROTO_TCP, true) => Gso::TcpV4,
                (PROTO_TCP, false) => Gso::TcpV6,
                _ => Gso::UdpL4,
            },
            hdr_len: l.hdrs_len() as u16,
            gso_size: gso_size.min(usize::from(u16::MAX)) as u16,
            ..mark
        };
    }
    let field = u16::from_be_bytes([frame[field_at], frame[field_at + 1]]);
    // UDP over IPv4 with checksum 0 has none: nothing to complete.
    if field == partial && !(l.proto == PROTO_UDP && field == 0) {
        return mark;
    }
    Offload::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtio_round_trip() {
        let o = Offload {
            needs_csum: true,
            gso: Gso::TcpV6,
            ecn: true,
            hdr_len: 86,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
        };
        assert_eq!(Offload::from_virtio(&o.to_virtio()).unwrap(), o);
        let mut ufo = [0u8; VIRTIO_LEN];
        ufo[1] = 3;
        assert_eq!(Offload::from_virtio(&ufo), Err(OffloadError::Unsupported));
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
        let one: Vec<_> = s.chunks(10).collect();
        assert_eq!(one.len(), 5);
    }
}
