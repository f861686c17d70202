//! WireGuard's cookie reply under load, through real `vswitchd` daemons: host A's
//! encrypted tunnel is flooded with a real handshake initiation (captured with tcpdump
//! from W, a plain host with `wireguard-go` and a kernel vxlan device, so its mac1 is
//! valid for A's key) replayed three thousand times a second from another address.
//! A's listener is then "under load": every handshake without a valid mac2 gets a
//! cookie reply, sent to where it came from (the flooder counts them) and counted as
//! `wg_under_load`, before any Diffie-Hellman is spent on it. B, a legitimate vswitchd
//! peer, gets a cookie reply for its initiation, retries with the mac2 it allows,
//! completes the handshake and pings during the flood; W, the tunnel's second remote,
//! gets in and pings too.
//!
//! Addresses: the overlay is the lab's 10.X.Y.0/24 (containers `hN`, MTU 1390; W's
//! vxlan device .9); the underlay 198.51.100.0/24 between A and B (the flooder is
//! 198.51.100.3, a second address of B's) and 198.51.101.0/24 between A and W; inner
//! VTEP addresses 192.0.2.0/24; inside the test's namespaces only. The flood is bounded
//! (rate and duration).

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::overlay::{ip, two_hosts, Vs, A_IP, B_IP};
use common::{report, sh, wait_until, Lab};

const WG_PORT: u16 = 51820;
const A_INNER: &str = "192.0.2.1";
const B_INNER: &str = "192.0.2.2";
const W_INNER: &str = "192.0.2.3";
/// A's address towards W, and W's.
const A_IP2: &str = "198.51.101.1";
const W_IP: &str = "198.51.101.2";
/// The flooder's address: on B's underlay interface, not B's own.
const FLOODER: &str = "198.51.100.3";
/// Initiations a second the flood aims at: thirty times the listener's allowance of
/// 100, so a second is "under load" after its first 33 ms.
const FLOOD_RATE: u32 = 3000;
/// The flood stops by itself after this long (the test stops it sooner).
const FLOOD_MAX_SECS: u32 = 90;
/// Handshakes B makes (a fresh peer state each) until one of them met a cookie reply.
const ATTEMPTS: u32 = 5;

/// Replays the first initiation in the pcap `argv[1]`, `argv[2]` times a second, from address
/// `argv[5]` to `argv[6]`, port `argv[7]`, until file `argv[3]` exists or `argv[4]`
/// seconds pass; counts the cookie replies that come back to it. Prints "sent N
/// cookies M".
const FLOODER_PY: &str = r#"
import os, socket, struct, sys, time
pcap, rate, stop, secs, src, dst, port = sys.argv[1:8]
rate, secs, port = int(rate), float(secs), int(port)
data = open(pcap, "rb").read()
incl = struct.unpack("<I", data[24 + 8:24 + 12])[0]
f = data[24 + 16:24 + 16 + incl]
ihl = (f[14] & 15) * 4
init = f[14 + ihl + 8:]
assert len(init) == 148 and init[0] == 1, (len(init), init[:4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
s.setblocking(False)
sent = cookies = 0
start = time.monotonic()
print("flooding", flush=True)
while time.monotonic() - start < secs and not os.path.exists(stop):
    for _ in range(20):
        s.sendto(init, (dst, port))
        sent += 1
    while True:
        try:
            m = s.recv(2048)
        except BlockingIOError:
            break
        if len(m) == 64 and m[0] == 3:
            cookies += 1
    ahead = start + sent / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
print("sent", sent, "cookies", cookies, flush=True)
"#;

/// An encrypted tunnel `vx` on `br0` from inner address `inner`, to each of `remotes`
/// (underlay address, key, inner address); waits until it and `port` are up.
fn encrypted(v: &impl Vs, port: &str, inner: &str, remotes: &[(&str, &str, &str)]) {
    let mut args = vec!["add-tunnel", "br0", "vx", "--vni", "42"];
    for r in remotes {
        args.extend(["--remote", r.0]);
    }
    args.extend(["--encrypt", "--inner-local", inner]);
    for r in remotes {
        args.extend(["--public-key", r.1, "--inner-remote", r.2]);
    }
    v.vs_ok(&args);
    v.wait_ports_up("br0", &[port, "vx"]);
}

/// The only remote's (cookie replies received, handshakes) on `v`.
fn peer_state(v: &impl Vs) -> (u64, u64) {
    let p = v.tunnel("br0", "vx").remotes[0].peer.clone().unwrap();
    (p.cookies_received, p.handshakes)
}

/// How long a peer may take to get in under load: a cookie reply, then the retry
/// timer's 5 s (a few times over, on a loaded machine).
const PING_FOR: Duration = Duration::from_secs(45);

/// Pings `ip` from namespace `ns`, one echo at a time (a failed neighbour entry makes
/// ping give up at once), until one is answered or [`PING_FOR`] passes.
fn pings_until_answered(lab: &Lab, ns: &str, ip: &str) -> bool {
    let deadline = Instant::now() + PING_FOR;
    while Instant::now() < deadline {
        let o = lab.exec_t(
            ns,
            &["ping", "-n", "-c", "1", "-W", "1", ip],
            Duration::from_secs(10),
        );
        if o.success() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn under_load(v: &impl Vs) -> u64 {
    v.drops(WG_PORT).get("wg_under_load").copied().unwrap_or(0)
}

#[test]
fn under_a_flood_of_initiations_the_listener_sends_cookies_and_real_peers_still_get_in() {
    common::require_tools(&["wireguard-go", "wg"]);
    let mut lab = Lab::new("wgk", 210);
    let (a, b) = two_hosts(&mut lab, "1390");
    lab.start_daemon();
    let (a_pub, b_pub) = (lab.public_key(), b.public_key());
    let b_side = [(A_IP, a_pub.as_str(), A_INNER)];
    lab.vs_ok(&["add-br", "br0"]);
    lab.vs_ok(&["add-port", "br0", "h1p"]);
    b.vs_ok(&["add-br", "br0"]);
    b.vs_ok(&["add-port", "br0", "h2p"]);

    // W: wireguard-go (its TUN wgdev) and a kernel vxlan device on it, no container.
    let w = lab.add_named_ns("hw");
    lab.veth_between(&a, "ul1", &w, "ul1");
    ip(&a, &["addr", "add", &format!("{A_IP2}/24"), "dev", "ul1"]);
    ip(&w, &["addr", "add", &format!("{W_IP}/24"), "dev", "ul1"]);
    let w_key = lab.dir.join("w.key");
    std::fs::write(&w_key, sh(&["wg", "genkey"])).unwrap();
    std::fs::set_permissions(&w_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let w_pub = testlab::run(
        &["sh", "-c", &format!("wg pubkey < {}", w_key.display())],
        Duration::from_secs(5),
    )
    .stdout
    .trim()
    .to_string();
    let wgdev = format!("wgk210-{}", std::process::id() % 100_000);
    let _ = lab.spawn_in(&w, "wireguard-go", &["wireguard-go", "-f", &wgdev]);
    wait_until("wireguard-go's TUN device", Duration::from_secs(10), || {
        lab.link_exists(&w, &wgdev)
    });
    sh(&[
        "ip",
        "netns",
        "exec",
        &w,
        "wg",
        "set",
        &wgdev,
        "private-key",
        &w_key.display().to_string(),
        "listen-port",
        &WG_PORT.to_string(),
        "peer",
        &a_pub,
        "endpoint",
        &format!("{A_IP2}:{WG_PORT}"),
        "allowed-ips",
        &format!("{A_INNER}/32"),
    ]);
    ip(
        &w,
        &["addr", "add", &format!("{W_INNER}/24"), "dev", &wgdev],
    );
    ip(&w, &["link", "set", "dev", &wgdev, "up"]);
    ip(
        &w,
        &[
            "link", "add", "vx0", "mtu", "1370", "type", "vxlan", "id", "42", "local", W_INNER,
            "remote", A_INNER, "dstport", "4789", "dev", &wgdev,
        ],
    );
    ip(
        &w,
        &["addr", "add", &format!("{}/24", lab.ip(9)), "dev", "vx0"],
    );
    ip(&w, &["link", "set", "dev", "vx0", "up"]);

    // W's real initiation, captured at A before A listens (so A never answers it). The
    // flood replays it; the first replay A takes in is answered (to W), as WireGuard
    // does for an initiation it has not seen, and W may well finish its handshake with
    // that answer. B's handshake is not replayed: B initiates only once A is loaded.
    encrypted(&b, "h2p", B_INNER, &b_side);
    let pcap = lab.dir.join("init.pcap");
    let mut cap = lab.spawn_bg(
        &a,
        "capture-init",
        &[
            "tcpdump",
            "-i",
            "ul1",
            "-nn",
            "-U",
            "-c",
            "1",
            "-w",
            &pcap.display().to_string(),
            &format!("src host {W_IP} and udp dst port {WG_PORT} and udp[8:4] = 0x01000000"),
        ],
    );
    wait_until("tcpdump listens", Duration::from_secs(10), || {
        cap.stderr().contains("listening on")
    });
    // Traffic from W makes it initiate; nothing answers yet.
    let _ = lab.exec(&w, &["ping", "-n", "-c", "1", "-W", "1", &lab.ip(1)]);
    assert!(
        cap.wait_timeout(Duration::from_secs(20)).is_some(),
        "no initiation from W captured: {}",
        cap.stderr()
    );

    // The flood, from a second address of B's namespace.
    ip(
        &b.ns,
        &["addr", "add", &format!("{FLOODER}/24"), "dev", "ul0"],
    );
    let stop = lab.dir.join("stop-flood");
    let mut flood = lab.spawn_bg(
        &b.ns,
        "flooder",
        &[
            "python3",
            "-c",
            FLOODER_PY,
            &pcap.display().to_string(),
            &FLOOD_RATE.to_string(),
            &stop.display().to_string(),
            &FLOOD_MAX_SECS.to_string(),
            FLOODER,
            A_IP,
            &WG_PORT.to_string(),
        ],
    );
    flood.wait_output("flooding", Duration::from_secs(10));
    let t0 = Instant::now();

    // Now A listens: it is under load at once. Then h2 pings h1: B's initiation gets a
    // cookie reply, and B's retry (5 s later) with the mac2 it allows gets in.
    encrypted(
        &lab,
        "h1p",
        A_INNER,
        &[(B_IP, &b_pub, B_INNER), (W_IP, &w_pub, W_INNER)],
    );
    lab.wait_drops(WG_PORT, "wg_under_load", 1);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let answered = pings_until_answered(&lab, &lab.host(2).ns, &lab.ip(1));
        assert!(
            answered,
            "h2 -> h1 during the flood: no answer in {PING_FOR:?}\nA:\n{}\nB:\n{}\nflooder: {}",
            lab.vs_diag(),
            b.vs_diag(),
            flood.stdout()
        );
        assert!(flood.alive(), "the flood ended early: {}", flood.stdout());
        let (cookies, handshakes) = peer_state(&b);
        assert!(handshakes >= 1, "B has no session: {}", b.vs_diag());
        if cookies >= 1 {
            break;
        }
        // The session came without a cookie: B's initiation fell in the first 33 ms of a
        // second, before the allowance ran out (one chance in thirty). A new peer state
        // on B, a new handshake.
        assert!(
            attempts < ATTEMPTS,
            "B never got a cookie reply in {attempts} handshakes under load:\n{}",
            b.vs_diag()
        );
        b.vs_ok(&["del-tunnel", "br0", "vx"]);
        encrypted(&b, "h2p", B_INNER, &b_side);
    }
    let handshake_in = t0.elapsed();

    // wireguard-go gets in too (it takes cookie replies and retries as the protocol
    // says), and its kernel vxlan device reaches h1 through A.
    let answered = pings_until_answered(&lab, &w, &lab.ip(1));
    let wg_show = || {
        testlab::try_run(
            &["ip", "netns", "exec", &w, "wg", "show"],
            Duration::from_secs(5),
        )
        .map(|o| o.to_string())
        .unwrap_or_default()
    };
    assert!(
        answered,
        "W -> h1 during the flood: no answer in {PING_FOR:?}\n{}\nA:\n{}",
        wg_show(),
        lab.vs_diag()
    );
    assert!(flood.alive(), "the flood ended early: {}", flood.stdout());
    let w_handshakes = lab.tunnel("br0", "vx").remotes[1]
        .peer
        .clone()
        .unwrap()
        .handshakes;
    assert!(w_handshakes >= 1, "{}", lab.vs_diag());

    // The session carries traffic both ways while the flood goes on, and A is still
    // under load after it: the session was made under load, not after it.
    let before = under_load(&lab);
    let o = lab.ping_out(1, &lab.ip(2), 5, "0.1", 20);
    assert!(o.success() && o.stdout.contains(" 5 received"), "{o}");
    wait_until(
        "A still refusing the flood",
        Duration::from_secs(10),
        || under_load(&lab) > before,
    );
    assert!(flood.alive(), "the flood ended early: {}", flood.stdout());
    std::fs::write(&stop, b"").unwrap();
    assert!(
        flood.wait_timeout(Duration::from_secs(10)).is_some(),
        "the flooder did not stop"
    );
    let out = flood.stdout();
    let field = |name: &str| -> u64 {
        out.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the flooder's output: {out}"))
    };
    let (sent, cookies_back) = (field("sent"), field("cookies"));
    let refused = under_load(&lab);
    // Cookie replies went to the flooder's own address and port, one per refused
    // initiation (a few may still be in flight or lost in a full socket queue).
    assert!(
        cookies_back >= 100 && cookies_back <= refused,
        "flooder got {cookies_back} cookie replies, A counted {refused} refused: {out}"
    );
    assert!(refused >= 1000, "A refused only {refused} of {sent}");
    // None of the flood's cookie replies nor answers to it went to B.
    let b_drops = b.drops(WG_PORT);
    assert!(
        b_drops.values().sum::<u64>() < 20,
        "B dropped {b_drops:?}: answers to the flood reached it"
    );
    let drops = lab.drops(WG_PORT);
    report(&format!(
        "cookie under load: flood {sent} initiations ({FLOOD_RATE}/s), A refused {refused} \
         with a cookie reply ({cookies_back} reached the flooder), B's handshake done \
         {:.1} s after A listened ({attempts} attempt(s)), wireguard-go's too; A's drops \
         {drops:?}",
        handshake_in.as_secs_f64()
    ));
    // B's show says it took a cookie reply.
    assert!(
        b.vs_ok(&["show"]).contains("cookie replies received"),
        "{}",
        b.vs_diag()
    );
}
