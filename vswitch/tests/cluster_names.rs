//! Names given with `set-names` cross hosts: on a two-node cluster (the shared etcd lab,
//! `common::cluster`), names set on node n1's endpoints (a container attached with
//! `attach`, and a port bound to an address reserved with `ipam-claim`, as the Docker
//! plugin makes them) are published with the endpoint in etcd, so n2's gateway answers
//! them to a container on n2 (busybox `nslookup NAME GATEWAY`); names replaced, cleared,
//! or gone with a detach, a `del-port` and an `ipam-release` stop resolving on n2.
//!
//! Addresses, inside the test's namespaces only: underlay 198.51.100.0/24, overlay
//! 10.244.0.0/24.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::cluster::*;
use ctl::Data;
use testlab::{netns, wait_until, Switchd, SHORT};

const GW: &str = "10.244.0.1";

/// The A records of overlay `ov` on `sw` that come from node `node`: (name, address).
fn from_node(sw: &Switchd, ov: &str, node: &str) -> BTreeSet<(String, String)> {
    match sw.vsctl_json(&["dns-show", ov]) {
        Data::Dns(d) => d
            .records
            .into_iter()
            .filter(|r| r.kind == "A" && r.port == format!("node {node}"))
            .map(|r| (r.name, r.value))
            .collect(),
        other => panic!("dns-show --json returned {other:?}"),
    }
}

/// The addresses busybox `nslookup NAME GW` printed in namespace `ns` for the name, or
/// None when the lookup failed (NXDOMAIN).
fn lookup(ns: &str, name: &str) -> Option<Vec<String>> {
    let o = netns::try_exec(ns, &["/bin/busybox", "nslookup", name, GW], SHORT).unwrap();
    if !o.success() {
        return None;
    }
    let answers = o.stdout.split_once("Name:")?.1.to_string();
    Some(
        answers
            .lines()
            .filter(|l| l.trim_start().starts_with("Address"))
            .filter_map(|l| l.split_once(':'))
            .filter_map(|(_, a)| Some(a.split_whitespace().next()?.to_string()))
            .collect(),
    )
}

fn pairs(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(n, a)| (n.to_string(), a.to_string()))
        .collect()
}

#[test]
fn set_names_on_one_node_resolve_on_another_until_they_go() {
    let mut lab = Lab::with_nodes("nm", 2);
    lab.overlay_everywhere("ov1", "10.244.0.0/24");
    let (c1, c2) = (lab.name("c1"), lab.name("c2"));
    lab.ns.add(&c1);
    lab.ns.add(&c2);
    let (sw1, sw2) = (&lab.nodes[0].sw, &lab.nodes[1].sw);
    // c1 on n1 with a name from `attach`; c2 on n2 is the one that asks.
    let ip1 = sw1.vsctl_ok(&["attach", "ov1", &c1, "--mtu", "1450", "--name", "web"]);
    let ip1 = ip1.split('/').next().unwrap().to_string();
    attach_auto(sw2, "ov1", &c2);
    let port1 = sw1
        .show()
        .into_iter()
        .find(|b| b.name == "ov1")
        .and_then(|b| b.ports.into_iter().find(|p| p.attach.is_some()))
        .map(|p| p.name)
        .unwrap();
    wait_until("n2 answers web", SHORT, || {
        from_node(sw2, "ov1", "n1") == pairs(&[("web", &ip1)])
    });

    // More names on the attached endpoint, given later: n2 answers them too.
    let t = Instant::now();
    sw1.vsctl_ok(&["set-names", &port1, "api", "api.v1"]);
    wait_until("n2 answers web, api and api.v1", SHORT, || {
        from_node(sw2, "ov1", "n1") == pairs(&[("web", &ip1), ("api", &ip1), ("api.v1", &ip1)])
    });
    let t_set = t.elapsed().as_millis();
    assert_eq!(lookup(&c2, "api"), Some(vec![ip1.clone()]));
    // Replaced: the old one goes, the new one comes.
    sw1.vsctl_ok(&["set-names", &port1, "admin"]);
    wait_until("n2 answers web and admin only", SHORT, || {
        from_node(sw2, "ov1", "n1") == pairs(&[("web", &ip1), ("admin", &ip1)])
    });
    assert_eq!(lookup(&c2, "api"), None);
    assert_eq!(lookup(&c2, "admin"), Some(vec![ip1.clone()]));

    // Nobody's reservation or container passes for a node's mesh address (which
    // `del-overlay` would delete with the overlay).
    let mesh_only = "names starting with mesh: are the nodes' own mesh addresses";
    refused(sw1, &["ipam-claim", "ov1", "--owner", "mesh:n2"], mesh_only);
    let spoof = format!("mesh:{}", lab.name("c9"));
    lab.ns.add(&spoof);
    refused(sw1, &["attach", "ov1", &spoof, "--mtu", "1450"], mesh_only);
    assert!(
        !sw1.vsctl_ok(&["show"]).contains(&spoof),
        "a refused attach left a port"
    );

    // A port bound to a reserved address (what the Docker plugin makes): named by
    // `set-names` alone.
    let out = sw1.vsctl_ok(&["ipam-claim", "ov1", "--owner", "docker-like"]);
    let mut w = out.split_whitespace();
    let (ip3, mac3) = (w.next().unwrap(), w.next().unwrap().to_string());
    let ip3 = ip3.split('/').next().unwrap().to_string();
    let c3 = lab.name("c3");
    lab.ns.add(&c3);
    let n1ns = lab.nodes[0].ns.clone();
    netns::veth(&c3, "eth0", &n1ns, "d3p").unwrap();
    ip(&["-n", &c3, "link", "set", "eth0", "address", &mac3]);
    netns::addr_add(&c3, "eth0", &format!("{ip3}/24")).unwrap();
    ip(&["-n", &c3, "link", "set", "eth0", "mtu", "1450", "up"]);
    netns::link_up(&n1ns, "d3p").unwrap();
    let sw1 = &lab.nodes[0].sw;
    let sw2 = &lab.nodes[1].sw;
    sw1.vsctl_ok(&["add-port", "ov1", "d3p"]);
    sw1.vsctl_ok(&["set-port", "d3p", &format!("allowed={mac3},{ip3}")]);
    sw1.vsctl_ok(&["set-names", "d3p", "db", "db-1"]);
    wait_until("n2 answers db and db-1", SHORT, || {
        let got = from_node(sw2, "ov1", "n1");
        got.contains(&("db".into(), ip3.clone())) && got.contains(&("db-1".into(), ip3.clone()))
    });
    assert_eq!(lookup(&c2, "db-1"), Some(vec![ip3.clone()]));
    ping(&c2, &ip3);
    // Cleared, then given again, then gone with the port: n2 follows each.
    let t = Instant::now();
    sw1.vsctl_ok(&["set-names", "d3p"]);
    wait_until("db gone from n2", SHORT, || {
        !from_node(sw2, "ov1", "n1").iter().any(|(_, a)| *a == ip3)
    });
    let t_clear = t.elapsed().as_millis();
    assert_eq!(lookup(&c2, "db"), None);
    sw1.vsctl_ok(&["set-names", "d3p", "cache"]);
    wait_until("n2 answers cache", SHORT, || {
        from_node(sw2, "ov1", "n1").contains(&("cache".into(), ip3.clone()))
    });
    sw1.vsctl_ok(&["del-port", "ov1", "d3p"]);
    wait_until("cache gone from n2 with the port", SHORT, || {
        !from_node(sw2, "ov1", "n1").iter().any(|(_, a)| *a == ip3)
    });
    // The reservation is still there (Docker releases it after the endpoint) and goes
    // with `ipam-release`, whatever names it carried.
    sw1.vsctl_ok(&["ipam-release", "ov1", &ip3]);
    wait_until("the reserved address gone from the store", SHORT, || {
        store_keys(&lab, "/vswitch/v1/ipam/ov1/")
            .iter()
            .all(|(k, _)| !k.ends_with(&format!("/{ip3}")))
    });
    let sw1 = &lab.nodes[0].sw;
    let sw2 = &lab.nodes[1].sw;

    // Detach: the attached endpoint's names, from `attach` and `set-names`, go from n2,
    // and its record from the store.
    sw1.vsctl_ok(&["detach", "ov1", &c1]);
    wait_until("every n1 name gone from n2", SHORT, || {
        from_node(sw2, "ov1", "n1").is_empty()
    });
    assert_eq!(lookup(&c2, "admin"), None);
    eprintln!("on n2 after set-names on n1: names {t_set} ms, cleared {t_clear} ms");
    wait_until("c1's address gone from the store", SHORT, || {
        store_keys(&lab, "/vswitch/v1/ipam/ov1/")
            .iter()
            .all(|(k, _)| !k.ends_with(&format!("/{ip1}")))
    });
}
