//! The IPv4 header (RFC 791): a view over a packet that starts at the IP header (the
//! Ethernet header taken off), checked once, with setters for the fields the switch
//! rewrites. Setters write raw fields only; keeping checksums right is the caller's job
//! (incrementally, with [`crate::checksum::update`]).

use std::net::Ipv4Addr;

use crate::WireError;

/// Bytes of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// Byte ranges of the header fields.
pub mod field {
    use std::ops::Range;
    /// Version (high nibble) and header length in 32-bit words (low nibble).
    pub const VER_IHL: usize = 0;
    /// DSCP and ECN.
    pub const TOS: usize = 1;
    /// Total length.
    pub const LENGTH: Range<usize> = 2..4;
    /// Identification.
    pub const IDENT: Range<usize> = 4..6;
    /// Flags and fragment offset.
    pub const FLG_OFF: Range<usize> = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address.
    pub const SRC: Range<usize> = 12..16;
    /// Destination address.
    pub const DST: Range<usize> = 16..20;
    /// Both addresses, source first (what NAT rewrites and the pseudo-header sums).
    pub const ADDRS: Range<usize> = 12..20;
}

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a whole packet: version 4, IHL ≥ 5, header ≤ total length ≤ buffer
    /// (bytes past the total length, such as Ethernet padding, are ignored).
    #[inline]
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let p = Self::new_truncated(buf)?;
        let total = usize::from(p.total_len());
        if total < p.header_len() {
            return Err(WireError::Malformed);
        }
        if total > p.buf.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    /// Wraps a packet of which only the header need be present, as the one quoted in
    /// an ICMP error: version 4, IHL ≥ 5, the whole header in the buffer.
    #[inline]
    pub fn new_truncated(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        let first = *b.first().ok_or(WireError::Truncated)?;
        let hl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || hl < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if b.len() < hl {
            return Err(WireError::Truncated);
        }
        Ok(Ipv4Packet { buf })
    }

    #[inline]
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    #[inline]
    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let s = &self.b()[r];
        u16::from_be_bytes([s[0], s[1]])
    }

    #[inline]
    fn addr_at(&self, r: std::ops::Range<usize>) -> Ipv4Addr {
        let s = &self.b()[r];
        Ipv4Addr::new(s[0], s[1], s[2], s[3])
    }

    /// Header length in bytes (IHL × 4, options included).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }

    /// The total-length field.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    /// True if the don't-fragment flag is set.
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & 0x4000 != 0
    }

    /// True if the more-fragments flag is set.
    #[inline]
    pub fn more_fragments(&self) -> bool {
        self.u16_at(field::FLG_OFF) & 0x2000 != 0
    }

    /// The fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & 0x1fff) << 3
    }

    /// True if the packet is a fragment (more fragments, or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & 0x3fff != 0
    }

    /// The time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }

    /// The protocol number.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        self.addr_at(field::SRC)
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        self.addr_at(field::DST)
    }

    /// True if the header checksum is right.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let h = &self.b()[..self.header_len()];
        match h.first_chunk::<MIN_HEADER_LEN>() {
            Some(w) if h.len() == MIN_HEADER_LEN => sums_to_ones(sum20(w)),
            _ => sums_to_ones(h.chunks_exact(4).fold(0u64, |a, w| {
                a + u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
            })),
        }
    }

    /// The bytes after the header, up to the total length (or the buffer's end for a
    /// truncated packet; none if the total length is shorter than the header).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.b();
        let hl = self.header_len();
        let end = usize::from(self.total_len()).min(b.len()).max(hl);
        &b[hl..end]
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buf.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source address (the checksum is not touched).
    #[inline]
    pub fn set_src_raw(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address (the checksum is not touched).
    #[inline]
    pub fn set_dst_raw(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Sets the time to live (the checksum is not touched).
    #[inline]
    pub fn set_ttl_raw(&mut self, ttl: u8) {
        self.buf.as_mut()[field::TTL] = ttl;
    }

    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        self.set_u16_at(field::CHECKSUM, c);
    }

    /// Recomputes the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = crate::checksum::checksum(&self.b()[..hl]);
        self.set_checksum(c);
    }

    /// The bytes after the header, mutable (see [`Ipv4Packet::payload`]).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let end = usize::from(self.total_len()).min(self.b().len()).max(hl);
        &mut self.buf.as_mut()[hl..end]
    }
}

/// The header of a packet the switch originates: no options, no fragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol number.
    pub protocol: u8,
    /// Bytes after the header.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Bytes [`Ipv4Repr::emit`] writes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes the header, checksum included, at the start of `b`; `Truncated` (nothing
    /// written) if `b` is shorter than the header, `Malformed` if the total length does
    /// not fit its field.
    #[inline]
    pub fn emit(&self, b: &mut [u8]) -> Result<(), WireError> {
        let total = self
            .payload_len
            .checked_add(MIN_HEADER_LEN)
            .and_then(|t| u16::try_from(t).ok())
            .ok_or(WireError::Malformed)?;
        let h = b.get_mut(..MIN_HEADER_LEN).ok_or(WireError::Truncated)?;
        h[field::VER_IHL] = 0x45;
        h[field::TOS] = 0;
        h[field::LENGTH].copy_from_slice(&total.to_be_bytes());
        h[field::IDENT].fill(0);
        h[field::FLG_OFF].fill(0);
        h[field::TTL] = self.ttl;
        h[field::PROTOCOL] = self.protocol;
        h[field::CHECKSUM].fill(0);
        h[field::SRC].copy_from_slice(&self.src.octets());
        h[field::DST].copy_from_slice(&self.dst.octets());
        let c = crate::checksum::checksum(h);
        h[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

/// Checks what a bridge checks of an IPv4 header before it forwards it, as Linux's
/// `br_netfilter` does: version 4, IHL at least 5 and within `buf`, total length at
/// least the header and at most `buf` (Ethernet padding may follow), and the header
/// checksum. The same verdict as [`Ipv4Packet::new_checked`] followed by
/// [`Ipv4Packet::verify_checksum`] (`Malformed` for a wrong checksum), in fewer
/// instructions for the 20-byte header nearly every packet has: it runs for every
/// bridged IPv4 frame.
#[inline]
pub fn check_header(buf: &[u8]) -> Result<(), WireError> {
    if let Some(h) = buf.first_chunk::<MIN_HEADER_LEN>() {
        // Version 4 and IHL 5 in one compare.
        if h[0] == 0x45 {
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if total < MIN_HEADER_LEN {
                return Err(WireError::Malformed);
            }
            if total > buf.len() {
                return Err(WireError::Truncated);
            }
            return if sums_to_ones(sum20(h)) {
                Ok(())
            } else {
                Err(WireError::Malformed)
            };
        }
    }
    let p = Ipv4Packet::new_checked(buf)?;
    if p.verify_checksum() {
        Ok(())
    } else {
        Err(WireError::Malformed)
    }
}

/// The five 32-bit words of a 20-byte header, summed in native byte order: a one's
/// complement sum is the same in any word size and any byte order once folded
/// (RFC 1071 §2), so no byte swaps are needed to test it against all ones.
#[inline]
fn sum20(h: &[u8; MIN_HEADER_LEN]) -> u64 {
    let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    w(0) + w(4) + w(8) + w(12) + w(16)
}

/// Whether a header's word sum folds to 0xffff, the mark of a right checksum. A
/// nonzero sum folds to 0xffff exactly when 0xffff divides it (2^16 ≡ 1 mod 0xffff),
/// and a remainder by a constant is a multiply and a shift, cheaper than three folds.
#[inline]
// `u64::is_multiple_of` is newer than the workspace's rust-version (1.80).
#[allow(clippy::manual_is_multiple_of)]
fn sums_to_ones(s: u64) -> bool {
    s != 0 && s % 0xffff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip_proto as proto;
    use proptest::prelude::*;

    proptest! {
        /// The word-at-a-time check agrees with the general checksum that fills it,
        /// options included, and any change to the header is caught.
        #[test]
        fn verify_agrees_with_fill(
            ihl in 5u8..=15,
            bytes in proptest::collection::vec(any::<u8>(), 60),
            flip in 0usize..60,
        ) {
            let hl = usize::from(ihl) * 4;
            let mut p = bytes;
            p[0] = 0x40 | ihl;
            p[2..4].copy_from_slice(&60u16.to_be_bytes());
            let mut v = Ipv4Packet::new_checked(&mut p[..]).unwrap();
            v.fill_checksum();
            prop_assert!(v.verify_checksum());
            let at = flip % hl;
            if at != 0 && !(2..4).contains(&at) {
                p[at] ^= 0x01;
                let v = Ipv4Packet::new_checked(&p[..]).unwrap();
                prop_assert!(!v.verify_checksum());
            }
        }
    }

    proptest! {
        /// The bridge's one-call check gives the verdict of the view and the general
        /// checksum fold, on headers that are mostly right and on noise.
        #[test]
        fn check_header_agrees_with_the_view(
            mut p in proptest::collection::vec(any::<u8>(), 0..80),
            first in prop_oneof![Just(0x45u8), any::<u8>()],
            total in prop_oneof![20u16..80, any::<u16>()],
            fill in any::<bool>(),
        ) {
            if p.len() >= 4 {
                p[0] = first;
                p[2..4].copy_from_slice(&total.to_be_bytes());
            }
            if fill {
                if let Ok(mut v) = Ipv4Packet::new_checked(&mut p[..]) {
                    v.fill_checksum();
                }
            }
            let want = Ipv4Packet::new_checked(&p[..]).map(|v| {
                crate::checksum::fold(crate::checksum::sum(&p[..v.header_len()], 0)) == 0xffff
            });
            match check_header(&p) {
                Ok(()) => prop_assert_eq!(want, Ok(true)),
                Err(WireError::Malformed) => prop_assert!(matches!(want, Ok(false) | Err(WireError::Malformed))),
                Err(e) => prop_assert_eq!(want, Err(e)),
            }
        }
    }

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
        p.set_ttl_raw(9);
        assert_eq!(p.ttl(), 9);
    }

    #[test]
    fn ipv4_rejects() {
        assert!(Ipv4Packet::new_checked(&[][..]).is_err());
        let mut b = header(28, proto::UDP);
        b[0] = 0x65;
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
        b[0] = 0x44;
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
        b[0] = 0x46; // 24-byte header
        assert!(Ipv4Packet::new_checked(&b[..]).is_ok());
        b[0] = 0x4f; // 60-byte header > total length
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
        let b = header(28, proto::UDP);
        assert_eq!(
            Ipv4Packet::new_checked(&b[..27]).err(),
            Some(WireError::Truncated)
        );
        assert!(Ipv4Packet::new_truncated(&b[..20]).is_ok());
        assert_eq!(
            Ipv4Packet::new_truncated(&b[..19]).err(),
            Some(WireError::Truncated)
        );
        // A quoted header whose total length is below its header length has no payload.
        let mut q = header(28, proto::UDP);
        q[2..4].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_truncated(&q[..]).unwrap().payload(),
            &[] as &[u8]
        );
    }

    #[test]
    fn fragments() {
        let mut b = header(28, proto::UDP);
        b[6] = 0x20;
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().more_fragments());
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().is_fragment());
        b[6] = 0x40; // DF only
        assert!(!Ipv4Packet::new_checked(&b[..]).unwrap().is_fragment());
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().dont_fragment());
        b[6] = 0x00;
        b[7] = 0x03;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.frag_offset(), 24);
        assert!(p.is_fragment());
    }

    #[test]
    fn repr_emits_a_valid_header() {
        let r = Ipv4Repr {
            src: Ipv4Addr::new(172, 18, 0, 1),
            dst: Ipv4Addr::new(172, 18, 0, 2),
            protocol: proto::ICMP,
            payload_len: 36,
            ttl: 64,
        };
        let mut b = vec![0xaau8; 56];
        r.emit(&mut b).unwrap();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(
            (p.src(), p.dst(), p.protocol(), p.ttl(), p.total_len()),
            (r.src, r.dst, 1, 64, 56)
        );
        let (h, _) = etherparse::Ipv4Header::from_slice(&b).unwrap();
        assert_eq!(h.calc_header_checksum(), p.checksum());
        assert_eq!(r.emit(&mut [0u8; 19]), Err(WireError::Truncated));
        let huge = Ipv4Repr {
            payload_len: 65_516,
            ..r
        };
        assert_eq!(huge.emit(&mut b), Err(WireError::Malformed));
    }

    proptest! {
        #[test]
        fn views_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Ipv4Packet::new_truncated(&bytes[..]) {
                let _ = (p.header_len(), p.total_len(), p.ident(), p.more_fragments(), p.frag_offset(),
                         p.is_fragment(), p.ttl(), p.protocol(), p.checksum(), p.src(), p.dst(),
                         p.verify_checksum(), p.payload());
            }
            if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
                prop_assert!(p.header_len() + p.payload().len() == usize::from(p.total_len()));
                let (h, _) = etherparse::Ipv4Header::from_slice(&bytes).unwrap();
                prop_assert_eq!(h.source, p.src().octets());
                prop_assert_eq!(h.protocol.0, p.protocol());
            }
            let mut m = bytes.clone();
            if let Ok(mut p) = Ipv4Packet::new_truncated(&mut m[..]) {
                p.set_src_raw(Ipv4Addr::LOCALHOST);
                p.set_dst_raw(Ipv4Addr::BROADCAST);
                p.fill_checksum();
                let _ = p.payload_mut();
                prop_assert!(p.verify_checksum());
            }
        }
    }
}
