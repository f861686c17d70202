//! Why joining a cluster or a cluster record is refused: one enum each, every message a
//! line that says what to change.

use std::path::PathBuf;

/// Why the cluster cannot be joined with these settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("cluster store {0:?} must be etcd://HOST:PORT[,HOST:PORT...] or etcds://...")]
    StoreUrl(String),
    #[error("cluster store endpoint {0:?} needs HOST:PORT (a port 1-65535)")]
    StoreEndpoint(String),
    #[error("etcds:// needs --cluster-ca, --cluster-cert and --cluster-key")]
    TlsFilesMissing,
    #[error("--cluster-ca/--cluster-cert/--cluster-key need an etcds:// store")]
    TlsWithoutEtcds,
    #[error("cannot read cluster {what} {}: {why}", path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("cluster key {} is accessible to others (mode {mode:04o}); chmod 600 it", path.display())]
    KeyOpen { path: PathBuf, mode: u32 },
    #[error("cluster {what} {} is not PEM", path.display())]
    NotPem { what: &'static str, path: PathBuf },
    #[error("cannot start the cluster {what}: {why}")]
    Thread { what: &'static str, why: String },
    /// The store refused the node or did not answer; `why` is the store's own words
    /// (or "cluster store unreachable").
    #[error("cannot join the cluster at {store}: {why}")]
    Join { store: String, why: String },
}

/// Why an overlay record is not one the cluster can carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("bad overlay name {0:?} (1-15 letters, digits, '-', '_', '.')")]
    Name(String),
    #[error("VNI {vni} out of range 1-{max}")]
    Vni { vni: u32, max: u32 },
    #[error("bad subnet {0} (A.B.C.D/N with no host bits)")]
    Subnet(String),
    #[error("subnet {0} is too small (at most /30)")]
    TooSmall(String),
    #[error("gateway {gateway} is not a host address of {subnet}")]
    Gateway {
        gateway: std::net::Ipv4Addr,
        subnet: String,
    },
    #[error("an encrypted overlay needs a listen port (1-65535), a cleartext one none")]
    ListenPort,
}

/// Why a session with the store ended (the node then tries again; a first join stops
/// with it). Shown by `list-nodes` and `list-overlays` as the store's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// An etcd call failed; `why` is etcd's error with its causes, on one line.
    #[error("{what}: {why}")]
    Call { what: &'static str, why: String },
    #[error("{what}: no answer within {secs}s")]
    Timeout { what: &'static str, secs: u64 },
    #[error("no answer in time")]
    Setup,
    #[error("node name {name} is taken by the node at {vtep} (pick another --node, or wait for its lease to expire)")]
    NameTaken {
        name: String,
        vtep: std::net::Ipv4Addr,
    },
    #[error("register: the node's key kept changing")]
    KeyChurn,
    #[error("the node's lease expired")]
    LeaseExpired,
    /// Someone deleted the node's own key (`etcdctl del`): the other nodes dropped it,
    /// so it joins again.
    #[error("the node's key was deleted from the store; joining again")]
    KeyDeleted,
    #[error("{0} stream closed")]
    StreamClosed(&'static str),
    #[error("{0}: cluster store unreachable")]
    Unreachable(&'static str),
    #[error("cannot encode the node's record: {0}")]
    Encode(String),
}
