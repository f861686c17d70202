//! The control plane of services: `add-service`, `del-service`, `set-backends`,
//! `list-services` and `publish … service:NAME`. A service lives in its bridge's config
//! (a VIP of the bridge's network and backends in it); from it the controller makes the
//! NAT engine's scheduler rules ([`nat_service`]), the gateway's health checks, the
//! bridge's set of backend endpoints whose replies the pipeline hands the gateway, and
//! the service's DNS records.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ctl::service::{
    Backend, BackendInfo, Health, Mode, ServiceInfo, ServiceSpec, MAX_BACKENDS, MAX_PORTS,
};
use ctl::{validate, Data, L4Proto};

use super::{ControlError, Controller};
use crate::config::BridgeConf;
use crate::gateway::dns::Entry;
use crate::gateway::health::HealthSpec;
use crate::pipeline::services::Replies;

fn proto(p: L4Proto) -> nat::tuple::Proto {
    match p {
        L4Proto::Tcp => nat::tuple::Proto::Tcp,
        L4Proto::Udp => nat::tuple::Proto::Udp,
    }
}

/// What the NAT engine's scheduler is told of a service.
pub(crate) fn nat_service(s: &ServiceSpec) -> nat::lb::Service {
    nat::lb::Service {
        vip: s.vip,
        ports: s.ports.iter().map(|p| (proto(p.proto), p.port)).collect(),
        backends: s
            .backends
            .iter()
            .map(|b| nat::lb::Backend {
                addr: b.ip,
                port: b.port,
            })
            .collect(),
        sched: match s.sched {
            ctl::service::Sched::Rr => nat::lb::Sched::RoundRobin,
            ctl::service::Sched::Hash => nat::lb::Sched::SourceHash,
        },
    }
}

/// The port each backend of `s` is checked on, if it is checked: `--health tcp:PORT`,
/// or by default the backend's port for the service's first TCP port.
fn check_port(s: &ServiceSpec, b: &Backend) -> Option<u16> {
    match s.health {
        Some(Health::None) => None,
        Some(Health::Tcp(p)) => Some(p),
        None => {
            let first = s.ports.iter().find(|p| p.proto == L4Proto::Tcp)?;
            Some(b.port.unwrap_or(first.port))
        }
    }
}

/// The health check `show` and `list-services` print.
fn health_text(s: &ServiceSpec) -> String {
    match (s.health, s.backends.first().and_then(|b| check_port(s, b))) {
        (Some(h), _) => h.to_string(),
        (None, Some(p)) => format!("tcp:{p}"),
        (None, None) => "none".into(),
    }
}

/// The VIP port `proto` `host_port` of the uplink goes to for service `s`: the same
/// port when the service serves it, else its only port of that protocol.
pub(crate) fn service_port(
    s: &ServiceSpec,
    l4: L4Proto,
    host_port: u16,
) -> Result<u16, ControlError> {
    let service = &s.name;
    let of_proto: Vec<u16> = s
        .ports
        .iter()
        .filter(|p| p.proto == l4)
        .map(|p| p.port)
        .collect();
    if s.ports.is_empty() || of_proto.contains(&host_port) {
        return Ok(host_port);
    }
    match of_proto.as_slice() {
        [p] => Ok(*p),
        [] => Err(ControlError::Invalid(format!(
            "service {service} serves no {} port",
            l4.as_str()
        ))),
        _ => Err(ControlError::Invalid(format!(
            "service {service} serves several {} ports; publish one of them as the host port",
            l4.as_str()
        ))),
    }
}

/// Checks a service against its bridge (`b`, whose network is `addr/prefix` with
/// gateway `gw`); `except` is the service's own name when it is being replaced.
pub(super) fn check(
    s: &ServiceSpec,
    b: &BridgeConf,
    (addr, prefix, gw): (Ipv4Addr, u8, Ipv4Addr),
    except: Option<&str>,
) -> Result<(), ControlError> {
    ctl::dns::name("service name", &s.name)?;
    validate::host_in("VIP", s.vip, addr, prefix)?;
    if s.vip == gw {
        return Err(ControlError::Invalid(format!(
            "VIP {} is the gateway's address",
            s.vip
        )));
    }
    for o in b
        .services
        .iter()
        .filter(|o| Some(o.name.as_str()) != except)
    {
        if o.vip == s.vip {
            return Err(ControlError::Invalid(format!(
                "VIP {} is already service {}'s",
                s.vip, o.name
            )));
        }
    }
    for p in &b.ports {
        let attached = p.attach.as_ref().and_then(|a| validate::cidr(&a.ip).ok());
        let bound = p.allowed.iter().flat_map(|a| a.ips.iter().copied());
        if attached
            .map(|(ip, _)| ip)
            .into_iter()
            .chain(bound)
            .any(|ip| ip == s.vip)
        {
            return Err(ControlError::Invalid(format!(
                "VIP {} is the address of port {}",
                s.vip, p.name
            )));
        }
    }
    if s.ports.len() > MAX_PORTS {
        return Err(ControlError::Invalid(format!("at most {MAX_PORTS} ports")));
    }
    for (i, p) in s.ports.iter().enumerate() {
        if s.ports[..i].contains(p) {
            return Err(ControlError::Invalid(format!("port {p} is listed twice")));
        }
    }
    if s.backends.is_empty() || s.backends.len() > MAX_BACKENDS {
        return Err(ControlError::Invalid(format!(
            "a service has 1 to {MAX_BACKENDS} backends"
        )));
    }
    for (i, be) in s.backends.iter().enumerate() {
        validate::host_in("backend", be.ip, addr, prefix)?;
        if be.ip == gw || be.ip == s.vip {
            return Err(ControlError::Invalid(format!(
                "backend {} is the {} address",
                be.ip,
                if be.ip == gw { "gateway's" } else { "VIP's" }
            )));
        }
        if s.backends[..i].contains(be) {
            return Err(ControlError::Invalid(format!(
                "backend {be} is listed twice"
            )));
        }
        if be.port.is_some() && s.ports.len() != 1 {
            return Err(ControlError::Invalid(format!(
                "backend {be} names a port: the service must serve exactly one --port"
            )));
        }
    }
    Ok(())
}

impl Controller {
    /// Refuses addresses `ips` for a port of `bridge` (attached with, or bound to) if one
    /// is a VIP of a service of `bridge`: the gateway answers for it (`check` refuses the
    /// converse).
    pub(super) fn check_not_vip(&self, bridge: &str, ips: &[Ipv4Addr]) -> Result<(), ControlError> {
        let services = &self.bridge_conf(bridge)?.services;
        match services.iter().find(|v| ips.contains(&v.vip)) {
            Some(v) => Err(ControlError::Invalid(format!(
                "address {} is service {}'s VIP",
                v.vip, v.name
            ))),
            None => Ok(()),
        }
    }

    /// The network of `bridge`: (network address, prefix, gateway).
    pub(super) fn service_net(
        &self,
        bridge: &str,
    ) -> Result<(Ipv4Addr, u8, Ipv4Addr), ControlError> {
        let b = self.bridge_conf(bridge)?;
        let Some(n) = &b.net else {
            return Err(ControlError::NoNet(bridge.to_string()));
        };
        let (addr, prefix) = validate::cidr(&n.subnet)?;
        Ok((addr, prefix, n.gateway))
    }

    fn no_service(bridge: &str, name: &str) -> ControlError {
        ControlError::Invalid(format!("bridge {bridge} has no service {name}"))
    }

    /// Commits `next` and brings the gateway, the snapshot and DNS in line.
    fn commit_services(&mut self, next: crate::config::Config) -> Result<Data, ControlError> {
        self.commit(next)?;
        self.configure_gateway();
        self.publish();
        Ok(Data::Done)
    }

    pub(super) fn add_service(
        &mut self,
        bridge: &str,
        spec: ServiceSpec,
    ) -> Result<Data, ControlError> {
        let net = self.service_net(bridge)?;
        let b = self.bridge_conf(bridge)?;
        if b.services.iter().any(|s| s.name == spec.name) {
            return Err(ControlError::Invalid(format!(
                "bridge {bridge} already has a service {}",
                spec.name
            )));
        }
        check(&spec, b, net, None)?;
        let mut next = self.cfg.clone();
        if let Some(b) = next.bridge_mut(bridge) {
            b.services.push(spec);
        }
        self.commit_services(next)
    }

    pub(super) fn del_service(&mut self, bridge: &str, name: &str) -> Result<Data, ControlError> {
        let b = self.bridge_conf(bridge)?;
        let Some(s) = b.services.iter().find(|s| s.name == name) else {
            return Err(Self::no_service(bridge, name));
        };
        if let Some(p) = self.cfg.published.iter().find(|p| *p.target.ip() == s.vip) {
            return Err(ControlError::Invalid(format!(
                "{}/{} is published to service {name}; unpublish it first",
                p.proto.as_str(),
                p.host_port
            )));
        }
        let mut next = self.cfg.clone();
        if let Some(b) = next.bridge_mut(bridge) {
            b.services.retain(|s| s.name != name);
        }
        self.commit_services(next)
    }

    pub(super) fn set_backends(
        &mut self,
        bridge: &str,
        name: &str,
        backends: Vec<Backend>,
    ) -> Result<Data, ControlError> {
        let net = self.service_net(bridge)?;
        let b = self.bridge_conf(bridge)?;
        let Some(s) = b.services.iter().find(|s| s.name == name) else {
            return Err(Self::no_service(bridge, name));
        };
        let mut spec = s.clone();
        spec.backends = backends;
        check(&spec, b, net, Some(name))?;
        let mut next = self.cfg.clone();
        if let Some(s) = next
            .bridge_mut(bridge)
            .and_then(|b| b.services.iter_mut().find(|s| s.name == name))
        {
            *s = spec;
        }
        self.commit_services(next)
    }

    /// Publishes `host_port` of the uplink address to the service named `service`: to
    /// the VIP's port `host_port` when the service serves it, else to its only port of
    /// that protocol.
    pub(super) fn publish_service(
        &mut self,
        l4: L4Proto,
        host_port: u16,
        service: &str,
    ) -> Result<Data, ControlError> {
        let found: Vec<(&str, &ServiceSpec)> = self
            .cfg
            .bridges
            .iter()
            .flat_map(|b| b.services.iter().map(move |s| (b.name.as_str(), s)))
            .filter(|(_, s)| s.name == service)
            .collect();
        let s = match found.as_slice() {
            [] => return Err(ControlError::Invalid(format!("no service named {service}"))),
            [(_, s)] => *s,
            _ => {
                let on: Vec<&str> = found.iter().map(|(b, _)| *b).collect();
                return Err(ControlError::Invalid(format!(
                    "service {service} exists on bridges {}; names must be unique to publish",
                    on.join(", ")
                )));
            }
        };
        let port = service_port(s, l4, host_port)?;
        self.publish_port(l4, host_port, SocketAddrV4::new(s.vip, port))
    }

    /// The service a published target points at (its VIP), if any.
    pub(super) fn service_at(&self, vip: Ipv4Addr) -> Option<&ServiceSpec> {
        self.cfg
            .bridges
            .iter()
            .flat_map(|b| &b.services)
            .find(|s| s.vip == vip)
    }

    /// The services of `bridge` with their backends' health and counters.
    pub(super) fn services_info(&self, bridge: &str) -> Vec<ServiceInfo> {
        let Some(b) = self.cfg.bridge(bridge) else {
            return Vec::new();
        };
        if b.services.is_empty() {
            return Vec::new();
        }
        let stats = {
            let g = super::lock(&self.gateway.state);
            g.nat().service_stats(g.now())
        };
        b.services
            .iter()
            .map(|s| {
                let of = stats.iter().find(|(vip, _)| *vip == s.vip).map(|(_, v)| v);
                ServiceInfo {
                    bridge: bridge.to_string(),
                    name: s.name.clone(),
                    vip: s.vip.to_string(),
                    ports: s.ports.iter().map(|p| p.to_string()).collect(),
                    mode: s.mode,
                    sched: s.sched,
                    health: health_text(s),
                    backends: s
                        .backends
                        .iter()
                        .map(|be| {
                            let st = of.and_then(|v| {
                                v.iter()
                                    .find(|x| x.backend.addr == be.ip && x.backend.port == be.port)
                            });
                            BackendInfo {
                                backend: be.to_string(),
                                health: match (check_port(s, be), st.map(|x| x.up)) {
                                    (None, _) => "unchecked",
                                    (Some(_), Some(false)) => "down",
                                    (Some(_), _) => "up",
                                }
                                .into(),
                                active: st.map_or(0, |x| x.active),
                                connections: st.map_or(0, |x| x.connections),
                                packets: st.map_or(0, |x| x.packets),
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    pub(super) fn list_services(&self, bridge: Option<&str>) -> Result<Data, ControlError> {
        let names: Vec<String> = match bridge {
            Some(b) => vec![self.bridge_conf(b)?.name.clone()],
            None => self.cfg.bridges.iter().map(|b| b.name.clone()).collect(),
        };
        Ok(Data::Services {
            services: names.iter().flat_map(|b| self.services_info(b)).collect(),
        })
    }

    /// The backends the gateway checks.
    pub(super) fn health_specs(&self) -> Vec<HealthSpec> {
        let mut v = Vec::new();
        for b in self.cfg.bridges.iter().filter(|b| b.net.is_some()) {
            let Some(id) = self.bridges.get(&b.name).map(|r| r.id) else {
                continue;
            };
            for s in &b.services {
                for be in &s.backends {
                    let Some(port) = check_port(s, be) else {
                        continue;
                    };
                    let spec = HealthSpec {
                        bridge: id,
                        vip: s.vip,
                        addr: be.ip,
                        port,
                    };
                    if !v
                        .iter()
                        .any(|o: &HealthSpec| o.vip == s.vip && o.addr == be.ip)
                    {
                        v.push(spec);
                    }
                }
            }
        }
        v
    }

    /// The endpoints of `b`'s backends whose replies the pipeline hands the gateway,
    /// with the bridge's lingering ones (backends that left while connections of theirs
    /// go on, which the gateway keeps up to date): without them, such a backend's
    /// replies would reach a client in its network untranslated, from the backend's
    /// address, and the client would reset the connection. A bridge whose services are
    /// all gone keeps its `Replies` while something lingers.
    pub(super) fn service_replies(b: &BridgeConf) -> Option<Arc<Replies>> {
        if b.net.is_none()
            || (b.services.is_empty() && !crate::pipeline::services::lingers(&b.name))
        {
            return None;
        }
        let r = Replies::new(
            b.services
                .iter()
                .flat_map(|s| nat_service(s).reply_sources()),
        )
        .with_lingering(crate::pipeline::services::lingering(&b.name));
        Some(Arc::new(r))
    }

    /// The DNS records of `b`'s services: the name to the VIP, or (`dnsrr`) to every
    /// backend while it is healthy.
    pub(super) fn service_records(b: &BridgeConf) -> Vec<Entry> {
        let mut v = Vec::new();
        for s in &b.services {
            let name = s.name.to_ascii_lowercase();
            match s.mode {
                Mode::Vip => v.push(Entry::new(name, s.vip, None)),
                Mode::Dnsrr => {
                    for be in &s.backends {
                        if v.iter().any(|e: &Entry| e.name == name && e.addr == be.ip) {
                            continue;
                        }
                        let mut e = Entry::new(name.clone(), be.ip, None);
                        e.backend_of = Some(s.vip);
                        v.push(e);
                    }
                }
            }
        }
        v
    }
}
