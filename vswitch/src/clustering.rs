//! The daemon's glue to the `cluster` crate: the cluster verbs of the control socket
//! (answered without the controller's lock, within a deadline), and the settings the
//! cluster thread is started with.

mod endpoints;
mod error;
mod placement;
mod reserve;
mod services;

pub use endpoints::is_overlay_attach;
pub use error::VerbError;
pub use services::is_cluster_service;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ctl::{validate, Data, NodeInfo, Request};

use crate::config::ClusterConf;
use crate::controller::Controller;

/// Whether `req` is one of the cluster verbs.
pub fn is_cluster_request(req: &Request) -> bool {
    matches!(
        req,
        Request::AddOverlay { .. }
            | Request::DelOverlay { .. }
            | Request::ListOverlays
            | Request::ListNodes
            | Request::IpamClaim { .. }
            | Request::IpamRelease { .. }
    )
}

fn lock(ctl: &Mutex<Controller>) -> std::sync::MutexGuard<'_, Controller> {
    ctl.lock().unwrap_or_else(|p| p.into_inner())
}

fn store_line(st: &cluster::Status) -> String {
    match (&st.connected, &st.error) {
        (true, _) => "connected".into(),
        (false, Some(e)) => format!("unreachable ({e})"),
        (false, None) => "connecting".into(),
    }
}

/// How long `add-overlay` waits for this node's own bridge to appear once the store
/// has the overlay.
const LOCAL_APPLY: Duration = Duration::from_secs(2);

/// Answers a cluster verb; the error is the one line `vsctl` prints.
pub fn handle(
    req: Request,
    ctl: &Mutex<Controller>,
    cluster: Option<&cluster::Handle>,
) -> Result<Data, VerbError> {
    let Some(cl) = cluster else {
        return Err(crate::controller::ControlError::NotInCluster.into());
    };
    match req {
        Request::AddOverlay {
            name,
            subnet,
            gateway,
            vni,
            encrypted,
        } => {
            validate::bridge_name(&name)?;
            if !cluster::state::valid_name(&name) || name.len() > 15 {
                return Err(VerbError::OverlayName(name));
            }
            let (net, prefix) = validate::subnet(&subnet)?;
            if let Some(g) = gateway {
                validate::host_in("gateway", g, net, prefix)?;
            }
            if let Some(v) = vni {
                if v == 0 || v > validate::VNI_MAX {
                    return Err(VerbError::Vni {
                        vni: v,
                        max: validate::VNI_MAX,
                    });
                }
            }
            if lock(ctl).has_local_bridge(&name) {
                return Err(VerbError::LocalBridge(name));
            }
            let rec = cl.add_overlay(cluster::OverlaySpec {
                name,
                subnet,
                gateway,
                vni,
                encrypted,
            })?;
            // The watch brings it back to every node, this one included: wait (a little)
            // until it is carried here, so the next command finds its bridge.
            let until = Instant::now() + LOCAL_APPLY;
            while Instant::now() < until && !lock(ctl).carries_overlay(&rec.name, rec.vni) {
                std::thread::sleep(Duration::from_millis(20));
            }
            // Shown as the store has it now, whether or not the watch brought it yet.
            let state = cluster::State {
                overlays: [(rec.name.clone(), rec)].into(),
                ..Default::default()
            };
            let overlays = lock(ctl).overlay_infos(&state);
            Ok(Data::Overlays {
                overlays,
                store: "connected".into(),
            })
        }
        Request::DelOverlay { name } => {
            let ports = lock(ctl).overlay_ports(&name);
            if !ports.is_empty() {
                return Err(VerbError::HasPorts {
                    name,
                    ports: ports.join(", "),
                });
            }
            cl.del_overlay(&name)?;
            Ok(Data::Done)
        }
        Request::ListOverlays => {
            let st = cl.status();
            Ok(Data::Overlays {
                overlays: lock(ctl).overlay_infos(&st.state),
                store: store_line(&st),
            })
        }
        Request::ListNodes => {
            let st = cl.status();
            let me = &cl.settings().node;
            let now = cluster::now_secs();
            let mut nodes: Vec<NodeInfo> = st
                .state
                .nodes
                .values()
                .map(|n| NodeInfo {
                    name: n.name.clone(),
                    vtep: n.vtep.to_string(),
                    state: if st.connected { "up" } else { "unknown" }.into(),
                    local: &n.name == me,
                    endpoints: st.state.endpoints.get(&n.name).copied().unwrap_or(0),
                    started: n.started,
                    last_seen: if st.connected { now } else { st.seen },
                    public_key: n.public_key.clone(),
                })
                .collect();
            nodes.extend(
                st.departed
                    .values()
                    .filter(|d| !st.state.nodes.contains_key(&d.record.name))
                    .map(|d| NodeInfo {
                        name: d.record.name.clone(),
                        vtep: d.record.vtep.to_string(),
                        state: "down".into(),
                        local: &d.record.name == me,
                        endpoints: 0,
                        started: d.record.started,
                        last_seen: d.left,
                        public_key: d.record.public_key.clone(),
                    }),
            );
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(Data::Nodes {
                nodes,
                store: store_line(&st),
            })
        }
        req @ (Request::Attach { .. } | Request::Detach { .. }) => endpoints::handle(req, ctl, cl),
        req @ (Request::IpamClaim { .. } | Request::IpamRelease { .. }) => {
            reserve::handle(req, ctl, cl)
        }
        req @ (Request::AddService { .. }
        | Request::DelService { .. }
        | Request::SetBackends { .. }
        | Request::PublishService { .. }
        | Request::Unpublish { .. }) => services::handle(req, ctl, cl),
        _ => Err(VerbError::NotClusterVerb),
    }
}

/// The thread that claims and releases this node's mesh addresses. Each claim asks the
/// store and may wait for it up to the request deadline; on the housekeeping thread that
/// wait held up FDB ageing, port re-attachment, the cluster's changes and SIGTERM, once
/// per overlay. Only this thread claims, so no two claims for one overlay race (one the
/// store left unanswered is released by the cluster thread once it answers).
pub struct Mesher {
    poke: std::sync::mpsc::SyncSender<()>,
}

impl Mesher {
    pub fn start(
        cl: std::sync::Arc<cluster::Handle>,
        ctl: std::sync::Arc<Mutex<Controller>>,
    ) -> std::io::Result<Mesher> {
        let (poke, poked) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("vswitch-mesh".into())
            .spawn(move || {
                // After a failure, a pause before the next try: each try may hold the
                // cluster session (and the requests behind it) for seconds.
                let mut not_before = Instant::now();
                while poked.recv().is_ok() {
                    if Instant::now() < not_before {
                        continue;
                    }
                    let (wanted, unwanted) = {
                        let c = lock(&ctl);
                        (c.mesh_wanted(), c.mesh_unwanted())
                    };
                    if !mesh(&cl, &ctl, wanted, unwanted) {
                        not_before = Instant::now() + MESH_RETRY;
                    }
                }
            })?;
        Ok(Mesher { poke })
    }

    /// Asks for a look at what is wanted; one already asked for and not started is
    /// enough.
    pub fn poke(&self) {
        if let Err(std::sync::mpsc::TrySendError::Disconnected(())) = self.poke.try_send(()) {
            tracing::error!("the mesh thread is gone: mesh addresses are no longer claimed");
        }
    }
}

/// Refuses an owner of an overlay address (a reservation's, an attached container's)
/// that would pass for a node's mesh address: `del-overlay` deletes those with the
/// overlay instead of refusing while they are held.
pub(crate) fn not_a_mesh_owner(what: &str, owner: &str) -> Result<(), VerbError> {
    if owner.starts_with(cluster::MESH_OWNER) {
        return Err(VerbError::Invalid(format!(
            "{what} {owner}: names starting with {} are the nodes' own mesh addresses",
            cluster::MESH_OWNER
        )));
    }
    Ok(())
}

/// How long the mesh thread waits after a claim or release failed.
const MESH_RETRY: Duration = Duration::from_secs(5);

/// Claims this node's mesh address in each overlay of `wanted` and releases those of
/// `unwanted`, asking the store without the controller's lock; what fails (the store is
/// away) is tried again on a later call. False if something failed.
fn mesh(
    cl: &cluster::Handle,
    ctl: &Mutex<Controller>,
    wanted: Vec<String>,
    unwanted: Vec<cluster::EndpointRecord>,
) -> bool {
    let mut ok = true;
    for overlay in wanted {
        tracing::debug!(overlay = %overlay, "claiming a mesh address");
        let claim = cluster::Claim {
            overlay: overlay.clone(),
            ip: None,
            mac: None,
            container: format!("{}{}", cluster::MESH_OWNER, cl.settings().node),
            names: Vec::new(),
        };
        match cl.claim(claim) {
            Ok(rec) => {
                if let Err(e) = lock(ctl).set_mesh(&rec, true) {
                    tracing::warn!(overlay = %overlay, "cannot keep the mesh address: {e}");
                    cl.release_later(rec);
                }
            }
            Err(e) => {
                tracing::warn!(overlay = %overlay, "cannot claim a mesh address: {e}");
                ok = false;
            }
        }
    }
    for rec in unwanted {
        match cl.release(&rec) {
            Ok(()) => {
                if let Err(e) = lock(ctl).set_mesh(&rec, false) {
                    tracing::warn!(overlay = %rec.overlay, "cannot forget the mesh address: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(overlay = %rec.overlay, "cannot release the mesh address: {e}");
                ok = false;
            }
        }
    }
    ok
}

/// The cluster thread's settings from the config's cluster section, this daemon's
/// WireGuard public key and how often it audits its watch: reads the TLS files (and
/// refuses a key others can read).
pub fn settings(
    c: &ClusterConf,
    public_key: &wg::PublicKey,
    audit: std::time::Duration,
) -> Result<cluster::Settings, crate::daemon::StartError> {
    c.validate()?;
    let tls = match (&c.ca, &c.cert, &c.key) {
        (Some(ca), Some(cert), Some(key)) => Some(cluster::load_tls(ca, cert, key)?),
        _ => None,
    };
    Ok(cluster::Settings {
        store: c.store.clone(),
        node: c.node.clone(),
        advertise: c.advertise,
        ttl: c.ttl,
        tls,
        public_key: Some(public_key.to_string()),
        audit,
    })
}
