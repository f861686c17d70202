//! Docker containers' names through `vswitch-docker` (a private `dockerd` on a private
//! `vswitchd`, see `common`): the plugin learns each container's name and
//! `--network-alias` aliases from the Docker API and the network's gateway answers them;
//! containers resolve each other by name and alias against the gateway (not Docker's own
//! resolver), reach each other at the addresses returned, resolve a vswitch service's
//! name to its VIP and connect through it; a removed container's names go at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{wait_until, DockerLab, IMAGE};
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
    // Names come from Docker's events, not from the plugin's rescan of every container.
    let lab = DockerLab::start_with("dns", |lab| {
        lab.plugin_args = vec!["--names-rescan".into(), "86400".into()];
        Vec::new()
    });
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
    let t0 = Instant::now();
    wait_until(
        "the containers' names in dns-show",
        Duration::from_secs(20),
        || has_all(&a_records(&lab, &br)),
    );
    eprintln!("names after {} ms", t0.elapsed().as_millis());
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

    // An address that is the service's VIP is no container's: its start fails in one
    // line from the switch, and nothing is left of its endpoint.
    let o = lab.docker(&[
        "run",
        "-d",
        "--name",
        "squatter",
        "--network",
        "net1",
        "--ip",
        VIP,
        IMAGE,
        "sleep",
        "3600",
    ]);
    assert!(!o.success(), "a container took the VIP: {o}");
    assert!(o.stderr.contains("is service web's VIP"), "{o}");
    lab.docker_ok(&["rm", "-f", "squatter"]);

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

/// Milliseconds until the A records of `br` name `name` at `ip` (`present`) or no longer
/// name `name` (`!present`), polled every 20 ms for up to 20 s; panics past that.
fn ms_until(lab: &DockerLab, br: &str, name: &str, ip: &str, present: bool) -> u128 {
    let t0 = Instant::now();
    let what = if present { "appears" } else { "goes" };
    wait_until(
        &format!("{name} {what} in dns-show {br}"),
        Duration::from_secs(20),
        || {
            let recs = a_records(lab, br);
            let has = recs.iter().any(|(n, a)| n == name && (a == ip || !present));
            has == present
        },
    );
    t0.elapsed().as_millis()
}

/// With the plugin's rescan of every container set to a day, names can come only from
/// the event stream (or from the one look when the stream opens): a container started
/// while the plugin cannot reach the Docker API yet is named once it can, containers
/// started later are named by their `connect` events, `network connect` of a running
/// container names its new endpoint, `docker rename` replaces the name on every
/// network, and disconnect, stop and removal take the names away, each within a
/// generous 20 s.
#[test]
fn names_follow_containers_at_once_without_the_rescan() {
    let lab = DockerLab::start_with("now", |lab| {
        // Not there yet: the plugin keeps trying until the test links it to dockerd's.
        lab.plugin_api = lab.dir.join("late-api.sock");
        lab.plugin_args = vec!["--names-rescan".into(), "86400".into()];
        Vec::new()
    });
    let id = lab.network_create(
        "n244",
        &["--subnet", "172.30.244.0/24", "--gateway", "172.30.244.1"],
    );
    let br = format!("dk-{}", &id[..12]);
    lab.run_container("early", &["--network", "n244"], SLEEP);
    let early = lab.ip_of("early", "n244");
    assert!(
        !a_records(&lab, &br).iter().any(|(n, _)| n == "early"),
        "named with no Docker API to learn it from"
    );
    // One more, still starting when the API becomes reachable: its endpoint is made
    // (and its connect event sent) before the plugin can open the event stream, and it
    // is not running yet when the plugin first looks.
    let t_api = std::thread::scope(|s| {
        let run = s.spawn(|| lab.run_container("starting", &["--network", "n244"], SLEEP));
        wait_until(
            "the endpoint of the starting container",
            Duration::from_secs(20),
            || {
                let (bridges, _) = lab.show();
                let eps = bridges.iter().flat_map(|b| &b.ports);
                eps.filter(|p| p.external_ids.contains_key("docker.endpoint"))
                    .count()
                    == 2
            },
        );
        std::os::unix::fs::symlink(lab.dir.join("docker.sock"), &lab.plugin_api).unwrap();
        let t = Instant::now();
        run.join().unwrap();
        t
    });
    let starting = lab.ip_of("starting", "n244");
    let t_early = ms_until(&lab, &br, "early", &early, true);
    let t_starting = ms_until(&lab, &br, "starting", &starting, true);
    let t_api = t_api.elapsed().as_millis();

    // The stream is open now (the names above came from the look that follows it).
    let mut t_run = Vec::new();
    for c in ["late1", "late2", "late3"] {
        lab.run_container(c, &["--network", "n244", "--network-alias", "svc"], SLEEP);
        let ip = lab.ip_of(c, "n244");
        t_run.push(ms_until(&lab, &br, c, &ip, true));
    }
    let id2 = lab.network_create(
        "n245",
        &["--subnet", "172.30.245.0/24", "--gateway", "172.30.245.1"],
    );
    let br2 = format!("dk-{}", &id2[..12]);
    lab.docker_ok(&["network", "connect", "--alias", "extra", "n245", "late1"]);
    let ip2 = lab.ip_of("late1", "n245");
    let t_connect = ms_until(&lab, &br2, "extra", &ip2, true);
    assert!(a_records(&lab, &br2).contains(&("late1".into(), ip2.clone())));

    // Renamed: the new name on every network, the old one gone.
    let ip1 = lab.ip_of("late1", "n244");
    lab.docker_ok(&["rename", "late1", "renamed1"]);
    let t_rename = ms_until(&lab, &br, "renamed1", &ip1, true);
    ms_until(&lab, &br2, "renamed1", &ip2, true);
    ms_until(&lab, &br, "late1", "", false);
    ms_until(&lab, &br2, "late1", "", false);
    lab.docker_ok(&["rename", "renamed1", "late1"]);
    ms_until(&lab, &br2, "late1", &ip2, true);

    lab.docker_ok(&["network", "disconnect", "n245", "late1"]);
    let t_disconnect = ms_until(&lab, &br2, "late1", "", false);
    lab.docker_ok(&["stop", "-t", "1", "late2"]);
    let t_stop = ms_until(&lab, &br, "late2", "", false);
    lab.docker_ok(&["rm", "-f", "late3"]);
    let t_rm = ms_until(&lab, &br, "late3", "", false);
    // The others keep theirs.
    let recs = a_records(&lab, &br);
    for c in ["early", "late1"] {
        assert!(
            recs.iter().any(|(n, _)| n == c),
            "{c} lost its name: {recs:?}"
        );
    }
    eprintln!(
        "names after: API reachable {t_early} ms (starting: {t_starting} ms after it ran, \
         {t_api} ms after the API); docker run {t_run:?} ms; network connect \
         {t_connect} ms; docker rename {t_rename} ms; gone after disconnect {t_disconnect} ms, \
         stop {t_stop} ms, rm {t_rm} ms"
    );
    lab.remove_everything();
}
