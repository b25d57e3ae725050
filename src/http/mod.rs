//! The HTTP front: one router for the API ([`crate::api`]), the IDE proxy
//! ([`crate::proxy`]) and the dashboard ([`crate::ui`]), the guards every request passes
//! on its way to them, the error type they all answer with, and the server that accepts
//! connections. The route modules own their routes only; nothing here knows a route
//! but the few that are public.

mod error;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::{ApiError, ErrorBody};

use crate::api::{AppState, mib};
use crate::config::Config;

/// The name of the dashboard's session cookie. devbox's credentials are devbox's
/// only: the proxy removes this cookie (and any bearer token) from what it forwards.
pub const SESSION_COOKIE: &str = "devbox_session";

/// The complete HTTP application: API, proxy and dashboard behind the guards.
pub fn app(state: AppState) -> Router {
    let mut api_routes = crate::api::router(state.clone());
    let mut proxy = crate::proxy::router(crate::proxy::ProxyState {
        statuses: state.statuses.clone(),
        forwarder: crate::proxy::Forwarder::new(mib(state.config.server.static_cache_mb)),
    });
    // Without a token there is nothing to check: no layer, no work per request.
    if state.config.server.api_token.is_some() {
        let auth = middleware::from_fn_with_state(state.clone(), authenticate);
        api_routes = api_routes.layer(auth.clone());
        proxy = proxy.layer(auth);
    }
    // CORS wraps the API (401s included); proxied code-server pages keep their own rules.
    if let Some(cors) = cors(&state.config) {
        api_routes = api_routes.layer(cors);
    }
    api_routes.merge(proxy).merge(crate::ui::router())
}

/// Requires the API token, when one is configured, on every API and proxy route but
/// `/health` (the dashboard's own files are public: they ask for the token). Browsers cannot add headers to page
/// navigations and WebSockets, so the `devbox_token` cookie the dashboard sets counts too.
async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = state.config.server.api_token.as_deref() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    // CORS preflights never get here: the CORS layer outside answers them.
    let public = path == "/health";
    if public {
        return next.run(request).await;
    }
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("devbox_token="));
    match bearer.or(cookie) {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::Unauthorized("invalid API token".into()).into_response(),
        None => {
            ApiError::Unauthorized("missing API token: send `Authorization: Bearer <token>`".into())
                .into_response()
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// CORS as the seed API describes it, for the configured origins.
fn cors(config: &Config) -> Option<CorsLayer> {
    let origins = &config.server.cors_allowed_origins;
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
    )
}
