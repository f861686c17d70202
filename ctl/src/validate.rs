//! Checks on names and numbers in requests, shared by `vsctl` (to fail early) and
//! `vswitchd` (which never trusts the client and checks again).

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;
/// Longest bridge name; bridges are not kernel devices, but names stay short and printable.
pub const BRIDGE_NAME_MAX: usize = 32;
/// Aging bounds in seconds (the Linux bridge accepts 10..=1_000_000 through iproute2).
pub const AGING_MIN: u32 = 10;
pub const AGING_MAX: u32 = 1_000_000;
/// Bounds on the learned-MAC limit per bridge.
pub const MAC_LIMIT_MIN: u32 = 1;
/// (The table is sized from the limit: 1M entries take 32 MiB.)
pub const MAC_LIMIT_MAX: u32 = 1024 * 1024;

fn printable_name(kind: &str, name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} name must not be empty"));
    }
    if name.len() > max {
        return Err(format!("{kind} name {name:?} is longer than {max} bytes"));
    }
    if name == "." || name == ".." {
        return Err(format!("{kind} name {name:?} is not allowed"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
    {
        return Err(format!(
            "{kind} name {name:?} contains {c:?} (allowed: letters, digits, - _ . @)"
        ));
    }
    Ok(())
}

/// A bridge name: 1–32 bytes of letters, digits, `-`, `_`, `.`, `@`.
pub fn bridge_name(name: &str) -> Result<(), String> {
    printable_name("bridge", name, BRIDGE_NAME_MAX)
}

/// An interface name as the kernel accepts it (1–15 bytes, no `/`, no whitespace).
pub fn iface_name(name: &str) -> Result<(), String> {
    printable_name("interface", name, IFNAME_MAX)
}

/// An aging time in seconds.
pub fn aging(secs: u32) -> Result<(), String> {
    if !(AGING_MIN..=AGING_MAX).contains(&secs) {
        return Err(format!(
            "aging time {secs}s is outside {AGING_MIN}..={AGING_MAX}"
        ));
    }
    Ok(())
}

/// What `set-bridge BR KEY=VALUE...` changes; `None`: left as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeSettings {
    pub ip_checks: Option<bool>,
}

/// Parses the KEY=VALUE pairs of `set-bridge` (`ip-checks=on|off`); at least one.
pub fn bridge_settings(pairs: &[String]) -> Result<BridgeSettings, String> {
    let mut s = BridgeSettings::default();
    if pairs.is_empty() {
        return Err("set-bridge: nothing to set (settings: ip-checks=on|off)".into());
    }
    for kv in pairs {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("bridge setting {kv:?} is not KEY=VALUE"))?;
        match k {
            "ip-checks" => {
                s.ip_checks = Some(match v {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("ip-checks must be on or off, not {v:?}")),
                })
            }
            _ => {
                return Err(format!(
                    "unknown bridge setting {k:?} (settings: ip-checks)"
                ))
            }
        }
    }
    Ok(s)
}

/// A learned-MAC limit.
pub fn mac_limit(limit: u32) -> Result<(), String> {
    if !(MAC_LIMIT_MIN..=MAC_LIMIT_MAX).contains(&limit) {
        return Err(format!(
            "MAC limit {limit} is outside {MAC_LIMIT_MIN}..={MAC_LIMIT_MAX}"
        ));
    }
    Ok(())
}

/// A VLAN ID as configured: 1–4094 (0 means untagged, 4095 is reserved).
pub fn vid(v: u16) -> Result<(), String> {
    if !(1..=4094).contains(&v) {
        return Err(format!("VLAN {v} is outside 1-4094"));
    }
    Ok(())
}

/// Parses `10`, `10,20`, `100-199` or a mix (`10,20,100-199`) into sorted, distinct VIDs.
pub fn parse_vids(s: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return Err("no VLAN given".into());
    }
    for part in s.split(',') {
        let part = part.trim();
        let num = |t: &str| -> Result<u16, String> {
            let n: u32 = t
                .trim()
                .parse()
                .map_err(|_| format!("{t:?} is not a VLAN ID (expected 1-4094)"))?;
            let n = u16::try_from(n).map_err(|_| format!("VLAN {n} is outside 1-4094"))?;
            vid(n)?;
            Ok(n)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("VLAN range {part} is backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Formats VIDs compactly: `10,20-29,100`.
pub fn format_vids(vids: &[u16]) -> String {
    let mut v: Vec<u16> = vids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// Largest VXLAN network identifier (24 bits).
pub const VNI_MAX: u32 = 0xff_ffff;

/// A VXLAN network identifier: 0–16777215.
pub fn vni(v: u32) -> Result<(), String> {
    if v > VNI_MAX {
        return Err(format!("VNI {v} is outside 0-{VNI_MAX}"));
    }
    Ok(())
}

/// A remote VTEP: a unicast IPv4 address (the underlay this switch speaks).
pub fn remote(ip: &std::net::IpAddr) -> Result<std::net::Ipv4Addr, String> {
    let v4 = match ip {
        std::net::IpAddr::V4(a) => *a,
        std::net::IpAddr::V6(a) => a
            .to_ipv4_mapped()
            .ok_or_else(|| format!("remote {ip}: IPv6 underlays are not supported"))?,
    };
    if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || v4.is_loopback() {
        return Err(format!(
            "remote {v4} is not a unicast address of another host"
        ));
    }
    Ok(v4)
}

/// A local underlay address to bind: IPv4, not multicast or broadcast.
pub fn local(ip: &std::net::IpAddr) -> Result<std::net::Ipv4Addr, String> {
    match ip {
        std::net::IpAddr::V4(a) if !a.is_multicast() && !a.is_broadcast() => Ok(*a),
        std::net::IpAddr::V4(a) => Err(format!("local {a} is not a unicast address")),
        std::net::IpAddr::V6(_) => Err(format!("local {ip}: IPv6 underlays are not supported")),
    }
}

/// A UDP destination port for VXLAN (1–65535).
pub fn dstport(p: u16) -> Result<(), String> {
    if p == 0 {
        return Err("UDP port 0 is not a valid destination port".into());
    }
    Ok(())
}

/// A MAC address as `aa:bb:cc:dd:ee:ff` (or with `-`); returns its bytes.
pub fn mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bad = || format!("{s:?} is not a MAC address (expected aa:bb:cc:dd:ee:ff)");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// A MAC a static FDB entry may name: unicast and not all zeros.
pub fn unicast_mac(s: &str) -> Result<[u8; 6], String> {
    let m = mac(s)?;
    if m[0] & 1 != 0 || m == [0; 6] {
        return Err(format!("{s} is not a unicast MAC address"));
    }
    Ok(m)
}

/// An interface MTU (68 is IPv4's minimum; 65535 the most a veth takes).
pub fn mtu(m: u32) -> Result<(), String> {
    if !(68..=65535).contains(&m) {
        return Err(format!("MTU {m} is outside 68-65535"));
    }
    Ok(())
}

/// A name of something outside the switch that is recorded as given (a container, the
/// owner of a reserved address): 1–256 printable characters.
pub fn label(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(format!("{what} must be 1-256 printable characters"));
    }
    Ok(())
}

/// Pairs of `external_ids` one port may carry.
pub const EXTERNAL_IDS_MAX: usize = 16;

/// One `external_ids` pair: a key of 1–64 letters, digits, `-` `_` `.` `:`, and a value
/// of at most 256 printable characters.
pub fn external_id(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty()
        || key.len() > 64
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(format!(
            "external id key {key:?} must be 1-64 letters, digits, - _ . :"
        ));
    }
    if value.len() > 256 || value.chars().any(|c| c.is_control()) {
        return Err(format!(
            "external id {key}: value must be at most 256 printable characters"
        ));
    }
    Ok(())
}

/// Parses `KEY=VALUE` pairs into a map, each checked; a key given twice is refused.
pub fn external_ids(
    pairs: &[String],
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("external id {p:?} is not KEY=VALUE"))?;
        external_id(k, v)?;
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("external id {k} is given twice"));
        }
    }
    if out.len() > EXTERNAL_IDS_MAX {
        return Err(format!("at most {EXTERNAL_IDS_MAX} external ids per port"));
    }
    Ok(out)
}

/// Largest conntrack limit `set-ct-limit` accepts (each entry takes about 200 bytes).
pub const CT_LIMIT_MAX: u32 = 4 * 1024 * 1024;

fn usable_host(a: std::net::Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback())
}

/// Parses `A.B.C.D/N` into the address and prefix length (host bits kept).
pub fn cidr(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let bad = || format!("{s:?} is not an IPv4 address with a prefix length (A.B.C.D/N)");
    let (a, n) = s.split_once('/').ok_or_else(bad)?;
    let addr: std::net::Ipv4Addr = a.parse().map_err(|_| bad())?;
    if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u8 = n.parse().map_err(|_| bad())?;
    if prefix > 32 {
        return Err(format!("prefix length /{prefix} of {s} is more than 32"));
    }
    Ok((addr, prefix))
}

/// The netmask of a prefix length.
pub fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// A network's subnet: `A.B.C.D/N` with no host bits set and room for hosts (/8–/30).
pub fn subnet(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (addr, prefix) = cidr(s)?;
    if !(8..=30).contains(&prefix) {
        return Err(format!("subnet {s}: prefix length must be 8-30"));
    }
    let net = std::net::Ipv4Addr::from(u32::from(addr) & mask(prefix));
    if net != addr {
        return Err(format!(
            "subnet {s} has host bits set (the network is {net}/{prefix})"
        ));
    }
    if !usable_host(addr) || addr.octets()[0] == 0 {
        return Err(format!("subnet {s} is not a unicast range"));
    }
    Ok((addr, prefix))
}

/// An address that may be a host of `net/prefix`: inside it, not its network or
/// broadcast address.
pub fn host_in(
    what: &str,
    a: std::net::Ipv4Addr,
    net: std::net::Ipv4Addr,
    prefix: u8,
) -> Result<(), String> {
    let m = mask(prefix);
    let (x, n) = (u32::from(a), u32::from(net) & m);
    if x & m != n {
        return Err(format!("{what} {a} is outside {net}/{prefix}"));
    }
    if prefix < 31 && (x == n || x == n | !m) {
        return Err(format!(
            "{what} {a} is the network or broadcast address of {net}/{prefix}"
        ));
    }
    Ok(())
}

/// The uplink's own address: `A.B.C.D/N`, a usable host of its subnet.
pub fn uplink_ip(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (addr, prefix) = cidr(s)?;
    if !(1..=31).contains(&prefix) {
        return Err(format!("uplink address {s}: prefix length must be 1-31"));
    }
    if !usable_host(addr) {
        return Err(format!("uplink address {s} is not a unicast host address"));
    }
    host_in("uplink address", addr, addr, prefix)?;
    Ok((addr, prefix))
}

/// A published host port (1–65535).
pub fn host_port(p: u16) -> Result<(), String> {
    if p == 0 {
        return Err("port 0 cannot be published".into());
    }
    Ok(())
}

/// A publish target `IP:PORT`.
pub fn target(s: &str) -> Result<std::net::SocketAddrV4, String> {
    let t: std::net::SocketAddrV4 = s
        .parse()
        .map_err(|_| format!("{s:?} is not CONTAINER_IP:PORT (e.g. 172.18.0.2:80)"))?;
    if t.port() == 0 {
        return Err(format!("target {s}: port 0 is not a port"));
    }
    if !usable_host(*t.ip()) {
        return Err(format!("target {s} is not a unicast host address"));
    }
    Ok(t)
}

/// A conntrack limit.
pub fn ct_limit(n: u32) -> Result<(), String> {
    if !(1..=CT_LIMIT_MAX).contains(&n) {
        return Err(format!("conntrack limit {n} is outside 1..={CT_LIMIT_MAX}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bridge_settings_take_on_and_off_only() {
        let on = bridge_settings(&["ip-checks=on".into()]).unwrap();
        assert_eq!(on.ip_checks, Some(true));
        let off = bridge_settings(&["ip-checks=off".into()]).unwrap();
        assert_eq!(off.ip_checks, Some(false));
        for bad in ["ip-checks=yes", "ip-checks", "ipchecks=on", "ip-checks="] {
            let e = bridge_settings(&[bad.into()]).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(bridge_settings(&[]).is_err());
    }

    use super::*;

    #[test]
    fn interface_names() {
        assert!(iface_name("veth-h1").is_ok());
        assert!(iface_name("eth0.10").is_ok());
        assert!(iface_name("").is_err());
        assert!(iface_name("a/b").is_err());
        assert!(iface_name("has space").is_err());
        assert!(iface_name("sixteen-chars-xx").is_err());
        assert!(iface_name("fifteen-chars-x").is_ok());
        assert!(iface_name("..").is_err());
    }

    #[test]
    fn vlan_lists() {
        assert_eq!(parse_vids("10").unwrap(), vec![10]);
        assert_eq!(parse_vids("20,10,10").unwrap(), vec![10, 20]);
        assert_eq!(
            parse_vids("100-103,1").unwrap(),
            vec![1, 100, 101, 102, 103]
        );
        for bad in ["0", "4095", "5000", "abc", "", "10-5", "1-", "-3", "70000"] {
            assert!(parse_vids(bad).is_err(), "{bad}");
        }
        assert_eq!(format_vids(&[10, 11, 12, 20, 30, 31]), "10-12,20,30-31");
    }

    #[test]
    fn numbers() {
        assert!(aging(300).is_ok());
        assert!(aging(0).is_err());
        assert!(aging(AGING_MAX + 1).is_err());
        assert!(mac_limit(0).is_err());
        assert!(mac_limit(65536).is_ok());
    }

    #[test]
    fn tunnel_fields() {
        assert!(vni(0).is_ok());
        assert!(vni(VNI_MAX).is_ok());
        assert!(vni(VNI_MAX + 1).is_err());
        assert!(remote(&"198.51.100.2".parse().unwrap()).is_ok());
        for bad in [
            "0.0.0.0",
            "239.1.1.1",
            "255.255.255.255",
            "127.0.0.1",
            "2001:db8::1",
        ] {
            assert!(remote(&bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(local(&"0.0.0.0".parse().unwrap()).is_ok());
        assert!(dstport(0).is_err());
        assert_eq!(mac("02:00:00:00:00:0a").unwrap(), [2, 0, 0, 0, 0, 10]);
        for bad in ["02:00:00:00:00", "zz:00:00:00:00:00", "2:0:0:0:0:0", ""] {
            assert!(mac(bad).is_err(), "{bad}");
        }
        assert!(unicast_mac("01:00:5e:00:00:01").is_err());
        assert!(unicast_mac("00:00:00:00:00:00").is_err());
    }

    #[test]
    fn network_fields() {
        assert_eq!(subnet("172.18.0.0/24").unwrap().1, 24);
        for bad in [
            "172.18.0.5/24",
            "172.18.0.0/31",
            "172.18.0.0",
            "x/24",
            "172.18.0.0/33",
            "224.0.0.0/8",
            "0.0.0.0/8",
        ] {
            assert!(subnet(bad).is_err(), "{bad}");
        }
        let n = "172.18.0.0".parse().unwrap();
        assert!(host_in("gateway", "172.18.0.1".parse().unwrap(), n, 24).is_ok());
        assert!(host_in("gateway", "172.18.1.1".parse().unwrap(), n, 24).is_err());
        assert!(host_in("gateway", "172.18.0.255".parse().unwrap(), n, 24).is_err());
        assert!(host_in("gateway", "172.18.0.0".parse().unwrap(), n, 24).is_err());
        assert!(uplink_ip("198.51.100.2/24").is_ok());
        for bad in [
            "198.51.100.0/24",
            "198.51.100.255/24",
            "198.51.100.2/32",
            "127.0.0.1/8",
        ] {
            assert!(uplink_ip(bad).is_err(), "{bad}");
        }
        assert!(target("172.18.0.2:80").is_ok());
        for bad in ["172.18.0.2", "172.18.0.2:0", "0.0.0.0:80", "host:80"] {
            assert!(target(bad).is_err(), "{bad}");
        }
        assert!(ct_limit(0).is_err());
        assert!(ct_limit(262_144).is_ok());
        assert!(host_port(0).is_err());
    }
}

/// A WireGuard public key as `wg pubkey` prints it: 32 bytes in base64, 44 characters
/// ending in `=` (the daemon decodes it; this catches typos before a request is sent).
pub fn public_key(s: &str) -> Result<(), String> {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let bad = || {
        format!(
            "{s:?} is not a WireGuard public key (44 characters of base64, as `wg pubkey` prints)"
        )
    };
    if b.len() != 44 || b[43] != b'=' || !b[..43].iter().all(|c| B64.contains(c)) {
        return Err(bad());
    }
    // The 43rd character carries 4 bits of the key and 2 zero bits.
    let last = B64.iter().position(|c| *c == b[42]).unwrap_or(1);
    if last & 3 != 0 {
        return Err(bad());
    }
    if b[..43].iter().all(|c| *c == b'A') {
        return Err("the all-zero public key is not a key".into());
    }
    Ok(())
}

#[cfg(test)]
mod wg_key_tests {
    #[test]
    fn public_keys() {
        assert!(super::public_key("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=").is_ok());
        assert!(super::public_key("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykx=").is_err());
        assert!(super::public_key("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8yk=").is_err());
        assert!(super::public_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_err());
        assert!(super::public_key("").is_err());
    }
}
