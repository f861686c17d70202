//! A private `etcd` for cluster tests: one member, its data directory in the lab's
//! directory, listening on an address of a namespace the lab made (never the machine's
//! own), on ports checked free there; killed on drop. And a small PKI made with
//! `openssl` for its TLS tests ([`Pki`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::bg::{Bg, Output};
use crate::netns;
use crate::proc::{try_run, Opts, Out, RunError};
use crate::slowdisk::SlowDisk;
use crate::SHORT;

/// How long etcd may take to answer after it was started.
pub const READY: Duration = Duration::from_secs(20);

/// Server TLS of an etcd: its certificate and key, and the CA its clients' certificates
/// must come from (`--client-cert-auth`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// A client (CA, certificate, key) for the harness's own health checks.
    pub probe: ClientTls,
}

/// A TLS client's files.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One etcd member in namespace `ns`.
pub struct Etcd {
    pub ns: String,
    /// `IP:PORT` of its client URL.
    pub endpoint: String,
    pub dir: PathBuf,
    tls: Option<ServerTls>,
    argv: Vec<String>,
    bg: Option<Bg>,
    starts: u32,
    /// Its data directory (see [`data_dir`]).
    data: PathBuf,
    /// The disk under its WAL, if one that can stall ([`Etcd::start_on_slow_disk`]).
    slow: Option<SlowDisk>,
}

/// Where an etcd of directory `dir` keeps its data: on tmpfs (`/dev/shm`) when there
/// is one, so that a WAL fsync never waits behind the suite's build writing to disk (a
/// test that wants a slow store asks for one: [`Etcd::start_on_slow_disk`]); else
/// `dir/data`. Kept across restarts, removed with the [`Etcd`].
fn data_dir(dir: &Path) -> PathBuf {
    if !Path::new("/dev/shm").is_dir() {
        return dir.join("data");
    }
    shm_dir("vswitch-etcd", dir)
}

/// A directory on tmpfs named after `what` and the lab directory `dir` (its path
/// flattened): one per lab, so parallel tests never share it.
pub(crate) fn shm_dir(what: &str, dir: &Path) -> PathBuf {
    let flat: String = dir
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Path::new("/dev/shm").join(format!("{what}{flat}"))
}

/// Whether TCP `port` is listened on in `ns`.
fn port_used(ns: &str, port: u16) -> Result<bool, RunError> {
    let o = netns::try_exec(ns, &["ss", "-Htan"], SHORT)?.must()?;
    Ok(o.stdout.lines().any(|l| {
        l.split_whitespace()
            .nth(3)
            .and_then(|a| a.rsplit_once(':'))
            .is_some_and(|(_, p)| p == port.to_string())
    }))
}

/// Two ports free in `ns`, picked from a range by the process id and a counter.
fn free_ports(ns: &str) -> anyhow::Result<(u16, u16)> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..50 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = 20000 + ((std::process::id().wrapping_mul(7919) + n * 2) % 20000) as u16;
        let (a, b) = (base, base + 1);
        if !port_used(ns, a)? && !port_used(ns, b)? {
            return Ok((a, b));
        }
    }
    bail!("no two free ports found in namespace {ns}")
}

impl Etcd {
    /// Starts etcd in `ns` on `ip` (an address of `ns`), files under `dir`, with server
    /// TLS and client certificate authentication if `tls`; waits until it is healthy.
    pub fn start(ns: &str, ip: &str, dir: &Path, tls: Option<ServerTls>) -> anyhow::Result<Etcd> {
        Etcd::start_with(ns, ip, dir, tls, None)
    }

    /// [`Etcd::start`] (no TLS) with its WAL on a [`SlowDisk`] (under `dir`), whose
    /// flushes [`Etcd::disk`] can stall: then every write (and a linearizable read behind
    /// it) waits, while serializable reads and lease keep-alives are still answered.
    pub fn start_on_slow_disk(ns: &str, ip: &str, dir: &Path) -> anyhow::Result<Etcd> {
        let disk = SlowDisk::new(&dir.join("slowdisk"))?;
        Etcd::start_with(ns, ip, dir, None, Some(disk))
    }

    /// The disk under its WAL, if it was started on a slow one.
    pub fn disk(&self) -> Option<&SlowDisk> {
        self.slow.as_ref()
    }

    fn start_with(
        ns: &str,
        ip: &str,
        dir: &Path,
        tls: Option<ServerTls>,
        slow: Option<SlowDisk>,
    ) -> anyhow::Result<Etcd> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let (client, peer) = free_ports(ns)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let curl = format!("{scheme}://{ip}:{client}");
        let purl = format!("http://127.0.0.1:{peer}");
        let data = data_dir(dir);
        // A directory left by an earlier run of the same path is not this store's.
        if data.starts_with("/dev/shm") {
            let _ = fs::remove_dir_all(&data);
        }
        let mut argv: Vec<String> = [
            "etcd",
            "--name",
            "lab",
            "--data-dir",
            &data.display().to_string(),
            "--listen-client-urls",
            &curl,
            "--advertise-client-urls",
            &curl,
            "--listen-peer-urls",
            &purl,
            "--initial-advertise-peer-urls",
            &purl,
            "--initial-cluster",
            &format!("lab={purl}"),
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(t) = &tls {
            for (k, v) in [
                ("--cert-file", &t.cert),
                ("--key-file", &t.key),
                ("--trusted-ca-file", &t.client_ca),
            ] {
                argv.push(k.into());
                argv.push(v.display().to_string());
            }
            argv.push("--client-cert-auth".into());
        }
        if let Some(d) = &slow {
            argv.push("--wal-dir".into());
            argv.push(d.mount.join("wal").display().to_string());
        }
        let mut e = Etcd {
            ns: ns.to_string(),
            endpoint: format!("{ip}:{client}"),
            dir: dir.to_path_buf(),
            tls,
            argv,
            bg: None,
            starts: 0,
            data,
            slow,
        };
        e.restart()?;
        Ok(e)
    }

    /// The store URL a vswitchd is given.
    pub fn store_url(&self) -> String {
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://{}", self.endpoint)
    }

    /// Starts it again (after [`Etcd::kill`]) with the same ports and data; waits until
    /// it is healthy.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.starts += 1;
        let argv: Vec<&str> = self.argv.iter().map(String::as_str).collect();
        let out = Output::split(
            &self.dir.join(format!("etcd.{}.out", self.starts)),
            &self.dir.join("etcd.log"),
        );
        let bg = Bg::start(
            "etcd",
            &netns::exec_argv(&self.ns, &argv),
            out,
            &Opts::default(),
        )?;
        self.bg = Some(bg);
        let deadline = Instant::now() + READY;
        loop {
            if self.healthy() {
                return Ok(());
            }
            if let Some(s) = self.bg.as_mut().and_then(Bg::try_wait) {
                bail!("etcd exited during start-up ({s})\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("etcd not healthy within {READY:?}\n{}", self.log_tail());
            }
            crate::stop::sleep(Duration::from_millis(100))?;
        }
    }

    /// Kills it (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut bg) = self.bg.take() {
            bg.stop_with(crate::stop::SIGKILL, Duration::from_secs(5));
        }
    }

    /// `etcdctl` against it, inside its namespace.
    pub fn etcdctl(&self, args: &[&str]) -> Result<Out, RunError> {
        let mut argv = vec![
            "etcdctl".to_string(),
            "--endpoints".into(),
            self.endpoint.clone(),
            "--command-timeout".into(),
            "2s".into(),
            "--dial-timeout".into(),
            "2s".into(),
        ];
        if let Some(t) = &self.tls {
            for (k, v) in [
                ("--cacert", &t.probe.ca),
                ("--cert", &t.probe.cert),
                ("--key", &t.probe.key),
            ] {
                argv.push(k.into());
                argv.push(v.display().to_string());
            }
        }
        argv.extend(args.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        netns::try_exec(&self.ns, &argv, SHORT)
    }

    /// Whether it answers `endpoint health`.
    pub fn healthy(&self) -> bool {
        self.etcdctl(&["endpoint", "health"])
            .is_ok_and(|o| o.success())
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        crate::bg::tail(&self.dir.join("etcd.log"), 30)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Flushes let through first, so etcd is not killed in the middle of one.
        if let Some(d) = &self.slow {
            d.let_go();
        }
        self.kill();
        if self.data.starts_with("/dev/shm") {
            let _ = fs::remove_dir_all(&self.data);
        }
    }
}

/// Certificates made with `openssl` in a directory: CAs, and certificates they sign.
pub struct Pki {
    pub dir: PathBuf,
}

/// A certificate authority of a [`Pki`].
#[derive(Debug, Clone)]
pub struct Ca {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["openssl"];
    argv.extend_from_slice(args);
    try_run(&argv, SHORT)?.must()?;
    Ok(())
}

impl Pki {
    /// A PKI in `dir` (created).
    pub fn new(dir: &Path) -> anyhow::Result<Pki> {
        fs::create_dir_all(dir)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, name: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{name}.{ext}"))
    }

    /// A self-signed CA named `name` (P-256, valid a day).
    pub fn ca(&self, name: &str) -> anyhow::Result<Ca> {
        let (cert, key) = (self.path(name, "pem"), self.path(name, "key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key.display().to_string(),
            "-out",
            &cert.display().to_string(),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "1",
        ])?;
        Ok(Ca { cert, key })
    }

    /// A certificate `name` signed by `ca`, for a server at `ip` (if given) and for
    /// clients; returns (certificate, key), the key mode 0600.
    pub fn cert(
        &self,
        ca: &Ca,
        name: &str,
        ip: Option<&str>,
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (cert, key, csr, ext) = (
            self.path(name, "pem"),
            self.path(name, "key"),
            self.path(name, "csr"),
            self.path(name, "ext"),
        );
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key.display().to_string(),
            "-out",
            &csr.display().to_string(),
            "-subj",
            &format!("/CN={name}"),
        ])?;
        let mut e = String::from("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n");
        if let Some(ip) = ip {
            e.push_str(&format!("subjectAltName=IP:{ip}\n"));
        }
        fs::write(&ext, e)?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr.display().to_string(),
            "-CA",
            &ca.cert.display().to_string(),
            "-CAkey",
            &ca.key.display().to_string(),
            "-CAcreateserial",
            "-out",
            &cert.display().to_string(),
            "-days",
            "1",
            "-extfile",
            &ext.display().to_string(),
        ])?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
        Ok((cert, key))
    }
}
