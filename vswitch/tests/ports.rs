//! Port kinds and port life: a TAP port the switch creates, and an afpacket port whose
//! interface disappears and comes back.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Lab;

/// `add-port --type tap` creates a TAP device; moved into a host namespace and addressed,
/// it pings the afpacket hosts and they ping it.
#[test]
fn tap_port_host_pings_afpacket_hosts() {
    let mut lab = Lab::new("tap", 21);
    lab.add_host();
    lab.add_host();
    let t = lab.add_bare_host("tap3");
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2]);
    lab.vsctl_ok(&["add-port", "br0", "tap3", "--type", "tap"]);
    lab.adopt_tap(t);

    let show = lab.show();
    let br = show.iter().find(|b| b.name == "br0").unwrap();
    let p = br.ports.iter().find(|p| p.name == "tap3");
    assert!(
        p.is_some_and(|p| p.kind == ctl::PortKind::Tap),
        "tap3 not listed as a tap port: {show:#?}"
    );
    let ports = lab.vsctl_ok(&["list-ports", "br0"]);
    assert!(
        ports.lines().any(|l| l.trim() == "tap3"),
        "list-ports lacks tap3:\n{ports}"
    );

    lab.ping_all_pairs(&[1, 2, t]);
    let fdb = lab.fdb("br0");
    let tmac = lab.host_mac(t);
    assert!(
        fdb.iter()
            .any(|e| e.mac.eq_ignore_ascii_case(&tmac) && e.port == "tap3"),
        "the TAP host's MAC {tmac} is not learned on tap3: {fdb:#?}"
    );
}

/// Deleting a host's veth turns its port down while the others keep switching; a veth of
/// the same name brings the port back up by itself.
#[test]
fn port_goes_down_with_its_interface_and_comes_back() {
    let mut lab = Lab::new("updown", 22);
    for _ in 0..3 {
        lab.add_host();
    }
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2, 3]);
    lab.ping_all_pairs(&[1, 2, 3]);

    let sw = lab.sw.clone();
    common::sh(&["ip", "-n", &sw, "link", "del", "h3p"]);
    lab.wait_ports("br0", &["h3p"], "down", Duration::from_secs(10));
    let show = lab.show();
    let p = show
        .iter()
        .find(|b| b.name == "br0")
        .and_then(|b| b.ports.iter().find(|p| p.name == "h3p"))
        .cloned();
    eprintln!("h3p after deleting its veth: {p:?}");
    // The other ports stay up and keep switching.
    lab.wait_ports("br0", &["h1p", "h2p"], "up", Duration::from_secs(1));
    lab.ping(1, 2);
    lab.ping(2, 1);

    // A new veth with the same name: the port comes back on its own.
    lab.plug_veth(3);
    lab.wait_ports("br0", &["h3p"], "up", Duration::from_secs(10));
    lab.ping(3, 1);
    lab.ping(1, 3);
    lab.ping(2, 3);
}
