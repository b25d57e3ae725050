//! `devbox apply` and `devbox delete`: edit the specs directory, the one source of truth.
//!
//! `apply` checks every given file (or standard input, `-f -`) first, against the
//! config and against the specs already in place, and writes nothing unless all are
//! valid; each is then written atomically as `specs/<metadata.name>.yaml`, keeping its
//! text (and comments) as is. `diff` runs the same checks ([`check`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::controller::scan;
use crate::diagnostic::Diagnostic;
use crate::spec::{self, DevServer, ServerSpec};
use crate::spec_files::SpecFiles;
use crate::{fsutil, spec::is_valid_name};

pub fn apply(config: &Config, inputs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let specs_dir = &config.controller.specs_dir;
    let accepted = match check(config, inputs)? {
        Ok(accepted) => accepted,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("nothing applied: {} problem(s)", problems.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    std::fs::create_dir_all(specs_dir)
        .with_context(|| format!("cannot create {}", specs_dir.display()))?;
    for spec in accepted {
        let existed = spec.target.exists();
        fsutil::write_atomic(&spec.target, spec.text.as_bytes())
            .with_context(|| format!("cannot write {}", spec.target.display()))?;
        println!(
            "{} {}",
            if existed { "configured" } else { "created" },
            spec.resolved.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A spec input that passed every check, and the file it becomes.
pub struct Accepted {
    /// Where it came from (a file, or `<stdin>`).
    pub input: PathBuf,
    /// The spec file it becomes: `<specs>/<metadata.name>.yaml`, or the `.yml` file of
    /// that name when there is one.
    pub target: PathBuf,
    pub resolved: ServerSpec,
    pub text: String,
}

/// Reads and checks every input (against the config, and its pinned ports against
/// each other and the specs in place): all accepted, or every problem found.
pub fn check(
    config: &Config,
    inputs: &[PathBuf],
) -> anyhow::Result<Result<Vec<Accepted>, Vec<Diagnostic>>> {
    let (inputs, mut problems) = super::inputs::read(inputs)?;
    let files = SpecFiles::new(std::sync::Arc::new(config.clone()));
    let mut accepted: Vec<Accepted> = Vec::new();
    for input in inputs {
        let server = match DevServer::from_yaml(&input.name, &input.text) {
            Ok(server) => server,
            Err(diag) => {
                problems.push(diag);
                continue;
            }
        };
        // Checked as the file it becomes, so its name must match that file's stem.
        let target = files.path(&server.metadata.name);
        match spec::resolve(&target, &input.text, &server, config) {
            Ok(resolved) => accepted.push(Accepted {
                input: input.name,
                target,
                resolved,
                text: input.text,
            }),
            // Report against the input the user gave.
            Err(diags) => problems.extend(diags.into_iter().map(|d| Diagnostic {
                file: input.name.clone(),
                ..d
            })),
        }
    }

    // Ports pinned by the new specs must not collide with each other or with specs in
    // place, which keep their ports (as the controller decides: they are the older files).
    let existing = existing_specs(config, &accepted);
    let all = accepted
        .iter()
        .map(|a| (&a.resolved, a.text.as_str()))
        .chain(existing.iter().map(|(s, t)| (s, t.as_str())));
    let is_new = |spec: &ServerSpec| !existing.iter().any(|(s, _)| s.name == spec.name);
    for (name, diag) in scan::port_conflicts(all, is_new) {
        if let Some(spec) = accepted.iter().find(|a| a.resolved.name == name) {
            problems.push(Diagnostic {
                file: spec.input.clone(),
                ..diag
            });
        }
    }
    Ok(if problems.is_empty() {
        Ok(accepted)
    } else {
        Err(problems)
    })
}

/// Valid specs already in the specs directory, except those being replaced.
fn existing_specs(config: &Config, replacing: &[Accepted]) -> Vec<(ServerSpec, String)> {
    scan::spec_files(&config.controller.specs_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|file| !replacing.iter().any(|a| same_stem(&a.target, file)))
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
