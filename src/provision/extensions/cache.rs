//! The host-wide extension cache. Each distinct extension (a marketplace id, or a `.vsix`
//! file as it is now) is installed once by code-server's installer into its own entry
//! under the cache folder, and every server that wants it gets a copy: the entry's
//! folders recreated with their files hard-linked (copied where the file system refuses
//! a link), and the server's manifest updated. A workshop of thirty servers wanting three
//! extensions runs the installer three times, not ninety.
//!
//! One extension is installed and copied under its own lock, so servers wanting it wait
//! for the first install instead of running their own. A failed install is remembered
//! for [`FAILURE_MEMORY`]: the servers waiting for it fail with the same message at once.
//!
//! VS Code treats an installed extension's files as read-only (an update installs a new
//! folder), which is what makes sharing them through hard links safe; and it is why an
//! entry no server has asked for in a long while can go (see [`Cache::prune`]) without
//! touching the copies servers have.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as SyncMutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Mutex, Semaphore};

use super::ExtensionRef;
use super::installed::{self, Wanted};
use super::installer::{InstallerSettings, run_installer};
use crate::fsutil;
use crate::isolation::InstanceDir;

/// How long a failed install is answered from memory instead of being tried again.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// How long a marketplace id without a version is served from the cache before the
/// installer is asked for the latest version again.
const UNPINNED_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Prefix of an entry being installed; leftovers of an interrupted install are removed.
const STAGING_PREFIX: &str = ".staging-";
/// Touched in an entry each time a server gets the extension: its age is the entry's
/// time unused.
const USED_MARKER: &str = "devbox-used";

/// Which cache entry holds an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CacheKey {
    /// The entry's folder name.
    name: String,
    /// An unpinned marketplace id: the entry goes stale after [`UNPINNED_MAX_AGE`].
    expires: bool,
}

impl CacheKey {
    /// A marketplace id by its lower-case id and version; a `.vsix` by its identity plus
    /// the file's size and modification time, so that a rebuilt file is installed anew.
    /// Reads the file's metadata (blocking).
    pub(super) fn of(extension: &ExtensionRef, wanted: &Wanted) -> io::Result<Self> {
        let version = wanted.version.as_deref().unwrap_or("latest");
        match extension {
            ExtensionRef::Marketplace(_) => Ok(Self {
                name: format!("marketplace-{}@{version}", wanted.id),
                expires: wanted.version.is_none(),
            }),
            ExtensionRef::Vsix(path) => {
                let metadata = std::fs::metadata(path)?;
                let modified = metadata
                    .modified()?
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                Ok(Self {
                    name: format!(
                        "vsix-{}@{version}-{:x}-{modified:x}",
                        wanted.id,
                        metadata.len()
                    ),
                    expires: false,
                })
            }
        }
    }
}

/// How a server got its copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Provided {
    /// This call ran the installer to fill the cache.
    Installed,
    /// The cache already held the extension.
    Copied,
}

#[derive(Default)]
struct Slot {
    last_failure: Option<(Instant, String)>,
}

pub(super) struct Cache {
    dir: PathBuf,
    slots: SyncMutex<HashMap<String, Arc<Mutex<Slot>>>>,
}

impl Cache {
    /// A cache in `dir`; removes what interrupted installs left there (blocking).
    pub(super) fn open(dir: PathBuf) -> Self {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(STAGING_PREFIX)
                    && let Err(err) = fsutil::remove_dir_if_exists(&entry.path())
                {
                    tracing::warn!(%err, path = %entry.path().display(), "cannot remove an interrupted extension install");
                }
            }
        }
        Self {
            dir,
            slots: SyncMutex::default(),
        }
    }

    /// Copies `extension` into the server's `extensions_dir` (when given), installing it
    /// into the cache first unless it is there already (then `permits` bounds the
    /// installers running on the host).
    pub(super) async fn provide(
        &self,
        key: &CacheKey,
        extension: &ExtensionRef,
        wanted: &Wanted,
        extensions_dir: Option<&InstanceDir>,
        settings: &InstallerSettings,
        permits: &Semaphore,
    ) -> Result<Provided, String> {
        let slot = self.slot(&key.name);
        let mut slot = slot.lock().await;
        let entry = self.dir.join(&key.name);
        let filled = {
            let (entry, wanted, expires) = (entry.clone(), wanted.clone(), key.expires);
            blocking(move || {
                let filled = is_filled(&entry, &wanted, expires);
                if filled {
                    mark_used(&entry);
                }
                Ok(filled)
            })
            .await?
        };
        let provided = if filled {
            Provided::Copied
        } else {
            if let Some((when, why)) = &slot.last_failure
                && when.elapsed() < FAILURE_MEMORY
            {
                return Err(why.clone());
            }
            let filled = self.fill(key, extension, wanted, settings, permits).await;
            slot.last_failure = filled
                .as_ref()
                .err()
                .map(|why| (Instant::now(), why.clone()));
            filled?;
            Provided::Installed
        };
        let Some(target) = extensions_dir.cloned() else {
            return Ok(provided);
        };
        let source = entry.join("extensions");
        blocking(move || copy_entry(&source, &target))
            .await
            .map_err(|why| format!("cannot copy it from the extension cache: {why}"))?;
        Ok(provided)
    }

    /// Removes the entries no server has been given for longer than `max_age`, each
    /// under its lock (an install or copy of it finishes first, and makes it young
    /// again). Servers keep their copies. Returns how many went.
    pub(super) async fn prune(&self, max_age: Duration) -> usize {
        let dir = self.dir.clone();
        let candidates = blocking(move || {
            Ok(fsutil::unused_entries(
                &dir,
                USED_MARKER,
                max_age,
                STAGING_PREFIX,
            ))
        })
        .await
        .unwrap_or_default();
        let mut removed = 0;
        for (name, entry) in candidates {
            let slot = self.slot(&name);
            let _held = slot.lock().await;
            let outcome = blocking(move || {
                let unused = fsutil::unused_for(&entry, USED_MARKER, max_age);
                if unused {
                    fsutil::remove_entry(&entry)?;
                }
                Ok(unused)
            })
            .await;
            match outcome {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(%err, entry = %name, "cannot remove an unused extension cache entry")
                }
            }
        }
        removed
    }

    fn slot(&self, name: &str) -> Arc<Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(name.to_owned()).or_default())
    }

    /// Runs the installer into a staging folder and, once the extension is there, makes
    /// it the entry (replacing a stale one). Called with the entry's lock held.
    async fn fill(
        &self,
        key: &CacheKey,
        extension: &ExtensionRef,
        wanted: &Wanted,
        settings: &InstallerSettings,
        permits: &Semaphore,
    ) -> Result<(), String> {
        let staging = self.dir.join(format!("{STAGING_PREFIX}{}", key.name));
        {
            let staging = staging.clone();
            blocking(move || {
                fsutil::remove_dir_if_exists(&staging)?;
                std::fs::create_dir_all(staging.join("extensions"))
            })
            .await
            .map_err(|why| format!("cannot prepare the extension cache: {why}"))?;
        }
        let Ok(_permit) = permits.acquire().await else {
            return Err("extension installs are shutting down".to_owned());
        };
        let arg: OsString = match extension {
            ExtensionRef::Marketplace(id) => id.into(),
            ExtensionRef::Vsix(path) => path.clone().into_os_string(),
        };
        let installed = run_installer(&arg, settings, &staging.join("extensions"), &staging).await;
        let entry = self.dir.join(&key.name);
        let wanted = wanted.clone();
        blocking(move || {
            if installed.is_ok() && installed::is_present(&staging.join("extensions"), &wanted) {
                for scratch in ["user-data", "xdg"] {
                    fsutil::remove_dir_if_exists(&staging.join(scratch))?;
                }
                fsutil::remove_dir_if_exists(&entry)?;
                std::fs::rename(&staging, &entry)?;
                mark_used(&entry);
                return Ok(installed);
            }
            fsutil::remove_dir_if_exists(&staging)?;
            Ok(installed.and(Err(format!(
                "the installer reported success but {} is not in its extensions folder",
                wanted.id
            ))))
        })
        .await
        .map_err(|why| format!("cannot update the extension cache: {why}"))?
    }
}

/// Marks `entry` as used now (for [`Cache::prune`]); a failure only makes the entry
/// look older than it is.
fn mark_used(entry: &Path) {
    if let Err(err) = fsutil::touch(&entry.join(USED_MARKER)) {
        tracing::debug!(%err, entry = %entry.display(), "cannot mark an extension cache entry used");
    }
}

/// Whether the cache entry holds the extension (and, for an unpinned id, is fresh).
fn is_filled(entry: &Path, wanted: &Wanted, expires: bool) -> bool {
    let extensions = entry.join("extensions");
    if !installed::is_present(&extensions, wanted) {
        return false;
    }
    !expires
        || std::fs::metadata(&extensions)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age < UNPINNED_MAX_AGE)
}

/// Gives `target` a copy of every extension the cache entry's folder holds (the wanted
/// one and whatever it brought along, such as the members of an extension pack), then
/// records them in `target`'s manifest.
///
/// Each copy is made in a staging folder beside `target` that only devbox enters,
/// given to `target`'s user there, and renamed into place: nothing inside `target`
/// (its user's to arrange) is resolved with devbox's rights but the copy's own name,
/// which a rename replaces rather than follows. The manifest is read and written with
/// the user's rights.
fn copy_entry(source: &Path, target: &InstanceDir) -> io::Result<()> {
    let entries = installed::read_manifest(source)?.unwrap_or_default();
    std::fs::create_dir_all(&target.path)?;
    let staging_dir = staging_dir_of(&target.path);
    std::fs::create_dir_all(&staging_dir)?;
    for entry in &entries {
        let Some(folder) = installed::entry_folder(entry) else {
            continue;
        };
        let staged = staging_dir.join(folder);
        fsutil::remove_dir_if_exists(&staged)?;
        fsutil::link_tree(&source.join(folder), &staged)?;
        if let Some(account) = &target.account {
            crate::isolation::handover::hand_over(&staged, account)?;
        }
        let copy = target.path.join(folder);
        fsutil::remove_dir_if_exists(&copy)?;
        std::fs::rename(&staged, &copy)?;
    }
    target
        .run(|dir| installed::record_copies(dir, &entries))
        .map_err(io::Error::other)?
}

/// `<parent>/.staging-<name>` of an extensions folder `<parent>/<name>`: devbox's own.
fn staging_dir_of(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!("{STAGING_PREFIX}{name}"))
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(err.to_string()),
        Err(err) => Err(format!("internal error: {err}")),
    }
}
