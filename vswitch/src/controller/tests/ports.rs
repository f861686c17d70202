//! add-port and del-port.

use std::collections::BTreeMap;

use super::*;
use crate::port::PortIo;

fn add_port(bridge: &str, iface: &str, kind: PortKind) -> Request {
    Request::AddPort {
        bridge: br(bridge),
        iface: iface.into(),
        kind,
        external_ids: BTreeMap::new(),
    }
}

#[test]
fn add_port_plans_the_port_and_installing_it_commits_it() {
    // The half of add-port that opens the interface needs one; the rest is checked on
    // its own: the plan, then the commit with I/O that touches nothing.
    let mut l = Lab::seeded("add-port");
    let ids = BTreeMap::from([("container".to_string(), "c1".to_string())]);
    let pc =
        l.c.plan_port("br1", "zzno-new", PortKind::Afpacket, ids.clone())
            .unwrap();
    assert_eq!(
        pc,
        PortConf {
            external_ids: ids,
            ..port("zzno-new")
        }
    );
    l.c.install_port("br1", pc.clone(), PortIo::Vxlan(crate::port::Vxlan))
        .unwrap();
    assert_eq!(l.bridge("br1").ports, vec![pc]);
    assert_eq!(&l.saved(), l.cfg());
    assert_eq!(
        l.ok(Request::ListPorts { bridge: br("br1") }),
        Data::Ports {
            ports: vec!["zzno-new".into()]
        }
    );
}

#[test]
fn add_port_refuses_names_already_in_use() {
    let mut l = Lab::seeded("add-port-taken");
    let e = l.refused_with(
        add_port("br0", P1, PortKind::Afpacket),
        "bridge br0 already has a port zzno-p1",
    );
    assert!(matches!(e, ControlError::PortExists { .. }));
    let e = l.refused_with(
        add_port("br1", P1, PortKind::Afpacket),
        "interface zzno-p1 is already a port of bridge br0",
    );
    assert_eq!(
        e,
        ControlError::PortOfOtherBridge {
            iface: P1.into(),
            bridge: br("br0")
        }
    );
    l.refused_with(
        add_port("nope", "zzno-x", PortKind::Afpacket),
        "no bridge named nope",
    );
    l.refused_with(
        add_port("br0", "", PortKind::Afpacket),
        "interface name must not be empty",
    );
    l.refused(add_port("br0", "much-too-long-name", PortKind::Afpacket));
}

#[test]
fn add_port_refuses_the_uplink_and_kinds_made_by_other_verbs() {
    let mut cfg = seeded();
    cfg.uplink = Some(crate::config::UplinkConf {
        iface: "zzno-up".into(),
        ip: "192.0.2.10/24".into(),
        gw: None,
    });
    let mut l = Lab::with("add-port-kind", cfg);
    let e = l.refused_with(
        add_port("br0", "zzno-up", PortKind::Afpacket),
        "interface zzno-up is the uplink",
    );
    assert_eq!(e, ControlError::IsUplink("zzno-up".into()));
    let e = l.refused_with(
        add_port("br0", "zzno-x", PortKind::Vxlan),
        "vxlan ports are made with add-tunnel",
    );
    assert_eq!(e, ControlError::VxlanNeedsAddTunnel);
    let e = l.refused_with(
        add_port("br0", "zzno-x", PortKind::Gateway),
        "gateway ports are made with add-net",
    );
    assert_eq!(e, ControlError::GatewayNeedsAddNet);
}

#[test]
fn add_port_refuses_bad_or_too_many_external_ids() {
    let mut l = Lab::seeded("add-port-ids");
    let many: BTreeMap<String, String> = (0..=ctl::validate::EXTERNAL_IDS_MAX)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let e = l.refused_with(
        Request::AddPort {
            bridge: br("br0"),
            iface: "zzno-x".into(),
            kind: PortKind::Afpacket,
            external_ids: many,
        },
        "at most 16 external ids per port",
    );
    assert_eq!(e, ControlError::TooManyExternalIds(16));
    let e = l.refused(Request::AddPort {
        bridge: br("br0"),
        iface: "zzno-x".into(),
        kind: PortKind::Afpacket,
        external_ids: BTreeMap::from([(String::new(), "v".to_string())]),
    });
    assert!(matches!(e, ControlError::Invalid(_)));
}

#[test]
fn add_port_refuses_an_interface_it_cannot_use_before_changing_anything() {
    let mut l = Lab::seeded("add-port-open");
    let e = l.refused_with(
        add_port("br0", "zzno-x", PortKind::Afpacket),
        "no interface named zzno-x",
    );
    assert_eq!(e, ControlError::Open("no interface named zzno-x".into()));
    // Loopback is there but is no Ethernet device: refused after the lookup, still
    // before the config changes.
    let e = l.refused_with(
        add_port("br0", "lo", PortKind::Afpacket),
        "cannot attach lo: interface lo is not an Ethernet device",
    );
    assert!(matches!(e, ControlError::CannotAttach { .. }));
}

#[test]
fn del_port_removes_the_port_and_its_static_entries() {
    let mut l = Lab::seeded("del-port");
    l.ok(Request::AddFdb {
        bridge: br("br0"),
        mac: "02:00:00:00:00:01".into(),
        port: P1.into(),
        remote: None,
        vlan: 0,
    });
    l.ok(Request::AddFdb {
        bridge: br("br0"),
        mac: "02:00:00:00:00:02".into(),
        port: P2.into(),
        remote: None,
        vlan: 0,
    });
    l.ok(Request::DelPort {
        bridge: br("br0"),
        iface: P1.into(),
    });
    let b = l.bridge("br0");
    assert_eq!(
        b.ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        [P2, VX]
    );
    assert_eq!(b.static_fdb.len(), 1);
    assert_eq!(b.static_fdb[0].port, P2);
    assert!(!l.c.ports.contains_key(P1));
    // A tunnel is a port too.
    l.ok(Request::DelPort {
        bridge: br("br0"),
        iface: VX.into(),
    });
    assert!(l.cfg().port_owner(VX).is_none());
}

#[test]
fn del_port_refuses_a_port_of_another_or_no_bridge() {
    let mut l = Lab::seeded("del-port-bad");
    let e = l.refused_with(
        Request::DelPort {
            bridge: br("br1"),
            iface: P1.into(),
        },
        "bridge br1 has no port zzno-p1",
    );
    assert_eq!(
        e,
        ControlError::NoPort {
            bridge: br("br1"),
            port: P1.into()
        }
    );
    l.refused_with(
        Request::DelPort {
            bridge: br("nope"),
            iface: P1.into(),
        },
        "no bridge named nope",
    );
}
