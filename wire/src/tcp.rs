//! The TCP header (RFC 9293): the fields conntrack and NAT read (ports, flags) and
//! rewrite (ports, checksum).

use crate::WireError;

/// Bytes of a TCP header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// Flag bits of the flags byte.
pub mod flags {
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

/// Byte ranges of the header fields.
pub mod field {
    use std::ops::Range;
    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Sequence number.
    pub const SEQ: Range<usize> = 4..8;
    /// Acknowledgment number.
    pub const ACK: Range<usize> = 8..12;
    /// Data offset (high nibble, in 32-bit words).
    pub const DATA_OFF: usize = 12;
    /// Flags.
    pub const FLAGS: usize = 13;
    /// Window.
    pub const WINDOW: Range<usize> = 14..16;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 16..18;
    /// Urgent pointer.
    pub const URGENT: Range<usize> = 18..20;
}

/// A view of a TCP header.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a segment: at least 20 bytes, and a data offset within the buffer.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let off = usize::from(b[field::DATA_OFF] >> 4) * 4;
        if off < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if off > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(TcpPacket { buf })
    }

    #[inline]
    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let s = &self.buf.as_ref()[r];
        u16::from_be_bytes([s[0], s[1]])
    }

    #[inline]
    fn u32_at(&self, r: std::ops::Range<usize>) -> u32 {
        let s = &self.buf.as_ref()[r];
        u32::from_be_bytes([s[0], s[1], s[2], s[3]])
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// The sequence number.
    #[inline]
    pub fn seq(&self) -> u32 {
        self.u32_at(field::SEQ)
    }

    /// The acknowledgment number.
    #[inline]
    pub fn ack(&self) -> u32 {
        self.u32_at(field::ACK)
    }

    /// Header length in bytes (options included).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags byte (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[field::FLAGS]
    }

    /// The window.
    #[inline]
    pub fn window(&self) -> u16 {
        self.u16_at(field::WINDOW)
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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
    fn fields_and_rejects() {
        let mut t = [0u8; 24];
        t[0..4].copy_from_slice(&[0x1f, 0x90, 0, 80]);
        t[4..8].copy_from_slice(&7u32.to_be_bytes());
        t[12] = 0x50;
        t[13] = flags::SYN | flags::ACK;
        let v = TcpPacket::new_checked(&t[..20]).unwrap();
        assert_eq!((v.src_port(), v.dst_port(), v.flags()), (8080, 80, 0x12));
        assert_eq!(
            (v.seq(), v.ack(), v.header_len(), v.payload().len()),
            (7, 0, 20, 0)
        );
        t[12] = 0x60;
        assert_eq!(
            TcpPacket::new_checked(&t[..20]).err(),
            Some(WireError::Truncated)
        );
        assert!(TcpPacket::new_checked(&t[..]).is_ok());
        t[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&t[..]).err(),
            Some(WireError::Malformed)
        );
        assert_eq!(
            TcpPacket::new_checked(&t[..19]).err(),
            Some(WireError::Truncated)
        );
        t[12] = 0x50;
        let mut v = TcpPacket::new_checked(&mut t[..]).unwrap();
        v.set_src_port(1);
        v.set_dst_port(2);
        v.set_checksum(0xbeef);
        assert_eq!((v.src_port(), v.dst_port(), v.checksum()), (1, 2, 0xbeef));
        assert_eq!(&t[16..18], &[0xbe, 0xef]);
    }

    proptest! {
        #[test]
        fn total_and_agrees_with_etherparse(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            match TcpPacket::new_checked(&bytes[..]) {
                Ok(t) => {
                    let (h, _) = etherparse::TcpHeader::from_slice(&bytes).unwrap();
                    prop_assert_eq!((h.source_port, h.destination_port, h.checksum), (t.src_port(), t.dst_port(), t.checksum()));
                    prop_assert_eq!((h.sequence_number, h.acknowledgment_number, h.window_size), (t.seq(), t.ack(), t.window()));
                    prop_assert_eq!(h.header_len(), t.header_len());
                    let _ = (t.flags(), t.payload());
                }
                Err(_) => prop_assert!(etherparse::TcpHeader::from_slice(&bytes).is_err()),
            }
        }
    }
}
