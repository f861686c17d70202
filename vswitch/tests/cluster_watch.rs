//! A node's live watch cancelled by etcd for a compaction: the node fell behind (paused
//! with SIGSTOP for less than its lease TTL, so it keeps its lease and its session),
//! etcd could not deliver its events and compacted past them, and cancels the watch when
//! the node reads again. The node must list the store again within the same session and
//! converge: overlays added and deleted, endpoints attached and detached meanwhile, none
//! of which it saw as an event.
//!
//! Debian's etcd (3.4.23) sometimes drops such a watcher's events without cancelling its
//! watch (etcd-io/etcd#17529, fixed in 3.4.31): then the node's own audit (a list of the
//! store compared with what the watch built, every [`AUDIT`] seconds here) must find
//! what is missing. Either way the node lists again; which way is printed.
//!
//! Two `vswitchd` nodes and one real etcd on the cluster tests' underlay lab
//! (`common/cluster.rs`); overlays 10.96-98.0.0/24, inside the lab's namespaces only.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{attach_auto, ping, Lab, ETCD_IP, SIGCONT, SIGSTOP};
use ctl::Data;
use testlab::etcd::Etcd;
use testlab::{netns, wait_until, Switchd, SHORT};

/// Lease TTL of the nodes, seconds: longer than the pause, so the paused node keeps
/// its lease (and its watch) and meets the cancelled watch, not a lost lease.
const TTL: u64 = 30;

/// Writes, under the prefix but outside every key a node reads, enough to stall a
/// paused node's watch stream (a few MiB, more than gRPC's flow-control window), then
/// that many single puts (more than etcd's per-stream buffer of 128 responses, so the
/// watcher falls behind and etcd keeps its events for later), then deletes them all.
const FILLER: &str = r#"
import base64, http.client, json, sys
host, port = sys.argv[1].rsplit(":", 1)
c = http.client.HTTPConnection(host, int(port), timeout=20)
def call(path, body):
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    d = r.read()
    if r.status != 200:
        sys.exit(f"{path}: {r.status} {d[:300]!r}")
    return json.loads(d)
b = lambda s: base64.b64encode(s.encode()).decode()
P = "/vswitch/v1/test-filler/"
big = "x" * 16384
for t in range(4):
    call("/v3/kv/txn", {"success": [{"requestPut": {"key": b(f"{P}big/{t}/{i}"), "value": b(big)}}
                                    for i in range(60)]})
for i in range(int(sys.argv[2])):
    call("/v3/kv/put", {"key": b(f"{P}small/{i}"), "value": b(str(i))})
call("/v3/kv/deleterange", {"key": b(P), "range_end": b(P[:-1] + "0")})
"#;

/// Seconds between the nodes' audits (`--cluster-audit`): short enough to catch a
/// dropped compaction notice within the test's wait, long enough that etcd's own cancel
/// (within 100 ms of the node reading again) usually comes first.
const AUDIT: u64 = 5;
const AUDITED: &str = "the watch did not deliver; listing again";

/// The lab with its etcd and nodes n1 and n2 (lease TTL [`TTL`], audit [`AUDIT`]).
fn lab() -> Lab {
    testlab::require_tools(&["python3"]);
    let mut lab = Lab::new("w");
    let etcd = Etcd::start(&lab.underlay(), ETCD_IP, &lab.dir.join("etcd"), None).unwrap();
    let store = etcd.store_url();
    lab.etcd = Some(etcd);
    for n in [1, 2] {
        lab.node_ttl(
            n,
            &store,
            TTL,
            &["--cluster-audit".into(), AUDIT.to_string()],
        );
    }
    lab
}

/// A container namespace `what`, attached to overlay `ov` on node `i` with an address
/// from the cluster: its namespace, address and MAC.
fn attach(lab: &mut Lab, i: usize, ov: &str, what: &str) -> (String, String, String) {
    let c = lab.name(what);
    lab.ns.add(&c);
    let (ip, mac) = attach_auto(&lab.nodes[i].sw, ov, &c);
    (c, ip, mac)
}

/// The store's current revision.
fn revision(lab: &Lab) -> i64 {
    let st = lab
        .etcd
        .as_ref()
        .unwrap()
        .etcdctl(&["endpoint", "status", "--write-out", "json"])
        .unwrap();
    st.stdout
        .split("\"revision\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {st}"))
}

/// The overlays `sw` carries (has a bridge for).
fn carried(sw: &Switchd) -> BTreeSet<String> {
    match sw.vsctl_json(&["list-overlays"]) {
        Data::Overlays { overlays, .. } => overlays
            .into_iter()
            .filter(|o| o.bridge.is_some())
            .map(|o| o.name)
            .collect(),
        other => panic!("list-overlays --json returned {other:?}"),
    }
}

/// The MACs of overlay `ov`'s static FDB entries towards remote VTEPs on `sw`.
fn remote_macs(sw: &Switchd, ov: &str) -> BTreeSet<String> {
    sw.fdb(ov)
        .into_iter()
        .filter(|e| e.is_static && e.remote.is_some())
        .map(|e| e.mac)
        .collect()
}

/// Lines of `sw`'s whole log that say `what` (`log_text` is only its tail).
fn count(sw: &Switchd, what: &str) -> usize {
    std::fs::read_to_string(&sw.log)
        .unwrap_or_default()
        .matches(what)
        .count()
}

const CANCELLED: &str = "watch cancelled; listing again";
const JOINED: &str = "joined the cluster";

#[test]
fn a_watch_cancelled_for_a_compaction_lists_again_in_the_same_session_and_converges() {
    let mut lab = lab();
    let (n1, n2) = (0, 1);
    lab.nodes[n2]
        .sw
        .vsctl_ok(&["add-overlay", "ov1", "--subnet", "10.96.0.0/24"]);
    lab.nodes[n2]
        .sw
        .vsctl_ok(&["add-overlay", "gone", "--subnet", "10.97.0.0/24"]);
    let (_, _, mac_a) = attach(&mut lab, n2, "ov1", "c2a");
    wait_until("n1 carries both overlays and sees c2a", SHORT, || {
        carried(&lab.nodes[n1].sw) == BTreeSet::from(["ov1".into(), "gone".into()])
            && remote_macs(&lab.nodes[n1].sw, "ov1").contains(&mac_a)
    });
    let (cancelled, audited, joined) = (
        count(&lab.nodes[n1].sw, CANCELLED),
        count(&lab.nodes[n1].sw, AUDITED),
        count(&lab.nodes[n1].sw, JOINED),
    );

    // n1 paused: its watch stream stalls, and etcd, unable to deliver, keeps its events
    // for later (the watcher is behind).
    let paused = Instant::now();
    testlab::stop::kill(lab.nodes[n1].sw.pid(), SIGSTOP);
    let o = netns::try_exec(
        &lab.name("u"),
        &[
            "python3",
            "-c",
            FILLER,
            &lab.etcd.as_ref().unwrap().endpoint,
            "400",
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(o.success(), "filler: {o}");
    // What n1 must catch up on, none of which it sees as an event.
    let (c2b, ip_b, mac_b) = attach(&mut lab, n2, "ov1", "c2b");
    lab.nodes[n2]
        .sw
        .vsctl_ok(&["detach", "ov1", &lab.name("c2a")]);
    lab.nodes[n2]
        .sw
        .vsctl_ok(&["add-overlay", "ov3", "--subnet", "10.98.0.0/24"]);
    lab.nodes[n2].sw.vsctl_ok(&["del-overlay", "gone"]);
    // Compacted past every revision n1 was sent: its watch cannot resume.
    let rev = revision(&lab);
    let o = lab
        .etcd
        .as_ref()
        .unwrap()
        .etcdctl(&["compact", &rev.to_string()])
        .unwrap();
    assert!(o.success(), "{o}");
    let pause = paused.elapsed();
    assert!(
        pause < Duration::from_secs(TTL / 2),
        "paused {pause:?}: too close to the lease TTL ({TTL} s) to tell the paths apart"
    );
    testlab::stop::kill(lab.nodes[n1].sw.pid(), SIGCONT);

    let sw1 = &lab.nodes[n1].sw;
    wait_until(
        "n1 lists again (etcd cancels its watch, or its audit finds what etcd dropped)",
        SHORT,
        || count(sw1, CANCELLED) > cancelled || count(sw1, AUDITED) > audited,
    );
    eprintln!(
        "[measured] n1 listed again after {}",
        if count(sw1, CANCELLED) > cancelled {
            "etcd cancelled its watch"
        } else {
            "its audit found events the watch had not delivered (etcd-io/etcd#17529)"
        }
    );
    wait_until("n1 converges on what it missed", SHORT, || {
        carried(sw1) == BTreeSet::from(["ov1".into(), "ov3".into()])
            && remote_macs(sw1, "ov1") == BTreeSet::from([mac_b.clone()])
    });
    // The same session all along: the lease was kept, nothing joined again.
    assert_eq!(
        count(sw1, JOINED),
        joined,
        "n1 joined again:\n{}",
        sw1.log_text()
    );
    let (c1, ip1, _) = attach(&mut lab, n1, "ov1", "c1");
    ping(&c1, &ip_b);
    ping(&c2b, &ip1);

    // In step, an audit finds nothing to adopt: no spurious list and watch again.
    let sw1 = &lab.nodes[n1].sw;
    let audited = count(sw1, AUDITED);
    std::thread::sleep(Duration::from_secs(AUDIT + 1));
    assert_eq!(count(sw1, AUDITED), audited, "{}", sw1.log_text());
}
