//! Port security at run time: a port's address binding (what it may send from) and its
//! storm limit (how much broadcast, multicast and unknown unicast it may bring in). The
//! pipeline's guard stage asks [`Binding::permits`], its police stage
//! [`StormBucket::admit`]; the controller builds both from a port's config.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use ctl::{PortBinding, PortKind};

use crate::config::{ConfigError, PortConf};
use crate::wire::MacAddr;

/// A bound port's addresses, as the guard stage compares them: the MAC and the IPv4
/// addresses, each as the four bytes it has on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub mac: MacAddr,
    /// Empty: the binding is on the MAC alone.
    pub ips: Box<[[u8; 4]]>,
}

/// Four bytes of `b` at `r` (`None` past its end), as an array: compared inline, where a
/// slice comparison is a call.
#[inline]
fn four(b: &[u8], r: std::ops::Range<usize>) -> Option<[u8; 4]> {
    b.get(r)?.try_into().ok()
}

/// The BOOTP ports: a DHCP client sends from 68 to 67 before it has an address.
const DHCP_CLIENT: u16 = 68;
const DHCP_SERVER: u16 = 67;

impl Binding {
    /// The run-time form of a configured binding (`None` if its MAC does not parse,
    /// which the config's validation has already refused).
    pub fn new(b: &PortBinding) -> Option<Self> {
        Some(Binding {
            mac: b.mac.parse().ok()?,
            ips: b.ips.iter().map(|a| a.octets()).collect(),
        })
    }

    /// Whether a frame from source MAC `src`, of EtherType `ethertype` (behind any outer
    /// tag) with `payload`, is the port's own: its source MAC; for IPv4 (when bound to
    /// addresses) one of its addresses as source, or 0.0.0.0 in a DHCP client's UDP
    /// 68 → 67; for ARP its MAC as sender, and one of its addresses (or 0.0.0.0, an RFC
    /// 5227 probe, which claims nothing) as sender address, so a gratuitous ARP for its
    /// own address passes and one for another's does not. A second tag behind the outer
    /// one is refused: the frame behind it would go unchecked, and an endpoint has no use
    /// for one. Fields are read at their offsets without the full header checks (those
    /// are `ip-checks`'): a frame too short to show its source is refused.
    #[inline]
    pub fn permits(&self, src: MacAddr, ethertype: u16, payload: &[u8]) -> bool {
        if src != self.mac {
            return false;
        }
        match ethertype {
            wire::ethertype::IPV4 if !self.ips.is_empty() => {
                let Some(from) = four(payload, wire::ipv4::field::SRC) else {
                    return false;
                };
                self.owns(from) || (from == [0; 4] && is_dhcp_client(payload))
            }
            wire::ethertype::ARP => {
                let (Some(sha), Some(spa)) = (
                    MacAddr::read(payload, wire::arp::field::SHA.start),
                    four(payload, wire::arp::field::SPA),
                ) else {
                    return false;
                };
                sha == self.mac && (self.ips.is_empty() || self.owns(spa) || spa == [0; 4])
            }
            wire::ethertype::VLAN | wire::ethertype::QINQ => false,
            _ => true,
        }
    }

    #[inline]
    fn owns(&self, addr: [u8; 4]) -> bool {
        self.ips.contains(&addr)
    }
}

/// UDP from port 68 to 67 in IPv4 packet `ip`.
#[inline]
fn is_dhcp_client(ip: &[u8]) -> bool {
    let Some(&ver_ihl) = ip.get(wire::ipv4::field::VER_IHL) else {
        return false;
    };
    if ip.get(wire::ipv4::field::PROTOCOL) != Some(&wire::ip_proto::UDP) {
        return false;
    }
    let at = usize::from(ver_ihl & 0x0f) * 4;
    let port = |r: std::ops::Range<usize>| {
        ip.get(at + r.start..at + r.end)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    port(wire::udp::field::SRC_PORT) == Some(DHCP_CLIENT)
        && port(wire::udp::field::DST_PORT) == Some(DHCP_SERVER)
}

/// A port's storm limit: a token bucket in its GCRA form (one timestamp instead of a
/// count and a time), over the broadcast, multicast and unknown unicast it brings in.
///
/// A port's frames enter the pipeline on one worker only (its owner reads its ring or
/// TAP; a tunnel's datagrams are read by its VTEP's one worker; the gateway's frames by
/// the routing worker), so the bucket is updated with a plain load and store, no lock
/// and no read-modify-write; were two threads ever to race on it, the limit would be
/// off by a frame, never unsafe.
#[derive(Debug, Default)]
pub struct StormBucket {
    /// Frames per second; 0: no limit. Written by the controller.
    rate: AtomicU32,
    /// The theoretical arrival time of the next conforming frame, in [`now_ns`] time.
    tat: AtomicU64,
}

/// The smallest burst a limit lets through at once; otherwise the burst is a tenth of a
/// second's worth of its rate. Small limits still pass an ARP exchange or a DHCP
/// handshake whole.
const BURST_MIN: u64 = 32;

impl StormBucket {
    /// Sets the limit (0: off).
    pub fn set_rate(&self, pps: u32) {
        self.rate.store(pps, Ordering::Relaxed);
    }

    /// The limit (0: off).
    #[inline]
    pub fn rate(&self) -> u32 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Whether one more frame at `now` (nanoseconds, [`now_ns`]) fits a limit of `pps`
    /// (not 0) frames a second, taking its token if it does.
    #[inline]
    pub fn admit(&self, pps: u32, now: u64) -> bool {
        let interval = 1_000_000_000 / u64::from(pps.max(1));
        let burst = (u64::from(pps) / 10).max(BURST_MIN);
        let tat = self.tat.load(Ordering::Relaxed).max(now);
        if tat - now > burst.saturating_sub(1) * interval {
            return false;
        }
        self.tat.store(tat + interval, Ordering::Relaxed);
        true
    }
}

/// Nanoseconds on a monotonic clock (since the first call), as [`StormBucket`] counts.
#[inline]
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The checks a port's security settings get with the whole config: a binding is for
/// ports an endpoint sits behind (not a tunnel, behind which are many), and must be
/// well formed; a storm limit within bounds.
pub fn check_conf(p: &PortConf) -> Result<(), ConfigError> {
    if let Some(b) = &p.allowed {
        if matches!(p.kind, PortKind::Vxlan | PortKind::Gateway) {
            return Err(ConfigError::Invalid(format!(
                "a {} port cannot be bound to addresses (many hosts sit behind it)",
                p.kind.as_str()
            )));
        }
        ctl::portsec::binding(b)?;
    }
    ctl::portsec::storm(p.storm_pps)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(ips: &[[u8; 4]]) -> Binding {
        Binding {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ips: ips.into(),
        }
    }

    fn ipv4(src: [u8; 4], proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn arp(sha: [u8; 6], spa: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[8..14].copy_from_slice(&sha);
        p[14..18].copy_from_slice(&spa);
        p
    }

    const ME: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn a_bound_port_sends_only_from_its_own_addresses() {
        let b = bound(&[[10, 0, 0, 1]]);
        let (me, other) = (MacAddr(ME), MacAddr(OTHER));
        let ip = wire::ethertype::IPV4;
        let arp_t = wire::ethertype::ARP;
        assert!(b.permits(me, ip, &ipv4([10, 0, 0, 1], 1, 0, 0)));
        assert!(!b.permits(other, ip, &ipv4([10, 0, 0, 1], 1, 0, 0)));
        assert!(!b.permits(me, ip, &ipv4([10, 0, 0, 2], 1, 0, 0)));
        assert!(
            b.permits(me, ip, &ipv4([0; 4], 17, 68, 67)),
            "DHCP discover"
        );
        assert!(!b.permits(me, ip, &ipv4([0; 4], 17, 68, 53)));
        assert!(!b.permits(me, ip, &ipv4([0; 4], 6, 68, 67)));
        assert!(
            !b.permits(me, ip, &[0x45; 10]),
            "too short to show a source"
        );
        assert!(b.permits(me, arp_t, &arp(ME, [10, 0, 0, 1])), "gratuitous");
        assert!(b.permits(me, arp_t, &arp(ME, [0; 4])), "probe");
        assert!(!b.permits(me, arp_t, &arp(ME, [10, 0, 0, 2])), "poisoning");
        assert!(!b.permits(me, arp_t, &arp(OTHER, [10, 0, 0, 1])));
        assert!(!b.permits(me, arp_t, &[0; 12]));
        assert!(!b.permits(me, wire::ethertype::VLAN, &ipv4([10, 0, 0, 1], 1, 0, 0)));
        assert!(b.permits(me, wire::ethertype::IPV6, &[0; 40]));
        assert!(!b.permits(other, wire::ethertype::IPV6, &[0; 40]));
        // Bound to the MAC alone: any IPv4 source, ARP from its MAC.
        let l2 = bound(&[]);
        assert!(l2.permits(me, ip, &ipv4([10, 9, 9, 9], 1, 0, 0)));
        assert!(l2.permits(me, arp_t, &arp(ME, [10, 9, 9, 9])));
        assert!(!l2.permits(me, arp_t, &arp(OTHER, [10, 9, 9, 9])));
    }

    #[test]
    fn the_storm_bucket_passes_its_burst_then_its_rate() {
        let s = StormBucket::default();
        let t0 = 5_000_000_000;
        // 1000 pps: a burst of 100 at once, then one per millisecond.
        let passed = (0..1000).filter(|_| s.admit(1000, t0)).count();
        assert_eq!(passed, 100);
        assert!(!s.admit(1000, t0 + 500_000));
        assert!(s.admit(1000, t0 + 1_000_000));
        assert!(!s.admit(1000, t0 + 1_000_000));
        // After a quiet second the burst is back, no more.
        let later = t0 + 2_000_000_000;
        assert_eq!((0..1000).filter(|_| s.admit(1000, later)).count(), 100);
        // A small rate still lets a burst of BURST_MIN through.
        let s = StormBucket::default();
        assert_eq!((0..100).filter(|_| s.admit(1, t0)).count(), 32);
    }
}
