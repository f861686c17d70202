//! `IpamClaim` and `IpamRelease`: an address of an overlay reserved for a container
//! that something else plugs in (Docker's IPAM driver), through the same etcd
//! transaction as `attach` (the MAC derived from the address, as Docker's overlay does),
//! and given back. The store is asked outside the controller's lock.

use std::sync::Mutex;

use ctl::{Data, Request};

use super::placement::{overlay_and_address, Asked, Placed};
use super::VerbError;
use crate::controller::Controller;

fn lock(ctl: &Mutex<Controller>) -> std::sync::MutexGuard<'_, Controller> {
    ctl.lock().unwrap_or_else(|p| p.into_inner())
}

/// Answers `IpamClaim` or `IpamRelease`; nothing changed when it is refused.
pub fn handle(
    req: Request,
    ctl: &Mutex<Controller>,
    cl: &cluster::Handle,
) -> Result<Data, VerbError> {
    match req {
        Request::IpamClaim { overlay, ip, owner } => {
            let asked = ip.map_or(Asked::Any, Asked::Addr);
            let Placed { net, .. } = overlay_and_address(&cl.status().state, &overlay, asked)?;
            ctl::validate::label("owner", &owner).map_err(VerbError::Invalid)?;
            super::not_a_mesh_owner("owner", &owner)?;
            let rec = cl.claim(cluster::Claim {
                overlay,
                ip,
                mac: None,
                container: owner,
                names: Vec::new(),
            })?;
            if let Err(e) = lock(ctl).add_reserved(rec.clone()) {
                if let Err(r) = cl.release(&rec) {
                    tracing::warn!(ip = %rec.ip, "address of a failed reservation released later: {r}");
                    cl.release_later(rec);
                }
                return Err(e.into());
            }
            tracing::info!(overlay = %rec.overlay, ip = %rec.ip, owner = %rec.container, "address reserved");
            Ok(Data::Attached {
                ip: format!("{}/{}", rec.ip, net.1),
                mac: rec.mac,
            })
        }
        Request::IpamRelease { overlay, ip } => {
            let Some(rec) = lock(ctl).find_reserved(&overlay, ip) else {
                return Err(VerbError::NotReserved { overlay, ip });
            };
            // Released first: if the store cannot take it, the reservation stays.
            cl.release(&rec)?;
            if let Err(e) = lock(ctl).remove_reserved(&overlay, ip) {
                // Still reserved here (the config could not be saved): published again.
                cl.unrelease(&rec);
                return Err(e.into());
            }
            tracing::info!(overlay = %overlay, ip = %ip, "reserved address released");
            Ok(Data::Done)
        }
        _ => Err(VerbError::NotClusterVerb),
    }
}
