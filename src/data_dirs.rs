//! Where servers keep their data on disk, and which names still have some. Each data
//! root (the state dir; `runtime.slurm.shared_dir` for Slurm jobs, mounted at the same
//! path on every node) holds `servers/<name>` (the instance's user data, extensions
//! and log) and `workspaces/<name>` (the workspace devbox makes). A deleted server's
//! workspace stays unless `controller.purge_workspace_on_delete` is set, and its server
//! folder stays until the controller has forgotten it: a new server of that name would
//! start in them, so whoever creates it must be allowed that data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// The folders of a data root that hold one entry per server.
const PER_SERVER: [&str; 2] = ["servers", "workspaces"];

/// `<root>/servers/<name>`: an instance's own files.
pub fn instance_root(root: &Path, name: &str) -> PathBuf {
    root.join("servers").join(name)
}

/// `<root>/workspaces/<name>`: where a managed workspace lives.
pub fn workspace_dir(root: &Path, name: &str) -> PathBuf {
    root.join("workspaces").join(name)
}

/// Every data root of a config.
#[derive(Debug, Clone)]
pub struct DataRoots(Vec<PathBuf>);

impl DataRoots {
    pub fn of(config: &Config) -> Self {
        Self::new(
            std::iter::once(config.controller.state_dir.clone())
                .chain(config.runtime.slurm.shared_dir.clone())
                .collect(),
        )
    }

    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self(roots)
    }

    /// Whether server `name` has a folder left in any root.
    pub fn hold_data_of(&self, name: &str) -> bool {
        self.per_server_dirs()
            .any(|dir| std::fs::symlink_metadata(dir.join(name)).is_ok())
    }

    /// The names starting with `prefix` that have a folder in any root.
    pub fn names_with_data(&self, prefix: &str) -> BTreeSet<String> {
        self.per_server_dirs()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flat_map(|entries| entries.flatten())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| name.starts_with(prefix))
            .collect()
    }

    fn per_server_dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.0
            .iter()
            .flat_map(|root| PER_SERVER.map(|dir| root.join(dir)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_a_folder_in_any_root_have_data() -> std::io::Result<()> {
        let (state, shared) = (tempfile::tempdir()?, tempfile::tempdir()?);
        std::fs::create_dir_all(workspace_dir(state.path(), "pool-a-1"))?;
        std::fs::create_dir_all(instance_root(shared.path(), "pool-a-2"))?;
        std::fs::create_dir_all(instance_root(state.path(), "web"))?;
        let roots = DataRoots::new(vec![state.path().into(), shared.path().into()]);
        assert!(roots.hold_data_of("pool-a-1"));
        assert!(roots.hold_data_of("pool-a-2"));
        assert!(roots.hold_data_of("web"));
        assert!(!roots.hold_data_of("pool-a-3"));
        assert_eq!(
            roots.names_with_data("pool-"),
            BTreeSet::from(["pool-a-1".to_owned(), "pool-a-2".to_owned()])
        );
        let missing = DataRoots::new(vec![state.path().join("missing")]);
        assert!(missing.names_with_data("pool-").is_empty());
        assert!(!missing.hold_data_of("web"));
        Ok(())
    }
}
