//! The handlers of libnetwork's remote network driver calls.
//!
//! What a Docker network becomes in `vswitchd`:
//!
//! - the network: bridge `dk-` + the first 12 characters of the network ID, with the
//!   network's subnet and gateway (`add-net`). Docker's default IPAM always hands over a
//!   gateway (the first address unless `--gateway` says otherwise); a network without one
//!   (another IPAM driver) is refused.
//! - `-o vswitch.vni=N -o vswitch.remotes=IP,IP [-o vswitch.local=IP]
//!   [-o vswitch.dstport=PORT]`: a VXLAN tunnel port `vx-` + 8 characters of the ID on
//!   that bridge; endpoints of such a network get MTU 1450, as Docker's overlay.
//! - `-o vswitch.vlan=N [-o vswitch.trunk=IFACE]` (or `vswitch-docker --trunk IFACE`): the
//!   networks on one trunk share a bridge `dk-trunk-IFACE` where IFACE is a port tagged in
//!   each network's VLAN; each network's bridge is patched to it by a veth pair, `vp` + 12
//!   characters of the ID (a plain port of the network's bridge) and `vt` + 12 (an access
//!   port of VLAN N on the trunk bridge). The last VLAN network of a trunk takes the trunk
//!   bridge with it.
//! - an endpoint: a veth pair, `vh` + 11 characters of the endpoint ID (a port of the
//!   network's bridge) and `vc` + 11 (moved into the container by Docker, renamed `ethN`).
//! - `-p HOSTPORT:PORT`: `publish` of the uplink's HOSTPORT to the endpoint's address.
//!
//! Ports the plugin makes carry `external_ids` (`docker.network`, `docker.endpoint`,
//! `docker.ip`, `docker.role`, `docker.vlan`, `docker.trunk`): they are the plugin's only
//! memory, kept and persisted by `vswitchd`. Every call checks what it can first, then
//! makes its changes, undoing them in reverse order when one fails; every error is one
//! line starting with `vswitch: `.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use ctl::{BridgeInfo, Data, L4Proto, PortInfo, PortKind, PublishedInfo, Request};
use serde_json::{json, Value};

use crate::api::{self, CreateEndpoint, CreateNetwork, DeleteNetwork, EndpointCall};

/// The MTU of endpoints of a network with a VXLAN tunnel (1500 less the 50 of VXLAN).
pub const OVERLAY_MTU: u32 = 1450;

/// `external_ids` keys.
pub const K_NETWORK: &str = "docker.network";
pub const K_ENDPOINT: &str = "docker.endpoint";
pub const K_IP: &str = "docker.ip";
pub const K_ROLE: &str = "docker.role";
pub const K_VLAN: &str = "docker.vlan";
pub const K_TRUNK: &str = "docker.trunk";
/// `docker.role` of a patch port (either end) and of a trunk interface.
pub const ROLE_PATCH: &str = "patch";
pub const ROLE_TRUNK: &str = "trunk";

/// The options this driver knows (`-o KEY=VALUE` on `docker network create`).
pub const OPT_VLAN: &str = "vswitch.vlan";
pub const OPT_TRUNK: &str = "vswitch.trunk";
pub const OPT_VNI: &str = "vswitch.vni";
pub const OPT_REMOTES: &str = "vswitch.remotes";
pub const OPT_LOCAL: &str = "vswitch.local";
pub const OPT_DSTPORT: &str = "vswitch.dstport";

/// Talks to `vswitchd`.
pub trait Switch {
    /// Sends one request; Err is a one-line message.
    fn call(&self, req: &Request) -> Result<Data, String>;
}

/// The real `vswitchd` behind its control socket.
#[derive(Debug, Clone)]
pub struct Vswitchd {
    pub sock: PathBuf,
}

impl Switch for Vswitchd {
    fn call(&self, req: &Request) -> Result<Data, String> {
        ctl::call(&self.sock, req).map_err(|e| e.to_string())
    }
}

/// Makes and removes interfaces in the plugin's network namespace.
pub trait Links {
    /// Creates veth pair `host`–`peer`, `peer` with `mac`, both with `mtu`; `host` up.
    fn add_veth(
        &self,
        host: &str,
        peer: &str,
        mac: Option<&str>,
        mtu: Option<u32>,
    ) -> Result<(), String>;
    /// Sets an interface up.
    fn set_up(&self, name: &str) -> Result<(), String>;
    /// Deletes an interface (and so its veth peer); one that does not exist is fine.
    fn del_link(&self, name: &str) -> Result<(), String>;
}

/// Answers one call: `path` is the URL path (`/NetworkDriver.Join`), `body` its JSON.
pub trait Handler {
    fn handle(&mut self, path: &str, body: &[u8]) -> Value;
}

/// The driver.
#[derive(Debug, Clone)]
pub struct Plugin<S, L> {
    pub sw: S,
    pub links: L,
    /// The trunk interface of VLAN networks that name none (`--trunk`).
    pub trunk: Option<String>,
}

/// One thing to undo when a later step fails.
enum Undo {
    Req(Request),
    Link(String),
}

// ---------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------

/// Checks a Docker object ID (64 hex digits from Docker; 12–128 letters or digits
/// accepted) and returns it.
pub fn check_id<'a>(what: &str, id: &'a str) -> Result<&'a str, String> {
    if id.len() < 12 || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        let shown: String = id.chars().take(80).collect();
        return Err(format!("malformed {what} ID {shown:?}"));
    }
    Ok(id)
}

/// The bridge of network `nid`.
pub fn bridge_name(nid: &str) -> String {
    format!("dk-{}", prefix(nid, 12))
}

/// The shared bridge of the VLAN networks on trunk interface `iface`.
pub fn trunk_bridge(iface: &str) -> String {
    format!("dk-trunk-{iface}")
}

/// The tunnel port of network `nid`.
pub fn tunnel_name(nid: &str) -> String {
    format!("vx-{}", prefix(nid, 8))
}

/// The patch veth pair of VLAN network `nid`: (network bridge end, trunk bridge end).
pub fn patch_names(nid: &str) -> (String, String) {
    (
        format!("vp{}", prefix(nid, 12)),
        format!("vt{}", prefix(nid, 12)),
    )
}

/// The veth pair of endpoint `eid`: (switch end, container end).
pub fn endpoint_names(eid: &str) -> (String, String) {
    (
        format!("vh{}", prefix(eid, 11)),
        format!("vc{}", prefix(eid, 11)),
    )
}

fn prefix(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// A locally administered unicast MAC derived from the endpoint ID (FNV-1a).
pub fn endpoint_mac(eid: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in eid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// Checks and lower-cases a MAC given by Docker (`--mac-address`).
pub fn check_mac(mac: &str) -> Result<String, String> {
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(format!("malformed MAC address {mac:?}"));
    }
    Ok(mac.to_ascii_lowercase())
}

/// `A.B.C.D/N` (or a bare address) to the address.
fn cidr_addr(s: &str) -> Option<Ipv4Addr> {
    let a = s.split_once('/').map_or(s, |(a, _)| a);
    a.parse().ok()
}

/// True when `ip` is inside `A.B.C.D/N`.
fn in_subnet(ip: Ipv4Addr, subnet: &str) -> bool {
    let Some((a, n)) = subnet.split_once('/') else {
        return false;
    };
    let (Ok(a), Ok(n)) = (a.parse::<Ipv4Addr>(), n.parse::<u32>()) else {
        return false;
    };
    if n > 32 {
        return false;
    }
    let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
    u32::from(ip) & mask == u32::from(a) & mask
}

// ---------------------------------------------------------------------------------------
// Network options
// ---------------------------------------------------------------------------------------

/// What `-o` asked of a network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetOpts {
    /// VLAN and trunk interface.
    pub vlan: Option<(u16, String)>,
    pub tunnel: Option<TunnelOpts>,
    /// A cluster overlay the network is (its bridge is the overlay's).
    pub overlay: Option<String>,
}

/// A network's VXLAN tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelOpts {
    pub vni: u32,
    pub remotes: Vec<IpAddr>,
    pub local: Option<IpAddr>,
    pub dstport: u16,
}

impl NetOpts {
    /// Parses the `-o` options of `docker network create`; `default_trunk` is `--trunk`.
    pub fn parse(
        opts: &BTreeMap<String, String>,
        default_trunk: Option<&str>,
    ) -> Result<Self, String> {
        let known = [
            OPT_VLAN,
            OPT_TRUNK,
            OPT_VNI,
            OPT_REMOTES,
            OPT_LOCAL,
            OPT_DSTPORT,
            OPT_OVERLAY,
        ];
        for k in opts.keys() {
            if k.starts_with("vswitch.") && !known.contains(&k.as_str()) {
                return Err(format!("unknown option {k} (known: {})", known.join(", ")));
            }
        }
        if opts.contains_key(api::MTU) {
            return Err(format!(
                "{} is not supported (endpoints get 1500, 1450 on a vswitch.vni network)",
                api::MTU
            ));
        }
        let mut out = NetOpts::default();
        if let Some(v) = opts.get(OPT_VLAN) {
            let n: u64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{OPT_VLAN}={v} is not a VLAN ID (1-4094)"))?;
            let vid = u16::try_from(n).map_err(|_| format!("VLAN {n} is outside 1-4094"))?;
            ctl::validate::vid(vid)?;
            let trunk = opts
                .get(OPT_TRUNK)
                .map(String::as_str)
                .or(default_trunk)
                .ok_or_else(|| {
                    format!(
                        "{OPT_VLAN} needs a trunk interface: -o {OPT_TRUNK}=IFACE, or vswitch-docker --trunk IFACE"
                    )
                })?;
            ctl::validate::iface_name(trunk)?;
            out.vlan = Some((vid, trunk.to_string()));
        } else if opts.contains_key(OPT_TRUNK) {
            return Err(format!("{OPT_TRUNK} is only for a {OPT_VLAN} network"));
        }
        match (opts.get(OPT_VNI), opts.get(OPT_REMOTES)) {
            (Some(v), Some(r)) => {
                let vni: u32 = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n < 1 << 24)
                    .ok_or_else(|| format!("{OPT_VNI}={v} is not a VNI (0-16777215)"))?;
                let mut remotes = Vec::new();
                for part in r.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let ip: IpAddr = part
                        .parse()
                        .map_err(|_| format!("{OPT_REMOTES}: {part:?} is not an IP address"))?;
                    if !remotes.contains(&ip) {
                        remotes.push(ip);
                    }
                }
                if remotes.is_empty() {
                    return Err(format!("{OPT_REMOTES} names no address"));
                }
                let local = match opts.get(OPT_LOCAL) {
                    Some(l) => Some(
                        l.trim()
                            .parse::<IpAddr>()
                            .map_err(|_| format!("{OPT_LOCAL}={l} is not an IP address"))?,
                    ),
                    None => None,
                };
                let dstport = match opts.get(OPT_DSTPORT) {
                    Some(p) => p
                        .trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| format!("{OPT_DSTPORT}={p} is not a UDP port (1-65535)"))?,
                    None => ctl::DEFAULT_VXLAN_PORT,
                };
                out.tunnel = Some(TunnelOpts {
                    vni,
                    remotes,
                    local,
                    dstport,
                });
            }
            (Some(_), None) => {
                return Err(format!("{OPT_VNI} needs {OPT_REMOTES}=IP[,IP…]"));
            }
            (None, Some(_)) => return Err(format!("{OPT_REMOTES} needs {OPT_VNI}=N")),
            (None, None) => {
                if opts.contains_key(OPT_LOCAL) || opts.contains_key(OPT_DSTPORT) {
                    return Err(format!(
                        "{OPT_LOCAL} and {OPT_DSTPORT} are only for a {OPT_VNI} network"
                    ));
                }
            }
        }
        if out.vlan.is_some() && out.tunnel.is_some() {
            return Err(format!("{OPT_VLAN} and {OPT_VNI} cannot be combined"));
        }
        if let Some(o) = opts.get(OPT_OVERLAY) {
            if out.vlan.is_some() || out.tunnel.is_some() {
                return Err(format!(
                    "{OPT_OVERLAY} cannot be combined with {OPT_VLAN} or {OPT_VNI}: the cluster makes the overlay's tunnel"
                ));
            }
            ctl::validate::bridge_name(o.trim())?;
            out.overlay = Some(o.trim().to_string());
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// The calls
// ---------------------------------------------------------------------------------------

fn parse<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("malformed request: {e}"))
}

fn ext(port: &PortInfo, key: &str) -> Option<String> {
    port.external_ids.get(key).cloned()
}

fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl<S: Switch, L: Links> Plugin<S, L> {
    /// A plugin on `sw` and `links`, with `--trunk`.
    pub fn new(sw: S, links: L, trunk: Option<String>) -> Self {
        Plugin { sw, links, trunk }
    }

    fn show(&self) -> Result<(Vec<BridgeInfo>, Vec<PublishedInfo>), String> {
        match self.sw.call(&Request::Show)? {
            Data::Show {
                bridges, published, ..
            } => Ok((bridges, published)),
            other => Err(format!("vswitchd answered show with {other:?}")),
        }
    }

    fn call(&self, req: Request) -> Result<(), String> {
        self.sw.call(&req).map(|_| ())
    }

    /// Runs `undo` in reverse order, ignoring failures (the original error is what counts).
    fn rollback(&self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            let r = match &u {
                Undo::Req(r) => self.sw.call(r).map(|_| ()),
                Undo::Link(l) => self.links.del_link(l),
            };
            if let Err(e) = r {
                eprintln!("vswitch-docker: undo failed: {e}");
            }
        }
    }

    /// Dispatches one call; the answer is the JSON body to send back.
    pub fn dispatch(&self, path: &str, body: &[u8]) -> Value {
        let call = path.trim_start_matches('/');
        let r = match call {
            "Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
            c if c.starts_with("IpamDriver.") => self
                .dispatch_ipam(c, body)
                .unwrap_or_else(|| Err(format!("{c:?} is not a call this driver answers"))),
            "NetworkDriver.GetCapabilities" => {
                Ok(json!({ "Scope": "local", "ConnectivityScope": "local" }))
            }
            "NetworkDriver.CreateNetwork" => self.create_network(body),
            "NetworkDriver.DeleteNetwork" => self.delete_network(body),
            "NetworkDriver.CreateEndpoint" => self.create_endpoint(body),
            "NetworkDriver.DeleteEndpoint" => self.delete_endpoint(body),
            "NetworkDriver.EndpointOperInfo" => Ok(json!({ "Value": {} })),
            "NetworkDriver.Join" => self.join(body),
            "NetworkDriver.Leave" => Ok(json!({})),
            "NetworkDriver.ProgramExternalConnectivity" => self.program_external(body),
            "NetworkDriver.RevokeExternalConnectivity" => self.revoke_external(body),
            "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => Ok(json!({})),
            other => {
                let shown: String = other.chars().take(64).collect();
                Err(format!("{shown:?} is not a call this driver answers"))
            }
        };
        match r {
            Ok(v) => v,
            Err(e) => json!({ "Err": format!("vswitch: {}", one_line(&e)) }),
        }
    }

    fn create_network(&self, body: &[u8]) -> Result<Value, String> {
        let r: CreateNetwork = parse(body)?;
        let nid = check_id("network", &r.network_id)?;
        let opts = NetOpts::parse(&api::generic_options(&r.options)?, self.trunk.as_deref())?;
        if r.ipv6_data.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err("IPv6 networks are not supported (create it without --ipv6)".into());
        }
        let v4 = r.ipv4_data.unwrap_or_default();
        let d = match v4.as_slice() {
            [d] => d,
            [] => return Err("the network has no IPv4 subnet".into()),
            _ => {
                return Err(format!(
                    "one IPv4 subnet per network (got {}: give one --subnet)",
                    v4.len()
                ))
            }
        };
        if d.pool.is_empty() {
            return Err("the network has no IPv4 subnet".into());
        }
        if let Some(name) = &opts.overlay {
            return self.join_overlay(name, d);
        }
        if d.gateway.is_empty() {
            return Err(
                "a network needs a gateway address (docker network create --gateway)".into(),
            );
        }
        let gw = cidr_addr(&d.gateway)
            .ok_or_else(|| format!("gateway {:?} is not an IPv4 address", d.gateway))?;
        let br = bridge_name(nid);
        let (bridges, _) = self.show()?;
        if bridges.iter().any(|b| b.name == br) {
            return Err(format!("bridge {br} exists already in vswitchd"));
        }
        if let Some((vid, trunk)) = &opts.vlan {
            let tb = trunk_bridge(trunk);
            if let Some(b) = bridges.iter().find(|b| b.name == tb) {
                let vs = vid.to_string();
                if let Some(p) = b.ports.iter().find(|p| {
                    ext(p, K_ROLE).as_deref() == Some(ROLE_PATCH)
                        && ext(p, K_VLAN).as_deref() == Some(vs.as_str())
                }) {
                    let other = ext(p, K_NETWORK).unwrap_or_default();
                    return Err(format!(
                        "VLAN {vid} on {trunk} is already Docker network {}",
                        prefix(&other, 12)
                    ));
                }
            }
        }
        let mut undo = Vec::new();
        match self.make_network(nid, &br, &d.pool, gw, &opts, &bridges, &mut undo) {
            Ok(()) => Ok(json!({})),
            Err(e) => {
                self.rollback(undo);
                Err(e)
            }
        }
    }

    /// A network that is a cluster overlay: nothing to make (the cluster made the
    /// overlay's bridge on every node); its addresses must be the cluster's, or two
    /// hosts would hand out the same one.
    fn join_overlay(&self, name: &str, d: &api::IpamData) -> Result<Value, String> {
        let o = self
            .overlays()?
            .into_iter()
            .find(|o| o.name == name)
            .ok_or_else(|| format!("overlay {name} is not known to the cluster"))?;
        if o.bridge.is_none() {
            return Err(format!("overlay {name} has no bridge on this node yet"));
        }
        if d.pool != o.subnet {
            return Err(format!(
                "the network's subnet {} is not overlay {name}'s {}",
                d.pool, o.subnet
            ));
        }
        if d.address_space != LOCAL_SPACE && d.address_space != GLOBAL_SPACE {
            return Err(format!(
                "an overlay's addresses come from the cluster: add --ipam-driver vswitch (got address space {:?})",
                d.address_space
            ));
        }
        Ok(json!({}))
    }

    /// The bridge an endpoint with address `ip` of network `nid` goes on: the network's
    /// own, or else the overlay whose subnet holds `ip`.
    fn endpoint_bridge<'a>(
        &self,
        bridges: &'a [BridgeInfo],
        nid: &str,
        ip: Ipv4Addr,
    ) -> Result<(&'a BridgeInfo, bool), String> {
        let br = bridge_name(nid);
        if let Some(b) = bridges.iter().find(|b| b.name == br) {
            return Ok((b, false));
        }
        let ov = self
            .overlays()
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.bridge.is_some() && in_subnet(ip, &o.subnet));
        ov.and_then(|o| bridges.iter().find(|b| Some(&b.name) == o.bridge.as_ref()))
            .map(|b| (b, true))
            .ok_or_else(|| {
                format!(
                    "network {} has no bridge {br} in vswitchd (was vswitchd's config lost?)",
                    prefix(nid, 12)
                )
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn make_network(
        &self,
        nid: &str,
        br: &str,
        subnet: &str,
        gw: Ipv4Addr,
        opts: &NetOpts,
        bridges: &[BridgeInfo],
        undo: &mut Vec<Undo>,
    ) -> Result<(), String> {
        self.call(Request::AddBr {
            bridge: br.to_string(),
        })?;
        undo.push(Undo::Req(Request::DelBr {
            bridge: br.to_string(),
        }));
        self.call(Request::AddNet {
            bridge: br.to_string(),
            subnet: subnet.to_string(),
            gateway: gw,
        })?;
        if let Some(t) = &opts.tunnel {
            self.call(Request::AddTunnel {
                bridge: br.to_string(),
                name: tunnel_name(nid),
                vni: t.vni,
                remotes: t.remotes.clone(),
                local: t.local,
                dstport: t.dstport,
                vlan: None,
                encrypt: None,
            })?;
        }
        if let Some((vid, trunk)) = &opts.vlan {
            let vid = *vid;
            let tb = trunk_bridge(trunk);
            let existing = bridges.iter().find(|b| b.name == tb);
            if existing.is_none() {
                self.call(Request::AddBr { bridge: tb.clone() })?;
                undo.push(Undo::Req(Request::DelBr { bridge: tb.clone() }));
            }
            if !existing.is_some_and(|b| b.ports.iter().any(|p| &p.name == trunk)) {
                self.call(Request::AddPort {
                    bridge: tb.clone(),
                    iface: trunk.clone(),
                    kind: PortKind::Afpacket,
                    external_ids: ids(&[(K_ROLE, ROLE_TRUNK)]),
                })
                .map_err(|e| format!("cannot use {trunk} as the trunk: {e}"))?;
                undo.push(Undo::Req(Request::DelPort {
                    bridge: tb.clone(),
                    iface: trunk.clone(),
                }));
            }
            self.call(Request::AddVlan {
                bridge: tb.clone(),
                port: trunk.clone(),
                vids: vec![vid],
                untagged: false,
                pvid: false,
                access: false,
            })?;
            undo.push(Undo::Req(Request::DelVlan {
                bridge: tb.clone(),
                port: trunk.clone(),
                vids: vec![vid],
            }));
            let (vp, vt) = patch_names(nid);
            self.links.add_veth(&vp, &vt, None, None)?;
            undo.push(Undo::Link(vp.clone()));
            self.links.set_up(&vt)?;
            let vs = vid.to_string();
            self.call(Request::AddPort {
                bridge: br.to_string(),
                iface: vp,
                kind: PortKind::Afpacket,
                external_ids: ids(&[(K_NETWORK, nid), (K_ROLE, ROLE_PATCH)]),
            })?;
            self.call(Request::AddPort {
                bridge: tb.clone(),
                iface: vt.clone(),
                kind: PortKind::Afpacket,
                external_ids: ids(&[
                    (K_NETWORK, nid),
                    (K_ROLE, ROLE_PATCH),
                    (K_VLAN, &vs),
                    (K_TRUNK, trunk),
                ]),
            })?;
            undo.push(Undo::Req(Request::DelPort {
                bridge: tb.clone(),
                iface: vt.clone(),
            }));
            self.call(Request::AddVlan {
                bridge: tb,
                port: vt,
                vids: vec![vid],
                untagged: false,
                pvid: false,
                access: true,
            })?;
        }
        Ok(())
    }

    fn delete_network(&self, body: &[u8]) -> Result<Value, String> {
        let r: DeleteNetwork = parse(body)?;
        let nid = check_id("network", &r.network_id)?;
        let br = bridge_name(nid);
        let (bridges, published) = self.show()?;
        let mut errors = Vec::new();
        let mine = bridges.iter().find(|b| b.name == br);
        // Published ports into the network (Docker revokes them first; this is for
        // anything left behind, since vswitchd refuses to delete a network they point to).
        if let Some(net) = mine.and_then(|b| b.net.as_ref()) {
            for p in &published {
                let ip = p.target.parse::<SocketAddrV4>().map(|t| *t.ip());
                if ip.is_ok_and(|ip| in_subnet(ip, &net.subnet)) {
                    if let Err(e) = self.call(Request::Unpublish {
                        proto: p.proto,
                        host_port: p.host_port,
                    }) {
                        errors.push(e);
                    }
                }
            }
        }
        // The trunk side of a VLAN network.
        for b in bridges.iter().filter(|b| b.name != br) {
            let patches: Vec<&PortInfo> = b
                .ports
                .iter()
                .filter(|p| ext(p, K_NETWORK).as_deref() == Some(nid))
                .collect();
            if patches.is_empty() {
                continue;
            }
            for p in &patches {
                if let Err(e) = self.call(Request::DelPort {
                    bridge: b.name.clone(),
                    iface: p.name.clone(),
                }) {
                    errors.push(e);
                }
                let vid = ext(p, K_VLAN).and_then(|v| v.parse::<u16>().ok());
                if let (Some(vid), Some(trunk)) = (vid, ext(p, K_TRUNK)) {
                    if b.ports.iter().any(|t| t.name == trunk) {
                        if let Err(e) = self.call(Request::DelVlan {
                            bridge: b.name.clone(),
                            port: trunk,
                            vids: vec![vid],
                        }) {
                            errors.push(e);
                        }
                    }
                }
            }
            let others = b.ports.iter().any(|p| {
                ext(p, K_ROLE).as_deref() == Some(ROLE_PATCH)
                    && ext(p, K_NETWORK).as_deref() != Some(nid)
            });
            if !others && b.name.starts_with("dk-trunk-") {
                if let Err(e) = self.call(Request::DelBr {
                    bridge: b.name.clone(),
                }) {
                    errors.push(e);
                }
            }
        }
        if let Some(b) = mine {
            if let Err(e) = self.call(Request::DelBr { bridge: br.clone() }) {
                errors.push(e);
            }
            // Veths of endpoints Docker did not delete.
            for p in &b.ports {
                if p.external_ids.contains_key(K_ENDPOINT) {
                    if let Err(e) = self.links.del_link(&p.name) {
                        errors.push(e);
                    }
                }
            }
        }
        let (vp, _) = patch_names(nid);
        if let Err(e) = self.links.del_link(&vp) {
            errors.push(e);
        }
        match errors.first() {
            None => Ok(json!({})),
            Some(e) => Err(format!("deleting network {}: {e}", prefix(nid, 12))),
        }
    }

    fn create_endpoint(&self, body: &[u8]) -> Result<Value, String> {
        let r: CreateEndpoint = parse(body)?;
        let nid = check_id("network", &r.network_id)?;
        let eid = check_id("endpoint", &r.endpoint_id)?;
        let iface = r.interface.unwrap_or_default();
        if !iface.address_ipv6.is_empty() {
            return Err("IPv6 addresses are not supported".into());
        }
        let ip = cidr_addr(&iface.address).ok_or_else(|| {
            format!(
                "an endpoint needs an IPv4 address (Docker's IPAM gave {:?})",
                iface.address
            )
        })?;
        let (bridges, published) = self.show()?;
        let (b, overlay) = self.endpoint_bridge(&bridges, nid, ip)?;
        let br = b.name.clone();
        let given_mac = !iface.mac_address.is_empty();
        // On an overlay, the MAC the cluster published with the address (02:42 and the
        // address, as Docker's overlay does): the other nodes already point it at this
        // node, and this node answers ARP for the address with it.
        let cluster_mac = overlay.then(|| {
            let o = ip.octets();
            format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
        });
        let mac = match (given_mac, cluster_mac) {
            (true, Some(c)) => {
                let m = check_mac(&iface.mac_address)?;
                if m != c {
                    return Err(format!(
                        "--mac-address {m}: on an overlay network the address {ip} has the \
                         cluster's MAC {c}; leave --mac-address out"
                    ));
                }
                m
            }
            (true, None) => check_mac(&iface.mac_address)?,
            (false, Some(c)) => c,
            (false, None) => endpoint_mac(eid),
        };
        let mtu = match r.options.get(api::MTU).and_then(api::option_text) {
            Some(m) => Some(
                m.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| format!("MTU {m} is outside 68-65535"))?,
            ),
            None if b.ports.iter().any(|p| p.kind == PortKind::Vxlan) => Some(OVERLAY_MTU),
            None => None,
        };
        let (host, peer) = endpoint_names(eid);
        if bridges
            .iter()
            .any(|b| b.ports.iter().any(|p| p.name == host))
        {
            return Err(format!("endpoint {} exists already", prefix(eid, 12)));
        }
        self.remove_stale(b, eid, ip, &published);
        self.links.add_veth(&host, &peer, Some(&mac), mtu)?;
        let ips = ip.to_string();
        if let Err(e) = self.call(Request::AddPort {
            bridge: br,
            iface: host.clone(),
            kind: PortKind::Afpacket,
            external_ids: ids(&[(K_ENDPOINT, eid), (K_NETWORK, nid), (K_IP, &ips)]),
        }) {
            let _ = self.links.del_link(&host);
            return Err(e);
        }
        // Bound to its own addresses, as `vsctl attach` binds a container's port: no
        // container can take another's address or poison its neighbours' ARP.
        if let Err(e) = self.call(Request::SetPort {
            port: host.clone(),
            allowed: Some(ctl::Allowed::Only(ctl::PortBinding {
                mac: mac.clone(),
                ips: vec![ip],
            })),
            storm_pps: Some(ctl::portsec::DEFAULT_CONTAINER_STORM_PPS),
        }) {
            let _ = self.call(Request::DelPort {
                bridge: b.name.clone(),
                iface: host.clone(),
            });
            let _ = self.links.del_link(&host);
            return Err(e);
        }
        if given_mac {
            Ok(json!({}))
        } else {
            Ok(json!({ "Interface": { "MacAddress": mac } }))
        }
    }

    /// Removes what another endpoint left on `b` with the address Docker just gave
    /// `eid`: its port and the ports published to the address. Docker hands an address
    /// out again only after releasing it, so that endpoint is gone: its DeleteEndpoint
    /// failed (vswitchd away for a moment), which libnetwork only logs before
    /// forgetting it, and what it left would otherwise carry the new container's
    /// traffic (a port published to the old container reaching the new one). Best
    /// effort: what cannot be removed now is found again by the next endpoint with
    /// that address.
    fn remove_stale(&self, b: &BridgeInfo, eid: &str, ip: Ipv4Addr, published: &[PublishedInfo]) {
        let mut errors = self.unpublish_ip(published, ip);
        let stale = b.ports.iter().filter(|p| {
            ext(p, K_ENDPOINT).is_some_and(|e| e != eid)
                && ext(p, K_IP).and_then(|a| a.parse::<Ipv4Addr>().ok()) == Some(ip)
        });
        for p in stale {
            eprintln!(
                "vswitch-docker: port {} still has {ip}, which Docker gave endpoint {}: removing it",
                p.name,
                prefix(eid, 12)
            );
            errors.extend(
                self.call(Request::DelPort {
                    bridge: b.name.clone(),
                    iface: p.name.clone(),
                })
                .err(),
            );
            errors.extend(self.links.del_link(&p.name).err());
        }
        for e in errors {
            eprintln!("vswitch-docker: removing what a gone endpoint left at {ip}: {e}");
        }
    }

    /// The bridge and port of endpoint `eid`, if vswitchd has it.
    fn find_endpoint<'a>(
        bridges: &'a [BridgeInfo],
        eid: &str,
    ) -> Option<(&'a BridgeInfo, &'a PortInfo)> {
        bridges.iter().find_map(|b| {
            b.ports
                .iter()
                .find(|p| ext(p, K_ENDPOINT).as_deref() == Some(eid))
                .map(|p| (b, p))
        })
    }

    fn endpoint_ip(port: &PortInfo) -> Result<Ipv4Addr, String> {
        ext(port, K_IP)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("port {} has no {K_IP}", port.name))
    }

    /// Unpublishes every published port pointing to `ip`, going on past failures: the
    /// errors met.
    fn unpublish_ip(&self, published: &[PublishedInfo], ip: Ipv4Addr) -> Vec<String> {
        published
            .iter()
            .filter(|p| {
                p.target
                    .parse::<SocketAddrV4>()
                    .is_ok_and(|t| *t.ip() == ip)
            })
            .filter_map(|p| {
                self.call(Request::Unpublish {
                    proto: p.proto,
                    host_port: p.host_port,
                })
                .err()
            })
            .collect()
    }

    /// Every step is tried whatever the one before did: libnetwork only logs a failed
    /// DeleteEndpoint and never asks again, so what is left now stays left (until an
    /// endpoint with the same address removes it, [`Self::remove_stale`]).
    fn delete_endpoint(&self, body: &[u8]) -> Result<Value, String> {
        let r: EndpointCall = parse(body)?;
        check_id("network", &r.network_id)?;
        let eid = check_id("endpoint", &r.endpoint_id)?;
        let (bridges, published) = self.show()?;
        let (host, _) = endpoint_names(eid);
        let mut errors = Vec::new();
        if let Some((b, p)) = Self::find_endpoint(&bridges, eid) {
            if let Ok(ip) = Self::endpoint_ip(p) {
                errors.extend(self.unpublish_ip(&published, ip));
            }
            errors.extend(
                self.call(Request::DelPort {
                    bridge: b.name.clone(),
                    iface: p.name.clone(),
                })
                .err(),
            );
            if p.name != host {
                errors.extend(self.links.del_link(&p.name).err());
            }
        }
        errors.extend(self.links.del_link(&host).err());
        match errors.first() {
            None => Ok(json!({})),
            Some(e) => Err(format!("deleting endpoint {}: {e}", prefix(eid, 12))),
        }
    }

    fn join(&self, body: &[u8]) -> Result<Value, String> {
        let r: EndpointCall = parse(body)?;
        let nid = check_id("network", &r.network_id)?;
        let eid = check_id("endpoint", &r.endpoint_id)?;
        let (bridges, _) = self.show()?;
        let (b, _) = Self::find_endpoint(&bridges, eid)
            .filter(|(_, p)| ext(p, K_NETWORK).as_deref() == Some(nid))
            .ok_or_else(|| {
                format!(
                    "endpoint {} of network {} is not a port in vswitchd",
                    prefix(eid, 12),
                    prefix(nid, 12)
                )
            })?;
        let gateway = b
            .net
            .as_ref()
            .map(|n| n.gateway.clone())
            .unwrap_or_default();
        let (_, peer) = endpoint_names(eid);
        let resp = api::JoinResponse {
            interface_name: api::InterfaceName {
                src_name: peer,
                dst_prefix: "eth".into(),
            },
            gateway,
        };
        serde_json::to_value(resp).map_err(|e| e.to_string())
    }

    fn program_external(&self, body: &[u8]) -> Result<Value, String> {
        let r: EndpointCall = parse(body)?;
        check_id("network", &r.network_id)?;
        let eid = check_id("endpoint", &r.endpoint_id)?;
        let bindings = api::port_map(&r.options)?;
        if bindings.is_empty() {
            return Ok(json!({}));
        }
        let (bridges, uplink, published) = match self.sw.call(&Request::Show)? {
            Data::Show {
                bridges,
                uplink,
                published,
                ..
            } => (bridges, uplink, published),
            other => return Err(format!("vswitchd answered show with {other:?}")),
        };
        let uplink_ip = uplink
            .as_ref()
            .map(|u| u.ip.split_once('/').map_or(u.ip.as_str(), |(a, _)| a));
        let mut want: Vec<(L4Proto, u16, u16)> = Vec::new();
        let mut seen = BTreeSet::new();
        for b in &bindings {
            // A port meant for one host address (`-p 127.0.0.1:5432:5432`) must not open
            // on the uplink for everyone: only the uplink's own address, or none, is
            // taken.
            match b.host_ip.as_deref().unwrap_or("") {
                "" | "0.0.0.0" | "::" => {}
                a if Some(a) == uplink_ip => {}
                a => {
                    return Err(format!(
                        "-p {a}:{}: ports are published on the uplink's address only \
                         ({}); give no host address or that one",
                        b.host_port,
                        uplink_ip.unwrap_or("no uplink set")
                    ))
                }
            }
            let proto = match b.proto {
                6 => L4Proto::Tcp,
                17 => L4Proto::Udp,
                132 => return Err("SCTP ports cannot be published".into()),
                n => return Err(format!("protocol {n} cannot be published")),
            };
            if b.host_port == 0 {
                return Err("give a host port (-p HOSTPORT:PORT)".into());
            }
            if b.port == 0 {
                return Err("container port 0 cannot be published".into());
            }
            if seen.insert((proto, b.host_port)) {
                want.push((proto, b.host_port, b.port));
            }
        }
        let (_, port) = Self::find_endpoint(&bridges, eid)
            .ok_or_else(|| format!("endpoint {} is not in vswitchd", prefix(eid, 12)))?;
        let ip = Self::endpoint_ip(port)?;
        let mut done: Vec<(L4Proto, u16)> = Vec::new();
        for (proto, host_port, cport) in want {
            let target = SocketAddrV4::new(ip, cport);
            let ts = target.to_string();
            if published
                .iter()
                .any(|p| p.proto == proto && p.host_port == host_port && p.target == ts)
            {
                continue;
            }
            if let Err(e) = self.call(Request::Publish {
                proto,
                host_port,
                target,
            }) {
                for (proto, host_port) in done.into_iter().rev() {
                    let _ = self.call(Request::Unpublish { proto, host_port });
                }
                return Err(format!(
                    "cannot publish {}/{host_port}: {e}",
                    proto.as_str()
                ));
            }
            done.push((proto, host_port));
        }
        Ok(json!({}))
    }

    fn revoke_external(&self, body: &[u8]) -> Result<Value, String> {
        let r: EndpointCall = parse(body)?;
        check_id("network", &r.network_id)?;
        let eid = check_id("endpoint", &r.endpoint_id)?;
        let (bridges, published) = self.show()?;
        if let Some((_, port)) = Self::find_endpoint(&bridges, eid) {
            let ip = Self::endpoint_ip(port)?;
            if let Some(e) = self.unpublish_ip(&published, ip).into_iter().next() {
                return Err(e);
            }
        }
        Ok(json!({}))
    }
}

impl<S: Switch, L: Links> Handler for Plugin<S, L> {
    fn handle(&mut self, path: &str, body: &[u8]) -> Value {
        self.dispatch(path, body)
    }
}

mod ipam;
#[cfg(test)]
mod tests;

pub use ipam::{GLOBAL_SPACE, LOCAL_SPACE, OPT_OVERLAY};
