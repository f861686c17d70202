//! `vsctl`: configure and inspect a running `vswitchd` (verbs follow `ovs-vsctl`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ctl::{validate, Data, PortKind, Request};

#[derive(Parser)]
#[command(name = "vsctl", version, about = "Configure and inspect vswitchd")]
struct Cli {
    /// Control socket of vswitchd [env: VSWITCH_SOCK] [default: /run/vswitch/vswitchd.sock]
    #[arg(long, global = true)]
    sock: Option<PathBuf>,
    /// Print the result as JSON (read verbs).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a bridge.
    AddBr { bridge: String },
    /// Delete a bridge and all its ports.
    DelBr { bridge: String },
    /// List bridges.
    ListBr,
    /// Add a port: attach an existing interface (afpacket) or create a TAP device (tap).
    AddPort {
        bridge: String,
        iface: String,
        #[arg(long = "type", default_value = "afpacket")]
        kind: PortKind,
    },
    /// Remove a port from a bridge.
    DelPort { bridge: String, iface: String },
    /// List the ports of a bridge.
    ListPorts { bridge: String },
    /// Show bridges, ports and their state.
    Show,
    /// Show the learned MAC table of a bridge (like `ovs-appctl fdb/show`).
    FdbShow { bridge: String },
    /// Set the MAC aging time of a bridge, in seconds.
    SetAging { bridge: String, seconds: u32 },
    /// Set the limit on learned MACs of a bridge.
    SetMacLimit { bridge: String, limit: u32 },
    /// Make a port a member of VLANs (VIDS: `10`, `10,20`, `100-199`), tagged unless
    /// --untagged; --pvid makes the (single) VID the port's PVID; --access = member of
    /// that VLAN only, untagged, PVID.
    AddVlan {
        bridge: String,
        port: String,
        vids: String,
        #[arg(long)]
        untagged: bool,
        #[arg(long)]
        pvid: bool,
        #[arg(long)]
        access: bool,
    },
    /// Remove a port from VLANs.
    DelVlan {
        bridge: String,
        port: String,
        vids: String,
    },
    /// Show the VLAN membership of every port of a bridge.
    ListVlans { bridge: String },
    /// Show counters: all bridges, one bridge, or one port.
    Stats {
        bridge: Option<String>,
        port: Option<String>,
    },
}

fn request(cmd: Cmd) -> Result<Request, String> {
    Ok(match cmd {
        Cmd::AddBr { bridge } => {
            validate::bridge_name(&bridge)?;
            Request::AddBr { bridge }
        }
        Cmd::DelBr { bridge } => Request::DelBr { bridge },
        Cmd::ListBr => Request::ListBr,
        Cmd::AddPort {
            bridge,
            iface,
            kind,
        } => {
            validate::iface_name(&iface)?;
            Request::AddPort {
                bridge,
                iface,
                kind,
            }
        }
        Cmd::DelPort { bridge, iface } => Request::DelPort { bridge, iface },
        Cmd::ListPorts { bridge } => Request::ListPorts { bridge },
        Cmd::Show => Request::Show,
        Cmd::FdbShow { bridge } => Request::FdbShow { bridge },
        Cmd::SetAging { bridge, seconds } => {
            validate::aging(seconds)?;
            Request::SetAging { bridge, seconds }
        }
        Cmd::SetMacLimit { bridge, limit } => {
            validate::mac_limit(limit)?;
            Request::SetMacLimit { bridge, limit }
        }
        Cmd::AddVlan {
            bridge,
            port,
            vids,
            untagged,
            pvid,
            access,
        } => Request::AddVlan {
            bridge,
            port,
            vids: validate::parse_vids(&vids)?,
            untagged,
            pvid,
            access,
        },
        Cmd::DelVlan { bridge, port, vids } => Request::DelVlan {
            bridge,
            port,
            vids: validate::parse_vids(&vids)?,
        },
        Cmd::ListVlans { bridge } => Request::ListVlans { bridge },
        Cmd::Stats { bridge, port } => Request::Stats { bridge, port },
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return ExitCode::SUCCESS;
            }
            // clap's message spans lines; keep the first, which says what is wrong.
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid arguments");
            eprintln!("vsctl: {}", first.trim_start_matches("error: "));
            return ExitCode::FAILURE;
        }
    };
    let sock = cli.sock.clone().unwrap_or_else(ctl::default_sock);
    let req = match request(cli.cmd) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vsctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match ctl::call(&sock, &req) {
        Ok(data) => {
            if cli.json {
                if !matches!(data, Data::Done) {
                    match serde_json::to_string_pretty(&data) {
                        Ok(s) => println!("{s}"),
                        Err(e) => {
                            eprintln!("vsctl: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
            } else {
                print!("{}", ctl::render(&data));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vsctl: {e}");
            ExitCode::FAILURE
        }
    }
}
