//! One job's state as the controller knows it: `squeue` for the state, reason, node,
//! name and comment (where the job reports `host:port`), `scontrol show job` for the
//! exit code of an ended job; and waiting until a job has ended.
//!
//! Ended jobs stay listed for `MinJobAge` (300 s on the dev cluster); after that, and
//! for a job that never existed, `squeue` says `Invalid job id specified`:
//! [`JobState::Gone`]. Without an accounting database there is no history beyond that.

use std::time::Duration;

use super::client::{Slurm, command_line};
use super::error::{SlurmError, failure, is_invalid_job_id};
use super::job_id::JobId;

/// What Slurm says a job is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Queued, or being requeued or configured; `reason` is Slurm's (`Priority`,
    /// `Resources`, `PartitionConfig` when it asks for more than any node has…).
    Pending { reason: String },
    /// Running on `node`; `comment` is what the job reported (`host:port` once the
    /// program listens, see [`reported_endpoint`]), `None` until then.
    Running {
        node: String,
        comment: Option<String>,
    },
    /// Stopped by an admin or a preemption policy (SUSPENDED, STOPPED): its processes
    /// exist but do not run.
    Suspended,
    /// COMPLETING: the job is over, Slurm is killing what is left of it.
    Ending,
    /// Over. `state` is Slurm's: COMPLETED, CANCELLED, FAILED, TIMEOUT,
    /// OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE…; `reason` its reason
    /// (`NonZeroExitCode`, `TimeLimit`, `OutOfMemory`, `BadConstraints`…, `None`);
    /// `exit` the batch script's `(code, signal)` when the controller still had it.
    Ended {
        state: String,
        reason: String,
        exit: Option<(i32, i32)>,
    },
    /// Not known to the controller: ended more than `MinJobAge` ago, or never existed.
    Gone,
}

impl JobState {
    /// Whether nothing of the job runs any more (or ever will).
    pub fn is_over(&self) -> bool {
        matches!(self, JobState::Ended { .. } | JobState::Gone)
    }

    /// Slurm's state as `squeue` prints it, for messages (`gone` once forgotten).
    pub fn describe(&self) -> String {
        match self {
            JobState::Pending { reason } => format!("PENDING ({reason})"),
            JobState::Running { node, .. } => format!("RUNNING on {node}"),
            JobState::Suspended => "SUSPENDED".to_owned(),
            JobState::Ending => "COMPLETING".to_owned(),
            JobState::Ended { state, reason, .. } if reason == "None" => state.clone(),
            JobState::Ended { state, reason, .. } => format!("{state} ({reason})"),
            JobState::Gone => "gone".to_owned(),
        }
    }
}

/// A job's state and name. Compare the name with the one devbox gave the job before
/// trusting a job found by id: a controller that lost its state reuses ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// `None` exactly when the job is [`JobState::Gone`].
    pub name: Option<String>,
    pub state: JobState,
}

/// The `squeue -o` format: id, state, reason, nodes, name, comment. The comment comes
/// last because the job writes it (under its owner's uid): a `|` in it must not shift
/// the other fields. Names devbox gives never contain `|`.
const SQUEUE_FORMAT: &str = "%i|%T|%r|%N|%j|%k";

/// One job's line of `squeue -h -t all -j ID -o SQUEUE_FORMAT` as a state and a name
/// (an ended job's exit code is not in it: `None`). Empty output: the job is gone.
pub fn parse_squeue_job(id: JobId, stdout: &str) -> Result<JobInfo, String> {
    let record = stdout.strip_suffix('\n').unwrap_or(stdout);
    if record.trim().is_empty() {
        return Ok(JobInfo {
            name: None,
            state: JobState::Gone,
        });
    }
    let mut fields = record.splitn(6, '|');
    let mut next = |what: &str| {
        fields
            .next()
            .ok_or_else(|| format!("no {what} field in {record:?}"))
    };
    let (listed_id, state, reason, node, name, comment) = (
        next("job id")?,
        next("state")?,
        next("reason")?,
        next("node")?,
        next("name")?,
        next("comment")?,
    );
    if listed_id != id.to_string() {
        return Err(format!("asked for job {id}, got job {listed_id:?}"));
    }
    let comment = match comment.trim() {
        "" | "(null)" => None,
        text => Some(text.to_owned()),
    };
    let state = match state {
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" => {
            JobState::Pending {
                reason: reason.to_owned(),
            }
        }
        // Nodes allocated, being booted or set up: the script has not started yet.
        "CONFIGURING" => JobState::Pending {
            reason: "Configuring".to_owned(),
        },
        "RUNNING" | "RESIZING" | "SIGNALING" => JobState::Running {
            node: node.to_owned(),
            comment,
        },
        "SUSPENDED" | "STOPPED" => JobState::Suspended,
        "COMPLETING" | "STAGE_OUT" => JobState::Ending,
        "COMPLETED" | "CANCELLED" | "FAILED" | "TIMEOUT" | "OUT_OF_MEMORY" | "NODE_FAIL"
        | "PREEMPTED" | "BOOT_FAIL" | "DEADLINE" | "REVOKED" | "SPECIAL_EXIT" => JobState::Ended {
            state: state.to_owned(),
            reason: reason.to_owned(),
            exit: None,
        },
        other => return Err(format!("unknown job state {other:?}")),
    };
    Ok(JobInfo {
        name: Some(name.to_owned()),
        state,
    })
}

/// The batch script's `(code, signal)` from one line of `scontrol show job -o ID`
/// (`ExitCode=0:15`: killed by SIGTERM). The job's name (`JobName=…`, which may hold
/// spaces and anything else) is skipped by its known value, and the comment, which the
/// job writes, comes after `ExitCode` in the line.
pub fn parse_exit_code(scontrol: &str, name: &str) -> Option<(i32, i32)> {
    let after_name = scontrol
        .split_once(&format!(" JobName={name} "))
        .map_or(scontrol, |(_, rest)| rest);
    let value = after_name
        .split_whitespace()
        .find_map(|field| field.strip_prefix("ExitCode="))?;
    let (code, signal) = value.split_once(':')?;
    Some((code.parse().ok()?, signal.parse().ok()?))
}

/// `host:port` from a job's comment; `None` when it is something else.
pub fn reported_endpoint(comment: &str) -> Option<(String, u16)> {
    let (host, port) = comment.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return None;
    }
    Some((host.to_owned(), port))
}

/// How often [`Slurm::wait_ended`] asks.
const WAIT_POLL: Duration = Duration::from_millis(250);

impl Slurm {
    /// The job's state and name. Errors leave the state unknown (see
    /// [`SlurmError::state_unknown`]); only [`JobState::Gone`] says it is no more.
    pub async fn query(&self, id: JobId) -> Result<JobInfo, SlurmError> {
        let args = vec![
            "-h".to_owned(),
            "-t".to_owned(),
            "all".to_owned(),
            "-j".to_owned(),
            id.to_string(),
            "-o".to_owned(),
            SQUEUE_FORMAT.to_owned(),
        ];
        let command = command_line("squeue", &args);
        let out = self.run("squeue", &args, None).await?;
        if !out.status.success() {
            if is_invalid_job_id(&out.stderr) {
                return Ok(JobInfo {
                    name: None,
                    state: JobState::Gone,
                });
            }
            return Err(failure(&command, out.status, &out.stderr));
        }
        let mut info = parse_squeue_job(id, &out.stdout).map_err(|problem| SlurmError::Parse {
            command,
            problem,
            output: out.stdout.clone(),
        })?;
        if let (JobState::Ended { exit, .. }, Some(name)) = (&mut info.state, &info.name) {
            *exit = self.exit_code(id, name).await?;
        }
        Ok(info)
    }

    /// An ended job's `(code, signal)`; `None` once the controller forgot the job.
    async fn exit_code(&self, id: JobId, name: &str) -> Result<Option<(i32, i32)>, SlurmError> {
        let args = vec![
            "show".to_owned(),
            "job".to_owned(),
            "-o".to_owned(),
            id.to_string(),
        ];
        let out = self.run("scontrol", &args, None).await?;
        if !out.status.success() {
            if is_invalid_job_id(&out.stderr) {
                return Ok(None);
            }
            return Err(failure(
                &command_line("scontrol", &args),
                out.status,
                &out.stderr,
            ));
        }
        Ok(parse_exit_code(&out.stdout, name))
    }

    /// Polls [`Slurm::query`] until the job has ended or is gone, for at most `timeout`.
    /// A controller that does not answer meanwhile is asked again;
    /// [`SlurmError::NotEnded`] after `timeout`.
    pub async fn wait_ended(&self, id: JobId, timeout: Duration) -> Result<JobState, SlurmError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match self.query(id).await {
                Ok(info) if info.state.is_over() => return Ok(info.state),
                Ok(info) => info.state.describe(),
                Err(err) if err.state_unknown() => err.to_string(),
                Err(err) => return Err(err),
            };
            if tokio::time::Instant::now() + WAIT_POLL > deadline {
                return Err(SlurmError::NotEnded {
                    id,
                    after: timeout,
                    last,
                });
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `squeue -h -t all -j ID -o '%i|%T|%r|%N|%j|%k'` on Slurm 22.05.8, captured.
    const RUNNING_NO_COMMENT: &str = "13|RUNNING|None|localhost|devbox-abc:srv-1|(null)\n";
    const RUNNING_WITH_COMMENT: &str = "13|RUNNING|None|localhost|devbox-abc:srv-1|vm:45678\n";
    const PENDING_TOO_MANY_CPUS: &str = "25|PENDING|PartitionConfig||devbox-p|(null)\n";
    const PENDING_PRIORITY: &str = "17|PENDING|Priority||devbox-t|(null)\n";
    const COMPLETING: &str = "14|COMPLETING|None|localhost|devbox-busy|(null)\n";
    const CANCELLED: &str = "14|CANCELLED|None|localhost|devbox-busy|(null)\n";
    const FAILED_EXIT_3: &str = "18|FAILED|NonZeroExitCode|localhost|devbox-exit3|(null)\n";
    const OUT_OF_MEMORY: &str = "19|OUT_OF_MEMORY|OutOfMemory|localhost|devbox-oom|(null)\n";
    const TIMEOUT: &str = "20|TIMEOUT|TimeLimit|localhost|devbox-timeout|(null)\n";
    const FAILED_IMPOSSIBLE_MEMORY: &str = "15|FAILED|BadConstraints||devbox-t|(null)\n";
    const COMMENT_WITH_PIPE: &str = "23|RUNNING|None|localhost|devbox-x with space|a b|c:1\n";

    // `scontrol show job -o ID`, captured (trimmed in the middle where marked).
    const SCONTROL_CANCELLED: &str = "JobId=14 JobName=devbox-busy UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901746 Nice=0 Account=(null) QOS=(null) JobState=CANCELLED Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15 RunTime=00:01:09 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-12-06T03:57:42 EligibleTime=2026-12-06T03:57:42 Partition=devbox NodeList=localhost BatchHost=localhost NumNodes=1 NumCPUs=1 Command=(null) WorkDir=/tmp/slcap StdErr=/tmp/slcap/log2 StdIn=/dev/null StdOut=/tmp/slcap/log2 Power= \n";
    const SCONTROL_RUNNING_WITH_COMMENT: &str = "JobId=13 JobName=devbox-abc:srv-1|x UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901747 Nice=0 Account=(null) QOS=(null) JobState=RUNNING Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:04:10 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-12-06T03:57:36 EligibleTime=2026-12-06T03:57:36 AccrueTime=2026-12-06T03:57:36 StartTime=2026-12-06T03:57:37 EndTime=Unknown Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-12-06T03:57:37 Scheduler=Main Partition=devbox AllocNode:Sid=localhost:6878 ReqNodeList=(null) ExcNodeList=(null) NodeList=localhost BatchHost=localhost NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryNode=100M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=YES Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/slcap Comment=vm:45678  StdErr=/tmp/slcap/log StdIn=/dev/null StdOut=/tmp/slcap/log Power= \n";
    const SCONTROL_FAILED_EXIT_3: &str = "JobId=18 JobName=devbox-exit3 UserId=root(0) GroupId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00\n";
    const SCONTROL_OOM: &str = "JobId=19 JobName=devbox-oom UserId=root(0) GroupId=root(0) JobState=OUT_OF_MEMORY Reason=OutOfMemory Dependency=(null) ExitCode=0:125 RunTime=00:00:01\n";

    fn parse(stdout: &str) -> JobInfo {
        let id = stdout.split('|').next().unwrap().parse().unwrap();
        parse_squeue_job(id, stdout).unwrap()
    }

    #[test]
    fn a_running_job_shows_its_node_and_once_reported_its_endpoint() {
        assert_eq!(
            parse(RUNNING_NO_COMMENT),
            JobInfo {
                name: Some("devbox-abc:srv-1".to_owned()),
                state: JobState::Running {
                    node: "localhost".to_owned(),
                    comment: None
                }
            }
        );
        let info = parse(RUNNING_WITH_COMMENT);
        let JobState::Running {
            comment: Some(comment),
            ..
        } = &info.state
        else {
            panic!("{info:?}");
        };
        assert_eq!(reported_endpoint(comment), Some(("vm".to_owned(), 45678)));
    }

    #[test]
    fn a_pending_job_shows_slurms_reason() {
        assert_eq!(
            parse(PENDING_TOO_MANY_CPUS).state,
            JobState::Pending {
                reason: "PartitionConfig".to_owned()
            }
        );
        assert_eq!(
            parse(PENDING_PRIORITY).state.describe(),
            "PENDING (Priority)"
        );
    }

    #[test]
    fn ended_jobs_carry_slurms_state_and_reason() {
        assert_eq!(parse(COMPLETING).state, JobState::Ending);
        for (stdout, state, reason) in [
            (CANCELLED, "CANCELLED", "None"),
            (FAILED_EXIT_3, "FAILED", "NonZeroExitCode"),
            (OUT_OF_MEMORY, "OUT_OF_MEMORY", "OutOfMemory"),
            (TIMEOUT, "TIMEOUT", "TimeLimit"),
            (FAILED_IMPOSSIBLE_MEMORY, "FAILED", "BadConstraints"),
        ] {
            assert_eq!(
                parse(stdout).state,
                JobState::Ended {
                    state: state.to_owned(),
                    reason: reason.to_owned(),
                    exit: None
                },
                "{stdout}"
            );
        }
        assert_eq!(parse(CANCELLED).state.describe(), "CANCELLED");
        assert_eq!(
            parse(OUT_OF_MEMORY).state.describe(),
            "OUT_OF_MEMORY (OutOfMemory)"
        );
    }

    #[test]
    fn a_comment_holding_the_separator_stays_whole() {
        let info = parse(COMMENT_WITH_PIPE);
        assert_eq!(info.name.as_deref(), Some("devbox-x with space"));
        assert_eq!(
            info.state,
            JobState::Running {
                node: "localhost".to_owned(),
                comment: Some("a b|c:1".to_owned())
            }
        );
    }

    #[test]
    fn odd_output_is_an_error_or_gone_never_a_panic() {
        assert_eq!(
            parse_squeue_job(JobId(1), "").unwrap().state,
            JobState::Gone
        );
        for bad in [
            "13|RUNNING\n",
            "14|RUNNING|None|localhost|x|(null)\n",
            "13|EXPLODED|None|localhost|x|(null)\n",
            "garbage",
        ] {
            assert!(parse_squeue_job(JobId(13), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_exit_code_is_code_then_signal() {
        assert_eq!(
            parse_exit_code(SCONTROL_CANCELLED, "devbox-busy"),
            Some((0, 15))
        );
        assert_eq!(
            parse_exit_code(SCONTROL_FAILED_EXIT_3, "devbox-exit3"),
            Some((3, 0))
        );
        assert_eq!(parse_exit_code(SCONTROL_OOM, "devbox-oom"), Some((0, 125)));
        assert_eq!(
            parse_exit_code(SCONTROL_RUNNING_WITH_COMMENT, "devbox-abc:srv-1|x"),
            Some((0, 0))
        );
        assert_eq!(parse_exit_code("JobId=1 JobName=x\n", "x"), None);
        assert_eq!(parse_exit_code("JobId=1 ExitCode=a:b\n", "x"), None);
    }

    #[test]
    fn a_job_name_that_imitates_a_field_does_not_fool_the_exit_code() {
        let line = "JobId=7 JobName=x ExitCode=9:9 y UserId=0(0) JobState=FAILED ExitCode=1:0 Comment=ExitCode=5:5\n";
        assert_eq!(parse_exit_code(line, "x ExitCode=9:9 y"), Some((1, 0)));
    }

    #[test]
    fn only_host_colon_port_is_an_endpoint() {
        assert_eq!(
            reported_endpoint("node17.cluster:8080"),
            Some(("node17.cluster".to_owned(), 8080))
        );
        assert_eq!(
            reported_endpoint("[fe80::1]:443"),
            Some(("[fe80::1]".to_owned(), 443))
        );
        for bad in [
            "", "vm", "vm:", ":80", "vm:0", "vm:70000", "a b:80", "vm:80x",
        ] {
            assert_eq!(reported_endpoint(bad), None, "{bad}");
        }
    }
}
