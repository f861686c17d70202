//! Stage 4a, divert: a service backend's reply to a client in its own network goes to
//! the gateway instead of straight to the client. The VIP's flows are DNAT'ed without
//! SNAT (the backend sees the client's real address), so the backend answers the
//! client directly at L2, and the reply would arrive from the backend's address where
//! the client expects the VIP's. Linux has the same problem with kube-proxy on a bridge
//! and solves it with `br_netfilter`, which makes bridged packets pass conntrack; here
//! the bridge hands exactly the packets that can be such replies (IPv4 TCP/UDP from a
//! backend's service port, and ICMP errors from a backend, which may be about a VIP
//! flow) to the gateway, whose conntrack translates them back (or, for a flow that
//! never went through the VIP, routes them on unchanged).
//!
//! A backend taken out of its service (`set-backends`, `del-service`) keeps its TCP
//! connections, so its replies must still be handed over while they last. The
//! controller builds [`Replies`] from the configuration alone, which no longer names
//! it; the gateway, which knows when its last flow has gone, keeps the bridge's
//! [`Lingering`] endpoints up to date instead. One `Lingering` per bridge is shared by
//! every snapshot's `Replies` of that bridge, so a new snapshot never starts without
//! them.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;
use nat::tuple::Proto;

/// Endpoints whose packets may be replies of a service's flows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// (address, IP protocol, source port).
    endpoints: HashSet<([u8; 4], u8, u16)>,
    /// Backends of services that serve every port: any TCP/UDP packet from them.
    any_port: HashSet<[u8; 4]>,
    /// Every backend address: an ICMP error from one may be about a VIP flow.
    addrs: HashSet<[u8; 4]>,
}

impl Sources {
    /// The set for `sources` (what [`nat::lb::Service::reply_sources`] gives).
    pub fn new(sources: impl IntoIterator<Item = (Ipv4Addr, Option<(Proto, u16)>)>) -> Self {
        let mut r = Sources::default();
        for (a, pp) in sources {
            r.addrs.insert(a.octets());
            match pp {
                Some((p, port)) => {
                    r.endpoints.insert((a.octets(), p.number(), port));
                }
                None => {
                    r.any_port.insert(a.octets());
                }
            }
        }
        r
    }

    fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// TCP or UDP from one of the endpoints.
    #[inline]
    fn l4(&self, src: [u8; 4], proto: u8, l4: &[u8]) -> bool {
        if self.any_port.contains(&src) {
            return true;
        }
        match wire::bytes::be16(l4, 0) {
            Some(sport) => self.endpoints.contains(&(src, proto, sport)),
            None => false,
        }
    }
}

/// The endpoints of backends that left their service while TCP flows of theirs go on,
/// written by the gateway (under its lock) and read by every worker without one.
pub struct Lingering {
    /// Cheap test for the common case: nobody lingers.
    any: AtomicBool,
    set: ArcSwapOption<Sources>,
    /// The NAT scheduler's epoch the set was made under (`u64::MAX`: never made).
    epoch: AtomicU64,
}

impl std::fmt::Debug for Lingering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lingering")
            .field("set", &self.set.load().as_deref().cloned())
            .finish()
    }
}

impl Default for Lingering {
    fn default() -> Self {
        Self::new()
    }
}

impl Lingering {
    fn new() -> Self {
        Lingering {
            any: AtomicBool::new(false),
            set: ArcSwapOption::empty(),
            epoch: AtomicU64::new(u64::MAX),
        }
    }

    /// The epoch [`Lingering::store`] was last given.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Replaces the endpoints (made under scheduler epoch `epoch`).
    pub fn store(&self, s: Sources, epoch: u64) {
        let any = !s.is_empty();
        self.set.store(any.then(|| Arc::new(s)));
        self.any.store(any, Ordering::Release);
        self.epoch.store(epoch, Ordering::Release);
    }

    #[inline]
    fn with(&self, f: impl FnOnce(&Sources) -> bool) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        self.set.load().as_deref().is_some_and(f)
    }
}

/// The bridges' [`Lingering`] endpoints by bridge name. The controller makes a bridge's
/// [`Replies`] from its configuration alone, in a function that sees nothing else, so
/// this is where a new one finds the endpoints the gateway keeps for the bridge. Only
/// snapshot builds take the lock, never a packet.
static LINGERING: Mutex<Vec<(String, Weak<Lingering>)>> = Mutex::new(Vec::new());

/// Bridge `bridge`'s lingering endpoints: the ones its current [`Replies`] (or the
/// gateway) hold, or new empty ones.
pub fn lingering(bridge: &str) -> Arc<Lingering> {
    let mut reg = LINGERING.lock().unwrap_or_else(|p| p.into_inner());
    reg.retain(|(_, w)| w.strong_count() > 0);
    if let Some(l) = reg
        .iter()
        .find(|(n, _)| n == bridge)
        .and_then(|(_, w)| w.upgrade())
    {
        return l;
    }
    let l = Arc::new(Lingering::new());
    reg.push((bridge.to_string(), Arc::downgrade(&l)));
    l
}

/// Whether bridge `bridge` has lingering endpoints now (a bridge whose last service was
/// deleted still needs its [`Replies`] while they last).
pub fn lingers(bridge: &str) -> bool {
    let reg = LINGERING.lock().unwrap_or_else(|p| p.into_inner());
    reg.iter()
        .filter(|(n, _)| n == bridge)
        .filter_map(|(_, w)| w.upgrade())
        .any(|l| l.any.load(Ordering::Acquire))
}

/// What a bridge's packets are diverted by: its services' backends, and the ones that
/// left but linger.
#[derive(Debug, Clone, Default)]
pub struct Replies {
    current: Sources,
    lingering: Arc<Lingering>,
}

impl PartialEq for Replies {
    fn eq(&self, o: &Self) -> bool {
        self.current == o.current && Arc::ptr_eq(&self.lingering, &o.lingering)
    }
}

impl Replies {
    /// The set for `sources` (what [`nat::lb::Service::reply_sources`] gives), with
    /// lingering endpoints of its own (none).
    pub fn new(sources: impl IntoIterator<Item = (Ipv4Addr, Option<(Proto, u16)>)>) -> Self {
        Replies {
            current: Sources::new(sources),
            lingering: Arc::new(Lingering::new()),
        }
    }

    /// The same, with `lingering` (see [`lingering`]) for the backends that left.
    pub fn with_lingering(mut self, lingering: Arc<Lingering>) -> Self {
        self.lingering = lingering;
        self
    }

    /// The lingering endpoints it looks at.
    pub fn lingering(&self) -> &Arc<Lingering> {
        &self.lingering
    }

    /// True if no packet needs diverting.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty() && !self.lingering.any.load(Ordering::Acquire)
    }

    /// True if `payload` (what follows an IPv4 EtherType) is TCP or UDP from one of the
    /// current backends' endpoints. A fragment past the first carries no ports and is
    /// not looked at.
    #[inline]
    pub fn matches(&self, payload: &[u8]) -> bool {
        let Ok(ip) = wire::ipv4::Ipv4Packet::new_checked(payload) else {
            return false;
        };
        let proto = ip.protocol();
        if proto != wire::ip_proto::TCP && proto != wire::ip_proto::UDP {
            return false;
        }
        self.current.l4(ip.src().octets(), proto, ip.payload())
    }

    /// True if `payload` goes to the gateway: [`Replies::matches`], TCP/UDP from a
    /// lingering backend's endpoint, or an ICMP error from a backend (current or
    /// lingering), which the gateway translates if it is about a VIP flow (a UDP port
    /// unreachable) and otherwise routes on as it is.
    #[inline]
    pub fn diverts(&self, payload: &[u8]) -> bool {
        let Ok(ip) = wire::ipv4::Ipv4Packet::new_checked(payload) else {
            return false;
        };
        let src = ip.src().octets();
        match ip.protocol() {
            p @ (wire::ip_proto::TCP | wire::ip_proto::UDP) => {
                self.current.l4(src, p, ip.payload())
                    || self.lingering.with(|s| s.l4(src, p, ip.payload()))
            }
            wire::ip_proto::ICMP => {
                let error = ip.frag_offset() == 0
                    && wire::icmp::IcmpPacket::new_checked(ip.payload())
                        .is_ok_and(|m| m.is_error());
                error
                    && (self.current.addrs.contains(&src)
                        || self.lingering.with(|s| s.addrs.contains(&src)))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(src: [u8; 4], proto: u8, sport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&[10, 0, 0, 9]);
        let c = wire::checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p
    }

    /// An ICMP message of type `ty` from `src` (its first bytes are the type, code).
    fn icmp(src: [u8; 4], ty: u8) -> Vec<u8> {
        ip(src, 1, u16::from(ty) << 8)
    }

    #[test]
    fn matches_backend_replies_only() {
        let r = Replies::new([
            (Ipv4Addr::new(10, 0, 0, 2), Some((Proto::Tcp, 80))),
            (Ipv4Addr::new(10, 0, 0, 3), None),
        ]);
        assert!(r.matches(&ip([10, 0, 0, 2], 6, 80)));
        assert!(!r.matches(&ip([10, 0, 0, 2], 6, 81)));
        assert!(!r.matches(&ip([10, 0, 0, 2], 17, 80)));
        assert!(!r.matches(&ip([10, 0, 0, 4], 6, 80)));
        assert!(r.matches(&ip([10, 0, 0, 3], 17, 5353)));
        assert!(!r.matches(&ip([10, 0, 0, 3], 1, 0)));
        assert!(!r.matches(&[0x45, 0]));
        assert!(Replies::default().is_empty() && !r.is_empty());
        // `diverts` says yes to the same TCP/UDP.
        for p in [ip([10, 0, 0, 2], 6, 80), ip([10, 0, 0, 3], 17, 5353)] {
            assert!(r.diverts(&p));
        }
        assert!(!r.diverts(&ip([10, 0, 0, 2], 6, 81)));
    }

    #[test]
    fn icmp_errors_from_backends_are_diverted() {
        let r = Replies::new([(Ipv4Addr::new(10, 0, 0, 2), Some((Proto::Udp, 53)))]);
        // Port unreachable, time exceeded: yes; echo, or from another station: no.
        assert!(r.diverts(&icmp([10, 0, 0, 2], 3)));
        assert!(r.diverts(&icmp([10, 0, 0, 2], 11)));
        assert!(!r.diverts(&icmp([10, 0, 0, 2], 0)));
        assert!(!r.diverts(&icmp([10, 0, 0, 2], 8)));
        assert!(!r.diverts(&icmp([10, 0, 0, 4], 3)));
        // `matches` keeps to TCP/UDP.
        assert!(!r.matches(&icmp([10, 0, 0, 2], 3)));
    }

    #[test]
    fn lingering_backends_are_diverted_while_they_linger() {
        let l = lingering("test-lingering-br");
        let r = Replies::new([(Ipv4Addr::new(10, 0, 0, 2), Some((Proto::Tcp, 80)))])
            .with_lingering(l.clone());
        let gone = ip([10, 0, 0, 7], 6, 80);
        assert!(!r.diverts(&gone) && !lingers("test-lingering-br"));
        l.store(
            Sources::new([(Ipv4Addr::new(10, 0, 0, 7), Some((Proto::Tcp, 80)))]),
            5,
        );
        assert_eq!(l.epoch(), 5);
        assert!(r.diverts(&gone) && r.diverts(&icmp([10, 0, 0, 7], 3)));
        assert!(!r.diverts(&ip([10, 0, 0, 7], 6, 81)));
        assert!(!r.matches(&gone), "matches: the current backends only");
        assert!(lingers("test-lingering-br"));
        // A later snapshot's Replies of the bridge finds the same endpoints.
        let again = Replies::new([]).with_lingering(lingering("test-lingering-br"));
        assert!(again.diverts(&gone) && !again.is_empty());
        assert_eq!(again.lingering().epoch(), 5);
        l.store(Sources::default(), 6);
        assert!(!r.diverts(&gone) && again.is_empty());
        assert!(!lingers("test-lingering-br"));
    }
}
