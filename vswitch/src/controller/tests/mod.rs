//! The controller's request handling, checked on the desired state alone: a controller
//! with no workers (messages to them go nowhere) and its config file in a scratch
//! directory. Ports in the seeded configs name interfaces that do not exist, so they
//! restore as down ports without a socket; a tunnel's local address is a TEST-NET one
//! no host has, so its VTEP cannot bind and it stays down too. Each verb's good request
//! is checked against the config it leaves; each bad one for its error (variant and
//! text) and for leaving the config, the file and `show` exactly as they were.

mod bridges;
mod cluster;
mod gateway;
mod host;
mod names;
mod ports;
mod portsec;
mod tunnels;
mod vlans;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ctl::{Data, PortKind, PortVlans, Request};

use super::{ControlError, Controller};
use crate::config::{BridgeConf, Config, PortConf, Store, TunnelConf};

/// Interfaces no test host has.
pub(super) const P1: &str = "zzno-p1";
pub(super) const P2: &str = "zzno-p2";
/// A tunnel of [`seeded`] on bridge `br0`.
pub(super) const VX: &str = "zzno-vx";
/// Its only remote.
pub(super) const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// An address (TEST-NET-1) no test host has: a VTEP there cannot bind.
pub(super) const NOWHERE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// A controller over a scratch config file, removed on drop.
pub(super) struct Lab {
    pub c: Controller,
    dir: PathBuf,
}

impl Lab {
    /// A controller restored from `cfg` (saved first, as the daemon would find it).
    pub fn with(tag: &str, cfg: Config) -> Lab {
        let dir =
            std::env::temp_dir().join(format!("vswitch-ctl-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::new(dir.join("conf.json"));
        store.save(&cfg).expect("scratch config saves");
        let cfg = store.load().expect("scratch config loads");
        let c = Controller::new(cfg, store, crate::dataplane::Shared::without_workers());
        Lab { c, dir }
    }

    /// A controller with no bridges.
    pub fn empty(tag: &str) -> Lab {
        Lab::with(
            tag,
            Config {
                version: 1,
                ..Config::default()
            },
        )
    }

    /// A controller with `br0` (ports `P1`, `P2`, tunnel `VX`) and an empty `br1`.
    pub fn seeded(tag: &str) -> Lab {
        Lab::with(tag, seeded())
    }

    pub fn cfg(&self) -> &Config {
        &self.c.cfg
    }

    /// What the config file holds now.
    pub fn saved(&self) -> Config {
        Store::new(self.dir.join("conf.json"))
            .load()
            .expect("config file loads")
    }

    /// Handles `req`, which must succeed; the file must then hold the config in force.
    pub fn ok(&mut self, req: Request) -> Data {
        let what = format!("{req:?}");
        let d = self
            .c
            .handle(req)
            .unwrap_or_else(|e| panic!("{what} refused: {e}"));
        assert_eq!(&self.saved(), self.cfg(), "{what}: file and config differ");
        d
    }

    /// Handles `req`, which must be refused with a one-line error and change nothing.
    pub fn refused(&mut self, req: Request) -> ControlError {
        let what = format!("{req:?}");
        let (cfg, file, show) = (
            self.cfg().clone(),
            self.saved(),
            self.c.handle(Request::Show),
        );
        let e = match self.c.handle(req) {
            Ok(d) => panic!("{what} accepted: {d:?}"),
            Err(e) => e,
        };
        assert!(!e.to_string().contains('\n'), "{what}: {e}");
        assert_eq!(self.cfg(), &cfg, "{what} changed the config");
        assert_eq!(self.saved(), file, "{what} changed the file");
        assert_eq!(self.c.handle(Request::Show), show, "{what} changed show");
        e
    }

    /// [`Lab::refused`], and the error's text must be `text`.
    pub fn refused_with(&mut self, req: Request, text: &str) -> ControlError {
        let e = self.refused(req);
        assert_eq!(e.to_string(), text);
        e
    }

    pub fn bridge(&self, name: &str) -> &BridgeConf {
        self.cfg()
            .bridge(name)
            .unwrap_or_else(|| panic!("no bridge {name}"))
    }

    pub fn port(&self, bridge: &str, name: &str) -> &PortConf {
        self.bridge(bridge)
            .ports
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no port {name}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn port(name: &str) -> PortConf {
    PortConf {
        name: name.into(),
        kind: PortKind::Afpacket,
        mac: None,
        vlans: None,
        tunnel: None,
        external_ids: Default::default(),
        attach: None,
        allowed: None,
        storm_pps: 0,
        names: Vec::new(),
    }
}

pub(super) fn seeded() -> Config {
    let mut br0 = BridgeConf::new("br0");
    br0.ports.push(port(P1));
    br0.ports.push(port(P2));
    br0.ports.push(PortConf {
        kind: PortKind::Vxlan,
        tunnel: Some(TunnelConf {
            vni: 100,
            remotes: vec![REMOTE],
            local: Some(NOWHERE),
            dstport: 4789,
            encrypt: None,
        }),
        ..port(VX)
    });
    Config {
        version: 1,
        bridges: vec![br0, BridgeConf::new("br1")],
        ..Config::default()
    }
}

pub(super) fn access(vid: u16) -> PortVlans {
    PortVlans {
        pvid: Some(vid),
        untagged: vec![vid],
        tagged: vec![],
    }
}

pub(super) fn ip(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

pub(super) fn br(name: &str) -> String {
    name.to_string()
}
