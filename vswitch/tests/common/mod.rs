//! Shared harness of the vswitch integration tests: a [`Lab`] is one test's private
//! network, built on the workspace's test lab ([`testlab`]).
//!
//! A lab owns a switch namespace where the real `vswitchd` runs (the lab derefs to that
//! daemon, a [`testlab::Switchd`]: `lab.vsctl_ok(…)`, `lab.fdb(…)`, `lab.sock`, `lab.db`),
//! host namespaces `h1..hN` each joined to the switch namespace by a veth pair (`eth0` in
//! the host, `hNp` in the switch namespace, attached as an afpacket port), a temporary
//! directory holding the control socket, the config file and logs, and every background
//! process it started. Every namespace is quiet (no IPv6, no forwarding: see
//! [`testlab::netns`]), so the only frames on the wire are the ones a test sends. Dropping
//! the lab tears all of it down, also when the test panics; on a panic it prints the
//! daemon's log first.
//!
//! Besides: more switches ([`Switch`]), packet captures ([`Capture`]), crafted frames
//! (scapy), Open vSwitch as a peer ([`Ovs`]), and raw requests to the control socket.
//! The tests need root and real tools (`ip`, `ping`, `iperf3`, `tcpdump`); a missing one is
//! a loud failure, never a skip. Every external command runs with a timeout.

// Each test binary compiles this module and uses only part of it (and of the re-exports).
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod craft;
pub mod overlay;

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::ops::{Deref, DerefMut};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testlab::netns;
use testlab::traffic::{iperf3_client_argv, iperf3_timeout, ping_argv, Iperf};

pub use testlab::{
    gbps, require_root, require_tools, run, sh, try_run, wait_until, which, Bg, Out, LONG, SHORT,
};

/// Another `vswitchd`, in its own namespace ([`Lab::add_switch`]); stopped when dropped.
pub type Switch = testlab::Switchd;

// ---------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------

/// The `vswitchd` binary under test.
pub fn vswitchd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vswitchd"))
}

/// The `vsctl` binary: built by the `vswitch-ctl` package next to `vswitchd`.
pub fn vsctl_bin() -> PathBuf {
    bins().vsctl
}

/// Both, checked (a missing `vsctl` fails with the "build the workspace first" hint).
pub fn bins() -> testlab::Bins {
    testlab::Bins::beside(&vswitchd_bin())
}

/// Runs `vsctl --sock SOCK ARGS…`.
pub fn vsctl_at(sock: &Path, args: &[&str]) -> Out {
    testlab::vswitchd::vsctl(&vsctl_bin(), sock, args).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------

/// One host namespace joined to the switch by a veth pair.
#[derive(Debug, Clone)]
pub struct Host {
    /// 1-based host number (`h1` is 1); also the last octet of its address.
    pub n: u8,
    /// Namespace name.
    pub ns: String,
    /// Interface in the host namespace carrying the address (`eth0`, or a TAP's name).
    pub dev: String,
    /// The switch-side interface (`hNp`), or the TAP port's name.
    pub port: String,
    /// IPv4 address without prefix length.
    pub ip: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One test's private network, torn down on drop.
pub struct Lab {
    /// Short tag of the test, part of every name.
    pub tag: String,
    /// Prefix of every namespace of this lab (unique per run).
    pub prefix: String,
    /// Temporary directory: socket, config file, logs.
    pub dir: PathBuf,
    /// The switch namespace.
    pub sw: String,
    /// First three octets of this lab's /24, e.g. "10.21.7".
    pub net: String,
    pub hosts: Vec<Host>,
    /// The switch namespace's daemon; the lab derefs to it.
    pub daemon: Switch,
    namespaces: testlab::Namespaces,
    /// Background helpers (iperf3 servers, …) killed on drop.
    pub bgs: Vec<Bg>,
}

impl Deref for Lab {
    type Target = Switch;
    fn deref(&self) -> &Switch {
        &self.daemon
    }
}

impl DerefMut for Lab {
    fn deref_mut(&mut self) -> &mut Switch {
        &mut self.daemon
    }
}

impl Lab {
    /// Creates the switch namespace of a new lab. `tag` is a short test tag (≤ 6 chars);
    /// `id` (1..=250) is unique per test and picks the second octet of the lab's subnet.
    pub fn new(tag: &str, id: u8) -> Lab {
        require_root();
        require_tools(&["ip", "ss", "ping", "iperf3", "tcpdump", "sysctl"]);
        let pid = std::process::id();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("vsw{pid}{:03x}{seq}{tag}", nanos & 0xfff);
        let dir = std::env::temp_dir().join(format!("{prefix}.d"));
        let sw = format!("{prefix}-sw");
        let mut lab = Lab {
            tag: tag.to_string(),
            daemon: Switch::new("sw", &sw, &dir, bins()),
            prefix,
            dir,
            sw: sw.clone(),
            net: format!("10.{id}.{}", (pid % 250) + 1),
            hosts: Vec::new(),
            namespaces: testlab::Namespaces::new(),
            bgs: Vec::new(),
        };
        lab.namespaces.add(&sw);
        lab
    }

    /// The namespace name of host `n`.
    pub fn host_ns(&self, n: u8) -> String {
        format!("{}-h{n}", self.prefix)
    }

    /// The address of host `n`.
    pub fn ip(&self, n: u8) -> String {
        format!("{}.{n}", self.net)
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> String {
        format!("{}.255", self.net)
    }

    /// Adds host `hN` (N = next number) with a veth pair: `eth0` in the host, `hNp` in the
    /// switch namespace, both up, the host addressed `10.X.Y.N/24`. Returns N.
    pub fn add_host(&mut self) -> u8 {
        let sw = self.sw.clone();
        self.add_host_on(&sw)
    }

    /// Adds host `hN` like [`Lab::add_host`], but with its switch-side veth end `hNp` in
    /// namespace `sw_ns` (another switch, Open vSwitch, …). Returns N.
    pub fn add_host_on(&mut self, sw_ns: &str) -> u8 {
        let n = self.new_host("eth0", None);
        self.plug(n, sw_ns);
        n
    }

    /// Adds host `hN` without any interface (for a TAP moved in later). Returns N.
    pub fn add_bare_host(&mut self, port: &str) -> u8 {
        self.new_host(port, Some(port))
    }

    /// A new host namespace; its interface `dev` and switch port (`hNp` unless given).
    fn new_host(&mut self, dev: &str, port: Option<&str>) -> u8 {
        let n = u8::try_from(self.hosts.len() + 1).expect("fewer than 255 hosts");
        let ns = self.host_ns(n);
        self.namespaces.add(&ns);
        self.hosts.push(Host {
            n,
            ns,
            dev: dev.into(),
            port: port.map_or_else(|| format!("h{n}p"), str::to_string),
            ip: self.ip(n),
        });
        n
    }

    /// (Re-)creates host `n`'s veth pair to the switch namespace and addresses it.
    pub fn plug_veth(&self, n: u8) {
        self.plug(n, &self.sw);
    }

    /// Host `n`'s veth pair: its port in `sw_ns`, `eth0` addressed; both up.
    fn plug(&self, n: u8, sw_ns: &str) {
        let h = self.host(n);
        self.veth_between(sw_ns, &h.port, &h.ns, "eth0");
        netns::addr_add(&h.ns, "eth0", &format!("{}/24", h.ip)).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Host `n` (1-based).
    pub fn host(&self, n: u8) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.n == n)
            .unwrap_or_else(|| panic!("no host h{n}"))
    }

    /// Moves the TAP port `h.port` of bare host `n` from the switch namespace into the host,
    /// addresses it and brings it up. Waits for the TAP to exist first.
    pub fn adopt_tap(&self, n: u8) {
        let h = self.host(n).clone();
        wait_until(
            &format!("TAP {} to appear in {}", h.port, self.sw),
            Duration::from_secs(10),
            || self.link_exists(&self.sw, &h.port),
        );
        sh(&["ip", "-n", &self.sw, "link", "set", &h.port, "netns", &h.ns]);
        let up = netns::addr_add(&h.ns, &h.dev, &format!("{}/24", h.ip))
            .and_then(|()| netns::link_up(&h.ns, &h.dev));
        up.unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `argv` inside namespace `ns` with `timeout`.
    pub fn exec_t(&self, ns: &str, argv: &[&str], timeout: Duration) -> Out {
        run(&netns::exec_argv(ns, argv), timeout)
    }

    /// Runs `argv` inside namespace `ns` with [`SHORT`].
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Out {
        self.exec_t(ns, argv, SHORT)
    }

    /// Runs `argv` inside `ns`, asserting success; returns stdout.
    pub fn exec_ok(&self, ns: &str, argv: &[&str]) -> String {
        self.exec(ns, argv).ok()
    }

    /// Runs `argv` in `ns` and parses its stdout as JSON.
    pub fn exec_json(&self, ns: &str, argv: &[&str]) -> serde_json::Value {
        let out = self.exec_ok(ns, argv);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{argv:?} printed bad JSON ({e}):\n{out}"))
    }

    /// Starts a background process inside `ns`, owned by the lab (killed on drop).
    pub fn spawn_in(&mut self, ns: &str, name: &str, argv: &[&str]) -> &mut Bg {
        let bg = self.spawn_bg(ns, name, argv);
        self.bgs.push(bg);
        self.bgs.last_mut().expect("just pushed")
    }

    /// Starts a background process inside `ns`, owned by the caller.
    pub fn spawn_bg(&self, ns: &str, name: &str, argv: &[&str]) -> Bg {
        Bg::spawn(&self.dir, name, &netns::exec_argv(ns, argv))
    }

    /// True when interface `dev` exists in namespace `ns`.
    pub fn link_exists(&self, ns: &str, dev: &str) -> bool {
        netns::link_exists(ns, dev).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The MAC address of `dev` in `ns`, lower case.
    pub fn mac(&self, ns: &str, dev: &str) -> String {
        netns::mac(ns, dev).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The MAC address of host `n`'s interface.
    pub fn host_mac(&self, n: u8) -> String {
        let h = self.host(n);
        self.mac(&h.ns, &h.dev)
    }

    /// Gives host `n`'s interface the MAC address `mac`.
    pub fn set_host_mac(&self, n: u8, mac: &str) {
        let h = self.host(n);
        sh(&["ip", "-n", &h.ns, "link", "set", &h.dev, "address", mac]);
    }

    /// Creates namespace `<prefix>-<suffix>`, owned by the lab (deleted on drop, every
    /// process in it killed first). Returns its name.
    pub fn add_named_ns(&mut self, suffix: &str) -> String {
        let ns = format!("{}-{suffix}", self.prefix);
        self.namespaces.add(&ns);
        ns
    }

    /// Creates a veth pair, `a` in namespace `ns_a` and `b` in `ns_b`, both up.
    pub fn veth_between(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) {
        netns::veth_up(ns_a, a, ns_b, b).unwrap_or_else(|e| panic!("{e}"));
    }

    // ---- the daemon -------------------------------------------------------------------

    /// Starts `vswitchd` in the switch namespace and waits until it answers `vsctl show`.
    pub fn start_daemon(&mut self) {
        self.daemon.start();
    }

    /// Starts `vswitchd` like [`Lab::start_daemon`], but as
    /// `ip netns exec SW WRAPPER… vswitchd ARGS…`: `wrapper` must end by exec'ing the rest
    /// of its arguments (`unshare --mount … sh -c '…; exec "$@"' sh`), so that the pid the
    /// lab signals is the daemon's. Waits until it answers `vsctl show`.
    pub fn start_daemon_wrapped(&mut self, wrapper: &[&str]) {
        self.daemon.start_wrapped(wrapper);
    }

    /// The daemon's process id.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Sends `sig` to the daemon and waits up to `timeout` for it to exit; returns its exit
    /// status (panics if it does not exit).
    pub fn signal_daemon(&mut self, sig: libc::c_int, timeout: Duration) -> ExitStatus {
        self.daemon.signal(sig, timeout)
    }

    /// True while the daemon process runs (it has not exited or been killed).
    pub fn daemon_running(&mut self) -> bool {
        self.daemon.running()
    }

    /// Starts another `vswitchd` in a new namespace `<prefix>-<name>` with its own socket,
    /// config file and log under the lab's directory. The caller owns it; declare it after
    /// the lab so that it is dropped (stopped) first.
    pub fn add_switch(&mut self, name: &str) -> Switch {
        let ns = self.add_named_ns(name);
        let mut s = Switch::new(name, &ns, &self.dir.join(name), bins());
        s.daemon_args = self.daemon_args.clone();
        s.start();
        s
    }

    /// Creates bridge `br` with the afpacket ports of `hosts`, and waits for them to be up.
    pub fn bridge_with_hosts(&self, br: &str, hosts: &[u8]) {
        self.vsctl_ok(&["add-br", br]);
        let ports: Vec<&str> = hosts.iter().map(|n| self.host(*n).port.as_str()).collect();
        for p in &ports {
            self.vsctl_ok(&["add-port", br, p]);
        }
        self.wait_ports(br, &ports, "up", Duration::from_secs(10));
    }

    // ---- traffic ------------------------------------------------------------------------

    /// Pings `ip` from host `from`: `count` replies must arrive within `deadline_s` seconds.
    pub fn ping_out(&self, from: u8, ip: &str, count: u32, interval: &str, deadline_s: u32) -> Out {
        let argv = ping_argv(ip, count, interval, deadline_s);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.exec_t(&self.host(from).ns, &argv, LONG)
    }

    /// Sends exactly `count` echo requests from host `from` to `ip` that are not expected to
    /// be answered (`extra` e.g. `-b`); the exit status is not checked.
    pub fn ping_noreply(
        &self,
        from: u8,
        ip: &str,
        count: u32,
        interval: &str,
        extra: &[&str],
    ) -> Out {
        let h = self.host(from);
        let c = count.to_string();
        let mut argv = vec!["ping", "-n", "-q", "-c", &c, "-i", interval, "-W", "1"];
        argv.extend_from_slice(extra);
        argv.push(ip);
        self.exec_t(&h.ns, &argv, LONG)
    }

    /// Asserts host `from` reaches host `to` (3 replies within 10 s).
    pub fn ping(&self, from: u8, to: u8) {
        self.ping_pairs(&[(from, to)], true);
    }

    /// Asserts every ordered pair of `hosts` pings.
    pub fn ping_all_pairs(&self, hosts: &[u8]) {
        for &a in hosts {
            for &b in hosts {
                if a != b {
                    self.ping(a, b);
                }
            }
        }
    }

    /// Asserts, with all pings running at once, that each `(from, to)` of `pairs` pings
    /// (`reach`: 3 replies within 10 s) or gets no reply at all (`!reach`: 2 echo
    /// requests, none answered).
    pub fn ping_pairs(&self, pairs: &[(u8, u8)], reach: bool) {
        let outs: Vec<(u8, u8, Out)> = thread::scope(|s| {
            let handles: Vec<_> = pairs
                .iter()
                .map(|&(a, b)| {
                    s.spawn(move || {
                        let ip = self.ip(b);
                        let o = if reach {
                            self.ping_out(a, &ip, 3, "0.2", 10)
                        } else {
                            self.ping_noreply(a, &ip, 2, "0.2", &[])
                        };
                        (a, b, o)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("ping thread"))
                .collect()
        });
        for (a, b, o) in outs {
            if reach {
                assert!(
                    o.success(),
                    "h{a} cannot ping h{b} ({}): {o}\n{}",
                    self.ip(b),
                    self.diag()
                );
            } else {
                assert!(
                    !o.success() && o.stdout.contains(" 0 received"),
                    "h{a} reached h{b} ({}), which it must not: {o}\n{}",
                    self.ip(b),
                    self.diag()
                );
            }
        }
    }

    /// Every ordered pair of `a` × `b` and of `b` × `a`.
    pub fn cross_pairs(a: &[u8], b: &[u8]) -> Vec<(u8, u8)> {
        let mut v = Vec::new();
        for &x in a {
            for &y in b {
                v.push((x, y));
                v.push((y, x));
            }
        }
        v
    }

    /// Starts a one-off iperf3 server in host `n` on `port` and waits until it listens.
    pub fn iperf3_server(&mut self, n: u8, port: u16) {
        let h = self.host(n).clone();
        let name = format!("iperf3-s-h{n}-{port}");
        let p = port.to_string();
        self.spawn_in(&h.ns, &name, &["iperf3", "-s", "-1", "-B", &h.ip, "-p", &p]);
        wait_until("iperf3 server to listen", Duration::from_secs(10), || {
            testlab::traffic::listening(&h.ns, port).unwrap_or_else(|e| panic!("{e}"))
        });
    }

    /// Runs an iperf3 client in host `from` against host `to` (`extra` e.g. `-u -b 200M`),
    /// `secs` seconds; returns the parsed JSON report.
    pub fn iperf3(&mut self, from: u8, to: u8, secs: u32, extra: &[&str]) -> serde_json::Value {
        let port = 5201 + u16::try_from(self.bgs.len()).expect("few helpers");
        self.iperf3_server(to, port);
        let argv = iperf3_client_argv(&self.ip(to), port, secs, extra);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let o = self.exec_t(&self.host(from).ns, &argv, iperf3_timeout(secs));
        let r = Iperf::parse(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o}\n{}", self.diag()));
        assert!(o.success(), "iperf3 failed: {o}\n{}", self.diag());
        r.0
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Helpers first, then the daemon (so TAPs it created go with it), then the namespaces
        // (which destroy the veths in them).
        self.bgs.clear();
        let _ = self.daemon.stop();
        let left = self.namespaces.remove();
        if thread::panicking() {
            eprintln!(
                "(test files kept in {}; left behind: {left:?})",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw control socket
// ---------------------------------------------------------------------------------------

/// What the daemon did with a raw request.
#[derive(Debug)]
pub enum Raw {
    /// One response line (without the newline).
    Line(String),
    /// The connection was closed (or reset) without a response.
    Closed,
}

/// Writes `bytes` to the control socket (errors from a peer that hung up early are fine)
/// and reads one response line. Panics if the daemon neither answers nor closes in 10 s.
pub fn raw_request(sock: &Path, bytes: &[u8]) -> Raw {
    let mut s =
        UnixStream::connect(sock).unwrap_or_else(|e| panic!("connect {}: {e}", sock.display()));
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("set write timeout");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    let _ = s.write_all(bytes);
    let _ = s.flush();
    let (buf, err) = read_line(&mut s);
    // A reset is as good as a close; only silence is wrong.
    if err.is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    }) {
        panic!(
            "vswitchd neither answered nor closed the connection within 10 s (request of {} bytes)",
            bytes.len()
        )
    }
    if buf.is_empty() {
        return Raw::Closed;
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let line = text.split('\n').next().unwrap_or_default().to_string();
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "response is not exactly one line: {text:?}"
    );
    Raw::Line(line)
}

/// Reads from `s` until a newline, the end of the stream or an error; returns what it
/// read and the error, if one ended it.
pub fn read_line(s: &mut UnixStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return (buf, None),
            Ok(k) => {
                buf.extend_from_slice(&chunk[..k]);
                if buf.contains(&b'\n') {
                    return (buf, None);
                }
            }
            Err(e) => return (buf, Some(e)),
        }
    }
}

/// Asserts a raw request is refused: a one-line `{"ok":false,"error":"…"}` or a closed
/// connection. Returns the error message if there was one.
pub fn assert_refused(sock: &Path, what: &str, bytes: &[u8]) -> Option<String> {
    match raw_request(sock, bytes) {
        Raw::Closed => None,
        Raw::Line(l) => {
            let v: serde_json::Value = serde_json::from_str(&l)
                .unwrap_or_else(|e| panic!("{what}: response is not JSON ({e}): {l}"));
            assert_eq!(
                v.get("ok"),
                Some(&serde_json::Value::Bool(false)),
                "{what}: not refused: {l}"
            );
            let err = v
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or_else(|| panic!("{what}: refusal without an error string: {l}"));
            assert!(!err.trim().is_empty(), "{what}: empty error: {l}");
            Some(err.to_string())
        }
    }
}

/// Asserts a vsctl run failed as the CLI promises: exit 1, nothing on stdout, exactly one
/// stderr line starting with `vsctl: `. Returns that line.
pub fn assert_vsctl_error(o: &Out) -> String {
    assert_eq!(o.code(), Some(1), "expected exit 1: {o}");
    assert!(o.stdout.trim().is_empty(), "expected no stdout: {o}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected exactly one stderr line: {o}");
    assert!(
        lines[0].starts_with("vsctl: ") && lines[0].len() > "vsctl: ".len(),
        "bad error line: {o}"
    );
    lines[0].to_string()
}

/// Prints a measured figure so it shows in the test log even when the test passes (the
/// harness captures `println!`, not direct writes to the stderr handle).
pub fn report(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "    [measured] {line}");
}

// ---------------------------------------------------------------------------------------
// Captures and crafted frames
// ---------------------------------------------------------------------------------------

/// A `tcpdump -e -nn -l --immediate-mode` running in a namespace; killed when dropped.
/// Tags the kernel stripped into packet metadata (rx-vlan offload) are printed too:
/// libpcap reads them from PACKET_AUXDATA.
pub struct Capture {
    /// What is captured, for messages (`h3:eth0`).
    pub what: String,
    bg: Bg,
}

impl Capture {
    /// Starts tcpdump on `dev` in `ns` (`extra`: e.g. `-Q in`, a filter) and waits until it
    /// listens.
    pub fn start(lab: &Lab, ns: &str, dev: &str, name: &str, extra: &[&str]) -> Capture {
        let mut argv = vec!["tcpdump", "-i", dev, "-e", "-nn", "-l", "--immediate-mode"];
        argv.extend_from_slice(extra);
        let mut bg = lab.spawn_bg(ns, name, &argv);
        bg.wait_output("listening on", Duration::from_secs(10));
        Capture {
            what: name.to_string(),
            bg,
        }
    }

    /// The first line of every frame captured so far (hex-dump lines left out).
    pub fn frames(&self) -> Vec<String> {
        self.bg
            .stdout()
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string)
            .collect()
    }

    /// Waits until the captured frames satisfy `cond`.
    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let f = self.frames();
            if cond(&f) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out after {timeout:?} waiting for {what}; captured:\n{}\n--- tcpdump stderr ---\n{}",
                self.what,
                f.join("\n"),
                self.bg.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops tcpdump (SIGINT after `settle`, for frames still on their way) and returns
    /// the first line of every frame it captured.
    pub fn stop(mut self, settle: Duration) -> Vec<String> {
        thread::sleep(settle);
        // SIGINT: tcpdump writes out what it has before it exits.
        let _ = self.bg.stop_with(libc::SIGINT, Duration::from_secs(5));
        self.frames()
    }

    /// tcpdump's stderr (its summary: captured, dropped by kernel).
    pub fn stderr(&self) -> String {
        self.bg.stderr()
    }
}

/// A `python3` that can `import scapy` (Debian's python3-scapy is for /usr/bin/python3; a
/// pyenv `python3` first on PATH may not have it). Panics when there is none.
pub fn scapy_python() -> String {
    static PY: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let mut tried = Vec::new();
        let mut cands: Vec<String> = vec!["/usr/bin/python3".into()];
        if let Some(p) = which("python3") {
            cands.push(p.to_string_lossy().into_owned());
        }
        for py in cands {
            if !Path::new(&py).is_file() {
                continue;
            }
            match try_run(&[&py, "-c", "import scapy.all"], Duration::from_secs(30)) {
                Ok(o) if o.success() => return Ok(py),
                Ok(o) => tried.push(format!("{py}: {}", o.stderr.trim())),
                Err(e) => tried.push(e.to_string()),
            }
        }
        Err(format!(
            "no python3 can import scapy (install python3-scapy: sudo bash scripts/deps.sh); tried: {}",
            tried.join("; ")
        ))
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

impl Lab {
    /// Sends `frames` (scapy expressions such as
    /// `Ether(dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=10)/Raw(b'x'*46)`) out of `dev` in namespace
    /// `ns` with scapy's `sendp`, the whole list `count` times.
    pub fn scapy_sendp(&self, ns: &str, dev: &str, frames: &[String], count: u32) {
        let py = scapy_python();
        let script = format!(
            "from scapy.all import Ether, Dot1Q, Dot1AD, Raw, sendp\n\
             frames = [{}]\n\
             sendp(frames, iface={dev:?}, count={count}, verbose=False)\n",
            frames.join(", ")
        );
        let o = self.exec_t(ns, &[&py, "-c", &script], Duration::from_secs(30));
        assert!(o.success(), "scapy sendp in {ns} failed: {o}");
    }
}

// ---------------------------------------------------------------------------------------
// Open vSwitch (userspace datapath) as a peer
// ---------------------------------------------------------------------------------------

/// Open vSwitch started standalone for one test: `ovsdb-server` and `ovs-vswitchd` inside a
/// namespace, with every file (database, sockets, pid files, logs) under a private
/// directory, so nothing goes near a system Open vSwitch. Userspace TSO is enabled before
/// `ovs-vswitchd` starts. Both daemons are stopped when this is dropped.
pub struct Ovs {
    pub ns: String,
    pub dir: PathBuf,
    /// `unix:<dir>/db.sock`
    db: String,
    /// ovs-vswitchd's unixctl socket.
    pub ctl: PathBuf,
    vswitchd: Option<Bg>,
    ovsdb: Option<Bg>,
}

/// Tools [`Ovs`] needs.
pub const OVS_TOOLS: [&str; 5] = [
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-appctl",
];

impl Ovs {
    /// Starts Open vSwitch in namespace `ns` (which the lab owns).
    pub fn start(lab: &Lab, ns: &str) -> Ovs {
        require_tools(&OVS_TOOLS);
        let dir = lab.dir.join("ovs");
        fs::create_dir_all(&dir).expect("create the OVS directory");
        let d = dir.to_str().expect("utf-8 path").to_string();
        let schema = [
            "/usr/share/openvswitch/vswitch.ovsschema",
            "/usr/local/share/openvswitch/vswitch.ovsschema",
        ]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| {
            panic!("vswitch.ovsschema not found: install openvswitch-switch (scripts/deps.sh)")
        });
        let conf = format!("{d}/conf.db");
        sh(&["ovsdb-tool", "create", &conf, schema]);
        let mut ovs = Ovs {
            ns: ns.to_string(),
            db: format!("unix:{d}/db.sock"),
            ctl: dir.join("ovs-vswitchd.ctl"),
            dir: dir.clone(),
            vswitchd: None,
            ovsdb: None,
        };
        let remote = format!("--remote=punix:{d}/db.sock");
        ovs.ovsdb = Some(ovs.daemon(lab, "ovsdb-server", &[&conf, &remote]));
        let sock = dir.join("db.sock");
        ovs.wait_alive("ovsdb-server to create db.sock", || sock.exists());
        ovs.vsctl(&["--no-wait", "init"]);
        // Without userspace TSO, TCP does not pass OVS's userspace datapath with the
        // veths' default offloads; it must be set before ovs-vswitchd starts.
        ovs.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:userspace-tso-enable=true",
        ]);
        let db = ovs.db.clone();
        ovs.vswitchd = Some(ovs.daemon(lab, "ovs-vswitchd", &[&db]));
        let ctl = ovs.ctl.clone();
        ovs.wait_alive("ovs-vswitchd to create its control socket", || ctl.exists());
        ovs
    }

    /// Starts OVS daemon `name` (`ovsdb-server`, `ovs-vswitchd`) with `args`, every file of
    /// it (run, log, db and config directories, unixctl socket, pid file, log) in `dir`.
    fn daemon(&self, lab: &Lab, name: &str, args: &[&str]) -> Bg {
        let d = self.dir.to_str().expect("utf-8 path");
        let mut argv: Vec<String> = ["RUNDIR", "LOGDIR", "DBDIR", "SYSCONFDIR"]
            .iter()
            .map(|v| format!("OVS_{v}={d}"))
            .collect();
        argv.insert(0, "env".into());
        argv.push(name.into());
        argv.extend(args.iter().map(|a| (*a).to_string()));
        argv.extend([
            format!("--unixctl={d}/{name}.ctl"),
            format!("--pidfile={d}/{name}.pid"),
            format!("--log-file={d}/{name}.log"),
        ]);
        argv.extend(
            ["--no-chdir", "-vconsole:off", "-vsyslog:off", "-vfile:info"].map(String::from),
        );
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        lab.spawn_bg(&self.ns, name, &argv)
    }

    fn wait_alive(&mut self, what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if cond() {
                return;
            }
            let mut exited = None;
            for bg in [self.ovsdb.as_mut(), self.vswitchd.as_mut()]
                .into_iter()
                .flatten()
            {
                if let Some(s) = bg.try_wait() {
                    exited = Some(format!("{} exited ({s})", bg.name));
                }
            }
            if let Some(e) = exited {
                panic!("{e} while waiting for {what}\n{}", self.diag());
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.diag()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `ovs-vsctl --db=… --timeout=20 ARGS…`, asserting success; returns stdout.
    pub fn vsctl(&self, args: &[&str]) -> String {
        let db = format!("--db={}", self.db);
        let mut v = vec!["ovs-vsctl", &db, "--timeout=20"];
        v.extend_from_slice(args);
        let o = run(&v, Duration::from_secs(30));
        assert!(o.success(), "ovs-vsctl failed: {o}\n{}", self.diag());
        o.stdout
    }

    /// Runs `ovs-appctl -t <ovs-vswitchd.ctl> ARGS…`.
    pub fn appctl(&self, args: &[&str]) -> Out {
        let t = self.ctl.to_str().expect("utf-8 path").to_string();
        let mut v = vec!["ovs-appctl", "-t", &t];
        v.extend_from_slice(args);
        run(&v, SHORT)
    }

    /// The tail of ovs-vswitchd's and ovsdb-server's logs and stderr.
    pub fn diag(&self) -> String {
        let mut s = String::new();
        for f in [
            "ovs-vswitchd.log",
            "ovsdb-server.log",
            "ovs-vswitchd.err",
            "ovsdb-server.err",
        ] {
            let p = self.dir.join(f);
            let p = if p.exists() {
                p
            } else {
                // Bg writes stderr next to the lab's files.
                self.dir.parent().map(|d| d.join(f)).unwrap_or(p)
            };
            let text = fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines.len().saturating_sub(60);
            let _ = write!(
                s,
                "===== {} (last {} lines) =====\n{}\n",
                p.display(),
                lines.len() - tail,
                lines[tail..].join("\n")
            );
        }
        s
    }

    /// The text of ovs-vswitchd's log file.
    pub fn vswitchd_log(&self) -> String {
        fs::read_to_string(self.dir.join("ovs-vswitchd.log")).unwrap_or_default()
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        if let Some(mut bg) = self.vswitchd.take() {
            let _ = bg.stop(Duration::from_secs(3));
        }
        if let Some(mut bg) = self.ovsdb.take() {
            let _ = bg.stop(Duration::from_secs(3));
        }
        if thread::panicking() {
            eprintln!("{}", self.diag());
        }
    }
}
