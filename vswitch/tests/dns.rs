//! The gateway's DNS inside `vswitchd`: containers attached with `vsctl attach --name
//! --alias` find each other by name through their network's gateway (A and PTR, also
//! through glibc's resolver), never another network's names; unknown names in the
//! network's domain are NXDOMAIN; other names go to an upstream dnsmasq behind the
//! uplink (masqueraded like a container's queries) and come back, or end in SERVFAIL in
//! bounded time when the upstream never answers; records go with detach and with the
//! container's death; malformed queries are counted and dropped; TCP queries work.
//!
//! Topology: the lab's switch namespace runs `vswitchd`; bridge `bra` has network
//! 10.ID.1.0/24 (gateway .1, domain `lab.test`), bridge `brb` 10.ID.2.0/24 (gateway .1,
//! domain `lab.test` too); containers are namespaces of the lab attached with `vsctl
//! attach`; the uplink `up0` is a veth to namespace `wan` (10.ID.3.1/24, the switch is
//! 10.ID.3.2), where dnsmasq answers. Queries are sent by a small python3 client (no DNS
//! library), over UDP or TCP, which prints the answer as JSON.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::craft::python3;
use common::{require_tools, sh, wait_until, Lab, LONG};
use ctl::Data;
use serde_json::Value;

/// A DNS client: `SERVER NAME TYPE PROTO TIMEOUT` (TYPE `A` or `PTR`, PROTO `udp` or
/// `tcp`); prints `{"rcode": N, "answers": [...], "secs": S}` or `{"timeout": true, ...}`.
/// `raw HEX` instead of NAME sends those bytes as they are (malformed queries).
const DIG: &str = r#"
import json, random, socket, struct, sys, time
server, name, qtype, proto, timeout = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
types = {"A": 1, "PTR": 12}
qid = random.randrange(65536)
if qtype == "raw":
    q = bytes.fromhex(name)
else:
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for l in name.rstrip(".").split("."):
        q += bytes([len(l)]) + l.encode()
    q += b"\0" + struct.pack("!HH", types[qtype], 1)
def rname(b, i):
    out, jumped, end, hops = [], False, i, 0
    while True:
        n = b[i]
        if n & 0xc0 == 0xc0:
            if not jumped:
                end = i + 2
            i, jumped, hops = ((n & 0x3f) << 8) | b[i + 1], True, hops + 1
            if hops > 20:
                raise ValueError("loop")
            continue
        if n == 0:
            return ".".join(out) + ".", (end if jumped else i + 1)
        out.append(b[i + 1:i + 1 + n].decode())
        i += 1 + n
t0 = time.time()
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.sendto(q, (server, 53))
        while True:
            r, _ = s.recvfrom(65535)
            if r[:2] == q[:2]:
                break
    else:
        s = socket.create_connection((server, 53), timeout=timeout)
        s.sendall(struct.pack("!H", len(q)) + q)
        r = b""
        while len(r) < 2 or len(r) < 2 + struct.unpack("!H", r[:2])[0]:
            d = s.recv(65535)
            if not d:
                break
            r += d
        r = r[2:]
except (socket.timeout, OSError) as e:
    print(json.dumps({"timeout": True, "error": repr(e), "secs": time.time() - t0}))
    sys.exit(0)
_, flags, qd, an, _, _ = struct.unpack("!HHHHHH", r[:12])
i = 12
for _ in range(qd):
    _, i = rname(r, i)
    i += 4
answers = []
for _ in range(an):
    _, i = rname(r, i)
    ty, _, _, ln = struct.unpack("!HHIH", r[i:i + 10])
    i += 10
    if ty == 1:
        answers.append(socket.inet_ntoa(r[i:i + 4]))
    elif ty == 12:
        answers.append(rname(r, i)[0])
    i += ln
print(json.dumps({"rcode": flags & 0xf, "tc": bool(flags & 0x200), "answers": sorted(answers), "secs": time.time() - t0}))
"#;

/// Sequential queries: `SERVER NAME N`; prints `{"qps": Q, "p50_ms": A, "p99_ms": B,
/// "answered": K}` (one outstanding query at a time, 1 s timeout each).
const DIG_BENCH: &str = r#"
import json, socket, struct, sys, time
server, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
q = b""
for l in name.split("."):
    q += bytes([len(l)]) + l.encode()
q += b"\0" + struct.pack("!HH", 1, 1)
lat, ok = [], 0
t0 = time.time()
for i in range(n):
    m = struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + q
    t = time.perf_counter()
    s.sendto(m, (server, 53))
    try:
        while True:
            r = s.recv(2048)
            if r[:2] == m[:2]:
                break
        ok += 1
        lat.append(time.perf_counter() - t)
    except socket.timeout:
        pass
el = time.time() - t0
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else -1
print(json.dumps({"qps": ok / el, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "answered": ok}))
"#;

const NOERROR: u64 = 0;
const SERVFAIL: u64 = 2;
const NXDOMAIN: u64 = 3;

struct Dns {
    lab: Lab,
    id: u8,
    python: String,
    /// `/etc/netns/NS` directories the test wrote, removed on drop.
    etc: Vec<PathBuf>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        for d in &self.etc {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Dns {
    fn net(&self, n: u8) -> String {
        format!("10.{}.{n}", self.id)
    }

    /// Namespace `<prefix>-<name>` attached to `br` as `ip` with the given DNS names.
    fn container(&mut self, br: &str, name: &str, net: u8, host: u8, names: &[&str]) -> String {
        let ns = self.lab.add_named_ns(name);
        let ip = format!("{}.{host}/24", self.net(net));
        let gw = format!("{}.1", self.net(net));
        let mut args = vec![
            "attach".to_string(),
            br.into(),
            format!("/var/run/netns/{ns}"),
            "--ip".into(),
            ip,
            "--gw".into(),
            gw,
        ];
        for (i, n) in names.iter().enumerate() {
            args.push(if i == 0 { "--name" } else { "--alias" }.into());
            args.push(n.to_string());
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.lab.vsctl_ok(&a);
        ns
    }

    /// Writes `/etc/netns/NS/resolv.conf` (seen by `ip netns exec NS`).
    fn resolv_conf(&mut self, ns: &str, text: &str) {
        let d = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("resolv.conf"), text).unwrap();
        self.etc.push(d);
    }

    /// Asks `server` from namespace `ns`.
    fn dig(
        &self,
        ns: &str,
        server: &str,
        name: &str,
        ty: &str,
        proto: &str,
        timeout: f64,
    ) -> Value {
        let t = timeout.to_string();
        let out = self.lab.exec_t(
            ns,
            &[&self.python, "-c", DIG, server, name, ty, proto, &t],
            LONG,
        );
        let s = out.ok();
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("dig printed {s:?}: {e}"))
    }

    /// The answer's rcode and records (panics on a timeout).
    fn ask(&self, ns: &str, server: &str, name: &str, ty: &str, proto: &str) -> (u64, Vec<String>) {
        let v = self.dig(ns, server, name, ty, proto, 5.0);
        assert!(
            v.get("timeout").is_none(),
            "no answer to {name} {ty} over {proto} from {server} in {ns}: {v}\n{}",
            self.lab.log_text()
        );
        let answers = v["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        (v["rcode"].as_u64().unwrap(), answers)
    }

    fn gw_counter(&self, name: &str) -> u64 {
        match self.lab.vsctl_json(&["stats"]) {
            Data::Stats {
                gateway: Some(g), ..
            } => g
                .drops
                .get(name)
                .or(g.counters.get(name))
                .copied()
                .unwrap_or(0),
            other => panic!("stats --json: {other:?}"),
        }
    }

    fn dns_show(&self, br: &str) -> ctl::DnsInfo {
        match self.lab.vsctl_json(&["dns-show", br]) {
            Data::Dns(d) => d,
            other => panic!("dns-show --json: {other:?}"),
        }
    }
}

/// The daemon with bridges `bra` and `brb`, their networks and domain `lab.test`.
fn dns_lab(tag: &str, id: u8, before_start: impl FnOnce(&mut Dns)) -> Dns {
    require_tools(&["python3", "nsenter", "getent"]);
    let lab = Lab::new(tag, id);
    let mut d = Dns {
        lab,
        id,
        python: python3(),
        etc: Vec::new(),
    };
    before_start(&mut d);
    d.lab.start_daemon();
    for (br, n) in [("bra", 1), ("brb", 2)] {
        d.lab.vsctl_ok(&["add-br", br]);
        let net = format!("{}.0/24", d.net(n));
        let gw = format!("{}.1", d.net(n));
        d.lab.vsctl_ok(&["add-net", br, &net, "--gateway", &gw]);
        d.lab.vsctl_ok(&["set-dns", br, "--domain", "lab.test"]);
    }
    d
}

#[test]
fn names_resolve_in_their_network_only_and_follow_detach_and_death() {
    let mut d = dns_lab("dnsnm", 120, |_| {});
    let (ga, gb) = (format!("{}.1", d.net(1)), format!("{}.1", d.net(2)));
    let c1 = d.container("bra", "c1", 1, 2, &["web", "www"]);
    let c2 = d.container("bra", "c2", 1, 3, &["db"]);
    let c3 = d.container("brb", "c3", 2, 2, &["web"]);
    let web_a = format!("{}.2", d.net(1));
    let db_a = format!("{}.3", d.net(1));
    let web_b = format!("{}.2", d.net(2));

    // By name and alias, bare and in the domain, over UDP and TCP.
    assert_eq!(
        d.ask(&c2, &ga, "web", "A", "udp"),
        (NOERROR, vec![web_a.clone()])
    );
    assert_eq!(
        d.ask(&c2, &ga, "www.lab.test", "A", "udp"),
        (NOERROR, vec![web_a.clone()])
    );
    assert_eq!(
        d.ask(&c1, &ga, "db.lab.test", "A", "tcp"),
        (NOERROR, vec![db_a.clone()])
    );
    // PTR names both of web's names, in the domain.
    let ptr = format!("2.1.{}.10.in-addr.arpa", d.id);
    assert_eq!(
        d.ask(&c2, &ga, &ptr, "PTR", "udp"),
        (
            NOERROR,
            vec!["web.lab.test.".into(), "www.lab.test.".into()]
        )
    );
    // Unknown in the domain, and an unknown address of the network: NXDOMAIN.
    assert_eq!(d.ask(&c2, &ga, "nope.lab.test", "A", "udp").0, NXDOMAIN);
    let ptr9 = format!("99.1.{}.10.in-addr.arpa", d.id);
    assert_eq!(d.ask(&c2, &ga, &ptr9, "PTR", "udp").0, NXDOMAIN);

    // Scoped: brb's "web" is its own container; bra's "db" does not exist there.
    assert_eq!(
        d.ask(&c3, &gb, "web.lab.test", "A", "udp"),
        (NOERROR, vec![web_b])
    );
    assert_eq!(d.ask(&c3, &gb, "db.lab.test", "A", "udp").0, NXDOMAIN);
    // Nor does bra's gateway answer a container of brb.
    let v = d.dig(&c3, &ga, "db.lab.test", "A", "udp", 1.5);
    assert_eq!(
        v["timeout"], true,
        "bra's gateway answered brb's container: {v}"
    );

    // glibc's resolver, through /etc/netns/NS/resolv.conf.
    let c4 = d.container("bra", "c4", 1, 4, &["client"]);
    d.resolv_conf(
        &c4,
        &format!("nameserver {ga}\nsearch lab.test\noptions timeout:2 attempts:1\n"),
    );
    let out = d.lab.exec(&c4, &["getent", "hosts", "web"]).ok();
    assert!(out.contains(&web_a), "getent hosts web: {out:?}");
    let out = d.lab.exec(&c4, &["getent", "hosts", &db_a]).ok();
    assert!(out.contains("db.lab.test"), "getent hosts {db_a}: {out:?}");

    // dns-show lists them (A and PTR), with the ports they belong to.
    let show = d.dns_show("bra");
    assert_eq!(show.server, ga);
    assert_eq!(show.domain.as_deref(), Some("lab.test"));
    let a: Vec<(String, String)> = show
        .records
        .iter()
        .filter(|r| r.kind == "A")
        .map(|r| (r.name.clone(), r.value.clone()))
        .collect();
    for (n, ip) in [("web", &web_a), ("www", &web_a), ("db", &db_a)] {
        assert!(
            a.contains(&(format!("{n}.lab.test"), ip.clone())),
            "dns-show lacks {n}: {show:?}"
        );
    }
    assert!(show
        .records
        .iter()
        .any(|r| r.kind == "PTR" && r.value == "db.lab.test"));
    let text = d.lab.vsctl_ok(&["dns-show", "bra"]);
    assert!(text.contains("web.lab.test"), "{text}");

    // Malformed queries: counted and dropped, and the server still answers.
    let before = d.gw_counter("dns_malformed");
    for hex in [
        "00",                                   // truncated header
        "12340100000100000000000003777777",     // name cut short
        "123401000001000000000000c00c00010001", // compression loop
        "1234810000010000000000000377777700000100 01"
            .replace(' ', "")
            .as_str(), // a response
    ] {
        let v = d.dig(&c2, &ga, hex, "raw", "udp", 0.5);
        assert_eq!(
            v["timeout"], true,
            "malformed query {hex} was answered: {v}"
        );
    }
    wait_until(
        "4 malformed queries counted",
        Duration::from_secs(5),
        || d.gw_counter("dns_malformed") >= before + 4,
    );
    assert_eq!(d.ask(&c2, &ga, "web", "A", "udp").0, NOERROR);

    // Detach: the names go at once.
    d.lab
        .vsctl_ok(&["detach", "bra", &format!("/var/run/netns/{c1}")]);
    assert_eq!(d.ask(&c2, &ga, "web.lab.test", "A", "udp").0, NXDOMAIN);
    assert_eq!(d.ask(&c2, &ga, &ptr, "PTR", "udp").0, NXDOMAIN);
    assert!(!d
        .dns_show("bra")
        .records
        .iter()
        .any(|r| r.name.starts_with("web")));

    // Death: c2's namespace goes (its veth with it); its name stops resolving.
    sh(&["ip", "netns", "del", &c2]);
    let start = Instant::now();
    wait_until(
        "db to stop resolving after c2 died",
        Duration::from_secs(10),
        || d.ask(&c4, &ga, "db.lab.test", "A", "udp").0 == NXDOMAIN,
    );
    common::report(&format!(
        "dns: a dead container's name stopped resolving after {:?}",
        start.elapsed()
    ));
    // Bad requests change nothing.
    for bad in [
        vec!["set-dns", "bra", "--domain", "bad domain"],
        vec!["set-dns", "bra", "--upstream", "224.0.0.1"],
        vec!["set-dns", "nobr"],
        vec!["dns-show", "nobr"],
    ] {
        let o = d.lab.vsctl(&bad);
        assert!(!o.status.success(), "{bad:?} was accepted");
    }
    assert_eq!(d.dns_show("bra").domain.as_deref(), Some("lab.test"));
}

#[test]
fn other_names_go_to_the_upstream_and_fail_in_bounded_time() {
    require_tools(&["dnsmasq"]);
    let id = 121;
    let wan_ip = format!("10.{id}.3.1");
    let mut d = dns_lab("dnsup", id, |d| {
        // The daemon's default upstreams are the nameservers of its resolv.conf.
        let sw = d.lab.sw.clone();
        d.resolv_conf(
            &sw,
            &format!("nameserver 127.0.0.53\nnameserver 10.{id}.3.1\n"),
        );
    });
    let sw = d.lab.sw.clone();
    let wan = d.lab.add_named_ns("wan");
    d.lab.veth_between(&sw, "up0", &wan, "eth0");
    sh(&[
        "ip",
        "-n",
        &wan,
        "addr",
        "add",
        &format!("{wan_ip}/24"),
        "dev",
        "eth0",
    ]);
    d.lab.vsctl_ok(&[
        "set-uplink",
        "up0",
        "--ip",
        &format!("10.{id}.3.2/24"),
        "--gw",
        &wan_ip,
    ]);
    let pid = d.lab.dir.join("dnsmasq.pid");
    let pid = pid.to_string_lossy().into_owned();
    d.lab.spawn_in(
        &wan,
        "dnsmasq",
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={wan_ip}"),
            "--host-record=far.example,192.0.2.55",
            "--user=root",
            "--conf-file=/dev/null",
            "--log-queries",
            "--log-facility=-",
            &format!("--pid-file={pid}"),
        ],
    );
    let c1 = d.container("bra", "c1", 1, 2, &["web"]);
    let ga = format!("{}.1", d.net(1));
    let show = d.dns_show("bra");
    assert_eq!(
        (show.upstream.clone(), show.upstream_from.as_str()),
        (vec![wan_ip.clone()], "host")
    );

    // Forwarded (UDP and TCP), answered by dnsmasq, which saw the uplink's address.
    let mut got = (0, Vec::new());
    wait_until(
        "dnsmasq to answer far.example",
        Duration::from_secs(10),
        || {
            got = d.ask(&c1, &ga, "far.example", "A", "udp");
            got.1 == ["192.0.2.55"]
        },
    );
    assert_eq!(
        d.ask(&c1, &ga, "far.example", "A", "tcp"),
        (NOERROR, vec!["192.0.2.55".into()])
    );
    let log = d.lab.bgs.last().unwrap().stderr() + &d.lab.bgs.last().unwrap().stdout();
    assert!(
        log.contains(&format!("far.example from 10.{id}.3.2")),
        "dnsmasq log: {log}"
    );
    assert!(d.gw_counter("dns_forwarded") >= 2);

    // An upstream that never answers: SERVFAIL after the timeout, never a hang.
    d.lab.vsctl_ok(&[
        "set-dns",
        "bra",
        "--upstream",
        &format!("10.{id}.3.99"),
        "--domain",
        "lab.test",
    ]);
    let v = d.dig(&c1, &ga, "slow.example", "A", "udp", 10.0);
    assert_eq!(v["rcode"].as_u64(), Some(SERVFAIL), "{v}");
    let secs = v["secs"].as_f64().unwrap();
    assert!((1.5..6.0).contains(&secs), "SERVFAIL after {secs} s");
    common::report(&format!(
        "dns: SERVFAIL for a silent upstream after {secs:.2} s"
    ));
    let v = d.dig(&c1, &ga, "slow.example", "A", "tcp", 10.0);
    assert_eq!(v["rcode"].as_u64(), Some(SERVFAIL), "over TCP: {v}");
    assert!(d.gw_counter("dns_servfail") >= 2);
    // Local names need no upstream.
    assert_eq!(d.ask(&c1, &ga, "web", "A", "udp").0, NOERROR);
    // Figures (no assertion on speed): a local name from the gateway against dnsmasq
    // answering from its own records, one query at a time from the same container.
    for (who, server, name) in [
        ("gateway", ga.as_str(), "web"),
        ("dnsmasq", wan_ip.as_str(), "far.example"),
    ] {
        let out = d
            .lab
            .exec_t(
                &c1,
                &[&d.python, "-c", DIG_BENCH, server, name, "2000"],
                LONG,
            )
            .ok();
        common::report(&format!(
            "dns: 2000 sequential queries to {who}: {}",
            out.trim()
        ));
    }
    // `show` has the setting, and it survives kill -9 and a restart, names too.
    let text = d.lab.vsctl_ok(&["show"]);
    assert!(text.contains(&format!("upstream 10.{id}.3.99")), "{text}");
    let st = d.lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    assert!(st.code().is_none(), "vswitchd was not killed: {st}");
    d.lab.start_daemon();
    let show = d.dns_show("bra");
    assert_eq!(
        (
            show.upstream,
            show.upstream_from.as_str(),
            show.domain.as_deref()
        ),
        (vec![format!("10.{id}.3.99")], "config", Some("lab.test"))
    );
    let mut got = (0, Vec::new());
    wait_until(
        "web to resolve after the restart",
        Duration::from_secs(10),
        || {
            got = d.ask(&c1, &ga, "web.lab.test", "A", "udp");
            got.1 == [format!("{}.2", d.net(1))]
        },
    );
}

#[test]
fn set_names_names_a_port_and_bad_ones_change_nothing() {
    let mut d = dns_lab("dnssn", 190, |_| {});
    let ga = format!("{}.1", d.net(1));
    let _c1 = d.container("bra", "c1", 1, 2, &[]);
    let c2 = d.container("bra", "c2", 1, 3, &["db"]);
    let ip1 = format!("{}.2", d.net(1));
    let port = match d.lab.vsctl_json(&["show"]) {
        Data::Show { bridges, .. } => bridges
            .iter()
            .flat_map(|b| &b.ports)
            .find(|p| p.attach.as_ref().is_some_and(|a| a.ip.starts_with(&ip1)))
            .map(|p| p.name.clone())
            .expect("c1's port"),
        other => panic!("show --json: {other:?}"),
    };
    d.lab.vsctl_ok(&["set-names", &port, "api", "API-v2"]);
    for n in ["api", "api-v2.lab.test"] {
        assert_eq!(d.ask(&c2, &ga, n, "A", "udp"), (NOERROR, vec![ip1.clone()]));
    }
    let show = d.lab.vsctl_ok(&["show"]);
    assert!(show.contains("named api,api-v2"), "{show}");
    // Refused in one line, nothing changed.
    let before = d.lab.vsctl_ok(&["show"]);
    for args in [
        vec!["set-names", port.as_str(), "bad name"],
        vec!["set-names", "nope0", "x"],
    ] {
        let o = d.lab.vsctl(&args);
        assert!(!o.success(), "{args:?} accepted: {o}");
        assert_eq!(o.stderr.trim().lines().count(), 1, "{args:?}: {o}");
    }
    assert_eq!(d.lab.vsctl_ok(&["show"]), before);
    // Kept across kill -9.
    d.lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    d.lab.start_daemon();
    let mut got = (0, Vec::new());
    wait_until(
        "api resolving after restart",
        Duration::from_secs(10),
        || {
            got = d.ask(&c2, &ga, "api", "A", "udp");
            got == (NOERROR, vec![ip1.clone()])
        },
    );
    // No names: cleared.
    d.lab.vsctl_ok(&["set-names", &port]);
    assert_eq!(d.ask(&c2, &ga, "api.lab.test", "A", "udp").0, NXDOMAIN);
}
