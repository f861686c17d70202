//! The IPv4, TCP, UDP and ICMP views NAT reads and rewrites. They are the `wire`
//! crate's (a checked constructor validates lengths once, after which the accessors
//! cannot panic), under the names this crate's modules and its users have always used;
//! this module owns only the offsets [`crate::rewrite`] patches. The buffer starts at
//! the IP header (the caller has taken the Ethernet header off).
//!
//! Setters write raw fields only; keeping checksums right is the job of
//! [`crate::rewrite`].

/// IP protocol numbers this crate knows.
pub use wire::ip_proto as proto;

/// ICMP message types this crate acts on.
pub use wire::icmp::msg_type as icmp_type;
/// TCP flag bits.
pub use wire::tcp::flags as tcp_flags;

/// Bytes of an ICMP header (type, code, checksum, rest of header).
pub use wire::icmp::HEADER_LEN as ICMP_HEADER;
/// Bytes of an IPv4 header without options.
pub use wire::ipv4::MIN_HEADER_LEN as IPV4_MIN_HEADER;
/// Bytes of a TCP header without options.
pub use wire::tcp::MIN_HEADER_LEN as TCP_MIN_HEADER;
/// Bytes of a UDP header.
pub use wire::udp::HEADER_LEN as UDP_HEADER;

pub use wire::icmp::IcmpPacket;
pub use wire::ipv4::Ipv4Packet;
pub use wire::tcp::TcpPacket;
pub use wire::udp::{Ports, UdpPacket};

/// Where the fields [`crate::rewrite`] patches start, from the views' field ranges.
pub(crate) mod field {
    /// IPv4 header checksum.
    pub const IP_CHECKSUM: usize = wire::ipv4::field::CHECKSUM.start;
    /// IPv4 source and destination addresses (8 bytes).
    pub const IP_ADDRS: usize = wire::ipv4::field::ADDRS.start;
    /// TCP checksum.
    pub const TCP_CHECKSUM: usize = wire::tcp::field::CHECKSUM.start;
    /// UDP checksum.
    pub const UDP_CHECKSUM: usize = wire::udp::field::CHECKSUM.start;
    /// ICMP checksum.
    pub const ICMP_CHECKSUM: usize = wire::icmp::field::CHECKSUM.start;
    /// ICMP echo identifier.
    pub const ICMP_ID: usize = wire::icmp::field::ECHO_ID.start;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn header(total: u16, proto: u8) -> Vec<u8> {
        let mut p = vec![0u8; usize::from(total)];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[192, 0, 2, 7]);
        p
    }

    #[test]
    fn ipv4_fields() {
        let mut b = header(28, proto::UDP);
        b.extend_from_slice(&[0; 6]); // Ethernet padding
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.protocol(), proto::UDP);
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.payload().len(), 8);
        assert!(!p.is_fragment());
        p.set_dst_raw(Ipv4Addr::new(1, 2, 3, 4));
        assert!(!p.verify_checksum());
        assert_eq!(p.payload_mut().len(), 8);
    }

    #[test]
    fn ipv4_rejects() {
        assert!(Ipv4Packet::new_checked(&[][..]).is_err());
        let mut b = header(28, proto::UDP);
        b[0] = 0x65;
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
        b[0] = 0x44;
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
        b[0] = 0x46; // 24-byte header
        assert!(Ipv4Packet::new_checked(&b[..]).is_ok());
        b[0] = 0x4f; // 60-byte header > total length
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
        let b = header(28, proto::UDP);
        assert!(Ipv4Packet::new_checked(&b[..27]).is_err());
        assert!(Ipv4Packet::new_truncated(&b[..20]).is_ok());
        assert!(Ipv4Packet::new_truncated(&b[..19]).is_err());
    }

    #[test]
    fn fragments() {
        let mut b = header(28, proto::UDP);
        b[6] = 0x20;
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().more_fragments());
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().is_fragment());
        b[6] = 0x40; // DF only
        assert!(!Ipv4Packet::new_checked(&b[..]).unwrap().is_fragment());
        b[6] = 0x00;
        b[7] = 0x03;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.frag_offset(), 24);
        assert!(p.is_fragment());
    }

    #[test]
    fn l4_views() {
        let mut t = [0u8; 20];
        t[0..4].copy_from_slice(&[0x1f, 0x90, 0, 80]);
        t[12] = 0x50;
        t[13] = tcp_flags::SYN | tcp_flags::ACK;
        let v = TcpPacket::new_checked(&t[..]).unwrap();
        assert_eq!((v.src_port(), v.dst_port(), v.flags()), (8080, 80, 0x12));
        t[12] = 0x60;
        assert!(TcpPacket::new_checked(&t[..]).is_err());
        t[12] = 0x40;
        assert!(TcpPacket::new_checked(&t[..]).is_err());
        let u = UdpPacket::new_checked(&t[..8]).unwrap();
        assert_eq!(u.src_port(), 8080);
        assert!(UdpPacket::new_checked(&t[..7]).is_err());
        let mut i = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let v = IcmpPacket::new_checked(&i[..]).unwrap();
        assert!(v.is_echo() && !v.is_error());
        assert_eq!(v.echo_id(), 0x1234);
        assert!(v.quoted().is_none());
        i[0] = 3;
        assert!(IcmpPacket::new_checked(&i[..]).unwrap().is_error());
        let ports = Ports::new_checked(&t[..4]).unwrap();
        assert_eq!(ports.dst_port(), 80);
    }

    proptest! {
        #[test]
        fn views_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Ipv4Packet::new_truncated(&bytes[..]) {
                let _ = (p.header_len(), p.total_len(), p.ident(), p.more_fragments(), p.frag_offset(),
                         p.is_fragment(), p.ttl(), p.protocol(), p.checksum(), p.src(), p.dst(),
                         p.verify_checksum(), p.payload());
            }
            if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
                prop_assert!(p.header_len() + p.payload().len() == usize::from(p.total_len()));
            }
            let mut m = bytes.clone();
            if let Ok(mut p) = Ipv4Packet::new_truncated(&mut m[..]) {
                p.set_src_raw(Ipv4Addr::LOCALHOST);
                p.set_dst_raw(Ipv4Addr::BROADCAST);
                p.fill_checksum();
                let _ = p.payload_mut();
                prop_assert!(p.verify_checksum());
            }
            if let Ok(t) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (t.src_port(), t.dst_port(), t.flags(), t.checksum());
            }
            if let Ok(u) = UdpPacket::new_checked(&bytes[..]) {
                let _ = (u.src_port(), u.dst_port(), u.len_field(), u.checksum());
            }
            if let Ok(i) = IcmpPacket::new_checked(&bytes[..]) {
                let _ = (i.msg_type(), i.code(), i.checksum(), i.echo_id(), i.echo_seq(), i.is_echo(), i.is_error(), i.payload(), i.quoted());
            }
            if let Ok(p) = Ports::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port());
            }
        }
    }
}
