//! A directory whose flushes can be made to stall: a pass-through FUSE filesystem
//! (`slowfs.py`, Debian's `python3-fusepy`) over a directory on tmpfs, whose `fsync`
//! waits while [`SlowDisk::stall`] holds. Put under an etcd's WAL, it makes every write
//! wait for its commit while lease keep-alives (no WAL write in etcd 3.4) and
//! serializable reads are still answered: a store behind a disk busy with writeback.
//!
//! The mount is the test's own (under its directory); it is unmounted, and the
//! backing directory removed, on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::bg::{Bg, Output};
use crate::proc::Opts;

const SCRIPT: &str = include_str!("slowfs.py");
/// Debian's interpreter, which the `python3-fusepy` package installs for (a `python3`
/// earlier on PATH may be another one).
const PYTHON: &str = "/usr/bin/python3";
const FUSEPY: &str = "/usr/lib/python3/dist-packages/fusepy.py";

pub struct SlowDisk {
    /// Where to put the files whose flushes should stall.
    pub mount: PathBuf,
    backing: PathBuf,
    flag: PathBuf,
    bg: Option<Bg>,
}

fn mounted(at: &Path) -> bool {
    // /proc/self/mounts has the resolved path (a symlinked TMPDIR resolved).
    let at = fs::canonicalize(at).unwrap_or_else(|_| at.to_path_buf());
    let at = at.display().to_string();
    fs::read_to_string("/proc/self/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(1) == Some(at.as_str())))
}

impl SlowDisk {
    /// Mounts one at `dir/mnt` (its script and log in `dir`), backed by a directory on
    /// `/dev/shm`; waits until it is mounted.
    pub fn new(dir: &Path) -> anyhow::Result<SlowDisk> {
        if !Path::new(PYTHON).exists() || !Path::new(FUSEPY).exists() {
            bail!("missing test prerequisite: {PYTHON} with {FUSEPY} — install them with `sudo bash scripts/deps.sh`");
        }
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let backing = crate::etcd::shm_dir("vswitch-slowdisk", dir);
        let _ = fs::remove_dir_all(&backing);
        fs::create_dir_all(&backing)?;
        let mount = dir.join("mnt");
        fs::create_dir_all(&mount)?;
        let script = dir.join("slowfs.py");
        fs::write(&script, SCRIPT)?;
        let flag = dir.join("stall");
        let _ = fs::remove_file(&flag);
        let argv = [
            PYTHON.to_string(),
            script.display().to_string(),
            backing.display().to_string(),
            mount.display().to_string(),
            flag.display().to_string(),
        ];
        let bg = Bg::start(
            "slowfs",
            &argv,
            Output::in_dir(dir, "slowfs"),
            &Opts::default(),
        )?;
        let mut disk = SlowDisk {
            mount,
            backing,
            flag,
            bg: Some(bg),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !mounted(&disk.mount) {
            if let Some(s) = disk.bg.as_mut().and_then(Bg::try_wait) {
                let err = disk.bg.as_ref().map(|b| b.log_tail(20)).unwrap_or_default();
                bail!("slowfs exited before mounting ({s}): {err}");
            }
            if Instant::now() > deadline {
                bail!("slowfs did not mount {} within 10 s", disk.mount.display());
            }
            crate::stop::sleep(Duration::from_millis(20))?;
        }
        Ok(disk)
    }

    /// From now on every flush waits, until [`SlowDisk::resume`].
    pub fn stall(&self) {
        fs::write(&self.flag, b"").unwrap_or_else(|e| {
            panic!("cannot stall the slow disk ({}): {e}", self.flag.display())
        });
    }

    /// Lets the waiting flushes and every later one through.
    pub fn resume(&self) {
        match fs::remove_file(&self.flag) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot resume the slow disk ({}): {e}", self.flag.display()),
        }
    }

    /// [`SlowDisk::resume`] that cannot fail, for clean-up.
    pub(crate) fn let_go(&self) {
        let _ = fs::remove_file(&self.flag);
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        self.let_go();
        if let Some(mut bg) = self.bg.take() {
            // fusepy unmounts on SIGTERM.
            bg.stop(Duration::from_secs(5));
        }
        if mounted(&self.mount) {
            let _ = crate::proc::try_run(
                &["umount", "-l", &self.mount.display().to_string()],
                crate::SHORT,
            );
        }
        let _ = fs::remove_dir_all(&self.backing);
    }
}
