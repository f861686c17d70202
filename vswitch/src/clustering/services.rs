//! Services of cluster overlays: `add-service`, `set-backends` and `del-service` on an
//! overlay's bridge, and `publish`/`unpublish` of a port to such a service, are stored
//! in etcd (a compare-and-swap on the record this node saw) instead of this node's
//! config; every node, this one included, installs them from the watch. Checked here
//! first against the overlay's network and services as this node has them, so bad
//! input is refused in one line and nothing is written. The store is asked outside
//! the controller's lock.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cluster::{PublishRecord, ServiceChange, ServiceRecord};
use ctl::{Data, Request};

use super::VerbError;
use crate::controller::{ControlError, Controller};

fn lock(ctl: &Mutex<Controller>) -> std::sync::MutexGuard<'_, Controller> {
    ctl.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a change waits for this node to install what the store now holds.
const LOCAL_APPLY: Duration = Duration::from_secs(3);

/// Whether `req` changes a cluster service (and so goes to the store).
pub fn is_cluster_service(
    req: &Request,
    ctl: &Mutex<Controller>,
    cluster: Option<&cluster::Handle>,
) -> bool {
    let Some(cl) = cluster else {
        return false;
    };
    match req {
        Request::AddService { bridge, .. }
        | Request::DelService { bridge, .. }
        | Request::SetBackends { bridge, .. } => lock(ctl).is_cluster_bridge(bridge),
        Request::PublishService { service, .. } => cl
            .status()
            .state
            .services
            .values()
            .any(|m| m.contains_key(service)),
        Request::Unpublish { proto, host_port } => {
            lock(ctl).is_cluster_published(*proto, *host_port)
        }
        _ => false,
    }
}

/// Waits (a little) until `done` holds on this node.
fn settle(ctl: &Mutex<Controller>, done: impl Fn(&Controller) -> bool) {
    let until = Instant::now() + LOCAL_APPLY;
    while Instant::now() < until && !done(&lock(ctl)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn refused(s: String) -> VerbError {
    VerbError::Control(ControlError::Invalid(s))
}

/// The record of service `name` of `overlay` as the store last said.
fn record(cl: &cluster::Handle, overlay: &str, name: &str) -> Result<ServiceRecord, VerbError> {
    let state = cl.status().state;
    if !state.overlays.contains_key(overlay) {
        return Err(VerbError::UnknownOverlay(overlay.to_string()));
    }
    state
        .services
        .get(overlay)
        .and_then(|m| m.get(name))
        .cloned()
        .ok_or_else(|| refused(format!("overlay {overlay} has no service {name}")))
}

/// Answers a request [`is_cluster_service`] said yes to; nothing changed when it is
/// refused.
pub fn handle(
    req: Request,
    ctl: &Mutex<Controller>,
    cl: &cluster::Handle,
) -> Result<Data, VerbError> {
    match req {
        Request::AddService { bridge, spec } => {
            let state = cl.status().state;
            if !state.overlays.contains_key(&bridge) {
                return Err(VerbError::UnknownOverlay(bridge));
            }
            if let Some((o, _)) = state
                .services
                .iter()
                .find(|(_, m)| m.contains_key(&spec.name))
            {
                return Err(refused(format!(
                    "overlay {o} already has a service {}",
                    spec.name
                )));
            }
            lock(ctl).check_cluster_service(&bridge, &spec, None)?;
            let rec = ServiceRecord {
                overlay: bridge.clone(),
                spec: spec.clone(),
                published: Vec::new(),
            };
            cl.change_service(ServiceChange {
                overlay: bridge.clone(),
                name: spec.name.clone(),
                prev: None,
                next: Some(rec),
            })?;
            settle(ctl, |c| c.has_service(&bridge, &spec.name, Some(&spec)));
            Ok(Data::Done)
        }
        Request::SetBackends {
            bridge,
            name,
            backends,
        } => {
            let prev = record(cl, &bridge, &name)?;
            let mut next = prev.clone();
            next.spec.backends = backends;
            lock(ctl).check_cluster_service(&bridge, &next.spec, Some(&name))?;
            let spec = next.spec.clone();
            cl.change_service(ServiceChange {
                overlay: bridge.clone(),
                name: name.clone(),
                prev: Some(prev),
                next: Some(next),
            })?;
            settle(ctl, |c| c.has_service(&bridge, &name, Some(&spec)));
            Ok(Data::Done)
        }
        Request::DelService { bridge, name } => {
            let prev = record(cl, &bridge, &name)?;
            if let Some(p) = prev.published.first() {
                return Err(refused(format!(
                    "{}/{} is published to service {name}; unpublish it first",
                    p.proto.as_str(),
                    p.host_port
                )));
            }
            cl.change_service(ServiceChange {
                overlay: bridge.clone(),
                name: name.clone(),
                prev: Some(prev),
                next: None,
            })?;
            settle(ctl, |c| c.has_service(&bridge, &name, None));
            Ok(Data::Done)
        }
        Request::PublishService {
            proto,
            host_port,
            service,
        } => {
            ctl::validate::host_port(host_port)?;
            let state = cl.status().state;
            let Some(prev) = state
                .services
                .values()
                .find_map(|m| m.get(&service))
                .cloned()
            else {
                return Err(refused(format!("no service named {service}")));
            };
            if lock(ctl).is_published(proto, host_port) {
                return Err(refused(format!(
                    "{}/{host_port} is already published",
                    proto.as_str()
                )));
            }
            if let Some(o) = state.services.values().flat_map(|m| m.values()).find(|r| {
                r.published
                    .iter()
                    .any(|p| p.proto == proto && p.host_port == host_port)
            }) {
                return Err(refused(format!(
                    "{}/{host_port} is already published to service {}",
                    proto.as_str(),
                    o.spec.name
                )));
            }
            crate::controller::services::service_port(&prev.spec, proto, host_port)?;
            let mut next = prev.clone();
            next.published.push(PublishRecord { proto, host_port });
            next.published.sort();
            cl.change_service(ServiceChange {
                overlay: prev.overlay.clone(),
                name: service,
                prev: Some(prev),
                next: Some(next),
            })?;
            settle(ctl, |c| c.is_cluster_published(proto, host_port));
            Ok(Data::Done)
        }
        Request::Unpublish { proto, host_port } => {
            let state = cl.status().state;
            let Some(prev) = state
                .services
                .values()
                .flat_map(|m| m.values())
                .find(|r| {
                    r.published
                        .iter()
                        .any(|p| p.proto == proto && p.host_port == host_port)
                })
                .cloned()
            else {
                return Err(refused(format!(
                    "{}/{host_port} is no cluster service's",
                    proto.as_str()
                )));
            };
            let mut next = prev.clone();
            next.published
                .retain(|p| !(p.proto == proto && p.host_port == host_port));
            cl.change_service(ServiceChange {
                overlay: prev.overlay.clone(),
                name: prev.spec.name.clone(),
                prev: Some(prev),
                next: Some(next),
            })?;
            settle(ctl, |c| !c.is_cluster_published(proto, host_port));
            Ok(Data::Done)
        }
        _ => Err(VerbError::NotClusterVerb),
    }
}
