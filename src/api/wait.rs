//! Waiting for the controller: an API call that wrote a spec answers once the
//! controller has acted on that revision of it, or fails with what it saw.

use std::time::Duration;

use super::AppState;
use crate::http::ApiError;
use crate::status::{Phase, ServerStatus};

/// What a waiter concludes from the current status of its server.
pub enum Verdict<T> {
    Done(T),
    Failed(String),
    Wait,
}

/// Polls server `name`'s status on every change until `judge` decides, or the
/// configured request timeout passes. `doing` names the wait in the timeout message
/// ("to start").
pub async fn converge<T>(
    state: &AppState,
    name: &str,
    doing: &str,
    judge: impl Fn(Option<&ServerStatus>) -> Verdict<T>,
) -> Result<T, ApiError> {
    let timeout: Duration = state.config.server.request_timeout.get();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = state.statuses.subscribe();
    loop {
        changes.borrow_and_update();
        let status = state.statuses.get(name);
        match judge(status.as_ref()) {
            Verdict::Done(value) => return Ok(value),
            Verdict::Failed(reason) => return Err(ApiError::Internal(reason)),
            Verdict::Wait => {}
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(ApiError::Internal("devbox is shutting down".into()));
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let now = status.map_or_else(|| "no status yet".to_owned(), |s| describe(&s));
                return Err(ApiError::Internal(format!(
                    "timed out after {} waiting for `{name}` {doing} (now {now})",
                    humantime::format_duration(timeout)
                )));
            }
        }
    }
}

/// Whether the controller has acted on spec `revision` of this server, or on one
/// written after it (it may skip straight to the newest of several quick writes).
pub fn observed(state: &AppState, status: &ServerStatus, revision: &str) -> bool {
    status
        .observed_revision
        .as_deref()
        .is_some_and(|seen| state.specs.is_at_or_after(&status.name, seen, revision))
}

/// The phase and message of a status, for error messages.
pub fn describe(status: &ServerStatus) -> String {
    let phase = format!("{:?}", status.phase).to_lowercase();
    match &status.message {
        Some(message) => format!("{phase}: {message}"),
        None => phase,
    }
}

/// The verdict for "runs spec `revision`": running is done; failed, invalid, or
/// stopped by a later change is a failure that names the phase and reason.
pub fn running(
    state: &AppState,
    status: Option<&ServerStatus>,
    revision: &str,
) -> Verdict<Option<u32>> {
    let Some(status) = status else {
        return Verdict::Failed("the server was deleted meanwhile".into());
    };
    if !observed(state, status, revision) {
        return Verdict::Wait;
    }
    match status.phase {
        Phase::Running => Verdict::Done(status.local_process().map(|p| p.pid)),
        Phase::Failed | Phase::Invalid => Verdict::Failed(format!(
            "`{}` failed to start ({})",
            status.name,
            describe(status)
        )),
        Phase::Stopped => {
            Verdict::Failed(format!("`{}` was stopped by a later change", status.name))
        }
        _ => Verdict::Wait,
    }
}

/// The verdict for "stopped at spec `revision`".
pub fn stopped(state: &AppState, status: Option<&ServerStatus>, revision: &str) -> Verdict<()> {
    let Some(status) = status else {
        return Verdict::Failed("the server was deleted meanwhile".into());
    };
    if !observed(state, status, revision) {
        return Verdict::Wait;
    }
    match status.phase {
        Phase::Stopped if status.instance.is_none() => Verdict::Done(()),
        Phase::Running => Verdict::Failed(format!(
            "`{}` was started again by a later change",
            status.name
        )),
        _ => Verdict::Wait,
    }
}
