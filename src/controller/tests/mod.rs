//! Unit tests of the whole reconciler against the fake runtime, under Tokio's paused
//! clock: every delay the reconciler waits (backoff, health interval, start timeout) is
//! virtual, so a crash loop of minutes runs in milliseconds and its timing is exact.
//!
//! The tests drive what stays while the reconciler's insides change: a server's task
//! (`reconciler::run`) fed desired states through a `watch` channel as the controller's
//! scan does, and what a user sees: the status store, the event log, and what the fake
//! runtime was asked to do. The harness here builds a context with
//! [`Controller::new`] and the sweep of unrecorded instances (so status files, ports and
//! instances are set up as devbox does) but leaves the spec scan and the file watcher out: the test
//! says exactly when the desired state changes.
//!
//! One file per theme: `lifecycle` (start, stop, invalid specs, a runtime that refuses
//! to start), `crashes` (backoff, crash loop, restart policies, start timeout),
//! `interruptions` (edits, stops and deletes during a start), `health` (unhealthy
//! restarts, idle culling), `adoption` (a devbox started again over a state dir),
//! `placement` (instances a backend places itself, as Slurm queues jobs).

mod adoption;
mod crashes;
mod health;
mod interruptions;
mod lifecycle;
mod placement;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::scan::Desired;
use super::{Context, Controller, reconciler};
use crate::config::Config;
use crate::diagnostic::Diagnostic;
use crate::logs::LogSource;
use crate::runtime::fake::FakeRuntime;
use crate::spec::ServerSpec;
use crate::status::{ServerStatus, server_dir};

/// How long (virtual) a wait goes on before the test fails: longer than any delay the
/// tests provoke (the longest is an idle timeout of ten minutes).
const WAIT_LIMIT: Duration = Duration::from_secs(3600);
/// How often (virtual) a wait looks again when nothing in the status store changed, for
/// conditions on the fake runtime alone.
const POLL: Duration = Duration::from_millis(100);

/// What a harness is built from: the config (state and specs in a temporary folder),
/// the fake runtime, and whatever an earlier devbox left in the state dir.
pub(super) struct Setup {
    pub config: Config,
    pub fake: FakeRuntime,
    dirs: TempDir,
}

impl Setup {
    pub fn new() -> Self {
        let dirs = tempfile::tempdir().unwrap();
        let mut config = Config::embedded_default();
        config.controller.state_dir = dirs.path().join("state");
        config.controller.specs_dir = dirs.path().join("specs");
        Self {
            config,
            fake: FakeRuntime::default(),
            dirs,
        }
    }

    pub fn config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    pub fn state_dir(&self) -> &Path {
        &self.config.controller.state_dir
    }

    /// Writes `status` as an earlier devbox left it: its `status.json` in the server's
    /// folder, in the format the status store writes.
    pub fn recorded(self, status: &ServerStatus) -> Self {
        let dir = server_dir(self.state_dir(), &status.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("status.json"),
            serde_json::to_vec_pretty(status).unwrap(),
        )
        .unwrap();
        self
    }

    /// Opens the state dir as devbox's start does (loading status files, sweeping
    /// unrecorded instances); no server task runs yet.
    pub async fn start(self) -> Harness {
        let controller = Controller::new(self.config, self.fake.clone()).unwrap();
        let ctx = controller.context();
        // What `Controller::run` does first.
        crate::controller::reconciler::sweep_unrecorded(&ctx.runtime, &ctx.statuses).await;
        Harness {
            ctx: controller.context(),
            fake: self.fake,
            servers: HashMap::new(),
            _controller: controller,
            _dirs: self.dirs,
        }
    }
}

/// One server's task, as the controller keeps it.
struct Task {
    desired: watch::Sender<Desired>,
    handle: JoinHandle<()>,
}

/// A devbox's reconcilers over the fake runtime. Specs go in through [`Harness::apply`]
/// and [`Harness::delete`]; what happened comes out of [`Harness::status`],
/// [`Harness::events`] and [`Harness::fake`].
pub(super) struct Harness {
    pub ctx: Arc<Context<FakeRuntime>>,
    /// The same table as the context's runtime: script and inspect instances here.
    pub fake: FakeRuntime,
    servers: HashMap<String, Task>,
    /// Holds the shutdown channel every task watches (dropped, it would wake them all
    /// without end).
    _controller: Controller<FakeRuntime>,
    _dirs: TempDir,
}

impl Harness {
    /// The default config, an empty state dir.
    pub async fn new() -> Self {
        Setup::new().start().await
    }

    /// The spec of server `name` whose `spec:` section is `body` (YAML, unindented),
    /// resolved as the scan resolves a spec file.
    pub fn spec(&self, name: &str, body: &str) -> Arc<ServerSpec> {
        spec(&self.ctx.config, name, body)
    }

    /// Hands server `name` the spec whose `spec:` section is `body`, starting its task
    /// on the first call. Returns the spec. Sent even when it equals the current one (a
    /// rescan of an unchanged file: nothing should happen).
    pub fn apply(&mut self, name: &str, body: &str) -> Arc<ServerSpec> {
        let spec = self.spec(name, body);
        self.send(name, Desired::Spec(spec.clone()));
        spec
    }

    /// Hands server `name` a spec file that does not load (its `spec:` section is
    /// `body`), with the diagnostics the scan would give. Returns them, as text.
    pub fn apply_invalid(&mut self, name: &str, body: &str) -> Vec<String> {
        let diags = match load(&self.ctx.config, name, body) {
            Ok(_) => panic!("spec {body:?} of {name} is valid"),
            Err(diags) => diags,
        };
        let text = diags.iter().map(ToString::to_string).collect();
        self.send(name, Desired::Invalid(Arc::new(diags)));
        text
    }

    /// The spec file of `name` is gone (and the controller has confirmed it).
    pub fn delete(&mut self, name: &str) {
        self.send(name, Desired::Deleted);
    }

    fn send(&mut self, name: &str, desired: Desired) {
        match self.servers.get(name) {
            Some(task) => {
                task.desired.send_replace(desired);
            }
            None => {
                let (tx, rx) = watch::channel(desired);
                let handle = tokio::spawn(reconciler::run(name.to_owned(), rx, self.ctx.clone()));
                self.servers.insert(
                    name.to_owned(),
                    Task {
                        desired: tx,
                        handle,
                    },
                );
            }
        }
    }

    pub fn status(&self, name: &str) -> Option<ServerStatus> {
        self.ctx.statuses.get(name)
    }

    /// The status of `name`, which must exist.
    pub fn must_status(&self, name: &str) -> ServerStatus {
        self.status(name)
            .unwrap_or_else(|| panic!("{name} has no status"))
    }

    /// The controller's events of `name` (not code-server's output), oldest first.
    pub fn events(&self, name: &str) -> Vec<String> {
        self.ctx
            .logs
            .recent(name, usize::MAX)
            .into_iter()
            .filter(|line| line.source == LogSource::System)
            .map(|line| line.message)
            .collect()
    }

    /// Whether some event of `name` contains `text`.
    pub fn has_event(&self, name: &str, text: &str) -> bool {
        self.events(name).iter().any(|event| event.contains(text))
    }

    /// Whether the task of `name` has ended (the server was forgotten).
    pub fn task_ended(&self, name: &str) -> bool {
        self.servers
            .get(name)
            .is_some_and(|task| task.handle.is_finished())
    }

    /// Waits (virtual time) until `done` holds, woken by every status change and every
    /// [`POLL`]; fails the test after [`WAIT_LIMIT`] with `what` and the state of the
    /// servers.
    pub async fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut changes = self.ctx.statuses.subscribe();
        while !done() {
            if Instant::now() >= deadline {
                panic!(
                    "still not {what} after {WAIT_LIMIT:?} (virtual)\n{}",
                    self.describe()
                );
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Waits until `name`'s status satisfies `done`, and returns that status.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&ServerStatus) -> bool,
    ) -> ServerStatus {
        let mut seen = None;
        self.wait_until(&format!("{name} {what}"), || {
            seen = self.status(name).filter(|s| done(s));
            seen.is_some()
        })
        .await;
        seen.unwrap_or_else(|| unreachable!())
    }

    /// What the test failed on: every server's status, events and instances.
    fn describe(&self) -> String {
        let mut text = String::new();
        for name in self.servers.keys() {
            text.push_str(&format!(
                "--- {name}\nstatus: {:#?}\nevents: {:#?}\ninstances: {:#?}\n",
                self.status(name),
                self.events(name),
                self.fake.instances(name),
            ));
        }
        text
    }
}

/// The spec of server `name` whose `spec:` section is `body` (YAML, unindented), resolved
/// against `config` as the scan resolves `<specs_dir>/<name>.yaml`.
pub(super) fn spec(config: &Config, name: &str, body: &str) -> Arc<ServerSpec> {
    match load(config, name, body) {
        Ok(spec) => Arc::new(spec),
        Err(diags) => panic!("bad test spec of {name} {body:?}: {diags:?}"),
    }
}

fn load(config: &Config, name: &str, body: &str) -> Result<ServerSpec, Vec<Diagnostic>> {
    let indented: String = body.lines().map(|line| format!("  {line}\n")).collect();
    let text = format!(
        "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n{indented}"
    );
    let file = config.controller.specs_dir.join(format!("{name}.yaml"));
    crate::spec::load(&file, &text, config)
}

/// Virtual time from `earlier` to `later`.
pub(super) fn between(earlier: Instant, later: Instant) -> Duration {
    later.duration_since(earlier)
}
