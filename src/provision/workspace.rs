//! Workspace provisioning: turns a spec's `workspace` source (empty folder, git clone, zip
//! archive or an existing path) into the folder code-server opens, and validates zip
//! archives (zip-slip, symlinks, bombs) before anything is written.
//!
//! Everything here is blocking; the reconciler runs it in `spawn_blocking`. A managed
//! workspace is built in a temporary directory beside its final place and renamed into
//! place only when complete, so a failure never leaves a partial workspace behind, and an
//! existing non-empty workspace is never touched (user work is never destroyed).

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{Cred, CredentialType, FetchOptions, Oid, RemoteCallbacks, Repository};
use zip::CompressionMethod;

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
    /// A zip archive to extract.
    Zip(PathBuf),
    /// An existing folder, used as is (never created, never modified).
    Path(PathBuf),
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
        source: zip::result::ZipError,
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
    #[error("zip entry {entry:?} is corrupt: {source}")]
    ZipCorruptEntry {
        entry: String,
        #[source]
        source: io::Error,
    },

    #[error("git clone of {url} timed out after {}s", timeout.as_secs_f64())]
    GitTimeout { url: String, timeout: Duration },
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
/// `target` is the managed workspace folder (state_dir/workspaces/<name>); for `Path(p)` the
/// function only checks `p` is an existing directory and returns `p`.
/// Idempotent: if `target` already exists and is non-empty, it is kept as is (never
/// overwritten) and returned. Empty: create target. Git: clone into a temp dir beside
/// target, check out `reference`, rename into place. Zip: extract into a temp dir beside
/// target, then rename. A failure leaves no partial target behind.
pub fn prepare(
    source: &WorkspaceSource,
    target: &Path,
    limits: &ZipLimits,
    git_timeout: Duration,
) -> Result<PathBuf, WorkspaceError> {
    match source {
        WorkspaceSource::Path(p) => existing_dir(p),
        WorkspaceSource::Empty => managed(target, None),
        WorkspaceSource::Git { url, reference } => managed(
            target,
            Some(&|tmp| git_clone(url, reference.as_deref(), tmp, git_timeout)),
        ),
        WorkspaceSource::Zip(archive) => {
            managed(target, Some(&|tmp| extract_zip(archive, tmp, limits)))
        }
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
/// Applies the same rules as extraction, from the archive's metadata; the byte limit is
/// additionally enforced on the real data while extracting.
pub fn check_zip(archive: &Path, limits: &ZipLimits) -> Result<(), WorkspaceError> {
    let mut zip = open_zip(archive)?;
    scan_zip(&mut zip, archive, limits).map(|_| ())
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

// ---------------------------------------------------------------------------------------
// zip

fn open_zip(archive: &Path) -> Result<zip::ZipArchive<fs::File>, WorkspaceError> {
    let file = fs::File::open(archive).map_err(|e| {
        WorkspaceError::io(format!("cannot open zip archive {}", archive.display()), e)
    })?;
    zip::ZipArchive::new(file).map_err(|source| WorkspaceError::ZipUnreadable {
        archive: archive.to_path_buf(),
        source,
    })
}

#[derive(Debug)]
struct PlannedEntry {
    index: usize,
    name: String,
    /// Relative path inside the workspace (after stripping a single top-level folder).
    rel: PathBuf,
    is_dir: bool,
    executable: bool,
    declared: u64,
}

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

/// Validates every entry and returns what to write. Rules are checked per entry in archive
/// order, then the totals.
fn scan_zip<R: Read + io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    archive: &Path,
    limits: &ZipLimits,
) -> Result<Vec<PlannedEntry>, WorkspaceError> {
    if zip.len() > limits.max_entries {
        return Err(WorkspaceError::ZipTooManyEntries {
            count: zip.len(),
            max: limits.max_entries,
        });
    }

    let mut planned: Vec<(PlannedEntry, Vec<String>)> = Vec::with_capacity(zip.len());
    let mut seen = HashSet::new();
    let mut dirs = HashSet::new();
    let mut total: u64 = 0;
    for index in 0..zip.len() {
        let entry = zip
            .by_index_data(index)
            .map_err(|source| WorkspaceError::ZipUnreadable {
                archive: archive.to_path_buf(),
                source,
            })?;
        // UTF-8, or CP437 for archives made by old tools (what the crate decodes).
        let name = match entry.name() {
            Ok(name) => name.into_owned(),
            Err(_) => {
                return Err(WorkspaceError::ZipUnsafePath {
                    entry: String::from_utf8_lossy(entry.name_raw()).into_owned(),
                    reason: "its name cannot be decoded",
                });
            }
        };
        let components = check_entry_path(&name)?;
        // The crate's own check, as a second opinion: never silently skip what it refuses.
        if entry.enclosed_name().is_none() {
            return Err(WorkspaceError::ZipUnsafePath {
                entry: name,
                reason: "it escapes the extraction folder",
            });
        }
        if entry
            .unix_mode()
            .is_some_and(|mode| mode & S_IFMT == S_IFLNK)
        {
            return Err(WorkspaceError::ZipSymlink { entry: name });
        }
        if entry.encrypted() {
            return Err(WorkspaceError::ZipEncrypted { entry: name });
        }
        let is_dir = entry.is_dir();
        if !is_dir
            && !matches!(
                entry.compression(),
                CompressionMethod::Stored | CompressionMethod::Deflated
            )
        {
            return Err(WorkspaceError::ZipUnsupportedCompression {
                entry: name,
                method: format!("{:?}", entry.compression()),
            });
        }
        let size = entry.size();
        let compressed = entry.compressed_size();
        if size > RATIO_EXEMPT_BYTES && size > compressed.saturating_mul(limits.max_ratio) {
            return Err(WorkspaceError::ZipRatioTooHigh {
                entry: name,
                size,
                compressed,
                max_ratio: limits.max_ratio,
            });
        }
        total = total.saturating_add(size);
        if total > limits.max_total_bytes {
            // Sum all declared sizes for the message.
            let all: u64 = (0..zip.len())
                .filter_map(|i| zip.by_index_data(i).ok().map(|e| e.size()))
                .fold(0u64, u64::saturating_add);
            return Err(WorkspaceError::ZipTooLarge {
                total: all,
                max: limits.max_total_bytes,
            });
        }
        // Two entries for one path would overwrite each other (a repeated folder is harmless).
        let key = components.join("/");
        let repeated = !key.is_empty() && !seen.insert(key.clone());
        let repeated_dir = is_dir && dirs.contains(&key);
        if repeated && !repeated_dir {
            return Err(WorkspaceError::ZipDuplicateEntry { entry: name });
        }
        if is_dir {
            dirs.insert(key);
        }
        let executable = !is_dir && entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
        planned.push((
            PlannedEntry {
                index,
                name,
                rel: PathBuf::new(),
                is_dir,
                executable,
                declared: size,
            },
            components,
        ));
    }
    if zip.has_duplicate_names() {
        // The crate keeps only one of several entries with the same name.
        return Err(WorkspaceError::ZipDuplicateEntry {
            entry: "(several entries share a name)".to_owned(),
        });
    }

    // A single top-level folder and nothing else (GitHub's "repo-main/" archives) is stripped.
    let strip = single_top_level_dir(&planned);
    let mut out = Vec::with_capacity(planned.len());
    for (mut entry, components) in planned {
        let parts = if strip {
            components.get(1..).unwrap_or_default()
        } else {
            &components[..]
        };
        if parts.is_empty() {
            // The archive root itself (or the stripped folder): nothing to write.
            continue;
        }
        entry.rel = parts.iter().collect();
        out.push(entry);
    }
    Ok(out)
}

fn single_top_level_dir(planned: &[(PlannedEntry, Vec<String>)]) -> bool {
    let mut top: Option<&str> = None;
    let mut any = false;
    for (entry, components) in planned {
        let Some(first) = components.first() else {
            continue;
        };
        any = true;
        match top {
            None => top = Some(first),
            Some(t) if t == first => {}
            Some(_) => return false,
        }
        if components.len() == 1 && !entry.is_dir {
            // A top-level file: not a wrapper folder.
            return false;
        }
    }
    any
}

/// Checks an entry's raw name and returns its normal path components. Both '/' and '\'
/// count as separators here, so a Windows-style `..\evil` is refused too.
fn check_entry_path(name: &str) -> Result<Vec<String>, WorkspaceError> {
    if name.contains('\0') {
        return Err(WorkspaceError::ZipUnsafePath {
            entry: name.to_owned(),
            reason: "it contains a NUL byte",
        });
    }
    let bytes = name.as_bytes();
    let drive_letter = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if name.starts_with('/') || name.starts_with('\\') || drive_letter {
        return Err(WorkspaceError::ZipAbsolutePath {
            entry: name.to_owned(),
        });
    }
    let mut components = Vec::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                return Err(WorkspaceError::ZipParentDir {
                    entry: name.to_owned(),
                });
            }
            other => components.push(other.to_owned()),
        }
    }
    // Belt and braces: what we will join must be made of normal components only.
    let joined: PathBuf = components.iter().collect();
    if joined
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(WorkspaceError::ZipUnsafePath {
            entry: name.to_owned(),
            reason: "it escapes the extraction folder",
        });
    }
    Ok(components)
}

fn extract_zip(archive: &Path, dest: &Path, limits: &ZipLimits) -> Result<(), WorkspaceError> {
    let mut zip = open_zip(archive)?;
    let plan = scan_zip(&mut zip, archive, limits)?;
    let mut written: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for entry in &plan {
        let path = dest.join(&entry.rel);
        if entry.is_dir {
            fs::create_dir_all(&path).map_err(|e| {
                WorkspaceError::io(
                    format!("cannot create folder for zip entry {:?}", entry.name),
                    e,
                )
            })?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                WorkspaceError::io(
                    format!("cannot create folder for zip entry {:?}", entry.name),
                    e,
                )
            })?;
        }
        let mut reader = zip.by_index(entry.index).map_err(|source| match source {
            zip::result::ZipError::Io(e) => WorkspaceError::ZipCorruptEntry {
                entry: entry.name.clone(),
                source: e,
            },
            other => WorkspaceError::ZipCorruptEntry {
                entry: entry.name.clone(),
                source: io::Error::other(other.to_string()),
            },
        })?;
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                WorkspaceError::io(
                    format!("cannot create file for zip entry {:?}", entry.name),
                    e,
                )
            })?;
        let mut entry_bytes: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // zip refuses to return more than the declared size (it fails the whole
                    // read that crosses it, with this message); report that clearly.
                    if e.kind() == io::ErrorKind::InvalidData
                        && e.to_string().contains("declared uncompressed size")
                    {
                        return Err(WorkspaceError::ZipEntryLargerThanDeclared {
                            entry: entry.name.clone(),
                            declared: entry.declared,
                        });
                    }
                    return Err(WorkspaceError::ZipCorruptEntry {
                        entry: entry.name.clone(),
                        source: e,
                    });
                }
            };
            entry_bytes = entry_bytes.saturating_add(n as u64);
            written = written.saturating_add(n as u64);
            if written > limits.max_total_bytes {
                return Err(WorkspaceError::ZipLimitExceededWhileWriting {
                    entry: entry.name.clone(),
                    max: limits.max_total_bytes,
                });
            }
            if entry_bytes > entry.declared {
                return Err(WorkspaceError::ZipEntryLargerThanDeclared {
                    entry: entry.name.clone(),
                    declared: entry.declared,
                });
            }
            out.write_all(&buf[..n]).map_err(|e| {
                WorkspaceError::io(format!("cannot write zip entry {:?}", entry.name), e)
            })?;
        }
        if entry.executable {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(|e| {
                WorkspaceError::io(
                    format!("cannot set permissions of zip entry {:?}", entry.name),
                    e,
                )
            })?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// git

/// Fetch options whose progress callbacks abort the transfer once `deadline` has passed.
fn fetch_options<'a>(deadline: Instant, timed_out: &'a std::cell::Cell<bool>) -> FetchOptions<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.transfer_progress(move |_| {
        if Instant::now() >= deadline {
            timed_out.set(true);
            return false;
        }
        true
    });
    callbacks.sideband_progress(move |_| {
        if Instant::now() >= deadline {
            timed_out.set(true);
            return false;
        }
        true
    });
    let mut attempts = 0u32;
    callbacks.credentials(move |_url, username, allowed| {
        // libgit2 calls this again after each failed attempt: try the agent and the default
        // credentials once each, then give up (there is no one to prompt).
        attempts += 1;
        if attempts > 2 {
            return Err(git2::Error::from_str(
                "authentication failed (no usable credentials: use a public URL, or an ssh key in the agent)",
            ));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            return Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::DEFAULT) {
            return Cred::default();
        }
        Err(git2::Error::from_str(
            "the repository asks for credentials; devbox clones public repositories (or ssh with an agent) only",
        ))
    });
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks);
    opts
}

fn git_clone(
    url: &str,
    reference: Option<&str>,
    into: &Path,
    timeout: Duration,
) -> Result<(), WorkspaceError> {
    let deadline = Instant::now() + timeout;
    let timed_out = std::cell::Cell::new(false);
    let map_err = |source: git2::Error, timed_out: bool| {
        if timed_out || (source.code() == git2::ErrorCode::User && Instant::now() >= deadline) {
            WorkspaceError::GitTimeout {
                url: url.to_owned(),
                timeout,
            }
        } else {
            WorkspaceError::GitClone {
                url: url.to_owned(),
                source,
            }
        }
    };

    let repo = {
        let mut builder = RepoBuilder::new();
        builder.fetch_options(fetch_options(deadline, &timed_out));
        builder
            .clone(url, into)
            .map_err(|e| map_err(e, timed_out.get()))?
    };
    let Some(reference) = reference else {
        return Ok(());
    };

    let checkout_err = |source: git2::Error| WorkspaceError::GitCheckout {
        url: url.to_owned(),
        reference: reference.to_owned(),
        source,
    };
    match resolve_reference(&repo, reference) {
        Some(Resolved::Branch(commit_id)) => {
            let commit = repo.find_commit(commit_id).map_err(checkout_err)?;
            let local = format!("refs/heads/{reference}");
            if repo.find_reference(&local).is_err() {
                let mut branch = repo
                    .branch(reference, &commit, false)
                    .map_err(checkout_err)?;
                // Tracking is a convenience for the user; a failure here does not matter.
                let _ = branch.set_upstream(Some(&format!("origin/{reference}")));
            }
            repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().force()))
                .map_err(checkout_err)?;
            repo.set_head(&local).map_err(checkout_err)?;
        }
        Some(Resolved::Detached(commit_id)) => detach_at(&repo, commit_id).map_err(checkout_err)?,
        None => {
            // A full commit id that no branch or tag reaches: ask the remote for it directly.
            let oid = if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
                Oid::from_str(reference).ok()
            } else {
                None
            };
            let Some(oid) = oid else {
                return Err(WorkspaceError::GitReferenceNotFound {
                    url: url.to_owned(),
                    reference: reference.to_owned(),
                });
            };
            let fetched = repo.find_remote("origin").and_then(|mut remote| {
                let mut opts = fetch_options(deadline, &timed_out);
                remote.fetch(&[reference], Some(&mut opts), None)
            });
            if let Err(e) = fetched {
                if timed_out.get() {
                    return Err(map_err(e, true));
                }
                return Err(WorkspaceError::GitReferenceNotFound {
                    url: url.to_owned(),
                    reference: reference.to_owned(),
                });
            }
            if repo.find_commit(oid).is_err() {
                return Err(WorkspaceError::GitReferenceNotFound {
                    url: url.to_owned(),
                    reference: reference.to_owned(),
                });
            }
            detach_at(&repo, oid).map_err(checkout_err)?;
        }
    }
    Ok(())
}

enum Resolved {
    Branch(Oid),
    Detached(Oid),
}

fn resolve_reference(repo: &Repository, reference: &str) -> Option<Resolved> {
    let peel = |name: &str| {
        repo.find_reference(name)
            .and_then(|r| r.peel_to_commit())
            .map(|c| c.id())
            .ok()
    };
    if let Some(id) = peel(&format!("refs/remotes/origin/{reference}")) {
        return Some(Resolved::Branch(id));
    }
    if let Some(id) = peel(&format!("refs/tags/{reference}")) {
        return Some(Resolved::Detached(id));
    }
    repo.revparse_single(reference)
        .and_then(|o| o.peel_to_commit())
        .map(|c| Resolved::Detached(c.id()))
        .ok()
}

fn detach_at(repo: &Repository, id: Oid) -> Result<(), git2::Error> {
    let commit = repo.find_commit(id)?;
    repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().force()))?;
    repo.set_head_detached(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use zip::write::SimpleFileOptions;

    fn deflate() -> SimpleFileOptions {
        SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
    }

    fn write_zip(path: &Path, build: impl FnOnce(&mut zip::ZipWriter<fs::File>)) {
        let file = fs::File::create(path).unwrap();
        let mut w = zip::ZipWriter::new(file);
        build(&mut w);
        w.finish().unwrap();
    }

    fn add_file(w: &mut zip::ZipWriter<fs::File>, name: &str, data: &[u8]) {
        w.start_file(name, deflate()).unwrap();
        w.write_all(data).unwrap();
    }

    fn no_leftovers(parent: &Path, keep: &[&str]) {
        let names: Vec<String> = fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !keep.contains(&n.as_str()))
            .collect();
        assert!(names.is_empty(), "unexpected leftovers: {names:?}");
    }

    #[test]
    fn zip_extracts_nested_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.zip");
        write_zip(&archive, |w| {
            w.add_directory("src/", deflate()).unwrap();
            add_file(w, "src/main.rs", b"fn main() {}");
            add_file(w, "src/deep/x/y.txt", b"deep");
            add_file(w, "README.md", b"hello");
            w.start_file("run.sh", deflate().unix_permissions(0o755))
                .unwrap();
            w.write_all(b"#!/bin/sh\n").unwrap();
        });
        check_zip(&archive, &ZipLimits::default()).unwrap();
        let target = dir.path().join("ws").join("alice");
        let got = prepare(
            &WorkspaceSource::Zip(archive),
            &target,
            &ZipLimits::default(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(got, target);
        assert_eq!(
            fs::read(target.join("src/main.rs")).unwrap(),
            b"fn main() {}"
        );
        assert_eq!(fs::read(target.join("src/deep/x/y.txt")).unwrap(), b"deep");
        assert_eq!(fs::read(target.join("README.md")).unwrap(), b"hello");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(target.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
        no_leftovers(&dir.path().join("ws"), &["alice"]);
    }

    #[test]
    fn zip_single_top_level_dir_is_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("repo-main.zip");
        write_zip(&archive, |w| {
            w.add_directory("repo-main/", deflate()).unwrap();
            add_file(w, "repo-main/a.txt", b"a");
            add_file(w, "repo-main/sub/b.txt", b"b");
        });
        let target = dir.path().join("t");
        prepare(
            &WorkspaceSource::Zip(archive),
            &target,
            &ZipLimits::default(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"a");
        assert_eq!(fs::read(target.join("sub/b.txt")).unwrap(), b"b");
        assert!(!target.join("repo-main").exists());
    }

    #[test]
    fn zip_single_top_level_dir_without_dir_entry_is_stripped_but_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        // No explicit directory entry: still one wrapper folder.
        let archive = dir.path().join("a.zip");
        write_zip(&archive, |w| add_file(w, "wrap/x.txt", b"x"));
        let target = dir.path().join("t1");
        prepare(
            &WorkspaceSource::Zip(archive),
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap();
        assert!(target.join("x.txt").is_file());

        // A single top-level file is kept as it is.
        let archive = dir.path().join("b.zip");
        write_zip(&archive, |w| add_file(w, "only.txt", b"x"));
        let target = dir.path().join("t2");
        prepare(
            &WorkspaceSource::Zip(archive),
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap();
        assert!(target.join("only.txt").is_file());

        // Wrapper folder plus a sibling file: not stripped.
        let archive = dir.path().join("c.zip");
        write_zip(&archive, |w| {
            add_file(w, "wrap/x.txt", b"x");
            add_file(w, "top.txt", b"t");
        });
        let target = dir.path().join("t3");
        prepare(
            &WorkspaceSource::Zip(archive),
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap();
        assert!(target.join("wrap/x.txt").is_file());
        assert!(target.join("top.txt").is_file());
    }

    #[test]
    fn zip_slip_is_rejected_and_nothing_written_outside() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        fs::create_dir(&ws).unwrap();
        let archive = dir.path().join("evil.zip");
        write_zip(&archive, |w| {
            add_file(w, "good.txt", b"ok");
            add_file(w, "../evil", b"pwned");
        });
        let err = check_zip(&archive, &ZipLimits::default()).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::ZipParentDir { ref entry } if entry == "../evil"),
            "{err}"
        );
        let target = ws.join("t");
        let err = prepare(
            &WorkspaceSource::Zip(archive),
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(matches!(err, WorkspaceError::ZipParentDir { .. }), "{err}");
        assert!(err.to_string().contains("../evil"));
        assert!(!dir.path().join("evil").exists());
        assert!(!ws.join("evil").exists());
        assert!(!target.exists());
        no_leftovers(&ws, &[]);

        // Enclosed but still using '..' and Windows separators: refused too.
        for name in ["a/../b.txt", "a\\..\\..\\evil"] {
            let archive = dir.path().join("evil2.zip");
            write_zip(&archive, |w| add_file(w, name, b"x"));
            let err = check_zip(&archive, &ZipLimits::default()).unwrap_err();
            assert!(
                matches!(err, WorkspaceError::ZipParentDir { .. }),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn zip_absolute_path_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("abs.zip");
        write_zip(&archive, |w| add_file(w, "/tmp/devbox-abs-test", b"x"));
        let err = check_zip(&archive, &ZipLimits::default()).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::ZipAbsolutePath { .. }),
            "{err}"
        );
        let target = dir.path().join("t");
        let err = prepare(
            &WorkspaceSource::Zip(archive),
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(
            matches!(err, WorkspaceError::ZipAbsolutePath { .. }),
            "{err}"
        );
        assert!(!target.exists());
        assert!(!Path::new("/tmp/devbox-abs-test").exists());
    }

    #[test]
    fn zip_symlink_entry_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("link.zip");
        write_zip(&archive, |w| {
            add_file(w, "a.txt", b"x");
            w.add_symlink("passwd", "/etc/passwd", deflate()).unwrap();
        });
        let err = check_zip(&archive, &ZipLimits::default()).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::ZipSymlink { ref entry } if entry == "passwd"),
            "{err}"
        );
        let target = dir.path().join("t");
        assert!(
            prepare(
                &WorkspaceSource::Zip(archive),
                &target,
                &ZipLimits::default(),
                Duration::ZERO
            )
            .is_err()
        );
        assert!(!target.exists());
        no_leftovers(dir.path(), &["link.zip"]);
    }

    #[test]
    fn zip_too_many_entries_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("many.zip");
        write_zip(&archive, |w| {
            for i in 0..11 {
                add_file(w, &format!("f{i}.txt"), b"x");
            }
        });
        let limits = ZipLimits {
            max_entries: 10,
            ..ZipLimits::default()
        };
        let err = check_zip(&archive, &limits).unwrap_err();
        assert!(
            matches!(
                err,
                WorkspaceError::ZipTooManyEntries { count: 11, max: 10 }
            ),
            "{err}"
        );
        let target = dir.path().join("t");
        assert!(
            prepare(
                &WorkspaceSource::Zip(archive.clone()),
                &target,
                &limits,
                Duration::ZERO
            )
            .is_err()
        );
        assert!(!target.exists());
        // At the limit it is fine.
        let limits = ZipLimits {
            max_entries: 11,
            ..ZipLimits::default()
        };
        check_zip(&archive, &limits).unwrap();
    }

    #[test]
    fn zip_total_declared_size_over_limit_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("big.zip");
        write_zip(&archive, |w| {
            add_file(w, "a", &[7u8; 600]);
            add_file(w, "b", &[7u8; 600]);
        });
        let limits = ZipLimits {
            max_total_bytes: 1000,
            ..ZipLimits::default()
        };
        let err = check_zip(&archive, &limits).unwrap_err();
        assert!(
            matches!(
                err,
                WorkspaceError::ZipTooLarge {
                    total: 1200,
                    max: 1000
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn zip_ratio_bomb_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("bomb.zip");
        let zeros = vec![0u8; 1 << 20];
        write_zip(&archive, |w| {
            w.start_file("zeros.bin", deflate()).unwrap();
            for _ in 0..50 {
                w.write_all(&zeros).unwrap();
            }
        });
        assert!(fs::metadata(&archive).unwrap().len() < 1 << 20);
        let err = check_zip(&archive, &ZipLimits::default()).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::ZipRatioTooHigh { ref entry, .. } if entry == "zeros.bin"),
            "{err}"
        );
        let target = dir.path().join("t");
        let err = prepare(
            &WorkspaceSource::Zip(archive),
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(
            matches!(err, WorkspaceError::ZipRatioTooHigh { .. }),
            "{err}"
        );
        assert!(!target.exists());
        no_leftovers(dir.path(), &["bomb.zip"]);
    }

    #[test]
    fn zip_small_highly_compressible_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("blank.zip");
        write_zip(&archive, |w| add_file(w, "blank.txt", &[b' '; 200_000]));
        check_zip(&archive, &ZipLimits::default()).unwrap();
    }

    /// Rewrites the declared uncompressed size of the only entry of a stored-deflate archive
    /// in both the local header (offset 22) and the central directory header (offset 24).
    fn forge_declared_size(bytes: &mut [u8], new_size: u32) {
        let local = 0usize;
        assert_eq!(&bytes[local..local + 4], b"PK\x03\x04");
        bytes[local + 22..local + 26].copy_from_slice(&new_size.to_le_bytes());
        let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bytes[central + 24..central + 28].copy_from_slice(&new_size.to_le_bytes());
    }

    #[test]
    fn zip_declared_size_lie_is_caught_while_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file("liar.txt", deflate()).unwrap();
            w.write_all(&[b'a'; 10_000]).unwrap();
            w.finish().unwrap();
        }
        let mut bytes = buf.into_inner();
        forge_declared_size(&mut bytes, 100);
        let archive = dir.path().join("liar.zip");
        fs::write(&archive, &bytes).unwrap();
        // Metadata looks fine...
        check_zip(&archive, &ZipLimits::default()).unwrap();
        // ...but the real data is bigger than declared.
        let target = dir.path().join("t");
        let err = prepare(
            &WorkspaceSource::Zip(archive),
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(
            matches!(err, WorkspaceError::ZipEntryLargerThanDeclared { ref entry, declared: 100 } if entry == "liar.txt"),
            "{err}"
        );
        assert!(!target.exists());
        no_leftovers(dir.path(), &["liar.zip"]);
    }

    #[test]
    fn zip_duplicate_and_odd_entries() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("dup.zip");
        write_zip(&archive, |w| {
            add_file(w, "a/x.txt", b"1");
            add_file(w, "a/./x.txt", b"2");
        });
        let err = check_zip(&archive, &ZipLimits::default()).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::ZipDuplicateEntry { ref entry } if entry == "a/./x.txt"),
            "{err}"
        );

        // "./" and a repeated folder entry are harmless; the single wrapper is still stripped.
        let archive = dir.path().join("odd.zip");
        write_zip(&archive, |w| {
            w.add_directory("./", deflate()).unwrap();
            w.add_directory("wrap/", deflate()).unwrap();
            w.add_directory("wrap/./", deflate()).unwrap();
            add_file(w, "wrap/f.txt", b"f");
        });
        let target = dir.path().join("t");
        prepare(
            &WorkspaceSource::Zip(archive),
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(fs::read(target.join("f.txt")).unwrap(), b"f");
    }

    #[test]
    fn zip_garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("junk.zip");
        fs::write(&archive, b"this is not a zip").unwrap();
        let err = check_zip(&archive, &ZipLimits::default()).unwrap_err();
        assert!(matches!(err, WorkspaceError::ZipUnreadable { .. }), "{err}");
        assert!(err.to_string().contains("junk.zip"), "{err}");
        let err = check_zip(&dir.path().join("missing.zip"), &ZipLimits::default()).unwrap_err();
        assert!(matches!(err, WorkspaceError::Io { .. }), "{err}");
    }

    #[test]
    fn existing_non_empty_target_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("mine.txt"), b"user work").unwrap();
        let archive = dir.path().join("a.zip");
        write_zip(&archive, |w| add_file(w, "mine.txt", b"from zip"));
        for source in [
            WorkspaceSource::Zip(archive),
            WorkspaceSource::Empty,
            WorkspaceSource::Git {
                url: "file:///nonexistent/repo".into(),
                reference: None,
            },
        ] {
            let got = prepare(&source, &target, &ZipLimits::default(), Duration::ZERO).unwrap();
            assert_eq!(got, target);
            assert_eq!(fs::read(target.join("mine.txt")).unwrap(), b"user work");
        }
    }

    #[test]
    fn empty_and_path_sources() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/c");
        let got = prepare(
            &WorkspaceSource::Empty,
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(got, target);
        assert!(target.is_dir());
        // Idempotent on an empty target too.
        prepare(
            &WorkspaceSource::Empty,
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap();

        let existing = dir.path().join("existing");
        fs::create_dir(&existing).unwrap();
        let got = prepare(
            &WorkspaceSource::Path(existing.clone()),
            &dir.path().join("unused"),
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(got, existing);
        assert!(!dir.path().join("unused").exists());

        let err = prepare(
            &WorkspaceSource::Path(dir.path().join("nope")),
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(matches!(err, WorkspaceError::PathMissing { .. }), "{err}");
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = prepare(
            &WorkspaceSource::Path(file),
            &target,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(matches!(err, WorkspaceError::NotADirectory { .. }), "{err}");
    }

    /// A repository with `README.md` on the default branch `main`, `dev.txt` on branch `dev`
    /// (one commit later), and a tag `v1` on main's commit. Returns (path, main commit, dev
    /// commit).
    fn make_repo(dir: &Path) -> (PathBuf, Oid, Oid) {
        let path = dir.join("origin");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = Repository::init_opts(&path, &opts).unwrap();
        let sig = git2::Signature::now("Test", "test@example.com").unwrap();
        let commit = |files: &[(&str, &str)], parent: Option<Oid>, refname: &str| {
            let mut index = repo.index().unwrap();
            for (name, content) in files {
                fs::write(path.join(name), content).unwrap();
                index.add_path(Path::new(name)).unwrap();
            }
            index.write().unwrap();
            let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
            let parents: Vec<git2::Commit<'_>> = parent
                .map(|p| repo.find_commit(p).unwrap())
                .into_iter()
                .collect();
            let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
            repo.commit(Some(refname), &sig, &sig, "msg", &tree, &refs)
                .unwrap()
        };
        let main = commit(&[("README.md", "hello\n")], None, "HEAD");
        let dev = commit(&[("dev.txt", "dev work\n")], Some(main), "refs/heads/dev");
        // Put the work tree back on main's state.
        repo.checkout_head(Some(CheckoutBuilder::new().force()))
            .unwrap();
        let _ = fs::remove_file(path.join("dev.txt"));
        repo.tag_lightweight("v1", &repo.find_object(main, None).unwrap(), false)
            .unwrap();
        (path, main, dev)
    }

    fn clone_to(
        url: &str,
        reference: Option<&str>,
        target: &Path,
    ) -> Result<PathBuf, WorkspaceError> {
        prepare(
            &WorkspaceSource::Git {
                url: url.to_owned(),
                reference: reference.map(str::to_owned),
            },
            target,
            &ZipLimits::default(),
            Duration::from_secs(30),
        )
    }

    fn head_commit(path: &Path) -> Oid {
        Repository::open(path)
            .unwrap()
            .head()
            .unwrap()
            .peel_to_commit()
            .unwrap()
            .id()
    }

    #[test]
    fn git_clone_default_branch_and_branch_ref() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, main, dev) = make_repo(dir.path());
        let ws = dir.path().join("ws");

        let t = ws.join("default");
        clone_to(origin.to_str().unwrap(), None, &t).unwrap();
        assert!(t.join("README.md").is_file());
        assert!(!t.join("dev.txt").exists());
        assert_eq!(head_commit(&t), main);

        let t = ws.join("dev");
        let url = format!("file://{}", origin.display());
        clone_to(&url, Some("dev"), &t).unwrap();
        assert_eq!(fs::read_to_string(t.join("dev.txt")).unwrap(), "dev work\n");
        let repo = Repository::open(&t).unwrap();
        assert_eq!(repo.head().unwrap().name().unwrap(), "refs/heads/dev");
        assert_eq!(head_commit(&t), dev);

        // The default branch named explicitly.
        let t = ws.join("main");
        clone_to(&url, Some("main"), &t).unwrap();
        assert_eq!(head_commit(&t), main);
        no_leftovers(&ws, &["default", "dev", "main"]);
    }

    #[test]
    fn git_clone_tag_and_commit_sha() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, main, dev) = make_repo(dir.path());
        let url = format!("file://{}", origin.display());

        let t = dir.path().join("sha");
        clone_to(&url, Some(&dev.to_string()), &t).unwrap();
        assert!(t.join("dev.txt").is_file());
        assert_eq!(head_commit(&t), dev);
        assert!(Repository::open(&t).unwrap().head_detached().unwrap());

        let t = dir.path().join("short");
        clone_to(&url, Some(&dev.to_string()[..8]), &t).unwrap();
        assert_eq!(head_commit(&t), dev);

        let t = dir.path().join("tag");
        clone_to(&url, Some("v1"), &t).unwrap();
        assert_eq!(head_commit(&t), main);
        assert!(!t.join("dev.txt").exists());
    }

    #[test]
    fn git_commit_not_on_any_branch_over_local_transport() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, main, _) = make_repo(dir.path());
        let dangling = {
            let repo = Repository::open(&origin).unwrap();
            let sig = git2::Signature::now("Test", "test@example.com").unwrap();
            let parent = repo.find_commit(main).unwrap();
            let tree = parent.tree().unwrap();
            repo.commit(None, &sig, &sig, "dangling", &tree, &[&parent])
                .unwrap()
        };
        let t = dir.path().join("t");
        let url = format!("file://{}", origin.display());
        // libgit2's local transport serves only objects reachable from advertised refs, so
        // the extra fetch by sha (meant for smart HTTP/SSH servers that allow it) finds
        // nothing here: the result must be a clear error and no target.
        let err = clone_to(&url, Some(&dangling.to_string()), &t).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::GitReferenceNotFound { .. }),
            "{err}"
        );
        assert!(!t.exists());
    }

    #[test]
    fn git_bad_ref_errors_and_leaves_no_target() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, _, _) = make_repo(dir.path());
        let ws = dir.path().join("ws");
        let t = ws.join("bad");
        let err = clone_to(origin.to_str().unwrap(), Some("no-such-branch"), &t).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::GitReferenceNotFound { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("no-such-branch"), "{err}");
        assert!(!t.exists());
        // A well-formed sha that does not exist.
        let err = clone_to(origin.to_str().unwrap(), Some(&"ab".repeat(20)), &t).unwrap_err();
        assert!(
            matches!(err, WorkspaceError::GitReferenceNotFound { .. }),
            "{err}"
        );
        assert!(!t.exists());
        no_leftovers(&ws, &[]);
    }

    #[test]
    fn git_bad_url_errors_and_leaves_no_target() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        let missing = dir.path().join("missing-repo");
        let err = clone_to(missing.to_str().unwrap(), None, &t).unwrap_err();
        assert!(matches!(err, WorkspaceError::GitClone { .. }), "{err}");
        assert!(!t.exists());
        no_leftovers(dir.path(), &["missing-repo"]);
    }

    #[test]
    fn git_timeout_aborts_the_clone() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, _, _) = make_repo(dir.path());
        let t = dir.path().join("t");
        // file:// goes through the transport (and its progress callbacks), unlike a plain path.
        let err = prepare(
            &WorkspaceSource::Git {
                url: format!("file://{}", origin.display()),
                reference: None,
            },
            &t,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(matches!(err, WorkspaceError::GitTimeout { .. }), "{err}");
        assert!(!t.exists());
        no_leftovers(dir.path(), &["origin"]);
    }

    #[test]
    fn stale_temp_dirs_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".t.devbox-tmp-abc123");
        fs::create_dir_all(stale.join("x")).unwrap();
        let archive = dir.path().join("a.zip");
        write_zip(&archive, |w| add_file(w, "f", b"x"));
        let t = dir.path().join("t");
        prepare(
            &WorkspaceSource::Zip(archive),
            &t,
            &ZipLimits::default(),
            Duration::ZERO,
        )
        .unwrap();
        assert!(!stale.exists());
        assert!(t.join("f").is_file());
    }
}
