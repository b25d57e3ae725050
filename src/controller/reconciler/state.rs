//! One server's state, owned by its reconciler task. The server's status (what the
//! API, the CLI and a restarted devbox read) is a projection of it, written whole
//! after every change: nothing is kept twice.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::diagnostic::Diagnostic;
use crate::identity::UserName;
use crate::runtime::Instance;
use crate::spec::ServerSpec;
use crate::status::{ExtensionStatus, InstanceRecord, Phase, ServerStatus};

/// What a server's status says of it besides where it is, from the last spec applied
/// (or, before one is, from its status).
#[derive(Debug, Clone)]
pub(super) struct Description {
    pub id: Uuid,
    pub display_name: String,
    /// Whose server this is (`metadata.owner`).
    pub owner: Option<UserName>,
    /// The template it was made from (`spec.template.name`).
    pub template: Option<String>,
    /// The template whose pool it waits in, unclaimed.
    pub pool: Option<String>,
}

impl Description {
    pub fn of_spec(spec: &ServerSpec) -> Self {
        Self {
            id: spec.id,
            display_name: spec.display_name.clone(),
            owner: spec.owner.clone(),
            template: spec.template.clone(),
            pool: spec.pool.clone(),
        }
    }
}

/// The instance serving the server, while one runs.
#[derive(Debug)]
pub(super) struct Live {
    pub instance: Instance,
    /// Hash of the spec it was started from.
    pub applied_hash: String,
    /// When it first answered its health check (adopted: when devbox took it over).
    pub healthy_since: Option<Instant>,
    /// Failed health checks in a row.
    pub health_failures: u32,
}

impl Live {
    pub fn healthy_for(&self) -> Option<Duration> {
        self.healthy_since.map(|at| at.elapsed())
    }
}

/// An instance an earlier devbox recorded, not looked at yet (see `recovery`).
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    pub record: InstanceRecord,
    pub applied_hash: Option<String>,
}

/// A restart scheduled after a failure of the spec with `hash`.
#[derive(Debug, Clone)]
pub(super) struct Retry {
    pub at: Instant,
    /// `at` on the wall clock (RFC 3339), for the status.
    pub at_wall: String,
    pub hash: String,
}

/// Failures in a row of one spec: a failure of another spec starts counting anew.
#[derive(Debug, Clone, Default)]
pub(super) struct Failures {
    /// `None`: counted by an earlier devbox, or reset.
    pub of_hash: Option<String>,
    pub in_a_row: u32,
}

impl Failures {
    /// Earlier failures in a row of the spec with `hash`.
    pub fn before(&self, hash: &str) -> u32 {
        if self.of_hash.as_deref() == Some(hash) {
            self.in_a_row
        } else {
            0
        }
    }
}

/// What a start shows while its steps run side by side (extension installs beside
/// code-server's boot), each through a shared reference: kept apart from the rest of
/// the state behind a lock, and folded into it when the start ends.
#[derive(Debug, Default)]
pub(super) struct StartProgress {
    pub message: Option<String>,
    pub extension_results: Option<Vec<ExtensionStatus>>,
}

/// Everything devbox knows about one server.
#[derive(Debug)]
pub(super) struct ServerState {
    pub name: String,
    pub description: Description,
    pub phase: Phase,
    /// Why it is in this phase (failure reason, current step).
    pub message: Option<String>,
    /// The route number it holds (running), or its spec pins (stopped).
    pub port: Option<u16>,
    pub live: Option<Live>,
    pub recorded: Option<Recorded>,
    /// The last valid spec acted on; an invalid spec file leaves the server on it.
    pub applied: Option<Arc<ServerSpec>>,
    /// When the current instance became healthy (RFC 3339).
    pub started_at: Option<String>,
    pub workspace_path: Option<PathBuf>,
    pub extensions: Vec<String>,
    pub extension_results: Vec<ExtensionStatus>,
    pub observed_revision: Option<String>,
    pub spec_errors: Vec<Diagnostic>,
    /// Restarts after failures since devbox first managed the server.
    pub restarts: u32,
    pub failures: Failures,
    pub last_exit: Option<String>,
    pub retry: Option<Retry>,
    /// Stay down while the spec has this revision (an exit the restart policy keeps
    /// down, or an idle cull).
    pub halted_revision: Option<String>,
    pub progress: Mutex<StartProgress>,
}

impl ServerState {
    /// A server devbox has not seen before.
    pub fn new(name: &str, description: Description) -> Self {
        Self {
            name: name.to_owned(),
            description,
            phase: Phase::Pending,
            message: None,
            port: None,
            live: None,
            recorded: None,
            applied: None,
            started_at: None,
            workspace_path: None,
            extensions: Vec::new(),
            extension_results: Vec::new(),
            observed_revision: None,
            spec_errors: Vec::new(),
            restarts: 0,
            failures: Failures::default(),
            last_exit: None,
            retry: None,
            halted_revision: None,
            progress: Mutex::default(),
        }
    }

    /// The state as the status an earlier devbox (of this version or an older one)
    /// left. A scheduled retry is not kept: the new devbox decides afresh.
    pub fn from_status(status: &ServerStatus) -> Self {
        Self {
            name: status.name.clone(),
            description: Description {
                id: status.id,
                display_name: status.display_name.clone(),
                owner: status.owner.clone(),
                template: status.template.clone(),
                pool: status.pool.clone(),
            },
            phase: status.phase,
            message: status.message.clone(),
            port: status.port,
            live: None,
            recorded: status.instance.clone().map(|record| Recorded {
                record,
                applied_hash: status.applied_hash.clone(),
            }),
            applied: None,
            started_at: status.started_at.clone(),
            workspace_path: status.workspace_path.clone(),
            extensions: status.extensions.clone(),
            extension_results: status.extension_results.clone(),
            observed_revision: status.observed_revision.clone(),
            spec_errors: status.spec_errors.clone(),
            restarts: status.restarts,
            failures: Failures {
                of_hash: None,
                in_a_row: status.consecutive_crashes,
            },
            last_exit: status.last_exit.clone(),
            retry: None,
            halted_revision: status.halted_revision.clone(),
            progress: Mutex::default(),
        }
    }

    /// The start's progress, to change or take.
    pub fn progress(&self) -> MutexGuard<'_, StartProgress> {
        // Two fields, each replaced whole: nothing a panicking holder leaves half-done.
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The port the server keeps while nothing runs: the one its spec pins, if any.
    pub fn pinned_port(&self) -> Option<u16> {
        self.applied.as_ref().and_then(|s| s.port)
    }

    pub fn applied_hash(&self) -> Option<&str> {
        match (&self.live, &self.recorded) {
            (Some(live), _) => Some(&live.applied_hash),
            (None, Some(recorded)) => recorded.applied_hash.as_deref(),
            (None, None) => None,
        }
    }

    /// What the status says.
    pub fn project(&self) -> ServerStatus {
        let description = &self.description;
        let process = match (&self.live, &self.recorded) {
            (Some(live), _) => Some(live.instance.record.clone()),
            (None, Some(recorded)) => Some(recorded.record.clone()),
            (None, None) => None,
        };
        let mut status = ServerStatus::new(&self.name, description.id, &description.display_name);
        status.owner.clone_from(&description.owner);
        status.template.clone_from(&description.template);
        status.pool.clone_from(&description.pool);
        status.phase = self.phase;
        status.message.clone_from(&self.message);
        status.port = self.port;
        status.instance = process;
        status.started_at.clone_from(&self.started_at);
        status.workspace_path.clone_from(&self.workspace_path);
        status.applied_hash = self.applied_hash().map(str::to_owned);
        status.extensions.clone_from(&self.extensions);
        status.extension_results.clone_from(&self.extension_results);
        status.observed_revision.clone_from(&self.observed_revision);
        status.spec_errors.clone_from(&self.spec_errors);
        status.restarts = self.restarts;
        status.consecutive_crashes = self.failures.in_a_row;
        status.last_exit.clone_from(&self.last_exit);
        status.next_retry_at = self.retry.as_ref().map(|r| r.at_wall.clone());
        status.halted_revision.clone_from(&self.halted_revision);
        let progress = self.progress();
        if let Some(message) = &progress.message {
            status.message = Some(message.clone());
        }
        if let Some(results) = &progress.extension_results {
            status.extension_results.clone_from(results);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status file as devbox wrote it before the state machine: every field it
    /// carries must come back out of the projection of the state read from it, so an
    /// upgrade neither loses nor rewrites what the previous devbox knew.
    #[test]
    fn a_status_survives_being_read_into_state_and_projected_back() {
        let json = r#"{
          "name": "alice", "id": "6f1c1f5e-3b55-4d59-9c39-7d1bd0d6c0a1",
          "display_name": "Alice", "owner": "alice", "template": "python",
          "phase": "running", "message": "limits are not enforced", "port": 8021,
          "process": {"pid": 4242, "pgid": 4242, "start_ticks": 77, "instance": "t-1",
                      "socket": "/var/lib/devbox/sockets/alice.sock"},
          "started_at": "2026-12-01T10:00:00.000Z", "workspace_path": "/w/alice",
          "applied_hash": "abc", "extensions": ["ms-python.python"],
          "extension_results": [{"extension": "ms-python.python", "state": "installed"}],
          "observed_revision": "r7", "restarts": 2, "consecutive_crashes": 1,
          "last_exit": "exit code 3", "halted_revision": "r6",
          "updated_at": "2026-12-01T10:00:01.000Z"
        }"#;
        let status: ServerStatus = serde_json::from_str(json).unwrap();
        let state = ServerState::from_status(&status);
        assert!(state.recorded.is_some(), "the process is to be adopted");
        let mut projected = state.project();
        projected.updated_at.clone_from(&status.updated_at);
        assert_eq!(projected, status);
    }
}
