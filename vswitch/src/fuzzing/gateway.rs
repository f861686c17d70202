//! Fuzz target `gateway`: ARP, ICMP, routing and NAT for frames on either side of the gateway.

use super::*;

/// Small buffers in a harness's pool: few enough that a long input exhausts it.
pub(super) const POOL_SMALL: usize = 512;
/// Large buffers in a harness's pool.
pub(super) const POOL_LARGE: usize = 8;

/// How the harness configures its gateway (see [`gw_ctl`]'s reconfiguration records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Setup {
    /// Networks 0 and 1 (bridges 0 and 1), the uplink in 198.51.100.0/24.
    Full,
    /// Network 0 alone, no uplink.
    NoUplink,
    /// Networks 0 and 1, the uplink with the same address in a /25.
    NarrowUplink,
}

/// The gateway's configuration for `setup`, NAT as in [`nat`] (conntrack limit 64;
/// only the published ports whose network is there).
pub(super) fn configure_lab(g: &mut Gateway, pool: &Pool, setup: Setup, two_nets: bool) {
    let mut nets = vec![NetSpec {
        bridge: 0,
        subnet: net(NET0, 24),
        gateway: GW0,
        mac: GW0_MAC,
        mesh: None,
    }];
    if two_nets && setup != Setup::NoUplink {
        nets.push(NetSpec {
            bridge: 1,
            subnet: net(NET1, 24),
            gateway: GW1,
            mac: GW1_MAC,
            mesh: None,
        });
    }
    let mut cfg = nat_config(64);
    cfg.networks.truncate(nets.len());
    cfg.published
        .retain(|p| nets.iter().any(|n| n.subnet.contains(p.target.addr)));
    let up = UplinkSpec {
        addr: UPLINK,
        subnet: net(
            UPLINK_NET,
            if setup == Setup::NarrowUplink { 25 } else { 24 },
        ),
        gw: Some(WAN_GW),
        mac: UPLINK_MAC,
    };
    let up = (setup != Setup::NoUplink).then_some(up);
    if let Err(e) = g.configure(cfg, &nets, up, pool) {
        panic!("the harness's gateway config ({setup:?}) is refused: {e}");
    }
}

/// A gateway configured as [`Setup::Full`] (with network 1 only if `two_nets`).
pub(super) fn lab_gateway(pool: &Pool, two_nets: bool) -> Gateway {
    let mut g = Gateway::new();
    configure_lab(&mut g, pool, Setup::Full, two_nets);
    g
}

/// The gateway's address and MAC on `side` in [`lab_gateway`].
pub(super) fn lab_side(side: Side) -> (Ipv4Addr, MacAddr) {
    match side {
        Side::Uplink => (UPLINK, UPLINK_MAC),
        Side::Net(1) => (GW1, GW1_MAC),
        Side::Net(_) => (GW0, GW0_MAC),
    }
}

/// Panics unless every buffer of `pool` is back: the gateway is emptied first (its
/// neighbour queues hold buffers), then as many buffers are taken as the pool has made;
/// if one was lost, the pool has to make (or refuse) one more to hand them out.
pub(super) fn assert_pool_whole(g: &mut Gateway, pool: &Pool, what: &str) {
    let r = g.configure(nat::Config::new(Ipv4Addr::UNSPECIFIED), &[], None, pool);
    assert!(r.is_ok(), "{what}: an empty gateway config is refused");
    let made = pool.allocated();
    let mut taken = Vec::with_capacity(made.0 + made.1);
    // Small buffers first (a small request takes a large one only when no small one
    // is left to make), then large ones.
    for _ in 0..made.0 {
        taken.extend(pool.get(64));
    }
    for _ in 0..made.1 {
        taken.extend(pool.get(crate::pool::LARGE));
    }
    let now = pool.allocated();
    let n = taken.len();
    for b in taken {
        pool.put(b);
    }
    assert!(
        n == made.0 + made.1 && now == made,
        "{what}: buffers lost: {made:?} made (small, large), {n} back, {now:?} after taking them"
    );
}

/// What the frames fed so far allow to be checked on what comes out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clean {
    /// Every IPv4 frame fed had its checksums fixed: all checksums out must be right.
    pub(super) fixed: bool,
}

/// The checks on a frame the gateway sends on `side`: from the gateway's MAC on that
/// side; ARP from its own address; IPv4 with a right header checksum (and, when every
/// input had right checksums, right L4 and quoted-header checksums too, or a partial
/// checksum that follows the pseudo-header); no container's address on the uplink.
pub(super) fn check_gateway_out(side: Side, b: &Buf, clean: Clean, what: &str) {
    let bytes = b.bytes();
    assert!(bytes.len() >= vnet::LEN + ETH, "{what}: runt frame sent");
    let (my_ip, my_mac) = lab_side(side);
    let f = &bytes[vnet::LEN..];
    assert_eq!(
        f[6..12],
        my_mac.0,
        "{what}: sent on {side:?} from another MAC"
    );
    match be16(f, 12) {
        Some(ARP) => {
            let Some(a) = frames::parse_arp(f) else {
                panic!("{what}: unreadable ARP sent");
            };
            assert_eq!(
                (a.sha, a.spa),
                (my_mac, my_ip),
                "{what}: ARP for someone else"
            );
        }
        Some(IPV4) => {
            let ip = &f[ETH..];
            let Ok(v) = wire::Ipv4Packet::new_checked(ip) else {
                panic!("{what}: unreadable IPv4 sent");
            };
            assert!(v.verify_checksum(), "{what}: IPv4 header checksum wrong");
            if side == Side::Uplink {
                assert!(!is_container(v.src()), "{what}: {} on the uplink", v.src());
            }
            if clean.fixed {
                let partial = bytes[0] & vnet::F_NEEDS_CSUM != 0;
                let part = if partial { ipv4_partial(ip) } else { None };
                for (kind, fl) in ipv4_fields(ip).unwrap_or_default() {
                    if Some(fl.at) == part.map(|p| p.at) {
                        continue;
                    }
                    assert!(
                        fl.holds_updated(ip),
                        "{what}: {kind:?} checksum wrong in a frame sent on {side:?}"
                    );
                }
                if let Some(p) = part {
                    assert!(p.holds(ip), "{what}: partial checksum wrong on {side:?}");
                }
            }
        }
        t => panic!("{what}: sent ethertype {t:?}: the gateway only speaks ARP and IPv4"),
    }
}

/// The control byte of a gateway record: bits 0-1 the side (0 network 0, 1 network 1,
/// 2 the uplink, 3 no frame: bits 2-3 then say what happens instead — 0 the
/// once-a-second tick, 1 the configuration installed again unchanged, 2 network 1 and
/// the uplink removed, 3 both back with the uplink's subnet narrowed to a /25, as the
/// controller does on `del-uplink`, `set-uplink`, `add-net`), bit 2 fix the IPv4 checksums
/// first, bit 3 address the frame to the gateway's MAC on that side, bit 4 mark it
/// NEEDS_CSUM (with bit 2, the TCP/UDP field then holds the pseudo-header sum), bit 5
/// map its addresses onto known ones, bit 6 force its ethertype (bit 7: ARP, else IPv4).
pub mod gw_ctl {
    pub const SIDE: u8 = 0x03;
    pub const FIX: u8 = 0x04;
    pub const TO_GW: u8 = 0x08;
    pub const PARTIAL: u8 = 0x10;
    pub const MAP: u8 = 0x20;
    pub const FORCE_TYPE: u8 = 0x40;
    pub const ARP: u8 = 0x80;
}

/// Builds the `vnet header + frame` of a gateway record as its control byte says.
pub(super) fn gateway_frame(ctl: u8, body: &[u8], my_mac: MacAddr) -> Vec<u8> {
    let mut f = body.to_vec();
    if f.len() >= ETH {
        if ctl & gw_ctl::TO_GW != 0 {
            f[..6].copy_from_slice(&my_mac.0);
        }
        if ctl & gw_ctl::FORCE_TYPE != 0 {
            let t = if ctl & gw_ctl::ARP != 0 { ARP } else { IPV4 };
            f[12..14].copy_from_slice(&t.to_be_bytes());
        }
    }
    let ethertype = be16(&f, 12);
    if ethertype == Some(ARP) && ctl & gw_ctl::MAP != 0 {
        map_addr(&mut f, ETH + 14);
        map_addr(&mut f, ETH + 24);
    }
    let mut vh = [0u8; vnet::LEN];
    if ethertype == Some(IPV4) {
        if let Some(ip) = f.get_mut(ETH..) {
            prepare_ip(ctl, ip, gw_ctl::MAP, gw_ctl::FIX, gw_ctl::PARTIAL);
            if ctl & gw_ctl::PARTIAL != 0 {
                vh[0] = vnet::F_NEEDS_CSUM;
                if let Some(p) = ipv4_partial(ip) {
                    let hl = usize::from(ip[0] & 0x0f) * 4;
                    vh[6..8].copy_from_slice(&((ETH + hl) as u16).to_ne_bytes());
                    vh[8..10].copy_from_slice(&((p.at - hl) as u16).to_ne_bytes());
                }
            }
        }
    }
    let mut out = vh.to_vec();
    out.extend_from_slice(&f);
    out
}

/// Fuzz target `gateway`: Ethernet frames (records, see [`gw_ctl`]) into
/// `Gateway::handle` on either of two networks or the uplink: ARP requests and replies
/// (spoofed ones too), IPv4 with options, TCP, UDP, ICMP echo and errors, TTLs that run
/// out, traffic that needs the uplink's next hop resolved first. Checks every frame the
/// gateway sends (see `check_gateway_out`: its own MAC and address, right checksums,
/// no container address on the uplink) and, at the end, that no buffer was lost.
pub fn gateway(data: &[u8]) {
    let pool = Pool::new(POOL_SMALL, POOL_LARGE);
    let mut g = lab_gateway(&pool, true);
    let mut out = Out::new();
    let mut clean = Clean { fixed: true };
    for (ctl, body) in records(data) {
        let side = match ctl & gw_ctl::SIDE {
            0 => Side::Net(0),
            1 => Side::Net(1),
            2 => Side::Uplink,
            _ => {
                match (ctl >> 2) & 3 {
                    0 => g.tick(&pool, &mut out),
                    1 => configure_lab(&mut g, &pool, Setup::Full, true),
                    2 => configure_lab(&mut g, &pool, Setup::NoUplink, true),
                    _ => configure_lab(&mut g, &pool, Setup::NarrowUplink, true),
                }
                drain_gateway_out(&mut out, &pool, clean, "gateway (tick)");
                continue;
            }
        };
        let f = gateway_frame(ctl, body, lab_side(side).1);
        clean.fixed &= ctl & gw_ctl::FIX != 0;
        let Some(mut b) = pool.get(f.len()) else {
            continue;
        };
        if !b.fill(&[&f]) {
            pool.put(b);
            continue;
        }
        g.handle(side, b, &pool, &mut out);
        drain_gateway_out(&mut out, &pool, clean, "gateway");
    }
    assert_pool_whole(&mut g, &pool, "gateway");
}

pub(super) fn drain_gateway_out(out: &mut Out, pool: &Pool, clean: Clean, what: &str) {
    for (side, b) in out.drain(..) {
        check_gateway_out(side, &b, clean, what);
        pool.put(b);
    }
}
