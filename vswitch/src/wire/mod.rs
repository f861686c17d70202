//! Zero-copy views over frames as they sit in buffers (smoltcp style): a checked
//! constructor validates lengths once, so the accessors after it cannot panic.

pub mod ethernet;
pub mod vnet;

pub use ethernet::{EthernetFrame, MacAddr};
pub use vnet::VnetHdr;

/// Why a frame could not be viewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame shorter than its header")]
    Truncated,
}
