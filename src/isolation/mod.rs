//! Each owner's instances fenced in (`isolation.run_as: owner`, devbox running as root):
//! which Unix user an owner's instances run as ([`accounts`]), how what devbox makes
//! for them becomes theirs ([`handover`]), the rights devbox works inside their folders
//! with ([`creds`]), and which parts of the state dir those users may pass through
//! ([`layout`]).
//!
//! The rule everything here keeps: an instance's folders (workspace, user data,
//! extensions, its socket folder) are its user's to arrange, so devbox never resolves a
//! name inside them with its own rights. It makes things in folders of its own and
//! gives them over by file descriptor (a link the user planted is never followed), or
//! renames them in (a rename replaces a name, never follows it); it reads and writes
//! files there (settings, the extension manifest) on a thread with the user's file
//! rights; it connects to an instance's socket only after checking, through a
//! descriptor, that it is a socket of the folder's user.

pub mod accounts;
pub mod creds;
pub mod handover;
pub mod layout;

pub use accounts::{Account, Accounts};
pub use creds::InstanceDir;

use std::path::{Path, PathBuf};

/// Why instances cannot run as their owners' users.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error(
        "isolation.run_as: owner needs devbox to run as root (it runs as uid {uid}): only root can start processes as other users"
    )]
    NotRoot { uid: u32 },
    #[error("isolation.users.{owner}: no Unix user named `{user}` exists")]
    NoSuchUser { owner: String, user: String },
    #[error("the Unix user `{user}` is root (uid 0): instances never run as root")]
    Root { user: String },
    #[error("cannot look up the Unix user `{user}`: {source}")]
    Lookup { user: String, source: nix::Error },
    #[error("cannot create the system user `{user}` (useradd): {detail}")]
    Create { user: String, detail: String },
    #[error(
        "code-server at {binary} cannot be run by the instances' users: {why}; install it where every user may read it (for example under /opt) and set code_server.binary"
    )]
    Unreachable { binary: PathBuf, why: String },
    #[error(
        "the state dir {state_dir} cannot be reached by the instances' users: {why}; put it where they can pass (mode 0711 or more on the folders above it)"
    )]
    StateDirUnreachable { state_dir: PathBuf, why: String },
    #[error("cannot take the file rights of `{user}`: {detail}")]
    Credentials { user: String, detail: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl IsolationError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Readies this host for instances under their owners' users, when the config asks
/// for it (`None` otherwise): devbox must be root and code-server runnable by others;
/// from here on everything devbox creates is its own alone (umask 077, process-wide),
/// and the state dir is laid out as [`layout`] says. For the start of devbox, before
/// any instance runs.
pub fn prepare(config: &crate::config::Config) -> Result<Option<Accounts>, IsolationError> {
    if !config.isolation.per_owner() {
        return Ok(None);
    }
    require_root()?;
    check_runnable_by_others(&config.code_server.binary)?;
    let state_dir = &config.controller.state_dir;
    check_searchable_by_others(state_dir)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    layout::fence_state_dir(state_dir)?;
    if let Some(shared) = config.runtime.slurm.shared_dir.as_ref() {
        // Where Slurm jobs keep their servers' files: laid out the same way.
        crate::fsutil::private_dir(shared).map_err(IsolationError::io(shared))?;
        check_searchable_by_others(shared)?;
        layout::fence_state_dir(shared)?;
    }
    tracing::info!(
        "each owner's instances run as a Unix user of their own (isolation.run_as: owner)"
    );
    Ok(Some(Accounts::new(&config.isolation, state_dir)))
}

/// Refuses to run instances as other users unless devbox is root.
pub fn require_root() -> Result<(), IsolationError> {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        Ok(())
    } else {
        Err(IsolationError::NotRoot { uid: uid.as_raw() })
    }
}

/// Checks that users other than root can run `binary`: every folder above it must be
/// searchable by others and the file readable and executable by them (code-server is
/// a shell script that runs the Node beside it). A bare name is looked up in `PATH`.
pub fn check_runnable_by_others(binary: &Path) -> Result<(), IsolationError> {
    use std::os::unix::fs::PermissionsExt;
    let resolved = crate::config::code_server_binary::find_on_path(binary)
        .unwrap_or_else(|| binary.to_owned());
    let unreachable = |why: String| IsolationError::Unreachable {
        binary: resolved.clone(),
        why,
    };
    let metadata = std::fs::metadata(&resolved).map_err(|err| unreachable(err.to_string()))?;
    if metadata.permissions().mode() & 0o005 != 0o005 {
        return Err(unreachable(format!(
            "the file's mode is {:o}",
            metadata.permissions().mode() & 0o7777
        )));
    }
    // The folders of the name and, for a symbolic link, of what it points to.
    let canonical = std::fs::canonicalize(&resolved).map_err(|err| unreachable(err.to_string()))?;
    match [resolved.parent(), canonical.parent()]
        .into_iter()
        .flatten()
        .find_map(first_closed_folder)
    {
        Some(why) => Err(unreachable(why)),
        None => Ok(()),
    }
}

/// Checks that users other than root can pass through every folder above the state
/// dir (the instances' folders are in it).
fn check_searchable_by_others(state_dir: &Path) -> Result<(), IsolationError> {
    match state_dir.parent().and_then(first_closed_folder) {
        Some(why) => Err(IsolationError::StateDirUnreachable {
            state_dir: state_dir.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// The first of `dir` and the folders above it that others cannot enter, said as a
/// reason.
fn first_closed_folder(dir: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    for folder in dir.ancestors() {
        let mode = match std::fs::metadata(folder) {
            Ok(metadata) => metadata.permissions().mode() & 0o7777,
            Err(err) => return Some(format!("{}: {err}", folder.display())),
        };
        if mode & 0o001 == 0 {
            return Some(format!(
                "{} has mode {mode:o}, which others cannot enter",
                folder.display()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_binary_behind_a_private_folder_is_refused_with_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let private = dir.path().join("private");
        std::fs::create_dir(&private).expect("mkdir");
        let binary = private.join("code-server");
        std::fs::write(&binary, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let err = check_runnable_by_others(&binary).expect_err("refused");
        assert!(err.to_string().contains("has mode 700"), "{err}");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let err = check_runnable_by_others(&binary).expect_err("refused");
        assert!(err.to_string().contains("mode is 700"), "{err}");
    }
}
