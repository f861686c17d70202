//! The verbs against a fake `vswitchd`: a thread serving the control protocol on a
//! socket of the test's own, over a small model of bridges, networks, attached ports,
//! published ports and (when it is "in a cluster") overlays with the cluster's address
//! claims, that refuses as vswitchd does (same one-line messages), can refuse a
//! chosen request for another reason, and can let "another caller" change the model just
//! before a chosen request (a race lost, made deterministic). The IPAM plugin is a shell
//! script that hands out the address the test chose and logs what it was asked. No
//! namespace is made: `CNI_NETNS` is a plain file, which is all ADD looks at.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use ctl::{AttachInfo, NetInfo, OverlayInfo, Response};

use super::*;

const BR: &str = "cnibr";
const OV: &str = "ov";

type Hook = Box<dyn FnOnce(&mut Model) + Send>;

#[derive(Default)]
struct Model {
    bridges: Vec<BridgeInfo>,
    published: Vec<PublishedInfo>,
    /// Op names (`add-br`, …) of every request but `show`, in order.
    log: Vec<String>,
    /// Refuse the next request of this op with this message.
    refuse: Option<(String, String)>,
    /// Run just before the next request of this op is handled.
    before: Option<(String, Hook)>,
    next_port: u32,
    stop: bool,
    /// The cluster's overlays as this node sees them; None: not in a cluster.
    overlays: Option<Vec<OverlayInfo>>,
    /// The cluster's address claims: overlay, address, MAC.
    claims: Vec<(String, Ipv4Addr, String)>,
    /// Every attach request, as sent.
    attaches: Vec<Request>,
}

fn op(req: &Request) -> String {
    serde_json::to_value(req).unwrap()["op"]
        .as_str()
        .unwrap()
        .to_string()
}

fn in_subnet(ip: Ipv4Addr, subnet: &str) -> bool {
    let Ok((net, prefix)) = ctl::validate::cidr(subnet) else {
        return false;
    };
    let m = ctl::validate::mask(prefix);
    u32::from(ip) & m == u32::from(net) & m
}

impl Model {
    fn bridge(&mut self, name: &str) -> std::result::Result<&mut BridgeInfo, String> {
        self.bridges
            .iter_mut()
            .find(|b| b.name == name)
            .ok_or_else(|| format!("no bridge named {name}"))
    }

    fn add_br(&mut self, name: &str) -> std::result::Result<(), String> {
        if self.bridges.iter().any(|b| b.name == name) {
            return Err(format!("bridge {name} already exists"));
        }
        self.bridges.push(BridgeInfo {
            name: name.into(),
            aging_secs: 300,
            mac_limit: 65536,
            ip_checks: true,
            fdb_entries: 0,
            ports: Vec::new(),
            net: None,
            services: Vec::new(),
        });
        Ok(())
    }

    fn still_published(&self, bridge: &str, subnet: &str) -> std::result::Result<(), String> {
        match self.published.iter().find(|p| {
            p.target
                .parse::<SocketAddrV4>()
                .is_ok_and(|t| in_subnet(*t.ip(), subnet))
        }) {
            Some(p) => Err(format!(
                "{}/{} is published to {} in bridge {bridge}'s network; unpublish it first",
                p.proto.as_str(),
                p.host_port,
                p.target
            )),
            None => Ok(()),
        }
    }

    fn add_net(&mut self, bridge: &str, subnet: &str, gw: &str) -> std::result::Result<(), String> {
        let b = self.bridge(bridge)?;
        if let Some(n) = &b.net {
            return Err(format!(
                "bridge {bridge} already has network {} (del-net first)",
                n.subnet
            ));
        }
        b.net = Some(NetInfo {
            subnet: subnet.into(),
            gateway: gw.into(),
            mac: "02:76:00:00:00:01".into(),
            domain: None,
            upstream: Vec::new(),
        });
        Ok(())
    }

    fn attach(
        &mut self,
        bridge: &str,
        container: &str,
        netns: &str,
        ifname: &str,
        ip: &str,
    ) -> std::result::Result<(), String> {
        self.next_port += 1;
        let name = format!("va{:08x}", self.next_port);
        let b = self.bridge(bridge)?;
        if let Some(p) = b.ports.iter().find(|p| {
            p.attach
                .as_ref()
                .is_some_and(|a| a.netns == netns && a.ifname == ifname)
        }) {
            return Err(format!(
                "{netns} already has {ifname} attached (port {})",
                p.name
            ));
        }
        b.ports.push(PortInfo {
            name,
            kind: PortKind::Afpacket,
            state: "up".into(),
            reason: None,
            vlans: None,
            tunnel: None,
            external_ids: Default::default(),
            attach: Some(AttachInfo {
                container: container.into(),
                netns: netns.into(),
                ifname: ifname.into(),
                ip: ip.into(),
                names: Vec::new(),
            }),
            allowed: None,
            storm_pps: 0,
            io: None,
            names: Vec::new(),
        });
        Ok(())
    }

    /// The overlay whose bridge on this node is `bridge`.
    fn overlay_of(&self, bridge: &str) -> Option<OverlayInfo> {
        self.overlays
            .iter()
            .flatten()
            .find(|o| o.bridge.as_deref() == Some(bridge))
            .cloned()
    }

    /// The cluster's allocator: the lowest free host address of the overlay (not the
    /// gateway), with `02:42:` and the address as MAC unless one is given, which must be
    /// no other endpoint's.
    fn claim(
        &mut self,
        o: &OverlayInfo,
        mac: Option<String>,
    ) -> std::result::Result<(Ipv4Addr, u8, String), String> {
        let (net, prefix) = ctl::validate::cidr(&o.subnet)?;
        let gw: Ipv4Addr = o.gateway.parse().map_err(|_| "bad gateway".to_string())?;
        let first = u32::from(net) + 1;
        let last = u32::from(net) | !ctl::validate::mask(prefix);
        let ip = (first..last)
            .map(Ipv4Addr::from)
            .find(|a| *a != gw && !self.claims.iter().any(|(ov, c, _)| *ov == o.name && c == a))
            .ok_or_else(|| {
                format!(
                    "overlay {} has no free address left in {}",
                    o.name, o.subnet
                )
            })?;
        let mac = mac.unwrap_or_else(|| {
            let b = ip.octets();
            format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
        });
        if self
            .claims
            .iter()
            .any(|(ov, _, m)| *ov == o.name && *m == mac)
        {
            return Err(format!(
                "MAC {mac} is already an endpoint of overlay {} (on node n2)",
                o.name
            ));
        }
        self.claims.push((o.name.clone(), ip, mac.clone()));
        Ok((ip, prefix, mac))
    }

    /// The addresses claimed in overlay `name`.
    fn claimed(&self, name: &str) -> Vec<String> {
        self.claims
            .iter()
            .filter(|(o, _, _)| o == name)
            .map(|(_, ip, _)| ip.to_string())
            .collect()
    }

    fn handle(&mut self, req: Request) -> std::result::Result<Data, String> {
        let o = op(&req);
        if o != "show" {
            self.log.push(o.clone());
        }
        if self.before.as_ref().is_some_and(|(w, _)| *w == o) {
            if let Some((_, f)) = self.before.take() {
                f(self);
            }
        }
        if self.refuse.as_ref().is_some_and(|(w, _)| *w == o) {
            if let Some((_, m)) = self.refuse.take() {
                return Err(m);
            }
        }
        match req {
            Request::Show => Ok(Data::Show {
                public_key: None,
                bridges: self.bridges.clone(),
                uplink: None,
                published: self.published.clone(),
            }),
            Request::ListBr => Ok(Data::Bridges {
                bridges: self.bridges.iter().map(|b| b.name.clone()).collect(),
            }),
            Request::AddBr { bridge } => self.add_br(&bridge).map(|()| Data::Done),
            Request::DelBr { bridge } => {
                let subnet = self.bridge(&bridge)?.net.as_ref().map(|n| n.subnet.clone());
                if let Some(s) = subnet {
                    self.still_published(&bridge, &s)?;
                }
                self.bridges.retain(|b| b.name != bridge);
                Ok(Data::Done)
            }
            Request::AddNet {
                bridge,
                subnet,
                gateway,
            } => self
                .add_net(&bridge, &subnet, &gateway.to_string())
                .map(|()| Data::Done),
            Request::DelNet { bridge } => {
                let subnet = self
                    .bridge(&bridge)?
                    .net
                    .as_ref()
                    .map(|n| n.subnet.clone())
                    .ok_or_else(|| format!("bridge {bridge} has no network"))?;
                self.still_published(&bridge, &subnet)?;
                self.bridge(&bridge)?.net = None;
                Ok(Data::Done)
            }
            Request::Attach {
                ref bridge,
                ref netns,
                ref container,
                ref ifname,
                ref ip,
                ref mac,
                ..
            } => {
                self.attaches.push(req.clone());
                let (bridge, netns, container, ifname) = (
                    bridge.clone(),
                    netns.clone(),
                    container.clone(),
                    ifname.clone(),
                );
                match self.overlay_of(&bridge) {
                    Some(o) if ip.is_empty() => {
                        let (addr, prefix, mac) = self.claim(&o, mac.clone())?;
                        let cidr = format!("{addr}/{prefix}");
                        if let Err(e) = self.attach(&bridge, &container, &netns, &ifname, &cidr) {
                            self.claims.retain(|(_, c, _)| *c != addr);
                            return Err(e);
                        }
                        Ok(Data::Attached { ip: cidr, mac })
                    }
                    _ => {
                        let ip = ip.clone();
                        self.attach(&bridge, &container, &netns, &ifname, &ip)
                            .map(|()| Data::Done)
                    }
                }
            }
            Request::Detach {
                bridge,
                netns,
                ifname,
                container,
            } => {
                let b = self.bridge(&bridge)?;
                let (gone, kept): (Vec<PortInfo>, Vec<PortInfo>) =
                    b.ports.drain(..).partition(|p| {
                        p.attach.as_ref().is_some_and(|a| {
                            a.ifname == ifname
                                && (a.netns == netns || Some(&a.container) == container.as_ref())
                        })
                    });
                b.ports = kept;
                if gone.is_empty() {
                    return Err(format!(
                        "bridge {bridge} has no {ifname} attached to {netns}"
                    ));
                }
                // The address goes back to the cluster with the port.
                if let Some(o) = self.overlay_of(&bridge) {
                    let ips: Vec<Ipv4Addr> = gone
                        .iter()
                        .filter_map(|p| p.attach.as_ref()?.ip.split_once('/')?.0.parse().ok())
                        .collect();
                    self.claims
                        .retain(|(ov, ip, _)| !(*ov == o.name && ips.contains(ip)));
                }
                Ok(Data::Done)
            }
            Request::ListOverlays => match &self.overlays {
                Some(o) => Ok(Data::Overlays {
                    overlays: o.clone(),
                    store: "connected".into(),
                }),
                None => Err(NOT_IN_CLUSTER.into()),
            },
            Request::Publish {
                proto,
                host_port,
                target,
            } => {
                if self
                    .published
                    .iter()
                    .any(|p| p.proto == proto && p.host_port == host_port)
                {
                    return Err(format!(
                        "{}/{host_port} is already published",
                        proto.as_str()
                    ));
                }
                self.published.push(PublishedInfo {
                    proto,
                    host_port,
                    target: target.to_string(),
                });
                Ok(Data::Done)
            }
            Request::Unpublish { proto, host_port } => {
                let before = self.published.len();
                self.published
                    .retain(|p| !(p.proto == proto && p.host_port == host_port));
                if self.published.len() == before {
                    return Err(format!("{}/{host_port} is not published", proto.as_str()));
                }
                Ok(Data::Done)
            }
            other => Err(format!("the fake does not do {}", op(&other))),
        }
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Held for writing while a test writes its IPAM script, for reading while a plugin call
/// runs: a child forked by another test while the script is open for writing would
/// inherit that descriptor until its exec, and running the script then fails with
/// ETXTBSY ("Text file busy").
static SCRIPTS: RwLock<()> = RwLock::new(());

/// IPAM: ADD prints the result in `next`; every call's verb is logged (the plugin passes
/// `CNI_COMMAND` only: the rest of the environment is the runtime's, not set here).
const IPAM: &str = r#"#!/bin/sh
cat > /dev/null
d=$(dirname "$0")/..
echo "$CNI_COMMAND" >> "$d/ipam.log"
if [ "$CNI_COMMAND" = ADD ]; then cat "$d/next"; fi
"#;

struct Lab {
    dir: PathBuf,
    sock: PathBuf,
    model: Arc<Mutex<Model>>,
}

impl Lab {
    fn start() -> Lab {
        let dir = std::env::temp_dir().join(format!(
            "vswitch-cni-unit-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let ipam = dir.join("bin").join("fake-ipam");
        {
            let _w = SCRIPTS.write().unwrap_or_else(|p| p.into_inner());
            std::fs::write(&ipam, IPAM).unwrap();
            std::fs::set_permissions(&ipam, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let sock = dir.join("sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let model = Arc::new(Mutex::new(Model::default()));
        let m = model.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                if m.stop {
                    break;
                }
                serve(conn, &mut m);
            }
        });
        let lab = Lab { dir, sock, model };
        lab.lease("10.1.0.5/24", Some("10.1.0.1"));
        lab
    }

    fn m(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address the IPAM plugin gives next.
    fn lease(&self, cidr: &str, gw: Option<&str>) {
        let mut ip = json!({"address": cidr});
        if let Some(g) = gw {
            ip["gateway"] = json!(g);
        }
        let r = json!({"cniVersion": "1.0.0", "ips": [ip]});
        std::fs::write(self.dir.join("next"), r.to_string()).unwrap();
    }

    /// How many times the IPAM plugin was asked to release an address.
    fn released(&self) -> usize {
        std::fs::read_to_string(self.dir.join("ipam.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "DEL")
            .count()
    }

    fn conf(&self, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": "fakenet",
            "type": "vswitch",
            "bridge": BR,
            "socket": self.sock,
            "ipam": {"type": "fake-ipam"},
        });
        if let Value::Object(e) = extra {
            for (k, v) in e {
                c[k] = v;
            }
        }
        c
    }

    /// Puts the fake in a cluster with overlay [`OV`] (10.98.0.0/24, gateway .1), whose
    /// bridge is on this node.
    fn cluster(&self, encrypted: bool) {
        let mut m = self.m();
        m.add_br(OV).unwrap();
        m.add_net(OV, "10.98.0.0/24", "10.98.0.1").unwrap();
        m.overlays = Some(vec![OverlayInfo {
            name: OV.into(),
            vni: 4096,
            subnet: "10.98.0.0/24".into(),
            gateway: "10.98.0.1".into(),
            bridge: Some(OV.into()),
            remotes: vec!["198.51.100.2".into()],
            encrypted,
            listen_port: encrypted.then_some(51820),
            reserved: Vec::new(),
        }]);
    }

    /// A configuration of overlay [`OV`]: no bridge, no IPAM; `extra` merged on top.
    fn ov_conf(&self, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": "ovnet",
            "type": "vswitch",
            "overlay": OV,
            "socket": self.sock,
        });
        if let Value::Object(e) = extra {
            for (k, v) in e {
                c[k] = v;
            }
        }
        c
    }

    /// The containers attached to the overlay's bridge.
    fn on_overlay(&self) -> Vec<String> {
        self.m()
            .bridges
            .iter()
            .filter(|b| b.name == OV)
            .flat_map(|b| &b.ports)
            .filter_map(|p| p.attach.as_ref().map(|a| a.container.clone()))
            .collect()
    }

    /// The last attach request: (ip, gw, mac, mtu, vlan).
    #[allow(clippy::type_complexity)]
    fn last_attach(
        &self,
    ) -> (
        String,
        Option<Ipv4Addr>,
        Option<String>,
        Option<u32>,
        Option<u16>,
    ) {
        match self.m().attaches.last().cloned() {
            Some(Request::Attach {
                ip,
                gw,
                mac,
                mtu,
                vlan,
                ..
            }) => (ip, gw, mac, mtu, vlan),
            other => panic!("no attach: {other:?}"),
        }
    }

    fn with_port(&self, host_port: u16) -> Value {
        self.conf(json!({"runtimeConfig": {"portMappings": [
            {"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}
        ]}}))
    }

    fn netns(&self, id: &str) -> String {
        let p = self.dir.join(format!("netns-{id}"));
        std::fs::write(&p, "").unwrap();
        p.display().to_string()
    }

    fn cni(&self, cmd: &str, id: &str, conf: &Value) -> Result<Output> {
        let env = Env {
            command: cmd.into(),
            container_id: id.into(),
            netns: self.netns(id),
            ifname: "eth0".into(),
            path: self.dir.join("bin").display().to_string(),
        };
        let _r = SCRIPTS.read().unwrap_or_else(|p| p.into_inner());
        run(&env, conf.to_string().as_bytes())
    }

    /// ADD that must succeed; the result.
    fn add(&self, id: &str, conf: &Value) -> Value {
        let out = self.cni("ADD", id, conf).unwrap().unwrap();
        serde_json::from_str(&out).unwrap()
    }

    fn bridge(&self) -> Option<BridgeInfo> {
        self.m().bridges.iter().find(|b| b.name == BR).cloned()
    }

    fn attached(&self) -> Vec<String> {
        self.bridge()
            .map(|b| b.ports)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.attach.map(|a| a.container))
            .collect()
    }

    fn published(&self) -> Vec<(u16, String)> {
        self.m()
            .published
            .iter()
            .map(|p| (p.host_port, p.target.clone()))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.m().stop = true;
        // Wakes the accept loop so that it sees `stop`.
        let _ = UnixStream::connect(&self.sock);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(conn: UnixStream, m: &mut Model) {
    let mut r = BufReader::new(&conn);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || line.trim().is_empty() {
        return;
    }
    let resp = match serde_json::from_str::<Request>(&line) {
        Ok(req) => match m.handle(req) {
            Ok(d) => Response::ok(d),
            Err(e) => Response::err(e),
        },
        Err(e) => Response::err(format!("malformed request: {e}")),
    };
    let mut out = serde_json::to_string(&resp).unwrap();
    out.push('\n');
    let _ = (&conn).write_all(out.as_bytes());
}

const SAVE_FAILED: &str =
    "cannot save the config to /var/lib/vswitch/config.json: No space left on device (os error 28); nothing was changed";

#[test]
fn a_repeated_del_leaves_the_next_owners_ports_alone() {
    let lab = Lab::start();
    let ra = lab.add("ctr-a", &lab.conf(json!({})));
    let mut del_a = lab.conf(json!({}));
    del_a["prevResult"] = ra;
    assert_eq!(lab.cni("DEL", "ctr-a", &del_a).unwrap(), None);
    // The IPAM plugin gives A's old address to B, which publishes a port to it.
    lab.add("ctr-b", &lab.with_port(8080));
    assert_eq!(lab.published(), vec![(8080, "10.1.0.5:80".to_string())]);
    // The runtime tries A's DEL again: nothing of A is left, so nothing may go.
    assert_eq!(lab.cni("DEL", "ctr-a", &del_a).unwrap(), None);
    assert_eq!(lab.published(), vec![(8080, "10.1.0.5:80".to_string())]);
    assert_eq!(lab.attached(), vec!["ctr-b".to_string()]);
    // B's own DEL still takes its port.
    assert_eq!(lab.cni("DEL", "ctr-b", &lab.with_port(8080)).unwrap(), None);
    assert!(lab.published().is_empty());
}

#[test]
fn del_fails_when_vswitchd_refuses_for_another_reason_than_gone() {
    let lab = Lab::start();
    let conf = lab.with_port(8080);
    lab.add("ctr-a", &conf);

    // The detach is refused (the config cannot be saved): the port is still there, so
    // DEL fails and the lease stays.
    lab.m().refuse = Some(("detach".into(), SAVE_FAILED.into()));
    let e = lab.cni("DEL", "ctr-a", &conf).unwrap_err();
    assert_eq!(e.code, Code::Refused, "{e}");
    assert!(e.msg.contains("cannot save the config"), "{e}");
    assert_eq!(lab.attached(), vec!["ctr-a".to_string()]);
    assert_eq!(lab.released(), 0);

    // Same for the unpublish before it (the port published again, as ADD left it).
    lab.m().published.push(PublishedInfo {
        proto: L4Proto::Tcp,
        host_port: 8080,
        target: "10.1.0.5:80".into(),
    });
    lab.m().refuse = Some(("unpublish".into(), SAVE_FAILED.into()));
    let e = lab.cni("DEL", "ctr-a", &conf).unwrap_err();
    assert!(e.msg.contains("cannot save the config"), "{e}");
    assert_eq!(lab.published().len(), 1);
    assert_eq!(lab.released(), 0);

    // Both gone between DEL's show and its requests (another DEL won): success.
    lab.m().refuse = Some(("unpublish".into(), "tcp/8080 is not published".into()));
    let ns = lab.netns("ctr-a");
    lab.m().before = Some((
        "detach".into(),
        Box::new(move |m: &mut Model| {
            for b in &mut m.bridges {
                b.ports
                    .retain(|p| p.attach.as_ref().is_none_or(|a| a.netns != ns));
            }
        }),
    ));
    assert_eq!(lab.cni("DEL", "ctr-a", &conf).unwrap(), None);
    assert_eq!(lab.released(), 1);

    // The whole bridge gone meanwhile is gone too.
    lab.add("ctr-b", &lab.conf(json!({})));
    lab.m().before = Some(("detach".into(), Box::new(|m: &mut Model| m.bridges.clear())));
    assert_eq!(lab.cni("DEL", "ctr-b", &lab.conf(json!({}))).unwrap(), None);
    assert_eq!(lab.released(), 2);
}

#[test]
fn concurrent_first_adds_share_the_bridge_and_its_network() {
    // Another first ADD makes the bridge and its network after this one's show.
    let lab = Lab::start();
    lab.m().before = Some((
        "add-br".into(),
        Box::new(|m: &mut Model| {
            m.add_br(BR).unwrap();
            m.add_net(BR, "10.1.0.0/24", "10.1.0.1").unwrap();
        }),
    ));
    let r = lab.add("ctr-a", &lab.conf(json!({})));
    assert_eq!(r["ips"][0]["address"], "10.1.0.5/24", "{r}");
    assert_eq!(lab.attached(), vec!["ctr-a".to_string()]);

    // The bridge was there without a network; the other ADD adds it first.
    let lab = Lab::start();
    lab.m().add_br(BR).unwrap();
    lab.m().before = Some((
        "add-net".into(),
        Box::new(|m: &mut Model| m.add_net(BR, "10.1.0.0/24", "10.1.0.1").unwrap()),
    ));
    lab.add("ctr-a", &lab.conf(json!({})));
    assert_eq!(lab.attached(), vec!["ctr-a".to_string()]);

    // The network the other made is not this config's: the usual refusal, and the
    // other's bridge and network stay.
    let lab = Lab::start();
    lab.m().before = Some((
        "add-br".into(),
        Box::new(|m: &mut Model| {
            m.add_br(BR).unwrap();
            m.add_net(BR, "10.2.0.0/24", "10.2.0.1").unwrap();
        }),
    ));
    let e = lab.cni("ADD", "ctr-a", &lab.conf(json!({}))).unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig, "{e}");
    assert!(
        e.msg
            .contains("has network 10.2.0.0/24 with gateway 10.2.0.1"),
        "{e}"
    );
    let b = lab.bridge().unwrap();
    assert_eq!(b.net.unwrap().subnet, "10.2.0.0/24");
    assert!(b.ports.is_empty());
    assert_eq!(lab.released(), 1);
}

#[test]
fn a_failed_add_takes_back_the_bridge_and_network_it_made() {
    let taken = PublishedInfo {
        proto: L4Proto::Tcp,
        host_port: 8080,
        target: "10.9.0.9:80".into(),
    };
    // Nothing was there: the bridge and its network go with the failure.
    let lab = Lab::start();
    lab.m().published.push(taken.clone());
    let e = lab.cni("ADD", "ctr-a", &lab.with_port(8080)).unwrap_err();
    assert!(e.msg.contains("tcp/8080 is already published"), "{e}");
    assert!(lab.bridge().is_none(), "{:?}", lab.bridge());
    assert_eq!(lab.released(), 1);

    // The bridge was there (made by hand, with a port): only the network goes.
    let lab = Lab::start();
    lab.m().published.push(taken.clone());
    lab.m().add_br(BR).unwrap();
    lab.m()
        .attach(BR, "by-hand", "/run/netns/x", "eth0", "10.1.0.99/24")
        .unwrap();
    lab.cni("ADD", "ctr-a", &lab.with_port(8080)).unwrap_err();
    let b = lab.bridge().unwrap();
    assert!(b.net.is_none(), "{b:?}");
    assert_eq!(lab.attached(), vec!["by-hand".to_string()]);

    // Bridge and network were there: both stay.
    lab.m().log.clear();
    lab.m().add_net(BR, "10.1.0.0/24", "10.1.0.1").unwrap();
    lab.cni("ADD", "ctr-a", &lab.with_port(8080)).unwrap_err();
    assert!(lab.bridge().unwrap().net.is_some());
    assert!(!lab.m().log.contains(&"del-net".to_string()));

    // This call made them, but another container was attached meanwhile (its ADD found
    // them there): they are its now, and stay.
    let lab = Lab::start();
    lab.m().published.push(taken);
    let ns = lab.netns("ctr-b");
    lab.m().before = Some((
        "publish".into(),
        Box::new(move |m: &mut Model| {
            m.attach(BR, "ctr-b", &ns, "eth0", "10.1.0.6/24").unwrap();
        }),
    ));
    lab.cni("ADD", "ctr-a", &lab.with_port(8080)).unwrap_err();
    let b = lab.bridge().unwrap();
    assert!(b.net.is_some(), "{b:?}");
    assert_eq!(lab.attached(), vec!["ctr-b".to_string()]);
    let log = lab.m().log.clone();
    assert!(
        !log.contains(&"del-br".to_string()) && !log.contains(&"del-net".to_string()),
        "{log:?}"
    );
}

#[test]
fn macs_are_stable_and_local() {
    let a = mac_for("abc", "eth0");
    assert_eq!(a, mac_for("abc", "eth0"));
    assert_ne!(a, mac_for("abc", "eth1"));
    assert!(ctl::validate::unicast_mac(&a).is_ok(), "{a}");
    assert!(a.starts_with("02:"));
}

#[test]
fn results_take_the_configs_version() {
    let ipam = json!({"ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]});
    let ifs = json!([{"name":"va1"},{"name":"eth0","sandbox":"/x"}]);
    let r: Value = serde_json::from_str(&shape("1.0.0", ifs.clone(), &ipam)).unwrap();
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["ips"][0]["interface"], 1);
    assert!(r["ips"][0].get("version").is_none());
    assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");
    let r: Value = serde_json::from_str(&shape("0.4.0", ifs, &ipam)).unwrap();
    assert_eq!(r["ips"][0]["version"], "4");
}

#[test]
fn version_lists_what_it_speaks() {
    let v: Value = serde_json::from_str(&version()).unwrap();
    assert_eq!(
        v["supportedVersions"].as_array().unwrap().len(),
        conf::SUPPORTED.len()
    );
}

#[test]
fn an_overlay_add_takes_the_clusters_address_and_del_gives_it_back() {
    let lab = Lab::start();
    lab.cluster(false);
    let conf = lab.ov_conf(json!({}));
    let ra = lab.add("ctr-a", &conf);
    assert_eq!(ra["ips"][0]["address"], "10.98.0.2/24", "{ra}");
    assert_eq!(ra["ips"][0]["gateway"], "10.98.0.1", "{ra}");
    assert_eq!(ra["ips"][0]["interface"], 1, "{ra}");
    assert_eq!(
        ra["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.98.0.1"}]),
        "{ra}"
    );
    assert_eq!(ra["interfaces"][1]["mac"], "02:42:0a:62:00:02", "{ra}");
    assert_eq!(ra["interfaces"][1]["name"], "eth0", "{ra}");
    // The address is the cluster's to pick, the MAC too; a plain overlay's MTU.
    assert_eq!(
        lab.last_attach(),
        (
            String::new(),
            Some(Ipv4Addr::new(10, 98, 0, 1)),
            None,
            Some(1450),
            None
        )
    );
    // No IPAM plugin, no bridge or network made: the cluster made them.
    assert!(!lab.dir.join("ipam.log").exists());
    assert_eq!(lab.m().log, vec!["list-overlays", "attach"]);

    let rb = lab.add("ctr-b", &conf);
    assert_eq!(rb["ips"][0]["address"], "10.98.0.3/24", "{rb}");
    assert_eq!(lab.m().claimed(OV), vec!["10.98.0.2", "10.98.0.3"]);

    // CHECK compares with prevResult, without an IPAM plugin to ask.
    let mut check = conf.clone();
    check["prevResult"] = ra.clone();
    assert_eq!(lab.cni("CHECK", "ctr-a", &check).unwrap(), None);
    check["prevResult"] = rb.clone();
    let e = lab.cni("CHECK", "ctr-a", &check).unwrap_err();
    assert!(e.msg.contains("prevResult says 10.98.0.3/24"), "{e}");

    // ADD again for the same container and interface is refused, and claims nothing.
    let e = lab.cni("ADD", "ctr-a", &conf).unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig, "{e}");
    assert_eq!(lab.m().claimed(OV).len(), 2);

    // DEL detaches, which gives the address back; again, and for a stranger, is fine.
    for _ in 0..2 {
        assert_eq!(lab.cni("DEL", "ctr-a", &conf).unwrap(), None);
    }
    assert_eq!(lab.m().claimed(OV), vec!["10.98.0.3"]);
    assert_eq!(lab.on_overlay(), vec!["ctr-b".to_string()]);
    assert_eq!(lab.cni("DEL", "ctr-ghost", &conf).unwrap(), None);
    assert!(!lab.dir.join("ipam.log").exists());

    // An old version's result shape.
    let mut old = conf.clone();
    old["cniVersion"] = json!("0.4.0");
    let rc = lab.add("ctr-c", &old);
    assert_eq!(rc["cniVersion"], "0.4.0");
    assert_eq!(rc["ips"][0]["version"], "4", "{rc}");
    assert_eq!(rc["ips"][0]["address"], "10.98.0.2/24", "{rc}");
}

#[test]
fn an_encrypted_overlay_leaves_the_mtu_to_vswitchd_and_takes_the_runtimes_mac() {
    let lab = Lab::start();
    lab.cluster(true);
    let mac = json!({"runtimeConfig": {"mac": "02:AA:BB:CC:DD:EE"}});
    let r = lab.add("ctr-a", &lab.ov_conf(mac.clone()));
    assert_eq!(r["interfaces"][1]["mac"], "02:aa:bb:cc:dd:ee", "{r}");
    let (_, _, m, mtu, _) = lab.last_attach();
    assert_eq!((m.as_deref(), mtu), (Some("02:aa:bb:cc:dd:ee"), None));

    // The same MAC for another container: the cluster's refusal, as a config error,
    // and nothing left of the attempt.
    let e = lab.cni("ADD", "ctr-b", &lab.ov_conf(mac)).unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig, "{e}");
    assert!(
        e.msg.starts_with("runtimeConfig \"mac\": vswitchd: MAC 02:aa:bb:cc:dd:ee is already an endpoint of overlay ov"),
        "{e}"
    );
    assert_eq!(lab.on_overlay(), vec!["ctr-a".to_string()]);
    assert_eq!(lab.m().claimed(OV), vec!["10.98.0.2"]);

    // The config's MTU wins.
    lab.add("ctr-c", &lab.ov_conf(json!({"mtu": 1300})));
    assert_eq!(lab.last_attach().3, Some(1300));
}

#[test]
fn overlay_refusals_get_their_codes() {
    let lab = Lab::start();
    let conf = lab.ov_conf(json!({}));
    // Not in a cluster: the config asks for what this vswitchd lacks.
    let e = lab.cni("ADD", "ctr-a", &conf).unwrap_err();
    assert_eq!(e.code, Code::UnsupportedField, "{e}");
    assert!(
        e.msg.contains("not in cluster mode") && e.msg.contains("--cluster-store"),
        "{e}"
    );
    let e = lab.cni("STATUS", "ctr-a", &conf).unwrap_err();
    assert_eq!(e.code, Code::NotAvailable, "{e}");
    // Nothing was made, so there is nothing to delete.
    assert_eq!(lab.cni("DEL", "ctr-a", &conf).unwrap(), None);

    lab.cluster(false);
    assert_eq!(lab.cni("STATUS", "ctr-a", &conf).unwrap(), None);
    // An overlay the cluster does not have.
    let mut other = conf.clone();
    other["overlay"] = json!("nosuch");
    let e = lab.cni("ADD", "ctr-a", &other).unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig, "{e}");
    assert!(e.msg.contains("not known to the cluster"), "{e}");
    // A bridge that is not the overlay's.
    let e = lab
        .cni("ADD", "ctr-a", &lab.ov_conf(json!({"bridge": "elsewhere"})))
        .unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig, "{e}");
    assert!(e.msg.contains("carried by bridge ov"), "{e}");
    // Given and the same is fine.
    lab.add("ctr-a", &lab.ov_conf(json!({"bridge": OV})));

    // The store is away: try again later, nothing claimed or plugged in.
    lab.m().refuse = Some(("attach".into(), STORE_UNREACHABLE.into()));
    let e = lab.cni("ADD", "ctr-b", &conf).unwrap_err();
    assert_eq!(e.code, Code::TryAgainLater, "{e}");
    assert_eq!(lab.on_overlay(), vec!["ctr-a".to_string()]);

    // The overlay's bridge has not reached this node yet.
    if let Some(o) = lab.m().overlays.as_mut() {
        o[0].bridge = None;
    }
    let e = lab.cni("ADD", "ctr-b", &conf).unwrap_err();
    assert_eq!(e.code, Code::TryAgainLater, "{e}");
    assert!(e.msg.contains("no bridge on this node yet"), "{e}");
    assert_eq!(
        lab.cni("STATUS", "ctr-b", &conf).unwrap_err().code,
        Code::NotAvailable
    );

    // vswitchd itself away.
    let dead = lab.ov_conf(json!({"socket": lab.dir.join("no.sock")}));
    assert_eq!(
        lab.cni("ADD", "ctr-b", &dead).unwrap_err().code,
        Code::TryAgainLater
    );
    assert_eq!(lab.m().claimed(OV), vec!["10.98.0.2"]);
}

#[test]
fn a_failure_after_the_overlay_attach_detaches_and_gives_the_address_back() {
    let lab = Lab::start();
    lab.cluster(false);
    lab.m().published.push(PublishedInfo {
        proto: L4Proto::Tcp,
        host_port: 8080,
        target: "10.9.0.9:80".into(),
    });
    let conf = lab.ov_conf(json!({"runtimeConfig": {"portMappings": [
        {"hostPort": 8081, "containerPort": 80},
        {"hostPort": 8080, "containerPort": 80}
    ]}}));
    let e = lab.cni("ADD", "ctr-a", &conf).unwrap_err();
    assert_eq!(e.code, Code::Refused, "{e}");
    assert!(e.msg.contains("tcp/8080 is already published"), "{e}");
    assert!(lab.on_overlay().is_empty());
    assert!(lab.m().claimed(OV).is_empty());
    assert_eq!(lab.published(), vec![(8080, "10.9.0.9:80".to_string())]);
    assert!(lab.m().log.contains(&"detach".to_string()));
    // The overlay's bridge and network are the cluster's: never taken back.
    assert!(lab.bridge().is_none());
    assert!(lab
        .m()
        .bridges
        .iter()
        .any(|b| b.name == OV && b.net.is_some()));

    // Published ports of a good ADD go with its DEL.
    let conf = lab.ov_conf(json!({"runtimeConfig": {"portMappings": [
        {"hostPort": 8081, "containerPort": 80}
    ]}}));
    lab.add("ctr-a", &conf);
    assert!(lab
        .published()
        .contains(&(8081, "10.98.0.2:80".to_string())));
    assert_eq!(lab.cni("DEL", "ctr-a", &conf).unwrap(), None);
    assert_eq!(lab.published(), vec![(8080, "10.9.0.9:80".to_string())]);
}

#[test]
fn gc_detaches_dead_overlay_attachments_and_frees_their_addresses() {
    let lab = Lab::start();
    lab.cluster(false);
    let mut conf = lab.ov_conf(json!({}));
    lab.add("ctr-a", &conf);
    lab.add("ctr-b", &conf);
    std::fs::remove_file(lab.dir.join("netns-ctr-b")).unwrap();
    conf["cniVersion"] = json!("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(lab.cni("GC", "gc", &conf).unwrap(), None);
    assert_eq!(lab.on_overlay(), vec!["ctr-a".to_string()]);
    assert_eq!(lab.m().claimed(OV), vec!["10.98.0.2"]);
    assert!(!lab.dir.join("ipam.log").exists());
}
