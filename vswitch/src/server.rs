//! The control socket: newline-delimited JSON over a Unix stream socket, mode 0600.
//! One thread per client (bounded), each request handled under the controller's lock.
//! Garbage, oversized lines and clients that vanish mid-request get an error or a closed
//! connection; none of it reaches the controller. When every slot is taken, the client
//! that has been waiting longest between requests is closed to make room, so clients
//! that connect and stay silent cannot lock the operator out.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctl::{Request, Response, MAX_REQUEST_BYTES};

use crate::controller::Controller;

/// Most clients served at once; more get an error and are closed.
const MAX_CLIENTS: usize = 64;
/// How long a client may stay silent before it is dropped.
const IDLE: Duration = Duration::from_secs(60);
/// How long a client must have been idle before it is closed to admit another: one
/// that has just connected, or just been answered, may not have sent its next request
/// yet (its process not scheduled on a loaded host), and closing it would answer that
/// request with nothing at all instead of "too many clients".
const EVICT_AFTER: Duration = Duration::from_secs(2);

/// Why the control socket could not be bound; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot create {path}: {why}")]
    CreateDir { path: String, why: std::io::Error },
    #[error("another vswitchd is listening on {0}")]
    InUse(String),
    #[error("cannot remove stale {path}: {why}")]
    RemoveStale { path: String, why: std::io::Error },
    #[error("cannot listen on {path}: {why}")]
    Listen { path: String, why: std::io::Error },
    #[error("cannot chmod {path}: {why}")]
    Chmod { path: String, why: std::io::Error },
}

/// Binds the control socket at `path` (0600), replacing a stale one.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let shown = || path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|why| BindError::CreateDir {
            path: dir.display().to_string(),
            why,
        })?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(shown()));
        }
        std::fs::remove_file(path).map_err(|why| BindError::RemoveStale { path: shown(), why })?;
    }
    // Bind under a tight umask so the socket is never reachable by others, not even
    // between bind and chmod.
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let l = l.map_err(|why| BindError::Listen { path: shown(), why })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|why| BindError::Chmod { path: shown(), why })?;
    Ok(l)
}

/// A connected client as the acceptor sees it.
struct Slot {
    id: u64,
    /// A handle to close the connection with.
    stream: UnixStream,
    /// Inside a request (read a line, not yet answered): never evicted then.
    busy: bool,
    /// When it last finished a request, or connected.
    idle_since: Instant,
}

/// The clients being served.
#[derive(Default)]
struct Slots(Mutex<Vec<Slot>>);

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a new client, closing the longest-idle one if all are taken.
    /// False if no client has been idle for [`EVICT_AFTER`].
    fn admit(&self, id: u64, stream: &UnixStream) -> bool {
        let mut v = self.lock();
        if v.len() >= MAX_CLIENTS {
            let oldest = v
                .iter()
                .enumerate()
                // A client whose request is still unread is not idle, only slow to be
                // served (its thread not yet run): closing it would drop its request.
                .filter(|(_, s)| {
                    !s.busy && s.idle_since.elapsed() >= EVICT_AFTER && !has_unread_input(&s.stream)
                })
                .min_by_key(|(_, s)| s.idle_since)
                .map(|(i, _)| i);
            let Some(i) = oldest else { return false };
            let s = v.swap_remove(i);
            tracing::debug!(
                client = s.id,
                "closing the longest-idle client to admit another"
            );
            let _ = s.stream.shutdown(Shutdown::Both);
        }
        let Ok(handle) = stream.try_clone() else {
            return false;
        };
        v.push(Slot {
            id,
            stream: handle,
            busy: false,
            idle_since: Instant::now(),
        });
        true
    }

    fn set_busy(&self, id: u64, busy: bool) {
        if let Some(s) = self.lock().iter_mut().find(|s| s.id == id) {
            s.busy = busy;
            s.idle_since = Instant::now();
        }
    }

    fn leave(&self, id: u64) {
        self.lock().retain(|s| s.id != id);
    }
}

/// True if the client has sent bytes its thread has not read yet.
fn has_unread_input(stream: &UnixStream) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: `b` is valid for writes of its length; MSG_PEEK leaves the byte queued.
    let r = unsafe {
        libc::recv(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    r > 0
}

/// Accepts clients forever.
pub fn serve(
    listener: UnixListener,
    ctl: Arc<Mutex<Controller>>,
    cluster: Option<Arc<cluster::Handle>>,
) {
    let slots = Arc::new(Slots::default());
    for (id, conn) in (0u64..).zip(listener.incoming()) {
        let Ok(mut stream) = conn else { continue };
        if !slots.admit(id, &stream) {
            let _ = write_response(&mut stream, &Response::err("too many clients, try again"));
            continue;
        }
        let ctl = ctl.clone();
        let cl = cluster.clone();
        let slots2 = slots.clone();
        let spawned = std::thread::Builder::new()
            .name("vswitch-client".into())
            .spawn(move || {
                let _ = client(stream, &ctl, cl.as_deref(), &|busy| {
                    slots2.set_busy(id, busy)
                });
                slots2.leave(id);
            });
        if spawned.is_err() {
            slots.leave(id);
            tracing::warn!("cannot start a client thread");
        }
    }
}

fn write_response(stream: &mut UnixStream, r: &Response) -> io::Result<()> {
    let mut line = serde_json::to_string(r)
        .unwrap_or_else(|_| r#"{"ok":false,"error":"internal error"}"#.into());
    line.push('\n');
    stream.write_all(line.as_bytes())
}

/// Serves one client until it closes, errs, or sends an oversized line. `busy` is told
/// when a request starts (true) and when it has been answered (false).
fn client(
    stream: UnixStream,
    ctl: &Mutex<Controller>,
    cluster: Option<&cluster::Handle>,
    busy: &dyn Fn(bool),
) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    let mut out = stream.try_clone()?;
    // One byte more than the limit, so an oversized line is seen as such.
    let mut reader = BufReader::new(stream).take(0);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        reader.set_limit(MAX_REQUEST_BYTES as u64 + 1);
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            if line.len() > MAX_REQUEST_BYTES {
                write_response(
                    &mut out,
                    &Response::err(format!(
                        "request too large (limit {MAX_REQUEST_BYTES} bytes)"
                    )),
                )?;
            }
            // Too large, or the client hung up mid-line: either way we are done.
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        busy(true);
        let resp = match serde_json::from_str::<Request>(text) {
            Err(e) => Response::err(format!("malformed request: {e}")),
            Ok(req)
                if crate::clustering::is_cluster_request(&req)
                    || crate::clustering::is_overlay_attach(&req, ctl, cluster)
                    || crate::clustering::is_cluster_service(&req, ctl, cluster) =>
            {
                tracing::debug!(?req, "cluster request");
                // Never under the controller's lock: the store may be slow to answer.
                match crate::clustering::handle(req, ctl, cluster) {
                    Ok(d) => Response::ok(d),
                    Err(e) => Response::err(e.to_string()),
                }
            }
            Ok(req) => {
                tracing::debug!(?req, "request");
                let names = matches!(req, Request::SetNames { .. } | Request::DelPort { .. });
                let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
                let r = c.handle(req);
                // A port's names are in its cluster endpoint record: other nodes get
                // them now rather than at the next housekeeping tick.
                if let (true, Ok(_), Some(cl)) = (names, &r, cluster) {
                    cl.set_owned(c.cluster_endpoints());
                }
                match r {
                    Ok(d) => Response::ok(d),
                    Err(e) => Response::err(e.to_string()),
                }
            }
        };
        let sent = write_response(&mut out, &resp);
        busy(false);
        sent?;
    }
}

/// Removes the socket file on drop.
pub struct SockGuard(pub PathBuf);

impl Drop for SockGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
