//! A WireGuard rekey under traffic: two `vswitchd`s (hosts A and B, each in its own
//! namespace, a veth as underlay) joined by an encrypted tunnel, and a container behind
//! each pinging the other five times a second for three minutes. WireGuard replaces a
//! session after two minutes (REKEY_AFTER_TIME) by a new handshake; the ping loses at
//! most one echo across it, and `show --json` says a new session came (its handshake
//! count grew, its last handshake is younger than the first one would be).
//!
//! It takes about 3 min 10 s of wall time, almost all of it the ping.
//!
//! Addresses: the overlay is the lab's 10.161.Y.0/24 (containers `hN`, MTU 1390); the
//! underlay 198.51.100.0/24, inside the test's namespaces only.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::overlay::{two_hosts, Vs, A_IP, B_IP};
use common::{report, Lab};

/// Pings sent each way (five a second for three minutes).
const PINGS: u32 = 900;
const WG_PORT: u16 = 51820;

/// The session state of the only remote of tunnel `vx` on `v`: (handshakes so far,
/// seconds since the last one).
fn session(v: &impl Vs) -> (u64, Option<u64>) {
    let p = v.tunnel("br0", "vx").remotes[0].peer.clone().unwrap();
    (p.handshakes, p.handshake_secs_ago)
}

/// Bridge `br0` with port `port` and an encrypted tunnel `vx` to `remote`, whose key is
/// `key`.
fn encrypted(v: &impl Vs, port: &str, remote: &str, key: &str) {
    v.vs_ok(&["add-br", "br0"]);
    v.vs_ok(&["add-port", "br0", port]);
    v.vs_ok(&[
        "add-tunnel",
        "br0",
        "vx",
        "--vni",
        "42",
        "--remote",
        remote,
        "--encrypt",
        "--public-key",
        key,
    ]);
}

/// `--- … ping statistics ---` line's transmitted and received counts.
fn sent_received(out: &str) -> (u32, u32) {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {out}"));
    let num = |what: &str| -> u32 {
        line.split(',')
            .find(|p| p.contains(what))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what} in {line}"))
    };
    (num("transmitted"), num("received"))
}

#[test]
fn a_rekey_during_three_minutes_of_ping_loses_at_most_one_echo() {
    let mut lab = Lab::new("rekey", 161);
    let (_, b) = two_hosts(&mut lab, "1390");
    lab.start_daemon();
    let (ka, kb) = (lab.public_key(), b.public_key());
    encrypted(&lab, "h1p", B_IP, &kb);
    encrypted(&b, "h2p", A_IP, &ka);
    lab.wait_ports_up("br0", &["h1p", "vx"]);
    Vs::wait_ports_up(&b, "br0", &["h2p", "vx"]);

    // A first exchange sets the session up; then three minutes each way at once.
    let warm = lab.ping_out(1, &lab.ip(2), 3, "0.2", 10);
    assert!(warm.success(), "{warm}\n{}\n{}", lab.diag(), b.diag());
    let first = (session(&lab), session(&b));
    assert!(
        first.0 .0 >= 1 && first.1 .0 >= 1,
        "no handshake counted: {first:?}"
    );
    let argv = |to: &str| testlab::traffic::ping_argv(to, PINGS, "0.2", 200);
    let back_argv = argv(&lab.ip(1));
    let back_argv: Vec<&str> = back_argv.iter().map(String::as_str).collect();
    let mut back = lab.spawn_bg(&lab.host(2).ns.clone(), "ping-back", &back_argv);
    let started = std::time::Instant::now();
    let there_argv = argv(&lab.ip(2));
    let there_argv: Vec<&str> = there_argv.iter().map(String::as_str).collect();
    let there = lab.exec_t(&lab.host(1).ns, &there_argv, Duration::from_secs(230));
    assert!(
        back.wait_timeout(Duration::from_secs(30)).is_some(),
        "the ping from h2 did not end"
    );
    let took = started.elapsed();
    let back_out = back.stdout();
    let last = (session(&lab), session(&b));
    let diag = || format!("{}\n{}", lab.diag(), b.diag());

    let (s1, r1) = sent_received(&there.stdout);
    let (s2, r2) = sent_received(&back_out);
    report(&format!(
        "rekey under ping: h1->h2 {r1}/{s1}, h2->h1 {r2}/{s2} answered in {:.0} s; \
         handshakes A {} -> {}, B {} -> {}; last handshake {:?} s / {:?} s ago",
        took.as_secs_f64(),
        first.0 .0,
        last.0 .0,
        first.1 .0,
        last.1 .0,
        last.0 .1,
        last.1 .1
    ));
    assert_eq!((s1, s2), (PINGS, PINGS), "{there}\n{back_out}");
    assert!(
        r1 + 1 >= s1 && r2 + 1 >= s2,
        "more than one echo lost: {there}\n{back_out}\n{}",
        diag()
    );
    // A new session on both ends: more handshakes, and the last one younger than the
    // ping (the first session would be three minutes old).
    assert!(
        last.0 .0 > first.0 .0 && last.1 .0 > first.1 .0,
        "no rekey: {first:?} -> {last:?}\n{}",
        diag()
    );
    let age = took.as_secs();
    assert!(
        last.0 .1.is_some_and(|a| a < age) && last.1 .1.is_some_and(|a| a < age),
        "the session is the first one: {last:?}"
    );
    for v in [&lab as &dyn common::overlay::VsDyn, &b] {
        let (d, _) = v.drops_on(WG_PORT);
        assert!(
            d.keys().all(|k| k != "wg_forged" && k != "wg_replayed"),
            "{}: drops {d:?}",
            v.name()
        );
    }
}
