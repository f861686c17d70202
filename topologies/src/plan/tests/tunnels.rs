//! VXLAN tunnels: remotes, defaults, and every way a tunnel can be wrong.

use std::net::Ipv4Addr;

use super::{assert_edits_err, assert_err_starts, resolved};
use crate::plan::{CheckKind, VXLAN_PORT};

/// Two hypervisors, each with a switch and a container, tunnelled over their underlay.
const VX: &str = "\
hosts:
  - name: hv1
    interfaces: [{name: eth1, ip: 172.19.0.1/24}]
  - name: hv2
    interfaces: [{name: eth1, ip: 172.19.0.2/24}]
  - name: c1
    interfaces: [{name: eth0, ip: 10.50.0.1/24}]
  - name: c2
    interfaces: [{name: eth0, ip: 10.50.0.2/24}]
switches:
  - name: sw1
    host: hv1
    bridges: [{name: br0}]
    tunnels:
      - {vni: 42, remotes: [sw2]}
  - name: sw2
    host: hv2
    bridges: [{name: br0}]
    tunnels:
      - {name: vx0, vni: 42, remotes: [hv1:eth1], dstport: 8472, local: 172.19.0.2, vlan: 10}
links:
  - endpoints: [c1, sw1]
  - endpoints: [c2, sw2]
  - endpoints: [hv1:eth1, hv2:eth1]
";

#[test]
fn tunnels_resolve_remotes_and_defaults() {
    let p = resolved(VX);
    let t1 = &p.switch("sw1").unwrap().tunnels[0];
    assert_eq!(t1.name, "vxlan42");
    assert_eq!(t1.bridge, "br0");
    assert_eq!(t1.dstport, VXLAN_PORT);
    assert_eq!(t1.remotes[0].ip, "172.19.0.2".parse::<Ipv4Addr>().unwrap());
    assert_eq!(
        t1.add_args().join(" "),
        "add-tunnel br0 vxlan42 --vni 42 --remote 172.19.0.2"
    );
    let t2 = &p.switch("sw2").unwrap().tunnels[0];
    assert_eq!(
        t2.add_args().join(" "),
        "add-tunnel br0 vx0 --vni 42 --remote 172.19.0.1 --local 172.19.0.2 --dstport 8472 --vlan 10"
    );
    assert_eq!(p.port_names("sw2", "br0"), vec!["c2-eth0", "vx0"]);
    let p = resolved(&format!(
        "{VX}checks:\n  - fdb: {{switch: sw1, mac: c2, port: vxlan42}}\n  - broadcast: {{from: c1}}\n"
    ));
    match &p.checks[1].kind {
        CheckKind::Broadcast {
            to,
            port,
            count,
            subnet,
            ..
        } => {
            assert_eq!(to, &vec!["c2".to_string()]);
            assert_eq!((*port, *count), (9999, 3));
            assert_eq!(
                subnet.broadcast(),
                "10.50.0.255".parse::<Ipv4Addr>().unwrap()
            );
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn bad_tunnels_have_their_line() {
    assert_edits_err(
        VX,
        &[
            (
                "{vni: 42,",
                "{vni: 16777216,",
                "t.yaml:15: VNI 16777216 is outside 0..=16777215",
            ),
            ("{vni: 42,", "{vni: -1,", "t.yaml:15: VNI -1 is outside"),
            (
                "{vni: 42,",
                "{vnl: 42, vni: 42,",
                "t.yaml:15: unknown field `vnl`",
            ),
            (
                "remotes: [sw2]",
                "remotes: []",
                "t.yaml:15: `remotes` lists no VTEP",
            ),
            (
                "remotes: [sw2]",
                "remotes: [sw9]",
                "t.yaml:15: remote `sw9` is neither",
            ),
            (
                "remotes: [sw2]",
                "remotes: [239.1.1.1]",
                "t.yaml:15: remote 239.1.1.1 is not a unicast",
            ),
            (
                "remotes: [sw2]",
                "remotes: [172.19.0.1]",
                "is an address of hv1, this switch's own host",
            ),
            (
                "remotes: [sw2]",
                "remotes: [sw1]",
                "runs on hv1, this switch's own host",
            ),
            (
                "remotes: [sw2]",
                "remotes: [c1]",
                "host c1 has no address on a subnet of hv1",
            ),
            (
                "remotes: [sw2]",
                "remotes: [sw2, hv2:eth1]",
                "remote `hv2:eth1` is 172.19.0.2, already listed as `sw2`",
            ),
            (
                "remotes: [sw2]",
                "remotes: [hv2:eth9]",
                "host hv2 has no interface `eth9`",
            ),
            (
                "dstport: 8472",
                "dstport: 0",
                "t.yaml:20: dstport 0 is outside 1..=65535",
            ),
            (
                "vlan: 10",
                "vlan: 4095",
                "t.yaml:20: VLAN 4095 is outside 1..=4094",
            ),
            (
                "local: 172.19.0.2",
                "local: 172.19.0.1",
                "local `172.19.0.1` is not an address of hv2",
            ),
            (
                "name: vx0,",
                "name: c2-eth0,",
                "t.yaml:20: tunnel name `c2-eth0` is already a port of switch sw2",
            ),
            (
                "name: vx0,",
                "name: a-name-much-too-long,",
                "t.yaml:20: tunnel",
            ),
            (
                "    host: hv1\n",
                "",
                "switch sw1 has tunnels but runs in a namespace of its own",
            ),
            (
                "      - {vni: 42, remotes: [sw2]}\n",
                "      - {vni: 42, remotes: [sw2]}\n      - {name: vy, vni: 42, remotes: [sw2]}\n",
                "t.yaml:16: VNI 42 on UDP port 4789 is already tunnel vxlan42 (line 15)",
            ),
        ],
    );
    let y = format!("{VX}checks:\n  - broadcast: {{from: c1, to: [hv2]}}\n  - broadcast: {{from: c1, count: 0}}\n  - fdb: {{switch: sw1, mac: c2, port: vx9}}\n");
    assert_err_starts(&y, "t.yaml:26: host hv2 has no address in 10.50.0.0/24");
    assert_err_starts(&y, "t.yaml:27: count 0 is outside");
    assert_err_starts(
        &y,
        "t.yaml:28: bridge sw1:br0 has no port `vx9` (its ports: c1-eth0, vxlan42)",
    );
}

/// Three hypervisors: sw1's encrypted tunnel has two remotes, each with its key and
/// inner address in `peers`.
const ENC3: &str = "\
hosts:
  - name: hv1
    interfaces: [{name: eth1, ip: 172.19.0.1/24}, {name: eth2, ip: 172.19.1.1/24}]
  - name: hv2
    interfaces: [{name: eth1, ip: 172.19.0.2/24}]
  - name: hv3
    interfaces: [{name: eth1, ip: 172.19.1.3/24}]
switches:
  - name: sw1
    host: hv1
    bridges: [{name: br0}]
    tunnels:
      - name: vx0
        vni: 42
        remotes: [sw2, hv3:eth1]
        encrypt: true
        inner_local: 192.0.2.1
        peers:
          - {remote: hv3:eth1, public_key: t6b2acKoWnhfODBel0xp7ZGIQLA+TgFM40YtY+Dr+FI=, inner_remote: 192.0.2.3}
          - {remote: sw2, public_key: C/qz7dJlFqFR6MS/VQU14mbxpsabvx7bBRLXK6nN/0A=, inner_remote: 192.0.2.2}
  - name: sw2
    host: hv2
    bridges: [{name: br0}]
    tunnels:
      - {name: vx0, vni: 42, remotes: [sw1], encrypt: true, public_key: ue62gSmi2l48tRfHOW5z6g/00qUWcGr+G61MHjNcKk4=}
links:
  - endpoints: [hv1:eth1, hv2:eth1]
  - endpoints: [hv1:eth2, hv3:eth1]
";

#[test]
fn an_encrypted_tunnel_takes_a_key_per_remote_in_peers() {
    let p = resolved(ENC3);
    let t = &p.switch("sw1").unwrap().tunnels[0];
    // Keys and inner addresses follow the order of `remotes`, whatever `peers`' order.
    assert_eq!(
        t.add_args().join(" "),
        "add-tunnel br0 vx0 --vni 42 --remote 172.19.0.2 --remote 172.19.1.3 --encrypt \
         --public-key C/qz7dJlFqFR6MS/VQU14mbxpsabvx7bBRLXK6nN/0A= \
         --public-key t6b2acKoWnhfODBel0xp7ZGIQLA+TgFM40YtY+Dr+FI= \
         --inner-local 192.0.2.1 --inner-remote 192.0.2.2 --inner-remote 192.0.2.3"
    );
    let t2 = &p.switch("sw2").unwrap().tunnels[0];
    assert_eq!(
        t2.add_args().join(" "),
        "add-tunnel br0 vx0 --vni 42 --remote 172.19.0.1 --encrypt \
         --public-key ue62gSmi2l48tRfHOW5z6g/00qUWcGr+G61MHjNcKk4="
    );
    // A peer named by its address is the same remote.
    let by_ip = resolved(&ENC3.replacen("{remote: sw2,", "{remote: 172.19.0.2,", 1));
    assert_eq!(
        by_ip.switch("sw1").unwrap().tunnels[0].add_args(),
        t.add_args()
    );
}

#[test]
fn bad_encrypted_peers_have_their_line() {
    let k3 = "t6b2acKoWnhfODBel0xp7ZGIQLA+TgFM40YtY+Dr+FI=";
    let k2 = "C/qz7dJlFqFR6MS/VQU14mbxpsabvx7bBRLXK6nN/0A=";
    assert_edits_err(
        ENC3,
        &[
            (
                "{remote: sw2,",
                "{remote: hv9,",
                "t.yaml:20: peer `hv9` is not a remote of this tunnel (its remotes: sw2, hv3:eth1)",
            ),
            (
                "{remote: sw2,",
                "{remote: hv3:eth1,",
                "t.yaml:20: remote `hv3:eth1` has two entries in `peers`",
            ),
            (
                k2,
                k3,
                &format!("t.yaml:20: peer `sw2`: key {k3} is remote `hv3:eth1`'s too"),
            ),
            (k2, "not-a-key", "t.yaml:20: public key: not a WireGuard key"),
            (
                "inner_remote: 192.0.2.2}",
                "inner_remote: 224.0.0.1}",
                "t.yaml:20: inner_remote \"224.0.0.1\" is not a unicast IPv4 address",
            ),
            (
                ", inner_remote: 192.0.2.2}",
                "}",
                "t.yaml:19: `inner_remote`: give one for every peer or for none",
            ),
            (
                "          - {remote: sw2, public_key: C/qz7dJlFqFR6MS/VQU14mbxpsabvx7bBRLXK6nN/0A=, inner_remote: 192.0.2.2}\n",
                "",
                "t.yaml:19: remote `sw2` has no entry in `peers` (its key)",
            ),
            (
                "        peers:\n",
                "        public_key: C/qz7dJlFqFR6MS/VQU14mbxpsabvx7bBRLXK6nN/0A=\n        peers:\n",
                "t.yaml:20: give the keys either as `public_key`/`inner_remote` (one remote) or as `peers`, not both",
            ),
            (
                "{remote: sw2, public_key:",
                "{remote: sw2, key:",
                "unknown field `key`",
            ),
            (
                "encrypt: true\n        inner_local",
                "encrypt: false\n        inner_local",
                "`peers` needs `encrypt: true`",
            ),
        ],
    );
    // One key for two remotes.
    let two = ENC3.replacen(
        "        peers:\n",
        &format!("        public_key: {k2}\n        xpeers:\n"),
        1,
    );
    let two = two
        .lines()
        .filter(|l| !l.contains("xpeers") && !l.contains("- {remote:"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_err_starts(
        &two,
        "t.yaml:13: `public_key` names one remote's key; this tunnel has 2 remotes: list them in `peers`",
    );
}
