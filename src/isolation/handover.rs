//! Directories devbox made given to an instance's user.
//!
//! [`hand_over`] gives a directory and everything in it to the instance's user once
//! devbox has made it (a workspace cloned, an extension copied). The walk goes by file descriptor
//! (`openat` with `O_NOFOLLOW`, `fchown` on what was opened), so a symbolic link is
//! never followed and a directory swapped for one mid-walk is skipped; a regular file
//! with more than one link keeps its owner: it is shared (the extension cache's and git
//! mirrors' files, hard-linked into instances read-only) or a link someone planted to a
//! file they must not get.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat};
use nix::unistd::{Gid, Uid, fchown, fchownat};

use super::Account;

/// Mode of an instance's directories: its user's alone.
const OWN_DIR_MODE: u32 = 0o700;
/// Deeper than this, a walk stops (and says so): no workspace is built that deep, and
/// each level holds a descriptor.
const MAX_DEPTH: usize = 256;

/// Gives `dir` and everything in it to `account` (see the module's doc for what keeps
/// its owner); `dir` gets mode 0700.
pub fn hand_over(dir: &Path, account: &Account) -> io::Result<()> {
    let fd = open_dir(dir)?;
    let owner = Owner::of(account);
    walk(&fd, &owner, 0)?;
    owner.give(&fd, &fstat(&fd)?)?;
    fchmod(&fd, Mode::from_bits_truncate(OWN_DIR_MODE))?;
    Ok(())
}

/// Creates `dir` when missing and gives it (the directory alone, mode 0700) to
/// `account`.
pub fn give_dir(dir: &Path, account: &Account) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    let fd = open_dir(dir)?;
    Owner::of(account).give(&fd, &fstat(&fd)?)?;
    fchmod(&fd, Mode::from_bits_truncate(OWN_DIR_MODE))?;
    Ok(())
}

/// A directory opened without following a symbolic link at its last component.
fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

struct Owner {
    uid: Uid,
    gid: Gid,
}

impl Owner {
    fn of(account: &Account) -> Self {
        Self {
            uid: Uid::from_raw(account.uid),
            gid: Gid::from_raw(account.gid),
        }
    }

    fn owns(&self, stat: &FileStat) -> bool {
        stat.st_uid == self.uid.as_raw() && stat.st_gid == self.gid.as_raw()
    }

    /// `fchown` of an opened file or directory, when it is not the owner's already.
    fn give(&self, fd: &impl AsFd, stat: &FileStat) -> io::Result<()> {
        if !self.owns(stat) {
            fchown(fd, Some(self.uid), Some(self.gid))?;
        }
        Ok(())
    }
}

fn walk(dir: &OwnedFd, owner: &Owner, depth: usize) -> io::Result<()> {
    for name in entry_names(dir)? {
        // `O_PATH`: opens any kind of file (a symbolic link itself, with `O_NOFOLLOW`)
        // without reading it; what is checked below is what is changed.
        let entry = match openat(
            dir,
            name.as_c_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Removed meanwhile: nothing to give.
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(err) => return Err(err.into()),
        };
        let stat = fstat(&entry)?;
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR {
            if depth >= MAX_DEPTH {
                tracing::warn!(
                    depth,
                    "an instance directory is nested too deep; its deepest folders keep their owner"
                );
                continue;
            }
            let sub = openat(
                &entry,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            walk(&sub, owner, depth + 1)?;
            owner.give(&sub, &stat)?;
        } else if kind == SFlag::S_IFREG && stat.st_nlink > 1 {
            // Shared, or planted: see the module's doc.
        } else if !owner.owns(&stat) {
            // On an `O_PATH` descriptor `fchown` fails; `fchownat` with an empty path
            // changes the file it names (a symbolic link itself included).
            fchownat(
                &entry,
                "",
                Some(owner.uid),
                Some(owner.gid),
                nix::fcntl::AtFlags::AT_EMPTY_PATH,
            )?;
        }
    }
    Ok(())
}

/// The names in `dir` but `.` and `..`, read through a descriptor of its own.
fn entry_names(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let mut listing = Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let name = entry?.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn nobody() -> Option<Account> {
        let user = nix::unistd::User::from_name("nobody").ok()??;
        Some(Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
            home_under_state_dir: false,
            shell: user.shell,
        })
    }

    /// Needs root (CI and the test machine run as root); elsewhere there is nothing to
    /// hand over to, and the test says so.
    #[test]
    fn hand_over_follows_no_link_and_gives_no_shared_file() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: handing over needs root");
            return;
        }
        let account = nobody().expect("the nobody user");
        let root = tempfile::tempdir().expect("tempdir");
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("secret"), "root's").expect("write");
        let shared = root.path().join("shared-file");
        std::fs::write(&shared, "cache").expect("write");

        let instance = root.path().join("instance");
        std::fs::create_dir_all(instance.join("sub/deeper")).expect("mkdir");
        std::fs::write(instance.join("sub/deeper/own"), "mine").expect("write");
        std::os::unix::fs::symlink(&outside, instance.join("sub/link")).expect("symlink");
        std::fs::hard_link(&shared, instance.join("linked")).expect("link");

        hand_over(&instance, &account).expect("handed over");
        let uid = |p: &Path| std::fs::symlink_metadata(p).expect("stat").uid();
        assert_eq!(uid(&instance), account.uid);
        assert_eq!(uid(&instance.join("sub/deeper/own")), account.uid);
        assert_eq!(
            uid(&instance.join("sub/link")),
            account.uid,
            "the link itself"
        );
        assert_eq!(uid(&outside), 0, "the link's target is untouched");
        assert_eq!(uid(&outside.join("secret")), 0);
        assert_eq!(uid(&shared), 0, "a hard-linked file keeps its owner");
        let mode = std::fs::metadata(&instance).expect("stat").mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }
}
