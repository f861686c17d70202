//! Putting an interface into a container's network namespace and configuring it there,
//! for `vsctl attach`: iproute2's `ip` does the netlink work (in the container's
//! namespace through util-linux's `nsenter --net`), as `ovs-docker` does. This is the
//! control plane, run once per attach; nothing here is on a packet path.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why setting up an attachment's interfaces failed; each message names the command
/// or path, so the user sees what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot run {prog}: {why}")]
    Spawn { prog: String, why: String },
    /// The command ran and failed; `line` is the first line of its stderr.
    #[error("{cmd}: {line}")]
    Failed { cmd: String, line: String },
    #[error("{cmd} timed out")]
    TimedOut { cmd: String },
    #[error("{prog}: {why}")]
    Wait { prog: String, why: String },
    #[error("no network namespace at {path}: {why}")]
    NoNamespace { path: String, why: String },
    #[error("namespace path {0} is not UTF-8")]
    NotUtf8(String),
    #[error("cannot name the interface {ifname} in the container: {why}")]
    Rename { ifname: String, why: String },
}

/// How long one `ip` command may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How an attached interface is set up inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inside<'a> {
    pub ifname: &'a str,
    /// `A.B.C.D/N`.
    pub ip: &'a str,
    pub gw: Option<std::net::Ipv4Addr>,
    pub mac: Option<&'a str>,
    pub mtu: Option<u32>,
}

/// Runs `prog args`, returning its stderr's first line as the error.
fn run(prog: &str, args: &[&str]) -> Result<(), NetnsError> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetnsError::Spawn {
            prog: prog.to_string(),
            why: e.to_string(),
        })?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(_)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                let line = err.lines().next().unwrap_or("failed").trim().to_string();
                return Err(NetnsError::Failed {
                    cmd: format!("{prog} {}", args.join(" ")),
                    line,
                });
            }
            Ok(None) if start.elapsed() < TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NetnsError::TimedOut {
                    cmd: format!("{prog} {}", args.join(" ")),
                });
            }
            Err(e) => {
                return Err(NetnsError::Wait {
                    prog: prog.to_string(),
                    why: e.to_string(),
                })
            }
        }
    }
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    run("ip", args)
}

fn ip_in(netns: &Path, args: &[&str]) -> Result<(), NetnsError> {
    let net = format!("--net={}", netns.display());
    let mut all = vec![net.as_str(), "ip"];
    all.extend_from_slice(args);
    run("nsenter", &all)
}

/// The identity of a network namespace file (device and inode): the same while the
/// namespace lives, so a PID reused by another process is noticed.
pub fn id(netns: &Path) -> Result<String, NetnsError> {
    let m = std::fs::metadata(netns).map_err(|e| NetnsError::NoNamespace {
        path: netns.display().to_string(),
        why: e.to_string(),
    })?;
    Ok(format!("{}:{}", m.dev(), m.ino()))
}

/// The name of the switch's end of an attachment: `va` and 8 hex digits of a hash of
/// the namespace and the interface name, so that it is stable and fits IFNAMSIZ.
pub fn host_name(netns_id: &str, ifname: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in netns_id.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("va{h:08x}")
}

/// Makes a veth pair `host` ↔ `peer` in the switch's namespace.
pub fn create_veth(host: &str, peer: &str) -> Result<(), NetnsError> {
    ip(&["link", "add", host, "type", "veth", "peer", "name", peer])
}

/// Deletes interface `name` in the switch's namespace (a veth takes its peer along).
pub fn delete(name: &str) -> Result<(), NetnsError> {
    ip(&["link", "del", name])
}

/// Sets the MTU of `name` and brings it up, in the switch's namespace.
pub fn up(name: &str, mtu: Option<u32>) -> Result<(), NetnsError> {
    if let Some(m) = mtu {
        ip(&["link", "set", name, "mtu", &m.to_string()])?;
    }
    ip(&["link", "set", name, "up"])
}

/// Moves `name` into `netns` and configures it there as `inside` says: renamed, MAC,
/// MTU, address, up, default route. On failure the interface is deleted there.
pub fn place(name: &str, netns: &Path, inside: &Inside<'_>) -> Result<(), NetnsError> {
    let ns = netns
        .to_str()
        .ok_or_else(|| NetnsError::NotUtf8(netns.display().to_string()))?;
    ip(&["link", "set", name, "netns", ns])?;
    // Renamed only once the name is known to be free, and only what we made is deleted
    // on failure: never an interface the container already had.
    if let Err(e) = ip_in(netns, &["link", "set", name, "name", inside.ifname]) {
        let _ = ip_in(netns, &["link", "del", name]);
        // The user needs ip's reason (a name taken, say), not our nsenter command line.
        let text = match e {
            NetnsError::Failed { line, .. } => line,
            other => other.to_string(),
        };
        let why = text.rsplit(": ").next().unwrap_or("failed").to_string();
        return Err(NetnsError::Rename {
            ifname: inside.ifname.to_string(),
            why,
        });
    }
    let configure = || -> Result<(), NetnsError> {
        let i = inside.ifname;
        if let Some(m) = inside.mac {
            ip_in(netns, &["link", "set", i, "address", m])?;
        }
        if let Some(m) = inside.mtu {
            ip_in(netns, &["link", "set", i, "mtu", &m.to_string()])?;
        }
        ip_in(netns, &["addr", "add", inside.ip, "dev", i])?;
        ip_in(netns, &["link", "set", i, "up"])?;
        if let Some(g) = inside.gw {
            ip_in(
                netns,
                &[
                    "route",
                    "replace",
                    "default",
                    "via",
                    &g.to_string(),
                    "dev",
                    i,
                ],
            )?;
        }
        Ok(())
    };
    configure().inspect_err(|_| {
        let _ = ip_in(netns, &["link", "del", inside.ifname]);
    })
}

/// Deletes `ifname` inside `netns` (a TAP that was moved there).
pub fn delete_inside(netns: &Path, ifname: &str) -> Result<(), NetnsError> {
    ip_in(netns, &["link", "del", ifname])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_stable_short_and_distinct() {
        let a = host_name("3:4026532", "eth0");
        assert_eq!(a, host_name("3:4026532", "eth0"));
        assert_ne!(a, host_name("3:4026532", "eth1"));
        assert_ne!(a, host_name("3:4026533", "eth0"));
        assert!(a.len() <= 15 && a.starts_with("va"));
    }

    #[test]
    fn failures_name_the_command() {
        let e = run("ip", &["link", "del", "no-such-iface-x"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ip link del no-such-iface-x: "), "{e}");
        assert!(id(Path::new("/no/such/ns")).is_err());
    }
}
