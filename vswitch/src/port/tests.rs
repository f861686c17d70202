//! Batch logic of the port kinds that run without a namespace: a TAP port over a Unix
//! datagram socket (one frame per datagram, as a TAP device), the tunnel and gateway
//! ports, and the worker's drain through them.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;

use super::*;
use crate::pool::LARGE;
use crate::wire::vnet;

/// A TAP port whose "device" is one end of a datagram pair; the other end is the wire.
fn tap_pair() -> (PortIo, UnixDatagram) {
    let (ours, theirs) = UnixDatagram::pair().expect("socketpair");
    ours.set_nonblocking(true).expect("nonblocking");
    let file = std::fs::File::from(OwnedFd::from(ours));
    (PortIo::Tap(Tap::from_file(file)), theirs)
}

fn frame(len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![0u8; vnet::LEN];
    f.extend(std::iter::repeat_n(fill, len));
    f
}

fn port(kind: PortKind) -> PortRt {
    PortRt::with_txq_len(1, "p", kind, 0, 0, 1, 8)
}

#[test]
fn tap_reads_whole_frames_and_runts_until_empty() {
    let (io, wire) = tap_pair();
    wire.send(&frame(60, 0xaa)).unwrap();
    wire.send(&[1, 2, 3]).unwrap();
    let pool = Pool::new(4, 4);
    let (mut spare, mut scratch) = (None, vec![0u8; LARGE]);
    let mut rx = RxScratch {
        pool: &pool,
        spare: &mut spare,
        scratch: &mut scratch,
    };
    let mut seen = Vec::new();
    let read = io.rx_batch(&mut rx, |r| match r {
        Rx::Owned { buf, vlan } => {
            let b = buf.as_ref().expect("a buffer");
            seen.push(("owned", b.bytes().len(), vlan.is_none()));
        }
        Rx::Frame(f) => seen.push(("frame", f.vnet.len() + f.frame.len(), f.vnet.is_empty())),
    });
    assert_eq!(read.frames, 2);
    assert!(!read.more && read.failure.is_none());
    // A frame behind its header is handed over in a pool buffer; one shorter than the
    // header is all frame (a runt), with no header.
    assert_eq!(seen, [("owned", vnet::LEN + 60, true), ("frame", 3, true)]);
}

#[test]
fn tap_reads_into_scratch_when_the_pool_is_dry() {
    let (io, wire) = tap_pair();
    wire.send(&frame(20, 0x11)).unwrap();
    let pool = Pool::new(1, 1);
    let hold = (pool.get(LARGE), pool.get(10));
    assert!(pool.get(LARGE).is_none(), "the pool is exhausted");
    let (mut spare, mut scratch) = (None, vec![0u8; LARGE]);
    let mut rx = RxScratch {
        pool: &pool,
        spare: &mut spare,
        scratch: &mut scratch,
    };
    let mut got = None;
    let read = io.rx_batch(&mut rx, |r| {
        if let Rx::Frame(f) = r {
            got = Some((f.vnet.len(), f.frame.to_vec()));
        }
    });
    assert_eq!(read.frames, 1);
    assert_eq!(got, Some((vnet::LEN, vec![0x11; 20])));
    drop(hold);
}

#[test]
fn tap_sends_a_batch_one_frame_each() {
    let (io, wire) = tap_pair();
    let pool = Pool::new(8, 1);
    let mut pending = VecDeque::new();
    for i in 0..3u8 {
        let mut b = pool.get(100).unwrap();
        assert!(b.fill(&[&frame(40 + usize::from(i), i)]));
        pending.push_back(b);
    }
    let sent = io
        .tx_batch(&port(PortKind::Tap), &mut pending, 3, &mut Vec::new())
        .unwrap();
    assert_eq!(
        sent,
        Sent {
            taken: 3,
            errors: 0,
            oversize: 0
        }
    );
    let mut buf = [0u8; 256];
    for i in 0..3u8 {
        let n = wire.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &frame(40 + usize::from(i), i)[..]);
    }
}

#[test]
fn tap_whose_peer_is_gone_fails_the_port() {
    let (io, wire) = tap_pair();
    drop(wire);
    let pool = Pool::new(1, 1);
    let mut b = pool.get(100).unwrap();
    assert!(b.fill(&[&frame(40, 0)]));
    let mut pending = VecDeque::from([b]);
    let r = io.tx_batch(&port(PortKind::Tap), &mut pending, 1, &mut Vec::new());
    assert!(
        r.is_err(),
        "a dead device is an error for the port, not a dropped frame"
    );
}

#[test]
fn tunnel_and_gateway_ports_read_nothing_of_their_own() {
    for io in [PortIo::Vxlan(Vxlan), PortIo::Gateway(Gateway)] {
        assert_eq!(io.fd(), None);
        assert_eq!(io.ifindex(), 0);
        assert_eq!(io.tap_mac(), None);
        let pool = Pool::new(1, 1);
        let (mut spare, mut scratch) = (None, vec![0u8; 16]);
        let mut rx = RxScratch {
            pool: &pool,
            spare: &mut spare,
            scratch: &mut scratch,
        };
        let read = io.rx_batch(&mut rx, |_| panic!("nothing to read"));
        assert_eq!(read.frames, 0);
    }
    assert!(PortIo::Vxlan(Vxlan).sends());
    assert!(
        !PortIo::Gateway(Gateway).sends(),
        "the gateway's worker takes its queue"
    );
}

#[test]
fn tunnel_port_without_its_tunnel_refuses_every_frame() {
    let pool = Pool::new(4, 1);
    let mut pending: VecDeque<Buf> = (0..2)
        .map(|_| {
            let mut b = pool.get(100).unwrap();
            assert!(b.fill(&[&frame(40, 0)]));
            b
        })
        .collect();
    let sent = PortIo::Vxlan(Vxlan)
        .tx_batch(&port(PortKind::Vxlan), &mut pending, 2, &mut Vec::new())
        .unwrap();
    assert_eq!((sent.taken, sent.errors, sent.oversize), (2, 2, 0));
}
