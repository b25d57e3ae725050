//! The local-process runtime: code-server as a child process in its own process group.
//!
//! Each instance leads a new process group, so a stop signals the launcher and all its
//! children at once (SIGTERM to the launcher alone leaves the extension host orphaned).
//! Processes that leave the group (VS Code terminals get their own session) are still
//! found: every process of an instance inherits a unique tag in its environment
//! ([`INSTANCE_TAG_VAR`]). Output goes straight to a log file, so an instance outlives a
//! killed devbox without a broken pipe and can be adopted by the next one.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{ExitInfo, Instance, LaunchPlan, Runtime, RuntimeError, procfs};
use crate::endpoint;
use crate::status::ProcessRecord;

/// How often a stop checks whether the instance is gone, and an adopted process is alive.
const STOP_POLL: Duration = Duration::from_millis(100);
const ADOPTED_POLL: Duration = Duration::from_secs(1);
/// How long after SIGKILL an instance may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Environment variable holding an instance's unique tag. Not `DEVBOX_…`: no variable
/// of that prefix reaches an instance (one rule without exceptions, which a test can
/// check in `/proc/<pid>/environ`). Not `CODE_SERVER_…` either: code-server reads
/// variables of its own prefix (`CODE_SERVER_CONFIG`, `CODE_SERVER_PARENT_PID`, …), and a
/// later release could read ours. `DEVSERVER_` names what the process belongs to, a
/// `DevServer` (the spec's kind), and nothing else uses it.
const INSTANCE_TAG_VAR: &str = "DEVSERVER_INSTANCE";
/// Environment variable naming the devbox an instance belongs to ([`LaunchPlan::owner`]).
const OWNER_VAR: &str = "DEVSERVER_INSTANCE_OF";
/// The names an older devbox marked its instances with; still recognised, so that its
/// instances are found, stopped and adopted after an upgrade.
const LEGACY_MARKERS: [(&str, &str); 1] = [("DEVBOX_INSTANCE", "DEVBOX_INSTANCE_OF")];

#[derive(Debug, Default, Clone)]
pub struct ProcessRuntime;

impl Runtime for ProcessRuntime {
    async fn start(&self, plan: &LaunchPlan) -> Result<Instance, RuntimeError> {
        let log_error = |source| RuntimeError::LogFile {
            path: plan.log_file.clone(),
            source,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&plan.log_file)
            .map_err(log_error)?;
        let log_err = log.try_clone().map_err(log_error)?;
        if let Some(socket) = plan.endpoint.socket() {
            // A killed instance leaves its socket file behind.
            endpoint::remove_stale_socket(socket)?;
        }
        let instance = uuid::Uuid::new_v4().to_string();
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
        command.env(INSTANCE_TAG_VAR, &instance);
        command.env(OWNER_VAR, &plan.owner);
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
                instance,
                socket: plan.endpoint.socket().map(ToOwned::to_owned),
            },
            exited: rx,
        })
    }

    async fn stop(&self, record: &ProcessRecord, grace: Duration) -> Result<(), RuntimeError> {
        let everything = Scope::GroupAndTagged;
        signal_all(record, everything, Signal::SIGTERM).await;
        if wait_gone(record, everything, grace).await {
            remove_socket(record);
            return Ok(());
        }
        signal_all(record, everything, Signal::SIGKILL).await;
        if wait_gone(record, everything, KILL_WAIT).await {
            remove_socket(record);
            Ok(())
        } else {
            Err(RuntimeError::Unkillable { pgid: record.pgid })
        }
    }

    async fn clean_up(&self, record: &ProcessRecord) {
        // Only processes carrying this instance's tag: the group id may have been reused.
        signal_all(record, Scope::Tagged, Signal::SIGKILL).await;
        if wait_gone(record, Scope::Tagged, KILL_WAIT).await {
            remove_socket(record);
        }
    }

    fn kill_unrecorded(&self, owner: &str, recorded: &HashSet<String>) -> Vec<String> {
        let mut killed = Vec::new();
        for (tag_var, owner_var) in markers() {
            let owner_entry = format!("{owner_var}={owner}");
            for (pid, tag) in procfs::tagged(tag_var, &owner_entry) {
                if recorded.contains(&tag) {
                    continue;
                }
                // Every process of the instance carries its tag: kill each one.
                if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok()
                    && !killed.contains(&tag)
                {
                    killed.push(tag);
                }
            }
        }
        killed
    }

    fn adopt(&self, record: &ProcessRecord) -> Option<Instance> {
        if !procfs::is_same_process_alive(record.pid, record.start_ticks) {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        let record = record.clone();
        let watched = record.clone();
        tokio::spawn(async move {
            // Not our child: we cannot wait(2) for it, so we look.
            while procfs::is_same_process_alive(watched.pid, watched.start_ticks) {
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

/// Which processes of an instance an action reaches.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The launcher's process group plus every process carrying the instance tag.
    GroupAndTagged,
    /// Only processes carrying the instance tag.
    Tagged,
}

/// The marker variables, `(tag, owner)`: today's, then an older devbox's.
fn markers() -> impl Iterator<Item = (&'static str, &'static str)> {
    std::iter::once((INSTANCE_TAG_VAR, OWNER_VAR)).chain(LEGACY_MARKERS)
}

/// The environment entries (`KEY=tag`) that mark a process of `record`'s instance,
/// under today's name and an older devbox's (the tag is a UUID: unique either way).
fn tag_entries(record: &ProcessRecord) -> Vec<String> {
    if record.instance.is_empty() {
        return Vec::new();
    }
    markers()
        .map(|(tag_var, _)| format!("{tag_var}={}", record.instance))
        .collect()
}

/// The live processes of `record` in `scope`, read from `/proc` off the async workers.
async fn remaining(record: &ProcessRecord, scope: Scope) -> Vec<u32> {
    let pgid = match scope {
        Scope::GroupAndTagged => record.pgid,
        Scope::Tagged => 0,
    };
    let tags = tag_entries(record);
    if pgid == 0 && tags.is_empty() {
        return Vec::new();
    }
    let found = tokio::task::spawn_blocking(move || procfs::group_or_tagged(pgid, &tags)).await;
    found.unwrap_or_default()
}

/// Removes the socket of an instance that is gone (code-server removes it on SIGTERM,
/// not when killed); the next start would replace it anyway, but a deleted server's
/// would stay.
fn remove_socket(record: &ProcessRecord) {
    if let Some(socket) = &record.socket
        && let Err(err) = endpoint::remove_stale_socket(socket)
    {
        tracing::warn!(%err, "cannot remove the socket of a stopped instance");
    }
}

async fn signal_all(record: &ProcessRecord, scope: Scope, signal: Signal) {
    if matches!(scope, Scope::GroupAndTagged) {
        // One call reaches the whole group, including processes forked a moment ago.
        let _ = killpg(Pid::from_raw(record.pgid as i32), signal);
    }
    for pid in remaining(record, scope).await {
        let _ = kill(Pid::from_raw(pid as i32), signal);
    }
}

/// Polls until nothing of `record` in `scope` is alive; false when `limit` passes first.
async fn wait_gone(record: &ProcessRecord, scope: Scope, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if remaining(record, scope).await.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(STOP_POLL).await;
    }
}

fn exit_info(status: std::process::ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitInfo::Code(code),
        (None, Some(signal)) => ExitInfo::Signal(signal),
        (None, None) => ExitInfo::Unknown,
    }
}
