//! Which cgroup hierarchy devbox can put instances in, decided from text: the mount
//! table (`/proc/self/mountinfo`), devbox's own place in it (`/proc/self/cgroup`), and
//! the controllers cgroup v2 offers there. Pure functions; the caller reads the files.
//!
//! cgroup v2 wins when devbox's own v2 cgroup offers the memory, cpu and pids
//! controllers (a delegated subtree, as systemd's `Delegate=yes` gives). Otherwise v1
//! serves when the memory, cpu, pids and freezer controllers are mounted (hybrid hosts
//! mount an empty v2 hierarchy beside them, as this kind of machine does). Instances go
//! below devbox's own cgroup in each hierarchy, so that limits set on devbox itself
//! still hold for them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Controllers cgroup v2 must offer.
pub const V2_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// Controllers cgroup v1 must have mounted (the freezer makes a stop total).
pub const V1_CONTROLLERS: [&str; 4] = ["memory", "cpu", "pids", "freezer"];
/// Used when mounted: CPU time for the metrics.
pub const V1_OPTIONAL: [&str; 1] = ["cpuacct"];

/// Where devbox itself sits in each hierarchy mounted on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// devbox's own cgroup directory in the v2 hierarchy, when one is mounted.
    pub v2: Option<PathBuf>,
    /// devbox's own cgroup directory per v1 controller that is mounted.
    pub v1: BTreeMap<String, PathBuf>,
}

/// The hierarchy chosen, with devbox's own cgroup directories in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    V2 {
        own: PathBuf,
    },
    /// Controller → devbox's own directory in its hierarchy (co-mounted controllers,
    /// such as `cpu,cpuacct`, share one).
    V1 {
        own: BTreeMap<String, PathBuf>,
    },
}

/// One cgroup mount from the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    /// The cgroup path mounted there (`/` unless a namespace or bind mount says else).
    root: String,
    /// `None` for cgroup2; the controllers of a v1 mount.
    controllers: Option<Vec<String>>,
}

/// The cgroup mounts of a `/proc/self/mountinfo` text.
fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let head: Vec<&str> = head.split(' ').collect();
            let mut tail = tail.split(' ');
            let fstype = tail.next()?;
            let _source = tail.next()?;
            let options = tail.next().unwrap_or_default();
            let root = unescape(head.get(3)?);
            let point = PathBuf::from(unescape(head.get(4)?));
            let controllers = match fstype {
                "cgroup2" => None,
                "cgroup" => Some(
                    options
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                        .map(str::to_owned)
                        .collect(),
                ),
                _ => return None,
            };
            Some(Mount {
                point,
                root,
                controllers,
            })
        })
        .collect()
}

/// The mount table writes spaces and a few other bytes as `\ooo`.
fn unescape(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|digits| {
            bytes[i] == b'\\'
                && digits
                    .iter()
                    .all(|d| (b'0'..=b'3').contains(&digits[0]) && (b'0'..=b'7').contains(d))
        });
        if let Some(digits) = octal {
            out.push(digits.iter().fold(0u8, |value, d| value * 8 + (d - b'0')));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `dir` of the hierarchy mounted at `mount`, for the cgroup path `path` from
/// `/proc/self/cgroup`.
fn own_dir(mount: &Mount, path: &str) -> Option<PathBuf> {
    let relative = if mount.root == "/" {
        path.trim_start_matches('/')
    } else {
        path.strip_prefix(&mount.root)?.trim_start_matches('/')
    };
    Some(if relative.is_empty() {
        mount.point.clone()
    } else {
        mount.point.join(relative)
    })
}

/// Where devbox sits in every cgroup hierarchy mounted, from the texts of
/// `/proc/self/mountinfo` and `/proc/self/cgroup`.
pub fn locate(mountinfo: &str, proc_cgroup: &str) -> Host {
    let mounts = mounts(mountinfo);
    let mut host = Host::default();
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            host.v2 = mounts
                .iter()
                .find(|m| m.controllers.is_none())
                .and_then(|m| own_dir(m, path));
            continue;
        }
        for controller in controllers.split(',') {
            let mount = mounts.iter().find(|m| {
                m.controllers
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c == controller))
            });
            if let Some(dir) = mount.and_then(|m| own_dir(m, path)) {
                host.v1.insert(controller.to_owned(), dir);
            }
        }
    }
    host
}

/// Chooses v2 or v1 for `host`; `v2_controllers` is the text of `cgroup.controllers`
/// in devbox's own v2 cgroup, when there is one. `Err` says what is missing.
pub fn choose(host: &Host, v2_controllers: Option<&str>) -> Result<Layout, String> {
    let offered: Vec<&str> = v2_controllers
        .map(|text| text.split_whitespace().collect())
        .unwrap_or_default();
    if let Some(own) = &host.v2
        && V2_CONTROLLERS.iter().all(|c| offered.contains(c))
    {
        return Ok(Layout::V2 { own: own.clone() });
    }
    let missing: Vec<&str> = V1_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !host.v1.contains_key(*c))
        .collect();
    if missing.is_empty() {
        let own = V1_CONTROLLERS
            .iter()
            .chain(&V1_OPTIONAL)
            .filter_map(|c| Some((c.to_string(), host.v1.get(*c)?.clone())))
            .collect();
        return Ok(Layout::V1 { own });
    }
    let v2 = match &host.v2 {
        Some(own) => {
            let lacking: Vec<&str> = V2_CONTROLLERS
                .iter()
                .copied()
                .filter(|c| !offered.contains(c))
                .collect();
            format!(
                "cgroup v2 at {} lacks the {} controller(s) (not delegated to devbox)",
                own.display(),
                lacking.join(", ")
            )
        }
        None => "no cgroup v2 hierarchy is mounted".to_owned(),
    };
    Err(format!(
        "{v2}, and cgroup v1 has no {} controller mounted",
        missing.join(", ")
    ))
}

/// `devbox-<12 hex digits of SHA-256 of the state dir>`: the parent cgroup of one
/// devbox's instances (two devboxes with different state dirs never share one).
pub fn parent_name(state_dir: &Path) -> String {
    let hex = crate::digest::sha256_hex(state_dir.as_os_str().as_encoded_bytes(), 6);
    format!("devbox-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This kind of machine: v1 controllers, and an empty v2 hierarchy beside them.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_SELF: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/jobs/a18f
2:cpuacct:/
1:cpu:/
0::/
";
    /// A systemd host with the unified hierarchy only.
    const UNIFIED: &str = "\
25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
";
    const UNIFIED_SELF: &str = "0::/system.slice/devbox.service\n";

    #[test]
    fn a_hybrid_host_uses_v1_below_devbox_own_cgroups() {
        let host = locate(HYBRID, HYBRID_SELF);
        assert_eq!(host.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            host.v1.get("memory"),
            Some(&PathBuf::from("/sys/fs/cgroup/memory/jobs/a18f"))
        );
        // The empty v2 hierarchy offers nothing.
        let layout = choose(&host, Some("")).expect("v1");
        let Layout::V1 { own } = layout else {
            panic!("not v1: {layout:?}")
        };
        let controllers: Vec<&str> = own.keys().map(String::as_str).collect();
        assert_eq!(controllers, ["cpu", "cpuacct", "freezer", "memory", "pids"]);
        assert_eq!(own["pids"], PathBuf::from("/sys/fs/cgroup/pids"));
    }

    #[test]
    fn a_delegated_v2_subtree_wins() {
        let host = locate(UNIFIED, UNIFIED_SELF);
        assert_eq!(
            choose(&host, Some("cpuset cpu io memory pids")),
            Ok(Layout::V2 {
                own: PathBuf::from("/sys/fs/cgroup/system.slice/devbox.service")
            })
        );
        // Not delegated: nothing to use, and the reason names what is missing.
        let why = choose(&host, Some("cpu")).expect_err("no v1 either");
        assert!(why.contains("memory, pids"), "{why}");
        assert!(why.contains("freezer"), "{why}");
    }

    #[test]
    fn co_mounted_controllers_and_namespaced_roots() {
        let mountinfo = "\
30 25 0:26 /kubepods /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
        let host = locate(
            mountinfo,
            "5:cpu,cpuacct:/kubepods/pod1\n4:memory:/\n3:pids:/\n",
        );
        assert_eq!(
            host.v1.get("cpu"),
            Some(&PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/pod1"))
        );
        assert_eq!(host.v1.get("cpu"), host.v1.get("cpuacct"));
        let why = choose(&host, None).expect_err("no freezer");
        assert!(
            why.contains("no cgroup v2") && why.contains("freezer"),
            "{why}"
        );
    }

    #[test]
    fn parent_names_differ_per_state_dir() {
        let a = parent_name(Path::new("/srv/a/.devbox"));
        assert!(
            a.starts_with("devbox-") && a.len() == "devbox-".len() + 12,
            "{a}"
        );
        assert_ne!(a, parent_name(Path::new("/srv/b/.devbox")));
    }
}
