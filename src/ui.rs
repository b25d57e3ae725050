//! The web UI: a dashboard served by the binary itself from files embedded at build time
//! (`ui/`), so a user needs no separate web server and no build step. It talks to the
//! same REST API and WebSocket log streams as any other client.
//!
//! Every file goes out with a Content-Security-Policy that allows scripts, styles and
//! connections from devbox itself only (no inline script: a string that slipped into
//! the page could not run) and no framing by other pages (no clickjacking of the
//! buttons that start and delete servers). Template thumbnails may come from https.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const THEME_JS: &str = include_str!("../ui/theme.js");
const STYLE_CSS: &str = include_str!("../ui/style.css");
const IDE_START_JS: &str = include_str!("../ui/ide-start.js");

/// The dashboard's policy (see the module doc).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: https:; connect-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `/` (the dashboard) and its assets under `/ui/`, with the script of the page an
/// IDE that is not running shows (`ide-start.js`).
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/theme.js",
            get(|| async { asset("text/javascript; charset=utf-8", THEME_JS) }),
        )
        .route(
            "/ui/ide-start.js",
            get(|| async { asset("text/javascript; charset=utf-8", IDE_START_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        body,
    )
}
