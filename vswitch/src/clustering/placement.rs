//! The overlay an `attach` or an `IpamClaim` names and the address it asks for there,
//! checked against the cluster's last state before the store is asked: the overlay must
//! be known, and the address inside its subnet.

use std::net::Ipv4Addr;

use ctl::validate;

use super::VerbError;

/// The address a request asks for.
pub(super) enum Asked<'a> {
    /// None: the cluster's allocator picks one.
    Any,
    /// `attach --ip A.B.C.D/N`: N must be the overlay's prefix length.
    Cidr(&'a str),
    /// An address alone (`IpamClaim`).
    Addr(Ipv4Addr),
}

/// An overlay of the cluster and the address asked for in it.
pub(super) struct Placed {
    pub overlay: cluster::OverlayRecord,
    /// Its subnet.
    pub net: (Ipv4Addr, u8),
    /// The address asked for, inside the subnet.
    pub ip: Option<Ipv4Addr>,
}

/// Overlay `name` of `state` and the address `asked` for in it.
pub(super) fn overlay_and_address(
    state: &cluster::State,
    name: &str,
    asked: Asked<'_>,
) -> Result<Placed, VerbError> {
    let Some(o) = state.overlays.get(name) else {
        return Err(VerbError::UnknownOverlay(name.to_string()));
    };
    let Some(net) = cluster::state::parse_subnet(&o.subnet) else {
        return Err(VerbError::OverlaySubnet {
            name: name.to_string(),
            subnet: o.subnet.clone(),
        });
    };
    let outside = |ip: String| VerbError::NotInOverlay {
        ip,
        overlay: name.to_string(),
        subnet: o.subnet.clone(),
    };
    let ip = match asked {
        Asked::Any => None,
        Asked::Cidr(s) => {
            let (addr, prefix) = validate::cidr(s)?;
            if prefix != net.1 || !cluster::state::overlaps((addr, 32), net) {
                return Err(outside(s.to_string()));
            }
            Some(addr)
        }
        Asked::Addr(a) => {
            if !cluster::state::overlaps((a, 32), net) {
                return Err(outside(a.to_string()));
            }
            Some(a)
        }
    };
    Ok(Placed {
        overlay: o.clone(),
        net,
        ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> cluster::State {
        let o = |name: &str, subnet: &str, gw: [u8; 4]| cluster::OverlayRecord {
            name: name.into(),
            vni: 4096,
            subnet: subnet.into(),
            gateway: gw.into(),
            encrypted: false,
            listen_port: None,
        };
        cluster::State {
            overlays: [
                ("ov".to_string(), o("ov", "10.7.0.0/16", [10, 7, 0, 1])),
                ("bad".to_string(), o("bad", "10.8.0.0", [10, 8, 0, 1])),
            ]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_overlay_must_be_known_and_the_address_inside_it() {
        let s = state();
        let p = overlay_and_address(&s, "ov", Asked::Cidr("10.7.3.4/16")).unwrap();
        assert_eq!((p.overlay.name.as_str(), p.net.1), ("ov", 16));
        assert_eq!(p.ip, Some(Ipv4Addr::new(10, 7, 3, 4)));
        let p = overlay_and_address(&s, "ov", Asked::Addr([10, 7, 9, 9].into())).unwrap();
        assert_eq!(p.ip, Some(Ipv4Addr::new(10, 7, 9, 9)));
        assert_eq!(overlay_and_address(&s, "ov", Asked::Any).unwrap().ip, None);
        let err = |name: &str, a: Asked<'_>| match overlay_and_address(&s, name, a) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{name}: accepted"),
        };
        assert!(err("nope", Asked::Any).contains("not known"));
        assert!(err("bad", Asked::Any).contains("bad subnet"));
        // Another prefix length, another subnet, no prefix at all.
        assert!(err("ov", Asked::Cidr("10.7.3.4/24"))
            .contains("10.7.3.4/24 is not an address of overlay ov"));
        assert!(err("ov", Asked::Addr([10, 9, 0, 1].into())).contains("10.9.0.1 is not an address"));
        assert!(err("ov", Asked::Cidr("10.7.3.4")).contains("A.B.C.D/N"));
    }
}
