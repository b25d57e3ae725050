//! Other Unix users in tests (devbox as root with `isolation.run_as: owner`): a copy
//! of what they must run in a folder they can enter, their ids, and commands run as
//! them the way a terminal of their IDE runs.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A folder every user may enter, for what instances of other users must run.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("devbox-test-runnable");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Whether users other than root can enter every folder above `path`, and
/// what a symbolic link there points to.
pub fn reachable_by_others(path: &Path) -> bool {
    let canonical = std::fs::canonicalize(path).expect("canonical path");
    [path, canonical.as_path()].iter().all(|p| {
        p.ancestors()
            .skip(1)
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
    })
}

/// `binary`, or a copy of the tree `levels` folders above it (hard links where the
/// file system allows) in a folder everyone may enter, when others cannot reach it
/// where it is (a clone under `/root`).
pub fn runnable_by_others(binary: &Path, levels: usize) -> PathBuf {
    if reachable_by_others(binary) {
        return binary.to_owned();
    }
    let tree = binary.ancestors().nth(levels).expect("tree");
    let relative = binary.strip_prefix(tree).expect("inside the tree");
    // One copy per tree (and per change of it), kept for later runs.
    let mut key = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&std::fs::canonicalize(tree).expect("tree"), &mut key);
    std::hash::Hash::hash(
        &std::fs::metadata(tree).and_then(|m| m.modified()).ok(),
        &mut key,
    );
    let name = tree
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let copy = shared_dir().join(format!("{name}-{:016x}", std::hash::Hasher::finish(&key)));
    if !copy.exists() {
        let staging = shared_dir().join(format!("{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let linked = Command::new("cp")
            .arg("-al")
            .arg(tree)
            .arg(&staging)
            .status();
        if !linked.is_ok_and(|s| s.success()) {
            let _ = std::fs::remove_dir_all(&staging);
            let copied = Command::new("cp")
                .arg("-a")
                .arg(tree)
                .arg(&staging)
                .status();
            assert!(
                copied.is_ok_and(|s| s.success()),
                "cannot copy {}",
                tree.display()
            );
        }
        // Another test may have won the race: its copy is as good.
        if std::fs::rename(&staging, &copy).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
    if relative.as_os_str().is_empty() {
        copy
    } else {
        copy.join(relative)
    }
}

/// A Unix user's ids, from the password database.
pub fn ids_of(user: &str) -> (u32, u32) {
    let user = nix::unistd::User::from_name(user)
        .expect("password database")
        .unwrap_or_else(|| panic!("no user {user}"));
    (user.uid.as_raw(), user.gid.as_raw())
}

/// Runs `program args` as `(uid, gid)`, with no supplementary group.
pub fn run_as(ids: (u32, u32), program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .uid(ids.0)
        .gid(ids.1)
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"))
}

/// The real code-server, runnable by other users ([`runnable_by_others`]).
pub fn code_server_for_others() -> PathBuf {
    runnable_by_others(&super::code_server(), 2)
}

/// Runs `sh -c script` as `(uid, gid)`: what a terminal of that owner's IDE can do.
pub fn shell_as(ids: (u32, u32), script: &str) -> Output {
    run_as(ids, "sh", &["-c", script])
}
