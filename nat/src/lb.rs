//! Services: a virtual IP whose new connections are spread over healthy backends, as
//! IPVS does for Docker's service VIPs. This module owns the services, each backend's
//! health, the scheduler's position and the per-backend counters; it picks a backend
//! for a new flow and nothing else. [`crate::nat::Nat`] asks it on the first packet of
//! a flow to a VIP (or to a port published to one), DNATs that flow to the backend and
//! marks the conntrack entry with the backend's id, so every later packet of the flow
//! follows the entry, never the scheduler: established connections stay where they
//! are when backends come and go. A backend that leaves (`set-backends`, a deleted
//! service) is kept here as *draining* while TCP flows of its remain, so that its
//! replies are still recognised as a service's (and translated back from the VIP).

use std::net::Ipv4Addr;

use crate::conntrack::{Entry, State, TcpState};
use crate::tuple::{Endpoint, Proto};

/// How a new connection's backend is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sched {
    /// The next healthy backend after the last one chosen.
    #[default]
    RoundRobin,
    /// A hash of the client's address over the healthy backends (a client keeps its
    /// backend while the set of healthy backends stays the same).
    SourceHash,
}

/// A backend: its address and, if it differs from the service port, its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend {
    /// The address (in the VIP's network).
    pub addr: Ipv4Addr,
    /// The port connections go to; none: the port the client asked for.
    pub port: Option<u16>,
}

/// A service as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The virtual IP (in a network, owned by the gateway).
    pub vip: Ipv4Addr,
    /// The ports served; empty: every TCP and UDP port.
    pub ports: Vec<(Proto, u16)>,
    /// The backends, in order.
    pub backends: Vec<Backend>,
    /// The scheduler.
    pub sched: Sched,
}

impl Service {
    /// True if the service answers `proto` port `port`.
    pub fn serves(&self, proto: Proto, port: u16) -> bool {
        proto != Proto::Icmp
            && (self.ports.is_empty() || self.ports.iter().any(|&(p, n)| p == proto && n == port))
    }

    /// The endpoints whose packets are replies of this service's flows: each backend
    /// address with the (protocol, port) it answers from, or with `None` when the
    /// service serves every port.
    pub fn reply_sources(&self) -> Vec<(Ipv4Addr, Option<(Proto, u16)>)> {
        let mut v = Vec::new();
        for b in &self.backends {
            if self.ports.is_empty() {
                v.push((b.addr, None));
            }
            for &(proto, port) in &self.ports {
                v.push((b.addr, Some((proto, b.port.unwrap_or(port)))));
            }
        }
        v
    }
}

/// What the scheduler says for a new flow to a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The address is no VIP.
    NotService,
    /// A VIP, but not for this protocol and port, or with no healthy backend: the
    /// client is refused at once.
    Refused,
    /// Send the flow to this backend endpoint; mark its entry with this id.
    To(Endpoint, u32),
}

/// One backend's state.
#[derive(Debug, Clone, Copy)]
struct Member {
    backend: Backend,
    /// The id conntrack entries of its flows are marked with (never 0).
    id: u32,
    up: bool,
    /// Connections sent to it since it was configured.
    connections: u64,
    /// Packets of its flows that have left the table.
    retired: u64,
}

#[derive(Debug, Clone)]
struct Svc {
    svc: Service,
    members: Vec<Member>,
    /// Round robin: where the next search starts.
    next: usize,
}

/// A backend as `list-services` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendStats {
    /// The backend.
    pub backend: Backend,
    /// Whether it is used for new connections.
    pub up: bool,
    /// Its tracked flows that are established (TCP) or alive (UDP) now.
    pub active: u64,
    /// Connections sent to it since it was configured.
    pub connections: u64,
    /// Packets of its flows, both ways.
    pub packets: u64,
}

/// A backend that left its service while flows of its were tracked.
#[derive(Debug, Clone)]
struct Drain {
    /// Its mark.
    id: u32,
    /// Where its replies come from (as [`Service::reply_sources`] said).
    sources: Vec<(Ipv4Addr, Option<(Proto, u16)>)>,
    /// Its flows still in the table.
    flows: u64,
}

/// The services and their backends' state.
#[derive(Debug, Clone, Default)]
pub struct Balancer {
    svcs: Vec<Svc>,
    next_id: u32,
    draining: Vec<Drain>,
    /// Changes whenever the endpoints whose packets are replies of a service's flows
    /// may have changed ([`Balancer::epoch`]).
    epoch: u64,
}

impl Balancer {
    /// Installs `services`; a backend that stays (same VIP, address and port) keeps its
    /// health, id and counters, a new one starts healthy (as Docker's tasks do until a
    /// check says otherwise). Returns the marks of the backends that left: each drains
    /// (see [`Balancer::count_draining`]) until [`Balancer::settle`] finds it has no flow.
    pub fn configure(&mut self, services: &[Service]) -> Vec<u32> {
        let old = std::mem::take(&mut self.svcs);
        for s in services {
            let prev = old.iter().find(|o| o.svc.vip == s.vip);
            let members = s
                .backends
                .iter()
                .map(
                    |&b| match prev.and_then(|p| p.members.iter().find(|m| m.backend == b)) {
                        Some(m) => *m,
                        None => {
                            self.next_id = self.next_id.wrapping_add(1).max(1);
                            Member {
                                backend: b,
                                id: self.next_id,
                                up: true,
                                connections: 0,
                                retired: 0,
                            }
                        }
                    },
                )
                .collect();
            self.svcs.push(Svc {
                svc: s.clone(),
                members,
                next: prev.map_or(0, |p| p.next),
            });
        }
        let mut left = Vec::new();
        for o in &old {
            for m in &o.members {
                if self.member_mut(m.id).is_some() {
                    continue;
                }
                let one = Service {
                    backends: vec![m.backend],
                    ..o.svc.clone()
                };
                self.draining.push(Drain {
                    id: m.id,
                    sources: one.reply_sources(),
                    flows: 0,
                });
                left.push(m.id);
            }
        }
        self.epoch = self.epoch.wrapping_add(1);
        left
    }

    /// Counts one live flow of the draining backend `mark` (after [`Balancer::configure`]
    /// said it left).
    pub fn count_draining(&mut self, mark: u32) {
        if let Some(d) = self.draining.iter_mut().find(|d| d.id == mark) {
            d.flows += 1;
        }
    }

    /// Forgets the draining backends with no flow left.
    pub fn settle(&mut self) {
        let before = self.draining.len();
        self.draining.retain(|d| d.flows > 0);
        if self.draining.len() != before {
            self.epoch = self.epoch.wrapping_add(1);
        }
    }

    /// Forgets every draining backend (the flows are gone: `ct-flush`).
    pub fn forget_flows(&mut self) {
        self.draining.clear();
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// A number that changes whenever the reply endpoints (backends, draining ones
    /// included) may have: a copy of them kept elsewhere is stale if it was made under
    /// another epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The reply endpoints of the backends that left while flows of theirs carry on.
    pub fn draining_sources(&self) -> impl Iterator<Item = (Ipv4Addr, Option<(Proto, u16)>)> + '_ {
        self.draining.iter().flat_map(|d| d.sources.iter().copied())
    }

    /// True if `a` is a VIP.
    pub fn is_vip(&self, a: Ipv4Addr) -> bool {
        self.svcs.iter().any(|s| s.svc.vip == a)
    }

    /// True if a packet from `src` over `proto` may be a reply of a service's flow
    /// (its source is a backend's endpoint, or a draining backend's).
    pub fn is_reply_source(&self, proto: Proto, src: Endpoint) -> bool {
        let current = self.svcs.iter().any(|s| {
            s.svc.backends.iter().any(|b| {
                b.addr == src.addr
                    && (s.svc.ports.is_empty()
                        || s.svc
                            .ports
                            .iter()
                            .any(|&(p, n)| p == proto && b.port.unwrap_or(n) == src.port))
            })
        });
        current
            || self
                .draining_sources()
                .any(|(a, pp)| a == src.addr && pp.is_none_or(|(p, n)| p == proto && n == src.port))
    }

    /// True if `a` is a backend's address (draining ones included): an ICMP error from
    /// it may be about a service's flow.
    pub fn is_backend(&self, a: Ipv4Addr) -> bool {
        self.svcs
            .iter()
            .any(|s| s.svc.backends.iter().any(|b| b.addr == a))
            || self.draining_sources().any(|(x, _)| x == a)
    }

    /// The marks of the backends at `addr` of the service at `vip`.
    pub fn marks(&self, vip: Ipv4Addr, addr: Ipv4Addr) -> Vec<u32> {
        self.svcs
            .iter()
            .filter(|s| s.svc.vip == vip)
            .flat_map(|s| &s.members)
            .filter(|m| m.backend.addr == addr)
            .map(|m| m.id)
            .collect()
    }

    /// Counts a connection of the backend whose mark is `mark`, once its flow exists (a
    /// pick whose flow could not be made is not a connection).
    pub fn count(&mut self, mark: u32) {
        if let Some(m) = self.member_mut(mark) {
            m.connections += 1;
        }
    }

    /// The backend for a new `proto` flow from `client` to `dst` (a VIP and port).
    ///
    /// A client that is itself a backend of the service is sent to another one: DNAT
    /// to itself would make a packet from itself to itself, which its kernel drops as
    /// a martian (and whose reply would never be translated back). When it is the only
    /// healthy backend it is picked all the same, and the caller must source-NAT the
    /// flow (the picked endpoint's address is then the client's).
    pub fn pick(&mut self, proto: Proto, client: Ipv4Addr, dst: Endpoint) -> Pick {
        let Some(s) = self.svcs.iter_mut().find(|s| s.svc.vip == dst.addr) else {
            return Pick::NotService;
        };
        if !s.svc.serves(proto, dst.port) {
            return Pick::Refused;
        }
        let n = s.members.len();
        let others = s.members.iter().any(|m| m.up && m.backend.addr != client);
        let eligible = |m: &Member| m.up && (m.backend.addr != client || !others);
        let healthy = s.members.iter().filter(|m| eligible(m)).count();
        if healthy == 0 {
            return Pick::Refused;
        }
        let i = match s.svc.sched {
            Sched::RoundRobin => {
                let Some(i) = (0..n)
                    .map(|k| (s.next + k) % n)
                    .find(|&i| s.members.get(i).is_some_and(eligible))
                else {
                    return Pick::Refused;
                };
                s.next = (i + 1) % n;
                i
            }
            Sched::SourceHash => {
                // Fibonacci hashing of the address: neighbouring clients spread.
                let h = u64::from(u32::from(client)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
                let k = (h % healthy as u64) as usize;
                let Some(i) = (0..n)
                    .filter(|&i| s.members.get(i).is_some_and(eligible))
                    .nth(k)
                else {
                    return Pick::Refused;
                };
                i
            }
        };
        let Some(m) = s.members.get_mut(i) else {
            return Pick::Refused;
        };
        let port = m.backend.port.unwrap_or(dst.port);
        Pick::To(Endpoint::new(m.backend.addr, port), m.id)
    }

    /// Marks every backend at `addr` of the service at `vip` healthy or not; true if
    /// that changed anything.
    pub fn set_health(&mut self, vip: Ipv4Addr, addr: Ipv4Addr, up: bool) -> bool {
        let mut changed = false;
        for s in self.svcs.iter_mut().filter(|s| s.svc.vip == vip) {
            for m in s.members.iter_mut().filter(|m| m.backend.addr == addr) {
                changed |= m.up != up;
                m.up = up;
            }
        }
        changed
    }

    /// Whether the backends at `addr` of the service at `vip` are healthy.
    pub fn healthy(&self, vip: Ipv4Addr, addr: Ipv4Addr) -> bool {
        self.svcs
            .iter()
            .filter(|s| s.svc.vip == vip)
            .flat_map(|s| &s.members)
            .any(|m| m.backend.addr == addr && m.up)
    }

    /// Keeps the packets of a flow leaving the table in its backend's count; the last
    /// flow of a draining backend ends its draining.
    pub fn retire(&mut self, e: &Entry) {
        if e.mark == 0 {
            return;
        }
        if let Some(m) = self.member_mut(e.mark) {
            m.retired += e.counters[0].packets + e.counters[1].packets;
            return;
        }
        if let Some(i) = self.draining.iter().position(|d| d.id == e.mark) {
            let last = self.draining.get_mut(i).is_some_and(|d| {
                // Zero: still being counted by `configure`'s caller (not a last flow).
                let was = d.flows;
                d.flows = was.saturating_sub(1);
                was == 1
            });
            if last {
                self.draining.swap_remove(i);
                self.epoch = self.epoch.wrapping_add(1);
            }
        }
    }

    fn member_mut(&mut self, id: u32) -> Option<&mut Member> {
        self.svcs
            .iter_mut()
            .flat_map(|s| s.members.iter_mut())
            .find(|m| m.id == id)
    }

    /// Every service's backends with their counters; `entries` are the live flows.
    pub fn stats<'a>(
        &self,
        entries: impl Iterator<Item = &'a Entry>,
        now: u64,
    ) -> Vec<(Ipv4Addr, Vec<BackendStats>)> {
        let mut out: Vec<(Ipv4Addr, Vec<BackendStats>)> = self
            .svcs
            .iter()
            .map(|s| {
                let b = s
                    .members
                    .iter()
                    .map(|m| BackendStats {
                        backend: m.backend,
                        up: m.up,
                        active: 0,
                        connections: m.connections,
                        packets: m.retired,
                    })
                    .collect();
                (s.svc.vip, b)
            })
            .collect();
        for e in entries.filter(|e| e.mark != 0) {
            let Some((si, mi)) = self.svcs.iter().enumerate().find_map(|(si, s)| {
                s.members
                    .iter()
                    .position(|m| m.id == e.mark)
                    .map(|mi| (si, mi))
            }) else {
                continue;
            };
            let Some(b) = out.get_mut(si).and_then(|(_, v)| v.get_mut(mi)) else {
                continue;
            };
            b.packets += e.counters[0].packets + e.counters[1].packets;
            let active = !e.is_expired(now)
                && matches!(e.state, State::Udp | State::Tcp(TcpState::Established));
            b.active += u64::from(active);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn be(h: u8) -> Backend {
        Backend {
            addr: Ipv4Addr::new(10, 0, 0, h),
            port: None,
        }
    }

    fn lb(sched: Sched) -> Balancer {
        let mut b = Balancer::default();
        b.configure(&[Service {
            vip: VIP,
            ports: vec![(Proto::Tcp, 80)],
            backends: vec![be(11), be(12), be(13)],
            sched,
        }]);
        b
    }

    fn to(p: Pick) -> Ipv4Addr {
        match p {
            Pick::To(e, _) => e.addr,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_robin_spreads_and_skips_unhealthy() {
        let mut b = lb(Sched::RoundRobin);
        let d = Endpoint::new(VIP, 80);
        let got: Vec<u8> = (0..6)
            .map(|_| to(b.pick(Proto::Tcp, CLIENT, d)).octets()[3])
            .collect();
        assert_eq!(got, [11, 12, 13, 11, 12, 13]);
        assert!(b.set_health(VIP, Ipv4Addr::new(10, 0, 0, 12), false));
        assert!(!b.set_health(VIP, Ipv4Addr::new(10, 0, 0, 12), false));
        let got: Vec<u8> = (0..4)
            .map(|_| to(b.pick(Proto::Tcp, CLIENT, d)).octets()[3])
            .collect();
        assert_eq!(got, [11, 13, 11, 13]);
        for h in [11, 13] {
            b.set_health(VIP, Ipv4Addr::new(10, 0, 0, h), false);
        }
        assert_eq!(b.pick(Proto::Tcp, CLIENT, d), Pick::Refused);
        b.set_health(VIP, Ipv4Addr::new(10, 0, 0, 13), true);
        assert_eq!(to(b.pick(Proto::Tcp, CLIENT, d)).octets()[3], 13);
    }

    #[test]
    fn ports_and_other_addresses() {
        let mut b = lb(Sched::RoundRobin);
        assert_eq!(
            b.pick(Proto::Tcp, CLIENT, Endpoint::new(VIP, 81)),
            Pick::Refused
        );
        assert_eq!(
            b.pick(Proto::Udp, CLIENT, Endpoint::new(VIP, 80)),
            Pick::Refused
        );
        assert_eq!(
            b.pick(Proto::Tcp, CLIENT, Endpoint::new(CLIENT, 80)),
            Pick::NotService
        );
        assert!(b.is_vip(VIP) && !b.is_vip(CLIENT));
        assert!(b.is_reply_source(Proto::Tcp, Endpoint::new(Ipv4Addr::new(10, 0, 0, 11), 80)));
        assert!(!b.is_reply_source(Proto::Tcp, Endpoint::new(Ipv4Addr::new(10, 0, 0, 11), 81)));
        assert!(!b.is_reply_source(Proto::Udp, Endpoint::new(Ipv4Addr::new(10, 0, 0, 11), 80)));
    }

    #[test]
    fn backend_port_and_every_port() {
        let mut b = Balancer::default();
        b.configure(&[
            Service {
                vip: VIP,
                ports: vec![(Proto::Tcp, 80)],
                backends: vec![Backend {
                    addr: Ipv4Addr::new(10, 0, 0, 11),
                    port: Some(8080),
                }],
                sched: Sched::RoundRobin,
            },
            Service {
                vip: Ipv4Addr::new(10, 0, 0, 101),
                ports: vec![],
                backends: vec![be(12)],
                sched: Sched::RoundRobin,
            },
        ]);
        assert!(matches!(
            b.pick(Proto::Tcp, CLIENT, Endpoint::new(VIP, 80)),
            Pick::To(e, _) if e.port == 8080
        ));
        assert!(matches!(
            b.pick(Proto::Udp, CLIENT, Endpoint::new(Ipv4Addr::new(10, 0, 0, 101), 5353)),
            Pick::To(e, _) if e.port == 5353
        ));
        assert!(b.is_reply_source(Proto::Tcp, Endpoint::new(Ipv4Addr::new(10, 0, 0, 11), 8080)));
        assert!(b.is_reply_source(Proto::Udp, Endpoint::new(Ipv4Addr::new(10, 0, 0, 12), 1)));
    }

    #[test]
    fn source_hash_is_stable_and_spreads() {
        let mut b = lb(Sched::SourceHash);
        let d = Endpoint::new(VIP, 80);
        let first = to(b.pick(Proto::Tcp, CLIENT, d));
        for _ in 0..10 {
            assert_eq!(to(b.pick(Proto::Tcp, CLIENT, d)), first);
        }
        let mut seen = std::collections::HashSet::new();
        for h in 1..=200u8 {
            seen.insert(to(b.pick(Proto::Tcp, Ipv4Addr::new(10, 0, 1, h), d)));
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn reconfigure_keeps_state_of_backends_that_stay() {
        let mut b = lb(Sched::RoundRobin);
        let d = Endpoint::new(VIP, 80);
        let Pick::To(_, id11) = b.pick(Proto::Tcp, CLIENT, d) else {
            panic!()
        };
        b.count(id11);
        b.set_health(VIP, Ipv4Addr::new(10, 0, 0, 12), false);
        b.configure(&[Service {
            vip: VIP,
            ports: vec![(Proto::Tcp, 80)],
            backends: vec![be(11), be(12), be(14)],
            sched: Sched::RoundRobin,
        }]);
        assert!(!b.healthy(VIP, Ipv4Addr::new(10, 0, 0, 12)));
        assert!(b.healthy(VIP, Ipv4Addr::new(10, 0, 0, 14)));
        let s = b.stats(std::iter::empty(), 0);
        assert_eq!(s[0].1[0].connections, 1);
        assert_eq!(s[0].1[2].connections, 0);
        let ids: Vec<u32> = b.svcs[0].members.iter().map(|m| m.id).collect();
        assert_eq!(ids[0], id11);
        assert!(ids.iter().all(|&i| i != 0));
        assert_eq!(ids.len(), 3);
        assert_ne!(ids[2], ids[1]);
    }
}
