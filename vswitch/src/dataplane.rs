//! The state workers share: the current immutable [`Snapshot`] of bridges and ports
//! (swapped atomically by the control thread), the buffer pool, the clock, and the way
//! to reach each worker (inbox + waker).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use crossbeam::channel::Sender;
use crossbeam::queue::ArrayQueue;
use ctl::PortKind;

use crate::counters::{BridgeCounters, PortCounters};
use crate::fdb::{Fdb, PortId};
use crate::pool::{Buf, Pool};
use crate::port::PortIo;
use crate::tunnel::{TunnelRt, VtepRt};

/// Frames a port's TX queue holds before new ones are dropped.
pub const TXQ_LEN: usize = 1024;

/// A bridge at run time. Lives across snapshots, so its FDB survives reconfiguration.
pub struct BridgeRt {
    pub id: u32,
    pub name: String,
    pub fdb: ArcSwap<Fdb>,
    pub aging: AtomicU32,
    pub counters: BridgeCounters,
    /// The addresses it answers ARP for itself (a cluster overlay's endpoints).
    pub suppress: arc_swap::ArcSwapOption<crate::pipeline::suppress::ArpTable>,
}

impl BridgeRt {
    /// A bridge with an empty FDB.
    pub fn new(id: u32, name: &str, aging: u32, mac_limit: u32, workers: usize) -> Self {
        BridgeRt {
            id,
            name: name.to_string(),
            fdb: ArcSwap::from_pointee(Fdb::new(mac_limit as usize)),
            aging: AtomicU32::new(aging),
            counters: BridgeCounters::new(workers),
            suppress: arc_swap::ArcSwapOption::empty(),
        }
    }
}

/// A port's transmit side. Whoever holds the lock drains the TX queue; workers only ever
/// `try_lock` it (once per batch, never waiting), and on failure leave the work to the
/// holder or the owner.
#[derive(Default)]
pub struct TxState {
    /// The port's I/O while attached; the owner takes it away (under the lock) on
    /// detach, and the interface closes when the last holder drops it.
    pub io: Option<Arc<PortIo>>,
    /// Frames taken from the queue that the kernel has not accepted yet, in order.
    pub pending: std::collections::VecDeque<Buf>,
    /// Where a tunnel lays out a segmented super-frame (empty on other ports).
    pub scratch: Vec<u8>,
}

/// A port at run time: what every worker may touch. Its I/O handle lives in the owning
/// worker alone; its transmit side is shared through [`TxState`].
pub struct PortRt {
    pub id: PortId,
    pub name: String,
    pub kind: PortKind,
    pub bridge: u32,
    /// The worker that reads this port and drains its TX queue.
    pub owner: usize,
    pub txq: ArrayQueue<Buf>,
    pub tx: Mutex<TxState>,
    pub counters: PortCounters,
    /// Attached to a live interface.
    pub up: AtomicBool,
    /// An attach was sent to the owner and not yet taken.
    pub attach_pending: AtomicBool,
    /// Interface index while up (afpacket).
    pub ifindex: AtomicU32,
    /// Why the port is down.
    pub reason: Mutex<String>,
    /// The MAC a re-created TAP gets.
    pub tap_mac: Option<crate::wire::MacAddr>,
    /// The VXLAN side of a tunnel port.
    pub tunnel: Option<Arc<TunnelRt>>,
    /// Its storm limit and bucket (`set-port PORT storm=`).
    pub storm: crate::portsec::StormBucket,
    /// The I/O last attached, where the kind alone does not say (afxdp, or its
    /// afpacket fall-back and why).
    pub backend: Mutex<Option<String>>,
}

impl PortRt {
    /// A port, down until its owner attaches an interface.
    pub fn new(
        id: PortId,
        name: &str,
        kind: PortKind,
        bridge: u32,
        owner: usize,
        workers: usize,
    ) -> Self {
        Self::with_txq_len(id, name, kind, bridge, owner, workers, TXQ_LEN)
    }

    /// A port whose TX queue holds `txq_len` frames: for labs (fuzzers, benches) whose
    /// sink never queues, where a full-size queue per port would be most of the cost of
    /// building one.
    pub fn with_txq_len(
        id: PortId,
        name: &str,
        kind: PortKind,
        bridge: u32,
        owner: usize,
        workers: usize,
        txq_len: usize,
    ) -> Self {
        PortRt {
            id,
            name: name.to_string(),
            kind,
            bridge,
            owner,
            txq: ArrayQueue::new(txq_len.max(1)),
            tx: Mutex::new(TxState {
                io: None,
                pending: std::collections::VecDeque::with_capacity(crate::sys::afpacket::TX_BATCH),
                scratch: Vec::new(),
            }),
            counters: PortCounters::new(workers),
            up: AtomicBool::new(false),
            attach_pending: AtomicBool::new(false),
            ifindex: AtomicU32::new(0),
            reason: Mutex::new("not attached yet".into()),
            tap_mac: None,
            tunnel: None,
            storm: Default::default(),
            backend: Mutex::new(None),
        }
    }

    /// Marks the port down with a reason.
    pub fn set_down(&self, why: impl Into<String>) {
        self.up.store(false, Ordering::Release);
        if let Ok(mut r) = self.reason.lock() {
            *r = why.into();
        }
    }

    /// Why the port is down, if it is.
    pub fn down_reason(&self) -> Option<String> {
        if self.up.load(Ordering::Acquire) {
            None
        } else {
            Some(self.reason.lock().map(|r| r.clone()).unwrap_or_default())
        }
    }
}

/// The bridge id of the uplink port, which belongs to no bridge: what it receives goes
/// to the gateway.
pub const UPLINK_BRIDGE: u32 = u32::MAX - 1;

/// The gateway at run time: its state survives reconfiguration; one worker routes.
pub struct GatewayRt {
    /// The worker that routes (and reads the uplink).
    pub owner: usize,
    pub state: Mutex<crate::gateway::Gateway>,
    /// The gateway's counters as the routing worker last saw them (once a second), so
    /// that a `/metrics` scrape never waits for the lock that worker routes under.
    pub published: arc_swap::ArcSwapOption<ctl::GatewayStats>,
}

/// The gateway in a snapshot: its runtime, the uplink port and the gateway ports.
pub struct GatewayView {
    pub rt: Arc<GatewayRt>,
    pub uplink: Option<Arc<PortRt>>,
    /// One per bridge with a network.
    pub ports: Vec<Arc<PortRt>>,
}

/// A bridge in a snapshot: its runtime and the ports it floods to.
pub struct BridgeView {
    pub rt: Arc<BridgeRt>,
    pub ports: Vec<Arc<PortRt>>,
    /// The gateway's identity on a bridge with a network: no other port may use it.
    pub guard: Option<GatewayGuard>,
    /// IPv4 and ARP headers are checked before forwarding (`set-bridge BR ip-checks`).
    pub ip_checks: bool,
    /// The bridge's service backends, whose replies go through the gateway
    /// ([`crate::pipeline::services`]); none when it has no service.
    pub services: Option<Arc<crate::pipeline::services::Replies>>,
}

/// The gateway's MAC and address on its bridge. Only the gateway port may send from the
/// MAC (or another port would take it over in the FDB) or speak ARP for the address (or
/// a container would take over its neighbours' entry for the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayGuard {
    pub mac: crate::wire::MacAddr,
    pub ip: [u8; 4],
}

/// What the guard makes of a frame from a port other than the gateway's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    /// Nothing of the gateway's: forward as usual.
    Clear,
    /// Sent from the gateway's MAC: drop.
    SpoofedMac,
    /// ARP claiming the gateway's address: for the gateway alone.
    SpoofedArp,
}

impl GatewayGuard {
    /// Checks a frame from source `src` whose EtherType (behind any outer tag) is
    /// `ethertype` and whose payload is `payload`.
    #[inline]
    pub fn check(&self, src: crate::wire::MacAddr, ethertype: u16, payload: &[u8]) -> Guarded {
        if src == self.mac {
            return Guarded::SpoofedMac;
        }
        // Where Ethernet/IPv4 ARP puts the sender's protocol address, read without the
        // full `ArpPacket` check on purpose: a cut or odd-typed packet that still names
        // the gateway's address there is refused too.
        if ethertype == wire::ethertype::ARP
            && payload.get(wire::arp::field::SPA) == Some(&self.ip[..])
        {
            return Guarded::SpoofedArp;
        }
        Guarded::Clear
    }
}

/// An immutable view of the configuration the dataplane forwards by.
#[derive(Default)]
pub struct Snapshot {
    /// Indexed by port id.
    pub ports: Vec<Option<Arc<PortRt>>>,
    /// VLAN tables, indexed by port id; `None` for VLAN-unaware ports.
    pub vlans: Vec<Option<crate::vlan::VlanTable>>,
    /// Indexed by bridge id.
    pub bridges: Vec<Option<BridgeView>>,
    /// The gateway, once a network or the uplink is configured.
    pub gateway: Option<GatewayView>,
    /// Address bindings, indexed by port id; `None` for ports that may send from any.
    pub bindings: Vec<Option<crate::portsec::Binding>>,
}

impl Snapshot {
    /// The port with id `id`.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&Arc<PortRt>> {
        self.ports.get(id as usize).and_then(|p| p.as_ref())
    }
    /// The VLAN table of port `id` (`None`: VLAN-unaware).
    #[inline]
    pub fn vlan(&self, id: PortId) -> Option<&crate::vlan::VlanTable> {
        self.vlans.get(id as usize).and_then(|v| v.as_ref())
    }
    /// The address binding of port `id` (`None`: it may send from any).
    #[inline]
    pub fn binding(&self, id: PortId) -> Option<&crate::portsec::Binding> {
        self.bindings.get(id as usize).and_then(|b| b.as_ref())
    }
    /// Binds port `id` to `b`.
    pub fn put_binding(&mut self, id: PortId, b: Option<crate::portsec::Binding>) {
        let i = id as usize;
        if self.bindings.len() <= i {
            self.bindings.resize_with(i + 1, || None);
        }
        self.bindings[i] = b;
    }
    /// The bridge with id `id`.
    #[inline]
    pub fn bridge(&self, id: u32) -> Option<&BridgeView> {
        self.bridges.get(id as usize).and_then(|b| b.as_ref())
    }
    /// Places port `p`, with VLAN table `vlans`, at its id.
    pub fn put_port(&mut self, p: Arc<PortRt>, vlans: Option<crate::vlan::VlanTable>) {
        let i = p.id as usize;
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, || None);
            self.vlans.resize_with(i + 1, || None);
        }
        self.ports[i] = Some(p);
        self.vlans[i] = vlans;
    }
    /// Places bridge `b` at its id.
    pub fn put_bridge(&mut self, b: BridgeView) {
        let i = b.rt.id as usize;
        if self.bridges.len() <= i {
            self.bridges.resize_with(i + 1, || None);
        }
        self.bridges[i] = Some(b);
    }
}

/// What the control thread tells a worker.
pub enum WorkerMsg {
    /// Start serving this port with this I/O handle.
    Attach(Arc<PortRt>, PortIo),
    /// Stop serving the port (removed, or its interface vanished).
    /// The sender, if any, is told once the port's I/O handle is closed.
    Detach(PortId, String, Option<crossbeam::channel::Sender<()>>),
    /// Start reading this VTEP's socket.
    AttachVtep(Arc<VtepRt>),
    /// Stop reading VTEP `id`; the sender, if any, is told once it is no longer polled.
    DetachVtep(u32, Option<crossbeam::channel::Sender<()>>),
    /// Answer once the turn in progress is over: after that the worker forwards by
    /// whatever the control thread published before sending this.
    Barrier(crossbeam::channel::Sender<()>),
}

/// Seconds since the daemon started, as the FDB counts time.
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Clock(Instant::now())
    }
    /// Whole seconds since start (offset by one so that 0 never means "now").
    #[inline]
    pub fn now(&self) -> u32 {
        (self.0.elapsed().as_secs() as u32).saturating_add(1)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything shared between the control thread and the workers.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub pool: Pool,
    pub clock: Clock,
    pub workers: usize,
    /// How long a worker keeps polling without sleeping after it last received.
    pub busy_poll: std::time::Duration,
    /// RX ring layout of afpacket ports.
    pub rx_ring: crate::sys::afpacket::RingKind,
    pub inboxes: Vec<Sender<WorkerMsg>>,
    pub wakers: Vec<Arc<mio::Waker>>,
    pub shutdown: AtomicBool,
    /// Nanoseconds each worker spent handling wake-ups (not waiting in epoll), written
    /// by that worker alone (`counters::bump`).
    pub busy_ns: Box<[crossbeam::utils::CachePadded<std::sync::atomic::AtomicU64>]>,
    /// The daemon's WireGuard key (encrypted tunnels).
    pub wg_key: wg::PrivateKey,
    /// VTEPs send TCP super-frames whole through a TAP of this name (`%d`: the first free
    /// number); none with `--no-vxlan-gso-tap`.
    pub gso_tap: Option<String>,
}

impl Shared {
    /// A `Shared` without workers, for the controller's tests and the control fuzzer:
    /// messages to workers go nowhere, and whoever waits for an answer is told at once
    /// (the sender is dropped).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn without_workers() -> Arc<Shared> {
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            pool: Pool::new(64, 1),
            clock: Default::default(),
            workers: 1,
            busy_poll: std::time::Duration::ZERO,
            rx_ring: Default::default(),
            inboxes: Vec::new(),
            wakers: Vec::new(),
            shutdown: AtomicBool::new(false),
            busy_ns: Shared::busy_counters(1),
            // One fixed key, so that two controllers of a test show the same thing.
            wg_key: wg::PrivateKey::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEA=")
                .unwrap_or_else(|_| wg::PrivateKey::generate()),
            gso_tap: None,
        })
    }

    /// One busy-time counter per worker.
    pub fn busy_counters(
        workers: usize,
    ) -> Box<[crossbeam::utils::CachePadded<std::sync::atomic::AtomicU64>]> {
        (0..workers).map(|_| Default::default()).collect()
    }

    /// Sends `msg` to worker `w` and wakes it.
    pub fn tell(&self, w: usize, msg: WorkerMsg) {
        if let Some(tx) = self.inboxes.get(w) {
            let _ = tx.send(msg);
        }
        self.wake(w);
    }
    /// Wakes worker `w`.
    pub fn wake(&self, w: usize) {
        if let Some(wk) = self.wakers.get(w) {
            let _ = wk.wake();
        }
    }
    /// Wakes every worker (after a snapshot swap or on shutdown).
    pub fn wake_all(&self) {
        for w in 0..self.wakers.len() {
            self.wake(w);
        }
    }
}
