//! Bridge networks, uplinks and published ports, and the addresses switches own.

use super::{assert_edits_err, assert_err_contains, assert_err_starts, resolved};
use crate::plan::{CheckKind, Link};

/// A switch routing two bridge networks out of its uplink, with two published ports.
const NAT: &str = "\
hosts:
  - name: c1
    gateway: 172.18.0.1
    interfaces: [{name: eth0, ip: 172.18.0.2/24}]
  - name: c3
    interfaces: [{name: eth0, ip: 172.19.0.2/24}]
  - name: wan
    interfaces: [{name: eth0, ip: 198.51.100.1/24}]
switches:
  - name: sw1
    bridges:
      - name: br0
        network: {subnet: 172.18.0.0/24, gateway: 172.18.0.1}
      - name: br1
        network: {subnet: 172.19.0.0/24, gateway: 172.19.0.1}
    uplink: {ip: 198.51.100.2/24, gw: 198.51.100.1}
    publish:
      - {proto: tcp, host_port: 8080, to: c1, port: 80}
      - {host_port: 5201, to: 172.18.0.2}
links:
  - endpoints: [c1, sw1:br0]
  - endpoints: [c3, sw1:br1]
  - endpoints: [wan, {node: sw1, uplink: true, port: up0}]
";

#[test]
fn networks_uplink_and_published_ports_resolve() {
    let p = resolved(NAT);
    let sw = p.switch("sw1").unwrap();
    assert_eq!(
        sw.bridges[0].add_net_args().unwrap().join(" "),
        "add-net br0 172.18.0.0/24 --gateway 172.18.0.1"
    );
    let u = sw.uplink.as_ref().unwrap();
    assert_eq!(
        u.set_args().join(" "),
        "set-uplink up0 --ip 198.51.100.2/24 --gw 198.51.100.1"
    );
    assert_eq!(u.peer.host, "wan");
    let pubs: Vec<String> = sw
        .published
        .iter()
        .map(|x| x.publish_args().join(" "))
        .collect();
    assert_eq!(
        pubs,
        vec![
            "publish tcp 8080 172.18.0.2:80",
            "publish tcp 5201 172.18.0.2:5201"
        ]
    );
    // The uplink is no bridge port.
    assert_eq!(p.port_names("sw1", "br0"), vec!["c1-eth0"]);
    assert!(matches!(&p.links[2], Link::Uplink { port, .. } if port == "up0"));
    // A switch names its uplink address, SWITCH:BRIDGE its network's gateway.
    let p = resolved(&format!(
        "{NAT}checks:\n  - http: {{from: wan, to: sw1, port: 8080, server: c1, server_port: 80, client: wan}}\n  - ping: {{from: c1, to: sw1:br0}}\n  - http: {{from: c1, to: wan, client: sw1}}\n"
    ));
    match &p.checks[0].kind {
        CheckKind::Http {
            to,
            server,
            server_port,
            client,
            ..
        } => {
            assert_eq!(to.to_string(), "198.51.100.2");
            assert_eq!((server.as_str(), *server_port), ("c1", 80));
            assert_eq!(client.unwrap().to_string(), "198.51.100.1");
        }
        k => panic!("{k:?}"),
    }
    match &p.checks[1].kind {
        CheckKind::Ping { to, .. } => assert_eq!(to.to_string(), "172.18.0.1"),
        k => panic!("{k:?}"),
    }
    match &p.checks[2].kind {
        CheckKind::Http { client, .. } => {
            assert_eq!(client.unwrap().to_string(), "198.51.100.2");
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn bad_networks_uplinks_and_publishes_have_their_line() {
    assert_edits_err(
        NAT,
        &[
            (
                "subnet: 172.18.0.0/24",
                "subnet: 172.18.0.5/24",
                "t.yaml:13: subnet 172.18.0.5/24 has host bits set",
            ),
            (
                "gateway: 172.18.0.1}",
                "gateway: 172.18.1.1}",
                "t.yaml:13: gateway 172.18.1.1 is outside 172.18.0.0/24",
            ),
            (
                "gateway: 172.18.0.1}",
                "gateway: 172.18.0.255}",
                "t.yaml:13: gateway 172.18.0.255 is the network or broadcast address",
            ),
            (
                "subnet: 172.19.0.0/24, gateway: 172.19.0.1",
                "subnet: 172.18.0.0/16, gateway: 172.18.1.1",
                "t.yaml:15: subnet 172.18.0.0/16 overlaps 172.18.0.0/24 of bridge br0 on switch sw1",
            ),
            (
                "ip: 198.51.100.2/24, gw",
                "ip: 198.51.100.2/33, gw",
                "t.yaml:16: prefix length /33",
            ),
            (
                "ip: 198.51.100.2/24, gw",
                "ip: 172.19.0.9/24, gw",
                "t.yaml:16: the uplink's subnet 172.19.0.0/24 overlaps network 172.19.0.0/24 of bridge br1",
            ),
            (
                "gw: 198.51.100.1}",
                "gw: 198.51.101.1}",
                "t.yaml:16: next hop 198.51.101.1 is outside 198.51.100.0/24",
            ),
            (
                "gw: 198.51.100.1}",
                "gw: 198.51.100.2}",
                "t.yaml:16: next hop 198.51.100.2 is the uplink's own address",
            ),
            (
                "{proto: tcp, host_port: 8080",
                "{proto: sctp, host_port: 8080",
                "t.yaml:18: unknown protocol \"sctp\"",
            ),
            (
                "host_port: 8080",
                "host_port: 70000",
                "t.yaml:18: host_port 70000 is outside 1..=65535",
            ),
            (
                "port: 80}",
                "port: 0}",
                "t.yaml:18: port 0 is outside 1..=65535",
            ),
            (
                "{host_port: 5201, to: 172.18.0.2}",
                "{host_port: 8080, to: 172.18.0.2}",
                "t.yaml:19: tcp/8080 is already published (line 18)",
            ),
            (
                "to: c1, port: 80}",
                "to: wan, port: 80}",
                "t.yaml:18: publish target 198.51.100.1 (`wan`) is in no network of switch sw1 (its networks: 172.18.0.0/24 on br0, 172.19.0.0/24 on br1)",
            ),
            (
                "to: 172.18.0.2}",
                "to: 172.18.0.1}",
                "t.yaml:19: publish target 172.18.0.1 is the gateway of sw1:br0",
            ),
            (
                "[wan, {node: sw1, uplink: true, port: up0}]",
                "[wan, {node: sw1, bridge: br0, uplink: true}]",
                "t.yaml:23: an uplink end is on no bridge",
            ),
            (
                "[wan, {node: sw1, uplink: true, port: up0}]",
                "[{node: wan, uplink: true}, sw1:br0]",
                "t.yaml:23: `uplink` belongs on a switch end",
            ),
            (
                "[wan, {node: sw1, uplink: true, port: up0}]",
                "[wan, sw1:br1]",
                "t.yaml:16: switch sw1 has an `uplink` but no link ends on it",
            ),
            (
                "    uplink: {ip: 198.51.100.2/24, gw: 198.51.100.1}\n",
                "",
                "t.yaml:17: switch sw1 publishes ports but has no `uplink`",
            ),
            (
                "    uplink: {ip: 198.51.100.2/24, gw: 198.51.100.1}\n",
                "",
                "t.yaml:22: switch sw1 has no `uplink: {ip: …}` for this uplink link",
            ),
            (
                "ip: 172.18.0.2/24}",
                "ip: 172.18.0.1/24}",
                "t.yaml:4: address 172.18.0.1 of c1:eth0 is the gateway of sw1:br0",
            ),
            (
                "ip: 198.51.100.1/24}",
                "ip: 198.51.100.2/24}",
                "t.yaml:8: address 198.51.100.2 of wan:eth0 is switch sw1's uplink address",
            ),
            (
                "ip: 172.19.0.2/24}",
                "ip: 172.20.0.2/24}",
                "t.yaml:6: address 172.20.0.2/24 of c3:eth0 is outside network 172.19.0.0/24 of sw1:br1",
            ),
            (
                "ip: 198.51.100.1/24}",
                "ip: 203.0.113.1/24}",
                "t.yaml:16: the far end of the uplink, wan:eth0 (203.0.113.1/24), is outside the uplink's subnet 198.51.100.0/24",
            ),
        ],
    );
    assert_err_contains(
        &format!("{NAT}  - endpoints: [c1, sw1:br0]\n"),
        "already on the link",
    );
    let y = NAT.replace(
        "  - name: wan\n",
        "  - name: wan2\n    interfaces: [{name: eth0, ip: 198.51.100.3/24}]\n  - name: wan\n",
    ) + "  - endpoints: [wan2, {node: sw1, uplink: true}]\n";
    assert_err_contains(&y, "switch sw1 already has its uplink on the link at line");
    let y = format!("{NAT}checks:\n  - ping: {{from: c1, to: sw1:br7}}\n  - http: {{from: c1, to: wan, client: nobody}}\n");
    assert_err_starts(&y, "t.yaml:25: switch sw1 has no bridge `br7`");
    assert_err_starts(&y, "t.yaml:26: `nobody` is neither");
}

#[test]
fn hosts_on_a_network_get_names_and_the_gateway_as_resolver() {
    let p = resolved(NAT);
    let sw = p.switch("sw1").unwrap();
    assert_eq!(
        sw.bridges[0].dns_args(&p, "sw1").unwrap().join(" "),
        "set-dns br0 --record c1=172.18.0.2"
    );
    assert_eq!(
        sw.bridges[1].dns_args(&p, "sw1").unwrap().join(" "),
        "set-dns br1 --record c3=172.19.0.2"
    );
    assert_eq!(p.dns_server("c1"), Some("172.18.0.1".parse().unwrap()));
    assert_eq!(p.dns_server("c3"), Some("172.19.0.1".parse().unwrap()));
    // The uplink's host is on no network.
    assert_eq!(p.dns_server("wan"), None);
}
