//! A cgroup per instance: devbox's parent cgroup on this host, and each instance's own
//! below it, which enforces the instance's [`Resources`], holds every process it ever
//! forks (whatever session or process group they move to), ends them all at a stop,
//! tells whether the kernel killed one for memory, and gives the instance's CPU and
//! memory figures.
//!
//! Layout: `<devbox's own cgroup>/devbox-<hash of the state dir>/server-<name>` in the
//! v2 hierarchy, or in each v1 hierarchy used (memory, cpu, pids, freezer, and cpuacct
//! when mounted). `server-` keeps a server's name from ever meeting a control file
//! (`tasks`, `memory.max`). [`detect`] decides which hierarchy; the file operations
//! here are blocking but short (cgroupfs lives in the kernel), except the waits of
//! [`InstanceCgroup::kill`] and [`InstanceCgroup::remove`]: run those off the async
//! workers.

mod detect;
pub mod readings;

pub use detect::{Host, Layout, choose, locate, parent_name};

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::resources::{CPU_PERIOD_US, Resources};

/// How long a freeze, or the removal of a cgroup whose last processes are exiting, may
/// take.
const SETTLE: Duration = Duration::from_secs(2);
const SETTLE_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{value}` to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// devbox's place for instance cgroups on this host. Plain data: cloning copies a few
/// paths.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Layout,
    /// `devbox-<hash>`.
    parent: String,
}

impl Cgroups {
    /// Finds the hierarchy to use and creates devbox's parent cgroup in it (and removes
    /// empty instance cgroups a killed devbox left). `Err` says why limits cannot be
    /// enforced here (no cgroups, none writable, nothing delegated).
    pub fn set_up(state_dir: &Path) -> Result<Self, String> {
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|err| format!("cannot read {path}: {err}"))
        };
        let host = locate(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?);
        let v2_controllers = host
            .v2
            .as_ref()
            .and_then(|own| std::fs::read_to_string(own.join("cgroup.controllers")).ok());
        let layout = choose(&host, v2_controllers.as_deref())?;
        let cgroups = Self {
            layout,
            parent: parent_name(state_dir),
        };
        cgroups.create_parent().map_err(|err| err.to_string())?;
        cgroups.remove_empty_children();
        Ok(cgroups)
    }

    /// `v1` or `v2`, for messages.
    pub fn version(&self) -> &'static str {
        match self.layout {
            Layout::V1 { .. } => "v1",
            Layout::V2 { .. } => "v2",
        }
    }

    /// The parent directory in each hierarchy used, by controller (`""` for v2).
    fn parents(&self) -> BTreeMap<String, PathBuf> {
        match &self.layout {
            Layout::V2 { own } => BTreeMap::from([(String::new(), own.join(&self.parent))]),
            Layout::V1 { own } => own
                .iter()
                .map(|(controller, dir)| (controller.clone(), dir.join(&self.parent)))
                .collect(),
        }
    }

    fn create_parent(&self) -> Result<(), CgroupError> {
        if let Layout::V2 { own } = &self.layout {
            enable_v2_controllers(own, &self.parent)?;
        }
        for dir in distinct(self.parents().values()) {
            create_dir(&dir)?;
        }
        if let Layout::V2 { .. } = &self.layout {
            for dir in self.parents().values() {
                write(&dir.join("cgroup.subtree_control"), &v2_enable())?;
            }
        }
        Ok(())
    }

    /// Removes instance cgroups without processes (those of instances a killed devbox
    /// left, or whose stop could not remove them); a cgroup still holding processes
    /// cannot be removed, so live instances keep theirs.
    fn remove_empty_children(&self) {
        for parent in distinct(self.parents().values()) {
            let Ok(entries) = std::fs::read_dir(&parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with("server-") && entry.path().is_dir() {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
    }

    /// Removes devbox's parent cgroup when nothing is left in it (at shutdown).
    pub fn remove_parent(&self) {
        self.remove_empty_children();
        for dir in distinct(self.parents().values()) {
            if let Err(err) = std::fs::remove_dir(&dir)
                && err.kind() != ErrorKind::NotFound
            {
                tracing::debug!(%err, dir = %dir.display(), "devbox's cgroup stays");
            }
        }
    }

    /// A fresh cgroup for `server`'s next instance, with `limits` written. A cgroup
    /// left from an earlier instance of it is emptied and replaced, so that its
    /// counters (OOM kills) start at zero.
    pub fn create(&self, server: &str, limits: &Resources) -> Result<InstanceCgroup, CgroupError> {
        let leaf = format!("server-{server}");
        let cgroup = match &self.layout {
            Layout::V2 { own } => InstanceCgroup::V2 {
                dir: own.join(&self.parent).join(&leaf),
            },
            Layout::V1 { .. } => InstanceCgroup::V1 {
                dirs: self
                    .parents()
                    .into_iter()
                    .map(|(controller, dir)| (controller, dir.join(&leaf)))
                    .collect(),
            },
        };
        if cgroup.dirs().iter().any(|dir| dir.exists()) {
            cgroup.kill();
            cgroup.remove()?;
        }
        for dir in cgroup.dirs() {
            create_dir(&dir)?;
        }
        if let Err(err) = cgroup.limit(limits) {
            let _ = cgroup.remove();
            return Err(err);
        }
        Ok(cgroup)
    }
}

/// `+memory +cpu +pids`.
fn v2_enable() -> String {
    detect::V2_CONTROLLERS
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Enables the controllers for devbox's own v2 cgroup's children. cgroup v2 allows
/// that only in a cgroup without processes of its own ("no internal processes"), and
/// devbox itself sits in it (a systemd service with `Delegate=yes`): then devbox moves
/// itself into a leaf of its own, `<parent>.self`, first, as systemd documents for
/// delegated services.
fn enable_v2_controllers(own: &Path, parent: &str) -> Result<(), CgroupError> {
    let control = own.join("cgroup.subtree_control");
    match write(&control, &v2_enable()) {
        Err(CgroupError::Write { source, .. })
            if source.raw_os_error() == Some(nix::libc::EBUSY) =>
        {
            let leaf = own.join(format!("{parent}.self"));
            create_dir(&leaf)?;
            write(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
            write(&control, &v2_enable())
        }
        other => other,
    }
}

/// One instance's cgroup, as recorded in its [`crate::status::ProcessRecord`] so that a
/// restarted devbox adopts the instance with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum InstanceCgroup {
    #[serde(rename = "v2")]
    V2 { dir: PathBuf },
    /// Controller → the instance's directory in that hierarchy.
    #[serde(rename = "v1")]
    V1 { dirs: BTreeMap<String, PathBuf> },
}

impl InstanceCgroup {
    /// Every directory of this cgroup, each once (co-mounted controllers share one).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            InstanceCgroup::V2 { dir } => vec![dir.clone()],
            InstanceCgroup::V1 { dirs } => distinct(dirs.values()),
        }
    }

    /// The directory of `controller` (every controller's, in v2).
    fn dir(&self, controller: &str) -> Option<&Path> {
        match self {
            InstanceCgroup::V2 { dir } => Some(dir),
            InstanceCgroup::V1 { dirs } => dirs.get(controller).map(PathBuf::as_path),
        }
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(controller)?.join(file)).ok()
    }

    /// Writes `limits` (a fresh cgroup is unlimited: only the limits set are written).
    fn limit(&self, limits: &Resources) -> Result<(), CgroupError> {
        let at = |controller: &str, file: &str| self.dir(controller).map(|d| d.join(file));
        let v2 = matches!(self, InstanceCgroup::V2 { .. });
        if let Some(memory) = limits.memory {
            let bytes = memory.0.to_string();
            let (limit, swap, swap_value) = if v2 {
                ("memory.max", "memory.swap.max", "0".to_owned())
            } else {
                (
                    "memory.limit_in_bytes",
                    "memory.memsw.limit_in_bytes",
                    bytes.clone(),
                )
            };
            if let Some(path) = at("memory", limit) {
                write(&path, &bytes)?;
            }
            // Without swap accounting the limit would only push memory to swap; not
            // every kernel has it (no file, or swap accounting off): best effort.
            if let Some(path) = at("memory", swap)
                && path.exists()
            {
                let _ = write(&path, &swap_value);
            }
        }
        if let Some(cpus) = limits.cpus {
            if v2 {
                if let Some(path) = at("cpu", "cpu.max") {
                    write(&path, &format!("{} {CPU_PERIOD_US}", cpus.quota_us()))?;
                }
            } else {
                if let Some(path) = at("cpu", "cpu.cfs_period_us") {
                    write(&path, &CPU_PERIOD_US.to_string())?;
                }
                if let Some(path) = at("cpu", "cpu.cfs_quota_us") {
                    write(&path, &cpus.quota_us().to_string())?;
                }
            }
        }
        if let Some(pids) = limits.pids
            && let Some(path) = at("pids", "pids.max")
        {
            write(&path, &pids.to_string())?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files of this cgroup, opened for writing (close-on-exec).
    /// A child about to exec writes `0` to each (see [`join`]): it joins the cgroup
    /// before its first instruction, so everything it forks is born inside.
    pub fn procs_files(&self) -> Result<Vec<File>, CgroupError> {
        self.dirs()
            .into_iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|source| CgroupError::Open { path, source })
            })
            .collect()
    }

    /// Live processes in the cgroup (in any of its v1 hierarchies).
    pub fn procs(&self) -> Vec<u32> {
        let mut pids = BTreeSet::new();
        for dir in self.dirs() {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        pids.into_iter().collect()
    }

    /// Sends `signal` to every process of the cgroup.
    pub fn signal(&self, signal: Signal) {
        for pid in self.procs() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// Kills every process of the cgroup at once, so that none can fork a successor
    /// meanwhile: v2 `cgroup.kill` (Linux 5.14), otherwise freeze, SIGKILL each, thaw.
    /// Blocking (a freeze takes a moment).
    pub fn kill(&self) {
        match self {
            InstanceCgroup::V2 { dir } => {
                let kill_file = dir.join("cgroup.kill");
                if kill_file.exists() && write(&kill_file, "1").is_ok() {
                    return;
                }
                let freeze = dir.join("cgroup.freeze");
                let frozen = write(&freeze, "1").is_ok();
                if frozen {
                    settle(|| {
                        std::fs::read_to_string(dir.join("cgroup.events"))
                            .is_ok_and(|events| readings::keyed(&events, "frozen") == Some(1))
                    });
                }
                self.signal(Signal::SIGKILL);
                if frozen {
                    let _ = write(&freeze, "0");
                }
            }
            InstanceCgroup::V1 { dirs } => {
                let state = dirs.get("freezer").map(|dir| dir.join("freezer.state"));
                let frozen = state
                    .as_ref()
                    .is_some_and(|state| write(state, "FROZEN").is_ok());
                if let Some(state) = state.as_ref().filter(|_| frozen) {
                    settle(|| std::fs::read_to_string(state).is_ok_and(|s| s.trim() == "FROZEN"));
                }
                self.signal(Signal::SIGKILL);
                if let Some(state) = state.filter(|_| frozen) {
                    let _ = write(&state, "THAWED");
                }
            }
        }
    }

    /// Removes the cgroup, waiting briefly for exiting processes to leave it.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            let deadline = Instant::now() + SETTLE;
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(err) if err.kind() == ErrorKind::NotFound => break,
                    Err(err)
                        if err.raw_os_error() == Some(nix::libc::EBUSY)
                            && Instant::now() < deadline =>
                    {
                        std::thread::sleep(SETTLE_POLL);
                    }
                    Err(source) => return Err(CgroupError::Remove { path: dir, source }),
                }
            }
        }
        Ok(())
    }

    /// Whether the kernel killed a process of this instance for memory, and the
    /// reason to show for it (`out of memory (limit 2 GiB)`).
    pub fn oom_reason(&self, ended_by_sigkill: bool) -> Option<String> {
        let (counters, limit_file) = match self {
            InstanceCgroup::V2 { .. } => ("memory.events", "memory.max"),
            InstanceCgroup::V1 { .. } => ("memory.oom_control", "memory.limit_in_bytes"),
        };
        let counters = self.read("memory", counters)?;
        let failcnt = self
            .read("memory", "memory.failcnt")
            .and_then(|t| t.trim().parse().ok());
        if !readings::oom_killed(&counters, failcnt, ended_by_sigkill) {
            return None;
        }
        let limit = self
            .read("memory", limit_file)
            .and_then(|t| readings::limit(&t));
        Some(readings::oom_reason(limit))
    }

    /// CPU time used so far and memory in use now.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            InstanceCgroup::V2 { .. } => {
                let usage = self.read("memory", "memory.current")?.trim().parse().ok()?;
                let stat = self.read("memory", "memory.stat").unwrap_or_default();
                Some(Usage {
                    cpu_ns: self
                        .read("cpu", "cpu.stat")
                        .and_then(|t| readings::keyed(&t, "usage_usec"))
                        .map(|us| us.saturating_mul(1000)),
                    memory_bytes: readings::working_set(usage, &stat, "inactive_file"),
                })
            }
            InstanceCgroup::V1 { .. } => {
                let usage = self
                    .read("memory", "memory.usage_in_bytes")?
                    .trim()
                    .parse()
                    .ok()?;
                let stat = self.read("memory", "memory.stat").unwrap_or_default();
                Some(Usage {
                    cpu_ns: self
                        .read("cpuacct", "cpuacct.usage")
                        .and_then(|t| t.trim().parse().ok()),
                    memory_bytes: readings::working_set(usage, &stat, "total_inactive_file"),
                })
            }
        }
    }
}

/// What an instance's cgroup has used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// CPU time since the cgroup was created, when the host accounts it.
    pub cpu_ns: Option<u64>,
    pub memory_bytes: u64,
}

/// In the child between fork and exec: joins the cgroup through its `procs_files`.
/// Only a `write(2)` per file (async-signal-safe: no allocation, no lock).
pub fn join(procs_files: &[File]) -> std::io::Result<()> {
    use std::io::Write;
    for mut file in procs_files {
        // `0` is "the writing process", in v1 and v2 alike.
        file.write_all(b"0")?;
    }
    Ok(())
}

fn distinct<'a>(dirs: impl Iterator<Item = &'a PathBuf>) -> Vec<PathBuf> {
    dirs.cloned().collect::<BTreeSet<_>>().into_iter().collect()
}

fn create_dir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// Polls `done` until it holds or [`SETTLE`] passes.
fn settle(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(SETTLE_POLL);
    }
}
