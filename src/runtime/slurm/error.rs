//! What can go wrong talking to Slurm, and how a tool's error text is read: "cannot
//! contact the controller" (the job's state is unknown, see
//! [`SlurmError::state_unknown`]) against "no such job" and every other failure.
//!
//! Slurm's tools say what went wrong only in words on stderr, and their exit statuses
//! are not specific (`squeue` exits 1 both for an unknown job and for a controller it
//! cannot reach), so the words are matched here, in one place.

use std::time::Duration;

/// A failure of a Slurm command.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// The tool is not installed or not on devbox's `PATH`.
    #[error(
        "{program} not found: install Slurm's client tools (Debian: slurm-client) or put them on devbox's PATH"
    )]
    NotFound { program: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// The controller (`slurmctld`) did not answer, or munge could not authenticate
    /// us to it. The job's state is unknown; it may well still run.
    #[error("cannot contact the Slurm controller ({command}: {message})")]
    Unreachable { command: String, message: String },
    /// The command did not finish in time and was killed.
    #[error("{command} did not answer within {}", humantime::format_duration(*.after))]
    Timeout { command: String, after: Duration },
    /// `sbatch` refused the job: Slurm's reasons, e.g. "Memory specification can not be
    /// satisfied; Batch job submission failed: Requested node configuration is not
    /// available". Submitting the same job again fails the same way.
    #[error("Slurm refused the job: {message}")]
    Refused { message: String },
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("unexpected output of {command}: {problem} (output: {output:?})")]
    Parse {
        command: String,
        problem: String,
        output: String,
    },
    /// A request devbox should never make (a bug or unchecked input upstream).
    #[error("invalid job request: {0}")]
    InvalidRequest(String),
    #[error(
        "job {id} has not ended within {} (last seen: {last})",
        humantime::format_duration(*.after)
    )]
    NotEnded {
        id: super::JobId,
        after: Duration,
        last: String,
    },
}

impl SlurmError {
    /// Whether the job's state is unknown because the controller did not answer: the
    /// caller keeps the job as it was (running), and never submits it again.
    pub fn state_unknown(&self) -> bool {
        matches!(
            self,
            SlurmError::Unreachable { .. } | SlurmError::Timeout { .. }
        )
    }
}

/// Slurm's words for "the controller did not answer" (slurm_errno.c), and munge's for
/// "cannot authenticate to it". Measured on 22.05 with slurmctld stopped:
/// `slurm_load_jobs error: Unable to contact slurm controller (connect failure)`.
const UNREACHABLE_TEXTS: [&str; 8] = [
    "Unable to contact slurm controller",
    "Socket timed out on send/recv operation",
    "Zero Bytes were transmitted or received",
    "Communication connection failure",
    "Slurm backup controller in standby mode",
    "Transport endpoint is not connected",
    "Munge encode failed",
    "Protocol authentication error",
];

/// Whether `stderr` says the controller could not be reached.
pub fn is_unreachable(stderr: &str) -> bool {
    UNREACHABLE_TEXTS.iter().any(|text| stderr.contains(text))
}

/// Whether `stderr` says the job is unknown to the controller: it ended more than
/// `MinJobAge` ago, or never existed (`squeue -j`, `scontrol show job`).
pub fn is_invalid_job_id(stderr: &str) -> bool {
    stderr.contains("Invalid job id specified")
}

/// The error for a command that exited with `status` and printed `stderr`.
pub fn failure(command: &str, status: std::process::ExitStatus, stderr: &str) -> SlurmError {
    let message = error_lines(stderr);
    if is_unreachable(stderr) {
        SlurmError::Unreachable {
            command: command.to_owned(),
            message,
        }
    } else {
        SlurmError::Command {
            command: command.to_owned(),
            status: status.to_string(),
            stderr: message,
        }
    }
}

/// A tool's stderr as one line: its lines without the `sbatch: error: ` style prefix,
/// joined with "; " (what a user reads in a status message).
pub fn error_lines(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(": error: ") {
            Some((_tool, rest)) => rest,
            None => line,
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Slurm 22.05.8 with slurmctld stopped (each took 9-18 s to come back).
    const SQUEUE_UNREACHABLE: &str =
        "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n";
    const SCANCEL_UNREACHABLE: &str = "scancel: error: Kill job error on job id 99999: Unable to contact slurm controller (connect failure)\n";
    const SBATCH_UNREACHABLE: &str = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n";
    // With slurmctld up.
    const SQUEUE_INVALID: &str = "slurm_load_jobs error: Invalid job id specified\n";
    const SCONTROL_UPDATE_INVALID: &str = "Invalid job id specified for job 99999\n";

    #[test]
    fn a_controller_that_does_not_answer_is_recognised_in_every_tool() {
        for text in [SQUEUE_UNREACHABLE, SCANCEL_UNREACHABLE, SBATCH_UNREACHABLE] {
            assert!(is_unreachable(text), "{text}");
            assert!(!is_invalid_job_id(text), "{text}");
        }
    }

    #[test]
    fn an_unknown_job_is_not_an_unreachable_controller() {
        for text in [SQUEUE_INVALID, SCONTROL_UPDATE_INVALID] {
            assert!(is_invalid_job_id(text), "{text}");
            assert!(!is_unreachable(text), "{text}");
        }
    }

    #[test]
    fn failures_are_sorted_into_unreachable_and_the_rest() {
        use std::os::unix::process::ExitStatusExt;
        let exit_1 = std::process::ExitStatus::from_raw(1 << 8);
        let err = failure("squeue -j 13", exit_1, SQUEUE_UNREACHABLE);
        assert!(err.state_unknown());
        assert_eq!(
            err.to_string(),
            "cannot contact the Slurm controller (squeue -j 13: slurm_load_jobs error: Unable to contact slurm controller (connect failure))"
        );
        let err = failure("scontrol update", exit_1, SCONTROL_UPDATE_INVALID);
        assert!(!err.state_unknown());
        assert!(matches!(err, SlurmError::Command { .. }), "{err:?}");
    }

    #[test]
    fn error_lines_drop_the_tool_prefix_and_join() {
        let stderr = "sbatch: error: Memory specification can not be satisfied\nsbatch: error: Batch job submission failed: Requested node configuration is not available\n";
        assert_eq!(
            error_lines(stderr),
            "Memory specification can not be satisfied; Batch job submission failed: Requested node configuration is not available"
        );
    }
}
