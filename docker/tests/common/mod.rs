//! Harness of the Docker integration tests: a [`DockerLab`] is one test's private Docker,
//! built on the workspace's test lab ([`testlab`]).
//!
//! A lab owns a network namespace where `vswitchd`, `vswitch-docker` and a private
//! `dockerd` ([`testlab::dockerd`]) run together (the plugin's veths must be where both
//! daemons are), a temporary directory (control socket, config, Docker's data and exec
//! roots, logs), a plugin socket with a unique name
//! (`/run/docker/plugins/vswitch-<prefix>.sock`, driver `vswitch-<prefix>`), extra
//! namespaces a test adds (quiet, see [`testlab::netns`]), and a busybox image imported
//! from Debian's busybox-static (no registry). Dropping the lab removes the containers and
//! networks through Docker, stops the daemons, removes the plugin socket, kills what is
//! left in its namespaces and deletes them, also when the test panics (then the logs are
//! printed first).
//!
//! Nothing is skipped: dockerd missing, or unable to start, fails the test with the
//! reason, as every other missing tool does (`scripts/deps.sh` installs docker.io).

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use ctl::{BridgeInfo, Data, PublishedInfo, Request};
use testlab::dockerd::Dockerd;
use testlab::{netns, Bg, Namespaces, Opts, Output, Switchd};

pub use testlab::{run, sh, wait_until, Out, SHORT};

/// The image every container runs.
pub const IMAGE: &str = "vswitch-bb:test";

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
    /// vswitchd's control socket.
    pub sock: PathBuf,
    /// The plugin's socket and the driver name Docker knows it by.
    pub plugin_sock: PathBuf,
    pub driver: String,
    /// The Docker API socket the plugin learns names from (`--docker-sock`; default
    /// dockerd's own) and its extra arguments: `start_with`'s setup may change them.
    pub plugin_api: PathBuf,
    pub plugin_args: Vec<String>,
    namespaces: Namespaces,
    vswitchd: Switchd,
    plugin: Option<Bg>,
    dockerd: Option<Dockerd>,
}

impl DockerLab {
    /// Starts a lab; panics, saying why, when dockerd cannot start.
    pub fn start(tag: &str) -> DockerLab {
        Self::start_with(tag, |_| Vec::new())
    }

    /// Starts a lab whose vswitchd gets the extra arguments `setup` returns; `setup`
    /// runs once the lab's namespace exists, before vswitchd starts (to give it an
    /// underlay to a cluster, say).
    pub fn start_with(tag: &str, setup: impl FnOnce(&mut DockerLab) -> Vec<String>) -> DockerLab {
        assert!(
            testlab::is_root(),
            "the Docker tests need root (network namespaces, dockerd)"
        );
        testlab::require_tools(&["ip", "nsenter", "curl", "timeout"]);
        assert!(
            testlab::which("dockerd").is_some(),
            "dockerd is not installed (apt-get install docker.io, or bash scripts/deps.sh)"
        );
        assert!(
            testlab::which("docker").is_some(),
            "dockerd is installed but the docker client is not"
        );
        assert!(
            Path::new("/bin/busybox").is_file(),
            "missing /bin/busybox: apt-get install busybox-static"
        );
        let bins = testlab::Bins::beside(&bin_dir().join("vswitchd"));
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("vd{}{seq}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{prefix}.d"));
        let _ = fs::remove_dir_all(&dir);
        let driver = format!("vswitch-{prefix}");
        let ns = format!("{prefix}-sw");
        let vswitchd = Switchd::new("docker", &ns, &dir, bins);
        let mut lab = DockerLab {
            sock: vswitchd.sock.clone(),
            vswitchd,
            plugin_sock: PathBuf::from(format!("/run/docker/plugins/{driver}.sock")),
            driver,
            plugin_api: dir.join("docker.sock"),
            plugin_args: Vec::new(),
            prefix,
            dir,
            namespaces: Namespaces::new(),
            plugin: None,
            dockerd: None,
            ns,
        };
        lab.namespaces.add(&lab.ns);
        let extra = setup(&mut lab);
        lab.vswitchd.daemon_args.extend(extra);
        lab.start_vswitchd();
        lab.start_plugin();
        // A panic here drops the lab, which stops what it started.
        match Dockerd::start(&lab.ns, &lab.dir, false, Duration::from_secs(60)) {
            Ok(d) => lab.dockerd = Some(d),
            Err(e) => panic!("dockerd cannot start here: {e}"),
        }
        lab.import_image();
        lab
    }

    /// Adds a quiet namespace owned by the lab (lo up).
    pub fn add_ns(&mut self, ns: &str) {
        self.namespaces.add(ns);
    }

    /// Runs `argv` in namespace `ns`.
    pub fn exec(&self, ns: &str, argv: &[&str], timeout: Duration) -> Out {
        run(&netns::exec_argv(ns, argv), timeout)
    }

    /// vswitchd's log, the plugin's and dockerd's (for failure messages).
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["vswitchd.log", "plugin.log", "dockerd.log"] {
            let tail = testlab::bg::tail(&self.dir.join(f), 40);
            s.push_str(&format!("===== {f} (last 40 lines) =====\n{tail}\n"));
        }
        s
    }

    /// Starts vswitchd and waits until it answers.
    pub fn start_vswitchd(&mut self) {
        self.vswitchd.start();
    }

    /// Kills vswitchd (SIGKILL: nothing saved at exit).
    pub fn kill_vswitchd(&mut self) {
        let _ = self.vswitchd.signal(libc::SIGKILL, Duration::from_secs(5));
    }

    pub fn start_plugin(&mut self) {
        let bin = env!("CARGO_BIN_EXE_vswitch-docker");
        let sock = self.sock.to_str().expect("utf-8 path");
        let plugin_sock = self.plugin_sock.to_str().expect("utf-8 path");
        // The private dockerd's API socket (Dockerd::start puts it there): the plugin
        // learns containers' names from it, waiting for it to answer.
        let docker_sock = self.plugin_api.to_str().expect("utf-8 path");
        let mut args = vec![
            bin,
            "--plugin-sock",
            plugin_sock,
            "--docker-sock",
            docker_sock,
        ];
        args.extend(self.plugin_args.iter().map(String::as_str));
        let argv = netns::exec_argv(&self.ns, &args);
        let out = Output::log(&self.dir.join("plugin.log"));
        let opts = Opts::with_env(&[(ctl::SOCK_ENV, sock)]);
        let bg = Bg::start("vswitch-docker", &argv, out, &opts)
            .unwrap_or_else(|e| panic!("cannot start the plugin: {e}"));
        self.plugin = Some(bg);
        wait_until("the plugin socket", Duration::from_secs(10), || {
            self.plugin_sock.exists()
        });
    }

    /// Stops the plugin with SIGTERM (it removes its socket).
    pub fn stop_plugin(&mut self) {
        if let Some(mut b) = self.plugin.take() {
            let _ = b.stop(Duration::from_secs(5));
        }
    }

    fn dockerd(&self) -> &Dockerd {
        self.dockerd.as_ref().expect("dockerd runs")
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
        self.dockerd()
            .try_docker(args)
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
        netns::veth_up(&self.ns, "up0", &wan, "eth0")
            .and_then(|()| netns::addr_add(&wan, "eth0", "198.51.100.1/24"))
            .unwrap_or_else(|e| panic!("{e}"));
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
        if let Some(d) = self.dockerd.take() {
            // Containers and networks through Docker (so the plugin cleans up too), then
            // dockerd stops (dropping it).
            d.remove_containers();
            let filter = format!("driver={}", self.driver);
            if let Ok(o) = d.try_docker(&["network", "ls", "-q", "--filter", &filter]) {
                for id in o.stdout.split_whitespace() {
                    let _ = d.try_docker(&["network", "rm", id]);
                }
            }
        }
        self.stop_plugin();
        let _ = fs::remove_file(&self.plugin_sock);
        let _ = self.vswitchd.stop();
        let _ = self.namespaces.remove();
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
            let _ = testlab::try_run(&["umount", "-l", m], SHORT);
        }
        if panicking {
            eprintln!("(test files kept in {})", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
