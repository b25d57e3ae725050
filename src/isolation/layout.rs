//! Which parts of the state dir the instances' users may pass through, with
//! `isolation.run_as: owner`.
//!
//! The state dir and four folders in it are searchable by everyone (mode 0711: enter
//! by a name you know, never list): `servers/` and each server's folder there (its
//! `user-data`, `extensions` and XDG folders are its user's, 0700), `workspaces/`
//! (each workspace its user's, 0700), `sockets/` (a folder per user, 0700, where the
//! user's instances put their sockets) and `homes/` (the homes of the users devbox
//! creates). Everything else devbox keeps is its alone: devbox runs with umask 077,
//! and [`fence_state_dir`] takes every other user's access off what an earlier devbox
//! (without isolation) left readable.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Account, IsolationError, handover};

/// Mode of the folders the instances' users pass through.
pub const TRAVERSABLE_MODE: u32 = 0o711;
/// The folders of the state dir the instances' users pass through.
const TRAVERSABLE: [&str; 4] = ["servers", "workspaces", "sockets", "homes"];
/// The file in a server's folder its instance reads (code-server's own config).
pub const CODE_SERVER_CONFIG: &str = "code-server.yaml";

/// `<state_dir>/homes`: the homes of the users devbox creates.
pub fn homes_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("homes")
}

/// Lays the state dir out for instances of other users (see the module's doc). For
/// the start of devbox, before any instance runs.
pub fn fence_state_dir(state_dir: &Path) -> Result<(), IsolationError> {
    set_mode(state_dir, TRAVERSABLE_MODE)?;
    for name in TRAVERSABLE {
        let dir = state_dir.join(name);
        crate::fsutil::private_dir(&dir).map_err(IsolationError::io(&dir))?;
        set_mode(&dir, TRAVERSABLE_MODE)?;
    }
    for entry in read_dir(state_dir)? {
        if !TRAVERSABLE.iter().any(|name| entry.file_name() == *name) {
            keep_private(&entry.path())?;
        }
    }
    for server in read_dir(&state_dir.join("servers"))? {
        let dir = server.path();
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            server_dir(&dir)?;
        }
    }
    Ok(())
}

/// A server's folder: searchable; the files devbox keeps in it (status, log) its own;
/// code-server's config readable.
pub fn server_dir(dir: &Path) -> Result<(), IsolationError> {
    set_mode(dir, TRAVERSABLE_MODE)?;
    for entry in read_dir(dir)? {
        let path = entry.path();
        if entry.file_name() == CODE_SERVER_CONFIG {
            set_mode(&path, 0o644)?;
        } else {
            keep_private(&path)?;
        }
    }
    Ok(())
}

/// The folder in `sockets/` where `account`'s instances put their sockets.
pub fn socket_dir(state_dir: &Path, account: &Account) -> Result<PathBuf, IsolationError> {
    let dir = crate::endpoint::socket_dir(state_dir).join(&account.name);
    handover::give_dir(&dir, account).map_err(IsolationError::io(&dir))?;
    Ok(dir)
}

/// Creates the home of a user devbox created, when missing (it is theirs, 0700).
pub fn ensure_home(account: &Account) -> Result<(), IsolationError> {
    let home = &account.home;
    if std::fs::symlink_metadata(home).is_ok_and(|m| m.is_dir() && m.uid() == account.uid) {
        return Ok(());
    }
    handover::give_dir(home, account).map_err(IsolationError::io(home))
}

/// Takes the access of everyone but the owner off `path` when devbox owns it (what
/// an instance's user owns is theirs to open up).
/// A file that is gone by the time it is looked at (a status file's temporary copy,
/// renamed into place meanwhile) needs nothing.
fn keep_private(path: &Path) -> Result<(), IsolationError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(IsolationError::io(path)(err)),
    };
    if metadata.file_type().is_symlink() || metadata.uid() != nix::unistd::geteuid().as_raw() {
        return Ok(());
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7700)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(IsolationError::io(path)(err));
            }
            _ => {}
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), IsolationError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(IsolationError::io(path))
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, IsolationError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<Result<Vec<_>, _>>()
            .map_err(IsolationError::io(dir)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(IsolationError::io(dir)(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gone_before_it_is_looked_at_needs_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        keep_private(&dir.path().join(".status.json.tmp")).expect("nothing to do");
    }

    #[test]
    fn the_state_dir_opens_only_the_way_to_instances() {
        let state = tempfile::tempdir().expect("tempdir");
        let state = state.path();
        std::fs::write(state.join("seat-links.json"), "{}").expect("write");
        std::fs::set_permissions(
            state.join("seat-links.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let server = state.join("servers/ws");
        std::fs::create_dir_all(&server).expect("mkdir");
        std::fs::write(server.join("status.json"), "{}").expect("write");
        std::fs::set_permissions(
            server.join("status.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        std::fs::write(server.join(CODE_SERVER_CONFIG), "auth: none\n").expect("write");

        fence_state_dir(state).expect("fenced");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode(state), 0o711);
        for name in TRAVERSABLE {
            assert_eq!(mode(&state.join(name)), 0o711, "{name}");
        }
        assert_eq!(mode(&server), 0o711);
        assert_eq!(mode(&state.join("seat-links.json")), 0o600);
        assert_eq!(mode(&server.join("status.json")), 0o600);
        assert_eq!(mode(&server.join(CODE_SERVER_CONFIG)), 0o644);
    }
}
