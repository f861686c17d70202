//! A small client of the Docker Engine API on its Unix socket (`/var/run/docker.sock`),
//! for what libnetwork's remote-driver calls do not carry: which container an endpoint
//! is, its name and its network aliases. It reads JSON answers (`GET`, size-bounded,
//! with a timeout) and the `/events` stream (one JSON object per line).
//!
//! HTTP is `hyper`'s client over a `tokio` Unix stream, on a current-thread runtime the
//! caller owns: the rest of the plugin is synchronous, and this runs in its own thread
//! ([`crate::names`]). `bollard` would do the same with a much larger dependency tree
//! (its generated API types) for the two calls needed here.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// Docker's default API socket.
pub const DEFAULT_SOCK: &str = "/var/run/docker.sock";
/// The largest JSON answer read (a container's inspect is a few KiB).
pub const MAX_ANSWER: usize = 4 << 20;
/// The longest event line kept (events are a few hundred bytes).
pub const MAX_EVENT: usize = 64 << 10;
/// How long a `GET` may take. An inspect waits for the container's lock, which a
/// starting container holds until it runs.
pub const GET_TIMEOUT: Duration = Duration::from_secs(30);

/// The Engine API behind a Unix socket.
#[derive(Debug, Clone)]
pub struct Engine {
    pub sock: PathBuf,
}

/// Percent-encodes a query value (the JSON of `filters=`).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn request(
    sock: &Path,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let stream = UnixStream::connect(sock)
        .await
        .map_err(|e| format!("cannot reach the Docker API at {}: {e}", sock.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("Docker API handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, "docker")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("Docker API request {path}: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("Docker API {path}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("Docker API {path}: status {}", resp.status()));
    }
    Ok(resp)
}

impl Engine {
    /// `GET path`, its JSON answer.
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        let go = async {
            let resp = request(&self.sock, path).await?;
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("Docker API {path}: {e}"))?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| format!("Docker API {path}: {e}"))
        };
        tokio::time::timeout(GET_TIMEOUT, go)
            .await
            .map_err(|_| format!("Docker API {path}: no answer in {GET_TIMEOUT:?}"))?
    }

    /// Opens the event stream of `filters` (Docker's filter JSON), from `since` on:
    /// Docker sends the events it still holds (its last 256) from then before the new
    /// ones, so that none falls in the gap before it subscribed the stream (it answers
    /// the request before it subscribes) or while no stream was open.
    pub async fn events(&self, filters: &str, since: Option<SystemTime>) -> Result<Events, String> {
        let mut path = format!("/events?filters={}", query_escape(filters));
        if let Some(d) = since.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            path.push_str(&format!("&since={}.{:09}", d.as_secs(), d.subsec_nanos()));
        }
        let body = request(&self.sock, &path).await?.into_body();
        Ok(Events {
            body,
            buf: Vec::new(),
        })
    }
}

/// An open event stream.
pub struct Events {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl Events {
    /// The next event; `Ok(None)` once the stream ended. A line that is not JSON is
    /// skipped; one longer than [`MAX_EVENT`] ends the stream with an error.
    pub async fn next(&mut self) -> Result<Option<Value>, String> {
        loop {
            while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                    return Ok(Some(v));
                }
            }
            if self.buf.len() > MAX_EVENT {
                return Err(format!("Docker event longer than {MAX_EVENT} bytes"));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|e| format!("Docker event stream: {e}"))?;
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_escaped() {
        assert_eq!(
            query_escape(r#"{"type":["network"]}"#),
            "%7B%22type%22%3A%5B%22network%22%5D%7D"
        );
    }
}
