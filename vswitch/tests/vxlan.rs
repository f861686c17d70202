//! VXLAN tunnel ports through real `vswitchd` daemons, each in a "host" namespace whose
//! underlay is a veth: interop with the Linux kernel's vxlan device in both directions
//! (ping, iperf3 TCP with default offloads, the wire format read back from a tcpdump
//! capture), two daemons tunnelling to each other, head-end replication between three
//! hosts with per-remote counters, remotes changed live and static FDB entries across
//! `kill -9`, datagrams dropped by reason, and bad requests that change nothing.
//!
//! Addresses: the overlay is the lab's 10.X.Y.0/24 (containers `hN`, MTU 1450); the
//! underlay is 198.51.100.0/24 (TEST-NET-2) inside the test's namespaces only, MTU 1500.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use common::craft::{hex, mac_bytes};
use common::overlay::{
    ip, kernel_peer_hosts, kernel_vtep, overlay_mtu, two_hosts, underlay, Vs, VsDyn, A_IP, B_IP,
};
use common::{assert_refused, assert_vsctl_error, gbps, report, sh, wait_until, Capture, Lab};
use ctl::FdbEntry;

/// Underlay address of host C (three-host test), or B's second address (drops test).
const C_IP: &str = "198.51.100.3";
/// A remote nobody answers for (a static neighbour entry sends its datagrams onto the
/// wire towards B's interface, where the kernel ignores them).
const DECOY_IP: &str = "198.51.100.99";
/// The MAC the decoy's static neighbour entry uses.
const DECOY_MAC: &str = "02:00:00:00:99:99";
/// The IANA VXLAN port.
const VXLAN_PORT: u16 = 4789;
/// The VNI of the kernel interop tests.
const VNI: u32 = 42;
/// Inner MTU over a 1500-byte underlay.
const INNER_MTU: &str = "1450";
/// Least TCP throughput through a tunnel that counts as working.
const MIN_GBPS: f64 = 0.3;

// ---------------------------------------------------------------------------------------
// Building hosts, containers, underlays
// ---------------------------------------------------------------------------------------

/// `add-br br0`, `add-port br0 PORT`, `add-tunnel br0 vx --vni VNI --remote R…` on `v`,
/// then waits until the container port and the tunnel are up.
fn switch_with_tunnel(v: &impl Vs, port: &str, vni: u32, remotes: &[&str]) {
    v.vs_ok(&["add-br", "br0"]);
    v.vs_ok(&["add-port", "br0", port]);
    let vni = vni.to_string();
    let mut args = vec!["add-tunnel", "br0", "vx", "--vni", &vni];
    for r in remotes {
        args.extend_from_slice(&["--remote", r]);
    }
    v.vs_ok(&args);
    v.wait_ports_up("br0", &[port, "vx"]);
}

/// Host A (the lab's daemon, container h1) and plain-Linux host B (namespace `hb`, kernel
/// vxlan device and bridge, container h2) joined by the underlay. Returns B's namespace.
fn kernel_peer_lab(lab: &mut Lab) -> String {
    let b = kernel_peer_hosts(lab, INNER_MTU, VNI, VXLAN_PORT);
    lab.start_daemon();
    switch_with_tunnel(lab, "h1p", VNI, &[B_IP]);
    b
}

// ---------------------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------------------

/// Diagnostics of the switches other than the lab's own, for failure messages.
type More<'a> = &'a dyn Fn() -> String;

/// No other switch.
fn nothing() -> String {
    String::new()
}

/// The lab's diagnostics and the other switches'.
fn diag(lab: &Lab, more: More) -> String {
    format!("{}\n{}", lab.diag(), more())
}

/// Pings `ip` from host `from` `count` times every `interval` s; asserts every reply came
/// and returns the average RTT in ms.
fn ping_rtt(lab: &Lab, from: u8, ip: &str, count: u32, interval: &str, more: More) -> f64 {
    let o = lab.ping_out(from, ip, count, interval, 20);
    assert!(
        o.success() && o.stdout.contains(&format!(" {count} received")),
        "h{from} -> {ip}: not every ping was answered: {o}\n{}",
        diag(lab, more)
    );
    o.stdout
        .lines()
        .find(|l| l.starts_with("rtt") || l.starts_with("round-trip"))
        .and_then(|l| l.split(" = ").nth(1))
        .and_then(|v| v.split('/').nth(1))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no rtt summary in: {o}"))
}

/// Asserts that a full-size inner packet (1450 bytes, don't fragment) from `from` reaches
/// `ip` and comes back: the tunnel's inner MTU is the underlay's 1500 minus 50.
fn full_size_ping(lab: &Lab, from: u8, ip: &str, more: More) {
    let ns = lab.host(from).ns.clone();
    let o = lab.exec_t(
        &ns,
        &[
            "ping", "-n", "-q", "-M", "do", "-s", "1422", "-c", "3", "-i", "0.2", "-w", "10", ip,
        ],
        Duration::from_secs(20),
    );
    assert!(
        o.success() && o.stdout.contains(" 3 received"),
        "1450-byte packets (DF) h{from} -> {ip} did not all cross the tunnel: {o}\n{}",
        diag(lab, more)
    );
}

/// Asserts pings from `from` to `ip` get no reply at all (3 requests).
fn no_reply(lab: &Lab, from: u8, ip: &str, more: More) {
    let o = lab.ping_noreply(from, ip, 3, "0.2", &[]);
    assert!(
        !o.success() && o.stdout.contains(" 0 received"),
        "h{from} reached {ip}, which it must not now: {o}\n{}",
        diag(lab, more)
    );
}

/// Forgets the neighbours of containers `hosts` (after pings that failed on purpose, their
/// ARP entries are FAILED, and ping would report errors at once instead of resolving).
fn flush_neigh(lab: &Lab, hosts: &[u8]) {
    for &n in hosts {
        ip(&lab.host(n).ns, &["neigh", "flush", "dev", "eth0"]);
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

/// iperf3 TCP `from` -> `to` for `secs` s with default offloads; asserts at least
/// [`MIN_GBPS`] and returns (Gbit/s, retransmits).
fn tcp(lab: &mut Lab, from: u8, to: u8, secs: u32, more: More) -> (f64, u64) {
    let v = lab.iperf3(from, to, secs, &[]);
    let (g, r) = iperf_result(&v);
    assert!(
        g > MIN_GBPS,
        "iperf3 TCP h{from} -> h{to} through the tunnel: {g:.3} Gbit/s, below {MIN_GBPS}\n{}",
        diag(lab, more)
    );
    (g, r)
}

/// Asserts that `v`'s VTEP on the VXLAN port received datagrams and dropped none.
fn vtep_received_without_drops(v: &dyn VsDyn, lab: &Lab, more: More) {
    let (drops, rx) = v.drops_on(VXLAN_PORT);
    assert!(
        drops.is_empty() && rx > 0,
        "{}: VTEP rx {rx} datagrams, drops {drops:?}\n{}",
        v.name(),
        diag(lab, more)
    );
}

/// Runs a python3 script inside `ns`, asserting success.
fn python(lab: &Lab, ns: &str, script: &str) -> String {
    let o = lab.exec_t(ns, &["python3", "-c", script], Duration::from_secs(30));
    assert!(o.success(), "python3 in {ns} failed: {o}");
    o.stdout
}

/// Sends the Ethernet frame `frame` `count` times out of `dev` in `ns` (AF_PACKET).
fn send_frame(lab: &Lab, ns: &str, dev: &str, frame: &[u8], count: u32) {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(({dev:?}, 0))\n\
         f = bytes.fromhex({:?})\n\
         for _ in range({count}):\n    s.send(f)\n",
        hex(frame)
    );
    python(lab, ns, &script);
}

/// A broadcast ARP request from (`mac`, `spa`) for `tpa`.
fn arp_request(mac: &str, spa: &str, tpa: &str) -> Vec<u8> {
    let m = mac_bytes(mac);
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&m);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&m);
    f.extend_from_slice(&spa.parse::<Ipv4Addr>().unwrap().octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.parse::<Ipv4Addr>().unwrap().octets());
    f.resize(60, 0);
    f
}

// ---------------------------------------------------------------------------------------
// Reading VXLAN back from a capture
// ---------------------------------------------------------------------------------------

/// One VXLAN datagram of a capture, outer headers decoded.
#[derive(Debug, Clone)]
struct VxPacket {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    /// The VXLAN header's 8 bytes.
    header: [u8; 8],
    /// The inner Ethernet frame (as far as the snap length kept it).
    inner: Vec<u8>,
}

impl VxPacket {
    fn flags(&self) -> u8 {
        self.header[0]
    }
    fn vni(&self) -> u32 {
        u32::from_be_bytes([0, self.header[4], self.header[5], self.header[6]])
    }
    fn reserved_zero(&self) -> bool {
        self.header[1..4] == [0, 0, 0] && self.header[7] == 0
    }
    /// The inner frame's source MAC.
    fn inner_src(&self) -> String {
        self.inner
            .get(6..12)
            .map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default()
    }
    /// The inner IPv4/UDP source port, if the inner frame is one.
    fn inner_udp_sport(&self) -> Option<(u16, u16)> {
        let f = &self.inner;
        if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
            return None;
        }
        let ihl = usize::from(f[14] & 0x0f) * 4;
        let u = f.get(14 + ihl..14 + ihl + 4)?;
        Some((
            u16::from_be_bytes([u[0], u[1]]),
            u16::from_be_bytes([u[2], u[3]]),
        ))
    }
}

/// The inner IPv4/TCP segment of `p` if the datagram was captured whole (not a GSO
/// super-packet): (destination port, payload length, checksum valid).
fn inner_tcp_checksum(frame: &[u8], p: &VxPacket) -> Option<(u16, usize, bool)> {
    // Whole: the outer IPv4 total length covers exactly what was captured.
    let outer_len = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    if outer_len + 14 != frame.len() {
        return None;
    }
    let f = &p.inner;
    if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 6 {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total > ip.len() || total < ihl + 20 {
        return None;
    }
    let tcp = &ip[ihl..total];
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += u32::from(w);
        }
    };
    add(&ip[12..20]);
    add(&[0, 6]);
    add(&u16::try_from(tcp.len()).ok()?.to_be_bytes());
    add(tcp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    Some((
        u16::from_be_bytes([tcp[2], tcp[3]]),
        tcp.len().saturating_sub(doff),
        sum == 0xffff,
    ))
}

/// The frames of a pcap file (microsecond or nanosecond, either byte order; Ethernet).
fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(data.len() >= 24, "{} is not a pcap file", path.display());
    let magic = [data[0], data[1], data[2], data[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("{}: unknown pcap magic {magic:02x?}", path.display()),
    };
    let u32_at = |i: usize| {
        let b = [data[i], data[i + 1], data[i + 2], data[i + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(
        u32_at(20),
        1,
        "{}: link type is not Ethernet",
        path.display()
    );
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= data.len() {
        let caplen = u32_at(i + 8) as usize;
        let start = i + 16;
        if start + caplen > data.len() {
            break; // a record cut short by the capture's end
        }
        out.push(data[start..start + caplen].to_vec());
        i = start + caplen;
    }
    out
}

/// Decodes Ethernet / IPv4 / UDP / VXLAN; `None` for anything else.
fn decode_vxlan(f: &[u8]) -> Option<VxPacket> {
    if f.len() < 14 + 20 + 8 + 8 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ipv4 = &f[14..];
    if ipv4[0] >> 4 != 4 || ipv4[9] != 17 {
        return None;
    }
    let ihl = usize::from(ipv4[0] & 0x0f) * 4;
    let src = Ipv4Addr::new(ipv4[12], ipv4[13], ipv4[14], ipv4[15]);
    let dst = Ipv4Addr::new(ipv4[16], ipv4[17], ipv4[18], ipv4[19]);
    let udp = ipv4.get(ihl..)?;
    if udp.len() < 16 {
        return None;
    }
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let header: [u8; 8] = udp[8..16].try_into().ok()?;
    Some(VxPacket {
        src,
        dst,
        sport,
        dport,
        header,
        inner: udp[16..].to_vec(),
    })
}

/// Starts tcpdump writing VXLAN datagrams arriving on `ul0` in `ns` into a pcap file.
fn capture_vxlan(lab: &Lab, ns: &str, name: &str, filter: &str) -> (Capture, std::path::PathBuf) {
    capture_snap(lab, ns, name, filter, "256")
}

/// [`capture_vxlan`] keeping `snaplen` bytes of each packet (`0`: all of it).
fn capture_snap(
    lab: &Lab,
    ns: &str,
    name: &str,
    filter: &str,
    snaplen: &str,
) -> (Capture, std::path::PathBuf) {
    let path = lab.dir.join(format!("{name}.pcap"));
    let p = path.to_str().unwrap().to_string();
    let cap = Capture::start(
        lab,
        ns,
        "ul0",
        name,
        &[
            "-Q", "in", "-Z", "root", "-U", "-s", snaplen, "-w", &p, filter,
        ],
    );
    (cap, path)
}

// ---------------------------------------------------------------------------------------
// a. Interop with a kernel vxlan peer
// ---------------------------------------------------------------------------------------

/// Host A runs vswitchd (bridge br0, container h1 on an afpacket port, tunnel `vx` VNI 42
/// to B); host B is plain Linux (kernel vxlan device VNI 42 to A, enslaved to a kernel
/// bridge with container h2). Ping and iperf3 TCP both ways with default offloads; the
/// underlay capture shows RFC 7348 datagrams to UDP 4789 with VNI 42 and the I flag, one
/// outer source port per inner flow, several flows over several ports in 32768–60999;
/// each side learned the other's container behind the right VTEP.
#[test]
fn interop_with_the_kernel_vxlan_device_both_directions() {
    let mut lab = Lab::new("vxk", 70);
    let b = kernel_peer_lab(&mut lab);

    // The tunnel as show reports it.
    let t = lab.tunnel("br0", "vx");
    assert_eq!(
        (t.vni, t.dstport, t.vlan),
        (VNI, VXLAN_PORT, None),
        "show --json tunnel: {t:#?}"
    );
    assert_eq!(
        t.remotes.iter().map(|r| r.ip.as_str()).collect::<Vec<_>>(),
        vec![B_IP],
        "show --json remotes: {t:#?}"
    );
    let text = lab.vsctl_ok(&["show"]);
    assert!(
        text.contains("port vx (type vxlan) up") && text.contains("vxlan vni 42 dstport 4789"),
        "`vsctl show` does not show the tunnel:\n{text}"
    );

    // Both directions: A's container first, then B's (each sends its own ARP); then
    // packets of the full inner MTU.
    lab.ping(1, 2);
    lab.ping(2, 1);
    full_size_ping(&lab, 1, &lab.ip(2), &nothing);
    full_size_ping(&lab, 2, &lab.ip(1), &nothing);
    let rtt_ab = ping_rtt(&lab, 1, &lab.ip(2), 20, "0.05", &nothing);
    let rtt_ba = ping_rtt(&lab, 2, &lab.ip(1), 20, "0.05", &nothing);

    // A learned B's container behind the tunnel, from remote B.
    let mac2 = lab.host_mac(2);
    let mac1 = lab.host_mac(1);
    let e = lab
        .fdb_entry("br0", &mac2)
        .unwrap_or_else(|| panic!("h2's MAC {mac2} not learned on A:\n{}", lab.diag()));
    assert_eq!(
        (e.port.as_str(), e.remote.as_deref(), e.is_static),
        ("vx", Some(B_IP), false),
        "h2's MAC on A should be learned on vx from remote {B_IP}: {e:#?}"
    );
    let text = lab.vsctl_ok(&["fdb-show", "br0"]);
    assert!(
        text.lines()
            .any(|l| l.contains(&mac2) && l.contains("vx") && l.contains(B_IP)),
        "fdb-show text lacks {mac2} on vx from {B_IP}:\n{text}"
    );
    // The kernel learned A's container behind A's VTEP address.
    let kfdb = sh(&["bridge", "-n", &b, "fdb", "show", "dev", "vx0"]);
    assert!(
        kfdb.lines()
            .any(|l| l.contains(&mac1) && l.contains(&format!("dst {A_IP}"))),
        "the kernel vxlan device did not learn h1's MAC {mac1} behind {A_IP}:\n{kfdb}"
    );

    // The wire: 16 inner UDP flows from h1 (source ports 40001..=40016) to h2.
    let (cap, pcap) = capture_vxlan(
        &lab,
        &b,
        "tcpdump-ul0-b",
        &format!("udp dst port {VXLAN_PORT} and src host {A_IP}"),
    );
    let ip2 = lab.ip(2);
    let ip1 = lab.ip(1);
    let h1 = lab.host(1).ns.clone();
    python(
        &lab,
        &h1,
        &format!(
            "import socket\n\
             for p in range(40001, 40017):\n\
             \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             \x20   s.bind(({ip1:?}, p))\n\
             \x20   for _ in range(3):\n\
             \x20       s.sendto(b'vxlan-flow' * 10, ({ip2:?}, 9))\n\
             \x20   s.close()\n"
        ),
    );
    let _ = cap.stop(Duration::from_millis(500));
    let pkts: Vec<VxPacket> = pcap_frames(&pcap)
        .iter()
        .filter_map(|f| decode_vxlan(f))
        .collect();
    assert!(
        !pkts.is_empty(),
        "no VXLAN datagram from {A_IP} captured on B's underlay"
    );
    for p in &pkts {
        assert!(
            p.src.to_string() == A_IP && p.dst.to_string() == B_IP && p.dport == VXLAN_PORT,
            "outer headers: {p:?}"
        );
        assert_eq!(
            (p.flags(), p.vni(), p.reserved_zero()),
            (0x08, VNI, true),
            "VXLAN header {:02x?} is not `I flag, VNI 42, reserved bits 0`",
            p.header
        );
        assert!(
            (32768..=60999).contains(&p.sport),
            "outer source port {} outside 32768-60999: {p:?}",
            p.sport
        );
    }
    // Inner flow -> outer source ports.
    let mut by_flow: BTreeMap<u16, BTreeSet<u16>> = BTreeMap::new();
    for p in &pkts {
        if p.inner_src() != mac1 {
            continue;
        }
        if let Some((sport, 9)) = p.inner_udp_sport() {
            by_flow.entry(sport).or_default().insert(p.sport);
        }
    }
    assert_eq!(
        by_flow.keys().copied().collect::<Vec<_>>(),
        (40001..=40016).collect::<Vec<_>>(),
        "the capture should hold the 16 inner flows from h1: {by_flow:?}"
    );
    for (flow, ports) in &by_flow {
        assert_eq!(
            ports.len(),
            1,
            "inner flow from UDP port {flow} went out with several outer source ports {ports:?} (reordering)"
        );
    }
    let outer: BTreeSet<u16> = by_flow.values().flatten().copied().collect();
    assert!(
        outer.len() >= 2,
        "16 inner flows all left with outer source port(s) {outer:?}: no per-flow entropy"
    );

    // Inner checksums: h1's kernel leaves TCP checksums partial (veth offload); the switch
    // must complete them before encapsulating. 40 small segments, 5 ms apart (no TSO
    // batching), each captured whole on B's underlay, must carry valid checksums.
    let h2 = lab.host(2).ns.clone();
    let server = format!(
        "import socket\n\
         l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         l.bind(({ip2:?}, 7000)); l.listen(1); print('listening', flush=True)\n\
         c, _ = l.accept()\n\
         n = 0\n\
         while True:\n\
         \x20   b = c.recv(65536)\n\
         \x20   if not b: break\n\
         \x20   n += len(b)\n\
         print('received', n, flush=True)\n"
    );
    lab.spawn_in(&h2, "tcp-sink", &["python3", "-c", &server])
        .wait_output("listening", Duration::from_secs(10));
    let (cap, pcap) = capture_snap(
        &lab,
        &b,
        "tcpdump-ul0-csum",
        &format!("udp dst port {VXLAN_PORT} and src host {A_IP}"),
        "0",
    );
    python(
        &lab,
        &h1,
        &format!(
            "import socket, time\n\
             s = socket.create_connection(({ip2:?}, 7000))\n\
             s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n\
             for i in range(40):\n\
             \x20   s.sendall(bytes([65 + i % 26]) * 1000)\n\
             \x20   time.sleep(0.005)\n\
             s.close()\n"
        ),
    );
    lab.bgs
        .last_mut()
        .unwrap()
        .wait_output("received 40000", Duration::from_secs(10));
    let _ = cap.stop(Duration::from_millis(300));
    let mut good = 0;
    let mut bad = Vec::new();
    for f in pcap_frames(&pcap) {
        let Some(p) = decode_vxlan(&f) else { continue };
        if let Some((7000, len, ok)) = inner_tcp_checksum(&f, &p) {
            if len == 0 {
                continue;
            }
            if ok {
                good += 1;
            } else {
                bad.push(format!("{len}-byte segment: {p:?}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "inner TCP segments with a wrong checksum left A (partial checksum not completed):\n{}",
        bad.join("\n")
    );
    assert!(
        good >= 20,
        "only {good} whole inner TCP data segments captured to verify checksums"
    );
    report(&format!(
        "inner TCP checksums of {good} segments h1 -> h2 captured on B's underlay: all valid"
    ));

    // TCP both ways, default offloads (TSO super-frames from h1, unsegmented
    // super-packets from the kernel's vxlan device towards A).
    let (ab, ab_r) = tcp(&mut lab, 1, 2, 3, &nothing);
    let (ba, ba_r) = tcp(&mut lab, 2, 1, 3, &nothing);
    report(&format!(
        "vswitchd <-> kernel vxlan (VNI 42, MTU 1450 over 1500): ping rtt avg h1->h2 {rtt_ab:.3} ms, h2->h1 {rtt_ba:.3} ms; \
         iperf3 TCP h1->h2 {ab:.2} Gbit/s ({ab_r} retransmits), h2->h1 {ba:.2} Gbit/s ({ba_r} retransmits); \
         {} VXLAN datagrams captured, 16 inner flows over {} outer source ports",
        pkts.len(),
        outer.len()
    ));
    let (drops, _) = lab.vtep_drops(VXLAN_PORT);
    assert!(
        drops.is_empty(),
        "A's VTEP dropped datagrams from a well-behaved kernel peer: {drops:?}\n{}",
        lab.diag()
    );
    let r = lab.remote("br0", "vx", B_IP);
    assert!(
        r.tx_packets > 0 && r.rx_packets > 0 && r.tx_bytes > 0 && r.rx_bytes > 0,
        "remote {B_IP} counters after traffic both ways: {r:#?}"
    );
    assert_eq!(r.mtu, 1500, "underlay MTU of remote {B_IP}: {r:#?}");
}

// ---------------------------------------------------------------------------------------
// b. vswitchd <-> vswitchd
// ---------------------------------------------------------------------------------------

/// Two hosts each running vswitchd with a tunnel to the other, a container behind each:
/// ping and iperf3 TCP both ways; each learns the far container behind the far VTEP; the
/// per-remote counters and the VTEPs see the traffic and no drop.
#[test]
fn two_vswitchds_tunnel_to_each_other() {
    let mut lab = Lab::new("vxd", 71);
    let (_, b) = two_hosts(&mut lab, INNER_MTU);
    lab.start_daemon();
    switch_with_tunnel(&lab, "h1p", VNI, &[B_IP]);
    switch_with_tunnel(&b, "h2p", VNI, &[A_IP]);
    let more = || b.diag();

    lab.ping(1, 2);
    lab.ping(2, 1);
    full_size_ping(&lab, 1, &lab.ip(2), &more);
    full_size_ping(&lab, 2, &lab.ip(1), &more);
    let rtt_ab = ping_rtt(&lab, 1, &lab.ip(2), 20, "0.05", &more);
    let rtt_ba = ping_rtt(&lab, 2, &lab.ip(1), 20, "0.05", &more);
    for (v, mac, remote) in [
        (&lab as &dyn VsDyn, lab.host_mac(2), B_IP),
        (&b as &dyn VsDyn, lab.host_mac(1), A_IP),
    ] {
        let e = v
            .entry("br0", &mac)
            .unwrap_or_else(|| panic!("{}: {mac} not learned\n{}", v.name(), diag(&lab, &more)));
        assert_eq!(
            (e.port.as_str(), e.remote.as_deref()),
            ("vx", Some(remote)),
            "{}: {mac} should be learned on vx from {remote}: {e:#?}",
            v.name()
        );
    }

    let (ab, ab_r) = tcp(&mut lab, 1, 2, 3, &more);
    let (ba, ba_r) = tcp(&mut lab, 2, 1, 3, &more);
    report(&format!(
        "vswitchd <-> vswitchd (VNI 42, MTU 1450 over 1500): ping rtt avg h1->h2 {rtt_ab:.3} ms, h2->h1 {rtt_ba:.3} ms; \
         iperf3 TCP h1->h2 {ab:.2} Gbit/s ({ab_r} retransmits), h2->h1 {ba:.2} Gbit/s ({ba_r} retransmits)"
    ));
    for (v, remote) in [(&lab as &dyn VsDyn, B_IP), (&b as &dyn VsDyn, A_IP)] {
        let r = v.remote_info("br0", "vx", remote);
        assert!(
            r.tx_packets > 0 && r.rx_packets > 0 && r.mtu == 1500,
            "{}: remote {remote}: {r:#?}",
            v.name()
        );
        vtep_received_without_drops(v, &lab, &more);
    }
}

// ---------------------------------------------------------------------------------------
// c. Three hosts: head-end replication, then unicast to one remote
// ---------------------------------------------------------------------------------------

/// Three vswitchd hosts on one underlay segment (a kernel bridge in a namespace of its
/// own joins their underlay veths), a full mesh: each tunnel has the other two hosts as
/// remotes. Five ARP requests broadcast by container 1 reach containers 2 and 3 exactly
/// five times each, host 1 sends them to both remotes; after learning, 50 pings 1 -> 2
/// go to remote 2 only (remote 3's tx counter on host 1 and host 3's rx counter from
/// host 1 do not move). A MAC that moves from host 2 to host 3 is relearned behind
/// remote 3.
#[test]
fn three_hosts_replicate_broadcasts_and_unicast_to_one_remote() {
    let mut lab = Lab::new("vx3", 72);
    let h1 = lab.sw.clone();
    let s2 = lab.add_switch("hv2");
    let s3 = lab.add_switch("hv3");
    let seg = lab.add_named_ns("ul");
    ip(&seg, &["link", "add", "ulbr", "type", "bridge"]);
    ip(&seg, &["link", "set", "dev", "ulbr", "up"]);
    for (i, (ns, addr)) in [(&h1, A_IP), (&s2.ns, B_IP), (&s3.ns, C_IP)]
        .into_iter()
        .enumerate()
    {
        let p = format!("seg{}", i + 1);
        lab.veth_between(ns, "ul0", &seg, &p);
        ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", "ul0"]);
        ip(&seg, &["link", "set", "dev", &p, "master", "ulbr"]);
    }
    assert_eq!(lab.add_host(), 1);
    assert_eq!(lab.add_host_on(&s2.ns), 2);
    assert_eq!(lab.add_host_on(&s3.ns), 3);
    overlay_mtu(&lab, 1, &h1, INNER_MTU);
    overlay_mtu(&lab, 2, &s2.ns, INNER_MTU);
    overlay_mtu(&lab, 3, &s3.ns, INNER_MTU);
    lab.start_daemon();
    switch_with_tunnel(&lab, "h1p", 100, &[B_IP, C_IP]);
    switch_with_tunnel(&s2, "h2p", 100, &[A_IP, C_IP]);
    switch_with_tunnel(&s3, "h3p", 100, &[A_IP, B_IP]);
    let more = || format!("{}\n{}", s2.diag(), s3.diag());
    let t = lab.tunnel("br0", "vx");
    let mut rs: Vec<&str> = t.remotes.iter().map(|r| r.ip.as_str()).collect();
    rs.sort_unstable();
    assert_eq!(rs, vec![B_IP, C_IP], "host 1's remotes: {t:#?}");

    // Broadcast: 5 ARP requests from container 1 for an address nobody has.
    let fresh = format!("{}.99", lab.net);
    let caps: Vec<(u8, Capture)> = [2u8, 3]
        .iter()
        .map(|&n| {
            let ns = lab.host(n).ns.clone();
            (
                n,
                Capture::start(
                    &lab,
                    &ns,
                    "eth0",
                    &format!("tcpdump-arp-h{n}"),
                    &["-Q", "in", "arp"],
                ),
            )
        })
        .collect();
    let tx0 = (
        lab.remote("br0", "vx", B_IP).tx_packets,
        lab.remote("br0", "vx", C_IP).tx_packets,
    );
    let rx0 = (
        s2.remote("br0", "vx", A_IP).rx_packets,
        s3.remote("br0", "vx", A_IP).rx_packets,
    );
    let mac1 = lab.host_mac(1);
    let ns1 = lab.host(1).ns.clone();
    send_frame(
        &lab,
        &ns1,
        "eth0",
        &arp_request(&mac1, &lab.ip(1), &fresh),
        5,
    );
    let who_has = format!("who-has {fresh}");
    for (n, c) in &caps {
        c.wait_for(
            &format!("h{n} to receive the 5 ARP requests"),
            Duration::from_secs(10),
            |f| f.iter().filter(|l| l.contains(&who_has)).count() >= 5,
        );
    }
    for (n, c) in caps {
        let seen = c.stop(Duration::from_millis(300));
        let k = seen.iter().filter(|l| l.contains(&who_has)).count();
        assert_eq!(
            k,
            5,
            "h{n} received {k} copies of 5 broadcast ARP requests:\n{}",
            seen.join("\n")
        );
    }
    let tx1 = (
        lab.remote("br0", "vx", B_IP).tx_packets,
        lab.remote("br0", "vx", C_IP).tx_packets,
    );
    let rx1 = (
        s2.remote("br0", "vx", A_IP).rx_packets,
        s3.remote("br0", "vx", A_IP).rx_packets,
    );
    assert!(
        tx1.0 >= tx0.0 + 5 && tx1.1 >= tx0.1 + 5,
        "host 1 should have sent the 5 broadcasts to both remotes: tx to {B_IP} {} -> {}, to {C_IP} {} -> {}\n{}",
        tx0.0, tx1.0, tx0.1, tx1.1, diag(&lab, &more)
    );
    assert!(
        rx1.0 >= rx0.0 + 5 && rx1.1 >= rx0.1 + 5,
        "hosts 2 and 3 should have received the 5 broadcasts from {A_IP}: {} -> {}, {} -> {}\n{}",
        rx0.0,
        rx1.0,
        rx0.1,
        rx1.1,
        diag(&lab, &more)
    );
    report(&format!(
        "head-end replication: 5 ARP broadcasts from h1 -> host 1 tx to {B_IP} +{}, to {C_IP} +{}; received by h2 and h3 5 times each",
        tx1.0 - tx0.0,
        tx1.1 - tx0.1
    ));

    // Learning: container 1 talks to 2 and 3 once.
    lab.ping(1, 2);
    lab.ping(1, 3);
    for (n, remote) in [(2u8, B_IP), (3, C_IP)] {
        let mac = lab.host_mac(n);
        let e = lab.fdb_entry("br0", &mac).unwrap_or_else(|| {
            panic!(
                "h{n}'s MAC {mac} not learned on host 1\n{}",
                diag(&lab, &more)
            )
        });
        assert_eq!(
            (e.port.as_str(), e.remote.as_deref()),
            ("vx", Some(remote)),
            "h{n}'s MAC on host 1: {e:#?}"
        );
    }

    // Unicast 1 -> 2: remote 2 only.
    let before = (
        lab.remote("br0", "vx", B_IP).tx_packets,
        lab.remote("br0", "vx", C_IP).tx_packets,
        s3.remote("br0", "vx", A_IP).rx_packets,
    );
    let rtt = ping_rtt(&lab, 1, &lab.ip(2), 50, "0.01", &more);
    let after = (
        lab.remote("br0", "vx", B_IP).tx_packets,
        lab.remote("br0", "vx", C_IP).tx_packets,
        s3.remote("br0", "vx", A_IP).rx_packets,
    );
    report(&format!(
        "50 pings h1 -> h2 (rtt avg {rtt:.3} ms): host 1 tx to {B_IP} +{}, to {C_IP} +{}; host 3 rx from {A_IP} +{}",
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2
    ));
    assert!(
        after.0 >= before.0 + 50,
        "the 50 echo requests did not all go to remote {B_IP}: {} -> {}\n{}",
        before.0,
        after.0,
        diag(&lab, &more)
    );
    assert_eq!(
        (after.1 - before.1, after.2 - before.2),
        (0, 0),
        "unicast h1 -> h2 also went to remote {C_IP} (host 1 tx, host 3 rx)\n{}",
        diag(&lab, &more)
    );

    // A MAC that moves to another remote follows it: h2 goes away and h3 takes its MAC
    // (a container migrated to host 3). Host 1 must relearn it behind remote 3.
    let mac2 = lab.host_mac(2);
    let ns2 = lab.host(2).ns.clone();
    let ns3 = lab.host(3).ns.clone();
    ip(&ns2, &["link", "set", "dev", "eth0", "down"]);
    ip(&ns3, &["link", "set", "dev", "eth0", "address", &mac2]);
    lab.ping(3, 1);
    let e = lab.fdb_entry("br0", &mac2).unwrap();
    assert_eq!(
        (e.port.as_str(), e.remote.as_deref()),
        ("vx", Some(C_IP)),
        "{mac2} moved from behind {B_IP} to behind {C_IP}; host 1 still has: {e:#?}\n{}",
        diag(&lab, &more)
    );
    lab.ping(1, 3);
}

// ---------------------------------------------------------------------------------------
// d. Remotes changed live, static entries, persistence across kill -9
// ---------------------------------------------------------------------------------------

/// Hosts A and B run vswitchd; A's tunnel starts with a decoy remote only. `add-remote B`
/// makes traffic flow at once, `del-remote B` stops it (B's datagrams are then dropped as
/// from an unknown remote), adding it back restores it. A static entry sends a MAC to the
/// decoy only. After `kill -9` and a restart on the same --db, the tunnel, its remotes and
/// the static entry are back and traffic flows.
#[test]
fn remotes_change_live_and_static_entries_survive_kill_9() {
    let mut lab = Lab::new("vxr", 73);
    let (a, b) = two_hosts(&mut lab, INNER_MTU);
    // Datagrams to the decoy go onto the wire (no ARP): B's kernel ignores them.
    ip(
        &a,
        &[
            "neigh",
            "replace",
            DECOY_IP,
            "lladdr",
            DECOY_MAC,
            "dev",
            "ul0",
            "nud",
            "permanent",
        ],
    );
    lab.start_daemon();
    switch_with_tunnel(&lab, "h1p", VNI, &[DECOY_IP]);
    switch_with_tunnel(&b, "h2p", VNI, &[A_IP]);
    let more = || b.diag();
    let ip1 = lab.ip(1);
    let ip2 = lab.ip(2);
    let remotes = |lab: &Lab| -> BTreeSet<String> {
        lab.tunnel("br0", "vx")
            .remotes
            .into_iter()
            .map(|r| r.ip)
            .collect()
    };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };

    // Only the decoy: nothing reaches B; what B sends is from an unknown remote.
    no_reply(&lab, 1, &ip2, &more);
    let (d0, _) = lab.vtep_drops(VXLAN_PORT);
    no_reply(&lab, 2, &ip1, &more);
    let (d1, _) = lab.vtep_drops(VXLAN_PORT);
    let unknown = |d: &BTreeMap<String, u64>| d.get("vxlan_unknown_remote").copied().unwrap_or(0);
    assert!(
        unknown(&d1) > unknown(&d0),
        "B's datagrams to A (B not a remote of A's tunnel) were not counted as vxlan_unknown_remote: {d0:?} -> {d1:?}"
    );

    // add-remote: live.
    lab.vsctl_ok(&["add-remote", "br0", "vx", B_IP]);
    assert_eq!(remotes(&lab), set(&[DECOY_IP, B_IP]));
    flush_neigh(&lab, &[1, 2]);
    lab.ping(1, 2);
    lab.ping(2, 1);

    // A static entry: a MAC behind the decoy. Unicast to it goes to the decoy only.
    let smac = "02:00:00:73:00:77";
    let sip = format!("{}.77", lab.net);
    lab.vsctl_ok(&["add-fdb", "br0", smac, "vx", "--remote", DECOY_IP]);
    let check_static = |lab: &Lab, when: &str| {
        let e = lab
            .fdb_entry("br0", smac)
            .unwrap_or_else(|| panic!("{when}: static {smac} missing from fdb-show"));
        assert!(
            e.is_static && e.port == "vx" && e.remote.as_deref() == Some(DECOY_IP),
            "{when}: static entry {smac}: {e:#?}"
        );
        let text = lab.vsctl_ok(&["fdb-show", "br0"]);
        assert!(
            text.lines()
                .any(|l| l.contains(smac) && l.contains("static") && l.contains(DECOY_IP)),
            "{when}: fdb-show text lacks {smac} as static behind {DECOY_IP}:\n{text}"
        );
    };
    check_static(&lab, "after add-fdb");
    let h1ns = lab.host(1).ns.clone();
    ip(
        &h1ns,
        &[
            "neigh",
            "replace",
            &sip,
            "lladdr",
            smac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    );
    let static_goes_to_decoy = |lab: &Lab, when: &str| {
        let h2ns = lab.host(2).ns.clone();
        let at_h2 = Capture::start(
            lab,
            &h2ns,
            "eth0",
            &format!("tcpdump-static-h2-{}", when.replace(' ', "-")),
            &["-Q", "in", "ether", "dst", smac],
        );
        let (cap, pcap) = capture_vxlan(
            lab,
            &b.ns,
            &format!("tcpdump-decoy-{}", when.replace(' ', "-")),
            &format!("udp dst port {VXLAN_PORT} and dst host {DECOY_IP}"),
        );
        let t0 = lab.remote("br0", "vx", DECOY_IP).tx_packets;
        let _ = lab.ping_noreply(1, &sip, 5, "0.05", &[]);
        let t1 = lab.remote("br0", "vx", DECOY_IP).tx_packets;
        let _ = cap.stop(Duration::from_millis(300));
        let seen_h2 = at_h2.stop(Duration::ZERO);
        let to_decoy = pcap_frames(&pcap)
            .iter()
            .filter_map(|f| decode_vxlan(f))
            .filter(|p| p.vni() == VNI && p.inner.get(0..6) == Some(&mac_bytes(smac)[..]))
            .count();
        assert!(
            t1 >= t0 + 5 && to_decoy >= 5,
            "{when}: 5 frames to static {smac}: decoy tx {t0} -> {t1}, {to_decoy} seen on the wire to {DECOY_IP}\n{}",
            diag(lab, &more)
        );
        assert!(
            seen_h2.is_empty(),
            "{when}: frames to static {smac} (behind {DECOY_IP}) reached B:\n{}",
            seen_h2.join("\n")
        );
    };
    static_goes_to_decoy(&lab, "before restart");

    // del-remote: live, traffic stops both ways.
    lab.vsctl_ok(&["del-remote", "br0", "vx", B_IP]);
    assert_eq!(remotes(&lab), set(&[DECOY_IP]));
    no_reply(&lab, 1, &ip2, &more);
    let (d2, _) = lab.vtep_drops(VXLAN_PORT);
    no_reply(&lab, 2, &ip1, &more);
    let (d3, _) = lab.vtep_drops(VXLAN_PORT);
    assert!(
        unknown(&d3) > unknown(&d2),
        "after del-remote {B_IP}, B's datagrams were not dropped as vxlan_unknown_remote: {d2:?} -> {d3:?}"
    );
    check_static(&lab, "after del-remote of another remote");

    // Back, plus a remote added and removed again: the file must hold exactly the end state.
    lab.vsctl_ok(&["add-remote", "br0", "vx", B_IP]);
    lab.vsctl_ok(&["add-remote", "br0", "vx", "198.51.100.98"]);
    lab.vsctl_ok(&["del-remote", "br0", "vx", "198.51.100.98"]);
    assert_eq!(remotes(&lab), set(&[DECOY_IP, B_IP]));
    flush_neigh(&lab, &[1, 2]);
    lab.ping(1, 2);
    lab.ping(2, 1);
    let tunnel_before = lab.tunnel("br0", "vx");
    let statics_before: Vec<FdbEntry> = lab
        .fdb_entries("br0")
        .into_iter()
        .filter(|e| e.is_static)
        .collect();

    // kill -9, restart on the same --db.
    let st = lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    assert!(
        st.code().is_none(),
        "vswitchd was not killed by SIGKILL: {st}"
    );
    lab.start_daemon();
    lab.wait_ports("br0", &["h1p", "vx"], "up", Duration::from_secs(10));
    let t = lab.tunnel("br0", "vx");
    assert_eq!(
        (t.vni, t.dstport, &t.local, t.vlan),
        (
            tunnel_before.vni,
            tunnel_before.dstport,
            &tunnel_before.local,
            tunnel_before.vlan
        ),
        "tunnel settings after restart: {t:#?}"
    );
    assert_eq!(
        remotes(&lab),
        set(&[DECOY_IP, B_IP]),
        "remotes after restart"
    );
    let statics_after: Vec<FdbEntry> = lab
        .fdb_entries("br0")
        .into_iter()
        .filter(|e| e.is_static)
        .collect();
    assert_eq!(
        statics_after, statics_before,
        "static entries after kill -9 and restart"
    );
    check_static(&lab, "after restart");
    lab.ping(1, 2);
    lab.ping(2, 1);
    static_goes_to_decoy(&lab, "after restart");

    // del-fdb removes it, and the removal persists too.
    lab.vsctl_ok(&["del-fdb", "br0", smac]);
    assert!(
        lab.fdb_entry("br0", smac).is_none_or(|e| !e.is_static),
        "del-fdb left the static entry"
    );
    let conf = fs::read_to_string(&lab.db).unwrap();
    assert!(
        !conf.to_ascii_lowercase().contains(smac),
        "the config file still names {smac} after del-fdb:\n{conf}"
    );

    // A static entry is never moved by learning: h2's MAC pinned behind the decoy stays
    // there while h2 (behind B) keeps sending, so h1's answers go to the decoy only.
    let mac2 = lab.host_mac(2);
    lab.vsctl_ok(&["add-fdb", "br0", &mac2, "vx", "--remote", DECOY_IP]);
    let _ = lab.ping_noreply(2, &ip1, 3, "0.2", &[]);
    let e = lab.fdb_entry("br0", &mac2).unwrap();
    assert!(
        e.is_static && e.remote.as_deref() == Some(DECOY_IP),
        "learning moved the static entry of h2's MAC {mac2} (pinned to {DECOY_IP}): {e:#?}"
    );
    lab.vsctl_ok(&["del-fdb", "br0", &mac2]);
    flush_neigh(&lab, &[1, 2]);
    lab.ping(2, 1);
    let e = lab.fdb_entry("br0", &mac2).unwrap();
    assert!(
        !e.is_static && e.remote.as_deref() == Some(B_IP),
        "after del-fdb, h2's MAC should be learned behind {B_IP} again: {e:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// e. Drops by reason
// ---------------------------------------------------------------------------------------

/// Crafted datagrams to A's VTEP from B's underlay: unknown VNI, I flag clear, truncated
/// (< 22 bytes, including an empty datagram), and a valid one on VNI 42 from an address
/// that is not a remote of VNI 42 (it is one of another tunnel, VNI 43, on the same VTEP).
/// Each reason's counter grows by exactly what was sent, none of them reaches the
/// container, and the tunnel keeps forwarding.
#[test]
fn malformed_and_foreign_datagrams_are_dropped_by_reason() {
    let mut lab = Lab::new("vxdrop", 74);
    let b = kernel_peer_lab(&mut lab);
    lab.ping(1, 2);
    // A second underlay address on B: a remote of A's VNI 43 tunnel, not of VNI 42's.
    ip(&b, &["addr", "add", &format!("{C_IP}/24"), "dev", "ul0"]);
    lab.vsctl_ok(&["add-br", "br1"]);
    lab.vsctl_ok(&["add-tunnel", "br1", "vy", "--vni", "43", "--remote", C_IP]);
    let h1ns = lab.host(1).ns.clone();
    let at_h1 = Capture::start(
        &lab,
        &h1ns,
        "eth0",
        "tcpdump-h1-88b5",
        &["-Q", "in", "ether", "proto", "0x88b5"],
    );
    let (d0, rx0) = lab.vtep_drops(VXLAN_PORT);

    // (reason, source address, datagrams as python bytes expressions)
    let inner = "b'\\xff'*6 + bytes.fromhex('0200007400ee') + b'\\x88\\xb5' + b'z'*46";
    let hdr = |flags: u8, vni: u32| {
        format!(
            "bytes([{flags}, 0, 0, 0, {}, {}, {}, 0])",
            (vni >> 16) & 0xff,
            (vni >> 8) & 0xff,
            vni & 0xff
        )
    };
    let unknown_vni = format!("{} + {inner}", hdr(0x08, 4242));
    let bad_flags = format!("{} + {inner}", hdr(0x00, VNI));
    let valid = format!("{} + {inner}", hdr(0x08, VNI));
    let trunc_full = format!("{} + {inner}", hdr(0x08, VNI));
    let cases: Vec<(&str, &str, Vec<String>)> = vec![
        ("vxlan_unknown_vni", B_IP, vec![unknown_vni; 3]),
        ("vxlan_bad_flags", B_IP, vec![bad_flags; 4]),
        (
            "vxlan_truncated",
            B_IP,
            [0usize, 1, 7, 8, 14, 21]
                .iter()
                .map(|n| format!("({trunc_full})[:{n}]"))
                .collect(),
        ),
        ("vxlan_unknown_remote", C_IP, vec![valid; 7]),
    ];
    let mut script = String::from("import socket\n");
    for (_, src, dgrams) in &cases {
        script.push_str(&format!(
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(({src:?}, 0))\n"
        ));
        for d in dgrams {
            script.push_str(&format!("s.sendto({d}, ({A_IP:?}, {VXLAN_PORT}))\n"));
        }
        script.push_str("s.close()\n");
    }
    python(&lab, &b, &script);
    let total: u64 = cases.iter().map(|c| c.2.len() as u64).sum();
    wait_until(
        &format!("A's VTEP to receive the {total} crafted datagrams"),
        Duration::from_secs(10),
        || lab.vtep_drops(VXLAN_PORT).1 >= rx0 + total,
    );
    let (d1, rx1) = lab.vtep_drops(VXLAN_PORT);
    let mut figures = Vec::new();
    for (reason, _, dgrams) in &cases {
        let delta = d1.get(*reason).copied().unwrap_or(0) - d0.get(*reason).copied().unwrap_or(0);
        figures.push(format!("{reason} +{delta}"));
        assert_eq!(
            delta,
            dgrams.len() as u64,
            "{reason}: sent {}, counted {delta} (drops before {d0:?}, after {d1:?})\n{}",
            dgrams.len(),
            lab.diag()
        );
    }
    let other: Vec<&String> = d1
        .keys()
        .filter(|k| !cases.iter().any(|c| c.0 == k.as_str()))
        .collect();
    assert!(
        other.is_empty(),
        "unexpected drop reasons {other:?}: {d1:?}"
    );
    report(&format!(
        "crafted datagrams to A:4789: rx_datagrams +{}, {}",
        rx1 - rx0,
        figures.join(", ")
    ));

    // None reached the container, and the tunnel still works both ways.
    lab.ping(1, 2);
    lab.ping(2, 1);
    let seen = at_h1.stop(Duration::from_millis(200));
    assert!(
        seen.is_empty(),
        "dropped datagrams' inner frames reached h1:\n{}",
        seen.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// f. Bad requests change nothing
// ---------------------------------------------------------------------------------------

/// Bad tunnel, remote and static-entry requests: each refused with exit 1 and one
/// `vsctl: …` line on stderr, and `show --json`, `fdb-show --json` and the --db file
/// byte-identical afterwards; the daemon refuses the same through the raw protocol.
#[test]
fn bad_tunnel_requests_are_refused_and_change_nothing() {
    let mut lab = Lab::new("vxbad", 75);
    lab.add_host();
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1]);
    lab.vsctl_ok(&["add-br", "br1"]);
    lab.vsctl_ok(&["add-tunnel", "br0", "vx", "--vni", "42", "--remote", B_IP]);
    lab.vsctl_ok(&[
        "add-fdb",
        "br0",
        "02:00:00:75:00:01",
        "vx",
        "--remote",
        B_IP,
    ]);
    let snapshot = |lab: &Lab| {
        (
            lab.vsctl_ok(&["--json", "show"]),
            lab.vsctl_ok(&["--json", "fdb-show", "br0"]),
            fs::read(&lab.db).unwrap(),
        )
    };
    let before = snapshot(&lab);

    // (what, arguments, a word the error line must contain)
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "VNI 16777216",
            &[
                "add-tunnel",
                "br0",
                "t2",
                "--vni",
                "16777216",
                "--remote",
                B_IP,
            ],
            "16777216",
        ),
        (
            "multicast remote",
            &[
                "add-tunnel",
                "br0",
                "t2",
                "--vni",
                "43",
                "--remote",
                "239.1.1.1",
            ],
            "239.1.1.1",
        ),
        (
            "broadcast remote",
            &[
                "add-tunnel",
                "br0",
                "t2",
                "--vni",
                "43",
                "--remote",
                "255.255.255.255",
            ],
            "255.255.255.255",
        ),
        (
            "unspecified remote",
            &[
                "add-tunnel",
                "br0",
                "t2",
                "--vni",
                "43",
                "--remote",
                "0.0.0.0",
            ],
            "0.0.0.0",
        ),
        (
            "IPv6 remote",
            &[
                "add-tunnel",
                "br0",
                "t2",
                "--vni",
                "43",
                "--remote",
                "2001:db8::1",
            ],
            "2001:db8::1",
        ),
        (
            "--dstport 0",
            &[
                "add-tunnel",
                "br0",
                "t2",
                "--vni",
                "43",
                "--remote",
                B_IP,
                "--dstport",
                "0",
            ],
            "0",
        ),
        (
            "--vlan 4095",
            &[
                "add-tunnel",
                "br0",
                "t2",
                "--vni",
                "43",
                "--remote",
                B_IP,
                "--vlan",
                "4095",
            ],
            "4095",
        ),
        (
            "the same remote twice",
            &[
                "add-tunnel",
                "br0",
                "t2",
                "--vni",
                "43",
                "--remote",
                C_IP,
                "--remote",
                C_IP,
            ],
            C_IP,
        ),
        (
            "missing bridge",
            &["add-tunnel", "nobr", "t2", "--vni", "43", "--remote", B_IP],
            "nobr",
        ),
        (
            "duplicate VNI on the same dstport, same bridge",
            &["add-tunnel", "br0", "t2", "--vni", "42", "--remote", C_IP],
            "42",
        ),
        (
            "duplicate VNI on the same dstport, other bridge",
            &["add-tunnel", "br1", "t2", "--vni", "42", "--remote", C_IP],
            "42",
        ),
        (
            "tunnel name already an afpacket port",
            &["add-tunnel", "br0", "h1p", "--vni", "43", "--remote", B_IP],
            "h1p",
        ),
        (
            "tunnel name already a tunnel",
            &["add-tunnel", "br1", "vx", "--vni", "43", "--remote", B_IP],
            "vx",
        ),
        (
            "del-remote of a remote not configured",
            &["del-remote", "br0", "vx", C_IP],
            C_IP,
        ),
        (
            "add-remote already configured",
            &["add-remote", "br0", "vx", B_IP],
            B_IP,
        ),
        (
            "add-remote multicast",
            &["add-remote", "br0", "vx", "239.1.1.1"],
            "239.1.1.1",
        ),
        (
            "add-remote to a port that is not a tunnel",
            &["add-remote", "br0", "h1p", C_IP],
            "h1p",
        ),
        (
            "del-tunnel of an afpacket port",
            &["del-tunnel", "br0", "h1p"],
            "h1p",
        ),
        (
            "del-tunnel missing",
            &["del-tunnel", "br0", "nosuch"],
            "nosuch",
        ),
        (
            "add-fdb multicast MAC",
            &["add-fdb", "br0", "01:00:5e:00:00:01", "h1p"],
            "01:00:5e:00:00:01",
        ),
        (
            "add-fdb broadcast MAC",
            &["add-fdb", "br0", "ff:ff:ff:ff:ff:ff", "h1p"],
            "ff:ff:ff:ff:ff:ff",
        ),
        (
            "add-fdb port not on the bridge",
            &["add-fdb", "br0", "02:00:00:75:00:02", "nosuch"],
            "nosuch",
        ),
        (
            "add-fdb port of another bridge",
            &["add-fdb", "br1", "02:00:00:75:00:02", "h1p"],
            "h1p",
        ),
        (
            "add-fdb --remote not a remote of the tunnel",
            &[
                "add-fdb",
                "br0",
                "02:00:00:75:00:02",
                "vx",
                "--remote",
                C_IP,
            ],
            C_IP,
        ),
        (
            "add-fdb --vlan 4095",
            &[
                "add-fdb",
                "br0",
                "02:00:00:75:00:02",
                "h1p",
                "--vlan",
                "4095",
            ],
            "4095",
        ),
    ];
    for (what, args, word) in cases {
        let o = lab.vsctl(args);
        let line = assert_vsctl_error(&o);
        assert!(
            line.contains(word),
            "{what}: the error should name {word:?}: {line}"
        );
        let now = snapshot(&lab);
        assert!(
            now.0 == before.0,
            "{what} (`vsctl {}` -> {line}) changed show --json:\n{}\n---\n{}",
            args.join(" "),
            before.0,
            now.0
        );
        assert!(
            now.1 == before.1,
            "{what} (`vsctl {}` -> {line}) changed fdb-show --json",
            args.join(" ")
        );
        assert!(
            now.2 == before.2,
            "{what} (`vsctl {}` -> {line}) changed the config file",
            args.join(" ")
        );
    }

    // The daemon checks again: requests vsctl would never send.
    let raw: &[(&str, String)] = &[
        (
            "VNI 16777216",
            format!(
                r#"{{"op":"add-tunnel","bridge":"br0","name":"t2","vni":16777216,"remotes":["{B_IP}"]}}"#
            ),
        ),
        (
            "multicast remote",
            r#"{"op":"add-tunnel","bridge":"br0","name":"t2","vni":43,"remotes":["239.1.1.1"]}"#
                .to_string(),
        ),
        (
            "no remote",
            r#"{"op":"add-tunnel","bridge":"br0","name":"t2","vni":43,"remotes":[]}"#.to_string(),
        ),
        (
            "dstport 0",
            format!(
                r#"{{"op":"add-tunnel","bridge":"br0","name":"t2","vni":43,"remotes":["{B_IP}"],"dstport":0}}"#
            ),
        ),
        (
            "bad tunnel name",
            format!(
                r#"{{"op":"add-tunnel","bridge":"br0","name":"a/b","vni":43,"remotes":["{B_IP}"]}}"#
            ),
        ),
        (
            "add-remote multicast",
            r#"{"op":"add-remote","bridge":"br0","name":"vx","remote":"239.1.1.1"}"#.to_string(),
        ),
        (
            "add-fdb multicast MAC",
            r#"{"op":"add-fdb","bridge":"br0","mac":"01:00:5e:00:00:01","port":"h1p"}"#.to_string(),
        ),
        (
            "add-fdb --remote on an afpacket port",
            format!(
                r#"{{"op":"add-fdb","bridge":"br0","mac":"02:00:00:75:00:02","port":"h1p","remote":"{B_IP}"}}"#
            ),
        ),
    ];
    for (what, req) in raw {
        let _ = assert_refused(&lab.sock, what, format!("{req}\n").as_bytes());
        let now = snapshot(&lab);
        assert!(
            now == before,
            "raw request {what} ({req}) changed show, fdb-show or the config file"
        );
    }

    // Still serving; good changes still work.
    lab.vsctl_ok(&["add-tunnel", "br1", "t2", "--vni", "43", "--remote", C_IP]);
    lab.vsctl_ok(&["add-remote", "br0", "vx", C_IP]);
    assert!(
        fs::read(&lab.db).unwrap() != before.2,
        "good requests did not reach the config file"
    );
}

// ---------------------------------------------------------------------------------------
// g. --local, --dstport, --vlan; del-tunnel
// ---------------------------------------------------------------------------------------

/// A tunnel with every option: `--local A --dstport 8472 --vni 4242 --vlan 10`, to a
/// kernel vxlan peer configured the same way. show and stats report the options; the
/// VTEP socket is bound to A:8472; VLAN 10 (h1) crosses the tunnel, untagged inside,
/// VLAN 20 (h3) does not; after `del-tunnel` the socket is closed and traffic stops, and
/// the same tunnel can be added again.
#[test]
fn tunnel_options_local_dstport_vlan_and_del_tunnel() {
    const PORT: u16 = 8472;
    const VNI2: u32 = 4242;
    let mut lab = Lab::new("vxopt", 76);
    let a = lab.sw.clone();
    let b = lab.add_named_ns("hb");
    assert_eq!(lab.add_host(), 1); // A, VLAN 10
    assert_eq!(lab.add_host_on(&b), 2); // B (kernel)
    assert_eq!(lab.add_host(), 3); // A, VLAN 20
    overlay_mtu(&lab, 1, &a, INNER_MTU);
    overlay_mtu(&lab, 2, &b, INNER_MTU);
    overlay_mtu(&lab, 3, &a, INNER_MTU);
    underlay(&lab, &a, A_IP, &b, B_IP);
    kernel_vtep(&b, B_IP, A_IP, "h2p", VNI2, PORT);
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 3]);
    lab.vsctl_ok(&["add-vlan", "br0", "h1p", "10", "--access"]);
    lab.vsctl_ok(&["add-vlan", "br0", "h3p", "20", "--access"]);
    let vni = VNI2.to_string();
    let port = PORT.to_string();
    let add: Vec<&str> = vec![
        "add-tunnel",
        "br0",
        "vx",
        "--vni",
        &vni,
        "--remote",
        B_IP,
        "--local",
        A_IP,
        "--dstport",
        &port,
        "--vlan",
        "10",
    ];
    lab.vsctl_ok(&add);
    lab.wait_ports("br0", &["h1p", "h3p", "vx"], "up", Duration::from_secs(10));

    let t = lab.tunnel("br0", "vx");
    assert_eq!(
        (t.vni, t.local.as_deref(), t.dstport, t.vlan),
        (VNI2, Some(A_IP), PORT, Some(10)),
        "show --json tunnel: {t:#?}"
    );
    let text = lab.vsctl_ok(&["show"]);
    assert!(
        text.contains(&format!(
            "vxlan vni {VNI2} dstport {PORT} local {A_IP} vlan 10"
        )),
        "`vsctl show` lacks the tunnel's options:\n{text}"
    );
    let vteps = lab.vteps();
    assert!(
        vteps.len() == 1 && vteps[0].local == A_IP && vteps[0].dstport == PORT,
        "stats --json vteps: {vteps:#?}"
    );
    let listening = |lab: &Lab| {
        lab.exec_ok(&a, &["ss", "-Hnlu"])
            .contains(&format!("{A_IP}:{PORT} "))
    };
    assert!(
        listening(&lab),
        "no UDP socket bound to {A_IP}:{PORT} in A: {}",
        lab.exec_ok(&a, &["ss", "-Hnlu"])
    );

    // VLAN 10 crosses, VLAN 20 does not; what crosses is untagged inside.
    let (cap, pcap) = capture_vxlan(
        &lab,
        &b,
        "tcpdump-ul0-opt",
        &format!("udp and src host {A_IP}"),
    );
    lab.ping(1, 2);
    lab.ping(2, 1);
    full_size_ping(&lab, 1, &lab.ip(2), &nothing);
    no_reply(&lab, 3, &lab.ip(2), &nothing);
    no_reply(&lab, 2, &lab.ip(3), &nothing);
    let _ = cap.stop(Duration::from_millis(300));
    let mac3 = lab.host_mac(3);
    let frames = pcap_frames(&pcap);
    let pkts: Vec<VxPacket> = frames.iter().filter_map(|f| decode_vxlan(f)).collect();
    assert!(!pkts.is_empty(), "nothing from A captured on B's underlay");
    for p in &pkts {
        assert_eq!(
            (p.dport, p.flags(), p.vni()),
            (PORT, 0x08, VNI2),
            "datagram from A: {p:?}"
        );
        assert!(
            p.inner.get(12..14) != Some(&[0x81, 0x00][..]),
            "a tagged inner frame crossed a --vlan tunnel: {p:?}"
        );
        assert!(
            p.inner_src() != mac3,
            "a frame of h3 (VLAN 20) crossed the VLAN 10 tunnel: {p:?}"
        );
    }
    assert_eq!(
        frames.len(),
        pkts.len(),
        "UDP from A that is not VXLAN to {PORT} on the underlay"
    );

    // del-tunnel: the socket goes, traffic stops; the same tunnel comes back.
    lab.vsctl_ok(&["del-tunnel", "br0", "vx"]);
    let show = lab.show();
    assert!(
        show.iter().flat_map(|b| &b.ports).all(|p| p.name != "vx"),
        "vx still in show after del-tunnel: {show:#?}"
    );
    wait_until(
        &format!("the VTEP socket {A_IP}:{PORT} to close after del-tunnel"),
        Duration::from_secs(5),
        || !listening(&lab),
    );
    assert!(
        lab.vteps().is_empty(),
        "stats still lists a VTEP: {:#?}",
        lab.vteps()
    );
    no_reply(&lab, 1, &lab.ip(2), &nothing);
    lab.vsctl_ok(&add);
    lab.wait_ports("br0", &["vx"], "up", Duration::from_secs(10));
    flush_neigh(&lab, &[1, 2]);
    lab.ping(1, 2);
    lab.ping(2, 1);
}

// ---------------------------------------------------------------------------------------
// h. Two VNIs on one VTEP; a remote the kernel cannot reach
// ---------------------------------------------------------------------------------------

/// Hosts A and B (both vswitchd) each have two bridges, br0 carried by VNI 42 and br1 by
/// VNI 43, both on UDP 4789 (one VTEP socket per host), a container on each bridge, all
/// containers in one subnet: only the pairs on the same VNI reach each other. A's VNI 42
/// tunnel also lists, first, a remote with no route: sending to it fails, and the
/// replication to B behind it must not suffer (broadcasts and unicast still arrive).
#[test]
fn two_vnis_share_a_vtep_and_stay_isolated() {
    let mut lab = Lab::new("vxvni", 77);
    let a = lab.sw.clone();
    let b = lab.add_switch("hb");
    assert_eq!(lab.add_host(), 1); // A br0
    assert_eq!(lab.add_host_on(&b.ns), 2); // B br0
    assert_eq!(lab.add_host(), 3); // A br1
    assert_eq!(lab.add_host_on(&b.ns), 4); // B br1
    for (n, ns) in [(1u8, &a), (2, &b.ns), (3, &a), (4, &b.ns)] {
        overlay_mtu(&lab, n, ns, INNER_MTU);
    }
    underlay(&lab, &a, A_IP, &b.ns, B_IP);
    lab.start_daemon();
    let unroutable = "203.0.113.9";
    let setup = |v: &dyn Fn(&[&str]) -> String, p0: &str, p1: &str, r0: &[&str], r1: &str| {
        for (br, p) in [("br0", p0), ("br1", p1)] {
            v(&["add-br", br]);
            v(&["add-port", br, p]);
        }
        let mut args = vec!["add-tunnel", "br0", "vx42", "--vni", "42"];
        for r in r0 {
            args.extend_from_slice(&["--remote", r]);
        }
        v(&args);
        v(&["add-tunnel", "br1", "vx43", "--vni", "43", "--remote", r1]);
    };
    setup(
        &|x| lab.vsctl_ok(x),
        "h1p",
        "h3p",
        &[unroutable, B_IP],
        B_IP,
    );
    setup(&|x| b.vs_ok(x), "h2p", "h4p", &[A_IP], A_IP);
    lab.wait_ports("br0", &["h1p", "vx42"], "up", Duration::from_secs(10));
    lab.wait_ports("br1", &["h3p", "vx43"], "up", Duration::from_secs(10));
    let more = || b.diag();
    let vteps = lab.vteps();
    assert_eq!(
        vteps.iter().filter(|v| v.dstport == VXLAN_PORT).count(),
        1,
        "two tunnels on UDP 4789 should share one VTEP: {vteps:#?}"
    );

    lab.ping_pairs(&[(1, 2), (2, 1), (3, 4), (4, 3)], true);
    lab.ping_pairs(&Lab::cross_pairs(&[1], &[4]), false);
    lab.ping_pairs(&Lab::cross_pairs(&[3], &[2]), false);
    let r = lab.remote("br0", "vx42", B_IP);
    assert!(
        r.tx_packets > 0 && r.rx_packets > 0,
        "{r:#?}\n{}",
        diag(&lab, &more)
    );
    // Each VNI learned only its own far container.
    for (br, port, mine, other) in [("br0", "vx42", 2u8, 4u8), ("br1", "vx43", 4, 2)] {
        let m = lab.host_mac(mine);
        let o = lab.host_mac(other);
        let e = lab
            .fdb_entry(br, &m)
            .unwrap_or_else(|| panic!("{br}: h{mine}'s MAC not learned\n{}", diag(&lab, &more)));
        assert_eq!(
            (e.port.as_str(), e.remote.as_deref()),
            (port, Some(B_IP)),
            "{br}: {e:#?}"
        );
        assert!(
            lab.fdb_entry(br, &o).is_none(),
            "{br} learned h{other}'s MAC, which lives on the other VNI"
        );
    }
    let (drops, _) = lab.vtep_drops(VXLAN_PORT);
    assert!(
        drops.is_empty(),
        "A's VTEP drops: {drops:?}\n{}",
        diag(&lab, &more)
    );
    report(&format!(
        "two VNIs on one VTEP: same-VNI pairs ping, cross-VNI pairs do not; remote {unroutable} (no route) did not hold back {B_IP}: {r:?}"
    ));
}

// ---------------------------------------------------------------------------------------
// i. A tunnel whose VTEP cannot be bound at start
// ---------------------------------------------------------------------------------------

/// A tunnel bound to `--local A` is restored after `kill -9` while A's address is gone
/// (as after a reboot where vswitchd starts before the network): it shows `down` with
/// the reason, and once the address is back it comes up by itself — as afpacket ports
/// do when their interface appears — and carries traffic, without any vsctl command.
#[test]
fn a_tunnel_comes_up_when_its_local_address_appears() {
    let mut lab = Lab::new("vxlate", 78);
    let (a, b) = two_hosts(&mut lab, INNER_MTU);
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1]);
    lab.vsctl_ok(&[
        "add-tunnel",
        "br0",
        "vx",
        "--vni",
        "42",
        "--remote",
        B_IP,
        "--local",
        A_IP,
    ]);
    switch_with_tunnel(&b, "h2p", VNI, &[A_IP]);
    let more = || b.diag();
    lab.wait_ports("br0", &["vx"], "up", Duration::from_secs(10));
    lab.ping(1, 2);

    let st = lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    assert!(
        st.code().is_none(),
        "vswitchd was not killed by SIGKILL: {st}"
    );
    let cidr = format!("{A_IP}/24");
    ip(&a, &["addr", "del", &cidr, "dev", "ul0"]);
    lab.start_daemon();
    lab.wait_ports("br0", &["h1p"], "up", Duration::from_secs(10));
    lab.wait_ports("br0", &["vx"], "down", Duration::from_secs(10));
    ip(&a, &["addr", "add", &cidr, "dev", "ul0"]);
    let t0 = std::time::Instant::now();
    let deadline = t0 + Duration::from_secs(15);
    while lab.port_state("br0", "vx").as_deref() != Some("up") {
        assert!(
            std::time::Instant::now() < deadline,
            "tunnel vx (--local {A_IP}) still down 15 s after {A_IP} was configured again: {:#?}\n{}",
            lab.show(),
            diag(&lab, &more)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    report(&format!(
        "tunnel bound to {A_IP} came up {:.1} s after the address reappeared",
        t0.elapsed().as_secs_f64()
    ));
    flush_neigh(&lab, &[1, 2]);
    lab.ping(1, 2);
    lab.ping(2, 1);
}

/// A tunnel without `--vlan` carries the bridge's untagged traffic only, the last remote
/// cannot be removed, and the sockets a VTEP sends from keep nothing that arrives.
#[test]
fn an_untagged_tunnel_carries_no_vlan_and_its_send_sockets_queue_nothing() {
    let mut lab = Lab::new("vxutg", 79);
    let b = kernel_peer_lab(&mut lab);
    let a = lab.sw.clone();
    assert_eq!(lab.add_host(), 3);
    overlay_mtu(&lab, 3, &a, INNER_MTU);
    lab.vsctl_ok(&["add-port", "br0", "h3p"]);
    lab.vsctl_ok(&["add-vlan", "br0", "h3p", "10", "--access"]);
    lab.wait_ports("br0", &["h1p", "h3p", "vx"], "up", Duration::from_secs(10));

    let (cap, pcap) = capture_vxlan(
        &lab,
        &b,
        "tcpdump-ul0-utg",
        &format!("udp and src host {A_IP}"),
    );
    lab.ping(1, 2);
    lab.ping(2, 1);
    // h3 is in VLAN 10: nothing of it crosses an untagged tunnel, either way.
    no_reply(&lab, 3, &lab.ip(2), &nothing);
    no_reply(&lab, 2, &lab.ip(3), &nothing);
    let _ = cap.stop(Duration::from_millis(300));
    let pkts: Vec<VxPacket> = pcap_frames(&pcap)
        .iter()
        .filter_map(|f| decode_vxlan(f))
        .collect();
    assert!(!pkts.is_empty(), "nothing from A captured on B's underlay");
    let mac3 = lab.host_mac(3);
    for p in &pkts {
        assert!(
            p.inner.get(12..14) != Some(&[0x81, 0x00][..]) && p.inner_src() != mac3,
            "a VLAN 10 frame crossed the untagged tunnel: {p:?}"
        );
    }

    // The last remote stays; refusing it changes nothing.
    let before = lab.vsctl_ok(&["--json", "show"]);
    let o = lab.vsctl(&["del-remote", "br0", "vx", B_IP]);
    assert!(
        !o.success() && o.stderr.starts_with("vsctl: ") && o.stderr.contains("last remote"),
        "del-remote of the last remote: {o}"
    );
    assert_eq!(lab.vsctl_ok(&["--json", "show"]), before);

    // Datagrams sent to the outer source ports A sends from are not queued there.
    let sports: std::collections::BTreeSet<u16> = pkts.iter().map(|p| p.sport).collect();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor p in {ports:?}:\n    for _ in range(50):\n        s.sendto(b'x'*1000,('{A_IP}',p))\n",
        ports = sports.iter().collect::<Vec<_>>()
    );
    python(&lab, &b, &script);
    std::thread::sleep(Duration::from_millis(300));
    let ss = lab.exec_ok(&a, &["ss", "-Hnua"]);
    let mut seen = 0;
    for line in ss.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local_port = f
            .get(3)
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok());
        if local_port.is_some_and(|p| sports.contains(&p)) {
            seen += 1;
            assert_eq!(
                f.get(1),
                Some(&"0"),
                "a send socket queued what arrived: {line}"
            );
        }
    }
    assert_eq!(
        seen,
        sports.len(),
        "send sockets {sports:?} not all in ss:\n{ss}"
    );
    lab.ping(1, 2);
}

// ---------------------------------------------------------------------------------------
// i. TCP super-frames leave whole through a TAP whose filter hands them to the underlay
// ---------------------------------------------------------------------------------------

/// The TAP a daemon's first VTEP sends whole super-frames through.
const GSO_TAP: &str = "vswgso0";

/// Counter `stat` (rx_packets, rx_bytes, …) of `dev` in namespace `ns`.
fn link_stat(lab: &Lab, ns: &str, dev: &str, stat: &str) -> u64 {
    let path = format!("/sys/class/net/{dev}/statistics/{stat}");
    let v = lab.exec_ok(ns, &["cat", &path]);
    v.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path} in {ns}: {v:?}: {e}"))
}

/// Sets A's namespace up as a strict host would (a namespace of the test's): reverse
/// path filtering on for all devices and a FORWARD chain that drops, as Docker leaves
/// it. Neither may touch what leaves through the TAP, which the kernel does not route.
fn strict_host(lab: &Lab, ns: &str) {
    lab.exec_ok(ns, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
    lab.exec_ok(ns, &["iptables", "-P", "FORWARD", "DROP"]);
}

/// What tc says of the TAP's ingress qdisc and filters in `ns`.
fn tap_tc(lab: &Lab, ns: &str) -> String {
    let q = lab.exec(ns, &["tc", "qdisc", "show", "dev", GSO_TAP]);
    let f = lab.exec(
        ns,
        &["tc", "filter", "show", "dev", GSO_TAP, "parent", "ffff:"],
    );
    format!("{}{}", q.stdout, f.stdout)
}

/// The `gso_tap` object of the first VTEP in `vsctl --json stats`.
fn gso_tap_stats(lab: &Lab) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&lab.vsctl_ok(&["--json", "stats"])).unwrap();
    v["vteps"][0]["gso_tap"].clone()
}

/// Sends `mib` MiB of random bytes from host `from` to host `to` over one TCP connection
/// (socat, port `port`) and asserts they arrive byte for byte.
fn transfer_intact(lab: &Lab, from: u8, to: u8, mib: usize, port: u16, more: More) {
    let dir = lab.dir.clone();
    let sent = dir.join(format!("payload-{from}-{to}-{port}"));
    let got = dir.join(format!("received-{from}-{to}-{port}"));
    let mut data = vec![0u8; mib << 20];
    let mut urandom = fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut urandom, &mut data).unwrap();
    fs::write(&sent, &data).unwrap();
    let to_ns = lab.host(to).ns.clone();
    let from_ns = lab.host(from).ns.clone();
    let listen = format!("TCP-LISTEN:{port},reuseaddr");
    let create = format!("CREATE:{}", got.display());
    let mut rx = lab.spawn_bg(
        &to_ns,
        &format!("socat-rx-{port}"),
        &["socat", "-u", &listen, &create],
    );
    let target = format!("TCP:{}:{port},retry=100,interval=0.1", lab.ip(to));
    let file = format!("OPEN:{},rdonly", sent.display());
    let o = lab.exec_t(
        &from_ns,
        &["socat", "-u", &file, &target],
        Duration::from_secs(120),
    );
    assert!(
        o.success(),
        "socat h{from} -> h{to}: {o}\n{}",
        diag(lab, more)
    );
    let st = rx.wait_timeout(Duration::from_secs(30));
    assert!(
        st.is_some_and(|s| s.success()),
        "the receiving socat on h{to} did not finish ({st:?}): {}\n{}",
        rx.stderr(),
        diag(lab, more)
    );
    let arrived = fs::read(&got).unwrap();
    assert!(
        arrived == data,
        "h{from} -> h{to}: {} of {} bytes arrived, first difference at {:?}\n{}",
        arrived.len(),
        data.len(),
        arrived.iter().zip(&data).position(|(a, b)| a != b),
        diag(lab, more)
    );
    let _ = fs::remove_file(&sent);
    let _ = fs::remove_file(&got);
}

/// By default A's TCP super-frames reach a kernel vxlan peer whole, on a
/// host with reverse path filtering on and a FORWARD chain that drops: they leave
/// through A's TAP as one packet each, B's vxlan device receives them whole (its
/// average packet is a super-frame's, not a segment's), and 32 MiB arrive intact. The
/// TAP's ingress qdisc deleted under the daemon is put back within the 5 s of its
/// checks and the TAP used again; the TAP itself deleted takes nothing with it.
#[test]
fn super_frames_leave_whole_through_the_gso_tap_and_arrive_intact() {
    let mut lab = Lab::new("vxgso", 80);
    let a = lab.sw.clone();
    strict_host(&lab, &a);
    let b = kernel_peer_lab(&mut lab);
    assert!(
        lab.link_exists(&a, GSO_TAP),
        "no {GSO_TAP} in A's namespace\n{}",
        lab.log_text()
    );
    lab.ping(1, 2);
    lab.ping(2, 1);
    full_size_ping(&lab, 1, &lab.ip(2), &nothing);

    let tap_rx = |lab: &Lab| link_stat(lab, &a, GSO_TAP, "rx_packets");
    let (tap0, tap_bytes0) = (tap_rx(&lab), link_stat(&lab, &a, GSO_TAP, "rx_bytes"));
    let (vx0, vx_bytes0) = (
        link_stat(&lab, &b, "vx0", "rx_packets"),
        link_stat(&lab, &b, "vx0", "rx_bytes"),
    );
    let tx0 = lab.remote("br0", "vx", B_IP).tx_bytes;
    transfer_intact(&lab, 1, 2, 32, 5601, &nothing);
    let (taps, tap_bytes) = (
        tap_rx(&lab) - tap0,
        link_stat(&lab, &a, GSO_TAP, "rx_bytes") - tap_bytes0,
    );
    let (vxs, vx_bytes) = (
        link_stat(&lab, &b, "vx0", "rx_packets") - vx0,
        link_stat(&lab, &b, "vx0", "rx_bytes") - vx_bytes0,
    );
    assert!(
        taps > 0 && tap_bytes / taps > 8000,
        "32 MiB left A's TAP as {taps} packets of {tap_bytes} bytes: not whole super-frames\n{}",
        lab.log_text()
    );
    assert!(
        vxs > 0 && vx_bytes / vxs > 4000,
        "B's vxlan device received {vxs} packets of {vx_bytes} bytes: segmented on the way"
    );
    let tx = lab.remote("br0", "vx", B_IP).tx_bytes - tx0;
    assert!(
        tx >= 32 << 20,
        "remote {B_IP}'s tx counter grew by {tx} bytes for a 32 MiB transfer"
    );
    let st = gso_tap_stats(&lab);
    assert!(
        st["name"] == GSO_TAP
            && st["whole"] == true
            && st["packets"].as_u64().is_some_and(|n| n >= taps),
        "vsctl --json stats: gso_tap {st} (the TAP received {taps})"
    );
    let text = lab.vsctl_ok(&["stats"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("vtep ") && l.contains("; gso-tap vswgso0: ")),
        "vsctl stats does not show the TAP:\n{text}"
    );
    let (g, r) = tcp(&mut lab, 1, 2, 2, &nothing);
    report(&format!(
        "gso-tap, vswitchd -> kernel vxlan: 32 MiB intact in {taps} TAP packets \
         (avg {} B), {vxs} at B's vx0 (avg {} B); iperf3 TCP h1->h2 {g:.2} Gbit/s ({r} retransmits)",
        tap_bytes / taps,
        vx_bytes / vxs
    ));

    let out = lab.exec_ok(&a, &["iptables", "-S", "FORWARD"]);
    assert!(out.contains("-P FORWARD DROP"), "A's FORWARD policy: {out}");

    // A remote A has no route to: its super-frames would be segmented, and stats say
    // why; removed, it is forgotten.
    lab.vsctl_ok(&["add-remote", "br0", "vx", "203.0.113.9"]);
    wait_until(
        "stats to say why 203.0.113.9 is segmented",
        Duration::from_secs(10),
        || {
            lab.vsctl_ok(&["stats"])
                .contains("; to 203.0.113.9 segmented (no route")
        },
    );
    lab.vsctl_ok(&["del-remote", "br0", "vx", "203.0.113.9"]);
    wait_until(
        "stats to forget 203.0.113.9",
        Duration::from_secs(8),
        || gso_tap_stats(&lab).get("segmented").is_none(),
    );

    // The TAP's qdisc (and with it the filter) deleted, then the filter alone: each put
    // back, and super-frames reach B whole again.
    let restored = |what: &str, port: u16| {
        wait_until(
            &format!("the switch to put the TAP's filter back after {what}"),
            Duration::from_secs(12),
            || tap_tc(&lab, &a).contains("mirred (Egress Redirect to device"),
        );
        let before = tap_rx(&lab);
        let vx_before = link_stat(&lab, &b, "vx0", "rx_packets");
        let vx_bytes_before = link_stat(&lab, &b, "vx0", "rx_bytes");
        transfer_intact(&lab, 1, 2, 8, port, &nothing);
        let vxs = link_stat(&lab, &b, "vx0", "rx_packets") - vx_before;
        let vx_bytes = link_stat(&lab, &b, "vx0", "rx_bytes") - vx_bytes_before;
        assert!(
            tap_rx(&lab) > before && vxs > 0 && vx_bytes / vxs > 4000,
            "after {what}: TAP {} -> {}, B's vx0 {vxs} packets of {vx_bytes} bytes\n{}",
            before,
            tap_rx(&lab),
            tap_tc(&lab, &a)
        );
    };
    lab.exec_ok(&a, &["tc", "qdisc", "del", "dev", GSO_TAP, "ingress"]);
    restored("its qdisc was deleted", 5603);
    lab.exec_ok(
        &a,
        &["tc", "filter", "del", "dev", GSO_TAP, "parent", "ffff:"],
    );
    restored("its filter was deleted", 5605);

    // The TAP deleted under the daemon: its frames are segmented again at once (the
    // write fails), nothing is lost, and the daemon runs on.
    ip(&a, &["link", "del", GSO_TAP]);
    transfer_intact(&lab, 1, 2, 8, 5604, &nothing);
    assert!(lab.daemon_running(), "vswitchd died when its TAP went away");
    lab.ping(1, 2);
}

/// Two vswitchds, each sending whole super-frames through a TAP of its own, carry 32
/// MiB intact both ways. B's namespace already has an interface with the first TAP's
/// name, so B's TAP takes the next free one and is used all the same. Then B, restarted
/// with `--vxlan-gso-tap-name` naming an interface that exists, cannot make its TAP,
/// says so and segments while A sends whole: intact both ways again, B taking A's whole
/// super-packets apart and A merging B's segments. Last, `--no-vxlan-gso-tap`: no TAP.
#[test]
fn two_vswitchds_with_gso_taps_carry_transfers_intact_both_ways() {
    let mut lab = Lab::new("vxgs2", 81);
    let (a, mut b) = two_hosts(&mut lab, INNER_MTU);
    strict_host(&lab, &a);
    // Another interface (a veth: this kernel has no dummy devices) where B's first TAP
    // would go.
    b.stop();
    ip(
        &b.ns,
        &[
            "link", "add", GSO_TAP, "type", "veth", "peer", "name", "gsotaken",
        ],
    );
    b.start();
    lab.start_daemon();
    switch_with_tunnel(&lab, "h1p", VNI, &[B_IP]);
    switch_with_tunnel(&b, "h2p", VNI, &[A_IP]);
    let b_tap = "vswgso1";
    // B's first VTEP in `vsctl --json stats`.
    let vtep = |stats: String| -> serde_json::Value {
        let all: serde_json::Value = serde_json::from_str(&stats).unwrap();
        assert!(all["vteps"][0].is_object(), "B has no VTEP: {all}");
        all["vteps"][0].clone()
    };
    let more = || b.diag();
    let st = &vtep(b.vsctl_ok(&["--json", "stats"]))["gso_tap"];
    assert_eq!(st["name"], b_tap, "B's TAP: {st}\n{}", b.log_text());
    lab.ping(1, 2);
    lab.ping(2, 1);
    let a0 = link_stat(&lab, &a, GSO_TAP, "rx_packets");
    let b0 = link_stat(&lab, &b.ns, b_tap, "rx_packets");
    transfer_intact(&lab, 1, 2, 32, 5611, &more);
    transfer_intact(&lab, 2, 1, 32, 5612, &more);
    let a1 = link_stat(&lab, &a, GSO_TAP, "rx_packets");
    assert!(a1 > a0, "A's TAP carried nothing\n{}", lab.log_text());
    let b1 = link_stat(&lab, &b.ns, b_tap, "rx_packets");
    assert!(
        b1 > b0,
        "B's TAP ({b_tap}) carried nothing\n{}",
        b.log_text()
    );
    let shown = b.vsctl_ok(&["show"]);
    assert!(
        shown.contains("vxlan vni 42 dstport 4789, super-frames whole via vswgso1\n"),
        "B's show does not name its TAP:\n{shown}"
    );
    for v in [&lab as &dyn VsDyn, &b as &dyn VsDyn] {
        vtep_received_without_drops(v, &lab, &more);
    }

    // B told to name its TAP after an interface that exists cannot make it: it says so
    // and segments, while A sends whole.
    b.stop();
    b.daemon_args = vec!["--vxlan-gso-tap-name".into(), "gsotaken".into()];
    b.start();
    Vs::wait_ports_up(&b, "br0", &["h2p", "vx"]);
    let more = || b.diag();
    let st = &vtep(b.vsctl_ok(&["--json", "stats"]))["gso_tap"];
    assert!(
        st.is_null(),
        "B has a TAP named after an interface it does not own: {st}"
    );
    assert!(
        b.log_text()
            .contains("no TAP for whole super-frames: interface gsotaken already exists"),
        "B did not say why it segments:\n{}",
        b.log_text()
    );
    lab.ping(1, 2);
    lab.ping(2, 1);
    transfer_intact(&lab, 1, 2, 32, 5613, &more);
    transfer_intact(&lab, 2, 1, 32, 5614, &more);
    let a2 = link_stat(&lab, &a, GSO_TAP, "rx_packets");
    assert!(a2 > a1, "A's TAP carried nothing\n{}", lab.log_text());
    for v in [&lab as &dyn VsDyn, &b as &dyn VsDyn] {
        vtep_received_without_drops(v, &lab, &more);
    }

    // --no-vxlan-gso-tap: no TAP, and `show` says nothing of one.
    b.stop();
    b.daemon_args = vec!["--no-vxlan-gso-tap".into()];
    b.start();
    Vs::wait_ports_up(&b, "br0", &["h2p", "vx"]);
    let st = &vtep(b.vsctl_ok(&["--json", "stats"]))["gso_tap"];
    assert!(st.is_null(), "B has a TAP with --no-vxlan-gso-tap: {st}");
    let shown = b.vsctl_ok(&["show"]);
    assert!(!shown.contains("super-frames"), "B's show: {shown}");
    lab.ping(1, 2);
    lab.ping(2, 1);
}
