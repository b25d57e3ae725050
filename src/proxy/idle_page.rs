//! What a visit to an IDE that is not running gets: a page that says so and, for its
//! owner or an admin (nobody else gets this far: others get a 404), a Start button, or
//! (with `controller.start_on_visit`) a start already under way, with its progress,
//! that reloads into the IDE once it runs. The page's script is devbox's own
//! (`/ui/ide-start.js`, under the dashboard's Content-Security-Policy) and drives the
//! same API as the dashboard: `POST /servers/{name}/start`, `GET /servers/{name}`.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::status::Phase;

/// What to do about a visit to a server in `phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Start it now (`start_on_visit`), and show the progress.
    Start,
    /// Offer a Start button.
    OfferStart,
    /// It is on its way up (or down): show where it is, and reload once it runs.
    Wait,
}

/// The decision, as a function of the server's phase, the setting, and whether the
/// request is a page visit (a browser's navigation), not a script's or an asset's.
pub fn visit(phase: Phase, start_on_visit: bool, navigation: bool) -> Visit {
    match phase {
        Phase::Stopped | Phase::Failed if start_on_visit && navigation => Visit::Start,
        Phase::Stopped | Phase::Failed | Phase::Invalid => Visit::OfferStart,
        Phase::Pending
        | Phase::Provisioning
        | Phase::Starting
        | Phase::Running
        | Phase::Stopping => Visit::Wait,
    }
}

/// Whether `method` and `headers` are a browser opening a page (`Sec-Fetch-Mode:
/// navigate`, or, from a client that sends no fetch metadata, a GET that accepts HTML).
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET {
        return false;
    }
    match headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes().eq_ignore_ascii_case(b"navigate"),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html")),
    }
}

/// The page for server `name` in `phase`: 503 with `Retry-After`, the dashboard's
/// policy, and the script that starts it or waits for it.
pub fn page(name: &str, phase: Phase, visit: Visit, start_failed: Option<&str>) -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(html(name, phase, visit, start_failed)),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::ui::CONTENT_SECURITY_POLICY),
    );
    response
}

/// The page's HTML; `data-mode` tells the script to offer the button or to wait.
fn html(name: &str, phase: Phase, visit: Visit, start_failed: Option<&str>) -> String {
    let state = phase.name();
    let name = escape(name);
    let (mode, text) = match (visit, start_failed) {
        (_, Some(err)) => (
            "offer",
            format!("It could not be started: {}", escape(err)),
        ),
        (Visit::Start, None) => (
            "wait",
            "It is starting now; this page opens the IDE as soon as it runs.".to_owned(),
        ),
        (Visit::OfferStart, None) => (
            "offer",
            "This IDE is not running right now. Start it, and this page opens it as soon as it runs.".to_owned(),
        ),
        (Visit::Wait, None) => (
            "wait",
            "This page opens the IDE as soon as it runs.".to_owned(),
        ),
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{name} is {state}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <link rel=\"stylesheet\" href=\"/ui/style.css\">\
         <script src=\"/ui/ide-start.js\" defer></script></head>\
         <body class=\"ide-start\" data-server=\"{name}\" data-mode=\"{mode}\">\
         <main><h1>{name} is <span id=\"ide-phase\">{state}</span></h1><p>{text}</p>\
         <p><button id=\"ide-start\" type=\"button\" hidden>Start {name}</button></p>\
         <p id=\"ide-progress\" role=\"status\"></p>\
         <p><a href=\"/\">Back to the dashboard</a></p></main></body></html>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_ides_start_on_a_visit_only_when_asked_and_only_for_a_page() {
        assert_eq!(visit(Phase::Stopped, true, true), Visit::Start);
        assert_eq!(visit(Phase::Failed, true, true), Visit::Start);
        assert_eq!(visit(Phase::Stopped, true, false), Visit::OfferStart);
        assert_eq!(visit(Phase::Stopped, false, true), Visit::OfferStart);
        assert_eq!(visit(Phase::Invalid, true, true), Visit::OfferStart);
        assert_eq!(visit(Phase::Provisioning, true, true), Visit::Wait);
        assert_eq!(visit(Phase::Stopping, false, true), Visit::Wait);
    }

    #[test]
    fn a_navigation_is_a_get_for_a_page() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_static(v));
            }
            map
        };
        assert!(is_navigation(
            &Method::GET,
            &headers(&[("sec-fetch-mode", "navigate")])
        ));
        assert!(!is_navigation(
            &Method::GET,
            &headers(&[("sec-fetch-mode", "cors")])
        ));
        assert!(!is_navigation(
            &Method::POST,
            &headers(&[("sec-fetch-mode", "navigate")])
        ));
        assert!(is_navigation(
            &Method::GET,
            &headers(&[("accept", "text/html,*/*")])
        ));
        assert!(!is_navigation(&Method::GET, &headers(&[("accept", "*/*")])));
    }

    #[test]
    fn the_page_offers_or_waits_and_escapes_what_it_shows() {
        let offered = html("box", Phase::Stopped, Visit::OfferStart, None);
        assert!(offered.contains("data-mode=\"offer\""), "{offered}");
        let waiting = html("box", Phase::Stopped, Visit::Start, None);
        assert!(waiting.contains("data-mode=\"wait\""), "{waiting}");
        let hostile = html(
            "a<b",
            Phase::Failed,
            Visit::OfferStart,
            Some("x\"><img src=x>"),
        );
        assert!(
            hostile.contains("a&lt;b") && hostile.contains("x&quot;&gt;&lt;img"),
            "{hostile}"
        );
        assert!(!hostile.contains("<img"), "{hostile}");
    }
}
