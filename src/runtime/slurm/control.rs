//! Acting on a job: cancelling it (`scancel`) and setting its comment (`scontrol
//! update`, which the job script does on the node to report where it listens).

use super::client::{Slurm, command_line};
use super::error::{SlurmError, failure};
use super::job_id::JobId;

impl Slurm {
    /// Cancels the job: Slurm sends SIGTERM to every process of it, and SIGKILL to what
    /// is left after its `KillWait` (10 s on the dev cluster). Returns once the
    /// controller has taken the request; [`Slurm::wait_ended`] waits for the end.
    /// Cancelling a job that has ended or is unknown succeeds (scancel says nothing
    /// then, measured on 22.05).
    pub async fn cancel(&self, id: JobId) -> Result<(), SlurmError> {
        let args = vec![id.to_string()];
        let out = self.run("scancel", &args, None).await?;
        if !out.status.success() {
            return Err(failure(
                &command_line("scancel", &args),
                out.status,
                &out.stderr,
            ));
        }
        Ok(())
    }

    /// Sets the job's comment to `text` (what `squeue`'s `%k` and
    /// [`super::JobState::Running`] show). With the controller down, 22.05's scontrol
    /// says only `Unexpected message received for job N` here (after 9 s), which is
    /// not recognised as [`SlurmError::Unreachable`].
    pub async fn set_comment(&self, id: JobId, text: &str) -> Result<(), SlurmError> {
        let args = vec![
            "update".to_owned(),
            format!("JobId={id}"),
            format!("Comment={text}"),
        ];
        let out = self.run("scontrol", &args, None).await?;
        if !out.status.success() {
            return Err(failure(
                &command_line("scontrol", &args),
                out.status,
                &out.stderr,
            ));
        }
        Ok(())
    }
}
