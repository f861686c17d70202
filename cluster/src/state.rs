//! What the cluster holds, as plain data: the records stored in etcd and the desired
//! state built from them. Values read from etcd are outside input: they are parsed
//! fallibly, and a bad one is skipped (and logged), never trusted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::RecordError;

/// A node, as stored under `nodes/<name>` (under its lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    pub name: String,
    /// The underlay address the others send VXLAN to.
    pub vtep: Ipv4Addr,
    /// When the node (re)joined, seconds since the Unix epoch.
    pub started: u64,
    /// Its WireGuard public key (base64, as `wg pubkey` prints it): what the other
    /// nodes' encrypted overlay tunnels name it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// An overlay network, as stored under `overlays/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayRecord {
    pub name: String,
    pub vni: u32,
    /// `A.B.C.D/N`, no host bits.
    pub subnet: String,
    pub gateway: Ipv4Addr,
    /// VXLAN inside WireGuard between the nodes (`add-overlay --encrypted`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// An encrypted overlay's WireGuard listen port on every node, allocated by the
    /// cluster (one encrypted tunnel per listen port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
}

/// A container's interface on an overlay, as stored under both
/// `endpoints/<overlay>/<mac>` and `ipam/<overlay>/<ip>` (under its node's lease). The
/// same bytes under both keys: a release compares them (all but the names), so it never
/// deletes a claim that another node made since.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRecord {
    pub overlay: String,
    /// Lower-case, colon-separated.
    pub mac: String,
    pub ip: Ipv4Addr,
    /// The node the container runs on.
    pub node: String,
    /// What the user named the container by.
    #[serde(default)]
    pub container: String,
    /// The names the container answers to in its overlay's DNS on every node
    /// (`attach --name`, `--alias`); left out of the JSON when there are none, so a
    /// record without names reads as before they existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl EndpointRecord {
    /// Its key under `endpoints/`.
    pub fn endpoint_key(&self) -> String {
        keys::endpoint(&self.overlay, &self.mac)
    }
    /// Its key under `ipam/`.
    pub fn ipam_key(&self) -> String {
        keys::ipam(&self.overlay, self.ip)
    }
    /// The value stored under both keys.
    pub fn value(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    /// Whether `other` is the same endpoint, whatever names either carries: names
    /// change while the endpoint lives (`set-names`, a Docker container's name learnt
    /// after it joined), so publishing and releasing match on the rest.
    pub fn same_endpoint(&self, other: &EndpointRecord) -> bool {
        self.overlay == other.overlay
            && self.mac == other.mac
            && self.ip == other.ip
            && self.node == other.node
            && self.container == other.container
    }
}

/// The MAC an endpoint gets when none is asked for: `02:42:` and its address, as
/// Docker's overlay driver does, so it is unique wherever the address is.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Whether `s` is a unicast MAC written lower-case with colons.
pub(crate) fn canonical_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

/// The cluster's desired state as one node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Live nodes (their leases have not expired), by name.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Overlays, by name.
    #[serde(default)]
    pub overlays: BTreeMap<String, OverlayRecord>,
    /// Endpoints per node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, u32>,
    /// The endpoints of each overlay, by MAC.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, BTreeMap<String, EndpointRecord>>,
    /// The services of each overlay, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, BTreeMap<String, crate::ServiceRecord>>,
}

impl State {
    /// Builds the state from the raw keys and values under [`keys::PREFIX`]; bad
    /// entries are skipped with a warning.
    pub fn from_kvs(kvs: &BTreeMap<String, Vec<u8>>) -> State {
        crate::tracker::Tracker::from_pairs(kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .into_state()
    }

    /// The VTEP addresses of every node but `me`, each once, in a stable order.
    pub fn remotes(&self, me: &str, my_vtep: Ipv4Addr) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self
            .nodes
            .values()
            .filter(|n| n.name != me && n.vtep != my_vtep)
            .map(|n| n.vtep)
            .filter(|a| !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The peers of an encrypted overlay from node `me`: every other node that
    /// published a valid public key, with that key, each VTEP once (the first by name
    /// if two claim one), in a stable order. A node without a key cannot be reached
    /// encrypted and is left out.
    pub fn peers(&self, me: &str, my_vtep: Ipv4Addr) -> Vec<(Ipv4Addr, String)> {
        let mut v: Vec<(Ipv4Addr, String)> = Vec::new();
        for n in self.nodes.values() {
            if n.name == me || n.vtep == my_vtep || v.iter().any(|(a, _)| *a == n.vtep) {
                continue;
            }
            if n.vtep.is_unspecified() || n.vtep.is_broadcast() || n.vtep.is_multicast() {
                continue;
            }
            let Some(k) = n.public_key.as_deref().and_then(canonical_key) else {
                continue;
            };
            if v.iter().any(|(_, other)| *other == k) {
                tracing::warn!(node = %n.name, "public key already another node's; skipped");
                continue;
            }
            v.push((n.vtep, k));
        }
        v.sort();
        v
    }
}

/// A WireGuard public key in the form `wg pubkey` prints, or None if it is none.
pub fn canonical_key(s: &str) -> Option<String> {
    wg::PublicKey::parse(s).ok().map(|k| k.to_string())
}

/// Lowest WireGuard listen port the cluster hands an encrypted overlay.
pub const WG_PORT_MIN: u16 = 51820;

/// Lowest VNI the cluster hands out by itself (lower ones can be asked for).
pub const AUTO_VNI_MIN: u32 = 4096;
/// Highest VNI (24 bits).
pub const VNI_MAX: u32 = (1 << 24) - 1;

/// A name for a node or an overlay: 1-15 characters (an overlay's name is its bridge's)
/// of letters, digits, `-`, `_` and `.`, not starting with `-` or `.`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(['-', '.'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Parses `A.B.C.D/N` with no host bits.
pub fn parse_subnet(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    let a: Ipv4Addr = a.parse().ok()?;
    let p: u8 = p.parse().ok()?;
    if p > 32 || u32::from(a) & !mask(p) != 0 {
        return None;
    }
    Some((a, p))
}

fn mask(p: u8) -> u32 {
    if p == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(p))
    }
}

/// The addresses of `subnet` an endpoint may get, lowest first: neither the network's
/// nor its broadcast address, nor the gateway's.
pub fn host_addresses(subnet: (Ipv4Addr, u8), gateway: Ipv4Addr) -> impl Iterator<Item = Ipv4Addr> {
    let (net, p) = subnet;
    let n = u32::from(net) & mask(p);
    let last = n | !mask(p);
    let g = u32::from(gateway);
    (n.saturating_add(1)..last)
        .filter(move |a| *a != g)
        .map(Ipv4Addr::from)
}

/// Whether `ip` is one of [`host_addresses`].
pub fn is_host_address(subnet: (Ipv4Addr, u8), gateway: Ipv4Addr, ip: Ipv4Addr) -> bool {
    let (net, p) = subnet;
    let n = u32::from(net) & mask(p);
    let a = u32::from(ip);
    a & mask(p) == n && a != n && a != n | !mask(p) && ip != gateway
}

/// Whether two subnets share an address.
pub fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let m = mask(a.1.min(b.1));
    u32::from(a.0) & m == u32::from(b.0) & m
}

impl OverlayRecord {
    /// Checks a record's fields.
    pub fn check(&self) -> Result<(), RecordError> {
        if !valid_name(&self.name) || self.name.len() > 15 {
            return Err(RecordError::Name(self.name.clone()));
        }
        if self.vni == 0 || self.vni > VNI_MAX {
            return Err(RecordError::Vni {
                vni: self.vni,
                max: VNI_MAX,
            });
        }
        let (net, p) =
            parse_subnet(&self.subnet).ok_or_else(|| RecordError::Subnet(self.subnet.clone()))?;
        if p > 30 {
            return Err(RecordError::TooSmall(self.subnet.clone()));
        }
        let g = u32::from(self.gateway);
        let n = u32::from(net);
        if g & mask(p) != n || g == n || g == n | !mask(p) {
            return Err(RecordError::Gateway {
                gateway: self.gateway,
                subnet: self.subnet.clone(),
            });
        }
        match (self.encrypted, self.listen_port) {
            (true, Some(p)) if p != 0 => {}
            (false, None) => {}
            _ => return Err(RecordError::ListenPort),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_the_same_whatever_its_names() {
        let e = EndpointRecord {
            overlay: "ov1".into(),
            mac: "02:42:0a:00:00:02".into(),
            ip: Ipv4Addr::new(10, 0, 0, 2),
            node: "n1".into(),
            container: "c1".into(),
            names: vec![],
        };
        let named = EndpointRecord {
            names: vec!["web".into()],
            ..e.clone()
        };
        assert!(e.same_endpoint(&named) && named.same_endpoint(&e));
        assert_ne!(e.value(), named.value());
        for other in [
            EndpointRecord {
                node: "n2".into(),
                ..e.clone()
            },
            EndpointRecord {
                container: "c2".into(),
                ..e.clone()
            },
            EndpointRecord {
                mac: "02:42:0a:00:00:03".into(),
                ..e.clone()
            },
            EndpointRecord {
                ip: Ipv4Addr::new(10, 0, 0, 3),
                ..e.clone()
            },
            EndpointRecord {
                overlay: "ov2".into(),
                ..e.clone()
            },
        ] {
            assert!(!e.same_endpoint(&other), "{other:?}");
        }
    }

    fn overlay(name: &str, vni: u32, subnet: &str, gw: [u8; 4]) -> OverlayRecord {
        OverlayRecord {
            name: name.into(),
            vni,
            subnet: subnet.into(),
            gateway: gw.into(),
            encrypted: false,
            listen_port: None,
        }
    }

    #[test]
    fn subnets_parse_and_overlap() {
        assert_eq!(
            parse_subnet("10.1.0.0/16"),
            Some((Ipv4Addr::new(10, 1, 0, 0), 16))
        );
        assert_eq!(parse_subnet("10.1.0.1/16"), None);
        assert_eq!(parse_subnet("10.1.0.0/33"), None);
        assert_eq!(parse_subnet("x/8"), None);
        let a = parse_subnet("10.1.0.0/16").unwrap();
        let b = parse_subnet("10.1.2.0/24").unwrap();
        let c = parse_subnet("10.2.0.0/16").unwrap();
        assert!(overlaps(a, b) && overlaps(b, a));
        assert!(!overlaps(a, c));
        assert!(overlaps(parse_subnet("0.0.0.0/0").unwrap(), c));
    }

    #[test]
    fn host_addresses_skip_network_broadcast_and_gateway() {
        let net = parse_subnet("10.1.0.0/29").unwrap();
        let g = Ipv4Addr::new(10, 1, 0, 1);
        let v: Vec<Ipv4Addr> = host_addresses(net, g).collect();
        assert_eq!(v.first(), Some(&Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(v.last(), Some(&Ipv4Addr::new(10, 1, 0, 6)));
        assert_eq!(v.len(), 5);
        for a in [[10, 1, 0, 0], [10, 1, 0, 1], [10, 1, 0, 7], [10, 1, 0, 8]] {
            assert!(!is_host_address(net, g, a.into()), "{a:?}");
        }
        assert!(is_host_address(net, g, Ipv4Addr::new(10, 1, 0, 3)));
        assert_eq!(mac_for(Ipv4Addr::new(10, 1, 0, 10)), "02:42:0a:01:00:0a");
        assert!(canonical_mac(&mac_for(Ipv4Addr::new(10, 1, 0, 10))));
        assert!(!canonical_mac("02:42:0A:01:00:0a"));
    }

    #[test]
    fn records_are_checked() {
        assert!(overlay("o1", 5, "10.1.0.0/24", [10, 1, 0, 1])
            .check()
            .is_ok());
        assert!(overlay("o1", 0, "10.1.0.0/24", [10, 1, 0, 1])
            .check()
            .is_err());
        assert!(overlay("o1", 1 << 24, "10.1.0.0/24", [10, 1, 0, 1])
            .check()
            .is_err());
        assert!(overlay("o1", 5, "10.1.0.0/24", [10, 1, 1, 1])
            .check()
            .is_err());
        assert!(overlay("o1", 5, "10.1.0.0/24", [10, 1, 0, 255])
            .check()
            .is_err());
        assert!(overlay("-x", 5, "10.1.0.0/24", [10, 1, 0, 1])
            .check()
            .is_err());
        assert!(overlay("a-very-long-name", 5, "10.1.0.0/24", [10, 1, 0, 1])
            .check()
            .is_err());
    }

    #[test]
    fn peers_are_the_other_nodes_with_good_distinct_keys() {
        let k = |b: u8| wg::PublicKey([b; 32]).to_string();
        let mut s = State::default();
        for (name, ip, key) in [
            ("a", [198, 51, 100, 1], Some(k(1))),
            ("b", [198, 51, 100, 2], Some(k(2))),
            ("c", [198, 51, 100, 3], None),
            ("d", [198, 51, 100, 4], Some("garbage".to_string())),
            ("e", [198, 51, 100, 5], Some(k(2))),
            ("f", [198, 51, 100, 2], Some(k(6))),
        ] {
            s.nodes.insert(
                name.into(),
                NodeRecord {
                    name: name.into(),
                    vtep: ip.into(),
                    started: 1,
                    public_key: key,
                },
            );
        }
        assert_eq!(
            s.peers("a", Ipv4Addr::new(198, 51, 100, 1)),
            [(Ipv4Addr::new(198, 51, 100, 2), k(2))]
        );
        let mut o = overlay("o1", 5, "10.1.0.0/24", [10, 1, 0, 1]);
        o.encrypted = true;
        assert!(o.check().is_err());
        o.listen_port = Some(51820);
        assert!(o.check().is_ok());
        o.encrypted = false;
        assert!(o.check().is_err());
    }

    #[test]
    fn bad_values_from_the_store_are_skipped() {
        let mut kvs = BTreeMap::new();
        let node = |n: &str, ip: &str| {
            format!(r#"{{"name":"{n}","vtep":"{ip}","started":1}}"#).into_bytes()
        };
        kvs.insert(keys::node("a"), node("a", "198.51.100.1"));
        kvs.insert(keys::node("b"), node("b", "198.51.100.2"));
        kvs.insert(keys::node("c"), node("x", "198.51.100.3"));
        kvs.insert(keys::node("d"), b"\xff garbage".to_vec());
        kvs.insert(keys::node("e"), node("e", "198.51.100.1"));
        let o = serde_json::to_vec(&overlay("o1", 4096, "10.1.0.0/24", [10, 1, 0, 1])).unwrap();
        kvs.insert(keys::overlay("o1"), o.clone());
        kvs.insert(keys::overlay("o2"), o);
        let o3 = serde_json::to_vec(&overlay("o3", 4096, "10.3.0.0/24", [10, 3, 0, 1])).unwrap();
        kvs.insert(keys::overlay("o3"), o3);
        kvs.insert(keys::overlay("o4"), b"{}".to_vec());
        kvs.insert(
            format!("{}o1/02:00:00:00:00:01", keys::ENDPOINTS),
            br#"{"overlay":"o1","mac":"02:00:00:00:00:01","ip":"10.1.0.5","node":"b"}"#.to_vec(),
        );
        // A record under another MAC's key, a group MAC, garbage: skipped.
        kvs.insert(
            format!("{}o1/02:00:00:00:00:02", keys::ENDPOINTS),
            br#"{"overlay":"o1","mac":"02:00:00:00:00:01","ip":"10.1.0.6","node":"b"}"#.to_vec(),
        );
        kvs.insert(
            format!("{}o1/03:00:00:00:00:03", keys::ENDPOINTS),
            br#"{"overlay":"o1","mac":"03:00:00:00:00:03","ip":"10.1.0.7","node":"b"}"#.to_vec(),
        );
        kvs.insert(format!("{}o1/x", keys::ENDPOINTS), b"{".to_vec());
        let s = State::from_kvs(&kvs);
        assert_eq!(s.nodes.keys().collect::<Vec<_>>(), ["a", "b", "e"]);
        assert_eq!(s.overlays.keys().collect::<Vec<_>>(), ["o1"]);
        assert_eq!(s.endpoints.get("b"), Some(&1));
        let m = &s.members["o1"]["02:00:00:00:00:01"];
        assert_eq!((m.ip, m.node.as_str()), (Ipv4Addr::new(10, 1, 0, 5), "b"));
        assert_eq!(s.members["o1"].len(), 1);
        // Not itself, and an address once.
        assert_eq!(
            s.remotes("a", Ipv4Addr::new(198, 51, 100, 1)),
            [Ipv4Addr::new(198, 51, 100, 2)]
        );
        assert_eq!(
            s.remotes("z", Ipv4Addr::new(198, 51, 100, 9)),
            [
                Ipv4Addr::new(198, 51, 100, 1),
                Ipv4Addr::new(198, 51, 100, 2)
            ]
        );
    }
}
