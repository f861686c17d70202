//! Shared harness of the integration tests: a [`Lab`] is one test's private network.
//!
//! A lab owns a switch namespace where the real `vswitchd` runs, host namespaces `h1..hN`
//! each joined to the switch namespace by a veth pair (`eth0` in the host, `hNp` in the
//! switch namespace, attached as an afpacket port), a temporary directory holding the
//! control socket, the config file and logs, and every background process it started.
//! Dropping the lab tears all of it down, also when the test panics; on a panic it prints
//! the daemon's log first.
//!
//! The tests need root and real tools (`ip`, `ping`, `iperf3`, `tcpdump`); a missing one is
//! a loud failure, never a skip. Every external command runs with a timeout.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ctl::{BridgeInfo, BridgeStats, Data, FdbEntry, PortStats};

/// Timeout of a short command (`ip`, `vsctl`, `sysctl`).
pub const SHORT: Duration = Duration::from_secs(10);
/// Timeout of a traffic command (`ping`, `iperf3`).
pub const LONG: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------------------------------
// Prerequisites and binaries
// ---------------------------------------------------------------------------------------

/// Panics unless the process runs as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the integration tests need root (network namespaces, veths, TAPs); run them as root \
         (sudo bash scripts/test.sh)"
    );
}

/// Finds `tool` on `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Panics (never skips) when one of `tools` is missing.
pub fn require_tools(tools: &[&str]) {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "missing test prerequisite(s): {} — install them with `sudo bash scripts/deps.sh`",
        missing.join(", ")
    );
}

/// The `vswitchd` binary under test.
pub fn vswitchd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vswitchd"))
}

/// The `vsctl` binary: built by the `vswitch-ctl` package next to `vswitchd`.
pub fn vsctl_bin() -> PathBuf {
    let d = vswitchd_bin();
    let dir = d.parent().expect("vswitchd has a parent directory");
    let p = dir.join("vsctl");
    assert!(
        p.is_file(),
        "vsctl not found at {}: build the workspace first: cargo build --workspace [--release]",
        p.display()
    );
    p
}

// ---------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------

/// What a finished command left.
#[derive(Debug)]
pub struct Out {
    /// The command line, for messages.
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// True when the command exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
    /// The exit code (None when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    /// Panics with the full output unless the command exited 0; returns stdout.
    pub fn ok(self) -> String {
        assert!(self.success(), "command failed: {self}");
        self.stdout
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

fn cmdline(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains([' ', '"', '\'']) {
                format!("{a:?}")
            } else {
                (*a).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; pid is a positive process id we spawned.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Runs `argv` with a timeout, killing it when it outlives it; never panics.
pub fn try_run(argv: &[&str], timeout: Duration) -> Result<Out, String> {
    let cmd = cmdline(argv);
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{cmd}`: {e} (missing tool? run scripts/deps.sh)"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(o)) => Ok(Out {
            cmd,
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(format!("waiting for `{cmd}` failed: {e}")),
        Err(_) => {
            signal(pid, libc::SIGKILL);
            let partial = match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(o)) => format!(
                    "\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                _ => String::new(),
            };
            Err(format!(
                "`{cmd}` did not finish within {timeout:?}; killed it{partial}"
            ))
        }
    }
}

/// Runs `argv` with a timeout; a command that outlives it is killed and the test fails.
/// A program that cannot be started at all is a loud failure too.
pub fn run(argv: &[&str], timeout: Duration) -> Out {
    try_run(argv, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `argv` with [`SHORT`] and asserts success; returns stdout.
pub fn sh(argv: &[&str]) -> String {
    run(argv, SHORT).ok()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; panics with `what` then.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A background process with stdout and stderr in files; killed when dropped.
pub struct Bg {
    pub name: String,
    pub child: Child,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Bg {
    /// Starts `argv` in the background, output to `dir/<name>.out` and `dir/<name>.err`.
    pub fn spawn(dir: &Path, name: &str, argv: &[&str]) -> Bg {
        let stdout_path = dir.join(format!("{name}.out"));
        let stderr_path = dir.join(format!("{name}.err"));
        let out = fs::File::create(&stdout_path).expect("create stdout file");
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .expect("create stderr file");
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmdline(argv)));
        Bg {
            name: name.to_string(),
            child,
            stdout_path,
            stderr_path,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` if the process still runs.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.try_wait().is_none() {
            signal(self.pid(), sig);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        if let Some(s) = self.wait_timeout(grace) {
            return Some(s);
        }
        self.signal(libc::SIGKILL);
        self.wait_timeout(Duration::from_secs(5))
    }

    /// Waits until stderr or stdout contains `needle`, failing if the process exits first.
    pub fn wait_output(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) || self.stdout().contains(needle) {
                return;
            }
            if let Some(s) = self.try_wait() {
                panic!(
                    "{} exited ({s}) before printing {needle:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.name,
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {needle:?} within {timeout:?}\n--- stderr ---\n{}",
                self.name,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            signal(self.pid(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
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

/// The running daemon.
pub struct Daemon {
    pub bg: Bg,
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
    /// Control socket path.
    pub sock: PathBuf,
    /// Config file path.
    pub db: PathBuf,
    /// The daemon's log (stderr), appended across restarts.
    pub log: PathBuf,
    /// First three octets of this lab's /24, e.g. "10.21.7".
    pub net: String,
    pub hosts: Vec<Host>,
    pub daemon: Option<Daemon>,
    namespaces: Vec<String>,
    /// Extra `vswitchd` arguments (e.g. `--rx-ring v3`).
    pub daemon_args: Vec<String>,
    /// Background helpers (iperf3 servers, …) killed on drop.
    pub bgs: Vec<Bg>,
    starts: u32,
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
        fs::create_dir_all(&dir).expect("create the lab's temp dir");
        let sw = format!("{prefix}-sw");
        let net = format!("10.{id}.{}", (pid % 250) + 1);
        let mut lab = Lab {
            tag: tag.to_string(),
            sock: dir.join("sock"),
            db: dir.join("conf.json"),
            log: dir.join("vswitchd.log"),
            prefix,
            dir,
            sw: sw.clone(),
            net,
            hosts: Vec::new(),
            daemon: None,
            namespaces: Vec::new(),
            daemon_args: Vec::new(),
            bgs: Vec::new(),
            starts: 0,
        };
        lab.add_ns(&sw);
        lab
    }

    fn add_ns(&mut self, ns: &str) {
        sh(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.to_string());
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        // No IPv6: no router solicitations, DAD or MLD reports, so the only frames on the
        // wire are the ones a test sends (counters and captures stay exact).
        for k in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            self.exec_ok(ns, &["sysctl", "-q", "-w", k]);
        }
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
        let n = u8::try_from(self.hosts.len() + 1).expect("fewer than 255 hosts");
        let ns = self.host_ns(n);
        self.add_ns(&ns);
        let host = Host {
            n,
            ns,
            dev: "eth0".into(),
            port: format!("h{n}p"),
            ip: self.ip(n),
        };
        self.hosts.push(host);
        self.plug_veth(n);
        n
    }

    /// Creates (or re-creates) host `n`'s veth pair and addresses it.
    pub fn plug_veth(&self, n: u8) {
        let h = self.host(n).clone();
        sh(&[
            "ip", "-n", &self.sw, "link", "add", &h.port, "type", "veth", "peer", "name", "eth0",
            "netns", &h.ns,
        ]);
        sh(&[
            "ip",
            "-n",
            &h.ns,
            "addr",
            "add",
            &format!("{}/24", h.ip),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &h.ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &self.sw, "link", "set", &h.port, "up"]);
    }

    /// Adds host `hN` without any interface (for a TAP moved in later). Returns N.
    pub fn add_bare_host(&mut self, port: &str) -> u8 {
        let n = u8::try_from(self.hosts.len() + 1).expect("fewer than 255 hosts");
        let ns = self.host_ns(n);
        self.add_ns(&ns);
        let host = Host {
            n,
            ns,
            dev: port.to_string(),
            port: port.to_string(),
            ip: self.ip(n),
        };
        self.hosts.push(host);
        n
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
        sh(&[
            "ip",
            "-n",
            &h.ns,
            "addr",
            "add",
            &format!("{}/24", h.ip),
            "dev",
            &h.dev,
        ]);
        sh(&["ip", "-n", &h.ns, "link", "set", &h.dev, "up"]);
    }

    /// Runs `argv` inside namespace `ns` with `timeout`.
    pub fn exec_t(&self, ns: &str, argv: &[&str], timeout: Duration) -> Out {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(argv);
        run(&v, timeout)
    }

    /// Runs `argv` inside namespace `ns` with [`SHORT`].
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Out {
        self.exec_t(ns, argv, SHORT)
    }

    /// Runs `argv` inside `ns`, asserting success; returns stdout.
    pub fn exec_ok(&self, ns: &str, argv: &[&str]) -> String {
        self.exec(ns, argv).ok()
    }

    /// Starts a background process inside `ns`, owned by the lab (killed on drop).
    pub fn spawn_in(&mut self, ns: &str, name: &str, argv: &[&str]) -> &mut Bg {
        let bg = self.spawn_bg(ns, name, argv);
        self.bgs.push(bg);
        self.bgs.last_mut().expect("just pushed")
    }

    /// Starts a background process inside `ns`, owned by the caller.
    pub fn spawn_bg(&self, ns: &str, name: &str, argv: &[&str]) -> Bg {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(argv);
        Bg::spawn(&self.dir, name, &v)
    }

    /// True when interface `dev` exists in namespace `ns`.
    pub fn link_exists(&self, ns: &str, dev: &str) -> bool {
        run(&["ip", "-n", ns, "link", "show", "dev", dev], SHORT).success()
    }

    /// The MAC address of `dev` in `ns`, lower case.
    pub fn mac(&self, ns: &str, dev: &str) -> String {
        let out = sh(&["ip", "-j", "-n", ns, "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ip -j link output is not JSON ({e}): {out}"));
        v.get(0)
            .and_then(|l| l.get("address"))
            .and_then(|a| a.as_str())
            .unwrap_or_else(|| panic!("no address in `ip -j link show {dev}`: {out}"))
            .to_ascii_lowercase()
    }

    /// The MAC address of host `n`'s interface.
    pub fn host_mac(&self, n: u8) -> String {
        let h = self.host(n);
        self.mac(&h.ns, &h.dev)
    }

    // ---- the daemon ---------------------------------------------------------------------

    /// Starts `vswitchd` in the switch namespace and waits until it answers `vsctl show`.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        let _ = vsctl_bin(); // fail early with the "build the workspace first" hint
        self.starts += 1;
        {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("open daemon log");
            let _ = writeln!(
                f,
                "===== test harness: start #{} of vswitchd =====",
                self.starts
            );
        }
        let out_path = self.dir.join(format!("vswitchd.{}.out", self.starts));
        let bg = spawn_vswitchd(
            "vswitchd",
            &self.sw,
            &self.sock,
            &self.db,
            &self.log,
            &out_path,
            &self.daemon_args,
        );
        self.daemon = Some(Daemon { bg });
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.daemon_mut().bg.try_wait() {
                panic!("vswitchd exited during start-up ({s})\n{}", self.log_text());
            }
            if self.sock.exists() && self.vsctl(&["show"]).success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vswitchd did not answer `vsctl show` within 15 s\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn daemon_mut(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon is running")
    }

    /// The daemon's process id.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon is running").bg.pid()
    }

    /// Sends `sig` to the daemon and waits up to `timeout` for it to exit; returns its exit
    /// status (panics if it does not exit).
    pub fn signal_daemon(&mut self, sig: libc::c_int, timeout: Duration) -> ExitStatus {
        let mut d = self.daemon.take().expect("daemon is running");
        d.bg.signal(sig);
        match d.bg.wait_timeout(timeout) {
            Some(s) => s,
            None => {
                let log = self.log_text();
                drop(d); // kills it
                panic!("vswitchd did not exit within {timeout:?} after signal {sig}\n{log}");
            }
        }
    }

    /// The daemon's log, framed for a failure message.
    pub fn log_text(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines.len().saturating_sub(300);
        format!(
            "===== vswitchd log {} (last {} lines) =====\n{}\n===== end of vswitchd log =====",
            self.log.display(),
            lines.len() - tail,
            lines[tail..].join("\n")
        )
    }

    // ---- vsctl ------------------------------------------------------------------------

    /// Runs `vsctl --sock SOCK ARGS…` from the root namespace.
    pub fn vsctl(&self, args: &[&str]) -> Out {
        vsctl_at(&self.sock, args)
    }

    /// Runs vsctl and asserts success (printing the daemon log otherwise); returns stdout.
    pub fn vsctl_ok(&self, args: &[&str]) -> String {
        let o = self.vsctl(args);
        assert!(o.success(), "vsctl failed: {o}\n{}", self.log_text());
        o.stdout
    }

    /// Runs `vsctl --json ARGS…` and parses the output.
    pub fn vsctl_json(&self, args: &[&str]) -> Data {
        let mut v = vec!["--json"];
        v.extend_from_slice(args);
        parse_data(args, &self.vsctl_ok(&v))
    }

    /// `vsctl show --json`.
    pub fn show(&self) -> Vec<BridgeInfo> {
        match self.vsctl_json(&["show"]) {
            Data::Show { bridges, .. } => bridges,
            other => panic!("show --json returned {other:?}"),
        }
    }

    /// `vsctl fdb-show BR --json`.
    pub fn fdb(&self, br: &str) -> Vec<FdbEntry> {
        fdb_of(self.vsctl_json(&["fdb-show", br]), br)
    }

    /// `vsctl stats BR --json`, the bridge's entry.
    pub fn stats(&self, br: &str) -> BridgeStats {
        stats_of(self.vsctl_json(&["stats", br]), br)
    }

    /// The counters of one port.
    pub fn port_stats(&self, br: &str, port: &str) -> PortStats {
        self.stats(br)
            .ports
            .into_iter()
            .find(|p| p.name == port)
            .unwrap_or_else(|| panic!("stats of {br} have no port {port}"))
    }

    /// The state (`up`/`down`) of `port` on `br` per `show --json`.
    pub fn port_state(&self, br: &str, port: &str) -> Option<String> {
        self.show()
            .into_iter()
            .find(|b| b.name == br)
            .and_then(|b| b.ports.into_iter().find(|p| p.name == port))
            .map(|p| p.state)
    }

    /// Waits until every port of `ports` on `br` is in `state`.
    pub fn wait_ports(&self, br: &str, ports: &[&str], state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let show = self.show();
            let b = show.iter().find(|b| b.name == br);
            let pending: Vec<String> = ports
                .iter()
                .filter(|p| {
                    b.and_then(|b| b.ports.iter().find(|q| q.name == **p))
                        .map(|q| q.state.as_str())
                        != Some(state)
                })
                .map(|p| (*p).to_string())
                .collect();
            if pending.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ports {pending:?} of {br} not {state} within {timeout:?}; show: {show:#?}\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates bridge `br` with the afpacket ports of `hosts`, and waits for them to be up.
    pub fn bridge_with_hosts(&self, br: &str, hosts: &[u8]) {
        self.vsctl_ok(&["add-br", br]);
        let ports: Vec<String> = hosts.iter().map(|n| self.host(*n).port.clone()).collect();
        for p in &ports {
            self.vsctl_ok(&["add-port", br, p]);
        }
        let refs: Vec<&str> = ports.iter().map(String::as_str).collect();
        self.wait_ports(br, &refs, "up", Duration::from_secs(10));
    }

    // ---- traffic ------------------------------------------------------------------------

    /// Pings `ip` from host `from`: `count` replies must arrive within `deadline_s` seconds.
    pub fn ping_out(&self, from: u8, ip: &str, count: u32, interval: &str, deadline_s: u32) -> Out {
        let h = self.host(from);
        let c = count.to_string();
        let w = deadline_s.to_string();
        self.exec_t(
            &h.ns,
            &["ping", "-n", "-q", "-c", &c, "-i", interval, "-w", &w, ip],
            LONG,
        )
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
        let ip = self.ip(to);
        let o = self.ping_out(from, &ip, 3, "0.2", 10);
        assert!(
            o.success(),
            "h{from} cannot ping h{to} ({ip}): {o}\n{}",
            self.diag()
        );
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

    /// A snapshot for failure messages: `vsctl show`, `stats`, and the daemon log.
    pub fn diag(&self) -> String {
        let mut s = String::new();
        if self.daemon.is_some() {
            let show = self.vsctl(&["show"]);
            let stats = self.vsctl(&["stats"]);
            let _ = write!(s, "--- vsctl show ---\n{}{}\n", show.stdout, show.stderr);
            let _ = write!(s, "--- vsctl stats ---\n{}{}\n", stats.stdout, stats.stderr);
        }
        s.push_str(&self.log_text());
        s
    }

    /// Starts a one-off iperf3 server in host `n` on `port` and waits until it listens.
    pub fn iperf3_server(&mut self, n: u8, port: u16) {
        let h = self.host(n).clone();
        let name = format!("iperf3-s-h{n}-{port}");
        let p = port.to_string();
        self.spawn_in(&h.ns, &name, &["iperf3", "-s", "-1", "-B", &h.ip, "-p", &p]);
        let needle = format!(":{port} ");
        wait_until("iperf3 server to listen", Duration::from_secs(10), || {
            self.exec(&h.ns, &["ss", "-Hltn"]).stdout.contains(&needle)
        });
    }

    /// Runs an iperf3 client in host `from` against host `to` (`extra` e.g. `-u -b 200M`),
    /// `secs` seconds; returns the parsed JSON report.
    pub fn iperf3(&mut self, from: u8, to: u8, secs: u32, extra: &[&str]) -> serde_json::Value {
        let port = 5201 + u16::try_from(self.bgs.len()).expect("few helpers");
        self.iperf3_server(to, port);
        let ip = self.ip(to);
        let t = secs.to_string();
        let p = port.to_string();
        let mut argv = vec!["iperf3", "-c", &ip, "-p", &p, "-t", &t, "-J"];
        argv.extend_from_slice(extra);
        let ns = self.host(from).ns.clone();
        let o = self.exec_t(&ns, &argv, Duration::from_secs(u64::from(secs) + 30));
        let v: serde_json::Value = serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("iperf3 printed no JSON ({e}): {o}\n{}", self.diag()));
        if let Some(err) = v.get("error") {
            panic!("iperf3 failed: {err}\n{o}\n{}", self.diag());
        }
        assert!(o.success(), "iperf3 failed: {o}\n{}", self.diag());
        v
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        // Helpers first, then the daemon (so TAPs it created go with it), then the namespaces
        // (which destroy the veths in them).
        for mut bg in self.bgs.drain(..) {
            bg.signal(libc::SIGKILL);
            let _ = bg.wait_timeout(Duration::from_secs(5));
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = d.bg.stop(Duration::from_secs(3));
        }
        for ns in self.namespaces.iter().rev() {
            // Anything still running in our namespaces was started by this test.
            if let Ok(o) = try_run(&["ip", "netns", "pids", ns], SHORT) {
                for pid in o.stdout.split_whitespace() {
                    if let Ok(pid) = pid.parse::<u32>() {
                        signal(pid, libc::SIGKILL);
                    }
                }
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = try_run(&["ip", "netns", "del", ns], SHORT);
        }
        if panicking {
            eprintln!("{}", self.log_text());
            eprintln!("(test files kept in {})", self.dir.display());
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
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => {
                buf.extend_from_slice(&chunk[..k]);
                if buf.contains(&b'\n') {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "vswitchd neither answered nor closed the connection within 10 s (request of {} bytes)",
                    bytes.len()
                )
            }
            Err(_) => break, // reset: treated as closed
        }
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

/// Gbps from bits per second.
pub fn gbps(bps: f64) -> f64 {
    bps / 1e9
}

// ---------------------------------------------------------------------------------------
// More than one switch: extra namespaces, veths between them, hosts on any of them
// ---------------------------------------------------------------------------------------

impl Lab {
    /// Creates namespace `<prefix>-<suffix>`, owned by the lab (deleted on drop, every
    /// process in it killed first). Returns its name.
    pub fn add_named_ns(&mut self, suffix: &str) -> String {
        let ns = format!("{}-{suffix}", self.prefix);
        self.add_ns(&ns);
        ns
    }

    /// Adds host `hN` like [`Lab::add_host`], but with its switch-side veth end `hNp` in
    /// namespace `sw_ns` (another switch, Open vSwitch, …). Returns N.
    pub fn add_host_on(&mut self, sw_ns: &str) -> u8 {
        let n = u8::try_from(self.hosts.len() + 1).expect("fewer than 255 hosts");
        let ns = self.host_ns(n);
        self.add_ns(&ns);
        let host = Host {
            n,
            ns: ns.clone(),
            dev: "eth0".into(),
            port: format!("h{n}p"),
            ip: self.ip(n),
        };
        self.hosts.push(host.clone());
        self.veth_between(sw_ns, &host.port, &ns, "eth0");
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", host.ip),
            "dev",
            "eth0",
        ]);
        n
    }

    /// Creates a veth pair, `a` in namespace `ns_a` and `b` in `ns_b`, both up.
    pub fn veth_between(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) {
        sh(&[
            "ip", "-n", ns_a, "link", "add", a, "type", "veth", "peer", "name", b, "netns", ns_b,
        ]);
        sh(&["ip", "-n", ns_a, "link", "set", a, "up"]);
        sh(&["ip", "-n", ns_b, "link", "set", b, "up"]);
    }

    /// Gives host `n`'s interface the MAC address `mac`.
    pub fn set_host_mac(&self, n: u8, mac: &str) {
        let h = self.host(n).clone();
        sh(&["ip", "-n", &h.ns, "link", "set", &h.dev, "address", mac]);
    }

    /// `vsctl list-vlans BR --json`, the rows.
    pub fn list_vlans(&self, br: &str) -> Vec<ctl::VlanRow> {
        list_vlans_of(self.vsctl_json(&["list-vlans", br]), br)
    }

    /// Asserts, with all pings running at once, that each `(from, to)` of `pairs` pings
    /// (`reach`) or gets no reply at all (`!reach`: 2 echo requests, none answered).
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

    /// Starts another `vswitchd` in a new namespace `<prefix>-<name>` with its own socket,
    /// config file and log under the lab's directory. The caller owns it; declare it after
    /// the lab so that it is dropped (stopped) first.
    pub fn add_switch(&mut self, name: &str) -> Switch {
        let ns = self.add_named_ns(name);
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).expect("create the switch's directory");
        let mut s = Switch {
            name: name.to_string(),
            ns,
            sock: dir.join("sock"),
            db: dir.join("conf.json"),
            log: dir.join("vswitchd.log"),
            dir,
            daemon_args: self.daemon_args.clone(),
            bg: None,
            starts: 0,
        };
        s.start();
        s
    }

    /// Runs `argv` in `ns` and parses its stdout as JSON.
    pub fn exec_json(&self, ns: &str, argv: &[&str]) -> serde_json::Value {
        let out = self.exec_ok(ns, argv);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{argv:?} printed bad JSON ({e}):\n{out}"))
    }
}

/// Runs `vsctl --sock SOCK ARGS…`.
pub fn vsctl_at(sock: &Path, args: &[&str]) -> Out {
    let bin = vsctl_bin();
    let mut v = vec![
        bin.to_str().expect("utf-8 path"),
        "--sock",
        sock.to_str().expect("utf-8 path"),
    ];
    v.extend_from_slice(args);
    run(&v, SHORT)
}

/// Parses what `vsctl --json ARGS…` printed.
fn parse_data(args: &[&str], out: &str) -> Data {
    serde_json::from_str(out)
        .unwrap_or_else(|e| panic!("vsctl --json {args:?} printed bad JSON ({e}):\n{out}"))
}

/// The entries of `fdb-show --json BR`.
fn fdb_of(d: Data, br: &str) -> Vec<FdbEntry> {
    match d {
        Data::Fdb { bridge, entries } => {
            assert_eq!(bridge, br, "fdb-show answered for another bridge");
            entries
        }
        other => panic!("fdb-show --json returned {other:?}"),
    }
}

/// Bridge `br`'s entry of `stats --json`.
fn stats_of(d: Data, br: &str) -> BridgeStats {
    match d {
        Data::Stats { bridges, .. } => bridges
            .into_iter()
            .find(|b| b.name == br)
            .unwrap_or_else(|| panic!("stats --json {br} has no bridge {br}")),
        other => panic!("stats --json returned {other:?}"),
    }
}

fn list_vlans_of(d: Data, br: &str) -> Vec<ctl::VlanRow> {
    match d {
        Data::Vlans { bridge, ports } => {
            assert_eq!(bridge, br, "list-vlans answered for another bridge");
            ports
        }
        other => panic!("list-vlans --json returned {other:?}"),
    }
}

/// Starts `vswitchd` in namespace `ns` with socket `sock` and config `db`: stdout to
/// `out_path`, stderr appended to `log`, `VSWITCH_SOCK` cleared, `extra` arguments last.
pub fn spawn_vswitchd(
    name: &str,
    ns: &str,
    sock: &Path,
    db: &Path,
    log: &Path,
    out_path: &Path,
    extra: &[String],
) -> Bg {
    let bin = vswitchd_bin();
    let mut argv = vec![
        "ip",
        "netns",
        "exec",
        ns,
        bin.to_str().expect("utf-8 path"),
        "--sock",
        sock.to_str().expect("utf-8 path"),
        "--db",
        db.to_str().expect("utf-8 path"),
        "--log-level",
        "debug",
    ];
    argv.extend(extra.iter().map(String::as_str));
    let out = fs::File::create(out_path).expect("create stdout file");
    let err = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open daemon log");
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .env_remove(ctl::SOCK_ENV)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Bg {
        name: name.to_string(),
        child,
        stdout_path: out_path.to_path_buf(),
        stderr_path: log.to_path_buf(),
        status: None,
    }
}

/// Another `vswitchd`, in its own namespace; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Switch {
    pub name: String,
    /// Its namespace.
    pub ns: String,
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub db: PathBuf,
    /// Its stderr, appended across restarts.
    pub log: PathBuf,
    pub daemon_args: Vec<String>,
    bg: Option<Bg>,
    starts: u32,
}

impl Switch {
    /// Starts the daemon and waits until it answers `vsctl show`.
    pub fn start(&mut self) {
        assert!(self.bg.is_none(), "{}: daemon already running", self.name);
        self.starts += 1;
        let out_path = self.dir.join(format!("vswitchd.{}.out", self.starts));
        self.bg = Some(spawn_vswitchd(
            &format!("vswitchd-{}", self.name),
            &self.ns,
            &self.sock,
            &self.db,
            &self.log,
            &out_path,
            &self.daemon_args,
        ));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.bg.as_mut().and_then(Bg::try_wait) {
                panic!(
                    "vswitchd ({}) exited during start-up ({s})\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if self.sock.exists() && self.vsctl(&["show"]).success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vswitchd ({}) did not answer `vsctl show` within 15 s\n{}",
                self.name,
                self.log_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's log, framed for a failure message.
    pub fn log_text(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines.len().saturating_sub(200);
        format!(
            "===== vswitchd ({}) log {} (last {} lines) =====\n{}\n===== end of vswitchd ({}) log =====",
            self.name,
            self.log.display(),
            lines.len() - tail,
            lines[tail..].join("\n"),
            self.name
        )
    }

    /// `vsctl show` and `stats` of this switch and its log, for failure messages.
    pub fn diag(&self) -> String {
        let show = self.vsctl(&["show"]);
        let stats = self.vsctl(&["stats"]);
        format!(
            "--- vsctl show ({}) ---\n{}{}\n--- vsctl stats ({}) ---\n{}{}\n{}",
            self.name,
            show.stdout,
            show.stderr,
            self.name,
            stats.stdout,
            stats.stderr,
            self.log_text()
        )
    }

    /// Runs `vsctl --sock SOCK ARGS…` from the root namespace.
    pub fn vsctl(&self, args: &[&str]) -> Out {
        vsctl_at(&self.sock, args)
    }

    /// Runs vsctl and asserts success; returns stdout.
    pub fn vsctl_ok(&self, args: &[&str]) -> String {
        let o = self.vsctl(args);
        assert!(
            o.success(),
            "vsctl ({}) failed: {o}\n{}",
            self.name,
            self.log_text()
        );
        o.stdout
    }

    /// Runs `vsctl --json ARGS…` and parses the output.
    pub fn vsctl_json(&self, args: &[&str]) -> Data {
        let mut v = vec!["--json"];
        v.extend_from_slice(args);
        parse_data(args, &self.vsctl_ok(&v))
    }

    /// `vsctl fdb-show BR --json`.
    pub fn fdb(&self, br: &str) -> Vec<FdbEntry> {
        fdb_of(self.vsctl_json(&["fdb-show", br]), br)
    }

    /// `vsctl stats BR --json`, the bridge's entry.
    pub fn stats(&self, br: &str) -> BridgeStats {
        stats_of(self.vsctl_json(&["stats", br]), br)
    }

    /// `vsctl list-vlans BR --json`, the rows.
    pub fn list_vlans(&self, br: &str) -> Vec<ctl::VlanRow> {
        list_vlans_of(self.vsctl_json(&["list-vlans", br]), br)
    }

    /// Waits until every port of `ports` on `br` is up.
    pub fn wait_ports_up(&self, br: &str, ports: &[&str], timeout: Duration) {
        wait_until(
            &format!("ports {ports:?} of {br} on {} to be up", self.name),
            timeout,
            || match self.vsctl_json(&["show"]) {
                Data::Show { bridges, .. } => bridges.iter().any(|b| {
                    b.name == br
                        && ports
                            .iter()
                            .all(|p| b.ports.iter().any(|q| q.name == *p && q.state == "up"))
                }),
                _ => false,
            },
        );
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if let Some(mut bg) = self.bg.take() {
            let _ = bg.stop(Duration::from_secs(3));
        }
        if thread::panicking() {
            eprintln!("{}", self.log_text());
        }
    }
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
        self.bg.signal(libc::SIGINT);
        if self.bg.wait_timeout(Duration::from_secs(5)).is_none() {
            self.bg.signal(libc::SIGKILL);
            let _ = self.bg.wait_timeout(Duration::from_secs(5));
        }
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
                Err(e) => tried.push(e),
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
        let env = [
            format!("OVS_RUNDIR={d}"),
            format!("OVS_LOGDIR={d}"),
            format!("OVS_DBDIR={d}"),
            format!("OVS_SYSCONFDIR={d}"),
        ];
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        let mut ovs = Ovs {
            ns: ns.to_string(),
            db: format!("unix:{d}/db.sock"),
            ctl: dir.join("ovs-vswitchd.ctl"),
            dir: dir.clone(),
            vswitchd: None,
            ovsdb: None,
        };
        let remote = format!("--remote=punix:{d}/db.sock");
        let unixctl = format!("--unixctl={d}/ovsdb-server.ctl");
        let pidfile = format!("--pidfile={d}/ovsdb-server.pid");
        let logfile = format!("--log-file={d}/ovsdb-server.log");
        let mut argv = vec!["env"];
        argv.extend_from_slice(&env);
        argv.extend_from_slice(&[
            "ovsdb-server",
            &conf,
            &remote,
            &unixctl,
            &pidfile,
            &logfile,
            "--no-chdir",
            "-vconsole:off",
            "-vsyslog:off",
            "-vfile:info",
        ]);
        ovs.ovsdb = Some(lab.spawn_bg(ns, "ovsdb-server", &argv));
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
        let unixctl = format!("--unixctl={d}/ovs-vswitchd.ctl");
        let pidfile = format!("--pidfile={d}/ovs-vswitchd.pid");
        let logfile = format!("--log-file={d}/ovs-vswitchd.log");
        let mut argv = vec!["env"];
        argv.extend_from_slice(&env);
        argv.extend_from_slice(&[
            "ovs-vswitchd",
            &ovs.db,
            &unixctl,
            &pidfile,
            &logfile,
            "--no-chdir",
            "-vconsole:off",
            "-vsyslog:off",
            "-vfile:info",
        ]);
        ovs.vswitchd = Some(lab.spawn_bg(ns, "ovs-vswitchd", &argv));
        let ctl = ovs.ctl.clone();
        ovs.wait_alive("ovs-vswitchd to create its control socket", || ctl.exists());
        ovs
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

// ---------------------------------------------------------------------------------------
// A daemon started through a wrapper (faults.rs: a private mount namespace)
// ---------------------------------------------------------------------------------------

impl Lab {
    /// Starts `vswitchd` like [`Lab::start_daemon`], but as
    /// `ip netns exec SW WRAPPER… vswitchd ARGS…`: `wrapper` must end by exec'ing the rest
    /// of its arguments (`unshare --mount … sh -c '…; exec "$@"' sh`), so that the pid the
    /// lab signals is the daemon's. Waits until it answers `vsctl show`.
    pub fn start_daemon_wrapped(&mut self, wrapper: &[&str]) {
        assert!(self.daemon.is_none(), "daemon already running");
        let _ = vsctl_bin();
        self.starts += 1;
        {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("open daemon log");
            let _ = writeln!(
                f,
                "===== test harness: start #{} of vswitchd (wrapped: {}) =====",
                self.starts,
                cmdline(wrapper)
            );
        }
        let bin = vswitchd_bin();
        let mut argv = vec!["ip", "netns", "exec", self.sw.as_str()];
        argv.extend_from_slice(wrapper);
        argv.extend_from_slice(&[
            bin.to_str().expect("utf-8 path"),
            "--sock",
            self.sock.to_str().expect("utf-8 path"),
            "--db",
            self.db.to_str().expect("utf-8 path"),
            "--log-level",
            "debug",
        ]);
        argv.extend(self.daemon_args.iter().map(String::as_str));
        let out_path = self.dir.join(format!("vswitchd.{}.out", self.starts));
        let out = fs::File::create(&out_path).expect("create stdout file");
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open daemon log");
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .env_remove(ctl::SOCK_ENV)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmdline(&argv)));
        self.daemon = Some(Daemon {
            bg: Bg {
                name: "vswitchd".into(),
                child,
                stdout_path: out_path,
                stderr_path: self.log.clone(),
                status: None,
            },
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.daemon_mut().bg.try_wait() {
                panic!(
                    "vswitchd (wrapped) exited during start-up ({s})\n{}",
                    self.log_text()
                );
            }
            if self.sock.exists() && self.vsctl(&["show"]).success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vswitchd (wrapped) did not answer `vsctl show` within 15 s\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// True while the daemon process runs (it has not exited or been killed).
    pub fn daemon_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|d| d.bg.try_wait().is_none())
    }
}
