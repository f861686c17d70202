//! Why the controller refuses a request. The `Display` of each variant is the one line
//! `vsctl` prints (the server sends it as the response's error), so the words are part
//! of the interface: scripts and tests match on them.

use std::net::Ipv4Addr;

use super::attach::AttachError;
use crate::config::ConfigError;
use crate::tunnel::VtepError;

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A value `ctl::validate` refused, with its message.
    #[error("{0}")]
    Invalid(String),
    /// The next desired state breaks an invariant, or could not be saved.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Vtep(#[from] VtepError),
    #[error("bridge {0} already exists")]
    BridgeExists(String),
    #[error("no bridge named {0}")]
    NoBridge(String),
    #[error("bridge {bridge} has no port {port}")]
    NoPort { bridge: String, port: String },
    #[error("bridge {bridge} already has a port {port}")]
    PortExists { bridge: String, port: String },
    #[error("interface {iface} is already a port of bridge {bridge}")]
    PortOfOtherBridge { iface: String, bridge: String },
    #[error("interface {0} is the uplink")]
    IsUplink(String),
    #[error("no room for more than {0} ports")]
    NoRoom(u32),
    #[error("at most {0} external ids per port")]
    TooManyExternalIds(usize),
    #[error("vxlan ports are made with add-tunnel")]
    VxlanNeedsAddTunnel,
    #[error("gateway ports are made with add-net")]
    GatewayNeedsAddNet,
    /// Opening the port's interface failed with a message that names it already
    /// ("no interface named ...").
    #[error("{0}")]
    Open(String),
    #[error("cannot attach {iface}: {why}")]
    CannotAttach { iface: String, why: String },
    #[error("cannot create TAP {iface}: {why}")]
    CannotCreateTap { iface: String, why: String },
    #[error("port {port} of bridge {bridge} is not a tunnel")]
    NotATunnel { port: String, bridge: String },
    #[error("{remote} is already a remote of tunnel {tunnel}")]
    RemoteExists { remote: Ipv4Addr, tunnel: String },
    #[error("{remote} is not a remote of tunnel {tunnel}")]
    NotARemote { remote: Ipv4Addr, tunnel: String },
    #[error("bridge {bridge} has no static entry for {mac} in VLAN {vlan}")]
    NoStaticEntry {
        bridge: String,
        mac: String,
        vlan: u16,
    },
    #[error("--access takes exactly one VLAN")]
    AccessNeedsOneVlan,
    #[error("--pvid takes exactly one VLAN")]
    PvidNeedsOneVlan,
    #[error("no VLAN given")]
    NoVlanGiven,
    #[error("port {port} is not a member of VLAN {vid}")]
    NotVlanMember { port: String, vid: u16 },
    #[error("bridge {bridge} already has network {subnet} (del-net first)")]
    NetExists { bridge: String, subnet: String },
    #[error("bridge {0} has no network")]
    NoNet(String),
    #[error("{proto}/{host_port} is published to {target} in bridge {bridge}'s network; unpublish it first")]
    StillPublished {
        proto: &'static str,
        host_port: u16,
        target: std::net::SocketAddrV4,
        bridge: String,
    },
    #[error("no interface named {0}")]
    NoInterface(String),
    #[error("there is no uplink")]
    NoUplink,
    #[error("{proto}/{host_port} is not published")]
    NotPublished { proto: &'static str, host_port: u16 },
    #[error("bridge {0} carries overlay {0} and follows the cluster (vsctl del-overlay {0})")]
    OverlayBridge(String),
    #[error("this node is in no cluster (start vswitchd with --cluster-store)")]
    NotInCluster,
}

impl From<String> for ControlError {
    /// `ctl::validate` answers with its message.
    fn from(e: String) -> Self {
        ControlError::Invalid(e)
    }
}
