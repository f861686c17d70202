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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completion { shell: clap_complete::Shell },
    /// Add a port: attach an existing interface (afpacket) or create a TAP device (tap).
    AddPort {
        bridge: String,
        iface: String,
        #[arg(long = "type", default_value = "afpacket")]
        kind: PortKind,
        /// A KEY=VALUE pair kept with the port (repeat for several), as Open vSwitch's
        /// external_ids.
        #[arg(long = "external-id")]
        external_ids: Vec<String>,
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
    /// Change settings of a bridge: ip-checks=on|off (check IPv4 and ARP headers of the
    /// frames it forwards; on by default).
    SetBridge {
        bridge: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// Change a port's security settings: allowed=MAC[,IP…]|any (drop frames from other
    /// source MACs, IPv4 addresses or ARP senders; counted spoofed_src), storm=PPS|off
    /// (limit broadcast, multicast and unknown unicast entering it; counted
    /// storm_dropped).
    SetPort {
        port: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
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
    /// Add a VXLAN tunnel port NAME to BR, towards one or more remote VTEPs.
    AddTunnel {
        bridge: String,
        name: String,
        /// VXLAN network identifier, 0-16777215.
        #[arg(long)]
        vni: u32,
        /// A remote VTEP (IPv4); repeat for several.
        #[arg(long = "remote", required = true)]
        remotes: Vec<std::net::IpAddr>,
        /// Underlay source address to bind (default: the kernel chooses).
        #[arg(long)]
        local: Option<std::net::IpAddr>,
        /// UDP destination port.
        #[arg(long, default_value_t = ctl::DEFAULT_VXLAN_PORT)]
        dstport: u16,
        /// Carry this VLAN of the bridge (the tunnel is an access port of it).
        #[arg(long)]
        vlan: Option<u16>,
        /// Encrypt: VXLAN inside WireGuard (each --remote needs a --public-key).
        #[arg(long)]
        encrypt: bool,
        /// UDP port WireGuard messages arrive on and leave from (with --encrypt).
        #[arg(long)]
        listen_port: Option<u16>,
        /// Inner VTEP address of this end (with --encrypt).
        #[arg(long)]
        inner_local: Option<std::net::IpAddr>,
        /// The WireGuard public key of each --remote, in the same order (with --encrypt).
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// The inner VTEP address of each --remote, in the same order (with --encrypt).
        #[arg(long = "inner-remote")]
        inner_remotes: Vec<std::net::IpAddr>,
    },
    /// Remove a tunnel port.
    DelTunnel { bridge: String, name: String },
    /// Add a remote VTEP to a tunnel.
    AddRemote {
        bridge: String,
        name: String,
        remote: std::net::IpAddr,
        /// The remote's WireGuard public key (an encrypted tunnel's remotes need one).
        #[arg(long)]
        public_key: Option<String>,
        /// The remote's inner VTEP address (encrypted tunnels, with --public-key).
        #[arg(long)]
        inner_remote: Option<std::net::IpAddr>,
    },
    /// Remove a remote VTEP from a tunnel.
    DelRemote {
        bridge: String,
        name: String,
        remote: std::net::IpAddr,
    },
    /// Add a static MAC entry: MAC sits behind PORT (and, on a tunnel, behind --remote).
    AddFdb {
        bridge: String,
        mac: String,
        port: String,
        #[arg(long)]
        remote: Option<std::net::IpAddr>,
        #[arg(long, default_value_t = 0)]
        vlan: u16,
    },
    /// Remove a static MAC entry.
    DelFdb {
        bridge: String,
        mac: String,
        #[arg(long, default_value_t = 0)]
        vlan: u16,
    },
    /// Plug CONTAINER (a PID, a /var/run/netns name or path, /proc/PID/ns/net, or a
    /// Docker container name or ID) into BR: a veth (or TAP) whose far end appears in the
    /// container as --ifname with this address, MAC, MTU and default route. On a cluster
    /// overlay --ip may be left out: the cluster hands out a free address (printed).
    Attach {
        bridge: String,
        container: String,
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        gw: Option<std::net::Ipv4Addr>,
        #[arg(long)]
        mac: Option<String>,
        #[arg(long)]
        mtu: Option<u32>,
        /// Make the port an access port of this VLAN.
        #[arg(long)]
        vlan: Option<u16>,
        #[arg(long = "type", default_value = "afpacket")]
        kind: PortKind,
        #[arg(long, default_value = "eth0")]
        ifname: String,
        /// The endpoint's name in the network's DNS (default: CONTAINER, if it is a
        /// valid DNS name).
        #[arg(long)]
        name: Option<String>,
        /// Another DNS name for it (repeat for several).
        #[arg(long = "alias")]
        aliases: Vec<String>,
    },
    /// Undo `attach`: remove the port and the container's interface.
    Detach {
        bridge: String,
        container: String,
        #[arg(long, default_value = "eth0")]
        ifname: String,
    },
    /// Give bridge BR an IPv4 subnet (A.B.C.D/N) and a gateway address the switch owns.
    AddNet {
        bridge: String,
        subnet: String,
        #[arg(long)]
        gateway: std::net::Ipv4Addr,
    },
    /// Remove a bridge's network and gateway.
    DelNet { bridge: String },
    /// Set the DNS of bridge BR's network: the resolvers other names are forwarded to
    /// (default: the host's /etc/resolv.conf nameservers) and its own domain (default:
    /// none). Settings not given go back to their default.
    SetDns {
        bridge: String,
        /// An upstream resolver's IPv4 address (repeat for several).
        #[arg(long, num_args = 1..)]
        upstream: Vec<std::net::Ipv4Addr>,
        /// The network's domain: unknown names in it are answered NXDOMAIN.
        #[arg(long)]
        domain: Option<String>,
        /// A name for an address of the network that no attached container has:
        /// NAME=IP (repeat for several).
        #[arg(long = "record")]
        records: Vec<ctl::dns::StaticRecord>,
    },
    /// Set the DNS names of PORT's address (the one it is attached with, or the one it
    /// is bound to by set-port allowed=MAC,IP); no NAME clears them. The names go with
    /// the port.
    SetNames { port: String, names: Vec<String> },
    /// List the DNS records the gateway of bridge BR's network answers.
    DnsShow { bridge: String },
    /// Attach the switch to the outside through IFACE, with address --ip A.B.C.D/N and
    /// next hop --gw for destinations beyond that subnet.
    SetUplink {
        iface: String,
        #[arg(long)]
        ip: String,
        #[arg(long)]
        gw: Option<std::net::Ipv4Addr>,
    },
    /// Detach the uplink.
    DelUplink,
    /// Publish a port of the uplink address to a container (tcp|udp HOSTPORT IP:PORT)
    /// or to a service (tcp|udp HOSTPORT service:NAME).
    Publish {
        proto: ctl::L4Proto,
        host_port: u16,
        target: String,
    },
    /// Withdraw a published port: tcp|udp HOSTPORT.
    Unpublish { proto: ctl::L4Proto, host_port: u16 },
    /// List published ports.
    ListPublished,
    /// Add service NAME to bridge BR: a virtual IP in its network whose connections
    /// are spread over the healthy backends.
    AddService {
        bridge: String,
        name: String,
        /// The virtual IP (a free address of BR's network).
        #[arg(long)]
        vip: std::net::Ipv4Addr,
        /// A port served, tcp|udp:PORT (repeat for several; none: every port).
        #[arg(long = "port", num_args = 1..)]
        ports: Vec<ctl::service::ServicePort>,
        /// A backend, IP or IP:PORT (repeat for several).
        #[arg(long = "backend", num_args = 1.., required = true)]
        backends: Vec<ctl::service::Backend>,
        /// What the service's name resolves to: vip (default) or dnsrr (every healthy backend).
        #[arg(long, default_value = "vip")]
        mode: ctl::service::Mode,
        /// tcp:PORT (a TCP connect to each backend once a second) or none; default: the
        /// first TCP port.
        #[arg(long)]
        health: Option<ctl::service::Health>,
        /// rr (round robin, default) or hash (of the client's address).
        #[arg(long, default_value = "rr")]
        sched: ctl::service::Sched,
    },
    /// Remove service NAME from bridge BR.
    DelService { bridge: String, name: String },
    /// Replace the backends of service NAME: IP or IP:PORT each.
    SetBackends {
        bridge: String,
        name: String,
        #[arg(required = true)]
        backends: Vec<ctl::service::Backend>,
    },
    /// List services with each backend's health, active connections and packets.
    ListServices { bridge: Option<String> },
    /// List tracked connections (like `conntrack -L`).
    CtShow,
    /// Forget every tracked connection.
    CtFlush,
    /// Set the most connections tracked at once (default 262144).
    SetCtLimit { limit: u32 },
    /// Show counters: all bridges, one bridge, or one port.
    Stats {
        bridge: Option<String>,
        port: Option<String>,
    },
    /// Create a cluster-wide overlay network NAME (needs vswitchd --cluster-store): every
    /// node gets a bridge NAME with a VXLAN port towards every other node.
    AddOverlay {
        name: String,
        /// The overlay's IPv4 subnet, A.B.C.D/N.
        #[arg(long)]
        subnet: String,
        /// Its gateway address [default: the subnet's first host].
        #[arg(long)]
        gateway: Option<std::net::Ipv4Addr>,
        /// VXLAN network identifier [default: allocated by the cluster].
        #[arg(long)]
        vni: Option<u32>,
        /// Encrypt it: VXLAN inside WireGuard between every pair of nodes, with the
        /// public keys the nodes publish in the cluster.
        #[arg(long)]
        encrypted: bool,
    },
    /// Delete a cluster-wide overlay network.
    DelOverlay { name: String },
    /// List the cluster's overlay networks.
    ListOverlays,
    /// List the cluster's nodes.
    ListNodes,
    /// Reserve an address of overlay OVERLAY for a container plugged in by something
    /// else (Docker's IPAM driver does this): prints the address and its MAC.
    IpamClaim {
        overlay: String,
        /// This address [default: the lowest free one].
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        /// Who holds it.
        #[arg(long, default_value = "vsctl")]
        owner: String,
    },
    /// Give a reserved address back to the cluster.
    IpamRelease {
        overlay: String,
        ip: std::net::Ipv4Addr,
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
        Cmd::Completion { .. } => return Err("completion talks to no daemon".into()),
        Cmd::AddPort {
            bridge,
            iface,
            kind,
            external_ids,
        } => {
            validate::iface_name(&iface)?;
            Request::AddPort {
                bridge,
                iface,
                kind,
                external_ids: validate::external_ids(&external_ids)?,
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
        Cmd::SetBridge { bridge, settings } => {
            let s = validate::bridge_settings(&settings)?;
            Request::SetBridge {
                bridge,
                ip_checks: s.ip_checks,
            }
        }
        Cmd::SetPort { port, settings } => {
            validate::iface_name(&port)?;
            let s = ctl::portsec::port_settings(&settings)?;
            Request::SetPort {
                port,
                allowed: s.allowed,
                storm_pps: s.storm_pps,
            }
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
        Cmd::AddTunnel {
            bridge,
            name,
            vni,
            remotes,
            local,
            dstport,
            vlan,
            encrypt,
            listen_port,
            inner_local,
            public_keys,
            inner_remotes,
        } => {
            validate::iface_name(&name)?;
            validate::vni(vni)?;
            for r in &remotes {
                validate::remote(r)?;
            }
            if let Some(l) = &local {
                validate::local(l)?;
            }
            validate::dstport(dstport)?;
            if let Some(v) = vlan {
                validate::vid(v)?;
            }
            let encrypt = if encrypt {
                if public_keys.len() != remotes.len() {
                    return Err(format!(
                        "--encrypt needs one --public-key per --remote ({} remotes, {} keys)",
                        remotes.len(),
                        public_keys.len()
                    ));
                }
                if !inner_remotes.is_empty() && inner_remotes.len() != remotes.len() {
                    return Err("--inner-remote: one per --remote, or none".into());
                }
                for k in &public_keys {
                    validate::public_key(k)?;
                }
                let port = listen_port.unwrap_or(ctl::DEFAULT_WG_PORT);
                validate::dstport(port)?;
                Some(ctl::EncryptSpec {
                    listen_port: port,
                    inner_local,
                    peers: public_keys
                        .into_iter()
                        .enumerate()
                        .map(|(i, public_key)| ctl::PeerSpec {
                            public_key,
                            inner_remote: inner_remotes.get(i).copied(),
                        })
                        .collect(),
                })
            } else if !public_keys.is_empty()
                || !inner_remotes.is_empty()
                || listen_port.is_some()
                || inner_local.is_some()
            {
                return Err(
                    "--public-key, --inner-local, --inner-remote and --listen-port need --encrypt"
                        .into(),
                );
            } else {
                None
            };
            Request::AddTunnel {
                bridge,
                name,
                vni,
                remotes,
                local,
                dstport,
                vlan,
                encrypt,
            }
        }
        Cmd::DelTunnel { bridge, name } => Request::DelTunnel { bridge, name },
        Cmd::AddRemote {
            bridge,
            name,
            remote,
            public_key,
            inner_remote,
        } => {
            validate::remote(&remote)?;
            if let Some(k) = &public_key {
                validate::public_key(k)?;
            }
            if inner_remote.is_some() && public_key.is_none() {
                return Err("--inner-remote needs --public-key".into());
            }
            Request::AddRemote {
                bridge,
                name,
                remote,
                peer: public_key.map(|public_key| ctl::PeerSpec {
                    public_key,
                    inner_remote,
                }),
            }
        }
        Cmd::DelRemote {
            bridge,
            name,
            remote,
        } => Request::DelRemote {
            bridge,
            name,
            remote,
        },
        Cmd::AddFdb {
            bridge,
            mac,
            port,
            remote,
            vlan,
        } => {
            validate::unicast_mac(&mac)?;
            if vlan != 0 {
                validate::vid(vlan)?;
            }
            Request::AddFdb {
                bridge,
                mac,
                port,
                remote,
                vlan,
            }
        }
        Cmd::DelFdb { bridge, mac, vlan } => {
            validate::mac(&mac)?;
            Request::DelFdb { bridge, mac, vlan }
        }
        Cmd::Attach {
            bridge,
            container,
            ip,
            gw,
            mac,
            mtu,
            vlan,
            kind,
            ifname,
            name,
            aliases,
        } => {
            validate::iface_name(&ifname)?;
            for n in name.iter().chain(&aliases) {
                ctl::dns::name("name", n)?;
            }
            if let Some(ip) = &ip {
                let (addr, prefix) = validate::cidr(ip)?;
                if let Some(g) = gw {
                    validate::host_in("gateway", g, addr, prefix)?;
                }
            }
            if let Some(m) = &mac {
                validate::unicast_mac(m)?;
            }
            if let Some(m) = mtu {
                validate::mtu(m)?;
            }
            if let Some(v) = vlan {
                validate::vid(v)?;
            }
            if matches!(kind, PortKind::Vxlan | PortKind::Gateway | PortKind::Afxdp) {
                return Err("attach makes afpacket or tap ports".into());
            }
            Request::Attach {
                bridge,
                netns: netns_of(&container)?,
                container,
                ifname,
                ip: ip.unwrap_or_default(),
                gw,
                mac,
                mtu,
                vlan,
                kind,
                name,
                aliases,
            }
        }
        Cmd::Detach {
            bridge,
            container,
            ifname,
        } => {
            // A dead container's namespace is gone: the daemon then matches the path or
            // the name as the attachment recorded it.
            let netns = netns_of(&container).unwrap_or_else(|_| {
                if container.bytes().all(|b| b.is_ascii_digit()) {
                    format!("/proc/{container}/ns/net")
                } else if container.starts_with('/') {
                    container.clone()
                } else {
                    format!("/var/run/netns/{container}")
                }
            });
            Request::Detach {
                bridge,
                netns,
                ifname,
                container: Some(container),
            }
        }
        Cmd::AddNet {
            bridge,
            subnet,
            gateway,
        } => {
            let (net, prefix) = validate::subnet(&subnet)?;
            validate::host_in("gateway", gateway, net, prefix)?;
            Request::AddNet {
                bridge,
                subnet,
                gateway,
            }
        }
        Cmd::DelNet { bridge } => Request::DelNet { bridge },
        Cmd::SetDns {
            bridge,
            upstream,
            domain,
            records,
        } => {
            if let Some(d) = &domain {
                ctl::dns::name("domain", d)?;
            }
            Request::SetDns {
                bridge,
                upstream,
                domain,
                records,
            }
        }
        Cmd::SetNames { port, names } => {
            validate::iface_name(&port)?;
            for n in &names {
                ctl::dns::name("name", n)?;
            }
            Request::SetNames { port, names }
        }
        Cmd::DnsShow { bridge } => Request::DnsShow { bridge },
        Cmd::SetUplink { iface, ip, gw } => {
            validate::iface_name(&iface)?;
            let (addr, prefix) = validate::uplink_ip(&ip)?;
            if let Some(g) = gw {
                validate::host_in("next hop", g, addr, prefix)?;
                if g == addr {
                    return Err(format!("next hop {g} is the uplink's own address"));
                }
            }
            Request::SetUplink { iface, ip, gw }
        }
        Cmd::DelUplink => Request::DelUplink,
        Cmd::Publish {
            proto,
            host_port,
            target,
        } => {
            validate::host_port(host_port)?;
            match target.strip_prefix("service:") {
                Some(service) => Request::PublishService {
                    proto,
                    host_port,
                    service: service.to_string(),
                },
                None => Request::Publish {
                    proto,
                    host_port,
                    target: validate::target(&target)?,
                },
            }
        }
        Cmd::AddService {
            bridge,
            name,
            vip,
            ports,
            backends,
            mode,
            health,
            sched,
        } => Request::AddService {
            bridge,
            spec: ctl::service::ServiceSpec {
                name,
                vip,
                ports,
                backends,
                mode,
                health,
                sched,
            },
        },
        Cmd::DelService { bridge, name } => Request::DelService { bridge, name },
        Cmd::SetBackends {
            bridge,
            name,
            backends,
        } => Request::SetBackends {
            bridge,
            name,
            backends,
        },
        Cmd::ListServices { bridge } => Request::ListServices { bridge },
        Cmd::Unpublish { proto, host_port } => Request::Unpublish { proto, host_port },
        Cmd::ListPublished => Request::ListPublished,
        Cmd::CtShow => Request::CtShow,
        Cmd::CtFlush => Request::CtFlush,
        Cmd::SetCtLimit { limit } => {
            validate::ct_limit(limit)?;
            Request::SetCtLimit { limit }
        }
        Cmd::Stats { bridge, port } => Request::Stats { bridge, port },
        Cmd::AddOverlay {
            name,
            subnet,
            gateway,
            vni,
            encrypted,
        } => {
            validate::bridge_name(&name)?;
            let (net, prefix) = validate::subnet(&subnet)?;
            if let Some(g) = gateway {
                validate::host_in("gateway", g, net, prefix)?;
            }
            if let Some(v) = vni {
                validate::vni(v)?;
            }
            Request::AddOverlay {
                name,
                subnet,
                gateway,
                vni,
                encrypted,
            }
        }
        Cmd::DelOverlay { name } => Request::DelOverlay { name },
        Cmd::ListOverlays => Request::ListOverlays,
        Cmd::ListNodes => Request::ListNodes,
        Cmd::IpamClaim { overlay, ip, owner } => Request::IpamClaim { overlay, ip, owner },
        Cmd::IpamRelease { overlay, ip } => Request::IpamRelease { overlay, ip },
    })
}

/// The network namespace file of what the user named: a PID, a namespace file, a name
/// under /var/run/netns, or a Docker container.
fn netns_of(container: &str) -> Result<String, String> {
    let path = if !container.is_empty() && container.bytes().all(|b| b.is_ascii_digit()) {
        format!("/proc/{container}/ns/net")
    } else if container.starts_with('/') {
        container.to_string()
    } else if !container.contains('/')
        && std::path::Path::new("/var/run/netns")
            .join(container)
            .exists()
    {
        format!("/var/run/netns/{container}")
    } else {
        format!("/proc/{}/ns/net", ctl::docker::container_pid(container)?)
    };
    if !std::path::Path::new(&path).exists() {
        return Err(format!("{container}: no network namespace at {path}"));
    }
    Ok(path)
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
    if let Cmd::Completion { shell } = cli.cmd {
        // Needs no daemon: the script comes from the same clap definition as the parser.
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "vsctl", &mut script);
        // Written here rather than by the generator, which panics on a closed pipe.
        return match std::io::Write::write_all(&mut std::io::stdout(), &script) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vsctl: cannot write the completion script: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
                if let Data::Conntrack { entries, .. } = &data {
                    // As conntrack(8): the listing on stdout, the count on stderr.
                    eprintln!("vsctl: {} flow entries have been shown.", entries.len());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vsctl: {e}");
            ExitCode::FAILURE
        }
    }
}
