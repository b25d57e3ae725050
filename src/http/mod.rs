//! The HTTP front: one router for the API ([`crate::api`]), the IDE proxy
//! ([`crate::proxy`]) and the dashboard ([`crate::ui`]), the guards every request passes
//! on its way to them, the error type they all answer with, and the server that accepts
//! connections (over TLS with `server.tls`). The route modules own their routes only; the guards here know no route
//! but the few public ones.
//!
//! In the order a request meets them: the host and cross-site checks (`guards`), then,
//! for the API and the proxy, CORS for listed origins and authentication (`auth`).
//! The dashboard's files and `/health` need no credentials.

mod auth;
mod error;
mod guards;
mod ide_origin;
mod seat_page;
mod server;
mod site;
mod tls;

use std::sync::Arc;

use axum::Router;
use axum::middleware;

pub use auth::{MetricsReader, bearer_token};
pub use error::{ApiError, ErrorBody};
pub use server::{Handshake, Peer, Plain, Transport, serve, unix_listener};
pub use site::Site;
pub use tls::{Tls, TlsError, ring_provider};

use crate::api::{AppState, limit_body_time, mib};
use crate::config::{Secret, TrustedHeader};
use crate::identity::{Caller, UserName};
use crate::seats::SeatLinks;
use crate::sessions::Sessions;

/// The name of the dashboard's session cookie. devbox's credentials are devbox's
/// only: the proxy removes this cookie, [`IDE_COOKIE`] (and any bearer token) from
/// what it forwards.
pub const SESSION_COOKIE: &str = "devbox_session";

/// The name of an IDE's own cookie on its own origin (`server.ide_subdomains`).
pub const IDE_COOKIE: &str = "devbox_ide";

/// Where seat links open: `/seat/<ticket>`.
pub const SEAT_PATH: &str = "/seat/";

/// What the guards share. Cloning is cheap (handles only).
#[derive(Clone)]
struct Front {
    site: Arc<Site>,
    /// Callers must say who they are (`Config::auth_required`); otherwise every
    /// caller is the admin.
    auth_required: bool,
    /// Every admin token.
    admin_tokens: Arc<[Secret]>,
    /// `server.metrics_token`: may read `/metrics` only.
    metrics_token: Option<Secret>,
    /// `auth.admins`: user names that sign in as admins.
    admin_users: Arc<[String]>,
    /// `auth.trusted_header`: a proxy's identity header, and who may send it.
    trusted_header: Option<Arc<TrustedHeader>>,
    sessions: Sessions,
    seats: SeatLinks,
    /// Session cookies carry `Secure`: devbox is reached over https.
    secure_cookies: bool,
    /// The proxy, for the IDEs' own origins (`server.ide_subdomains`).
    proxy: crate::proxy::ProxyState,
}

impl Front {
    fn auth_required(&self) -> bool {
        self.auth_required
    }

    fn is_admin_token(&self, given: &str) -> bool {
        // Every token is compared, so timing tells nothing of which one matched.
        self.admin_tokens
            .iter()
            .fold(false, |found, token| token.matches(given) | found)
    }

    /// A `Set-Cookie` value for devbox's own cookies: for every path, never for
    /// scripts, never sent along from another site's page.
    fn cookie(&self, name: &str, value: &str, max_age: std::time::Duration) -> String {
        self.cookie_for_sites(name, value, max_age, "Strict")
    }

    /// A cookie as [`Front::cookie`], sent along on requests from `same_site` sites
    /// (`Strict`: from devbox's own pages only; `Lax`: also on a link from elsewhere).
    fn cookie_for_sites(
        &self,
        name: &str,
        value: &str,
        max_age: std::time::Duration,
        same_site: &str,
    ) -> String {
        format!(
            "{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={}{}",
            max_age.as_secs(),
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }

    /// Who `user` is once signed in: the admin when `auth.admins` names them.
    fn caller_named(&self, user: UserName) -> Caller {
        if self.admin_users.iter().any(|admin| admin == user.as_str()) {
            Caller::Admin
        } else {
            Caller::User(user)
        }
    }

    /// Opens a session for `caller`; returns its `Set-Cookie` value.
    fn session_cookie_for(&self, caller: Caller) -> String {
        let id = self.sessions.open(caller);
        self.cookie(SESSION_COOKIE, &id, self.sessions.ttl())
    }
}

/// Adds the sign-in routes (`/auth/*`) to the OpenAPI document `api`.
pub fn document_auth_routes(api: &mut aide::openapi::OpenApi) {
    let _ = auth::routes().finish_api(api);
}

/// The complete HTTP application: API, proxy and dashboard behind the guards.
pub fn app(state: AppState) -> Router {
    let config = &state.config;
    let site = Arc::new(Site::new(config));
    let start_on_visit = config.controller.start_on_visit.then(|| {
        let state = state.clone();
        let start: crate::proxy::Starter = Arc::new(move |name: String| {
            let state = state.clone();
            Box::pin(async move {
                crate::api::ask_to_run(&state, &name, true)
                    .await
                    .map(drop)
                    .map_err(|err| err.to_string())
            })
        });
        start
    });
    let proxy_state = crate::proxy::ProxyState {
        statuses: state.statuses.clone(),
        sessions: state.sessions.clone(),
        passwords: state.passwords.clone(),
        forwarder: crate::proxy::Forwarder::new(mib(config.server.static_cache_mb)),
        start_on_visit,
        ide_origins: config
            .server
            .ide_subdomains
            .then(|| crate::proxy::IdeOrigins {
                site: site.clone(),
                tickets: config.auth_required().then(|| state.sessions.clone()),
            }),
    };
    let front = Front {
        site,
        auth_required: config.auth_required(),
        admin_tokens: config.auth.resolved_admin_tokens.clone().into(),
        metrics_token: config.server.resolved_metrics_token.clone(),
        admin_users: config.auth.admins.clone().into(),
        trusted_header: config.auth.trusted_header.clone().map(Arc::new),
        sessions: state.sessions.clone(),
        seats: state.seats.clone(),
        secure_cookies: config.server.tls.is_some()
            || config
                .server
                .public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https:")),
        proxy: proxy_state.clone(),
    };
    let proxy = crate::proxy::router(proxy_state);
    let body_time = config.server.header_read_timeout.get();
    let upload_mb = config.ui.workspace.max_upload_size_mb;
    let authenticate = middleware::from_fn_with_state(front.clone(), auth::authenticate);
    let mut own = crate::api::router(state.clone())
        .merge(crate::api::scrape::router(state.clone()))
        .merge(Router::from(auth::routes()).with_state(front.clone()))
        .layer(middleware::from_fn(guards::no_sniff))
        .layer(authenticate.clone())
        .layer(middleware::from_fn(move |request, next| {
            limit_body_time(body_time, upload_mb, request, next)
        }));
    // CORS wraps the API outside authentication: preflights need no token, and a 401
    // carries the headers a listed page needs to read it. Proxied code-server pages
    // keep their own rules.
    if let Some(cors) = guards::cors(config) {
        own = own.layer(cors);
    }
    let authenticated = own.merge(proxy.layer(authenticate));
    authenticated
        .merge(crate::ui::router().layer(middleware::from_fn(guards::no_sniff)))
        .merge(seat_page::routes().with_state(front.clone()))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(middleware::from_fn_with_state(
            front.clone(),
            ide_origin::route,
        ))
        .layer(middleware::from_fn_with_state(front, guards::guard))
}
