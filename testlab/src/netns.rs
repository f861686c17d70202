//! Network namespaces and the links in them: creating a namespace *quiet* (see below),
//! running commands inside one, veth pairs between two, addresses and MACs, and removing
//! namespaces with every process still in them ([`remove_all`], or a [`Namespaces`] set
//! dropped). Interfaces are only ever made inside namespaces, so removing the namespaces
//! removes every veth a lab made.
//!
//! # Quiet hosts
//!
//! A fresh namespace is not silent: with IPv6 on, an interface that comes up sends MLD
//! reports, DAD neighbour solicitations and router solicitations; and IPv4 settings are
//! inherited from the root namespace, where `ip_forward=1` (set by a system dockerd, for
//! one) makes a host route a frame sent to its MAC for another address — it answers with
//! an ICMP redirect and ARPs for the address, both from its own MAC. Either teaches a
//! switch under test that host's MAC behind the test's back (a test of flooding to an
//! unknown MAC then fails at random). [`init`] therefore turns IPv6 off and IPv4
//! forwarding off in every namespace, before any interface is made in or moved into it
//! (an interface takes the namespace's `default` settings when it arrives), unless the
//! caller asks for IPv6. A router turns forwarding back on itself.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::proc::{try_run, try_run_always, Out, RunError};
use crate::stop::{kill, SIGKILL, SIGTERM};
use crate::SHORT;

/// The sysctls that keep a namespace quiet; without the IPv6 ones when `ipv6` is wanted.
pub fn quiet_sysctls(ipv6: bool) -> Vec<&'static str> {
    let mut v = vec!["net.ipv4.ip_forward=0"];
    if !ipv6 {
        v.extend([
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
    }
    v
}

/// `ip ARGS…`, which must succeed.
pub fn ip(args: &[&str]) -> Result<Out, RunError> {
    let mut v = vec!["ip"];
    v.extend_from_slice(args);
    try_run(&v, SHORT)?.must()
}

/// `ip netns add NS`. Nothing else: a failure here means nothing was made (the caller
/// must not remove a namespace that was there before).
pub fn add(ns: &str) -> Result<(), RunError> {
    ip(&["netns", "add", ns]).map(drop)
}

/// Makes a new namespace ready: `lo` up and quiet ([`quiet_sysctls`]).
pub fn init(ns: &str, ipv6: bool) -> Result<(), RunError> {
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    let mut v = vec!["ip", "netns", "exec", ns, "sysctl", "-q", "-w"];
    v.extend(quiet_sysctls(ipv6));
    try_run(&v, SHORT)?.must().map(drop)
}

/// `ip netns exec NS ARGV…` as an argument vector.
pub fn exec_argv<'a>(ns: &'a str, argv: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(argv);
    v
}

/// Runs `argv` inside `ns` within `timeout`.
pub fn try_exec(ns: &str, argv: &[&str], timeout: Duration) -> Result<Out, RunError> {
    try_run(&exec_argv(ns, argv), timeout)
}

/// A veth pair: `a` in namespace `ns_a`, its peer `b` in `ns_b` (which may be the same),
/// both down.
pub fn veth(ns_a: &str, a: &str, ns_b: &str, b: &str) -> Result<(), RunError> {
    let mut v = vec![
        "-n", ns_a, "link", "add", a, "type", "veth", "peer", "name", b,
    ];
    if ns_a != ns_b {
        v.extend(["netns", ns_b]);
    }
    ip(&v).map(drop)
}

/// [`veth`], both ends up.
pub fn veth_up(ns_a: &str, a: &str, ns_b: &str, b: &str) -> Result<(), RunError> {
    veth(ns_a, a, ns_b, b)?;
    link_up(ns_a, a)?;
    link_up(ns_b, b)
}

/// `ip -n NS link set dev DEV up`.
pub fn link_up(ns: &str, dev: &str) -> Result<(), RunError> {
    ip(&["-n", ns, "link", "set", "dev", dev, "up"]).map(drop)
}

/// `ip -n NS addr add CIDR dev DEV`.
pub fn addr_add(ns: &str, dev: &str, cidr: &str) -> Result<(), RunError> {
    ip(&["-n", ns, "addr", "add", cidr, "dev", dev]).map(drop)
}

/// A Linux bridge `name` in `ns` holding address `cidr`, up, with a MAC of its own. A
/// bridge without one takes the lowest MAC of its ports, so plugging in a later port
/// can change it under the hosts that already resolved the bridge's address: their
/// frames then go to the old MAC and are dropped ("other host") until their ARP
/// entries age, seconds with no answer (a cluster lab's etcd lost its nodes so).
pub fn addressed_bridge(ns: &str, name: &str, cidr: &str) -> Result<(), RunError> {
    ip(&[
        "-n",
        ns,
        "link",
        "add",
        name,
        "address",
        "02:00:00:00:00:fe",
        "type",
        "bridge",
    ])?;
    addr_add(ns, name, cidr)?;
    link_up(ns, name)
}

/// True when interface `dev` exists in `ns`.
pub fn link_exists(ns: &str, dev: &str) -> Result<bool, RunError> {
    Ok(try_run(&["ip", "-n", ns, "link", "show", "dev", dev], SHORT)?.success())
}

/// The MAC address of `dev` in `ns`, lower case.
pub fn mac(ns: &str, dev: &str) -> anyhow::Result<String> {
    let o = ip(&["-j", "-n", ns, "link", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_str(&o.stdout)
        .with_context(|| format!("`{}` printed no JSON: {}", o.cmd, o.stdout))?;
    v.get(0)
        .and_then(|l| l.get("address"))
        .and_then(|a| a.as_str())
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| {
            anyhow!(
                "no address in `ip -j link show {dev}` in {ns}: {}",
                o.stdout
            )
        })
}

/// The namespaces that exist right now.
pub fn existing() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes running in `ns` (empty if it cannot be read).
pub fn pids(ns: &str) -> Vec<u32> {
    try_run_always(&["ip", "netns", "pids", ns], SHORT)
        .map(|o| {
            o.stdout
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn gone(pid: u32) -> bool {
    // A zombie has exited already; only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Removes the namespaces of `names` that exist: every process in them gets SIGTERM and
/// `grace` to exit (none if `grace` is zero), then SIGKILL; then the namespaces go, in
/// reverse order. Never stops half-way; returns what it could not remove.
pub fn remove_all(names: &[String], grace: Duration) -> Vec<String> {
    let there = existing();
    let ours: Vec<&String> = names.iter().filter(|n| there.contains(n)).collect();
    // Everything running in a namespace of ours was started for it.
    let mut left: Vec<u32> = ours.iter().flat_map(|n| pids(n)).collect();
    left.sort_unstable();
    left.dedup();
    left.retain(|p| *p != std::process::id());
    if !grace.is_zero() {
        for p in &left {
            kill(*p, SIGTERM);
        }
        let deadline = std::time::Instant::now() + grace;
        while !left.is_empty() && std::time::Instant::now() < deadline {
            left.retain(|p| !gone(*p));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for p in &left {
        kill(*p, SIGKILL);
    }
    let mut problems = Vec::new();
    for ns in ours.iter().rev() {
        match try_run_always(&["ip", "netns", "del", ns.as_str()], SHORT) {
            Ok(o) if o.success() => {}
            Ok(o) => problems.push(format!("`{}`: {}", o.cmd, o.text())),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let still: Vec<String> = existing()
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    if !still.is_empty() {
        problems.push(format!("namespaces still there: {}", still.join(" ")));
    }
    problems
}

/// The namespaces of one lab: each made quiet on creation, all removed (processes killed
/// first) when the set is dropped, also when a test panics.
#[derive(Debug, Default)]
pub struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// An empty set.
    pub fn new() -> Namespaces {
        Namespaces::default()
    }

    /// Creates quiet namespace `ns` (no IPv6, no forwarding), `lo` up; panics on failure.
    pub fn add(&mut self, ns: &str) {
        self.add_with(ns, false);
    }

    /// Creates namespace `ns` like [`Namespaces::add`], with IPv6 on if `ipv6`.
    pub fn add_with(&mut self, ns: &str, ipv6: bool) {
        add(ns).unwrap_or_else(|e| panic!("{e}"));
        self.names.push(ns.to_string());
        init(ns, ipv6).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The namespaces, in order of creation.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Removes them all now (see [`remove_all`]); returns what could not be removed.
    pub fn remove(&mut self) -> Vec<String> {
        let names = std::mem::take(&mut self.names);
        remove_all(&names, Duration::ZERO)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// The `/run/netns` path of namespace `ns` (for `nsenter --net=`).
pub fn path(ns: &str) -> std::path::PathBuf {
    Path::new("/run/netns").join(ns)
}
