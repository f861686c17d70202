//! The `vstopo` command line; the work is in the library's [`vstopo::cmd`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Build whole vswitch networks from one YAML file, check them, tear them down.
#[derive(Debug, Parser)]
#[command(name = "vstopo", version)]
struct Cli {
    /// Print every build step as it runs (to stderr).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the topology and leave it running (until `vstopo down FILE`).
    Up {
        /// The topology file (YAML).
        file: PathBuf,
    },
    /// Remove everything `up` made (also after a crash), from the run's state file.
    Down {
        /// The topology file (YAML).
        file: PathBuf,
    },
    /// Build, run every check (one line each: PASS/FAIL and the figure), tear down;
    /// exit 0 only if every check passed.
    Test {
        /// The topology file (YAML).
        file: PathBuf,
    },
    /// Print what would be built, without building it.
    Show {
        /// The topology file (YAML).
        file: PathBuf,
        /// Also print every build step as a command line.
        #[arg(long)]
        steps: bool,
    },
    /// Run a command inside a node of a topology that is up.
    Exec {
        /// The topology file (YAML).
        file: PathBuf,
        /// A host or switch of the file.
        node: String,
        /// The command and its arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Helpers vstopo runs inside namespaces (internal).
    #[command(hide = true, subcommand)]
    Probe(Probe),
}

#[derive(Debug, Subcommand)]
enum Probe {
    /// Accept TCP connections on 0.0.0.0:PORT for SECONDS.
    Listen {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Try one TCP connection; print open/refused/filtered/unreachable.
    Connect {
        #[arg(long)]
        to: std::net::Ipv4Addr,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Print every UDP datagram arriving on 0.0.0.0:PORT for SECONDS.
    UdpListen {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Send COUNT UDP datagrams carrying TOKEN to a broadcast address.
    UdpBroadcast {
        #[arg(long)]
        to: std::net::Ipv4Addr,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 3)]
        count: u32,
        #[arg(long)]
        token: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Up { file } => vstopo::cmd::up(&file, cli.verbose),
        Cmd::Down { file } => vstopo::cmd::down(&file),
        Cmd::Test { file } => vstopo::cmd::test(&file, cli.verbose),
        Cmd::Show { file, steps } => vstopo::cmd::show(&file, steps),
        Cmd::Exec { file, node, cmd } => vstopo::cmd::exec(&file, &node, &cmd),
        Cmd::Probe(Probe::Listen { port, seconds }) => match vstopo::probe::listen(port, seconds) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("vstopo probe listen: {e}");
                1
            }
        },
        Cmd::Probe(Probe::Connect {
            to,
            port,
            timeout_ms,
        }) => {
            vstopo::probe::connect(to, port, std::time::Duration::from_millis(timeout_ms));
            0
        }
        Cmd::Probe(Probe::UdpListen { port, seconds }) => {
            match vstopo::probe::udp_listen(port, seconds) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("vstopo probe udp-listen: {e}");
                    1
                }
            }
        }
        Cmd::Probe(Probe::UdpBroadcast {
            to,
            port,
            count,
            token,
        }) => match vstopo::probe::udp_broadcast(to, port, count, &token) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("vstopo probe udp-broadcast: {e}");
                1
            }
        },
    };
    std::process::exit(code);
}
