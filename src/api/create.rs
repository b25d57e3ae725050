//! The four ways to create a server: `POST /servers`, `create-with-workspace`
//! (multipart: a git URL or a zip upload), `create-from-template`, and
//! `create-metadata`. Each writes a new spec file (state `stopped`, a port pinned from
//! the range, a fresh uuid) and answers 201 once the controller lists the server. The
//! spec writer picks the port under its lock ([`NewPort::PickFree`]); a port asked for
//! that another spec pins or another server runs on is a 409.
//! Provisioning (clone, extensions) happens when the server starts. Past
//! `controller.max_servers` spec files, creation answers 409 and writes nothing.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use schemars::JsonSchema;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::access;
use super::extract::{Created, JsonBody};
use super::names::{self, ServerName};
use super::upload;
use super::views::ServerView;
use super::wait::{self, Verdict};
use crate::config::SettingsMap;
use crate::data_dirs::DataRoots;
use crate::http::ApiError;
use crate::identity::Caller;
use crate::metrics::METRICS;
use crate::pool::{self, Pool, claim::Claimant};
use crate::spec::{
    ApiVersion, DesiredState, DevServer, DevServerSpec, Kind, Metadata, TemplateRef,
};
use crate::spec_files::{CreateError, NewPort, Quota};
use crate::status::Phase;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateServer {
    /// Display name: 1-63 letters, digits, spaces, `-`, `_`, `.`.
    pub name: String,
    /// Marketplace ids (`publisher.name`) or `.vsix` files in the vsix folder.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Extension groups from the config.
    #[serde(default)]
    pub extension_groups: Vec<String>,
    #[serde(default)]
    pub user_settings: SettingsMap,
    /// A port from the range; one is picked when absent.
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateFromTemplate {
    pub name: String,
    /// The template item's name.
    pub template_id: String,
    pub tab_name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateMetadata {
    pub name: String,
}

/// Creates a stopped server with the given extensions.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateServer>,
) -> Result<Created<ServerView>, ApiError> {
    let name = names::parse(&body.name)?;
    let spec = DevServerSpec {
        extensions: body.extensions,
        extension_groups: body.extension_groups,
        user_settings: body.user_settings,
        port: body.port,
        ..stopped_spec()
    };
    create_server(&state, &caller, name, spec)
        .await
        .map(Created)
}

/// Creates a stopped server whose workspace is a git repository (`github_url`) or an
/// uploaded zip archive (`zip_file`, with the optional `zip_strip_top_level`); fields
/// `name`, and `extensions` and `extension_groups` (JSON arrays of strings).
pub async fn create_with_workspace(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Created<ServerView>, ApiError> {
    let mut form = upload::read(&state, multipart).await?;
    let name = names::parse(
        form.field("name")
            .ok_or_else(|| ApiError::BadRequest("missing form field `name`".into()))?,
    )?;
    let extensions = json_list(&form, "extensions")?;
    let extension_groups = json_list(&form, "extension_groups")?;
    let upload_target = state.upload_path(&name.slug);
    let workspace = upload::workspace(&state, &form, &upload_target).await?;
    let is_zip = workspace.zip.is_some();
    let spec = DevServerSpec {
        extensions,
        extension_groups,
        workspace: Some(workspace),
        ..stopped_spec()
    };
    let slug = name.slug.clone();
    let view = create_server(&state, &caller, name, spec).await?;
    if is_zip && let Err(err) = form.keep_zip(&upload_target) {
        // Nothing half-created: without its archive the server is removed again.
        let specs = state.specs.clone();
        let _ = tokio::task::spawn_blocking(move || specs.delete(&slug)).await;
        state.rescan.notify_one();
        return Err(err);
    }
    Ok(Created(view))
}

/// Creates a server from a template of the config (its groups and repository): a
/// ready server of the template's pool, claimed and running, when there is one (see
/// [`crate::pool`]); else a stopped server made afresh.
pub async fn create_from_template(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateFromTemplate>,
) -> Result<Created<ServerView>, ApiError> {
    let name = names::parse(&body.name)?;
    if state
        .config
        .template(&body.tab_name, &body.template_id)
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "Template not found: `{}` in tab `{}`",
            body.template_id, body.tab_name
        )));
    }
    let spec = DevServerSpec {
        template: Some(TemplateRef {
            tab: body.tab_name.clone(),
            name: body.template_id.clone(),
        }),
        ..stopped_spec()
    };
    let Some(pool) = state.pools.get(&body.tab_name, &body.template_id) else {
        return create_server(&state, &caller, name, spec)
            .await
            .map(Created);
    };
    if let Some(view) = claim_from_pool(&state, &caller, pool, &name, &spec).await? {
        METRICS.pools.claimed(&pool.template.name);
        return Ok(Created(view));
    }
    METRICS.pools.fell_back(&pool.template.name);
    create_server(&state, &caller, name, spec)
        .await
        .map(Created)
}

/// Hands the caller a ready server of `pool` as theirs, named `name`: what
/// [`create_server`] would make of `spec`, but running (once it runs as its owner's
/// user, under `isolation.run_as: owner`). `None`: none was ready.
async fn claim_from_pool(
    state: &AppState,
    caller: &Caller,
    pool: &Pool,
    name: &ServerName,
    spec: &DevServerSpec,
) -> Result<Option<ServerView>, ApiError> {
    let fresh = new_server(name, spec.clone());
    // The same checks and the same answer for a taken name as a server made afresh.
    check_new(state, caller, &fresh)?;
    let claimant = Claimant {
        owner: caller.owner().map(|owner| owner.to_string()),
        display_name: name.display.clone(),
        id: Uuid::new_v4(),
    };
    let quota = Quota::for_caller(caller, &state.config);
    let (specs, statuses, candidates) = (state.specs.clone(), state.statuses.clone(), pool.clone());
    let claimed = tokio::task::spawn_blocking(move || {
        pool::claim::claim(&specs, &statuses, &candidates, &quota, &claimant)
    })
    .await
    .map_err(|err| ApiError::Internal(err.to_string()))??;
    let Some(claimed) = claimed else {
        return Ok(None);
    };
    state.rescan.notify_one();
    let revision = claimed.revision.clone();
    let status = wait::converge(
        state,
        &claimed.name,
        "to be handed over",
        |status| match status {
            // Settled: running (under `isolation.run_as: owner`, again as its owner's
            // user), or down if that restart failed; the server is the caller's either way.
            Some(status)
                if wait::observed(state, status, &revision)
                    && !matches!(
                        status.phase,
                        Phase::Pending | Phase::Provisioning | Phase::Starting | Phase::Stopping
                    ) =>
            {
                Verdict::Done(status.clone())
            }
            Some(_) => Verdict::Wait,
            None => Verdict::Failed(format!("`{}` was deleted meanwhile", claimed.name)),
        },
    )
    .await?;
    tracing::info!(server = %claimed.name, name = %name.display, template = %pool.template.name,
        "pool server claimed");
    Ok(Some(ServerView::new(&status, state)))
}

/// Creates a stopped server with nothing but a name (multi-step creation, step 1).
pub async fn create_metadata(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateMetadata>,
) -> Result<Created<ServerView>, ApiError> {
    let name = names::parse(&body.name)?;
    create_server(&state, &caller, name, stopped_spec())
        .await
        .map(Created)
}

/// A form field holding a JSON array of strings (absent = empty).
fn json_list(form: &upload::Form, name: &str) -> Result<Vec<String>, ApiError> {
    match form.field(name) {
        Some(text) => serde_json::from_str(text).map_err(|err| {
            ApiError::BadRequest(format!("`{name}` must be a JSON array of strings: {err}"))
        }),
        None => Ok(Vec::new()),
    }
}

fn stopped_spec() -> DevServerSpec {
    DevServerSpec {
        state: DesiredState::Stopped,
        port: None,
        extension_groups: Vec::new(),
        extensions: Vec::new(),
        user_settings: SettingsMap::new(),
        workspace: None,
        template: None,
        env: Default::default(),
        restart_policy: Default::default(),
        idle_timeout: None,
        resources: None,
        runtime: None,
    }
}

/// Checks what the caller may ask for, writes the spec owned by the caller (with a
/// free port when it asks for none), and waits until the controller lists the server.
async fn create_server(
    state: &AppState,
    caller: &Caller,
    name: ServerName,
    spec: DevServerSpec,
) -> Result<ServerView, ApiError> {
    let mut server = new_server(&name, spec);
    check_new(state, caller, &server)?;
    server.metadata.owner = caller.owner().map(|owner| owner.to_string());
    let specs = state.specs.clone();
    let quota = Quota::for_caller(caller, &state.config);
    let resolved =
        tokio::task::spawn_blocking(move || specs.create(&server, quota, NewPort::PickFree))
            .await
            .map_err(|err| ApiError::Internal(err.to_string()))??;
    state.rescan.notify_one();
    let revision = resolved.revision.clone();
    let status = wait::converge(state, &name.slug, "to be listed", |status| match status {
        Some(status) if wait::observed(state, status, &revision) => Verdict::Done(status.clone()),
        _ => Verdict::Wait,
    })
    .await?;
    Ok(ServerView::new(&status, state))
}

/// The spec of a new server named `name`, nobody's yet.
fn new_server(name: &ServerName, spec: DevServerSpec) -> DevServer {
    DevServer {
        api_version: ApiVersion::V1,
        kind: Kind::DevServer,
        metadata: Metadata {
            name: name.slug.clone(),
            display_name: Some(name.display.clone()),
            id: Some(Uuid::new_v4()),
            owner: None,
            labels: Default::default(),
            annotations: Default::default(),
        },
        spec,
    }
}

/// Whether the caller may create `server`: its name is free, and it asks for nothing
/// the caller may not set.
fn check_new(state: &AppState, caller: &Caller, server: &DevServer) -> Result<(), ApiError> {
    let slug = &server.metadata.name;
    if state.specs.path(slug).exists() {
        return Err(ApiError::Conflict(format!(
            "a server named `{slug}` already exists"
        )));
    }
    access::check_new_name(caller, slug, |name| {
        DataRoots::of(&state.config).hold_data_of(name)
    })?;
    access::check_create(caller, server, &state.upload_path(slug))
}

impl From<CreateError> for ApiError {
    fn from(err: CreateError) -> Self {
        match err {
            // The cap is a state of the server set, like a name that is taken.
            CreateError::Full { .. } | CreateError::OwnerFull { .. } => {
                ApiError::Conflict(err.to_string())
            }
            CreateError::File(err) => err.into(),
        }
    }
}
