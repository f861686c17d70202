//! Podman 4 (Debian's) as the CNI runtime: `podman run --network vswitchnet` with our
//! conflist in a test-local CNI directory, no `podman network create`. Two containers
//! ping each other and fetch a page, `-p 8080:80` is fetched from behind vswitchd's
//! uplink, and `podman rm` leaves nothing in vswitchd or in host-local's store.
//!
//! Everything is the test's own ([`testlab::podman`]): podman's `--root`/`--runroot`
//! (vfs storage), its containers.conf (`CONTAINERS_CONF`: the CNI backend, the CNI
//! directory, no default ulimits, which this sandbox refuses), a busybox image imported
//! from Debian's busybox-static, and the namespace podman and vswitchd run in.
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
use testlab::podman::Podman;
use testlab::{netns, Bg, Namespaces, Opts, Output};

const IMAGE: &str = "localhost/vswitch-bb:test";
const PAGE: &str = "hello from podman on vswitch";
const NET: &str = "vswitchnet";
const BRIDGE: &str = "podbr";

struct PodmanLab {
    dir: PathBuf,
    ns: String,
    sock: PathBuf,
    vsctl: PathBuf,
    // Dropped in this order: containers first (their DEL needs vswitchd), then the
    // daemon, then the namespaces.
    podman: Option<Podman>,
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
            podman: None,
            vswitchd: None,
            namespaces: Namespaces::new(),
        };
        lab.namespaces.add(&lab.ns);
        // As podman (see testlab::podman), in the caller's mount namespace.
        let argv = vec![
            "nsenter".to_string(),
            format!("--net={}", netns::path(&lab.ns).display()),
            "--".into(),
            bins.vswitchd.display().to_string(),
            "--sock".into(),
            lab.sock.display().to_string(),
            "--db".into(),
            lab.dir.join("conf.json").display().to_string(),
        ];
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
        let (cni_dir, plugins) = lab.write_configs(&bin_dir);
        let podman = Podman::new(
            &lab.ns,
            &lab.dir.join("podman"),
            &cni_dir,
            &[&plugins, Path::new("/usr/lib/cni")],
        );
        podman.import_busybox(IMAGE, PAGE);
        lab.podman = Some(podman);
        lab
    }

    /// The conflist, and the plugin under its type's name; the two directories.
    fn write_configs(&self, bin_dir: &Path) -> (PathBuf, PathBuf) {
        let cni_dir = self.dir.join("cni");
        let plugins = self.dir.join("plugins");
        fs::create_dir_all(&cni_dir).unwrap();
        fs::create_dir_all(&plugins).unwrap();
        // A runtime finds a plugin by its "type": ours is "vswitch".
        symlink(bin_dir.join("vswitch-cni"), plugins.join("vswitch")).unwrap();
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
        (cni_dir, plugins)
    }

    fn podman(&self) -> &Podman {
        self.podman.as_ref().expect("podman is set up")
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
        drop(self.podman.take());
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

    let pm = lab.podman();
    pm.run(
        "web",
        &["--network", NET, "-p", "8080:80"],
        IMAGE,
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    pm.run("c2", &["--network", NET], IMAGE, &["sleep", "3600"]);
    let ip_of = |name: &str| {
        let f = format!("{{{{.NetworkSettings.Networks.{NET}.IPAddress}}}}");
        pm.podman_ok(&["inspect", "-f", &f, name])
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
    let ping = pm.podman_ok(&["exec", "c2", "ping", "-c", "3", "-W", "2", &web]);
    assert!(ping.contains("3 packets received"), "{ping}");
    let route = pm.podman_ok(&["exec", "c2", "ip", "route"]);
    assert!(route.contains("default via 10.78.0.1"), "{route}");
    let page = pm.podman_ok(&["exec", "c2", "wget", "-qO-", &format!("http://{web}/")]);
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
    pm.podman_ok(&["rm", "-f", "-t", "0", "web", "c2"]);
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
