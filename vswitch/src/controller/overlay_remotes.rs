//! An overlay tunnel's new remotes added in one change: a cluster that grows by many
//! nodes at once (a first sync, a simulated 200-node cluster) costs one config commit
//! and one runtime swap per overlay, not one per node, each commit writing a config
//! that caches the whole cluster state.

use std::net::Ipv4Addr;

use super::{ControlError, Controller};
use crate::config::ConfigError;

impl Controller {
    /// Adds `remotes` (each with its WireGuard key if the tunnel is encrypted) to tunnel
    /// `name` of `bridge`; all or none.
    pub(super) fn add_remotes(
        &mut self,
        bridge: &str,
        name: &str,
        remotes: &[(Ipv4Addr, Option<ctl::PeerSpec>)],
    ) -> Result<(), ControlError> {
        if remotes.is_empty() {
            return Ok(());
        }
        let (rt, mut tc) = self.tunnel(bridge, name)?;
        for (a, peer) in remotes {
            if tc.remotes.contains(a) {
                return Err(ControlError::RemoteExists {
                    remote: *a,
                    tunnel: name.to_string(),
                });
            }
            match (&mut tc.encrypt, peer) {
                (Some(e), Some(p)) => e.peers.push(
                    crate::encrypt::PeerConf::from_spec(*a, p).map_err(ConfigError::Invalid)?,
                ),
                (None, Some(_)) => {
                    return Err(ConfigError::Invalid(format!(
                        "tunnel {name} is not encrypted: a public key does not apply"
                    ))
                    .into())
                }
                // An encrypted tunnel's check refuses a remote without a key.
                _ => {}
            }
            tc.remotes.push(*a);
        }
        self.change_tunnel(bridge, name, tc.clone(), |_| {})?;
        if let Some(t) = &rt.tunnel {
            self.add_remote_rts(t, &tc, remotes.iter().map(|(a, _)| *a));
        }
        self.refresh_tunnels();
        Ok(())
    }
}
