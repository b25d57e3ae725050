//! What a cgroup's files say, as plain functions of their text: the OOM kill counter,
//! the memory limit, the usage figures, and the reason a server shows when the kernel
//! killed it for memory.

use crate::resources::ByteSize;

/// The value of `key` in a flat-keyed cgroup file (`memory.events`,
/// `memory.oom_control`, `memory.stat`, `cpu.stat`: one `key value` per line).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

/// A limit file (`memory.max`, `memory.limit_in_bytes`): `None` when unlimited (`max`
/// in v2; v1 writes a number near 2^63 rounded to the page size).
pub fn limit(text: &str) -> Option<u64> {
    let value: u64 = text.trim().parse().ok()?;
    (value < 1 << 62).then_some(value)
}

/// Whether the kernel killed a process of the cgroup for memory: its `oom_kill`
/// counter (v2 `memory.events`, v1 `memory.oom_control` since Linux 4.13) is above
/// zero. Older v1 kernels have no counter: then a limit that was hit (`failcnt`) and
/// an instance ended by SIGKILL say it.
pub fn oom_killed(counters: &str, failcnt: Option<u64>, ended_by_sigkill: bool) -> bool {
    match keyed(counters, "oom_kill") {
        Some(kills) => kills > 0,
        None => ended_by_sigkill && failcnt.is_some_and(|hits| hits > 0),
    }
}

/// What a server killed for memory shows: `out of memory (limit 2 GiB)`.
pub fn oom_reason(limit: Option<u64>) -> String {
    match limit {
        Some(bytes) => format!("out of memory (limit {})", ByteSize(bytes)),
        None => "out of memory".to_owned(),
    }
}

/// Memory in use that the kernel could not simply drop: usage minus inactive file
/// cache (what `docker stats` and the kubelet call the working set).
pub fn working_set(usage: u64, stat: &str, inactive_key: &str) -> u64 {
    usage.saturating_sub(keyed(stat, inactive_key).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_reason_names_the_limit() {
        assert_eq!(
            oom_reason(Some(2 << 30)),
            "out of memory (limit 2 GiB)".to_owned()
        );
        assert_eq!(oom_reason(Some(256 << 20)), "out of memory (limit 256 MiB)");
        assert_eq!(oom_reason(None), "out of memory");
    }

    #[test]
    fn oom_kills_are_counted_in_v1_and_v2() {
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert!(oom_killed(v2, None, false));
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n";
        assert!(
            !oom_killed(v1, Some(40), true),
            "hit the limit, nobody killed"
        );
        let old_v1 = "oom_kill_disable 0\nunder_oom 0\n";
        assert!(oom_killed(old_v1, Some(3), true));
        assert!(!oom_killed(old_v1, Some(3), false));
        assert!(!oom_killed(old_v1, Some(0), true));
    }

    #[test]
    fn limits_and_usage() {
        assert_eq!(limit("268435456\n"), Some(256 << 20));
        assert_eq!(limit("max\n"), None);
        assert_eq!(limit("9223372036854771712\n"), None);
        let stat = "cache 10\ntotal_inactive_file 4096\ninactive_file 1024\n";
        assert_eq!(working_set(10_000, stat, "total_inactive_file"), 5904);
        assert_eq!(working_set(100, stat, "total_inactive_file"), 0);
        assert_eq!(
            keyed("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            Some(1500)
        );
    }
}
