//! Background processes ([`Bg`]): daemons, servers, captures, traffic generators. Their
//! output goes to files (so nothing blocks on a full pipe and a failure message can quote
//! them), they can be signalled and stopped with a grace period, and dropping one kills
//! it, also when a test panics — unless it was [`Bg::detach`]ed (`vstopo up` leaves its
//! daemons running on purpose).

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use crate::proc::{cmdline, Opts, RunError};
use crate::stop::{kill, SIGKILL, SIGTERM};

/// Where a background process writes.
#[derive(Debug, Clone)]
pub struct Output {
    stdout: PathBuf,
    stderr: PathBuf,
    /// Truncate stdout at the start (a file of this start alone) rather than append.
    fresh_stdout: bool,
}

impl Output {
    /// stdout and stderr appended to one log (a daemon's log across restarts).
    pub fn log(path: &Path) -> Output {
        Output {
            stdout: path.to_path_buf(),
            stderr: path.to_path_buf(),
            fresh_stdout: false,
        }
    }

    /// stdout to a new file `stdout`, stderr appended to `stderr`.
    pub fn split(stdout: &Path, stderr: &Path) -> Output {
        Output {
            stdout: stdout.to_path_buf(),
            stderr: stderr.to_path_buf(),
            fresh_stdout: true,
        }
    }

    /// `dir/NAME.out` (new) and `dir/NAME.err` (appended).
    pub fn in_dir(dir: &Path, name: &str) -> Output {
        Output::split(
            &dir.join(format!("{name}.out")),
            &dir.join(format!("{name}.err")),
        )
    }
}

/// A program running in the background with its output in files; killed when dropped.
pub struct Bg {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    out: Output,
    status: Option<ExitStatus>,
    detached: bool,
}

impl Bg {
    /// Starts `argv` with `opts`, writing to `out`.
    pub fn start<S: AsRef<OsStr>>(
        name: &str,
        argv: &[S],
        out: Output,
        opts: &Opts,
    ) -> Result<Bg, RunError> {
        use std::os::unix::process::CommandExt;
        let cmd = cmdline(argv);
        let open = |p: &Path, append: bool| {
            fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(p)
        };
        let files = open(&out.stdout, !out.fresh_stdout).and_then(|o| {
            let e = open(&out.stderr, true)?;
            Ok((o, e))
        });
        let (o, e) = files.map_err(|err| RunError::Spawn {
            cmd: cmd.clone(),
            err,
        })?;
        let mut c = opts.command(argv)?;
        c.stdout(o).stderr(e);
        if opts.own_group {
            c.process_group(0);
        }
        let child = c.spawn().map_err(|err| RunError::Spawn { cmd, err })?;
        Ok(Bg {
            name: name.to_string(),
            child,
            out,
            status: None,
            detached: false,
        })
    }

    /// Starts `argv` in the background, output to `dir/<name>.out` and `dir/<name>.err`;
    /// panics when it cannot start.
    pub fn spawn<S: AsRef<OsStr>>(dir: &Path, name: &str, argv: &[S]) -> Bg {
        Bg::start(name, argv, Output::in_dir(dir, name), &Opts::default())
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file its stdout goes to.
    pub fn stdout_path(&self) -> &Path {
        &self.out.stdout
    }

    /// The file its stderr goes to.
    pub fn stderr_path(&self) -> &Path {
        &self.out.stderr
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out.stdout).unwrap_or_default()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.out.stderr).unwrap_or_default()
    }

    /// The last `lines` lines of its stderr (of its log, where both go to one file).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.out.stderr, lines)
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// True while it runs.
    pub fn alive(&mut self) -> bool {
        self.try_wait().is_none()
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
    pub fn signal(&mut self, sig: i32) {
        if self.alive() {
            kill(self.pid(), sig);
        }
    }

    /// `sig`, up to `grace` to exit, then SIGKILL; returns the exit status.
    pub fn stop_with(&mut self, sig: i32, grace: Duration) -> Option<ExitStatus> {
        self.signal(sig);
        if let Some(s) = self.wait_timeout(grace) {
            return Some(s);
        }
        self.signal(SIGKILL);
        self.wait_timeout(Duration::from_secs(5))
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.stop_with(SIGTERM, grace)
    }

    /// Waits until stderr or stdout contains `needle`; panics if the process exits first
    /// or `timeout` passes.
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

    /// Lets it run on after this handle is gone (it is no longer killed on drop).
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if !self.detached && self.alive() {
            kill(self.pid(), SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The last `lines` lines of a file (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    tail_of(&s, lines)
}

/// The last `lines` lines of `text`.
pub fn tail_of(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("testlab-bg-{}-{tag}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn output_is_in_files_and_drop_kills() {
        let d = dir("drop");
        let mut bg = Bg::spawn(&d, "sleeper", &["sh", "-c", "echo ready; exec sleep 30"]);
        bg.wait_output("ready", Duration::from_secs(5));
        let pid = bg.pid();
        drop(bg);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "dropped Bg {pid} still runs"
        );
        assert_eq!(
            fs::read_to_string(d.join("sleeper.out")).unwrap(),
            "ready\n"
        );
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn stop_reports_the_signal_and_a_log_is_appended() {
        let d = dir("stop");
        let log = d.join("log");
        for n in 1..=2 {
            let script = format!("echo line {n}; exec sleep 30");
            let mut bg = Bg::start(
                "echo",
                &["sh", "-c", &script],
                Output::log(&log),
                &Opts::default(),
            )
            .unwrap();
            bg.wait_output(&format!("line {n}"), Duration::from_secs(5));
            let st = bg.stop(Duration::from_secs(5)).unwrap();
            assert!(!st.success());
        }
        assert_eq!(tail(&log, 5), "line 1\nline 2");
        let _ = fs::remove_dir_all(d);
    }
}
