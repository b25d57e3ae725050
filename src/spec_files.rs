//! Creating, editing and deleting spec files: how the API (and `devbox delete`) change
//! desired state. The controller never sees these calls; it sees the files.
//!
//! Every write is checked against the config first, so nothing invalid reaches the
//! specs directory, and is atomic. One lock serialises edits, so the read-modify-write
//! cycles of concurrent requests never lose an update. The calls block (small files,
//! fsync): async callers run them in `spawn_blocking`.
//!
//! Port pins are the files' own, and settled under that lock too: a new spec without a
//! port gets the first free one written into it ([`NewPort::PickFree`], the API's create
//! routes), and a spec that pins a port another spec file pins, or that another server
//! runs on, is refused ([`SpecFileError::PortPinned`], [`SpecFileError::PortHeld`]), so
//! two racing writers never write one port. Free means: in
//! `server.code_server_port_range`, pinned by no spec file ([`crate::spec_ports`] reads
//! them), held by no running server (the controller's [`HeldPorts`], read-only), and with
//! `code_server.listen: tcp` bindable. An edit that keeps a file's port is never refused
//! for it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::{Config, ListenMode};
use crate::controller::ports::HeldPorts;
use crate::controller::scan;
use crate::diagnostic::Diagnostic;
use crate::fsutil;
use crate::identity::Caller;
use crate::spec::{self, DevServer, ServerSpec};
use crate::spec_ports::{FilePins, Holder, PinIndex};

#[derive(Debug, thiserror::Error)]
pub enum SpecFileError {
    #[error("a server named `{0}` already exists")]
    Exists(String),
    #[error("no spec file for server `{0}`")]
    NotFound(String),
    #[error("{}", crate::diagnostic::join(.0))]
    Invalid(Vec<Diagnostic>),
    /// The file would be larger than devbox reads: written, it would only be refused.
    #[error("the spec would be a file of {bytes} bytes; devbox reads spec files of at most {limit} bytes", limit = crate::yaml::MAX_YAML_BYTES)]
    TooLarge { bytes: usize },
    #[error("port {port} is pinned by the spec of server `{owner}`")]
    PortPinned { port: u16, owner: String },
    #[error("port {port} belongs to server `{owner}`, which runs on it")]
    PortHeld { port: u16, owner: String },
    #[error("no free port left in {start}-{end} (server.code_server_port_range)")]
    NoFreePort { start: u16, end: u16 },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a new spec gets its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewPort {
    /// As the spec says: the port it pins, or none (the controller then gives it a free
    /// one at each start). `PUT /specs/{name}` writes what its caller has.
    AsGiven,
    /// A spec that pins no port gets the first free one written into it.
    PickFree,
}

/// Why a new server's spec was not written.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// `controller.max_servers` spec files exist already.
    #[error(
        "devbox manages at most {max} servers (controller.max_servers) and {count} exist: \
         delete one, or raise the limit"
    )]
    Full { max: usize, count: usize },
    /// The user creating it owns `auth.max_servers_per_user` servers already.
    #[error(
        "{owner} owns {count} servers, the most a user may (auth.max_servers_per_user is {max}): \
         delete one first"
    )]
    OwnerFull {
        owner: String,
        max: usize,
        count: usize,
    },
    #[error(transparent)]
    File(#[from] SpecFileError),
}

/// How many servers the creator of a new one may own: users have a limit, admins none.
#[derive(Debug, Clone, Default)]
pub struct Quota {
    /// The user and their limit.
    limited: Option<(String, usize)>,
}

impl Quota {
    pub fn for_caller(caller: &Caller, config: &Config) -> Self {
        match caller.owner() {
            Some(user) => Self::limited(user.as_str(), config.auth.max_servers_per_user),
            None => Self::default(),
        }
    }

    /// `owner` may own at most `max` servers.
    pub fn limited(owner: &str, max: usize) -> Self {
        Self {
            limited: Some((owner.to_owned(), max)),
        }
    }
}

/// The specs directory, as a place to write to. Cloning shares the edit lock and the
/// write history.
#[derive(Clone)]
pub struct SpecFiles {
    dir: PathBuf,
    config: Arc<Config>,
    /// Serialises edits. It guards the index of the files' pins, which only an edit
    /// reads: a `std::sync::Mutex`, held by blocking callers only, never across an
    /// `.await`.
    edit_lock: Arc<Mutex<PinIndex>>,
    history: Arc<Mutex<History>>,
    /// The ports the controller's servers hold; none without a controller (the CLI).
    held: Option<HeldPorts>,
}

/// The latest revisions written per server, in order, so a caller waiting for its own
/// revision can tell that a later write superseded it (the controller may skip straight
/// to the newest).
#[derive(Default)]
struct History {
    next: u64,
    written: HashMap<String, VecDeque<(String, u64)>>,
}

/// Revisions remembered per server.
const HISTORY_PER_SERVER: usize = 32;

impl SpecFiles {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            dir: config.controller.specs_dir.clone(),
            config,
            edit_lock: Arc::new(Mutex::new(PinIndex::default())),
            history: Arc::new(Mutex::new(History::default())),
            held: None,
        }
    }

    /// Runs `take` with the ports the files pin as they are on disk now, under the edit
    /// lock: a port the controller gives a server whose spec pins none is taken while no
    /// file can be written, so it is never one a file written a moment ago pins (before
    /// the controller's scan has read that file). Blocking.
    pub fn with_current_pins<T>(&self, take: impl FnOnce(&FilePins) -> T) -> std::io::Result<T> {
        let mut index = self.lock();
        let pins = index.read(&self.dir)?;
        Ok(take(&pins))
    }

    /// These files, written beside a controller whose servers hold `held`: no new pin
    /// takes a port one of them runs on.
    pub fn with_held_ports(self, held: HeldPorts) -> Self {
        Self {
            held: Some(held),
            ..self
        }
    }

    /// The file of server `name`: an existing `.yaml` or `.yml`, else the `.yaml` to create.
    pub fn path(&self, name: &str) -> PathBuf {
        let yml = self.dir.join(format!("{name}.yml"));
        if yml.exists() {
            yml
        } else {
            self.dir.join(format!("{name}.yaml"))
        }
    }

    /// Checks `server` as the file it would become, returning its resolved form.
    pub fn check(&self, server: &DevServer) -> Result<ServerSpec, SpecFileError> {
        self.prepare(server).map(|(resolved, _)| resolved)
    }

    /// `server` checked and resolved as the file it would become, and that file's text.
    fn prepare(&self, server: &DevServer) -> Result<(ServerSpec, String), SpecFileError> {
        let path = self.path(&server.metadata.name);
        let text = render(server, &path)?;
        let resolved =
            spec::resolve(&path, &text, server, &self.config).map_err(SpecFileError::Invalid)?;
        Ok((resolved, text))
    }

    /// Writes a new spec file, with its port as `port` says; fails with
    /// [`SpecFileError::Exists`] when the name is taken (two racing creators of one
    /// name: exactly one wins), with [`CreateError::Full`] when
    /// `controller.max_servers` spec files exist, with [`CreateError::OwnerFull`] when
    /// the creator owns as many as `quota` allows (both counted under the edit lock, so
    /// racing creators cannot overshoot together), and with a port error when the port
    /// it pins is taken or none is free.
    pub fn create(
        &self,
        server: &DevServer,
        quota: Quota,
        port: NewPort,
    ) -> Result<ServerSpec, CreateError> {
        // Everything but the port, before waiting for the lock.
        self.check(server)?;
        let mut pins = self.lock();
        if self.path(&server.metadata.name).exists() {
            return Err(SpecFileError::Exists(server.metadata.name.clone()).into());
        }
        // Every file counts, valid or not: the controller admits files in the same way.
        let count = self
            .names()
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let max = self.config.controller.max_servers;
        if count >= max {
            return Err(CreateError::Full { max, count });
        }
        self.check_quota(&quota)?;
        let mut server = server.clone();
        self.settle_port(&mut pins, &mut server, None, port)?;
        let (resolved, text) = self.prepare(&server)?;
        match fsutil::create_atomic(&resolved.file, text.as_bytes()) {
            Ok(true) => {
                self.record(&resolved);
                Ok(resolved)
            }
            Ok(false) => Err(SpecFileError::Exists(server.metadata.name.clone()).into()),
            Err(source) => Err(SpecFileError::Io {
                path: resolved.file.clone(),
                source,
            }
            .into()),
        }
    }

    /// Reads server `name`'s spec, applies `edit`, checks and writes the result.
    pub fn update(
        &self,
        name: &str,
        edit: impl FnOnce(&mut DevServer),
    ) -> Result<ServerSpec, SpecFileError> {
        self.update_where(name, |_| true, edit)
    }

    /// [`SpecFiles::update`], if the spec as it is on disk, under the lock, passes
    /// `may_edit` (whose server it is); otherwise the spec is as good as not there
    /// ([`SpecFileError::NotFound`]). Checked anywhere else, the answer could be out of
    /// date by the time of the write.
    pub fn update_where(
        &self,
        name: &str,
        may_edit: impl FnOnce(&DevServer) -> bool,
        edit: impl FnOnce(&mut DevServer),
    ) -> Result<ServerSpec, SpecFileError> {
        let mut pins = self.lock();
        let path = self.path(name);
        let mut server = read(&path, name)?;
        if !may_edit(&server) {
            return Err(SpecFileError::NotFound(name.to_owned()));
        }
        let pinned_before = server.spec.port;
        edit(&mut server);
        self.write_edit(&mut pins, path, pinned_before, server)
    }

    /// Hands server `name` to a new owner: if its spec, under the lock, passes
    /// `may_claim` and the new owner may have one more server (`quota`), `edit` is
    /// applied and written. `None`: the spec is gone or did not pass, and nothing was
    /// written. Two claims of one server never both succeed.
    pub fn claim(
        &self,
        name: &str,
        quota: &Quota,
        may_claim: impl FnOnce(&DevServer) -> bool,
        edit: impl FnOnce(&mut DevServer),
    ) -> Result<Option<ServerSpec>, CreateError> {
        let mut pins = self.lock();
        let path = self.path(name);
        let mut server = match read(&path, name) {
            Ok(server) => server,
            Err(SpecFileError::NotFound(_) | SpecFileError::Invalid(_)) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        if !may_claim(&server) {
            return Ok(None);
        }
        self.check_quota(quota)?;
        let pinned_before = server.spec.port;
        edit(&mut server);
        Ok(Some(self.write_edit(
            &mut pins,
            path,
            pinned_before,
            server,
        )?))
    }

    /// Writes `server`, edited from the file at `path` that pinned `pinned_before`,
    /// under the edit lock (whose pin index is `pins`).
    fn write_edit(
        &self,
        pins: &mut PinIndex,
        path: PathBuf,
        pinned_before: Option<u16>,
        mut server: DevServer,
    ) -> Result<ServerSpec, SpecFileError> {
        self.settle_port(pins, &mut server, pinned_before, NewPort::AsGiven)?;
        let text = render(&server, &path)?;
        let resolved =
            spec::resolve(&path, &text, &server, &self.config).map_err(SpecFileError::Invalid)?;
        fsutil::write_atomic(&path, text.as_bytes())
            .map_err(|source| SpecFileError::Io { path, source })?;
        self.record(&resolved);
        Ok(resolved)
    }

    /// Removes server `name`'s spec file if, under the lock, it passes `may_delete`.
    /// Whether it was removed.
    pub fn delete_where(
        &self,
        name: &str,
        may_delete: impl FnOnce(&DevServer) -> bool,
    ) -> Result<bool, SpecFileError> {
        let _guard = self.lock();
        let path = self.path(name);
        match read(&path, name) {
            Ok(server) if may_delete(&server) => {}
            Ok(_) | Err(SpecFileError::NotFound(_)) => return Ok(false),
            Err(err) => return Err(err),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(SpecFileError::Io { path, source }),
        }
    }

    /// Reads server `name`'s spec.
    pub fn read(&self, name: &str) -> Result<DevServer, SpecFileError> {
        read(&self.path(name), name)
    }

    /// Removes server `name`'s spec file.
    pub fn delete(&self, name: &str) -> Result<(), SpecFileError> {
        let _guard = self.lock();
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(SpecFileError::NotFound(name.to_owned()))
            }
            Err(source) => Err(SpecFileError::Io { path, source }),
        }
    }

    /// Whether the user `quota` limits may own one more server (under the lock).
    fn check_quota(&self, quota: &Quota) -> Result<(), CreateError> {
        if let Some((owner, max)) = &quota.limited {
            let count = self.owned_by(owner);
            if count >= *max {
                return Err(CreateError::OwnerFull {
                    owner: owner.clone(),
                    max: *max,
                    count,
                });
            }
        }
        Ok(())
    }

    /// How many spec files name `owner` as theirs (files that cannot be read count
    /// for nobody; a name with both a `.yaml` and a `.yml` file counts once).
    fn owned_by(&self, owner: &str) -> usize {
        self.names()
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .iter()
            .filter_map(|name| read(&self.path(name), name).ok())
            .filter(|server| server.metadata.owner.as_deref() == Some(owner))
            .count()
    }

    /// Names of all spec files (valid or not).
    pub fn names(&self) -> Vec<String> {
        scan::spec_files(&self.dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
            .collect()
    }

    /// Whether `observed` (a revision the controller acted on) is `ours` or was written
    /// through these files after it.
    pub fn is_at_or_after(&self, name: &str, observed: &str, ours: &str) -> bool {
        if observed == ours {
            return true;
        }
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let Some(written) = history.written.get(name) else {
            return false;
        };
        let order = |revision: &str| {
            written
                .iter()
                .rev()
                .find(|(r, _)| r == revision)
                .map(|(_, n)| *n)
        };
        matches!((order(observed), order(ours)), (Some(seen), Some(mine)) if seen > mine)
    }

    fn record(&self, spec: &ServerSpec) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.next += 1;
        let order = history.next;
        let written = history.written.entry(spec.name.clone()).or_default();
        if written.len() == HISTORY_PER_SERVER {
            written.pop_front();
        }
        written.push_back((spec.revision.clone(), order));
    }

    /// Settles the port of `server`, about to be written under the edit lock (whose
    /// pin index is `pins`), whose file pinned `pinned_before`: a port it newly pins
    /// must be nobody else's, and with [`NewPort::PickFree`] a spec without one gets
    /// the first free port.
    fn settle_port(
        &self,
        pins: &mut PinIndex,
        server: &mut DevServer,
        pinned_before: Option<u16>,
        choice: NewPort,
    ) -> Result<(), SpecFileError> {
        let wanted = server.spec.port;
        let unchanged = wanted.is_some() && wanted == pinned_before;
        if unchanged || (wanted.is_none() && choice == NewPort::AsGiven) {
            return Ok(());
        }
        let file_pins = pins.read(&self.dir).map_err(|source| SpecFileError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let held = self
            .held
            .as_ref()
            .map(HeldPorts::snapshot)
            .unwrap_or_default();
        let name = &server.metadata.name;
        match wanted {
            Some(port) => match file_pins.holder(port, name, &held) {
                None => Ok(()),
                Some(Holder::File(owner)) => Err(SpecFileError::PortPinned { port, owner }),
                Some(Holder::Server(owner)) => Err(SpecFileError::PortHeld { port, owner }),
            },
            None => {
                let range = self.config.server.code_server_port_range;
                let probe = self.config.code_server.listen == ListenMode::Tcp;
                let port = file_pins.first_free(range, name, &held, probe).ok_or(
                    SpecFileError::NoFreePort {
                        start: range.start,
                        end: range.end,
                    },
                )?;
                server.spec.port = Some(port);
                Ok(())
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PinIndex> {
        self.edit_lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read(path: &Path, name: &str) -> Result<DevServer, SpecFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpecFileError::NotFound(name.to_owned()));
        }
        Err(source) => {
            return Err(SpecFileError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    DevServer::from_yaml(path, &text).map_err(|diag| SpecFileError::Invalid(vec![diag]))
}

fn render(server: &DevServer, path: &Path) -> Result<String, SpecFileError> {
    let text = server
        .to_yaml()
        .map_err(|err| SpecFileError::Invalid(vec![Diagnostic::file(path, err.to_string())]))?;
    if text.len() > crate::yaml::MAX_YAML_BYTES {
        return Err(SpecFileError::TooLarge { bytes: text.len() });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::ports::PortAllocator;
    use crate::spec::{ApiVersion, DesiredState, DevServerSpec, Kind, Metadata};

    fn server(name: &str) -> DevServer {
        DevServer {
            api_version: ApiVersion::V1,
            kind: Kind::DevServer,
            metadata: Metadata {
                name: name.into(),
                display_name: None,
                id: None,
                owner: None,
                labels: Default::default(),
                annotations: Default::default(),
            },
            spec: DevServerSpec {
                state: DesiredState::Stopped,
                port: None,
                extension_groups: vec![],
                extensions: vec![],
                user_settings: Default::default(),
                workspace: None,
                template: None,
                env: Default::default(),
                restart_policy: Default::default(),
                idle_timeout: None,
                resources: None,
                runtime: None,
            },
        }
    }

    fn files(dir: &Path) -> SpecFiles {
        files_within(dir, 500)
    }

    fn files_within(dir: &Path, max_servers: usize) -> SpecFiles {
        let mut config = Config::embedded_default();
        config.controller.specs_dir = dir.to_owned();
        config.controller.max_servers = max_servers;
        SpecFiles::new(Arc::new(config))
    }

    const RANGE: crate::config::PortRange = crate::config::PortRange {
        start: 8010,
        end: 8013,
    };

    /// Files whose port range is [`RANGE`], beside a controller whose allocator is
    /// returned (instances on Unix sockets: no port is probed).
    fn files_with_ports(dir: &Path) -> (SpecFiles, Arc<PortAllocator>) {
        let mut config = Config::embedded_default();
        config.controller.specs_dir = dir.to_owned();
        config.server.code_server_port_range = RANGE;
        let ports = Arc::new(PortAllocator::new(RANGE, ListenMode::Socket));
        let files = SpecFiles::new(Arc::new(config)).with_held_ports(ports.held_view());
        (files, ports)
    }

    fn pinning(name: &str, port: u16) -> DevServer {
        let mut server = server(name);
        server.spec.port = Some(port);
        server
    }

    fn port_of(dir: &Path, name: &str) -> Option<u16> {
        let text = std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap();
        DevServer::from_yaml(Path::new(name), &text)
            .unwrap()
            .spec
            .port
    }

    /// The race the chaos test caught: a file written a moment before the controller's
    /// next scan pins a port the controller's allocator does not know is pinned; a
    /// server whose spec pins none, started in that moment, must not be given it.
    #[test]
    fn a_port_for_a_spec_without_one_is_never_one_a_new_file_pins() {
        let dir = tempfile::tempdir().unwrap();
        let (files, ports) = files_with_ports(dir.path());
        let created = files
            .create(&server("fresh"), Quota::default(), NewPort::PickFree)
            .unwrap();
        assert_eq!(created.port, Some(RANGE.start));
        // The allocator has not heard of the file (no scan since): alone, it would give
        // that port away.
        let name = "unpinned";
        let given = files
            .with_current_pins(|pins| {
                ports.reserve(name, None, None, &|port| pins.pinned_by_other(port, name))
            })
            .unwrap()
            .unwrap();
        assert_ne!(given, RANGE.start, "the new file's port was given away");
        assert_eq!(given, RANGE.start + 1);
    }

    #[test]
    fn a_picked_port_is_pinned_by_no_file_and_held_by_no_server() {
        let dir = tempfile::tempdir().unwrap();
        let (files, ports) = files_with_ports(dir.path());
        // A hand-written file pins 8010; an unpinned server runs on 8011.
        std::fs::write(
            dir.path().join("hand.yaml"),
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: hand\nspec:\n  port: 8010\n",
        )
        .unwrap();
        ports.claim("runner", 8011);
        let created = files
            .create(&server("a"), Quota::default(), NewPort::PickFree)
            .unwrap();
        assert_eq!(created.port, Some(8012));
        assert_eq!(port_of(dir.path(), "a"), Some(8012), "the pick is written");
        files
            .create(&server("b"), Quota::default(), NewPort::PickFree)
            .unwrap();
        assert_eq!(port_of(dir.path(), "b"), Some(8013));
        let err = files
            .create(&server("c"), Quota::default(), NewPort::PickFree)
            .unwrap_err();
        assert!(
            matches!(
                err,
                CreateError::File(SpecFileError::NoFreePort {
                    start: 8010,
                    end: 8013
                })
            ),
            "{err}"
        );
        assert!(!dir.path().join("c.yaml").exists());
        // As given: no pin is made up.
        files
            .create(&server("d"), Quota::default(), NewPort::AsGiven)
            .unwrap();
        assert_eq!(port_of(dir.path(), "d"), None);
        // A server that stopped gave its port back.
        ports.release("runner");
        files
            .create(&server("e"), Quota::default(), NewPort::PickFree)
            .unwrap();
        assert_eq!(port_of(dir.path(), "e"), Some(8011));
    }

    #[test]
    fn racing_creators_write_distinct_ports() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _ports) = files_with_ports(dir.path());
        let picked: Vec<Option<u16>> = std::thread::scope(|scope| {
            let creators: Vec<_> = (0..4)
                .map(|i| {
                    let files = files.clone();
                    scope.spawn(move || {
                        files
                            .create(
                                &server(&format!("s{i}")),
                                Quota::default(),
                                NewPort::PickFree,
                            )
                            .unwrap()
                            .port
                    })
                })
                .collect();
            creators.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let distinct: std::collections::BTreeSet<_> = picked.iter().flatten().collect();
        assert_eq!(distinct.len(), 4, "{picked:?}");
    }

    #[test]
    fn a_port_another_file_pins_or_another_server_runs_on_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (files, ports) = files_with_ports(dir.path());
        files
            .create(&pinning("a", 8010), Quota::default(), NewPort::AsGiven)
            .unwrap();
        let err = files
            .create(&pinning("b", 8010), Quota::default(), NewPort::PickFree)
            .unwrap_err();
        assert!(
            matches!(&err, CreateError::File(SpecFileError::PortPinned { port: 8010, owner }) if owner == "a"),
            "{err}"
        );
        assert!(!dir.path().join("b.yaml").exists());

        files
            .create(&pinning("b", 8011), Quota::default(), NewPort::AsGiven)
            .unwrap();
        let before = std::fs::read_to_string(dir.path().join("b.yaml")).unwrap();
        let err = files.update("b", |s| s.spec.port = Some(8010)).unwrap_err();
        assert!(
            matches!(err, SpecFileError::PortPinned { port: 8010, .. }),
            "{err}"
        );
        ports.claim("runner", 8012);
        let err = files.update("b", |s| s.spec.port = Some(8012)).unwrap_err();
        assert!(
            matches!(&err, SpecFileError::PortHeld { port: 8012, owner } if owner == "runner"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("b.yaml")).unwrap(),
            before,
            "a refused edit writes nothing"
        );
        files.update("b", |s| s.spec.port = Some(8013)).unwrap();
        assert_eq!(port_of(dir.path(), "b"), Some(8013));
    }

    #[test]
    fn an_edit_that_keeps_its_port_is_never_refused_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _ports) = files_with_ports(dir.path());
        files
            .create(&pinning("a", 8010), Quota::default(), NewPort::AsGiven)
            .unwrap();
        // A copy made by hand: two files pin 8010 (the scan decides which one runs).
        let copy = std::fs::read_to_string(dir.path().join("a.yaml"))
            .unwrap()
            .replace("name: a", "name: b");
        std::fs::write(dir.path().join("b.yaml"), copy).unwrap();
        files
            .update("a", |s| s.spec.state = DesiredState::Running)
            .unwrap();
        files
            .update("b", |s| s.spec.state = DesiredState::Running)
            .unwrap();
        assert_eq!(port_of(dir.path(), "b"), Some(8010));
    }

    #[test]
    fn no_new_file_past_the_cap_but_existing_ones_still_change() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_within(dir.path(), 2);
        files
            .create(&server("a"), Quota::default(), NewPort::AsGiven)
            .unwrap();
        std::fs::write(dir.path().join("b.yaml"), "not even a spec").unwrap();
        let err = files
            .create(&server("c"), Quota::default(), NewPort::AsGiven)
            .unwrap_err();
        assert!(
            matches!(err, CreateError::Full { max: 2, count: 2 }),
            "{err}"
        );
        assert!(err.to_string().contains("controller.max_servers"), "{err}");
        assert!(!dir.path().join("c.yaml").exists());
        assert!(matches!(
            files.create(&server("a"), Quota::default(), NewPort::AsGiven),
            Err(CreateError::File(SpecFileError::Exists(_)))
        ));
        files
            .update("a", |s| s.spec.state = DesiredState::Running)
            .unwrap();
    }

    #[test]
    fn a_user_owns_at_most_their_quota_and_admins_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        let ada = crate::identity::UserName::parse("ada").unwrap();
        let as_ada = Caller::User(ada);
        let mut config = Config::embedded_default();
        config.auth.max_servers_per_user = 1;
        let owned = |name: &str, owner: &str| {
            let mut server = server(name);
            server.metadata.owner = Some(owner.into());
            server
        };
        let quota = || Quota::for_caller(&as_ada, &config);
        let admin = || Quota::for_caller(&Caller::Admin, &config);
        files
            .create(&owned("b1", "bob"), admin(), NewPort::AsGiven)
            .unwrap();
        files
            .create(&owned("a1", "ada"), quota(), NewPort::AsGiven)
            .unwrap();
        let err = files
            .create(&owned("a2", "ada"), quota(), NewPort::AsGiven)
            .unwrap_err();
        assert!(
            matches!(&err, CreateError::OwnerFull { owner, max: 1, count: 1 } if owner == "ada"),
            "{err}"
        );
        assert!(
            err.to_string().contains("auth.max_servers_per_user"),
            "{err}"
        );
        assert!(!dir.path().join("a2.yaml").exists());
        files
            .create(&owned("a3", "ada"), admin(), NewPort::AsGiven)
            .unwrap();
    }

    #[test]
    fn create_update_delete() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        files
            .create(&server("a"), Quota::default(), NewPort::AsGiven)
            .unwrap();
        assert!(matches!(
            files.create(&server("a"), Quota::default(), NewPort::AsGiven),
            Err(CreateError::File(SpecFileError::Exists(_)))
        ));
        let updated = files
            .update("a", |s| s.spec.state = DesiredState::Running)
            .unwrap();
        assert_eq!(updated.state, DesiredState::Running);
        assert_eq!(files.read("a").unwrap().spec.state, DesiredState::Running);
        assert_eq!(files.names(), ["a"]);
        let again = files
            .update("a", |s| s.spec.state = DesiredState::Stopped)
            .unwrap();
        assert!(files.is_at_or_after("a", &again.revision, &updated.revision));
        assert!(!files.is_at_or_after("a", &updated.revision, &again.revision));
        files.delete("a").unwrap();
        assert!(matches!(files.delete("a"), Err(SpecFileError::NotFound(_))));
    }

    #[test]
    fn a_guarded_update_leaves_a_spec_that_fails_its_check_alone() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        let mut theirs = server("t");
        theirs.metadata.owner = Some("bob".into());
        files
            .create(&theirs, Quota::default(), NewPort::AsGiven)
            .unwrap();
        let before = std::fs::read_to_string(dir.path().join("t.yaml")).unwrap();
        let is_adas = |s: &DevServer| s.metadata.owner.as_deref() == Some("ada");
        let err = files
            .update_where("t", is_adas, |s| s.metadata.owner = Some("ada".into()))
            .unwrap_err();
        assert!(matches!(err, SpecFileError::NotFound(_)), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("t.yaml")).unwrap(),
            before
        );
    }

    #[test]
    fn invalid_edits_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        files
            .create(&server("b"), Quota::default(), NewPort::AsGiven)
            .unwrap();
        let before = std::fs::read_to_string(dir.path().join("b.yaml")).unwrap();
        let err = files
            .update("b", |s| s.spec.extension_groups.push("nope".into()))
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown extension group `nope`"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("b.yaml")).unwrap(),
            before
        );
        let mut bad = server("c");
        bad.spec.port = Some(1);
        assert!(matches!(
            files.create(&bad, Quota::default(), NewPort::AsGiven),
            Err(CreateError::File(SpecFileError::Invalid(_)))
        ));
        assert!(!dir.path().join("c.yaml").exists());
    }
}
