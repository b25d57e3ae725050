//! `devbox apply` and `devbox delete`: edit the specs directory, the one source of truth.
//!
//! `apply` checks every given file first (against the config and against the specs
//! already in place) and writes nothing unless all are valid; each file is then written
//! atomically as `specs/<metadata.name>.yaml`, keeping its text (and comments) as is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::controller::scan;
use crate::diagnostic::Diagnostic;
use crate::spec::{self, DevServer, ServerSpec};
use crate::{fsutil, spec::is_valid_name};

pub fn apply(config: &Config, inputs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let specs_dir = &config.controller.specs_dir;
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            files.extend(
                scan::spec_files(input)
                    .with_context(|| format!("cannot read {}", input.display()))?,
            );
        } else {
            files.push(input.clone());
        }
    }
    if files.is_empty() {
        bail!(
            "no spec files in {}",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let mut problems: Vec<Diagnostic> = Vec::new();
    let mut accepted: Vec<(PathBuf, ServerSpec, String)> = Vec::new();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) => {
                problems.push(Diagnostic::file(file, format!("cannot read: {err}")));
                continue;
            }
        };
        let server = match DevServer::from_yaml(file, &text) {
            Ok(server) => server,
            Err(diag) => {
                problems.push(diag);
                continue;
            }
        };
        // Checked as the file it becomes, so its name must match that file's stem.
        let target = specs_dir.join(format!("{}.yaml", server.metadata.name));
        match spec::resolve(&target, &text, &server, config) {
            Ok(resolved) => accepted.push((target, resolved, text)),
            // Report against the file the user gave.
            Err(diags) => problems.extend(diags.into_iter().map(|d| Diagnostic {
                file: file.clone(),
                ..d
            })),
        }
    }

    // Ports pinned by the new specs must not collide with each other or with specs in place.
    let existing = existing_specs(config, &accepted);
    let all = accepted
        .iter()
        .map(|(_, s, t)| (s, t.as_str()))
        .chain(existing.iter().map(|(s, t)| (s, t.as_str())));
    let owner = |port: u16| {
        existing
            .iter()
            .find(|(s, _)| s.port == Some(port))
            .map(|(s, _)| s.name.clone())
    };
    for (name, diag) in scan::port_conflicts(all, owner) {
        if let Some((_, _, _)) = accepted.iter().find(|(_, s, _)| s.name == name) {
            problems.push(diag);
        }
    }

    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        eprintln!("nothing applied: {} problem(s)", problems.len());
        return Ok(ExitCode::FAILURE);
    }
    std::fs::create_dir_all(specs_dir)
        .with_context(|| format!("cannot create {}", specs_dir.display()))?;
    for (target, resolved, text) in accepted {
        let existed = target.exists();
        fsutil::write_atomic(&target, text.as_bytes())
            .with_context(|| format!("cannot write {}", target.display()))?;
        println!(
            "{} {}",
            if existed { "configured" } else { "created" },
            resolved.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Valid specs already in the specs directory, except those being replaced.
fn existing_specs(
    config: &Config,
    replacing: &[(PathBuf, ServerSpec, String)],
) -> Vec<(ServerSpec, String)> {
    scan::spec_files(&config.controller.specs_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|file| {
            !replacing
                .iter()
                .any(|(target, _, _)| same_stem(target, file))
        })
        .filter_map(|file| {
            let text = std::fs::read_to_string(&file).ok()?;
            let spec = spec::load(&file, &text, config).ok()?;
            Some((spec, text))
        })
        .collect()
}

fn same_stem(a: &Path, b: &Path) -> bool {
    a.file_stem() == b.file_stem()
}

pub fn delete(config: &Config, name: &str) -> anyhow::Result<ExitCode> {
    if !is_valid_name(name) {
        bail!("`{name}` is not a valid server name");
    }
    let dir = &config.controller.specs_dir;
    let mut removed = false;
    for ext in ["yaml", "yml"] {
        let path = dir.join(format!("{name}.{ext}"));
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            removed = true;
        }
    }
    if !removed {
        bail!("no spec for `{name}` in {}", dir.display());
    }
    println!("deleted {name}");
    Ok(ExitCode::SUCCESS)
}
