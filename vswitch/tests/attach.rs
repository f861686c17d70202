//! `vsctl attach` / `detach`: a container (a network namespace named by its name, its
//! `/var/run/netns` path, the PID of a process inside it, or a Docker container name) is
//! plugged into a bridge with a veth or a TAP configured inside (name, address, MAC, MTU,
//! default route, VLAN); the attachment survives `kill -9` of the daemon while the
//! container lives, a dead container's port goes down without harming the rest, bad
//! requests change nothing and leave nothing behind, and `detach` undoes all of it.
//!
//! Every "container" is a namespace of the lab (`<prefix>-cN`, deleted on drop, every
//! process in it killed first); the daemon runs in the lab's switch namespace; addresses
//! are the lab's `10.X.Y.0/24` (and `172.18.0.0/16` for a second interface), inside the
//! lab's namespaces only. The Docker test starts a private `dockerd` (its own data and
//! exec roots and socket under the lab's directory, no bridge, no iptables) in a
//! namespace of the lab and stops it at the end.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::{assert_vsctl_error, require_tools, run, sh, vsctl_bin, wait_until, Lab, Out};
use ctl::{BridgeInfo, PortInfo};
use serde_json::Value;
use testlab::dockerd::Dockerd;

/// The bridge every test attaches to.
const BR: &str = "br0";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A lab with the daemon running and bridge `br0`; `nsenter` is what the daemon uses to
/// configure the inside of a container.
fn attach_lab(tag: &str, id: u8) -> Lab {
    require_tools(&["nsenter", "ping"]);
    let mut lab = Lab::new(tag, id);
    lab.start_daemon();
    lab.vsctl_ok(&["add-br", BR]);
    lab
}

/// Address `n` of the lab's subnet, without the prefix length.
fn addr(lab: &Lab, n: u8) -> String {
    format!("{}.{n}", lab.net)
}

/// Address `n` of the lab's subnet as `A.B.C.D/24`.
fn cidr(lab: &Lab, n: u8) -> String {
    format!("{}.{n}/24", lab.net)
}

/// `/var/run/netns/NS`.
fn ns_path(ns: &str) -> String {
    format!("/var/run/netns/{ns}")
}

/// `ip -n NS -j ARGS…`, parsed.
fn ip_json(ns: &str, args: &[&str]) -> Value {
    let mut v = vec!["ip", "-n", ns, "-j"];
    v.extend_from_slice(args);
    let out = sh(&v);
    if out.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{v:?} printed bad JSON ({e}):\n{out}"))
}

/// The names of every interface in `ns`, sorted.
fn links(ns: &str) -> Vec<String> {
    let v = ip_json(ns, &["link", "show"]);
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn link_exists(ns: &str, dev: &str) -> bool {
    links(ns).iter().any(|l| l == dev)
}

/// How `dev` looks inside `ns`: addresses, MAC, MTU, flags, kind.
#[derive(Debug)]
struct Iface {
    inet: Vec<String>,
    mac: String,
    mtu: u64,
    flags: Vec<String>,
    kind: String,
}

fn iface(ns: &str, dev: &str) -> Iface {
    let a = ip_json(ns, &["-d", "addr", "show", "dev", dev]);
    let l = &a[0];
    Iface {
        inet: l["addr_info"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|i| i["family"] == "inet")
                    .map(|i| format!("{}/{}", i["local"].as_str().unwrap(), i["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default(),
        mac: l["address"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        mtu: l["mtu"].as_u64().unwrap_or(0),
        flags: l["flags"]
            .as_array()
            .map(|v| v.iter().map(|f| f.as_str().unwrap().to_string()).collect())
            .unwrap_or_default(),
        kind: l["linkinfo"]["info_kind"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

/// The default route of `ns`: (gateway, device).
fn default_route(ns: &str) -> Option<(String, String)> {
    let v = ip_json(ns, &["route", "show", "default"]);
    v.as_array().unwrap().first().map(|r| {
        (
            r["gateway"].as_str().unwrap_or_default().to_string(),
            r["dev"].as_str().unwrap_or_default().to_string(),
        )
    })
}

/// What an attachment must look like inside its container.
struct Want<'a> {
    ifname: &'a str,
    ip: &'a str,
    mac: Option<&'a str>,
    mtu: u64,
    gw: Option<&'a str>,
    kind: &'a str,
}

/// Asserts `w` inside `ns`; returns the interface's MAC.
fn check_inside(lab: &Lab, ns: &str, w: &Want<'_>) -> String {
    assert!(
        link_exists(ns, w.ifname),
        "{ns} has no {} after attach; it has {:?}\n{}",
        w.ifname,
        links(ns),
        lab.diag()
    );
    let i = iface(ns, w.ifname);
    assert_eq!(
        i.inet,
        vec![w.ip.to_string()],
        "{ns}/{}: addresses: {i:?}",
        w.ifname
    );
    if let Some(m) = w.mac {
        assert_eq!(i.mac, m, "{ns}/{}: MAC: {i:?}", w.ifname);
    } else {
        let first = u8::from_str_radix(&i.mac[..2], 16).unwrap();
        assert!(
            first & 1 == 0 && i.mac != "00:00:00:00:00:00",
            "{ns}/{}: not a unicast MAC: {i:?}",
            w.ifname
        );
    }
    assert_eq!(i.mtu, w.mtu, "{ns}/{}: MTU: {i:?}", w.ifname);
    assert_eq!(i.kind, w.kind, "{ns}/{}: kind: {i:?}", w.ifname);
    for f in ["UP", "LOWER_UP"] {
        assert!(
            i.flags.iter().any(|x| x == f),
            "{ns}/{}: not {f}: {i:?}",
            w.ifname
        );
    }
    let route = default_route(ns);
    match w.gw {
        Some(g) => assert_eq!(
            route,
            Some((g.to_string(), w.ifname.to_string())),
            "{ns}: default route"
        ),
        None => assert_eq!(route, None, "{ns}: a default route nobody asked for"),
    }
    i.mac
}

/// `show --json`, the bridges.
fn show(lab: &Lab) -> Vec<BridgeInfo> {
    lab.show()
}

/// The port of `br` attached as `ifname` to the container with namespace file `netns`.
fn attached(lab: &Lab, br: &str, netns: &str, ifname: &str) -> Option<PortInfo> {
    show(lab).into_iter().find(|b| b.name == br).and_then(|b| {
        b.ports.into_iter().find(|p| {
            p.attach
                .as_ref()
                .is_some_and(|a| a.netns == netns && a.ifname == ifname)
        })
    })
}

/// Like [`attached`], but panics when there is no such port; checks the port's name and
/// what `show --json` says of the attachment.
fn port_of(lab: &Lab, netns: &str, ifname: &str, container: &str, ip: &str) -> PortInfo {
    let p = attached(lab, BR, netns, ifname).unwrap_or_else(|| {
        panic!(
            "show --json lists no {ifname} attached to {netns} on {BR}\n{}",
            lab.diag()
        )
    });
    assert!(
        p.name.len() == 10
            && p.name.starts_with("va")
            && p.name[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "the switch's end of an attachment is `va` and 8 hex digits: {p:?}"
    );
    let a = p.attach.as_ref().unwrap();
    assert_eq!(
        (a.container.as_str(), a.ip.as_str()),
        (container, ip),
        "show --json attach of {}: {p:?}",
        p.name
    );
    p
}

/// `vsctl attach BR ARGS…`, asserting success.
fn attach(lab: &Lab, args: &[&str]) {
    let mut v = vec!["attach", BR];
    v.extend_from_slice(args);
    lab.vsctl_ok(&v);
}

/// Pings `ip` from `ns`: 3 replies within 10 s.
fn ping(lab: &Lab, ns: &str, ip: &str) -> Out {
    lab.exec_t(
        ns,
        &["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-w", "10", ip],
        common::LONG,
    )
}

/// Pings without expecting an answer: 2 echo requests, 1 s each.
fn ping_noreply(lab: &Lab, ns: &str, ip: &str) -> Out {
    lab.exec_t(
        ns,
        &["ping", "-n", "-q", "-c", "2", "-i", "0.3", "-W", "1", ip],
        common::LONG,
    )
}

/// Asserts, all pings at once, that each `(namespace, address)` pair pings (`reach`) or
/// gets no answer at all (`!reach`).
fn pings(lab: &Lab, pairs: &[(&str, &str)], reach: bool) {
    let outs: Vec<Out> = thread::scope(|s| {
        let hs: Vec<_> = pairs
            .iter()
            .map(|&(ns, ip)| {
                s.spawn(move || {
                    if reach {
                        ping(lab, ns, ip)
                    } else {
                        ping_noreply(lab, ns, ip)
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((ns, ip), o) in pairs.iter().zip(outs) {
        if reach {
            assert!(o.success(), "{ns} cannot ping {ip}: {o}\n{}", lab.diag());
        } else {
            assert!(
                !o.success() && o.stdout.contains(" 0 received"),
                "{ns} reached {ip}, which it must not: {o}\n{}",
                lab.diag()
            );
        }
    }
}

/// Starts `sleep 300` inside `ns` (owned by the lab: killed at teardown) and returns its
/// PID once it is inside the namespace.
fn sleeper(lab: &mut Lab, ns: &str) -> u32 {
    let pid = lab
        .spawn_in(ns, &format!("sleep-{ns}"), &["sleep", "300"])
        .pid();
    let want = fs::metadata(ns_path(ns)).unwrap();
    let proc_ns = format!("/proc/{pid}/ns/net");
    wait_until(
        &format!("sleep (pid {pid}) to be inside {ns}"),
        Duration::from_secs(10),
        || {
            fs::metadata(&proc_ns).is_ok_and(|m| m.ino() == want.ino() && m.dev() == want.dev())
                && fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
        },
    );
    pid
}

/// Kills the daemon with SIGKILL.
fn kill_9(lab: &mut Lab) {
    let st = lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL),
        "vswitchd was to die of SIGKILL: {st}"
    );
}

/// Kills the daemon with SIGKILL and starts it again on the same `--db`.
fn kill_9_and_restart(lab: &mut Lab) {
    kill_9(lab);
    lab.start_daemon();
}

/// The `va*`/`vp*` interfaces of the switch namespace.
fn switch_ends(lab: &Lab) -> Vec<String> {
    links(&lab.sw)
        .into_iter()
        .filter(|l| l.starts_with("va") || l.starts_with("vp"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Attach by netns name, path and PID
// ---------------------------------------------------------------------------------------

#[test]
fn attach_by_name_path_and_pid_configures_the_inside_and_containers_talk() {
    let mut lab = attach_lab("atnam", 120);
    let c1 = lab.add_named_ns("c1");
    let c2 = lab.add_named_ns("c2");
    let c3 = lab.add_named_ns("c3");
    let pid = sleeper(&mut lab, &c3);
    let pid_s = pid.to_string();
    let (ip1, ip2, ip3) = (cidr(&lab, 11), cidr(&lab, 12), cidr(&lab, 13));
    let gw = addr(&lab, 1);
    let sw_before = links(&lab.sw);

    // By name: everything given.
    attach(
        &lab,
        &[
            &c1,
            "--ip",
            &ip1,
            "--gw",
            &gw,
            "--mac",
            "02:aa:00:00:01:11",
            "--mtu",
            "1400",
        ],
    );
    // By path: another interface name, no gateway, no MAC.
    let p2 = ns_path(&c2);
    attach(
        &lab,
        &[&p2, "--ip", &ip2, "--ifname", "in0", "--mtu", "1400"],
    );
    // By PID.
    attach(
        &lab,
        &[
            &pid_s,
            "--ip",
            &ip3,
            "--gw",
            &gw,
            "--mac",
            "02:AA:00:00:01:13",
        ],
    );

    check_inside(
        &lab,
        &c1,
        &Want {
            ifname: "eth0",
            ip: &ip1,
            mac: Some("02:aa:00:00:01:11"),
            mtu: 1400,
            gw: Some(&gw),
            kind: "veth",
        },
    );
    check_inside(
        &lab,
        &c2,
        &Want {
            ifname: "in0",
            ip: &ip2,
            mac: None,
            mtu: 1400,
            gw: None,
            kind: "veth",
        },
    );
    check_inside(
        &lab,
        &c3,
        &Want {
            ifname: "eth0",
            ip: &ip3,
            mac: Some("02:aa:00:00:01:13"),
            mtu: 1500,
            gw: Some(&gw),
            kind: "veth",
        },
    );
    for (ns, keep) in [(&c1, "eth0"), (&c2, "in0"), (&c3, "eth0")] {
        assert_eq!(
            links(ns),
            vec![keep.to_string(), "lo".to_string()],
            "{ns}: exactly one interface was to be added"
        );
    }

    // show --json: three attached ports, up, saying where they go.
    let proc3 = format!("/proc/{pid}/ns/net");
    let p1 = port_of(&lab, &ns_path(&c1), "eth0", &c1, &ip1);
    let p2 = port_of(&lab, &p2, "in0", &p2, &ip2);
    let p3 = port_of(&lab, &proc3, "eth0", &pid_s, &ip3);
    let names = [p1.name.as_str(), p2.name.as_str(), p3.name.as_str()];
    assert_eq!(
        names.iter().collect::<BTreeSet<_>>().len(),
        3,
        "three different ports: {names:?}"
    );
    for p in [&p1, &p2, &p3] {
        assert_eq!(p.kind, ctl::PortKind::Afpacket, "{p:?}");
        assert!(p.vlans.is_none(), "no --vlan, yet VLANs: {p:?}");
    }
    lab.wait_ports(BR, &names, "up", Duration::from_secs(10));
    let ports = lab.vsctl_ok(&["list-ports", BR]);
    for n in names {
        assert!(ports.lines().any(|l| l.trim() == n), "list-ports: {ports}");
    }

    // The switch's ends are in the switch namespace, up, MTU as asked; the far ends
    // (`vp…`) are not left there.
    let mut sw_after = sw_before.clone();
    sw_after.extend(names.iter().map(|n| (*n).to_string()));
    sw_after.sort();
    assert_eq!(
        links(&lab.sw),
        sw_after,
        "interfaces of the switch namespace"
    );
    for (p, mtu) in [(&p1, 1400), (&p2, 1400), (&p3, 1500)] {
        let i = iface(&lab.sw, &p.name);
        assert_eq!(i.mtu, mtu, "switch end {}: {i:?}", p.name);
        assert!(i.flags.iter().any(|f| f == "UP"), "{}: {i:?}", p.name);
    }

    // The text form.
    let text = lab.vsctl_ok(&["show"]);
    for (p, c, ifn, ip) in [
        (&p1, c1.as_str(), "eth0", ip1.as_str()),
        (
            &p2,
            p2.attach.as_ref().unwrap().container.as_str(),
            "in0",
            ip2.as_str(),
        ),
        (&p3, pid_s.as_str(), "eth0", ip3.as_str()),
    ] {
        let want = format!("attached to {c} as {ifn} {ip}");
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("port {} ", p.name)) && l.contains(&want)),
            "vsctl show has no line for {} with {want:?}:\n{text}",
            p.name
        );
    }

    // They talk to each other through the switch.
    let (a1, a2, a3) = (addr(&lab, 11), addr(&lab, 12), addr(&lab, 13));
    pings(
        &lab,
        &[
            (&c1, &a2),
            (&c1, &a3),
            (&c2, &a1),
            (&c2, &a3),
            (&c3, &a1),
            (&c3, &a2),
        ],
        true,
    );

    // Detach by PID too.
    lab.vsctl_ok(&["detach", BR, &pid_s]);
    assert!(attached(&lab, BR, &proc3, "eth0").is_none());
    assert_eq!(links(&c3), vec!["lo".to_string()], "c3 after detach");
    assert!(
        !link_exists(&lab.sw, &p3.name),
        "{} left after detach",
        p3.name
    );
}

// ---------------------------------------------------------------------------------------
// 2. TAP and veth attachments survive kill -9
// ---------------------------------------------------------------------------------------

#[test]
fn tap_and_veth_attachments_come_back_after_kill_9() {
    let mut lab = attach_lab("atkil", 121);
    let c1 = lab.add_named_ns("c1");
    let c2 = lab.add_named_ns("c2");
    let c3 = lab.add_named_ns("c3");
    let pid = sleeper(&mut lab, &c3);
    let pid_s = pid.to_string();
    let (ip1, ip2, ip3) = (cidr(&lab, 21), cidr(&lab, 22), cidr(&lab, 23));
    let gw = addr(&lab, 1);
    attach(
        &lab,
        &[
            &c1,
            "--type",
            "tap",
            "--ip",
            &ip1,
            "--gw",
            &gw,
            "--mac",
            "02:aa:00:00:02:21",
            "--mtu",
            "1450",
        ],
    );
    attach(&lab, &[&c2, "--ip", &ip2, "--gw", &gw]);
    // A TAP without --mac, by PID: its MAC must survive too.
    attach(&lab, &[&pid_s, "--type", "tap", "--ip", &ip3]);

    let want1 = Want {
        ifname: "eth0",
        ip: &ip1,
        mac: Some("02:aa:00:00:02:21"),
        mtu: 1450,
        gw: Some(&gw),
        kind: "tun",
    };
    let want2 = Want {
        ifname: "eth0",
        ip: &ip2,
        mac: None,
        mtu: 1500,
        gw: Some(&gw),
        kind: "veth",
    };
    let mut want3 = Want {
        ifname: "eth0",
        ip: &ip3,
        mac: None,
        mtu: 1500,
        gw: None,
        kind: "tun",
    };
    check_inside(&lab, &c1, &want1);
    let mac2 = check_inside(&lab, &c2, &want2);
    let mac3 = check_inside(&lab, &c3, &want3);
    let proc3 = format!("/proc/{pid}/ns/net");
    let p1 = port_of(&lab, &ns_path(&c1), "eth0", &c1, &ip1);
    let p2 = port_of(&lab, &ns_path(&c2), "eth0", &c2, &ip2);
    let p3 = port_of(&lab, &proc3, "eth0", &pid_s, &ip3);
    assert_eq!(p1.kind, ctl::PortKind::Tap, "{p1:?}");
    assert_eq!(p3.kind, ctl::PortKind::Tap, "{p3:?}");
    let names = [p1.name.as_str(), p2.name.as_str(), p3.name.as_str()];
    lab.wait_ports(BR, &names, "up", Duration::from_secs(10));
    // A TAP's switch end is the daemon's file descriptor: nothing is left in the switch
    // namespace but the veth's end.
    assert_eq!(switch_ends(&lab), vec![p2.name.clone()], "switch namespace");
    let (a1, a2, a3) = (addr(&lab, 21), addr(&lab, 22), addr(&lab, 23));
    let all = [
        (c1.as_str(), a2.as_str()),
        (c1.as_str(), a3.as_str()),
        (c2.as_str(), a1.as_str()),
        (c2.as_str(), a3.as_str()),
        (c3.as_str(), a1.as_str()),
        (c3.as_str(), a2.as_str()),
    ];
    pings(&lab, &all, true);
    let before = show(&lab);

    kill_9(&mut lab);
    // The TAPs die with the daemon (the restarted one must put new ones back); the veth
    // stays.
    wait_until(
        "the TAPs to leave c1 and c3 with the daemon",
        Duration::from_secs(5),
        || links(&c1) == vec!["lo".to_string()] && links(&c3) == vec!["lo".to_string()],
    );
    assert!(link_exists(&c2, "eth0"), "the veth went with the daemon");
    lab.start_daemon();
    lab.wait_ports(BR, &names, "up", Duration::from_secs(10));
    let after = show(&lab);
    let strip = |v: Vec<BridgeInfo>| -> Vec<Vec<PortInfo>> {
        v.into_iter()
            .map(|mut b| {
                b.ports.sort_by(|x, y| x.name.cmp(&y.name));
                b.ports
            })
            .collect()
    };
    assert_eq!(
        strip(after),
        strip(before),
        "ports and attachments after kill -9 and restart"
    );
    check_inside(&lab, &c1, &want1);
    assert_eq!(
        check_inside(&lab, &c2, &want2),
        mac2,
        "the veth's MAC inside c2"
    );
    want3.mac = Some(&mac3);
    check_inside(&lab, &c3, &want3);
    for ns in [&c1, &c2, &c3] {
        assert_eq!(
            links(ns),
            vec!["eth0".to_string(), "lo".to_string()],
            "{ns} after the restart"
        );
    }
    assert_eq!(
        switch_ends(&lab),
        vec![p2.name.clone()],
        "switch namespace after the restart"
    );
    pings(&lab, &all, true);
}

// ---------------------------------------------------------------------------------------
// 3. --vlan
// ---------------------------------------------------------------------------------------

#[test]
fn vlan_attachments_are_access_ports_of_their_vlan() {
    let mut lab = attach_lab("atvln", 122);
    let cs: Vec<String> = (1..=4)
        .map(|i| lab.add_named_ns(&format!("c{i}")))
        .collect();
    let vlans = ["10", "10", "20", "20"];
    for (i, (c, v)) in cs.iter().zip(vlans).enumerate() {
        let ip = cidr(&lab, 31 + u8::try_from(i).unwrap());
        attach(&lab, &[c, "--ip", &ip, "--vlan", v]);
    }
    let mut names = Vec::new();
    for (i, (c, v)) in cs.iter().zip(vlans).enumerate() {
        let ip = cidr(&lab, 31 + u8::try_from(i).unwrap());
        let p = port_of(&lab, &ns_path(c), "eth0", c, &ip);
        let vid: u16 = v.parse().unwrap();
        let pv = p
            .vlans
            .clone()
            .unwrap_or_else(|| panic!("--vlan {v}: {p:?}"));
        assert_eq!(
            (pv.pvid, pv.untagged.clone(), pv.tagged.clone()),
            (Some(vid), vec![vid], vec![]),
            "access port of VLAN {v}: {p:?}"
        );
        names.push(p.name);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    lab.wait_ports(BR, &refs, "up", Duration::from_secs(10));
    let a: Vec<String> = (31..=34).map(|n| addr(&lab, n)).collect();
    // Inside a VLAN: both ways.
    pings(
        &lab,
        &[
            (&cs[0], &a[1]),
            (&cs[1], &a[0]),
            (&cs[2], &a[3]),
            (&cs[3], &a[2]),
        ],
        true,
    );
    // Across: nothing.
    pings(
        &lab,
        &[
            (&cs[2], &a[0]),
            (&cs[2], &a[1]),
            (&cs[0], &a[2]),
            (&cs[1], &a[3]),
        ],
        false,
    );

    // The same after kill -9 and a restart.
    let before = show(&lab);
    kill_9_and_restart(&mut lab);
    lab.wait_ports(BR, &refs, "up", Duration::from_secs(10));
    let vl = |v: Vec<BridgeInfo>| -> Vec<(String, Option<ctl::PortVlans>)> {
        let mut p: Vec<_> = v
            .into_iter()
            .flat_map(|b| b.ports)
            .map(|p| (p.name, p.vlans))
            .collect();
        p.sort_by(|x, y| x.0.cmp(&y.0));
        p
    };
    assert_eq!(vl(show(&lab)), vl(before), "VLANs after the restart");
    pings(&lab, &[(&cs[0], &a[1]), (&cs[3], &a[2])], true);
    pings(&lab, &[(&cs[0], &a[3]), (&cs[2], &a[1])], false);
}

// ---------------------------------------------------------------------------------------
// 4. detach
// ---------------------------------------------------------------------------------------

#[test]
fn detach_removes_the_port_and_both_ends() {
    let mut lab = attach_lab("atdet", 123);
    let c1 = lab.add_named_ns("c1");
    let c2 = lab.add_named_ns("c2");
    let c3 = lab.add_named_ns("c3");
    let (ip1, ip2, ip3) = (cidr(&lab, 41), cidr(&lab, 42), cidr(&lab, 43));
    let sw_before = links(&lab.sw);
    let gw = addr(&lab, 1);
    attach(&lab, &[&c1, "--ip", &ip1, "--gw", &gw]);
    attach(&lab, &[&c2, "--ip", &ip2, "--type", "tap"]);
    attach(&lab, &[&c3, "--ip", &ip3]);
    let p1 = port_of(&lab, &ns_path(&c1), "eth0", &c1, &ip1);
    let p2 = port_of(&lab, &ns_path(&c2), "eth0", &c2, &ip2);
    let p3 = port_of(&lab, &ns_path(&c3), "eth0", &c3, &ip3);
    lab.wait_ports(
        BR,
        &[&p1.name, &p2.name, &p3.name],
        "up",
        Duration::from_secs(10),
    );
    assert!(lab.link_exists(&lab.sw, &p1.name), "{} missing", p1.name);

    // Detach the veth by name and the TAP by path.
    assert!(lab.vsctl_ok(&["detach", BR, &c1]).trim().is_empty());
    assert!(lab
        .vsctl_ok(&["detach", BR, &ns_path(&c2), "--ifname", "eth0"])
        .trim()
        .is_empty());
    for (ns, p) in [(&c1, &p1), (&c2, &p2)] {
        assert!(
            attached(&lab, BR, &ns_path(ns), "eth0").is_none(),
            "{ns} is still attached after detach: {:#?}",
            show(&lab)
        );
        let ports = lab.vsctl_ok(&["list-ports", BR]);
        assert!(
            !ports.lines().any(|l| l.trim() == p.name),
            "{} is still a port: {ports}",
            p.name
        );
        wait_until(
            &format!("eth0 to leave {ns} after detach"),
            Duration::from_secs(5),
            || links(ns) == vec!["lo".to_string()],
        );
    }
    assert!(default_route(&c1).is_none(), "c1 still has a default route");
    let mut only3 = sw_before.clone();
    only3.push(p3.name.clone());
    only3.sort();
    assert_eq!(
        links(&lab.sw),
        only3,
        "the switch namespace after detach (no va*/vp* left but c3's)"
    );

    // Detaching what is not attached: one line, nothing changes.
    lab.vsctl_ok(&["add-br", "br1"]);
    let snap = (
        lab.vsctl_ok(&["--json", "show"]),
        fs::read(&lab.db).unwrap(),
    );
    let bad: [(&str, Vec<&str>, &str); 4] = [
        ("detached twice", vec!["detach", BR, &c1], "eth0"),
        (
            "another ifname",
            vec!["detach", BR, &c3, "--ifname", "eth1"],
            "eth1",
        ),
        ("unknown bridge", vec!["detach", "nobr", &c3], "nobr"),
        ("wrong bridge", vec!["detach", "br1", &c3], "br1"),
    ];
    for (what, args, word) in &bad {
        let o = lab.vsctl(args);
        let line = assert_vsctl_error(&o);
        assert!(
            line.contains(word),
            "{what}: error should name {word}: {line}"
        );
        assert_eq!(
            (
                lab.vsctl_ok(&["--json", "show"]),
                fs::read(&lab.db).unwrap()
            ),
            snap,
            "{what} was refused but changed the state"
        );
    }
    assert_eq!(links(&c3), vec!["eth0".to_string(), "lo".to_string()]);

    // After a restart the detached ones stay gone; the same container attaches again.
    kill_9_and_restart(&mut lab);
    lab.wait_ports(BR, &[&p3.name], "up", Duration::from_secs(10));
    for ns in [&c1, &c2] {
        assert!(attached(&lab, BR, &ns_path(ns), "eth0").is_none());
        assert_eq!(links(ns), vec!["lo".to_string()], "{ns} after restart");
    }
    attach(&lab, &[&c1, "--ip", &ip1, "--gw", &gw]);
    let again = port_of(&lab, &ns_path(&c1), "eth0", &c1, &ip1);
    lab.wait_ports(BR, &[&again.name], "up", Duration::from_secs(10));
    pings(&lab, &[(&c1, &addr(&lab, 43))], true);

    // del-port and del-br on an attached veth unplug it as detach does: no dead eth0
    // left in the container, no veth in the switch's namespace, and the same
    // container and interface attach again.
    lab.vsctl_ok(&["del-port", BR, &p3.name]);
    assert!(
        !lab.link_exists(&lab.sw, &p3.name),
        "{} left by del-port",
        p3.name
    );
    wait_until(
        "eth0 to leave c3 after del-port",
        Duration::from_secs(5),
        || links(&c3) == vec!["lo".to_string()],
    );
    attach(&lab, &[&c3, "--ip", &ip3]);
    let p3 = port_of(&lab, &ns_path(&c3), "eth0", &c3, &ip3);
    lab.wait_ports(BR, &[&p3.name], "up", Duration::from_secs(10));
    // From c3: its new interface has a new MAC, which c1 still has the old one of.
    pings(&lab, &[(&c3, &addr(&lab, 41))], true);
    lab.vsctl_ok(&["del-br", BR]);
    for (ns, p) in [(&c1, &again), (&c3, &p3)] {
        assert!(
            !lab.link_exists(&lab.sw, &p.name),
            "{} left by del-br",
            p.name
        );
        wait_until(
            &format!("eth0 to leave {ns} after del-br"),
            Duration::from_secs(5),
            || links(ns) == vec!["lo".to_string()],
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. A container that dies
// ---------------------------------------------------------------------------------------

#[test]
fn a_dead_containers_ports_go_down_and_the_rest_keeps_working() {
    let mut lab = attach_lab("atdea", 124);
    let c1 = lab.add_named_ns("c1");
    let c2 = lab.add_named_ns("c2");
    let c3 = lab.add_named_ns("c3");
    let (ip1, ip2, ip3) = (cidr(&lab, 51), cidr(&lab, 52), cidr(&lab, 53));
    attach(&lab, &[&c1, "--ip", &ip1]);
    attach(
        &lab,
        &[
            &c1,
            "--ip",
            "172.18.124.1/24",
            "--ifname",
            "eth1",
            "--type",
            "tap",
        ],
    );
    attach(&lab, &[&c2, "--ip", &ip2]);
    attach(&lab, &[&c3, "--ip", &ip3]);
    let veth = port_of(&lab, &ns_path(&c1), "eth0", &c1, &ip1).name;
    let tap = port_of(&lab, &ns_path(&c1), "eth1", &c1, "172.18.124.1/24").name;
    let p2 = port_of(&lab, &ns_path(&c2), "eth0", &c2, &ip2).name;
    let p3 = port_of(&lab, &ns_path(&c3), "eth0", &c3, &ip3).name;
    lab.wait_ports(BR, &[&veth, &tap, &p2, &p3], "up", Duration::from_secs(10));
    let (a1, a2, a3) = (addr(&lab, 51), addr(&lab, 52), addr(&lab, 53));
    pings(&lab, &[(&c2, &a1), (&c1, &a3), (&c2, &a3)], true);

    // The container dies: its namespace goes (nothing runs in it).
    sh(&["ip", "netns", "del", &c1]);
    lab.wait_ports(BR, &[&veth, &tap], "down", Duration::from_secs(10));
    let reasons = |lab: &Lab| -> Vec<(String, Option<String>)> {
        show(lab)
            .into_iter()
            .flat_map(|b| b.ports)
            .filter(|p| p.name == veth || p.name == tap)
            .map(|p| (p.name, p.reason))
            .collect()
    };
    for (n, r) in reasons(&lab) {
        assert!(
            r.as_deref().is_some_and(|r| !r.trim().is_empty()),
            "port {n} is down without a reason\n{}",
            lab.diag()
        );
    }
    let text = lab.vsctl_ok(&["show"]);
    for n in [&veth, &tap] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("port {n} ")) && l.contains(" down: ")),
            "vsctl show does not say why {n} is down:\n{text}"
        );
    }
    // The daemon keeps serving and the others keep talking.
    lab.wait_ports(BR, &[&p2, &p3], "up", Duration::from_secs(1));
    pings(&lab, &[(&c2, &a3), (&c3, &a2)], true);
    assert!(
        switch_ends(&lab).iter().all(|l| *l == p2 || *l == p3),
        "the dead container's veth end is left: {:?}",
        switch_ends(&lab)
    );

    // After a restart: the dead ones stay down, quietly; the rest is up.
    let log_at = fs::read_to_string(&lab.log).unwrap().len();
    kill_9_and_restart(&mut lab);
    lab.wait_ports(BR, &[&p2, &p3], "up", Duration::from_secs(10));
    lab.wait_ports(BR, &[&veth, &tap], "down", Duration::from_secs(10));
    for (n, r) in reasons(&lab) {
        assert!(
            r.as_deref().is_some_and(|r| !r.trim().is_empty()),
            "port {n} is down without a reason after the restart"
        );
    }
    pings(&lab, &[(&c2, &a3), (&c3, &a2)], true);
    // Several housekeeping rounds (one a second) must not spam the log nor crash.
    thread::sleep(Duration::from_secs(3));
    assert!(
        lab.daemon_running(),
        "vswitchd exited after the restart\n{}",
        lab.log_text()
    );
    let log = fs::read_to_string(&lab.log).unwrap();
    let new = &log[log_at.min(log.len())..];
    let noisy: Vec<&str> = new
        .lines()
        .filter(|l| l.contains(&veth) || l.contains(&tap) || l.contains(&c1))
        .collect();
    assert!(
        noisy.len() <= 4,
        "the dead attachments spam the log ({} lines in ~4 s):\n{}",
        noisy.len(),
        noisy.join("\n")
    );
    assert!(
        switch_ends(&lab).iter().all(|l| *l == p2 || *l == p3),
        "a TAP or veth of the dead container was made again: {:?}",
        switch_ends(&lab)
    );
    assert!(lab.vsctl(&["show"]).success());
    // It can still be removed as a port.
    lab.vsctl_ok(&["del-port", BR, &veth]);
    lab.vsctl_ok(&["del-port", BR, &tap]);
    assert!(attached(&lab, BR, &ns_path(&c1), "eth0").is_none());
}

/// `detach` undoes an attachment whose container is gone too, by the namespace path it
/// was attached with (its name or PID no longer leads anywhere; `del-port` is not the
/// way `attach` was undone).
#[test]
fn a_dead_container_can_be_detached_by_its_path() {
    let mut lab = attach_lab("atdd", 127);
    let c1 = lab.add_named_ns("c1");
    let c2 = lab.add_named_ns("c2");
    let (ip1, ip2) = (cidr(&lab, 81), cidr(&lab, 82));
    attach(&lab, &[&c1, "--ip", &ip1]);
    attach(
        &lab,
        &[
            &c1,
            "--ip",
            "172.18.127.1/24",
            "--ifname",
            "eth1",
            "--type",
            "tap",
        ],
    );
    attach(&lab, &[&c2, "--ip", &ip2]);
    let veth = port_of(&lab, &ns_path(&c1), "eth0", &c1, &ip1).name;
    let tap = port_of(&lab, &ns_path(&c1), "eth1", &c1, "172.18.127.1/24").name;
    let p2 = port_of(&lab, &ns_path(&c2), "eth0", &c2, &ip2).name;
    lab.wait_ports(BR, &[&veth, &tap, &p2], "up", Duration::from_secs(10));
    sh(&["ip", "netns", "del", &c1]);
    lab.wait_ports(BR, &[&veth, &tap], "down", Duration::from_secs(10));

    let path = ns_path(&c1);
    let o1 = lab.vsctl(&["detach", BR, &path]);
    let o2 = lab.vsctl(&["detach", BR, &path, "--ifname", "eth1"]);
    assert!(
        o1.success() && o2.success(),
        "detach of a dead container's attachments failed:\n{o1}\n{o2}"
    );
    let left: Vec<String> = show(&lab)
        .into_iter()
        .flat_map(|b| b.ports)
        .map(|p| p.name)
        .collect();
    assert_eq!(
        left,
        vec![p2.clone()],
        "ports after detaching the dead ones"
    );
    assert_eq!(switch_ends(&lab), vec![p2], "switch namespace");
}

// ---------------------------------------------------------------------------------------
// 6. Bad requests
// ---------------------------------------------------------------------------------------

/// Everything a refused request must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Snap {
    show: String,
    db: Vec<u8>,
    /// Interfaces of the switch namespace and of every container.
    links: Vec<(String, Vec<String>)>,
}

fn snap(lab: &Lab, nss: &[&str]) -> Snap {
    let mut l = vec![(lab.sw.clone(), links(&lab.sw))];
    l.extend(nss.iter().map(|ns| ((*ns).to_string(), links(ns))));
    Snap {
        show: lab.vsctl_ok(&["--json", "show"]),
        db: fs::read(&lab.db).unwrap(),
        links: l,
    }
}

#[test]
fn bad_attach_requests_are_refused_and_leave_nothing_behind() {
    let mut lab = attach_lab("atbad", 125);
    let c1 = lab.add_named_ns("c1");
    let c2 = lab.add_named_ns("c2");
    let c3 = lab.add_named_ns("c3");
    let pid3 = sleeper(&mut lab, &c3).to_string();
    lab.vsctl_ok(&["add-br", "br1"]);
    // c2 has an interface of its own.
    sh(&[
        "ip", "-n", &c2, "link", "add", "own0", "type", "veth", "peer", "name", "own1",
    ]);
    attach(&lab, &[&c1, "--ip", &cidr(&lab, 61)]);
    attach(&lab, &[&c3, "--ip", &cidr(&lab, 63)]);
    let p1 = port_of(&lab, &ns_path(&c1), "eth0", &c1, &cidr(&lab, 61)).name;
    lab.wait_ports(BR, &[&p1], "up", Duration::from_secs(10));

    let ip = cidr(&lab, 62);
    let gone = format!("{}-gone", lab.prefix);
    let gone_path = ns_path(&gone);
    let outside = "10.250.250.1".to_string();
    let gone_word = [gone.as_str()];
    type Case<'a> = (&'a str, Vec<&'a str>, &'a [&'a str]);
    let cases: Vec<Case<'_>> = vec![
        (
            "nonexistent PID",
            vec!["attach", BR, "999999999", "--ip", &ip],
            &["999999999"],
        ),
        (
            "nonexistent namespace path",
            vec!["attach", BR, &gone_path, "--ip", &ip],
            &["namespace"],
        ),
        (
            "nonexistent namespace name",
            vec!["attach", BR, &gone, "--ip", &ip],
            &gone_word,
        ),
        (
            "address without prefix",
            vec!["attach", BR, &c2, "--ip", "10.1.2.3"],
            &["10.1.2.3"],
        ),
        (
            "address out of range",
            vec!["attach", BR, &c2, "--ip", "10.1.2.300/24"],
            &["10.1.2.300"],
        ),
        (
            "prefix length 33",
            vec!["attach", BR, &c2, "--ip", "10.1.2.3/33"],
            &["33"],
        ),
        (
            "gateway outside the subnet",
            vec!["attach", BR, &c2, "--ip", &ip, "--gw", &outside],
            &["outside", "10.250.250.1"],
        ),
        (
            "bad MAC",
            vec!["attach", BR, &c2, "--ip", &ip, "--mac", "02:zz:00:00:00:01"],
            &["mac", "02:zz"],
        ),
        (
            "multicast MAC",
            vec!["attach", BR, &c2, "--ip", &ip, "--mac", "01:00:5e:00:00:01"],
            &["unicast"],
        ),
        (
            "MTU 10",
            vec!["attach", BR, &c2, "--ip", &ip, "--mtu", "10"],
            &["mtu"],
        ),
        (
            "VLAN 5000",
            vec!["attach", BR, &c2, "--ip", &ip, "--vlan", "5000"],
            &["5000"],
        ),
        (
            "VLAN 0",
            vec!["attach", BR, &c2, "--ip", &ip, "--vlan", "0"],
            &["vlan"],
        ),
        (
            "unknown bridge",
            vec!["attach", "nobr", &c2, "--ip", &ip],
            &["nobr"],
        ),
        (
            "type vxlan",
            vec!["attach", BR, &c2, "--ip", &ip, "--type", "vxlan"],
            &["afpacket", "tap", "vxlan"],
        ),
        (
            "ifname too long",
            vec![
                "attach",
                BR,
                &c2,
                "--ip",
                &ip,
                "--ifname",
                "a234567890123456",
            ],
            &["a234567890123456"],
        ),
        (
            "same ifname twice, same bridge",
            vec!["attach", BR, &c1, "--ip", &ip],
            &["eth0"],
        ),
        (
            "same ifname twice, other bridge",
            vec!["attach", "br1", &c1, "--ip", &ip, "--type", "tap"],
            &["eth0"],
        ),
        (
            "same container by PID",
            vec!["attach", BR, &pid3, "--ip", &ip],
            &["eth0"],
        ),
        (
            "ifname lo exists inside (veth)",
            vec!["attach", BR, &c2, "--ip", &ip, "--ifname", "lo"],
            &["lo", "exists"],
        ),
        (
            "ifname lo exists inside (tap)",
            vec![
                "attach", BR, &c2, "--ip", &ip, "--ifname", "lo", "--type", "tap",
            ],
            &["lo", "exists"],
        ),
        (
            "the container's own interface (veth)",
            vec!["attach", BR, &c2, "--ip", &ip, "--ifname", "own0"],
            &["own0", "exists"],
        ),
        (
            "the container's own interface (tap)",
            vec![
                "attach", BR, &c2, "--ip", &ip, "--ifname", "own0", "--type", "tap",
            ],
            &["own0", "exists"],
        ),
    ];
    let nss = [c1.as_str(), c2.as_str(), c3.as_str()];
    let before = snap(&lab, &nss);
    assert!(
        before
            .links
            .iter()
            .any(|(ns, l)| *ns == c2 && l.contains(&"own0".to_string())),
        "{before:?}"
    );
    let mut failures = Vec::new();
    for (what, args, words) in &cases {
        let o = lab.vsctl(args);
        let line = assert_vsctl_error(&o);
        let low = line.to_ascii_lowercase();
        if !words.iter().any(|w| low.contains(&w.to_ascii_lowercase())) {
            failures.push(format!(
                "{what}: the error should mention one of {words:?}: {line}"
            ));
        }
        // Give a TAP closed or a veth deleted a moment to vanish.
        thread::sleep(Duration::from_millis(50));
        let after = snap(&lab, &nss);
        if after != before {
            failures.push(format!(
                "{what} ({args:?}) was refused ({line}) but changed the state:\n\
                 --- before ---\n{:?}\n--- after ---\n{:?}",
                before.links, after.links
            ));
            if after.links != before.links {
                // Put c2's own interface back, so that later cases are judged alone.
                if !link_exists(&c2, "own0") {
                    let _ = run(&["ip", "-n", &c2, "link", "del", "own1"], common::SHORT);
                    sh(&[
                        "ip", "-n", &c2, "link", "add", "own0", "type", "veth", "peer", "name",
                        "own1",
                    ]);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad requests misbehaved:\n{}\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n"),
        lab.log_text()
    );
    // The daemon still attaches fine afterwards.
    attach(&lab, &[&c2, "--ip", &ip]);
    let p2 = port_of(&lab, &ns_path(&c2), "eth0", &c2, &ip).name;
    lab.wait_ports(BR, &[&p2], "up", Duration::from_secs(10));
    pings(&lab, &[(&c2, &addr(&lab, 61))], true);
}

// ---------------------------------------------------------------------------------------
// 7. Docker containers by name
// ---------------------------------------------------------------------------------------

/// A private `dockerd` ([`testlab::dockerd`]) in a namespace of the lab, with everything
/// under the lab's directory. Removes its containers and stops it when dropped (declare it
/// after the lab).
struct Docker {
    d: Dockerd,
}

impl Docker {
    fn start(lab: &mut Lab) -> Docker {
        let ns = lab.add_named_ns("dk");
        let dir = lab.dir.join("dk");
        fs::create_dir_all(&dir).unwrap();
        // In a private mount namespace of its own: its overlay mounts go with it.
        let d = Dockerd::start(&ns, &dir, true, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        Docker { d }
    }

    /// `docker ARGS…`, asserting success; returns stdout.
    fn docker(&self, args: &[&str]) -> String {
        self.d.docker_ok(args)
    }

    /// Imports an image holding Debian's static busybox as sh, sleep, ip and ping.
    fn import_busybox(&self, image: &str) {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or_else(|| panic!("busybox is missing: install busybox-static"));
        let root = self.d.dir.join("img");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for l in ["sh", "sleep", "ip", "ping"] {
            symlink("busybox", root.join("bin").join(l)).unwrap();
        }
        let tar = self.d.dir.join("img.tar");
        let (r, t) = (root.to_str().unwrap(), tar.to_str().unwrap());
        sh(&["tar", "-C", r, "-cf", t, "."]);
        self.docker(&["import", t, image]);
    }

    /// `docker run -d --network none --name NAME IMAGE sleep 300`; returns its PID.
    fn run(&mut self, name: &str, image: &str) -> u32 {
        self.docker(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            image,
            "sleep",
            "300",
        ]);
        self.docker(&["inspect", "-f", "{{.State.Pid}}", name])
            .parse()
            .unwrap()
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- dockerd (last 40 lines) ---\n{}", self.d.log_tail(40));
        }
    }
}

#[test]
fn docker_containers_are_found_by_name() {
    require_tools(&["dockerd", "docker", "unshare", "nsenter", "tar"]);
    let mut lab = attach_lab("atdoc", 126);
    let c1 = lab.add_named_ns("c1");
    attach(&lab, &[&c1, "--ip", &cidr(&lab, 71)]);
    let mut dk = Docker::start(&mut lab);
    let image = "vswitch-attach-busybox:test";
    dk.import_busybox(image);
    let name = format!("{}-web", lab.prefix);
    let pid = dk.run(&name, image);
    let idle = format!("{}-idle", lab.prefix);
    dk.docker(&[
        "create",
        "--network",
        "none",
        "--name",
        &idle,
        image,
        "sleep",
        "300",
    ]);

    let host = format!("DOCKER_HOST={}", dk.d.host);
    let vsctl = vsctl_bin();
    let vsctl_docker = |args: &[&str]| -> Out {
        let mut v = vec![
            "env",
            &host,
            vsctl.to_str().unwrap(),
            "--sock",
            lab.sock.to_str().unwrap(),
        ];
        v.extend_from_slice(args);
        run(&v, common::SHORT)
    };
    let ip = cidr(&lab, 72);
    let gw = addr(&lab, 1);
    let o = vsctl_docker(&[
        "attach",
        BR,
        &name,
        "--ip",
        &ip,
        "--gw",
        &gw,
        "--mac",
        "02:aa:00:00:07:72",
    ]);
    assert!(o.success(), "{o}\n{}", lab.log_text());
    let proc_ns = format!("/proc/{pid}/ns/net");
    let p = port_of(&lab, &proc_ns, "eth0", &name, &ip);
    lab.wait_ports(BR, &[&p.name], "up", Duration::from_secs(10));
    // Inside the container, seen by the host's ip and by the container's own busybox.
    let inside = sh(&["nsenter", &format!("--net={proc_ns}"), "ip", "-j", "addr"]);
    let v: Value = serde_json::from_str(&inside).unwrap();
    let eth0 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifname"] == "eth0")
        .unwrap_or_else(|| panic!("no eth0 in the container: {inside}"));
    assert_eq!(eth0["address"], "02:aa:00:00:07:72", "{inside}");
    let own = dk.docker(&["exec", &name, "ip", "addr", "show", "eth0"]);
    assert!(own.contains(&ip), "the container's ip sees no {ip}: {own}");
    pings(&lab, &[(&c1, &addr(&lab, 72))], true);
    let o =
        dk.d.docker(&["exec", &name, "ping", "-c", "2", "-W", "2", &addr(&lab, 71)]);
    assert!(
        o.success(),
        "the container cannot ping c1: {o}\n{}",
        lab.diag()
    );

    // A name Docker does not know; a container that does not run.
    let before = lab.vsctl_ok(&["--json", "show"]);
    let nosuch = format!("{}-nosuch", lab.prefix);
    let line = assert_vsctl_error(&vsctl_docker(&[
        "attach",
        BR,
        &nosuch,
        "--ip",
        &cidr(&lab, 73),
    ]));
    assert!(
        line.contains(&format!("no container named {nosuch}")),
        "{line}"
    );
    let line = assert_vsctl_error(&vsctl_docker(&[
        "attach",
        BR,
        &idle,
        "--ip",
        &cidr(&lab, 73),
    ]));
    assert!(line.contains("not running"), "{line}");
    assert_eq!(
        lab.vsctl_ok(&["--json", "show"]),
        before,
        "refused, yet changed"
    );

    // Detach by name too.
    let o = vsctl_docker(&["detach", BR, &name]);
    assert!(o.success(), "{o}");
    assert!(attached(&lab, BR, &proc_ns, "eth0").is_none());
    let inside = sh(&["nsenter", &format!("--net={proc_ns}"), "ip", "-j", "link"]);
    assert!(
        !inside.contains("\"eth0\""),
        "eth0 left in the container: {inside}"
    );
}
