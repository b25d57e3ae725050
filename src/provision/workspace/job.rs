//! What passes between devbox and its git child process (`devbox __git-fetch`): the job
//! (on the child's stdin, as one JSON document, so that a URL never shows on a command
//! line) and its outcome (one JSON line on the child's stdout). Errors cross as
//! [`WireError`], which the parent turns back into the [`WorkspaceError`] the in-process
//! code would have returned.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{GitPolicy, WorkspaceError};

/// One piece of git work for the child.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Job {
    pub url: String,
    /// The mirror of `url` (see `mirror`): fetched into by [`Step::Mirror`], cloned from
    /// by [`Step::Checkout`].
    pub mirror: PathBuf,
    pub step: Step,
    /// Time left for this step, in milliseconds (the parent kills the child after it).
    pub timeout_ms: u64,
    /// The whole clone's time limit (`ui.workspace.git_timeout`), for messages.
    pub git_timeout_ms: u64,
    pub max_workspace_bytes: u64,
    pub allow_local_hosts: bool,
    /// Most bytes of address space the child may map (RLIMIT_AS).
    pub memory_limit: u64,
    /// The parent's pid: the child asks to be killed when its parent dies, and exits at
    /// once if the parent is already gone.
    pub parent: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Step {
    /// Fetch every branch and tag of the remote into the mirror.
    Mirror,
    /// Clone the mirror into `into` and check out `reference`.
    Checkout {
        into: PathBuf,
        reference: Option<String>,
    },
}

impl Job {
    pub fn policy(&self) -> GitPolicy {
        GitPolicy {
            max_workspace_bytes: self.max_workspace_bytes,
            allow_local_hosts: self.allow_local_hosts,
        }
    }

    pub fn git_timeout(&self) -> Duration {
        Duration::from_millis(self.git_timeout_ms)
    }
}

/// The child's one line of output.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Outcome {
    Done,
    Failed(WireError),
}

/// A [`WorkspaceError`] that can cross a pipe. Messages are cut to
/// [`MAX_MESSAGE_BYTES`]: part of them comes from the git server.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum WireError {
    Timeout,
    TooLarge {
        detail: String,
    },
    /// The child ran out of its address space (see [`Job::memory_limit`]).
    Memory,
    /// The local-host rule refused the URL (the parent checks again for the typed error).
    Host {
        message: String,
    },
    Clone {
        message: String,
    },
    ReferenceNotFound {
        reference: String,
    },
    Checkout {
        reference: String,
        message: String,
    },
    Io {
        context: String,
        message: String,
        os_code: Option<i32>,
    },
    Other {
        message: String,
    },
}

/// Longest message kept from the child (the rest is cut).
pub(super) const MAX_MESSAGE_BYTES: usize = 4096;

fn cut(text: &str) -> String {
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn out_of_memory(error: &git2::Error) -> bool {
    error.class() == git2::ErrorClass::NoMemory
}

impl From<&WorkspaceError> for WireError {
    fn from(error: &WorkspaceError) -> Self {
        match error {
            WorkspaceError::GitTimeout { .. } => WireError::Timeout,
            WorkspaceError::GitTooLarge { detail, .. } => WireError::TooLarge {
                detail: cut(detail),
            },
            WorkspaceError::GitMemory { .. } => WireError::Memory,
            WorkspaceError::GitHost { source } => WireError::Host {
                message: cut(&source.to_string()),
            },
            WorkspaceError::GitClone { source, .. }
            | WorkspaceError::GitCheckout { source, .. }
                if out_of_memory(source) =>
            {
                WireError::Memory
            }
            WorkspaceError::GitClone { source, .. } => WireError::Clone {
                message: cut(source.message()),
            },
            WorkspaceError::GitReferenceNotFound { reference, .. } => {
                WireError::ReferenceNotFound {
                    reference: cut(reference),
                }
            }
            WorkspaceError::GitCheckout {
                reference, source, ..
            } => WireError::Checkout {
                reference: cut(reference),
                message: cut(source.message()),
            },
            // ENOMEM: the address space limit, met outside libgit2.
            WorkspaceError::Io { source, .. } if source.raw_os_error() == Some(ENOMEM) => {
                WireError::Memory
            }
            WorkspaceError::Io { context, source } => WireError::Io {
                context: cut(context),
                message: cut(&source.to_string()),
                os_code: source.raw_os_error(),
            },
            other => WireError::Other {
                message: cut(&other.to_string()),
            },
        }
    }
}

impl WireError {
    /// The error the in-process clone of `job` would have returned.
    pub fn into_error(self, job: &Job) -> WorkspaceError {
        let url = job.url.clone();
        match self {
            WireError::Timeout => WorkspaceError::GitTimeout {
                url,
                timeout: job.git_timeout(),
            },
            WireError::TooLarge { detail } => WorkspaceError::GitTooLarge {
                url,
                max_mb: job.max_workspace_bytes / MIB,
                detail,
            },
            WireError::Memory => WorkspaceError::GitMemory {
                url,
                limit_mb: job.memory_limit / MIB,
            },
            // The refusal is typed in the parent: ask the rule again here (a name that
            // resolved inside the host a moment ago almost always still does).
            WireError::Host { message } => match crate::git_url::check_resolved(&job.url) {
                Err(source) => WorkspaceError::GitHost { source },
                Ok(()) => WorkspaceError::GitClone {
                    url,
                    source: git2::Error::from_str(&message),
                },
            },
            WireError::Clone { message } | WireError::Other { message } => {
                WorkspaceError::GitClone {
                    url,
                    source: git2::Error::from_str(&message),
                }
            }
            WireError::ReferenceNotFound { reference } => {
                WorkspaceError::GitReferenceNotFound { url, reference }
            }
            WireError::Checkout { reference, message } => WorkspaceError::GitCheckout {
                url,
                reference,
                source: git2::Error::from_str(&message),
            },
            WireError::Io {
                context,
                message,
                os_code,
            } => WorkspaceError::Io {
                context,
                source: match os_code {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::other(message),
                },
            },
        }
    }
}

const MIB: u64 = 1024 * 1024;
const ENOMEM: i32 = nix::errno::Errno::ENOMEM as i32;

#[cfg(test)]
mod tests {
    use super::*;

    fn job(step: Step) -> Job {
        Job {
            url: "https://example.com/r.git".into(),
            mirror: PathBuf::from("/m"),
            step,
            timeout_ms: 1500,
            git_timeout_ms: 5000,
            max_workspace_bytes: 5 * MIB,
            allow_local_hosts: false,
            memory_limit: 517 * MIB,
            parent: 1,
        }
    }

    /// Through the wire and back, as the parent sees a child's error.
    fn crossed(error: &WorkspaceError, job: &Job) -> WorkspaceError {
        let line = serde_json::to_string(&Outcome::Failed(WireError::from(error))).unwrap();
        match serde_json::from_str::<Outcome>(&line).unwrap() {
            Outcome::Failed(wire) => wire.into_error(job),
            Outcome::Done => panic!("not a failure: {line}"),
        }
    }

    #[test]
    fn errors_cross_with_their_messages() {
        let checkout = job(Step::Checkout {
            into: PathBuf::from("/w"),
            reference: Some("dev".into()),
        });
        let url = checkout.url.clone();
        for error in [
            WorkspaceError::GitTimeout {
                url: url.clone(),
                timeout: Duration::from_secs(5),
            },
            WorkspaceError::GitTooLarge {
                url: url.clone(),
                max_mb: 5,
                detail: "its download passed 6000000 bytes".into(),
            },
            WorkspaceError::GitReferenceNotFound {
                url: url.clone(),
                reference: "dev".into(),
            },
            WorkspaceError::GitCheckout {
                url: url.clone(),
                reference: "dev".into(),
                source: git2::Error::from_str("broken tree"),
            },
            WorkspaceError::GitClone {
                url: url.clone(),
                source: git2::Error::from_str("remote said no"),
            },
            WorkspaceError::Io {
                context: "cannot measure /w".into(),
                source: io::Error::from_raw_os_error(2),
            },
        ] {
            assert_eq!(crossed(&error, &checkout).to_string(), error.to_string());
        }
    }

    #[test]
    fn running_out_of_memory_names_the_limit() {
        let mirror = job(Step::Mirror);
        let oom = WorkspaceError::GitClone {
            url: mirror.url.clone(),
            source: git2::Error::new(
                git2::ErrorCode::GenericError,
                git2::ErrorClass::NoMemory,
                "out of memory",
            ),
        };
        let text = crossed(&oom, &mirror).to_string();
        assert!(text.contains("limit of 517 MB"), "{text}");
        let long = WorkspaceError::GitClone {
            url: mirror.url.clone(),
            source: git2::Error::from_str(&"x".repeat(100_000)),
        };
        assert!(crossed(&long, &mirror).to_string().len() < 2 * MAX_MESSAGE_BYTES);
    }
}
