//! Accepting connections and serving HTTP/1.1 on them, with the limits axum's own
//! `serve` leaves out: it builds hyper without a timer, so no header-read timeout
//! applies, and a client that sends half a request (or nothing, or nothing more after
//! an answer) holds its connection and task forever. Here hyper gets Tokio's timer and
//! `server.header_read_timeout`, which in hyper 1.x starts when a connection opens and
//! again whenever a kept-alive one waits for its next request: one bound for slow
//! headers and for idle connections alike.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// How long a shutdown waits for requests in flight before it gives up on them.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of descriptors, say), so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (for up to [`DRAIN_LIMIT`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    // Each connection watches this; the sender learns when the last one has ended.
    let (stop_connections, stop) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small answers and proxied WebSocket frames must leave at once: with Nagle's
        // algorithm on, each waited ~40 ms for the client's delayed ACK (measured by
        // benches/proxy.rs: 4x fewer requests per second on a small file).
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(with_peer(app.clone(), peer));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                    // Finish the request in flight, then close (an upgraded
                    // connection has left hyper already and is not held up).
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%err, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(stop);
    let _ = stop_connections.send(true);
    if tokio::time::timeout(DRAIN_LIMIT, stop_connections.closed())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN_LIMIT:?}; stopping anyway");
    }
}

/// `app` with the client's address in each request (as axum's `ConnectInfo`), which
/// the proxy passes on as `X-Forwarded-For`.
fn with_peer(
    app: Router,
    peer: SocketAddr,
) -> impl tower::Service<
    axum::http::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    app.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        },
    )
}
