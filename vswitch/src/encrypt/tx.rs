//! The transmit side of an encrypted tunnel port: each queued frame is encapsulated
//! (VXLAN, with the checksum completed or the super-frame segmented as for a cleartext
//! tunnel), put behind the inner IPv4/UDP header, sealed for each remote it goes to and
//! sent from the listen socket, the sealed messages of a batch in `sendmmsg` calls.
//! Nothing leaves in the clear: a remote without a peer gets nothing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use vxlan::offload::{encap_segments, Gso, Offload};

use super::WgVtep;
use crate::pool::Buf;
use crate::sys::afpacket::TX_BATCH;
use crate::sys::udp;
use crate::tunnel::{targets, RemoteRt, TunnelRt};
use crate::wire::vnet;

/// Sealed messages gathered before they are sent: bounds the arena a batch of
/// super-frames fills.
const FLUSH_AT: usize = 128;

/// One thread's room: the VXLAN datagrams of a frame, the inner packet being sealed,
/// the sealed messages waiting to go and who they go to.
#[derive(Default)]
struct Room {
    plain: Vec<u8>,
    sealed: Vec<u8>,
    msgs: Vec<(usize, usize, SocketAddrV4, Arc<RemoteRt>)>,
}

thread_local! {
    static ROOM: RefCell<Room> = RefCell::new(Room::default());
}

/// Sends the first `n` frames of `pending` through encrypted tunnel `t` (whose VTEP's
/// WireGuard side is `w`); returns how many were taken, which is all of them: a sealed
/// message the kernel pushes back is lost (counted in `errors`), as a datagram on any
/// path may be, rather than sealed again under a new counter.
pub fn transmit(
    t: &TunnelRt,
    w: &WgVtep,
    pending: &mut VecDeque<Buf>,
    n: usize,
    scratch: &mut Vec<u8>,
    errors: &mut u64,
    oversize: &mut u64,
) -> usize {
    let n = n.min(pending.len()).min(TX_BATCH);
    let remotes = t.remotes.load();
    let fd = t.vtep.rx.as_raw_fd();
    ROOM.with(|room| {
        let mut room = room.borrow_mut();
        let room = &mut *room;
        for b in pending.iter().take(n) {
            let slot = b.remote();
            let Some(max_frame) = targets(&remotes, slot).map(|r| r.max_frame()).min() else {
                *errors += 1;
                continue;
            };
            let bytes = b.bytes();
            if bytes.len() < vnet::LEN + crate::wire::ethernet::HEADER_LEN {
                *errors += 1;
                continue;
            }
            let (vh, frame) = bytes.split_at(vnet::LEN);
            let mut raw = [0u8; vnet::LEN];
            raw.copy_from_slice(vh);
            let Ok(off) = Offload::from_virtio(&raw) else {
                *errors += 1;
                continue;
            };
            if off.gso == Gso::None && frame.len() > max_frame {
                *oversize += 1;
                continue;
            }
            let Ok(segs) = encap_segments(frame, &off, max_frame, t.vni, scratch) else {
                *errors += 1;
                continue;
            };
            let stride = segs.stride.max(1);
            for r in targets(&remotes, slot) {
                let Some(wr) = &r.wg else {
                    *errors += 1;
                    continue;
                };
                let dst = wr.inner_dst();
                let mut peer = wr.peer();
                for seg in scratch[..segs.total.min(scratch.len())].chunks(stride) {
                    let sport = vxlan::flow::source_port(
                        vxlan::flow::flow_hash(
                            seg.get(vxlan::header::HEADER_LEN..).unwrap_or_default(),
                        ),
                        32768,
                        60999,
                    );
                    room.plain.clear();
                    room.plain.resize(wg::inner::HEADER_LEN, 0);
                    room.plain.extend_from_slice(seg);
                    if wg::inner::wrap(&mut room.plain, w.inner_src, dst, sport, seg.len())
                        .is_none()
                    {
                        *errors += 1;
                        continue;
                    }
                    let start = room.sealed.len();
                    let room_for = wg::sealed_len(room.plain.len()).max(wg::message::INIT_LEN);
                    room.sealed.resize(start + room_for, 0);
                    match peer.seal(&room.plain, &mut room.sealed[start..]) {
                        wg::Outcome::Send(m) => {
                            let len = m.len();
                            room.sealed.truncate(start + len);
                            room.msgs.push((start, len, wr.endpoint, r.clone()));
                        }
                        wg::Outcome::Drop(why) => {
                            room.sealed.truncate(start);
                            w.drop(why);
                            *errors += 1;
                        }
                        // Queued until the handshake completes (it is under way).
                        _ => room.sealed.truncate(start),
                    }
                }
                drop(peer);
                if room.msgs.len() >= FLUSH_AT {
                    *errors += flush(fd, room);
                }
            }
        }
        *errors += flush(fd, room);
    });
    n
}

/// Sends what `room` gathered; returns how many messages were lost.
fn flush(fd: std::os::fd::RawFd, room: &mut Room) -> u64 {
    if room.msgs.is_empty() {
        return 0;
    }
    let list: Vec<(&[u8], SocketAddrV4)> = room
        .msgs
        .iter()
        .map(|(s, l, to, _)| (&room.sealed[*s..*s + *l], *to))
        .collect();
    let mut ok = vec![true; list.len()];
    let sent = udp::send_batch(fd, &list, |i| {
        if let Some(o) = ok.get_mut(i) {
            *o = false;
        }
    });
    for ((_, l, _, r), _) in room
        .msgs
        .iter()
        .zip(&ok)
        .take(sent.done)
        .filter(|(_, ok)| **ok)
    {
        r.count_tx(1, *l as u64);
    }
    let lost = (room.msgs.len() - sent.done) as u64 + sent.errors;
    room.msgs.clear();
    room.sealed.clear();
    lost
}
