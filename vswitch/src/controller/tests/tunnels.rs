//! add-tunnel, del-tunnel, add-remote, del-remote, add-fdb, del-fdb.

use super::*;
use crate::config::{ConfigError, StaticFdb};
use crate::tunnel::VtepError;

fn add_tunnel(name: &str, vni: u32, remotes: &[Ipv4Addr]) -> Request {
    Request::AddTunnel {
        bridge: br("br0"),
        name: name.into(),
        vni,
        remotes: remotes.iter().copied().map(ip).collect(),
        local: Some(ip(NOWHERE)),
        dstport: 4789,
        vlan: None,
        encrypt: None,
    }
}

fn remote_req(add: bool, remote: Ipv4Addr) -> Request {
    let (bridge, name, remote) = (br("br0"), VX.to_string(), ip(remote));
    if add {
        Request::AddRemote {
            bridge,
            name,
            remote,
            peer: None,
        }
    } else {
        Request::DelRemote {
            bridge,
            name,
            remote,
        }
    }
}

const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

#[test]
fn add_tunnel_checks_everything_before_binding() {
    let mut l = Lab::seeded("add-tunnel-bad");
    let e = l.refused_with(
        add_tunnel("zzno-vx2", 100, &[OTHER]),
        "VNI 100 on UDP port 4789 is already tunnel zzno-vx",
    );
    assert!(matches!(
        e,
        ControlError::Config(ConfigError::VniTaken { vni: 100, .. })
    ));
    let e = l.refused_with(
        add_tunnel("zzno-vx2", 1 << 24, &[OTHER]),
        "tunnel zzno-vx2: VNI 16777216 is outside 0-16777215",
    );
    assert!(matches!(
        e,
        ControlError::Config(ConfigError::InTunnel { .. })
    ));
    l.refused_with(
        add_tunnel("zzno-vx2", 200, &[]),
        "tunnel zzno-vx2: no remote left (a tunnel keeps its last remote; del-tunnel removes it)",
    );
    l.refused_with(
        add_tunnel("zzno-vx2", 200, &[OTHER, OTHER]),
        "tunnel zzno-vx2: remote 198.51.100.2 is listed twice",
    );
    l.refused_with(
        add_tunnel("zzno-vx2", 200, &[Ipv4Addr::LOCALHOST]),
        "remote 127.0.0.1 is not a unicast address of another host",
    );
    l.refused_with(
        add_tunnel(P1, 200, &[OTHER]),
        "bridge br0 already has a port zzno-p1",
    );
    l.refused_with(
        Request::AddTunnel {
            bridge: br("br0"),
            name: "zzno-vx2".into(),
            vni: 200,
            remotes: vec![ip(OTHER)],
            local: None,
            dstport: 0,
            vlan: None,
            encrypt: None,
        },
        "tunnel zzno-vx2: UDP port 0 is not a valid destination port",
    );
}

#[test]
fn add_tunnel_is_refused_when_its_socket_cannot_be_bound() {
    // A valid tunnel on an address this host lacks: the config stays as it was.
    let mut l = Lab::seeded("add-tunnel-bind");
    let e = l.refused(add_tunnel("zzno-vx2", 200, &[OTHER]));
    assert!(
        matches!(e, ControlError::Vtep(VtepError::Bind { .. })),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("cannot bind VXLAN socket 192.0.2.1:4789: "),
        "{e}"
    );
}

#[test]
fn del_tunnel_removes_only_tunnels() {
    let mut l = Lab::seeded("del-tunnel");
    let e = l.refused_with(
        Request::DelTunnel {
            bridge: br("br0"),
            name: P1.into(),
        },
        "port zzno-p1 of bridge br0 is not a tunnel",
    );
    assert!(matches!(e, ControlError::NotATunnel { .. }));
    l.refused_with(
        Request::DelTunnel {
            bridge: br("br1"),
            name: VX.into(),
        },
        "bridge br1 has no port zzno-vx",
    );
    l.ok(Request::DelTunnel {
        bridge: br("br0"),
        name: VX.into(),
    });
    assert!(l.cfg().port_owner(VX).is_none());
    assert_eq!(l.bridge("br0").ports.len(), 2);
}

#[test]
fn add_and_del_remote_change_the_tunnels_remotes() {
    let mut l = Lab::seeded("remotes");
    l.ok(remote_req(true, OTHER));
    let remotes = |l: &Lab| l.port("br0", VX).tunnel.clone().unwrap().remotes;
    assert_eq!(remotes(&l), vec![REMOTE, OTHER]);
    // A static entry behind a remote goes with it.
    l.ok(Request::AddFdb {
        bridge: br("br0"),
        mac: "02:00:00:00:00:07".into(),
        port: VX.into(),
        remote: Some(ip(OTHER)),
        vlan: 0,
    });
    l.ok(remote_req(false, OTHER));
    assert_eq!(remotes(&l), vec![REMOTE]);
    assert!(l.bridge("br0").static_fdb.is_empty());
}

#[test]
fn add_and_del_remote_refuse_what_makes_no_sense() {
    let mut l = Lab::seeded("remotes-bad");
    let e = l.refused_with(
        remote_req(true, REMOTE),
        "198.51.100.1 is already a remote of tunnel zzno-vx",
    );
    assert!(matches!(e, ControlError::RemoteExists { .. }));
    let e = l.refused_with(
        remote_req(false, OTHER),
        "198.51.100.2 is not a remote of tunnel zzno-vx",
    );
    assert!(matches!(e, ControlError::NotARemote { .. }));
    let e = l.refused_with(
        remote_req(false, REMOTE),
        "tunnel zzno-vx: no remote left (a tunnel keeps its last remote; del-tunnel removes it)",
    );
    assert!(matches!(
        e,
        ControlError::Config(ConfigError::InTunnel { .. })
    ));
    l.refused_with(
        remote_req(true, Ipv4Addr::BROADCAST),
        "remote 255.255.255.255 is not a unicast address of another host",
    );
    l.refused_with(
        Request::AddRemote {
            bridge: br("br0"),
            name: P1.into(),
            remote: ip(OTHER),
            peer: None,
        },
        "port zzno-p1 of bridge br0 is not a tunnel",
    );
}

#[test]
fn add_fdb_adds_or_replaces_a_static_entry() {
    let mut l = Lab::seeded("add-fdb");
    let add = |mac: &str, port: &str| Request::AddFdb {
        bridge: br("br0"),
        mac: mac.into(),
        port: port.into(),
        remote: None,
        vlan: 0,
    };
    l.ok(add("02:00:00:00:00:01", P1));
    // The same MAC again moves it; the MAC is written in one form.
    l.ok(add("02-00-00-00-00-01", P2));
    // A tunnel with one remote: the entry is behind that remote.
    l.ok(add("02:00:00:00:00:02", VX));
    assert_eq!(
        l.bridge("br0").static_fdb,
        vec![
            StaticFdb {
                mac: "02:00:00:00:00:01".into(),
                port: P2.into(),
                remote: None,
                vlan: 0,
            },
            StaticFdb {
                mac: "02:00:00:00:00:02".into(),
                port: VX.into(),
                remote: Some(REMOTE),
                vlan: 0,
            },
        ]
    );
    // Static entries fit the table the MAC limit sizes: no more of them than that.
    let limit = |limit| Request::SetMacLimit {
        bridge: br("br0"),
        limit,
    };
    let two = "bridge br0: 2 static FDB entries are more than its MAC limit 1";
    l.refused_with(limit(1), two);
    l.ok(limit(2));
    let three = "bridge br0: 3 static FDB entries are more than its MAC limit 2";
    l.refused_with(add("02:00:00:00:00:03", P1), three);
    assert_eq!(l.bridge("br0").static_fdb.len(), 2);
}

#[test]
fn add_fdb_refuses_bad_macs_ports_and_remotes() {
    let mut l = Lab::seeded("add-fdb-bad");
    let add = |mac: &str, port: &str, remote: Option<Ipv4Addr>, vlan: u16| Request::AddFdb {
        bridge: br("br0"),
        mac: mac.into(),
        port: port.into(),
        remote: remote.map(ip),
        vlan,
    };
    l.refused_with(
        add("01:00:5e:00:00:01", P1, None, 0),
        "01:00:5e:00:00:01 is not a unicast MAC address",
    );
    l.refused_with(
        add("nonsense", P1, None, 0),
        r#""nonsense" is not a MAC address (expected aa:bb:cc:dd:ee:ff)"#,
    );
    l.refused_with(
        add("02:00:00:00:00:01", "zzno-x", None, 0),
        "bridge br0 has no port zzno-x",
    );
    l.refused_with(
        add("02:00:00:00:00:01", P1, None, 5000),
        "VLAN 5000 is outside 1-4094",
    );
    let e = l.refused_with(
        add("02:00:00:00:00:01", P1, Some(OTHER), 0),
        "bridge br0: port zzno-p1 is not a tunnel; --remote applies to tunnel ports",
    );
    assert!(matches!(
        e,
        ControlError::Config(ConfigError::InBridge { .. })
    ));
    l.refused_with(
        add("02:00:00:00:00:01", VX, Some(OTHER), 0),
        "bridge br0: 198.51.100.2 is not a remote of tunnel zzno-vx",
    );
    l.refused_with(
        add("02:00:00:00:00:01", VX, Some(REMOTE), 7),
        "bridge br0: tunnel zzno-vx carries untagged traffic only (VLAN 0); static entry 02:00:00:00:00:01 names VLAN 7",
    );
}

#[test]
fn del_fdb_removes_exactly_that_entry() {
    let mut l = Lab::seeded("del-fdb");
    l.ok(Request::AddFdb {
        bridge: br("br0"),
        mac: "02:00:00:00:00:01".into(),
        port: P1.into(),
        remote: None,
        vlan: 0,
    });
    let del = |mac: &str, vlan: u16| Request::DelFdb {
        bridge: br("br0"),
        mac: mac.into(),
        vlan,
    };
    let e = l.refused_with(
        del("02:00:00:00:00:01", 5),
        "bridge br0 has no static entry for 02:00:00:00:00:01 in VLAN 5",
    );
    assert!(matches!(e, ControlError::NoStaticEntry { vlan: 5, .. }));
    l.refused(del("bad", 0));
    l.refused_with(
        Request::DelFdb {
            bridge: br("nope"),
            mac: "02:00:00:00:00:01".into(),
            vlan: 0,
        },
        "no bridge named nope",
    );
    // Any spelling of the MAC names the entry.
    l.ok(del("02-00-00-00-00-01", 0));
    assert!(l.bridge("br0").static_fdb.is_empty());
}
