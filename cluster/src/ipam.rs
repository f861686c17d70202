//! The cluster's address allocator and endpoint records: an address of an overlay is
//! claimed by creating `ipam/<overlay>/<ip>` and `endpoints/<overlay>/<mac>` together,
//! under the claiming node's lease, in one transaction that succeeds only if neither
//! key exists and the overlay is unchanged. Two nodes that pick the same address race
//! in etcd, and exactly one transaction wins; the loser looks again. A dead node's
//! claims go with its lease.

use std::net::Ipv4Addr;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};

use crate::services::ServiceRecord;
use crate::session::{failed, Ctx};
use crate::state::{host_addresses, is_host_address, mac_for, parse_subnet};
use crate::{keys, Claim, ClusterError, EndpointRecord, OverlayRecord};

/// Claims that lose a race are retried this many times (each loss means another claim
/// won, or an address was passed over for its MAC, so this bounds how many of those one
/// claim can meet).
const CLAIM_ATTEMPTS: usize = 64;

fn refused<T>(why: String) -> Result<T, ClusterError> {
    Err(ClusterError::Refused(why))
}

/// What an address claim looks at, read at one revision: the overlay and its key's
/// revision, the records of its claimed addresses, and its service VIPs (address, the
/// `<overlay>/<name>` of the service holding it: its claim, or its record), which no
/// container may take. `unreadable`: addresses whose claim key exists but whose record
/// this node cannot read (damaged, or written by another version): still taken, since
/// the claim transaction would find the key and fail on every attempt.
struct Taken {
    overlay: OverlayRecord,
    rev: i64,
    claims: Vec<EndpointRecord>,
    vips: Vec<(Ipv4Addr, String)>,
    unreadable: Vec<Ipv4Addr>,
}

async fn read(client: &mut Client, overlay: &str) -> Result<Option<Taken>, ClusterError> {
    let vips_of = keys::vip_claims_of(overlay);
    let ipam_of = keys::ipam_of(overlay);
    let ip_in_key = |key: Result<&str, _>, prefix: &str| {
        key.ok()
            .and_then(|k| k.strip_prefix(prefix))
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    };
    let txn = Txn::new().and_then(vec![
        TxnOp::get(keys::overlay(overlay), None),
        TxnOp::get(ipam_of.clone(), Some(GetOptions::new().with_prefix())),
        TxnOp::get(vips_of.clone(), Some(GetOptions::new().with_prefix())),
        TxnOp::get(
            keys::services_of(overlay),
            Some(GetOptions::new().with_prefix()),
        ),
    ]);
    let resp = client
        .kv_client()
        .max_decoding_message_size(crate::session::MAX_READ)
        .txn(txn)
        .await
        .map_err(failed)?;
    let mut rec = None;
    let mut claims = Vec::new();
    let mut vips = Vec::new();
    let mut legacy = Vec::new();
    let mut unreadable = Vec::new();
    for (i, op) in resp.op_responses().into_iter().enumerate() {
        let TxnOpResponse::Get(g) = op else { continue };
        for kv in g.kvs() {
            match i {
                0 => {
                    rec = serde_json::from_slice::<OverlayRecord>(kv.value())
                        .ok()
                        .map(|o| (o, kv.mod_revision()))
                }
                1 => match serde_json::from_slice::<EndpointRecord>(kv.value()) {
                    Ok(e) => claims.push(e),
                    Err(e) => match ip_in_key(kv.key_str(), &ipam_of) {
                        Some(ip) => {
                            tracing::warn!(%ip, "address claim unreadable, its address kept: {e}");
                            unreadable.push(ip);
                        }
                        None => tracing::warn!("bad address claim key skipped: {e}"),
                    },
                },
                2 => {
                    if let Some(ip) = ip_in_key(kv.key_str(), &vips_of) {
                        vips.push((ip, String::from_utf8_lossy(kv.value()).into_owned()));
                    }
                }
                // A record stored before VIP claims has none until it is next changed;
                // its VIP is taken all the same.
                _ => match serde_json::from_slice::<ServiceRecord>(kv.value()) {
                    Ok(r) => legacy.push((r.spec.vip, format!("{overlay}/{}", r.spec.name))),
                    Err(e) => tracing::warn!("bad service record skipped: {e}"),
                },
            }
        }
    }
    for (ip, holder) in legacy {
        if !vips.iter().any(|(v, _)| *v == ip) {
            vips.push((ip, holder));
        }
    }
    Ok(rec.map(|(overlay, rev)| Taken {
        overlay,
        rev,
        claims,
        vips,
        unreadable,
    }))
}

/// Claims an address for `c` (its own, or the lowest free one) under `ctx.lease`.
/// `sent` is the record of the claim transaction sent and not yet answered: if the
/// store does not answer, that one may still commit. None when nothing is in flight.
pub(crate) async fn claim(
    client: &mut Client,
    ctx: &Ctx,
    c: &Claim,
    sent: &mut Option<EndpointRecord>,
) -> Result<EndpointRecord, ClusterError> {
    // Addresses whose MAC (derived from the address) turned out to be another
    // endpoint's: the next look passes them over.
    let mut mac_taken = std::collections::HashSet::new();
    // Addresses whose MAC was found taken once with the address itself ("claimed
    // meanwhile"): found so again, the endpoint key is one without its address claim
    // (left by an older release cut in two), and waiting for the claim to show would
    // never end.
    let mut meanwhile = std::collections::HashSet::new();
    for _ in 0..CLAIM_ATTEMPTS {
        let Some(Taken {
            overlay: o,
            rev: orev,
            claims,
            vips,
            unreadable,
        }) = read(client, &c.overlay).await?
        else {
            return refused(format!("no overlay named {}", c.overlay));
        };
        let Some(net) = parse_subnet(&o.subnet) else {
            return refused(format!("overlay {} has a bad subnet {}", o.name, o.subnet));
        };
        let ip = match c.ip {
            Some(ip) => {
                if !is_host_address(net, o.gateway, ip) {
                    return refused(format!(
                        "{ip} is not an address overlay {} hands out ({}, gateway {})",
                        o.name, o.subnet, o.gateway
                    ));
                }
                if let Some(e) = claims.iter().find(|e| e.ip == ip) {
                    return refused(format!(
                        "address {ip} of overlay {} is taken (by {} on node {})",
                        o.name, e.container, e.node
                    ));
                }
                if unreadable.contains(&ip) {
                    return refused(format!(
                        "address {ip} of overlay {} is taken (by a claim this node cannot read)",
                        o.name
                    ));
                }
                if let Some((_, holder)) = vips.iter().find(|(v, _)| *v == ip) {
                    let service = holder.split_once('/').map_or(holder.as_str(), |(_, n)| n);
                    return refused(format!(
                        "address {ip} of overlay {} is service {service}'s VIP",
                        o.name
                    ));
                }
                ip
            }
            None => {
                let taken: std::collections::HashSet<Ipv4Addr> = claims
                    .iter()
                    .map(|e| e.ip)
                    .chain(vips.iter().map(|(v, _)| *v))
                    .chain(unreadable.iter().copied())
                    .chain(mac_taken.iter().copied())
                    .collect();
                match host_addresses(net, o.gateway).find(|a| !taken.contains(a)) {
                    Some(a) => a,
                    None => {
                        return refused(format!(
                            "overlay {} has no free address left in {}",
                            o.name, o.subnet
                        ))
                    }
                }
            }
        };
        let rec = EndpointRecord {
            overlay: o.name.clone(),
            mac: c.mac.clone().unwrap_or_else(|| mac_for(ip)),
            ip,
            node: ctx.node.clone(),
            container: c.container.clone(),
            names: c.names.clone(),
        };
        let (ik, ek, v) = (rec.ipam_key(), rec.endpoint_key(), rec.value());
        let lease = || Some(PutOptions::new().with_lease(ctx.lease));
        let txn = Txn::new()
            .when(vec![
                Compare::create_revision(ik.clone(), CompareOp::Equal, 0),
                Compare::create_revision(ek.clone(), CompareOp::Equal, 0),
                Compare::mod_revision(keys::overlay(&o.name), CompareOp::Equal, orev),
                // A service that took it as its VIP meanwhile: the next look sees it.
                Compare::create_revision(keys::vip_claim(&o.name, ip), CompareOp::Equal, 0),
            ])
            .and_then(vec![
                TxnOp::put(ik, v.clone(), lease()),
                TxnOp::put(ek.clone(), v, lease()),
            ])
            .or_else(vec![TxnOp::get(ek, None)]);
        *sent = Some(rec.clone());
        let resp = client.txn(txn).await.map_err(failed)?;
        // Answered: this one committed (and is returned) or never will.
        *sent = None;
        if resp.succeeded() {
            tracing::info!(overlay = %rec.overlay, ip = %rec.ip, mac = %rec.mac, container = %rec.container, "address claimed");
            return Ok(rec);
        }
        // The MAC is another endpoint's (whether or not its record can be read): asked
        // for, or with the address asked for, that is the user's to change; taken from a
        // free address, the address is passed over and the next look picks another.
        let holder = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .map(|kv| serde_json::from_slice::<EndpointRecord>(kv.value()).ok()),
            _ => None,
        });
        if let Some(h) = holder {
            // Claimed meanwhile, MAC and address together: the next look says so (or
            // picks another).
            if c.mac.is_none() && h.as_ref().is_some_and(|h| h.ip == ip) && meanwhile.insert(ip) {
                continue;
            }
            if c.mac.is_none() && c.ip.is_none() {
                mac_taken.insert(ip);
                continue;
            }
            let on = h.map_or("a record this node cannot read".to_string(), |h| {
                format!("on node {}", h.node)
            });
            return refused(format!(
                "MAC {} is already an endpoint of overlay {} ({on})",
                rec.mac, o.name
            ));
        }
    }
    refused(format!(
        "the addresses of overlay {} kept changing; try again",
        c.overlay
    ))
}

/// What one key holds: its record (None when the key is absent or its value is not a
/// record) and its revision (0 when absent).
struct Held {
    rec: Option<EndpointRecord>,
    exists: bool,
    rev: i64,
}

/// What the `ipam/` and `endpoints/` keys of `e` hold, read at one revision.
async fn held(client: &mut Client, e: &EndpointRecord) -> Result<[Held; 2], ClusterError> {
    let txn = Txn::new().and_then(vec![
        TxnOp::get(e.ipam_key(), None),
        TxnOp::get(e.endpoint_key(), None),
    ]);
    let resp = client.txn(txn).await.map_err(failed)?;
    let mut out = [0, 1].map(|_| Held {
        rec: None,
        exists: false,
        rev: 0,
    });
    for (i, op) in resp.op_responses().into_iter().enumerate().take(2) {
        let TxnOpResponse::Get(g) = op else { continue };
        if let Some(kv) = g.kvs().first() {
            out[i] = Held {
                rec: serde_json::from_slice::<EndpointRecord>(kv.value()).ok(),
                exists: true,
                rev: kv.mod_revision(),
            };
        }
    }
    Ok(out)
}

/// How many times a release or an update that lost a race with another write of the
/// same keys looks again (a rename and a re-publish of this very endpoint, at most).
const REWRITE_ATTEMPTS: usize = 4;

/// Deletes an endpoint and its address claim if they still hold `e` (with whatever
/// names: they may have changed since `e` was made), both in one transaction: a release
/// cut in the middle would leave an endpoint whose address looks free, which the
/// allocator would hand out and then find taken by its MAC. `in_flight` says whether
/// that transaction is sent and unanswered.
pub(crate) async fn release(
    client: &mut Client,
    e: &EndpointRecord,
    in_flight: &mut bool,
) -> Result<(), ClusterError> {
    let keys = [e.ipam_key(), e.endpoint_key()];
    for _ in 0..REWRITE_ATTEMPTS {
        let look = Txn::new().and_then(
            keys.iter()
                .map(|k| TxnOp::get(k.clone(), None))
                .collect::<Vec<_>>(),
        );
        let resp = client.txn(look).await.map_err(failed)?;
        let mut when = Vec::new();
        let mut ops = Vec::new();
        for (key, got) in keys.iter().zip(resp.op_responses()) {
            let TxnOpResponse::Get(g) = got else { continue };
            let Some(kv) = g.kvs().first() else { continue };
            if serde_json::from_slice::<EndpointRecord>(kv.value())
                .is_ok_and(|r| r.same_endpoint(e))
            {
                when.push(Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                ));
                ops.push(TxnOp::delete(key.clone(), None));
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        let txn = Txn::new().when(when).and_then(ops);
        if crate::session::write(client, txn, in_flight)
            .await?
            .succeeded()
        {
            return Ok(());
        }
    }
    Ok(())
}

/// Puts an owned endpoint under `lease`: taken over if the store holds this endpoint
/// (under an older lease of this node, or with other names: the record is rewritten with
/// `e`'s), created if neither key exists. `Ok(false)`: another endpoint holds its
/// address or MAC now, or a service its address as a VIP, or its overlay is gone.
pub(crate) async fn publish(
    client: &mut Client,
    lease: i64,
    e: &EndpointRecord,
) -> Result<bool, ClusterError> {
    let (ik, ek, v) = (e.ipam_key(), e.endpoint_key(), e.value());
    let puts = || {
        vec![
            TxnOp::put(
                ik.clone(),
                v.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::put(
                ek.clone(),
                v.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ),
        ]
    };
    for _ in 0..REWRITE_ATTEMPTS {
        let [i, en] = held(client, e).await?;
        let ours = |h: &Held| h.rec.as_ref().is_some_and(|r| r.same_endpoint(e));
        let when = if ours(&i) && ours(&en) {
            vec![
                Compare::mod_revision(ik.clone(), CompareOp::Equal, i.rev),
                Compare::mod_revision(ek.clone(), CompareOp::Equal, en.rev),
            ]
        } else if !i.exists && !en.exists {
            vec![
                Compare::create_revision(ik.clone(), CompareOp::Equal, 0),
                Compare::create_revision(ek.clone(), CompareOp::Equal, 0),
                // Gone with a lost lease, the address may have become a service's VIP,
                // or its overlay (a mesh address's) been deleted.
                Compare::create_revision(keys::vip_claim(&e.overlay, e.ip), CompareOp::Equal, 0),
                Compare::create_revision(keys::overlay(&e.overlay), CompareOp::Greater, 0),
            ]
        } else {
            return Ok(false);
        };
        let txn = Txn::new().when(when).and_then(puts());
        if client.txn(txn).await.map_err(failed)?.succeeded() {
            return Ok(true);
        }
    }
    Ok(false)
}
