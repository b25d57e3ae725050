//! Authentication, when an admin token or a trusted proxy is configured: who a request
//! comes from ([`Caller`]), from an admin token as a bearer header (the CLI, scripts),
//! the trusted proxy's user header on the proxy's own connections, or a session cookie
//! a browser got for the token (`POST /auth/login`) or a seat link, `HttpOnly` and
//! `SameSite=Strict`, that no script can read. A session cookie counts only on requests
//! from devbox's own pages or from no page at all: a listed CORS origin must send the
//! token itself.

use aide::OperationInput;
use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use aide::generate::GenContext;
use aide::openapi::Operation;
use axum::Json;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use super::Peer;
use super::site::Provenance;
use super::{ApiError, Front, SESSION_COOKIE};
use crate::api::doc::{Group, public};
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
/// /auth/session` (whether a token is needed, and whether this browser has a session),
/// documented for the OpenAPI document.
pub fn routes() -> ApiRouter<Front> {
    ApiRouter::new()
        .api_route(
            "/auth/login",
            post_with(login, |o| {
                o.summary("Trade an admin token for a session cookie (the dashboard's login)")
                    .response_with::<200, Json<LoggedIn>, _>(|r| {
                        r.description("Logged in: the answer sets the session cookie")
                    })
                    .with(public("login", Group::Auth, &[400, 401]))
            })
            .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
        .api_route(
            "/auth/logout",
            post_with(logout, |o| {
                o.summary("End this browser's session")
                    .response_with::<200, Json<LoggedOut>, _>(|r| {
                        r.description("Logged out: the answer clears the session cookie")
                    })
                    .with(public("logout", Group::Auth, &[]))
            }),
        )
        .api_route(
            "/auth/session",
            get_with(session, |o| {
                o.summary("Whether a token is needed, and who this browser is signed in as")
                    .with(public("getSession", Group::Auth, &[]))
            }),
        )
}

/// What `GET /auth/session` answers.
#[derive(Serialize, JsonSchema)]
pub struct SessionState {
    /// devbox needs credentials (an admin token or a trusted proxy is configured).
    pub token_required: bool,
    /// This browser has a live session (or the trusted proxy names its user).
    pub logged_in: bool,
    /// The user signed in, when it is not the admin.
    pub user: Option<String>,
    pub admin: bool,
}

/// What `POST /auth/login` answers.
#[derive(Serialize, JsonSchema)]
pub struct LoggedIn {
    pub message: String,
    pub expires_in_seconds: u64,
}

/// What `POST /auth/logout` answers.
#[derive(Serialize, JsonSchema)]
pub struct LoggedOut {
    pub message: String,
}

async fn session(State(front): State<Front>, request: Request) -> Json<SessionState> {
    // Signed in through the trusted proxy, or by a session of this browser.
    let caller = proxy_identity(&front, &request)
        .ok()
        .flatten()
        .or_else(|| session_cookie(request.headers()).and_then(|id| front.sessions.caller(id)));
    Json(SessionState {
        token_required: front.auth_required(),
        logged_in: caller.is_some(),
        user: caller
            .as_ref()
            .and_then(Caller::owner)
            .map(ToString::to_string),
        admin: caller.as_ref().is_some_and(Caller::is_admin),
    })
}

#[derive(Deserialize, JsonSchema)]
struct Login {
    /// An admin token.
    token: String,
}

/// The login body, if it is the expected JSON: anything else is the handler's own 400
/// (a body past [`LOGIN_BODY_LIMIT`] too), not axum's plain-text rejection.
struct LoginBody(Option<Login>);

impl<S: Send + Sync> FromRequest<S> for LoginBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            Json::<Login>::from_request(request, state)
                .await
                .ok()
                .map(|Json(login)| login),
        ))
    }
}

impl OperationInput for LoginBody {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Json::<Login>::operation_input(ctx, operation);
    }
}

async fn login(State(front): State<Front>, LoginBody(body): LoginBody) -> Response {
    if !front.auth_required() {
        return ApiError::BadRequest(
            "devbox has no API token configured: there is nothing to log in to".into(),
        )
        .into_response();
    }
    let Some(Login { token: given }) = body else {
        return ApiError::BadRequest("expected a JSON body {\"token\": \"…\"}".into())
            .into_response();
    };
    if !front.is_admin_token(&given) {
        tracing::info!("dashboard login with a wrong token");
        return ApiError::Unauthorized("invalid API token".into()).into_response();
    }
    let answer = LoggedIn {
        message: "logged in".into(),
        expires_in_seconds: front.sessions.ttl().as_secs(),
    };
    with_cookie(answer, &front.session_cookie_for(Caller::Admin))
}

async fn logout(State(front): State<Front>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        front.sessions.close(id);
    }
    let mut response = with_cookie(
        LoggedOut {
            message: "logged out".into(),
        },
        &front.cookie(SESSION_COOKIE, "", Duration::ZERO),
    );
    // Whatever a page may have left on devbox's origin (a service worker, storage)
    // goes with the session.
    response
        .headers_mut()
        .insert("clear-site-data", HeaderValue::from_static("\"storage\""));
    response
}

/// A `200` with `body` as JSON that sets `cookie`.
fn with_cookie(body: impl Serialize, cookie: &str) -> Response {
    let mut response = Json(body).into_response();
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
