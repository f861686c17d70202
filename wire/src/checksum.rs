//! The Internet checksum, the one copy of its arithmetic: sums from scratch (RFC 1071),
//! incremental updates when a few fields change (RFC 1624), the TCP/UDP pseudo-header
//! sums, and completing a checksum a sender left partial, as a NIC does for
//! `CHECKSUM_PARTIAL`.
//!
//! Sums are carried unfolded in a `u64` and folded to 16 bits at the end. A sum is
//! congruent to the one's complement sum modulo 0xffff, so sums of pieces can be added
//! with `+`, provided every piece but the last has an even length (an odd piece would
//! shift the bytes after it into the other half of their 16-bit words).

use crate::WireError;

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

/// The sum of a few bytes (a changed field), word by word: for the handful of bytes an
/// incremental update covers, this beats [`sum`]'s wide set-up.
#[inline]
fn sum_words(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// The checksum of `data` as a sender computes it (the complement of the folded sum).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// RFC 1624 eqn. 3: the checksum `hc` after the bytes `old` became `new` (equal
/// lengths, starting at an even offset of the covered data): `~(~hc + ~m + m')`.
/// If the change does not alter the sum, `hc` is returned untouched.
#[inline]
pub fn update(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    let m = fold(sum_words(old));
    let m2 = fold(sum_words(new));
    if m == m2 {
        return hc;
    }
    !fold(u64::from(!hc) + u64::from(!m) + u64::from(m2))
}

/// [`update`] for a UDP checksum: 0 (no checksum) stays 0, and a computed 0 is sent
/// as 0xffff (RFC 768).
#[inline]
pub fn update_udp(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    if hc == 0 {
        return 0;
    }
    match update(hc, old, new) {
        0 => 0xffff,
        c => c,
    }
}

/// [`update`] for a field holding a partial checksum (CHECKSUM_PARTIAL, a virtio-net
/// header's NEEDS_CSUM): the folded pseudo-header sum, not complemented, that the device
/// completes over header and payload later. Only a pseudo-header field (an address)
/// may change here: `fold(hc - m + m')`, as Linux's
/// `inet_proto_csum_replace4(.., pseudohdr = true)`. There is no "0 means none" case.
#[inline]
pub fn update_partial(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    let m = fold(sum_words(old));
    let m2 = fold(sum_words(new));
    if m == m2 {
        return hc;
    }
    fold(u64::from(hc) + u64::from(!m) + u64::from(m2))
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
pub fn complete(frame: &mut [u8], start: usize, offset: usize) -> Result<(), WireError> {
    let at = start.checked_add(offset).ok_or(WireError::Truncated)?;
    let end = at.checked_add(2).ok_or(WireError::Truncated)?;
    if end > frame.len() {
        return Err(WireError::Truncated);
    }
    let covered = frame.get(start..).ok_or(WireError::Truncated)?;
    let c = finish(sum(covered, 0));
    frame
        .get_mut(at..end)
        .ok_or(WireError::Truncated)?
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

    #[test]
    fn rfc1071_example() {
        let rfc = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&rfc, 0)), 0xddf2);
        assert_eq!(checksum(&rfc), !0xddf2);
        assert_eq!(fold(sum(&[], 0)), 0);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(sum(&[0xab], 0)), 0xab00);
    }

    #[test]
    fn udp_zero_stays_zero_and_zero_result_is_ffff() {
        assert_eq!(update_udp(0, &[1, 2], &[3, 4]), 0);
        // Choose a change that makes the full checksum come out 0.
        let data = [0x12u8, 0x34, 0x00, 0x00];
        let hc = checksum(&data);
        // new data sums to 0xffff -> checksum 0 -> sent as 0xffff.
        let new = [0xffu8, 0xff];
        let c = update_udp(hc, &data[..2], &new);
        assert_eq!(c, 0xffff);
    }

    proptest! {
        #[test]
        fn incremental_equals_full(mut data in proptest::collection::vec(any::<u8>(), 2..200), at in 0usize..100, new in any::<[u8; 4]>()) {
            // Data with a leading non-zero word, so its sum is never 0 (as in any real header).
            data[0] |= 0x40;
            let at = (at.min(data.len().saturating_sub(4)) & !1).max(2);
            prop_assume!(at + 4 <= data.len());
            let hc = checksum(&data);
            let old: Vec<u8> = data[at..at + 4].to_vec();
            data[at..at + 4].copy_from_slice(&new);
            prop_assert_eq!(update(hc, &old, &new), checksum(&data));
        }

        #[test]
        fn partial_update_equals_pseudo_sum_of_new_addresses(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), src2 in any::<[u8; 4]>(), dst2 in any::<[u8; 4]>(), proto in any::<u8>(), len in any::<u16>()
        ) {
            let hc = fold(pseudo_v4(src, dst, proto, len));
            let (old, new) = ([src, dst].concat(), [src2, dst2].concat());
            let want = fold(pseudo_v4(src2, dst2, proto, len));
            // 0 and 0xffff are the same one's-complement value; a device completing
            // either gets the same checksum, so compare values, not representations.
            let got = update_partial(hc, &old, &new);
            prop_assert_eq!(u32::from(got) % 0xffff, u32::from(want) % 0xffff);
        }

        #[test]
        fn update_then_back_is_identity(hc in 0u16..0xffff, old in any::<[u8; 6]>(), new in any::<[u8; 6]>()) {
            // 0xffff is excluded: it is -0 and never a computed checksum of non-zero data.
            prop_assert_eq!(update(update(hc, &old, &new), &new, &old), hc);
        }
    }
}
