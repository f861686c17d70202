//! Links, their ends, the ports they make and the names those ports get.

use ctl::PortKind;

use super::{assert_err_contains, assert_err_starts, errs, resolved, BASE};
use crate::plan::{Link, Vlans};

#[test]
fn a_good_file_resolves_with_defaults() {
    let p = resolved(BASE);
    assert_eq!(p.name, "t");
    assert_eq!(p.links.len(), 2);
    match &p.links[1] {
        Link::HostSwitch { host, port, .. } => {
            assert_eq!(host.iface, "eth0");
            assert_eq!(port.name, "h2-eth0");
            assert_eq!(port.kind, PortKind::Afpacket);
        }
        l => panic!("{l:?}"),
    }
    assert_eq!(p.namespaces(), vec!["h1", "h2", "sw1"]);
}

#[test]
fn unknown_node_in_a_link_has_its_line() {
    assert_err_starts(
        &BASE.replace("[h2, sw1]", "[h3, sw1]"),
        "t.yaml:11: unknown node `h3`",
    );
}

#[test]
fn an_interface_on_no_link_is_an_error_unless_a_link_failed() {
    let y = BASE.replace(
        "[{name: eth0, ip: 10.0.0.1/24}]",
        "[{name: eth0, ip: 10.0.0.1/24}, {name: eth1}]",
    );
    assert_err_starts(&y, "t.yaml:6: interface h1:eth1 is on no link");
    let e = errs(&y.replace("[h2, sw1]", "[h9, sw1]"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("unknown node `h9`"), "{e:?}");
}

#[test]
fn vlan_membership_on_switch_ends() {
    let p = resolved(&BASE.replace("[h2, sw1]", "[h2, {node: sw1, vlan: 10}]"));
    match &p.links[1] {
        Link::HostSwitch { port, .. } => assert_eq!(port.vlans, Vlans::Access(10)),
        l => panic!("{l:?}"),
    }
    for (to, want) in [
        (
            "[h2, {node: sw1, vlan: 10, trunk: [20]}]",
            ":11: a port is an access port",
        ),
        (
            "[h2, {node: sw1, trunk: [20, 30, 20]}]",
            ":11: VLAN 20 is listed twice",
        ),
        (
            "[{node: h2, vlan: 10}, sw1]",
            "`vlan` belongs on a switch end",
        ),
    ] {
        assert_err_contains(&BASE.replace("[h2, sw1]", to), want);
    }
}

#[test]
fn port_names_must_fit_and_not_clash() {
    let y = BASE
        .replace("name: h2\n", "name: a-very-long-host\n")
        .replace("[h2, sw1]", "[a-very-long-host, sw1]");
    assert_err_contains(&y, "default port name");
    assert_err_contains(
        &BASE.replace("[h2, sw1]", "[h2, {node: sw1, port: h1-eth0}]"),
        "already taken",
    );
}
