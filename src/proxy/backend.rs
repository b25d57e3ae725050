//! Keep-alive HTTP/1.1 connections to the instances, kept per endpoint (an instance's
//! Unix socket, or its loopback port).
//!
//! A request takes the most recently used idle connection to its endpoint (or opens one),
//! and the connection goes back when the answer's body has been read to its end. That
//! is all a proxy to loopback instances needs, and it costs less per request than a
//! general client pool: no pool key to hash, no task spawned per request to wait for
//! the connection to become idle (measured by `benches/proxy.rs`, fast backend).
//!
//! code-server (Node) closes a keep-alive connection after 5 s idle. Connections idle
//! for longer than [`IDLE_FOR_AT_MOST`] are not used again, and a request a closed
//! connection refused before sending anything goes out on another one.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::endpoint::Endpoint;

/// Shorter than Node's 5 s keep-alive timeout, so that a request seldom meets a
/// connection the instance is closing at that moment.
const IDLE_FOR_AT_MOST: Duration = Duration::from_secs(4);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an idle connection may take to take a request; a busier one is dropped.
const READY_WITHIN: Duration = Duration::from_millis(100);
/// Idle connections kept per endpoint; more are closed.
const IDLE_PER_ENDPOINT: usize = 256;

/// Why a request did not get an answer from the instance.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("cannot connect: no answer within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout,
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// The idle connections of every endpoint. Keyed by endpoint, not by route port: a
/// connection only ever carries requests to where it was opened, even when a port
/// passes to another server or an instance moves from a port to a socket. Cloning
/// shares them.
#[derive(Clone, Default)]
pub struct Backends {
    idle: Arc<Mutex<HashMap<Endpoint, Vec<Idle>>>>,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Backends {
    /// Sends `request` (origin-form URI, `Host` set) to the instance at `endpoint`.
    /// The answer's body gives its connection back once read to its end.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, BackendError> {
        while let Some(mut sender) = self.take_idle(endpoint) {
            // An answer can end before its request does (an early 413 to an upload):
            // that connection stays busy until the upload is written. Do not wait long.
            let ready = sender.is_ready()
                || matches!(
                    tokio::time::timeout(READY_WITHIN, sender.ready()).await,
                    Ok(Ok(()))
                );
            if !ready {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.give_back_after(endpoint, sender, response)),
                Err(mut refused) => match refused.take_message() {
                    // Closed before the request was written: another connection.
                    Some(unsent) => request = unsent,
                    None => return Err(refused.into_error().into()),
                },
            }
        }
        let mut sender = connect(endpoint).await?;
        let response = sender.send_request(request).await?;
        Ok(self.give_back_after(endpoint, sender, response))
    }

    fn take_idle(&self, endpoint: &Endpoint) -> Option<SendRequest<Body>> {
        let mut idle = self.lock();
        let connections = idle.get_mut(endpoint)?;
        while let Some(connection) = connections.pop() {
            if !connection.sender.is_closed() && connection.since.elapsed() < IDLE_FOR_AT_MOST {
                return Some(connection.sender);
            }
        }
        None
    }

    fn give_back(&self, endpoint: Endpoint, sender: SendRequest<Body>) {
        let mut idle = self.lock();
        let connections = idle.entry(endpoint).or_default();
        let now = Instant::now();
        connections.retain(|c| !c.sender.is_closed() && now - c.since < IDLE_FOR_AT_MOST);
        if connections.len() < IDLE_PER_ENDPOINT {
            connections.push(Idle { sender, since: now });
        }
    }

    fn give_back_after(
        &self,
        endpoint: &Endpoint,
        sender: SendRequest<Body>,
        response: Response<Incoming>,
    ) -> Response<Body> {
        response.map(|body| {
            Body::new(GivesBackConnection {
                body,
                connection: Some((self.clone(), endpoint.clone(), sender)),
            })
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Endpoint, Vec<Idle>>> {
        // The map holds no invariant a panicking holder could break.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A new connection to `endpoint`, driven by its own task.
async fn connect(endpoint: &Endpoint) -> Result<SendRequest<Body>, BackendError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect())
        .await
        .map_err(|_| BackendError::ConnectTimeout)?
        .map_err(BackendError::Connect)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%err, "instance connection closed");
        }
    });
    Ok(sender)
}

/// An answer's body that returns its connection to the idle ones at its end. Dropped
/// before its end, it drops the connection too (hyper then closes it: the rest of the
/// answer would be in the way of the next one).
struct GivesBackConnection {
    body: Incoming,
    connection: Option<(Backends, Endpoint, SendRequest<Body>)>,
}

impl GivesBackConnection {
    fn give_back(&mut self) {
        if let Some((backends, endpoint, sender)) = self.connection.take() {
            backends.give_back(endpoint, sender);
        }
    }
}

impl http_body::Body for GivesBackConnection {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            // Trailers are a body's last frame; a server does not ask for more after them.
            None => self.give_back(),
            Some(Ok(frame)) if frame.is_trailers() => self.give_back(),
            Some(Ok(_)) => {}
            Some(Err(_)) => self.connection = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for GivesBackConnection {
    fn drop(&mut self) {
        // A server stops polling a body that says it has ended (an empty one, or the
        // last bytes of a known length), so the end is also seen here.
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;
    use tokio::net::TcpListener;

    use super::*;
    use crate::fake_instance::FakeInstance;

    /// A loopback HTTP/1.1 server answering every request with `body`, that closes each
    /// connection after `answers_per_connection` answers.
    async fn instance(body: &'static str, answers_per_connection: usize) -> FakeInstance {
        FakeInstance::on_loopback_port(body, answers_per_connection).await
    }

    fn get(endpoint: &Endpoint) -> Request<Body> {
        Request::get("/")
            .header("host", endpoint.default_host())
            .body(Body::empty())
            .unwrap()
    }

    async fn read_answer(backends: &Backends, endpoint: &Endpoint) -> String {
        let response = backends.send(endpoint, get(endpoint)).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// Connections an instance that closes each after `answers_per_connection` answers
    /// accepted for three requests in a row, each answered in full.
    async fn connections_for_three_answers(answers_per_connection: usize) -> usize {
        let instance = instance("hello", answers_per_connection).await;
        let backends = Backends::default();
        for _ in 0..3 {
            assert_eq!(read_answer(&backends, &instance.endpoint).await, "hello");
        }
        instance.connections_accepted()
    }

    #[tokio::test]
    async fn answers_read_to_their_end_free_the_connection_for_the_next_request() {
        assert_eq!(connections_for_three_answers(usize::MAX).await, 1);
    }

    #[tokio::test]
    async fn a_connection_the_instance_closed_is_replaced_without_an_error() {
        assert_eq!(connections_for_three_answers(1).await, 3);
    }

    #[tokio::test]
    async fn an_answer_dropped_before_its_end_takes_its_connection_along() {
        let instance = instance("a longer answer", usize::MAX).await;
        let backends = Backends::default();
        let unread = backends
            .send(&instance.endpoint, get(&instance.endpoint))
            .await
            .unwrap();
        drop(unread);
        assert_eq!(
            read_answer(&backends, &instance.endpoint).await,
            "a longer answer"
        );
        assert_eq!(instance.connections_accepted(), 1 + 1);
    }

    #[tokio::test]
    async fn empty_answers_free_their_connection_unread() {
        let instance = instance("", usize::MAX).await;
        let backends = Backends::default();
        for _ in 0..3 {
            drop(
                backends
                    .send(&instance.endpoint, get(&instance.endpoint))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(instance.connections_accepted(), 1);
    }

    #[tokio::test]
    async fn an_upload_answered_before_its_end_does_not_hold_up_the_next_request() {
        let instance = instance("too large", usize::MAX).await;
        let backends = Backends::default();
        // An upload that never ends: its connection stays busy writing it.
        let (_uploading, chunks) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let upload = Request::post("/upload")
            .header("host", instance.endpoint.default_host())
            .body(Body::new(http_body_util::StreamBody::new(
                tokio_stream_from(chunks),
            )))
            .unwrap();
        let early = backends.send(&instance.endpoint, upload).await.unwrap();
        let bytes = early.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "too large");
        let next = tokio::time::timeout(
            Duration::from_secs(10),
            read_answer(&backends, &instance.endpoint),
        );
        assert_eq!(
            next.await.expect("the next request waited for the upload"),
            "too large"
        );
    }

    /// The receiving half of a channel as a stream of body frames.
    fn tokio_stream_from(
        mut chunks: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| chunks.poll_recv(cx))
    }

    #[tokio::test]
    async fn a_port_nobody_listens_on_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let nobody = Endpoint::Tcp(port);
        let err = Backends::default()
            .send(&nobody, get(&nobody))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Connect(_)), "{err}");
    }
}
