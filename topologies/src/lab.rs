//! Building a [`Plan`] for real and taking it down again. A plan becomes a list of
//! [`Step`]s (the same list `vstopo show --steps` prints), run in order with `ip`,
//! `vswitchd` and `vsctl`; every namespace is recorded in the run's [`State`] before it is
//! created, so [`teardown`] can remove everything after any failure, a signal or a crash.
//!
//! Only namespace names carry the run's prefix: every interface is created directly
//! inside a namespace of the run (`ip -n NS link add … peer … netns NS2`), never in the
//! root namespace, so interface names need no prefix and stay as the file wrote them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ctl::{Data, PortKind};
use testlab::netns;
use testlab::vswitchd::{self, NotReady, Spec, READY};

use crate::plan::{ns_name, Cidr, Link, Plan, Switch, Vlans, OVERLAY_MTU};
use crate::proc::{self, Bg, Deadline, Opts, Out, Output, RunError};
use crate::state::{self, Mode, State, SwitchRec};

mod wireguard;

/// Timeout of a short command (`ip`, `vsctl`, `sysctl`).
pub const SHORT: Duration = Duration::from_secs(10);

/// The programs a run drives.
#[derive(Debug, Clone)]
pub struct Bins {
    pub vswitchd: PathBuf,
    pub vsctl: PathBuf,
    /// This program (helpers such as the TCP listener run as `vstopo probe …`).
    pub vstopo: PathBuf,
}

impl Bins {
    /// `vswitchd` and `vsctl` next to this executable first (a cargo build puts them
    /// together), then on `PATH`.
    pub fn find() -> Result<Bins> {
        let me = std::env::current_exe().context("cannot find my own executable")?;
        let dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
        let find = |name: &str| -> Result<PathBuf> {
            vswitchd::find_program(name, &dir).ok_or_else(|| {
                anyhow!(
                    "{name} not found next to {} nor on PATH; build the workspace: cargo build --workspace --release",
                    me.display()
                )
            })
        };
        Ok(Bins {
            vswitchd: find("vswitchd")?,
            vsctl: find("vsctl")?,
            vstopo: me.clone(),
        })
    }

    /// `PATH` with the directories of vsctl and vswitchd first (for commands in nodes).
    pub fn path_env(&self) -> String {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for b in [&self.vsctl, &self.vswitchd, &self.vstopo] {
            if let Some(d) = b.parent() {
                if !dirs.iter().any(|x| x == d) {
                    dirs.push(d.to_path_buf());
                }
            }
        }
        if let Some(p) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&p));
        }
        std::env::join_paths(dirs)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// One thing the build does.
#[derive(Debug, Clone)]
pub enum Step {
    /// A namespace for a node, with `lo` up and quiet: IPv6 and IPv4 forwarding off
    /// ([`testlab::netns`]).
    Netns { node: String },
    /// `net.ipv4.ip_forward=1` in a host.
    Forward { node: String },
    /// A veth pair from `a` in `a_node`'s namespace to `b` in `b_node`'s.
    Veth {
        a_node: String,
        a: String,
        b_node: String,
        b: String,
    },
    /// `ip -n NS link set dev DEV ARGS…`.
    LinkSet {
        node: String,
        dev: String,
        args: Vec<String>,
    },
    /// Start the switch's `vswitchd` in its namespace and wait until it answers.
    StartSwitch { switch: String },
    /// `vsctl --sock SWITCH.sock ARGS…`.
    Vsctl { switch: String, args: Vec<String> },
    /// Wait for the TAP `port` to appear in the switch's namespace, move it into `host`
    /// and name it `iface` there.
    AdoptTap {
        switch: String,
        port: String,
        host: String,
        iface: String,
    },
    /// `ip -n NS addr add CIDR dev DEV`.
    Addr {
        node: String,
        dev: String,
        cidr: Cidr,
    },
    /// `ip -n NS route add default via GW`.
    Route {
        node: String,
        via: std::net::Ipv4Addr,
    },
    /// Wait until every listed port of the switch is up.
    WaitPorts { switch: String, ports: Vec<String> },
    /// Wait until the switch reports its uplink `iface` up.
    WaitUplink { switch: String, iface: String },
    /// Start the run's etcd members in their host and wait until the cluster answers.
    StartEtcd,
    /// Wait until the cluster switch carries every overlay towards every other cluster
    /// switch.
    WaitOverlays { switch: String },
    /// `vsctl attach OVERLAY NS` on the switch: the host gets `eth0` and an address of
    /// the cluster's choosing, which the run records for the checks.
    Attach { host: String },
    /// Write `/etc/netns/NS/resolv.conf` naming the network's gateway as the host's
    /// resolver (`ip netns exec` bind-mounts it over `/etc/resolv.conf`).
    ResolvConf {
        node: String,
        server: std::net::Ipv4Addr,
    },
    /// Start `wireguard-go` in a host and configure its interface with `wg` (and a
    /// kernel vxlan device on it).
    Wireguard { host: String },
}

impl Step {
    /// The step as a command line, namespaces named for run `run`.
    pub fn describe(&self, plan: &Plan, run: &str) -> String {
        let ns = |node: &str| ns_name(run, plan.ns_node(node).unwrap_or(node));
        let dir = state::state_root().join(run).display().to_string();
        match self {
            Step::Netns { node } => format!(
                "ip netns add {n}; ip -n {n} link set lo up; sysctl {}",
                netns::quiet_sysctls(false).join(" "),
                n = ns(node)
            ),
            Step::Forward { node } => {
                format!("ip netns exec {} sysctl net.ipv4.ip_forward=1", ns(node))
            }
            Step::Veth {
                a_node,
                a,
                b_node,
                b,
            } => {
                let (na, nb) = (ns(a_node), ns(b_node));
                if na == nb {
                    format!("ip -n {na} link add {a} type veth peer name {b}")
                } else {
                    format!("ip -n {na} link add {a} type veth peer name {b} netns {nb}")
                }
            }
            Step::LinkSet { node, dev, args } => {
                format!("ip -n {} link set dev {dev} {}", ns(node), args.join(" "))
            }
            Step::StartSwitch { switch } => {
                format!(
                    "ip netns exec {} vswitchd --sock {dir}/{switch}.sock --db {dir}/{switch}.json {}",
                    ns(switch),
                    plan.switch(switch)
                        .map(|s| switchd_args(plan, s).join(" "))
                        .unwrap_or_default()
                )
            }
            Step::Vsctl { switch, args } => {
                format!("vsctl --sock {dir}/{switch}.sock {}", args.join(" "))
            }
            Step::AdoptTap {
                switch,
                port,
                host,
                iface,
            } => {
                let (ns_sw, ns_h) = (ns(switch), ns(host));
                let mut s = String::new();
                if ns_sw != ns_h {
                    s = format!("ip -n {ns_sw} link set dev {port} netns {ns_h}");
                }
                if port != iface {
                    if !s.is_empty() {
                        s.push_str("; ");
                    }
                    s.push_str(&format!("ip -n {ns_h} link set dev {port} name {iface}"));
                }
                if s.is_empty() {
                    s = format!("(TAP {port} stays in {ns_h})");
                }
                s
            }
            Step::Addr { node, dev, cidr } => {
                format!("ip -n {} addr add {cidr} dev {dev}", ns(node))
            }
            Step::Route { node, via } => {
                format!("ip -n {} route add default via {via}", ns(node))
            }
            Step::WaitPorts { switch, ports } => {
                format!("wait until ports {} of {switch} are up", ports.join(", "))
            }
            Step::WaitUplink { switch, iface } => {
                format!("wait until uplink {iface} of {switch} is up")
            }
            Step::StartEtcd => match &plan.etcd {
                Some(e) => format!(
                    "start etcd ({} member(s)) in {} on {}",
                    e.members,
                    ns(&e.host),
                    e.endpoints()
                ),
                None => "start etcd".into(),
            },
            Step::WaitOverlays { switch } => {
                format!("wait until {switch} carries every overlay towards the other nodes")
            }
            Step::Attach { host } => match plan.host(host).and_then(|h| h.attach.as_ref()) {
                Some(a) => format!(
                    "vsctl --sock {dir}/{}.sock attach {} {} --mtu {OVERLAY_MTU}",
                    a.switch,
                    a.overlay,
                    ns(host)
                ),
                None => format!("attach {host}"),
            },
            Step::ResolvConf { node, server } => {
                format!(
                    "echo nameserver {server} > {}",
                    resolv_conf_dir(&ns(node)).join("resolv.conf").display()
                )
            }
            Step::Wireguard { host } => {
                let Some(w) = plan.host(host).and_then(|h| h.wireguard.as_ref()) else {
                    return format!("wireguard-go in {host}");
                };
                let key = Path::new(&dir).join(format!("{host}.wg.key"));
                let mut lines = vec![format!(
                    "ip netns exec {} wireguard-go -f {} &",
                    ns(host),
                    w.name
                )];
                for c in wireguard::commands(w, &key) {
                    lines.push(format!("ip netns exec {} {}", ns(host), c.join(" ")));
                }
                lines.join("\n")
            }
        }
    }
}

/// `vswitchd`'s options for switch `s` (besides its socket and config).
fn switchd_args(plan: &Plan, s: &Switch) -> Vec<String> {
    let mut args = vec!["--log-level".to_string(), s.log_level.clone()];
    if let Some(w) = s.workers {
        args.push("--workers".into());
        args.push(w.to_string());
    }
    if let (Some(j), Some(e)) = (&s.cluster, &plan.etcd) {
        args.extend([
            "--cluster-store".into(),
            e.store_url(),
            "--cluster-advertise".into(),
            j.advertise.to_string(),
            "--node".into(),
            s.name.clone(),
        ]);
        if let Some(t) = j.ttl {
            args.extend(["--cluster-ttl".into(), t.to_string()]);
        }
    }
    args
}

fn set(node: &str, dev: &str, args: &[&str]) -> Step {
    Step::LinkSet {
        node: node.to_string(),
        dev: dev.to_string(),
        args: args.iter().map(|s| (*s).to_string()).collect(),
    }
}

/// The build of `plan`, in order.
pub fn steps(plan: &Plan) -> Vec<Step> {
    let mut v = Vec::new();
    let nsn = |node: &str| plan.ns_node(node).unwrap_or(node).to_string();
    for n in plan.namespaces() {
        v.push(Step::Netns {
            node: n.to_string(),
        });
    }
    for h in &plan.hosts {
        if h.forward {
            v.push(Step::Forward {
                node: h.name.clone(),
            });
        }
    }
    let iface_mtu = |host: &str, iface: &str| {
        plan.host(host)
            .and_then(|h| h.ifaces.iter().find(|i| i.name == iface))
            .and_then(|i| i.mtu)
    };
    // Veths first, so the daemons find their afpacket interfaces when ports are added.
    for l in &plan.links {
        match l {
            Link::HostSwitch { host, port, mtu } => {
                if port.kind == PortKind::Tap {
                    continue;
                }
                let sw = nsn(&port.switch);
                v.push(Step::Veth {
                    a_node: sw.clone(),
                    a: port.name.clone(),
                    b_node: host.host.clone(),
                    b: host.iface.clone(),
                });
                // The switch end carries whatever the host sends: same MTU.
                if let Some(m) = iface_mtu(&host.host, &host.iface).or(*mtu) {
                    v.push(set(&sw, &port.name, &["mtu", &m.to_string()]));
                }
                v.push(set(&sw, &port.name, &["up"]));
            }
            Link::Uplink {
                host,
                switch,
                port,
                mtu,
            } => {
                // Like an afpacket port's veth; the switch end gets no address (the switch
                // answers for the uplink address itself).
                let sw = nsn(switch);
                v.push(Step::Veth {
                    a_node: sw.clone(),
                    a: port.clone(),
                    b_node: host.host.clone(),
                    b: host.iface.clone(),
                });
                if let Some(m) = iface_mtu(&host.host, &host.iface).or(*mtu) {
                    v.push(set(&sw, port, &["mtu", &m.to_string()]));
                }
                v.push(set(&sw, port, &["up"]));
            }
            Link::HostHost { a, b, .. } => v.push(Step::Veth {
                a_node: a.host.clone(),
                a: a.iface.clone(),
                b_node: b.host.clone(),
                b: b.iface.clone(),
            }),
            Link::SwitchSwitch { a, b, mtu } => {
                let (na, nb) = (nsn(&a.switch), nsn(&b.switch));
                v.push(Step::Veth {
                    a_node: na.clone(),
                    a: a.name.clone(),
                    b_node: nb.clone(),
                    b: b.name.clone(),
                });
                for (n, p) in [(&na, &a.name), (&nb, &b.name)] {
                    if let Some(m) = mtu {
                        v.push(set(n, p, &["mtu", &m.to_string()]));
                    }
                    v.push(set(n, p, &["up"]));
                }
            }
        }
    }
    // Cluster switches start once the underlay and etcd are up (see below).
    for s in plan.switches.iter().filter(|s| s.cluster.is_none()) {
        switch_steps(plan, s, &mut v);
    }
    for_hosts_and_tunnels(plan, &mut v);
    let mut waited: Vec<&str> = Vec::new();
    if plan.etcd.is_some() {
        // The underlay must forward before a node joins: its first join must reach etcd.
        for s in plan.switches.iter().filter(|s| s.cluster.is_none()) {
            wait_steps(plan, s, &mut v);
            waited.push(&s.name);
        }
        v.push(Step::StartEtcd);
        let nodes: Vec<&Switch> = plan
            .switches
            .iter()
            .filter(|s| s.cluster.is_some())
            .collect();
        for s in &nodes {
            switch_steps(plan, s, &mut v);
            tunnel_steps(s, &mut v);
        }
        // An overlay is made once, from any node; every node then carries it.
        if let Some(first) = nodes.first() {
            for o in &plan.overlays {
                v.push(Step::Vsctl {
                    switch: first.name.clone(),
                    args: o.add_args(),
                });
            }
            if !plan.overlays.is_empty() {
                for s in &nodes {
                    v.push(Step::WaitOverlays {
                        switch: s.name.clone(),
                    });
                }
            }
        }
        for h in plan.hosts.iter().filter(|h| h.attach.is_some()) {
            v.push(Step::Attach {
                host: h.name.clone(),
            });
        }
    }
    for s in plan
        .switches
        .iter()
        .filter(|s| !waited.contains(&s.name.as_str()))
    {
        wait_steps(plan, s, &mut v);
    }
    v
}

/// A switch's daemon, bridges, ports, uplink and published ports.
fn switch_steps(plan: &Plan, s: &Switch, v: &mut Vec<Step>) {
    {
        v.push(Step::StartSwitch {
            switch: s.name.clone(),
        });
        for b in &s.bridges {
            let vs = |args: &[&str]| Step::Vsctl {
                switch: s.name.clone(),
                args: args.iter().map(|a| (*a).to_string()).collect(),
            };
            v.push(vs(&["add-br", &b.name]));
            if let Some(args) = b.add_net_args() {
                v.push(Step::Vsctl {
                    switch: s.name.clone(),
                    args,
                });
            }
            if let Some(args) = b.dns_args(plan, &s.name) {
                v.push(Step::Vsctl {
                    switch: s.name.clone(),
                    args,
                });
            }
            if let Some(a) = b.aging {
                v.push(vs(&["set-aging", &b.name, &a.to_string()]));
            }
            if let Some(m) = b.mac_limit {
                v.push(vs(&["set-mac-limit", &b.name, &m.to_string()]));
            }
            for p in plan.ports_of(&s.name).filter(|p| p.bridge == b.name) {
                if p.kind == PortKind::Tap {
                    v.push(vs(&["add-port", &b.name, &p.name, "--type", "tap"]));
                } else {
                    v.push(vs(&["add-port", &b.name, &p.name]));
                }
                match &p.vlans {
                    Vlans::Unaware => {}
                    Vlans::Access(n) => v.push(vs(&[
                        "add-vlan",
                        &b.name,
                        &p.name,
                        &n.to_string(),
                        "--access",
                    ])),
                    Vlans::Trunk(ids) => {
                        let list: Vec<String> = ids.iter().map(u16::to_string).collect();
                        v.push(vs(&["add-vlan", &b.name, &p.name, &list.join(",")]));
                    }
                }
            }
        }
        // The uplink once every network exists (it must not overlap one), then the
        // published ports (their targets must be inside a network).
        if let Some(u) = &s.uplink {
            v.push(Step::Vsctl {
                switch: s.name.clone(),
                args: u.set_args(),
            });
        }
        for p in &s.published {
            v.push(Step::Vsctl {
                switch: s.name.clone(),
                args: p.publish_args(),
            });
        }
    }
}

/// Host interfaces and tunnels.
fn for_hosts_and_tunnels(plan: &Plan, v: &mut Vec<Step>) {
    // Host interfaces: TAPs move in first, then every interface gets its MAC, MTU and
    // address, and comes up.
    for l in &plan.links {
        if let Link::HostSwitch { host, port, .. } = l {
            if port.kind == PortKind::Tap {
                v.push(Step::AdoptTap {
                    switch: port.switch.clone(),
                    port: port.name.clone(),
                    host: host.host.clone(),
                    iface: host.iface.clone(),
                });
            }
        }
    }
    for h in &plan.hosts {
        for i in &h.ifaces {
            let link_mtu = plan.links.iter().find_map(|l| match l {
                Link::HostSwitch { host, mtu, .. }
                    if host.host == h.name && host.iface == i.name =>
                {
                    Some(*mtu)
                }
                Link::HostHost { a, b, mtu }
                    if (a.host == h.name && a.iface == i.name)
                        || (b.host == h.name && b.iface == i.name) =>
                {
                    Some(*mtu)
                }
                _ => None,
            });
            if let Some(m) = &i.mac {
                v.push(set(&h.name, &i.name, &["address", m]));
            }
            if let Some(m) = i.mtu.or(link_mtu.flatten()) {
                v.push(set(&h.name, &i.name, &["mtu", &m.to_string()]));
            }
            if let Some(c) = i.addr {
                v.push(Step::Addr {
                    node: h.name.clone(),
                    dev: i.name.clone(),
                    cidr: c,
                });
            }
            v.push(set(&h.name, &i.name, &["up"]));
        }
        if let Some(gw) = h.gateway {
            v.push(Step::Route {
                node: h.name.clone(),
                via: gw,
            });
        }
        if let Some(server) = plan.dns_server(&h.name) {
            v.push(Step::ResolvConf {
                node: h.name.clone(),
                server,
            });
        }
    }
    // WireGuard hosts once their underlay addresses are up.
    for h in &plan.hosts {
        if h.wireguard.is_some() {
            v.push(Step::Wireguard {
                host: h.name.clone(),
            });
        }
    }
    // Tunnels last: a `local` address must exist before the VTEP binds it.
    for s in plan.switches.iter().filter(|s| s.cluster.is_none()) {
        tunnel_steps(s, v);
    }
}

fn tunnel_steps(s: &Switch, v: &mut Vec<Step>) {
    {
        for t in &s.tunnels {
            v.push(Step::Vsctl {
                switch: s.name.clone(),
                args: t.add_args(),
            });
        }
    }
}

/// Waits until a switch's ports (and uplink) are up.
fn wait_steps(plan: &Plan, s: &Switch, v: &mut Vec<Step>) {
    {
        let ports: Vec<String> = plan
            .ports_of(&s.name)
            .map(|p| p.name.clone())
            .chain(s.tunnels.iter().map(|t| t.name.clone()))
            .collect();
        if !ports.is_empty() {
            v.push(Step::WaitPorts {
                switch: s.name.clone(),
                ports,
            });
        }
        if let Some(u) = &s.uplink {
            v.push(Step::WaitUplink {
                switch: s.name.clone(),
                iface: u.port.clone(),
            });
        }
    }
}

/// A running (or being built) topology.
pub struct Lab<'p> {
    pub plan: &'p Plan,
    pub state: State,
    pub bins: Bins,
    pub verbose: bool,
    daemons: Vec<Bg>,
    /// Background helpers of checks (servers), stopped by [`Lab::stop_helpers`].
    helpers: Vec<Bg>,
    seq: u32,
    /// Attached host → the address the cluster gave it.
    attached: BTreeMap<String, Ipv4Addr>,
}

impl<'p> Lab<'p> {
    /// Allocates a run for `plan` (prefix, directory, first state record). Nothing else
    /// is created yet.
    pub fn new(
        plan: &'p Plan,
        file: &Path,
        mode: Mode,
        bins: Bins,
        verbose: bool,
    ) -> Result<Lab<'p>> {
        let (run, dir) = state::new_run().with_context(|| {
            format!(
                "cannot create a run directory under {}",
                state::state_root().display()
            )
        })?;
        let (owner_pid, owner_start) = state::me();
        let mut st = State {
            run: run.clone(),
            file: file.display().to_string(),
            topology: plan.name.clone(),
            mode,
            owner_pid,
            owner_start,
            complete: false,
            namespaces: Vec::new(),
            nodes: Default::default(),
            switches: Default::default(),
        };
        for h in &plan.hosts {
            st.nodes.insert(h.name.clone(), ns_name(&run, &h.name));
        }
        for s in &plan.switches {
            let ns = ns_name(&run, plan.ns_node(&s.name).unwrap_or(&s.name));
            st.nodes.insert(s.name.clone(), ns.clone());
            st.switches.insert(
                s.name.clone(),
                SwitchRec {
                    ns,
                    sock: dir.join(format!("{}.sock", s.name)),
                    db: dir.join(format!("{}.json", s.name)),
                    log: dir.join(format!("{}.log", s.name)),
                    pid: None,
                },
            );
        }
        st.save()
            .with_context(|| format!("cannot write {}", dir.join("state.json").display()))?;
        Ok(Lab {
            plan,
            state: st,
            bins,
            verbose,
            daemons: Vec::new(),
            helpers: Vec::new(),
            seq: 0,
            attached: BTreeMap::new(),
        })
    }

    /// The run's prefix.
    pub fn run(&self) -> &str {
        &self.state.run
    }

    /// The namespace of `node` (host or switch).
    pub fn ns(&self, node: &str) -> String {
        self.state
            .nodes
            .get(node)
            .cloned()
            .unwrap_or_else(|| ns_name(&self.state.run, node))
    }

    /// Runs every step of the build.
    pub fn up(&mut self) -> Result<()> {
        for step in steps(self.plan) {
            if let Some(s) = proc::stop_signal() {
                return Err(RunError::Stopped(s).into());
            }
            if self.verbose {
                eprintln!("+ {}", step.describe(self.plan, &self.state.run));
            }
            self.step(&step).with_context(|| {
                format!(
                    "building {}: {}",
                    self.plan.name,
                    step.describe(self.plan, &self.state.run)
                )
            })?;
        }
        self.state.complete = true;
        self.state.save()?;
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match step {
            Step::Netns { node } => {
                let ns = self.ns(node);
                // Write-ahead: recorded before it exists, so a crash right after still
                // leaves a record of it.
                self.state.namespaces.push(ns.clone());
                self.state.save()?;
                if let Err(e) = netns::add(&ns) {
                    // Not made by us (it existed already, or nothing was made): not ours
                    // to remove either.
                    self.state.namespaces.retain(|n| n != &ns);
                    self.state.save()?;
                    return Err(e.into());
                }
                // Quiet: no IPv6 chatter, no routing of frames for other addresses, so only
                // the frames a check sends cross the switches and the figures stay clean.
                // No topology file uses IPv6.
                netns::init(&ns, false)?;
            }
            Step::Forward { node } => {
                let ns = self.ns(node);
                let sysctl = ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"];
                netns::try_exec(&ns, &sysctl, SHORT)?.must()?;
            }
            Step::Veth {
                a_node,
                a,
                b_node,
                b,
            } => netns::veth(&self.ns(a_node), a, &self.ns(b_node), b)?,
            Step::LinkSet { node, dev, args } => {
                let ns = self.ns(node);
                let mut v = vec!["-n", ns.as_str(), "link", "set", "dev", dev.as_str()];
                v.extend(args.iter().map(String::as_str));
                netns::ip(&v)?;
            }
            Step::StartSwitch { switch } => self.start_switch(switch)?,
            Step::Vsctl { switch, args } => {
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                self.vsctl_ok(switch, &a)?;
            }
            Step::AdoptTap {
                switch,
                port,
                host,
                iface,
            } => self.adopt_tap(switch, port, host, iface)?,
            Step::Addr { node, dev, cidr } => {
                netns::addr_add(&self.ns(node), dev, &cidr.to_string())?;
            }
            Step::Route { node, via } => {
                let (ns, via) = (self.ns(node), via.to_string());
                netns::ip(&["-n", &ns, "route", "add", "default", "via", &via])?;
            }
            Step::StartEtcd => self.start_etcd()?,
            Step::WaitOverlays { switch } => self.wait_overlays(switch)?,
            Step::Attach { host } => self.attach(host)?,
            Step::WaitPorts { switch, ports } => self.wait_ports(switch, ports)?,
            Step::WaitUplink { switch, iface } => self.wait_uplink(switch, iface)?,
            Step::ResolvConf { node, server } => {
                let d = resolv_conf_dir(&self.ns(node));
                std::fs::create_dir_all(&d)
                    .and_then(|()| {
                        std::fs::write(d.join("resolv.conf"), format!("nameserver {server}\n"))
                    })
                    .with_context(|| format!("cannot write {}", d.display()))?;
            }
            Step::Wireguard { host } => self.wireguard_up(host)?,
        }
        Ok(())
    }

    /// Waits for the TAP `port` to appear in `switch`'s namespace, moves it into `host`
    /// and names it `iface` there.
    fn adopt_tap(&self, switch: &str, port: &str, host: &str, iface: &str) -> Result<()> {
        let (ns_sw, ns_h) = (self.ns(switch), self.ns(host));
        let deadline = Deadline::after(Duration::from_secs(10), Duration::from_millis(50));
        while !netns::link_exists(&ns_sw, port)? {
            if deadline.passed() {
                bail!("TAP {port} did not appear in {ns_sw} within 10 s");
            }
            deadline.pause()?;
        }
        if ns_sw != ns_h {
            netns::ip(&["-n", &ns_sw, "link", "set", "dev", port, "netns", &ns_h])?;
        }
        if port != iface {
            netns::ip(&["-n", &ns_h, "link", "set", "dev", port, "down"])?;
            netns::ip(&["-n", &ns_h, "link", "set", "dev", port, "name", iface])?;
        }
        Ok(())
    }

    /// Starts the etcd members in their host and waits until every one is healthy.
    fn start_etcd(&mut self) -> Result<()> {
        let e = self
            .plan
            .etcd
            .as_ref()
            .ok_or_else(|| anyhow!("the file has no etcd"))?;
        let ns = self.ns(&e.host);
        let dir = self.state.dir().join("etcd");
        let members = testlab::etcd_members::cluster_argvs(
            &e.ip.to_string(),
            crate::plan::ETCD_BASE_PORT,
            e.members as u16,
            &dir,
        );
        let mut logs = Vec::new();
        for (name, argv) in members {
            let log = dir.join(format!("{name}.log"));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let opts = Opts {
                own_group: true,
                ..Opts::default()
            };
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let bg = Bg::start(
                &format!("etcd {name}"),
                &netns::exec_argv(&ns, &argv),
                Output::log(&log),
                &opts,
            )?;
            self.daemons.push(bg);
            logs.push(log);
        }
        let eps = e.endpoints();
        let deadline = Deadline::after(Duration::from_secs(30), Duration::from_millis(200));
        loop {
            let argv = [
                "etcdctl",
                "--endpoints",
                &eps,
                "--dial-timeout",
                "1s",
                "--command-timeout",
                "2s",
                "endpoint",
                "health",
            ];
            if netns::try_exec(&ns, &argv, SHORT)?.success() {
                return Ok(());
            }
            if deadline.passed() {
                let tails: Vec<String> = logs.iter().map(|l| proc::tail(l, 10)).collect();
                bail!("etcd {eps} not healthy within 30 s:\n{}", tails.join("\n"));
            }
            deadline.pause()?;
        }
    }

    /// `etcdctl ARGS…` against the run's etcd, inside its host.
    pub fn etcdctl(&self, args: &[&str]) -> Result<Out> {
        let e = self
            .plan
            .etcd
            .as_ref()
            .ok_or_else(|| anyhow!("the file has no etcd"))?;
        let eps = e.endpoints();
        let mut argv = vec!["etcdctl", "--endpoints", &eps, "--command-timeout", "3s"];
        argv.extend_from_slice(args);
        Ok(netns::try_exec(&self.ns(&e.host), &argv, SHORT)?.must()?)
    }

    /// Waits until cluster switch `switch` has a bridge for every overlay whose tunnel's
    /// remotes are exactly the other cluster switches' VTEPs.
    fn wait_overlays(&self, switch: &str) -> Result<()> {
        let others: std::collections::BTreeSet<String> = self
            .plan
            .switches
            .iter()
            .filter(|s| s.name != switch)
            .filter_map(|s| s.cluster.as_ref().map(|j| j.advertise.to_string()))
            .collect();
        let deadline = Deadline::after(Duration::from_secs(20), Duration::from_millis(100));
        loop {
            let Data::Show { bridges, .. } = self.vsctl_json(switch, &["show"])? else {
                bail!("vsctl show --json of {switch} returned no bridges");
            };
            let pending: Vec<&str> = self
                .plan
                .overlays
                .iter()
                .filter(|o| {
                    let remotes = bridges
                        .iter()
                        .find(|b| b.name == o.name)
                        .and_then(|b| b.ports.iter().find_map(|p| p.tunnel.as_ref()))
                        .map(|t| t.remotes.iter().map(|r| r.ip.clone()).collect());
                    remotes.as_ref() != Some(&others)
                })
                .map(|o| o.name.as_str())
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if deadline.passed() {
                bail!(
                    "{switch} does not carry overlay(s) {} towards {others:?} after 20 s",
                    pending.join(", ")
                );
            }
            deadline.pause()?;
        }
    }

    /// `vsctl attach` of an attached host; records the address the cluster gave it.
    fn attach(&mut self, host: &str) -> Result<()> {
        let a = self
            .plan
            .host(host)
            .and_then(|h| h.attach.clone())
            .ok_or_else(|| anyhow!("host {host} is attached to nothing"))?;
        let ns = self.ns(host);
        let mtu = OVERLAY_MTU.to_string();
        let o = self.vsctl_ok(&a.switch, &["attach", &a.overlay, &ns, "--mtu", &mtu])?;
        // "10.61.0.2/24 02:42:0a:3d:00:02"
        let ip = o
            .stdout
            .split_whitespace()
            .next()
            .and_then(|c| c.split('/').next())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| anyhow!("vsctl attach printed no address: {:?}", o.stdout))?;
        self.attached.insert(host.to_string(), ip);
        Ok(())
    }

    /// The address behind `ip`: an attached host's real address for its placeholder,
    /// any other address as it is.
    pub fn real_addr(&self, ip: Ipv4Addr) -> Ipv4Addr {
        if !Plan::is_placeholder(ip) {
            return ip;
        }
        self.plan
            .hosts
            .iter()
            .find(|h| self.plan.placeholder(&h.name) == Some(ip))
            .and_then(|h| self.attached.get(&h.name))
            .copied()
            .unwrap_or(ip)
    }

    fn switch_rec(&self, switch: &str) -> Result<&SwitchRec> {
        self.state
            .switches
            .get(switch)
            .ok_or_else(|| anyhow!("no switch {switch} in this run"))
    }

    fn start_switch(&mut self, switch: &str) -> Result<()> {
        let rec = self.switch_rec(switch)?.clone();
        let sw = self
            .plan
            .switch(switch)
            .ok_or_else(|| anyhow!("no switch {switch}"))?;
        let args = switchd_args(self.plan, sw);
        if let Some(k) = &sw.private_key {
            wireguard::write_key(&rec.db.with_extension("wg.key"), k)?;
        }
        let spec = Spec::new(&self.bins.vswitchd, &rec.ns, &rec.sock, &rec.db, &args);
        // In a process group of its own: a Ctrl-C at the terminal is ours to handle.
        let mut bg = spec.spawn(&format!("vswitchd {switch}"), Output::log(&rec.log), true)?;
        if let Some(r) = self.state.switches.get_mut(switch) {
            r.pid = Some(bg.pid());
        }
        self.state.save()?;
        let vsctl = &self.bins.vsctl;
        let r = vswitchd::wait_ready(&mut bg, READY, || vswitchd::answers(vsctl, &rec.sock));
        let tail = || bg.log_tail(20);
        let r = match r {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(_)) => Err(anyhow!(
                "vswitchd of {switch} exited during start-up:\n{}",
                tail()
            )),
            Err(NotReady::Timeout) => Err(anyhow!(
                "vswitchd of {switch} did not answer within 15 s:\n{}",
                tail()
            )),
            Err(NotReady::Stopped(s)) => Err(RunError::Stopped(s).into()),
        };
        // Kept also when it failed: the teardown stops it.
        self.daemons.push(bg);
        r
    }

    /// Runs `vsctl --sock SOCK ARGS…` for `switch` from the root namespace.
    pub fn vsctl(&self, switch: &str, args: &[&str]) -> Result<Out, RunError> {
        vswitchd::vsctl(&self.bins.vsctl, &self.sock(switch), args)
    }

    /// The control socket of `switch` (empty if there is no such switch: vsctl then says
    /// what is wrong).
    fn sock(&self, switch: &str) -> PathBuf {
        self.state
            .switches
            .get(switch)
            .map(|r| r.sock.clone())
            .unwrap_or_default()
    }

    /// `vsctl` that must succeed.
    pub fn vsctl_ok(&self, switch: &str, args: &[&str]) -> Result<Out> {
        Ok(self.vsctl(switch, args)?.must()?)
    }

    /// `vsctl --json ARGS…`, parsed.
    pub fn vsctl_json(&self, switch: &str, args: &[&str]) -> Result<Data> {
        vswitchd::vsctl_json(&self.bins.vsctl, &self.sock(switch), args)
    }

    fn wait_ports(&self, switch: &str, ports: &[String]) -> Result<()> {
        let deadline = Deadline::after(Duration::from_secs(10), Duration::from_millis(50));
        loop {
            let Data::Show { bridges, .. } = self.vsctl_json(switch, &["show"])? else {
                bail!("vsctl show --json of {switch} returned no bridges");
            };
            let pending: Vec<String> = ports
                .iter()
                .filter_map(|p| {
                    let info = bridges.iter().flat_map(|b| &b.ports).find(|q| &q.name == p);
                    match info {
                        Some(q) if q.state == "up" => None,
                        Some(q) => Some(format!(
                            "{p} {}{}",
                            q.state,
                            q.reason
                                .as_ref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        )),
                        None => Some(format!("{p} missing")),
                    }
                })
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if deadline.passed() {
                bail!(
                    "ports of {switch} not up within 10 s: {}",
                    pending.join(", ")
                );
            }
            deadline.pause()?;
        }
    }

    fn wait_uplink(&self, switch: &str, iface: &str) -> Result<()> {
        let deadline = Deadline::after(Duration::from_secs(10), Duration::from_millis(50));
        loop {
            let Data::Show { uplink, .. } = self.vsctl_json(switch, &["show"])? else {
                bail!("vsctl show --json of {switch} returned something else");
            };
            let seen = match &uplink {
                Some(u) if u.iface == iface && u.state == "up" => return Ok(()),
                Some(u) => format!(
                    "uplink {} {}{}",
                    u.iface,
                    u.state,
                    u.reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
                None => "no uplink".to_string(),
            };
            if deadline.passed() {
                bail!("uplink {iface} of {switch} not up within 10 s: {seen}");
            }
            deadline.pause()?;
        }
    }

    /// Environment for a command in `node`: `VSWITCH_SOCK` of the switch in that node's
    /// namespace (so a bare `vsctl` talks to it), `PATH` with our binaries first.
    pub fn node_env(&self, node: &str) -> Vec<(String, String)> {
        node_env(&self.state, node, &self.bins)
    }

    /// Runs `argv` inside `node`'s namespace.
    pub fn exec(&self, node: &str, argv: &[&str], timeout: Duration) -> Result<Out, RunError> {
        let ns = self.ns(node);
        let opts = Opts {
            env: self.node_env(node),
            ..Opts::default()
        };
        proc::try_run_with(&netns::exec_argv(&ns, argv), timeout, &opts)
    }

    /// Starts a helper (a server for a check) inside `node`; stopped by
    /// [`Lab::stop_helpers`] or the teardown.
    pub fn spawn_helper(&mut self, node: &str, name: &str, argv: &[&str]) -> Result<usize> {
        self.seq += 1;
        let log = self
            .state
            .dir()
            .join(format!("helper-{}-{name}.log", self.seq));
        let ns = self.ns(node);
        let opts = Opts {
            env: self.node_env(node),
            own_group: true,
            ..Opts::default()
        };
        let bg = Bg::start(name, &netns::exec_argv(&ns, argv), Output::log(&log), &opts)?;
        self.helpers.push(bg);
        Ok(self.helpers.len() - 1)
    }

    /// The log of helper `i` (its stdout and stderr).
    pub fn helper_log(&self, i: usize) -> String {
        self.helpers.get(i).map(Bg::stdout).unwrap_or_default()
    }

    /// True while helper `i` runs.
    pub fn helper_alive(&mut self, i: usize) -> bool {
        self.helpers.get_mut(i).is_some_and(Bg::alive)
    }

    /// Stops every helper.
    pub fn stop_helpers(&mut self) {
        for mut h in self.helpers.drain(..) {
            let _ = h.stop(Duration::from_millis(500));
        }
    }

    /// Waits until something listens on TCP `port` in `node`.
    pub fn wait_listening(&mut self, node: &str, port: u16, helper: Option<usize>) -> Result<()> {
        let deadline = Deadline::after(Duration::from_secs(10), Duration::from_millis(50));
        loop {
            if testlab::traffic::listening(&self.ns(node), port)? {
                return Ok(());
            }
            if let Some(i) = helper {
                if !self.helper_alive(i) {
                    bail!("the server exited: {}", self.helper_log(i).trim());
                }
            }
            if deadline.passed() {
                let log = helper.map(|i| self.helper_log(i)).unwrap_or_default();
                bail!(
                    "nothing listens on port {port} in {node} after 10 s {}",
                    log.trim()
                );
            }
            deadline.pause()?;
        }
    }

    /// A snapshot of every switch for failure messages: `vsctl show`, `stats` and the
    /// log's tail.
    pub fn diag(&self) -> String {
        let mut s = String::new();
        for (name, rec) in &self.state.switches {
            for args in [["show"].as_slice(), ["stats"].as_slice()] {
                if let Ok(o) = self.vsctl(name, args) {
                    s.push_str(&format!(
                        "--- {name}: vsctl {} ---\n{}\n",
                        args.join(" "),
                        o.text()
                    ));
                }
            }
            s.push_str(&format!(
                "--- {name}: last lines of {} ---\n{}\n",
                rec.log.display(),
                proc::tail(&rec.log, 15)
            ));
        }
        s
    }

    /// Tears the whole run down: helpers, daemons (SIGTERM first, so they close their
    /// TAPs), anything else still in the run's namespaces, the namespaces, the run
    /// directory. Never stops half-way; returns what it could not remove.
    pub fn down(&mut self) -> Result<()> {
        self.stop_helpers();
        for mut d in self.daemons.drain(..) {
            let _ = d.stop(Duration::from_secs(3));
        }
        teardown(&self.state)
    }

    /// Leaves the run as it is (for `vstopo up`): the daemons keep running after this
    /// process exits.
    pub fn detach(mut self) {
        for b in self.daemons.drain(..).chain(self.helpers.drain(..)) {
            b.detach();
        }
    }
}

/// Environment for a command in `node` of run `st` (see [`Lab::node_env`]).
pub fn node_env(st: &State, node: &str, bins: &Bins) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_string(), bins.path_env()),
        ("VSTOPO_RUN".to_string(), st.run.clone()),
        ("VSTOPO_NODE".to_string(), node.to_string()),
    ];
    let ns = st.nodes.get(node);
    let sw = st
        .switches
        .get(node)
        .or_else(|| st.switches.values().find(|r| Some(&r.ns) == ns));
    if let Some(r) = sw {
        env.push((ctl::SOCK_ENV.to_string(), r.sock.display().to_string()));
    }
    env
}

/// Where `ip netns exec NS` finds the files it bind-mounts over `/etc`.
pub fn resolv_conf_dir(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns)
}

/// Removes everything run `st` recorded, whatever state it is in (works for a run whose
/// owner crashed). Processes in the run's namespaces get SIGTERM, then SIGKILL after 3 s;
/// then the namespaces and the run directory go.
pub fn teardown(st: &State) -> Result<()> {
    let mut problems = netns::remove_all(&st.namespaces, Duration::from_secs(3));
    // The run's namespace names are its own: so are their /etc/netns directories.
    for ns in &st.namespaces {
        let d = resolv_conf_dir(ns);
        if d.exists() {
            if let Err(e) = std::fs::remove_dir_all(&d) {
                problems.push(format!("cannot remove {}: {e}", d.display()));
            }
        }
    }
    if problems.is_empty() {
        let _ = std::fs::remove_dir_all(st.dir());
        Ok(())
    } else {
        bail!(
            "teardown of run {} left things behind (state kept in {}): {}",
            st.run,
            st.dir().display(),
            problems.join("; ")
        )
    }
}

impl fmt::Debug for Lab<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab").field("run", &self.state.run).finish()
    }
}
