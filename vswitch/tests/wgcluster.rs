//! Encrypted cluster overlays: three `vswitchd` nodes, each in its own "host" namespace
//! on one underlay (a Linux bridge in a namespace of its own, where a real `etcd`
//! listens). `add-overlay --encrypted` on one node, and every node runs an encrypted
//! tunnel (VXLAN inside WireGuard) towards the two others with the keys they published
//! in etcd, nothing else typed; containers ping across hosts while a capture of the
//! underlay sees only WireGuard messages; a node whose key file is removed comes back
//! with a new key, which the others take up by themselves.
//!
//! Addresses, inside the test's namespaces only: underlay 198.51.100.0/24 (nodes .1-.3,
//! etcd .254), the overlay the lab's 10.160.Y.0/24 (containers `hN` at .N, MTU 1390).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::ETCD_IP;
use common::overlay::{ip, overlay_mtu, Vs};
use common::{report, wait_until, Capture, Lab, Switch};
use ctl::{Data, NodeInfo, OverlayInfo};
use testlab::etcd::Etcd;

/// What an encrypted overlay leaves of a 1500-byte underlay.
const MTU: &str = "1390";
const OVERLAY: &str = "wov";
/// The first listen port the cluster hands out.
const WG_PORT: u16 = 51820;

fn vtep(n: u8) -> String {
    format!("198.51.100.{n}")
}

fn cluster_args(store: &str, n: u8) -> Vec<String> {
    common::cluster::cluster_args(store, &format!("n{n}"), &vtep(n))
}

/// Node `n`'s namespace joined to the underlay bridge `ul` of namespace `ul_ns`.
fn on_underlay(lab: &Lab, ns: &str, ul_ns: &str, n: u8) {
    let port = format!("u{n}");
    lab.veth_between(ns, "ul0", ul_ns, &port);
    ip(ul_ns, &["link", "set", &port, "master", "ul"]);
    ip(
        ns,
        &["addr", "add", &format!("{}/24", vtep(n)), "dev", "ul0"],
    );
}

fn nodes(v: &impl Vs) -> Vec<NodeInfo> {
    match v.vs_json(&["list-nodes"]) {
        Data::Nodes { nodes, .. } => nodes,
        other => panic!("list-nodes --json returned {other:?}"),
    }
}

fn overlays(v: &impl Vs) -> Vec<OverlayInfo> {
    match v.vs_json(&["list-overlays"]) {
        Data::Overlays { overlays, .. } => overlays,
        other => panic!("list-overlays --json returned {other:?}"),
    }
}

/// The peers of the overlay's tunnel on `v`: remote VTEP → public key (`show --json`).
fn peers(v: &impl Vs, vni: u32) -> BTreeMap<String, String> {
    let Data::Show { bridges, .. } = v.vs_json(&["show"]) else {
        panic!("show --json returned something else");
    };
    bridges
        .iter()
        .filter(|b| b.name == OVERLAY)
        .flat_map(|b| &b.ports)
        .filter(|p| p.name == format!("vxo{vni}"))
        .filter_map(|p| p.tunnel.as_ref())
        .flat_map(|t| &t.remotes)
        .filter_map(|r| Some((r.ip.clone(), r.peer.as_ref()?.public_key.clone())))
        .collect()
}

/// [`peers`] of node `i` (0: the lab's own daemon, else `others[i - 1]`).
fn peers_at(lab: &Lab, others: &[Switch], i: usize, vni: u32) -> BTreeMap<String, String> {
    match i {
        0 => peers(lab, vni),
        _ => peers(&others[i - 1], vni),
    }
}

/// Every frame of an underlay capture (`udp`) is a WireGuard message between two listen
/// ports: no VXLAN port, nothing of the inner traffic.
fn assert_only_wireguard(frames: &[String]) {
    let port = format!(".{WG_PORT}");
    let mut wg = 0;
    for f in frames {
        let rest = f.split_once(' ').map_or(f.as_str(), |(_, r)| r);
        assert!(
            rest.contains(&format!("{port} > "))
                && rest.contains(&format!("{port}: "))
                && !rest.contains(".4789"),
            "not a WireGuard message on the underlay: {f}"
        );
        assert!(
            !f.contains("ICMP") && !f.to_ascii_lowercase().contains("vxlan"),
            "cleartext on the underlay: {f}"
        );
        wg += 1;
    }
    assert!(wg > 0, "no WireGuard message captured: {frames:?}");
}

fn ping_ok(lab: &Lab, from: u8, to: u8, more: &dyn Fn() -> String) {
    let o = lab.ping_out(from, &lab.ip(to), 3, "0.1", 10);
    assert!(
        o.success() && o.stdout.contains(" 3 received"),
        "h{from} -> h{to}: {o}\n{}\n{}",
        lab.diag(),
        more()
    );
}

#[test]
fn an_encrypted_overlay_takes_its_keys_from_the_cluster() {
    common::require_tools(&["etcd", "etcdctl"]);
    let mut lab = Lab::new("wgcl", 160);
    let ul = lab.add_named_ns("ul");
    testlab::netns::addressed_bridge(&ul, "ul", &format!("{ETCD_IP}/24")).unwrap();
    // Dropped before the lab (declared after it): the daemons and etcd go first.
    let etcd = Etcd::start(&ul, ETCD_IP, &lab.dir.join("etcd"), None).unwrap();
    let store = etcd.store_url();

    // n1 is the lab's own daemon, n2 and n3 daemons in namespaces of their own.
    let sw = lab.sw.clone();
    on_underlay(&lab, &sw, &ul, 1);
    lab.daemon_args = cluster_args(&store, 1);
    lab.start_daemon();
    let mut others: Vec<Switch> = Vec::new();
    for n in 2..=3u8 {
        let ns = lab.add_named_ns(&format!("n{n}"));
        on_underlay(&lab, &ns, &ul, n);
        let mut s = Switch::new(
            &format!("n{n}"),
            &ns,
            &lab.dir.join(format!("n{n}")),
            common::bins(),
        );
        s.daemon_args = cluster_args(&store, n);
        s.start();
        others.push(s);
    }
    let diag = |others: &[Switch]| {
        let mut s = format!("===== etcd =====\n{}\n", etcd.log_tail());
        for o in others {
            s.push_str(&o.diag());
        }
        s
    };

    // Every node published its key: list-nodes shows each node's own.
    let keys: Vec<String> = std::iter::once(lab.public_key())
        .chain(others.iter().map(|s| s.public_key()))
        .collect();
    wait_until("n1 lists three nodes", Duration::from_secs(10), || {
        nodes(&lab).len() == 3
    });
    for (i, n) in nodes(&lab).iter().enumerate() {
        assert_eq!(n.public_key.as_deref(), Some(keys[i].as_str()), "{n:?}");
    }
    assert!(lab
        .vs_ok(&["list-nodes"])
        .contains(&format!("public-key {}", keys[2])));

    // One command on n1; every node builds its tunnel towards the two others, each
    // peer with the key that node published.
    let sub = format!("{}.0/24", lab.net);
    let gw = format!("{}.254", lab.net);
    let made = lab.vs_json(&[
        "add-overlay",
        OVERLAY,
        "--subnet",
        &sub,
        "--gateway",
        &gw,
        "--encrypted",
    ]);
    let Data::Overlays { overlays: o, .. } = made else {
        panic!("add-overlay --json returned {made:?}")
    };
    assert_eq!(
        (o[0].encrypted, o[0].listen_port),
        (true, Some(WG_PORT)),
        "{o:?}"
    );
    let vni = o[0].vni;
    let want = |me: usize| -> BTreeMap<String, String> {
        (0..3)
            .filter(|i| *i != me)
            .map(|i| (vtep(i as u8 + 1), keys[i].clone()))
            .collect()
    };
    for i in 0..3 {
        wait_until(
            &format!("n{} peers with the two others", i + 1),
            Duration::from_secs(10),
            || peers_at(&lab, &others, i, vni) == want(i),
        );
    }
    let text = others[1].vs_ok(&["list-overlays"]);
    assert!(
        text.contains(&format!("(encrypted, listen-port {WG_PORT})")),
        "{text}"
    );
    assert!(overlays(&others[0])[0].encrypted);
    // A second encrypted overlay gets a listen port of its own; a cleartext one none.
    let second = lab.vs_json(&[
        "add-overlay",
        "wov2",
        "--subnet",
        "172.18.77.0/24",
        "--encrypted",
    ]);
    let third = lab.vs_json(&["add-overlay", "cov", "--subnet", "172.18.78.0/24"]);
    for (d, want) in [(second, (true, Some(WG_PORT + 1))), (third, (false, None))] {
        let Data::Overlays { overlays: o, .. } = d else {
            panic!("add-overlay --json returned {d:?}")
        };
        assert_eq!((o[0].encrypted, o[0].listen_port), want, "{o:?}");
    }
    for name in ["wov2", "cov"] {
        lab.vs_ok(&["del-overlay", name]);
    }

    // Containers, one per node, on the overlay.
    let spots = [sw.clone(), others[0].ns.clone(), others[1].ns.clone()];
    for (i, ns) in spots.iter().enumerate() {
        let n = lab.add_host_on(ns);
        overlay_mtu(&lab, n, ns, MTU);
        let port = lab.host(n).port.clone();
        let args = ["add-port", OVERLAY, &port];
        match i {
            0 => lab.vs_ok(&args),
            _ => others[i - 1].vs_ok(&args),
        };
    }
    lab.wait_ports_up(OVERLAY, &["h1p", &format!("vxo{vni}")]);

    // Every pair pings, full-size too, and the underlay carries only WireGuard.
    let cap = Capture::start(&lab, &ul, "ul", "underlay", &["udp"]);
    let more = || diag(&others);
    for (a, b) in [(1, 2), (1, 3), (2, 3), (3, 1)] {
        ping_ok(&lab, a, b, &more);
    }
    let full = lab.exec(
        &lab.host(1).ns,
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1362",
            &lab.ip(3),
        ],
    );
    assert!(
        full.success(),
        "full-size ping h1 -> h3: {full}\n{}",
        more()
    );
    assert_only_wireguard(&cap.stop(Duration::from_millis(300)));

    // n3 loses its key file and restarts: it comes back with a new key, which n1 and
    // n2 take from the cluster; the containers reach each other again.
    others[1].stop();
    std::fs::remove_file(others[1].db.with_extension("wg.key")).unwrap();
    others[1].start();
    let new_key = others[1].public_key();
    assert_ne!(new_key, keys[2]);
    let started = std::time::Instant::now();
    for i in 0..2 {
        wait_until(
            &format!("n{} takes n3's new key", i + 1),
            Duration::from_secs(10),
            || peers_at(&lab, &others, i, vni).get(&vtep(3)) == Some(&new_key),
        );
    }
    let took = started.elapsed();
    let more = || diag(&others);
    assert!(nodes(&lab)
        .iter()
        .any(|n| n.name == "n3" && n.public_key.as_deref() == Some(new_key.as_str())));
    ping_ok(&lab, 1, 3, &more);
    ping_ok(&lab, 3, 2, &more);
    report(&format!(
        "n3's new key taken up by n1 and n2 within {} ms of its restart",
        took.as_millis()
    ));
}
