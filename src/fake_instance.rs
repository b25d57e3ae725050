//! A stand-in for a code-server instance in unit tests: an HTTP/1.1 server on a Unix
//! socket or a loopback port that answers every request with one fixed body on
//! keep-alive connections, counts the connections it accepts, and checks that each
//! request names the `Host` devbox sends that endpoint by default.

#![cfg(test)]

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use crate::endpoint::{Endpoint, EndpointStream};

/// A running stand-in; it serves until the test's runtime ends.
pub(crate) struct FakeInstance {
    pub(crate) endpoint: Endpoint,
    accepted: Arc<AtomicUsize>,
}

impl FakeInstance {
    /// Serves on a new Unix socket at `path`, closing each connection after
    /// `answers_per_connection` answers.
    pub(crate) fn on_socket(
        path: PathBuf,
        body: &'static str,
        answers_per_connection: usize,
    ) -> FakeInstance {
        let listener = UnixListener::bind(&path).expect("bind the stand-in's socket");
        serve(
            Listener::Unix(listener),
            Endpoint::Unix(path),
            body,
            answers_per_connection,
        )
    }

    /// Serves on a free loopback port, closing each connection after
    /// `answers_per_connection` answers.
    pub(crate) async fn on_loopback_port(
        body: &'static str,
        answers_per_connection: usize,
    ) -> FakeInstance {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("the bound port").port();
        serve(
            Listener::Tcp(listener),
            Endpoint::Tcp(port),
            body,
            answers_per_connection,
        )
    }

    /// The connections accepted so far.
    pub(crate) fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    async fn accept(&self) -> io::Result<EndpointStream> {
        Ok(match self {
            Listener::Tcp(listener) => EndpointStream::Tcp(listener.accept().await?.0),
            Listener::Unix(listener) => EndpointStream::Unix(listener.accept().await?.0),
        })
    }
}

fn serve(
    listener: Listener,
    endpoint: Endpoint,
    body: &'static str,
    answers_per_connection: usize,
) -> FakeInstance {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let host_line = format!(
        "host: {}",
        String::from_utf8_lossy(endpoint.default_host().as_bytes())
    );
    tokio::spawn(async move {
        while let Ok(stream) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(answer(
                stream,
                host_line.clone(),
                body,
                answers_per_connection,
            ));
        }
    });
    FakeInstance { endpoint, accepted }
}

/// Answers the requests on one connection with `body`, each once its head has arrived,
/// until the client closes it or `answers` have been sent.
async fn answer(mut stream: EndpointStream, host_line: String, body: &'static str, answers: usize) {
    let mut request = Vec::new();
    for _ in 0..answers {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0; 1024];
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&request);
        assert!(head.contains(&host_line), "{head}");
        request.clear();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}
