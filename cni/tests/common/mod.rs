//! Harness of the CNI tests: a [`CniLab`] is a namespace where a private `vswitchd` runs
//! and where `vswitch-cni` is run (the plugin's veths must be where vswitchd is), the
//! "container" namespaces a test adds, and a temporary directory (control socket,
//! config, host-local's leases, conf files, logs). Dropping the lab stops vswitchd,
//! kills what runs in its namespaces, deletes them and the directory, also when the test
//! panics (vswitchd's log is printed then).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};
use testlab::{netns, Namespaces, Opts, Out, Switchd, SHORT};

pub use testlab::{run, wait_until};

/// Where Debian's containernetworking-plugins puts host-local and friends.
pub const CNI_PATH: &str = "/usr/lib/cni";

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn bin_dir() -> PathBuf {
    let me = PathBuf::from(env!("CARGO_BIN_EXE_vswitch-cni"));
    me.parent().expect("binary has a directory").to_path_buf()
}

/// What one plugin call gave: exit status, stdout parsed (Null if empty), the raw output.
pub struct Call {
    pub ok: bool,
    pub json: Value,
    pub out: Out,
}

impl Call {
    /// The CNI error code, asserting the call failed with an error object.
    pub fn code(&self) -> u64 {
        assert!(!self.ok, "expected a failure: {}", self.out);
        self.json["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error object on stdout: {}", self.out))
    }
    /// The error message.
    pub fn msg(&self) -> String {
        self.json["msg"].as_str().unwrap_or_default().to_string()
    }
}

/// One test's private vswitchd and namespaces.
pub struct CniLab {
    pub prefix: String,
    pub dir: PathBuf,
    /// vswitchd's namespace, where the plugin runs too.
    pub ns: String,
    pub vswitchd: Switchd,
    namespaces: Namespaces,
}

impl CniLab {
    pub fn start(tag: &str) -> CniLab {
        assert!(
            testlab::is_root(),
            "the CNI tests need root (network namespaces)"
        );
        testlab::require_tools(&["ip", "ping", "curl", "busybox"]);
        assert!(
            Path::new(CNI_PATH).join("host-local").is_file(),
            "missing {CNI_PATH}/host-local: apt-get install containernetworking-plugins (scripts/deps.sh)"
        );
        let bins = testlab::Bins::beside(&bin_dir().join("vswitchd"));
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("cn{}{seq}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{prefix}.d"));
        let _ = fs::remove_dir_all(&dir);
        let ns = format!("{prefix}-sw");
        let mut lab = CniLab {
            vswitchd: Switchd::new("cni", &ns, &dir, bins),
            prefix,
            dir,
            ns,
            namespaces: Namespaces::new(),
        };
        lab.namespaces.add(&lab.ns);
        lab.vswitchd.start();
        lab
    }

    /// Adds a namespace `PREFIX-NAME` (a "container"); returns its name.
    pub fn add_ns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.prefix);
        self.namespaces.add(&ns);
        ns
    }

    /// The path of namespace `ns` as runtimes pass it in `CNI_NETNS`.
    pub fn netns_path(ns: &str) -> String {
        netns::path(ns).display().to_string()
    }

    /// A network configuration: `type` vswitch on `bridge`, host-local in `subnet` with
    /// its leases in the lab's directory, the lab's socket; `extra` is merged on top.
    pub fn conf(&self, name: &str, bridge: &str, subnet: &str, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": name,
            "type": "vswitch",
            "bridge": bridge,
            "socket": self.vswitchd.sock,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.dir.join("ipam"),
            },
        });
        if let (Some(c), Value::Object(e)) = (c.as_object_mut(), extra) {
            for (k, v) in e {
                c.insert(k, v);
            }
        }
        c
    }

    /// Runs the plugin in the lab's namespace with `env` (CNI_* variables) and `stdin`.
    pub fn plugin(&self, env: &[(&str, &str)], stdin: &str) -> Call {
        plugin_in(&self.ns, &self.dir, env, stdin)
    }

    /// `CNI_COMMAND=cmd` for container `id` in namespace `ns` (None: no CNI_NETNS).
    pub fn cni(&self, cmd: &str, id: &str, ns: Option<&str>, conf: &Value) -> Call {
        let path = ns.map(Self::netns_path);
        let mut env = vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", id),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_PATH),
        ];
        if let Some(p) = &path {
            env.push(("CNI_NETNS", p));
        }
        self.plugin(&env, &conf.to_string())
    }

    /// ADD that must succeed; the result.
    pub fn add(&self, id: &str, ns: &str, conf: &Value) -> Value {
        let c = self.cni("ADD", id, Some(ns), conf);
        assert!(
            c.ok,
            "ADD {id} failed: {}\n{}",
            c.out,
            self.vswitchd.log_text()
        );
        c.json
    }

    /// Runs `argv` in namespace `ns`.
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Out {
        run(&netns::exec_argv(ns, argv), testlab::LONG)
    }

    /// Pings `to` from `ns`: true if a reply came within a few tries.
    pub fn pings(&self, ns: &str, to: &str) -> bool {
        self.exec(ns, &["ping", "-c", "3", "-i", "0.2", "-W", "1", to])
            .stdout
            .contains(" 0% packet loss")
            || self.exec(ns, &["ping", "-c", "1", "-W", "1", to]).success()
    }

    /// Leases host-local holds for network `name`.
    pub fn leases(&self, name: &str) -> Vec<String> {
        let d = self.dir.join("ipam").join(name);
        let mut v: Vec<String> = fs::read_dir(&d)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for CniLab {
    fn drop(&mut self) {
        let _ = self.vswitchd.stop();
        let _ = self.namespaces.remove();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs the plugin in namespace `ns` (where its vswitchd runs) with `env` (CNI_*
/// variables) and `stdin`, kept in a file under `dir`.
pub fn plugin_in(ns: &str, dir: &Path, env: &[(&str, &str)], stdin: &str) -> Call {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let file = dir.join(format!("stdin.{seq}.json"));
    fs::write(&file, stdin).expect("write the plugin's stdin");
    let bin = env!("CARGO_BIN_EXE_vswitch-cni");
    let f = file.to_str().expect("utf-8 path");
    let argv = netns::exec_argv(ns, &["sh", "-c", "exec \"$0\" < \"$1\"", bin, f]);
    let mut opts = Opts::with_env(env);
    // Whatever the caller's shell had must not leak into a call.
    for k in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_PATH",
        "CNI_ARGS",
    ] {
        if !env.iter().any(|(n, _)| *n == k) {
            opts.env_remove.push(k.to_string());
        }
    }
    let out =
        testlab::proc::try_run_with(&argv, SHORT * 3, &opts).unwrap_or_else(|e| panic!("{e}"));
    let json = if out.stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("plugin printed no JSON ({e}): {out}"))
    };
    assert!(
        out.stdout.trim().lines().count() <= 1,
        "the plugin's output is one line: {out}"
    );
    Call {
        ok: out.success(),
        json,
        out,
    }
}
