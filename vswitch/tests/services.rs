//! Services inside `vswitchd`: a VIP in a bridge network whose connections the gateway
//! spreads over healthy backends by conntrack DNAT (the backend sees the client's own
//! address), health checks from the gateway that take a dead backend out and put it
//! back, an immediate refusal (TCP reset, ICMP port unreachable) when no backend is
//! healthy, the service's name in the gateway's DNS (`vip` and `dnsrr`), a service
//! published on the uplink, a backend reaching its own service (never sent to itself),
//! connections to a backend taken out by `set-backends` that carry on, a backend's ICMP
//! port unreachable translated back to the client, and refused requests that change
//! nothing.
//!
//! Topology: the lab's switch namespace runs `vswitchd`; bridge `br0` has network
//! 10.ID.1.0/24 (gateway .1); containers are namespaces attached with `vsctl attach`:
//! the client at .2, backends at .11, .12, .13, each running a small python3 TCP
//! server that answers every connection with one line, `NAME PEER_ADDRESS`, and closes.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::craft::python3;
use common::{assert_vsctl_error, report, require_tools, wait_until, Bg, Lab, LONG};
use ctl::service::ServiceInfo;
use ctl::Data;
use serde_json::Value;

/// A TCP server: `NAME PORT`; answers each connection with `NAME PEER\n` and closes.
const SERVER: &str = r#"
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(1024)
print("listening", flush=True)
while True:
    c, a = s.accept()
    try:
        c.sendall(("%s %s\n" % (name, a[0])).encode())
    except OSError:
        pass
    c.close()
"#;

/// A TCP server that stays connected: `NAME PORT`; greets each connection with
/// `NAME\n`, then answers each line `L` with `NAME L`.
const ECHO: &str = r#"
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
print("listening", flush=True)
def serve(c):
    try:
        c.sendall((name + "\n").encode())
        for line in c.makefile("rb"):
            c.sendall(("%s %s" % (name, line.decode())).encode())
    except OSError:
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A client of [`ECHO`]: `ADDR PORT GO`; connects, prints `hello NAME`, waits until file
/// GO exists, then sends three lines, printing `reply R` for each answer (`error E` if
/// the connection fails).
const HOLD: &str = r#"
import os, socket, sys, time
addr, port, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((addr, port), timeout=5)
f = s.makefile("rb")
print("hello " + f.readline().decode().strip(), flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
try:
    for i in range(3):
        s.sendall(b"ping%d\n" % i)
        print("reply " + f.readline().decode().strip(), flush=True)
except Exception as e:
    print("error " + repr(e), flush=True)
print("done", flush=True)
"#;

/// A client: `ADDR PORT N`; N sequential connections, each reading the server's line.
/// Prints `{"counts": {NAME: K}, "peers": [...], "errors": E, "secs": S}`.
const CLIENT: &str = r#"
import json, socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
counts, peers, errors = {}, set(), []
t0 = time.time()
for i in range(n):
    try:
        s = socket.create_connection((addr, port), timeout=5)
        d = b""
        while True:
            x = s.recv(256)
            if not x:
                break
            d += x
        s.close()
        name, peer = d.decode().split()
        counts[name] = counts.get(name, 0) + 1
        peers.add(peer)
    except Exception as e:
        errors.append(repr(e))
print(json.dumps({"counts": counts, "peers": sorted(peers), "errors": len(errors), "first_errors": errors[:3], "secs": time.time() - t0}))
"#;

/// A refused connection: `ADDR PORT tcp|udp`; prints `{"refused": B, "secs": S, "error": E}`.
const REFUSE: &str = r#"
import json, socket, sys, time
addr, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.time()
refused, err = False, ""
try:
    if proto == "tcp":
        s = socket.create_connection((addr, port), timeout=5)
        err = "connected: " + repr(s.recv(64))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.connect((addr, port))
        s.send(b"x")
        s.recv(64)
        err = "answered"
except ConnectionRefusedError as e:
    refused = True
except Exception as e:
    err = repr(e)
print(json.dumps({"refused": refused, "secs": time.time() - t0, "error": err}))
"#;

/// A DNS A query: `SERVER NAME`; prints `{"rcode": N, "answers": [...]}`.
const DIG: &str = r#"
import json, random, socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack("!HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
for l in name.split("."):
    q += bytes([len(l)]) + l.encode()
q += b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, (server, 53))
r = s.recv(4096)
_, flags, qd, an, _, _ = struct.unpack("!HHHHHH", r[:12])
i = len(q)
answers = []
for _ in range(an):
    while r[i] != 0 and r[i] & 0xc0 != 0xc0:
        i += 1 + r[i]
    i += 2 if r[i] & 0xc0 == 0xc0 else 1
    ty, _, _, ln = struct.unpack("!HHIH", r[i:i + 10])
    i += 10
    if ty == 1:
        answers.append(socket.inet_ntoa(r[i:i + 4]))
    i += ln
print(json.dumps({"rcode": flags & 0xf, "answers": sorted(answers)}))
"#;

struct Svc {
    lab: Lab,
    id: u8,
    python: String,
    client: String,
    /// Backend namespaces by host number, and their servers.
    backends: BTreeMap<u8, (String, Option<Bg>)>,
    /// Other servers the test started.
    echo: Vec<Bg>,
}

impl Drop for Svc {
    fn drop(&mut self) {
        for (_, (_, bg)) in self.backends.iter_mut() {
            if let Some(mut b) = bg.take() {
                b.stop(Duration::from_secs(1));
            }
        }
        for b in self.echo.iter_mut() {
            b.stop(Duration::from_secs(1));
        }
    }
}

impl Svc {
    fn ip(&self, host: u8) -> String {
        format!("10.{}.1.{host}", self.id)
    }

    fn vip(&self) -> String {
        self.ip(100)
    }

    /// Namespace `<prefix>-<name>` attached to `br0` as host `host`.
    fn container(&mut self, name: &str, host: u8) -> String {
        let ns = self.lab.add_named_ns(name);
        let ip = format!("{}/24", self.ip(host));
        let gw = self.ip(1);
        self.lab.vsctl_ok(&[
            "attach",
            "br0",
            &format!("/var/run/netns/{ns}"),
            "--ip",
            &ip,
            "--gw",
            &gw,
        ]);
        ns
    }

    /// Starts backend `host`'s server on `port` and waits until it listens.
    fn serve(&mut self, host: u8, port: u16) {
        let ns = self.backends[&host].0.clone();
        let name = format!("b{host}");
        let p = port.to_string();
        let bg = self.lab.spawn_bg(
            &ns,
            &format!("srv{host}"),
            &[&self.python, "-u", "-c", SERVER, &name, &p],
        );
        let mut bg = bg;
        bg.wait_output("listening", Duration::from_secs(10));
        if let Some(e) = self.backends.get_mut(&host) {
            e.1 = Some(bg);
        }
    }

    /// Kills backend `host`'s server.
    fn kill(&mut self, host: u8) {
        if let Some(mut b) = self.backends.get_mut(&host).and_then(|e| e.1.take()) {
            b.stop_with(libc::SIGKILL, Duration::from_secs(5));
        }
    }

    fn connect(&self, from: &str, addr: &str, port: u16, n: u32) -> Value {
        let (p, k) = (port.to_string(), n.to_string());
        let out = self
            .lab
            .exec_t(from, &[&self.python, "-c", CLIENT, addr, &p, &k], LONG * 4);
        let s = out.ok();
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("client printed {s:?}: {e}"))
    }

    fn refuse(&self, from: &str, addr: &str, port: u16, proto: &str) -> Value {
        let p = port.to_string();
        let out = self
            .lab
            .exec_t(from, &[&self.python, "-c", REFUSE, addr, &p, proto], LONG);
        let s = out.ok();
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("refuse printed {s:?}: {e}"))
    }

    fn dig(&self, from: &str, name: &str) -> Vec<String> {
        let gw = self.ip(1);
        let out = self
            .lab
            .exec_t(from, &[&self.python, "-c", DIG, &gw, name], LONG);
        let s = out.ok();
        let v: Value =
            serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("dig printed {s:?}: {e}"));
        assert_eq!(v["rcode"], 0, "dig {name}: {v}");
        v["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    }

    fn services(&self) -> Vec<ServiceInfo> {
        match self.lab.vsctl_json(&["list-services"]) {
            Data::Services { services } => services,
            other => panic!("list-services --json: {other:?}"),
        }
    }

    /// The health `list-services` reports for backend `host` of service `name`.
    fn health(&self, name: &str, host: u8) -> String {
        let ip = self.ip(host);
        let s = self.services();
        let svc = s.iter().find(|s| s.name == name).unwrap();
        let b = svc
            .backends
            .iter()
            .find(|b| b.backend == ip || b.backend.starts_with(&format!("{ip}:")))
            .unwrap();
        b.health.clone()
    }

    /// Waits until backend `host` of `name` is `want`; returns how long it took.
    fn wait_health(&self, name: &str, host: u8, want: &str, limit: Duration) -> Duration {
        let t0 = Instant::now();
        let deadline = t0 + limit + Duration::from_secs(5);
        loop {
            if self.health(name, host) == want {
                return t0.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "backend {host} of {name} never became {want}: {:?}\n{}",
                self.services(),
                self.lab.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The daemon with bridge `br0` (network 10.ID.1.0/24), a client at .2 and backends
/// at `hosts`, each serving TCP `port`.
fn svc_lab(tag: &str, id: u8, hosts: &[u8], port: u16) -> Svc {
    require_tools(&["python3", "nsenter"]);
    let lab = Lab::new(tag, id);
    let mut s = Svc {
        lab,
        id,
        python: python3(),
        client: String::new(),
        backends: BTreeMap::new(),
        echo: Vec::new(),
    };
    s.lab.start_daemon();
    s.lab.vsctl_ok(&["add-br", "br0"]);
    let net = format!("10.{id}.1.0/24");
    let gw = s.ip(1);
    s.lab.vsctl_ok(&["add-net", "br0", &net, "--gateway", &gw]);
    s.client = s.container("cl", 2);
    for &h in hosts {
        let ns = s.container(&format!("b{h}"), h);
        s.backends.insert(h, (ns, None));
        s.serve(h, port);
    }
    s
}

fn add_web(s: &Svc, hosts: &[u8], extra: &[&str]) {
    let vip = s.vip();
    let mut args = vec![
        "add-service".to_string(),
        "br0".into(),
        "web".into(),
        "--vip".into(),
        vip,
        "--port".into(),
        "tcp:80".into(),
        "--backend".into(),
    ];
    args.extend(hosts.iter().map(|&h| s.ip(h)));
    args.extend(extra.iter().map(|x| x.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    s.lab.vsctl_ok(&a);
}

#[test]
fn vip_spreads_3000_connections_and_backends_see_the_client() {
    let mut s = svc_lab("svcrr", 150, &[11, 12, 13], 80);
    add_web(&s, &[11, 12, 13], &[]);
    for h in [11, 12, 13] {
        s.wait_health("web", h, "up", Duration::from_secs(3));
    }
    let vip = s.vip();
    let v = s.connect(&s.client, &vip, 80, 3000);
    report(&format!("3000 connections through the VIP: {v}"));
    assert_eq!(v["errors"], 0, "{v}\n{}", s.lab.log_text());
    for h in [11, 12, 13] {
        let n = v["counts"][format!("b{h}")].as_u64().unwrap_or(0);
        assert!(
            (900..=1100).contains(&n),
            "backend {h} got {n} of 3000 (outside 10% of a third): {v}"
        );
    }
    // Every backend saw the client's own address, not the gateway's.
    assert_eq!(v["peers"], serde_json::json!([s.ip(2)]), "{v}");
    // list-services counts them; show and --json carry the service.
    let svc = s.services().into_iter().find(|x| x.name == "web").unwrap();
    // Counted once per connection, including one whose client reused the source port of
    // a connection the backend closed first (a SYN on a closed flow starts a new one).
    let total: u64 = svc.backends.iter().map(|b| b.connections).sum();
    assert_eq!(total, 3000, "{svc:?}");
    assert!(
        svc.backends.iter().all(|b| b.packets >= 1000 * 3),
        "{svc:?}"
    );
    let show = s.lab.vsctl_ok(&["show"]);
    assert!(
        show.contains(&format!("service web (bridge br0) vip {vip} tcp:80")),
        "{show}"
    );
    let text = s.lab.vsctl_ok(&["list-services"]);
    assert_eq!(text.lines().count(), 4, "{text}");

    // It survives kill -9: the service is back, and it still spreads.
    let status = s.lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    s.lab.start_daemon();
    let after = s.services();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].backends.len(), 3);
    let mut v = Value::Null;
    wait_until("connections after restart", Duration::from_secs(15), || {
        v = s.connect(&s.client, &vip, 80, 30);
        v["errors"] == 0
    });
    for h in [11, 12, 13] {
        assert_eq!(v["counts"][format!("b{h}")], 10, "{v}");
    }
    s.lab.vsctl_ok(&["del-service", "br0", "web"]);
    assert!(s.services().is_empty());
}

#[test]
fn health_checks_take_a_backend_out_and_back_and_none_healthy_is_refused_at_once() {
    let mut s = svc_lab("svchc", 151, &[11, 12], 80);
    add_web(&s, &[11, 12], &[]);
    let vip = s.vip();
    for h in [11, 12] {
        s.wait_health("web", h, "up", Duration::from_secs(3));
    }
    // Its server killed, backend 12 is out within 3 s and gets no new connection.
    s.kill(12);
    let took = s.wait_health("web", 12, "down", Duration::from_secs(3));
    report(&format!(
        "backend out {} ms after its server died",
        took.as_millis()
    ));
    assert!(took <= Duration::from_secs(3), "out after {took:?}");
    let v = s.connect(&s.client, &vip, 80, 30);
    assert_eq!(
        (v["errors"].clone(), v["counts"]["b11"].clone()),
        (0.into(), 30.into()),
        "{v}"
    );
    // Restarted, it is back within 3 s and takes its share again.
    s.serve(12, 80);
    let took = s.wait_health("web", 12, "up", Duration::from_secs(3));
    report(&format!(
        "backend back {} ms after its server restarted",
        took.as_millis()
    ));
    assert!(took <= Duration::from_secs(3), "back after {took:?}");
    let v = s.connect(&s.client, &vip, 80, 30);
    assert_eq!(
        (v["counts"]["b11"].clone(), v["counts"]["b12"].clone()),
        (15.into(), 15.into()),
        "{v}"
    );

    // No healthy backend: the client's connect is refused at once (a reset).
    s.kill(11);
    s.kill(12);
    s.wait_health("web", 11, "down", Duration::from_secs(3));
    s.wait_health("web", 12, "down", Duration::from_secs(3));
    let r = s.refuse(&s.client, &vip, 80, "tcp");
    report(&format!("connect with no healthy backend: {r}"));
    assert_eq!(r["refused"], true, "{r}");
    assert!(r["secs"].as_f64().unwrap() < 0.5, "{r}");
    // A UDP service whose backends fail their TCP check: ICMP port unreachable.
    let vip2 = s.ip(101);
    let b11 = s.ip(11);
    s.lab.vsctl_ok(&[
        "add-service",
        "br0",
        "dns",
        "--vip",
        &vip2,
        "--port",
        "udp:53",
        "--backend",
        &b11,
        "--health",
        "tcp:80",
    ]);
    s.wait_health("dns", 11, "down", Duration::from_secs(3));
    let r = s.refuse(&s.client, &vip2, 53, "udp");
    assert_eq!(r["refused"], true, "{r}");
    assert!(r["secs"].as_f64().unwrap() < 0.5, "{r}");
    let stats = s.lab.vsctl_ok(&["stats"]);
    assert!(stats.contains("no_backend"), "{stats}");
}

#[test]
fn service_names_resolve_to_the_vip_or_to_healthy_backends() {
    let mut s = svc_lab("svcdn", 152, &[11, 12, 13], 80);
    add_web(&s, &[11, 12], &[]);
    let vip = s.vip();
    assert_eq!(s.dig(&s.client, "web"), vec![vip.clone()]);
    let db = s.ip(102);
    let (b12, b13) = (s.ip(12), s.ip(13));
    s.lab.vsctl_ok(&[
        "add-service",
        "br0",
        "db",
        "--vip",
        &db,
        "--port",
        "tcp:80",
        "--backend",
        &b12,
        &b13,
        "--mode",
        "dnsrr",
    ]);
    let mut want = vec![b12.clone(), b13.clone()];
    want.sort();
    assert_eq!(s.dig(&s.client, "db"), want);
    // A backend that fails its check leaves the answer, and comes back.
    s.kill(13);
    s.wait_health("db", 13, "down", Duration::from_secs(3));
    assert_eq!(s.dig(&s.client, "db"), vec![b12.clone()]);
    s.serve(13, 80);
    s.wait_health("db", 13, "up", Duration::from_secs(3));
    assert_eq!(s.dig(&s.client, "db"), want);
    // set-backends changes the answer and the spread.
    s.lab.vsctl_ok(&["set-backends", "br0", "db", &b13]);
    assert_eq!(s.dig(&s.client, "db"), vec![b13.clone()]);
    let v = s.connect(&s.client, &db, 80, 10);
    assert_eq!(v["counts"]["b13"], 10, "{v}");
}

#[test]
fn a_service_published_on_the_uplink_is_reached_from_outside() {
    let mut s = svc_lab("svcpb", 153, &[11, 12], 80);
    add_web(&s, &[11, 12], &[]);
    let id = s.id;
    let sw = s.lab.sw.clone();
    let wan = s.lab.add_named_ns("wan");
    s.lab.veth_between(&sw, "up0", &wan, "eth0");
    let wan_ip = format!("10.{id}.3.1");
    let up_ip = format!("10.{id}.3.2");
    common::sh(&[
        "ip",
        "-n",
        &wan,
        "addr",
        "add",
        &format!("{wan_ip}/24"),
        "dev",
        "eth0",
    ]);
    s.lab
        .vsctl_ok(&["set-uplink", "up0", "--ip", &format!("{up_ip}/24")]);
    s.lab.vsctl_ok(&["publish", "tcp", "8080", "service:web"]);
    let listed = s.lab.vsctl_ok(&["list-published"]);
    assert!(listed.contains("service:web"), "{listed}");
    let v = s.connect(&wan, &up_ip, 8080, 100);
    assert_eq!(v["errors"], 0, "{v}\n{}", s.lab.log_text());
    assert_eq!(
        (v["counts"]["b11"].clone(), v["counts"]["b12"].clone()),
        (50.into(), 50.into()),
        "{v}"
    );
    assert_eq!(v["peers"], serde_json::json!([wan_ip]), "{v}");
    // Published, the service cannot be deleted.
    let e = assert_vsctl_error(&s.lab.vsctl(&["del-service", "br0", "web"]));
    assert!(e.contains("unpublish"), "{e}");
}

#[test]
fn bad_service_requests_are_refused_and_change_nothing() {
    let s = svc_lab("svcbd", 154, &[11], 80);
    s.lab.vsctl_ok(&["add-br", "brb"]);
    let id = s.id;
    s.lab.vsctl_ok(&[
        "add-net",
        "brb",
        &format!("10.{id}.2.0/24"),
        "--gateway",
        &format!("10.{id}.2.1"),
    ]);
    add_web(&s, &[11], &[]);
    let before = std::fs::read(&s.lab.db).unwrap();
    let names = |s: &Svc| -> Vec<(String, String, Vec<String>)> {
        s.services()
            .into_iter()
            .map(|x| {
                (
                    x.name,
                    x.vip,
                    x.backends.into_iter().map(|b| b.backend).collect(),
                )
            })
            .collect()
    };
    let listed = names(&s);
    let (vip, b11, gw) = (s.vip(), s.ip(11), s.ip(1));
    let other = format!("10.{id}.2.5");
    let outside = format!("10.{id}.9.9");
    let v2 = s.ip(101);
    let (client, vip_cidr) = (format!("/var/run/netns/{}", s.client), format!("{vip}/24"));
    let c2 = s.ip(2);
    // The client's port, bound (by attach) to its MAC and address.
    let (cport, cmac) = match s.lab.vsctl_json(&["show"]) {
        Data::Show { bridges, .. } => bridges
            .into_iter()
            .flat_map(|b| b.ports)
            .find_map(|p| {
                let a = p.attach.as_ref()?;
                (a.ip.split('/').next() == Some(c2.as_str()))
                    .then(|| (p.name.clone(), p.allowed.as_ref().map(|b| b.mac.clone())))
            })
            .expect("the client's port"),
        other => panic!("show --json: {other:?}"),
    };
    let rebind = format!("allowed={},{c2},{vip}", cmac.expect("the client's binding"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["set-port", &cport, &rebind], "is service web's VIP"),
        // A VIP is no container's address, either way round.
        (
            vec![
                "attach", "br0", &client, "--ifname", "net9", "--ip", &vip_cidr,
            ],
            "is service web's VIP",
        ),
        (
            vec!["add-service", "br0", "x", "--vip", &c2, "--backend", &b11],
            "is the address of port",
        ),
        (
            vec![
                "add-service",
                "br0",
                "x",
                "--vip",
                &outside,
                "--backend",
                &b11,
            ],
            "outside",
        ),
        (
            vec!["add-service", "br0", "x", "--vip", &gw, "--backend", &b11],
            "gateway",
        ),
        (
            vec!["add-service", "br0", "x", "--vip", &v2, "--backend", &other],
            "outside",
        ),
        (
            vec!["add-service", "br0", "web", "--vip", &v2, "--backend", &b11],
            "already",
        ),
        (
            vec!["add-service", "br0", "x", "--vip", &vip, "--backend", &b11],
            "already",
        ),
        (
            vec![
                "add-service",
                "br0",
                "x",
                "--vip",
                &v2,
                "--backend",
                &b11,
                &b11,
            ],
            "twice",
        ),
        (
            vec![
                "add-service",
                "br0",
                "x",
                "--vip",
                &v2,
                "--port",
                "tcp:0",
                "--backend",
                &b11,
            ],
            "port",
        ),
        (
            vec![
                "add-service",
                "br0",
                "x",
                "--vip",
                &v2,
                "--backend",
                "10.1.2",
            ],
            "backend",
        ),
        (
            vec![
                "add-service",
                "br0",
                "x",
                "--vip",
                &v2,
                "--backend",
                &b11,
                "--mode",
                "lc",
            ],
            "mode",
        ),
        (
            vec!["add-service", "nobr", "x", "--vip", &v2, "--backend", &b11],
            "nobr",
        ),
        (vec!["del-service", "br0", "nope"], "no service"),
        (vec!["set-backends", "br0", "nope", &b11], "no service"),
        (vec!["set-backends", "br0", "web", &other], "outside"),
        (vec!["publish", "tcp", "8080", "service:nope"], "no service"),
        (vec!["list-services", "nobr"], "nobr"),
    ];
    for (args, want) in cases {
        let e = assert_vsctl_error(&s.lab.vsctl(&args));
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(
            std::fs::read(&s.lab.db).unwrap(),
            before,
            "{args:?} changed the config"
        );
    }
    assert_eq!(names(&s), listed);
}

#[test]
fn a_backend_reaching_its_own_service_is_never_sent_to_itself() {
    let s = svc_lab("svcslf", 155, &[11, 12], 80);
    add_web(&s, &[11, 12], &[]);
    for h in [11, 12] {
        s.wait_health("web", h, "up", Duration::from_secs(3));
    }
    let vip = s.vip();
    // Round robin would send every other connection of b11's back to b11, as a packet
    // from itself to itself that its kernel drops: they all go to b12 instead, which
    // sees b11's own address.
    let b11 = s.backends[&11].0.clone();
    let v = s.connect(&b11, &vip, 80, 20);
    report(&format!(
        "20 connections from backend b11 to its own VIP: {v}"
    ));
    assert_eq!(v["errors"], 0, "{v}\n{}", s.lab.log_text());
    assert_eq!(v["counts"], serde_json::json!({"b12": 20}), "{v}");
    assert_eq!(v["peers"], serde_json::json!([s.ip(11)]), "{v}");
    // The only backend left, b11 still reaches its service: itself, from the gateway's
    // address (as a hairpinned connection is).
    let b11_ip = s.ip(11);
    s.lab.vsctl_ok(&["set-backends", "br0", "web", &b11_ip]);
    let v = s.connect(&b11, &vip, 80, 5);
    assert_eq!(v["errors"], 0, "{v}\n{}", s.lab.log_text());
    assert_eq!(v["counts"], serde_json::json!({"b11": 5}), "{v}");
    assert_eq!(v["peers"], serde_json::json!([s.ip(1)]), "{v}");
    // Other clients are not affected.
    let v = s.connect(&s.client, &vip, 80, 5);
    assert_eq!(
        (v["errors"].clone(), v["peers"].clone()),
        (0.into(), serde_json::json!([s.ip(2)])),
        "{v}"
    );
}

#[test]
fn connections_to_a_removed_backend_carry_on_and_its_icmp_errors_come_back() {
    let mut s = svc_lab("svcdrn", 156, &[11, 12], 80);
    for h in [11u8, 12] {
        let ns = s.backends[&h].0.clone();
        let mut bg = s.lab.spawn_bg(
            &ns,
            &format!("echo{h}"),
            &[&s.python, "-u", "-c", ECHO, &format!("b{h}"), "7000"],
        );
        bg.wait_output("listening", Duration::from_secs(10));
        s.echo.push(bg);
    }
    let (vip, b11, b12) = (s.vip(), s.ip(11), s.ip(12));
    s.lab.vsctl_ok(&[
        "add-service",
        "br0",
        "echo",
        "--vip",
        &vip,
        "--port",
        "tcp:7000",
        "--backend",
        &b11,
        &b12,
        "--health",
        "tcp:80",
    ]);
    for h in [11, 12] {
        s.wait_health("echo", h, "up", Duration::from_secs(3));
    }
    // A connection through the VIP, open while its backend is taken out.
    let go = s.lab.dir.join("go-drain");
    let go_s = go.to_str().unwrap().to_string();
    let client = s.client.clone();
    let mut c = s.lab.spawn_bg(
        &client,
        "hold",
        &[&s.python, "-u", "-c", HOLD, &vip, "7000", &go_s],
    );
    c.wait_output("hello ", Duration::from_secs(10));
    let out = c.stdout();
    let name = out
        .lines()
        .find_map(|l| l.strip_prefix("hello "))
        .unwrap()
        .to_string();
    let (gone, stays) = if name == "b11" {
        (b11.clone(), b12.clone())
    } else {
        (b12.clone(), b11.clone())
    };
    s.lab.vsctl_ok(&["set-backends", "br0", "echo", &stays]);
    let listed = s.services();
    assert_eq!(listed[0].backends.len(), 1, "{listed:?}");
    // Its replies still reach the client from the VIP: the connection carries on.
    std::fs::write(&go, b"go").unwrap();
    c.wait_output("done", Duration::from_secs(20));
    let out = c.stdout();
    let replies: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("reply "))
        .collect();
    report(&format!(
        "connection on {name} ({gone}) after set-backends {stays}: {replies:?}"
    ));
    assert_eq!(
        replies,
        [0, 1, 2]
            .iter()
            .map(|i| format!("{name} ping{i}"))
            .collect::<Vec<_>>(),
        "{out}\n{}\n{}",
        s.lab.vsctl_ok(&["ct-show"]),
        s.lab.log_text()
    );

    // UDP to a backend with nothing listening: its port unreachable comes back
    // translated (from the VIP, about what the client sent), so the client's socket
    // gets "connection refused" at once instead of waiting for an answer.
    let vip2 = s.ip(102);
    s.lab.vsctl_ok(&[
        "add-service",
        "br0",
        "u",
        "--vip",
        &vip2,
        "--port",
        "udp:5353",
        "--backend",
        &b11,
        "--health",
        "tcp:80",
    ]);
    s.wait_health("u", 11, "up", Duration::from_secs(3));
    let r = s.refuse(&s.client, &vip2, 5353, "udp");
    report(&format!(
        "UDP to a backend's closed port through the VIP: {r}"
    ));
    assert_eq!(r["refused"], true, "{r}\n{}", s.lab.log_text());
    assert!(r["secs"].as_f64().unwrap() < 1.0, "{r}");
}
