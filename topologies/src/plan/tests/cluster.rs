//! `etcd:`, `overlays:`, `cluster:` and `attach:`.

use std::net::Ipv4Addr;

use super::{assert_err_contains, resolved};
use crate::plan::CheckKind;

const CLUSTER: &str = "\
etcd: {host: store, members: 3}
overlays:
  - {name: red, subnet: 10.61.0.0/24}
hosts:
  - {name: store, interfaces: [{name: eth0, ip: 198.51.100.254/24}]}
  - {name: hv1, interfaces: [{name: eth1, ip: 198.51.100.1/24}]}
  - {name: r1, attach: {switch: sw1, overlay: red}}
  - {name: r2, attach: {switch: sw1, overlay: red}}
switches:
  - {name: ul, bridges: [{name: br0}]}
  - {name: sw1, host: hv1, cluster: {advertise: hv1:eth1}}
links:
  - endpoints: [store, ul]
  - endpoints: [hv1, ul]
checks:
  - ping: {from: r1, to: r2}
";

#[test]
fn attached_hosts_are_aimed_at_through_a_placeholder_the_run_fills_in() {
    let p = resolved(CLUSTER);
    let e = p.etcd.as_ref().unwrap();
    assert_eq!(
        e.store_url(),
        "etcd://198.51.100.254:2379,198.51.100.254:2381,198.51.100.254:2383"
    );
    assert_eq!(
        p.switch("sw1").unwrap().cluster.as_ref().unwrap().advertise,
        Ipv4Addr::new(198, 51, 100, 1)
    );
    let ph = p.placeholder("r2").unwrap();
    assert!(crate::plan::Plan::is_placeholder(ph));
    assert_ne!(p.placeholder("r1"), Some(ph));
    assert_eq!(p.placeholder("hv1"), None);
    let CheckKind::Ping { to, .. } = &p.checks[0].kind else {
        panic!("{:?}", p.checks[0])
    };
    assert_eq!(*to, ph);
    let real = Ipv4Addr::new(10, 61, 0, 3);
    let bound = p.checks[0]
        .kind
        .map_addrs(|a| if a == ph { real } else { a });
    assert!(matches!(bound, CheckKind::Ping { to, .. } if to == real));
}

#[test]
fn cluster_mistakes_are_refused() {
    for (from, to, want) in [
        ("members: 3", "members: 2", "members 2 is not 1 or 3"),
        (
            "overlay: red}}\n  - {name: r2",
            "overlay: blue}}\n  - {name: r2",
            "unknown overlay `blue`",
        ),
        ("10.61.0.0/24}", "10.61.0.1/24}", "host bits"),
        (
            "advertise: hv1:eth1",
            "advertise: 10.9.9.9",
            "is not an address of hv1",
        ),
    ] {
        assert!(CLUSTER.contains(from), "{from}");
        assert_err_contains(&CLUSTER.replacen(from, to, 1), want);
    }
    let no_etcd = CLUSTER.replacen("etcd: {host: store, members: 3}\n", "", 1);
    assert_err_contains(&no_etcd, "needs the cluster's store: add `etcd:`");
}
