#![cfg_attr(test, allow(clippy::unwrap_used))]
#![forbid(unsafe_code)]
//! VXLAN (RFC 7348) with no I/O: bytes in, bytes and decisions out, so every part is
//! unit-tested, property-tested, fuzzable and benched alone (the boringtun split: the
//! protocol here, the sockets in the daemon).
//!
//! What the daemon (`vswitchd`) does, and what it asks of this crate:
//!
//! - **Receive.** It reads UDP datagrams from its VTEP socket (port
//!   [`header::DEFAULT_PORT`]); the kernel has taken off the outer IP and UDP headers,
//!   so a datagram is the 8-byte VXLAN header and the inner Ethernet frame.
//!   [`decap::VtepTable::classify`] checks it and says which tunnel port and which
//!   remote it belongs to, or why to drop it ([`decap::DropReason`], one counter
//!   each). [`offload::offload_for_inner`] then says how to describe the inner frame to
//!   the port it leaves by (the virtio-net header: GSO and partial checksum), which
//!   spares a pass over the payload of the super-packets kernel peers send.
//! - **Send.** It hands a frame and its offload description (decoded from the port's
//!   virtio-net header with [`offload::Offload::from_virtio`]) to
//!   [`offload::encap_segments`], which completes a partial checksum or segments a
//!   TSO/USO super-frame to the underlay's MTU, and lays the VXLAN datagrams out back
//!   to back; [`offload::Segments::chunks`] cuts them into `UDP_SEGMENT` sends. Or, where
//!   the kernel segments VXLAN itself (a TAP with UDP-tunnel GSO), [`offload::encap_whole`]
//!   writes the headers that go in front of the whole TCP super-frame.
//!   [`flow::flow_hash`] and [`flow::source_port`] pick the outer source port per flow.
//!
//! Modules:
//! - [`header`]: the 8-byte VXLAN header: view, constants, encoding.
//! - [`decap`]: datagram checks, drop reasons, the VNI → tunnel/remote table.
//! - [`offload`]: offload descriptions, header parsing, segmentation, decap offloads.
//! - [`gro`]: merging the TCP segments of a `UDP_GRO` read back into a super-frame.
//! - [`flow`]: the inner-flow hash and the outer source port.
//!
//! Every function is total: arbitrary bytes and offsets give an error or a neutral
//! answer, never a panic, and no `unsafe` is used.

pub mod decap;
pub mod flow;
pub mod gro;
pub mod header;
pub mod offload;

#[cfg(test)]
mod testutil;
