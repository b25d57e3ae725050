//! One server's reconciler task: owns that server's state (`state::ServerState`,
//! whose projection is the server's status) and its instance, and carries out what
//! [`decide`](super::decide) says, recording every step in the state and the log.
//!
//! The task wakes when its desired state changes, its instance exits or is placed, a
//! scheduled retry is due, a health check is due, or devbox shuts down; each time it
//! re-reads desired and observed state and acts on the difference. The actions live
//! beside this file: `recovery` (adopting what an earlier devbox left, and the sweep at
//! devbox's start), `start` (provision, launch, wait for health), `placement` (an
//! instance a backend places itself), `password` (an instance that must ask for one),
//! `stop` (stop, exits, failures, forgetting), `health` (health checks and idle
//! culling) and `run_as` (an owner's Unix user).

mod health;
mod password;
mod placement;
mod recovery;
mod run_as;
mod start;
mod state;
mod stop;

pub(super) use recovery::{claim_recorded_ports, recall_recorded_passwords, sweep_unrecorded};
pub(super) use start::{installer_settings, instance_owner};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use super::Context;
use super::decide::{Action, Observed, RestartReason, Target, decide};
use super::scan::Desired;
use crate::data_dirs;
use crate::logs::{Follower, Level, ServerIdent};
use crate::provision::{ExtensionRef, WorkspaceSource};
use crate::runtime::{Backend, Runtime, wait_exit};
use crate::spec::{DesiredState, ServerSpec, id_for_name};
use crate::status::{Phase, server_dir};
use state::{Description, ServerState};

/// Runs the reconciler of server `name` until the server is forgotten or devbox stops.
pub async fn run<R: Runtime>(
    name: String,
    desired: watch::Receiver<Desired>,
    ctx: Arc<Context<R>>,
) {
    let span = tracing::info_span!("server", server = %name, owner = tracing::field::Empty);
    let mut task = ServerTask::new(name, desired, ctx);
    if let Some(owner) = &task.state.description.owner {
        span.record("owner", owner.as_str());
    }
    task.main_loop().instrument(span).await;
}

struct ServerTask<R> {
    ctx: Arc<Context<R>>,
    /// `<state_dir>/servers/<name>`.
    dir: PathBuf,
    desired: watch::Receiver<Desired>,
    state: ServerState,
    tail: Option<Follower>,
    /// The port the server had last, preferred when it starts again.
    last_port: Option<u16>,
    /// Length of the code-server log when the current instance was launched: failure
    /// reasons quote only what came after.
    launch_log_offset: u64,
    /// The Unix user the current start's instance runs as (`isolation.run_as: owner`).
    account: Option<crate::isolation::Account>,
}

impl<R: Runtime> ServerTask<R> {
    fn new(name: String, desired: watch::Receiver<Desired>, ctx: Arc<Context<R>>) -> Self {
        let dir = server_dir(ctx.statuses.state_dir(), &name);
        let state = match ctx.statuses.get(&name) {
            Some(status) => ServerState::from_status(&status),
            None => {
                let description = match &*desired.borrow() {
                    Desired::Spec(spec) => Description::of_spec(spec),
                    _ => Description {
                        id: id_for_name(&name),
                        display_name: name.clone(),
                        owner: None,
                        template: None,
                        pool: None,
                    },
                };
                ServerState::new(&name, description)
            }
        };
        Self {
            dir,
            desired,
            last_port: state.port,
            state,
            tail: None,
            launch_log_offset: 0,
            account: None,
            ctx,
        }
    }

    fn name(&self) -> &str {
        &self.state.name
    }

    fn ident(&self) -> ServerIdent {
        ServerIdent {
            id: self.state.description.id,
            name: self.state.name.clone(),
        }
    }

    /// Where the running instance is reached, once that is known.
    fn live_endpoint(&self) -> Option<crate::endpoint::Endpoint> {
        let live = self.state.live.as_ref()?;
        live.instance.record.endpoint(self.state.port)
    }

    fn event(&self, level: Level, message: impl Into<String>) {
        self.ctx
            .logs
            .event(&self.ident(), &self.dir, level, message);
    }

    /// Writes the server's status from its state (persisted in the background, when
    /// it changed; a failed write, on a full disk, is logged by the store and never
    /// blocks the server).
    fn publish(&self) {
        self.ctx.statuses.put(self.state.project());
    }

    async fn main_loop(&mut self) {
        if self.ctx.statuses.get(self.name()).is_none() {
            self.event(Level::Info, "created");
        }
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
            let retry_at = self.state.retry.as_ref().map(|r| r.at);
            let running = self.state.live.is_some();
            let mut exited = self.state.live.as_ref().map(|l| l.instance.exited.clone());
            let mut placement = self
                .state
                .live
                .as_ref()
                .and_then(|l| l.instance.placement.clone());
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
                } => self.on_exit(exit, "").await,
                // An adopted instance still waiting in a queue, placed meanwhile.
                Some(now) = async {
                    match placement.as_mut() {
                        Some(rx) => match rx.changed().await {
                            Ok(()) => Some(rx.borrow_and_update().clone()),
                            Err(_) => std::future::pending().await,
                        },
                        None => std::future::pending().await,
                    }
                } => self.on_placement(now),
                () = async {
                    match retry_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.state.retry = None;
                    self.publish();
                }
                () = tokio::time::sleep(health_interval), if running => self.check_health().await,
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Acts on the difference between `desired` and what runs until [`decide`] says
    /// there is nothing more to do now. Returns true when the server has been
    /// forgotten and the task should end.
    async fn reconcile(&mut self, desired: &Desired) -> bool {
        let spec: Option<Arc<ServerSpec>> = match desired {
            Desired::Spec(spec) => {
                let owner_before = self.state.description.owner.clone();
                self.state.description = Description::of_spec(spec);
                // Recorded on a change only: a text log writes every record of a field.
                if let Some(owner) = &self.state.description.owner
                    && self.state.description.owner != owner_before
                {
                    tracing::Span::current().record("owner", owner.as_str());
                }
                self.state.spec_errors.clear();
                Some(spec.clone())
            }
            Desired::Invalid(diags) => {
                self.record_spec_errors(diags);
                self.state.applied.clone()
            }
            Desired::Deleted => None,
        };
        let target = match (desired, &spec) {
            (Desired::Deleted, _) => Target::Deleted,
            (_, Some(spec)) => Target::Spec(spec),
            (_, None) => Target::Unknown,
        };
        loop {
            let observed = Observed {
                recorded: self.state.recorded.is_some(),
                running: self.state.live.is_some(),
                applied_hash: self.state.live.as_ref().map(|l| l.applied_hash.as_str()),
                halted_revision: self.state.halted_revision.as_deref(),
                retry_for_hash: self.state.retry.as_ref().map(|r| r.hash.as_str()),
            };
            match (decide(target, &observed), &spec) {
                (Action::Adopt, _) => {
                    self.adopt_recorded().await;
                    continue;
                }
                (Action::Forget, _) => return self.forget().await,
                (Action::Stop, Some(spec)) => {
                    self.stop("stopped", None).await;
                    self.settle_stopped(spec);
                }
                (Action::Start, Some(spec)) => self.start(spec.clone()).await,
                (Action::Restart, Some(spec)) => {
                    self.event(Level::Info, "spec changed; restarting to apply it");
                    count_restart(RestartReason::SpecChange);
                    self.stop("restarting", None).await;
                    self.start(spec.clone()).await;
                }
                (Action::Nothing, Some(spec)) if spec.state == DesiredState::Stopped => {
                    self.settle_stopped(spec)
                }
                // Running from this very spec (e.g. adopted): remember it as applied.
                (Action::Nothing, Some(spec)) if self.state.live.is_some() => {
                    self.state.applied = Some(spec.clone());
                }
                _ => {}
            }
            break;
        }
        if let Desired::Spec(spec) = desired {
            self.state.observed_revision = Some(spec.revision.clone());
        }
        self.publish();
        false
    }

    /// Shows why the spec file is not applied; the server stays as it is.
    fn record_spec_errors(&mut self, diags: &[crate::diagnostic::Diagnostic]) {
        let first = diags.first().map(ToString::to_string).unwrap_or_default();
        if self.state.spec_errors != diags {
            self.event(Level::Error, format!("spec not applied: {first}"));
        }
        self.state.spec_errors = diags.to_vec();
        let never_applied = self.state.applied.is_none() && self.state.live.is_none();
        if never_applied && matches!(self.state.phase, Phase::Pending | Phase::Invalid) {
            self.state.phase = Phase::Invalid;
            self.state.message = Some(first);
        }
    }

    /// A stopped spec and no instance: pending retries and halts end (the user has
    /// taken over) and the server is recorded as stopped.
    fn settle_stopped(&mut self, spec: &Arc<ServerSpec>) {
        self.state.applied = Some(spec.clone());
        let workspace = self.workspace_path(spec);
        let state = &mut self.state;
        state.retry = None;
        state.halted_revision = None;
        state.failures = Default::default();
        state.phase = Phase::Stopped;
        state.message = None;
        state.extensions = spec.extensions.iter().map(ExtensionRef::label).collect();
        state.workspace_path = Some(workspace);
        state.port = spec.port;
    }

    /// What a running server's status says when its spec asks for limits this host
    /// cannot enforce (the server runs all the same).
    fn limits_note(&self) -> Option<String> {
        let applied = self.state.applied.as_ref()?;
        let why = self.ctx.runtime.limits_unenforced(applied.runtime)?;
        let resources = applied.resources;
        limits_note(&resources, why)
    }

    fn workspace_path(&self, spec: &ServerSpec) -> PathBuf {
        match &spec.workspace {
            WorkspaceSource::Path(path) => path.clone(),
            _ => self.workspace_dir(),
        }
    }

    /// Where the instance's own files live: the state dir, or for a Slurm job the
    /// config's `runtime.slurm.shared_dir` (mounted at the same path on every node).
    fn data_root(&self) -> &Path {
        let config = &self.ctx.config;
        let on_slurm = self
            .state
            .applied
            .as_ref()
            .is_some_and(|spec| spec.runtime == Backend::Slurm);
        match &config.runtime.slurm.shared_dir {
            Some(shared) if on_slurm => shared,
            _ => self.ctx.statuses.state_dir(),
        }
    }

    /// `<data root>/servers/<name>`: the instance's user data, extensions, XDG
    /// folders and log. (devbox's own files of the server, its status and events, stay
    /// in [`ServerTask::dir`].)
    fn instance_root(&self) -> PathBuf {
        data_dirs::instance_root(self.data_root(), self.name())
    }

    /// `<data root>/workspaces/<name>`: where managed workspaces live.
    fn workspace_dir(&self) -> PathBuf {
        data_dirs::workspace_dir(self.data_root(), self.name())
    }

    fn log_file(&self) -> PathBuf {
        self.instance_root().join("code-server.log")
    }

    fn start_tail(&mut self) {
        self.stop_tail();
        self.tail = Some(self.ctx.logs.follow(self.ident(), self.log_file()));
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

fn count_restart(reason: RestartReason) {
    crate::metrics::METRICS
        .controller
        .restarts
        .with_label_values(&[reason.label()])
        .inc();
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
