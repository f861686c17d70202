//! Harness of the Docker integration tests: a [`DockerLab`] is one test's private Docker.
//!
//! A lab owns a network namespace where `vswitchd`, `vswitch-docker` and a private
//! `dockerd` run together (the plugin's veths must be where both daemons are), a temporary
//! directory (control socket, config, Docker's data and exec roots, logs), a plugin socket
//! with a unique name (`/run/docker/plugins/vswitch-<prefix>.sock`, driver
//! `vswitch-<prefix>`), extra namespaces a test adds, and a busybox image imported from
//! Debian's busybox-static (no registry). Dropping the lab removes the containers and
//! networks through Docker, stops the daemons, removes the plugin socket, kills what is
//! left in its namespaces and deletes them, also when the test panics (then the logs are
//! printed first).
//!
//! `dockerd` runs through `nsenter --net` rather than `ip netns exec`, which would mount a
//! fresh /sys and hide the cgroup hierarchy dockerd needs. A test is skipped, with the
//! reason printed, only when dockerd cannot start (not installed, or no cgroups);
//! everything else missing is a loud failure.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ctl::{BridgeInfo, Data, PublishedInfo, Request};

/// Timeout of a short command (`ip`, `sysctl`).
pub const SHORT: Duration = Duration::from_secs(10);
/// Timeout of a Docker command (`docker run`, `docker network create`, …).
pub const DOCKER: Duration = Duration::from_secs(90);
/// The image every container runs.
pub const IMAGE: &str = "vswitch-bb:test";

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

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

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; pid is a process this test started.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Runs `argv` with `envs` and a timeout, killing it when it outlives it; never panics.
pub fn try_run_env(argv: &[&str], envs: &[(&str, &str)], timeout: Duration) -> Result<Out, String> {
    let cmd = argv.join(" ");
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
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
            Err(format!(
                "`{cmd}` did not finish within {timeout:?}; killed it"
            ))
        }
    }
}

/// Runs `argv` with a timeout; a command that cannot start or outlives it fails the test.
pub fn run(argv: &[&str], timeout: Duration) -> Out {
    try_run_env(argv, &[], timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `argv` with [`SHORT`] and asserts success; returns stdout.
pub fn sh(argv: &[&str]) -> String {
    run(argv, SHORT).ok()
}

/// Finds `tool` on `PATH` (or the sbin directories).
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

/// Polls `cond` every 100 ms until it holds or `timeout` passes; panics with `what` then.
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
        thread::sleep(Duration::from_millis(100));
    }
}

/// A background process with its output in a file; killed when dropped.
pub struct Bg {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Bg {
    pub fn spawn(log: &Path, name: &str, argv: &[&str], envs: &[(&str, &str)]) -> Bg {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log");
        let f2 = f.try_clone().expect("clone log handle");
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .env_remove(ctl::SOCK_ENV)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (`{}`): {e}", argv.join(" ")));
        Bg {
            name: name.into(),
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `sig`, then SIGKILL after `grace`.
    pub fn stop(&mut self, sig: libc::c_int, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        signal(self.child.id(), sig);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.stop(libc::SIGKILL, Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------

static SEQ: AtomicU32 = AtomicU32::new(0);

fn bin_dir() -> PathBuf {
    let me = PathBuf::from(env!("CARGO_BIN_EXE_vswitch-docker"));
    me.parent().expect("binary has a directory").to_path_buf()
}

/// One test's private Docker on a private vswitchd.
pub struct DockerLab {
    pub prefix: String,
    pub dir: PathBuf,
    /// The namespace of vswitchd, the plugin and dockerd.
    pub ns: String,
    /// vswitchd's control socket and config.
    pub sock: PathBuf,
    pub db: PathBuf,
    /// The plugin's socket and the driver name Docker knows it by.
    pub plugin_sock: PathBuf,
    pub driver: String,
    /// dockerd's API socket (`unix://…`).
    pub docker_host: String,
    namespaces: Vec<String>,
    vswitchd: Option<Bg>,
    plugin: Option<Bg>,
    dockerd: Option<Bg>,
    vswitchd_starts: u32,
}

impl DockerLab {
    /// Starts a lab, or returns None (with the reason printed) when dockerd cannot start.
    pub fn start(tag: &str) -> Option<DockerLab> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the Docker tests need root (network namespaces, dockerd)"
        );
        for t in ["ip", "nsenter", "curl", "timeout"] {
            assert!(which(t).is_some(), "missing {t}: run scripts/deps.sh");
        }
        let Some(dockerd) = which("dockerd") else {
            eprintln!(
                "SKIP: dockerd is not installed (apt-get install docker.io), so it cannot start"
            );
            return None;
        };
        assert!(
            which("docker").is_some(),
            "dockerd is installed but the docker client is not"
        );
        assert!(
            Path::new("/bin/busybox").is_file(),
            "missing /bin/busybox: apt-get install busybox-static"
        );
        let vswitchd = bin_dir().join("vswitchd");
        assert!(
            vswitchd.is_file(),
            "vswitchd not found at {}: build the workspace first (cargo build --workspace [--release])",
            vswitchd.display()
        );
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("vd{}{seq}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{prefix}.d"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the lab's directory");
        let driver = format!("vswitch-{prefix}");
        let mut lab = DockerLab {
            ns: format!("{prefix}-sw"),
            sock: dir.join("vswitchd.sock"),
            db: dir.join("conf.json"),
            plugin_sock: PathBuf::from(format!("/run/docker/plugins/{driver}.sock")),
            docker_host: format!("unix://{}", dir.join("docker.sock").display()),
            driver,
            prefix,
            dir,
            namespaces: Vec::new(),
            vswitchd: None,
            plugin: None,
            dockerd: None,
            vswitchd_starts: 0,
        };
        let ns = lab.ns.clone();
        lab.add_ns(&ns);
        lab.start_vswitchd();
        lab.start_plugin();
        if !lab.start_dockerd(&dockerd) {
            return None;
        }
        lab.import_image();
        Some(lab)
    }

    /// Adds a namespace owned by the lab (lo up).
    pub fn add_ns(&mut self, ns: &str) {
        sh(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.to_string());
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    /// Runs `argv` in namespace `ns`.
    pub fn exec(&self, ns: &str, argv: &[&str], timeout: Duration) -> Out {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(argv);
        run(&v, timeout)
    }

    /// vswitchd's log, the plugin's and dockerd's (for failure messages).
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["vswitchd.log", "plugin.log", "dockerd.log"] {
            let text = fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            s.push_str(&format!(
                "===== {f} (last 40 lines) =====\n{}\n",
                tail.join("\n")
            ));
        }
        s
    }

    pub fn start_vswitchd(&mut self) {
        self.vswitchd_starts += 1;
        let bin = bin_dir().join("vswitchd");
        let argv = [
            "ip",
            "netns",
            "exec",
            &self.ns,
            bin.to_str().expect("utf-8 path"),
            "--sock",
            self.sock.to_str().expect("utf-8 path"),
            "--db",
            self.db.to_str().expect("utf-8 path"),
        ];
        let bg = Bg::spawn(&self.dir.join("vswitchd.log"), "vswitchd", &argv, &[]);
        self.vswitchd = Some(bg);
        wait_until("vswitchd to answer", Duration::from_secs(15), || {
            ctl::call(&self.sock, &Request::ListBr).is_ok()
        });
    }

    /// Kills vswitchd (SIGKILL: nothing saved at exit).
    pub fn kill_vswitchd(&mut self) {
        if let Some(mut b) = self.vswitchd.take() {
            b.stop(libc::SIGKILL, Duration::from_secs(5));
        }
    }

    pub fn start_plugin(&mut self) {
        let bin = env!("CARGO_BIN_EXE_vswitch-docker");
        let sock = self.sock.to_str().expect("utf-8 path").to_string();
        let argv = [
            "ip",
            "netns",
            "exec",
            &self.ns,
            bin,
            "--plugin-sock",
            self.plugin_sock.to_str().expect("utf-8 path"),
        ];
        let bg = Bg::spawn(
            &self.dir.join("plugin.log"),
            "vswitch-docker",
            &argv,
            &[(ctl::SOCK_ENV, &sock)],
        );
        self.plugin = Some(bg);
        wait_until("the plugin socket", Duration::from_secs(10), || {
            self.plugin_sock.exists()
        });
    }

    /// Stops the plugin with SIGTERM (it removes its socket).
    pub fn stop_plugin(&mut self) {
        if let Some(mut b) = self.plugin.take() {
            b.stop(libc::SIGTERM, Duration::from_secs(5));
        }
    }

    /// Starts dockerd; false (reason printed) when it cannot start.
    fn start_dockerd(&mut self, dockerd: &Path) -> bool {
        let d = |p: &str| self.dir.join(p).to_str().expect("utf-8 path").to_string();
        let netns = format!("--net=/var/run/netns/{}", self.ns);
        let (data, exec, pid) = (d("data"), d("exec"), d("docker.pid"));
        let argv = [
            "nsenter",
            &netns,
            dockerd.to_str().expect("utf-8 path"),
            "--iptables=false",
            "--ip-forward=false",
            "--bridge=none",
            "--data-root",
            &data,
            "--exec-root",
            &exec,
            "-H",
            &self.docker_host,
            "--pidfile",
            &pid,
        ];
        let mut bg = Bg::spawn(&self.dir.join("dockerd.log"), "dockerd", &argv, &[]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = bg.exited() {
                let log = fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
                let last: Vec<&str> = log.lines().rev().take(3).collect();
                eprintln!(
                    "SKIP: dockerd cannot start here ({s}): {}",
                    last.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
                return false;
            }
            if self
                .docker(&["version", "--format", "{{.Server.Version}}"])
                .success()
            {
                self.dockerd = Some(bg);
                return true;
            }
            if Instant::now() >= deadline {
                eprintln!("SKIP: dockerd did not answer within 60 s\n{}", self.logs());
                return false;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Imports the busybox image: /bin/busybox plus a relative symlink per applet, and a
    /// page at /www/index.html.
    fn import_image(&self) {
        let root = self.dir.join("rootfs");
        let bin = root.join("bin");
        fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
        fs::create_dir_all(root.join("www")).expect("mkdir rootfs/www");
        fs::create_dir_all(root.join("tmp")).expect("mkdir rootfs/tmp");
        fs::copy("/bin/busybox", bin.join("busybox")).expect("copy busybox");
        let list = sh(&["/bin/busybox", "--list"]);
        for applet in list
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox")
        {
            let _ = symlink("busybox", bin.join(applet));
        }
        fs::write(root.join("www/index.html"), "hello from vswitch\n").expect("write page");
        let tar = self.dir.join("rootfs.tar");
        sh(&[
            "tar",
            "-C",
            root.to_str().expect("utf-8 path"),
            "-cf",
            tar.to_str().expect("utf-8 path"),
            ".",
        ]);
        self.docker_ok(&["import", tar.to_str().expect("utf-8 path"), IMAGE]);
    }

    /// Runs the docker client against this lab's dockerd.
    pub fn docker(&self, args: &[&str]) -> Out {
        let mut v = vec!["docker"];
        v.extend_from_slice(args);
        let cfg = self.dir.join("docker-config");
        try_run_env(
            &v,
            &[
                ("DOCKER_HOST", self.docker_host.as_str()),
                ("DOCKER_API_VERSION", "1.41"),
                ("DOCKER_CONFIG", cfg.to_str().expect("utf-8 path")),
            ],
            DOCKER,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Runs the docker client and asserts success; returns stdout trimmed.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(o.success(), "{o}\n{}", self.logs());
        o.stdout.trim().to_string()
    }

    /// `docker network create -d <this lab's driver> ARGS… NAME`; returns the network ID.
    pub fn network_create(&self, name: &str, args: &[&str]) -> String {
        let mut v = vec!["network", "create", "-d", &self.driver];
        v.extend_from_slice(args);
        v.push(name);
        self.docker_ok(&v)
    }

    /// `docker run -d --name NAME ARGS… IMAGE CMD…`.
    pub fn run_container(&self, name: &str, args: &[&str], cmd: &[&str]) {
        let mut v = vec!["run", "-d", "--name", name];
        v.extend_from_slice(args);
        v.push(IMAGE);
        v.extend_from_slice(cmd);
        self.docker_ok(&v);
    }

    /// The address of container `c` on network `net`.
    pub fn ip_of(&self, c: &str, net: &str) -> String {
        let f = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
        self.docker_ok(&["inspect", "-f", &f, c])
    }

    /// Runs `cmd` in container `c`.
    pub fn exec_in(&self, c: &str, cmd: &[&str]) -> Out {
        let mut v = vec!["exec", c];
        v.extend_from_slice(cmd);
        self.docker(&v)
    }

    /// True when container `c` gets an echo reply from `ip` within a few tries.
    pub fn pings(&self, c: &str, ip: &str) -> bool {
        self.exec_in(c, &["ping", "-c", "3", "-i", "0.3", "-W", "1", ip])
            .stdout
            .contains(" 0% packet loss")
            || self
                .exec_in(c, &["ping", "-c", "2", "-W", "2", ip])
                .stdout
                .contains("bytes from")
    }

    /// Asserts that `c` reaches `ip` (panics with diagnostics otherwise).
    pub fn assert_ping(&self, c: &str, ip: &str) {
        let o = self.exec_in(c, &["ping", "-c", "3", "-i", "0.3", "-W", "2", ip]);
        assert!(
            o.stdout.contains("bytes from"),
            "{c} cannot ping {ip}: {o}\n{}\n{}",
            self.show_text(),
            self.logs()
        );
    }

    /// Asserts that `c` does not reach `ip`.
    pub fn assert_no_ping(&self, c: &str, ip: &str) {
        let o = self.exec_in(c, &["ping", "-c", "2", "-i", "0.3", "-W", "1", ip]);
        assert!(
            !o.stdout.contains("bytes from"),
            "{c} reaches {ip}, which it must not: {o}"
        );
    }

    /// Fetches `url` from container `c` with busybox wget (wrapped in `timeout`: busybox
    /// `wget -T` crashes).
    pub fn wget(&self, c: &str, url: &str) -> Out {
        self.exec_in(c, &["timeout", "10", "wget", "-qO-", url])
    }

    /// vswitchd's `show`.
    pub fn show(&self) -> (Vec<BridgeInfo>, Vec<PublishedInfo>) {
        match ctl::call(&self.sock, &Request::Show) {
            Ok(Data::Show {
                bridges, published, ..
            }) => (bridges, published),
            other => panic!("vswitchd show: {other:?}"),
        }
    }

    /// `vsctl show` as text.
    pub fn show_text(&self) -> String {
        match ctl::call(&self.sock, &Request::Show) {
            Ok(d) => ctl::render(&d),
            Err(e) => format!("(show failed: {e})"),
        }
    }

    /// Interfaces in the lab's namespace whose names start with one of `prefixes`.
    pub fn links_named(&self, prefixes: &[&str]) -> Vec<String> {
        let out = sh(&["ip", "-n", &self.ns, "-o", "link", "show"]);
        out.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
            .collect()
    }

    /// Removes every container and network through Docker and asserts that nothing of
    /// them is left in vswitchd (no `dk-` bridge, no published port) nor in the namespace.
    pub fn remove_everything(&self) {
        let ids = self.docker_ok(&["ps", "-aq"]);
        for id in ids.split_whitespace() {
            self.docker_ok(&["rm", "-f", id]);
        }
        let nets = self.docker_ok(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("driver={}", self.driver),
        ]);
        for id in nets.split_whitespace() {
            self.docker_ok(&["network", "rm", id]);
        }
        let (bridges, published) = self.show();
        assert!(
            !bridges.iter().any(|b| b.name.starts_with("dk-")) && published.is_empty(),
            "left in vswitchd:\n{}",
            self.show_text()
        );
        let left = self.links_named(&["vh", "vc", "vp", "vt"]);
        assert!(left.is_empty(), "veths left behind: {left:?}");
    }

    /// An uplink: veth `up0` (switch side) to namespace `<prefix>-wan` (198.51.100.1/24);
    /// vswitchd's uplink address 198.51.100.2/24. Returns the wan namespace.
    pub fn add_uplink(&mut self) -> String {
        let wan = format!("{}-wan", self.prefix);
        self.add_ns(&wan);
        sh(&[
            "ip", "-n", &self.ns, "link", "add", "up0", "type", "veth", "peer", "name", "eth0",
            "netns", &wan,
        ]);
        sh(&[
            "ip",
            "-n",
            &wan,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &wan, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &self.ns, "link", "set", "up0", "up"]);
        ctl::call(
            &self.sock,
            &Request::SetUplink {
                iface: "up0".into(),
                ip: "198.51.100.2/24".into(),
                gw: Some("198.51.100.1".parse().expect("address")),
            },
        )
        .expect("set-uplink");
        wan
    }
}

impl Drop for DockerLab {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        if panicking {
            eprintln!("{}\n{}", self.show_text(), self.logs());
        }
        if self.dockerd.is_some() {
            // Containers and networks through Docker (so the plugin cleans up too).
            if let Ok(o) = try_run_env(
                &["docker", "ps", "-aq"],
                &[
                    ("DOCKER_HOST", &self.docker_host),
                    ("DOCKER_API_VERSION", "1.41"),
                ],
                DOCKER,
            ) {
                for id in o.stdout.split_whitespace() {
                    let _ = try_run_env(
                        &["docker", "rm", "-f", id],
                        &[
                            ("DOCKER_HOST", &self.docker_host),
                            ("DOCKER_API_VERSION", "1.41"),
                        ],
                        DOCKER,
                    );
                }
            }
            if let Ok(o) = try_run_env(
                &[
                    "docker",
                    "network",
                    "ls",
                    "-q",
                    "--filter",
                    &format!("driver={}", self.driver),
                ],
                &[
                    ("DOCKER_HOST", &self.docker_host),
                    ("DOCKER_API_VERSION", "1.41"),
                ],
                DOCKER,
            ) {
                for id in o.stdout.split_whitespace() {
                    let _ = try_run_env(
                        &["docker", "network", "rm", id],
                        &[
                            ("DOCKER_HOST", &self.docker_host),
                            ("DOCKER_API_VERSION", "1.41"),
                        ],
                        DOCKER,
                    );
                }
            }
        }
        if let Some(mut d) = self.dockerd.take() {
            d.stop(libc::SIGTERM, Duration::from_secs(20));
        }
        self.stop_plugin();
        let _ = fs::remove_file(&self.plugin_sock);
        if let Some(mut v) = self.vswitchd.take() {
            v.stop(libc::SIGTERM, Duration::from_secs(3));
        }
        for ns in self.namespaces.iter().rev() {
            if let Ok(o) = try_run_env(&["ip", "netns", "pids", ns], &[], SHORT) {
                for pid in o.stdout.split_whitespace() {
                    if let Ok(pid) = pid.parse::<u32>() {
                        signal(pid, libc::SIGKILL);
                    }
                }
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = try_run_env(&["ip", "netns", "del", ns], &[], SHORT);
        }
        // Mounts dockerd may have left (overlay layers, the exec root's netns files).
        let dir = self.dir.to_string_lossy().to_string();
        let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut mine: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mine.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mine {
            let _ = try_run_env(&["umount", "-l", m], &[], SHORT);
        }
        if panicking {
            eprintln!("(test files kept in {})", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
