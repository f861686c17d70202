//! `ip-checks` on the bridged path, through real namespaces, veths and the real daemon: a
//! plain bridge (no gateway) of three hosts, an access port of VLAN 10 and a trunk.
//! Malformed IPv4 (cut short, IHL below 5 and past the packet, total length past the
//! frame and below the header, bad header checksum, version 6) and ARP shorter than an
//! ARP packet, injected with python3 raw `AF_PACKET` sockets as broadcast and as unicast
//! to a known host (and tagged on the trunk), reach no other host and are counted by
//! reason at the ingress port while the others keep pinging; with `set-bridge br0
//! ip-checks=off` the same frames are forwarded again, and the setting survives `kill -9`.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use common::craft::{fix_ip_csum, hex, ip4, ipv4_udp, mac_bytes as mac, python3};
use common::{assert_vsctl_error, require_tools, Capture, Lab, SHORT};

/// Source MAC of every injected frame, so captures can tell them apart.
const EVIL_MAC: &str = "02:ee:00:00:0a:93";
/// Copies of each malformed kind per destination.
const PER: u64 = 20;

/// Raw injector: `DEV FILE COUNT`. FILE holds one frame per line in hex; sends each frame
/// COUNT times. Prints `sent N`.
const INJECT: &str = r#"
import socket, sys, time
dev, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
frames = [bytes.fromhex(l.strip()) for l in open(path) if l.strip()]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
sent = 0
for f in frames:
    for _ in range(count):
        s.send(f)
        sent += 1
        if sent % 50 == 0:
            time.sleep(0.002)
print(f"sent {sent}", flush=True)
"#;

/// An Ethernet frame, with an 802.1Q tag of VLAN `vid` when given.
fn eth(dst: [u8; 6], src: [u8; 6], vid: Option<u16>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(v) = vid {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Every malformed kind as (name, frame, drop reason), from EVIL_MAC to `dst`.
fn malformed(dst: [u8; 6], vid: Option<u16>) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let evil = mac(EVIL_MAC);
    let good = ipv4_udp(ip4("10.93.0.66"), ip4("10.93.0.2"), 9, b"ip-checks");
    let ip = |p: &[u8]| eth(dst, evil, vid, 0x0800, p);
    let mut v = vec![
        ("runt: no IPv4 header at all", ip(&[]), "bad_ip_header"),
        (
            "IPv4 cut short (19 bytes)",
            ip(&good[..19]),
            "bad_ip_header",
        ),
    ];
    let mut p = good.clone();
    p[0] = 0x43;
    fix_ip_csum(&mut p);
    v.push(("IHL 3", ip(&p), "bad_ip_header"));
    let mut p = good.clone();
    p[0] = 0x4f;
    v.push(("IHL 15 past the packet", ip(&p), "bad_ip_header"));
    let mut p = good.clone();
    p[2..4].copy_from_slice(&1500u16.to_be_bytes());
    fix_ip_csum(&mut p);
    v.push(("total length past the frame", ip(&p), "bad_ip_header"));
    let mut p = good.clone();
    p[2..4].copy_from_slice(&10u16.to_be_bytes());
    fix_ip_csum(&mut p);
    v.push(("total length below the header", ip(&p), "bad_ip_header"));
    let mut p = good.clone();
    p[10] ^= 0xff;
    v.push(("bad header checksum", ip(&p), "bad_ip_header"));
    let mut p = good.clone();
    p[0] = 0x65;
    fix_ip_csum(&mut p);
    v.push(("version 6", ip(&p), "bad_ip_header"));
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&evil);
    a.extend_from_slice(&ip4("10.93.0.66"));
    v.push((
        "ARP of 18 bytes",
        eth(dst, evil, vid, 0x0806, &a),
        "bad_arp",
    ));
    v
}

/// Sends every frame of `frames` PER times out of `dev` in `ns`; returns frames sent.
fn inject(lab: &Lab, ns: &str, dev: &str, name: &str, frames: &[Vec<u8>]) -> u64 {
    let file = lab.dir.join(format!("{name}.hex"));
    let text: String = frames.iter().map(|f| hex(f) + "\n").collect();
    fs::write(&file, text).unwrap();
    let p = python3();
    let o = lab.exec_t(
        ns,
        &[
            &p,
            "-c",
            INJECT,
            dev,
            file.to_str().unwrap(),
            &PER.to_string(),
        ],
        Duration::from_secs(60),
    );
    assert!(o.success(), "injector in {ns} failed: {o}\n{}", lab.diag());
    let sent: u64 = o
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("injector output: {o}"));
    assert_eq!(sent, PER * frames.len() as u64);
    sent
}

/// The drop `reason` counted at port `port` of br0.
fn drops(lab: &Lab, port: &str, reason: &str) -> u64 {
    lab.port_stats("br0", port)
        .drops
        .get(reason)
        .copied()
        .unwrap_or(0)
}

/// Captures of injected frames in h2, h3 and the access port's host h4.
fn captures(lab: &Lab, tag: &str) -> [Capture; 3] {
    let filter = ["-Q", "in", "ether", "src", EVIL_MAC];
    [2u8, 3, 4].map(|n| {
        let h = lab.host(n);
        Capture::start(lab, &h.ns, "eth0", &format!("{tag}-h{n}"), &filter)
    })
}

/// The bridge's ip-checks as `show --json` reports it.
fn shown_ip_checks(lab: &Lab) -> bool {
    lab.show()
        .iter()
        .find(|b| b.name == "br0")
        .map(|b| b.ip_checks)
        .unwrap()
}

#[test]
fn malformed_ipv4_and_arp_are_dropped_on_the_bridged_path_unless_ip_checks_are_off() {
    require_tools(&["python3", "tcpdump"]);
    let mut lab = Lab::new("ipchk", 93);
    for _ in 0..4 {
        lab.add_host();
    }
    let trk = lab.add_named_ns("trk");
    let sw = lab.sw.clone();
    lab.veth_between(&sw, "trkp", &trk, "eth0");
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2, 3, 4]);
    lab.vsctl_ok(&["add-vlan", "br0", "h4p", "10", "--access"]);
    lab.vsctl_ok(&["add-port", "br0", "trkp"]);
    lab.vsctl_ok(&["add-vlan", "br0", "trkp", "10"]);
    lab.wait_ports("br0", &["trkp"], "up", Duration::from_secs(10));
    assert!(shown_ip_checks(&lab), "ip-checks are on by default");
    assert!(lab.vsctl_ok(&["show"]).contains("ip-checks on"));
    lab.ping_all_pairs(&[1, 2, 3]);

    // A bad value is refused in one line and changes nothing.
    let o = lab.vsctl(&["set-bridge", "br0", "ip-checks=maybe"]);
    assert_vsctl_error(&o);
    assert!(shown_ip_checks(&lab));

    let h2mac = mac(&lab.host_mac(2));
    let bc = [0xff; 6];
    let mut untagged: Vec<(&str, Vec<u8>, &str)> = malformed(bc, None);
    untagged.extend(malformed(h2mac, None));
    // Not the tagged runt: the kernel's receive path (`skb_vlan_untag`) frees a tagged
    // frame with nothing behind its tag before any packet socket sees it.
    let tagged: Vec<_> = malformed(bc, Some(10)).into_iter().skip(1).collect();
    let frames = |v: &[(&str, Vec<u8>, &str)]| v.iter().map(|k| k.1.clone()).collect::<Vec<_>>();
    let expect = |v: &[(&str, Vec<u8>, &str)], reason: &str| {
        PER * v.iter().filter(|k| k.2 == reason).count() as u64
    };

    // --- ip-checks on: nothing reaches anyone, every frame counted by reason ------------
    let caps = captures(&lab, "on");
    let h1 = lab.host(1).ns.clone();
    inject(&lab, &h1, "eth0", "on-untagged", &frames(&untagged));
    inject(&lab, &trk, "eth0", "on-tagged", &frames(&tagged));
    for (port, set) in [("h1p", &untagged), ("trkp", &tagged)] {
        for reason in ["bad_ip_header", "bad_arp"] {
            let want = expect(set, reason);
            let deadline = Instant::now() + Duration::from_secs(10);
            while drops(&lab, port, reason) < want && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(
                drops(&lab, port, reason),
                want,
                "{port} {reason}; port stats {:?}\n{}",
                lab.port_stats("br0", port),
                lab.diag()
            );
        }
    }
    lab.ping_all_pairs(&[1, 2, 3]);
    for c in caps {
        let what = c.what.clone();
        let got = c.stop(SHORT.min(Duration::from_millis(500)));
        assert!(
            got.is_empty(),
            "{what} received malformed frames with ip-checks on:\n{}",
            got.join("\n")
        );
    }

    // --- ip-checks off: forwarded again; the setting survives kill -9 -----------------
    lab.vsctl_ok(&["set-bridge", "br0", "ip-checks=off"]);
    assert!(!shown_ip_checks(&lab));
    assert!(lab.vsctl_ok(&["show"]).contains("ip-checks off"));
    let st = lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL),
        "vswitchd was to die of SIGKILL: {st}"
    );
    lab.start_daemon();
    lab.wait_ports(
        "br0",
        &["h1p", "h2p", "h3p", "h4p", "trkp"],
        "up",
        Duration::from_secs(10),
    );
    assert!(!shown_ip_checks(&lab), "ip-checks=off lost over kill -9");
    lab.ping_all_pairs(&[1, 2, 3]);

    let caps = captures(&lab, "off");
    inject(&lab, &h1, "eth0", "off-untagged", &frames(&untagged));
    inject(&lab, &trk, "eth0", "off-tagged", &frames(&tagged));
    let n = malformed(bc, None).len() as u64 * PER;
    // h2 gets the broadcast and the unicast ones, h3 the broadcast ones, h4 (access
    // VLAN 10) the tagged ones, untagged.
    // Counted where the switch sends them (its counters restarted with it): h2 and h3
    // also carry the pings of the lab's hosts, h4 nothing else.
    let tx = |port: &str| lab.port_stats("br0", port).tx_packets;
    let deadline = Instant::now() + Duration::from_secs(10);
    let reached = || tx("h2p") >= 2 * n && tx("h3p") >= n && tx("h4p") >= n - PER;
    while !reached() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        reached() && tx("h4p") == n - PER,
        "malformed frames with ip-checks off not forwarded; stats {:?}\n{}",
        lab.stats("br0"),
        lab.diag()
    );
    for (port, set) in [("h1p", &untagged), ("trkp", &tagged)] {
        assert_eq!(
            drops(&lab, port, "bad_ip_header") + drops(&lab, port, "bad_arp"),
            0,
            "{port}: counters restart at 0 after kill -9 and nothing more was dropped ({} kinds)",
            set.len()
        );
    }
    lab.ping_all_pairs(&[1, 2, 3]);
    for c in caps {
        let what = c.what.clone();
        let got = c.stop(Duration::from_millis(300));
        assert!(!got.is_empty(), "{what}: capture lost");
    }

    // --- back on: dropped again -------------------------------------------------------
    lab.vsctl_ok(&["set-bridge", "br0", "ip-checks=on"]);
    assert!(shown_ip_checks(&lab));
    inject(&lab, &h1, "eth0", "on-again", &frames(&untagged[..1]));
    common::wait_until(
        "h1p to count the runt again",
        Duration::from_secs(10),
        || drops(&lab, "h1p", "bad_ip_header") >= PER,
    );
    assert_eq!(drops(&lab, "h1p", "bad_ip_header"), PER);
}
