//! Workspace provisioning: turns a spec's `workspace` source (empty folder, git clone, zip
//! archive or an existing path) into the folder code-server opens.
//!
//! This module owns the public API (`WorkspaceSource`, `ZipLayout`, `ZipLimits`,
//! `WorkspaceError`, `prepare`, `check_zip`, `GitPolicy`) and the managed-target logic; the sources' own work lives in
//! `zip` (validating and extracting archives: zip-slip, symlinks, bombs), `git`
//! (cloning, reference checkout, timeouts) and `mirror` (one fetch of a repository for
//! many clones). Under devbox a clone's fetch and checkout run in a child process
//! that is killed at the time limit: `child` starts and watches it, `subcommand` is
//! the child (`devbox __git-fetch`, [`git_fetch_main`]), `job` what passes between them.
//!
//! Everything here is blocking; the reconciler runs it in `spawn_blocking`. A managed
//! workspace is built in a temporary directory beside its final place and renamed into
//! place only when complete, so a failure never leaves a partial workspace behind, and an
//! existing non-empty workspace is never touched (user work is never destroyed).

mod child;
mod git;
mod job;
mod mirror;
mod subcommand;
// In this file `zip::` names the child module; the zip crate is spelled `::zip::`.
mod zip;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use mirror::GitMirrors;
pub use subcommand::main as git_fetch_main;

/// Where a workspace's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceSource {
    /// An empty folder.
    Empty,
    /// A git clone; `reference` is a branch, tag or commit (None = the remote's default branch).
    Git {
        url: String,
        reference: Option<String>,
    },
    /// A zip archive to extract, laid out as `layout` says.
    Zip { archive: PathBuf, layout: ZipLayout },
    /// An existing folder, used as is (never created, never modified).
    Path(PathBuf),
}

impl WorkspaceSource {
    /// The kind of source, as metrics label it: `empty`, `git`, `zip`, `folder`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Git { .. } => "git",
            Self::Zip { .. } => "zip",
            Self::Path(_) => "folder",
        }
    }
}

/// How an archive's entries map onto the workspace folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZipLayout {
    /// Every entry lands at its own path: `src/main.py` becomes `<workspace>/src/main.py`
    /// (what the original tool did).
    #[default]
    AsIs,
    /// The archive must hold exactly one top-level folder (GitHub's `repo-main/`
    /// archives), whose content becomes the workspace; anything else is refused
    /// (`workspace.zip_strip_top_level` in a spec).
    StripTopLevel,
}

/// Limits applied to zip archives, both when checking and while extracting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    /// Most bytes the whole archive may expand to (declared, and counted while writing).
    pub max_total_bytes: u64,
    /// Most entries (files, folders) the archive may hold.
    pub max_entries: usize,
    /// Highest allowed uncompressed/compressed size ratio of one entry (see
    /// [`RATIO_EXEMPT_BYTES`]).
    pub max_ratio: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_total_bytes: 1 << 30,
            max_entries: 100_000,
            max_ratio: 200,
        }
    }
}

/// What every git clone obeys besides its time limit (see `git` for how).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GitPolicy {
    /// Most bytes a git workspace (its files and its `.git`) may take; also the most
    /// a fetch may download.
    pub max_workspace_bytes: u64,
    /// Whether git URLs may reach inside this host (`ui.workspace.allow_local_git_hosts`;
    /// see [`crate::git_url`]).
    pub allow_local_hosts: bool,
}

impl Default for GitPolicy {
    fn default() -> Self {
        GitPolicy {
            max_workspace_bytes: 1 << 30,
            allow_local_hosts: false,
        }
    }
}

/// Entries that expand to at most this many bytes are exempt from the ratio check: a small
/// file of repeated bytes (a blank template, a padded data file) legitimately compresses
/// more than 200:1, and it cannot be a bomb since the total size is limited anyway.
pub const RATIO_EXEMPT_BYTES: u64 = 1 << 20;

/// Why a workspace could not be prepared or an archive was refused.
#[derive(thiserror::Error, Debug)]
pub enum WorkspaceError {
    #[error("workspace path {} does not exist", path.display())]
    PathMissing { path: PathBuf },
    #[error("workspace path {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot read zip archive {}: {source}", archive.display())]
    ZipUnreadable {
        archive: PathBuf,
        #[source]
        source: ::zip::result::ZipError,
    },
    #[error("zip entry {entry:?} has an absolute path")]
    ZipAbsolutePath { entry: String },
    #[error("zip entry {entry:?} contains a '..' path component")]
    ZipParentDir { entry: String },
    #[error("zip entry {entry:?} has a path that is not safe to extract ({reason})")]
    ZipUnsafePath { entry: String, reason: &'static str },
    #[error("zip entry {entry:?} is a symbolic link; links are not allowed in workspace archives")]
    ZipSymlink { entry: String },
    #[error("zip entry {entry:?} is encrypted; encrypted archives are not supported")]
    ZipEncrypted { entry: String },
    #[error(
        "zip entry {entry:?} uses compression method {method}; only stored and deflate are supported"
    )]
    ZipUnsupportedCompression { entry: String, method: String },
    #[error("zip entry {entry:?} appears more than once in the archive")]
    ZipDuplicateEntry { entry: String },
    #[error("zip archive has {count} entries, more than the limit of {max}")]
    ZipTooManyEntries { count: usize, max: usize },
    #[error("zip archive would expand to {total} bytes, more than the limit of {max} bytes")]
    ZipTooLarge { total: u64, max: u64 },
    #[error(
        "zip entry {entry:?} expands from {compressed} to {size} bytes, a compression ratio above \
         the limit of {max_ratio} (possible zip bomb)"
    )]
    ZipRatioTooHigh {
        entry: String,
        size: u64,
        compressed: u64,
        max_ratio: u64,
    },
    #[error(
        "zip archive expanded to more than the limit of {max} bytes while extracting (entry {entry:?}); its declared sizes are wrong"
    )]
    ZipLimitExceededWhileWriting { entry: String, max: u64 },
    #[error(
        "zip entry {entry:?} holds more data than its declared size of {declared} bytes (corrupt or forged archive)"
    )]
    ZipEntryLargerThanDeclared { entry: String, declared: u64 },
    #[error(
        "zip_strip_top_level is set, but the archive {holds}; it must hold exactly one \
         top-level folder and nothing beside it (leave zip_strip_top_level out to keep the \
         archive's layout as it is)"
    )]
    ZipNoSingleTopLevelFolder { holds: String },
    #[error("zip entry {entry:?} is corrupt: {source}")]
    ZipCorruptEntry {
        entry: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "git clone of {url} (fetch and checkout) took longer than ui.workspace.git_timeout ({}s)",
        timeout.as_secs_f64()
    )]
    GitTimeout { url: String, timeout: Duration },
    #[error(
        "git workspace from {url} is larger than ui.workspace.max_workspace_mb ({max_mb} MB): {detail}"
    )]
    GitTooLarge {
        url: String,
        max_mb: u64,
        detail: String,
    },
    #[error(
        "git clone of {url} needed more memory than its limit of {limit_mb} MB (the server \
         sent more than a repository within ui.workspace.max_workspace_mb needs)"
    )]
    GitMemory { url: String, limit_mb: u64 },
    #[error("git clone of {url} failed: its git process {detail}")]
    GitProcess { url: String, detail: String },
    #[error(transparent)]
    GitHost {
        #[from]
        source: crate::git_url::GitHostError,
    },
    #[error("git clone of {url} failed: {}", source.message())]
    GitClone {
        url: String,
        #[source]
        source: git2::Error,
    },
    #[error("git reference {reference:?} (branch, tag or commit) not found in {url}")]
    GitReferenceNotFound { url: String, reference: String },
    #[error("git checkout of {reference:?} from {url} failed: {}", source.message())]
    GitCheckout {
        url: String,
        reference: String,
        #[source]
        source: git2::Error,
    },
}

impl WorkspaceError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        WorkspaceError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Blocking (the caller runs it in spawn_blocking). Returns the folder code-server should open.
///
/// `target` is the managed workspace folder (`state_dir/workspaces/<name>`); for `Path(p)` the
/// function only checks `p` is an existing directory and returns `p`.
/// Idempotent: if `target` already exists and is non-empty, it is kept as is (never
/// overwritten) and returned. Empty: create target. Git: clone into a temp dir beside
/// target, check out `reference`, rename into place. Zip: extract into a temp dir beside
/// target, then rename. A failure leaves no partial target behind. Git clones come from
/// `mirrors` when given (see [`GitMirrors`]) and obey their [`GitPolicy`], else straight
/// from the remote under the default policy.
pub fn prepare(
    source: &WorkspaceSource,
    target: &Path,
    limits: &ZipLimits,
    git_timeout: Duration,
    mirrors: Option<&GitMirrors>,
) -> Result<PathBuf, WorkspaceError> {
    match source {
        WorkspaceSource::Path(p) => existing_dir(p),
        WorkspaceSource::Empty => managed(target, None),
        WorkspaceSource::Git { url, reference } => {
            let server = target.file_name().unwrap_or_default().to_string_lossy();
            let _span = tracing::info_span!("git_workspace", %server).entered();
            let policy = mirrors.map(|m| *m.policy()).unwrap_or_default();
            managed(
                target,
                Some(&|tmp| {
                    git::clone(
                        url,
                        reference.as_deref(),
                        tmp,
                        git_timeout,
                        mirrors,
                        &policy,
                    )
                }),
            )
        }
        WorkspaceSource::Zip { archive, layout } => managed(
            target,
            Some(&|tmp| zip::extract(archive, *layout, tmp, limits)),
        ),
    }
}

type Fill<'a> = &'a dyn Fn(&Path) -> Result<(), WorkspaceError>;

fn existing_dir(p: &Path) -> Result<PathBuf, WorkspaceError> {
    match fs::metadata(p) {
        Ok(m) if m.is_dir() => Ok(p.to_path_buf()),
        Ok(_) => Err(WorkspaceError::NotADirectory {
            path: p.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(WorkspaceError::PathMissing {
            path: p.to_path_buf(),
        }),
        Err(e) => Err(WorkspaceError::io(
            format!("cannot inspect workspace path {}", p.display()),
            e,
        )),
    }
}

/// A managed workspace: kept when it has content; otherwise created empty (`fill` None) or
/// filled in a temp dir beside it and renamed into place.
fn managed(target: &Path, fill: Option<Fill<'_>>) -> Result<PathBuf, WorkspaceError> {
    if target_has_content(target)? {
        tracing::info!(
            target = %target.display(),
            "workspace folder already exists and is not empty; keeping it as is"
        );
        return Ok(target.to_path_buf());
    }
    let Some(fill) = fill else {
        fs::create_dir_all(target).map_err(|e| {
            WorkspaceError::io(
                format!("cannot create workspace folder {}", target.display()),
                e,
            )
        })?;
        return Ok(target.to_path_buf());
    };

    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)
        .map_err(|e| WorkspaceError::io(format!("cannot create folder {}", parent.display()), e))?;
    remove_stale_temp_dirs(&parent, target);
    let tmp = make_temp_dir(&parent, target)?;
    // On error `tmp` is dropped here and removed with whatever was written into it.
    fill(tmp.path())?;
    move_into_place(tmp, target)
}

/// Validate a zip archive without extracting it (the API uses it to reject uploads early).
/// Applies the same rules as extraction, to the archive's metadata and to its data
/// decompressed into nothing, and checks it fits `layout`; extraction enforces all of
/// it again on what it writes.
pub fn check_zip(
    archive: &Path,
    layout: ZipLayout,
    limits: &ZipLimits,
) -> Result<(), WorkspaceError> {
    zip::check(archive, layout, limits)
}

/// True when `target` exists and has at least one entry; an error when it exists but is not
/// a directory.
fn target_has_content(target: &Path) -> Result<bool, WorkspaceError> {
    match fs::read_dir(target) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(WorkspaceError::NotADirectory {
            path: target.to_path_buf(),
        }),
        Err(e) => Err(WorkspaceError::io(
            format!("cannot read workspace folder {}", target.display()),
            e,
        )),
    }
}

fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workspace".to_owned());
    format!(".{name}.devbox-tmp-")
}

fn make_temp_dir(parent: &Path, target: &Path) -> Result<tempfile::TempDir, WorkspaceError> {
    tempfile::Builder::new()
        .prefix(&temp_prefix(target))
        .tempdir_in(parent)
        .map_err(|e| {
            WorkspaceError::io(
                format!("cannot create a temporary folder in {}", parent.display()),
                e,
            )
        })
}

/// Temp dirs left by a previous run that was killed mid-clone; only this module creates
/// names with this prefix, and work on one target is serialised by its reconciler.
fn remove_stale_temp_dirs(parent: &Path, target: &Path) {
    let prefix = temp_prefix(target);
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            match fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed stale temporary workspace")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove stale temporary workspace")
                }
            }
        }
    }
}

fn move_into_place(tmp: tempfile::TempDir, target: &Path) -> Result<PathBuf, WorkspaceError> {
    // rename(2) replaces an empty directory, so an existing empty target is fine; on error the
    // TempDir is dropped and removed, leaving nothing behind.
    fs::rename(tmp.path(), target).map_err(|e| {
        WorkspaceError::io(
            format!("cannot move workspace into place at {}", target.display()),
            e,
        )
    })?;
    // The path now belongs to `target`; keep TempDir from trying to delete it.
    let _ = tmp.keep();
    Ok(target.to_path_buf())
}

/// Helpers shared by the tests of this module and of `zip` and `git`.
#[cfg(test)]
mod test_support {
    use std::fs;
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use ::zip::CompressionMethod;
    use ::zip::write::SimpleFileOptions;

    use super::{WorkspaceError, WorkspaceSource, ZipLayout, ZipLimits, prepare};

    pub(super) fn deflate() -> SimpleFileOptions {
        SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
    }

    pub(super) fn write_zip(path: &Path, build: impl FnOnce(&mut ::zip::ZipWriter<fs::File>)) {
        let file = fs::File::create(path).unwrap();
        let mut w = ::zip::ZipWriter::new(file);
        build(&mut w);
        w.finish().unwrap();
    }

    pub(super) fn add_file(w: &mut ::zip::ZipWriter<fs::File>, name: &str, data: &[u8]) {
        w.start_file(name, deflate()).unwrap();
        w.write_all(data).unwrap();
    }

    /// A new temporary folder holding the archive `name`, written by `build`. Returns the
    /// folder (removed when dropped) and the archive's path.
    pub(super) fn temp_zip(
        name: &str,
        build: impl FnOnce(&mut ::zip::ZipWriter<fs::File>),
    ) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join(name);
        write_zip(&archive, build);
        (dir, archive)
    }

    /// Asserts `parent` holds nothing but the entries named in `keep`.
    pub(super) fn no_leftovers(parent: &Path, keep: &[&str]) {
        let names: Vec<String> = fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !keep.contains(&n.as_str()))
            .collect();
        assert!(names.is_empty(), "unexpected leftovers: {names:?}");
    }

    /// `prepare` with the default zip limits and no time for git (for sources that do not
    /// clone).
    pub(super) fn prepare_default(
        source: &WorkspaceSource,
        target: &Path,
    ) -> Result<PathBuf, WorkspaceError> {
        prepare(source, target, &ZipLimits::default(), Duration::ZERO, None)
    }

    /// `prepare` of `archive` laid out as it is.
    pub(super) fn prepare_zip(
        archive: &Path,
        target: &Path,
        limits: &ZipLimits,
    ) -> Result<PathBuf, WorkspaceError> {
        prepare_zip_as(archive, ZipLayout::AsIs, target, limits)
    }

    pub(super) fn prepare_zip_as(
        archive: &Path,
        layout: ZipLayout,
        target: &Path,
        limits: &ZipLimits,
    ) -> Result<PathBuf, WorkspaceError> {
        prepare(
            &WorkspaceSource::Zip {
                archive: archive.to_path_buf(),
                layout,
            },
            target,
            limits,
            Duration::ZERO,
            None,
        )
    }

    /// Asserts `result`, of a `prepare` into `target`, is an error that `expected` accepts,
    /// and that the failure left nothing behind: no target, and nothing else (no temporary
    /// folder) in the target's parent, which the test must reserve for it. Returns the error.
    pub(super) fn assert_failed_cleanly(
        result: Result<PathBuf, WorkspaceError>,
        target: &Path,
        expected: impl FnOnce(&WorkspaceError) -> bool,
    ) -> WorkspaceError {
        let err = match result {
            Ok(got) => panic!("expected an error, got {}", got.display()),
            Err(err) => err,
        };
        assert!(expected(&err), "unexpected error: {err}");
        assert!(!target.exists(), "{} exists", target.display());
        no_leftovers(target.parent().unwrap(), &[]);
        err
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::test_support::{add_file, prepare_default, prepare_zip, temp_zip};
    use super::{WorkspaceError, WorkspaceSource, ZipLayout, ZipLimits};

    #[test]
    fn existing_non_empty_target_is_kept() {
        let (dir, archive) = temp_zip("a.zip", |w| add_file(w, "mine.txt", b"from zip"));
        let target = dir.path().join("t");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("mine.txt"), b"user work").unwrap();
        for source in [
            WorkspaceSource::Zip {
                archive,
                layout: ZipLayout::AsIs,
            },
            WorkspaceSource::Empty,
            WorkspaceSource::Git {
                url: "file:///nonexistent/repo".into(),
                reference: None,
            },
        ] {
            let got = prepare_default(&source, &target).unwrap();
            assert_eq!(got, target);
            assert_eq!(fs::read(target.join("mine.txt")).unwrap(), b"user work");
        }
    }

    #[test]
    fn empty_and_path_sources() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/c");
        let got = prepare_default(&WorkspaceSource::Empty, &target).unwrap();
        assert_eq!(got, target);
        assert!(target.is_dir());
        // Idempotent on an empty target too.
        prepare_default(&WorkspaceSource::Empty, &target).unwrap();

        let existing = dir.path().join("existing");
        fs::create_dir(&existing).unwrap();
        let unused = dir.path().join("unused");
        let got = prepare_default(&WorkspaceSource::Path(existing.clone()), &unused).unwrap();
        assert_eq!(got, existing);
        assert!(!unused.exists());

        let missing = WorkspaceSource::Path(dir.path().join("nope"));
        let err = prepare_default(&missing, &target).unwrap_err();
        assert!(matches!(err, WorkspaceError::PathMissing { .. }), "{err}");
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = prepare_default(&WorkspaceSource::Path(file), &target).unwrap_err();
        assert!(matches!(err, WorkspaceError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn stale_temp_dirs_are_cleaned() {
        let (dir, archive) = temp_zip("a.zip", |w| add_file(w, "f", b"x"));
        let stale = dir.path().join(".t.devbox-tmp-abc123");
        fs::create_dir_all(stale.join("x")).unwrap();
        let t = dir.path().join("t");
        prepare_zip(&archive, &t, &ZipLimits::default()).unwrap();
        assert!(!stale.exists());
        assert!(t.join("f").is_file());
    }
}
