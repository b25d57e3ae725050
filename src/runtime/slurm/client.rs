//! [`Slurm`]: the handle the Slurm backend holds (the cluster settings from the config
//! and the timeout of each call), and running one Slurm tool under that timeout.
//!
//! The tools are found on `PATH` and read the cluster's configuration as they always
//! do (`/etc/slurm/slurm.conf`, or `SLURM_CONF` in devbox's environment).

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::error::SlurmError;

/// How long one Slurm command may take. With `slurmctld` down, `squeue` and
/// `scontrol show job` gave up by themselves after 18 s here (`scancel`, `sbatch`
/// after 9 s), and an answer that says "unreachable" is worth more than a timeout.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster devbox submits to (the config's `runtime.slurm`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmSettings {
    /// `--partition`; `None`: the cluster's default partition.
    pub partition: Option<String>,
    /// `--account`; `None`: the submitting user's default account.
    pub account: Option<String>,
    /// More `sbatch` options, passed last (so they win over devbox's own).
    pub sbatch_args: Vec<String>,
    /// `--time` in any form Slurm takes (`8:00:00`, `1-00:00:00`); `None`: the
    /// partition's limit.
    pub time_limit: Option<String>,
}

/// Speaks to a Slurm cluster through its command-line tools. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Slurm {
    pub(super) settings: SlurmSettings,
    pub(super) call_timeout: Duration,
}

/// What a finished command printed.
#[derive(Debug)]
pub(super) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Slurm {
    pub fn new(settings: SlurmSettings) -> Self {
        Slurm {
            settings,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// The same handle with another per-call timeout.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    pub fn settings(&self) -> &SlurmSettings {
        &self.settings
    }

    /// Runs `program args…` with `stdin` written to it (else /dev/null) and returns its
    /// output, whatever its exit status. Killed when the timeout passes or the future is
    /// dropped.
    pub(super) async fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<Output, SlurmError> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                SlurmError::NotFound {
                    program: program.to_owned(),
                }
            } else {
                SlurmError::Spawn {
                    program: program.to_owned(),
                    source,
                }
            }
        })?;
        let input = child.stdin.take();
        let text = stdin.unwrap_or_default().to_owned();
        let finished = async move {
            if let Some(mut input) = input {
                // A tool that exits without reading its input closes the pipe: its exit
                // status and stderr say why, not this write's broken pipe.
                let _ = input.write_all(text.as_bytes()).await;
                drop(input);
            }
            child.wait_with_output().await
        };
        match tokio::time::timeout(self.call_timeout, finished).await {
            Err(_elapsed) => Err(SlurmError::Timeout {
                command: command_line(program, args),
                after: self.call_timeout,
            }),
            Ok(Err(source)) => Err(SlurmError::Spawn {
                program: program.to_owned(),
                source,
            }),
            Ok(Ok(output)) => Ok(Output {
                status: output.status,
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }),
        }
    }
}

/// `program args…` as a user reads it in an error message.
pub(super) fn command_line(program: &str, args: &[String]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_tool_says_how_to_get_it() {
        let slurm = Slurm::new(SlurmSettings::default());
        let err = slurm
            .run("devbox-no-such-slurm-tool", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(err, SlurmError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("slurm-client"), "{err}");
    }

    #[tokio::test]
    async fn a_hung_tool_is_killed_at_the_timeout() {
        let slurm =
            Slurm::new(SlurmSettings::default()).with_call_timeout(Duration::from_millis(200));
        let err = slurm
            .run("sleep", &["30".to_owned()], None)
            .await
            .unwrap_err();
        assert!(err.state_unknown(), "{err:?}");
        assert!(
            err.to_string().starts_with("sleep 30 did not answer"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn stdin_reaches_the_tool_and_output_comes_back() {
        let slurm = Slurm::new(SlurmSettings::default());
        let out = slurm.run("cat", &[], Some("script\n")).await.unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, "script\n");
    }
}
