//! Why a cluster verb (or an `attach`/`detach` on an overlay) is refused: the one line
//! `vsctl` prints.

use crate::controller::ControlError;

/// Why a cluster verb is refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum VerbError {
    /// The controller refused (no cluster, no such bridge, a bad attachment…).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A value `ctl::validate` refused, with its message.
    #[error("{0}")]
    Invalid(String),
    /// The store refused, or did not answer in time.
    #[error(transparent)]
    Store(#[from] cluster::ClusterError),
    #[error("bad overlay name {0:?} (1-15 letters, digits, '-', '_', '.')")]
    OverlayName(String),
    #[error("VNI {vni} is outside 1-{max}")]
    Vni { vni: u32, max: u32 },
    #[error("bridge {0} already exists on this node; an overlay needs a name of its own")]
    LocalBridge(String),
    #[error("overlay {name} has ports on this node ({ports}); delete them first")]
    HasPorts { name: String, ports: String },
    #[error("overlay {0} is not known to the cluster (vsctl list-overlays)")]
    UnknownOverlay(String),
    #[error("overlay {name} has a bad subnet {subnet}")]
    OverlaySubnet { name: String, subnet: String },
    #[error("{ip} is not an address of overlay {overlay} ({subnet})")]
    NotInOverlay {
        ip: String,
        overlay: String,
        subnet: String,
    },
    #[error("address {ip} of overlay {overlay} is not reserved on this node")]
    NotReserved {
        overlay: String,
        ip: std::net::Ipv4Addr,
    },
    #[error("not a cluster request")]
    NotClusterVerb,
}

impl From<String> for VerbError {
    fn from(e: String) -> Self {
        VerbError::Invalid(e)
    }
}
