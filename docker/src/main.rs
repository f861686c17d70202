//! `vswitch-docker`: serves the Docker network plugin `vswitch` on
//! `/run/docker/plugins/vswitch.sock` (Docker finds it there by name) for `vswitchd` on
//! `VSWITCH_SOCK` (default `/run/vswitch/vswitchd.sock`), learning containers' names from
//! Docker's API on `--docker-sock` (default `/var/run/docker.sock`). Run it in the network
//! namespace of `dockerd` and `vswitchd`: the veths it makes must be where both see them.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use vswitch_docker::links::IpLinks;
use vswitch_docker::plugin::{Plugin, Vswitchd};

/// Where Docker looks for plugin sockets.
const DEFAULT_PLUGIN_SOCK: &str = "/run/docker/plugins/vswitch.sock";

#[derive(Parser, Debug)]
#[command(
    name = "vswitch-docker",
    version,
    about = "Docker network plugin (driver `vswitch`) backed by vswitchd"
)]
struct Args {
    /// The plugin's socket; Docker names the driver after the file (`vswitch.sock`:
    /// `docker network create -d vswitch`).
    #[arg(long, default_value = DEFAULT_PLUGIN_SOCK)]
    plugin_sock: PathBuf,
    /// vswitchd's control socket.
    #[arg(long, env = ctl::SOCK_ENV, default_value = ctl::DEFAULT_SOCK)]
    sock: PathBuf,
    /// The trunk interface of VLAN networks that give no `-o vswitch.trunk=IFACE`.
    #[arg(long)]
    trunk: Option<String>,
    /// The Docker Engine API socket, where containers' names and network aliases are
    /// learnt (they become DNS names of their endpoints).
    #[arg(long, env = "VSWITCH_DOCKER_SOCK", default_value = vswitch_docker::engine::DEFAULT_SOCK)]
    docker_sock: PathBuf,
    /// Seconds a quiet Docker event stream is trusted before every running container's
    /// names are looked at again (a safety net: events name containers at once).
    #[arg(long, env = "VSWITCH_DOCKER_RESCAN", default_value_t = vswitch_docker::names::RESCAN.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    names_rescan: u64,
}

/// Removes a stale socket file; refuses when another process still answers on it.
fn claim(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("another plugin serves {} already", path.display()));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the stale {}: {e}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(t) = &args.trunk {
        if let Err(e) = ctl::validate::iface_name(t) {
            eprintln!("vswitch-docker: --trunk: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = claim(&args.plugin_sock) {
        eprintln!("vswitch-docker: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = ctl::call(&args.sock, &ctl::Request::ListBr) {
        // Not fatal: vswitchd may start later; every call says so until it does.
        eprintln!("vswitch-docker: warning: {e}");
    }
    // The socket file goes when the plugin is stopped.
    let sock = args.plugin_sock.clone();
    match Signals::new([SIGTERM, SIGINT]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let _ = std::fs::remove_file(&sock);
                    eprintln!("vswitch-docker: signal {sig}, exiting");
                    std::process::exit(0);
                }
            });
        }
        Err(e) => eprintln!("vswitch-docker: warning: cannot catch signals: {e}"),
    }
    let engine = vswitch_docker::engine::Engine {
        sock: args.docker_sock.clone(),
    };
    let sw = Vswitchd {
        sock: args.sock.clone(),
    };
    let rescan = std::time::Duration::from_secs(args.names_rescan);
    // Docker names the driver after the socket file (`vswitch.sock`: `vswitch`).
    let driver = args
        .plugin_sock
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::thread::spawn(move || vswitch_docker::names::watch(engine, sw, &driver, rescan));
    let mut plugin = Plugin::new(Vswitchd { sock: args.sock }, IpLinks, args.trunk);
    let r = vswitch_docker::http::serve(&args.plugin_sock, &mut plugin);
    let _ = std::fs::remove_file(&args.plugin_sock);
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitch-docker: {e}");
            ExitCode::FAILURE
        }
    }
}
