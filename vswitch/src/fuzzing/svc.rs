//! Fuzz target `services`: the service path — VIP selection and DNAT in the NAT engine
//! (`nat::lb`) and the bridge's divert test for backends' replies
//! ([`Replies`](crate::pipeline::services::Replies)) — on arbitrary packets.

use super::ct::check_forwarded;
use super::*;
use crate::pipeline::services::Replies;
use nat::lb::{Backend, Sched, Service};

/// The VIP of `web` (TCP 80 and UDP 53; backend .3 listens on 8080 instead).
pub(super) const VIP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 100);
/// The VIP of `any`, which serves every TCP and UDP port.
pub(super) const VIP_ANY: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 101);

/// Addresses the "map" bit picks from: the VIPs, backends, a client in the same and in
/// the other network, the gateway, the uplink and the outside.
const SVC_ADDRS: [Ipv4Addr; 11] = [
    VIP,
    VIP_ANY,
    Ipv4Addr::new(172, 18, 0, 2),
    Ipv4Addr::new(172, 18, 0, 3),
    Ipv4Addr::new(172, 18, 0, 4),
    Ipv4Addr::new(172, 18, 0, 50),
    Ipv4Addr::new(172, 19, 0, 2),
    GW0,
    UPLINK,
    WAN_GW,
    Ipv4Addr::new(203, 0, 113, 7),
];
/// Ports the "ports" bit picks from: the services', a backend's own, a published one,
/// two clients'.
const SVC_PORTS: [u16; 6] = [80, 53, 8080, 9000, 40000, 40001];

/// The control byte of a `services` record: bit 0 from the uplink, bit 1 fix the
/// checksums first, bit 2 map the addresses onto [`SVC_ADDRS`], bit 3 map the TCP/UDP
/// ports onto [`SVC_PORTS`], bits 4-5 the clock step (none, 1 ms, 1 s, 121 s), bit 6
/// flip the health of backend (bits 4-5) mod 3 first, bit 7 expire flows first.
pub mod svc_ctl {
    pub const OUTSIDE: u8 = 0x01;
    pub const FIX: u8 = 0x02;
    pub const MAP: u8 = 0x04;
    pub const PORTS: u8 = 0x08;
    pub const STEP_SHIFT: u8 = 4;
    pub const HEALTH: u8 = 0x40;
    pub const EXPIRE: u8 = 0x80;
}

const STEPS: [u64; 4] = [0, 1, 1_000, 121_000];

fn service_defs(sched: Sched) -> Vec<Service> {
    let b = |h: u8, port: Option<u16>| Backend {
        addr: Ipv4Addr::new(172, 18, 0, h),
        port,
    };
    vec![
        Service {
            vip: VIP,
            ports: vec![(Proto::Tcp, 80), (Proto::Udp, 53)],
            backends: vec![b(2, None), b(3, Some(8080)), b(4, None)],
            sched,
        },
        Service {
            vip: VIP_ANY,
            ports: Vec::new(),
            backends: vec![b(4, None)],
            sched: Sched::RoundRobin,
        },
    ]
}

fn map_ports(pkt: &mut [u8]) {
    let hl = usize::from(pkt.first().map_or(0, |v| v & 0x0f)) * 4;
    if !matches!(pkt.get(9), Some(6 | 17)) {
        return;
    }
    for at in [hl, hl + 2] {
        if let Some(p) = be16(pkt, at) {
            put16(pkt, at, SVC_PORTS[usize::from(p) % SVC_PORTS.len()]);
        }
    }
}

/// Each backend with its health and connections counted.
type Counted = Vec<(Backend, bool, u64)>;

/// Connections counted per backend, service by service.
fn counts(nat: &Nat, now: u64) -> Vec<(Ipv4Addr, Counted)> {
    nat.service_stats(now)
        .into_iter()
        .map(|(vip, b)| {
            (
                vip,
                b.into_iter()
                    .map(|s| (s.backend, s.up, s.connections))
                    .collect(),
            )
        })
        .collect()
}

/// Fuzz target `services`: packets (records, see [`svc_ctl`]) through a NAT engine with
/// two services, one with per-port backends and a remapped port, one serving every port,
/// and a port of the uplink published to the first; backends' health flipped and the
/// clock moved as the records say; the first record's first byte picks the scheduler.
/// Checks, on top of `nat`'s rewrite checks: a connection is counted only for a packet
/// that is forwarded, to the backend counted, which was healthy, at its port; a TCP or
/// UDP packet from inside to a VIP that is forwarded goes to one of that VIP's backends
/// with the client's address kept (unless a backend is sent to itself: then from another
/// address); nothing goes on with a VIP as its destination; the
/// divert test says yes exactly for readable TCP/UDP packets from a backend's service
/// port (any port for the second service).
pub fn services(data: &[u8]) {
    let sched = if data.first().is_some_and(|b| b & 1 != 0) {
        Sched::SourceHash
    } else {
        Sched::RoundRobin
    };
    let mut c = nat_config(32);
    c.services = service_defs(sched);
    c.published.push(Published {
        proto: Proto::Tcp,
        host_port: 9000,
        target: Endpoint::new(VIP, 80),
    });
    let replies = Replies::new(c.services.iter().flat_map(Service::reply_sources));
    let Ok(mut nat) = Nat::new(c.clone()) else {
        panic!("services: the harness's NAT config is refused");
    };
    let mut now = 1u64;
    for (ctl, body) in records(data) {
        let step = usize::from(ctl >> svc_ctl::STEP_SHIFT) & 3;
        now += STEPS[step];
        if ctl & svc_ctl::EXPIRE != 0 {
            nat.expire_some(now, 64);
        }
        if ctl & svc_ctl::HEALTH != 0 {
            let addr = Ipv4Addr::new(172, 18, 0, 2 + (step % 3) as u8);
            let up = nat.lb().healthy(VIP, addr);
            nat.set_health(VIP, addr, !up);
        }
        let dir = if ctl & svc_ctl::OUTSIDE != 0 {
            Direction::FromOutside
        } else {
            Direction::FromInside
        };
        let mut pkt = body.to_vec();
        if ctl & svc_ctl::MAP != 0 {
            for at in [12, 16] {
                if let Some(s) = pkt.get_mut(at..at + 4) {
                    let a = SVC_ADDRS[usize::from(s[3]) % SVC_ADDRS.len()];
                    s.copy_from_slice(&a.octets());
                }
            }
        }
        if ctl & svc_ctl::PORTS != 0 {
            map_ports(&mut pkt);
        }
        if ctl & svc_ctl::FIX != 0 {
            ipv4_fix(&mut pkt);
        }
        check_divert(&replies, &c.services, &pkt);
        let before_counts = counts(&nat, now);
        let before = pkt.clone();
        let v = nat.process(&mut pkt, dir, now);
        let after_counts = counts(&nat, now);
        let parsed_out = nat::tuple::parse(&pkt).ok();
        if let NatVerdict::Forward(_) = v {
            check_forwarded(&before, &pkt, false, "services");
        } else {
            assert_eq!(
                pkt, before,
                "services: a packet not forwarded was changed ({v:?})"
            );
        }
        // Which backend (if any) was counted a new connection.
        let mut counted = Vec::new();
        for ((vip, b0), (_, b1)) in before_counts.iter().zip(&after_counts) {
            for ((be, up, n0), (_, _, n1)) in b0.iter().zip(b1) {
                assert!(n1 >= n0, "services: a connection count went down");
                if n1 > n0 {
                    assert_eq!(n1 - n0, 1, "services: one packet counted twice");
                    counted.push((*vip, *be, *up));
                }
            }
        }
        assert!(
            counted.len() <= 1,
            "services: one packet counted for {counted:?}"
        );
        if let Some((vip, be, up)) = counted.first() {
            assert!(
                up,
                "services: {vip} counted a connection for unhealthy {}",
                be.addr
            );
            let Some(out) = parsed_out else {
                panic!("services: a counted packet was not forwarded readable ({v:?})");
            };
            assert!(
                matches!(v, NatVerdict::Forward(Egress::Inside)),
                "services: a counted packet was {v:?}"
            );
            assert_eq!(
                out.tuple.dst.addr, be.addr,
                "services: sent elsewhere than counted"
            );
            if let (Some(p), Ok(orig)) = (be.port, nat::tuple::parse(&before)) {
                if orig.tuple.proto != Proto::Icmp {
                    assert_eq!(out.tuple.dst.port, p, "services: backend port not used");
                }
            }
        }
        if let (NatVerdict::Forward(_), Some(out)) = (v, parsed_out) {
            assert!(
                out.tuple.dst.addr != VIP && out.tuple.dst.addr != VIP_ANY,
                "services: forwarded to a VIP: {}",
                out.tuple
            );
            if let Ok(orig) = nat::tuple::parse(&before) {
                let vip = orig.tuple.dst.addr;
                let svc = c.services.iter().find(|s| s.vip == vip);
                let l4 = matches!(orig.kind, Kind::Tcp { .. } | Kind::Udp);
                if let (Some(s), true, Direction::FromInside) = (svc, l4, dir) {
                    assert!(
                        s.backends.iter().any(|b| b.addr == out.tuple.dst.addr),
                        "services: {} went to {}, no backend of it",
                        orig.tuple,
                        out.tuple
                    );
                    // A backend reaching its own service goes to another backend
                    // with its address kept, or, the only healthy one, to itself from
                    // the gateway's address (source = destination would be a martian).
                    if out.tuple.dst.addr == orig.tuple.src.addr {
                        assert_ne!(
                            out.tuple.src.addr, orig.tuple.src.addr,
                            "services: a backend was sent to itself from itself: {}",
                            out.tuple
                        );
                    } else {
                        assert_eq!(
                            out.tuple.src, orig.tuple.src,
                            "services: the client's address was not kept"
                        );
                    }
                }
            }
        }
    }
}

/// The divert test against the services' definition: a yes is a TCP/UDP packet from a
/// backend's service port (any port of a backend of a service with no ports); for a
/// packet both the wire view and NAT's parser read, a no is anything else.
fn check_divert(replies: &Replies, services: &[Service], pkt: &[u8]) {
    // A backend of a service on every port needs no port (nor a readable one).
    let is_reply_source = |src: Ipv4Addr, proto: Proto, sport: Option<u16>| {
        services.iter().any(|s| {
            s.reply_sources().iter().any(|&(a, pp)| {
                a == src && pp.is_none_or(|(p, port)| p == proto && Some(port) == sport)
            })
        })
    };
    let yes = replies.matches(pkt);
    if yes {
        let proto = match pkt.get(9) {
            Some(6) => Proto::Tcp,
            Some(17) => Proto::Udp,
            other => panic!("services: diverted a packet of protocol {other:?}"),
        };
        let src = pkt
            .get(12..16)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map(Ipv4Addr::from);
        let hl = usize::from(pkt[0] & 0x0f) * 4;
        let sport = be16(pkt, hl);
        assert!(
            src.is_some_and(|a| is_reply_source(a, proto, sport)),
            "services: diverted a packet from {src:?}:{sport:?}, no backend's service port"
        );
    }
    if wire::ipv4::Ipv4Packet::new_checked(pkt).is_err() {
        return;
    }
    if let Ok(p) = nat::tuple::parse(pkt) {
        if matches!(p.kind, Kind::Tcp { .. } | Kind::Udp) {
            let want = is_reply_source(p.tuple.src.addr, p.tuple.proto, Some(p.tuple.src.port));
            assert_eq!(yes, want, "services: divert test wrong for {}", p.tuple);
        }
    }
}
