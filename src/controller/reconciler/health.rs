//! Watching a running server: periodic `/healthz` checks (an instance that stops
//! answering is restarted), and idle culling from code-server's heartbeat.

use std::time::{Duration, SystemTime};

use super::ServerTask;
use super::stop::STABLE_AFTER;
use crate::health::Healthz;
use crate::logs::Level;
use crate::runtime::Runtime;
use crate::status::Phase;

/// Failed health checks in a row after which a running instance is restarted.
const UNHEALTHY_LIMIT: u32 = 3;

impl<R: Runtime> ServerTask<R> {
    pub(super) async fn check_health(&mut self) {
        let Some(endpoint) = self.status().and_then(|s| s.endpoint()) else {
            return;
        };
        match self
            .ctx
            .runtime
            .probe(&self.ctx.health, &endpoint, Duration::from_secs(2))
            .await
        {
            Ok(healthz) => {
                if self.is_idle(&healthz) {
                    return self.cull_idle().await;
                }
                if self.health_failures > 0 {
                    self.event(Level::Info, "health check passes again");
                }
                self.health_failures = 0;
                let stable = self
                    .healthy_since
                    .is_some_and(|at| at.elapsed() >= STABLE_AFTER);
                if stable {
                    self.failing_hash = None;
                }
                let note = self.limits_note();
                self.set_status(|s| {
                    if s.phase == Phase::Starting && s.process.is_some() {
                        s.phase = Phase::Running;
                        s.message = note;
                    }
                    if stable {
                        s.consecutive_crashes = 0;
                    }
                });
            }
            Err(err) if err.is_devboxs_own() => {
                // Says nothing about the instance: restarting it would punish its user
                // for a flood of connections to devbox.
                self.event(Level::Warn, format!("health check skipped: {err}"));
            }
            Err(err) => {
                self.health_failures += 1;
                let failures = self.health_failures;
                self.event(
                    Level::Warn,
                    format!("health check failed ({failures}/{UNHEALTHY_LIMIT}): {err}"),
                );
                if failures >= UNHEALTHY_LIMIT {
                    crate::metrics::METRICS
                        .controller
                        .restarts
                        .with_label_values(&["unhealthy"])
                        .inc();
                    self.stop("unhealthy", None).await;
                    self.fail(
                        format!("restarted after {UNHEALTHY_LIMIT} failed health checks: {err}"),
                        true,
                    );
                }
            }
        }
    }

    /// Whether no browser has been active for longer than the spec's `idle_timeout`.
    /// code-server says `expired` once no client was active in the last minute, and
    /// `lastHeartbeat` is when one last was (0 when none ever connected: then the time
    /// since the instance became healthy counts).
    fn is_idle(&self, healthz: &Healthz) -> bool {
        let Some(limit) = self.applied.as_ref().and_then(|s| s.idle_timeout) else {
            return false;
        };
        if healthz.status != "expired" {
            return false;
        }
        let idle_for = if healthz.last_heartbeat > 0 {
            let last = SystemTime::UNIX_EPOCH + Duration::from_millis(healthz.last_heartbeat);
            SystemTime::now().duration_since(last).unwrap_or_default()
        } else {
            self.healthy_since.map_or(Duration::ZERO, |at| at.elapsed())
        };
        idle_for > limit.get()
    }

    /// Stops an idle server and keeps it down until its spec changes.
    async fn cull_idle(&mut self) {
        let limit = self
            .applied
            .as_ref()
            .and_then(|s| s.idle_timeout)
            .unwrap_or_default();
        self.halted_revision = self.applied.as_ref().map(|s| s.revision.clone());
        let message = format!(
            "stopped after {limit} without a connected browser; it starts again when its spec changes"
        );
        self.event(Level::Info, message.clone());
        crate::metrics::METRICS.controller.culls.inc();
        self.stop("idle", Some(message)).await;
        let revision = self.halted_revision.clone();
        self.set_status(|s| s.halted_revision = revision);
    }
}
