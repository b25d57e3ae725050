//! Reading the specs directory into the desired state of every server.
//!
//! A scan is level-triggered: it reads every file every time and reports what each
//! server should be, so a missed or duplicated file event cannot matter. Checks that
//! span files (one name in two files, two specs pinning one port) happen here.

use std::collections::BTreeMap;
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
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    !hidden && yaml && path.is_file()
}

/// Every spec file under `dir`, sorted (not recursive: one directory of servers). Any
/// error reading the directory fails the whole listing: a partial listing would look
/// like deleted specs.
pub fn spec_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_spec_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads `dir` and returns the desired state of each server named by a file there.
/// `port_owner` tells which server currently holds a port. Fails when the directory
/// cannot be listed (then nothing may be concluded about any server).
pub fn scan(
    dir: &Path,
    config: &Config,
    port_owner: impl Fn(u16) -> Option<String>,
) -> std::io::Result<BTreeMap<String, Desired>> {
    let files = spec_files(dir)?;
    let mut desired = BTreeMap::new();
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
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
        let outcome = match std::fs::read_to_string(&file) {
            Ok(text) => {
                let outcome = spec::load(&file, &text, config);
                texts.insert(name.clone(), text);
                outcome
            }
            Err(err) => Err(vec![Diagnostic::file(&file, format!("cannot read: {err}"))]),
        };
        let entry = match outcome {
            Ok(spec) => Desired::Spec(Arc::new(spec)),
            Err(diags) => Desired::Invalid(Arc::new(diags)),
        };
        desired.insert(name, entry);
    }
    resolve_port_conflicts(&mut desired, &texts, port_owner);
    Ok(desired)
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

/// Replaces specs that lose a pinned-port conflict by their error.
fn resolve_port_conflicts(
    desired: &mut BTreeMap<String, Desired>,
    texts: &BTreeMap<String, String>,
    port_owner: impl Fn(u16) -> Option<String>,
) {
    let specs: Vec<(&ServerSpec, &str)> = desired
        .values()
        .filter_map(|d| match d {
            Desired::Spec(spec) => {
                Some((&**spec, texts.get(&spec.name).map_or("", String::as_str)))
            }
            _ => None,
        })
        .collect();
    let losers = port_conflicts(specs, port_owner);
    for (name, diag) in losers {
        desired.insert(name, Desired::Invalid(Arc::new(vec![diag])));
    }
}

/// Specs (with their file text) that pin a port held by another server or pinned by
/// another spec. The holder keeps the port; among newcomers the first name wins.
/// Returns the losers' names with the error to report.
pub fn port_conflicts<'a>(
    specs: impl IntoIterator<Item = (&'a ServerSpec, &'a str)>,
    port_owner: impl Fn(u16) -> Option<String>,
) -> Vec<(String, Diagnostic)> {
    let mut claims: BTreeMap<u16, Vec<(&ServerSpec, &str)>> = BTreeMap::new();
    for (spec, text) in specs {
        if let Some(port) = spec.port {
            claims.entry(port).or_default().push((spec, text));
        }
    }
    let mut losers = Vec::new();
    for (port, mut claimants) in claims {
        claimants.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let winner = port_owner(port).unwrap_or_else(|| claimants[0].0.name.clone());
        for (spec, text) in claimants.into_iter().filter(|(s, _)| s.name != winner) {
            let diag = Diagnostic::field(
                &spec.file,
                text,
                "spec.port",
                format!("port {port} is already claimed by server `{winner}`"),
            );
            losers.push((spec.name.clone(), diag));
        }
    }
    losers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        let text = format!(
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n{body}"
        );
        std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
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

        let desired = scan(dir.path(), &config, |_| None).unwrap();
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
        assert!(scan(&dir.path().join("gone"), &config, |_| None).is_err());

        // When `c` already holds 8020, both `a` and `b` lose.
        let desired = scan(dir.path(), &config, |p| (p == 8020).then(|| "c".to_owned())).unwrap();
        assert!(matches!(desired["a"], Desired::Invalid(_)));
        assert!(matches!(desired["b"], Desired::Invalid(_)));
    }
}
