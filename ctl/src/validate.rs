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
pub const MAC_LIMIT_MAX: u32 = 16 * 1024 * 1024;

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

/// A learned-MAC limit.
pub fn mac_limit(limit: u32) -> Result<(), String> {
    if !(MAC_LIMIT_MIN..=MAC_LIMIT_MAX).contains(&limit) {
        return Err(format!(
            "MAC limit {limit} is outside {MAC_LIMIT_MIN}..={MAC_LIMIT_MAX}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
    fn numbers() {
        assert!(aging(300).is_ok());
        assert!(aging(0).is_err());
        assert!(aging(AGING_MAX + 1).is_err());
        assert!(mac_limit(0).is_err());
        assert!(mac_limit(65536).is_ok());
    }
}
