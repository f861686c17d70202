//! ICMP for IPv4 (RFC 792): the message view NAT reads (type, code, echo identifier, the
//! quoted packet of an error), and [`IcmpRepr`] for the messages the gateway builds
//! (echo replies and errors).

use crate::ipv4::Ipv4Packet;
use crate::WireError;

/// Bytes of an ICMP header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// Message types the switch acts on.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (port unreachable, fragmentation needed, ...).
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated, still an error that quotes a packet).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// Byte ranges of the message fields.
pub mod field {
    use std::ops::Range;
    /// Type.
    pub const TYPE: usize = 0;
    /// Code.
    pub const CODE: usize = 1;
    /// Checksum, over the whole message.
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Echo identifier.
    pub const ECHO_ID: Range<usize> = 4..6;
    /// Echo sequence number.
    pub const ECHO_SEQ: Range<usize> = 6..8;
    /// The rest of the header (identifier and sequence, or unused / next-hop MTU).
    pub const REST: Range<usize> = 4..8;
}

/// A view of an ICMP message.
#[derive(Debug, Clone, Copy)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps a message of at least 8 bytes.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(IcmpPacket { buf })
    }

    #[inline]
    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let s = &self.buf.as_ref()[r];
        u16::from_be_bytes([s[0], s[1]])
    }

    /// The type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[field::TYPE]
    }

    /// The code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[field::CODE]
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The echo identifier (meaningful for echo messages).
    #[inline]
    pub fn echo_id(&self) -> u16 {
        self.u16_at(field::ECHO_ID)
    }

    /// The echo sequence number (meaningful for echo messages).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        self.u16_at(field::ECHO_SEQ)
    }

    /// True for an echo request or reply.
    #[inline]
    pub fn is_echo(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY
        )
    }

    /// True for an error message that quotes the packet it is about.
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::DEST_UNREACHABLE
                | msg_type::SOURCE_QUENCH
                | msg_type::REDIRECT
                | msg_type::TIME_EXCEEDED
                | msg_type::PARAMETER_PROBLEM
        )
    }

    /// True if the checksum over the whole message is right.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        crate::checksum::fold(crate::checksum::sum(self.buf.as_ref(), 0)) == 0xffff
    }

    /// The bytes after the 8-byte header (for an error: the quoted packet).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }

    /// The quoted packet of an error: its IP header and at least 8 bytes after it.
    #[inline]
    pub fn quoted(&self) -> Option<Ipv4Packet<&[u8]>> {
        let q = Ipv4Packet::new_truncated(self.payload()).ok()?;
        (q.payload().len() >= 8).then_some(q)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Sets the type (the checksum is not touched).
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buf.as_mut()[field::TYPE] = t;
    }

    /// Sets the code (the checksum is not touched).
    #[inline]
    pub fn set_code(&mut self, c: u8) {
        self.buf.as_mut()[field::CODE] = c;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        self.buf.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// Sets the echo identifier (the checksum is not touched).
    #[inline]
    pub fn set_echo_id(&mut self, id: u16) {
        self.buf.as_mut()[field::ECHO_ID].copy_from_slice(&id.to_be_bytes());
    }

    /// Sets the echo sequence number (the checksum is not touched).
    #[inline]
    pub fn set_echo_seq(&mut self, seq: u16) {
        self.buf.as_mut()[field::ECHO_SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Recomputes the checksum over the whole message from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = crate::checksum::checksum(self.buf.as_ref());
        self.set_checksum(c);
    }

    /// The bytes after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
}

/// An ICMP message the switch reads or builds whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpRepr<'a> {
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
        /// The data to be echoed.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
        /// The echoed data.
        data: &'a [u8],
    },
    /// An error quoting (the start of) the packet it is about; the rest of the header
    /// is zero.
    Error {
        /// Type (destination unreachable, time exceeded, ...).
        msg_type: u8,
        /// Code.
        code: u8,
        /// The quoted packet, from its IP header on.
        quoted: &'a [u8],
    },
}

impl<'a> IcmpRepr<'a> {
    /// Reads an echo message or an error from `p`; `Malformed` if the checksum is wrong
    /// or the type is another.
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &IcmpPacket<&'a T>) -> Result<Self, WireError> {
        if !p.verify_checksum() {
            return Err(WireError::Malformed);
        }
        let buf: &'a T = p.buf;
        let data = &buf.as_ref()[HEADER_LEN..];
        match p.msg_type() {
            msg_type::ECHO_REQUEST if p.code() == 0 => Ok(IcmpRepr::EchoRequest {
                ident: p.echo_id(),
                seq: p.echo_seq(),
                data,
            }),
            msg_type::ECHO_REPLY if p.code() == 0 => Ok(IcmpRepr::EchoReply {
                ident: p.echo_id(),
                seq: p.echo_seq(),
                data,
            }),
            _ if p.is_error() => Ok(IcmpRepr::Error {
                msg_type: p.msg_type(),
                code: p.code(),
                quoted: data,
            }),
            _ => Err(WireError::Malformed),
        }
    }

    /// Bytes [`IcmpRepr::emit`] writes.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                IcmpRepr::EchoRequest { data, .. } | IcmpRepr::EchoReply { data, .. } => data.len(),
                IcmpRepr::Error { quoted, .. } => quoted.len(),
            }
    }

    /// Writes the message, checksum included, at the start of `b`; `Truncated` (nothing
    /// written) if it does not fit.
    #[inline]
    pub fn emit(&self, b: &mut [u8]) -> Result<(), WireError> {
        let b = b.get_mut(..self.buffer_len()).ok_or(WireError::Truncated)?;
        let mut p = IcmpPacket::new_checked(b)?;
        let data = match *self {
            IcmpRepr::EchoRequest { ident, seq, data }
            | IcmpRepr::EchoReply { ident, seq, data } => {
                let t = if matches!(self, IcmpRepr::EchoRequest { .. }) {
                    msg_type::ECHO_REQUEST
                } else {
                    msg_type::ECHO_REPLY
                };
                p.set_msg_type(t);
                p.set_code(0);
                p.set_echo_id(ident);
                p.set_echo_seq(seq);
                data
            }
            IcmpRepr::Error {
                msg_type,
                code,
                quoted,
            } => {
                p.set_msg_type(msg_type);
                p.set_code(code);
                p.buf[field::REST].fill(0);
                quoted
            }
        };
        p.payload_mut().copy_from_slice(data);
        p.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn view_fields() {
        let mut i = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let v = IcmpPacket::new_checked(&i[..]).unwrap();
        assert!(v.is_echo() && !v.is_error());
        assert_eq!(v.echo_id(), 0x1234);
        assert_eq!(v.echo_seq(), 1);
        assert!(v.quoted().is_none());
        i[0] = 3;
        assert!(IcmpPacket::new_checked(&i[..]).unwrap().is_error());
        assert_eq!(
            IcmpPacket::new_checked(&i[..7]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn echo_round_trip() {
        let data = [1u8, 2, 3, 4, 5];
        let r = IcmpRepr::EchoRequest {
            ident: 0x1234,
            seq: 9,
            data: &data,
        };
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut b).unwrap();
        assert_eq!(crate::checksum::checksum(&b), 0);
        let p = IcmpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(IcmpRepr::parse(&p), Ok(r));
        let (h, rest) = etherparse::Icmpv4Header::from_slice(&b).unwrap();
        assert_eq!(
            h.icmp_type,
            etherparse::Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 0x1234, seq: 9 })
        );
        assert_eq!(rest, &data);
        let reply = IcmpRepr::EchoReply {
            ident: 0x1234,
            seq: 9,
            data: &data,
        };
        reply.emit(&mut b).unwrap();
        assert_eq!(
            IcmpRepr::parse(&IcmpPacket::new_checked(&b[..]).unwrap()),
            Ok(reply)
        );
        // A bad checksum, an unknown type, or no room.
        b[2] ^= 1;
        assert_eq!(
            IcmpRepr::parse(&IcmpPacket::new_checked(&b[..]).unwrap()),
            Err(WireError::Malformed)
        );
        assert_eq!(reply.emit(&mut [0u8; 12]), Err(WireError::Truncated));
        let mut odd = [13u8, 0, 0, 0, 0, 0, 0, 0];
        IcmpPacket::new_checked(&mut odd[..])
            .unwrap()
            .fill_checksum();
        assert_eq!(
            IcmpRepr::parse(&IcmpPacket::new_checked(&odd[..]).unwrap()),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn error_quotes_and_zeroes_the_rest() {
        let quoted = [0x45u8; 28];
        let r = IcmpRepr::Error {
            msg_type: msg_type::TIME_EXCEEDED,
            code: 0,
            quoted: &quoted,
        };
        let mut b = vec![0xffu8; r.buffer_len()];
        r.emit(&mut b).unwrap();
        assert_eq!(&b[4..8], &[0; 4]);
        assert_eq!(crate::checksum::checksum(&b), 0);
        let p = IcmpPacket::new_checked(&b[..]).unwrap();
        assert!(p.is_error());
        assert_eq!(IcmpRepr::parse(&p), Ok(r));
    }

    proptest! {
        #[test]
        fn views_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(i) = IcmpPacket::new_checked(&bytes[..]) {
                let _ = (i.msg_type(), i.code(), i.checksum(), i.echo_id(), i.echo_seq(), i.is_echo(), i.is_error(), i.payload(), i.quoted());
                let _ = IcmpRepr::parse(&i);
            } else {
                prop_assert!(bytes.len() < HEADER_LEN);
            }
        }

        #[test]
        fn echo_emit_parse_round_trip(ident in any::<u16>(), seq in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..64), reply in any::<bool>()) {
            let r = if reply {
                IcmpRepr::EchoReply { ident, seq, data: &data }
            } else {
                IcmpRepr::EchoRequest { ident, seq, data: &data }
            };
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(&mut b).unwrap();
            prop_assert_eq!(IcmpRepr::parse(&IcmpPacket::new_checked(&b[..]).unwrap()), Ok(r));
        }
    }
}
