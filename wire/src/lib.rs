#![cfg_attr(test, allow(clippy::unwrap_used))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! The wire formats the switch reads and rewrites on its hot path, as zero-copy views
//! in the smoltcp style: `Packet::new_checked` validates lengths once, after which the
//! accessors cannot panic; setters exist when the buffer is mutable; a `Repr` parses and
//! emits the messages the switch builds itself (ARP, ICMP echo and errors, and the IPv4
//! header in front of them). No I/O, no allocation.
//!
//! Modules:
//! - [`ethernet`]: the Ethernet II header and [`MacAddr`].
//! - [`vlan`]: the 802.1Q / 802.1ad tag, pushed and popped in place.
//! - [`vnet`]: the virtio-net header in front of frames on offloading ports.
//! - [`arp`]: ARP for IPv4 over Ethernet, with [`ArpRepr`].
//! - [`ipv4`], [`tcp`], [`udp`], [`icmp`]: the IP and transport headers NAT rewrites
//!   and the gateway builds, with [`IcmpRepr`] for echo and error messages.
//! - [`checksum`]: the Internet checksum, from scratch and incrementally (RFC 1071/1624).
//! - [`bytes`]: bounds-checked big-endian reads and writes at computed offsets.
//!
//! The crate also owns the EtherType ([`ethertype`]) and IP protocol ([`ip_proto`])
//! numbers, so no other crate spells them.

pub mod arp;
pub mod bytes;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vnet;

pub use arp::{ArpPacket, ArpRepr};
pub use ethernet::{EthernetFrame, MacAddr, MacParseError};
pub use icmp::{IcmpPacket, IcmpRepr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use tcp::TcpPacket;
pub use udp::{Ports, UdpPacket};
pub use vlan::Tag;
pub use vnet::VnetHdr;

/// Why bytes could not be viewed as a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or than a length field says).
    #[error("frame shorter than its header")]
    Truncated,
    /// A field holds a value the format does not allow (version, header length, ...).
    #[error("malformed header")]
    Malformed,
}

/// EtherTypes the switch acts on.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// An 802.1Q tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// An 802.1ad service tag (S-tag, QinQ).
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// IP protocol numbers the switch acts on.
pub mod ip_proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}
