//! The topology file format as it is written: the serde types a YAML file deserializes
//! into, every value that a later error may point at wrapped in [`Spanned`] so it keeps its
//! line. Nothing here judges meaning (names, addresses, references): that is
//! [`crate::plan`]'s job; this module only fixes the shape.
//!
//! Extension rule: every struct denies unknown keys (a typo such as `mac_limt` is an error
//! with its line, never silently ignored), and every key added later is optional, so an
//! older file keeps meaning what it meant. Checks are one-key maps (`- ping: {…}`):
//! serde's externally tagged enums keep the source locations of the values inside them,
//! which internally tagged ones (`type: ping`) would lose.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
pub use serde_saphyr::{Location, Spanned};

/// Shorthand: a value with its source location.
pub type S<T> = Spanned<T>;

/// A whole topology file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyFile {
    /// Format version; optional, only `1` exists.
    pub version: Option<S<u32>>,
    /// A name for the topology (default: the file's stem).
    pub name: Option<S<String>>,
    /// Free text, shown by `vstopo show`.
    pub description: Option<String>,
    #[serde(default)]
    pub switches: Vec<S<SwitchSpec>>,
    #[serde(default)]
    pub hosts: Vec<S<HostSpec>>,
    #[serde(default)]
    pub links: Vec<S<LinkSpec>>,
    #[serde(default)]
    pub checks: Vec<S<CheckSpec>>,
    /// An etcd the run starts for its cluster switches (`cluster:`).
    pub etcd: Option<S<EtcdSpec>>,
    /// Cluster-wide overlay networks (`vsctl add-overlay`), created once in the etcd.
    #[serde(default)]
    pub overlays: Vec<S<OverlaySpec>>,
}

/// The run's etcd: members started by vstopo inside a host's namespace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSpec {
    /// The host it runs in; it listens on that host's first address.
    pub host: S<String>,
    /// 1 (default) or 3.
    pub members: Option<S<u32>>,
}

/// One cluster overlay network.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySpec {
    /// Also the name of its bridge on every cluster switch.
    pub name: S<String>,
    /// `A.B.C.D/N` with no host bits.
    pub subnet: S<String>,
    /// Default: the subnet's first address.
    pub gateway: Option<S<String>>,
    /// Default: allocated by the cluster.
    pub vni: Option<S<i64>>,
}

/// How a switch joins the cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Its VTEP address: `HOST:IFACE` of its host or one of its host's IPv4 addresses.
    pub advertise: S<String>,
    /// Lease TTL in seconds (`vswitchd --cluster-ttl`, default vswitchd's).
    pub ttl: Option<S<u32>>,
}

/// A host plugged into an overlay by `vsctl attach` on a cluster switch: its interface
/// and address come from the cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachSpec {
    pub switch: S<String>,
    pub overlay: S<String>,
}

/// One `vswitchd` instance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSpec {
    pub name: S<String>,
    /// Run inside this host's namespace instead of a namespace of its own (a switch that
    /// stands for a machine, with the host's interfaces as its underlay).
    pub host: Option<S<String>>,
    /// `vswitchd --workers N`.
    pub workers: Option<S<u32>>,
    /// `vswitchd --log-level L`.
    pub log_level: Option<S<String>>,
    #[serde(default)]
    pub bridges: Vec<S<BridgeSpec>>,
    /// VXLAN tunnel ports (`vsctl add-tunnel`), over the underlay of the switch's host.
    #[serde(default)]
    pub tunnels: Vec<S<TunnelSpec>>,
    /// The switch's address toward the outside (`vsctl set-uplink`); its interface is the
    /// switch end of the link marked `uplink: true`.
    pub uplink: Option<S<UplinkSpec>>,
    /// Ports of the uplink address forwarded to containers (`vsctl publish`).
    #[serde(default)]
    pub publish: Vec<S<PublishSpec>>,
    /// Its WireGuard private key (base64, as `wg genkey` prints it), written to its key
    /// file before it starts, so a file can name its public key; default: generated at
    /// its first start.
    pub private_key: Option<S<String>>,
    /// Join the run's etcd as a cluster node (needs `host:` and a top-level `etcd:`).
    pub cluster: Option<S<ClusterSpec>>,
}

/// The uplink of a switch: its address and next hop on the outside.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkSpec {
    /// The switch's own address with prefix length, e.g. `198.51.100.2/24`.
    pub ip: S<String>,
    /// The next hop for destinations outside the uplink's subnet (optional).
    pub gw: Option<S<String>>,
}

/// One published port: `PROTO HOST_PORT -> TO:PORT` (Docker's `-p HOST_PORT:PORT`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSpec {
    /// `tcp` (default) or `udp`.
    pub proto: Option<S<String>>,
    /// The port of the uplink address, 1..=65535.
    pub host_port: S<i64>,
    /// The container: a host (its first address), `HOST:IFACE` or an IPv4 address.
    pub to: S<String>,
    /// The container's port (default: `host_port`).
    pub port: Option<S<i64>>,
}

/// One VXLAN tunnel port of a switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSpec {
    /// The port's name (default `vxlanVNI`).
    pub name: Option<S<String>>,
    /// Default: the switch's only bridge.
    pub bridge: Option<S<String>>,
    /// VXLAN network identifier, 0..=16777215.
    pub vni: S<i64>,
    /// The far VTEPs: switches or hosts (their underlay address on a subnet this switch's
    /// host shares), `HOST:IFACE`, or IPv4 addresses.
    pub remotes: S<Vec<S<String>>>,
    /// The underlay address to send from: `HOST:IFACE` of the switch's host or one of its
    /// IPv4 addresses (default: the kernel chooses).
    pub local: Option<S<String>>,
    /// UDP destination port (default 4789).
    pub dstport: Option<S<i64>>,
    /// Carry this VLAN of the bridge (the tunnel is an access port of it).
    pub vlan: Option<S<i64>>,
    /// VXLAN inside WireGuard (`add-tunnel --encrypt`); needs `public_key` (one
    /// remote) or `peers` (one entry per remote).
    pub encrypt: Option<S<bool>>,
    /// The remote's WireGuard public key, when the tunnel has one remote.
    pub public_key: Option<S<String>>,
    /// Each remote's WireGuard key and inner address, for any number of remotes.
    pub peers: Option<S<Vec<S<TunnelPeerSpec>>>>,
    /// WireGuard listen port (default 51820).
    pub listen_port: Option<S<i64>>,
    /// This end's inner VTEP address (`--inner-local`), for a plain WireGuard peer.
    pub inner_local: Option<S<String>>,
    /// The remote's inner VTEP address (`--inner-remote`).
    pub inner_remote: Option<S<String>>,
}

/// One remote of an encrypted tunnel: which (as `remotes` names it, or its address),
/// its public key and inner VTEP address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelPeerSpec {
    pub remote: S<String>,
    pub public_key: S<String>,
    /// Its inner VTEP address (`--inner-remote`): for every peer or for none.
    pub inner_remote: Option<S<String>>,
}

/// One bridge of a switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSpec {
    pub name: S<String>,
    /// MAC aging in seconds (`vsctl set-aging`).
    pub aging: Option<S<u32>>,
    /// Limit on learned MACs (`vsctl set-mac-limit`).
    pub mac_limit: Option<S<u32>>,
    /// An IPv4 network with a gateway the switch owns (`vsctl add-net`).
    pub network: Option<S<NetworkSpec>>,
}

/// A bridge's network: Docker's bridge network subnet and gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// `A.B.C.D/N` with no host bits, e.g. `172.18.0.0/24`.
    pub subnet: S<String>,
    /// The switch's address in it, e.g. `172.18.0.1`.
    pub gateway: S<String>,
}

/// One host: a network namespace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: S<String>,
    #[serde(default)]
    pub interfaces: Vec<S<IfaceSpec>>,
    /// Default gateway (IPv4 address inside one of the interfaces' subnets).
    pub gateway: Option<S<String>>,
    /// Route between its interfaces (`net.ipv4.ip_forward=1` in its namespace).
    #[serde(default)]
    pub forward: bool,
    /// A container on an overlay: `vsctl attach` on a cluster switch gives it `eth0`
    /// and an address from the cluster (no `interfaces` then).
    pub attach: Option<S<AttachSpec>>,
    /// A `wireguard-go` interface (configured with `wg`), optionally carrying a kernel
    /// vxlan device: a plain Linux peer of an encrypted tunnel.
    pub wireguard: Option<S<WireguardSpec>>,
}

/// A host's WireGuard interface, run by `wireguard-go`, with one peer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireguardSpec {
    /// The TUN interface's name (default `wg0`).
    pub name: Option<S<String>>,
    /// Base64, as `wg genkey` prints it.
    pub private_key: S<String>,
    /// UDP port (default 51820).
    pub listen_port: Option<S<i64>>,
    /// Its inner address with prefix length, e.g. `192.0.2.2/24`.
    pub address: S<String>,
    pub peer: S<WireguardPeerSpec>,
    /// A kernel vxlan device over the WireGuard interface.
    pub vxlan: Option<S<WireguardVxlanSpec>>,
}

/// The peer of a host's WireGuard interface.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireguardPeerSpec {
    pub public_key: S<String>,
    /// The peer's underlay address (its port is the peer's listen port, default 51820).
    pub endpoint: S<String>,
    /// Inner addresses routed to it, `A.B.C.D/N`.
    pub allowed_ips: S<String>,
    /// The peer's listen port (default 51820).
    pub port: Option<S<i64>>,
}

/// A kernel vxlan device on a host's WireGuard interface.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireguardVxlanSpec {
    /// Default `vx0`.
    pub name: Option<S<String>>,
    pub vni: S<i64>,
    /// The far VTEP's inner address.
    pub remote: S<String>,
    /// The overlay address of the device, `A.B.C.D/N`.
    pub address: S<String>,
    /// Default 1370: a 1420-byte WireGuard interface less VXLAN's 50.
    pub mtu: Option<S<u32>>,
}

/// One interface of a host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IfaceSpec {
    pub name: S<String>,
    /// IPv4 address with prefix length, e.g. `10.0.0.1/24`.
    pub ip: Option<S<String>>,
    /// Unicast MAC address, e.g. `02:00:00:00:00:01`.
    pub mac: Option<S<String>>,
    pub mtu: Option<S<u32>>,
}

/// One link: a veth pair (or a TAP port), always between exactly two endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub endpoints: S<Vec<S<EndpointSpec>>>,
    /// MTU of both ends of the veth pair (a host interface's own `mtu` wins on its end).
    pub mtu: Option<S<u32>>,
}

/// One end of a link: `NODE`, `NODE:NAME` (NAME an interface of a host or a bridge of a
/// switch), or a map with options.
#[derive(Debug)]
pub enum EndpointSpec {
    Short(String),
    Full(Box<EndpointMap>),
}

/// The long form of an endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointMap {
    /// `NODE` or `NODE:NAME`.
    pub node: S<String>,
    /// The host interface (host ends).
    pub iface: Option<S<String>>,
    /// The bridge (switch ends).
    pub bridge: Option<S<String>>,
    /// The switch port's name (switch ends; default `PEER-PEERNAME`).
    pub port: Option<S<String>>,
    /// `afpacket` (default: a veth attached through AF_PACKET) or `tap` (switch ends).
    #[serde(rename = "type")]
    pub kind: Option<S<String>>,
    /// Access VLAN of the port (switch ends).
    pub vlan: Option<S<i64>>,
    /// Tagged VLANs of a trunk port (switch ends).
    pub trunk: Option<S<Vec<S<i64>>>>,
    /// The switch end is the switch's uplink (`vsctl set-uplink`), not a bridge port.
    pub uplink: Option<S<bool>>,
}

impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EndpointSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an endpoint: NODE, NODE:NAME or a map {node: …}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<EndpointSpec, E> {
                Ok(EndpointSpec::Short(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<EndpointSpec, A::Error> {
                EndpointMap::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(|m| EndpointSpec::Full(Box::new(m)))
            }
        }
        d.deserialize_any(V)
    }
}

/// One check, written as a one-key map: `- ping: {from: h1, to: h2}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckSpec {
    Ping(PingSpec),
    Pingall(PingallSpec),
    Tcp(TcpSpec),
    Iperf(IperfSpec),
    Http(HttpSpec),
    Fdb(FdbSpec),
    Exec(ExecSpec),
    Broadcast(BroadcastSpec),
    Ipam(IpamSpec),
}

/// `ipam`: the hosts attached to an overlay hold distinct addresses of its subnet, each
/// claimed once in the etcd, and no claim is left over.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamSpec {
    pub name: Option<String>,
    pub overlay: S<String>,
}

/// Reachability a ping expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    Reachable,
    Unreachable,
}

/// `ping`: from a node to an address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingSpec {
    pub name: Option<String>,
    pub from: S<String>,
    /// `HOST`, `HOST:IFACE` or an IPv4 address.
    pub to: S<String>,
    pub expect: Option<Reach>,
    pub count: Option<S<u32>>,
}

/// `pingall`: every ordered pair of a group of hosts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingallSpec {
    pub name: Option<String>,
    /// The group (default: every host with an address).
    pub hosts: Option<Vec<S<String>>>,
    /// `all` (default), `none`, or a map `FROM: [TO, …]` of the pairs that must reach
    /// (every other pair must not).
    pub expect: Option<S<Matrix>>,
    pub count: Option<S<u32>>,
}

/// The expected result of a `pingall`.
#[derive(Debug)]
pub enum Matrix {
    Word(String),
    Map(BTreeMap<String, Vec<S<String>>>),
}

impl<'de> Deserialize<'de> for Matrix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Matrix;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`all`, `none` or a map FROM: [TO, …]")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Matrix, E> {
                Ok(Matrix::Word(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Matrix, A::Error> {
                BTreeMap::deserialize(de::value::MapAccessDeserializer::new(m)).map(Matrix::Map)
            }
        }
        d.deserialize_any(V)
    }
}

/// What a TCP connection attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpState {
    /// The handshake completed.
    Open,
    /// A reset came back.
    Refused,
    /// No answer before the timeout.
    Filtered,
    /// The network said no (no route, no neighbour).
    Unreachable,
}

impl TcpState {
    /// The word used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Open => "open",
            TcpState::Refused => "refused",
            TcpState::Filtered => "filtered",
            TcpState::Unreachable => "unreachable",
        }
    }
}

/// `tcp`: connect from a node to an address and port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    pub name: Option<String>,
    pub from: S<String>,
    pub to: S<String>,
    pub port: S<u32>,
    pub expect: Option<TcpState>,
    /// Start a listener (default: unless `expect: refused`).
    pub listen: Option<bool>,
    /// The node the listener runs in (default: the node that owns `to`).
    pub server: Option<S<String>>,
    /// The port the listener binds (default: `port`).
    pub server_port: Option<S<u32>>,
    /// Seconds to wait for the handshake (default 2).
    pub timeout: Option<S<f64>>,
}

/// Transport of an `iperf` check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

/// `iperf`: iperf3 from a node to another.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IperfSpec {
    pub name: Option<String>,
    pub from: S<String>,
    pub to: S<String>,
    pub protocol: Option<Proto>,
    /// Duration in seconds (default 2).
    pub seconds: Option<S<u32>>,
    /// The received rate must be at least this (default 0: just measure).
    pub min_gbps: Option<S<f64>>,
    /// UDP send rate, iperf3's `-b` (default `500M`).
    pub rate: Option<S<String>>,
    /// UDP: most lost datagrams allowed, in percent.
    pub max_loss: Option<S<f64>>,
    pub server: Option<S<String>>,
    pub port: Option<S<u32>>,
}

/// `http`: GET from a node to a server the check starts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub name: Option<String>,
    pub from: S<String>,
    pub to: S<String>,
    /// Default 8000.
    pub port: Option<S<u32>>,
    /// Default `/`.
    pub path: Option<S<String>>,
    /// Expected status (default 200).
    pub status: Option<S<u32>>,
    pub server: Option<S<String>>,
    pub server_port: Option<S<u32>>,
    /// The address the server must see the request come from (a host, `HOST:IFACE`, an
    /// IPv4 address, a switch's uplink address or `SWITCH:BRIDGE`'s gateway).
    pub client: Option<S<String>>,
}

/// `fdb`: a MAC is (or is not) learned on a bridge, optionally on one port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbSpec {
    pub name: Option<String>,
    pub switch: S<String>,
    /// Default: the switch's only bridge.
    pub bridge: Option<S<String>>,
    /// `HOST`, `HOST:IFACE` or a literal MAC.
    pub mac: S<String>,
    pub port: Option<S<String>>,
    /// Only an entry in this VLAN counts (default: any).
    pub vlan: Option<S<i64>>,
    /// Default true.
    pub learned: Option<bool>,
}

/// `broadcast`: UDP datagrams to the subnet's broadcast address from one host, counted
/// by a listener in every other host of that subnet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastSpec {
    pub name: Option<String>,
    /// `HOST` (its first address) or `HOST:IFACE`.
    pub from: S<String>,
    /// The hosts that must receive (default: every other host with an address in the
    /// sender's subnet).
    pub to: Option<Vec<S<String>>>,
    /// Datagrams sent (default 3); each receiver must get exactly this many.
    pub count: Option<S<u32>>,
    /// UDP port (default 9999).
    pub port: Option<S<u32>>,
}

/// `exec`: a shell command in a node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    pub name: Option<String>,
    pub node: S<String>,
    /// Run with `sh -c`.
    pub cmd: S<String>,
    /// Expected exit code (default 0).
    pub exit: Option<S<i64>>,
    /// A substring stdout or stderr must contain.
    pub output: Option<String>,
    /// Seconds (default 10).
    pub timeout: Option<S<f64>>,
}
