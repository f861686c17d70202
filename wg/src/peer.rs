//! One peer: boringtun's `Tunn` (handshake state, sessions, counters, timers) behind a
//! small API whose every answer is an [`Outcome`], so the daemon only moves bytes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};

use crate::keys::{PrivateKey, PublicKey};
use crate::message::{DropReason, INIT_LEN};

/// How often [`Peer::tick`] should run: the timers' resolution (boringtun's device
/// ticks at this rate too).
pub const TICK: Duration = Duration::from_millis(250);
/// A session is replaced by a new handshake after this long (WireGuard's
/// REKEY_AFTER_TIME); boringtun's timers enforce it.
pub const REKEY_AFTER: Duration = Duration::from_secs(120);
/// Handshake initiations a listener takes per second before it answers with cookie
/// replies (boringtun's device uses the same figure).
pub const HANDSHAKES_PER_SEC: u64 = 100;

/// What the daemon does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Send these bytes to the peer's endpoint.
    Send(&'a [u8]),
    /// A packet decrypted for the tunnel: the inner IPv4 packet.
    Deliver(&'a [u8]),
    /// Nothing to send or deliver (a keepalive, a cookie taken in, a packet queued
    /// until the handshake completes).
    Nothing,
    /// Dropped, for this reason.
    Drop(DropReason),
}

/// The handshake rate limiter of a listener, shared by its peers. [`Limiter::screen`]
/// runs on every handshake message before anything else looks at it (finding the
/// initiator's peer costs a Diffie-Hellman): it checks mac1 and counts the message;
/// past [`HANDSHAKES_PER_SEC`] in a second ("under load") it asks for a valid mac2
/// too, and answers one without it with a cookie reply. [`Limiter::reset`] must run
/// once a second.
#[derive(Clone)]
pub struct Limiter {
    door: Arc<RateLimiter>,
    /// What the peers' `Tunn`s check again: mac1 only (its limit is never reached,
    /// so a message the door let in is not counted twice nor refused there).
    mac1: Arc<RateLimiter>,
}

/// What [`Limiter::screen`] says of a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Screen<'a> {
    /// Not a handshake message, or one that may go on to its peer.
    Pass,
    /// Under load and no valid mac2: send this cookie reply to the message's source
    /// (address and port), and take the message no further.
    Cookie(&'a [u8]),
    /// Dropped, for this reason (a wrong mac1: not for this listener's key).
    Drop(DropReason),
}

impl Limiter {
    /// The limiter of the listener whose public key is `own`.
    pub fn new(own: &PublicKey) -> Limiter {
        Limiter {
            door: Arc::new(RateLimiter::new(&own.x(), HANDSHAKES_PER_SEC)),
            mac1: Arc::new(RateLimiter::new(&own.x(), u64::MAX)),
        }
    }

    /// Starts the next second's count.
    pub fn reset(&self) {
        self.door.reset_count();
    }

    /// Checks handshake message `msg` from `from` at the door; a cookie reply is
    /// written into `out` (at least [`crate::message::COOKIE_LEN`] bytes).
    pub fn screen<'a>(&self, from: IpAddr, msg: &[u8], out: &'a mut [u8]) -> Screen<'a> {
        // Only initiations and responses are rate limited (and carry macs).
        if !matches!(msg.first(), Some(1 | 2)) {
            return Screen::Pass;
        }
        if out.len() < crate::message::COOKIE_LEN {
            return Screen::Drop(DropReason::Truncated);
        }
        match self.door.verify_packet(Some(from), msg, out) {
            Ok(_) => Screen::Pass,
            Err(TunnResult::WriteToNetwork(c)) => Screen::Cookie(c),
            Err(TunnResult::Err(e)) => Screen::Drop(DropReason::from_error(e)),
            Err(_) => Screen::Drop(DropReason::BadType),
        }
    }
}

/// One peer of a listener.
pub struct Peer {
    tunn: Tunn,
    public: PublicKey,
    handshakes: u64,
    cookies: u64,
}

/// Whether `msg` (a message to send) is a cookie reply, sent instead of a handshake
/// response because the listener is under load.
pub fn is_cookie_reply(msg: &[u8]) -> bool {
    msg.first() == Some(&3)
}

fn outcome(r: TunnResult<'_>) -> Outcome<'_> {
    match r {
        TunnResult::Done => Outcome::Nothing,
        TunnResult::WriteToNetwork(b) => Outcome::Send(b),
        TunnResult::WriteToTunnelV4(b, _) => Outcome::Deliver(b),
        TunnResult::WriteToTunnelV6(..) => Outcome::Drop(DropReason::InnerNotVxlan),
        TunnResult::Err(e) => Outcome::Drop(DropReason::from_error(e)),
    }
}

impl Peer {
    /// The peer `remote` of the listener whose key is `own`. `number` (< 2^24) is how
    /// messages name it: the upper 24 bits of every receiver index it hands out.
    pub fn new(
        own: &PrivateKey,
        remote: PublicKey,
        number: u32,
        keepalive: Option<u16>,
        limiter: &Limiter,
    ) -> Peer {
        let tunn = Tunn::new(
            own.secret(),
            remote.x(),
            None,
            keepalive,
            number & 0x00ff_ffff,
            Some(limiter.mac1.clone()),
        );
        Peer {
            tunn,
            public: remote,
            handshakes: 0,
            cookies: 0,
        }
    }

    /// The peer's public key.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Encrypts `packet` (an inner IPv4 packet) into `out`: a transport message to
    /// send, or, with no session yet, a handshake initiation (or nothing if one is
    /// under way) while the packet waits in the peer's queue. `out` must hold
    /// [`crate::sealed_len`] of the packet and at least an initiation.
    pub fn seal<'a>(&mut self, packet: &[u8], out: &'a mut [u8]) -> Outcome<'a> {
        if out.len() < crate::sealed_len(packet.len()).max(INIT_LEN) {
            return Outcome::Drop(DropReason::Truncated);
        }
        outcome(self.tunn.encapsulate(packet, out))
    }

    /// Checks and decrypts `msg`, received from `from`; `out` must be at least as
    /// long as `msg` and an initiation. After a [`Outcome::Send`] call [`Peer::flush`]
    /// until it gives [`Outcome::Nothing`]: packets queued during the handshake go then.
    pub fn open<'a>(&mut self, from: IpAddr, msg: &[u8], out: &'a mut [u8]) -> Outcome<'a> {
        if msg.is_empty() {
            return Outcome::Drop(DropReason::Truncated);
        }
        if out.len() < msg.len().max(INIT_LEN) {
            return Outcome::Drop(DropReason::Truncated);
        }
        let kind = msg[0];
        let r = outcome(self.tunn.decapsulate(Some(from), msg, out));
        // A new session: an initiation answered with a response (responder), or a
        // response answered with the confirming keepalive (initiator); an initiation
        // answered with a cookie reply is none.
        match &r {
            Outcome::Send(m) if matches!((kind, m.first()), (1, Some(2)) | (2, Some(4))) => {
                self.handshakes += 1;
            }
            // A cookie reply to our initiation, taken in: the next one (the retry
            // timer's) carries a mac2 made with it.
            Outcome::Nothing if kind == 3 => self.cookies += 1,
            _ => {}
        }
        r
    }

    /// The next packet queued while there was no session, sealed, if any.
    pub fn flush<'a>(&mut self, out: &'a mut [u8]) -> Outcome<'a> {
        if out.len() < u16::MAX as usize {
            return Outcome::Nothing;
        }
        match outcome(self.tunn.decapsulate(None, &[], out)) {
            Outcome::Send(b) => Outcome::Send(b),
            _ => Outcome::Nothing,
        }
    }

    /// Runs the protocol's timers: a handshake retry, a rekey, a keepalive to send;
    /// sessions past their lifetime are dropped. Call every [`TICK`].
    pub fn tick<'a>(&mut self, out: &'a mut [u8]) -> Outcome<'a> {
        if out.len() < INIT_LEN {
            return Outcome::Nothing;
        }
        match outcome(self.tunn.update_timers(out)) {
            Outcome::Send(b) => Outcome::Send(b),
            _ => Outcome::Nothing,
        }
    }

    /// Time since the last completed handshake, if any.
    pub fn last_handshake(&self) -> Option<Duration> {
        self.tunn.time_since_last_handshake()
    }

    /// Handshakes completed with this peer (each a new session), whichever side began.
    pub fn handshakes(&self) -> u64 {
        self.handshakes
    }

    /// Cookie replies taken in: the peer was under load when we initiated.
    pub fn cookies(&self) -> u64 {
        self.cookies
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn pair() -> (Peer, Peer) {
        let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
        let (la, lb) = (Limiter::new(&ka.public()), Limiter::new(&kb.public()));
        (
            Peer::new(&ka, kb.public(), 1, None, &la),
            Peer::new(&kb, ka.public(), 2, None, &lb),
        )
    }

    fn packet() -> Vec<u8> {
        let mut p = vec![0u8; crate::inner::HEADER_LEN + 100];
        crate::inner::wrap(
            &mut p,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            4000,
            100,
        )
        .unwrap();
        p
    }

    const FROM: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    /// Runs the handshake for `a`'s first packet; returns the transport message that
    /// carried it.
    fn handshake(a: &mut Peer, b: &mut Peer) -> Vec<u8> {
        let (mut o1, mut o2) = (vec![0u8; 65536], vec![0u8; 65536]);
        let p = packet();
        let init = match a.seal(&p, &mut o1) {
            Outcome::Send(m) => m.to_vec(),
            o => panic!("{o:?}"),
        };
        assert_eq!(crate::message::classify(&init), Ok(crate::Kind::Initiation));
        let resp = match b.open(FROM, &init, &mut o2) {
            Outcome::Send(m) => m.to_vec(),
            o => panic!("{o:?}"),
        };
        assert_eq!(crate::message::classify(&resp), Ok(crate::Kind::ForPeer(1)));
        // The keepalive that confirms the session, then the queued packet.
        let keep = match a.open(FROM, &resp, &mut o1) {
            Outcome::Send(m) => m.to_vec(),
            o => panic!("{o:?}"),
        };
        assert_eq!(b.open(FROM, &keep, &mut o2), Outcome::Nothing);
        let data = match a.flush(&mut o1) {
            Outcome::Send(m) => m.to_vec(),
            o => panic!("{o:?}"),
        };
        assert_eq!(a.flush(&mut o1), Outcome::Nothing);
        data
    }

    #[test]
    fn handshake_then_transport_both_ways() {
        let (mut a, mut b) = pair();
        let data = handshake(&mut a, &mut b);
        let mut out = vec![0u8; 65536];
        assert_eq!(
            b.open(FROM, &data, &mut out),
            Outcome::Deliver(&packet()[..])
        );
        let mut o = vec![0u8; 65536];
        let back = match b.seal(&packet(), &mut o) {
            Outcome::Send(m) => m.to_vec(),
            x => panic!("{x:?}"),
        };
        assert_eq!(back.len(), crate::sealed_len(packet().len()));
        assert_eq!(
            a.open(FROM, &back, &mut out),
            Outcome::Deliver(&packet()[..])
        );
        assert!(a.last_handshake().is_some());
        assert_eq!((a.handshakes(), b.handshakes()), (1, 1));
    }

    #[test]
    fn replayed_forged_and_truncated_are_dropped_by_reason() {
        let (mut a, mut b) = pair();
        let data = handshake(&mut a, &mut b);
        let mut out = vec![0u8; 65536];
        assert!(matches!(b.open(FROM, &data, &mut out), Outcome::Deliver(_)));
        assert_eq!(
            b.open(FROM, &data, &mut out),
            Outcome::Drop(DropReason::Replayed)
        );
        let mut forged = data.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        forged[8] = forged[8].wrapping_add(1);
        assert_eq!(
            b.open(FROM, &forged, &mut out),
            Outcome::Drop(DropReason::Forged)
        );
        assert_eq!(
            b.open(FROM, &data[..20], &mut out),
            Outcome::Drop(DropReason::Truncated)
        );
    }

    #[test]
    fn an_initiation_names_its_sender() {
        let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
        let mut a = Peer::new(&ka, kb.public(), 1, None, &Limiter::new(&ka.public()));
        let mut o = vec![0u8; 2048];
        let Outcome::Send(init) = a.seal(&packet(), &mut o) else {
            panic!()
        };
        assert_eq!(crate::Identity::new(&kb).initiator(init), Some(ka.public()));
        assert_eq!(crate::Identity::new(&ka).initiator(init), None);
    }

    #[test]
    fn under_load_an_initiation_without_mac2_gets_a_cookie_and_the_retry_gets_in() {
        let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
        let (la, lb) = (Limiter::new(&ka.public()), Limiter::new(&kb.public()));
        let mut a = Peer::new(&ka, kb.public(), 1, None, &la);
        let mut b = Peer::new(&kb, ka.public(), 2, None, &lb);
        let (mut o1, mut o2) = (vec![0u8; 65536], vec![0u8; 65536]);
        let init = match a.seal(&packet(), &mut o1) {
            Outcome::Send(m) => m.to_vec(),
            o => panic!("{o:?}"),
        };
        // The second's allowance, used up (replays of that initiation would do).
        for _ in 0..HANDSHAKES_PER_SEC {
            assert_eq!(lb.screen(FROM, &init, &mut o2), Screen::Pass);
        }
        let cookie = match lb.screen(FROM, &init, &mut o2) {
            Screen::Cookie(c) => c.to_vec(),
            s => panic!("{s:?}"),
        };
        assert_eq!(cookie.len(), crate::message::COOKIE_LEN);
        assert!(is_cookie_reply(&cookie));
        // A wrong mac1 is refused at the door, loaded or not.
        let mut bad = init.clone();
        bad[120] ^= 1;
        assert_eq!(
            lb.screen(FROM, &bad, &mut o2),
            Screen::Drop(DropReason::Forged)
        );
        assert_eq!(a.open(FROM, &cookie, &mut o1), Outcome::Nothing);
        assert_eq!(a.cookies(), 1);
        // The retry (what the timer sends after REKEY_TIMEOUT) carries a mac2 made
        // with the cookie: still under load, it gets in and the handshake completes.
        let retry = match a.tunn.format_handshake_initiation(&mut o1, true) {
            TunnResult::WriteToNetwork(m) => m.to_vec(),
            _ => panic!("no retry"),
        };
        assert_eq!(lb.screen(FROM, &retry, &mut o2), Screen::Pass);
        // The same from another address: the cookie is that of FROM only.
        let elsewhere = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));
        assert!(matches!(
            lb.screen(elsewhere, &retry, &mut o2),
            Screen::Cookie(_)
        ));
        let resp = match b.open(FROM, &retry, &mut o2) {
            Outcome::Send(m) => m.to_vec(),
            o => panic!("{o:?}"),
        };
        assert!(matches!(a.open(FROM, &resp, &mut o1), Outcome::Send(_)));
        assert_eq!((a.handshakes(), b.handshakes()), (1, 1));
        // A new second: no mac2 needed.
        std::thread::sleep(Duration::from_millis(1050));
        lb.reset();
        assert_eq!(lb.screen(elsewhere, &init, &mut o2), Screen::Pass);
    }

    #[test]
    fn small_buffers_are_refused_not_a_panic() {
        let (mut a, _) = pair();
        let mut o = vec![0u8; 20];
        assert_eq!(
            a.seal(&packet(), &mut o),
            Outcome::Drop(DropReason::Truncated)
        );
        assert_eq!(
            a.open(FROM, &[4u8; 40], &mut o),
            Outcome::Drop(DropReason::Truncated)
        );
    }
}
