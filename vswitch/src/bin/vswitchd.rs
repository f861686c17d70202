//! `vswitchd`: the vswitch daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "vswitchd", version, about = "Userspace virtual switch daemon")]
struct Args {
    /// Control socket path.
    #[arg(long, env = "VSWITCH_SOCK", default_value = ctl::DEFAULT_SOCK)]
    sock: PathBuf,
    /// Config file path.
    #[arg(long, default_value = vswitch::config::DEFAULT_DB)]
    db: PathBuf,
    /// Worker threads [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// RX ring of afpacket ports: v2 (a slot per frame, woken per frame: lowest
    /// latency) or v3 (frames packed in blocks handed over when full or after 1 ms:
    /// fewest wake-ups, but up to 1 ms added latency at low rates).
    #[arg(long, default_value = "v2")]
    rx_ring: vswitch::sys::afpacket::RingKind,
    /// Microseconds a worker keeps polling (spinning) after it last received a frame,
    /// instead of sleeping: lower latency for a little CPU while traffic flows. 0 = off.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    busy_poll_us: u64,
    /// Niceness of the forwarding threads (-20 … 19; 0 leaves them at the process's).
    /// The default, -10, is what Open vSwitch's ovs-ctl gives ovs-vswitchd: forwarding
    /// runs ahead of the containers it serves, as the kernel bridge's softirq does.
    #[arg(long, default_value_t = -10, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    worker_nice: i32,
    /// VXLAN: segment TCP super-frames here (sent with UDP_SEGMENT) instead of sending
    /// them encapsulated whole through a TAP device per VTEP (vswgso0, …), whose ingress
    /// filter hands them to the underlay device for the kernel (or the NIC) to segment
    /// where the wire needs it. The TAP is used by default where it can be made (Linux
    /// 6.17 or later, tc's ingress qdisc, u32 and mirred).
    #[arg(long)]
    no_vxlan_gso_tap: bool,
    /// The default since the TAP needs no firewall change; accepted for old scripts.
    #[arg(long, hide = true, conflicts_with = "no_vxlan_gso_tap")]
    vxlan_gso_tap: bool,
    /// VXLAN: the name of each VTEP's TAP for whole super-frames; `%d` in it becomes the
    /// first free number. Without `%d`, a second VTEP (or a name already taken) gets no
    /// TAP and segments, saying so in the log.
    #[arg(long, value_name = "PATTERN", default_value = "vswgso%d",
          value_parser = tap_name_pattern, conflicts_with = "no_vxlan_gso_tap")]
    vxlan_gso_tap_name: String,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (default: not served).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Join the cluster whose store is etcd://HOST:PORT[,HOST:PORT...] (etcds:// for
    /// TLS). Kept in the config: a restart without it rejoins the same cluster.
    #[arg(long, value_name = "URL")]
    cluster_store: Option<String>,
    /// This node's VTEP address: where the other nodes send VXLAN to.
    #[arg(long, value_name = "IP")]
    cluster_advertise: Option<std::net::Ipv4Addr>,
    /// This node's name in the cluster [default: the host name].
    #[arg(long)]
    node: Option<String>,
    /// Seconds the cluster waits after losing this node before dropping its VTEP.
    #[arg(long, default_value_t = cluster::DEFAULT_TTL)]
    cluster_ttl: u64,
    /// CA certificate (PEM) of the store, for etcds://.
    #[arg(long, value_name = "FILE")]
    cluster_ca: Option<PathBuf>,
    /// Client certificate (PEM), for etcds://.
    #[arg(long, value_name = "FILE")]
    cluster_cert: Option<PathBuf>,
    /// Client key (PEM, not readable by others), for etcds://.
    #[arg(long, value_name = "FILE")]
    cluster_key: Option<PathBuf>,
    /// Seconds between checks of what this node's watch built against a list of the
    /// store (a difference is adopted: etcd before 3.4.31/3.5.13 can drop a slow
    /// watcher's events across a compaction).
    #[arg(long, value_name = "SECS", default_value_t = cluster::DEFAULT_AUDIT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    cluster_audit: u64,
}

/// The cluster membership the command line asks for.
fn cluster_args(args: &Args) -> Result<Option<vswitch::config::ClusterConf>, String> {
    let Some(store) = &args.cluster_store else {
        if args.cluster_advertise.is_some()
            || args.node.is_some()
            || args.cluster_ca.is_some()
            || args.cluster_cert.is_some()
            || args.cluster_key.is_some()
        {
            return Err(
                "--cluster-advertise, --node and --cluster-ca/cert/key need --cluster-store".into(),
            );
        }
        return Ok(None);
    };
    let advertise = args
        .cluster_advertise
        .ok_or("--cluster-store needs --cluster-advertise IP (this node's VTEP address)")?;
    let node = match &args.node {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .map_err(|e| format!("cannot read the host name for --node: {e}"))?,
    };
    let c = vswitch::config::ClusterConf {
        store: store.clone(),
        node,
        advertise,
        ttl: args.cluster_ttl,
        ca: args.cluster_ca.clone(),
        cert: args.cluster_cert.clone(),
        key: args.cluster_key.clone(),
        state: Default::default(),
        bridges: Vec::new(),
        reserved: Vec::new(),
        mesh: Vec::new(),
        published: Vec::new(),
    };
    c.validate().map_err(|e| e.to_string())?;
    Ok(Some(c))
}

/// Libraries whose debug output is every HTTP/2 frame of the cluster store's
/// connection (thousands of lines a second while a watch catches up).
const WIRE_LIBS: [&str; 5] = ["h2", "hyper", "hyper_util", "tower", "tonic"];

/// The tracing filter for `--log-level`: a bare `debug` or `trace` is ours (and the
/// cluster client's), with the wire libraries held at `info`, so that a debug log says
/// what the switch did rather than which frames crossed; a filter string is taken as
/// written (`debug,h2=debug` shows the frames).
fn log_filter(level: &str) -> String {
    if level.eq_ignore_ascii_case("debug") || level.eq_ignore_ascii_case("trace") {
        WIRE_LIBS
            .iter()
            .fold(level.to_string(), |f, lib| format!("{f},{lib}=info"))
    } else {
        level.to_string()
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(log_filter(&args.log_level)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vswitchd: bad --log-level {:?}: {e}", args.log_level);
            return ExitCode::FAILURE;
        }
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if workers == 0 || workers > 256 {
        eprintln!("vswitchd: --workers must be between 1 and 256");
        return ExitCode::FAILURE;
    }
    let cluster = match cluster_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match vswitch::daemon::run(vswitch::daemon::Options {
        cluster,
        cluster_audit: std::time::Duration::from_secs(args.cluster_audit),
        sock: args.sock,
        db: args.db,
        metrics: args.metrics,
        workers,
        rx_ring: args.rx_ring,
        busy_poll: std::time::Duration::from_micros(args.busy_poll_us),
        worker_nice: args.worker_nice,
        vxlan_gso_tap: (args.vxlan_gso_tap || !args.no_vxlan_gso_tap)
            .then_some(args.vxlan_gso_tap_name),
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A `--vxlan-gso-tap-name`: an interface name, in which `%d` may stand once for a number.
fn tap_name_pattern(s: &str) -> Result<String, String> {
    let probe = s.replacen("%d", "0", 1);
    if probe.contains('%') {
        return Err(format!("{s:?}: only one %d may stand in a TAP name"));
    }
    ctl::validate::iface_name(&probe)?;
    if s.len() >= 16 {
        return Err(format!("{s:?} is longer than 15 bytes"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::{log_filter, tap_name_pattern};

    #[test]
    fn debug_leaves_the_wire_libraries_at_info_and_filters_pass_as_written() {
        let f = log_filter("debug");
        assert!(f.starts_with("debug,") && f.contains(",h2=info") && f.contains(",tonic=info"));
        assert!(tracing_subscriber::EnvFilter::try_new(&f).is_ok());
        assert_eq!(log_filter("info"), "info");
        assert_eq!(log_filter("debug,h2=debug"), "debug,h2=debug");
    }

    #[test]
    fn tap_name_patterns_are_interface_names_with_at_most_one_number() {
        for ok in ["vswgso%d", "gso%d-x", "mytap"] {
            assert_eq!(tap_name_pattern(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "a%d%d",
            "tap%s",
            "100%",
            "has space%d",
            "a-very-long-name%d",
        ] {
            assert!(tap_name_pattern(bad).is_err(), "{bad:?}");
        }
    }
}
