//! The reverse proxy to the instances: `/vscode/<port>/…` and `/s/<name>/…`.
//!
//! Only ports that belong to a managed server are proxied; any other port is a 404 and
//! no connection is attempted (so the proxy cannot be used to reach other services on
//! the host). A managed server that is not running answers 503 with a page that says
//! so. Requests and responses stream through (nothing is buffered whole), over pooled
//! keep-alive HTTP/1.1 connections (`backend`) to where each instance listens (its
//! Unix socket or its port, [`crate::endpoint`]); code-server's build-addressed static files are
//! also kept in a shared cache (`static_cache`); WebSocket upgrades become raw byte
//! tunnels. To an instance that asks for a password (one on another machine), the
//! proxy sends every request signed in with a session of its own (`sign_in`).

mod backend;
mod forward;
mod idle_page;
mod sign_in;
mod static_cache;
mod tunnel;

use crate::metrics::METRICS;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::any;
use futures_util::future::BoxFuture;

use crate::endpoint::Endpoint;
use crate::http::ApiError;
use crate::http::Site;
use crate::identity::Caller;
use crate::instance_auth::InstancePasswords;
use crate::sessions::Sessions;
use crate::status::{Phase, Route, StatusStore};
pub use forward::Forwarder;

/// Asks for server `name` to run (without waiting for it); an error says why not.
pub type Starter = Arc<dyn Fn(String) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What the proxy routes need.
#[derive(Clone)]
pub struct ProxyState {
    pub statuses: StatusStore,
    pub forwarder: Forwarder,
    /// `controller.start_on_visit`: a page visit to a stopped IDE starts it, with this.
    pub start_on_visit: Option<Starter>,
    /// `server.ide_subdomains`: each IDE is served on an origin of its own.
    pub ide_origins: Option<IdeOrigins>,
    /// Whose access is revoked: their tunnels end.
    pub sessions: Sessions,
    /// Passwords of instances that ask for one (see [`crate::instance_auth`]).
    pub passwords: InstancePasswords,
}

/// IDEs on origins of their own: `/s/<name>/…` and `/vscode/<port>/…` on devbox's
/// origin send the browser there (through a one-time ticket when devbox has sign-in),
/// and the IDE's origin serves the IDE at its root ([`serve_ide_origin`]).
#[derive(Clone)]
pub struct IdeOrigins {
    pub site: Arc<Site>,
    /// Where tickets are made; `None` when devbox needs no sign-in.
    pub tickets: Option<Sessions>,
}

/// The path on an IDE's origin where a ticket is traded for that IDE's cookie.
pub const IDE_TICKET_PATH: &str = "/__devbox/ide-ticket";

impl IdeOrigins {
    /// Sends the browser of `caller` to `path` (and query) of server `name`'s IDE.
    fn redirect(&self, caller: Option<&Caller>, name: &str, path: &str) -> Response {
        let target = match (&self.tickets, caller) {
            (Some(tickets), Some(caller)) => {
                let ticket = tickets.open_ide_ticket(caller.clone(), name, path);
                self.site
                    .ide_url(name, &format!("{IDE_TICKET_PATH}?t={ticket}"))
            }
            _ => self.site.ide_url(name, path),
        };
        match target {
            Some(url) => Redirect::to(&url).into_response(),
            None => bad_gateway("server.ide_subdomains needs server.public_url".into()),
        }
    }
}

/// A request on server `name`'s own origin, from `caller` (signed in there): the IDE
/// at the origin's root, or, while it does not run, its page on devbox's origin.
pub async fn serve_ide_origin(
    state: &ProxyState,
    caller: &Caller,
    name: &str,
    request: Request,
) -> Response {
    match state
        .statuses
        .route(name)
        .filter(|route| may_open(Some(caller), route))
    {
        None => ApiError::NotFound(format!("no server named `{name}`")).into_response(),
        Some(Route {
            phase: Phase::Running,
            port: Some(port),
            endpoint: Some(endpoint),
            ..
        }) => forward(state, caller, name, port, &endpoint, "", request).await,
        Some(_) => {
            let page = state
                .ide_origins
                .as_ref()
                .and_then(|ide| ide.site.own_url(&format!("/s/{name}/")));
            match page {
                Some(url) => Redirect::to(&url).into_response(),
                None => bad_gateway("server.ide_subdomains needs server.public_url".into()),
            }
        }
    }
}

/// The proxy's routes.
pub fn router(state: ProxyState) -> Router {
    Router::new()
        .route("/vscode/{port}", any(slashless_port))
        .route("/vscode/{port}/", any(by_port_root))
        .route("/vscode/{port}/{*rest}", any(by_port))
        .route("/s/{name}", any(slashless_name))
        .route("/s/{name}/", any(by_name_root))
        .route("/s/{name}/{*rest}", any(by_name))
        .with_state(state)
}

/// `/vscode/8010` → `/vscode/8010/` (query kept): code-server's relative URLs need the slash.
async fn slashless_port(Path(port): Path<String>, uri: Uri) -> Redirect {
    with_slash(&format!("/vscode/{port}/"), &uri)
}

async fn slashless_name(Path(name): Path<String>, uri: Uri) -> Redirect {
    with_slash(&format!("/s/{name}/"), &uri)
}

fn with_slash(path: &str, uri: &Uri) -> Redirect {
    match uri.query() {
        Some(query) => Redirect::permanent(&format!("{path}?{query}")),
        None => Redirect::permanent(path),
    }
}

async fn by_port_root(
    State(state): State<ProxyState>,
    Path(port): Path<String>,
    request: Request,
) -> Response {
    proxy_port(&state, &port, request).await
}

async fn by_port(
    State(state): State<ProxyState>,
    Path((port, _)): Path<(String, String)>,
    request: Request,
) -> Response {
    proxy_port(&state, &port, request).await
}

async fn by_name_root(
    State(state): State<ProxyState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    proxy_name(&state, &name, request).await
}

async fn by_name(
    State(state): State<ProxyState>,
    Path((name, _)): Path<(String, String)>,
    request: Request,
) -> Response {
    proxy_name(&state, &name, request).await
}

async fn proxy_port(state: &ProxyState, port: &str, request: Request) -> Response {
    let not_managed = || {
        ApiError::NotFound(format!("port {port} does not belong to a managed server"))
            .into_response()
    };
    let Ok(port) = port.parse::<u16>() else {
        return not_managed();
    };
    match state.statuses.by_port(port) {
        Some(route) => {
            serve_route(
                state,
                route,
                &format!("/vscode/{port}"),
                request,
                not_managed,
            )
            .await
        }
        None => not_managed(),
    }
}

async fn proxy_name(state: &ProxyState, name: &str, request: Request) -> Response {
    let unknown = || ApiError::NotFound(format!("no server named `{name}`")).into_response();
    match state.statuses.route(name) {
        Some(route) => serve_route(state, route, &format!("/s/{name}"), request, unknown).await,
        None => unknown(),
    }
}

/// Serves `request` (for `route`'s IDE, below `prefix`) to its owner or an admin: sent
/// on to the instance while it runs (or to the IDE's own origin), the IDE's page while
/// it does not. Anyone else gets `hidden`, the answer for a server that does not exist.
async fn serve_route(
    state: &ProxyState,
    route: Route,
    prefix: &str,
    request: Request,
    hidden: impl FnOnce() -> Response,
) -> Response {
    let caller = request.extensions().get::<Caller>().cloned();
    let Some(caller) = caller.filter(|caller| may_open(Some(caller), &route)) else {
        return hidden();
    };
    match route {
        Route {
            phase: Phase::Running,
            port: Some(port),
            endpoint: Some(endpoint),
            name,
            ..
        } => match &state.ide_origins {
            Some(ide) => ide.redirect(Some(&caller), &name, &rest_of(&request, prefix)),
            None => forward(state, &caller, &name, port, &endpoint, prefix, request).await,
        },
        route => {
            let navigation = idle_page::is_navigation(request.method(), request.headers());
            not_running(state, &route.name, route.phase, navigation).await
        }
    }
}

/// The request's path (and query) below `prefix`, as a path of this origin: leading
/// slashes and backslashes become one slash (`//evil.example/x` in a `Location` would
/// send the browser to another site).
fn rest_of(request: &Request, prefix: &str) -> String {
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let rest = path_and_query.strip_prefix(prefix).unwrap_or_default();
    format!("/{}", rest.trim_start_matches(['/', '\\']))
}

/// Whether the authenticated caller may open `route`'s IDE: its owner or an admin.
/// Others are told it does not exist, as for a server they may not see in the API.
fn may_open(caller: Option<&Caller>, route: &Route) -> bool {
    caller.is_some_and(|caller| caller.may_use(route.owner.as_ref()))
}

/// Sends `caller`'s `request` for server `name`'s route `port` to its instance at
/// `endpoint` (only the connection goes there; the route stays `port`), signed in when
/// the instance asks for a password. A tunnel ends when the caller's access is revoked.
async fn forward(
    state: &ProxyState,
    caller: &Caller,
    name: &str,
    port: u16,
    endpoint: &Endpoint,
    prefix: &str,
    request: Request,
) -> Response {
    let account = state.passwords.get(name).map(|password| sign_in::Account {
        server: name,
        password,
    });
    if tunnel::is_upgrade(&request) {
        let revoked = state.sessions.until_revoked(caller);
        let signs_in = account
            .as_ref()
            .map(|account| (account, state.forwarder.sign_ins()));
        tunnel::upgrade(port, endpoint, prefix, request, revoked, signs_in).await
    } else {
        let began = std::time::Instant::now();
        let request = request.map(|body| counted(body, &METRICS.proxy.bytes_to_instance));
        let response = state
            .forwarder
            .forward(port, endpoint, prefix, request, account.as_ref())
            .await;
        METRICS.proxy.answered(response.status(), began.elapsed());
        response.map(|body| counted(body, &METRICS.proxy.bytes_to_client))
    }
}

/// `body`, adding the length of each of its chunks to `counter` as it streams.
fn counted(body: Body, counter: &'static prometheus::IntCounter) -> Body {
    Body::new(Counted {
        inner: body,
        counter,
    })
}

/// A body that counts what passes and passes on everything else: its end and its size
/// hint too (from an exact one hyper writes `Content-Length`; without it, an answer
/// of known size would go out chunked).
struct Counted {
    inner: Body,
    counter: &'static prometheus::IntCounter,
}

impl http_body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// 503 with a small page: the server exists but does not run.
/// A visit to the IDE of `name`, which is not running, by its owner or an admin: its
/// page, after starting it when `controller.start_on_visit` says so.
async fn not_running(state: &ProxyState, name: &str, phase: Phase, navigation: bool) -> Response {
    let visit = idle_page::visit(phase, state.start_on_visit.is_some(), navigation);
    let mut failed = None;
    if let (idle_page::Visit::Start, Some(start)) = (visit, &state.start_on_visit) {
        tracing::info!(server = name, "starting on a visit");
        if let Err(err) = start(name.to_owned()).await {
            tracing::warn!(server = name, %err, "cannot start on a visit");
            failed = Some(err);
        }
    }
    idle_page::page(name, phase, visit, failed.as_deref())
}

/// An empty-bodied response with a status, for proxy failures.
fn bad_gateway(message: String) -> Response {
    let body = serde_json::json!({ "error": message, "detail": message }).to_string();
    Response::builder()
        .status(StatusCode::BAD_GATEWAY)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}
