//! The control plane of the gateways' DNS: `set-dns` (upstreams, domain) and `dns-show`,
//! and the records each network's gateway answers, made from the config (attached
//! endpoints' names and aliases, ports' `set-names`) and handed to the gateway after every change.

use std::net::Ipv4Addr;

use ctl::dns::StaticRecord;
use ctl::{Data, DnsInfo, DnsRecord};

use super::{ControlError, Controller};
use crate::gateway::dns::{Entry, NetDns};

/// The most upstreams a network may have (glibc reads three; a few more cost nothing).
const MAX_UPSTREAMS: usize = 8;
/// The most static records a network may have.
const MAX_RECORDS: usize = 4096;
/// Where the host's resolvers are listed.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The IPv4 nameservers of a resolv.conf. Loopback ones are left out: they are the
/// host's own stub resolver, which the gateway cannot reach through the uplink.
pub(crate) fn nameservers(text: &str) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next())?
        })
        .filter_map(|a| a.parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .collect();
    v.dedup();
    v.truncate(MAX_UPSTREAMS);
    v
}

fn host_upstreams() -> Vec<Ipv4Addr> {
    std::fs::read_to_string(RESOLV_CONF)
        .map(|t| nameservers(&t))
        .unwrap_or_default()
}

impl Controller {
    pub(super) fn set_dns(
        &mut self,
        bridge: &str,
        upstream: Vec<Ipv4Addr>,
        domain: Option<String>,
        records: Vec<StaticRecord>,
    ) -> Result<Data, ControlError> {
        let b = self.bridge_conf(bridge)?;
        let Some(net) = &b.net else {
            return Err(ControlError::NoNet(bridge.to_string()));
        };
        let (addr, prefix) = ctl::validate::cidr(&net.subnet)?;
        for r in &records {
            ctl::dns::name("name", &r.name)?;
            ctl::validate::host_in("record address", r.ip, addr, prefix)?;
        }
        if records.len() > MAX_RECORDS {
            return Err(ControlError::Invalid(format!(
                "at most {MAX_RECORDS} records"
            )));
        }
        if let Some(d) = &domain {
            ctl::dns::name("domain", d)?;
        }
        if upstream.len() > MAX_UPSTREAMS {
            return Err(ControlError::Invalid(format!(
                "at most {MAX_UPSTREAMS} upstreams"
            )));
        }
        if let Some(a) = upstream
            .iter()
            .find(|a| a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
        {
            return Err(ControlError::Invalid(format!(
                "upstream {a} is not a unicast address"
            )));
        }
        let mut next = self.cfg.clone();
        if let Some(n) = next.bridge_mut(bridge).and_then(|b| b.net.as_mut()) {
            n.upstream = upstream;
            n.upstream.dedup();
            n.domain = domain.map(|d| d.to_ascii_lowercase());
            n.records = records;
        }
        self.commit(next)?;
        self.sync_dns();
        Ok(Data::Done)
    }

    pub(super) fn dns_show(&self, bridge: &str) -> Result<Data, ControlError> {
        let b = self.bridge_conf(bridge)?;
        let Some(n) = &b.net else {
            return Err(ControlError::NoNet(bridge.to_string()));
        };
        let id = self.bridges.get(bridge).map(|r| r.id);
        let g = super::lock(&self.gateway.state);
        let net = g.dns().nets().iter().find(|d| Some(d.bridge) == id);
        let fqdn = |name: &str| match &n.domain {
            Some(d) => format!("{name}.{d}"),
            None => name.to_string(),
        };
        let remote = self.cluster_names.get(bridge);
        let port_of = |e: &Entry| match &e.port {
            Some(p) => p.name.clone(),
            None => remote
                .into_iter()
                .flatten()
                .find(|r| r.name == e.name && r.addr == e.addr)
                .map_or_else(|| "static".to_string(), |r| format!("node {}", r.node)),
        };
        let mut records = Vec::new();
        for e in net.iter().flat_map(|d| &d.records).filter(|e| e.live()) {
            records.push(DnsRecord {
                kind: "A".into(),
                name: fqdn(&e.name),
                value: e.addr.to_string(),
                port: port_of(e),
            });
        }
        for e in net.iter().flat_map(|d| &d.records).filter(|e| e.live()) {
            let o = e.addr.octets();
            records.push(DnsRecord {
                kind: "PTR".into(),
                name: format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]),
                value: fqdn(&e.name),
                port: port_of(e),
            });
        }
        Ok(Data::Dns(DnsInfo {
            bridge: bridge.to_string(),
            server: n.gateway.to_string(),
            domain: n.domain.clone(),
            upstream: net
                .map(|d| d.upstreams.iter().map(|a| a.to_string()).collect())
                .unwrap_or_default(),
            upstream_from: if n.upstream.is_empty() {
                "host"
            } else {
                "config"
            }
            .into(),
            records,
        }))
    }

    /// Hands every network's records and upstreams to the gateway.
    pub(super) fn sync_dns(&self) {
        let host = host_upstreams();
        let nets: Vec<NetDns> = self
            .cfg
            .nets()
            .filter_map(|(b, subnet, _)| {
                let n = b.net.as_ref()?;
                let mut records: Vec<Entry> = n
                    .records
                    .iter()
                    .map(|r| Entry::new(r.name.clone(), r.ip, None))
                    .collect();
                records.extend(
                    self.cluster_names
                        .get(&b.name)
                        .into_iter()
                        .flatten()
                        .map(|r| Entry::new(r.name.clone(), r.addr, None)),
                );
                for p in &b.ports {
                    let Some(addr) = super::names::port_addr(p) else {
                        continue;
                    };
                    let attached = p
                        .attach
                        .iter()
                        .flat_map(|a| a.name.iter().chain(&a.aliases));
                    for name in attached.chain(&p.names) {
                        records.push(Entry::new(
                            name.to_ascii_lowercase(),
                            addr,
                            self.ports.get(&p.name).cloned(),
                        ));
                    }
                }
                records.extend(Self::service_records(b));
                Some(NetDns {
                    bridge: self.bridges.get(&b.name)?.id,
                    subnet,
                    domain: n.domain.clone(),
                    upstreams: if n.upstream.is_empty() {
                        host.clone()
                    } else {
                        n.upstream.clone()
                    },
                    records,
                })
            })
            .collect();
        super::lock(&self.gateway.state).configure_dns(nets);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    #[test]
    fn nameservers_of_a_resolv_conf() {
        let t = "# generated\nsearch example\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n\
                 nameserver   192.0.2.2 # second\nnameserver ::1\nnameserver bogus\n";
        assert_eq!(
            super::nameservers(t),
            [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
    }
}
