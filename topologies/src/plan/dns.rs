//! Names: every host on a bridge with a network is known to that network's DNS by its
//! host name (`vsctl set-dns BR --record NAME=IP`), and is given the network's gateway
//! as its resolver.

use std::net::Ipv4Addr;

use super::{Bridge, Link, Plan};

impl Plan {
    /// (host, address) of every host interface linked to `bridge` of `switch` whose
    /// address is in the bridge's network, hosts whose name is a valid DNS name only.
    pub fn named_hosts(&self, switch: &str, bridge: &Bridge) -> Vec<(String, Ipv4Addr)> {
        let Some(net) = bridge.network else {
            return Vec::new();
        };
        let mut v = Vec::new();
        for l in &self.links {
            let Link::HostSwitch { host, port, .. } = l else {
                continue;
            };
            if port.switch != switch || port.bridge != bridge.name {
                continue;
            }
            let addr = self
                .host(&host.host)
                .and_then(|h| h.ifaces.iter().find(|i| i.name == host.iface))
                .and_then(|i| i.addr)
                .map(|c| c.ip)
                .filter(|a| net.subnet.contains(*a));
            if let Some(a) = addr {
                if ctl::dns::name("name", &host.host).is_ok() {
                    v.push((host.host.clone(), a));
                }
            }
        }
        v
    }

    /// The resolver of host `name`: the gateway of the network it is on (the one its
    /// default route goes through, if it is on several).
    pub fn dns_server(&self, name: &str) -> Option<Ipv4Addr> {
        let gw = self.host(name)?.gateway;
        let mut found = Vec::new();
        for s in &self.switches {
            for b in &s.bridges {
                let Some(net) = b.network else { continue };
                if self.named_hosts(&s.name, b).iter().any(|(h, _)| h == name) {
                    found.push(net.gateway);
                }
            }
        }
        found
            .iter()
            .copied()
            .find(|g| Some(*g) == gw)
            .or(found.first().copied())
    }
}

impl Bridge {
    /// The `vsctl set-dns` arguments that name the bridge's hosts, if it has a network
    /// with any.
    pub fn dns_args(&self, plan: &Plan, switch: &str) -> Option<Vec<String>> {
        let hosts = plan.named_hosts(switch, self);
        if hosts.is_empty() {
            return None;
        }
        let mut v = vec!["set-dns".to_string(), self.name.clone()];
        for (h, a) in hosts {
            v.push("--record".into());
            v.push(format!("{h}={a}"));
        }
        Some(v)
    }
}
