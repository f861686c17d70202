#![cfg_attr(test, allow(clippy::unwrap_used))]
//! The control protocol between `vsctl` and `vswitchd`, and a small blocking client.
//!
//! The wire format is newline-delimited JSON over a Unix stream socket: one [`Request`]
//! per line from the client, one [`Response`] per line back. This crate owns the types
//! and their text rendering; it depends on nothing of the dataplane.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod dns;
pub mod docker;
pub mod portsec;
pub mod service;
pub mod validate;

pub use dns::{DnsInfo, DnsRecord};
pub use portsec::{Allowed, PortBinding};

/// Default control socket path.
pub const DEFAULT_SOCK: &str = "/run/vswitch/vswitchd.sock";
/// Environment variable that overrides the socket path for both binaries.
pub const SOCK_ENV: &str = "VSWITCH_SOCK";
/// Largest request line the daemon accepts, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Default MAC aging time, as the Linux bridge.
pub const DEFAULT_AGING_SECS: u32 = 300;
/// Default limit on learned MAC entries per bridge.
pub const DEFAULT_MAC_LIMIT: u32 = 65536;
/// The IANA port of VXLAN (RFC 7348).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// A reply from a daemon that predates a setting which is on by default.
fn yes() -> bool {
    true
}

fn default_vxlan_port() -> u16 {
    DEFAULT_VXLAN_PORT
}

/// The socket path: `VSWITCH_SOCK` if set, otherwise [`DEFAULT_SOCK`].
pub fn default_sock() -> PathBuf {
    std::env::var_os(SOCK_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCK))
}

/// How a port reaches its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    /// An existing interface, attached through an AF_PACKET socket.
    #[default]
    Afpacket,
    /// A TAP device the switch creates and serves.
    Tap,
    /// An existing interface, attached through an AF_XDP socket (afpacket where that
    /// cannot attach).
    Afxdp,
    /// A VXLAN tunnel to other hosts' VTEPs, over UDP (made with `add-tunnel`).
    Vxlan,
    /// The gateway of a bridge's network (made with `add-net`; internal).
    Gateway,
}

impl PortKind {
    /// The name used on the command line and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            PortKind::Afpacket => "afpacket",
            PortKind::Tap => "tap",
            PortKind::Afxdp => "afxdp",
            PortKind::Vxlan => "vxlan",
            PortKind::Gateway => "gateway",
        }
    }
}

impl std::str::FromStr for PortKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "afpacket" => Ok(PortKind::Afpacket),
            "tap" => Ok(PortKind::Tap),
            "afxdp" => Ok(PortKind::Afxdp),
            "vxlan" => Err("vxlan ports are made with add-tunnel".into()),
            "gateway" => Err("gateway ports are made with add-net".into()),
            other => Err(format!(
                "unknown port type {other:?} (expected afpacket, tap or afxdp)"
            )),
        }
    }
}

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    Tcp,
    Udp,
}

impl L4Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
        }
    }
}

impl std::str::FromStr for L4Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(L4Proto::Tcp),
            "udp" => Ok(L4Proto::Udp),
            other => Err(format!("unknown protocol {other:?} (expected tcp or udp)")),
        }
    }
}

/// One request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    AddBr {
        bridge: String,
    },
    DelBr {
        bridge: String,
    },
    ListBr,
    AddPort {
        bridge: String,
        iface: String,
        #[serde(default)]
        kind: PortKind,
        /// Opaque key/value pairs kept with the port for other tools (as Open vSwitch's
        /// `external_ids`): a Docker plugin records which endpoint a port is.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        external_ids: BTreeMap<String, String>,
    },
    DelPort {
        bridge: String,
        iface: String,
    },
    ListPorts {
        bridge: String,
    },
    Show,
    FdbShow {
        bridge: String,
    },
    SetAging {
        bridge: String,
        seconds: u32,
    },
    SetMacLimit {
        bridge: String,
        limit: u32,
    },
    /// Changes a bridge's settings (`set-bridge BR KEY=VALUE...`); a setting left out
    /// stays as it is.
    SetBridge {
        bridge: String,
        /// Check IPv4 and ARP headers of the frames the bridge forwards.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip_checks: Option<bool>,
    },
    /// Changes a port's security settings (`set-port PORT KEY=VALUE...`); a setting left
    /// out stays as it is.
    SetPort {
        port: String,
        /// The addresses it may send from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allowed: Option<Allowed>,
        /// Its storm limit in frames per second (0: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storm_pps: Option<u32>,
    },
    /// Adds VLAN membership to a port (`bridge vlan add`).
    AddVlan {
        bridge: String,
        port: String,
        vids: Vec<u16>,
        #[serde(default)]
        untagged: bool,
        #[serde(default)]
        pvid: bool,
        /// Member of these VLANs only, untagged, with the VID as PVID.
        #[serde(default)]
        access: bool,
    },
    /// Removes VLAN membership from a port.
    DelVlan {
        bridge: String,
        port: String,
        vids: Vec<u16>,
    },
    /// The VLAN table of a bridge.
    ListVlans {
        bridge: String,
    },
    /// Adds a VXLAN tunnel port to a bridge.
    AddTunnel {
        bridge: String,
        name: String,
        vni: u32,
        remotes: Vec<IpAddr>,
        #[serde(default)]
        local: Option<IpAddr>,
        #[serde(default = "default_vxlan_port")]
        dstport: u16,
        /// The bridge VLAN the tunnel carries (as an access port); none: untagged.
        #[serde(default)]
        vlan: Option<u16>,
        /// VXLAN inside WireGuard: the settings of an encrypted tunnel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypt: Option<EncryptSpec>,
    },
    /// Removes a tunnel port.
    DelTunnel {
        bridge: String,
        name: String,
    },
    /// Adds a remote VTEP to a tunnel.
    AddRemote {
        bridge: String,
        name: String,
        remote: IpAddr,
        /// On an encrypted tunnel: the remote's WireGuard key and inner address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<PeerSpec>,
    },
    /// Removes a remote VTEP from a tunnel.
    DelRemote {
        bridge: String,
        name: String,
        remote: IpAddr,
    },
    /// Adds a static FDB entry (never aged, never moved by learning).
    AddFdb {
        bridge: String,
        mac: String,
        port: String,
        /// For a tunnel port: the remote VTEP the MAC sits behind.
        #[serde(default)]
        remote: Option<IpAddr>,
        #[serde(default)]
        vlan: u16,
    },
    /// Removes a static FDB entry.
    DelFdb {
        bridge: String,
        mac: String,
        #[serde(default)]
        vlan: u16,
    },
    /// Plugs a container into a bridge: a veth (or TAP) whose far end goes into the
    /// network namespace `netns` as `ifname`, configured there.
    Attach {
        bridge: String,
        /// The namespace file (`/proc/PID/ns/net`, `/var/run/netns/NAME`).
        netns: String,
        /// What the user named (PID, namespace, Docker container), for `show`.
        container: String,
        ifname: String,
        /// `A.B.C.D/N`; empty on a cluster overlay: an address from the cluster's
        /// allocator.
        #[serde(default)]
        ip: String,
        #[serde(default)]
        gw: Option<Ipv4Addr>,
        #[serde(default)]
        mac: Option<String>,
        #[serde(default)]
        mtu: Option<u32>,
        #[serde(default)]
        vlan: Option<u16>,
        #[serde(default)]
        kind: PortKind,
        /// The endpoint's name in its network's DNS (default: `container`, if it is a
        /// valid name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// More names for it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        aliases: Vec<String>,
    },
    /// Undoes [`Request::Attach`].
    Detach {
        bridge: String,
        netns: String,
        ifname: String,
        /// What the user named, matched against the attachment's when the namespace
        /// is gone and `netns` could not be found.
        #[serde(default)]
        container: Option<String>,
    },
    /// Gives a bridge an IPv4 subnet and a gateway address the switch owns in it.
    AddNet {
        bridge: String,
        /// `A.B.C.D/N`, no host bits.
        subnet: String,
        gateway: Ipv4Addr,
    },
    /// Removes a bridge's network.
    DelNet {
        bridge: String,
    },
    /// Sets a network's DNS: the resolvers other names go to (none: the host's
    /// `/etc/resolv.conf`) and the network's own domain (none: no domain).
    SetDns {
        bridge: String,
        #[serde(default)]
        upstream: Vec<Ipv4Addr>,
        #[serde(default)]
        domain: Option<String>,
        /// Names for addresses of the network that no attached container has.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        records: Vec<dns::StaticRecord>,
    },
    /// Sets the DNS names of a port's address (a Docker endpoint's container name and
    /// network aliases): the address it is attached with, else the one address it is
    /// bound to (`set-port PORT allowed=MAC,IP`). No names clears them; they go with the
    /// port.
    SetNames {
        port: String,
        #[serde(default)]
        names: Vec<String>,
    },
    /// Lists the DNS records of a bridge's network.
    DnsShow {
        bridge: String,
    },
    /// Attaches the switch to the outside through an interface with an address of its own.
    SetUplink {
        iface: String,
        /// `A.B.C.D/N`: the switch's address on the uplink and the uplink's subnet.
        ip: String,
        /// The next hop for everything outside the uplink's subnet.
        #[serde(default)]
        gw: Option<Ipv4Addr>,
    },
    /// Detaches the uplink.
    DelUplink,
    /// Publishes `proto` `host_port` of the uplink address to a container (`-p`).
    Publish {
        proto: L4Proto,
        host_port: u16,
        target: SocketAddrV4,
    },
    /// Withdraws a published port.
    Unpublish {
        proto: L4Proto,
        host_port: u16,
    },
    ListPublished,
    /// Publishes `proto` `host_port` of the uplink address to a service's VIP.
    PublishService {
        proto: L4Proto,
        host_port: u16,
        /// The service's name (unique across bridges).
        service: String,
    },
    /// Adds a service: a VIP in a bridge's network spread over backends.
    AddService {
        bridge: String,
        spec: service::ServiceSpec,
    },
    /// Removes a service (refused while a port is published to it).
    DelService {
        bridge: String,
        name: String,
    },
    /// Replaces a service's backends.
    SetBackends {
        bridge: String,
        name: String,
        backends: Vec<service::Backend>,
    },
    /// Services with their backends' health and counters (of one bridge, or all).
    ListServices {
        #[serde(default)]
        bridge: Option<String>,
    },
    /// The connection tracking table (`conntrack -L`).
    CtShow,
    /// Forgets every tracked connection (`conntrack -F`).
    CtFlush,
    /// Sets the most connections tracked at once.
    SetCtLimit {
        limit: u32,
    },

    Stats {
        #[serde(default)]
        bridge: Option<String>,
        #[serde(default)]
        port: Option<String>,
    },

    /// Creates a cluster-wide overlay network (stored in etcd; every node gets a bridge
    /// for it).
    AddOverlay {
        name: String,
        /// `A.B.C.D/N`, no host bits.
        subnet: String,
        /// Default: the subnet's first host.
        #[serde(default)]
        gateway: Option<Ipv4Addr>,
        /// Default: allocated by the cluster.
        #[serde(default)]
        vni: Option<u32>,
        /// VXLAN inside WireGuard between the nodes, keys from the cluster.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        encrypted: bool,
    },
    /// Deletes a cluster-wide overlay network.
    DelOverlay {
        name: String,
    },
    ListOverlays,
    /// The nodes of the cluster.
    ListNodes,
    /// Reserves an address of a cluster overlay for a container something else plugs
    /// in (Docker's IPAM driver): the same etcd transaction as `attach`, the MAC derived
    /// from the address, kept in the config until [`Request::IpamRelease`].
    IpamClaim {
        overlay: String,
        /// This address, or the lowest free one.
        #[serde(default)]
        ip: Option<Ipv4Addr>,
        /// Who holds it (shown by `list-overlays`), e.g. `docker`.
        owner: String,
    },
    /// Gives a reserved address back to the cluster.
    IpamRelease {
        overlay: String,
        ip: Ipv4Addr,
    },
}

/// One response line: `{"ok":true,"data":…}` or `{"ok":false,"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
}

impl Response {
    /// A success carrying `data`.
    pub fn ok(data: Data) -> Self {
        Response {
            ok: true,
            error: None,
            data: Some(data),
        }
    }
    /// A failure with a one-line message.
    pub fn err(msg: impl Into<String>) -> Self {
        let msg: String = msg.into();
        // One line, always: a multi-line error would break the line protocol's promise.
        let msg = msg.replace(['\n', '\r'], " ");
        Response {
            ok: false,
            error: Some(msg),
            data: None,
        }
    }
}

/// The default UDP port an encrypted tunnel listens on (WireGuard's).
pub const DEFAULT_WG_PORT: u16 = 51820;

fn default_wg_port() -> u16 {
    DEFAULT_WG_PORT
}

/// How a tunnel is encrypted (`add-tunnel --encrypt`): VXLAN datagrams travel behind
/// an inner IPv4/UDP header inside WireGuard transport messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptSpec {
    /// The UDP port WireGuard messages are received on and sent from; the remotes
    /// listen on the same port.
    #[serde(default = "default_wg_port")]
    pub listen_port: u16,
    /// The inner VTEP address of this end (the source of inner packets; inner packets
    /// to another address are dropped). None: the underlay `local`, unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_local: Option<IpAddr>,
    /// Each remote's key and inner address, in the order of `remotes`.
    #[serde(default)]
    pub peers: Vec<PeerSpec>,
}

/// A remote of an encrypted tunnel: its WireGuard public key (base64, as `wg` prints
/// it) and its inner VTEP address (none: its underlay address, unchecked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_remote: Option<IpAddr>,
}

/// What a successful request returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Data {
    Done,
    Bridges {
        bridges: Vec<String>,
    },
    Ports {
        ports: Vec<String>,
    },
    Show {
        /// The daemon's WireGuard public key (base64), which encrypted tunnels' peers
        /// name it by.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_key: Option<String>,
        bridges: Vec<BridgeInfo>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uplink: Option<UplinkInfo>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        published: Vec<PublishedInfo>,
    },
    Fdb {
        bridge: String,
        entries: Vec<FdbEntry>,
    },
    Vlans {
        bridge: String,
        ports: Vec<VlanRow>,
    },
    Stats {
        bridges: Vec<BridgeStats>,
        /// VXLAN sockets: what arrived on each and what was dropped before a tunnel
        /// was known.
        #[serde(default)]
        vteps: Vec<VtepStats>,
        /// The gateway (present once a network or uplink is configured).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<GatewayStats>,
    },
    Published {
        published: Vec<PublishedInfo>,
    },
    Conntrack {
        entries: Vec<CtEntry>,
        limit: u64,
    },
    Overlays {
        overlays: Vec<OverlayInfo>,
        /// "connected", or why not.
        store: String,
    },
    Nodes {
        nodes: Vec<NodeInfo>,
        /// "connected", or why not.
        store: String,
    },
    Dns(DnsInfo),
    Services {
        services: Vec<service::ServiceInfo>,
    },
    /// A container attached to a cluster overlay: the address and MAC the cluster gave it.
    Attached {
        /// `A.B.C.D/N`.
        ip: String,
        mac: String,
    },
}

/// A cluster overlay network as `list-overlays` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayInfo {
    pub name: String,
    pub vni: u32,
    pub subnet: String,
    pub gateway: String,
    /// The bridge that carries it on this node, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// The VTEPs it sends to from this node.
    #[serde(default)]
    pub remotes: Vec<String>,
    /// VXLAN inside WireGuard between the nodes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// An encrypted overlay's WireGuard listen port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// Addresses this node reserved (`IpamClaim`): `IP OWNER`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<String>,
}

/// A cluster node as `list-nodes` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub vtep: String,
    /// "up" (its lease is alive) or "down" (seen leaving).
    pub state: String,
    /// This node itself.
    #[serde(default)]
    pub local: bool,
    pub endpoints: u32,
    /// When it (re)joined, seconds since the Unix epoch.
    pub started: u64,
    /// When it was last known alive, seconds since the Unix epoch.
    pub last_seen: u64,
    /// The WireGuard public key it published (encrypted overlays use it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// A bridge's network as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInfo {
    pub subnet: String,
    pub gateway: String,
    /// The MAC the gateway answers with.
    pub mac: String,
    /// The network's DNS domain (`set-dns --domain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// DNS upstreams set with `set-dns --upstream` (none: the host's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
}

/// The uplink as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkInfo {
    pub iface: String,
    /// `A.B.C.D/N`.
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    pub mac: String,
    /// "up" or "down".
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedInfo {
    pub proto: L4Proto,
    pub host_port: u16,
    /// `IP:PORT`.
    pub target: String,
}

/// One side of a tracked connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtTuple {
    pub src: String,
    pub dst: String,
    /// TCP/UDP ports; for ICMP, `sport` is the echo identifier and `dport` 0.
    pub sport: u16,
    pub dport: u16,
}

/// One tracked connection, as `conntrack -L` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEntry {
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// The TCP state (`ESTABLISHED`, …); absent for UDP and ICMP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Seconds left before the entry expires.
    pub timeout: u64,
    /// The tuple as the first packet arrived.
    pub orig: CtTuple,
    /// The tuple replies arrive with (after NAT).
    pub reply: CtTuple,
    /// Packets and bytes, original direction first.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// Replies have been seen.
    pub replied: bool,
    /// `[ASSURED]`: established (TCP) or replied (UDP, ICMP).
    pub assured: bool,
}

/// The gateway's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStats {
    /// Tracked connections now, the limit, and new ones refused at the limit.
    pub conntrack: u64,
    pub ct_limit: u64,
    pub ct_refused: u64,
    /// Masquerade port mappings in use.
    pub mappings: u64,
    /// Frames routed, ARP and ICMP answered, … (non-zero only).
    pub counters: BTreeMap<String, u64>,
    /// Dropped packets by reason (non-zero only).
    pub drops: BTreeMap<String, u64>,
}

/// A bridge as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeInfo {
    pub name: String,
    pub aging_secs: u32,
    pub mac_limit: u32,
    /// IPv4 and ARP headers are checked before forwarding (`set-bridge BR ip-checks`).
    #[serde(default = "yes")]
    pub ip_checks: bool,
    pub fdb_entries: u64,
    pub ports: Vec<PortInfo>,
    /// The bridge's network and gateway, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetInfo>,
    /// Its services (`add-service`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<service::ServiceInfo>,
}

/// A port as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: PortKind,
    /// "up" or "down".
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// VLAN membership; absent for a VLAN-unaware port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlans: Option<PortVlans>,
    /// The tunnel's settings and remotes (vxlan ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelInfo>,
    /// Key/value pairs given with `add-port --external-id`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: BTreeMap<String, String>,
    /// The container a port was attached to (`attach`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<AttachInfo>,
    /// The addresses it may send from (`set-port PORT allowed=`); none: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<PortBinding>,
    /// Its storm limit in frames per second (`set-port PORT storm=`); 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub storm_pps: u32,
    /// The I/O behind the port where its type alone does not say: "afxdp", or the
    /// afpacket fall-back of an afxdp port and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<String>,
    /// The DNS names of its address given by `set-names`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Where an attached port's far end is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachInfo {
    pub container: String,
    pub netns: String,
    pub ifname: String,
    pub ip: String,
    /// Its names in the network's DNS (name first, then aliases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// A VXLAN tunnel port as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelInfo {
    pub vni: u32,
    /// The underlay address the tunnel sends from; none: the kernel chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    pub dstport: u16,
    /// The bridge VLAN the tunnel carries, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub remotes: Vec<RemoteInfo>,
    /// Encrypted (VXLAN inside WireGuard): the listen port and inner address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<EncryptInfo>,
    /// The TAP its VTEP sends TCP super-frames whole through, and whether it does now;
    /// none: every frame is segmented by the switch (`--no-vxlan-gso-tap`, or no TAP
    /// could be made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gso_tap: Option<GsoTapStats>,
}

/// An encrypted tunnel's settings as `show` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptInfo {
    pub listen_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_local: Option<String>,
}

/// A remote's WireGuard state as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_remote: Option<String>,
    /// Seconds since the last completed handshake; none: no session yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_secs_ago: Option<u64>,
    /// Handshakes completed with it (either side starting), each a new session.
    #[serde(default)]
    pub handshakes: u64,
    /// Cookie replies it sent us (it was under load when we initiated); the retry
    /// carries the mac2 they allow.
    #[serde(default)]
    pub cookies_received: u64,
}

/// One remote VTEP of a tunnel, with its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteInfo {
    pub ip: String,
    /// MTU of the underlay path to the remote; inner frames carry 50 bytes less.
    pub mtu: u32,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// On an encrypted tunnel: the remote's key and session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerInfo>,
}

/// Counters of one VXLAN socket (local address and UDP port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtepStats {
    pub local: String,
    pub dstport: u16,
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    /// Datagrams dropped by reason (unknown VNI, bad flags, truncated, unknown remote).
    pub drops: BTreeMap<String, u64>,
    /// The TAP TCP super-frames leave whole through (none with `--no-vxlan-gso-tap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gso_tap: Option<GsoTapStats>,
}

/// A VTEP's TAP for whole super-frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GsoTapStats {
    /// The device's name.
    pub name: String,
    /// Super-frames go out through it now (else they are segmented by the switch).
    pub whole: bool,
    /// Why not, when `whole` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Packets written to it so far: one per super-frame and remote.
    pub packets: u64,
    /// Remotes whose super-frames are segmented even so, and why (no route through an
    /// Ethernet device, no neighbour entry for the next hop yet, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segmented: BTreeMap<String, String>,
}

/// A port's VLAN membership (the Linux bridge's `bridge vlan` model).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortVlans {
    /// The VLAN untagged (and priority-tagged) ingress goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvid: Option<u16>,
    /// VLANs that egress untagged.
    #[serde(default)]
    pub untagged: Vec<u16>,
    /// VLANs that egress tagged.
    #[serde(default)]
    pub tagged: Vec<u16>,
}

impl PortVlans {
    /// True when the port is a member of no VLAN (it is then VLAN-unaware).
    pub fn is_empty(&self) -> bool {
        self.untagged.is_empty() && self.tagged.is_empty()
    }
    /// True if `vid` is a member (tagged or untagged).
    pub fn has(&self, vid: u16) -> bool {
        self.untagged.contains(&vid) || self.tagged.contains(&vid)
    }
}

/// One row of `list-vlans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanRow {
    pub port: String,
    pub vlans: PortVlans,
}

/// One learned MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    pub port: String,
    pub vlan: u16,
    pub mac: String,
    /// Seconds since the MAC was last seen (0 for static entries).
    pub age: u32,
    /// The remote VTEP behind a tunnel port the MAC was learned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Configured with `add-fdb`: never aged or moved.
    #[serde(rename = "static", default, skip_serializing_if = "std::ops::Not::not")]
    pub is_static: bool,
}

/// Counters of one bridge and its ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeStats {
    pub name: String,
    pub fdb_entries: u64,
    /// Bridge-level counters (learned, moved, mac_limit_hits, flooded, …).
    pub counters: BTreeMap<String, u64>,
    pub ports: Vec<PortStats>,
}

/// Counters of one port, summed over workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Dropped frames by reason; only reasons with a non-zero count are listed.
    pub drops: BTreeMap<String, u64>,
}

/// Errors a client sees.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to vswitchd at {path}: {source}{hint}")]
    Connect {
        path: String,
        source: std::io::Error,
        /// What the user can do about it, when the error says.
        hint: &'static str,
    },
    #[error("lost connection to vswitchd: {0}")]
    Io(#[from] std::io::Error),
    #[error("vswitchd sent a malformed response: {0}")]
    Protocol(String),
    /// The daemon refused the request; the message is its one-line error.
    #[error("{0}")]
    Refused(String),
}

/// Sends one request and waits for its response.
pub fn call(sock: &Path, req: &Request) -> Result<Data, ClientError> {
    let mut stream = UnixStream::connect(sock).map_err(|source| ClientError::Connect {
        path: sock.display().to_string(),
        hint: match source.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " (the control socket is root's, mode 0600: run vsctl as root)"
            }
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                " (is vswitchd running? --sock or VSWITCH_SOCK names the socket)"
            }
            _ => "",
        },
        source,
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut resp = String::new();
    reader.read_line(&mut resp)?;
    if resp.is_empty() {
        return Err(ClientError::Protocol(
            "connection closed without a response".into(),
        ));
    }
    let resp: Response =
        serde_json::from_str(&resp).map_err(|e| ClientError::Protocol(e.to_string()))?;
    match (resp.ok, resp.data, resp.error) {
        (true, Some(d), _) => Ok(d),
        (true, None, _) => Ok(Data::Done),
        (false, _, e) => Err(ClientError::Refused(
            e.unwrap_or_else(|| "request failed".into()),
        )),
    }
}

/// Renders a response as the human-readable text `vsctl` prints.
pub fn render(data: &Data) -> String {
    let mut out = String::new();
    match data {
        Data::Done => {}
        Data::Attached { ip, mac } => {
            let _ = writeln!(out, "{ip} {mac}");
        }
        Data::Bridges { bridges } => {
            for b in bridges {
                let _ = writeln!(out, "{b}");
            }
        }
        Data::Ports { ports } => {
            for p in ports {
                let _ = writeln!(out, "{p}");
            }
        }
        Data::Show {
            public_key,
            bridges,
            uplink,
            published,
        } => {
            if let Some(k) = public_key {
                let _ = writeln!(out, "public-key {k}");
            }
            for b in bridges {
                let _ = writeln!(
                    out,
                    "bridge {} (aging {}s, mac-limit {}, ip-checks {}, {} learned)",
                    b.name,
                    b.aging_secs,
                    b.mac_limit,
                    if b.ip_checks { "on" } else { "off" },
                    b.fdb_entries
                );
                if let Some(n) = &b.net {
                    let _ = writeln!(
                        out,
                        "    network {} gateway {} (mac {})",
                        n.subnet, n.gateway, n.mac
                    );
                    if n.domain.is_some() || !n.upstream.is_empty() {
                        let _ = writeln!(
                            out,
                            "    dns domain {} upstream {}",
                            n.domain.as_deref().unwrap_or("-"),
                            if n.upstream.is_empty() {
                                "host".to_string()
                            } else {
                                n.upstream.join(",")
                            }
                        );
                    }
                }
                service::render(&mut out, &b.services, "    ");
                for p in &b.ports {
                    let _ = write!(
                        out,
                        "    port {} (type {}) {}",
                        p.name,
                        p.kind.as_str(),
                        p.state
                    );
                    if let Some(r) = &p.reason {
                        let _ = write!(out, ": {r}");
                    }
                    if let Some(v) = &p.vlans {
                        let _ = write!(out, ", vlans {}", vlan_summary(v));
                    }
                    if let Some(a) = &p.attach {
                        let _ = write!(
                            out,
                            ", attached to {} as {} {}",
                            a.container, a.ifname, a.ip
                        );
                        if !a.names.is_empty() {
                            let _ = write!(out, " named {}", a.names.join(","));
                        }
                    }
                    if !p.names.is_empty() {
                        let _ = write!(out, ", named {}", p.names.join(","));
                    }
                    if let Some(b) = &p.allowed {
                        let _ = write!(out, ", allowed {}", portsec::binding_text(b));
                    }
                    if p.storm_pps != 0 {
                        let _ = write!(out, ", storm {} pps", p.storm_pps);
                    }
                    if let Some(io) = &p.io {
                        let _ = write!(out, ", io {io}");
                    }
                    out.push('\n');
                    if let Some(t) = &p.tunnel {
                        let _ = write!(out, "        vxlan vni {} dstport {}", t.vni, t.dstport);
                        if let Some(l) = &t.local {
                            let _ = write!(out, " local {l}");
                        }
                        if let Some(v) = t.vlan {
                            let _ = write!(out, " vlan {v}");
                        }
                        if let Some(e) = &t.encrypt {
                            let _ = write!(out, " encrypted listen-port {}", e.listen_port);
                            if let Some(i) = &e.inner_local {
                                let _ = write!(out, " inner-local {i}");
                            }
                        }
                        match &t.gso_tap {
                            Some(g) if g.whole => {
                                let _ = write!(out, ", super-frames whole via {}", g.name);
                                let mut first = true;
                                for r in &t.remotes {
                                    if let Some(why) = g.segmented.get(&r.ip) {
                                        let sep = if first { " except to" } else { ";" };
                                        let _ = write!(out, "{sep} {} ({why})", r.ip);
                                        first = false;
                                    }
                                }
                            }
                            Some(g) => {
                                let why = g.why.as_deref().unwrap_or("its TAP is not usable");
                                let _ = write!(out, ", super-frames segmented ({why})");
                            }
                            None => {}
                        }
                        out.push('\n');
                        for r in &t.remotes {
                            let _ = writeln!(
                                out,
                                "        remote {} (mtu {}): tx {} pkts {} bytes, rx {} pkts {} bytes",
                                r.ip, r.mtu, r.tx_packets, r.tx_bytes, r.rx_packets, r.rx_bytes
                            );
                            if let Some(p) = &r.peer {
                                let _ = write!(out, "            public-key {}", p.public_key);
                                if let Some(i) = &p.inner_remote {
                                    let _ = write!(out, " inner-remote {i}");
                                }
                                match p.handshake_secs_ago {
                                    Some(s) => {
                                        let _ = write!(
                                            out,
                                            ", handshake {s}s ago ({} so far)",
                                            p.handshakes
                                        );
                                    }
                                    None => out.push_str(", no handshake yet"),
                                }
                                if p.cookies_received > 0 {
                                    let _ = write!(
                                        out,
                                        ", {} cookie replies received",
                                        p.cookies_received
                                    );
                                }
                                out.push('\n');
                            }
                        }
                    }
                }
            }
            if let Some(u) = uplink {
                let _ = write!(out, "uplink {} {} (mac {})", u.iface, u.ip, u.mac);
                if let Some(g) = &u.gw {
                    let _ = write!(out, " via {g}");
                }
                let _ = write!(out, " {}", u.state);
                if let Some(r) = &u.reason {
                    let _ = write!(out, ": {r}");
                }
                out.push('\n');
            }
            render_published(&mut out, published);
        }
        Data::Published { published } => render_published(&mut out, published),
        Data::Dns(d) => dns::render(&mut out, d),
        Data::Services { services } => service::render(&mut out, services, ""),
        Data::Overlays { .. } | Data::Nodes { .. } => render_cluster(&mut out, data),
        Data::Conntrack { entries, .. } => {
            for e in entries {
                let _ = writeln!(out, "{}", ct_line(e));
            }
        }
        Data::Fdb { entries, .. } => {
            let w = entries
                .iter()
                .map(|e| e.port.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let _ = writeln!(out, " {:<w$}  VLAN  MAC                Age", "port");
            for e in entries {
                let age = if e.is_static {
                    "static".to_string()
                } else {
                    e.age.to_string()
                };
                let _ = write!(out, " {:<w$}  {:>4}  {}  {:>3}", e.port, e.vlan, e.mac, age);
                if let Some(r) = &e.remote {
                    let _ = write!(out, "  remote {r}");
                }
                out.push('\n');
            }
        }
        Data::Vlans { ports, .. } => {
            let w = ports.iter().map(|p| p.port.len()).max().unwrap_or(4).max(4);
            let _ = writeln!(out, " {:<w$}  PVID  VLANs", "port");
            for p in ports {
                let pvid = p
                    .vlans
                    .pvid
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into());
                let _ = writeln!(
                    out,
                    " {:<w$}  {:>4}  {}",
                    p.port,
                    pvid,
                    vlan_summary(&p.vlans)
                );
            }
        }
        Data::Stats {
            bridges,
            vteps,
            gateway,
        } => {
            for b in bridges {
                let _ = write!(out, "bridge {}: {} learned", b.name, b.fdb_entries);
                for (k, v) in &b.counters {
                    let _ = write!(out, ", {k} {v}");
                }
                out.push('\n');
                for p in &b.ports {
                    let _ = write!(
                        out,
                        "    port {}: rx {} pkts {} bytes, tx {} pkts {} bytes",
                        p.name, p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes
                    );
                    if p.drops.is_empty() {
                        out.push_str(", drops 0");
                    } else {
                        let d: Vec<String> =
                            p.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
                        let _ = write!(out, ", drops: {}", d.join(", "));
                    }
                    out.push('\n');
                }
            }
            for v in vteps {
                let _ = write!(
                    out,
                    "vtep {}:{}: rx {} datagrams {} bytes",
                    v.local, v.dstport, v.rx_datagrams, v.rx_bytes
                );
                if v.drops.is_empty() {
                    out.push_str(", drops 0");
                } else {
                    let d: Vec<String> = v.drops.iter().map(|(k, n)| format!("{k} {n}")).collect();
                    let _ = write!(out, ", drops: {}", d.join(", "));
                }
                if let Some(g) = &v.gso_tap {
                    let _ = write!(out, "; gso-tap {}: {} sent whole", g.name, g.packets);
                    if !g.whole {
                        let why = g.why.as_deref().unwrap_or("not usable");
                        let _ = write!(out, ", segmenting now ({why})");
                    }
                    for (remote, why) in &g.segmented {
                        let _ = write!(out, "; to {remote} segmented ({why})");
                    }
                }
                out.push('\n');
            }
            if let Some(g) = gateway {
                let _ = write!(
                    out,
                    "gateway: conntrack {}/{} (refused {}), mappings {}",
                    g.conntrack, g.ct_limit, g.ct_refused, g.mappings
                );
                for (k, v) in &g.counters {
                    let _ = write!(out, ", {k} {v}");
                }
                if g.drops.is_empty() {
                    out.push_str(", drops 0");
                } else {
                    let d: Vec<String> = g.drops.iter().map(|(k, n)| format!("{k} {n}")).collect();
                    let _ = write!(out, ", drops: {}", d.join(", "));
                }
                out.push('\n');
            }
        }
    }
    out
}

fn render_cluster(out: &mut String, data: &Data) {
    match data {
        Data::Overlays { overlays, store } => {
            if store != "connected" {
                let _ = writeln!(out, "# cluster store: {store}");
            }
            let _ = writeln!(
                out,
                "{:<15} {:>8}  {:<18} {:<15} {:<15} REMOTES",
                "NAME", "VNI", "SUBNET", "GATEWAY", "BRIDGE"
            );
            for o in overlays {
                let _ = write!(
                    out,
                    "{:<15} {:>8}  {:<18} {:<15} {:<15} {}",
                    o.name,
                    o.vni,
                    o.subnet,
                    o.gateway,
                    o.bridge.as_deref().unwrap_or("-"),
                    if o.remotes.is_empty() {
                        "-".to_string()
                    } else {
                        o.remotes.join(",")
                    }
                );
                match (o.encrypted, o.listen_port) {
                    (true, Some(p)) => {
                        let _ = writeln!(out, "  (encrypted, listen-port {p})");
                    }
                    (true, None) => {
                        let _ = writeln!(out, "  (encrypted)");
                    }
                    _ => out.push('\n'),
                }
                for r in &o.reserved {
                    let _ = writeln!(out, "    reserved {r}");
                }
            }
        }
        Data::Nodes { nodes, store } => {
            if store != "connected" {
                let _ = writeln!(out, "# cluster store: {store}");
            }
            let _ = writeln!(
                out,
                "{:<20} {:<15} {:<5} {:>9}  LAST-SEEN",
                "NAME", "VTEP", "STATE", "ENDPOINTS"
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            for n in nodes {
                let seen = if n.state == "up" && now.saturating_sub(n.last_seen) < 2 {
                    "now".to_string()
                } else {
                    format!("{}s ago", now.saturating_sub(n.last_seen))
                };
                let name = if n.local {
                    format!("{} (this node)", n.name)
                } else {
                    n.name.clone()
                };
                let _ = write!(
                    out,
                    "{:<20} {:<15} {:<5} {:>9}  {}",
                    name, n.vtep, n.state, n.endpoints, seen
                );
                match &n.public_key {
                    Some(k) => {
                        let _ = writeln!(out, "  public-key {k}");
                    }
                    None => out.push('\n'),
                }
            }
        }
        _ => {}
    }
}

fn render_published(out: &mut String, published: &[PublishedInfo]) {
    for p in published {
        let _ = writeln!(
            out,
            "published {}/{} -> {}",
            p.proto.as_str(),
            p.host_port,
            p.target
        );
    }
}

/// One connection as `conntrack -L` prints it.
pub fn ct_line(e: &CtEntry) -> String {
    let num = match e.proto.as_str() {
        "tcp" => 6,
        "udp" => 17,
        _ => 1,
    };
    let mut s = format!("{:<8} {} {}", e.proto, num, e.timeout);
    if let Some(st) = &e.state {
        let _ = write!(s, " {st}");
    }
    let side = |s: &mut String, t: &CtTuple, i: usize| {
        let _ = write!(s, " src={} dst={}", t.src, t.dst);
        if e.proto == "icmp" {
            let _ = write!(
                s,
                " type={} code=0 id={}",
                if i == 0 { 8 } else { 0 },
                t.sport
            );
        } else {
            let _ = write!(s, " sport={} dport={}", t.sport, t.dport);
        }
        let _ = write!(s, " packets={} bytes={}", e.packets[i], e.bytes[i]);
    };
    side(&mut s, &e.orig, 0);
    if !e.replied {
        s.push_str(" [UNREPLIED]");
    }
    side(&mut s, &e.reply, 1);
    if e.assured {
        s.push_str(" [ASSURED]");
    }
    s
}

/// VLANs as `10,20-29 untagged; 100 tagged; pvid 10`.
pub fn vlan_summary(v: &PortVlans) -> String {
    let mut parts = Vec::new();
    if !v.untagged.is_empty() {
        parts.push(format!("{} untagged", validate::format_vids(&v.untagged)));
    }
    if !v.tagged.is_empty() {
        parts.push(format!("{} tagged", validate::format_vids(&v.tagged)));
    }
    if let Some(p) = v.pvid {
        parts.push(format!("pvid {p}"));
    }
    if parts.is_empty() {
        "none (VLAN-unaware)".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_as_one_json_line() {
        let r = Request::AddPort {
            bridge: "br0".into(),
            iface: "v1".into(),
            kind: PortKind::Tap,
            external_ids: BTreeMap::new(),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(!s.contains('\n'));
        assert_eq!(
            s,
            r#"{"op":"add-port","bridge":"br0","iface":"v1","kind":"tap"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
    }

    #[test]
    fn unknown_fields_and_ops_are_rejected() {
        assert!(serde_json::from_str::<Request>(r#"{"op":"add-br","bridge":"b","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"frobnicate"}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"op":"set-aging","bridge":"b","seconds":-1}"#)
                .is_err()
        );
    }

    #[test]
    fn error_responses_are_one_line() {
        let r = Response::err("a\nb");
        assert_eq!(r.error.as_deref(), Some("a b"));
    }

    #[test]
    fn fdb_renders_like_ovs_appctl() {
        let d = Data::Fdb {
            bridge: "br0".into(),
            entries: vec![FdbEntry {
                port: "v1".into(),
                vlan: 0,
                mac: "02:00:00:00:00:01".into(),
                age: 3,
                remote: None,
                is_static: false,
            }],
        };
        let s = render(&d);
        assert!(
            s.starts_with(" port  VLAN  MAC                Age\n"),
            "{s}"
        );
        assert!(s.contains(" v1       0  02:00:00:00:00:01    3"), "{s}");
    }

    #[test]
    fn show_says_how_a_tunnels_super_frames_leave() {
        let remote = |ip: &str| {
            serde_json::json!({"ip": ip, "mtu": 1500, "tx_packets": 0, "tx_bytes": 0,
                "rx_packets": 0, "rx_bytes": 0})
        };
        let show = |gso: serde_json::Value, remotes: &[&str]| {
            let remotes: Vec<_> = remotes.iter().map(|r| remote(r)).collect();
            let mut tunnel = serde_json::json!({"vni": 42, "dstport": 4789, "remotes": remotes});
            if !gso.is_null() {
                tunnel["gso_tap"] = gso;
            }
            let d: Data = serde_json::from_value(serde_json::json!({
                "kind": "show",
                "bridges": [{
                    "name": "br0", "aging_secs": 300, "mac_limit": 65536, "fdb_entries": 0,
                    "ports": [{"name": "vx", "type": "vxlan", "state": "up", "tunnel": tunnel}]
                }]
            }))
            .unwrap();
            let s = render(&d);
            s.lines()
                .find(|l| l.contains("vxlan vni"))
                .unwrap_or_else(|| panic!("{s}"))
                .trim()
                .to_string()
        };
        let tap = |whole: bool, why: Option<&str>| serde_json::json!({"name": "vswgso1", "whole": whole, "why": why, "packets": 9});
        assert_eq!(
            show(tap(true, None), &["192.0.2.7"]),
            "vxlan vni 42 dstport 4789, super-frames whole via vswgso1"
        );
        assert_eq!(
            show(tap(false, Some("vswgso1 is down")), &[]),
            "vxlan vni 42 dstport 4789, super-frames segmented (vswgso1 is down)"
        );
        assert_eq!(
            show(serde_json::Value::Null, &[]),
            "vxlan vni 42 dstport 4789"
        );
        // Remotes of this tunnel segmented even so are named; another tunnel's are not.
        let mut t = tap(true, None);
        t["segmented"] = serde_json::json!({"203.0.113.9": "no route", "198.51.100.5": "x"});
        assert_eq!(
            show(t, &["192.0.2.7", "203.0.113.9"]),
            "vxlan vni 42 dstport 4789, super-frames whole via vswgso1 except to 203.0.113.9 \
             (no route)"
        );
    }
}
