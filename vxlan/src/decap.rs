//! What arrives on a VTEP's socket: the checks on a datagram (VXLAN header + inner
//! frame; the kernel has already taken off the outer IP and UDP headers), and the
//! table that says which tunnel port a VNI belongs to and which of its remotes sent it.
//! Every refusal is a [`DropReason`], so the daemon can count drops by cause.

use std::net::IpAddr;
use std::ops::Range;

use crate::header::{Header, HEADER_LEN};

metrics_decl::counters! {
    /// Why a datagram was dropped. Declared once: the name is what `vsctl stats` prints
    /// and the doc is the Prometheus help.
    #[derive(Debug, thiserror::Error)]
    pub enum DropReason {
        /// Too short for a VXLAN header and an inner Ethernet header.
        Truncated => "vxlan_truncated" [error("datagram too short for a VXLAN header and an Ethernet header")],
        /// The I flag is clear.
        BadFlags => "vxlan_bad_flags" [error("VXLAN header without the I flag")],
        /// No tunnel has this VNI.
        UnknownVni => "vxlan_unknown_vni" [error("no tunnel has this VNI")],
        /// The sender is not a remote of the VNI's tunnel.
        UnknownRemote => "vxlan_unknown_remote" [error("sender is not a remote of the tunnel")],
    }
}

impl DropReason {
    /// The counter name (kept for callers; the same as [`DropReason::name`]).
    pub fn as_str(self) -> &'static str {
        self.name()
    }
}

/// Inner Ethernet header length: the least an inner frame has.
const ETH_LEN: usize = 14;

/// Smallest datagram accepted: a VXLAN header and an inner Ethernet header.
pub const MIN_DATAGRAM: usize = HEADER_LEN + ETH_LEN;

/// Checks a datagram's VXLAN header; returns the VNI and where the inner frame starts
/// (always [`HEADER_LEN`]).
pub fn parse(datagram: &[u8]) -> Result<(u32, usize), DropReason> {
    if datagram.len() < MIN_DATAGRAM {
        return Err(DropReason::Truncated);
    }
    let h = Header::new_checked(datagram).ok_or(DropReason::Truncated)?;
    if !h.vni_valid() {
        return Err(DropReason::BadFlags);
    }
    Ok((h.vni(), HEADER_LEN))
}

/// A VNI's tunnel: its port and its remotes with their slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tunnel {
    /// The tunnel port's ID in the switch.
    pub port: u32,
    /// Remote VTEP addresses (IPv4-mapped IPv6 stored as IPv4) and their slot IDs (≥ 1).
    pub remotes: Vec<(IpAddr, u16)>,
}

impl Tunnel {
    /// The slot of the remote at `addr` (IPv4-mapped IPv6 matches its IPv4 form).
    #[inline]
    pub fn slot_of(&self, addr: IpAddr) -> Option<u16> {
        let addr = canonical(addr);
        // A tunnel has a handful of remotes: a scan beats any index.
        self.remotes
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, s)| *s)
    }

    /// The address of the remote in `slot`.
    pub fn addr_of(&self, slot: u16) -> Option<IpAddr> {
        self.remotes
            .iter()
            .find(|(_, s)| *s == slot)
            .map(|(a, _)| *a)
    }
}

/// A datagram that belongs to a tunnel: where to hand its inner frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decap {
    /// The datagram's VNI.
    pub vni: u32,
    /// The tunnel port.
    pub port: u32,
    /// The slot of the remote that sent it.
    pub remote: u16,
    /// Where the inner frame is in the datagram.
    pub inner: Range<usize>,
}

/// VNI → tunnel, for one VTEP. Built by the control side, read by the datapath.
#[derive(Debug, Clone, Default)]
pub struct VtepTable {
    /// Sorted by VNI: a VTEP carries few VNIs, and a binary search over a flat vector
    /// is cheaper than hashing on every datagram.
    vnis: Vec<(u32, Tunnel)>,
}

/// IPv4-mapped IPv6 addresses compare as their IPv4 form (a dual-stack socket reports
/// IPv4 senders that way).
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
        v4 => v4,
    }
}

impl VtepTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the tunnel of `vni`; returns the one it replaces. A VNI above
    /// [`crate::header::VNI_MAX`] is stored but can never match a datagram.
    pub fn insert(&mut self, vni: u32, port: u32, remotes: Vec<(IpAddr, u16)>) -> Option<Tunnel> {
        let remotes = remotes
            .into_iter()
            .map(|(a, s)| (canonical(a), s))
            .collect();
        let t = Tunnel { port, remotes };
        match self.vnis.binary_search_by_key(&vni, |(v, _)| *v) {
            Ok(i) => self
                .vnis
                .get_mut(i)
                .map(|slot| std::mem::replace(&mut slot.1, t)),
            Err(i) => {
                self.vnis.insert(i, (vni, t));
                None
            }
        }
    }

    /// Removes the tunnel of `vni`.
    pub fn remove(&mut self, vni: u32) -> Option<Tunnel> {
        let i = self.vnis.binary_search_by_key(&vni, |(v, _)| *v).ok()?;
        Some(self.vnis.remove(i).1)
    }

    /// The tunnel of `vni`.
    #[inline]
    pub fn get(&self, vni: u32) -> Option<&Tunnel> {
        let i = self.vnis.binary_search_by_key(&vni, |(v, _)| *v).ok()?;
        self.vnis.get(i).map(|(_, t)| t)
    }

    /// Tunnels in VNI order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Tunnel)> {
        self.vnis.iter().map(|(v, t)| (*v, t))
    }

    /// Tunnels in the table.
    pub fn len(&self) -> usize {
        self.vnis.len()
    }

    /// True if no tunnel is in the table.
    pub fn is_empty(&self) -> bool {
        self.vnis.is_empty()
    }

    /// Checks a datagram from `src`: its header, its VNI, its sender.
    #[inline]
    pub fn classify(&self, src: IpAddr, datagram: &[u8]) -> Result<Decap, DropReason> {
        let (vni, at) = parse(datagram)?;
        let t = self.get(vni).ok_or(DropReason::UnknownVni)?;
        let remote = t.slot_of(src).ok_or(DropReason::UnknownRemote)?;
        Ok(Decap {
            vni,
            port: t.port,
            remote,
            inner: at..datagram.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::encode;
    use proptest::prelude::*;

    fn dgram(vni: u32, inner: usize) -> Vec<u8> {
        let mut d = encode(vni).to_vec();
        d.resize(HEADER_LEN + inner, 0xab);
        d
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_checks_length_and_flag() {
        assert_eq!(parse(&dgram(7, 14)), Ok((7, 8)));
        assert_eq!(parse(&dgram(7, 13)), Err(DropReason::Truncated));
        assert_eq!(parse(&[]), Err(DropReason::Truncated));
        let mut d = dgram(7, 14);
        d[0] = 0xf7; // every flag but I
        assert_eq!(parse(&d), Err(DropReason::BadFlags));
        // Reserved bits are ignored on receipt.
        let mut d = dgram(7, 14);
        d[0] = 0xff;
        d[1..4].copy_from_slice(&[1, 2, 3]);
        d[7] = 9;
        assert_eq!(parse(&d), Ok((7, 8)));
    }

    #[test]
    fn classify_by_vni_and_remote() {
        let mut t = VtepTable::new();
        let (a, b) = (ip("198.51.100.2"), ip("198.51.100.3"));
        assert!(t.insert(42, 7, vec![(a, 1), (b, 2)]).is_none());
        let d = t.classify(b, &dgram(42, 60)).unwrap();
        assert_eq!((d.vni, d.port, d.remote, d.inner), (42, 7, 2, 8..68));
        let mapped = ip("::ffff:198.51.100.2");
        assert_eq!(t.classify(mapped, &dgram(42, 60)).unwrap().remote, 1);
        assert_eq!(
            t.classify(ip("198.51.100.9"), &dgram(42, 60)),
            Err(DropReason::UnknownRemote)
        );
        assert_eq!(t.classify(a, &dgram(43, 60)), Err(DropReason::UnknownVni));
        assert_eq!(t.classify(a, &dgram(42, 13)), Err(DropReason::Truncated));
        let mut bad = dgram(42, 60);
        bad[0] = 0;
        assert_eq!(t.classify(a, &bad), Err(DropReason::BadFlags));
        assert_eq!(t.get(42).unwrap().addr_of(2), Some(b));
        assert!(t.remove(42).is_some());
        assert!(t.remove(42).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn mapped_remotes_are_stored_as_ipv4_and_v6_remotes_work() {
        let mut t = VtepTable::new();
        let v6 = ip("2001:db8::1");
        t.insert(5, 1, vec![(ip("::ffff:10.0.0.1"), 3), (v6, 4)]);
        assert_eq!(t.get(5).unwrap().remotes[0].0, ip("10.0.0.1"));
        assert_eq!(t.classify(ip("10.0.0.1"), &dgram(5, 20)).unwrap().remote, 3);
        assert_eq!(t.classify(v6, &dgram(5, 20)).unwrap().remote, 4);
    }

    #[test]
    fn insert_replaces_and_keeps_order() {
        let mut t = VtepTable::new();
        for vni in [30, 10, 20] {
            t.insert(vni, vni, vec![]);
        }
        let old = t.insert(20, 99, vec![(ip("10.0.0.1"), 1)]).unwrap();
        assert_eq!(old.port, 20);
        let order: Vec<(u32, u32)> = t.iter().map(|(v, t)| (v, t.port)).collect();
        assert_eq!(order, vec![(10, 10), (20, 99), (30, 30)]);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn reasons_have_counter_names() {
        assert_eq!(metrics_decl::check::<DropReason>(), Ok(()));
        let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "vxlan_truncated",
                "vxlan_bad_flags",
                "vxlan_unknown_vni",
                "vxlan_unknown_remote"
            ]
        );
        assert!(!DropReason::BadFlags.to_string().is_empty());
    }

    proptest! {
        #[test]
        fn classify_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..64), v4 in any::<[u8; 4]>()) {
            let mut t = VtepTable::new();
            t.insert(1, 1, vec![(ip("10.0.0.1"), 1)]);
            let src = IpAddr::from(v4);
            match t.classify(src, &bytes) {
                Ok(d) => {
                    prop_assert_eq!(d.inner.clone(), 8..bytes.len());
                    prop_assert!(bytes.get(d.inner).is_some());
                }
                Err(DropReason::Truncated) => prop_assert!(bytes.len() < MIN_DATAGRAM),
                Err(_) => prop_assert!(bytes.len() >= MIN_DATAGRAM),
            }
        }
    }
}
