//! Starting a server: port, workspace and user settings, then code-server itself while
//! the extensions are installed, until both are done and its `/healthz` answers. Every
//! long step gives way when the spec stops wanting this start (stopped, deleted,
//! edited) or devbox shuts down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::ServerTask;
use super::state::{Live, StartProgress};
use crate::config::{Config, ListenMode, ShutdownPolicy};
use crate::controller::ports::PortError;
use crate::endpoint::{self, Endpoint};
use crate::logs::Level;
use crate::metrics::METRICS;
use crate::provision::{
    self, ExtensionOutcome, ExtensionRef, InstallerSettings, WorkspaceSource, ZipLayout, ZipLimits,
};
use crate::runtime::{Backend, ExitInfo, Instance, LaunchPlan, Runtime};
use crate::spec::ServerSpec;
use crate::status::{ExtensionStatus, Phase, rfc3339};

/// How long this server's own previous port may stay unbindable after a stop.
const OWN_PORT_GRACE: Duration = Duration::from_secs(5);
/// Pause between `/healthz` probes while an instance starts.
const START_POLL: Duration = Duration::from_millis(25);
/// How often a healthy instance still waiting for its extensions is checked for an exit.
const EXIT_POLL: Duration = Duration::from_millis(250);

pub(super) enum StartOutcome {
    Healthy,
    /// The backend can never run it as asked (see [`crate::runtime::Placement::Impossible`]).
    Impossible(String),
    Exited(ExitInfo),
    TimedOut,
    /// See [`ServerTask::interrupted`]; `provisioned` is false when the extensions
    /// were not all installed yet.
    Interrupted {
        provisioned: bool,
    },
}

impl<R: Runtime> ServerTask<R> {
    pub(super) async fn start(&mut self, spec: Arc<ServerSpec>) {
        let began = Instant::now();
        self.state.halted_revision = None;
        self.state.retry = None;
        if self.state.failures.of_hash.as_deref() != Some(spec.hash.as_str()) {
            // Failures of an earlier spec do not count against this one.
            self.state.failures = Default::default();
        }
        self.state.applied = Some(spec.clone());
        let port = match self.reserve_port(&spec).await {
            Ok(port) => port,
            Err(err) => return self.fail(format!("cannot get a port: {err}"), false),
        };
        self.last_port = Some(port);
        self.state.phase = Phase::Provisioning;
        self.state.message = Some("preparing workspace".into());
        self.state.port = Some(port);
        self.state.extensions = spec.extensions.iter().map(ExtensionRef::label).collect();
        self.publish();
        self.event(Level::Info, format!("provisioning on port {port}"));
        let workspace = match self.provision(&spec).await {
            Ok(Some(workspace)) => workspace,
            Ok(None) => return self.abandon_start(),
            Err(reason) => return self.fail(reason, false),
        };

        let endpoint = match self.endpoint(port, spec.runtime) {
            Ok(endpoint) => endpoint,
            Err(err) => return self.fail(err.to_string(), false),
        };
        let auth = match self.prepare_auth(spec.runtime).await {
            Ok(auth) => auth,
            Err(err) => return self.fail(err, false),
        };
        self.state.phase = Phase::Starting;
        self.state.message = Some("starting code-server".into());
        self.state.workspace_path = Some(workspace.clone());
        self.publish();
        if let Err(err) = self.give_log_to_job(spec.runtime).await {
            return self.fail(err, false);
        }
        let plan = self.launch_plan(&spec, &endpoint, &workspace, auth.args);
        self.launch_log_offset = std::fs::metadata(&plan.log_file).map_or(0, |m| m.len());
        self.start_tail();
        let instance = match self.ctx.runtime.start(&plan).await {
            Ok(instance) => instance,
            Err(err) if err.is_permanent() => {
                self.stop_tail();
                return self.give_up(err.to_string());
            }
            Err(err) => {
                self.stop_tail();
                return self.fail(err.to_string(), false);
            }
        };
        METRICS.controller.starts.inc();
        self.publish_password(&instance.record, auth.password);
        // Recorded at once, with the spec it runs, and on disk before anything else, so
        // that a devbox killed right now adopts it. (Killed before, it finds the
        // instance unrecorded and ends it at its next start.)
        self.state.live = Some(Live {
            instance,
            applied_hash: spec.hash.clone(),
            healthy_since: None,
            health_failures: 0,
        });
        self.publish();
        let statuses = self.ctx.statuses.clone();
        let _ = tokio::task::spawn_blocking(move || statuses.flush()).await;
        let outcome = match self.await_placement(&spec).await {
            Some(outcome) => outcome,
            None => self.wait_ready(&spec).await,
        };
        match outcome {
            StartOutcome::Healthy => {
                METRICS
                    .controller
                    .ready_seconds
                    .observe(began.elapsed().as_secs_f64());
                if let Some(live) = self.state.live.as_mut() {
                    live.healthy_since = Some(Instant::now());
                }
                self.state.phase = Phase::Running;
                self.state.message = self.limits_note();
                self.state.started_at = Some(rfc3339(SystemTime::now()));
                self.publish();
                if let Some(live) = &self.state.live {
                    let record = &live.instance.record;
                    let served_from = record
                        .endpoint(Some(port))
                        .map_or_else(|| "?".to_owned(), |e| e.to_string());
                    self.event(
                        Level::Info,
                        format!(
                            "started: {}, /vscode/{port}/ served from {served_from}",
                            record.identity()
                        ),
                    );
                }
            }
            StartOutcome::Exited(exit) => self.on_exit(exit, "during start ").await,
            StartOutcome::Impossible(reason) => {
                self.stop("cannot run", None).await;
                self.give_up(reason);
            }
            StartOutcome::TimedOut => {
                self.stop("start timed out", None).await;
                let timeout = self.ctx.config.code_server.start_timeout;
                let reason = format!(
                    "code-server did not answer /healthz within {timeout}{}",
                    self.crash_lines()
                );
                self.fail(reason, true);
            }
            StartOutcome::Interrupted { provisioned } => {
                let shutting_down = *self.ctx.shutdown.borrow();
                if shutting_down
                    && provisioned
                    && self.ctx.config.controller.on_shutdown == ShutdownPolicy::Keep
                {
                    // Left for the next devbox to adopt, like every other server. (One
                    // whose extensions are not all in place is stopped, so that the
                    // next devbox starts it anew.)
                    return;
                }
                self.stop("start interrupted", None).await;
            }
        }
    }

    /// A port to start on. Right after this server's own instance stopped, its port can
    /// stay unbindable for a moment (the kernel tears its sockets down), so a port that
    /// is this server's own gets a few seconds before it counts as taken by someone else.
    async fn reserve_port(&self, spec: &ServerSpec) -> Result<u16, PortError> {
        let deadline = Instant::now() + OWN_PORT_GRACE;
        loop {
            match self.try_reserve_port(spec).await {
                Err(PortError::InUse { port })
                    if Some(port) == self.last_port && Instant::now() < deadline =>
                {
                    tokio::time::sleep(START_POLL).await;
                }
                result => return result,
            }
        }
    }

    /// One try: the spec's own port, or (a spec that pins none) one that no spec file
    /// pins, taken under the spec writer's lock (see `SpecFiles::with_current_pins`).
    async fn try_reserve_port(&self, spec: &ServerSpec) -> Result<u16, PortError> {
        let (name, last) = (self.name().to_owned(), self.last_port);
        if spec.port.is_some() {
            return self.ctx.ports.reserve(&name, spec.port, last, &|_| false);
        }
        let (files, ports) = (self.ctx.spec_files.clone(), self.ctx.ports.clone());
        let taken = tokio::task::spawn_blocking(move || {
            files.with_current_pins(|pins| {
                ports.reserve(&name, None, last, &|port| pins.pinned_by_other(port, &name))
            })
        })
        .await;
        match taken {
            Ok(Ok(result)) => result,
            // The files cannot be read now: the last scan's view of them decides.
            _ => self
                .ctx
                .ports
                .reserve(self.name(), None, self.last_port, &|_| false),
        }
    }

    /// The spec changed or devbox stops while provisioning: nothing runs yet, so give
    /// the port back and let the main loop act on the new desired state.
    fn abandon_start(&mut self) {
        self.ctx.ports.release(self.name());
        self.state.phase = Phase::Stopped;
        self.state.message = Some("start interrupted".into());
        self.state.port = self.state.pinned_port();
        skip_pending_extensions(&mut self.state.extension_results);
        self.publish();
        self.event(Level::Info, "start interrupted");
    }

    /// Workspace and user settings: everything code-server needs before it starts.
    /// `Ok(None)` when the start was interrupted.
    async fn provision(&mut self, spec: &ServerSpec) -> Result<Option<PathBuf>, String> {
        self.find_account(spec).await?;
        let config = &self.ctx.config;
        let target = self.workspace_dir();
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
        let mirrors = self.ctx.git_mirrors.clone();
        let prepare = tokio::task::spawn_blocking(move || {
            let began = std::time::Instant::now();
            let prepared = provision::workspace::prepare(
                &source,
                &target,
                &limits,
                git_timeout,
                Some(&mirrors),
            );
            let outcome = if prepared.is_ok() { "ok" } else { "error" };
            METRICS
                .provisioning
                .workspace_seconds
                .with_label_values(&[source.kind(), outcome])
                .observe(began.elapsed().as_secs_f64());
            prepared
        });
        let workspace = tokio::select! {
            prepared = prepare => prepared
                .map_err(|err| format!("workspace: {err}"))?
                .map_err(|err| format!("workspace: {err}"))?,
            () = self.until_interrupted(spec) => return Ok(None),
        };

        for dir in self.instance_dirs() {
            std::fs::create_dir_all(&dir)
                .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        }
        self.hand_over_dirs(spec).await?;
        let settings = spec.user_settings.clone();
        let user_data = self.instance_dir("user-data");
        match tokio::task::spawn_blocking(move || {
            user_data.run(|dir| provision::settings::apply_user_settings(dir, &settings))
        })
        .await
        {
            Ok(Ok(Ok(true))) => self.event(Level::Info, "user settings written"),
            Ok(Ok(Ok(false))) => {}
            Ok(Ok(Err(err))) => return Err(format!("user settings: {err}")),
            Ok(Err(err)) => return Err(format!("user settings: {err}")),
            Err(err) => return Err(format!("user settings: {err}")),
        }
        Ok(Some(workspace))
    }

    /// Installs the extensions while code-server boots, and waits for both. code-server
    /// reads its extensions only once a browser connects, and the proxy lets no browser
    /// in before the server runs, so the two may overlap: a start costs the longer of
    /// them instead of their sum.
    async fn wait_ready(&mut self, spec: &ServerSpec) -> StartOutcome {
        let outcome = self.race_installs_and_boot(spec).await;
        let progress = std::mem::take(&mut *self.state.progress());
        if let Some(results) = progress.extension_results {
            self.state.extension_results = results;
        }
        if !matches!(outcome, StartOutcome::Healthy) {
            skip_pending_extensions(&mut self.state.extension_results);
        }
        self.publish();
        outcome
    }

    async fn race_installs_and_boot(&self, spec: &ServerSpec) -> StartOutcome {
        let installing = self.install_extensions(spec);
        let healthy = self.wait_healthy(spec);
        tokio::pin!(installing, healthy);
        let (mut installed, mut is_healthy) = (false, false);
        while !(installed && is_healthy) {
            tokio::select! {
                completed = &mut installing, if !installed => {
                    if !completed {
                        return StartOutcome::Interrupted { provisioned: false };
                    }
                    installed = true;
                    if !is_healthy {
                        self.report(|p| p.message = Some("starting code-server".into()));
                    }
                }
                outcome = &mut healthy, if !is_healthy => match outcome {
                    StartOutcome::Healthy => is_healthy = true,
                    StartOutcome::Interrupted { .. } => {
                        return StartOutcome::Interrupted { provisioned: installed };
                    }
                    other => return other,
                },
                // Healthy, still installing: an instance that dies meanwhile ends the start.
                () = tokio::time::sleep(EXIT_POLL), if is_healthy => {
                    if let Some(exit) = self.live_instance().and_then(Instance::exit_status) {
                        return StartOutcome::Exited(exit);
                    }
                }
            }
        }
        StartOutcome::Healthy
    }

    /// Installs the spec's extensions (the installers the cache needs at once, then one
    /// copy after another), recording each outcome. A failed extension never blocks the
    /// start. Returns false when interrupted.
    async fn install_extensions(&self, spec: &ServerSpec) -> bool {
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
        self.report(|p| p.extension_results = Some(pending));
        let extensions_dir = self.instance_dir("extensions");
        if spec.extensions.len() > 1 {
            // Every installer this server needs runs at once; the copies below then wait
            // on nothing but each other.
            self.report(|p| p.message = Some("installing extensions".into()));
            tokio::select! {
                () = self.ctx.extensions.prefetch(&spec.extensions, &extensions_dir) => {}
                () = self.until_interrupted(spec) => return false,
            }
        }
        for (index, extension) in spec.extensions.iter().enumerate() {
            let label = extension.label();
            self.report(|p| p.message = Some(format!("installing extension {label}")));
            // Dropping the install future kills the installer's process group.
            let began = Instant::now();
            let outcome = tokio::select! {
                outcome = self.ctx.extensions.install(extension, &extensions_dir) => outcome,
                () = self.until_interrupted(spec) => return false,
            };
            METRICS
                .provisioning
                .extension_seconds
                .with_label_values(&[outcome.metric_label()])
                .observe(began.elapsed().as_secs_f64());
            let (state, error) = match outcome {
                ExtensionOutcome::Installed => {
                    self.event(Level::Info, format!("extension {label} installed"));
                    ("installed", None)
                }
                ExtensionOutcome::Copied => {
                    self.event(
                        Level::Info,
                        format!("extension {label} installed from the extension cache"),
                    );
                    ("installed", None)
                }
                ExtensionOutcome::AlreadyInstalled => ("installed", None),
                ExtensionOutcome::Failed(error) => {
                    self.event(Level::Warn, format!("extension {label} failed: {error}"));
                    ("failed", Some(error))
                }
            };
            results[index].state = state.into();
            results[index].error = error;
            let snapshot = results.clone();
            self.report(|p| p.extension_results = Some(snapshot));
        }
        true
    }

    /// Shows a step of the start in progress.
    fn report(&self, change: impl FnOnce(&mut StartProgress)) {
        change(&mut self.state.progress());
        self.publish();
    }

    fn live_instance(&self) -> Option<&Instance> {
        self.state.live.as_ref().map(|live| &live.instance)
    }

    /// The instance's environment before its spec's own variables.
    fn base_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "XDG_DATA_HOME".to_owned(),
                path_string(&self.instance_root().join("xdg-data")),
            ),
            (
                "XDG_CONFIG_HOME".to_owned(),
                path_string(&self.instance_root().join("xdg-config")),
            ),
        ];
        env.extend(code_server_env(&self.ctx.config));
        env
    }

    /// Where the instance of route `port` is to listen: its socket in the private
    /// socket directory (made private again, should someone have opened it up; under
    /// `isolation.run_as: owner`, the folder of the instance's user), or the port
    /// itself with `listen: tcp`.
    fn endpoint(&self, port: u16, backend: Backend) -> Result<Endpoint, String> {
        if backend != Backend::Local {
            // Any address of the node the job lands on, on a port free there: the job
            // says which (see [`crate::runtime::Placement`]).
            return Ok(Endpoint::Remote {
                host: "0.0.0.0".into(),
                port: 0,
            });
        }
        match self.ctx.config.code_server.listen {
            ListenMode::Tcp => Ok(Endpoint::Tcp(port)),
            ListenMode::Socket => {
                let state_dir = self.ctx.statuses.state_dir();
                let dir = match self.own_socket_dir().map_err(|err| err.to_string())? {
                    Some(dir) => dir,
                    None => {
                        endpoint::prepare_socket_dir(state_dir).map_err(|err| err.to_string())?
                    }
                };
                endpoint::socket_path(&dir, self.name())
                    .map(Endpoint::Unix)
                    .map_err(|err| err.to_string())
            }
        }
    }

    fn launch_plan(
        &self,
        spec: &ServerSpec,
        endpoint: &Endpoint,
        workspace: &Path,
        auth_args: Vec<String>,
    ) -> LaunchPlan {
        let code_server = &self.ctx.config.code_server;
        let mut args = auth_args;
        args.extend(endpoint.code_server_args());
        args.extend([
            "--disable-telemetry".into(),
            "--disable-update-check".into(),
            "--user-data-dir".into(),
            path_string(&self.instance_root().join("user-data")),
            "--extensions-dir".into(),
            path_string(&self.instance_root().join("extensions")),
        ]);
        args.extend(code_server.extra_args.iter().cloned());
        args.push(path_string(workspace));
        let mut env = self.base_env();
        env.push(("VSCODE_PROXY_URI".into(), "./proxy/{{port}}".into()));
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        LaunchPlan {
            backend: spec.runtime,
            server: self.name().to_owned(),
            program: code_server.binary.clone(),
            args,
            env,
            env_remove: crate::runtime::scrubbed_env(),
            endpoint: endpoint.clone(),
            working_dir: workspace.to_owned(),
            log_file: self.log_file(),
            owner: instance_owner(self.ctx.statuses.state_dir()),
            resources: spec.resources,
            run_as: self.run_as(),
        }
    }

    /// Polls `/healthz` until it answers, the process exits, the start times out, or
    /// the start is interrupted.
    async fn wait_healthy(&self, spec: &ServerSpec) -> StartOutcome {
        let deadline = Instant::now() + self.ctx.config.code_server.start_timeout.get();
        loop {
            if let Some(exit) = self.live_instance().and_then(Instance::exit_status) {
                return StartOutcome::Exited(exit);
            }
            if self.interrupted(spec) {
                return StartOutcome::Interrupted { provisioned: true };
            }
            if let Some(endpoint) = self.live_endpoint()
                && self
                    .ctx
                    .runtime
                    .probe(&self.ctx.health, &endpoint, Duration::from_secs(1))
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
}

/// `"<cause>: "` in front of an exit's reason, when the runtime knows what ended it.
pub(super) fn cause_prefix(cause: Option<&str>) -> String {
    cause.map(|c| format!("{c}: ")).unwrap_or_default()
}

/// Extensions a start left uninstalled (it was interrupted or failed) are `skipped`.
fn skip_pending_extensions(results: &mut [ExtensionStatus]) {
    for result in results.iter_mut().filter(|r| r.state == "pending") {
        result.state = "skipped".into();
    }
}

fn describe_source(source: &WorkspaceSource) -> String {
    match source {
        WorkspaceSource::Empty => "an empty folder".into(),
        WorkspaceSource::Git {
            url,
            reference: Some(r),
        } => format!("git {url} ({r})"),
        WorkspaceSource::Git {
            url,
            reference: None,
        } => format!("git {url}"),
        WorkspaceSource::Zip {
            archive,
            layout: ZipLayout::AsIs,
        } => format!("zip {}", archive.display()),
        WorkspaceSource::Zip {
            archive,
            layout: ZipLayout::StripTopLevel,
        } => format!("zip {} (without its top-level folder)", archive.display()),
        WorkspaceSource::Path(path) => format!("folder {}", path.display()),
    }
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// How extension installs run: with the binary and the environment instances get.
pub(in crate::controller) fn installer_settings(config: &Config) -> InstallerSettings {
    InstallerSettings {
        binary: config.code_server.binary.clone(),
        env: code_server_env(config),
        env_remove: crate::runtime::scrubbed_env(),
        timeout: config.code_server.extension_install_timeout.get(),
    }
}

/// The config's environment for code-server, instances and installers alike.
fn code_server_env(config: &Config) -> Vec<(String, String)> {
    let code_server = &config.code_server;
    let mut env = Vec::new();
    if let Some(gallery) = &code_server.extension_gallery {
        env.push(("EXTENSIONS_GALLERY".into(), gallery.clone()));
    }
    env.extend(code_server.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// [`LaunchPlan::owner`] of the instances of the devbox with this state dir.
pub(in crate::controller) fn instance_owner(state_dir: &Path) -> String {
    std::path::absolute(state_dir)
        .unwrap_or_else(|_| state_dir.to_owned())
        .to_string_lossy()
        .into_owned()
}
