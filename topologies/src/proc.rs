//! Running other programs: every command with a timeout, every wait interruptible by
//! SIGINT, SIGTERM or SIGHUP (so a Ctrl-C during a build or a check still ends in a full
//! teardown), and the signal bookkeeping itself. Nothing here knows about topologies.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

static STOP: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

fn stop_flag() -> &'static Arc<AtomicUsize> {
    STOP.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// From now on SIGINT, SIGTERM and SIGHUP no longer kill this process: they set a flag
/// that every wait in this crate polls, so the caller can tear down and exit.
pub fn catch_signals() -> std::io::Result<()> {
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let n = usize::try_from(sig).unwrap_or(1);
        signal_hook::flag::register_usize(sig, Arc::clone(stop_flag()), n)?;
    }
    Ok(())
}

/// The signal that asked us to stop, if one did.
pub fn stop_signal() -> Option<i32> {
    match stop_flag().load(Ordering::SeqCst) {
        0 => None,
        n => i32::try_from(n).ok(),
    }
}

/// The name of a signal we catch.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Why a command gave no result.
#[derive(Debug)]
pub enum RunError {
    /// A signal asked us to stop; the command was killed.
    Stopped(i32),
    /// It ran longer than allowed and was killed.
    Timeout { cmd: String, timeout: Duration },
    /// It could not be started.
    Spawn { cmd: String, err: std::io::Error },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Stopped(s) => write!(f, "stopped by {}", signal_name(*s)),
            RunError::Timeout { cmd, timeout } => {
                write!(f, "`{cmd}` did not finish within {timeout:?}; killed it")
            }
            RunError::Spawn { cmd, err } => {
                write!(
                    f,
                    "cannot run `{cmd}`: {err} (missing tool? run scripts/deps.sh)"
                )
            }
        }
    }
}

impl std::error::Error for RunError {}

/// What a finished command left.
#[derive(Debug)]
pub struct Out {
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout and stderr, trimmed, for messages.
    pub fn text(&self) -> String {
        let mut s = self.stdout.trim().to_string();
        let e = self.stderr.trim();
        if !e.is_empty() {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(e);
        }
        s
    }
}

/// Quotes a command line for messages.
pub fn cmdline<S: AsRef<OsStr>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.as_ref().to_string_lossy();
            if a.is_empty() || a.contains([' ', '"', '\'', '$', '|', ';', '&']) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a command is run.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Keep running when a stop signal arrives (teardown commands).
    pub ignore_stop: bool,
}

/// Sends `sig` to `pid`; errors (already gone) are ignored.
pub fn kill(pid: u32, sig: Signal) {
    if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Runs `argv` to completion within `timeout`.
pub fn run<S: AsRef<OsStr>>(argv: &[S], timeout: Duration) -> Result<Out, RunError> {
    run_with(argv, timeout, &Opts::default())
}

/// Runs `argv` to completion within `timeout`, even when a stop signal arrives.
pub fn run_always<S: AsRef<OsStr>>(argv: &[S], timeout: Duration) -> Result<Out, RunError> {
    run_with(
        argv,
        timeout,
        &Opts {
            ignore_stop: true,
            ..Opts::default()
        },
    )
}

/// Runs `argv` with `opts` within `timeout`.
pub fn run_with<S: AsRef<OsStr>>(
    argv: &[S],
    timeout: Duration,
    opts: &Opts,
) -> Result<Out, RunError> {
    let cmd = cmdline(argv);
    let Some((prog, args)) = argv.split_first() else {
        return Err(RunError::Spawn {
            cmd,
            err: std::io::Error::other("empty command"),
        });
    };
    let mut c = Command::new(prog);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &opts.env {
        c.env(k, v);
    }
    let child = c.spawn().map_err(|err| RunError::Spawn {
        cmd: cmd.clone(),
        err,
    })?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let deadline = Instant::now() + timeout;
    loop {
        match rx.recv_timeout(Duration::from_millis(25)) {
            Ok(Ok(o)) => {
                return Ok(Out {
                    cmd,
                    status: o.status,
                    stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                })
            }
            Ok(Err(err)) => return Err(RunError::Spawn { cmd, err }),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(RunError::Spawn {
                    cmd,
                    err: std::io::Error::other("lost the waiter thread"),
                })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let stop = if opts.ignore_stop {
            None
        } else {
            stop_signal()
        };
        if stop.is_some() || Instant::now() >= deadline {
            kill(pid, Signal::KILL);
            // The waiter returns once the pipes close; a grandchild that keeps them open
            // must not keep us here.
            let _ = rx.recv_timeout(Duration::from_secs(2));
            return Err(match stop {
                Some(s) => RunError::Stopped(s),
                None => RunError::Timeout { cmd, timeout },
            });
        }
    }
}

/// Sleeps `d`, returning early with the signal if one asks us to stop.
pub fn sleep(d: Duration) -> Result<(), RunError> {
    let end = Instant::now() + d;
    loop {
        if let Some(s) = stop_signal() {
            return Err(RunError::Stopped(s));
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        thread::sleep((end - now).min(Duration::from_millis(25)));
    }
}

/// A program running in the background with its output in a file.
pub struct Bg {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Bg {
    /// Starts `argv` in its own process group (a Ctrl-C at the terminal is ours to
    /// handle, not its), stdout and stderr appended to `log`.
    pub fn spawn<S: AsRef<OsStr>>(
        name: &str,
        argv: &[S],
        log: &Path,
        env: &[(String, String)],
        env_remove: &[&str],
    ) -> Result<Bg, RunError> {
        use std::os::unix::process::CommandExt;
        let cmd = cmdline(argv);
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
        };
        let (out, err) = match (open(), open()) {
            (Ok(o), Ok(e)) => (o, e),
            (Err(err), _) | (_, Err(err)) => return Err(RunError::Spawn { cmd, err }),
        };
        let Some((prog, args)) = argv.split_first() else {
            return Err(RunError::Spawn {
                cmd,
                err: std::io::Error::other("empty command"),
            });
        };
        let mut c = Command::new(prog);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for (k, v) in env {
            c.env(k, v);
        }
        for k in env_remove {
            c.env_remove(k);
        }
        let child = c.spawn().map_err(|err| RunError::Spawn { cmd, err })?;
        Ok(Bg {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while it runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The tail of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; reaps it.
    pub fn stop(&mut self, grace: Duration) {
        if !self.alive() {
            return;
        }
        kill(self.pid(), Signal::TERM);
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if !self.alive() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a file (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Finds `tool` on `PATH` or in the usual system directories.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
