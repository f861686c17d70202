//! Per-frame cost of the `vxlan` crate without I/O: encapsulation of a 64-byte and a
//! 1514-byte frame (no GSO; with and without a partial checksum to complete),
//! decapsulation (`VtepTable::classify` + `offload_for_inner`) of the same, software
//! TSO of a 64 KB TCP super-frame into segments for a 1450-byte inner MTU (per
//! super-frame and per segment), an afxdp port's look for a partial checksum in each
//! frame it reads (`partial_checksum`), the checksum over 1500 B and 64 KiB, and the
//! flow hash. Criterion's "time per element" is ns per frame (or per segment).

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vxlan::decap::VtepTable;
use vxlan::flow::flow_hash;
use vxlan::header::encode;
use vxlan::offload::{
    encap_segments, encap_split, encap_whole, offload_for_inner, partial_checksum, Gso, Offload,
    Outer, WHOLE_LEN,
};
use wire::checksum::{finish, fold, pseudo_v4, sum};

/// Inner MTU over a 1500-byte underlay (RFC 7348 §4).
const INNER_MTU: usize = 1450;
/// Largest inner frame, Ethernet header included.
const MAX_FRAME: usize = INNER_MTU + 14;
const VNI: u32 = 42;

/// The frames of the per-frame decapsulation and afxdp benches: length, and whether the
/// TCP checksum is left partial.
const FRAME_CASES: [(usize, bool); 3] = [(64, false), (1514, false), (1514, true)];

/// A bench's name for one of [`FRAME_CASES`].
fn case_name(len: usize, partial: bool) -> String {
    if partial {
        format!("{len}B/partial")
    } else {
        format!("{len}B")
    }
}

/// An Ethernet + IPv4 + TCP frame of `len` bytes (at least 54), IPv4 header checksum
/// valid, TCP checksum complete or (`partial`) holding the pseudo-header sum.
fn tcp_frame(len: usize, partial: bool) -> Vec<u8> {
    let mut f = vec![0u8; len.max(54)];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = f.len() - 14;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&(ip_len as u16).to_be_bytes());
    f[18..20].copy_from_slice(&[0x12, 0x34]);
    f[20] = 0x40;
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    let c = !fold(sum(&f[14..34], 0));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&5201u16.to_be_bytes());
    f[38..42].copy_from_slice(&1000u32.to_be_bytes());
    f[46] = 0x50;
    f[47] = 0x18;
    f[48..50].copy_from_slice(&[0xff, 0xff]);
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    let pseudo = pseudo_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, (ip_len - 20) as u16);
    let c = if partial {
        fold(pseudo)
    } else {
        finish(sum(&f[34..], pseudo))
    };
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

fn partial_off() -> Offload {
    Offload {
        needs_csum: true,
        csum_start: 34,
        csum_offset: 16,
        ..Offload::NONE
    }
}

fn encap(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan_encap");
    g.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(64 * 1024);
    for len in [64usize, 1514] {
        let f = tcp_frame(len, false);
        g.bench_function(format!("{len}B"), |b| {
            b.iter(|| {
                encap_segments(black_box(&f), &Offload::NONE, MAX_FRAME + 50, VNI, &mut out)
                    .unwrap()
                    .total
            })
        });
        let p = tcp_frame(len, true);
        g.bench_function(format!("{len}B/complete-csum"), |b| {
            b.iter(|| {
                encap_segments(black_box(&p), &partial_off(), MAX_FRAME + 50, VNI, &mut out)
                    .unwrap()
                    .total
            })
        });
    }
    g.finish();
}

fn decap(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan_decap");
    g.throughput(Throughput::Elements(1));
    let src: IpAddr = "198.51.100.2".parse().unwrap();
    let mut table = VtepTable::new();
    for vni in 40..48 {
        table.insert(
            vni,
            vni,
            vec![
                ("198.51.100.1".parse().unwrap(), 1),
                (src, 2),
                ("198.51.100.3".parse().unwrap(), 3),
            ],
        );
    }
    for (len, partial) in FRAME_CASES {
        let mut d = encode(VNI).to_vec();
        d.extend_from_slice(&tcp_frame(len, partial));
        g.bench_function(case_name(len, partial), |b| {
            b.iter(|| {
                let dc = table.classify(src, black_box(&d)).unwrap();
                let off = offload_for_inner(&mut d[dc.inner], INNER_MTU);
                (dc.port, off.needs_csum)
            })
        });
    }
    // A kernel peer's 64 KB super-packet: classify, describe as GSO (rewrites the field).
    let mut d = encode(VNI).to_vec();
    d.extend_from_slice(&tcp_frame(65_000, true));
    g.bench_function("64KB-super-packet", |b| {
        b.iter(|| {
            let dc = table.classify(src, black_box(&d)).unwrap();
            let off = offload_for_inner(&mut d[dc.inner], INNER_MTU);
            assert_eq!(off.gso, Gso::TcpV4);
            off.gso_size
        })
    });
    g.finish();
}

/// What an afxdp port adds to every frame it reads: the look for a checksum left
/// partial by the far end.
fn afxdp_rx(c: &mut Criterion) {
    let mut g = c.benchmark_group("afxdp_rx_partial_checksum");
    g.throughput(Throughput::Elements(1));
    for (len, partial) in FRAME_CASES {
        let f = tcp_frame(len, partial);
        g.bench_function(case_name(len, partial), |b| {
            b.iter(|| {
                let off = partial_checksum(black_box(&f));
                assert_eq!(off.needs_csum, partial);
                off.csum_start
            })
        });
    }
    g.finish();
}

fn tso(c: &mut Criterion) {
    let f = tcp_frame(14 + 65_000, true);
    let off = Offload {
        needs_csum: true,
        gso: Gso::TcpV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        ecn: false,
    };
    let mut out = Vec::with_capacity(80 * 1024);
    let segs = encap_segments(&f, &off, MAX_FRAME, VNI, &mut out)
        .unwrap()
        .count;
    for (name, per) in [("per-super-frame", 1u64), ("per-segment", segs as u64)] {
        let mut g = c.benchmark_group(format!("vxlan_tso/{name}"));
        g.throughput(Throughput::Elements(per));
        g.bench_function(format!("64KB-into-{segs}"), |b| {
            b.iter(|| {
                encap_segments(black_box(&f), &off, MAX_FRAME, VNI, &mut out)
                    .unwrap()
                    .count
            })
        });
        // What the cleartext send path does: headers only, the payload left in place
        // for the kernel to gather (the copy above is what it saves).
        g.bench_function(format!("64KB-into-{segs}/headers-only"), |b| {
            b.iter(|| {
                encap_split(black_box(&f), &off, MAX_FRAME, VNI, &mut out)
                    .unwrap()
                    .count
            })
        });
        // The GSO TAP's path: the outer headers of the whole super-frame, the kernel
        // doing the segmenting.
        let outer = Outer {
            dst_mac: [2, 0, 0, 0, 0, 9],
            src_mac: [2, 0, 0, 0, 0, 8],
            src: [198, 51, 100, 1].into(),
            dst: [198, 51, 100, 2].into(),
            sport: 40000,
            dport: 4789,
            ip_id: 1,
        };
        let mut hdr = [0u8; WHOLE_LEN];
        g.bench_function(format!("64KB-into-{segs}/whole"), |b| {
            b.iter(|| {
                encap_whole(black_box(&f), &off, MAX_FRAME, VNI, &outer, &mut hdr)
                    .unwrap()
                    .segments
            })
        });
        g.finish();
    }
}

fn checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan_checksum");
    let data: Vec<u8> = (0..65_536u32).map(|i| (i * 2_654_435_761) as u8).collect();
    for len in [1500usize, 65_536] {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("sum/{len}B"), |b| {
            b.iter(|| fold(sum(black_box(&data[..len]), 0)))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("vxlan_flow");
    g.throughput(Throughput::Elements(1));
    let f = tcp_frame(64, false);
    g.bench_function("flow_hash", |b| b.iter(|| flow_hash(black_box(&f))));
    g.finish();
}

criterion_group!(benches, encap, decap, afxdp_rx, tso, checksum);
criterion_main!(benches);
