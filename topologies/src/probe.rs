//! Tiny network helpers that `vstopo` runs *as itself* inside a node's namespace
//! (`ip netns exec NS vstopo probe …`): a TCP listener and a TCP connect probe that tells
//! open, refused, filtered (silence) and unreachable apart — which `nc` or `socat` exit
//! codes cannot — and a UDP listener and broadcaster that count broadcast datagrams
//! exactly (the `broadcast` check). Using our own binary keeps the checks free of
//! tool-version quirks.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
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

/// Receives UDP on `0.0.0.0:port` for `seconds`, printing `listening on ADDR` first and
/// then one line per datagram: `from ADDR: PAYLOAD` (payload as text).
pub fn udp_listen(port: u16, seconds: u64) -> std::io::Result<()> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?;
    println!("listening on {}", s.local_addr()?);
    std::io::stdout().flush()?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut buf = [0u8; 2048];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match s.recv_from(&mut buf) {
            Ok((n, peer)) => {
                println!("from {peer}: {}", String::from_utf8_lossy(&buf[..n]));
                std::io::stdout().flush()?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `count` datagrams `vstopo-broadcast TOKEN I` to `to:port` (a broadcast address)
/// 20 ms apart, and prints `sent COUNT`.
pub fn udp_broadcast(to: Ipv4Addr, port: u16, count: u32, token: &str) -> std::io::Result<()> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    s.set_broadcast(true)?;
    for i in 0..count {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        s.send_to(
            format!("vstopo-broadcast {token} {i}").as_bytes(),
            (to, port),
        )?;
    }
    println!("sent {count}");
    Ok(())
}
