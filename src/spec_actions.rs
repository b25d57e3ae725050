//! Start, stop and restart as edits of a spec file: what the API's lifecycle routes and
//! the CLI's `start`, `stop` and `restart` write (through [`crate::spec_files`]), defined
//! once so that both ask the controller for exactly the same thing.

use crate::spec::{DesiredState, DevServer, RESTARTED_AT_ANNOTATION};
use crate::status::Phase;

/// One change of a server's desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecAction {
    /// `state: running`; `fresh` also marks the spec restarted, so that a server that
    /// is down for a reason the spec does not show (failed, culled for idleness, halted
    /// by its restart policy) gets a new attempt.
    Start { fresh: bool },
    /// `state: running` and a new process even when nothing changed.
    Restart,
    /// `state: stopped`.
    Stop,
}

impl SpecAction {
    /// The start of a server whose current phase is `phase` (`None`: no status yet):
    /// fresh unless it runs.
    pub fn start(phase: Option<Phase>) -> Self {
        Self::Start {
            fresh: phase != Some(Phase::Running),
        }
    }

    /// Applies the change to `server`.
    pub fn apply(self, server: &mut DevServer) {
        match self {
            Self::Start { fresh } => {
                server.spec.state = DesiredState::Running;
                if fresh {
                    bump_restart(server);
                }
            }
            Self::Restart => {
                server.spec.state = DesiredState::Running;
                bump_restart(server);
            }
            Self::Stop => server.spec.state = DesiredState::Stopped,
        }
    }
}

/// Marks the spec as restarted now: a change the controller acts on even when nothing
/// else changed (the `kubectl rollout restart` way).
pub fn bump_restart(server: &mut DevServer) {
    let now = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    server
        .metadata
        .annotations
        .insert(RESTARTED_AT_ANNOTATION.to_owned(), now);
}
