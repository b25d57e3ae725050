//! `PUT /specs/{name}`: create or replace a server's whole spec (what `devbox apply
//! --server` sends). Checked like any spec file before it is written; a new name past
//! `controller.max_servers` is refused (409), and so is a port another spec file pins
//! or another server runs on (the spec writer's check, under its lock). A spec without
//! a port is written without one. `GET /specs/{name}`: the spec as its file holds it
//! (what `devbox diff --server` compares with), to its owner and admins.

use axum::Json;
use axum::extract::{Path, State};
use schemars::JsonSchema;
use serde::Deserialize;

use super::AppState;
use super::access;
use super::extract::JsonBody;
use super::views::{Envelope, ServerView};
use super::wait::{self, Verdict};
use crate::data_dirs::DataRoots;
use crate::http::ApiError;
use crate::identity::{Caller, UserName};
use crate::spec::DevServer;
use crate::spec_files::{CreateError, NewPort, Quota, SpecFileError};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SpecName {
    /// The spec's `metadata.name` (its file name).
    pub name: String,
}

/// The spec of server `name`; 404 for a server the caller may not see, as everywhere.
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(SpecName { name }): Path<SpecName>,
) -> Result<Json<DevServer>, ApiError> {
    // Checked before it names a file: `..%2F` decodes to a path.
    if !crate::spec::is_valid_name(&name) {
        return Err(ApiError::BadRequest(format!(
            "invalid server name {name:?}"
        )));
    }
    // A user learns nothing of a file that is not theirs (not even that it does not
    // parse): their own servers are known by their status before the file is read.
    if !caller.is_admin() {
        state.find(&caller, &name)?;
    }
    let specs = state.specs.clone();
    let file_name = name.clone();
    let server = tokio::task::spawn_blocking(move || specs.read(&file_name))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))??;
    let owner = (server.metadata.owner.as_deref()).and_then(|o| UserName::parse(o).ok());
    if !caller.may_use(owner.as_ref()) {
        return Err(ApiError::NotFound(format!(
            "no spec file for server `{name}`"
        )));
    }
    Ok(Json(server))
}

/// Writes the spec of server `name` (creating or replacing it) and answers once the
/// controller has acted on it.
pub async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    Path(SpecName { name }): Path<SpecName>,
    JsonBody(mut server): JsonBody<DevServer>,
) -> Result<Json<Envelope<ServerView>>, ApiError> {
    if server.metadata.name != name {
        return Err(ApiError::BadRequest(format!(
            "metadata.name `{}` does not match the path's `{name}`",
            server.metadata.name
        )));
    }
    // A user writes only their own servers' specs, and only what they may create.
    let own_upload = state.upload_path(&name);
    access::check_create(&caller, &server, &own_upload)?;
    if !state.specs.path(&name).exists() {
        access::check_new_name(&caller, &name, |name| {
            DataRoots::of(&state.config).hold_data_of(name)
        })?;
    }
    if let Caller::User(user) = &caller {
        server.metadata.owner = Some(user.to_string());
    }
    let quota = Quota::for_caller(&caller, &state.config);
    // Replacing an existing spec: a user's only if the file, as it is under the lock,
    // is theirs; anyone else's is as good as not there (404).
    let owner = caller.owner().map(ToString::to_string);
    let specs = state.specs.clone();
    let (resolved, created) =
        tokio::task::spawn_blocking(
            move || match specs.create(&server, quota, NewPort::AsGiven) {
                Ok(resolved) => Ok((resolved, true)),
                Err(CreateError::File(SpecFileError::Exists(_))) => {
                    let name = server.metadata.name.clone();
                    let theirs =
                        |current: &DevServer| owner.is_none() || current.metadata.owner == owner;
                    specs
                        .update_where(&name, theirs, move |current| *current = server)
                        .map(|r| (r, false))
                        .map_err(CreateError::from)
                }
                Err(err) => Err(err),
            },
        )
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))??;
    state.rescan.notify_one();
    let revision = resolved.revision.clone();
    let status = wait::converge(&state, &name, "to see the spec", |status| match status {
        Some(status) if wait::observed(&state, status, &revision) => Verdict::Done(status.clone()),
        _ => Verdict::Wait,
    })
    .await?;
    let message = if created { "created" } else { "configured" };
    Ok(Json(Envelope::new(
        message.to_owned(),
        ServerView::new(&status, &state),
    )))
}
