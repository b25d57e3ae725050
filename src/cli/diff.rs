//! `devbox diff -f FILE|DIR|-`: what `apply` would change in the specs directory, per
//! server `created`, `changed` (with a unified diff of the YAML) or `unchanged`. The
//! inputs go through `apply`'s own checks first. Exit 0 when nothing would change, 1
//! when something would, 2 on error, as `kubectl diff` does.
//!
//! Local only: the API has no route that returns a spec, so there is nothing to
//! compare a server's spec with over `--server`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use similar::TextDiff;

use crate::config::Config;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// The exit code of an error (changes are 1).
const ERROR: u8 = 2;

pub fn run(config: &Config, inputs: &[PathBuf]) -> ExitCode {
    match compare(config, inputs) {
        Ok(true) => ExitCode::from(1),
        Ok(false) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(ERROR)
        }
    }
}

/// `--server` asks for what cannot be had: say so, as an error.
pub fn remote_unsupported() -> ExitCode {
    eprintln!(
        "error: diff works on the specs directory only: the API has no route that returns a \
         server's spec to compare with. Run `devbox diff` on the devbox host (with its \
         --config and --specs)"
    );
    ExitCode::from(ERROR)
}

/// Prints each input's outcome; whether any would change.
fn compare(config: &Config, inputs: &[PathBuf]) -> anyhow::Result<bool> {
    let accepted = match super::apply::check(config, inputs)? {
        Ok(accepted) => accepted,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            anyhow::bail!("{} problem(s); nothing compared", problems.len());
        }
    };
    let mut changes = false;
    for spec in accepted {
        let name = &spec.resolved.name;
        let current = match std::fs::read_to_string(&spec.target) {
            Ok(text) => Some(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => anyhow::bail!("cannot read {}: {err}", spec.target.display()),
        };
        match current {
            Some(current) if current == spec.text => println!("unchanged {name}"),
            Some(current) => {
                changes = true;
                println!("changed {name}");
                print_diff(&current, &spec.text, &spec.target, &spec.input);
            }
            None => {
                changes = true;
                println!("created {name}");
                print_diff("", &spec.text, Path::new("/dev/null"), &spec.input);
            }
        }
    }
    Ok(changes)
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
