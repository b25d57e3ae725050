//! What the kernel says about processes, read from `/proc`: liveness with identity
//! (pid plus start time, so a reused pid is never taken for ours) and process-group
//! membership (code-server forks children; we always act on the whole group).

use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The fields of `/proc/<pid>/stat` devbox needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// One-letter state; `Z` is a zombie (dead, not yet reaped).
    pub state: char,
    pub pgrp: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
}

impl ProcStat {
    pub fn is_alive(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist.
pub fn stat(pid: u32) -> Option<ProcStat> {
    let text =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // `pid (comm) state ppid pgrp ...`: comm may hold spaces and parentheses, so split
    // after the last ')'.
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After comm: [0]=state [1]=ppid [2]=pgrp ... [19]=starttime (field 22 of the file).
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Whether the process `pid` that started at `start_ticks` is still alive.
pub fn is_same_process_alive(pid: u32, start_ticks: u64) -> bool {
    stat(pid).is_some_and(|s| s.start_ticks == start_ticks && s.is_alive())
}

/// Live (non-zombie) members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    members_by_group(&[pgid]).remove(&pgid).unwrap_or_default()
}

/// Live members of each of `pgids`, from one pass over `/proc`.
pub fn members_by_group(pgids: &[u32]) -> HashMap<u32, Vec<u32>> {
    let wanted: HashSet<u32> = pgids.iter().copied().collect();
    let mut groups: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for stat in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
    {
        if stat.is_alive() && wanted.contains(&stat.pgrp) {
            groups.entry(stat.pgrp).or_default().push(stat.pid);
        }
    }
    groups
}

/// Live processes that are in group `pgid` or carry one of the environment entries
/// `tags` (`KEY=value`), from one pass over `/proc`. `pgid` 0 matches no group.
pub fn group_or_tagged(pgid: u32, tags: &[String]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .filter(|s| s.is_alive())
        .filter(|s| (pgid != 0 && s.pgrp == pgid) || environ_has_any(s.pid, tags))
        .map(|s| s.pid)
        .collect()
}

/// `(pid, value of tag_var)` of every live process whose environment holds exactly
/// `owner_entry` (`KEY=value`) and some value of `tag_var`, from one pass over `/proc`.
pub fn tagged(tag_var: &str, owner_entry: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let tag_prefix = format!("{tag_var}=");
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|s| s.is_alive()))
        .filter_map(|pid| {
            let environ =
                std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ")).ok()?;
            let mut entries = environ.split(|b| *b == 0);
            if !entries.clone().any(|e| e == owner_entry.as_bytes()) {
                return None;
            }
            let tag = entries.find_map(|e| e.strip_prefix(tag_prefix.as_bytes()))?;
            Some((pid, String::from_utf8_lossy(tag).into_owned()))
        })
        .collect()
}

/// Whether process `pid`'s environment holds exactly the entry `entry` (`KEY=value`).
pub fn environ_has(pid: u32, entry: &str) -> bool {
    environ_has_any(pid, &[entry])
}

/// Whether process `pid`'s environment holds exactly one of `entries` (`KEY=value`).
pub fn environ_has_any(pid: u32, entries: &[impl AsRef<str>]) -> bool {
    if entries.is_empty() {
        return false;
    }
    std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ")).is_ok_and(|environ| {
        environ
            .split(|b| *b == 0)
            .any(|e| entries.iter().any(|entry| e == entry.as_ref().as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comm_with_spaces_and_parens() {
        let line =
            "1234 (node (x) y) S 1 1234 1234 0 -1 4194560 0 0 0 0 5 6 0 0 20 0 11 0 987654 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.pid, s.state, s.pgrp, s.start_ticks),
            (1234, 'S', 1234, 987654)
        );
    }

    #[test]
    fn sees_itself() {
        let me = stat(std::process::id()).unwrap();
        assert!(me.is_alive());
        assert!(is_same_process_alive(me.pid, me.start_ticks));
        assert!(!is_same_process_alive(me.pid, me.start_ticks + 1));
        assert!(group_members(me.pgrp).contains(&me.pid));
        let path = std::env::var("PATH").unwrap();
        assert!(environ_has(me.pid, &format!("PATH={path}")));
        assert!(!environ_has(me.pid, "PATH=/nowhere-at-all"));
    }
}
