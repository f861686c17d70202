//! Cluster services changed from two hosts at the same moment: two `vswitchd` nodes on
//! one real `etcd` (the etcd-underlay lab of [`common::cluster`]) are asked, in the
//! same instant, to add services with one name or one VIP, or to publish one port to
//! two services. The clash check is part of the store's transaction (claim keys under
//! `/vswitch/v1/claims/`), so in every round exactly one request succeeds, the other
//! gets one line naming the clash, and both nodes end with the same services. Also:
//! a claim held by a record the nodes do not see refuses a change their own checks
//! passed; a claim held by nobody is taken over; a record stored before claims existed
//! loads, takes its claims when changed and is deleted with them. A VIP and a
//! container's address (`ipam/`) never coincide, even when both are asked at once.
//!
//! Addresses, inside the test's namespaces only: underlay 198.51.100.0/24, the overlay
//! 10.73.0.0/24, uplinks 192.0.2.0/24 (A) and 192.0.3.0/24 (B) towards one namespace
//! `wan`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Barrier;
use std::time::Duration;

use common::cluster::*;
use ctl::service::ServiceInfo;
use ctl::Data;
use testlab::{wait_until, Out, Switchd, SHORT};

const OV: &str = "sov";
const SUBNET: &str = "10.73.0.0/24";
const ROUNDS: u8 = 5;
/// Rounds of the overlay race, each with another lag.
const DEL_ROUNDS: u8 = 8;

/// Etcd, nodes n1 and n2 with uplinks, and overlay [`OV`] carried by both.
fn two_nodes(tag: &str) -> Lab {
    let mut lab = Lab::with_nodes(tag, 2);
    lab.wan();
    lab.overlay_everywhere(OV, SUBNET);
    lab
}

/// Runs `a` on node 0 and `b` on node 1 at the same moment.
fn race(lab: &Lab, a: &[&str], b: &[&str]) -> (Out, Out) {
    race_after(lab, a, b, Duration::ZERO)
}

/// Runs `a` on node 0 and, `lag` later, `b` on node 1 (a lag moves where `b` lands in
/// `a`'s work; the outcome must not depend on it).
fn race_after(lab: &Lab, a: &[&str], b: &[&str], lag: Duration) -> (Out, Out) {
    let go = Barrier::new(2);
    let run = |sw: &Switchd, args: &[&str], lag: Duration| {
        go.wait();
        std::thread::sleep(lag);
        sw.vsctl(args)
    };
    std::thread::scope(|s| {
        let ha = s.spawn(|| run(&lab.nodes[0].sw, a, Duration::ZERO));
        let hb = s.spawn(|| run(&lab.nodes[1].sw, b, lag));
        (ha.join().unwrap(), hb.join().unwrap())
    })
}

/// Exactly one of `outs` succeeded and the other failed with one line containing
/// `want`; the index of the winner.
fn one_wins(round: u8, what: &str, outs: &(Out, Out), want: &str) -> usize {
    let (a, b) = outs;
    assert!(
        a.success() != b.success(),
        "round {round} {what}: not exactly one success:\n{a}\n{b}"
    );
    let (winner, loser) = if a.success() { (0, b) } else { (1, a) };
    let e = loser.stderr.trim();
    assert_eq!(e.lines().count(), 1, "round {round} {what}: {loser}");
    assert!(
        e.contains(want),
        "round {round} {what}: wanted {want:?}, got {e:?}"
    );
    winner
}

fn services(sw: &Switchd) -> Vec<ServiceInfo> {
    match sw.vsctl_json(&["list-services"]) {
        Data::Services { services } => services,
        other => panic!("list-services --json returned {other:?}"),
    }
}

/// (name, VIP) of every service `sw` has, sorted.
fn names(sw: &Switchd) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = services(sw)
        .into_iter()
        .map(|s| (s.name, s.vip.to_string()))
        .collect();
    v.sort();
    v
}

fn published(sw: &Switchd) -> Vec<(u16, String)> {
    match sw.vsctl_json(&["list-published"]) {
        Data::Published { published } => {
            let mut v: Vec<(u16, String)> = published
                .into_iter()
                .map(|p| (p.host_port, p.target))
                .collect();
            v.sort();
            v
        }
        other => panic!("list-published --json returned {other:?}"),
    }
}

/// Both nodes list `want` (name, VIP) and publish `ports`.
fn both_show(lab: &Lab, want: &[(String, String)], ports: &[(u16, String)]) {
    for n in &lab.nodes {
        wait_until(
            &format!("{} lists {want:?} {ports:?}", n.name),
            SHORT,
            || names(&n.sw) == want && published(&n.sw) == ports,
        );
    }
}

fn add(name: &str, vip: &str) -> Vec<String> {
    [
        "add-service",
        OV,
        name,
        "--vip",
        vip,
        "--port",
        "udp:53",
        "--backend",
        "10.73.0.50",
        "--health",
        "none",
    ]
    .map(String::from)
    .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn two_hosts_adding_the_same_name_vip_or_port_at_once_exactly_one_wins() {
    let lab = two_nodes("r");
    let mut want: Vec<(String, String)> = Vec::new();
    let mut ports: Vec<(u16, String)> = Vec::new();
    for r in 0..ROUNDS {
        // One name, two VIPs.
        let name = format!("n{r}");
        let (va, vb) = (
            format!("10.73.0.{}", 100 + r),
            format!("10.73.0.{}", 120 + r),
        );
        let outs = race(&lab, &strs(&add(&name, &va)), &strs(&add(&name, &vb)));
        let w = one_wins(
            r,
            "same name",
            &outs,
            &format!("already has a service {name}"),
        );
        want.push((name.clone(), if w == 0 { va } else { vb }));
        want.sort();
        both_show(&lab, &want, &ports);

        // One VIP, two names.
        let vip = format!("10.73.0.{}", 140 + r);
        let (na, nb) = (format!("a{r}"), format!("b{r}"));
        let outs = race(&lab, &strs(&add(&na, &vip)), &strs(&add(&nb, &vip)));
        let w = one_wins(
            r,
            "same VIP",
            &outs,
            &format!("VIP {vip} is already service"),
        );
        let won = if w == 0 { na } else { nb };
        want.push((won.clone(), vip.clone()));
        want.sort();
        both_show(&lab, &want, &ports);

        // One port, published to two services.
        let port = (9100 + u16::from(r)).to_string();
        let (ta, tb) = (format!("service:{name}"), format!("service:{won}"));
        let outs = race(
            &lab,
            &["publish", "udp", &port, &ta],
            &["publish", "udp", &port, &tb],
        );
        let w = one_wins(
            r,
            "same port",
            &outs,
            &format!("udp/{port} is already published"),
        );
        let (svc, vip) = if w == 0 {
            let v = &want.iter().find(|(n, _)| *n == name).unwrap().1;
            (name.clone(), v.clone())
        } else {
            (won.clone(), vip.clone())
        };
        ports.push((9100 + u16::from(r), format!("service:{svc} ({vip}:53)")));
        ports.sort();
        both_show(&lab, &want, &ports);
    }
    // How many losers the store's transaction refused (the rest were refused by the
    // node's own check, having seen the winner's record already).
    let by_store: usize = lab
        .nodes
        .iter()
        .map(|n| n.sw.log_text().matches("refused by the store").count())
        .sum();
    eprintln!(
        "{} races, {by_store} losers refused by the store's transaction",
        3 * ROUNDS
    );
    // The store holds one record and one claim of each kind per winner.
    let recs = store_keys(&lab, "/vswitch/v1/services/");
    assert_eq!(recs.len(), want.len(), "{recs:?}");
    let claims = store_keys(&lab, "/vswitch/v1/claims/");
    assert_eq!(claims.len(), 2 * want.len() + ports.len(), "{claims:?}");

    // Unpublished and deleted, every claim goes with them.
    for (p, _) in &ports {
        lab.nodes[0]
            .sw
            .vsctl_ok(&["unpublish", "udp", &p.to_string()]);
    }
    for (n, _) in &want {
        lab.nodes[1].sw.vsctl_ok(&["del-service", OV, n]);
    }
    both_show(&lab, &[], &[]);
    assert!(store_keys(&lab, "/vswitch/v1/services/").is_empty());
    assert!(store_keys(&lab, "/vswitch/v1/claims/").is_empty());
}

/// The address `ipam-claim` printed (`A.B.C.D/N MAC`), without its prefix length.
fn claimed(out: &str) -> String {
    let first = out.split_whitespace().next().unwrap_or_default();
    first.split('/').next().unwrap_or_default().to_string()
}

#[test]
fn a_vip_is_never_a_containers_address_even_when_both_are_asked_at_once() {
    let lab = two_nodes("v");
    let (sw1, sw2) = (&lab.nodes[0].sw, &lab.nodes[1].sw);

    // The next address the allocator would hand out becomes a VIP: skipped after that.
    let next = claimed(&sw2.vsctl_ok(&["ipam-claim", OV, "--owner", "probe"]));
    sw2.vsctl_ok(&["ipam-release", OV, &next]);
    sw1.vsctl_ok(&strs(&add("web", &next)));
    refused(
        sw2,
        &["ipam-claim", OV, "--ip", &next, "--owner", "c1"],
        &format!("address {next} of overlay {OV} is service web's VIP"),
    );
    let got = claimed(&sw2.vsctl_ok(&["ipam-claim", OV, "--owner", "c1"]));
    assert_ne!(got, next, "the allocator handed out web's VIP");
    // And a container's address is no VIP.
    refused(
        sw1,
        &strs(&add("db", &got)),
        &format!("VIP {got} is the address of c1"),
    );

    // The same address asked for as a VIP on one node and as a container's on the
    // other at the same moment: exactly one gets it, and the store holds one claim.
    for r in 0..ROUNDS {
        let addr = format!("10.73.0.{}", 160 + r);
        let (name, owner) = (format!("s{r}"), format!("c{r}"));
        let outs = race(
            &lab,
            &strs(&add(&name, &addr)),
            &["ipam-claim", OV, "--ip", &addr, "--owner", &owner],
        );
        let w = one_wins(r, "VIP or address", &outs, &addr);
        let loser = if w == 0 { &outs.1 } else { &outs.0 };
        assert!(loser.stderr.contains("VIP"), "round {r}: {loser}");
        let vip = store_keys(&lab, &format!("/vswitch/v1/claims/vips/{OV}/{addr}"));
        let ipam = store_keys(&lab, &format!("/vswitch/v1/ipam/{OV}/{addr}"));
        assert_eq!(
            (vip.len(), ipam.len()),
            if w == 0 { (1, 0) } else { (0, 1) },
            "round {r}: {vip:?} {ipam:?}"
        );
    }

    // The same address asked for by both nodes at once: one gets it, and the other is
    // told the address is taken (not that the MAC made from it is).
    for r in 0..ROUNDS {
        let addr = format!("10.73.0.{}", 170 + r);
        let outs = race(
            &lab,
            &["ipam-claim", OV, "--ip", &addr, "--owner", "a"],
            &["ipam-claim", OV, "--ip", &addr, "--owner", "b"],
        );
        let w = one_wins(
            r,
            "address",
            &outs,
            &format!("address {addr} of overlay {OV} is taken"),
        );
        lab.nodes[w].sw.vsctl_ok(&["ipam-release", OV, &addr]);
    }
}

fn etcdctl(lab: &Lab, args: &[&str]) {
    let o = lab.etcd.as_ref().unwrap().etcdctl(args).unwrap();
    assert!(o.success(), "{o}");
}

/// The address the allocator hands out next on `sw`, and its MAC: claimed, and released
/// again.
fn next_free(sw: &Switchd) -> (String, String) {
    let out = sw.vsctl_ok(&["ipam-claim", OV, "--owner", "probe"]);
    let ip = claimed(&out);
    let mac = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    sw.vsctl_ok(&["ipam-release", OV, &ip]);
    (ip, mac)
}

/// While the store's key holds the value (written with `etcdctl`), `sw` is handed an
/// address other than `next` (held by `what`) and `check` passes; then the address is
/// released and the key deleted.
fn passed_over(
    lab: &Lab,
    sw: &Switchd,
    (key, value): (&str, &str),
    next: &str,
    what: &str,
    check: impl FnOnce(),
) {
    etcdctl(lab, &["put", key, value]);
    let got = claimed(&sw.vsctl_ok(&["ipam-claim", OV, "--owner", "c1"]));
    assert_ne!(got, next, "the allocator handed out {what}");
    check();
    sw.vsctl_ok(&["ipam-release", OV, &got]);
    etcdctl(lab, &["del", key]);
}

#[test]
fn claims_refuse_what_the_nodes_cannot_see_and_records_without_claims_still_work() {
    let lab = two_nodes("g");
    let sw = &lab.nodes[0].sw;

    // A service of an overlay that is gone is not served, so the nodes' own checks
    // pass; its claims still hold its name and VIP.
    etcdctl(
        &lab,
        &[
            "put",
            "/vswitch/v1/services/gone/ghost",
            r#"{"overlay":"gone","spec":{"name":"ghost","vip":"10.73.0.200","backends":["10.73.0.50"]}}"#,
        ],
    );
    etcdctl(
        &lab,
        &[
            "put",
            "/vswitch/v1/claims/service-names/ghost",
            "gone/ghost",
        ],
    );
    refused(
        sw,
        &strs(&add("ghost", "10.73.0.201")),
        "overlay gone already has a service ghost",
    );
    assert!(names(sw).is_empty());

    // A claim held by no record is stale: taken over.
    etcdctl(
        &lab,
        &["put", "/vswitch/v1/claims/vips/sov/10.73.0.202", "sov/old"],
    );
    sw.vsctl_ok(&strs(&add("fresh", "10.73.0.202")));
    let claims = store_keys(&lab, "/vswitch/v1/claims/vips/sov/");
    assert_eq!(
        claims,
        vec![(
            "/vswitch/v1/claims/vips/sov/10.73.0.202".to_string(),
            "sov/fresh".to_string()
        )]
    );

    // A record stored before claims holds its VIP against the allocator too: made the
    // next address the allocator would hand out, it is skipped.
    let sw2 = &lab.nodes[1].sw;
    let (next, _) = next_free(sw);
    let old = format!(
        r#"{{"overlay":"sov","spec":{{"name":"legacy3","vip":"{next}","backends":["10.73.0.50"],"health":"none"}}}}"#
    );
    passed_over(
        &lab,
        sw2,
        ("/vswitch/v1/services/sov/legacy3", &old),
        &next,
        "legacy3's VIP",
        || {
            assert!(
                store_keys(&lab, &format!("/vswitch/v1/ipam/{OV}/{next}")).is_empty(),
                "legacy3's VIP {next} is claimed as an address"
            );
        },
    );

    // A claim whose record no node can read (damaged, or another version's) still holds
    // the address its key names: the allocator skips it, and asking for it is refused.
    let (next, _) = next_free(sw);
    let key = format!("/vswitch/v1/ipam/{OV}/{next}");
    passed_over(
        &lab,
        sw2,
        (&key, "{\"overlay\":"),
        &next,
        "an address an unreadable claim holds",
        || {
            refused(
                sw2,
                &["ipam-claim", OV, "--ip", &next, "--owner", "c3"],
                &format!(
                    "address {next} of overlay {OV} is taken (by a claim this node cannot read)"
                ),
            )
        },
    );

    // The same for an endpoint record: one under the MAC the next free address would
    // get passes that address over, and that address asked for is refused.
    let (next, mac) = next_free(sw);
    let key = format!("/vswitch/v1/endpoints/{OV}/{mac}");
    passed_over(
        &lab,
        sw2,
        (&key, "[]"),
        &next,
        "an address whose MAC is taken",
        || {
            refused(
                sw2,
                &["ipam-claim", OV, "--ip", &next, "--owner", "c5"],
                &format!(
                "MAC {mac} is already an endpoint of overlay {OV} (a record this node cannot read)"
            ),
            )
        },
    );

    // A record stored before claims: served on both nodes, its claims made when it is
    // changed, and deleted with them.
    etcdctl(
        &lab,
        &[
            "put",
            "/vswitch/v1/services/sov/legacy",
            r#"{"overlay":"sov","spec":{"name":"legacy","vip":"10.73.0.203","ports":["udp:53"],"backends":["10.73.0.50"],"health":"none"}}"#,
        ],
    );
    etcdctl(
        &lab,
        &[
            "put",
            "/vswitch/v1/services/sov/legacy2",
            r#"{"overlay":"sov","spec":{"name":"legacy2","vip":"10.73.0.204","backends":["10.73.0.52"],"health":"none"}}"#,
        ],
    );
    let want = vec![
        ("fresh".to_string(), "10.73.0.202".to_string()),
        ("legacy".to_string(), "10.73.0.203".to_string()),
        ("legacy2".to_string(), "10.73.0.204".to_string()),
    ];
    both_show(&lab, &want, &[]);
    // Never changed, it is deleted as it was stored.
    sw.vsctl_ok(&["del-service", OV, "legacy2"]);
    let want = &want[..2];
    both_show(&lab, want, &[]);
    assert!(store_keys(&lab, "/vswitch/v1/claims/service-names/legacy").is_empty());
    lab.nodes[1]
        .sw
        .vsctl_ok(&["set-backends", OV, "legacy", "10.73.0.51"]);
    assert_eq!(
        store_keys(&lab, "/vswitch/v1/claims/service-names/legacy"),
        vec![(
            "/vswitch/v1/claims/service-names/legacy".to_string(),
            "sov/legacy".to_string()
        )]
    );
    lab.nodes[1].sw.vsctl_ok(&["del-service", OV, "legacy"]);
    sw.vsctl_ok(&["del-service", OV, "fresh"]);
    both_show(&lab, &[], &[]);
    // Only the ghost's records are left.
    assert_eq!(
        store_keys(&lab, "/vswitch/v1/claims/")
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        vec!["/vswitch/v1/claims/service-names/ghost".to_string()]
    );
}

/// Overlay `ov` on `subnet`, made on node 0 and carried (listed, its bridge made) by
/// every node.
fn new_overlay(lab: &Lab, ov: &str, subnet: &str) {
    lab.nodes[0]
        .sw
        .vsctl_ok(&["add-overlay", ov, "--subnet", subnet]);
    for n in &lab.nodes {
        wait_until(&format!("{} carries {ov}", n.name), SHORT, || {
            overlays(&n.sw).iter().any(|o| o.name == ov) && n.sw.show().iter().any(|b| b.name == ov)
        });
    }
}

/// `del-overlay` and `add-service` on it at the same moment: exactly one wins, and a
/// service never outlives its overlay in the store; nor does an address claimed on it
/// at the moment it is deleted. Deleted right after its last service, it takes the
/// nodes' mesh addresses with it.
#[test]
fn deleting_an_overlay_while_another_host_adds_a_service_or_claims_an_address_exactly_one_wins() {
    let lab = two_nodes("d");
    let mut by_add = 0;
    for r in 0..DEL_ROUNDS {
        let ov = format!("d{r}");
        let subnet = format!("10.74.{r}.0/24");
        new_overlay(&lab, &ov, &subnet);
        let (vip, be) = (format!("10.74.{r}.100"), format!("10.74.{r}.50"));
        let outs = race_after(
            &lab,
            &["del-overlay", &ov],
            &[
                "add-service",
                &ov,
                &format!("x{r}"),
                "--vip",
                &vip,
                "--backend",
                &be,
                "--health",
                "none",
            ],
            Duration::from_millis(u64::from(r) * 2),
        );
        let (del, add) = &outs;
        assert!(
            del.success() != add.success(),
            "round {r}: not exactly one success:\n{del}\n{add}"
        );
        let services = store_keys(&lab, &format!("/vswitch/v1/services/{ov}/"));
        let overlay = store_keys(&lab, &format!("/vswitch/v1/overlays/{ov}"));
        if add.success() {
            by_add += 1;
            assert!(del.stderr.contains("still has service"), "{del}");
            assert_eq!((services.len(), overlay.len()), (1, 1));
            lab.nodes[1]
                .sw
                .vsctl_ok(&["del-service", &ov, &format!("x{r}")]);
            // At once, whether or not the nodes claimed mesh addresses in it yet.
            lab.nodes[0].sw.vsctl_ok(&["del-overlay", &ov]);
        } else {
            assert!(
                services.is_empty(),
                "a service outlived its overlay: {services:?}"
            );
            assert!(overlay.is_empty());
        }
        for n in &lab.nodes {
            wait_until(&format!("{} drops {ov}", n.name), SHORT, || {
                !overlays(&n.sw).iter().any(|o| o.name == ov)
            });
        }
    }
    // With a service, every node holds a mesh address in the overlay; deleted right
    // after its last service, the overlay takes them with it.
    let ov = "m0";
    new_overlay(&lab, ov, "10.74.99.0/24");
    lab.nodes[1].sw.vsctl_ok(&[
        "add-service",
        ov,
        "m",
        "--vip",
        "10.74.99.100",
        "--backend",
        "10.74.99.50",
        "--health",
        "none",
    ]);
    let ipam = format!("/vswitch/v1/ipam/{ov}/");
    wait_until("both mesh addresses claimed", SHORT, || {
        store_keys(&lab, &ipam).len() == 2
    });
    lab.nodes[1].sw.vsctl_ok(&["del-service", ov, "m"]);
    lab.nodes[0].sw.vsctl_ok(&["del-overlay", ov]);
    assert!(store_keys(&lab, &ipam).is_empty());
    assert!(store_keys(&lab, &format!("/vswitch/v1/endpoints/{ov}/")).is_empty());
    for n in &lab.nodes {
        wait_until(
            &format!("{} forgets its mesh address", n.name),
            SHORT,
            || {
                n.sw.log_text()
                    .lines()
                    .any(|l| l.contains("mesh address released") && l.contains("=m0 "))
            },
        );
    }
    let again: usize = lab
        .nodes
        .iter()
        .map(|n| {
            n.sw.log_text()
                .matches("during del-overlay; looking again")
                .count()
        })
        .sum();
    eprintln!(
        "{DEL_ROUNDS} rounds, add-service won {by_add}; {again} del-overlay transactions lost to a change"
    );
    assert!(store_keys(&lab, "/vswitch/v1/services/").is_empty());
    assert!(store_keys(&lab, "/vswitch/v1/claims/").is_empty());

    // An address claimed on one node as the overlay is deleted on the other: exactly
    // one wins, and no address outlives its overlay.
    let mut by_claim = 0;
    for r in 0..ROUNDS {
        let ov = format!("e{r}");
        let subnet = format!("10.75.{r}.0/24");
        new_overlay(&lab, &ov, &subnet);
        let addr = format!("10.75.{r}.9");
        let outs = race_after(
            &lab,
            &["del-overlay", &ov],
            &["ipam-claim", &ov, "--ip", &addr, "--owner", "c"],
            Duration::from_millis(u64::from(r) * 2),
        );
        let (del, claim) = &outs;
        assert!(
            del.success() != claim.success(),
            "round {r}: not exactly one success:\n{del}\n{claim}"
        );
        let addrs = store_keys(&lab, &format!("/vswitch/v1/ipam/{ov}/"));
        if claim.success() {
            by_claim += 1;
            assert!(del.stderr.contains("still has 1 endpoint"), "{del}");
            assert_eq!(addrs.len(), 1, "{addrs:?}");
            lab.nodes[1].sw.vsctl_ok(&["ipam-release", &ov, &addr]);
            lab.nodes[0].sw.vsctl_ok(&["del-overlay", &ov]);
        } else {
            // Refused by the store, or by the node that saw the deletion already.
            assert!(
                claim.stderr.contains(&format!("no overlay named {ov}"))
                    || claim.stderr.contains(&format!("overlay {ov} is not known")),
                "{claim}"
            );
        }
        assert!(
            store_keys(&lab, &format!("/vswitch/v1/ipam/{ov}/")).is_empty(),
            "round {r}: an address outlived its overlay"
        );
    }
    eprintln!("{ROUNDS} rounds of del-overlay against ipam-claim, the claim won {by_claim}");
}
