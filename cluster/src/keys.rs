//! The key layout in etcd. Every key of a cluster lives under [`PREFIX`]; the values are
//! JSON documents ([`crate::state`]).
//!
//! | key | value | lease |
//! | --- | --- | --- |
//! | `/vswitch/v1/nodes/<node>` | [`crate::NodeRecord`]: VTEP address, start time, WireGuard public key | the node's |
//! | `/vswitch/v1/overlays/<name>` | [`crate::OverlayRecord`]: VNI, subnet, gateway; encrypted ones their WireGuard listen port | none |
//! | `/vswitch/v1/vnis/<vni>` | the overlay's name: the VNI's claim, created with it | none |
//! | `/vswitch/v1/guard/overlays` | bumped by every overlay change, so a change that checked the others (subnet overlap) commits only if none changed since | none |
//! | `/vswitch/v1/endpoints/<overlay>/<mac>` | [`crate::EndpointRecord`]: node, MAC, address | the owner's |
//! | `/vswitch/v1/ipam/<overlay>/<ip>` | the same record: the address's claim, created with the endpoint in one transaction | the owner's |
//! | `/vswitch/v1/services/<overlay>/<name>` | [`crate::ServiceRecord`]: the service's spec and the host ports published to it | none |
//! | `/vswitch/v1/claims/service-names/<name>`, `claims/vips/<overlay>/<ip>`, `claims/published/<proto>/<port>` | `<overlay>/<name>` of the service holding that name, VIP or host port, written with its record in one transaction | none |

/// Where every key of the cluster lives.
pub const PREFIX: &str = "/vswitch/v1/";
/// Nodes, under their leases.
pub const NODES: &str = "/vswitch/v1/nodes/";
/// Overlay networks.
pub const OVERLAYS: &str = "/vswitch/v1/overlays/";
/// VNI claims.
pub const VNIS: &str = "/vswitch/v1/vnis/";
/// Endpoints, under their nodes' leases.
pub const ENDPOINTS: &str = "/vswitch/v1/endpoints/";
/// Address claims, under their nodes' leases.
pub const IPAM: &str = "/vswitch/v1/ipam/";
/// Services of overlays.
pub const SERVICES: &str = "/vswitch/v1/services/";
/// Claims of service names, VIPs and published ports.
pub const CLAIMS: &str = "/vswitch/v1/claims/";
/// The overlays' guard key.
pub const OVERLAYS_GUARD: &str = "/vswitch/v1/guard/overlays";

/// The key of node `name`.
pub fn node(name: &str) -> String {
    format!("{NODES}{name}")
}

/// The key of overlay `name`.
pub fn overlay(name: &str) -> String {
    format!("{OVERLAYS}{name}")
}

/// The claim of VNI `vni`.
pub fn vni(vni: u32) -> String {
    format!("{VNIS}{vni}")
}

/// The claim of address `ip` in overlay `overlay`.
pub fn ipam(overlay: &str, ip: std::net::Ipv4Addr) -> String {
    format!("{IPAM}{overlay}/{ip}")
}

/// Where overlay `overlay`'s address claims live.
pub fn ipam_of(overlay: &str) -> String {
    format!("{IPAM}{overlay}/")
}

/// The service `name` of overlay `overlay`.
pub fn service(overlay: &str, name: &str) -> String {
    format!("{SERVICES}{overlay}/{name}")
}

/// Where overlay `overlay`'s services live.
pub fn services_of(overlay: &str) -> String {
    format!("{SERVICES}{overlay}/")
}

/// The claim of service name `name` (cluster-wide).
pub fn service_name_claim(name: &str) -> String {
    format!("{CLAIMS}service-names/{name}")
}

/// The claim of VIP `ip` in overlay `overlay`.
pub fn vip_claim(overlay: &str, ip: std::net::Ipv4Addr) -> String {
    format!("{CLAIMS}vips/{overlay}/{ip}")
}

/// Where the VIP claims of overlay `overlay` live.
pub fn vip_claims_of(overlay: &str) -> String {
    format!("{CLAIMS}vips/{overlay}/")
}

/// The claim of host port `port` of protocol `proto` (`tcp`, `udp`) on every node.
pub fn published_claim(proto: &str, port: u16) -> String {
    format!("{CLAIMS}published/{proto}/{port}")
}

/// The end of the range of keys starting with `prefix` (its last byte below 0xff
/// raised by one: every prefix here ends in `/`).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the key space, as etcd spells it.
    vec![0]
}

/// Where overlay `overlay`'s endpoints live.
pub fn endpoints_of(overlay: &str) -> String {
    format!("{ENDPOINTS}{overlay}/")
}

/// The endpoint with MAC `mac` (lower-case, colon-separated) in overlay `overlay`.
pub fn endpoint(overlay: &str, mac: &str) -> String {
    format!("{ENDPOINTS}{overlay}/{mac}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_sit_under_the_prefix() {
        for k in [
            super::node("n1"),
            super::overlay("o1"),
            super::vni(7),
            super::OVERLAYS_GUARD.to_string(),
            super::ENDPOINTS.to_string(),
            super::IPAM.to_string(),
        ] {
            assert!(k.starts_with(super::PREFIX), "{k}");
        }
        assert_eq!(super::vni(4096), "/vswitch/v1/vnis/4096");
        assert_eq!(super::prefix_end("/a/b/"), b"/a/b0".to_vec());
        assert_eq!(super::prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
