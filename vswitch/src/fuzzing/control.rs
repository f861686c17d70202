//! Fuzz targets `control` and `config`: control-socket lines and config files.

use super::*;

/// A scratch directory for one harness in this process: under `$VSWITCH_FUZZ_SCRATCH`
/// if set (`scripts/fuzz.sh` sets it and removes it after the run), else on tmpfs when
/// there is one, since the store writes and fsyncs on every accepted change.
pub(super) fn scratch(tag: &str) -> PathBuf {
    let base = std::env::var_os("VSWITCH_FUZZ_SCRATCH")
        .map(PathBuf::from)
        .or_else(|| {
            ["/dev/shm", "/run/shm"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_dir())
        })
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("vswitch-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// True for requests the control harness does not hand to the controller because they
/// reach the host: they open or create interfaces (afpacket and TAP ports, the uplink),
/// bind UDP sockets (tunnels) or enter network namespaces (attach, detach).
pub fn touches_host(r: &ctl::Request) -> bool {
    use ctl::{PortKind, Request as R};
    matches!(
        r,
        R::AddPort {
            kind: PortKind::Afpacket | PortKind::Tap,
            ..
        } | R::SetUplink { .. }
            | R::AddTunnel { .. }
            | R::Attach { .. }
            | R::Detach { .. }
    )
}

/// Panics unless the error a client is sent is one line (the line protocol, and what
/// `vsctl` prints on stderr).
pub(super) fn assert_one_line(r: &ctl::Response) {
    let e = r.error.as_deref().unwrap_or("");
    assert!(
        !e.contains(['\n', '\r']),
        "control: a client is sent a multi-line error: {e:?}"
    );
}

/// Most request lines one input is read as.
pub(super) const MAX_LINES: usize = 32;

/// Fuzz target `control`: JSON lines as a client sends them on the control socket,
/// read as `server::client` reads them (a line at most `MAX_REQUEST_BYTES`, lossy UTF-8,
/// trimmed) into `ctl::Request`, and handled by a real `Controller` (no workers; its
/// config file in a scratch directory) — except the requests that reach the host (see
/// [`touches_host`]). Checks: a request survives the trip `vsctl` makes it take
/// (serialise, parse); a refused request gets a one-line error and leaves the config file
/// and `show` as they were; after an accepted one the file loads again; every answer
/// survives serialisation and renders; and a controller restored from the file shows the
/// same as the one that wrote it (a restart loses nothing).
pub fn control(data: &[u8]) {
    use crate::config::{Config, Store};
    use crate::controller::Controller;
    use ctl::{Request, Response};
    let dir = scratch("control");
    let path = dir.join("conf.json");
    let _ = std::fs::remove_file(&path);
    let cfg = Config {
        version: 1,
        ..Config::default()
    };
    let mut c = Controller::new(
        cfg,
        Store::new(&path),
        crate::dataplane::Shared::without_workers(),
    );
    let file = || std::fs::read(&path).ok();
    let show = |c: &mut Controller| c.handle(Request::Show);
    for line in data.split_inclusive(|&b| b == b'\n').take(MAX_LINES) {
        if line.len() > ctl::MAX_REQUEST_BYTES {
            // The server answers "request too large" and closes the connection.
            break;
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let req = match serde_json::from_str::<Request>(text) {
            Ok(r) => r,
            Err(e) => {
                // What the server answers a line it cannot read.
                assert_one_line(&Response::err(format!("malformed request: {e}")));
                continue;
            }
        };
        let again = serde_json::to_string(&req)
            .ok()
            .and_then(|s| serde_json::from_str::<Request>(&s).ok());
        assert_eq!(
            again.as_ref(),
            Some(&req),
            "control: request does not survive serialisation"
        );
        if touches_host(&req) {
            continue;
        }
        let (file0, show0) = (file(), show(&mut c));
        let what = format!("{req:?}");
        let resp = match c.handle(req) {
            Ok(d) => {
                let loaded = Store::new(&path).load();
                assert!(
                    loaded.is_ok(),
                    "control: after {what} the config file does not load: {loaded:?}"
                );
                let _ = ctl::render(&d);
                Response::ok(d)
            }
            Err(e) => {
                let r = Response::err(e.to_string());
                assert_one_line(&r);
                assert!(
                    file() == file0,
                    "control: refused {what} changed the config file"
                );
                assert!(
                    show(&mut c) == show0,
                    "control: refused {what} changed what show says"
                );
                r
            }
        };
        let text = serde_json::to_string(&resp).unwrap_or_default();
        let back = serde_json::from_str::<Response>(&text).ok();
        assert_eq!(
            back.as_ref(),
            Some(&resp),
            "control: response does not survive serialisation"
        );
    }
    let before = show(&mut c);
    let store = Store::new(&path);
    let Ok(cfg) = store.load() else {
        panic!("control: the config file written does not load");
    };
    let mut restored = Controller::new(cfg, store, crate::dataplane::Shared::without_workers());
    assert!(
        show(&mut restored) == before,
        "control: a controller restored from the config file shows something else"
    );
}

/// Fuzz target `config`: a config file (`vswitchd --db`) through `Store::load` (read,
/// parse, validate). Checks, for a file it accepts: the config validates; written back
/// with `Store::save` it loads as the same config and is written the same again (stable
/// files); the NAT engine and the gateway accept what it asks of them (a file that
/// loads never leaves the daemon with a refused gateway); each port's VLAN table says
/// what its VLANs say.
pub fn config(data: &[u8]) {
    use crate::config::Store;
    let dir = scratch("config");
    let path = dir.join("conf.json");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(cfg) = Store::new(&path).load() else {
        return;
    };
    assert!(
        cfg.validate().is_ok(),
        "config: loaded but does not validate"
    );
    let again = dir.join("again.json");
    let s = Store::new(&again);
    assert!(s.save(&cfg).is_ok(), "config: cannot write it back");
    let written = std::fs::read(&again).ok();
    let back = s.load();
    assert_eq!(
        back.as_ref().ok(),
        Some(&cfg),
        "config: does not load back the same: {back:?}"
    );
    assert!(s.save(&cfg).is_ok());
    assert_eq!(
        std::fs::read(&again).ok(),
        written,
        "config: written differently twice"
    );
    let nc = cfg.nat_config();
    assert!(
        Nat::new(nc.clone()).is_ok(),
        "config: the NAT engine refuses it"
    );
    let nets: Vec<NetSpec> = cfg
        .nets()
        .zip(0u32..)
        .map(|((b, subnet, gateway), bridge)| NetSpec {
            bridge,
            subnet,
            gateway,
            mac: crate::gateway::gateway_mac(&b.name),
            mesh: None,
        })
        .collect();
    let uplink = cfg.uplink_addr().map(|(addr, subnet)| UplinkSpec {
        addr,
        subnet,
        gw: cfg.uplink.as_ref().and_then(|u| u.gw),
        mac: UPLINK_MAC,
    });
    let pool = Pool::new(4, 1);
    let r = Gateway::new().configure(nc, &nets, uplink, &pool);
    assert!(
        r.is_ok(),
        "config: the gateway refuses a config that loads: {r:?}"
    );
    for p in cfg.bridges.iter().flat_map(|b| &b.ports) {
        let Some(v) = &p.vlans else { continue };
        let Some(t) = VlanTable::new(v) else {
            assert!(
                v.is_empty(),
                "config: port {} has VLANs but no table",
                p.name
            );
            continue;
        };
        for &vid in &v.untagged {
            assert!(
                t.is_member(vid) && t.is_untagged(vid),
                "config: VLAN {vid} untagged"
            );
        }
        for &vid in &v.tagged {
            assert!(
                t.is_member(vid) && !t.is_untagged(vid),
                "config: VLAN {vid} tagged"
            );
        }
        if let Some(pvid) = v.pvid {
            let c = crate::vlan::classify(Some(&t), None);
            assert_eq!(
                c.map(|c| c.vid),
                Ok(pvid),
                "config: untagged frames not in the PVID"
            );
        }
    }
}
