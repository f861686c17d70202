//! WireGuard in topology files: a switch's private key, an encrypted tunnel's peer keys
//! (one remote's, or `peers:` for several), listen port and inner addresses, and a host's `wireguard-go` interface with its one
//! peer and a kernel vxlan device on top (a plain Linux end of an encrypted tunnel).

use std::net::Ipv4Addr;

use crate::model::{Location, TunnelSpec, WireguardSpec, S};

use super::errors::Cx;
use super::{iface_name, Cidr};

/// WireGuard's UDP port unless told otherwise.
pub const WG_PORT: u16 = 51820;

/// How a tunnel is encrypted (`add-tunnel --encrypt …`).
#[derive(Debug, Clone)]
pub struct Crypto {
    /// One per remote, in the tunnel's order of remotes.
    pub peers: Vec<CryptoPeer>,
    pub listen_port: u16,
    pub inner_local: Option<Ipv4Addr>,
}

/// A remote's WireGuard key and inner address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoPeer {
    pub public_key: String,
    pub inner_remote: Option<Ipv4Addr>,
}

impl Crypto {
    /// Its `vsctl add-tunnel` arguments (`--public-key` and `--inner-remote` in the
    /// order of the `--remote`s).
    pub fn args(&self) -> Vec<String> {
        let mut v = vec!["--encrypt".to_string()];
        for p in &self.peers {
            v.extend(["--public-key".into(), p.public_key.clone()]);
        }
        if self.listen_port != WG_PORT {
            v.extend(["--listen-port".into(), self.listen_port.to_string()]);
        }
        if let Some(a) = self.inner_local {
            v.extend(["--inner-local".into(), a.to_string()]);
        }
        for a in self.peers.iter().filter_map(|p| p.inner_remote) {
            v.extend(["--inner-remote".into(), a.to_string()]);
        }
        v
    }
}

/// A host's WireGuard interface run by `wireguard-go`.
#[derive(Debug, Clone)]
pub struct WgHost {
    pub name: String,
    pub private_key: String,
    pub listen_port: u16,
    pub address: Cidr,
    pub peer_key: String,
    pub endpoint: Ipv4Addr,
    pub peer_port: u16,
    pub allowed_ips: Cidr,
    pub vxlan: Option<WgVxlan>,
}

/// A kernel vxlan device on a host's WireGuard interface.
#[derive(Debug, Clone)]
pub struct WgVxlan {
    pub name: String,
    pub vni: u32,
    pub remote: Ipv4Addr,
    pub address: Cidr,
    pub mtu: u32,
}

fn public_key(cx: &mut Cx<'_>, k: &S<String>) -> Option<String> {
    match wg::PublicKey::parse(&k.value) {
        Ok(p) => Some(p.to_string()),
        Err(e) => cx.fail(&k.referenced, format!("public key: {e}")),
    }
}

/// A private key as `wg genkey` prints it.
pub(super) fn private_key(cx: &mut Cx<'_>, k: &S<String>) -> Option<String> {
    match wg::PrivateKey::parse(&k.value) {
        Ok(p) => Some(p.to_base64()),
        Err(e) => cx.fail(&k.referenced, format!("private key: {e}")),
    }
}

fn port(cx: &mut Cx<'_>, p: Option<&S<i64>>) -> u16 {
    match p {
        None => WG_PORT,
        Some(p) => match u16::try_from(p.value).ok().filter(|p| *p > 0) {
            Some(v) => v,
            None => {
                cx.err(
                    &p.referenced,
                    format!("port {} is outside 1..=65535", p.value),
                );
                WG_PORT
            }
        },
    }
}

fn ipv4(cx: &mut Cx<'_>, what: &str, a: &S<String>) -> Option<Ipv4Addr> {
    match a.value.parse::<Ipv4Addr>() {
        Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast() => Some(ip),
        _ => cx.fail(
            &a.referenced,
            format!("{what} {:?} is not a unicast IPv4 address", a.value),
        ),
    }
}

fn cidr(cx: &mut Cx<'_>, what: &str, a: &S<String>) -> Option<Cidr> {
    match Cidr::parse(&a.value) {
        Ok(c) => Some(c),
        Err(e) => cx.fail(&a.referenced, format!("{what}: {e}")),
    }
}

/// A tunnel's encryption, if `encrypt: true`. `remotes`: the tunnel's remotes, each
/// as the file named it and its address, in order.
pub(super) fn resolve_crypto(
    cx: &mut Cx<'_>,
    t: &TunnelSpec,
    at: &Location,
    remotes: &[(String, Ipv4Addr)],
) -> Option<Crypto> {
    let on = t.encrypt.as_ref().is_some_and(|e| e.value);
    if !on {
        for (set, what) in [
            (t.public_key.is_some(), "public_key"),
            (t.peers.is_some(), "peers"),
            (t.listen_port.is_some(), "listen_port"),
            (t.inner_local.is_some(), "inner_local"),
            (t.inner_remote.is_some(), "inner_remote"),
        ] {
            if set {
                cx.err(at, format!("`{what}` needs `encrypt: true`"));
            }
        }
        return None;
    }
    let listen_port = port(cx, t.listen_port.as_ref());
    let inner_local = t
        .inner_local
        .as_ref()
        .and_then(|a| ipv4(cx, "inner_local", a));
    if let Some(p) = &t.peers {
        if t.public_key.is_some() || t.inner_remote.is_some() {
            return cx.fail(
                &p.referenced,
                "give the keys either as `public_key`/`inner_remote` (one remote) or as `peers`, not both",
            );
        }
    }
    let peers = match (&t.public_key, &t.peers) {
        (Some(k), _) => {
            if remotes.len() != 1 {
                return cx.fail(
                    at,
                    format!(
                        "`public_key` names one remote's key; this tunnel has {} remotes: list them in `peers`",
                        remotes.len()
                    ),
                );
            }
            let inner_remote = t
                .inner_remote
                .as_ref()
                .and_then(|a| ipv4(cx, "inner_remote", a));
            vec![CryptoPeer {
                public_key: public_key(cx, k)?,
                inner_remote,
            }]
        }
        (None, Some(list)) => resolve_peers(cx, list, remotes)?,
        (None, None) => {
            return cx.fail(
                at,
                "an encrypted tunnel needs the remote's `public_key` (or `peers`, one per remote)",
            )
        }
    };
    Some(Crypto {
        peers,
        listen_port,
        inner_local,
    })
}

/// `peers:` of an encrypted tunnel: exactly one per remote, each key valid and its own,
/// inner addresses for all or for none; returned in the order of `remotes`.
fn resolve_peers(
    cx: &mut Cx<'_>,
    list: &S<Vec<S<crate::model::TunnelPeerSpec>>>,
    remotes: &[(String, Ipv4Addr)],
) -> Option<Vec<CryptoPeer>> {
    let before = cx.errs.len();
    let mut found: Vec<Option<CryptoPeer>> = vec![None; remotes.len()];
    for p in &list.value {
        let at = &p.referenced;
        let p = &p.value;
        let r = &p.remote.value;
        let Some(i) = remotes
            .iter()
            .position(|(named, ip)| named == r || ip.to_string() == *r)
        else {
            let names: Vec<&str> = remotes.iter().map(|(n, _)| n.as_str()).collect();
            cx.err(
                &p.remote.referenced,
                format!(
                    "peer `{r}` is not a remote of this tunnel (its remotes: {})",
                    names.join(", ")
                ),
            );
            continue;
        };
        if found[i].is_some() {
            cx.err(at, format!("remote `{r}` has two entries in `peers`"));
            continue;
        }
        let Some(key) = public_key(cx, &p.public_key) else {
            continue;
        };
        if let Some((j, _)) = found
            .iter()
            .enumerate()
            .find(|(_, q)| q.as_ref().is_some_and(|q| q.public_key == key))
        {
            cx.err(
                &p.public_key.referenced,
                format!("peer `{r}`: key {key} is remote `{}`'s too", remotes[j].0),
            );
            continue;
        }
        let inner_remote = match &p.inner_remote {
            None => None,
            Some(a) => match ipv4(cx, "inner_remote", a) {
                Some(ip) => Some(ip),
                None => continue,
            },
        };
        found[i] = Some(CryptoPeer {
            public_key: key,
            inner_remote,
        });
    }
    if cx.errs.len() > before {
        return None;
    }
    if let Some(i) = found.iter().position(Option::is_none) {
        return cx.fail(
            &list.referenced,
            format!(
                "remote `{}` has no entry in `peers` (its key)",
                remotes[i].0
            ),
        );
    }
    let peers: Vec<CryptoPeer> = found.into_iter().flatten().collect();
    let with_inner = peers.iter().filter(|p| p.inner_remote.is_some()).count();
    if with_inner != 0 && with_inner != peers.len() {
        return cx.fail(
            &list.referenced,
            "`inner_remote`: give one for every peer or for none",
        );
    }
    Some(peers)
}

/// A host's `wireguard:` section.
pub(super) fn resolve_wg(cx: &mut Cx<'_>, w: &WireguardSpec) -> Option<WgHost> {
    let name = match &w.name {
        Some(n) => {
            if let Err(e) = iface_name(&n.value) {
                cx.err(&n.referenced, e);
            }
            n.value.clone()
        }
        None => "wg0".into(),
    };
    let private_key = private_key(cx, &w.private_key);
    let listen_port = port(cx, w.listen_port.as_ref());
    let address = cidr(cx, "address", &w.address);
    let p = &w.peer.value;
    let peer_key = public_key(cx, &p.public_key);
    let endpoint = ipv4(cx, "endpoint", &p.endpoint);
    let peer_port = port(cx, p.port.as_ref());
    let allowed_ips = cidr(cx, "allowed_ips", &p.allowed_ips);
    let vxlan = match &w.vxlan {
        None => None,
        Some(v) => {
            let v = &v.value;
            let vname = match &v.name {
                Some(n) => {
                    if let Err(e) = iface_name(&n.value) {
                        cx.err(&n.referenced, e);
                    }
                    n.value.clone()
                }
                None => "vx0".into(),
            };
            let vni = u32::try_from(v.vni.value)
                .ok()
                .filter(|x| ctl::validate::vni(*x).is_ok());
            if vni.is_none() {
                cx.err(
                    &v.vni.referenced,
                    format!(
                        "VNI {} is outside 0..={}",
                        v.vni.value,
                        ctl::validate::VNI_MAX
                    ),
                );
            }
            let remote = ipv4(cx, "remote", &v.remote);
            let address = cidr(cx, "address", &v.address);
            let mtu = v.mtu.as_ref().map_or(1370, |m| m.value);
            Some(WgVxlan {
                name: vname,
                vni: vni?,
                remote: remote?,
                address: address?,
                mtu,
            })
        }
    };
    if w.vxlan.is_some() && vxlan.is_none() {
        return None;
    }
    Some(WgHost {
        name,
        private_key: private_key?,
        listen_port,
        address: address?,
        peer_key: peer_key?,
        endpoint: endpoint?,
        peer_port,
        allowed_ips: allowed_ips?,
        vxlan,
    })
}
