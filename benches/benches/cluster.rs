//! Per-frame cost of forwarding on a cluster overlay's bridge as the number of remote
//! endpoints grows: the pipeline (the functions a worker calls) over batches of 32
//! frames from local containers to remote endpoints, each a static FDB entry towards
//! its node's VTEP (a remote slot of the bridge's tunnel port), as endpoint
//! distribution installs them. Few endpoints (10 on 3 nodes) against the simulated
//! scale of `benches/cluster.sh` (10,000 on 200 nodes): the cost should be flat.
//! Each frame's successor is prefetched as the worker does with its ring's next frame.
//! Criterion's "time per element" is ns per frame.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ctl::PortKind;
use vswitch::dataplane::{BridgeRt, BridgeView, Clock, PortRt, Snapshot};
use vswitch::fdb::{dest, Fdb};
use vswitch::pipeline::{Frame, Ingress};
use vswitch::pool::Pool;
use vswitch::wire::vnet;

mod common;

use common::{frame, mac, Lcg, Recycle, BATCH};

/// The local containers, on port 1.
const LOCAL: u32 = 16;
const LOCAL_PORT: u32 = 1;
const TUNNEL_PORT: u32 = 2;

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
                    let mut sink = Recycle::new(&pool);
                    let batch = &batches[at & 127];
                    for (i, fr) in batch.iter().enumerate() {
                        // As the worker does with the ring's next frame.
                        ing.prefetch(batch.get(i + 1).map_or(&[][..], |n| &n[..]));
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
                    assert_eq!(sink.to_remote, BATCH as u64);
                    sink.to_remote
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, remote_endpoints);
criterion_main!(benches);
