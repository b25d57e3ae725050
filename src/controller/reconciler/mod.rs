//! One server's reconciler task: owns that server's process and carries out what
//! [`decide`] says, recording every step in the server's status and log.
//!
//! The task wakes when its desired state changes, its process exits, a scheduled
//! retry is due, a health check is due, or devbox shuts down; each time it re-reads
//! desired and observed state and acts on the difference. The actions live beside this
//! file: `start` (provision, launch, wait for health), `stop` (stop, exits, failures,
//! forgetting) and `health` (health checks and idle culling).

mod health;
mod run_as;
mod start;
mod stop;

pub(super) use start::{installer_settings, instance_owner};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::Context;
use super::decide::{Action, Observed, Target, decide};
use super::scan::Desired;
use crate::identity::UserName;
use crate::logs::{Follower, Level, ServerIdent};
use crate::provision::{ExtensionRef, WorkspaceSource};
use crate::runtime::{Instance, Runtime, wait_exit};
use crate::spec::{DesiredState, ServerSpec, id_for_name};
use crate::status::{Phase, ServerStatus, server_dir};

/// Runs the reconciler of server `name` until the server is forgotten or devbox stops.
pub async fn run<R: Runtime>(
    name: String,
    desired: watch::Receiver<Desired>,
    ctx: Arc<Context<R>>,
) {
    let span = tracing::info_span!("server", server = %name, owner = tracing::field::Empty);
    let mut task = ServerTask::new(name, desired, ctx);
    if let Some(owner) = &task.description.owner {
        span.record("owner", owner.as_str());
    }
    async move {
        task.adopt_recorded().await;
        task.main_loop().await;
    }
    .instrument(span)
    .await;
}

/// A restart scheduled after a failure of the spec with `hash`.
struct Retry {
    at: Instant,
    hash: String,
}

/// What a server's status says of it besides where it is, from the last spec applied
/// (or, before one is, from its status).
#[derive(Debug, Clone)]
struct Description {
    display_name: String,
    /// Whose server this is (`metadata.owner`).
    owner: Option<UserName>,
    /// The template it was made from (`spec.template.name`).
    template: Option<String>,
}

impl Description {
    fn of_spec(spec: &ServerSpec) -> Self {
        Self {
            display_name: spec.display_name.clone(),
            owner: spec.owner.clone(),
            template: spec.template.clone(),
        }
    }

    fn of_status(status: &ServerStatus) -> Self {
        Self {
            display_name: status.display_name.clone(),
            owner: status.owner.clone(),
            template: status.template.clone(),
        }
    }

    fn write_into(&self, status: &mut ServerStatus) {
        status.display_name.clone_from(&self.display_name);
        status.owner.clone_from(&self.owner);
        status.template.clone_from(&self.template);
    }
}

struct ServerTask<R> {
    ctx: Arc<Context<R>>,
    ident: ServerIdent,
    description: Description,
    /// `<state_dir>/servers/<name>`.
    dir: PathBuf,
    desired: watch::Receiver<Desired>,
    instance: Option<Instance>,
    tail: Option<Follower>,
    /// The last valid spec acted on; an invalid spec file leaves the server on it.
    applied: Option<Arc<ServerSpec>>,
    /// Hash of the spec the running process was started from.
    applied_hash: Option<String>,
    /// Stay down while the spec has this revision (see `ServerStatus::halted_revision`).
    halted_revision: Option<String>,
    retry: Option<Retry>,
    /// The spec hash the status's crash counter counts failures of.
    failing_hash: Option<String>,
    /// The port the server had last, preferred when it starts again.
    last_port: Option<u16>,
    healthy_since: Option<Instant>,
    health_failures: u32,
    /// Length of the code-server log when the current process was launched: failure
    /// reasons quote only what came after.
    launch_log_offset: u64,
    /// The Unix user the current start's instance runs as (`isolation.run_as: owner`).
    account: Option<crate::isolation::Account>,
}

impl<R: Runtime> ServerTask<R> {
    fn new(name: String, desired: watch::Receiver<Desired>, ctx: Arc<Context<R>>) -> Self {
        let dir = server_dir(ctx.statuses.state_dir(), &name);
        let status = ctx.statuses.get(&name);
        let (id, description) = match &*desired.borrow() {
            Desired::Spec(spec) => (spec.id, Description::of_spec(spec)),
            _ => status.as_ref().map_or_else(
                || {
                    let description = Description {
                        display_name: name.clone(),
                        owner: None,
                        template: None,
                    };
                    (id_for_name(&name), description)
                },
                |s| (s.id, Description::of_status(s)),
            ),
        };
        Self {
            ident: ServerIdent { id, name },
            description,
            dir,
            desired,
            instance: None,
            tail: None,
            applied: None,
            applied_hash: None,
            halted_revision: status.as_ref().and_then(|s| s.halted_revision.clone()),
            retry: None,
            failing_hash: None,
            last_port: status.as_ref().and_then(|s| s.port),
            healthy_since: None,
            health_failures: 0,
            launch_log_offset: 0,
            account: None,
            ctx,
        }
    }

    fn name(&self) -> &str {
        &self.ident.name
    }

    fn event(&self, level: Level, message: impl Into<String>) {
        self.ctx.logs.event(&self.ident, &self.dir, level, message);
    }

    /// Changes this server's status (persisted in the background; a failed write, on a
    /// full disk, is logged by the store and never blocks the server).
    fn set_status(&self, change: impl FnOnce(&mut ServerStatus)) {
        let (name, id, description) = (
            self.name().to_owned(),
            self.ident.id,
            self.description.clone(),
        );
        self.ctx.statuses.update(
            &self.ident.name,
            || ServerStatus::new(&name, id, &description.display_name),
            |status| {
                status.id = id;
                description.write_into(status);
                change(status);
            },
        );
    }

    fn status(&self) -> Option<ServerStatus> {
        self.ctx.statuses.get(self.name())
    }

    /// Takes over a process recorded by an earlier devbox, or cleans up after it.
    async fn adopt_recorded(&mut self) {
        let Some(status) = self.status() else {
            self.event(Level::Info, "created");
            return;
        };
        let Some(record) = status.process else {
            return;
        };
        match self.ctx.runtime.adopt(&record) {
            Some(instance) => {
                self.applied_hash = status.applied_hash.clone();
                if let Some(port) = status.port {
                    self.ctx.ports.claim(self.name(), port);
                }
                self.instance = Some(instance);
                self.healthy_since = Some(Instant::now());
                self.start_tail();
                crate::metrics::METRICS.controller.adoptions.inc();
                let port = status
                    .port
                    .map_or_else(|| "?".to_owned(), |p| p.to_string());
                self.event(
                    Level::Info,
                    format!("adopted running process {} on port {port}", record.pid),
                );
                self.set_status(|s| {
                    if s.phase != Phase::Running {
                        s.phase = Phase::Starting;
                    }
                });
            }
            None => {
                self.ctx.runtime.clean_up(&record).await;
                self.event(
                    Level::Warn,
                    format!("process {} ended while devbox was away", record.pid),
                );
                self.set_status(|s| {
                    s.process = None;
                    s.started_at = None;
                    s.applied_hash = None;
                    s.phase = Phase::Stopped;
                });
            }
        }
    }

    async fn main_loop(&mut self) {
        let mut shutdown = self.ctx.shutdown.clone();
        let health_interval = self.ctx.config.controller.health_interval.get();
        loop {
            if *shutdown.borrow() {
                self.on_shutdown().await;
                return;
            }
            let desired = self.desired.borrow_and_update().clone();
            if self.reconcile(&desired).await {
                return;
            }
            let retry_at = self.retry.as_ref().map(|r| r.at);
            let running = self.instance.is_some();
            let mut exited = self.instance.as_ref().map(|i| i.exited.clone());
            tokio::select! {
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        // The controller is gone without a shutdown signal: leave things as they are.
                        return;
                    }
                }
                exit = async {
                    match exited.as_mut() {
                        Some(rx) => wait_exit(rx).await,
                        None => std::future::pending().await,
                    }
                } => self.on_exit(exit).await,
                () = async {
                    match retry_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => self.retry = None,
                () = tokio::time::sleep(health_interval), if running => self.check_health().await,
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Acts once on the difference between `desired` and what runs. Returns true when
    /// the server has been forgotten and the task should end.
    async fn reconcile(&mut self, desired: &Desired) -> bool {
        let spec: Option<Arc<ServerSpec>> = match desired {
            Desired::Spec(spec) => {
                self.ident.id = spec.id;
                let owner_before = self.description.owner.clone();
                self.description = Description::of_spec(spec);
                // Recorded on a change only: a text log writes every record of a field.
                if let Some(owner) = &self.description.owner
                    && self.description.owner != owner_before
                {
                    tracing::Span::current().record("owner", owner.as_str());
                }
                self.set_status(|s| s.spec_errors.clear());
                Some(spec.clone())
            }
            Desired::Invalid(diags) => {
                self.record_spec_errors(diags);
                self.applied.clone()
            }
            Desired::Deleted => None,
        };
        let target = match (desired, &spec) {
            (Desired::Deleted, _) => Target::Deleted,
            (_, Some(spec)) => Target::Spec(spec),
            (_, None) => Target::Unknown,
        };
        let observed = Observed {
            running: self.instance.is_some(),
            applied_hash: self.applied_hash.as_deref(),
            halted_revision: self.halted_revision.as_deref(),
            retry_for_hash: self.retry.as_ref().map(|r| r.hash.as_str()),
        };
        match (decide(target, &observed), spec) {
            (Action::Forget, _) => return self.forget().await,
            (Action::Stop, Some(spec)) => {
                self.stop("stopped", None).await;
                self.settle_stopped(&spec);
            }
            (Action::Start, Some(spec)) => self.start(spec).await,
            (Action::Restart, Some(spec)) => {
                self.event(Level::Info, "spec changed; restarting to apply it");
                crate::metrics::METRICS
                    .controller
                    .restarts
                    .with_label_values(&["spec_change"])
                    .inc();
                self.stop("restarting", None).await;
                self.start(spec).await;
            }
            (Action::Nothing, Some(spec)) if spec.state == DesiredState::Stopped => {
                self.settle_stopped(&spec)
            }
            // Running from this very spec (e.g. adopted): remember it as applied.
            (Action::Nothing, Some(spec))
                if self.instance.is_some()
                    && self.applied_hash.as_deref() == Some(spec.hash.as_str()) =>
            {
                self.applied = Some(spec);
            }
            _ => {}
        }
        if let Desired::Spec(spec) = desired {
            let revision = spec.revision.clone();
            self.set_status(|s| s.observed_revision = Some(revision));
        }
        false
    }

    /// Shows why the spec file is not applied; the server stays as it is.
    fn record_spec_errors(&self, diags: &[crate::diagnostic::Diagnostic]) {
        let first = diags.first().map(ToString::to_string).unwrap_or_default();
        let known = self.status().is_some_and(|s| s.spec_errors == diags);
        if !known {
            self.event(Level::Error, format!("spec not applied: {first}"));
        }
        let never_applied = self.applied.is_none() && self.instance.is_none();
        self.set_status(|s| {
            s.spec_errors = diags.to_vec();
            if never_applied && matches!(s.phase, Phase::Pending | Phase::Invalid) {
                s.phase = Phase::Invalid;
                s.message = Some(first);
            }
        });
    }

    /// A stopped spec and no process: pending retries and halts end (the user has
    /// taken over) and the server is recorded as stopped.
    fn settle_stopped(&mut self, spec: &Arc<ServerSpec>) {
        self.retry = None;
        self.halted_revision = None;
        self.failing_hash = None;
        self.applied = Some(spec.clone());
        let extensions: Vec<String> = spec.extensions.iter().map(ExtensionRef::label).collect();
        let workspace = self.workspace_path(spec);
        self.set_status(|s| {
            s.phase = Phase::Stopped;
            s.message = None;
            s.next_retry_at = None;
            s.halted_revision = None;
            s.consecutive_crashes = 0;
            s.extensions = extensions;
            s.workspace_path = Some(workspace);
            s.port = spec.port;
        });
    }

    /// What a running server's status says when its spec asks for limits this host
    /// cannot enforce (the server runs all the same).
    fn limits_note(&self) -> Option<String> {
        let resources = self.applied.as_ref()?.resources;
        let why = self.ctx.runtime.limits_unenforced()?;
        limits_note(&resources, why)
    }

    fn workspace_path(&self, spec: &ServerSpec) -> PathBuf {
        match &spec.workspace {
            WorkspaceSource::Path(path) => path.clone(),
            _ => self.workspace_dir(),
        }
    }

    /// `<state_dir>/workspaces/<name>`: where managed workspaces live.
    fn workspace_dir(&self) -> PathBuf {
        self.ctx
            .statuses
            .state_dir()
            .join("workspaces")
            .join(self.name())
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("code-server.log")
    }

    fn start_tail(&mut self) {
        self.stop_tail();
        self.tail = Some(self.ctx.logs.follow(self.ident.clone(), self.log_file()));
    }

    fn stop_tail(&mut self) {
        if let Some(tail) = self.tail.take() {
            tail.stop();
        }
    }

    /// Whether a start of `spec` should be abandoned: devbox is shutting down, or the
    /// spec file now says stopped, is gone, or asks for something else.
    fn interrupted(&self, spec: &ServerSpec) -> bool {
        if *self.ctx.shutdown.borrow() {
            return true;
        }
        match &*self.desired.borrow() {
            Desired::Spec(wanted) => {
                wanted.state == DesiredState::Stopped || wanted.hash != spec.hash
            }
            Desired::Invalid(_) => false,
            Desired::Deleted => true,
        }
    }

    /// Resolves once [`Self::interrupted`] turns true.
    async fn until_interrupted(&self, spec: &ServerSpec) {
        let mut desired = self.desired.clone();
        let mut shutdown = self.ctx.shutdown.clone();
        while !self.interrupted(spec) {
            tokio::select! {
                changed = desired.changed() => if changed.is_err() { std::future::pending::<()>().await },
                changed = shutdown.changed() => if changed.is_err() { std::future::pending::<()>().await },
            }
        }
    }
}

/// `limits (memory 2 GiB) are not enforced: <why>`, for a spec with limits on a host
/// without cgroups.
fn limits_note(resources: &crate::resources::Resources, why: &str) -> Option<String> {
    (!resources.is_empty()).then(|| format!("limits ({resources}) are not enforced: {why}"))
}

/// Rounds a delay to whole milliseconds, for messages.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unenforced_limits_are_noted_only_when_set() {
        let limits: crate::resources::Resources =
            crate::yaml::from_str("{memory: 2GiB}").expect("limits");
        assert_eq!(
            limits_note(&limits, "no cgroup v1 memory controller").as_deref(),
            Some("limits (memory 2 GiB) are not enforced: no cgroup v1 memory controller")
        );
        assert_eq!(limits_note(&Default::default(), "whatever"), None);
    }
}
