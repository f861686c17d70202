//! Running other programs to completion: every command with a timeout, killed when it
//! outlives it or when a stop signal arrives ([`crate::stop`]); what it left ([`Out`]) or
//! why it left nothing ([`RunError`]). Also the prerequisites of a lab: tools on `PATH`,
//! root, and polling a condition.
//!
//! Two flavours of each call: `try_*` returns a `Result` (vstopo, teardown code), the
//! plain one panics with the reason (tests, where a failure to even run a tool must fail
//! the test loudly, never skip it).

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::stop::{kill, signal_name, stop_signal, SIGKILL};
use crate::SHORT;

/// Why a command gave no result.
#[derive(Debug)]
pub enum RunError {
    /// A signal asked us to stop; the command was killed.
    Stopped(i32),
    /// It ran longer than allowed and was killed.
    Timeout { cmd: String, timeout: Duration },
    /// It could not be started.
    Spawn { cmd: String, err: std::io::Error },
    /// It ran and exited non-zero ([`Out::must`]).
    Failed(Box<Out>),
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
            RunError::Failed(o) => write!(f, "`{}` failed ({}): {}", o.cmd, o.status, o.text()),
        }
    }
}

impl std::error::Error for RunError {}

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

    /// Itself if the command exited 0, else [`RunError::Failed`].
    pub fn must(self) -> Result<Out, RunError> {
        if self.success() {
            Ok(self)
        } else {
            Err(RunError::Failed(Box::new(self)))
        }
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

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// How a command (or a background process, [`crate::Bg`]) is run.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Variables taken out of the inherited environment.
    pub env_remove: Vec<String>,
    /// Keep running when a stop signal arrives (teardown commands).
    pub ignore_stop: bool,
    /// Background processes only: start in a process group of its own, so that a Ctrl-C
    /// at the terminal is ours to handle, not its.
    pub own_group: bool,
}

impl Opts {
    /// Options with `env` as the extra environment.
    pub fn with_env(env: &[(&str, &str)]) -> Opts {
        Opts {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ..Opts::default()
        }
    }

    /// A command for `argv` with this environment; `Spawn` if `argv` is empty.
    pub(crate) fn command<S: AsRef<OsStr>>(&self, argv: &[S]) -> Result<Command, RunError> {
        let Some((prog, args)) = argv.split_first() else {
            return Err(RunError::Spawn {
                cmd: cmdline(argv),
                err: std::io::Error::other("empty command"),
            });
        };
        let mut c = Command::new(prog);
        c.args(args).stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        for k in &self.env_remove {
            c.env_remove(k);
        }
        Ok(c)
    }
}

/// Runs `argv` to completion within `timeout`.
pub fn try_run<S: AsRef<OsStr>>(argv: &[S], timeout: Duration) -> Result<Out, RunError> {
    try_run_with(argv, timeout, &Opts::default())
}

/// Runs `argv` to completion within `timeout`, even when a stop signal arrives.
pub fn try_run_always<S: AsRef<OsStr>>(argv: &[S], timeout: Duration) -> Result<Out, RunError> {
    let opts = Opts {
        ignore_stop: true,
        ..Opts::default()
    };
    try_run_with(argv, timeout, &opts)
}

/// Runs `argv` with the extra environment `env` within `timeout`.
pub fn try_run_env<S: AsRef<OsStr>>(
    argv: &[S],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Out, RunError> {
    try_run_with(argv, timeout, &Opts::with_env(env))
}

/// Runs `argv` with `opts` within `timeout`.
pub fn try_run_with<S: AsRef<OsStr>>(
    argv: &[S],
    timeout: Duration,
    opts: &Opts,
) -> Result<Out, RunError> {
    let cmd = cmdline(argv);
    let child = opts
        .command(argv)?
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| RunError::Spawn {
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
            kill(pid, SIGKILL);
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

/// Runs `argv` with a timeout; a command that outlives it is killed and the test fails.
/// A program that cannot be started at all is a loud failure too.
pub fn run<S: AsRef<OsStr>>(argv: &[S], timeout: Duration) -> Out {
    try_run(argv, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// [`run`] with the extra environment `env`.
pub fn run_env<S: AsRef<OsStr>>(argv: &[S], env: &[(&str, &str)], timeout: Duration) -> Out {
    try_run_env(argv, env, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `argv` with [`SHORT`] and asserts success; returns stdout.
pub fn sh<S: AsRef<OsStr>>(argv: &[S]) -> String {
    run(argv, SHORT).ok()
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

/// The tools of `tools` that [`which`] does not find.
pub fn missing_tools<'a>(tools: &[&'a str]) -> Vec<&'a str> {
    tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect()
}

/// Panics (never skips) when one of `tools` is missing.
pub fn require_tools(tools: &[&str]) {
    let missing = missing_tools(tools);
    assert!(
        missing.is_empty(),
        "missing test prerequisite(s): {} — install them with `sudo bash scripts/deps.sh`",
        missing.join(", ")
    );
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Panics unless the process runs as root.
pub fn require_root() {
    assert!(
        is_root(),
        "the integration tests need root (network namespaces, veths, TAPs); run them as root \
         (sudo bash scripts/test.sh)"
    );
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_command_is_quoted_for_messages() {
        assert_eq!(
            cmdline(&["sh", "-c", "echo 'a b'", ""]),
            r#"sh -c 'echo '\''a b'\''' ''"#
        );
    }

    #[test]
    fn output_errors_and_timeouts_are_told_apart() {
        let o = try_run(&["sh", "-c", "echo out; echo err >&2; exit 3"], SHORT).unwrap();
        assert_eq!((o.code(), o.text()), (Some(3), "out\nerr".to_string()));
        let e = o.must().unwrap_err().to_string();
        assert!(
            e.starts_with("`sh -c 'echo out; echo err >&2; exit 3'` failed ("),
            "{e}"
        );
        let t = try_run(&["sleep", "5"], Duration::from_millis(100)).unwrap_err();
        assert_eq!(
            t.to_string(),
            "`sleep 5` did not finish within 100ms; killed it"
        );
        let s = try_run(&["/nonexistent/tool"], SHORT)
            .unwrap_err()
            .to_string();
        assert!(s.starts_with("cannot run `/nonexistent/tool`: "), "{s}");
        assert!(s.ends_with("(missing tool? run scripts/deps.sh)"), "{s}");
    }

    #[test]
    fn the_environment_is_passed_on() {
        let o = try_run_env(
            &["sh", "-c", "echo $TESTLAB_X"],
            &[("TESTLAB_X", "42")],
            SHORT,
        );
        assert_eq!(o.unwrap().stdout, "42\n");
    }
}
