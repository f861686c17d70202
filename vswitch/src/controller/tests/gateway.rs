//! add-net, del-net, set-uplink, del-uplink, publish, unpublish, list-published,
//! ct-show, ct-flush, set-ct-limit.

use std::net::SocketAddrV4;

use ctl::L4Proto;

use super::*;
use crate::config::{ConfigError, NetConf, PublishConf, UplinkConf};

const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

fn add_net(bridge: &str, subnet: &str, gateway: Ipv4Addr) -> Request {
    Request::AddNet {
        bridge: br(bridge),
        subnet: subnet.into(),
        gateway,
    }
}

fn publish(host_port: u16, target: &str) -> Request {
    Request::Publish {
        proto: L4Proto::Tcp,
        host_port,
        target: target.parse().unwrap(),
    }
}

/// `seeded` with network 10.1.0.0/24 on `br1`.
fn with_net(tag: &str) -> Lab {
    let mut l = Lab::seeded(tag);
    l.ok(add_net("br1", "10.1.0.0/24", GW));
    l
}

#[test]
fn add_net_gives_the_bridge_a_network_and_a_gateway_port() {
    let l = with_net("add-net");
    assert_eq!(
        l.bridge("br1").net,
        Some(NetConf {
            subnet: "10.1.0.0/24".into(),
            gateway: GW,
            domain: None,
            upstream: Vec::new(),
            records: Vec::new(),
        })
    );
    assert!(l
        .c
        .ports
        .contains_key(&super::super::gateway::gateway_key("br1")));
}

#[test]
fn add_net_refuses_bad_subnets_and_overlaps() {
    let mut l = with_net("add-net-bad");
    let e = l.refused_with(
        add_net("br1", "10.2.0.0/24", Ipv4Addr::new(10, 2, 0, 1)),
        "bridge br1 already has network 10.1.0.0/24 (del-net first)",
    );
    assert!(matches!(e, ControlError::NetExists { .. }));
    let e = l.refused_with(
        add_net("br0", "10.1.0.0/16", Ipv4Addr::new(10, 1, 9, 1)),
        "subnet 10.1.0.0/24 overlaps 10.1.0.0/16 of bridge br0",
    );
    assert!(matches!(
        e,
        ControlError::Config(ConfigError::SubnetOverlap { .. })
    ));
    l.refused_with(
        add_net("br0", "10.3.0.1/24", Ipv4Addr::new(10, 3, 0, 2)),
        "subnet 10.3.0.1/24 has host bits set (the network is 10.3.0.0/24)",
    );
    l.refused_with(
        add_net("br0", "10.3.0.0/24", Ipv4Addr::new(10, 4, 0, 1)),
        "gateway 10.4.0.1 is outside 10.3.0.0/24",
    );
    l.refused_with(
        add_net("nope", "10.3.0.0/24", Ipv4Addr::new(10, 3, 0, 1)),
        "no bridge named nope",
    );
}

#[test]
fn del_net_takes_the_network_away_unless_something_is_published_into_it() {
    let mut l = with_net("del-net");
    l.ok(publish(8080, "10.1.0.2:80"));
    let e = l.refused(Request::DelNet { bridge: br("br1") });
    assert!(matches!(e, ControlError::StillPublished { .. }));
    l.ok(Request::Unpublish {
        proto: L4Proto::Tcp,
        host_port: 8080,
    });
    l.ok(Request::DelNet { bridge: br("br1") });
    assert_eq!(l.bridge("br1").net, None);
    assert!(!l
        .c
        .ports
        .contains_key(&super::super::gateway::gateway_key("br1")));
    let e = l.refused_with(
        Request::DelNet { bridge: br("br1") },
        "bridge br1 has no network",
    );
    assert_eq!(e, ControlError::NoNet(br("br1")));
}

#[test]
fn set_uplink_records_the_uplink_and_del_uplink_removes_it() {
    let mut l = with_net("uplink");
    // Loopback is there (so the request is taken) but cannot serve: the uplink is
    // configured and shown down, as with any interface that cannot be opened.
    l.ok(Request::SetUplink {
        iface: "lo".into(),
        ip: "192.0.2.10/24".into(),
        gw: Some(Ipv4Addr::new(192, 0, 2, 1)),
    });
    assert_eq!(
        l.cfg().uplink,
        Some(UplinkConf {
            iface: "lo".into(),
            ip: "192.0.2.10/24".into(),
            gw: Some(Ipv4Addr::new(192, 0, 2, 1)),
        })
    );
    l.ok(Request::DelUplink);
    assert_eq!(l.cfg().uplink, None);
    let e = l.refused_with(Request::DelUplink, "there is no uplink");
    assert_eq!(e, ControlError::NoUplink);
}

#[test]
fn set_uplink_refuses_missing_interfaces_ports_and_bad_addresses() {
    let mut l = with_net("uplink-bad");
    let set = |iface: &str, ip: &str, gw: Option<Ipv4Addr>| Request::SetUplink {
        iface: iface.into(),
        ip: ip.into(),
        gw,
    };
    let e = l.refused_with(
        set("zzno-up", "192.0.2.10/24", None),
        "no interface named zzno-up",
    );
    assert_eq!(e, ControlError::NoInterface("zzno-up".into()));
    l.refused_with(
        set("lo", "10.1.0.5/16", None),
        "uplink subnet 10.1.0.0/16 overlaps network 10.1.0.0/24 of bridge br1",
    );
    l.refused_with(
        set("lo", "192.0.2.10/24", Some(Ipv4Addr::new(192, 0, 2, 10))),
        "next hop 192.0.2.10 is the uplink's own address",
    );
    l.refused_with(
        set("lo", "192.0.2.10/24", Some(Ipv4Addr::new(198, 51, 100, 1))),
        "next hop 198.51.100.1 is outside 192.0.2.10/24",
    );
    l.refused_with(
        set("lo", "192.0.2.10", None),
        r#""192.0.2.10" is not an IPv4 address with a prefix length (A.B.C.D/N)"#,
    );
}

#[test]
fn publish_and_unpublish_change_the_published_ports() {
    let mut l = with_net("publish");
    l.ok(publish(8080, "10.1.0.2:80"));
    l.ok(Request::Publish {
        proto: L4Proto::Udp,
        host_port: 8080,
        target: "10.1.0.3:53".parse().unwrap(),
    });
    assert_eq!(
        l.cfg().published,
        vec![
            PublishConf {
                proto: L4Proto::Tcp,
                host_port: 8080,
                target: SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), 80),
            },
            PublishConf {
                proto: L4Proto::Udp,
                host_port: 8080,
                target: SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 3), 53),
            },
        ]
    );
    let Data::Published { published } = l.ok(Request::ListPublished) else {
        panic!("list-published answers Published");
    };
    assert_eq!(published.len(), 2);
    assert_eq!(published[0].target, "10.1.0.2:80");
    l.ok(Request::Unpublish {
        proto: L4Proto::Udp,
        host_port: 8080,
    });
    assert_eq!(l.cfg().published.len(), 1);
    assert_eq!(l.cfg().published[0].proto, L4Proto::Tcp);
}

#[test]
fn publish_refuses_duplicates_and_targets_outside_the_networks() {
    let mut l = with_net("publish-bad");
    l.ok(publish(8080, "10.1.0.2:80"));
    let e = l.refused_with(
        publish(8080, "10.1.0.3:80"),
        "tcp/8080 is already published",
    );
    assert!(matches!(
        e,
        ControlError::Config(ConfigError::PublishedTwice { .. })
    ));
    l.refused_with(
        publish(8081, "10.9.0.2:80"),
        "target 10.9.0.2 is in no network",
    );
    l.refused_with(
        publish(8081, "10.1.0.1:80"),
        "target 10.1.0.1 is a gateway address",
    );
    l.refused_with(publish(0, "10.1.0.2:80"), "port 0 cannot be published");
    // What vsctl refuses, the daemon refuses too (a client may skip vsctl).
    l.refused_with(
        publish(8081, "10.1.0.2:0"),
        "target 10.1.0.2:0: port 0 is not a port",
    );
    for (t, a) in [("10.1.0.0:80", "10.1.0.0"), ("10.1.0.255:80", "10.1.0.255")] {
        l.refused_with(
            publish(8081, t),
            &format!("target {a} is the network or broadcast address of 10.1.0.0/24"),
        );
    }
    let e = l.refused_with(
        Request::Unpublish {
            proto: L4Proto::Udp,
            host_port: 8080,
        },
        "udp/8080 is not published",
    );
    assert!(matches!(e, ControlError::NotPublished { .. }));
}

#[test]
fn conntrack_verbs_and_the_limit() {
    let mut l = with_net("ct");
    let Data::Conntrack { entries, .. } = l.ok(Request::CtShow) else {
        panic!("ct-show answers Conntrack");
    };
    assert!(entries.is_empty());
    assert_eq!(l.ok(Request::CtFlush), Data::Done);
    l.ok(Request::SetCtLimit { limit: 1000 });
    assert_eq!(l.cfg().ct_limit, Some(1000));
    let Data::Conntrack { limit, .. } = l.ok(Request::CtShow) else {
        panic!("ct-show answers Conntrack");
    };
    assert_eq!(limit, 1000);
    let e = l.refused(Request::SetCtLimit { limit: 0 });
    assert!(matches!(e, ControlError::Invalid(_)));
    assert!(e
        .to_string()
        .starts_with("conntrack limit 0 is outside 1..="));
}
