//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes, little-endian on the
//! hosts we run on) that PACKET_VNET_HDR sockets and IFF_VNET_HDR TAPs put in front of
//! every frame. It describes GSO super-frames and partial checksums; the switch passes
//! it through untouched unless it changes the frame's layout (tag insert/strip).

/// Size of the legacy virtio-net header used by both port kinds.
pub const LEN: usize = 10;

/// Flag: the checksum starting at `csum_start` is still to be filled in.
pub const F_NEEDS_CSUM: u8 = 1;
/// GSO type: none.
pub const GSO_NONE: u8 = 0;

mod field {
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: std::ops::Range<usize> = 2..4;
    pub const GSO_SIZE: std::ops::Range<usize> = 4..6;
    pub const CSUM_START: std::ops::Range<usize> = 6..8;
    pub const CSUM_OFFSET: std::ops::Range<usize> = 8..10;
}

/// A view of a virtio-net header.
#[derive(Debug)]
pub struct VnetHdr<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> VnetHdr<T> {
    /// Wraps the first [`LEN`] bytes of `buf`; `None` if it is shorter.
    #[inline]
    pub fn new_checked(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= LEN).then_some(VnetHdr { buf })
    }
    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buf.as_ref()[r];
        u16::from_le_bytes([b[0], b[1]])
    }
    /// Flags (`F_NEEDS_CSUM`, data-valid).
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[field::FLAGS]
    }
    /// GSO type (0 = not a super-frame).
    pub fn gso_type(&self) -> u8 {
        self.buf.as_ref()[field::GSO_TYPE]
    }
    /// Length of the headers before the GSO payload.
    pub fn hdr_len(&self) -> u16 {
        self.u16_at(field::HDR_LEN)
    }
    /// Segment size of a super-frame.
    pub fn gso_size(&self) -> u16 {
        self.u16_at(field::GSO_SIZE)
    }
    /// Where checksumming starts, counted from the start of the frame.
    pub fn csum_start(&self) -> u16 {
        self.u16_at(field::CSUM_START)
    }
    /// Where the checksum goes, relative to `csum_start`.
    pub fn csum_offset(&self) -> u16 {
        self.u16_at(field::CSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VnetHdr<T> {
    /// Moves every frame offset by `delta` bytes, after bytes were inserted in front of
    /// the network header (an 802.1Q tag pushed: 4) or removed (popped: -4).
    pub fn shift_offsets(&mut self, delta: i16) {
        let shift = |v: u16| v.saturating_add_signed(delta);
        if self.flags() & F_NEEDS_CSUM != 0 {
            let v = shift(self.csum_start());
            self.buf.as_mut()[field::CSUM_START].copy_from_slice(&v.to_le_bytes());
        }
        if self.gso_type() != GSO_NONE {
            let v = shift(self.hdr_len());
            self.buf.as_mut()[field::HDR_LEN].copy_from_slice(&v.to_le_bytes());
        }
    }
    /// Clears the header: a plain frame with a complete checksum.
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
    }
}
