//! `vswitch-cni` on a cluster overlay, against real daemons: one etcd on an underlay
//! namespace, two vswitchd nodes joined to it (each in its own namespace, as
//! `vswitch/tests/common/cluster.rs` builds them), overlay `ov` added once:
//!
//! - ADD on each node (no IPAM plugin) gets two distinct addresses of the overlay from
//!   the cluster, the overlay's gateway as default route and MTU 1450; the containers
//!   ping each other across the nodes; CHECK passes;
//! - DEL on one node frees its claim in etcd (`/vswitch/v1/ipam/ov/`), the next ADD
//!   there gets the address again, and a repeated DEL succeeds;
//! - an overlay the cluster does not have is code 7, a vswitchd not in a cluster code 2.
//!
//! Addresses, inside the test's namespaces only: underlay 198.51.100.0/24 (etcd at .254,
//! node N at .N), overlay 10.98.0.0/24.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{plugin_in, wait_until, Call, CniLab, CNI_PATH};
use ctl::{Data, OverlayInfo};
use serde_json::{json, Value};
use testlab::etcd::Etcd;
use testlab::{netns, Bins, Namespaces, Switchd};

const ETCD_IP: &str = "198.51.100.254";
const OV: &str = "ov";
const SUBNET: &str = "10.98.0.0/24";
const GATEWAY: &str = "10.98.0.1";

static SEQ: AtomicU32 = AtomicU32::new(0);

struct Node {
    ns: String,
    vtep: String,
    sw: Switchd,
}

/// The test's etcd, nodes and namespaces. Dropped in field order: the daemons (each
/// stops its own, printing its log on a panic), then etcd, then the namespaces (with
/// whatever still runs in them).
struct ClusterLab {
    prefix: String,
    dir: PathBuf,
    nodes: Vec<Node>,
    plain: Option<Switchd>,
    etcd: Option<Etcd>,
    namespaces: Namespaces,
}

impl ClusterLab {
    /// etcd on the underlay and nodes n1…n`count` in the cluster.
    fn start(count: u8) -> ClusterLab {
        testlab::require_root();
        testlab::require_tools(&["ip", "ping", "etcd", "etcdctl", "ss"]);
        let prefix = format!(
            "co{}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("{prefix}.d"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = ClusterLab {
            prefix,
            dir,
            nodes: Vec::new(),
            plain: None,
            etcd: None,
            namespaces: Namespaces::new(),
        };
        let u = lab.name("u");
        lab.namespaces.add(&u);
        netns::addressed_bridge(&u, "ul", &format!("{ETCD_IP}/24")).unwrap();
        let etcd = Etcd::start(&u, ETCD_IP, &lab.dir.join("etcd"), None).unwrap();
        let store = etcd.store_url();
        lab.etcd = Some(etcd);
        for n in 1..=count {
            lab.node(n, &store);
        }
        lab
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    fn bins() -> Bins {
        Bins::beside(&common::bin_dir().join("vswitchd"))
    }

    /// Host namespace `hN` on the underlay at 198.51.100.N with a vswitchd joined to
    /// the cluster of `store` as node `nN`.
    fn node(&mut self, n: u8, store: &str) {
        let ns = self.name(&format!("h{n}"));
        self.namespaces.add(&ns);
        let u = self.name("u");
        let port = format!("u{n}");
        netns::veth(&ns, "eth0", &u, &port).unwrap();
        let o = netns::ip(&["-n", &u, "link", "set", &port, "master", "ul", "up"]).unwrap();
        assert!(o.success(), "{o}");
        let vtep = format!("198.51.100.{n}");
        netns::addr_add(&ns, "eth0", &format!("{vtep}/24")).unwrap();
        netns::link_up(&ns, "eth0").unwrap();
        let name = format!("n{n}");
        let mut sw = Switchd::new(&name, &ns, &self.dir.join(&name), Self::bins());
        sw.daemon_args = [
            "--workers",
            "1",
            "--cluster-store",
            store,
            "--cluster-advertise",
            &vtep,
            "--node",
            &name,
            "--cluster-ttl",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        sw.start();
        self.nodes.push(Node { ns, vtep, sw });
    }

    /// A vswitchd in a namespace of its own, in no cluster.
    fn plain(&mut self) -> &Switchd {
        let ns = self.name("plain");
        self.namespaces.add(&ns);
        let mut sw = Switchd::new("plain", &ns, &self.dir.join("plain"), Self::bins());
        sw.start();
        self.plain.insert(sw)
    }

    /// A "container" namespace.
    fn container(&mut self, what: &str) -> String {
        let ns = self.name(what);
        self.namespaces.add(&ns);
        ns
    }

    /// The addresses claimed in overlay `ov`, as etcd holds them.
    fn claims(&self) -> Vec<String> {
        let prefix = format!("/vswitch/v1/ipam/{OV}/");
        let o = self
            .etcd
            .as_ref()
            .unwrap()
            .etcdctl(&["get", "--prefix", &prefix, "--keys-only"])
            .unwrap();
        assert!(o.success(), "{o}");
        let mut v: Vec<String> = o
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix(&prefix))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }
}

impl Drop for ClusterLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(e) = &self.etcd {
                eprintln!("===== etcd log =====\n{}", e.log_tail());
            }
        }
        for n in &mut self.nodes {
            n.sw.stop();
        }
        if let Some(p) = &mut self.plain {
            p.stop();
        }
        self.etcd = None;
        let left = self.namespaces.remove();
        if !left.is_empty() {
            eprintln!("could not remove namespaces {left:?}");
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn overlays(sw: &Switchd) -> Vec<OverlayInfo> {
    match sw.vsctl_json(&["list-overlays"]) {
        Data::Overlays { overlays, .. } => overlays,
        other => panic!("list-overlays --json returned {other:?}"),
    }
}

/// The overlay's network configuration for the vswitchd at `sock`.
fn conf(sw: &Switchd, overlay: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "ovnet",
        "type": "vswitch",
        "overlay": overlay,
        "socket": sw.sock,
    })
}

/// `CNI_COMMAND=cmd` in `node_ns` (where its vswitchd runs) for container `id` in
/// namespace `ns`.
fn cni(lab: &ClusterLab, node_ns: &str, cmd: &str, id: &str, ns: &str, conf: &Value) -> Call {
    let path = CniLab::netns_path(ns);
    let env = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", path.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", CNI_PATH),
    ];
    plugin_in(node_ns, &lab.dir, &env, &conf.to_string())
}

fn address(r: &Value) -> String {
    r["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn bare(cidr: &str) -> String {
    cidr.split('/').next().unwrap_or_default().to_string()
}

/// Pings `to` from namespace `from` until an echo comes back (deadline 10 s: the first
/// echo may wait for the endpoints to reach the other node).
fn ping(from: &str, to: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = netns::try_exec(from, &["ping", "-c", "1", "-W", "1", to], testlab::SHORT).unwrap();
        if o.success() {
            return;
        }
        assert!(Instant::now() < deadline, "{from} cannot ping {to}: {o}");
    }
}

#[test]
fn overlay_networks_get_cluster_addresses_on_every_node() {
    let mut lab = ClusterLab::start(2);
    lab.nodes[0]
        .sw
        .vsctl_ok(&["add-overlay", OV, "--subnet", SUBNET]);
    for (i, n) in lab.nodes.iter().enumerate() {
        let other = &lab.nodes[1 - i].vtep;
        wait_until(
            &format!("{} carries {OV}", n.sw.name),
            Duration::from_secs(20),
            || {
                overlays(&n.sw).iter().any(|o| {
                    o.name == OV && o.bridge.as_deref() == Some(OV) && o.remotes.contains(other)
                })
            },
        );
    }
    let (c1, c2) = (lab.container("c1"), lab.container("c2"));
    let (h1, h2) = (lab.nodes[0].ns.clone(), lab.nodes[1].ns.clone());
    let conf1 = conf(&lab.nodes[0].sw, OV);
    let conf2 = conf(&lab.nodes[1].sw, OV);

    let a1 = cni(&lab, &h1, "ADD", "ctr-one", &c1, &conf1);
    assert!(a1.ok, "{}", a1.out);
    let a2 = cni(&lab, &h2, "ADD", "ctr-two", &c2, &conf2);
    assert!(a2.ok, "{}", a2.out);
    let (r1, r2) = (a1.json, a2.json);
    let (ip1, ip2) = (address(&r1), address(&r2));
    for (r, ip) in [(&r1, &ip1), (&r2, &ip2)] {
        assert!(ip.starts_with("10.98.0.") && ip.ends_with("/24"), "{r}");
        assert_eq!(r["ips"][0]["gateway"], GATEWAY, "{r}");
        assert_eq!(r["routes"][0]["gw"], GATEWAY, "{r}");
        assert_eq!(r["cniVersion"], "1.0.0", "{r}");
    }
    assert_ne!(ip1, ip2);
    assert_eq!(
        lab.claims(),
        {
            let mut v = vec![bare(&ip1), bare(&ip2)];
            v.sort();
            v
        },
        "etcd's claims"
    );
    // The container's side: the cluster's MAC, the overlay's MTU and default route.
    let mac = r1["interfaces"][1]["mac"].as_str().unwrap_or_default();
    assert_eq!(netns::mac(&c1, "eth0").unwrap(), mac);
    let link = netns::try_exec(&c1, &["ip", "link", "show", "eth0"], testlab::SHORT).unwrap();
    assert!(link.stdout.contains("mtu 1450"), "{link}");
    let route = netns::try_exec(&c1, &["ip", "route"], testlab::SHORT).unwrap();
    assert!(
        route
            .stdout
            .contains(&format!("default via {GATEWAY} dev eth0")),
        "{route}"
    );

    // Across the nodes, both ways.
    ping(&c1, &bare(&ip2));
    ping(&c2, &bare(&ip1));

    let mut check = conf1.clone();
    check["prevResult"] = r1.clone();
    let c = cni(&lab, &h1, "CHECK", "ctr-one", &c1, &check);
    assert!(c.ok, "{}", c.out);

    // DEL frees the claim in etcd; the address is handed out again; DEL twice is fine.
    for _ in 0..2 {
        let d = cni(&lab, &h1, "DEL", "ctr-one", &c1, &conf1);
        assert!(d.ok && d.json.is_null(), "{}", d.out);
        assert_eq!(lab.claims(), vec![bare(&ip2)], "etcd's claims after DEL");
    }
    assert!(!netns::link_exists(&c1, "eth0").unwrap());
    let c3 = lab.container("c3");
    let a3 = cni(&lab, &h1, "ADD", "ctr-three", &c3, &conf1);
    assert!(a3.ok, "{}", a3.out);
    assert_eq!(address(&a3.json), ip1, "{}", a3.out);
    ping(&c3, &bare(&ip2));

    // An overlay the cluster does not have.
    let c = cni(
        &lab,
        &h1,
        "ADD",
        "ctr-four",
        &c1,
        &conf(&lab.nodes[0].sw, "nosuch"),
    );
    assert_eq!(c.code(), 7, "{}", c.out);
    assert!(c.msg().contains("not known to the cluster"), "{}", c.out);

    // A vswitchd in no cluster.
    let plain_conf = conf(lab.plain(), OV);
    let plain_ns = lab.name("plain");
    let c = cni(&lab, &plain_ns, "ADD", "ctr-five", &c1, &plain_conf);
    assert_eq!(c.code(), 2, "{}", c.out);
    assert!(c.msg().contains("not in cluster mode"), "{}", c.out);
    assert!(!netns::link_exists(&c1, "eth0").unwrap());
}
