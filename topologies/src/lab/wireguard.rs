//! WireGuard in a run: a switch's private key written where its `vswitchd` reads it
//! (`<db>.wg.key`, mode 0600) before it starts, and a host's `wireguard-go` interface
//! (a daemon of the run, like `vswitchd`, so that checks do not stop it) configured with
//! `wg`, with a kernel vxlan device on top.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use testlab::netns;

use super::{Lab, SHORT};
use crate::plan::WgHost;
use crate::proc::{Bg, Deadline, Opts, Output};

/// Writes `key` to `path`, readable by its owner only.
pub(super) fn write_key(path: &Path, key: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{key}\n").as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The commands that configure `w` once its TUN device exists (`ip netns exec` each).
pub fn commands(w: &WgHost, key_file: &Path) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<String>>();
    let mut v = vec![
        s(&[
            "wg",
            "set",
            &w.name,
            "private-key",
            &key_file.display().to_string(),
            "listen-port",
            &w.listen_port.to_string(),
            "peer",
            &w.peer_key,
            "endpoint",
            &format!("{}:{}", w.endpoint, w.peer_port),
            "allowed-ips",
            &w.allowed_ips.to_string(),
        ]),
        s(&["ip", "addr", "add", &w.address.to_string(), "dev", &w.name]),
        s(&["ip", "link", "set", "dev", &w.name, "up"]),
    ];
    if let Some(x) = &w.vxlan {
        v.push(s(&[
            "ip",
            "link",
            "add",
            &x.name,
            "type",
            "vxlan",
            "id",
            &x.vni.to_string(),
            "local",
            &w.address.ip.to_string(),
            "remote",
            &x.remote.to_string(),
            "dstport",
            "4789",
            "dev",
            &w.name,
        ]));
        v.push(s(&[
            "ip",
            "link",
            "set",
            "dev",
            &x.name,
            "mtu",
            &x.mtu.to_string(),
        ]));
        v.push(s(&[
            "ip",
            "addr",
            "add",
            &x.address.to_string(),
            "dev",
            &x.name,
        ]));
        v.push(s(&["ip", "link", "set", "dev", &x.name, "up"]));
    }
    v
}

impl Lab<'_> {
    /// Where host `host`'s WireGuard key file lives in this run.
    pub(super) fn wg_key_file(&self, host: &str) -> std::path::PathBuf {
        self.state.dir().join(format!("{host}.wg.key"))
    }

    /// Starts `wireguard-go` in host `host` and configures its interface.
    pub(super) fn wireguard_up(&mut self, host: &str) -> Result<()> {
        let w = self
            .plan
            .host(host)
            .and_then(|h| h.wireguard.clone())
            .ok_or_else(|| anyhow!("host {host} has no wireguard section"))?;
        let ns = self.ns(host);
        let key_file = self.wg_key_file(host);
        write_key(&key_file, &w.private_key)?;
        let log = self.state.dir().join(format!("{host}.wireguard-go.log"));
        let opts = Opts {
            own_group: true,
            ..Opts::default()
        };
        let argv = ["wireguard-go", "-f", w.name.as_str()];
        let bg = Bg::start(
            &format!("wireguard-go {host}"),
            &netns::exec_argv(&ns, &argv),
            Output::log(&log),
            &opts,
        )?;
        // Kept as a daemon of the run: the teardown stops it.
        self.daemons.push(bg);
        let deadline = Deadline::after(Duration::from_secs(10), Duration::from_millis(50));
        while !netns::link_exists(&ns, &w.name)? {
            if deadline.passed() {
                bail!(
                    "wireguard-go made no {} in {host} within 10 s: {}",
                    w.name,
                    std::fs::read_to_string(&log).unwrap_or_default().trim()
                );
            }
            deadline.pause()?;
        }
        for c in commands(&w, &key_file) {
            let a: Vec<&str> = c.iter().map(String::as_str).collect();
            self.exec(host, &a, SHORT)?.must()?;
        }
        Ok(())
    }
}
