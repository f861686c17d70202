//! The tunnel's side of the frame path: a VXLAN datagram read by a VTEP is matched
//! against the VTEP's table (VNI, flags, remote), decapsulated where it lies, and its
//! inner frame runs through the tunnel port's [`Ingress`], learned behind the remote it
//! came from. Encapsulation is the tunnel port's transmit side (`tunnel::transmit`).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use vxlan::decap::{Decap, DropReason, VtepTable};

use super::{Frame, Ingress, Sink};
use crate::dataplane::{PortRt, Snapshot};
use crate::fdb::{dest, PortId};
use crate::pool::{Buf, Pool};
use crate::tunnel::{RemoteRt, VtepCounters, DGRAM_OFFSET};
use crate::wire::vnet;

/// A datagram, or a run of them read at once with `UDP_GRO`, as a VTEP's socket read it
/// into a buffer at [`DGRAM_OFFSET`].
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    /// The sender's address.
    pub src: IpAddr,
    /// The sender's UDP port (where a cookie reply goes).
    pub sport: u16,
    /// Bytes read.
    pub len: usize,
    /// With `UDP_GRO`: the size of each datagram of the run (the last may be shorter);
    /// 0 for a single datagram.
    pub gro: usize,
    /// Larger than its buffer: cut.
    pub truncated: bool,
}

/// What a VTEP needs to take a datagram apart: its table and counters, the snapshot's
/// tunnel ports, and the pool and clock of the worker.
pub struct Vtep<'a> {
    /// VNI → tunnel port and remotes.
    pub table: &'a VtepTable,
    /// The VTEP's receive counters.
    pub counters: &'a VtepCounters,
    /// The configuration forwarded by.
    pub snap: &'a Snapshot,
    /// Where copies come from.
    pub pool: &'a Pool,
    /// The FDB clock.
    pub now: u32,
    /// The worker whose counters are written.
    pub w: usize,
}

impl Vtep<'_> {
    /// Takes the datagram (or run) `d` read into `slot` apart and forwards each inner
    /// frame. A single datagram's inner frame stays in its buffer: the virtio-net header
    /// the kernel peer did not send is written over the VXLAN header's bytes, and the
    /// buffer may go on as it is (`slot` emptied). A run of TCP segments of one flow is
    /// merged back into one super-frame; any other run is forwarded datagram by datagram.
    pub fn receive(&self, d: &Datagram, slot: &mut Option<Buf>, sink: &mut impl Sink) {
        let c = self.counters;
        c.rx_bytes.fetch_add(d.len as u64, Ordering::Relaxed);
        let Some(buf) = slot.as_mut() else { return };
        if d.truncated {
            c.rx_datagrams.fetch_add(1, Ordering::Relaxed);
            return c.drop(DropReason::Truncated);
        }
        if d.gro > 0 && d.len > d.gro {
            let count = d.len.div_ceil(d.gro);
            c.rx_datagrams.fetch_add(count as u64, Ordering::Relaxed);
            let run = &mut buf.bytes_mut()[DGRAM_OFFSET..];
            let merged = self
                .resolve(d.src, &run[..d.gro])
                .ok()
                .and_then(|first| Some((first, vxlan::gro::merge_tcp(run, d.gro)?)))
                .filter(|((_, _, x), mg)| {
                    mg.vni == x.vni && mg.inner.start == vxlan::header::HEADER_LEN
                });
            if let Some(((rt, remote, x), mg)) = merged {
                // One super-frame for the port, sent on in this very buffer.
                remote.count_rx(count as u64, d.len as u64);
                buf.set_len(DGRAM_OFFSET + mg.inner.end);
                buf.bytes_mut()[..vnet::LEN].copy_from_slice(&mg.offload.to_virtio());
                self.ingress(&rt, x.remote, |ing| ing.frame_owned(slot, None, sink));
                return;
            }
            for i in 0..count {
                let run = &mut buf.bytes_mut()[DGRAM_OFFSET..];
                let seg = &mut run[i * d.gro..((i + 1) * d.gro).min(d.len)];
                let (rt, remote, x) = match self.resolve(d.src, seg) {
                    Ok(r) => r,
                    Err(why) => {
                        c.drop(why);
                        continue;
                    }
                };
                remote.count_rx(1, seg.len() as u64);
                let inner = &mut seg[x.inner.clone()];
                let vh = vxlan::offload::offload_for_inner(inner, remote.inner_mtu()).to_virtio();
                let f = Frame {
                    vnet: &vh,
                    bytes: inner,
                    aux: None,
                    truncated: false,
                };
                self.ingress(&rt, x.remote, |ing| ing.frame(f, sink));
            }
            return;
        }
        c.rx_datagrams.fetch_add(1, Ordering::Relaxed);
        let (rt, remote, x) = match self.resolve(d.src, &buf.bytes()[DGRAM_OFFSET..]) {
            // The inner frame must start where the vnet header ends.
            Ok(r) if r.2.inner.start == vxlan::header::HEADER_LEN => r,
            Ok(_) => return c.drop(DropReason::Truncated),
            Err(why) => return c.drop(why),
        };
        remote.count_rx(1, d.len as u64);
        let (vh, inner) = buf.bytes_mut().split_at_mut(vnet::LEN);
        let off = vxlan::offload::offload_for_inner(inner, remote.inner_mtu());
        vh.copy_from_slice(&off.to_virtio());
        self.ingress(&rt, x.remote, |ing| ing.frame_owned(slot, None, sink));
    }

    /// Which tunnel port and remote a datagram from `src` belongs to, or why it is
    /// dropped.
    fn resolve(
        &self,
        src: IpAddr,
        datagram: &[u8],
    ) -> Result<(Arc<PortRt>, Arc<RemoteRt>, Decap), DropReason> {
        let d = self.table.classify(src, datagram)?;
        let rt = self
            .snap
            .port(d.port as PortId)
            .cloned()
            .ok_or(DropReason::UnknownVni)?;
        let remote = rt
            .tunnel
            .as_ref()
            .and_then(|t| t.remote(d.remote))
            .ok_or(DropReason::UnknownRemote)?;
        Ok((rt, remote, d))
    }

    /// Runs `f` in the ingress of tunnel port `rt` for frames from remote `remote`.
    fn ingress(&self, rt: &PortRt, remote: u16, f: impl FnOnce(&Ingress<'_>) -> super::Verdict) {
        match Ingress::new(
            self.snap,
            self.pool,
            rt,
            dest(rt.id, remote),
            self.now,
            self.w,
        ) {
            Ok(ing) => {
                f(&ing);
            }
            Err(d) => rt.counters.drop(self.w, d, 1),
        }
    }
}
