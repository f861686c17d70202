//! End-to-end tests of `vstopo` driving the real `vswitchd` and `vsctl`: every file under
//! `topologies/*.yaml` passes `vstopo test`; a file whose check must fail makes it exit
//! non-zero and name the check; broken files are rejected with their line before anything
//! is built; `up`/`exec`/`down`, SIGTERM, SIGINT and a SIGKILLed runner followed by
//! `vstopo down` all leave nothing behind (`ip netns list`, `ip link`, the state dir).
//!
//! They need root and the workspace built (`vswitchd` and `vsctl` next to `vstopo`):
//! `scripts/test.sh` builds first. A missing prerequisite is a failure, never a skip.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use testlab::stop::{SIGINT, SIGKILL, SIGTERM};
use testlab::{Bg, Opts, Out, Output};
use vstopo::plan::{self, Link};

fn vstopo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vstopo"))
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    crate_dir().join("tests/fixtures").join(name)
}

/// Panics (never skips) unless we are root and the daemon binaries are built.
fn prerequisites() {
    assert!(
        testlab::is_root(),
        "the vstopo tests build network namespaces and need root (sudo bash scripts/test.sh)"
    );
    let dir = vstopo_bin().parent().unwrap().to_path_buf();
    for b in ["vswitchd", "vsctl"] {
        assert!(
            dir.join(b).is_file(),
            "{b} is not next to vstopo in {}: build the workspace first (cargo build --workspace --release)",
            dir.display()
        );
    }
}

/// Prints a line into the test log even when the test passes (the harness captures
/// `println!`, not writes to the stderr handle).
fn report(text: &str) {
    use std::io::Write;
    let mut e = std::io::stderr().lock();
    for l in text.lines() {
        let _ = writeln!(e, "    {l}");
    }
}

/// A running `vstopo`, its output in files of a directory of its own.
struct Running {
    bg: Bg,
    dir: PathBuf,
}

fn spawn(args: &[&str]) -> Running {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vstopo-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut argv = vec![vstopo_bin().display().to_string()];
    argv.extend(args.iter().map(|a| (*a).to_string()));
    let out = Output::split(&dir.join("stdout"), &dir.join("stderr"));
    let bg = Bg::start("vstopo", &argv, out, &Opts::default()).expect("start vstopo");
    Running { bg, dir }
}

impl Running {
    fn stdout(&self) -> String {
        self.bg.stdout()
    }

    fn wait_stdout(&mut self, needle: &str, timeout: Duration) {
        self.bg.wait_output(needle, timeout);
    }

    fn signal(&mut self, sig: i32) {
        self.bg.signal(sig);
    }

    fn wait(mut self, timeout: Duration) -> Out {
        let Some(status) = self.bg.wait_timeout(timeout) else {
            panic!(
                "vstopo did not finish within {timeout:?}\n--- stdout ---\n{}--- stderr ---\n{}",
                self.stdout(),
                self.bg.stderr()
            );
        };
        let o = Out {
            cmd: "vstopo".into(),
            status,
            stdout: self.stdout(),
            stderr: self.bg.stderr(),
        };
        let _ = std::fs::remove_dir_all(&self.dir);
        o
    }
}

fn vstopo(args: &[&str], timeout: Duration) -> Out {
    spawn(args).wait(timeout)
}

/// The run prefixes a vstopo output names (`building run vtXXXX`).
fn runs_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split("building run ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn root_links() -> BTreeSet<String> {
    let o = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Every interface name a topology file makes (host interfaces and switch ports).
fn names_of(file: &Path) -> BTreeSet<String> {
    let p = plan::load(file).unwrap();
    let mut s = BTreeSet::new();
    for h in &p.hosts {
        for i in &h.ifaces {
            s.insert(i.name.clone());
        }
    }
    for l in &p.links {
        match l {
            Link::HostSwitch { port, .. } => {
                s.insert(port.name.clone());
            }
            Link::SwitchSwitch { a, b, .. } => {
                s.insert(a.name.clone());
                s.insert(b.name.clone());
            }
            Link::Uplink { port, .. } => {
                s.insert(port.clone());
            }
            Link::HostHost { .. } => {}
        }
    }
    s
}

/// Nothing of `runs` is left: no namespace `RUN-*`, no state directory, and no
/// interface of `files` appeared in the root namespace since `before`.
fn assert_clean(runs: &[String], files: &[PathBuf], before: &BTreeSet<String>) {
    assert!(!runs.is_empty(), "no run prefix found in the output");
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&o.stdout).into_owned();
    for r in runs {
        let left: Vec<&str> = netns
            .lines()
            .filter(|l| l.starts_with(&format!("{r}-")))
            .collect();
        assert!(left.is_empty(), "run {r} left namespaces: {left:?}");
        let dir = vstopo::state::state_root().join(r);
        assert!(
            !dir.exists(),
            "run {r} left its state dir {}",
            dir.display()
        );
    }
    let ours: BTreeSet<String> = files.iter().flat_map(|f| names_of(f)).collect();
    let new: Vec<String> = root_links()
        .difference(before)
        .filter(|n| ours.contains(*n))
        .cloned()
        .collect();
    assert!(
        new.is_empty(),
        "interfaces left in the root namespace: {new:?}"
    );
}

fn topology_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(crate_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_topology_file_passes() {
    prerequisites();
    let files = topology_files();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for must in ["quickstart.yaml", "two-switches.yaml"] {
        assert!(
            names.iter().any(|n| n == must),
            "topologies/{must} is missing"
        );
    }
    let before = root_links();
    let mut runs = Vec::new();
    for f in &files {
        let t0 = Instant::now();
        let o = vstopo(&["test", f.to_str().unwrap()], Duration::from_secs(120));
        report(&format!(
            "vstopo test {} ({:.1} s):\n{}",
            f.file_name().unwrap().to_string_lossy(),
            t0.elapsed().as_secs_f64(),
            o.stdout
        ));
        assert!(
            o.status.success(),
            "vstopo test {} failed: {o}",
            f.display()
        );
        assert!(o.stdout.contains("check(s) passed"), "{o}");
        assert!(!o.stdout.contains("FAIL"), "{o}");
        runs.extend(runs_in(&o.stdout));
    }
    assert_clean(&runs, &files, &before);
}

#[test]
fn a_failing_check_fails_the_run_and_is_named() {
    prerequisites();
    let f = fixture("failing-check.yaml");
    let before = root_links();
    let o = vstopo(&["test", f.to_str().unwrap()], Duration::from_secs(60));
    report(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{o}");
    assert!(o.stdout.contains("PASS [1/3] ping a -> b"), "{o}");
    assert!(o.stdout.contains("FAIL [2/3] a reaches c: 0/"), "{o}");
    assert!(
        o.stdout.contains("PASS [3/3]"),
        "later checks still run: {o}"
    );
    assert!(
        o.stdout
            .contains("2 check(s) passed, 1 failed: [2] a reaches c (line 17)"),
        "{o}"
    );
    assert_clean(&runs_in(&o.stdout), &[f], &before);
}

#[test]
fn broken_files_are_rejected_with_their_line_before_anything_is_built() {
    let dir = crate_dir().join("tests/fixtures");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("broken-") {
            continue;
        }
        n += 1;
        let path = e.path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: first line must be `# expect: LINE: message`"));
        let want = format!("{}:{expect}", path.display());
        let mut first = String::new();
        for verb in ["show", "test", "up"] {
            let o = vstopo(&[verb, path.to_str().unwrap()], Duration::from_secs(20));
            assert_eq!(o.status.code(), Some(2), "vstopo {verb} {name}: {o}");
            assert!(
                o.stderr.contains(&want),
                "vstopo {verb} {name}: want {want:?}: {o}"
            );
            assert!(o.stderr.contains("nothing was built"), "{o}");
            assert!(
                o.stdout.is_empty(),
                "vstopo {verb} {name} built something: {o}"
            );
            first = o.stderr.lines().next().unwrap_or_default().to_string();
        }
        report(&first);
    }
    assert!(n >= 5, "expected the broken-*.yaml fixtures, found {n}");
}

#[test]
fn show_prints_the_plan_without_building() {
    let f = crate_dir().join("quickstart.yaml");
    let o = vstopo(
        &["show", "--steps", f.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert!(o.status.success(), "{o}");
    for want in [
        "h3:eth0 -- sw1:br0  TAP h3-eth0 made by sw1, moved into h3 as eth0",
        "vsctl --sock",
        "add-port br0 h3-eth0 --type tap",
        "pingall h1 h2 h3 (expect all)",
    ] {
        assert!(o.stdout.contains(want), "missing {want:?}: {o}");
    }
    assert!(runs_in(&o.stdout).is_empty(), "show must not build: {o}");
}

#[test]
fn show_renders_tunnels_and_their_steps() {
    let f = crate_dir().join("vxlan.yaml");
    let o = vstopo(
        &["show", "--steps", f.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert!(o.status.success(), "{o}");
    for want in [
        "sw1:br0  port vx0, VNI 42, remotes 172.19.0.2 (sw2), UDP port 4789",
        "sw2:br0  port vx0, VNI 42, remotes 172.19.0.1 (sw1), UDP port 4789",
        "add-tunnel br0 vx0 --vni 42 --remote 172.19.0.2",
        "wait until ports c1-eth0, c2-eth0, vx0 of sw1 are up",
        "broadcast c1 -> 10.50.0.255:9999 x3 reaches c2, c3, c4",
    ] {
        assert!(o.stdout.contains(want), "missing {want:?}: {o}");
    }
    // Tunnels are added after the underlay addresses exist.
    let at = |needle: &str| {
        o.stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle}: {o}"))
    };
    assert!(
        at("addr add 172.19.0.2/24") < at("add-tunnel br0 vx0"),
        "{o}"
    );
    assert!(runs_in(&o.stdout).is_empty(), "show must not build: {o}");
}

#[test]
fn show_renders_networks_uplink_published_ports_and_their_steps() {
    let f = crate_dir().join("nat.yaml");
    let o = vstopo(
        &["show", "--steps", f.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert!(o.status.success(), "{o}");
    for want in [
        "bridges: br0 (network 172.18.0.0/24 gateway 172.18.0.1), br1 (network 172.19.0.0/24 gateway 172.19.0.1)",
        "wan:eth0 -- sw1 uplink  veth, interface up0 (vsctl set-uplink)",
        "sw1 uplink up0 198.51.100.2/24 via 198.51.100.1 (far end wan:eth0)",
        "sw1 published tcp/8080 -> 172.18.0.2:80 (c1), reached at 198.51.100.2:8080",
        "add-net br0 172.18.0.0/24 --gateway 172.18.0.1",
        "set-uplink up0 --ip 198.51.100.2/24 --gw 198.51.100.1",
        "publish tcp 8080 172.18.0.2:80",
        "set-dns br0 --record c1=172.18.0.2 --record c2=172.18.0.3",
        "resolv.conf",
        "wait until uplink up0 of sw1 is up",
        "http c1 -> GET http://198.51.100.2:8080/ (expect 200, client 172.18.0.1)",
        "ping wan -> c1 (unreachable)",
    ] {
        assert!(o.stdout.contains(want), "missing {want:?}: {o}");
    }
    let at = |needle: &str| {
        o.stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle}: {o}"))
    };
    // The uplink's veth exists before the daemon starts; networks before the uplink
    // (they must not overlap), both before the published ports (targets in a network).
    assert!(at("link add up0 type veth") < at("vswitchd --sock"), "{o}");
    assert!(at("add-net br1") < at("set-uplink up0"), "{o}");
    assert!(at("set-uplink up0") < at("publish tcp 8080"), "{o}");
    // The switch end of the uplink gets no kernel address (the switch answers for it).
    assert!(!o.stdout.contains("addr add 198.51.100.2"), "{o}");
    assert!(!o.stdout.contains("add-port br0 up0"), "{o}");
    assert!(runs_in(&o.stdout).is_empty(), "show must not build: {o}");
}

#[test]
fn show_renders_the_cluster_and_its_steps() {
    let f = crate_dir().join("cluster.yaml");
    let o = vstopo(
        &["show", "--steps", f.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(o.status.success(), "{o}");
    for want in [
        "etcd: 3 member(s) in host store, store etcd://198.51.100.254:2379,198.51.100.254:2381,198.51.100.254:2383",
        "node sw2: VTEP 198.51.100.2, lease TTL 5 s",
        "overlay red: subnet 10.61.0.0/24, VNI from the cluster; attached: r1 on sw1, r2 on sw2, r3 on sw3, r4 on sw2",
        "r1     host    eth0 from overlay red (vsctl attach on sw1; address from the cluster)",
        "start etcd (3 member(s)) in <run>-store on 198.51.100.254:2379,198.51.100.254:2381,198.51.100.254:2383",
        "--cluster-store etcd://198.51.100.254:2379,198.51.100.254:2381,198.51.100.254:2383 --cluster-advertise 198.51.100.3 --node sw3 --cluster-ttl 5",
        "vsctl --sock /run/vstopo/<run>/sw1.sock add-overlay blue --subnet 10.62.0.0/24 --gateway 10.62.0.254 --vni 6200",
        "vsctl --sock /run/vstopo/<run>/sw3.sock attach blue <run>-b2 --mtu 1450",
    ] {
        assert!(o.stdout.contains(want), "missing {want:?}:\n{}", o.stdout);
    }
    // Order: the underlay forwards before etcd starts, etcd before the nodes, the
    // overlays before the attaches.
    let at = |needle: &str| {
        o.stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing:\n{}", o.stdout))
    };
    assert!(at("wait until ports store-eth0") < at("start etcd"));
    assert!(at("start etcd") < at("--node sw1"));
    assert!(at("wait until sw3 carries every overlay") < at("attach red <run>-r1"));
}

#[test]
fn up_exec_down_leaves_nothing() {
    prerequisites();
    let f = fixture("small.yaml");
    let fs = f.to_str().unwrap();
    let before = root_links();
    let o = vstopo(&["up", fs], Duration::from_secs(60));
    assert!(o.status.success(), "{o}");
    let runs = runs_in(&o.stdout);
    let cleanup = || {
        let _ = vstopo(&["down", fs], Duration::from_secs(30));
    };
    let r = std::panic::catch_unwind(|| {
        let o2 = vstopo(&["up", fs], Duration::from_secs(30));
        assert_eq!(o2.status.code(), Some(1), "a second up must refuse: {o2}");
        assert!(o2.stderr.contains("already up"), "{o2}");
        let p = vstopo(
            &[
                "exec",
                fs,
                "h1",
                "--",
                "ping",
                "-c",
                "1",
                "-w",
                "5",
                "10.41.0.2",
            ],
            Duration::from_secs(20),
        );
        assert!(p.status.success(), "{p}");
        let s = vstopo(
            &["exec", fs, "sw1", "--", "vsctl", "show"],
            Duration::from_secs(20),
        );
        assert!(s.stdout.contains("port h2-eth0 (type afpacket) up"), "{s}");
        let x = vstopo(
            &["exec", fs, "h2", "--", "sh", "-c", "exit 7"],
            Duration::from_secs(20),
        );
        assert_eq!(
            x.status.code(),
            Some(7),
            "exec passes the exit status on: {x}"
        );
        let n = vstopo(&["exec", fs, "nope", "--", "true"], Duration::from_secs(20));
        assert_eq!(n.status.code(), Some(2), "{n}");
    });
    let d = vstopo(&["down", fs], Duration::from_secs(30));
    if r.is_err() {
        cleanup();
    }
    assert!(d.status.success(), "{d}");
    assert!(d.stdout.contains("torn down"), "{d}");
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
    let again = vstopo(&["down", fs], Duration::from_secs(30));
    assert!(again.stdout.contains("nothing of"), "{again}");
    let e = vstopo(&["exec", fs, "h1", "--", "true"], Duration::from_secs(20));
    assert_eq!(e.status.code(), Some(1), "exec after down: {e}");
    assert_clean(&runs, &[f], &before);
}

/// Starts `vstopo test slow.yaml` and waits until it is up and inside its 60 s check.
fn slow_run() -> Running {
    let f = fixture("slow.yaml");
    let mut r = spawn(&["test", f.to_str().unwrap()]);
    r.wait_stdout("up in", Duration::from_secs(60));
    // Inside the check now (or about to be): the `sleep 60` runs in h1.
    thread::sleep(Duration::from_millis(300));
    r
}

#[test]
fn sigterm_and_sigint_tear_everything_down() {
    prerequisites();
    let f = fixture("slow.yaml");
    for (sig, name, code) in [(SIGTERM, "SIGTERM", 143), (SIGINT, "SIGINT", 130)] {
        let before = root_links();
        let mut r = slow_run();
        let t0 = Instant::now();
        r.signal(sig);
        let o = r.wait(Duration::from_secs(20));
        report(&format!(
            "after {name}: exit {:?} in {:.1} s",
            o.status.code(),
            t0.elapsed().as_secs_f64()
        ));
        assert_eq!(o.status.code(), Some(code), "{o}");
        assert!(o.stderr.contains(&format!("stopped by {name}")), "{o}");
        assert!(o.stdout.contains("torn down"), "{o}");
        assert_clean(&runs_in(&o.stdout), std::slice::from_ref(&f), &before);
    }
}

#[test]
fn down_cleans_up_after_the_runner_was_killed() {
    prerequisites();
    let f = fixture("slow.yaml");
    let before = root_links();
    let mut r = slow_run();
    let runs = runs_in(&r.stdout());
    let run = runs.first().cloned().unwrap();
    r.signal(SIGKILL); // no chance to clean up
    let _ = r.wait(Duration::from_secs(10));
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{run}-h1")),
        "the killed run's namespaces should still be there"
    );
    let d = vstopo(&["down", f.to_str().unwrap()], Duration::from_secs(30));
    assert!(d.status.success(), "{d}");
    assert!(
        d.stdout
            .contains(&format!("run {run} (test whose runner died) torn down")),
        "{d}"
    );
    assert_clean(&runs, &[f], &before);
}

#[test]
fn hosts_resolve_each_other_by_name_and_resolv_conf_goes_with_the_run() {
    prerequisites();
    let f = fixture("dns.yaml");
    let fs = f.to_str().unwrap();
    let before = root_links();
    let o = vstopo(&["up", fs], Duration::from_secs(60));
    assert!(o.status.success(), "{o}");
    let runs = runs_in(&o.stdout);
    let written = |run: &str| {
        std::fs::read_dir("/etc/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&format!("{run}-")))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let r = std::panic::catch_unwind(|| {
        let mut w = written(&runs[0]);
        w.sort();
        assert_eq!(w.len(), 2, "resolv.conf for both hosts: {w:?}");
        let g = vstopo(
            &["exec", fs, "client", "--", "getent", "hosts", "web"],
            Duration::from_secs(20),
        );
        assert!(g.status.success() && g.stdout.contains("10.125.0.2"), "{g}");
        let p = vstopo(
            &["exec", fs, "web", "--", "getent", "hosts", "10.125.0.3"],
            Duration::from_secs(20),
        );
        assert!(p.status.success() && p.stdout.contains("client"), "{p}");
    });
    let d = vstopo(&["down", fs], Duration::from_secs(30));
    assert!(d.status.success(), "{d}");
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
    assert!(
        written(&runs[0]).is_empty(),
        "/etc/netns entries left behind"
    );
    assert_clean(&runs, &[f], &before);
}
