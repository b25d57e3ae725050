//! `devbox start|stop|restart NAME`. Locally they edit the spec file exactly as the
//! API's routes do ([`crate::spec_actions`] through [`SpecFiles`]) and return: the
//! controller of a running devbox acts on the file (`devbox wait` follows it). With
//! `--server` they call the API's routes, which answer once the server runs or stopped.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde_json::Value;

use super::remote::Remote;
use crate::config::Config;
use crate::spec::is_valid_name;
use crate::spec_actions::SpecAction;
use crate::spec_files::SpecFiles;
use crate::status;

/// Which of the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}

/// Edits server `name`'s spec in the specs directory.
pub fn local(config: &Config, name: &str, verb: Verb) -> anyhow::Result<ExitCode> {
    if !is_valid_name(name) {
        bail!("`{name}` is not a valid server name");
    }
    let action = match verb {
        // As the API does: a server that does not run gets a fresh attempt.
        Verb::Start => {
            SpecAction::start(status::load(&config.controller.state_dir, name).map(|s| s.phase))
        }
        Verb::Restart => SpecAction::Restart,
        Verb::Stop => SpecAction::Stop,
    };
    let files = SpecFiles::new(Arc::new(config.clone()));
    let resolved = files
        .update(name, |server| action.apply(server))
        .with_context(|| {
            format!(
                "cannot {} `{name}` (specs directory {})",
                verb.word(),
                config.controller.specs_dir.display()
            )
        })?;
    let state = if verb == Verb::Stop {
        "stopped"
    } else {
        "running"
    };
    println!(
        "{} requested for {name}: {} now says state: {state} (`devbox wait {name} --for {state}` waits for it)",
        verb.word(),
        resolved.file.display(),
    );
    Ok(ExitCode::SUCCESS)
}

/// Calls `POST /servers/{name}/{verb}`, which answers once the server runs or stopped.
pub fn remote(remote: &Remote, name: &str, verb: Verb) -> anyhow::Result<ExitCode> {
    if !crate::spec::is_valid_name(name) {
        bail!("`{name}` is not a valid server name");
    }
    let answer: Value = remote.call("POST", &format!("/servers/{name}/{}", verb.word()), None)?;
    let message = answer["message"].as_str().unwrap_or("done");
    match answer["data"]["pid"].as_u64() {
        Some(pid) => println!("{message}: {name} (pid {pid})"),
        None => println!("{message}: {name}"),
    }
    Ok(ExitCode::SUCCESS)
}
