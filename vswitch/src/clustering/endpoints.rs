//! `attach` and `detach` on a cluster overlay: the address comes from (or is checked
//! against) the cluster's allocator before the container is plugged in, and goes back
//! to it when the container is unplugged. The store is asked outside the controller's
//! lock; the plugging itself is the ordinary `attach`, under it.

use std::sync::Mutex;

use ctl::{validate, Data, Request};

use super::placement::{overlay_and_address, Asked, Placed};
use super::VerbError;
use crate::controller::Controller;
use crate::wire::MacAddr;

fn lock(ctl: &Mutex<Controller>) -> std::sync::MutexGuard<'_, Controller> {
    ctl.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `req` is an `attach` or `detach` on a cluster overlay's bridge (and so goes
/// through the cluster's allocator).
pub fn is_overlay_attach(
    req: &Request,
    ctl: &Mutex<Controller>,
    cluster: Option<&cluster::Handle>,
) -> bool {
    let bridge = match req {
        Request::Attach { bridge, .. } | Request::Detach { bridge, .. } => bridge,
        _ => return false,
    };
    cluster.is_some() && lock(ctl).is_overlay_bridge(bridge)
}

/// Answers an `attach` or `detach` on an overlay; the error is the one line `vsctl`
/// prints, and nothing changed.
pub fn handle(
    req: Request,
    ctl: &Mutex<Controller>,
    cl: &cluster::Handle,
) -> Result<Data, VerbError> {
    match req {
        Request::Attach { .. } => attach(req, ctl, cl),
        Request::Detach {
            bridge,
            netns,
            ifname,
            container,
        } => {
            let ep = lock(ctl).overlay_endpoint(&bridge, &netns, &ifname, container.as_deref());
            // Released first: if the store cannot take it, the container stays plugged
            // in and keeps its address.
            if let Some(e) = &ep {
                cl.release(e)?;
            }
            let done = lock(ctl).handle(Request::Detach {
                bridge,
                netns,
                ifname,
                container,
            });
            // Still plugged in (the config could not be saved): the address is its
            // again, or another node could hand it out while it is in use.
            if let (Err(_), Some(e)) = (&done, &ep) {
                cl.unrelease(e);
            }
            done.map_err(VerbError::from)
        }
        _ => Err(VerbError::NotClusterVerb),
    }
}

/// `attach` on an overlay: the request is the user's, with the address, the MAC and
/// (encrypted) the MTU the cluster gave filled in.
fn attach(
    mut req: Request,
    ctl: &Mutex<Controller>,
    cl: &cluster::Handle,
) -> Result<Data, VerbError> {
    let Request::Attach {
        bridge,
        netns,
        container,
        ifname,
        ip,
        mac,
        mtu,
        name,
        aliases,
        ..
    } = &mut req
    else {
        return Err(VerbError::NotClusterVerb);
    };
    super::not_a_mesh_owner("container", container)?;
    crate::controller::check_names(container, name.as_ref(), aliases)
        .map_err(crate::controller::ControlError::from)?;
    let asked = if ip.is_empty() {
        Asked::Any
    } else {
        Asked::Cidr(ip)
    };
    let Placed {
        overlay: o,
        net,
        ip: want,
    } = overlay_and_address(&cl.status().state, bridge, asked)?;
    let asked_mac = match mac {
        Some(m) => Some(MacAddr(validate::unicast_mac(m)?).to_string()),
        None => None,
    };
    lock(ctl).attach_precheck(bridge, netns, ifname)?;
    let rec = cl.claim(cluster::Claim {
        overlay: bridge.clone(),
        ip: want,
        mac: asked_mac,
        container: container.clone(),
        // As the attach will record them, so that the record it publishes again is
        // this one (one that differs is rewritten in place).
        names: crate::controller::dns_name(name.clone(), container)
            .iter()
            .chain(aliases.iter())
            .map(|n| n.to_ascii_lowercase())
            .collect(),
    })?;
    let given = format!("{}/{}", rec.ip, net.1);
    *ip = given.clone();
    *mac = Some(rec.mac.clone());
    // VXLAN inside WireGuard over a 1500-byte underlay leaves 1390.
    *mtu = mtu.or(o.encrypted.then_some(1500 - wg::OVERHEAD - 14));
    let done = lock(ctl).handle(req);
    match done {
        Ok(_) => Ok(Data::Attached {
            ip: given,
            mac: rec.mac,
        }),
        Err(e) => {
            // Not plugged in: the address goes back (if the store is away now, as soon
            // as it is back).
            if let Err(r) = cl.release(&rec) {
                tracing::warn!(ip = %rec.ip, "address of a failed attach released later: {r}");
                cl.release_later(rec);
            }
            Err(e.into())
        }
    }
}
