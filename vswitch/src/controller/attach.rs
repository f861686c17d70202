//! `attach` and `detach`: plugging a container into a bridge in one request, as
//! `ovs-docker add-port` does in several. The switch's end is a port like any other
//! (afpacket on a veth, or a TAP); the far end is moved into the container's network
//! namespace and configured there. The attachment is kept in the port's config, so an
//! attached TAP (which dies with the daemon) is re-created and put back after a restart
//! while the container's namespace lives; an attached veth outlives the daemon by itself.

use std::net::Ipv4Addr;
use std::path::Path;

use ctl::{validate, Data, PortKind, PortVlans};

use super::{ControlError, Controller};
use crate::config::{AttachConf, PortConf};
use crate::port::PortIo;
use crate::sys::netns::{self, Inside, NetnsError};

/// Why an `attach` or `detach` is refused, or why an attached TAP cannot go back into
/// its container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// A value `ctl::validate` refused, with its message.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("attach makes afpacket or tap ports")]
    WrongKind,
    #[error("{0} is not a namespace path")]
    NotANamespacePath(String),
    #[error("{container} already has {ifname} attached (port {port})")]
    AlreadyAttached {
        container: String,
        ifname: String,
        port: String,
    },
    #[error("cannot create TAP {host}: {why}")]
    CannotCreateTap { host: String, why: String },
    #[error("cannot attach {host}: {why}")]
    CannotAttach { host: String, why: String },
    #[error("bridge {bridge} has no {ifname} attached to {netns}")]
    NotAttached {
        bridge: String,
        ifname: String,
        netns: String,
    },
    #[error("container {0} is gone")]
    ContainerGone(String),
}

impl From<String> for AttachError {
    fn from(e: String) -> Self {
        AttachError::Invalid(e)
    }
}

/// What an `attach` request asks for.
pub(super) struct Spec {
    pub netns: String,
    pub container: String,
    pub ifname: String,
    pub ip: String,
    pub gw: Option<Ipv4Addr>,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub vlan: Option<u16>,
    pub kind: PortKind,
    pub name: Option<String>,
    pub aliases: Vec<String>,
}

fn inside(a: &AttachConf) -> Inside<'_> {
    Inside {
        ifname: &a.ifname,
        ip: &a.ip,
        gw: a.gw,
        mac: a.mac.as_deref(),
        mtu: a.mtu,
    }
}

/// The checks of an attached container's own name and its DNS names, which go into
/// the config, the DNS tables and (on an overlay) the cluster's endpoint record: as
/// bounded as `set-names` and an `ipam-claim` owner.
pub(crate) fn check_names(
    container: &str,
    name: Option<&String>,
    aliases: &[String],
) -> Result<(), AttachError> {
    ctl::validate::label("the container", container).map_err(AttachError::Invalid)?;
    if name.iter().count() + aliases.len() > super::names::MAX_NAMES {
        return Err(AttachError::Invalid(format!(
            "at most {} names a port",
            super::names::MAX_NAMES
        )));
    }
    for n in name.into_iter().chain(aliases) {
        ctl::dns::name("name", n)?;
    }
    Ok(())
}

/// The DNS name an attached container answers to: the one asked for, or the
/// container's own name when it makes a DNS name (not a PID or a path).
pub(crate) fn dns_name(asked: Option<String>, container: &str) -> Option<String> {
    asked.or_else(|| {
        let sensible = ctl::dns::name("name", container).is_ok()
            && !container.bytes().all(|b| b.is_ascii_digit());
        sensible.then(|| container.to_string())
    })
}

impl Controller {
    pub(super) fn attach_container(&mut self, bridge: &str, s: Spec) -> Result<Data, ControlError> {
        self.check_attach(&s)?;
        let (addr, _) = validate::cidr(&s.ip).map_err(AttachError::Invalid)?;
        self.check_not_vip(bridge, &[addr])?;
        let ns = Path::new(&s.netns);
        let id = netns::id(ns).map_err(AttachError::from)?;
        if let Some(p) = self.attached(&id, &s.ifname) {
            return Err(AttachError::AlreadyAttached {
                container: s.container,
                ifname: s.ifname,
                port: p,
            }
            .into());
        }
        let host = netns::host_name(&id, &s.ifname);
        self.check_new_port(bridge, &host)?;
        let name = dns_name(s.name, &s.container);
        let conf = AttachConf {
            netns: s.netns.clone(),
            netns_id: id,
            container: s.container,
            ifname: s.ifname,
            ip: s.ip,
            gw: s.gw,
            mac: s.mac,
            mtu: s.mtu,
            name,
            aliases: s.aliases,
        };
        let (io, tap_mac, peer_mac) = self.make_ends(s.kind, &host, &conf)?;
        // The container's MAC: the one asked for, or the one its interface was made with.
        let mac = conf.mac.clone().or(peer_mac).or(tap_mac.clone());
        let (allowed, storm_pps) = super::portsec::container_defaults(mac.as_deref(), &conf.ip);
        let pc = PortConf {
            name: host.clone(),
            kind: s.kind,
            mac: tap_mac,
            vlans: s.vlan.map(|v| PortVlans {
                pvid: Some(v),
                untagged: vec![v],
                tagged: Vec::new(),
            }),
            tunnel: None,
            external_ids: Default::default(),
            attach: Some(conf.clone()),
            allowed,
            storm_pps,
            names: Vec::new(),
        };
        let kind = s.kind;
        self.install_port(bridge, pc, io).inspect_err(|_| {
            if kind == PortKind::Afpacket {
                let _ = netns::delete(&host);
            } else {
                let _ = netns::delete_inside(Path::new(&conf.netns), &conf.ifname);
            }
        })?;
        Ok(Data::Done)
    }

    /// The checks of an `attach` request that need nothing from the host.
    fn check_attach(&self, s: &Spec) -> Result<(), AttachError> {
        validate::iface_name(&s.ifname)?;
        if s.ip.is_empty() {
            return Err(AttachError::Invalid(
                "attach needs --ip A.B.C.D/N here (only a cluster overlay hands out addresses)"
                    .into(),
            ));
        }
        let (addr, prefix) = validate::cidr(&s.ip)?;
        if let Some(g) = s.gw {
            validate::host_in("gateway", g, addr, prefix)?;
        }
        if let Some(m) = &s.mac {
            validate::unicast_mac(m)?;
        }
        if let Some(m) = s.mtu {
            validate::mtu(m)?;
        }
        if let Some(v) = s.vlan {
            validate::vid(v)?;
        }
        check_names(&s.container, s.name.as_ref(), &s.aliases)?;
        if !matches!(s.kind, PortKind::Afpacket | PortKind::Tap) {
            return Err(AttachError::WrongKind);
        }
        if !s.netns.starts_with('/') {
            return Err(AttachError::NotANamespacePath(s.netns.clone()));
        }
        Ok(())
    }

    /// Makes the switch's end `host` and puts the other into the container: the port's
    /// I/O, for a TAP the MAC to keep, for a veth the MAC the container's end was made
    /// with. Each step undoes what it made if a later one fails, so on error nothing is
    /// left behind.
    fn make_ends(
        &self,
        kind: PortKind,
        host: &str,
        conf: &AttachConf,
    ) -> Result<(PortIo, Option<String>, Option<String>), AttachError> {
        let ns = Path::new(&conf.netns);
        match kind {
            PortKind::Tap => {
                let io =
                    PortIo::open(PortKind::Tap, host, self.shared.rx_ring, None).map_err(|e| {
                        AttachError::CannotCreateTap {
                            host: host.to_string(),
                            why: e.to_string(),
                        }
                    })?;
                // Kept so that the TAP re-created after a restart looks the same to
                // the container's neighbours; read while it is still in our namespace.
                let tap_mac = conf.mac.clone().or(io.tap_mac().map(|m| m.to_string()));
                netns::up(host, conf.mtu)?;
                netns::place(host, ns, &inside(conf))?;
                Ok((io, tap_mac, None))
            }
            _ => {
                let peer = format!("vp{}", &host[2..]);
                netns::create_veth(host, &peer)?;
                // Read while the container's end is still in our namespace.
                let peer_mac = crate::sys::iface::hw_addr(&peer)
                    .ok()
                    .map(|m| crate::wire::MacAddr(m).to_string());
                let made = netns::up(host, conf.mtu)
                    .and_then(|()| netns::place(&peer, ns, &inside(conf)))
                    .map_err(AttachError::from)
                    .and_then(|()| {
                        PortIo::open(PortKind::Afpacket, host, self.shared.rx_ring, None).map_err(
                            |e| AttachError::CannotAttach {
                                host: host.to_string(),
                                why: e.to_string(),
                            },
                        )
                    });
                made.map(|io| (io, None, peer_mac)).inspect_err(|_| {
                    let _ = netns::delete(host);
                })
            }
        }
    }

    pub(super) fn detach_container(
        &mut self,
        bridge: &str,
        netns_path: &str,
        ifname: &str,
        container: Option<&str>,
    ) -> Result<Data, ControlError> {
        self.bridge_conf(bridge)?;
        let Some(pc) = self.find_attached(bridge, netns_path, ifname, container) else {
            return Err(AttachError::NotAttached {
                bridge: bridge.to_string(),
                ifname: ifname.to_string(),
                netns: netns_path.to_string(),
            }
            .into());
        };
        // The veth (and its far end) goes with the port.
        self.del_port(bridge, &pc.name, false)?;
        Ok(Data::Done)
    }

    /// The port of `bridge` that has `ifname` attached in `netns_path`: by identity while
    /// the namespace lives; by path (or the name the user gave) once it is gone.
    pub(super) fn find_attached(
        &self,
        bridge: &str,
        netns_path: &str,
        ifname: &str,
        container: Option<&str>,
    ) -> Option<PortConf> {
        let id = netns::id(Path::new(netns_path)).ok();
        self.cfg
            .bridge(bridge)?
            .ports
            .iter()
            .find(|p| {
                p.attach.as_ref().is_some_and(|a| {
                    a.ifname == ifname
                        && match &id {
                            Some(id) => &a.netns_id == id,
                            None => {
                                a.netns == netns_path || Some(a.container.as_str()) == container
                            }
                        }
                })
            })
            .cloned()
    }

    /// What an `attach` to `bridge` can be refused for before an address is claimed for
    /// it: a bad interface name, no such bridge or namespace, or `ifname` attached there
    /// already.
    pub fn attach_precheck(
        &self,
        bridge: &str,
        netns_path: &str,
        ifname: &str,
    ) -> Result<(), ControlError> {
        validate::iface_name(ifname).map_err(AttachError::Invalid)?;
        self.bridge_conf(bridge)?;
        if !netns_path.starts_with('/') {
            return Err(AttachError::NotANamespacePath(netns_path.to_string()).into());
        }
        let id = netns::id(Path::new(netns_path)).map_err(AttachError::from)?;
        if let Some(p) = self.attached(&id, ifname) {
            return Err(AttachError::AlreadyAttached {
                container: netns_path.to_string(),
                ifname: ifname.to_string(),
                port: p,
            }
            .into());
        }
        Ok(())
    }

    /// The port that has `ifname` attached in the namespace with identity `id`.
    fn attached(&self, id: &str, ifname: &str) -> Option<String> {
        self.cfg
            .bridges
            .iter()
            .flat_map(|b| &b.ports)
            .find(|p| {
                p.attach
                    .as_ref()
                    .is_some_and(|a| a.netns_id == id && a.ifname == ifname)
            })
            .map(|p| p.name.clone())
    }

    /// Refuses if the container a port was attached to is gone.
    pub(super) fn container_alive(&self, pc: &PortConf) -> Result<(), AttachError> {
        let Some(a) = &pc.attach else { return Ok(()) };
        match netns::id(Path::new(&a.netns)) {
            Ok(id) if id == a.netns_id => Ok(()),
            _ => Err(AttachError::ContainerGone(a.container.clone())),
        }
    }

    /// Puts a re-created TAP back into its container, if that container still lives.
    pub(super) fn replace_tap(&self, pc: &PortConf) -> Result<(), AttachError> {
        let Some(a) = &pc.attach else { return Ok(()) };
        self.container_alive(pc)?;
        let ns = Path::new(&a.netns);
        netns::up(&pc.name, a.mtu)?;
        Ok(netns::place(&pc.name, ns, &inside(a))?)
    }
}
