//! The ports spec files pin, as the spec writer ([`crate::spec_files`]) sees them under
//! its edit lock, and its rules for a new pin: which number is free for a new spec, and
//! who else has a number a spec asks for.
//!
//! The writer reads the files themselves rather than asking the controller: a file
//! written a moment ago is not scanned yet, and the files alone own pins. Each file is
//! read for `spec.port` only, and read again only once its stamp (inode, size, times)
//! changed, so the check costs a `stat` per file: with 200 spec files, about 1 ms where
//! parsing them all takes some 90 ms (a debug build on two shared cores; the test
//! `cached_reads_of_200_files_cost_a_stat_each` prints both). Every file counts, valid
//! or not (one that does not pass the config's checks today may tomorrow, with its
//! port); a file that is not YAML pins nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::PortRange;
use crate::controller::ports::is_bindable;
use crate::controller::scan::{self, Stamp};

/// `spec.port` of each spec file read so far, by path, while its stamp is unchanged.
#[derive(Default)]
pub struct PinIndex {
    files: HashMap<PathBuf, (Stamp, Option<u16>)>,
}

/// Just enough of a spec file to know its pin; every other field is skipped.
#[derive(Deserialize)]
struct PinOnly {
    #[serde(default)]
    spec: Option<SpecPort>,
}

#[derive(Deserialize)]
struct SpecPort {
    #[serde(default)]
    port: Option<u16>,
}

impl PinIndex {
    /// The ports pinned by the files in `dir` now. Fails when `dir` cannot be listed
    /// (then no port may be called free).
    pub fn read(&mut self, dir: &Path) -> std::io::Result<FilePins> {
        let files = scan::spec_files(dir)?;
        let present: HashSet<&PathBuf> = files.iter().collect();
        self.files.retain(|path, _| present.contains(path));
        let mut pins: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let Some(name) = file.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if let Some(port) = self.port_of(file) {
                pins.entry(port).or_default().insert(name.to_owned());
            }
        }
        Ok(FilePins(pins))
    }

    fn port_of(&mut self, file: &Path) -> Option<u16> {
        // Stamped before reading: a write in between only costs one more read later.
        let stamp = Stamp::of(file);
        if let (Some(stamp), Some((cached, port))) = (stamp, self.files.get(file))
            && *cached == stamp
        {
            return *port;
        }
        let port = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| crate::yaml::from_str::<PinOnly>(&text).ok())
            .and_then(|doc| doc.spec?.port);
        match stamp {
            Some(stamp) => {
                self.files.insert(file.to_owned(), (stamp, port));
            }
            None => {
                self.files.remove(file);
            }
        }
        port
    }
}

/// The ports spec files pin, each with the servers whose files pin it.
#[derive(Debug, Default)]
pub struct FilePins(BTreeMap<u16, BTreeSet<String>>);

/// Who has a port a spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Another spec file pins it.
    File(String),
    /// Another server's instance runs on it (a spec that pins no port got it at start).
    Server(String),
}

impl FilePins {
    /// Who other than server `name` has `port`, by its file or its running instance
    /// (`held`: port to server, as the controller holds them).
    pub fn holder(&self, port: u16, name: &str, held: &BTreeMap<u16, String>) -> Option<Holder> {
        if let Some(other) = self
            .0
            .get(&port)
            .and_then(|names| names.iter().find(|pinner| pinner.as_str() != name).cloned())
        {
            return Some(Holder::File(other));
        }
        held.get(&port)
            .filter(|server| server.as_str() != name)
            .map(|server| Holder::Server(server.clone()))
    }

    /// Whether a file of a server other than `name` pins `port`.
    pub fn pinned_by_other(&self, port: u16, name: &str) -> bool {
        self.0
            .get(&port)
            .is_some_and(|names| names.iter().any(|pinner| pinner != name))
    }

    /// The first port of `range` free for a new spec of server `name`: no file pins it,
    /// no other server holds it, and (`probe`, with `listen: tcp`) nothing listens on it.
    pub fn first_free(
        &self,
        range: PortRange,
        name: &str,
        held: &BTreeMap<u16, String>,
        probe: bool,
    ) -> Option<u16> {
        (range.start..=range.end).find(|port| {
            !self.0.contains_key(port)
                && held.get(port).is_none_or(|server| server == name)
                && (!probe || is_bindable(*port))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::spec::testing::write_spec as write;

    const RANGE: PortRange = PortRange {
        start: 8010,
        end: 8013,
    };

    #[test]
    fn every_file_that_names_a_port_pins_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", "  port: 8010\n");
        // Not valid against the config (no such group), but it names its port.
        write(
            dir.path(),
            "b",
            "  port: 8011\n  extension_groups: [ghost]\n",
        );
        write(dir.path(), "c", "  state: stopped\n");
        std::fs::write(dir.path().join("d.yaml"), "[not: a spec").unwrap();
        let pins = PinIndex::default().read(dir.path()).unwrap();
        let none = BTreeMap::new();
        assert_eq!(
            pins.holder(8010, "x", &none),
            Some(Holder::File("a".into()))
        );
        assert_eq!(pins.holder(8010, "a", &none), None, "its own pin");
        assert_eq!(
            pins.holder(8011, "x", &none),
            Some(Holder::File("b".into()))
        );
        assert_eq!(pins.first_free(RANGE, "x", &none, false), Some(8012));
    }

    #[test]
    fn held_ports_are_not_free_and_a_full_range_has_none() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", "  port: 8010\n");
        let pins = PinIndex::default().read(dir.path()).unwrap();
        let held = BTreeMap::from([(8011, "hand-written".to_owned())]);
        assert_eq!(
            pins.holder(8011, "x", &held),
            Some(Holder::Server("hand-written".into()))
        );
        assert_eq!(pins.holder(8011, "hand-written", &held), None);
        assert_eq!(pins.first_free(RANGE, "x", &held, false), Some(8012));
        let full = BTreeMap::from([(8012, "y".to_owned()), (8013, "z".to_owned())]);
        let held: BTreeMap<u16, String> = held.into_iter().chain(full).collect();
        assert_eq!(pins.first_free(RANGE, "x", &held, false), None);
    }

    #[test]
    fn an_edited_or_removed_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = PinIndex::default();
        write(dir.path(), "a", "  port: 8010\n");
        assert!(index.read(dir.path()).unwrap().0.contains_key(&8010));
        write(dir.path(), "a", "  port: 8012\n  state: stopped\n");
        let pins = index.read(dir.path()).unwrap();
        assert_eq!(pins.0.keys().collect::<Vec<_>>(), [&8012]);
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        assert!(index.read(dir.path()).unwrap().0.is_empty());
        assert!(index.files.is_empty(), "the removed file left the index");
    }

    /// Not a pass/fail timing: prints what the module doc quotes.
    #[test]
    fn cached_reads_of_200_files_cost_a_stat_each() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..200u16 {
            write(
                dir.path(),
                &format!("seat-{i:03}"),
                &format!(
                    "  state: running\n  port: {}\n  extension_groups: [python]\n  extensions: [ms-python.python, esbenp.prettier-vscode]\n  user_settings:\n    editor.fontSize: 14\n    workbench.colorTheme: Default Dark Modern\n",
                    9000 + i
                ),
            );
        }
        let mut index = PinIndex::default();
        let began = std::time::Instant::now();
        let first = index.read(dir.path()).unwrap();
        let parsed = began.elapsed();
        let began = std::time::Instant::now();
        let again = index.read(dir.path()).unwrap();
        let cached = began.elapsed();
        assert_eq!(first.0.len(), 200);
        assert_eq!(again.0.len(), 200);
        println!("200 spec files: parsed in {parsed:?}, from the index in {cached:?}");
    }
}
