//! The controller's side of cluster services and the routing mesh. A service of an
//! overlay lives in etcd; every node copies the records the watch brings into its
//! overlay bridge's services (so NAT, health checks, DNS and `list-services` treat it
//! as a local one) and the host ports published to it into its own published ports.
//! Each node also owns one address in every overlay with services, its mesh address
//! (claimed from the cluster's allocator and published as an endpoint under the node's
//! lease, its MAC pinned to the node's gateway): flows from the uplink to a service are
//! source-NAT'ed to it and the gateway's health checks leave from it, so that a
//! backend on another node answers this node and not its own copy of the anycast
//! gateway.

use std::net::SocketAddrV4;

use ctl::service::ServiceSpec;

use super::Controller;
use crate::config::PublishConf;

impl Controller {
    /// Makes the overlay bridges' services and the cluster's published ports follow
    /// `state`. A record this node cannot take (it clashes with a local port or
    /// publication) is skipped with a warning and tried again on the next call.
    pub(super) fn apply_services(&mut self, state: &cluster::State) {
        let Some(cc) = self.cfg.cluster.clone() else {
            return;
        };
        let mut next = self.cfg.clone();
        let mut installed: Vec<PublishConf> = Vec::new();
        for name in &cc.bridges {
            let Ok(net) = self.service_net(name) else {
                continue;
            };
            let Some(b) = self.cfg.bridge(name) else {
                continue;
            };
            let mut want: Vec<ServiceSpec> = Vec::new();
            let mut bare = b.clone();
            bare.services.clear();
            for r in state
                .services
                .get(name)
                .into_iter()
                .flat_map(|m| m.values())
            {
                let mut probe = bare.clone();
                probe.services = want.clone();
                if let Err(e) = super::services::check(&r.spec, &probe, net, None) {
                    tracing::warn!(overlay = %name, service = %r.spec.name, "cluster service not installed: {e}");
                    continue;
                }
                want.push(r.spec.clone());
                for p in &r.published {
                    match super::services::service_port(&r.spec, p.proto, p.host_port) {
                        Ok(port) => installed.push(PublishConf {
                            proto: p.proto,
                            host_port: p.host_port,
                            target: SocketAddrV4::new(r.spec.vip, port),
                        }),
                        Err(e) => {
                            tracing::warn!(service = %r.spec.name, "cluster publication not installed: {e}")
                        }
                    }
                }
            }
            if let Some(nb) = next.bridge_mut(name) {
                nb.services = want;
            }
        }
        // The cluster's publications replace those it made before; a port published
        // here by hand keeps its target.
        next.published.retain(|p| !cc.published.contains(p));
        installed.retain(|p| {
            let taken = next
                .published
                .iter()
                .any(|q| q.proto == p.proto && q.host_port == p.host_port);
            if taken {
                tracing::warn!(
                    proto = p.proto.as_str(),
                    port = p.host_port,
                    "cluster publication clashes with a local one; not installed"
                );
            }
            !taken
        });
        installed.dedup_by(|a, b| a.proto == b.proto && a.host_port == b.host_port);
        next.published.extend(installed.iter().cloned());
        if let Some(c) = next.cluster.as_mut() {
            c.published = installed;
        }
        if next == self.cfg {
            return;
        }
        match self.commit(next) {
            Ok(()) => {
                self.configure_gateway();
                self.publish();
                tracing::info!("cluster services applied");
            }
            Err(e) => tracing::warn!("cannot apply the cluster's services: {e}"),
        }
    }

    /// The overlays carried here that have services in the cluster and no mesh address
    /// of this node yet.
    pub fn mesh_wanted(&self) -> Vec<String> {
        let Some(cc) = self.cfg.cluster.as_ref() else {
            return Vec::new();
        };
        cc.bridges
            .iter()
            .filter(|b| cc.state.services.get(*b).is_some_and(|m| !m.is_empty()))
            .filter(|b| !cc.mesh.iter().any(|r| &r.overlay == *b))
            .cloned()
            .collect()
    }

    /// This node's mesh addresses in overlays that no longer have services (or are
    /// gone): to be released.
    pub fn mesh_unwanted(&self) -> Vec<cluster::EndpointRecord> {
        let Some(cc) = self.cfg.cluster.as_ref() else {
            return Vec::new();
        };
        cc.mesh
            .iter()
            .filter(|r| {
                cc.state
                    .services
                    .get(&r.overlay)
                    .is_none_or(|m| m.is_empty())
            })
            .cloned()
            .collect()
    }

    /// Keeps `rec` (just claimed) as this node's mesh address in its overlay, or
    /// forgets the one of `rec`'s overlay (`keep` false, released already).
    pub fn set_mesh(
        &mut self,
        rec: &cluster::EndpointRecord,
        keep: bool,
    ) -> Result<(), super::ControlError> {
        let mut next = self.cfg.clone();
        let Some(cc) = next.cluster.as_mut() else {
            return Err(super::ControlError::NotInCluster);
        };
        cc.mesh.retain(|r| r.overlay != rec.overlay);
        if keep {
            cc.mesh.push(rec.clone());
        }
        self.commit(next)?;
        self.configure_gateway();
        self.publish();
        self.reconcile_cluster();
        tracing::info!(overlay = %rec.overlay, ip = %rec.ip, "mesh address {}", if keep { "claimed" } else { "released" });
        Ok(())
    }

    /// Forgets this node's mesh addresses that the store now holds for another endpoint
    /// (`cluster::Handle::conflicts`: this node was away past its lease and the address
    /// was handed out again), so that the mesh thread claims new ones. Kept, the node
    /// would translate to an address whose replies go to the other endpoint's node.
    pub fn forget_lost_mesh(&mut self, conflicts: &[cluster::EndpointRecord]) {
        let lost: Vec<cluster::EndpointRecord> = self
            .cfg
            .cluster
            .as_ref()
            .map(|cc| {
                cc.mesh
                    .iter()
                    .filter(|m| conflicts.contains(m))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for r in lost {
            tracing::warn!(overlay = %r.overlay, ip = %r.ip, "mesh address taken by another endpoint; claiming a new one");
            if let Err(e) = self.set_mesh(&r, false) {
                tracing::warn!(overlay = %r.overlay, "cannot forget the lost mesh address: {e}");
            }
        }
    }

    /// Whether `bridge` is an overlay bridge (its services live in the cluster).
    pub fn is_cluster_bridge(&self, bridge: &str) -> bool {
        self.cfg.cluster.is_some() && self.cfg.is_overlay_bridge(bridge)
    }

    /// Whether `proto` `host_port` was published by a cluster service's record.
    pub fn is_cluster_published(&self, proto: ctl::L4Proto, host_port: u16) -> bool {
        self.cfg.cluster.as_ref().is_some_and(|c| {
            c.published
                .iter()
                .any(|p| p.proto == proto && p.host_port == host_port)
        })
    }

    /// Whether `proto` `host_port` is published here (by hand or by the cluster).
    pub fn is_published(&self, proto: ctl::L4Proto, host_port: u16) -> bool {
        self.cfg
            .published
            .iter()
            .any(|p| p.proto == proto && p.host_port == host_port)
    }

    /// Checks `spec` for overlay `bridge` against its network and the other services
    /// (`except`: the service's own name when it is being replaced).
    pub fn check_cluster_service(
        &self,
        bridge: &str,
        spec: &ServiceSpec,
        except: Option<&str>,
    ) -> Result<(), super::ControlError> {
        let net = self.service_net(bridge)?;
        let b = self.bridge_conf(bridge)?;
        super::services::check(spec, b, net, except)
    }

    /// Whether the service `name` of `bridge` is installed here as `spec` (or gone,
    /// for none).
    pub fn has_service(&self, bridge: &str, name: &str, spec: Option<&ServiceSpec>) -> bool {
        let found = self
            .cfg
            .bridge(bridge)
            .and_then(|b| b.services.iter().find(|s| s.name == name));
        found == spec
    }
}
