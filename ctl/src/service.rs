//! The services side of the protocol (`add-service`, `set-backends`, `list-services`):
//! a service's settings as the request carries them and the config keeps them, their
//! parsing from the command line, what `list-services` reports and how it is printed.

use std::fmt::{self, Write};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::L4Proto;

/// The most backends a service may have.
pub const MAX_BACKENDS: usize = 256;
/// The most ports a service may serve.
pub const MAX_PORTS: usize = 64;

/// How the service's name resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// To the VIP (which spreads connections over the backends).
    #[default]
    Vip,
    /// To every healthy backend (DNS round robin), as Docker's `--endpoint-mode dnsrr`.
    Dnsrr,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vip" => Ok(Mode::Vip),
            "dnsrr" => Ok(Mode::Dnsrr),
            o => Err(format!("unknown mode {o:?} (expected vip or dnsrr)")),
        }
    }
}

/// How a new connection's backend is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sched {
    /// Round robin over the healthy backends.
    #[default]
    Rr,
    /// A hash of the client's address.
    Hash,
}

impl std::str::FromStr for Sched {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rr" => Ok(Sched::Rr),
            "hash" => Ok(Sched::Hash),
            o => Err(format!("unknown scheduler {o:?} (expected rr or hash)")),
        }
    }
}

impl Sched {
    /// `rr` or `hash`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sched::Rr => "rr",
            Sched::Hash => "hash",
        }
    }
}

impl Mode {
    /// `vip` or `dnsrr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Vip => "vip",
            Mode::Dnsrr => "dnsrr",
        }
    }
}

/// A port a service serves: `tcp:80`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServicePort {
    pub proto: L4Proto,
    pub port: u16,
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto.as_str(), self.port)
    }
}

impl std::str::FromStr for ServicePort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (p, n) = s
            .split_once(':')
            .ok_or_else(|| format!("port {s:?} is not tcp|udp:PORT"))?;
        let proto = p.parse()?;
        let port = port(n).map_err(|e| format!("port {s:?}: {e}"))?;
        Ok(ServicePort { proto, port })
    }
}

impl TryFrom<String> for ServicePort {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ServicePort> for String {
    fn from(p: ServicePort) -> String {
        p.to_string()
    }
}

fn port(n: &str) -> Result<u16, String> {
    match n.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{n:?} is not a port (1-65535)")),
        Ok(p) => Ok(p),
    }
}

/// A backend: `IP` or `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Backend {
    pub ip: Ipv4Addr,
    /// The port connections go to; none: the one the client asked for.
    pub port: Option<u16>,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.ip),
            None => write!(f, "{}", self.ip),
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, p) = match s.split_once(':') {
            Some((ip, p)) => (
                ip,
                Some(port(p).map_err(|e| format!("backend {s:?}: {e}"))?),
            ),
            None => (s, None),
        };
        let ip = ip
            .parse()
            .map_err(|_| format!("backend {s:?}: {ip:?} is not an IPv4 address"))?;
        Ok(Backend { ip, port: p })
    }
}

impl TryFrom<String> for Backend {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Backend> for String {
    fn from(b: Backend) -> String {
        b.to_string()
    }
}

/// How backends are checked: `tcp:PORT` (a TCP connect from the gateway) or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Health {
    /// Not checked: always used.
    None,
    /// A TCP connect to this port of each backend, once a second.
    Tcp(u16),
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::None => write!(f, "none"),
            Health::Tcp(p) => write!(f, "tcp:{p}"),
        }
    }
}

impl std::str::FromStr for Health {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Health::None);
        }
        match s.split_once(':') {
            Some(("tcp", p)) => Ok(Health::Tcp(
                port(p).map_err(|e| format!("health check {s:?}: {e}"))?,
            )),
            _ => Err(format!("health check {s:?} is not tcp:PORT or none")),
        }
    }
}

impl TryFrom<String> for Health {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Health> for String {
    fn from(h: Health) -> String {
        h.to_string()
    }
}

/// A service's settings (`add-service`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub vip: Ipv4Addr,
    /// The ports served; none: every TCP and UDP port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub mode: Mode,
    /// None in a request: `tcp:` the first TCP port's backend port, or `none` when the
    /// service has no TCP port. Always set in the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default)]
    pub sched: Sched,
}

/// One backend as `list-services` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// `IP` or `IP:PORT`.
    pub backend: String,
    /// `up`, `down` (failed its checks) or `unchecked` (`--health none`).
    pub health: String,
    /// Its connections established (TCP) or alive (UDP) now.
    pub active: u64,
    /// Connections sent to it since it was configured.
    pub connections: u64,
    /// Packets of its connections, both ways.
    pub packets: u64,
}

/// A service as `list-services` and `show` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub bridge: String,
    pub name: String,
    pub vip: String,
    /// `tcp:80`…; empty: every port.
    #[serde(default)]
    pub ports: Vec<String>,
    pub mode: Mode,
    pub sched: Sched,
    /// `tcp:PORT` or `none`.
    pub health: String,
    pub backends: Vec<BackendInfo>,
}

/// Prints services as `list-services` and `show` do, each line indented by `indent`.
pub fn render(out: &mut String, services: &[ServiceInfo], indent: &str) {
    for s in services {
        let ports = if s.ports.is_empty() {
            "all-ports".to_string()
        } else {
            s.ports.join(",")
        };
        let _ = writeln!(
            out,
            "{indent}service {} (bridge {}) vip {} {} mode {} sched {} health {}",
            s.name,
            s.bridge,
            s.vip,
            ports,
            s.mode.as_str(),
            s.sched.as_str(),
            s.health
        );
        for b in &s.backends {
            let _ = writeln!(
                out,
                "{indent}    backend {:<21} {:<9} active {} connections {} packets {}",
                b.backend, b.health, b.active, b.connections, b.packets
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let p: ServicePort = "tcp:80".parse().unwrap();
        assert_eq!(p.to_string(), "tcp:80");
        assert!("sctp:80".parse::<ServicePort>().is_err());
        assert!("tcp:0".parse::<ServicePort>().is_err());
        assert!("tcp".parse::<ServicePort>().is_err());
        let b: Backend = "10.0.0.2:8080".parse().unwrap();
        assert_eq!((b.ip, b.port), (Ipv4Addr::new(10, 0, 0, 2), Some(8080)));
        assert_eq!(
            "10.0.0.3".parse::<Backend>().unwrap().to_string(),
            "10.0.0.3"
        );
        assert!("10.0.0".parse::<Backend>().is_err());
        assert!("10.0.0.2:x".parse::<Backend>().is_err());
        assert_eq!("none".parse::<Health>().unwrap(), Health::None);
        assert_eq!("tcp:81".parse::<Health>().unwrap(), Health::Tcp(81));
        assert!("udp:81".parse::<Health>().is_err());
        assert!("dnsrr".parse::<Mode>().is_ok() && "x".parse::<Mode>().is_err());
        assert!("hash".parse::<Sched>().is_ok() && "lc".parse::<Sched>().is_err());
        let j = serde_json::to_string(&ServiceSpec {
            name: "web".into(),
            vip: Ipv4Addr::new(10, 0, 0, 100),
            ports: vec![p],
            backends: vec![b],
            mode: Mode::Vip,
            health: Some(Health::Tcp(80)),
            sched: Sched::Rr,
        })
        .unwrap();
        assert!(j.contains("\"tcp:80\"") && j.contains("\"10.0.0.2:8080\""));
        let back: ServiceSpec = serde_json::from_str(&j).unwrap();
        assert_eq!(back.backends, vec![b]);
    }
}
