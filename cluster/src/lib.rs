#![cfg_attr(test, allow(clippy::unwrap_used))]
//! The cluster: vswitchd's etcd client. It knows nothing of frames. It registers the node
//! under a lease it keeps alive, watches everything under [`keys::PREFIX`] from the last
//! revision it saw (listing again after a compaction or a reconnection), and hands the
//! controller the resulting desired state ([`State`]) through [`Handle::take_update`];
//! cluster changes (`add-overlay`, `del-overlay`, an address claimed for an `attach`)
//! are etcd transactions (compare-and-create), never a read followed by a blind write.
//!
//! The endpoints this node owns (its containers on overlays) live under its lease: the
//! controller says which they are ([`Handle::set_owned`]) and the session puts them
//! back under every new lease, so they come back by themselves after the node lost its
//! lease; the ones it drops are released (deleted if still ours) until that succeeds.
//!
//! Its async runtime runs on a thread of its own; the daemon talks to it through
//! channels, with a deadline on every request, so neither the dataplane nor the control
//! thread ever waits on etcd longer than that.

mod error;
mod ipam;
pub mod keys;
mod service_claims;
mod services;
mod session;
pub mod state;
mod tracker;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use error::{RecordError, SessionError, SetupError};
pub use services::{PublishRecord, ServiceChange, ServiceRecord};
pub use state::{EndpointRecord, NodeRecord, OverlayRecord, State};

/// Default lease TTL, seconds.
pub const DEFAULT_TTL: u64 = 10;

/// Seconds between a node's audits of its watched state against a fresh list of the
/// store (see [`Settings::audit`]).
pub const DEFAULT_AUDIT_SECS: u64 = 300;
/// Shortest lease TTL accepted (etcd's own minimum is about 2 s).
pub const MIN_TTL: u64 = 2;
/// Longest lease TTL accepted.
pub const MAX_TTL: u64 = 3600;
/// How long a cluster request may take before it is answered "unreachable" (never
/// sent) or "did not answer" (sent, and etcd may still apply it).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(4);
/// How the owner of a node's mesh address starts (`mesh:<node>`): an address the node
/// holds for the overlay's services, not a container's, so it does not keep the overlay
/// from being deleted.
pub const MESH_OWNER: &str = "mesh:";

/// How to reach the store and who this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `etcd://HOST:PORT[,HOST:PORT…]` or `etcds://…`.
    pub store: String,
    /// This node's name in the cluster.
    pub node: String,
    /// This node's VTEP (underlay) address.
    pub advertise: Ipv4Addr,
    /// Lease TTL, seconds.
    pub ttl: u64,
    /// PEM contents for `etcds://`.
    pub tls: Option<Tls>,
    /// This node's WireGuard public key, published in its node record for the other
    /// nodes' encrypted overlay tunnels.
    pub public_key: Option<String>,
    /// How often the node lists the store and compares it with what its watch built.
    /// etcd before 3.4.31 and 3.5.13 can drop a slow watcher's events across a
    /// compaction without cancelling the watch (etcd-io/etcd#17529; Debian 12 ships
    /// 3.4.23): the node would then never learn of them. A difference is adopted, and the
    /// watch started again from the list's revision.
    pub audit: std::time::Duration,
}

/// The PEM files of a TLS client, read.
#[derive(Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

/// The endpoints of a store URL, as gRPC URIs, and whether it is TLS.
pub fn endpoints(store: &str) -> Result<(Vec<String>, bool), SetupError> {
    let (rest, tls) = if let Some(r) = store.strip_prefix("etcd://") {
        (r, false)
    } else if let Some(r) = store.strip_prefix("etcds://") {
        (r, true)
    } else {
        return Err(SetupError::StoreUrl(store.to_string()));
    };
    let scheme = if tls { "https" } else { "http" };
    let mut out = Vec::new();
    for hp in rest.trim_end_matches('/').split(',') {
        let Some((host, port)) = hp.rsplit_once(':') else {
            return Err(SetupError::StoreEndpoint(hp.to_string()));
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
        if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(SetupError::StoreEndpoint(hp.to_string()));
        }
        out.push(format!("{scheme}://{host}:{port}"));
    }
    Ok((out, tls))
}

/// Reads the CA, certificate and key of a TLS client. A key readable or writable by
/// others than its owner and group is refused.
pub fn load_tls(ca: &Path, cert: &Path, key: &Path) -> Result<Tls, SetupError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |what: &'static str, p: &Path, e: std::io::Error| SetupError::Unreadable {
        what,
        path: p.to_path_buf(),
        why: e.to_string(),
    };
    let meta = std::fs::metadata(key).map_err(|e| unreadable("key", key, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(SetupError::KeyOpen {
            path: key.to_path_buf(),
            mode,
        });
    }
    let read = |what: &'static str, p: &Path| -> Result<Vec<u8>, SetupError> {
        let b = std::fs::read(p).map_err(|e| unreadable(what, p, e))?;
        if !b.windows(10).any(|w| w == b"-----BEGIN") {
            return Err(SetupError::NotPem {
                what,
                path: p.to_path_buf(),
            });
        }
        Ok(b)
    };
    Ok(Tls {
        ca: read("CA", ca)?,
        cert: read("certificate", cert)?,
        key: read("key", key)?,
    })
}

/// A request the cluster refused or could not carry out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The connection to etcd is down, or the request waited its whole time to be sent.
    #[error("cluster store unreachable")]
    Unreachable,
    /// The request went to etcd and no answer came in time: etcd may still apply it (a
    /// write waiting on a stalled disk commits when the disk comes back).
    #[error("the cluster store did not answer in time; the change may still be made when it does (look before asking again)")]
    NoAnswer,
    /// The cluster said no; the message says why.
    #[error("{0}")]
    Refused(String),
}

/// What `add-overlay` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlaySpec {
    pub name: String,
    pub subnet: String,
    pub gateway: Option<Ipv4Addr>,
    pub vni: Option<u32>,
    /// VXLAN inside WireGuard between the nodes; the cluster picks the listen port.
    pub encrypted: bool,
}

/// A node that left (its key went away), and when this node saw it go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departed {
    pub record: NodeRecord,
    pub left: u64,
}

/// What this node knows of the cluster now.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Connected to the store, registered and watching.
    pub connected: bool,
    /// The last connection error while not connected.
    pub error: Option<String>,
    /// The last state seen (shared with whoever took it: it never changes in place).
    pub state: Arc<State>,
    /// Nodes seen leaving since this daemon started.
    pub departed: BTreeMap<String, Departed>,
    /// When the state was last confirmed by the store (seconds since the epoch).
    pub seen: u64,
}

pub(crate) enum Cmd {
    AddOverlay {
        spec: OverlaySpec,
        deadline: Instant,
        reply: std::sync::mpsc::Sender<Result<OverlayRecord, ClusterError>>,
    },
    DelOverlay {
        name: String,
        deadline: Instant,
        reply: std::sync::mpsc::Sender<Result<OverlayRecord, ClusterError>>,
    },
    Claim {
        claim: Claim,
        deadline: Instant,
        reply: std::sync::mpsc::Sender<Result<EndpointRecord, ClusterError>>,
    },
    Release {
        record: EndpointRecord,
        deadline: Instant,
        reply: std::sync::mpsc::Sender<Result<(), ClusterError>>,
    },
    /// A service created, changed or deleted.
    Service {
        change: ServiceChange,
        deadline: Instant,
        reply: std::sync::mpsc::Sender<Result<(), ClusterError>>,
    },
    /// The owned or released endpoints changed.
    Sync,
}

/// What `attach` asks of the cluster's allocator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub overlay: String,
    /// This address (`--ip`), or the lowest free one.
    pub ip: Option<Ipv4Addr>,
    /// This MAC, or [`state::mac_for`] the address.
    pub mac: Option<String>,
    pub container: String,
    /// Its DNS names (`--name`, `--alias`), published with the endpoint.
    pub names: Vec<String>,
}

/// What the session and the handle share.
#[derive(Default)]
pub(crate) struct Shared {
    pub status: Mutex<Status>,
    /// The newest state the controller has not taken yet.
    pub pending: Mutex<Option<Arc<State>>>,
    /// This node's endpoints, by `ipam/` key, as the controller last said.
    pub owned: Mutex<BTreeMap<String, EndpointRecord>>,
    /// Endpoints to release (deleted if they still hold these values), by `ipam/` key.
    pub releasing: Mutex<BTreeMap<String, EndpointRecord>>,
    /// Endpoints released on request (`detach`) that the controller may still list for
    /// a moment, by `ipam/` key.
    pub released: Mutex<BTreeMap<String, EndpointRecord>>,
    /// Owned endpoints the store would not take: another endpoint holds the address or
    /// the MAC (this node was away past its lease, and the address was handed out
    /// again), or a service holds it as its VIP. Tried again at every pass.
    pub conflicts: Mutex<BTreeMap<String, EndpointRecord>>,
}

impl Shared {
    pub(crate) fn conflicts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, EndpointRecord>> {
        self.conflicts.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn owned(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, EndpointRecord>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn releasing(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, EndpointRecord>> {
        self.releasing.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn released(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, EndpointRecord>> {
        self.released.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn publish(&self, s: Arc<State>) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }
}

/// The daemon's side of the cluster thread.
pub struct Handle {
    cmds: tokio::sync::mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
    settings: Arc<Settings>,
}

/// How [`start`] joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMode {
    /// Wait for the first registration; on failure stop and return why (a first join:
    /// nothing half-joins).
    Now(Duration),
    /// Return at once and keep trying (a restart with a cached state: forward first).
    Background,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Starts the cluster thread for `settings`, with `cached` as the state known so far.
pub fn start(settings: Settings, cached: Arc<State>, mode: JoinMode) -> Result<Handle, SetupError> {
    let (eps, tls) = endpoints(&settings.store)?;
    if tls != settings.tls.is_some() {
        return Err(if tls {
            SetupError::TlsFilesMissing
        } else {
            SetupError::TlsWithoutEtcds
        });
    }
    let settings = Arc::new(settings);
    let shared = Arc::new(Shared::default());
    shared.status().state = cached;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SetupError::Thread {
            what: "runtime",
            why: e.to_string(),
        })?;
    let run = session::Runner {
        settings: settings.clone(),
        endpoints: eps,
        shared: shared.clone(),
        cmds: rx,
        first: match mode {
            JoinMode::Now(d) => Some((first_tx, d)),
            JoinMode::Background => None,
        },
        next: 0,
    };
    std::thread::Builder::new()
        .name("vswitch-cluster".into())
        .spawn(move || rt.block_on(run.run()))
        .map_err(|e| SetupError::Thread {
            what: "thread",
            why: e.to_string(),
        })?;
    if let JoinMode::Now(d) = mode {
        let join = |why: String| SetupError::Join {
            store: settings.store.clone(),
            why,
        };
        match first_rx.recv_timeout(d + Duration::from_secs(1)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(join(e)),
            Err(_) => return Err(join(ClusterError::Unreachable.to_string())),
        }
    }
    Ok(Handle {
        cmds: tx,
        shared,
        settings,
    })
}

impl Handle {
    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What this node knows of the cluster now.
    pub fn status(&self) -> Status {
        self.shared.status().clone()
    }

    /// The newest desired state, if it changed since the last call.
    pub fn take_update(&self) -> Option<Arc<State>> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn ask<T>(
        &self,
        make: impl FnOnce(Instant, std::sync::mpsc::Sender<Result<T, ClusterError>>) -> Cmd,
    ) -> Result<T, ClusterError> {
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let (tx, rx) = std::sync::mpsc::channel();
        self.cmds
            .send(make(deadline, tx))
            .map_err(|_| ClusterError::Unreachable)?;
        rx.recv_timeout(REQUEST_DEADLINE + Duration::from_millis(500))
            .unwrap_or(Err(ClusterError::Unreachable))
    }

    /// Creates an overlay in the store (a transaction); returns it as stored.
    pub fn add_overlay(&self, spec: OverlaySpec) -> Result<OverlayRecord, ClusterError> {
        self.ask(|deadline, reply| Cmd::AddOverlay {
            spec,
            deadline,
            reply,
        })
    }

    /// Deletes an overlay from the store; returns what it was.
    pub fn del_overlay(&self, name: &str) -> Result<OverlayRecord, ClusterError> {
        let name = name.to_string();
        self.ask(|deadline, reply| Cmd::DelOverlay {
            name,
            deadline,
            reply,
        })
    }

    /// Creates, changes or deletes a service of an overlay (a compare-and-swap on the
    /// record the caller saw).
    pub fn change_service(&self, change: ServiceChange) -> Result<(), ClusterError> {
        self.ask(|deadline, reply| Cmd::Service {
            change,
            deadline,
            reply,
        })
    }

    /// Claims an address (and the endpoint's MAC) in an overlay under this node's
    /// lease, in one transaction that creates both keys or neither.
    pub fn claim(&self, claim: Claim) -> Result<EndpointRecord, ClusterError> {
        let rec = self.ask(|deadline, reply| Cmd::Claim {
            claim,
            deadline,
            reply,
        })?;
        self.shared.released().remove(&rec.ipam_key());
        Ok(rec)
    }

    /// Releases an endpoint and its address now (if they are still this record's).
    pub fn release(&self, record: &EndpointRecord) -> Result<(), ClusterError> {
        let key = record.ipam_key();
        let kept = record.clone();
        let record = record.clone();
        self.ask(|deadline, reply| Cmd::Release {
            record,
            deadline,
            reply,
        })?;
        self.shared.released().insert(key, kept);
        Ok(())
    }

    /// Takes back a [`Self::release`] whose local half failed (the config could not be
    /// saved, so the container is still plugged in with the address): the record is no
    /// longer held back, and the next pass publishes it again under the node's lease,
    /// unless another node took the address meanwhile, which the publisher logs.
    pub fn unrelease(&self, record: &EndpointRecord) {
        self.shared.released().remove(&record.ipam_key());
        let _ = self.cmds.send(Cmd::Sync);
    }

    /// Owned endpoints whose address or MAC the store holds for another now (see
    /// `Shared::conflicts`).
    pub fn conflicts(&self) -> Vec<EndpointRecord> {
        self.shared.conflicts().values().cloned().collect()
    }

    /// Releases an endpoint as soon as the store can take it (now, or in the next
    /// session): for a claim whose container could not be plugged in.
    pub fn release_later(&self, record: EndpointRecord) {
        self.shared.releasing().insert(record.ipam_key(), record);
        let _ = self.cmds.send(Cmd::Sync);
    }

    /// Says which endpoints this node owns now. Those it owned before and not now are
    /// released (retried until the store has taken it); new ones are published under
    /// the node's lease, and every one is put back under a new lease after a
    /// re-registration.
    pub fn set_owned(&self, now: Vec<EndpointRecord>) {
        let next: BTreeMap<String, EndpointRecord> = {
            // A record released by `release` stays released while the controller,
            // which unplugs the container just after, still lists it: a list made
            // between the two must not publish it again.
            let mut released = self.shared.released();
            // The same endpoint, even if its names changed in between.
            released.retain(|k, e| now.iter().any(|n| n.ipam_key() == *k && n.same_endpoint(e)));
            now.into_iter()
                .filter(|e| {
                    !released
                        .get(&e.ipam_key())
                        .is_some_and(|r| r.same_endpoint(e))
                })
                .map(|e| (e.ipam_key(), e))
                .collect()
        };
        let mut owned = self.shared.owned();
        if *owned == next {
            return;
        }
        {
            let mut rel = self.shared.releasing();
            for (k, e) in owned.iter() {
                if next.get(k) != Some(e) {
                    rel.insert(k.clone(), e.clone());
                }
            }
            for k in next.keys() {
                rel.remove(k);
            }
        }
        *owned = next;
        drop(owned);
        let _ = self.cmds.send(Cmd::Sync);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            endpoints("etcd://127.0.0.1:2379,10.0.0.2:2379").unwrap(),
            (
                vec![
                    "http://127.0.0.1:2379".to_string(),
                    "http://10.0.0.2:2379".to_string()
                ],
                false
            )
        );
        assert_eq!(
            endpoints("etcds://etcd.example:2379").unwrap(),
            (vec!["https://etcd.example:2379".to_string()], true)
        );
        for bad in [
            "http://x:1",
            "etcd://",
            "etcd://x",
            "etcd://x:0",
            "etcd://x:99999",
            "etcd://x y:1",
            "etcd://a:1,",
        ] {
            assert!(endpoints(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn world_readable_keys_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("cluster-tls-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let pem = b"-----BEGIN X-----\n-----END X-----\n";
        for f in ["ca", "cert", "key"] {
            std::fs::write(d.join(f), pem).unwrap();
        }
        std::fs::set_permissions(d.join("key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_tls(&d.join("ca"), &d.join("cert"), &d.join("key")).unwrap_err();
        assert!(
            e.to_string().contains("accessible to others (mode 0644)"),
            "{e}"
        );
        std::fs::set_permissions(d.join("key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_tls(&d.join("ca"), &d.join("cert"), &d.join("key")).is_ok());
        std::fs::write(d.join("ca"), "nope").unwrap();
        let e = load_tls(&d.join("ca"), &d.join("cert"), &d.join("key")).unwrap_err();
        assert!(e.to_string().contains("is not PEM"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
