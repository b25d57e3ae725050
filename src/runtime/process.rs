//! The local-process runtime: code-server as a child process in its own process group.
//!
//! Each instance leads a new process group, so a stop signals the launcher and all its
//! children at once (SIGTERM to the launcher alone leaves the extension host orphaned).
//! Output goes straight to a log file, so an instance outlives a killed devbox without
//! a broken pipe and can be adopted by the next one.

use std::fs::OpenOptions;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{ExitInfo, Instance, LaunchPlan, Runtime, RuntimeError, procfs};
use crate::status::ProcessRecord;

/// How often a stop checks whether the group is gone, and an adopted process is alive.
const STOP_POLL: Duration = Duration::from_millis(50);
const ADOPTED_POLL: Duration = Duration::from_secs(1);
/// How long after SIGKILL a group may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone)]
pub struct ProcessRuntime;

impl Runtime for ProcessRuntime {
    async fn start(&self, plan: &LaunchPlan) -> Result<Instance, RuntimeError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&plan.log_file)
            .map_err(|source| RuntimeError::LogFile {
                path: plan.log_file.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| RuntimeError::LogFile {
            path: plan.log_file.clone(),
            source,
        })?;
        let mut command = Command::new(&plan.program);
        command
            .args(&plan.args)
            .current_dir(&plan.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .process_group(0)
            .kill_on_drop(false);
        for key in &plan.env_remove {
            command.env_remove(key);
        }
        command.envs(plan.env.iter().map(|(k, v)| (k, v)));
        // Inherited by every child: how `clean_up` recognises this instance's processes.
        command.env(INSTANCE_TAG_VAR, &plan.server);
        let mut child = command.spawn().map_err(|source| RuntimeError::Spawn {
            program: plan.program.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let start_ticks = procfs::stat(pid).map(|s| s.start_ticks).unwrap_or_default();
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => exit_info(status),
                Err(_) => ExitInfo::Unknown,
            };
            let _ = tx.send(Some(exit));
        });
        Ok(Instance {
            record: ProcessRecord {
                pid,
                pgid: pid,
                start_ticks,
            },
            exited: rx,
        })
    }

    async fn stop(&self, record: &ProcessRecord, grace: Duration) -> Result<(), RuntimeError> {
        let group = Pid::from_raw(record.pgid as i32);
        if signal_group(group, Signal::SIGTERM) && wait_group_gone(record.pgid, grace).await {
            return Ok(());
        }
        signal_group(group, Signal::SIGKILL);
        if wait_group_gone(record.pgid, KILL_WAIT).await {
            Ok(())
        } else {
            Err(RuntimeError::Unkillable { pgid: record.pgid })
        }
    }

    async fn clean_up(&self, server: &str, record: &ProcessRecord) {
        let tag = instance_tag(server);
        let ours = || -> Vec<u32> {
            procfs::group_members(record.pgid)
                .into_iter()
                .filter(|pid| procfs::environ_has(*pid, &tag))
                .collect()
        };
        for pid in ours() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let deadline = Instant::now() + KILL_WAIT;
        while !ours().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(STOP_POLL).await;
        }
    }

    fn adopt(&self, record: &ProcessRecord) -> Option<Instance> {
        if !procfs::is_same_process_alive(record.pid, record.start_ticks) {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        let record = *record;
        tokio::spawn(async move {
            // Not our child: we cannot wait(2) for it, so we look.
            while procfs::is_same_process_alive(record.pid, record.start_ticks) {
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            let _ = tx.send(Some(ExitInfo::Unknown));
        });
        Some(Instance { record, exited: rx })
    }
}

/// Sends `signal` to the group; false when the group does not exist.
fn signal_group(group: Pid, signal: Signal) -> bool {
    killpg(group, signal).is_ok()
}

/// Polls until no live member of `pgid` remains; false when `limit` passes first.
async fn wait_group_gone(pgid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if procfs::group_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// Environment variable naming the server every process of an instance belongs to.
const INSTANCE_TAG_VAR: &str = "DEVBOX_SERVER";

fn instance_tag(server: &str) -> String {
    format!("{INSTANCE_TAG_VAR}={server}")
}

fn exit_info(status: std::process::ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitInfo::Code(code),
        (None, Some(signal)) => ExitInfo::Signal(signal),
        (None, None) => ExitInfo::Unknown,
    }
}
