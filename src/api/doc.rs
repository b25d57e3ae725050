//! What the OpenAPI document says beyond the handlers' types: how a caller proves who
//! they are (`securitySchemes`), each operation's id and tag, and the error codes each
//! route can really answer.
//!
//! The error codes are listed by hand per route (in the route tables, with
//! [`signed_in`] and [`public`]) rather than inferred from `ApiError`, which can be any
//! of them: a client generated from the document should expect the 404 of a server
//! route and not expect one from `GET /servers`. Two codes come from the HTTP front
//! rather than the handler, and are added here: 403 on every route (the guards refuse
//! a foreign `Host`, a cross-site change and framing by another page whatever the
//! route), and 401 on every route that needs credentials. None of 415, 422 or 503 is
//! listed anywhere: a body of the wrong type or shape is a 400, and devbox's own routes
//! answer while devbox runs. 413 is listed on the routes that take a body: devbox
//! refuses any request whose declared `Content-Length` passes the limit, but only a
//! client of such a route has reason to send one.

use aide::OperationOutput;
use aide::generate::in_context;
use aide::openapi::{
    ApiKeyLocation, OpenApi, ReferenceOr, SecurityScheme, StatusCode as DocStatus, Tag,
};
use aide::transform::TransformOperation;
use indexmap::IndexMap;

use crate::http::{ApiError, SESSION_COOKIE};

/// The name of the bearer-token scheme (an admin token).
pub const BEARER_SCHEME: &str = "bearer";
/// The name of the session-cookie scheme (the dashboard's, or a seat link's).
pub const SESSION_SCHEME: &str = "session";

/// The groups of operations, in the order the document lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    System,
    Auth,
    Templates,
    Servers,
    Lifecycle,
    Monitoring,
    Logs,
    Seats,
}

impl Group {
    const ALL: [Group; 8] = [
        Group::System,
        Group::Auth,
        Group::Templates,
        Group::Servers,
        Group::Lifecycle,
        Group::Monitoring,
        Group::Logs,
        Group::Seats,
    ];

    /// The tag's name in the document.
    pub fn name(self) -> &'static str {
        match self {
            Group::System => "system",
            Group::Auth => "auth",
            Group::Templates => "templates",
            Group::Servers => "servers",
            Group::Lifecycle => "lifecycle",
            Group::Monitoring => "monitoring",
            Group::Logs => "logs",
            Group::Seats => "seats",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Group::System => "devbox itself: liveness and the public part of its config",
            Group::Auth => "The dashboard's session cookie: log in with a token, log out",
            Group::Templates => "The config's templates",
            Group::Servers => {
                "Servers: list, read, create, replace a spec, and the steps of multi-step creation"
            }
            Group::Lifecycle => {
                "Start, stop, restart, delete; each answers once the controller reports the outcome"
            }
            Group::Monitoring => "What is observed now: live health, CPU, memory, processes",
            Group::Logs => "Log lines: the newest ones, or a live stream over WebSocket",
            Group::Seats => "Seat links that sign a participant in to their server (admins)",
        }
    }
}

/// Why a route answers `code`, in the words every route shares (the body's `error`
/// says the particular reason). `handler_refuses`: the route's handler answers 403 too
/// (what only admins may do), not only the guards.
fn meaning(code: u16, handler_refuses: bool) -> &'static str {
    match code {
        400 => {
            "Bad input: a body, query, form field or value that is not valid, or a spec file that is not."
        }
        401 => {
            "No valid credentials (a bearer token or a live session), when devbox requires them."
        }
        403 if handler_refuses => {
            "Refused: what only admins may do (or set), a foreign `Host`, a change from another site's page, or framing by another page."
        }
        403 => {
            "Refused: a foreign `Host`, a change from another site's page, or framing by another page."
        }
        404 => "No such server (or template) that this caller may see.",
        409 => {
            "In conflict with what exists: a name or port taken, a cap on servers reached, a workspace that already holds files."
        }
        413 => "The request body is larger than the route takes.",
        500 => {
            "devbox could not do it: a file it could not write, or the server failed or timed out (the message names the phase and reason)."
        }
        _ => "An error.",
    }
}

/// The document every route table adds to: its title, the tags and how to sign in.
pub fn base_document() -> OpenApi {
    let mut api = OpenApi {
        info: aide::openapi::Info {
            title: "devbox".into(),
            description: Some(
                "Manage code-server instances. Changes are written as spec files; calls that change a server answer once the controller reports the outcome. Errors are `{\"error\": \"…\", \"detail\": \"…\"}`. With an admin token configured, a caller proves who they are with the token (`bearer`) or a session cookie (`session`); behind a trusted proxy (`auth.trusted_header`), the proxy's user header does.".into(),
            ),
            version: env!("CARGO_PKG_VERSION").into(),
            ..aide::openapi::Info::default()
        },
        tags: Group::ALL
            .iter()
            .map(|group| Tag {
                name: group.name().into(),
                description: Some(group.description().into()),
                ..Tag::default()
            })
            .collect(),
        ..OpenApi::default()
    };
    let schemes = &mut api
        .components
        .get_or_insert_with(Default::default)
        .security_schemes;
    schemes.insert(
        BEARER_SCHEME.into(),
        ReferenceOr::Item(SecurityScheme::Http {
            scheme: "bearer".into(),
            bearer_format: None,
            description: Some(
                "An admin token (`auth.admin_tokens`, `server.api_token`, `DEVBOX_API_TOKEN`) as `Authorization: Bearer <token>`. Needed only when devbox has a token or a trusted proxy configured; without one every caller is the admin.".into(),
            ),
            extensions: IndexMap::new(),
        }),
    );
    schemes.insert(
        SESSION_SCHEME.into(),
        ReferenceOr::Item(SecurityScheme::ApiKey {
            location: ApiKeyLocation::Cookie,
            name: SESSION_COOKIE.into(),
            description: Some(
                "The session cookie `POST /auth/login` (or a seat link) sets: `HttpOnly`, `SameSite=Strict`; it counts on requests from devbox's own pages or from no page at all.".into(),
            ),
            extensions: IndexMap::new(),
        }),
    );
    api
}

/// Documents an operation that needs credentials when devbox requires them: a bearer
/// token or a session cookie, either one. `errors` are the codes the handler itself can
/// answer; 401 and 403 are added.
pub fn signed_in(
    id: &'static str,
    group: Group,
    errors: &'static [u16],
) -> impl FnOnce(TransformOperation<'_>) -> TransformOperation<'_> {
    move |operation| {
        let operation = operation
            .id(id)
            .tag(group.name())
            .security_requirement(BEARER_SCHEME)
            .security_requirement(SESSION_SCHEME);
        with_errors(operation, &[401, 403], errors)
    }
}

/// Documents an operation anyone may call (no security requirement). `errors` are the
/// codes the handler itself can answer; 403 is added.
pub fn public(
    id: &'static str,
    group: Group,
    errors: &'static [u16],
) -> impl FnOnce(TransformOperation<'_>) -> TransformOperation<'_> {
    move |operation| {
        let operation = operation.id(id).tag(group.name());
        with_errors(operation, &[403], errors)
    }
}

/// Adds an error response (the [`ApiError`] body) for each of `front` (codes the HTTP
/// front answers) and `handler` (codes the handler answers), in ascending order after
/// the success answer.
fn with_errors<'t>(
    mut operation: TransformOperation<'t>,
    front: &[u16],
    handler: &[u16],
) -> TransformOperation<'t> {
    let mut codes: Vec<u16> = front.iter().chain(handler).copied().collect();
    codes.sort_unstable();
    codes.dedup();
    let handler_refuses = handler.contains(&403);
    let inner = operation.inner_mut();
    let Some(body) = in_context(|ctx| ApiError::operation_response(ctx, inner)) else {
        return operation;
    };
    let responses = inner.responses.get_or_insert_with(Default::default);
    for code in codes {
        let mut response = body.clone();
        response.description = meaning(code, handler_refuses).into();
        responses
            .responses
            .insert(DocStatus::Code(code), ReferenceOr::Item(response));
    }
    operation
}
