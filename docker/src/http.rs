//! The plugin's HTTP/1.1 server on a Unix socket, hand-written: libnetwork posts one
//! JSON body per call to `/Plugin.Activate`, `/NetworkDriver.CreateNetwork`, … and reads
//! one JSON answer. `tiny_http` (0.12) listens on Unix sockets too, but reads header
//! lines without any bound; what is needed here (a request line, headers, a body by
//! `Content-Length` or chunked, one answer, `Connection: close`) is small enough to own
//! with every size bounded: the head to [`MAX_HEAD`], the body to [`MAX_BODY`], each read
//! and write to [`IO_TIMEOUT`].
//!
//! Calls are handled one at a time, in arrival order, so two calls never race on the
//! same `vswitchd` objects (the shared trunk bridge of VLAN networks). Answers have status
//! 200 and the plugin content type; errors are `{"Err":"vswitch: …"}`, which Docker
//! prints. A request that is not HTTP gets a 400 with the same kind of body.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::plugin::Handler;

/// The largest request body read, in bytes (libnetwork's bodies are a few KiB).
pub const MAX_BODY: u64 = 1 << 20;
/// The largest request line plus headers, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;
/// How long one read or write on a connection may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The content type of Docker's plugin protocol, version 1.2.
pub const CONTENT_TYPE_V12: &str = "application/vnd.docker.plugins.v1.2+json";
/// Version 1.1, which older daemons send.
pub const CONTENT_TYPE_V11: &str = "application/vnd.docker.plugins.v1.1+json";

/// One request as read from the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one line of at most `limit` bytes (with its CRLF); Err past it or at EOF.
fn read_line(r: &mut impl BufRead, limit: usize) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let n = r
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the request: {e}"))?;
    if n == 0 {
        return Err("connection closed before the request ended".into());
    }
    if line.len() > limit {
        return Err(format!("request head larger than {MAX_HEAD} bytes"));
    }
    if line.last() != Some(&b'\n') {
        return Err("connection closed before the request ended".into());
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(line)
}

/// Reads one HTTP/1.x request, every part bounded.
pub fn read_request(r: &mut impl Read) -> Result<HttpRequest, String> {
    let mut r = BufReader::new(r);
    let mut left = MAX_HEAD;
    let mut next = |r: &mut BufReader<_>| -> Result<String, String> {
        let line = read_line(r, left)?;
        left = left.saturating_sub(line.len() + 2);
        String::from_utf8(line).map_err(|_| "request head is not UTF-8".to_string())
    };
    let first = next(&mut r)?;
    let mut parts = first.split_whitespace();
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed HTTP request line".into());
    };
    if !version.starts_with("HTTP/1.") {
        return Err("not an HTTP/1.x request".into());
    }
    let mut headers = Vec::new();
    loop {
        let line = next(&mut r)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| "malformed HTTP header".to_string())?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = HttpRequest {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let line = read_line(&mut r, 1024)?;
            let line = String::from_utf8_lossy(&line);
            let size = line.split(';').next().unwrap_or("").trim();
            let size =
                u64::from_str_radix(size, 16).map_err(|_| "malformed chunk size".to_string())?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !read_line(&mut r, 1024)?.is_empty() {}
                break;
            }
            if req.body.len() as u64 + size > MAX_BODY {
                return Err(format!("request body larger than {MAX_BODY} bytes"));
            }
            (&mut r)
                .take(size)
                .read_to_end(&mut req.body)
                .map_err(|e| format!("cannot read the request: {e}"))?;
            if !read_line(&mut r, 2)?.is_empty() {
                return Err("malformed chunk".into());
            }
        }
    } else if let Some(len) = req.header("Content-Length") {
        let len: u64 = len
            .parse()
            .map_err(|_| "malformed Content-Length".to_string())?;
        if len > MAX_BODY {
            return Err(format!("request body larger than {MAX_BODY} bytes"));
        }
        (&mut r)
            .take(len)
            .read_to_end(&mut req.body)
            .map_err(|e| format!("cannot read the request: {e}"))?;
        if req.body.len() as u64 != len {
            return Err("connection closed before the request ended".into());
        }
    }
    Ok(req)
}

/// Writes one answer and closes the connection's write side.
fn write_answer(s: &mut UnixStream, status: &str, ctype: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body.as_bytes()))
        .and_then(|()| s.flush());
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// Answers one connection.
fn serve_one(mut s: UnixStream, handler: &mut dyn Handler) {
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    match read_request(&mut s) {
        Ok(req) => {
            let ctype = answer_type(req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let answer: Value = handler.handle(&req.path, &req.body);
            let shown: String = req.path.chars().take(80).collect();
            match answer.get("Err").and_then(Value::as_str) {
                Some(e) => eprintln!("vswitch-docker: {} {shown}: {e}", req.method),
                None => eprintln!("vswitch-docker: {} {shown}: ok", req.method),
            }
            write_answer(&mut s, "200 OK", ctype, &answer.to_string());
        }
        Err(e) => {
            eprintln!("vswitch-docker: bad request: {e}");
            let body = json!({ "Err": format!("vswitch: {e}") }).to_string();
            write_answer(&mut s, "400 Bad Request", CONTENT_TYPE_V12, &body);
        }
    }
}

/// Serves `handler` on the Unix socket `path` until the process ends.
pub fn serve(path: &Path, handler: &mut dyn Handler) -> Result<(), String> {
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    eprintln!("vswitch-docker: serving {}", path.display());
    for conn in listener.incoming() {
        match conn {
            Ok(s) => serve_one(s, handler),
            Err(e) => eprintln!("vswitch-docker: accept: {e}"),
        }
    }
    Ok(())
}

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

    fn req(text: &[u8]) -> Result<HttpRequest, String> {
        read_request(&mut &text[..])
    }

    #[test]
    fn reads_what_docker_sends() {
        let r = req(
            b"POST /NetworkDriver.Join HTTP/1.1\r\nHost: plugin\r\nContent-Length: 2\r\n\
                      Accept: application/vnd.docker.plugins.v1.2+json\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/NetworkDriver.Join")
        );
        assert_eq!(r.body, b"{}");
        assert_eq!(
            r.header("accept"),
            Some("application/vnd.docker.plugins.v1.2+json")
        );
        let r = req(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n3;x=y\r\na\":\r\n1\r\n1\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, b"{\"a\":1");
        let r = req(b"GET /Plugin.Activate HTTP/1.0\n\n").unwrap();
        assert!(r.body.is_empty());
    }

    #[test]
    fn everything_is_bounded_and_nothing_panics() {
        let big = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(req(big.as_bytes()).unwrap_err().contains("larger"));
        let long = format!("POST /x HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(req(long.as_bytes()).unwrap_err().contains("larger"));
        let many = format!(
            "POST /x HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEAD / 4)
        );
        assert!(req(many.as_bytes()).unwrap_err().contains("larger"));
        let chunks = format!(
            "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            MAX_BODY + 1
        );
        assert!(req(chunks.as_bytes()).unwrap_err().contains("larger"));
        for junk in [
            &b""[..],
            b"\r\n\r\n",
            b"POST\r\n\r\n",
            b"POST /x SPDY/3\r\n\r\n",
            b"POST /x HTTP/1.1\r\nno colon\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n",
            b"\xff\xfe /x HTTP/1.1\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: a",
        ] {
            assert!(req(junk).is_err(), "{:?}", String::from_utf8_lossy(junk));
        }
    }
}
