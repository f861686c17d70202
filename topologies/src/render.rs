//! Text a person reads: what `vstopo show` prints about a plan (nodes, links, checks and,
//! on request, every build step as a command line).

use std::fmt::Write as _;

use ctl::PortKind;

use crate::lab::steps;
use crate::plan::{Link, Plan, Port, Vlans};

/// A port's VLAN membership for `show`, with a leading comma (empty when unaware).
fn vlans(p: &Port) -> String {
    match &p.vlans {
        Vlans::Unaware => String::new(),
        Vlans::Access(n) => format!(", access VLAN {n}"),
        Vlans::Trunk(ids) => {
            let l: Vec<String> = ids.iter().map(u16::to_string).collect();
            format!(", trunk VLANs {}", l.join(","))
        }
    }
}

/// The placeholder for a run's prefix in `show` output.
pub const RUN_PLACEHOLDER: &str = "<run>";

/// Describes what building `plan` would make, without making it.
pub fn show(plan: &Plan, with_steps: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "topology {} ({}): {} switch(es), {} host(s), {} link(s), {} check(s)",
        plan.name,
        plan.source,
        plan.switches.len(),
        plan.hosts.len(),
        plan.links.len(),
        plan.checks.len()
    );
    if let Some(d) = &plan.description {
        for l in d.trim().lines() {
            let _ = writeln!(s, "  {l}");
        }
    }
    let _ = writeln!(
        s,
        "\nnamespaces (named {RUN_PLACEHOLDER}-NODE; every run picks a fresh prefix such as vt3k9a):"
    );
    let w = plan
        .hosts
        .iter()
        .map(|h| h.name.len())
        .chain(plan.switches.iter().map(|x| x.name.len()))
        .max()
        .unwrap_or(4);
    for h in &plan.hosts {
        let ifaces: Vec<String> = h
            .ifaces
            .iter()
            .map(|i| {
                let mut t = i.name.clone();
                if let Some(a) = i.addr {
                    let _ = write!(t, " {a}");
                }
                if let Some(m) = &i.mac {
                    let _ = write!(t, " mac {m}");
                }
                if let Some(m) = i.mtu {
                    let _ = write!(t, " mtu {m}");
                }
                t
            })
            .collect();
        let mut line = format!("  {:<w$}  host    {}", h.name, ifaces.join(", "));
        if let Some(g) = h.gateway {
            let _ = write!(line, "; default via {g}");
        }
        if h.forward {
            line.push_str("; forwards IPv4");
        }
        if let Some(w) = &h.wireguard {
            let _ = write!(line, "; wireguard-go {} {}", w.name, w.address);
            if let Some(x) = &w.vxlan {
                let _ = write!(line, " with vxlan {} VNI {} {}", x.name, x.vni, x.address);
            }
        }
        if let Some(a) = &h.attach {
            let _ = write!(
                line,
                "eth0 from overlay {} (vsctl attach on {}; address from the cluster)",
                a.overlay, a.switch
            );
        }
        let runs: Vec<&str> = plan
            .switches
            .iter()
            .filter(|x| x.host.as_deref() == Some(h.name.as_str()))
            .map(|x| x.name.as_str())
            .collect();
        if !runs.is_empty() {
            let _ = write!(line, "; runs switch {}", runs.join(", "));
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    for sw in &plan.switches {
        let bridges: Vec<String> = sw
            .bridges
            .iter()
            .map(|b| {
                let mut t = b.name.clone();
                let mut opts = Vec::new();
                if let Some(a) = b.aging {
                    opts.push(format!("aging {a} s"));
                }
                if let Some(m) = b.mac_limit {
                    opts.push(format!("mac-limit {m}"));
                }
                if let Some(n) = b.network {
                    opts.push(format!("network {} gateway {}", n.subnet, n.gateway));
                }
                if !opts.is_empty() {
                    let _ = write!(t, " ({})", opts.join(", "));
                }
                t
            })
            .collect();
        let place = match &sw.host {
            Some(h) => format!("in host {h}'s namespace"),
            None => "own namespace".into(),
        };
        let bridges = match (bridges.is_empty(), &sw.cluster) {
            (true, Some(_)) => "the cluster's overlays".to_string(),
            (_, Some(_)) => format!("{} and the cluster's overlays", bridges.join(", ")),
            _ => bridges.join(", "),
        };
        let _ = writeln!(
            s,
            "  {:<w$}  switch  vswitchd ({place}{}), bridges: {bridges}",
            sw.name,
            sw.workers
                .map(|n| format!(", {n} workers"))
                .unwrap_or_default(),
        );
    }
    let _ = writeln!(s, "\nlinks:");
    for l in &plan.links {
        let line = match l {
            Link::HostSwitch { host, port, mtu } => {
                // (Not a match: ctl's PortKind grows kinds a link never makes.)
                let what = if port.kind == PortKind::Tap {
                    format!(
                        "TAP {} made by {}, moved into {} as {}",
                        port.name, port.switch, host.host, host.iface
                    )
                } else {
                    format!("veth, port {} ({})", port.name, port.kind.as_str())
                };
                format!(
                    "{}:{} -- {}:{}  {what}{}{}",
                    host.host,
                    host.iface,
                    port.switch,
                    port.bridge,
                    vlans(port),
                    mtu.map(|m| format!(", mtu {m}")).unwrap_or_default()
                )
            }
            Link::Uplink {
                host,
                switch,
                port,
                mtu,
            } => format!(
                "{}:{} -- {switch} uplink  veth, interface {port} (vsctl set-uplink){}",
                host.host,
                host.iface,
                mtu.map(|m| format!(", mtu {m}")).unwrap_or_default()
            ),
            Link::HostHost { a, b, mtu } => format!(
                "{}:{} -- {}:{}  veth{}",
                a.host,
                a.iface,
                b.host,
                b.iface,
                mtu.map(|m| format!(", mtu {m}")).unwrap_or_default()
            ),
            Link::SwitchSwitch { a, b, mtu } => format!(
                "{}:{} -- {}:{}  veth between switches, ports {}{} / {}{}{}",
                a.switch,
                a.bridge,
                b.switch,
                b.bridge,
                a.name,
                vlans(a),
                b.name,
                vlans(b),
                mtu.map(|m| format!(", mtu {m}")).unwrap_or_default()
            ),
        };
        let _ = writeln!(s, "  {line}");
    }
    let gws: Vec<_> = plan
        .switches
        .iter()
        .filter(|sw| sw.uplink.is_some() || !sw.published.is_empty())
        .collect();
    if !gws.is_empty() {
        let _ = writeln!(s, "\nuplinks and published ports:");
        for sw in gws {
            if let Some(u) = &sw.uplink {
                let _ = writeln!(
                    s,
                    "  {} uplink {} {}{} (far end {}:{})",
                    sw.name,
                    u.port,
                    u.addr,
                    u.gw.map(|g| format!(" via {g}")).unwrap_or_default(),
                    u.peer.host,
                    u.peer.iface
                );
            }
            for p in &sw.published {
                let ip = sw.uplink.as_ref().map(|u| u.addr.ip.to_string());
                let _ = writeln!(
                    s,
                    "  {} published {}/{} -> {}:{}{}{}",
                    sw.name,
                    p.proto.as_str(),
                    p.host_port,
                    p.target,
                    p.port,
                    if p.named == p.target.to_string() {
                        String::new()
                    } else {
                        format!(" ({})", p.named)
                    },
                    ip.map(|i| format!(", reached at {i}:{}", p.host_port))
                        .unwrap_or_default()
                );
            }
        }
    }
    let tunnels: Vec<_> = plan
        .switches
        .iter()
        .flat_map(|sw| sw.tunnels.iter().map(move |t| (sw, t)))
        .collect();
    if !tunnels.is_empty() {
        let _ = writeln!(s, "\ntunnels (VXLAN over the switch's host's underlay):");
        for (sw, t) in tunnels {
            let remotes: Vec<String> = t
                .remotes
                .iter()
                .map(|r| {
                    if r.named == r.ip.to_string() {
                        r.named.clone()
                    } else {
                        format!("{} ({})", r.ip, r.named)
                    }
                })
                .collect();
            let mut line = format!(
                "{}:{}  port {}, VNI {}, remotes {}, UDP port {}",
                sw.name,
                t.bridge,
                t.name,
                t.vni,
                remotes.join(", "),
                t.dstport
            );
            if let Some(l) = t.local {
                let _ = write!(line, ", local {l}");
            }
            if let Some(v) = t.vlan {
                let _ = write!(line, ", access VLAN {v}");
            }
            if let Some(c) = &t.crypto {
                let _ = write!(line, ", encrypted (WireGuard port {})", c.listen_port);
            }
            let _ = writeln!(s, "  {line}");
        }
    }
    if let Some(e) = &plan.etcd {
        let _ = writeln!(s, "\ncluster:");
        let _ = writeln!(
            s,
            "  etcd: {} member(s) in host {}, store {}",
            e.members,
            e.host,
            e.store_url()
        );
        for sw in &plan.switches {
            if let Some(j) = &sw.cluster {
                let _ = writeln!(
                    s,
                    "  node {}: VTEP {}{}",
                    sw.name,
                    j.advertise,
                    j.ttl
                        .map(|t| format!(", lease TTL {t} s"))
                        .unwrap_or_default()
                );
            }
        }
        for o in &plan.overlays {
            let mut line = format!("  overlay {}: subnet {}", o.name, o.subnet);
            if let Some(g) = o.gateway {
                let _ = write!(line, ", gateway {g}");
            }
            match o.vni {
                Some(v) => {
                    let _ = write!(line, ", VNI {v}");
                }
                None => line.push_str(", VNI from the cluster"),
            }
            let on: Vec<String> = plan
                .hosts
                .iter()
                .filter_map(|h| {
                    h.attach
                        .as_ref()
                        .filter(|a| a.overlay == o.name)
                        .map(|a| format!("{} on {}", h.name, a.switch))
                })
                .collect();
            if !on.is_empty() {
                let _ = write!(line, "; attached: {}", on.join(", "));
            }
            let _ = writeln!(s, "{line}");
        }
    }
    if !plan.checks.is_empty() {
        let _ = writeln!(s, "\nchecks (in order):");
        for (i, c) in plan.checks.iter().enumerate() {
            let _ = writeln!(s, "  {:>2}. {}  [line {}]", i + 1, c.label, c.line);
        }
    }
    if with_steps {
        let _ = writeln!(s, "\nsteps:");
        for st in steps(plan) {
            let _ = writeln!(s, "  {}", st.describe(plan, RUN_PLACEHOLDER));
        }
    }
    s
}
