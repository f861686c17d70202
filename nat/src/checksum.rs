//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624). This
//! module owns the arithmetic; the rewrites in [`crate::rewrite`] call it for every
//! field they change, so no rewrite ever sums a whole payload.
//!
//! Sums are carried unfolded in a `u64` and folded to 16 bits at the end.

/// Adds `data` (big-endian 16-bit words, an odd last byte padded with zero) to
/// `initial`; the result is not folded.
#[inline]
pub fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = initial;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
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
    let m = fold(sum(old, 0));
    let m2 = fold(sum(new, 0));
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
    let m = fold(sum(old, 0));
    let m2 = fold(sum(new, 0));
    if m == m2 {
        return hc;
    }
    fold(u64::from(hc) + u64::from(!m) + u64::from(m2))
}

/// The IPv4 pseudo-header sum for a TCP/UDP segment of `len` bytes (not folded).
#[inline]
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u64 {
    sum(&src, 0) + sum(&dst, 0) + u64::from(proto) + u64::from(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
