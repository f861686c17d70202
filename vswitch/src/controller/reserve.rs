//! Addresses reserved in the cluster for containers this node does not plug in itself
//! (Docker's IPAM driver asks for them; Docker's network driver plugs the container in
//! later): kept in the config so that they are published again under a new lease after
//! a restart or a lost lease, exactly like attached containers' addresses.

use std::net::Ipv4Addr;

use super::{ControlError, Controller};

impl Controller {
    /// The reserved addresses.
    pub fn reserved(&self) -> &[cluster::EndpointRecord] {
        self.cfg
            .cluster
            .as_ref()
            .map(|c| c.reserved.as_slice())
            .unwrap_or_default()
    }

    /// Keeps `rec` (just claimed in the store) in the config.
    pub fn add_reserved(&mut self, rec: cluster::EndpointRecord) -> Result<(), ControlError> {
        let mut next = self.cfg.clone();
        let Some(cc) = next.cluster.as_mut() else {
            return Err(ControlError::NotInCluster);
        };
        cc.reserved.retain(|r| r.ipam_key() != rec.ipam_key());
        cc.reserved.push(rec);
        self.commit(next)?;
        Ok(())
    }

    /// The reservation of `ip` in `overlay`, if this node holds one.
    pub fn find_reserved(&self, overlay: &str, ip: Ipv4Addr) -> Option<cluster::EndpointRecord> {
        self.reserved()
            .iter()
            .find(|r| r.overlay == overlay && r.ip == ip)
            .cloned()
    }

    /// Forgets the reservation of `ip` in `overlay` (released in the store already).
    pub fn remove_reserved(&mut self, overlay: &str, ip: Ipv4Addr) -> Result<(), ControlError> {
        let mut next = self.cfg.clone();
        if let Some(cc) = next.cluster.as_mut() {
            cc.reserved
                .retain(|r| !(r.overlay == overlay && r.ip == ip));
        }
        self.commit(next)?;
        Ok(())
    }
}
