//! Fuzz target `wg_message`: bytes at an encrypted tunnel's listen port, through the
//! receive path's steps (classification, the peer's open, the inner header check).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

/// A fixed key pair for the listener and its one peer, so that a found input replays.
fn keys() -> &'static (wg::PrivateKey, wg::PrivateKey) {
    static K: OnceLock<(wg::PrivateKey, wg::PrivateKey)> = OnceLock::new();
    K.get_or_init(|| {
        let k = |c: char| wg::PrivateKey::parse(&format!("{}{c}=", "A".repeat(42))).ok();
        (
            k('E').unwrap_or_else(wg::PrivateKey::generate),
            k('I').unwrap_or_else(wg::PrivateKey::generate),
        )
    })
}

/// Checks that no message panics the path, that `classify`'s answer agrees with the
/// message type and length, that a message refused by `classify` is never delivered,
/// and that what `inner::unwrap` returns lies inside the packet.
pub fn wg_message(data: &[u8]) {
    let (own, other) = keys();
    let kind = wg::message::classify(data);
    if let Ok(k) = kind {
        let t = data[0];
        assert!((1..=4).contains(&t), "classified type {t}");
        assert_eq!(k == wg::Kind::Initiation, t == 1);
    }
    let id = wg::Identity::new(own);
    if kind == Ok(wg::Kind::Initiation) {
        // Random bytes never authenticate as our peer.
        let _ = id.initiator(data);
    }
    let limiter = wg::Limiter::new(&own.public());
    let mut peer = wg::Peer::new(own, other.public(), 1, None, &limiter);
    let mut out = vec![0u8; data.len().max(wg::message::INIT_LEN)];
    let from = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    match peer.open(from, data, &mut out) {
        // No session exists: nothing can be delivered.
        wg::Outcome::Deliver(p) => panic!("delivered {} bytes without a session", p.len()),
        wg::Outcome::Send(m) => assert!(!m.is_empty()),
        _ => {}
    }
    let local = Ipv4Addr::new(192, 0, 2, 1);
    if let Ok(r) = wg::inner::unwrap(data, local, None) {
        assert!(r.start >= wg::inner::HEADER_LEN && r.end <= data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_and_length_and_a_real_initiation_pass() {
        wg_message(&[]);
        for t in 0..=5u8 {
            for len in [1, 4, 31, 32, 64, 92, 100, 148, 200] {
                let mut m = vec![0x41u8; len];
                m[0] = t;
                if len >= 4 {
                    m[1..4].fill(0);
                }
                wg_message(&m);
            }
        }
        // The peer's own initiation: answered with a response, nothing delivered.
        let (own, other) = keys();
        let limiter = wg::Limiter::new(&other.public());
        let mut p = wg::Peer::new(other, own.public(), 2, None, &limiter);
        let mut out = vec![0u8; 2048];
        let packet = [0x45u8; 60];
        if let wg::Outcome::Send(init) = p.seal(&packet, &mut out) {
            wg_message(init);
        }
    }
}
