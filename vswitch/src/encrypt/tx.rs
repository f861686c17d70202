//! The transmit side of an encrypted tunnel port: each queued frame is encapsulated
//! (VXLAN, with the checksum completed or the super-frame segmented as for a cleartext
//! tunnel), put behind the inner IPv4/UDP header, sealed for each remote it goes to and
//! sent from the listen socket, the sealed messages of a batch in `sendmmsg` calls.
//! Nothing leaves in the clear: a remote without a peer gets nothing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, RawFd};
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
/// Largest UDP payload over IPv4: what one `UDP_SEGMENT` send may carry.
const MAX_UDP_PAYLOAD: usize = 65507;
/// Most segments the kernel takes in one `UDP_SEGMENT` send.
const UDP_MAX_SEGMENTS: usize = 64;

/// One thread's room: the VXLAN datagrams of a frame, the inner packet being sealed,
/// the sealed messages waiting to go and who they go to.
#[derive(Default)]
struct Room {
    plain: Vec<u8>,
    sealed: Vec<u8>,
    msgs: Vec<Msg>,
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
                let first = room.msgs.len();
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
                if room.msgs.len() - first > 1 {
                    // The messages of one super-frame lie back to back, all of one size
                    // but the last: one UDP_SEGMENT send per 64 KiB, as for cleartext.
                    *errors += flush_gso(fd, room, first);
                } else if room.msgs.len() >= FLUSH_AT {
                    *errors += flush(fd, room);
                }
            }
        }
        *errors += flush(fd, room);
    });
    n
}

type Msg = (usize, usize, SocketAddrV4, Arc<RemoteRt>);

/// Sends what `room` gathered before message `first` one by one, then the messages from
/// `first` on (one super-frame's, to one remote) with `UDP_SEGMENT` sends; returns how
/// many messages were lost.
fn flush_gso(fd: RawFd, room: &mut Room, first: usize) -> u64 {
    let tail = room.msgs.split_off(first);
    let mut lost = send_list(fd, &room.msgs, &room.sealed);
    room.msgs.clear();
    if let Some((_, seg, to, r)) = tail.first().cloned() {
        let same = tail.iter().rev().skip(1).all(|m| m.1 == seg);
        let contiguous = tail.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0);
        if !same || !contiguous {
            // Not one run (a handshake message among them): as they are.
            lost += send_list(fd, &tail, &room.sealed);
        } else {
            let per = (MAX_UDP_PAYLOAD / seg.max(1)).clamp(1, UDP_MAX_SEGMENTS);
            for chunk in tail.chunks(per) {
                let last = &chunk[chunk.len() - 1];
                let Some(data) = room.sealed.get(chunk[0].0..last.0 + last.1) else {
                    lost += chunk.len() as u64;
                    continue;
                };
                match udp::send_gso(fd, data, to, seg) {
                    Ok(()) => r.count_tx(chunk.len() as u64, data.len() as u64),
                    // No UDP GSO on this route: one by one.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL)) => {
                        lost += send_list(fd, chunk, &room.sealed)
                    }
                    Err(_) => lost += chunk.len() as u64,
                }
            }
        }
    }
    room.sealed.clear();
    lost
}

/// Sends what `room` gathered; returns how many messages were lost.
fn flush(fd: RawFd, room: &mut Room) -> u64 {
    let lost = send_list(fd, &room.msgs, &room.sealed);
    room.msgs.clear();
    room.sealed.clear();
    lost
}

/// Sends each of `msgs` (offsets into `sealed`) with `sendmmsg`; returns how many were
/// lost.
fn send_list(fd: RawFd, msgs: &[Msg], sealed: &[u8]) -> u64 {
    if msgs.is_empty() {
        return 0;
    }
    let list: Vec<(&[u8], SocketAddrV4)> = msgs
        .iter()
        .map(|(s, l, to, _)| (sealed.get(*s..*s + *l).unwrap_or_default(), *to))
        .collect();
    let mut ok = vec![true; list.len()];
    let sent = udp::send_batch(fd, &list, |i| {
        if let Some(o) = ok.get_mut(i) {
            *o = false;
        }
    });
    for ((_, l, _, r), _) in msgs.iter().zip(&ok).take(sent.done).filter(|(_, ok)| **ok) {
        r.count_tx(1, *l as u64);
    }
    (msgs.len() - sent.done) as u64 + sent.errors
}
