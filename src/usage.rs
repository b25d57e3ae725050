//! CPU and memory of running servers: read from each instance's cgroup when it has
//! one (every process it ever forked, wherever it went), else summed over its process
//! group; for a Slurm job, from `sstat` (memory is then the job's peak, MaxRSS, as
//! Slurm keeps no other figure without an accounting database).
//!
//! A sampler task refreshes the numbers of running servers every few seconds (CPU %
//! needs two samples apart in time): from the cgroup's counters, or with sysinfo;
//! readers such as `GET /servers` only copy the latest figures out of a map, so listing
//! servers never waits on `/proc`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::runtime::cgroup::InstanceCgroup;
use crate::runtime::procfs;

/// A running server to sample.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub name: String,
    pub source: Source,
}

/// Where a server's figures come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A local process group, and its cgroup when it has one.
    Process {
        pgid: u32,
        cgroup: Option<InstanceCgroup>,
    },
    /// A Slurm job, by id.
    SlurmJob(u64),
}

/// Slurm jobs are asked (one `sstat` each) every this many samples.
const SLURM_EVERY: u32 = 5;

/// The CPU time counter of a cgroup at the previous sample.
type CpuMarks = HashMap<String, (u64, Instant)>;

/// Resource use of one server.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// Percent of one core (can exceed 100 with several busy threads).
    pub cpu_percent: f64,
    pub memory_mb: f64,
    /// CPU time the instance has used since it started (for `/metrics`).
    pub cpu_seconds: f64,
    /// Memory in use, unrounded (for `/metrics`).
    pub memory_bytes: u64,
}

/// Latest usage per server name. Cloning shares the map.
#[derive(Clone, Default)]
pub struct UsageStore {
    latest: Arc<RwLock<HashMap<String, Usage>>>,
    /// Bumped whenever the figures change.
    generation: Arc<AtomicU64>,
}

impl UsageStore {
    /// Every server's latest figures.
    pub fn all(&self) -> HashMap<String, Usage> {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

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

    /// Samples forever: every `interval`, the servers that `running()` names.
    pub async fn run(
        self,
        interval: Duration,
        running: impl Fn() -> Vec<Sampled> + Send + 'static,
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
        let mut marks = CpuMarks::new();
        let mut cpu_floors = CpuFloors::new();
        let mut jobs_sampler = JobSampler::default();
        loop {
            tick.tick().await;
            let servers = running();
            if servers.is_empty() {
                marks.clear();
                cpu_floors.clear();
                self.replace(HashMap::new());
                continue;
            }
            let (mut in_cgroups, mut groups, mut jobs) = (Vec::new(), Vec::new(), Vec::new());
            for server in servers {
                match server.source {
                    Source::Process {
                        cgroup: Some(cgroup),
                        ..
                    } => in_cgroups.push((server.name, cgroup)),
                    Source::Process { pgid, cgroup: None } => groups.push((server.name, pgid)),
                    Source::SlurmJob(id) => jobs.push((server.name, id)),
                }
            }
            let mut usage = from_cgroups(&in_cgroups, &mut marks);
            if !jobs.is_empty() {
                usage.extend(jobs_sampler.sample(&jobs).await);
            }
            if !groups.is_empty() {
                let mut sampled = sample(&mut system, &groups);
                keep_cpu_rising(&mut sampled, &groups, &mut cpu_floors);
                usage.extend(sampled);
            }
            self.replace(usage);
        }
    }
}

/// The highest CPU time seen per server and process group (an instance without a
/// cgroup): the sum over its live processes drops when one of them ends, but the time
/// it used was used.
type CpuFloors = HashMap<(String, u32), f64>;

/// Keeps each group's CPU time from going down between samples of the same instance
/// (a new process group starts afresh), and forgets groups no longer sampled.
fn keep_cpu_rising(
    usage: &mut HashMap<String, Usage>,
    groups: &[(String, u32)],
    floors: &mut CpuFloors,
) {
    let mut seen = CpuFloors::new();
    for (name, pgid) in groups {
        let Some(figures) = usage.get_mut(name) else {
            continue;
        };
        let key = (name.clone(), *pgid);
        let floor = floors.get(&key).copied().unwrap_or(0.0);
        figures.cpu_seconds = figures.cpu_seconds.max(floor);
        seen.insert(key, figures.cpu_seconds);
    }
    *floors = seen;
}

/// One sample of servers in cgroups: memory in use now, and CPU % since the previous
/// sample of the same cgroup (`marks`; 0 at the first).
fn from_cgroups(
    servers: &[(String, InstanceCgroup)],
    marks: &mut CpuMarks,
) -> HashMap<String, Usage> {
    let now = Instant::now();
    let mut usage = HashMap::new();
    let mut seen = CpuMarks::new();
    for (name, cgroup) in servers {
        let Some(read) = cgroup.usage() else {
            continue;
        };
        let cpu_percent = match (read.cpu_ns, marks.get(name)) {
            (Some(cpu_ns), Some((before, at))) => {
                cpu_percent(cpu_ns.saturating_sub(*before), now.duration_since(*at))
            }
            _ => 0.0,
        };
        if let Some(cpu_ns) = read.cpu_ns {
            seen.insert(name.clone(), (cpu_ns, now));
        }
        let memory_mb = read.memory_bytes as f64 / (1024.0 * 1024.0);
        usage.insert(
            name.clone(),
            Usage {
                cpu_percent,
                memory_mb: (memory_mb * 10.0).round() / 10.0,
                cpu_seconds: read.cpu_ns.unwrap_or(0) as f64 / 1e9,
                memory_bytes: read.memory_bytes,
            },
        );
    }
    *marks = seen;
    usage
}

/// The figures of Slurm jobs, asked every [`SLURM_EVERY`] samples and kept between.
#[derive(Default)]
struct JobSampler {
    ticks: u32,
    /// CPU seconds of each job at its previous answer.
    marks: HashMap<u64, (f64, Instant)>,
    latest: HashMap<u64, Usage>,
}

impl JobSampler {
    async fn sample(&mut self, jobs: &[(String, u64)]) -> HashMap<String, Usage> {
        if self.ticks.is_multiple_of(SLURM_EVERY) {
            let slurm = crate::runtime::slurm::Slurm::new(Default::default());
            for (_, id) in jobs {
                let Ok(Some(read)) = slurm.usage(crate::runtime::slurm::JobId(*id)).await else {
                    continue;
                };
                let now = Instant::now();
                let cpu_percent = match self.marks.get(id) {
                    Some((before, at)) => {
                        let used = (read.cpu_seconds - before).max(0.0);
                        cpu_percent((used * 1e9) as u64, now.duration_since(*at))
                    }
                    None => 0.0,
                };
                self.marks.insert(*id, (read.cpu_seconds, now));
                let memory_mb = read.memory_bytes as f64 / (1024.0 * 1024.0);
                self.latest.insert(
                    *id,
                    Usage {
                        cpu_percent,
                        memory_mb: (memory_mb * 10.0).round() / 10.0,
                        cpu_seconds: read.cpu_seconds,
                        memory_bytes: read.memory_bytes,
                    },
                );
            }
            let live: std::collections::HashSet<u64> = jobs.iter().map(|(_, id)| *id).collect();
            self.marks.retain(|id, _| live.contains(id));
            self.latest.retain(|id, _| live.contains(id));
        }
        self.ticks = self.ticks.wrapping_add(1);
        jobs.iter()
            .filter_map(|(name, id)| Some((name.clone(), *self.latest.get(id)?)))
            .collect()
    }
}

/// Percent of one core that `used` CPU time over `elapsed` is, to one decimal.
fn cpu_percent(used_ns: u64, elapsed: Duration) -> f64 {
    let elapsed_ns = elapsed.as_nanos() as f64;
    if elapsed_ns <= 0.0 {
        return 0.0;
    }
    (used_ns as f64 / elapsed_ns * 1000.0).round() / 10.0
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
                    usage.memory_bytes += process.memory();
                    // Of the processes alive now; see `keep_cpu_rising` for those gone.
                    usage.cpu_seconds += process.accumulated_cpu_time() as f64 / 1000.0;
                }
            }
            usage.cpu_percent = (usage.cpu_percent * 10.0).round() / 10.0;
            let memory_mb = usage.memory_bytes as f64 / (1024.0 * 1024.0);
            usage.memory_mb = (memory_mb * 10.0).round() / 10.0;
            (name, usage)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_of_an_instance_never_goes_down() {
        let groups = vec![("a".to_owned(), 10)];
        let mut floors = CpuFloors::new();
        let figures = |cpu_seconds| {
            HashMap::from([(
                "a".to_owned(),
                Usage {
                    cpu_seconds,
                    ..Usage::default()
                },
            )])
        };
        let mut usage = figures(900.0);
        keep_cpu_rising(&mut usage, &groups, &mut floors);
        // A build in the terminal ended: its processes' time leaves the sum.
        let mut usage = figures(40.0);
        keep_cpu_rising(&mut usage, &groups, &mut floors);
        assert_eq!(usage["a"].cpu_seconds, 900.0);
        // A new instance (another process group) starts from its own figure.
        let mut usage = figures(1.0);
        keep_cpu_rising(&mut usage, &[("a".to_owned(), 11)], &mut floors);
        assert_eq!(usage["a"].cpu_seconds, 1.0);
    }

    #[test]
    fn cpu_time_over_wall_time_is_percent_of_one_core() {
        assert_eq!(cpu_percent(1_500_000_000, Duration::from_secs(1)), 150.0);
        assert_eq!(cpu_percent(123_456_789, Duration::from_secs(2)), 6.2);
        assert_eq!(cpu_percent(5, Duration::ZERO), 0.0);
    }
}
