//! The desired state, and the file that keeps it: one JSON document written atomically
//! (temp file, fsync, rename, fsync of the directory) on every accepted change, and read
//! at start. A file that cannot be read or is invalid stops the daemon with a message
//! instead of being overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use ctl::{validate, L4Proto, PortKind, PortVlans, DEFAULT_AGING_SECS, DEFAULT_MAC_LIMIT};
use serde::{Deserialize, Serialize};

/// Default path of the config file.
pub const DEFAULT_DB: &str = "/var/lib/vswitch/conf.json";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "version")]
    pub version: u32,
    #[serde(default)]
    pub bridges: Vec<BridgeConf>,
    /// The switch's attachment to the outside (`set-uplink`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkConf>,
    /// Ports of the uplink address published to containers (`publish`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PublishConf>,
    /// Most connections tracked at once; none: [`nat::conntrack::DEFAULT_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ct_limit: Option<u32>,
    /// Membership of a cluster (`vswitchd --cluster-store`), and its last state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConf>,
}

fn default_ttl() -> u64 {
    cluster::DEFAULT_TTL
}

/// The cluster this node is a member of: how to reach the store, who the node is, and
/// the last state seen, so that a restart while the store is away still forwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConf {
    /// `etcd://HOST:PORT[,HOST:PORT…]` or `etcds://…`.
    pub store: String,
    pub node: String,
    /// The VTEP address the other nodes send to.
    pub advertise: Ipv4Addr,
    /// Lease TTL, seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The last state seen (shared with the cluster thread, which never changes it in
    /// place: a copy per config change would cost a copy of every endpoint).
    #[serde(default)]
    pub state: std::sync::Arc<cluster::State>,
    /// The bridges this node made for overlays (each named as its overlay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bridges: Vec<String>,
    /// Addresses reserved for containers plugged in by others (Docker's IPAM driver):
    /// published under this node's lease like attached containers, until released.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<cluster::EndpointRecord>,
    /// This node's mesh address in each overlay with services (claimed in the
    /// cluster, published under its lease like a container's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mesh: Vec<cluster::EndpointRecord>,
    /// The ports of `published` that cluster services' records put there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PublishConf>,
}

impl ClusterConf {
    /// The checks that need no file or network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (_, tls) = cluster::endpoints(&self.store).map_err(ConfigError::Cluster)?;
        if !cluster::state::valid_name(&self.node) {
            return Err(ConfigError::Invalid(format!(
                "bad node name {:?} (1-63 letters, digits, '-', '_', '.')",
                self.node
            )));
        }
        if self.advertise.is_unspecified()
            || self.advertise.is_broadcast()
            || self.advertise.is_multicast()
            || self.advertise.is_loopback()
        {
            return Err(ConfigError::Invalid(format!(
                "cluster advertise address {} is not a unicast address",
                self.advertise
            )));
        }
        if !(cluster::MIN_TTL..=cluster::MAX_TTL).contains(&self.ttl) {
            return Err(ConfigError::Invalid(format!(
                "cluster TTL {} is outside {}-{} seconds",
                self.ttl,
                cluster::MIN_TTL,
                cluster::MAX_TTL
            )));
        }
        let files = [&self.ca, &self.cert, &self.key];
        match (tls, files.iter().filter(|f| f.is_some()).count()) {
            (true, 3) | (false, 0) => Ok(()),
            (true, _) => Err(ConfigError::Invalid(
                "etcds:// needs --cluster-ca, --cluster-cert and --cluster-key".into(),
            )),
            (false, _) => Err(ConfigError::Invalid(
                "--cluster-ca/--cluster-cert/--cluster-key need an etcds:// store".into(),
            )),
        }
    }
}

/// A bridge's network: its subnet and the gateway address the switch owns in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConf {
    /// `A.B.C.D/N`, no host bits.
    pub subnet: String,
    pub gateway: Ipv4Addr,
    /// The network's DNS domain (`set-dns --domain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// DNS upstreams (`set-dns --upstream`); none: the host's `/etc/resolv.conf`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<Ipv4Addr>,
    /// Names of addresses no attached container has (`set-dns --record`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<ctl::dns::StaticRecord>,
}

/// The uplink: an interface the switch owns an address on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConf {
    pub iface: String,
    /// `A.B.C.D/N`.
    pub ip: String,
    /// The next hop beyond the uplink's subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<Ipv4Addr>,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConf {
    pub proto: L4Proto,
    pub host_port: u16,
    pub target: SocketAddrV4,
}

fn version() -> u32 {
    1
}
fn default_aging() -> u32 {
    DEFAULT_AGING_SECS
}
fn default_mac_limit() -> u32 {
    DEFAULT_MAC_LIMIT
}
/// A config written before `ip-checks` existed loads with the checks on.
fn default_ip_checks() -> bool {
    true
}

/// One bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConf {
    pub name: String,
    #[serde(default = "default_aging")]
    pub aging_secs: u32,
    #[serde(default = "default_mac_limit")]
    pub mac_limit: u32,
    /// IPv4 and ARP headers are checked on the bridged path (`set-bridge BR ip-checks`).
    #[serde(default = "default_ip_checks")]
    pub ip_checks: bool,
    #[serde(default)]
    pub ports: Vec<PortConf>,
    /// Static MAC entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_fdb: Vec<StaticFdb>,
    /// The bridge's network and gateway (`add-net`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetConf>,
    /// Services in the bridge's network (`add-service`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ctl::service::ServiceSpec>,
}

/// One port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConf {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: PortKind,
    /// The MAC a TAP port's device gets, kept so that it stays the same across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// VLAN membership; absent for a VLAN-unaware port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlans: Option<PortVlans>,
    /// The VXLAN settings of a tunnel port (type `vxlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelConf>,
    /// Key/value pairs other tools keep with the port (`add-port --external-id`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub external_ids: std::collections::BTreeMap<String, String>,
    /// The container the port's far end was put into (`attach`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<AttachConf>,
    /// The addresses the port may send from (`set-port PORT allowed=`); none: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<ctl::PortBinding>,
    /// Broadcast, multicast and unknown unicast it may bring in per second
    /// (`set-port PORT storm=`); 0: no limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub storm_pps: u32,
    /// DNS names of the port's address (`set-names`; a Docker container's name and
    /// aliases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Where and how an attached port's far end lives in its container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachConf {
    /// The namespace file.
    pub netns: String,
    /// Its identity (device:inode) when attached: a different namespace behind the same
    /// path (a reused PID) is not the container.
    pub netns_id: String,
    /// What the user named.
    pub container: String,
    pub ifname: String,
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The endpoint's DNS name (`attach --name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More DNS names (`attach --alias`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

fn default_vxlan_port() -> u16 {
    ctl::DEFAULT_VXLAN_PORT
}

/// A tunnel port's VXLAN settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelConf {
    pub vni: u32,
    pub remotes: Vec<Ipv4Addr>,
    /// The underlay address to bind; none: any, the kernel chooses the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Ipv4Addr>,
    #[serde(default = "default_vxlan_port")]
    pub dstport: u16,
    /// VXLAN inside WireGuard (`add-tunnel --encrypt`); none: cleartext VXLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<crate::encrypt::EncryptConf>,
}

/// A static FDB entry (`vsctl add-fdb`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticFdb {
    pub mac: String,
    pub port: String,
    /// On a tunnel port: the remote VTEP the MAC is behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Ipv4Addr>,
    #[serde(default)]
    pub vlan: u16,
}

/// Remotes one tunnel may have.
pub const MAX_REMOTES: usize = 1024;

impl BridgeConf {
    /// A bridge with default settings and no ports.
    pub fn new(name: &str) -> Self {
        BridgeConf {
            name: name.to_string(),
            aging_secs: DEFAULT_AGING_SECS,
            mac_limit: DEFAULT_MAC_LIMIT,
            ip_checks: true,
            ports: Vec::new(),
            static_fdb: Vec::new(),
            net: None,
            services: Vec::new(),
        }
    }
}

/// Why a config (a request's next desired state, or the file) is refused. Each message
/// is the one line `vsctl` prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value `ctl::validate` refused, with its message.
    #[error("{0}")]
    Invalid(String),
    /// Cluster settings the `cluster` crate refused.
    #[error(transparent)]
    Cluster(#[from] cluster::SetupError),
    #[error("bridge {bridge}: {source}")]
    InBridge {
        bridge: String,
        source: Box<ConfigError>,
    },
    #[error("port {port}: {source}")]
    InPort {
        port: String,
        source: Box<ConfigError>,
    },
    #[error("tunnel {tunnel}: {source}")]
    InTunnel {
        tunnel: String,
        source: Box<ConfigError>,
    },
    #[error("bridge {0} is defined twice")]
    BridgeTwice(String),
    #[error("at most {0} external ids")]
    TooManyExternalIds(usize),
    #[error("interface {0} is a port twice")]
    PortTwice(String),
    #[error("VNI {vni} on UDP port {dstport} is already tunnel {other}")]
    VniTaken {
        vni: u32,
        dstport: u16,
        other: String,
    },
    #[error("port {0} is vxlan but has no tunnel")]
    VxlanWithoutTunnel(String),
    #[error("port {0} has tunnel settings but is not vxlan")]
    TunnelNotVxlan(String),
    #[error("{mac} in VLAN {vlan} has two static entries")]
    StaticTwice { mac: String, vlan: u16 },
    #[error("bad subnet {0}")]
    BadSubnet(String),
    #[error("subnet {subnet} overlaps {other} of bridge {bridge}")]
    SubnetOverlap {
        subnet: String,
        other: String,
        bridge: String,
    },
    #[error("interface {0} is a bridge port; the uplink needs one of its own")]
    UplinkIsPort(String),
    #[error("next hop {0} is the uplink's own address")]
    NextHopIsUplink(Ipv4Addr),
    #[error("bad uplink address {0}")]
    BadUplink(String),
    #[error("uplink subnet {uplink} overlaps network {net} of bridge {bridge}")]
    UplinkOverlap {
        uplink: String,
        net: String,
        bridge: String,
    },
    #[error("{proto}/{host_port} is already published")]
    PublishedTwice { proto: &'static str, host_port: u16 },
    #[error("target {0} is in no network")]
    TargetInNoNetwork(Ipv4Addr),
    #[error("target {0} is a gateway address")]
    TargetIsGateway(Ipv4Addr),
    /// The NAT engine refused the config it would be given.
    #[error(transparent)]
    Nat(#[from] nat::nat::ConfigError),
    #[error("no remote left (a tunnel keeps its last remote; del-tunnel removes it)")]
    NoRemoteLeft,
    #[error("more than {0} remotes")]
    TooManyRemotes(usize),
    #[error("remote {0} is listed twice")]
    RemoteTwice(Ipv4Addr),
    #[error("static entry {mac} names no port of the bridge ({port})")]
    StaticNoPort { mac: String, port: String },
    #[error("port {port} is not a member of VLAN {vlan} (static entry {mac})")]
    StaticNotMember {
        port: String,
        vlan: u16,
        mac: String,
    },
    #[error("tunnel {tunnel} carries untagged traffic only (VLAN 0); static entry {mac} names VLAN {vlan}")]
    StaticTunnelTagged {
        tunnel: String,
        mac: String,
        vlan: u16,
    },
    #[error("{remote} is not a remote of tunnel {tunnel}")]
    NotARemote { remote: Ipv4Addr, tunnel: String },
    #[error("static entry {mac} on tunnel {tunnel} needs --remote")]
    StaticNeedsRemote { mac: String, tunnel: String },
    #[error("port {0} is not a tunnel; --remote applies to tunnel ports")]
    RemoteOnNonTunnel(String),
    #[error("VLAN {0} is both tagged and untagged")]
    TaggedAndUntagged(u16),
    #[error("PVID {0} is not one of the port's VLANs")]
    PvidNotMember(u16),
    #[error("cannot read {path}: {why}")]
    Read { path: String, why: String },
    /// The file is not JSON of a config.
    #[error("{path} is not a valid config: {why}")]
    Parse { path: String, why: String },
    /// The file reads as a config that breaks an invariant.
    #[error("{path} is not a valid config: {source}")]
    NotValid {
        path: String,
        source: Box<ConfigError>,
    },
    #[error("cannot encode config: {0}")]
    Encode(String),
    /// The change was refused because it could not be written; `why` says what failed.
    #[error("cannot save the config to {path}: {why}; nothing was changed")]
    Save { path: String, why: String },
}

impl From<String> for ConfigError {
    /// `ctl::validate` answers with its message.
    fn from(e: String) -> Self {
        ConfigError::Invalid(e)
    }
}

impl ConfigError {
    fn in_bridge(bridge: &str) -> impl FnOnce(ConfigError) -> ConfigError + '_ {
        move |e| ConfigError::InBridge {
            bridge: bridge.to_string(),
            source: Box::new(e),
        }
    }
    fn in_port(port: &str) -> impl FnOnce(ConfigError) -> ConfigError + '_ {
        move |e| ConfigError::InPort {
            port: port.to_string(),
            source: Box::new(e),
        }
    }
}

impl Config {
    /// The bridge named `name`.
    pub fn bridge(&self, name: &str) -> Option<&BridgeConf> {
        self.bridges.iter().find(|b| b.name == name)
    }
    /// The bridge named `name`, mutable.
    pub fn bridge_mut(&mut self, name: &str) -> Option<&mut BridgeConf> {
        self.bridges.iter_mut().find(|b| b.name == name)
    }
    /// The bridge that has a port on interface `iface`.
    pub fn port_owner(&self, iface: &str) -> Option<&BridgeConf> {
        self.bridges
            .iter()
            .find(|b| b.ports.iter().any(|p| p.name == iface))
    }

    /// Whether bridge `name` was made for a cluster overlay.
    pub fn is_overlay_bridge(&self, name: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.bridges.iter().any(|b| b == name))
    }

    /// Checks every invariant a request could break.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(c) = &self.cluster {
            c.validate()?;
        }
        let mut seen_br = std::collections::HashSet::new();
        let mut seen_if = std::collections::HashSet::new();
        let mut seen_vni = std::collections::HashMap::new();
        for b in &self.bridges {
            validate::bridge_name(&b.name)?;
            validate::aging(b.aging_secs)
                .map_err(ConfigError::from)
                .map_err(ConfigError::in_bridge(&b.name))?;
            validate::mac_limit(b.mac_limit)
                .map_err(ConfigError::from)
                .map_err(ConfigError::in_bridge(&b.name))?;
            // Static entries count against the limit, which sizes the FDB's table: more
            // of them than that could find no slot, and be in the config but not forward.
            if b.static_fdb.len() > b.mac_limit as usize {
                return Err(ConfigError::in_bridge(&b.name)(ConfigError::Invalid(
                    format!(
                        "{} static FDB entries are more than its MAC limit {}",
                        b.static_fdb.len(),
                        b.mac_limit
                    ),
                )));
            }
            if !seen_br.insert(&b.name) {
                return Err(ConfigError::BridgeTwice(b.name.clone()));
            }
            for p in &b.ports {
                validate::iface_name(&p.name)?;
                if let Some(v) = &p.vlans {
                    check_vlans(v).map_err(ConfigError::in_port(&p.name))?;
                }
                if let Some(m) = &p.mac {
                    m.parse::<crate::wire::MacAddr>()
                        .map_err(|e| ConfigError::Invalid(e.to_string()))
                        .map_err(ConfigError::in_port(&p.name))?;
                }
                if p.external_ids.len() > validate::EXTERNAL_IDS_MAX {
                    return Err(ConfigError::in_port(&p.name)(
                        ConfigError::TooManyExternalIds(validate::EXTERNAL_IDS_MAX),
                    ));
                }
                for (k, v) in &p.external_ids {
                    validate::external_id(k, v)
                        .map_err(ConfigError::from)
                        .map_err(ConfigError::in_port(&p.name))?;
                }
                if !seen_if.insert(&p.name) {
                    return Err(ConfigError::PortTwice(p.name.clone()));
                }
                crate::portsec::check_conf(p).map_err(ConfigError::in_port(&p.name))?;
                match (&p.tunnel, p.kind) {
                    (Some(t), PortKind::Vxlan) => {
                        check_tunnel(t, self.is_overlay_bridge(&b.name)).map_err(|e| {
                            ConfigError::InTunnel {
                                tunnel: p.name.clone(),
                                source: Box::new(e),
                            }
                        })?;
                        if let Some(e) = &t.encrypt {
                            // An encrypted listener belongs to one tunnel: its peers
                            // are that tunnel's remotes.
                            let key = (t.local, e.listen_port, u32::MAX);
                            if let Some(other) = seen_vni.insert(key, &p.name) {
                                return Err(ConfigError::Invalid(format!(
                                    "listen port {} is already tunnel {other}'s",
                                    e.listen_port
                                )));
                            }
                        }
                        let key = (t.local, t.dstport, t.vni);
                        if let Some(other) = seen_vni.insert(key, &p.name) {
                            return Err(ConfigError::VniTaken {
                                vni: t.vni,
                                dstport: t.dstport,
                                other: other.clone(),
                            });
                        }
                    }
                    (None, PortKind::Vxlan) => {
                        return Err(ConfigError::VxlanWithoutTunnel(p.name.clone()))
                    }
                    (Some(_), _) => return Err(ConfigError::TunnelNotVxlan(p.name.clone())),
                    (None, _) => {}
                }
            }
            let mut seen_mac = std::collections::HashSet::new();
            for f in &b.static_fdb {
                check_static(b, f).map_err(ConfigError::in_bridge(&b.name))?;
                if !seen_mac.insert((f.mac.to_ascii_lowercase(), f.vlan)) {
                    return Err(ConfigError::in_bridge(&b.name)(ConfigError::StaticTwice {
                        mac: f.mac.clone(),
                        vlan: f.vlan,
                    }));
                }
            }
        }
        self.validate_gateway(&seen_if)
    }

    /// The subnets of the bridges that have a network, with the bridge's name.
    pub fn nets(&self) -> impl Iterator<Item = (&BridgeConf, nat::nat::Ipv4Net, Ipv4Addr)> + '_ {
        self.bridges.iter().filter_map(|b| {
            let n = b.net.as_ref()?;
            let (addr, prefix) = validate::cidr(&n.subnet).ok()?;
            Some((b, nat::nat::Ipv4Net::new(addr, prefix)?, n.gateway))
        })
    }

    /// This node's mesh address and MAC in overlay bridge `bridge`, if it has one
    /// inside the bridge's network.
    pub fn mesh_of(&self, bridge: &str) -> Option<(Ipv4Addr, crate::wire::MacAddr)> {
        let c = self.cluster.as_ref()?;
        if !c.bridges.iter().any(|b| b == bridge) {
            return None;
        }
        let (_, net, gw) = self.nets().find(|(b, _, _)| b.name == bridge)?;
        let r = c.mesh.iter().find(|r| r.overlay == bridge)?;
        let mac = r.mac.parse().ok()?;
        (net.contains(r.ip) && r.ip != gw && r.ip != net.addr()).then_some((r.ip, mac))
    }

    /// The uplink's address and subnet.
    pub fn uplink_addr(&self) -> Option<(Ipv4Addr, nat::nat::Ipv4Net)> {
        let u = self.uplink.as_ref()?;
        let (addr, prefix) = validate::cidr(&u.ip).ok()?;
        Some((addr, nat::nat::Ipv4Net::new(addr, prefix)?))
    }

    /// The conntrack limit in force.
    pub fn ct_limit(&self) -> usize {
        self.ct_limit
            .map_or(nat::conntrack::DEFAULT_LIMIT, |n| n as usize)
    }

    /// What the NAT engine is told.
    pub fn nat_config(&self) -> nat::Config {
        let uplink = self.uplink_addr().map_or(Ipv4Addr::UNSPECIFIED, |(a, _)| a);
        let mut c = nat::Config::new(uplink);
        c.networks = self
            .nets()
            .map(|(_, subnet, gateway)| nat::nat::Network { subnet, gateway })
            .collect();
        c.published = self
            .published
            .iter()
            .map(|p| nat::nat::Published {
                proto: match p.proto {
                    L4Proto::Tcp => nat::tuple::Proto::Tcp,
                    L4Proto::Udp => nat::tuple::Proto::Udp,
                },
                host_port: p.host_port,
                target: nat::tuple::Endpoint::new(*p.target.ip(), p.target.port()),
            })
            .collect();
        c.ct_limit = self.ct_limit();
        c.mesh = self
            .bridges
            .iter()
            .filter_map(|b| self.mesh_of(&b.name).map(|(a, _)| a))
            .collect();
        c.services = self
            .bridges
            .iter()
            .flat_map(|b| &b.services)
            .map(crate::controller::services::nat_service)
            .collect();
        c
    }

    /// The invariants of networks, the uplink and published ports.
    fn validate_gateway(
        &self,
        ports: &std::collections::HashSet<&String>,
    ) -> Result<(), ConfigError> {
        let mut nets: Vec<(&str, nat::nat::Ipv4Net)> = Vec::new();
        for b in &self.bridges {
            let Some(n) = &b.net else { continue };
            let (addr, prefix) = validate::subnet(&n.subnet)
                .map_err(ConfigError::from)
                .map_err(ConfigError::in_bridge(&b.name))?;
            validate::host_in("gateway", n.gateway, addr, prefix)
                .map_err(ConfigError::from)
                .map_err(ConfigError::in_bridge(&b.name))?;
            // The DNS settings as `set-dns` and `attach` check them.
            let dns = n
                .domain
                .iter()
                .try_for_each(|d| ctl::dns::name("domain", d))
                .and_then(|()| {
                    n.records.iter().try_for_each(|r| {
                        ctl::dns::name("name", &r.name)?;
                        validate::host_in("record address", r.ip, addr, prefix)
                    })
                })
                .and_then(|()| {
                    b.ports
                        .iter()
                        .filter_map(|p| p.attach.as_ref())
                        .flat_map(|a| a.name.iter().chain(&a.aliases))
                        .chain(b.ports.iter().flat_map(|p| &p.names))
                        .try_for_each(|x| ctl::dns::name("name", x))
                });
            dns.map_err(ConfigError::from)
                .map_err(ConfigError::in_bridge(&b.name))?;
            let Some(net) = nat::nat::Ipv4Net::new(addr, prefix) else {
                return Err(ConfigError::in_bridge(&b.name)(ConfigError::BadSubnet(
                    n.subnet.clone(),
                )));
            };
            if let Some((other, o)) = nets.iter().find(|(_, o)| o.overlaps(&net)) {
                return Err(ConfigError::SubnetOverlap {
                    subnet: n.subnet.clone(),
                    other: format!("{}/{}", o.addr(), o.prefix()),
                    bridge: other.to_string(),
                });
            }
            nets.push((&b.name, net));
        }
        if let Some(u) = &self.uplink {
            validate::iface_name(&u.iface)?;
            if ports.contains(&u.iface) {
                return Err(ConfigError::UplinkIsPort(u.iface.clone()));
            }
            let (addr, prefix) = validate::uplink_ip(&u.ip)?;
            if let Some(g) = u.gw {
                validate::host_in("next hop", g, addr, prefix)?;
                if g == addr {
                    return Err(ConfigError::NextHopIsUplink(g));
                }
            }
            let up = nat::nat::Ipv4Net::new(addr, prefix)
                .ok_or_else(|| ConfigError::BadUplink(u.ip.clone()))?;
            if let Some((b, o)) = nets.iter().find(|(_, o)| o.overlaps(&up)) {
                return Err(ConfigError::UplinkOverlap {
                    uplink: format!("{}/{}", up.addr(), up.prefix()),
                    net: format!("{}/{}", o.addr(), o.prefix()),
                    bridge: b.to_string(),
                });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.published {
            validate::host_port(p.host_port)?;
            if !seen.insert((p.proto, p.host_port)) {
                return Err(ConfigError::PublishedTwice {
                    proto: p.proto.as_str(),
                    host_port: p.host_port,
                });
            }
            // vsctl checks these too; a raw client on the socket need not.
            validate::target(&p.target.to_string())?;
            let ip = *p.target.ip();
            let Some((_, net)) = nets.iter().find(|(_, n)| n.contains(ip)) else {
                return Err(ConfigError::TargetInNoNetwork(ip));
            };
            validate::host_in("target", ip, net.addr(), net.prefix())?;
            if self.nets().any(|(_, _, gw)| gw == ip) {
                return Err(ConfigError::TargetIsGateway(ip));
            }
        }
        if let Some(n) = self.ct_limit {
            validate::ct_limit(n)?;
        }
        Ok(self.nat_config().validate()?)
    }
}

/// The invariants of a tunnel's settings. Only an overlay's tunnel (whose remotes are
/// the other nodes of the cluster, maybe none yet) may have no remote.
pub fn check_tunnel(t: &TunnelConf, may_be_empty: bool) -> Result<(), ConfigError> {
    validate::vni(t.vni)?;
    validate::dstport(t.dstport)?;
    if let Some(l) = t.local {
        validate::local(&l.into())?;
    }
    if t.remotes.is_empty() && !may_be_empty {
        return Err(ConfigError::NoRemoteLeft);
    }
    if t.remotes.len() > MAX_REMOTES {
        return Err(ConfigError::TooManyRemotes(MAX_REMOTES));
    }
    if let Some(e) = &t.encrypt {
        // An encrypted overlay's peers are the nodes that published their keys.
        e.check(&t.remotes).map_err(ConfigError::Invalid)?;
    }
    for (i, r) in t.remotes.iter().enumerate() {
        validate::remote(&(*r).into())?;
        if t.remotes[..i].contains(r) {
            return Err(ConfigError::RemoteTwice(*r));
        }
    }
    Ok(())
}

/// The invariants of a static FDB entry within its bridge.
fn check_static(b: &BridgeConf, f: &StaticFdb) -> Result<(), ConfigError> {
    validate::unicast_mac(&f.mac)?;
    if f.vlan != 0 {
        validate::vid(f.vlan)?;
    }
    let p = b
        .ports
        .iter()
        .find(|p| p.name == f.port)
        .ok_or_else(|| ConfigError::StaticNoPort {
            mac: f.mac.clone(),
            port: f.port.clone(),
        })?;
    match &p.vlans {
        Some(v) if !v.has(f.vlan) => {
            return Err(ConfigError::StaticNotMember {
                port: p.name.clone(),
                vlan: f.vlan,
                mac: f.mac.clone(),
            })
        }
        None if p.tunnel.is_some() && f.vlan != 0 => {
            return Err(ConfigError::StaticTunnelTagged {
                tunnel: p.name.clone(),
                mac: f.mac.clone(),
                vlan: f.vlan,
            })
        }
        _ => {}
    }
    match (&p.tunnel, f.remote) {
        (Some(t), Some(r)) if t.remotes.contains(&r) => Ok(()),
        (Some(_), Some(r)) => Err(ConfigError::NotARemote {
            remote: r,
            tunnel: p.name.clone(),
        }),
        (Some(_), None) => Err(ConfigError::StaticNeedsRemote {
            mac: f.mac.clone(),
            tunnel: p.name.clone(),
        }),
        (None, Some(_)) => Err(ConfigError::RemoteOnNonTunnel(p.name.clone())),
        (None, None) => Ok(()),
    }
}

/// The invariants of a port's VLAN membership.
pub fn check_vlans(v: &PortVlans) -> Result<(), ConfigError> {
    for &vid in v.untagged.iter().chain(&v.tagged) {
        validate::vid(vid)?;
    }
    if let Some(&vid) = v.untagged.iter().find(|x| v.tagged.contains(x)) {
        return Err(ConfigError::TaggedAndUntagged(vid));
    }
    if let Some(p) = v.pvid {
        validate::vid(p)?;
        if !v.has(p) {
            return Err(ConfigError::PvidNotMember(p));
        }
    }
    Ok(())
}

/// Where the config lives on disk.
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// A store at `path` (the directory is created on first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Store { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the config; a missing file is an empty config.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config {
                    version: 1,
                    ..Config::default()
                })
            }
            Err(e) => {
                return Err(ConfigError::Read {
                    path: self.path.display().to_string(),
                    why: e.to_string(),
                })
            }
        };
        let path = || self.path.display().to_string();
        let cfg: Config = serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path(),
            why: e.to_string(),
        })?;
        cfg.validate().map_err(|e| ConfigError::NotValid {
            path: path(),
            source: Box::new(e),
        })?;
        Ok(cfg)
    }

    /// Writes the config so that a crash at any point leaves either the old or the new
    /// file, never a torn one. The error (a full disk, say) is what `vsctl` shows for the
    /// refused change, so it names the file and says the change did not happen: a change
    /// is applied only once it is saved.
    pub fn save(&self, cfg: &Config) -> Result<(), ConfigError> {
        let failed = |why: String| ConfigError::Save {
            path: self.path.display().to_string(),
            why,
        };
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        let mut text =
            serde_json::to_string_pretty(cfg).map_err(|e| ConfigError::Encode(e.to_string()))?;
        text.push('\n');
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            failed(e.to_string())
        })?;
        // Past the rename the new file is the config: a restart loads it. Refusing the
        // change now would make the running config disagree with the file, so a failed
        // fsync of the directory (the rename's durability) is only warned about.
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!("config saved, but syncing {} failed: {e}", dir.display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vswitch-cfg-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn save_then_load_round_trips() {
        let d = tmpdir("rt");
        let s = Store::new(d.join("sub/conf.json"));
        assert_eq!(s.load().unwrap().bridges.len(), 0);
        let mut c = Config {
            version: 1,
            bridges: vec![BridgeConf::new("br0")],
            ..Config::default()
        };
        c.bridges[0].ports.push(PortConf {
            name: "v1".into(),
            kind: PortKind::Tap,
            mac: Some("02:00:00:00:00:01".into()),
            vlans: Some(PortVlans {
                pvid: Some(10),
                untagged: vec![10],
                tagged: vec![20, 30],
            }),
            tunnel: None,
            external_ids: [("endpoint".to_string(), "e1".to_string())].into(),
            attach: None,
            allowed: None,
            storm_pps: 0,
            names: Vec::new(),
        });
        c.bridges[0].ports.push(PortConf {
            name: "vx".into(),
            kind: PortKind::Vxlan,
            mac: None,
            vlans: None,
            tunnel: Some(TunnelConf {
                vni: 42,
                remotes: vec![Ipv4Addr::new(198, 51, 100, 2)],
                local: None,
                dstport: 4789,
                encrypt: None,
            }),
            external_ids: Default::default(),
            attach: None,
            allowed: None,
            storm_pps: 0,
            names: Vec::new(),
        });
        c.bridges[0].net = Some(NetConf {
            subnet: "172.18.0.0/24".into(),
            gateway: Ipv4Addr::new(172, 18, 0, 1),
            domain: None,
            upstream: Vec::new(),
            records: Vec::new(),
        });
        c.uplink = Some(UplinkConf {
            iface: "up0".into(),
            ip: "198.51.100.2/24".into(),
            gw: Some(Ipv4Addr::new(198, 51, 100, 1)),
        });
        c.published.push(PublishConf {
            proto: L4Proto::Tcp,
            host_port: 8080,
            target: "172.18.0.2:80".parse().unwrap(),
        });
        c.ct_limit = Some(1000);
        c.bridges[0].static_fdb.push(StaticFdb {
            mac: "02:00:00:00:00:0b".into(),
            port: "vx".into(),
            remote: Some(Ipv4Addr::new(198, 51, 100, 2)),
            vlan: 0,
        });
        c.validate().unwrap();
        // DNS settings are checked as set-dns checks them, and kept.
        let n = c.bridges[0].net.as_mut().unwrap();
        n.domain = Some("bad domain".into());
        assert!(c.validate().is_err());
        let n = c.bridges[0].net.as_mut().unwrap();
        n.domain = Some("lab.test".into());
        n.upstream = vec![Ipv4Addr::new(192, 0, 2, 53)];
        n.records = vec!["h1=172.19.0.9".parse().unwrap()];
        assert!(c.validate().is_err(), "a record outside the network");
        c.bridges[0].net.as_mut().unwrap().records = vec!["h1=172.18.0.9".parse().unwrap()];
        c.validate().unwrap();
        s.save(&c).unwrap();
        assert_eq!(s.load().unwrap(), c);
        assert!(!d.join("sub/conf.json.tmp").exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_save_says_so_and_leaves_the_old_file() {
        let d = tmpdir("fail");
        fs::create_dir_all(&d).unwrap();
        // The directory of the file is a plain file: nothing can be written there.
        fs::write(d.join("notadir"), "x").unwrap();
        let e = Store::new(d.join("notadir/conf.json"))
            .save(&Config::default())
            .unwrap_err();
        assert!(matches!(e, ConfigError::Save { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.starts_with("cannot save the config to ") && e.ends_with("; nothing was changed"),
            "{e}"
        );
        assert!(e.contains("notadir/conf.json"), "{e}");
        // A directory where the temp file goes: the write fails, the old file stays.
        let p = d.join("conf.json");
        let s = Store::new(&p);
        s.save(&Config::default()).unwrap();
        let before = fs::read(&p).unwrap();
        fs::create_dir_all(d.join("conf.json.tmp")).unwrap();
        let mut c = Config::default();
        c.bridges.push(BridgeConf::new("br0"));
        let e = s.save(&c).unwrap_err();
        assert!(matches!(e, ConfigError::Save { .. }), "{e:?}");
        assert!(e.to_string().contains("nothing was changed"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), before);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_or_invalid_files_are_refused() {
        let d = tmpdir("bad");
        fs::create_dir_all(&d).unwrap();
        let p = d.join("conf.json");
        fs::write(&p, "{not json").unwrap();
        let e = Store::new(&p).load().unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
        assert!(e.to_string().contains("not a valid config"), "{e}");
        let invalid = |p: &Path| match Store::new(p).load() {
            Err(ConfigError::NotValid { source, .. }) => *source,
            other => panic!("{other:?}"),
        };
        fs::write(&p, r#"{"bridges":[{"name":"a"},{"name":"a"}]}"#).unwrap();
        assert_eq!(invalid(&p), ConfigError::BridgeTwice("a".into()));
        assert!(Store::new(&p)
            .load()
            .unwrap_err()
            .to_string()
            .ends_with("is not a valid config: bridge a is defined twice"));
        fs::write(&p, r#"{"bridges":[{"name":"a","ports":[{"name":"x"}]},{"name":"b","ports":[{"name":"x"}]}]}"#)
            .unwrap();
        assert_eq!(invalid(&p), ConfigError::PortTwice("x".into()));
        fs::write(&p, r#"{"bridges":[{"name":"a","aging_secs":1}]}"#).unwrap();
        assert!(Store::new(&p).load().is_err());
        let _ = fs::remove_dir_all(&d);
    }
}
