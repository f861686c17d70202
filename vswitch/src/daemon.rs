//! Starting and stopping `vswitchd`: loads the config, binds the control socket, starts
//! the workers and the housekeeper, and tears it all down on SIGTERM/SIGINT.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use mio::{Poll, Waker};

use crate::config::{ConfigError, Store};
use crate::controller::Controller;
use crate::dataplane::{Shared, Snapshot};
use crate::pool::Pool;
use crate::server;
use crate::worker::{Worker, WAKER};

/// Daemon settings.
pub struct Options {
    pub sock: PathBuf,
    pub db: PathBuf,
    /// Where to serve `/metrics` (Prometheus text format); none: not served.
    pub metrics: Option<std::net::SocketAddr>,
    pub workers: usize,
    pub rx_ring: crate::sys::afpacket::RingKind,
    pub busy_poll: Duration,
    /// Niceness of the worker threads (0: left as the process's). The kernel bridge
    /// forwards in softirq, ahead of every task; workers that wait behind the endpoints
    /// they serve add their wait to every frame's trip.
    pub worker_nice: i32,
    /// Cluster membership from the command line (it replaces the config's); none: the
    /// config's, if any.
    pub cluster: Option<crate::config::ClusterConf>,
    /// How often a cluster node checks its watched state against a list of the store.
    pub cluster_audit: Duration,
    /// VTEPs send TCP super-frames whole through a TAP of this name (`%d`: the first
    /// free number); none: they segment them.
    pub vxlan_gso_tap: Option<String>,
}

/// How long a first join may take before the daemon gives up.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);

/// Small buffers in the pool: enough for every TX queue of a few dozen ports to fill
/// halfway. Allocated lazily, so idle memory stays low.
const POOL_SMALL: usize = 32 * 1024;
/// Large (64 KiB) buffers: bounds memory held by super-frames to about 64 MiB.
const POOL_LARGE: usize = 1024;

/// Why the daemon could not start; `vswitchd` prints it after its name.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Socket(#[from] server::BindError),
    /// The cluster could not be joined (or its settings are wrong); the line says why.
    #[error(transparent)]
    Cluster(#[from] cluster::SetupError),
    /// The OS refused a resource the daemon needs (`what` says which).
    #[error("cannot {what}: {why}")]
    Os {
        what: &'static str,
        why: std::io::Error,
    },
    /// The WireGuard key file is unusable; the line says why.
    #[error("{0}")]
    Key(String),
    #[error("cannot serve metrics on {addr}: {why}")]
    Metrics {
        addr: std::net::SocketAddr,
        why: std::io::Error,
    },
}

/// Maps an OS error to a [`StartError`] saying what could not be done.
fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> StartError {
    move |why| StartError::Os { what, why }
}

/// Runs the daemon until a termination signal. Returns an error for anything that
/// stops it from starting.
pub fn run(opts: Options) -> Result<(), StartError> {
    match crate::sys::limits::raise_nofile() {
        Ok(n) => tracing::debug!("open descriptors allowed: {n}"),
        Err(e) => tracing::warn!("could not raise the limit on open descriptors: {e}"),
    }
    let store = Store::new(&opts.db);
    let mut cfg = store.load()?;
    let key_path = crate::encrypt::keyfile::path_for(&opts.db);
    // Said only once the daemon has started: a start refused for another reason prints
    // its one line and nothing else.
    let key_generated = !key_path.exists();
    let wg_key = crate::encrypt::keyfile::load_or_create(&key_path).map_err(StartError::Key)?;
    let public_key = wg_key.public();
    let listener = server::bind(&opts.sock)?;
    let _sock_guard = server::SockGuard(opts.sock.clone());

    // The cluster: joined before anything forwards, so a refused first join changes
    // nothing (the config keeps no trace of it). A node that was in the cluster already
    // starts from its cached state and rejoins in the background.
    let (cluster_conf, fresh) = match (opts.cluster, cfg.cluster.take()) {
        (Some(mut new), Some(old)) => {
            let same =
                new.store == old.store && new.node == old.node && new.advertise == old.advertise;
            new.bridges = old.bridges;
            new.published = old.published;
            if same {
                new.state = old.state;
                new.mesh = old.mesh;
            }
            (Some(new), !same)
        }
        (Some(new), None) => (Some(new), true),
        (None, old) => (old, false),
    };
    let cluster = match &cluster_conf {
        None => None,
        Some(c) => {
            let settings = crate::clustering::settings(c, &public_key, opts.cluster_audit)?;
            let mode = if fresh {
                cluster::JoinMode::Now(JOIN_DEADLINE)
            } else {
                cluster::JoinMode::Background
            };
            let h = cluster::start(settings, c.state.clone(), mode)?;
            Some(Arc::new(h))
        }
    };
    cfg.cluster = cluster_conf.clone();

    let workers = opts.workers.max(1);
    let mut polls = Vec::new();
    let mut wakers = Vec::new();
    let mut inboxes = Vec::new();
    let mut outboxes = Vec::new();
    for _ in 0..workers {
        let poll = Poll::new().map_err(os("create epoll"))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(os("create waker"))?;
        let (tx, rx) = crossbeam::channel::unbounded();
        polls.push(poll);
        wakers.push(Arc::new(waker));
        inboxes.push(tx);
        outboxes.push(rx);
    }
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(Snapshot::default()),
        pool: Pool::new(POOL_SMALL, POOL_LARGE),
        clock: Default::default(),
        workers,
        rx_ring: opts.rx_ring,
        busy_poll: opts.busy_poll,
        inboxes,
        wakers,
        shutdown: AtomicBool::new(false),
        busy_ns: Shared::busy_counters(workers),
        wg_key,
        gso_tap: opts.vxlan_gso_tap,
    });
    let mut handles = Vec::new();
    for (i, (poll, inbox)) in polls.into_iter().zip(outboxes).enumerate() {
        let w = Worker::new(i, shared.clone(), poll, inbox);
        let nice = opts.worker_nice;
        let h = std::thread::Builder::new()
            .name(format!("vswitch-worker{i}"))
            .spawn(move || {
                if nice != 0 {
                    match crate::sys::sched::set_thread_nice(nice) {
                        Ok(()) => tracing::debug!(worker = i, nice, "worker priority set"),
                        // One line, from one worker: the daemon runs as it would without.
                        Err(e) if i == 0 => tracing::warn!(
                            "workers keep the process's priority ({e}): setting niceness {nice} needs CAP_SYS_NICE; --worker-nice 0 silences this"
                        ),
                        Err(_) => {}
                    }
                }
                w.run()
            })
            .map_err(os("start worker"))?;
        handles.push(h);
    }

    // Bound before the daemon says it started, so a taken port stops it at once.
    let metrics = opts
        .metrics
        .map(|a| crate::metrics::bind(a).map_err(|why| StartError::Metrics { addr: a, why }))
        .transpose()?;
    let nbr = cfg.bridges.len();
    let nports: usize = cfg.bridges.iter().map(|b| b.ports.len()).sum();
    let mut controller = Controller::new(cfg, store, shared.clone());
    if let Some(c) = cluster_conf {
        // Kept in the config, so a restart rejoins by itself.
        let c = controller.cluster_conf().cloned().unwrap_or(c);
        controller.set_cluster(c)?;
    }
    let ctl = Arc::new(Mutex::new(controller));
    tracing::info!(bridges = nbr, ports = nports, workers, sock = %opts.sock.display(), "vswitchd started");
    if key_generated {
        tracing::info!(path = %key_path.display(), %public_key, "WireGuard key generated");
    }

    {
        let ctl = ctl.clone();
        let cluster = cluster.clone();
        std::thread::Builder::new()
            .name("vswitch-ctl".into())
            .spawn(move || server::serve(listener, ctl, cluster))
            .map_err(os("start control thread"))?;
    }
    if let Some(l) = metrics {
        let ctl = ctl.clone();
        tracing::info!(addr = %l.local_addr().map_err(os("read the metrics address"))?, "serving /metrics");
        std::thread::Builder::new()
            .name("vswitch-metrics".into())
            .spawn(move || crate::metrics::serve(l, ctl))
            .map_err(os("start metrics thread"))?;
    }
    let mesher = match &cluster {
        Some(cl) => Some(
            crate::clustering::Mesher::start(cl.clone(), ctl.clone())
                .map_err(os("start mesh thread"))?,
        ),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(os("install signal handler"))?;
    }
    // The main thread is the housekeeper: once a second it ages FDBs and re-attaches
    // ports; it checks for a termination signal ten times as often.
    let mut tick = 0u32;
    let mut heap = crate::sys::heap::Trimmer::default();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
        tick += 1;
        // The cluster's desired state, when it changed: applied within a tick.
        if let Some(s) = cluster.as_ref().and_then(|c| c.take_update()) {
            ctl.lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply_cluster(s);
        }
        if tick.is_multiple_of(10) {
            let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
            c.housekeeping();
            if tick.is_multiple_of(50) {
                c.reconcile_cluster();
            }
            // The endpoints this node owns: a container that died is released here.
            if let Some(cl) = cluster.as_ref() {
                c.forget_lost_mesh(&cl.conflicts());
                cl.set_owned(c.cluster_endpoints());
            }
            drop(c);
            if let Some(m) = &mesher {
                m.poke();
            }
            // Outside the controller's lock: a trim of a large heap takes a while.
            if let Some((before, after)) = heap.tick() {
                tracing::debug!(
                    before_kib = before / 1024,
                    after_kib = after / 1024,
                    "free heap pages given back"
                );
            }
        }
    }
    tracing::info!("shutting down");
    shared.shutdown.store(true, Ordering::Release);
    shared.wake_all();
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}
