//! CPU and memory of running servers, summed over each server's whole process group.
//!
//! A sampler task refreshes the numbers of running servers every few seconds with
//! sysinfo (CPU % needs two samples apart in time); readers such as `GET /servers` only
//! copy the latest figures out of a map, so listing servers never waits on `/proc`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::runtime::procfs;

/// Resource use of one server.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// Percent of one core (can exceed 100 with several busy threads).
    pub cpu_percent: f64,
    pub memory_mb: f64,
}

/// Latest usage per server name. Cloning shares the map.
#[derive(Clone, Default)]
pub struct Metrics {
    latest: Arc<RwLock<HashMap<String, Usage>>>,
    /// Bumped whenever the figures change.
    generation: Arc<AtomicU64>,
}

impl Metrics {
    pub fn get(&self, name: &str) -> Option<Usage> {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }

    /// A number that changes whenever the figures change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn replace(&self, usage: HashMap<String, Usage>) {
        let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
        if *latest != usage {
            *latest = usage;
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Samples forever: every `interval`, the groups that `groups()` names (server name →
    /// process group id, for running servers only).
    pub async fn run(
        self,
        interval: Duration,
        groups: impl Fn() -> Vec<(String, u32)> + Send + 'static,
    ) {
        let mut system = match System::new() {
            Ok(system) => system,
            Err(err) => {
                tracing::warn!(%err, "cannot read process statistics; CPU and memory will show 0");
                return;
            }
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let groups = groups();
            if groups.is_empty() {
                self.replace(HashMap::new());
                continue;
            }
            self.replace(sample(&mut system, &groups));
        }
    }
}

/// One sample of the given groups, refreshing only their processes.
pub fn sample(system: &mut System, groups: &[(String, u32)]) -> HashMap<String, Usage> {
    let pgids: Vec<u32> = groups.iter().map(|(_, pgid)| *pgid).collect();
    let mut by_group = procfs::members_by_group(&pgids);
    let members: Vec<(String, Vec<u32>)> = groups
        .iter()
        .map(|(name, pgid)| (name.clone(), by_group.remove(pgid).unwrap_or_default()))
        .collect();
    let pids: Vec<Pid> = members
        .iter()
        .flat_map(|(_, m)| m.iter().map(|p| Pid::from_u32(*p)))
        .collect();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&pids),
        true,
        ProcessRefreshKind::nothing().with_cpu().with_memory(),
    );
    members
        .into_iter()
        .map(|(name, pids)| {
            let mut usage = Usage::default();
            for pid in pids {
                if let Some(process) = system.process(Pid::from_u32(pid)) {
                    usage.cpu_percent += f64::from(process.cpu_usage());
                    usage.memory_mb += process.memory() as f64 / (1024.0 * 1024.0);
                }
            }
            usage.cpu_percent = (usage.cpu_percent * 10.0).round() / 10.0;
            usage.memory_mb = (usage.memory_mb * 10.0).round() / 10.0;
            (name, usage)
        })
        .collect()
}
