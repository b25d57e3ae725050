//! [`SlurmRuntime`]: servers as Slurm batch jobs, behind the [`Runtime`] trait.
//!
//! A start submits one job (`sbatch --parsable --export=NONE`) named
//! `<devbox's prefix><server>.<tag>`: the prefix names this devbox (a digest of its
//! state dir), the tag this instance. The job script starts code-server on a free port
//! of its node and reports `host:port` as the job's comment; a watcher task per job
//! polls `squeue` and tells the reconciler why the job waits, where it runs once it
//! says so, and how it ended. Adoption finds a job by its id and trusts it only when
//! its name carries the recorded tag (a `slurmctld` that lost its latest state hands
//! ids out again). A controller that does not answer leaves the state unknown: the job
//! is taken as still running and never submitted twice.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{
    JobId, JobInfo, JobRequest, JobScript, JobState, Slurm, SlurmError, SlurmSettings, job_script,
    reported_endpoint,
};
use crate::runtime::{Backend, ExitInfo, Instance, LaunchPlan, Placement, Runtime, RuntimeError};
use crate::status::{InstanceRecord, SlurmJobRecord};

/// How often a job is looked at while it waits or starts, and once it runs.
const POLL_STARTING: Duration = Duration::from_millis(300);
const POLL_RUNNING: Duration = Duration::from_secs(2);
/// How long a stop waits for Slurm to end a cancelled job, beyond the grace given
/// (Slurm sends SIGTERM, then SIGKILL after its `KillWait`).
const STOP_MARGIN: Duration = Duration::from_secs(60);

/// Pending reasons that no amount of waiting resolves: the job asks for what the
/// partition or the account never gives (Slurm reports more CPUs than any node has as
/// `PartitionConfig`).
const NEVER_RUNS: [&str; 9] = [
    "PartitionConfig",
    "BadConstraints",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "InvalidAccount",
    "InvalidQOS",
    "AccountNotAllowed",
    "QOSNotAllowed",
    "DependencyNeverSatisfied",
];

/// Whether a job pending for `reason` can never run.
pub fn never_runs(reason: &str) -> bool {
    NEVER_RUNS.contains(&reason)
}

/// The Slurm backend. Cheap to clone.
#[derive(Clone)]
pub struct SlurmRuntime {
    slurm: Slurm,
    /// The start of every job name of this devbox.
    prefix: String,
    /// How each ended job ended, by tag, until the reconciler asks.
    endings: Arc<Mutex<HashMap<String, String>>>,
}

impl SlurmRuntime {
    /// The backend of the devbox with this state dir.
    pub fn new(settings: SlurmSettings, state_dir: &Path) -> Self {
        let absolute = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_owned());
        let digest = crate::digest::sha256_hex(absolute.to_string_lossy().as_bytes(), 5);
        Self {
            slurm: Slurm::new(settings),
            prefix: format!("devbox-{digest}-"),
            endings: Arc::default(),
        }
    }

    fn job_name(&self, server: &str, tag: &str) -> String {
        format!("{}{server}.{tag}", self.prefix)
    }

    /// Watches job `id` until it ends (or nobody listens any more).
    fn watch(&self, record: SlurmJobRecord, first: Option<JobState>) -> Instance {
        let (exited_tx, exited) = watch::channel(None);
        let initial = match &first {
            Some(state) => placement_of(&record, state),
            None => Placement::Waiting("submitted".into()),
        };
        let (placement_tx, placement) = watch::channel(initial);
        let runtime = self.clone();
        let watched = record.clone();
        tokio::spawn(async move {
            let id = JobId(watched.job_id);
            let mut unknown_since_logged = false;
            loop {
                if exited_tx.is_closed() {
                    return;
                }
                let placed = matches!(*placement_tx.borrow(), Placement::Placed(_));
                tokio::time::sleep(if placed { POLL_RUNNING } else { POLL_STARTING }).await;
                let state = match runtime.slurm.query(id).await {
                    Ok(JobInfo { state, .. }) => {
                        unknown_since_logged = false;
                        state
                    }
                    Err(err) => {
                        if !unknown_since_logged {
                            tracing::warn!(job = id.0, %err, "job state unknown; taking it as still running");
                            unknown_since_logged = true;
                        }
                        continue;
                    }
                };
                if let JobState::Pending { reason } = &state
                    && never_runs(reason)
                {
                    let _ = runtime.slurm.cancel(id).await;
                    placement_tx.send_replace(Placement::Impossible(format!(
                        "Slurm cannot ever run job {}: {reason}",
                        id.0
                    )));
                }
                if state.is_over() {
                    runtime.remember_ending(&watched.tag, id, &state);
                    let _ = exited_tx.send(Some(exit_of(&state)));
                    return;
                }
                let next = placement_of(&watched, &state);
                placement_tx.send_if_modified(|current| {
                    let changed = *current != next && !matches!(current, Placement::Impossible(_));
                    if changed {
                        *current = next;
                    }
                    changed
                });
            }
        });
        Instance {
            record: InstanceRecord::Slurm(record),
            exited,
            placement: Some(placement),
        }
    }

    /// The job named `name`, if the controller has one (after a submit whose answer
    /// was lost).
    async fn find_submitted(&self, name: &str) -> Option<JobId> {
        let jobs = self.slurm.jobs_named_with_prefix(name).await.ok()?;
        jobs.into_iter()
            .find(|job| job.name == name)
            .map(|job| job.id)
    }

    fn remember_ending(&self, tag: &str, id: JobId, state: &JobState) {
        let text = format!("Slurm ended job {}: {}", id.0, state.describe());
        self.endings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tag.to_owned(), text);
    }
}

/// Where a job in `state` is, for the reconciler.
fn placement_of(record: &SlurmJobRecord, state: &JobState) -> Placement {
    match state {
        JobState::Pending { reason } => Placement::Waiting(format!("queued ({reason})")),
        JobState::Running {
            node,
            comment: Some(comment),
        } if reported_endpoint(comment).is_some() => {
            let mut placed = record.clone();
            placed.node = Some(node.clone());
            placed.address = reported_endpoint(comment);
            Placement::Placed(InstanceRecord::Slurm(placed))
        }
        JobState::Running { node, .. } => {
            Placement::Waiting(format!("running on {node}, code-server starting"))
        }
        JobState::Suspended => Placement::Waiting("suspended".into()),
        JobState::Ending | JobState::Ended { .. } | JobState::Gone => {
            Placement::Waiting("ending".into())
        }
    }
}

/// How an ended job's script ended, as an exit.
fn exit_of(state: &JobState) -> ExitInfo {
    match state {
        JobState::Ended {
            exit: Some((_, signal)),
            ..
        } if *signal != 0 => ExitInfo::Signal(*signal),
        JobState::Ended {
            state,
            exit: Some((code, _)),
            ..
        } if state == "COMPLETED" || *code != 0 => ExitInfo::Code(*code),
        // Cancelled, timed out, preempted, node failure: no exit status of its own.
        _ => ExitInfo::Unknown,
    }
}

impl Runtime for SlurmRuntime {
    async fn start(&self, plan: &LaunchPlan) -> Result<Instance, RuntimeError> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let script = job_script(&JobScript {
            program: plan.program.clone(),
            args: plan.args.clone(),
            env: plan.env.clone(),
            log_file: plan.log_file.clone(),
            host: None,
        })
        .map_err(|err| RuntimeError::Slurm(SlurmError::InvalidRequest(err.to_string())))?;
        let request = JobRequest {
            name: self.job_name(&plan.server, &tag),
            script,
            log_file: plan.log_file.clone(),
            working_dir: plan.working_dir.clone(),
            memory_bytes: plan.resources.memory.map(|m| m.0),
            cpus: plan.resources.cpus.map(|c| c.cores()),
            uid_gid: plan.run_as.as_ref().map(|a| (a.uid, a.gid)),
        };
        let id = match self.slurm.submit(&request).await {
            Ok(id) => id,
            // The controller may have taken the job before it stopped answering: a job
            // of this very name is this start's, and must not be left to run unseen.
            Err(err) if err.state_unknown() => {
                self.find_submitted(&request.name).await.ok_or(err)?
            }
            Err(err) => return Err(err.into()),
        };
        let record = SlurmJobRecord {
            job_id: id.0,
            tag,
            node: None,
            address: None,
        };
        Ok(self.watch(record, None))
    }

    async fn stop(&self, record: &InstanceRecord, grace: Duration) -> Result<(), RuntimeError> {
        let InstanceRecord::Slurm(job) = record else {
            return Ok(());
        };
        let id = JobId(job.job_id);
        self.slurm.cancel(id).await?;
        self.slurm.wait_ended(id, grace + STOP_MARGIN).await?;
        Ok(())
    }

    async fn adopt(&self, record: &InstanceRecord) -> Option<Instance> {
        let InstanceRecord::Slurm(job) = record else {
            return None;
        };
        match self.slurm.query(JobId(job.job_id)).await {
            Ok(JobInfo { name, state }) => {
                let ours = name
                    .as_deref()
                    .is_some_and(|n| n.ends_with(&format!(".{}", job.tag)));
                (ours && !state.is_over()).then(|| self.watch(job.clone(), Some(state)))
            }
            // Unknown: taken as still running, as recorded.
            Err(err) if err.state_unknown() => {
                tracing::warn!(job = job.job_id, %err, "adopting a job whose state is unknown");
                Some(self.watch(job.clone(), None))
            }
            Err(err) => {
                tracing::warn!(job = job.job_id, %err, "cannot look the job up");
                None
            }
        }
    }

    async fn clean_up(&self, record: &InstanceRecord) {
        if let InstanceRecord::Slurm(job) = record
            && let Err(err) = self.slurm.cancel(JobId(job.job_id)).await
        {
            tracing::warn!(job = job.job_id, %err, "cannot cancel what is left of the job");
        }
    }

    async fn sweep_unrecorded(&self, _owner: &str, recorded: &HashSet<String>) -> Vec<String> {
        let jobs = match self.slurm.jobs_named_with_prefix(&self.prefix).await {
            Ok(jobs) => jobs,
            Err(SlurmError::NotFound { .. }) => return Vec::new(),
            Err(err) => {
                tracing::warn!(%err, "cannot list this devbox's Slurm jobs; none cancelled");
                return Vec::new();
            }
        };
        let mut cancelled = Vec::new();
        for job in jobs {
            let tag = job.name.rsplit('.').next().unwrap_or_default().to_owned();
            if recorded.contains(&tag) {
                continue;
            }
            match self.slurm.cancel(job.id).await {
                Ok(()) => cancelled.push(tag),
                Err(err) => tracing::warn!(job = job.id.0, %err, "cannot cancel an unrecorded job"),
            }
        }
        cancelled
    }

    /// Slurm enforces a job's allocation itself (with `TaskPlugin=task/cgroup`).
    fn limits_unenforced(&self, _backend: Backend) -> Option<&str> {
        None
    }

    fn exit_reason(&self, record: &InstanceRecord, _exit: ExitInfo) -> Option<String> {
        self.endings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(record.tag())
    }

    fn shut_down(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SlurmJobRecord {
        SlurmJobRecord {
            job_id: 17,
            tag: "t".into(),
            node: None,
            address: None,
        }
    }

    #[test]
    fn a_job_is_placed_once_it_reports_where_it_listens() {
        let pending = JobState::Pending {
            reason: "Resources".into(),
        };
        assert_eq!(
            placement_of(&record(), &pending),
            Placement::Waiting("queued (Resources)".into())
        );
        let starting = JobState::Running {
            node: "n1".into(),
            comment: None,
        };
        assert!(matches!(
            placement_of(&record(), &starting),
            Placement::Waiting(_)
        ));
        let listening = JobState::Running {
            node: "n1".into(),
            comment: Some("n1.cluster:41234".into()),
        };
        let Placement::Placed(InstanceRecord::Slurm(placed)) = placement_of(&record(), &listening)
        else {
            panic!("placed");
        };
        assert_eq!(placed.node.as_deref(), Some("n1"));
        assert_eq!(placed.address, Some(("n1.cluster".into(), 41234)));
        assert!(never_runs("PartitionConfig"));
        assert!(!never_runs("Resources") && !never_runs("Priority"));
    }

    #[test]
    fn endings_become_exits() {
        let ended = |state: &str, exit| JobState::Ended {
            state: state.into(),
            reason: "None".into(),
            exit,
        };
        assert_eq!(
            exit_of(&ended("COMPLETED", Some((0, 0)))),
            ExitInfo::Code(0)
        );
        assert_eq!(exit_of(&ended("FAILED", Some((3, 0)))), ExitInfo::Code(3));
        assert_eq!(
            exit_of(&ended("CANCELLED", Some((0, 15)))),
            ExitInfo::Signal(15)
        );
        assert_eq!(exit_of(&ended("TIMEOUT", Some((0, 0)))), ExitInfo::Unknown);
        assert_eq!(exit_of(&ended("NODE_FAIL", None)), ExitInfo::Unknown);
        assert_eq!(exit_of(&JobState::Gone), ExitInfo::Unknown);
    }
}
