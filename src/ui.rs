//! The web UI: a dashboard served by the binary itself from files embedded at build time
//! (`ui/`), so a user needs no separate web server and no build step. It talks to the
//! same REST API and WebSocket log streams as any other client.
//!
//! Every file goes out with a Content-Security-Policy that allows scripts, styles and
//! connections from devbox itself only (no inline script: a string that slipped into
//! the page could not run) and no framing by other pages (no clickjacking of the
//! buttons that start and delete servers). Template thumbnails may come from https.
//!
//! Browsers check back on every load (`Cache-Control: no-cache`, so a new devbox's
//! files are seen at once) with the file's `ETag`, a digest of its embedded bytes taken
//! when the router is built: an unchanged file is a bodiless `304`. Files go out
//! compressed (gzip or brotli, as `Accept-Encoding` asks; tower-http's
//! `CompressionLayer`), which is why the tag is weak: the compressed bytes differ from
//! the embedded ones, and one tag stands for every encoding of a file. Only these files
//! are compressed here; the API, the log streams and the proxied IDEs are not.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::compression::CompressionLayer;

/// The dashboard's policy (see the module doc).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: https:; connect-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// An embedded file and where it is served.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// `/` (the dashboard) and its assets under `/ui/`, with the script of the page an
/// IDE that is not running shows (`ide-start.js`).
static ASSETS: [Asset; 5] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../ui/index.html"),
    },
    Asset {
        path: "/ui/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../ui/app.js"),
    },
    Asset {
        path: "/ui/theme.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../ui/theme.js"),
    },
    Asset {
        path: "/ui/ide-start.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../ui/ide-start.js"),
    },
    Asset {
        path: "/ui/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../ui/style.css"),
    },
];

/// Bytes of the SHA-256 digest in a tag: 128 bits, far from any accidental collision.
const ETAG_DIGEST_BYTES: usize = 16;

/// The dashboard's files, each with its `ETag`, compressed as the browser accepts.
pub fn router() -> Router {
    ASSETS
        .iter()
        .fold(Router::new(), |router, asset| {
            let etag = etag_of(asset.body);
            router.route(
                asset.path,
                get(move |request: HeaderMap| async move { answer(asset, &etag, &request) }),
            )
        })
        .layer(CompressionLayer::new())
}

/// The weak entity tag of `body`: `W/"<hex digest>"`.
fn etag_of(body: &str) -> HeaderValue {
    let tag = format!(
        "W/\"{}\"",
        crate::digest::sha256_hex(body.as_bytes(), ETAG_DIGEST_BYTES)
    );
    // Hex digits and quotes only: always a valid header value.
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("W/\"\""))
}

/// The file, or `304` when the browser holds it already.
fn answer(asset: &Asset, etag: &HeaderValue, request: &HeaderMap) -> Response {
    let headers = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::VARY, HeaderValue::from_static("accept-encoding")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
    ];
    let held = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|tags| none_match_fails(tags, etag.as_bytes()));
    if held {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

/// Whether an `If-None-Match` value (`*`, or a list of entity tags) names `etag`, by
/// the weak comparison RFC 9110 §13.1.2 prescribes for it: `W/"x"` and `"x"` match.
fn none_match_fails(if_none_match: &str, etag: &[u8]) -> bool {
    let opaque = |tag: &[u8]| -> Vec<u8> { tag.strip_prefix(b"W/").unwrap_or(tag).to_vec() };
    let ours = opaque(etag);
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || (!tag.is_empty() && opaque(tag.as_bytes()) == ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_lists_and_star_match() {
        let etag = br#"W/"abc""#;
        for matching in [
            r#"W/"abc""#,
            r#""abc""#,
            r#""x", W/"abc""#,
            "*",
            r#" "abc" "#,
        ] {
            assert!(none_match_fails(matching, etag), "{matching}");
        }
        for other in [r#""abcd""#, r#"W/"ab""#, "", "abc", r#""x", "y""#] {
            assert!(!none_match_fails(other, etag), "{other}");
        }
    }

    #[test]
    fn each_file_has_a_tag_of_its_own() {
        let tags: std::collections::BTreeSet<String> = ASSETS
            .iter()
            .map(|asset| etag_of(asset.body).to_str().unwrap().to_owned())
            .collect();
        assert_eq!(tags.len(), ASSETS.len());
        assert!(etag_of("x").to_str().unwrap().starts_with("W/\""));
    }
}
