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
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (default: not served).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log_level) {
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
    match vswitch::daemon::run(vswitch::daemon::Options {
        sock: args.sock,
        db: args.db,
        metrics: args.metrics,
        workers,
        rx_ring: args.rx_ring,
        busy_poll: std::time::Duration::from_micros(args.busy_poll_us),
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            ExitCode::FAILURE
        }
    }
}
