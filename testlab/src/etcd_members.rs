//! An etcd of several members (a real Raft cluster) in one namespace: each member on its
//! own client and peer ports, its data in its own directory; members can be killed and
//! started again one at a time. [`member_argv`] is the command line of one member, which
//! `vstopo` uses for the etcd of a topology file too.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::bg::{Bg, Output};
use crate::netns;
use crate::proc::{Opts, Out, RunError};
use crate::SHORT;

/// The command line of member `name` of a new cluster: its client URL `client`, peer
/// URL `peer`, data under `data`, and `initial` (`NAME=PEERURL,…`) for every member.
pub fn member_argv(
    name: &str,
    data: &Path,
    client: &str,
    peer: &str,
    initial: &str,
) -> Vec<String> {
    [
        "etcd",
        "--name",
        name,
        "--data-dir",
        &data.display().to_string(),
        "--listen-client-urls",
        client,
        "--advertise-client-urls",
        client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        initial,
        "--initial-cluster-state",
        "new",
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A whole cluster's command lines: member `i` is `m{i}`, client port `base + 2i`, peer
/// port `base + 2i + 1` on `ip` (peers on 127.0.0.1), data in `dir/m{i}`.
pub fn cluster_argvs(ip: &str, base: u16, n: u16, dir: &Path) -> Vec<(String, Vec<String>)> {
    let peer = |i: u16| format!("http://127.0.0.1:{}", base + 2 * i + 1);
    let initial: Vec<String> = (0..n).map(|i| format!("m{i}={}", peer(i))).collect();
    let initial = initial.join(",");
    (0..n)
        .map(|i| {
            let name = format!("m{i}");
            let client = format!("http://{ip}:{}", base + 2 * i);
            let argv = member_argv(&name, &dir.join(&name), &client, &peer(i), &initial);
            (name, argv)
        })
        .collect()
}

/// The members of one etcd cluster in namespace `ns`; killed on drop.
pub struct EtcdMembers {
    pub ns: String,
    /// `IP:PORT` of each member's client URL.
    pub endpoints: Vec<String>,
    dir: PathBuf,
    argvs: Vec<Vec<String>>,
    bgs: Vec<Option<Bg>>,
}

impl EtcdMembers {
    /// Starts `n` members on `ip` (an address of `ns`) with client ports from `base`
    /// (`base..base + 2n` must be free in `ns`: a namespace the caller made), files under
    /// `dir`; waits until every member is healthy.
    pub fn start(ns: &str, ip: &str, base: u16, n: u16, dir: &Path) -> anyhow::Result<EtcdMembers> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let all = cluster_argvs(ip, base, n, dir);
        let mut m = EtcdMembers {
            ns: ns.to_string(),
            endpoints: (0..n).map(|i| format!("{ip}:{}", base + 2 * i)).collect(),
            dir: dir.to_path_buf(),
            argvs: all.into_iter().map(|(_, a)| a).collect(),
            bgs: (0..n).map(|_| None).collect(),
        };
        for i in 0..usize::from(n) {
            m.spawn(i)?;
        }
        m.wait_healthy(&m.endpoints.clone(), crate::etcd::READY)?;
        Ok(m)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let out = Output::log(&self.dir.join(format!("m{i}.log")));
        let argv: Vec<&str> = self.argvs[i].iter().map(String::as_str).collect();
        let bg = Bg::start(
            &format!("etcd m{i}"),
            &netns::exec_argv(&self.ns, &argv),
            out,
            &Opts::default(),
        )?;
        self.bgs[i] = Some(bg);
        Ok(())
    }

    /// `etcd://A,B,C`: the store URL a vswitchd is given.
    pub fn store_url(&self) -> String {
        format!("etcd://{}", self.endpoints.join(","))
    }

    /// Kills member `i` (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut bg) = self.bgs.get_mut(i).and_then(Option::take) {
            bg.stop_with(crate::stop::SIGKILL, Duration::from_secs(5));
        }
    }

    /// Starts member `i` again with its data; waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        let ep = vec![self.endpoints[i].clone()];
        self.wait_healthy(&ep, crate::etcd::READY)
    }

    fn wait_healthy(&self, eps: &[String], within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self
                .etcdctl_at(&eps.join(","), &["endpoint", "health"])
                .is_ok_and(|o| o.success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd {eps:?} not healthy within {within:?}\n{}",
                    self.log_tail()
                );
            }
            crate::stop::sleep(Duration::from_millis(200))?;
        }
    }

    /// `etcdctl` against the members listed in `eps` (comma-separated), in the namespace.
    pub fn etcdctl_at(&self, eps: &str, args: &[&str]) -> Result<Out, RunError> {
        let mut argv = vec![
            "etcdctl",
            "--endpoints",
            eps,
            "--command-timeout",
            "3s",
            "--dial-timeout",
            "2s",
        ];
        argv.extend_from_slice(args);
        netns::try_exec(&self.ns, &argv, SHORT)
    }

    /// `etcdctl` against every member.
    pub fn etcdctl(&self, args: &[&str]) -> Result<Out, RunError> {
        self.etcdctl_at(&self.endpoints.join(","), args)
    }

    /// The ends of the members' logs.
    pub fn log_tail(&self) -> String {
        (0..self.argvs.len())
            .map(|i| {
                format!(
                    "--- etcd m{i} ---\n{}",
                    crate::bg::tail(&self.dir.join(format!("m{i}.log")), 15)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdMembers {
    fn drop(&mut self) {
        for i in 0..self.bgs.len() {
            self.kill(i);
        }
    }
}
