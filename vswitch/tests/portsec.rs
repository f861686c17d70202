//! Port security through real namespaces, veths and the real daemon: address binding
//! (`set-port PORT allowed=`), storm control (`set-port PORT storm=`), the binding and
//! limit `attach` gives a container's port, and `ip-checks` on frames that come out of
//! a VXLAN tunnel.
//!
//! - A host bound to its own MAC and address tries to poison a third host's ARP entry
//!   for a victim (scapy: ARP replies and gratuitous ARP claiming the victim's address),
//!   to send from the victim's address and MAC, and from 0.0.0.0 to something other
//!   than a DHCP server: none of it reaches anyone, each frame is counted `spoofed_src`,
//!   the victim stays reachable and its neighbour entry untouched; its DHCP discover and
//!   its gratuitous ARP for its own address pass. The binding survives `kill -9`;
//!   `allowed=any` lets the same frames through (and the poisoning succeed), which is
//!   what shows the checks are what stopped them.
//! - A broadcast storm at full rate from one port limited to 1000 pps, while two other
//!   hosts ping each other: no ping lost, the storm counted `storm_dropped`, what passed
//!   about the limit; known unicast from the same port at full rate is not limited.
//! - A container attached with `vsctl attach` is bound to its MAC and address and
//!   limited to 10,000 pps, and its spoofed frames are dropped.
//! - Malformed inner IPv4 and short inner ARP in VXLAN datagrams from the tunnel's
//!   remote are dropped at the tunnel port by reason, while a well-formed inner frame
//!   sent the same way arrives.
//!
//! Lab ids 100–103.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use common::craft::{fix_ip_csum, hex, ip4, ipv4_udp, mac_bytes as mac, python3};
use common::{assert_vsctl_error, report, require_tools, scapy_python, wait_until, Capture, Lab};
use ctl::{PortBinding, PortInfo};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Sends scapy frames (`frames`: Python expressions) out of `eth0` in `ns`, the whole
/// list `count` times, `inter` seconds apart.
fn scapy_send(lab: &Lab, ns: &str, frames: &[String], count: u32, inter: f64) {
    let py = scapy_python();
    let script = format!(
        "from scapy.all import Ether, ARP, IP, UDP, BOOTP, DHCP, Raw, sendp\n\
         frames = [{}]\n\
         sendp(frames, iface='eth0', count={count}, inter={inter}, verbose=False)\n",
        frames.join(", ")
    );
    let o = lab.exec_t(ns, &[&py, "-c", &script], Duration::from_secs(60));
    assert!(o.success(), "scapy in {ns} failed: {o}");
}

/// Raw injector: `DEV FILE COUNT PAUSE_EVERY`. FILE holds one frame per line in hex;
/// sends the list COUNT times, pausing 2 ms every PAUSE_EVERY frames (0: never). Prints
/// `sent N SECONDS`.
const INJECT: &str = r#"
import socket, sys, time
dev, path, count, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
frames = [bytes.fromhex(l.strip()) for l in open(path) if l.strip()]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
sent = 0
t0 = time.monotonic()
for _ in range(count):
    for f in frames:
        s.send(f)
        sent += 1
        if every and sent % every == 0:
            time.sleep(0.002)
print(f"sent {sent} {time.monotonic() - t0:.3f}", flush=True)
"#;

/// Storm source: `DEV HEXFRAME SECONDS`: sends the frame as fast as it can for SECONDS
/// (a full send buffer is waited out, not counted). Prints `sent N SECONDS`.
const STORM: &str = r#"
import socket, sys, time
dev, frame, secs = sys.argv[1], bytes.fromhex(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
sent = 0
t0 = time.monotonic()
end = t0 + secs
while True:
    for _ in range(256):
        try:
            s.send(frame)
            sent += 1
        except BlockingIOError:
            pass
    if time.monotonic() >= end:
        break
print(f"sent {sent} {time.monotonic() - t0:.3f}", flush=True)
"#;

/// Writes `frames` to a hex file and runs [`INJECT`] in `ns`: (frames sent, seconds).
fn inject(
    lab: &Lab,
    ns: &str,
    name: &str,
    frames: &[Vec<u8>],
    count: u64,
    every: u64,
) -> (u64, f64) {
    let file = lab.dir.join(format!("{name}.hex"));
    let text: String = frames.iter().map(|f| hex(f) + "\n").collect();
    fs::write(&file, text).unwrap();
    let p = python3();
    let argv = [
        p.as_str(),
        "-c",
        INJECT,
        "eth0",
        file.to_str().unwrap(),
        &count.to_string(),
        &every.to_string(),
    ];
    let o = lab.exec_t(ns, &argv, Duration::from_secs(60));
    assert!(o.success(), "injector in {ns} failed: {o}\n{}", lab.diag());
    sent_and_secs(&o.stdout)
}

/// `sent N SECONDS` as printed by the injectors.
fn sent_and_secs(out: &str) -> (u64, f64) {
    let w: Vec<&str> = out.split_whitespace().collect();
    match w.as_slice() {
        ["sent", n, s, ..] => (n.parse().unwrap(), s.parse().unwrap()),
        _ => panic!("injector output: {out}"),
    }
}

/// An Ethernet frame.
fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The drop `reason` counted at port `port` of br0.
fn drops(lab: &Lab, port: &str, reason: &str) -> u64 {
    lab.port_stats("br0", port)
        .drops
        .get(reason)
        .copied()
        .unwrap_or(0)
}

/// Waits until port `port` of br0 has counted `want` drops of `reason`, then checks it
/// counted no more.
fn expect_drops(lab: &Lab, port: &str, reason: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while drops(lab, port, reason) < want && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        drops(lab, port, reason),
        want,
        "{port} {reason}; port stats {:?}\n{}",
        lab.port_stats("br0", port),
        lab.diag()
    );
}

/// Port `name` of br0 as `show --json` reports it.
fn shown(lab: &Lab, name: &str) -> PortInfo {
    lab.show()
        .into_iter()
        .flat_map(|b| b.ports)
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("show --json has no port {name}"))
}

/// The link-layer address `ns` has for `ip` (empty when it has none).
fn neigh(lab: &Lab, ns: &str, ip: &str) -> String {
    let o = lab.exec(ns, &["ip", "-j", "neigh", "show", ip]);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap_or_default();
    v.get(0)
        .and_then(|n| n["lladdr"].as_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// (transmitted, received) of a finished `ping`'s summary.
fn ping_counts(out: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {out}"));
    let num = |i: usize| -> u64 {
        line.split(',')
            .nth(i)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (num(0), num(1))
}

// ---------------------------------------------------------------------------------------
// Address binding
// ---------------------------------------------------------------------------------------

/// Copies of each spoofed kind.
const N: u32 = 20;

#[test]
fn a_bound_port_cannot_poison_arp_or_spoof_addresses_until_allowed_any() {
    require_tools(&["tcpdump"]);
    let mut lab = Lab::new("psbind", 100);
    for _ in 0..3 {
        lab.add_host();
    }
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2, 3]);
    let (m1, m2, m3) = (lab.host_mac(1), lab.host_mac(2), lab.host_mac(3));
    let (ip1, ip2, ip3) = (lab.ip(1), lab.ip(2), lab.ip(3));
    let (h2, h3) = (lab.host(2).ns.clone(), lab.host(3).ns.clone());

    // Bad requests: one line each, nothing changes.
    for bad in [
        vec!["set-port", "h2p", "allowed=zz"],
        vec!["set-port", "h2p", "allowed=01:00:5e:00:00:01"],
        vec!["set-port", "h2p", &format!("allowed={m2},{ip2},{ip2}")],
        vec!["set-port", "h2p", &format!("allowed={m2},10.0.0.300")],
        vec!["set-port", "h2p", "storm=fast"],
        vec!["set-port", "h2p", "colour=red"],
        vec!["set-port", "h2p"],
        vec!["set-port", "nosuch", "storm=5"],
    ] {
        assert_vsctl_error(&lab.vsctl(&bad));
    }
    let p = shown(&lab, "h2p");
    assert_eq!(
        (p.allowed, p.storm_pps),
        (None, 0),
        "a refused set-port changed h2p"
    );

    let allowed = format!("allowed={},{ip2}", m2.to_ascii_uppercase());
    lab.vsctl_ok(&["set-port", "h2p", &allowed]);
    let bound = Some(PortBinding {
        mac: m2.clone(),
        ips: vec![ip2.parse().unwrap()],
    });
    assert_eq!(shown(&lab, "h2p").allowed, bound);
    assert!(lab
        .vsctl_ok(&["show"])
        .contains(&format!("port h2p (type afpacket) up, allowed {m2},{ip2}")));
    // Its own traffic goes on as before; h3 learns h1's MAC for the victim's address.
    lab.ping_all_pairs(&[1, 2, 3]);
    assert_eq!(neigh(&lab, &h3, &ip1), m1);

    let bc = "ff:ff:ff:ff:ff:ff";
    let spoofed = [
        // ARP reply to h3: "h1's address is at h2".
        format!("Ether(src='{m2}', dst='{m3}')/ARP(op=2, hwsrc='{m2}', psrc='{ip1}', hwdst='{m3}', pdst='{ip3}')"),
        // Gratuitous ARP for h1's address.
        format!("Ether(src='{m2}', dst='{bc}')/ARP(op=1, hwsrc='{m2}', psrc='{ip1}', pdst='{ip1}')"),
        // ARP from its own address but another sender MAC.
        format!("Ether(src='{m2}', dst='{m3}')/ARP(op=2, hwsrc='02:00:00:00:66:66', psrc='{ip2}', hwdst='{m3}', pdst='{ip3}')"),
        // IPv4 from h1's address.
        format!("Ether(src='{m2}', dst='{m3}')/IP(src='{ip1}', dst='{ip3}')/UDP(sport=5555, dport=7777)/Raw(b'ipspoof')"),
        // From h1's MAC (which would move h1 to h2's port in the FDB).
        format!("Ether(src='{m1}', dst='{m3}')/IP(src='{ip2}', dst='{ip3}')/UDP(sport=5556, dport=7777)/Raw(b'macspoof')"),
        // From 0.0.0.0, but not to a DHCP server.
        format!("Ether(src='{m2}', dst='{bc}')/IP(src='0.0.0.0', dst='255.255.255.255')/UDP(sport=68, dport=53)/Raw(b'zero')"),
    ];
    let own = [
        // DHCP discover from 0.0.0.0.
        format!("Ether(src='{m2}', dst='{bc}')/IP(src='0.0.0.0', dst='255.255.255.255')/UDP(sport=68, dport=67)/BOOTP(chaddr=bytes.fromhex('{}'))/DHCP(options=[('message-type', 'discover'), 'end'])", m2.replace(':', "")),
        // Gratuitous ARP for its own address.
        format!("Ether(src='{m2}', dst='{bc}')/ARP(op=1, hwsrc='{m2}', psrc='{ip2}', pdst='{ip2}')"),
    ];
    let poison = |lab: &Lab| {
        // Over 2 s: a neighbour entry ignores a new address for 1 s after its last
        // update (locktime), so the poisoning gets its chance.
        let mut all: Vec<String> = spoofed.to_vec();
        all.extend(own.iter().cloned());
        scapy_send(lab, &h2, &all, N, 0.1 / all.len() as f64);
    };
    let filter = [
        "-Q",
        "in",
        "ether",
        "src",
        m2.as_str(),
        "or",
        "ether",
        "src",
        m1.as_str(),
    ];
    let seen = |lines: &[String], needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    let poisoned = format!("Reply {ip1} is-at {m2}");
    let garp_victim = format!("who-has {ip1} tell {ip1}");
    let garp_own = format!("who-has {ip2} tell {ip2}");

    // --- bound: every spoofed frame dropped and counted, its own pass ------------------
    let cap = Capture::start(&lab, &h3, "eth0", "bound-h3", &filter);
    poison(&lab);
    let want = u64::from(N) * spoofed.len() as u64;
    expect_drops(&lab, "h2p", "spoofed_src", want);
    cap.wait_for(
        "h2's DHCP discover and gratuitous ARP",
        Duration::from_secs(10),
        |l| {
            seen(l, "0.0.0.0.68 > 255.255.255.255.67") >= N as usize
                && seen(l, &garp_own) >= N as usize
        },
    );
    let got = cap.stop(Duration::from_millis(300));
    for needle in [
        ".7777:",
        ".53:",
        poisoned.as_str(),
        garp_victim.as_str(),
        "66:66",
    ] {
        assert_eq!(
            seen(&got, needle),
            0,
            "{needle:?} reached h3:\n{}",
            got.join("\n")
        );
    }
    assert_eq!(
        neigh(&lab, &h3, &ip1),
        m1,
        "h3's entry for {ip1} was poisoned"
    );
    lab.ping(3, 1);
    lab.ping(1, 3);
    report(&format!(
        "binding: {} spoofed frames of {} kinds from a port bound to {m2},{ip2}: spoofed_src {want}, none at h3, \
         h3's entry for the victim {ip1} still {m1}; {N} DHCP discovers and {N} own gratuitous ARPs passed",
        want,
        spoofed.len()
    ));

    // --- kill -9: the binding and a storm limit come back with the daemon ---------------
    lab.vsctl_ok(&["set-port", "h2p", "storm=5000"]);
    lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    lab.start_daemon();
    lab.wait_ports("br0", &["h1p", "h2p", "h3p"], "up", Duration::from_secs(10));
    let p = shown(&lab, "h2p");
    assert_eq!(
        (p.allowed, p.storm_pps),
        (bound.clone(), 5000),
        "lost over kill -9"
    );
    scapy_send(&lab, &h2, &spoofed[3..4], N, 0.0);
    expect_drops(&lab, "h2p", "spoofed_src", u64::from(N));

    // --- allowed=any: the same frames go through, and the poisoning works --------------
    lab.vsctl_ok(&["set-port", "h2p", "allowed=any"]);
    assert_eq!(shown(&lab, "h2p").allowed, None);
    assert!(!lab.vsctl_ok(&["show"]).contains("allowed"));
    lab.ping(3, 1);
    let cap = Capture::start(&lab, &h3, "eth0", "any-h3", &filter);
    poison(&lab);
    cap.wait_for(
        "the spoofed frames, now let through",
        Duration::from_secs(10),
        |l| seen(l, ".7777:") >= 2 * N as usize && seen(l, &poisoned) >= N as usize,
    );
    drop(cap);
    wait_until(
        "h3's entry for h1 to be poisoned",
        Duration::from_secs(10),
        || neigh(&lab, &h3, &ip1) == m2,
    );
    assert_eq!(drops(&lab, "h2p", "spoofed_src"), u64::from(N));
}

#[test]
fn attach_binds_a_containers_port_to_its_addresses_and_limits_its_storms() {
    require_tools(&["nsenter"]);
    let mut lab = Lab::new("psatt", 101);
    lab.add_host();
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1]);
    let c = lab.add_named_ns("c1");
    let cip = format!("{}.7", lab.net);
    lab.vsctl_ok(&["attach", "br0", &c, "--ip", &format!("{cip}/24")]);
    let cmac = lab.mac(&c, "eth0");
    let port = lab
        .show()
        .into_iter()
        .flat_map(|b| b.ports)
        .find(|p| p.attach.is_some())
        .unwrap_or_else(|| panic!("no attached port\n{}", lab.diag()));
    assert_eq!(
        (port.allowed.clone(), port.storm_pps),
        (
            Some(PortBinding {
                mac: cmac.clone(),
                ips: vec![cip.parse().unwrap()],
            }),
            10_000
        ),
        "attach's defaults"
    );
    assert!(lab
        .vsctl_ok(&["show"])
        .contains(&format!("allowed {cmac},{cip}, storm 10000 pps")));
    lab.wait_ports("br0", &[&port.name], "up", Duration::from_secs(10));
    let o = lab.exec(&c, &["ping", "-c", "3", "-i", "0.2", "-W", "2", &lab.ip(1)]);
    assert!(
        o.success(),
        "the container cannot ping h1: {o}\n{}",
        lab.diag()
    );
    let ip1 = lab.ip(1);
    let m1 = lab.host_mac(1);
    scapy_send(
        &lab,
        &c,
        &[
            format!("Ether(src='{cmac}', dst='{m1}')/IP(src='{}.8', dst='{ip1}')/UDP(dport=7777)", lab.net),
            format!("Ether(src='{cmac}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=2, hwsrc='{cmac}', psrc='{ip1}', pdst='{ip1}')"),
        ],
        N,
        0.0,
    );
    expect_drops(&lab, &port.name, "spoofed_src", 2 * u64::from(N));
    // A second attach with its own MAC is bound to that one.
    let c2 = lab.add_named_ns("c2");
    let mac2 = "02:aa:00:00:01:65";
    lab.vsctl_ok(&[
        "attach",
        "br0",
        &c2,
        "--ip",
        &format!("{}.8/24", lab.net),
        "--mac",
        mac2,
    ]);
    let p2 = lab
        .show()
        .into_iter()
        .flat_map(|b| b.ports)
        .find(|p| p.attach.as_ref().is_some_and(|a| a.ip.ends_with(".8/24")))
        .unwrap();
    assert_eq!(p2.allowed.map(|b| b.mac), Some(mac2.to_string()));
}

// ---------------------------------------------------------------------------------------
// Storm control
// ---------------------------------------------------------------------------------------

#[test]
fn a_broadcast_storm_is_limited_while_others_ping_and_known_unicast_is_not() {
    require_tools(&["ping"]);
    const LIMIT: u64 = 1000;
    const SECS: f64 = 3.0;
    let mut lab = Lab::new("psstorm", 102);
    for _ in 0..3 {
        lab.add_host();
    }
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2, 3]);
    lab.ping_all_pairs(&[1, 2, 3]);
    lab.vsctl_ok(&["set-port", "h1p", &format!("storm={LIMIT}")]);
    assert_eq!(u64::from(shown(&lab, "h1p").storm_pps), LIMIT);
    assert!(lab.vsctl_ok(&["show"]).contains("storm 1000 pps"));
    let (m1, m2) = (mac(&lab.host_mac(1)), mac(&lab.host_mac(2)));
    let h1 = lab.host(1).ns.clone();
    let tx = |lab: &Lab, p: &str| lab.port_stats("br0", p).tx_packets;

    // --- a storm at full rate while h2 and h3 ping each other --------------------------
    let storm_frame = eth([0xff; 6], m1, 0x88b5, &[0x5a; 46]);
    let (t2, t3) = (tx(&lab, "h2p"), tx(&lab, "h3p"));
    let rx0 = lab.port_stats("br0", "h1p").rx_packets;
    let ip3 = lab.ip(3);
    let ping_argv = [
        "ping",
        "-n",
        "-q",
        "-c",
        "40",
        "-i",
        "0.1",
        "-W",
        "3",
        ip3.as_str(),
    ];
    let mut pinger = lab.spawn_bg(&lab.host(2).ns.clone(), "ping-h2-h3", &ping_argv);
    let p = python3();
    let o = lab.exec_t(
        &h1,
        &[
            &p,
            "-c",
            STORM,
            "eth0",
            &hex(&storm_frame),
            &SECS.to_string(),
        ],
        Duration::from_secs(30),
    );
    assert!(o.success(), "storm source failed: {o}");
    let (sent, secs) = sent_and_secs(&o.stdout);
    let st = pinger.wait_timeout(Duration::from_secs(30));
    assert!(st.is_some(), "ping did not finish");
    let (ptx, prx) = ping_counts(&pinger.stdout());
    // The switch may still be reading its backlog: wait until h1p's count stands still.
    let mut last = u64::MAX;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = lab.port_stats("br0", "h1p").rx_packets;
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
        thread::sleep(Duration::from_millis(300));
    }
    let rx = lab.port_stats("br0", "h1p");
    let storm_rx = rx.rx_packets - rx0;
    let dropped = drops(&lab, "h1p", "storm_dropped");
    // h3p and h2p also carried the pings (40 each way) and perhaps an ARP exchange.
    let passed = (tx(&lab, "h3p") - t3).saturating_sub(42);
    let passed2 = (tx(&lab, "h2p") - t2).saturating_sub(42);
    let pps = sent as f64 / secs;
    report(&format!(
        "storm: {sent} broadcast frames in {secs:.2} s ({pps:.0} pps) from a port limited to {LIMIT} pps; \
         the switch read {storm_rx} (ring drops {:?}): storm_dropped {dropped}, {passed} reached h3 and \
         {passed2} h2; ping h2->h3 meanwhile {prx}/{ptx}",
        rx.drops.get("rx_ring")
    ));
    assert_eq!(
        (ptx, prx),
        (40, 40),
        "pings lost during the storm\n{}",
        lab.diag()
    );
    assert!(
        dropped > 0 && (dropped + passed).abs_diff(storm_rx) <= 100,
        "storm_dropped {dropped} + {passed} passed is not the {storm_rx} storm frames read"
    );
    // The limit's rate over the storm's time (and however long the switch took to read
    // its backlog), plus the burst of a tenth of a second.
    let most = (LIMIT as f64 * (secs + 1.5)) as u64 + LIMIT / 10;
    assert!(
        passed <= most,
        "{passed} storm frames reached h3, more than {most}"
    );
    assert!(
        passed >= LIMIT,
        "only {passed} storm frames reached h3 in {secs:.1} s"
    );

    // --- known unicast from the same port: never limited --------------------------------
    let before = drops(&lab, "h1p", "storm_dropped");
    let t2 = tx(&lab, "h2p");
    let uni = eth(
        m2,
        m1,
        0x0800,
        &ipv4_udp(ip4(&lab.ip(1)), ip4(&lab.ip(2)), 7777, b"known"),
    );
    let (sent_u, secs_u) = inject(&lab, &h1, "unicast", &[uni], 5000, 100);
    wait_until(
        "5000 known unicast frames to reach h2",
        Duration::from_secs(10),
        || tx(&lab, "h2p") >= t2 + sent_u,
    );
    assert_eq!(
        drops(&lab, "h1p", "storm_dropped"),
        before,
        "known unicast was limited"
    );
    report(&format!(
        "storm: {sent_u} known unicast frames from the limited port in {secs_u:.2} s ({:.0} pps): all reached h2, storm_dropped +0",
        sent_u as f64 / secs_u
    ));

    // --- storm=off: no limit ------------------------------------------------------------
    lab.vsctl_ok(&["set-port", "h1p", "storm=off"]);
    assert_eq!(shown(&lab, "h1p").storm_pps, 0);
    let t3 = tx(&lab, "h3p");
    let (sent_b, _) = inject(&lab, &h1, "bcast", &[storm_frame], 3000, 100);
    wait_until(
        "3000 broadcast frames to reach h3",
        Duration::from_secs(10),
        || tx(&lab, "h3p") >= t3 + sent_b,
    );
    assert_eq!(drops(&lab, "h1p", "storm_dropped"), before);
}

// ---------------------------------------------------------------------------------------
// ip-checks inside VXLAN
// ---------------------------------------------------------------------------------------

/// UDP sender: `SRC DST PORT FILE COUNT`: each datagram of FILE (hex lines) COUNT times,
/// pausing 2 ms every 50. Prints `sent N SECONDS`.
const UDP_INJECT: &str = r#"
import socket, sys, time
src, dst, port, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
dgrams = [bytes.fromhex(l.strip()) for l in open(path) if l.strip()]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
sent = 0
t0 = time.monotonic()
for d in dgrams:
    for _ in range(count):
        s.sendto(d, (dst, port))
        sent += 1
        if sent % 50 == 0:
            time.sleep(0.002)
print(f"sent {sent} {time.monotonic() - t0:.3f}", flush=True)
"#;

#[test]
fn malformed_inner_ipv4_from_a_vxlan_tunnel_is_dropped_by_ip_checks() {
    require_tools(&["tcpdump"]);
    const LOCAL: &str = "198.51.100.21";
    const PEER: &str = "198.51.100.22";
    const EVIL: &str = "02:ee:00:00:01:03";
    const PER: u64 = 20;
    let mut lab = Lab::new("psvx", 103);
    for _ in 0..2 {
        lab.add_host();
    }
    let peer = lab.add_named_ns("peer");
    let sw = lab.sw.clone();
    lab.veth_between(&sw, "ul0", &peer, "ul0");
    for (ns, a) in [(&sw, LOCAL), (&peer, PEER)] {
        common::sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{a}/24"),
            "dev",
            "ul0",
        ]);
    }
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2]);
    lab.vsctl_ok(&[
        "add-tunnel",
        "br0",
        "vx",
        "--vni",
        "42",
        "--remote",
        PEER,
        "--local",
        LOCAL,
    ]);
    lab.wait_ports("br0", &["vx"], "up", Duration::from_secs(10));

    let good = ipv4_udp(ip4("10.103.0.66"), ip4(&lab.ip(1)), 7777, b"inner");
    let mut kinds: Vec<(Vec<u8>, &str)> = vec![(good[..19].to_vec(), "bad_ip_header")];
    let mut p = good.clone();
    p[0] = 0x43;
    fix_ip_csum(&mut p);
    kinds.push((p, "bad_ip_header"));
    let mut p = good.clone();
    p[0] = 0x4f;
    kinds.push((p, "bad_ip_header"));
    let mut p = good.clone();
    p[2..4].copy_from_slice(&1500u16.to_be_bytes());
    fix_ip_csum(&mut p);
    kinds.push((p, "bad_ip_header"));
    let mut p = good.clone();
    p[10] ^= 0xff;
    kinds.push((p, "bad_ip_header"));
    let mut p = good.clone();
    p[0] = 0x65;
    fix_ip_csum(&mut p);
    kinds.push((p, "bad_ip_header"));
    let evil = mac(EVIL);
    let vx = |ethertype: u16, payload: &[u8]| {
        let mut d = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        d.extend(eth([0xff; 6], evil, ethertype, payload));
        d
    };
    let mut dgrams: Vec<Vec<u8>> = kinds.iter().map(|(p, _)| vx(0x0800, p)).collect();
    let mut short_arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    short_arp.extend_from_slice(&evil);
    dgrams.push(vx(0x0806, &short_arp));
    let file = lab.dir.join("vx.hex");
    fs::write(
        &file,
        dgrams.iter().map(|d| hex(d) + "\n").collect::<String>(),
    )
    .unwrap();
    let good_file = lab.dir.join("vx-good.hex");
    fs::write(&good_file, hex(&vx(0x0800, &good)) + "\n").unwrap();

    let caps: Vec<Capture> = [1u8, 2]
        .iter()
        .map(|&n| {
            let ns = lab.host(n).ns.clone();
            Capture::start(
                &lab,
                &ns,
                "eth0",
                &format!("vx-h{n}"),
                &["-Q", "in", "ether", "src", EVIL],
            )
        })
        .collect();
    let p = python3();
    let send = |path: &std::path::Path| {
        let o = lab.exec_t(
            &peer,
            &[
                &p,
                "-c",
                UDP_INJECT,
                PEER,
                LOCAL,
                "4789",
                path.to_str().unwrap(),
                &PER.to_string(),
            ],
            Duration::from_secs(60),
        );
        assert!(o.success(), "UDP injector failed: {o}");
        sent_and_secs(&o.stdout).0
    };
    let sent = send(&file);
    assert_eq!(sent, PER * dgrams.len() as u64);
    expect_drops(&lab, "vx", "bad_ip_header", PER * kinds.len() as u64);
    expect_drops(&lab, "vx", "bad_arp", PER);
    // The same way in, a well-formed inner frame arrives.
    send(&good_file);
    caps[0].wait_for(
        "the well-formed inner frames",
        Duration::from_secs(10),
        |l| l.len() >= PER as usize,
    );
    for c in caps {
        let what = c.what.clone();
        let got = c.stop(Duration::from_millis(300));
        assert_eq!(
            got.len(),
            PER as usize,
            "{what}: only the {PER} well-formed inner frames were to arrive:\n{}",
            got.join("\n")
        );
    }
    report(&format!(
        "VXLAN: {sent} datagrams with malformed inner IPv4 ({} kinds) or short inner ARP from the tunnel's remote: \
         bad_ip_header {}, bad_arp {PER} at port vx, none at h1/h2; {PER} well-formed ones arrived",
        kinds.len(),
        PER * kinds.len() as u64
    ));
}
