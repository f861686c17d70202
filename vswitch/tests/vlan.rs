//! 802.1Q VLANs through real `vswitchd` daemons: access ports isolating hosts, trunks
//! between two of our switches and to Open vSwitch's userspace datapath, tagged frames
//! crafted with scapy, bad `add-vlan`/`del-vlan` input, persistence across `kill -9`, and
//! TCP super-frames pushed and popped on a trunk.
//!
//! This kernel has no 802.1Q module: hosts cannot tag. Tagged frames come from our switch,
//! from Open vSwitch, or from scapy. Receiving veths strip the tag into packet metadata
//! (rx-vlan offload), so every trunk here exercises the daemon's PACKET_AUXDATA path, and
//! tcpdump shows the tags it reads from auxdata too.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use common::{assert_refused, assert_vsctl_error, gbps, report, Capture, Lab, Ovs};
use ctl::{BridgeStats, PortVlans, VlanRow};

const BCAST: &str = "ff:ff:ff:ff:ff:ff";

/// `vsctl add-vlan BR PORT VID --access`.
fn access(lab: &Lab, br: &str, port: &str, vid: u16) {
    lab.vsctl_ok(&["add-vlan", br, port, &vid.to_string(), "--access"]);
}

/// The VLANs of an access port of `vid`.
fn access_vlans(vid: u16) -> PortVlans {
    PortVlans {
        pvid: Some(vid),
        untagged: vec![vid],
        tagged: vec![],
    }
}

/// The VLANs of a trunk port carrying `vids` tagged, without PVID.
fn trunk_vlans(vids: &[u16]) -> PortVlans {
    PortVlans {
        pvid: None,
        untagged: vec![],
        tagged: vids.to_vec(),
    }
}

/// A drop counter of one port (0 when absent).
fn drops(s: &BridgeStats, port: &str, reason: &str) -> u64 {
    s.ports
        .iter()
        .find(|p| p.name == port)
        .and_then(|p| p.drops.get(reason).copied())
        .unwrap_or(0)
}

/// rx/tx packets and bytes of one port.
fn port_counts(s: &BridgeStats, port: &str) -> (u64, u64, u64, u64) {
    s.ports
        .iter()
        .find(|p| p.name == port)
        .map(|p| (p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes))
        .unwrap_or_else(|| panic!("no port {port} in stats of {}", s.name))
}

/// A bridge-level counter (0 when absent).
fn counter(s: &BridgeStats, name: &str) -> u64 {
    s.counters.get(name).copied().unwrap_or(0)
}

/// `Err` naming every port with `oversize` or `tx_error` drops.
fn bad_drops(s: &BridgeStats) -> Result<(), String> {
    let mut bad = Vec::new();
    for p in &s.ports {
        for reason in ["oversize", "tx_error"] {
            if let Some(n) = p.drops.get(reason).filter(|n| **n > 0) {
                bad.push(format!(
                    "bridge {} port {}: {reason} {n} (rx {} pkts {} bytes, tx {} pkts {} bytes, all drops {:?})",
                    s.name, p.name, p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes, p.drops
                ));
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n"))
    }
}

/// Received Gbit/s and the sender's retransmits of an iperf3 report.
fn iperf_result(v: &serde_json::Value) -> (f64, u64) {
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    let retr = v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    (gbps(bps), retr)
}

/// The frames of `lines` that carry `needle`.
fn with<'a>(lines: &'a [String], needle: &str) -> Vec<&'a String> {
    lines.iter().filter(|l| l.contains(needle)).collect()
}

/// The entries of `mac` in `fdb`, as (VLAN, port), sorted.
fn entries_of(fdb: &[ctl::FdbEntry], mac: &str) -> Vec<(u16, String)> {
    let mut v: Vec<(u16, String)> = fdb
        .iter()
        .filter(|e| e.mac.eq_ignore_ascii_case(mac))
        .map(|e| (e.vlan, e.port.clone()))
        .collect();
    v.sort();
    v
}

/// A scapy frame `src` → `dst`: `tags` outermost first as (`"q"` 802.1Q or `"ad"`
/// 802.1ad, VID, PCP, DEI), then EtherType `ethertype` and 46 bytes of padding.
fn frame(src: &str, dst: &str, tags: &[(&str, u16, u8, u8)], ethertype: u16) -> String {
    let mut s = if tags.is_empty() {
        format!("Ether(src='{src}', dst='{dst}', type={ethertype:#x})")
    } else {
        format!("Ether(src='{src}', dst='{dst}')")
    };
    for (i, (kind, vid, pcp, dei)) in tags.iter().enumerate() {
        let layer = if *kind == "ad" { "Dot1AD" } else { "Dot1Q" };
        let ty = if i + 1 == tags.len() {
            format!(", type={ethertype:#x}")
        } else {
            String::new()
        };
        s.push_str(&format!("/{layer}(vlan={vid}, prio={pcp}, id={dei}{ty})"));
    }
    s.push_str("/Raw(b'v' * 46)");
    s
}

/// A broadcast [`frame`] with 802.1Q tags given as (VID, PCP).
fn bframe(src: &str, tags: &[(u16, u8)], ethertype: u16) -> String {
    let t: Vec<(&str, u16, u8, u8)> = tags.iter().map(|&(v, p)| ("q", v, p, 0)).collect();
    frame(src, BCAST, &t, ethertype)
}

/// Four hosts on one switch, h1 and h2 access ports of VLAN 10, h3 and h4 of VLAN 20 (h3
/// with h1's MAC): 10↔10 and 20↔20 ping, 10↔20 do not; a broadcast from VLAN 10 is seen
/// in VLAN 10 only; the shared MAC is learned twice, once per VLAN; TCP access→access.
#[test]
fn access_vlans_isolate_hosts_on_one_switch() {
    let mut lab = Lab::new("vacc", 60);
    for _ in 0..4 {
        lab.add_host();
    }
    // The same MAC in two VLANs, as two containers on different VLANs may have.
    let shared = "02:00:00:60:00:01";
    lab.set_host_mac(1, shared);
    lab.set_host_mac(3, shared);
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2, 3, 4]);
    let plan = [("h1p", 10u16), ("h2p", 10), ("h3p", 20), ("h4p", 20)];
    for (p, vid) in plan {
        access(&lab, "br0", p, vid);
    }

    // The configuration as `show`, `show --json` and `list-vlans --json` report it.
    let text = lab.vsctl_ok(&["show"]);
    let show = lab.show();
    let br = show.iter().find(|b| b.name == "br0").unwrap();
    let rows = lab.list_vlans("br0");
    for (p, vid) in plan {
        let want = format!("port {p} (type afpacket) up, vlans {vid} untagged; pvid {vid}");
        assert!(
            text.lines().any(|l| l.trim() == want),
            "`vsctl show` lacks {want:?}:\n{text}"
        );
        let port = br.ports.iter().find(|q| q.name == p).unwrap();
        assert_eq!(
            port.vlans,
            Some(access_vlans(vid)),
            "show --json vlans of {p}: {show:#?}"
        );
        assert!(
            rows.contains(&VlanRow {
                port: p.to_string(),
                vlans: access_vlans(vid)
            }),
            "list-vlans --json lacks {p} as access port of {vid}: {rows:#?}"
        );
    }
    let moved0 = counter(&lab.stats("br0"), "moved");

    // 10↔10 and 20↔20 reach each other; h2 still reaches h1 after h3 (same MAC, VLAN 20)
    // has spoken, so h3 did not take the MAC over.
    lab.ping_pairs(&[(1, 2), (2, 1), (3, 4), (4, 3)], true);
    lab.ping_pairs(&[(2, 1), (4, 3)], true);
    // 10↔20 do not, in either direction (all hosts share one subnet: only the VLANs
    // separate them).
    lab.ping_pairs(&Lab::cross_pairs(&[1, 2], &[3, 4]), false);

    // Learning is keyed by (VLAN, MAC): the shared MAC is two entries.
    let fdb = lab.fdb("br0");
    assert_eq!(
        entries_of(&fdb, shared),
        vec![(10, "h1p".to_string()), (20, "h3p".to_string())],
        "the MAC {shared} of h1 (VLAN 10) and h3 (VLAN 20) must be two FDB entries: {fdb:#?}"
    );
    for (n, port, vid) in [(2u8, "h2p", 10u16), (4, "h4p", 20)] {
        let mac = lab.host_mac(n);
        let e: Vec<_> = fdb
            .iter()
            .filter(|e| e.mac.eq_ignore_ascii_case(&mac))
            .collect();
        assert!(
            e.len() == 1 && e[0].vlan == vid && e[0].port == port,
            "h{n}'s MAC {mac} should be learned once, VLAN {vid} on {port}: {fdb:#?}"
        );
    }
    assert!(
        fdb.iter().all(|e| e.vlan == 10 || e.vlan == 20),
        "entries outside VLANs 10 and 20: {fdb:#?}"
    );
    let fdb_text = lab.vsctl_ok(&["fdb-show", "br0"]);
    assert!(
        fdb_text.lines().filter(|l| l.contains(shared)).count() == 2,
        "fdb-show text should list {shared} twice:\n{fdb_text}"
    );
    let st = lab.stats("br0");
    assert_eq!(
        counter(&st, "moved"),
        moved0,
        "a MAC moved between ports although no host moved: {st:#?}"
    );

    // A broadcast from h1 (VLAN 10) reaches h2 (VLAN 10) and neither h3 nor h4 (VLAN 20).
    let mut caps = Vec::new();
    for n in [2u8, 3, 4] {
        let ns = lab.host(n).ns.clone();
        caps.push((
            n,
            Capture::start(
                &lab,
                &ns,
                "eth0",
                &format!("tcpdump-bcast-h{n}"),
                &["-Q", "in", "icmp and ether broadcast"],
            ),
        ));
    }
    let before = lab.stats("br0");
    let bcast = lab.broadcast();
    let _ = lab.ping_noreply(1, &bcast, 5, "0.1", &["-b"]);
    caps[0].1.wait_for(
        "h2 (VLAN 10) to receive h1's 5 broadcasts",
        Duration::from_secs(10),
        |f| f.len() >= 5,
    );
    let after = lab.stats("br0");
    let mut caps = caps.into_iter();
    let (_, c2) = caps.next().unwrap();
    let _ = c2.stop(Duration::ZERO);
    for (n, c) in caps {
        let seen = c.stop(Duration::from_millis(300));
        assert!(
            seen.is_empty(),
            "h{n} (VLAN 20) saw broadcasts from h1 (VLAN 10):\n{}\n{}",
            seen.join("\n"),
            lab.diag()
        );
    }
    let tx = |s: &BridgeStats, p: &str| port_counts(s, p).2;
    assert!(
        tx(&after, "h2p") >= tx(&before, "h2p") + 5,
        "h2p did not send the 5 broadcasts: {before:#?}\n{after:#?}"
    );
    for p in ["h3p", "h4p"] {
        assert!(
            tx(&after, p) < tx(&before, p) + 5,
            "{p} (VLAN 20) sent {} frames during 5 VLAN 10 broadcasts",
            tx(&after, p) - tx(&before, p)
        );
    }

    // TCP access→access inside VLAN 10.
    let v = lab.iperf3(1, 2, 2, &[]);
    let (g, retr) = iperf_result(&v);
    report(&format!(
        "iperf3 TCP access->access, VLAN 10, one switch (h1->h2): {g:.3} Gbit/s ({retr} retransmits)"
    ));
    assert!(g > 0.0, "TCP throughput is zero: {v}\n{}", lab.diag());
    if let Err(e) = bad_drops(&lab.stats("br0")) {
        panic!("drops after TCP access->access:\n{e}\n{}", lab.diag());
    }
}

/// Two of our switches (two namespaces, two daemons) joined by a veth trunk tagged 10 and
/// 20, a host of each VLAN on each side: same-VLAN hosts reach each other across the
/// trunk, others do not; every frame on the trunk carries VLAN 10 or 20 (tcpdump on both
/// trunk ends); a priority-tagged frame keeps its PCP across; TCP access→trunk→access.
#[test]
fn two_switches_joined_by_a_trunk_carry_vlans_10_and_20() {
    let mut lab = Lab::new("vtrunk", 61);
    let b = lab.add_switch("swb");
    let a_ns = lab.sw.clone();
    lab.add_host(); // h1: A, VLAN 10
    lab.add_host(); // h2: A, VLAN 20
    lab.add_host_on(&b.ns); // h3: B, VLAN 10
    lab.add_host_on(&b.ns); // h4: B, VLAN 20
    lab.veth_between(&a_ns, "trA", &b.ns, "trB");
    lab.start_daemon();
    lab.vsctl_ok(&["add-br", "br0"]);
    for p in ["h1p", "h2p", "trA"] {
        lab.vsctl_ok(&["add-port", "br0", p]);
    }
    access(&lab, "br0", "h1p", 10);
    access(&lab, "br0", "h2p", 20);
    lab.vsctl_ok(&["add-vlan", "br0", "trA", "10,20"]);
    lab.wait_ports("br0", &["h1p", "h2p", "trA"], "up", Duration::from_secs(10));
    b.vsctl_ok(&["add-br", "br0"]);
    for p in ["h3p", "h4p", "trB"] {
        b.vsctl_ok(&["add-port", "br0", p]);
    }
    b.vsctl_ok(&["add-vlan", "br0", "h3p", "10", "--access"]);
    b.vsctl_ok(&["add-vlan", "br0", "h4p", "20", "--access"]);
    b.vsctl_ok(&["add-vlan", "br0", "trB", "10,20"]);
    b.wait_ports_up("br0", &["h3p", "h4p", "trB"], Duration::from_secs(10));
    for (who, rows) in [("A", lab.list_vlans("br0")), ("B", b.list_vlans("br0"))] {
        let trunk = rows.iter().find(|r| r.port.starts_with("tr")).unwrap();
        assert_eq!(
            trunk.vlans,
            trunk_vlans(&[10, 20]),
            "switch {who}: trunk VLANs: {rows:#?}"
        );
    }
    let diag = |lab: &Lab| format!("{}\n{}", lab.diag(), b.diag());

    // A capture on each trunk end sees what the other switch sends: vswitchd transmits
    // with PACKET_QDISC_BYPASS, which taps on the sending end do not see.
    let cap_a = Capture::start(&lab, &a_ns, "trA", "tcpdump-trA", &["-Q", "in"]);
    let cap_b = Capture::start(&lab, &b.ns, "trB", "tcpdump-trB", &["-Q", "in"]);
    let h3_ns = lab.host(3).ns.clone();
    let cap_h3 = Capture::start(&lab, &h3_ns, "eth0", "tcpdump-h3", &["-Q", "in"]);

    let reach = [(1u8, 3u8), (3, 1), (2, 4), (4, 2)];
    lab.ping_pairs(&reach, true);
    let mut cross = Lab::cross_pairs(&[1], &[4]);
    cross.extend(Lab::cross_pairs(&[2], &[3]));
    cross.extend(Lab::cross_pairs(&[1], &[2]));
    cross.extend(Lab::cross_pairs(&[3], &[4]));
    lab.ping_pairs(&cross, false);

    // PCP: three priority-tagged frames (VID 0, PCP 5) from h1 go to VLAN 10 (h1p's PVID)
    // keeping PCP 5, so the far trunk end sees `vlan 10, p 5`; h3 gets them untagged.
    let h1_ns = lab.host(1).ns.clone();
    let prio_src = "02:00:00:61:00:05";
    lab.scapy_sendp(&h1_ns, "eth0", &[bframe(prio_src, &[(0, 5)], 0x88b5)], 3);
    cap_b.wait_for(
        "the 3 priority-tagged frames from h1 on trB",
        Duration::from_secs(10),
        |f| with(f, "0x88b5").len() >= 3,
    );
    cap_h3.wait_for(
        "the 3 priority-tagged frames from h1 at h3",
        Duration::from_secs(10),
        |f| with(f, "0x88b5").len() >= 3,
    );
    let on_a = cap_a.stop(Duration::from_millis(200));
    let on_b = cap_b.stop(Duration::from_millis(200));
    let at_h3 = cap_h3.stop(Duration::ZERO);

    assert_eq!(
        (with(&on_b, "0x88b5").len(), with(&at_h3, "0x88b5").len()),
        (3, 3),
        "the 3 priority-tagged frames from h1, on trB and at h3:\n{}\n--\n{}",
        on_b.join("\n"),
        at_h3.join("\n")
    );
    for f in with(&on_b, "0x88b5") {
        assert!(
            f.contains("ethertype 802.1Q (0x8100)") && f.contains("vlan 10, p 5,"),
            "priority-tagged frame from h1 (PCP 5) crossed the trunk without `vlan 10, p 5`: {f}"
        );
    }
    for f in with(&at_h3, "0x88b5") {
        assert!(
            !f.contains("802.1Q"),
            "h3 (access port) received a tagged frame: {f}"
        );
    }

    // Every frame on the trunk is tagged 10 or 20, and each VLAN carries only its hosts.
    // The VLAN each source MAC belongs to: h1, h3 and h1's crafted frames in 10; h2, h4 in 20.
    let mut home: Vec<(String, u16)> = vec![(prio_src.to_string(), 10)];
    for (n, vid) in [(1u8, 10u16), (2, 20), (3, 10), (4, 20)] {
        home.push((lab.host_mac(n), vid));
    }
    for (end, frames) in [("trA", &on_a), ("trB", &on_b)] {
        assert!(!frames.is_empty(), "nothing captured on {end}");
        let mut vids = BTreeSet::new();
        for f in frames.iter() {
            let tagged = f.contains("ethertype 802.1Q (0x8100), length");
            let vid = if tagged && f.contains(": vlan 10,") {
                10
            } else if tagged && f.contains(": vlan 20,") {
                20
            } else {
                panic!(
                    "frame on {end} not tagged with VLAN 10 or 20: {f}\nall frames:\n{}",
                    frames.join("\n")
                );
            };
            vids.insert(vid);
            // `TIME SRC > DST, …`: the sender must be a host of that VLAN.
            let src = f.split_whitespace().nth(1).unwrap_or_default();
            let src_vid = home
                .iter()
                .find(|(m, _)| m.eq_ignore_ascii_case(src))
                .map(|(_, v)| *v);
            assert_eq!(
                src_vid,
                Some(vid),
                "frame on {end} in VLAN {vid} sent by {src}, which is not a host of that VLAN: {f}"
            );
        }
        assert_eq!(
            vids,
            BTreeSet::from([10, 20]),
            "{end} should carry both VLANs:\n{}",
            frames.join("\n")
        );
        report(&format!(
            "trunk {end}: {} frames captured, every one tagged (VLANs {vids:?})",
            frames.len()
        ));
    }

    // Each switch learned the far hosts on its trunk, in their VLANs.
    let fdb_a = lab.fdb("br0");
    for (n, vid) in [(3u8, 10u16), (4, 20)] {
        let mac = lab.host_mac(n);
        assert!(
            fdb_a
                .iter()
                .any(|e| e.mac.eq_ignore_ascii_case(&mac) && e.vlan == vid && e.port == "trA"),
            "switch A did not learn h{n}'s MAC {mac} in VLAN {vid} on trA: {fdb_a:#?}"
        );
    }

    let v = lab.iperf3(1, 3, 2, &[]);
    let (g, retr) = iperf_result(&v);
    report(&format!(
        "iperf3 TCP access->trunk->access, VLAN 10, two vswitchd (h1->h3): {g:.3} Gbit/s ({retr} retransmits)"
    ));
    assert!(g > 0.0, "TCP throughput is zero: {v}\n{}", diag(&lab));
    for (who, s) in [("A", lab.stats("br0")), ("B", b.stats("br0"))] {
        if let Err(e) = bad_drops(&s) {
            panic!(
                "switch {who}: drops after TCP over the trunk:\n{e}\n{}",
                diag(&lab)
            );
        }
    }
}

/// Interop with Open vSwitch (userspace datapath): our trunk joined to an OVS bridge whose
/// own ports are access ports `tag=10` and `tag=20`. Our VLAN 10 host reaches OVS's
/// VLAN 10 host and only it, the same for 20, with ping and TCP both ways; both switches
/// learn the other's hosts in the right VLAN.
#[test]
fn ovs_interop_trunk_to_ovs_access_ports() {
    let mut lab = Lab::new("vovs", 62);
    common::require_tools(&common::OVS_TOOLS);
    let ovs_ns = lab.add_named_ns("ovs");
    let sw = lab.sw.clone();
    lab.add_host(); // h1: ours, VLAN 10
    lab.add_host(); // h2: ours, VLAN 20
    lab.add_host_on(&ovs_ns); // h3: OVS tag=10
    lab.add_host_on(&ovs_ns); // h4: OVS tag=20
    lab.veth_between(&sw, "tr0", &ovs_ns, "tr1");
    let ovs = Ovs::start(&lab, &ovs_ns);
    ovs.vsctl(&[
        "add-br",
        "br0",
        "--",
        "set",
        "bridge",
        "br0",
        "datapath_type=netdev",
    ]);
    ovs.vsctl(&[
        "add-port", "br0", "tr1", "--", "add-port", "br0", "h3p", "tag=10", "--", "add-port",
        "br0", "h4p", "tag=20",
    ]);
    let dpif = ovs.appctl(&["dpif/show"]);
    assert!(
        dpif.success() && dpif.stdout.contains("netdev@ovs-netdev"),
        "OVS bridge is not on the userspace (netdev) datapath: {dpif}\n{}",
        ovs.diag()
    );
    common::wait_until(
        "ovs-vswitchd to enable userspace TSO",
        Duration::from_secs(10),
        || {
            ovs.vswitchd_log()
                .contains("Userspace TCP Segmentation Offloading support enabled")
        },
    );

    lab.start_daemon();
    lab.vsctl_ok(&["add-br", "br0"]);
    for p in ["h1p", "h2p", "tr0"] {
        lab.vsctl_ok(&["add-port", "br0", p]);
    }
    access(&lab, "br0", "h1p", 10);
    access(&lab, "br0", "h2p", 20);
    lab.vsctl_ok(&["add-vlan", "br0", "tr0", "10,20"]);
    lab.wait_ports("br0", &["h1p", "h2p", "tr0"], "up", Duration::from_secs(10));

    lab.ping_pairs(&[(1, 3), (3, 1), (2, 4), (4, 2)], true);
    let mut cross = Lab::cross_pairs(&[1], &[4]);
    cross.extend(Lab::cross_pairs(&[2], &[3]));
    cross.extend(Lab::cross_pairs(&[1], &[2]));
    cross.extend(Lab::cross_pairs(&[3], &[4]));
    lab.ping_pairs(&cross, false);

    // Both sides learned the other's hosts in the right VLAN.
    let fdb = lab.fdb("br0");
    for (n, vid) in [(3u8, 10u16), (4, 20)] {
        let mac = lab.host_mac(n);
        assert!(
            fdb.iter()
                .any(|e| e.mac.eq_ignore_ascii_case(&mac) && e.vlan == vid && e.port == "tr0"),
            "we did not learn OVS's h{n} ({mac}) in VLAN {vid} on tr0: {fdb:#?}"
        );
    }
    let ofport = ovs
        .vsctl(&["get", "Interface", "tr1", "ofport"])
        .trim()
        .to_string();
    let ovs_fdb = ovs.appctl(&["fdb/show", "br0"]);
    assert!(ovs_fdb.success(), "ovs-appctl fdb/show failed: {ovs_fdb}");
    for (n, vid) in [(1u8, "10"), (2, "20")] {
        let mac = lab.host_mac(n);
        let ok = ovs_fdb.stdout.lines().any(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            t.len() >= 3 && t[0] == ofport && t[1] == vid && t[2].eq_ignore_ascii_case(&mac)
        });
        assert!(
            ok,
            "OVS did not learn our h{n} ({mac}) in VLAN {vid} on tr1 (ofport {ofport}):\n{}",
            ovs_fdb.stdout
        );
    }

    // TCP both ways in both VLANs.
    for (from, to, extra, what) in [
        (1u8, 3u8, &[][..], "ours VLAN 10 h1 -> OVS h3"),
        (1, 3, &["-R"][..], "OVS VLAN 10 h3 -> ours h1"),
        (2, 4, &[][..], "ours VLAN 20 h2 -> OVS h4"),
        (2, 4, &["-R"][..], "OVS VLAN 20 h4 -> ours h2"),
    ] {
        let v = lab.iperf3(from, to, 2, extra);
        let (g, retr) = iperf_result(&v);
        report(&format!(
            "iperf3 TCP through vswitchd trunk + OVS userspace datapath, {what}: {g:.3} Gbit/s ({retr} retransmits)"
        ));
        assert!(
            g > 0.0,
            "TCP {what} is zero: {v}\n{}\n{}",
            lab.diag(),
            ovs.diag()
        );
    }
    let st = lab.stats("br0");
    let d: Vec<String> = st
        .ports
        .iter()
        .map(|p| format!("{} {:?}", p.name, p.drops))
        .collect();
    report(&format!(
        "vswitchd drops after TCP with OVS (benches/run.sh shows OVS alone retransmitting as much, untagged): {}",
        d.join(", ")
    ));
    if let Err(e) = bad_drops(&st) {
        panic!("drops after TCP with OVS:\n{e}\n{}", lab.diag());
    }
}

/// Tagged frames crafted with scapy into a trunk port (h3p: tagged 10 and 20, no PVID)
/// are switched by their VID, the tags arriving through PACKET_AUXDATA (rx-vlan offload
/// is on, veth's default): tagged 10 → the VLAN 10 access host untagged, the other trunk
/// (h4p) tagged 10 with PCP and DEI kept, never VLAN 20; tagged 30 → dropped
/// (`vlan_not_member`); untagged → dropped (`vlan_untagged`); an 802.1ad S-tag 10 over a
/// C-tag 20 → VLAN 10 as QinQ (TPID 0x88a8 kept, inner tag untouched), never VLAN 20;
/// one source MAC in VLANs 10 and 20 is two FDB entries. Into the VLAN 10 access port
/// h1p: a double-tagged frame (outer 10, inner 20: VLAN hopping) stays in VLAN 10 with
/// its inner tag untouched and never reaches VLAN 20; a frame tagged 20 is dropped; a
/// priority-tagged frame goes to VLAN 10 keeping its PCP. Once the trunk leaves VLAN 10,
/// a unicast to a MAC learned there in VLAN 10 does not go out of it (`vlan_filtered`).
#[test]
fn tagged_frames_into_a_trunk_are_switched_by_vid() {
    let mut lab = Lab::new("vinj", 63);
    for _ in 0..4 {
        lab.add_host();
    }
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2, 3, 4]);
    access(&lab, "br0", "h1p", 10);
    access(&lab, "br0", "h2p", 20);
    lab.vsctl_ok(&["add-vlan", "br0", "h3p", "10,20"]);
    lab.vsctl_ok(&["add-vlan", "br0", "h4p", "10,20"]);
    let rows = lab.list_vlans("br0");
    for p in ["h3p", "h4p"] {
        assert!(
            rows.contains(&VlanRow {
                port: p.into(),
                vlans: trunk_vlans(&[10, 20])
            }),
            "{p} should be a trunk of 10,20: {rows:#?}"
        );
    }
    // The kernel strips received tags into metadata on these ports: the daemon only sees
    // them through PACKET_AUXDATA.
    let sw = lab.sw.clone();
    let k = lab.exec_ok(&sw, &["ethtool", "-k", "h3p"]);
    for feature in ["rx-vlan-offload: on", "rx-vlan-stag-hw-parse: on"] {
        assert!(
            k.lines().any(|l| l.trim().starts_with(feature)),
            "h3p should have {feature} (veth's default):\n{k}"
        );
    }

    let ns: Vec<String> = (1..=4).map(|n| lab.host(n).ns.clone()).collect();
    let caps: Vec<Capture> = (0..4)
        .map(|i| {
            Capture::start(
                &lab,
                &ns[i],
                "eth0",
                &format!("tcpdump-h{}", i + 1),
                &["-Q", "in"],
            )
        })
        .collect();
    let before = lab.stats("br0");

    // Into trunk h3p, all from one source MAC.
    let ms = "02:00:00:63:00:01";
    lab.scapy_sendp(
        &ns[2],
        "eth0",
        &[
            frame(ms, BCAST, &[("q", 10, 5, 1)], 0x88b5),
            frame(ms, BCAST, &[("q", 20, 0, 0)], 0x88b6),
            frame(ms, BCAST, &[("q", 30, 0, 0)], 0x88b7),
            frame(ms, BCAST, &[], 0x88b8),
            frame(ms, BCAST, &[("ad", 10, 3, 0), ("q", 20, 0, 0)], 0x88bd),
        ],
        3,
    );
    // Into h1's access port (VLAN 10).
    let mh = "02:00:00:63:00:02";
    lab.scapy_sendp(
        &ns[0],
        "eth0",
        &[
            bframe(mh, &[(10, 0), (20, 0)], 0x88b9),
            bframe(mh, &[(20, 0)], 0x88ba),
            bframe(mh, &[(0, 6)], 0x88bb),
        ],
        3,
    );
    let n3 = |et: &'static str| move |f: &[String]| with(f, et).len() >= 3;
    caps[0].wait_for(
        "VLAN 10 frames from the trunk at h1",
        Duration::from_secs(10),
        |f| n3("0x88b5")(f) && n3("0x88bd")(f),
    );
    caps[1].wait_for(
        "VLAN 20 frames from the trunk at h2",
        Duration::from_secs(10),
        n3("0x88b6"),
    );
    for c in &caps[2..] {
        c.wait_for(
            "h1's double-tagged and priority-tagged frames on the trunk",
            Duration::from_secs(10),
            |f| n3("0x88b9")(f) && n3("0x88bb")(f),
        );
    }
    caps[3].wait_for(
        "the trunk-to-trunk frames at h4",
        Duration::from_secs(10),
        |f| n3("0x88b5")(f) && n3("0x88b6")(f) && n3("0x88bd")(f),
    );
    let mut caps = caps.into_iter();
    let at_h1 = caps.next().unwrap().stop(Duration::from_millis(300));
    let at_h2 = caps.next().unwrap().stop(Duration::ZERO);
    let cap_h3 = caps.next().unwrap();
    let cap_h4 = caps.next().unwrap();
    let at_h3 = cap_h3.frames();
    let at_h4 = cap_h4.frames();
    let all = |v: &[String]| v.join("\n");
    let exactly = |lines: &[String], et: &str, n: usize, host: &str, what: &str| {
        let got = with(lines, et);
        assert_eq!(
            got.len(),
            n,
            "{host} should get {n} frames {what} ({et}):\n{}",
            all(lines)
        );
        got.into_iter().cloned().collect::<Vec<String>>()
    };

    // h1 (VLAN 10 access): the frames tagged 10 untagged; the QinQ frame with its S-tag
    // popped and its C-tag 20 untouched; nothing else.
    for f in exactly(&at_h1, "0x88b5", 3, "h1", "tagged 10 on the trunk") {
        assert!(
            !f.contains("802.1Q"),
            "tag not popped towards access port h1p: {f}"
        );
    }
    for f in exactly(&at_h1, "0x88bd", 3, "h1", "S-tag 10 over C-tag 20") {
        assert!(
            f.contains(
                "ethertype 802.1Q (0x8100), length 64: vlan 20, p 0, ethertype Unknown (0x88bd)"
            ),
            "QinQ frame should reach access port h1p with only its inner C-tag 20: {f}"
        );
    }
    for et in ["0x88b6", "0x88b7", "0x88b8", "0x88b9", "0x88ba", "0x88bb"] {
        exactly(&at_h1, et, 0, "h1", "of VLAN 20, dropped, or its own");
    }
    // h2 (VLAN 20 access): the frames tagged 20, untagged; none of VLAN 10 — not the
    // QinQ frame (inner tag 20) nor the double-tagged one from h1 (inner tag 20).
    for f in exactly(&at_h2, "0x88b6", 3, "h2", "tagged 20 on the trunk") {
        assert!(
            !f.contains("802.1Q"),
            "tag not popped towards access port h2p: {f}"
        );
    }
    for et in [
        "0x88b5", "0x88b7", "0x88b8", "0x88b9", "0x88ba", "0x88bb", "0x88bd",
    ] {
        exactly(&at_h2, et, 0, "h2", "of VLAN 10 or dropped");
    }
    // Trunk h4: trunk-to-trunk frames keep VID, PCP and DEI; the QinQ frame keeps its
    // TPID 0x88a8 and inner tag.
    for f in exactly(&at_h4, "0x88b5", 3, "h4", "tagged 10, PCP 5, DEI") {
        assert!(
            f.contains("ethertype 802.1Q (0x8100), length 64: vlan 10, p 5, DEI, ethertype Unknown (0x88b5)"),
            "frame tagged 10 with PCP 5 and DEI left trunk h4p as: {f}"
        );
    }
    for f in exactly(&at_h4, "0x88b6", 3, "h4", "tagged 20") {
        assert!(
            f.contains("length 64: vlan 20, p 0, ethertype Unknown (0x88b6)"),
            "frame tagged 20 left trunk h4p as: {f}"
        );
    }
    for f in exactly(&at_h4, "0x88bd", 3, "h4", "S-tag 10 over C-tag 20") {
        assert!(
            f.contains("ethertype 802.1Q-QinQ (0x88a8), length 68: vlan 10, p 3, ethertype 802.1Q (0x8100), vlan 20, p 0, ethertype Unknown (0x88bd)"),
            "QinQ frame (802.1ad S-tag 10, PCP 3, over C-tag 20) left trunk h4p as: {f}"
        );
    }
    for et in ["0x88b7", "0x88b8", "0x88ba"] {
        exactly(&at_h4, et, 0, "h4", "that were to be dropped");
    }
    // Both trunks: h1's double-tagged frame leaves in VLAN 10 with its inner tag 20
    // intact, never as VLAN 20; the priority-tagged one as VLAN 10 with PCP 6.
    for (host, lines) in [("h3", &at_h3), ("h4", &at_h4)] {
        for f in exactly(lines, "0x88b9", 3, host, "double-tagged from h1") {
            assert!(
                f.contains("length 68: vlan 10, p 0, ethertype 802.1Q (0x8100), vlan 20, p 0, ethertype Unknown (0x88b9)"),
                "double-tagged frame (outer 10, inner 20) from access port h1p left trunk {host} as: {f}"
            );
        }
        for f in exactly(lines, "0x88bb", 3, host, "priority-tagged from h1") {
            assert!(
                f.contains("length 64: vlan 10, p 6, ethertype Unknown (0x88bb)"),
                "priority-tagged frame (PCP 6) from h1p should leave trunk {host} as VLAN 10, p 6: {f}"
            );
        }
    }
    // h3 gets none of its own frames back.
    for et in ["0x88b5", "0x88b6", "0x88b7", "0x88b8", "0x88ba", "0x88bd"] {
        exactly(&at_h3, et, 0, "h3", "it sent itself, or dropped");
    }

    // Counters: each dropped frame under its reason, on its ingress port.
    let after = lab.stats("br0");
    let delta = |p: &str, r: &str| drops(&after, p, r) - drops(&before, p, r);
    assert_eq!(
        delta("h3p", "vlan_not_member"),
        3,
        "frames tagged 30 on trunk h3p: {after:#?}"
    );
    assert_eq!(
        delta("h3p", "vlan_untagged"),
        3,
        "untagged frames on trunk h3p without PVID: {after:#?}"
    );
    assert_eq!(
        delta("h1p", "vlan_not_member"),
        3,
        "frames tagged 20 into access port h1p (VLAN 10): {after:#?}"
    );
    assert_eq!(delta("h1p", "vlan_untagged"), 0, "{after:#?}");

    // One MAC, two VLANs: two entries on the trunk port; none for the dropped frames.
    let fdb = lab.fdb("br0");
    assert_eq!(
        entries_of(&fdb, ms),
        vec![(10, "h3p".to_string()), (20, "h3p".to_string())],
        "{ms}, sent tagged 10 and 20 (and 30 and untagged, both dropped) on h3p: {fdb:#?}"
    );
    assert_eq!(
        entries_of(&fdb, mh),
        vec![(10, "h1p".to_string())],
        "{mh}, sent into access port h1p (VLAN 10): {fdb:#?}"
    );

    // h3p leaves VLAN 10. A unicast from h1 to ms, learned on h3p in VLAN 10, must not go
    // out of h3p now: dropped as `vlan_filtered` if the entry is still there, or flooded
    // in VLAN 10 (reaching trunk h4p only) if del-vlan flushed it.
    lab.vsctl_ok(&["del-vlan", "br0", "h3p", "10"]);
    let rows = lab.list_vlans("br0");
    assert!(
        rows.contains(&VlanRow {
            port: "h3p".into(),
            vlans: trunk_vlans(&[20])
        }),
        "h3p should be a trunk of 20 only: {rows:#?}"
    );
    let flushed = !entries_of(&lab.fdb("br0"), ms).contains(&(10, "h3p".to_string()));
    let before = lab.stats("br0");
    lab.scapy_sendp(&ns[0], "eth0", &[frame(mh, ms, &[], 0x88bc)], 3);
    if flushed {
        cap_h4.wait_for(
            "the flooded unicast at h4",
            Duration::from_secs(10),
            n3("0x88bc"),
        );
    }
    let at_h3 = cap_h3.stop(Duration::from_millis(300));
    let at_h4 = cap_h4.stop(Duration::ZERO);
    exactly(
        &at_h3,
        "0x88bc",
        0,
        "h3",
        "to a MAC learned on h3p in VLAN 10, sent after h3p left VLAN 10",
    );
    let after = lab.stats("br0");
    let filtered = counter(&after, "vlan_filtered") - counter(&before, "vlan_filtered");
    if flushed {
        report("del-vlan flushed the port's FDB entries of that VLAN; the unicast was flooded in VLAN 10");
        exactly(&at_h4, "0x88bc", 3, "h4", "flooded in VLAN 10");
    } else {
        report(&format!(
            "del-vlan kept the port's FDB entries of that VLAN; the unicast was dropped as vlan_filtered ({filtered})"
        ));
        assert_eq!(
            filtered, 3,
            "3 unicasts to a MAC learned on a port that left the VLAN: vlan_filtered should count them: {after:#?}"
        );
    }
}

/// Bad `add-vlan`/`del-vlan` input: each refused with exit 1 and one stderr line, and the
/// config file byte-for-byte unchanged; the daemon refuses the same through the raw
/// protocol (it does not rely on vsctl's checks).
#[test]
fn bad_vlan_input_is_refused_and_changes_nothing() {
    let mut lab = Lab::new("vbad", 64);
    lab.add_host();
    lab.add_host();
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2]);
    access(&lab, "br0", "h1p", 10);
    lab.vsctl_ok(&["add-vlan", "br0", "h2p", "10,20"]);
    let conf = fs::read(&lab.db).unwrap();
    let rows = lab.list_vlans("br0");

    // (what, arguments, a word the error line must name)
    let cases: &[(&str, &[&str], &str)] = &[
        ("VID 0", &["add-vlan", "br0", "h1p", "0"], "0"),
        ("VID 4095", &["add-vlan", "br0", "h1p", "4095"], "4095"),
        ("VID 5000", &["add-vlan", "br0", "h1p", "5000"], "5000"),
        ("VID abc", &["add-vlan", "br0", "h1p", "abc"], "abc"),
        ("VID 70000", &["add-vlan", "br0", "h1p", "70000"], "70000"),
        (
            "backwards range",
            &["add-vlan", "br0", "h1p", "30-20"],
            "30-20",
        ),
        (
            "range into 4095",
            &["add-vlan", "br0", "h1p", "4090-4095"],
            "4095",
        ),
        (
            "missing port",
            &["add-vlan", "br0", "nosuch", "10"],
            "nosuch",
        ),
        ("missing bridge", &["add-vlan", "nobr", "h1p", "10"], "nobr"),
        (
            "--pvid with two VIDs",
            &["add-vlan", "br0", "h2p", "10,20", "--pvid"],
            "pvid",
        ),
        (
            "--access with two VIDs",
            &["add-vlan", "br0", "h2p", "10,20", "--access"],
            "access",
        ),
        (
            "del-vlan of a VID the port is not in",
            &["del-vlan", "br0", "h1p", "30"],
            "30",
        ),
        (
            "del-vlan partly not a member",
            &["del-vlan", "br0", "h2p", "20,30"],
            "30",
        ),
        ("del-vlan VID 0", &["del-vlan", "br0", "h2p", "0"], "0"),
        (
            "del-vlan on a missing port",
            &["del-vlan", "br0", "nosuch", "10"],
            "nosuch",
        ),
        (
            "list-vlans of a missing bridge",
            &["list-vlans", "nobr"],
            "nobr",
        ),
    ];
    for (what, args, word) in cases {
        let o = lab.vsctl(args);
        let line = assert_vsctl_error(&o);
        assert!(
            line.contains(word),
            "{what}: the error should name {word:?}: {line}"
        );
        let now = fs::read(&lab.db).unwrap();
        assert!(
            now == conf,
            "{what} (`vsctl {}` -> {line}) changed the config file",
            args.join(" ")
        );
    }

    // The daemon checks again: requests vsctl would never send.
    let sock = lab.sock.clone();
    let raw: &[(&str, &str)] = &[
        (
            "VID 0",
            r#"{"op":"add-vlan","bridge":"br0","port":"h1p","vids":[0]}"#,
        ),
        (
            "VID 4095",
            r#"{"op":"add-vlan","bridge":"br0","port":"h1p","vids":[4095]}"#,
        ),
        (
            "VID 5000",
            r#"{"op":"add-vlan","bridge":"br0","port":"h1p","vids":[5000]}"#,
        ),
        (
            "VID 70000",
            r#"{"op":"add-vlan","bridge":"br0","port":"h1p","vids":[70000]}"#,
        ),
        (
            "VID -1",
            r#"{"op":"add-vlan","bridge":"br0","port":"h1p","vids":[-1]}"#,
        ),
        (
            "VID \"abc\"",
            r#"{"op":"add-vlan","bridge":"br0","port":"h1p","vids":["abc"]}"#,
        ),
        (
            "no VIDs",
            r#"{"op":"add-vlan","bridge":"br0","port":"h1p","vids":[]}"#,
        ),
        (
            "good and bad VIDs",
            r#"{"op":"add-vlan","bridge":"br0","port":"h1p","vids":[30,4095]}"#,
        ),
        (
            "pvid with two VIDs",
            r#"{"op":"add-vlan","bridge":"br0","port":"h2p","vids":[10,20],"pvid":true}"#,
        ),
        (
            "access with two VIDs",
            r#"{"op":"add-vlan","bridge":"br0","port":"h2p","vids":[10,20],"access":true}"#,
        ),
        (
            "missing port",
            r#"{"op":"add-vlan","bridge":"br0","port":"nosuch","vids":[10]}"#,
        ),
        (
            "missing bridge",
            r#"{"op":"add-vlan","bridge":"nobr","port":"h1p","vids":[10]}"#,
        ),
        (
            "del-vlan VID 0",
            r#"{"op":"del-vlan","bridge":"br0","port":"h2p","vids":[0]}"#,
        ),
        (
            "del-vlan not a member",
            r#"{"op":"del-vlan","bridge":"br0","port":"h1p","vids":[30]}"#,
        ),
    ];
    for (what, req) in raw {
        let mut bytes = req.as_bytes().to_vec();
        bytes.push(b'\n');
        let _ = assert_refused(&sock, what, &bytes);
        let now = fs::read(&lab.db).unwrap();
        assert!(
            now == conf,
            "raw request {what} ({req}) changed the config file"
        );
    }
    assert_eq!(lab.list_vlans("br0"), rows, "VLAN table changed");

    // del-vlan with no VID at all (vsctl refuses to send it, as add-vlan with none is
    // refused by the daemon): not a VLAN, so an error that changes nothing.
    let req = r#"{"op":"del-vlan","bridge":"br0","port":"h1p","vids":[]}"#;
    let reply = common::raw_request(&sock, format!("{req}\n").as_bytes());
    assert!(
        fs::read(&lab.db).unwrap() == conf,
        "raw {req} changed the config file (reply {reply:?})"
    );
    assert_eq!(lab.list_vlans("br0"), rows, "VLAN table changed by {req}");
    assert!(
        matches!(&reply, common::Raw::Line(l) if l.contains(r#""ok":false"#)),
        "vswitchd accepted {req}: {reply:?} (add-vlan with no VID is refused with \"no VLAN given\")"
    );

    // Still alive and serving; a good change still works afterwards.
    lab.vsctl_ok(&["add-vlan", "br0", "h2p", "30"]);
    assert!(
        fs::read(&lab.db).unwrap() != conf,
        "a good add-vlan did not reach the config file"
    );
}

/// The VLAN configuration survives `kill -9` and a restart on the same `--db`
/// (`list-vlans --json` and `show --json` equal), and traffic is still isolated.
#[test]
fn vlan_config_survives_kill_9() {
    let mut lab = Lab::new("vkill", 65);
    for _ in 0..5 {
        lab.add_host();
    }
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2, 3, 4, 5]);
    access(&lab, "br0", "h1p", 10);
    access(&lab, "br0", "h2p", 10);
    access(&lab, "br0", "h3p", 20);
    access(&lab, "br0", "h4p", 20);
    // A richer port: tagged 10, 20 and 100-199, untagged 30 as PVID.
    lab.vsctl_ok(&["add-vlan", "br0", "h5p", "10,20,100-199"]);
    lab.vsctl_ok(&["add-vlan", "br0", "h5p", "30", "--untagged", "--pvid"]);
    let rows = lab.list_vlans("br0");
    let h5 = rows.iter().find(|r| r.port == "h5p").unwrap();
    let mut tagged = vec![10u16, 20];
    tagged.extend(100..=199);
    assert_eq!(
        h5.vlans,
        PortVlans {
            pvid: Some(30),
            untagged: vec![30],
            tagged
        },
        "h5p: {rows:#?}"
    );
    let vlans_json = lab.vsctl_ok(&["--json", "list-vlans", "br0"]);
    let show_vlans = |lab: &Lab| {
        lab.show()
            .into_iter()
            .flat_map(|b| b.ports.into_iter().map(|p| (p.name, p.vlans)))
            .collect::<Vec<_>>()
    };
    let show_before = show_vlans(&lab);
    lab.ping_pairs(&[(1, 2), (3, 4)], true);
    lab.ping_pairs(&[(1, 3), (2, 4)], false);

    let st = lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    assert!(
        st.code().is_none(),
        "vswitchd was not killed by SIGKILL: {st}"
    );
    lab.start_daemon();
    lab.wait_ports(
        "br0",
        &["h1p", "h2p", "h3p", "h4p", "h5p"],
        "up",
        Duration::from_secs(10),
    );
    let vlans_json2 = lab.vsctl_ok(&["--json", "list-vlans", "br0"]);
    assert_eq!(
        vlans_json2, vlans_json,
        "list-vlans --json differs after kill -9 and restart"
    );
    assert_eq!(
        show_vlans(&lab),
        show_before,
        "show --json VLANs differ after restart"
    );

    lab.ping_pairs(&[(1, 2), (2, 1), (3, 4), (4, 3)], true);
    lab.ping_pairs(&Lab::cross_pairs(&[1, 2], &[3, 4]), false);
    let fdb = lab.fdb("br0");
    for (n, vid) in [(1u8, 10u16), (3, 20)] {
        let mac = lab.host_mac(n);
        assert!(
            fdb.iter()
                .any(|e| e.mac.eq_ignore_ascii_case(&mac) && e.vlan == vid),
            "h{n}'s MAC {mac} not learned in VLAN {vid} after restart: {fdb:#?}"
        );
    }
}

/// TCP through a trunk with the interfaces' default offloads: h1 (access 10, bridge br0)
/// and h2 (access 10, bridge br1) of one daemon, the bridges joined by a veth trunk tagged
/// 10. TSO/GSO super-frames get a tag pushed on the way into the trunk and popped on the
/// way out. Throughput both ways, compared with the same path VLAN-unaware; no `oversize`
/// or `tx_error` drops; the trunk carried super-frames, not MTU-sized segments.
#[test]
fn tcp_super_frames_through_a_trunk() {
    let mut lab = Lab::new("vtcp", 66);
    lab.add_host();
    lab.add_host();
    let sw = lab.sw.clone();
    lab.veth_between(&sw, "trA", &sw, "trB");
    lab.start_daemon();
    for (br, h, tr) in [("br0", "h1p", "trA"), ("br1", "h2p", "trB")] {
        lab.vsctl_ok(&["add-br", br]);
        lab.vsctl_ok(&["add-port", br, h]);
        lab.vsctl_ok(&["add-port", br, tr]);
        access(&lab, br, h, 10);
        lab.vsctl_ok(&["add-vlan", br, tr, "10"]);
        lab.wait_ports(br, &[h, tr], "up", Duration::from_secs(10));
    }
    lab.ping_pairs(&[(1, 2)], true);

    // The first 300 frames h1->h2 on the trunk, as trB receives them (tag in auxdata).
    let cap = Capture::start(&lab, &sw, "trB", "tcpdump-trB", &["-Q", "in", "-c", "300"]);
    let s0 = lab.stats("br0");
    let v = lab.iperf3(1, 2, 3, &[]);
    let (fwd, fwd_retr) = iperf_result(&v);
    let s1 = lab.stats("br0");
    let on_trunk = cap.stop(Duration::ZERO);
    let untagged: Vec<&String> = on_trunk
        .iter()
        .filter(|f| !f.contains("ethertype 802.1Q (0x8100), length") || !f.contains(": vlan 10,"))
        .collect();
    assert!(
        on_trunk.len() >= 100 && untagged.is_empty(),
        "{} frames captured on the trunk, these not tagged 10:\n{}",
        on_trunk.len(),
        untagged
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let biggest = on_trunk
        .iter()
        .filter_map(|f| {
            f.split(", length ")
                .nth(1)?
                .split(':')
                .next()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(
        biggest > 10_000,
        "no tagged super-frame among the first {} frames on the trunk (largest {biggest} bytes):\n{}",
        on_trunk.len(),
        on_trunk.join("\n")
    );
    let v = lab.iperf3(1, 2, 2, &["-R"]);
    let (rev, rev_retr) = iperf_result(&v);
    let stats = [lab.stats("br0"), lab.stats("br1")];
    let (_, _, p0, b0) = port_counts(&s0, "trA");
    let (_, _, p1, b1) = port_counts(&s1, "trA");
    let avg = (b1 - b0) / (p1 - p0).max(1);
    report(&format!(
        "iperf3 TCP access->trunk->access (one vswitchd, br0 -trunk- br1, VLAN 10): h1->h2 {fwd:.3} Gbit/s ({fwd_retr} retransmits), h2->h1 {rev:.3} Gbit/s ({rev_retr} retransmits); average frame on the trunk h1->h2: {avg} bytes, largest tagged frame captured: {biggest} bytes"
    ));
    let diag = lab.diag();
    for s in &stats {
        if let Err(e) = bad_drops(s) {
            panic!("drops with TCP super-frames through the trunk:\n{e}\n{diag}");
        }
    }
    assert!(
        fwd > 0.0 && rev > 0.0,
        "TCP through the trunk: {fwd} / {rev} Gbit/s\n{diag}"
    );
    assert!(
        avg > 2000,
        "the trunk carried {avg}-byte frames on average: super-frames were not pushed whole\n{diag}"
    );

    // The same path VLAN-unaware, for comparison.
    for (br, h, tr) in [("br0", "h1p", "trA"), ("br1", "h2p", "trB")] {
        lab.vsctl_ok(&["del-vlan", br, h, "10"]);
        lab.vsctl_ok(&["del-vlan", br, tr, "10"]);
    }
    assert!(
        lab.list_vlans("br0").iter().all(|r| r.vlans.is_empty()),
        "{:#?}",
        lab.list_vlans("br0")
    );
    lab.ping_pairs(&[(1, 2)], true);
    let v = lab.iperf3(1, 2, 2, &[]);
    let (plain, plain_retr) = iperf_result(&v);
    report(&format!(
        "iperf3 TCP same path VLAN-unaware (untagged): h1->h2 {plain:.3} Gbit/s ({plain_retr} retransmits); tagged/untagged = {:.2}",
        fwd / plain.max(1e-9)
    ));
    assert!(
        fwd >= plain / 10.0,
        "TCP over the trunk ({fwd:.3} Gbit/s) is not within an order of magnitude of untagged ({plain:.3} Gbit/s)"
    );
}

/// A port that becomes a trunk loses what it learned untagged the moment before, as on
/// the Linux bridge: `add-port`, a frame from the host (learned in VLAN 0), then
/// `add-vlan PORT 10,20` leaves no VLAN 0 entry for that host in `fdb-show`; `del-vlan`
/// likewise flushes the VLAN it removes.
#[test]
fn leaving_a_vlan_flushes_its_learned_entries() {
    let mut lab = Lab::new("vflush", 67);
    lab.add_host();
    lab.add_host();
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2]);
    lab.ping(1, 2);
    let mac1 = lab.host_mac(1);
    assert_eq!(
        entries_of(&lab.fdb("br0"), &mac1),
        vec![(0, "h1p".to_string())],
        "h1 not learned untagged on h1p"
    );
    lab.vsctl_ok(&["add-vlan", "br0", "h1p", "10,20"]);
    assert_eq!(
        entries_of(&lab.fdb("br0"), &mac1),
        vec![],
        "h1's VLAN 0 entry stayed after h1p became a trunk of 10 and 20"
    );

    // A frame tagged 20 from the trunk host, learned in VLAN 20, then del-vlan 20.
    let f = frame(&mac1, BCAST, &[("q", 20, 0, 0)], 0x88b5);
    lab.scapy_sendp(&lab.host(1).ns.clone(), "eth0", &[f], 1);
    common::wait_until("h1 learned in VLAN 20", Duration::from_secs(5), || {
        entries_of(&lab.fdb("br0"), &mac1) == vec![(20, "h1p".to_string())]
    });
    lab.vsctl_ok(&["del-vlan", "br0", "h1p", "20"]);
    assert_eq!(
        entries_of(&lab.fdb("br0"), &mac1),
        vec![],
        "h1's VLAN 20 entry stayed after del-vlan 20"
    );
}
