//! What arrives on a listen port: the four WireGuard message types told apart by type
//! and exact length, the peer each names, and every reason to drop one.

use boringtun::noise::errors::WireGuardError;

metrics_decl::counters! {
    /// Why a datagram on an encrypted tunnel's listen port, or a packet it carried,
    /// was dropped. Declared once: the name is what `vsctl stats` prints and the doc
    /// is the Prometheus help.
    #[derive(Debug, thiserror::Error)]
    pub enum DropReason {
        /// A VXLAN datagram in the clear: an encrypted tunnel takes none.
        CleartextRefused => "cleartext_refused" [error("cleartext VXLAN datagram on an encrypted tunnel")],
        /// Not one of the four WireGuard message types.
        BadType => "wg_bad_type" [error("not a WireGuard message")],
        /// A WireGuard type with the wrong length for it.
        Truncated => "wg_truncated" [error("WireGuard message of the wrong length")],
        /// No peer has this receiver index or static key.
        UnknownPeer => "wg_unknown_peer" [error("no peer for this WireGuard message")],
        /// Authentication failed: MAC, AEAD tag or key wrong.
        Forged => "wg_forged" [error("WireGuard message failed authentication")],
        /// A counter or handshake timestamp seen before.
        Replayed => "wg_replayed" [error("replayed WireGuard message")],
        /// For a session that is gone or was never made (expired, rekeyed away).
        Stale => "wg_stale" [error("WireGuard message for no current session")],
        /// A handshake refused under load; a cookie reply went back instead.
        UnderLoad => "wg_under_load" [error("handshake refused under load (cookie sent)")],
        /// Decrypted, but not an inner IPv4/UDP packet to the tunnel's VXLAN port.
        InnerNotVxlan => "wg_inner_not_vxlan" [error("decrypted packet is not VXLAN for this tunnel")],
    }
}

impl DropReason {
    /// The reason a boringtun error stands for.
    pub fn from_error(e: WireGuardError) -> DropReason {
        use WireGuardError as E;
        match e {
            E::DestinationBufferTooSmall | E::IncorrectPacketLength | E::InvalidPacket => {
                DropReason::Truncated
            }
            E::UnexpectedPacket | E::WrongPacketType => DropReason::BadType,
            E::WrongIndex => DropReason::UnknownPeer,
            E::WrongKey | E::InvalidMac | E::InvalidAeadTag => DropReason::Forged,
            E::InvalidTai64nTimestamp | E::WrongTai64nTimestamp | E::DuplicateCounter => {
                DropReason::Replayed
            }
            E::InvalidCounter | E::NoCurrentSession | E::ConnectionExpired | E::LockFailed => {
                DropReason::Stale
            }
            E::UnderLoad => DropReason::UnderLoad,
        }
    }
}

/// Message types (little-endian u32 with three zero bytes, WireGuard §5.4).
const INIT: u8 = 1;
const RESPONSE: u8 = 2;
const COOKIE: u8 = 3;
const DATA: u8 = 4;
/// Lengths of the fixed-size messages, and the least a transport message has.
pub const INIT_LEN: usize = 148;
pub const RESPONSE_LEN: usize = 92;
pub const COOKIE_LEN: usize = 64;
pub const DATA_MIN_LEN: usize = 32;

/// What a datagram is, as far as can be told without keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A handshake initiation: the peer is found by its static key
    /// ([`crate::Identity::initiator`]).
    Initiation,
    /// A message for the peer whose receiver index has these upper 24 bits (the peer
    /// number given to [`crate::Peer::new`]).
    ForPeer(u32),
}

/// Says what `msg` is and which peer it is for, or why it is dropped.
pub fn classify(msg: &[u8]) -> Result<Kind, DropReason> {
    // A VXLAN header has flags 0x08 and three reserved zero bytes: a cleartext
    // datagram sent at the listen port (or a plain tunnel misconfigured to it).
    if msg.len() >= 8 && msg[0] == 0x08 && msg[1..4] == [0, 0, 0] {
        return Err(DropReason::CleartextRefused);
    }
    let Some(head) = msg.get(..4) else {
        return Err(DropReason::Truncated);
    };
    if head[1..] != [0, 0, 0] {
        return Err(DropReason::BadType);
    }
    let (exact, min) = match head[0] {
        INIT => (Some(INIT_LEN), INIT_LEN),
        RESPONSE => (Some(RESPONSE_LEN), RESPONSE_LEN),
        COOKIE => (Some(COOKIE_LEN), COOKIE_LEN),
        DATA => (None, DATA_MIN_LEN),
        _ => return Err(DropReason::BadType),
    };
    if exact.is_some_and(|n| n != msg.len()) || msg.len() < min {
        return Err(DropReason::Truncated);
    }
    if head[0] == INIT {
        return Ok(Kind::Initiation);
    }
    // The receiver index: bytes 8..12 of a response, 4..8 of the others.
    let at = if head[0] == RESPONSE { 8 } else { 4 };
    let idx = u32::from_le_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
    Ok(Kind::ForPeer(idx >> 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_types_apart() {
        let mut m = vec![0u8; 148];
        m[0] = 1;
        assert_eq!(classify(&m), Ok(Kind::Initiation));
        let mut r = vec![0u8; 92];
        r[0] = 2;
        r[8..12].copy_from_slice(&(0x0012_3456_u32 << 8 | 7).to_le_bytes());
        assert_eq!(classify(&r), Ok(Kind::ForPeer(0x0012_3456)));
        let mut d = vec![0u8; 32];
        d[0] = 4;
        d[4..8].copy_from_slice(&(5u32 << 8).to_le_bytes());
        assert_eq!(classify(&d), Ok(Kind::ForPeer(5)));
    }

    #[test]
    fn drops_by_reason() {
        assert_eq!(classify(&[]), Err(DropReason::Truncated));
        assert_eq!(classify(&[4, 0]), Err(DropReason::Truncated));
        assert_eq!(classify(&[9, 0, 0, 0, 1, 2]), Err(DropReason::BadType));
        assert_eq!(classify(&[4, 1, 0, 0, 1, 2]), Err(DropReason::BadType));
        let mut m = vec![0u8; 147];
        m[0] = 1;
        assert_eq!(classify(&m), Err(DropReason::Truncated));
        let mut d = vec![0u8; 31];
        d[0] = 4;
        assert_eq!(classify(&d), Err(DropReason::Truncated));
        let mut v = vec![0u8; 50];
        v[0] = 0x08;
        v[4..7].copy_from_slice(&[0, 0, 42]);
        assert_eq!(classify(&v), Err(DropReason::CleartextRefused));
    }

    #[test]
    fn every_error_has_a_reason() {
        assert_eq!(
            DropReason::from_error(WireGuardError::DuplicateCounter),
            DropReason::Replayed
        );
        assert_eq!(
            DropReason::from_error(WireGuardError::InvalidAeadTag),
            DropReason::Forged
        );
    }
}
