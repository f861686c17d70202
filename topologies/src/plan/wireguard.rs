//! WireGuard in topology files: a switch's private key, an encrypted tunnel's peer key,
//! listen port and inner addresses, and a host's `wireguard-go` interface with its one
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
    pub public_key: String,
    pub listen_port: u16,
    pub inner_local: Option<Ipv4Addr>,
    pub inner_remote: Option<Ipv4Addr>,
}

impl Crypto {
    /// Its `vsctl add-tunnel` arguments.
    pub fn args(&self) -> Vec<String> {
        let mut v = vec![
            "--encrypt".to_string(),
            "--public-key".into(),
            self.public_key.clone(),
        ];
        if self.listen_port != WG_PORT {
            v.extend(["--listen-port".into(), self.listen_port.to_string()]);
        }
        if let Some(a) = self.inner_local {
            v.extend(["--inner-local".into(), a.to_string()]);
        }
        if let Some(a) = self.inner_remote {
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

/// A tunnel's encryption, if `encrypt: true`; `remotes`: how many it has.
pub(super) fn resolve_crypto(
    cx: &mut Cx<'_>,
    t: &TunnelSpec,
    at: &Location,
    remotes: usize,
) -> Option<Crypto> {
    let on = t.encrypt.as_ref().is_some_and(|e| e.value);
    if !on {
        for (set, what) in [
            (t.public_key.is_some(), "public_key"),
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
    if remotes != 1 {
        return cx.fail(
            at,
            "an encrypted tunnel here has exactly one remote (its `public_key`)",
        );
    }
    let Some(k) = &t.public_key else {
        return cx.fail(at, "an encrypted tunnel needs the remote's `public_key`");
    };
    let public_key = public_key(cx, k)?;
    let listen_port = port(cx, t.listen_port.as_ref());
    let inner_local = t
        .inner_local
        .as_ref()
        .and_then(|a| ipv4(cx, "inner_local", a));
    let inner_remote = t
        .inner_remote
        .as_ref()
        .and_then(|a| ipv4(cx, "inner_remote", a));
    Some(Crypto {
        public_key,
        listen_port,
        inner_local,
        inner_remote,
    })
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
