//! Recovery after devbox's own restart, in one place: what the previous devbox left
//! running is found, taken over, or ended.
//!
//! - When devbox starts, before any instance is started, [`sweep_unrecorded`] ends the
//!   instances no status records (that devbox died between starting them and
//!   recording them: no spec can claim them, and they hold resources).
//! - Each server's task then begins with [`decide`](crate::controller::decide)'s
//!   `Adopt`: the instance its status records is taken over when it still runs (same
//!   instance, same port, no restart), or cleaned up after when it ended while devbox
//!   was away; the restart policy then applies as to any stopped server.
//!
//! - Before the API serves (from `Controller::new`), the recorded instances keep their
//!   ports ([`claim_recorded_ports`]), so that no new spec is given one meanwhile, and
//!   the proxy gets the passwords of those that ask for one
//!   ([`recall_recorded_passwords`]).

use std::collections::HashSet;

use tokio::time::Instant;

use super::ServerTask;
use super::password::recorded_password;
use super::state::Live;
use crate::controller::ports::PortAllocator;
use crate::instance_auth::{InstancePassword, InstancePasswords};
use crate::logs::Level;
use crate::metrics::METRICS;
use crate::runtime::Runtime;
use crate::status::{Phase, StatusStore, server_dir};

/// Ends the instances of this devbox (its state dir) that no status records.
pub(in crate::controller) async fn sweep_unrecorded<R: Runtime>(
    runtime: &R,
    statuses: &StatusStore,
) {
    let recorded: HashSet<String> = statuses
        .filter_map_all(|status| Some(status.instance.as_ref()?.tag().to_owned()))
        .into_iter()
        .collect();
    let owner = super::instance_owner(statuses.state_dir());
    for tag in runtime.sweep_unrecorded(&owner, &recorded).await {
        tracing::warn!(instance = %tag, "killed an instance no status recorded (devbox had died while starting it)");
    }
}

/// Keeps the ports of recorded instances with their servers. Claimed before the API
/// serves, not only when each server's task adopts its instance: the spec writer picks
/// free ports from the first request on, and tasks of other servers start while
/// adoption runs, so a port claimed later could be handed out twice meanwhile.
pub(in crate::controller) fn claim_recorded_ports(statuses: &StatusStore, ports: &PortAllocator) {
    for status in statuses.list() {
        if let (Some(port), Some(_)) = (status.port, &status.instance) {
            ports.claim(&status.name, port);
        }
    }
}

/// Hands the proxy the passwords of the recorded instances that ask for one, from
/// devbox's copies. Called before the API serves: the proxy forwards to a recorded
/// instance from its first request, before that server's task has adopted it, and
/// without the password it would pass code-server's login page on to the browser.
pub(in crate::controller) fn recall_recorded_passwords(
    statuses: &StatusStore,
    passwords: &InstancePasswords,
) {
    for status in statuses.list() {
        let Some(record) = &status.instance else {
            continue;
        };
        let dir = server_dir(statuses.state_dir(), &status.name);
        if let Some(password) = recorded_password(&dir, record) {
            passwords.set(
                &status.name,
                InstancePassword {
                    instance: record.tag().to_owned(),
                    password,
                },
            );
        }
    }
}

impl<R: Runtime> ServerTask<R> {
    /// Takes over the instance an earlier devbox recorded, or cleans up after it.
    pub(super) async fn adopt_recorded(&mut self) {
        let Some(recorded) = self.state.recorded.take() else {
            return;
        };
        let port = self
            .state
            .port
            .map_or_else(|| "?".to_owned(), |p| p.to_string());
        let what = recorded.record.describe();
        match self.ctx.runtime.adopt(&recorded.record).await {
            Some(instance) => {
                self.recall_password(&instance.record);
                self.state.live = Some(Live {
                    instance,
                    // Unknown (a status from before hashes were recorded): the spec is
                    // then applied anew by a restart.
                    applied_hash: recorded.applied_hash.unwrap_or_default(),
                    healthy_since: Some(Instant::now()),
                    health_failures: 0,
                });
                if self.state.phase != Phase::Running {
                    self.state.phase = Phase::Starting;
                }
                self.start_tail();
                METRICS.controller.adoptions.inc();
                self.event(
                    Level::Info,
                    format!("adopted running {what} on port {port}"),
                );
            }
            None => {
                self.ctx.passwords.remove(self.name());
                self.ctx.runtime.clean_up(&recorded.record).await;
                self.ctx.ports.release(self.name());
                self.state.started_at = None;
                self.state.phase = Phase::Stopped;
                self.event(Level::Warn, format!("{what} ended while devbox was away"));
            }
        }
        self.publish();
    }
}
