//! The VXLAN header (RFC 7348 §5): 8 flag bits (only I is defined), 24 reserved bits,
//! the 24-bit VNI, 8 reserved bits. This module owns its layout: a zero-copy view in
//! the smoltcp style (one length check, then accessors that cannot fail) and the
//! header every sent datagram starts with.
//!
//! RFC 7348: reserved fields are sent as zero and ignored on receipt; the I flag must
//! be set for the VNI to be valid.

/// Bytes of a VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI is valid. Must be set.
pub const FLAG_I: u8 = 0x08;
/// The IANA UDP port of VXLAN.
pub const DEFAULT_PORT: u16 = 4789;
/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0xff_ffff;

mod field {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const RESERVED_1: Range<usize> = 1..4;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED_2: usize = 7;
}

/// A view of a VXLAN header at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buf` if it holds a whole header; the accessors after this cannot fail.
    #[inline]
    pub fn new_checked(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= HEADER_LEN).then_some(Header { buf })
    }

    /// The header's bytes. `new_checked` made sure there are eight, so every
    /// constant index below is in range.
    #[inline]
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.b()[field::FLAGS]
    }

    /// True if the I flag (VNI valid) is set.
    #[inline]
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The VXLAN network identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = self.b();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }

    /// True if every reserved bit (flags other than I, both reserved fields) is zero.
    /// Informational: a receiver must ignore them.
    #[inline]
    pub fn reserved_clear(&self) -> bool {
        let b = self.b();
        b[field::FLAGS] & !FLAG_I == 0
            && b[field::RESERVED_1] == [0, 0, 0]
            && b[field::RESERVED_2] == 0
    }

    /// The bytes after the header: the inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.b().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buf.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the VNI (its low 24 bits).
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        let v = (vni & VNI_MAX).to_be_bytes();
        self.buf.as_mut()[field::VNI].copy_from_slice(&v[1..]);
    }

    /// Writes a whole header: flags = I, the VNI (low 24 bits), reserved fields zero.
    #[inline]
    pub fn set(&mut self, vni: u32) {
        self.buf.as_mut()[..HEADER_LEN].copy_from_slice(&encode(vni));
    }
}

/// A header with the I flag and `vni` (its low 24 bits), reserved fields zero.
#[inline]
pub fn encode(vni: u32) -> [u8; HEADER_LEN] {
    let v = (vni & VNI_MAX).to_be_bytes();
    [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encode_and_read_back() {
        let h = encode(0x12_3456);
        assert_eq!(h, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let v = Header::new_checked(&h[..]).unwrap();
        assert!(v.vni_valid());
        assert!(v.reserved_clear());
        assert_eq!(v.vni(), 0x12_3456);
        assert!(v.payload().is_empty());
        assert!(Header::new_checked(&h[..7]).is_none());
        let mut buf = [0xffu8; 8];
        Header::new_checked(&mut buf[..]).unwrap().set(VNI_MAX + 5);
        assert_eq!(Header::new_checked(&buf[..]).unwrap().vni(), 4);
    }

    #[test]
    fn setters_touch_only_their_field() {
        let mut buf = [0u8; 12];
        let mut h = Header::new_checked(&mut buf[..]).unwrap();
        h.set_vni(0xab_cdef);
        h.set_flags(FLAG_I | 0x80);
        assert_eq!(h.vni(), 0xab_cdef);
        assert!(h.vni_valid());
        assert!(!h.reserved_clear());
        assert_eq!(buf, [0x88, 0, 0, 0, 0xab, 0xcd, 0xef, 0, 0, 0, 0, 0]);
    }

    proptest! {
        #[test]
        fn view_is_total_and_agrees_with_encode(bytes in proptest::collection::vec(any::<u8>(), 0..20), vni in any::<u32>()) {
            match Header::new_checked(&bytes[..]) {
                Some(h) => {
                    prop_assert!(bytes.len() >= HEADER_LEN);
                    prop_assert_eq!(h.vni_valid(), bytes[0] & FLAG_I != 0);
                    prop_assert!(h.vni() <= VNI_MAX);
                    prop_assert_eq!(h.payload(), &bytes[HEADER_LEN..]);
                    let _ = h.reserved_clear();
                }
                None => prop_assert!(bytes.len() < HEADER_LEN),
            }
            let e = encode(vni);
            let h = Header::new_checked(&e[..]).unwrap();
            prop_assert_eq!(h.vni(), vni & VNI_MAX);
            prop_assert!(h.vni_valid() && h.reserved_clear());
        }
    }
}
