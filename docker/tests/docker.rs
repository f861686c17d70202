//! Docker through `vswitch-docker`: a private `dockerd` whose network driver is the
//! plugin, on a private `vswitchd`, all in one namespace per test (see `common`).
//!
//! - containers on one network ping each other and fetch a page from busybox httpd;
//!   `-p 8080:80` is published through vswitchd's NAT and fetched from a namespace behind
//!   the uplink; `docker rm` revokes it; bad requests fail in one line naming vswitch and
//!   leave nothing behind;
//! - two networks are isolated; a container connected to both reaches both;
//! - vswitchd (killed) and the plugin restart, and containers still talk;
//! - a VLAN network on a trunk and a VXLAN overlay network reach hosts behind them.
//!
//! Every test ends by removing everything through Docker and checking that vswitchd and
//! the namespace hold nothing of it. Addresses: 172.30.0.0/16 for Docker networks,
//! 172.18.0.0/16 for the overlay's underlay, 198.51.100.0/24 for the uplink.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{sh, wait_until, DockerLab};
use ctl::{PortKind, Request};

const HTTPD: &[&str] = &["httpd", "-f", "-p", "80", "-h", "/www"];
const SLEEP: &[&str] = &["sleep", "3600"];
const PAGE: &str = "hello from vswitch";

/// The bridge vswitchd has for Docker network `id`.
fn bridge_of(id: &str) -> String {
    format!("dk-{}", &id[..12])
}

/// The one line of Docker's error output that names vswitch.
fn vswitch_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains("vswitch: "))
        .unwrap_or_else(|| panic!("no line names vswitch in: {stderr}"))
        .to_string()
}

#[test]
fn containers_talk_and_publish_ports() {
    let mut lab = DockerLab::start("pub");
    let wan = lab.add_uplink();
    let id = lab.network_create(
        "net1",
        &["--subnet", "172.30.0.0/24", "--gateway", "172.30.0.1"],
    );
    let (bridges, _) = lab.show();
    let b = bridges
        .iter()
        .find(|b| b.name == bridge_of(&id))
        .unwrap_or_else(|| panic!("no bridge for {id}:\n{}", lab.show_text()));
    let net = b.net.as_ref().expect("the bridge has a network");
    assert_eq!(
        (net.subnet.as_str(), net.gateway.as_str()),
        ("172.30.0.0/24", "172.30.0.1")
    );

    lab.run_container("web", &["--network", "net1", "-p", "8080:80"], HTTPD);
    lab.run_container("c2", &["--network", "net1"], SLEEP);
    let web = lab.ip_of("web", "net1");
    let c2 = lab.ip_of("c2", "net1");
    assert!(
        web.starts_with("172.30.0.") && c2.starts_with("172.30.0."),
        "{web} {c2}"
    );

    // The interface has Docker's address, the switch's gateway is the default route.
    let addr = lab
        .exec_in("c2", &["ip", "-4", "addr", "show", "eth0"])
        .ok();
    assert!(addr.contains(&format!("inet {c2}/24")), "{addr}");
    let route = lab.exec_in("c2", &["ip", "route"]).ok();
    assert!(route.contains("default via 172.30.0.1 dev eth0"), "{route}");
    // Ports carry the endpoint's identity.
    let (bridges, _) = lab.show();
    let ports = &bridges
        .iter()
        .find(|b| b.name == bridge_of(&id))
        .unwrap()
        .ports;
    assert_eq!(ports.len(), 2, "{}", lab.show_text());
    assert!(ports
        .iter()
        .any(|p| p.external_ids.get("docker.ip") == Some(&web)));

    lab.assert_ping("c2", &web);
    lab.assert_ping("web", &c2);
    lab.assert_ping("c2", "172.30.0.1");
    let page = lab.wget("c2", &format!("http://{web}/"));
    assert!(page.stdout.contains(PAGE), "{page}");

    // Published through vswitchd, fetched from behind the uplink.
    let (_, published) = lab.show();
    assert_eq!(published.len(), 1, "{}", lab.show_text());
    assert_eq!(published[0].host_port, 8080);
    assert_eq!(published[0].target, format!("{web}:80"));
    let got = lab.exec(
        &wan,
        &[
            "curl",
            "-s",
            "--max-time",
            "10",
            "http://198.51.100.2:8080/",
        ],
        Duration::from_secs(20),
    );
    assert!(got.stdout.contains(PAGE), "{got}\n{}", lab.show_text());

    // Errors: one line naming vswitch, nothing left behind.
    let o = lab.docker(&[
        "run",
        "-d",
        "--name",
        "nohost",
        "--network",
        "net1",
        "-p",
        "80",
        common::IMAGE,
        "sleep",
        "60",
    ]);
    assert!(!o.success());
    assert!(
        vswitch_line(&o.stderr).ends_with("vswitch: give a host port (-p HOSTPORT:PORT)"),
        "{o}"
    );
    let o = lab.docker(&[
        "run",
        "-d",
        "--name",
        "taken",
        "--network",
        "net1",
        "-p",
        "8080:80",
        common::IMAGE,
        "sleep",
        "60",
    ]);
    assert!(!o.success());
    assert!(vswitch_line(&o.stderr).contains("8080"), "{o}");
    // A port for one host address is not opened on the uplink for everyone.
    let o = lab.docker(&[
        "run",
        "-d",
        "--name",
        "local",
        "--network",
        "net1",
        "-p",
        "127.0.0.1:5432:80",
        common::IMAGE,
        "sleep",
        "60",
    ]);
    assert!(!o.success());
    assert!(
        vswitch_line(&o.stderr).contains(
            "vswitch: -p 127.0.0.1:5432: ports are published on the uplink's address only (198.51.100.2)"
        ),
        "{o}"
    );
    assert!(
        !lab.show_text().contains("5432"),
        "a refused -p left a published port:\n{}",
        lab.show_text()
    );
    let o = lab.docker(&[
        "network",
        "create",
        "-d",
        &lab.driver,
        "--subnet",
        "172.30.5.0/24",
        "-o",
        "vswitch.vlan=5000",
        "bad",
    ]);
    assert!(!o.success());
    assert!(
        vswitch_line(&o.stderr).ends_with("vswitch: VLAN 5000 is outside 1-4094"),
        "{o}"
    );
    let o = lab.docker(&[
        "network",
        "create",
        "-d",
        &lab.driver,
        "--subnet",
        "172.30.6.0/24",
        "-o",
        "vswitch.vni=7",
        "bad2",
    ]);
    assert!(!o.success());
    assert!(
        vswitch_line(&o.stderr).contains("vswitch: vswitch.vni needs vswitch.remotes"),
        "{o}"
    );
    let nets = lab.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.lines().any(|n| n.starts_with("bad")), "{nets}");
    let (bridges, published) = lab.show();
    assert_eq!(bridges.len(), 1, "{}", lab.show_text());
    assert_eq!(bridges[0].ports.len(), 2, "{}", lab.show_text());
    assert_eq!(published.len(), 1, "{}", lab.show_text());
    let vh = lab.links_named(&["vh"]);
    assert_eq!(vh.len(), 2, "{vh:?}");

    // docker rm revokes the published port and takes the port and the veth.
    lab.docker_ok(&["rm", "-f", "web"]);
    let (bridges, published) = lab.show();
    assert!(published.is_empty(), "{}", lab.show_text());
    assert_eq!(bridges[0].ports.len(), 1, "{}", lab.show_text());
    assert_eq!(lab.links_named(&["vh"]).len(), 1);
    let got = lab.exec(
        &wan,
        &["curl", "-s", "--max-time", "3", "http://198.51.100.2:8080/"],
        Duration::from_secs(10),
    );
    assert!(!got.success(), "still published: {got}");

    lab.remove_everything();
}

#[test]
fn networks_are_isolated_and_a_container_on_both_reaches_both() {
    let lab = DockerLab::start("iso");
    lab.network_create(
        "net1",
        &["--subnet", "172.30.1.0/24", "--gateway", "172.30.1.1"],
    );
    lab.network_create(
        "net2",
        &["--subnet", "172.30.2.0/24", "--gateway", "172.30.2.1"],
    );
    lab.run_container("ca", &["--network", "net1"], SLEEP);
    lab.run_container("cb", &["--network", "net2"], HTTPD);
    let a = lab.ip_of("ca", "net1");
    let b = lab.ip_of("cb", "net2");
    lab.assert_ping("ca", "172.30.1.1");
    lab.assert_ping("cb", "172.30.2.1");
    lab.assert_no_ping("ca", &b);
    lab.assert_no_ping("cb", &a);
    let o = lab.wget("ca", &format!("http://{b}/"));
    assert!(!o.stdout.contains(PAGE), "net1 fetched from net2: {o}");

    // c on net1, then connected to net2 as well.
    lab.run_container("cc", &["--network", "net1"], SLEEP);
    lab.docker_ok(&["network", "connect", "net2", "cc"]);
    let c2 = lab.ip_of("cc", "net2");
    assert!(c2.starts_with("172.30.2."), "{c2}");
    let addrs = lab.exec_in("cc", &["ip", "-4", "-o", "addr"]).ok();
    assert!(addrs.contains("eth0") && addrs.contains("eth1"), "{addrs}");
    lab.assert_ping("cc", &a);
    lab.assert_ping("cc", &b);
    let o = lab.wget("cc", &format!("http://{b}/"));
    assert!(o.stdout.contains(PAGE), "{o}");
    // …and that does not join the two networks.
    lab.assert_no_ping("ca", &b);

    lab.docker_ok(&["network", "disconnect", "net2", "cc"]);
    lab.assert_no_ping("cc", &b);
    lab.remove_everything();
}

#[test]
fn containers_keep_talking_across_restarts() {
    let mut lab = DockerLab::start("rst");
    lab.network_create(
        "net1",
        &["--subnet", "172.30.3.0/24", "--gateway", "172.30.3.1"],
    );
    lab.run_container("ca", &["--network", "net1"], SLEEP);
    lab.run_container("cb", &["--network", "net1"], HTTPD);
    let b = lab.ip_of("cb", "net1");
    lab.assert_ping("ca", &b);

    // vswitchd killed and started again: its config brings the bridge and ports back.
    lab.kill_vswitchd();
    lab.start_vswitchd();
    wait_until(
        "a to reach b after the restart",
        Duration::from_secs(30),
        || lab.pings("ca", &b),
    );
    let o = lab.wget("ca", &format!("http://{b}/"));
    assert!(o.stdout.contains(PAGE), "{o}");

    // The plugin restarted keeps nothing and needs nothing: new containers, removal.
    lab.stop_plugin();
    assert!(!lab.plugin_sock.exists(), "the plugin left its socket");
    lab.start_plugin();
    lab.run_container("cc", &["--network", "net1"], SLEEP);
    lab.assert_ping("cc", &b);
    lab.remove_everything();
}

#[test]
fn vlan_and_overlay_networks() {
    let mut lab = DockerLab::start("vlo");
    let ns = lab.ns.clone();
    // The trunk: trk0 (Docker's VLAN networks) to trk1, a trunk port of a plain vswitchd
    // bridge `far` with an access port per VLAN to hosts h10 and h20.
    sh(&[
        "ip", "-n", &ns, "link", "add", "trk0", "type", "veth", "peer", "name", "trk1",
    ]);
    for l in ["trk0", "trk1"] {
        sh(&["ip", "-n", &ns, "link", "set", l, "up"]);
    }
    let sock = lab.sock.clone();
    let call = |r: Request| ctl::call(&sock, &r).unwrap_or_else(|e| panic!("{r:?}: {e}"));
    call(Request::AddBr {
        bridge: "far".into(),
    });
    call(Request::AddPort {
        bridge: "far".into(),
        iface: "trk1".into(),
        kind: PortKind::Afpacket,
        external_ids: Default::default(),
    });
    call(Request::AddVlan {
        bridge: "far".into(),
        port: "trk1".into(),
        vids: vec![10, 20],
        untagged: false,
        pvid: false,
        access: false,
    });
    for vid in [10u16, 20] {
        let h = format!("{}-h{vid}", lab.prefix);
        lab.add_ns(&h);
        let port = format!("f{vid}");
        sh(&[
            "ip", "-n", &ns, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &h,
        ]);
        sh(&["ip", "-n", &ns, "link", "set", &port, "up"]);
        sh(&[
            "ip",
            "-n",
            &h,
            "addr",
            "add",
            &format!("172.30.{vid}.9/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &h, "link", "set", "eth0", "up"]);
        call(Request::AddPort {
            bridge: "far".into(),
            iface: port.clone(),
            kind: PortKind::Afpacket,
            external_ids: Default::default(),
        });
        call(Request::AddVlan {
            bridge: "far".into(),
            port,
            vids: vec![vid],
            untagged: false,
            pvid: false,
            access: true,
        });
    }
    let v10 = lab.network_create(
        "v10",
        &[
            "--subnet",
            "172.30.10.0/24",
            "-o",
            "vswitch.vlan=10",
            "-o",
            "vswitch.trunk=trk0",
        ],
    );
    lab.network_create(
        "v20",
        &[
            "--subnet",
            "172.30.20.0/24",
            "-o",
            "vswitch.vlan=20",
            "-o",
            "vswitch.trunk=trk0",
        ],
    );
    // The same VLAN again on that trunk: refused, nothing made.
    let o = lab.docker(&[
        "network",
        "create",
        "-d",
        &lab.driver,
        "--subnet",
        "172.30.11.0/24",
        "-o",
        "vswitch.vlan=10",
        "-o",
        "vswitch.trunk=trk0",
        "again",
    ]);
    assert!(!o.success());
    assert!(
        vswitch_line(&o.stderr).contains("vswitch: VLAN 10 on trk0 is already Docker network"),
        "{o}"
    );
    let (bridges, _) = lab.show();
    let trunk = bridges
        .iter()
        .find(|b| b.name == "dk-trunk-trk0")
        .expect("trunk bridge");
    let t = trunk
        .ports
        .iter()
        .find(|p| p.name == "trk0")
        .expect("trunk port");
    assert_eq!(
        t.vlans.as_ref().unwrap().tagged,
        [10, 20],
        "{}",
        lab.show_text()
    );
    assert!(bridges.iter().any(|b| b.name == bridge_of(&v10)));

    lab.run_container("x10", &["--network", "v10"], SLEEP);
    lab.run_container("x20", &["--network", "v20"], SLEEP);
    lab.assert_ping("x10", "172.30.10.9");
    lab.assert_ping("x20", "172.30.20.9");
    lab.assert_no_ping("x10", "172.30.20.9");
    lab.assert_no_ping("x20", "172.30.10.9");

    // The overlay: a kernel VXLAN device in namespace `vtep` (172.18.0.2) is the remote.
    let vtep = format!("{}-vtep", lab.prefix);
    lab.add_ns(&vtep);
    sh(&[
        "ip", "-n", &ns, "link", "add", "ul0", "type", "veth", "peer", "name", "eth0", "netns",
        &vtep,
    ]);
    sh(&[
        "ip",
        "-n",
        &ns,
        "addr",
        "add",
        "172.18.0.1/24",
        "dev",
        "ul0",
    ]);
    sh(&["ip", "-n", &ns, "link", "set", "ul0", "up"]);
    sh(&[
        "ip",
        "-n",
        &vtep,
        "addr",
        "add",
        "172.18.0.2/24",
        "dev",
        "eth0",
    ]);
    sh(&["ip", "-n", &vtep, "link", "set", "eth0", "up"]);
    sh(&[
        "ip",
        "-n",
        &vtep,
        "link",
        "add",
        "vx42",
        "type",
        "vxlan",
        "id",
        "42",
        "remote",
        "172.18.0.1",
        "local",
        "172.18.0.2",
        "dstport",
        "4789",
        "dev",
        "eth0",
    ]);
    sh(&[
        "ip", "-n", &vtep, "link", "set", "vx42", "mtu", "1450", "up",
    ]);
    sh(&[
        "ip",
        "-n",
        &vtep,
        "addr",
        "add",
        "172.30.30.9/24",
        "dev",
        "vx42",
    ]);
    lab.network_create(
        "ov",
        &[
            "--subnet",
            "172.30.30.0/24",
            "-o",
            "vswitch.vni=42",
            "-o",
            "vswitch.remotes=172.18.0.2",
        ],
    );
    lab.run_container("cy", &["--network", "ov"], SLEEP);
    let mtu = lab.exec_in("cy", &["cat", "/sys/class/net/eth0/mtu"]).ok();
    assert_eq!(mtu.trim(), "1450");
    lab.assert_ping("cy", "172.30.30.9");
    lab.assert_no_ping("cy", "172.30.10.9");

    lab.remove_everything();
    // The trunk bridge went with the last VLAN network; `far` is the test's own.
    let (bridges, _) = lab.show();
    let names: Vec<&str> = bridges.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["far"]);
}
