//! Test frames built byte by byte, and checks that use etherparse and a textbook
//! checksum, so the crate's own parser and checksum code are not their own judges.

use etherparse::{NetHeaders, PacketHeaders, TransportHeader};

/// What the TCP/UDP checksum field of a built frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csum {
    /// The full checksum, as on the wire.
    Complete,
    /// The pseudo-header sum, folded, not inverted: what a TSO/`CHECKSUM_PARTIAL`
    /// sender leaves for the NIC.
    Partial,
    /// This value.
    Value(u16),
}

/// A TCP or UDP frame to build.
#[derive(Debug, Clone)]
pub struct Spec {
    pub v6: bool,
    pub tcp: bool,
    /// 802.1Q tags in front (VLAN 10, then 20).
    pub tags: u8,
    /// Bytes of IPv4 options (a multiple of 4, at most 40).
    pub ip_options: usize,
    /// Bytes of TCP options (a multiple of 4, at most 40).
    pub tcp_options: usize,
    pub payload: Vec<u8>,
    /// TCP flags byte.
    pub flags: u8,
    pub seq: u32,
    pub ip_id: u16,
    pub csum: Csum,
}

/// A recognisable payload of `n` bytes.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

impl Spec {
    fn base(v6: bool, tcp: bool, n: usize) -> Spec {
        Spec {
            v6,
            tcp,
            tags: 0,
            ip_options: 0,
            tcp_options: 0,
            payload: pattern(n),
            flags: 0x10,
            seq: 1000,
            ip_id: 0x1234,
            csum: Csum::Complete,
        }
    }
    /// TCP over IPv4 with `n` payload bytes, complete checksum.
    pub fn tcp4(n: usize) -> Spec {
        Self::base(false, true, n)
    }
    /// TCP over IPv6 with `n` payload bytes, complete checksum.
    pub fn tcp6(n: usize) -> Spec {
        Self::base(true, true, n)
    }
    /// UDP over IPv4 with `n` payload bytes, complete checksum.
    pub fn udp4(n: usize) -> Spec {
        Self::base(false, false, n)
    }
    /// UDP over IPv6 with `n` payload bytes, complete checksum.
    pub fn udp6(n: usize) -> Spec {
        Self::base(true, false, n)
    }
}

/// The one's complement sum of the concatenated parts, one 16-bit word at a time.
pub fn naive_sum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut s: u32 = 0;
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

/// The pseudo-header bytes of an IP packet `ip` whose TCP/UDP part is `l4_len` long.
fn pseudo_bytes(ip: &[u8], v6: bool, proto: u8, l4_len: usize) -> Vec<u8> {
    if v6 {
        [
            &ip[8..40],
            &(l4_len as u32).to_be_bytes()[..],
            &[0, 0, 0, proto],
        ]
        .concat()
    } else {
        [&ip[12..20], &[0, proto], &(l4_len as u16).to_be_bytes()[..]].concat()
    }
}

/// Builds the frame `s` describes.
pub fn frame(s: &Spec) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    for (i, vid) in [10u16, 20].iter().take(usize::from(s.tags)).enumerate() {
        f.extend_from_slice(if i == 0 { &[0x88, 0xa8] } else { &[0x81, 0x00] });
        f.extend_from_slice(&vid.to_be_bytes());
    }
    // With two tags the outer is 802.1ad; with one, 802.1Q.
    if s.tags == 1 {
        f[12..14].copy_from_slice(&[0x81, 0x00]);
    }
    f.extend_from_slice(if s.v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let l3 = f.len();
    let proto = if s.tcp { 6 } else { 17 };
    let l4_hdr = if s.tcp { 20 + s.tcp_options } else { 8 };
    let l4_len = l4_hdr + s.payload.len();
    if s.v6 {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        let ihl = 20 + s.ip_options;
        f.push(0x40 | (ihl / 4) as u8);
        f.push(0);
        f.extend_from_slice(&((ihl + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&s.ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        // NOPs, then end of options.
        f.extend(std::iter::repeat_n(1u8, s.ip_options));
        if s.ip_options > 0 {
            *f.last_mut().unwrap() = 0;
        }
        let c = !naive_sum(&[&f[l3..]]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = f.len();
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    if s.tcp {
        f.extend_from_slice(&s.seq.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.push(((l4_hdr / 4) as u8) << 4);
        f.push(s.flags);
        f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        f.extend(std::iter::repeat_n(1u8, s.tcp_options));
    } else {
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend_from_slice(&s.payload);
    let co = l4 + if s.tcp { 16 } else { 6 };
    let pseudo = pseudo_bytes(&f[l3..], s.v6, proto, l4_len);
    let c = match s.csum {
        Csum::Complete => match !naive_sum(&[&pseudo, &f[l4..]]) {
            0 => 0xffff,
            c => c,
        },
        Csum::Partial => naive_sum(&[&pseudo]),
        Csum::Value(v) => v,
    };
    f[co..co + 2].copy_from_slice(&c.to_be_bytes());
    f
}

/// A parsed, verified TCP/UDP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    pub seq: u32,
    pub flags: u8,
    pub ip_id: Option<u16>,
    pub payload: Vec<u8>,
}

/// Parses `frame` with etherparse and checks it as a receiver would: IPv4 header
/// checksum, TCP/UDP checksum (both etherparse's and the textbook sum), UDP length.
pub fn verify(frame: &[u8]) -> Result<Seg, String> {
    let h = PacketHeaders::from_ethernet_slice(frame).map_err(|e| format!("etherparse: {e}"))?;
    let payload = h.payload.slice();
    // Where the payload sits in the frame (the frame may carry Ethernet padding).
    let pay_at = payload.as_ptr() as usize - frame.as_ptr() as usize;
    let (ip_id, ip_hdr_len, v6) = match &h.net {
        Some(NetHeaders::Ipv4(ip, _)) => {
            if ip.calc_header_checksum() != ip.header_checksum {
                return Err("bad IPv4 header checksum".into());
            }
            (Some(ip.identification), ip.header_len(), false)
        }
        Some(NetHeaders::Ipv6(_, _)) => (None, 40, true),
        None => return Err("no IP".into()),
    };
    let (seq, flags, l4_hdr, proto, field, calc) = match (&h.transport, &h.net) {
        (Some(TransportHeader::Tcp(t)), Some(NetHeaders::Ipv4(ip, _))) => {
            let c = t
                .calc_checksum_ipv4(ip, payload)
                .map_err(|e| e.to_string())?;
            (
                t.sequence_number,
                frame_flags(t),
                t.header_len(),
                6,
                t.checksum,
                c,
            )
        }
        (Some(TransportHeader::Tcp(t)), Some(NetHeaders::Ipv6(ip, _))) => {
            let c = t
                .calc_checksum_ipv6(ip, payload)
                .map_err(|e| e.to_string())?;
            (
                t.sequence_number,
                frame_flags(t),
                t.header_len(),
                6,
                t.checksum,
                c,
            )
        }
        (Some(TransportHeader::Udp(u)), Some(NetHeaders::Ipv4(ip, _))) => {
            let c = u
                .calc_checksum_ipv4(ip, payload)
                .map_err(|e| e.to_string())?;
            if usize::from(u.length) != 8 + payload.len() {
                return Err("bad UDP length".into());
            }
            (0, 0, 8, 17, u.checksum, c)
        }
        (Some(TransportHeader::Udp(u)), Some(NetHeaders::Ipv6(ip, _))) => {
            let c = u
                .calc_checksum_ipv6(ip, payload)
                .map_err(|e| e.to_string())?;
            if usize::from(u.length) != 8 + payload.len() {
                return Err("bad UDP length".into());
            }
            (0, 0, 8, 17, u.checksum, c)
        }
        _ => return Err("no TCP/UDP".into()),
    };
    // etherparse writes a TCP checksum of 0 where we (like Linux) write 0xffff.
    if !(calc == field || (calc == 0 && field == 0xffff)) {
        return Err(format!("bad L4 checksum {field:#06x}, want {calc:#06x}"));
    }
    let l4_at = pay_at - l4_hdr;
    let l4 = &frame[l4_at..pay_at + payload.len()];
    let ip_hdr = &frame[l4_at - ip_hdr_len..l4_at];
    let pseudo = pseudo_bytes(ip_hdr, v6, proto, l4.len());
    if naive_sum(&[&pseudo, l4]) != 0xffff {
        return Err("L4 checksum does not sum to all ones".into());
    }
    Ok(Seg {
        seq,
        flags,
        ip_id,
        payload: payload.to_vec(),
    })
}

fn frame_flags(t: &etherparse::TcpHeader) -> u8 {
    let bits = [
        (t.fin, 0x01),
        (t.syn, 0x02),
        (t.rst, 0x04),
        (t.psh, 0x08),
        (t.ack, 0x10),
        (t.urg, 0x20),
        (t.ece, 0x40),
        (t.cwr, 0x80),
    ];
    bits.iter().filter(|(on, _)| *on).map(|(_, b)| b).sum()
}
