//! Git workspaces: cloning a repository, checking out the requested branch, tag or commit,
//! and aborting a clone that runs past its timeout. Only public repositories (or ssh with
//! an agent) are supported: there is no one to prompt for credentials.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use git2::build::{CheckoutBuilder, CloneLocal, RepoBuilder};
use git2::{Cred, CredentialType, FetchOptions, Oid, RemoteCallbacks, Repository};

use super::{GitMirrors, WorkspaceError};

/// Fetch options whose progress callbacks abort the transfer once `deadline` has passed.
fn fetch_options<'a>(deadline: Instant, timed_out: &'a Cell<bool>) -> FetchOptions<'a> {
    // Returning false from a progress callback makes libgit2 abort with a User error.
    let keep_going = move || {
        if Instant::now() >= deadline {
            timed_out.set(true);
            return false;
        }
        true
    };
    let mut callbacks = RemoteCallbacks::new();
    callbacks.transfer_progress(move |_| keep_going());
    callbacks.sideband_progress(move |_| keep_going());
    let mut attempts = 0u32;
    callbacks.credentials(move |_url, username, allowed| {
        // libgit2 calls this again after each failed attempt: try the agent and the default
        // credentials once each, then give up (there is no one to prompt).
        attempts += 1;
        if attempts > 2 {
            return Err(git2::Error::from_str(
                "authentication failed (no usable credentials: use a public URL, or an ssh key in the agent)",
            ));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            return Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::DEFAULT) {
            return Cred::default();
        }
        Err(git2::Error::from_str(
            "the repository asks for credentials; devbox clones public repositories (or ssh with an agent) only",
        ))
    });
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks);
    opts
}

/// Clones `url` into `into` (an empty folder) and checks out `reference` (None = the
/// remote's default branch), giving up once `timeout` has passed. With `mirrors`, the
/// clone is made from the local mirror of `url`, fetched first unless it is fresh.
pub(super) fn clone(
    url: &str,
    reference: Option<&str>,
    into: &Path,
    timeout: Duration,
    mirrors: Option<&GitMirrors>,
) -> Result<(), WorkspaceError> {
    let deadline = Instant::now() + timeout;
    let timed_out = Cell::new(false);
    let map_err = |source: git2::Error, timed_out: bool| {
        if timed_out || (source.code() == git2::ErrorCode::User && Instant::now() >= deadline) {
            WorkspaceError::GitTimeout {
                url: url.to_owned(),
                timeout,
            }
        } else {
            WorkspaceError::GitClone {
                url: url.to_owned(),
                source,
            }
        }
    };

    let repo = match mirrors {
        Some(mirrors) => mirrors.with_mirror(
            url,
            || fetch_options(deadline, &timed_out),
            |e| map_err(e, timed_out.get()),
            |mirror| {
                let from_mirror = || -> Result<Repository, git2::Error> {
                    // A local clone hard-links the mirror's objects.
                    let repo = RepoBuilder::new()
                        .clone_local(CloneLocal::Local)
                        .clone(&mirror.to_string_lossy(), into)?;
                    repo.remote_set_url("origin", url)?;
                    Ok(repo)
                };
                from_mirror().map_err(|e| map_err(e, false))
            },
        )?,
        None => {
            let mut builder = RepoBuilder::new();
            builder.fetch_options(fetch_options(deadline, &timed_out));
            builder
                .clone(url, into)
                .map_err(|e| map_err(e, timed_out.get()))?
        }
    };
    let Some(reference) = reference else {
        return Ok(());
    };

    let checkout_err = |source: git2::Error| WorkspaceError::GitCheckout {
        url: url.to_owned(),
        reference: reference.to_owned(),
        source,
    };
    match resolve_reference(&repo, reference) {
        Some(Resolved::Branch(commit_id)) => {
            let commit = repo.find_commit(commit_id).map_err(checkout_err)?;
            let local = format!("refs/heads/{reference}");
            if repo.find_reference(&local).is_err() {
                let mut branch = repo
                    .branch(reference, &commit, false)
                    .map_err(checkout_err)?;
                // Tracking is a convenience for the user; a failure here does not matter.
                let _ = branch.set_upstream(Some(&format!("origin/{reference}")));
            }
            repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().force()))
                .map_err(checkout_err)?;
            repo.set_head(&local).map_err(checkout_err)?;
        }
        Some(Resolved::Detached(commit_id)) => detach_at(&repo, commit_id).map_err(checkout_err)?,
        None => {
            let not_found = || WorkspaceError::GitReferenceNotFound {
                url: url.to_owned(),
                reference: reference.to_owned(),
            };
            // A full commit id that no branch or tag reaches: ask the remote for it directly.
            let oid = if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
                Oid::from_str(reference).ok()
            } else {
                None
            };
            let Some(oid) = oid else {
                return Err(not_found());
            };
            let fetched = repo.find_remote("origin").and_then(|mut remote| {
                let mut opts = fetch_options(deadline, &timed_out);
                remote.fetch(&[reference], Some(&mut opts), None)
            });
            if let Err(e) = fetched {
                if timed_out.get() {
                    return Err(map_err(e, true));
                }
                return Err(not_found());
            }
            if repo.find_commit(oid).is_err() {
                return Err(not_found());
            }
            detach_at(&repo, oid).map_err(checkout_err)?;
        }
    }
    Ok(())
}

enum Resolved {
    Branch(Oid),
    Detached(Oid),
}

fn resolve_reference(repo: &Repository, reference: &str) -> Option<Resolved> {
    let peel = |name: &str| {
        repo.find_reference(name)
            .and_then(|r| r.peel_to_commit())
            .map(|c| c.id())
            .ok()
    };
    if let Some(id) = peel(&format!("refs/remotes/origin/{reference}")) {
        return Some(Resolved::Branch(id));
    }
    if let Some(id) = peel(&format!("refs/tags/{reference}")) {
        return Some(Resolved::Detached(id));
    }
    repo.revparse_single(reference)
        .and_then(|o| o.peel_to_commit())
        .map(|c| Resolved::Detached(c.id()))
        .ok()
}

fn detach_at(repo: &Repository, id: Oid) -> Result<(), git2::Error> {
    let commit = repo.find_commit(id)?;
    repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().force()))?;
    repo.set_head_detached(id)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use git2::build::CheckoutBuilder;
    use git2::{Oid, Repository};

    use crate::provision::workspace::test_support::{assert_failed_cleanly, no_leftovers};
    use crate::provision::workspace::{
        GitMirrors, WorkspaceError, WorkspaceSource, ZipLimits, prepare,
    };

    /// A repository with `README.md` on the default branch `main`, `dev.txt` on branch `dev`
    /// (one commit later), and a tag `v1` on main's commit. Returns (path, main commit, dev
    /// commit).
    fn make_repo(dir: &Path) -> (PathBuf, Oid, Oid) {
        let path = dir.join("origin");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = Repository::init_opts(&path, &opts).unwrap();
        let sig = git2::Signature::now("Test", "test@example.com").unwrap();
        let commit = |files: &[(&str, &str)], parent: Option<Oid>, refname: &str| {
            let mut index = repo.index().unwrap();
            for (name, content) in files {
                fs::write(path.join(name), content).unwrap();
                index.add_path(Path::new(name)).unwrap();
            }
            index.write().unwrap();
            let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
            let parents: Vec<git2::Commit<'_>> = parent
                .map(|p| repo.find_commit(p).unwrap())
                .into_iter()
                .collect();
            let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
            repo.commit(Some(refname), &sig, &sig, "msg", &tree, &refs)
                .unwrap()
        };
        let main = commit(&[("README.md", "hello\n")], None, "HEAD");
        let dev = commit(&[("dev.txt", "dev work\n")], Some(main), "refs/heads/dev");
        // Put the work tree back on main's state.
        repo.checkout_head(Some(CheckoutBuilder::new().force()))
            .unwrap();
        let _ = fs::remove_file(path.join("dev.txt"));
        repo.tag_lightweight("v1", &repo.find_object(main, None).unwrap(), false)
            .unwrap();
        (path, main, dev)
    }

    fn file_url(path: &Path) -> String {
        format!("file://{}", path.display())
    }

    fn clone_within(
        url: &str,
        reference: Option<&str>,
        target: &Path,
        timeout: Duration,
    ) -> Result<PathBuf, WorkspaceError> {
        prepare(
            &WorkspaceSource::Git {
                url: url.to_owned(),
                reference: reference.map(str::to_owned),
            },
            target,
            &ZipLimits::default(),
            timeout,
            None,
        )
    }

    fn clone_to(
        url: &str,
        reference: Option<&str>,
        target: &Path,
    ) -> Result<PathBuf, WorkspaceError> {
        clone_within(url, reference, target, Duration::from_secs(30))
    }

    /// Asserts cloning `reference` of `url` into `target` fails with `GitReferenceNotFound`
    /// and leaves nothing behind; returns the error.
    fn assert_reference_not_found(url: &str, reference: &str, target: &Path) -> WorkspaceError {
        assert_failed_cleanly(clone_to(url, Some(reference), target), target, |err| {
            matches!(err, WorkspaceError::GitReferenceNotFound { .. })
        })
    }

    fn head_commit(path: &Path) -> Oid {
        Repository::open(path)
            .unwrap()
            .head()
            .unwrap()
            .peel_to_commit()
            .unwrap()
            .id()
    }

    #[test]
    fn git_clone_default_branch_and_branch_ref() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, main, dev) = make_repo(dir.path());
        let ws = dir.path().join("ws");

        let t = ws.join("default");
        clone_to(origin.to_str().unwrap(), None, &t).unwrap();
        assert!(t.join("README.md").is_file());
        assert!(!t.join("dev.txt").exists());
        assert_eq!(head_commit(&t), main);

        let t = ws.join("dev");
        let url = file_url(&origin);
        clone_to(&url, Some("dev"), &t).unwrap();
        assert_eq!(fs::read_to_string(t.join("dev.txt")).unwrap(), "dev work\n");
        let repo = Repository::open(&t).unwrap();
        assert_eq!(repo.head().unwrap().name().unwrap(), "refs/heads/dev");
        assert_eq!(head_commit(&t), dev);

        // The default branch named explicitly.
        let t = ws.join("main");
        clone_to(&url, Some("main"), &t).unwrap();
        assert_eq!(head_commit(&t), main);
        no_leftovers(&ws, &["default", "dev", "main"]);
    }

    #[test]
    fn clones_through_a_mirror_fetch_the_remote_once_and_point_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, main, dev) = make_repo(dir.path());
        let url = file_url(&origin);
        let mirrors = GitMirrors::new(dir.path().join("mirrors"));
        let ws = dir.path().join("ws");
        let through_mirror = |reference: Option<&str>, target: &Path| {
            prepare(
                &WorkspaceSource::Git {
                    url: url.clone(),
                    reference: reference.map(str::to_owned),
                },
                target,
                &ZipLimits::default(),
                Duration::from_secs(30),
                Some(&mirrors),
            )
        };
        through_mirror(None, &ws.join("one")).unwrap();
        assert_eq!(head_commit(&ws.join("one")), main);

        // A commit pushed now is not fetched again for the next clone: the mirror is fresh.
        let repo = Repository::open(&origin).unwrap();
        let sig = git2::Signature::now("Test", "test@example.com").unwrap();
        let tree = repo.find_commit(main).unwrap().tree().unwrap();
        let parent = repo.find_commit(main).unwrap();
        let later = repo
            .commit(Some("HEAD"), &sig, &sig, "later", &tree, &[&parent])
            .unwrap();
        through_mirror(Some("dev"), &ws.join("two")).unwrap();
        assert_eq!(head_commit(&ws.join("two")), dev);
        through_mirror(Some("main"), &ws.join("three")).unwrap();
        assert_eq!(
            head_commit(&ws.join("three")),
            main,
            "served from the mirror"
        );
        assert_ne!(later, main);

        // Each clone's origin is the real repository, not the mirror.
        let clone = Repository::open(ws.join("two")).unwrap();
        assert_eq!(clone.find_remote("origin").unwrap().url(), Ok(url.as_str()));
        let mirrored: Vec<_> = fs::read_dir(dir.path().join("mirrors"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            mirrored.len(),
            1,
            "one mirror, no staging left: {mirrored:?}"
        );
        no_leftovers(&ws, &["one", "two", "three"]);

        // A mirror used a moment ago stays; one unused for longer than the limit goes,
        // and the workspaces cloned from it keep working.
        let day = Duration::from_secs(24 * 60 * 60);
        assert_eq!(mirrors.prune(day), 0);
        let marker = dir
            .path()
            .join("mirrors")
            .join(&mirrored[0])
            .join("devbox-fetched");
        fs::File::options()
            .append(true)
            .open(&marker)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * day)
            .unwrap();
        assert_eq!(mirrors.prune(day), 1);
        assert_eq!(fs::read_dir(dir.path().join("mirrors")).unwrap().count(), 0);
        let clone = Repository::open(ws.join("two")).unwrap();
        assert_eq!(clone.head().unwrap().peel_to_commit().unwrap().id(), dev);
        assert!(
            clone.statuses(None).unwrap().is_empty(),
            "its objects are its own"
        );
        through_mirror(None, &ws.join("four")).unwrap();
        assert_eq!(head_commit(&ws.join("four")), later, "fetched anew");
    }

    #[test]
    fn git_clone_tag_and_commit_sha() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, main, dev) = make_repo(dir.path());
        let url = file_url(&origin);

        let t = dir.path().join("sha");
        clone_to(&url, Some(&dev.to_string()), &t).unwrap();
        assert!(t.join("dev.txt").is_file());
        assert_eq!(head_commit(&t), dev);
        assert!(Repository::open(&t).unwrap().head_detached().unwrap());

        let t = dir.path().join("short");
        clone_to(&url, Some(&dev.to_string()[..8]), &t).unwrap();
        assert_eq!(head_commit(&t), dev);

        let t = dir.path().join("tag");
        clone_to(&url, Some("v1"), &t).unwrap();
        assert_eq!(head_commit(&t), main);
        assert!(!t.join("dev.txt").exists());
    }

    #[test]
    fn git_commit_not_on_any_branch_over_local_transport() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, main, _) = make_repo(dir.path());
        let dangling = {
            let repo = Repository::open(&origin).unwrap();
            let sig = git2::Signature::now("Test", "test@example.com").unwrap();
            let parent = repo.find_commit(main).unwrap();
            let tree = parent.tree().unwrap();
            repo.commit(None, &sig, &sig, "dangling", &tree, &[&parent])
                .unwrap()
        };
        // libgit2's local transport serves only objects reachable from advertised refs, so
        // the extra fetch by sha (meant for smart HTTP/SSH servers that allow it) finds
        // nothing here: the result must be a clear error and no target.
        let t = dir.path().join("ws").join("t");
        assert_reference_not_found(&file_url(&origin), &dangling.to_string(), &t);
    }

    #[test]
    fn git_bad_ref_errors_and_leaves_no_target() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, _, _) = make_repo(dir.path());
        let t = dir.path().join("ws").join("bad");
        let url = origin.to_str().unwrap();
        let err = assert_reference_not_found(url, "no-such-branch", &t);
        assert!(err.to_string().contains("no-such-branch"), "{err}");
        // A well-formed sha that does not exist.
        assert_reference_not_found(url, &"ab".repeat(20), &t);
    }

    #[test]
    fn git_bad_url_errors_and_leaves_no_target() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("ws").join("t");
        let missing = dir.path().join("missing-repo");
        let result = clone_to(missing.to_str().unwrap(), None, &t);
        assert_failed_cleanly(result, &t, |err| {
            matches!(err, WorkspaceError::GitClone { .. })
        });
    }

    #[test]
    fn git_timeout_aborts_the_clone() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, _, _) = make_repo(dir.path());
        let t = dir.path().join("ws").join("t");
        // file:// goes through the transport (and its progress callbacks), unlike a plain path.
        let result = clone_within(&file_url(&origin), None, &t, Duration::ZERO);
        assert_failed_cleanly(result, &t, |err| {
            matches!(err, WorkspaceError::GitTimeout { .. })
        });
    }
}
