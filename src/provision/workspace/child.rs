//! The parent's side of running one step of a git clone (a [`Job`]) in a child process
//! that devbox can kill: `devbox __git-fetch` (see `subcommand` for the child's side).
//!
//! libgit2 checks a clone's deadline only while data flows and cannot cancel a
//! checkout, and it buffers a server's whole ref advertisement: in this process, a
//! server that trickles a byte a second held a mirror's locks (and devbox's shutdown)
//! for ever, and one that sent refs without end grew devbox by gigabytes. In a child:
//! - the child is its own process group, and the group is killed with SIGKILL at the
//!   deadline, when the mirror it fetches into grows past the workspace limit, when
//!   devbox's runtime shuts down, and when the waiting thread unwinds (a drop guard);
//!   the caller's locks are released as the error returns;
//! - its address space is limited ([`memory_limit`]), so memory it cannot get ends it,
//!   not devbox;
//! - its environment is an allow-list (what every process devbox starts inherits, and
//!   [`GIT_ENV`]): no `DEVBOX_*` variable (the API token) reaches it, nor anything
//!   else devbox was given;
//! - the job goes in on stdin and the outcome comes back as one JSON line on stdout
//!   (`job`); a child that ends without one is reported from its exit status and the
//!   last line it wrote to stderr.
//!
//! Blocking: the caller runs it in `spawn_blocking`, and this thread polls the child.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::job::{Job, Outcome};
use super::{GitPolicy, WorkspaceError, git, mirror};

/// The hidden subcommand the child runs.
pub(super) const SUBCOMMAND: &str = "__git-fetch";

/// Address space of a child besides the workspace limit: devbox's own mappings, libgit2's
/// pack windows (capped by the child at [`PACK_WINDOWS`]), stacks and buffers. The
/// workspace limit is added because a checkout holds one whole file in memory, and a
/// file may be as large as a workspace.
const BASE_ADDRESS_SPACE: u64 = 512 << 20;

/// Most bytes of packs libgit2 maps at once in a child.
pub(super) const PACK_WINDOWS: usize = 256 << 20;

/// How often the waiting thread looks at the child (and the mirror's size).
const POLL: Duration = Duration::from_millis(100);

/// Most bytes read of a child's stdout and of its stderr.
const OUTPUT_LIMIT: u64 = 64 * 1024;

/// What a git child gets besides the environment every process devbox starts inherits
/// ([`crate::runtime::inherited_env`]): where git's own config lives and the ssh agent
/// libssh2 asks for keys.
const GIT_ENV: [&str; 2] = ["XDG_CONFIG_HOME", "SSH_AUTH_SOCK"];

/// The most address space a child for clones under `policy` may map (RLIMIT_AS).
pub(super) fn memory_limit(policy: &GitPolicy) -> u64 {
    BASE_ADDRESS_SPACE.saturating_add(policy.max_workspace_bytes)
}

/// Why a step in a child failed.
pub(super) struct Failure {
    pub error: WorkspaceError,
    /// The child was killed or died before it could report (so it may have left
    /// half-written files behind).
    pub killed: bool,
}

/// Runs `job` in a child process of `exe` and waits for it until `deadline`. With
/// `watch` (a mirror being fetched), the child is also killed once the mirror (or its
/// staging folder) holds more than the workspace limit.
pub(super) fn run(
    exe: &Path,
    job: &Job,
    deadline: Instant,
    watch: Option<&Path>,
) -> Result<(), Failure> {
    let killed = |error| Failure {
        error,
        killed: true,
    };
    let process_error = |detail: String| WorkspaceError::GitProcess {
        url: job.url.clone(),
        detail,
    };
    let mut command = Command::new(exe);
    command
        .arg(SUBCOMMAND)
        .env_clear()
        .envs(crate::runtime::inherited_env())
        .envs(
            GIT_ENV
                .iter()
                .filter_map(|k| Some((k, std::env::var_os(k)?))),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = command.spawn().map_err(|err| Failure {
        error: process_error(format!("cannot be started from {}: {err}", exe.display())),
        killed: false,
    })?;
    let mut child = GroupGuard::new(child);
    tracing::debug!(pid = child.pid(), url = %job.url, step = ?job.step, "git child started");
    let input = serde_json::to_vec(job).map_err(|err| Failure {
        error: process_error(format!("cannot be given its job: {err}")),
        killed: false,
    })?;
    if let Some(mut stdin) = child.child.stdin.take() {
        // A child that died before reading is reported from its exit below.
        let _ = stdin.write_all(&input);
    }

    let shutdown = RuntimeWatch::new();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(err) => {
                child.kill();
                return Err(killed(process_error(format!(
                    "cannot be waited for: {err}"
                ))));
            }
        }
        if Instant::now() >= deadline {
            child.kill();
            tracing::warn!(url = %job.url, "git child killed at the time limit");
            return Err(killed(WorkspaceError::GitTimeout {
                url: job.url.clone(),
                timeout: job.git_timeout(),
            }));
        }
        if let Some(mirror) = watch {
            let bytes = dir_bytes(mirror).saturating_add(dir_bytes(&mirror::staging_of(mirror)));
            if bytes > job.max_workspace_bytes {
                child.kill();
                return Err(killed(WorkspaceError::GitTooLarge {
                    url: job.url.clone(),
                    max_mb: job.max_workspace_bytes / MIB,
                    detail: format!("its mirror passed {bytes} bytes while fetching"),
                }));
            }
        }
        if shutdown.is_shutting_down() {
            child.kill();
            return Err(killed(process_error(
                "was stopped: devbox is shutting down".into(),
            )));
        }
        std::thread::sleep(POLL);
    };
    let stdout = read_capped(child.child.stdout.take());
    let stderr = read_capped(child.child.stderr.take());
    let outcome = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .and_then(|line| serde_json::from_str::<Outcome>(line).ok());
    match outcome {
        Some(Outcome::Done) if status.success() => Ok(()),
        Some(Outcome::Failed(error)) => Err(Failure {
            error: error.into_error(job),
            killed: false,
        }),
        _ => Err(killed(died(job, status, &stderr))),
    }
}

/// The error for a child that ended without reporting an outcome.
fn died(job: &Job, status: ExitStatus, stderr: &str) -> WorkspaceError {
    let last = stderr
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
        .trim();
    // Rust aborts when an allocation fails: the address space limit.
    if last.starts_with("memory allocation of") {
        return WorkspaceError::GitMemory {
            url: job.url.clone(),
            limit_mb: job.memory_limit / MIB,
        };
    }
    let how = match status.signal() {
        Some(signal) => Signal::try_from(signal)
            .map(|s| format!("was killed by {s}"))
            .unwrap_or_else(|_| format!("was killed by signal {signal}")),
        None => format!("ended with {status} without a result"),
    };
    let detail = if last.is_empty() {
        how
    } else {
        format!("{how}: {}", last.chars().take(500).collect::<String>())
    };
    WorkspaceError::GitProcess {
        url: job.url.clone(),
        detail,
    }
}

fn read_capped(pipe: Option<impl Read>) -> String {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(OUTPUT_LIMIT).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The bytes under `dir`; 0 when it cannot be read (not made yet, or being renamed).
fn dir_bytes(dir: &Path) -> u64 {
    git::disk_bytes(dir).unwrap_or(0)
}

const MIB: u64 = 1024 * 1024;

/// A child in its own process group, whose group is killed (SIGKILL) and which is
/// reaped when it is dropped before it was seen to exit: no path out of [`run`], a
/// panic included, leaves it running.
struct GroupGuard {
    child: Child,
    reaped: bool,
}

impl GroupGuard {
    fn new(child: Child) -> Self {
        Self {
            child,
            reaped: false,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        self.reaped = status.is_some();
        Ok(status)
    }

    /// Kills the whole group and reaps the child. Until it is reaped, the child's pid
    /// (the group's id) cannot be reused, so the signal reaches no one else.
    fn kill(&mut self) {
        if self.reaped {
            return;
        }
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Tells when the tokio runtime of the calling thread (if any) shuts down: a task
/// parked on it holds a token, and a runtime drops its tasks when it shuts down, before
/// it waits for its blocking threads (such as this one).
struct RuntimeWatch {
    parked: Option<(Weak<()>, tokio::task::JoinHandle<()>)>,
}

impl RuntimeWatch {
    fn new() -> Self {
        let parked = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let token = Arc::new(());
            let weak = Arc::downgrade(&token);
            let task = runtime.spawn(async move {
                let _token = token;
                std::future::pending::<()>().await;
            });
            (weak, task)
        });
        Self { parked }
    }

    fn is_shutting_down(&self) -> bool {
        self.parked
            .as_ref()
            .is_some_and(|(token, _)| token.strong_count() == 0)
    }
}

impl Drop for RuntimeWatch {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.parked {
            task.abort();
        }
    }
}
