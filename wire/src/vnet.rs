//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes) that PACKET_VNET_HDR
//! sockets and IFF_VNET_HDR TAPs put in front of every frame: its one layout and its flag
//! and GSO-type numbers. It describes GSO super-frames and partial checksums; the switch
//! passes it through untouched unless it changes the frame's layout (tag insert/strip),
//! and `vxlan` decodes it into an offload description.
//!
//! Its 16-bit fields are in the host's byte order: this is the legacy header, which the
//! kernel reads so for packet sockets (`virtio_legacy_is_little_endian`) and for TAPs
//! not switched with `TUNSETVNETLE`/`TUNSETVNETBE`, which the switch never does.

use crate::WireError;

/// Size of the legacy virtio-net header used by both port kinds.
pub const LEN: usize = 10;

/// Flag: the checksum starting at `csum_start` is still to be filled in.
pub const F_NEEDS_CSUM: u8 = 1;
/// Flag: the checksum was verified (receive side); asks nothing of the receiver.
pub const F_DATA_VALID: u8 = 2;
/// GSO type: not a super-frame.
pub const GSO_NONE: u8 = 0;
/// GSO type: TCP over IPv4 (TSO).
pub const GSO_TCPV4: u8 = 1;
/// GSO type: UDP fragmentation offload (UFO).
pub const GSO_UDP: u8 = 3;
/// GSO type: TCP over IPv6 (TSO6).
pub const GSO_TCPV6: u8 = 4;
/// GSO type: UDP segmentation (USO, `UDP_SEGMENT`).
pub const GSO_UDP_L4: u8 = 5;
/// GSO type bit: the super-frame has CWR set (ECN).
pub const GSO_ECN: u8 = 0x80;

/// Byte ranges of the header fields.
pub mod field {
    use std::ops::Range;
    /// Flags ([`super::F_NEEDS_CSUM`], [`super::F_DATA_VALID`]).
    pub const FLAGS: usize = 0;
    /// GSO type.
    pub const GSO_TYPE: usize = 1;
    /// Length of the headers before the GSO payload.
    pub const HDR_LEN: Range<usize> = 2..4;
    /// Payload bytes per segment.
    pub const GSO_SIZE: Range<usize> = 4..6;
    /// Where checksumming starts.
    pub const CSUM_START: Range<usize> = 6..8;
    /// Where the checksum goes, relative to `CSUM_START`.
    pub const CSUM_OFFSET: Range<usize> = 8..10;
}

/// A view of a virtio-net header.
#[derive(Debug, Clone, Copy)]
pub struct VnetHdr<T: AsRef<[u8]>> {
    buf: T,
}

impl<'a> From<&'a [u8; LEN]> for VnetHdr<&'a [u8]> {
    /// A header the type system already sized needs no check.
    #[inline]
    fn from(b: &'a [u8; LEN]) -> Self {
        VnetHdr { buf: &b[..] }
    }
}

impl<'a> From<&'a mut [u8; LEN]> for VnetHdr<&'a mut [u8]> {
    /// A header the type system already sized needs no check.
    #[inline]
    fn from(b: &'a mut [u8; LEN]) -> Self {
        VnetHdr { buf: &mut b[..] }
    }
}

impl<T: AsRef<[u8]>> VnetHdr<T> {
    /// Wraps the first [`LEN`] bytes of `buf`; `None` if it is shorter.
    #[inline]
    pub fn new_checked(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= LEN).then_some(VnetHdr { buf })
    }

    /// [`VnetHdr::new_checked`] with the crate's error type.
    #[inline]
    pub fn new(buf: T) -> Result<Self, WireError> {
        Self::new_checked(buf).ok_or(WireError::Truncated)
    }

    #[inline]
    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buf.as_ref()[r];
        u16::from_ne_bytes([b[0], b[1]])
    }

    /// Flags (`F_NEEDS_CSUM`, `F_DATA_VALID`).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[field::FLAGS]
    }

    /// True if the checksum at `csum_start + csum_offset` is partial.
    #[inline]
    pub fn needs_csum(&self) -> bool {
        self.flags() & F_NEEDS_CSUM != 0
    }

    /// GSO type (0 = not a super-frame; the [`GSO_ECN`] bit may be set).
    #[inline]
    pub fn gso_type(&self) -> u8 {
        self.buf.as_ref()[field::GSO_TYPE]
    }

    /// Length of the headers before the GSO payload.
    #[inline]
    pub fn hdr_len(&self) -> u16 {
        self.u16_at(field::HDR_LEN)
    }

    /// Segment size of a super-frame.
    #[inline]
    pub fn gso_size(&self) -> u16 {
        self.u16_at(field::GSO_SIZE)
    }

    /// Where checksumming starts, counted from the start of the frame.
    #[inline]
    pub fn csum_start(&self) -> u16 {
        self.u16_at(field::CSUM_START)
    }

    /// Where the checksum goes, relative to `csum_start`.
    #[inline]
    pub fn csum_offset(&self) -> u16 {
        self.u16_at(field::CSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VnetHdr<T> {
    #[inline]
    fn set_u16_at(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buf.as_mut()[r].copy_from_slice(&v.to_ne_bytes());
    }

    /// Sets the flags.
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        self.buf.as_mut()[field::FLAGS] = v;
    }

    /// Sets the GSO type.
    #[inline]
    pub fn set_gso_type(&mut self, v: u8) {
        self.buf.as_mut()[field::GSO_TYPE] = v;
    }

    /// Sets the length of the headers before the GSO payload.
    #[inline]
    pub fn set_hdr_len(&mut self, v: u16) {
        self.set_u16_at(field::HDR_LEN, v);
    }

    /// Sets the segment size.
    #[inline]
    pub fn set_gso_size(&mut self, v: u16) {
        self.set_u16_at(field::GSO_SIZE, v);
    }

    /// Sets where checksumming starts.
    #[inline]
    pub fn set_csum_start(&mut self, v: u16) {
        self.set_u16_at(field::CSUM_START, v);
    }

    /// Sets where the checksum goes, relative to `csum_start`.
    #[inline]
    pub fn set_csum_offset(&mut self, v: u16) {
        self.set_u16_at(field::CSUM_OFFSET, v);
    }

    /// Moves every frame offset by `delta` bytes, after bytes were inserted in front of
    /// the network header (an 802.1Q tag pushed: 4) or removed (popped: -4).
    #[inline]
    pub fn shift_offsets(&mut self, delta: i16) {
        let shift = |v: u16| v.saturating_add_signed(delta);
        if self.needs_csum() {
            let v = shift(self.csum_start());
            self.set_csum_start(v);
        }
        if self.gso_type() != GSO_NONE {
            let v = shift(self.hdr_len());
            self.set_hdr_len(v);
        }
    }

    /// Clears the header: a plain frame with a complete checksum.
    #[inline]
    pub fn clear(&mut self) {
        self.buf.as_mut()[..LEN].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_moves_only_meaningful_offsets() {
        let mut h = [F_NEEDS_CSUM, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0];
        let mut v = VnetHdr::new_checked(&mut h[..]).unwrap();
        v.shift_offsets(4);
        assert_eq!(v.csum_start(), 38);
        assert_eq!(v.hdr_len(), 58);
        assert_eq!(v.gso_size(), 1448);
        assert_eq!(v.csum_offset(), 16);
        v.shift_offsets(-4);
        assert_eq!((v.csum_start(), v.hdr_len()), (34, 54));
        let mut plain = [0u8; LEN];
        let mut v = VnetHdr::new_checked(&mut plain[..]).unwrap();
        v.shift_offsets(4);
        assert_eq!(plain, [0; LEN]);
        assert!(VnetHdr::new_checked(&[0u8; 9][..]).is_none());
        assert_eq!(
            VnetHdr::new(&[0u8; 9][..]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn setters_write_fields_in_host_byte_order() {
        let mut h = [0xeeu8; LEN];
        let mut v = VnetHdr::from(&mut h);
        v.set_flags(F_NEEDS_CSUM);
        v.set_gso_type(GSO_TCPV6 | GSO_ECN);
        v.set_hdr_len(86);
        v.set_gso_size(1428);
        v.set_csum_start(54);
        v.set_csum_offset(16);
        assert!(v.needs_csum());
        let ne = |v: u16| v.to_ne_bytes();
        let mut want = vec![1, 0x84];
        for v in [86, 1428, 54, 16] {
            want.extend(ne(v));
        }
        assert_eq!(h[..], want[..]);
        #[cfg(target_endian = "little")]
        assert_eq!(h, [1, 0x84, 86, 0, 0x94, 0x05, 54, 0, 16, 0]);
        let v = VnetHdr::from(&h);
        assert_eq!(
            (v.hdr_len(), v.gso_size(), v.csum_start(), v.csum_offset()),
            (86, 1428, 54, 16)
        );
        let mut v = VnetHdr::from(&mut h);
        v.clear();
        assert_eq!(h, [0; LEN]);
    }
}
