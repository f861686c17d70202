//! Overlays from the cluster's state: bridges and tunnels made, remotes following the
//! nodes, bridges removed with their overlay, the state cached in the file; what the
//! cluster owns refused to local verbs; a local bridge never taken over.

use std::net::Ipv4Addr;

use ctl::{PortKind, Request};

use super::{br, ip, port, seeded, Lab, NOWHERE};
use crate::config::{BridgeConf, ClusterConf, Config, PortConf, TunnelConf};
use crate::controller::{overlay_port, ControlError};

const N2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const N3: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);

fn node(name: &str, vtep: Ipv4Addr) -> (String, cluster::NodeRecord) {
    (
        name.to_string(),
        cluster::NodeRecord {
            name: name.into(),
            vtep,
            started: 1,
            public_key: None,
        },
    )
}

fn overlay(name: &str, vni: u32) -> (String, cluster::OverlayRecord) {
    (
        name.to_string(),
        cluster::OverlayRecord {
            name: name.into(),
            vni,
            subnet: "10.61.0.0/24".into(),
            gateway: Ipv4Addr::new(10, 61, 0, 1),
            encrypted: false,
            listen_port: None,
        },
    )
}

fn state(nodes: &[(&str, Ipv4Addr)], overlays: &[(&str, u32)]) -> cluster::State {
    cluster::State {
        nodes: nodes.iter().map(|(n, a)| node(n, *a)).collect(),
        overlays: overlays.iter().map(|(n, v)| overlay(n, *v)).collect(),
        ..Default::default()
    }
}

fn endpoint(node: &str, ip: [u8; 4]) -> cluster::EndpointRecord {
    cluster::EndpointRecord {
        overlay: "ov1".into(),
        mac: cluster::state::mac_for(ip.into()),
        ip: ip.into(),
        node: node.into(),
        container: format!("c-{node}"),
        names: Vec::new(),
    }
}

fn with_endpoints(mut s: cluster::State, eps: &[cluster::EndpointRecord]) -> cluster::State {
    for e in eps {
        s.members
            .entry(e.overlay.clone())
            .or_default()
            .insert(e.mac.clone(), e.clone());
    }
    s
}

/// Node n1 (VTEP [`NOWHERE`], so its VXLAN socket never binds and its tunnels stay down)
/// carrying overlay `ov1` (VNI 4096) with no remote yet, and the seeded bridges.
fn member() -> Config {
    let mut cfg = seeded();
    let mut ov1 = BridgeConf::new("ov1");
    ov1.ports.push(PortConf {
        kind: PortKind::Vxlan,
        tunnel: Some(TunnelConf {
            vni: 4096,
            remotes: vec![],
            local: Some(NOWHERE),
            dstport: 4789,
            encrypt: None,
        }),
        ..port(&overlay_port(4096))
    });
    cfg.bridges.push(ov1);
    cfg.cluster = Some(ClusterConf {
        store: "etcd://198.51.100.254:2379".into(),
        node: "n1".into(),
        advertise: NOWHERE,
        ttl: 3,
        ca: None,
        cert: None,
        key: None,
        state: state(&[("n1", NOWHERE)], &[("ov1", 4096)]).into(),
        bridges: vec!["ov1".into()],
        reserved: Vec::new(),
        mesh: Vec::new(),
        published: Vec::new(),
    });
    cfg
}

fn remotes(l: &Lab, bridge: &str, vni: u32) -> Vec<Ipv4Addr> {
    l.port(bridge, &overlay_port(vni))
        .tunnel
        .as_ref()
        .map(|t| t.remotes.clone())
        .unwrap_or_default()
}

#[test]
fn remotes_follow_the_nodes_and_bridges_their_overlays() {
    let mut l = Lab::with("cluster-follow", member());
    assert!(remotes(&l, "ov1", 4096).is_empty());
    let s = state(&[("n1", NOWHERE), ("n2", N2), ("n3", N3)], &[("ov1", 4096)]);
    l.c.apply_cluster(s.clone());
    assert_eq!(remotes(&l, "ov1", 4096), [N2, N3]);
    assert_eq!(l.saved(), *l.cfg());
    assert_eq!(*l.saved().cluster.unwrap().state, s);
    // n3 gone, then n2: the tunnel keeps no remote, which only an overlay's may.
    l.c.apply_cluster(state(&[("n1", NOWHERE), ("n2", N2)], &[("ov1", 4096)]));
    assert_eq!(remotes(&l, "ov1", 4096), [N2]);
    l.c.apply_cluster(state(&[("n1", NOWHERE)], &[("ov1", 4096)]));
    assert!(remotes(&l, "ov1", 4096).is_empty());
    // A node that claims this node's own VTEP under another name is no remote.
    l.c.apply_cluster(state(&[("n1", NOWHERE), ("x", NOWHERE)], &[("ov1", 4096)]));
    assert!(remotes(&l, "ov1", 4096).is_empty());
    // Applying the same state again changes nothing.
    let before = l.cfg().clone();
    l.c.reconcile_cluster();
    assert_eq!(*l.cfg(), before);
    // Overlay gone: its bridge goes, local bridges stay.
    l.c.apply_cluster(state(&[("n1", NOWHERE)], &[]));
    assert!(l.cfg().bridge("ov1").is_none());
    assert!(l.cfg().bridge("br0").is_some() && l.cfg().bridge("br1").is_some());
    assert!(l.cfg().cluster.as_ref().unwrap().bridges.is_empty());
    assert_eq!(l.saved(), *l.cfg());
    // A new overlay gets a bridge (its tunnel waits for the VTEP to bind, here never).
    l.c.apply_cluster(state(&[("n1", NOWHERE)], &[("ov2", 5000)]));
    assert!(l.cfg().bridge("ov2").is_some());
    assert!(l.cfg().is_overlay_bridge("ov2"));
}

#[test]
fn what_the_cluster_owns_is_refused_to_local_verbs() {
    let mut l = Lab::with("cluster-owned", member());
    let vx = overlay_port(4096);
    let owned = "bridge ov1 carries overlay ov1 and follows the cluster (vsctl del-overlay ov1)";
    let e = l.refused_with(Request::DelBr { bridge: br("ov1") }, owned);
    assert!(matches!(e, ControlError::OverlayBridge(_)));
    l.refused_with(
        Request::DelTunnel {
            bridge: br("ov1"),
            name: vx.clone(),
        },
        owned,
    );
    l.refused_with(
        Request::DelPort {
            bridge: br("ov1"),
            iface: vx.clone(),
        },
        owned,
    );
    l.refused_with(
        Request::AddTunnel {
            bridge: br("ov1"),
            name: "vxmine".into(),
            vni: 77,
            remotes: vec![],
            local: Some(ip(NOWHERE)),
            dstport: 4789,
            vlan: None,
            encrypt: None,
        },
        owned,
    );
    assert!(!l.bridge("ov1").ports.iter().any(|p| p.name == "vxmine"));
    l.refused_with(
        Request::AddRemote {
            bridge: br("ov1"),
            name: vx.clone(),
            remote: ip(N2),
            peer: None,
        },
        owned,
    );
    // The cluster verbs are the daemon's, never the controller's.
    l.refused_with(
        Request::ListNodes,
        "this node is in no cluster (start vswitchd with --cluster-store)",
    );
    // Local bridges are as ever.
    l.ok(Request::DelBr { bridge: br("br1") });
}

#[test]
fn a_local_bridge_is_never_taken_by_an_overlay() {
    let mut l = Lab::with("cluster-local", member());
    let before = l.bridge("br0").clone();
    l.c.apply_cluster(state(
        &[("n1", NOWHERE), ("n2", N2)],
        &[("ov1", 4096), ("br0", 4097)],
    ));
    assert_eq!(*l.bridge("br0"), before);
    assert!(!l.cfg().is_overlay_bridge("br0"));
    assert_eq!(remotes(&l, "ov1", 4096), [N2]);
}

#[test]
fn cluster_settings_are_checked() {
    let good = member().cluster.unwrap();
    assert!(good.validate().is_ok());
    let bad = |f: &dyn Fn(&mut ClusterConf), want: &str| {
        let mut c = good.clone();
        f(&mut c);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    };
    bad(&|c| c.store = "http://x:1".into(), "must be etcd://");
    bad(&|c| c.node = "a b".into(), "bad node name");
    bad(
        &|c| c.advertise = Ipv4Addr::LOCALHOST,
        "not a unicast address",
    );
    bad(&|c| c.ttl = 1, "cluster TTL 1 is outside");
    bad(&|c| c.ca = Some("/x".into()), "need an etcds:// store");
    bad(
        &|c| c.store = "etcds://x:1".into(),
        "etcds:// needs --cluster-ca",
    );
}

/// (The integration test `cluster_ipam_…` checks the entries towards each node's VTEP
/// on bound tunnels; here the VTEP never binds.)
#[test]
fn endpoints_unreachable_are_neither_installed_nor_answered_for() {
    use crate::wire::MacAddr;
    let mut l = Lab::with("cluster-endpoints", member());
    let nodes = [("n1", NOWHERE), ("n2", N2)];
    let (e1, e2) = (
        endpoint("n1", [10, 61, 0, 2]),
        endpoint("n2", [10, 61, 0, 3]),
    );
    let s = with_endpoints(state(&nodes, &[("ov1", 4096)]), &[e1.clone(), e2.clone()]);
    l.c.apply_cluster(s.clone());
    let br = l.c.bridges["ov1"].clone();
    // This node's endpoint is answered for; n2's is not while the tunnel cannot send.
    // The overlay's gateway (served here) is answered for too, its MAC pinned.
    let table = br.suppress.load_full().unwrap();
    let gw_mac = crate::gateway::gateway_mac("ov1");
    assert_eq!(table.len(), 2);
    assert_eq!(table.get(e1.ip), e1.mac.parse::<MacAddr>().ok());
    assert_eq!(table.get(e2.ip), None);
    assert_eq!(table.get(s.overlays["ov1"].gateway), Some(gw_mac));
    assert!(!br
        .fdb
        .load()
        .entries()
        .iter()
        .any(|e| e.is_static() && e.mac != gw_mac));
    // The endpoints are cached with the state, so a restart without the store has them.
    assert_eq!(*l.saved().cluster.unwrap().state, s);
    // Gone from the state: gone from the table (the gateway stays).
    l.c.apply_cluster(state(&nodes, &[("ov1", 4096)]));
    assert_eq!(br.suppress.load_full().unwrap().len(), 1);
    assert_eq!(br.suppress.load_full().unwrap().get(e1.ip), None);
}
