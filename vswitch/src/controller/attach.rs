//! `attach` and `detach`: plugging a container into a bridge in one request, as
//! `ovs-docker add-port` does in several. The switch's end is a port like any other
//! (afpacket on a veth, or a TAP); the far end is moved into the container's network
//! namespace and configured there. The attachment is kept in the port's config, so an
//! attached TAP (which dies with the daemon) is re-created and put back after a restart
//! while the container's namespace lives; an attached veth outlives the daemon by itself.

use std::net::Ipv4Addr;
use std::path::Path;

use ctl::{validate, Data, PortKind, PortVlans};

use super::Controller;
use crate::config::{AttachConf, PortConf};
use crate::port::PortIo;
use crate::sys::netns::{self, Inside};

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

impl Controller {
    pub(super) fn attach_container(&mut self, bridge: &str, s: Spec) -> Result<Data, String> {
        validate::iface_name(&s.ifname)?;
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
        if !matches!(s.kind, PortKind::Afpacket | PortKind::Tap) {
            return Err("attach makes afpacket or tap ports".into());
        }
        if !s.netns.starts_with('/') {
            return Err(format!("{} is not a namespace path", s.netns));
        }
        let ns = Path::new(&s.netns);
        let id = netns::id(ns)?;
        if let Some(p) = self.attached(&id, &s.ifname) {
            return Err(format!(
                "{} already has {} attached (port {p})",
                s.container, s.ifname
            ));
        }
        let host = netns::host_name(&id, &s.ifname);
        self.check_new_port(bridge, &host)?;
        let conf = AttachConf {
            netns: s.netns.clone(),
            netns_id: id,
            container: s.container,
            ifname: s.ifname,
            ip: s.ip,
            gw: s.gw,
            mac: s.mac,
            mtu: s.mtu,
        };
        // Everything that can fail happens before the config changes; each step undoes
        // what it made if a later one fails.
        let mut tap_mac = None;
        let io = match s.kind {
            PortKind::Tap => {
                let io = PortIo::open(PortKind::Tap, &host, self.shared.rx_ring, None)
                    .map_err(|e| format!("cannot create TAP {host}: {e}"))?;
                // Kept so that the TAP re-created after a restart looks the same to
                // the container's neighbours; read while it is still in our namespace.
                tap_mac = conf.mac.clone().or(io.tap_mac().map(|m| m.to_string()));
                netns::up(&host, conf.mtu)?;
                netns::place(&host, ns, &inside(&conf))?;
                io
            }
            _ => {
                let peer = format!("vp{}", &host[2..]);
                netns::create_veth(&host, &peer)?;
                let made = netns::up(&host, conf.mtu)
                    .and_then(|()| netns::place(&peer, ns, &inside(&conf)))
                    .and_then(|()| {
                        PortIo::open(PortKind::Afpacket, &host, self.shared.rx_ring, None)
                            .map_err(|e| format!("cannot attach {host}: {e}"))
                    });
                match made {
                    Ok(io) => io,
                    Err(e) => {
                        let _ = netns::delete(&host);
                        return Err(e);
                    }
                }
            }
        };
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

    pub(super) fn detach_container(
        &mut self,
        bridge: &str,
        netns_path: &str,
        ifname: &str,
        container: Option<&str>,
    ) -> Result<Data, String> {
        let b = self.bridge_conf(bridge)?;
        // By identity while the namespace lives; by path once it is gone.
        let id = netns::id(Path::new(netns_path)).ok();
        let Some(pc) = b
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
        else {
            return Err(format!(
                "bridge {bridge} has no {ifname} attached to {netns_path}"
            ));
        };
        self.del_port(bridge, &pc.name, false)?;
        // A veth's far end goes with it; a TAP went when its file was closed.
        if pc.kind == PortKind::Afpacket {
            let _ = netns::delete(&pc.name);
        }
        Ok(Data::Done)
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
    pub(super) fn container_alive(&self, pc: &PortConf) -> Result<(), String> {
        let Some(a) = &pc.attach else { return Ok(()) };
        match netns::id(Path::new(&a.netns)) {
            Ok(id) if id == a.netns_id => Ok(()),
            _ => Err(format!("container {} is gone", a.container)),
        }
    }

    /// Puts a re-created TAP back into its container, if that container still lives.
    pub(super) fn replace_tap(&self, pc: &PortConf) -> Result<(), String> {
        let Some(a) = &pc.attach else { return Ok(()) };
        self.container_alive(pc)?;
        let ns = Path::new(&a.netns);
        netns::up(&pc.name, a.mtu)?;
        netns::place(&pc.name, ns, &inside(a))
    }
}
