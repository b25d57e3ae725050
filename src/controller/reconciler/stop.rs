//! Ending things: stopping an instance, reacting to an exit (restart with backoff or
//! stay down, as the restart policy says), recording failures, forgetting a deleted
//! server, and shutting down with devbox.

use std::time::SystemTime;

use tokio::time::Instant;

use super::state::Retry;
use super::{ServerTask, count_restart, round_ms};
use crate::config::ShutdownPolicy;
use crate::controller::decide::{self, AfterExit};
use crate::logs::Level;
use crate::metrics::METRICS;
use crate::runtime::{ExitInfo, Runtime};
use crate::spec::RestartPolicy;
use crate::status::{Phase, rfc3339};

/// Lines of output quoted when an instance crashes.
const CRASH_LOG_LINES: usize = 10;

impl<R: Runtime> ServerTask<R> {
    /// Stops the running instance, if any, and records the server as stopped, with
    /// `message` saying why when it is not the user's doing.
    pub(super) async fn stop(&mut self, why: &str, message: Option<String>) {
        let Some(live) = self.state.live.as_ref() else {
            return;
        };
        let record = live.instance.record.clone();
        self.state.phase = Phase::Stopping;
        self.publish();
        let grace = self.ctx.config.code_server.stop_timeout.get();
        if let Err(err) = self.ctx.runtime.stop(&record, grace).await {
            self.event(Level::Error, format!("stop failed: {err}"));
        }
        self.instance_ended();
        self.state.phase = Phase::Stopped;
        self.state.message = message;
        self.state.retry = None;
        self.publish();
        self.event(Level::Info, format!("{why}: {} ended", record.describe()));
    }

    /// Bookkeeping once the instance's processes are gone: the port goes back to the
    /// pool (a pinned one stays reserved for this spec) and the state forgets the
    /// instance.
    pub(super) fn instance_ended(&mut self) {
        self.stop_tail();
        self.ctx.passwords.remove(self.name());
        self.state.live = None;
        self.state.started_at = None;
        self.ctx.ports.release(self.name());
        self.state.port = self.state.pinned_port();
    }

    /// The running instance exited on its own (`when`: `"during start "`, or empty
    /// once it had started): restart it, or keep it down, as [`decide::after_exit`]
    /// says.
    pub(super) async fn on_exit(&mut self, exit: ExitInfo, when: &str) {
        let Some(live) = self.state.live.as_ref() else {
            return;
        };
        let record = live.instance.record.clone();
        let healthy_for = live.healthy_for();
        // Asked first: the clean-up forgets the instance (its cgroup).
        let cause = self.ctx.runtime.exit_reason(&record, exit);
        let prefix = super::start::cause_prefix(cause.as_deref());
        // What ended it: the backend's cause alone when the exit itself says nothing
        // more (a Slurm job that was cancelled, timed out, lost its node).
        let ended = match (&cause, exit) {
            (Some(cause), ExitInfo::Unknown) => cause.clone(),
            _ => format!("{prefix}code-server exited {when}({exit})"),
        };
        // Children may still hold the port for a few seconds after the launcher died.
        self.ctx.runtime.clean_up(&record).await;
        if decide::recovered(healthy_for) {
            self.state.failures = Default::default();
        }
        self.instance_ended();
        self.state.last_exit = Some(exit.to_string());
        if !exit.is_success() {
            METRICS.controller.crashes.inc();
        }
        self.event(
            Level::Warn,
            match (&cause, exit) {
                (Some(cause), ExitInfo::Unknown) => cause.clone(),
                _ => format!("{prefix}{} exited ({exit})", record.describe()),
            },
        );
        let policy = self
            .state
            .applied
            .as_ref()
            .map_or(RestartPolicy::OnFailure, |s| s.restart_policy);
        match decide::after_exit(policy, exit) {
            AfterExit::Restart(reason) => {
                count_restart(reason);
                let reason = format!("{ended}{}", self.crash_lines());
                self.fail(reason, true);
            }
            AfterExit::Halt(phase) => {
                let policy_word = if policy == RestartPolicy::Never {
                    "never"
                } else {
                    "on-failure"
                };
                self.state.halted_revision =
                    self.state.applied.as_ref().map(|s| s.revision.clone());
                self.state.phase = phase;
                self.state.message = Some(format!(
                    "{prefix}exited {when}({exit}); restart_policy {policy_word} keeps it down until the spec changes"
                ));
                self.publish();
            }
        }
    }

    /// Records a failed start or a crash of the applied spec and schedules the next
    /// attempt as [`decide::next_attempt`] says. `crash` counts toward the crash loop;
    /// other failures (no port, bad workspace) show as `failed` at once.
    pub(super) fn fail(&mut self, reason: String, crash: bool) {
        let hash = self
            .state
            .applied
            .as_ref()
            .map(|s| s.hash.clone())
            .unwrap_or_default();
        let attempt = decide::next_attempt(
            self.state.failures.before(&hash),
            crash,
            &self.ctx.config.controller,
        );
        // Nothing runs now: the port goes back to the pool until the retry.
        self.ctx.ports.release(self.name());
        let delay_text = humantime::format_duration(round_ms(attempt.delay)).to_string();
        let state = &mut self.state;
        state.failures.of_hash = Some(hash.clone());
        state.failures.in_a_row = attempt.number;
        state.retry = Some(Retry {
            at: Instant::now() + attempt.delay,
            at_wall: rfc3339(SystemTime::now() + attempt.delay),
            hash,
        });
        state.restarts += 1;
        state.live = None;
        state.started_at = None;
        state.port = state.pinned_port();
        if attempt.failed {
            state.phase = Phase::Failed;
            state.message = Some(reason.clone());
        } else {
            state.phase = Phase::Starting;
            state.message = Some(format!(
                "restarting in {delay_text} (attempt {}): {reason}",
                attempt.number
            ));
        }
        self.publish();
        let level = if attempt.failed {
            Level::Error
        } else {
            Level::Warn
        };
        let first_line = reason.lines().next().unwrap_or_default();
        let first_line = first_line.trim_end_matches("; last output:");
        self.event(level, format!("{first_line}; retry in {delay_text}"));
    }

    /// The backend can never run the applied spec as it is (it refused it, or can never
    /// place it): the server shows `failed` and stays down until its spec changes, where
    /// a retry would only ask again (and, on Slurm, leave a failed job behind each time).
    pub(super) fn give_up(&mut self, reason: String) {
        self.ctx.ports.release(self.name());
        let state = &mut self.state;
        state.halted_revision = state.applied.as_ref().map(|s| s.revision.clone());
        state.retry = None;
        state.live = None;
        state.started_at = None;
        state.port = state.pinned_port();
        state.phase = Phase::Failed;
        state.message = Some(format!("{reason}; tried again when the spec changes"));
        self.publish();
        self.event(
            Level::Error,
            format!("{reason}; not tried again until the spec changes"),
        );
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
            self.publish();
            return false;
        }
        let name = self.name().to_owned();
        self.ctx.statuses.remove(&name);
        self.ctx.ports.release(&name);
        self.ctx.logs.forget(&name);
        let mut doomed = vec![self.dir.clone()];
        let instance_root = self.instance_root();
        if instance_root != self.dir {
            doomed.push(instance_root);
        }
        // An unclaimed pool server's workspace is nobody's, and a later member of that
        // name must start from the template as it is then.
        let pool_member = self.state.description.pool.is_some();
        if self.ctx.config.controller.purge_workspace_on_delete || pool_member {
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
