//! Afxdp ports: hosts on AF_XDP ports, with their default offloads (partial checksums),
//! ping and carry TCP and UDP, to each other and to an afpacket host (whose TSO
//! super-frames the afxdp port cuts in software); the port
//! survives `kill -9` of the daemon (its XDP program went with the dead daemon); an
//! interface where XDP cannot attach falls back to afpacket and says so; an afxdp
//! container carries TCP both ways through a VXLAN tunnel to a kernel vxlan peer.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::overlay::{kernel_peer_hosts, B_IP};
use common::Lab;

/// The `io` shown for port `port` of bridge `br`.
fn io_of(lab: &Lab, br: &str, port: &str) -> Option<String> {
    lab.show()
        .iter()
        .find(|b| b.name == br)
        .and_then(|b| b.ports.iter().find(|p| p.name == port))
        .and_then(|p| p.io.clone())
}

/// AF_XDP sees a veth's frames before anything completes their checksums: host `n`
/// keeps the default, checksum offload on, so its TCP and UDP reach the port partial
/// and the switch must notice (OVS asks for `ethtool -K eth0 tx off` here instead).
fn assert_tx_csum_on(lab: &Lab, n: u8) {
    let ns = lab.host(n).ns.clone();
    let k = lab.exec_ok(&ns, &["ethtool", "-k", "eth0"]);
    assert!(
        k.lines().any(|l| l.trim() == "tx-checksumming: on"),
        "h{n}'s eth0 does not offload checksums by default:\n{k}"
    );
}

/// Segments and datagrams host `n`'s stack dropped for a bad TCP or UDP checksum.
fn csum_errors(lab: &Lab, n: u8) -> u64 {
    let snmp = testlab::snmp::read(&lab.host(n).ns).unwrap();
    ["Tcp", "Udp"]
        .iter()
        .map(|p| {
            testlab::snmp::counter(&snmp, p, "InCsumErrors")
                .unwrap_or_else(|| panic!("no {p} InCsumErrors in h{n}'s /proc/net/snmp:\n{snmp}"))
        })
        .sum()
}

/// Bits per second the receiver saw in an iperf3 report.
fn received_bps(r: &serde_json::Value) -> f64 {
    r["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .or_else(|| r["end"]["sum"]["bits_per_second"].as_f64())
        .unwrap_or(0.0)
}

#[test]
fn afxdp_hosts_ping_and_carry_tcp_and_udp() {
    common::require_tools(&["ethtool"]);
    let mut lab = Lab::new("afxdp", 220);
    for _ in 0..3 {
        lab.add_host();
    }
    for n in 1..=3 {
        assert_tx_csum_on(&lab, n);
    }
    lab.start_daemon();
    lab.vsctl_ok(&["add-br", "br0"]);
    lab.vsctl_ok(&["add-port", "br0", "h1p", "--type", "afxdp"]);
    lab.vsctl_ok(&["add-port", "br0", "h2p", "--type", "afxdp"]);
    lab.vsctl_ok(&["add-port", "br0", "h3p"]);
    lab.wait_ports("br0", &["h1p", "h2p", "h3p"], "up", Duration::from_secs(10));
    for p in ["h1p", "h2p"] {
        assert_eq!(
            io_of(&lab, "br0", p).as_deref(),
            Some("afxdp"),
            "{p} is not on AF_XDP:\n{}",
            lab.vsctl_ok(&["show"])
        );
    }
    assert_eq!(io_of(&lab, "br0", "h3p"), None);
    let text = lab.vsctl_ok(&["show"]);
    assert!(
        text.contains("port h1p (type afxdp) up, io afxdp"),
        "show does not say h1p is on AF_XDP:\n{text}"
    );

    lab.ping_all_pairs(&[1, 2, 3]);

    let tcp = lab.iperf3(1, 2, 2, &[]);
    let udp = lab.iperf3(2, 1, 2, &["-u", "-b", "200M"]);
    // From afpacket (TSO super-frames) to afxdp (cut here to the MTU) and back.
    let tso = lab.iperf3(3, 1, 2, &[]);
    let back = lab.iperf3(1, 3, 2, &[]);
    common::report(&format!(
        "afxdp TCP h1->h2 {:.2} Gbit/s, afpacket->afxdp {:.2}, afxdp->afpacket {:.2}",
        received_bps(&tcp) / 1e9,
        received_bps(&tso) / 1e9,
        received_bps(&back) / 1e9
    ));
    for (what, r) in [
        ("TCP afxdp->afxdp", &tcp),
        ("TCP afpacket->afxdp", &tso),
        ("TCP afxdp->afpacket", &back),
    ] {
        assert!(received_bps(r) > 1e6, "{what} carried nothing: {r}");
    }
    // Partial checksums from h1 and h2 were completed (afxdp → afxdp) or handed on as
    // partial (afxdp → afpacket); none arrived wrong.
    for n in 1..=3 {
        assert_eq!(
            csum_errors(&lab, n),
            0,
            "h{n} dropped frames with bad checksums"
        );
    }
    let lost = udp["end"]["sum"]["lost_percent"].as_f64().unwrap_or(100.0);
    let got = udp["end"]["sum"]["packets"].as_u64().unwrap_or(0);
    assert!(got > 1000, "UDP over afxdp carried {got} datagrams: {udp}");
    assert!(lost < 20.0, "UDP over afxdp lost {lost}%: {udp}");
    let st = lab.port_stats("br0", "h1p");
    eprintln!("h1p counters: {st:?}");

    // kill -9: the XDP program dies with the daemon's link, so the new daemon can
    // attach again and the port comes back as afxdp from the config file.
    let st = lab.signal_daemon(libc::SIGKILL, Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL),
        "vswitchd was to die of SIGKILL: {st}"
    );
    lab.start_daemon();
    lab.wait_ports("br0", &["h1p", "h2p", "h3p"], "up", Duration::from_secs(10));
    assert_eq!(io_of(&lab, "br0", "h1p").as_deref(), Some("afxdp"));
    lab.ping(1, 2);
    lab.ping(2, 3);
}

#[test]
fn afxdp_falls_back_to_afpacket_where_xdp_cannot_attach() {
    let mut lab = Lab::new("xdpfb", 221);
    lab.add_host();
    lab.add_host();
    // Native XDP on a veth refuses a peer MTU larger than a page takes.
    let (sw, h2) = (lab.sw.clone(), lab.host(2).ns.clone());
    lab.exec_ok(&sw, &["ip", "link", "set", "h2p", "mtu", "9000"]);
    lab.exec_ok(&h2, &["ip", "link", "set", "eth0", "mtu", "9000"]);
    lab.start_daemon();
    lab.vsctl_ok(&["add-br", "br0"]);
    lab.vsctl_ok(&["add-port", "br0", "h1p", "--type", "afxdp"]);
    lab.vsctl_ok(&["add-port", "br0", "h2p", "--type", "afxdp"]);
    lab.wait_ports("br0", &["h1p", "h2p"], "up", Duration::from_secs(10));
    assert_eq!(io_of(&lab, "br0", "h1p").as_deref(), Some("afxdp"));
    let io = io_of(&lab, "br0", "h2p").unwrap_or_default();
    assert!(
        io.starts_with("afpacket (afxdp fall-back: ") && io.contains("native"),
        "h2p did not fall back visibly: {io:?}\n{}",
        lab.vsctl_ok(&["show"])
    );
    let json = lab.vsctl_ok(&["show", "--json"]);
    assert!(
        json.contains("afxdp fall-back"),
        "--json lacks the fall-back: {json}"
    );
    // The type asked for is what is kept: a later restart tries AF_XDP again.
    let text = lab.vsctl_ok(&["show"]);
    assert!(
        text.contains("port h2p (type afxdp) up, io afpacket"),
        "{text}"
    );

    lab.ping(1, 2);
    lab.ping(2, 1);
    let tcp = lab.iperf3(2, 1, 2, &[]);
    assert!(
        received_bps(&tcp) > 1e6,
        "TCP from the fall-back port carried nothing: {tcp}"
    );

    // Refused outright, as for afpacket: an interface that does not exist.
    let o = lab.vsctl(&["add-port", "br0", "nosuch0", "--type", "afxdp"]);
    let err = common::assert_vsctl_error(&o);
    assert!(err.contains("nosuch0"), "{err}");
}

/// Deleting an afxdp port's veth takes the port down (noticed by interface index, as for
/// afpacket) while the other port stays up; a veth of the same name brings it back on
/// AF_XDP by itself.
#[test]
fn afxdp_port_goes_down_with_its_interface_and_comes_back() {
    let mut lab = Lab::new("xdpud", 222);
    lab.add_host();
    lab.add_host();
    lab.start_daemon();
    lab.vsctl_ok(&["add-br", "br0"]);
    lab.vsctl_ok(&["add-port", "br0", "h1p", "--type", "afxdp"]);
    lab.vsctl_ok(&["add-port", "br0", "h2p", "--type", "afxdp"]);
    lab.wait_ports("br0", &["h1p", "h2p"], "up", Duration::from_secs(10));
    lab.ping(1, 2);

    let sw = lab.sw.clone();
    common::sh(&["ip", "-n", &sw, "link", "del", "h2p"]);
    lab.wait_ports("br0", &["h2p"], "down", Duration::from_secs(10));
    lab.wait_ports("br0", &["h1p"], "up", Duration::from_secs(1));

    lab.plug_veth(2);
    lab.wait_ports("br0", &["h2p"], "up", Duration::from_secs(10));
    assert_eq!(io_of(&lab, "br0", "h2p").as_deref(), Some("afxdp"));
    // h2 first: the new veth has a new MAC, which h1 learns from h2's ARP.
    lab.ping(2, 1);
    lab.ping(1, 2);
    let tcp = lab.iperf3(2, 1, 1, &[]);
    assert!(
        received_bps(&tcp) > 1e6,
        "TCP over the new veth carried nothing: {tcp}"
    );
}

/// A container on an afxdp port, its default offloads on, reaches one behind a kernel
/// vxlan device: its partial checksums are completed in the VXLAN datagrams (the kernel
/// peer checks them), and the kernel's TCP super-packets coming back are cut to the
/// afxdp port's MTU. Nothing arrives with a bad checksum either way.
#[test]
fn afxdp_container_carries_tcp_through_a_tunnel_to_a_kernel_vxlan_peer() {
    common::require_tools(&["ethtool"]);
    let mut lab = Lab::new("xdpvx", 223);
    kernel_peer_hosts(&mut lab, "1450", 42, 4789);
    assert_tx_csum_on(&lab, 1);
    lab.start_daemon();
    lab.vsctl_ok(&["add-br", "br0"]);
    lab.vsctl_ok(&["add-port", "br0", "h1p", "--type", "afxdp"]);
    lab.vsctl_ok(&["add-tunnel", "br0", "vx", "--vni", "42", "--remote", B_IP]);
    lab.wait_ports("br0", &["h1p", "vx"], "up", Duration::from_secs(10));
    assert_eq!(
        io_of(&lab, "br0", "h1p").as_deref(),
        Some("afxdp"),
        "{}",
        lab.vsctl_ok(&["show"])
    );
    lab.ping(1, 2);
    lab.ping(2, 1);
    let out = lab.iperf3(1, 2, 2, &[]);
    let back = lab.iperf3(2, 1, 2, &[]);
    let udp = lab.iperf3(1, 2, 1, &["-u", "-b", "50M"]);
    common::report(&format!(
        "afxdp -> kernel vxlan TCP {:.2} Gbit/s, back {:.2}",
        received_bps(&out) / 1e9,
        received_bps(&back) / 1e9
    ));
    for (what, r) in [("afxdp -> tunnel", &out), ("tunnel -> afxdp", &back)] {
        assert!(received_bps(r) > 1e6, "TCP {what} carried nothing: {r}");
    }
    let got = udp["end"]["sum"]["packets"].as_u64().unwrap_or(0);
    let lost = udp["end"]["sum"]["lost_percent"].as_f64().unwrap_or(100.0);
    assert!(
        got > 1000,
        "UDP into the tunnel: {got} datagrams sent: {udp}"
    );
    assert!(lost < 20.0, "UDP into the tunnel lost {lost}%: {udp}");
    for n in [1, 2] {
        assert_eq!(
            csum_errors(&lab, n),
            0,
            "h{n} dropped frames with bad checksums"
        );
    }
}
