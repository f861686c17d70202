//! `testlab`: the lab operations of the bench scripts (`benches/lib/lab.sh`) on the command
//! line, done by the same `testlab` functions the Rust tests use.
//!
//! - `testlab netns add [--ipv6] NS…`: quiet namespaces (`lo` up, no IPv4 forwarding, no
//!   IPv6 unless `--ipv6`); a namespace whose set-up fails is removed again.
//! - `testlab netns del NS…`: kills every process in them, then deletes them (those that
//!   exist; never fails half-way).
//! - `testlab veth NS_A IF_A NS_B IF_B [--addr-a CIDR] [--addr-b CIDR] [--mtu N]`: a veth
//!   pair, both ends up, with the addresses and MTU when given.
//! - `testlab vswitchd wait --sock SOCK --pid PID [--vsctl PATH] [--timeout-secs S]`: until
//!   the `vswitchd` with that PID answers `vsctl show` on SOCK; fails if it exits first.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use testlab::{netns, stop, vswitchd};

/// The bench scripts' lab: namespaces, veths, waiting for vswitchd.
#[derive(Debug, Parser)]
#[command(name = "testlab")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Network namespaces.
    Netns {
        #[command(subcommand)]
        op: NetnsOp,
    },
    /// A veth pair between two namespaces (or within one), both ends up.
    Veth(Veth),
    /// vswitchd.
    Vswitchd {
        #[command(subcommand)]
        op: VswitchdOp,
    },
}

#[derive(Debug, Subcommand)]
enum NetnsOp {
    /// New quiet namespaces: lo up, no forwarding, no IPv6 (unless --ipv6).
    Add {
        /// Keep IPv6 on.
        #[arg(long)]
        ipv6: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Kill everything in these namespaces and delete them (those that exist).
    Del {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct Veth {
    ns_a: String,
    if_a: String,
    ns_b: String,
    if_b: String,
    /// Address (CIDR) of IF_A.
    #[arg(long)]
    addr_a: Option<String>,
    /// Address (CIDR) of IF_B.
    #[arg(long)]
    addr_b: Option<String>,
    /// MTU of both ends.
    #[arg(long)]
    mtu: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum VswitchdOp {
    /// Wait until the vswitchd with PID answers `vsctl show` on SOCK.
    Wait {
        #[arg(long)]
        sock: PathBuf,
        #[arg(long)]
        pid: u32,
        /// The vsctl binary (default: beside this program, else on PATH).
        #[arg(long)]
        vsctl: Option<PathBuf>,
        #[arg(long, default_value_t = 15)]
        timeout_secs: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testlab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Netns {
            op: NetnsOp::Add { ipv6, names },
        } => {
            for ns in &names {
                netns::add(ns)?;
                if let Err(e) = netns::init(ns, ipv6) {
                    netns::remove_all(std::slice::from_ref(ns), Duration::ZERO);
                    return Err(e.into());
                }
            }
            Ok(())
        }
        Cmd::Netns {
            op: NetnsOp::Del { names },
        } => {
            let problems = netns::remove_all(&names, Duration::ZERO);
            if problems.is_empty() {
                Ok(())
            } else {
                bail!("{}", problems.join("; "))
            }
        }
        Cmd::Veth(v) => veth(&v),
        Cmd::Vswitchd {
            op:
                VswitchdOp::Wait {
                    sock,
                    pid,
                    vsctl,
                    timeout_secs,
                },
        } => {
            let vsctl = vsctl.unwrap_or_else(default_vsctl);
            wait_vswitchd(&vsctl, &sock, pid, Duration::from_secs(timeout_secs))
        }
    }
}

fn veth(v: &Veth) -> anyhow::Result<()> {
    netns::veth(&v.ns_a, &v.if_a, &v.ns_b, &v.if_b)?;
    for (ns, dev, addr) in [(&v.ns_a, &v.if_a, &v.addr_a), (&v.ns_b, &v.if_b, &v.addr_b)] {
        if let Some(mtu) = v.mtu {
            netns::ip(&["-n", ns, "link", "set", "dev", dev, "mtu", &mtu.to_string()])?;
        }
        if let Some(a) = addr {
            netns::addr_add(ns, dev, a)?;
        }
        netns::link_up(ns, dev)?;
    }
    Ok(())
}

/// `vsctl` beside this program (both are in cargo's target dir), else the one on PATH.
fn default_vsctl() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("vsctl")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("vsctl"))
}

/// The command name of process `pid`, if it runs.
fn comm(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(") ")?.1.split(' ').next()?;
    if state == "Z" {
        return None;
    }
    Some(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()?
            .trim()
            .to_string(),
    )
}

fn wait_vswitchd(vsctl: &Path, sock: &Path, pid: u32, timeout: Duration) -> anyhow::Result<()> {
    stop::catch_signals().context("signal handlers")?;
    let deadline = stop::Deadline::after(timeout, Duration::from_millis(100));
    loop {
        // `ip netns exec` execs vswitchd: the PID is vswitchd's once it runs.
        let name = comm(pid);
        if name.is_none() {
            bail!("pid {pid} exited before it answered on {}", sock.display());
        }
        if vswitchd::answers(vsctl, sock) {
            // It may have exec'd between the two looks: the name that counts is now's.
            let name = comm(pid);
            if name.as_deref() != Some("vswitchd") {
                bail!("pid {pid} is not vswitchd ({})", name.unwrap_or_default());
            }
            return Ok(());
        }
        if deadline.passed() {
            bail!("does not answer on {} after {timeout:?}", sock.display());
        }
        deadline.pause()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_takes_addresses_and_mtu() {
        let cli = Cli::try_parse_from([
            "testlab",
            "veth",
            "sw",
            "p1",
            "h1",
            "eth0",
            "--addr-b",
            "10.0.0.1/24",
            "--mtu",
            "1450",
        ])
        .expect("a host link parses");
        match cli.cmd {
            Cmd::Veth(v) => {
                assert_eq!((v.ns_a.as_str(), v.if_b.as_str()), ("sw", "eth0"));
                assert_eq!(v.addr_a, None);
                assert_eq!(v.addr_b.as_deref(), Some("10.0.0.1/24"));
                assert_eq!(v.mtu, Some(1450));
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn netns_needs_names_and_veth_four_ends() {
        assert!(Cli::try_parse_from(["testlab", "netns", "add"]).is_err());
        assert!(Cli::try_parse_from(["testlab", "netns", "del"]).is_err());
        assert!(Cli::try_parse_from(["testlab", "veth", "a", "b", "c"]).is_err());
        assert!(Cli::try_parse_from(["testlab", "vswitchd", "wait", "--sock", "s"]).is_err());
        let cli = Cli::try_parse_from(["testlab", "netns", "add", "--ipv6", "x", "y"])
            .expect("netns add parses");
        assert!(matches!(
            cli.cmd,
            Cmd::Netns { op: NetnsOp::Add { ipv6: true, ref names } } if names == &["x", "y"]
        ));
    }

    #[test]
    fn comm_of_a_gone_pid_is_none() {
        assert_eq!(comm(u32::MAX), None);
        assert!(comm(std::process::id()).is_some());
    }
}
