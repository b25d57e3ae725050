//! Health of a code-server instance: `GET /healthz` where it listens (its Unix socket,
//! or its loopback port with `listen: tcp`).
//!
//! Healthy means a 200 answer with a JSON body. A fresh instance says
//! `{"status":"expired"}` until a browser connects; that is healthy too (`alive` only
//! means a client was active in the last minute, and `lastHeartbeat` is the input for
//! idle culling).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::endpoint::Endpoint;

/// Node closes a keep-alive connection after 5 s idle; one idle for longer than this is
/// not used again (the same margin as the proxy's connections).
const IDLE_FOR_AT_MOST: Duration = Duration::from_secs(4);

/// What `/healthz` said.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Healthz {
    pub status: String,
    #[serde(default, rename = "lastHeartbeat")]
    pub last_heartbeat: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("no answer from {endpoint} within {timeout:?}")]
    Timeout {
        endpoint: Endpoint,
        timeout: Duration,
    },
    #[error("{endpoint}: {message}")]
    Request { endpoint: Endpoint, message: String },
    #[error("{endpoint} answered HTTP {status}")]
    Status { endpoint: Endpoint, status: u16 },
    #[error("{endpoint} answered something that is not code-server's health JSON")]
    NotJson { endpoint: Endpoint },
    /// devbox itself could not open a connection (out of file descriptors or memory):
    /// nothing is known about the instance.
    #[error("devbox cannot open a connection to {endpoint}: {source}")]
    DevboxExhausted {
        endpoint: Endpoint,
        source: std::io::Error,
    },
}

impl HealthError {
    /// Whether the failure is devbox's own, not the instance's (see
    /// [`HealthError::DevboxExhausted`]).
    pub fn is_devboxs_own(&self) -> bool {
        matches!(self, HealthError::DevboxExhausted { .. })
    }
}

/// Whether a connect failed for want of devbox's own resources: descriptors (its own
/// or the system's), buffers, memory.
fn is_exhaustion(err: &std::io::Error) -> bool {
    use nix::errno::Errno;
    err.raw_os_error().is_some_and(|code| {
        [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM]
            .iter()
            .any(|errno| *errno as i32 == code)
    })
}

/// Health checks with one kept-alive connection per instance: a start polls every few
/// milliseconds until the first answer, and those polls reuse one connection. (At the
/// default 5 s between checks of a running server, Node has usually closed it by the
/// next check, and a new one is made: over a Unix socket that costs a few
/// microseconds.) Cloning is cheap and shares the connections.
#[derive(Clone, Default)]
pub struct HealthClient {
    idle: Arc<Mutex<HashMap<Endpoint, Idle>>>,
}

struct Idle {
    sender: SendRequest<Empty<Bytes>>,
    since: Instant,
}

impl HealthClient {
    /// Asks the instance at `endpoint` for its health.
    pub async fn check(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<Healthz, HealthError> {
        match tokio::time::timeout(timeout, self.request(endpoint)).await {
            Ok(result) => result,
            Err(_) => Err(HealthError::Timeout {
                endpoint: endpoint.clone(),
                timeout,
            }),
        }
    }

    async fn request(&self, endpoint: &Endpoint) -> Result<Healthz, HealthError> {
        let fail = |message: String| HealthError::Request {
            endpoint: endpoint.clone(),
            message,
        };
        let request = Request::get("/healthz")
            .header(header::HOST, endpoint.default_host())
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let (sender, response) = match self.take_idle(endpoint) {
            Some(mut sender) => match sender.try_send_request(request).await {
                Ok(response) => (sender, response),
                Err(mut refused) => match refused.take_message() {
                    // Closed before the request was written: a new connection.
                    Some(unsent) => send_on_new(endpoint, unsent).await?,
                    None => return Err(fail(refused.into_error().to_string())),
                },
            },
            None => send_on_new(endpoint, request).await?,
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        // The answer was read to its end: the connection can take the next check.
        self.give_back(endpoint, sender);
        if !status.is_success() {
            return Err(HealthError::Status {
                endpoint: endpoint.clone(),
                status: status.as_u16(),
            });
        }
        serde_json::from_slice(&body).map_err(|_| HealthError::NotJson {
            endpoint: endpoint.clone(),
        })
    }

    fn take_idle(&self, endpoint: &Endpoint) -> Option<SendRequest<Empty<Bytes>>> {
        let idle = self.lock().remove(endpoint)?;
        (idle.sender.is_ready() && idle.since.elapsed() < IDLE_FOR_AT_MOST).then_some(idle.sender)
    }

    fn give_back(&self, endpoint: &Endpoint, sender: SendRequest<Empty<Bytes>>) {
        let mut idle = self.lock();
        // Connections of instances that are gone are closed: no need to keep them.
        idle.retain(|_, kept| !kept.sender.is_closed());
        idle.insert(
            endpoint.clone(),
            Idle {
                sender,
                since: Instant::now(),
            },
        );
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Endpoint, Idle>> {
        // The map holds no invariant a panicking holder could break.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type Answer = (
    SendRequest<Empty<Bytes>>,
    hyper::Response<hyper::body::Incoming>,
);

/// Sends `request` on a new connection to `endpoint`.
async fn send_on_new(
    endpoint: &Endpoint,
    request: Request<Empty<Bytes>>,
) -> Result<Answer, HealthError> {
    let fail = |message: String| HealthError::Request {
        endpoint: endpoint.clone(),
        message,
    };
    let stream = endpoint.connect().await.map_err(|source| {
        if is_exhaustion(&source) {
            HealthError::DevboxExhausted {
                endpoint: endpoint.clone(),
                source,
            }
        } else {
            fail(source.to_string())
        }
    })?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(async move {
        // Ends when the instance closes the connection (or exits).
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok((sender, response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_instance::FakeInstance;

    /// A Unix-socket instance answering every `/healthz` with `body` on keep-alive
    /// connections.
    fn instance(dir: &std::path::Path, body: &'static str) -> FakeInstance {
        FakeInstance::on_socket(dir.join("i.sock"), body, usize::MAX)
    }

    #[tokio::test]
    async fn checks_over_a_socket_reuse_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let instance = instance(dir.path(), r#"{"status":"expired","lastHeartbeat":0}"#);
        let client = HealthClient::default();
        for _ in 0..3 {
            let healthz = client
                .check(&instance.endpoint, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(healthz.status, "expired");
        }
        assert_eq!(instance.connections_accepted(), 1);
    }

    #[tokio::test]
    async fn not_json_and_nothing_listening_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let instance = instance(dir.path(), "hello");
        let client = HealthClient::default();
        let err = client
            .check(&instance.endpoint, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HealthError::NotJson { .. }), "{err}");
        let nobody = Endpoint::Unix(dir.path().join("nobody.sock"));
        let err = client
            .check(&nobody, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HealthError::Request { .. }), "{err}");
    }
}
