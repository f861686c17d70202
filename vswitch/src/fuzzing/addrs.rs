//! The addresses, MACs and NAT configuration the frame and packet harnesses share.

use super::*;

pub(super) const NET0: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 0);
pub(super) const GW0: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
pub(super) const NET1: Ipv4Addr = Ipv4Addr::new(172, 19, 0, 0);
pub(super) const GW1: Ipv4Addr = Ipv4Addr::new(172, 19, 0, 1);
pub(super) const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub(super) const UPLINK_NET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);
pub(super) const WAN_GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub(super) const GW0_MAC: MacAddr = MacAddr([0x02, 0x76, 0, 0, 0, 0x01]);
pub(super) const GW1_MAC: MacAddr = MacAddr([0x02, 0x76, 0, 0, 0, 0x02]);
pub(super) const UPLINK_MAC: MacAddr = MacAddr([0x02, 0x76, 0, 0, 0, 0xff]);

/// Addresses a record's "map" bit picks from (by the low bits of an address byte), so
/// that mutated packets keep hitting the networks, gateways, published ports and the
/// uplink instead of random addresses.
pub(super) const ADDRS: [Ipv4Addr; 12] = [
    Ipv4Addr::new(172, 18, 0, 2),
    Ipv4Addr::new(172, 18, 0, 3),
    GW0,
    Ipv4Addr::new(172, 19, 0, 2),
    GW1,
    UPLINK,
    WAN_GW,
    Ipv4Addr::new(198, 51, 100, 7),
    Ipv4Addr::new(203, 0, 113, 7),
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::BROADCAST,
    Ipv4Addr::new(172, 18, 0, 255),
];

pub(super) fn map_addr(b: &mut [u8], at: usize) {
    if let Some(s) = b.get_mut(at..at + 4) {
        let a = ADDRS[usize::from(s[0]) % ADDRS.len()];
        s.copy_from_slice(&a.octets());
    }
}

/// Clock steps (ms) a record's time bits choose from: none, small, past the UDP and
/// ICMP timeouts, past TCP's established timeout.
pub(super) const STEPS_MS: [u64; 8] = [
    0,
    1,
    1_000,
    31_000,
    121_000,
    600_000,
    3_600_000,
    432_001_000,
];

pub(super) fn net(a: Ipv4Addr, p: u8) -> Ipv4Net {
    // Prefixes here are constants ≤ 32.
    Ipv4Net::new(a, p).unwrap_or_else(|| unreachable!("prefix {p} > 32"))
}

pub(super) fn nat_config(ct_limit: usize) -> nat::Config {
    let mut c = nat::Config::new(UPLINK);
    c.networks = vec![
        Network {
            subnet: net(NET0, 24),
            gateway: GW0,
        },
        Network {
            subnet: net(NET1, 24),
            gateway: GW1,
        },
    ];
    let publish = |proto, host_port, a, port| Published {
        proto,
        host_port,
        target: Endpoint::new(a, port),
    };
    c.published = vec![
        publish(Proto::Tcp, 8080, Ipv4Addr::new(172, 18, 0, 2), 80),
        publish(Proto::Udp, 5353, Ipv4Addr::new(172, 18, 0, 3), 53),
        publish(Proto::Tcp, 2222, Ipv4Addr::new(172, 19, 0, 2), 22),
    ];
    c.ct_limit = ct_limit;
    c
}

/// True for an address of a container (inside a network, not the gateway's own).
pub(super) fn is_container(a: Ipv4Addr) -> bool {
    (net(NET0, 24).contains(a) && a != GW0) || (net(NET1, 24).contains(a) && a != GW1)
}
