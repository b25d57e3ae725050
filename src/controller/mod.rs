//! The controller: converges running code-server instances to the spec files.
//!
//! A file watcher (debounced) and a periodic resync trigger a full scan of the specs
//! directory; the scan yields the desired state of every server, which is handed to
//! that server's own reconciler task through a `watch` channel. Work for one server is
//! serialised in its task; servers progress in parallel.

pub mod decide;
mod housekeeping;
pub use housekeeping::UPLOADS_DIR;
pub mod ports;
pub mod reconciler;
pub mod scan;
#[cfg(test)]
mod tests;
pub mod watcher;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, ListenMode, ShutdownPolicy};
use crate::endpoint::{self, EndpointError};
use crate::health::HealthClient;
use crate::instance_auth::InstancePasswords;
use crate::isolation::Accounts;
use crate::logs::{LogHub, LogLimits};
use crate::provision::Extensions;
use crate::provision::workspace::{GitMirrors, GitPolicy};
use crate::runtime::Runtime;
use crate::status::{InstanceRecord, Phase, StatusError, StatusStore};
use crate::usage::{Sampled, Source, UsageStore};
use ports::PortAllocator;
use scan::Desired;

/// How often CPU and memory of running servers are sampled.
const METRICS_INTERVAL: Duration = Duration::from_secs(2);
/// How long a spec must be missing before its server is deleted.
const DELETE_CONFIRM_DELAY: Duration = Duration::from_millis(500);
/// After a failed scan, how soon the directory is read again.
const SCAN_RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Sockets(#[from] EndpointError),
    #[error(transparent)]
    Isolation(#[from] crate::isolation::IsolationError),
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// What every reconciler task shares. Lives in an `Arc`; nothing in it is locked for
/// long (see each field's type for its own locking).
pub struct Context<R> {
    pub config: Arc<Config>,
    pub runtime: R,
    pub statuses: StatusStore,
    pub logs: LogHub,
    pub usage: UsageStore,
    pub ports: Arc<PortAllocator>,
    pub health: HealthClient,
    /// Extension installs for every server, through the host-wide cache.
    pub extensions: Extensions,
    /// Local mirrors of the repositories workspaces are cloned from.
    pub git_mirrors: Arc<GitMirrors>,
    /// The spec writer (the API's); the ports a server whose spec pins none is given
    /// are taken under its lock.
    pub spec_files: crate::spec_files::SpecFiles,
    /// Passwords of the instances that need one (on another machine), for the proxy.
    pub passwords: InstancePasswords,
    /// The Unix users of owners' instances, with `isolation.run_as: owner`.
    pub accounts: Option<Arc<Accounts>>,
    /// The templates' pools of prebuilt servers (see [`crate::pool`]).
    pub pools: Arc<crate::pool::Pools>,
    /// Wakes the controller to rescan at once: devbox itself changed a spec file (the API
    /// writes them whole, atomically) or freed a port another spec wants. Changes made
    /// by others come through the file watcher and are debounced.
    pub rescan: Arc<Notify>,
    /// Turns `true` when devbox shuts down.
    pub shutdown: watch::Receiver<bool>,
}

struct ServerHandle {
    desired: watch::Sender<Desired>,
    task: JoinHandle<()>,
}

/// The reconcile loop. Build it with [`Controller::new`], read its shared state through
/// [`Controller::context`], then [`Controller::run`] it.
pub struct Controller<R: Runtime> {
    ctx: Arc<Context<R>>,
    servers: HashMap<String, ServerHandle>,
    /// Servers whose spec is missing, and since when. Forgetting a server destroys its
    /// data, so a spec must stay missing for [`DELETE_CONFIRM_DELAY`] (an editor that
    /// deletes and recreates a file, a directory swapped by a deploy) before it is.
    missing: HashMap<String, Instant>,
    /// Outcomes of unchanged spec files, reused by the next scan.
    scan_cache: scan::ScanCache,
    shutdown_tx: watch::Sender<bool>,
}

/// Servers that have had a spec applied (any phase but `invalid`, which means never):
/// they hold their place within `controller.max_servers`.
fn applied_servers(statuses: &StatusStore) -> HashSet<String> {
    statuses
        .filter_map_all(|s| (s.phase != Phase::Invalid).then(|| s.name.clone()))
        .into_iter()
        .collect()
}

impl<R: Runtime> Controller<R> {
    pub fn new(config: Config, runtime: R) -> Result<Self, ControllerError> {
        let state_dir = config.controller.state_dir.clone();
        let create_failed = |dir: &PathBuf| {
            let path = dir.clone();
            move |source| ControllerError::CreateDir { path, source }
        };
        // Workspaces, user data and logs are their users' own: no other local user
        // reads them.
        crate::fsutil::private_dir(&state_dir).map_err(create_failed(&state_dir))?;
        if let Some(shared) = &config.runtime.slurm.shared_dir {
            crate::fsutil::private_dir(shared).map_err(create_failed(shared))?;
        }
        let specs_dir = &config.controller.specs_dir;
        std::fs::create_dir_all(specs_dir).map_err(create_failed(specs_dir))?;
        match config.code_server.listen {
            // Made private before anything listens in it (every start checks it again).
            ListenMode::Socket => {
                endpoint::prepare_socket_dir(&state_dir)?;
            }
            ListenMode::Tcp => tracing::warn!(
                "code_server.listen is tcp: every local user, and every participant's terminal, can open any instance on its 127.0.0.1 port without going through devbox (its token, its checks); `listen: socket` (the default) keeps them on private Unix sockets"
            ),
        }
        let accounts = crate::isolation::prepare(&config)?.map(Arc::new);
        let leftovers = housekeeping::remove_leftover_uploads(&state_dir);
        if leftovers > 0 {
            tracing::info!(
                leftovers,
                "removed uploads cut off when devbox last stopped"
            );
        }
        let statuses = StatusStore::open(&state_dir)?;
        let ports = Arc::new(PortAllocator::new(
            config.server.code_server_port_range,
            config.code_server.listen,
        ));
        // What an earlier devbox left running keeps its ports and passwords (see
        // `reconciler::recovery`).
        reconciler::claim_recorded_ports(&statuses, &ports);
        let passwords = InstancePasswords::default();
        reconciler::recall_recorded_passwords(&statuses, &passwords);
        let scan_cache = scan::ScanCache::with_running(statuses.filter_map_all(|status| {
            status.instance.as_ref()?;
            Some((status.port?, status.name.clone()))
        }));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let config = Arc::new(config);
        let spec_files =
            crate::spec_files::SpecFiles::new(config.clone()).with_held_ports(ports.held_view());
        let ctx = Context {
            logs: LogHub::new(LogLimits {
                lines: config.controller.log_buffer_lines,
                bytes: usize::try_from(config.controller.log_buffer_bytes).unwrap_or(usize::MAX),
                file_bytes: config.controller.log_max_bytes,
            }),
            extensions: Extensions::new(
                reconciler::installer_settings(&config),
                config.code_server.extension_install_concurrency,
                state_dir.join("extension-cache"),
            ),
            git_mirrors: Arc::new(GitMirrors::with_policy(
                state_dir.join("git-mirrors"),
                GitPolicy {
                    max_workspace_bytes: config
                        .ui
                        .workspace
                        .max_workspace_mb
                        .saturating_mul(1024 * 1024),
                    allow_local_hosts: config.ui.workspace.allow_local_git_hosts,
                },
            )),
            pools: Arc::new(crate::pool::Pools::of_config(&config)),
            config,
            spec_files,
            runtime,
            statuses,
            accounts,
            passwords,
            usage: UsageStore::default(),
            ports,
            health: HealthClient::default(),
            rescan: Arc::new(Notify::new()),
            shutdown,
        };
        Ok(Self {
            ctx: Arc::new(ctx),
            servers: HashMap::new(),
            missing: HashMap::new(),
            scan_cache,
            shutdown_tx,
        })
    }

    pub fn context(&self) -> Arc<Context<R>> {
        self.ctx.clone()
    }

    /// Runs until `shutdown` resolves, then stops or leaves the servers as configured.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ControllerError> {
        let specs_dir = self.ctx.config.controller.specs_dir.clone();
        let file_events = Arc::new(Notify::new());
        let mut watcher = Some(watcher::watch(&specs_dir, file_events.clone()).map_err(
            |source| ControllerError::Watch {
                path: specs_dir.clone(),
                source,
            },
        )?);
        // Before any instance starts (see `reconciler::recovery`).
        reconciler::sweep_unrecorded(&self.ctx.runtime, &self.ctx.statuses).await;
        tokio::spawn(housekeeping::run(self.ctx.clone()));
        tokio::spawn(
            crate::pool::keeper::Keeper {
                pools: self.ctx.pools.clone(),
                specs: self.ctx.spec_files.clone(),
                statuses: self.ctx.statuses.clone(),
                rescan: self.ctx.rescan.clone(),
                max_servers: self.ctx.config.controller.max_servers,
                parallelism: self.ctx.config.controller.prebuilt_parallelism,
                data_roots: crate::data_dirs::DataRoots::of(&self.ctx.config),
            }
            .run(self.ctx.shutdown.clone()),
        );
        tokio::spawn(self.ctx.usage.clone().run(METRICS_INTERVAL, {
            let statuses = self.ctx.statuses.clone();
            move || {
                statuses.filter_map_all(|s| {
                    let source = match s.instance.as_ref()? {
                        InstanceRecord::Local(process) => Source::Process {
                            pgid: process.pgid,
                            cgroup: process.cgroup.clone(),
                        },
                        InstanceRecord::Slurm(job) => Source::SlurmJob(job.job_id),
                    };
                    Some(Sampled {
                        name: s.name.clone(),
                        source,
                    })
                })
            }
        }));

        let controller = &self.ctx.config.controller;
        let debounce = controller.debounce.get();
        let mut resync = tokio::time::interval(controller.resync_interval.get());
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        tracing::info!(specs = %specs_dir.display(), state = %self.ctx.statuses.state_dir().display(), "controller started");
        loop {
            let scanned = self.sync().await;
            match scanned {
                // The directory may have been replaced: watch it anew once it is back.
                None => watcher = None,
                Some(_) if watcher.is_none() => {
                    watcher = watcher::watch(&specs_dir, file_events.clone())
                        .inspect_err(|err| tracing::warn!(%err, "cannot watch the specs directory; relying on resync"))
                        .ok();
                }
                Some(_) => {}
            }
            let confirm_deletions = scanned == Some(true);
            tokio::select! {
                _ = self.ctx.rescan.notified() => {}
                _ = file_events.notified() => {
                    // Let a burst of events (an editor's save, a `git pull`) settle.
                    tokio::time::sleep(debounce).await;
                }
                _ = tokio::time::sleep(DELETE_CONFIRM_DELAY), if confirm_deletions => {}
                _ = tokio::time::sleep(SCAN_RETRY_DELAY), if scanned.is_none() => {}
                _ = resync.tick() => {}
                _ = &mut shutdown => break,
            }
        }
        self.shut_down().await;
        Ok(())
    }

    /// One pass: read the specs and hand each server its desired state. Returns whether
    /// some specs are missing and need a second scan to confirm their deletion, or
    /// `None` when the directory could not be read (and nothing was changed).
    async fn sync(&mut self) -> Option<bool> {
        let began = Instant::now();
        let ctx = self.ctx.clone();
        let mut cache = std::mem::take(&mut self.scan_cache);
        let scanned = tokio::task::spawn_blocking(move || {
            let applied = applied_servers(&ctx.statuses);
            let scanned = scan::scan(
                &ctx.config.controller.specs_dir,
                &ctx.config,
                &mut cache,
                |name| applied.contains(name),
            );
            (scanned, cache)
        })
        .await
        .map(|(scanned, cache)| {
            self.scan_cache = cache;
            scanned
        });
        let mut desired = match scanned {
            Ok(Ok(desired)) => desired,
            Ok(Err(err)) => {
                tracing::error!(dir = %self.ctx.config.controller.specs_dir.display(), %err,
                    "cannot read the specs directory; changing nothing until it can be read");
                return None;
            }
            Err(err) => {
                tracing::error!(%err, "spec scan failed");
                return None;
            }
        };
        // What the files pin, for the ports given to servers whose spec pins none.
        self.ctx.ports.set_file_pins(scan::pinned_ports(&desired));

        // Known servers without a spec file (also those deleted while devbox was down)
        // are deleted once they have been missing long enough.
        let known: HashSet<String> = self
            .ctx
            .statuses
            .names()
            .into_iter()
            .chain(self.servers.keys().cloned())
            .collect();
        let now = Instant::now();
        let mut missing = HashMap::new();
        let mut unconfirmed = false;
        let absent: Vec<String> = known
            .into_iter()
            .filter(|name| !desired.contains_key(name))
            .collect();
        for name in absent {
            let since = self.missing.get(&name).copied().unwrap_or(now);
            if now.duration_since(since) >= DELETE_CONFIRM_DELAY {
                desired.insert(name.clone(), Desired::Deleted);
            } else {
                unconfirmed = true;
            }
            missing.insert(name, since);
        }
        self.missing = missing;

        self.servers.retain(|_, handle| !handle.task.is_finished());
        let specs = desired.len();
        for (name, wanted) in desired {
            match self.servers.get(&name) {
                Some(handle) => {
                    handle.desired.send_if_modified(|current| {
                        let changed = *current != wanted;
                        if changed {
                            *current = wanted;
                        }
                        changed
                    });
                }
                None if wanted == Desired::Deleted && self.ctx.statuses.get(&name).is_none() => {}
                None => {
                    let (tx, rx) = watch::channel(wanted);
                    let task = tokio::spawn(reconciler::run(name.clone(), rx, self.ctx.clone()));
                    self.servers
                        .insert(name, ServerHandle { desired: tx, task });
                }
            }
        }
        // benches/scale.rs reads this line to time full resyncs.
        tracing::debug!(
            specs,
            elapsed_us = began.elapsed().as_micros() as u64,
            "resync done"
        );
        Some(unconfirmed)
    }

    async fn shut_down(self) {
        let policy = self.ctx.config.controller.on_shutdown;
        tracing::info!(
            ?policy,
            servers = self.servers.len(),
            "controller shutting down"
        );
        let _ = self.shutdown_tx.send(true);
        for (_, handle) in self.servers {
            let _ = handle.task.await;
        }
        let statuses = self.ctx.statuses.clone();
        if let Err(err) = tokio::task::spawn_blocking(move || statuses.flush()).await {
            tracing::error!(%err, "status files may be stale");
        }
        let ctx = self.ctx.clone();
        let _ = tokio::task::spawn_blocking(move || ctx.runtime.shut_down()).await;
        if policy == ShutdownPolicy::Keep {
            tracing::info!("servers left running for the next devbox to adopt");
        }
    }
}
