//! Per-frame cost of the forwarding path without I/O: parsing, FDB lookup and learning,
//! and the whole pipeline (the functions a worker calls) over batches of 32 frames, at FDB sizes from 1k to 1M
//! entries and with 2 to 64 ports. Throughput is reported per frame, so criterion's
//! "time per element" is ns per frame.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ctl::PortKind;
use vswitch::dataplane::{BridgeRt, BridgeView, Clock, PortRt, Snapshot};
use vswitch::fdb::Fdb;
use vswitch::pipeline::{check_headers, Frame, Ingress};
use vswitch::pool::Pool;
use vswitch::portsec::Binding;
use vswitch::vlan;
use vswitch::wire::vnet;
use vswitch::wire::{EthernetFrame, MacAddr};

mod common;

use common::{frame, mac, Lcg, Recycle, BATCH};

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

/// One batch through the pipeline as a worker runs it, from `port`; how many frames left.
fn run_batch(snap: &Snapshot, pool: &Pool, port: &PortRt, now: u32, frames: &[Vec<u8>]) -> u64 {
    let vh = [0u8; vnet::LEN];
    let ing = Ingress::new(snap, pool, port, 1, now, 0).unwrap();
    let mut sink = Recycle::new(pool);
    for fr in frames {
        let f = Frame {
            vnet: &vh,
            bytes: fr,
            aux: None,
            truncated: false,
        };
        black_box(ing.frame(f, &mut sink));
    }
    sink.sent
}

/// A bridge of `ports` ports, all up, whose FDB holds `entries` MACs spread over them,
/// with `ip-checks` as given.
fn bridge(entries: u32, ports: u32, ip_checks: bool) -> Snapshot {
    let mut snap = Snapshot::default();
    let rt = Arc::new(BridgeRt::new(0, "br", 300, entries, 1));
    let mut list = Vec::new();
    for id in 1..=ports {
        let p = Arc::new(PortRt::new(id, "p", PortKind::Afpacket, 0, 0, 1));
        p.up.store(true, Ordering::Relaxed);
        snap.put_port(p.clone(), None);
        list.push(p);
    }
    rt.fdb.store(Arc::new(filled(entries, ports)));
    snap.put_bridge(BridgeView {
        rt,
        ports: list,
        guard: None,
        ip_checks,
        services: None,
    });
    snap
}

/// The real pipeline (classify, guard, learn, decide, egress, rewrite into a pool
/// buffer, hand to the sink) for a batch of 32 unicast frames between known hosts
/// arriving on one port, as a worker's turn runs it: the batch's context is set up once.
fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    for &(n, ports, checks) in &[
        (1_000u32, 2u32, true),
        (1_000, 2, false),
        (1_000, 64, true),
        (1_000_000, 2, true),
        (1_000_000, 64, true),
    ] {
        let snap = bridge(n, ports, checks);
        let pool = Pool::new(4 * BATCH, 1);
        let clock = Clock::new();
        let mut rng = Lcg(11);
        // Sources sit on port 1, where the batch arrives, as in steady state; MAC i
        // is on port 1 + i % ports.
        let batches: Vec<Vec<Vec<u8>>> = (0..128)
            .map(|_| {
                (0..BATCH)
                    .map(|_| {
                        let s = rng.next(n / ports) * ports;
                        frame(mac(rng.next(n)), mac(s))
                    })
                    .collect()
            })
            .collect();
        let Some(port) = snap.port(1) else {
            panic!("no port 1")
        };
        let mut at = 0usize;
        // The pair at 1k MACs and 2 ports differs only by `ip-checks`: its cost per frame.
        let id = if checks {
            format!("{n}-macs/{ports}-ports")
        } else {
            format!("{n}-macs/{ports}-ports/ip-checks-off")
        };
        g.bench_function(BenchmarkId::new("batch32", id), |b| {
            b.iter(|| {
                let sent = run_batch(&snap, &pool, port, clock.now(), &batches[at & 127]);
                at = at.wrapping_add(1);
                sent
            })
        });
    }
    g.finish();
}

/// The address binding's cost per frame (`set-port PORT allowed=MAC,IP`): the pipeline
/// over batches of 32 frames from one host (the bound one, from its own address) to
/// known hosts on another port, with and without the binding on its port; and the check alone on one
/// IPv4 frame and one ARP packet.
fn binding(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    let n = 1_000u32;
    let own = mac(0);
    let mut rng = Lcg(13);
    let batches: Vec<Vec<Vec<u8>>> = (0..128)
        .map(|_| {
            // MAC i sits on port 1 + i % 2: odd ones on port 2, so every frame leaves.
            (0..BATCH)
                .map(|_| frame(mac(rng.next(n / 2) * 2 + 1), own))
                .collect()
        })
        .collect();
    let bound = Binding {
        mac: own,
        ips: vec![[10, 0, 0, 9], [10, 0, 0, 1]].into(),
    };
    for on in [false, true] {
        let mut snap = bridge(n, 2, true);
        if on {
            snap.put_binding(1, Some(bound.clone()));
        }
        let pool = Pool::new(4 * BATCH, 1);
        let clock = Clock::new();
        let Some(port) = snap.port(1) else {
            panic!("no port 1")
        };
        let mut at = 0usize;
        let id = if on { "bound" } else { "unbound" };
        g.bench_function(
            BenchmarkId::new("batch32/1000-macs/2-ports/one-source", id),
            |b| {
                b.iter(|| {
                    let sent = run_batch(&snap, &pool, port, clock.now(), &batches[at & 127]);
                    at = at.wrapping_add(1);
                    assert_eq!(sent, BATCH as u64, "the bound host's frames pass");
                    sent
                })
            },
        );
    }
    g.finish();
    let mut g = c.benchmark_group("portsec");
    let ipv4 = frame(mac(1), own);
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 2];
    arp.extend_from_slice(&own.0);
    arp.extend_from_slice(&[10, 0, 0, 1]);
    arp.extend_from_slice(&[0; 10]);
    g.bench_function("permits/ipv4", |b| {
        b.iter(|| bound.permits(black_box(own), 0x0800, black_box(&ipv4[14..])))
    });
    g.bench_function("permits/arp", |b| {
        b.iter(|| bound.permits(black_box(own), 0x0806, black_box(&arp[..])))
    });
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

/// `FORWARD_COUNT=VARIANT:BATCHES` runs one pipeline twin for a fixed number of 32-frame
/// batches instead of criterion, for an instruction count under callgrind that two runs
/// of different lengths turn into instructions per frame (setup cancels out): what a
/// timed bench on a noisy 2-core machine cannot tell apart from noise. VARIANT is
/// `checks`, `no-checks`, `bound` or `unbound`.
fn count(spec: &str) {
    let Some((variant, n)) = spec.split_once(':') else {
        panic!("FORWARD_COUNT=VARIANT:BATCHES")
    };
    let batches: usize = n.parse().unwrap();
    let n = 1_000u32;
    let mut snap = bridge(n, 2, variant != "no-checks");
    let mut rng = Lcg(11);
    let own = mac(0);
    let frames: Vec<Vec<Vec<u8>>> = (0..128)
        .map(|_| {
            (0..BATCH)
                .map(|_| match variant {
                    "bound" | "unbound" => frame(mac(rng.next(n / 2) * 2 + 1), own),
                    _ => frame(mac(rng.next(n)), mac(rng.next(n / 2) * 2)),
                })
                .collect()
        })
        .collect();
    if variant == "bound" {
        let b = Binding {
            mac: own,
            ips: vec![[10, 0, 0, 9], [10, 0, 0, 1]].into(),
        };
        snap.put_binding(1, Some(b));
    }
    let pool = Pool::new(4 * BATCH, 1);
    let port = snap.port(1).unwrap();
    let mut sent = 0;
    for i in 0..batches {
        sent += run_batch(&snap, &pool, port, 1, &frames[i & 127]);
    }
    println!("{variant}: {batches} batches, {sent} frames sent");
}

/// The bridge's `ip-checks` alone (`check_headers`, what the guard stage runs for each
/// frame with the checks on): a well-formed IPv4 header and an ARP packet.
fn ip_checks(c: &mut Criterion) {
    let mut g = c.benchmark_group("ip-checks");
    let ipv4 = frame(mac(1), mac(2));
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 2];
    arp.extend_from_slice(&mac(2).0);
    arp.extend_from_slice(&[10, 0, 0, 1]);
    arp.extend_from_slice(&[0; 10]);
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, ethertype, payload) in [("ipv4", 0x0800u16, &ipv4[14..]), ("arp", 0x0806, &arp[..])]
    {
        g.bench_function(BenchmarkId::new("batch32", name), |b| {
            b.iter(|| {
                let mut ok = 0u32;
                for _ in 0..BATCH {
                    ok +=
                        u32::from(check_headers(black_box(ethertype), black_box(payload)).is_ok());
                }
                assert_eq!(ok, BATCH as u32);
                ok
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    parse,
    fdb,
    pipeline,
    ip_checks,
    binding,
    vlan_rewrite
);

fn main() {
    if let Ok(spec) = std::env::var("FORWARD_COUNT") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
