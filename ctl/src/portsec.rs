//! Port security settings (`vsctl set-port PORT allowed=… storm=…`): the types the
//! protocol carries and their checks, shared by `vsctl` (to fail early) and `vswitchd`
//! (which checks again).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Most addresses one port may be bound to.
pub const MAX_BOUND_IPS: usize = 16;
/// Highest storm limit, in frames per second (more than a port can receive).
pub const STORM_MAX_PPS: u32 = 100_000_000;
/// The storm limit `attach` and the Docker plugin give a container's port.
pub const DEFAULT_CONTAINER_STORM_PPS: u32 = 10_000;

/// The addresses a bound port may send from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortBinding {
    /// Its one source MAC (also the sender MAC of its ARP).
    pub mac: String,
    /// Its IPv4 source addresses (also the sender address of its ARP); empty: the
    /// binding is on the MAC alone, as a MAC-only `port_security` in OVN.
    #[serde(default)]
    pub ips: Vec<Ipv4Addr>,
}

/// What `allowed=` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Allowed {
    /// Any source: the binding is removed.
    Any,
    /// Only these addresses.
    Only(PortBinding),
}

/// What `set-port PORT KEY=VALUE...` changes; `None`: left as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSettings {
    pub allowed: Option<Allowed>,
    /// Frames per second of broadcast, multicast and unknown unicast; 0: off.
    pub storm_pps: Option<u32>,
}

/// Checks a binding: a unicast MAC, at most [`MAX_BOUND_IPS`] distinct unicast IPv4
/// addresses.
pub fn binding(b: &PortBinding) -> Result<(), String> {
    crate::validate::unicast_mac(&b.mac)?;
    if b.ips.len() > MAX_BOUND_IPS {
        return Err(format!(
            "a port is bound to at most {MAX_BOUND_IPS} addresses, not {}",
            b.ips.len()
        ));
    }
    for (i, ip) in b.ips.iter().enumerate() {
        if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
            return Err(format!(
                "{ip} is not a unicast address a port can send from"
            ));
        }
        if b.ips[..i].contains(ip) {
            return Err(format!("{ip} is given twice"));
        }
    }
    Ok(())
}

/// Checks a storm limit.
pub fn storm(pps: u32) -> Result<(), String> {
    if pps > STORM_MAX_PPS {
        return Err(format!(
            "storm limit {pps} pps is above {STORM_MAX_PPS} (0 or off: no limit)"
        ));
    }
    Ok(())
}

/// Parses `allowed=`'s value: `any`, or `MAC[,IP…]`.
pub fn parse_allowed(v: &str) -> Result<Allowed, String> {
    if v == "any" {
        return Ok(Allowed::Any);
    }
    let mut parts = v.split(',');
    let mac = parts.next().unwrap_or_default().trim();
    let mac = crate::validate::unicast_mac(mac)
        .map(|m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .map_err(|e| format!("allowed={v}: {e} (expected any or MAC[,IP…])"))?;
    let ips = parts
        .map(|p| {
            p.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("allowed={v}: {p:?} is not an IPv4 address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let b = PortBinding { mac, ips };
    binding(&b)?;
    Ok(Allowed::Only(b))
}

/// Parses `storm=`'s value: frames per second, or `off` (= 0).
pub fn parse_storm(v: &str) -> Result<u32, String> {
    let pps = if v == "off" {
        0
    } else {
        v.parse::<u32>()
            .map_err(|_| format!("storm={v}: expected frames per second or off"))?
    };
    storm(pps)?;
    Ok(pps)
}

/// Parses the KEY=VALUE pairs of `set-port`; at least one.
pub fn port_settings(pairs: &[String]) -> Result<PortSettings, String> {
    const KEYS: &str = "allowed=MAC[,IP…]|any, storm=PPS|off";
    if pairs.is_empty() {
        return Err(format!("set-port: nothing to set (settings: {KEYS})"));
    }
    let mut s = PortSettings::default();
    for kv in pairs {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("port setting {kv:?} is not KEY=VALUE"))?;
        match k {
            "allowed" => s.allowed = Some(parse_allowed(v)?),
            "storm" => s.storm_pps = Some(parse_storm(v)?),
            _ => return Err(format!("unknown port setting {k:?} (settings: {KEYS})")),
        }
    }
    Ok(s)
}

/// `MAC IP…` as `show` prints a binding.
pub fn binding_text(b: &PortBinding) -> String {
    let mut s = b.mac.clone();
    for ip in &b.ips {
        s.push(',');
        s.push_str(&ip.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn allowed_and_storm_parse_and_bad_values_are_refused_with_one_line() {
        let s = port_settings(&pairs(&["allowed=02:AA:00:00:00:01,10.0.0.1,10.0.0.9"])).unwrap();
        assert_eq!(
            s.allowed,
            Some(Allowed::Only(PortBinding {
                mac: "02:aa:00:00:00:01".into(),
                ips: vec!["10.0.0.1".parse().unwrap(), "10.0.0.9".parse().unwrap()],
            }))
        );
        assert_eq!(s.storm_pps, None);
        let s = port_settings(&pairs(&["allowed=any", "storm=off"])).unwrap();
        assert_eq!((s.allowed, s.storm_pps), (Some(Allowed::Any), Some(0)));
        assert_eq!(parse_storm("10000"), Ok(10_000));
        for bad in [
            "allowed=",
            "allowed=01:00:5e:00:00:01",
            "allowed=02:00:00:00:00:01,10.0.0.256",
            "allowed=02:00:00:00:00:01,0.0.0.0",
            "allowed=02:00:00:00:00:01,10.0.0.1,10.0.0.1",
            "allowed=02:00:00:00:00:01,224.0.0.1",
            "storm=-1",
            "storm=lots",
            "storm=100000001",
            "speed=10",
            "storm",
        ] {
            let e = port_settings(&pairs(&[bad])).unwrap_err();
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
        assert!(port_settings(&[]).is_err());
        let many: Vec<String> = (1..=17).map(|i| format!("10.0.0.{i}")).collect();
        assert!(parse_allowed(&format!("02:00:00:00:00:01,{}", many.join(","))).is_err());
    }

    #[test]
    fn a_binding_round_trips_through_json_and_text() {
        let a = Allowed::Only(PortBinding {
            mac: "02:00:00:00:00:01".into(),
            ips: vec!["10.0.0.1".parse().unwrap()],
        });
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Allowed>(&j).unwrap(), a);
        assert_eq!(
            serde_json::from_str::<Allowed>("\"any\"").unwrap(),
            Allowed::Any
        );
        if let Allowed::Only(b) = &a {
            assert_eq!(binding_text(b), "02:00:00:00:00:01,10.0.0.1");
        }
    }
}
