//! The plugin's HTTP server on a Unix socket, with `tiny_http` (0.12, which listens on
//! Unix sockets through `Server::http_unix`): libnetwork posts one JSON body per call
//! to `/Plugin.Activate`, `/NetworkDriver.CreateNetwork`, … and reads one JSON answer.
//!
//! Calls are handled one at a time, in arrival order, so two calls never race on the
//! same `vswitchd` objects (the shared trunk bridge of VLAN networks). A body larger than
//! [`MAX_BODY`] is refused without being read further. Answers always have status 200
//! and the plugin content type; errors are `{"Err":"vswitch: …"}`, which Docker prints.

use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};

use crate::plugin::Handler;

/// The largest request body read, in bytes (libnetwork's bodies are a few KiB).
pub const MAX_BODY: u64 = 1 << 20;
/// The content type of Docker's plugin protocol, version 1.2.
pub const CONTENT_TYPE_V12: &str = "application/vnd.docker.plugins.v1.2+json";
/// Version 1.1, which older daemons send.
pub const CONTENT_TYPE_V11: &str = "application/vnd.docker.plugins.v1.1+json";

/// The content type to answer with: the plugin type the client used, else v1.2.
pub fn answer_type<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> &'static str {
    let mut v11 = false;
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name == "content-type" || name == "accept" {
            if value.contains("plugins.v1.2") {
                return CONTENT_TYPE_V12;
            }
            if value.contains("plugins.v1.1") {
                v11 = true;
            }
        }
    }
    if v11 {
        CONTENT_TYPE_V11
    } else {
        CONTENT_TYPE_V12
    }
}

/// Reads at most [`MAX_BODY`] bytes of `r`; Err when there is more or reading fails.
pub fn read_body(r: &mut dyn Read) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    r.take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read the request: {e}"))?;
    if body.len() as u64 > MAX_BODY {
        return Err(format!("request body larger than {MAX_BODY} bytes"));
    }
    Ok(body)
}

/// Serves `handler` on the Unix socket `path` until the process ends.
pub fn serve(path: &Path, handler: &mut dyn Handler) -> Result<(), String> {
    let server = tiny_http::Server::http_unix(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    eprintln!("vswitch-docker: serving {}", path.display());
    for mut rq in server.incoming_requests() {
        let url = rq.url().to_string();
        let ctype = answer_type(
            rq.headers()
                .iter()
                .map(|h| (h.field.as_str().as_str(), h.value.as_str())),
        );
        let answer: Value = match read_body(rq.as_reader()) {
            Ok(body) => handler.handle(&url, &body),
            Err(e) => json!({ "Err": format!("vswitch: {e}") }),
        };
        if let Some(e) = answer.get("Err").and_then(Value::as_str) {
            eprintln!("vswitch-docker: {url}: {e}");
        } else {
            eprintln!("vswitch-docker: {url}: ok");
        }
        let text = answer.to_string();
        let mut resp = tiny_http::Response::from_string(text);
        if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes()) {
            resp = resp.with_header(h);
        }
        if let Err(e) = rq.respond(resp) {
            eprintln!("vswitch-docker: {url}: cannot answer: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_the_clients_version() {
        let h = [("Accept", "application/vnd.docker.plugins.v1.1+json")];
        assert_eq!(answer_type(h.iter().copied()), CONTENT_TYPE_V11);
        let h = [
            ("Accept", "application/vnd.docker.plugins.v1.2+json"),
            ("Content-Type", "application/json"),
        ];
        assert_eq!(answer_type(h.iter().copied()), CONTENT_TYPE_V12);
        assert_eq!(answer_type([].iter().copied()), CONTENT_TYPE_V12);
    }

    #[test]
    fn bodies_are_bounded() {
        let big = vec![b'x'; (MAX_BODY + 10) as usize];
        assert!(read_body(&mut &big[..]).is_err());
        let small = b"{}".to_vec();
        assert_eq!(read_body(&mut &small[..]).unwrap(), b"{}");
    }
}
