//! Services of cluster overlays (`add-service` on an overlay, `set-backends`,
//! `del-service`, `publish … service:NAME`): one record per service under
//! `services/<overlay>/<name>`, written with a compare-and-swap on the value the
//! requesting node saw (created only if absent, changed or deleted only if unchanged
//! since), and only while the overlay exists, together with the claims that keep two
//! services from sharing a name, a VIP or a published port. Every node installs what
//! the watch brings.

use std::collections::BTreeMap;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use crate::service_claims as claims;
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

/// Transactions that lose to a concurrent change of the same claims are tried again
/// this many times (a loss to a live holder is refused at once).
const ATTEMPTS: usize = 8;

/// A claim found held by a service that does not hold it (its record gone or changed,
/// say deleted by a node from before claims): taken over if neither changed since.
struct Stale {
    rev: i64,
    holder_key: String,
    /// The holder's record's revision, if there is one.
    holder_rev: Option<i64>,
}

/// Whether stored bytes `v` are record `r`.
fn same(v: &[u8], r: &ServiceRecord) -> bool {
    serde_json::from_slice::<ServiceRecord>(v).is_ok_and(|s| s == *r)
}

fn changed(c: &ServiceChange) -> ClusterError {
    ClusterError::Refused(format!(
        "service {} of overlay {} changed meanwhile; try again",
        c.name, c.overlay
    ))
}

/// Carries out `c` in one transaction: the record, compared with what the node saw,
/// and the claims of its name, VIP and published ports (see [`crate::service_claims`]).
pub(crate) async fn change(
    client: &mut Client,
    c: &ServiceChange,
    in_flight: &mut bool,
) -> Result<(), ClusterError> {
    let r = commit(client, c, in_flight).await;
    if let Err(ClusterError::Refused(why)) = &r {
        // Logged so that a refusal by the store tells itself apart from one by the
        // node's own checks before it (same words).
        tracing::info!(overlay = %c.overlay, service = %c.name, "service change refused by the store: {why}");
    }
    r
}

async fn commit(
    client: &mut Client,
    c: &ServiceChange,
    in_flight: &mut bool,
) -> Result<(), ClusterError> {
    let key = keys::service(&c.overlay, &c.name);
    let me = claims::holder(&c.overlay, &c.name);
    let plan = claims::plan(c.prev.as_ref(), c.next.as_ref());
    let mut stale: BTreeMap<String, Stale> = BTreeMap::new();
    for _ in 0..ATTEMPTS {
        let mut when = vec![Compare::create_revision(
            keys::overlay(&c.overlay),
            CompareOp::Greater,
            0,
        )];
        // The record as the node saw it, compared by its revision, not its bytes: a
        // record written by another version (or by hand) serialises differently.
        when.push(match &c.prev {
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            Some(p) => {
                let resp = client
                    .get(key.clone(), None)
                    .await
                    .map_err(crate::session::failed)?;
                match resp.kvs().first() {
                    Some(kv) if same(kv.value(), p) => {
                        Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision())
                    }
                    _ => return Err(changed(c)),
                }
            }
        });
        for cl in &plan.take {
            let k = cl.key();
            match stale.get(&k) {
                None => when.push(Compare::create_revision(k, CompareOp::Equal, 0)),
                Some(s) => {
                    when.push(Compare::mod_revision(k, CompareOp::Equal, s.rev));
                    when.push(match s.holder_rev {
                        None => Compare::create_revision(s.holder_key.clone(), CompareOp::Equal, 0),
                        Some(r) => Compare::mod_revision(s.holder_key.clone(), CompareOp::Equal, r),
                    });
                }
            }
        }
        // A VIP is no container's address: the allocator's claim of it must be absent.
        let vip_addrs: Vec<String> = plan
            .take
            .iter()
            .filter_map(|cl| match cl {
                claims::Claim::Vip { overlay, ip } => Some(keys::ipam(overlay, *ip)),
                _ => None,
            })
            .collect();
        when.extend(
            vip_addrs
                .iter()
                .map(|k| Compare::create_revision(k.clone(), CompareOp::Equal, 0)),
        );
        let mut ops = vec![match &c.next {
            Some(n) => TxnOp::put(key.clone(), n.value(), None),
            None => TxnOp::delete(key.clone(), None),
        }];
        ops.extend(
            plan.take
                .iter()
                .map(|cl| TxnOp::put(cl.key(), me.clone(), None)),
        );
        // A record from before claims: its claims are made where free.
        ops.extend(plan.keep.iter().map(|cl| {
            TxnOp::txn(
                Txn::new()
                    .when(vec![Compare::create_revision(
                        cl.key(),
                        CompareOp::Equal,
                        0,
                    )])
                    .and_then(vec![TxnOp::put(cl.key(), me.clone(), None)]),
            )
        }));
        ops.extend(plan.give_up.iter().map(|cl| {
            TxnOp::txn(
                Txn::new()
                    .when(vec![Compare::value(cl.key(), CompareOp::Equal, me.clone())])
                    .and_then(vec![TxnOp::delete(cl.key(), None)]),
            )
        }));
        let mut or = vec![
            TxnOp::get(keys::overlay(&c.overlay), None),
            TxnOp::get(key.clone(), None),
        ];
        or.extend(plan.take.iter().map(|cl| TxnOp::get(cl.key(), None)));
        or.extend(vip_addrs.iter().map(|k| TxnOp::get(k.clone(), None)));
        let txn = Txn::new().when(when).and_then(ops).or_else(or);
        let resp = crate::session::write(client, txn, in_flight).await?;
        if resp.succeeded() {
            tracing::info!(overlay = %c.overlay, service = %c.name, deleted = c.next.is_none(), "service stored");
            return Ok(());
        }
        let found: Vec<Option<(Vec<u8>, i64)>> = resp
            .op_responses()
            .into_iter()
            .map(|op| match op {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
                _ => None,
            })
            .collect();
        if found.first().is_none_or(Option::is_none) {
            return Err(ClusterError::Refused(format!(
                "no overlay named {}",
                c.overlay
            )));
        }
        let addrs = found.iter().skip(2 + plan.take.len()).flatten();
        if let Some(e) = addrs
            .filter_map(|(v, _)| serde_json::from_slice::<crate::EndpointRecord>(v).ok())
            .next()
        {
            return Err(ClusterError::Refused(format!(
                "VIP {} is the address of {} on node {}",
                e.ip, e.container, e.node
            )));
        }
        // A claim another service really holds names the clash; one held by nobody is
        // taken over on the next attempt.
        for (cl, held) in plan.take.iter().zip(found.iter().skip(2)) {
            let Some((v, rev)) = held else { continue };
            let holder = String::from_utf8_lossy(v).into_owned();
            let holder_key = match holder.split_once('/') {
                Some((o, n)) => keys::service(o, n),
                None => keys::service("", &holder),
            };
            let resp = client
                .get(holder_key.clone(), None)
                .await
                .map_err(crate::session::failed)?;
            let held_by = resp.kvs().first();
            let holds = held_by
                .and_then(|kv| serde_json::from_slice::<ServiceRecord>(kv.value()).ok())
                .is_some_and(|r| claims::claims(&r).contains(cl));
            if holds {
                return Err(ClusterError::Refused(cl.taken(&holder)));
            }
            tracing::warn!(claim = %cl.key(), %holder, "claim held by no service; taking it over");
            stale.insert(
                cl.key(),
                Stale {
                    rev: *rev,
                    holder_key,
                    holder_rev: held_by.map(|kv| kv.mod_revision()),
                },
            );
        }
        let now = found.get(1).cloned().flatten().map(|(v, _)| v);
        match &c.prev {
            None if now.is_some() => {
                return Err(ClusterError::Refused(format!(
                    "overlay {} already has a service {}",
                    c.overlay, c.name
                )))
            }
            Some(p) if !now.as_deref().is_some_and(|v| same(v, p)) => return Err(changed(c)),
            _ => {}
        }
    }
    Err(ClusterError::Refused(format!(
        "the claims of service {} kept changing; try again",
        c.name
    )))
}
