//! A private `dockerd` for one test, in a namespace of the lab: its data root, exec root,
//! API socket, pid file and log all under the test's directory, no iptables, no IP
//! forwarding, no default bridge — nothing goes near a system Docker. Removed containers
//! and a stopped daemon when dropped.
//!
//! It runs through `nsenter --net` rather than `ip netns exec`, which would mount a fresh
//! `/sys` and hide the cgroup hierarchy dockerd needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bg::{Bg, Output};
use crate::netns;
use crate::proc::{try_run_env, Opts, Out, RunError};
use crate::stop::Deadline;

/// Timeout of a Docker command (`docker run`, `docker network create`, …).
pub const DOCKER: Duration = Duration::from_secs(90);

/// The Docker API version the client asks for (the oldest our plugin speaks).
const API_VERSION: &str = "1.41";

/// A running private dockerd.
pub struct Dockerd {
    /// Its directory (data and exec roots, socket, log).
    pub dir: PathBuf,
    /// Its API socket, `unix://DIR/docker.sock`.
    pub host: String,
    bg: Option<Bg>,
}

impl Dockerd {
    /// Starts dockerd in namespace `ns` with its files under `dir`, in a private mount
    /// namespace of its own if `private_mounts` (its mounts then vanish with it), and
    /// waits up to `timeout` until it answers. The error says why it did not come up.
    pub fn start(
        ns: &str,
        dir: &Path,
        private_mounts: bool,
        timeout: Duration,
    ) -> Result<Dockerd, String> {
        let d = |p: &str| dir.join(p).display().to_string();
        let net = format!("--net={}", netns::path(ns).display());
        let host = format!("unix://{}", d("docker.sock"));
        let mut argv: Vec<String> = Vec::new();
        if private_mounts {
            argv.extend(["unshare", "--mount", "--propagation", "private"].map(String::from));
        }
        argv.extend(["nsenter".to_string(), net, "dockerd".to_string()]);
        argv.extend(
            [
                "--iptables=false",
                "--ip-forward=false",
                "--bridge=none",
                "--data-root",
                &d("data"),
                "--exec-root",
                &d("exec"),
                "-H",
                &host,
                "--pidfile",
                &d("docker.pid"),
            ]
            .map(String::from),
        );
        let opts = Opts {
            env_remove: vec![ctl::SOCK_ENV.to_string()],
            ..Opts::default()
        };
        let bg = Bg::start(
            "dockerd",
            &argv,
            Output::log(&dir.join("dockerd.log")),
            &opts,
        )
        .map_err(|e| e.to_string())?;
        let mut dk = Dockerd {
            dir: dir.to_path_buf(),
            host,
            bg: Some(bg),
        };
        let deadline = Deadline::after(timeout, Duration::from_millis(200));
        loop {
            if let Some(s) = dk.bg.as_mut().and_then(Bg::try_wait) {
                return Err(format!(
                    "dockerd exited during start-up ({s}): {}",
                    dk.log_tail(3)
                ));
            }
            let v = dk.try_docker(&["version", "--format", "{{.Server.Version}}"]);
            if v.is_ok_and(|o| o.success()) {
                return Ok(dk);
            }
            if deadline.passed() {
                return Err(format!(
                    "dockerd did not answer within {timeout:?}: {}",
                    dk.log_tail(40)
                ));
            }
            deadline.pause().map_err(|e| e.to_string())?;
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::bg::tail(&self.dir.join("dockerd.log"), lines)
    }

    /// Runs the docker client against this dockerd.
    pub fn try_docker(&self, args: &[&str]) -> Result<Out, RunError> {
        let mut v = vec!["docker"];
        v.extend_from_slice(args);
        let cfg = self.dir.join("docker-config").display().to_string();
        let env = [
            ("DOCKER_HOST", self.host.as_str()),
            ("DOCKER_API_VERSION", API_VERSION),
            ("DOCKER_CONFIG", cfg.as_str()),
        ];
        try_run_env(&v, &env, DOCKER)
    }

    /// Runs the docker client; panics (with its log) when it cannot run.
    pub fn docker(&self, args: &[&str]) -> Out {
        self.try_docker(args)
            .unwrap_or_else(|e| panic!("{e}\n--- dockerd ---\n{}", self.log_tail(40)))
    }

    /// Runs the docker client and asserts success; returns stdout trimmed.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(o.success(), "{o}\n--- dockerd ---\n{}", self.log_tail(40));
        o.stdout.trim().to_string()
    }

    /// Removes every container (`docker rm -f`), ignoring failures (teardown).
    pub fn remove_containers(&self) {
        if let Ok(o) = self.try_docker(&["ps", "-aq"]) {
            for id in o.stdout.split_whitespace() {
                let _ = self.try_docker(&["rm", "-f", id]);
            }
        }
    }

    /// Stops dockerd: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut bg) = self.bg.take() {
            let _ = bg.stop(grace);
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.bg.is_some() {
            self.remove_containers();
            self.stop(Duration::from_secs(20));
        }
    }
}
