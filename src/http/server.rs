//! Accepting connections and serving HTTP/1.1 on them, with the limits axum's own
//! `serve` leaves out: it builds hyper without a timer, so no header-read timeout
//! applies, and a client that sends half a request (or nothing, or nothing more after
//! an answer) holds its connection and task forever. Here hyper gets Tokio's timer and
//! `server.header_read_timeout`, which in hyper 1.x starts when a connection opens and
//! again whenever a kept-alive one waits for its next request: one bound for slow
//! headers and for idle connections alike.
//!
//! Connections come from a TCP listener, or from the Unix socket a trusted reverse
//! proxy on this host connects through (`auth.trusted_header.socket`); each request
//! carries its [`Peer`], which authentication asks, and its [`Transport`], which the
//! origin check asks. Before HTTP, a connection goes through its [`Handshake`]: none,
//! or TLS (`server.tls`, TCP only), bounded by the same `header_read_timeout`, in the
//! connection's own task, so a silent client holds no more than a plain one does.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::watch;
use tower::ServiceExt;

use super::tls::Tls;

/// Where a request's connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client at this address.
    Tcp(SocketAddr),
    /// The trusted proxy's Unix socket (`auth.trusted_header.socket`).
    ProxySocket,
}

/// What a connection speaks below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    /// TLS (`server.tls`): the pages that call devbox here are `https://` pages.
    Tls,
}

/// What a connection goes through before it speaks HTTP.
pub trait Handshake<Io>: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    const TRANSPORT: Transport;
    /// The stream to speak HTTP on; `None` when the connection is to be closed.
    fn handshake(&self, io: Io) -> impl Future<Output = Option<Self::Stream>> + Send;
}

/// No handshake: HTTP from the first byte.
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl<Io: AsyncRead + AsyncWrite + Unpin + Send + 'static> Handshake<Io> for Plain {
    type Stream = Io;
    const TRANSPORT: Transport = Transport::Plain;

    async fn handshake(&self, io: Io) -> Option<Io> {
        Some(io)
    }
}

impl Handshake<TcpStream> for Tls {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;
    const TRANSPORT: Transport = Transport::Tls;

    fn handshake(&self, io: TcpStream) -> impl Future<Output = Option<Self::Stream>> + Send {
        Tls::handshake(self, io)
    }
}

/// A source of connections.
pub trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, Peer)>> + Send;
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Io, Peer)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        // Small answers and proxied WebSocket frames must leave at once: with Nagle's
        // algorithm on, each waited ~40 ms for the client's delayed ACK (measured by
        // benches/proxy.rs: 4x fewer requests per second on a small file).
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        Ok((stream, Peer::Tcp(peer)))
    }
}

impl Listener for UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&self) -> io::Result<(Self::Io, Peer)> {
        let (stream, _) = UnixListener::accept(self).await?;
        Ok((stream, Peer::ProxySocket))
    }
}

/// Listens on the Unix socket `path` for a proxy of `group` (mode 0660; devbox's own
/// group when `None`). A socket left by an earlier run is replaced; any other file
/// there is an error.
pub fn unix_listener(path: &Path, group: Option<&str>) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(existing) if existing.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let listener = UnixListener::bind(path)?;
    if let Some(group) = group {
        let gid = nix::unistd::Group::from_name(group)
            .map_err(io::Error::from)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no group `{group}`")))?
            .gid;
        std::os::unix::fs::chown(path, None, Some(gid.as_raw()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// How long a shutdown waits for requests in flight before it gives up on them.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of descriptors, say), so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves `app` on `listener`'s connections, once through `handshake`, until
/// `shutdown` resolves, then lets requests in flight finish (for up to
/// [`DRAIN_LIMIT`]).
pub async fn serve<L: Listener, H: Handshake<L::Io>>(
    listener: L,
    handshake: H,
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
        let service = TowerToHyperService::new(with_peer(app.clone(), peer, H::TRANSPORT));
        let builder = builder.clone();
        let handshake = handshake.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let stopping = async {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            let stream = tokio::select! {
                stream = tokio::time::timeout(header_read_timeout, handshake.handshake(stream)) => stream,
                () = stopping => return,
            };
            let Ok(Some(stream)) = stream else {
                tracing::debug!(?peer, "connection closed before it spoke HTTP");
                return;
            };
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
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
                tracing::debug!(%err, ?peer, "connection ended with an error");
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

/// `app` with the connection's [`Peer`] and [`Transport`] in each request, and a TCP
/// client's address as axum's `ConnectInfo` too, which the proxy passes on as
/// `X-Forwarded-For`.
fn with_peer(
    app: Router,
    peer: Peer,
    transport: Transport,
) -> impl tower::Service<
    axum::http::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    app.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(peer);
            request.extensions_mut().insert(transport);
            if let Peer::Tcp(address) = peer {
                request.extensions_mut().insert(ConnectInfo(address));
            }
            request
        },
    )
}
