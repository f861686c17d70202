//! Bad requests, through `vsctl` and raw on the control socket: each is refused with one
//! line, and leaves the config file byte-for-byte as it was and the daemon answering.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::{assert_refused, assert_vsctl_error, raw_request, Lab, Raw};

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let mut lab = Lab::new("badreq", 41);
    lab.add_host();
    lab.add_host();
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1]);
    lab.vsctl_ok(&["add-br", "br1"]);
    lab.vsctl_ok(&["add-port", "br1", "h2p"]);
    lab.wait_ports("br1", &["h2p"], "up", Duration::from_secs(10));
    common::wait_until("the config file to exist", Duration::from_secs(5), || {
        lab.db.exists()
    });
    let conf = fs::read(&lab.db).expect("read config file");
    let show = lab.vsctl_ok(&["show"]);

    // ---- through vsctl: exit 1, one `vsctl: …` line on stderr --------------------------
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        (
            "port on a missing bridge",
            &["add-port", "br9", "x"],
            Some("br9"),
        ),
        ("delete a missing bridge", &["del-br", "br9"], Some("br9")),
        (
            "list ports of a missing bridge",
            &["list-ports", "br9"],
            Some("br9"),
        ),
        ("fdb of a missing bridge", &["fdb-show", "br9"], Some("br9")),
        (
            "aging of a missing bridge",
            &["set-aging", "br9", "100"],
            Some("br9"),
        ),
        ("stats of a missing bridge", &["stats", "br9"], Some("br9")),
        (
            "missing interface",
            &["add-port", "br0", "nosuch0"],
            Some("nosuch0"),
        ),
        ("duplicate port", &["add-port", "br0", "h1p"], Some("h1p")),
        (
            "interface on another bridge",
            &["add-port", "br1", "h1p"],
            Some("h1p"),
        ),
        ("missing port", &["del-port", "br0", "h2p"], Some("h2p")),
        ("duplicate bridge", &["add-br", "br0"], Some("br0")),
        ("bridge name with a slash", &["add-br", "bad/name"], None),
        ("bridge name with a space", &["add-br", "bad name"], None),
        ("empty bridge name", &["add-br", ""], None),
        ("bridge name too long", &["add-br", &"b".repeat(33)], None),
        (
            "interface name too long",
            &["add-port", "br0", "sixteen-chars-xx"],
            None,
        ),
        ("interface name ..", &["add-port", "br0", ".."], None),
        (
            "tap over an existing interface",
            &["add-port", "br0", "lo", "--type", "tap"],
            Some("lo"),
        ),
        (
            "tap name with a slash",
            &["add-port", "br0", "t/1", "--type", "tap"],
            None,
        ),
        (
            "unknown port type",
            &["add-port", "br0", "t1", "--type", "vxlan"],
            None,
        ),
        ("aging too small", &["set-aging", "br0", "5"], None),
        ("aging too large", &["set-aging", "br0", "1000001"], None),
        ("aging not a number", &["set-aging", "br0", "soon"], None),
        ("mac limit zero", &["set-mac-limit", "br0", "0"], None),
        ("unknown verb", &["frobnicate"], None),
    ];
    for (what, args, needle) in cases {
        let o = lab.vsctl(args);
        let line = assert_vsctl_error(&o);
        if let Some(n) = needle {
            assert!(
                line.contains(n),
                "{what}: error does not name {n:?}: {line}"
            );
        }
        eprintln!("{what}: {line}");
    }
    let o = lab.vsctl(&["add-port", "br9", "x"]);
    let line = assert_vsctl_error(&o);
    assert!(
        line.contains("no bridge") || line.contains("br9"),
        "missing-bridge message: {line}"
    );

    // ---- raw on the socket: the daemon checks again, never trusting the client --------
    let big_name = "b".repeat(33);
    let raw_cases: Vec<(&str, String)> = vec![
        ("malformed JSON", "{\"op\":\n".to_string()),
        ("not JSON at all", "hello vswitchd\n".to_string()),
        ("JSON but not an object", "[1,2,3]\n".to_string()),
        ("unknown op", "{\"op\":\"frobnicate\"}\n".to_string()),
        ("missing field", "{\"op\":\"add-br\"}\n".to_string()),
        (
            "unknown field",
            "{\"op\":\"add-br\",\"bridge\":\"br5\",\"x\":1}\n".to_string(),
        ),
        (
            "negative aging",
            "{\"op\":\"set-aging\",\"bridge\":\"br0\",\"seconds\":-1}\n".to_string(),
        ),
        (
            "bridge name with a slash",
            "{\"op\":\"add-br\",\"bridge\":\"bad/name\"}\n".to_string(),
        ),
        (
            "empty bridge name",
            "{\"op\":\"add-br\",\"bridge\":\"\"}\n".to_string(),
        ),
        (
            "bridge name ..",
            "{\"op\":\"add-br\",\"bridge\":\"..\"}\n".to_string(),
        ),
        (
            "bridge name too long",
            format!("{{\"op\":\"add-br\",\"bridge\":\"{big_name}\"}}\n"),
        ),
        (
            "interface name too long",
            "{\"op\":\"add-port\",\"bridge\":\"br0\",\"iface\":\"sixteen-chars-xx\"}\n".to_string(),
        ),
        (
            "interface name with a slash",
            "{\"op\":\"add-port\",\"bridge\":\"br0\",\"iface\":\"a/b\",\"kind\":\"tap\"}\n"
                .to_string(),
        ),
        (
            "interface name ..",
            "{\"op\":\"add-port\",\"bridge\":\"br0\",\"iface\":\"..\"}\n".to_string(),
        ),
        (
            "unknown port kind",
            "{\"op\":\"add-port\",\"bridge\":\"br0\",\"iface\":\"t1\",\"kind\":\"vxlan\"}\n"
                .to_string(),
        ),
        (
            "aging too small",
            "{\"op\":\"set-aging\",\"bridge\":\"br0\",\"seconds\":9}\n".to_string(),
        ),
        (
            "aging too large",
            "{\"op\":\"set-aging\",\"bridge\":\"br0\",\"seconds\":1000001}\n".to_string(),
        ),
        (
            "mac limit zero",
            "{\"op\":\"set-mac-limit\",\"bridge\":\"br0\",\"limit\":0}\n".to_string(),
        ),
        (
            "duplicate bridge",
            "{\"op\":\"add-br\",\"bridge\":\"br1\"}\n".to_string(),
        ),
        (
            "interface on another bridge",
            "{\"op\":\"add-port\",\"bridge\":\"br1\",\"iface\":\"h1p\"}\n".to_string(),
        ),
        (
            "missing interface",
            "{\"op\":\"add-port\",\"bridge\":\"br0\",\"iface\":\"nosuch0\"}\n".to_string(),
        ),
        (
            "port on a missing bridge",
            "{\"op\":\"add-port\",\"bridge\":\"br9\",\"iface\":\"x\"}\n".to_string(),
        ),
    ];
    for (what, line) in &raw_cases {
        let err = assert_refused(&lab.sock, what, line.as_bytes());
        eprintln!("raw {what}: {err:?}");
    }

    // Not UTF-8.
    let mut bytes = b"{\"op\":\"add-br\",\"bridge\":\"br\xff\xfe\"}".to_vec();
    bytes.push(b'\n');
    assert_refused(&lab.sock, "invalid UTF-8", &bytes);

    // Over 64 KiB: a line of garbage, and a valid request padded with JSON whitespace
    // (valid JSON, only too long: it must still be refused, and nothing created).
    let mut huge = vec![b'a'; 100 * 1024];
    huge.push(b'\n');
    assert_refused(&lab.sock, "100 KiB line", &huge);
    let padded = format!(
        "{{\"op\":\"add-br\",{}\"bridge\":\"brbig\"}}\n",
        " ".repeat(70 * 1024)
    );
    assert!(padded.len() > ctl::MAX_REQUEST_BYTES);
    assert_refused(
        &lab.sock,
        "valid request padded past 64 KiB",
        padded.as_bytes(),
    );
    let mut endless = vec![b' '; 1024 * 1024];
    endless.extend_from_slice(b"{\"op\":\"show\"}\n");
    assert_refused(&lab.sock, "1 MiB line", &endless);

    // A good raw request on the same socket works.
    match raw_request(&lab.sock, b"{\"op\":\"list-br\"}\n") {
        Raw::Line(l) => {
            let v: serde_json::Value = serde_json::from_str(&l).expect("list-br response is JSON");
            assert_eq!(
                v["ok"],
                serde_json::Value::Bool(true),
                "list-br refused: {l}"
            );
            let r: ctl::Response =
                serde_json::from_str(&l).expect("list-br response parses as ctl::Response");
            match r.data {
                Some(ctl::Data::Bridges { bridges }) => {
                    assert_eq!(
                        bridges,
                        vec!["br0".to_string(), "br1".to_string()],
                        "bridges after bad requests"
                    );
                }
                other => panic!("list-br returned {other:?}"),
            }
        }
        Raw::Closed => panic!("daemon closed the connection on a valid list-br"),
    }

    // Nothing changed: same config bytes, same show, and the daemon still answers.
    let conf_after = fs::read(&lab.db).expect("read config file");
    assert!(
        conf == conf_after,
        "config file changed after bad requests:\nbefore:\n{}\nafter:\n{}",
        String::from_utf8_lossy(&conf),
        String::from_utf8_lossy(&conf_after)
    );
    let show_after = lab.vsctl_ok(&["show"]);
    assert_eq!(show_after, show, "`vsctl show` changed after bad requests");
    assert!(lab.daemon_running(), "vswitchd exited");
}

fn list(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// The configuration verbs on their good paths: bridges and ports come and go, settings
/// show up in `show`, a deleted TAP port's device goes away, a detached interface can join
/// another bridge, and the result survives a restart.
#[test]
fn configuration_verbs_work_and_persist() {
    let mut lab = Lab::new("verbs", 42);
    for _ in 0..3 {
        lab.add_host();
    }
    lab.start_daemon();
    assert!(
        list(&lab.vsctl_ok(&["list-br"])).is_empty(),
        "a fresh daemon has bridges"
    );
    assert!(lab.show().is_empty(), "a fresh daemon shows bridges");

    lab.vsctl_ok(&["add-br", "br0"]);
    lab.vsctl_ok(&["add-br", "br1"]);
    assert_eq!(list(&lab.vsctl_ok(&["list-br"])), ["br0", "br1"]);
    match lab.vsctl_json(&["list-br"]) {
        ctl::Data::Bridges { mut bridges } => {
            bridges.sort();
            assert_eq!(bridges, ["br0", "br1"]);
        }
        other => panic!("list-br --json returned {other:?}"),
    }
    lab.vsctl_ok(&["add-port", "br0", "h1p"]);
    lab.vsctl_ok(&["add-port", "br0", "h2p", "--type", "afpacket"]);
    lab.vsctl_ok(&["add-port", "br0", "tp9", "--type", "tap"]);
    lab.vsctl_ok(&["add-port", "br1", "h3p"]);
    assert_eq!(
        list(&lab.vsctl_ok(&["list-ports", "br0"])),
        ["h1p", "h2p", "tp9"]
    );
    match lab.vsctl_json(&["list-ports", "br1"]) {
        ctl::Data::Ports { ports } => assert_eq!(ports, ["h3p"]),
        other => panic!("list-ports --json returned {other:?}"),
    }
    let sw = lab.sw.clone();
    common::wait_until("TAP tp9 to exist", Duration::from_secs(10), || {
        lab.link_exists(&sw, "tp9")
    });
    lab.wait_ports("br0", &["h1p", "h2p"], "up", Duration::from_secs(10));
    lab.wait_ports("br1", &["h3p"], "up", Duration::from_secs(10));
    lab.ping(1, 2);

    lab.vsctl_ok(&["set-aging", "br0", "45"]);
    lab.vsctl_ok(&["set-mac-limit", "br0", "10"]);
    let show = lab.show();
    let b0 = show.iter().find(|b| b.name == "br0").expect("br0 in show");
    assert_eq!(
        (b0.aging_secs, b0.mac_limit),
        (45, 10),
        "settings of br0: {show:#?}"
    );
    let b1 = show.iter().find(|b| b.name == "br1").expect("br1 in show");
    assert_eq!(
        (b1.aging_secs, b1.mac_limit),
        (ctl::DEFAULT_AGING_SECS, ctl::DEFAULT_MAC_LIMIT),
        "defaults of br1: {show:#?}"
    );

    // Per-port stats.
    match lab.vsctl_json(&["stats", "br0", "h1p"]) {
        ctl::Data::Stats { bridges, .. } => {
            assert_eq!(bridges.len(), 1, "stats br0 h1p: {bridges:#?}");
            let ports: Vec<&str> = bridges[0].ports.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(ports, ["h1p"], "stats br0 h1p: {bridges:#?}");
            assert!(
                bridges[0].ports[0].rx_packets >= 3,
                "h1p counted no rx: {bridges:#?}"
            );
        }
        other => panic!("stats --json returned {other:?}"),
    }
    let o = lab.vsctl(&["stats", "br0", "nosuch"]);
    assert_vsctl_error(&o);

    // Detach h2p: the interface stays, h1 no longer reaches h2, and h2p may join br1.
    lab.vsctl_ok(&["del-port", "br0", "h2p"]);
    assert_eq!(list(&lab.vsctl_ok(&["list-ports", "br0"])), ["h1p", "tp9"]);
    assert!(
        lab.link_exists(&sw, "h2p"),
        "del-port removed the afpacket interface h2p"
    );
    let o = lab.ping_out(1, &lab.ip(2), 1, "0.2", 2);
    assert!(!o.success(), "h1 still reaches h2 after del-port h2p: {o}");
    lab.vsctl_ok(&["add-port", "br1", "h2p"]);
    lab.wait_ports("br1", &["h2p", "h3p"], "up", Duration::from_secs(10));
    lab.ping(2, 3);
    lab.ping(3, 2);

    // Deleting a TAP port deletes its device.
    lab.vsctl_ok(&["del-port", "br0", "tp9"]);
    common::wait_until(
        "TAP tp9 to disappear after del-port",
        Duration::from_secs(5),
        || !lab.link_exists(&sw, "tp9"),
    );

    // Deleting a bridge deletes its ports, not the interfaces; they are free again.
    lab.vsctl_ok(&["del-br", "br1"]);
    assert_eq!(list(&lab.vsctl_ok(&["list-br"])), ["br0"]);
    assert!(
        lab.link_exists(&sw, "h2p") && lab.link_exists(&sw, "h3p"),
        "del-br removed afpacket interfaces"
    );
    let o = lab.ping_out(2, &lab.ip(3), 1, "0.2", 2);
    assert!(!o.success(), "h2 still reaches h3 after del-br br1: {o}");
    lab.vsctl_ok(&["add-port", "br0", "h3p"]);
    lab.wait_ports("br0", &["h1p", "h3p"], "up", Duration::from_secs(10));
    lab.ping(1, 3);

    // The result survives a restart.
    let before = lab.vsctl_ok(&["show"]);
    let st = lab.signal_daemon(libc::SIGTERM, Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "SIGTERM exit status");
    lab.start_daemon();
    lab.wait_ports("br0", &["h1p", "h3p"], "up", Duration::from_secs(10));
    let show = lab.show();
    assert_eq!(show.len(), 1, "bridges after restart: {show:#?}");
    let b0 = &show[0];
    assert_eq!(
        (b0.name.as_str(), b0.aging_secs, b0.mac_limit),
        ("br0", 45, 10),
        "br0 after restart: {show:#?}"
    );
    let ports: Vec<&str> = b0.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        ports,
        ["h1p", "h3p"],
        "ports after restart (before: {before})"
    );
    lab.ping(3, 1);
}
