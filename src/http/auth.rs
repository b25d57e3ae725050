//! Authentication, when an admin token or a trusted proxy is configured: who a request
//! comes from ([`Caller`]), from an admin token as a bearer header (the CLI, scripts),
//! the trusted proxy's user header on the proxy's own connections, or a session cookie
//! a browser got for the token (`POST /auth/login`) or a seat link, `HttpOnly` and
//! `SameSite=Strict`, that no script can read. A session cookie counts only on requests
//! from devbox's own pages or from no page at all: a listed CORS origin must send the
//! token itself.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use std::time::Duration;

use super::Peer;
use super::site::Provenance;
use super::{ApiError, Front, SESSION_COOKIE};
use crate::identity::{Caller, UserName};

/// A login body is a token in a small JSON object.
const LOGIN_BODY_LIMIT: usize = 4096;

/// Routes that answer without credentials: devbox's liveness, and the login itself.
const PUBLIC_PATHS: [&str; 4] = ["/health", "/auth/login", "/auth/logout", "/auth/session"];

/// A request that holds `server.metrics_token`: it may read `/metrics`, nothing else.
#[derive(Debug, Clone, Copy)]
pub struct MetricsReader;

/// Lets a request through when it says who sends it (an admin token or a live
/// session), and hands the handlers that [`Caller`]. Without an admin token configured
/// every caller is the admin. Public paths pass without a caller.
pub async fn authenticate(
    State(front): State<Front>,
    mut request: Request,
    next: Next,
) -> Response {
    if !front.auth_required() {
        request.extensions_mut().insert(Caller::Admin);
        return next.run(request).await;
    }
    if PUBLIC_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    if request.uri().path() == crate::api::scrape::METRICS_PATH
        && let (Some(token), Some(given)) = (&front.metrics_token, bearer_token(request.headers()))
        && token.matches(given)
    {
        request.extensions_mut().insert(MetricsReader);
        return next.run(request).await;
    }
    match identify(&front, &request) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(err) => err.into_response(),
    }
}

/// Who sends `request`: the bearer token decides when one is sent; otherwise the
/// session cookie, which counts only from devbox's own pages or from no page at all
/// (a listed CORS origin must send the token itself).
fn identify(front: &Front, request: &Request) -> Result<Caller, ApiError> {
    let headers = request.headers();
    if let Some(given) = bearer_token(headers) {
        return if front.is_admin_token(given) {
            Ok(Caller::Admin)
        } else {
            Err(ApiError::Unauthorized("invalid API token".into()))
        };
    }
    if let Some(caller) = proxy_identity(front, request)? {
        return Ok(caller);
    }
    let own_page = matches!(
        request.extensions().get::<Provenance>(),
        Some(Provenance::Own | Provenance::NoOrigin) | None
    );
    session_cookie(headers)
        .filter(|_| own_page)
        .and_then(|id| front.sessions.caller(id))
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "missing API token: send `Authorization: Bearer <token>`, or log in to the dashboard"
                    .into(),
            )
        })
}

/// The user a trusted proxy names in `auth.trusted_header.name`, when the request came
/// over a connection that may carry it: the proxy's socket, or TCP from an address in
/// `from`. Anywhere else the header is ignored, and logged: a client that sends it is
/// trying to be someone.
fn proxy_identity(front: &Front, request: &Request) -> Result<Option<Caller>, ApiError> {
    let Some(trusted) = &front.trusted_header else {
        return Ok(None);
    };
    let Some(value) = request.headers().get(trusted.name.as_str()) else {
        return Ok(None);
    };
    let peer = request.extensions().get::<Peer>();
    let from_proxy = match peer {
        Some(Peer::ProxySocket) => true,
        Some(Peer::Tcp(address)) => trusted.from.contains(&address.ip()),
        None => false,
    };
    if !from_proxy {
        tracing::warn!(
            header = %trusted.name,
            ?peer,
            "ignored an identity header on a connection that is not the trusted proxy's"
        );
        return Ok(None);
    }
    let user = value
        .to_str()
        .ok()
        .and_then(|name| UserName::parse(name.trim()).ok())
        .ok_or_else(|| {
            ApiError::Unauthorized(format!(
                "the proxy's {} header does not hold a user name (1-64 of letters, digits, -_.@)",
                trusted.name
            ))
        })?;
    Ok(Some(front.caller_named(user)))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme's name in any
/// case, RFC 9110 §11.1).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// `POST /auth/login` (`{"token": "…"}`), `POST /auth/logout`, and `GET
/// /auth/session` (whether a token is needed, and whether this browser has a session).
pub fn routes() -> Router<Front> {
    Router::new()
        .route(
            "/auth/login",
            post(login).layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
        .route("/auth/logout", post(logout))
        .route("/auth/session", get(session))
}

async fn session(State(front): State<Front>, request: Request) -> Json<serde_json::Value> {
    // Signed in through the trusted proxy, or by a session of this browser.
    let caller = proxy_identity(&front, &request)
        .ok()
        .flatten()
        .or_else(|| session_cookie(request.headers()).and_then(|id| front.sessions.caller(id)));
    Json(serde_json::json!({
        "token_required": front.auth_required(),
        "logged_in": caller.is_some(),
        "user": caller.as_ref().and_then(Caller::owner),
        "admin": caller.as_ref().is_some_and(Caller::is_admin),
    }))
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

async fn login(
    State(front): State<Front>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !front.auth_required() {
        return ApiError::BadRequest(
            "devbox has no API token configured: there is nothing to log in to".into(),
        )
        .into_response();
    }
    let Ok(Json(Login { token: given })) = body else {
        return ApiError::BadRequest("expected a JSON body {\"token\": \"…\"}".into())
            .into_response();
    };
    if !front.is_admin_token(&given) {
        tracing::info!("dashboard login with a wrong token");
        return ApiError::Unauthorized("invalid API token".into()).into_response();
    }
    let ttl = front.sessions.ttl().as_secs();
    with_cookie(
        StatusCode::OK,
        serde_json::json!({ "message": "logged in", "expires_in_seconds": ttl }),
        &front.session_cookie_for(Caller::Admin),
    )
}

async fn logout(State(front): State<Front>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        front.sessions.close(id);
    }
    let mut response = with_cookie(
        StatusCode::OK,
        serde_json::json!({ "message": "logged out" }),
        &front.cookie(SESSION_COOKIE, "", Duration::ZERO),
    );
    // Whatever a page may have left on devbox's origin (a service worker, storage)
    // goes with the session.
    response
        .headers_mut()
        .insert("clear-site-data", HeaderValue::from_static("\"storage\""));
    response
}

pub(super) fn with_cookie(status: StatusCode, body: serde_json::Value, cookie: &str) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The session id the browser sent, if any.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, SESSION_COOKIE)
}

/// The value of cookie `name` the browser sent, if any.
///
/// Two cookies of one name are none: a page of another origin of the same site (an
/// IDE's own origin, say) can set a second one beside devbox's (cookie tossing), and
/// which the browser sends first is not devbox's choice.
pub(super) fn cookie_named<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(prefix.as_str()));
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_sent_twice_counts_for_nothing() {
        let headers = |value: &'static str| {
            let mut map = HeaderMap::new();
            map.insert(header::COOKIE, HeaderValue::from_static(value));
            map
        };
        assert_eq!(cookie_named(&headers("a=1; s=ours"), "s"), Some("ours"));
        assert_eq!(cookie_named(&headers("s=tossed; a=1; s=ours"), "s"), None);
        assert_eq!(cookie_named(&headers("ss=x"), "s"), None);
    }
}
