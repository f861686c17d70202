//! Multi-host: three `vswitchd` nodes, each in its own "host" namespace, joined to one
//! real `etcd` over an underlay (veths to a shared namespace with a Linux bridge, where
//! etcd listens): joining and `list-nodes`, overlays created once and carried by every
//! node with a VXLAN port towards exactly the other nodes, containers pinging across
//! hosts, VNIs allocated once, clashes refused, a node killed with `kill -9` dropped by
//! the others within TTL + 2 s and back by itself after a restart, etcd down (cluster
//! changes refused, local commands and forwarding go on) and back; and a TLS store that
//! admits only a node with a certificate from its CA and a private key.
//!
//! Addresses, inside the test's namespaces only: underlay 198.51.100.0/24 (nodes .1-.3,
//! etcd .254), overlays 10.X.0.0/24 and 172.18.X.0/24.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::*;
use ctl::{Data, NodeInfo};
use testlab::etcd::{ClientTls, Etcd, Pki, ServerTls};
use testlab::{netns, wait_until, Switchd, SHORT};

#[test]
fn three_nodes_share_overlays_and_survive_node_and_store_failures() {
    let mut lab = Lab::with_nodes("a", 3);
    let store = lab.store();
    let vteps: Vec<String> = lab.nodes.iter().map(|n| n.vtep.clone()).collect();

    // Every node sees every node.
    for n in &lab.nodes {
        wait_until(&format!("{} lists 3 nodes up", n.name), SHORT, || {
            let ns = nodes(&n.sw);
            ns.len() == 3 && ns.iter().all(|x| x.state == "up")
        });
        let ns = nodes(&n.sw);
        let me: Vec<&NodeInfo> = ns.iter().filter(|x| x.local).collect();
        assert_eq!(me.len(), 1, "{ns:?}");
        assert_eq!(me[0].name, n.name);
        assert_eq!(me[0].vtep, n.vtep);
        let text = n.sw.vsctl_ok(&["list-nodes"]);
        assert!(text.contains("(this node)"), "{text}");
    }

    // A name is one node's: another VTEP cannot take it, and leaves nothing behind.
    let (h4, vtep4) = lab.host(4);
    let o = vswitchd_once(&lab, &h4, "dup", &cluster_args(&store, "n1", &vtep4));
    assert!(!o.success(), "{o}");
    assert!(
        o.stderr.trim().lines().count() == 1
            && o.stderr
                .contains("node name n1 is taken by the node at 198.51.100.1"),
        "{o}"
    );
    assert_eq!(nodes(&lab.nodes[1].sw).len(), 3);

    // An overlay created on n1 is carried by every node, towards the other two.
    let created = lab.nodes[0]
        .sw
        .vsctl_json(&["add-overlay", "ov1", "--subnet", "10.61.0.0/24"]);
    let Data::Overlays { overlays: o1, .. } = created else {
        panic!("add-overlay --json returned {created:?}")
    };
    assert_eq!(o1.len(), 1);
    let vni1 = o1[0].vni;
    assert!(vni1 >= 4096, "auto VNI {vni1}");
    assert_eq!(o1[0].gateway, "10.61.0.1");
    for (i, n) in lab.nodes.iter().enumerate() {
        let others: BTreeSet<String> = vteps
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, v)| v.clone())
            .collect();
        wait_until(
            &format!("{} carries ov1 towards {others:?}", n.name),
            SHORT,
            || remotes(&n.sw, "ov1").as_ref() == Some(&others),
        );
        let b = n.sw.show().into_iter().find(|b| b.name == "ov1").unwrap();
        let p = &b.ports[0];
        assert_eq!(p.name, vswitch::controller::overlay_port(vni1));
        let t = p.tunnel.as_ref().unwrap();
        assert_eq!((t.vni, t.local.as_deref()), (vni1, Some(n.vtep.as_str())));
        assert_eq!(p.state, "up", "{p:?}");
    }

    // VNIs: allocated once; asked-for ones checked; names and subnets clash in one line.
    let Data::Overlays { overlays: o2, .. } =
        lab.nodes[1]
            .sw
            .vsctl_json(&["add-overlay", "ov2", "--subnet", "172.18.62.0/24"])
    else {
        panic!("add-overlay")
    };
    let vni2 = o2[0].vni;
    assert_ne!(vni1, vni2);
    let sw2 = &lab.nodes[1].sw;
    refused(
        sw2,
        &["add-overlay", "ov1", "--subnet", "10.99.0.0/24"],
        "overlay ov1 already exists",
    );
    refused(
        sw2,
        &["add-overlay", "ov3", "--subnet", "10.61.0.128/25"],
        "overlaps 10.61.0.0/24 of overlay ov1",
    );
    refused(
        sw2,
        &[
            "add-overlay",
            "ov3",
            "--subnet",
            "10.63.0.0/24",
            "--vni",
            &vni1.to_string(),
        ],
        &format!("VNI {vni1} is already overlay ov1"),
    );
    refused(
        &lab.nodes[2].sw,
        &["del-br", "ov1"],
        "bridge ov1 carries overlay ov1",
    );
    for n in &lab.nodes {
        wait_until(&format!("{} lists both overlays", n.name), SHORT, || {
            overlays(&n.sw)
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                == ["ov1", "ov2"]
        });
    }

    // Containers on three hosts ping each other through the overlay.
    let c1 = lab.container(1, 0, "ov1", "10.61.0.11/24");
    let c2 = lab.container(2, 1, "ov1", "10.61.0.12/24");
    let c3 = lab.container(3, 2, "ov1", "10.61.0.13/24");
    ping(&c1, "10.61.0.12");
    ping(&c1, "10.61.0.13");
    ping(&c3, "10.61.0.12");
    refused(
        &lab.nodes[0].sw,
        &["del-overlay", "ov1"],
        "overlay ov1 has ports on this node (c1p); delete them first",
    );

    // kill -9 of n3: the others drop its VTEP within TTL + 2 s.
    let killed = Instant::now();
    lab.nodes[2].sw.signal(testlab::stop::SIGKILL, SHORT);
    let limit = Duration::from_secs(TTL + 2);
    for i in 0..2 {
        let sw = &lab.nodes[i].sw;
        wait_until(
            &format!("{} drops n3's VTEP", lab.nodes[i].name),
            limit + Duration::from_secs(5),
            || remotes(sw, "ov1").is_some_and(|r| !r.contains(&vteps[2])),
        );
    }
    let took = killed.elapsed();
    assert!(
        took <= limit,
        "n3's VTEP dropped after {took:?} (TTL {TTL} s)"
    );
    let ns = nodes(&lab.nodes[0].sw);
    let n3 = ns.iter().find(|x| x.name == "n3").unwrap();
    assert_eq!(n3.state, "down", "{ns:?}");
    ping(&c1, "10.61.0.12");

    // Restarted with no cluster option, n3 rejoins from its config.
    lab.nodes[2].sw.daemon_args = vec!["--workers".into(), "1".into()];
    lab.nodes[2].sw.start();
    for i in 0..2 {
        let sw = &lab.nodes[i].sw;
        wait_until(
            &format!("{} takes n3 back", lab.nodes[i].name),
            SHORT,
            || remotes(sw, "ov1").is_some_and(|r| r.contains(&vteps[2])),
        );
    }
    ping(&c1, "10.61.0.13");

    // etcd down: cluster changes refused in one line, in bounded time; local commands
    // and forwarding go on.
    lab.etcd.as_mut().unwrap().kill();
    let sw1 = &lab.nodes[0].sw;
    refused_in_time(
        sw1,
        &["add-overlay", "ov4", "--subnet", "10.64.0.0/24"],
        "cluster store unreachable",
    );
    refused(sw1, &["del-overlay", "ov2"], "cluster store unreachable");
    sw1.vsctl_ok(&["add-br", "local0"]);
    sw1.vsctl_ok(&["del-br", "local0"]);
    ping(&c1, "10.61.0.12");
    ping(&c2, "10.61.0.13");
    // The last state is still what the node shows and forwards by.
    assert_eq!(overlays(sw1).len(), 2);
    // A node restarted (kill -9) while the store is away starts from its cached state
    // and forwards.
    lab.nodes[1].sw.signal(testlab::stop::SIGKILL, SHORT);
    lab.nodes[1].sw.start();
    assert_eq!(
        remotes(&lab.nodes[1].sw, "ov1"),
        Some([vteps[0].clone(), vteps[2].clone()].into_iter().collect())
    );
    ping(&c1, "10.61.0.12");
    ping(&c2, "10.61.0.13");

    // etcd back: cluster changes work again, and reach every node.
    lab.etcd.as_mut().unwrap().restart().unwrap();
    let sw1 = &lab.nodes[0].sw;
    wait_until("add-overlay works again", Duration::from_secs(15), || {
        sw1.vsctl(&["add-overlay", "ov4", "--subnet", "10.64.0.0/24"])
            .success()
    });
    sw1.vsctl_ok(&["del-overlay", "ov2"]);
    for n in &lab.nodes {
        wait_until(
            &format!("{} follows ov4 and ov2's removal", n.name),
            SHORT,
            || {
                let names: Vec<String> = n.sw.show().into_iter().map(|b| b.name).collect();
                names.contains(&"ov4".to_string()) && !names.contains(&"ov2".to_string())
            },
        );
    }
    let vni4 = overlays(sw1).iter().find(|o| o.name == "ov4").unwrap().vni;
    assert!(vni4 != vni1, "VNI {vni4} handed out twice");
    ping(&c1, "10.61.0.13");

    // n2 cut off from the underlay: the others drop it within TTL + 2 s; back on the
    // wire, it rejoins by itself (its lease expired meanwhile: a new one).
    let h2 = lab.nodes[1].ns.clone();
    ip(&["-n", &h2, "link", "set", "eth0", "down"]);
    let cut = Instant::now();
    for i in [0, 2] {
        let sw = &lab.nodes[i].sw;
        wait_until(
            &format!("{} drops cut-off n2", lab.nodes[i].name),
            limit + Duration::from_secs(5),
            || remotes(sw, "ov1").is_some_and(|r| !r.contains(&vteps[1])),
        );
    }
    let took = cut.elapsed();
    assert!(
        took <= limit,
        "cut-off n2 dropped after {took:?} (TTL {TTL} s)"
    );
    ip(&["-n", &h2, "link", "set", "eth0", "up"]);
    for i in [0, 2] {
        let sw = &lab.nodes[i].sw;
        wait_until(
            &format!("{} takes n2 back", lab.nodes[i].name),
            Duration::from_secs(20),
            || remotes(sw, "ov1").is_some_and(|r| r.contains(&vteps[1])),
        );
    }
    ping(&c1, "10.61.0.12");

    // Node keys in etcd are under leases, overlays are not.
    let e = lab.etcd.as_ref().unwrap();
    let o = e
        .etcdctl(&["get", "--prefix", "--keys-only", "/vswitch/v1/"])
        .unwrap();
    let keys: Vec<&str> = o.stdout.lines().filter(|l| !l.is_empty()).collect();
    for k in [
        "/vswitch/v1/nodes/n1",
        "/vswitch/v1/nodes/n2",
        "/vswitch/v1/nodes/n3",
        "/vswitch/v1/overlays/ov1",
        "/vswitch/v1/overlays/ov4",
    ] {
        assert!(keys.contains(&k), "{k} missing: {keys:?}");
    }
    assert!(!keys.contains(&"/vswitch/v1/overlays/ov2"), "{keys:?}");
}

#[test]
fn a_tls_store_admits_only_nodes_with_a_certificate_from_its_ca() {
    let mut lab = Lab::new("t");
    let pki = Pki::new(&lab.dir.join("pki")).unwrap();
    let ca = pki.ca("ca1").unwrap();
    let other = pki.ca("ca2").unwrap();
    let (scert, skey) = pki.cert(&ca, "server", Some(ETCD_IP)).unwrap();
    let (ccert, ckey) = pki.cert(&ca, "node", None).unwrap();
    let (xcert, xkey) = pki.cert(&other, "stranger", None).unwrap();
    let probe = ClientTls {
        ca: ca.cert.clone(),
        cert: ccert.clone(),
        key: ckey.clone(),
    };
    let u = lab.underlay();
    let etcd = Etcd::start(
        &u,
        ETCD_IP,
        &lab.dir.join("etcd"),
        Some(ServerTls {
            cert: scert,
            key: skey,
            client_ca: ca.cert.clone(),
            probe,
        }),
    )
    .unwrap();
    let store = etcd.store_url();
    assert!(store.starts_with("etcds://"), "{store}");
    lab.etcd = Some(etcd);
    let (ns, vtep) = lab.host(1);
    let p = |x: &PathBuf| x.display().to_string();
    let tls = |cert: &PathBuf, key: &PathBuf| {
        let mut a = cluster_args(&store, "n1", &vtep);
        a.extend([
            "--cluster-ca".into(),
            p(&ca.cert),
            "--cluster-cert".into(),
            p(cert),
            "--cluster-key".into(),
            p(key),
        ]);
        a
    };
    let one_line = |o: &testlab::Out, want: &str| {
        assert!(!o.success(), "vswitchd started: {o}");
        let e = o.stderr.trim();
        let last = e.lines().last().unwrap_or("");
        assert!(
            last.starts_with("vswitchd: ") && last.contains(want),
            "wanted a line with {want:?}: {o}"
        );
    };

    // No certificate at all.
    let o = vswitchd_once(&lab, &ns, "nocert", &cluster_args(&store, "n1", &vtep));
    one_line(
        &o,
        "etcds:// needs --cluster-ca, --cluster-cert and --cluster-key",
    );

    // A certificate from another CA: the store refuses the handshake.
    let o = vswitchd_once(&lab, &ns, "otherca", &tls(&xcert, &xkey));
    one_line(&o, "cannot join the cluster at etcds://");
    one_line(&o, "certificate");

    // A private key others can read.
    let open = lab.dir.join("pki/open.key");
    std::fs::copy(&ckey, &open).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let o = vswitchd_once(&lab, &ns, "openkey", &tls(&ccert, &open));
    one_line(&o, "is accessible to others (mode 0644); chmod 600 it");

    // Nothing of them reached the store.
    let e = lab.etcd.as_ref().unwrap();
    let o = e
        .etcdctl(&["get", "--prefix", "--keys-only", "/vswitch/v1/"])
        .unwrap();
    assert!(o.success() && o.stdout.trim().is_empty(), "{o}");

    // The right certificate joins.
    let mut sw = Switchd::new("n1", &ns, &lab.dir.join("n1"), bins());
    sw.daemon_args = tls(&ccert, &ckey);
    sw.start();
    lab.nodes.push(Node {
        name: "n1".into(),
        ns: ns.clone(),
        vtep: vtep.clone(),
        sw,
    });
    let sw = &lab.nodes[0].sw;
    wait_until("n1 is up in its own list", SHORT, || {
        nodes(sw).iter().any(|n| n.name == "n1" && n.state == "up")
    });
    sw.vsctl_ok(&[
        "add-overlay",
        "sec",
        "--subnet",
        "10.70.0.0/24",
        "--vni",
        "700",
    ]);
    let o = e.etcdctl(&["get", "/vswitch/v1/nodes/n1"]).unwrap();
    assert!(o.stdout.contains(&format!("\"vtep\":\"{vtep}\"")), "{o}");
}

/// The MACs of overlay `ov`'s static FDB entries towards remote VTEPs on `sw`, with the
/// remote each points to.
fn remote_endpoints(sw: &Switchd, ov: &str) -> BTreeSet<(String, String)> {
    sw.fdb(ov)
        .into_iter()
        .filter(|e| e.is_static)
        .filter_map(|e| Some((e.mac, e.remote?)))
        .collect()
}

/// The MACs of overlay `ov`'s static FDB entries towards local containers' ports on
/// `sw` (the gateway's own MAC, pinned to its port too, left out).
fn local_endpoints(sw: &Switchd, ov: &str) -> BTreeSet<String> {
    sw.fdb(ov)
        .into_iter()
        .filter(|e| e.is_static && e.remote.is_none() && !e.port.contains("gateway"))
        .map(|e| e.mac)
        .collect()
}

fn counter(sw: &Switchd, br: &str, name: &str) -> u64 {
    sw.stats(br).counters.get(name).copied().unwrap_or(0)
}

#[test]
fn cluster_ipam_hands_out_unique_addresses_and_endpoints_reach_every_node() {
    let mut lab = Lab::with_nodes("i", 3);
    let u = lab.underlay();
    testlab::require_tools(&["tcpdump"]);
    let vteps: Vec<String> = lab.nodes.iter().map(|n| n.vtep.clone()).collect();
    lab.nodes[0]
        .sw
        .vsctl_ok(&["add-overlay", "ov1", "--subnet", "10.81.0.0/24"]);
    for (i, n) in lab.nodes.iter().enumerate() {
        wait_until(&format!("{} carries ov1", n.name), SHORT, || {
            remotes(&n.sw, "ov1").is_some_and(|r| r.len() == 2 && !r.contains(&vteps[i]))
        });
    }

    // Three containers per host, attached from all three hosts at once, no --ip.
    let mut cs: Vec<(usize, String)> = Vec::new();
    for i in 0..3 {
        for k in 0..3 {
            let c = lab.name(&format!("c{i}{k}"));
            lab.ns.add(&c);
            cs.push((i, c));
        }
    }
    let got: Vec<(usize, String, String, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = cs
            .iter()
            .map(|(i, c)| {
                let sw = &lab.nodes[*i].sw;
                s.spawn(move || {
                    let (ip, mac) = attach_auto(sw, "ov1", c);
                    (*i, c.clone(), ip, mac)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: BTreeSet<&str> = got.iter().map(|g| g.2.as_str()).collect();
    assert_eq!(ips.len(), got.len(), "an address handed out twice: {got:?}");
    for ip in &ips {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!(
            ip.starts_with("10.81.0.") && (2..=254).contains(&last),
            "{ip}: not a host address (the gateway is 10.81.0.1)"
        );
    }
    // In the store: one claim per address and one endpoint per MAC, each its node's.
    let claims = store_keys(&lab, "/vswitch/v1/ipam/ov1/");
    assert_eq!(claims.len(), got.len(), "{claims:?}");
    for (i, _, ip, mac) in &got {
        let key = format!("/vswitch/v1/ipam/ov1/{ip}");
        let v = &claims.iter().find(|(k, _)| *k == key).unwrap().1;
        assert!(
            v.contains(&format!("\"node\":\"n{}\"", i + 1)) && v.contains(mac),
            "{key} = {v}"
        );
    }

    // Every node installs the others' endpoints towards their VTEPs.
    for (i, n) in lab.nodes.iter().enumerate() {
        let want: BTreeSet<(String, String)> = got
            .iter()
            .filter(|g| g.0 != i)
            .map(|g| (g.3.clone(), vteps[g.0].clone()))
            .collect();
        wait_until(
            &format!("{} has the remote endpoints", n.name),
            SHORT,
            || remote_endpoints(&n.sw, "ov1") == want,
        );
        // Its own are pinned to their ports: they never age into unknown unicast.
        let mine: BTreeSet<String> = got
            .iter()
            .filter(|g| g.0 == i)
            .map(|g| g.3.clone())
            .collect();
        wait_until(&format!("{} pins its endpoints", n.name), SHORT, || {
            local_endpoints(&n.sw, "ov1") == mine
        });
    }
    let c = |i: usize, k: usize| &got[i * 3 + k];
    ping(&c(0, 0).1, &c(1, 0).2);
    ping(&c(1, 1).1, &c(2, 2).2);
    ping(&c(2, 0).1, &c(0, 1).2);

    // Converged: containers that forgot their neighbours ping across hosts, and the
    // underlay carries no ARP and no broadcast; nothing is flooded to the tunnels.
    for g in &got {
        ip(&["-n", &g.1, "neigh", "flush", "all"]);
    }
    let flooded: Vec<u64> = lab
        .nodes
        .iter()
        .map(|n| counter(&n.sw, "ov1", "tunnel_flooded"))
        .collect();
    let suppressed: u64 = lab
        .nodes
        .iter()
        .map(|n| counter(&n.sw, "ov1", "arp_suppressed"))
        .sum();
    let mut cap = testlab::Bg::spawn(
        &lab.dir,
        "underlay-capture",
        &netns::exec_argv(
            &u,
            &[
                "tcpdump", "-i", "any", "-nn", "-e", "-l", "udp", "port", "4789",
            ],
        ),
    );
    cap.wait_output("listening on", SHORT);
    for (a, b) in [(0, 1), (1, 2), (2, 0), (0, 2)] {
        for (k, l) in [(0, 1), (2, 0)] {
            let (from, to) = (&c(a, k).1, &c(b, l).2);
            let o = netns::try_exec(
                from,
                &["ping", "-c", "2", "-i", "0.2", "-W", "1", to],
                SHORT,
            )
            .unwrap();
            assert!(o.success(), "{from} -> {to}: {o}");
        }
    }
    wait_until("the capture shows the echoes", SHORT, || {
        cap.stdout().matches("ICMP echo request").count() >= 16
    });
    cap.stop(SHORT);
    let seen = cap.stdout();
    for bad in ["ARP", "ff:ff:ff:ff:ff:ff"] {
        assert!(
            !seen.contains(bad),
            "{bad} crossed the underlay after convergence:\n{seen}"
        );
    }
    for (i, n) in lab.nodes.iter().enumerate() {
        assert_eq!(
            counter(&n.sw, "ov1", "tunnel_flooded"),
            flooded[i],
            "{} flooded to its tunnel",
            n.name
        );
    }
    let suppressed_now: u64 = lab
        .nodes
        .iter()
        .map(|n| counter(&n.sw, "ov1", "arp_suppressed"))
        .sum();
    assert!(
        suppressed_now >= suppressed + 16,
        "ARP answered by the switches: {suppressed} then {suppressed_now}"
    );

    // Convergence: from an attach on one host to the first echo from another.
    let late = lab.name("late");
    lab.ns.add(&late);
    let t0 = Instant::now();
    let (late_ip, _) = attach_auto(&lab.nodes[2].sw, "ov1", &late);
    let attached = t0.elapsed();
    let deadline = Instant::now() + SHORT;
    loop {
        let o = netns::try_exec(
            &c(0, 0).1,
            &["ping", "-c", "1", "-W", "0.1", &late_ip],
            SHORT,
        )
        .unwrap();
        if o.success() {
            break;
        }
        assert!(Instant::now() < deadline, "no echo from {late_ip}: {o}");
    }
    eprintln!(
        "figure: attach on n3 took {:.0} ms; first echo from n1 {:.0} ms after the attach began",
        attached.as_secs_f64() * 1e3,
        t0.elapsed().as_secs_f64() * 1e3
    );

    // --ip is checked against every host's claims; a free one is taken as asked.
    let extra = lab.name("x");
    lab.ns.add(&extra);
    let sw1 = &lab.nodes[0].sw;
    refused(
        sw1,
        &[
            "attach",
            "ov1",
            &extra,
            "--ip",
            &format!("{}/24", c(1, 0).2),
        ],
        &format!("address {} of overlay ov1 is taken", c(1, 0).2),
    );
    refused(
        sw1,
        &["attach", "ov1", &extra, "--ip", "10.81.0.1/24"],
        "10.81.0.1 is not an address overlay ov1 hands out",
    );
    refused(
        sw1,
        &["attach", "ov1", &extra, "--ip", "10.82.0.9/24"],
        "is not an address of overlay ov1",
    );
    assert!(
        !sw1.show()
            .iter()
            .flat_map(|b| &b.ports)
            .any(|p| p.attach.as_ref().is_some_and(|a| a.container == extra)),
        "a refused attach left a port"
    );

    // detach releases: the address is free for another host at once.
    let (_, gone, gone_ip, gone_mac) = c(1, 2).clone();
    lab.nodes[1].sw.vsctl_ok(&["detach", "ov1", &gone]);
    assert!(
        !store_keys(&lab, "/vswitch/v1/ipam/ov1/")
            .iter()
            .any(|(k, _)| k.ends_with(&format!("/{gone_ip}"))),
        "{gone_ip} still claimed after detach: {:?}",
        store_keys(&lab, "/vswitch/v1/ipam/ov1/")
    );
    let out = sw1.vsctl_ok(&["attach", "ov1", &extra, "--ip", &format!("{gone_ip}/24")]);
    assert!(out.starts_with(&format!("{gone_ip}/24 ")), "{out}");
    // Its MAC follows its address (02:42 and the address): local on n1, behind n1's
    // VTEP on n3.
    wait_until(
        "n1 has no remote entry for the reused address",
        SHORT,
        || {
            !remote_endpoints(sw1, "ov1")
                .iter()
                .any(|(m, _)| *m == gone_mac)
        },
    );
    wait_until(&format!("n3 moves {gone_ip} to n1"), SHORT, || {
        let r = remote_endpoints(&lab.nodes[2].sw, "ov1");
        r.contains(&(gone_mac.clone(), vteps[0].clone()))
            && !r.contains(&(gone_mac.clone(), vteps[1].clone()))
    });
    ping(&c(2, 0).1, &gone_ip);

    // A container that dies gives its address back by itself.
    let (_, dead, dead_ip, dead_mac) = c(0, 2).clone();
    ip(&["netns", "del", &dead]);
    wait_until(&format!("{dead_ip} released on death"), SHORT, || {
        !store_keys(&lab, "/vswitch/v1/ipam/ov1/")
            .iter()
            .any(|(k, _)| k.ends_with(&format!("/{dead_ip}")))
    });
    wait_until("n2 drops the dead endpoint", SHORT, || {
        !remote_endpoints(&lab.nodes[1].sw, "ov1")
            .iter()
            .any(|(m, _)| *m == dead_mac)
    });

    // kill -9 of n3: within TTL + 2 s the others drop its VTEP, its endpoints and its
    // addresses.
    let n3_macs: BTreeSet<String> = got
        .iter()
        .filter(|g| g.0 == 2)
        .map(|g| g.3.clone())
        .collect();
    let killed = Instant::now();
    lab.nodes[2].sw.signal(testlab::stop::SIGKILL, SHORT);
    let limit = Duration::from_secs(TTL + 2);
    for i in 0..2 {
        let sw = &lab.nodes[i].sw;
        wait_until(
            &format!("{} drops n3 and its endpoints", lab.nodes[i].name),
            limit + Duration::from_secs(5),
            || {
                remotes(sw, "ov1").is_some_and(|r| !r.contains(&vteps[2]))
                    && !remote_endpoints(sw, "ov1")
                        .iter()
                        .any(|(m, r)| n3_macs.contains(m) || *r == vteps[2])
            },
        );
    }
    let took = killed.elapsed();
    assert!(took <= limit, "n3 dropped after {took:?} (TTL {TTL} s)");
    let left = store_keys(&lab, "/vswitch/v1/ipam/ov1/");
    assert!(
        !left.iter().any(|(_, v)| v.contains("\"node\":\"n3\"")),
        "n3's addresses outlived its lease: {left:?}"
    );
    eprintln!(
        "figure: kill -9 of n3 to its VTEP and endpoints gone on n1 and n2: {:.0} ms (TTL {TTL} s)",
        took.as_secs_f64() * 1e3
    );
    ping(&c(0, 0).1, &c(1, 0).2);

    // n3 back (its config has the attachments): its endpoints are published again
    // under its new lease, with the same addresses, and reachable without a command.
    lab.nodes[2].sw.start();
    let want: BTreeSet<(String, String)> = n3_macs
        .iter()
        .map(|m| (m.clone(), vteps[2].clone()))
        .collect();
    wait_until("n1 has n3's endpoints again", SHORT, || {
        remote_endpoints(&lab.nodes[0].sw, "ov1").is_superset(&want)
    });
    ping(&c(0, 0).1, &c(2, 1).2);
    let back = store_keys(&lab, "/vswitch/v1/ipam/ov1/");
    for g in got.iter().filter(|g| g.0 == 2) {
        assert!(
            back.iter()
                .any(|(k, v)| k.ends_with(&format!("/{}", g.2)) && v.contains("\"node\":\"n3\"")),
            "{} not claimed by n3 again: {back:?}",
            g.2
        );
    }

    // An overlay with a container on any node cannot be deleted from another.
    lab.nodes[0]
        .sw
        .vsctl_ok(&["add-overlay", "ov2", "--subnet", "10.83.0.0/24"]);
    wait_until("n2 carries ov2", SHORT, || {
        remotes(&lab.nodes[1].sw, "ov2").is_some()
    });
    let lone = lab.name("lone");
    lab.ns.add(&lone);
    let (lone_ip, _) = attach_auto(&lab.nodes[1].sw, "ov2", &lone);
    assert_eq!(lone_ip, "10.83.0.2");
    refused(
        &lab.nodes[0].sw,
        &["del-overlay", "ov2"],
        "overlay ov2 still has 1 endpoint(s) (10.83.0.2); detach them first",
    );
    lab.nodes[1].sw.vsctl_ok(&["detach", "ov2", &lone]);
    lab.nodes[0].sw.vsctl_ok(&["del-overlay", "ov2"]);
    // n2 learns of the deletion from its watch: wait for it, or it could land during the
    // refused attach below and look like a change that attach made.
    wait_until("n2 drops ov2", SHORT, || {
        remotes(&lab.nodes[1].sw, "ov2").is_none()
    });

    // etcd away: an attach that needs the allocator is refused in one line, and
    // changes nothing.
    lab.etcd.as_mut().unwrap().kill();
    let more = lab.name("m");
    lab.ns.add(&more);
    let sw2 = &lab.nodes[1].sw;
    // What an attach would change: bridges, ports and attachments (not the counters,
    // which any frame still in flight moves).
    let layout = || {
        sw2.show()
            .into_iter()
            .map(|b| {
                let ports: Vec<_> = b.ports.into_iter().map(|p| (p.name, p.attach)).collect();
                (b.name, b.net, ports)
            })
            .collect::<Vec<_>>()
    };
    let before = layout();
    refused(sw2, &["attach", "ov1", &more], "cluster store unreachable");
    assert_eq!(layout(), before, "a refused attach changed the switch");
}

/// Whether every node lists the three nodes up.
fn all_up(lab: &Lab) -> bool {
    lab.nodes.iter().all(|n| {
        let ns = nodes(&n.sw);
        ns.len() == 3 && ns.iter().all(|x| x.state == "up")
    })
}

#[test]
fn a_three_member_etcd_keeps_the_cluster_working_with_one_member_killed() {
    let mut lab = Lab::new("m");
    let u = lab.underlay();
    // The underlay namespace is the lab's own: the ports are free there.
    let mut etcd =
        testlab::etcd_members::EtcdMembers::start(&u, ETCD_IP, 2379, 3, &lab.dir.join("etcd3"))
            .unwrap();
    let store = etcd.store_url();
    for n in 1..=3 {
        lab.node(n, &store, &[]);
    }
    wait_until("every node lists 3 nodes up", SHORT, || all_up(&lab));
    lab.nodes[0]
        .sw
        .vsctl_ok(&["add-overlay", "ov1", "--subnet", "10.91.0.0/24"]);
    for n in &lab.nodes {
        wait_until(&format!("{} carries ov1", n.name), SHORT, || {
            remotes(&n.sw, "ov1").is_some_and(|r| r.len() == 2)
        });
    }
    let c1 = lab.name("c1");
    lab.ns.add(&c1);
    let (ip1, _) = attach_auto(&lab.nodes[0].sw, "ov1", &c1);

    // The member every node's client is likeliest to use first: the first one listed.
    etcd.kill(0);
    let dead = Instant::now();
    // Attach (an etcd transaction), ping across hosts, a new overlay: all work while
    // the two others keep a quorum (a new leader may take a few seconds to elect).
    let c3 = lab.name("c3");
    lab.ns.add(&c3);
    let sw3 = &lab.nodes[2].sw;
    let mut got = None;
    wait_until(
        "attach on n3 works with a member down",
        Duration::from_secs(20),
        || {
            let o = sw3.vsctl(&["attach", "ov1", &c3, "--mtu", "1450"]);
            if o.success() {
                got = Some(o.stdout.clone());
            }
            o.success()
        },
    );
    let out = got.unwrap();
    let ip3 = out.split('/').next().unwrap().to_string();
    assert_ne!(ip3, ip1, "an address handed out twice");
    ping(&c1, &ip3);
    ping(&c3, &ip1);
    wait_until(
        "add-overlay works with a member down",
        Duration::from_secs(20),
        || {
            lab.nodes[1]
                .sw
                .vsctl(&["add-overlay", "ov2", "--subnet", "10.92.0.0/24"])
                .success()
        },
    );
    for n in &lab.nodes {
        wait_until(&format!("{} carries ov2", n.name), SHORT, || {
            remotes(&n.sw, "ov2").is_some_and(|r| r.len() == 2)
        });
    }
    // Leases are kept alive through the other members: nobody drops out, for longer
    // than a TTL.
    std::thread::sleep(Duration::from_secs(TTL + 1));
    assert!(all_up(&lab), "a node dropped with one member down");
    for n in &lab.nodes {
        assert!(
            remotes(&n.sw, "ov1").is_some_and(|r| r.len() == 2),
            "{} lost a remote",
            n.name
        );
    }
    let c2 = lab.name("c2");
    lab.ns.add(&c2);
    let (ip2, _) = attach_auto(&lab.nodes[1].sw, "ov1", &c2);
    ping(&c2, &ip1);
    eprintln!(
        "figure: with member m0 killed, attach + ping + add-overlay done within {:.1} s",
        dead.elapsed().as_secs_f64()
    );
    // The member comes back and catches up.
    etcd.restart(0).unwrap();
    let o = etcd
        .etcdctl_at(
            &etcd.endpoints[0],
            &["get", "--prefix", "--keys-only", "/vswitch/v1/ipam/ov1/"],
        )
        .unwrap();
    for ip in [&ip1, &ip2, &ip3] {
        assert!(o.stdout.contains(ip.as_str()), "{ip} missing on m0: {o}");
    }
}

#[test]
fn a_node_cut_off_across_a_compaction_lists_again_and_converges() {
    let mut lab = Lab::with_nodes("k", 3);
    wait_until("every node lists 3 nodes up", SHORT, || all_up(&lab));
    let sw1 = &lab.nodes[0].sw;
    sw1.vsctl_ok(&["add-overlay", "ov1", "--subnet", "10.93.0.0/24"]);
    sw1.vsctl_ok(&["add-overlay", "gone", "--subnet", "10.94.0.0/24"]);
    for n in &lab.nodes {
        wait_until(&format!("{} carries both", n.name), SHORT, || {
            remotes(&n.sw, "ov1").is_some() && remotes(&n.sw, "gone").is_some()
        });
    }
    let c2 = lab.name("c2");
    lab.ns.add(&c2);
    let (ip2, _) = attach_auto(&lab.nodes[1].sw, "ov1", &c2);

    // n3 paused (SIGSTOP): it sees nothing of what follows, and its lease expires.
    let n3 = lab.nodes[2].sw.pid();
    testlab::stop::kill(n3, SIGSTOP);
    let joined_before = lab.nodes[2]
        .sw
        .log_text()
        .matches("joined the cluster")
        .count();
    let sw1 = &lab.nodes[0].sw;
    sw1.vsctl_ok(&["add-overlay", "ov3", "--subnet", "10.95.0.0/24"]);
    sw1.vsctl_ok(&["del-overlay", "gone"]);
    let c1 = lab.name("c1");
    lab.ns.add(&c1);
    let (ip1, mac1) = attach_auto(sw1, "ov1", &c1);
    // Compacted past every revision n3 saw: no watch can resume from there.
    let e = lab.etcd.as_ref().unwrap();
    let st = e
        .etcdctl(&["endpoint", "status", "--write-out", "json"])
        .unwrap();
    let rev: i64 = st
        .stdout
        .split("\"revision\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {st}"));
    let o = e.etcdctl(&["compact", &rev.to_string()]).unwrap();
    assert!(o.success(), "{o}");
    wait_until("n3's lease expires", Duration::from_secs(TTL + 5), || {
        nodes(&lab.nodes[0].sw)
            .iter()
            .all(|n| n.name != "n3" || n.state == "down")
    });

    testlab::stop::kill(n3, SIGCONT);
    let sw3 = &lab.nodes[2].sw;
    // Its lease is gone: it registers again and lists the store afresh, at a revision
    // past the compaction (no watch could resume from its old one).
    wait_until("n3 joins again", Duration::from_secs(20), || {
        sw3.log_text().matches("joined the cluster").count() > joined_before
    });
    wait_until(
        "n3 converges after the compaction",
        Duration::from_secs(20),
        || {
            let names: Vec<String> = sw3.show().into_iter().map(|b| b.name).collect();
            names.contains(&"ov3".to_string())
                && !names.contains(&"gone".to_string())
                && remote_endpoints(sw3, "ov1").iter().any(|(m, _)| *m == mac1)
        },
    );
    let c3 = lab.name("c3");
    lab.ns.add(&c3);
    attach_auto(sw3, "ov1", &c3);
    ping(&c3, &ip1);
    ping(&c3, &ip2);
    wait_until("every node lists 3 nodes up again", SHORT, || all_up(&lab));
}

/// `/etc/netns/NS/resolv.conf` for the namespaces of a test, removed when it drops.
struct Resolv(Vec<PathBuf>);

impl Resolv {
    fn add(&mut self, ns: &str, nameserver: &str) {
        let d = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("resolv.conf"), format!("nameserver {nameserver}\n")).unwrap();
        self.0.push(d);
    }
}

impl Drop for Resolv {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The A records of overlay `ov`'s DNS on `sw`: (name, address, where from).
fn a_records(sw: &Switchd, ov: &str) -> BTreeSet<(String, String, String)> {
    match sw.vsctl_json(&["dns-show", ov]) {
        Data::Dns(d) => d
            .records
            .into_iter()
            .filter(|r| r.kind == "A")
            .map(|r| (r.name, r.value, r.port))
            .collect(),
        other => panic!("dns-show --json returned {other:?}"),
    }
}

#[test]
fn overlay_gateways_are_served_on_every_node_and_answer_every_nodes_names() {
    let mut lab = Lab::with_nodes("n", 2);
    let u = lab.underlay();
    testlab::require_tools(&["getent", "tcpdump"]);
    let mut resolv = Resolv(Vec::new());
    lab.nodes[0]
        .sw
        .vsctl_ok(&["add-overlay", "ov1", "--subnet", "10.84.0.0/24"]);
    for n in &lab.nodes {
        wait_until(&format!("{} carries ov1", n.name), SHORT, || {
            remotes(&n.sw, "ov1").is_some_and(|r| r.len() == 1)
        });
    }
    // The overlay's network is the cluster's: no node changes it by hand.
    refused(&lab.nodes[1].sw, &["del-net", "ov1"], "ov1");

    let c1 = lab.name("c1");
    let c2 = lab.name("c2");
    lab.ns.add(&c1);
    lab.ns.add(&c2);
    let attach = |sw: &Switchd, ns: &str, names: &[&str]| {
        let mut args = vec!["attach", "ov1", ns, "--mtu", "1450"];
        args.extend_from_slice(names);
        let out = sw.vsctl_ok(&args);
        out.split('/').next().unwrap().to_string()
    };
    let ip1 = attach(&lab.nodes[0].sw, &c1, &["--name", "web", "--alias", "www"]);
    let ip2 = attach(&lab.nodes[1].sw, &c2, &["--name", "db"]);
    resolv.add(&c1, "10.84.0.1");
    resolv.add(&c2, "10.84.0.1");

    // Each node answers for its own containers and, from the store, the other's.
    let from = |sw: &Switchd, node: &str| -> BTreeSet<(String, String)> {
        a_records(sw, "ov1")
            .into_iter()
            .filter(|r| r.2 == format!("node {node}"))
            .map(|r| (r.0, r.1))
            .collect()
    };
    let pair = |n: &str, ip: &str| (n.to_string(), ip.to_string());
    wait_until("n1's DNS has db from n2", SHORT, || {
        from(&lab.nodes[0].sw, "n2") == BTreeSet::from([pair("db", &ip2)])
    });
    wait_until("n2's DNS has web and www from n1", SHORT, || {
        from(&lab.nodes[1].sw, "n1") == BTreeSet::from([pair("web", &ip1), pair("www", &ip1)])
    });
    let local: BTreeSet<String> = a_records(&lab.nodes[1].sw, "ov1")
        .into_iter()
        .filter(|r| !r.2.starts_with("node "))
        .map(|r| r.0)
        .collect();
    assert_eq!(local, BTreeSet::from(["db".to_string()]));

    // The gateway answers on each node with the same MAC (an anycast gateway): the
    // ARP for it is answered on the node and never crosses the underlay.
    let mut cap = testlab::Bg::spawn(
        &lab.dir,
        "underlay-capture",
        &netns::exec_argv(
            &u,
            &[
                "tcpdump", "-i", "any", "-nn", "-e", "-l", "udp", "port", "4789",
            ],
        ),
    );
    cap.wait_output("listening on", SHORT);
    ping(&c1, "10.84.0.1");
    ping(&c2, "10.84.0.1");
    let gw_mac = |ns: &str| {
        let o = netns::try_exec(ns, &["ip", "neigh", "show", "10.84.0.1"], SHORT).unwrap();
        o.stdout
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string)
    };
    let (m1, m2) = (gw_mac(&c1), gw_mac(&c2));
    assert!(m1.is_some() && m1 == m2, "gateway MACs {m1:?} and {m2:?}");
    // A ping across hosts, so that the capture is known to see the overlay.
    ping(&c1, &ip2);
    wait_until("the capture shows the echo", SHORT, || {
        cap.stdout().contains("ICMP echo request")
    });
    cap.stop(SHORT);
    let seen = cap.stdout();
    assert!(
        !seen.contains("10.84.0.1"),
        "traffic for the gateway crossed the underlay:\n{seen}"
    );

    // Names resolve across hosts through glibc and the node's own gateway.
    let getent = |ns: &str, name: &str| {
        netns::try_exec(ns, &["getent", "hosts", name], SHORT)
            .unwrap()
            .stdout
    };
    let got = getent(&c2, "web");
    assert!(
        got.contains(&ip1),
        "getent hosts web on n2's container: {got:?}"
    );
    let got = getent(&c1, "db");
    assert!(
        got.contains(&ip2),
        "getent hosts db on n1's container: {got:?}"
    );
    ping(&c2, "www");

    // Detach on n1: its names go from n2's DNS at once (with the endpoint).
    lab.nodes[0].sw.vsctl_ok(&["detach", "ov1", &c1]);
    wait_until("web gone from n2's DNS", SHORT, || {
        a_records(&lab.nodes[1].sw, "ov1")
            .iter()
            .all(|r| r.0 != "web" && r.0 != "www")
    });
}

/// An overlay `detach` or `ipam-release` releases the address in the store first; when
/// the node then cannot save its config (here a directory where the save's temporary
/// file goes), it refuses, the container stays plugged in, and the address is published
/// again under the node's lease: no other node can hand it out while it is in use. Once
/// the config can be saved, the same requests go through.
#[test]
fn an_overlay_release_that_cannot_be_saved_keeps_the_address_claimed() {
    let mut lab = Lab::with_nodes("unrel", 1);
    lab.overlay_everywhere("ovu", "10.97.0.0/24");
    let c1 = lab.name("c1");
    lab.ns.add(&c1);
    let sw = &lab.nodes[0].sw;
    let (ip1, _) = attach_auto(sw, "ovu", &c1);
    let reserved = sw.vsctl_ok(&["ipam-claim", "ovu", "--owner", "probe"]);
    let ip2 = reserved.split('/').next().unwrap().to_string();
    let key = |ip: &str| format!("/vswitch/v1/ipam/ovu/{ip}");
    let held = |ip: &str| store_keys(&lab, &key(ip)).len() == 1;
    assert!(held(&ip1) && held(&ip2));

    let blocker = sw.db.with_extension("json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let o = sw.vsctl(&["detach", "ovu", &c1]);
    assert!(!o.success() && o.stderr.contains("cannot save"), "{o}");
    let o = sw.vsctl(&["ipam-release", "ovu", &ip2]);
    assert!(!o.success() && o.stderr.contains("cannot save"), "{o}");
    // Released for a moment, then published again, and kept.
    wait_until("both addresses claimed again", SHORT, || {
        held(&ip1) && held(&ip2)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        held(&ip1) && held(&ip2),
        "an address the node still uses went free"
    );
    assert!(sw.vsctl_ok(&["show"]).contains(&ip1), "c1 was unplugged");

    std::fs::remove_dir(&blocker).unwrap();
    sw.vsctl_ok(&["detach", "ovu", &c1]);
    sw.vsctl_ok(&["ipam-release", "ovu", &ip2]);
    wait_until("both addresses free", SHORT, || !held(&ip1) && !held(&ip2));
}

/// What another writer of the store can do to a node, and how the node gets back:
/// - its own node key deleted (`etcdctl del`): the other nodes take it for gone, so it
///   registers again, in a new session, instead of staying out while believing it is in;
/// - its container's address held by another endpoint meanwhile (as after a lease lost
///   while cut off): its record is not published, and is tried again every second, so
///   the address is the container's again as soon as the other lets go;
/// - an endpoint key left without its address claim (a release cut in two by an older
///   version): the allocator passes that address over instead of failing every claim.
#[test]
fn a_node_rejoins_and_takes_its_addresses_back_after_others_wrote_the_store() {
    let mut lab = Lab::with_nodes("retake", 1);
    lab.overlay_everywhere("ovr", "10.99.0.0/24");
    let (c1, c2) = (lab.name("c1"), lab.name("c2"));
    lab.ns.add(&c1);
    lab.ns.add(&c2);
    let sw = &lab.nodes[0].sw;
    let (ip1, mac1) = attach_auto(sw, "ovr", &c1);
    let ip1: std::net::Ipv4Addr = ip1.parse().unwrap();
    let etcdctl = |args: &[&str]| {
        let o = lab.etcd.as_ref().unwrap().etcdctl(args).unwrap();
        assert!(o.success(), "etcdctl {args:?}: {o}");
        o.stdout
    };
    let ipam1 = cluster::keys::ipam("ovr", ip1);
    let intruder = cluster::EndpointRecord {
        overlay: "ovr".into(),
        mac: "02:00:00:00:99:01".into(),
        ip: ip1,
        node: "n9".into(),
        container: "intruder".into(),
        names: Vec::new(),
    };
    etcdctl(&["del", &ipam1]);
    etcdctl(&["del", &cluster::keys::endpoint("ovr", &mac1)]);
    let value = String::from_utf8(intruder.value()).unwrap();
    etcdctl(&["put", &ipam1, &value]);
    let node_key = cluster::keys::node("n1");
    etcdctl(&["del", &node_key]);
    wait_until("n1 registered again", SHORT, || {
        !store_keys(&lab, &node_key).is_empty()
    });
    wait_until("n1 saw its address held by another", SHORT, || {
        sw.log_text()
            .contains("not published, tried again every second")
    });
    assert!(
        etcdctl(&["get", &ipam1]).contains("intruder"),
        "n1 took the address from its holder"
    );
    etcdctl(&["del", &ipam1]);
    wait_until("c1's address is c1's again", SHORT, || {
        store_keys(&lab, &ipam1)
            .first()
            .is_some_and(|(_, v)| v.contains(&format!("\"container\":\"{c1}\"")))
    });

    // An endpoint key without its address claim, on the next free address.
    let next = std::net::Ipv4Addr::from(u32::from(ip1) + 1);
    let orphan = cluster::EndpointRecord {
        overlay: "ovr".into(),
        mac: cluster::state::mac_for(next),
        ip: next,
        node: "n9".into(),
        container: "half-released".into(),
        names: Vec::new(),
    };
    let value = String::from_utf8(orphan.value()).unwrap();
    etcdctl(&["put", &orphan.endpoint_key(), &value]);
    let (ip2, _) = attach_auto(sw, "ovr", &c2);
    assert_ne!(
        ip2,
        next.to_string(),
        "the allocator handed out an address whose MAC is taken"
    );
}

/// A store whose keys under the prefix add up to more than gRPC's default 4 MiB per
/// answer (near 8,000 endpoints): a node still lists it whole, joins and attaches (the
/// claim reads the overlay's prefix in one answer too). Here 48 keys of 100 KB that no
/// node reads, written with etcdctl.
#[test]
fn a_store_larger_than_four_mebibytes_is_listed_whole() {
    let mut lab = Lab::new("big");
    let etcd = Etcd::start(&lab.underlay(), ETCD_IP, &lab.dir.join("etcd"), None).unwrap();
    let store = etcd.store_url();
    lab.etcd = Some(etcd);
    let filler = "x".repeat(100_000);
    for i in 0..48 {
        let key = format!("/vswitch/v1/ipam/ovb/filler-{i}");
        let o = lab
            .etcd
            .as_ref()
            .unwrap()
            .etcdctl(&["put", &key, &filler])
            .unwrap();
        assert!(o.success(), "{o}");
    }
    lab.node(1, &store, &[]);
    let sw = &lab.nodes[0].sw;
    wait_until("n1 joined", SHORT, || {
        nodes(sw).iter().any(|n| n.name == "n1")
    });
    lab.nodes[0]
        .sw
        .vsctl_ok(&["add-overlay", "ovb", "--subnet", "10.96.0.0/24"]);
    let c1 = lab.name("c1");
    lab.ns.add(&c1);
    let (ip, _) = attach_auto(&lab.nodes[0].sw, "ovb", &c1);
    assert!(ip.starts_with("10.96.0."), "{ip}");
}
