//! What the criterion benches share: the batch size, stable MACs, a well-formed 64-byte
//! IPv4 frame, a deterministic generator, and the sink that gives frames back to the pool.

#![allow(dead_code)]

use std::sync::Arc;

use vswitch::dataplane::PortRt;
use vswitch::pipeline::{Origin, Sink};
use vswitch::pool::{Buf, Pool};
use vswitch::wire::MacAddr;

pub const BATCH: usize = 32;

pub fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]])
}

/// A 64-byte IPv4 frame whose header is well-formed, so `ip-checks` passes it.
pub fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[
        0x45, 0, 0, 50, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f.resize(64, 0);
    let mut ip = wire::ipv4::Ipv4Packet::new_checked(&mut f[14..]).unwrap();
    ip.fill_checksum();
    f
}

/// A small deterministic generator, so every run looks up the same MACs.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

/// Frames a bench sink takes: back to the pool, as a drained TX queue gives them,
/// counted (all of them, and those sent to a tunnel's remote).
pub struct Recycle<'a> {
    pub pool: &'a Pool,
    pub sent: u64,
    pub to_remote: u64,
}

impl<'a> Recycle<'a> {
    pub fn new(pool: &'a Pool) -> Self {
        Recycle {
            pool,
            sent: 0,
            to_remote: 0,
        }
    }
}

impl Sink for Recycle<'_> {
    fn deliver(&mut self, _dst: &Arc<PortRt>, remote: u16, buf: Buf, _from: Origin<'_>) {
        self.sent += 1;
        self.to_remote += u64::from(remote != 0);
        self.pool.put(buf);
    }
}
