//! Addresses as a file writes them: IPv4 addresses with a prefix length, and MACs.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `A.B.C.D/N`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, len) = s.split_once('/').ok_or_else(|| {
            format!("{s:?} is not an address with a prefix length, e.g. 10.0.0.1/24")
        })?;
        if ip.contains(':') {
            return Err(format!(
                "{s:?}: IPv6 is not supported (hosts run with IPv6 off)"
            ));
        }
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| format!("{s:?}: prefix length {len:?} is not 1..=32"))?;
        let c = Cidr { ip, prefix };
        if prefix <= 30 && (ip == c.network() || ip == c.broadcast()) {
            return Err(format!(
                "{s}: {ip} is the {} address of its subnet, not a host address",
                if ip == c.network() {
                    "network"
                } else {
                    "broadcast"
                }
            ));
        }
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return Err(format!("{s}: {ip} is not a unicast host address"));
        }
        Ok(c)
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The subnet's network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip) & self.mask())
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip) | !self.mask())
    }

    /// True when `a` is in this subnet.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.ip) & self.mask()
    }

    /// True when the two subnets share an address (one contains the other).
    pub fn overlaps(&self, o: &Cidr) -> bool {
        let (a, b) = if self.prefix <= o.prefix {
            (self, o)
        } else {
            (o, self)
        };
        a.contains(b.ip)
    }

    /// The subnet itself, `NETWORK/PREFIX`.
    pub fn subnet(&self) -> Cidr {
        Cidr {
            ip: self.network(),
            prefix: self.prefix,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// Parses a unicast MAC `aa:bb:cc:dd:ee:ff` into lower case.
pub fn parse_mac(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bytes: Option<Vec<u8>> = (parts.len() == 6)
        .then(|| {
            parts
                .iter()
                .map(|p| {
                    (p.len() == 2)
                        .then(|| u8::from_str_radix(p, 16).ok())
                        .flatten()
                })
                .collect()
        })
        .flatten();
    let b = bytes.ok_or_else(|| format!("{s:?} is not a MAC address like 02:00:00:00:00:01"))?;
    if b[0] & 1 == 1 {
        return Err(format!(
            "{s} is a multicast MAC; an interface needs a unicast one"
        ));
    }
    if b.iter().all(|x| *x == 0) {
        return Err(format!("{s} is the all-zero MAC"));
    }
    Ok(b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}
