//! The harnesses behind the cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`).
//!
//! This module owns, for each target, the `pub fn` that takes the fuzzer's bytes, drives
//! them through the real code path — a small bridge with its gateway, the NAT engine,
//! the VTEP table and VXLAN offloads, the controller behind the control socket, the
//! config store — and checks invariants that must hold whatever the bytes are. A broken
//! invariant panics, which libFuzzer reports as a crash; nothing else does. The
//! harnesses live here rather than in the targets so that they can reach the crate's own
//! types, are built and linted with the workspace, and are unit-tested (`tests.rs`).
//! One file per harness: `ct` (`nat`, `nat_rewrite`), `svc` (`services`), `gateway`, `bridge` (`frame`),
//! `vtep` (`vxlan_*`), `control` (`control`, `config`); `checksums` is the from-scratch
//! oracle and `addrs` the addresses they share.
//!
//! The checks compare against independent computations where one exists: checksums
//! are recomputed from scratch (not with the incremental update under test), a NAT
//! rewrite is undone and must restore every byte, a frame written with its tag pushed
//! or popped is compared byte for byte with the one that came in.
//!
//! Input format: the frame and packet harnesses read their bytes as [`records`]: one
//! control byte (what to do with the record: which port or side, whether to fix the
//! checksums first, how far to move the clock, …, documented per harness), a big-endian
//! `u16` length, and that many bytes of frame or packet. The other harnesses take the
//! bytes as they come (a datagram after a short header, JSON lines, a config file).
//!
//! The bridge harness runs frames through the real [`pipeline`](crate::pipeline), the
//! functions a worker calls, on a real snapshot; only the sockets are missing. The module
//! is compiled for the fuzz crate (feature `fuzzing`) and for the unit tests alone: it is
//! not part of the library's surface.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use nat::nat::{Ipv4Net, Network, Published};
use nat::tuple::{Endpoint, Kind, Proto, Tuple};
use nat::{Direction, Egress, Nat, Verdict as NatVerdict};
use wire::checksum::{fold, pseudo_v4, sum};

use crate::dataplane::{
    BridgeRt, BridgeView, GatewayGuard, GatewayRt, GatewayView, PortRt, Snapshot, UPLINK_BRIDGE,
};
use crate::fdb::{port_of, PortId};
use crate::gateway::frames::{self, ARP, ETH, IPV4};
use crate::gateway::{Gateway, NetSpec, Out, Side, UplinkSpec};
use crate::pipeline::{Arrival, Frame, Ingress, Origin, Sink, TagAction, Tags, Verdict};
use crate::pool::{Buf, Pool};
use crate::vlan::VlanTable;
use crate::wire::{vnet, MacAddr, VnetHdr};

// ---------------------------------------------------------------------------------------
// Input records
// ---------------------------------------------------------------------------------------

/// Most records one input is read as: bounds the time one input takes.
pub const MAX_RECORDS: usize = 64;

/// Splits fuzz input into records of (control byte, bytes): each record is the control
/// byte, a big-endian `u16` length, then that many bytes (fewer if the input ends
/// first). At most [`MAX_RECORDS`]; trailing bytes too short for a header are ignored.
pub fn records(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> + '_ {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&[ctl, hi, lo], tail) = rest.split_first_chunk::<3>()?;
        let n = usize::from(u16::from_be_bytes([hi, lo])).min(tail.len());
        let (body, after) = tail.split_at(n);
        rest = after;
        Some((ctl, body))
    })
    .take(MAX_RECORDS)
}

/// Encodes records in the format [`records`] reads (for seeds and tests).
pub fn encode_records(recs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ctl, body) in recs {
        let n = body.len().min(usize::from(u16::MAX));
        out.push(*ctl);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&body[..n]);
    }
    out
}

mod addrs;
mod bridge;
mod checksums;
mod control;
mod ct;
mod dns;
mod gateway;
mod svc;
mod vtep;
mod wg;

#[cfg(test)]
mod tests;

use addrs::*;
use checksums::*;
use ct::prepare_ip;
use gateway::*;

pub use bridge::{bridge_ctl, frame, lab_port, BridgeLab};
pub use checksums::{
    frame_ip_field, frame_l4_field, ipv4_fields, ipv4_fix, ipv4_good, ipv4_partial, Field,
    FieldKind,
};
pub use control::{config, control, touches_host};
pub use ct::{nat, nat_ctl, nat_rewrite, nat_writable};
pub use dns::dns;
pub use gateway::{gateway, gw_ctl};
pub use svc::{services, svc_ctl};
pub use vtep::{vxlan_decap, vxlan_encap, vxlan_gro};
pub use wg::wg_message;
