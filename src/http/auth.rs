//! Authentication, when an API token is configured: the token as a bearer header (the
//! CLI, scripts), or a dashboard session that a browser got once for the token
//! (`POST /auth/login`), in an `HttpOnly`, `SameSite=Strict` cookie that no script can
//! read. A session cookie counts only on requests from devbox's own pages or from no
//! page at all: a listed CORS origin must send the token itself.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::site::Provenance;
use super::{ApiError, Front, SESSION_COOKIE};

/// Routes that answer without credentials: devbox's liveness, and the login itself.
const PUBLIC_PATHS: [&str; 4] = ["/health", "/auth/login", "/auth/logout", "/auth/session"];

/// Lets a request through when it carries the token or a live session.
pub async fn authenticate(State(front): State<Front>, request: Request, next: Next) -> Response {
    let Some(token) = front.token.as_deref() else {
        return next.run(request).await;
    };
    if PUBLIC_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        return if constant_time_eq(given.as_bytes(), token.as_bytes()) {
            next.run(request).await
        } else {
            ApiError::Unauthorized("invalid API token".into()).into_response()
        };
    }
    let own_page = matches!(
        request.extensions().get::<Provenance>(),
        Some(Provenance::Own | Provenance::NoOrigin) | None
    );
    let session = session_cookie(headers).filter(|id| own_page && front.sessions.is_live(id));
    if session.is_some() {
        return next.run(request).await;
    }
    ApiError::Unauthorized(
        "missing API token: send `Authorization: Bearer <token>`, or log in to the dashboard"
            .into(),
    )
    .into_response()
}

/// `POST /auth/login` (`{"token": "…"}`), `POST /auth/logout`, and `GET
/// /auth/session` (whether a token is needed, and whether this browser has a session).
pub fn routes() -> Router<Front> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/session", get(session))
}

async fn session(State(front): State<Front>, headers: HeaderMap) -> Json<serde_json::Value> {
    let logged_in = session_cookie(&headers).is_some_and(|id| front.sessions.is_live(id));
    Json(serde_json::json!({
        "token_required": front.token.is_some(),
        "logged_in": logged_in,
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
    let Some(token) = front.token.as_deref() else {
        return ApiError::BadRequest(
            "devbox has no API token configured: there is nothing to log in to".into(),
        )
        .into_response();
    };
    let Ok(Json(Login { token: given })) = body else {
        return ApiError::BadRequest("expected a JSON body {\"token\": \"…\"}".into())
            .into_response();
    };
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        tracing::info!("dashboard login with a wrong token");
        return ApiError::Unauthorized("invalid API token".into()).into_response();
    }
    let id = front.sessions.open();
    let ttl = front.sessions.ttl().as_secs();
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={ttl}{}",
        if front.secure_cookies { "; Secure" } else { "" }
    );
    with_cookie(
        StatusCode::OK,
        serde_json::json!({ "message": "logged in", "expires_in_seconds": ttl }),
        &cookie,
    )
}

async fn logout(State(front): State<Front>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        front.sessions.close(id);
    }
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if front.secure_cookies { "; Secure" } else { "" }
    );
    with_cookie(
        StatusCode::OK,
        serde_json::json!({ "message": "logged out" }),
        &cookie,
    )
}

fn with_cookie(status: StatusCode, body: serde_json::Value, cookie: &str) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The session id the browser sent, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    let prefix = format!("{SESSION_COOKIE}=");
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(prefix.as_str()))
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
