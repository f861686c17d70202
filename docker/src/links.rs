//! Veth pairs, made and removed with iproute2's `ip` (as `vsctl attach` and `ovs-docker`
//! do) rather than a netlink crate: no well-kept synchronous netlink crate covers veth
//! creation with peer options, and `ip` is already a prerequisite of the project. Every
//! command runs with a timeout and is killed when it outlives it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::plugin::Links;

/// How long one `ip` command may take.
pub const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `ip ARGS…`; Ok with stdout, or Err with a one-line message.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let line = format!("ip {}", args.join(" "));
    let mut child = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{line}`: {e} (is iproute2 installed?)"))?;
    let deadline = Instant::now() + IP_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{line}` did not finish within {IP_TIMEOUT:?}"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for `{line}` failed: {e}")),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if status.success() {
        Ok(out)
    } else {
        let err = err.trim().replace('\n', "; ");
        Err(format!("`{line}` failed: {err}"))
    }
}

/// The real thing: `ip link` in the plugin's own network namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct IpLinks;

impl Links for IpLinks {
    fn add_veth(
        &self,
        host: &str,
        peer: &str,
        mac: Option<&str>,
        mtu: Option<u32>,
    ) -> Result<(), String> {
        let mtu_s = mtu.map(|m| m.to_string());
        let mut args: Vec<&str> = vec!["link", "add", host];
        if let Some(m) = &mtu_s {
            args.extend(["mtu", m]);
        }
        args.extend(["type", "veth", "peer", "name", peer]);
        if let Some(mac) = mac {
            args.extend(["address", mac]);
        }
        if let Some(m) = &mtu_s {
            args.extend(["mtu", m]);
        }
        ip(&args)?;
        if let Err(e) = ip(&["link", "set", host, "up"]) {
            let _ = ip(&["link", "del", host]);
            return Err(e);
        }
        Ok(())
    }

    fn set_up(&self, name: &str) -> Result<(), String> {
        ip(&["link", "set", name, "up"]).map(|_| ())
    }

    fn del_link(&self, name: &str) -> Result<(), String> {
        match ip(&["link", "del", name]) {
            Ok(_) => Ok(()),
            // Gone already (its peer was deleted, or the container took it): fine.
            Err(e) if e.contains("Cannot find device") || e.contains("does not exist") => Ok(()),
            Err(e) => Err(e),
        }
    }
}
