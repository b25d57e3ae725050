//! Requests as a signing-in reverse proxy sends them (`auth.trusted_header`): over
//! devbox's proxy socket, naming the user in [`HEADER`].

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::Reply;

/// The header the tests' configs name in `auth.trusted_header.name`.
pub const HEADER: &str = "X-Forwarded-User";

/// One HTTP/1.1 request over the Unix socket at `socket`, as the proxy would send it
/// on behalf of `user`.
pub fn via_proxy(
    socket: &Path,
    user: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let mut stream = UnixStream::connect(socket).expect("connect to the proxy socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{HEADER}: {user}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    parse_answer(&answer)
}

/// A whole HTTP/1.1 answer (the connection closed after it): status, headers, and
/// the body, de-chunked when it came in chunks.
pub fn parse_answer(answer: &[u8]) -> Reply {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer with headers");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut raw = &answer[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let end = raw
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size");
            let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16)
                .expect("hex chunk size");
            raw = &raw[end + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&raw[..size]);
            raw = &raw[size + 2..];
        }
    } else {
        body.extend_from_slice(raw);
    }
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&body).into_owned(),
    }
}
