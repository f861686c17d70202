//! Services of cluster overlays (`add-service` on an overlay, `set-backends`,
//! `del-service`, `publish … service:NAME`): one record per service under
//! `services/<overlay>/<name>`, written with a compare-and-swap on the value the
//! requesting node saw (created only if absent, changed or deleted only if unchanged
//! since), and only while the overlay exists. Every node installs what the watch brings.

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::{keys, ClusterError};

/// A port of every node's uplink published to a cluster service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRecord {
    pub proto: ctl::L4Proto,
    pub host_port: u16,
}

/// A service of an overlay, as stored under `services/<overlay>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    pub overlay: String,
    pub spec: ctl::service::ServiceSpec,
    /// The host ports every node publishes to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PublishRecord>,
}

impl ServiceRecord {
    /// Its key.
    pub fn key(&self) -> String {
        keys::service(&self.overlay, &self.spec.name)
    }
    /// The value stored.
    pub fn value(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A change of one service: `prev` is the record the node saw (none: the name must be
/// free), `next` what it becomes (none: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChange {
    pub overlay: String,
    pub name: String,
    pub prev: Option<ServiceRecord>,
    pub next: Option<ServiceRecord>,
}

/// Carries out `c` in one transaction.
pub(crate) async fn change(client: &mut Client, c: &ServiceChange) -> Result<(), ClusterError> {
    let key = keys::service(&c.overlay, &c.name);
    let mut when = vec![Compare::create_revision(
        keys::overlay(&c.overlay),
        CompareOp::Greater,
        0,
    )];
    when.push(match &c.prev {
        None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        Some(p) => Compare::value(key.clone(), CompareOp::Equal, p.value()),
    });
    let op = match &c.next {
        Some(n) => TxnOp::put(key.clone(), n.value(), None),
        None => TxnOp::delete(key.clone(), None),
    };
    let txn = Txn::new().when(when).and_then(vec![op]);
    let resp = client.txn(txn).await.map_err(crate::session::failed)?;
    if resp.succeeded() {
        tracing::info!(overlay = %c.overlay, service = %c.name, deleted = c.next.is_none(), "service stored");
        return Ok(());
    }
    Err(ClusterError::Refused(match &c.prev {
        None => format!(
            "overlay {} already has a service {} (or the overlay is gone)",
            c.overlay, c.name
        ),
        Some(_) => format!(
            "service {} of overlay {} changed meanwhile; try again",
            c.name, c.overlay
        ),
    }))
}
