//! add-vlan, del-vlan, list-vlans.

use super::*;
use crate::config::ConfigError;

const ACCESS: u8 = 1;
const UNTAGGED: u8 = 2;
const PVID: u8 = 4;

fn add_vlan(port: &str, vids: &[u16]) -> Request {
    add_vlan_with(port, vids, 0)
}

/// `add-vlan` with the flags in `flags` set.
fn add_vlan_with(port: &str, vids: &[u16], flags: u8) -> Request {
    Request::AddVlan {
        bridge: br("br0"),
        port: port.into(),
        vids: vids.to_vec(),
        untagged: flags & UNTAGGED != 0,
        pvid: flags & PVID != 0,
        access: flags & ACCESS != 0,
    }
}

fn del_vlan(port: &str, vids: &[u16]) -> Request {
    Request::DelVlan {
        bridge: br("br0"),
        port: port.into(),
        vids: vids.to_vec(),
    }
}

#[test]
fn add_vlan_makes_access_and_trunk_ports() {
    let mut l = Lab::seeded("add-vlan");
    l.ok(add_vlan_with(P1, &[10], ACCESS));
    assert_eq!(l.port("br0", P1).vlans, Some(access(10)));
    l.ok(add_vlan(P2, &[30, 20]));
    l.ok(add_vlan_with(P2, &[10], UNTAGGED | PVID));
    assert_eq!(
        l.port("br0", P2).vlans,
        Some(PortVlans {
            pvid: Some(10),
            untagged: vec![10],
            tagged: vec![20, 30],
        })
    );
    // Adding a VLAN again as untagged moves it.
    l.ok(add_vlan_with(P2, &[20], UNTAGGED));
    let v = l.port("br0", P2).vlans.clone().unwrap();
    assert_eq!((v.untagged, v.tagged), (vec![10, 20], vec![30]));
}

#[test]
fn add_vlan_refuses_bad_combinations() {
    let mut l = Lab::seeded("add-vlan-bad");
    let e = l.refused_with(
        add_vlan_with(P1, &[10, 20], ACCESS),
        "--access takes exactly one VLAN",
    );
    assert_eq!(e, ControlError::AccessNeedsOneVlan);
    let e = l.refused_with(
        add_vlan_with(P1, &[10, 20], PVID),
        "--pvid takes exactly one VLAN",
    );
    assert_eq!(e, ControlError::PvidNeedsOneVlan);
    let e = l.refused_with(add_vlan(P1, &[]), "no VLAN given");
    assert_eq!(e, ControlError::NoVlanGiven);
    let e = l.refused_with(add_vlan(P1, &[4095]), "VLAN 4095 is outside 1-4094");
    assert!(matches!(e, ControlError::Invalid(_)));
    let e = l.refused_with(add_vlan("zzno-x", &[10]), "bridge br0 has no port zzno-x");
    assert!(matches!(e, ControlError::NoPort { .. }));
    l.refused_with(
        Request::AddVlan {
            bridge: br("nope"),
            port: P1.into(),
            vids: vec![10],
            untagged: false,
            pvid: false,
            access: false,
        },
        "no bridge named nope",
    );
}

#[test]
fn a_static_entry_in_another_vlan_blocks_the_change() {
    // The whole next config is checked: an access port cannot leave the VLAN its static
    // entries are in.
    let mut l = Lab::seeded("add-vlan-static");
    l.ok(add_vlan_with(P1, &[10], ACCESS));
    l.ok(Request::AddFdb {
        bridge: br("br0"),
        mac: "02:00:00:00:00:01".into(),
        port: P1.into(),
        remote: None,
        vlan: 0,
    });
    let e = l.refused_with(
        add_vlan_with(P1, &[20], ACCESS),
        "bridge br0: port zzno-p1 is not a member of VLAN 10 (static entry 02:00:00:00:00:01)",
    );
    assert!(matches!(
        e,
        ControlError::Config(ConfigError::InBridge { .. })
    ));
}

#[test]
fn del_vlan_removes_membership_and_a_pvid_with_it() {
    let mut l = Lab::seeded("del-vlan");
    l.ok(add_vlan(P2, &[20, 30]));
    l.ok(add_vlan_with(P2, &[10], UNTAGGED | PVID));
    l.ok(del_vlan(P2, &[10, 30]));
    assert_eq!(
        l.port("br0", P2).vlans,
        Some(PortVlans {
            pvid: None,
            untagged: vec![],
            tagged: vec![20],
        })
    );
    // The last one gone, the port is back to untagged.
    l.ok(del_vlan(P2, &[20]));
    assert_eq!(l.port("br0", P2).vlans, None);
}

#[test]
fn del_vlan_refuses_vlans_the_port_is_not_in() {
    let mut l = Lab::seeded("del-vlan-bad");
    l.ok(add_vlan(P1, &[10]));
    let e = l.refused_with(
        del_vlan(P1, &[10, 20]),
        "port zzno-p1 is not a member of VLAN 20",
    );
    assert_eq!(
        e,
        ControlError::NotVlanMember {
            port: P1.into(),
            vid: 20
        }
    );
    l.refused_with(del_vlan(P1, &[]), "no VLAN given");
    l.refused_with(del_vlan("zzno-x", &[10]), "bridge br0 has no port zzno-x");
}

#[test]
fn list_vlans_shows_every_port_and_refuses_an_unknown_bridge() {
    let mut l = Lab::seeded("list-vlans");
    l.ok(add_vlan_with(P1, &[10], ACCESS));
    let Data::Vlans { bridge, ports } = l.ok(Request::ListVlans { bridge: br("br0") }) else {
        panic!("list-vlans answers Vlans");
    };
    assert_eq!(bridge, "br0");
    assert_eq!(ports.len(), 3);
    assert_eq!((ports[0].port.as_str(), &ports[0].vlans), (P1, &access(10)));
    assert_eq!(ports[1].vlans, PortVlans::default());
    let e = l.refused(Request::ListVlans { bridge: br("nope") });
    assert_eq!(e, ControlError::NoBridge(br("nope")));
}

/// A port that leaves a VLAN loses what it learned there at once, as on the Linux
/// bridge; what it learned in VLANs it keeps, and other ports' entries, stay.
#[test]
fn leaving_a_vlan_flushes_what_the_port_learned_there() {
    use crate::fdb::dest;
    use crate::wire::MacAddr;
    let mut l = Lab::seeded("vlan-flush");
    let p1 = l.c.ports[P1].id;
    let p2 = l.c.ports[P2].id;
    // The bridge's FDB handle stays the same across these changes (no limit change).
    let br = l.c.bridges["br0"].clone();
    let fdb = || br.fdb.load().entries();
    let mac = |n: u8| MacAddr([2, 0, 0, 0, 0, n]);
    // Learned untagged while VLAN-unaware, then made a trunk of 10 and 20.
    br.fdb.load().learn(0, mac(1), dest(p1, 0), 1);
    br.fdb.load().learn(0, mac(2), dest(p2, 0), 1);
    l.ok(add_vlan(P1, &[10, 20]));
    let has = |e: &[crate::fdb::Entry], vlan: u16, n: u8| {
        e.iter().any(|x| x.vlan == vlan && x.mac == mac(n))
    };
    let e = fdb();
    assert!(!has(&e, 0, 1), "P1's VLAN 0 entry stayed: {e:?}");
    assert!(has(&e, 0, 2), "P2's entry went too: {e:?}");
    // Leaving VLAN 20 flushes VLAN 20 only.
    br.fdb.load().learn(10, mac(1), dest(p1, 0), 2);
    br.fdb.load().learn(20, mac(3), dest(p1, 0), 2);
    l.ok(del_vlan(P1, &[20]));
    let e = fdb();
    assert!(
        has(&e, 10, 1) && !has(&e, 20, 3),
        "after del-vlan 20: {e:?}"
    );
    // A refused change flushes nothing.
    l.refused(del_vlan(P1, &[30]));
    assert!(has(&fdb(), 10, 1));
}
