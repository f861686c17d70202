//! Offload descriptions (the virtio-net header's fields), and the work a NIC would do
//! that a VXLAN datagram cannot leave to anyone: complete partial checksums and cut
//! TSO/USO super-frames to the underlay's MTU on the way out ([`encap_segments`]), and
//! describe the unsegmented super-packets a kernel peer sends as GSO frames on the way
//! in ([`offload_for_inner`]).
//!
//! - [`layers`]: where a frame's IP and TCP/UDP headers are.
//! - [`segment`]: encapsulation, software TSO/USO, `UDP_SEGMENT` chunks.
//! - [`inner`]: the offload description of a decapsulated frame.

pub mod inner;
pub mod layers;
pub mod segment;

pub use inner::offload_for_inner;
pub use layers::{headers, IpLayer, IpVersion, L4Layer, Layers};
pub use segment::{encap_segments, Segments, MAX_UDP_PAYLOAD, UDP_MAX_SEGMENTS};

/// Size of the virtio-net header (`struct virtio_net_hdr`).
pub const VIRTIO_LEN: usize = 10;
/// virtio flag: the checksum from `csum_start` is to be completed.
pub const F_NEEDS_CSUM: u8 = 1;
/// virtio flag: the checksum was verified (receive side); needs no action here.
pub const F_DATA_VALID: u8 = 2;
/// virtio `gso_type`: not a super-frame.
pub const GSO_NONE: u8 = 0;
/// virtio `gso_type`: TCP over IPv4 (TSO).
pub const GSO_TCPV4: u8 = 1;
/// virtio `gso_type`: UDP fragmentation offload (UFO), which this crate does not do.
pub const GSO_UDP: u8 = 3;
/// virtio `gso_type`: TCP over IPv6 (TSO6).
pub const GSO_TCPV6: u8 = 4;
/// virtio `gso_type`: UDP segmentation (USO, `UDP_SEGMENT`).
pub const GSO_UDP_L4: u8 = 5;
/// virtio `gso_type` bit: the super-frame has CWR set (ECN).
pub const GSO_ECN: u8 = 0x80;

mod field {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
}

/// Why a frame cannot be sent (or an offload description used) as described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum OffloadError {
    /// Headers missing or cut, checksum offsets outside the frame, or headers that
    /// disagree with the offload (a TCPv4 super-frame that is not TCP over IPv4, a
    /// `gso_size` of 0, a `hdr_len` beyond the frame).
    #[error("malformed frame or offload description")]
    Malformed,
    /// Bigger than the underlay allows and not a super-frame, or headers alone too big.
    #[error("frame too big for the underlay MTU")]
    TooBig,
    /// An offload this crate does not do (UFO, unknown GSO types).
    #[error("unsupported offload type")]
    Unsupported,
}

impl OffloadError {
    /// The counter name.
    pub fn as_str(self) -> &'static str {
        match self {
            OffloadError::Malformed => "offload_malformed",
            OffloadError::TooBig => "offload_too_big",
            OffloadError::Unsupported => "offload_unsupported",
        }
    }
}

/// The segmentation a super-frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Gso {
    /// Not a super-frame.
    #[default]
    None,
    /// TCP over IPv4, cut into `gso_size`-byte payloads.
    TcpV4,
    /// TCP over IPv6, cut into `gso_size`-byte payloads.
    TcpV6,
    /// UDP over IPv4 or IPv6, cut into `gso_size`-byte datagrams.
    UdpL4,
}

/// What a sender left to the "hardware": the virtio-net header, decoded. Offsets count
/// from the start of the Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Offload {
    /// The checksum at `csum_start + csum_offset` is partial (holds the pseudo-header sum).
    pub needs_csum: bool,
    /// The segmentation asked for.
    pub gso: Gso,
    /// The super-frame has CWR set (virtio's `GSO_ECN` bit).
    pub ecn: bool,
    /// Bytes of headers (Ethernet to TCP/UDP) before the payload, a hint.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum goes, relative to `csum_start`.
    pub csum_offset: u16,
}

impl Offload {
    /// A frame with a complete checksum, not a super-frame.
    pub const NONE: Offload = Offload {
        needs_csum: false,
        gso: Gso::None,
        ecn: false,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Decodes a (little-endian) virtio-net header. Flags other than `NEEDS_CSUM` are
    /// ignored; UFO and unknown GSO types are [`OffloadError::Unsupported`].
    pub fn from_virtio(b: &[u8; VIRTIO_LEN]) -> Result<Offload, OffloadError> {
        let u = |r: std::ops::Range<usize>| {
            b.get(r)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u16::from_le_bytes)
        };
        let gso_type = b[field::GSO_TYPE];
        let gso = match gso_type & !GSO_ECN {
            GSO_NONE => Gso::None,
            GSO_TCPV4 => Gso::TcpV4,
            GSO_TCPV6 => Gso::TcpV6,
            GSO_UDP_L4 => Gso::UdpL4,
            _ => return Err(OffloadError::Unsupported),
        };
        Ok(Offload {
            needs_csum: b[field::FLAGS] & F_NEEDS_CSUM != 0,
            gso,
            ecn: gso != Gso::None && gso_type & GSO_ECN != 0,
            hdr_len: u(field::HDR_LEN),
            gso_size: u(field::GSO_SIZE),
            csum_start: u(field::CSUM_START),
            csum_offset: u(field::CSUM_OFFSET),
        })
    }

    /// Encodes as a (little-endian) virtio-net header.
    pub fn to_virtio(&self) -> [u8; VIRTIO_LEN] {
        let mut b = [0u8; VIRTIO_LEN];
        b[field::FLAGS] = if self.needs_csum { F_NEEDS_CSUM } else { 0 };
        let ecn = if self.ecn && self.gso != Gso::None {
            GSO_ECN
        } else {
            0
        };
        b[field::GSO_TYPE] = ecn
            | match self.gso {
                Gso::None => GSO_NONE,
                Gso::TcpV4 => GSO_TCPV4,
                Gso::TcpV6 => GSO_TCPV6,
                Gso::UdpL4 => GSO_UDP_L4,
            };
        b[field::HDR_LEN].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[field::GSO_SIZE].copy_from_slice(&self.gso_size.to_le_bytes());
        b[field::CSUM_START].copy_from_slice(&self.csum_start.to_le_bytes());
        b[field::CSUM_OFFSET].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// Reads a big-endian u16 at `at`; `None` past the end.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Writes a big-endian u16 at `at`; `None` (nothing written) past the end.
#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) -> Option<()> {
    b.get_mut(at..at.checked_add(2)?)?
        .copy_from_slice(&v.to_be_bytes());
    Some(())
}

/// Reads a big-endian u32 at `at`; `None` past the end.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Writes a big-endian u32 at `at`; `None` (nothing written) past the end.
#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) -> Option<()> {
    b.get_mut(at..at.checked_add(4)?)?
        .copy_from_slice(&v.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn virtio_round_trip() {
        let o = Offload {
            needs_csum: true,
            gso: Gso::TcpV6,
            ecn: true,
            hdr_len: 86,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
        };
        let b = o.to_virtio();
        assert_eq!(b, [1, 0x84, 86, 0, 0x94, 0x05, 54, 0, 16, 0]);
        assert_eq!(Offload::from_virtio(&b).unwrap(), o);
        assert_eq!(
            Offload::from_virtio(&[0; VIRTIO_LEN]).unwrap(),
            Offload::NONE
        );
        assert_eq!(Offload::NONE, Offload::default());
    }

    #[test]
    fn unsupported_types_are_refused() {
        for t in [GSO_UDP, 2, 6, 0x7f, GSO_UDP | GSO_ECN] {
            let mut b = [0u8; VIRTIO_LEN];
            b[1] = t;
            assert_eq!(Offload::from_virtio(&b), Err(OffloadError::Unsupported));
        }
        // DATA_VALID alone asks for nothing.
        let mut b = [0u8; VIRTIO_LEN];
        b[0] = F_DATA_VALID;
        assert_eq!(Offload::from_virtio(&b).unwrap(), Offload::NONE);
    }

    #[test]
    fn byte_helpers_stop_at_the_end() {
        let mut b = [1u8, 2, 3, 4];
        assert_eq!(be16(&b, 2), Some(0x0304));
        assert_eq!(be16(&b, 3), None);
        assert_eq!(be16(&b, usize::MAX), None);
        assert_eq!(be32(&b, 0), Some(0x0102_0304));
        assert_eq!(be32(&b, 1), None);
        assert_eq!(put16(&mut b, 3, 9), None);
        assert_eq!(put32(&mut b, usize::MAX - 1, 9), None);
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(put16(&mut b, 0, 0xabcd), Some(()));
        assert_eq!(b, [0xab, 0xcd, 3, 4]);
    }

    proptest! {
        #[test]
        fn virtio_decode_encode_is_stable(b in any::<[u8; VIRTIO_LEN]>()) {
            if let Ok(o) = Offload::from_virtio(&b) {
                prop_assert_eq!(Offload::from_virtio(&o.to_virtio()), Ok(o));
            }
        }
    }
}
