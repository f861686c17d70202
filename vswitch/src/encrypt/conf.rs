//! An encrypted tunnel's settings as the config file keeps them, and their checks.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

fn default_wg_port() -> u16 {
    ctl::DEFAULT_WG_PORT
}

/// How a tunnel is encrypted: the listen port, this end's inner VTEP address, and a
/// key (and inner address) for each remote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptConf {
    #[serde(default = "default_wg_port")]
    pub listen_port: u16,
    /// Source of the inner packets, and the only destination accepted; none: the
    /// tunnel's `local` (or 0.0.0.0), destination unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_local: Option<Ipv4Addr>,
    /// One per remote of the tunnel.
    #[serde(default)]
    pub peers: Vec<PeerConf>,
}

/// A remote's WireGuard identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConf {
    /// The remote (underlay address) this is the key of.
    pub remote: Ipv4Addr,
    pub public_key: String,
    /// Destination of the inner packets to it, and the only source accepted from it;
    /// none: its underlay address, source unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_remote: Option<Ipv4Addr>,
}

impl EncryptConf {
    /// The peer settings of remote `addr`.
    pub fn peer(&self, addr: Ipv4Addr) -> Option<&PeerConf> {
        self.peers.iter().find(|p| p.remote == addr)
    }

    /// Every remote has exactly one peer entry with a valid key, keys are distinct,
    /// the inner addresses are unicast.
    pub fn check(&self, remotes: &[Ipv4Addr]) -> Result<(), String> {
        ctl::validate::dstport(self.listen_port)?;
        if let Some(a) = self.inner_local {
            inner_addr(a)?;
        }
        for (i, p) in self.peers.iter().enumerate() {
            if !remotes.contains(&p.remote) {
                return Err(format!("key given for {}, which is not a remote", p.remote));
            }
            if self.peers[..i].iter().any(|q| q.remote == p.remote) {
                return Err(format!("remote {} has two keys", p.remote));
            }
            let k = wg::PublicKey::parse(&p.public_key)
                .map_err(|e| format!("remote {}: {e}", p.remote))?;
            if self.peers[..i]
                .iter()
                .any(|q| wg::PublicKey::parse(&q.public_key).ok() == Some(k))
            {
                return Err(format!(
                    "remote {}: key {k} is another remote's too",
                    p.remote
                ));
            }
            if let Some(a) = p.inner_remote {
                inner_addr(a)?;
            }
        }
        if let Some(r) = remotes.iter().find(|r| self.peer(**r).is_none()) {
            return Err(format!(
                "remote {r} of an encrypted tunnel needs --public-key"
            ));
        }
        Ok(())
    }

    /// From a request's settings (`remotes` in the request's order).
    pub fn from_spec(spec: &ctl::EncryptSpec, remotes: &[Ipv4Addr]) -> Result<Self, String> {
        if spec.peers.len() != remotes.len() {
            return Err(format!(
                "an encrypted tunnel needs one public key per remote ({} remotes, {} keys)",
                remotes.len(),
                spec.peers.len()
            ));
        }
        let inner_local = spec.inner_local.as_ref().map(ip4).transpose()?;
        let peers = remotes
            .iter()
            .zip(&spec.peers)
            .map(|(r, p)| PeerConf::from_spec(*r, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EncryptConf {
            listen_port: spec.listen_port,
            inner_local,
            peers,
        })
    }
}

impl PeerConf {
    /// Remote `remote`'s settings from a request.
    pub fn from_spec(remote: Ipv4Addr, p: &ctl::PeerSpec) -> Result<PeerConf, String> {
        // Kept in the form `wg` prints, whatever spacing the request had.
        let key = wg::PublicKey::parse(&p.public_key).map_err(|e| e.to_string())?;
        Ok(PeerConf {
            remote,
            public_key: key.to_string(),
            inner_remote: p.inner_remote.as_ref().map(ip4).transpose()?,
        })
    }
}

fn ip4(a: &std::net::IpAddr) -> Result<Ipv4Addr, String> {
    match a {
        std::net::IpAddr::V4(v) => inner_addr(*v).map(|()| *v),
        std::net::IpAddr::V6(_) => Err(format!("inner address {a}: IPv4 only")),
    }
}

fn inner_addr(a: Ipv4Addr) -> Result<(), String> {
    if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
        return Err(format!("inner address {a} is not a unicast address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
    const R1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const R2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn conf(peers: Vec<PeerConf>) -> EncryptConf {
        EncryptConf {
            listen_port: 51820,
            inner_local: None,
            peers,
        }
    }
    fn peer(remote: Ipv4Addr, k: &str) -> PeerConf {
        PeerConf {
            remote,
            public_key: k.into(),
            inner_remote: None,
        }
    }

    #[test]
    fn every_remote_needs_one_good_distinct_key() {
        assert!(conf(vec![peer(R1, K1)]).check(&[R1]).is_ok());
        assert!(conf(vec![]).check(&[R1]).is_err());
        assert!(conf(vec![peer(R2, K1)]).check(&[R1]).is_err());
        assert!(conf(vec![peer(R1, "nope")]).check(&[R1]).is_err());
        assert!(conf(vec![peer(R1, K1), peer(R2, K1)])
            .check(&[R1, R2])
            .is_err());
        assert!(conf(vec![peer(R1, K1), peer(R1, K1)]).check(&[R1]).is_err());
        let mut c = conf(vec![peer(R1, K1)]);
        c.listen_port = 0;
        assert!(c.check(&[R1]).is_err());
    }
}
