//! `vswitch-cni` driven as a runtime drives it, with real configurations, Debian's
//! host-local IPAM plugin and a private vswitchd in a namespace of its own:
//!
//! - ADD plugs two containers in (addresses from host-local, the switch's gateway as
//!   default route), they ping each other and the gateway; the result is the spec's;
//!   CHECK passes, and fails for what is not there; `portMappings` become published
//!   ports, fetched from behind the uplink; DEL removes all of it and is idempotent,
//!   also once the namespace is gone;
//! - a VLAN network makes access ports: the same VLAN talks, another does not;
//! - bad configurations and environments get CNI error objects with the spec's codes,
//!   and a failure after the address was leased leaves neither port nor lease.
//!
//! Addresses: 10.77.0.0/16 inside the containers, 198.51.100.0/24 for the uplink.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{wait_until, CniLab};
use ctl::Data;
use serde_json::{json, Value};
use testlab::{netns, Bg, Output};

const PAGE: &str = "hello from a CNI container";

/// The ports of `bridge` (empty if there is no such bridge).
fn ports(lab: &CniLab, bridge: &str) -> Vec<ctl::PortInfo> {
    lab.vswitchd
        .show()
        .into_iter()
        .find(|b| b.name == bridge)
        .map(|b| b.ports)
        .unwrap_or_default()
}

fn published(lab: &CniLab) -> Vec<ctl::PublishedInfo> {
    match lab.vswitchd.vsctl_json(&["list-published"]) {
        Data::Published { published } => published,
        other => panic!("list-published returned {other:?}"),
    }
}

#[test]
fn add_check_publish_and_del() {
    let mut lab = CniLab::start("add");
    let c1 = lab.add_ns("c1");
    let c2 = lab.add_ns("c2");
    let wan = lab.add_ns("wan");
    // The uplink: published ports are reached on the switch's address there.
    netns::veth_up(&lab.ns, "up0", &wan, "eth0").unwrap();
    netns::addr_add(&wan, "eth0", "198.51.100.1/24").unwrap();
    lab.vswitchd
        .vsctl_ok(&["set-uplink", "up0", "--ip", "198.51.100.2/24"]);

    let plain = lab.conf("net1", "cnibr", "10.77.0.0/24", json!({}));
    let with_port = lab.conf(
        "net1",
        "cnibr",
        "10.77.0.0/24",
        json!({"runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
        ]}}),
    );
    let r1 = lab.add("ctr-one", &c1, &with_port);
    let r2 = lab.add("ctr-two", &c2, &plain);

    // The result: the spec's shape, in the config's version.
    assert_eq!(r1["cniVersion"], "1.0.0", "{r1}");
    let ip1 = r1["ips"][0]["address"].as_str().unwrap().to_string();
    let ip2 = r2["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(ip1.starts_with("10.77.0.") && ip1.ends_with("/24"), "{r1}");
    assert_ne!(ip1, ip2);
    assert_eq!(r1["ips"][0]["gateway"], "10.77.0.1", "{r1}");
    assert_eq!(r1["ips"][0]["interface"], 1, "{r1}");
    assert_eq!(r1["interfaces"][1]["name"], "eth0");
    assert_eq!(r1["interfaces"][1]["sandbox"], CniLab::netns_path(&c1));
    let mac = r1["interfaces"][1]["mac"].as_str().unwrap();
    assert_eq!(netns::mac(&c1, "eth0").unwrap(), mac);
    let host = r1["interfaces"][0]["name"].as_str().unwrap().to_string();
    let p = ports(&lab, "cnibr");
    assert!(
        p.iter().any(|p| p.name == host
            && p.attach
                .as_ref()
                .is_some_and(|a| a.container == "ctr-one" && a.ip == ip1)),
        "{p:#?}"
    );
    assert_eq!(lab.leases("net1").len(), 2);

    // The switch's gateway is the default route; the containers reach each other.
    lab.vswitchd
        .wait_ports_up("cnibr", &[&host], Duration::from_secs(10));
    let route = lab.exec(&c1, &["ip", "route"]).ok();
    assert!(route.contains("default via 10.77.0.1 dev eth0"), "{route}");
    let bare = |ip: &str| ip.split('/').next().unwrap().to_string();
    assert!(lab.pings(&c1, &bare(&ip2)), "c1 cannot ping c2");
    assert!(lab.pings(&c2, "10.77.0.1"), "c2 cannot ping the gateway");

    // CHECK with the result as prevResult passes; for a container never added, fails.
    let mut check = with_port.clone();
    check["prevResult"] = r1.clone();
    let c = lab.cni("CHECK", "ctr-one", Some(&c1), &check);
    assert!(c.ok, "{}", c.out);
    let c = lab.cni("CHECK", "ctr-none", Some(&c1), &check);
    assert!(c.code() > 0 && c.msg().contains("ctr-none"), "{}", c.out);
    // ADD again for the same container and interface is refused.
    let again = lab.cni("ADD", "ctr-one", Some(&c1), &with_port);
    assert_eq!(again.code(), 7, "{}", again.out);

    // The published port: Docker's -p 8080:80, fetched from behind the uplink.
    let pubs = published(&lab);
    assert_eq!(pubs.len(), 1, "{pubs:?}");
    assert_eq!(pubs[0].target, format!("{}:80", bare(&ip1)));
    let www = lab.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), format!("{PAGE}\n")).unwrap();
    let www = www.to_str().unwrap();
    let _httpd = Bg::start(
        "httpd",
        &netns::exec_argv(&c1, &["busybox", "httpd", "-f", "-p", "80", "-h", www]),
        Output::log(&lab.dir.join("httpd.log")),
        &Default::default(),
    )
    .unwrap();
    wait_until("httpd listens in c1", Duration::from_secs(10), || {
        testlab::traffic::listening(&c1, 80).unwrap_or(false)
    });
    let page = lab
        .exec(
            &wan,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "http://198.51.100.2:8080/",
            ],
        )
        .ok();
    assert_eq!(page.trim(), PAGE);

    // DEL removes the port, the published port and the lease; twice is fine.
    for _ in 0..2 {
        let d = lab.cni("DEL", "ctr-one", Some(&c1), &with_port);
        assert!(d.ok && d.json.is_null(), "{}", d.out);
    }
    assert!(published(&lab).is_empty());
    assert!(!ports(&lab, "cnibr").iter().any(|p| p.name == host));
    assert!(!netns::link_exists(&lab.ns, &host).unwrap());
    assert!(!netns::link_exists(&c1, "eth0").unwrap());
    assert_eq!(lab.leases("net1"), vec![bare(&ip2)]);
    // DEL of a container whose namespace is already gone, and without CNI_NETNS.
    netns::ip(&["netns", "del", &c2]).unwrap();
    let d = lab.cni("DEL", "ctr-two", None, &plain);
    assert!(d.ok, "{}", d.out);
    assert!(
        ports(&lab, "cnibr").is_empty(),
        "{:#?}",
        ports(&lab, "cnibr")
    );
    assert!(lab.leases("net1").is_empty());
    // The container never existed: DEL still succeeds.
    assert!(lab.cni("DEL", "ctr-ghost", None, &plain).ok);
}

#[test]
fn vlan_networks_are_access_ports() {
    let mut lab = CniLab::start("vlan");
    let (a, b, c) = (lab.add_ns("a"), lab.add_ns("b"), lab.add_ns("c"));
    // One subnet and lease store for both VLANs (so no address repeats), two VLANs.
    let v10 = lab.conf(
        "vnet",
        "vlbr",
        "10.77.1.0/24",
        json!({"vlan": 10, "mtu": 1400}),
    );
    let v20 = lab.conf("vnet", "vlbr", "10.77.1.0/24", json!({"vlan": 20}));
    let ra = lab.add("ctr-a", &a, &v10);
    let rb = lab.add("ctr-b", &b, &v10);
    let rc = lab.add("ctr-c", &c, &v20);
    let ip = |r: &Value| {
        r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    let vlans = lab.vswitchd.list_vlans("vlbr");
    for (r, vid) in [(&ra, 10), (&rb, 10), (&rc, 20)] {
        let host = r["interfaces"][0]["name"].as_str().unwrap();
        let row = vlans
            .iter()
            .find(|v| v.port == host)
            .unwrap_or_else(|| panic!("{host} not in {vlans:?}"));
        assert_eq!(
            (row.vlans.pvid, row.vlans.untagged.clone()),
            (Some(vid), vec![vid]),
            "{row:?}"
        );
    }
    let mtu = lab.exec(&a, &["ip", "link", "show", "eth0"]).ok();
    assert!(mtu.contains("mtu 1400"), "{mtu}");
    assert!(lab.pings(&a, &ip(&rb)), "same VLAN: a cannot ping b");
    assert!(!lab.pings(&a, &ip(&rc)), "VLAN 10 reached VLAN 20");
    let mut check = v10.clone();
    check["prevResult"] = ra.clone();
    assert!(lab.cni("CHECK", "ctr-a", Some(&a), &check).ok);
    // CHECK notices a port that is not in the configured VLAN.
    let mut wrong = v20.clone();
    wrong["prevResult"] = ra.clone();
    let w = lab.cni("CHECK", "ctr-a", Some(&a), &wrong);
    assert!(w.code() > 0 && w.msg().contains("VLAN 20"), "{}", w.out);
    for (id, ns, conf) in [
        ("ctr-a", &a, &v10),
        ("ctr-b", &b, &v10),
        ("ctr-c", &c, &v20),
    ] {
        assert!(lab.cni("DEL", id, Some(ns), conf).ok);
    }
    assert!(ports(&lab, "vlbr").is_empty());
}

#[test]
fn bad_configs_are_cni_errors() {
    let mut lab = CniLab::start("bad");
    let c1 = lab.add_ns("c1");
    let good = lab.conf("badnet", "badbr", "10.77.2.0/24", json!({}));
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let add = |conf: &Value| lab.cni("ADD", "ctr-bad", Some(&c1), conf);

    // Decoding, versions, fields.
    let c = lab.plugin(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "x"),
            ("CNI_NETNS", &CniLab::netns_path(&c1)),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", common::CNI_PATH),
        ],
        "{\"cniVersion\": \"1.0.0\", ",
    );
    assert_eq!(c.code(), 6, "{}", c.out);
    let c = add(&with(json!({"cniVersion": "2.0.0"})));
    assert_eq!(c.code(), 1, "{}", c.out);
    assert!(c.msg().contains("not supported"), "{}", c.out);
    for (patch, words) in [
        (json!({"bridge": null}), "\"bridge\" is missing"),
        (json!({"bridge": "a bridge"}), "\"bridge\""),
        (json!({"vlan": 5000}), "\"vlan\""),
        (json!({"mtu": 20}), "\"mtu\""),
        (json!({"ipam": null}), "\"ipam\""),
        (
            json!({"ipam": {"type": "no-such-ipam"}}),
            "not found in CNI_PATH",
        ),
        (json!({"type": "bridge"}), "\"type\""),
        (
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "sctp"}]}}),
            "sctp",
        ),
    ] {
        let c = add(&with(patch.clone()));
        assert_eq!(c.code(), 7, "{patch}: {}", c.out);
        assert!(c.msg().contains(words), "{patch}: {}", c.out);
        assert_eq!(c.json["cniVersion"], "1.0.0");
    }
    // A cluster network needs a vswitchd in cluster mode.
    let c = add(&with(json!({"overlay": "blue", "ipam": null})));
    assert_eq!(c.code(), 2, "{}", c.out);
    assert!(c.msg().contains("cluster mode"), "{}", c.out);
    // The environment, the namespace, the daemon.
    let c = lab.plugin(&[("CNI_COMMAND", "ADD")], &good.to_string());
    assert_eq!(c.code(), 4, "{}", c.out);
    let c = lab.plugin(&[], &good.to_string());
    assert_eq!(c.code(), 4, "{}", c.out);
    let gone = format!("{}-nothere", lab.prefix);
    let c = lab.cni("ADD", "ctr-bad", Some(&gone), &good);
    assert_eq!(c.code(), 3, "{}", c.out);
    let dead = with(json!({"socket": lab.dir.join("no.sock")}));
    let c = add(&dead);
    assert_eq!(c.code(), 11, "{}", c.out);
    // STATUS (1.1) says whether the daemon answers.
    let mut s = good.clone();
    s["cniVersion"] = json!("1.1.0");
    assert!(lab.plugin(&[("CNI_COMMAND", "STATUS")], &s.to_string()).ok);
    let mut s = dead.clone();
    s["cniVersion"] = json!("1.1.0");
    assert_eq!(
        lab.plugin(&[("CNI_COMMAND", "STATUS")], &s.to_string())
            .code(),
        50
    );
    let v = lab.plugin(&[("CNI_COMMAND", "VERSION")], "");
    assert!(v.ok, "{}", v.out);
    assert!(v.json["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("1.0.0")));

    // A network whose gateway is not the bridge's own is refused, and leaves nothing.
    let other = lab.conf("othernet", "badbr", "10.77.9.0/24", json!({}));
    lab.vswitchd.vsctl_ok(&["add-br", "badbr"]);
    lab.vswitchd
        .vsctl_ok(&["add-net", "badbr", "10.77.2.0/24", "--gateway", "10.77.2.1"]);
    let c = add(&other);
    assert_eq!(c.code(), 7, "{}", c.out);
    assert!(
        c.msg()
            .contains("has network 10.77.2.0/24 with gateway 10.77.2.1"),
        "{}",
        c.out
    );
    assert!(lab.leases("othernet").is_empty());
    assert!(ports(&lab, "badbr").is_empty());

    // A failure after host-local leased an address (the host port is taken): neither
    // the port nor the lease nor a published port of ours stays.
    lab.vswitchd
        .vsctl_ok(&["publish", "tcp", "8080", "10.77.2.200:80"]);
    let c = add(&with(json!({"runtimeConfig": {"portMappings": [
        {"hostPort": 8081, "containerPort": 80},
        {"hostPort": 8080, "containerPort": 80}
    ]}})));
    assert_eq!(c.code(), 100, "{}", c.out);
    assert!(c.msg().starts_with("vswitchd: "), "{}", c.out);
    assert!(
        ports(&lab, "badbr").is_empty(),
        "{:#?}",
        ports(&lab, "badbr")
    );
    assert!(
        lab.leases("badnet").is_empty(),
        "{:?}",
        lab.leases("badnet")
    );
    let p = published(&lab);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].target, "10.77.2.200:80");
    assert!(!netns::link_exists(&c1, "eth0").unwrap());
}

#[test]
fn gc_detaches_what_no_runtime_knows() {
    let mut lab = CniLab::start("gc");
    let (a, b, c) = (lab.add_ns("a"), lab.add_ns("b"), lab.add_ns("c"));
    // Debian's host-local (1.1.1) speaks up to 1.0.0: the containers are added so, and
    // GC, a verb of 1.1.0, comes in that version.
    let mut conf = lab.conf("gcnet", "gcbr", "10.77.3.0/24", json!({}));
    lab.add("ctr-a", &a, &conf);
    lab.add("ctr-b", &b, &conf);
    lab.add("ctr-c", &c, &conf);
    conf["cniVersion"] = json!("1.1.0");
    // b's namespace is gone and no runtime lists it; c's is gone but still listed; a
    // is alive and not listed (made by hand, say): only b goes.
    netns::ip(&["netns", "del", &b]).unwrap();
    netns::ip(&["netns", "del", &c]).unwrap();
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-c", "ifname": "eth0"}]);
    let g = lab.plugin(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", common::CNI_PATH)],
        &conf.to_string(),
    );
    assert!(g.ok, "{}", g.out);
    let left: Vec<String> = ports(&lab, "gcbr")
        .into_iter()
        .filter_map(|p| p.attach.map(|a| a.container))
        .collect();
    assert_eq!(left, vec!["ctr-a".to_string(), "ctr-c".to_string()]);
}
