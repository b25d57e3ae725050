//! `devbox diff -f FILE|DIR|-`: what `apply` would change in the specs directory, per
//! server `created`, `changed` (with a unified diff of the YAML) or `unchanged`. The
//! inputs go through `apply`'s own checks first. Exit 0 when nothing would change, 1
//! when something would, 2 on error, as `kubectl diff` does.
//!
//! With `--server`, each input is compared with the spec the running devbox holds
//! (`GET /specs/{name}`), both written out the same way, so that only what differs in
//! content shows.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use similar::TextDiff;

use super::remote::Remote;
use crate::config::Config;
use crate::spec::DevServer;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// The exit code of an error (changes are 1).
const ERROR: u8 = 2;

pub fn run(config: &Config, inputs: &[PathBuf]) -> ExitCode {
    exit_code(compare(config, inputs))
}

/// `devbox --server URL diff -f …`: the inputs against the running devbox's specs.
pub fn run_remote(remote: &Remote, inputs: &[PathBuf]) -> ExitCode {
    exit_code(compare_remote(remote, inputs))
}

/// 1 when something would change, 0 when nothing would, [`ERROR`] on error.
fn exit_code(compared: anyhow::Result<bool>) -> ExitCode {
    match compared {
        Ok(true) => ExitCode::from(1),
        Ok(false) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(ERROR)
        }
    }
}

/// Prints every problem; an error saying nothing was compared.
fn refused(problems: &[crate::diagnostic::Diagnostic]) -> anyhow::Error {
    for problem in problems {
        eprintln!("{problem}");
    }
    anyhow::anyhow!("{} problem(s); nothing compared", problems.len())
}

fn compare_remote(remote: &Remote, inputs: &[PathBuf]) -> anyhow::Result<bool> {
    let servers = super::inputs::read_servers(inputs)?.map_err(|problems| refused(&problems))?;
    let mut changes = false;
    for (input, server) in servers {
        let name = &server.metadata.name;
        if !crate::spec::is_valid_name(name) {
            anyhow::bail!(
                "{}: metadata.name `{name}` is not a valid server name",
                input.display()
            );
        }
        let wanted = server.to_yaml()?;
        let held: Option<DevServer> =
            remote.call_unless_missing("GET", &format!("/specs/{name}"), None)?;
        let held = held.map(|held| held.to_yaml()).transpose()?;
        let current = PathBuf::from(format!(
            "{}/specs/{name}",
            remote.base().trim_end_matches('/')
        ));
        changes |= report(name, held.as_deref(), &wanted, &current, &input);
    }
    Ok(changes)
}

/// Prints each input's outcome; whether any would change.
fn compare(config: &Config, inputs: &[PathBuf]) -> anyhow::Result<bool> {
    let accepted = super::apply::check(config, inputs)?.map_err(|problems| refused(&problems))?;
    let mut changes = false;
    for spec in accepted {
        let name = &spec.resolved.name;
        let current = match std::fs::read_to_string(&spec.target) {
            Ok(text) => Some(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => anyhow::bail!("cannot read {}: {err}", spec.target.display()),
        };
        changes |= report(
            name,
            current.as_deref(),
            &spec.text,
            &spec.target,
            &spec.input,
        );
    }
    Ok(changes)
}

/// Prints whether server `name` would be created, changed (with the diff from `held`,
/// named `held_name`, to `wanted`, named `input`) or stay unchanged; whether it would
/// change.
fn report(name: &str, held: Option<&str>, wanted: &str, held_name: &Path, input: &Path) -> bool {
    match held {
        Some(held) if held == wanted => {
            println!("unchanged {name}");
            false
        }
        Some(held) => {
            println!("changed {name}");
            print_diff(held, wanted, held_name, input);
            true
        }
        None => {
            println!("created {name}");
            print_diff("", wanted, Path::new("/dev/null"), input);
            true
        }
    }
}

fn print_diff(old: &str, new: &str, old_name: &Path, new_name: &Path) {
    let diff = TextDiff::from_lines(old, new);
    print!(
        "{}",
        diff.unified_diff().context_radius(CONTEXT).header(
            &old_name.display().to_string(),
            &new_name.display().to_string()
        )
    );
}
