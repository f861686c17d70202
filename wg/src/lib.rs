#![cfg_attr(test, allow(clippy::unwrap_used))]
#![forbid(unsafe_code)]
//! WireGuard for encrypted VXLAN tunnels, with no I/O: bytes in, bytes and decisions
//! out (the boringtun split; the protocol itself, Noise IK, transport messages,
//! cookies and timers, is boringtun's `noise` module, not written here).
//!
//! What the daemon does and what it asks of this crate:
//!
//! - **Keys.** [`keys`]: a private key from 32 random bytes, its public key, both in
//!   the base64 form `wg` prints. The daemon keeps the private key in a file.
//! - **Send.** A VXLAN datagram is put behind an inner IPv4/UDP header
//!   ([`inner::wrap`], inner-local → inner-remote, port 4789), exactly the packet a
//!   kernel vxlan device on a WireGuard interface would hand its TUN; [`Peer::seal`]
//!   turns that packet into a transport message (or a handshake initiation while no
//!   session exists: the packet waits in the peer's queue, [`Peer::flush`] sends it
//!   once the handshake completes).
//! - **Receive.** [`message::classify`] says what a UDP datagram read from the listen
//!   port is and which peer it is for (receiver index, or the initiator's static key
//!   for an initiation); a handshake message then meets the listener's
//!   [`Limiter::screen`] (mac1, and under load mac2, else a cookie reply to its
//!   sender) before its peer is looked for ([`Identity::initiator`] costs a
//!   Diffie-Hellman); [`Peer::open`] checks and decrypts it; [`inner::unwrap`] checks
//!   the inner IPv4/UDP header and gives the VXLAN datagram.
//! - **Timers.** [`Peer::tick`] (every [`TICK`]) does what the protocol's timers say:
//!   handshake retries, rekey after [`REKEY_AFTER`], keepalives, expiry.
//!
//! Every refusal is a [`DropReason`], declared once, one counter each.

pub mod inner;
pub mod keys;
pub mod message;
mod peer;

pub use keys::{Identity, KeyError, PrivateKey, PublicKey};
pub use message::{DropReason, Kind};
pub use peer::{
    is_cookie_reply, Limiter, Outcome, Peer, Screen, HANDSHAKES_PER_SEC, REKEY_AFTER, TICK,
};

/// Default UDP port of a WireGuard listener.
pub const DEFAULT_LISTEN_PORT: u16 = 51820;

/// Bytes a transport message adds to what it carries: type, receiver, counter (16)
/// and the Poly1305 tag (16); the plaintext is padded to a multiple of 16 too.
pub const TRANSPORT_OVERHEAD: usize = 32;

/// Outer IPv4 (20) + UDP (8) + WireGuard transport (32) + inner IPv4 (20) + UDP (8) +
/// VXLAN (8): an inner Ethernet frame may be the underlay MTU minus this (1404 bytes
/// over 1500, which pads to exactly 1440 bytes of plaintext).
pub const OVERHEAD: u32 = 20 + 8 + TRANSPORT_OVERHEAD as u32 + inner::HEADER_LEN as u32 + 8;

/// Largest message a sealed packet of `len` bytes becomes (padding included).
pub const fn sealed_len(len: usize) -> usize {
    len.div_ceil(16) * 16 + TRANSPORT_OVERHEAD
}
