//! Encrypted tunnels (VXLAN inside WireGuard) through real `vswitchd` daemons, each in a
//! "host" namespace whose underlay is a veth: interop with `wireguard-go` (configured by
//! `wg`) carrying a kernel vxlan device on its TUN interface, two daemons encrypting to
//! each other, a capture of the underlay that shows WireGuard messages only, and
//! cleartext, garbage, truncated, replayed and forged messages dropped by reason.
//!
//! Addresses: the overlay is the lab's 10.X.Y.0/24 (containers `hN`, MTU 1370: what a
//! kernel vxlan device leaves on a 1420-byte WireGuard interface); the underlay is
//! 198.51.100.0/24 (TEST-NET-2), the inner VTEP addresses 192.0.2.0/24 (TEST-NET-1),
//! inside the test's namespaces only.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::overlay::{ip, overlay_mtu, two_hosts, underlay, Vs, VsDyn, A_IP, B_IP};
use common::{report, sh, wait_until, Capture, Lab};

const A_INNER: &str = "192.0.2.1";
const B_INNER: &str = "192.0.2.2";
const VNI: &str = "42";
const WG_PORT: u16 = 51820;
/// Container MTU: a WireGuard interface's 1420 less the kernel vxlan device's 50.
const INNER_MTU: &str = "1370";

/// `add-br br0`, `add-port br0 PORT`, and an encrypted tunnel to `remote` whose key is
/// `key`; waits until both ports are up.
fn encrypted_switch(v: &impl Vs, port: &str, remote: &str, key: &str, inner: (&str, &str)) {
    v.vs_ok(&["add-br", "br0"]);
    v.vs_ok(&["add-port", "br0", port]);
    v.vs_ok(&[
        "add-tunnel",
        "br0",
        "vx",
        "--vni",
        VNI,
        "--remote",
        remote,
        "--encrypt",
        "--public-key",
        key,
        "--inner-local",
        inner.0,
        "--inner-remote",
        inner.1,
    ]);
    v.wait_ports_up("br0", &[port, "vx"]);
}

/// `wg genkey` output and its public key, in a file of the lab's directory.
fn wg_keypair(lab: &Lab, name: &str) -> (std::path::PathBuf, String) {
    let private = sh(&["wg", "genkey"]).trim().to_string();
    let path = lab.dir.join(format!("{name}.key"));
    std::fs::write(&path, format!("{private}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = testlab::run(
        &["sh", "-c", &format!("wg pubkey < {}", path.display())],
        Duration::from_secs(5),
    );
    (path, o.stdout.trim().to_string())
}

/// Pings `ip` from host `from` `count` times; asserts every reply came.
fn ping_all(lab: &Lab, from: u8, to_ip: &str, count: u32, more: &dyn Fn() -> String) {
    let o = lab.ping_out(from, to_ip, count, "0.05", 20);
    assert!(
        o.success() && o.stdout.contains(&format!(" {count} received")),
        "h{from} -> {to_ip}: not every ping answered: {o}\n{}\n{}",
        lab.diag(),
        more()
    );
}

/// A full-size ping (1342 bytes of payload fill the container MTU of 1370) with DF set.
fn full_size_ping(lab: &Lab, from: u8, to_ip: &str, more: &dyn Fn() -> String) {
    let o = lab.exec(
        &lab.host(from).ns,
        &[
            "ping", "-c", "3", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1342", to_ip,
        ],
    );
    assert!(
        o.success(),
        "full-size ping h{from} -> {to_ip}: {o}\n{}\n{}",
        lab.diag(),
        more()
    );
}

/// Every frame of an underlay capture: only WireGuard on port 51820 (ARP aside), no
/// VXLAN port and nothing of the inner traffic in the clear.
fn assert_only_wireguard(frames: &[String]) {
    assert!(!frames.is_empty(), "the underlay capture saw nothing");
    let mut wg = 0;
    for f in frames {
        if f.contains("ARP") {
            continue;
        }
        // After the timestamp: "MAC > MAC, ethertype IPv4 (0x0800), length N: SRC.PORT > DST.PORT: …".
        let rest = f.split_once(' ').map_or(f.as_str(), |(_, r)| r);
        assert!(
            rest.contains(".51820 > ")
                && rest.contains(".51820: ")
                && !rest.contains(".4789 ")
                && !rest.contains(".4789:"),
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

/// Host A: the lab's vswitchd with container h1. Host B: plain Linux (namespace `hb`)
/// with `wireguard-go` (TUN `wgX`, configured by `wg`), a kernel vxlan device over it
/// and a kernel bridge with container h2. Both ways: ping, full-size ping, TCP; the
/// underlay carries WireGuard messages only.
#[test]
fn interop_with_wireguard_go_and_a_kernel_vxlan_device() {
    common::require_tools(&["wireguard-go", "wg"]);
    let mut lab = Lab::new("wgi", 130);
    let a = lab.sw.clone();
    let b = lab.add_named_ns("hb");
    assert_eq!(lab.add_host(), 1);
    assert_eq!(lab.add_host_on(&b), 2);
    overlay_mtu(&lab, 1, &a, INNER_MTU);
    overlay_mtu(&lab, 2, &b, INNER_MTU);
    underlay(&lab, &a, A_IP, &b, B_IP);
    lab.start_daemon();

    // The daemon's key: made at first start, 0600, the public half in show.
    let a_pub = lab.public_key();
    let keyfile = lab.db.with_extension("wg.key");
    let mode = std::fs::metadata(&keyfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", keyfile.display());
    let derived = testlab::run(
        &["sh", "-c", &format!("wg pubkey < {}", keyfile.display())],
        Duration::from_secs(5),
    );
    assert_eq!(
        derived.stdout.trim(),
        a_pub,
        "show's key is not the key file's"
    );
    assert!(lab
        .vs_ok(&["show"])
        .contains(&format!("public-key {a_pub}")));

    // Host B: wireguard-go on a TUN device, then wg, then the kernel vxlan device on it.
    let wgdev = format!("wgv130-{}", std::process::id() % 100_000);
    let (b_key, b_pub) = wg_keypair(&lab, "b");
    let wgo = lab.spawn_in(&b, "wireguard-go", &["wireguard-go", "-f", &wgdev]);
    let _ = wgo;
    wait_until("wireguard-go's TUN device", Duration::from_secs(10), || {
        lab.link_exists(&b, &wgdev)
    });
    sh(&[
        "ip",
        "netns",
        "exec",
        &b,
        "wg",
        "set",
        &wgdev,
        "private-key",
        &b_key.display().to_string(),
        "listen-port",
        &WG_PORT.to_string(),
        "peer",
        &a_pub,
        "endpoint",
        &format!("{A_IP}:{WG_PORT}"),
        "allowed-ips",
        &format!("{A_INNER}/32"),
    ]);
    ip(
        &b,
        &["addr", "add", &format!("{B_INNER}/24"), "dev", &wgdev],
    );
    ip(&b, &["link", "set", "dev", &wgdev, "up"]);
    ip(
        &b,
        &[
            "link", "add", "vx0", "type", "vxlan", "id", VNI, "local", B_INNER, "remote", A_INNER,
            "dstport", "4789", "dev", &wgdev,
        ],
    );
    ip(&b, &["link", "add", "kbr0", "type", "bridge"]);
    for dev in ["vx0", "h2p"] {
        ip(&b, &["link", "set", "dev", dev, "master", "kbr0"]);
        ip(&b, &["link", "set", "dev", dev, "up"]);
    }
    ip(&b, &["link", "set", "dev", "kbr0", "up"]);

    encrypted_switch(&lab, "h1p", B_IP, &b_pub, (A_INNER, B_INNER));
    let t = lab.only_tunnel();
    let e = t.encrypt.clone().expect("the tunnel shows its encryption");
    assert_eq!(
        (e.listen_port, e.inner_local.as_deref()),
        (WG_PORT, Some(A_INNER))
    );

    let cap = Capture::start(&lab, &a, "ul0", "underlay", &["udp or icmp or arp"]);
    let wg_show = || {
        testlab::try_run(
            &["ip", "netns", "exec", &b, "wg", "show"],
            Duration::from_secs(5),
        )
        .map(|o| o.to_string())
        .unwrap_or_default()
    };
    ping_all(&lab, 1, &lab.ip(2), 5, &wg_show);
    ping_all(&lab, 2, &lab.ip(1), 5, &wg_show);
    full_size_ping(&lab, 1, &lab.ip(2), &wg_show);
    full_size_ping(&lab, 2, &lab.ip(1), &wg_show);
    let ab = lab.iperf3(1, 2, 2, &[]);
    let ba = lab.iperf3(2, 1, 2, &[]);
    let gb = rx_gbps;
    assert!(
        gb(&ab) > 0.05 && gb(&ba) > 0.05,
        "TCP too slow: {} {}",
        gb(&ab),
        gb(&ba)
    );
    report(&format!(
        "vswitchd <-> wireguard-go + kernel vxlan: TCP h1->h2 {:.2} Gbit/s, h2->h1 {:.2} Gbit/s",
        gb(&ab),
        gb(&ba)
    ));
    let frames = cap.stop(Duration::from_millis(300));
    assert_only_wireguard(&frames);

    let r = lab.only_remote();
    let p = r.peer.clone().expect("the remote shows its peer");
    assert_eq!(p.public_key, b_pub);
    assert!(p.handshake_secs_ago.is_some(), "no handshake: {r:#?}");
    assert!(r.tx_packets > 0 && r.rx_packets > 0, "{r:#?}");
    let drops = lab.drops(WG_PORT);
    assert!(drops.is_empty(), "drops: {drops:?}\n{}", wg_show());
    assert!(wg_show().contains("latest handshake"), "{}", wg_show());
}

/// Two vswitchds encrypt to each other; then, at A's listen port: a cleartext VXLAN
/// datagram (cleartext_refused), garbage (wg_bad_type), a short transport message
/// (wg_truncated), a captured transport message sent again (wg_replayed), with a new
/// counter and one byte changed (wg_forged), and one for a receiver index no peer has
/// (wg_unknown_peer): all counted, none delivered, and traffic goes on. The
/// tunnel, its keys and the daemon's key survive kill -9.
#[test]
fn two_vswitchds_encrypt_and_drop_what_is_not_wireguard_by_reason() {
    let mut lab = Lab::new("wgd", 131);
    let (a, b) = two_hosts(&mut lab, INNER_MTU);
    lab.start_daemon();
    let (a_pub, b_pub) = (lab.public_key(), b.public_key());
    assert_ne!(a_pub, b_pub);
    encrypted_switch(&lab, "h1p", B_IP, &b_pub, (A_INNER, B_INNER));
    encrypted_switch(&b, "h2p", A_IP, &a_pub, (B_INNER, A_INNER));
    let more = || b.diag();

    let pcap = lab.dir.join("ul.pcap");
    let cap = Capture::start(
        &lab,
        &a,
        "ul0",
        "underlay",
        &["-w", &pcap.display().to_string(), "-U", "udp"],
    );
    let text = Capture::start(&lab, &a, "ul0", "underlay-text", &["udp or icmp"]);
    ping_all(&lab, 1, &lab.ip(2), 5, &more);
    ping_all(&lab, 2, &lab.ip(1), 5, &more);
    full_size_ping(&lab, 1, &lab.ip(2), &more);
    let ab = lab.iperf3(1, 2, 2, &[]);
    let ba = lab.iperf3(2, 1, 2, &[]);
    report(&format!(
        "vswitchd <-> vswitchd encrypted: TCP h1->h2 {:.2} Gbit/s, h2->h1 {:.2} Gbit/s",
        rx_gbps(&ab),
        rx_gbps(&ba)
    ));
    drop(cap.stop(Duration::from_millis(300)));
    assert_only_wireguard(&text.stop(Duration::from_millis(300)));
    for v in [&lab as &dyn VsDyn, &b as &dyn VsDyn] {
        let (d, _) = v.drops_on(WG_PORT);
        assert!(d.is_empty(), "{}: drops {d:?}", v.name());
    }

    // What B sent A, from the capture: a transport message, to replay and to forge.
    let script = format!(
        r#"
import socket, struct
def udp_payloads(path):
    # pcap (tcpdump -w): 24-byte file header, then 16-byte record headers; Ethernet frames.
    data = open(path, "rb").read()
    at = 24
    while at + 16 <= len(data):
        incl = struct.unpack("<I", data[at + 8:at + 12])[0]
        f = data[at + 16:at + 16 + incl]
        at += 16 + incl
        if len(f) < 42 or f[12:14] != b"\x08\x00" or f[23] != 17:
            continue
        ihl = (f[14] & 15) * 4
        yield socket.inet_ntoa(f[26:30]), f[14 + ihl + 8:]
msgs = [m for src, m in udp_payloads("{pcap}")
        if src == "{B_IP}" and m[:1] == b"\x04" and len(m) > 100]
assert msgs, "no transport message from B captured"
m = msgs[-1]
# A counter never used (so the replay window lets it through to the AEAD check), a tag that fails it.
forged = bytearray(m)
forged[8:16] = struct.pack("<Q", struct.unpack("<Q", m[8:16])[0] + 100000)
forged[-1] ^= 1
vxlan = b"\x08\x00\x00\x00\x00\x00\x2a\x00" + b"\xff" * 6 + b"\x02" + b"\x00" * 5 + b"\x08\x06" + b"\x00" * 28
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{B_IP}", 0))
# A transport message for a receiver index no peer has (peer number 0xffff).
stranger = b"\x04\x00\x00\x00" + struct.pack("<I", 0xffff << 8) + b"\x00" * 8 + b"\x00" * 48
for payload in [vxlan, b"garbage that is no wireguard message", b"\x04\x00\x00\x00" + b"\x00" * 16, m, bytes(forged), stranger]:
    s.sendto(payload, ("{A_IP}", {WG_PORT}))
print("sent")
"#,
        pcap = pcap.display()
    );
    let o = lab.exec_t(&b.ns, &["python3", "-c", &script], Duration::from_secs(60));
    assert!(o.success() && o.stdout.contains("sent"), "injector: {o}");
    for reason in [
        "cleartext_refused",
        "wg_bad_type",
        "wg_truncated",
        "wg_replayed",
        "wg_forged",
        "wg_unknown_peer",
    ] {
        lab.wait_drops(WG_PORT, reason, 1);
    }
    let d = lab.drops(WG_PORT);
    assert_eq!(
        d.values().sum::<u64>(),
        6,
        "one drop per message sent: {d:?}"
    );
    ping_all(&lab, 1, &lab.ip(2), 3, &more);

    // A cleartext tunnel's datagram at the VXLAN port reaches no encrypted tunnel: no
    // socket listens there.
    let rx_before = lab.only_remote().rx_packets;

    // kill -9 and restart: the tunnel comes back encrypted, with the same keys.
    lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    lab.start_daemon();
    assert_eq!(
        lab.public_key(),
        a_pub,
        "the daemon's key changed over a restart"
    );
    let t = lab.only_tunnel();
    assert_eq!(
        t.remotes[0].peer.as_ref().map(|p| p.public_key.clone()),
        Some(b_pub.clone())
    );
    assert!(lab
        .vs_ok(&["show"])
        .contains("encrypted listen-port 51820 inner-local 192.0.2.1"));
    ping_all(&lab, 1, &lab.ip(2), 3, &more);
    assert!(lab.only_remote().rx_packets > 0 && rx_before > 0);
}

/// Bad requests change nothing; a key file others may read stops the daemon.
#[test]
fn bad_encrypted_tunnel_requests_and_a_readable_key_file_are_refused() {
    let mut lab = Lab::new("wgb", 132);
    lab.start_daemon();
    lab.vs_ok(&["add-br", "br0"]);
    let key = lab.public_key();
    let before = lab.vs_ok(&["show"]);
    let refused = |args: &[&str], want: &str| {
        let o = lab.vs(args);
        assert!(!o.success(), "{args:?} was accepted: {o}");
        assert!(o.stderr.contains(want), "{args:?}: wanted {want:?} in: {o}");
        assert_eq!(o.stderr.trim().lines().count(), 1, "{o}");
    };
    let base = [
        "add-tunnel",
        "br0",
        "vx",
        "--vni",
        "7",
        "--remote",
        B_IP,
        "--encrypt",
    ];
    refused(&base, "one --public-key per --remote");
    let mut bad = base.to_vec();
    bad.extend(["--public-key", "not-a-key"]);
    refused(&bad, "is not a WireGuard public key");
    let mut zero = base.to_vec();
    zero.extend([
        "--public-key",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ]);
    refused(&zero, "all-zero");
    refused(
        &[
            "add-tunnel",
            "br0",
            "vx",
            "--vni",
            "7",
            "--remote",
            B_IP,
            "--public-key",
            &key,
        ],
        "need --encrypt",
    );
    assert_eq!(
        lab.vs_ok(&["show"]),
        before,
        "a refused request changed show"
    );

    let mut ok = base.to_vec();
    ok.extend(["--public-key", &key, "--listen-port", "51999"]);
    lab.vs_ok(&ok);
    refused(
        &["add-remote", "br0", "vx", "198.51.100.3"],
        "needs --public-key",
    );
    refused(
        &[
            "add-remote",
            "br0",
            "vx",
            "198.51.100.3",
            "--public-key",
            &key,
        ],
        "another remote's too",
    );
    let other = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
    lab.vs_ok(&[
        "add-remote",
        "br0",
        "vx",
        "198.51.100.3",
        "--public-key",
        other,
    ]);
    let t = lab.only_tunnel();
    assert_eq!(t.encrypt.as_ref().map(|e| e.listen_port), Some(51999));
    assert_eq!(t.remotes.len(), 2);
    assert_eq!(t.remotes[1].peer.as_ref().unwrap().public_key, other);
    lab.vs_ok(&["del-remote", "br0", "vx", "198.51.100.3"]);
    assert_eq!(lab.only_tunnel().remotes.len(), 1);

    // A key file group or others may read: the daemon refuses to start.
    lab.signal_daemon(libc::SIGTERM, Duration::from_secs(5));
    let keyfile = lab.db.with_extension("wg.key");
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = testlab::run(
        &[
            "ip",
            "netns",
            "exec",
            &lab.sw,
            &common::vswitchd_bin().display().to_string(),
            "--sock",
            &lab.dir.join("other.sock").display().to_string(),
            "--db",
            &lab.db.display().to_string(),
        ],
        Duration::from_secs(10),
    );
    assert!(
        !o.success(),
        "vswitchd started with a readable key file: {o}"
    );
    assert!(o.stderr.contains("chmod 600"), "{o}");
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    lab.start_daemon();
    assert_eq!(lab.public_key(), key);
}

/// Received Gbit/s of an iperf3 report.
fn rx_gbps(v: &serde_json::Value) -> f64 {
    common::gbps(
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0),
    )
}
