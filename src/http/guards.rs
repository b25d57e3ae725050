//! The checks every request passes before it is routed, whatever its path: the `Host`
//! must be one of devbox's names (DNS rebinding), and a request that changes something
//! or opens a WebSocket must not come from another site's page (cross-site request
//! forgery; CORS alone would not stop a form POST or a WebSocket). Neither reads the
//! body, so a refused upload is refused before a byte of it is stored.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::site::Provenance;
use super::{ApiError, Front, Transport};
use crate::config::Config;

const SEC_FETCH_SITE: &str = "sec-fetch-site";
const SEC_FETCH_DEST: &str = "sec-fetch-dest";

/// Refuses foreign hosts and cross-site changes; records the request's
/// [`Provenance`] for the authentication that follows.
pub async fn guard(State(front): State<Front>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = request_host(&request);
    // Browsers always send `Host`; a client without one is not a rebinding page.
    if let Some(host) = host
        && !front.site.allows_host(host)
    {
        tracing::info!(
            host,
            path = request.uri().path(),
            "refused a request for a foreign host"
        );
        return ApiError::Forbidden(format!(
            "devbox does not answer to the host `{host}`; {}",
            front.site.remedy(host)
        ))
        .into_response();
    }
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("null"));
    let fetch_site = headers.get(SEC_FETCH_SITE).map(HeaderValue::as_bytes);
    let other_page = fetch_site.is_some_and(|site| {
        site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site")
    });
    if framed_by_another_page(headers, fetch_site) {
        tracing::info!(
            path = request.uri().path(),
            "refused to be framed by another page"
        );
        return ApiError::Forbidden(
            "devbox's pages and IDEs open only in their own window or in devbox's own pages, \
             not inside another site's page"
                .into(),
        )
        .into_response();
    }
    let transport = request
        .extensions()
        .get::<Transport>()
        .copied()
        .unwrap_or(Transport::Plain);
    let provenance = front.site.provenance(origin, host, other_page, transport);
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let upgrade = headers.contains_key(header::UPGRADE);
    if provenance == Provenance::Foreign && (changes || upgrade) {
        let from = origin.unwrap_or("another site");
        tracing::info!(
            origin = from,
            path = request.uri().path(),
            "refused a cross-site request"
        );
        return ApiError::Forbidden(format!(
            "cross-site request refused: a page of `{from}` may not {} devbox; to allow one, list its origin in server.cors_allowed_origins",
            if upgrade { "open a WebSocket to" } else { "change" }
        ))
        .into_response();
    }
    request.extensions_mut().insert(provenance);
    next.run(request).await
}

/// The host a request was sent to: the authority of an absolute request target, or
/// its `Host`.
pub(super) fn request_host(request: &Request) -> Option<&str> {
    request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    })
}

/// Whether the browser is loading this answer as a document inside a page of another
/// origin (a frame, an `<object>` or `<embed>`): another page on this host could
/// otherwise frame an IDE and steer it, or frame a file a participant wrote.
fn framed_by_another_page(headers: &axum::http::HeaderMap, fetch_site: Option<&[u8]>) -> bool {
    let nested = headers.get(SEC_FETCH_DEST).is_some_and(|dest| {
        ["iframe", "frame", "object", "embed", "fencedframe"]
            .iter()
            .any(|nested| dest.as_bytes().eq_ignore_ascii_case(nested.as_bytes()))
    });
    nested && !fetch_site.is_some_and(|site| site.eq_ignore_ascii_case(b"same-origin"))
}

/// `X-Content-Type-Options: nosniff` on devbox's own answers (the API and the
/// dashboard), so that no browser runs one of them as a script or a page it is not.
pub async fn no_sniff(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// CORS for the configured origins; none (same origin only) by default.
pub fn cors(config: &Config) -> Option<CorsLayer> {
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
