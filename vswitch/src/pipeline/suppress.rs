//! ARP suppression on cluster overlays, as Docker's overlay driver does with its
//! vxlan device's `proxy` flag: the cluster knows every endpoint's address and MAC, so
//! an ARP request for one of them is answered by the switch on the port it came from,
//! instead of being flooded to every host of the overlay. The table belongs to the
//! bridge ([`crate::dataplane::BridgeRt::suppress`]); the controller fills it from the
//! cluster's endpoints.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::Arrival;
use crate::wire::MacAddr;

/// Addresses the bridge answers ARP for, and with which MAC.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArpTable {
    map: HashMap<Ipv4Addr, MacAddr>,
}

impl ArpTable {
    /// A table of these (address, MAC) pairs.
    pub fn new(entries: impl IntoIterator<Item = (Ipv4Addr, MacAddr)>) -> Self {
        ArpTable {
            map: entries.into_iter().collect(),
        }
    }

    /// The MAC of `ip`, if the table has it.
    pub fn get(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.map.get(&ip).copied()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Length of the reply frame: an Ethernet header and an ARP packet, padded to the
/// Ethernet minimum (without FCS).
pub const REPLY_LEN: usize = 60;

/// The MAC to answer `a` with: `a` must be an untagged ARP request for an address of
/// `table`. Not answered: a request from the address's owner itself (a duplicate address
/// probe) and a gratuitous ARP (sender and target address the same), which must reach
/// their neighbours as sent.
#[inline]
pub fn answer(table: &ArpTable, a: &Arrival<'_>) -> Option<MacAddr> {
    if a.next_type != wire::ethertype::ARP || a.tags.tag_in_frame || a.tags.class.vid != 0 {
        return None;
    }
    let p = wire::arp::ArpPacket::new_checked(a.frame.get(a.next_at..)?).ok()?;
    let r = wire::ArpRepr::parse(&p).ok()?;
    if r.op != wire::arp::OP_REQUEST || r.spa == r.tpa {
        return None;
    }
    table
        .get(r.tpa)
        .filter(|m| *m != r.sha && *m != a.eth.src())
}

/// Writes the reply to request `a` (checked by [`answer`]) from `mac` into `out`.
pub fn reply(a: &Arrival<'_>, mac: MacAddr, out: &mut [u8; REPLY_LEN]) -> bool {
    let Some(req) = a
        .frame
        .get(a.next_at..)
        .and_then(|b| wire::arp::ArpPacket::new_checked(b).ok())
        .and_then(|p| wire::ArpRepr::parse(&p).ok())
    else {
        return false;
    };
    out.fill(0);
    out[0..6].copy_from_slice(&req.sha.0);
    out[6..12].copy_from_slice(&mac.0);
    out[12..14].copy_from_slice(&wire::ethertype::ARP.to_be_bytes());
    let rep = wire::ArpRepr {
        op: wire::arp::OP_REPLY,
        sha: mac,
        spa: req.tpa,
        tha: req.sha,
        tpa: req.spa,
    };
    match wire::arp::ArpPacket::new_checked(&mut out[14..]) {
        Ok(mut p) => {
            rep.emit(&mut p);
            true
        }
        Err(_) => false,
    }
}
