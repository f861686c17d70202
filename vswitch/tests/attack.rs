//! Attacks on a running `vswitchd`, through real namespaces, veths, the real daemon and
//! the real `vsctl`: malformed frames (IPv4 cut short, bad IHL, total length past the
//! frame, bad checksums, truncated ARP, fragments, nested 802.1Q tags, bogus VXLAN), a
//! MAC flood of a million random source addresses, SYN and UDP floods at the uplink and
//! a flood of new outbound flows past the conntrack limit, VLAN double tagging, spoofed
//! gateway ARP, traffic between isolated networks, VXLAN from unknown remotes and VNIs,
//! and abuse of the control socket (a non-root user, garbage, a huge line, 200
//! concurrent clients, clients that vanish mid-request).
//!
//! Every test checks three things: the attack is dropped and counted by reason in
//! `vsctl stats --json`, traffic between other hosts goes on during and after it, and the
//! daemon is alive and serving afterwards. Frames are injected from inside host
//! namespaces with python3 raw `AF_PACKET` sockets (prebuilt frames, a tight send loop)
//! or `trafgen` (netsniff-ng) for the million-frame flood. Figures go to stderr as
//! `[measured]` lines.
//!
//! Addresses: 10.X.Y.0/24 (the lab's), 172.18.0.0/16 (container networks) and
//! 198.51.100.0/24 (uplink and VXLAN underlay), all inside the labs' namespaces only.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::craft::{csum, fix_ip_csum, hex, ip4, mac_bytes as mac, python3};
use common::{
    assert_refused, assert_vsctl_error, report, require_tools, sh, vsctl_bin, wait_until, Bg,
    Capture, Lab, Out, Raw, LONG, SHORT,
};
use ctl::{BridgeStats, Data, GatewayStats, VtepStats};

// ---------------------------------------------------------------------------------------
// Addresses of the gateway labs
// ---------------------------------------------------------------------------------------

const NET_A: &str = "172.18.0.0/24";
const GW_A: &str = "172.18.0.1";
const C1_IP: &str = "172.18.0.2";
const C2_IP: &str = "172.18.0.3";
const C3_IP: &str = "172.18.0.4";
/// A second network, isolated from the first.
const NET_B: &str = "172.18.1.0/24";
const GW_B: &str = "172.18.1.1";
const C4_IP: &str = "172.18.1.2";
const UP_IP: &str = "198.51.100.2";
const UP_CIDR: &str = "198.51.100.2/24";
const WAN_IP: &str = "198.51.100.1";
const UPLINK: &str = "up0";
/// Marker source MAC of every attack frame (so captures can tell them apart).
const EVIL_MAC: &str = "02:ee:00:00:0a:7c";

// ---------------------------------------------------------------------------------------
// Scripts run inside the namespaces
// ---------------------------------------------------------------------------------------

/// Raw injector: `DEV FILE TOTAL BURST GAP_S`. FILE holds one frame per line in hex; sends
/// TOTAL frames cycling through them, sleeping GAP_S after every BURST. Prints
/// `sent N errors E secs T first_error MSG`.
const INJECT: &str = r#"
import socket, sys, time
dev, path, total, burst, gap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
frames = [bytes.fromhex(l.strip()) for l in open(path) if l.strip()]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
n = len(frames)
sent = err = 0
first = "-"
t0 = time.time()
send = s.send
for i in range(total):
    try:
        send(frames[i % n])
        sent += 1
    except OSError as e:
        err += 1
        if first == "-":
            first = repr(e)
    if burst and (i + 1) % burst == 0:
        time.sleep(gap)
print(f"sent {sent} errors {err} secs {time.time() - t0:.3f} first_error {first}", flush=True)
"#;

/// UDP injector: `SRC DST PORT FILE TOTAL BURST GAP_S`. FILE: one datagram per line in hex
/// (possibly empty lines for empty datagrams are not allowed: use `-`). Prints `sent N`.
const UDP_INJECT: &str = r#"
import socket, sys, time
src, dst, port, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
total, burst, gap = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
dgrams = [b"" if l.strip() == "-" else bytes.fromhex(l.strip()) for l in open(path) if l.strip()]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
n = len(dgrams)
sent = 0
for i in range(total):
    s.sendto(dgrams[i % n], (dst, port))
    sent += 1
    if burst and (i + 1) % burst == 0:
        time.sleep(gap)
print(f"sent {sent}", flush=True)
"#;

/// TCP echo server: `BIND PORT`; prints `listening`.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2])))
ls.listen(64)
print("listening", flush=True)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// One long-lived TCP connection: `DST PORT STOPFILE`. Prints `connected`, then every
/// 0.1 s sends a line, reads its echo and prints `ok K`, until STOPFILE exists (`DONE K`);
/// a failure prints `FAIL …` and exits 1.
const KEEPALIVE: &str = r#"
import os, socket, sys, time
dst, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
k = 0
try:
    s = socket.create_connection((dst, port), timeout=5)
    s.settimeout(10)
    print("connected", flush=True)
    end = time.time() + 100
    while not os.path.exists(stop) and time.time() < end:
        msg = f"keepalive {k}\n".encode()
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            d = s.recv(200)
            if not d:
                raise ConnectionError("closed by the peer")
            got += d
        if got != msg:
            raise ValueError(f"echo {got!r}")
        k += 1
        print(f"ok {k}", flush=True)
        time.sleep(0.1)
except Exception as e:
    print(f"FAIL after {k}: {e!r}", flush=True)
    sys.exit(1)
print(f"DONE {k}", flush=True)
"#;

/// Tries to send a runt (`DEV LEN`) on an afpacket socket; prints `sent` or `refused ERR`.
const RUNT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
try:
    s.send(b"\xff" * int(sys.argv[2]))
    print("sent", flush=True)
except OSError as e:
    print(f"refused {e!r}", flush=True)
"#;

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// Runs `python3 -c SCRIPT ARGS…` in `ns`, asserting success; returns stdout.
fn py(lab: &Lab, ns: &str, script: &str, args: &[&str], timeout: Duration) -> String {
    let p = python3();
    let mut v = vec![p.as_str(), "-c", script];
    v.extend_from_slice(args);
    let o = lab.exec_t(ns, &v, timeout);
    assert!(o.success(), "python3 in {ns} failed: {o}\n{}", lab.diag());
    o.stdout
}

/// Starts `python3 -u -c SCRIPT ARGS…` in `ns`, waiting for `ready` if not empty.
fn py_bg(lab: &Lab, ns: &str, name: &str, script: &str, args: &[&str], ready: &str) -> Bg {
    let p = python3();
    let mut v = vec![p.as_str(), "-u", "-c", script];
    v.extend_from_slice(args);
    let mut bg = lab.spawn_bg(ns, name, &v);
    if !ready.is_empty() {
        bg.wait_output(ready, Duration::from_secs(10));
    }
    bg
}

/// `ip -n NS ARGS…`, asserting success.
fn ipn(ns: &str, args: &[&str]) {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    sh(&v);
}

/// Writes `frames` as hex lines to `dir/name` and returns the path.
fn frame_file(dir: &Path, name: &str, frames: &[Vec<u8>]) -> String {
    let p = dir.join(name);
    let mut text = String::with_capacity(frames.len() * 130);
    for f in frames {
        text.push_str(&hex(f));
        text.push('\n');
    }
    fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Injects `total` frames cycling through `frames` out of `dev` in `ns`, `burst` at a
/// time with `gap` seconds between bursts. Returns (sent, errors, seconds).
#[allow(clippy::too_many_arguments)]
fn inject(
    lab: &Lab,
    ns: &str,
    dev: &str,
    name: &str,
    frames: &[Vec<u8>],
    total: u64,
    burst: u32,
    gap: f64,
) -> (u64, u64, f64) {
    let file = frame_file(&lab.dir, &format!("{name}.hex"), frames);
    let out = py(
        lab,
        ns,
        INJECT,
        &[
            dev,
            &file,
            &total.to_string(),
            &burst.to_string(),
            &gap.to_string(),
        ],
        Duration::from_secs(60),
    );
    let w: Vec<&str> = out.split_whitespace().collect();
    assert!(w.len() >= 6 && w[0] == "sent", "injector output: {out}");
    (
        w[1].parse().unwrap(),
        w[3].parse().unwrap(),
        w[5].parse().unwrap(),
    )
}

/// An Ethernet frame.
fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 packet (20-byte header, correct checksum) carrying `payload`.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap();
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A TCP SYN segment with a correct checksum.
fn tcp_syn(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut t = Vec::with_capacity(20);
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x1000_0000u32.wrapping_add(u32::from(sport)).to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&t);
    let c = csum(&pseudo);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 6, &t)
}

/// A UDP datagram (checksum 0: none) in an IPv4 packet.
fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + data.len()).unwrap();
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    ipv4(src, dst, 17, &u)
}

/// An ARP packet (op 1 request, 2 reply) in a frame from `src` to `dst`.
fn arp(
    dst: [u8; 6],
    src: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa);
    let mut f = eth(dst, src, 0x0806, &a);
    f.resize(60, 0);
    f
}

/// A frame with the given stack of (TPID, VID) tags, then `ethertype` and 46 bytes.
fn tagged(dst: [u8; 6], src: [u8; 6], tags: &[(u16, u16)], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&[0x5a; 46]);
    f
}

/// `vsctl stats --json` of the whole daemon.
fn all_stats(lab: &Lab) -> (Vec<BridgeStats>, Vec<VtepStats>, Option<GatewayStats>) {
    match lab.vsctl_json(&["stats"]) {
        Data::Stats {
            bridges,
            vteps,
            gateway,
        } => (bridges, vteps, gateway),
        other => panic!("stats --json returned {other:?}"),
    }
}

/// The gateway's stats (panics without one).
fn gw_stats(lab: &Lab) -> GatewayStats {
    all_stats(lab)
        .2
        .unwrap_or_else(|| panic!("stats --json has no gateway\n{}", lab.diag()))
}

/// A port's drops, all reasons.
fn port_drops(s: &BridgeStats, port: &str) -> BTreeMap<String, u64> {
    s.ports
        .iter()
        .find(|p| p.name == port)
        .map(|p| p.drops.clone())
        .unwrap_or_default()
}

fn gdrop(g: &GatewayStats, reason: &str) -> u64 {
    g.drops.get(reason).copied().unwrap_or(0)
}

/// Delta of every key of `b` against `a`.
fn delta(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    b.iter()
        .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v != 0)
        .collect()
}

/// VmRSS and VmHWM of `pid` in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in /proc/{pid}/status"))
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// The daemon's pid, checked to be vswitchd itself (`ip netns exec` execs it).
fn vswitchd_pid(lab: &Lab) -> u32 {
    let pid = lab.daemon_pid();
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "vswitchd", "pid {pid} is not vswitchd");
    pid
}

/// Asserts the daemon still runs and answers `vsctl show`; returns the show output.
fn alive(lab: &mut Lab) -> String {
    assert!(lab.daemon_running(), "vswitchd exited\n{}", lab.log_text());
    lab.vsctl_ok(&["show"])
}

/// A background `ping` from `ns` to `ip`: `count` echoes every `interval`.
fn ping_bg(lab: &Lab, ns: &str, name: &str, ip: &str, count: u32, interval: &str) -> Bg {
    let c = count.to_string();
    lab.spawn_bg(
        ns,
        name,
        &["ping", "-n", "-q", "-c", &c, "-i", interval, "-W", "1", ip],
    )
}

/// Waits for a background ping and returns (transmitted, received).
fn ping_result(lab: &Lab, bg: &mut Bg) -> (u32, u32) {
    let st = bg.wait_timeout(LONG);
    assert!(st.is_some(), "{} did not finish", bg.name);
    let out = bg.stdout();
    let line = out
        .lines()
        .find(|l| l.contains("transmitted"))
        .unwrap_or_else(|| panic!("{}: no summary: {out}\n{}", bg.name, lab.diag()));
    let nums: Vec<u32> = line
        .split(',')
        .filter_map(|p| p.split_whitespace().next()?.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// Asserts `ns` pings `ip` (3 of 3 within 10 s).
fn ping_ok(lab: &Lab, ns: &str, ip: &str) {
    let o = lab.exec_t(
        ns,
        &["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-w", "10", ip],
        LONG,
    );
    assert!(
        o.success() && o.stdout.contains(" 3 received"),
        "{ns} cannot ping {ip}: {o}\n{}",
        lab.diag()
    );
}

/// Asserts `ns` does not get an answer from `ip` (2 echoes).
fn ping_fails(lab: &Lab, ns: &str, ip: &str) {
    let o = lab.exec_t(
        ns,
        &["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", ip],
        LONG,
    );
    assert!(
        !o.success() && o.stdout.contains(" 0 received"),
        "{ns} reached {ip}, which it must not: {o}\n{}",
        lab.diag()
    );
}

/// Lines of a capture that mention `needle`.
fn matching(lines: &[String], needle: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------
// The gateway lab: containers on two networks, an uplink to `wan`
// ---------------------------------------------------------------------------------------

/// Namespaces of a gateway lab.
struct Gw {
    lab: Lab,
    c1: String,
    c2: String,
    c3: String,
    c4: String,
    wan: String,
}

/// Container `name` (namespace `<prefix>-<name>`, `eth0` = `ip`/24 via `gw`) on a veth
/// whose switch end is `<name>p`.
fn container(lab: &mut Lab, name: &str, ip: &str, gw: &str) -> String {
    let ns = lab.add_named_ns(name);
    let sw = lab.sw.clone();
    lab.veth_between(&sw, &format!("{name}p"), &ns, "eth0");
    ipn(&ns, &["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    ipn(&ns, &["route", "add", "default", "via", gw]);
    ns
}

/// Bridge `bra` (172.18.0.0/24: c1 the attacker, c2, c3), bridge `brb` (172.18.1.0/24:
/// c4), the uplink `up0` to `wan` (198.51.100.1), the switch at 198.51.100.2.
fn gw_lab(tag: &str, id: u8) -> Gw {
    require_tools(&["python3", "ping", "tcpdump"]);
    let mut lab = Lab::new(tag, id);
    let c1 = container(&mut lab, "c1", C1_IP, GW_A);
    let c2 = container(&mut lab, "c2", C2_IP, GW_A);
    let c3 = container(&mut lab, "c3", C3_IP, GW_A);
    let c4 = container(&mut lab, "c4", C4_IP, GW_B);
    let wan = lab.add_named_ns("wan");
    let sw = lab.sw.clone();
    lab.veth_between(&sw, UPLINK, &wan, "eth0");
    ipn(
        &wan,
        &["addr", "add", &format!("{WAN_IP}/24"), "dev", "eth0"],
    );
    lab.start_daemon();
    for (br, ports) in [("bra", &["c1p", "c2p", "c3p"][..]), ("brb", &["c4p"][..])] {
        lab.vsctl_ok(&["add-br", br]);
        for p in ports {
            lab.vsctl_ok(&["add-port", br, p]);
        }
        lab.wait_ports(br, ports, "up", Duration::from_secs(10));
    }
    lab.vsctl_ok(&["add-net", "bra", NET_A, "--gateway", GW_A]);
    lab.vsctl_ok(&["add-net", "brb", NET_B, "--gateway", GW_B]);
    lab.vsctl_ok(&["set-uplink", UPLINK, "--ip", UP_CIDR, "--gw", WAN_IP]);
    wait_until("the uplink to be up", Duration::from_secs(10), || {
        matches!(lab.vsctl_json(&["show"]),
            Data::Show { uplink: Some(u), .. } if u.state == "up")
    });
    Gw {
        lab,
        c1,
        c2,
        c3,
        c4,
        wan,
    }
}

impl Gw {
    /// The MAC of bridge `br`'s gateway.
    fn gw_mac(&self, br: &str) -> String {
        self.lab
            .show()
            .into_iter()
            .find(|b| b.name == br)
            .and_then(|b| b.net)
            .map(|n| n.mac.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("{br} has no network"))
    }

    /// The uplink's MAC.
    fn uplink_mac(&self) -> String {
        match self.lab.vsctl_json(&["show"]) {
            Data::Show {
                uplink: Some(u), ..
            } => u.mac.to_ascii_lowercase(),
            other => panic!("no uplink in show: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. Malformed frames
// ---------------------------------------------------------------------------------------

/// Malformed frames from container c1: IPv4 cut short, IHL below 5, total length past
/// the frame, a bad header checksum and version 6 in an IPv4 frame (all to the gateway's
/// MAC: `bad_ip`), ARP cut short (`bad_frame`), fragments (`fragment`), a TCP header cut
/// short (`malformed`), a multicast source MAC (`invalid_src_mac` on the port) and an
/// 802.1D link-local destination (`link_local`); on a trunk port of VLANs 10 and 20,
/// frames with 3, 4 and 100 nested tags whose outer VLAN it is not a member of
/// (`vlan_not_member`) and untagged ones (`vlan_untagged`), while c2 pings c3 and the wan.
/// A runt (< 14 bytes) cannot even be sent on a veth: the kernel refuses it (runts are
/// covered through a VTEP in the VXLAN test).
#[test]
fn malformed_frames_are_dropped_and_counted_while_others_ping() {
    let mut g = gw_lab("amal", 231);
    // The gateway's own checks are under test here: with the bridge's ip-checks on,
    // malformed IPv4 and short ARP would be dropped at c1p before reaching the gateway
    // (tests/ipchecks.rs covers that path).
    g.lab.vsctl_ok(&["set-bridge", "bra", "ip-checks=off"]);
    // A trunk port on bra, in VLANs 10 and 20 without a PVID, from namespace `trk`.
    let trk = g.lab.add_named_ns("trk");
    let sw = g.lab.sw.clone();
    g.lab.veth_between(&sw, "trkp", &trk, "eth0");
    g.lab.vsctl_ok(&["add-port", "bra", "trkp"]);
    g.lab.vsctl_ok(&["add-vlan", "bra", "trkp", "10,20"]);
    g.lab
        .wait_ports("bra", &["trkp"], "up", Duration::from_secs(10));

    ping_ok(&g.lab, &g.c2, C3_IP);
    ping_ok(&g.lab, &g.c2, WAN_IP);
    ping_ok(&g.lab, &g.c1, GW_A);
    let gw = mac(&g.gw_mac("bra"));
    let c1mac = mac(&g.lab.mac(&g.c1, "eth0"));
    let c3mac = mac(&g.lab.mac(&g.c3, "eth0"));
    let (c1, wan, gwa) = (ip4(C1_IP), ip4(WAN_IP), ip4(GW_A));
    let to_gw = |ip: &[u8]| eth(gw, c1mac, 0x0800, ip);

    // --- bad_ip: to the gateway's MAC, not a well-formed IPv4 packet -------------------
    let good = udp(c1, wan, 40000, 9, b"attack");
    let mut bad_ip: Vec<(&str, Vec<u8>)> = Vec::new();
    bad_ip.push(("truncated header (10 bytes)", to_gw(&good[..10])));
    bad_ip.push(("truncated header (19 bytes)", to_gw(&good[..19])));
    let mut p = good.clone();
    p[0] = 0x43; // IHL 3
    fix_ip_csum(&mut p);
    bad_ip.push(("IHL 3", to_gw(&p)));
    let mut p = good.clone();
    p[0] = 0x40; // IHL 0
    bad_ip.push(("IHL 0", to_gw(&p)));
    let mut p = good.clone();
    p[0] = 0x4f; // IHL 15: 60 bytes of header in a 34-byte packet
    bad_ip.push(("IHL 15 beyond the packet", to_gw(&p)));
    let mut p = good.clone();
    p[2..4].copy_from_slice(&1500u16.to_be_bytes()); // total length past the frame
    fix_ip_csum(&mut p);
    bad_ip.push(("total length 1500 in a 34-byte packet", to_gw(&p)));
    let mut p = good.clone();
    p[2..4].copy_from_slice(&10u16.to_be_bytes()); // total length below the header
    fix_ip_csum(&mut p);
    bad_ip.push(("total length 10", to_gw(&p)));
    let mut p = good.clone();
    p[10] ^= 0xff; // header checksum
    bad_ip.push(("bad header checksum", to_gw(&p)));
    let mut p = good.clone();
    p[0] = 0x65; // version 6 in an IPv4 frame
    fix_ip_csum(&mut p);
    bad_ip.push(("version 6", to_gw(&p)));
    bad_ip.push(("no IP header at all", to_gw(&[])));

    // --- other gateway reasons ------------------------------------------------------------
    let short_arp = {
        let mut f = arp(gw, c1mac, 1, c1mac, c1, [0; 6], gwa);
        f.truncate(14 + 20);
        f
    };
    let mut frag = good.clone();
    frag[6] = 0x20; // MF
    fix_ip_csum(&mut frag);
    let frag = to_gw(&frag);
    let cut_tcp = to_gw(&ipv4(c1, wan, 6, &[0x9c, 0x40]));

    // --- port drops -----------------------------------------------------------------------
    let mcast_src = eth(c3mac, mac("03:00:00:00:00:01"), 0x88b5, &[0x5a; 46]);
    let link_local = eth(mac("01:80:c2:00:00:00"), c1mac, 0x88b5, &[0x5a; 46]);
    let evil = mac(EVIL_MAC);
    let bc = [0xff; 6];
    let t = 0x8100;
    let mut deep: Vec<(u16, u16)> = vec![(t, 30)];
    deep.extend(std::iter::repeat_n((t, 10), 99));
    let vlan_frames = [
        (
            "3 tags, outer 30",
            tagged(bc, evil, &[(t, 30), (t, 10), (t, 20)], 0x88b5),
        ),
        (
            "4 tags, outer 30 (802.1ad)",
            tagged(bc, evil, &[(0x88a8, 30), (t, 10), (t, 20), (t, 10)], 0x88b5),
        ),
        ("100 tags, outer 30", tagged(bc, evil, &deep, 0x88b5)),
    ];
    let untagged_on_trunk = eth(bc, evil, 0x88b5, &[0x5a; 46]);

    // Runts: the kernel refuses an AF_PACKET send shorter than an Ethernet header.
    let runt = py(&g.lab, &g.c1, RUNT, &["eth0", "10"], SHORT);
    assert!(
        runt.starts_with("refused"),
        "a 10-byte frame was accepted by the veth: {runt}"
    );
    report(&format!(
        "runt (10 bytes) on a veth: {} (a runt cannot reach an afpacket port)",
        runt.trim()
    ));

    // A port's receive ring starts small and grows once frames pile up in it (see
    // tests/ports.rs). What is measured here is the counting, not that warm-up, so grow
    // the rings of the two injecting ports first: frames dropped at their port (link-local,
    // untagged on a trunk) sent into the stopped daemon, then one more each until the
    // switch to the big ring shows in the log.
    let grown = |lab: &Lab| lab.log_text().matches("receive ring grown").count();
    let before = grown(&g.lab);
    let pid = g.lab.daemon_pid().to_string();
    common::sh(&["kill", "-STOP", &pid]);
    let warm_c1 = vec![link_local.clone()];
    let warm_trk = vec![untagged_on_trunk.clone()];
    inject(&g.lab, &g.c1, "eth0", "warm-c1", &warm_c1, 64, 0, 0.0);
    inject(&g.lab, &trk, "eth0", "warm-trk", &warm_trk, 64, 0, 0.0);
    common::sh(&["kill", "-CONT", &pid]);
    wait_until(
        "the injecting ports' rings to grow",
        Duration::from_secs(10),
        || {
            inject(&g.lab, &g.c1, "eth0", "warm-c1", &warm_c1, 1, 0, 0.0);
            inject(&g.lab, &trk, "eth0", "warm-trk", &warm_trk, 1, 0, 0.0);
            grown(&g.lab) >= before + 2
        },
    );

    let (b0, _, g0) = all_stats(&g.lab);
    let g0 = g0.unwrap();
    let bra0 = b0.iter().find(|b| b.name == "bra").unwrap().clone();

    // Pings between other hosts while the frames go in.
    let mut p_c3 = ping_bg(&g.lab, &g.c2, "ping-c2-c3", C3_IP, 60, "0.05");
    let mut p_wan = ping_bg(&g.lab, &g.c2, "ping-c2-wan", WAN_IP, 60, "0.05");
    let per = 300u64;
    let mut expect_gw: BTreeMap<&str, u64> = BTreeMap::new();
    let mut sent_total = 0;
    let mut all: Vec<Vec<u8>> = bad_ip.iter().map(|(_, f)| f.clone()).collect();
    *expect_gw.entry("bad_ip").or_default() += per * bad_ip.len() as u64;
    all.push(short_arp);
    *expect_gw.entry("bad_frame").or_default() += per;
    all.push(frag);
    *expect_gw.entry("fragment").or_default() += per;
    all.push(cut_tcp);
    *expect_gw.entry("malformed").or_default() += per;
    let n_gw = all.len() as u64;
    let (s, e, secs) = inject(
        &g.lab,
        &g.c1,
        "eth0",
        "mal-gw",
        &all,
        per * n_gw,
        100,
        0.002,
    );
    assert_eq!(e, 0, "the injector failed to send some frames");
    sent_total += s;
    let port_frames = vec![mcast_src, link_local];
    let (s2, e2, _) = inject(
        &g.lab,
        &g.c1,
        "eth0",
        "mal-port",
        &port_frames,
        per * 2,
        100,
        0.002,
    );
    assert_eq!(e2, 0);
    sent_total += s2;
    let mut vf: Vec<Vec<u8>> = vlan_frames.iter().map(|(_, f)| f.clone()).collect();
    vf.push(untagged_on_trunk);
    let (s3, e3, _) = inject(&g.lab, &trk, "eth0", "mal-vlan", &vf, per * 4, 100, 0.002);
    assert_eq!(e3, 0);
    sent_total += s3;

    // Every frame counted by its reason.
    let want_rx = per * (n_gw + 2);
    wait_until(
        "the gateway to count every malformed frame",
        Duration::from_secs(10),
        || {
            let g1 = gw_stats(&g.lab);
            expect_gw
                .iter()
                .all(|(k, v)| gdrop(&g1, k) - gdrop(&g0, k) >= *v)
        },
    );
    let (b1, _, g1) = all_stats(&g.lab);
    let g1 = g1.unwrap();
    let bra1 = b1.iter().find(|b| b.name == "bra").unwrap().clone();
    let gd = delta(&g0.drops, &g1.drops);
    let c1d = delta(&port_drops(&bra0, "c1p"), &port_drops(&bra1, "c1p"));
    let trd = delta(&port_drops(&bra0, "trkp"), &port_drops(&bra1, "trkp"));
    report(&format!(
        "malformed: {sent_total} frames injected ({} kinds to the gateway, {per} each, first batch in {secs:.2} s); gateway drops {gd:?}; c1p drops {c1d:?}; trkp drops {trd:?}",
        n_gw
    ));
    for (k, v) in &expect_gw {
        assert_eq!(
            gd.get(*k).copied().unwrap_or(0),
            *v,
            "gateway drop {k}: expected +{v}; all gateway drops {gd:?}\n{}",
            g.lab.diag()
        );
    }
    assert_eq!(
        (
            c1d.get("invalid_src_mac").copied().unwrap_or(0),
            c1d.get("link_local").copied().unwrap_or(0)
        ),
        (per, per),
        "c1p drops {c1d:?}"
    );
    assert_eq!(
        (
            trd.get("vlan_not_member").copied().unwrap_or(0),
            trd.get("vlan_untagged").copied().unwrap_or(0)
        ),
        (per * 3, per),
        "trkp drops {trd:?}"
    );
    let c1p = bra1.ports.iter().find(|p| p.name == "c1p").unwrap();
    let c1p0 = bra0.ports.iter().find(|p| p.name == "c1p").unwrap();
    assert!(
        c1p.rx_packets - c1p0.rx_packets >= want_rx,
        "c1p received {} of {want_rx}",
        c1p.rx_packets - c1p0.rx_packets
    );

    // Pings went on during, and work after; the daemon serves.
    for (name, bg) in [("c2->c3", &mut p_c3), ("c2->wan", &mut p_wan)] {
        let (tx, rx) = ping_result(&g.lab, bg);
        report(&format!(
            "ping {name} during the malformed frames: {rx}/{tx}"
        ));
        assert!(
            rx * 10 >= tx * 9,
            "ping {name} lost more than 10% during the malformed frames: {rx}/{tx}\n{}",
            g.lab.diag()
        );
    }
    ping_ok(&g.lab, &g.c2, C3_IP);
    ping_ok(&g.lab, &g.c2, WAN_IP);
    ping_ok(&g.lab, &g.c1, WAN_IP);
    alive(&mut g.lab);
}

// ---------------------------------------------------------------------------------------
// 2. MAC flood
// ---------------------------------------------------------------------------------------

/// A million frames with random source MACs (unicast, locally administered) from h1 to
/// an unknown unicast destination, with `set-mac-limit 4096`: the FDB stays at the
/// limit, vswitchd's RSS grows less than 64 MiB, h2 and h3 (learned before) keep
/// pinging, and their traffic is still switched to them alone (not flooded to h1).
#[test]
fn mac_flood_stays_at_the_limit_with_bounded_memory() {
    require_tools(&["trafgen"]);
    const LIMIT: u64 = 4096;
    const FRAMES: u64 = 1_000_000;
    let mut lab = Lab::new("amacf", 232);
    for _ in 0..3 {
        lab.add_host();
    }
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2, 3]);
    lab.vsctl_ok(&["set-mac-limit", "br0", &LIMIT.to_string()]);
    lab.ping_all_pairs(&[1, 2, 3]);
    let pid = vswitchd_pid(&lab);
    let (rss0, hwm0) = rss_kib(pid);
    let s0 = lab.stats("br0");
    let h1 = lab.host(1).clone();
    let cfg = lab.dir.join("macflood.cfg");
    fs::write(
        &cfg,
        "{ 0x02, 0xee, 0xee, 0xee, 0xee, 0x01, 0x02, drnd(5), c16(0x88b5), fill(0x5a, 46) }\n",
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap().to_string();
    let tx0 = read_tx(&lab, &h1.ns);

    let mut during = ping_bg(
        &lab,
        &lab.host(2).ns.clone(),
        "ping-h2-h3",
        &lab.ip(3),
        100,
        "0.05",
    );
    let t0 = Instant::now();
    let n = FRAMES.to_string();
    let o = lab.exec_t(
        &h1.ns,
        &[
            "trafgen", "-o", "eth0", "-i", &cfg_s, "-n", &n, "-P", "1", "-Q", "-C",
        ],
        Duration::from_secs(60),
    );
    let secs = t0.elapsed().as_secs_f64();
    assert!(o.success(), "trafgen failed: {o}");
    let tx1 = read_tx(&lab, &h1.ns);
    let injected = tx1 - tx0;
    let (dtx, drx) = ping_result(&lab, &mut during);

    // Let the switch drain its rings, then read the table.
    thread::sleep(Duration::from_millis(500));
    let s1 = lab.stats("br0");
    let fdb = lab.fdb("br0");
    let (rss1, hwm1) = rss_kib(pid);
    let p0 = s0.ports.iter().find(|p| p.name == "h1p").unwrap();
    let p1 = s1.ports.iter().find(|p| p.name == "h1p").unwrap();
    let cnt = |s: &BridgeStats, k: &str| s.counters.get(k).copied().unwrap_or(0);
    report(&format!(
        "MAC flood: {injected} frames sent by h1 in {secs:.2} s ({:.0} kpps), {} received by h1p, h1p drops {:?}",
        injected as f64 / secs / 1000.0,
        p1.rx_packets - p0.rx_packets,
        delta(&p0.drops, &p1.drops)
    ));
    report(&format!(
        "MAC flood: fdb {} entries (stats fdb_entries {}), limit {LIMIT}, learned +{}, mac_limit_drops +{}, fdb_table_full +{}, flooded +{}",
        fdb.len(),
        s1.fdb_entries,
        cnt(&s1, "learned") - cnt(&s0, "learned"),
        cnt(&s1, "mac_limit_drops") - cnt(&s0, "mac_limit_drops"),
        cnt(&s1, "fdb_table_full") - cnt(&s0, "fdb_table_full"),
        cnt(&s1, "flooded") - cnt(&s0, "flooded"),
    ));
    report(&format!(
        "MAC flood: vswitchd VmRSS {:.1} MiB before, {:.1} MiB after (VmHWM {:.1} -> {:.1} MiB); ping h2->h3 during: {drx}/{dtx}",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        hwm0 as f64 / 1024.0,
        hwm1 as f64 / 1024.0
    ));
    assert!(
        injected >= FRAMES,
        "h1 sent {injected} frames, fewer than {FRAMES}: {o}"
    );
    assert!(
        fdb.len() as u64 <= LIMIT && s1.fdb_entries <= LIMIT,
        "the FDB grew past the limit {LIMIT}: fdb-show {} entries, stats {}",
        fdb.len(),
        s1.fdb_entries
    );
    assert!(
        s1.fdb_entries + 16 >= LIMIT,
        "the flood should have filled the FDB to the limit {LIMIT}: {} entries",
        s1.fdb_entries
    );
    assert!(
        cnt(&s1, "mac_limit_drops") + cnt(&s1, "fdb_table_full")
            > cnt(&s0, "mac_limit_drops") + cnt(&s0, "fdb_table_full"),
        "MACs past the limit must be counted: {:?}",
        s1.counters
    );
    assert!(
        hwm1.saturating_sub(rss0) < 64 * 1024,
        "vswitchd grew by {} KiB (peak) during the MAC flood",
        hwm1.saturating_sub(rss0)
    );
    assert!(
        drx * 2 >= dtx,
        "h2 -> h3 lost more than half its pings during the flood: {drx}/{dtx}\n{}",
        lab.diag()
    );
    // Known hosts are still learned where they are, and keep pinging.
    for n in [2u8, 3] {
        let m = lab.host_mac(n);
        let port = format!("h{n}p");
        assert!(
            fdb.iter().any(|e| e.mac == m && e.port == port),
            "h{n} ({m}) is no longer learned on {port} after the flood"
        );
    }
    let h1ns = h1.ns.clone();
    let cap = Capture::start(
        &lab,
        &h1ns,
        "eth0",
        "tcpdump-h1-icmp",
        &["-Q", "in", "icmp"],
    );
    lab.ping(2, 3);
    lab.ping(3, 2);
    let seen = cap.stop(Duration::from_millis(200));
    assert!(
        seen.is_empty(),
        "after the flood, h2<->h3 unicast was flooded to h1:\n{}",
        seen.join("\n")
    );
    lab.ping_all_pairs(&[1, 2, 3]);
    alive(&mut lab);
}

/// tx_packets + tx_dropped of eth0 in `ns`.
fn read_tx(lab: &Lab, ns: &str) -> u64 {
    let o = lab.exec_ok(
        ns,
        &[
            "cat",
            "/sys/class/net/eth0/statistics/tx_packets",
            "/sys/class/net/eth0/statistics/tx_dropped",
        ],
    );
    o.split_whitespace()
        .map(|v| v.parse::<u64>().unwrap())
        .sum()
}

// ---------------------------------------------------------------------------------------
// 3. SYN, UDP and new-flow floods against conntrack
// ---------------------------------------------------------------------------------------

/// With `set-ct-limit 1000` and a TCP connection c2 -> wan established before: SYN and
/// UDP floods from the wan to published ports (each packet a new flow: `table_full` past
/// the limit) and to unpublished ports (`no_mapping`), then 20,000 new UDP flows from c1
/// out of the uplink (`table_full`). Conntrack never exceeds the limit, the established
/// connection keeps echoing, and the daemon serves.
#[test]
fn syn_udp_and_new_flow_floods_stay_within_the_ct_limit() {
    const LIMIT: u64 = 1000;
    const FLOWS: u16 = 5000;
    let mut g = gw_lab("aflood", 233);
    g.lab.vsctl_ok(&["set-ct-limit", &LIMIT.to_string()]);
    g.lab
        .vsctl_ok(&["publish", "tcp", "8080", &format!("{C3_IP}:80")]);
    g.lab
        .vsctl_ok(&["publish", "udp", "8081", &format!("{C3_IP}:81")]);
    let _echo = py_bg(
        &g.lab,
        &g.wan,
        "echo-wan",
        ECHO_SERVER,
        &[WAN_IP, "7000"],
        "listening",
    );
    let stop = g.lab.dir.join("stop-keepalive");
    let stop_s = stop.to_str().unwrap().to_string();
    let mut ka = py_bg(
        &g.lab,
        &g.c2,
        "keepalive",
        KEEPALIVE,
        &[WAN_IP, "7000", &stop_s],
        "ok 3",
    );
    let g0 = gw_stats(&g.lab);
    assert_eq!(g0.conntrack, 1, "one tracked connection before: {g0:#?}");

    // From the wan to the uplink address, source addresses beyond the wan's subnet.
    let wan_mac = mac(&g.lab.mac(&g.wan, "eth0"));
    let up_mac = mac(&g.uplink_mac());
    let up = ip4(UP_IP);
    let src = |i: u16| [10, 99, (i >> 8) as u8, (i & 0xff) as u8];
    let build = |f: &dyn Fn(u16) -> Vec<u8>| -> Vec<Vec<u8>> {
        (0..FLOWS)
            .map(|i| eth(up_mac, wan_mac, 0x0800, &f(i)))
            .collect()
    };
    let floods: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "SYN to published tcp/8080",
            build(&|i| tcp_syn(src(i), up, 10000 + i, 8080)),
        ),
        (
            "SYN to unpublished tcp/9999",
            build(&|i| tcp_syn(src(i), up, 10000 + i, 9999)),
        ),
        (
            "UDP to published udp/8081",
            build(&|i| udp(src(i), up, 10000 + i, 8081, b"flood")),
        ),
        (
            "UDP to unpublished udp/9998",
            build(&|i| udp(src(i), up, 10000 + i, 9998, b"flood")),
        ),
    ];
    let per: u64 = 20_000;
    let mut max_ct = 0u64;
    let mut figures = Vec::new();
    for (k, (what, frames)) in floods.iter().enumerate() {
        let a = gw_stats(&g.lab);
        let (s, e, secs) = inject(
            &g.lab,
            &g.wan,
            "eth0",
            &format!("flood{k}"),
            frames,
            per,
            500,
            0.002,
        );
        assert_eq!(e, 0, "{what}: the injector failed to send");
        thread::sleep(Duration::from_millis(300));
        let b = gw_stats(&g.lab);
        max_ct = max_ct.max(b.conntrack);
        figures.push(format!(
            "{what}: {s} frames in {secs:.2} s, conntrack {}, drops {:?}",
            b.conntrack,
            delta(&a.drops, &b.drops)
        ));
        assert!(
            b.conntrack <= LIMIT,
            "{what}: conntrack {} past the limit {LIMIT}",
            b.conntrack
        );
    }
    let g1 = gw_stats(&g.lab);
    let d1 = delta(&g0.drops, &g1.drops);

    // New flows out of a container.
    let c1mac = mac(&g.lab.mac(&g.c1, "eth0"));
    let gw = mac(&g.gw_mac("bra"));
    let out: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            eth(
                gw,
                c1mac,
                0x0800,
                &udp(ip4(C1_IP), ip4(WAN_IP), 20000 + i, 6000, b"new flow"),
            )
        })
        .collect();
    let (s, e, secs) = inject(&g.lab, &g.c1, "eth0", "flood-out", &out, per, 500, 0.002);
    assert_eq!(e, 0);
    thread::sleep(Duration::from_millis(300));
    let g2 = gw_stats(&g.lab);
    max_ct = max_ct.max(g2.conntrack);
    figures.push(format!(
        "new UDP flows c1 -> wan: {s} frames in {secs:.2} s, conntrack {}, drops {:?}",
        g2.conntrack,
        delta(&g1.drops, &g2.drops)
    ));
    for f in &figures {
        report(f);
    }
    report(&format!(
        "ct limit {LIMIT}: conntrack at most {max_ct}, ct_refused +{}, evicted +{}, all drops {:?}",
        g2.ct_refused - g0.ct_refused,
        g2.counters.get("ct_evicted").copied().unwrap_or(0)
            - g0.counters.get("ct_evicted").copied().unwrap_or(0),
        delta(&g0.drops, &g2.drops)
    ));
    let (entries, limit) = match g.lab.vsctl_json(&["ct-show"]) {
        Data::Conntrack { entries, limit } => (entries, limit),
        other => panic!("ct-show: {other:?}"),
    };
    assert_eq!(limit, LIMIT);
    assert!(
        entries.len() as u64 <= LIMIT && g2.conntrack <= LIMIT,
        "conntrack past the limit: ct-show {} entries, stats {}",
        entries.len(),
        g2.conntrack
    );
    assert_eq!(
        g2.conntrack, LIMIT,
        "the floods should have filled the table to the limit"
    );
    assert!(
        d1.get("no_mapping").copied().unwrap_or(0) >= 2 * per * 9 / 10,
        "unsolicited packets to unpublished ports must be counted no_mapping: {d1:?}"
    );
    // Past the limit a new flow takes the place of an unanswered one (early drop, as
    // Linux does), so a flood of them cannot lock every container out; one that finds
    // none to evict is refused (table_full). Either way each is counted.
    let tf = gdrop(&g2, "table_full") - gdrop(&g0, "table_full");
    let evicted = |g: &GatewayStats| g.counters.get("ct_evicted").copied().unwrap_or(0);
    let ev = evicted(&g2) - evicted(&g0);
    assert!(
        tf + ev >= per,
        "new flows past the limit must evict an unanswered flow or be counted table_full \
         (evicted +{ev}, table_full +{tf}): {:?} {:?}",
        g2.counters,
        g2.drops
    );
    assert_eq!(
        g2.ct_refused - g0.ct_refused,
        tf,
        "ct_refused counts what table_full drops"
    );

    // The connection opened before still echoes, ten more times.
    let k0 = ka.stdout().lines().filter(|l| l.starts_with("ok ")).count();
    let deadline = Instant::now() + Duration::from_secs(15);
    while ka.stdout().lines().filter(|l| l.starts_with("ok ")).count() < k0 + 10 {
        assert!(
            ka.try_wait().is_none() && Instant::now() < deadline,
            "the established connection stopped echoing after the floods:\n{}\n{}",
            ka.stdout(),
            g.lab.diag()
        );
        thread::sleep(Duration::from_millis(50));
    }
    fs::write(&stop, b"stop").unwrap();
    let st = ka.wait_timeout(Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()) && ka.stdout().contains("DONE"),
        "the established connection failed: {st:?}\n{}",
        ka.stdout()
    );
    report(&format!(
        "established TCP c2 -> wan:7000 through the floods: {}",
        ka.stdout().lines().last().unwrap_or_default()
    ));
    // Within the same network nothing needs conntrack: c2 still reaches c3.
    ping_ok(&g.lab, &g.c2, C3_IP);
    alive(&mut g.lab);
}

// ---------------------------------------------------------------------------------------
// 4. VLAN hopping, ARP spoofing, isolation, foreign VXLAN
// ---------------------------------------------------------------------------------------

/// Switch A: h1 (the attacker) and h2 access ports of VLAN 10, h3 an access port of VLAN
/// 20, h4 a trunk of 10 and 20 (tagged); a trunk to switch B carrying 20 tagged and 10 as
/// its native (untagged, PVID) VLAN, as many networks run it; on B, h5 is an access port
/// of VLAN 20. From h1: a frame tagged 20 only, frames tagged 10 outside and 20 inside
/// (802.1Q and 802.1ad outer), and 3 tags 10/20/20. None may reach h3 or h5, the hosts of
/// VLAN 20; h2 (VLAN 10) must see the double-tagged ones (they are VLAN 10's).
#[test]
fn double_tagged_frames_do_not_hop_to_the_inner_vlan() {
    let mut lab = Lab::new("ahop", 234);
    for _ in 0..4 {
        lab.add_host();
    }
    lab.start_daemon();
    let b = lab.add_switch("swb");
    let h5 = lab.add_host_on(&b.ns);
    let sw = lab.sw.clone();
    lab.veth_between(&sw, "tra", &b.ns, "trb");
    lab.bridge_with_hosts("br0", &[1, 2, 3, 4]);
    lab.vsctl_ok(&["add-port", "br0", "tra"]);
    for (p, v) in [("h1p", 10u16), ("h2p", 10), ("h3p", 20)] {
        lab.vsctl_ok(&["add-vlan", "br0", p, &v.to_string(), "--access"]);
    }
    lab.vsctl_ok(&["add-vlan", "br0", "h4p", "10,20"]);
    lab.vsctl_ok(&["add-vlan", "br0", "tra", "20"]);
    lab.vsctl_ok(&["add-vlan", "br0", "tra", "10", "--untagged", "--pvid"]);
    b.vsctl_ok(&["add-br", "br0"]);
    b.vsctl_ok(&["add-port", "br0", "trb"]);
    b.vsctl_ok(&["add-port", "br0", &lab.host(h5).port.clone()]);
    b.vsctl_ok(&["add-vlan", "br0", "trb", "20"]);
    b.vsctl_ok(&["add-vlan", "br0", "trb", "10", "--untagged", "--pvid"]);
    b.vsctl_ok(&["add-vlan", "br0", "h5p", "20", "--access"]);
    lab.wait_ports("br0", &["tra"], "up", Duration::from_secs(10));
    b.wait_ports_up("br0", &["trb", "h5p"], Duration::from_secs(10));
    // The VLANs work: h3 reaches h5 in VLAN 20 across the trunk, h1 reaches h2 in 10.
    lab.ping(3, h5);
    lab.ping(1, 2);

    let h1 = lab.host(1).clone();
    let caps: Vec<(u8, Capture)> = [2u8, 3, 4, h5]
        .iter()
        .map(|&n| {
            let h = lab.host(n).clone();
            (
                n,
                Capture::start(&lab, &h.ns, "eth0", &format!("tcpdump-h{n}"), &["-Q", "in"]),
            )
        })
        .collect();
    let s0 = lab.stats("br0");
    let evil = mac(EVIL_MAC);
    let h3mac = mac(&lab.host_mac(3));
    let h5mac = mac(&lab.host_mac(h5));
    let bc = [0xff; 6];
    let t = 0x8100;
    let mut frames = Vec::new();
    for dst in [bc, h3mac, h5mac] {
        frames.push(tagged(dst, evil, &[(t, 20)], 0x88b5));
        frames.push(tagged(dst, evil, &[(t, 10), (t, 20)], 0x88b5));
        frames.push(tagged(dst, evil, &[(0x88a8, 10), (t, 20)], 0x88b5));
        frames.push(tagged(dst, evil, &[(t, 10), (t, 20), (t, 20)], 0x88b5));
    }
    let per = 50u64;
    // Bursts of 10, 5 ms apart: while h1p's ring is still its first, small one (it grows
    // at the first burst), a busy machine must not make the kernel drop frames before
    // the switch sees them.
    let (s, e, _) = inject(
        &lab,
        &h1.ns,
        "eth0",
        "hop",
        &frames,
        per * frames.len() as u64,
        10,
        0.005,
    );
    assert_eq!(e, 0);
    // Counted when read, which on a loaded machine may trail the injector; a frame the
    // kernel dropped on a full ring shows up as `rx_ring` within the second.
    let h1_drops = || {
        delta(
            &port_drops(&s0, "h1p"),
            &port_drops(&lab.stats("br0"), "h1p"),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let d = h1_drops();
        if d.get("vlan_not_member").copied().unwrap_or(0) >= per * 3 || d.contains_key("rx_ring") {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    let h1d = h1_drops();
    let mut seen: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    for (n, c) in caps {
        let lines = c.stop(Duration::from_millis(200));
        seen.insert(n, matching(&lines, EVIL_MAC));
    }
    report(&format!(
        "VLAN hopping: {s} frames from h1 (access 10); h1p drops {h1d:?}; attack frames seen: h2 (VLAN 10) {}, h3 (VLAN 20) {}, h4 (trunk) {}, h5 (VLAN 20 behind a native-10 trunk) {}",
        seen[&2].len(),
        seen[&3].len(),
        seen[&4].len(),
        seen[&h5].len()
    ));
    assert_eq!(
        h1d.get("vlan_not_member").copied().unwrap_or(0),
        per * 3,
        "frames tagged 20 on an access port of 10 must be dropped vlan_not_member: {h1d:?}"
    );
    assert!(
        !seen[&2].is_empty(),
        "h2 (VLAN 10) saw none of the VLAN 10 frames: the test sent nothing?"
    );
    assert!(
        seen[&3].is_empty(),
        "frames from h1 (VLAN 10) reached h3 on VLAN 20:\n{}",
        seen[&3].join("\n")
    );
    let first: Vec<&String> = seen[&h5].iter().take(5).collect();
    assert!(
        seen[&h5].is_empty(),
        "double-tagged frames from h1 (access port of VLAN 10) hopped into VLAN 20 on switch B \
         through the native-VLAN trunk ({} frames at h5), e.g.:\n{first:#?}",
        seen[&h5].len()
    );
    lab.ping(3, h5);
    lab.ping(1, 2);
    alive(&mut lab);
    b.vsctl_ok(&["show"]);
}

/// c1 claims the gateway's address in ARP (broadcast replies, a reply to c2, gratuitous
/// requests) after c2 resolved the gateway: c2 still resolves the gateway's MAC and pings
/// the gateway and the wan; the gateway counts `arp_spoofed`. Then c1 sends to the other
/// network (172.18.1.0/24): nothing reaches c4, `isolated` rises.
#[test]
fn spoofed_gateway_arp_and_cross_network_traffic_are_dropped() {
    let mut g = gw_lab("aspoof", 235);
    ping_ok(&g.lab, &g.c2, GW_A);
    ping_ok(&g.lab, &g.c2, WAN_IP);
    ping_ok(&g.lab, &g.c4, GW_B);
    let gwmac = g.gw_mac("bra");
    let neigh = |ns: &str| -> String {
        g.lab
            .exec_ok(ns, &["ip", "neigh", "show", GW_A, "dev", "eth0"])
            .trim()
            .to_string()
    };
    let before = neigh(&g.c2);
    assert!(before.contains(&gwmac), "c2 resolved {GW_A} to {before}");
    // Past the kernel's locktime (1 s): an existing entry may be overridden now.
    thread::sleep(Duration::from_millis(1200));
    let g0 = gw_stats(&g.lab);
    let c1mac_s = g.lab.mac(&g.c1, "eth0");
    let c1mac = mac(&c1mac_s);
    let c2mac = mac(&g.lab.mac(&g.c2, "eth0"));
    let gwa = ip4(GW_A);
    let bc = [0xff; 6];
    let frames = vec![
        arp(bc, c1mac, 2, c1mac, gwa, bc, gwa),
        arp(c2mac, c1mac, 2, c1mac, gwa, c2mac, ip4(C2_IP)),
        arp(bc, c1mac, 1, c1mac, gwa, [0; 6], gwa),
    ];
    let per = 20u64;
    let (s, _, _) = inject(&g.lab, &g.c1, "eth0", "spoof", &frames, per * 3, 3, 0.05);
    thread::sleep(Duration::from_millis(300));
    let g1 = gw_stats(&g.lab);
    let spoofed = gdrop(&g1, "arp_spoofed") - gdrop(&g0, "arp_spoofed");
    let after = neigh(&g.c2);
    report(&format!(
        "ARP spoofing: {s} spoofed ARP frames from c1 ({c1mac_s}); gateway arp_spoofed +{spoofed}; c2's entry for {GW_A} before: {before:?}, after: {after:?}"
    ));
    assert!(
        spoofed >= 2 * per,
        "the gateway must count the broadcast spoofed ARP it saw (+{spoofed} of {})",
        2 * per
    );
    // Frames from the gateway's own MAC (which would move it to c1p in the FDB, so that
    // c2's traffic for the gateway went to c1): refused at c1p, counted.
    let bra = |lab: &Lab| {
        all_stats(lab)
            .0
            .into_iter()
            .find(|b| b.name == "bra")
            .unwrap_or_else(|| panic!("no stats for bra"))
    };
    let b0 = bra(&g.lab);
    let gwm = mac(&gwmac);
    let from_gw = vec![
        eth(bc, gwm, 0x0800, &udp(gwa, ip4(C2_IP), 53, 53, b"evil")),
        eth(c2mac, gwm, 0x88b5, b"not the gateway"),
    ];
    inject(&g.lab, &g.c1, "eth0", "gwmac", &from_gw, 2 * per, 10, 0.01);
    thread::sleep(Duration::from_millis(300));
    let mac_spoofed = delta(&port_drops(&b0, "c1p"), &port_drops(&bra(&g.lab), "c1p"));
    report(&format!(
        "MAC spoofing: {} frames from c1 with the gateway's source MAC {gwmac}; c1p drops {mac_spoofed:?}",
        2 * per
    ));
    assert_eq!(
        mac_spoofed.get("gateway_spoof").copied(),
        Some(2 * per),
        "frames from the gateway's MAC on c1p must be dropped as gateway_spoof: {mac_spoofed:?}"
    );
    ping_ok(&g.lab, &g.c2, GW_A);
    // Cross-network traffic.
    let cap = Capture::start(&g.lab, &g.c4, "eth0", "tcpdump-c4", &["-Q", "in", "ip"]);
    let iso0 = gdrop(&gw_stats(&g.lab), "isolated");
    ping_fails(&g.lab, &g.c1, C4_IP);
    let gwb = mac(&g.gw_mac("bra"));
    let udp_x: Vec<Vec<u8>> = (0..50u16)
        .map(|i| {
            eth(
                gwb,
                c1mac,
                0x0800,
                &udp(ip4(C1_IP), ip4(C4_IP), 30000 + i, 53, b"cross"),
            )
        })
        .collect();
    inject(&g.lab, &g.c1, "eth0", "cross", &udp_x, 50, 50, 0.0);
    thread::sleep(Duration::from_millis(300));
    let iso = gdrop(&gw_stats(&g.lab), "isolated") - iso0;
    let seen = matching(&cap.stop(Duration::from_millis(200)), C1_IP);
    report(&format!(
        "isolation: 2 pings and 50 UDP datagrams c1 -> {C4_IP}: isolated +{iso}, at c4: {}",
        seen.len()
    ));
    assert!(iso >= 52, "isolated must count every packet (+{iso} of 52)");
    assert!(
        seen.is_empty(),
        "packets from c1 reached the other network:\n{}",
        seen.join("\n")
    );
    // Checked last, so that isolation is tested whatever the ARP outcome.
    assert!(
        after.contains(&gwmac) && !after.contains(&c1mac_s),
        "c2's ARP entry for the gateway {GW_A} was changed by c1's spoofed ARP: before {before:?}, \
         after {after:?} (gateway MAC {gwmac}, attacker {c1mac_s})\n{}",
        g.lab.diag()
    );
    ping_ok(&g.lab, &g.c2, GW_A);
    ping_ok(&g.lab, &g.c2, WAN_IP);

    ping_ok(&g.lab, &g.c4, GW_B);
    ping_ok(&g.lab, &g.c4, WAN_IP);
    alive(&mut g.lab);
}

/// A VTEP (tunnel `vx`, VNI 42, remote 198.51.100.12: a kernel vxlan device in namespace
/// `peer`) under attack from the peer's second address 198.51.100.13 and from the peer
/// itself: datagrams without the I flag (`vxlan_bad_flags`), with inner frames shorter
/// than an Ethernet header, i.e. runts (`vxlan_truncated`), on an unknown VNI
/// (`vxlan_unknown_vni`) and valid ones from an address that is not a remote
/// (`vxlan_unknown_remote`). No inner frame reaches the bridge's hosts; h2 keeps pinging
/// h3 and, through the tunnel, the peer.
#[test]
fn foreign_and_bogus_vxlan_never_reach_the_bridge() {
    const LOCAL: &str = "198.51.100.11";
    const PEER: &str = "198.51.100.12";
    const ROGUE: &str = "198.51.100.13";
    let mut lab = Lab::new("avx", 236);
    for _ in 0..3 {
        lab.add_host();
    }
    let peer = lab.add_named_ns("peer");
    let sw = lab.sw.clone();
    lab.veth_between(&sw, "ul0", &peer, "ul0");
    ipn(&sw, &["addr", "add", &format!("{LOCAL}/24"), "dev", "ul0"]);
    ipn(&peer, &["addr", "add", &format!("{PEER}/24"), "dev", "ul0"]);
    ipn(
        &peer,
        &["addr", "add", &format!("{ROGUE}/24"), "dev", "ul0"],
    );
    ipn(
        &peer,
        &[
            "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", LOCAL, "local", PEER,
            "dstport", "4789", "dev", "ul0",
        ],
    );
    let peer_ip = lab.ip(9);
    ipn(
        &peer,
        &["addr", "add", &format!("{peer_ip}/24"), "dev", "vx0"],
    );
    ipn(&peer, &["link", "set", "vx0", "up"]);
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2, 3]);
    lab.vsctl_ok(&["add-tunnel", "br0", "vx", "--vni", "42", "--remote", PEER]);
    lab.wait_ports("br0", &["vx"], "up", Duration::from_secs(10));
    let p = lab.ping_out(2, &peer_ip, 3, "0.2", 10);
    assert!(
        p.success(),
        "h2 cannot ping the peer over VXLAN: {p}\n{}",
        lab.diag()
    );

    let caps: Vec<(u8, Capture)> = [1u8, 2, 3]
        .iter()
        .map(|&n| {
            let h = lab.host(n).clone();
            (
                n,
                Capture::start(&lab, &h.ns, "eth0", &format!("tcpdump-h{n}"), &["-Q", "in"]),
            )
        })
        .collect();
    let vtep = |lab: &Lab| -> (BTreeMap<String, u64>, u64) {
        let v = all_stats(lab).1;
        let v = v
            .iter()
            .find(|v| v.dstport == 4789)
            .unwrap_or_else(|| panic!("no VTEP on 4789: {v:?}"));
        (v.drops.clone(), v.rx_datagrams)
    };
    let (d0, rx0) = vtep(&lab);
    let hdr = |flags: u8, vni: u32| -> Vec<u8> {
        vec![
            flags,
            0,
            0,
            0,
            (vni >> 16) as u8,
            (vni >> 8) as u8,
            vni as u8,
            0,
        ]
    };
    let h2mac = mac(&lab.host_mac(2));
    let inner = |dst: [u8; 6]| eth(dst, mac(EVIL_MAC), 0x88b5, &[0x5a; 46]);
    let with = |h: Vec<u8>, f: &[u8]| -> Vec<u8> {
        let mut d = h;
        d.extend_from_slice(f);
        d
    };
    let bc = [0xff; 6];
    // (reason, source, datagrams)
    let cases: Vec<(&str, &str, Vec<Vec<u8>>)> = vec![
        (
            "vxlan_bad_flags",
            PEER,
            vec![
                with(hdr(0x00, 42), &inner(bc)),
                with(hdr(0xf7, 42), &inner(h2mac)),
            ],
        ),
        (
            "vxlan_truncated",
            PEER,
            [0usize, 1, 7, 8, 9, 14, 21]
                .iter()
                .map(|&n| with(hdr(0x08, 42), &inner(bc))[..n].to_vec())
                .collect(),
        ),
        (
            "vxlan_unknown_vni",
            PEER,
            vec![
                with(hdr(0x08, 4242), &inner(bc)),
                with(hdr(0x08, 43), &inner(h2mac)),
            ],
        ),
        (
            "vxlan_unknown_remote",
            ROGUE,
            vec![
                with(hdr(0x08, 42), &inner(bc)),
                with(hdr(0x08, 42), &inner(h2mac)),
            ],
        ),
    ];
    let mut during = ping_bg(
        &lab,
        &lab.host(2).ns.clone(),
        "ping-h2-h3",
        &lab.ip(3),
        40,
        "0.05",
    );
    let per = 2000u64;
    let mut sent = BTreeMap::new();
    for (k, (reason, src, dgrams)) in cases.iter().enumerate() {
        let lines: Vec<String> = dgrams
            .iter()
            .map(|d| if d.is_empty() { "-".into() } else { hex(d) })
            .collect();
        let path = lab.dir.join(format!("vx{k}.hex"));
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        let out = py(
            &lab,
            &peer,
            UDP_INJECT,
            &[
                src,
                LOCAL,
                "4789",
                path.to_str().unwrap(),
                &per.to_string(),
                "200",
                "0.002",
            ],
            Duration::from_secs(60),
        );
        assert!(out.starts_with(&format!("sent {per}")), "{out}");
        sent.insert(*reason, per);
    }
    let total = per * cases.len() as u64;
    wait_until(
        &format!("the VTEP to receive the {total} datagrams"),
        Duration::from_secs(10),
        || vtep(&lab).1 >= rx0 + total,
    );
    let (d1, rx1) = vtep(&lab);
    let dd = delta(&d0, &d1);
    let (dtx, drx) = ping_result(&lab, &mut during);
    let mut seen = BTreeMap::new();
    for (n, c) in caps {
        seen.insert(
            n,
            matching(&c.stop(Duration::from_millis(200)), EVIL_MAC).len(),
        );
    }
    report(&format!(
        "VXLAN: {total} datagrams to {LOCAL}:4789, rx_datagrams +{}, VTEP drops {dd:?}; attack frames at h1/h2/h3: {seen:?}; ping h2->h3 during: {drx}/{dtx}",
        rx1 - rx0
    ));
    for (reason, n) in &sent {
        assert_eq!(
            dd.get(*reason).copied().unwrap_or(0),
            *n,
            "{reason}: sent {n}; VTEP drops {dd:?}"
        );
    }
    assert!(
        seen.values().all(|&n| n == 0),
        "inner frames of dropped datagrams reached hosts: {seen:?}"
    );
    assert!(drx * 10 >= dtx * 9, "h2 -> h3 lost pings: {drx}/{dtx}");
    let p = lab.ping_out(2, &peer_ip, 3, "0.2", 10);
    assert!(
        p.success(),
        "h2 cannot ping the peer after: {p}\n{}",
        lab.diag()
    );
    lab.ping(2, 3);
    alive(&mut lab);
}

// ---------------------------------------------------------------------------------------
// 5. The control socket
// ---------------------------------------------------------------------------------------

/// Writes `bytes` to the control socket, closes the writing half (so a request without a
/// newline ends), and reads what comes back until the daemon closes or 10 s pass.
fn raw_half_close(sock: &Path, bytes: &[u8]) -> Raw {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            panic!(
                "vswitchd neither answered nor closed within 10 s ({} bytes sent)",
                bytes.len()
            )
        }
        Err(_) => {}
    }
    if buf.is_empty() {
        return Raw::Closed;
    }
    Raw::Line(String::from_utf8_lossy(&buf).trim_end().to_string())
}

/// The control socket is mode 0600 and root's; `nobody` running vsctl gets one clear
/// error line; garbage, a line past `ctl::MAX_REQUEST_BYTES`, 200 concurrent clients and
/// clients that hang up mid-request leave the daemon serving with its config unchanged.
#[test]
fn control_socket_resists_abuse() {
    require_tools(&["setpriv"]);
    let mut lab = Lab::new("actl", 237);
    lab.add_host();
    lab.add_host();
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2]);
    lab.vsctl_ok(&["set-mac-limit", "br0", "1000"]);
    let show0 = lab.vsctl_ok(&["show"]);
    let db0 = fs::read(&lab.db).unwrap();
    let sock = lab.sock.clone();
    let unchanged = |lab: &mut Lab, what: &str| {
        let show = alive(lab);
        assert_eq!(show, show0, "`vsctl show` changed after {what}");
        assert_eq!(
            fs::read(&lab.db).unwrap(),
            db0,
            "the config file changed after {what}"
        );
    };

    // Mode and owner.
    let md = fs::metadata(&sock).unwrap();
    let mode = md.permissions().mode() & 0o7777;
    report(&format!(
        "control socket {}: mode {mode:04o}, uid {}, gid {}",
        sock.display(),
        md.uid(),
        md.gid()
    ));
    assert_eq!(mode, 0o600, "the control socket must be mode 0600");
    assert_eq!(md.uid(), 0, "the control socket must be owned by root");

    // A non-root user: vsctl copied where nobody may run it, the socket's directory
    // searchable, so the socket's own mode is what refuses.
    let dir_mode = fs::metadata(&lab.dir).unwrap().permissions().mode();
    fs::set_permissions(&lab.dir, fs::Permissions::from_mode(dir_mode | 0o755)).unwrap();
    let vsctl = lab.dir.join("vsctl-copy");
    fs::copy(vsctl_bin(), &vsctl).unwrap();
    fs::set_permissions(&vsctl, fs::Permissions::from_mode(0o755)).unwrap();
    let o = common::run(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            vsctl.to_str().unwrap(),
            "--sock",
            sock.to_str().unwrap(),
            "show",
        ],
        SHORT,
    );
    let line = assert_vsctl_error(&o);
    report(&format!("vsctl show as nobody: {line}"));
    assert!(
        line.contains("ermission denied")
            && line.contains(sock.to_str().unwrap())
            && line.contains("run vsctl as root"),
        "the error should say the socket refused permission and what to do: {line}"
    );
    let o = common::run(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            vsctl.to_str().unwrap(),
            "--sock",
            sock.to_str().unwrap(),
            "add-br",
            "evil",
        ],
        SHORT,
    );
    assert_vsctl_error(&o);
    unchanged(&mut lab, "a non-root vsctl");

    // Garbage.
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("binary with NULs", (0..=255u8).cycle().take(3000).collect()),
        (
            "invalid UTF-8 line",
            b"\xff\xfe\xfd{\"op\":\"show\"}\xc3\x28\n".to_vec(),
        ),
        ("not JSON", b"hello vswitchd\n".to_vec()),
        ("JSON array", b"[1,2,3]\n".to_vec()),
        ("unknown op", b"{\"op\":\"rm -rf /\"}\n".to_vec()),
        ("deep nesting", {
            let mut v = vec![b'['; 100_000.min(ctl::MAX_REQUEST_BYTES - 10)];
            v.push(b'\n');
            v
        }),
        ("add-br with a huge name", {
            let mut v = b"{\"op\":\"add-br\",\"bridge\":\"".to_vec();
            v.extend(std::iter::repeat_n(b'x', 60_000));
            v.extend_from_slice(b"\"}\n");
            v
        }),
    ];
    for (what, bytes) in &garbage {
        let r = raw_half_close(&sock, bytes);
        report(&format!(
            "garbage ({what}, {} bytes): {}",
            bytes.len(),
            match &r {
                Raw::Closed => "closed".to_string(),
                Raw::Line(l) => l.chars().take(120).collect(),
            }
        ));
        if let Raw::Line(l) = &r {
            assert!(l.contains("\"ok\":false"), "{what}: accepted: {l}");
        }
        unchanged(&mut lab, what);
    }

    // A huge line.
    let mut huge = b"{\"op\":\"show\",\"pad\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'a', ctl::MAX_REQUEST_BYTES * 2));
    huge.extend_from_slice(b"\"}\n");
    let err = assert_refused(&sock, "a line past MAX_REQUEST_BYTES", &huge);
    report(&format!(
        "huge line ({} bytes): {}",
        huge.len(),
        err.as_deref().unwrap_or("closed")
    ));
    let mut endless = vec![b'x'; 1 << 20];
    endless.push(b'\n');
    assert_refused(&sock, "1 MiB without a newline until the end", &endless);
    unchanged(&mut lab, "huge lines");

    // 200 concurrent clients, each asking `show` on its own connection.
    let t0 = Instant::now();
    let results: Vec<Result<String, String>> = thread::scope(|s| {
        let hs: Vec<_> = (0..200)
            .map(|_| {
                let sock = sock.clone();
                s.spawn(move || -> Result<String, String> {
                    let mut c = UnixStream::connect(&sock).map_err(|e| format!("connect: {e}"))?;
                    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    c.write_all(b"{\"op\":\"show\"}\n")
                        .map_err(|e| format!("write: {e}"))?;
                    match common::read_line(&mut c) {
                        (_, Some(e)) => Err(format!("read: {e}")),
                        (buf, None) => Ok(String::from_utf8_lossy(&buf).into_owned()),
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|l| l.starts_with("{\"ok\":true")))
        .count();
    let busy = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|l| l.contains("too many clients")))
        .count();
    let other: Vec<&Result<String, String>> = results
        .iter()
        .filter(|r| {
            !r.as_ref()
                .is_ok_and(|l| l.starts_with("{\"ok\":true") || l.contains("too many clients"))
        })
        .collect();
    report(&format!(
        "200 concurrent clients in {:.2} s: {ok} answered, {busy} told `too many clients`, {} other",
        t0.elapsed().as_secs_f64(),
        other.len()
    ));
    assert!(
        other.is_empty(),
        "concurrent clients got neither an answer nor a clear refusal: {:?}",
        other.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        ok >= 64,
        "only {ok} of 200 concurrent clients were answered"
    );
    unchanged(&mut lab, "200 concurrent clients");

    // Clients that hang up mid-request: half a line, a request then close before the
    // answer, a connection closed at once; many of them.
    for i in 0..100 {
        let mut c = UnixStream::connect(&sock).unwrap();
        let _ = match i % 4 {
            0 => c.write_all(b"{\"op\":\"add-br\",\"bri"),
            1 => c.write_all(b"{\"op\":\"add-br\",\"bridge\":\"half"),
            2 => c.write_all(b"{\"op\":\"show\"}\n{\"op\":\"show\"}\n{\"op\":\"sh"),
            _ => Ok(()),
        };
        let _ = c.shutdown(std::net::Shutdown::Both);
        drop(c);
    }
    thread::sleep(Duration::from_millis(200));
    unchanged(&mut lab, "clients hanging up mid-request");

    // Silent clients holding every slot (the daemon serves 64 at once): the operator's
    // vsctl still gets in, because the longest-idle client is closed to make room once
    // it has been idle for 2 s (one that has just connected may not have sent yet).
    let held: Vec<UnixStream> = (0..100)
        .filter_map(|_| UnixStream::connect(&sock).ok())
        .collect();
    thread::sleep(Duration::from_millis(2500));
    let o: Out = lab.vsctl(&["show"]);
    report(&format!(
        "`vsctl show` while {} silent clients hold connections: exit {:?} {}",
        held.len(),
        o.code(),
        o.stderr.trim()
    ));
    assert!(
        o.success(),
        "silent clients locked vsctl out: {}",
        o.stderr.trim()
    );
    drop(held);
    wait_until(
        "vsctl show to work once the silent clients are gone",
        Duration::from_secs(10),
        || lab.vsctl(&["show"]).success(),
    );
    unchanged(&mut lab, "silent clients");
    lab.ping(1, 2);
}
