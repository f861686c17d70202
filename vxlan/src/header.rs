//! The VXLAN header (RFC 7348 §5): flags (8 bits, only I defined), 24 reserved bits,
//! the 24-bit VNI, 8 reserved bits.

/// Bytes of a VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI is valid. Must be set.
pub const FLAG_I: u8 = 0x08;
/// The IANA UDP port of VXLAN.
pub const DEFAULT_PORT: u16 = 4789;
/// Largest VNI.
pub const VNI_MAX: u32 = 0xff_ffff;

/// A view of a VXLAN header at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buf` if it holds a whole header.
    pub fn new_checked(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= HEADER_LEN).then_some(Header { buf })
    }
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }
    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.b()[0]
    }
    /// True if the I flag (VNI valid) is set.
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_I != 0
    }
    /// The VXLAN network identifier.
    pub fn vni(&self) -> u32 {
        let b = self.b();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Writes flags = I, the VNI (low 24 bits) and zero reserved fields.
    pub fn set(&mut self, vni: u32) {
        self.buf.as_mut()[..HEADER_LEN].copy_from_slice(&encode(vni));
    }
}

/// A header with the I flag and `vni` (its low 24 bits), reserved fields zero.
pub fn encode(vni: u32) -> [u8; HEADER_LEN] {
    let v = (vni & VNI_MAX).to_be_bytes();
    [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_read_back() {
        let h = encode(0x12_3456);
        assert_eq!(h, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let v = Header::new_checked(&h[..]).unwrap();
        assert!(v.vni_valid());
        assert_eq!(v.vni(), 0x12_3456);
        assert!(Header::new_checked(&h[..7]).is_none());
        let mut buf = [0xffu8; 8];
        Header::new_checked(&mut buf[..]).unwrap().set(VNI_MAX + 5);
        assert_eq!(Header::new_checked(&buf[..]).unwrap().vni(), 4);
    }
}
