//! Big-endian reads and writes at offsets computed at run time (walking headers whose
//! lengths come from the frame itself), where a view's fixed fields do not fit: each
//! returns `None` past the end instead of panicking.

/// Reads a big-endian u16 at `at`; `None` past the end.
#[inline]
pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Writes a big-endian u16 at `at`; `None` (nothing written) past the end.
#[inline]
pub fn put16(b: &mut [u8], at: usize, v: u16) -> Option<()> {
    b.get_mut(at..at.checked_add(2)?)?
        .copy_from_slice(&v.to_be_bytes());
    Some(())
}

/// Reads a big-endian u32 at `at`; `None` past the end.
#[inline]
pub fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Writes a big-endian u32 at `at`; `None` (nothing written) past the end.
#[inline]
pub fn put32(b: &mut [u8], at: usize, v: u32) -> Option<()> {
    b.get_mut(at..at.checked_add(4)?)?
        .copy_from_slice(&v.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_at_the_end() {
        let mut b = [1u8, 2, 3, 4];
        assert_eq!(be16(&b, 2), Some(0x0304));
        assert_eq!(be16(&b, 3), None);
        assert_eq!(be16(&b, usize::MAX), None);
        assert_eq!(be32(&b, 0), Some(0x0102_0304));
        assert_eq!(be32(&b, 1), None);
        assert_eq!(put16(&mut b, 3, 9), None);
        assert_eq!(put32(&mut b, usize::MAX - 1, 9), None);
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(put16(&mut b, 0, 0xabcd), Some(()));
        assert_eq!(b, [0xab, 0xcd, 3, 4]);
        assert_eq!(put32(&mut b, 0, 0x0a0b_0c0d), Some(()));
        assert_eq!(b, [10, 11, 12, 13]);
    }
}
