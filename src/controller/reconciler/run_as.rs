//! A server's part in `isolation.run_as: owner`: the Unix user its instance runs as,
//! its folders given to that user, and the rights devbox works inside them with (see
//! [`crate::isolation`]). Without isolation every step here does nothing.

use std::path::PathBuf;

use super::ServerTask;
use crate::isolation::{Account, InstanceDir, IsolationError, handover, layout};
use crate::provision::WorkspaceSource;
use crate::runtime::{Backend, Runtime};
use crate::spec::ServerSpec;

impl<R: Runtime> ServerTask<R> {
    /// The folders of the server's own folder its instance writes in.
    pub(super) fn instance_dirs(&self) -> [PathBuf; 4] {
        let root = self.instance_root();
        ["user-data", "extensions", "xdg-data", "xdg-config"].map(|name| root.join(name))
    }

    /// Everything the instance's user owns: [`Self::instance_dirs`] and a workspace
    /// devbox manages (a folder named by `workspace.path` stays as it is).
    fn owned_dirs(&self, spec: &ServerSpec) -> Vec<PathBuf> {
        let mut dirs = self.instance_dirs().to_vec();
        if !matches!(spec.workspace, WorkspaceSource::Path(_)) {
            dirs.push(self.workspace_dir());
        }
        dirs
    }

    /// Finds (or creates) the user `spec`'s instance runs as (and that user's home).
    /// Sets [`ServerTask::account`].
    pub(super) async fn find_account(&mut self, spec: &ServerSpec) -> Result<(), String> {
        self.account = None;
        let Some(accounts) = self.ctx.accounts.clone() else {
            return Ok(());
        };
        let owner = spec.owner.as_ref().map(|owner| owner.as_str().to_owned());
        let account = blocking(move || {
            let account = accounts.for_owner(owner.as_deref())?;
            if account.home_under_state_dir {
                layout::ensure_home(&account)?;
            }
            Ok(account)
        })
        .await?;
        self.account = Some(account);
        Ok(())
    }

    /// Gives the provisioned folders to the instance's user, and opens the server's
    /// folder for it. What devbox adds to them later (extension copies, settings) is
    /// made with the user's rights or given on its way in.
    pub(super) async fn hand_over_dirs(&self, spec: &ServerSpec) -> Result<(), String> {
        let Some(account) = self.account.clone() else {
            return Ok(());
        };
        let dirs = self.owned_dirs(spec);
        let server_dir = self.instance_root();
        blocking(move || {
            layout::server_dir(&server_dir)?;
            for dir in &dirs {
                handover::hand_over(dir, &account).map_err(IsolationError::io(dir))?;
            }
            Ok(())
        })
        .await
    }

    /// Folder `name` of the server's folder, with the rights devbox works in it with.
    pub(super) fn instance_dir(&self, name: &str) -> InstanceDir {
        InstanceDir::new(self.instance_root().join(name), self.account.clone())
    }

    /// Where the instance's socket goes: the socket folder of its user, when it runs
    /// as one.
    pub(super) fn own_socket_dir(&self) -> Result<Option<PathBuf>, IsolationError> {
        let Some(account) = &self.account else {
            return Ok(None);
        };
        layout::socket_dir(self.ctx.statuses.state_dir(), account).map(Some)
    }

    /// A Slurm job writes its log itself, as the instance's user (slurmstepd opens
    /// it with the job's rights, where a local instance gets a descriptor devbox
    /// opened): the file is given to that user. The folder it is in stays devbox's.
    pub(super) async fn give_log_to_job(&self, backend: Backend) -> Result<(), String> {
        let (Backend::Slurm, Some(account)) = (backend, self.account.clone()) else {
            return Ok(());
        };
        let log = self.log_file();
        blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&log)
                .and_then(|file| {
                    std::os::unix::fs::fchown(&file, Some(account.uid), Some(account.gid))
                })
                .map_err(IsolationError::io(&log))
        })
        .await
    }

    pub(super) fn run_as(&self) -> Option<Account> {
        self.account.clone()
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IsolationError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(err) => Err(format!("internal error: {err}")),
    }
}
