//! Quiet hosts, proved with tcpdump: a host namespace made by [`testlab::Namespaces`]
//! sends nothing on its own — not when its interface comes up and stays idle, not when a
//! frame for another address arrives at its MAC — while the same host with IPv6 on, or
//! with IPv4 forwarding on (as a namespace inherits it from a root namespace where a
//! system dockerd runs), does send: those are the frames that once taught a switch under
//! test a MAC behind the test's back.
//!
//! Needs root, `ip`, `tcpdump`, `ping` and `sysctl`; a missing one is a failure.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use testlab::{netns, require_root, require_tools, sh, Bg, Namespaces};

/// How long an idle host is watched: IPv6 sends its MLD report at once, DAD after up to
/// 1 s and router solicitations after DAD, so 6 s catch them all.
const IDLE: Duration = Duration::from_secs(6);

/// A host namespace joined by a veth to an observer namespace that captures what the
/// host sends (`-Q in` on the observer's end).
struct Pair {
    ns: Namespaces,
    obs: String,
    host: String,
    dir: PathBuf,
}

impl Pair {
    /// `ipv6`: leave IPv6 on in the host; `forward`: turn IPv4 forwarding on in it.
    fn new(tag: &str, ipv6: bool, forward: bool) -> Pair {
        let prefix = format!("tlq{}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{prefix}.d"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ns = Namespaces::new();
        let (obs, host) = (format!("{prefix}-o"), format!("{prefix}-h"));
        ns.add(&obs);
        ns.add_with(&host, ipv6);
        if forward {
            netns::try_exec(
                &host,
                &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
                testlab::SHORT,
            )
            .unwrap()
            .must()
            .unwrap();
        }
        netns::veth(&obs, "p", &host, "eth0").unwrap();
        netns::addr_add(&obs, "p", "10.77.0.1/24").unwrap();
        netns::addr_add(&host, "eth0", "10.77.0.2/24").unwrap();
        netns::link_up(&obs, "p").unwrap();
        Pair { ns, obs, host, dir }
    }

    /// Starts tcpdump on the observer's end, frames from the host only.
    fn capture(&self, name: &str) -> Bg {
        let argv = netns::exec_argv(
            &self.obs,
            &[
                "tcpdump",
                "-i",
                "p",
                "-Q",
                "in",
                "-e",
                "-nn",
                "-l",
                "--immediate-mode",
            ],
        );
        let mut bg = Bg::spawn(&self.dir, name, &argv);
        bg.wait_output("listening on", Duration::from_secs(10));
        bg
    }

    /// The frames tcpdump printed (one line each, starting with the time).
    fn frames(bg: &mut Bg) -> Vec<String> {
        // SIGINT: tcpdump flushes what it captured before it exits.
        bg.stop_with(testlab::stop::SIGINT, Duration::from_secs(5));
        bg.stdout()
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string)
            .collect()
    }

    /// What the host sent while its interface came up and then idled for [`IDLE`].
    fn idle(&self) -> Vec<String> {
        let mut cap = self.capture("idle");
        netns::link_up(&self.host, "eth0").unwrap();
        thread::sleep(IDLE);
        Pair::frames(&mut cap)
    }

    /// What the host sent while the observer sent it 3 echo requests for 10.77.0.200, a
    /// neighbour entry pointing that address at the host's MAC (not its address).
    fn not_for_me(&self) -> Vec<String> {
        netns::link_up(&self.host, "eth0").unwrap();
        let mac = netns::mac(&self.host, "eth0").unwrap();
        sh(&netns::exec_argv(
            &self.obs,
            &[
                "ip",
                "neigh",
                "replace",
                "10.77.0.200",
                "lladdr",
                &mac,
                "dev",
                "p",
                "nud",
                "permanent",
            ],
        ));
        // Whatever the interface sent when it came up is not the point here.
        thread::sleep(Duration::from_secs(1));
        let mut cap = self.capture("ghost");
        let ping = netns::exec_argv(
            &self.obs,
            &["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.77.0.200"],
        );
        let _ = testlab::run(&ping, testlab::SHORT);
        thread::sleep(Duration::from_millis(500));
        Pair::frames(&mut cap)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let left = self.ns.remove();
        assert!(
            left.is_empty() || thread::panicking(),
            "left behind: {left:?}"
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn prerequisites() {
    require_root();
    require_tools(&["ip", "tcpdump", "ping", "sysctl"]);
}

/// What `watch` saw from a quiet host and, at the same time, from a `control` host (IPv6
/// on, or forwarding on), each in a pair of its own named after `tag`.
fn quiet_and_control(
    tag: &str,
    control_ipv6: bool,
    control_forward: bool,
    watch: fn(&Pair) -> Vec<String>,
) -> (Vec<String>, Vec<String>) {
    prerequisites();
    thread::scope(|s| {
        let q = s.spawn(|| watch(&Pair::new(tag, false, false)));
        let c = s.spawn(|| {
            watch(&Pair::new(
                &format!("{tag}c"),
                control_ipv6,
                control_forward,
            ))
        });
        (q.join().unwrap(), c.join().unwrap())
    })
}

/// Prints both captures and asserts the quiet host sent nothing.
fn quiet_sent_nothing(when: &str, quiet: &[String], control: &str, seen: &[String]) {
    eprintln!(
        "    [measured] {when}: the quiet host sent {} frames; {control}: {} frames:\n      {}",
        quiet.len(),
        seen.len(),
        seen.join("\n      ")
    );
    assert!(
        quiet.is_empty(),
        "{when}: the quiet host sent frames:\n{}",
        quiet.join("\n")
    );
}

#[test]
fn an_idle_host_sends_nothing_unless_it_has_ipv6() {
    let (quiet, chatty) = quiet_and_control("i", true, false, Pair::idle);
    quiet_sent_nothing("idle", &quiet, "the same host with IPv6 on", &chatty);
    assert!(
        chatty.iter().any(|f| f.contains("IPv6")),
        "with IPv6 on, the host should have sent MLD/DAD/RS frames (is the capture blind?): {chatty:?}"
    );
}

#[test]
fn a_host_stays_silent_on_frames_for_another_address() {
    let (quiet, router) = quiet_and_control("g", false, true, Pair::not_for_me);
    let when = "echo requests to its MAC for another address";
    quiet_sent_nothing(when, &quiet, "the same host with ip_forward=1", &router);
    assert!(
        !router.is_empty(),
        "with forwarding on, the host should have routed (ARP, redirect): is the capture blind?"
    );
}
