//! The UDP header (RFC 768), and [`Ports`]: the four bytes TCP and UDP share, all that
//! an ICMP error is sure to quote.

use crate::WireError;

/// Bytes of a UDP header.
pub const HEADER_LEN: usize = 8;

/// Byte ranges of the header fields.
pub mod field {
    use std::ops::Range;
    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Length (header and payload).
    pub const LENGTH: Range<usize> = 4..6;
    /// Checksum (0: none).
    pub const CHECKSUM: Range<usize> = 6..8;
}

#[inline]
fn u16_at(b: &[u8], r: std::ops::Range<usize>) -> u16 {
    let s = &b[r];
    u16::from_be_bytes([s[0], s[1]])
}

/// The source and destination ports of TCP or UDP.
#[derive(Debug, Clone, Copy)]
pub struct Ports<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ports<T> {
    /// Wraps `buf` if it holds at least four bytes.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < field::DST_PORT.end {
            return Err(WireError::Truncated);
        }
        Ok(Ports { buf })
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), field::DST_PORT)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ports<T> {
    /// Sets the source port (no checksum is touched).
    #[inline]
    pub fn set_src_port(&mut self, p: u16) {
        self.buf.as_mut()[field::SRC_PORT].copy_from_slice(&p.to_be_bytes());
    }

    /// Sets the destination port (no checksum is touched).
    #[inline]
    pub fn set_dst_port(&mut self, p: u16) {
        self.buf.as_mut()[field::DST_PORT].copy_from_slice(&p.to_be_bytes());
    }
}

/// A view of a UDP header.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a datagram of at least 8 bytes (the length field is not checked: NAT
    /// passes on what it cannot judge).
    #[inline]
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(UdpPacket { buf })
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), field::DST_PORT)
    }

    /// The length field.
    #[inline]
    pub fn len_field(&self) -> u16 {
        u16_at(self.buf.as_ref(), field::LENGTH)
    }

    /// The checksum field (0: none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), field::CHECKSUM)
    }

    /// The bytes after the header, to the buffer's end.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (the checksum is not touched).
    #[inline]
    pub fn set_src_port(&mut self, p: u16) {
        self.buf.as_mut()[field::SRC_PORT].copy_from_slice(&p.to_be_bytes());
    }

    /// Sets the destination port (the checksum is not touched).
    #[inline]
    pub fn set_dst_port(&mut self, p: u16) {
        self.buf.as_mut()[field::DST_PORT].copy_from_slice(&p.to_be_bytes());
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len_field(&mut self, l: u16) {
        self.buf.as_mut()[field::LENGTH].copy_from_slice(&l.to_be_bytes());
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        self.buf.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_setters_and_rejects() {
        let mut u = [0x1fu8, 0x90, 0, 80, 0, 12, 0xab, 0xcd, 1, 2, 3, 4];
        let v = UdpPacket::new_checked(&u[..]).unwrap();
        assert_eq!(
            (v.src_port(), v.dst_port(), v.len_field(), v.checksum()),
            (8080, 80, 12, 0xabcd)
        );
        assert_eq!(v.payload(), &[1, 2, 3, 4]);
        assert_eq!(
            UdpPacket::new_checked(&u[..7]).err(),
            Some(WireError::Truncated)
        );
        let mut v = UdpPacket::new_checked(&mut u[..]).unwrap();
        v.set_src_port(1);
        v.set_dst_port(2);
        v.set_len_field(8);
        v.set_checksum(0);
        assert_eq!(&u[..8], &[0, 1, 0, 2, 0, 8, 0, 0]);
        let mut p = Ports::new_checked(&mut u[..4]).unwrap();
        p.set_dst_port(443);
        assert_eq!((p.src_port(), p.dst_port()), (1, 443));
        assert_eq!(
            Ports::new_checked(&u[..3]).err(),
            Some(WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn total_and_agrees_with_etherparse(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            match UdpPacket::new_checked(&bytes[..]) {
                Ok(u) => {
                    let (h, _) = etherparse::UdpHeader::from_slice(&bytes).unwrap();
                    prop_assert_eq!((h.source_port, h.destination_port, h.length, h.checksum), (u.src_port(), u.dst_port(), u.len_field(), u.checksum()));
                    let _ = u.payload();
                }
                Err(_) => prop_assert!(bytes.len() < HEADER_LEN),
            }
            if let Ok(p) = Ports::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port());
            }
        }
    }
}
