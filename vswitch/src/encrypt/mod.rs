//! Encrypted tunnels at run time (VXLAN inside WireGuard): the listener's state (its
//! key, handshake rate limiter, peers, drop counters), each remote's WireGuard peer,
//! and the timer thread. The protocol is the `wg` crate's (boringtun underneath);
//! this module and [`tx`] do the I/O around it, and the pipeline's `encrypted` stage
//! opens what arrives.
//!
//! Where the per-peer state lives: each remote of an encrypted tunnel owns one
//! `wg::Peer` behind a mutex. Three parties use it: the worker sending on the tunnel
//! port (sealing), the worker reading the listen socket (opening) and the timer thread.
//! Each holds the lock for one peer operation on one packet, or for the segments of
//! one super-frame, and never across a system call that can wait (sends are
//! non-blocking and happen after the lock is let go on the transmit side), so a
//! worker waits at most for one other AEAD pass: boringtun's session state (the
//! nonce counter, the replay window, the timers) needs `&mut`, and one short lock per
//! peer is what boringtun's own device does too.

pub mod conf;
pub mod keyfile;
pub mod tx;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::ArcSwap;
use metrics_decl::Counter as _;

pub use conf::{EncryptConf, PeerConf};

use crate::tunnel::{RemoteRt, VtepRt};

/// The WireGuard side of an encrypted tunnel's VTEP (its listen socket).
pub struct WgVtep {
    pub identity: wg::Identity,
    pub limiter: wg::Limiter,
    /// Source of inner packets sent.
    pub inner_src: Ipv4Addr,
    /// The only inner destination accepted; none: any.
    pub inner_local: Option<Ipv4Addr>,
    /// The tunnel's remotes (the peers), replaced whole when they change.
    pub remotes: ArcSwap<Vec<Arc<RemoteRt>>>,
    drops: [AtomicU64; wg::DropReason::COUNT],
    /// Handshake messages and keepalives sent by the timers or in answer.
    pub control_sent: AtomicU64,
}

impl WgVtep {
    /// The listener of `key`, sending inner packets from `inner_src`.
    pub fn new(key: &wg::PrivateKey, inner_src: Ipv4Addr, inner_local: Option<Ipv4Addr>) -> Self {
        WgVtep {
            identity: wg::Identity::new(key),
            limiter: wg::Limiter::new(&key.public()),
            inner_src,
            inner_local,
            remotes: ArcSwap::from_pointee(Vec::new()),
            drops: Default::default(),
            control_sent: AtomicU64::new(0),
        }
    }

    /// Counts a message dropped for `why`.
    pub fn drop(&self, why: wg::DropReason) {
        self.drops[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Non-zero drop counters by reason.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        wg::DropReason::ALL
            .into_iter()
            .zip(&self.drops)
            .map(|(r, c)| (r.name().to_string(), c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The remote a message classified as `kind` is for.
    pub fn find(&self, kind: wg::Kind, msg: &[u8]) -> Option<Arc<RemoteRt>> {
        let remotes = self.remotes.load();
        match kind {
            wg::Kind::ForPeer(n) => remotes.iter().find(|r| u32::from(r.slot) == n).cloned(),
            wg::Kind::Initiation => {
                let k = self.identity.initiator(msg)?;
                remotes
                    .iter()
                    .find(|r| r.wg.as_ref().is_some_and(|w| w.public == k))
                    .cloned()
            }
        }
    }
}

/// A remote's WireGuard peer.
pub struct WgRemote {
    pub public: wg::PublicKey,
    /// Destination of inner packets to it; the only source accepted from it, if set.
    pub inner_remote: Option<Ipv4Addr>,
    /// Its endpoint: the remote's address, on the tunnel's listen port.
    pub endpoint: SocketAddrV4,
    peer: Mutex<wg::Peer>,
}

impl WgRemote {
    /// Remote `slot` at `endpoint`, whose key is `public`, of the listener of `key`.
    pub fn new(
        key: &wg::PrivateKey,
        limiter: &wg::Limiter,
        slot: u16,
        endpoint: SocketAddrV4,
        p: &PeerConf,
    ) -> Option<WgRemote> {
        let public = wg::PublicKey::parse(&p.public_key).ok()?;
        Some(WgRemote {
            public,
            inner_remote: p.inner_remote,
            endpoint,
            peer: Mutex::new(wg::Peer::new(key, public, u32::from(slot), None, limiter)),
        })
    }

    /// The peer state, for one operation.
    pub fn peer(&self) -> MutexGuard<'_, wg::Peer> {
        self.peer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where inner packets to it go.
    pub fn inner_dst(&self) -> Ipv4Addr {
        self.inner_remote.unwrap_or(*self.endpoint.ip())
    }
}

/// Runs the protocol's timers of VTEP `v` every [`wg::TICK`] until it is gone:
/// handshake retries, rekeys, keepalives, and the rate limiter's count each second.
/// It sleeps between ticks, so an idle tunnel costs four wake-ups a second.
pub fn spawn_timers(v: Weak<VtepRt>) {
    let spawned = std::thread::Builder::new()
        .name("vswitch-wg-timers".into())
        .spawn(move || {
            let mut out = vec![0u8; 2048];
            let mut ticks = 0u32;
            loop {
                std::thread::sleep(wg::TICK);
                let Some(v) = v.upgrade() else { return };
                let Some(w) = &v.wg else { return };
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(4) {
                    w.limiter.reset();
                }
                for r in w.remotes.load().iter() {
                    let Some(wr) = &r.wg else { continue };
                    let mut p = wr.peer();
                    if let wg::Outcome::Send(m) = p.tick(&mut out) {
                        if v.rx.send_to(m, &wr.endpoint.into()).is_ok() {
                            w.control_sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the WireGuard timer thread: {e}");
    }
}
