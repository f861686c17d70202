//! Traffic through a lab and what it measured: `ping`'s summary (replies, average RTT),
//! `iperf3`'s JSON report (throughput, retransmits, UDP loss), and whether a server
//! listens yet. The programs themselves run through [`crate::proc`] and
//! [`crate::netns`]; this module only builds their command lines and reads their output.

use std::time::Duration;

use serde_json::Value;

use crate::netns::try_exec;
use crate::proc::{Out, RunError};
use crate::SHORT;

/// What one `ping` run printed in its summary.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PingSummary {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
    /// The average RTT in ms as ping printed it (e.g. `0.071`).
    pub rtt_avg: Option<String>,
    /// The last line of stderr, if ping complained.
    pub note: Option<String>,
}

impl PingSummary {
    /// Reads the summary of a finished `ping -q` (or plain `ping`).
    pub fn parse(o: &Out) -> PingSummary {
        let mut r = PingSummary::default();
        for line in o.stdout.lines() {
            if line.contains("packets transmitted") {
                let nums: Vec<u32> = line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|x| x.parse().ok())
                    .collect();
                if nums.len() >= 2 {
                    r.transmitted = nums[0];
                    r.received = nums[1];
                }
            }
            let summary = line.starts_with("rtt") || line.starts_with("round-trip");
            if let Some(rest) = line.split(" = ").nth(1).filter(|_| summary) {
                r.rtt_avg = rest.split('/').nth(1).map(str::to_string);
            }
        }
        let err = o.stderr.trim();
        if !err.is_empty() {
            r.note = Some(err.lines().last().unwrap_or(err).to_string());
        }
        r
    }

    /// The average RTT in ms, if there was one.
    pub fn rtt_avg_ms(&self) -> Option<f64> {
        self.rtt_avg.as_ref().and_then(|a| a.parse().ok())
    }
}

/// `ping -n -q -c COUNT -i INTERVAL -w DEADLINE TO`: stops after `count` replies or
/// `deadline_s` seconds.
pub fn ping_argv(to: &str, count: u32, interval: &str, deadline_s: u32) -> Vec<String> {
    let (c, w) = (count.to_string(), deadline_s.to_string());
    ["ping", "-n", "-q", "-c", &c, "-i", interval, "-w", &w, to]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
}

/// `iperf3 -c IP -p PORT -t SECS -J EXTRA…`.
pub fn iperf3_client_argv(ip: &str, port: u16, secs: u32, extra: &[&str]) -> Vec<String> {
    let (p, t) = (port.to_string(), secs.to_string());
    let mut v: Vec<String> = ["iperf3", "-c", ip, "-p", &p, "-t", &t, "-J"]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    v.extend(extra.iter().map(|s| (*s).to_string()));
    v
}

/// Why an iperf3 run gave no report.
#[derive(Debug)]
pub enum IperfError {
    /// It printed no JSON (it could not even start, or was killed).
    NoJson(serde_json::Error),
    /// Its report carries an `error`.
    Failed(String),
}

impl std::fmt::Display for IperfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IperfError::NoJson(e) => write!(f, "iperf3 printed no JSON ({e})"),
            IperfError::Failed(e) => write!(f, "iperf3: {e}"),
        }
    }
}

impl std::error::Error for IperfError {}

/// iperf3's `-J` report, read.
#[derive(Debug, Clone)]
pub struct Iperf(pub Value);

impl Iperf {
    /// Parses what `iperf3 -J` printed; an error when it is not JSON or reports one.
    pub fn parse(stdout: &str) -> Result<Iperf, IperfError> {
        let v: Value = serde_json::from_str(stdout).map_err(IperfError::NoJson)?;
        if let Some(err) = v.get("error") {
            let e = err.as_str().map_or_else(|| err.to_string(), str::to_string);
            return Err(IperfError::Failed(e));
        }
        Ok(Iperf(v))
    }

    /// The number at `end.PATH…`, if there is one.
    pub fn end(&self, path: &[&str]) -> Option<f64> {
        let mut x = self.0.get("end")?;
        for k in path {
            x = x.get(k)?;
        }
        x.as_f64()
    }

    /// Bits per second the receiver got (`end.sum_received`), 0 when absent.
    pub fn received_bps(&self) -> f64 {
        self.end(&["sum_received", "bits_per_second"])
            .unwrap_or(0.0)
    }

    /// The sender's TCP retransmits (`end.sum_sent.retransmits`), 0 when absent.
    pub fn retransmits(&self) -> u64 {
        self.0["end"]["sum_sent"]["retransmits"]
            .as_u64()
            .unwrap_or(0)
    }
}

/// Gbit/s from bits per second.
pub fn gbps(bps: f64) -> f64 {
    bps / 1e9
}

/// True when something listens on TCP `port` in namespace `ns` (`ss -Hltn`).
pub fn listening(ns: &str, port: u16) -> Result<bool, RunError> {
    let o = try_exec(ns, &["ss", "-Hltn"], SHORT)?;
    Ok(o.stdout.contains(&format!(":{port} ")))
}

/// The time an iperf3 client of `secs` seconds may take, start-up and report included.
pub fn iperf3_timeout(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs) + 30)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn out(stdout: &str, stderr: &str) -> Out {
        Out {
            cmd: "ping".into(),
            status: std::process::ExitStatus::from_raw(0),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn ping_summary_is_parsed() {
        let o = out("PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\n--- 10.0.0.2 ping statistics ---\n3 packets transmitted, 3 received, 0% packet loss, time 401ms\nrtt min/avg/max/mdev = 0.051/0.071/0.090/0.016 ms\n", "");
        let r = PingSummary::parse(&o);
        assert_eq!((r.transmitted, r.received), (3, 3));
        assert_eq!(r.rtt_avg.as_deref(), Some("0.071"));
        assert_eq!(r.rtt_avg_ms(), Some(0.071));
        let busybox = out(
            "2 packets transmitted, 0 packets received, 100% packet loss\n",
            "ping: sendto: Network unreachable\n",
        );
        let r = PingSummary::parse(&busybox);
        assert_eq!((r.transmitted, r.received, r.rtt_avg), (2, 0, None));
        assert_eq!(r.note.as_deref(), Some("ping: sendto: Network unreachable"));
    }

    #[test]
    fn iperf_reports_and_errors_are_read() {
        let r = Iperf::parse(
            r#"{"end":{"sum_received":{"bits_per_second":2.5e9},"sum_sent":{"retransmits":7}}}"#,
        )
        .unwrap();
        assert_eq!((r.received_bps(), r.retransmits()), (2.5e9, 7));
        assert_eq!(r.end(&["sum", "lost_percent"]), None);
        let e = Iperf::parse(r#"{"error":"unable to connect to server"}"#).unwrap_err();
        assert_eq!(e.to_string(), "iperf3: unable to connect to server");
        assert!(matches!(Iperf::parse(""), Err(IperfError::NoJson(_))));
    }
}
