//! `GET /seat/<ticket>`: opening a seat link. A valid link signs the browser in as the
//! seat's owner, always as a user (a session cookie, as a dashboard login gets), and
//! sends it on to the IDE; any other link gets a page that says what is wrong with it.
//!
//! The page moves on with a `<meta http-equiv="refresh">` rather than a redirect: a
//! link opened from a mail or a chat is a cross-site navigation, and a browser sends a
//! `SameSite=Strict` cookie on none of its redirects; a refresh from devbox's own page
//! is a same-site navigation, which carries the new cookie.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::Front;
use crate::identity::Caller;
use crate::seats::RedeemError;

/// The seat-link route.
pub fn routes() -> Router<Front> {
    Router::new().route("/seat/{ticket}", get(open))
}

async fn open(State(front): State<Front>, Path(ticket): Path<String>) -> Response {
    match front.seats.redeem(&ticket) {
        Ok(seat) => {
            tracing::info!(server = %seat.server, owner = %seat.owner, "seat link opened");
            let cookie = front.session_cookie_for(Caller::User(seat.owner));
            let target = format!("/s/{}/", seat.server);
            let body = format!(
                "<meta http-equiv=\"refresh\" content=\"0;url={target}\">\
                 <title>Opening your IDE</title><p>Signed in. Opening <a href=\"{target}\">your IDE</a>…</p>"
            );
            let mut response = page(StatusCode::OK, &body);
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(err) => {
            let status = match err {
                RedeemError::Unknown => StatusCode::NOT_FOUND,
                RedeemError::Expired | RedeemError::Revoked => StatusCode::GONE,
            };
            page(
                status,
                &format!(
                    "<title>Seat link not valid</title><h1>Seat link not valid</h1><p>{err}.</p>"
                ),
            )
        }
    }
}

/// A small HTML page that loads nothing, is never kept, and never tells another
/// site the link it came from.
fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"></head><body>{body}</body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
