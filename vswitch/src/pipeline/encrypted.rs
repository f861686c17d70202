//! The encrypted tunnel's side of the frame path: a message read by an encrypted
//! tunnel's listen socket is classified (a WireGuard type of the right length, for a
//! known peer), opened by that remote's WireGuard peer, its inner IPv4/UDP header
//! checked, and the VXLAN datagram it carried goes on through the tunnel entry
//! ([`Vtep::receive`]) exactly as one read in the clear would, from the remote the
//! keys proved it came from. A cleartext VXLAN datagram, or anything that is not
//! WireGuard, is counted by reason and dropped; handshake answers the peer asks for
//! go back through `reply` (the worker owns the socket).

use std::net::{IpAddr, SocketAddrV4};
use std::sync::atomic::Ordering;

use super::tunnel::{Datagram, Vtep};
use super::Sink;
use crate::encrypt::WgVtep;
use crate::pool::{Buf, LARGE};
use crate::tunnel::DGRAM_OFFSET;

impl Vtep<'_> {
    /// Takes message `d`, read into `slot` at [`DGRAM_OFFSET`] by listener `w`, and
    /// forwards the inner frame it carries, if any.
    pub fn receive_sealed(
        &self,
        w: &WgVtep,
        d: &Datagram,
        slot: &mut Option<Buf>,
        sink: &mut impl Sink,
        reply: &mut impl FnMut(&[u8], SocketAddrV4),
    ) {
        match self.open_sealed(w, d, slot, reply) {
            Ok(inner) => self.receive(&inner, slot, sink),
            Err(why) => {
                // A message that carries a frame is counted by the tunnel entry it goes
                // on to; every other one here.
                let c = self.counters;
                c.rx_datagrams.fetch_add(1, Ordering::Relaxed);
                c.rx_bytes.fetch_add(d.len as u64, Ordering::Relaxed);
                if let Some(why) = why {
                    w.drop(why);
                }
            }
        }
    }

    /// Opens message `d`; on success `slot` holds the VXLAN datagram it carried, at
    /// [`DGRAM_OFFSET`]. `Err(None)`: a protocol message, taken in.
    fn open_sealed(
        &self,
        w: &WgVtep,
        d: &Datagram,
        slot: &mut Option<Buf>,
        reply: &mut impl FnMut(&[u8], SocketAddrV4),
    ) -> Result<Datagram, Option<wg::DropReason>> {
        if d.truncated {
            return Err(Some(wg::DropReason::Truncated));
        }
        let buf = slot.as_ref().ok_or(None)?;
        let msg = buf
            .bytes()
            .get(DGRAM_OFFSET..DGRAM_OFFSET + d.len)
            .unwrap_or_default();
        let kind = wg::message::classify(msg)?;
        let remote = w.find(kind, msg).ok_or(wg::DropReason::UnknownPeer)?;
        let wr = remote.wg.as_ref().ok_or(wg::DropReason::UnknownPeer)?;
        // No buffer: the message is lost, as it would be in a full socket queue. What it
        // decrypts to is shorter than the message: a small buffer for a full-size packet.
        let mut out = self
            .pool
            .get(msg.len().max(wg::message::INIT_LEN))
            .ok_or(wg::DropReason::Truncated)?;
        out.set_len(out.capacity());
        let mut peer = wr.peer();
        let inner = match peer.open(d.src, msg, out.bytes_mut()) {
            wg::Outcome::Deliver(p) => {
                let local = w.inner_local.unwrap_or_else(|| inner_dst(p));
                wg::inner::unwrap(p, local, wr.inner_remote).map_err(Some)
            }
            wg::Outcome::Send(m) => {
                if wg::is_cookie_reply(m) {
                    w.drop(wg::DropReason::UnderLoad);
                }
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
        };
        drop(peer);
        let range = match inner {
            Ok(r) => r,
            Err(e) => {
                self.pool.put(out);
                return Err(e);
            }
        };
        let len = range.len();
        out.bytes_mut().copy_within(range, DGRAM_OFFSET);
        out.set_len(DGRAM_OFFSET + len);
        if let Some(old) = slot.replace(out) {
            self.pool.put(old);
        }
        Ok(Datagram {
            src: IpAddr::V4(*wr.endpoint.ip()),
            len,
            gro: 0,
            truncated: false,
        })
    }
}

/// The inner destination of decrypted packet `p`: what a tunnel with no inner-local
/// address takes as its own.
fn inner_dst(p: &[u8]) -> std::net::Ipv4Addr {
    wire::ipv4::Ipv4Packet::new_truncated(p)
        .map(|ip| ip.dst())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
}
