//! Per-packet cost of the `nat` crate without I/O: translating a 64-byte TCP packet of
//! an established flow (lookup, state step, in-place rewrite with incremental checksum
//! fix-up), outbound (masquerade) and inbound (its reply), with 1k and 1M flows
//! tracked; the same with a partial checksum; and creating a flow (a first SYN: port
//! mapping, insert, rewrite), the source port kept or taken from the range.
//! Criterion's "time per element" is ns per packet. Filling the 1M-flow table is timed
//! once and printed to stderr.
//!
//! Packets are 64-byte IPv4 packets (20 IP + 20 TCP + 24 payload); the rewrite's cost
//! does not depend on the size, as no payload is summed.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nat::nat::{Ipv4Net, Network};
use nat::{Config, Direction, Egress, Nat, Verdict};
use wire::checksum::{checksum, fold, pseudo_v4, sum};

const UPLINK: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const FLAGS_ACK_PSH: u8 = 0x18;
const FLAGS_SYN: u8 = 0x02;
const FLAGS_SYN_ACK: u8 = 0x12;
const LEN: usize = 64;
/// Flows whose packets a measurement cycles through (spread over the table), so that
/// a 1M-flow table is not measured through one hot entry.
const SAMPLE: usize = 1024;
/// Inside endpoints; more flows than this reuse them towards more destinations, since
/// one uplink address has at most 64k ports (the mapping is per inside endpoint).
const ENDPOINTS: u32 = 16_384;
const NOW: u64 = 1_000;

/// A 64-byte IPv4 packet carrying a TCP segment, checksums complete, or (`partial`)
/// the TCP field holding the pseudo-header sum as a veth hands it over.
fn tcp64(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8, partial: bool) -> [u8; LEN] {
    let mut p = [0u8; LEN];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(LEN as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.0.octets());
    p[16..20].copy_from_slice(&dst.0.octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&src.1.to_be_bytes());
    p[22..24].copy_from_slice(&dst.1.to_be_bytes());
    p[24..28].copy_from_slice(&1000u32.to_be_bytes());
    p[32] = 0x50;
    p[33] = flags;
    p[34..36].copy_from_slice(&[0xff, 0xff]);
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let pseudo = pseudo_v4(src.0.octets(), dst.0.octets(), 6, (LEN - 20) as u16);
    let c = if partial {
        fold(pseudo)
    } else {
        !fold(sum(&p[20..], pseudo))
    };
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fn config(limit: usize) -> Config {
    let mut c = Config::new(UPLINK);
    c.networks.push(Network {
        subnet: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).unwrap(),
        gateway: Ipv4Addr::new(10, 0, 0, 1),
    });
    c.ct_limit = limit;
    c
}

/// Flow `f`: its inside endpoint (each with its own source port, so all are kept) and
/// its destination; flow `f + ENDPOINTS` reuses the endpoint towards the next address.
fn flow(f: u32) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let e = f % ENDPOINTS;
    let inside = (
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + e),
        20_000 + e as u16,
    );
    let d = f / ENDPOINTS;
    let outside = (
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 0)) + d),
        443,
    );
    (inside, outside)
}

fn process(n: &mut Nat, p: [u8; LEN], dir: Direction, now: u64) -> Verdict {
    let mut b = p;
    n.process(&mut b, dir, now)
}

/// A NAT tracking `flows` established flows, built as traffic would build it: a SYN
/// from each inside endpoint, the SYN-ACKs, the ACKs.
fn filled(flows: u32) -> Nat {
    let mut n = Nat::new(config(2 * flows as usize)).unwrap();
    let t = Instant::now();
    for f in 0..flows {
        let (i, o) = flow(f);
        let v = process(
            &mut n,
            tcp64(i, o, FLAGS_SYN, false),
            Direction::FromInside,
            0,
        );
        assert_eq!(v, Verdict::Forward(Egress::Outside), "flow {f}");
    }
    let syns = t.elapsed();
    for f in 0..flows {
        let (i, o) = flow(f);
        let to_us = (UPLINK, i.1);
        let v = process(
            &mut n,
            tcp64(o, to_us, FLAGS_SYN_ACK, false),
            Direction::FromOutside,
            0,
        );
        assert_eq!(v, Verdict::Forward(Egress::Inside), "flow {f}");
        let v = process(
            &mut n,
            tcp64(i, o, FLAGS_ACK_PSH, false),
            Direction::FromInside,
            0,
        );
        assert_eq!(v, Verdict::Forward(Egress::Outside), "flow {f}");
    }
    let all = t.elapsed();
    assert_eq!(n.table().len(), flows as usize);
    eprintln!(
        "nat: {flows} flows: SYNs (new flows) in {syns:.2?} ({:.0} ns/flow), established \
         (SYN, SYN-ACK, ACK) in {all:.2?} ({:.0} ns/packet); {} mappings",
        syns.as_nanos() as f64 / f64::from(flows),
        all.as_nanos() as f64 / f64::from(3 * flows),
        n.mappings(),
    );
    n
}

/// A packet of an established flow, translated once per iteration. The packet is
/// restored by copying its 64-byte template into the buffer first (the copy, a few
/// ns, is in the figure), since a translated packet is not a packet of the flow.
fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat_established");
    g.throughput(Throughput::Elements(1));
    for (flows, label) in [(1_000u32, "1k-flows"), (1_000_000, "1M-flows")] {
        let mut n = filled(flows);
        let stride = (flows as usize / SAMPLE).max(1) as u32;
        let sample = |partial: bool| -> (Vec<[u8; LEN]>, Vec<[u8; LEN]>) {
            (0..SAMPLE as u32)
                .map(|k| {
                    let (i, o) = flow((k * stride) % flows);
                    let out = tcp64(i, o, FLAGS_ACK_PSH, partial);
                    let back = tcp64(o, (UPLINK, i.1), FLAGS_ACK_PSH, partial);
                    (out, back)
                })
                .unzip()
        };
        let (outs, backs) = sample(false);
        let (outs_partial, _) = sample(true);
        let cases = [
            ("out", &outs, Direction::FromInside, Egress::Outside, false),
            ("in", &backs, Direction::FromOutside, Egress::Inside, false),
            (
                "out-partial",
                &outs_partial,
                Direction::FromInside,
                Egress::Outside,
                true,
            ),
        ];
        for (name, pkts, dir, egress, partial) in cases {
            let mut b0 = pkts[0];
            assert_eq!(
                n.process_csum(&mut b0, dir, NOW, partial),
                Verdict::Forward(egress)
            );
            let mut buf = [0u8; LEN];
            let mut k = 0usize;
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| {
                    buf.copy_from_slice(&pkts[k % SAMPLE]);
                    k += 1;
                    black_box(n.process_csum(black_box(&mut buf), dir, NOW, partial))
                })
            });
        }
    }
    g.finish();
}

/// First SYNs from fresh inside endpoints. The table is emptied, untimed, every
/// `CHUNK` flows (its capacity kept, so no rehashing is timed after the first chunk);
/// each SYN is copied from a pre-built template.
fn new_flow(c: &mut Criterion) {
    const CHUNK: usize = 16_384;
    let mut g = c.benchmark_group("nat_new_flow");
    g.throughput(Throughput::Elements(1));
    let wan = (Ipv4Addr::new(198, 51, 100, 1), 443);
    // Kept: every endpoint has its own source port. Taken: all use port 40000, so all
    // but the first get one from 32768-60999.
    for (name, same_port) in [("port-kept", false), ("port-taken", true)] {
        let syns: Vec<[u8; LEN]> = (0..CHUNK as u32)
            .map(|e| {
                let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + e);
                let port = if same_port { 40_000 } else { 20_000 + e as u16 };
                tcp64((a, port), wan, FLAGS_SYN, false)
            })
            .collect();
        let mut n = Nat::new(config(2 * CHUNK)).unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                let mut buf = [0u8; LEN];
                while left > 0 {
                    n.flush();
                    let batch = left.min(CHUNK as u64) as usize;
                    let t = Instant::now();
                    for p in &syns[..batch] {
                        buf.copy_from_slice(p);
                        black_box(n.process(black_box(&mut buf), Direction::FromInside, NOW));
                    }
                    spent += t.elapsed();
                    left -= batch as u64;
                }
                assert_eq!(n.drops(nat::DropReason::PortsExhausted), 0);
                spent
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = established, new_flow
}
criterion_main!(benches);
