//! Per-frame cost of forwarding on a cluster overlay's bridge as the number of remote
//! endpoints grows: the pipeline (the functions a worker calls) over batches of 32
//! frames from local containers to remote endpoints, each a static FDB entry towards
//! its node's VTEP (a remote slot of the bridge's tunnel port), as endpoint
//! distribution installs them. Few endpoints (10 on 3 nodes) against the simulated
//! scale of `benches/cluster.sh` (10,000 on 200 nodes): the cost should be flat.
//! Criterion's "time per element" is ns per frame.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ctl::PortKind;
use vswitch::dataplane::{BridgeRt, BridgeView, Clock, PortRt, Snapshot};
use vswitch::fdb::{dest, Fdb};
use vswitch::pipeline::{Frame, Ingress, Origin, Sink};
use vswitch::pool::{Buf, Pool};
use vswitch::wire::vnet;
use vswitch::wire::MacAddr;

const BATCH: usize = 32;
/// The local containers, on port 1.
const LOCAL: u32 = 16;
const LOCAL_PORT: u32 = 1;
const TUNNEL_PORT: u32 = 2;

fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]])
}

/// A 64-byte IPv4 frame with a well-formed header.
fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
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
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

/// Frames a bench sink takes: back to the pool, as a drained TX queue gives them.
struct Recycle<'a> {
    pool: &'a Pool,
    sent: u64,
}

impl Sink for Recycle<'_> {
    fn deliver(&mut self, _dst: &Arc<PortRt>, remote: u16, buf: Buf, _from: Origin<'_>) {
        self.sent += u64::from(remote != 0);
        self.pool.put(buf);
    }
}

/// An overlay bridge: the local containers on port 1 (learned), a tunnel port 2, and
/// `endpoints` remote endpoints pinned to it, spread over `nodes` remote slots.
fn overlay(endpoints: u32, nodes: u32) -> Snapshot {
    let mut snap = Snapshot::default();
    let rt = Arc::new(BridgeRt::new(0, "ov", 300, 65536, 1));
    let local = Arc::new(PortRt::new(LOCAL_PORT, "c", PortKind::Afpacket, 0, 0, 1));
    let tunnel = Arc::new(PortRt::new(TUNNEL_PORT, "vxo", PortKind::Vxlan, 0, 0, 1));
    for p in [&local, &tunnel] {
        p.up.store(true, Ordering::Relaxed);
        snap.put_port(p.clone(), None);
    }
    let fdb = Fdb::new(65536);
    for i in 0..LOCAL {
        fdb.learn(0, mac(i), LOCAL_PORT, 1);
    }
    for e in 0..endpoints {
        let slot = 1 + (e % nodes) as u16;
        assert!(fdb.set_static(0, mac(LOCAL + e), dest(TUNNEL_PORT, slot)));
    }
    rt.fdb.store(Arc::new(fdb));
    snap.put_bridge(BridgeView {
        rt,
        ports: vec![local, tunnel],
        guard: None,
        ip_checks: true,
        services: None,
    });
    snap
}

fn remote_endpoints(c: &mut Criterion) {
    let mut g = c.benchmark_group("overlay");
    g.throughput(Throughput::Elements(BATCH as u64));
    for &(endpoints, nodes) in &[(10u32, 3u32), (10_000, 200)] {
        let snap = overlay(endpoints, nodes);
        let pool = Pool::new(4 * BATCH, 1);
        let clock = Clock::new();
        let mut rng = Lcg(17);
        let batches: Vec<Vec<Vec<u8>>> = (0..128)
            .map(|_| {
                (0..BATCH)
                    .map(|_| frame(mac(LOCAL + rng.next(endpoints)), mac(rng.next(LOCAL))))
                    .collect()
            })
            .collect();
        let port = snap.port(LOCAL_PORT).unwrap();
        let vh = [0u8; vnet::LEN];
        let mut at = 0usize;
        g.bench_function(
            BenchmarkId::new(
                "batch32-to-remote",
                format!("{endpoints}-endpoints/{nodes}-nodes"),
            ),
            |b| {
                b.iter(|| {
                    let ing = Ingress::new(&snap, &pool, port, 1, clock.now(), 0).unwrap();
                    let mut sink = Recycle {
                        pool: &pool,
                        sent: 0,
                    };
                    for fr in &batches[at & 127] {
                        let f = Frame {
                            vnet: &vh,
                            bytes: fr,
                            aux: None,
                            truncated: false,
                        };
                        black_box(ing.frame(f, &mut sink));
                    }
                    at = at.wrapping_add(1);
                    // Every frame went to one remote VTEP: none flooded.
                    assert_eq!(sink.sent, BATCH as u64);
                    sink.sent
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, remote_endpoints);
criterion_main!(benches);
