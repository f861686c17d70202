//! `vswitchd` under test and `vsctl` to talk to it. The daemon always runs inside a
//! namespace the lab made (`ip netns exec NS vswitchd --sock … --db …`), with
//! `VSWITCH_SOCK` taken out of its environment so it never picks up a system socket.
//!
//! Two layers: [`Spec`], [`wait_ready`], [`vsctl`] and [`vsctl_json`] return errors and
//! leave the wording of failures to the caller (vstopo's messages are its own); a
//! [`Switchd`] is one daemon's whole life for a test — start, restart, signals, logs,
//! typed `vsctl --json` answers — and panics with the daemon's log on any failure.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use ctl::{BridgeInfo, BridgeStats, Data, FdbEntry, PortStats, VlanRow};

use crate::bg::{tail_of, Bg, Output};
use crate::proc::{cmdline, try_run, which, Opts, Out, RunError};
use crate::stop::{sleep, stop_signal, SIGTERM};
use crate::SHORT;

/// How long a daemon may take to answer after it was started.
pub const READY: Duration = Duration::from_secs(15);

/// `name` in `dir` (a cargo build puts the workspace's binaries together), else on `PATH`.
pub fn find_program(name: &str, dir: &Path) -> Option<PathBuf> {
    let next = dir.join(name);
    if next.is_file() {
        return Some(next);
    }
    which(name)
}

/// The daemon's programs.
#[derive(Debug, Clone)]
pub struct Bins {
    pub vswitchd: PathBuf,
    pub vsctl: PathBuf,
}

impl Bins {
    /// `vswitchd` as given and `vsctl` in the same directory (built by the `vswitch-ctl`
    /// package); panics with the build hint when either is missing.
    pub fn beside(vswitchd: &Path) -> Bins {
        let dir = vswitchd.parent().unwrap_or(Path::new("."));
        let vsctl = dir.join("vsctl");
        for p in [vswitchd, vsctl.as_path()] {
            assert!(
                p.is_file(),
                "{} not found: build the workspace first: cargo build --workspace [--release]",
                p.display()
            );
        }
        Bins {
            vswitchd: vswitchd.to_path_buf(),
            vsctl,
        }
    }
}

/// How to start one `vswitchd`.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    pub vswitchd: &'a Path,
    /// The namespace it runs in.
    pub ns: &'a str,
    pub sock: &'a Path,
    pub db: &'a Path,
    /// Arguments after `--sock` and `--db` (`--log-level`, `--workers`, …).
    pub args: &'a [String],
    /// A command between `ip netns exec NS` and the daemon, which must end by exec'ing
    /// the rest of its arguments (so the pid signalled is the daemon's).
    pub wrapper: &'a [&'a str],
}

impl<'a> Spec<'a> {
    /// `vswitchd` in `ns` with `sock`, `db` and `args`, not wrapped.
    pub fn new(
        vswitchd: &'a Path,
        ns: &'a str,
        sock: &'a Path,
        db: &'a Path,
        args: &'a [String],
    ) -> Spec<'a> {
        Spec {
            vswitchd,
            ns,
            sock,
            db,
            args,
            wrapper: &[],
        }
    }

    /// The command line.
    pub fn argv(&self) -> Vec<String> {
        let mut v: Vec<String> = ["ip", "netns", "exec", self.ns]
            .iter()
            .chain(self.wrapper)
            .map(|s| (*s).to_string())
            .collect();
        v.extend([
            self.vswitchd.display().to_string(),
            "--sock".into(),
            self.sock.display().to_string(),
            "--db".into(),
            self.db.display().to_string(),
        ]);
        v.extend(self.args.iter().cloned());
        v
    }

    /// Starts it (not waiting for it to answer), output to `out`; in a process group of
    /// its own if `own_group`.
    pub fn spawn(&self, name: &str, out: Output, own_group: bool) -> Result<Bg, RunError> {
        let opts = Opts {
            env_remove: vec![ctl::SOCK_ENV.to_string()],
            own_group,
            ..Opts::default()
        };
        Bg::start(name, &self.argv(), out, &opts)
    }
}

/// Why a daemon did not come up.
#[derive(Debug)]
pub enum NotReady {
    /// It exited first.
    Exited(ExitStatus),
    /// It did not answer in time.
    Timeout,
    /// A stop signal arrived while waiting.
    Stopped(i32),
}

/// Polls `ready` every 50 ms until it holds, the daemon exits, `timeout` passes or a stop
/// signal arrives.
pub fn wait_ready(
    bg: &mut Bg,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = bg.try_wait() {
            return Err(NotReady::Exited(s));
        }
        if ready() {
            return Ok(());
        }
        if let Some(s) = stop_signal() {
            return Err(NotReady::Stopped(s));
        }
        if Instant::now() > deadline {
            return Err(NotReady::Timeout);
        }
        if let Err(RunError::Stopped(s)) = sleep(Duration::from_millis(50)) {
            return Err(NotReady::Stopped(s));
        }
    }
}

/// Runs `vsctl --sock SOCK ARGS…` from the root namespace.
pub fn vsctl(vsctl: &Path, sock: &Path, args: &[&str]) -> Result<Out, RunError> {
    let bin = vsctl.display().to_string();
    let sock = sock.display().to_string();
    let mut v = vec![bin.as_str(), "--sock", sock.as_str()];
    v.extend_from_slice(args);
    try_run(&v, SHORT)
}

/// True when the daemon behind `sock` answers `vsctl show`.
pub fn answers(vsctl_bin: &Path, sock: &Path) -> bool {
    sock.exists() && vsctl(vsctl_bin, sock, &["show"]).is_ok_and(|o| o.success())
}

/// `vsctl --json ARGS…`, which must succeed, parsed.
pub fn vsctl_json(vsctl_bin: &Path, sock: &Path, args: &[&str]) -> anyhow::Result<Data> {
    let mut v = vec!["--json"];
    v.extend_from_slice(args);
    let o = vsctl(vsctl_bin, sock, &v)?.must()?;
    serde_json::from_str(&o.stdout).with_context(|| {
        format!(
            "vsctl --json {} printed bad JSON: {}",
            args.join(" "),
            o.stdout
        )
    })
}

/// One `vswitchd` of a test in namespace `ns`, its files under `dir`: control socket
/// `sock`, config `db`, stderr appended to `log` across restarts, stdout of start N in
/// `vswitchd.N.out`. Stopped (SIGTERM, then SIGKILL) when dropped; on a panic its log is
/// printed.
pub struct Switchd {
    /// Its name in messages (`sw`, `hv2`, …).
    pub name: String,
    pub ns: String,
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
    /// Extra arguments (e.g. `--rx-ring v3`), after `--log-level debug`.
    pub daemon_args: Vec<String>,
    pub bins: Bins,
    bg: Option<Bg>,
    starts: u32,
}

impl Switchd {
    /// A daemon to be started in `ns` with its files in `dir` (created now).
    pub fn new(name: &str, ns: &str, dir: &Path, bins: Bins) -> Switchd {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Switchd {
            name: name.to_string(),
            ns: ns.to_string(),
            dir: dir.to_path_buf(),
            sock: dir.join("sock"),
            db: dir.join("conf.json"),
            log: dir.join("vswitchd.log"),
            daemon_args: Vec::new(),
            bins,
            bg: None,
            starts: 0,
        }
    }

    /// Starts the daemon and waits until it answers `vsctl show`.
    pub fn start(&mut self) {
        self.start_wrapped(&[]);
    }

    /// Starts the daemon as `ip netns exec NS WRAPPER… vswitchd ARGS…` (see
    /// [`Spec::wrapper`]) and waits until it answers `vsctl show`.
    pub fn start_wrapped(&mut self, wrapper: &[&str]) {
        assert!(
            self.bg.is_none(),
            "{}: daemon already running",
            self.label()
        );
        self.starts += 1;
        let how = if wrapper.is_empty() {
            String::new()
        } else {
            format!(" (wrapped: {})", cmdline(wrapper))
        };
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
        {
            let _ = writeln!(
                f,
                "===== test harness: start #{} of vswitchd{how} =====",
                self.starts
            );
        }
        let mut args = vec!["--log-level".to_string(), "debug".to_string()];
        args.extend(self.daemon_args.iter().cloned());
        let spec = Spec {
            wrapper,
            ..Spec::new(&self.bins.vswitchd, &self.ns, &self.sock, &self.db, &args)
        };
        let out = self.dir.join(format!("vswitchd.{}.out", self.starts));
        let mut bg = spec
            .spawn(&self.label(), Output::split(&out, &self.log), false)
            .unwrap_or_else(|e| panic!("{e}"));
        let (vsctl, sock) = (&self.bins.vsctl, &self.sock);
        let r = wait_ready(&mut bg, READY, || answers(vsctl, sock));
        self.bg = Some(bg);
        match r {
            Ok(()) => {}
            Err(NotReady::Exited(s)) => panic!(
                "{}{how} exited during start-up ({s})\n{}",
                self.label(),
                self.log_text()
            ),
            Err(_) => panic!(
                "{}{how} did not answer `vsctl show` within {READY:?}\n{}",
                self.label(),
                self.log_text()
            ),
        }
    }

    /// `vswitchd (NAME)`, for messages.
    pub fn label(&self) -> String {
        format!("vswitchd ({})", self.name)
    }

    /// True while the daemon process runs (it has not exited or been killed).
    pub fn running(&mut self) -> bool {
        self.bg.as_mut().is_some_and(Bg::alive)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.bg.as_ref().map(Bg::pid).unwrap_or_else(|| {
            panic!("{} is not running", self.label());
        })
    }

    /// Sends `sig` to the daemon and waits up to `timeout` for it to exit; returns its
    /// exit status (panics if it does not exit).
    pub fn signal(&mut self, sig: i32, timeout: Duration) -> ExitStatus {
        let label = self.label();
        let mut bg = self
            .bg
            .take()
            .unwrap_or_else(|| panic!("{label} is not running"));
        bg.signal(sig);
        match bg.wait_timeout(timeout) {
            Some(s) => s,
            None => {
                drop(bg); // kills it
                panic!(
                    "{label} did not exit within {timeout:?} after signal {sig}\n{}",
                    self.log_text()
                );
            }
        }
    }

    /// Stops the daemon if it runs: SIGTERM, then SIGKILL after 3 s.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.bg
            .take()
            .and_then(|mut bg| bg.stop_with(SIGTERM, Duration::from_secs(3)))
    }

    /// The end of the daemon's log, framed for a failure message.
    pub fn log_text(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let n = log.lines().count().min(300);
        format!(
            "===== {} log {} (last {n} lines) =====\n{}\n===== end of {} log =====",
            self.label(),
            self.log.display(),
            tail_of(&log, n),
            self.label()
        )
    }

    /// `vsctl show` and `stats` (while the daemon runs) and its log, for failure messages.
    pub fn diag(&self) -> String {
        let mut s = String::new();
        if self.bg.is_some() {
            for verb in ["show", "stats"] {
                let o = self.vsctl(&[verb]);
                let _ = writeln!(
                    s,
                    "--- vsctl {verb} ({}) ---\n{}{}",
                    self.name, o.stdout, o.stderr
                );
            }
        }
        s.push_str(&self.log_text());
        s
    }

    /// Runs `vsctl --sock SOCK ARGS…` from the root namespace.
    pub fn vsctl(&self, args: &[&str]) -> Out {
        vsctl(&self.bins.vsctl, &self.sock, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs vsctl and asserts success (printing the daemon's log otherwise); returns stdout.
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
        vsctl_json(&self.bins.vsctl, &self.sock, args)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.log_text()))
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
        self.rows_of("fdb-show", br, |d| match d {
            Data::Fdb { bridge, entries } => Ok((bridge, entries)),
            other => Err(Box::new(other)),
        })
    }

    /// The rows `vsctl --json VERB BR` answered (`rows` picks them out of the answer,
    /// with the bridge they are about, which must be `br`).
    fn rows_of<T>(
        &self,
        verb: &str,
        br: &str,
        rows: impl FnOnce(Data) -> Result<(String, Vec<T>), Box<Data>>,
    ) -> Vec<T> {
        match rows(self.vsctl_json(&[verb, br])) {
            Ok((bridge, v)) => {
                assert_eq!(bridge, br, "{verb} answered for another bridge");
                v
            }
            Err(other) => panic!("{verb} --json returned {other:?}"),
        }
    }

    /// `vsctl stats BR --json`, the bridge's entry.
    pub fn stats(&self, br: &str) -> BridgeStats {
        match self.vsctl_json(&["stats", br]) {
            Data::Stats { bridges, .. } => bridges
                .into_iter()
                .find(|b| b.name == br)
                .unwrap_or_else(|| panic!("stats --json {br} has no bridge {br}")),
            other => panic!("stats --json returned {other:?}"),
        }
    }

    /// The counters of one port.
    pub fn port_stats(&self, br: &str, port: &str) -> PortStats {
        self.stats(br)
            .ports
            .into_iter()
            .find(|p| p.name == port)
            .unwrap_or_else(|| panic!("stats of {br} have no port {port}"))
    }

    /// `vsctl list-vlans BR --json`, the rows.
    pub fn list_vlans(&self, br: &str) -> Vec<VlanRow> {
        self.rows_of("list-vlans", br, |d| match d {
            Data::Vlans { bridge, ports } => Ok((bridge, ports)),
            other => Err(Box::new(other)),
        })
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
            let pending: Vec<&str> = ports
                .iter()
                .copied()
                .filter(|p| {
                    b.and_then(|b| b.ports.iter().find(|q| q.name == *p))
                        .map(|q| q.state.as_str())
                        != Some(state)
                })
                .collect();
            if pending.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let log = self.log_text();
                panic!("ports {pending:?} of {br} on {} not {state} within {timeout:?}; show: {show:#?}\n{log}", self.name);
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every port of `ports` on `br` is up.
    pub fn wait_ports_up(&self, br: &str, ports: &[&str], timeout: Duration) {
        self.wait_ports(br, ports, "up", timeout);
    }
}

impl Drop for Switchd {
    fn drop(&mut self) {
        let _ = self.stop();
        if thread::panicking() && self.starts > 0 {
            eprintln!("{}", self.log_text());
        }
    }
}
