//! The 802.1Q / 802.1ad tag: its 4 bytes (TPID, then the TCI: PCP, DEI, VID) between
//! the source address and the EtherType, read as a [`Tag`], and pushed or popped in
//! place: into or out of headroom in front of the frame by moving only the 12 address
//! bytes ([`push_in_headroom`], [`pop_to_headroom`]), or, without headroom, by moving
//! what follows the addresses ([`push`], [`pop`]).

use crate::ethernet::{field as eth, is_tag_type};
use crate::{ethertype, WireError};

/// Bytes of one tag.
pub const TAG_LEN: usize = 4;
/// Where a tag sits in a frame: right after the two addresses.
pub const TAG_AT: usize = eth::ETHERTYPE.start;
/// Tag protocol identifier of 802.1Q.
pub const TPID_8021Q: u16 = ethertype::VLAN;
/// Tag protocol identifier of 802.1ad (QinQ service tag).
pub const TPID_8021AD: u16 = ethertype::QINQ;
/// The VID bits of a TCI.
pub const VID_MASK: u16 = 0x0fff;
/// The PCP and DEI bits of a TCI.
pub const PRIO_MASK: u16 = 0xf000;

/// Byte ranges of a tag, counted from the start of the tag.
pub mod field {
    use std::ops::Range;
    /// Tag protocol identifier (0x8100 or 0x88a8).
    pub const TPID: Range<usize> = 0..2;
    /// Tag control information: PCP (3 bits), DEI (1), VID (12).
    pub const TCI: Range<usize> = 2..4;
}

/// A VLAN tag's two fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    /// Tag protocol identifier.
    pub tpid: u16,
    /// Tag control information (PCP, DEI, VID).
    pub tci: u16,
}

impl Tag {
    /// An 802.1Q tag carrying `tci`.
    #[inline]
    pub const fn dot1q(tci: u16) -> Tag {
        Tag {
            tpid: TPID_8021Q,
            tci,
        }
    }

    /// The VLAN ID.
    #[inline]
    pub const fn vid(&self) -> u16 {
        self.tci & VID_MASK
    }

    /// The priority code point.
    #[inline]
    pub const fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }

    /// The tag as it sits on the wire.
    #[inline]
    pub const fn to_bytes(&self) -> [u8; TAG_LEN] {
        let [a, b] = self.tpid.to_be_bytes();
        let [c, d] = self.tci.to_be_bytes();
        [a, b, c, d]
    }

    /// The tag in the first [`TAG_LEN`] bytes of `b`, whatever its TPID; `None` if short.
    #[inline]
    pub fn parse(b: &[u8]) -> Option<Tag> {
        let s = b.get(..TAG_LEN)?;
        Some(Tag {
            tpid: u16::from_be_bytes([s[0], s[1]]),
            tci: u16::from_be_bytes([s[2], s[3]]),
        })
    }

    /// The outer tag of an Ethernet frame, if its EtherType announces one and the frame
    /// holds it.
    #[inline]
    pub fn of_frame(frame: &[u8]) -> Option<Tag> {
        let t = Tag::parse(frame.get(TAG_AT..)?)?;
        is_tag_type(t.tpid).then_some(t)
    }
}

impl From<(u16, u16)> for Tag {
    /// From the (TPID, TCI) pairs the switch passes around.
    #[inline]
    fn from((tpid, tci): (u16, u16)) -> Tag {
        Tag { tpid, tci }
    }
}

/// Inserts `tag` after the addresses of the `len`-byte frame at the start of `buf`,
/// moving only the 12 address bytes: the frame must sit at least [`TAG_LEN`] bytes into
/// the buffer's headroom, i.e. `buf[TAG_LEN..TAG_LEN + len]` holds it and the tagged
/// frame is `buf[..len + TAG_LEN]`. `Truncated` (nothing moved) if the buffer or the
/// frame is too short.
#[inline]
pub fn push_in_headroom(buf: &mut [u8], len: usize, tag: Tag) -> Result<(), WireError> {
    let total = len.checked_add(TAG_LEN).ok_or(WireError::Truncated)?;
    if len < TAG_AT || buf.len() < total {
        return Err(WireError::Truncated);
    }
    buf.copy_within(TAG_LEN..TAG_LEN + TAG_AT, 0);
    buf[TAG_AT..TAG_AT + TAG_LEN].copy_from_slice(&tag.to_bytes());
    Ok(())
}

/// Removes the outer tag of the frame at the start of `buf`, moving only the 12 address
/// bytes: the untagged frame is then `buf[TAG_LEN..]`. Returns the tag; `Truncated`
/// (nothing moved) if the frame has no tag or is too short for one.
#[inline]
pub fn pop_to_headroom(buf: &mut [u8]) -> Result<Tag, WireError> {
    let t = Tag::of_frame(buf).ok_or(WireError::Truncated)?;
    buf.copy_within(..TAG_AT, TAG_LEN);
    Ok(t)
}

/// Inserts `tag` after the addresses of the `len`-byte frame at the start of `buf`,
/// moving what follows the addresses up by [`TAG_LEN`]; the tagged frame is
/// `buf[..len + TAG_LEN]`. `Truncated` (nothing moved) if `buf` has no room.
#[inline]
pub fn push(buf: &mut [u8], len: usize, tag: Tag) -> Result<(), WireError> {
    let total = len.checked_add(TAG_LEN).ok_or(WireError::Truncated)?;
    if len < TAG_AT || buf.len() < total {
        return Err(WireError::Truncated);
    }
    buf.copy_within(TAG_AT..len, TAG_AT + TAG_LEN);
    buf[TAG_AT..TAG_AT + TAG_LEN].copy_from_slice(&tag.to_bytes());
    Ok(())
}

/// Removes the outer tag of the `len`-byte frame at the start of `buf`, moving what
/// follows it down by [`TAG_LEN`]; the untagged frame is `buf[..len - TAG_LEN]`.
/// Returns the tag; `Truncated` (nothing moved) if there is no whole tag.
#[inline]
pub fn pop(buf: &mut [u8], len: usize) -> Result<Tag, WireError> {
    let frame = buf.get(..len).ok_or(WireError::Truncated)?;
    if len < TAG_AT + TAG_LEN + 2 {
        return Err(WireError::Truncated);
    }
    let t = Tag::of_frame(frame).ok_or(WireError::Truncated)?;
    buf.copy_within(TAG_AT + TAG_LEN..len, TAG_AT);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn untagged() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 1, 2, 3]);
        f
    }

    #[test]
    fn tag_fields() {
        let t = Tag::dot1q(0xa00a);
        assert_eq!((t.vid(), t.pcp()), (10, 5));
        assert_eq!(t.to_bytes(), [0x81, 0x00, 0xa0, 0x0a]);
        assert_eq!(Tag::parse(&t.to_bytes()), Some(t));
        assert_eq!(Tag::parse(&[0x81, 0, 1]), None);
        assert_eq!(
            Tag::from((0x88a8, 7)),
            Tag {
                tpid: TPID_8021AD,
                tci: 7
            }
        );
        assert_eq!(Tag::of_frame(&untagged()), None);
        assert_eq!(Tag::of_frame(&untagged()[..13]), None);
    }

    #[test]
    fn push_then_pop_in_place() {
        let f = untagged();
        let mut b = f.clone();
        b.resize(f.len() + TAG_LEN, 0);
        push(&mut b, f.len(), Tag::dot1q(20)).unwrap();
        assert_eq!(&b[12..16], &[0x81, 0, 0, 20]);
        assert_eq!(&b[16..], &f[12..]);
        assert_eq!(Tag::of_frame(&b), Some(Tag::dot1q(20)));
        let len = b.len();
        assert_eq!(pop(&mut b, len), Ok(Tag::dot1q(20)));
        assert_eq!(&b[..f.len()], &f[..]);
        // No room, no tag, or a runt: nothing moves.
        let mut short = f.clone();
        assert_eq!(
            push(&mut short, f.len(), Tag::dot1q(1)),
            Err(WireError::Truncated)
        );
        assert_eq!(pop(&mut short, f.len()), Err(WireError::Truncated));
        assert_eq!(pop(&mut short, f.len() + 1), Err(WireError::Truncated));
        assert_eq!(
            push(&mut short, usize::MAX, Tag::dot1q(1)),
            Err(WireError::Truncated)
        );
        assert_eq!(short, f);
    }

    #[test]
    fn headroom_push_and_pop_move_only_addresses() {
        let f = untagged();
        let mut b = vec![0u8; TAG_LEN];
        b.extend_from_slice(&f);
        push_in_headroom(&mut b, f.len(), Tag::dot1q(30)).unwrap();
        assert_eq!(&b[..12], &f[..12]);
        assert_eq!(&b[12..16], &[0x81, 0, 0, 30]);
        assert_eq!(&b[16..], &f[12..]);
        assert_eq!(pop_to_headroom(&mut b), Ok(Tag::dot1q(30)));
        assert_eq!(&b[TAG_LEN..], &f[..]);
        assert_eq!(
            pop_to_headroom(&mut b[TAG_LEN..]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            push_in_headroom(&mut [0u8; 15], 12, Tag::dot1q(1)),
            Err(WireError::Truncated)
        );
        assert_eq!(
            push_in_headroom(&mut [0u8; 20], 11, Tag::dot1q(1)),
            Err(WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn push_pop_round_trip_agrees_with_etherparse(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            tci in any::<u16>(),
            qinq in any::<bool>(),
        ) {
            let mut f = untagged();
            f.truncate(14);
            f.extend_from_slice(&payload);
            let tpid = if qinq { TPID_8021AD } else { TPID_8021Q };
            let mut b = f.clone();
            b.resize(f.len() + TAG_LEN, 0);
            push(&mut b, f.len(), Tag { tpid, tci }).unwrap();
            let (v, _) = etherparse::SingleVlanHeader::from_slice(&b[14..]).unwrap();
            prop_assert_eq!(v.vlan_id.value(), tci & VID_MASK);
            prop_assert_eq!(v.ether_type.0, 0x0800);
            prop_assert_eq!(Tag::of_frame(&b), Some(Tag { tpid, tci }));
            let len = b.len();
            prop_assert_eq!(pop(&mut b, len), Ok(Tag { tpid, tci }));
            prop_assert_eq!(&b[..f.len()], &f[..]);
        }
    }
}
