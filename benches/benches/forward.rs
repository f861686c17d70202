//! Per-frame cost of the forwarding path without I/O: parsing, FDB lookup and learning,
//! and the whole decision over batches of 32 frames, at FDB sizes from 1k to 1M
//! entries and with 2 to 64 ports. Throughput is reported per frame, so criterion's
//! "time per element" is ns per frame.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vswitch::counters::BridgeCounters;
use vswitch::fdb::Fdb;
use vswitch::forward::{decide, Ctx, Verdict};
use vswitch::pool::Pool;
use vswitch::vlan;
use vswitch::wire::vnet;
use vswitch::wire::{EthernetFrame, MacAddr};

const BATCH: usize = 32;

fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]])
}

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(64, 0);
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

/// An FDB holding `entries` MACs spread over `ports` ports.
fn filled(entries: u32, ports: u32) -> Fdb {
    let f = Fdb::new(entries as usize);
    for i in 0..entries {
        f.learn(0, mac(i), 1 + i % ports, 1);
    }
    assert_eq!(f.len(), entries as usize);
    f
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let frames: Vec<Vec<u8>> = (0..BATCH as u32)
        .map(|i| frame(mac(i), mac(i + 1)))
        .collect();
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("ethernet+classify/batch32", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for f in &frames {
                let e = EthernetFrame::new_checked(black_box(&f[..])).unwrap();
                acc += u64::from(e.vlan())
                    + e.dst().to_u64()
                    + e.src().to_u64()
                    + u64::from(e.dst().is_multicast());
            }
            acc
        })
    });
    g.finish();
}

fn fdb(c: &mut Criterion) {
    let mut g = c.benchmark_group("fdb");
    g.throughput(Throughput::Elements(BATCH as u64));
    for &n in &[1_000u32, 1_000_000] {
        let f = filled(n, 8);
        let mut rng = Lcg(7);
        let hits: Vec<MacAddr> = (0..4096).map(|_| mac(rng.next(n))).collect();
        let misses: Vec<MacAddr> = (0..4096).map(|i| mac(n + 1 + i)).collect();
        let mut at = 0usize;
        g.bench_with_input(BenchmarkId::new("lookup-hit", n), &n, |b, _| {
            b.iter(|| {
                let mut acc = 0u32;
                for k in 0..BATCH {
                    acc += f.lookup(0, hits[(at + k) & 4095], 1, 300).unwrap_or(0);
                }
                at = at.wrapping_add(BATCH);
                acc
            })
        });
        g.bench_with_input(BenchmarkId::new("lookup-miss", n), &n, |b, _| {
            b.iter(|| {
                let mut acc = 0u32;
                for k in 0..BATCH {
                    acc += f.lookup(0, misses[(at + k) & 4095], 1, 300).unwrap_or(0);
                }
                at = at.wrapping_add(BATCH);
                acc
            })
        });
        g.bench_with_input(BenchmarkId::new("learn-known", n), &n, |b, _| {
            b.iter(|| {
                for k in 0..BATCH {
                    let m = hits[(at + k) & 4095];
                    let port = f.lookup(0, m, 1, 300).unwrap_or(1);
                    black_box(f.learn(0, m, port, 1));
                }
                at = at.wrapping_add(BATCH);
            })
        });
    }
    // Learning new MACs: only the learning is timed; the table is replaced, untimed,
    // before it reaches its limit.
    g.bench_function("learn-new", |b| {
        b.iter_custom(|iters| {
            let mut f = Fdb::new(1 << 20);
            let mut next = 0u32;
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..iters {
                if f.len() + BATCH > (1 << 20) {
                    f = Fdb::new(1 << 20);
                }
                let t = std::time::Instant::now();
                for _ in 0..BATCH {
                    next = next.wrapping_add(1);
                    black_box(f.learn(0, mac(next), 1, 1));
                }
                spent += t.elapsed();
            }
            spent
        })
    });
    g.finish();
}

/// The whole decision (validate, learn source, look up destination) for a batch of 32
/// unicast frames between known hosts.
fn decision(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(BATCH as u64));
    for &(n, ports) in &[
        (1_000u32, 2u32),
        (1_000, 64),
        (1_000_000, 2),
        (1_000_000, 64),
    ] {
        let f = filled(n, ports);
        let counters = BridgeCounters::new(1);
        let mut rng = Lcg(11);
        // Each frame's source sits on the port it arrives from, as in steady state.
        let batches: Vec<Vec<(Vec<u8>, u32)>> = (0..128)
            .map(|_| {
                (0..BATCH)
                    .map(|_| {
                        let s = rng.next(n);
                        let d = rng.next(n);
                        (frame(mac(d), mac(s)), 1 + s % ports)
                    })
                    .collect()
            })
            .collect();
        let mut at = 0usize;
        let id = format!("{n}-macs/{ports}-ports");
        g.bench_function(BenchmarkId::new("batch32", id), |b| {
            b.iter(|| {
                let ctx = Ctx {
                    fdb: &f,
                    counters: &counters,
                    worker: 0,
                    now: 1,
                    aging: 300,
                };
                let mut fwd = 0u32;
                for (fr, port) in &batches[at & 127] {
                    if let Verdict::Forward(p) = decide(&ctx, fr, *port, 0) {
                        fwd += p;
                    }
                }
                at = at.wrapping_add(1);
                fwd
            })
        });
    }
    g.finish();
}

/// 802.1Q tag push (untagged in, tagged out) and pop (tagged in, untagged out) while
/// copying the frame into its output buffer, against a plain copy.
fn vlan_rewrite(c: &mut Criterion) {
    let mut g = c.benchmark_group("vlan");
    let pool = Pool::new(4, 1);
    let vh = [0u8; vnet::LEN];
    for &len in &[64usize, 1514] {
        let untagged = frame_of_len(len, false);
        let tagged = frame_of_len(len + 4, true);
        g.throughput(Throughput::Elements(1));
        let mut buf = pool.get(2000).unwrap();
        g.bench_function(BenchmarkId::new("copy", len), |b| {
            b.iter(|| vlan::write_frame(&mut buf, &vh, black_box(&untagged), false, None))
        });
        g.bench_function(BenchmarkId::new("push", len), |b| {
            b.iter(|| {
                vlan::write_frame(
                    &mut buf,
                    &vh,
                    black_box(&untagged),
                    false,
                    Some((0x8100, 10)),
                )
            })
        });
        g.bench_function(BenchmarkId::new("pop", len), |b| {
            b.iter(|| vlan::write_frame(&mut buf, &vh, black_box(&tagged), true, None))
        });
    }
    g.finish();
}

fn frame_of_len(len: usize, tagged: bool) -> Vec<u8> {
    let mut f = frame(mac(1), mac(2));
    if tagged {
        f.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    }
    f.resize(len, 0xab);
    f
}

criterion_group!(benches, parse, fdb, decision, vlan_rewrite);
criterion_main!(benches);
