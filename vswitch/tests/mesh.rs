//! The routing mesh across hosts: two `vswitchd` nodes on one real `etcd` (the
//! etcd-underlay lab of [`common::cluster`]), an overlay whose service is created on
//! one node and stored in etcd, its backends (python servers in containers) only on
//! host B. Published once, the port answers on both hosts' uplinks: a connection to
//! host A's uplink reaches a backend on B over the overlay and its replies come back
//! through A (the backend sees A's mesh address), one to B's uplink sees B's; a
//! container on A reaches the VIP with its own address kept and resolves the service
//! by name; bad requests are refused in one line with the store unchanged; del-service
//! on one node removes it everywhere; a node killed with `kill -9` serves the service
//! again after a restart, from etcd. UDP too: a published UDP service answers
//! datagrams through either host's uplink from the published address, each client
//! port sticking to one backend on B, and with no healthy backend a datagram gets ICMP
//! port unreachable at once.
//!
//! Addresses, inside the test's namespaces only: underlay 198.51.100.0/24, the
//! overlay 10.71.0.0/24 (VIP .100), uplinks 192.0.2.0/24 (A) and 192.0.3.0/24 (B),
//! each towards one namespace `wan` at .254.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::*;
use ctl::service::ServiceInfo;
use ctl::Data;
use testlab::{netns, wait_until, Bg, Switchd, LONG, SHORT};

const OV: &str = "mov";
const SUBNET: &str = "10.71.0.0/24";
const VIP: &str = "10.71.0.100";
const PORT: &str = "8080";

/// A TCP server that answers each connection with its name and the peer's address,
/// and survives health checks that reset.
const SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2])))
s.listen(64)
print("listening", flush=True)
while True:
    c, a = s.accept()
    try:
        c.sendall(("%s %s\n" % (sys.argv[1], a[0])).encode())
    except OSError:
        pass
    c.close()
"#;

/// Connects to ADDR PORT and prints what the server said ("NAME PEER").
const CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
data = b""
while True:
    d = s.recv(100)
    if not d:
        break
    data += d
print(data.decode().strip())
"#;

/// Asks SERVER (UDP 53) for the A records of NAME; prints them, space-separated.
const DIG: &str = r#"
import socket, struct, sys
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
for l in sys.argv[2].split("."):
    q += bytes([len(l)]) + l.encode()
q += b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, (sys.argv[1], 53))
r, _ = s.recvfrom(4096)
an = struct.unpack(">H", r[6:8])[0]
i = len(q)
out = []
for _ in range(an):
    if r[i] & 0xC0 == 0xC0:
        i += 2
    else:
        while r[i]:
            i += r[i] + 1
        i += 1
    t, _, _, n = struct.unpack(">HHIH", r[i:i + 10])
    i += 10
    if t == 1 and n == 4:
        out.append(socket.inet_ntoa(r[i:i + 4]))
    i += n
print(" ".join(out))
"#;

/// A UDP service: answers each datagram with "NAME PEER PAYLOAD" to its sender, and
/// accepts (and closes) TCP connections on the same port for the health checks.
const UDP_SERVER: &str = r#"
import socket, sys, threading
port = int(sys.argv[2])
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port))
t.listen(64)
def health():
    while True:
        c, _ = t.accept()
        c.close()
threading.Thread(target=health, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", port))
print("listening", flush=True)
while True:
    d, a = u.recvfrom(2048)
    u.sendto(("%s %s %s" % (sys.argv[1], a[0], d.decode(errors="replace"))).encode(), a)
"#;

/// `ADDR PORT SOCKETS DATAGRAMS`: from SOCKETS sockets (each its own source port), sends
/// DATAGRAMS datagrams each and waits for every answer (a datagram unanswered after
/// 1 s is sent again, three times at most: UDP may lose the first one of a flow while
/// an address is resolved). Prints one JSON object per socket: its source port, the
/// addresses the answers came from, and "NAME PEER" of each answer.
const UDP_CLIENT: &str = r#"
import json, socket, sys
addr, port, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.settimeout(1)
    froms, answers, resent = set(), [], 0
    for j in range(k):
        msg = "s%d-d%d" % (i, j)
        for attempt in range(4):
            s.sendto(msg.encode(), (addr, port))
            try:
                while True:
                    d, a = s.recvfrom(2048)
                    name, peer, payload = d.decode().split(" ", 2)
                    if payload == msg:
                        break
                froms.add("%s:%d" % a)
                answers.append(name + " " + peer)
                break
            except socket.timeout:
                resent += 1
        else:
            answers.append("none")
    print(json.dumps({"sport": s.getsockname()[1], "froms": sorted(froms), "answers": answers, "resent": resent}), flush=True)
    s.close()
"#;

/// `ADDR PORT`: one datagram on a connected socket; prints `{"refused": B, "secs": S,
/// "error": E}` (refused: an ICMP port unreachable came back).
const UDP_REFUSE: &str = r#"
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect((sys.argv[1], int(sys.argv[2])))
t0 = time.time()
refused, err = False, ""
try:
    s.send(b"x")
    s.recv(64)
    err = "answered"
except ConnectionRefusedError:
    refused = True
except Exception as e:
    err = repr(e)
print(json.dumps({"refused": refused, "secs": time.time() - t0, "error": err}))
"#;

fn python() -> String {
    testlab::which("python3")
        .unwrap_or_else(|| panic!("python3 is needed"))
        .display()
        .to_string()
}

/// The two-node lab: etcd, nodes n1 (A) and n2 (B) with uplinks towards `wan`, and
/// overlay [`OV`] carried by both.
struct Mesh {
    lab: Lab,
    wan: String,
    servers: Vec<Bg>,
}

impl Mesh {
    fn new(tag: &str) -> Mesh {
        testlab::require_tools(&["python3"]);
        let mut lab = Lab::with_nodes(tag, 2);
        let wan = lab.wan();
        lab.overlay_everywhere(OV, SUBNET);
        Mesh {
            lab,
            wan,
            servers: Vec::new(),
        }
    }

    /// A container on node `i` attached to the overlay with an address from the
    /// cluster: its namespace and address.
    fn container(&mut self, tag: &str, i: usize) -> (String, String) {
        let c = self.lab.name(tag);
        self.lab.ns.add(&c);
        let (ip, _) = attach_auto(&self.lab.nodes[i].sw, OV, &c);
        (c, ip)
    }

    /// Backend `name` on node `i`: a container with a server on [`PORT`]; its address.
    fn backend(&mut self, name: &str, i: usize) -> String {
        self.serving(name, i, SERVER, "srv", PORT)
    }

    /// Backend `name` on node `i` serving UDP (and TCP health checks) on `port`.
    fn udp_backend(&mut self, name: &str, i: usize, port: &str) -> String {
        self.serving(name, i, UDP_SERVER, "udp", port)
    }

    /// A container `name` on node `i` running python `script` (logged as `log-name`)
    /// on `port`, once it says it listens; its address.
    fn serving(&mut self, name: &str, i: usize, script: &str, log: &str, port: &str) -> String {
        let (c, ip) = self.container(name, i);
        let py = python();
        let argv = netns::exec_argv(&c, &[&py, "-u", "-c", script, name, port]);
        let mut bg = Bg::spawn(&self.lab.dir, &format!("{log}-{name}"), &argv);
        bg.wait_output("listening", Duration::from_secs(10));
        self.servers.push(bg);
        ip
    }

    /// What [`UDP_CLIENT`] printed for `sockets` sockets of `datagrams` datagrams each
    /// from namespace `from` to `addr`:`port`, one object per socket.
    fn udp(
        &self,
        from: &str,
        addr: &str,
        port: &str,
        sockets: u32,
        datagrams: u32,
    ) -> Vec<serde_json::Value> {
        let py = python();
        let (n, k) = (sockets.to_string(), datagrams.to_string());
        let o = netns::try_exec(from, &[&py, "-c", UDP_CLIENT, addr, port, &n, &k], LONG).unwrap();
        assert!(o.success(), "udp client: {o}");
        o.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("client printed {l:?}: {e}"))
            })
            .collect()
    }

    /// "NAME PEER" from a connection out of namespace `from` to `addr`:[`PORT`].
    fn connect(&self, from: &str, addr: &str) -> (String, String) {
        let py = python();
        let o = netns::try_exec(from, &[&py, "-c", CLIENT, addr, PORT], SHORT).unwrap();
        if !o.success() {
            let mut d = String::new();
            for n in &self.lab.nodes {
                for args in [&["ct-show"][..], &["stats"][..], &["fdb-show", OV][..]] {
                    d.push_str(&format!("== {} {args:?}\n{}\n", n.name, n.sw.vsctl(args)));
                }
            }
            panic!("{from} -> {addr}:{PORT}: {o}\n{d}");
        }
        let line = o.stdout.trim().to_string();
        let (name, peer) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("server said {line:?}"));
        (name.to_string(), peer.to_string())
    }

    fn sw(&self, i: usize) -> &Switchd {
        &self.lab.nodes[i].sw
    }
}

fn services(sw: &Switchd) -> Vec<ServiceInfo> {
    match sw.vsctl_json(&["list-services"]) {
        Data::Services { services } => services,
        other => panic!("list-services --json returned {other:?}"),
    }
}

/// Whether `sw` has service `web` with exactly `backends`, every one up.
fn serves(sw: &Switchd, backends: &BTreeSet<String>) -> bool {
    services(sw).iter().any(|s| {
        s.name == "web"
            && s.bridge == OV
            && s.backends
                .iter()
                .map(|b| b.backend.clone())
                .collect::<BTreeSet<_>>()
                == *backends
            && s.backends.iter().all(|b| b.health == "up")
    })
}

fn published(sw: &Switchd) -> Vec<(u16, String)> {
    match sw.vsctl_json(&["list-published"]) {
        Data::Published { published } => published
            .into_iter()
            .map(|p| (p.host_port, p.target))
            .collect(),
        other => panic!("list-published --json returned {other:?}"),
    }
}

/// Node `node`'s mesh address in the overlay, as the store holds it.
fn mesh_addr(lab: &Lab, node: &str) -> Option<String> {
    store_keys(lab, &format!("/vswitch/v1/ipam/{OV}/"))
        .into_iter()
        .find(|(_, v)| v.contains(&format!("\"container\":\"mesh:{node}\"")))
        .map(|(k, _)| k.rsplit('/').next().unwrap().to_string())
}

/// Both nodes' mesh addresses, once each has claimed one.
fn mesh_addrs(lab: &Lab) -> Vec<String> {
    ["n1", "n2"]
        .iter()
        .map(|n| {
            wait_until(&format!("{n} claims a mesh address"), SHORT, || {
                mesh_addr(lab, n).is_some()
            });
            mesh_addr(lab, n).unwrap()
        })
        .collect()
}

fn add_web(sw: &Switchd, backends: &[String]) {
    let mut args = vec!["add-service", OV, "web", "--vip", VIP, "--port", "tcp:8080"];
    for b in backends {
        args.extend(["--backend", b.as_str()]);
    }
    sw.vsctl_ok(&args);
}

#[test]
fn a_service_published_once_answers_on_every_hosts_uplink() {
    let mut m = Mesh::new("m");
    let b1 = m.backend("b1", 1);
    let b2 = m.backend("b2", 1);
    let (client, client_ip) = m.container("ca", 0);
    let want: BTreeSet<String> = [b1.clone(), b2.clone()].into();

    // Created on A, installed on both; A's gateway checks B's backends from its mesh
    // address, so they are up there too.
    add_web(m.sw(0), &[b1.clone(), b2.clone()]);
    for i in 0..2 {
        let sw = m.sw(i);
        wait_until(
            &format!("node {i} serves web, backends up"),
            SHORT * 2,
            || serves(sw, &want),
        );
    }
    let keys = store_keys(&m.lab, "/vswitch/v1/services/");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].0, format!("/vswitch/v1/services/{OV}/web"));
    let mesh = mesh_addrs(&m.lab);
    assert_ne!(mesh[0], mesh[1]);

    // Bad input: one line, nothing stored.
    let before = store_keys(&m.lab, "/vswitch/v1/services/");
    let sw1 = m.sw(1);
    refused(
        sw1,
        &[
            "add-service",
            OV,
            "web",
            "--vip",
            "10.71.0.101",
            "--backend",
            &b1,
        ],
        "already has a service web",
    );
    refused(
        sw1,
        &[
            "add-service",
            OV,
            "web2",
            "--vip",
            "10.72.0.5",
            "--backend",
            &b1,
        ],
        "VIP",
    );
    refused(
        sw1,
        &["add-service", OV, "web2", "--vip", VIP, "--backend", &b1],
        "VIP 10.71.0.100 is already service web's",
    );
    refused(
        sw1,
        &["set-backends", OV, "nope", &b1],
        "has no service nope",
    );
    refused(sw1, &["publish", "tcp", PORT, "service:nope"], "no service");
    assert_eq!(store_keys(&m.lab, "/vswitch/v1/services/"), before);

    // Published once (on B), the port answers on both uplinks.
    m.sw(1).vsctl_ok(&["publish", "tcp", PORT, "service:web"]);
    for i in 0..2 {
        let sw = m.sw(i);
        wait_until(&format!("node {i} publishes {PORT}"), SHORT, || {
            published(sw) == vec![(8080, format!("service:web ({VIP}:{PORT})"))]
        });
    }
    refused(
        m.sw(0),
        &["publish", "tcp", PORT, "service:web"],
        "tcp/8080 is already published",
    );
    for (i, mesh) in mesh.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for _ in 0..6 {
            let (name, peer) = m.connect(&m.wan, &uplink(i));
            // The backend on B sees the mesh address of the node the client reached,
            // which is where its replies go back through.
            assert_eq!(&peer, mesh, "via node {i}");
            seen.insert(name);
        }
        assert_eq!(seen, ["b1", "b2"].map(String::from).into(), "via node {i}");
    }

    // A container on A: the VIP (its own address kept) and the service's name.
    let (_, peer) = m.connect(&client, VIP);
    assert_eq!(peer, client_ip);
    let py = python();
    let o = netns::try_exec(&client, &[&py, "-c", DIG, "10.71.0.1", "web"], SHORT).unwrap();
    assert_eq!(o.stdout.trim(), VIP, "{o}");

    // Published, it cannot go; unpublished and deleted on one node, it goes everywhere.
    refused(m.sw(0), &["del-service", OV, "web"], "unpublish it first");
    m.sw(0).vsctl_ok(&["unpublish", "tcp", PORT]);
    for i in 0..2 {
        let sw = m.sw(i);
        wait_until(&format!("node {i} unpublishes"), SHORT, || {
            published(sw).is_empty()
        });
    }
    m.sw(1).vsctl_ok(&["set-backends", OV, "web", &b2]);
    let only: BTreeSet<String> = [b2.clone()].into();
    wait_until("node 0 follows set-backends", SHORT, || {
        serves(m.sw(0), &only)
    });
    m.sw(1).vsctl_ok(&["del-service", OV, "web"]);
    for i in 0..2 {
        let sw = m.sw(i);
        wait_until(&format!("node {i} drops web"), SHORT, || {
            services(sw).is_empty()
        });
    }
    assert!(store_keys(&m.lab, "/vswitch/v1/services/").is_empty());
    let o = netns::try_exec(&client, &[&py, "-c", DIG, "10.71.0.1", "web"], SHORT).unwrap();
    assert_eq!(o.stdout.trim(), "", "{o}");
    // Without services, the nodes give their mesh addresses back.
    wait_until("mesh addresses released", SHORT, || {
        mesh_addr(&m.lab, "n1").is_none() && mesh_addr(&m.lab, "n2").is_none()
    });
}

#[test]
fn a_killed_node_serves_the_cluster_service_again_after_a_restart() {
    let mut m = Mesh::new("k");
    let b1 = m.backend("b1", 1);
    let want: BTreeSet<String> = [b1.clone()].into();
    add_web(m.sw(1), &[b1]);
    m.sw(1).vsctl_ok(&["publish", "tcp", PORT, "service:web"]);
    wait_until("node 0 serves web", SHORT * 2, || serves(m.sw(0), &want));
    wait_until("node 0 publishes", SHORT, || !published(m.sw(0)).is_empty());
    wait_until("n1 claims a mesh address", SHORT, || {
        mesh_addr(&m.lab, "n1").is_some()
    });
    let a_mesh = mesh_addr(&m.lab, "n1").unwrap();
    assert_eq!(m.connect(&m.wan, &uplink(0)).1, a_mesh);

    // The store away: cluster changes are refused, nothing changes.
    m.lab.etcd.as_mut().unwrap().kill();
    refused(
        m.sw(0),
        &[
            "add-service",
            OV,
            "web2",
            "--vip",
            "10.71.0.101",
            "--backend",
            "10.71.0.50",
        ],
        "cluster store unreachable",
    );
    refused(
        m.sw(0),
        &["set-backends", OV, "web", "10.71.0.50"],
        "cluster store unreachable",
    );
    assert!(
        serves(m.sw(0), &want),
        "a refused change changed the service"
    );
    m.lab.etcd.as_mut().unwrap().restart().unwrap();
    wait_until("both nodes connected again", SHORT * 2, || {
        (0..2).all(|i| {
            matches!(m.sw(i).vsctl_json(&["list-nodes"]), Data::Nodes { store, .. } if store == "connected")
        })
    });

    // kill -9 of A, and a restart from its config: the service and its publication
    // are there again, and a connection to A's uplink reaches B's backend.
    m.lab.nodes[0].sw.signal(testlab::stop::SIGKILL, SHORT);
    m.lab.nodes[0].sw.daemon_args = vec!["--workers".into(), "1".into()];
    m.lab.nodes[0].sw.start();
    wait_until("node 0 serves web again", SHORT * 2, || {
        serves(m.sw(0), &want)
    });
    let deadline = Instant::now() + SHORT;
    loop {
        let py = python();
        let o = netns::try_exec(&m.wan, &[&py, "-c", CLIENT, &uplink(0), PORT], SHORT).unwrap();
        if o.success() && o.stdout.starts_with("b1 ") {
            assert_eq!(o.stdout.trim(), format!("b1 {a_mesh}"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer through the restarted node: {o}\n{}",
            m.lab.diag()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `sw` has service `name` with `backends` backends, every one `health`.
fn backends_are(sw: &Switchd, name: &str, backends: usize, health: &str) -> bool {
    services(sw).iter().any(|s| {
        s.name == name
            && s.backends.len() == backends
            && s.backends.iter().all(|b| b.health == health)
    })
}

#[test]
fn a_udp_service_published_once_answers_on_every_hosts_uplink() {
    const UPORT: &str = "9053";
    let mut m = Mesh::new("u");
    let b1 = m.udp_backend("b1", 1, UPORT);
    let b2 = m.udp_backend("b2", 1, UPORT);
    m.sw(0).vsctl_ok(&[
        "add-service",
        OV,
        "echo",
        "--vip",
        VIP,
        "--port",
        "udp:9053",
        "--backend",
        &b1,
        "--backend",
        &b2,
        "--health",
        "tcp:9053",
    ]);
    m.sw(0).vsctl_ok(&["publish", "udp", UPORT, "service:echo"]);
    for i in 0..2 {
        let sw = m.sw(i);
        wait_until(
            &format!("node {i} serves echo, backends up"),
            SHORT * 2,
            || backends_are(sw, "echo", 2, "up"),
        );
        wait_until(&format!("node {i} publishes udp {UPORT}"), SHORT, || {
            published(sw) == vec![(9053, format!("service:echo ({VIP}:{UPORT})"))]
        });
    }
    let mesh = mesh_addrs(&m.lab);

    // Eight client sockets (eight source ports) through each node's uplink, three
    // datagrams each: every answer comes from the published address, the backend (on
    // B) saw the mesh address of the node the client reached, a socket's datagrams stay
    // on one backend, and the sockets are spread over both.
    for (i, mesh) in mesh.iter().enumerate() {
        let up = uplink(i);
        let socks = m.udp(&m.wan, &up, UPORT, 8, 3);
        assert_eq!(socks.len(), 8, "via node {i}: {socks:?}");
        let mut seen = BTreeSet::new();
        let mut sports = BTreeSet::new();
        for s in &socks {
            sports.insert(s["sport"].as_u64().unwrap());
            assert_eq!(
                s["froms"],
                serde_json::json!([format!("{up}:{UPORT}")]),
                "via node {i}: {s}"
            );
            let answers: Vec<&str> = s["answers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(answers.len(), 3, "{s}");
            assert!(
                answers.iter().all(|a| *a == answers[0]),
                "one socket's datagrams went to several backends (or none): {s}"
            );
            let (name, peer) = answers[0].split_once(' ').unwrap();
            assert_eq!(peer, mesh, "via node {i}: {s}");
            seen.insert(name.to_string());
        }
        assert_eq!(sports.len(), 8, "{socks:?}");
        let resent: u64 = socks.iter().map(|s| s["resent"].as_u64().unwrap()).sum();
        eprintln!("via node {i}: 24 datagrams from 8 ports answered by {seen:?}, {resent} resent");
        assert_eq!(seen, ["b1", "b2"].map(String::from).into(), "via node {i}");
    }

    // No healthy backend: a datagram to either uplink gets ICMP port unreachable at
    // once.
    m.servers.clear();
    for i in 0..2 {
        let sw = m.sw(i);
        wait_until(&format!("node {i} sees both backends down"), SHORT, || {
            backends_are(sw, "echo", 2, "down")
        });
    }
    let py = python();
    for i in 0..2 {
        let o =
            netns::try_exec(&m.wan, &[&py, "-c", UDP_REFUSE, &uplink(i), UPORT], SHORT).unwrap();
        let r: serde_json::Value = serde_json::from_str(o.stdout.trim())
            .unwrap_or_else(|e| panic!("refuse printed {o}: {e}"));
        eprintln!("via node {i} with no healthy backend: {r}");
        assert_eq!(r["refused"], true, "via node {i}: {r}");
        assert!(r["secs"].as_f64().unwrap() < 0.5, "via node {i}: {r}");
    }
}
