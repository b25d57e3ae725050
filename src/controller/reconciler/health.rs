//! Watching a running server: periodic health checks, acted on as
//! [`decide::judge_health`] says (an instance that stops answering is restarted, an
//! idle one culled).

use std::time::{Duration, SystemTime};

use super::{ServerTask, count_restart};
use crate::controller::decide::{self, Health, RestartReason, UNHEALTHY_LIMIT};
use crate::logs::Level;
use crate::runtime::Runtime;
use crate::status::Phase;

impl<R: Runtime> ServerTask<R> {
    pub(super) async fn check_health(&mut self) {
        let Some(endpoint) = self.live_endpoint() else {
            return;
        };
        let answer = self
            .ctx
            .runtime
            .probe(&self.ctx.health, &endpoint, Duration::from_secs(2))
            .await;
        let Some(live) = self.state.live.as_ref() else {
            return;
        };
        let idle_timeout = self
            .state
            .applied
            .as_ref()
            .and_then(|s| s.idle_timeout)
            .map(|t| t.get());
        let healthy_for = live.healthy_for();
        let verdict = decide::judge_health(
            &answer,
            live.health_failures,
            idle_timeout,
            healthy_for.unwrap_or_default(),
            SystemTime::now(),
        );
        let error = answer.err().map(|err| err.to_string()).unwrap_or_default();
        match verdict {
            Health::Fine => {
                if live.health_failures > 0 {
                    self.event(Level::Info, "health check passes again");
                }
                if decide::recovered(healthy_for) {
                    self.state.failures = Default::default();
                }
                let note = self.limits_note();
                if let Some(live) = self.state.live.as_mut() {
                    live.health_failures = 0;
                }
                if self.state.phase == Phase::Starting {
                    self.state.phase = Phase::Running;
                    self.state.message = note;
                }
                self.publish();
            }
            Health::Idle => self.cull_idle().await,
            Health::Unknown => self.event(Level::Warn, format!("health check skipped: {error}")),
            Health::Failing(failures) => {
                if let Some(live) = self.state.live.as_mut() {
                    live.health_failures = failures;
                }
                self.event(
                    Level::Warn,
                    format!("health check failed ({failures}/{UNHEALTHY_LIMIT}): {error}"),
                );
            }
            Health::Unhealthy => {
                self.event(
                    Level::Warn,
                    format!("health check failed ({UNHEALTHY_LIMIT}/{UNHEALTHY_LIMIT}): {error}"),
                );
                count_restart(RestartReason::Unhealthy);
                self.stop("unhealthy", None).await;
                self.fail(
                    format!("restarted after {UNHEALTHY_LIMIT} failed health checks: {error}"),
                    true,
                );
            }
        }
    }

    /// Stops an idle server and keeps it down until its spec changes.
    async fn cull_idle(&mut self) {
        let limit = self
            .state
            .applied
            .as_ref()
            .and_then(|s| s.idle_timeout)
            .unwrap_or_default();
        let message = format!(
            "stopped after {limit} without a connected browser; it starts again when its spec changes"
        );
        self.event(Level::Info, message.clone());
        crate::metrics::METRICS.controller.culls.inc();
        self.stop("idle", Some(message)).await;
        self.state.halted_revision = self.state.applied.as_ref().map(|s| s.revision.clone());
        self.publish();
    }
}
