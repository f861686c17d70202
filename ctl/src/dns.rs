//! The DNS side of the protocol: what `dns-show` reports, how it is printed, and the
//! checks on names given to `attach --name/--alias` and `set-dns --domain`.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// A name the network's gateway answers for an address that belongs to no attached
/// container (`set-dns --record NAME=IP`; vstopo gives its hosts' names this way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRecord {
    pub name: String,
    pub ip: std::net::Ipv4Addr,
}

impl std::str::FromStr for StaticRecord {
    type Err = String;
    /// `NAME=IP`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, ip) = s
            .split_once('=')
            .ok_or_else(|| format!("record {s:?} is not NAME=IP"))?;
        name("name", n)?;
        let ip = ip
            .parse()
            .map_err(|_| format!("record {s:?}: {ip:?} is not an IPv4 address"))?;
        Ok(StaticRecord {
            name: n.to_ascii_lowercase(),
            ip,
        })
    }
}

/// A network's DNS as `dns-show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsInfo {
    pub bridge: String,
    /// The address the gateway answers DNS on.
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The resolvers other names are forwarded to.
    pub upstream: Vec<String>,
    /// "config" (`set-dns --upstream`) or "host" (the host's /etc/resolv.conf).
    pub upstream_from: String,
    pub records: Vec<DnsRecord>,
}

/// One record the gateway answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// "A" or "PTR".
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub value: String,
    /// The port of the endpoint the record belongs to.
    pub port: String,
}

/// Renders `dns-show`.
pub fn render(out: &mut String, d: &DnsInfo) {
    let _ = writeln!(
        out,
        "bridge {} dns {} domain {} upstream {} ({})",
        d.bridge,
        d.server,
        d.domain.as_deref().unwrap_or("-"),
        if d.upstream.is_empty() {
            "none".to_string()
        } else {
            d.upstream.join(",")
        },
        d.upstream_from
    );
    for r in &d.records {
        let _ = writeln!(
            out,
            "    {:<4} {:<40} {:<16} {}",
            r.kind, r.name, r.value, r.port
        );
    }
}

/// A name an endpoint may be given, or a network's domain: dot-separated labels of
/// letters, digits, `-` and `_`, none empty or longer than 63, a label never starting
/// or ending with `-`, 253 characters at most, no trailing dot.
pub fn name(what: &str, s: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid {what} {s:?}: {why}"));
    if s.is_empty() || s.len() > 253 {
        return bad("must be 1 to 253 characters");
    }
    for l in s.split('.') {
        if l.is_empty() || l.len() > 63 {
            return bad("each label must be 1 to 63 characters");
        }
        if !l
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("only letters, digits, '-', '_' and '.' are allowed");
        }
        if l.starts_with('-') || l.ends_with('-') {
            return bad("a label cannot start or end with '-'");
        }
    }
    if s.ends_with(".in-addr.arpa") || s == "in-addr.arpa" {
        return bad("reverse names are the gateway's own");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        for ok in ["web", "db-1", "a.b.c", "my_container", "x9"] {
            assert!(super::name("name", ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a b",
            "é",
            ".a",
            "a.",
            &long,
            "1.in-addr.arpa",
        ] {
            assert!(super::name("name", bad).is_err(), "{bad}");
        }
    }
}
