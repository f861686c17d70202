//! A cluster store whose disk stalls: every write waits for its WAL flush (and a
//! linearizable read behind it), while serializable reads and lease keep-alives (which
//! etcd 3.4 answers without a write) go on being answered, as with a store behind a
//! disk busy with writeback. A node's requests must then be
//! answered in bounded time, saying the change may still be made, and the node must
//! keep its lease (and so its record and its endpoints) all the while: its keep-alive
//! does not wait behind a request.
//!
//! And a node whose mesh address (its address in an overlay with services) must be
//! claimed while the store stalls: the claim waits on a thread of its own, so the node
//! still stops at once on SIGTERM.
//!
//! `vswitchd` nodes and one real etcd with its WAL on a FUSE filesystem that can
//! stall its flushes (`testlab::slowdisk`), on the cluster tests' underlay lab
//! (`common/cluster.rs`); overlays 10.93-96.0.0/24, inside the lab's namespaces only.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use cluster::keys;
use common::cluster::{attach_auto, overlays, refused_in_time, Lab, ETCD_IP, SIGCONT, SIGSTOP};
use testlab::etcd::Etcd;
use testlab::{netns, wait_until};

/// The node's lease TTL, seconds: the shortest a node accepts, shorter than one request
/// left waiting on the store (3 s), so a keep-alive held back by a request loses it.
const TTL: u64 = 2;

/// A lab whose etcd keeps its WAL on a disk the test can stall.
fn slow_lab(tag: &str) -> Lab {
    let mut lab = Lab::new(tag);
    let dir = lab.dir.join("etcd");
    lab.etcd = Some(Etcd::start_on_slow_disk(&lab.underlay(), ETCD_IP, &dir).unwrap());
    lab
}

/// The lease and the create revision of `key` in the store.
fn lease_of(lab: &Lab, key: &str) -> (i64, i64) {
    let o = lab
        .etcd
        .as_ref()
        .unwrap()
        .etcdctl(&["get", key, "-w", "json"])
        .unwrap();
    assert!(o.success(), "{o}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let kv = &v["kvs"][0];
    let (Some(lease), Some(created)) = (kv["lease"].as_i64(), kv["create_revision"].as_i64())
    else {
        panic!("{key} is not in the store: {}", o.stdout)
    };
    (lease, created)
}

/// Whether an `ipam/` key of overlay `ov` holds `what` (a serializable read: a
/// linearizable one waits behind the stalled disk).
fn claimed(lab: &Lab, ov: &str, what: &str) -> bool {
    let o = lab
        .etcd
        .as_ref()
        .unwrap()
        .etcdctl(&[
            "get",
            "--consistency=s",
            "--prefix",
            &format!("/vswitch/v1/ipam/{ov}/"),
        ])
        .unwrap();
    assert!(o.success(), "{o}");
    o.stdout.contains(what)
}

#[test]
fn a_node_keeps_its_lease_while_its_requests_wait_on_a_stalled_store() {
    let mut lab = slow_lab("d");
    lab.node_ttl(1, &lab.store(), TTL, &[]);
    lab.nodes[0]
        .sw
        .vsctl_ok(&["add-overlay", "sov", "--subnet", "10.93.0.0/24"]);
    let (c1, c2, c3) = (lab.name("c1"), lab.name("c2"), lab.name("c3"));
    lab.ns.add(&c1);
    lab.ns.add(&c2);
    lab.ns.add(&c3);
    let (ip1, _) = attach_auto(&lab.nodes[0].sw, "sov", &c1);
    let (ip2, _) = attach_auto(&lab.nodes[0].sw, "sov", &c2);
    let node_key = keys::node("n1");
    let endpoint_key = keys::ipam("sov", ip1.parse().unwrap());
    let before = (lease_of(&lab, &node_key), lease_of(&lab, &endpoint_key));
    assert_eq!(
        before.0 .0, before.1 .0,
        "the endpoint is not under the node's lease"
    );

    let disk = lab.etcd.as_ref().unwrap().disk().unwrap();
    disk.stall();
    let sw = &lab.nodes[0].sw;
    // A claim sent and left unanswered: it commits when the disk is back, and nobody
    // has it then.
    refused_in_time(
        sw,
        &["ipam-claim", "sov", "--owner", "probe"],
        "the cluster store did not answer in time; the change may still be made",
    );
    // A claim whose reads wait behind that write: it runs out of time before anything
    // is sent, so nothing can come of it.
    refused_in_time(
        sw,
        &["ipam-claim", "sov", "--owner", "probe2"],
        "cluster store unreachable",
    );
    // A container gone: the node releases its endpoint in the background, and the
    // store leaves that unanswered too, again and again.
    netns::ip(&["netns", "del", &c2]).unwrap().must().unwrap();
    std::thread::sleep(Duration::from_secs(3 * TTL));
    assert!(
        std::fs::read_to_string(&sw.log)
            .unwrap()
            .contains("address claim not answered"),
        "{}",
        sw.log_text()
    );
    // Still stalled, over three TTLs on: the lease has been renewed all along (a lease
    // not renewed for its TTL is expired at once, though its revocation waits for the
    // disk).
    let o = lab
        .etcd
        .as_ref()
        .unwrap()
        .etcdctl(&["lease", "timetolive", &format!("{:x}", before.0 .0)])
        .unwrap();
    assert!(
        o.success() && o.stdout.contains("remaining(") && !o.stdout.contains("expired"),
        "the node's lease during the stall: {o}"
    );
    disk.resume();

    // The claim committed and was released again; the gone container's endpoint too.
    wait_until(
        "the probe's claim and c2's address released",
        Duration::from_secs(15),
        || {
            !claimed(&lab, "sov", "\"container\":\"probe\"")
                && !claimed(&lab, "sov", &format!("\"ip\":\"{ip2}\""))
        },
    );
    assert!(
        !claimed(&lab, "sov", "\"container\":\"probe2\""),
        "a claim answered \"unreachable\" took an address"
    );
    // Past the TTL again: the lease would have gone by now had it lapsed.
    std::thread::sleep(Duration::from_secs(TTL + 1));
    let after = (lease_of(&lab, &node_key), lease_of(&lab, &endpoint_key));
    assert_eq!(
        after, before,
        "the node's record or endpoint was put again (lease, create revision): its lease lapsed"
    );
    // The whole log: the last lines log_text keeps are mostly HTTP/2 frames by now.
    let log = std::fs::read_to_string(&sw.log).unwrap();
    assert_eq!(
        log.matches("joined the cluster").count(),
        1,
        "the node joined again: {}",
        sw.log_text()
    );
    assert!(!log.contains("lease expired"), "{}", sw.log_text());

    // A detach whose release is sent and left unanswered: the container stays plugged
    // in, and once the delete commits with the disk back, its address is published
    // again (a new create revision), not left free while it is in use.
    let (ip3, _) = attach_auto(sw, "sov", &c3);
    let key3 = keys::ipam("sov", ip3.parse().unwrap());
    let (_, created) = lease_of(&lab, &key3);
    disk.stall();
    refused_in_time(
        sw,
        &["detach", "sov", &c3],
        "the cluster store did not answer in time; the change may still be made",
    );
    assert!(sw.vsctl_ok(&["show"]).contains(&ip3), "c3 was unplugged");
    disk.resume();
    wait_until(
        "c3's address published again",
        Duration::from_secs(15),
        || {
            let o = lab
                .etcd
                .as_ref()
                .unwrap()
                .etcdctl(&["get", &key3, "-w", "json", "--consistency=s"])
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
            v["kvs"][0]["create_revision"]
                .as_i64()
                .is_some_and(|c| c != created)
        },
    );
}

/// Whether `node` holds a mesh address in overlay `ov`, as the store says.
fn has_mesh(lab: &Lab, ov: &str, node: &str) -> bool {
    claimed(lab, ov, &format!("\"container\":\"mesh:{node}\""))
}

#[test]
fn a_mesh_claim_waiting_on_a_stalled_store_holds_up_nothing() {
    let mut lab = slow_lab("m");
    // A TTL longer than n2's pause below.
    for n in [1, 2] {
        lab.node_ttl(n, &lab.store(), 10, &[]);
    }
    lab.nodes[0]
        .sw
        .vsctl_ok(&["add-overlay", "mov", "--subnet", "10.96.0.0/24"]);
    wait_until("n2 carries mov", Duration::from_secs(10), || {
        overlays(&lab.nodes[1].sw)
            .iter()
            .any(|o| o.name == "mov" && o.bridge.is_some())
    });

    // n2 paused while the service arrives, then let go with the disk stalled: it learns
    // of the service, and its claim of a mesh address waits on the store.
    let n2 = lab.nodes[1].sw.pid();
    testlab::stop::kill(n2, SIGSTOP);
    lab.nodes[0].sw.vsctl_ok(&[
        "add-service",
        "mov",
        "web",
        "--vip",
        "10.96.0.100",
        "--backend",
        "10.96.0.50",
    ]);
    wait_until(
        "n1 claims its mesh address",
        Duration::from_secs(10),
        || has_mesh(&lab, "mov", "n1"),
    );
    let disk = lab.etcd.as_ref().unwrap().disk().unwrap();
    disk.stall();
    testlab::stop::kill(n2, SIGCONT);
    let sw2 = &lab.nodes[1].sw;
    wait_until("n2 claims a mesh address", Duration::from_secs(10), || {
        std::fs::read_to_string(&sw2.log)
            .unwrap()
            .contains("claiming a mesh address")
    });
    assert!(
        !has_mesh(&lab, "mov", "n2"),
        "the stalled store took a write"
    );

    // The claim has about 3 s left to wait (it held SIGTERM 2.98 s before it had a
    // thread of its own); SIGTERM is answered within a tick or two.
    let t = Instant::now();
    let status = lab.nodes[1].sw.signal(15, Duration::from_secs(10));
    let took = t.elapsed();
    assert!(status.success(), "n2 exited with {status}");
    assert!(
        took < Duration::from_secs(2),
        "n2 took {took:?} to stop on SIGTERM while its mesh claim waited"
    );
    disk.resume();
}
