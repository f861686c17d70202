#![cfg_attr(test, allow(clippy::unwrap_used))]
//! VXLAN (RFC 7348) with no I/O: bytes in, bytes and decisions out, so every part is
//! unit-tested, property-tested, fuzzed and benched alone.
//!
//! The daemon owns the sockets. It receives UDP datagrams (VXLAN header + inner
//! Ethernet frame; the kernel has already taken off the outer IP and UDP headers) and
//! asks [`decap::VtepTable::classify`] which tunnel and remote each belongs to, then
//! [`offload::offload_for_inner`] how to describe the inner frame to a port. To send, it
//! hands a frame and its offload description (the virtio-net header's fields) to
//! [`offload::encap_segments`], which completes checksums, segments super-frames to the
//! underlay's MTU and lays out datagrams ready for one `UDP_SEGMENT` send;
//! [`flow::flow_hash`] spreads flows over outer source ports.
//!
//! - [`header`]: the 8-byte VXLAN header.
//! - [`decap`]: datagram checks and the VNI → tunnel/remote table.
//! - [`checksum`]: the Internet checksum, pseudo-headers, NIC-style completion.
//! - [`offload`]: offload descriptions, header parsing, segmentation.
//! - [`flow`]: the inner-flow hash.

pub mod checksum;
pub mod decap;
pub mod flow;
pub mod header;
pub mod offload;
