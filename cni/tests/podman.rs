//! Podman 4 (Debian's) as the CNI runtime: `podman run --network vswitchnet` with our
//! conflist in a test-local CNI directory, no `podman network create`. Two containers
//! ping each other and fetch a page, `-p 8080:80` is fetched from behind vswitchd's
//! uplink, and `podman rm` leaves nothing in vswitchd or in host-local's store.
//!
//! Everything is the test's own: podman's `--root`/`--runroot` (vfs storage), its
//! containers.conf (`CONTAINERS_CONF`: the CNI backend, the CNI directory, no default
//! ulimits, which this sandbox refuses), a busybox image imported from Debian's
//! busybox-static, and the namespace podman and vswitchd run in.
//!
//! Podman and vswitchd run in that namespace through `nsenter --net`, not `ip netns
//! exec`: the latter gives each its own mount namespace, and podman's bind mount of a
//! container's namespace under /run/netns would then be invisible to vswitchd, which
//! opens it by path (on a real host both see the same /run/netns).
//!
//! Addresses: 10.78.0.0/24 for the containers, 198.51.100.0/24 for the uplink.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ctl::Data;
use testlab::{netns, Bg, Namespaces, Opts, Out, Output};

const IMAGE: &str = "localhost/vswitch-bb:test";
const PAGE: &str = "hello from podman on vswitch";
const NET: &str = "vswitchnet";
const BRIDGE: &str = "podbr";

struct PodmanLab {
    dir: PathBuf,
    ns: String,
    sock: PathBuf,
    vsctl: PathBuf,
    vswitchd: Option<Bg>,
    namespaces: Namespaces,
}

impl PodmanLab {
    fn start() -> PodmanLab {
        assert!(testlab::is_root(), "the podman test needs root");
        testlab::require_tools(&["podman", "nsenter", "curl", "tar", "busybox"]);
        let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_vswitch-cni"))
            .parent()
            .unwrap()
            .to_path_buf();
        let bins = testlab::Bins::beside(&bin_dir.join("vswitchd"));
        let prefix = format!("pm{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{prefix}.d"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut lab = PodmanLab {
            sock: dir.join("sock"),
            vsctl: bins.vsctl.clone(),
            dir,
            ns: format!("{prefix}-sw"),
            vswitchd: None,
            namespaces: Namespaces::new(),
        };
        lab.namespaces.add(&lab.ns);
        let argv = lab.in_ns(&[
            bins.vswitchd.to_str().unwrap(),
            "--sock",
            lab.sock.to_str().unwrap(),
            "--db",
            lab.dir.join("conf.json").to_str().unwrap(),
        ]);
        let opts = Opts {
            env_remove: vec![ctl::SOCK_ENV.into()],
            ..Opts::default()
        };
        let mut bg = Bg::start(
            "vswitchd",
            &argv,
            Output::log(&lab.dir.join("vswitchd.log")),
            &opts,
        )
        .unwrap();
        let (vsctl, sock) = (lab.vsctl.clone(), lab.sock.clone());
        testlab::vswitchd::wait_ready(&mut bg, testlab::vswitchd::READY, || {
            testlab::vswitchd::answers(&vsctl, &sock)
        })
        .unwrap_or_else(|e| panic!("vswitchd did not start: {e:?}\n{}", lab.logs()));
        lab.vswitchd = Some(bg);
        lab.write_configs(&bin_dir);
        lab.import_image();
        lab
    }

    /// `argv` in the lab's network namespace, in the caller's mount namespace.
    fn in_ns(&self, argv: &[&str]) -> Vec<String> {
        let mut v = vec![
            "nsenter".to_string(),
            format!("--net={}", netns::path(&self.ns).display()),
            "--".into(),
        ];
        v.extend(argv.iter().map(|s| s.to_string()));
        v
    }

    /// containers.conf, the conflist, and the plugin under its type's name.
    fn write_configs(&self, bin_dir: &Path) {
        let cni_dir = self.dir.join("cni");
        let plugins = self.dir.join("plugins");
        fs::create_dir_all(&cni_dir).unwrap();
        fs::create_dir_all(&plugins).unwrap();
        // A runtime finds a plugin by its "type": ours is "vswitch".
        symlink(bin_dir.join("vswitch-cni"), plugins.join("vswitch")).unwrap();
        let conf = format!(
            "[containers]\ndefault_ulimits = []\n\n\
             [network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = \"{}\"\n\
             cni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n\n\
             [engine]\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n\
             tmp_dir = \"{}\"\n",
            cni_dir.display(),
            plugins.display(),
            self.dir.join("tmp").display()
        );
        fs::write(self.dir.join("containers.conf"), conf).unwrap();
        let list = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NET,
            "plugins": [{
                "type": "vswitch",
                "bridge": BRIDGE,
                "socket": self.sock,
                "capabilities": {"portMappings": true},
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.78.0.0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": self.dir.join("ipam"),
                },
            }],
        });
        fs::write(cni_dir.join(format!("{NET}.conflist")), list.to_string()).unwrap();
    }

    fn import_image(&self) {
        let root = self.dir.join("rootfs");
        for d in ["bin", "www", "tmp"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        let list = testlab::sh(&["/bin/busybox", "--list"]);
        for applet in list
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox")
        {
            let _ = symlink("busybox", root.join("bin").join(applet));
        }
        fs::write(root.join("www/index.html"), format!("{PAGE}\n")).unwrap();
        let tar = self.dir.join("rootfs.tar");
        testlab::sh(&[
            "tar",
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ]);
        self.podman_ok(&["import", tar.to_str().unwrap(), IMAGE]);
    }

    fn try_podman(&self, args: &[&str]) -> Out {
        let root = self.dir.join("root");
        let runroot = self.dir.join("runroot");
        let mut argv = vec![
            "podman",
            "--root",
            root.to_str().unwrap(),
            "--runroot",
            runroot.to_str().unwrap(),
            "--storage-driver",
            "vfs",
        ];
        argv.extend(args);
        let conf = self.dir.join("containers.conf");
        let opts = Opts {
            env: vec![("CONTAINERS_CONF".into(), conf.display().to_string())],
            env_remove: vec![ctl::SOCK_ENV.into()],
            ignore_stop: true,
            ..Opts::default()
        };
        testlab::proc::try_run_with(&self.in_ns(&argv), Duration::from_secs(120), &opts)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn podman_ok(&self, args: &[&str]) -> String {
        let o = self.try_podman(args);
        assert!(o.success(), "podman failed: {o}\n{}", self.logs());
        o.stdout
    }

    fn vsctl_json(&self, args: &[&str]) -> Data {
        testlab::vswitchd::vsctl_json(&self.vsctl, &self.sock, args)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()))
    }

    fn vsctl_ok(&self, args: &[&str]) {
        let o = testlab::vswitchd::vsctl(&self.vsctl, &self.sock, args).unwrap();
        assert!(o.success(), "{o}\n{}", self.logs());
    }

    fn logs(&self) -> String {
        format!(
            "===== vswitchd.log (last 40 lines) =====\n{}",
            testlab::bg::tail(&self.dir.join("vswitchd.log"), 40)
        )
    }
}

impl Drop for PodmanLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if self.dir.join("containers.conf").exists() {
            let _ = self.try_podman(&["rm", "-af", "-t", "0"]);
        }
        if let Some(mut b) = self.vswitchd.take() {
            let _ = b.stop(Duration::from_secs(5));
        }
        let _ = self.namespaces.remove();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn podman_runs_containers_on_vswitch() {
    let mut lab = PodmanLab::start();
    let wan = format!("{}-wan", lab.ns.trim_end_matches("-sw"));
    lab.namespaces.add(&wan);
    netns::veth_up(&lab.ns, "up0", &wan, "eth0").unwrap();
    netns::addr_add(&wan, "eth0", "198.51.100.1/24").unwrap();
    lab.vsctl_ok(&["set-uplink", "up0", "--ip", "198.51.100.2/24"]);

    let run = |name: &str, extra: &[&str], cmd: &[&str]| {
        let mut a = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            NET,
            "--ulimit",
            "host",
        ];
        a.extend(extra);
        a.push(IMAGE);
        a.extend(cmd);
        lab.podman_ok(&a);
    };
    run(
        "web",
        &["-p", "8080:80"],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    run("c2", &[], &["sleep", "3600"]);
    let ip_of = |name: &str| {
        let f = format!("{{{{.NetworkSettings.Networks.{NET}.IPAddress}}}}");
        lab.podman_ok(&["inspect", "-f", &f, name])
            .trim()
            .to_string()
    };
    let (web, c2) = (ip_of("web"), ip_of("c2"));
    assert!(
        web.starts_with("10.78.0.") && c2.starts_with("10.78.0."),
        "{web} {c2}"
    );
    let Data::Show { bridges, .. } = lab.vsctl_json(&["show"]) else {
        panic!("show")
    };
    let b = bridges
        .iter()
        .find(|b| b.name == BRIDGE)
        .expect("podman's bridge");
    assert_eq!(b.ports.len(), 2, "{b:#?}");
    assert!(b.ports.iter().all(|p| p.state == "up"), "{b:#?}");

    // c2 pings web and fetches its page; the gateway is the switch's.
    let ping = lab.podman_ok(&["exec", "c2", "ping", "-c", "3", "-W", "2", &web]);
    assert!(ping.contains("3 packets received"), "{ping}");
    let route = lab.podman_ok(&["exec", "c2", "ip", "route"]);
    assert!(route.contains("default via 10.78.0.1"), "{route}");
    let page = lab.podman_ok(&["exec", "c2", "wget", "-qO-", &format!("http://{web}/")]);
    assert_eq!(page.trim(), PAGE);

    // -p 8080:80 is a published port of the switch, reached on the uplink address.
    let Data::Published { published } = lab.vsctl_json(&["list-published"]) else {
        panic!("list-published")
    };
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].target, format!("{web}:80"));
    let got = testlab::run(
        &netns::exec_argv(
            &wan,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "http://198.51.100.2:8080/",
            ],
        ),
        testlab::LONG,
    )
    .ok();
    assert_eq!(got.trim(), PAGE);

    // podman rm: no port, no published port, no lease, no veth is left.
    lab.podman_ok(&["rm", "-f", "-t", "0", "web", "c2"]);
    let Data::Show {
        bridges, published, ..
    } = lab.vsctl_json(&["show"])
    else {
        panic!("show")
    };
    let b = bridges
        .iter()
        .find(|b| b.name == BRIDGE)
        .expect("the bridge stays");
    assert!(b.ports.is_empty(), "{b:#?}");
    assert!(published.is_empty(), "{published:?}");
    let leases: Vec<String> = fs::read_dir(lab.dir.join("ipam").join(NET))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(leases.is_empty(), "{leases:?}");
    let links = testlab::run(
        &netns::exec_argv(&lab.ns, &["ip", "-o", "link"]),
        testlab::SHORT,
    )
    .ok();
    assert!(!links.contains(": va"), "{links}");
}
