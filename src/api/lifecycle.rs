//! `POST /servers/{id}/start`, `/stop`, `/restart` and `DELETE /servers/{id}`: edit the
//! spec file (state, or the restart annotation, as [`crate::spec_actions`] says), then answer with what the controller
//! did: running with its pid once healthy, stopped once every process is gone, or a 500
//! naming the phase and reason.

use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use super::extract::ServerId;
use super::views::{ActionData, Done, Envelope};
use super::wait::{self, Verdict};
use crate::http::ApiError;
use crate::identity::Caller;
use crate::spec::ServerSpec;
use crate::spec_actions::SpecAction;
use crate::status::ServerStatus;

/// Starts a server and answers once it is healthy.
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
) -> Result<Json<Envelope<ActionData>>, ApiError> {
    let status = state.find(&caller, &id)?;
    // A server that is not running (failed, stopped for idleness) gets a fresh attempt.
    let action = SpecAction::start(Some(status.phase));
    run(&state, &status.name, "Server started", action).await
}

/// Restarts a server (a new process even when nothing changed) and answers once healthy.
pub async fn restart(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
) -> Result<Json<Envelope<ActionData>>, ApiError> {
    let status = state.find(&caller, &id)?;
    run(
        &state,
        &status.name,
        "Server restarted",
        SpecAction::Restart,
    )
    .await
}

/// Stops a server and answers once all its processes are gone.
pub async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
) -> Result<Json<Envelope<ActionData>>, ApiError> {
    let status = state.find(&caller, &id)?;
    let spec = state
        .edit(&status.name, |server| SpecAction::Stop.apply(server))
        .await?;
    let revision = spec.revision;
    wait::converge(&state, &status.name, "to stop", |s| {
        wait::stopped(&state, s, &revision)
    })
    .await?;
    Ok(Json(Envelope::new(
        "Server stopped".to_owned(),
        ActionData {
            id: status.id,
            status: "stopped".into(),
            pid: None,
        },
    )))
}

/// Deletes a server's spec and answers once the server is stopped and forgotten.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
) -> Result<Json<Done>, ApiError> {
    let status = state.find(&caller, &id)?;
    let specs = state.specs.clone();
    let name = status.name.clone();
    tokio::task::spawn_blocking(move || specs.delete(&name))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))??;
    state.rescan.notify_one();
    wait::converge(&state, &status.name, "to be deleted", |s| match s {
        None => Verdict::Done(()),
        Some(_) => Verdict::Wait,
    })
    .await?;
    forget_seat(&state, &status);
    Ok(Json(Done::new("Server deleted")))
}

/// A deleted server's seat links go with it, and an owner left with no server is
/// signed out everywhere.
fn forget_seat(state: &AppState, deleted: &ServerStatus) {
    if let Err(err) = state.seats.revoke_server(&deleted.name) {
        tracing::warn!(server = %deleted.name, %err, "cannot revoke the seat links of a deleted server");
    }
    if let Some(owner) = &deleted.owner {
        let owns_more = !state
            .statuses
            .filter_map_all(|s| (s.owner.as_ref() == Some(owner)).then_some(()))
            .is_empty();
        if !owns_more {
            state.sessions.close_user(owner);
        }
    }
}

async fn run(
    state: &AppState,
    name: &str,
    message: &str,
    action: SpecAction,
) -> Result<Json<Envelope<ActionData>>, ApiError> {
    let spec = state.edit(name, move |server| action.apply(server)).await?;
    let revision = spec.revision.clone();
    let pid = wait::converge(state, name, "to start", |s| {
        wait::running(state, s, &revision)
    })
    .await?;
    Ok(Json(Envelope::new(
        message.to_owned(),
        ActionData {
            id: spec.id,
            status: "running".into(),
            pid,
        },
    )))
}

/// Sets server `name`'s spec to run (`fresh`: a new attempt even if nothing changed,
/// for a failed or culled server) and returns the new spec without waiting for the
/// controller.
pub async fn ask_to_run(state: &AppState, name: &str, fresh: bool) -> Result<ServerSpec, ApiError> {
    let action = SpecAction::Start { fresh };
    state.edit(name, move |server| action.apply(server)).await
}
