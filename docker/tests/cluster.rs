//! Docker on a cluster: two hosts (namespaces), each with its own vswitchd joined to one
//! real etcd over an underlay, its own `vswitch-docker` and its own private `dockerd`.
//! One overlay is made once in the cluster; on each host `docker network create -d
//! vswitch --ipam-driver vswitch -o vswitch.overlay=ov1` makes a Docker network of it,
//! whose addresses come from the cluster's allocator (the plugin's remote IPAM driver):
//! containers on both hosts get distinct addresses, each claimed once in etcd, and ping
//! each other across the hosts, resolve each other's names at their own host's gateway;
//! `docker rm` gives the address back and takes the name away from the other host.
//!
//! Addresses, inside the test's namespaces only: underlay 198.51.100.0/24 (hosts .1 and
//! .2, etcd .254), overlay 10.71.0.0/24.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{wait_until, DockerLab};
use ctl::{Data, Request};
use testlab::etcd::Etcd;
use testlab::{netns, Namespaces};

const SLEEP: &[&str] = &["sleep", "3600"];
const ETCD_IP: &str = "198.51.100.254";

fn ip(args: &[&str]) {
    netns::ip(args)
        .and_then(|o| o.must())
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A lab on host `n` of the underlay in namespace `u`, its vswitchd a node of `store`.
fn host(n: u8, u: &str, store: &str) -> DockerLab {
    DockerLab::start_with(&format!("c{n}"), |lab| {
        let port = format!("{}u{n}", &lab.prefix[lab.prefix.len().saturating_sub(6)..]);
        netns::veth(&lab.ns, "eth1", u, &port).unwrap();
        ip(&["-n", u, "link", "set", &port, "master", "ul", "up"]);
        let vtep = format!("198.51.100.{n}");
        netns::addr_add(&lab.ns, "eth1", &format!("{vtep}/24")).unwrap();
        netns::link_up(&lab.ns, "eth1").unwrap();
        [
            "--workers",
            "1",
            "--cluster-store",
            store,
            "--cluster-advertise",
            &vtep,
            "--node",
            &format!("n{n}"),
            "--cluster-ttl",
            "5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    })
}

/// The addresses claimed in overlay ov1, with their records.
fn claims(etcd: &Etcd) -> Vec<(String, String)> {
    let o = etcd
        .etcdctl(&["get", "--prefix", "/vswitch/v1/ipam/ov1/"])
        .unwrap();
    assert!(o.success(), "{o}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| {
            (
                c[0].trim_start_matches("/vswitch/v1/ipam/ov1/").to_string(),
                c[1].to_string(),
            )
        })
        .collect()
}

#[test]
fn two_hosts_share_an_overlay_with_addresses_from_the_cluster() {
    testlab::require_tools(&["etcd", "etcdctl"]);
    let mut nss = Namespaces::new();
    let u = format!("vdcl{}-u", std::process::id());
    nss.add(&u);
    netns::addressed_bridge(&u, "ul", &format!("{ETCD_IP}/24")).unwrap();
    let dir = std::env::temp_dir().join(format!("{u}.d"));
    let etcd = Etcd::start(&u, ETCD_IP, &dir.join("etcd"), None).unwrap();
    let store = etcd.store_url();
    let a = host(1, &u, &store);
    let b = host(2, &u, &store);
    ctl::call(
        &a.sock,
        &Request::AddOverlay {
            name: "ov1".into(),
            subnet: "10.71.0.0/24".into(),
            gateway: None,
            vni: None,
            encrypted: false,
        },
    )
    .unwrap();
    wait_until("host 2 carries ov1", Duration::from_secs(10), || {
        matches!(ctl::call(&b.sock, &Request::ListOverlays),
            Ok(Data::Overlays { overlays, .. }) if overlays.iter().any(|o| o.name == "ov1" && o.bridge.is_some() && !o.remotes.is_empty()))
    });

    // The same overlay as a Docker network on each host, addresses from the cluster.
    for lab in [&a, &b] {
        lab.network_create(
            "ov",
            &[
                "--ipam-driver",
                &lab.driver,
                "--subnet",
                "10.71.0.0/24",
                "-o",
                "vswitch.overlay=ov1",
            ],
        );
    }
    // Docker's own IPAM for an overlay network would hand out addresses per host:
    // refused in one line, nothing made.
    let o = a.docker(&[
        "network",
        "create",
        "-d",
        &a.driver,
        "--subnet",
        "10.71.0.0/24",
        "-o",
        "vswitch.overlay=ov1",
        "bad",
    ]);
    assert!(!o.success(), "{o}");
    assert!(
        o.stderr
            .contains("vswitch: an overlay's addresses come from the cluster"),
        "{o}"
    );

    // Two containers per host, started on both hosts at once.
    let names = [(&a, "a1"), (&a, "a2"), (&b, "b1"), (&b, "b2")];
    std::thread::scope(|s| {
        for (lab, c) in names {
            s.spawn(move || lab.run_container(c, &["--network", "ov"], SLEEP));
        }
    });
    let ips: Vec<String> = names.iter().map(|(lab, c)| lab.ip_of(c, "ov")).collect();
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 4, "an address handed out twice: {ips:?}");
    for i in &ips {
        assert!(i.starts_with("10.71.0.") && i != "10.71.0.1", "{ips:?}");
    }
    // Each is claimed once in etcd, by the node its container runs on.
    let cl = claims(&etcd);
    assert_eq!(cl.len(), 4, "{cl:?}");
    for (k, (_, c)) in names.iter().enumerate() {
        let node = if c.starts_with('a') { "n1" } else { "n2" };
        let rec = &cl.iter().find(|(ip, _)| *ip == ips[k]).unwrap().1;
        assert!(rec.contains(&format!("\"node\":\"{node}\"")), "{rec}");
    }
    // Across the hosts, both ways.
    a.assert_ping("a1", &ips[2]);
    a.assert_ping("a2", &ips[3]);
    b.assert_ping("b1", &ips[0]);
    b.assert_ping("b2", &ips[1]);

    // Names cross the hosts: each plugin names its containers' endpoints, the names go
    // into the cluster's endpoint records, and the other host's gateway (the overlay's
    // 10.71.0.1, served on every node) answers them.
    let resolves = |lab: &DockerLab, c: &str, name: &str, ip: &str| {
        let o = lab.exec_in(c, &["timeout", "5", "nslookup", name, "10.71.0.1"]);
        o.success()
            && o.stdout.split_once("Name:").is_some_and(|(_, a)| {
                a.lines()
                    .any(|l| l.starts_with("Address") && l.trim_end().ends_with(&format!(" {ip}")))
            })
    };
    wait_until(
        "b1 resolves a1 across the hosts",
        Duration::from_secs(20),
        || resolves(&b, "b1", "a1", &ips[0]),
    );
    wait_until(
        "a1 resolves b2 across the hosts",
        Duration::from_secs(20),
        || resolves(&a, "a1", "b2", &ips[3]),
    );

    // docker rm gives the address back to the cluster, at once, and the name goes from
    // the other host's gateway.
    b.docker_ok(&["rm", "-f", "b2"]);
    wait_until(
        "b2's name gone from a's gateway",
        Duration::from_secs(20),
        || {
            !a.exec_in("a1", &["timeout", "5", "nslookup", "b2", "10.71.0.1"])
                .success()
        },
    );
    let cl = claims(&etcd);
    assert!(!cl.iter().any(|(ip, _)| *ip == ips[3]), "{cl:?}");
    assert_eq!(cl.len(), 3, "{cl:?}");
    for lab in [&a, &b] {
        let ids = lab.docker_ok(&["ps", "-aq"]);
        for id in ids.split_whitespace() {
            lab.docker_ok(&["rm", "-f", id]);
        }
        lab.docker_ok(&["network", "rm", "ov"]);
    }
    assert!(claims(&etcd).is_empty(), "{:?}", claims(&etcd));
    drop((a, b));
    drop(etcd);
    nss.remove();
    let _ = std::fs::remove_dir_all(&dir);
}
