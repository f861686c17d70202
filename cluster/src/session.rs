//! The cluster thread: one session at a time (connect, lease, register, list, watch and
//! keep alive), a new one after any failure, and the requests of the daemon in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    Txn, TxnOp, WatchOptions,
};

use crate::state::{overlaps, parse_subnet, AUTO_VNI_MIN, VNI_MAX, WG_PORT_MIN};
use crate::tracker::Tracker;
use crate::{
    keys, now_secs, ClusterError, Cmd, Departed, EndpointRecord, NodeRecord, OverlayRecord,
    OverlaySpec, SessionError, Settings, Shared,
};

/// What requests served inside a session need of it.
pub(crate) struct Ctx {
    /// The node's lease: every endpoint and claim lives under it.
    pub lease: i64,
    pub node: String,
    /// The owned endpoints put under this lease in this session, by `ipam/` key, as
    /// published (one whose names changed since is published again).
    pub published: std::collections::BTreeMap<String, EndpointRecord>,
}

/// How many departed nodes `list-nodes` remembers.
const MAX_DEPARTED: usize = 256;

/// Longest wait for one etcd call.
const CALL: Duration = Duration::from_secs(3);
/// Pause between two sessions.
const RETRY: Duration = Duration::from_secs(1);
/// Watch events closer together than this are handed over as one state: rebuilding the
/// state from every key is linear in the cluster's size, so a burst of revisions (many
/// nodes joining) would otherwise cost its square.
const COALESCE: Duration = Duration::from_millis(50);

/// HTTP/2 pings on an idle connection, and how long one may go unanswered. A dead store
/// is noticed by the lease's keep-alive call (every third of the TTL, each bounded by
/// [`CALL`]); these only catch a connection that died quietly. They are spaced as etcd
/// expects (its `--grpc-keepalive-min-time` is 5 s: faster pings count as strikes
/// against the client), and a busy host's scheduling delay, which reached 2 s in a
/// loaded test run, must not end a session.
const PING_EVERY: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Runner {
    pub settings: Arc<Settings>,
    pub endpoints: Vec<String>,
    pub shared: Arc<Shared>,
    pub cmds: tokio::sync::mpsc::UnboundedReceiver<Cmd>,
    /// Where the outcome of the first registration goes, and how long it may take.
    pub first: Option<(std::sync::mpsc::Sender<Result<(), String>>, Duration)>,
    /// The member the next session tries first (one past the last one used).
    pub next: usize,
}

/// Why a session ended.
enum End {
    /// The daemon is gone (its handle dropped).
    Closed,
    /// The store failed us; try again.
    Failed(SessionError),
}

/// One line from an etcd error, with its causes.
fn describe(e: &etcd_client::Error) -> String {
    let mut s = match e {
        etcd_client::Error::GRpcStatus(st) => {
            let m = st.message();
            if m.is_empty() {
                format!("{:?}", st.code())
            } else {
                m.to_string()
            }
        }
        other => other.to_string(),
    };
    // etcd_client's error does not chain its cause; the gRPC status and the transport
    // error do, down to the TLS alert or the refused connection.
    let mut src: Option<&(dyn std::error::Error + 'static)> = match e {
        etcd_client::Error::GRpcStatus(st) => std::error::Error::source(st),
        etcd_client::Error::TransportError(t) => std::error::Error::source(t),
        etcd_client::Error::IoError(io) => std::error::Error::source(io),
        _ => None,
    };
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    if s.contains("BadCertificate") || s.contains("CertificateRequired") || s.contains("UnknownCA")
    {
        s.push_str(" (the store refused this node's certificate)");
    } else if s.contains("invalid peer certificate") {
        s.push_str(" (the store's certificate does not check out against --cluster-ca)");
    }
    s.replace(['\n', '\r'], " ")
}

/// Whether a failed first join is worth another try for a clearer reason: with TLS 1.3
/// the store's refusal of a client certificate arrives after the handshake, and the
/// client may see a broken pipe instead of the alert that says why.
fn unclear(why: &str) -> bool {
    [
        "broken pipe",
        "connection reset",
        "connection closed",
        "operation was canceled",
    ]
    .iter()
    .any(|w| why.contains(w))
}

/// First-join attempts while the reason is [`unclear`].
const FIRST_TRIES: u32 = 4;

async fn call<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    what: &'static str,
) -> Result<T, SessionError> {
    match tokio::time::timeout(CALL, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SessionError::Call {
            what,
            why: describe(&e),
        }),
        Err(_) => Err(SessionError::Timeout {
            what,
            secs: CALL.as_secs(),
        }),
    }
}

/// The largest answer a whole read (the list of every key, a claim's read of an
/// overlay) may be. gRPC's default of 4 MiB is reached near 8,000 endpoints (each is
/// stored twice, a CNI container's record with its 64-character ID about 500 bytes);
/// past it a node could not join, nor list again after a compaction.
pub(crate) const MAX_READ: usize = 256 << 20;

/// The state of every key under the prefix, and the revision they were read at.
async fn list(client: &mut Client) -> Result<(Tracker, i64), SessionError> {
    let resp = call(
        client
            .kv_client()
            .max_decoding_message_size(MAX_READ)
            .get(keys::PREFIX, Some(GetOptions::new().with_prefix())),
        "list",
    )
    .await?;
    let rev = resp.header().map_or(0, |h| h.revision());
    let kvs = resp
        .kvs()
        .iter()
        .filter_map(|kv| Some((kv.key_str().ok()?, kv.value())));
    Ok((Tracker::from_pairs(kvs), rev))
}

impl Runner {
    pub async fn run(mut self) {
        let mut tries = 0;
        loop {
            let end = self.session().await;
            let why = match end {
                End::Closed => return,
                End::Failed(why) => why.to_string(),
            };
            tries += 1;
            if self.first.is_some() && unclear(&why) && tries < FIRST_TRIES {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if let Some((first, _)) = self.first.take() {
                // A first join that failed stops here: nothing half-joins.
                let why = if unclear(&why) && self.settings.tls.is_some() {
                    format!("{why} (over TLS this is how a store refuses a certificate it does not trust)")
                } else {
                    why
                };
                let _ = first.send(Err(why));
                return;
            }
            {
                let mut st = self.shared.status();
                if st.connected {
                    tracing::warn!("cluster store unreachable: {why}");
                }
                st.connected = false;
                st.error = Some(why);
            }
            // Requests that come while the store is away are answered at once.
            let until = tokio::time::Instant::now() + RETRY;
            loop {
                tokio::select! {
                    c = self.cmds.recv() => match c {
                        None => return,
                        Some(c) => refuse(c),
                    },
                    _ = tokio::time::sleep_until(until) => break,
                }
            }
        }
    }

    fn connect_options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(CALL)
            .with_keep_alive(PING_EVERY, PING_TIMEOUT)
            .with_keep_alive_while_idle(true);
        if let Some(t) = &self.settings.tls {
            o = o.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(&t.ca))
                    .identity(etcd_client::Identity::from_pem(&t.cert, &t.key)),
            );
        }
        o
    }

    /// Connects, registers and lists; then watches, keeps the lease alive and serves
    /// requests until something fails.
    async fn session(&mut self) -> End {
        let (eps, start, opts) = (self.endpoints.clone(), self.next, self.connect_options());
        let used = std::sync::Mutex::new(start);
        let setup = async {
            // One member at a time, starting after the one the last session used: a
            // channel balanced over every member keeps picking a dead one (a member of
            // a three-member etcd killed would stall every node), one member that
            // answers is enough.
            let mut client = None;
            let mut last = None;
            for i in 0..eps.len().max(1) {
                let k = (start + i) % eps.len().max(1);
                let Some(ep) = eps.get(k) else { break };
                let c = match call(
                    Client::connect([ep.as_str()], Some(opts.clone())),
                    "connect",
                )
                .await
                {
                    Ok(mut c) => call(c.status(), "status").await.map(|_| c),
                    Err(e) => Err(e),
                };
                match c {
                    Ok(c) => {
                        *used.lock().unwrap_or_else(|p| p.into_inner()) = k;
                        client = Some(c);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let mut client = match (client, last) {
                (Some(c), _) => c,
                (None, Some(e)) => return Err(e),
                (None, None) => return Err(SessionError::Setup),
            };
            let lease = call(client.lease_grant(self.settings.ttl as i64, None), "lease")
                .await?
                .id();
            // Kept alive from here on, whatever the rest of the session waits for.
            let keeper = Keeper::start(client.clone(), lease, self.settings.ttl);
            let me = NodeRecord {
                name: self.settings.node.clone(),
                vtep: self.settings.advertise,
                started: now_secs(),
                public_key: self.settings.public_key.clone(),
            };
            let value = serde_json::to_vec(&me).map_err(|e| SessionError::Encode(e.to_string()))?;
            if let Err(e) = register(&mut client, &me, value, lease).await {
                let _ = call(client.lease_revoke(lease), "revoke").await;
                return Err(e);
            }
            let (mut tracker, rev) = list(&mut client).await?;
            let known = self.shared.status().state.clone();
            tracker.keep_from(&known.overlays);
            Ok::<_, SessionError>((client, lease, keeper, tracker, rev))
        };
        let deadline = self.first.as_ref().map_or(Duration::from_secs(10), |f| f.1);
        let r = tokio::time::timeout(deadline, setup).await;
        // Whatever happens to this session, the next one starts with the next member.
        self.next = *used.lock().unwrap_or_else(|p| p.into_inner()) + 1;
        let (mut client, lease, mut keeper, mut tracker, mut rev) = match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return End::Failed(e),
            Err(_) => return End::Failed(SessionError::Setup),
        };
        if let Some((first, _)) = self.first.take() {
            if first.send(Ok(())).is_err() {
                // Whoever asked gave up: leave again.
                let _ = call(client.lease_revoke(lease), "revoke").await;
                return End::Closed;
            }
        }
        tracing::info!(node = %self.settings.node, store = %self.settings.store, revision = rev, "joined the cluster");
        self.update(&tracker, true);
        let mut ctx = Ctx {
            lease,
            node: self.settings.node.clone(),
            published: Default::default(),
        };
        // The endpoints this node owned go (back) under the new lease. What the store
        // leaves unanswered is tried again after RETRY, in this session.
        let mut resync = match sync(&self.shared, &mut client, &mut ctx).await {
            Ok(done) => again(done),
            Err(e) => return End::Failed(e),
        };

        let (mut _watcher, mut watch) = match self.watch(&mut client, rev).await {
            Ok(v) => v,
            Err(e) => return End::Failed(e),
        };
        // Changes seen but not handed over yet, and when the state was last rebuilt.
        let mut dirty = false;
        let now = tokio::time::Instant::now();
        let mut built = now.checked_sub(COALESCE).unwrap_or(now);
        let mut audit_at = now + self.settings.audit;
        let own_key = keys::node(&self.settings.node);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(built + COALESCE), if dirty => {
                    self.update(&tracker, true);
                    dirty = false;
                    built = tokio::time::Instant::now();
                }
                e = keeper.ended() => return End::Failed(e),
                _ = tokio::time::sleep_until(resync.unwrap_or_else(tokio::time::Instant::now)), if resync.is_some() => {
                    resync = match sync(&self.shared, &mut client, &mut ctx).await {
                        Ok(done) => again(done),
                        Err(e) => return End::Failed(e),
                    };
                }
                _ = tokio::time::sleep_until(audit_at) => {
                    audit_at = tokio::time::Instant::now() + self.settings.audit;
                    // A list that fails (a stalled store) is tried again next time: the
                    // watch itself is not in question.
                    let (mut t, r) = match list(&mut client).await {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!("cluster audit skipped: {e}");
                            continue;
                        }
                    };
                    t.keep_from(&tracker.state().overlays);
                    if t == tracker {
                        continue;
                    }
                    // Events still on their way look the same; adopting the list is
                    // right either way.
                    tracing::warn!(listed = r, watched = rev, "the store holds changes the watch did not deliver; listing again and watching from there");
                    (tracker, rev) = (t, r);
                    match self.adopt(&mut client, &tracker, rev).await {
                        Ok((w, s)) => (_watcher, watch) = (w, s),
                        Err(e) => return End::Failed(e),
                    }
                    dirty = false;
                    built = tokio::time::Instant::now();
                }
                m = watch.message() => match m {
                    Ok(Some(r)) => {
                        if r.canceled() {
                            // Compacted past our revision (or cancelled): list afresh
                            // and watch from there.
                            tracing::info!(compacted = r.compact_revision(), "watch cancelled; listing again");
                            match list(&mut client).await {
                                Ok((mut t, r)) => {
                                    t.keep_from(&tracker.state().overlays);
                                    (tracker, rev) = (t, r);
                                }
                                Err(e) => return End::Failed(e),
                            }
                            match self.adopt(&mut client, &tracker, rev).await {
                                Ok((w, s)) => (_watcher, watch) = (w, s),
                                Err(e) => return End::Failed(e),
                            }
                            dirty = false;
                            built = tokio::time::Instant::now();
                            continue;
                        }
                        let mut changed = false;
                        for ev in r.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let Ok(k) = kv.key_str() else { continue };
                            match ev.event_type() {
                                EventType::Put => tracker.put(k, kv.value()),
                                // The others take the node for gone: it registers again
                                // (and puts its endpoints back) in a new session rather
                                // than stay out while believing it is in.
                                EventType::Delete if k == own_key => {
                                    return End::Failed(SessionError::KeyDeleted)
                                }
                                EventType::Delete => tracker.delete(k),
                            }
                            rev = rev.max(kv.mod_revision());
                            changed = true;
                        }
                        if let Some(h) = r.header() {
                            rev = rev.max(h.revision());
                        }
                        // A change right after a quiet spell is handed over at once; one
                        // within COALESCE of the last waits for it, with any that follow.
                        if changed && built.elapsed() < COALESCE {
                            dirty = true;
                            self.update(&tracker, false);
                        } else {
                            self.update(&tracker, changed);
                            if changed {
                                dirty = false;
                                built = tokio::time::Instant::now();
                            }
                        }
                    }
                    Ok(None) => return End::Failed(SessionError::StreamClosed("watch")),
                    Err(e) => return End::Failed(SessionError::Call { what: "watch", why: describe(&e) }),
                },
                c = self.cmds.recv() => match c {
                    None => {
                        let _ = call(client.lease_revoke(lease), "revoke").await;
                        return End::Closed;
                    }
                    Some(Cmd::Sync) => match sync(&self.shared, &mut client, &mut ctx).await {
                        Ok(done) => resync = resync.or(again(done)),
                        Err(e) => return End::Failed(e),
                    },
                    Some(c) => {
                        // A claim or release left unanswered may commit yet: the next
                        // pass follows it up.
                        let queued = serve(&self.shared, &mut client, &mut ctx, c).await;
                        resync = resync.or(again(!queued));
                    }
                },
            }
        }
    }

    /// Hands over `tracker`, listed at `rev`, as the state, and watches from there (the
    /// caller drops the old watch with what it returns).
    async fn adopt(
        &self,
        client: &mut Client,
        tracker: &Tracker,
        rev: i64,
    ) -> Result<(etcd_client::Watcher, etcd_client::WatchStream), SessionError> {
        self.update(tracker, true);
        self.watch(client, rev).await
    }

    async fn watch(
        &self,
        client: &mut Client,
        rev: i64,
    ) -> Result<(etcd_client::Watcher, etcd_client::WatchStream), SessionError> {
        // A whole transaction's events come in one message (a del-overlay deletes
        // every address of the overlay at once).
        call(
            client
                .watch_client()
                .max_decoding_message_size(MAX_READ)
                .watch(
                    keys::PREFIX,
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(rev + 1),
                    ),
                ),
            "watch",
        )
        .await
    }

    /// Records the state the keys describe and, if it changed, hands it over.
    fn update(&self, tracker: &Tracker, changed: bool) {
        let now = now_secs();
        let mut st = self.shared.status();
        st.connected = true;
        st.error = None;
        st.seen = now;
        if !changed {
            return;
        }
        let next = tracker.state();
        // The tracker copies the state on its first change after a hand-over: the same
        // one means none of the changes touched it (an address claim, a bad record).
        if Arc::ptr_eq(&next, &st.state) {
            return;
        }
        let gone: Vec<NodeRecord> = st
            .state
            .nodes
            .values()
            .filter(|n| !next.nodes.contains_key(&n.name))
            .cloned()
            .collect();
        for n in gone {
            tracing::info!(node = %n.name, vtep = %n.vtep, "node left the cluster");
            st.departed.insert(
                n.name.clone(),
                Departed {
                    record: n,
                    left: now,
                },
            );
        }
        for n in next.nodes.values() {
            if st.departed.remove(&n.name).is_some() || !st.state.nodes.contains_key(&n.name) {
                tracing::info!(node = %n.name, vtep = %n.vtep, "node in the cluster");
            }
        }
        // Nodes that come and go under ever new names (autoscaled hosts) would grow the
        // list without end: the longest gone are forgotten first.
        while st.departed.len() > MAX_DEPARTED {
            let oldest = st
                .departed
                .iter()
                .min_by_key(|(_, d)| d.left)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => st.departed.remove(&k),
                None => break,
            };
        }
        st.state = next.clone();
        drop(st);
        self.shared.publish(next);
    }
}

/// The lease's keep-alive, a task beside the session's loop: that loop waits on one
/// request at a time, up to [`crate::REQUEST_DEADLINE`] each, and a store whose writes
/// stall (a WAL fsync behind a busy disk) still answers keep-alives, which need no
/// write. Run inline, one such request cost a node with a 3 s TTL its lease. Aborted
/// with the session.
struct Keeper(tokio::task::JoinHandle<SessionError>);

impl Keeper {
    fn start(client: Client, lease: i64, ttl: u64) -> Keeper {
        Keeper(tokio::spawn(keep_alive(client, lease, ttl)))
    }

    /// Why the keep-alive stopped: the session is over.
    async fn ended(&mut self) -> SessionError {
        match (&mut self.0).await {
            Ok(e) => e,
            Err(e) => SessionError::Call {
                what: "keepalive",
                why: e.to_string(),
            },
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews `lease` every third of its TTL until a renewal fails, or until none has been
/// answered for a whole TTL (the store would have let the lease go by then).
async fn keep_alive(mut client: Client, lease: i64, ttl: u64) -> SessionError {
    let (mut keeper, mut alive) = match call(client.lease_keep_alive(lease), "keepalive").await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let ttl = Duration::from_secs(ttl);
    let period = (ttl / 3).max(Duration::from_millis(500));
    let mut tick = tokio::time::interval(period);
    let mut answered = tokio::time::Instant::now();
    loop {
        tokio::select! {
            // Answers first: after this thread was held up, an answer waiting beside a
            // due tick must count before the tick judges the lease.
            biased;
            m = alive.message() => match m {
                Ok(Some(r)) if r.ttl() <= 0 => return SessionError::LeaseExpired,
                Ok(Some(_)) => answered = tokio::time::Instant::now(),
                Ok(None) => return SessionError::StreamClosed("keepalive"),
                Err(e) => return SessionError::Call { what: "keepalive", why: describe(&e) },
            },
            _ = tick.tick() => {
                // A period of slack: the answer to the last renewal may be on its way.
                if answered.elapsed() > ttl + period {
                    return SessionError::LeaseExpired;
                }
                if let Err(e) = call(keeper.keep_alive(), "keepalive").await {
                    return e;
                }
            }
        }
    }
}

/// Puts this node's record under `lease`: created if the name is free, taken over if
/// it is this node's own from an earlier life (same VTEP: a restart before its old lease
/// expired), refused if another VTEP holds the name. One transaction per attempt.
async fn register(
    client: &mut Client,
    me: &NodeRecord,
    value: Vec<u8>,
    lease: i64,
) -> Result<(), SessionError> {
    let key = keys::node(&me.name);
    let put = || {
        TxnOp::put(
            key.clone(),
            value.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )
    };
    for _ in 0..ATTEMPTS {
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![put()])
            .or_else(vec![TxnOp::get(key.clone(), None)]);
        let resp = call(client.txn(txn), "register").await?;
        if resp.succeeded() {
            return Ok(());
        }
        let held = resp.op_responses().into_iter().find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                (
                    kv.mod_revision(),
                    serde_json::from_slice::<NodeRecord>(kv.value()).ok(),
                )
            }),
            _ => None,
        });
        let Some((rev, old)) = held else { continue };
        if let Some(o) = old.as_ref().filter(|o| o.vtep != me.vtep) {
            return Err(SessionError::NameTaken {
                name: me.name.clone(),
                vtep: o.vtep,
            });
        }
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                rev,
            )])
            .and_then(vec![put()]);
        if call(client.txn(txn), "register").await?.succeeded() {
            return Ok(());
        }
    }
    Err(SessionError::KeyChurn)
}

fn refuse(c: Cmd) {
    match c {
        Cmd::AddOverlay { reply, .. } | Cmd::DelOverlay { reply, .. } => {
            let _ = reply.send(Err(ClusterError::Unreachable));
        }
        Cmd::Claim { reply, .. } => {
            let _ = reply.send(Err(ClusterError::Unreachable));
        }
        Cmd::Release { reply, .. } | Cmd::Service { reply, .. } => {
            let _ = reply.send(Err(ClusterError::Unreachable));
        }
        // What it would do is kept in the shared sets: the next session does it.
        Cmd::Sync => {}
    }
}

/// Serves one request; true when it left work for the next pass of [`sync`] (a claim's
/// release queued, an unanswered release's endpoint to publish again).
async fn serve(shared: &Shared, client: &mut Client, ctx: &mut Ctx, c: Cmd) -> bool {
    match c {
        Cmd::Sync => {}
        Cmd::Claim {
            claim,
            deadline,
            reply,
        } => {
            let mut sent = None;
            let r = bounded(deadline, crate::ipam::claim(client, ctx, &claim, &mut sent)).await;
            let r = unanswered(r, sent.is_some());
            let mut queued = false;
            match &r {
                Ok(e) => {
                    // A release of the same record still queued must not undo this claim.
                    shared.releasing().remove(&e.ipam_key());
                    ctx.published.insert(e.ipam_key(), e.clone());
                }
                // The claim was sent and may commit when the store answers again, with
                // nobody to use it: released then (only if it still holds this record).
                Err(ClusterError::NoAnswer) => {
                    if let Some(e) = sent {
                        tracing::warn!(overlay = %e.overlay, ip = %e.ip, "address claim not answered; released when the store answers");
                        shared.releasing().insert(e.ipam_key(), e);
                        queued = true;
                    }
                }
                Err(_) => {}
            }
            let _ = reply.send(r);
            return queued;
        }
        Cmd::Release {
            record,
            deadline,
            reply,
        } => {
            let mut in_flight = false;
            let r = bounded(
                deadline,
                crate::ipam::release(client, &record, &mut in_flight),
            )
            .await;
            let r = unanswered(r, in_flight);
            // Unanswered, the delete may still commit while the container stays plugged
            // in: published again at the next pass (after that delete, if it comes), as
            // long as the node still owns it.
            let unanswered = matches!(r, Err(ClusterError::NoAnswer));
            if r.is_ok() || unanswered {
                ctx.published.remove(&record.ipam_key());
            }
            let _ = reply.send(r);
            return unanswered;
        }
        Cmd::Service {
            change,
            deadline,
            reply,
        } => {
            let mut in_flight = false;
            let r = bounded(
                deadline,
                crate::services::change(client, &change, &mut in_flight),
            )
            .await;
            let _ = reply.send(unanswered(r, in_flight));
        }
        Cmd::AddOverlay {
            spec,
            deadline,
            reply,
        } => {
            let mut in_flight = false;
            let r = bounded(deadline, add_overlay(client, &spec, &mut in_flight)).await;
            let _ = reply.send(unanswered(r, in_flight));
        }
        Cmd::DelOverlay {
            name,
            deadline,
            reply,
        } => {
            let mut in_flight = false;
            let r = bounded(deadline, del_overlay(client, &name, &mut in_flight)).await;
            let _ = reply.send(unanswered(r, in_flight));
        }
    }
    false
}

/// A request that ran out of time with no write in flight (in its reads, or between
/// attempts) changed nothing: it is answered "unreachable", not "may still be made".
fn unanswered<T>(r: Result<T, ClusterError>, in_flight: bool) -> Result<T, ClusterError> {
    match r {
        Err(ClusterError::NoAnswer) if !in_flight => Err(ClusterError::Unreachable),
        r => r,
    }
}

/// Sends a write transaction; `in_flight` is true from its sending until its answer, so
/// that a request that runs out of time meanwhile says the write may still be made.
pub(crate) async fn write(
    client: &mut Client,
    txn: Txn,
    in_flight: &mut bool,
) -> Result<etcd_client::TxnResponse, ClusterError> {
    *in_flight = true;
    let r = client.txn(txn).await.map_err(failed)?;
    *in_flight = false;
    Ok(r)
}

async fn bounded<T>(
    deadline: Instant,
    f: impl std::future::Future<Output = Result<T, ClusterError>>,
) -> Result<T, ClusterError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ClusterError::Unreachable);
    }
    tokio::time::timeout(left, f)
        .await
        .unwrap_or(Err(ClusterError::NoAnswer))
}

/// An etcd error met while serving a request.
pub(crate) fn failed(e: etcd_client::Error) -> ClusterError {
    match &e {
        // The call's own timeout (tonic reports it as "Timeout expired", cancelled): sent,
        // and not answered. A call cancelled otherwise (its connection closed) was not.
        etcd_client::Error::GRpcStatus(s)
            if s.code() == tonic_code::DEADLINE
                || (s.code() == tonic_code::CANCELLED
                    && describe(&e).contains("Timeout expired")) =>
        {
            tracing::warn!("cluster request not answered: {}", describe(&e));
            ClusterError::NoAnswer
        }
        etcd_client::Error::GRpcStatus(s)
            if !matches!(
                s.code(),
                tonic_code::UNAVAILABLE | tonic_code::UNKNOWN | tonic_code::CANCELLED
            ) =>
        {
            ClusterError::Refused(format!("cluster store: {}", describe(&e)))
        }
        _ => {
            tracing::warn!("cluster request failed: {}", describe(&e));
            ClusterError::Unreachable
        }
    }
}

mod tonic_code {
    pub const UNAVAILABLE: tonic::Code = tonic::Code::Unavailable;
    pub const DEADLINE: tonic::Code = tonic::Code::DeadlineExceeded;
    pub const CANCELLED: tonic::Code = tonic::Code::Cancelled;
    pub const UNKNOWN: tonic::Code = tonic::Code::Unknown;
}

/// Transactions that lose a race are retried this many times.
const ATTEMPTS: usize = 8;

/// The overlays, the claimed VNIs and the guard's revision, read in one transaction.
async fn read_overlays(
    client: &mut Client,
) -> Result<(Vec<OverlayRecord>, std::collections::HashSet<u32>, i64), ClusterError> {
    let txn = Txn::new().and_then(vec![
        TxnOp::get(keys::OVERLAYS_GUARD, None),
        TxnOp::get(keys::OVERLAYS, Some(GetOptions::new().with_prefix())),
        TxnOp::get(keys::VNIS, Some(GetOptions::new().with_prefix())),
    ]);
    let resp = client.txn(txn).await.map_err(failed)?;
    let mut guard = 0;
    let mut overlays = Vec::new();
    let mut vnis = std::collections::HashSet::new();
    for (i, op) in resp.op_responses().into_iter().enumerate() {
        let etcd_client::TxnOpResponse::Get(g) = op else {
            continue;
        };
        for kv in g.kvs() {
            match i {
                0 => guard = kv.mod_revision(),
                1 => match serde_json::from_slice::<OverlayRecord>(kv.value()) {
                    Ok(o) => overlays.push(o),
                    Err(e) => tracing::warn!("bad overlay record skipped: {e}"),
                },
                _ => {
                    if let Some(v) = kv
                        .key_str()
                        .ok()
                        .and_then(|k| k.strip_prefix(keys::VNIS))
                        .and_then(|v| v.parse::<u32>().ok())
                    {
                        vnis.insert(v);
                    }
                }
            }
        }
    }
    for o in &overlays {
        vnis.insert(o.vni);
    }
    Ok((overlays, vnis, guard))
}

async fn add_overlay(
    client: &mut Client,
    spec: &OverlaySpec,
    in_flight: &mut bool,
) -> Result<OverlayRecord, ClusterError> {
    let refuse = |s: String| Err(ClusterError::Refused(s));
    let Some(net) = parse_subnet(&spec.subnet) else {
        return refuse(format!("bad subnet {}", spec.subnet));
    };
    for _ in 0..ATTEMPTS {
        let (overlays, vnis, guard) = read_overlays(client).await?;
        if overlays.iter().any(|o| o.name == spec.name) {
            return refuse(format!("overlay {} already exists", spec.name));
        }
        if let Some(o) = overlays
            .iter()
            .find(|o| parse_subnet(&o.subnet).is_some_and(|s| overlaps(s, net)))
        {
            return refuse(format!(
                "subnet {} overlaps {} of overlay {}",
                spec.subnet, o.subnet, o.name
            ));
        }
        let vni = match spec.vni {
            Some(v) => {
                if let Some(o) = overlays.iter().find(|o| o.vni == v) {
                    return refuse(format!("VNI {v} is already overlay {}", o.name));
                }
                if vnis.contains(&v) {
                    return refuse(format!("VNI {v} is already claimed"));
                }
                v
            }
            None => match (AUTO_VNI_MIN..=VNI_MAX).find(|v| !vnis.contains(v)) {
                Some(v) => v,
                None => return refuse("no VNI left".into()),
            },
        };
        let gateway = spec
            .gateway
            .unwrap_or_else(|| std::net::Ipv4Addr::from(u32::from(net.0) | 1));
        // Every encrypted overlay has a listen port of its own on every node (one
        // encrypted tunnel per port): the lowest no other one has. The guard key makes
        // two creations that pick the same port at once race in the transaction.
        let listen_port = if spec.encrypted {
            match (WG_PORT_MIN..=u16::MAX)
                .find(|p| !overlays.iter().any(|o| o.listen_port == Some(*p)))
            {
                Some(p) => Some(p),
                None => return refuse("no WireGuard listen port left".into()),
            }
        } else {
            None
        };
        let rec = OverlayRecord {
            name: spec.name.clone(),
            vni,
            subnet: spec.subnet.clone(),
            gateway,
            encrypted: spec.encrypted,
            listen_port,
        };
        if let Err(e) = rec.check() {
            return refuse(e.to_string());
        }
        let value = serde_json::to_vec(&rec).map_err(|e| ClusterError::Refused(e.to_string()))?;
        let okey = keys::overlay(&rec.name);
        let vkey = keys::vni(vni);
        let txn = Txn::new()
            .when(vec![
                Compare::create_revision(okey.clone(), CompareOp::Equal, 0),
                Compare::create_revision(vkey.clone(), CompareOp::Equal, 0),
                Compare::mod_revision(keys::OVERLAYS_GUARD, CompareOp::Equal, guard),
            ])
            .and_then(vec![
                TxnOp::put(okey, value, None),
                TxnOp::put(vkey, rec.name.clone(), None),
                TxnOp::put(keys::OVERLAYS_GUARD, rec.name.clone(), None),
            ]);
        let resp = write(client, txn, in_flight).await?;
        if resp.succeeded() {
            tracing::info!(overlay = %rec.name, vni, subnet = %rec.subnet, "overlay created");
            return Ok(rec);
        }
        // Someone changed the overlays meanwhile: look again.
    }
    refuse("the overlays kept changing; try again".into())
}

async fn del_overlay(
    client: &mut Client,
    name: &str,
    in_flight: &mut bool,
) -> Result<OverlayRecord, ClusterError> {
    for _ in 0..ATTEMPTS {
        let okey = keys::overlay(name);
        let resp = client.get(okey.clone(), None).await.map_err(failed)?;
        let Some(kv) = resp.kvs().first() else {
            return Err(ClusterError::Refused(format!("no overlay named {name}")));
        };
        let rec: Option<OverlayRecord> = serde_json::from_slice(kv.value()).ok();
        // Containers of any node still on it: their addresses would outlive it. The
        // nodes' mesh addresses go with it.
        let ipam = keys::ipam_of(name);
        let held = client
            .kv_client()
            .max_decoding_message_size(MAX_READ)
            .get(ipam.clone(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(failed)?;
        let looked = held.header().map_or(0, |h| h.revision());
        let addrs: std::collections::BTreeSet<String> = held
            .kvs()
            .iter()
            .filter(|kv| {
                !serde_json::from_slice::<EndpointRecord>(kv.value())
                    .is_ok_and(|e| e.container.starts_with(crate::MESH_OWNER))
            })
            .filter_map(|kv| kv.key_str().ok())
            .filter_map(|k| k.strip_prefix(&ipam).map(str::to_string))
            .collect();
        let services = client
            .get(
                keys::services_of(name),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .map_err(failed)?;
        let names: Vec<String> = services
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok())
            .filter_map(|k| k.strip_prefix(&keys::services_of(name)).map(str::to_string))
            .collect();
        if !names.is_empty() {
            return Err(ClusterError::Refused(format!(
                "overlay {name} still has service(s) {}; del-service them first",
                names.join(", ")
            )));
        }
        if !addrs.is_empty() {
            return Err(ClusterError::Refused(format!(
                "overlay {name} still has {} endpoint(s) ({}); detach them first",
                addrs.len(),
                addrs.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        let mut ops = vec![
            TxnOp::delete(okey.clone(), None),
            TxnOp::put(keys::OVERLAYS_GUARD, name, None),
            // What is left are mesh addresses (and their endpoints).
            TxnOp::delete(ipam.clone(), Some(DeleteOptions::new().with_prefix())),
            TxnOp::delete(
                keys::endpoints_of(name),
                Some(DeleteOptions::new().with_prefix()),
            ),
        ];
        if let Some(r) = &rec {
            ops.push(TxnOp::delete(keys::vni(r.vni), None));
        }
        // No service added since the look above (a compare over the whole range holds
        // only if every key in it does, and a key's create revision is never 0).
        let svc = keys::services_of(name);
        let no_services = Compare::create_revision(svc.clone(), CompareOp::Equal, 0)
            .with_range(keys::prefix_end(&svc));
        // No address claimed since the look (an attach racing this delete).
        let no_new_addrs = Compare::mod_revision(ipam.clone(), CompareOp::Less, looked + 1)
            .with_range(keys::prefix_end(&ipam));
        let txn = Txn::new()
            .when(vec![
                Compare::mod_revision(okey, CompareOp::Equal, kv.mod_revision()),
                no_services,
                no_new_addrs,
            ])
            .and_then(ops);
        if write(client, txn, in_flight).await?.succeeded() {
            tracing::info!(overlay = %name, "overlay deleted");
            return Ok(rec.unwrap_or(OverlayRecord {
                name: name.to_string(),
                vni: 0,
                subnet: String::new(),
                gateway: std::net::Ipv4Addr::UNSPECIFIED,
                encrypted: false,
                listen_port: None,
            }));
        }
        tracing::info!(overlay = %name, "overlay or its services changed during del-overlay; looking again");
    }
    Err(ClusterError::Refused(
        "the overlay kept changing; try again".into(),
    ))
}

/// When to pass [`sync`] again: after [`RETRY`] if the last pass left work undone.
fn again(done: bool) -> Option<tokio::time::Instant> {
    (!done).then(|| tokio::time::Instant::now() + RETRY)
}

/// Releases what the controller dropped and publishes what it owns and this session has
/// not put under its lease yet. Ok(false): the store left a request unanswered (its
/// writes stall, while the lease is kept alive); the rest waits for the next pass. An
/// error means the store is gone: the session ends, and the next one starts with this.
async fn sync(shared: &Shared, client: &mut Client, ctx: &mut Ctx) -> Result<bool, SessionError> {
    let releasing: Vec<(String, EndpointRecord)> = shared
        .releasing()
        .iter()
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    for (k, e) in releasing {
        match crate::ipam::release(client, &e, &mut false).await {
            Ok(()) => {
                tracing::info!(overlay = %e.overlay, ip = %e.ip, mac = %e.mac, "endpoint released");
            }
            Err(ClusterError::Refused(why)) => {
                tracing::warn!(overlay = %e.overlay, ip = %e.ip, "cannot release: {why}");
            }
            Err(ClusterError::Unreachable) => return Err(SessionError::Unreachable("release")),
            Err(ClusterError::NoAnswer) => return Ok(false),
        }
        let mut rel = shared.releasing();
        if rel.get(&k) == Some(&e) {
            rel.remove(&k);
        }
        ctx.published.remove(&k);
    }
    let owned: Vec<(String, EndpointRecord)> = shared
        .owned()
        .iter()
        .filter(|(k, e)| ctx.published.get(*k) != Some(*e))
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    let mut done = true;
    for (k, e) in owned {
        match crate::ipam::publish(client, ctx.lease, &e).await {
            Ok(true) => {
                if shared.conflicts().remove(&k).is_some() {
                    tracing::info!(overlay = %e.overlay, ip = %e.ip, "the endpoint's address is its own again; published");
                }
            }
            // Not published, and tried again at every pass (the other holder may go):
            // marked published, an address this node's container still uses would stay
            // free in the store for the whole session.
            Ok(false) => {
                if shared.conflicts().insert(k, e.clone()).is_none() {
                    tracing::warn!(
                        overlay = %e.overlay, ip = %e.ip, mac = %e.mac,
                        "the endpoint's address or MAC is another's now (an endpoint's or a VIP); not published, tried again every second"
                    );
                }
                done = false;
                continue;
            }
            Err(ClusterError::NoAnswer) => return Ok(false),
            Err(ClusterError::Refused(why)) => {
                tracing::warn!(overlay = %e.overlay, ip = %e.ip, "cannot publish: {why}");
            }
            Err(ClusterError::Unreachable) => return Err(SessionError::Unreachable("publish")),
        }
        ctx.published.insert(k, e);
    }
    // Conflicts of endpoints no longer owned are no longer anyone's business.
    let owned = shared.owned();
    shared.conflicts().retain(|k, _| owned.contains_key(k));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_out_of_time_says_may_only_when_its_write_was_sent() {
        let no = || Err::<(), _>(ClusterError::NoAnswer);
        assert_eq!(unanswered(no(), true), Err(ClusterError::NoAnswer));
        assert_eq!(unanswered(no(), false), Err(ClusterError::Unreachable));
        assert_eq!(unanswered(Ok(()), false), Ok(()));
        let refused = Err::<(), _>(ClusterError::Refused("no".into()));
        assert_eq!(unanswered(refused.clone(), false), refused);
    }
}
