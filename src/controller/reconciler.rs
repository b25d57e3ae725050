//! One server's reconciler task: owns that server's process and carries out what
//! [`decide`] says, recording every step in the server's status and log.
//!
//! The task wakes when its desired state changes, its process exits, a scheduled
//! retry is due, a health check is due, or devbox shuts down; each time it re-reads
//! desired and observed state and acts on the difference.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::Context;
use super::decide::{Action, Observed, Target, decide};
use super::scan::Desired;
use crate::config::ShutdownPolicy;
use crate::health::Healthz;
use crate::logs::{Level, ServerIdent};
use crate::provision::{
    self, ExtensionOutcome, ExtensionRef, InstallerSettings, WorkspaceSource, ZipLimits,
};
use crate::runtime::{ExitInfo, Instance, LaunchPlan, Runtime, wait_exit};
use crate::spec::{DesiredState, RestartPolicy, ServerSpec, id_for_name};
use crate::status::{ExtensionStatus, Phase, ServerStatus, rfc3339, server_dir};

/// A process healthy this long has recovered: its crash counter starts again at zero.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Failed health checks in a row after which a running instance is restarted.
const UNHEALTHY_LIMIT: u32 = 3;
/// Pause between `/healthz` probes while an instance starts.
const START_POLL: Duration = Duration::from_millis(100);
/// Lines of output quoted when an instance crashes.
const CRASH_LOG_LINES: usize = 10;
/// Environment variables an instance must not inherit (see design.md: with
/// `VSCODE_IPC_HOOK_CLI` set, code-server hands the folder to another instance and exits).
const SCRUBBED_ENV: [&str; 5] = [
    "VSCODE_IPC_HOOK_CLI",
    "PASSWORD",
    "HASHED_PASSWORD",
    "PORT",
    "CODE_SERVER_CONFIG",
];

/// Runs the reconciler of server `name` until the server is forgotten or devbox stops.
pub async fn run<R: Runtime>(
    name: String,
    desired: watch::Receiver<Desired>,
    ctx: Arc<Context<R>>,
) {
    let span = tracing::info_span!("server", server = %name);
    let mut task = ServerTask::new(name, desired, ctx);
    async move {
        task.adopt_recorded().await;
        task.main_loop().await;
    }
    .instrument(span)
    .await;
}

struct ServerTask<R> {
    ctx: Arc<Context<R>>,
    ident: ServerIdent,
    display_name: String,
    dir: PathBuf,
    desired: watch::Receiver<Desired>,
    instance: Option<Instance>,
    tail: Option<crate::logs::Follower>,
    /// The last spec that was successfully applied (started or stopped from).
    applied: Option<Arc<ServerSpec>>,
    applied_hash: Option<String>,
    halted: Option<Arc<ServerSpec>>,
    retry_at: Option<Instant>,
    healthy_since: Option<Instant>,
    health_failures: u32,
}

enum StartOutcome {
    Healthy,
    Exited(ExitInfo),
    TimedOut,
    /// The spec changed to stopped or deleted, or devbox is shutting down.
    Interrupted,
}

impl<R: Runtime> ServerTask<R> {
    fn new(name: String, desired: watch::Receiver<Desired>, ctx: Arc<Context<R>>) -> Self {
        let dir = server_dir(ctx.statuses.state_dir(), &name);
        let (id, display_name) = match &*desired.borrow() {
            Desired::Spec(spec) => (spec.id, spec.display_name.clone()),
            _ => ctx.statuses.get(&name).map_or_else(
                || (id_for_name(&name), name.clone()),
                |s| (s.id, s.display_name),
            ),
        };
        Self {
            ident: ServerIdent { id, name },
            display_name,
            dir,
            desired,
            instance: None,
            tail: None,
            applied: None,
            applied_hash: None,
            halted: None,
            retry_at: None,
            healthy_since: None,
            health_failures: 0,
            ctx,
        }
    }

    fn name(&self) -> &str {
        &self.ident.name
    }

    fn event(&self, level: Level, message: impl Into<String>) {
        self.ctx.logs.event(&self.ident, &self.dir, level, message);
    }

    /// Changes this server's status; a failed write (disk full) is logged, not fatal:
    /// the in-memory status is updated either way.
    fn set_status(&self, change: impl FnOnce(&mut ServerStatus)) {
        let (name, id, display) = (
            self.name().to_owned(),
            self.ident.id,
            self.display_name.clone(),
        );
        let result = self.ctx.statuses.update(
            &self.ident.name,
            || ServerStatus::new(&name, id, &display),
            |status| {
                status.id = id;
                status.display_name.clone_from(&display);
                change(status);
            },
        );
        if let Err(err) = result {
            tracing::error!(%err, "status not persisted");
        }
    }

    /// Takes over a process recorded by an earlier devbox, or cleans up after it.
    async fn adopt_recorded(&mut self) {
        let Some(status) = self.ctx.statuses.get(self.name()) else {
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
                self.event(
                    Level::Info,
                    format!(
                        "adopted running process {} on port {}",
                        record.pid,
                        status.port.unwrap_or(0)
                    ),
                );
                self.set_status(|s| {
                    if s.phase != Phase::Running {
                        s.phase = Phase::Starting;
                    }
                });
            }
            None => {
                self.ctx.runtime.clean_up(&self.ident.name, &record).await;
                self.event(
                    Level::Warn,
                    format!("process {} ended while devbox was away", record.pid),
                );
                self.set_status(|s| {
                    s.process = None;
                    s.started_at = None;
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
            let retry_at = self.retry_at;
            let running = self.instance.is_some();
            let mut exited = self.instance.as_ref().map(|i| i.exited.clone());
            tokio::select! {
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        // The controller is gone without a shutdown signal: leave things as they are.
                        return;
                    }
                }
                exit = async { match exited.as_mut() { Some(rx) => wait_exit(rx).await, None => std::future::pending().await } } => {
                    self.on_exit(exit).await;
                }
                _ = async { match retry_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    self.retry_at = None;
                }
                _ = tokio::time::sleep(health_interval), if running => {
                    self.check_health().await;
                }
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Acts once on the difference between `desired` and what runs. Returns true when
    /// the server has been forgotten and the task should end.
    async fn reconcile(&mut self, desired: &Desired) -> bool {
        let target = match desired {
            Desired::Spec(spec) => {
                self.display_name.clone_from(&spec.display_name);
                self.set_status(|s| s.spec_errors.clear());
                Target::Spec(spec)
            }
            Desired::Invalid(diags) => {
                let first = diags.first().map(ToString::to_string).unwrap_or_default();
                let known = self
                    .ctx
                    .statuses
                    .get(self.name())
                    .is_some_and(|s| !s.spec_errors.is_empty() && s.spec_errors == **diags);
                if !known {
                    self.event(Level::Error, format!("spec not applied: {first}"));
                }
                let never_applied = self.applied.is_none()
                    && self.instance.is_none()
                    && self.applied_hash.is_none();
                self.set_status(|s| {
                    s.spec_errors = diags.to_vec();
                    if never_applied && matches!(s.phase, Phase::Pending | Phase::Invalid) {
                        s.phase = Phase::Invalid;
                        s.message = Some(first);
                    }
                });
                match &self.applied {
                    Some(spec) => Target::Spec(spec),
                    None => Target::Unknown,
                }
            }
            Desired::Deleted => Target::Deleted,
        };
        let observed = Observed {
            running: self.instance.is_some(),
            applied_hash: self.applied_hash.as_deref(),
            halted: self.halted.as_deref(),
            retry_pending: self.retry_at.is_some(),
        };
        let action = decide(target, &observed);
        let spec = match target {
            Target::Spec(spec) => Some(Arc::new(spec.clone())),
            _ => None,
        };
        match (action, spec) {
            (Action::Forget, _) => return self.forget().await,
            (Action::Stop, spec) => {
                self.stop("stopped").await;
                self.applied = spec;
            }
            (Action::Start, Some(spec)) => self.start(spec).await,
            (Action::Restart, Some(spec)) => {
                self.event(Level::Info, "spec changed; restarting to apply it");
                self.stop("restarting").await;
                self.start(spec).await;
            }
            // Running from this very spec (e.g. adopted): remember it as applied.
            (Action::Nothing, Some(spec))
                if self.instance.is_some()
                    && self.applied_hash.as_deref() == Some(spec.hash.as_str()) =>
            {
                self.applied = Some(spec);
            }
            (Action::Nothing, Some(spec)) if spec.state == DesiredState::Stopped => {
                self.settle_stopped(&spec)
            }
            _ => {}
        }
        false
    }

    /// A stopped spec and no process: clear pending retries and halts (the user has
    /// taken over) and record the server as stopped.
    fn settle_stopped(&mut self, spec: &Arc<ServerSpec>) {
        self.retry_at = None;
        self.halted = None;
        self.applied = Some(spec.clone());
        let extensions: Vec<String> = spec.extensions.iter().map(ExtensionRef::label).collect();
        let workspace = self.workspace_path(spec);
        self.set_status(|s| {
            s.phase = Phase::Stopped;
            s.message = None;
            s.next_retry_at = None;
            s.extensions = extensions;
            s.workspace_path = Some(workspace);
            if s.port.is_none() {
                s.port = spec.port;
            }
        });
    }

    fn workspace_path(&self, spec: &ServerSpec) -> PathBuf {
        match &spec.workspace {
            WorkspaceSource::Path(path) => path.clone(),
            _ => self
                .ctx
                .statuses
                .state_dir()
                .join("workspaces")
                .join(self.name()),
        }
    }

    async fn start(&mut self, spec: Arc<ServerSpec>) {
        self.halted = None;
        self.applied = Some(spec.clone());
        let port = match self.ctx.ports.reserve(self.name(), spec.port) {
            Ok(port) => port,
            Err(err) => return self.fail(format!("cannot get a port: {err}"), false),
        };
        let extensions: Vec<String> = spec.extensions.iter().map(ExtensionRef::label).collect();
        self.set_status(|s| {
            s.phase = Phase::Provisioning;
            s.message = Some("preparing workspace".into());
            s.port = Some(port);
            s.extensions = extensions;
            s.next_retry_at = None;
        });
        self.event(Level::Info, format!("provisioning on port {port}"));
        let workspace = match self.provision(&spec).await {
            Ok(workspace) => workspace,
            Err(reason) => return self.fail(reason, false),
        };
        if self.interrupted() {
            return;
        }

        self.set_status(|s| {
            s.phase = Phase::Starting;
            s.message = Some("starting code-server".into());
            s.workspace_path = Some(workspace.clone());
        });
        let plan = self.launch_plan(&spec, port, &workspace);
        self.start_tail();
        let instance = match self.ctx.runtime.start(&plan).await {
            Ok(instance) => instance,
            Err(err) => {
                self.stop_tail();
                return self.fail(err.to_string(), false);
            }
        };
        let pid = instance.record.pid;
        self.set_status(|s| s.process = Some(instance.record));
        self.instance = Some(instance);
        match self.wait_healthy(port).await {
            StartOutcome::Healthy => {
                self.applied_hash = Some(spec.hash.clone());
                self.healthy_since = Some(Instant::now());
                self.health_failures = 0;
                self.retry_at = None;
                let hash = spec.hash.clone();
                self.set_status(|s| {
                    s.phase = Phase::Running;
                    s.message = None;
                    s.started_at = Some(rfc3339(SystemTime::now()));
                    s.applied_hash = Some(hash);
                    s.next_retry_at = None;
                });
                self.event(
                    Level::Info,
                    format!("started: pid {pid}, http://127.0.0.1:{port}/"),
                );
            }
            StartOutcome::Exited(exit) => {
                self.instance = None;
                self.stop_tail();
                self.set_status(|s| {
                    s.process = None;
                    s.last_exit = Some(exit.to_string());
                });
                let reason = format!(
                    "code-server exited during start ({exit}){}",
                    self.crash_lines()
                );
                self.fail(reason, true);
            }
            StartOutcome::TimedOut => {
                self.stop("start timed out").await;
                let timeout = self.ctx.config.code_server.start_timeout;
                let reason = format!(
                    "code-server did not answer /healthz within {timeout}{}",
                    self.crash_lines()
                );
                self.fail(reason, true);
            }
            StartOutcome::Interrupted => self.stop("start interrupted").await,
        }
    }

    /// Workspace, user settings and extensions: everything a start needs first.
    async fn provision(&mut self, spec: &ServerSpec) -> Result<PathBuf, String> {
        let config = &self.ctx.config;
        let target = self
            .ctx
            .statuses
            .state_dir()
            .join("workspaces")
            .join(self.name());
        let source = spec.workspace.clone();
        let limits = ZipLimits {
            max_total_bytes: config.ui.workspace.max_extracted_size_mb * 1024 * 1024,
            max_entries: config.ui.workspace.max_zip_entries,
            ..ZipLimits::default()
        };
        let git_timeout = config.ui.workspace.git_timeout.get();
        if !matches!(source, WorkspaceSource::Empty) {
            self.event(
                Level::Info,
                format!("preparing workspace from {}", describe_source(&source)),
            );
        }
        let workspace = tokio::task::spawn_blocking(move || {
            provision::workspace::prepare(&source, &target, &limits, git_timeout)
        })
        .await
        .map_err(|err| format!("workspace: {err}"))?
        .map_err(|err| format!("workspace: {err}"))?;

        let user_data = self.dir.join("user-data");
        for dir in [
            user_data.clone(),
            self.dir.join("extensions"),
            self.dir.join("xdg-data"),
            self.dir.join("xdg-config"),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        }
        let settings = spec.user_settings.clone();
        let settings_dir = user_data.clone();
        match tokio::task::spawn_blocking(move || {
            provision::settings::apply_user_settings(&settings_dir, &settings)
        })
        .await
        {
            Ok(Ok(true)) => self.event(Level::Info, "user settings written"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => return Err(format!("user settings: {err}")),
            Err(err) => return Err(format!("user settings: {err}")),
        }

        self.install_extensions(spec, &user_data).await;
        Ok(workspace)
    }

    async fn install_extensions(&mut self, spec: &ServerSpec, user_data: &std::path::Path) {
        if spec.extensions.is_empty() {
            self.set_status(|s| s.extension_results.clear());
            return;
        }
        let mut results: Vec<ExtensionStatus> = spec
            .extensions
            .iter()
            .map(|e| ExtensionStatus {
                extension: e.label(),
                state: "pending".into(),
                error: None,
            })
            .collect();
        let pending = results.clone();
        self.set_status(|s| s.extension_results = pending);
        let installer = InstallerSettings {
            binary: self.ctx.config.code_server.binary.clone(),
            extensions_dir: self.dir.join("extensions"),
            user_data_dir: user_data.to_owned(),
            env: self.base_env(),
            env_remove: SCRUBBED_ENV.iter().map(|s| (*s).to_owned()).collect(),
            timeout: self.ctx.config.code_server.extension_install_timeout.get(),
        };
        for (index, extension) in spec.extensions.iter().enumerate() {
            if self.interrupted() {
                return;
            }
            self.set_status(|s| {
                s.message = Some(format!("installing extension {}", extension.label()))
            });
            let outcome = provision::extensions::install_all(
                std::slice::from_ref(extension),
                &installer,
                &self.ctx.install_permits,
            )
            .await
            .into_iter()
            .next()
            .map(|r| r.outcome);
            let (state, error) = match outcome {
                Some(ExtensionOutcome::Installed) => {
                    self.event(
                        Level::Info,
                        format!("extension {} installed", extension.label()),
                    );
                    ("installed", None)
                }
                Some(ExtensionOutcome::AlreadyInstalled) => ("installed", None),
                Some(ExtensionOutcome::Failed(error)) => {
                    self.event(
                        Level::Warn,
                        format!("extension {} failed: {error}", extension.label()),
                    );
                    ("failed", Some(error))
                }
                None => ("failed", Some("installer returned no result".to_owned())),
            };
            results[index].state = state.into();
            results[index].error = error;
            let snapshot = results.clone();
            self.set_status(|s| s.extension_results = snapshot);
        }
    }

    /// Environment shared by the instance and its extension installs.
    fn base_env(&self) -> Vec<(String, String)> {
        let cs = &self.ctx.config.code_server;
        let mut env = vec![
            (
                "XDG_DATA_HOME".to_owned(),
                path_string(&self.dir.join("xdg-data")),
            ),
            (
                "XDG_CONFIG_HOME".to_owned(),
                path_string(&self.dir.join("xdg-config")),
            ),
        ];
        if let Some(gallery) = &cs.extension_gallery {
            env.push(("EXTENSIONS_GALLERY".into(), gallery.clone()));
        }
        env.extend(cs.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    fn launch_plan(&self, spec: &ServerSpec, port: u16, workspace: &std::path::Path) -> LaunchPlan {
        let cs = &self.ctx.config.code_server;
        let config_file = self.dir.join("code-server.yaml");
        // code-server reads (and would otherwise create) a shared ~/.config file.
        if let Err(err) = std::fs::write(&config_file, "auth: none\ncert: false\n") {
            tracing::warn!(%err, "cannot write code-server config file");
        }
        let mut args: Vec<String> = vec![
            "--auth".into(),
            "none".into(),
            "--bind-addr".into(),
            format!("127.0.0.1:{port}"),
            "--disable-telemetry".into(),
            "--disable-update-check".into(),
            "--user-data-dir".into(),
            path_string(&self.dir.join("user-data")),
            "--extensions-dir".into(),
            path_string(&self.dir.join("extensions")),
            "--config".into(),
            path_string(&config_file),
        ];
        args.extend(cs.extra_args.iter().cloned());
        args.push(path_string(workspace));
        let mut env = self.base_env();
        env.push(("VSCODE_PROXY_URI".into(), "./proxy/{{port}}".into()));
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        LaunchPlan {
            server: self.name().to_owned(),
            program: cs.binary.clone(),
            args,
            env,
            env_remove: SCRUBBED_ENV.iter().map(|s| (*s).to_owned()).collect(),
            working_dir: workspace.to_owned(),
            log_file: self.log_file(),
        }
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("code-server.log")
    }

    /// Polls `/healthz` until it answers, the process exits, the start times out, or
    /// the spec no longer wants the server running.
    async fn wait_healthy(&mut self, port: u16) -> StartOutcome {
        let deadline = Instant::now() + self.ctx.config.code_server.start_timeout.get();
        loop {
            if let Some(exit) = self.instance.as_ref().and_then(Instance::exit_status) {
                return StartOutcome::Exited(exit);
            }
            if self.interrupted() {
                return StartOutcome::Interrupted;
            }
            if self
                .ctx
                .health
                .check(port, Duration::from_secs(1))
                .await
                .is_ok()
            {
                return StartOutcome::Healthy;
            }
            if Instant::now() >= deadline {
                return StartOutcome::TimedOut;
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    /// Whether the spec changed to something that no longer wants this server running,
    /// or devbox is shutting down (checked between long provisioning steps).
    fn interrupted(&self) -> bool {
        if *self.ctx.shutdown.borrow() {
            return true;
        }
        match &*self.desired.borrow() {
            Desired::Spec(spec) => spec.state == DesiredState::Stopped,
            Desired::Invalid(_) => false,
            Desired::Deleted => true,
        }
    }

    /// Stops the running instance (if any) and records the server as stopped.
    async fn stop(&mut self, why: &str) {
        let Some(instance) = self.instance.take() else {
            self.set_status(|s| {
                if !matches!(s.phase, Phase::Failed | Phase::Invalid) || s.process.is_some() {
                    s.phase = Phase::Stopped;
                    s.message = None;
                }
                s.process = None;
                s.started_at = None;
            });
            self.retry_at = None;
            return;
        };
        self.set_status(|s| s.phase = Phase::Stopping);
        let grace = self.ctx.config.code_server.stop_timeout.get();
        if let Err(err) = self.ctx.runtime.stop(&instance.record, grace).await {
            self.event(Level::Error, format!("stop failed: {err}"));
        }
        self.stop_tail();
        self.applied_hash = None;
        self.retry_at = None;
        self.healthy_since = None;
        self.set_status(|s| {
            s.phase = Phase::Stopped;
            s.message = None;
            s.process = None;
            s.started_at = None;
            s.next_retry_at = None;
        });
        self.event(
            Level::Info,
            format!("{why}: process {} ended", instance.record.pid),
        );
    }

    /// The running instance exited on its own.
    async fn on_exit(&mut self, exit: ExitInfo) {
        let Some(instance) = self.instance.take() else {
            return;
        };
        // Children may still hold the port for a few seconds after the launcher died.
        self.ctx
            .runtime
            .clean_up(&self.ident.name, &instance.record)
            .await;
        self.stop_tail();
        self.applied_hash = None;
        let stable = self
            .healthy_since
            .is_some_and(|at| at.elapsed() >= STABLE_AFTER);
        self.healthy_since = None;
        if stable {
            self.set_status(|s| s.consecutive_crashes = 0);
        }
        self.set_status(|s| {
            s.process = None;
            s.started_at = None;
            s.last_exit = Some(exit.to_string());
        });
        self.event(
            Level::Warn,
            format!("process {} exited ({exit})", instance.record.pid),
        );
        let policy = self
            .applied
            .as_ref()
            .map_or(RestartPolicy::OnFailure, |s| s.restart_policy);
        let restart = match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !exit.is_success(),
            RestartPolicy::Never => false,
        };
        if restart {
            let reason = format!("code-server exited ({exit}){}", self.crash_lines());
            self.fail(reason, true);
        } else {
            self.halted = self.applied.clone();
            let phase = if exit.is_success() {
                Phase::Stopped
            } else {
                Phase::Failed
            };
            let policy_word = match policy {
                RestartPolicy::Never => "never",
                _ => "on-failure",
            };
            self.set_status(|s| {
                s.phase = phase;
                s.message = Some(format!("exited ({exit}); restart_policy {policy_word} keeps it down until the spec changes"));
            });
        }
    }

    /// Records a failed start or a crash and schedules the next attempt with backoff.
    /// `crash` counts toward the crash loop; other failures (no port, bad workspace)
    /// are shown as `failed` at once.
    fn fail(&mut self, reason: String, crash: bool) {
        let status = self.ctx.statuses.get(self.name());
        let crashes = status.as_ref().map_or(0, |s| s.consecutive_crashes) + 1;
        let threshold = self.ctx.config.controller.crash_loop_threshold;
        let delay = self.ctx.config.controller.restart_backoff.delay(crashes);
        self.retry_at = Some(Instant::now() + delay);
        let retry_at = rfc3339(SystemTime::now() + delay);
        let phase = if !crash || crashes >= threshold {
            Phase::Failed
        } else {
            Phase::Starting
        };
        let message = if phase == Phase::Failed {
            reason.clone()
        } else {
            format!(
                "restarting in {} (attempt {crashes}): {reason}",
                humantime::format_duration(round_ms(delay))
            )
        };
        self.set_status(|s| {
            s.phase = phase;
            s.message = Some(message);
            s.consecutive_crashes = crashes;
            s.restarts += 1;
            s.next_retry_at = Some(retry_at);
            s.process = None;
            s.started_at = None;
        });
        let level = if phase == Phase::Failed {
            Level::Error
        } else {
            Level::Warn
        };
        let first_line = reason.lines().next().unwrap_or_default().to_owned();
        self.event(
            level,
            format!(
                "{first_line}; retry in {}",
                humantime::format_duration(round_ms(delay))
            ),
        );
    }

    /// The last lines code-server printed, for failure reasons.
    fn crash_lines(&self) -> String {
        let lines = crate::logs::last_lines(&self.log_file(), CRASH_LOG_LINES);
        if lines.is_empty() {
            String::new()
        } else {
            format!("; last output:\n{}", lines.join("\n"))
        }
    }

    async fn check_health(&mut self) {
        let Some(port) = self.ctx.statuses.get(self.name()).and_then(|s| s.port) else {
            return;
        };
        match self.ctx.health.check(port, Duration::from_secs(2)).await {
            Ok(healthz) => {
                if self.is_idle(&healthz) {
                    return self.cull_idle().await;
                }
                if self.health_failures > 0 {
                    self.event(Level::Info, "health check passes again");
                }
                self.health_failures = 0;
                let stable = self
                    .healthy_since
                    .is_some_and(|at| at.elapsed() >= STABLE_AFTER);
                self.set_status(|s| {
                    if s.phase == Phase::Starting && s.process.is_some() {
                        s.phase = Phase::Running;
                        s.message = None;
                    }
                    if stable {
                        s.consecutive_crashes = 0;
                    }
                });
            }
            Err(err) => {
                self.health_failures += 1;
                self.event(
                    Level::Warn,
                    format!(
                        "health check failed ({}/{UNHEALTHY_LIMIT}): {err}",
                        self.health_failures
                    ),
                );
                if self.health_failures >= UNHEALTHY_LIMIT {
                    self.health_failures = 0;
                    self.stop("unhealthy").await;
                    self.fail(
                        format!("restarted after {UNHEALTHY_LIMIT} failed health checks: {err}"),
                        true,
                    );
                }
            }
        }
    }

    /// Whether no browser has been active for longer than the spec's `idle_timeout`.
    /// code-server says `expired` once no client was active in the last minute, and
    /// `lastHeartbeat` is when one last was (0 when none ever connected: then the time
    /// since the instance became healthy counts).
    fn is_idle(&self, healthz: &Healthz) -> bool {
        let Some(limit) = self.applied.as_ref().and_then(|s| s.idle_timeout) else {
            return false;
        };
        if healthz.status != "expired" {
            return false;
        }
        let idle_for = if healthz.last_heartbeat > 0 {
            let last = SystemTime::UNIX_EPOCH + Duration::from_millis(healthz.last_heartbeat);
            SystemTime::now().duration_since(last).unwrap_or_default()
        } else {
            self.healthy_since.map_or(Duration::ZERO, |at| at.elapsed())
        };
        idle_for > limit.get()
    }

    /// Stops an idle server and keeps it down until its spec changes.
    async fn cull_idle(&mut self) {
        let limit = self
            .applied
            .as_ref()
            .and_then(|s| s.idle_timeout)
            .unwrap_or_default();
        let halted = self.applied.clone();
        self.stop("idle").await;
        self.halted = halted;
        let message = format!(
            "stopped after {limit} without a connected browser; it starts again when its spec changes"
        );
        self.event(Level::Info, message.clone());
        self.set_status(|s| s.message = Some(message));
    }

    /// The spec file is gone: stop, then forget everything but the workspace (unless
    /// the config says to purge it). Returns false when the spec came back meanwhile.
    async fn forget(&mut self) -> bool {
        self.stop("deleted").await;
        if *self.desired.borrow() != Desired::Deleted {
            return false;
        }
        let name = self.name().to_owned();
        if let Err(err) = self.ctx.statuses.remove(&name) {
            tracing::error!(%err, "cannot remove status file");
        }
        self.ctx.ports.release(&name);
        self.ctx.logs.forget(&name);
        if let Err(err) = crate::fsutil::remove_dir_if_exists(&self.dir) {
            tracing::warn!(%err, dir = %self.dir.display(), "cannot remove server data");
        }
        if self.ctx.config.controller.purge_workspace_on_delete {
            let workspace = self.ctx.statuses.state_dir().join("workspaces").join(&name);
            if let Err(err) = crate::fsutil::remove_dir_if_exists(&workspace) {
                tracing::warn!(%err, "cannot purge workspace");
            }
        }
        tracing::info!("deleted and forgotten");
        // A spec waiting for this server's port can have it now.
        self.ctx.rescan.notify_one();
        true
    }

    async fn on_shutdown(&mut self) {
        match self.ctx.config.controller.on_shutdown {
            ShutdownPolicy::Stop => self.stop("devbox shutting down").await,
            ShutdownPolicy::Keep => self.stop_tail(),
        }
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
}

fn describe_source(source: &WorkspaceSource) -> String {
    match source {
        WorkspaceSource::Empty => "an empty folder".into(),
        WorkspaceSource::Git { url, reference } => match reference {
            Some(r) => format!("git {url} ({r})"),
            None => format!("git {url}"),
        },
        WorkspaceSource::Zip(path) => format!("zip {}", path.display()),
        WorkspaceSource::Path(path) => format!("folder {}", path.display()),
    }
}

fn path_string(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
