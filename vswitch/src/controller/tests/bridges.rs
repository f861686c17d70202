//! add-br, del-br, list-br, list-ports, show, fdb-show, set-aging, set-mac-limit,
//! set-bridge, stats.

use super::*;
use crate::config::NetConf;

#[test]
fn add_br_adds_an_empty_bridge_with_the_defaults() {
    let mut l = Lab::empty("add-br");
    assert_eq!(l.ok(Request::AddBr { bridge: br("br0") }), Data::Done);
    assert_eq!(l.cfg().bridges, vec![BridgeConf::new("br0")]);
    l.ok(Request::AddBr { bridge: br("br1") });
    assert_eq!(
        l.ok(Request::ListBr),
        Data::Bridges {
            bridges: vec![br("br0"), br("br1")]
        }
    );
}

#[test]
fn add_br_refuses_a_taken_or_bad_name() {
    let mut l = Lab::seeded("add-br-bad");
    let e = l.refused_with(
        Request::AddBr { bridge: br("br0") },
        "bridge br0 already exists",
    );
    assert_eq!(e, ControlError::BridgeExists(br("br0")));
    let e = l.refused_with(
        Request::AddBr { bridge: br("") },
        "bridge name must not be empty",
    );
    assert!(matches!(e, ControlError::Invalid(_)));
    l.refused_with(
        Request::AddBr { bridge: br("a/b") },
        r#"bridge name "a/b" contains '/' (allowed: letters, digits, - _ . @)"#,
    );
    l.refused(Request::AddBr {
        bridge: "x".repeat(33),
    });
}

#[test]
fn del_br_removes_the_bridge_with_its_ports() {
    let mut l = Lab::seeded("del-br");
    l.ok(Request::DelBr { bridge: br("br0") });
    assert_eq!(l.cfg().bridges, vec![BridgeConf::new("br1")]);
    assert!(l.cfg().port_owner(P1).is_none());
    // The names are free again.
    l.ok(Request::AddBr { bridge: br("br0") });
}

#[test]
fn del_br_refuses_an_unknown_bridge_or_one_with_published_ports() {
    let mut l = Lab::seeded("del-br-bad");
    let e = l.refused_with(
        Request::DelBr { bridge: br("nope") },
        "no bridge named nope",
    );
    assert_eq!(e, ControlError::NoBridge(br("nope")));
    l.ok(Request::AddNet {
        bridge: br("br1"),
        subnet: "10.1.0.0/24".into(),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
    });
    l.ok(Request::Publish {
        proto: ctl::L4Proto::Tcp,
        host_port: 8080,
        target: "10.1.0.2:80".parse().unwrap(),
    });
    let e = l.refused_with(
        Request::DelBr { bridge: br("br1") },
        "tcp/8080 is published to 10.1.0.2:80 in bridge br1's network; unpublish it first",
    );
    assert!(matches!(
        e,
        ControlError::StillPublished {
            host_port: 8080,
            ..
        }
    ));
    assert!(l.bridge("br1").net.is_some());
}

#[test]
fn list_ports_names_the_bridges_ports_in_order() {
    let mut l = Lab::seeded("list-ports");
    assert_eq!(
        l.ok(Request::ListPorts { bridge: br("br0") }),
        Data::Ports {
            ports: vec![P1.into(), P2.into(), VX.into()]
        }
    );
    assert_eq!(
        l.ok(Request::ListPorts { bridge: br("br1") }),
        Data::Ports { ports: vec![] }
    );
    let e = l.refused(Request::ListPorts { bridge: br("nope") });
    assert_eq!(e, ControlError::NoBridge(br("nope")));
}

#[test]
fn show_reports_the_config_with_ports_down_whose_interface_is_missing() {
    let mut l = Lab::seeded("show");
    let Data::Show {
        bridges,
        uplink,
        published,
        ..
    } = l.ok(Request::Show)
    else {
        panic!("show answers Show");
    };
    assert_eq!(uplink, None);
    assert!(published.is_empty());
    let names: Vec<&str> = bridges.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["br0", "br1"]);
    let p1 = &bridges[0].ports[0];
    assert_eq!((p1.name.as_str(), p1.state.as_str()), (P1, "down"));
    assert_eq!(p1.reason.as_deref(), Some("no interface named zzno-p1"));
    let vx = &bridges[0].ports[2];
    assert_eq!(vx.tunnel.as_ref().map(|t| t.vni), Some(100));
}

#[test]
fn fdb_show_lists_static_entries_and_refuses_an_unknown_bridge() {
    let mut l = Lab::seeded("fdb-show");
    assert_eq!(
        l.ok(Request::FdbShow { bridge: br("br0") }),
        Data::Fdb {
            bridge: br("br0"),
            entries: vec![]
        }
    );
    let e = l.refused_with(
        Request::FdbShow { bridge: br("nope") },
        "no bridge named nope",
    );
    assert_eq!(e, ControlError::NoBridge(br("nope")));
}

#[test]
fn set_aging_and_mac_limit_change_only_that_bridge() {
    let mut l = Lab::seeded("aging");
    l.ok(Request::SetAging {
        bridge: br("br1"),
        seconds: 60,
    });
    l.ok(Request::SetMacLimit {
        bridge: br("br1"),
        limit: 100,
    });
    assert_eq!(
        (l.bridge("br1").aging_secs, l.bridge("br1").mac_limit),
        (60, 100)
    );
    assert_eq!(l.bridge("br0"), &seeded().bridges[0]);
    assert_eq!(l.c.bridges["br1"].aging.load(Ordering::Relaxed), 60);
}

#[test]
fn set_aging_and_mac_limit_refuse_out_of_range_values_and_unknown_bridges() {
    let mut l = Lab::seeded("aging-bad");
    l.refused_with(
        Request::SetAging {
            bridge: br("br0"),
            seconds: 9,
        },
        "aging time 9s is outside 10..=1000000",
    );
    l.refused_with(
        Request::SetAging {
            bridge: br("nope"),
            seconds: 60,
        },
        "no bridge named nope",
    );
    l.refused_with(
        Request::SetMacLimit {
            bridge: br("br0"),
            limit: 0,
        },
        "MAC limit 0 is outside 1..=1048576",
    );
    let e = l.refused(Request::SetMacLimit {
        bridge: br("nope"),
        limit: 10,
    });
    assert_eq!(e, ControlError::NoBridge(br("nope")));
}

/// Whether the published snapshot checks headers on bridge `name`.
fn snapshot_ip_checks(l: &Lab, name: &str) -> bool {
    let id = l.c.bridges[name].id;
    let snap = l.c.shared.snapshot.load();
    snap.bridge(id).expect("bridge in the snapshot").ip_checks
}

#[test]
fn set_bridge_ip_checks_is_on_by_default_and_changes_only_that_bridge() {
    let mut l = Lab::seeded("set-bridge");
    assert!(l.bridge("br0").ip_checks && l.bridge("br1").ip_checks);
    assert!(snapshot_ip_checks(&l, "br1"));
    l.ok(Request::SetBridge {
        bridge: br("br1"),
        ip_checks: Some(false),
    });
    assert!(!l.bridge("br1").ip_checks);
    assert!(!snapshot_ip_checks(&l, "br1"));
    assert!(snapshot_ip_checks(&l, "br0"));
    assert_eq!(l.bridge("br0"), &seeded().bridges[0]);
    let Data::Show { bridges, .. } = l.ok(Request::Show) else {
        panic!("show answers Show");
    };
    let shown: Vec<(String, bool)> = bridges
        .iter()
        .map(|b| (b.name.clone(), b.ip_checks))
        .collect();
    assert_eq!(shown, vec![(br("br0"), true), (br("br1"), false)]);
    l.ok(Request::SetBridge {
        bridge: br("br1"),
        ip_checks: Some(true),
    });
    assert!(l.bridge("br1").ip_checks && snapshot_ip_checks(&l, "br1"));
}

#[test]
fn set_bridge_refuses_unknown_bridges_and_an_empty_change() {
    let mut l = Lab::seeded("set-bridge-bad");
    let e = l.refused(Request::SetBridge {
        bridge: br("nope"),
        ip_checks: Some(false),
    });
    assert_eq!(e, ControlError::NoBridge(br("nope")));
    l.refused_with(
        Request::SetBridge {
            bridge: br("br0"),
            ip_checks: None,
        },
        "set-bridge: nothing to set (settings: ip-checks=on|off)",
    );
}

#[test]
fn a_config_without_ip_checks_loads_with_them_on() {
    let c: Config = serde_json::from_str(r#"{"bridges":[{"name":"old"}]}"#).expect("loads");
    assert!(c.bridges[0].ip_checks);
}

#[test]
fn stats_covers_all_bridges_or_one_and_refuses_unknown_names() {
    let mut l = Lab::seeded("stats");
    let Data::Stats { bridges, .. } = l.ok(Request::Stats {
        bridge: None,
        port: None,
    }) else {
        panic!("stats answers Stats");
    };
    assert_eq!(bridges.len(), 2);
    let Data::Stats { bridges, .. } = l.ok(Request::Stats {
        bridge: Some(br("br0")),
        port: Some(P2.into()),
    }) else {
        panic!("stats answers Stats");
    };
    assert_eq!(bridges.len(), 1);
    assert_eq!(bridges[0].ports.len(), 1);
    assert_eq!(bridges[0].ports[0].name, P2);
    l.refused_with(
        Request::Stats {
            bridge: Some(br("nope")),
            port: None,
        },
        "no bridge named nope",
    );
    let e = l.refused_with(
        Request::Stats {
            bridge: Some(br("br1")),
            port: Some(P1.into()),
        },
        "bridge br1 has no port zzno-p1",
    );
    assert!(matches!(e, ControlError::NoPort { .. }));
}

#[test]
fn a_bridge_with_a_network_restores_and_deletes() {
    let mut cfg = seeded();
    cfg.bridges[1].net = Some(NetConf {
        subnet: "10.9.0.0/24".into(),
        gateway: Ipv4Addr::new(10, 9, 0, 1),
        domain: None,
        upstream: Vec::new(),
        records: Vec::new(),
    });
    let mut l = Lab::with("del-br-net", cfg);
    l.ok(Request::DelBr { bridge: br("br1") });
    assert!(l.cfg().bridge("br1").is_none());
}

use std::sync::atomic::Ordering;
