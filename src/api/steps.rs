//! Multi-step creation: `install-extensions`, `install-extension`,
//! `apply-group-settings` and `clone-workspace` edit a server's spec. A running server
//! restarts to apply the change (the answer waits for it); a stopped one applies it at
//! its next start.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access;
use super::extract::JsonBody;
use super::extract::ServerId;
use super::upload;
use super::views::Envelope;
use super::wait::{self, Verdict};
use crate::config::SettingsMap;
use crate::http::ApiError;
use crate::identity::Caller;
use crate::spec::{DesiredState, ServerSpec};
use crate::status::{ExtensionStatus, Phase, ServerStatus};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct InstallExtensions {
    pub extensions: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct InstallExtension {
    pub extension: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ApplyGroup {
    #[serde(rename = "groupName")]
    pub group_name: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ExtensionsData {
    /// Every extension the server's spec now lists.
    pub extensions: Vec<String>,
    /// Outcome of each install, once the server has started with them.
    pub results: Vec<ExtensionStatus>,
    /// Whether they are installed yet (a stopped server installs them when it starts).
    pub applied: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GroupData {
    pub group: String,
    pub extensions: Vec<String>,
    pub user_settings: SettingsMap,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkspaceData {
    pub workspace_path: String,
    /// `git` or `zip`.
    pub source: String,
}

/// Adds extensions to a server.
pub async fn install_extensions(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
    JsonBody(body): JsonBody<InstallExtensions>,
) -> Result<Json<Envelope<ExtensionsData>>, ApiError> {
    add_extensions(&state, &caller, &id, body.extensions).await
}

/// Adds one extension to a server.
pub async fn install_extension(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
    JsonBody(body): JsonBody<InstallExtension>,
) -> Result<Json<Envelope<ExtensionsData>>, ApiError> {
    add_extensions(&state, &caller, &id, vec![body.extension]).await
}

/// Adds an extension group (its extensions and user settings) to a server.
pub async fn apply_group_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
    JsonBody(body): JsonBody<ApplyGroup>,
) -> Result<Json<Envelope<GroupData>>, ApiError> {
    let status = state.find(&caller, &id)?;
    let group = state
        .config
        .extension_groups
        .get(&body.group_name)
        .ok_or_else(|| {
            ApiError::BadRequest(format!("unknown extension group `{}`", body.group_name))
        })?
        .clone();
    let name = body.group_name.clone();
    let spec = state
        .edit(&status.name, move |server| {
            if !server.spec.extension_groups.contains(&name) {
                server.spec.extension_groups.push(name);
            }
        })
        .await?;
    settle(&state, &status, &spec).await?;
    Ok(Json(Envelope::new(
        "Group settings applied".to_owned(),
        GroupData {
            group: body.group_name,
            extensions: group.extensions,
            user_settings: group.user_settings,
        },
    )))
}

/// Sets a server's workspace to a git repository (`github_url`) or an uploaded zip
/// archive (`zip_file`, with the optional `zip_strip_top_level`). A workspace that
/// already holds files is never replaced.
pub async fn clone_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Envelope<WorkspaceData>>, ApiError> {
    let status = state.find(&caller, &id)?;
    let mut form = upload::read(&state, multipart).await?;
    let workspace_dir = crate::data_dirs::workspace_dir(state.statuses.state_dir(), &status.name);
    if std::fs::read_dir(&workspace_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ApiError::Conflict(format!(
            "the workspace of `{}` already holds files; it is never replaced",
            status.name
        )));
    }
    let upload_target = state.upload_path(&status.name);
    let workspace = upload::workspace(&state, &form, &upload_target).await?;
    let source = if workspace.git.is_some() {
        "git"
    } else {
        "zip"
    };
    // The archive is in place before the spec names it.
    form.keep_zip(&upload_target)?;
    let spec = state
        .edit(&status.name, move |server| {
            server.spec.workspace = Some(workspace)
        })
        .await?;
    settle(&state, &status, &spec).await?;
    Ok(Json(Envelope::new(
        "Workspace configured".to_owned(),
        WorkspaceData {
            workspace_path: workspace_dir.to_string_lossy().into_owned(),
            source: source.into(),
        },
    )))
}

/// Adds `extensions` (marketplace ids or `.vsix` files) to a server: admins only, as
/// when creating one (users add the config's extension groups).
async fn add_extensions(
    state: &AppState,
    caller: &Caller,
    id: &str,
    extensions: Vec<String>,
) -> Result<Json<Envelope<ExtensionsData>>, ApiError> {
    let status = state.find(caller, id)?;
    access::admin_only(
        caller,
        "install single extensions (users apply extension groups)",
    )?;
    if extensions.is_empty() {
        return Err(ApiError::BadRequest("no extensions given".into()));
    }
    let spec = state
        .edit(&status.name, move |server| {
            for extension in extensions {
                if !server.spec.extensions.contains(&extension) {
                    server.spec.extensions.push(extension);
                }
            }
        })
        .await?;
    let applied = settle(state, &status, &spec).await?;
    let results = applied
        .as_ref()
        .map(|s| s.extension_results.clone())
        .unwrap_or_default();
    let message = if applied.is_some() {
        "Extensions installed"
    } else {
        "Extensions added; they are installed when the server starts"
    };
    Ok(Json(Envelope::new(
        message.to_owned(),
        ExtensionsData {
            extensions: spec
                .extensions
                .iter()
                .map(crate::provision::ExtensionRef::label)
                .collect(),
            results,
            applied: applied.is_some(),
        },
    )))
}

/// Waits for the controller to act on an edited spec: a running server restarts with it
/// (the status once it runs again); a stopped one has nothing to do (`None`).
async fn settle(
    state: &AppState,
    before: &ServerStatus,
    spec: &ServerSpec,
) -> Result<Option<ServerStatus>, ApiError> {
    let revision = spec.revision.clone();
    if spec.state == DesiredState::Running && before.phase == Phase::Running {
        wait::converge(
            state,
            &spec.name,
            "to restart with the change",
            |s| match wait::running(state, s, &revision) {
                Verdict::Done(_) => Verdict::Done(s.cloned()),
                Verdict::Failed(why) => Verdict::Failed(why),
                Verdict::Wait => Verdict::Wait,
            },
        )
        .await
    } else {
        wait::converge(state, &spec.name, "to see the change", |s| match s {
            Some(status) if wait::observed(state, status, &revision) => Verdict::Done(None),
            _ => Verdict::Wait,
        })
        .await
    }
}
