//! Finding a Docker container's network namespace: one `GET /containers/NAME/json` to
//! the Docker Engine API over its Unix socket (`DOCKER_HOST=unix://…`, default
//! `/var/run/docker.sock`). HTTP/1.0 without keep-alive, so the answer ends when the
//! daemon closes the connection; nothing else of the API is needed, so no client crate.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Largest answer read from the Docker daemon.
const MAX_ANSWER: u64 = 4 << 20;

/// The Docker daemon's socket: `DOCKER_HOST` if it names a Unix socket, else the default.
pub fn docker_sock() -> Result<PathBuf, String> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => match h.strip_prefix("unix://") {
            Some(p) => Ok(PathBuf::from(p)),
            None => Err(format!(
                "DOCKER_HOST={h} is not a unix:// socket (only local Docker daemons are supported)"
            )),
        },
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

/// A Docker container name or ID as the API accepts it.
fn valid_name(name: &str) -> bool {
    let mut c = name.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && name.len() <= 128
        && c.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The PID of running container `name` (a name or an ID).
pub fn container_pid(name: &str) -> Result<u32, String> {
    if !valid_name(name) {
        return Err(format!(
            "{name:?} is not a PID, a namespace or a container name"
        ));
    }
    let sock = docker_sock()?;
    let mut s = UnixStream::connect(&sock).map_err(|e| {
        format!(
            "{name:?} is not a PID or a namespace, and Docker at {} cannot be asked: {e}",
            sock.display()
        )
    })?;
    let t = Some(Duration::from_secs(10));
    s.set_read_timeout(t).map_err(|e| e.to_string())?;
    s.set_write_timeout(t).map_err(|e| e.to_string())?;
    let req = format!("GET /containers/{name}/json HTTP/1.0\r\nHost: docker\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("cannot ask Docker: {e}"))?;
    let mut answer = Vec::new();
    s.take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(|e| format!("cannot read Docker's answer: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("Docker sent a malformed answer")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("Docker sent a malformed answer")?;
    match status {
        200 => {}
        404 => return Err(format!("no container named {name}")),
        s => return Err(format!("Docker answered {s} for container {name}")),
    }
    pid_of(body).ok_or_else(|| format!("container {name} is not running"))
}

/// The PID of a running container from its inspect JSON.
fn pid_of(body: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let state = v.get("State")?;
    if state.get("Running").and_then(|r| r.as_bool()) != Some(true) {
        return None;
    }
    let pid = state.get("Pid")?.as_u64()?;
    u32::try_from(pid).ok().filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_inspect_answers() {
        assert!(valid_name("web-1"));
        assert!(valid_name("3f4e5a6b7c8d"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        assert_eq!(
            pid_of(r#"{"State":{"Running":true,"Pid":4242}}"#),
            Some(4242)
        );
        assert_eq!(pid_of(r#"{"State":{"Running":false,"Pid":0}}"#), None);
        assert_eq!(pid_of("garbage"), None);
    }
}
