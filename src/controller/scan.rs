//! Reading the specs directory into the desired state of every server.
//!
//! A scan is level-triggered: it looks at every file every time and reports what each
//! server should be, so a missed or duplicated file event cannot matter. Checks that
//! span files (one name in two files, two specs pinning one port, more files than
//! `controller.max_servers`) happen here. A [`ScanCache`] keeps each file's outcome
//! while the file is unchanged, so the periodic resync of a thousand idle specs costs a
//! `stat` per file, not a read and a parse.
//!
//! Two files pinning one port are decided among the files alone, never by asking who
//! runs on it: the file that had the port at the previous scan keeps it while it still
//! pins it (every API edit rewrites a file, and must not hand its port over; a typo that
//! makes it invalid for a while neither), and a devbox starting over a state dir takes
//! the servers its status files record running as the previous winners; otherwise the
//! older file by modification time wins, ties by name. So a file copied beside a
//! running server's loses, and the server keeps running. The loser is invalid, with an
//! error naming the winner. (The spec writer refuses to write such a pair; they come
//! from hand edits.)

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::diagnostic::Diagnostic;
use crate::spec::{self, ServerSpec};

/// What one server should be, as the specs directory says.
#[derive(Debug, Clone, PartialEq)]
pub enum Desired {
    Spec(Arc<ServerSpec>),
    /// The file exists but cannot be applied; the server keeps its last applied state.
    Invalid(Arc<Vec<Diagnostic>>),
    /// No file: stop and forget the server.
    Deleted,
}

/// Whether `path` is a spec file the controller reads (`*.yaml` / `*.yml`, not hidden:
/// atomic writers create dot-prefixed temporary files beside their target).
pub fn is_spec_file(path: &Path) -> bool {
    has_spec_name(path) && path.is_file()
}

fn has_spec_name(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    !hidden && yaml
}

/// Every spec file under `dir`, sorted (not recursive: one directory of servers). Any
/// error reading the directory fails the whole listing: a partial listing would look
/// like deleted specs.
pub fn spec_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if !has_spec_name(&path) {
            continue;
        }
        // The entry's own type costs no system call; a symlink (or a filesystem that
        // does not say) is followed.
        let is_file = match entry.file_type() {
            Ok(kind) if kind.is_file() => true,
            Ok(kind) if kind.is_dir() => false,
            _ => path.is_file(),
        };
        if is_file {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The outcome of every spec file read so far, by path, valid while the file's stamp
/// (inode, size, times) is unchanged. Parsing is a pure function of the text and the
/// config (which does not change while devbox runs), so a cached outcome is as good as
/// a fresh one.
#[derive(Default)]
pub struct ScanCache {
    files: HashMap<PathBuf, CachedFile>,
    /// Servers within `controller.max_servers` at the last scan: they keep their place.
    admitted: BTreeSet<String>,
    /// The server whose file won each pinned port at the last scan: it keeps the port.
    port_winners: BTreeMap<u16, String>,
}

impl ScanCache {
    /// A cache for a devbox starting over a state dir: each server whose instance the
    /// previous devbox recorded on a port starts as that port's winner, so that it
    /// keeps the port its spec file pins even when another file, older or not, pins it
    /// too.
    pub fn with_running(running: impl IntoIterator<Item = (u16, String)>) -> Self {
        Self {
            port_winners: running.into_iter().collect(),
            ..Self::default()
        }
    }
}

struct CachedFile {
    stamp: Stamp,
    text: String,
    outcome: Desired,
}

/// What tells a changed file from an unchanged one: an atomic replace changes the inode,
/// an edit in place the size or the change time (nanoseconds on Linux filesystems).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    inode: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(file: &Path) -> Option<Self> {
        let meta = std::fs::metadata(file).ok()?;
        Some(Self {
            inode: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

impl ScanCache {
    /// The outcome of `file`: cached when its stamp is unchanged, else read and parsed.
    fn load(&mut self, file: &Path, config: &Config) -> Desired {
        // Stamp before reading: a write in between leaves an old stamp with the new
        // text, which only costs one more read next time.
        let stamp = Stamp::of(file);
        if let (Some(stamp), Some(cached)) = (stamp, self.files.get(file))
            && cached.stamp == stamp
        {
            return cached.outcome.clone();
        }
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) => {
                self.files.remove(file);
                let diag = Diagnostic::file(file, format!("cannot read: {err}"));
                return Desired::Invalid(Arc::new(vec![diag]));
            }
        };
        let outcome = match spec::load(file, &text, config) {
            Ok(spec) => Desired::Spec(Arc::new(spec)),
            Err(diags) => Desired::Invalid(Arc::new(diags)),
        };
        if let Some(stamp) = stamp {
            let cached = CachedFile {
                stamp,
                text,
                outcome: outcome.clone(),
            };
            self.files.insert(file.to_owned(), cached);
        }
        outcome
    }

    /// The text `file` had when it was last read.
    fn text(&self, file: &Path) -> &str {
        self.files.get(file).map_or("", |f| f.text.as_str())
    }

    /// When `file` was last modified, as its last read saw it (unknown: newest).
    fn mtime(&self, file: &Path) -> (i64, i64) {
        self.files
            .get(file)
            .map_or((i64::MAX, 0), |f| f.stamp.mtime)
    }
}

/// Reads `dir` and returns the desired state of each server named by a file there.
/// `applied` tells whether a server has had a spec applied (it counts as within
/// `controller.max_servers`, see [`cap_servers`]). Fails when the directory cannot be
/// listed (then nothing may be concluded about any server).
pub fn scan(
    dir: &Path,
    config: &Config,
    cache: &mut ScanCache,
    applied: impl Fn(&str) -> bool,
) -> std::io::Result<BTreeMap<String, Desired>> {
    let files = spec_files(dir)?;
    let mut desired = BTreeMap::new();
    let mut seen = HashSet::new();
    for file in files {
        let Some(name) = file.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        if let Some(entry) = desired.get_mut(&name) {
            let diag = Diagnostic::file(
                &file,
                format!("another file in {} already defines `{name}`", dir.display()),
            );
            *entry = Desired::Invalid(Arc::new(vec![diag]));
            continue;
        }
        desired.insert(name, cache.load(&file, config));
        seen.insert(file);
    }
    cache.files.retain(|file, _| seen.contains(file));
    cache.admitted = cap_servers(
        &mut desired,
        config.controller.max_servers,
        |name| cache.admitted.contains(name) || applied(name),
        dir,
    );
    // Files over the cap claim no port.
    let kept_by_invalid = resolve_port_conflicts(&mut desired, cache);
    cache.port_winners = pinned_ports(&desired);
    cache.port_winners.extend(kept_by_invalid);
    Ok(desired)
}

/// Keeps at most `max` servers: those `known` (admitted by an earlier scan, or with a
/// spec applied: they may run, and are never pushed out, even when the cap was lowered
/// below their number), then new ones in name order while there is room. The rest are
/// made invalid with an error that names the limit. Returns the names kept.
fn cap_servers(
    desired: &mut BTreeMap<String, Desired>,
    max: usize,
    known: impl Fn(&str) -> bool,
    dir: &Path,
) -> BTreeSet<String> {
    let mut kept: BTreeSet<String> = desired.keys().filter(|n| known(n)).cloned().collect();
    let newcomers: Vec<String> = desired
        .keys()
        .filter(|name| !kept.contains(*name))
        .cloned()
        .collect();
    for name in newcomers {
        if kept.len() < max {
            kept.insert(name);
            continue;
        }
        let file = match &desired[&name] {
            Desired::Spec(spec) => spec.file.clone(),
            _ => dir.join(format!("{name}.yaml")),
        };
        let diag = Diagnostic::file(
            &file,
            format!(
                "devbox manages at most {max} servers (controller.max_servers) and {} are \
                 taken; `{name}` is not started until one is deleted or the limit is raised",
                kept.len()
            ),
        );
        desired.insert(name, Desired::Invalid(Arc::new(vec![diag])));
    }
    kept
}

/// The ports pinned by valid specs, and by whom.
pub fn pinned_ports(desired: &BTreeMap<String, Desired>) -> BTreeMap<u16, String> {
    desired
        .values()
        .filter_map(|d| match d {
            Desired::Spec(spec) => Some((spec.port?, spec.name.clone())),
            _ => None,
        })
        .collect()
}

/// Replaces specs that lose a pinned-port conflict by their error: the last scan's
/// winner of a port keeps it, else the older file, ties by name. A winner whose file
/// has turned invalid keeps its port too (a typo in a running server's spec must not
/// hand its port to another file) until its file is valid again or gone: returns
/// those ports.
fn resolve_port_conflicts(
    desired: &mut BTreeMap<String, Desired>,
    cache: &ScanCache,
) -> BTreeMap<u16, String> {
    let kept_by_invalid: BTreeMap<u16, String> = cache
        .port_winners
        .iter()
        .filter(|(_, name)| matches!(desired.get(*name), Some(Desired::Invalid(_))))
        .map(|(port, name)| (*port, name.clone()))
        .collect();
    let losers: Vec<(String, Diagnostic)> = desired
        .values()
        .filter_map(|d| match d {
            Desired::Spec(spec) => {
                let port = spec.port?;
                let holder = kept_by_invalid.get(&port)?;
                let message = format!("port {port} is already claimed by server `{holder}`");
                let diag =
                    Diagnostic::field(&spec.file, cache.text(&spec.file), "spec.port", message);
                Some((spec.name.clone(), diag))
            }
            _ => None,
        })
        .collect();
    for (name, diag) in losers {
        desired.insert(name, Desired::Invalid(Arc::new(vec![diag])));
    }
    let specs: Vec<(&ServerSpec, &str)> = desired
        .values()
        .filter_map(|d| match d {
            Desired::Spec(spec) => Some((&**spec, cache.text(&spec.file))),
            _ => None,
        })
        .collect();
    let losers = port_conflicts(specs, |spec| {
        let incumbent = spec
            .port
            .is_some_and(|port| cache.port_winners.get(&port) == Some(&spec.name));
        (!incumbent, cache.mtime(&spec.file))
    });
    for (name, diag) in losers {
        desired.insert(name, Desired::Invalid(Arc::new(vec![diag])));
    }
    kept_by_invalid
}

/// Specs (with their file text) that pin a port another spec pins too. Of the specs
/// pinning one port, the one with the lowest `precedence` wins (ties by name); the
/// others lose. Returns the losers' names with the error to report.
pub fn port_conflicts<'a, K: Ord>(
    specs: impl IntoIterator<Item = (&'a ServerSpec, &'a str)>,
    precedence: impl Fn(&ServerSpec) -> K,
) -> Vec<(String, Diagnostic)> {
    let mut claims: BTreeMap<u16, Vec<(&ServerSpec, &str)>> = BTreeMap::new();
    for (spec, text) in specs {
        if let Some(port) = spec.port {
            claims.entry(port).or_default().push((spec, text));
        }
    }
    let mut losers = Vec::new();
    for (port, mut claimants) in claims {
        claimants.sort_by_cached_key(|(spec, _)| (precedence(spec), spec.name.clone()));
        let mut claimants = claimants.into_iter();
        let Some((winner, _)) = claimants.next() else {
            continue;
        };
        for (spec, text) in claimants {
            let diag = Diagnostic::field(
                &spec.file,
                text,
                "spec.port",
                format!("port {port} is already claimed by server `{}`", winner.name),
            );
            losers.push((spec.name.clone(), diag));
        }
    }
    losers
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::spec::testing::write_spec as write;

    #[test]
    fn spec_files_are_regular_or_linked_yaml_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "plain", "  port: 8020\n");
        std::fs::create_dir(dir.path().join("folder.yaml")).unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "junk").unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        write(elsewhere.path(), "linked", "  port: 8021\n");
        std::os::unix::fs::symlink(
            elsewhere.path().join("linked.yaml"),
            dir.path().join("linked.yml"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("dangling.yaml")).unwrap();
        let files = spec_files(dir.path()).unwrap();
        let names: Vec<_> = files.iter().filter_map(|f| f.file_name()).collect();
        assert_eq!(names, ["linked.yml", "plain.yaml"]);
    }

    #[test]
    fn scan_reports_valid_invalid_and_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::embedded_default();
        write(dir.path(), "a", "  port: 8020\n");
        write(dir.path(), "b", "  port: 8020\n");
        write(dir.path(), "c", "  port: 8021\n");
        write(dir.path(), "d", "  bogus: 1\n");
        std::fs::write(dir.path().join(".e.yaml.tmp"), "junk").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "junk").unwrap();

        let desired = scan(dir.path(), &config, &mut ScanCache::default(), |_| false).unwrap();
        assert_eq!(desired.keys().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert!(matches!(desired["a"], Desired::Spec(_)));
        let Desired::Invalid(b) = &desired["b"] else {
            panic!("b must lose port 8020")
        };
        assert_eq!(b[0].field.as_deref(), Some("spec.port"));
        assert!(b[0].message.contains("`a`"), "{}", b[0]);
        assert_eq!(b[0].line, Some(6));
        assert!(matches!(desired["d"], Desired::Invalid(_)));
        assert_eq!(
            pinned_ports(&desired),
            BTreeMap::from([(8020, "a".to_owned()), (8021, "c".to_owned())])
        );
        assert!(
            scan(
                &dir.path().join("gone"),
                &config,
                &mut ScanCache::default(),
                |_| false
            )
            .is_err()
        );
    }

    /// Sets `name`'s file modification time to `seconds` after the epoch.
    fn age(dir: &Path, name: &str, seconds: u64) {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(format!("{name}.yaml")))
            .unwrap();
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        file.set_modified(time).unwrap();
    }

    fn loser(desired: &BTreeMap<String, Desired>) -> Vec<(String, String)> {
        desired
            .iter()
            .filter_map(|(name, d)| match d {
                Desired::Invalid(diags) => Some((name.clone(), diags[0].message.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn two_files_pinning_one_port_are_decided_by_the_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::embedded_default();
        // `b` is older than `a`: a fresh devbox gives the port to `b`.
        write(dir.path(), "a", "  port: 8020\n");
        write(dir.path(), "b", "  port: 8020\n");
        age(dir.path(), "a", 2_000_000_000);
        age(dir.path(), "b", 1_000_000_000);
        let mut cache = ScanCache::default();
        let desired = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        assert_eq!(
            loser(&desired),
            [(
                "a".to_owned(),
                "port 8020 is already claimed by server `b`".to_owned()
            )]
        );

        // Rewriting the winner (as every API edit does) makes it the newer file, but it
        // keeps the port it had at the last scan.
        write(dir.path(), "b", "  port: 8020\n  state: stopped\n");
        age(dir.path(), "b", 3_000_000_000);
        let desired = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        assert_eq!(loser(&desired)[0].0, "a");

        // A devbox started now knows no winner: the older file, `a`, wins.
        let desired = scan(dir.path(), &config, &mut ScanCache::default(), |_| false).unwrap();
        assert_eq!(loser(&desired)[0].0, "b");

        // Files of one age: the first name wins.
        age(dir.path(), "a", 1_000_000_000);
        age(dir.path(), "b", 1_000_000_000);
        let desired = scan(dir.path(), &config, &mut ScanCache::default(), |_| false).unwrap();
        assert_eq!(loser(&desired)[0].0, "b");

        // Once the winner's file pins another port, the loser is valid again.
        write(dir.path(), "b", "  port: 8021\n");
        let desired = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        assert!(loser(&desired).is_empty(), "{desired:?}");
        assert_eq!(
            pinned_ports(&desired),
            BTreeMap::from([(8020, "a".to_owned()), (8021, "b".to_owned())])
        );
    }

    #[test]
    fn a_winner_whose_file_turns_invalid_keeps_its_port() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::embedded_default();
        write(
            dir.path(),
            "good",
            "  port: 8020
",
        );
        let mut cache = ScanCache::default();
        scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        // A typo in the running server's file, and another file pinning its port.
        write(
            dir.path(),
            "good",
            "  port: 8020
  bogus: 1
",
        );
        write(
            dir.path(),
            "thief",
            "  port: 8020
",
        );
        let desired = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        let thief = loser(&desired)
            .into_iter()
            .find(|(name, _)| name == "thief")
            .expect("thief loses");
        assert_eq!(thief.1, "port 8020 is already claimed by server `good`");
        // Fixed again, the file has its port back; the other still loses.
        write(
            dir.path(),
            "good",
            "  port: 8020
",
        );
        let desired = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        assert_eq!(loser(&desired)[0].0, "thief");
        assert_eq!(
            pinned_ports(&desired),
            BTreeMap::from([(8020, "good".to_owned())])
        );
    }

    #[test]
    fn unchanged_files_are_not_read_again_and_changed_ones_are() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::embedded_default();
        write(dir.path(), "a", "  state: stopped\n");
        write(dir.path(), "b", "  state: stopped\n");
        let mut cache = ScanCache::default();
        let spec_of = |desired: &BTreeMap<String, Desired>, name: &str| match &desired[name] {
            Desired::Spec(spec) => spec.clone(),
            other => panic!("{name}: {other:?}"),
        };
        let first = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        let again = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        assert!(
            Arc::ptr_eq(&spec_of(&first, "a"), &spec_of(&again, "a")),
            "an unchanged file's outcome is reused"
        );

        // An atomic replace (new inode) and a removal are both noticed.
        let replacement = dir.path().join(".a.yaml.tmp");
        std::fs::write(
            &replacement,
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: a\nspec:\n  state: running\n",
        )
        .unwrap();
        std::fs::rename(&replacement, dir.path().join("a.yaml")).unwrap();
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        let after = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        assert_eq!(spec_of(&after, "a").state, spec::DesiredState::Running);
        assert!(!after.contains_key("b"));
        assert_eq!(cache.files.len(), 1, "the removed file left the cache");
    }

    #[test]
    fn files_past_the_cap_are_invalid_and_never_push_a_known_server_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::embedded_default();
        config.controller.max_servers = 3;
        for name in ["b", "d", "f"] {
            write(dir.path(), name, "  state: stopped\n");
        }
        let mut cache = ScanCache::default();
        let invalid = |desired: &BTreeMap<String, Desired>| -> Vec<String> {
            desired
                .iter()
                .filter(|(_, d)| matches!(d, Desired::Invalid(_)))
                .map(|(n, _)| n.clone())
                .collect()
        };
        let desired = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        assert!(invalid(&desired).is_empty());

        // Two newcomers sorting before the admitted servers: they wait, the three keep
        // their place, and the error names the limit and the setting.
        write(dir.path(), "a", "  state: stopped\n  port: 8020\n");
        write(dir.path(), "c", "  state: stopped\n");
        let desired = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        assert_eq!(invalid(&desired), ["a", "c"]);
        let Desired::Invalid(diags) = &desired["a"] else {
            unreachable!()
        };
        assert!(
            diags[0]
                .message
                .contains("at most 3 servers (controller.max_servers)"),
            "{}",
            diags[0]
        );
        assert!(
            pinned_ports(&desired).is_empty(),
            "a file over the cap claims no port"
        );

        // A slot frees: the first newcomer by name takes it.
        std::fs::remove_file(dir.path().join("d.yaml")).unwrap();
        let desired = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        assert_eq!(invalid(&desired), ["c"]);

        // A fresh devbox (empty cache) knows the applied servers from their status:
        // `f` runs, so it stays even though `a`, `b` and `c` sort first.
        let applied = |name: &str| ["a", "f"].contains(&name);
        let desired = scan(dir.path(), &config, &mut ScanCache::default(), applied).unwrap();
        assert_eq!(invalid(&desired), ["c"]);

        // The cap lowered below the servers already known: none is pushed out.
        config.controller.max_servers = 1;
        let desired = scan(dir.path(), &config, &mut cache, |_| false).unwrap();
        assert_eq!(invalid(&desired), ["c"]);
    }
}
