//! Stop signals and process signals: SIGINT, SIGTERM and SIGHUP turned into a flag that
//! every wait of this crate polls (so a Ctrl-C during a build or a check still ends in a
//! full teardown), a sleep that such a signal cuts short, and sending a signal to a pid.
//!
//! Nothing is caught until a program calls [`catch_signals`] (vstopo does; a test binary
//! does not, so there a signal ends the tests as it always would).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::proc::RunError;

pub use signal_hook::consts::{SIGHUP, SIGINT, SIGKILL, SIGTERM};

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

/// Sends signal `sig` (`libc::SIGTERM` and the like) to `pid`; errors (already gone, not
/// a signal number) are ignored.
pub fn kill(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).ok().and_then(Pid::from_raw);
    if let (Some(p), Some(s)) = (pid, Signal::from_named_raw(sig)) {
        let _ = rustix::process::kill_process(p, s);
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

/// A time limit for a polling loop: [`Deadline::passed`] says when to give up,
/// [`Deadline::pause`] sleeps between two polls (cut short by a stop signal).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    end: Instant,
    every: Duration,
}

impl Deadline {
    /// `timeout` from now, polling every `every`.
    pub fn after(timeout: Duration, every: Duration) -> Deadline {
        Deadline {
            end: Instant::now() + timeout,
            every,
        }
    }

    /// True once the time is up.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.end
    }

    /// Sleeps until the next poll; an error if a stop signal arrived.
    pub fn pause(&self) -> Result<(), RunError> {
        sleep(self.every)
    }
}
