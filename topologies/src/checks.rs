//! Running the checks of a built topology. Each check drives real programs inside the
//! nodes (`ping`, `iperf3`, `curl` against `python3 -m http.server`, `vsctl`, the TCP
//! probe of [`crate::probe`]) and returns an [`Outcome`]: passed or not, and the figure it
//! saw, so a report line always says what was measured, not only whether it was enough.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use ctl::Data;
use testlab::traffic::{iperf3_client_argv, ping_argv, Iperf, IperfError, PingSummary};

use crate::lab::{Lab, SHORT};
use crate::model::TcpState;
use crate::plan::{Check, CheckKind, Cidr, MacRef, Pair};
use crate::proc::{self, RunError};

/// What a check found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub pass: bool,
    /// What was measured, e.g. `3/3 replies, rtt avg 0.071 ms`.
    pub figure: String,
}

impl Outcome {
    fn new(pass: bool, figure: impl Into<String>) -> Outcome {
        Outcome {
            pass,
            figure: figure.into(),
        }
    }
}

/// Runs `check`. A failure to even run it (a tool missing, a server that never came up)
/// is a failed outcome with the reason; only a stop signal is an error.
pub fn run(lab: &mut Lab<'_>, check: &Check) -> Result<Outcome, RunError> {
    let r = run_inner(lab, check);
    lab.stop_helpers();
    // A Ctrl-C at the terminal also kills the check's program, which then looks like a
    // failed check: the signal is the real story.
    if let Some(s) = proc::stop_signal() {
        return Err(RunError::Stopped(s));
    }
    match r {
        Ok(o) => Ok(o),
        Err(e) => {
            if let Some(RunError::Stopped(s)) = e.downcast_ref::<RunError>() {
                return Err(RunError::Stopped(*s));
            }
            if let Some(s) = proc::stop_signal() {
                return Err(RunError::Stopped(s));
            }
            Ok(Outcome::new(false, format!("could not run: {e:#}")))
        }
    }
}

fn run_inner(lab: &mut Lab<'_>, check: &Check) -> Result<Outcome> {
    // Attached hosts' addresses are known only now.
    let kind = check.kind.map_addrs(|a| lab.real_addr(a));
    match &kind {
        CheckKind::Ping {
            from,
            to,
            count,
            reachable,
        } => {
            let r = ping(lab, from, &to.to_string(), *count, *reachable)?;
            let pass = if *reachable {
                r.received >= *count
            } else {
                r.received == 0
            };
            let mut fig = format!("{}/{} replies", r.received, r.transmitted);
            if let Some(avg) = r.rtt_avg {
                let _ = write!(fig, ", rtt avg {avg} ms");
            }
            if let Some(n) = &r.note {
                let _ = write!(fig, " ({n})");
            }
            if !pass {
                let _ = write!(
                    fig,
                    "; expected {}",
                    if *reachable {
                        format!("{count}/{count}")
                    } else {
                        "none".into()
                    }
                );
            }
            Ok(Outcome::new(pass, fig))
        }
        CheckKind::Pingall { pairs, count } => pingall(lab, pairs, *count),
        CheckKind::Tcp {
            from,
            to,
            port,
            listener,
            expect,
            timeout,
        } => {
            if let Some((node, lport)) = listener {
                let me = lab.bins.vstopo.display().to_string();
                let p = lport.to_string();
                let h =
                    lab.spawn_helper(node, "listen", &[&me, "probe", "listen", "--port", &p])?;
                wait_log(lab, h, "listening")?;
            }
            let me = lab.bins.vstopo.display().to_string();
            let ms = timeout.as_millis().to_string();
            let o = lab.exec(
                from,
                &[
                    &me,
                    "probe",
                    "connect",
                    "--to",
                    &to.to_string(),
                    "--port",
                    &port.to_string(),
                    "--timeout-ms",
                    &ms,
                ],
                *timeout + SHORT,
            )?;
            let line = o.stdout.trim().to_string();
            let word = line.split_whitespace().next().unwrap_or_default();
            let seen = match word {
                "open" => TcpState::Open,
                "refused" => TcpState::Refused,
                "filtered" => TcpState::Filtered,
                "unreachable" => TcpState::Unreachable,
                _ => bail!("the TCP probe said {:?}", o.text()),
            };
            let mut fig = match seen {
                TcpState::Open => format!(
                    "open (handshake {} ms)",
                    line.split_whitespace().nth(1).unwrap_or("?")
                ),
                TcpState::Filtered => format!("filtered (no answer in {timeout:?})"),
                _ => line.clone(),
            };
            if seen != *expect {
                let _ = write!(fig, "; expected {}", expect.as_str());
            }
            Ok(Outcome::new(seen == *expect, fig))
        }
        CheckKind::Iperf {
            from,
            to,
            server,
            port,
            udp,
            seconds,
            rate,
            min_gbps,
            max_loss,
        } => {
            let p = port.to_string();
            let h = lab.spawn_helper(server, "iperf3", &["iperf3", "-s", "-1", "-p", &p])?;
            lab.wait_listening(server, *port, Some(h))?;
            let udp_args = ["-u", "-b", rate.as_str()];
            let extra: &[&str] = if *udp { &udp_args } else { &[] };
            let argv = iperf3_client_argv(&to.to_string(), *port, *seconds, extra);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            // A receiver that falls behind (2 cores shared by sender, switch and receiver)
            // overflows its own socket buffer; its kernel counts those datagrams, so the
            // figure can tell them apart from datagrams lost on the way.
            let overflowed_before = if *udp {
                udp_rcvbuf_errors(lab, server)
            } else {
                None
            };
            let o = lab.exec(from, &argv, Duration::from_secs(u64::from(*seconds) + 20))?;
            let report = match Iperf::parse(&o.stdout) {
                Ok(r) => r,
                Err(IperfError::NoJson(_)) => bail!("iperf3 printed no JSON: {}", o.text()),
                Err(e) => bail!("{e}"),
            };
            if report.0.get("end").is_none() {
                bail!("iperf3 JSON has no `end`");
            }
            let num = |path: &[&str]| report.end(path);
            if *udp {
                let sent = num(&["sum", "bits_per_second"]).unwrap_or(0.0);
                let loss = num(&["sum", "lost_percent"]).unwrap_or(100.0);
                // iperf3's UDP summary is the sender's rate; what arrived is that minus
                // the datagrams the receiver reported lost.
                let recv = num(&["sum_received", "bits_per_second"])
                    .unwrap_or(sent * (1.0 - loss / 100.0));
                let gbps = recv / 1e9;
                let mut pass = gbps >= *min_gbps;
                let mut fig = format!("{gbps:.2} Gbit/s received, loss {loss:.2}%");
                let overflowed = overflowed_before.and_then(|before| {
                    udp_rcvbuf_errors(lab, server).map(|after| after.saturating_sub(before))
                });
                let packets = num(&["sum", "packets"]).unwrap_or(0.0);
                let lost = num(&["sum", "lost_packets"]).unwrap_or(packets);
                let on_the_way = match overflowed {
                    Some(n) if n > 0 && packets > 0.0 => {
                        let n = (n as f64).min(lost);
                        let way = (lost - n) / packets * 100.0;
                        let _ = write!(
                            fig,
                            ", of which {n} datagrams overflowed {server}'s socket buffer \
                             (the receiver fell behind) and {way:.2}% were lost on the way"
                        );
                        way
                    }
                    _ => loss,
                };
                let _ = write!(fig, " (min {min_gbps}");
                if let Some(m) = max_loss {
                    pass &= on_the_way <= *m;
                    let _ = write!(fig, ", max loss on the way {m}%");
                }
                fig.push(')');
                Ok(Outcome::new(pass, fig))
            } else {
                let bps = num(&["sum_received", "bits_per_second"])
                    .ok_or_else(|| anyhow!("iperf3 JSON has no end.sum_received"))?;
                let gbps = bps / 1e9;
                let retr = num(&["sum_sent", "retransmits"]).unwrap_or(0.0);
                Ok(Outcome::new(
                    gbps >= *min_gbps,
                    format!("{gbps:.2} Gbit/s (min {min_gbps}), {retr} retransmits"),
                ))
            }
        }
        CheckKind::Http {
            from,
            to,
            port,
            path,
            status,
            server,
            server_port,
            client,
        } => {
            let dir = lab.state.dir().join(format!("www-{}", check.line));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(
                dir.join("index.html"),
                format!("<h1>vstopo {}</h1>\n", lab.plan.name),
            )?;
            let d = dir.display().to_string();
            let sp = server_port.to_string();
            let h = lab.spawn_helper(
                server,
                "http",
                &[
                    "python3",
                    "-u",
                    "-m",
                    "http.server",
                    &sp,
                    "--bind",
                    "0.0.0.0",
                    "--directory",
                    &d,
                ],
            )?;
            lab.wait_listening(server, *server_port, Some(h))?;
            let url = format!("http://{to}:{port}{path}");
            let o = lab.exec(
                from,
                &[
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "5",
                    "-w",
                    "%{http_code} %{time_total}",
                    &url,
                ],
                Duration::from_secs(15),
            )?;
            let mut it = o.stdout.split_whitespace();
            let code: u16 = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let secs: f64 = it.next().and_then(|c| c.parse().ok()).unwrap_or(0.0);
            if code == 0 {
                return Ok(Outcome::new(
                    false,
                    format!("no response: {}; expected {status}", o.stderr.trim()),
                ));
            }
            let mut fig = format!("status {code} in {:.1} ms", secs * 1000.0);
            let mut pass = code == *status;
            if code != *status {
                let _ = write!(fig, "; expected {status}");
            }
            if let Some(want) = client {
                let seen = http_client(lab, h, path)?;
                match &seen {
                    Some(c) => {
                        let _ = write!(fig, ", the server saw client {c}");
                    }
                    None => fig.push_str(", the server logged no request"),
                }
                if seen.as_deref() != Some(want.to_string().as_str()) {
                    pass = false;
                    let _ = write!(fig, "; expected client {want}");
                }
            }
            Ok(Outcome::new(pass, fig))
        }
        CheckKind::Fdb {
            switch,
            bridge,
            mac,
            port,
            vlan,
            learned,
        } => {
            let mac = match mac {
                MacRef::Literal(m) => m.clone(),
                MacRef::Iface(h) => iface_mac(lab, &h.host, &h.iface)?,
            };
            let Data::Fdb { entries, .. } = lab.vsctl_json(switch, &["fdb-show", bridge])? else {
                bail!("vsctl fdb-show --json returned something else");
            };
            let hit = entries
                .iter()
                .find(|e| e.mac.eq_ignore_ascii_case(&mac) && vlan.is_none_or(|v| e.vlan == v));
            let on_port = match (hit, port) {
                (Some(e), Some(p)) => &e.port == p,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let fig = match hit {
                Some(e) => format!(
                    "{mac} on port {} (vlan {}, age {}{})",
                    e.port,
                    e.vlan,
                    if e.is_static {
                        "static".to_string()
                    } else {
                        format!("{} s", e.age)
                    },
                    e.remote
                        .as_ref()
                        .map(|r| format!(", behind remote VTEP {r}"))
                        .unwrap_or_default()
                ),
                None => format!(
                    "{mac} not learned{} ({} entries)",
                    vlan.map(|v| format!(" in VLAN {v}")).unwrap_or_default(),
                    entries.len()
                ),
            };
            let pass = on_port == *learned;
            let fig = if pass {
                fig
            } else {
                format!(
                    "{fig}; expected {}{}",
                    if *learned { "learned" } else { "not learned" },
                    port.as_ref()
                        .map(|p| format!(" on {p}"))
                        .unwrap_or_default()
                )
            };
            Ok(Outcome::new(pass, fig))
        }
        CheckKind::Broadcast {
            from,
            subnet,
            port,
            count,
            to,
        } => broadcast(lab, check.line, from, subnet.broadcast(), *port, *count, to),
        CheckKind::Ipam {
            overlay,
            subnet,
            hosts,
        } => ipam(lab, overlay, subnet, hosts),
        CheckKind::Exec {
            node,
            cmd,
            exit,
            output,
            timeout,
        } => {
            let o = lab.exec(node, &["sh", "-c", cmd], *timeout)?;
            let code = o.status.code().unwrap_or(-1);
            let all = format!("{}{}", o.stdout, o.stderr);
            let has = output.as_ref().map(|s| all.contains(s.as_str()));
            let pass = code == *exit && has != Some(false);
            let mut fig = format!("exit {code}");
            if code != *exit {
                let _ = write!(fig, " (expected {exit})");
            }
            match (output, has) {
                (Some(s), Some(true)) => {
                    let _ = write!(fig, ", output has {s:?}");
                }
                (Some(s), _) => {
                    let _ = write!(fig, ", output lacks {s:?}");
                }
                _ => {}
            }
            if !pass {
                let shown: String = all.trim().chars().take(300).collect();
                let _ = write!(fig, "; output: {shown:?}");
            }
            Ok(Outcome::new(pass, fig))
        }
    }
}

/// `count` UDP datagrams from `from` to `bcast:port`; every host of `to` must receive
/// each exactly once (a copy more is a forwarding loop or a duplicating replication).
fn broadcast(
    lab: &mut Lab<'_>,
    line: u64,
    from: &str,
    bcast: std::net::Ipv4Addr,
    port: u16,
    count: u32,
    to: &[String],
) -> Result<Outcome> {
    let me = lab.bins.vstopo.display().to_string();
    let p = port.to_string();
    let token = format!("{}-{line}", lab.state.run);
    let mut listeners = Vec::new();
    for t in to {
        let h = lab.spawn_helper(
            t,
            "udp-listen",
            &[&me, "probe", "udp-listen", "--port", &p, "--seconds", "30"],
        )?;
        wait_log(lab, h, "listening")?;
        listeners.push((t.clone(), h));
    }
    let o = lab.exec(
        from,
        &[
            &me,
            "probe",
            "udp-broadcast",
            "--to",
            &bcast.to_string(),
            "--port",
            &p,
            "--count",
            &count.to_string(),
            "--token",
            &token,
        ],
        SHORT,
    )?;
    if !o.success() {
        bail!("the broadcaster failed: {}", o.text());
    }
    let needle = format!("vstopo-broadcast {token} ");
    let got = |lab: &Lab<'_>| -> Vec<(String, usize)> {
        listeners
            .iter()
            .map(|(t, h)| (t.clone(), lab.helper_log(*h).matches(&needle).count()))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while got(lab).iter().any(|(_, n)| *n < count as usize) && std::time::Instant::now() < deadline
    {
        proc::sleep(Duration::from_millis(50))?;
    }
    // Copies still on their way would be duplicates: give them a moment.
    proc::sleep(Duration::from_millis(200))?;
    let seen = got(lab);
    let pass = seen.iter().all(|(_, n)| *n == count as usize);
    let mut fig = seen
        .iter()
        .map(|(t, n)| format!("{t} {n}/{count}"))
        .collect::<Vec<_>>()
        .join(", ");
    if !pass {
        let _ = write!(fig, "; expected each to receive {count} exactly once");
    }
    Ok(Outcome::new(pass, format!("received: {fig}")))
}

/// The client address `python3 -m http.server` (helper `h`) logged for its first
/// `GET PATH` (its log lines read `CLIENT - - [date] "GET /path HTTP/1.1" 200 -`); waits
/// up to 2 s for the line.
fn http_client(lab: &mut Lab<'_>, h: usize, path: &str) -> Result<Option<String>> {
    let needle = format!("\"GET {path} ");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let log = lab.helper_log(h);
        if let Some(line) = log.lines().find(|l| l.contains(&needle)) {
            return Ok(line.split_whitespace().next().map(str::to_string));
        }
        if std::time::Instant::now() > deadline || !lab.helper_alive(h) {
            return Ok(None);
        }
        proc::sleep(Duration::from_millis(20))?;
    }
}

/// Waits until helper `h`'s log contains `needle`.
fn wait_log(lab: &mut Lab<'_>, h: usize, needle: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if lab.helper_log(h).contains(needle) {
            return Ok(());
        }
        if !lab.helper_alive(h) {
            bail!("the helper exited: {}", lab.helper_log(h).trim());
        }
        if std::time::Instant::now() > deadline {
            bail!("the helper did not print {needle:?} within 10 s");
        }
        proc::sleep(Duration::from_millis(20))?;
    }
}

/// The MAC of `iface` in `host`, lower case.
pub fn iface_mac(lab: &Lab<'_>, host: &str, iface: &str) -> Result<String> {
    testlab::netns::mac(&lab.ns(host), iface)
}

fn ping(lab: &Lab<'_>, from: &str, to: &str, count: u32, reachable: bool) -> Result<PingSummary> {
    // Expected replies: stop at `count` of them, give up after a generous deadline.
    // Expected silence: listen only as long as a reply would plausibly take.
    let deadline = if reachable {
        5 + count / 5
    } else {
        1 + count / 5
    };
    let argv = ping_argv(to, count, "0.2", deadline);
    let a: Vec<&str> = argv.iter().map(String::as_str).collect();
    let o = lab.exec(from, &a, Duration::from_secs(30))?;
    Ok(PingSummary::parse(&o))
}

fn pingall(lab: &Lab<'_>, pairs: &[Pair], count: u32) -> Result<Outcome> {
    // All pairs at once: the check costs as much as its slowest pair, not their sum.
    let results: Vec<(Pair, Result<PingSummary>)> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|p| {
                let p = p.clone();
                s.spawn(move || {
                    let r = ping(lab, &p.from, &p.ip.to_string(), count, p.reachable);
                    (p, r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (pairs[0].clone(), Err(anyhow!("ping thread panicked"))))
            })
            .collect()
    });
    let mut wrong = Vec::new();
    let mut rtts = Vec::new();
    for (p, r) in &results {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                if let Some(RunError::Stopped(s)) = e.downcast_ref::<RunError>() {
                    return Err(RunError::Stopped(*s).into());
                }
                wrong.push(format!("{} -> {}: {e}", p.from, p.to));
                continue;
            }
        };
        if let Some(a) = r.rtt_avg.as_ref().and_then(|a| a.parse::<f64>().ok()) {
            rtts.push(a);
        }
        let ok = if p.reachable {
            r.received >= count
        } else {
            r.received == 0
        };
        if !ok {
            wrong.push(format!(
                "{} -> {} {}/{} replies (expected {})",
                p.from,
                p.to,
                r.received,
                r.transmitted,
                if p.reachable {
                    "reachable"
                } else {
                    "unreachable"
                }
            ));
        }
    }
    let reach = pairs.iter().filter(|p| p.reachable).count();
    let mut fig = format!(
        "{}/{} pairs as expected ({reach} reachable, {} unreachable)",
        pairs.len() - wrong.len(),
        pairs.len(),
        pairs.len() - reach
    );
    if !rtts.is_empty() {
        let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
        if count == 1 {
            // One ping per pair: its time includes the ARP exchange before it.
            let _ = write!(fig, ", first-ping rtt avg {avg:.2} ms (with ARP)");
        } else {
            let _ = write!(fig, ", rtt avg {avg:.3} ms");
        }
    }
    if !wrong.is_empty() {
        let _ = write!(fig, "; wrong: {}", wrong.join("; "));
    }
    Ok(Outcome::new(wrong.is_empty(), fig))
}

/// The UDP datagrams `node`'s kernel has dropped for a full socket receive buffer
/// (`RcvbufErrors` of its namespace's `/proc/net/snmp`); `None` when it cannot be read.
fn udp_rcvbuf_errors(lab: &Lab<'_>, node: &str) -> Option<u64> {
    let snmp = testlab::snmp::read(&lab.ns(node)).ok()?;
    testlab::snmp::udp_rcvbuf_errors(&snmp)
}

/// `ipam`: each attached host's `eth0` holds an address of the overlay's subnet, no two
/// the same, and the etcd holds exactly one claim for each (`ipam/OVERLAY/IP`).
fn ipam(lab: &mut Lab<'_>, overlay: &str, subnet: &Cidr, hosts: &[String]) -> Result<Outcome> {
    let mut seen: Vec<(String, std::net::Ipv4Addr)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for h in hosts {
        let o = lab.exec(h, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"], SHORT)?;
        // "N: eth0    inet 10.61.0.2/24 brd … scope global eth0"
        let ip = o
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|c| c.split('/').next())
            .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok());
        match ip {
            Some(ip) => {
                if !subnet.contains(ip) {
                    problems.push(format!("{h} has {ip}, outside {}", subnet.subnet()));
                }
                if let Some((other, _)) = seen.iter().find(|(_, x)| *x == ip) {
                    problems.push(format!("{ip} handed to both {other} and {h}"));
                }
                seen.push((h.clone(), ip));
            }
            None => problems.push(format!("{h} has no address on eth0")),
        }
    }
    let prefix = format!("/vswitch/v1/ipam/{overlay}/");
    let out = lab.etcdctl(&["get", "--prefix", "--keys-only", &prefix])?;
    let mut claims: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::to_string)
        .collect();
    claims.sort();
    let mut held: Vec<String> = seen.iter().map(|(_, ip)| ip.to_string()).collect();
    held.sort();
    if claims != held {
        problems.push(format!(
            "etcd claims {} but the hosts hold {}",
            claims.join(", "),
            held.join(", ")
        ));
    }
    let list: Vec<String> = seen.iter().map(|(h, ip)| format!("{h} {ip}")).collect();
    let mut fig = format!(
        "{} host(s), {} distinct address(es) ({}), {} claim(s) in etcd",
        hosts.len(),
        held.iter().collect::<std::collections::BTreeSet<_>>().len(),
        list.join(", "),
        claims.len()
    );
    if !problems.is_empty() {
        let _ = write!(fig, "; {}", problems.join("; "));
    }
    Ok(Outcome::new(problems.is_empty(), fig))
}
