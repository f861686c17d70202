//! The encrypted tunnel's side of the frame path: a message read by an encrypted
//! tunnel's listen socket is classified (a WireGuard type of the right length, for a
//! known peer), opened by that remote's WireGuard peer, its inner IPv4/UDP header
//! checked, and the VXLAN datagram it carried goes on through the tunnel entry
//! ([`Vtep::receive`]) exactly as one read in the clear would, from the remote the
//! keys proved it came from. A cleartext VXLAN datagram, or anything that is not
//! WireGuard, is counted by reason and dropped; handshake answers the peer asks for
//! go back through `reply` (the worker owns the socket), and so do cookie replies,
//! to whoever sent a handshake the listener's rate limiter refused under load
//! (counted as `wg_under_load`). The listen socket reads with
//! `UDP_GRO`, so the messages of one `UDP_SEGMENT` send arrive as one run; their
//! datagrams are laid back to back and the tunnel entry merges TCP segments back into
//! a super-frame, as for cleartext VXLAN.

use std::net::{IpAddr, SocketAddrV4};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::tunnel::{Datagram, Vtep};
use super::Sink;
use crate::encrypt::WgVtep;
use crate::pool::{Buf, LARGE};
use crate::tunnel::{RemoteRt, DGRAM_OFFSET};

/// Decrypted VXLAN datagrams of one remote laid back to back at one stride in a
/// buffer, as a `UDP_GRO` read of cleartext datagrams lies: the tunnel entry then
/// merges a run of TCP segments into one super-frame.
struct Run {
    buf: Buf,
    remote: Arc<RemoteRt>,
    stride: usize,
    /// Bytes laid out (after `DGRAM_OFFSET`).
    len: usize,
    /// The last datagram was shorter than the stride: nothing may follow it.
    closed: bool,
}

impl Vtep<'_> {
    /// Takes message `d` (or, with `UDP_GRO`, a run of messages of `d.gro` bytes each),
    /// read into `slot` at [`DGRAM_OFFSET`] by listener `w`, and forwards the inner
    /// frames they carry.
    pub fn receive_sealed(
        &self,
        w: &WgVtep,
        d: &Datagram,
        slot: &mut Option<Buf>,
        sink: &mut impl Sink,
        reply: &mut impl FnMut(&[u8], SocketAddrV4),
    ) {
        if d.truncated {
            return self.refused(w, d.len, Some(wg::DropReason::Truncated));
        }
        let Some(buf) = slot.take() else { return };
        let gro = if d.gro > 0 { d.gro } else { d.len };
        let all = buf
            .bytes()
            .get(DGRAM_OFFSET..DGRAM_OFFSET + d.len)
            .unwrap_or_default();
        let mut scratch: Option<Buf> = None;
        let mut run: Option<Run> = None;
        for msg in all.chunks(gro.max(1)) {
            if scratch.is_none() {
                scratch = self.pool.get(gro.max(wg::message::INIT_LEN));
            }
            let Some(out) = scratch.as_mut() else {
                // No buffer: lost, as in a full socket queue.
                self.refused(w, msg.len(), Some(wg::DropReason::Truncated));
                continue;
            };
            out.set_len(out.capacity());
            let (range, remote) = match self.open_one(w, d, msg, out.bytes_mut(), reply) {
                Ok(x) => x,
                Err(why) => {
                    self.refused(w, msg.len(), why);
                    continue;
                }
            };
            let inner = &out.bytes()[range];
            let fits = run.as_ref().is_some_and(|r| {
                Arc::ptr_eq(&r.remote, &remote)
                    && !r.closed
                    && inner.len() <= r.stride
                    && DGRAM_OFFSET + r.len + r.stride <= r.buf.capacity()
            });
            if !fits {
                if let Some(r) = run.take() {
                    self.deliver_run(r, sink);
                }
                let Some(b) = self.pool.get(LARGE) else {
                    self.refused(w, msg.len(), Some(wg::DropReason::Truncated));
                    continue;
                };
                run = Some(Run {
                    buf: b,
                    remote,
                    stride: inner.len(),
                    len: 0,
                    closed: false,
                });
            }
            if let Some(r) = run.as_mut() {
                let at = DGRAM_OFFSET + r.len;
                r.buf.set_len(r.buf.capacity());
                r.buf.bytes_mut()[at..at + inner.len()].copy_from_slice(inner);
                r.len += inner.len();
                r.closed = inner.len() < r.stride;
            }
        }
        if let Some(r) = run.take() {
            self.deliver_run(r, sink);
        }
        for b in scratch.into_iter().chain(Some(buf)) {
            self.pool.put(b);
        }
    }

    /// Hands a run of decrypted datagrams to the tunnel entry.
    fn deliver_run(&self, mut r: Run, sink: &mut impl Sink) {
        r.buf.set_len(DGRAM_OFFSET + r.len);
        let d = Datagram {
            src: IpAddr::V4(
                r.remote
                    .wg
                    .as_ref()
                    .map_or(r.remote.addr, |w| *w.endpoint.ip()),
            ),
            sport: 0,
            len: r.len,
            gro: if r.len > r.stride { r.stride } else { 0 },
            truncated: false,
        };
        let mut slot = Some(r.buf);
        self.receive(&d, &mut slot, sink);
        if let Some(b) = slot {
            self.pool.put(b);
        }
    }

    /// Counts a message of `len` bytes that carried no frame, and why, if it was
    /// dropped (a message that carries a frame is counted by the tunnel entry).
    fn refused(&self, w: &WgVtep, len: usize, why: Option<wg::DropReason>) {
        let c = self.counters;
        c.rx_datagrams.fetch_add(1, Ordering::Relaxed);
        c.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
        if let Some(why) = why {
            w.drop(why);
        }
    }

    /// Opens message `msg` of datagram `d` into `out`; returns where in `out` the VXLAN
    /// datagram it carried lies, and its remote. `Err(None)`: a protocol message,
    /// taken in (answers went through `reply`).
    fn open_one(
        &self,
        w: &WgVtep,
        d: &Datagram,
        msg: &[u8],
        out: &mut [u8],
        reply: &mut impl FnMut(&[u8], SocketAddrV4),
    ) -> Result<(Range<usize>, Arc<RemoteRt>), Option<wg::DropReason>> {
        let src = d.src;
        let kind = wg::message::classify(msg)?;
        // The rate limiter's door, before the initiator's key is looked for (a
        // Diffie-Hellman): under load, a handshake without a valid mac2 costs two
        // hashes and a cookie reply, sent where it came from (the cookie is bound to
        // that address, and that is who must prove it owns it).
        match w.limiter.screen(src, msg, out) {
            wg::Screen::Pass => {}
            wg::Screen::Cookie(c) => {
                if let IpAddr::V4(a) = src {
                    reply(c, SocketAddrV4::new(a, d.sport));
                }
                return Err(Some(wg::DropReason::UnderLoad));
            }
            wg::Screen::Drop(why) => return Err(Some(why)),
        }
        let remote = w.find(kind, msg).ok_or(wg::DropReason::UnknownPeer)?;
        let wr = remote.wg.as_ref().ok_or(wg::DropReason::UnknownPeer)?;
        let mut peer = wr.peer();
        match peer.open(src, msg, out) {
            wg::Outcome::Deliver(p) => {
                let local = w.inner_local.unwrap_or_else(|| inner_dst(p));
                let r = wg::inner::unwrap(p, local, wr.inner_remote)?;
                drop(peer);
                Ok((r, remote))
            }
            wg::Outcome::Send(m) => {
                reply(m, wr.endpoint);
                w.control_sent.fetch_add(1, Ordering::Relaxed);
                // Packets that waited for this handshake go now.
                if let Some(mut big) = self.pool.get(LARGE) {
                    big.set_len(big.capacity());
                    while let wg::Outcome::Send(m) = peer.flush(big.bytes_mut()) {
                        reply(m, wr.endpoint);
                        remote.count_tx(1, m.len() as u64);
                    }
                    self.pool.put(big);
                }
                Err(None)
            }
            wg::Outcome::Drop(why) => Err(Some(why)),
            wg::Outcome::Nothing => Err(None),
        }
    }
}

/// The inner destination of decrypted packet `p`: what a tunnel with no inner-local
/// address takes as its own.
fn inner_dst(p: &[u8]) -> std::net::Ipv4Addr {
    wire::ipv4::Ipv4Packet::new_truncated(p)
        .map(|ip| ip.dst())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
}
