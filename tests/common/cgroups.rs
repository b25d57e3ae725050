//! A server's cgroup as its status file records it, and the processes in it.

use std::path::{Path, PathBuf};

use super::Devbox;
use super::procs::live_processes;

/// The directories of server `name`'s cgroup, by controller (`""` for v2), from its
/// status file.
pub fn cgroup_dirs(devbox: &Devbox, name: &str) -> Vec<(String, PathBuf)> {
    let status = devbox.status(name).expect("status");
    let cgroup = &status["instance"]["cgroup"];
    match cgroup["version"].as_str() {
        Some("v2") => vec![(
            String::new(),
            PathBuf::from(cgroup["dir"].as_str().expect("dir")),
        )],
        Some("v1") => cgroup["dirs"]
            .as_object()
            .expect("dirs")
            .iter()
            .map(|(controller, dir)| {
                (
                    controller.clone(),
                    PathBuf::from(dir.as_str().expect("dir")),
                )
            })
            .collect(),
        _ => panic!(
            "no cgroup recorded for {name}: {status}\n{}",
            devbox.log_tail()
        ),
    }
}

/// The cgroup file `file` of `controller` (any directory in v2).
pub fn cgroup_file(dirs: &[(String, PathBuf)], controller: &str, file: &str) -> String {
    let dir = dirs
        .iter()
        .find(|(c, _)| c.is_empty() || c == controller)
        .map(|(_, dir)| dir)
        .unwrap_or_else(|| panic!("no {controller} cgroup in {dirs:?}"));
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|err| panic!("{}: {err}", dir.join(file).display()))
        .trim()
        .to_owned()
}

pub fn procs_of(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Live processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    live_processes()
        .into_iter()
        .filter(|p| p.cmdline().contains(needle))
        .map(|p| p.pid)
        .collect()
}
