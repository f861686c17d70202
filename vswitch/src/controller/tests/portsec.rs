//! `set-port`: bindings and storm limits validated, kept, published and shown; refusals
//! change nothing.

use ctl::{Allowed, Data, PortBinding, Request};

use super::*;

fn bind(mac: &str, ips: &[&str]) -> Option<Allowed> {
    Some(Allowed::Only(PortBinding {
        mac: mac.into(),
        ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
    }))
}

fn set(port: &str, allowed: Option<Allowed>, storm_pps: Option<u32>) -> Request {
    Request::SetPort {
        port: port.into(),
        allowed,
        storm_pps,
    }
}

#[test]
fn set_port_binds_and_limits_a_port_and_any_and_off_undo_it() {
    let mut l = Lab::seeded("set-port");
    l.ok(set(
        P1,
        bind("02:AA:00:00:00:01", &["10.0.0.1", "10.0.0.2"]),
        None,
    ));
    let want = PortBinding {
        mac: "02:aa:00:00:00:01".into(),
        ips: vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
    };
    assert_eq!(l.port("br0", P1).allowed, Some(want.clone()));
    assert_eq!(l.port("br0", P1).storm_pps, 0);
    let id = l.c.ports[P1].id;
    let b = l.c.shared.snapshot.load().binding(id).cloned();
    assert_eq!(
        b.map(|b| (b.mac.0, b.ips.to_vec())),
        Some(([2, 0xaa, 0, 0, 0, 1], vec![[10, 0, 0, 1], [10, 0, 0, 2]]))
    );
    // The storm limit alone leaves the binding as it is.
    l.ok(set(P1, None, Some(2500)));
    assert_eq!(l.port("br0", P1).allowed, Some(want.clone()));
    assert_eq!(l.c.ports[P1].storm.rate(), 2500);
    let Data::Show { bridges, .. } = l.ok(Request::Show) else {
        panic!("show answers Show");
    };
    let p = bridges[0].ports.iter().find(|p| p.name == P1).unwrap();
    assert_eq!((p.allowed.clone(), p.storm_pps), (Some(want), 2500));
    l.ok(set(P1, Some(Allowed::Any), Some(0)));
    assert_eq!(l.port("br0", P1), &port(P1));
    assert!(l.c.shared.snapshot.load().binding(id).is_none());
    assert_eq!(l.c.ports[P1].storm.rate(), 0);
}

#[test]
fn set_port_refuses_bad_values_unknown_ports_tunnels_and_nothing() {
    let mut l = Lab::seeded("set-port-bad");
    l.refused_with(set("nope", None, Some(5)), "no port named nope");
    l.refused_with(
        set(P1, None, None),
        "set-port: nothing to set (settings: allowed=MAC[,IP…]|any, storm=PPS|off)",
    );
    l.refused(set(P1, bind("01:00:5e:00:00:01", &[]), None));
    l.refused(set(P1, bind("02:00:00:00:00:01", &["0.0.0.0"]), None));
    l.refused(set(
        P1,
        bind("02:00:00:00:00:01", &["10.0.0.1", "10.0.0.1"]),
        None,
    ));
    l.refused(set(P1, None, Some(ctl::portsec::STORM_MAX_PPS + 1)));
    l.refused(set(VX, bind("02:00:00:00:00:01", &[]), None));
    // A tunnel may have a storm limit.
    l.ok(set(VX, None, Some(100)));
}

#[test]
fn a_config_with_a_bad_binding_is_refused_at_load() {
    let mut cfg = seeded();
    cfg.bridges[0].ports[0].allowed = Some(PortBinding {
        mac: "ff:ff:ff:ff:ff:ff".into(),
        ips: vec![],
    });
    assert!(cfg.validate().is_err());
}
