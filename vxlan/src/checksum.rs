//! The Internet checksum (RFC 1071), the TCP/UDP pseudo-headers, and completing a
//! checksum a sender left partial, as a NIC does for `CHECKSUM_PARTIAL`.

use crate::offload::OffloadError;

/// Adds `data` as big-endian 16-bit words to `initial`; not folded. Eight bytes at a
/// time: a 64 KiB super-frame is summed once per segment on the encap path.
#[inline]
pub fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = initial;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Two 32-bit halves: each add stays far below 2^64 for any frame size.
        acc = acc.wrapping_add(v >> 32).wrapping_add(v & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc = acc.wrapping_add(u64::from(u16::from_be_bytes([p[0], p[1]])));
    }
    if let [last] = pairs.remainder() {
        acc = acc.wrapping_add(u64::from(*last) << 8);
    }
    acc
}

/// Folds a sum to 16 bits (one's complement addition of its 16-bit pieces).
#[inline]
pub fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The checksum to write for data summing to `s`: the complement, with 0 sent as
/// 0xffff (for UDP 0 means "none"; for TCP the two are the same number).
#[inline]
pub fn finish(s: u64) -> u16 {
    match !fold(s) {
        0 => 0xffff,
        c => c,
    }
}

/// The IPv4 pseudo-header sum for a TCP/UDP segment of `len` bytes.
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u64 {
    sum(&src, 0) + sum(&dst, 0) + u64::from(proto) + u64::from(len)
}

/// The IPv6 pseudo-header sum for a TCP/UDP segment of `len` bytes.
pub fn pseudo_v6(src: [u8; 16], dst: [u8; 16], proto: u8, len: u32) -> u64 {
    sum(&src, 0) + sum(&dst, 0) + u64::from(proto) + u64::from(len >> 16) + u64::from(len & 0xffff)
}

/// Completes a partial checksum: the 16-bit field at `start + offset` holds the sum of
/// the pseudo-header (not inverted); the checksum of `frame[start..]` goes there.
pub fn complete(frame: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let at = start.checked_add(offset).ok_or(OffloadError::Malformed)?;
    if at.checked_add(2).is_none_or(|end| end > frame.len()) {
        return Err(OffloadError::Malformed);
    }
    let c = finish(sum(&frame[start..], 0));
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, for comparison.
    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for p in data.chunks(2) {
            let w = if p.len() == 2 {
                u16::from_be_bytes([p[0], p[1]])
            } else {
                u16::from(p[0]) << 8
            };
            s += u32::from(w);
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn matches_the_definition() {
        for n in 0..64 {
            let d: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(fold(sum(&d, 0)), naive(&d), "len {n}");
        }
        // RFC 1071's example.
        assert_eq!(
            fold(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0)),
            0xddf2
        );
    }

    #[test]
    fn complete_then_verify() {
        let mut f = vec![0u8; 40];
        for (i, b) in f.iter_mut().enumerate() {
            *b = i as u8;
        }
        f[10] = 0;
        f[11] = 0;
        complete(&mut f, 4, 6).unwrap();
        assert_eq!(fold(sum(&f[4..], 0)), 0xffff);
        assert!(complete(&mut f, 39, 0).is_err());
        assert!(complete(&mut f, usize::MAX, 2).is_err());
    }
}
