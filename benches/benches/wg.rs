//! Cost of the encryption an encrypted tunnel adds per packet, without I/O: sealing a
//! 1400-byte inner packet into a WireGuard transport message, and opening one (replay
//! check, ChaCha20-Poly1305, the inner IPv4 header check), on an established session;
//! plus the inner IPv4/UDP header written and checked. Criterion's "time per element"
//! is ns per packet.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wg::{Limiter, Outcome, Peer, PrivateKey};

const LEN: usize = 1400;
const FROM: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// A `LEN`-byte inner packet: IPv4/UDP to port 4789 and a VXLAN-sized payload.
fn packet() -> Vec<u8> {
    let mut p = vec![0x5a; LEN];
    wg::inner::wrap(&mut p, A, B, 40000, LEN - wg::inner::HEADER_LEN).unwrap();
    p
}

/// Two peers with a session between them (a's first packet carried it).
fn pair() -> (Peer, Peer) {
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let mut a = Peer::new(&ka, kb.public(), 1, None, &Limiter::new(&ka.public()));
    let mut b = Peer::new(&kb, ka.public(), 2, None, &Limiter::new(&kb.public()));
    let (mut o1, mut o2) = (vec![0u8; 65536], vec![0u8; 65536]);
    let Outcome::Send(init) = a.seal(&packet(), &mut o1) else {
        panic!()
    };
    let init = init.to_vec();
    let Outcome::Send(resp) = b.open(FROM, &init, &mut o2) else {
        panic!()
    };
    let resp = resp.to_vec();
    let Outcome::Send(keep) = a.open(FROM, &resp, &mut o1) else {
        panic!()
    };
    let keep = keep.to_vec();
    let _ = b.open(FROM, &keep, &mut o2);
    while let Outcome::Send(m) = a.flush(&mut o1) {
        let m = m.to_vec();
        let _ = b.open(FROM, &m, &mut o2);
    }
    (a, b)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("wg");
    g.throughput(Throughput::Elements(1));
    let p = packet();
    let (mut a, mut b) = pair();
    let mut out = vec![0u8; 2048];
    g.bench_function("seal_1400B", |bn| {
        bn.iter(|| match a.seal(black_box(&p), &mut out) {
            Outcome::Send(m) => m.len(),
            o => panic!("{o:?}"),
        })
    });
    let mut sealed = vec![0u8; 2048];
    let mut plain = vec![0u8; 2048];
    g.bench_function("open_1400B", |bn| {
        bn.iter_batched(
            || match a.seal(&p, &mut sealed) {
                Outcome::Send(m) => m.to_vec(),
                o => panic!("{o:?}"),
            },
            |m| match b.open(FROM, black_box(&m), &mut plain) {
                Outcome::Deliver(d) => d.len(),
                o => panic!("{o:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    let mut hdr = p.clone();
    g.bench_function("inner_wrap_and_unwrap", |bn| {
        bn.iter(|| {
            wg::inner::wrap(&mut hdr, A, B, 40000, LEN - wg::inner::HEADER_LEN).unwrap();
            wg::inner::unwrap(black_box(&hdr), B, Some(A)).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
