//! The CNI verbs. Like the Docker plugin this keeps no state of its own: what `DEL`,
//! `CHECK` and `GC` need later is in vswitchd's config (the attachment records the
//! container ID, namespace, interface and address) and in the IPAM plugin's store, or,
//! on a cluster overlay, in the cluster's (vswitchd claims and releases the address).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use ctl::{
    BridgeInfo, ClientError, Data, L4Proto, NetInfo, OverlayInfo, PortInfo, PortKind,
    PublishedInfo, Request,
};
use serde_json::{json, Value};

use crate::conf::{self, Env, Net};
use crate::error::{err, CniError, Code, Result};
use crate::ipam::{self, Lease};

/// What a call prints on stdout when it succeeds (nothing for DEL, CHECK, STATUS, GC).
pub type Output = Option<String>;

/// Runs one call: `stdin` is the network configuration, `env` the `CNI_*` variables.
pub fn run(env: &Env, stdin: &[u8]) -> Result<Output> {
    match env.command.as_str() {
        "VERSION" => Ok(Some(version())),
        "ADD" => add(env, stdin).map(Some),
        "DEL" => del(env, stdin).map(|()| None),
        "CHECK" => check(env, stdin).map(|()| None),
        "STATUS" => status(stdin).map(|()| None),
        "GC" => gc(env, stdin).map(|()| None),
        other => Err(err(
            Code::InvalidEnv,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"),
        )),
    }
}

fn version() -> String {
    json!({"cniVersion": conf::OWN_VERSION, "supportedVersions": conf::SUPPORTED}).to_string()
}

/// One request to vswitchd; an unreachable daemon, or cluster store, is "try again
/// later".
fn call(net: &Net, req: &Request) -> Result<Data> {
    ctl::call(&net.socket, req).map_err(|e| match e {
        ClientError::Connect { .. } => err(Code::TryAgainLater, e.to_string()),
        // vswitchd answers so only when the request changed nothing, so asking again is
        // safe (unlike "did not answer in time", after which the change may still land).
        ClientError::Refused(m) if m == STORE_UNREACHABLE => {
            err(Code::TryAgainLater, format!("vswitchd: {m}"))
        }
        ClientError::Refused(m) => err(Code::Refused, format!("vswitchd: {m}")),
        other => err(Code::Io, other.to_string()),
    })
}

/// The line vswitchd refused a request with (None for any other failure).
fn refusal(e: &CniError) -> Option<&str> {
    match e.code {
        Code::Refused => e.msg.strip_prefix("vswitchd: "),
        _ => None,
    }
}

// vswitchd's refusals carry no code, only the one line its error's `Display` gives
// (vswitch/src/controller/error.rs and attach.rs), which it keeps stable because scripts
// match on it. The variable parts are the names this plugin sent, so each refusal that
// means "already there" or "already gone" is matched as its whole line: a save failure,
// a cluster store refusing, or a different refusal that starts alike (add-overlay's
// "bridge X already exists on this node; …") must stay an error.

/// Any cluster verb on a vswitchd started without `--cluster-store`.
const NOT_IN_CLUSTER: &str = "this node is in no cluster (start vswitchd with --cluster-store)";

/// A cluster request that could not reach the store (and so changed nothing).
const STORE_UNREACHABLE: &str = "cluster store unreachable";

/// add-br: the bridge is there (another first ADD made it since our show).
fn bridge_exists(e: &CniError, bridge: &str) -> bool {
    refusal(e) == Some(format!("bridge {bridge} already exists").as_str())
}

/// add-net: the bridge has a network (its subnet ends the line: we look at it with show).
fn net_exists(e: &CniError, bridge: &str) -> bool {
    refusal(e).is_some_and(|m| {
        m.strip_prefix(&format!("bridge {bridge} already has network "))
            .is_some_and(|rest| rest.ends_with(" (del-net first)"))
    })
}

/// detach: the attachment, or its whole bridge, is gone.
fn not_attached(e: &CniError, bridge: &str, ifname: &str, netns: &str) -> bool {
    refusal(e).is_some_and(|m| {
        m == format!("bridge {bridge} has no {ifname} attached to {netns}")
            || m == format!("no bridge named {bridge}")
    })
}

/// unpublish: the port is no longer published.
fn not_published(e: &CniError, proto: L4Proto, host_port: u16) -> bool {
    refusal(e) == Some(format!("{}/{host_port} is not published", proto.as_str()).as_str())
}

/// The bridges and published ports vswitchd has now.
fn show(net: &Net) -> Result<(Vec<BridgeInfo>, Vec<PublishedInfo>)> {
    match call(net, &Request::Show)? {
        Data::Show {
            bridges, published, ..
        } => Ok((bridges, published)),
        _ => Err(err(Code::Io, "vswitchd answered show with something else")),
    }
}

/// The port of `bridge` attached to container `id` as `ifname`.
fn attached<'a>(
    bridges: &'a [BridgeInfo],
    bridge: &str,
    id: &str,
    ifname: &str,
) -> Option<&'a PortInfo> {
    bridges
        .iter()
        .find(|b| b.name == bridge)?
        .ports
        .iter()
        .find(|p| {
            p.attach
                .as_ref()
                .is_some_and(|a| a.container == id && a.ifname == ifname)
        })
}

/// attach on an overlay with the runtime's MAC: another endpoint of the overlay, on any
/// node, has it (the cluster keeps MACs unique per overlay, as it does addresses).
fn mac_in_use(e: &CniError, mac: &str, overlay: &str) -> bool {
    refusal(e).is_some_and(|m| {
        m.strip_prefix(&format!(
            "MAC {mac} is already an endpoint of overlay {overlay} ("
        ))
        .is_some_and(|rest| rest.ends_with(')'))
    })
}

/// A MAC as vswitchd writes it (lower case, colons), so that its refusals can be
/// matched against the one the runtime gave in any spelling conf accepts.
fn canonical_mac(m: &str) -> String {
    match ctl::validate::mac(m) {
        Ok(b) => b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        Err(_) => m.to_ascii_lowercase(),
    }
}

/// ADD refuses a second attachment of the same container and interface: the runtime's
/// DEL of the first would take the second's port too.
fn not_attached_yet(env: &Env, net: &Net, bridges: &[BridgeInfo]) -> Result<()> {
    match attached(bridges, &net.bridge, &env.container_id, &env.ifname) {
        Some(p) => Err(err(
            Code::InvalidConfig,
            format!(
                "container {} already has {} on bridge {} (port {})",
                env.container_id, env.ifname, net.bridge, p.name
            ),
        )),
        None => Ok(()),
    }
}

/// A locally administered MAC made from the container and interface, so that the same
/// attachment always gets the same one (the runtime may give its own through `mac`).
fn mac_for(id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

fn proto(p: &str) -> L4Proto {
    if p == "udp" {
        L4Proto::Udp
    } else {
        L4Proto::Tcp
    }
}

fn add(env: &Env, stdin: &[u8]) -> Result<String> {
    let net = conf::parse(stdin)?;
    if !Path::new(&env.netns).exists() {
        return Err(err(
            Code::UnknownContainer,
            format!("CNI_NETNS {} does not exist", env.netns),
        ));
    }
    if let Some(o) = &net.conf.overlay {
        return add_overlay(env, &net, o);
    }
    let (bridges, _) = show(&net)?;
    not_attached_yet(env, &net, &bridges)?;
    let raw = ipam::exec(&net.ipam_type, "ADD", env, stdin)?;
    let (lease, ipam_result) = match ipam::lease(&raw) {
        Ok(x) => x,
        Err(e) => {
            let _ = ipam::exec(&net.ipam_type, "DEL", env, stdin);
            return Err(e);
        }
    };
    let mut made = Made::default();
    match plug(env, &net, &bridges, &lease, &mut made) {
        Ok(result) => Ok(shape(&net.conf.cni_version, result, &ipam_result)),
        Err(e) => {
            // Nothing of this call may stay behind: the port, published ports, the lease,
            // and the bridge or network it made.
            let _ = unplug(env, &net, Some(&lease));
            let _ = ipam::exec(&net.ipam_type, "DEL", env, stdin);
            take_back(&net, &bridges, &lease, made);
            Err(e)
        }
    }
}

/// What an ADD made itself, so that its rollback takes back that and nothing else.
#[derive(Debug, Default, Clone, Copy)]
struct Made {
    bridge: bool,
    net: bool,
}

/// Deletes the bridge, or else the network, that a failed ADD made. Another ADD may have
/// found them there since and attached to them: a bridge with a port that was not there
/// at our first show stays, network and all (vswitchd has no "delete if unused", so an
/// ADD between this show and the delete can still lose the race and has to be retried,
/// as it would if the bridge had never been there). Best effort, as the rest of the
/// rollback: the ADD's own error is what the runtime gets.
fn take_back(net: &Net, before: &[BridgeInfo], lease: &Lease, made: Made) {
    if !made.bridge && !made.net {
        return;
    }
    let Ok((bridges, _)) = show(net) else { return };
    let Some(b) = bridges.iter().find(|b| b.name == net.bridge) else {
        return;
    };
    let had: Vec<&str> = before
        .iter()
        .filter(|b| b.name == net.bridge)
        .flat_map(|b| &b.ports)
        .map(|p| p.name.as_str())
        .collect();
    if b.ports.iter().any(|p| !had.contains(&p.name.as_str())) {
        return;
    }
    let req = if made.bridge {
        Request::DelBr {
            bridge: net.bridge.clone(),
        }
    } else if b.net.as_ref().is_some_and(|n| n.subnet == lease.subnet()) {
        Request::DelNet {
            bridge: net.bridge.clone(),
        }
    } else {
        return;
    };
    let _ = call(net, &req);
}

/// The network `bridge` has now (after add-net said it has one).
fn net_now(net: &Net) -> Result<NetInfo> {
    let (bridges, _) = show(net)?;
    bridges
        .into_iter()
        .find(|b| b.name == net.bridge)
        .and_then(|b| b.net)
        .ok_or_else(|| {
            err(
                Code::TryAgainLater,
                format!(
                    "bridge {} changed while this ADD ran (its network came and went)",
                    net.bridge
                ),
            )
        })
}

/// Refuses a bridge whose network is not the lease's: another gateway than the switch's
/// would go unanswered, so the container would have no way out.
fn same_net(net: &Net, n: &NetInfo, lease: &Lease, gw: Ipv4Addr) -> Result<()> {
    if n.subnet != lease.subnet() || n.gateway != gw.to_string() {
        return Err(err(
            Code::InvalidConfig,
            format!(
                "bridge {} has network {} with gateway {}, but the IPAM plugin gave {} with gateway {gw}",
                net.bridge,
                n.subnet,
                n.gateway,
                lease.cidr()
            ),
        ));
    }
    Ok(())
}

/// Bridge (and its network) if missing, the attachment, the published ports; returns
/// the interfaces of the result. `made` says which of bridge and network this call made,
/// also when it fails.
fn plug(
    env: &Env,
    net: &Net,
    bridges: &[BridgeInfo],
    lease: &Lease,
    made: &mut Made,
) -> Result<Value> {
    let bridge = bridges.iter().find(|b| b.name == net.bridge);
    if bridge.is_none() {
        match call(
            net,
            &Request::AddBr {
                bridge: net.bridge.clone(),
            },
        ) {
            Ok(_) => made.bridge = true,
            // Another first ADD on this bridge made it since our show: what we wanted.
            // Its network, if it gave one, is checked below when add-net says so.
            Err(e) if bridge_exists(&e, &net.bridge) => {}
            Err(e) => return Err(e),
        }
    }
    // The IPAM gateway becomes the switch's own (ARP, ICMP, routing, published ports),
    // as a Docker network's gateway does; a bridge that has a network keeps it.
    if let Some(gw) = lease.gateway {
        let have = match bridge.and_then(|b| b.net.clone()) {
            Some(n) => Some(n),
            None => match call(
                net,
                &Request::AddNet {
                    bridge: net.bridge.clone(),
                    subnet: lease.subnet(),
                    gateway: gw,
                },
            ) {
                Ok(_) => {
                    made.net = true;
                    None
                }
                // Another ADD gave the bridge a network since our show: ours only if
                // it is the same.
                Err(e) if net_exists(&e, &net.bridge) => Some(net_now(net)?),
                Err(e) => return Err(e),
            },
        };
        if let Some(n) = have {
            same_net(net, &n, lease, gw)?;
        }
    }
    let mac = net
        .conf
        .runtime_config
        .mac
        .clone()
        .unwrap_or_else(|| mac_for(&env.container_id, &env.ifname));
    call(
        net,
        &Request::Attach {
            bridge: net.bridge.clone(),
            netns: env.netns.clone(),
            container: env.container_id.clone(),
            ifname: env.ifname.clone(),
            ip: lease.cidr(),
            gw: lease.gateway,
            mac: Some(mac.clone()),
            mtu: net.conf.mtu,
            vlan: net.conf.vlan,
            kind: PortKind::Afpacket,
            name: None,
            aliases: Vec::new(),
        },
    )?;
    publish(net, lease.addr)?;
    interfaces(env, net, &mac)
}

/// The `portMappings` of the config, published to `addr`.
fn publish(net: &Net, addr: Ipv4Addr) -> Result<()> {
    for m in &net.conf.runtime_config.port_mappings {
        call(
            net,
            &Request::Publish {
                proto: proto(&m.protocol),
                host_port: m.host_port,
                target: SocketAddrV4::new(addr, m.container_port),
            },
        )?;
    }
    Ok(())
}

/// The result's interfaces: the switch's end of the attachment just made, and the
/// container's (with `mac`).
fn interfaces(env: &Env, net: &Net, mac: &str) -> Result<Value> {
    let (bridges, _) = show(net)?;
    let host = attached(&bridges, &net.bridge, &env.container_id, &env.ifname)
        .map(|p| p.name.clone())
        .ok_or_else(|| err(Code::Io, "vswitchd does not show the port it just attached"))?;
    let mut host_if = json!({ "name": host });
    if let Ok(a) = std::fs::read_to_string(format!("/sys/class/net/{host}/address")) {
        host_if["mac"] = json!(a.trim());
    }
    Ok(json!([
        host_if,
        {"name": env.ifname, "mac": mac, "sandbox": env.netns},
    ]))
}

/// A plain overlay's VXLAN header and outer headers (50 bytes) taken from a 1500-byte
/// underlay; an encrypted one's MTU (1390) is left to vswitchd, which knows WireGuard's
/// overhead.
const OVERLAY_MTU: u32 = 1450;

/// Overlay `name` as this node carries it. Refused: a vswitchd not in a cluster (code 2,
/// the config asks for what this daemon lacks), an overlay the cluster does not have
/// (7), one whose bridge has not reached this node yet (11: the cluster's watch brings
/// it within moments), and a configured `bridge` that is not the overlay's (7).
fn overlay(net: &Net, name: &str) -> Result<OverlayInfo> {
    let overlays = match call(net, &Request::ListOverlays) {
        Ok(Data::Overlays { overlays, .. }) => overlays,
        Ok(_) => {
            return Err(err(
                Code::Io,
                "vswitchd answered list-overlays with something else",
            ))
        }
        Err(e) if refusal(&e) == Some(NOT_IN_CLUSTER) => {
            return Err(err(
                Code::UnsupportedField,
                format!(
                    "overlay {name}: the vswitchd at {} is not in cluster mode: {NOT_IN_CLUSTER}",
                    net.socket.display()
                ),
            ))
        }
        Err(e) => return Err(e),
    };
    let o = overlays
        .into_iter()
        .find(|o| o.name == name)
        .ok_or_else(|| {
            err(
                Code::InvalidConfig,
                format!(
                    "overlay {name} is not known to the cluster (vsctl add-overlay makes one, vsctl list-overlays lists them)"
                ),
            )
        })?;
    let Some(bridge) = &o.bridge else {
        return Err(err(
            Code::TryAgainLater,
            format!("overlay {name} has no bridge on this node yet; try again"),
        ));
    };
    if *bridge != net.bridge {
        return Err(err(
            Code::InvalidConfig,
            format!(
                "\"bridge\" is {}, but overlay {name} is carried by bridge {bridge} on this node",
                net.bridge
            ),
        ));
    }
    Ok(o)
}

/// ADD on an overlay: vswitchd claims an address from the cluster as it attaches (and
/// gives it back if the attach fails), so there is no IPAM plugin, and no bridge or
/// network to make: the cluster made them on every node.
fn add_overlay(env: &Env, net: &Net, name: &str) -> Result<String> {
    let o = overlay(net, name)?;
    let gw: Ipv4Addr = o.gateway.parse().map_err(|_| {
        err(
            Code::Io,
            format!(
                "vswitchd gave overlay {name} the gateway {:?}, not an IPv4 address",
                o.gateway
            ),
        )
    })?;
    let (bridges, _) = show(net)?;
    not_attached_yet(env, net, &bridges)?;
    // No MAC of our own: without one the cluster gives `02:42:` and the address, which
    // no other endpoint of the overlay has; ours, made from the container ID, could
    // collide with another node's.
    let mac = net.conf.runtime_config.mac.as_deref().map(canonical_mac);
    let given = call(
        net,
        &Request::Attach {
            bridge: net.bridge.clone(),
            netns: env.netns.clone(),
            container: env.container_id.clone(),
            ifname: env.ifname.clone(),
            ip: String::new(),
            gw: Some(gw),
            mac: mac.clone(),
            mtu: net.conf.mtu.or((!o.encrypted).then_some(OVERLAY_MTU)),
            vlan: None,
            kind: PortKind::Afpacket,
            name: None,
            aliases: Vec::new(),
        },
    );
    let given = match given {
        // Refused (or never sent): nothing was plugged in or claimed.
        Err(e) if matches!(e.code, Code::Refused | Code::TryAgainLater) => {
            return Err(match &mac {
                Some(m) if mac_in_use(&e, m, name) => err(
                    Code::InvalidConfig,
                    format!("runtimeConfig \"mac\": {}", e.msg),
                ),
                _ => e,
            });
        }
        other => other,
    };
    let mut lease = None;
    match finish_overlay(env, net, given, gw, &mut lease) {
        Ok(r) => Ok(r),
        Err(e) => {
            // The detach gives the address back to the cluster. Also after an answer
            // that was lost: the attachment may be there all the same.
            let _ = unplug(env, net, lease.as_ref());
            Err(e)
        }
    }
}

/// What follows an overlay's attach: its answer read, the ports published, the result
/// made. `lease` is the address once known, for the rollback.
fn finish_overlay(
    env: &Env,
    net: &Net,
    given: Result<Data>,
    gw: Ipv4Addr,
    lease: &mut Option<Lease>,
) -> Result<String> {
    let (ip, mac) = match given? {
        Data::Attached { ip, mac } => (ip, mac),
        _ => {
            return Err(err(
                Code::Io,
                format!(
                    "vswitchd attached to {} without an address from the cluster",
                    net.bridge
                ),
            ))
        }
    };
    let (addr, prefix) = ctl::validate::cidr(&ip)
        .map_err(|e| err(Code::Io, format!("vswitchd gave an unusable address: {e}")))?;
    let l = lease.insert(Lease {
        addr,
        prefix,
        gateway: Some(gw),
    });
    publish(net, l.addr)?;
    let ifs = interfaces(env, net, &mac)?;
    // What an IPAM plugin would have said: the address, the overlay's gateway (every
    // node serves it) and the default route through it.
    let ipam_like = json!({
        "ips": [{"address": l.cidr(), "gateway": gw.to_string()}],
        "routes": [{"dst": "0.0.0.0/0", "gw": gw.to_string()}],
    });
    Ok(shape(&net.conf.cni_version, ifs, &ipam_like))
}

/// The result in the config's version: 1.x as is, 0.3/0.4 with `version` on each IP.
fn shape(version: &str, interfaces: Value, ipam_result: &Value) -> String {
    let old = version.starts_with("0.");
    let ips: Vec<Value> = ipam_result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| {
            let addr = ip.get("address")?.as_str()?;
            let v4 = addr
                .split_once('/')
                .is_some_and(|(a, _)| a.parse::<Ipv4Addr>().is_ok());
            // Only the IPv4 address is configured in the container.
            if !v4 {
                return None;
            }
            let mut o = json!({"address": addr, "interface": 1});
            if let Some(g) = ip.get("gateway") {
                o["gateway"] = g.clone();
            }
            if old {
                o["version"] = json!("4");
            }
            Some(o)
        })
        .take(1)
        .collect();
    let mut r = json!({
        "cniVersion": version,
        "interfaces": interfaces,
        "ips": ips,
    });
    for k in ["routes", "dns"] {
        if let Some(v) = ipam_result.get(k) {
            r[k] = v.clone();
        }
    }
    r.to_string()
}

/// Removes the attachment and every port published to its address; true if there was
/// one. Nothing there is not an error. `lease` is for ADD's own rollback only, which
/// still holds it: with no attachment, ports published to it are freed too. DEL and GC
/// pass none, since once the attachment is gone its address may be another container's.
fn unplug(env: &Env, net: &Net, lease: Option<&Lease>) -> Result<bool> {
    let (bridges, published) = show(net)?;
    let port = attached(&bridges, &net.bridge, &env.container_id, &env.ifname).cloned();
    let ip = port
        .as_ref()
        .and_then(|p| p.attach.as_ref())
        .and_then(|a| a.ip.split_once('/'))
        .and_then(|(a, _)| a.parse::<Ipv4Addr>().ok())
        .or(lease.map(|l| l.addr));
    if let Some(ip) = ip {
        for p in published.iter().filter(|p| {
            p.target
                .parse::<SocketAddrV4>()
                .is_ok_and(|t| *t.ip() == ip)
        }) {
            match call(
                net,
                &Request::Unpublish {
                    proto: p.proto,
                    host_port: p.host_port,
                },
            ) {
                Ok(_) => {}
                Err(e) if not_published(&e, p.proto, p.host_port) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let Some(port) = port else { return Ok(false) };
    let netns = port
        .attach
        .as_ref()
        .map(|a| a.netns.clone())
        .unwrap_or_default();
    match call(
        net,
        &Request::Detach {
            bridge: net.bridge.clone(),
            netns: netns.clone(),
            ifname: env.ifname.clone(),
            container: Some(env.container_id.clone()),
        },
    ) {
        Ok(_) => Ok(true),
        // Gone between our show and now: someone else did the work.
        Err(e) if not_attached(&e, &net.bridge, &env.ifname, &netns) => Ok(true),
        // Any other refusal leaves the port there: DEL must fail, keeping the lease.
        Err(e) => Err(e),
    }
}

fn del(env: &Env, stdin: &[u8]) -> Result<()> {
    let net = conf::parse(stdin)?;
    // Not prevResult's address: after a DEL that went through, the IPAM plugin (or the
    // cluster) may have given it to another container, whose published ports a repeated
    // DEL must not take.
    unplug(env, &net, None)?;
    // On an overlay the detach released the address.
    if net.conf.overlay.is_none() {
        ipam::exec(&net.ipam_type, "DEL", env, stdin)?;
    }
    Ok(())
}

fn check(env: &Env, stdin: &[u8]) -> Result<()> {
    let net = conf::parse(stdin)?;
    let prev = net
        .conf
        .prev_result
        .as_ref()
        .ok_or_else(|| err(Code::InvalidConfig, "CHECK needs a prevResult"))?;
    let want = ipam::first_v4(prev)
        .ok_or_else(|| err(Code::InvalidConfig, "prevResult has no IPv4 address"))?;
    if !Path::new(&env.netns).exists() {
        return Err(err(
            Code::UnknownContainer,
            format!("CNI_NETNS {} does not exist", env.netns),
        ));
    }
    let (bridges, _) = show(&net)?;
    let port =
        attached(&bridges, &net.bridge, &env.container_id, &env.ifname).ok_or_else(|| {
            err(
                Code::Io,
                format!(
                    "container {} has no {} on bridge {}",
                    env.container_id, env.ifname, net.bridge
                ),
            )
        })?;
    if port.state != "up" {
        return Err(err(
            Code::Io,
            format!(
                "port {} is {}: {}",
                port.name,
                port.state,
                port.reason.as_deref().unwrap_or("no reason given")
            ),
        ));
    }
    let ip = port.attach.as_ref().map(|a| a.ip.as_str()).unwrap_or("");
    if ip != want.cidr() {
        return Err(err(
            Code::Io,
            format!(
                "port {} has {ip}, prevResult says {}",
                port.name,
                want.cidr()
            ),
        ));
    }
    if let Some(v) = net.conf.vlan {
        let pvid = port.vlans.as_ref().and_then(|v| v.pvid);
        if pvid != Some(v) {
            return Err(err(
                Code::Io,
                format!("port {} is not an access port of VLAN {v}", port.name),
            ));
        }
    }
    // An overlay's address is the cluster's, which vswitchd republishes by itself.
    if net.conf.overlay.is_none() {
        ipam::exec(&net.ipam_type, "CHECK", env, stdin)?;
    }
    Ok(())
}

/// CNI 1.1 `STATUS`: ready when vswitchd answers (on an overlay: when it carries the
/// overlay, as ADD needs).
fn status(stdin: &[u8]) -> Result<()> {
    let net = conf::parse(stdin)?;
    if let Some(o) = &net.conf.overlay {
        return overlay(&net, o).map(|_| ()).map_err(|e| {
            err(
                Code::NotAvailable,
                format!("overlay {o} cannot take containers now: {e}"),
            )
        });
    }
    match call(&net, &Request::ListBr) {
        Ok(_) => Ok(()),
        Err(e) => Err(err(
            Code::NotAvailable,
            format!("vswitchd does not answer at {}: {e}", net.socket.display()),
        )),
    }
}

/// CNI 1.1 `GC`: detaches attachments of this network's bridge whose container is not
/// among `cni.dev/valid-attachments` and whose namespace is gone (an attachment made by
/// hand with `vsctl attach` to a live namespace is never touched), then lets the IPAM
/// plugin collect its own.
fn gc(env: &Env, stdin: &[u8]) -> Result<()> {
    let net = conf::parse(stdin)?;
    let valid: Vec<(String, String)> = net
        .conf
        .other
        .get("cni.dev/valid-attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some((
                a.get("containerID")?.as_str()?.to_string(),
                a.get("ifname")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let (bridges, _) = show(&net)?;
    let stale: Vec<(String, String)> = bridges
        .iter()
        .filter(|b| b.name == net.bridge)
        .flat_map(|b| &b.ports)
        .filter_map(|p| p.attach.as_ref())
        .filter(|a| !Path::new(&a.netns).exists())
        .map(|a| (a.container.clone(), a.ifname.clone()))
        .filter(|k| !valid.contains(k))
        .collect();
    for (container_id, ifname) in stale {
        let e = Env {
            container_id,
            ifname,
            ..env.clone()
        };
        unplug(&e, &net, None)?;
    }
    if !net.ipam_type.is_empty() && !env.path.is_empty() {
        // host-local of the 1.1 plugins has no GC; a plugin that refuses the verb has
        // nothing to collect from our point of view.
        let _ = ipam::exec(&net.ipam_type, "GC", env, stdin);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
