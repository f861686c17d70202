//! A node's live watch cancelled by etcd for a compaction: the node fell behind (paused
//! with SIGSTOP for less than its lease TTL, so it keeps its lease and its session),
//! etcd could not deliver its events and compacted past them, and cancels the watch when
//! the node reads again. The node must list the store again within the same session and
//! converge: overlays added and deleted, endpoints attached and detached meanwhile, none
//! of which it saw as an event.
//!
//! Two `vswitchd` nodes, each in its own "host" namespace, and one real etcd on an
//! underlay namespace (a Linux bridge); addresses inside the test's namespaces only:
//! underlay 198.51.100.0/24 (nodes .1-.2, etcd .254), overlays 10.9X.0.0/24.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ctl::Data;
use testlab::etcd::Etcd;
use testlab::{netns, wait_until, Bins, Namespaces, Switchd, SHORT};

const ETCD_IP: &str = "198.51.100.254";
/// Lease TTL of the nodes, seconds: longer than the pause, so the paused node keeps
/// its lease (and its watch) and meets the cancelled watch, not a lost lease.
const TTL: u64 = 30;
/// Linux's SIGSTOP and SIGCONT.
const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

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

fn bins() -> Bins {
    Bins::beside(Path::new(env!("CARGO_BIN_EXE_vswitchd")))
}

/// The test's network; daemons, etcd and namespaces go when it drops.
struct Lab {
    prefix: String,
    dir: PathBuf,
    // Drop order: daemons and etcd first (fields drop in order), then namespaces.
    nodes: Vec<Switchd>,
    etcd: Option<Etcd>,
    ns: Namespaces,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        testlab::require_root();
        testlab::require_tools(&["ip", "ping", "etcd", "etcdctl", "python3"]);
        let prefix = format!("cw{tag}{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("{prefix}.d"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            ns: Namespaces::new(),
            prefix,
            dir,
            nodes: Vec::new(),
            etcd: None,
        };
        let u = lab.name("u");
        lab.ns.add(&u);
        ip(&["-n", &u, "link", "add", "ul", "type", "bridge"]);
        ip(&[
            "-n",
            &u,
            "addr",
            "add",
            &format!("{ETCD_IP}/24"),
            "dev",
            "ul",
        ]);
        ip(&["-n", &u, "link", "set", "ul", "up"]);
        let etcd = Etcd::start(&u, ETCD_IP, &lab.dir.join("etcd"), None).unwrap();
        lab.etcd = Some(etcd);
        lab
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    fn etcd(&self) -> &Etcd {
        self.etcd.as_ref().unwrap()
    }

    /// Node `nN` in host namespace `hN` at 198.51.100.N, in the cluster.
    fn node(&mut self, n: u8) -> usize {
        let ns = self.name(&format!("h{n}"));
        self.ns.add(&ns);
        let u = self.name("u");
        let port = format!("u{n}");
        netns::veth(&ns, "eth0", &u, &port).unwrap();
        ip(&["-n", &u, "link", "set", &port, "master", "ul", "up"]);
        let vtep = format!("198.51.100.{n}");
        netns::addr_add(&ns, "eth0", &format!("{vtep}/24")).unwrap();
        netns::link_up(&ns, "eth0").unwrap();
        let name = format!("n{n}");
        let mut sw = Switchd::new(&name, &ns, &self.dir.join(&name), bins());
        let store = self.etcd().store_url();
        sw.daemon_args = [
            "--workers",
            "1",
            "--cluster-store",
            &store,
            "--cluster-advertise",
            &vtep,
            "--node",
            &name,
            "--cluster-ttl",
            &TTL.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        sw.start();
        self.nodes.push(sw);
        self.nodes.len() - 1
    }

    /// A container namespace `name`, attached to overlay `ov` on node `i` with an
    /// address from the cluster: its address and MAC.
    fn attach(&mut self, i: usize, ov: &str, what: &str) -> (String, String, String) {
        let c = self.name(what);
        self.ns.add(&c);
        let out = self.nodes[i].vsctl_ok(&["attach", ov, &c, "--mtu", "1450"]);
        let mut w = out.split_whitespace();
        let (Some(ip), Some(mac)) = (w.next(), w.next()) else {
            panic!("attach printed {out:?}")
        };
        (
            c,
            ip.split('/').next().unwrap().to_string(),
            mac.to_string(),
        )
    }

    /// The store's current revision.
    fn revision(&self) -> i64 {
        let st = self
            .etcd()
            .etcdctl(&["endpoint", "status", "--write-out", "json"])
            .unwrap();
        st.stdout
            .split("\"revision\":")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no revision in {st}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!("{}", n.log_text());
            }
            if let Some(e) = &self.etcd {
                eprintln!("===== etcd log =====\n{}", e.log_tail());
            }
        }
        for n in &mut self.nodes {
            // A node left paused by a failed test must still be stoppable.
            testlab::stop::kill(n.pid(), SIGCONT);
            n.stop();
        }
        self.etcd = None;
        let left = self.ns.remove();
        if !left.is_empty() {
            eprintln!("could not remove namespaces {left:?}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip(args: &[&str]) {
    netns::ip(args)
        .and_then(|o| o.must())
        .unwrap_or_else(|e| panic!("{e}"));
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

fn ping(from: &str, to: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = netns::try_exec(from, &["ping", "-c", "1", "-W", "1", to], SHORT).unwrap();
        if o.success() {
            return;
        }
        assert!(Instant::now() < deadline, "{from} cannot ping {to}: {o}");
    }
}

const CANCELLED: &str = "watch cancelled; listing again";
const JOINED: &str = "joined the cluster";

#[test]
fn a_watch_cancelled_for_a_compaction_lists_again_in_the_same_session_and_converges() {
    let mut lab = Lab::new("w");
    let (n1, n2) = (lab.node(1), lab.node(2));
    lab.nodes[n2].vsctl_ok(&["add-overlay", "ov1", "--subnet", "10.96.0.0/24"]);
    lab.nodes[n2].vsctl_ok(&["add-overlay", "gone", "--subnet", "10.97.0.0/24"]);
    let (_, _, mac_a) = lab.attach(n2, "ov1", "c2a");
    wait_until("n1 carries both overlays and sees c2a", SHORT, || {
        carried(&lab.nodes[n1]) == BTreeSet::from(["ov1".into(), "gone".into()])
            && remote_macs(&lab.nodes[n1], "ov1").contains(&mac_a)
    });
    let (cancelled, joined) = (
        count(&lab.nodes[n1], CANCELLED),
        count(&lab.nodes[n1], JOINED),
    );

    // n1 paused: its watch stream stalls, and etcd, unable to deliver, keeps its events
    // for later (the watcher is behind).
    let paused = Instant::now();
    testlab::stop::kill(lab.nodes[n1].pid(), SIGSTOP);
    let o = netns::try_exec(
        &lab.name("u"),
        &["python3", "-c", FILLER, &lab.etcd().endpoint, "400"],
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(o.success(), "filler: {o}");
    // What n1 must catch up on, none of which it sees as an event.
    let (c2b, ip_b, mac_b) = lab.attach(n2, "ov1", "c2b");
    lab.nodes[n2].vsctl_ok(&["detach", "ov1", &lab.name("c2a")]);
    lab.nodes[n2].vsctl_ok(&["add-overlay", "ov3", "--subnet", "10.98.0.0/24"]);
    lab.nodes[n2].vsctl_ok(&["del-overlay", "gone"]);
    // Compacted past every revision n1 was sent: its watch cannot resume.
    let rev = lab.revision();
    let o = lab.etcd().etcdctl(&["compact", &rev.to_string()]).unwrap();
    assert!(o.success(), "{o}");
    let pause = paused.elapsed();
    assert!(
        pause < Duration::from_secs(TTL / 2),
        "paused {pause:?}: too close to the lease TTL ({TTL} s) to tell the paths apart"
    );
    testlab::stop::kill(lab.nodes[n1].pid(), SIGCONT);

    let sw1 = &lab.nodes[n1];
    wait_until("etcd cancels n1's watch and n1 lists again", SHORT, || {
        count(sw1, CANCELLED) > cancelled
    });
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
    let (c1, ip1, _) = lab.attach(n1, "ov1", "c1");
    ping(&c1, &ip_b);
    ping(&c2b, &ip1);
}
