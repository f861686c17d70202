//! Checks: each entry of `checks:` resolved to what it does, its defaults filled in and
//! the label the report shows. The kinds are grouped by what they test: `reach` (who
//! gets through to whom), `servers` (traffic to a server the check starts) and `inspect`
//! (looking inside a node); the argument rules they share live here.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::model::{CheckSpec, TcpState, S};

use super::errors::Cx;
use super::{Cidr, HostEnd, Nodes, Plan};

mod inspect;
mod reach;
mod servers;

/// A check's label and kind, or none when it has an error (the error is in `Cx`).
type Resolved = Option<(String, CheckKind)>;

/// One check, in file order.
#[derive(Debug, Clone)]
pub struct Check {
    /// Line in the file.
    pub line: u64,
    /// What the report calls it.
    pub label: String,
    pub kind: CheckKind,
}

/// One pair of a `pingall`.
#[derive(Debug, Clone)]
pub struct Pair {
    pub from: String,
    pub to: String,
    pub ip: Ipv4Addr,
    pub reachable: bool,
}

/// Where a MAC for an `fdb` check comes from.
#[derive(Debug, Clone)]
pub enum MacRef {
    /// Read from the interface when the check runs.
    Iface(HostEnd),
    Literal(String),
}

/// What a check does.
#[derive(Debug, Clone)]
pub enum CheckKind {
    Ping {
        from: String,
        to: Ipv4Addr,
        count: u32,
        reachable: bool,
    },
    Pingall {
        pairs: Vec<Pair>,
        count: u32,
    },
    Tcp {
        from: String,
        to: Ipv4Addr,
        port: u16,
        /// The node and port of the listener, when the check starts one.
        listener: Option<(String, u16)>,
        expect: TcpState,
        timeout: Duration,
    },
    Iperf {
        from: String,
        to: Ipv4Addr,
        server: String,
        port: u16,
        udp: bool,
        seconds: u32,
        rate: String,
        min_gbps: f64,
        max_loss: Option<f64>,
    },
    Http {
        from: String,
        to: Ipv4Addr,
        port: u16,
        path: String,
        status: u16,
        server: String,
        server_port: u16,
        /// The client address the server must see.
        client: Option<Ipv4Addr>,
    },
    Fdb {
        switch: String,
        bridge: String,
        mac: MacRef,
        port: Option<String>,
        vlan: Option<u16>,
        learned: bool,
    },
    Exec {
        node: String,
        cmd: String,
        exit: i32,
        output: Option<String>,
        timeout: Duration,
    },
    Broadcast {
        from: String,
        /// The sender's subnet; datagrams go to its broadcast address.
        subnet: Cidr,
        port: u16,
        count: u32,
        /// The hosts that must each receive `count` datagrams.
        to: Vec<String>,
    },
    Ipam {
        overlay: String,
        subnet: Cidr,
        /// Every host attached to it.
        hosts: Vec<String>,
    },
}

impl CheckKind {
    /// The same check with every address passed through `f` (the runner swaps each
    /// attached host's placeholder for the address the cluster gave it).
    pub fn map_addrs(&self, f: impl Fn(Ipv4Addr) -> Ipv4Addr) -> CheckKind {
        let mut k = self.clone();
        match &mut k {
            CheckKind::Ping { to, .. }
            | CheckKind::Tcp { to, .. }
            | CheckKind::Iperf { to, .. } => *to = f(*to),
            CheckKind::Http { to, client, .. } => {
                *to = f(*to);
                *client = client.map(&f);
            }
            CheckKind::Pingall { pairs, .. } => {
                for p in pairs {
                    p.ip = f(p.ip);
                }
            }
            CheckKind::Fdb { .. }
            | CheckKind::Exec { .. }
            | CheckKind::Broadcast { .. }
            | CheckKind::Ipam { .. } => {}
        }
        k
    }
}

/// The check at `c`, the `idx`th of the file.
pub(super) fn resolve_check(
    cx: &mut Cx<'_>,
    c: &S<CheckSpec>,
    idx: usize,
    nodes: &Nodes,
    plan: &Plan,
) -> Option<Check> {
    let line = c.referenced.line();
    let errs_before = cx.errs.len();
    let (label, kind) = match &c.value {
        CheckSpec::Ping(p) => reach::ping(cx, p, nodes, plan)?,
        CheckSpec::Pingall(p) => reach::pingall(cx, p, &c.referenced, plan)?,
        CheckSpec::Tcp(t) => reach::tcp(cx, t, nodes, plan)?,
        CheckSpec::Iperf(i) => servers::iperf(cx, i, idx, nodes, plan)?,
        CheckSpec::Http(h) => servers::http(cx, h, nodes, plan)?,
        CheckSpec::Fdb(f) => inspect::fdb(cx, f, plan)?,
        CheckSpec::Broadcast(b) => reach::broadcast(cx, b, plan)?,
        CheckSpec::Exec(e) => inspect::exec(cx, e, nodes)?,
        CheckSpec::Ipam(i) => inspect::ipam(cx, i, plan)?,
    };
    (cx.errs.len() == errs_before).then_some(Check { line, label, kind })
}

fn need_node(cx: &mut Cx<'_>, s: &S<String>, nodes: &Nodes) -> Option<String> {
    if nodes.kind(&s.value).is_some() {
        Some(s.value.clone())
    } else {
        cx.fail(&s.referenced, format!("unknown node `{}`", s.value))
    }
}

fn count(cx: &mut Cx<'_>, c: &Option<S<u32>>, default: u32) -> u32 {
    match c {
        Some(c) if !(1..=100).contains(&c.value) => {
            cx.err(
                &c.referenced,
                format!("count {} is outside 1..=100", c.value),
            );
            default
        }
        Some(c) => c.value,
        None => default,
    }
}

fn tcp_port(cx: &mut Cx<'_>, p: &S<u32>) -> u16 {
    match u16::try_from(p.value).ok().filter(|p| *p > 0) {
        Some(p) => p,
        None => {
            cx.err(
                &p.referenced,
                format!("port {} is outside 1..=65535", p.value),
            );
            1
        }
    }
}

fn seconds(cx: &mut Cx<'_>, t: &Option<S<f64>>, default: f64, max: f64) -> Duration {
    match t {
        Some(t) if !(t.value >= 0.1 && t.value <= max) => {
            cx.err(
                &t.referenced,
                format!("timeout {} s is outside 0.1..={max}", t.value),
            );
            Duration::from_secs_f64(default)
        }
        Some(t) => Duration::from_secs_f64(t.value),
        None => Duration::from_secs_f64(default),
    }
}

/// The node that runs a server for `to`: `server:` if given, else the owner of `to`.
fn server_node(
    cx: &mut Cx<'_>,
    server: &Option<S<String>>,
    owner: Option<String>,
    to: &S<String>,
    nodes: &Nodes,
) -> Option<String> {
    match server {
        Some(s) => need_node(cx, s, nodes),
        None => {
            if owner.is_none() {
                cx.err(
                    &to.referenced,
                    format!(
                        "no host owns {}; say which node runs the server with `server: NODE`",
                        to.value
                    ),
                );
            }
            owner
        }
    }
}
