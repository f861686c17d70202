//! The gateway's side of the frame path: what the uplink receives goes to the gateway;
//! what bridges send to a gateway port is routed; what the gateway sends leaves by the
//! uplink or enters its network's bridge at the gateway port, through that bridge's
//! [`Ingress`] like any received frame.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::{Frame, Ingress, Origin, Sink};
use crate::counters::{bump, Drop};
use crate::dataplane::{GatewayView, PortRt, Snapshot};
use crate::gateway::{Gateway, Out, Side};
use crate::pool::{Buf, Pool};
use crate::wire::vnet;

/// A frame read from the uplink, for the gateway: counted at the uplink, refused if the
/// ring cut it or it carries a tag (the uplink is untagged; a tagged frame is for no
/// address of ours), copied into a buffer of its own.
pub fn from_uplink(port: &PortRt, pool: &Pool, w: usize, f: Frame<'_>) -> Result<Buf, Drop> {
    let c = port.counters.block(w);
    bump(&c.rx_packets, 1);
    bump(&c.rx_bytes, f.bytes.len() as u64);
    if f.truncated {
        return Err(Drop::Oversize);
    }
    if f.aux.is_some() {
        return Err(Drop::VlanNotMember);
    }
    let mut b = pool.get(vnet::LEN + f.bytes.len()).ok_or(Drop::NoBuffer)?;
    if !b.fill(&[f.vnet, f.bytes]) {
        pool.put(b);
        return Err(Drop::Oversize);
    }
    Ok(b)
}

/// A frame read from the uplink into a buffer of its own (see [`from_uplink`]).
pub fn owned_from_uplink(
    port: &PortRt,
    pool: &Pool,
    w: usize,
    b: Buf,
    aux: Option<(u16, u16)>,
) -> Result<Buf, Drop> {
    let c = port.counters.block(w);
    bump(&c.rx_packets, 1);
    bump(
        &c.rx_bytes,
        b.bytes().len().saturating_sub(vnet::LEN) as u64,
    );
    if aux.is_some() {
        pool.put(b);
        return Err(Drop::VlanNotMember);
    }
    Ok(b)
}

/// The gateway's turn on its worker: what was read from the uplink or queued on gateway
/// ports (`input`, emptied) is routed under one lock, the once-a-second `tick` runs if
/// due, and what the gateway produced (collected in `out`, emptied) is sent on by
/// [`emit`].
#[allow(clippy::too_many_arguments)]
pub fn route(
    snap: &Snapshot,
    pool: &Pool,
    gv: &GatewayView,
    now: u32,
    w: usize,
    input: &mut Vec<(Side, Buf)>,
    tick: bool,
    out: &mut Out,
    sink: &mut impl Sink,
) {
    {
        let mut g = lock(&gv.rt.state);
        // Before the batch: a reply the batch's packets trigger must find a backend
        // taken out since the last batch among the lingering ones.
        g.sync_replies(snap);
        for (side, b) in input.drain(..) {
            g.handle(side, b, pool, out);
        }
        if tick {
            g.tick(pool, out);
        }
    }
    emit(snap, pool, gv, now, w, out, sink);
}

/// Sends what the gateway produced: frames for the uplink to the uplink port (if it is
/// up), frames for a network into its bridge at the gateway port, where they are
/// switched like frames received there.
pub fn emit(
    snap: &Snapshot,
    pool: &Pool,
    gv: &GatewayView,
    now: u32,
    w: usize,
    out: &mut Out,
    sink: &mut impl Sink,
) {
    // Runs of frames for the same side go together, so a bridge's ingress is set up
    // once per run.
    while let Some(&(side, _)) = out.first() {
        let end = out
            .iter()
            .position(|(s, _)| *s != side)
            .unwrap_or(out.len());
        let run = out.drain(..end).map(|(_, b)| b);
        match side {
            Side::Uplink => match gv.uplink.as_ref().filter(|u| u.up.load(Ordering::Relaxed)) {
                Some(u) => run.for_each(|b| sink.deliver(u, 0, b, Origin::Gateway)),
                None => run.for_each(|b| pool.put(b)),
            },
            Side::Net(bid) => {
                let Some(gp) = gv.ports.iter().find(|p| p.bridge == bid) else {
                    run.for_each(|b| pool.put(b));
                    continue;
                };
                match Ingress::new(snap, pool, gp, gp.id, now, w) {
                    Ok(ing) => {
                        for b in run {
                            let mut slot = Some(b);
                            ing.frame_owned(&mut slot, None, sink);
                            if let Some(b) = slot {
                                pool.put(b);
                            }
                        }
                    }
                    Err(d) => {
                        gp.counters.drop(w, d, 1);
                        run.for_each(|b| pool.put(b));
                    }
                }
            }
        }
    }
}

/// Locks the gateway, whose holder may have panicked (its state stays usable).
fn lock(m: &Mutex<Gateway>) -> std::sync::MutexGuard<'_, Gateway> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
