//! WebSocket (and any other HTTP upgrade) through the proxy: the handshake goes to the
//! instance on a fresh connection, and after its 101 the two upgraded connections are
//! joined byte for byte, with no framing of our own and no idle timeout, until either
//! side closes or the user's access is revoked.

use crate::metrics::METRICS;
use std::future::Future;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header, request};
use axum::response::Response;
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;

use super::bad_gateway;
use super::forward::{prepare_request_headers, retarget, strip_hop_by_hop};
use super::sign_in::{
    Account, SignInError, SignIns, SignedOut, copy_head, drop_session_cookies, signed_out,
    with_session_cookie,
};
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

/// Performs the handshake with the instance of route `port` at `endpoint` (signed in as
/// `account` when it asks for a password) and, once both sides have switched, copies
/// bytes both ways until either closes.
pub async fn upgrade(
    port: u16,
    endpoint: &Endpoint,
    prefix: &str,
    mut request: Request,
    revoked: impl Future<Output = ()> + Send + 'static,
    account: Option<(&Account<'_>, &SignIns)>,
) -> Response {
    let client_side = hyper::upgrade::on(&mut request);
    let (mut parts, _) = request.into_parts();
    prepare_request_headers(&mut parts, true);
    if let Err(message) = retarget(&mut parts, endpoint, prefix) {
        return bad_gateway(message);
    }
    let answer = match account {
        None => handshake(port, endpoint, parts).await,
        Some((account, sign_ins)) => {
            signed_in_handshake(port, endpoint, parts, account, sign_ins).await
        }
    };
    let mut response = match answer {
        Ok(response) => response,
        Err(refused) => return refused,
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

/// The instance's answer to the handshake `parts`, sent on a fresh connection that
/// stays open for the upgrade; an error is the answer to give the client.
async fn handshake(
    port: u16,
    endpoint: &Endpoint,
    parts: request::Parts,
) -> Result<hyper::Response<Incoming>, Response> {
    let stream = endpoint.connect().await.map_err(|err| {
        bad_gateway(format!(
            "instance on port {port} refused the connection: {err}"
        ))
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| bad_gateway(format!("instance on port {port}: {err}")))?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(%err, port, "tunnel handshake connection");
        }
    });
    sender
        .send_request(Request::from_parts(parts, Empty::<Bytes>::new()))
        .await
        .map_err(|err| bad_gateway(format!("instance on port {port} did not answer: {err}")))
}

/// [`handshake`] with devbox's session with `account`'s instance, signing in again once
/// (and shaking hands again) when the instance answers as signed out. The answer
/// carries no session cookie and is never a way to the instance's login page.
async fn signed_in_handshake(
    port: u16,
    endpoint: &Endpoint,
    mut parts: request::Parts,
    account: &Account<'_>,
    sign_ins: &SignIns,
) -> Result<hyper::Response<Incoming>, Response> {
    let failed = |err: SignInError| bad_gateway(err.to_string());
    let session = sign_ins.session(account, endpoint).await.map_err(failed)?;
    let path = parts.uri.path().to_owned();
    let again = copy_head(&parts);
    with_session_cookie(&mut parts.headers, session.cookie());
    let mut response = handshake(port, endpoint, parts).await?;
    drop_session_cookies(response.headers_mut());
    let Some(mut signed_out_as) = signed_out(&path, response.status(), response.headers()) else {
        return Ok(response);
    };
    if let Some(renewed) = sign_ins
        .renew(account, endpoint, &session)
        .await
        .map_err(failed)?
    {
        let mut parts = again;
        with_session_cookie(&mut parts.headers, renewed.cookie());
        response = handshake(port, endpoint, parts).await?;
        drop_session_cookies(response.headers_mut());
        match signed_out(&path, response.status(), response.headers()) {
            Some(again) => signed_out_as = again,
            None => return Ok(response),
        }
    }
    match signed_out_as {
        // A 401 is no page to hide: it passes as it is.
        SignedOut::Unauthorized => Ok(response),
        SignedOut::LoginPage => Err(failed(SignInError::StillSignedOut {
            server: account.server.to_owned(),
        })),
    }
}
