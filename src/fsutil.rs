//! Atomic file replacement (every spec and status file devbox writes goes through here),
//! removal that tolerates what is already gone, cheap copies of whole trees, marks of
//! last use for the caches' clean-up, and directories only devbox's user may enter.
//!
//! A reader (the spec watcher, `devbox get`, a crash-restarted controller) must only ever
//! see the old file or the new one, never a torn write. So we write a temporary file in
//! the same directory, fsync it, rename it over the target and fsync the directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Replaces `path` with `contents` atomically. The parent directory must exist.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, contents, 0o600)
}

/// [`write_atomic`] of a file with mode `mode` (the umask aside).
pub fn write_atomic_mode(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent_dir(path)?;
    // A leading dot keeps watchers that only look at `*.yaml` from seeing the temp file.
    let prefix = format!(
        ".{}.",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    // The umask (077 under isolation) applies at creation; the mode asked for is the
    // mode the file gets.
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|err| err.error)?;
    sync_dir(dir)
}

/// Creates `path` atomically only if it does not exist yet; `Ok(false)` when it did.
/// Two racing creators of one name: exactly one wins.
pub fn create_atomic(path: &Path, contents: &[u8]) -> io::Result<bool> {
    let dir = parent_dir(path)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".devbox-new.")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    match temp.persist_noclobber(path) {
        Ok(_) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(err.error),
    }
}

fn parent_dir(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(p) => Ok(p),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent directory", path.display()),
        )),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file, treating "already gone" as success.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Removes a directory tree, treating "already gone" as success.
pub fn remove_dir_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Recreates the tree `source` at `target`, which must not exist yet: directories are
/// created, files hard-linked (copied where the file system refuses a link, e.g. across
/// devices), symbolic links recreated as they are.
pub fn link_tree(source: &Path, target: &Path) -> io::Result<()> {
    fs::create_dir(target)?;
    for entry in fs::read_dir(source)? {
        let entry = entry?;
        let (from, to) = (entry.path(), target.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&from, &to)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// The bytes of the regular file at `path`, at most `max` of them; `Ok(None)` when
/// nothing is there. Anything else at that name (a FIFO that would block the reader, a
/// device that never ends, a folder) and a larger file are `InvalidData`: names in an
/// instance's folders are its user's to point anywhere.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let metadata = file.metadata()?;
    let refuse = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    if !metadata.is_file() {
        return Err(refuse(format!("{} is not a regular file", path.display())));
    }
    if metadata.len() > max {
        return Err(refuse(format!(
            "{} is larger than {max} bytes",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Mode of a directory only its owner may enter.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) with mode 0700, or takes every access but the
/// owner's off an existing one (the umask may have left some on a new directory, a hand
/// may have opened up an old one). Follows a symbolic link to a directory: where the
/// directory lives is the operator's choice. A directory of another user is refused
/// (`PermissionDenied`): whoever owns it could change what is inside, even as root runs.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)?;
    let metadata = fs::metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {}, not to devbox's user (uid {me}); devbox keeps its state \
                 only in a folder of its own",
                dir.display(),
                metadata.uid()
            ),
        ));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode != PRIVATE_DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    }
    Ok(())
}

/// Sets `path`'s modification time to now, creating it empty if needed: a mark of last
/// use, read back by [`unused_entries`].
pub fn touch(path: &Path) -> io::Result<()> {
    File::options()
        .create(true)
        .append(true)
        .open(path)?
        .set_modified(SystemTime::now())
}

/// How long ago the entry `dir` was last used: the age of its `marker` file. An entry
/// without one (made before markers were kept) gets one now and counts as just used.
/// `None` when the marker can be neither read nor made.
pub fn idle_for(dir: &Path, marker: &str) -> Option<Duration> {
    let marker = dir.join(marker);
    match fs::metadata(&marker).and_then(|m| m.modified()) {
        Ok(modified) => Some(modified.elapsed().unwrap_or_default()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            touch(&marker).ok().map(|()| Duration::ZERO)
        }
        Err(_) => None,
    }
}

/// Whether the entry `dir` has been unused for longer than `max_age` (see [`idle_for`]).
pub fn unused_for(dir: &Path, marker: &str, max_age: Duration) -> bool {
    idle_for(dir, marker).is_some_and(|idle| idle > max_age)
}

/// Prefix an entry is renamed to before it is removed: a removal cut short (devbox
/// killed) leaves a folder by that name, never a half-removed entry under its own.
const REMOVING_PREFIX: &str = ".removing-";

/// The entries of the cache folder `dir` (name and path) unused for longer than
/// `max_age` (see [`idle_for`]), but for those whose name starts with `skip_prefix`.
/// Removals an earlier run left unfinished are finished first.
pub fn unused_entries(
    dir: &Path,
    marker: &str,
    max_age: Duration,
    skip_prefix: &str,
) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut unused = Vec::new();
    for (name, path) in entries
        .flatten()
        .filter_map(|entry| Some((entry.file_name().into_string().ok()?, entry.path())))
    {
        if name.starts_with(REMOVING_PREFIX) {
            if let Err(err) = remove_dir_if_exists(&path) {
                tracing::warn!(%err, path = %path.display(), "cannot finish removing a cache entry");
            }
        } else if !name.starts_with(skip_prefix)
            && path.is_dir()
            && unused_for(&path, marker, max_age)
        {
            unused.push((name, path));
        }
    }
    unused
}

/// Removes the cache entry `entry`: renamed out of the way first (see
/// [`REMOVING_PREFIX`]), then deleted.
pub fn remove_entry(entry: &Path) -> io::Result<()> {
    let name = entry
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an entry needs a name"))?;
    let mut doomed = std::ffi::OsString::from(REMOVING_PREFIX);
    doomed.push(name);
    let doomed = entry.with_file_name(doomed);
    match fs::rename(entry, &doomed) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        result => result?,
    }
    remove_dir_if_exists(&doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_made_private_and_closed_again() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state/nested");
        let mode = |dir: &Path| fs::metadata(dir).unwrap().permissions().mode() & 0o7777;
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), PRIVATE_DIR_MODE);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(
            mode(&dir),
            PRIVATE_DIR_MODE,
            "an opened-up directory is closed"
        );
        fs::write(root.path().join("file"), "x").unwrap();
        assert!(
            private_dir(&root.path().join("file")).is_err(),
            "not a directory"
        );
    }

    #[test]
    fn another_users_directory_is_refused_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        // As root, a folder handed to nobody; as anyone else, root's own `/`.
        let foreign = if nix::unistd::geteuid().is_root() {
            let dir = root.path().join("planted");
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            dir
        } else {
            PathBuf::from("/")
        };
        let before = fs::metadata(&foreign).unwrap().permissions().mode();
        let err = private_dir(&foreign).expect_err("another user's folder");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("not to devbox's user"), "{err}");
        assert_eq!(fs::metadata(&foreign).unwrap().permissions().mode(), before);
    }

    #[test]
    fn entries_are_unused_by_their_marker_and_removed_out_of_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(24 * 60 * 60);
        let long_ago = SystemTime::now() - 40 * day;
        for name in ["used", "stale", "unmarked", ".staging-x", ".removing-y"] {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        for marked in ["used/mark", "stale/mark", ".staging-x/mark"] {
            touch(&dir.path().join(marked)).unwrap();
        }
        for old in ["stale/mark", ".staging-x/mark", "unmarked"] {
            File::open(dir.path().join(old))
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        let unused = unused_entries(dir.path(), "mark", 30 * day, ".staging-");
        let names: Vec<&str> = unused.iter().map(|(name, _)| name.as_str()).collect();
        // An old entry without a marker (from before markers) gets one: used now.
        assert_eq!(names, ["stale"]);
        assert!(dir.path().join("unmarked/mark").is_file());
        assert!(
            !dir.path().join(".removing-y").exists(),
            "an unfinished removal is finished"
        );
        remove_entry(&unused[0].1).unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".staging-x", "unmarked", "used"]);
        remove_entry(&dir.path().join("stale")).unwrap();
    }

    #[test]
    fn replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.yaml");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.yaml")]);
    }

    #[test]
    fn create_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("b.yaml");
        assert!(create_atomic(&target, b"first").unwrap());
        assert!(!create_atomic(&target, b"second").unwrap());
        assert_eq!(fs::read(&target).unwrap(), b"first");
    }

    #[test]
    fn link_tree_shares_files_and_keeps_structure() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        fs::create_dir_all(source.join("out/nested")).unwrap();
        fs::write(source.join("package.json"), "{}").unwrap();
        fs::write(source.join("out/nested/main.js"), "code").unwrap();
        std::os::unix::fs::symlink("out/nested/main.js", source.join("link.js")).unwrap();
        let target = dir.path().join("copy");
        link_tree(&source, &target).unwrap();
        assert_eq!(
            fs::read_to_string(target.join("out/nested/main.js")).unwrap(),
            "code"
        );
        assert_eq!(
            fs::metadata(target.join("package.json")).unwrap().ino(),
            fs::metadata(source.join("package.json")).unwrap().ino(),
            "files are hard links"
        );
        assert_eq!(
            fs::read_link(target.join("link.js")).unwrap(),
            Path::new("out/nested/main.js")
        );
        // A new file in the copy does not appear in the source: folders are not shared.
        fs::write(target.join("out/cache.bin"), "x").unwrap();
        assert!(!source.join("out/cache.bin").exists());
        assert_eq!(
            link_tree(&source, &target).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }
}
