//! The handlers against a fake `vswitchd` (a small model of bridges, ports with
//! `external_ids`, networks and published ports, which can refuse a chosen request) and
//! fake links (a set of interface names).

use std::cell::RefCell;
use std::collections::BTreeSet;

use ctl::{NetInfo, PortVlans};

use super::*;

const NID: &str = "4e2a1f0c9d8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170615f4e3d2c1b0a9f8e";
const NID2: &str = "99aa1f0c9d8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170615f4e3d2c1b0a9f8e";
const EID: &str = "e1e2e3e4e5e6e7e8e9e0f1f2f3f4f5f6f7f8f9f0a1a2a3a4a5a6a7a8a9a0b1b2";
const EID2: &str = "c1e2e3e4e5e6e7e8e9e0f1f2f3f4f5f6f7f8f9f0a1a2a3a4a5a6a7a8a9a0b1b2";

#[derive(Default)]
struct Fake {
    bridges: RefCell<Vec<BridgeInfo>>,
    uplink: RefCell<Option<ctl::UplinkInfo>>,
    overlays: RefCell<Vec<ctl::OverlayInfo>>,
    published: RefCell<Vec<PublishedInfo>>,
    /// Op names (`add-br`, …) of every mutating request, in order.
    log: RefCell<Vec<String>>,
    /// Refuse the n-th request of this op (1-based).
    fail: RefCell<Option<(String, usize)>>,
}

fn op(req: &Request) -> String {
    serde_json::to_value(req).unwrap()["op"]
        .as_str()
        .unwrap()
        .to_string()
}

impl Fake {
    fn fail_on(&self, op: &str, nth: usize) {
        *self.fail.borrow_mut() = Some((op.to_string(), nth));
    }
    fn bridge_names(&self) -> Vec<String> {
        self.bridges
            .borrow()
            .iter()
            .map(|b| b.name.clone())
            .collect()
    }
    fn ports(&self, br: &str) -> Vec<PortInfo> {
        self.bridges
            .borrow()
            .iter()
            .find(|b| b.name == br)
            .map(|b| b.ports.clone())
            .unwrap_or_default()
    }
    fn with_bridge<T>(&self, br: &str, f: impl FnOnce(&mut BridgeInfo) -> T) -> Result<T, String> {
        let mut bs = self.bridges.borrow_mut();
        let b = bs
            .iter_mut()
            .find(|b| b.name == br)
            .ok_or_else(|| format!("no bridge {br}"))?;
        Ok(f(b))
    }
}

fn port(name: &str, kind: PortKind, external_ids: BTreeMap<String, String>) -> PortInfo {
    PortInfo {
        name: name.into(),
        kind,
        state: "up".into(),
        reason: None,
        vlans: None,
        tunnel: None,
        external_ids,
        attach: None,
        allowed: None,
        storm_pps: 0,
        io: None,
        names: Vec::new(),
    }
}

impl Switch for Fake {
    fn call(&self, req: &Request) -> Result<Data, String> {
        if matches!(req, Request::Show) {
            return Ok(Data::Show {
                public_key: None,
                bridges: self.bridges.borrow().clone(),
                uplink: self.uplink.borrow().clone(),
                published: self.published.borrow().clone(),
            });
        }
        if matches!(req, Request::ListOverlays) {
            return Ok(Data::Overlays {
                overlays: self.overlays.borrow().clone(),
                store: "connected".into(),
            });
        }
        let name = op(req);
        self.log.borrow_mut().push(name.clone());
        let mut fail = self.fail.borrow_mut();
        if let Some((o, n)) = fail.as_mut() {
            if *o == name {
                *n -= 1;
                if *n == 0 {
                    // Once: the same request later goes through.
                    *fail = None;
                    return Err(format!("refused {name}"));
                }
            }
        }
        drop(fail);
        match req.clone() {
            Request::AddBr { bridge } => {
                if self.bridge_names().contains(&bridge) {
                    return Err(format!("bridge {bridge} already exists"));
                }
                self.bridges.borrow_mut().push(BridgeInfo {
                    name: bridge,
                    aging_secs: 300,
                    mac_limit: 65536,
                    ip_checks: true,
                    fdb_entries: 0,
                    ports: vec![],
                    net: None,
                    services: vec![],
                });
            }
            Request::DelBr { bridge } => {
                let subnet = self.with_bridge(&bridge, |b| b.net.clone())?;
                if let Some(n) = subnet {
                    let busy = self.published.borrow().iter().any(|p| {
                        in_subnet(*p.target.parse::<SocketAddrV4>().unwrap().ip(), &n.subnet)
                    });
                    if busy {
                        return Err("published ports point into it".into());
                    }
                }
                self.bridges.borrow_mut().retain(|b| b.name != bridge);
            }
            Request::AddNet {
                bridge,
                subnet,
                gateway,
            } => self.with_bridge(&bridge, |b| {
                b.net = Some(NetInfo {
                    subnet,
                    gateway: gateway.to_string(),
                    mac: "02:00:00:00:00:01".into(),
                    domain: None,
                    upstream: Vec::new(),
                })
            })?,
            Request::AddPort {
                bridge,
                iface,
                kind,
                external_ids,
            } => self.with_bridge(&bridge, |b| b.ports.push(port(&iface, kind, external_ids)))?,
            Request::DelPort { bridge, iface } => {
                self.with_bridge(&bridge, |b| b.ports.retain(|p| p.name != iface))?
            }
            Request::SetPort {
                port,
                allowed,
                storm_pps,
            } => {
                let mut bs = self.bridges.borrow_mut();
                let p = bs
                    .iter_mut()
                    .flat_map(|b| b.ports.iter_mut())
                    .find(|p| p.name == port)
                    .ok_or_else(|| format!("no port named {port}"))?;
                match allowed {
                    Some(ctl::Allowed::Only(b)) => p.allowed = Some(b),
                    Some(ctl::Allowed::Any) => p.allowed = None,
                    None => {}
                }
                if let Some(s) = storm_pps {
                    p.storm_pps = s;
                }
            }
            Request::AddTunnel { bridge, name, .. } => self.with_bridge(&bridge, |b| {
                b.ports.push(port(&name, PortKind::Vxlan, BTreeMap::new()))
            })?,
            Request::AddVlan {
                bridge,
                port,
                vids,
                access,
                ..
            } => self.with_bridge(&bridge, |b| {
                if let Some(p) = b.ports.iter_mut().find(|p| p.name == port) {
                    let v = p.vlans.get_or_insert_with(PortVlans::default);
                    if access {
                        v.untagged.extend(&vids);
                        v.pvid = vids.first().copied();
                    } else {
                        v.tagged.extend(&vids);
                    }
                }
            })?,
            Request::DelVlan { bridge, port, vids } => self.with_bridge(&bridge, |b| {
                if let Some(p) = b.ports.iter_mut().find(|p| p.name == port) {
                    if let Some(v) = p.vlans.as_mut() {
                        v.tagged.retain(|x| !vids.contains(x));
                        v.untagged.retain(|x| !vids.contains(x));
                    }
                }
            })?,
            Request::Publish {
                proto,
                host_port,
                target,
            } => {
                let mut p = self.published.borrow_mut();
                if p.iter()
                    .any(|x| x.proto == proto && x.host_port == host_port)
                {
                    return Err(format!(
                        "{}/{host_port} is already published",
                        proto.as_str()
                    ));
                }
                p.push(PublishedInfo {
                    proto,
                    host_port,
                    target: target.to_string(),
                });
            }
            Request::Unpublish { proto, host_port } => self
                .published
                .borrow_mut()
                .retain(|x| !(x.proto == proto && x.host_port == host_port)),
            other => return Err(format!("fake does not do {other:?}")),
        }
        Ok(Data::Done)
    }
}

/// (host, peer, mac, mtu) of a veth made.
type Made = (String, String, Option<String>, Option<u32>);

#[derive(Default)]
struct FakeLinks {
    links: RefCell<BTreeSet<String>>,
    /// (host, peer, mac, mtu) of every veth made.
    made: RefCell<Vec<Made>>,
}

impl Links for FakeLinks {
    fn add_veth(
        &self,
        host: &str,
        peer: &str,
        mac: Option<&str>,
        mtu: Option<u32>,
    ) -> Result<(), String> {
        let mut l = self.links.borrow_mut();
        if l.contains(host) || l.contains(peer) {
            return Err(format!("{host} exists"));
        }
        l.insert(host.into());
        l.insert(peer.into());
        self.made
            .borrow_mut()
            .push((host.into(), peer.into(), mac.map(str::to_string), mtu));
        Ok(())
    }
    fn set_up(&self, _name: &str) -> Result<(), String> {
        Ok(())
    }
    fn del_link(&self, name: &str) -> Result<(), String> {
        let mut l = self.links.borrow_mut();
        l.remove(name);
        // Deleting one end of a veth takes its peer.
        let peer = if let Some(rest) = name.strip_prefix("vh") {
            format!("vc{rest}")
        } else if let Some(rest) = name.strip_prefix("vp") {
            format!("vt{rest}")
        } else {
            String::new()
        };
        l.remove(&peer);
        Ok(())
    }
}

fn plugin() -> Plugin<Fake, FakeLinks> {
    Plugin::new(Fake::default(), FakeLinks::default(), None)
}

fn call(p: &Plugin<Fake, FakeLinks>, path: &str, body: Value) -> Value {
    p.dispatch(path, body.to_string().as_bytes())
}

fn err(v: &Value) -> Option<&str> {
    v.get("Err").and_then(Value::as_str)
}

fn create_net(p: &Plugin<Fake, FakeLinks>, nid: &str, pool: &str, gw: &str, opts: Value) -> Value {
    call(
        p,
        "/NetworkDriver.CreateNetwork",
        json!({
            "NetworkID": nid,
            "Options": {"com.docker.network.enable_ipv6": false, "com.docker.network.generic": opts},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": pool, "Gateway": gw, "AuxAddresses": null}],
            "IPv6Data": []
        }),
    )
}

fn create_ep(p: &Plugin<Fake, FakeLinks>, nid: &str, eid: &str, addr: &str, mac: &str) -> Value {
    call(
        p,
        "/NetworkDriver.CreateEndpoint",
        json!({
            "NetworkID": nid, "EndpointID": eid,
            "Options": {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}]},
            "Interface": {"Address": addr, "AddressIPv6": "", "MacAddress": mac}
        }),
    )
}

fn ep_call(p: &Plugin<Fake, FakeLinks>, what: &str, nid: &str, eid: &str, opts: Value) -> Value {
    call(
        p,
        &format!("/NetworkDriver.{what}"),
        json!({"NetworkID": nid, "EndpointID": eid, "Options": opts}),
    )
}

fn portmap(bindings: Value) -> Value {
    json!({ "com.docker.network.portmap": bindings })
}

#[test]
fn activation_and_capabilities() {
    let p = plugin();
    assert_eq!(
        call(&p, "/Plugin.Activate", json!({})),
        json!({"Implements": ["NetworkDriver", "IpamDriver"]})
    );
    assert_eq!(
        p.dispatch("/Plugin.Activate", b""),
        json!({"Implements": ["NetworkDriver", "IpamDriver"]})
    );
    let c = call(&p, "/IpamDriver.GetDefaultAddressSpaces", json!({}));
    assert_eq!(c["LocalDefaultAddressSpace"], LOCAL_SPACE);
    let c = call(
        &p,
        "/IpamDriver.RequestPool",
        json!({"Pool": "10.1.0.0/24", "V6": true}),
    );
    assert!(
        err(&c).unwrap().contains("IPv6 pools are not supported"),
        "{c}"
    );
    let c = call(&p, "/NetworkDriver.GetCapabilities", json!({}));
    assert_eq!(c["Scope"], "local");
    let e = call(&p, "/Nope.Nothing", json!({}));
    assert!(err(&e).unwrap().starts_with("vswitch: "), "{e}");
}

#[test]
fn network_becomes_a_bridge_with_its_gateway() {
    let p = plugin();
    let r = create_net(&p, NID, "172.30.0.0/24", "172.30.0.1/24", json!({}));
    assert_eq!(r, json!({}));
    let b = p.sw.bridges.borrow()[0].clone();
    assert_eq!(b.name, "dk-4e2a1f0c9d8b");
    let n = b.net.as_ref().unwrap();
    assert_eq!(
        (n.subnet.as_str(), n.gateway.as_str()),
        ("172.30.0.0/24", "172.30.0.1")
    );
    // Once more: refused, and the first stays.
    let r = create_net(&p, NID, "172.30.0.0/24", "172.30.0.1/24", json!({}));
    assert!(err(&r).is_some());
    assert_eq!(p.sw.bridge_names(), ["dk-4e2a1f0c9d8b"]);
    assert_eq!(
        call(
            &p,
            "/NetworkDriver.DeleteNetwork",
            json!({"NetworkID": NID})
        ),
        json!({})
    );
    assert!(p.sw.bridge_names().is_empty());
    // Deleting what is gone is fine.
    assert_eq!(
        call(
            &p,
            "/NetworkDriver.DeleteNetwork",
            json!({"NetworkID": NID})
        ),
        json!({})
    );
}

#[test]
fn bad_networks_are_refused_in_one_line_and_leave_nothing() {
    let p = plugin();
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"vswitch.vlan": "5000", "vswitch.trunk": "eth1"}),
            "",
            "vswitch: VLAN 5000 is outside 1-4094",
        ),
        (
            json!({"vswitch.vlan": "0", "vswitch.trunk": "eth1"}),
            "",
            "vswitch: VLAN 0 is outside 1-4094",
        ),
        (
            json!({"vswitch.vlan": "70000", "vswitch.trunk": "eth1"}),
            "",
            "vswitch: VLAN 70000 is outside 1-4094",
        ),
        (
            json!({"vswitch.vlan": "ten"}),
            "",
            "vswitch: vswitch.vlan=ten is not a VLAN ID (1-4094)",
        ),
        (
            json!({"vswitch.vlan": "10"}),
            "",
            "vswitch: vswitch.vlan needs a trunk interface",
        ),
        (
            json!({"vswitch.vni": "42"}),
            "",
            "vswitch: vswitch.vni needs vswitch.remotes",
        ),
        (
            json!({"vswitch.vni": "16777216", "vswitch.remotes": "192.0.2.1"}),
            "",
            "vswitch: vswitch.vni=16777216 is not a VNI",
        ),
        (
            json!({"vswitch.vni": "4", "vswitch.remotes": "x"}),
            "",
            "vswitch: vswitch.remotes: \"x\" is not an IP",
        ),
        (
            json!({"vswitch.vlna": "4"}),
            "",
            "vswitch: unknown option vswitch.vlna",
        ),
        (
            json!({"vswitch.vlan": "4", "vswitch.trunk": "eth1", "vswitch.vni": "4", "vswitch.remotes": "192.0.2.1"}),
            "",
            "vswitch: vswitch.vlan and vswitch.vni cannot be combined",
        ),
        (
            json!({"com.docker.network.driver.mtu": "1400"}),
            "",
            "vswitch: com.docker.network.driver.mtu is not supported",
        ),
        (json!({}), "nogw", "vswitch: a network needs a gateway"),
    ];
    for (opts, special, want) in cases {
        let gw = if special == "nogw" {
            ""
        } else {
            "172.30.0.1/24"
        };
        let r = create_net(&p, NID, "172.30.0.0/24", gw, opts.clone());
        let e = err(&r).unwrap_or_else(|| panic!("{opts} accepted"));
        assert!(e.starts_with(want), "{opts}: {e}");
        assert!(!e.contains('\n'));
        assert!(
            p.sw.bridge_names().is_empty(),
            "{opts} left {:?}",
            p.sw.bridge_names()
        );
        assert!(
            p.sw.log.borrow().is_empty(),
            "{opts} sent {:?}",
            p.sw.log.borrow()
        );
    }
    // Malformed bodies and IDs.
    for body in [
        &b"{"[..],
        b"[1]",
        br#"{"NetworkID": 5}"#,
        br#"{"NetworkID": "../x"}"#,
    ] {
        let r = p.dispatch("/NetworkDriver.CreateNetwork", body);
        assert!(err(&r).unwrap().starts_with("vswitch: "), "{r}");
    }
    let r = call(
        &p,
        "/NetworkDriver.CreateNetwork",
        json!({"NetworkID": NID, "IPv4Data": [{"Pool": "172.30.0.0/24", "Gateway": "172.30.0.1/24"}],
               "IPv6Data": [{"Pool": "fd00::/64", "Gateway": "fd00::1/64"}]}),
    );
    assert!(err(&r).unwrap().contains("IPv6"), "{r}");
}

#[test]
fn a_refused_step_undoes_the_ones_before() {
    let p = plugin();
    p.sw.fail_on("add-net", 1);
    let r = create_net(&p, NID, "172.30.0.0/24", "172.30.0.1/24", json!({}));
    assert_eq!(err(&r), Some("vswitch: refused add-net"));
    assert!(p.sw.bridge_names().is_empty());
    assert_eq!(*p.sw.log.borrow(), ["add-br", "add-net", "del-br"]);

    // VLAN network: the last step refused; trunk bridge, patch veth, everything goes.
    let p = plugin();
    p.sw.fail_on("add-vlan", 2);
    let r = create_net(
        &p,
        NID,
        "172.30.0.0/24",
        "172.30.0.1/24",
        json!({"vswitch.vlan": "10", "vswitch.trunk": "eth1"}),
    );
    assert_eq!(err(&r), Some("vswitch: refused add-vlan"));
    assert!(p.sw.bridge_names().is_empty(), "{:?}", p.sw.bridge_names());
    assert!(p.links.links.borrow().is_empty());
}

#[test]
fn vlan_networks_share_a_trunk_bridge() {
    let p = Plugin::new(Fake::default(), FakeLinks::default(), Some("eth1".into()));
    assert_eq!(
        create_net(
            &p,
            NID,
            "172.30.0.0/24",
            "172.30.0.1/24",
            json!({"vswitch.vlan": "10"})
        ),
        json!({})
    );
    assert_eq!(
        create_net(
            &p,
            NID2,
            "172.30.1.0/24",
            "172.30.1.1/24",
            json!({"vswitch.vlan": "20"})
        ),
        json!({})
    );
    // The same VLAN on the same trunk again: refused.
    let r = create_net(
        &p,
        "77aa1f0c9d8b7a6f",
        "172.30.2.0/24",
        "172.30.2.1/24",
        json!({"vswitch.vlan": "20"}),
    );
    assert_eq!(
        err(&r),
        Some("vswitch: VLAN 20 on eth1 is already Docker network 99aa1f0c9d8b")
    );
    assert_eq!(
        p.sw.bridge_names(),
        ["dk-4e2a1f0c9d8b", "dk-trunk-eth1", "dk-99aa1f0c9d8b"]
    );
    let trunk = p.sw.ports("dk-trunk-eth1");
    let names: Vec<&str> = trunk.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["eth1", "vt4e2a1f0c9d8b", "vt99aa1f0c9d8b"]);
    assert_eq!(trunk[0].vlans.as_ref().unwrap().tagged, [10, 20]);
    assert_eq!(trunk[1].vlans.as_ref().unwrap().pvid, Some(10));
    assert_eq!(trunk[1].external_ids[K_VLAN], "10");
    assert_eq!(p.sw.ports("dk-4e2a1f0c9d8b")[0].name, "vp4e2a1f0c9d8b");
    // The first goes: the trunk stays for the second.
    assert_eq!(
        call(
            &p,
            "/NetworkDriver.DeleteNetwork",
            json!({"NetworkID": NID})
        ),
        json!({})
    );
    assert_eq!(p.sw.bridge_names(), ["dk-trunk-eth1", "dk-99aa1f0c9d8b"]);
    assert_eq!(
        p.sw.ports("dk-trunk-eth1")[0]
            .vlans
            .as_ref()
            .unwrap()
            .tagged,
        [20]
    );
    assert!(!p.links.links.borrow().contains("vp4e2a1f0c9d8b"));
    // The last goes: the trunk bridge with it.
    assert_eq!(
        call(
            &p,
            "/NetworkDriver.DeleteNetwork",
            json!({"NetworkID": NID2})
        ),
        json!({})
    );
    assert!(p.sw.bridge_names().is_empty());
    assert!(p.links.links.borrow().is_empty());
}

#[test]
fn overlay_network_has_a_tunnel_and_mtu_1450() {
    let p = plugin();
    let r = create_net(
        &p,
        NID,
        "172.30.0.0/24",
        "172.30.0.1/24",
        json!({"vswitch.vni": "42", "vswitch.remotes": "198.51.100.1, 198.51.100.3"}),
    );
    assert_eq!(r, json!({}));
    let ports = p.sw.ports("dk-4e2a1f0c9d8b");
    assert_eq!(ports[0].name, "vx-4e2a1f0c");
    assert_eq!(ports[0].kind, PortKind::Vxlan);
    assert_eq!(
        create_ep(&p, NID, EID, "172.30.0.2/24", ""),
        json!({"Interface": {"MacAddress": endpoint_mac(EID)}})
    );
    assert_eq!(p.links.made.borrow()[0].3, Some(1450));
}

#[test]
fn endpoint_lifecycle() {
    let p = plugin();
    create_net(&p, NID, "172.30.0.0/24", "172.30.0.1/24", json!({}));
    // No MAC from Docker: one is made up and returned, and only it.
    let r = create_ep(&p, NID, EID, "172.30.0.2/24", "");
    let mac = endpoint_mac(EID);
    assert_eq!(r, json!({"Interface": {"MacAddress": mac}}));
    assert!(mac.starts_with("02:"));
    let made = p.links.made.borrow()[0].clone();
    assert_eq!(
        made,
        (
            "vhe1e2e3e4e5e".into(),
            "vce1e2e3e4e5e".into(),
            Some(mac.clone()),
            None
        )
    );
    let port = &p.sw.ports("dk-4e2a1f0c9d8b")[0];
    assert_eq!(port.name, "vhe1e2e3e4e5e");
    assert_eq!(port.external_ids[K_ENDPOINT], EID);
    assert_eq!(port.external_ids[K_NETWORK], NID);
    assert_eq!(port.external_ids[K_IP], "172.30.0.2");
    // Bound to its MAC and address, storm-limited, as `vsctl attach` does.
    assert_eq!(
        port.allowed,
        Some(ctl::PortBinding {
            mac: mac.clone(),
            ips: vec!["172.30.0.2".parse().unwrap()],
        })
    );
    assert_eq!(port.storm_pps, ctl::portsec::DEFAULT_CONTAINER_STORM_PPS);
    // Docker's MAC: used, nothing returned.
    let r = create_ep(&p, NID, EID2, "172.30.0.3/24", "02:42:AC:1E:00:03");
    assert_eq!(r, json!({}));
    assert_eq!(
        p.links.made.borrow()[1].2.as_deref(),
        Some("02:42:ac:1e:00:03")
    );
    // The same endpoint again: refused, the first intact.
    assert!(err(&create_ep(&p, NID, EID, "172.30.0.2/24", "")).is_some());
    assert_eq!(p.sw.ports("dk-4e2a1f0c9d8b").len(), 2);

    let j = ep_call(&p, "Join", NID, EID, json!({}));
    assert_eq!(
        j,
        json!({"InterfaceName": {"SrcName": "vce1e2e3e4e5e", "DstPrefix": "eth"}, "Gateway": "172.30.0.1"})
    );
    assert_eq!(ep_call(&p, "Leave", NID, EID, json!({})), json!({}));
    assert_eq!(
        ep_call(&p, "DeleteEndpoint", NID, EID, json!({})),
        json!({})
    );
    assert_eq!(p.sw.ports("dk-4e2a1f0c9d8b").len(), 1);
    assert!(!p.links.links.borrow().contains("vhe1e2e3e4e5e"));
    assert!(!p.links.links.borrow().contains("vce1e2e3e4e5e"));
    // Again: nothing to do, fine.
    assert_eq!(
        ep_call(&p, "DeleteEndpoint", NID, EID, json!({})),
        json!({})
    );
    // Join of an unknown endpoint or network: an error naming vswitch.
    assert!(err(&ep_call(&p, "Join", NID, EID, json!({})))
        .unwrap()
        .starts_with("vswitch: "));
    assert!(err(&ep_call(&p, "Join", NID2, EID2, json!({})))
        .unwrap()
        .starts_with("vswitch: "));
}

#[test]
fn endpoint_refused_by_the_switch_leaves_no_veth() {
    let p = plugin();
    create_net(&p, NID, "172.30.0.0/24", "172.30.0.1/24", json!({}));
    p.sw.fail_on("add-port", 1);
    assert!(err(&create_ep(&p, NID, EID, "172.30.0.2/24", "")).is_some());
    assert!(p.links.links.borrow().is_empty());
    // Refused binding: the port and the veth go again.
    p.sw.fail_on("set-port", 1);
    assert!(err(&create_ep(&p, NID, EID, "172.30.0.2/24", "")).is_some());
    assert!(p.links.links.borrow().is_empty());
    assert!(p.sw.ports("dk-4e2a1f0c9d8b").is_empty());
    // Bad input never reaches the switch.
    for (addr, mac) in [
        ("", ""),
        ("fd00::2/64", ""),
        ("172.30.0.2/24", "zz:00:00:00:00:00"),
    ] {
        let r = create_ep(&p, NID, EID, addr, mac);
        assert!(err(&r).unwrap().starts_with("vswitch: "), "{r}");
    }
    // An endpoint on a network vswitchd does not have.
    assert!(err(&create_ep(&p, NID2, EID, "172.30.0.2/24", ""))
        .unwrap()
        .contains("no bridge"));
    assert!(p.links.links.borrow().is_empty());
}

#[test]
fn published_ports_follow_the_endpoint() {
    let p = plugin();
    create_net(&p, NID, "172.30.0.0/24", "172.30.0.1/24", json!({}));
    create_ep(&p, NID, EID, "172.30.0.2/24", "");
    create_ep(&p, NID, EID2, "172.30.0.3/24", "");
    let pm = portmap(json!([
        {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
        {"Proto": 6, "IP": "", "Port": 80, "HostIP": "::", "HostPort": 8080, "HostPortEnd": 8080},
        {"Proto": 17, "IP": "", "Port": 53, "HostIP": "", "HostPort": 5353, "HostPortEnd": 5353}
    ]));
    assert_eq!(
        ep_call(&p, "ProgramExternalConnectivity", NID, EID, pm.clone()),
        json!({})
    );
    let got: Vec<(L4Proto, u16, String)> =
        p.sw.published
            .borrow()
            .iter()
            .map(|x| (x.proto, x.host_port, x.target.clone()))
            .collect();
    assert_eq!(
        got,
        [
            (L4Proto::Tcp, 8080, "172.30.0.2:80".to_string()),
            (L4Proto::Udp, 5353, "172.30.0.2:53".to_string())
        ]
    );
    // Again (Docker may repeat it): fine, nothing changes.
    assert_eq!(
        ep_call(&p, "ProgramExternalConnectivity", NID, EID, pm),
        json!({})
    );
    // The second container wants 9090 and 8080: 8080 is taken, 9090 is undone.
    let pm2 = portmap(json!([
        {"Proto": 6, "Port": 80, "HostPort": 9090},
        {"Proto": 6, "Port": 80, "HostPort": 8080}
    ]));
    let r = ep_call(&p, "ProgramExternalConnectivity", NID, EID2, pm2);
    assert_eq!(
        err(&r),
        Some("vswitch: cannot publish tcp/8080: tcp/8080 is already published")
    );
    assert_eq!(p.sw.published.borrow().len(), 2);
    // No host port.
    let r = ep_call(
        &p,
        "ProgramExternalConnectivity",
        NID,
        EID2,
        portmap(json!([{"Proto": 6, "Port": 80, "HostPort": 0}])),
    );
    assert_eq!(
        err(&r),
        Some("vswitch: give a host port (-p HOSTPORT:PORT)")
    );
    let r = ep_call(
        &p,
        "ProgramExternalConnectivity",
        NID,
        EID2,
        portmap(json!([{"Proto": 132, "Port": 80, "HostPort": 80}])),
    );
    assert!(err(&r).unwrap().contains("SCTP"));
    // A port for one host address opens nowhere else: the uplink's own address is
    // taken, any other refused.
    let on = |a: &str| portmap(json!([{"Proto": 6, "Port": 80, "HostIP": a, "HostPort": 6060}]));
    let r = ep_call(
        &p,
        "ProgramExternalConnectivity",
        NID,
        EID2,
        on("127.0.0.1"),
    );
    assert_eq!(
        err(&r),
        Some(
            "vswitch: -p 127.0.0.1:6060: ports are published on the uplink's address only \
             (no uplink set); give no host address or that one"
        )
    );
    *p.sw.uplink.borrow_mut() = Some(ctl::UplinkInfo {
        iface: "eth1".into(),
        ip: "198.51.100.2/24".into(),
        gw: None,
        mac: "02:00:00:00:00:01".into(),
        state: "up".into(),
        reason: None,
    });
    let r = ep_call(
        &p,
        "ProgramExternalConnectivity",
        NID,
        EID2,
        on("198.51.100.9"),
    );
    assert!(err(&r).unwrap().contains("(198.51.100.2)"), "{r}");
    assert_eq!(p.sw.published.borrow().len(), 2);
    let r = ep_call(
        &p,
        "ProgramExternalConnectivity",
        NID,
        EID2,
        on("198.51.100.2"),
    );
    assert_eq!(r, json!({}));
    assert!(p
        .sw
        .published
        .borrow()
        .iter()
        .any(|x| x.host_port == 6060 && x.target == "172.30.0.3:80"));
    p.sw.published.borrow_mut().retain(|x| x.host_port != 6060);
    // Revoke: every port of that endpoint goes, the others stay.
    p.sw.published.borrow_mut().push(PublishedInfo {
        proto: L4Proto::Tcp,
        host_port: 7070,
        target: "172.30.0.3:80".into(),
    });
    assert_eq!(
        ep_call(&p, "RevokeExternalConnectivity", NID, EID, json!({})),
        json!({})
    );
    let left: Vec<u16> =
        p.sw.published
            .borrow()
            .iter()
            .map(|x| x.host_port)
            .collect();
    assert_eq!(left, [7070]);
    // Deleting the network takes whatever still points into it.
    assert_eq!(
        call(
            &p,
            "/NetworkDriver.DeleteNetwork",
            json!({"NetworkID": NID})
        ),
        json!({})
    );
    assert!(p.sw.published.borrow().is_empty());
    assert!(p.sw.bridge_names().is_empty());
    assert!(p.links.links.borrow().is_empty());
}

#[test]
fn ids_names_and_macs() {
    assert!(check_id("network", NID).is_ok());
    for bad in ["", "short", "4e2a1f0c9d8b/../", &"a".repeat(200)] {
        assert!(check_id("network", bad).is_err(), "{bad}");
    }
    assert_eq!(bridge_name(NID), "dk-4e2a1f0c9d8b");
    assert_eq!(trunk_bridge("eth1"), "dk-trunk-eth1");
    let (a, b) = endpoint_names(EID);
    assert!(a.len() <= 15 && b.len() <= 15);
    let (a, b) = patch_names(NID);
    assert!(a.len() <= 15 && b.len() <= 15);
    assert!(tunnel_name(NID).len() <= 15);
    assert_eq!(endpoint_mac(EID), endpoint_mac(EID));
    assert_ne!(endpoint_mac(EID), endpoint_mac(EID2));
    assert!(in_subnet("172.30.0.9".parse().unwrap(), "172.30.0.0/24"));
    assert!(!in_subnet("172.30.1.9".parse().unwrap(), "172.30.0.0/24"));
    assert!(!in_subnet("172.30.1.9".parse().unwrap(), "garbage"));
}

#[test]
fn never_panics_on_junk() {
    let p = plugin();
    let calls = [
        "CreateNetwork",
        "DeleteNetwork",
        "CreateEndpoint",
        "DeleteEndpoint",
        "Join",
        "Leave",
        "ProgramExternalConnectivity",
        "RevokeExternalConnectivity",
    ];
    let bodies: [&[u8]; 8] = [
        b"",
        b"null",
        b"\xff\xfe",
        b"{\"NetworkID\":null}",
        b"{\"Options\":{\"com.docker.network.generic\":[1]}}",
        b"{\"NetworkID\":\"4e2a1f0c9d8b7a6f\",\"EndpointID\":\"e1e2e3e4e5e6e7\",\"Options\":{\"com.docker.network.portmap\":{}}}",
        b"{\"NetworkID\":\"4e2a1f0c9d8b7a6f\",\"IPv4Data\":[{\"Pool\":\"x\",\"Gateway\":\"\xc3\xa9/99\"}]}",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    ];
    for c in calls {
        for b in bodies {
            let r = p.dispatch(&format!("/NetworkDriver.{c}"), b);
            if let Some(e) = err(&r) {
                assert!(e.starts_with("vswitch: ") && !e.contains('\n'), "{c}: {e}");
            }
        }
    }
}

#[test]
fn an_overlay_endpoint_keeps_the_clusters_mac() {
    let p = plugin();
    call(&p, "/NetworkDriver.CreateNetwork", json!({}));
    p.sw.call(&Request::AddBr {
        bridge: "web".into(),
    })
    .unwrap();
    p.sw.overlays.borrow_mut().push(ctl::OverlayInfo {
        name: "web".into(),
        vni: 4242,
        subnet: "10.61.0.0/24".into(),
        gateway: "10.61.0.1".into(),
        bridge: Some("web".into()),
        remotes: vec![],
        encrypted: false,
        listen_port: None,
        reserved: vec![],
    });
    // A MAC of the user's: the other nodes would send to the cluster's, and miss.
    let r = create_ep(&p, NID, EID, "10.61.0.5/24", "02:00:00:00:00:99");
    assert_eq!(
        err(&r),
        Some(
            "vswitch: --mac-address 02:00:00:00:00:99: on an overlay network the address \
             10.61.0.5 has the cluster's MAC 02:42:0a:3d:00:05; leave --mac-address out"
        )
    );
    assert!(p.sw.ports("web").is_empty());
    assert!(p.links.links.borrow().is_empty());
    // That same MAC given, or none: the cluster's.
    assert_eq!(
        create_ep(&p, NID, EID, "10.61.0.5/24", "02:42:0a:3d:00:05"),
        json!({})
    );
    assert_eq!(
        create_ep(&p, NID, EID2, "10.61.0.6/24", ""),
        json!({"Interface": {"MacAddress": "02:42:0a:3d:00:06"}})
    );
}

#[test]
fn a_failed_delete_endpoint_still_removes_what_it_can() {
    let p = plugin();
    create_net(&p, NID, "172.30.0.0/24", "172.30.0.1/24", json!({}));
    create_ep(&p, NID, EID, "172.30.0.2/24", "");
    let pm = portmap(json!([{"Proto": 6, "Port": 80, "HostPort": 8080}]));
    assert_eq!(
        ep_call(&p, "ProgramExternalConnectivity", NID, EID, pm),
        json!({})
    );
    // vswitchd refuses the unpublish: the port and the veth go all the same, and
    // Docker hears of the failure.
    p.sw.fail_on("unpublish", 1);
    let r = ep_call(&p, "DeleteEndpoint", NID, EID, json!({}));
    assert_eq!(
        err(&r),
        Some("vswitch: deleting endpoint e1e2e3e4e5e6: refused unpublish")
    );
    assert!(p.sw.ports("dk-4e2a1f0c9d8b").is_empty());
    assert!(p.links.links.borrow().is_empty());
    // What was left (the published port) is removed by the next endpoint Docker
    // gives that address: Docker gives it again only once the old one is gone.
    assert_eq!(p.sw.published.borrow().len(), 1);
    create_ep(&p, NID, EID2, "172.30.0.2/24", "");
    assert!(p.sw.published.borrow().is_empty());
}

#[test]
fn a_stale_endpoint_with_the_new_ones_address_is_removed() {
    let p = plugin();
    create_net(&p, NID, "172.30.0.0/24", "172.30.0.1/24", json!({}));
    create_ep(&p, NID, EID, "172.30.0.2/24", "");
    create_ep(&p, NID, "aa".repeat(32).as_str(), "172.30.0.3/24", "");
    let pm = portmap(json!([{"Proto": 6, "Port": 80, "HostPort": 8080}]));
    assert_eq!(
        ep_call(&p, "ProgramExternalConnectivity", NID, EID, pm),
        json!({})
    );
    // vswitchd away during DeleteEndpoint: Docker logs it and forgets the endpoint.
    p.sw.fail_on("del-port", 1);
    assert!(err(&ep_call(&p, "DeleteEndpoint", NID, EID, json!({}))).is_some());
    assert_eq!(p.sw.ports("dk-4e2a1f0c9d8b").len(), 2);
    // The address again, for another container: the stale port and its published
    // port go; the other endpoint stays.
    assert_eq!(
        create_ep(&p, NID, EID2, "172.30.0.2/24", ""),
        json!({"Interface": {"MacAddress": endpoint_mac(EID2)}})
    );
    let names: Vec<String> =
        p.sw.ports("dk-4e2a1f0c9d8b")
            .iter()
            .map(|x| x.name.clone())
            .collect();
    assert_eq!(names, ["vhaaaaaaaaaaa", "vhc1e2e3e4e5e"]);
    assert!(p.sw.published.borrow().is_empty());
    assert!(!p.links.links.borrow().contains("vhe1e2e3e4e5e"));
}
