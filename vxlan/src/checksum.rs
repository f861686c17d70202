//! The Internet checksum (RFC 1071), the TCP/UDP pseudo-headers, and completing a
//! checksum a sender left partial, as a NIC does for `CHECKSUM_PARTIAL`.
//!
//! Sums are carried unfolded in a `u64` and folded to 16 bits at the end. A sum is
//! congruent to the one's complement sum modulo 0xffff, so sums of pieces can be added
//! with `+`, provided every piece but the last has an even length (an odd piece would
//! shift the bytes after it into the other half of their 16-bit words).

use crate::offload::OffloadError;

/// Bytes summed between two folds of the wide accumulators: 2^28 32-bit words per
/// lane-set keeps each 64-bit lane far from overflow, for input of any length.
const BLOCK: usize = 1 << 30;

/// Adds `data` (as big-endian 16-bit words, an odd last byte padded with zero) to
/// `initial`; the result is not folded.
///
/// Fast path: the one's complement sum does not depend on byte order (RFC 1071 §2B),
/// so the data is read as native-endian 32-bit words into four 64-bit lanes, which the
/// compiler vectorises, and the 16-bit result is swapped once at the end.
#[inline]
pub fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = reduce(initial);
    for block in data.chunks(BLOCK) {
        acc += u64::from(u16::from_be(fold(sum_native(block))));
    }
    acc
}

/// The native-endian sum of `data` (at most [`BLOCK`] bytes), not folded.
#[inline]
fn sum_native(data: &[u8]) -> u64 {
    let mut lanes = [0u64; 4];
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        for (k, w) in c.chunks_exact(4).enumerate() {
            let v = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
            lanes[k & 3] = lanes[k & 3].wrapping_add(u64::from(v));
        }
    }
    let mut acc = lanes.iter().fold(0u64, |a, &l| a.wrapping_add(reduce(l)));
    let mut pairs = chunks.remainder().chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_ne_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        // The odd byte is the high byte of a big-endian word: the first in memory.
        acc += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    acc
}

/// Folds a 64-bit sum to 33 bits, keeping it congruent modulo 0xffff.
#[inline]
fn reduce(s: u64) -> u64 {
    (s & 0xffff_ffff) + (s >> 32)
}

/// Folds a sum to 16 bits (one's complement addition of its 16-bit pieces).
#[inline]
pub fn fold(s: u64) -> u16 {
    let s = reduce(s);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The checksum to write for data summing to `s`: the complement of the folded sum,
/// with 0 sent as 0xffff (for UDP 0 means "no checksum"; for TCP and IPv4 the two are
/// the same number in one's complement). Linux does the same (`CSUM_MANGLED_0`).
#[inline]
pub fn finish(s: u64) -> u16 {
    match !fold(s) {
        0 => 0xffff,
        c => c,
    }
}

/// The IPv4 pseudo-header sum for a TCP/UDP segment of `len` bytes (not folded).
#[inline]
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u64 {
    let w = |a: u8, b: u8| u64::from(u16::from_be_bytes([a, b]));
    w(src[0], src[1])
        + w(src[2], src[3])
        + w(dst[0], dst[1])
        + w(dst[2], dst[3])
        + u64::from(proto)
        + u64::from(len)
}

/// The IPv6 pseudo-header sum for a TCP/UDP segment of `len` bytes (not folded).
#[inline]
pub fn pseudo_v6(src: [u8; 16], dst: [u8; 16], proto: u8, len: u32) -> u64 {
    let words = src
        .chunks_exact(2)
        .chain(dst.chunks_exact(2))
        .map(|p| u64::from(u16::from_be_bytes([p[0], p[1]])))
        .sum::<u64>();
    words + u64::from(proto) + u64::from(len >> 16) + u64::from(len & 0xffff)
}

/// Completes a partial checksum, as a NIC does for `NEEDS_CSUM`: the 16-bit field at
/// `start + offset` holds the pseudo-header sum (folded, not inverted); the checksum of
/// `frame[start..]` (that field included) replaces it, 0 sent as 0xffff. Fails, leaving
/// the frame as it was, if the field is not inside the frame.
pub fn complete(frame: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let at = start.checked_add(offset).ok_or(OffloadError::Malformed)?;
    let end = at.checked_add(2).ok_or(OffloadError::Malformed)?;
    if end > frame.len() {
        return Err(OffloadError::Malformed);
    }
    let covered = frame.get(start..).ok_or(OffloadError::Malformed)?;
    let c = finish(sum(covered, 0));
    frame
        .get_mut(at..end)
        .ok_or(OffloadError::Malformed)?
        .copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook definition, one 16-bit word at a time, for comparison.
    fn naive(data: &[u8], initial: u16) -> u16 {
        let mut s = u32::from(initial);
        for p in data.chunks(2) {
            let w = match p {
                [a, b] => u16::from_be_bytes([*a, *b]),
                [a] => u16::from(*a) << 8,
                _ => 0,
            };
            s += u32::from(w);
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn matches_the_definition() {
        for n in 0..200 {
            let d: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(fold(sum(&d, 0)), naive(&d, 0), "len {n}");
        }
        // RFC 1071 §3's example.
        let rfc = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&rfc, 0)), 0xddf2);
        // All-ones words: a sum of non-zero words never folds to 0.
        assert_eq!(fold(sum(&[0xff; 64], 0)), 0xffff);
        assert_eq!(fold(sum(&[], 0)), 0);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(finish(0xffff), 0xffff);
    }

    #[test]
    fn pseudo_headers_match_their_bytes() {
        let (s, d) = ([10, 0, 0, 1], [192, 168, 7, 9]);
        let bytes = [10, 0, 0, 1, 192, 168, 7, 9, 0, 6, 0x05, 0xdc];
        assert_eq!(fold(pseudo_v4(s, d, 6, 1500)), naive(&bytes, 0));
        let mut s6 = [0u8; 16];
        let mut d6 = [0u8; 16];
        s6[0] = 0x20;
        s6[15] = 1;
        d6[0] = 0xfe;
        d6[15] = 2;
        let mut bytes = [s6, d6].concat();
        bytes.extend_from_slice(&0x0001_0010u32.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(fold(pseudo_v6(s6, d6, 17, 0x0001_0010)), naive(&bytes, 0));
    }

    #[test]
    fn complete_then_verify() {
        let mut f: Vec<u8> = (0..40).collect();
        f[10] = 0;
        f[11] = 0;
        complete(&mut f, 4, 6).unwrap();
        assert_eq!(fold(sum(&f[4..], 0)), 0xffff);
        let before = f.clone();
        assert!(complete(&mut f, 39, 0).is_err());
        assert!(complete(&mut f, 38, 1).is_err());
        assert!(complete(&mut f, usize::MAX, 2).is_err());
        assert!(complete(&mut f, 2, usize::MAX).is_err());
        assert_eq!(f, before);
        assert!(complete(&mut f, 38, 0).is_ok());
    }

    proptest! {
        #[test]
        fn sum_agrees_with_the_definition(data in proptest::collection::vec(any::<u8>(), 0..3000), initial in any::<u16>()) {
            prop_assert_eq!(fold(sum(&data, u64::from(initial))), naive(&data, initial));
        }

        #[test]
        fn sums_of_even_pieces_add(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..300) {
            let cut = (cut * 2).min(data.len() & !1);
            let (a, b) = data.split_at(cut);
            prop_assert_eq!(fold(sum(b, sum(a, 0))), fold(sum(&data, 0)));
            prop_assert_eq!(fold(sum(a, 0) + sum(b, 0)), fold(sum(&data, 0)));
        }

        #[test]
        fn completed_checksums_verify(mut data in proptest::collection::vec(any::<u8>(), 2..2000), start in 0usize..64, offset in 0usize..64, pseudo in any::<u64>()) {
            let len = data.len();
            let start = start.min(len - 2);
            // Checksum fields sit at even offsets from where summing starts.
            let offset = offset.min(len - 2 - start) & !1;
            let at = start + offset;
            // The sender leaves the pseudo-header sum in the field, then the "NIC"
            // completes: the receiver's check (pseudo + data) must come out all ones.
            data[at..at + 2].copy_from_slice(&fold(pseudo).to_be_bytes());
            complete(&mut data, start, offset).unwrap();
            let mut check = data[start..].to_vec();
            let c = u16::from_be_bytes([check[offset], check[offset + 1]]);
            prop_assert_ne!(c, 0);
            check[offset] = 0;
            check[offset + 1] = 0;
            let whole = naive(&check, fold(pseudo));
            prop_assert_eq!(naive(&c.to_be_bytes(), whole), 0xffff);
        }

        #[test]
        fn complete_is_total(mut data in proptest::collection::vec(any::<u8>(), 0..100), start in any::<usize>(), offset in any::<usize>()) {
            let _ = complete(&mut data, start, offset);
            let _ = complete(&mut data, start % 128, offset % 128);
        }
    }
}
