//! `set-names`: names of a port's address kept, answered by the gateway's DNS, shown,
//! cleared and gone with the port; refusals change nothing.

use ctl::{Allowed, PortBinding};

use super::*;

fn names(port: &str, names: &[&str]) -> Request {
    Request::SetNames {
        port: port.into(),
        names: names.iter().map(|n| n.to_string()).collect(),
    }
}

/// `seeded` with network 10.0.0.0/24 on `br0` and `P1` bound to 10.0.0.2.
fn with_bound(tag: &str) -> Lab {
    let mut l = Lab::seeded(tag);
    l.ok(Request::AddNet {
        bridge: br("br0"),
        subnet: "10.0.0.0/24".into(),
        gateway: Ipv4Addr::new(10, 0, 0, 1),
    });
    l.ok(Request::SetPort {
        port: P1.into(),
        allowed: Some(Allowed::Only(PortBinding {
            mac: "02:00:00:00:00:02".into(),
            ips: vec![Ipv4Addr::new(10, 0, 0, 2)],
        })),
        storm_pps: None,
    });
    l
}

/// The records the gateway of `br0` holds for ports, as (name, address, port). (`dns-show`
/// lists only those of ports that are up, and the test's ports name no interface.)
fn a_records(l: &mut Lab) -> Vec<(String, String, String)> {
    let g = super::super::lock(&l.c.gateway.state);
    g.dns()
        .nets()
        .iter()
        .flat_map(|n| &n.records)
        .filter_map(|e| {
            let p = e.port.as_ref()?;
            Some((e.name.clone(), e.addr.to_string(), p.name.clone()))
        })
        .collect()
}

fn shown_names(l: &mut Lab, port: &str) -> Vec<String> {
    match l.ok(Request::Show) {
        Data::Show { bridges, .. } => bridges
            .iter()
            .flat_map(|b| &b.ports)
            .find(|p| p.name == port)
            .map(|p| p.names.clone())
            .unwrap_or_default(),
        other => panic!("show answered {other:?}"),
    }
}

#[test]
fn set_names_names_a_bound_port_until_cleared_or_deleted() {
    let mut l = with_bound("set-names");
    l.ok(names(P1, &["Web", "web-1", "web", "abcdef012345"]));
    assert_eq!(l.port("br0", P1).names, ["web", "web-1", "abcdef012345"]);
    assert_eq!(shown_names(&mut l, P1), ["web", "web-1", "abcdef012345"]);
    let rec = |n: &str| (n.to_string(), "10.0.0.2".to_string(), P1.to_string());
    assert_eq!(
        a_records(&mut l),
        [rec("web"), rec("web-1"), rec("abcdef012345")]
    );
    // Set again: the new names replace the old.
    l.ok(names(P1, &["db"]));
    assert_eq!(a_records(&mut l), [rec("db")]);
    // No names: cleared.
    l.ok(names(P1, &[]));
    assert!(a_records(&mut l).is_empty());
    assert!(shown_names(&mut l, P1).is_empty());
    // The names go with the port.
    l.ok(names(P1, &["db"]));
    l.ok(Request::DelPort {
        bridge: br("br0"),
        iface: P1.into(),
    });
    assert!(a_records(&mut l).is_empty());
}

#[test]
fn set_names_refusals_change_nothing() {
    let mut l = with_bound("set-names-bad");
    l.ok(names(P1, &["web"]));
    l.refused_with(names("nope", &["x"]), "no port named nope");
    l.refused_with(
        names(P2, &["x"]),
        &format!("port {P2} has no address to name: attach it, or bind it to one address (set-port {P2} allowed=MAC,IP)"),
    );
    l.refused_with(
        names(P1, &["bad name"]),
        "invalid name \"bad name\": only letters, digits, '-', '_' and '.' are allowed",
    );
    let many: Vec<String> = (0..33).map(|i| format!("n{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    l.refused_with(names(P1, &many), "at most 32 names a port");
    // A port of a bridge with no network.
    let mut l = Lab::seeded("set-names-nonet");
    let e = l.refused(names(P1, &["x"]));
    assert!(matches!(e, ControlError::NoNet(_)), "{e}");
}
