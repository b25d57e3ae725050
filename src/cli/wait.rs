//! `devbox wait NAME --for running|stopped|deleted [--timeout 60s]`: polls until the
//! server is there, and fails at once when it fails while waited for to run. Locally
//! it reads the state directory, and first waits for the controller to have acted on
//! a spec file it had not acted on yet, so that `devbox restart x && devbox wait x
//! --for running` does not end on the old process; with `--server` it reads
//! `GET /servers/{name}` (the API's start, stop and restart answer once done).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::ValueEnum;
use serde_json::Value;

use super::local_server::LocalServer;
use super::remote::Remote;
use crate::config::Config;
use crate::status::{Phase, ServerStatus};

const LOCAL_POLL: Duration = Duration::from_millis(200);
const REMOTE_POLL: Duration = Duration::from_millis(500);

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Condition {
    Running,
    Stopped,
    Deleted,
}

impl Condition {
    fn word(self) -> &'static str {
        match self {
            Condition::Running => "running",
            Condition::Stopped => "stopped",
            Condition::Deleted => "deleted",
        }
    }
}

/// One look at the server.
enum Seen {
    Reached,
    /// Waiting cannot succeed any more: why.
    Failed(String),
    /// Not yet: where it is now.
    Pending(String),
}

pub fn local(
    config: &Config,
    name: &str,
    condition: Condition,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let where_ = format!(
        "no spec in {} and no status in {}",
        config.controller.specs_dir.display(),
        config.controller.state_dir.display()
    );
    // When devbox has not acted on the spec file yet (a `start` or `restart` just
    // written), the status describes the spec before: wait for the controller to
    // record acting on a newer revision before judging it.
    let first = LocalServer::read(config, name)?;
    let behind = (!first.spec_observed()).then(|| first.observed_revision().map(str::to_owned));
    poll(name, condition, timeout, LOCAL_POLL, || {
        let server = LocalServer::read(config, name)?;
        let caught_up = match &behind {
            None => true,
            Some(before) => {
                server.revision_observed() || server.observed_revision() != before.as_deref()
            }
        };
        Ok(judge_local(&server, condition, caught_up, &where_))
    })
}

pub fn remote(
    remote: &Remote,
    name: &str,
    condition: Condition,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    if !crate::spec::is_valid_name(name) {
        bail!("`{name}` is not a valid server name");
    }
    poll(name, condition, timeout, REMOTE_POLL, || {
        let view: Option<Value> =
            remote.call_unless_missing("GET", &format!("/servers/{name}"), None)?;
        Ok(judge_remote(view.as_ref(), condition, name, remote.base()))
    })
}

fn poll(
    name: &str,
    condition: Condition,
    timeout: Duration,
    interval: Duration,
    mut look: impl FnMut() -> anyhow::Result<Seen>,
) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = match look()? {
            Seen::Reached => {
                println!("{name} is {}", condition.word());
                return Ok(ExitCode::SUCCESS);
            }
            Seen::Failed(why) => bail!("`{name}` will not be {}: {why}", condition.word()),
            Seen::Pending(now) => now,
        };
        if Instant::now() >= deadline {
            bail!(
                "timed out after {} waiting for `{name}` to be {}; now: {now}",
                humantime::format_duration(timeout),
                condition.word()
            );
        }
        std::thread::sleep(interval.min(deadline.saturating_duration_since(Instant::now())));
    }
}

fn judge_local(server: &LocalServer, condition: Condition, caught_up: bool, where_: &str) -> Seen {
    if condition == Condition::Deleted {
        return if server.is_unknown() {
            Seen::Reached
        } else {
            Seen::Pending(match &server.status {
                Some(status) => describe(status),
                None => "its spec file still exists".into(),
            })
        };
    }
    if server.is_unknown() {
        return Seen::Failed(format!("there is no server `{}` ({where_})", server.name));
    }
    let Some(status) = &server.status else {
        return Seen::Pending("no status yet, is devbox running?".into());
    };
    if !caught_up {
        return Seen::Pending(format!(
            "{}; devbox has not acted on the current spec file yet",
            describe(status)
        ));
    }
    match (condition, status.phase) {
        (Condition::Running, Phase::Running) => Seen::Reached,
        (Condition::Running, Phase::Failed | Phase::Invalid) => Seen::Failed(describe(status)),
        (Condition::Stopped, Phase::Stopped) if status.instance.is_none() => Seen::Reached,
        _ => Seen::Pending(describe(status)),
    }
}

fn judge_remote(view: Option<&Value>, condition: Condition, name: &str, base: &str) -> Seen {
    let Some(view) = view else {
        return if condition == Condition::Deleted {
            Seen::Reached
        } else {
            Seen::Failed(format!("there is no server `{name}` on {base}"))
        };
    };
    let phase = view["phase"].as_str().unwrap_or_default();
    let now = match view["message"].as_str() {
        Some(message) => format!("{phase}: {message}"),
        None => phase.to_owned(),
    };
    match (condition, phase) {
        (Condition::Running, "running") | (Condition::Stopped, "stopped") => Seen::Reached,
        (Condition::Running, "failed" | "invalid") => Seen::Failed(now),
        _ => Seen::Pending(now),
    }
}

/// `phase: message`, as the status says.
fn describe(status: &ServerStatus) -> String {
    let phase = status.phase.name();
    match status
        .message
        .clone()
        .or_else(|| status.spec_errors.first().map(ToString::to_string))
    {
        Some(message) => format!("{phase}: {message}"),
        None => phase.to_owned(),
    }
}
