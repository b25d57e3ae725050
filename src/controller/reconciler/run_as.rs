//! A server's part in `isolation.run_as: owner`: the Unix user its instance runs as,
//! and its directories changing hands around provisioning (see [`crate::isolation`]).
//! Without isolation every step here does nothing.

use std::path::PathBuf;

use super::ServerTask;
use crate::isolation::{Account, IsolationError, handover, layout};
use crate::provision::WorkspaceSource;
use crate::runtime::Runtime;
use crate::spec::ServerSpec;

impl<R: Runtime> ServerTask<R> {
    /// The folders of the server's own folder its instance writes in.
    pub(super) fn instance_dirs(&self) -> [PathBuf; 4] {
        ["user-data", "extensions", "xdg-data", "xdg-config"].map(|name| self.dir.join(name))
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

    /// Finds (or creates) the user `spec`'s instance runs as, and takes its folders
    /// back for provisioning. Sets [`ServerTask::account`].
    pub(super) async fn take_back_dirs(&mut self, spec: &ServerSpec) -> Result<(), String> {
        self.account = None;
        let Some(accounts) = self.ctx.accounts.clone() else {
            return Ok(());
        };
        let owner = spec.owner.as_ref().map(|owner| owner.as_str().to_owned());
        let dirs = self.owned_dirs(spec);
        let account = blocking(move || {
            let account = accounts.for_owner(owner.as_deref())?;
            for dir in &dirs {
                handover::take_back(dir).map_err(IsolationError::io(dir))?;
            }
            if account.home_under_state_dir {
                layout::ensure_home(&account)?;
            }
            Ok(account)
        })
        .await?;
        self.account = Some(account);
        Ok(())
    }

    /// Gives the provisioned folders (all but the extensions, which are still being
    /// installed) to the instance's user, and opens the server's folder for it.
    pub(super) async fn hand_over_dirs(&self, spec: &ServerSpec) -> Result<(), String> {
        let Some(account) = self.account.clone() else {
            return Ok(());
        };
        let extensions = self.dir.join("extensions");
        let dirs: Vec<PathBuf> = self
            .owned_dirs(spec)
            .into_iter()
            .filter(|dir| *dir != extensions)
            .collect();
        let server_dir = self.dir.clone();
        blocking(move || {
            layout::server_dir(&server_dir)?;
            for dir in &dirs {
                handover::hand_over(dir, &account).map_err(IsolationError::io(dir))?;
            }
            Ok(())
        })
        .await
    }

    /// Gives the extensions folder to the instance's user once the installs are done.
    pub(super) async fn hand_over_extensions(&self) -> Result<(), String> {
        let Some(account) = self.account.clone() else {
            return Ok(());
        };
        let dir = self.dir.join("extensions");
        blocking(move || handover::hand_over(&dir, &account).map_err(IsolationError::io(&dir)))
            .await
    }

    /// Where the instance's socket goes: the socket folder of its user, when it runs
    /// as one.
    pub(super) fn own_socket_dir(&self) -> Result<Option<PathBuf>, IsolationError> {
        let Some(account) = &self.account else {
            return Ok(None);
        };
        layout::socket_dir(self.ctx.statuses.state_dir(), account).map(Some)
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
