//! The etcd-underlay lab of the cluster tests: one real `etcd` on an underlay (a Linux
//! bridge `ul` in a namespace of its own, at [`ETCD_IP`]), host namespaces `hN` on it at
//! 198.51.100.N, each with its own `vswitchd` joined to the cluster, and containers
//! plugged into the nodes' bridges. Everything it made goes when it drops (daemons and
//! etcd first); on a panic it prints every node's log and etcd's first.
//!
//! Addresses, inside the lab's namespaces only: underlay 198.51.100.0/24.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ctl::{Data, NodeInfo, OverlayInfo};
use testlab::etcd::Etcd;
use testlab::{netns, wait_until, Bins, Namespaces, Switchd, SHORT};

pub const ETCD_IP: &str = "198.51.100.254";
/// Lease TTL of the test nodes, seconds.
pub const TTL: u64 = 3;
/// Linux's SIGSTOP and SIGCONT.
pub const SIGSTOP: i32 = 19;
pub const SIGCONT: i32 = 18;

pub fn bins() -> Bins {
    Bins::beside(Path::new(env!("CARGO_BIN_EXE_vswitchd")))
}

pub static SEQ: AtomicU32 = AtomicU32::new(0);

/// One test's network: the underlay namespace (bridge `ul`, etcd's address) and the
/// directory for files; namespaces, daemons and etcd go when it drops.
pub struct Lab {
    pub prefix: String,
    pub dir: PathBuf,
    // Drop order: daemons and etcd first (fields drop in order), then namespaces.
    pub nodes: Vec<Node>,
    pub etcd: Option<Etcd>,
    pub ns: Namespaces,
}

pub struct Node {
    pub name: String,
    pub ns: String,
    pub vtep: String,
    pub sw: Switchd,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        testlab::require_root();
        testlab::require_tools(&["ip", "ping", "etcd", "etcdctl", "openssl", "ss"]);
        let prefix = format!(
            "cl{}{}{}",
            tag,
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
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
        netns::addressed_bridge(&u, "ul", &format!("{ETCD_IP}/24")).unwrap();
        lab
    }

    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    pub fn underlay(&self) -> String {
        self.name("u")
    }

    /// A lab with etcd on its underlay and nodes n1…n`count` joined to it.
    pub fn with_nodes(tag: &str, count: u8) -> Lab {
        let mut lab = Lab::new(tag);
        let etcd = Etcd::start(&lab.underlay(), ETCD_IP, &lab.dir.join("etcd"), None).unwrap();
        let store = etcd.store_url();
        lab.etcd = Some(etcd);
        for n in 1..=count {
            lab.node(n, &store, &[]);
        }
        lab
    }

    /// The URL of the lab's etcd (empty before it started).
    pub fn store(&self) -> String {
        self.etcd.as_ref().map(Etcd::store_url).unwrap_or_default()
    }

    /// A `wan` namespace with every node's uplink `up0` on it (node `i` at [`uplink`],
    /// the wan's side at .254 of that /24); returns the namespace.
    pub fn wan(&mut self) -> String {
        let wan = self.name("wan");
        self.ns.add(&wan);
        for (i, node) in self.nodes.iter().enumerate() {
            let side = format!("w{i}");
            netns::veth(&node.ns, "up0", &wan, &side).unwrap();
            netns::link_up(&node.ns, "up0").unwrap();
            netns::addr_add(&wan, &side, &format!("192.0.{}.254/24", i + 2)).unwrap();
            netns::link_up(&wan, &side).unwrap();
            node.sw
                .vsctl_ok(&["set-uplink", "up0", "--ip", &format!("{}/24", uplink(i))]);
        }
        wan
    }

    /// Overlay `ov` on `subnet`, added on the first node; returns once every node's
    /// tunnel for it reaches every other node.
    pub fn overlay_everywhere(&self, ov: &str, subnet: &str) {
        self.nodes[0]
            .sw
            .vsctl_ok(&["add-overlay", ov, "--subnet", subnet]);
        for (i, n) in self.nodes.iter().enumerate() {
            let others: BTreeSet<String> = (self.nodes.iter().enumerate())
                .filter(|(j, _)| *j != i)
                .map(|(_, m)| m.vtep.clone())
                .collect();
            wait_until(&format!("{} carries {ov}", n.name), SHORT, || {
                remotes(&n.sw, ov).is_some_and(|r| others.is_subset(&r))
            });
        }
    }

    /// A host namespace `hN` on the underlay at 198.51.100.N (no daemon yet).
    pub fn host(&mut self, n: u8) -> (String, String) {
        let ns = self.name(&format!("h{n}"));
        self.ns.add(&ns);
        let u = self.underlay();
        let port = format!("u{n}");
        netns::veth(&ns, "eth0", &u, &port).unwrap();
        ip(&["-n", &u, "link", "set", &port, "master", "ul", "up"]);
        let vtep = format!("198.51.100.{n}");
        netns::addr_add(&ns, "eth0", &format!("{vtep}/24")).unwrap();
        netns::link_up(&ns, "eth0").unwrap();
        (ns, vtep)
    }

    /// Host `hN` with a vswitchd in the cluster of `store` (extra arguments after).
    pub fn node(&mut self, n: u8, store: &str, extra: &[String]) -> usize {
        self.node_ttl(n, store, TTL, extra)
    }

    /// [`Lab::node`] with a lease TTL of `ttl` seconds.
    pub fn node_ttl(&mut self, n: u8, store: &str, ttl: u64, extra: &[String]) -> usize {
        let (ns, vtep) = self.host(n);
        let name = format!("n{n}");
        let mut sw = Switchd::new(&name, &ns, &self.dir.join(&name), bins());
        sw.daemon_args = cluster_args(store, &name, &vtep);
        if let Some(t) = sw.daemon_args.iter().position(|a| a == "--cluster-ttl") {
            sw.daemon_args[t + 1] = ttl.to_string();
        }
        sw.daemon_args.extend(extra.iter().cloned());
        sw.start();
        self.nodes.push(Node { name, ns, vtep, sw });
        self.nodes.len() - 1
    }

    /// Container `cN` on node `i`: a namespace whose `eth0` (`ip`, MTU 1450) is plugged
    /// into bridge `br` of the node as port `cNp`.
    pub fn container(&mut self, n: u8, i: usize, br: &str, ip_cidr: &str) -> String {
        let c = self.name(&format!("c{n}"));
        self.ns.add(&c);
        let node = &self.nodes[i];
        let port = format!("c{n}p");
        netns::veth(&c, "eth0", &node.ns, &port).unwrap();
        netns::addr_add(&c, "eth0", ip_cidr).unwrap();
        ip(&["-n", &c, "link", "set", "eth0", "mtu", "1450", "up"]);
        netns::link_up(&node.ns, &port).unwrap();
        node.sw.vsctl_ok(&["add-port", br, &port]);
        c
    }

    pub fn diag(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            s.push_str(&n.sw.log_text());
            s.push('\n');
        }
        if let Some(e) = &self.etcd {
            s.push_str(&format!("===== etcd log =====\n{}\n", e.log_tail()));
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diag());
        }
        for n in &mut self.nodes {
            // A node left paused (SIGSTOP) by a failed test must still be stoppable.
            if n.sw.running() {
                testlab::stop::kill(n.sw.pid(), SIGCONT);
            }
            n.sw.stop();
        }
        self.etcd = None;
        let left = self.ns.remove();
        if !left.is_empty() {
            eprintln!("could not remove namespaces {left:?}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn ip(args: &[&str]) {
    netns::ip(args)
        .and_then(|o| o.must())
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Node `i`'s uplink address on the lab's [`Lab::wan`].
pub fn uplink(i: usize) -> String {
    format!("192.0.{}.1", i + 2)
}

pub fn cluster_args(store: &str, node: &str, vtep: &str) -> Vec<String> {
    [
        "--workers",
        "1",
        "--cluster-store",
        store,
        "--cluster-advertise",
        vtep,
        "--node",
        node,
        "--cluster-ttl",
        &TTL.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn nodes(sw: &Switchd) -> Vec<NodeInfo> {
    match sw.vsctl_json(&["list-nodes"]) {
        Data::Nodes { nodes, .. } => nodes,
        other => panic!("list-nodes --json returned {other:?}"),
    }
}

pub fn overlays(sw: &Switchd) -> Vec<OverlayInfo> {
    match sw.vsctl_json(&["list-overlays"]) {
        Data::Overlays { overlays, .. } => overlays,
        other => panic!("list-overlays --json returned {other:?}"),
    }
}

/// The remotes of the VXLAN port of overlay bridge `br` on `sw` (from `show`), or None
/// if the bridge or its tunnel is missing.
pub fn remotes(sw: &Switchd, br: &str) -> Option<BTreeSet<String>> {
    let b = sw.show().into_iter().find(|b| b.name == br)?;
    let t = b.ports.iter().find_map(|p| p.tunnel.clone())?;
    Some(t.remotes.into_iter().map(|r| r.ip).collect())
}

/// `vsctl ARGS` must fail with exactly one line on stderr containing `want`.
pub fn refused(sw: &Switchd, args: &[&str], want: &str) {
    let o = sw.vsctl(args);
    assert!(!o.success(), "vsctl {args:?} succeeded: {o}");
    let e = o.stderr.trim();
    assert_eq!(e.lines().count(), 1, "not one line: {o}");
    assert!(
        e.contains(want),
        "vsctl {args:?}: wanted {want:?}, got {e:?}"
    );
}

/// [`refused`], and answered within 6 s: a cluster request's deadline (4 s) and the
/// daemon's own wait for it, with room for a loaded host.
pub fn refused_in_time(sw: &Switchd, args: &[&str], want: &str) {
    let t = Instant::now();
    refused(sw, args, want);
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "vsctl {args:?} took {:?}",
        t.elapsed()
    );
}

/// Pings `to` from namespace `from` until one echo comes back (deadline 10 s).
pub fn ping(from: &str, to: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = netns::try_exec(from, &["ping", "-c", "1", "-W", "1", to], SHORT).unwrap();
        if o.success() {
            return;
        }
        assert!(Instant::now() < deadline, "{from} cannot ping {to}: {o}");
    }
}

/// Runs vswitchd in `ns` with `args` until it exits (it must, within the join deadline):
/// its exit status and stderr.
pub fn vswitchd_once(lab: &Lab, ns: &str, tag: &str, args: &[String]) -> testlab::Out {
    let d = lab.dir.join(tag);
    std::fs::create_dir_all(&d).unwrap();
    let sock = d.join("sock").display().to_string();
    let db = d.join("conf.json").display().to_string();
    let bin = env!("CARGO_BIN_EXE_vswitchd");
    let mut argv = vec![bin, "--sock", &sock, "--db", &db];
    argv.extend(args.iter().map(String::as_str));
    let o = netns::try_exec(ns, &argv, Duration::from_secs(30)).unwrap();
    assert!(
        !d.join("conf.json").exists()
            || !std::fs::read_to_string(d.join("conf.json"))
                .unwrap()
                .contains("cluster"),
        "a refused node kept cluster settings"
    );
    o
}

/// Container `name` on node `i`: a namespace plugged into overlay `ov` by `vsctl attach`
/// without `--ip`; the address and MAC the cluster gave it, as `attach` printed them.
pub fn attach_auto(sw: &Switchd, ov: &str, ns: &str) -> (String, String) {
    let out = sw.vsctl_ok(&["attach", ov, ns, "--mtu", "1450"]);
    let mut w = out.split_whitespace();
    let (Some(ip), Some(mac)) = (w.next(), w.next()) else {
        panic!("attach printed {out:?}")
    };
    (ip.split('/').next().unwrap().to_string(), mac.to_string())
}

/// The keys under `prefix` in the store, each with its value.
pub fn store_keys(lab: &Lab, prefix: &str) -> Vec<(String, String)> {
    let o = lab
        .etcd
        .as_ref()
        .unwrap()
        .etcdctl(&["get", "--prefix", prefix])
        .unwrap();
    assert!(o.success(), "{o}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}
