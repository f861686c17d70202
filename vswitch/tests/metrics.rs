//! `vswitchd --metrics`: a real daemon serves `/metrics`; Debian's `promtool check
//! metrics` accepts the scrape, and its counters are `vsctl --json stats`'s, port by
//! port, bridge by bridge and for the gateway, after real traffic.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Lab;
use ctl::Data;

const ADDR: &str = "127.0.0.1:9477";

/// `GET path` from inside the switch namespace: (HTTP status, body).
fn get(lab: &Lab, path: &str) -> (String, String) {
    let url = format!("http://{ADDR}{path}");
    let o = lab.exec(
        &lab.sw,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code}",
            &url,
        ],
    );
    assert!(o.success(), "{o}");
    let (body, code) = o.stdout.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

/// Samples of a scrape: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// What `vsctl --json stats` says, as the samples a scrape must have.
fn expected(lab: &Lab) -> BTreeMap<String, f64> {
    let Data::Stats {
        bridges, gateway, ..
    } = lab.vsctl_json(&["stats"])
    else {
        panic!("stats")
    };
    let mut m = BTreeMap::new();
    for b in &bridges {
        let br = &b.name;
        m.insert(
            format!("vswitch_bridge_fdb_entries{{bridge=\"{br}\"}}"),
            b.fdb_entries as f64,
        );
        for (k, v) in &b.counters {
            m.insert(
                format!("vswitch_bridge_{k}_total{{bridge=\"{br}\"}}"),
                *v as f64,
            );
        }
        for p in &b.ports {
            let l = format!("{{bridge=\"{br}\",port=\"{}\"}}", p.name);
            m.insert(
                format!("vswitch_port_rx_packets_total{l}"),
                p.rx_packets as f64,
            );
            m.insert(format!("vswitch_port_rx_bytes_total{l}"), p.rx_bytes as f64);
            m.insert(
                format!("vswitch_port_tx_packets_total{l}"),
                p.tx_packets as f64,
            );
            m.insert(format!("vswitch_port_tx_bytes_total{l}"), p.tx_bytes as f64);
            for (r, v) in &p.drops {
                let l = format!("{{bridge=\"{br}\",port=\"{}\",reason=\"{r}\"}}", p.name);
                m.insert(format!("vswitch_port_drops_total{l}"), *v as f64);
            }
        }
    }
    let g = gateway.expect("the bridge has a network, so a gateway");
    m.insert("vswitch_conntrack_entries".into(), g.conntrack as f64);
    m.insert("vswitch_conntrack_limit".into(), g.ct_limit as f64);
    m.insert(
        "vswitch_conntrack_refused_total".into(),
        g.ct_refused as f64,
    );
    for (k, v) in &g.counters {
        if k != "neighbours" {
            m.insert(format!("vswitch_gateway_{k}_total"), *v as f64);
        }
    }
    m
}

#[test]
fn scrape_passes_promtool_and_matches_stats() {
    testlab::require_tools(&["promtool", "curl"]);
    let mut lab = Lab::new("metric", 90);
    lab.daemon_args = vec!["--metrics".into(), ADDR.into()];
    lab.add_host();
    lab.add_host();
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2]);
    let gw = format!("{}.254", lab.net);
    lab.vsctl_ok(&[
        "add-net",
        "br0",
        &format!("{}.0/24", lab.net),
        "--gateway",
        &gw,
    ]);
    lab.ping(1, 2);
    // Echo through the gateway: counted there (echo answered), as routed traffic is.
    let o = lab.ping_out(1, &gw, 5, "0.2", 10);
    assert!(o.stdout.contains(" 0% packet loss"), "{o}");

    let (code, text) = get(&lab, "/metrics");
    assert_eq!(code, "200", "{text}");
    let file = lab.dir.join("scrape.txt");
    std::fs::write(&file, &text).unwrap();
    let check = lab.exec(
        &lab.sw,
        &[
            "sh",
            "-c",
            "promtool check metrics < \"$0\"",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        check.success(),
        "promtool refused the scrape: {check}\n{text}"
    );
    assert_eq!(metrics_decl::validate(&text), Ok(()));

    // Traffic has stopped; the gateway publishes its counters once a second. Wait until
    // a scrape and stats agree on every counter stats has (or fail with the difference).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let want = expected(&lab);
        let got = samples(&get(&lab, "/metrics").1);
        let diff: Vec<String> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: stats {v}, scrape {:?}", got.get(k)))
            .collect();
        if diff.is_empty() {
            assert!(want.len() > 20, "{want:?}");
            let rx = got["vswitch_port_rx_packets_total{bridge=\"br0\",port=\"h1p\"}"];
            assert!(rx >= 5.0, "{got:?}");
            assert!(got["vswitch_gateway_echo_replied_total"] >= 5.0, "{got:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scrape and stats differ: {diff:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = samples(&text);
    assert_eq!(got["vswitch_build_info{version=\"0.1.0\"}"], 1.0);
    let busy: f64 = got
        .iter()
        .filter(|(k, _)| k.starts_with("vswitch_worker_busy_seconds_total{"))
        .map(|(_, v)| v)
        .sum();
    assert!(busy > 0.0, "no worker was ever busy: {got:?}");
    assert_eq!(get(&lab, "/").0, "404");
}

/// Off by default: nothing listens; an address the daemon cannot bind stops it at start
/// with one line saying so.
#[test]
fn metrics_are_off_by_default_and_a_bad_address_stops_the_start() {
    let mut lab = Lab::new("nometr", 91);
    lab.start_daemon();
    let listening = lab.exec_ok(&lab.sw, &["ss", "-Hltn"]);
    assert!(listening.trim().is_empty(), "{listening}");

    let sock = lab.dir.join("other.sock");
    let db = lab.dir.join("other.json");
    let vswitchd = common::vswitchd_bin();
    let o = lab.exec(
        &lab.sw,
        &[
            vswitchd.to_str().unwrap(),
            "--sock",
            sock.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--metrics",
            "198.51.100.77:9477",
        ],
    );
    assert!(!o.success(), "{o}");
    assert_eq!(
        o.stderr.trim(),
        "vswitchd: cannot serve metrics on 198.51.100.77:9477: Cannot assign requested address (os error 99)",
        "{o}"
    );
}
