//! `devbox validate`: checks spec and config files (told apart by content), directories
//! recursively, and reports every problem of every file in one run.
//!
//! Specs are checked against a config (its extension groups, templates, port range):
//! the one named with `--config`; else a config file found among the inputs (the one
//! nearest to each spec; of several as near, the first that accepts it), so that
//! `devbox validate examples/` checks the examples against their own
//! `examples/config/devbox.yaml`; else the embedded default. It says which config
//! checked how many specs.

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
    // A config named with --config is checked, and checks every spec.
    let named = cli.config.as_ref().map(|path| {
        let config = match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text).map_err(|diags| problems.extend(diags)),
            Err(err) => {
                problems.push(Diagnostic::file(path, format!("cannot read: {err}")));
                Err(())
            }
        };
        (path.clone(), config.ok())
    });
    let targets: Vec<PathBuf> = if paths.is_empty() {
        let specs = cli.specs.clone().unwrap_or_else(|| {
            named
                .as_ref()
                .and_then(|(_, config)| config.as_ref())
                .map_or_else(
                    || Config::embedded_default().controller.specs_dir,
                    |config| config.controller.specs_dir.clone(),
                )
        });
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

    // Config files among the inputs are checked too, and (without --config) each spec
    // is checked against the one nearest to it.
    let mut found: Vec<(PathBuf, Option<Config>)> = Vec::new();
    let mut specs: Vec<(PathBuf, String)> = Vec::new();
    for file in &files {
        if named.as_ref().is_some_and(|(path, _)| path == file) {
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
            let config = Config::parse(file, &text).map_err(|diags| problems.extend(diags));
            found.push((file.clone(), config.ok()));
        } else {
            specs.push((file.clone(), text));
        }
    }

    let embedded = Config::embedded_default();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    // Valid specs per directory, for the cross-file port check.
    let mut valid: BTreeMap<PathBuf, Vec<(ServerSpec, String)>> = BTreeMap::new();
    // The state dir of each valid spec's config: who runs on which port.
    let mut state_dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (file, text) in &specs {
        // Of equally near configs, the first that accepts the spec checks it; when none
        // does, the first reports why.
        let mut outcome = None;
        for (path, config) in nearest_configs(named.as_ref(), &found, file) {
            let (config, label) = match config {
                Some(config) => (config, path.display().to_string()),
                None => (
                    &embedded,
                    format!("the embedded default ({} is invalid)", path.display()),
                ),
            };
            let loaded = spec::load(file, text, config);
            let accepted = loaded.is_ok();
            if outcome.is_none() || accepted {
                let state_dir = cli
                    .state_dir
                    .as_ref()
                    .unwrap_or(&config.controller.state_dir);
                outcome = Some((label, loaded, state_dir.clone()));
            }
            if accepted {
                break;
            }
        }
        let (label, loaded, state_dir) = outcome.unwrap_or_else(|| {
            (
                "the embedded default".to_owned(),
                spec::load(file, text, &embedded),
                cli.state_dir
                    .clone()
                    .unwrap_or_else(|| embedded.controller.state_dir.clone()),
            )
        });
        *used.entry(label).or_default() += 1;
        match loaded {
            Ok(spec) => {
                state_dirs.insert(spec.name.clone(), state_dir);
                valid
                    .entry(file.parent().map(Path::to_owned).unwrap_or_default())
                    .or_default()
                    .push((spec, text.clone()));
            }
            Err(diags) => problems.extend(diags),
        }
    }
    for specs in valid.values() {
        // Decided as a devbox started now would: a server its state dir records running
        // on the port keeps it, else the older file wins, ties by name.
        let age = |spec: &ServerSpec| {
            let modified = std::fs::metadata(&spec.file)
                .and_then(|m| m.modified())
                .ok();
            let running_on_it = spec.port.is_some()
                && state_dirs
                    .get(&spec.name)
                    .and_then(|dir| crate::status::load(dir, &spec.name))
                    .is_some_and(|s| s.instance.is_some() && s.port == spec.port);
            (!running_on_it, modified.is_none(), modified)
        };
        let conflicts = scan::port_conflicts(specs.iter().map(|(s, t)| (s, t.as_str())), age);
        problems.extend(conflicts.into_iter().map(|(_, diag)| diag));
    }

    for (label, count) in &used {
        println!("config: {label} for {count} spec file(s)");
    }
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    for problem in &problems {
        println!("{problem}");
    }
    let checked = files.len() + usize::from(named.is_some());
    if problems.is_empty() {
        println!("ok: {checked} file(s) valid");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} problem(s) in {checked} file(s)", problems.len());
        Ok(ExitCode::FAILURE)
    }
}

/// A config file and what it parsed to (`None`: invalid).
type ConfigFile = (PathBuf, Option<Config>);

/// The configs that may check `spec`: the one named with --config; else, of the
/// configs found among the inputs, those whose folder shares the most of the spec's
/// path (several when they share as much: `examples/config/` and `examples/systemd/`
/// for `examples/specs/`); none: the embedded default checks it.
fn nearest_configs<'a>(
    named: Option<&'a ConfigFile>,
    found: &'a [ConfigFile],
    spec: &Path,
) -> Vec<(&'a Path, Option<&'a Config>)> {
    if let Some((path, config)) = named {
        return vec![(path, config.as_ref())];
    }
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let spec_path = absolute(spec);
    let shared = |config: &Path| {
        let folder = absolute(config.parent().unwrap_or(Path::new("")));
        folder
            .components()
            .zip(spec_path.components())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let Some(best) = found.iter().map(|(path, _)| shared(path)).max() else {
        return Vec::new();
    };
    found
        .iter()
        .filter(|(path, _)| shared(path) == best)
        .map(|(path, config)| (path.as_path(), config.as_ref()))
        .collect()
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
