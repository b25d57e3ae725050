//! Which code-server executable devbox runs, decided once when the config is loaded so
//! that every command (`serve`, `doctor`, …) runs the same one.
//!
//! In order: the one named by `--code-server` / `DEVBOX_CODE_SERVER`; the config's
//! `code_server.binary` when it names anything but the default bare `code-server`;
//! else the project's own install that `scripts/install-code-server.sh` makes in
//! `<checkout>/.tools/code-server` (the script prefers it to PATH too); else
//! `code-server` on PATH.

use std::fmt;
use std::path::{Path, PathBuf};

/// The default `code_server.binary`: "find it" rather than a choice.
pub const DEFAULT_BINARY: &str = "code-server";

/// The project-local install, relative to a checkout (as the install script lays it out).
const TOOLS_BINARY: &str = ".tools/code-server/bin/code-server";

/// The file the install script writes once an install has passed its start-up check.
const TOOLS_MARKER: &str = ".tools/code-server/.devbox-installed-version";

/// How many folders up from the executable's own a checkout may be: `target/release/`
/// is two, `target/<triple>/release/` three.
const EXE_LEVELS: usize = 4;

/// Where the code-server devbox runs came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BinarySource {
    /// `--code-server` or `DEVBOX_CODE_SERVER`.
    Override,
    /// `code_server.binary` of the config (also the embedded default's, until loaded).
    #[default]
    Config,
    /// The install under a checkout's `.tools/`, found beside the executable or in the
    /// working directory.
    ProjectTools,
    /// Neither named nor installed under `.tools/`: `code-server` looked up on PATH.
    SearchPath,
}

impl fmt::Display for BinarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Override => "named by --code-server / DEVBOX_CODE_SERVER",
            Self::Config => "named by code_server.binary in the config",
            Self::ProjectTools => {
                "the project's .tools install, from scripts/install-code-server.sh"
            }
            Self::SearchPath => "looked up on PATH",
        })
    }
}

/// Decides the binary: `configured` is `code_server.binary` after the overrides were
/// applied, `overridden` whether an override named it. Relative paths become absolute
/// (instances start in their workspace, not in the caller's directory); a bare name
/// stays a PATH lookup.
pub fn locate(configured: &Path, overridden: bool) -> (PathBuf, BinarySource) {
    if overridden {
        return (absolute_unless_bare(configured), BinarySource::Override);
    }
    if configured != Path::new(DEFAULT_BINARY) {
        return (absolute_unless_bare(configured), BinarySource::Config);
    }
    match project_tools_candidates()
        .into_iter()
        .find(|checkout| is_complete_install(checkout))
    {
        Some(checkout) => (checkout.join(TOOLS_BINARY), BinarySource::ProjectTools),
        None => (PathBuf::from(DEFAULT_BINARY), BinarySource::SearchPath),
    }
}

/// The checkouts whose `.tools/` may hold code-server: the folders above this
/// executable (for `target/{debug,release}/devbox`), then the working directory.
pub fn project_tools_candidates() -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.to_owned()))
        .map(|dir| {
            dir.ancestors()
                .take(EXE_LEVELS)
                .map(Path::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd);
    }
    candidates.dedup();
    candidates
}

/// Where a project install would be in each candidate checkout (for messages).
pub fn project_tools_binaries() -> Vec<PathBuf> {
    project_tools_candidates()
        .iter()
        .map(|checkout| checkout.join(TOOLS_BINARY))
        .collect()
}

/// A finished install (the script marks one only after starting it once) that no one
/// but this user or root could have put there ([`is_ours`]).
fn is_complete_install(checkout: &Path) -> bool {
    checkout.join(TOOLS_BINARY).is_file()
        && checkout.join(TOOLS_MARKER).is_file()
        && is_ours(checkout)
}

/// Whether `<checkout>/.tools` is this user's or root's and only they can change it, in
/// a folder where no one else can swap it. devbox runs what it finds there (as root, on
/// a shared host): a `.tools` a participant planted in a folder devbox was started from
/// (`/tmp`) must not count.
fn is_ours(checkout: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let me = nix::unistd::geteuid().as_raw();
    let trusted_owner = |meta: &std::fs::Metadata| meta.uid() == me || meta.uid() == 0;
    let (Ok(tools), Ok(folder)) = (
        std::fs::metadata(checkout.join(".tools")),
        std::fs::metadata(checkout),
    ) else {
        return false;
    };
    let others_write = |meta: &std::fs::Metadata| meta.permissions().mode() & 0o022 != 0;
    let sticky = folder.permissions().mode() & 0o1000 != 0;
    tools.is_dir()
        && trusted_owner(&tools)
        && !others_write(&tools)
        && trusted_owner(&folder)
        && (!others_write(&folder) || sticky)
}

fn absolute_unless_bare(binary: &Path) -> PathBuf {
    if binary.components().count() > 1
        && let Ok(absolute) = std::path::absolute(binary)
    {
        return absolute;
    }
    binary.to_owned()
}

/// The file a bare name such as `code-server` runs, as the shell would find it on PATH.
pub fn find_on_path(name: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.components().count() > 1 {
        return Some(name.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_binary_wins_and_a_bare_one_stays_a_name() {
        let (binary, source) = locate(Path::new("/opt/cs/bin/code-server"), true);
        assert_eq!(binary, PathBuf::from("/opt/cs/bin/code-server"));
        assert_eq!(source, BinarySource::Override);
        let (binary, source) = locate(Path::new("my-code-server"), false);
        assert_eq!(binary, PathBuf::from("my-code-server"));
        assert_eq!(source, BinarySource::Config);
        let (binary, source) = locate(Path::new("code-server"), true);
        assert_eq!(binary, PathBuf::from("code-server"));
        assert_eq!(source, BinarySource::Override);
    }

    #[test]
    fn an_install_counts_once_marked_complete() {
        let checkout = tempfile::tempdir().unwrap();
        let binary = checkout.path().join(TOOLS_BINARY);
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        std::fs::write(&binary, "#!/bin/sh\n").unwrap();
        assert!(!is_complete_install(checkout.path()), "not yet checked");
        std::fs::write(checkout.path().join(TOOLS_MARKER), "4.100.3\n").unwrap();
        assert!(is_complete_install(checkout.path()));
    }

    #[test]
    fn an_install_others_could_have_planted_does_not_count() {
        use std::os::unix::fs::PermissionsExt;
        let checkout = tempfile::tempdir().unwrap();
        let binary = checkout.path().join(TOOLS_BINARY);
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        std::fs::write(&binary, "#!/bin/sh\n").unwrap();
        std::fs::write(checkout.path().join(TOOLS_MARKER), "4.100.3\n").unwrap();
        let tools = checkout.path().join(".tools");
        let mode = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        mode(&tools, 0o777);
        assert!(
            !is_complete_install(checkout.path()),
            "others may write .tools"
        );
        mode(&tools, 0o755);
        mode(checkout.path(), 0o777);
        assert!(
            !is_complete_install(checkout.path()),
            "others may swap .tools"
        );
        mode(checkout.path(), 0o1777);
        assert!(
            is_complete_install(checkout.path()),
            "a sticky folder keeps it ours"
        );
        mode(checkout.path(), 0o755);
        if nix::unistd::geteuid().is_root() {
            let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
            std::os::unix::fs::chown(&tools, Some(nobody.uid.as_raw()), None).unwrap();
            assert!(
                !is_complete_install(checkout.path()),
                "someone else's .tools"
            );
        }
    }
}
