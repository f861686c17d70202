//! The verbs against a fake `vswitchd`: a thread serving the control protocol on a
//! socket of the test's own, over a small model of bridges, networks, attached ports and
//! published ports that refuses as vswitchd does (same one-line messages), can refuse a
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

use ctl::{AttachInfo, NetInfo, Response};

use super::*;

const BR: &str = "cnibr";

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
                bridge,
                netns,
                container,
                ifname,
                ip,
                ..
            } => self
                .attach(&bridge, &container, &netns, &ifname, &ip)
                .map(|()| Data::Done),
            Request::Detach {
                bridge,
                netns,
                ifname,
                container,
            } => {
                let b = self.bridge(&bridge)?;
                let before = b.ports.len();
                b.ports.retain(|p| {
                    !p.attach.as_ref().is_some_and(|a| {
                        a.ifname == ifname
                            && (a.netns == netns || Some(&a.container) == container.as_ref())
                    })
                });
                if b.ports.len() == before {
                    return Err(format!(
                        "bridge {bridge} has no {ifname} attached to {netns}"
                    ));
                }
                Ok(Data::Done)
            }
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
