//! Where a frame's headers are: up to two VLAN tags, IPv4 (with options) or IPv6
//! (without extension headers), TCP or UDP. One pass of length checks; what it returns
//! is in range of the frame, so the code that uses the offsets need not re-check them
//! against the headers' own length fields.

use wire::bytes::{be16, put16};
use wire::checksum::{pseudo_v4, pseudo_v6};
use wire::{Ipv4Packet, TcpPacket, UdpPacket};

use wire::ethernet::{is_tag_type, HEADER_LEN as ETH_LEN};
/// EtherType of IPv4.
pub use wire::ethertype::IPV4 as ETHERTYPE_IPV4;
/// EtherType of IPv6.
pub use wire::ethertype::IPV6 as ETHERTYPE_IPV6;
/// IP protocol number of TCP.
pub use wire::ip_proto::TCP as PROTO_TCP;
/// IP protocol number of UDP.
pub use wire::ip_proto::UDP as PROTO_UDP;
use wire::vlan::TAG_LEN;
/// Offset of the checksum in a TCP header.
pub const TCP_CSUM_OFFSET: usize = 16;
/// Offset of the checksum in a UDP header.
pub const UDP_CSUM_OFFSET: usize = 6;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = wire::udp::HEADER_LEN;

/// The IP version of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A TCP or UDP header inside the IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L4Layer {
    /// Offset of the TCP/UDP header from the start of the frame.
    pub offset: usize,
    /// Its length: the TCP data offset (options included), or 8 for UDP.
    pub hdr_len: usize,
}

/// An IPv4 or IPv6 packet whose header is whole and whose length fits the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpLayer {
    /// IPv4 or IPv6.
    pub version: IpVersion,
    /// Header length: IHL × 4, or 40 for IPv6.
    pub hdr_len: usize,
    /// The packet's length by its header (IPv4 total length, IPv6 40 + payload
    /// length); the frame may be longer (Ethernet padding), never shorter.
    pub len: usize,
    /// IPv4 protocol or IPv6 next header.
    pub proto: u8,
    /// The TCP/UDP header; `None` for other protocols, IPv4 fragments (MF set or a
    /// non-zero offset), and headers cut short.
    pub l4: Option<L4Layer>,
}

/// Where an Ethernet frame's headers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layers {
    /// The EtherType after any VLAN tags.
    pub ethertype: u16,
    /// VLAN tags (802.1Q 0x8100 or 802.1ad 0x88a8) skipped, at most 2.
    pub tags: u8,
    /// The VLAN ID of the outer tag, 0 if untagged.
    pub vlan: u16,
    /// Offset of the network header: 14 + 4 per tag.
    pub l3: usize,
    /// The IP packet, if `ethertype` is IPv4/IPv6 and its header is sound.
    pub ip: Option<IpLayer>,
}

/// Finds the headers of an Ethernet frame; `None` if the Ethernet header (or a tag)
/// is cut short. Total on any input.
pub fn headers(frame: &[u8]) -> Option<Layers> {
    let mut l3 = ETH_LEN;
    let mut ethertype = be16(frame, wire::ethernet::field::ETHERTYPE.start)?;
    let mut tags = 0u8;
    let mut vlan = 0;
    while tags < 2 && is_tag_type(ethertype) {
        if tags == 0 {
            vlan = be16(frame, l3)? & wire::vlan::VID_MASK;
        }
        ethertype = be16(frame, l3 + 2)?;
        l3 += TAG_LEN;
        tags += 1;
    }
    let ip = match ethertype {
        ETHERTYPE_IPV4 => ipv4(frame, l3),
        ETHERTYPE_IPV6 => ipv6(frame, l3),
        _ => None,
    };
    Some(Layers {
        ethertype,
        tags,
        vlan,
        l3,
        ip,
    })
}

fn ipv4(frame: &[u8], l3: usize) -> Option<IpLayer> {
    let p = Ipv4Packet::new_checked(frame.get(l3..)?).ok()?;
    let (hdr_len, len, proto) = (p.header_len(), usize::from(p.total_len()), p.protocol());
    // A fragment carries no L4 header we can use (or only part of the data).
    let l4 = if p.is_fragment() {
        None
    } else {
        l4(frame, proto, l3 + hdr_len, l3 + len)
    };
    Some(IpLayer {
        version: IpVersion::V4,
        hdr_len,
        len,
        proto,
        l4,
    })
}

fn ipv6(frame: &[u8], l3: usize) -> Option<IpLayer> {
    if *frame.get(l3)? >> 4 != 6 {
        return None;
    }
    let len = IPV6_LEN + usize::from(be16(frame, l3 + 4)?);
    if l3 + len > frame.len() {
        return None;
    }
    let proto = *frame.get(l3 + 6)?;
    Some(IpLayer {
        version: IpVersion::V6,
        hdr_len: IPV6_LEN,
        len,
        proto,
        l4: l4(frame, proto, l3 + IPV6_LEN, l3 + len),
    })
}

/// The TCP/UDP header at `at` if it fits before `end` (the end of the IP packet).
fn l4(frame: &[u8], proto: u8, at: usize, end: usize) -> Option<L4Layer> {
    let seg = frame.get(at..end)?;
    let hdr_len = match proto {
        PROTO_TCP => TcpPacket::new_checked(seg).ok()?.header_len(),
        PROTO_UDP => UdpPacket::new_checked(seg).ok().map(|_| UDP_LEN)?,
        _ => return None,
    };
    Some(L4Layer {
        offset: at,
        hdr_len,
    })
}

/// A TCP or UDP packet inside an IP packet: everything the checksum and segmentation
/// code needs, in range of the frame it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transport {
    pub l3: usize,
    pub version: IpVersion,
    pub ip_hdr_len: usize,
    /// End of the IP packet (offset in the frame).
    pub end: usize,
    pub tcp: bool,
    pub l4: usize,
    pub l4_hdr_len: usize,
}

impl Transport {
    /// The TCP/UDP packet of `frame`, if it has one.
    pub fn of(frame: &[u8]) -> Option<Transport> {
        let l = headers(frame)?;
        let ip = l.ip?;
        let l4 = ip.l4?;
        Some(Transport {
            l3: l.l3,
            version: ip.version,
            ip_hdr_len: ip.hdr_len,
            end: l.l3 + ip.len,
            tcp: ip.proto == PROTO_TCP,
            l4: l4.offset,
            l4_hdr_len: l4.hdr_len,
        })
    }

    /// Headers from the start of the frame to the end of TCP/UDP.
    pub fn hdrs_len(&self) -> usize {
        self.l4 + self.l4_hdr_len
    }

    /// The IP protocol number.
    pub fn proto(&self) -> u8 {
        if self.tcp {
            PROTO_TCP
        } else {
            PROTO_UDP
        }
    }

    /// The checksum field's offset within the TCP/UDP header.
    pub fn csum_offset(&self) -> usize {
        if self.tcp {
            TCP_CSUM_OFFSET
        } else {
            UDP_CSUM_OFFSET
        }
    }

    /// The pseudo-header sum of the packet laid out in `frame` (same headers as the
    /// one this was parsed from) for a TCP/UDP length of `l4_len`.
    pub fn pseudo(&self, frame: &[u8], l4_len: usize) -> Option<u64> {
        let ip = frame.get(self.l3..)?;
        Some(match self.version {
            IpVersion::V4 => {
                let a = ip.get(12..20)?;
                pseudo_v4(
                    [a[0], a[1], a[2], a[3]],
                    [a[4], a[5], a[6], a[7]],
                    self.proto(),
                    u16::try_from(l4_len).ok()?,
                )
            }
            IpVersion::V6 => {
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s.copy_from_slice(ip.get(8..24)?);
                d.copy_from_slice(ip.get(24..40)?);
                pseudo_v6(s, d, self.proto(), u32::try_from(l4_len).ok()?)
            }
        })
    }

    /// Writes the IP length fields for a packet of `ip_len` bytes.
    pub fn set_ip_len(&self, frame: &mut [u8], ip_len: usize) -> Option<()> {
        match self.version {
            IpVersion::V4 => put16(frame, self.l3 + 2, u16::try_from(ip_len).ok()?),
            IpVersion::V6 => put16(
                frame,
                self.l3 + 4,
                u16::try_from(ip_len.checked_sub(IPV6_LEN)?).ok()?,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{frame, Spec};
    use proptest::prelude::*;

    #[test]
    fn tcp_ipv4_with_options_and_two_tags() {
        let f = frame(&Spec {
            tags: 2,
            ip_options: 8,
            tcp_options: 12,
            ..Spec::tcp4(100)
        });
        let l = headers(&f).unwrap();
        assert_eq!((l.ethertype, l.tags, l.vlan, l.l3), (0x0800, 2, 10, 22));
        let ip = l.ip.unwrap();
        assert_eq!((ip.version, ip.hdr_len, ip.proto), (IpVersion::V4, 28, 6));
        assert_eq!(ip.len, 28 + 32 + 100);
        assert_eq!(
            ip.l4,
            Some(L4Layer {
                offset: 50,
                hdr_len: 32
            })
        );
    }

    #[test]
    fn udp_ipv6_and_padding() {
        let mut f = frame(&Spec::udp6(3));
        f.resize(200, 0); // Ethernet padding after the packet
        let l = headers(&f).unwrap();
        let ip = l.ip.unwrap();
        assert_eq!((ip.version, ip.len, ip.proto), (IpVersion::V6, 51, 17));
        assert_eq!(
            ip.l4,
            Some(L4Layer {
                offset: 54,
                hdr_len: 8
            })
        );
    }

    #[test]
    fn fragments_and_cut_headers_have_no_l4() {
        let mut f = frame(&Spec::tcp4(100));
        f[20] = 0x20; // MF
        assert_eq!(headers(&f).unwrap().ip.unwrap().l4, None);
        f[20] = 0;
        f[21] = 1; // offset 8
        assert_eq!(headers(&f).unwrap().ip.unwrap().l4, None);
        f[21] = 0;
        f[20] = 0x40; // DF alone is fine
        assert!(headers(&f).unwrap().ip.unwrap().l4.is_some());
        f[34 + 12] = 0x40; // TCP data offset 16: too small
        assert_eq!(headers(&f).unwrap().ip.unwrap().l4, None);
        // IPv6 with an extension header (hop-by-hop): the protocol is reported, no L4.
        let mut f = frame(&Spec::tcp6(10));
        f[14 + 6] = 0;
        let ip = headers(&f).unwrap().ip.unwrap();
        assert_eq!((ip.proto, ip.l4), (0, None));
    }

    #[test]
    fn bad_ip_headers_are_not_ip() {
        let good = frame(&Spec::tcp4(10));
        let mut f = good.clone();
        f[14] = 0x44; // IHL 4
        assert_eq!(headers(&f).unwrap().ip, None);
        let mut f = good.clone();
        f[14] = 0x65; // version 6 under an IPv4 EtherType
        assert_eq!(headers(&f).unwrap().ip, None);
        let mut f = good.clone();
        f[17] += 1; // total length beyond the frame
        assert_eq!(headers(&f).unwrap().ip, None);
        let mut f = good.clone();
        f[16..18].copy_from_slice(&10u16.to_be_bytes()); // shorter than its header
        assert_eq!(headers(&f).unwrap().ip, None);
        assert_eq!(headers(&good[..13]), None);
        let mut tagged = frame(&Spec {
            tags: 1,
            ..Spec::tcp4(0)
        });
        tagged.truncate(16);
        assert_eq!(headers(&tagged), None);
        // A third tag is not skipped.
        let mut f = frame(&Spec {
            tags: 2,
            ..Spec::tcp4(0)
        });
        f[20..22].copy_from_slice(&[0x81, 0x00]);
        let l = headers(&f).unwrap();
        assert_eq!((l.ethertype, l.ip), (0x8100, None));
    }

    proptest! {
        #[test]
        fn offsets_stay_inside_the_frame(bytes in proptest::collection::vec(any::<u8>(), 0..200), et in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), any::<u16>()], v in prop_oneof![Just(0x45u8), Just(0x60), any::<u8>()]) {
            let mut f = bytes;
            if f.len() >= 15 {
                f[12..14].copy_from_slice(&et.to_be_bytes());
                f[14] = v;
            }
            if let Some(l) = headers(&f) {
                prop_assert!(l.l3 <= f.len() && l.tags <= 2);
                if let Some(ip) = l.ip {
                    prop_assert!(l.l3 + ip.len <= f.len());
                    prop_assert!(ip.hdr_len <= ip.len);
                    if let Some(l4) = ip.l4 {
                        prop_assert_eq!(l4.offset, l.l3 + ip.hdr_len);
                        prop_assert!(l4.offset + l4.hdr_len <= l.l3 + ip.len);
                    }
                }
            } else {
                prop_assert!(f.len() < 22);
            }
        }
    }
}
