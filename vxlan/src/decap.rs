//! What arrives on a VTEP's socket: checks on the datagram, and the table that says
//! which tunnel port a VNI belongs to and which of its remotes sent it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use crate::header::{Header, HEADER_LEN};

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Too short for a VXLAN header and an inner Ethernet header.
    Truncated,
    /// The I flag is clear.
    BadFlags,
    /// No tunnel has this VNI.
    UnknownVni,
    /// The sender is not a remote of the VNI's tunnel.
    UnknownRemote,
}

impl DropReason {
    /// The counter name.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "vxlan_truncated",
            DropReason::BadFlags => "vxlan_bad_flags",
            DropReason::UnknownVni => "vxlan_unknown_vni",
            DropReason::UnknownRemote => "vxlan_unknown_remote",
        }
    }
}

/// Inner Ethernet header length: the least an inner frame has.
const ETH_LEN: usize = 14;

/// Checks a datagram's VXLAN header; returns the VNI and where the inner frame starts.
pub fn parse(datagram: &[u8]) -> Result<(u32, usize), DropReason> {
    if datagram.len() < HEADER_LEN + ETH_LEN {
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
    pub port: u32,
    pub remotes: Vec<(IpAddr, u16)>,
}

/// A datagram that belongs to a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decap {
    pub vni: u32,
    /// The tunnel port.
    pub port: u32,
    /// The slot of the remote that sent it.
    pub remote: u16,
    /// Where the inner frame is in the datagram.
    pub inner: Range<usize>,
}

/// VNI → tunnel, for one VTEP.
#[derive(Debug, Clone, Default)]
pub struct VtepTable {
    vnis: HashMap<u32, Tunnel>,
}

/// IPv4-mapped IPv6 addresses compare as their IPv4 form.
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
        v4 => v4,
    }
}

impl VtepTable {
    /// Sets the tunnel of `vni`.
    pub fn insert(&mut self, vni: u32, port: u32, remotes: Vec<(IpAddr, u16)>) {
        let remotes = remotes
            .into_iter()
            .map(|(a, s)| (canonical(a), s))
            .collect();
        self.vnis.insert(vni, Tunnel { port, remotes });
    }
    /// Removes the tunnel of `vni`.
    pub fn remove(&mut self, vni: u32) -> Option<Tunnel> {
        self.vnis.remove(&vni)
    }
    /// The tunnel of `vni`.
    pub fn get(&self, vni: u32) -> Option<&Tunnel> {
        self.vnis.get(&vni)
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
    pub fn classify(&self, src: IpAddr, datagram: &[u8]) -> Result<Decap, DropReason> {
        let (vni, at) = parse(datagram)?;
        let t = self.vnis.get(&vni).ok_or(DropReason::UnknownVni)?;
        let src = canonical(src);
        let remote = t
            .remotes
            .iter()
            .find(|(a, _)| *a == src)
            .map(|(_, s)| *s)
            .ok_or(DropReason::UnknownRemote)?;
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

    fn dgram(vni: u32, inner: usize) -> Vec<u8> {
        let mut d = encode(vni).to_vec();
        d.resize(HEADER_LEN + inner, 0xab);
        d
    }

    #[test]
    fn classify_by_vni_and_remote() {
        let mut t = VtepTable::default();
        let a: IpAddr = "198.51.100.2".parse().unwrap();
        let b: IpAddr = "198.51.100.3".parse().unwrap();
        t.insert(42, 7, vec![(a, 1), (b, 2)]);
        let d = t.classify(b, &dgram(42, 60)).unwrap();
        assert_eq!((d.vni, d.port, d.remote, d.inner), (42, 7, 2, 8..68));
        let mapped: IpAddr = "::ffff:198.51.100.2".parse().unwrap();
        assert_eq!(t.classify(mapped, &dgram(42, 60)).unwrap().remote, 1);
        let other: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(
            t.classify(other, &dgram(42, 60)),
            Err(DropReason::UnknownRemote)
        );
        assert_eq!(t.classify(a, &dgram(43, 60)), Err(DropReason::UnknownVni));
        assert_eq!(t.classify(a, &dgram(42, 13)), Err(DropReason::Truncated));
        let mut bad = dgram(42, 60);
        bad[0] = 0;
        assert_eq!(t.classify(a, &bad), Err(DropReason::BadFlags));
        assert_eq!(t.classify(a, &[]), Err(DropReason::Truncated));
        assert!(t.remove(42).is_some());
        assert!(t.is_empty());
    }
}
