//! The control socket: newline-delimited JSON over a Unix stream socket, mode 0600.
//! One thread per client (bounded), each request handled under the controller's lock.
//! Garbage, oversized lines and clients that vanish mid-request get an error or a closed
//! connection; none of it reaches the controller.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctl::{Request, Response, MAX_REQUEST_BYTES};

use crate::controller::Controller;

/// Most clients served at once; more get an error and are closed.
const MAX_CLIENTS: usize = 64;
/// How long a client may stay silent before it is dropped.
const IDLE: Duration = Duration::from_secs(60);

/// Binds the control socket at `path` (0600), replacing a stale one.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another vswitchd is listening on {}",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale {}: {e}", path.display()))?;
    }
    // Bind under a tight umask so the socket is never reachable by others, not even
    // between bind and chmod.
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let l = l.map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    Ok(l)
}

/// Accepts clients forever.
pub fn serve(listener: UnixListener, ctl: Arc<Mutex<Controller>>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::AcqRel);
            let _ = write_response(&mut stream, &Response::err("too many clients, try again"));
            continue;
        }
        let ctl = ctl.clone();
        let active = active.clone();
        let spawned = std::thread::Builder::new()
            .name("vswitch-client".into())
            .spawn(move || {
                let _ = client(stream, &ctl);
                active.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
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

/// Serves one client until it closes, errs, or sends an oversized line.
fn client(stream: UnixStream, ctl: &Mutex<Controller>) -> io::Result<()> {
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
        let resp = match serde_json::from_str::<Request>(text) {
            Err(e) => Response::err(format!("malformed request: {e}")),
            Ok(req) => {
                tracing::debug!(?req, "request");
                let mut c = ctl.lock().unwrap_or_else(|p| p.into_inner());
                match c.handle(req) {
                    Ok(d) => Response::ok(d),
                    Err(e) => Response::err(e),
                }
            }
        };
        write_response(&mut out, &resp)?;
    }
}

/// Removes the socket file on drop.
pub struct SockGuard(pub PathBuf);

impl Drop for SockGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
