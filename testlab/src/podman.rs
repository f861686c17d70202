//! A private podman for one test: its own `--root` and `--runroot` (vfs storage) under
//! the test's directory, its own containers.conf (`CONTAINERS_CONF`) with the CNI network
//! backend, the test's CNI config directory and plugin directories, and its temporary
//! files and locks there too (`lock_type = "file"`: the default shm locks would leave
//! /dev/shm/libpod_lock behind). Nothing touches a system podman's storage or networks. Containers are
//! removed when dropped.
//!
//! Podman 4.3 runs on this kind of machine when containers.conf has
//! `default_ulimits = []` and each `podman run` gets `--ulimit host` ([`Podman::run`]
//! adds it): the sandbox refuses the rlimits podman sets by default.
//!
//! Commands run in the lab's network namespace through `nsenter --net`, in the caller's
//! mount namespace: podman bind-mounts each container's network namespace under
//! /run/netns, and a daemon that opens it by path (vswitchd) must see that mount, which
//! `ip netns exec`'s private mount namespace would hide.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns;
use crate::proc::{sh, try_run_with, Opts, Out, RunError};

/// Timeout of a podman command (`podman run` with the vfs driver copies the image).
pub const PODMAN: Duration = Duration::from_secs(120);

/// One test's podman.
pub struct Podman {
    /// Its directory: storage, run root, containers.conf, temporary files.
    pub dir: PathBuf,
    /// The network namespace its commands run in.
    pub ns: String,
}

impl Podman {
    /// A podman in namespace `ns` with its files under `dir`, reading CNI network
    /// configs from `cni_dir` and plugins from `plugin_dirs`.
    pub fn new(ns: &str, dir: &Path, cni_dir: &Path, plugin_dirs: &[&Path]) -> Podman {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let dirs: Vec<String> = plugin_dirs
            .iter()
            .map(|d| format!("{:?}", d.display().to_string()))
            .collect();
        let conf = format!(
            "[containers]\ndefault_ulimits = []\n\n\
             [network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = {:?}\n\
             cni_plugin_dirs = [{}]\n\n\
             [engine]\nlock_type = \"file\"\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\ntmp_dir = {:?}\n",
            cni_dir.display().to_string(),
            dirs.join(", "),
            dir.join("tmp").display().to_string(),
        );
        fs::write(dir.join("containers.conf"), conf)
            .unwrap_or_else(|e| panic!("cannot write containers.conf: {e}"));
        Podman {
            dir: dir.to_path_buf(),
            ns: ns.to_string(),
        }
    }

    /// Runs `podman ARGS…` with this podman's storage and config.
    pub fn try_podman(&self, args: &[&str]) -> Result<Out, RunError> {
        let root = self.dir.join("root").display().to_string();
        let runroot = self.dir.join("runroot").display().to_string();
        let mut argv = vec![
            "nsenter".to_string(),
            format!("--net={}", netns::path(&self.ns).display()),
            "--".into(),
            "podman".into(),
            "--root".into(),
            root,
            "--runroot".into(),
            runroot,
            "--storage-driver".into(),
            "vfs".into(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        let opts = Opts {
            env: vec![(
                "CONTAINERS_CONF".into(),
                self.dir.join("containers.conf").display().to_string(),
            )],
            env_remove: vec![ctl::SOCK_ENV.into()],
            ..Opts::default()
        };
        try_run_with(&argv, PODMAN, &opts)
    }

    /// Runs podman and asserts success; returns stdout trimmed.
    pub fn podman_ok(&self, args: &[&str]) -> String {
        let o = self.try_podman(args).unwrap_or_else(|e| panic!("{e}"));
        assert!(o.success(), "podman failed: {o}");
        o.stdout.trim().to_string()
    }

    /// `podman run -d --name NAME --ulimit host EXTRA… IMAGE CMD…`; the container's ID.
    pub fn run(&self, name: &str, extra: &[&str], image: &str, cmd: &[&str]) -> String {
        let mut a = vec!["run", "-d", "--name", name, "--ulimit", "host"];
        a.extend(extra);
        a.push(image);
        a.extend(cmd);
        self.podman_ok(&a)
    }

    /// Imports `image` made of Debian's busybox-static: /bin/busybox, a symlink per
    /// applet, and `page` at /www/index.html (no registry needed).
    pub fn import_busybox(&self, image: &str, page: &str) {
        let tar = busybox_rootfs(&self.dir.join("rootfs"), page);
        self.podman_ok(&["import", "-q", &tar.display().to_string(), image]);
    }

    /// Removes every container, ignoring failures (teardown).
    pub fn remove_containers(&self) {
        let _ = self.try_podman(&["rm", "-af", "-t", "0"]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.remove_containers();
    }
}

/// A tar of a busybox root file system under `root` (made there), with `page` at
/// /www/index.html; returns the tar's path, beside `root`.
pub fn busybox_rootfs(root: &Path, page: &str) -> PathBuf {
    for d in ["bin", "www", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
    }
    fs::copy("/bin/busybox", root.join("bin/busybox"))
        .unwrap_or_else(|e| panic!("copy /bin/busybox (apt-get install busybox-static): {e}"));
    let list = sh(&["/bin/busybox", "--list"]);
    for applet in list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let _ = symlink("busybox", root.join("bin").join(applet));
    }
    fs::write(root.join("www/index.html"), format!("{page}\n")).unwrap_or_else(|e| panic!("{e}"));
    let tar = root.with_extension("tar");
    sh(&[
        "tar",
        "-C",
        &root.display().to_string(),
        "-cf",
        &tar.display().to_string(),
        ".",
    ]);
    tar
}
