//! Git workspaces: cloning a repository, checking out the requested branch, tag or commit,
//! and the limits every clone obeys. Only public repositories (or ssh with an agent) are
//! supported: there is no one to prompt for credentials.
//!
//! The limits ([`GitPolicy`] and the time limit):
//! - Hosts: unless local hosts are allowed, the URL's host is resolved and refused when
//!   it is inside this host ([`crate::git_url`]) before anything connects, and HTTP
//!   redirects are not followed (libgit2 offers no hook to vet where one leads).
//! - Size: the download stops once it passes the workspace limit; the clone is made
//!   without a checkout, the sizes its tree declares for its files are added up (from
//!   the object headers, without reading the files), and only a tree that fits with its
//!   `.git` is checked out. The checkout runs without filters (no end-of-line or
//!   `ident` rewriting), so it writes exactly the declared bytes; what is on disk is
//!   measured again afterwards.
//! - Time: one deadline covers the fetch and the checkout. libgit2 cannot interrupt a
//!   checkout, and it checks a transfer's deadline only while data flows, so under
//!   devbox both run in a child process that is killed at the deadline (`child`);
//!   in this process the checkout is bounded in bytes first, and a clone that ends
//!   past the deadline fails all the same.
//! - Memory: the child's address space is limited, so a server that sends an endless
//!   ref advertisement or pack (which libgit2 buffers) ends the child, not devbox.
//! - Mirror size: a mirror larger than a workspace may be is removed (every workspace
//!   holds all its mirror's objects, so it could never be checked out); the parent
//!   also watches the mirror grow while the child fetches.
//!
//! A failure leaves nothing: the caller clones into a temporary folder that is removed
//! with whatever was written.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use git2::build::{CheckoutBuilder, CloneLocal, RepoBuilder};
use git2::{
    Cred, CredentialType, FetchOptions, ObjectType, Oid, RemoteCallbacks, RemoteRedirect,
    Repository, TreeWalkMode, TreeWalkResult,
};

use super::job::{Job, Step};
use super::mirror::{self, MirrorError, Runner};
use super::{GitMirrors, GitPolicy, WorkspaceError, child};

/// What stopped a transfer from inside its progress callbacks.
struct Guard {
    deadline: Instant,
    max_bytes: u64,
    timed_out: Cell<bool>,
    /// Bytes received when the download passed `max_bytes`.
    too_large: Cell<Option<u64>>,
}

impl Guard {
    fn keep_going(&self, received: Option<usize>) -> bool {
        if Instant::now() >= self.deadline {
            self.timed_out.set(true);
            return false;
        }
        if let Some(received) = received.map(|r| r as u64)
            && received > self.max_bytes
        {
            self.too_large.set(Some(received));
            return false;
        }
        true
    }
}

/// Fetch options whose progress callbacks abort the transfer once the guard's deadline
/// has passed or the download grew past its limit; redirects followed only when local
/// hosts are allowed.
fn fetch_options(guard: &Guard, allow_local_hosts: bool) -> FetchOptions<'_> {
    // Returning false from a progress callback makes libgit2 abort with a User error.
    let mut callbacks = RemoteCallbacks::new();
    callbacks.transfer_progress(move |progress| guard.keep_going(Some(progress.received_bytes())));
    callbacks.sideband_progress(move |_| guard.keep_going(None));
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
    // A redirect is a second host that no check has seen.
    opts.follow_redirects(if allow_local_hosts {
        RemoteRedirect::Initial
    } else {
        RemoteRedirect::None
    });
    opts
}

/// Clones `url` into `into` (an empty folder) and checks out `reference` (None = the
/// remote's default branch), within `timeout` and `policy`. With `mirrors`, the clone is
/// made from the local mirror of `url`, fetched first unless it is fresh; the mirrors
/// say whether the fetch and the checkout run here or in a child process (`child`).
pub(super) fn clone(
    url: &str,
    reference: Option<&str>,
    into: &Path,
    timeout: Duration,
    mirrors: Option<&GitMirrors>,
    policy: &GitPolicy,
) -> Result<(), WorkspaceError> {
    let task = Task {
        url,
        timeout,
        deadline: Instant::now() + timeout,
        policy: *policy,
    };
    let Some(mirrors) = mirrors else {
        return task.clone_remote(reference, into);
    };
    match mirrors.runner() {
        Runner::InProcess => mirrors.with_mirror(
            url,
            |mirror| task.fetch_mirror(mirror),
            |mirror| task.clone_mirror(mirror, reference, into),
        ),
        Runner::Child(exe) => mirrors.with_mirror(
            url,
            |mirror| {
                task.in_child(exe, mirror, Step::Mirror).map_err(|failure| {
                    // Cut off mid-transfer: what it wrote is not a mirror to keep.
                    if failure.killed {
                        mirror::discard(mirror);
                    }
                    failure.error
                })
            },
            |mirror| {
                let step = Step::Checkout {
                    into: into.to_path_buf(),
                    reference: reference.map(str::to_owned),
                };
                task.in_child(exe, mirror, step)
                    .map_err(|failure| failure.error)
            },
        ),
    }
}

/// Runs one step of a clone (the [`Job`] read by `devbox __git-fetch`) in this process:
/// the child's side of [`Task::in_child`].
pub(super) fn run_job(job: &Job) -> Result<(), WorkspaceError> {
    let task = Task {
        url: &job.url,
        timeout: job.git_timeout(),
        deadline: Instant::now() + Duration::from_millis(job.timeout_ms),
        policy: job.policy(),
    };
    match &job.step {
        Step::Mirror => task.fetch_mirror(&job.mirror),
        Step::Checkout { into, reference } => {
            task.clone_mirror(&job.mirror, reference.as_deref(), into)
        }
    }
}

/// One clone: its URL and the limits all its steps share.
struct Task<'a> {
    url: &'a str,
    /// `ui.workspace.git_timeout`, as messages name it.
    timeout: Duration,
    /// When the clone's time is up (the same instant for every step).
    deadline: Instant,
    policy: GitPolicy,
}

impl Task<'_> {
    fn timed_out(&self) -> WorkspaceError {
        WorkspaceError::GitTimeout {
            url: self.url.to_owned(),
            timeout: self.timeout,
        }
    }

    fn too_large(&self, detail: String) -> WorkspaceError {
        WorkspaceError::GitTooLarge {
            url: self.url.to_owned(),
            max_mb: self.policy.max_workspace_bytes / MIB,
            detail,
        }
    }

    fn guard(&self) -> Guard {
        Guard {
            deadline: self.deadline,
            max_bytes: self.policy.max_workspace_bytes,
            timed_out: Cell::new(false),
            too_large: Cell::new(None),
        }
    }

    /// A transfer's error, told apart by what its guard saw.
    fn transfer_error(&self, guard: &Guard, source: git2::Error) -> WorkspaceError {
        if guard.timed_out.get()
            || (source.code() == git2::ErrorCode::User && Instant::now() >= guard.deadline)
        {
            self.timed_out()
        } else if let Some(received) = guard.too_large.get() {
            self.too_large(format!("its download passed {received} bytes"))
        } else {
            WorkspaceError::GitClone {
                url: self.url.to_owned(),
                source,
            }
        }
    }

    /// Options for one transfer; called just before it, so the host is looked at only
    /// when git will connect.
    fn connect<'g>(&self, guard: &'g Guard) -> Result<FetchOptions<'g>, WorkspaceError> {
        if !self.policy.allow_local_hosts {
            crate::git_url::check_resolved(self.url)
                .map_err(|source| WorkspaceError::GitHost { source })?;
        }
        Ok(fetch_options(guard, self.policy.allow_local_hosts))
    }

    /// Runs `step` of this clone in a child process of `exe`, within what is left of
    /// the time limit.
    fn in_child(&self, exe: &Path, mirror: &Path, step: Step) -> Result<(), child::Failure> {
        let Some(left) = self.deadline.checked_duration_since(Instant::now()) else {
            return Err(child::Failure {
                error: self.timed_out(),
                killed: false,
            });
        };
        let watch = matches!(step, Step::Mirror).then(|| mirror.to_path_buf());
        let job = Job {
            url: self.url.to_owned(),
            mirror: mirror.to_path_buf(),
            step,
            timeout_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            git_timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            max_workspace_bytes: self.policy.max_workspace_bytes,
            allow_local_hosts: self.policy.allow_local_hosts,
            memory_limit: child::memory_limit(&self.policy),
            parent: std::process::id(),
        };
        child::run(exe, &job, self.deadline, watch.as_deref())
    }

    /// Fetches the remote into `mirror` (see `mirror::fetch`), then checks the mirror
    /// fits the workspace limit: every workspace holds all of its mirror's objects, so a
    /// larger mirror could never be checked out, and it is removed.
    fn fetch_mirror(&self, mirror: &Path) -> Result<(), WorkspaceError> {
        let guard = self.guard();
        mirror::fetch(self.url, mirror, self.connect(&guard)?).map_err(|error| match error {
            MirrorError::Git(e) => self.transfer_error(&guard, e),
            MirrorError::Io(what, e) => WorkspaceError::io(what, e),
        })?;
        let bytes = disk_bytes(mirror)?;
        if bytes > self.policy.max_workspace_bytes {
            mirror::discard(mirror);
            return Err(self.too_large(format!("its mirror took {bytes} bytes")));
        }
        Ok(())
    }

    /// Straight from the remote, no mirror.
    fn clone_remote(&self, reference: Option<&str>, into: &Path) -> Result<(), WorkspaceError> {
        let guard = self.guard();
        let mut builder = RepoBuilder::new();
        builder.fetch_options(self.connect(&guard)?);
        builder.with_checkout(no_checkout());
        let repo = builder
            .clone(self.url, into)
            .map_err(|e| self.transfer_error(&guard, e))?;
        self.check_out(&guard, &repo, reference, into)
    }

    /// From the mirror: a local clone hard-links the mirror's objects; its `origin` is
    /// the real URL.
    fn clone_mirror(
        &self,
        mirror: &Path,
        reference: Option<&str>,
        into: &Path,
    ) -> Result<(), WorkspaceError> {
        let guard = self.guard();
        let clone = || -> Result<Repository, git2::Error> {
            let repo = RepoBuilder::new()
                .clone_local(CloneLocal::Local)
                .with_checkout(no_checkout())
                .clone(&mirror.to_string_lossy(), into)?;
            repo.remote_set_url("origin", self.url)?;
            Ok(repo)
        };
        let repo = clone().map_err(|e| WorkspaceError::GitClone {
            url: self.url.to_owned(),
            source: e,
        })?;
        self.check_out(&guard, &repo, reference, into)
    }

    /// Checks out `reference` in `repo` (cloned into `into` without a checkout), once
    /// its size is known to fit.
    fn check_out(
        &self,
        guard: &Guard,
        repo: &Repository,
        reference: Option<&str>,
        into: &Path,
    ) -> Result<(), WorkspaceError> {
        let url = self.url;
        let target = match reference {
            None => Target::Head,
            Some(reference) => match resolve_reference(repo, reference) {
                Some(Resolved::Branch(id)) => Target::Branch(reference, id),
                Some(Resolved::Detached(id)) => Target::Detached(id),
                None => {
                    let oid = fetch_commit(repo, reference, &|| self.connect(guard)).map_err(
                        |e| match e {
                            FetchCommit::Git(e)
                                if guard.timed_out.get() || guard.too_large.get().is_some() =>
                            {
                                self.transfer_error(guard, e)
                            }
                            FetchCommit::Git(_) | FetchCommit::NotFound => {
                                WorkspaceError::GitReferenceNotFound {
                                    url: url.to_owned(),
                                    reference: reference.to_owned(),
                                }
                            }
                            FetchCommit::Refused(e) => e,
                        },
                    )?;
                    Target::Detached(oid)
                }
            },
        };
        let checkout_err = |source: git2::Error| WorkspaceError::GitCheckout {
            url: url.to_owned(),
            reference: reference.unwrap_or("HEAD").to_owned(),
            source,
        };

        // What the checkout will write, and what the clone holds already.
        let commit = match target {
            Target::Head => match repo.head() {
                Ok(head) => head.peel_to_commit(),
                // An empty repository: nothing to check out.
                Err(e)
                    if matches!(
                        e.code(),
                        git2::ErrorCode::UnbornBranch | git2::ErrorCode::NotFound
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => Err(e),
            },
            Target::Branch(_, id) | Target::Detached(id) => repo.find_commit(id),
        }
        .map_err(checkout_err)?;
        let max_bytes = self.policy.max_workspace_bytes;
        let git_dir_bytes = disk_bytes(repo.path())?;
        let budget = max_bytes.saturating_sub(git_dir_bytes);
        let files = declared_bytes(repo, &commit, budget).map_err(checkout_err)?;
        if files > budget {
            return Err(self.too_large(format!(
                "its files need more than {budget} bytes besides the {git_dir_bytes} bytes of its .git"
            )));
        }
        if Instant::now() >= self.deadline {
            return Err(self.timed_out());
        }

        let mut checkout = CheckoutBuilder::new();
        checkout.force().disable_filters(true);
        match target {
            Target::Head => repo.checkout_head(Some(&mut checkout)),
            Target::Branch(reference, _) => {
                let local = format!("refs/heads/{reference}");
                if repo.find_reference(&local).is_err() {
                    let mut branch = repo
                        .branch(reference, &commit, false)
                        .map_err(checkout_err)?;
                    // Tracking is a convenience for the user; a failure here does not matter.
                    let _ = branch.set_upstream(Some(&format!("origin/{reference}")));
                }
                repo.checkout_tree(commit.as_object(), Some(&mut checkout))
                    .and_then(|()| repo.set_head(&local))
            }
            Target::Detached(id) => repo
                .checkout_tree(commit.as_object(), Some(&mut checkout))
                .and_then(|()| repo.set_head_detached(id)),
        }
        .map_err(checkout_err)?;

        // Exactly what was declared, unless something unforeseen wrote more: measure.
        let on_disk = disk_bytes(into)?;
        if on_disk > max_bytes {
            return Err(self.too_large(format!("it took {on_disk} bytes on disk")));
        }
        if Instant::now() >= self.deadline {
            return Err(self.timed_out());
        }
        Ok(())
    }
}

/// Clone options that check nothing out: the checkout comes later, once its size is
/// known.
fn no_checkout() -> CheckoutBuilder<'static> {
    let mut checkout = CheckoutBuilder::new();
    checkout.dry_run();
    checkout
}

const MIB: u64 = 1024 * 1024;

/// The commit a clone checks out.
enum Target<'r> {
    /// The remote's default branch, which the clone's HEAD names.
    Head,
    /// A branch of the remote (name, commit).
    Branch(&'r str, Oid),
    /// A tag or a commit.
    Detached(Oid),
}

enum FetchCommit {
    Git(git2::Error),
    NotFound,
    Refused(WorkspaceError),
}

/// A full commit id that no branch or tag reaches: asks the remote for it directly.
fn fetch_commit<'g>(
    repo: &Repository,
    reference: &str,
    connect: &dyn Fn() -> Result<FetchOptions<'g>, WorkspaceError>,
) -> Result<Oid, FetchCommit> {
    let is_full_id = reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit());
    let Some(oid) = is_full_id.then(|| Oid::from_str(reference).ok()).flatten() else {
        return Err(FetchCommit::NotFound);
    };
    let mut opts = connect().map_err(FetchCommit::Refused)?;
    repo.find_remote("origin")
        .and_then(|mut remote| remote.fetch(&[reference], Some(&mut opts), None))
        .map_err(FetchCommit::Git)?;
    if repo.find_commit(oid).is_err() {
        return Err(FetchCommit::NotFound);
    }
    Ok(oid)
}

/// The bytes the files of `commit`'s tree declare (blob sizes from the object headers,
/// nothing inflated); stops counting once past `budget`.
fn declared_bytes(
    repo: &Repository,
    commit: &git2::Commit<'_>,
    budget: u64,
) -> Result<u64, git2::Error> {
    let odb = repo.odb()?;
    let tree = commit.tree()?;
    let mut total = 0u64;
    let mut failed = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |_, entry| {
        // Submodules (commits) are not checked out; trees are walked into.
        if entry.kind() != Some(ObjectType::Blob) {
            return TreeWalkResult::Ok;
        }
        match odb.read_header(entry.id()) {
            Ok((size, _)) => total = total.saturating_add(size as u64),
            Err(err) => {
                failed = Some(err);
                return TreeWalkResult::Abort;
            }
        }
        if total > budget {
            return TreeWalkResult::Abort;
        }
        TreeWalkResult::Ok
    });
    match failed {
        Some(err) => Err(err),
        // Stopped early on purpose: the walk reports the abort as an error.
        None if total > budget => Ok(total),
        None => walked.map(|()| total),
    }
}

/// The bytes of the files under `dir` (symbolic links not followed).
pub(super) fn disk_bytes(dir: &Path) -> Result<u64, WorkspaceError> {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|e| WorkspaceError::io(format!("cannot measure {}", current.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                WorkspaceError::io(format!("cannot measure {}", current.display()), e)
            })?;
            let meta = std::fs::symlink_metadata(entry.path()).map_err(|e| {
                WorkspaceError::io(format!("cannot measure {}", entry.path().display()), e)
            })?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use git2::build::CheckoutBuilder;
    use git2::{Oid, Repository};

    use crate::provision::workspace::test_support::{assert_failed_cleanly, no_leftovers};
    use crate::provision::workspace::{
        GitMirrors, GitPolicy, WorkspaceError, WorkspaceSource, ZipLimits, prepare,
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

    /// Prepares the git workspace `url` at `reference` in `target` within `timeout`,
    /// through `mirrors` when given.
    fn clone_git(
        url: &str,
        reference: Option<&str>,
        target: &Path,
        timeout: Duration,
        mirrors: Option<&GitMirrors>,
    ) -> Result<PathBuf, WorkspaceError> {
        prepare(
            &WorkspaceSource::Git {
                url: url.to_owned(),
                reference: reference.map(str::to_owned),
            },
            target,
            &ZipLimits::default(),
            timeout,
            mirrors,
        )
    }

    /// Clones straight from the remote, with time to spare.
    fn clone_to(
        url: &str,
        reference: Option<&str>,
        target: &Path,
    ) -> Result<PathBuf, WorkspaceError> {
        clone_git(url, reference, target, Duration::from_secs(30), None)
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
        let mirrors = GitMirrors::in_process(dir.path().join("mirrors"), GitPolicy::default());
        let ws = dir.path().join("ws");
        let through_mirror = |reference: Option<&str>, target: &Path| {
            clone_git(
                &url,
                reference,
                target,
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
        let result = clone_git(&file_url(&origin), None, &t, Duration::ZERO, None);
        assert_failed_cleanly(result, &t, |err| {
            matches!(err, WorkspaceError::GitTimeout { .. })
        });
    }

    /// A repository whose one commit holds `big.bin`: `bytes` zeros, which compress to
    /// almost nothing.
    fn zeros_repo(dir: &Path, bytes: usize) -> PathBuf {
        let path = dir.join("zeros");
        let repo = Repository::init(&path).unwrap();
        fs::write(path.join("big.bin"), vec![0u8; bytes]).unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("big.bin")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("Test", "test@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "zeros", &tree, &[])
            .unwrap();
        path
    }

    /// Mirrors in `dir` whose clones may take at most `max_workspace_bytes`.
    fn mirrors_limited_to(dir: PathBuf, max_workspace_bytes: u64) -> GitMirrors {
        GitMirrors::in_process(
            dir,
            GitPolicy {
                max_workspace_bytes,
                ..GitPolicy::default()
            },
        )
    }

    #[test]
    fn a_tree_larger_than_the_limit_is_never_checked_out() {
        let dir = tempfile::tempdir().unwrap();
        let origin = zeros_repo(dir.path(), 20 << 20);
        let url = file_url(&origin);
        let small = mirrors_limited_to(dir.path().join("mirrors"), 5 << 20);
        let t = dir.path().join("ws").join("t");
        for reference in [None, Some("HEAD"), Some("master")] {
            let err = assert_failed_cleanly(
                clone_git(&url, reference, &t, Duration::from_secs(30), Some(&small)),
                &t,
                |err| matches!(err, WorkspaceError::GitTooLarge { .. }),
            );
            let text = err.to_string();
            assert!(
                text.contains("ui.workspace.max_workspace_mb (5 MB)"),
                "{text}"
            );
        }
        // Straight from the remote too (no mirror: the default policy), with room.
        let t2 = dir.path().join("ws2").join("t");
        clone_to(&url, None, &t2).unwrap();
        assert_eq!(fs::metadata(t2.join("big.bin")).unwrap().len(), 20 << 20);
    }

    #[test]
    fn a_download_larger_than_the_limit_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("noise");
        let repo = Repository::init(&origin).unwrap();
        // Bytes that do not compress: the pack itself is over the limit.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..(3u32 << 20))
            .map(|_| {
                // xorshift64: enough disorder that zlib finds nothing to compress.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        fs::write(origin.join("noise.bin"), noise).unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("noise.bin")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("Test", "test@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "noise", &tree, &[])
            .unwrap();
        let mirrors = mirrors_limited_to(dir.path().join("mirrors"), 1 << 20);
        let t = dir.path().join("ws").join("t");
        let err = assert_failed_cleanly(
            clone_git(
                &file_url(&origin),
                None,
                &t,
                Duration::from_secs(30),
                Some(&mirrors),
            ),
            &t,
            |err| matches!(err, WorkspaceError::GitTooLarge { .. }),
        );
        assert!(err.to_string().contains("max_workspace_mb"), "{err}");
        assert!(err.to_string().contains("download passed"), "{err}");
        no_leftovers(&dir.path().join("mirrors"), &[]);
    }

    #[test]
    fn the_time_limit_covers_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let (origin, _, _) = make_repo(dir.path());
        let url = file_url(&origin);
        let mirrors = GitMirrors::in_process(dir.path().join("mirrors"), GitPolicy::default());
        clone_git(
            &url,
            None,
            &dir.path().join("first"),
            Duration::from_secs(30),
            Some(&mirrors),
        )
        .unwrap();
        // The mirror is fresh: nothing is fetched, so only the checkout is left to time.
        let t = dir.path().join("ws").join("t");
        let err = assert_failed_cleanly(
            clone_git(&url, None, &t, Duration::ZERO, Some(&mirrors)),
            &t,
            |err| matches!(err, WorkspaceError::GitTimeout { .. }),
        );
        assert!(
            err.to_string().contains("ui.workspace.git_timeout"),
            "{err}"
        );
    }

    #[test]
    fn local_hosts_are_refused_before_connecting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let mirrors = GitMirrors::in_process(dir.path().join("mirrors"), GitPolicy::default());
        let t = dir.path().join("ws").join("t");
        for url in [
            format!("https://127.0.0.1:{port}/r.git"),
            format!("https://localhost:{port}/r.git"),
            format!("ssh://git@127.0.0.1:{port}/r.git"),
        ] {
            for through_mirror in [true, false] {
                let result = if through_mirror {
                    clone_git(&url, None, &t, Duration::from_secs(30), Some(&mirrors))
                } else {
                    clone_to(&url, None, &t)
                };
                let err = assert_failed_cleanly(result, &t, |err| {
                    matches!(err, WorkspaceError::GitHost { .. })
                });
                assert!(err.to_string().contains("allow_local_git_hosts"), "{err}");
            }
        }
        assert_eq!(
            listener.accept().map_err(|e| e.kind()).err(),
            Some(std::io::ErrorKind::WouldBlock),
            "nothing connected"
        );
    }

    #[test]
    fn an_empty_repository_clones_to_an_empty_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("empty");
        Repository::init(&origin).unwrap();
        let t = dir.path().join("ws").join("t");
        clone_to(&file_url(&origin), None, &t).unwrap();
        assert!(t.join(".git").is_dir());
    }
}
