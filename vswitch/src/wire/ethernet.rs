//! Ethernet II header, with 802.1Q tag detection.

use super::WireError;

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts
                .next()
                .ok_or_else(|| format!("invalid MAC address {s:?}"))?;
            if p.len() != 2 {
                return Err(format!("invalid MAC address {s:?}"));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("invalid MAC address {s:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("invalid MAC address {s:?}"));
        }
        Ok(MacAddr(out))
    }
}

/// EtherType of an 802.1Q tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ) service tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

/// True if `ethertype` announces a VLAN tag (802.1Q or 802.1ad).
#[inline]
pub const fn is_tag_type(ethertype: u16) -> bool {
    matches!(ethertype, ETHERTYPE_VLAN | ETHERTYPE_QINQ)
}

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const TCI: Range<usize> = 14..16;
    pub const HEADER_LEN: usize = 14;
    pub const TAGGED_HEADER_LEN: usize = 18;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = field::HEADER_LEN;

/// A view of an Ethernet frame (without FCS).
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
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

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        let b = self.buf.as_ref();
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
        let b = &self.buf.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
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
            let b = &self.buf.as_ref()[field::TAGGED_HEADER_LEN - 2..field::TAGGED_HEADER_LEN];
            u16::from_be_bytes([b[0], b[1]])
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
            let b = &self.buf.as_ref()[field::TCI];
            u16::from_be_bytes([b[0], b[1]])
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

    /// The destination address of `frame` without constructing a view; `None` if short.
    #[inline]
    pub fn peek_dst(frame: &[u8]) -> Option<MacAddr> {
        let b = frame.get(field::DST)?;
        Some(MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]]))
    }
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

    proptest::proptest! {
        #[test]
        fn never_panics_and_agrees_with_etherparse(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            match EthernetFrame::new_checked(&bytes[..]) {
                Ok(e) => {
                    let _ = (e.dst(), e.src(), e.vlan(), e.ethertype());
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
