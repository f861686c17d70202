//! Checks that look inside a node: `fdb` (a switch's forwarding table) and `exec` (a
//! command's status and output).

use crate::model::{ExecSpec, FdbSpec, IpamSpec};

use super::{need_node, seconds, CheckKind, HostEnd, MacRef, Resolved};
use crate::plan::errors::Cx;
use crate::plan::{parse_mac, vid, Nodes, Plan};

/// `fdb`: whether a switch bridge has learned a MAC, on which port and VLAN.
pub(super) fn fdb(cx: &mut Cx<'_>, f: &FdbSpec, plan: &Plan) -> Resolved {
    let sw = match plan.switch(&f.switch.value) {
        Some(s) => s,
        None => {
            return cx.fail(
                &f.switch.referenced,
                format!("unknown switch `{}`", f.switch.value),
            );
        }
    };
    let bridge = match &f.bridge {
        Some(b) => {
            if sw.bridges.iter().all(|x| x.name != b.value) {
                return cx.fail(
                    &b.referenced,
                    format!("switch {} has no bridge `{}`", sw.name, b.value),
                );
            }
            b.value.clone()
        }
        None => match sw.bridges.as_slice() {
            [only] => only.name.clone(),
            _ => {
                return cx.fail(
                    &f.switch.referenced,
                    format!("switch {} has several bridges; add `bridge:`", sw.name),
                );
            }
        },
    };
    let mac = if f.mac.value.matches([':', '-']).count() == 5 {
        match parse_mac(&f.mac.value) {
            Ok(m) => MacRef::Literal(m),
            Err(e) => {
                return cx.fail(&f.mac.referenced, e);
            }
        }
    } else {
        let (h, i) = match f.mac.value.split_once(':') {
            Some((h, i)) => (h, Some(i)),
            None => (f.mac.value.as_str(), None),
        };
        let Some(host) = plan.host(h) else {
            return cx.fail(
                &f.mac.referenced,
                format!(
                    "mac `{}` is neither a MAC, a host nor HOST:IFACE",
                    f.mac.value
                ),
            );
        };
        let iface = match i {
            Some(i) if host.ifaces.iter().any(|x| x.name == i) => i.to_string(),
            Some(i) => {
                return cx.fail(
                    &f.mac.referenced,
                    format!("host {h} has no interface `{i}`"),
                );
            }
            None => match host.ifaces.first() {
                Some(x) => x.name.clone(),
                None => {
                    return cx.fail(&f.mac.referenced, format!("host {h} has no interfaces"));
                }
            },
        };
        MacRef::Iface(HostEnd {
            host: h.to_string(),
            iface,
        })
    };
    if let Some(p) = &f.port {
        let ports = plan.port_names(&sw.name, &bridge);
        if !ports.contains(&p.value) {
            return cx.fail(
                &p.referenced,
                format!(
                    "bridge {}:{bridge} has no port `{}` (its ports: {})",
                    sw.name,
                    p.value,
                    ports.join(", ")
                ),
            );
        }
    }
    let learned = f.learned.unwrap_or(true);
    let vlan = match &f.vlan {
        Some(v) => Some(vid(cx, v)?),
        None => None,
    };
    Some((
        f.name.clone().unwrap_or_else(|| {
            format!(
                "fdb {}/{bridge} {}{} {}",
                sw.name,
                f.mac.value,
                f.port
                    .as_ref()
                    .map(|p| format!(" on {}", p.value))
                    .unwrap_or_default()
                    + &vlan.map(|v| format!(" in VLAN {v}")).unwrap_or_default(),
                if learned { "learned" } else { "not learned" }
            )
        }),
        CheckKind::Fdb {
            switch: sw.name.clone(),
            bridge,
            mac,
            port: f.port.as_ref().map(|p| p.value.clone()),
            vlan,
            learned,
        },
    ))
}

/// `exec`: a command in a node, its exit status and output.
pub(super) fn exec(cx: &mut Cx<'_>, e: &ExecSpec, nodes: &Nodes) -> Resolved {
    let node = need_node(cx, &e.node, nodes);
    if e.cmd.value.trim().is_empty() {
        cx.err(&e.cmd.referenced, "cmd is empty");
    }
    let exit = match &e.exit {
        Some(x) => match i32::try_from(x.value)
            .ok()
            .filter(|x| (0..=255).contains(x))
        {
            Some(v) => v,
            None => {
                cx.err(
                    &x.referenced,
                    format!("exit {} is outside 0..=255", x.value),
                );
                0
            }
        },
        None => 0,
    };
    let timeout = seconds(cx, &e.timeout, 10.0, 120.0);
    let node = node?;
    Some((
        e.name
            .clone()
            .unwrap_or_else(|| format!("exec {node}: {}", e.cmd.value.trim())),
        CheckKind::Exec {
            node,
            cmd: e.cmd.value.clone(),
            exit,
            output: e.output.clone(),
            timeout,
        },
    ))
}

/// `ipam`: the hosts attached to an overlay and what the cluster gave them.
pub(super) fn ipam(cx: &mut Cx<'_>, i: &IpamSpec, plan: &Plan) -> Resolved {
    let Some(o) = plan.overlays.iter().find(|o| o.name == i.overlay.value) else {
        return cx.fail(
            &i.overlay.referenced,
            format!("unknown overlay `{}`", i.overlay.value),
        );
    };
    let hosts: Vec<String> = plan.attached_to(&o.name).map(str::to_string).collect();
    if hosts.is_empty() {
        return cx.fail(
            &i.overlay.referenced,
            format!("no host is attached to overlay {}", o.name),
        );
    }
    Some((
        i.name.clone().unwrap_or_else(|| {
            format!(
                "ipam {}: {} distinct, claimed once",
                o.name,
                hosts.join(" ")
            )
        }),
        CheckKind::Ipam {
            overlay: o.name.clone(),
            subnet: o.subnet,
            hosts,
        },
    ))
}
