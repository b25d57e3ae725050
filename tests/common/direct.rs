//! Reaching a code-server instance straight, not through devbox: over its Unix socket
//! (`code_server.listen: socket`, the default) or on its loopback port (`listen: tcp`),
//! with a minimal HTTP/1.0 GET (this file is included by both `tests/common` and
//! `benches/common`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// How long a direct request may wait for each read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an instance listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direct {
    Tcp(u16),
    Unix(PathBuf),
}

/// An answer: status, headers (names lowercased) and body.
#[derive(Debug)]
pub struct DirectReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl DirectReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Direct {
    /// `GET path` with `headers` (and `Host: localhost`); `None` when nothing answers.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Option<DirectReply> {
        let mut stream: Box<dyn ReadWrite> = match self {
            Direct::Tcp(port) => {
                let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, *port)).ok()?;
                stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
                stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
                Box::new(stream)
            }
            Direct::Unix(path) => {
                let stream = UnixStream::connect(path).ok()?;
                stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
                stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
                Box::new(stream)
            }
        };
        // HTTP/1.0: the answer is never chunked, and ends with the connection or its
        // Content-Length.
        let mut request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let status = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            let (name, value) = trimmed.split_once(':')?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let mut body = Vec::new();
        match length {
            Some(length) => {
                body.resize(length, 0);
                reader.read_exact(&mut body).ok()?;
            }
            None => {
                reader.read_to_end(&mut body).ok()?;
            }
        }
        Some(DirectReply {
            status,
            headers,
            body,
        })
    }

    /// `GET /healthz`: its JSON when it answers 200.
    pub fn healthz(&self) -> Option<serde_json::Value> {
        let reply = self.get("/healthz", &[])?;
        (reply.status == 200)
            .then(|| serde_json::from_slice(&reply.body).ok())
            .flatten()
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}
