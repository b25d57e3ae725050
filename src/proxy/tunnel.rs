//! WebSocket (and any other HTTP upgrade) through the proxy: the handshake goes to the
//! instance on a fresh connection, and after its 101 the two upgraded connections are
//! joined byte for byte, with no framing of our own and no idle timeout, until either
//! side closes or the user's access is revoked.

use crate::metrics::METRICS;
use std::future::Future;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::bad_gateway;
use super::forward::{prepare_request_headers, retarget, strip_hop_by_hop};
use crate::endpoint::Endpoint;

/// Whether `request` asks to switch protocols.
pub fn is_upgrade(request: &Request) -> bool {
    let connection_upgrade = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && request.headers().contains_key(header::UPGRADE)
}

/// Performs the handshake with the instance of route `port` at `endpoint` and, once
/// both sides have switched, copies bytes both ways until either closes.
pub async fn upgrade(
    port: u16,
    endpoint: &Endpoint,
    prefix: &str,
    mut request: Request,
    revoked: impl Future<Output = ()> + Send + 'static,
) -> Response {
    let client_side = hyper::upgrade::on(&mut request);
    let (mut parts, _) = request.into_parts();
    prepare_request_headers(&mut parts, true);
    if let Err(message) = retarget(&mut parts, endpoint, prefix) {
        return bad_gateway(message);
    }
    let stream = match endpoint.connect().await {
        Ok(stream) => stream,
        Err(err) => {
            return bad_gateway(format!(
                "instance on port {port} refused the connection: {err}"
            ));
        }
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(err) => return bad_gateway(format!("instance on port {port}: {err}")),
        };
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(%err, port, "tunnel handshake connection");
        }
    });
    let mut response = match sender
        .send_request(Request::from_parts(parts, Empty::<Bytes>::new()))
        .await
    {
        Ok(response) => response,
        Err(err) => return bad_gateway(format!("instance on port {port} did not answer: {err}")),
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Refused (e.g. code-server's origin check): pass its answer on as it is.
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        return Response::from_parts(parts, Body::new(body));
    }
    let backend_side = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        match tokio::try_join!(client_side, backend_side) {
            Ok((client, backend)) => {
                let mut client = TokioIo::new(client);
                let mut backend = TokioIo::new(backend);
                let _open = METRICS.proxy.tunnel_opened();
                tokio::select! {
                    copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
                        match copied {
                            Ok((to_instance, to_client)) => {
                                METRICS.proxy.bytes_to_instance.inc_by(to_instance);
                                METRICS.proxy.bytes_to_client.inc_by(to_client);
                            }
                            Err(err) => tracing::debug!(%err, port, "tunnel closed"),
                        }
                    }
                    // Both connections close as they drop.
                    () = revoked => tracing::info!(port, "tunnel cut: its user's access was revoked"),
                }
            }
            Err(err) => tracing::debug!(%err, port, "upgrade failed"),
        }
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Body::empty())
}
