//! What the overlay tests (plain VXLAN and encrypted tunnels) share: one vsctl interface
//! ([`Vs`]) for the lab's own daemon and the extra [`Switch`]es standing for other
//! hosts, its object-safe view ([`VsDyn`]) for lists of hosts of both kinds, and the
//! namespace plumbing of a host: `ip -n`, the container MTU, the underlay veth.

use std::collections::BTreeMap;
use std::time::Duration;

use ctl::{Data, FdbEntry, RemoteInfo, TunnelInfo, VtepStats};

use super::{sh, vsctl_at, wait_until, Lab, Out, Switch};

/// Underlay address of host A (the lab's own vswitchd).
pub const A_IP: &str = "198.51.100.1";
/// Underlay address of host B.
pub const B_IP: &str = "198.51.100.2";

/// A `vswitchd` a test talks to: the lab's own (host A) or an extra [`Switch`].
pub trait Vs {
    /// The name used in messages.
    fn who(&self) -> String;
    /// `vsctl --sock SOCK ARGS…`.
    fn vs(&self, args: &[&str]) -> Out;
    /// `vsctl show`, `stats` and the log, for failure messages.
    fn vs_diag(&self) -> String;

    /// vsctl that must succeed; returns stdout.
    fn vs_ok(&self, args: &[&str]) -> String {
        let o = self.vs(args);
        assert!(
            o.success(),
            "vsctl ({}) failed: {o}\n{}",
            self.who(),
            self.vs_diag()
        );
        o.stdout
    }

    /// `vsctl --json ARGS…`, parsed.
    fn vs_json(&self, args: &[&str]) -> Data {
        let mut v = vec!["--json"];
        v.extend_from_slice(args);
        let out = self.vs_ok(&v);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("vsctl --json {args:?} printed bad JSON ({e}):\n{out}"))
    }

    /// The daemon's public key from `show --json`.
    fn public_key(&self) -> String {
        match self.vs_json(&["show"]) {
            Data::Show {
                public_key: Some(k),
                ..
            } => k,
            other => panic!("{}: show has no public key: {other:?}", self.who()),
        }
    }

    /// Waits until ports `ports` of bridge `br` are all up.
    fn wait_ports_up(&self, br: &str, ports: &[&str]) {
        wait_until(
            &format!("{}: ports {ports:?} of {br} up", self.who()),
            Duration::from_secs(10),
            || match self.vs_json(&["show"]) {
                Data::Show { bridges, .. } => bridges.iter().any(|b| {
                    b.name == br
                        && ports
                            .iter()
                            .all(|p| b.ports.iter().any(|q| q.name == *p && q.state == "up"))
                }),
                _ => false,
            },
        );
    }

    /// The tunnel settings and remotes of port `port` of `br` (`show --json`).
    fn tunnel(&self, br: &str, port: &str) -> TunnelInfo {
        let Data::Show { bridges, .. } = self.vs_json(&["show"]) else {
            panic!("show --json returned something else");
        };
        let b = bridges
            .iter()
            .find(|b| b.name == br)
            .unwrap_or_else(|| panic!("{}: no bridge {br}: {bridges:#?}", self.who()));
        let p = b
            .ports
            .iter()
            .find(|p| p.name == port)
            .unwrap_or_else(|| panic!("{}: no port {port} on {br}: {bridges:#?}", self.who()));
        assert_eq!(
            p.kind,
            ctl::PortKind::Vxlan,
            "{}: port {port} is not of type vxlan: {p:#?}",
            self.who()
        );
        p.tunnel.clone().unwrap_or_else(|| {
            panic!(
                "{}: port {port} has no `tunnel` in show --json: {p:#?}",
                self.who()
            )
        })
    }

    /// The first tunnel of any bridge, for daemons that have just one.
    fn only_tunnel(&self) -> TunnelInfo {
        let Data::Show { bridges, .. } = self.vs_json(&["show"]) else {
            panic!("show")
        };
        bridges
            .iter()
            .flat_map(|b| b.ports.iter())
            .find_map(|p| p.tunnel.clone())
            .unwrap_or_else(|| panic!("{}: no tunnel\n{}", self.who(), self.vs_diag()))
    }

    /// The counters of remote `ip` of tunnel `port` on `br`.
    fn remote(&self, br: &str, port: &str, ip: &str) -> RemoteInfo {
        let t = self.tunnel(br, port);
        t.remotes
            .iter()
            .find(|r| r.ip == ip)
            .cloned()
            .unwrap_or_else(|| panic!("{}: tunnel {port} has no remote {ip}: {t:#?}", self.who()))
    }

    /// The first remote of [`Vs::only_tunnel`].
    fn only_remote(&self) -> RemoteInfo {
        self.only_tunnel().remotes.into_iter().next().unwrap()
    }

    /// The VTEPs of `stats --json`.
    fn vteps(&self) -> Vec<VtepStats> {
        match self.vs_json(&["stats"]) {
            Data::Stats { vteps, .. } => vteps,
            other => panic!("stats --json returned {other:?}"),
        }
    }

    /// Drops by reason summed over every VTEP on UDP port `dstport`, and their received
    /// datagrams.
    fn vtep_drops(&self, dstport: u16) -> (BTreeMap<String, u64>, u64) {
        let mut drops = BTreeMap::new();
        let mut rx = 0;
        for v in self.vteps().into_iter().filter(|v| v.dstport == dstport) {
            rx += v.rx_datagrams;
            for (k, n) in v.drops {
                *drops.entry(k).or_insert(0) += n;
            }
        }
        (drops, rx)
    }

    /// Drops by reason on the VTEPs of UDP port `dstport`.
    fn drops(&self, dstport: u16) -> BTreeMap<String, u64> {
        self.vtep_drops(dstport).0
    }

    /// Waits until the drop counter `reason` of UDP port `dstport` reaches `n`.
    fn wait_drops(&self, dstport: u16, reason: &str, n: u64) {
        wait_until(
            &format!("{}: {reason} to reach {n}", self.who()),
            Duration::from_secs(10),
            || self.drops(dstport).get(reason).copied().unwrap_or(0) >= n,
        );
    }

    /// The entries of `fdb-show --json BR`.
    fn fdb_entries(&self, br: &str) -> Vec<FdbEntry> {
        match self.vs_json(&["fdb-show", br]) {
            Data::Fdb { entries, .. } => entries,
            other => panic!("fdb-show --json returned {other:?}"),
        }
    }

    /// The FDB entry of `mac` on `br` (any VLAN), if any.
    fn fdb_entry(&self, br: &str, mac: &str) -> Option<FdbEntry> {
        self.fdb_entries(br)
            .into_iter()
            .find(|e| e.mac.eq_ignore_ascii_case(mac))
    }
}

impl Vs for Lab {
    fn who(&self) -> String {
        "host A".into()
    }
    fn vs(&self, args: &[&str]) -> Out {
        self.vsctl(args)
    }
    fn vs_diag(&self) -> String {
        self.diag()
    }
}

impl Vs for Switch {
    fn who(&self) -> String {
        format!("host {}", self.name)
    }
    fn vs(&self, args: &[&str]) -> Out {
        vsctl_at(&self.sock, args)
    }
    fn vs_diag(&self) -> String {
        self.diag()
    }
}

/// Object-safe view of [`Vs`] for lists of hosts of both kinds.
pub trait VsDyn {
    fn name(&self) -> String;
    fn entry(&self, br: &str, mac: &str) -> Option<FdbEntry>;
    fn remote_info(&self, br: &str, port: &str, ip: &str) -> RemoteInfo;
    /// [`Vs::vtep_drops`].
    fn drops_on(&self, dstport: u16) -> (BTreeMap<String, u64>, u64);
}

impl<T: Vs> VsDyn for T {
    fn name(&self) -> String {
        self.who()
    }
    fn entry(&self, br: &str, mac: &str) -> Option<FdbEntry> {
        self.fdb_entry(br, mac)
    }
    fn remote_info(&self, br: &str, port: &str, ip: &str) -> RemoteInfo {
        self.remote(br, port, ip)
    }
    fn drops_on(&self, dstport: u16) -> (BTreeMap<String, u64>, u64) {
        self.vtep_drops(dstport)
    }
}

/// `ip -n NS ARGS…`, asserting success.
pub fn ip(ns: &str, args: &[&str]) {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    sh(&v);
}

/// Gives container `n` (its `eth0` and the switch-side end `hNp` in `sw_ns`) the overlay
/// MTU `mtu`, as Docker's overlay driver does.
pub fn overlay_mtu(lab: &Lab, n: u8, sw_ns: &str, mtu: &str) {
    let h = lab.host(n).clone();
    ip(&h.ns, &["link", "set", "dev", "eth0", "mtu", mtu]);
    ip(sw_ns, &["link", "set", "dev", &h.port, "mtu", mtu]);
}

/// An underlay veth `ul0` from `ns_a` (address `a`) to `ns_b` (address `b`), MTU 1500.
pub fn underlay(lab: &Lab, ns_a: &str, a: &str, ns_b: &str, b: &str) {
    lab.veth_between(ns_a, "ul0", ns_b, "ul0");
    for (ns, addr) in [(ns_a, a), (ns_b, b)] {
        ip(ns, &["link", "set", "dev", "ul0", "mtu", "1500"]);
        ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", "ul0"]);
    }
}

/// Plain Linux as the far VTEP: in `ns`, a kernel vxlan device `vx0` (VNI `vni`, remote
/// `remote`, local `local`, UDP `dstport` over `ul0`) and the container port `port`
/// enslaved to a kernel bridge `kbr0`.
pub fn kernel_vtep(ns: &str, local: &str, remote: &str, port: &str, vni: u32, dstport: u16) {
    let vni = vni.to_string();
    let dstport = dstport.to_string();
    ip(
        ns,
        &[
            "link", "add", "vx0", "type", "vxlan", "id", &vni, "remote", remote, "local", local,
            "dstport", &dstport, "dev", "ul0",
        ],
    );
    ip(ns, &["link", "add", "kbr0", "type", "bridge"]);
    for dev in ["vx0", port] {
        ip(ns, &["link", "set", "dev", dev, "master", "kbr0"]);
        ip(ns, &["link", "set", "dev", dev, "up"]);
    }
    ip(ns, &["link", "set", "dev", "kbr0", "up"]);
}

/// Host A (the lab's own switch namespace, container h1) and plain-Linux host B
/// (namespace `hb`: a kernel vxlan device `vx0` with VNI `vni` on UDP `dstport` and a
/// kernel bridge, container h2), both containers with the overlay MTU `mtu`, joined by
/// the underlay. Returns B's namespace. Starts no daemon.
pub fn kernel_peer_hosts(lab: &mut Lab, mtu: &str, vni: u32, dstport: u16) -> String {
    let a = lab.sw.clone();
    let b = lab.add_named_ns("hb");
    assert_eq!(lab.add_host(), 1);
    assert_eq!(lab.add_host_on(&b), 2);
    overlay_mtu(lab, 1, &a, mtu);
    overlay_mtu(lab, 2, &b, mtu);
    underlay(lab, &a, A_IP, &b, B_IP);
    kernel_vtep(&b, B_IP, A_IP, "h2p", vni, dstport);
    b
}

/// The two-host set-up: host B (switch namespace `hb`) beside the lab's own host A,
/// container 1 on A and 2 on B, both with the overlay MTU `mtu`, and the underlay between
/// A (`A_IP`) and B (`B_IP`). Returns A's namespace and B. Starts no daemon.
pub fn two_hosts(lab: &mut Lab, mtu: &str) -> (String, Switch) {
    let a = lab.sw.clone();
    let b = lab.add_switch("hb");
    assert_eq!(lab.add_host(), 1);
    assert_eq!(lab.add_host_on(&b.ns), 2);
    overlay_mtu(lab, 1, &a, mtu);
    overlay_mtu(lab, 2, &b.ns, mtu);
    underlay(lab, &a, A_IP, &b.ns, B_IP);
    (a, b)
}
