//! `vswitchd --metrics ADDR:PORT`: `/metrics` in the Prometheus text format, served by
//! one thread of its own over plain HTTP/1.1 (one request per connection, a few lines of
//! `std::net`; no crate needed for that).
//!
//! A scrape reads what `vsctl stats` reads — per-worker counter blocks summed with
//! relaxed loads — under the controller's lock, which no worker takes; the gateway's
//! counters come from the copy its routing worker publishes once a second. So a scrape
//! never makes a worker wait, and its counters are `vsctl --json stats`'s.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::controller::Controller;

/// A request head larger than this is refused (a scraper sends a few hundred bytes).
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// One tunnel remote's counters, with the port and bridge it belongs to.
#[derive(Debug, Clone)]
pub struct RemoteSample {
    pub bridge: String,
    pub port: String,
    pub remote: ctl::RemoteInfo,
}

/// Everything one scrape exports, read under the controller's lock and rendered after.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub bridges: Vec<ctl::BridgeStats>,
    pub vteps: Vec<ctl::VtepStats>,
    pub gateway: Option<ctl::GatewayStats>,
    pub remotes: Vec<RemoteSample>,
    /// Per worker, nanoseconds busy.
    pub busy_ns: Vec<u64>,
}

/// The exposition of a scrape: the declared counters of `vsctl stats` (see
/// [`crate::counters::exposition`]) and the gauges and counters only `/metrics` has.
pub fn render(s: &Scrape) -> String {
    let mut e = crate::counters::exposition(&s.bridges, &s.vteps, s.gateway.as_ref());
    e.gauge(
        "vswitch_build_info",
        "The running vswitchd's version; always 1.",
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1);
    {
        let f = e.gauge(
            "vswitch_bridge_fdb_entries",
            "MAC addresses in a bridge's forwarding table now.",
        );
        for b in &s.bridges {
            f.sample(&[("bridge", &b.name)], b.fdb_entries);
        }
    }
    if let Some(g) = &s.gateway {
        e.gauge(
            "vswitch_conntrack_entries",
            "Connections tracked now (as of the routing worker's last second).",
        )
        .sample(&[], g.conntrack);
        e.gauge(
            "vswitch_conntrack_limit",
            "Most connections tracked at once (set-ct-limit).",
        )
        .sample(&[], g.ct_limit);
        e.gauge("vswitch_nat_mappings", "Masquerade port mappings in use.")
            .sample(&[], g.mappings);
    }
    type Get = fn(&ctl::RemoteInfo) -> u64;
    let per_remote: [(&str, &str, Get); 4] = [
        (
            "vswitch_tunnel_remote_tx_packets_total",
            "Frames encapsulated to a remote VTEP.",
            |r| r.tx_packets,
        ),
        (
            "vswitch_tunnel_remote_tx_bytes_total",
            "Bytes encapsulated to a remote VTEP.",
            |r| r.tx_bytes,
        ),
        (
            "vswitch_tunnel_remote_rx_packets_total",
            "Frames decapsulated from a remote VTEP.",
            |r| r.rx_packets,
        ),
        (
            "vswitch_tunnel_remote_rx_bytes_total",
            "Bytes decapsulated from a remote VTEP.",
            |r| r.rx_bytes,
        ),
    ];
    for (name, help, get) in per_remote {
        let f = e.counter(name, help);
        for r in &s.remotes {
            let l = [
                ("bridge", r.bridge.as_str()),
                ("port", r.port.as_str()),
                ("remote", r.remote.ip.as_str()),
            ];
            f.sample(&l, get(&r.remote));
        }
    }
    {
        let f = e.counter(
            "vswitch_worker_busy_seconds_total",
            "Time a dataplane worker spent handling wake-ups rather than waiting.",
        );
        for (i, ns) in s.busy_ns.iter().enumerate() {
            f.sample_f64(&[("worker", &i.to_string())], *ns as f64 / 1e9);
        }
    }
    e.render()
}

/// Binds the metrics address (before the daemon reports itself started, so a taken
/// port stops it with a clear error).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Serves scrapes until the process exits; one connection at a time.
pub fn serve(listener: TcpListener, ctl: Arc<Mutex<Controller>>) {
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                if let Err(e) = answer(s, &ctl) {
                    tracing::debug!("metrics client: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The request line's method and path, once the whole head has arrived.
fn read_head(s: &mut TcpStream) -> io::Result<(String, String)> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other("closed before the request ended"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    Ok((method, path))
}

fn answer(mut s: TcpStream, ctl: &Mutex<Controller>) -> io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let (method, path) = read_head(&mut s)?;
    let target = path.split('?').next().unwrap_or_default();
    let (status, ctype, body) = match (method.as_str(), target) {
        ("GET" | "HEAD", "/metrics") => {
            let scrape = ctl.lock().unwrap_or_else(|p| p.into_inner()).scrape();
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                render(&scrape),
            )
        }
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "vswitchd serves /metrics only\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET /metrics\n".to_string(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        out.push_str(&body);
    }
    s.write_all(out.as_bytes())?;
    s.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_scrape_renders_every_family_validly() {
        let s = Scrape {
            bridges: vec![ctl::BridgeStats {
                name: "br0".into(),
                fdb_entries: 3,
                counters: [("learned".to_string(), 4)].into_iter().collect(),
                ports: vec![ctl::PortStats {
                    name: "p1".into(),
                    rx_packets: 10,
                    rx_bytes: 1000,
                    tx_packets: 9,
                    tx_bytes: 900,
                    drops: [("runt".to_string(), 2)].into_iter().collect(),
                }],
            }],
            vteps: Vec::new(),
            gateway: Some(ctl::GatewayStats {
                conntrack: 5,
                ct_limit: 100,
                ct_refused: 1,
                mappings: 2,
                counters: Default::default(),
                drops: Default::default(),
            }),
            remotes: vec![RemoteSample {
                bridge: "br0".into(),
                port: "vx".into(),
                remote: ctl::RemoteInfo {
                    ip: "198.51.100.7".into(),
                    mtu: 1500,
                    tx_packets: 7,
                    tx_bytes: 700,
                    rx_packets: 6,
                    rx_bytes: 600,
                    peer: None,
                },
            }],
            busy_ns: vec![1_500_000_000, 0],
        };
        let text = render(&s);
        assert_eq!(metrics_decl::validate(&text), Ok(()), "{text}");
        for line in [
            "vswitch_port_rx_packets_total{bridge=\"br0\",port=\"p1\"} 10",
            "vswitch_port_drops_total{bridge=\"br0\",port=\"p1\",reason=\"runt\"} 2",
            "vswitch_bridge_learned_total{bridge=\"br0\"} 4",
            "vswitch_bridge_fdb_entries{bridge=\"br0\"} 3",
            "vswitch_conntrack_entries 5",
            "vswitch_conntrack_refused_total 1",
            "vswitch_tunnel_remote_tx_packets_total{bridge=\"br0\",port=\"vx\",remote=\"198.51.100.7\"} 7",
            "vswitch_worker_busy_seconds_total{worker=\"0\"} 1.5",
            "# TYPE vswitch_build_info gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
