//! [`Backends`]: the runtime `devbox serve` runs with. Each instance goes to the
//! backend its spec names (`spec.runtime`, else `runtime.default`); everything after
//! the start goes where the instance's record is tagged to come from.

use std::collections::HashSet;
use std::time::Duration;

use super::process::ProcessRuntime;
use super::slurm::SlurmRuntime;
use super::{Backend, ExitInfo, Instance, LaunchPlan, Runtime, RuntimeError};
use crate::status::InstanceRecord;

#[derive(Clone)]
pub struct Backends {
    pub local: ProcessRuntime,
    pub slurm: SlurmRuntime,
    /// Whether this devbox uses Slurm at all (its config names it): only then is the
    /// cluster asked for unrecorded jobs when devbox starts, so that a laptop with
    /// Slurm's tools but no cluster does not wait for a controller that never answers.
    pub slurm_in_use: bool,
}

impl Runtime for Backends {
    async fn start(&self, plan: &LaunchPlan) -> Result<Instance, RuntimeError> {
        match plan.backend {
            Backend::Local => self.local.start(plan).await,
            Backend::Slurm => self.slurm.start(plan).await,
        }
    }

    async fn stop(&self, record: &InstanceRecord, grace: Duration) -> Result<(), RuntimeError> {
        match record {
            InstanceRecord::Local(_) => self.local.stop(record, grace).await,
            InstanceRecord::Slurm(_) => self.slurm.stop(record, grace).await,
        }
    }

    async fn adopt(&self, record: &InstanceRecord) -> Option<Instance> {
        match record {
            InstanceRecord::Local(_) => self.local.adopt(record).await,
            InstanceRecord::Slurm(_) => self.slurm.adopt(record).await,
        }
    }

    async fn clean_up(&self, record: &InstanceRecord) {
        match record {
            InstanceRecord::Local(_) => self.local.clean_up(record).await,
            InstanceRecord::Slurm(_) => self.slurm.clean_up(record).await,
        }
    }

    async fn sweep_unrecorded(&self, owner: &str, recorded: &HashSet<String>) -> Vec<String> {
        let mut ended = self.local.sweep_unrecorded(owner, recorded).await;
        if self.slurm_in_use {
            ended.extend(self.slurm.sweep_unrecorded(owner, recorded).await);
        }
        ended
    }

    fn limits_unenforced(&self, backend: Backend) -> Option<&str> {
        match backend {
            Backend::Local => self.local.limits_unenforced(backend),
            Backend::Slurm => self.slurm.limits_unenforced(backend),
        }
    }

    fn exit_reason(&self, record: &InstanceRecord, exit: ExitInfo) -> Option<String> {
        match record {
            InstanceRecord::Local(_) => self.local.exit_reason(record, exit),
            InstanceRecord::Slurm(_) => self.slurm.exit_reason(record, exit),
        }
    }

    fn shut_down(&self) {
        self.local.shut_down();
    }
}
