//! Zero-copy views over an IPv4 packet and its TCP, UDP and ICMP headers, in the
//! smoltcp style: a checked constructor validates lengths once, after which the
//! accessors cannot panic; setters exist when the buffer is mutable. The buffer starts
//! at the IP header (the caller has taken the Ethernet header off).
//!
//! Setters here write raw fields only; keeping checksums right is the job of
//! [`crate::rewrite`].

use std::net::Ipv4Addr;

/// IP protocol numbers this crate knows.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// Bytes of an IPv4 header without options.
pub const IPV4_MIN_HEADER: usize = 20;
/// Bytes of a TCP header without options.
pub const TCP_MIN_HEADER: usize = 20;
/// Bytes of a UDP header.
pub const UDP_HEADER: usize = 8;
/// Bytes of an ICMP header (type, code, checksum, rest of header).
pub const ICMP_HEADER: usize = 8;

/// Reads a big-endian u16 at `at`, 0 if out of range (never reached after a check).
#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Writes a big-endian u16 at `at`; does nothing if out of range.
#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// Reads four bytes at `at` as an address, 0.0.0.0 if out of range.
#[inline]
fn addr(b: &[u8], at: usize) -> Ipv4Addr {
    match b.get(at..at + 4) {
        Some(&[p, q, r, s]) => Ipv4Addr::new(p, q, r, s),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a whole packet: version 4, IHL ≥ 5, header ≤ total length ≤ buffer
    /// (bytes past the total length, such as Ethernet padding, are ignored).
    pub fn new_checked(buf: T) -> Option<Self> {
        let p = Self::new_truncated(buf)?;
        let total = usize::from(p.total_len());
        (total >= p.header_len() && total <= p.buf.as_ref().len()).then_some(p)
    }

    /// Wraps a packet of which only the header need be present, as the one quoted in
    /// an ICMP error: version 4, IHL ≥ 5, the whole header in the buffer.
    pub fn new_truncated(buf: T) -> Option<Self> {
        let b = buf.as_ref();
        let first = *b.first()?;
        let hl = usize::from(first & 0x0f) * 4;
        (first >> 4 == 4 && hl >= IPV4_MIN_HEADER && b.len() >= hl).then_some(Ipv4Packet { buf })
    }

    #[inline]
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Header length in bytes (IHL × 4, options included).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.b().first().copied().unwrap_or(0x45) & 0x0f) * 4
    }

    /// The total-length field.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.b(), 2)
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.b(), 4)
    }

    /// True if the more-fragments flag is set.
    #[inline]
    pub fn more_fragments(&self) -> bool {
        be16(self.b(), 6) & 0x2000 != 0
    }

    /// The fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (be16(self.b(), 6) & 0x1fff) << 3
    }

    /// True if the packet is a fragment (more fragments, or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        be16(self.b(), 6) & 0x3fff != 0
    }

    /// The time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.b().get(8).copied().unwrap_or(0)
    }

    /// The protocol number.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.b().get(9).copied().unwrap_or(0)
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.b(), 10)
    }

    /// The source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        addr(self.b(), 12)
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        addr(self.b(), 16)
    }

    /// True if the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        let h = self.b().get(..self.header_len()).unwrap_or(&[]);
        wire::checksum::fold(wire::checksum::sum(h, 0)) == 0xffff
    }

    /// The bytes after the header, up to the total length (or the buffer's end for a
    /// truncated packet).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.b();
        let end = usize::from(self.total_len()).min(b.len());
        b.get(self.header_len()..end).unwrap_or(&[])
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the source address (the checksum is not touched).
    #[inline]
    pub fn set_src_raw(&mut self, a: Ipv4Addr) {
        if let Some(s) = self.buf.as_mut().get_mut(12..16) {
            s.copy_from_slice(&a.octets());
        }
    }

    /// Sets the destination address (the checksum is not touched).
    #[inline]
    pub fn set_dst_raw(&mut self, a: Ipv4Addr) {
        if let Some(s) = self.buf.as_mut().get_mut(16..20) {
            s.copy_from_slice(&a.octets());
        }
    }

    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buf.as_mut(), 10, c);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = wire::checksum::checksum(self.b().get(..hl).unwrap_or(&[]));
        self.set_checksum(c);
    }

    /// The bytes after the header, mutable (see [`Ipv4Packet::payload`]).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let end = usize::from(self.total_len()).min(self.b().len());
        self.buf.as_mut().get_mut(hl..end).unwrap_or(&mut [])
    }
}

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// The source and destination ports of TCP or UDP: the first four bytes, all that an
/// ICMP error is sure to quote.
#[derive(Debug, Clone, Copy)]
pub struct Ports<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ports<T> {
    /// Wraps `buf` if it holds at least four bytes.
    pub fn new_checked(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= 4).then_some(Ports { buf })
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
}

/// A view of a TCP header.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a segment: at least 20 bytes, and a data offset within the buffer.
    pub fn new_checked(buf: T) -> Option<Self> {
        let b = buf.as_ref();
        let off = usize::from(b.get(12)? >> 4) * 4;
        (b.len() >= TCP_MIN_HEADER && off >= TCP_MIN_HEADER && off <= b.len())
            .then_some(TcpPacket { buf })
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    /// The flags byte (see [`tcp_flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buf.as_ref().get(13).copied().unwrap_or(0)
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 16)
    }
}

/// A view of a UDP header.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a datagram of at least 8 bytes.
    pub fn new_checked(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= UDP_HEADER).then_some(UdpPacket { buf })
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    /// The length field.
    #[inline]
    pub fn len_field(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    /// The checksum field (0: none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }
}

/// ICMP message types this crate acts on.
pub mod icmp_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (port unreachable, fragmentation needed, ...).
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated, still an error that quotes a packet).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// A view of an ICMP message.
#[derive(Debug, Clone, Copy)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps a message of at least 8 bytes.
    pub fn new_checked(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= ICMP_HEADER).then_some(IcmpPacket { buf })
    }

    /// The type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref().first().copied().unwrap_or(0)
    }

    /// The code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buf.as_ref().get(1).copied().unwrap_or(0)
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    /// The echo identifier (bytes 4–5; meaningful for echo messages).
    #[inline]
    pub fn echo_id(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    /// The echo sequence number (bytes 6–7; meaningful for echo messages).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }

    /// True for an echo request or reply.
    #[inline]
    pub fn is_echo(&self) -> bool {
        matches!(
            self.msg_type(),
            icmp_type::ECHO_REQUEST | icmp_type::ECHO_REPLY
        )
    }

    /// True for an error message that quotes the packet it is about.
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            icmp_type::DEST_UNREACHABLE
                | icmp_type::SOURCE_QUENCH
                | icmp_type::REDIRECT
                | icmp_type::TIME_EXCEEDED
                | icmp_type::PARAMETER_PROBLEM
        )
    }

    /// The bytes after the 8-byte header (for an error: the quoted packet).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(ICMP_HEADER..).unwrap_or(&[])
    }

    /// The quoted packet of an error: its IP header and at least 8 bytes after it.
    pub fn quoted(&self) -> Option<Ipv4Packet<&[u8]>> {
        let q = Ipv4Packet::new_truncated(self.payload())?;
        (q.payload().len() >= 8).then_some(q)
    }
}

/// Byte offsets inside an IPv4 header and the L4 headers, for the rewrites.
pub(crate) mod field {
    /// IPv4 header checksum.
    pub const IP_CHECKSUM: usize = 10;
    /// IPv4 source and destination addresses (8 bytes).
    pub const IP_ADDRS: usize = 12;
    /// TCP checksum.
    pub const TCP_CHECKSUM: usize = 16;
    /// UDP checksum.
    pub const UDP_CHECKSUM: usize = 6;
    /// ICMP checksum.
    pub const ICMP_CHECKSUM: usize = 2;
    /// ICMP echo identifier.
    pub const ICMP_ID: usize = 4;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(total: u16, proto: u8) -> Vec<u8> {
        let mut p = vec![0u8; usize::from(total)];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[192, 0, 2, 7]);
        p
    }

    #[test]
    fn ipv4_fields() {
        let mut b = header(28, proto::UDP);
        b.extend_from_slice(&[0; 6]); // Ethernet padding
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.protocol(), proto::UDP);
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.payload().len(), 8);
        assert!(!p.is_fragment());
        p.set_dst_raw(Ipv4Addr::new(1, 2, 3, 4));
        assert!(!p.verify_checksum());
        assert_eq!(p.payload_mut().len(), 8);
    }

    #[test]
    fn ipv4_rejects() {
        assert!(Ipv4Packet::new_checked(&[][..]).is_none());
        let mut b = header(28, proto::UDP);
        b[0] = 0x65;
        assert!(Ipv4Packet::new_checked(&b[..]).is_none());
        b[0] = 0x44;
        assert!(Ipv4Packet::new_checked(&b[..]).is_none());
        b[0] = 0x46; // 24-byte header
        assert!(Ipv4Packet::new_checked(&b[..]).is_some());
        b[0] = 0x4f; // 60-byte header > total length
        assert!(Ipv4Packet::new_checked(&b[..]).is_none());
        let b = header(28, proto::UDP);
        assert!(Ipv4Packet::new_checked(&b[..27]).is_none());
        assert!(Ipv4Packet::new_truncated(&b[..20]).is_some());
        assert!(Ipv4Packet::new_truncated(&b[..19]).is_none());
    }

    #[test]
    fn fragments() {
        let mut b = header(28, proto::UDP);
        b[6] = 0x20;
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().more_fragments());
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().is_fragment());
        b[6] = 0x40; // DF only
        assert!(!Ipv4Packet::new_checked(&b[..]).unwrap().is_fragment());
        b[6] = 0x00;
        b[7] = 0x03;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.frag_offset(), 24);
        assert!(p.is_fragment());
    }

    #[test]
    fn l4_views() {
        let mut t = [0u8; 20];
        t[0..4].copy_from_slice(&[0x1f, 0x90, 0, 80]);
        t[12] = 0x50;
        t[13] = tcp_flags::SYN | tcp_flags::ACK;
        let v = TcpPacket::new_checked(&t[..]).unwrap();
        assert_eq!((v.src_port(), v.dst_port(), v.flags()), (8080, 80, 0x12));
        t[12] = 0x60;
        assert!(TcpPacket::new_checked(&t[..]).is_none());
        t[12] = 0x40;
        assert!(TcpPacket::new_checked(&t[..]).is_none());
        let u = UdpPacket::new_checked(&t[..8]).unwrap();
        assert_eq!(u.src_port(), 8080);
        assert!(UdpPacket::new_checked(&t[..7]).is_none());
        let mut i = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let v = IcmpPacket::new_checked(&i[..]).unwrap();
        assert!(v.is_echo() && !v.is_error());
        assert_eq!(v.echo_id(), 0x1234);
        assert!(v.quoted().is_none());
        i[0] = 3;
        assert!(IcmpPacket::new_checked(&i[..]).unwrap().is_error());
        let ports = Ports::new_checked(&t[..4]).unwrap();
        assert_eq!(ports.dst_port(), 80);
    }

    proptest! {
        #[test]
        fn views_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(p) = Ipv4Packet::new_truncated(&bytes[..]) {
                let _ = (p.header_len(), p.total_len(), p.ident(), p.more_fragments(), p.frag_offset(),
                         p.is_fragment(), p.ttl(), p.protocol(), p.checksum(), p.src(), p.dst(),
                         p.verify_checksum(), p.payload());
            }
            if let Some(p) = Ipv4Packet::new_checked(&bytes[..]) {
                prop_assert!(p.header_len() + p.payload().len() == usize::from(p.total_len()));
            }
            let mut m = bytes.clone();
            if let Some(mut p) = Ipv4Packet::new_truncated(&mut m[..]) {
                p.set_src_raw(Ipv4Addr::LOCALHOST);
                p.set_dst_raw(Ipv4Addr::BROADCAST);
                p.fill_checksum();
                let _ = p.payload_mut();
                prop_assert!(p.verify_checksum());
            }
            if let Some(t) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (t.src_port(), t.dst_port(), t.flags(), t.checksum());
            }
            if let Some(u) = UdpPacket::new_checked(&bytes[..]) {
                let _ = (u.src_port(), u.dst_port(), u.len_field(), u.checksum());
            }
            if let Some(i) = IcmpPacket::new_checked(&bytes[..]) {
                let _ = (i.msg_type(), i.code(), i.checksum(), i.echo_id(), i.echo_seq(), i.is_echo(), i.is_error(), i.payload(), i.quoted());
            }
            if let Some(p) = Ports::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port());
            }
        }
    }
}
