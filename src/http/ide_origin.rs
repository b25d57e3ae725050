//! Requests on an IDE's own origin (`<name>.<public host>`, `server.ide_subdomains`):
//! nothing of devbox's own is served there (no API, no dashboard), only that IDE, and
//! only to a browser holding that origin's cookie: an IDE session, got by trading the
//! one-time ticket that devbox's own origin hands a signed-in browser on its way to the
//! IDE ([`crate::sessions`]). A browser without one is sent to devbox's origin, which
//! signs it in (or not) and sends it back.
//!
//! The IDE's cookie is `SameSite=Lax`, so that a link to the IDE from a mail or a chat
//! opens it; it opens that IDE only, and devbox's origin never receives it.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::auth::cookie_named;
use super::guards::request_host;
use super::{ApiError, Front, IDE_COOKIE};
use crate::identity::Caller;
use crate::proxy::{IDE_TICKET_PATH, serve_ide_origin};

/// Serves a request for an IDE's origin; passes any other on.
pub async fn route(State(front): State<Front>, request: Request, next: Next) -> Response {
    let Some(name) = request_host(&request).and_then(|host| front.site.ide_server(host)) else {
        return next.run(request).await;
    };
    if request.uri().path() == IDE_TICKET_PATH {
        return redeem(&front, &name, &request);
    }
    let caller = if front.auth_required() {
        cookie_named(request.headers(), IDE_COOKIE)
            .and_then(|id| front.sessions.ide_caller(id, &name))
    } else {
        Some(Caller::Admin)
    };
    match caller {
        Some(caller) => serve_ide_origin(&front.proxy, &caller, &name, request).await,
        None if request.method() == axum::http::Method::GET => {
            // Signed in on devbox's origin, the browser comes back with a ticket.
            let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
            match front.site.own_url(&format!("/s/{name}{path}")) {
                Some(url) => Redirect::to(&url).into_response(),
                None => ApiError::NotFound(format!("no server named `{name}`")).into_response(),
            }
        }
        None => ApiError::Unauthorized(format!(
            "not signed in to the IDE of `{name}`: open it from devbox first"
        ))
        .into_response(),
    }
}

/// `GET /__devbox/ide-ticket?t=<ticket>` on the IDE's origin: the ticket becomes this
/// origin's cookie, and the browser goes on to the IDE.
fn redeem(front: &Front, name: &str, request: &Request) -> Response {
    let ticket = request
        .uri()
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("t="))
        .unwrap_or_default();
    let Some((session, next)) = front.sessions.redeem_ticket(ticket, name) else {
        let again = front
            .site
            .own_url(&format!("/s/{name}/"))
            .unwrap_or_else(|| "/".to_owned());
        let page = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Link used</title></head>\
             <body><h1>This link was used already or has expired</h1>\
             <p><a href=\"{again}\">Open the IDE again</a></p></body></html>"
        );
        return (StatusCode::FORBIDDEN, Html(page)).into_response();
    };
    let cookie = front.cookie_for_sites(IDE_COOKIE, &session, front.sessions.ttl(), "Lax");
    let mut response = Redirect::to(&next).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
