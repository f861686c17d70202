//! Encrypted overlays: the keys of an overlay tunnel's peers follow the public keys the
//! nodes publish in the cluster. A node whose key changed (its key file removed, a
//! restart) keeps its remote slot, so what was learned or pinned behind it stays; only
//! its WireGuard peer (and with it the session) is replaced.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{remote_rt, ControlError, Controller};
use crate::config::ConfigError;
use crate::tunnel::RemoteRt;

impl Controller {
    /// Makes `key` the public key of remote `remote` of encrypted tunnel `name`.
    pub(super) fn set_peer_key(
        &mut self,
        bridge: &str,
        name: &str,
        remote: Ipv4Addr,
        key: &str,
    ) -> Result<(), ControlError> {
        let (rt, mut tc) = self.tunnel(bridge, name)?;
        let key = wg::PublicKey::parse(key)
            .map_err(|e| ConfigError::Invalid(format!("remote {remote}: {e}")))?
            .to_string();
        let Some(p) = tc
            .encrypt
            .as_mut()
            .and_then(|e| e.peers.iter_mut().find(|p| p.remote == remote))
        else {
            return Ok(());
        };
        if p.public_key == key {
            return Ok(());
        }
        p.public_key = key;
        self.change_tunnel(bridge, name, tc.clone(), |_| {})?;
        if let Some(t) = &rt.tunnel {
            let next: Vec<Arc<RemoteRt>> = t
                .remotes
                .load()
                .iter()
                .map(|r| {
                    if r.addr == remote {
                        Arc::new(remote_rt(&self.shared.wg_key, &t.vtep, &tc, r.slot, r.addr))
                    } else {
                        r.clone()
                    }
                })
                .collect();
            t.remotes.store(Arc::new(next));
        }
        self.refresh_tunnels();
        Ok(())
    }
}
