//! `devbox __git-fetch`, the child's side of `child`: reads one [`Job`] from stdin,
//! confines itself (dies with its parent, a limited address space, no core dumps,
//! libgit2's pack windows and network timeouts bounded), runs the job with the same
//! code as an in-process clone, and prints its [`Outcome`] as one JSON line. Hidden
//! from `--help`: only devbox starts it.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::Signal;

use super::child::PACK_WINDOWS;
use super::git;
use super::job::{Job, Outcome, WireError};

/// Most bytes of a job on stdin.
const MAX_JOB_BYTES: u64 = 1 << 20;
/// libgit2's connect timeout, as `serve` sets it for itself.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the child could not run its job at all.
#[derive(thiserror::Error, Debug)]
enum SetupError {
    #[error("cannot read the job from stdin: {0}")]
    Read(#[source] std::io::Error),
    #[error("the job on stdin is not valid: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("cannot confine the git process ({what}): {source}")]
    Confine {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("cannot configure libgit2: {0}")]
    Libgit2(#[source] git2::Error),
}

/// Runs the job on stdin; exit status 0 when it succeeded, 1 when it failed (the
/// outcome line says why), 2 when it could not run.
pub fn main() -> ExitCode {
    let (outcome, code) = match read_job().and_then(|job| confine(&job).map(|()| job)) {
        Ok(job) => match git::run_job(&job) {
            Ok(()) => (Outcome::Done, ExitCode::SUCCESS),
            Err(err) => (Outcome::Failed(WireError::from(&err)), ExitCode::from(1)),
        },
        Err(err) => (
            Outcome::Failed(WireError::Other {
                message: err.to_string(),
            }),
            ExitCode::from(2),
        ),
    };
    let line = serde_json::to_string(&outcome).unwrap_or_else(|_| "\"Done\"".into());
    let mut stdout = std::io::stdout().lock();
    // Nobody to tell if the parent is gone.
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    code
}

fn read_job() -> Result<Job, SetupError> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_JOB_BYTES)
        .read_to_end(&mut input)
        .map_err(SetupError::Read)?;
    serde_json::from_slice(&input).map_err(SetupError::Parse)
}

/// Everything the child sets on itself before git runs; the process is single-threaded
/// here.
fn confine(job: &Job) -> Result<(), SetupError> {
    let confine = |what| move |source| SetupError::Confine { what, source };
    // Killed with its parent (devbox killed by SIGKILL cannot kill it itself), and gone
    // at once if the parent died before this line.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(confine("parent death signal"))?;
    if nix::unistd::getppid().as_raw() != i32::try_from(job.parent).unwrap_or(-1) {
        std::process::exit(3);
    }
    setrlimit(Resource::RLIMIT_AS, job.memory_limit, job.memory_limit)
        .map_err(confine("address space limit"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(confine("core dump limit"))?;
    // Files readable by all, whatever devbox's own umask (077 under isolation): a
    // mirror's objects are hard-linked into workspaces that instances of other users
    // read; the folders they sit in keep everyone else out.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));

    let left = Duration::from_millis(job.timeout_ms);
    let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
    // No hash check of objects read, as in `serve` (its checkouts read devbox's own
    // mirrors, hashed when fetched).
    git2::opts::strict_hash_verification(false);
    // SAFETY: libgit2 keeps these in unsynchronised globals; no other thread exists.
    unsafe {
        git2::opts::set_mwindow_size(PACK_WINDOWS / 8)
            .and_then(|()| git2::opts::set_mwindow_mapped_limit(PACK_WINDOWS))
            .and_then(|()| {
                git2::opts::set_server_connect_timeout_in_milliseconds(millis(
                    CONNECT_TIMEOUT.min(left),
                ))
            })
            .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(millis(left)))
            .map_err(SetupError::Libgit2)
    }
}
