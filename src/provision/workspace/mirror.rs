//! Local mirrors of the repositories workspaces are cloned from. Thirty servers of one
//! workshop template clone one repository: the remote is fetched once into a bare
//! mirror under the state dir, and each workspace is cloned from the mirror, its objects
//! hard-linked (they never change) and its work tree written fresh. The clone's
//! `origin` is the real URL, so `git pull` in the workspace works as after any clone.
//!
//! A mirror fetched less than [`FRESH_FOR`] ago is used as it is; older, it is fetched
//! again before the next clone. One repository's mirror is fetched under a write lock and
//! cloned from under a read lock, so clones never see a fetch half done. Clones that find
//! the mirror stale queue on a separate lock to fetch it, not as writers: a queue of
//! writers would let clones run only one at a time. A mirror no clone has used for a
//! long while is removed ([`GitMirrors::prune`]); workspaces do not need it (their
//! objects are their own hard links).
//!
//! Every clone goes through the mirrors, so they also carry the [`GitPolicy`] that
//! every clone obeys (size on disk, which hosts git may reach), and where clones run
//! ([`Runner`]: in child processes under devbox). A fetch killed half way, or one that
//! leaves the mirror larger than a workspace may be, removes the mirror ([`discard`]).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use git2::{FetchOptions, Repository};

use super::{GitPolicy, WorkspaceError};
use crate::fsutil;

/// How long a fetched mirror serves clones before it is fetched again: long enough for
/// a workshop's burst of clones, short enough that a push is seen by the next server.
const FRESH_FOR: Duration = Duration::from_secs(15);
/// Touched after each fetch: its age is the mirror's.
const FETCHED_MARKER: &str = "devbox-fetched";
/// Prefix of a mirror being made; clean-up leaves such folders alone.
const STAGING_PREFIX: &str = ".staging-";
const MIRROR_REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

pub struct GitMirrors {
    dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<MirrorLocks>>>,
    policy: GitPolicy,
    runner: Runner,
}

/// Where the fetches and checkouts of clones run.
pub(super) enum Runner {
    /// In the calling thread: for unit tests, whose executable is not devbox.
    #[cfg_attr(not(test), allow(dead_code))]
    InProcess,
    /// In a child process of this executable (`devbox __git-fetch`, see `child`).
    Child(PathBuf),
}

#[derive(Default)]
struct MirrorLocks {
    /// Held by the one clone that fetches; the others wait here, then find it fresh.
    fetching: Mutex<()>,
    /// Written by a fetch, read by clones.
    contents: RwLock<()>,
}

impl GitMirrors {
    /// Mirrors kept in `dir` (created when the first one is).
    pub fn new(dir: PathBuf) -> Self {
        Self::with_policy(dir, GitPolicy::default())
    }

    /// Mirrors kept in `dir`, for clones that obey `policy`. Their fetches and
    /// checkouts run in child processes of this executable, which must be devbox (its
    /// hidden `__git-fetch` subcommand).
    pub fn with_policy(dir: PathBuf, policy: GitPolicy) -> Self {
        // /proc/self/exe is what current_exe reads; spawned, it is this executable too.
        let exe = std::env::current_exe().unwrap_or_else(|err| {
            tracing::warn!(%err, "cannot tell devbox's own executable; using /proc/self/exe");
            PathBuf::from("/proc/self/exe")
        });
        Self {
            dir,
            locks: Mutex::default(),
            policy,
            runner: Runner::Child(exe),
        }
    }

    /// Mirrors whose clones run in the calling thread, with no child process to kill at
    /// the deadline (unit tests).
    #[cfg(test)]
    pub(super) fn in_process(dir: PathBuf, policy: GitPolicy) -> Self {
        Self {
            dir,
            locks: Mutex::default(),
            policy,
            runner: Runner::InProcess,
        }
    }

    /// What every clone through these mirrors obeys.
    pub fn policy(&self) -> &GitPolicy {
        &self.policy
    }

    /// Where the fetches and checkouts of clones through these mirrors run.
    pub(super) fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Calls `clone_from` with the path of `url`'s mirror, after `fetch` has fetched
    /// into it unless it is fresh (`fetch` runs under the write lock, `clone_from` under
    /// a read lock; an error from `fetch` releases both and is returned).
    pub(super) fn with_mirror<T>(
        &self,
        url: &str,
        fetch: impl FnOnce(&Path) -> Result<(), WorkspaceError>,
        clone_from: impl FnOnce(&Path) -> Result<T, WorkspaceError>,
    ) -> Result<T, WorkspaceError> {
        let name = mirror_name(url);
        let mirror = self.dir.join(&name);
        let locks = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(locks.entry(name.clone()).or_default())
        };
        let fresh = is_fresh(&mirror);
        crate::metrics::METRICS
            .provisioning
            .git_mirror_lookups
            .with_label_values(&[if fresh { "hit" } else { "miss" }])
            .inc();
        if !fresh {
            let _fetching = locks
                .fetching
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Another clone may have fetched it while this one waited.
            if !is_fresh(&mirror) {
                let _writing = locks
                    .contents
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                fs::create_dir_all(&self.dir).map_err(|e| {
                    WorkspaceError::io(format!("cannot create {}", self.dir.display()), e)
                })?;
                fetch(&mirror)?;
            }
        }
        let _reading = locks
            .contents
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        clone_from(&mirror)
    }

    /// Removes the mirrors no clone has used for longer than `max_age` (each under its
    /// locks, so no clone or fetch of it is under way); returns how many. Blocking.
    pub fn prune(&self, max_age: Duration) -> usize {
        let mut removed = 0;
        for (name, mirror) in
            fsutil::unused_entries(&self.dir, FETCHED_MARKER, max_age, STAGING_PREFIX)
        {
            let locks = {
                let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
                Arc::clone(locks.entry(name.clone()).or_default())
            };
            let _fetching = locks
                .fetching
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let _writing = locks
                .contents
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            // A clone may have fetched it while this waited.
            if !fsutil::unused_for(&mirror, FETCHED_MARKER, max_age) {
                continue;
            }
            match fsutil::remove_entry(&mirror) {
                Ok(()) => removed += 1,
                Err(err) => {
                    tracing::warn!(%err, mirror = %mirror.display(), "cannot remove an unused git mirror")
                }
            }
        }
        removed
    }
}

/// Fetches every branch and tag of `url` into `mirror` (made first when missing, in a
/// staging folder beside it), and points the mirror's HEAD at the remote's default
/// branch, which clones check out when they name no branch. The caller holds the
/// mirror's write lock.
pub(super) fn fetch(
    url: &str,
    mirror: &Path,
    mut options: FetchOptions<'_>,
) -> Result<(), MirrorError> {
    let exists = mirror.join("HEAD").is_file();
    let staging = staging_of(mirror);
    let io = |what: &str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |e| MirrorError::Io(what, e)
    };
    let repo = if exists {
        Repository::open_bare(mirror)?
    } else {
        fsutil::remove_dir_if_exists(&staging).map_err(io("cannot remove", &staging))?;
        let repo = Repository::init_bare(&staging)?;
        repo.remote_with_fetch("origin", url, MIRROR_REFSPECS[0])?;
        repo
    };
    let mut remote = repo.find_remote("origin")?;
    if let Err(err) = remote.fetch(&MIRROR_REFSPECS, Some(&mut options), None) {
        // A download cut off (too large, too slow) is not kept until the next fetch.
        if !exists && let Err(e) = fsutil::remove_dir_if_exists(&staging) {
            tracing::warn!(err = %e, staging = %staging.display(), "cannot remove a failed mirror");
        }
        return Err(err.into());
    }
    if let Ok(default) = remote.default_branch()
        && let Ok(default) = default.as_str()
    {
        repo.set_head(default)?;
    }
    if !exists {
        fs::rename(&staging, mirror).map_err(io("cannot move into place", &staging))?;
    }
    fs::write(mirror.join(FETCHED_MARKER), b"").map_err(io("cannot mark as fetched", mirror))
}

/// Removes `mirror` and its staging folder: a fetch was cut off half way (a partial pack
/// may be left in it) or it grew too large. The next clone fetches it anew. The caller
/// holds the mirror's write lock.
pub(super) fn discard(mirror: &Path) {
    for path in [mirror.to_path_buf(), staging_of(mirror)] {
        if let Err(err) = fsutil::remove_dir_if_exists(&path) {
            tracing::warn!(%err, path = %path.display(), "cannot remove a git mirror");
        }
    }
}

/// Where a new mirror is made before it is moved to `mirror`.
pub(super) fn staging_of(mirror: &Path) -> PathBuf {
    let name = mirror
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    mirror.with_file_name(format!("{STAGING_PREFIX}{name}"))
}

pub(super) enum MirrorError {
    Git(git2::Error),
    Io(String, std::io::Error),
}

impl From<git2::Error> for MirrorError {
    fn from(error: git2::Error) -> Self {
        Self::Git(error)
    }
}

/// A file name for `url`'s mirror: no URL characters reach the file system.
fn mirror_name(url: &str) -> String {
    let hex = crate::digest::sha256_hex(url.as_bytes(), 16);
    format!("{hex}.git")
}

fn is_fresh(mirror: &Path) -> bool {
    fs::metadata(mirror.join(FETCHED_MARKER))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|fetched| fetched.elapsed().ok())
        .is_some_and(|age| age < FRESH_FOR)
}
