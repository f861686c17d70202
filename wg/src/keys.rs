//! Curve25519 key pairs in the form `wg genkey` / `wg pubkey` print: 32 bytes, base64.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use boringtun::x25519;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a WireGuard key (44 characters of base64 for 32 bytes): {0:?}")]
    Format(String),
    #[error("the all-zero public key is not a key")]
    Zero,
}

fn decode(s: &str) -> Result<[u8; 32], KeyError> {
    let t = s.trim();
    let bytes = STANDARD
        .decode(t)
        .map_err(|_| KeyError::Format(t.chars().take(60).collect()))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| KeyError::Format(t.chars().take(60).collect()))
}

/// A peer's public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Reads the base64 form; refuses the all-zero key (no peer has it).
    pub fn parse(s: &str) -> Result<PublicKey, KeyError> {
        let k = decode(s)?;
        if k == [0; 32] {
            return Err(KeyError::Zero);
        }
        Ok(PublicKey(k))
    }
    pub(crate) fn x(&self) -> x25519::PublicKey {
        x25519::PublicKey::from(self.0)
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A private key. Its `Debug` does not show it.
#[derive(Clone)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> PrivateKey {
        let s = x25519::StaticSecret::random_from_rng(rand_core::OsRng);
        PrivateKey(s.to_bytes())
    }
    /// Reads the base64 form (`wg genkey`'s output).
    pub fn parse(s: &str) -> Result<PrivateKey, KeyError> {
        Ok(PrivateKey(decode(s)?))
    }
    /// The base64 form, for the key file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(x25519::PublicKey::from(&self.secret()).to_bytes())
    }
    pub(crate) fn secret(&self) -> x25519::StaticSecret {
        x25519::StaticSecret::from(self.0)
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(public {})", self.public())
    }
}

/// A listener's own key pair, which an initiation is addressed to.
#[derive(Clone)]
pub struct Identity {
    private: x25519::StaticSecret,
    public: x25519::PublicKey,
}

impl Identity {
    /// The identity of `key`.
    pub fn new(key: &PrivateKey) -> Identity {
        let private = key.secret();
        let public = x25519::PublicKey::from(&private);
        Identity { private, public }
    }
    /// The static public key of the sender of handshake initiation `msg` (decrypted
    /// with our private key), so the initiation can go to that peer's state; `None` if
    /// it is not an initiation addressed to us.
    pub fn initiator(&self, msg: &[u8]) -> Option<PublicKey> {
        match boringtun::noise::Tunn::parse_incoming_packet(msg) {
            Ok(boringtun::noise::Packet::HandshakeInit(p)) => {
                boringtun::noise::handshake::parse_handshake_anon(&self.private, &self.public, &p)
                    .ok()
                    .map(|h| PublicKey(h.peer_static_public))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_wg_form() {
        // A pair `wg genkey | tee k | wg pubkey` printed.
        let k = PrivateKey::parse("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=").unwrap();
        assert_eq!(
            k.public().to_string(),
            "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
        );
        assert_eq!(
            k.to_base64(),
            "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
        );
        let p = PublicKey::parse(" HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\n").unwrap();
        assert_eq!(p, k.public());
    }

    #[test]
    fn refuses_what_is_not_a_key() {
        assert!(PublicKey::parse("").is_err());
        assert!(PublicKey::parse("abc").is_err());
        assert!(PublicKey::parse("AAAA").is_err());
        assert_eq!(
            PublicKey::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(KeyError::Zero)
        );
        assert!(PrivateKey::parse("not base64 at all!!").is_err());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            PrivateKey::generate().public(),
            PrivateKey::generate().public()
        );
    }
}
