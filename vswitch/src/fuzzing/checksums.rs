//! Checksums computed from scratch: the oracle every incremental update is checked against.

use super::*;

pub(super) use wire::bytes::{be16, put16};

/// The checksum a sender computes over `data` with the 16-bit field at `skip` (an even
/// offset) counted as zero, starting from the (pseudo-header) sum `init`.
pub(super) fn fresh(data: &[u8], skip: usize, init: u64) -> u16 {
    let head = data.get(..skip).unwrap_or(data);
    let tail = data.get(skip + 2..).unwrap_or(&[]);
    // `head` has an even length, so summing the two parts equals summing the whole.
    !fold(sum(tail, sum(head, init)))
}

/// One checksum field of a packet and the value a fresh computation puts there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Offset of the 16-bit field in the bytes examined.
    pub at: usize,
    /// What a sender computing it from scratch writes.
    pub want: u16,
}

impl Field {
    /// True if `bytes` hold the fresh value.
    pub fn holds(&self, bytes: &[u8]) -> bool {
        be16(bytes, self.at) == Some(self.want)
    }

    /// True if `bytes` hold a checksum a receiver accepts: the fresh value or, where
    /// that is 0x0000, its other one's-complement form 0xffff (what a NIC completing
    /// TCP and UDP checksums alike writes, and `wire::checksum::complete` with it).
    pub fn valid(&self, bytes: &[u8]) -> bool {
        self.holds(bytes) || (self.want == 0 && be16(bytes, self.at) == Some(0xffff))
    }

    /// [`Field::holds`], or the field holds 0x0000 where a fresh computation gives
    /// 0xffff: what an incremental update (RFC 1624 eqn. 3, as Linux's `csum_replace`)
    /// yields when every byte it covers is zero, which only an ICMP message can be (an
    /// echo reply with identifier, sequence and data all 0).
    pub fn holds_updated(&self, bytes: &[u8]) -> bool {
        self.holds(bytes) || (self.want == 0xffff && be16(bytes, self.at) == Some(0))
    }
}

/// What kind of checksum a [`Field`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// The header checksum of the IPv4 packet quoted by an ICMP error.
    QuotedIp,
    /// TCP, UDP or ICMP, over the whole payload (TCP and UDP with the pseudo-header).
    L4,
    /// The IPv4 header checksum.
    Ip,
}

/// The checksum fields of the IPv4 packet at the start of `ip`, each with its fresh
/// value: the quoted header's of an ICMP error, the TCP/UDP/ICMP one, the header's.
/// The L4 field is left out for fragments, for L4 headers cut short and for a UDP
/// checksum of 0 (none). `None` if `ip` is no IPv4 packet whose total length fits.
pub fn ipv4_fields(ip: &[u8]) -> Option<Vec<(FieldKind, Field)>> {
    let vihl = *ip.first()?;
    let hl = usize::from(vihl & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    if vihl >> 4 != 4 || hl < 20 || total < hl || total > ip.len() {
        return None;
    }
    let mut out = Vec::with_capacity(3);
    let frag = be16(ip, 6)? & 0x3fff != 0;
    let l4 = &ip[hl..total];
    let (src, dst) = (
        [ip[12], ip[13], ip[14], ip[15]],
        [ip[16], ip[17], ip[18], ip[19]],
    );
    let ps = |p: u8| pseudo_v4(src, dst, p, l4.len() as u16);
    match ip[9] {
        _ if frag => {}
        6 if l4.len() >= 20 => out.push((
            FieldKind::L4,
            Field {
                at: hl + 16,
                want: fresh(l4, 16, ps(6)),
            },
        )),
        17 if l4.len() >= 8 && be16(l4, 6) != Some(0) => {
            let c = fresh(l4, 6, ps(17));
            out.push((
                FieldKind::L4,
                Field {
                    at: hl + 6,
                    // RFC 768: a computed 0 is sent as all ones.
                    want: if c == 0 { 0xffff } else { c },
                },
            ));
        }
        1 if l4.len() >= 4 => {
            if matches!(l4[0], 3 | 4 | 5 | 11 | 12) && l4.len() >= 28 {
                let q = &l4[8..];
                let qhl = usize::from(q[0] & 0x0f) * 4;
                if q[0] >> 4 == 4 && qhl >= 20 && qhl <= q.len() {
                    out.push((
                        FieldKind::QuotedIp,
                        Field {
                            at: hl + 8 + 10,
                            want: fresh(&q[..qhl], 10, 0),
                        },
                    ));
                }
            }
            out.push((
                FieldKind::L4,
                Field {
                    at: hl + 2,
                    want: fresh(l4, 2, 0),
                },
            ));
        }
        _ => {}
    }
    out.push((
        FieldKind::Ip,
        Field {
            at: 10,
            want: fresh(&ip[..hl], 10, 0),
        },
    ));
    Some(out)
}

/// Offsets of the checksum fields of `ip` that hold their fresh value.
pub fn ipv4_good(ip: &[u8]) -> Vec<usize> {
    ipv4_fields(ip)
        .unwrap_or_default()
        .iter()
        .filter(|(_, f)| f.holds(ip))
        .map(|(_, f)| f.at)
        .collect()
}

/// Writes every checksum of the IPv4 packet at the start of `ip` as a sender would
/// (quoted header first, since the ICMP checksum covers it). False if it is no IPv4
/// packet [`ipv4_fields`] can read.
pub fn ipv4_fix(ip: &mut [u8]) -> bool {
    // Each pass writes the first stale field; the ones after it are recomputed over
    // what it wrote.
    for _ in 0..4 {
        let Some(fields) = ipv4_fields(ip) else {
            return false;
        };
        match fields.iter().find(|(_, f)| !f.holds(ip)) {
            Some((_, f)) => {
                put16(ip, f.at, f.want);
            }
            None => return true,
        }
    }
    true
}

/// For a TCP or UDP packet (not a fragment) at the start of `ip`: the offset of its
/// checksum field and the partial checksum (CHECKSUM_PARTIAL: the folded pseudo-header
/// sum, not complemented) that belongs there.
pub fn ipv4_partial(ip: &[u8]) -> Option<Field> {
    let hl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    if ip.first()? >> 4 != 4 || hl < 20 || total < hl || total > ip.len() {
        return None;
    }
    if be16(ip, 6)? & 0x3fff != 0 {
        return None;
    }
    let l4_len = total - hl;
    let at = match ip[9] {
        6 if l4_len >= 20 => hl + 16,
        17 if l4_len >= 8 => hl + 6,
        _ => return None,
    };
    let (src, dst) = (
        [ip[12], ip[13], ip[14], ip[15]],
        [ip[16], ip[17], ip[18], ip[19]],
    );
    Some(Field {
        at,
        want: fold(pseudo_v4(src, dst, ip[9], l4_len as u16)),
    })
}

/// For an Ethernet frame (VLAN tags, IPv4 or IPv6) carrying TCP or UDP: the L4
/// checksum field (offset in the frame) with its fresh value. Layout from
/// [`vxlan::offload::headers`]; the arithmetic is this module's own.
pub fn frame_l4_field(frame: &[u8]) -> Option<Field> {
    let l = vxlan::offload::headers(frame)?;
    let ip = l.ip?;
    let l4 = ip.l4?;
    let end = l.l3 + ip.len;
    let seg = frame.get(l4.offset..end)?;
    let tcp = ip.proto == 6;
    let co = if tcp { 16 } else { 6 };
    let len = seg.len();
    let ps = match ip.version {
        vxlan::offload::IpVersion::V4 => {
            let a = frame.get(l.l3 + 12..l.l3 + 20)?;
            sum(a, 0) + u64::from(ip.proto) + len as u64
        }
        vxlan::offload::IpVersion::V6 => {
            let a = frame.get(l.l3 + 8..l.l3 + 40)?;
            sum(a, 0) + u64::from(ip.proto) + (len as u64 >> 16) + (len as u64 & 0xffff)
        }
    };
    let c = fresh(seg, co, ps);
    Some(Field {
        at: l4.offset + co,
        want: if !tcp && c == 0 { 0xffff } else { c },
    })
}

/// For an Ethernet frame carrying IPv4: its header checksum field with the fresh value.
pub fn frame_ip_field(frame: &[u8]) -> Option<Field> {
    let l = vxlan::offload::headers(frame)?;
    let ip = l.ip?;
    if ip.version != vxlan::offload::IpVersion::V4 {
        return None;
    }
    let h = frame.get(l.l3..l.l3 + ip.hdr_len)?;
    Some(Field {
        at: l.l3 + 10,
        want: fresh(h, 10, 0),
    })
}
