//! `set-port`: a port's security settings (address binding, storm limit), and the
//! defaults a container's port gets from `attach`.

use ctl::{validate, Allowed, Data, PortBinding};

use super::{ControlError, Controller};
use crate::wire::MacAddr;

impl Controller {
    /// Changes port `port`'s binding and/or storm limit; what is left out stays.
    pub(super) fn set_port(
        &mut self,
        port: &str,
        allowed: Option<Allowed>,
        storm_pps: Option<u32>,
    ) -> Result<Data, ControlError> {
        if allowed.is_none() && storm_pps.is_none() {
            return Err(ControlError::Invalid(
                "set-port: nothing to set (settings: allowed=MAC[,IP…]|any, storm=PPS|off)".into(),
            ));
        }
        let bridge = self
            .cfg
            .port_owner(port)
            .map(|b| b.name.clone())
            .ok_or_else(|| ControlError::Invalid(format!("no port named {port}")))?;
        let allowed = match allowed {
            Some(Allowed::Only(b)) => {
                self.check_not_vip(&bridge, &b.ips)?;
                Some(Some(canonical(b)?))
            }
            Some(Allowed::Any) => Some(None),
            None => None,
        };
        let mut next = self.cfg.clone();
        let pc = next
            .bridge_mut(&bridge)
            .and_then(|b| b.ports.iter_mut().find(|p| p.name == port))
            .ok_or_else(|| ControlError::Invalid(format!("no port named {port}")))?;
        if let Some(a) = allowed {
            pc.allowed = a;
        }
        if let Some(s) = storm_pps {
            pc.storm_pps = s;
        }
        let rate = pc.storm_pps;
        self.commit(next)?;
        if let Some(rt) = self.ports.get(port) {
            rt.storm.set_rate(rate);
        }
        // The binding lives in the snapshot: workers see it from their next batch.
        self.publish();
        Ok(Data::Done)
    }
}

/// `b` with its MAC written as `show` writes MACs, so the config holds one spelling.
fn canonical(b: PortBinding) -> Result<PortBinding, ControlError> {
    let mac = MacAddr(validate::unicast_mac(&b.mac)?).to_string();
    let b = PortBinding { mac, ips: b.ips };
    ctl::portsec::binding(&b)?;
    Ok(b)
}

/// The binding and storm limit a container's port gets by default: its MAC and
/// address, [`ctl::portsec::DEFAULT_CONTAINER_STORM_PPS`].
pub(super) fn container_defaults(mac: Option<&str>, ip: &str) -> (Option<PortBinding>, u32) {
    let addr = validate::cidr(ip).ok().map(|(a, _)| a);
    let binding = mac
        .and_then(|m| validate::unicast_mac(m).ok())
        .map(|m| PortBinding {
            mac: MacAddr(m).to_string(),
            ips: addr.into_iter().collect(),
        });
    (binding, ctl::portsec::DEFAULT_CONTAINER_STORM_PPS)
}
