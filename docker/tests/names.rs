//! Docker containers' names through `vswitch-docker` (a private `dockerd` on a private
//! `vswitchd`, see `common`): the plugin learns each container's name and
//! `--network-alias` aliases from the Docker API and the network's gateway answers them;
//! containers resolve each other by name and alias against the gateway (not Docker's own
//! resolver), reach each other at the addresses returned, resolve a vswitch service's
//! name to its VIP and connect through it; a removed container's names go at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{wait_until, DockerLab};
use ctl::service::ServiceSpec;
use ctl::{Data, Request};

const HTTPD: &[&str] = &["httpd", "-f", "-p", "80", "-h", "/www"];
const SLEEP: &[&str] = &["sleep", "3600"];
const PAGE: &str = "hello from vswitch";
const GW: &str = "172.30.7.1";
const VIP: &str = "172.30.7.200";

/// The A records of bridge `br` as (name, address).
fn a_records(lab: &DockerLab, br: &str) -> Vec<(String, String)> {
    match ctl::call(&lab.sock, &Request::DnsShow { bridge: br.into() }) {
        Ok(Data::Dns(d)) => d
            .records
            .into_iter()
            .filter(|r| r.kind == "A")
            .map(|r| (r.name, r.value))
            .collect(),
        other => panic!("dns-show {br}: {other:?}"),
    }
}

/// The IPv4 addresses busybox `nslookup NAME SERVER` in container `c` printed for the
/// name (those after its `Name:` line), or None when the lookup failed.
fn lookup(lab: &DockerLab, c: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
    let o = lab.exec_in(c, &["timeout", "10", "nslookup", name, GW]);
    if !o.success() {
        return None;
    }
    let answers = o.stdout.split_once("Name:")?.1;
    let addrs: Vec<Ipv4Addr> = answers
        .lines()
        .filter(|l| l.trim_start().starts_with("Address"))
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(_, a)| a.split_whitespace().next()?.parse().ok())
        .collect();
    Some(addrs)
}

fn assert_resolves(lab: &DockerLab, c: &str, name: &str, want: &str) {
    let got = lookup(lab, c, name);
    assert_eq!(
        got,
        Some(vec![want.parse().unwrap()]),
        "{c} resolving {name} at {GW}: {}\n{}",
        lab.exec_in(c, &["nslookup", name, GW]),
        lab.show_text()
    );
}

#[test]
fn containers_resolve_names_aliases_and_a_service_at_the_gateway() {
    let Some(lab) = DockerLab::start("dns") else {
        return;
    };
    let id = lab.network_create("net1", &["--subnet", "172.30.7.0/24", "--gateway", GW]);
    let br = format!("dk-{}", &id[..12]);
    lab.run_container(
        "alpha",
        &[
            "--network",
            "net1",
            "--network-alias",
            "db",
            "--network-alias",
            "db.internal",
        ],
        HTTPD,
    );
    lab.run_container(
        "beta",
        &["--network", "net1", "--network-alias", "cache"],
        HTTPD,
    );
    let a = lab.ip_of("alpha", "net1");
    let b = lab.ip_of("beta", "net1");
    let want = [
        ("alpha", &a),
        ("db", &a),
        ("db.internal", &a),
        ("beta", &b),
        ("cache", &b),
    ];
    let has_all = |recs: &[(String, String)]| {
        want.iter()
            .all(|(n, ip)| recs.iter().any(|(rn, rip)| rn == n && rip == *ip))
    };
    wait_until(
        "the containers' names in dns-show",
        Duration::from_secs(20),
        || has_all(&a_records(&lab, &br)),
    );
    // `show` carries them on the endpoints' ports.
    let text = lab.show_text();
    assert!(text.contains("named alpha,"), "{text}");

    // By name and by alias, asked of the gateway, from each container; the address
    // returned answers.
    assert_resolves(&lab, "beta", "alpha", &a);
    assert_resolves(&lab, "beta", "db", &a);
    assert_resolves(&lab, "beta", "db.internal", &a);
    assert_resolves(&lab, "alpha", "beta", &b);
    assert_resolves(&lab, "alpha", "cache", &b);
    lab.assert_ping("beta", &a);
    lab.assert_ping("alpha", &b);

    // A vswitch service on the network's bridge: its name resolves to the VIP, and a
    // container whose resolver is the gateway fetches a page through it by name.
    let spec = ServiceSpec {
        name: "web".into(),
        vip: VIP.parse().unwrap(),
        ports: vec!["tcp:80".parse().unwrap()],
        backends: vec![a.parse().unwrap(), b.parse().unwrap()],
        mode: Default::default(),
        health: None,
        sched: Default::default(),
    };
    ctl::call(
        &lab.sock,
        &Request::AddService {
            bridge: br.clone(),
            spec,
        },
    )
    .unwrap_or_else(|e| panic!("add-service: {e}"));
    lab.run_container("client", &["--network", "net1", "--dns", GW], SLEEP);
    assert_resolves(&lab, "client", "web", VIP);
    let mut page = lab.wget("client", "http://web/");
    wait_until(
        "a page through the VIP by name",
        Duration::from_secs(15),
        || {
            page = lab.wget("client", "http://web/");
            page.stdout.contains(PAGE)
        },
    );

    // A removed container's names go with it; the others stay.
    lab.docker_ok(&["rm", "-f", "beta"]);
    wait_until("beta's names gone", Duration::from_secs(10), || {
        let recs = a_records(&lab, &br);
        !recs.iter().any(|(n, _)| n == "beta" || n == "cache")
    });
    let recs = a_records(&lab, &br);
    for (n, ip) in &want[..3] {
        assert!(
            recs.contains(&(n.to_string(), ip.to_string())),
            "{n}: {recs:?}"
        );
    }
    assert_eq!(lookup(&lab, "alpha", "cache"), None);
    assert_resolves(&lab, "client", "db", &a);
    ctl::call(
        &lab.sock,
        &Request::DelService {
            bridge: br.clone(),
            name: "web".into(),
        },
    )
    .unwrap_or_else(|e| panic!("del-service: {e}"));
    lab.remove_everything();
}
