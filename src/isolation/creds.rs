//! File work inside an instance's folders with the rights of the instance's user.
//!
//! Whatever sits inside an instance's folder is its user's to arrange: a symbolic link
//! to another owner's folder or to a file of root's, a FIFO, a hard link. devbox (root)
//! following such a name would read, write or block on something the user must not
//! reach. So file work on names inside those folders runs on a thread of its own whose
//! filesystem identity is the user's (Linux keeps `fsuid`, `fsgid` and the
//! supplementary groups per thread; with a `fsuid` other than 0 the kernel also drops
//! the capabilities that override file permissions): a name then reaches only what the
//! user could reach anyway, and what is created there is the user's.
//!
//! The three calls are raw system calls: the C library's `setgroups` changes every
//! thread of the process, which must never happen here. The thread ends with the work,
//! so no thread of devbox ever goes back to work with borrowed rights.

use std::path::{Path, PathBuf};

use super::{Account, IsolationError};

/// A folder of an instance's, and with whose rights devbox works inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDir {
    pub path: PathBuf,
    /// `None`: devbox's own (no isolation).
    pub account: Option<Account>,
}

impl InstanceDir {
    pub fn new(path: impl Into<PathBuf>, account: Option<Account>) -> Self {
        Self {
            path: path.into(),
            account,
        }
    }

    /// Runs `work` on the folder, with the account's rights when there is one (on a
    /// thread of its own, which this blocks on). Blocking.
    pub fn run<T: Send>(&self, work: impl FnOnce(&Path) -> T + Send) -> Result<T, IsolationError> {
        let Some(account) = &self.account else {
            return Ok(work(&self.path));
        };
        let path = self.path.as_path();
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                become_for_files(account)?;
                Ok(work(path))
            });
            worker.join().unwrap_or_else(|_| {
                Err(IsolationError::Credentials {
                    user: account.name.clone(),
                    detail: "the work panicked".into(),
                })
            })
        })
    }
}

/// Gives this thread `account`'s filesystem identity, with no supplementary group.
fn become_for_files(account: &Account) -> Result<(), IsolationError> {
    let failed = |detail: String| IsolationError::Credentials {
        user: account.name.clone(),
        detail,
    };
    // SAFETY: plain system calls on this thread's credentials; no memory is shared
    // (`setgroups` with a count of 0 reads no list).
    unsafe {
        if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0 {
            return Err(failed(format!(
                "setgroups: {}",
                std::io::Error::last_os_error()
            )));
        }
        libc::syscall(libc::SYS_setfsgid, account.gid);
        libc::syscall(libc::SYS_setfsuid, account.uid);
        // Both answer the previous value and never fail loudly: ask again (an
        // invalid id changes nothing and answers the current one).
        let fsgid = libc::syscall(libc::SYS_setfsgid, u32::MAX);
        let fsuid = libc::syscall(libc::SYS_setfsuid, u32::MAX);
        if fsuid != i64::from(account.uid) || fsgid != i64::from(account.gid) {
            return Err(failed(format!(
                "the thread's file identity is {fsuid}:{fsgid}, not {}:{}",
                account.uid, account.gid
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn work_in_an_instance_folder_has_its_users_rights_and_devbox_keeps_its_own() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: borrowing a user's rights needs root");
            return;
        }
        let user = nix::unistd::User::from_name("nobody")
            .expect("password database")
            .expect("nobody");
        let account = Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
            home_under_state_dir: false,
            shell: user.shell,
        };
        let root = tempfile::tempdir().expect("tempdir");
        let secret = root.path().join("secret");
        std::fs::write(&secret, "root's").expect("write");
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        nix::unistd::chown(&theirs, Some(user.uid), Some(user.gid)).expect("chown");
        std::os::unix::fs::symlink(&secret, theirs.join("link")).expect("symlink");
        std::fs::set_permissions(
            root.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .expect("chmod");

        let dir = InstanceDir::new(&theirs, Some(account.clone()));
        let read = dir.run(|dir| std::fs::read(dir.join("link"))).expect("ran");
        assert_eq!(
            read.expect_err("the link leads to root's file").kind(),
            std::io::ErrorKind::PermissionDenied
        );
        dir.run(|dir| std::fs::write(dir.join("made"), "x"))
            .expect("ran")
            .expect("written");
        assert_eq!(
            std::fs::metadata(theirs.join("made")).expect("stat").uid(),
            account.uid,
            "what the work makes is the user's"
        );
        // This thread (and the process) is still root.
        assert_eq!(
            std::fs::read_to_string(&secret).expect("root reads"),
            "root's"
        );
    }
}
