//! The Ethernet II header and [`MacAddr`]: addresses, the EtherType, and whether an
//! 802.1Q/802.1ad tag follows (the tag itself is [`crate::vlan`]'s).

use crate::{ethertype, WireError};

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// Text that is not six colon-separated pairs of hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct MacParseError(pub String);

impl MacAddr {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// True for group (multicast and broadcast) addresses: the I/G bit is set.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// True for 00:00:00:00:00:00.
    #[inline]
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// True for the IEEE 802.1D reserved range 01:80:c2:00:00:00–0f (STP, pause, LACP,
    /// 802.1X, LLDP): a bridge must not forward these.
    #[inline]
    pub fn is_link_local(&self) -> bool {
        self.0[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && self.0[5] & 0xf0 == 0
    }

    /// The address as a u64 (upper 16 bits zero).
    #[inline]
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The address from the low 48 bits of a u64.
    #[inline]
    pub fn from_u64(v: u64) -> Self {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// The address in the six bytes at `at` of `b`; `None` past the end.
    #[inline]
    pub fn read(b: &[u8], at: usize) -> Option<MacAddr> {
        let s = b.get(at..at.checked_add(6)?)?;
        Some(MacAddr([s[0], s[1], s[2], s[3], s[4], s[5]]))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, MacParseError> {
        let bad = || MacParseError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// True if `ethertype` announces a VLAN tag (802.1Q or 802.1ad).
#[inline]
pub const fn is_tag_type(ethertype: u16) -> bool {
    matches!(ethertype, ethertype::VLAN | ethertype::QINQ)
}

/// Byte ranges of the header fields.
pub mod field {
    use std::ops::Range;
    /// Destination address.
    pub const DST: Range<usize> = 0..6;
    /// Source address.
    pub const SRC: Range<usize> = 6..12;
    /// EtherType (or the TPID of a tag).
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// The outer tag's TCI, when tagged.
    pub const TCI: Range<usize> = 14..16;
    /// The EtherType behind the outer tag, when tagged.
    pub const INNER_ETHERTYPE: Range<usize> = 16..18;
    /// Length of an untagged header.
    pub const HEADER_LEN: usize = 14;
    /// Length of a header with one tag.
    pub const TAGGED_HEADER_LEN: usize = 18;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Length of an Ethernet header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = field::TAGGED_HEADER_LEN;

/// A view of an Ethernet frame (without FCS).
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

#[inline]
fn u16_at(b: &[u8], r: std::ops::Range<usize>) -> u16 {
    let s = &b[r];
    u16::from_be_bytes([s[0], s[1]])
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buf` after checking it holds a whole header (and the tag, if tagged).
    #[inline]
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let len = buf.as_ref().len();
        if len < field::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let f = EthernetFrame { buf };
        if f.is_tagged() && len < field::TAGGED_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(f)
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        let b = &self.buf.as_ref()[field::DST];
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        let b = &self.buf.as_ref()[field::SRC];
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The EtherType right after the addresses (0x8100 for a tagged frame).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        u16_at(self.buf.as_ref(), field::ETHERTYPE)
    }

    /// True if the outer EtherType is an 802.1Q or 802.1ad tag.
    #[inline]
    pub fn is_tagged(&self) -> bool {
        is_tag_type(self.ethertype())
    }

    /// The EtherType behind the outer tag of a tagged frame (the frame's own EtherType
    /// if it is untagged): another tag's for a double-tagged frame.
    #[inline]
    pub fn inner_ethertype(&self) -> u16 {
        if self.is_tagged() {
            u16_at(self.buf.as_ref(), field::INNER_ETHERTYPE)
        } else {
            self.ethertype()
        }
    }

    /// Where the payload starts: after the outer tag, if there is one.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            field::TAGGED_HEADER_LEN
        } else {
            field::HEADER_LEN
        }
    }

    /// The TCI of the outer tag (PCP, DEI, VID), or 0 for an untagged frame.
    #[inline]
    pub fn tci(&self) -> u16 {
        if self.is_tagged() {
            u16_at(self.buf.as_ref(), field::TCI)
        } else {
            0
        }
    }

    /// The VLAN ID of the outer tag, or 0 for an untagged frame.
    #[inline]
    pub fn vlan(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The whole frame.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The bytes after the header (and after the outer tag, if tagged).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }

    /// The destination address of `frame` without constructing a view; `None` if short.
    #[inline]
    pub fn peek_dst(frame: &[u8]) -> Option<MacAddr> {
        MacAddr::read(frame, field::DST.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::DST].copy_from_slice(&m.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&m.0);
    }

    /// Sets the EtherType of an untagged frame. Making it a tag's TPID is refused
    /// (`Truncated`, nothing written) when the buffer has no room for the tag, so the
    /// view's length check still holds.
    #[inline]
    pub fn set_ethertype(&mut self, t: u16) -> Result<(), WireError> {
        if is_tag_type(t) && self.buf.as_ref().len() < field::TAGGED_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        self.buf.as_mut()[field::ETHERTYPE].copy_from_slice(&t.to_be_bytes());
        Ok(())
    }

    /// The bytes after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buf.as_mut()[at..]
    }
}

/// Writes an untagged Ethernet header (`dst`, `src`, `ethertype`) at the start of `b`;
/// `Truncated` (nothing written) if `b` is shorter than [`HEADER_LEN`].
#[inline]
pub fn emit_header(
    b: &mut [u8],
    dst: MacAddr,
    src: MacAddr,
    ethertype: u16,
) -> Result<(), WireError> {
    let h = b.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
    h[field::DST].copy_from_slice(&dst.0);
    h[field::SRC].copy_from_slice(&src.0);
    h[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_untagged_and_tagged() {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        f.extend_from_slice(&[0; 46]);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert!(e.dst().is_multicast());
        assert_eq!(e.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(e.vlan(), 0);
        f[12] = 0x81;
        f[13] = 0x00;
        f[14] = 0x20;
        f[15] = 0x0a;
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.vlan(), 10);
        assert!(EthernetFrame::new_checked(&f[..15]).is_err());
        assert!(EthernetFrame::new_checked(&f[..13]).is_err());
    }

    #[test]
    fn mac_text_round_trip() {
        let m: MacAddr = "02:ab:cd:00:11:ff".parse().unwrap();
        assert_eq!(m.to_string(), "02:ab:cd:00:11:ff");
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        assert!("02:ab:cd:00:11".parse::<MacAddr>().is_err());
        assert!("02:ab:cd:00:11:ff:00".parse::<MacAddr>().is_err());
        assert!("zz:ab:cd:00:11:ff".parse::<MacAddr>().is_err());
        assert!("01:80:c2:00:00:0e"
            .parse::<MacAddr>()
            .unwrap()
            .is_link_local());
        assert!(!"01:80:c2:00:00:10"
            .parse::<MacAddr>()
            .unwrap()
            .is_link_local());
    }

    #[test]
    fn mac_parse_error_names_the_text() {
        let e = "02:ab:cd:00:11".parse::<MacAddr>().unwrap_err();
        assert_eq!(e.to_string(), "invalid MAC address \"02:ab:cd:00:11\"");
        assert_eq!(e, MacParseError("02:ab:cd:00:11".into()));
        assert!("2:ab:cd:00:11:ff".parse::<MacAddr>().is_err());
        assert!("".parse::<MacAddr>().is_err());
    }

    #[test]
    fn setters_and_emit() {
        let mut f = [0u8; 20];
        emit_header(
            &mut f,
            MacAddr::BROADCAST,
            MacAddr([2, 0, 0, 0, 0, 9]),
            ethertype::ARP,
        )
        .unwrap();
        let mut e = EthernetFrame::new_checked(&mut f[..]).unwrap();
        assert_eq!(e.ethertype(), ethertype::ARP);
        assert_eq!(e.dst(), MacAddr::BROADCAST);
        e.set_dst(MacAddr([2, 0, 0, 0, 0, 1]));
        e.set_src(MacAddr([2, 0, 0, 0, 0, 2]));
        e.set_ethertype(ethertype::IPV4).unwrap();
        e.payload_mut()[0] = 0x45;
        assert_eq!(e.payload().len(), 6);
        assert_eq!(&f[..14], &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]);
        assert_eq!(f[14], 0x45);
        // A tag's TPID on a buffer too short for the tag would break the view's check.
        let mut short = [0u8; 16];
        let mut e = EthernetFrame::new_checked(&mut short[..]).unwrap();
        assert_eq!(e.set_ethertype(ethertype::VLAN), Err(WireError::Truncated));
        assert!(!e.is_tagged());
        assert!(emit_header(&mut [0u8; 13], MacAddr::BROADCAST, MacAddr::BROADCAST, 0).is_err());
        assert_eq!(MacAddr::read(&f, 15), None);
        assert_eq!(MacAddr::read(&f, usize::MAX), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_agrees_with_etherparse(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            match EthernetFrame::new_checked(&bytes[..]) {
                Ok(e) => {
                    let _ = (e.dst(), e.src(), e.vlan(), e.ethertype(), e.payload());
                    let (hdr, _) = etherparse::Ethernet2Header::from_slice(&bytes).unwrap();
                    proptest::prop_assert_eq!(hdr.destination, e.dst().0);
                    proptest::prop_assert_eq!(hdr.source, e.src().0);
                    proptest::prop_assert_eq!(hdr.ether_type.0, e.ethertype());
                }
                Err(_) => proptest::prop_assert!(bytes.len() < 18),
            }
        }
    }
}
