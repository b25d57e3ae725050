//! The spec inputs of `apply -f` and `diff -f`: files as given, the spec files of
//! directories, and `-` for standard input (read once, called `<stdin>` in messages so
//! that its problems read like a file's: `<stdin>:6:3: spec.port: …`).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::controller::scan;
use crate::diagnostic::Diagnostic;
use crate::spec::DevServer;

/// What `-f -` is called in messages.
pub const STDIN_NAME: &str = "<stdin>";

/// The text of one spec input, and the name its problems are reported under.
pub struct SpecInput {
    pub name: PathBuf,
    pub text: String,
}

/// Reads every input: the texts read, and a problem for each file that could not be.
/// Fails as a whole when a directory cannot be listed, when `-` is named twice, or
/// when no spec is named at all.
pub fn read(inputs: &[PathBuf]) -> anyhow::Result<(Vec<SpecInput>, Vec<Diagnostic>)> {
    let mut files = Vec::new();
    let mut stdin = false;
    for input in inputs {
        if input == Path::new("-") {
            if stdin {
                bail!("`-f -` (standard input) can be given once");
            }
            stdin = true;
            files.push(None);
        } else if input.is_dir() {
            files.extend(
                scan::spec_files(input)
                    .with_context(|| format!("cannot read {}", input.display()))?
                    .into_iter()
                    .map(Some),
            );
        } else {
            files.push(Some(input.clone()));
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
    let mut read = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match file {
            None => read.push(SpecInput {
                name: PathBuf::from(STDIN_NAME),
                text: read_stdin()?,
            }),
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(text) => read.push(SpecInput { name: path, text }),
                Err(err) => problems.push(Diagnostic::file(&path, format!("cannot read: {err}"))),
            },
        }
    }
    Ok((read, problems))
}

/// Standard input, refused past the size of a spec file without reading it all.
fn read_stdin() -> anyhow::Result<String> {
    let max = crate::yaml::MAX_YAML_BYTES;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the spec from standard input")?;
    if bytes.len() > max {
        bail!("the spec on standard input is larger than devbox reads ({max} bytes)");
    }
    String::from_utf8(bytes).context("the spec on standard input is not UTF-8 text")
}

/// Spec documents, each with the name it came under.
pub type NamedServers = Vec<(PathBuf, DevServer)>;

/// Reads every input ([`read`]) as a spec document: each with the name it came under, or
/// every problem found (files that could not be read, documents that are no spec).
pub fn read_servers(inputs: &[PathBuf]) -> anyhow::Result<Result<NamedServers, Vec<Diagnostic>>> {
    let (inputs, mut problems) = read(inputs)?;
    let mut servers = Vec::new();
    for input in inputs {
        match DevServer::from_yaml(&input.name, &input.text) {
            Ok(server) => servers.push((input.name, server)),
            Err(diag) => problems.push(diag),
        }
    }
    Ok(if problems.is_empty() {
        Ok(servers)
    } else {
        Err(problems)
    })
}
