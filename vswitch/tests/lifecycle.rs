//! Daemon life: the config survives `kill -9`, and SIGTERM exits cleanly.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::Lab;

/// `vsctl show` text with the per-bridge learned count blanked (it depends on traffic).
fn normalize_show(text: &str) -> String {
    text.lines()
        .map(|l| {
            match (
                l.starts_with("bridge "),
                l.rfind(", "),
                l.rfind(" learned)"),
            ) {
                (true, Some(a), Some(b)) if a < b => format!("{}, _{}", &l[..a], &l[b..]),
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn zero_fdb(mut v: Vec<ctl::BridgeInfo>) -> Vec<ctl::BridgeInfo> {
    for b in &mut v {
        b.fdb_entries = 0;
    }
    v
}

/// Two bridges (one with a TAP port), `kill -9`, restart on the same `--db`: the same
/// configuration comes back, ports up, the TAP recreated, and traffic flows again.
#[test]
fn config_survives_kill_9() {
    let mut lab = Lab::new("kill9", 31);
    for _ in 0..4 {
        lab.add_host();
    }
    let t = lab.add_bare_host("tap5");
    lab.start_daemon();
    lab.bridge_with_hosts("brA", &[1, 2]);
    lab.vsctl_ok(&["add-port", "brA", "tap5", "--type", "tap"]);
    lab.bridge_with_hosts("brB", &[3, 4]);
    lab.vsctl_ok(&["set-aging", "brA", "120"]);
    lab.vsctl_ok(&["set-mac-limit", "brB", "1000"]);
    let sw = lab.sw.clone();
    common::wait_until("TAP tap5 to exist", Duration::from_secs(10), || {
        lab.link_exists(&sw, "tap5")
    });

    // Snapshot before any traffic, with the TAP still in the switch namespace: the state
    // the restarted daemon must reproduce.
    let show_text = lab.vsctl_ok(&["show"]);
    let show = lab.show();
    assert_eq!(show.len(), 2, "expected 2 bridges: {show:#?}");
    let a = show.iter().find(|b| b.name == "brA").unwrap();
    assert_eq!(a.aging_secs, 120, "aging of brA: {show:#?}");
    assert_eq!(a.ports.len(), 3, "ports of brA: {show:#?}");
    let b = show.iter().find(|b| b.name == "brB").unwrap();
    assert_eq!(b.mac_limit, 1000, "mac limit of brB: {show:#?}");
    assert_eq!(b.ports.len(), 2, "ports of brB: {show:#?}");

    lab.adopt_tap(t);
    lab.ping_all_pairs(&[1, 2, t]);
    lab.ping_all_pairs(&[3, 4]);
    // Bridges are isolated from each other.
    let o = lab.ping_out(1, &lab.ip(3), 1, "0.2", 2);
    assert!(!o.success(), "h1 (brA) reached h3 (brB): {o}");
    let conf = fs::read(&lab.db)
        .unwrap_or_else(|e| panic!("config file {} unreadable: {e}", lab.db.display()));
    assert!(!conf.is_empty(), "config file is empty");

    let st = lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    assert!(
        st.code().is_none(),
        "vswitchd was not killed by SIGKILL: {st}"
    );
    let conf_after = fs::read(&lab.db).expect("config file still there after kill -9");
    assert!(conf == conf_after, "kill -9 changed the config file");

    lab.start_daemon();
    lab.wait_ports("brA", &["h1p", "h2p"], "up", Duration::from_secs(10));
    lab.wait_ports("brB", &["h3p", "h4p"], "up", Duration::from_secs(10));
    common::wait_until("TAP tap5 to be recreated", Duration::from_secs(10), || {
        lab.link_exists(&sw, "tap5")
    });
    // Give port states a moment to settle, then compare.
    let want = normalize_show(&show_text);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while normalize_show(&lab.vsctl_ok(&["show"])) != want && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let show2_text = lab.vsctl_ok(&["show"]);
    assert_eq!(
        normalize_show(&show2_text),
        normalize_show(&show_text),
        "`vsctl show` differs after restart\nbefore:\n{show_text}\nafter:\n{show2_text}"
    );
    assert_eq!(
        zero_fdb(lab.show()),
        zero_fdb(show),
        "`vsctl show --json` differs after restart"
    );

    // The old TAP died with the old daemon; adopt the new one and send traffic again.
    let tns = lab.host(t).ns.clone();
    assert!(
        !lab.link_exists(&tns, "tap5"),
        "the old tap5 is still in the host namespace"
    );
    lab.adopt_tap(t);
    // The recreated TAP is a new device with a new MAC: forget the old one in h1 and h2.
    for n in [1u8, 2] {
        let ns = lab.host(n).ns.clone();
        lab.exec_ok(&ns, &["ip", "neigh", "flush", "dev", "eth0"]);
    }
    lab.ping_all_pairs(&[1, 2, t]);
    lab.ping_all_pairs(&[3, 4]);
}

/// SIGTERM: exit 0 within a few seconds, the TAP it created is gone, the afpacket veth stays.
#[test]
fn sigterm_exits_cleanly_and_removes_its_taps() {
    let mut lab = Lab::new("term", 32);
    lab.add_host();
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1]);
    lab.vsctl_ok(&["add-port", "br0", "tp2", "--type", "tap"]);
    let sw = lab.sw.clone();
    common::wait_until("TAP tp2 to exist", Duration::from_secs(10), || {
        lab.link_exists(&sw, "tp2")
    });
    lab.wait_ports("br0", &["h1p"], "up", Duration::from_secs(10));
    let pid = lab.daemon_pid();
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(
        comm.trim(),
        "vswitchd",
        "the harness should be signalling vswitchd itself"
    );

    let st = lab.signal_daemon(libc::SIGTERM, Duration::from_secs(5));
    assert_eq!(
        st.code(),
        Some(0),
        "vswitchd did not exit 0 on SIGTERM: {st}\n{}",
        lab.log_text()
    );
    assert!(
        !lab.link_exists(&sw, "tp2"),
        "the TAP tp2 outlived vswitchd"
    );
    assert!(
        lab.link_exists(&sw, "h1p"),
        "the afpacket veth h1p was removed by vswitchd"
    );
    let ns1 = lab.host(1).ns.clone();
    assert!(lab.link_exists(&ns1, "eth0"), "h1's eth0 disappeared");

    // SIGINT does the same; the restarted daemon recreates the TAP from its config first.
    lab.start_daemon();
    common::wait_until("TAP tp2 to be recreated", Duration::from_secs(10), || {
        lab.link_exists(&sw, "tp2")
    });
    lab.wait_ports("br0", &["h1p"], "up", Duration::from_secs(10));
    let st = lab.signal_daemon(libc::SIGINT, Duration::from_secs(5));
    assert_eq!(
        st.code(),
        Some(0),
        "vswitchd did not exit 0 on SIGINT: {st}\n{}",
        lab.log_text()
    );
    assert!(
        !lab.link_exists(&sw, "tp2"),
        "the TAP tp2 outlived vswitchd (SIGINT)"
    );
    assert!(
        lab.link_exists(&sw, "h1p"),
        "the afpacket veth h1p was removed by vswitchd (SIGINT)"
    );
}

/// Niceness of each of the daemon's threads, by thread name, from /proc.
fn thread_nices(pid: u32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = fs::read_to_string(t.unwrap().path().join("stat")).unwrap();
        // "tid (comm) state …": fields after the comm's closing parenthesis, nice is 19th.
        let (head, rest) = stat.rsplit_once(") ").unwrap();
        let comm = head.split_once(" (").unwrap().1.to_string();
        let nice: i32 = rest.split(' ').nth(16).unwrap().parse().unwrap();
        out.push((comm, nice));
    }
    out.sort();
    out
}

/// The forwarding threads run at `--worker-nice` (-10 by default, ovs-ctl's niceness
/// for ovs-vswitchd), the other threads at the process's, traffic flows either way, and
/// an out-of-range value is refused in one line before anything starts.
#[test]
fn forwarding_threads_run_at_the_niceness_asked_for() {
    let mut lab = Lab::new("nice", 17);
    lab.add_host();
    lab.add_host();
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2]);
    let nices = thread_nices(lab.daemon_pid());
    let (workers, others): (Vec<_>, Vec<_>) = nices
        .iter()
        .partition(|(c, _)| c.starts_with("vswitch-worker"));
    assert!(!workers.is_empty(), "no worker threads: {nices:?}");
    assert!(
        workers.iter().all(|(_, n)| *n == -10),
        "workers not at -10 by default: {nices:?}"
    );
    assert!(
        others.iter().all(|(_, n)| *n == 0),
        "threads other than the workers were raised too: {nices:?}"
    );
    lab.ping(1, 2);

    lab.signal_daemon(libc::SIGTERM, Duration::from_secs(5));
    lab.daemon_args = vec!["--worker-nice".into(), "0".into()];
    lab.start_daemon();
    lab.wait_ports("br0", &["h1p", "h2p"], "up", Duration::from_secs(10));
    let nices = thread_nices(lab.daemon_pid());
    assert!(
        nices.iter().all(|(_, n)| *n == 0),
        "--worker-nice 0 left a thread raised: {nices:?}"
    );
    lab.ping(2, 1);

    let bad = std::process::Command::new(common::vswitchd_bin())
        .args(["--worker-nice", "-21", "--sock", "/nonexistent/s.sock"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "--worker-nice -21 was accepted");
    assert!(
        err.lines()
            .next()
            .unwrap_or("")
            .contains("-21 is not in -20..=19"),
        "unclear refusal: {err}"
    );
}
