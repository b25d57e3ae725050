//! Observed status of every server: the types, and the store that persists them.
//!
//! The controller is the only writer. Each server's status lives in memory and in
//! `<state_dir>/servers/<name>/status.json` (written atomically, only when it changed,
//! by a background writer thread so that no caller waits for the disk), so `devbox get`
//! works without a running devbox and a restarted controller knows which processes to
//! adopt. Readers (API, CLI) take snapshots.

mod instance;
mod writer;

pub use instance::{InstanceRecord, ProcessRecord, SlurmJobRecord};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::diagnostic::Diagnostic;
use crate::endpoint::Endpoint;
use crate::fsutil;
use crate::identity::UserName;
use writer::Writer;

/// Where a server is in its life cycle.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Pending,
    Provisioning,
    Starting,
    Running,
    Stopping,
    Stopped,
    /// Crashed, or could not be started; see `message` and `next_retry_at`.
    Failed,
    /// The spec has never been valid; see `spec_error`.
    Invalid,
}

impl Phase {
    /// Every phase, in the order of a server's life.
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Provisioning,
        Phase::Starting,
        Phase::Running,
        Phase::Stopping,
        Phase::Stopped,
        Phase::Failed,
        Phase::Invalid,
    ];

    /// The phase's name as status files write it (`provisioning`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Provisioning => "provisioning",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
            Phase::Invalid => "invalid",
        }
    }

    /// The status word of the original REST API: `running`, `stopped`, `failed`, `starting`.
    /// A server being stopped still runs until its processes are gone.
    pub fn api_word(self) -> &'static str {
        match self {
            Phase::Running | Phase::Stopping => "running",
            Phase::Pending | Phase::Provisioning | Phase::Starting => "starting",
            Phase::Stopped => "stopped",
            Phase::Failed | Phase::Invalid => "failed",
        }
    }
}

/// The outcome of one extension install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExtensionStatus {
    pub extension: String,
    /// `pending`, `installed`, `failed`, or `skipped` (the start was interrupted first).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the proxy needs of a server: whether it runs, and where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub phase: Phase,
    /// The route number of `/vscode/<port>/`.
    pub port: Option<u16>,
    /// See [`ServerStatus::endpoint`].
    pub endpoint: Option<Endpoint>,
    /// Who may open it (and the admin).
    pub owner: Option<UserName>,
}

impl Route {
    fn of(status: &ServerStatus) -> Self {
        Self {
            name: status.name.clone(),
            phase: status.phase,
            port: status.port,
            endpoint: status.endpoint(),
            owner: status.owner.clone(),
        }
    }
}

/// Everything devbox knows about one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub name: String,
    pub id: Uuid,
    pub display_name: String,
    /// Whose server this is (`metadata.owner`); absent: the admin's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserName>,
    /// The template item it was made from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The template whose pool it waits in, unclaimed (see [`crate::pool`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    pub phase: Phase,
    /// Why the server is in this phase (failure reason, current provisioning step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// What runs the server, tagged by backend (status files from before backends
    /// wrote a local process record under `process`, read as one).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "process",
        deserialize_with = "instance::read_record"
    )]
    pub instance: Option<InstanceRecord>,
    /// When the current process became healthy (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_path: Option<PathBuf>,
    /// Hash of the spec the current process was started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
    /// The extensions the spec asks for, as labels.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Outcome of each extension install.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension_results: Vec<ExtensionStatus>,
    /// Revision of the spec the controller last finished acting on (start, stop, …):
    /// a client that wrote a spec waits for this to reach its revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_revision: Option<String>,
    /// Why the current spec file was not applied (the server keeps its last applied state).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spec_errors: Vec<Diagnostic>,
    /// Restarts after crashes since devbox started managing this server.
    #[serde(default)]
    pub restarts: u32,
    /// Crashes in a row without a healthy period between.
    #[serde(default)]
    pub consecutive_crashes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<String>,
    /// The server exited (as its restart policy allows) or was culled for being idle,
    /// and stays down while its spec has this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted_revision: Option<String>,
    pub updated_at: String,
}

impl ServerStatus {
    pub fn new(name: &str, id: Uuid, display_name: &str) -> Self {
        Self {
            name: name.to_owned(),
            id,
            display_name: display_name.to_owned(),
            owner: None,
            template: None,
            pool: None,
            phase: Phase::Pending,
            message: None,
            port: None,
            instance: None,
            started_at: None,
            workspace_path: None,
            applied_hash: None,
            extensions: Vec::new(),
            extension_results: Vec::new(),
            observed_revision: None,
            spec_errors: Vec::new(),
            restarts: 0,
            consecutive_crashes: 0,
            last_exit: None,
            next_retry_at: None,
            halted_revision: None,
            updated_at: now_rfc3339(),
        }
    }

    /// Where devbox connects to this server's instance (see
    /// [`InstanceRecord::endpoint`]); else, with no instance, its port on loopback.
    pub fn endpoint(&self) -> Option<Endpoint> {
        match &self.instance {
            Some(instance) => instance.endpoint(self.port),
            None => self.port.map(Endpoint::Tcp),
        }
    }

    /// The local process serving the server, when one does.
    pub fn local_process(&self) -> Option<&ProcessRecord> {
        self.instance.as_ref().and_then(InstanceRecord::local)
    }

    /// Seconds since the current process became healthy.
    pub fn uptime_seconds(&self) -> Option<f64> {
        let started = humantime::parse_rfc3339(self.started_at.as_deref()?).ok()?;
        SystemTime::now()
            .duration_since(started)
            .ok()
            .map(|d| d.as_secs_f64())
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot write status of {name} to {path}: {source}")]
    Write {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the status writer: {0}")]
    Writer(std::io::Error),
    #[error("cannot read the state directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The in-memory status of all servers plus its on-disk copy.
///
/// Cloning is cheap (an `Arc`). The map sits behind a `std::sync::RwLock` because every
/// critical section is a short copy in or out, never held across an `.await`.
#[derive(Clone)]
pub struct StatusStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    shared: Arc<Shared>,
    /// Ports servers gave up when they stopped, with their names, until another server
    /// takes the port: a browser tab still open on the old `/vscode/<port>/` is then
    /// told which server stopped, instead of that the port is unknown. Memory only.
    released_ports: Mutex<HashMap<u16, String>>,
    /// Bumped on every change, so waiters (API handlers, tests) can watch for convergence.
    generation: watch::Sender<u64>,
    writer: Writer,
}

/// What the store and its writer thread both read.
struct Shared {
    state_dir: PathBuf,
    servers: RwLock<BTreeMap<String, ServerStatus>>,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ServerStatus>> {
        self.servers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Brings server `name`'s file in line with memory: the current status written
    /// atomically, or the file removed when the server is forgotten.
    fn persist(&self, name: &str) -> Result<(), StatusError> {
        let path = status_path(&self.state_dir, name);
        let json = match self.read().get(name) {
            Some(status) => {
                Some(
                    serde_json::to_vec_pretty(status).map_err(|err| StatusError::Write {
                        name: name.to_owned(),
                        path: path.clone(),
                        source: err.into(),
                    })?,
                )
            }
            None => None,
        };
        let written = match json {
            Some(json) => path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| fsutil::write_atomic(&path, &json)),
            None => fsutil::remove_if_exists(&path),
        };
        written.map_err(|source| StatusError::Write {
            name: name.to_owned(),
            path,
            source,
        })
    }
}

impl StatusStore {
    /// Opens the store, loading every status file found under `state_dir/servers/`.
    /// Unreadable files are skipped with a warning (a torn file cannot exist, but a
    /// hand-edited one can).
    pub fn open(state_dir: &Path) -> Result<Self, StatusError> {
        let shared = Arc::new(Shared {
            state_dir: state_dir.to_owned(),
            servers: RwLock::new(load_all(state_dir)?),
        });
        let writer = Writer::spawn({
            let shared = shared.clone();
            move |name| shared.persist(name).map_err(|err| err.to_string())
        })
        .map_err(StatusError::Writer)?;
        Ok(Self {
            inner: Arc::new(StoreInner {
                shared,
                released_ports: Mutex::new(HashMap::new()),
                generation: watch::channel(0).0,
                writer,
            }),
        })
    }

    pub fn state_dir(&self) -> &Path {
        &self.inner.shared.state_dir
    }

    /// Blocks until every change made so far is on disk (or failed to get there).
    pub fn flush(&self) {
        self.inner.writer.flush();
    }

    /// Why status files cannot be written right now (a full or read-only disk).
    pub fn write_failure(&self) -> Option<String> {
        self.inner.writer.failure()
    }

    /// A copy of one server's status.
    pub fn get(&self, name: &str) -> Option<ServerStatus> {
        self.read().get(name).cloned()
    }

    /// A copy of every server's status, ordered by name.
    pub fn list(&self) -> Vec<ServerStatus> {
        self.read().values().cloned().collect()
    }

    /// `view` of every server's status, ordered by name, without copying the statuses
    /// first (`GET /servers` asks this of every server on every call). `view` runs under
    /// the read lock: keep it short.
    pub fn map_all<T>(&self, view: impl FnMut(&ServerStatus) -> T) -> Vec<T> {
        self.read().values().map(view).collect()
    }

    /// [`Self::map_all`] keeping only the `Some` results.
    pub fn filter_map_all<T>(&self, pick: impl FnMut(&ServerStatus) -> Option<T>) -> Vec<T> {
        self.read().values().filter_map(pick).collect()
    }

    /// The server owning `port`, without copying its status (the proxy asks this on
    /// every request).
    pub fn by_port(&self, port: u16) -> Option<Route> {
        let servers = self.read();
        if let Some(holder) = servers.values().find(|s| s.port == Some(port)) {
            return Some(Route::of(holder));
        }
        // The server that last held the port, while it holds no other.
        let released = self.released_ports();
        let last = servers.get(released.get(&port)?)?;
        last.port.is_none().then(|| Route::of(last))
    }

    /// Server `name`'s route.
    pub fn route(&self, name: &str) -> Option<Route> {
        self.read().get(name).map(Route::of)
    }

    /// How many servers have a status.
    pub fn count(&self) -> usize {
        self.read().len()
    }

    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Replaces a server's status; when it differs from the stored one, the file is
    /// rewritten in the background. Memory changes at once, whatever the disk does, so
    /// the API keeps answering truthfully on a full disk.
    pub fn put(&self, mut status: ServerStatus) {
        let name = status.name.clone();
        {
            let current = self.read();
            let old = current.get(&name);
            if let Some(old) = old {
                let mut unchanged = old.clone();
                unchanged.updated_at.clone_from(&status.updated_at);
                if unchanged == status {
                    return;
                }
            }
            let mut released = self.released_ports();
            if let Some(old_port) = old
                .and_then(|old| old.port)
                .filter(|&p| status.port != Some(p))
            {
                released.insert(old_port, name.clone());
            }
            if let Some(port) = status.port {
                released.remove(&port);
            }
        }
        status.updated_at = now_rfc3339();
        self.write_map().insert(name.clone(), status);
        self.inner.writer.mark(&name);
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// Applies `change` to a server's status (creating it from `init` when absent).
    pub fn update(
        &self,
        name: &str,
        init: impl FnOnce() -> ServerStatus,
        change: impl FnOnce(&mut ServerStatus),
    ) -> ServerStatus {
        let mut status = self.get(name).unwrap_or_else(init);
        change(&mut status);
        self.put(status.clone());
        status
    }

    /// Forgets a server: its status file is removed in the background (its data
    /// directories are not touched; [`Self::flush`] before removing them).
    pub fn remove(&self, name: &str) {
        self.write_map().remove(name);
        self.released_ports().retain(|_, holder| holder != name);
        self.inner.writer.mark(name);
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// A number that changes whenever any status changes.
    pub fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// A copy of the first status (by name) that `matches`.
    pub fn find(&self, mut matches: impl FnMut(&ServerStatus) -> bool) -> Option<ServerStatus> {
        self.read().values().find(|s| matches(s)).cloned()
    }

    /// A receiver that changes whenever any status changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ServerStatus>> {
        self.inner.shared.read()
    }

    fn released_ports(&self) -> MutexGuard<'_, HashMap<u16, String>> {
        // A map of names: nothing a panicking holder could leave half-changed.
        self.inner
            .released_ports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ServerStatus>> {
        self.inner
            .shared
            .servers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `<state_dir>/servers/<name>`: a server's data, logs and status.
pub fn server_dir(state_dir: &Path, name: &str) -> PathBuf {
    crate::data_dirs::instance_root(state_dir, name)
}

fn status_path(state_dir: &Path, name: &str) -> PathBuf {
    server_dir(state_dir, name).join("status.json")
}

/// Server `name`'s status as last written under `state_dir` (`None`: there is none,
/// or it cannot be read), for readers outside the running devbox such as the CLI.
pub fn load(state_dir: &Path, name: &str) -> Option<ServerStatus> {
    let text = std::fs::read(status_path(state_dir, name)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Reads every status file under `state_dir` (for `devbox get` and controller start).
pub fn load_all(state_dir: &Path) -> Result<BTreeMap<String, ServerStatus>, StatusError> {
    let dir = state_dir.join("servers");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(StatusError::ReadDir { path: dir, source }),
    };
    let mut servers = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path().join("status.json");
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        match serde_json::from_slice::<ServerStatus>(&text) {
            Ok(status) => {
                servers.insert(status.name.clone(), status);
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "ignoring unreadable status file")
            }
        }
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_only_changes_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let store = StatusStore::open(dir.path()).unwrap();
        let mut rx = store.subscribe();
        let mut status = ServerStatus::new("a", Uuid::nil(), "a");
        status.phase = Phase::Running;
        status.port = Some(8010);
        store.put(status.clone());
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        store.put(status.clone());
        assert!(
            !rx.has_changed().unwrap(),
            "an unchanged status must not be rewritten"
        );
        store.flush();

        let reopened = StatusStore::open(dir.path()).unwrap();
        let loaded = reopened.get("a").unwrap();
        assert_eq!(loaded.port, Some(8010));
        assert_eq!(loaded.phase, Phase::Running);

        reopened.remove("a");
        reopened.flush();
        assert!(StatusStore::open(dir.path()).unwrap().get("a").is_none());
    }

    fn with(name: &str, phase: Phase, port: Option<u16>) -> ServerStatus {
        let mut status = ServerStatus::new(name, Uuid::nil(), name);
        status.phase = phase;
        status.port = port;
        status
    }

    #[test]
    fn a_released_port_names_its_stopped_server_until_another_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = StatusStore::open(dir.path()).unwrap();
        let holder = |port| store.by_port(port).map(|route| (route.name, route.phase));
        store.put(with("a", Phase::Running, Some(8010)));
        store.put(with("a", Phase::Stopped, None));
        assert_eq!(holder(8010), Some(("a".into(), Phase::Stopped)));

        store.put(with("a", Phase::Running, Some(8011)));
        assert_eq!(holder(8010), None, "a runs elsewhere now");
        store.put(with("a", Phase::Stopped, None));
        assert_eq!(holder(8011), Some(("a".into(), Phase::Stopped)));

        store.put(with("b", Phase::Starting, Some(8011)));
        assert_eq!(holder(8011), Some(("b".into(), Phase::Starting)));
        store.put(with("b", Phase::Stopped, None));
        store.remove("b");
        assert_eq!(holder(8011), None, "a deleted server names no port");
    }

    /// A status file as a devbox from before sockets wrote it: no `socket` in its
    /// process record. Its instance listens on its port, and is adopted as such.
    #[test]
    fn an_old_status_file_means_tcp_on_its_port() {
        let dir = tempfile::tempdir().unwrap();
        let server = server_dir(dir.path(), "old");
        std::fs::create_dir_all(&server).unwrap();
        let old = r#"{
  "name": "old",
  "id": "00000000-0000-0000-0000-000000000000",
  "display_name": "old",
  "phase": "running",
  "port": 8012,
  "process": {"pid": 4242, "pgid": 4242, "start_ticks": 99, "instance": "a-tag"},
  "started_at": "2026-12-01T10:00:00.000Z",
  "applied_hash": "abc",
  "extensions": [],
  "restarts": 0,
  "consecutive_crashes": 0,
  "updated_at": "2026-12-01T10:00:00.000Z"
}"#;
        std::fs::write(server.join("status.json"), old).unwrap();
        let store = StatusStore::open(dir.path()).unwrap();
        let status = store.get("old").expect("an old status file loads");
        let process = status.local_process().cloned().expect("its process record");
        assert_eq!((process.pid, process.socket), (4242, None));
        assert_eq!(status.endpoint(), Some(Endpoint::Tcp(8012)));
        let route = store.by_port(8012).unwrap();
        assert_eq!(route.endpoint, Some(Endpoint::Tcp(8012)));

        // Written again, a record without a socket stays without one; with one, the
        // socket is where devbox connects.
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["instance"]["backend"], "local", "{json}");
        assert!(json["instance"].get("socket").is_none(), "{json}");
        assert!(json.get("process").is_none(), "{json}");
        let mut on_socket = status;
        if let Some(InstanceRecord::Local(process)) = on_socket.instance.as_mut() {
            process.socket = Some(PathBuf::from("/state/sockets/old.sock"));
        }
        let json = serde_json::to_string(&on_socket).unwrap();
        let back: ServerStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.endpoint(),
            Some(Endpoint::Unix(PathBuf::from("/state/sockets/old.sock")))
        );
    }
}
