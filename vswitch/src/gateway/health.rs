//! Health checks of service backends, run by the gateway: once a second, a TCP connect
//! from the gateway's address in the backend's network to the backend's check port.
//! Like the DNS-over-TCP endpoint ([`super::dns_tcp`]) it is userspace TCP (smoltcp
//! client sockets over the same in-memory device), since the network exists only in the
//! switch. A connection that is accepted is reset at once and counts as a pass; a reset
//! (nothing listens) fails the backend at once, a check left unanswered for a second
//! counts half, so a dead backend is out within 1-2 s and a lost SYN alone takes
//! nobody out; one pass puts it back. The outcome goes to NAT's scheduler and to the
//! DNS records of `dnsrr` services.

use std::net::Ipv4Addr;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::IpAddress;

use super::dns_tcp::Queue;
use super::{Ev, Gateway, Out};
use crate::pool::Pool;

/// Failure points that take a backend out: a reset is worth this many, a check
/// unanswered for a second one.
const FALL: u8 = 2;
/// Local ports the checks leave from: above the masquerade range (32768-60999) and the
/// DNS forwarder's, so a check's reply is never taken for another flow's.
const PORT_MIN: u16 = 61000;
const PORT_MAX: u16 = 65535;
/// Socket buffers: a check sends and receives nothing.
const BUF: usize = 64;

/// A backend to check, as the controller configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSpec {
    /// The bridge of the service's network.
    pub bridge: u32,
    /// The service's VIP.
    pub vip: Ipv4Addr,
    /// The backend's address and check port.
    pub addr: Ipv4Addr,
    pub port: u16,
}

struct Probe {
    spec: HealthSpec,
    handle: SocketHandle,
    /// When the check in flight started (ms), if one is.
    started: Option<u64>,
    fails: u8,
    up: bool,
}

/// One network's checks: a smoltcp interface at the gateway's address.
struct HealthNet {
    bridge: u32,
    addr: Ipv4Addr,
    iface: Interface,
    dev: Queue,
    sockets: SocketSet<'static>,
    probes: Vec<Probe>,
    next_port: u16,
}

/// Every network's checks.
#[derive(Default)]
pub(super) struct Checks {
    nets: Vec<HealthNet>,
}

impl HealthNet {
    fn new(bridge: u32, addr: Ipv4Addr, prefix: u8, seed: u64, now: u64) -> Self {
        let (dev, iface) = Queue::with_iface(addr, prefix, seed, now);
        HealthNet {
            bridge,
            addr,
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            probes: Vec::new(),
            next_port: PORT_MIN + (seed % u64::from(PORT_MAX - PORT_MIN)) as u16,
        }
    }

    fn add(&mut self, spec: HealthSpec, up: bool) {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; BUF]),
            tcp::SocketBuffer::new(vec![0; BUF]),
        );
        self.probes.push(Probe {
            spec,
            handle: self.sockets.add(s),
            started: None,
            fails: 0,
            up,
        });
    }

    /// Looks at every check in flight after the interface ran: accepted ones pass (and
    /// are reset), reset ones fail. Returns the backends whose health changed.
    fn outcomes(&mut self) -> Vec<(Ipv4Addr, Ipv4Addr, bool)> {
        let mut changed = Vec::new();
        for p in &mut self.probes {
            if p.started.is_none() {
                continue;
            }
            let s = self.sockets.get_mut::<tcp::Socket>(p.handle);
            let pass = match s.state() {
                tcp::State::Established => true,
                tcp::State::Closed => false,
                _ => continue,
            };
            s.abort();
            p.started = None;
            if let Some(c) = p.record(pass, FALL) {
                changed.push(c);
            }
        }
        changed
    }
}

impl Probe {
    /// Counts a pass, or a failure worth `points`; the new health if it changed.
    fn record(&mut self, pass: bool, points: u8) -> Option<(Ipv4Addr, Ipv4Addr, bool)> {
        if pass {
            self.fails = 0;
        } else {
            self.fails = self.fails.saturating_add(points);
        }
        let up = self.fails < FALL;
        (up != self.up).then(|| {
            self.up = up;
            (self.spec.vip, self.spec.addr, up)
        })
    }
}

impl Gateway {
    /// Installs the backends to check. A check that stays (same bridge, VIP, backend and
    /// port, and the gateway's address unchanged) keeps its state; a new one starts with
    /// the health NAT already has for it.
    pub fn configure_health(&mut self, specs: &[HealthSpec]) {
        let now = self.now();
        let mut old = std::mem::take(&mut self.health.nets);
        let mut bridges: Vec<u32> = specs.iter().map(|s| s.bridge).collect();
        bridges.sort_unstable();
        bridges.dedup();
        for b in bridges {
            let Some(side) = self.nets.iter().find(|n| n.bridge == b) else {
                continue;
            };
            // A cluster overlay's checks leave from this node's mesh address: a
            // backend on another node answers the anycast gateway's address to its
            // own node's copy, but the mesh address to this one.
            let addr = side.mesh.map_or(side.addr, |(m, _)| m);
            let prefix = side.subnet.prefix();
            let mut net = match old.iter().position(|n| n.bridge == b && n.addr == addr) {
                Some(i) => old.swap_remove(i),
                None => {
                    let seed = std::hash::BuildHasher::hash_one(
                        &std::collections::hash_map::RandomState::new(),
                        (now, b),
                    );
                    HealthNet::new(b, addr, prefix, seed, now)
                }
            };
            let want: Vec<HealthSpec> = specs.iter().filter(|s| s.bridge == b).copied().collect();
            let (keep, gone): (Vec<Probe>, Vec<Probe>) = std::mem::take(&mut net.probes)
                .into_iter()
                .partition(|p| want.contains(&p.spec));
            for p in gone {
                net.sockets.remove(p.handle);
            }
            net.probes = keep;
            for s in want {
                if !net.probes.iter().any(|p| p.spec == s) {
                    let up = self.nat.lb().healthy(s.vip, s.addr);
                    net.add(s, up);
                }
            }
            self.health.nets.push(net);
        }
    }

    /// A TCP packet for the gateway's address that is not DNS: into the network's
    /// checks, if it has any.
    pub(super) fn health_segment(&mut self, bridge: u32, pkt: Vec<u8>, pool: &Pool, out: &mut Out) {
        let t = SmolInstant::from_millis(self.now() as i64);
        let Some(n) = self.health.nets.iter_mut().find(|n| n.bridge == bridge) else {
            return self.count(Ev::LocalUnhandled);
        };
        n.dev.rx.push_back(pkt);
        n.iface.poll(t, &mut n.dev, &mut n.sockets);
        let changed = n.outcomes();
        n.iface.poll(t, &mut n.dev, &mut n.sockets);
        let sent = std::mem::take(&mut n.dev.tx);
        self.apply_health(changed);
        self.send_ip(bridge, sent, pool, out);
    }

    /// Once a second: a check still unanswered fails, and every backend gets a new one.
    pub(super) fn health_tick(&mut self, pool: &Pool, out: &mut Out) {
        let now = self.now();
        let t = SmolInstant::from_millis(now as i64);
        let mut changed = Vec::new();
        let mut sent = Vec::new();
        for n in &mut self.health.nets {
            for p in &mut n.probes {
                let s = n.sockets.get_mut::<tcp::Socket>(p.handle);
                if p.started.take().is_some() {
                    s.abort();
                    changed.extend(p.record(false, 1));
                }
                if s.is_open() {
                    s.abort();
                }
                let local = n.next_port;
                n.next_port = if n.next_port == PORT_MAX {
                    PORT_MIN
                } else {
                    n.next_port + 1
                };
                let remote = (IpAddress::Ipv4(p.spec.addr), p.spec.port);
                if s.connect(n.iface.context(), remote, local).is_ok() {
                    p.started = Some(now);
                }
            }
            n.iface.poll(t, &mut n.dev, &mut n.sockets);
            sent.push((n.bridge, std::mem::take(&mut n.dev.tx)));
        }
        self.apply_health(changed);
        for (bridge, packets) in sent {
            self.send_ip(bridge, packets, pool, out);
        }
    }

    fn apply_health(&mut self, changed: Vec<(Ipv4Addr, Ipv4Addr, bool)>) {
        for (vip, addr, up) in changed {
            self.nat.set_health(vip, addr, up);
            tracing::info!(%vip, backend = %addr, "service backend {}", if up { "up" } else { "down" });
        }
        let lb = self.nat.lb();
        self.dns.mark_backends(|vip, addr| lb.healthy(vip, addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Probe {
        let mut s = SocketSet::new(Vec::new());
        let h = s.add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; BUF]),
            tcp::SocketBuffer::new(vec![0; BUF]),
        ));
        Probe {
            spec: HealthSpec {
                bridge: 0,
                vip: Ipv4Addr::new(10, 0, 0, 100),
                addr: Ipv4Addr::new(10, 0, 0, 2),
                port: 80,
            },
            handle: h,
            started: None,
            fails: 0,
            up: true,
        }
    }

    #[test]
    fn a_reset_takes_out_a_timeout_needs_two_a_pass_puts_back() {
        let mut p = probe();
        assert_eq!(p.record(false, 1), None);
        assert_eq!(p.record(true, 0), None);
        assert_eq!(p.record(false, 1), None);
        assert!(p.record(false, 1).is_some_and(|c| !c.2));
        assert!(p.record(true, 0).is_some_and(|c| c.2));
        assert!(p.record(false, FALL).is_some_and(|c| !c.2));
        assert_eq!(p.record(false, FALL), None);
        assert!(!p.up);
    }
}
