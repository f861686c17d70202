//! Offload descriptions (the virtio-net header's fields), and the work a NIC would do
//! that a VXLAN datagram cannot leave to anyone: complete partial checksums and cut
//! TSO/USO super-frames to the underlay's MTU on the way out ([`encap_segments`]), and
//! describe the unsegmented super-packets a kernel peer sends as GSO frames on the way
//! in ([`offload_for_inner`]).
//!
//! - [`layers`]: where a frame's IP and TCP/UDP headers are.
//! - [`segment`]: encapsulation, software TSO/USO, `UDP_SEGMENT` chunks; a super-frame's
//!   datagrams either laid out in one buffer or as headers to gather with its payload.
//! - [`inner`]: the offload description of a decapsulated frame, or of a frame from a
//!   port without a virtio-net header ([`partial_checksum`]).
//! - [`whole`]: a TCP super-frame encapsulated whole, for a kernel to segment (a TAP
//!   with UDP-tunnel GSO).

pub mod inner;
pub mod layers;
pub mod segment;
pub mod whole;

pub use inner::{offload_for_inner, partial_checksum};
pub use layers::{headers, IpLayer, IpVersion, L4Layer, Layers};
pub use segment::{
    encap_segments, encap_split, Segments, Split, MAX_UDP_PAYLOAD, UDP_MAX_SEGMENTS,
};
pub use whole::{encap_whole, Outer, Whole, WHOLE_LEN};

use wire::vnet::VnetHdr;
/// Size of the virtio-net header (`struct virtio_net_hdr`); its layout and numbers are
/// `wire::vnet`'s.
pub use wire::vnet::LEN as VIRTIO_LEN;
pub use wire::vnet::{
    F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4,
};

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

impl From<wire::WireError> for OffloadError {
    /// A checksum that cannot be completed inside the frame is a malformed description.
    fn from(_: wire::WireError) -> Self {
        OffloadError::Malformed
    }
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

    /// Decodes a virtio-net header (host byte order, as `wire::vnet`). Flags other than `NEEDS_CSUM` are
    /// ignored; UFO and unknown GSO types are [`OffloadError::Unsupported`].
    pub fn from_virtio(b: &[u8; VIRTIO_LEN]) -> Result<Offload, OffloadError> {
        let h = VnetHdr::from(b);
        let gso_type = h.gso_type();
        let gso = match gso_type & !GSO_ECN {
            GSO_NONE => Gso::None,
            GSO_TCPV4 => Gso::TcpV4,
            GSO_TCPV6 => Gso::TcpV6,
            GSO_UDP_L4 => Gso::UdpL4,
            _ => return Err(OffloadError::Unsupported),
        };
        Ok(Offload {
            needs_csum: h.needs_csum(),
            gso,
            ecn: gso != Gso::None && gso_type & GSO_ECN != 0,
            hdr_len: h.hdr_len(),
            gso_size: h.gso_size(),
            csum_start: h.csum_start(),
            csum_offset: h.csum_offset(),
        })
    }

    /// Encodes as a virtio-net header (host byte order, as `wire::vnet`).
    pub fn to_virtio(&self) -> [u8; VIRTIO_LEN] {
        let mut b = [0u8; VIRTIO_LEN];
        let mut h = VnetHdr::from(&mut b);
        h.set_flags(if self.needs_csum { F_NEEDS_CSUM } else { 0 });
        let ecn = if self.ecn && self.gso != Gso::None {
            GSO_ECN
        } else {
            0
        };
        h.set_gso_type(
            ecn | match self.gso {
                Gso::None => GSO_NONE,
                Gso::TcpV4 => GSO_TCPV4,
                Gso::TcpV6 => GSO_TCPV6,
                Gso::UdpL4 => GSO_UDP_L4,
            },
        );
        h.set_hdr_len(self.hdr_len);
        h.set_gso_size(self.gso_size);
        h.set_csum_start(self.csum_start);
        h.set_csum_offset(self.csum_offset);
        b
    }
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

    proptest! {
        #[test]
        fn virtio_decode_encode_is_stable(b in any::<[u8; VIRTIO_LEN]>()) {
            if let Ok(o) = Offload::from_virtio(&b) {
                prop_assert_eq!(Offload::from_virtio(&o.to_virtio()), Ok(o));
            }
        }
    }
}
