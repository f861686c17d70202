//! attach and detach: every check that comes before the host is touched (making
//! interfaces and entering namespaces is for the integration tests).

use super::*;
use crate::config::AttachConf;
use crate::controller::AttachError;
use crate::sys::netns::NetnsError;

/// An `attach` request's settings, to vary one at a time.
struct A {
    ifname: String,
    ip: String,
    gw: Option<Ipv4Addr>,
    mac: Option<String>,
    mtu: Option<u32>,
    vlan: Option<u16>,
    kind: PortKind,
}

fn a() -> A {
    A {
        ifname: "eth0".into(),
        ip: "10.1.0.2/24".into(),
        gw: None,
        mac: None,
        mtu: None,
        vlan: None,
        kind: PortKind::Afpacket,
    }
}

impl A {
    fn req(self, netns: &str) -> Request {
        Request::Attach {
            bridge: br("br0"),
            netns: netns.into(),
            container: "c1".into(),
            ifname: self.ifname,
            ip: self.ip,
            gw: self.gw,
            mac: self.mac,
            mtu: self.mtu,
            vlan: self.vlan,
            kind: self.kind,
            name: None,
            aliases: Vec::new(),
        }
    }
}

fn attach(netns: &str) -> Request {
    a().req(netns)
}

#[test]
fn attach_refuses_bad_settings_before_touching_the_host() {
    let mut l = Lab::seeded("attach-bad");
    let ns = "/zzno/netns";
    let cases: Vec<(Request, &str)> = vec![
        (
            A {
                ifname: "".into(),
                ..a()
            }
            .req(ns),
            "interface name must not be empty",
        ),
        (
            A {
                ip: "10.1.0.2".into(),
                ..a()
            }
            .req(ns),
            r#""10.1.0.2" is not an IPv4 address with a prefix length (A.B.C.D/N)"#,
        ),
        (
            A {
                gw: Some(Ipv4Addr::new(10, 2, 0, 1)),
                ..a()
            }
            .req(ns),
            "gateway 10.2.0.1 is outside 10.1.0.2/24",
        ),
        (
            A {
                mac: Some("01:00:00:00:00:01".into()),
                ..a()
            }
            .req(ns),
            "01:00:00:00:00:01 is not a unicast MAC address",
        ),
        (
            A {
                mtu: Some(10),
                ..a()
            }
            .req(ns),
            "MTU 10 is outside 68-65535",
        ),
        (
            A {
                vlan: Some(0),
                ..a()
            }
            .req(ns),
            "VLAN 0 is outside 1-4094",
        ),
    ];
    for (req, text) in cases {
        let e = l.refused_with(req, text);
        assert!(
            matches!(e, ControlError::Attach(AttachError::Invalid(_))),
            "{e:?}"
        );
    }
    // Names as bounded as set-names and an ipam-claim owner's.
    let named = |container: &str, aliases: usize| {
        let mut r = attach(ns);
        if let Request::Attach {
            container: c,
            aliases: a,
            ..
        } = &mut r
        {
            *c = container.into();
            *a = (0..aliases).map(|i| format!("n{i}")).collect();
        }
        r
    };
    l.refused_with(named("c1", 33), "at most 32 names a port");
    let long = "c".repeat(257);
    for c in ["", long.as_str(), "c\n1"] {
        l.refused_with(
            named(c, 0),
            "the container must be 1-256 printable characters",
        );
    }
    let e = l.refused_with(
        A {
            kind: PortKind::Vxlan,
            ..a()
        }
        .req(ns),
        "attach makes afpacket or tap ports",
    );
    assert_eq!(e, ControlError::Attach(AttachError::WrongKind));
    let e = l.refused_with(attach("run/netns/x"), "run/netns/x is not a namespace path");
    assert!(matches!(
        e,
        ControlError::Attach(AttachError::NotANamespacePath(_))
    ));
    let e = l.refused(attach(ns));
    assert!(
        matches!(
            e,
            ControlError::Attach(AttachError::Netns(NetnsError::NoNamespace { .. }))
        ),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .starts_with("no network namespace at /zzno/netns: "));
}

#[test]
fn attach_refuses_an_interface_already_attached_in_that_namespace() {
    // Our own namespace stands in for the container's: the check needs only its
    // identity, and is refused before anything is made.
    let ns = "/proc/self/ns/net";
    let id = crate::sys::netns::id(std::path::Path::new(ns)).unwrap();
    let mut cfg = seeded();
    cfg.bridges[1].ports.push(PortConf {
        attach: Some(AttachConf {
            netns: ns.into(),
            netns_id: id,
            container: "c0".into(),
            ifname: "eth0".into(),
            ip: "10.1.0.2/24".into(),
            gw: None,
            mac: None,
            mtu: None,
            name: None,
            aliases: Vec::new(),
        }),
        ..port("zzno-va")
    });
    let mut l = Lab::with("attach-twice", cfg);
    let e = l.refused_with(attach(ns), "c1 already has eth0 attached (port zzno-va)");
    assert!(matches!(
        e,
        ControlError::Attach(AttachError::AlreadyAttached { .. })
    ));
}

#[test]
fn detach_removes_the_attached_port_and_refuses_what_is_not_attached() {
    let mut cfg = seeded();
    cfg.bridges[0].ports.push(PortConf {
        attach: Some(AttachConf {
            netns: "/zzno/netns".into(),
            netns_id: "0:0".into(),
            container: "c1".into(),
            ifname: "eth0".into(),
            ip: "10.1.0.2/24".into(),
            gw: None,
            mac: None,
            mtu: None,
            name: None,
            aliases: Vec::new(),
        }),
        ..port("zzno-va")
    });
    let mut l = Lab::with("detach", cfg);
    let detach = |ifname: &str| Request::Detach {
        bridge: br("br0"),
        netns: "/zzno/netns".into(),
        ifname: ifname.into(),
        container: None,
    };
    let e = l.refused_with(
        detach("eth1"),
        "bridge br0 has no eth1 attached to /zzno/netns",
    );
    assert!(matches!(
        e,
        ControlError::Attach(AttachError::NotAttached { .. })
    ));
    l.refused_with(
        Request::Detach {
            bridge: br("nope"),
            netns: "/zzno/netns".into(),
            ifname: "eth0".into(),
            container: None,
        },
        "no bridge named nope",
    );
    // The namespace is gone: the attachment is found by its path.
    l.ok(detach("eth0"));
    assert!(l.cfg().port_owner("zzno-va").is_none());
    assert_eq!(l.bridge("br0"), &seeded().bridges[0]);
}
