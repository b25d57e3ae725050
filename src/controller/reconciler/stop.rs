//! Ending things: stopping an instance, reacting to an exit (restart with backoff or
//! stay down, as the restart policy says), recording failures, forgetting a deleted
//! server, and shutting down with devbox.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Retry, ServerTask, round_ms};
use crate::config::ShutdownPolicy;
use crate::logs::Level;
use crate::metrics::METRICS;
use crate::runtime::{ExitInfo, Runtime};
use crate::spec::RestartPolicy;
use crate::status::{Phase, ServerStatus, rfc3339};

/// A process healthy this long has recovered: its crash counter starts again at zero.
pub(super) const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Lines of output quoted when an instance crashes.
const CRASH_LOG_LINES: usize = 10;

impl<R: Runtime> ServerTask<R> {
    /// Stops the running instance, if any, and records the server as stopped, with
    /// `message` saying why when it is not the user's doing.
    pub(super) async fn stop(&mut self, why: &str, message: Option<String>) {
        let Some(instance) = self.instance.take() else {
            return;
        };
        self.set_status(|s| s.phase = Phase::Stopping);
        let grace = self.ctx.config.code_server.stop_timeout.get();
        if let Err(err) = self.ctx.runtime.stop(&instance.record, grace).await {
            self.event(Level::Error, format!("stop failed: {err}"));
        }
        self.process_ended(|s| {
            s.phase = Phase::Stopped;
            s.message = message;
            s.next_retry_at = None;
        });
        self.event(
            Level::Info,
            format!("{why}: process {} ended", instance.record.pid),
        );
    }

    /// Bookkeeping once the instance's processes are gone: the port goes back to the
    /// pool (a pinned one stays reserved for this spec) and the status forgets the
    /// process, in one write with the caller's own `changes`.
    pub(super) fn process_ended(&mut self, changes: impl FnOnce(&mut ServerStatus)) {
        self.stop_tail();
        self.applied_hash = None;
        self.healthy_since = None;
        self.health_failures = 0;
        self.ctx.ports.release(self.name());
        let pinned = self.applied.as_ref().and_then(|s| s.port);
        self.set_status(|s| {
            s.process = None;
            s.started_at = None;
            s.applied_hash = None;
            s.port = pinned;
            changes(s);
        });
    }

    /// The running instance exited on its own.
    pub(super) async fn on_exit(&mut self, exit: ExitInfo) {
        let Some(instance) = self.instance.take() else {
            return;
        };
        // Asked first: the clean-up forgets the instance (its cgroup).
        let cause = self.ctx.runtime.exit_reason(&instance.record, exit);
        let prefix = super::start::cause_prefix(cause.as_deref());
        // Children may still hold the port for a few seconds after the launcher died.
        self.ctx.runtime.clean_up(&instance.record).await;
        if self
            .healthy_since
            .is_some_and(|at| at.elapsed() >= STABLE_AFTER)
        {
            self.failing_hash = None;
            self.set_status(|s| s.consecutive_crashes = 0);
        }
        self.process_ended(|s| s.last_exit = Some(exit.to_string()));
        if !exit.is_success() {
            METRICS.controller.crashes.inc();
        }
        self.event(
            Level::Warn,
            format!("{prefix}process {} exited ({exit})", instance.record.pid),
        );
        let policy = self
            .applied
            .as_ref()
            .map_or(RestartPolicy::OnFailure, |s| s.restart_policy);
        let restart = match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !exit.is_success(),
            RestartPolicy::Never => false,
        };
        if restart {
            let reason = if exit.is_success() { "exit" } else { "crash" };
            METRICS
                .controller
                .restarts
                .with_label_values(&[reason])
                .inc();
            let reason = format!("{prefix}code-server exited ({exit}){}", self.crash_lines());
            self.fail(reason, true);
            return;
        }
        let revision = self.applied.as_ref().map(|s| s.revision.clone());
        self.halted_revision.clone_from(&revision);
        let phase = if exit.is_success() {
            Phase::Stopped
        } else {
            Phase::Failed
        };
        let policy_word = if policy == RestartPolicy::Never {
            "never"
        } else {
            "on-failure"
        };
        self.set_status(|s| {
            s.phase = phase;
            s.message = Some(format!(
                "{prefix}exited ({exit}); restart_policy {policy_word} keeps it down until the spec changes"
            ));
            s.halted_revision = revision;
        });
    }

    /// Records a failed start or a crash of the applied spec and schedules the next
    /// attempt with backoff. `crash` counts toward the crash loop; other failures (no
    /// port, bad workspace) show as `failed` at once.
    pub(super) fn fail(&mut self, reason: String, crash: bool) {
        let hash = self
            .applied
            .as_ref()
            .map(|s| s.hash.clone())
            .unwrap_or_default();
        let previous = if self.failing_hash.as_deref() == Some(hash.as_str()) {
            self.status().map_or(0, |s| s.consecutive_crashes)
        } else {
            0
        };
        let crashes = previous + 1;
        self.failing_hash = Some(hash.clone());
        let threshold = self.ctx.config.controller.crash_loop_threshold;
        let delay = self.ctx.config.controller.restart_backoff.delay(crashes);
        self.retry = Some(Retry {
            at: Instant::now() + delay,
            hash,
        });
        // Nothing runs now: the port goes back to the pool until the retry.
        self.ctx.ports.release(self.name());
        let pinned = self.applied.as_ref().and_then(|s| s.port);
        let next_retry_at = rfc3339(SystemTime::now() + delay);
        let phase = if !crash || crashes >= threshold {
            Phase::Failed
        } else {
            Phase::Starting
        };
        let delay_text = humantime::format_duration(round_ms(delay)).to_string();
        let message = if phase == Phase::Failed {
            reason.clone()
        } else {
            format!("restarting in {delay_text} (attempt {crashes}): {reason}")
        };
        self.set_status(|s| {
            s.phase = phase;
            s.message = Some(message);
            s.consecutive_crashes = crashes;
            s.restarts += 1;
            s.next_retry_at = Some(next_retry_at);
            s.process = None;
            s.started_at = None;
            s.port = pinned;
        });
        let level = if phase == Phase::Failed {
            Level::Error
        } else {
            Level::Warn
        };
        let first_line = reason.lines().next().unwrap_or_default();
        self.event(level, format!("{first_line}; retry in {delay_text}"));
    }

    /// The last lines code-server printed, for failure reasons.
    pub(super) fn crash_lines(&self) -> String {
        let lines = crate::logs::last_lines_after(
            &self.log_file(),
            self.launch_log_offset,
            CRASH_LOG_LINES,
        );
        if lines.is_empty() {
            String::new()
        } else {
            format!("; last output:\n{}", lines.join("\n"))
        }
    }

    /// The spec file is gone: stop, then forget everything but the workspace (unless
    /// the config says to purge it). Returns false when the spec came back meanwhile.
    pub(super) async fn forget(&mut self) -> bool {
        self.stop("deleted", None).await;
        if *self.desired.borrow() != super::Desired::Deleted {
            return false;
        }
        let name = self.name().to_owned();
        self.ctx.statuses.remove(&name);
        self.ctx.ports.release(&name);
        self.ctx.logs.forget(&name);
        let mut doomed = vec![self.dir.clone()];
        if self.ctx.config.controller.purge_workspace_on_delete {
            doomed.push(self.workspace_dir());
        }
        let statuses = self.ctx.statuses.clone();
        let removed = tokio::task::spawn_blocking(move || {
            // A status write still under way would recreate the directory.
            statuses.flush();
            doomed
                .iter()
                .filter_map(|dir| {
                    crate::fsutil::remove_dir_if_exists(dir)
                        .err()
                        .map(|e| format!("{}: {e}", dir.display()))
                })
                .collect::<Vec<_>>()
        })
        .await;
        match removed {
            Ok(errors) if errors.is_empty() => {}
            Ok(errors) => tracing::warn!(?errors, "cannot remove server data"),
            Err(err) => tracing::warn!(%err, "cannot remove server data"),
        }
        tracing::info!("deleted and forgotten");
        // A spec waiting for this server's port can have it now.
        self.ctx.rescan.notify_one();
        true
    }

    pub(super) async fn on_shutdown(&mut self) {
        match self.ctx.config.controller.on_shutdown {
            ShutdownPolicy::Stop => self.stop("devbox shutting down", None).await,
            ShutdownPolicy::Keep => self.stop_tail(),
        }
    }
}
