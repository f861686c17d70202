//! The on-disk record of a run: what a run is called, which file it came from, who owns
//! it, and — written *before* each thing is created — every namespace it may have made.
//! `vstopo down FILE` and `vstopo exec FILE …` read it; after a crash it is the only
//! memory of what to remove.
//!
//! Layout: `$VSTOPO_STATE_DIR` (default `/run/vstopo`) holds one directory per run, named
//! by the run's prefix, with `state.json` and the run's sockets, configs and logs.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Environment variable that moves the state directory.
pub const STATE_DIR_ENV: &str = "VSTOPO_STATE_DIR";
/// Where runs are recorded unless the environment says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/vstopo";
/// Every run prefix starts with this, then four base-36 characters.
pub const RUN_PREFIX: &str = "vt";

/// The directory holding one directory per run.
pub fn state_root() -> PathBuf {
    std::env::var_os(STATE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `vstopo up`: stays until `vstopo down`.
    Up,
    /// `vstopo test`: its owner removes it; if the owner died, `down` may.
    Test,
}

/// One switch of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwitchRec {
    pub ns: String,
    pub sock: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
    pub pid: Option<u32>,
}

/// The record of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The run's prefix, e.g. `vt3k9a`; every namespace is `PREFIX-NODE`.
    pub run: String,
    /// The topology file, canonical path.
    pub file: String,
    /// The topology's name.
    pub topology: String,
    pub mode: Mode,
    /// The process that made the run, and its start time (to tell a reused pid).
    pub owner_pid: u32,
    pub owner_start: u64,
    /// True once the build finished.
    pub complete: bool,
    /// Namespaces this run created or was about to create.
    pub namespaces: Vec<String>,
    /// Node name → namespace name.
    pub nodes: BTreeMap<String, String>,
    /// Switch name → its daemon.
    pub switches: BTreeMap<String, SwitchRec>,
}

impl State {
    /// The run's directory.
    pub fn dir(&self) -> PathBuf {
        state_root().join(&self.run)
    }

    /// Writes `state.json` atomically (temp file, fsync, rename).
    pub fn save(&self) -> io::Result<()> {
        let dir = self.dir();
        let tmp = dir.join("state.json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        {
            use std::io::Write;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join("state.json"))
    }

    /// Reads the state in run directory `dir`.
    pub fn load(dir: &Path) -> io::Result<State> {
        let text = fs::read_to_string(dir.join("state.json"))?;
        serde_json::from_str(&text).map_err(io::Error::other)
    }

    /// Every recorded run (unreadable ones are skipped).
    pub fn all() -> Vec<State> {
        let Ok(rd) = fs::read_dir(state_root()) else {
            return Vec::new();
        };
        let mut v: Vec<State> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(RUN_PREFIX))
            .filter_map(|e| State::load(&e.path()).ok())
            .collect();
        v.sort_by(|a, b| a.run.cmp(&b.run));
        v
    }

    /// True while the process that made the run still runs.
    pub fn owner_alive(&self) -> bool {
        proc_start_time(self.owner_pid) == Some(self.owner_start)
    }
}

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn proc_start_time(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process's pid and start time.
pub fn me() -> (u32, u64) {
    let pid = std::process::id();
    (pid, proc_start_time(pid).unwrap_or(0))
}

/// Picks a fresh run prefix and creates its directory (the `mkdir` is the lock: two
/// runs can never get the same prefix). A prefix some leftover namespace still uses is
/// skipped too.
pub fn new_run() -> io::Result<(String, PathBuf)> {
    let root = state_root();
    fs::create_dir_all(&root)?;
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 20);
    let netns: Vec<String> = fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for _ in 0..1000 {
        // xorshift: cheap, and good enough to spread prefixes.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut n = seed % (36u64.pow(4));
        let mut id = String::from(RUN_PREFIX);
        let mut tail = Vec::new();
        for _ in 0..4 {
            let d = u32::try_from(n % 36).unwrap_or(0);
            tail.push(char::from_digit(d, 36).unwrap_or('0'));
            n /= 36;
        }
        id.extend(tail);
        let taken = netns.iter().any(|ns| ns.starts_with(&format!("{id}-")));
        if taken {
            continue;
        }
        let dir = root.join(&id);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free run prefix after 1000 tries"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn start_time_of_self_is_known() {
        let (pid, start) = me();
        assert!(start > 0);
        assert_eq!(proc_start_time(pid), Some(start));
    }
}
