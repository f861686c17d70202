//! `set-names`: DNS names given to a port that was not attached by `vsctl attach` (a
//! Docker endpoint, whose container name and aliases the plugin learns only after the
//! container joined), and the address those names stand for.

use std::net::Ipv4Addr;

use ctl::Data;

use super::{ControlError, Controller};
use crate::config::PortConf;

/// The most names one port may have (a container name, its aliases and short ID).
pub(crate) const MAX_NAMES: usize = 32;

/// The address a port's DNS names stand for: the one it is attached with, else the
/// one address it is bound to (`set-port allowed=MAC,IP`).
pub(crate) fn port_addr(p: &PortConf) -> Option<Ipv4Addr> {
    if let Some(a) = &p.attach {
        return ctl::validate::cidr(&a.ip).ok().map(|(addr, _)| addr);
    }
    match p.allowed.as_ref().map(|b| b.ips.as_slice()) {
        Some([one]) => Some(*one),
        _ => None,
    }
}

impl Controller {
    pub(super) fn set_names(
        &mut self,
        port: &str,
        names: Vec<String>,
    ) -> Result<Data, ControlError> {
        let b = self
            .cfg
            .port_owner(port)
            .ok_or_else(|| ControlError::Invalid(format!("no port named {port}")))?;
        let bridge = b.name.clone();
        let Some(net) = &b.net else {
            return Err(ControlError::NoNet(bridge));
        };
        if names.len() > MAX_NAMES {
            return Err(ControlError::Invalid(format!(
                "at most {MAX_NAMES} names a port"
            )));
        }
        let mut clean: Vec<String> = Vec::with_capacity(names.len());
        for n in &names {
            ctl::dns::name("name", n)?;
            let n = n.to_ascii_lowercase();
            if !clean.contains(&n) {
                clean.push(n);
            }
        }
        let (net_addr, prefix) = ctl::validate::cidr(&net.subnet)?;
        if !clean.is_empty() {
            let addr = b
                .ports
                .iter()
                .find(|p| p.name == port)
                .and_then(port_addr)
                .ok_or_else(|| {
                    ControlError::Invalid(format!(
                        "port {port} has no address to name: attach it, or bind it to one address (set-port {port} allowed=MAC,IP)"
                    ))
                })?;
            ctl::validate::host_in("port address", addr, net_addr, prefix)?;
        }
        let mut next = self.cfg.clone();
        if let Some(pc) = next
            .bridge_mut(&bridge)
            .and_then(|b| b.ports.iter_mut().find(|p| p.name == port))
        {
            pc.names = clean;
        }
        self.commit(next)?;
        self.sync_dns();
        Ok(Data::Done)
    }
}
