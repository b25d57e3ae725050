//! `devbox validate`: checks spec and config files (told apart by content), directories
//! recursively, and reports every problem of every file in one run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::Cli;
use crate::config::Config;
use crate::controller::scan;
use crate::diagnostic::Diagnostic;
use crate::spec::{self, ServerSpec};
use crate::yaml;

pub fn run(cli: &Cli, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut problems: Vec<Diagnostic> = Vec::new();
    // Specs are checked against the given config, or the embedded default.
    let config = match &cli.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text).unwrap_or_else(|diags| {
                problems.extend(diags);
                Config::embedded_default()
            }),
            Err(err) => {
                problems.push(Diagnostic::file(path, format!("cannot read: {err}")));
                Config::embedded_default()
            }
        },
        None => Config::embedded_default(),
    };
    let targets: Vec<PathBuf> = if paths.is_empty() {
        let specs = cli
            .specs
            .clone()
            .unwrap_or_else(|| config.controller.specs_dir.clone());
        vec![specs]
    } else {
        paths.to_vec()
    };

    let mut files = Vec::new();
    for target in &targets {
        if target.is_dir() {
            collect_yaml(target, &mut files);
        } else if target.is_file() {
            files.push(target.clone());
        } else {
            problems.push(Diagnostic::file(target, "no such file or directory"));
        }
    }
    files.sort();
    files.dedup();

    // Valid specs per directory, for the cross-file port check.
    let mut valid: BTreeMap<PathBuf, Vec<(ServerSpec, String)>> = BTreeMap::new();
    for file in &files {
        if cli.config.as_deref() == Some(file.as_path()) {
            continue; // already checked above
        }
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) => {
                problems.push(Diagnostic::file(file, format!("cannot read: {err}")));
                continue;
            }
        };
        if is_config(&text) {
            if let Err(diags) = Config::parse(file, &text) {
                problems.extend(diags);
            }
            continue;
        }
        match spec::load(file, &text, &config) {
            Ok(spec) => valid
                .entry(file.parent().map(Path::to_owned).unwrap_or_default())
                .or_default()
                .push((spec, text)),
            Err(diags) => problems.extend(diags),
        }
    }
    for specs in valid.values() {
        let conflicts = scan::port_conflicts(specs.iter().map(|(s, t)| (s, t.as_str())), |_| None);
        problems.extend(conflicts.into_iter().map(|(_, diag)| diag));
    }

    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    for problem in &problems {
        println!("{problem}");
    }
    let checked = files.len() + usize::from(cli.config.is_some());
    if problems.is_empty() {
        println!("ok: {checked} file(s) valid");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} problem(s) in {checked} file(s)", problems.len());
        Ok(ExitCode::FAILURE)
    }
}

/// A config file has none of a spec's top-level keys. Unparseable YAML counts as a
/// spec, whose parser then reports the syntax error.
fn is_config(text: &str) -> bool {
    yaml::top_level_keys(text).is_some_and(|keys| {
        !keys
            .iter()
            .any(|k| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "spec"))
    })
}

fn collect_yaml(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_yaml(&path, files);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
}
