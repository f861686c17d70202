//! The forwarding decision for one frame: validate, learn the source, look up the
//! destination. No I/O and no allocation, so it is unit-tested and benched alone.

use crate::counters::{BridgeCounters, BridgeEvent, Drop};
use crate::fdb::{port_of, Dest, Fdb, Learn};
use crate::wire::EthernetFrame;

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Drop and count at the ingress port.
    Drop(Drop),
    /// The destination sits on the ingress port: nothing to send (normal bridge filtering).
    Filtered,
    /// Send to this one port (and, on a tunnel, this one remote).
    Forward(Dest),
    /// Send to every other port of the bridge.
    Flood,
}

/// Inputs that stay the same for a batch of frames.
pub struct Ctx<'a> {
    pub fdb: &'a Fdb,
    pub counters: &'a BridgeCounters,
    pub worker: usize,
    pub now: u32,
    pub aging: u32,
}

/// Decides where `frame`, received at `in_port` (the port, and on a tunnel the remote it
/// came from), goes. `vlan` is the frame's VLAN as the port classified it (0 for
/// untagged on a VLAN-unaware port). A destination behind the ingress port, on any of
/// its remotes, is filtered: a tunnel never relays between its own remotes.
#[inline]
pub fn decide(ctx: &Ctx<'_>, frame: &[u8], in_port: Dest, vlan: u16) -> Verdict {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Verdict::Drop(Drop::Runt);
    };
    let src = eth.src();
    if src.is_multicast() || src.is_zero() {
        return Verdict::Drop(Drop::InvalidSrc);
    }
    match ctx.fdb.learn(vlan, src, in_port, ctx.now) {
        Learn::Known | Learn::Refreshed => {}
        Learn::Added => ctx.counters.add(ctx.worker, BridgeEvent::Learned, 1),
        Learn::Moved => ctx.counters.add(ctx.worker, BridgeEvent::Moved, 1),
        Learn::LimitReached => ctx.counters.add(ctx.worker, BridgeEvent::MacLimit, 1),
        Learn::TableFull => ctx.counters.add(ctx.worker, BridgeEvent::TableFull, 1),
    }
    let dst = eth.dst();
    if dst.is_multicast() {
        if dst.is_link_local() {
            return Verdict::Drop(Drop::LinkLocal);
        }
        return Verdict::Flood;
    }
    match ctx.fdb.lookup(vlan, dst, ctx.now, ctx.aging) {
        Some(p) if port_of(p) == port_of(in_port) => Verdict::Filtered,
        Some(p) => Verdict::Forward(p),
        None => Verdict::Flood,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(60, 0);
        f
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    #[test]
    fn unknown_floods_then_known_forwards() {
        let fdb = Fdb::new(100);
        let c = BridgeCounters::new(1);
        let ctx = Ctx {
            fdb: &fdb,
            counters: &c,
            worker: 0,
            now: 1,
            aging: 300,
        };
        assert_eq!(decide(&ctx, &frame(B, A), 1, 0), Verdict::Flood);
        assert_eq!(decide(&ctx, &frame(A, B), 2, 0), Verdict::Forward(1));
        assert_eq!(decide(&ctx, &frame(B, A), 1, 0), Verdict::Forward(2));
        // B moves to port 3; A's frames follow it.
        assert_eq!(decide(&ctx, &frame(A, B), 3, 0), Verdict::Forward(1));
        assert_eq!(decide(&ctx, &frame(B, A), 1, 0), Verdict::Forward(3));
        // Never back out of the ingress port.
        assert_eq!(decide(&ctx, &frame(B, A), 3, 0), Verdict::Filtered);
        let t = c.totals();
        assert_eq!(t["learned"], 2);
        assert!(t["moved"] >= 2);
    }

    #[test]
    fn broadcast_multicast_and_bad_frames() {
        let fdb = Fdb::new(100);
        let c = BridgeCounters::new(1);
        let ctx = Ctx {
            fdb: &fdb,
            counters: &c,
            worker: 0,
            now: 1,
            aging: 300,
        };
        assert_eq!(decide(&ctx, &frame([0xff; 6], A), 1, 0), Verdict::Flood);
        assert_eq!(
            decide(&ctx, &frame([0x01, 0, 0x5e, 0, 0, 1], A), 1, 0),
            Verdict::Flood
        );
        assert_eq!(
            decide(&ctx, &frame([0x01, 0x80, 0xc2, 0, 0, 0], A), 1, 0),
            Verdict::Drop(Drop::LinkLocal)
        );
        assert_eq!(
            decide(&ctx, &frame(B, [0xff; 6]), 1, 0),
            Verdict::Drop(Drop::InvalidSrc)
        );
        assert_eq!(
            decide(&ctx, &frame(B, [0; 6]), 1, 0),
            Verdict::Drop(Drop::InvalidSrc)
        );
        assert_eq!(decide(&ctx, &[0u8; 13], 1, 0), Verdict::Drop(Drop::Runt));
    }

    #[test]
    fn past_the_limit_new_macs_flood_and_old_ones_work() {
        let fdb = Fdb::new(1);
        let c = BridgeCounters::new(1);
        let ctx = Ctx {
            fdb: &fdb,
            counters: &c,
            worker: 0,
            now: 1,
            aging: 300,
        };
        decide(&ctx, &frame(B, A), 1, 0);
        decide(&ctx, &frame(A, B), 2, 0);
        assert_eq!(c.totals()["mac_limit_drops"], 1);
        assert_eq!(
            decide(&ctx, &frame(B, A), 1, 0),
            Verdict::Flood,
            "B was never learned"
        );
        assert_eq!(
            decide(&ctx, &frame(A, B), 2, 0),
            Verdict::Forward(1),
            "A still works"
        );
        assert_eq!(fdb.lookup(0, MacAddr(A), 1, 300), Some(1));
    }

    #[test]
    fn aged_entries_flood() {
        let fdb = Fdb::new(100);
        let c = BridgeCounters::new(1);
        let ctx = Ctx {
            fdb: &fdb,
            counters: &c,
            worker: 0,
            now: 1,
            aging: 10,
        };
        decide(&ctx, &frame(B, A), 1, 0);
        let later = Ctx { now: 20, ..ctx };
        assert_eq!(decide(&later, &frame(A, B), 2, 0), Verdict::Flood);
    }
}
