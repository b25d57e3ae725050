//! Health of a code-server instance: `GET /healthz` on its loopback port.
//!
//! Healthy means a 200 answer with a JSON body. A fresh instance says
//! `{"status":"expired"}` until a browser connects; that is healthy too (`alive` only
//! means a client was active in the last minute, and `lastHeartbeat` is the input for
//! idle culling).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// What `/healthz` said.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Healthz {
    pub status: String,
    #[serde(default, rename = "lastHeartbeat")]
    pub last_heartbeat: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("no answer from port {port} within {timeout:?}")]
    Timeout { port: u16, timeout: Duration },
    #[error("port {port}: {message}")]
    Request { port: u16, message: String },
    #[error("port {port} answered HTTP {status}")]
    Status { port: u16, status: u16 },
    #[error("port {port} answered something that is not code-server's health JSON")]
    NotJson { port: u16 },
}

/// A pooled HTTP/1 client for health checks. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct HealthClient {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for HealthClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        }
    }
}

impl HealthClient {
    /// Asks the instance on `port` for its health.
    pub async fn check(&self, port: u16, timeout: Duration) -> Result<Healthz, HealthError> {
        match tokio::time::timeout(timeout, self.request(port)).await {
            Ok(result) => result,
            Err(_) => Err(HealthError::Timeout { port, timeout }),
        }
    }

    async fn request(&self, port: u16) -> Result<Healthz, HealthError> {
        let fail = |message: String| HealthError::Request { port, message };
        let uri: hyper::Uri = format!("http://127.0.0.1:{port}/healthz")
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| fail(e.to_string()))?;
        let response = self
            .client
            .get(uri)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(HealthError::Status {
                port,
                status: status.as_u16(),
            });
        }
        serde_json::from_slice(&body).map_err(|_| HealthError::NotJson { port })
    }
}
