//! ARP (RFC 826) for IPv4 over Ethernet, the only kind the switch answers or sends: the
//! packet view and [`ArpRepr`], which parses and emits it.

use std::net::Ipv4Addr;

use crate::ethernet::MacAddr;
use crate::{ethertype, WireError};

/// Hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Operation: request.
pub const OP_REQUEST: u16 = 1;
/// Operation: reply.
pub const OP_REPLY: u16 = 2;
/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// Byte ranges of the fields of an Ethernet/IPv4 ARP packet.
pub mod field {
    use std::ops::Range;
    /// Hardware type.
    pub const HTYPE: Range<usize> = 0..2;
    /// Protocol type (an EtherType).
    pub const PTYPE: Range<usize> = 2..4;
    /// Hardware address length.
    pub const HLEN: usize = 4;
    /// Protocol address length.
    pub const PLEN: usize = 5;
    /// Operation.
    pub const OPER: Range<usize> = 6..8;
    /// Sender hardware address.
    pub const SHA: Range<usize> = 8..14;
    /// Sender protocol address.
    pub const SPA: Range<usize> = 14..18;
    /// Target hardware address.
    pub const THA: Range<usize> = 18..24;
    /// Target protocol address.
    pub const TPA: Range<usize> = 24..28;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buf` if it holds a whole Ethernet/IPv4 ARP packet ([`PACKET_LEN`] bytes;
    /// more, such as Ethernet padding, is ignored). The address kinds are not checked
    /// here; [`ArpPacket::is_ethernet_ipv4`] and [`ArpRepr::parse`] do.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        Ok(ArpPacket { buf })
    }

    #[inline]
    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buf.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    fn ip_at(&self, r: std::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buf.as_ref()[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline]
    fn mac_at(&self, r: std::ops::Range<usize>) -> MacAddr {
        let b = &self.buf.as_ref()[r];
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The hardware type.
    #[inline]
    pub fn htype(&self) -> u16 {
        self.u16_at(field::HTYPE)
    }

    /// The protocol type.
    #[inline]
    pub fn ptype(&self) -> u16 {
        self.u16_at(field::PTYPE)
    }

    /// The hardware address length.
    #[inline]
    pub fn hlen(&self) -> u8 {
        self.buf.as_ref()[field::HLEN]
    }

    /// The protocol address length.
    #[inline]
    pub fn plen(&self) -> u8 {
        self.buf.as_ref()[field::PLEN]
    }

    /// True if the packet maps IPv4 addresses to Ethernet ones (the layout this view
    /// reads addresses by).
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.htype() == HTYPE_ETHERNET
            && self.ptype() == ethertype::IPV4
            && self.hlen() == 6
            && self.plen() == 4
    }

    /// The operation.
    #[inline]
    pub fn op(&self) -> u16 {
        self.u16_at(field::OPER)
    }

    /// The sender's hardware address.
    #[inline]
    pub fn sha(&self) -> MacAddr {
        self.mac_at(field::SHA)
    }

    /// The sender's protocol address.
    #[inline]
    pub fn spa(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }

    /// The target's hardware address.
    #[inline]
    pub fn tha(&self) -> MacAddr {
        self.mac_at(field::THA)
    }

    /// The target's protocol address.
    #[inline]
    pub fn tpa(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed fields of Ethernet/IPv4 ARP (hardware and protocol types and
    /// lengths).
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buf.as_mut();
        b[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[field::PTYPE].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_op(&mut self, op: u16) {
        self.buf.as_mut()[field::OPER].copy_from_slice(&op.to_be_bytes());
    }

    /// Sets the sender's hardware address.
    #[inline]
    pub fn set_sha(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::SHA].copy_from_slice(&m.0);
    }

    /// Sets the sender's protocol address.
    #[inline]
    pub fn set_spa(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::SPA].copy_from_slice(&a.octets());
    }

    /// Sets the target's hardware address.
    #[inline]
    pub fn set_tha(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::THA].copy_from_slice(&m.0);
    }

    /// Sets the target's protocol address.
    #[inline]
    pub fn set_tpa(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::TPA].copy_from_slice(&a.octets());
    }
}

/// An Ethernet/IPv4 ARP packet, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// The operation ([`OP_REQUEST`], [`OP_REPLY`]).
    pub op: u16,
    /// The sender's hardware address.
    pub sha: MacAddr,
    /// The sender's protocol address.
    pub spa: Ipv4Addr,
    /// The target's hardware address.
    pub tha: MacAddr,
    /// The target's protocol address.
    pub tpa: Ipv4Addr,
}

impl ArpRepr {
    /// Reads `p`; `Malformed` unless it maps IPv4 to Ethernet addresses.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<ArpRepr, WireError> {
        if !p.is_ethernet_ipv4() {
            return Err(WireError::Malformed);
        }
        Ok(ArpRepr {
            op: p.op(),
            sha: p.sha(),
            spa: p.spa(),
            tha: p.tha(),
            tpa: p.tpa(),
        })
    }

    /// Bytes [`ArpRepr::emit`] writes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into `p`.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut ArpPacket<T>) {
        p.set_ethernet_ipv4();
        p.set_op(self.op);
        p.set_sha(self.sha);
        p.set_spa(self.spa);
        p.set_tha(self.tha);
        p.set_tpa(self.tpa);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn repr() -> ArpRepr {
        ArpRepr {
            op: OP_REQUEST,
            sha: MacAddr([2, 0, 0, 0, 0, 1]),
            spa: Ipv4Addr::new(172, 18, 0, 2),
            tha: MacAddr([0; 6]),
            tpa: Ipv4Addr::new(172, 18, 0, 1),
        }
    }

    #[test]
    fn emit_then_parse() {
        let mut b = [0u8; PACKET_LEN + 4];
        let r = repr();
        r.emit(&mut ArpPacket::new_checked(&mut b[..]).unwrap());
        assert_eq!(
            &b[..PACKET_LEN],
            &[
                0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 172, 18, 0, 2, 0, 0, 0, 0, 0, 0, 172, 18,
                0, 1
            ]
        );
        let p = ArpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), Ok(r));
        assert_eq!(r.buffer_len(), 28);
    }

    #[test]
    fn rejects_short_and_foreign() {
        let mut b = [0u8; PACKET_LEN];
        repr().emit(&mut ArpPacket::new_checked(&mut b[..]).unwrap());
        assert_eq!(
            ArpPacket::new_checked(&b[..27]).err(),
            Some(WireError::Truncated)
        );
        for (at, v) in [(1, 6u8), (2, 0x86), (4, 16), (5, 16)] {
            let mut c = b;
            c[at] = v;
            let p = ArpPacket::new_checked(&c[..]).unwrap();
            assert!(!p.is_ethernet_ipv4());
            assert_eq!(ArpRepr::parse(&p), Err(WireError::Malformed));
        }
    }

    proptest! {
        #[test]
        fn emit_lays_out_rfc826_and_parses_back(op in 1u16..3, sha in any::<[u8; 6]>(), spa in any::<[u8; 4]>(), tha in any::<[u8; 6]>(), tpa in any::<[u8; 4]>()) {
            let r = ArpRepr { op, sha: MacAddr(sha), spa: spa.into(), tha: MacAddr(tha), tpa: tpa.into() };
            let mut b = [0u8; PACKET_LEN];
            r.emit(&mut ArpPacket::new_checked(&mut b[..]).unwrap());
            // RFC 826's layout spelled out, independently of `field`.
            let want = [&[0, 1, 8, 0, 6, 4][..], &op.to_be_bytes(), &sha, &spa, &tha, &tpa].concat();
            prop_assert_eq!(&b[..], &want[..]);
            prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()), Ok(r));
        }

        #[test]
        fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (p.htype(), p.ptype(), p.hlen(), p.plen(), p.op(), p.sha(), p.spa(), p.tha(), p.tpa());
                let _ = ArpRepr::parse(&p);
            } else {
                prop_assert!(bytes.len() < PACKET_LEN);
            }
        }
    }
}
