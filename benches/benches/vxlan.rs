//! Per-frame cost of VXLAN without I/O: encapsulation of plain frames, decapsulation
//! (the VTEP table check and the offload description for the port), and software TSO
//! of a 64 KiB TCP super-frame into segments for a 1500-byte underlay. Throughput is
//! per frame (per segment for TSO), so "time per element" is ns per frame.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vxlan::decap::VtepTable;
use vxlan::offload::{encap_segments, offload_for_inner, Gso, Offload};

/// An Ethernet/IPv4/TCP frame of `len` bytes in all (`len` ≥ 54).
fn tcp_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&5201u16.to_be_bytes());
    f[46] = 0x50;
    f[47] = 0x18;
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

fn encap(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan_encap");
    g.throughput(Throughput::Elements(1));
    for len in [64usize, 1514] {
        let f = tcp_frame(len);
        let mut out = Vec::with_capacity(2048);
        g.bench_with_input(BenchmarkId::new("plain", len), &f, |b, f| {
            b.iter(|| {
                encap_segments(black_box(f), &Offload::default(), 1464, 42, &mut out).unwrap()
            })
        });
        let partial = Offload {
            needs_csum: true,
            csum_start: 34,
            csum_offset: 16,
            ..Offload::default()
        };
        g.bench_with_input(BenchmarkId::new("csum_completed", len), &f, |b, f| {
            b.iter(|| encap_segments(black_box(f), &partial, 1464, 42, &mut out).unwrap())
        });
    }
    g.finish();
}

fn decap(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan_decap");
    g.throughput(Throughput::Elements(1));
    let src: IpAddr = "198.51.100.2".parse().unwrap();
    let mut t = VtepTable::default();
    for vni in 0..64 {
        t.insert(
            vni,
            vni + 1,
            vec![("198.51.100.9".parse().unwrap(), 1), (src, 2)],
        );
    }
    for len in [64usize, 1514] {
        let mut d = vxlan::header::encode(42).to_vec();
        d.extend_from_slice(&tcp_frame(len));
        g.bench_with_input(BenchmarkId::new("classify_and_offload", len), &d, |b, d| {
            let mut buf = d.clone();
            b.iter(|| {
                let r = t.classify(src, black_box(&buf)).unwrap();
                let inner = &mut buf[r.inner];
                black_box(offload_for_inner(inner, 1450))
            })
        });
    }
    g.finish();
}

fn tso(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan_tso");
    let f = tcp_frame(65_000);
    let off = Offload {
        needs_csum: true,
        gso: Gso::TcpV4,
        gso_size: 1398,
        csum_start: 34,
        csum_offset: 16,
        ..Offload::default()
    };
    let mut out = Vec::with_capacity(80_000);
    let segs = encap_segments(&f, &off, 1464, 42, &mut out).unwrap();
    g.throughput(Throughput::Elements(segs.count as u64));
    g.bench_function("64k_super_frame_per_segment", |b| {
        b.iter(|| encap_segments(black_box(&f), &off, 1464, 42, &mut out).unwrap())
    });
    g.finish();
}

criterion_group!(benches, encap, decap, tso);
criterion_main!(benches);
