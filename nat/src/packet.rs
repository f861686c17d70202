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
