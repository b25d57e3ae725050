//! The local-process runtime: code-server as a child process in its own process group.
//!
//! Each instance leads a new process group, so a stop signals the launcher and all its
//! children at once (SIGTERM to the launcher alone leaves the extension host orphaned).
//! Processes that leave the group (VS Code terminals get their own session) are still
//! found: every process of an instance inherits a unique tag in its environment
//! ([`INSTANCE_TAG_VAR`]). Output goes straight to a log file, so an instance outlives a
//! killed devbox without a broken pipe and can be adopted by the next one.
//!
//! Where the host allows it, each instance also runs in a cgroup of its own
//! ([`super::cgroup`]), which it joins between fork and exec: its limits hold from its
//! first instruction, everything it forks is born inside (no race with a spawn
//! followed by a move, which would leave children forked meanwhile outside), a stop
//! kills the whole cgroup, and an exit is checked for the kernel's OOM killer.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

use super::cgroup::{self, CgroupError, Cgroups, InstanceCgroup};
use super::{Backend, ExitInfo, Instance, LaunchPlan, Runtime, RuntimeError, procfs};
use crate::endpoint;
use crate::status::{InstanceRecord, ProcessRecord};

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

#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    /// Where instances get their cgroups; `None`: they run unlimited, and a stop finds
    /// their processes by group and tag only.
    cgroups: Option<Cgroups>,
    /// Why there are no cgroups.
    unenforced: Option<String>,
}

impl ProcessRuntime {
    /// Instances in cgroups under devbox's parent cgroup for `state_dir`, when the host
    /// allows; otherwise unlimited, and a warning names what is missing (once, here).
    pub fn for_state_dir(state_dir: &Path) -> Self {
        match Cgroups::set_up(state_dir) {
            Ok(cgroups) => {
                tracing::info!(
                    cgroups = cgroups.version(),
                    "each instance runs in a cgroup of its own (limits, total stops, metrics)"
                );
                Self {
                    cgroups: Some(cgroups),
                    unenforced: None,
                }
            }
            Err(why) => {
                tracing::warn!(
                    "resource limits are not enforced: {why}; instances run without limits (run devbox as root, or give it a delegated cgroup v2 subtree)"
                );
                Self::without_cgroups(why)
            }
        }
    }

    /// Instances without cgroups (unlimited), `why` said when a spec asks for limits.
    pub fn without_cgroups(why: impl Into<String>) -> Self {
        Self {
            cgroups: None,
            unenforced: Some(why.into()),
        }
    }

    /// A fresh cgroup for `plan`'s instance, when devbox has cgroups.
    async fn create_cgroup(
        &self,
        plan: &LaunchPlan,
    ) -> Result<Option<InstanceCgroup>, CgroupError> {
        let Some(cgroups) = self.cgroups.clone() else {
            return Ok(None);
        };
        let (server, limits) = (plan.server.clone(), plan.resources);
        match tokio::task::spawn_blocking(move || cgroups.create(&server, &limits)).await {
            Ok(created) => created.map(Some),
            Err(err) => Err(CgroupError::Create {
                path: plan.server.clone().into(),
                source: std::io::Error::other(err.to_string()),
            }),
        }
    }
}

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
        let cgroup = self.create_cgroup(plan).await?;
        let procs_files = match cgroup.as_ref().map(InstanceCgroup::procs_files).transpose() {
            Ok(files) => files,
            Err(err) => {
                remove_cgroup(cgroup).await;
                return Err(err.into());
            }
        };
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
        if let Some(account) = &plan.run_as {
            // The standard library drops root's supplementary groups before `setuid`;
            // the cgroup is joined afterwards, which a process may do for itself
            // through files opened (by root) beforehand.
            command
                .uid(account.uid)
                .gid(account.gid)
                .env("HOME", &account.home)
                .env("USER", &account.name)
                .env("LOGNAME", &account.name)
                .env("SHELL", &account.shell);
        }
        if let Some(files) = procs_files {
            // SAFETY: runs in the child between fork and exec, where only
            // async-signal-safe calls are allowed: `cgroup::join` makes one write(2) per
            // file opened beforehand, and allocates nothing.
            unsafe {
                command.pre_exec(move || cgroup::join(&files));
            }
        }
        let spawned = command.spawn();
        // The parent's copies of the cgroup files close with the command.
        drop(command);
        let mut child = match spawned {
            Ok(child) => child,
            Err(source) => {
                remove_cgroup(cgroup).await;
                return Err(RuntimeError::Spawn {
                    program: plan.program.clone(),
                    source,
                });
            }
        };
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
            record: InstanceRecord::Local(ProcessRecord {
                pid,
                pgid: pid,
                start_ticks,
                instance,
                socket: plan.endpoint.socket().map(ToOwned::to_owned),
                cgroup,
            }),
            exited: rx,
            placement: None,
        })
    }

    async fn stop(&self, record: &InstanceRecord, grace: Duration) -> Result<(), RuntimeError> {
        let Some(record) = record.local() else {
            return Ok(());
        };
        let everything = Scope::GroupAndTagged;
        signal_all(record, everything, Signal::SIGTERM).await;
        if wait_gone(record, everything, grace).await {
            remove_socket(record);
            remove_cgroup(record.cgroup.clone()).await;
            return Ok(());
        }
        kill_cgroup(record).await;
        signal_all(record, everything, Signal::SIGKILL).await;
        if wait_gone(record, everything, KILL_WAIT).await {
            remove_socket(record);
            remove_cgroup(record.cgroup.clone()).await;
            Ok(())
        } else {
            Err(RuntimeError::Unkillable { pgid: record.pgid })
        }
    }

    async fn clean_up(&self, record: &InstanceRecord) {
        let Some(record) = record.local() else {
            return;
        };
        // Only processes carrying this instance's tag, or in its cgroup: the group id
        // may have been reused.
        kill_cgroup(record).await;
        signal_all(record, Scope::Tagged, Signal::SIGKILL).await;
        if wait_gone(record, Scope::Tagged, KILL_WAIT).await {
            remove_socket(record);
            remove_cgroup(record.cgroup.clone()).await;
        }
    }

    fn limits_unenforced(&self, _backend: Backend) -> Option<&str> {
        self.unenforced.as_deref()
    }

    fn exit_reason(&self, record: &InstanceRecord, exit: ExitInfo) -> Option<String> {
        let record = record.local()?;
        let sigkill = exit == ExitInfo::Signal(Signal::SIGKILL as i32);
        record.cgroup.as_ref()?.oom_reason(sigkill)
    }

    fn shut_down(&self) {
        if let Some(cgroups) = &self.cgroups {
            cgroups.remove_parent();
        }
    }

    async fn sweep_unrecorded(&self, owner: &str, recorded: &HashSet<String>) -> Vec<String> {
        let (owner, recorded) = (owner.to_owned(), recorded.clone());
        // A walk of /proc: blocking.
        tokio::task::spawn_blocking(move || kill_unrecorded(&owner, &recorded))
            .await
            .unwrap_or_default()
    }

    async fn adopt(&self, record: &InstanceRecord) -> Option<Instance> {
        let record = record.local()?;
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
        Some(Instance {
            record: InstanceRecord::Local(record),
            exited: rx,
            placement: None,
        })
    }
}

/// Kills every process of `owner`'s instances whose tag is not in `recorded`; returns
/// the tags of the instances killed.
fn kill_unrecorded(owner: &str, recorded: &HashSet<String>) -> Vec<String> {
    let mut killed = Vec::new();
    for (tag_var, owner_var) in markers() {
        let owner_entry = format!("{owner_var}={owner}");
        for (pid, tag) in procfs::tagged(tag_var, &owner_entry) {
            if recorded.contains(&tag) {
                continue;
            }
            // Every process of the instance carries its tag: kill each one.
            if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() && !killed.contains(&tag) {
                killed.push(tag);
            }
        }
    }
    killed
}

/// Which processes of an instance an action reaches (always with every process of
/// its cgroup, which holds nothing but the instance).
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The launcher's process group plus every process carrying the instance tag.
    GroupAndTagged,
    /// Only processes carrying the instance tag.
    Tagged,
}

/// Kills every process of `record`'s cgroup at once, if it has one.
async fn kill_cgroup(record: &ProcessRecord) {
    if let Some(cgroup) = record.cgroup.clone() {
        let _ = tokio::task::spawn_blocking(move || cgroup.kill()).await;
    }
}

/// Removes an instance's cgroup once its processes are gone.
async fn remove_cgroup(cgroup: Option<InstanceCgroup>) {
    let Some(cgroup) = cgroup else {
        return;
    };
    match tokio::task::spawn_blocking(move || cgroup.remove()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(%err, "cannot remove the cgroup of a stopped instance"),
        Err(err) => tracing::warn!(%err, "cannot remove the cgroup of a stopped instance"),
    }
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
    let cgroup = record.cgroup.clone();
    if pgid == 0 && tags.is_empty() && cgroup.is_none() {
        return Vec::new();
    }
    let found = tokio::task::spawn_blocking(move || {
        let mut pids = if pgid == 0 && tags.is_empty() {
            Vec::new()
        } else {
            procfs::group_or_tagged(pgid, &tags)
        };
        if let Some(cgroup) = cgroup {
            let alive = |pid: &u32| procfs::stat(*pid).is_some_and(|s| s.is_alive());
            pids.extend(cgroup.procs().into_iter().filter(alive));
            pids.sort_unstable();
            pids.dedup();
        }
        pids
    });
    found.await.unwrap_or_default()
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
