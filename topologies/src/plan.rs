//! From a parsed file to a [`Plan`]: every reference resolved, every name and number
//! checked, every default filled in. This module owns the meaning of the format and all
//! its error messages; it touches no system state, so a file that is wrong anywhere is
//! rejected, with `FILE:LINE: message` for each problem, before anything is built.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use ctl::{L4Proto, PortKind};

use crate::model::{
    CheckSpec, EndpointMap, EndpointSpec, HostSpec, LinkSpec, Location, Matrix, NetworkSpec, Proto,
    Reach, SwitchSpec, TcpState, TopologyFile, S,
};

/// The only format version so far.
pub const VERSION: u32 = 1;
/// Longest node name: the namespace is `RUN-NODE` and stays readable.
pub const NODE_NAME_MAX: usize = 24;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// One problem in a file, at a line (0 when the whole file is meant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    pub line: u64,
    pub msg: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line per error, whatever the file held: control characters in a name
        // quoted back (YAML's "h\n1") are shown escaped.
        let mut msg = String::with_capacity(self.msg.len());
        for c in self.msg.chars() {
            if c.is_control() {
                msg.extend(c.escape_default());
            } else {
                msg.push(c);
            }
        }
        if self.line > 0 {
            write!(f, "{}:{}: {msg}", self.file, self.line)
        } else {
            write!(f, "{}: {msg}", self.file)
        }
    }
}

/// Every problem found in a file, in line order.
#[derive(Debug, Clone)]
pub struct FileErrors(pub Vec<FileError>);

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}

/// Collects errors while resolving.
struct Cx<'a> {
    file: &'a str,
    errs: Vec<FileError>,
}

impl Cx<'_> {
    fn err(&mut self, at: &Location, msg: impl Into<String>) {
        self.errs.push(FileError {
            file: self.file.to_string(),
            line: at.line(),
            msg: msg.into(),
        });
    }
}

/// Makes a serde-saphyr error read like the others: `message` (the location goes into
/// the line number), with hints where the library's words assume knowledge of serde.
fn serde_error(file: &str, e: &serde_saphyr::Error) -> FileError {
    let line = e.location().map(|l| l.line()).unwrap_or(0);
    let mut msg = e.without_snippet().to_string();
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    if let Some(rest) = msg.strip_prefix("error: ") {
        // "error: line N column M: msg"
        msg = rest
            .split_once(": ")
            .filter(|(head, _)| head.starts_with("line "))
            .map(|(_, m)| m.to_string())
            .unwrap_or_else(|| rest.to_string());
    }
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        msg = format!("duplicate key `{key}`");
    } else if msg.contains("after enum variant value") {
        msg =
            "a check is a map with exactly one key, its kind, e.g. `- ping: {from: h1, to: h2}`; \
               put `name:` and every option inside it"
                .into();
    }
    FileError {
        file: file.to_string(),
        line,
        msg,
    }
}

// ---------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `A.B.C.D/N`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, len) = s.split_once('/').ok_or_else(|| {
            format!("{s:?} is not an address with a prefix length, e.g. 10.0.0.1/24")
        })?;
        if ip.contains(':') {
            return Err(format!(
                "{s:?}: IPv6 is not supported (hosts run with IPv6 off)"
            ));
        }
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| format!("{s:?}: prefix length {len:?} is not 1..=32"))?;
        let c = Cidr { ip, prefix };
        if prefix <= 30 && (ip == c.network() || ip == c.broadcast()) {
            return Err(format!(
                "{s}: {ip} is the {} address of its subnet, not a host address",
                if ip == c.network() {
                    "network"
                } else {
                    "broadcast"
                }
            ));
        }
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return Err(format!("{s}: {ip} is not a unicast host address"));
        }
        Ok(c)
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The subnet's network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip) & self.mask())
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip) | !self.mask())
    }

    /// True when `a` is in this subnet.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.ip) & self.mask()
    }

    /// True when the two subnets share an address (one contains the other).
    pub fn overlaps(&self, o: &Cidr) -> bool {
        let (a, b) = if self.prefix <= o.prefix {
            (self, o)
        } else {
            (o, self)
        };
        a.contains(b.ip)
    }

    /// The subnet itself, `NETWORK/PREFIX`.
    pub fn subnet(&self) -> Cidr {
        Cidr {
            ip: self.network(),
            prefix: self.prefix,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// Parses a unicast MAC `aa:bb:cc:dd:ee:ff` into lower case.
pub fn parse_mac(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bytes: Option<Vec<u8>> = (parts.len() == 6)
        .then(|| {
            parts
                .iter()
                .map(|p| {
                    (p.len() == 2)
                        .then(|| u8::from_str_radix(p, 16).ok())
                        .flatten()
                })
                .collect()
        })
        .flatten();
    let b = bytes.ok_or_else(|| format!("{s:?} is not a MAC address like 02:00:00:00:00:01"))?;
    if b[0] & 1 == 1 {
        return Err(format!(
            "{s} is a multicast MAC; an interface needs a unicast one"
        ));
    }
    if b.iter().all(|x| *x == 0) {
        return Err(format!("{s} is the all-zero MAC"));
    }
    Ok(b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

fn node_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > NODE_NAME_MAX {
        return Err(format!("name {s:?} must be 1..={NODE_NAME_MAX} characters"));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("name {s:?} must start with a letter or digit"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(format!(
            "name {s:?} contains {c:?} (allowed: letters, digits, - _)"
        ));
    }
    Ok(())
}

fn iface_name(s: &str) -> Result<(), String> {
    ctl::validate::iface_name(s)?;
    if s == "lo" {
        return Err("interface name \"lo\" is taken by the loopback device".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------

/// A topology ready to build: names resolved, defaults filled in.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file as named on the command line.
    pub source: String,
    pub name: String,
    pub description: Option<String>,
    pub hosts: Vec<Host>,
    pub switches: Vec<Switch>,
    pub links: Vec<Link>,
    pub checks: Vec<Check>,
}

/// A host namespace.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub ifaces: Vec<Iface>,
    pub gateway: Option<Ipv4Addr>,
    pub forward: bool,
}

/// An interface of a host.
#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    pub addr: Option<Cidr>,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
}

/// A `vswitchd`.
#[derive(Debug, Clone)]
pub struct Switch {
    pub name: String,
    /// The host whose namespace it runs in, if not its own.
    pub host: Option<String>,
    pub workers: Option<u32>,
    pub log_level: String,
    pub bridges: Vec<Bridge>,
    /// VXLAN tunnel ports, added once the host's underlay addresses are up.
    pub tunnels: Vec<Tunnel>,
    /// The switch's address toward the outside, on the switch end of an uplink link.
    pub uplink: Option<Uplink>,
    /// Ports of the uplink address forwarded to containers, in file order.
    pub published: Vec<Published>,
}

/// A switch's uplink (`vsctl set-uplink PORT --ip ADDR [--gw GW]`).
#[derive(Debug, Clone)]
pub struct Uplink {
    /// The interface in the switch's namespace: the switch end of the uplink link.
    pub port: String,
    /// The host interface at the other end.
    pub peer: HostEnd,
    /// The switch's own address on the uplink, with the uplink subnet's prefix.
    pub addr: Cidr,
    /// The next hop beyond the uplink's subnet.
    pub gw: Option<Ipv4Addr>,
}

impl Uplink {
    /// The `vsctl` arguments that set it.
    pub fn set_args(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "set-uplink".into(),
            self.port.clone(),
            "--ip".into(),
            self.addr.to_string(),
        ];
        if let Some(g) = self.gw {
            v.push("--gw".into());
            v.push(g.to_string());
        }
        v
    }
}

/// A published port (`vsctl publish PROTO HOST_PORT TARGET:PORT`).
#[derive(Debug, Clone)]
pub struct Published {
    pub proto: L4Proto,
    pub host_port: u16,
    /// The container's address.
    pub target: Ipv4Addr,
    /// The container's port.
    pub port: u16,
    /// How the file named the container.
    pub named: String,
}

impl Published {
    /// The `vsctl` arguments that publish it.
    pub fn publish_args(&self) -> Vec<String> {
        vec![
            "publish".into(),
            self.proto.as_str().into(),
            self.host_port.to_string(),
            format!("{}:{}", self.target, self.port),
        ]
    }
}

/// A bridge's IPv4 network and the gateway address the switch owns in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The subnet (its `ip` is the network address).
    pub subnet: Cidr,
    pub gateway: Ipv4Addr,
}

/// The VXLAN port of the IANA.
pub const VXLAN_PORT: u16 = 4789;

/// A VXLAN tunnel port of a switch (`vsctl add-tunnel`).
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// The port's name.
    pub name: String,
    pub bridge: String,
    pub vni: u32,
    pub remotes: Vec<Remote>,
    /// The underlay address to bind (none: the kernel chooses).
    pub local: Option<Ipv4Addr>,
    pub dstport: u16,
    /// The bridge VLAN the tunnel carries as an access port.
    pub vlan: Option<u16>,
}

/// A far VTEP of a tunnel.
#[derive(Debug, Clone)]
pub struct Remote {
    pub ip: Ipv4Addr,
    /// How the file named it (a switch, a host, `HOST:IFACE` or the address itself).
    pub named: String,
}

impl Tunnel {
    /// The `vsctl` arguments that create it.
    pub fn add_args(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "add-tunnel".into(),
            self.bridge.clone(),
            self.name.clone(),
            "--vni".into(),
            self.vni.to_string(),
        ];
        for r in &self.remotes {
            v.push("--remote".into());
            v.push(r.ip.to_string());
        }
        if let Some(l) = self.local {
            v.push("--local".into());
            v.push(l.to_string());
        }
        if self.dstport != VXLAN_PORT {
            v.push("--dstport".into());
            v.push(self.dstport.to_string());
        }
        if let Some(vid) = self.vlan {
            v.push("--vlan".into());
            v.push(vid.to_string());
        }
        v
    }
}

/// A bridge of a switch.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    pub aging: Option<u32>,
    pub mac_limit: Option<u32>,
    /// The network the switch routes for (`vsctl add-net`).
    pub network: Option<Network>,
}

impl Bridge {
    /// The `vsctl` arguments that give it its network, if it has one.
    pub fn add_net_args(&self) -> Option<Vec<String>> {
        self.network.map(|n| {
            vec![
                "add-net".into(),
                self.name.clone(),
                n.subnet.to_string(),
                "--gateway".into(),
                n.gateway.to_string(),
            ]
        })
    }
}

/// A switch port a link creates.
#[derive(Debug, Clone)]
pub struct Port {
    pub switch: String,
    pub bridge: String,
    /// The port's (and its interface's) name in the switch's namespace.
    pub name: String,
    pub kind: PortKind,
    pub vlans: Vlans,
}

/// A port's VLAN membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Vlans {
    /// No VLAN configured: the port carries every frame as it is.
    #[default]
    Unaware,
    /// Member of one VLAN only, untagged, as its PVID (`vsctl add-vlan … --access`).
    Access(u16),
    /// Tagged member of these VLANs (`vsctl add-vlan BR PORT 10,20`).
    Trunk(Vec<u16>),
}

/// One host interface at the end of a link.
#[derive(Debug, Clone)]
pub struct HostEnd {
    pub host: String,
    pub iface: String,
}

/// A link.
#[derive(Debug, Clone)]
pub enum Link {
    /// A host interface on a switch port: a veth pair (afpacket) or a TAP the switch
    /// creates and that moves into the host.
    HostSwitch {
        host: HostEnd,
        port: Port,
        mtu: Option<u32>,
    },
    /// A veth pair between two hosts.
    HostHost {
        a: HostEnd,
        b: HostEnd,
        mtu: Option<u32>,
    },
    /// A veth pair between two switch ports (a trunk between switches).
    SwitchSwitch { a: Port, b: Port, mtu: Option<u32> },
    /// A veth pair from a host interface to a switch's uplink: the switch end (`port`) is
    /// no bridge port, it is the interface of `vsctl set-uplink`.
    Uplink {
        host: HostEnd,
        switch: String,
        port: String,
        mtu: Option<u32>,
    },
}

impl Link {
    /// The devices the link puts into switches' namespaces: (switch, device name).
    pub fn switch_ends(&self) -> Vec<(&str, &str)> {
        match self {
            Link::HostSwitch { port, .. } => vec![(port.switch.as_str(), port.name.as_str())],
            Link::SwitchSwitch { a, b, .. } => vec![
                (a.switch.as_str(), a.name.as_str()),
                (b.switch.as_str(), b.name.as_str()),
            ],
            Link::Uplink { switch, port, .. } => vec![(switch.as_str(), port.as_str())],
            Link::HostHost { .. } => vec![],
        }
    }
}

/// One check, in file order.
#[derive(Debug, Clone)]
pub struct Check {
    /// Line in the file.
    pub line: u64,
    /// What the report calls it.
    pub label: String,
    pub kind: CheckKind,
}

/// One pair of a `pingall`.
#[derive(Debug, Clone)]
pub struct Pair {
    pub from: String,
    pub to: String,
    pub ip: Ipv4Addr,
    pub reachable: bool,
}

/// Where a MAC for an `fdb` check comes from.
#[derive(Debug, Clone)]
pub enum MacRef {
    /// Read from the interface when the check runs.
    Iface(HostEnd),
    Literal(String),
}

/// What a check does.
#[derive(Debug, Clone)]
pub enum CheckKind {
    Ping {
        from: String,
        to: Ipv4Addr,
        count: u32,
        reachable: bool,
    },
    Pingall {
        pairs: Vec<Pair>,
        count: u32,
    },
    Tcp {
        from: String,
        to: Ipv4Addr,
        port: u16,
        /// The node and port of the listener, when the check starts one.
        listener: Option<(String, u16)>,
        expect: TcpState,
        timeout: Duration,
    },
    Iperf {
        from: String,
        to: Ipv4Addr,
        server: String,
        port: u16,
        udp: bool,
        seconds: u32,
        rate: String,
        min_gbps: f64,
        max_loss: Option<f64>,
    },
    Http {
        from: String,
        to: Ipv4Addr,
        port: u16,
        path: String,
        status: u16,
        server: String,
        server_port: u16,
        /// The client address the server must see.
        client: Option<Ipv4Addr>,
    },
    Fdb {
        switch: String,
        bridge: String,
        mac: MacRef,
        port: Option<String>,
        vlan: Option<u16>,
        learned: bool,
    },
    Exec {
        node: String,
        cmd: String,
        exit: i32,
        output: Option<String>,
        timeout: Duration,
    },
    Broadcast {
        from: String,
        /// The sender's subnet; datagrams go to its broadcast address.
        subnet: Cidr,
        port: u16,
        count: u32,
        /// The hosts that must each receive `count` datagrams.
        to: Vec<String>,
    },
}

impl Plan {
    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The switch named `name`.
    pub fn switch(&self, name: &str) -> Option<&Switch> {
        self.switches.iter().find(|s| s.name == name)
    }

    /// The node whose namespace `node` (a host or a switch) lives in.
    pub fn ns_node<'a>(&'a self, node: &'a str) -> Option<&'a str> {
        if self.host(node).is_some() {
            return Some(node);
        }
        self.switch(node)
            .map(|s| s.host.as_deref().unwrap_or(s.name.as_str()))
    }

    /// The nodes that get a namespace of their own, in creation order.
    pub fn namespaces(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .map(|h| h.name.as_str())
            .chain(
                self.switches
                    .iter()
                    .filter(|s| s.host.is_none())
                    .map(|s| s.name.as_str()),
            )
            .collect()
    }

    /// Every port of `switch`, in link order.
    pub fn ports_of<'a>(&'a self, switch: &'a str) -> impl Iterator<Item = &'a Port> + 'a {
        self.links
            .iter()
            .flat_map(|l| match l {
                Link::HostSwitch { port, .. } => vec![port],
                Link::SwitchSwitch { a, b, .. } => vec![a, b],
                Link::HostHost { .. } | Link::Uplink { .. } => vec![],
            })
            .filter(move |p| p.switch == switch)
    }

    /// The names of every port of `switch` on `bridge`: link ports and tunnels.
    pub fn port_names(&self, switch: &str, bridge: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .ports_of(switch)
            .filter(|p| p.bridge == bridge)
            .map(|p| p.name.clone())
            .collect();
        if let Some(s) = self.switch(switch) {
            v.extend(
                s.tunnels
                    .iter()
                    .filter(|t| t.bridge == bridge)
                    .map(|t| t.name.clone()),
            );
        }
        v
    }
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

/// Reads and resolves `path`; every error carries the path as given and a line.
pub fn load(path: &Path) -> Result<Plan, FileErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        FileErrors(vec![FileError {
            file: file.clone(),
            line: 0,
            msg: format!("cannot read: {e}"),
        }])
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "topology".into());
    parse(&text, &file, &stem)
}

/// Parses and resolves `text`; `file` names it in errors, `stem` is the default name.
pub fn parse(text: &str, file: &str, stem: &str) -> Result<Plan, FileErrors> {
    let tf: TopologyFile =
        serde_saphyr::from_str(text).map_err(|e| FileErrors(vec![serde_error(file, &e)]))?;
    let mut cx = Cx {
        file,
        errs: Vec::new(),
    };
    let plan = resolve(&mut cx, tf, file, stem);
    if cx.errs.is_empty() {
        Ok(plan)
    } else {
        cx.errs.sort_by_key(|e| e.line);
        Err(FileErrors(cx.errs))
    }
}

/// What a node name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Host,
    Switch,
}

/// The resolver's view of the nodes declared so far.
struct Nodes {
    kinds: HashMap<String, (NodeKind, u64)>,
}

impl Nodes {
    fn kind(&self, n: &str) -> Option<NodeKind> {
        self.kinds.get(n).map(|k| k.0)
    }
}

fn resolve(cx: &mut Cx<'_>, tf: TopologyFile, file: &str, stem: &str) -> Plan {
    if let Some(v) = &tf.version {
        if v.value != VERSION {
            cx.err(
                &v.referenced,
                format!(
                    "version {} is not understood by this vstopo (it knows version {VERSION})",
                    v.value
                ),
            );
        }
    }
    let name = match &tf.name {
        Some(n) => {
            if let Err(e) = node_name(&n.value) {
                cx.err(&n.referenced, format!("topology {e}"));
            }
            n.value.clone()
        }
        None => stem.to_string(),
    };
    if tf.hosts.is_empty() && tf.switches.is_empty() {
        cx.err(
            &Location::UNKNOWN,
            "the file describes nothing: no `hosts` and no `switches`",
        );
    }

    let mut nodes = Nodes {
        kinds: HashMap::new(),
    };
    let mut declare = |cx: &mut Cx<'_>, n: &S<String>, kind: NodeKind| {
        if let Err(e) = node_name(&n.value) {
            cx.err(&n.referenced, e);
            return;
        }
        if let Some((k, line)) = nodes.kinds.get(&n.value) {
            let what = match k {
                NodeKind::Host => "host",
                NodeKind::Switch => "switch",
            };
            cx.err(
                &n.referenced,
                format!(
                    "duplicate name `{}`: already a {what} at line {line} (hosts and switches share one name space)",
                    n.value
                ),
            );
            return;
        }
        nodes
            .kinds
            .insert(n.value.clone(), (kind, n.referenced.line()));
    };
    for h in &tf.hosts {
        declare(cx, &h.value.name, NodeKind::Host);
    }
    for s in &tf.switches {
        declare(cx, &s.value.name, NodeKind::Switch);
    }

    let hosts: Vec<Host> = tf
        .hosts
        .iter()
        .map(|h| resolve_host(cx, &h.value))
        .collect();
    let switches: Vec<Switch> = tf
        .switches
        .iter()
        .map(|s| resolve_switch(cx, &s.value, &nodes))
        .collect();

    // The same address on two interfaces would make every check ambiguous.
    let mut seen: HashMap<Ipv4Addr, (String, u64)> = HashMap::new();
    for h in &tf.hosts {
        for i in &h.value.interfaces {
            let Some(ip) = &i.value.ip else { continue };
            let Ok(c) = Cidr::parse(&ip.value) else {
                continue;
            };
            let who = format!("{}:{}", h.value.name.value, i.value.name.value);
            if let Some((other, line)) = seen.get(&c.ip) {
                cx.err(
                    &ip.referenced,
                    format!(
                        "address {} of {who} is already {other}'s (line {line})",
                        c.ip
                    ),
                );
            } else {
                seen.insert(c.ip, (who, ip.referenced.line()));
            }
        }
    }

    let mut plan = Plan {
        source: file.to_string(),
        name,
        description: tf.description.clone(),
        hosts,
        switches,
        links: Vec::new(),
        checks: Vec::new(),
    };
    resolve_links(cx, &tf, &nodes, &mut plan);
    resolve_tunnels(cx, &tf, &nodes, &mut plan);
    resolve_gateways(cx, &tf, &mut plan);
    for (idx, c) in tf.checks.iter().enumerate() {
        if let Some(check) = resolve_check(cx, c, idx, &nodes, &plan) {
            plan.checks.push(check);
        }
    }
    plan
}

fn resolve_host(cx: &mut Cx<'_>, h: &HostSpec) -> Host {
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut names: HashMap<&str, u64> = HashMap::new();
    for i in &h.interfaces {
        let i = &i.value;
        if let Err(e) = iface_name(&i.name.value) {
            cx.err(&i.name.referenced, e);
        }
        if let Some(line) = names.insert(&i.name.value, i.name.referenced.line()) {
            cx.err(
                &i.name.referenced,
                format!(
                    "duplicate interface `{}` on host {} (first at line {line})",
                    i.name.value, h.name.value
                ),
            );
        }
        let addr = i.ip.as_ref().and_then(|ip| match Cidr::parse(&ip.value) {
            Ok(c) => Some(c),
            Err(e) => {
                cx.err(&ip.referenced, format!("bad address: {e}"));
                None
            }
        });
        let mac = i.mac.as_ref().and_then(|m| match parse_mac(&m.value) {
            Ok(m) => Some(m),
            Err(e) => {
                cx.err(&m.referenced, e);
                None
            }
        });
        if let Some(m) = &i.mtu {
            check_mtu(cx, m);
        }
        ifaces.push(Iface {
            name: i.name.value.clone(),
            addr,
            mac,
            mtu: i.mtu.as_ref().map(|m| m.value),
        });
    }
    let gateway = h.gateway.as_ref().and_then(|g| {
        let Ok(ip) = g.value.parse::<Ipv4Addr>() else {
            cx.err(
                &g.referenced,
                format!("gateway {:?} is not an IPv4 address", g.value),
            );
            return None;
        };
        let on_link = ifaces
            .iter()
            .filter_map(|i| i.addr)
            .any(|c| c.contains(ip) && c.ip != ip);
        if !on_link {
            cx.err(
                &g.referenced,
                format!(
                    "gateway {ip} is not inside the subnet of any address of host {}",
                    h.name.value
                ),
            );
            return None;
        }
        Some(ip)
    });
    Host {
        name: h.name.value.clone(),
        ifaces,
        gateway,
        forward: h.forward,
    }
}

fn check_mtu(cx: &mut Cx<'_>, m: &S<u32>) {
    if !(68..=65535).contains(&m.value) {
        cx.err(
            &m.referenced,
            format!("MTU {} is outside 68..=65535", m.value),
        );
    }
}

const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

fn resolve_switch(cx: &mut Cx<'_>, s: &SwitchSpec, nodes: &Nodes) -> Switch {
    if let Some(h) = &s.host {
        match nodes.kind(&h.value) {
            Some(NodeKind::Host) => {}
            Some(NodeKind::Switch) => cx.err(
                &h.referenced,
                format!(
                    "`host: {}` names a switch; it must name an entry of `hosts`",
                    h.value
                ),
            ),
            None => cx.err(
                &h.referenced,
                format!(
                    "unknown host `{}` (a switch's `host` names an entry of `hosts`)",
                    h.value
                ),
            ),
        }
    }
    if let Some(w) = &s.workers {
        if !(1..=64).contains(&w.value) {
            cx.err(
                &w.referenced,
                format!("workers {} is outside 1..=64", w.value),
            );
        }
    }
    if let Some(l) = &s.log_level {
        if !LOG_LEVELS.contains(&l.value.as_str()) {
            cx.err(
                &l.referenced,
                format!(
                    "log_level {:?} is not one of {}",
                    l.value,
                    LOG_LEVELS.join(", ")
                ),
            );
        }
    }
    let mut names: HashMap<&str, u64> = HashMap::new();
    let mut bridges = Vec::new();
    for b in &s.bridges {
        let b = &b.value;
        if let Err(e) = ctl::validate::bridge_name(&b.name.value) {
            cx.err(&b.name.referenced, e);
        }
        if let Some(line) = names.insert(&b.name.value, b.name.referenced.line()) {
            cx.err(
                &b.name.referenced,
                format!(
                    "duplicate bridge `{}` on switch {} (first at line {line})",
                    b.name.value, s.name.value
                ),
            );
        }
        if let Some(a) = &b.aging {
            if let Err(e) = ctl::validate::aging(a.value) {
                cx.err(&a.referenced, e);
            }
        }
        if let Some(m) = &b.mac_limit {
            if let Err(e) = ctl::validate::mac_limit(m.value) {
                cx.err(&m.referenced, e);
            }
        }
        let network = b
            .network
            .as_ref()
            .and_then(|n| resolve_network(cx, &n.value));
        if let (Some(n), Some(spec)) = (network, &b.network) {
            let clash = bridges.iter().find_map(|x: &Bridge| {
                x.network
                    .filter(|m| m.subnet.overlaps(&n.subnet))
                    .map(|m| (x.name.clone(), m))
            });
            if let Some((other, m)) = clash {
                cx.err(
                    &spec.value.subnet.referenced,
                    format!(
                        "subnet {} overlaps {} of bridge {other} on switch {}",
                        n.subnet, m.subnet, s.name.value
                    ),
                );
            }
        }
        bridges.push(Bridge {
            name: b.name.value.clone(),
            aging: b.aging.as_ref().map(|a| a.value),
            mac_limit: b.mac_limit.as_ref().map(|m| m.value),
            network,
        });
    }
    Switch {
        name: s.name.value.clone(),
        host: s.host.as_ref().map(|h| h.value.clone()),
        workers: s.workers.as_ref().map(|w| w.value),
        log_level: s
            .log_level
            .as_ref()
            .map(|l| l.value.clone())
            .unwrap_or_else(|| "info".into()),
        bridges,
        tunnels: Vec::new(),
        uplink: None,
        published: Vec::new(),
    }
}

/// A bridge's `network: {subnet, gateway}`.
fn resolve_network(cx: &mut Cx<'_>, n: &NetworkSpec) -> Option<Network> {
    let subnet = match ctl::validate::subnet(&n.subnet.value) {
        Ok((ip, prefix)) => Cidr { ip, prefix },
        Err(e) => {
            cx.err(&n.subnet.referenced, e);
            return None;
        }
    };
    let Ok(gateway) = n.gateway.value.parse::<Ipv4Addr>() else {
        cx.err(
            &n.gateway.referenced,
            format!("gateway {:?} is not an IPv4 address", n.gateway.value),
        );
        return None;
    };
    if let Err(e) = ctl::validate::host_in("gateway", gateway, subnet.ip, subnet.prefix) {
        cx.err(&n.gateway.referenced, e);
        return None;
    }
    Some(Network { subnet, gateway })
}

/// One endpoint after lookup.
enum End {
    Host(HostEnd),
    Switch {
        switch: String,
        bridge: String,
        port: Option<S<String>>,
        kind: Option<(PortKind, Location)>,
        vlans: Vlans,
    },
    /// The switch end of an uplink link.
    Uplink {
        switch: String,
        port: Option<S<String>>,
        at: Location,
    },
}

/// A VLAN id: 1..=4094 (0 means "no VLAN" and 4095 is reserved by 802.1Q).
fn vid(cx: &mut Cx<'_>, v: &S<i64>) -> Option<u16> {
    match u16::try_from(v.value)
        .ok()
        .filter(|n| (1..=4094).contains(n))
    {
        Some(n) => Some(n),
        None => {
            cx.err(
                &v.referenced,
                format!("VLAN {} is outside 1..=4094", v.value),
            );
            None
        }
    }
}

fn resolve_end(cx: &mut Cx<'_>, e: &S<EndpointSpec>, plan: &Plan, nodes: &Nodes) -> Option<End> {
    let at = e.referenced;
    let (node_text, node_at, named, map) = match &e.value {
        EndpointSpec::Short(s) => (s.as_str(), at, None, None),
        EndpointSpec::Full(m) => (
            m.node.value.as_str(),
            m.node.referenced,
            m.iface.as_ref().or(m.bridge.as_ref()),
            Some(m),
        ),
    };
    let (node, colon_name) = match node_text.split_once(':') {
        Some((n, rest)) => (n, Some(rest)),
        None => (node_text, None),
    };
    if colon_name.is_some() && named.is_some() {
        cx.err(
            &node_at,
            format!("`{node_text}` names its interface or bridge twice (after `:` and as a key)"),
        );
        return None;
    }
    let name: Option<(&str, Location)> = colon_name
        .map(|n| (n, node_at))
        .or_else(|| named.map(|n| (n.value.as_str(), n.referenced)));
    match nodes.kind(node) {
        None => {
            let mut known: Vec<&str> = nodes.kinds.keys().map(String::as_str).collect();
            known.sort_unstable();
            cx.err(
                &node_at,
                format!(
                    "unknown node `{node}` in a link (known: {})",
                    known.join(", ")
                ),
            );
            None
        }
        Some(NodeKind::Host) => {
            let host = plan.host(node)?;
            if let Some(m) = map {
                for (key, loc) in [
                    ("bridge", m.bridge.as_ref().map(|x| x.referenced)),
                    ("port", m.port.as_ref().map(|x| x.referenced)),
                    ("type", m.kind.as_ref().map(|x| x.referenced)),
                    ("vlan", m.vlan.as_ref().map(|x| x.referenced)),
                    ("trunk", m.trunk.as_ref().map(|x| x.referenced)),
                    ("uplink", m.uplink.as_ref().map(|x| x.referenced)),
                ] {
                    if let Some(loc) = loc {
                        cx.err(
                            &loc,
                            format!("`{key}` belongs on a switch end; `{node}` is a host"),
                        );
                    }
                }
            }
            let iface = match name {
                Some((n, loc)) => {
                    if host.ifaces.iter().all(|i| i.name != n) {
                        cx.err(
                            &loc,
                            format!(
                                "host {node} has no interface `{n}` (declare it under the host's `interfaces`)"
                            ),
                        );
                        return None;
                    }
                    n.to_string()
                }
                None => match host.ifaces.as_slice() {
                    [only] => only.name.clone(),
                    [] => {
                        cx.err(
                            &node_at,
                            format!("host {node} has no interfaces to link (add `interfaces`)"),
                        );
                        return None;
                    }
                    many => {
                        cx.err(
                            &node_at,
                            format!(
                                "host {node} has {} interfaces; say which: {node}:IFACE",
                                many.len()
                            ),
                        );
                        return None;
                    }
                },
            };
            Some(End::Host(HostEnd {
                host: node.to_string(),
                iface,
            }))
        }
        Some(NodeKind::Switch) => {
            let sw = plan.switch(node)?;
            if let Some(m) = map.filter(|m| m.uplink.as_ref().is_some_and(|u| u.value)) {
                let at = m.uplink.as_ref().map(|u| u.referenced).unwrap_or(node_at);
                if let Some((_, loc)) = name {
                    cx.err(
                        &loc,
                        "an uplink end is on no bridge (the uplink is not a bridge port); drop the bridge",
                    );
                }
                for (key, loc) in [
                    ("iface", m.iface.as_ref().map(|x| x.referenced)),
                    ("type", m.kind.as_ref().map(|x| x.referenced)),
                    ("vlan", m.vlan.as_ref().map(|x| x.referenced)),
                    ("trunk", m.trunk.as_ref().map(|x| x.referenced)),
                ] {
                    if let Some(loc) = loc {
                        cx.err(
                            &loc,
                            format!(
                                "`{key}` does not apply to an uplink end (it is not a bridge port)"
                            ),
                        );
                    }
                }
                return Some(End::Uplink {
                    switch: node.to_string(),
                    port: m.port.clone(),
                    at,
                });
            }
            let mut kind = None;
            let mut port = None;
            let mut vlans = Vlans::Unaware;
            if let Some(m) = map {
                if let Some(i) = &m.iface {
                    cx.err(
                        &i.referenced,
                        format!(
                            "`iface` belongs on a host end; `{node}` is a switch (use `bridge`)"
                        ),
                    );
                }
                if let Some(k) = &m.kind {
                    match k.value.parse::<PortKind>() {
                        Ok(pk) => kind = Some((pk, k.referenced)),
                        Err(e) => cx.err(&k.referenced, e),
                    }
                }
                port = m.port.clone();
                vlans = resolve_vlans(cx, m);
            }
            let bridge = match name {
                Some((n, loc)) => {
                    if sw.bridges.iter().all(|b| b.name != n) {
                        cx.err(&loc, format!("switch {node} has no bridge `{n}`"));
                        return None;
                    }
                    n.to_string()
                }
                None => match sw.bridges.as_slice() {
                    [only] => only.name.clone(),
                    [] => {
                        cx.err(&node_at, format!("switch {node} has no bridges"));
                        return None;
                    }
                    many => {
                        cx.err(
                            &node_at,
                            format!(
                                "switch {node} has {} bridges; say which: {node}:BRIDGE",
                                many.len()
                            ),
                        );
                        return None;
                    }
                },
            };
            Some(End::Switch {
                switch: node.to_string(),
                bridge,
                port,
                kind,
                vlans,
            })
        }
    }
}

/// The VLAN membership an endpoint asks for: `vlan: N` (access) or `trunk: [N, …]`.
fn resolve_vlans(cx: &mut Cx<'_>, m: &EndpointMap) -> Vlans {
    match (&m.vlan, &m.trunk) {
        (Some(v), Some(t)) => {
            cx.err(
                &t.referenced,
                format!(
                    "a port is an access port (`vlan`, line {}) or a trunk (`trunk`), not both",
                    v.referenced.line()
                ),
            );
            Vlans::Unaware
        }
        (Some(v), None) => match vid(cx, v) {
            Some(n) => Vlans::Access(n),
            None => Vlans::Unaware,
        },
        (None, Some(t)) => {
            if t.value.is_empty() {
                cx.err(&t.referenced, "`trunk` lists no VLAN");
            }
            let mut vids: Vec<u16> = Vec::new();
            for v in &t.value {
                let Some(n) = vid(cx, v) else { continue };
                if vids.contains(&n) {
                    cx.err(&v.referenced, format!("VLAN {n} is listed twice"));
                } else {
                    vids.push(n);
                }
            }
            Vlans::Trunk(vids)
        }
        (None, None) => Vlans::Unaware,
    }
}

/// Port name of a switch end: given, or `PEER-PEERNAME`.
fn port_name(cx: &mut Cx<'_>, given: &Option<S<String>>, default: String, at: &Location) -> String {
    match given {
        Some(p) => {
            if let Err(e) = iface_name(&p.value) {
                cx.err(&p.referenced, format!("port {e}"));
            }
            p.value.clone()
        }
        None => {
            if iface_name(&default).is_err() {
                cx.err(
                    at,
                    format!(
                        "the default port name `{default}` is not a valid interface name (1..=15 characters); \
                         name the port: {{node: …, port: NAME}}"
                    ),
                );
            }
            default
        }
    }
}

fn resolve_links(cx: &mut Cx<'_>, tf: &TopologyFile, nodes: &Nodes, plan: &mut Plan) {
    let mut used: HashMap<(String, String), u64> = HashMap::new();
    // switch -> line of its uplink link
    let mut uplinks: HashMap<String, u64> = HashMap::new();
    let errs_before = cx.errs.len();
    for l in &tf.links {
        let LinkSpec { endpoints, mtu } = &l.value;
        if let Some(m) = mtu {
            check_mtu(cx, m);
        }
        let mtu = mtu.as_ref().map(|m| m.value);
        if endpoints.value.len() != 2 {
            cx.err(
                &endpoints.referenced,
                format!(
                    "a link has exactly two endpoints, this one has {}",
                    endpoints.value.len()
                ),
            );
            continue;
        }
        let a = resolve_end(cx, &endpoints.value[0], plan, nodes);
        let b = resolve_end(cx, &endpoints.value[1], plan, nodes);
        let (Some(a), Some(b)) = (a, b) else { continue };
        let locs = [endpoints.value[0].referenced, endpoints.value[1].referenced];
        for (e, loc) in [(&a, &locs[0]), (&b, &locs[1])] {
            if let End::Host(h) = e {
                let key = (h.host.clone(), h.iface.clone());
                if let Some(line) = used.get(&key) {
                    cx.err(
                        loc,
                        format!(
                            "interface {}:{} is already on the link at line {line}",
                            h.host, h.iface
                        ),
                    );
                } else {
                    used.insert(key, loc.line());
                }
            }
        }
        let link = match (a, b) {
            (End::Host(h), End::Uplink { switch, port, .. })
            | (End::Uplink { switch, port, .. }, End::Host(h)) => {
                let name = port_name(
                    cx,
                    &port,
                    format!("{}-{}", h.host, h.iface),
                    &endpoints.referenced,
                );
                Link::Uplink {
                    host: h,
                    switch,
                    port: name,
                    mtu,
                }
            }
            (End::Uplink { at, .. }, _) | (_, End::Uplink { at, .. }) => {
                cx.err(
                    &at,
                    "an uplink links its switch to a host (the outside); the other end here is a switch",
                );
                continue;
            }
            (End::Host(a), End::Host(b)) => Link::HostHost { a, b, mtu },
            (
                End::Host(h),
                End::Switch {
                    switch,
                    bridge,
                    port,
                    kind,
                    vlans,
                },
            )
            | (
                End::Switch {
                    switch,
                    bridge,
                    port,
                    kind,
                    vlans,
                },
                End::Host(h),
            ) => {
                let name = port_name(
                    cx,
                    &port,
                    format!("{}-{}", h.host, h.iface),
                    &endpoints.referenced,
                );
                Link::HostSwitch {
                    port: Port {
                        switch,
                        bridge,
                        name,
                        kind: kind.map(|k| k.0).unwrap_or_default(),
                        vlans,
                    },
                    host: h,
                    mtu,
                }
            }
            (
                End::Switch {
                    switch: sa,
                    bridge: ba,
                    port: pa,
                    kind: ka,
                    vlans: va,
                },
                End::Switch {
                    switch: sb,
                    bridge: bb,
                    port: pb,
                    kind: kb,
                    vlans: vb,
                },
            ) => {
                for (k, loc) in [ka, kb].into_iter().flatten() {
                    if k == PortKind::Tap {
                        cx.err(&loc, "a TAP port needs a host at the other end of its link");
                    }
                }
                if sa == sb && ba == bb {
                    cx.err(
                        &endpoints.referenced,
                        format!("a link from bridge {sa}:{ba} to itself"),
                    );
                    continue;
                }
                let na = port_name(cx, &pa, format!("{sb}-{bb}"), &locs[0]);
                let nb = port_name(cx, &pb, format!("{sa}-{ba}"), &locs[1]);
                Link::SwitchSwitch {
                    a: Port {
                        switch: sa,
                        bridge: ba,
                        name: na,
                        kind: PortKind::Afpacket,
                        vlans: va,
                    },
                    b: Port {
                        switch: sb,
                        bridge: bb,
                        name: nb,
                        kind: PortKind::Afpacket,
                        vlans: vb,
                    },
                    mtu,
                }
            }
        };
        if let Link::Uplink { switch, .. } = &link {
            if let Some(line) = uplinks.insert(switch.clone(), l.referenced.line()) {
                cx.err(
                    &l.referenced,
                    format!("switch {switch} already has its uplink on the link at line {line} (a switch has one uplink)"),
                );
            } else if tf
                .switches
                .iter()
                .any(|s| s.value.name.value == *switch && s.value.uplink.is_none())
            {
                cx.err(
                    &l.referenced,
                    format!(
                        "switch {switch} has no `uplink: {{ip: …}}` for this uplink link to stand for"
                    ),
                );
            }
        }
        // Device names must be unique in each namespace, port names in each switch.
        plan.links.push(link);
        check_names_after_link(cx, plan, &l.referenced);
    }
    if cx.errs.len() > errs_before {
        // A link that failed to resolve was probably meant for the interfaces that now
        // look unused: its own error says more than theirs would.
        return;
    }
    for h in &tf.hosts {
        for i in &h.value.interfaces {
            let key = (h.value.name.value.clone(), i.value.name.value.clone());
            if !used.contains_key(&key) {
                cx.err(
                    &i.value.name.referenced,
                    format!(
                        "interface {}:{} is on no link (add one under `links`)",
                        key.0, key.1
                    ),
                );
            }
        }
    }
}

/// The addresses of host `name` (empty for an unknown host).
fn host_addrs(plan: &Plan, name: &str) -> Vec<(String, Cidr)> {
    plan.host(name)
        .map(|h| {
            h.ifaces
                .iter()
                .filter_map(|i| i.addr.map(|a| (i.name.clone(), a)))
                .collect()
        })
        .unwrap_or_default()
}

/// A far VTEP as the file names it: a switch or host (its address on a subnet the
/// local host shares), `HOST:IFACE`, or an IPv4 address. `own` is the switch's host.
fn resolve_remote(
    cx: &mut Cx<'_>,
    r: &S<String>,
    own: &str,
    plan: &Plan,
    nodes: &Nodes,
) -> Option<Ipv4Addr> {
    let text = r.value.as_str();
    let mine = host_addrs(plan, own);
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        if let Err(e) = ctl::validate::remote(&ip.into()) {
            cx.err(&r.referenced, e);
            return None;
        }
        if mine.iter().any(|(_, c)| c.ip == ip) {
            cx.err(
                &r.referenced,
                format!("remote {ip} is an address of {own}, this switch's own host"),
            );
            return None;
        }
        return Some(ip);
    }
    if let Some((h, i)) = text.split_once(':') {
        let Some(host) = plan.host(h) else {
            cx.err(
                &r.referenced,
                format!("remote `{text}`: unknown host `{h}`"),
            );
            return None;
        };
        if h == own {
            cx.err(
                &r.referenced,
                format!("remote `{text}` is on {own}, this switch's own host"),
            );
            return None;
        }
        return match host.ifaces.iter().find(|x| x.name == i) {
            Some(x) => match x.addr {
                Some(c) => Some(c.ip),
                None => {
                    cx.err(
                        &r.referenced,
                        format!("remote `{text}` has no IPv4 address"),
                    );
                    None
                }
            },
            None => {
                cx.err(
                    &r.referenced,
                    format!("remote `{text}`: host {h} has no interface `{i}`"),
                );
                None
            }
        };
    }
    let host = match nodes.kind(text) {
        Some(NodeKind::Host) => text.to_string(),
        Some(NodeKind::Switch) => match plan.switch(text).and_then(|s| s.host.clone()) {
            Some(h) => h,
            None => {
                cx.err(
                    &r.referenced,
                    format!(
                        "remote `{text}` is a switch in a namespace of its own, with no underlay address; \
                         give it `host:` or name an address"
                    ),
                );
                return None;
            }
        },
        None => {
            cx.err(
                &r.referenced,
                format!(
                    "remote `{text}` is neither a switch, a host, HOST:IFACE nor an IPv4 address"
                ),
            );
            return None;
        }
    };
    if host == own {
        cx.err(
            &r.referenced,
            format!("remote `{text}` runs on {own}, this switch's own host"),
        );
        return None;
    }
    let shared: Vec<(String, Cidr)> = host_addrs(plan, &host)
        .into_iter()
        .filter(|(_, c)| {
            mine.iter()
                .any(|(_, m)| m.contains(c.ip) && c.contains(m.ip))
        })
        .collect();
    match shared.as_slice() {
        [(_, c)] => Some(c.ip),
        [] => {
            let mine: Vec<String> = mine.iter().map(|(_, c)| c.to_string()).collect();
            cx.err(
                &r.referenced,
                format!(
                    "remote `{text}`: host {host} has no address on a subnet of {own} ({}); \
                     add an underlay link between them or name an address",
                    if mine.is_empty() {
                        "no addresses".to_string()
                    } else {
                        mine.join(", ")
                    }
                ),
            );
            None
        }
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|(i, c)| format!("{host}:{i} {}", c.ip))
                .collect();
            cx.err(
                &r.referenced,
                format!(
                    "remote `{text}`: host {host} has several addresses on {own}'s subnets ({}); name one as HOST:IFACE",
                    names.join(", ")
                ),
            );
            None
        }
    }
}

/// The `tunnels` of every switch: VNI, remotes, local address, port, VLAN, and names
/// that clash with nothing.
fn resolve_tunnels(cx: &mut Cx<'_>, tf: &TopologyFile, nodes: &Nodes, plan: &mut Plan) {
    // (host, local, dstport) -> (switch, line): one VXLAN socket per address and port.
    let mut sockets: HashMap<(String, Option<Ipv4Addr>, u16), (String, u64)> = HashMap::new();
    for (si, s) in tf.switches.iter().enumerate() {
        let s = &s.value;
        let Some(sw) = plan.switches.get(si).cloned() else {
            continue;
        };
        let mut tunnels: Vec<Tunnel> = Vec::new();
        // (local, dstport, vni) -> (tunnel, line)
        let mut vnis: HashMap<(Option<Ipv4Addr>, u16, u32), (String, u64)> = HashMap::new();
        for t in &s.tunnels {
            let at = t.referenced;
            let t = &t.value;
            let Some(own) = sw.host.clone() else {
                cx.err(
                    &at,
                    format!(
                        "switch {} has tunnels but runs in a namespace of its own; give it `host:` \
                         (the machine whose interfaces are its underlay)",
                        sw.name
                    ),
                );
                continue;
            };
            let errs_before = cx.errs.len();
            let bridge = match &t.bridge {
                Some(b) => {
                    if sw.bridges.iter().all(|x| x.name != b.value) {
                        cx.err(
                            &b.referenced,
                            format!("switch {} has no bridge `{}`", sw.name, b.value),
                        );
                    }
                    b.value.clone()
                }
                None => match sw.bridges.as_slice() {
                    [only] => only.name.clone(),
                    [] => {
                        cx.err(
                            &at,
                            format!("switch {} has no bridges for a tunnel", sw.name),
                        );
                        String::new()
                    }
                    _ => {
                        cx.err(
                            &at,
                            format!(
                                "switch {} has several bridges; add `bridge:` to the tunnel",
                                sw.name
                            ),
                        );
                        String::new()
                    }
                },
            };
            let vni = match u32::try_from(t.vni.value)
                .ok()
                .filter(|v| ctl::validate::vni(*v).is_ok())
            {
                Some(v) => v,
                None => {
                    cx.err(
                        &t.vni.referenced,
                        format!(
                            "VNI {} is outside 0..={}",
                            t.vni.value,
                            ctl::validate::VNI_MAX
                        ),
                    );
                    0
                }
            };
            let dstport = match &t.dstport {
                Some(p) => match u16::try_from(p.value).ok().filter(|p| *p > 0) {
                    Some(p) => p,
                    None => {
                        cx.err(
                            &p.referenced,
                            format!("dstport {} is outside 1..=65535", p.value),
                        );
                        VXLAN_PORT
                    }
                },
                None => VXLAN_PORT,
            };
            let vlan = t.vlan.as_ref().and_then(|v| vid(cx, v));
            let name = match &t.name {
                Some(n) => {
                    if let Err(e) = iface_name(&n.value) {
                        cx.err(&n.referenced, format!("tunnel {e}"));
                    }
                    n.value.clone()
                }
                None => format!("vxlan{vni}"),
            };
            let name_at = t.name.as_ref().map(|n| n.referenced).unwrap_or(at);
            if plan.ports_of(&sw.name).any(|p| p.name == name) {
                cx.err(
                    &name_at,
                    format!(
                        "tunnel name `{name}` is already a port of switch {} (from a link); name the tunnel: `name: …`",
                        sw.name
                    ),
                );
            } else if tunnels.iter().any(|x| x.name == name) {
                cx.err(
                    &name_at,
                    format!("switch {} already has a tunnel `{name}`", sw.name),
                );
            }
            let mine = host_addrs(plan, &own);
            let local = match &t.local {
                None => None,
                Some(l) => {
                    let found = match l.value.split_once(':') {
                        Some((h, i)) if h == own => {
                            mine.iter().find(|(n, _)| n == i).map(|(_, c)| c.ip)
                        }
                        Some(_) => None,
                        None => l
                            .value
                            .parse::<Ipv4Addr>()
                            .ok()
                            .filter(|ip| mine.iter().any(|(_, c)| c.ip == *ip)),
                    };
                    if found.is_none() {
                        let list: Vec<String> = mine
                            .iter()
                            .map(|(i, c)| format!("{own}:{i} {}", c.ip))
                            .collect();
                        cx.err(
                            &l.referenced,
                            format!(
                                "local `{}` is not an address of {own}, this switch's host (its addresses: {})",
                                l.value,
                                if list.is_empty() { "none".to_string() } else { list.join(", ") }
                            ),
                        );
                    }
                    found
                }
            };
            if t.remotes.value.is_empty() {
                cx.err(&t.remotes.referenced, "`remotes` lists no VTEP");
            }
            let mut remotes: Vec<Remote> = Vec::new();
            for r in &t.remotes.value {
                let Some(ip) = resolve_remote(cx, r, &own, plan, nodes) else {
                    continue;
                };
                if let Some(first) = remotes.iter().find(|x| x.ip == ip) {
                    cx.err(
                        &r.referenced,
                        format!(
                            "remote `{}` is {ip}, already listed as `{}`",
                            r.value, first.named
                        ),
                    );
                    continue;
                }
                remotes.push(Remote {
                    ip,
                    named: r.value.clone(),
                });
            }
            if cx.errs.len() > errs_before {
                continue;
            }
            if let Some((other, line)) =
                vnis.insert((local, dstport, vni), (name.clone(), at.line()))
            {
                cx.err(
                    &t.vni.referenced,
                    format!(
                        "VNI {vni} on UDP port {dstport} is already tunnel {other} (line {line})"
                    ),
                );
                continue;
            }
            let key = (own.clone(), local, dstport);
            match sockets.get(&key) {
                Some((other, line)) if *other != sw.name => {
                    cx.err(
                        &at,
                        format!(
                            "switch {other} (line {line}) already has tunnels on UDP port {dstport} of host {own}; \
                             give this tunnel another `dstport` or `local`"
                        ),
                    );
                    continue;
                }
                Some(_) => {}
                None => {
                    sockets.insert(key, (sw.name.clone(), at.line()));
                }
            }
            tunnels.push(Tunnel {
                name,
                bridge,
                vni,
                remotes,
                local,
                dstport,
                vlan,
            });
        }
        if let Some(x) = plan.switches.get_mut(si) {
            x.tunnels = tunnels;
        }
    }
}

/// After a link was added: its new port names must not clash with a device already in
/// the same namespace nor with another port of the same switch.
fn check_names_after_link(cx: &mut Cx<'_>, plan: &Plan, at: &Location) {
    let Some(last) = plan.links.last() else {
        return;
    };
    let new_ports = last.switch_ends();
    let earlier = &plan.links[..plan.links.len() - 1];
    for (i, (sw, name)) in new_ports.iter().enumerate() {
        let Some(ns) = plan.ns_node(sw) else {
            continue;
        };
        // Devices already in that namespace: host interfaces (if it is a host's) and the
        // ports of every switch there, from earlier links and from this one.
        let mut taken: Vec<&str> = plan
            .host(ns)
            .map(|h| h.ifaces.iter().map(|i| i.name.as_str()).collect())
            .unwrap_or_default();
        for (qs, qn) in earlier
            .iter()
            .flat_map(Link::switch_ends)
            .chain(new_ports[..i].iter().copied())
        {
            if plan.ns_node(qs) == Some(ns) {
                taken.push(qn);
            }
        }
        if taken.contains(name) {
            cx.err(
                at,
                format!(
                    "port name `{name}` is already taken in the namespace of {ns}; name the port: {{node: {sw}, port: NAME}}"
                ),
            );
        }
    }
}

/// An address a check aims at, and the host that owns it (if any).
fn resolve_addr(cx: &mut Cx<'_>, s: &S<String>, plan: &Plan) -> Option<(Ipv4Addr, Option<String>)> {
    let text = s.value.as_str();
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        let owner = plan
            .hosts
            .iter()
            .find(|h| h.ifaces.iter().any(|i| i.addr.map(|c| c.ip) == Some(ip)))
            .map(|h| h.name.clone());
        return Some((ip, owner));
    }
    let (node, iface) = match text.split_once(':') {
        Some((n, i)) => (n, Some(i)),
        None => (text, None),
    };
    let Some(host) = plan.host(node) else {
        if let Some(sw) = plan.switch(node) {
            match (iface, &sw.uplink) {
                (None, Some(u)) => return Some((u.addr.ip, None)),
                (Some(b), _) => match sw.bridges.iter().find(|x| x.name == b) {
                    Some(Bridge {
                        network: Some(n), ..
                    }) => return Some((n.gateway, None)),
                    Some(_) => cx.err(
                        &s.referenced,
                        format!("bridge {node}:{b} has no `network`, so no gateway address"),
                    ),
                    None => cx.err(&s.referenced, format!("switch {node} has no bridge `{b}`")),
                },
                (None, None) => cx.err(
                    &s.referenced,
                    format!(
                        "switch {node} has no address (no `uplink`); aim at a host, HOST:IFACE, \
                         SWITCH:BRIDGE (its network's gateway) or an IPv4 address"
                    ),
                ),
            }
        } else {
            cx.err(
                &s.referenced,
                format!("`{text}` is neither a host, HOST:IFACE nor an IPv4 address"),
            );
        }
        return None;
    };
    let found = match iface {
        Some(i) => match host.ifaces.iter().find(|x| x.name == i) {
            Some(x) => x.addr,
            None => {
                cx.err(&s.referenced, format!("host {node} has no interface `{i}`"));
                return None;
            }
        },
        None => host.ifaces.iter().find_map(|i| i.addr),
    };
    match found {
        Some(c) => Some((c.ip, Some(node.to_string()))),
        None => {
            cx.err(&s.referenced, format!("`{text}` has no IPv4 address"));
            None
        }
    }
}

fn need_node(cx: &mut Cx<'_>, s: &S<String>, nodes: &Nodes) -> Option<String> {
    if nodes.kind(&s.value).is_some() {
        Some(s.value.clone())
    } else {
        cx.err(&s.referenced, format!("unknown node `{}`", s.value));
        None
    }
}

fn count(cx: &mut Cx<'_>, c: &Option<S<u32>>, default: u32) -> u32 {
    match c {
        Some(c) if !(1..=100).contains(&c.value) => {
            cx.err(
                &c.referenced,
                format!("count {} is outside 1..=100", c.value),
            );
            default
        }
        Some(c) => c.value,
        None => default,
    }
}

fn tcp_port(cx: &mut Cx<'_>, p: &S<u32>) -> u16 {
    match u16::try_from(p.value).ok().filter(|p| *p > 0) {
        Some(p) => p,
        None => {
            cx.err(
                &p.referenced,
                format!("port {} is outside 1..=65535", p.value),
            );
            1
        }
    }
}

fn seconds(cx: &mut Cx<'_>, t: &Option<S<f64>>, default: f64, max: f64) -> Duration {
    match t {
        Some(t) if !(t.value >= 0.1 && t.value <= max) => {
            cx.err(
                &t.referenced,
                format!("timeout {} s is outside 0.1..={max}", t.value),
            );
            Duration::from_secs_f64(default)
        }
        Some(t) => Duration::from_secs_f64(t.value),
        None => Duration::from_secs_f64(default),
    }
}

/// The node that runs a server for `to`: `server:` if given, else the owner of `to`.
fn server_node(
    cx: &mut Cx<'_>,
    server: &Option<S<String>>,
    owner: Option<String>,
    to: &S<String>,
    nodes: &Nodes,
) -> Option<String> {
    match server {
        Some(s) => need_node(cx, s, nodes),
        None => {
            if owner.is_none() {
                cx.err(
                    &to.referenced,
                    format!(
                        "no host owns {}; say which node runs the server with `server: NODE`",
                        to.value
                    ),
                );
            }
            owner
        }
    }
}

fn resolve_check(
    cx: &mut Cx<'_>,
    c: &S<CheckSpec>,
    idx: usize,
    nodes: &Nodes,
    plan: &Plan,
) -> Option<Check> {
    let line = c.referenced.line();
    let errs_before = cx.errs.len();
    let (label, kind) = match &c.value {
        CheckSpec::Ping(p) => {
            let from = need_node(cx, &p.from, nodes);
            let to = resolve_addr(cx, &p.to, plan);
            let count = count(cx, &p.count, 3);
            let reachable = p.expect.unwrap_or(Reach::Reachable) == Reach::Reachable;
            let (from, (to, _)) = (from?, to?);
            (
                p.name.clone().unwrap_or_else(|| {
                    format!(
                        "ping {from} -> {}{}",
                        p.to.value,
                        if reachable { "" } else { " (unreachable)" }
                    )
                }),
                CheckKind::Ping {
                    from,
                    to,
                    count,
                    reachable,
                },
            )
        }
        CheckSpec::Pingall(p) => {
            let count = count(cx, &p.count, 1);
            let group: Vec<String> = match &p.hosts {
                Some(list) => {
                    let mut g = Vec::new();
                    for h in list {
                        match plan.host(&h.value) {
                            None => cx.err(&h.referenced, format!("unknown host `{}`", h.value)),
                            Some(host) if host.ifaces.iter().all(|i| i.addr.is_none()) => cx.err(
                                &h.referenced,
                                format!("host {} has no address to ping", h.value),
                            ),
                            Some(_) if g.contains(&h.value) => {
                                cx.err(&h.referenced, format!("host {} is listed twice", h.value))
                            }
                            Some(_) => g.push(h.value.clone()),
                        }
                    }
                    g
                }
                None => plan
                    .hosts
                    .iter()
                    .filter(|h| h.ifaces.iter().any(|i| i.addr.is_some()))
                    .map(|h| h.name.clone())
                    .collect(),
            };
            if group.len() < 2 {
                cx.err(
                    &c.referenced,
                    "pingall needs at least two hosts with an address",
                );
            }
            let mut reach: BTreeSet<(String, String)> = BTreeSet::new();
            let mut word = "all".to_string();
            match p.expect.as_ref().map(|e| (&e.value, e.referenced)) {
                None => add_all(&mut reach, &group),
                Some((crate::model::Matrix::Word(w), at)) => match w.as_str() {
                    "all" => add_all(&mut reach, &group),
                    "none" => word = "none".into(),
                    other => cx.err(
                        &at,
                        format!("expect {other:?}: use `all`, `none` or a map FROM: [TO, …]"),
                    ),
                },
                Some((Matrix::Map(m), at)) => {
                    word = "matrix".into();
                    for (from, tos) in m {
                        if !group.contains(from) {
                            cx.err(&at, format!("`{from}` in expect is not in the group"));
                        }
                        for t in tos {
                            if !group.contains(&t.value) {
                                cx.err(
                                    &t.referenced,
                                    format!("`{}` in expect is not in the group", t.value),
                                );
                            } else if &t.value == from {
                                cx.err(&t.referenced, format!("{from} -> {from} is not a pair"));
                            } else {
                                reach.insert((from.clone(), t.value.clone()));
                            }
                        }
                    }
                }
            }
            let mut pairs = Vec::new();
            for a in &group {
                for b in &group {
                    if a == b {
                        continue;
                    }
                    let ip = plan
                        .host(b)
                        .and_then(|h| h.ifaces.iter().find_map(|i| i.addr))
                        .map(|c| c.ip)?;
                    pairs.push(Pair {
                        from: a.clone(),
                        to: b.clone(),
                        ip,
                        reachable: reach.contains(&(a.clone(), b.clone())),
                    });
                }
            }
            (
                p.name
                    .clone()
                    .unwrap_or_else(|| format!("pingall {} (expect {word})", group.join(" "))),
                CheckKind::Pingall { pairs, count },
            )
        }
        CheckSpec::Tcp(t) => {
            let from = need_node(cx, &t.from, nodes);
            let to = resolve_addr(cx, &t.to, plan);
            let port = tcp_port(cx, &t.port);
            let expect = t.expect.unwrap_or(TcpState::Open);
            let listen = t.listen.unwrap_or(expect != TcpState::Refused);
            let server_port = t
                .server_port
                .as_ref()
                .map(|p| tcp_port(cx, p))
                .unwrap_or(port);
            let timeout = seconds(cx, &t.timeout, 2.0, 30.0);
            let (to, owner) = to?;
            let listener = if listen {
                Some((
                    server_node(cx, &t.server, owner, &t.to, nodes)?,
                    server_port,
                ))
            } else {
                None
            };
            let from = from?;
            (
                t.name.clone().unwrap_or_else(|| {
                    format!("tcp {from} -> {}:{port} ({})", t.to.value, expect.as_str())
                }),
                CheckKind::Tcp {
                    from,
                    to,
                    port,
                    listener,
                    expect,
                    timeout,
                },
            )
        }
        CheckSpec::Iperf(i) => {
            let from = need_node(cx, &i.from, nodes);
            let to = resolve_addr(cx, &i.to, plan);
            let udp = i.protocol == Some(Proto::Udp);
            let seconds = match &i.seconds {
                Some(s) if !(1..=60).contains(&s.value) => {
                    cx.err(
                        &s.referenced,
                        format!("seconds {} is outside 1..=60", s.value),
                    );
                    2
                }
                Some(s) => s.value,
                None => 2,
            };
            let min_gbps = match &i.min_gbps {
                Some(m) if !(m.value >= 0.0 && m.value.is_finite()) => {
                    cx.err(&m.referenced, "min_gbps must be a number >= 0");
                    0.0
                }
                Some(m) => m.value,
                None => 0.0,
            };
            let rate = match &i.rate {
                Some(r) => {
                    let ok = r
                        .value
                        .strip_suffix(['K', 'M', 'G', 'k', 'm', 'g'])
                        .unwrap_or(&r.value)
                        .parse::<f64>()
                        .is_ok_and(|x| x > 0.0);
                    if !ok {
                        cx.err(
                            &r.referenced,
                            format!("rate {:?} is not like 500M or 1G", r.value),
                        );
                    }
                    if !udp {
                        cx.err(&r.referenced, "`rate` applies to `protocol: udp` only");
                    }
                    r.value.clone()
                }
                None => "500M".into(),
            };
            let max_loss = i.max_loss.as_ref().map(|m| {
                if !(0.0..=100.0).contains(&m.value) {
                    cx.err(
                        &m.referenced,
                        format!("max_loss {} is outside 0..=100 (%)", m.value),
                    );
                }
                if !udp {
                    cx.err(&m.referenced, "`max_loss` applies to `protocol: udp` only");
                }
                m.value
            });
            let port = i
                .port
                .as_ref()
                .map(|p| tcp_port(cx, p))
                .unwrap_or(5201 + u16::try_from(idx % 1000).unwrap_or(0));
            let (to, owner) = to?;
            let server = server_node(cx, &i.server, owner, &i.to, nodes)?;
            let from = from?;
            (
                i.name.clone().unwrap_or_else(|| {
                    format!(
                        "iperf {from} -> {} {} {seconds} s",
                        i.to.value,
                        if udp { "udp" } else { "tcp" }
                    )
                }),
                CheckKind::Iperf {
                    from,
                    to,
                    server,
                    port,
                    udp,
                    seconds,
                    rate,
                    min_gbps,
                    max_loss,
                },
            )
        }
        CheckSpec::Http(h) => {
            let from = need_node(cx, &h.from, nodes);
            let to = resolve_addr(cx, &h.to, plan);
            let port = h.port.as_ref().map(|p| tcp_port(cx, p)).unwrap_or(8000);
            let server_port = h
                .server_port
                .as_ref()
                .map(|p| tcp_port(cx, p))
                .unwrap_or(port);
            let path = match &h.path {
                Some(p) => {
                    if !p.value.starts_with('/') || p.value.contains(char::is_whitespace) {
                        cx.err(
                            &p.referenced,
                            format!("path {:?} must start with / and contain no spaces", p.value),
                        );
                    }
                    p.value.clone()
                }
                None => "/".into(),
            };
            let status = match &h.status {
                Some(s) => match u16::try_from(s.value)
                    .ok()
                    .filter(|s| (100..=599).contains(s))
                {
                    Some(v) => v,
                    None => {
                        cx.err(
                            &s.referenced,
                            format!("status {} is outside 100..=599", s.value),
                        );
                        200
                    }
                },
                None => 200,
            };
            let client = match &h.client {
                Some(c) => Some(resolve_addr(cx, c, plan)?.0),
                None => None,
            };
            let (to, owner) = to?;
            let server = server_node(cx, &h.server, owner, &h.to, nodes)?;
            let from = from?;
            (
                h.name.clone().unwrap_or_else(|| {
                    format!(
                        "http {from} -> GET http://{to}:{port}{path} (expect {status}{})",
                        client.map(|c| format!(", client {c}")).unwrap_or_default()
                    )
                }),
                CheckKind::Http {
                    from,
                    to,
                    port,
                    path,
                    status,
                    server,
                    server_port,
                    client,
                },
            )
        }
        CheckSpec::Fdb(f) => {
            let sw = match plan.switch(&f.switch.value) {
                Some(s) => s,
                None => {
                    cx.err(
                        &f.switch.referenced,
                        format!("unknown switch `{}`", f.switch.value),
                    );
                    return None;
                }
            };
            let bridge = match &f.bridge {
                Some(b) => {
                    if sw.bridges.iter().all(|x| x.name != b.value) {
                        cx.err(
                            &b.referenced,
                            format!("switch {} has no bridge `{}`", sw.name, b.value),
                        );
                        return None;
                    }
                    b.value.clone()
                }
                None => match sw.bridges.as_slice() {
                    [only] => only.name.clone(),
                    _ => {
                        cx.err(
                            &f.switch.referenced,
                            format!("switch {} has several bridges; add `bridge:`", sw.name),
                        );
                        return None;
                    }
                },
            };
            let mac = if f.mac.value.matches([':', '-']).count() == 5 {
                match parse_mac(&f.mac.value) {
                    Ok(m) => MacRef::Literal(m),
                    Err(e) => {
                        cx.err(&f.mac.referenced, e);
                        return None;
                    }
                }
            } else {
                let (h, i) = match f.mac.value.split_once(':') {
                    Some((h, i)) => (h, Some(i)),
                    None => (f.mac.value.as_str(), None),
                };
                let Some(host) = plan.host(h) else {
                    cx.err(
                        &f.mac.referenced,
                        format!(
                            "mac `{}` is neither a MAC, a host nor HOST:IFACE",
                            f.mac.value
                        ),
                    );
                    return None;
                };
                let iface = match i {
                    Some(i) if host.ifaces.iter().any(|x| x.name == i) => i.to_string(),
                    Some(i) => {
                        cx.err(
                            &f.mac.referenced,
                            format!("host {h} has no interface `{i}`"),
                        );
                        return None;
                    }
                    None => match host.ifaces.first() {
                        Some(x) => x.name.clone(),
                        None => {
                            cx.err(&f.mac.referenced, format!("host {h} has no interfaces"));
                            return None;
                        }
                    },
                };
                MacRef::Iface(HostEnd {
                    host: h.to_string(),
                    iface,
                })
            };
            if let Some(p) = &f.port {
                let ports = plan.port_names(&sw.name, &bridge);
                if !ports.contains(&p.value) {
                    cx.err(
                        &p.referenced,
                        format!(
                            "bridge {}:{bridge} has no port `{}` (its ports: {})",
                            sw.name,
                            p.value,
                            ports.join(", ")
                        ),
                    );
                    return None;
                }
            }
            let learned = f.learned.unwrap_or(true);
            let vlan = match &f.vlan {
                Some(v) => Some(vid(cx, v)?),
                None => None,
            };
            (
                f.name.clone().unwrap_or_else(|| {
                    format!(
                        "fdb {}/{bridge} {}{} {}",
                        sw.name,
                        f.mac.value,
                        f.port
                            .as_ref()
                            .map(|p| format!(" on {}", p.value))
                            .unwrap_or_default()
                            + &vlan.map(|v| format!(" in VLAN {v}")).unwrap_or_default(),
                        if learned { "learned" } else { "not learned" }
                    )
                }),
                CheckKind::Fdb {
                    switch: sw.name.clone(),
                    bridge,
                    mac,
                    port: f.port.as_ref().map(|p| p.value.clone()),
                    vlan,
                    learned,
                },
            )
        }
        CheckSpec::Broadcast(b) => {
            let count = count(cx, &b.count, 3);
            let port = b.port.as_ref().map(|p| tcp_port(cx, p)).unwrap_or(9999);
            let (h, i) = match b.from.value.split_once(':') {
                Some((h, i)) => (h, Some(i)),
                None => (b.from.value.as_str(), None),
            };
            let Some(host) = plan.host(h) else {
                cx.err(
                    &b.from.referenced,
                    format!("`{}` is neither a host nor HOST:IFACE", b.from.value),
                );
                return None;
            };
            let subnet = match i {
                Some(i) => host
                    .ifaces
                    .iter()
                    .find(|x| x.name == i)
                    .and_then(|x| x.addr),
                None => host.ifaces.iter().find_map(|x| x.addr),
            };
            let Some(subnet) = subnet else {
                cx.err(
                    &b.from.referenced,
                    format!("`{}` has no IPv4 address to send from", b.from.value),
                );
                return None;
            };
            if subnet.prefix > 30 {
                cx.err(
                    &b.from.referenced,
                    format!("{subnet} has no broadcast address (prefix longer than /30)"),
                );
                return None;
            }
            let bcast = subnet.broadcast();
            let accepts = |name: &str| {
                plan.host(name).is_some_and(|x| {
                    x.ifaces
                        .iter()
                        .filter_map(|i| i.addr)
                        .any(|c| c.broadcast() == bcast && c.prefix == subnet.prefix)
                })
            };
            let to: Vec<String> = match &b.to {
                Some(list) => {
                    let mut v: Vec<String> = Vec::new();
                    for t in list {
                        if plan.host(&t.value).is_none() {
                            cx.err(&t.referenced, format!("unknown host `{}`", t.value));
                        } else if t.value == h {
                            cx.err(&t.referenced, format!("`{}` is the sender", t.value));
                        } else if !accepts(&t.value) {
                            cx.err(
                                &t.referenced,
                                format!(
                                    "host {} has no address in {}/{}, so it would not accept broadcasts to {bcast}",
                                    t.value,
                                    subnet.network(),
                                    subnet.prefix
                                ),
                            );
                        } else if v.contains(&t.value) {
                            cx.err(&t.referenced, format!("host {} is listed twice", t.value));
                        } else {
                            v.push(t.value.clone());
                        }
                    }
                    v
                }
                None => {
                    let v: Vec<String> = plan
                        .hosts
                        .iter()
                        .filter(|x| x.name != h && accepts(&x.name))
                        .map(|x| x.name.clone())
                        .collect();
                    if v.is_empty() {
                        cx.err(
                            &b.from.referenced,
                            format!(
                                "no other host has an address in {}/{} to receive broadcasts",
                                subnet.network(),
                                subnet.prefix
                            ),
                        );
                    }
                    v
                }
            };
            (
                b.name.clone().unwrap_or_else(|| {
                    format!(
                        "broadcast {h} -> {bcast}:{port} x{count} reaches {}",
                        to.join(", ")
                    )
                }),
                CheckKind::Broadcast {
                    from: h.to_string(),
                    subnet,
                    port,
                    count,
                    to,
                },
            )
        }
        CheckSpec::Exec(e) => {
            let node = need_node(cx, &e.node, nodes);
            if e.cmd.value.trim().is_empty() {
                cx.err(&e.cmd.referenced, "cmd is empty");
            }
            let exit = match &e.exit {
                Some(x) => match i32::try_from(x.value)
                    .ok()
                    .filter(|x| (0..=255).contains(x))
                {
                    Some(v) => v,
                    None => {
                        cx.err(
                            &x.referenced,
                            format!("exit {} is outside 0..=255", x.value),
                        );
                        0
                    }
                },
                None => 0,
            };
            let timeout = seconds(cx, &e.timeout, 10.0, 120.0);
            let node = node?;
            (
                e.name
                    .clone()
                    .unwrap_or_else(|| format!("exec {node}: {}", e.cmd.value.trim())),
                CheckKind::Exec {
                    node,
                    cmd: e.cmd.value.clone(),
                    exit,
                    output: e.output.clone(),
                    timeout,
                },
            )
        }
    };
    (cx.errs.len() == errs_before).then_some(Check { line, label, kind })
}

fn add_all(reach: &mut BTreeSet<(String, String)>, group: &[String]) {
    for a in group {
        for b in group {
            if a != b {
                reach.insert((a.clone(), b.clone()));
            }
        }
    }
}

/// The address of a host interface, if it has one.
fn iface_addr(plan: &Plan, e: &HostEnd) -> Option<Cidr> {
    plan.host(&e.host)?
        .ifaces
        .iter()
        .find(|i| i.name == e.iface)?
        .addr
}

/// Where the file gives `host:iface` its address (or the host's name, without one).
fn iface_loc(tf: &TopologyFile, host: &str, iface: &str) -> Location {
    tf.hosts
        .iter()
        .find(|h| h.value.name.value == host)
        .map(|h| {
            h.value
                .interfaces
                .iter()
                .find(|i| i.value.name.value == iface)
                .map(|i| {
                    i.value
                        .ip
                        .as_ref()
                        .map(|ip| ip.referenced)
                        .unwrap_or(i.value.name.referenced)
                })
                .unwrap_or(h.value.name.referenced)
        })
        .unwrap_or(Location::UNKNOWN)
}

/// A port number of a published port, 1..=65535.
fn port_number(cx: &mut Cx<'_>, what: &str, p: &S<i64>) -> Option<u16> {
    let v = u16::try_from(p.value).ok().filter(|x| *x > 0);
    if v.is_none() {
        cx.err(
            &p.referenced,
            format!("{what} {} is outside 1..=65535", p.value),
        );
    }
    v
}

/// Every switch's uplink (its address, next hop and link) and published ports, and the
/// host addresses that would clash with the addresses the switches own.
fn resolve_gateways(cx: &mut Cx<'_>, tf: &TopologyFile, plan: &mut Plan) {
    for (si, s) in tf.switches.iter().enumerate() {
        let spec = &s.value;
        let Some(sw) = plan.switches.get(si).cloned() else {
            continue;
        };
        let nets: Vec<(String, Network)> = sw
            .bridges
            .iter()
            .filter_map(|b| b.network.map(|n| (b.name.clone(), n)))
            .collect();
        let uplink = spec
            .uplink
            .as_ref()
            .and_then(|u| resolve_uplink(cx, u, &sw.name, &nets, plan));
        let mut published: Vec<Published> = Vec::new();
        let mut seen: HashMap<(L4Proto, u16), u64> = HashMap::new();
        for p in &spec.publish {
            let at = p.referenced;
            let p = &p.value;
            if spec.uplink.is_none() {
                cx.err(
                    &at,
                    format!(
                        "switch {} publishes ports but has no `uplink` (a published port is a port of the uplink address)",
                        sw.name
                    ),
                );
            }
            let proto = match &p.proto {
                None => L4Proto::Tcp,
                Some(x) => match x.value.parse::<L4Proto>() {
                    Ok(v) => v,
                    Err(e) => {
                        cx.err(&x.referenced, e);
                        continue;
                    }
                },
            };
            let Some(host_port) = port_number(cx, "host_port", &p.host_port) else {
                continue;
            };
            let port = match &p.port {
                None => host_port,
                Some(x) => match port_number(cx, "port", x) {
                    Some(v) => v,
                    None => continue,
                },
            };
            if let Some(line) = seen.insert((proto, host_port), p.host_port.referenced.line()) {
                cx.err(
                    &p.host_port.referenced,
                    format!(
                        "{}/{host_port} is already published (line {line})",
                        proto.as_str()
                    ),
                );
                continue;
            }
            let Some((target, _)) = resolve_addr(cx, &p.to, plan) else {
                continue;
            };
            let declared = spec
                .bridges
                .iter()
                .filter(|b| b.value.network.is_some())
                .count();
            if nets.len() < declared {
                // A network with an error of its own: that error says more.
                continue;
            }
            if !nets.iter().any(|(_, n)| n.subnet.contains(target)) {
                let list: Vec<String> = nets
                    .iter()
                    .map(|(b, n)| format!("{} on {b}", n.subnet))
                    .collect();
                cx.err(
                    &p.to.referenced,
                    format!(
                        "publish target {target} (`{}`) is in no network of switch {} ({})",
                        p.to.value,
                        sw.name,
                        if list.is_empty() {
                            "it has none; give a bridge `network: {subnet, gateway}`".to_string()
                        } else {
                            format!("its networks: {}", list.join(", "))
                        }
                    ),
                );
                continue;
            }
            if let Some((b, _)) = nets.iter().find(|(_, n)| n.gateway == target) {
                cx.err(
                    &p.to.referenced,
                    format!(
                        "publish target {target} is the gateway of {}:{b}, the switch itself",
                        sw.name
                    ),
                );
                continue;
            }
            published.push(Published {
                proto,
                host_port,
                target,
                port,
                named: p.to.value.clone(),
            });
        }
        if let Some(x) = plan.switches.get_mut(si) {
            x.uplink = uplink;
            x.published = published;
        }
    }

    // Addresses the switches own: no host may have one, and a host on a bridge with a
    // network must be inside it.
    let mut owned: Vec<(Ipv4Addr, String)> = Vec::new();
    for sw in &plan.switches {
        for b in &sw.bridges {
            if let Some(n) = b.network {
                owned.push((n.gateway, format!("the gateway of {}:{}", sw.name, b.name)));
            }
        }
        if let Some(u) = &sw.uplink {
            owned.push((u.addr.ip, format!("switch {}'s uplink address", sw.name)));
        }
    }
    for h in &plan.hosts {
        for i in &h.ifaces {
            let Some(a) = i.addr else { continue };
            if let Some((_, what)) = owned.iter().find(|(ip, _)| *ip == a.ip) {
                cx.err(
                    &iface_loc(tf, &h.name, &i.name),
                    format!("address {} of {}:{} is {what}", a.ip, h.name, i.name),
                );
            }
        }
    }
    for l in &plan.links {
        let Link::HostSwitch { host, port, .. } = l else {
            continue;
        };
        let Some(net) = plan
            .switch(&port.switch)
            .and_then(|s| s.bridges.iter().find(|b| b.name == port.bridge))
            .and_then(|b| b.network)
        else {
            continue;
        };
        let Some(a) = iface_addr(plan, host) else {
            continue;
        };
        if !net.subnet.contains(a.ip) {
            cx.err(
                &iface_loc(tf, &host.host, &host.iface),
                format!(
                    "address {a} of {}:{} is outside network {} of {}:{}, the bridge it is linked to",
                    host.host, host.iface, net.subnet, port.switch, port.bridge
                ),
            );
        }
    }
}

/// A switch's `uplink: {ip, gw}` with the link it sits on.
fn resolve_uplink(
    cx: &mut Cx<'_>,
    u: &S<crate::model::UplinkSpec>,
    switch: &str,
    nets: &[(String, Network)],
    plan: &Plan,
) -> Option<Uplink> {
    let spec = &u.value;
    let addr = match ctl::validate::uplink_ip(&spec.ip.value) {
        Ok((ip, prefix)) => Cidr { ip, prefix },
        Err(e) => {
            cx.err(&spec.ip.referenced, e);
            return None;
        }
    };
    for (b, n) in nets {
        if n.subnet.overlaps(&addr.subnet()) {
            cx.err(
                &spec.ip.referenced,
                format!(
                    "the uplink's subnet {} overlaps network {} of bridge {b}",
                    addr.subnet(),
                    n.subnet
                ),
            );
        }
    }
    let gw = match &spec.gw {
        None => None,
        Some(g) => match g.value.parse::<Ipv4Addr>() {
            Err(_) => {
                cx.err(
                    &g.referenced,
                    format!("gw {:?} is not an IPv4 address", g.value),
                );
                None
            }
            Ok(ip) => {
                if let Err(e) = ctl::validate::host_in("next hop", ip, addr.network(), addr.prefix)
                {
                    cx.err(&g.referenced, e);
                } else if ip == addr.ip {
                    cx.err(
                        &g.referenced,
                        format!("next hop {ip} is the uplink's own address"),
                    );
                }
                Some(ip)
            }
        },
    };
    let link = plan.links.iter().find_map(|l| match l {
        Link::Uplink {
            host,
            switch: s,
            port,
            ..
        } if s == switch => Some((host.clone(), port.clone())),
        _ => None,
    });
    let Some((peer, port)) = link else {
        cx.err(
            &u.referenced,
            format!(
                "switch {switch} has an `uplink` but no link ends on it; add one: \
                 `- endpoints: [HOST, {{node: {switch}, uplink: true}}]`"
            ),
        );
        return None;
    };
    if let Some(a) = iface_addr(plan, &peer) {
        if !addr.contains(a.ip) {
            cx.err(
                &spec.ip.referenced,
                format!(
                    "the far end of the uplink, {}:{} ({a}), is outside the uplink's subnet {}",
                    peer.host,
                    peer.iface,
                    addr.subnet()
                ),
            );
        }
    }
    Some(Uplink {
        port,
        peer,
        addr,
        gw,
    })
}

/// Node name → namespace name for a run with prefix `run`.
pub fn ns_name(run: &str, node: &str) -> String {
    format!("{run}-{node}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn errs(y: &str) -> Vec<String> {
        match parse(y, "t.yaml", "t") {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const BASE: &str = "\
switches:
  - name: sw1
    bridges: [{name: br0}]
hosts:
  - name: h1
    interfaces: [{name: eth0, ip: 10.0.0.1/24}]
  - name: h2
    interfaces: [{name: eth0, ip: 10.0.0.2/24}]
links:
  - endpoints: [h1:eth0, sw1:br0]
  - endpoints: [h2, sw1]
";

    #[test]
    fn a_good_file_resolves_with_defaults() {
        let p = parse(BASE, "t.yaml", "t").unwrap();
        assert_eq!(p.name, "t");
        assert_eq!(p.links.len(), 2);
        match &p.links[1] {
            Link::HostSwitch { host, port, .. } => {
                assert_eq!(host.iface, "eth0");
                assert_eq!(port.name, "h2-eth0");
                assert_eq!(port.kind, PortKind::Afpacket);
            }
            l => panic!("{l:?}"),
        }
        assert_eq!(p.namespaces(), vec!["h1", "h2", "sw1"]);
    }

    #[test]
    fn unknown_node_in_a_link_has_its_line() {
        let y = BASE.replace("[h2, sw1]", "[h3, sw1]");
        let e = errs(&y);
        assert!(
            e.iter()
                .any(|e| e.starts_with("t.yaml:11: unknown node `h3`")),
            "{e:?}"
        );
    }

    #[test]
    fn duplicate_names_bad_cidr_vlan_and_missing_fields() {
        let y = BASE.replace("name: h2", "name: h1");
        assert!(
            errs(&y)
                .iter()
                .any(|e| e.starts_with("t.yaml:7: duplicate name `h1`")),
            "{:?}",
            errs(&y)
        );
        let y = BASE.replace("10.0.0.2/24", "10.0.0.300/24");
        assert!(
            errs(&y)
                .iter()
                .any(|e| e.starts_with("t.yaml:8: bad address")),
            "{:?}",
            errs(&y)
        );
        let y = BASE.replace("10.0.0.2/24", "10.0.0.2/33");
        assert!(errs(&y)
            .iter()
            .any(|e| e.starts_with("t.yaml:8: bad address")));
        let y = BASE.replace("[h2, sw1]", "[h2, {node: sw1, vlan: 4095}]");
        assert!(
            errs(&y)
                .iter()
                .any(|e| e.starts_with("t.yaml:11: VLAN 4095 is outside 1..=4094")),
            "{:?}",
            errs(&y)
        );
        let y = BASE.replace("[h2, sw1]", "[h2, {node: sw1, trunk: [10, 0]}]");
        assert!(
            errs(&y)
                .iter()
                .any(|e| e.contains(":11: VLAN 0 is outside")),
            "{:?}",
            errs(&y)
        );
        let y = BASE.replace("  - name: h2\n", "  - nam: h2\n");
        assert!(
            errs(&y)
                .iter()
                .any(|e| e.starts_with("t.yaml:7: unknown field `nam`")),
            "{:?}",
            errs(&y)
        );
        let y = BASE.replace(
            "    bridges: [{name: br0}]\n",
            "    bridges: [{aging: 30}]\n",
        );
        assert!(
            errs(&y)
                .iter()
                .any(|e| e.starts_with("t.yaml:3: missing field `name`")),
            "{:?}",
            errs(&y)
        );
    }

    #[test]
    fn checks_are_resolved_and_checked() {
        let y = format!(
            "{BASE}checks:\n  - pingall: {{}}\n  - ping: {{from: h1, to: h9}}\n  - fdb: {{switch: sw1, mac: h1, port: nope}}\n  - tcp: {{from: h1, to: 10.9.9.9, port: 80}}\n"
        );
        let e = errs(&y);
        assert!(
            e.iter()
                .any(|e| e.starts_with("t.yaml:14: `h9` is neither")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("t.yaml:15: bridge sw1:br0 has no port `nope`")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("t.yaml:16: no host owns 10.9.9.9")),
            "{e:?}"
        );
        let y = format!("{BASE}checks:\n  - pingall:\n      expect: {{h1: [h2]}}\n");
        let p = parse(&y, "t.yaml", "t").unwrap();
        match &p.checks[0].kind {
            CheckKind::Pingall { pairs, .. } => {
                assert_eq!(pairs.len(), 2);
                assert!(pairs.iter().any(|x| x.from == "h1" && x.reachable));
                assert!(pairs.iter().any(|x| x.from == "h2" && !x.reachable));
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn a_name_beside_a_check_kind_gets_a_hint() {
        let y = format!("{BASE}checks:\n  - ping: {{from: h1, to: h2}}\n    name: x\n");
        let e = errs(&y);
        assert!(e.iter().any(|e| e.contains("exactly one key")), "{e:?}");
    }

    #[test]
    fn an_interface_on_no_link_is_an_error_unless_a_link_failed() {
        let y = BASE.replace(
            "[{name: eth0, ip: 10.0.0.1/24}]",
            "[{name: eth0, ip: 10.0.0.1/24}, {name: eth1}]",
        );
        let e = errs(&y);
        assert!(
            e.iter()
                .any(|e| e.starts_with("t.yaml:6: interface h1:eth1 is on no link")),
            "{e:?}"
        );
        let y = y.replace("[h2, sw1]", "[h9, sw1]");
        let e = errs(&y);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("unknown node `h9`"), "{e:?}");
    }

    #[test]
    fn vlan_membership_on_switch_ends() {
        let y = BASE.replace("[h2, sw1]", "[h2, {node: sw1, vlan: 10}]");
        let p = parse(&y, "t.yaml", "t").unwrap();
        match &p.links[1] {
            Link::HostSwitch { port, .. } => assert_eq!(port.vlans, Vlans::Access(10)),
            l => panic!("{l:?}"),
        }
        let y = BASE.replace("[h2, sw1]", "[h2, {node: sw1, vlan: 10, trunk: [20]}]");
        assert!(
            errs(&y)
                .iter()
                .any(|e| e.contains(":11: a port is an access port")),
            "{:?}",
            errs(&y)
        );
        let y = BASE.replace("[h2, sw1]", "[h2, {node: sw1, trunk: [20, 30, 20]}]");
        assert!(
            errs(&y)
                .iter()
                .any(|e| e.contains(":11: VLAN 20 is listed twice")),
            "{:?}",
            errs(&y)
        );
        let y = BASE.replace("[h2, sw1]", "[{node: h2, vlan: 10}, sw1]");
        assert!(
            errs(&y)
                .iter()
                .any(|e| e.contains("`vlan` belongs on a switch end")),
            "{:?}",
            errs(&y)
        );
    }

    const VX: &str = "\
hosts:
  - name: hv1
    interfaces: [{name: eth1, ip: 172.19.0.1/24}]
  - name: hv2
    interfaces: [{name: eth1, ip: 172.19.0.2/24}]
  - name: c1
    interfaces: [{name: eth0, ip: 10.50.0.1/24}]
  - name: c2
    interfaces: [{name: eth0, ip: 10.50.0.2/24}]
switches:
  - name: sw1
    host: hv1
    bridges: [{name: br0}]
    tunnels:
      - {vni: 42, remotes: [sw2]}
  - name: sw2
    host: hv2
    bridges: [{name: br0}]
    tunnels:
      - {name: vx0, vni: 42, remotes: [hv1:eth1], dstport: 8472, local: 172.19.0.2, vlan: 10}
links:
  - endpoints: [c1, sw1]
  - endpoints: [c2, sw2]
  - endpoints: [hv1:eth1, hv2:eth1]
";

    #[test]
    fn tunnels_resolve_remotes_and_defaults() {
        let p = parse(VX, "t.yaml", "t").unwrap();
        let t1 = &p.switch("sw1").unwrap().tunnels[0];
        assert_eq!(t1.name, "vxlan42");
        assert_eq!(t1.bridge, "br0");
        assert_eq!(t1.dstport, VXLAN_PORT);
        assert_eq!(t1.remotes[0].ip, "172.19.0.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            t1.add_args().join(" "),
            "add-tunnel br0 vxlan42 --vni 42 --remote 172.19.0.2"
        );
        let t2 = &p.switch("sw2").unwrap().tunnels[0];
        assert_eq!(
            t2.add_args().join(" "),
            "add-tunnel br0 vx0 --vni 42 --remote 172.19.0.1 --local 172.19.0.2 --dstport 8472 --vlan 10"
        );
        assert_eq!(p.port_names("sw2", "br0"), vec!["c2-eth0", "vx0"]);
        let y = format!("{VX}checks:\n  - fdb: {{switch: sw1, mac: c2, port: vxlan42}}\n  - broadcast: {{from: c1}}\n");
        let p = parse(&y, "t.yaml", "t").unwrap();
        match &p.checks[1].kind {
            CheckKind::Broadcast {
                to,
                port,
                count,
                subnet,
                ..
            } => {
                assert_eq!(to, &vec!["c2".to_string()]);
                assert_eq!((*port, *count), (9999, 3));
                assert_eq!(
                    subnet.broadcast(),
                    "10.50.0.255".parse::<Ipv4Addr>().unwrap()
                );
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn bad_tunnels_have_their_line() {
        let one = |from: &str, to: &str, want: &str| {
            assert!(VX.contains(from), "{from}");
            let e = errs(&VX.replacen(from, to, 1));
            assert!(
                e.iter().any(|e| e.contains(want)),
                "{to}: want {want:?}: {e:?}"
            );
        };
        one(
            "{vni: 42,",
            "{vni: 16777216,",
            "t.yaml:15: VNI 16777216 is outside 0..=16777215",
        );
        one("{vni: 42,", "{vni: -1,", "t.yaml:15: VNI -1 is outside");
        one(
            "{vni: 42,",
            "{vnl: 42, vni: 42,",
            "t.yaml:15: unknown field `vnl`",
        );
        one(
            "remotes: [sw2]",
            "remotes: []",
            "t.yaml:15: `remotes` lists no VTEP",
        );
        one(
            "remotes: [sw2]",
            "remotes: [sw9]",
            "t.yaml:15: remote `sw9` is neither",
        );
        one(
            "remotes: [sw2]",
            "remotes: [239.1.1.1]",
            "t.yaml:15: remote 239.1.1.1 is not a unicast",
        );
        one(
            "remotes: [sw2]",
            "remotes: [172.19.0.1]",
            "is an address of hv1, this switch's own host",
        );
        one(
            "remotes: [sw2]",
            "remotes: [sw1]",
            "runs on hv1, this switch's own host",
        );
        one(
            "remotes: [sw2]",
            "remotes: [c1]",
            "host c1 has no address on a subnet of hv1",
        );
        one(
            "remotes: [sw2]",
            "remotes: [sw2, hv2:eth1]",
            "remote `hv2:eth1` is 172.19.0.2, already listed as `sw2`",
        );
        one(
            "remotes: [sw2]",
            "remotes: [hv2:eth9]",
            "host hv2 has no interface `eth9`",
        );
        one(
            "dstport: 8472",
            "dstport: 0",
            "t.yaml:20: dstport 0 is outside 1..=65535",
        );
        one(
            "vlan: 10",
            "vlan: 4095",
            "t.yaml:20: VLAN 4095 is outside 1..=4094",
        );
        one(
            "local: 172.19.0.2",
            "local: 172.19.0.1",
            "local `172.19.0.1` is not an address of hv2",
        );
        one(
            "name: vx0,",
            "name: c2-eth0,",
            "t.yaml:20: tunnel name `c2-eth0` is already a port of switch sw2",
        );
        one(
            "name: vx0,",
            "name: a-name-much-too-long,",
            "t.yaml:20: tunnel",
        );
        one(
            "    host: hv1\n",
            "",
            "switch sw1 has tunnels but runs in a namespace of its own",
        );
        one(
            "      - {vni: 42, remotes: [sw2]}\n",
            "      - {vni: 42, remotes: [sw2]}\n      - {name: vy, vni: 42, remotes: [sw2]}\n",
            "t.yaml:16: VNI 42 on UDP port 4789 is already tunnel vxlan42 (line 15)",
        );
        let y = format!("{VX}checks:\n  - broadcast: {{from: c1, to: [hv2]}}\n  - broadcast: {{from: c1, count: 0}}\n  - fdb: {{switch: sw1, mac: c2, port: vx9}}\n");
        let e = errs(&y);
        assert!(
            e.iter()
                .any(|e| e.starts_with("t.yaml:26: host hv2 has no address in 10.50.0.0/24")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("t.yaml:27: count 0 is outside")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.starts_with(
                "t.yaml:28: bridge sw1:br0 has no port `vx9` (its ports: c1-eth0, vxlan42)"
            )),
            "{e:?}"
        );
    }

    const NAT: &str = "\
hosts:
  - name: c1
    gateway: 172.18.0.1
    interfaces: [{name: eth0, ip: 172.18.0.2/24}]
  - name: c3
    interfaces: [{name: eth0, ip: 172.19.0.2/24}]
  - name: wan
    interfaces: [{name: eth0, ip: 198.51.100.1/24}]
switches:
  - name: sw1
    bridges:
      - name: br0
        network: {subnet: 172.18.0.0/24, gateway: 172.18.0.1}
      - name: br1
        network: {subnet: 172.19.0.0/24, gateway: 172.19.0.1}
    uplink: {ip: 198.51.100.2/24, gw: 198.51.100.1}
    publish:
      - {proto: tcp, host_port: 8080, to: c1, port: 80}
      - {host_port: 5201, to: 172.18.0.2}
links:
  - endpoints: [c1, sw1:br0]
  - endpoints: [c3, sw1:br1]
  - endpoints: [wan, {node: sw1, uplink: true, port: up0}]
";

    #[test]
    fn networks_uplink_and_published_ports_resolve() {
        let p = parse(NAT, "t.yaml", "t").unwrap();
        let sw = p.switch("sw1").unwrap();
        assert_eq!(
            sw.bridges[0].add_net_args().unwrap().join(" "),
            "add-net br0 172.18.0.0/24 --gateway 172.18.0.1"
        );
        let u = sw.uplink.as_ref().unwrap();
        assert_eq!(
            u.set_args().join(" "),
            "set-uplink up0 --ip 198.51.100.2/24 --gw 198.51.100.1"
        );
        assert_eq!(u.peer.host, "wan");
        let pubs: Vec<String> = sw
            .published
            .iter()
            .map(|x| x.publish_args().join(" "))
            .collect();
        assert_eq!(
            pubs,
            vec![
                "publish tcp 8080 172.18.0.2:80",
                "publish tcp 5201 172.18.0.2:5201"
            ]
        );
        // The uplink is no bridge port.
        assert_eq!(p.port_names("sw1", "br0"), vec!["c1-eth0"]);
        assert!(matches!(&p.links[2], Link::Uplink { port, .. } if port == "up0"));
        // A switch names its uplink address, SWITCH:BRIDGE its network's gateway.
        let y = format!(
            "{NAT}checks:\n  - http: {{from: wan, to: sw1, port: 8080, server: c1, server_port: 80, client: wan}}\n  - ping: {{from: c1, to: sw1:br0}}\n  - http: {{from: c1, to: wan, client: sw1}}\n"
        );
        let p = parse(&y, "t.yaml", "t").unwrap();
        match &p.checks[0].kind {
            CheckKind::Http {
                to,
                server,
                server_port,
                client,
                ..
            } => {
                assert_eq!(to.to_string(), "198.51.100.2");
                assert_eq!((server.as_str(), *server_port), ("c1", 80));
                assert_eq!(client.unwrap().to_string(), "198.51.100.1");
            }
            k => panic!("{k:?}"),
        }
        match &p.checks[1].kind {
            CheckKind::Ping { to, .. } => assert_eq!(to.to_string(), "172.18.0.1"),
            k => panic!("{k:?}"),
        }
        match &p.checks[2].kind {
            CheckKind::Http { client, .. } => {
                assert_eq!(client.unwrap().to_string(), "198.51.100.2");
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn bad_networks_uplinks_and_publishes_have_their_line() {
        let one = |from: &str, to: &str, want: &str| {
            assert!(NAT.contains(from), "{from}");
            let e = errs(&NAT.replacen(from, to, 1));
            assert!(
                e.iter().any(|e| e.contains(want)),
                "{to}: want {want:?}: {e:?}"
            );
        };
        one(
            "subnet: 172.18.0.0/24",
            "subnet: 172.18.0.5/24",
            "t.yaml:13: subnet 172.18.0.5/24 has host bits set",
        );
        one(
            "gateway: 172.18.0.1}",
            "gateway: 172.18.1.1}",
            "t.yaml:13: gateway 172.18.1.1 is outside 172.18.0.0/24",
        );
        one(
            "gateway: 172.18.0.1}",
            "gateway: 172.18.0.255}",
            "t.yaml:13: gateway 172.18.0.255 is the network or broadcast address",
        );
        one(
            "subnet: 172.19.0.0/24, gateway: 172.19.0.1",
            "subnet: 172.18.0.0/16, gateway: 172.18.1.1",
            "t.yaml:15: subnet 172.18.0.0/16 overlaps 172.18.0.0/24 of bridge br0 on switch sw1",
        );
        one(
            "ip: 198.51.100.2/24, gw",
            "ip: 198.51.100.2/33, gw",
            "t.yaml:16: prefix length /33",
        );
        one(
            "ip: 198.51.100.2/24, gw",
            "ip: 172.19.0.9/24, gw",
            "t.yaml:16: the uplink's subnet 172.19.0.0/24 overlaps network 172.19.0.0/24 of bridge br1",
        );
        one(
            "gw: 198.51.100.1}",
            "gw: 198.51.101.1}",
            "t.yaml:16: next hop 198.51.101.1 is outside 198.51.100.0/24",
        );
        one(
            "gw: 198.51.100.1}",
            "gw: 198.51.100.2}",
            "t.yaml:16: next hop 198.51.100.2 is the uplink's own address",
        );
        one(
            "{proto: tcp, host_port: 8080",
            "{proto: sctp, host_port: 8080",
            "t.yaml:18: unknown protocol \"sctp\"",
        );
        one(
            "host_port: 8080",
            "host_port: 70000",
            "t.yaml:18: host_port 70000 is outside 1..=65535",
        );
        one(
            "port: 80}",
            "port: 0}",
            "t.yaml:18: port 0 is outside 1..=65535",
        );
        one(
            "{host_port: 5201, to: 172.18.0.2}",
            "{host_port: 8080, to: 172.18.0.2}",
            "t.yaml:19: tcp/8080 is already published (line 18)",
        );
        one(
            "to: c1, port: 80}",
            "to: wan, port: 80}",
            "t.yaml:18: publish target 198.51.100.1 (`wan`) is in no network of switch sw1 (its networks: 172.18.0.0/24 on br0, 172.19.0.0/24 on br1)",
        );
        one(
            "to: 172.18.0.2}",
            "to: 172.18.0.1}",
            "t.yaml:19: publish target 172.18.0.1 is the gateway of sw1:br0",
        );
        one(
            "[wan, {node: sw1, uplink: true, port: up0}]",
            "[wan, {node: sw1, bridge: br0, uplink: true}]",
            "t.yaml:23: an uplink end is on no bridge",
        );
        one(
            "[wan, {node: sw1, uplink: true, port: up0}]",
            "[{node: wan, uplink: true}, sw1:br0]",
            "t.yaml:23: `uplink` belongs on a switch end",
        );
        one(
            "[wan, {node: sw1, uplink: true, port: up0}]",
            "[wan, sw1:br1]",
            "t.yaml:16: switch sw1 has an `uplink` but no link ends on it",
        );
        one(
            "    uplink: {ip: 198.51.100.2/24, gw: 198.51.100.1}\n",
            "",
            "t.yaml:17: switch sw1 publishes ports but has no `uplink`",
        );
        one(
            "    uplink: {ip: 198.51.100.2/24, gw: 198.51.100.1}\n",
            "",
            "t.yaml:22: switch sw1 has no `uplink: {ip: …}` for this uplink link",
        );
        one(
            "ip: 172.18.0.2/24}",
            "ip: 172.18.0.1/24}",
            "t.yaml:4: address 172.18.0.1 of c1:eth0 is the gateway of sw1:br0",
        );
        one(
            "ip: 198.51.100.1/24}",
            "ip: 198.51.100.2/24}",
            "t.yaml:8: address 198.51.100.2 of wan:eth0 is switch sw1's uplink address",
        );
        one(
            "ip: 172.19.0.2/24}",
            "ip: 172.20.0.2/24}",
            "t.yaml:6: address 172.20.0.2/24 of c3:eth0 is outside network 172.19.0.0/24 of sw1:br1",
        );
        one(
            "ip: 198.51.100.1/24}",
            "ip: 203.0.113.1/24}",
            "t.yaml:16: the far end of the uplink, wan:eth0 (203.0.113.1/24), is outside the uplink's subnet 198.51.100.0/24",
        );
        let y = format!("{NAT}  - endpoints: [c1, sw1:br0]\n");
        assert!(errs(&y).iter().any(|e| e.contains("already on the link")));
        let y = NAT.replace(
            "  - name: wan\n",
            "  - name: wan2\n    interfaces: [{name: eth0, ip: 198.51.100.3/24}]\n  - name: wan\n",
        ) + "  - endpoints: [wan2, {node: sw1, uplink: true}]\n";
        assert!(
            errs(&y)
                .iter()
                .any(|e| e.contains("switch sw1 already has its uplink on the link at line")),
            "{:?}",
            errs(&y)
        );
        let y = format!("{NAT}checks:\n  - ping: {{from: c1, to: sw1:br7}}\n  - http: {{from: c1, to: wan, client: nobody}}\n");
        let e = errs(&y);
        assert!(
            e.iter()
                .any(|e| e.starts_with("t.yaml:25: switch sw1 has no bridge `br7`")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("t.yaml:26: `nobody` is neither")),
            "{e:?}"
        );
    }

    #[test]
    fn cidr_and_mac() {
        assert!(Cidr::parse("10.0.0.0/24").is_err());
        assert!(Cidr::parse("10.0.0.255/24").is_err());
        assert!(Cidr::parse("10.0.0.1/32").is_ok());
        assert!(Cidr::parse("10.0.0.1").is_err());
        let c = Cidr::parse("10.1.2.3/16").unwrap();
        assert!(c.contains("10.1.200.1".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert_eq!(parse_mac("02:AA:00:00:00:01").unwrap(), "02:aa:00:00:00:01");
        assert!(parse_mac("01:00:00:00:00:01").is_err());
        assert!(parse_mac("02:00:00:00:01").is_err());
    }

    #[test]
    fn port_names_must_fit_and_not_clash() {
        let y = BASE
            .replace("name: h2\n", "name: a-very-long-host\n")
            .replace("[h2, sw1]", "[a-very-long-host, sw1]");
        let e = errs(&y);
        assert!(e.iter().any(|e| e.contains("default port name")), "{e:?}");
        let y = BASE.replace("[h2, sw1]", "[h2, {node: sw1, port: h1-eth0}]");
        let e = errs(&y);
        assert!(e.iter().any(|e| e.contains("already taken")), "{e:?}");
    }
}
