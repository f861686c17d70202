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

/// An afpacket port's receive ring starts small (an idle port keeps little memory) and
/// grows the first time frames pile up in it, without losing the port: echo requests sent
/// at once while the daemon is stopped overflow the small ring (V2: 128 slots, V3: two
/// blocks; counted as `rx_ring` drops) and start the grow; after it, the same burst all
/// waits in the ring.
#[test]
fn afpacket_ring_starts_small_and_grows_under_load() {
    ring_grows("ringv2", 23, "v2", 400);
}

/// The same with the TPACKET_V3 ring, whose blocks the kernel fills and hands over whole.
#[test]
fn afpacket_v3_ring_starts_small_and_grows_under_load() {
    ring_grows("ringv3", 24, "v3", 3000);
}

/// `burst`: echo requests sent at once, more than the small ring holds.
fn ring_grows(tag: &str, id: u8, ring: &str, burst: u64) {
    let mut lab = Lab::new(tag, id);
    lab.add_host();
    lab.add_host();
    lab.daemon_args = vec!["--rx-ring".into(), ring.into()];
    lab.start_daemon();
    lab.bridge_with_hosts("br0", &[1, 2]);
    lab.ping_all_pairs(&[1, 2]);
    assert!(
        !lab.log_text().contains("receive ring grown"),
        "a ring grew from a few pings:\n{}",
        lab.log_text()
    );

    let pid = lab.daemon_pid().to_string();
    let h2 = lab.ip(2);
    let h1ns = lab.host(1).ns.clone();
    // `burst` echo requests sent at once (preload: V3 then fills blocks rather than
    // retiring one per frame on its timer) while the daemon is stopped; then h1p's (rx,
    // rx_ring drops) deltas, read after the once-a-second poll of the kernel's drop count.
    let n = burst.to_string();
    let stopped_burst = |lab: &mut Lab, name: &str| -> (u64, u64) {
        let before = lab.port_stats("br0", "h1p");
        common::sh(&["kill", "-STOP", &pid]);
        let out = lab.exec(
            &h1ns,
            &["ping", "-n", "-q", "-c", &n, "-l", &n, "-w", "1", &h2],
        );
        common::sh(&["kill", "-CONT", &pid]);
        eprintln!("{name}: {}", out.stdout.trim());
        std::thread::sleep(Duration::from_millis(2500));
        let after = lab.port_stats("br0", "h1p");
        let ring = |p: &ctl::PortStats| p.drops.get("rx_ring").copied().unwrap_or(0);
        (
            after.rx_packets - before.rx_packets,
            ring(&after) - ring(&before),
        )
    };
    let (rx, dropped) = stopped_burst(&mut lab, "burst into the small ring");
    assert!(
        dropped > 0,
        "{burst} requests into a small ring: {rx} read, none dropped as ring full"
    );
    // The big ring is made on the side and taken at the next frame: keep frames coming.
    common::wait_until("a receive ring to grow", Duration::from_secs(10), || {
        lab.ping_out(1, &h2, 1, "0.2", 2);
        lab.log_text().contains("receive ring grown")
    });
    lab.wait_ports("br0", &["h1p", "h2p"], "up", Duration::from_secs(1));
    lab.ping_all_pairs(&[1, 2]);
    let (rx, dropped) = stopped_burst(&mut lab, "burst into the grown ring");
    // Some requests may die in h1's own stack under such a burst; none in our ring.
    assert!(
        dropped == 0 && rx >= burst * 9 / 10,
        "{burst} requests into the grown ring: {rx} read, {dropped} dropped as ring full\n{}",
        lab.log_text()
    );
}
