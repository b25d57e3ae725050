//! The machine's live processes as `/proc` shows them, and what tests ask of them:
//! their process group, their environment (every process of a code-server instance
//! inherits its `DEVSERVER_INSTANCE` tag) and their command line.

/// A process that is not a zombie, as it was when `/proc` was read.
pub struct LiveProcess {
    pub pid: u32,
    /// Its process group, when its `stat` names one.
    pub group: Option<u32>,
}

impl LiveProcess {
    /// Whether it carries the instance tag `tag` in its environment.
    pub fn has_instance_tag(&self, tag: &str) -> bool {
        let entry = format!("DEVSERVER_INSTANCE={tag}");
        environ(self.pid).iter().any(|e| e == entry.as_bytes())
    }

    /// Its command line, the arguments separated by spaces (empty once it has exited).
    pub fn cmdline(&self) -> String {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).replace('\0', " ")
    }
}

/// Every live process on the machine; one that exits while `/proc` is read may be left
/// out.
pub fn live_processes() -> Vec<LiveProcess> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name in parentheses may hold spaces and parentheses itself.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first().is_none_or(|state| *state == "Z") {
            continue;
        }
        let group = fields.get(2).and_then(|g| g.parse::<u32>().ok());
        found.push(LiveProcess { pid, group });
    }
    found
}

/// The entries of `/proc/<pid>/environ` (none once the process has exited).
pub fn environ(pid: u32) -> Vec<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}
