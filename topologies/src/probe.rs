//! Tiny network helpers that `vstopo` runs *as itself* inside a node's namespace
//! (`ip netns exec NS vstopo probe …`): a TCP listener and a TCP connect probe that tells
//! open, refused, filtered (silence) and unreachable apart — which `nc` or `socat` exit
//! codes cannot. Using our own binary keeps the checks free of tool-version quirks.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Listens on `0.0.0.0:port`, prints `listening`, and accepts (and closes) connections
/// for `seconds`, then exits.
pub fn listen(port: u16, seconds: u64) -> std::io::Result<()> {
    let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
    println!("listening on {}", l.local_addr()?);
    std::io::stdout().flush()?;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(seconds));
        std::process::exit(0);
    });
    for c in l.incoming() {
        match c {
            Ok(s) => {
                if let Ok(peer) = s.peer_addr() {
                    println!("accepted {peer}");
                }
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}

/// Connects to `to:port` and prints one line: `open MS`, `refused`, `filtered` or
/// `unreachable: REASON`.
pub fn connect(to: Ipv4Addr, port: u16, timeout: Duration) {
    let addr = SocketAddr::from((to, port));
    let t0 = Instant::now();
    let line = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => format!("open {:.2}", t0.elapsed().as_secs_f64() * 1000.0),
        Err(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "refused".to_string(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "filtered".into(),
            _ => format!("unreachable: {e}"),
        },
    };
    println!("{line}");
}
