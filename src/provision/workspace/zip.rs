//! Zip archive workspaces: validating an archive from its metadata (zip-slip, absolute
//! paths, symlinks, encryption, compression methods, duplicates, entry count, total size
//! and per-entry ratio limits) and from its real data, and extracting it in its
//! [`ZipLayout`] (as it is, or without its one top-level folder), re-checking the byte
//! limits on the real data while writing.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use zip::CompressionMethod;

use super::{RATIO_EXEMPT_BYTES, WorkspaceError, ZipLayout, ZipLimits};

/// Validates `archive` without extracting it (see [`super::check_zip`]): its metadata
/// and layout, then its data, decompressed into nothing under the same limits, because
/// the sizes an archive declares can lie.
pub(super) fn check(
    archive: &Path,
    layout: ZipLayout,
    limits: &ZipLimits,
) -> Result<(), WorkspaceError> {
    let mut zip = open_zip(archive)?;
    let plan = scan_zip(&mut zip, archive, layout, limits)?;
    let mut written: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for entry in plan.iter().filter(|entry| !entry.is_dir) {
        let mut reader = open_entry(&mut zip, entry)?;
        copy_checked(
            &mut reader,
            &mut io::sink(),
            entry,
            &mut written,
            limits,
            &mut buf,
        )?;
    }
    Ok(())
}

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
    /// Relative path inside the workspace (in the archive's [`ZipLayout`]).
    rel: PathBuf,
    is_dir: bool,
    executable: bool,
    declared: u64,
}

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

/// Validates every entry and returns what to write. Rules are checked per entry in archive
/// order, then the totals, then the layout.
fn scan_zip<R: Read + io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    archive: &Path,
    layout: ZipLayout,
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

    let strip = match layout {
        ZipLayout::AsIs => false,
        ZipLayout::StripTopLevel => {
            check_single_top_level_folder(&planned)?;
            true
        }
    };
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

/// How many top-level names an error message lists.
const SHOWN_TOP_LEVEL_NAMES: usize = 5;

/// Passes when the archive holds exactly one top-level folder (with or without an entry
/// of its own) and nothing beside it; otherwise says what it holds instead.
fn check_single_top_level_folder(
    planned: &[(PlannedEntry, Vec<String>)],
) -> Result<(), WorkspaceError> {
    // Distinct top-level names, folders with a trailing `/`; a set, since an archive may
    // hold up to `max_entries` of them.
    let mut seen = HashSet::new();
    let mut shown = Vec::new();
    for (entry, components) in planned {
        let Some(first) = components.first() else {
            continue;
        };
        let name = if components.len() > 1 || entry.is_dir {
            format!("{first}/")
        } else {
            first.clone()
        };
        if seen.insert(name.clone()) && shown.len() < SHOWN_TOP_LEVEL_NAMES {
            shown.push(name);
        }
    }
    let holds = match shown.as_slice() {
        [only] if only.ends_with('/') => return Ok(()),
        [] => "is empty".to_owned(),
        [file] => format!("holds only the file {file:?} at its top level"),
        _ => {
            let more = seen.len() - shown.len();
            let listed: Vec<String> = shown.iter().map(|n| format!("{n:?}")).collect();
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!(
                "holds {} entries at its top level ({}{tail})",
                seen.len(),
                listed.join(", ")
            )
        }
    };
    Err(WorkspaceError::ZipNoSingleTopLevelFolder { holds })
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

/// Validates `archive`, then extracts it into `dest` (an empty folder) in `layout`.
pub(super) fn extract(
    archive: &Path,
    layout: ZipLayout,
    dest: &Path,
    limits: &ZipLimits,
) -> Result<(), WorkspaceError> {
    let mut zip = open_zip(archive)?;
    let plan = scan_zip(&mut zip, archive, layout, limits)?;
    let mut written: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for entry in &plan {
        let path = dest.join(&entry.rel);
        let create_dir = |dir: &Path| {
            fs::create_dir_all(dir).map_err(|e| {
                WorkspaceError::io(
                    format!("cannot create folder for zip entry {:?}", entry.name),
                    e,
                )
            })
        };
        if entry.is_dir {
            create_dir(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            create_dir(parent)?;
        }
        let mut reader = open_entry(&mut zip, entry)?;
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
        copy_checked(&mut reader, &mut out, entry, &mut written, limits, &mut buf)?;
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

fn open_entry<'a>(
    zip: &'a mut zip::ZipArchive<fs::File>,
    entry: &PlannedEntry,
) -> Result<zip::read::ZipFile<'a, fs::File>, WorkspaceError> {
    zip.by_index(entry.index)
        .map_err(|source| WorkspaceError::ZipCorruptEntry {
            entry: entry.name.clone(),
            source: match source {
                zip::result::ZipError::Io(e) => e,
                other => io::Error::other(other.to_string()),
            },
        })
}

/// Copies one entry's data to `out`, counting it against its declared size and, in
/// `written`, against the archive's limit on the real data.
fn copy_checked(
    reader: &mut impl Read,
    out: &mut impl Write,
    entry: &PlannedEntry,
    written: &mut u64,
    limits: &ZipLimits,
    buf: &mut [u8],
) -> Result<(), WorkspaceError> {
    let mut entry_bytes: u64 = 0;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => return Ok(()),
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
        *written = written.saturating_add(n as u64);
        if *written > limits.max_total_bytes {
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
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::{Cursor, Write};
    use std::path::{Path, PathBuf};

    use tempfile::TempDir;
    use zip::ZipWriter;

    use crate::provision::workspace::test_support::{
        add_file, assert_failed_cleanly, deflate, no_leftovers, prepare_zip, prepare_zip_as,
        temp_zip, write_zip,
    };
    use crate::provision::workspace::{WorkspaceError, ZipLayout, ZipLimits, check_zip};

    const AS_IS: ZipLayout = ZipLayout::AsIs;
    const STRIP: ZipLayout = ZipLayout::StripTopLevel;

    /// Asserts `check_zip` refuses `archive` with an error `expected` accepts, and that
    /// `prepare` does too, leaving nothing behind (see [`assert_prepare_refused`]).
    fn assert_refused(
        archive: &Path,
        limits: &ZipLimits,
        expected: impl Fn(&WorkspaceError) -> bool,
    ) {
        let err = check_zip(archive, AS_IS, limits).unwrap_err();
        assert!(expected(&err), "check_zip: {err}");
        assert_prepare_refused(archive, limits, expected);
    }

    /// Asserts `prepare` into `ws/t` beside `archive` fails with an error `expected` accepts,
    /// leaving no target and nothing else in `ws`.
    fn assert_prepare_refused(
        archive: &Path,
        limits: &ZipLimits,
        expected: impl Fn(&WorkspaceError) -> bool,
    ) {
        let target = archive.parent().unwrap().join("ws").join("t");
        assert_failed_cleanly(prepare_zip(archive, &target, limits), &target, expected);
    }

    /// Asserts each `(path, content)` of `files` is a file under `root` with that content.
    fn assert_files(root: &Path, files: &[(&str, &str)]) {
        for (path, content) in files {
            let got = fs::read_to_string(root.join(path)).unwrap();
            assert_eq!(got, *content, "{path}");
        }
    }

    /// Writes an archive with `build`, asserts `check_zip` accepts it, and extracts it as
    /// it is into a new workspace `ws/t` beside it. Returns the temporary folder and the
    /// workspace.
    fn extracted(build: impl FnOnce(&mut ZipWriter<fs::File>)) -> (TempDir, PathBuf) {
        extracted_as(AS_IS, build)
    }

    /// [`extracted`] in `layout`.
    fn extracted_as(
        layout: ZipLayout,
        build: impl FnOnce(&mut ZipWriter<fs::File>),
    ) -> (TempDir, PathBuf) {
        let (dir, archive) = temp_zip("a.zip", build);
        check_zip(&archive, layout, &ZipLimits::default()).unwrap();
        let target = dir.path().join("ws").join("t");
        let got = prepare_zip_as(&archive, layout, &target, &ZipLimits::default()).unwrap();
        assert_eq!(got, target);
        (dir, target)
    }

    /// The files under `root`, as sorted `/`-separated relative paths.
    fn files_under(root: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    let rel = path.strip_prefix(root).unwrap();
                    found.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn zip_extracts_nested_dirs() {
        let files = [
            ("src/main.rs", "fn main() {}"),
            ("src/deep/x/y.txt", "deep"),
            ("README.md", "hello"),
        ];
        let (dir, target) = extracted(|w| {
            w.add_directory("src/", deflate()).unwrap();
            for (name, content) in files {
                add_file(w, name, content.as_bytes());
            }
            w.start_file("run.sh", deflate().unix_permissions(0o755))
                .unwrap();
            w.write_all(b"#!/bin/sh\n").unwrap();
        });
        assert_files(&target, &files);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(target.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
        no_leftovers(&dir.path().join("ws"), &["t"]);
    }

    #[test]
    fn zip_layout_is_kept_as_is_by_default() {
        // (archive entries, files expected in the workspace): exactly the archive's paths.
        let cases: [&[&str]; 4] = [
            // One folder: not stripped (the original tool's behaviour).
            &["src/main.py"],
            &["repo-main/a.txt", "repo-main/sub/b.txt"],
            &["only.txt"],
            &["wrap/x.txt", "top.txt"],
        ];
        for entries in cases {
            let (_dir, target) = extracted(|w| {
                for name in entries {
                    add_file(w, name, name.as_bytes());
                }
            });
            let mut expected: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
            expected.sort();
            assert_eq!(files_under(&target), expected, "{entries:?}");
            assert_files(
                &target,
                &entries.iter().map(|e| (*e, *e)).collect::<Vec<_>>(),
            );
        }
    }

    #[test]
    fn zip_single_top_level_dir_is_stripped_when_asked() {
        let files = [("a.txt", "a"), ("sub/b.txt", "b")];
        let (_dir, target) = extracted_as(STRIP, |w| {
            w.add_directory("repo-main/", deflate()).unwrap();
            for (name, content) in files {
                add_file(w, &format!("repo-main/{name}"), content.as_bytes());
            }
        });
        assert_files(&target, &files);
        assert_eq!(files_under(&target), ["a.txt", "sub/b.txt"]);

        // No folder entry of its own: still one top-level folder.
        let (_dir, target) = extracted_as(STRIP, |w| add_file(w, "wrap/x.txt", b"x"));
        assert_eq!(files_under(&target), ["x.txt"]);
    }

    #[test]
    fn zip_strip_without_a_single_top_level_dir_is_refused_naming_the_field() {
        // (archive entries, what the error says the archive holds)
        let cases: [(&[&str], &str); 4] = [
            (&[], "is empty"),
            (
                &["only.txt"],
                "holds only the file \"only.txt\" at its top level",
            ),
            (
                &["wrap/x.txt", "top.txt"],
                "holds 2 entries at its top level (\"wrap/\", \"top.txt\")",
            ),
            (
                &["a/1", "b/1", "c/1", "d/1", "e/1", "f/1", "g/1"],
                "holds 7 entries at its top level (\"a/\", \"b/\", \"c/\", \"d/\", \"e/\" and 2 more)",
            ),
        ];
        for (entries, holds) in cases {
            let (dir, archive) = temp_zip("a.zip", |w| {
                for name in entries {
                    add_file(w, name, b"x");
                }
            });
            let expected = |err: &WorkspaceError| matches!(err, WorkspaceError::ZipNoSingleTopLevelFolder { holds: got } if got == holds);
            let err = check_zip(&archive, STRIP, &ZipLimits::default()).unwrap_err();
            assert!(expected(&err), "{entries:?}: {err}");
            let message = err.to_string();
            assert!(
                message.starts_with("zip_strip_top_level is set, but the archive"),
                "{message}"
            );
            let target = dir.path().join("ws").join("t");
            let result = prepare_zip_as(&archive, STRIP, &target, &ZipLimits::default());
            assert_failed_cleanly(result, &target, expected);
            // The same archive as it is is fine.
            check_zip(&archive, AS_IS, &ZipLimits::default()).unwrap();
        }
    }

    #[test]
    fn zip_safety_checks_come_before_the_layout() {
        // A zip slip in an archive that also fails the layout: the slip is what is said.
        let (_dir, archive) = temp_zip("evil.zip", |w| {
            add_file(w, "wrap/ok.txt", b"ok");
            add_file(w, "../evil", b"pwned");
        });
        let err = check_zip(&archive, STRIP, &ZipLimits::default()).unwrap_err();
        assert!(matches!(err, WorkspaceError::ZipParentDir { .. }), "{err}");
        // And one that passes the layout is still refused for its slip.
        let (_dir, archive) = temp_zip("evil.zip", |w| add_file(w, "wrap/../../evil", b"pwned"));
        let err = check_zip(&archive, STRIP, &ZipLimits::default()).unwrap_err();
        assert!(matches!(err, WorkspaceError::ZipParentDir { .. }), "{err}");
    }

    #[test]
    fn zip_slip_is_rejected_and_nothing_written_outside() {
        let (dir, archive) = temp_zip("evil.zip", |w| {
            add_file(w, "good.txt", b"ok");
            add_file(w, "../evil", b"pwned");
        });
        assert_refused(&archive, &ZipLimits::default(), |err| {
            matches!(err, WorkspaceError::ZipParentDir { entry } if entry == "../evil")
                && err.to_string().contains("../evil")
        });
        // Nothing written outside the target either: its folder ws is checked empty above.
        assert!(!dir.path().join("evil").exists());

        // Enclosed but still using '..' and Windows separators: refused too.
        for name in ["a/../b.txt", "a\\..\\..\\evil"] {
            let archive = dir.path().join("evil2.zip");
            write_zip(&archive, |w| add_file(w, name, b"x"));
            assert_refused(&archive, &ZipLimits::default(), |err| {
                matches!(err, WorkspaceError::ZipParentDir { .. })
            });
        }
    }

    #[test]
    fn zip_absolute_path_is_rejected() {
        let (_dir, archive) = temp_zip("abs.zip", |w| add_file(w, "/tmp/devbox-abs-test", b"x"));
        assert_refused(&archive, &ZipLimits::default(), |err| {
            matches!(err, WorkspaceError::ZipAbsolutePath { .. })
        });
        assert!(!Path::new("/tmp/devbox-abs-test").exists());
    }

    #[test]
    fn zip_symlink_entry_is_rejected() {
        let (_dir, archive) = temp_zip("link.zip", |w| {
            add_file(w, "a.txt", b"x");
            w.add_symlink("passwd", "/etc/passwd", deflate()).unwrap();
        });
        assert_refused(
            &archive,
            &ZipLimits::default(),
            |err| matches!(err, WorkspaceError::ZipSymlink { entry } if entry == "passwd"),
        );
    }

    #[test]
    fn zip_too_many_entries_is_rejected() {
        let (_dir, archive) = temp_zip("many.zip", |w| {
            for i in 0..11 {
                add_file(w, &format!("f{i}.txt"), b"x");
            }
        });
        let limits = |max_entries| ZipLimits {
            max_entries,
            ..ZipLimits::default()
        };
        assert_refused(&archive, &limits(10), |err| {
            matches!(
                err,
                WorkspaceError::ZipTooManyEntries { count: 11, max: 10 }
            )
        });
        // At the limit it is fine.
        check_zip(&archive, AS_IS, &limits(11)).unwrap();
    }

    #[test]
    fn zip_total_declared_size_over_limit_is_rejected() {
        let (_dir, archive) = temp_zip("big.zip", |w| {
            add_file(w, "a", &[7u8; 600]);
            add_file(w, "b", &[7u8; 600]);
        });
        let limits = ZipLimits {
            max_total_bytes: 1000,
            ..ZipLimits::default()
        };
        assert_refused(&archive, &limits, |err| {
            matches!(
                err,
                WorkspaceError::ZipTooLarge {
                    total: 1200,
                    max: 1000
                }
            )
        });
    }

    #[test]
    fn zip_ratio_bomb_is_rejected() {
        let zeros = vec![0u8; 1 << 20];
        let (_dir, archive) = temp_zip("bomb.zip", |w| {
            w.start_file("zeros.bin", deflate()).unwrap();
            for _ in 0..50 {
                w.write_all(&zeros).unwrap();
            }
        });
        assert!(fs::metadata(&archive).unwrap().len() < 1 << 20);
        assert_refused(
            &archive,
            &ZipLimits::default(),
            |err| matches!(err, WorkspaceError::ZipRatioTooHigh { entry, .. } if entry == "zeros.bin"),
        );
    }

    #[test]
    fn zip_small_highly_compressible_file_is_fine() {
        let (_dir, archive) = temp_zip("blank.zip", |w| add_file(w, "blank.txt", &[b' '; 200_000]));
        check_zip(&archive, AS_IS, &ZipLimits::default()).unwrap();
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
    fn zip_declared_size_lie_is_caught_by_the_check_and_while_writing() {
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
        // The metadata looks fine, but the real data is bigger than declared: the check
        // decompresses it...
        assert!(matches!(
            check_zip(&archive, AS_IS, &ZipLimits::default()),
            Err(WorkspaceError::ZipEntryLargerThanDeclared { entry, declared: 100 })
                if entry == "liar.txt"
        ));
        // ...and so does the extraction (the archive may have changed since the check).
        assert_prepare_refused(&archive, &ZipLimits::default(), |err| {
            matches!(
                err,
                WorkspaceError::ZipEntryLargerThanDeclared { entry, declared: 100 }
                    if entry == "liar.txt"
            )
        });
    }

    #[test]
    fn zip_duplicate_and_odd_entries() {
        let (_dir, archive) = temp_zip("dup.zip", |w| {
            add_file(w, "a/x.txt", b"1");
            add_file(w, "a/./x.txt", b"2");
        });
        assert_refused(
            &archive,
            &ZipLimits::default(),
            |err| matches!(err, WorkspaceError::ZipDuplicateEntry { entry } if entry == "a/./x.txt"),
        );

        // "./" and a repeated folder entry are harmless, and leave one top-level folder.
        let odd = |w: &mut ZipWriter<fs::File>| {
            w.add_directory("./", deflate()).unwrap();
            w.add_directory("wrap/", deflate()).unwrap();
            w.add_directory("wrap/./", deflate()).unwrap();
            add_file(w, "wrap/f.txt", b"f");
        };
        let (_dir, target) = extracted(odd);
        assert_eq!(files_under(&target), ["wrap/f.txt"]);
        let (_dir, target) = extracted_as(STRIP, odd);
        assert_files(&target, &[("f.txt", "f")]);
    }

    #[test]
    fn zip_garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("junk.zip");
        fs::write(&archive, b"this is not a zip").unwrap();
        assert_refused(&archive, &ZipLimits::default(), |err| {
            matches!(err, WorkspaceError::ZipUnreadable { .. })
                && err.to_string().contains("junk.zip")
        });
        assert_refused(
            &dir.path().join("missing.zip"),
            &ZipLimits::default(),
            |err| matches!(err, WorkspaceError::Io { .. }),
        );
    }
}
