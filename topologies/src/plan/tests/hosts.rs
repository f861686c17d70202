//! Names, addresses and MACs of hosts, and what the reader says of a malformed file.

use super::{assert_err_contains, assert_err_starts, BASE};
use crate::plan::{parse_mac, Cidr};

#[test]
fn duplicate_names_bad_cidr_vlan_and_missing_fields() {
    assert_err_starts(
        &BASE.replace("name: h2", "name: h1"),
        "t.yaml:7: duplicate name `h1`",
    );
    assert_err_starts(
        &BASE.replace("10.0.0.2/24", "10.0.0.300/24"),
        "t.yaml:8: bad address",
    );
    assert_err_starts(
        &BASE.replace("10.0.0.2/24", "10.0.0.2/33"),
        "t.yaml:8: bad address",
    );
    assert_err_starts(
        &BASE.replace("[h2, sw1]", "[h2, {node: sw1, vlan: 4095}]"),
        "t.yaml:11: VLAN 4095 is outside 1..=4094",
    );
    assert_err_contains(
        &BASE.replace("[h2, sw1]", "[h2, {node: sw1, trunk: [10, 0]}]"),
        ":11: VLAN 0 is outside",
    );
    assert_err_starts(
        &BASE.replace("  - name: h2\n", "  - nam: h2\n"),
        "t.yaml:7: unknown field `nam`",
    );
    assert_err_starts(
        &BASE.replace(
            "    bridges: [{name: br0}]\n",
            "    bridges: [{aging: 30}]\n",
        ),
        "t.yaml:3: missing field `name`",
    );
}

#[test]
fn cidr_and_mac() {
    assert!(Cidr::parse("10.0.0.0/24").is_err());
    assert!(Cidr::parse("10.0.0.255/24").is_err());
    assert!(Cidr::parse("10.0.0.1/32").is_ok());
    assert!(Cidr::parse("10.0.0.1").is_err());
    let c = Cidr::parse("10.1.2.3/16").unwrap();
    assert!(c.contains("10.1.200.1".parse().unwrap()));
    assert!(!c.contains("10.2.0.1".parse().unwrap()));
    assert_eq!(parse_mac("02:AA:00:00:00:01").unwrap(), "02:aa:00:00:00:01");
    assert!(parse_mac("01:00:00:00:00:01").is_err());
    assert!(parse_mac("02:00:00:00:01").is_err());
}
