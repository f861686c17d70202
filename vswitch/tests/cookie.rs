//! WireGuard's cookie reply under load, through real `vswitchd` daemons: host A's
//! encrypted tunnel is flooded with a real handshake initiation (captured from host B
//! with tcpdump, so its mac1 is valid for A's key) replayed three thousand times
//! a second from another address. A's listener is then "under load": every handshake
//! without a valid mac2 gets a cookie reply, sent to where it came from (the flooder
//! counts them) and counted as `wg_under_load`, before any Diffie-Hellman is spent on
//! it. B, a legitimate vswitchd peer, gets a cookie reply for its initiation, retries
//! with the mac2 it allows, completes the handshake and pings during the flood.
//!
//! Addresses: the overlay is the lab's 10.X.Y.0/24 (containers `hN`, MTU 1390); the
//! underlay 198.51.100.0/24 (the flooder is 198.51.100.3, a second address of B's),
//! inside the test's namespaces only. The flood is bounded (rate and duration).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::overlay::{ip, two_hosts, Vs, A_IP, B_IP};
use common::{report, wait_until, Lab};

const WG_PORT: u16 = 51820;
/// The flooder's address: on B's underlay interface, not B's own.
const FLOODER: &str = "198.51.100.3";
/// Initiations a second the flood aims at: thirty times the listener's allowance of
/// 100, so a second is "under load" after its first 33 ms.
const FLOOD_RATE: u32 = 3000;
/// The flood stops by itself after this long (the test stops it sooner).
const FLOOD_MAX_SECS: u32 = 90;
/// Handshakes B makes (a fresh peer state each) until one of them met a cookie reply.
const ATTEMPTS: u32 = 5;

/// Replays the initiation in the pcap `argv[1]`, `argv[2]` times a second, from address
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

/// `add-br br0`, `add-port br0 PORT`, and an encrypted tunnel `vx` to `remote`.
fn encrypted(v: &impl Vs, port: &str, remote: &str, key: &str) {
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
    v.wait_ports_up("br0", &[port, "vx"]);
}

/// The only remote's (cookie replies received, handshakes) on `v`.
fn peer_state(v: &impl Vs) -> (u64, u64) {
    let p = v.tunnel("br0", "vx").remotes[0].peer.clone().unwrap();
    (p.cookies_received, p.handshakes)
}

fn under_load(v: &impl Vs) -> u64 {
    v.drops(WG_PORT).get("wg_under_load").copied().unwrap_or(0)
}

#[test]
fn under_a_flood_of_initiations_the_listener_sends_cookies_and_a_real_peer_still_gets_in() {
    let mut lab = Lab::new("wgk", 210);
    let (a, b) = two_hosts(&mut lab, "1390");
    lab.start_daemon();
    let (a_pub, b_pub) = (lab.public_key(), b.public_key());
    lab.vs_ok(&["add-br", "br0"]);
    lab.vs_ok(&["add-port", "br0", "h1p"]);
    b.vs_ok(&["add-br", "br0"]);
    b.vs_ok(&["add-port", "br0", "h2p"]);

    // B's real initiation, captured at A before A listens (so A never answers it).
    encrypted(&b, "h2p", A_IP, &a_pub);
    let pcap = lab.dir.join("init.pcap");
    let mut cap = lab.spawn_bg(
        &a,
        "capture-init",
        &[
            "tcpdump",
            "-i",
            "ul0",
            "-nn",
            "-U",
            "-c",
            "1",
            "-w",
            &pcap.display().to_string(),
            &format!("src host {B_IP} and udp dst port {WG_PORT} and udp[8:4] = 0x01000000"),
        ],
    );
    wait_until("tcpdump listens", Duration::from_secs(10), || {
        cap.stderr().contains("listening on")
    });
    // Traffic from h2 makes B initiate; nothing answers yet.
    let _ = lab.ping_out(2, &lab.ip(1), 1, "0.2", 2);
    assert!(
        cap.wait_timeout(Duration::from_secs(20)).is_some(),
        "no initiation from B captured: {}",
        cap.stderr()
    );

    // The flood, from a second address of B's namespace.
    ip(&b.ns, &["addr", "add", &format!("{FLOODER}/24"), "dev", "ul0"]);
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

    // Now A listens: it is under load at once, and B's next initiation (its retry timer
    // runs every 5 s) gets a cookie reply, then B's retry with mac2 gets in.
    encrypted(&lab, "h1p", B_IP, &b_pub);
    lab.wait_drops(WG_PORT, "wg_under_load", 1);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let o = lab.ping_out(2, &lab.ip(1), 3, "0.5", 40);
        assert!(
            o.stdout.contains(" received") && !o.stdout.contains(" 0 received"),
            "h2 -> h1 during the flood: no answer: {o}\nA:\n{}\nB:\n{}\nflooder: {}",
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
        // The session came without a cookie: A began it (A had a frame for B before B's
        // initiation got in), or B's initiation fell in the first 33 ms of a second,
        // before the allowance ran out (one chance in thirty). A new peer state on B, a
        // new handshake, which B begins (A still has its session).
        assert!(
            attempts < ATTEMPTS,
            "B never got a cookie reply in {attempts} handshakes under load:\n{}",
            b.vs_diag()
        );
        b.vs_ok(&["del-tunnel", "br0", "vx"]);
        encrypted(&b, "h2p", A_IP, &a_pub);
    }
    let handshake_in = t0.elapsed();

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
    // None of the flood's cookie replies went to B, whose initiation it replays.
    let b_drops = b.drops(WG_PORT);
    assert!(
        b_drops.values().sum::<u64>() < 20,
        "B dropped {b_drops:?}: answers to the flood reached it"
    );
    let drops = lab.drops(WG_PORT);
    report(&format!(
        "cookie under load: flood {sent} initiations ({FLOOD_RATE}/s), A refused {refused} \
         with a cookie reply ({cookies_back} reached the flooder), B's handshake done \
         {:.1} s after A listened ({attempts} attempt(s)); A's drops {drops:?}",
        handshake_in.as_secs_f64()
    ));
    // B's show says it took a cookie reply.
    assert!(
        b.vs_ok(&["show"]).contains("cookie replies received"),
        "{}",
        b.vs_diag()
    );
}
