//! Forwarding one HTTP request to an instance and streaming the answer back, over
//! keep-alive connections (or answering it from the static cache), signed in to the
//! instances that ask for a password (`sign_in`); and the header rules both
//! forwarding and tunnels follow (RFC 9110's hop-by-hop headers, `X-Forwarded-*`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Uri, request};
use axum::response::Response;

use super::backend::Backends;
use super::bad_gateway;
use super::sign_in::{Account, SendError, SignIns};
use super::static_cache::StaticCache;
use crate::endpoint::Endpoint;

/// The keep-alive connections to the instances, the cache of their static files, and
/// the sessions with the instances that ask for a password. Cloning shares them all.
#[derive(Clone)]
pub struct Forwarder {
    backends: Backends,
    cache: StaticCache,
    sign_ins: SignIns,
}

impl Forwarder {
    /// A forwarder whose static cache holds at most `cache_bytes` (0: no cache).
    pub fn new(cache_bytes: usize) -> Self {
        let backends = Backends::default();
        Self {
            sign_ins: SignIns::new(backends.clone()),
            backends,
            cache: StaticCache::new(cache_bytes),
        }
    }

    /// How many times devbox has signed in (or tried to) to instances that ask for a
    /// password.
    pub fn sign_in_attempts(&self) -> u64 {
        self.sign_ins.attempts()
    }

    pub(super) fn sign_ins(&self) -> &SignIns {
        &self.sign_ins
    }

    /// Sends `request` to the instance of route `port` at `endpoint`, with `prefix`
    /// stripped from its path; signed in as `account` when the instance asks for a
    /// password.
    pub async fn forward(
        &self,
        port: u16,
        endpoint: &Endpoint,
        prefix: &str,
        request: Request,
        account: Option<&Account<'_>>,
    ) -> Response {
        let (mut parts, body) = request.into_parts();
        prepare_request_headers(&mut parts, false);
        if let Err(message) = retarget(&mut parts, endpoint, prefix) {
            return bad_gateway(message);
        }
        let serves_workspace_files = serves_workspace_files(parts.uri.path());
        let cache_key = self.cache.key(port, &parts);
        if let Some(cached) = cache_key.as_ref().and_then(|key| self.cache.get(key)) {
            return cached;
        }
        let sent = match account {
            None => self
                .backends
                .send(endpoint, Request::from_parts(parts, body))
                .await
                .map_err(SendError::Backend),
            Some(account) => self.sign_ins.send(account, endpoint, parts, body).await,
        };
        match sent {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers, false);
                rewrite_location(&mut parts.headers, prefix);
                rewrite_cookie_paths(&mut parts.headers, prefix);
                if serves_workspace_files {
                    sandbox(&mut parts.headers);
                }
                confine_service_workers(&mut parts.headers, prefix);
                let response = Response::from_parts(parts, body);
                match cache_key {
                    Some(key) => self.cache.store_as_it_streams(key, response),
                    None => response,
                }
            }
            Err(SendError::Backend(err)) => {
                bad_gateway(format!("instance on port {port} did not answer: {err}"))
            }
            Err(err) => bad_gateway(err.to_string()),
        }
    }
}

/// Whether `path` (on the instance) is code-server's door to any file the instance can
/// read (`/vscode-remote-resource?path=…`, also under a `/stable-<commit>/` prefix):
/// the workbench loads images, fonts and extension files through it, but opened as a
/// page it would run whatever HTML a participant wrote, on devbox's origin.
fn serves_workspace_files(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment.eq_ignore_ascii_case("vscode-remote-resource"))
}

/// A service worker registered through an IDE on devbox's own origin may control
/// pages below that IDE's prefix at most: `Service-Worker-Allowed` (which widens a
/// worker's scope beyond its script's folder) is cut down to the prefix. Otherwise a
/// participant's app could register one for `/` that acts as devbox on every later
/// visit, the admin's included. On an IDE's own origin (no prefix) it is that origin's.
fn confine_service_workers(headers: &mut HeaderMap, prefix: &str) {
    const ALLOWED: &str = "service-worker-allowed";
    if prefix.is_empty() || !headers.contains_key(ALLOWED) {
        return;
    }
    match HeaderValue::from_str(&format!("{prefix}/")) {
        Ok(scope) => headers.insert(ALLOWED, scope),
        Err(_) => headers.remove(ALLOWED),
    };
}

/// Makes a document of this answer a page of no origin (`Content-Security-Policy:
/// sandbox`: no script, no form, no cookie, no request as devbox) and forbids a browser
/// to take it for another type than the one it says. Loads as an image, a font or a
/// script of the workbench are not documents and are not affected.
fn sandbox(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// Points the request at the instance at `endpoint`: its path without `prefix` (the
/// query kept), in the origin form an HTTP/1.1 request line carries, and a `Host` when
/// the client sent none.
pub(super) fn retarget(
    parts: &mut request::Parts,
    endpoint: &Endpoint,
    prefix: &str,
) -> Result<(), String> {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let rest = path_and_query
        .strip_prefix(prefix)
        .unwrap_or(path_and_query);
    let uri = if rest.starts_with('/') {
        rest.parse::<Uri>()
    } else {
        format!("/{rest}").parse::<Uri>()
    };
    parts.uri = uri.map_err(|err| format!("bad request path: {err}"))?;
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, endpoint.default_host());
    }
    Ok(())
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers and sets `X-Forwarded-For/Proto/Host`. The browser's
/// `Host` is kept (and copied to `X-Forwarded-Host`): code-server checks WebSocket
/// origins against it.
pub(super) fn prepare_request_headers(parts: &mut request::Parts, upgrade: bool) {
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers, upgrade);
    strip_devbox_credentials(headers);
    if let Some(ip) = client {
        let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(earlier) => HeaderValue::from_str(&format!("{earlier}, {ip}")),
            None => HeaderValue::from_str(&ip.to_string()),
        };
        if let Ok(value) = forwarded_for {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    // Over devbox's own TLS the scheme is known; otherwise a proxy in front may have
    // said it already.
    if parts.extensions.get::<crate::http::Transport>() == Some(&crate::http::Transport::Tls) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    } else if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Some(host) = headers.get(header::HOST).cloned()
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// devbox's own API token (bearer header or the dashboard's cookie) is for devbox only:
/// it must not reach code-server or the apps behind code-server's `/proxy/<port>/`.
fn strip_devbox_credentials(headers: &mut HeaderMap) {
    if crate::http::bearer_token(headers).is_some() {
        headers.remove(header::AUTHORIZATION);
    }
    let is_devbox_cookie = |pair: &str| {
        [crate::http::SESSION_COOKIE, crate::http::IDE_COOKIE]
            .iter()
            .any(|name| {
                pair.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('='))
            })
    };
    let has_devbox_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|pair| is_devbox_cookie(pair.trim()));
    if !has_devbox_cookie {
        return;
    }
    let cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !is_devbox_cookie(pair))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !cookies.is_empty()
        && let Ok(value) = HeaderValue::from_str(&cookies.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

/// Headers that are about one connection only (RFC 9110 §7.6.1), besides `Connection`
/// and `Upgrade` and whatever `Connection` names.
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// RFC 9110 §7.6.1: `Connection`, the headers it names, and the connection-specific
/// ones. A WebSocket handshake keeps `Connection: upgrade` and `Upgrade`.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of them: one look at each name, no removals.
    let any_hop_by_hop = headers.keys().any(|name| {
        *name == header::CONNECTION
            || *name == header::UPGRADE
            || CONNECTION_SPECIFIC.contains(name)
    });
    if !any_hop_by_hop {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !(upgrade && *name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &CONNECTION_SPECIFIC {
        headers.remove(name);
    }
    if !upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// A redirect to an absolute path (`/login`) would leave the prefix; put it back.
/// code-server's own redirects are relative and pass unchanged.
fn rewrite_location(headers: &mut HeaderMap, prefix: &str) {
    let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    if location.starts_with('/')
        && !location.starts_with("//")
        && !location.starts_with(prefix)
        && let Ok(value) = HeaderValue::from_str(&format!("{prefix}{location}"))
    {
        headers.insert(header::LOCATION, value);
    }
}

/// A cookie the instance scopes to `Path=/x` lives under `<prefix>/x` for the browser;
/// without the rewrite the browser would never send it back through the proxy.
fn rewrite_cookie_paths(headers: &mut HeaderMap, prefix: &str) {
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|cookie| with_prefixed_path(cookie, prefix))
                .and_then(|cookie| HeaderValue::from_str(&cookie).ok())
                .unwrap_or_else(|| value.clone())
        })
        .collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie);
    }
}

/// `cookie` with its absolute `Path` attribute under `prefix`, or `None` when it has
/// none to change.
fn with_prefixed_path(cookie: &str, prefix: &str) -> Option<String> {
    let mut changed = false;
    let attributes: Vec<String> = cookie
        .split(';')
        .map(|attribute| {
            let trimmed = attribute.trim_start();
            match trimmed.split_once('=') {
                Some((key, path))
                    if key.trim().eq_ignore_ascii_case("path")
                        && path.starts_with('/')
                        && !path.starts_with(prefix) =>
                {
                    changed = true;
                    format!(" Path={prefix}{path}")
                }
                _ => attribute.to_owned(),
            }
        })
        .collect();
    changed.then(|| attributes.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn hop_by_hop_headers_go_and_named_ones_too() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn each_connection_specific_header_goes_even_alone() {
        for name in &CONNECTION_SPECIFIC {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), HeaderValue::from_static("x"));
            headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
            strip_hop_by_hop(&mut headers, false);
            assert!(!headers.contains_key(name), "{name} stayed");
            assert!(headers.contains_key(header::ACCEPT));
        }
    }

    #[test]
    fn service_workers_stay_below_their_ides_prefix() {
        let mut headers = HeaderMap::new();
        headers.insert("service-worker-allowed", HeaderValue::from_static("/"));
        confine_service_workers(&mut headers, "/vscode/8010");
        assert_eq!(headers["service-worker-allowed"], "/vscode/8010/");
        let mut own_origin = HeaderMap::new();
        own_origin.insert("service-worker-allowed", HeaderValue::from_static("/"));
        confine_service_workers(&mut own_origin, "");
        assert_eq!(own_origin["service-worker-allowed"], "/");
        let mut none = HeaderMap::new();
        confine_service_workers(&mut none, "/s/box");
        assert!(none.is_empty());
    }

    #[test]
    fn devbox_credentials_do_not_reach_the_instance() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret"),
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; devbox_session=secret; b=2"),
        );
        strip_devbox_credentials(&mut headers);
        assert!(!headers.contains_key(header::AUTHORIZATION));
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
        let mut only_token = HeaderMap::new();
        only_token.insert(
            header::COOKIE,
            HeaderValue::from_static("devbox_session=secret"),
        );
        strip_devbox_credentials(&mut only_token);
        assert!(!only_token.contains_key(header::COOKIE));
        // The scheme's name is case-insensitive (RFC 9110 §11.1).
        let mut lower = HeaderMap::new();
        lower.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer secret"),
        );
        strip_devbox_credentials(&mut lower);
        assert!(!lower.contains_key(header::AUTHORIZATION));
    }

    #[test]
    fn upgrade_headers_stay_for_a_tunnel() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut headers, true);
        assert!(headers.contains_key(header::UPGRADE));
        assert!(headers.contains_key(header::CONNECTION));
    }

    #[test]
    fn prefix_is_stripped_and_query_kept() {
        let request = Request::builder()
            .uri("/vscode/8010/static/a.js?v=1")
            .body(Body::empty())
            .unwrap();
        let (mut parts, _) = request.into_parts();
        retarget(&mut parts, &Endpoint::Tcp(8010), "/vscode/8010").unwrap();
        assert_eq!(parts.uri, "/static/a.js?v=1");
        assert_eq!(parts.headers[header::HOST], "127.0.0.1:8010");
        let request = Request::builder()
            .uri("/vscode/8010/")
            .body(Body::empty())
            .unwrap();
        let (mut parts, _) = request.into_parts();
        let socket = Endpoint::Unix("/state/sockets/a.sock".into());
        retarget(&mut parts, &socket, "/vscode/8010").unwrap();
        assert_eq!(parts.uri, "/");
        assert_eq!(
            parts.headers[header::HOST],
            "localhost",
            "a socket has no address to name"
        );
    }

    #[test]
    fn cookie_paths_move_under_the_prefix() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("key=1; path=/; HttpOnly"),
        );
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("other=2; SameSite=Lax"),
        );
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("deep=3; Path=/static/x"),
        );
        rewrite_cookie_paths(&mut headers, "/vscode/8010");
        let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(
            cookies,
            [
                "key=1; Path=/vscode/8010/; HttpOnly",
                "other=2; SameSite=Lax",
                "deep=3; Path=/vscode/8010/static/x",
            ]
        );
    }

    #[test]
    fn absolute_redirects_keep_the_prefix() {
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, HeaderValue::from_static("/login?to=%2F"));
        rewrite_location(&mut headers, "/vscode/8010");
        assert_eq!(headers[header::LOCATION], "/vscode/8010/login?to=%2F");
        headers.insert(header::LOCATION, HeaderValue::from_static("./?folder=/w"));
        rewrite_location(&mut headers, "/vscode/8010");
        assert_eq!(headers[header::LOCATION], "./?folder=/w");
    }
}
