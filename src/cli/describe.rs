//! `devbox describe NAME`: everything about one server as readable text, in the manner
//! of `kubectl describe`: identity and owner, desired and observed state, conditions,
//! limits, extension results, recent events and the spec itself.
//!
//! Locally it reads the spec file, the state directory and the server's `events.log`.
//! With `--server` it reads `GET /servers/{name}`, the spec (`GET /specs/{name}`: the
//! limits it sets; the config's defaults are the devbox's) and the newest log lines.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::Value;

use super::local_server::LocalServer;
use super::remote::Remote;
use crate::config::Config;
use crate::resources::Resources;
use crate::spec::DevServer;
use crate::status::{Phase, ServerStatus};

/// How many of the newest events (or log lines) are shown.
const RECENT: usize = 15;

/// Label and value rows, printed with the values in one column.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn add(&mut self, label: &str, value: impl Into<String>) {
        self.0.push((label.to_owned(), value.into()));
    }

    fn add_some(&mut self, label: &str, value: Option<impl Into<String>>) {
        if let Some(value) = value {
            self.add(label, value);
        }
    }

    fn print(&self) {
        let width = self.0.iter().map(|(l, _)| l.len() + 1).max().unwrap_or(0);
        for (label, value) in &self.0 {
            let mut lines = value.lines();
            let first = lines.next().unwrap_or_default();
            println!("{:<width$}  {first}", format!("{label}:"));
            for more in lines {
                println!("{:<width$}  {more}", "");
            }
        }
    }
}

/// One condition: `(type, true/false, reason)`.
type Condition = (&'static str, bool, String);

fn print_conditions(conditions: &[Condition]) {
    println!("Conditions:");
    let rows: Vec<Vec<String>> = conditions
        .iter()
        .map(|(kind, ok, reason)| {
            vec![
                format!("  {kind}"),
                if *ok { "True" } else { "False" }.to_owned(),
                reason.clone(),
            ]
        })
        .collect();
    super::print_table(&["  TYPE", "STATUS", "REASON"], &rows);
}

fn print_list(title: &str, lines: &[String], none: &str) {
    println!("{title}:");
    if lines.is_empty() {
        println!("  {none}");
    }
    for line in lines {
        println!("  {line}");
    }
}

pub fn local(config: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let server = LocalServer::read(config, name)?;
    if server.is_unknown() {
        bail!(
            "no server `{name}` (no spec in {} and no status in {})",
            config.controller.specs_dir.display(),
            config.controller.state_dir.display()
        );
    }
    let status = server.status.as_ref();
    let parsed = server.spec.as_ref().and_then(|s| s.parsed.as_ref());
    let resolved = server.spec.as_ref().and_then(|s| s.resolved.as_ref().ok());
    let meta = parsed.map(|p| &p.metadata);

    let mut fields = Fields::default();
    fields.add("Name", name);
    fields.add_some(
        "Display name",
        resolved
            .map(|r| r.display_name.clone())
            .or_else(|| status.map(|s| s.display_name.clone())),
    );
    fields.add_some(
        "ID",
        resolved
            .map(|r| r.id.to_string())
            .or_else(|| status.map(|s| s.id.to_string())),
    );
    fields.add(
        "Owner",
        meta.and_then(|m| m.owner.clone())
            .or_else(|| status.and_then(|s| s.owner.as_ref().map(ToString::to_string)))
            .unwrap_or_else(|| "- (the admin's)".into()),
    );
    fields.add_some(
        "Template",
        parsed
            .and_then(|p| p.spec.template.as_ref())
            .map(|t| format!("{} (tab {})", t.name, t.tab)),
    );
    fields.add_some(
        "Pool",
        resolved
            .and_then(|r| r.pool.clone())
            .or_else(|| status.and_then(|s| s.pool.clone()))
            .map(|template| format!("{template} (unclaimed)")),
    );
    fields.add_some(
        "Labels",
        meta.map(|m| pairs(&m.labels)).filter(|l| !l.is_empty()),
    );
    fields.add_some(
        "Annotations",
        meta.map(|m| pairs(&m.annotations))
            .filter(|a| !a.is_empty()),
    );
    fields.add(
        "Spec file",
        server.spec.as_ref().map_or_else(
            || "- (deleted; devbox is stopping and forgetting the server)".to_owned(),
            |s| s.path.display().to_string(),
        ),
    );
    fields.add_some("Desired state", parsed.map(|p| word(&p.spec.state)));
    fields.add(
        "Phase",
        status.map_or_else(
            || "- (no status yet: devbox has not seen the spec)".to_owned(),
            |s| s.phase.name().to_owned(),
        ),
    );
    if let Some(status) = status {
        add_status_fields(&mut fields, status);
    }
    fields.add_some(
        "Restart policy",
        parsed.map(|p| word(&p.spec.restart_policy)),
    );
    fields.add_some(
        "Idle timeout",
        parsed.and_then(|p| p.spec.idle_timeout.map(|t| t.to_string())),
    );
    let spec_limits = parsed.and_then(|p| p.spec.resources).unwrap_or_default();
    fields.add("Limits", limits(&spec_limits, config));
    fields.print();

    let mut conditions: Vec<Condition> = Vec::new();
    let spec_errors: Vec<String> = match (server.spec.as_ref().map(|s| &s.resolved), status) {
        (_, Some(status)) if !status.spec_errors.is_empty() => {
            status.spec_errors.iter().map(ToString::to_string).collect()
        }
        (Some(Err(problems)), _) => problems.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    };
    if server.spec.is_some() {
        conditions.push((
            "SpecValid",
            spec_errors.is_empty(),
            spec_errors.first().cloned().unwrap_or_default(),
        ));
        conditions.push((
            "SpecObserved",
            server.spec_observed(),
            if server.spec_observed() {
                "devbox has acted on the current spec file".into()
            } else {
                "devbox has not acted on the current spec file yet (is it running?)".into()
            },
        ));
    }
    if let Some(status) = status {
        conditions.push(ready(status.phase, status.message.as_deref()));
        let effective = resolved.map(|r| r.resources).unwrap_or_default();
        if status.phase == Phase::Running && !effective.is_empty() {
            let (enforced, how) = match &status.instance {
                Some(crate::status::InstanceRecord::Slurm(_)) => {
                    (true, "they are the Slurm job's allocation")
                }
                Some(crate::status::InstanceRecord::Local(p)) if p.cgroup.is_some() => {
                    (true, "the instance runs in a cgroup of its own")
                }
                _ => (false, ""),
            };
            conditions.push((
                "LimitsEnforced",
                enforced,
                if enforced {
                    how.into()
                } else {
                    status.message.clone().unwrap_or_default()
                },
            ));
        }
    }
    print_conditions(&conditions);

    let extensions: Vec<String> = status
        .map(|s| {
            s.extension_results
                .iter()
                .map(|r| extension_line(&r.extension, &r.state, r.error.as_deref()))
                .collect()
        })
        .unwrap_or_default();
    print_list("Extension results", &extensions, "(none)");

    let events = crate::logs::last_lines(
        &crate::status::server_dir(&config.controller.state_dir, name).join("events.log"),
        RECENT,
    );
    print_list("Events (oldest first)", &events, "(none)");

    match &server.spec {
        Some(spec) => {
            let lines: Vec<String> = spec.text.lines().map(str::to_owned).collect();
            print_list("Spec", &lines, "(empty file)");
        }
        None => print_list("Spec", &[], "(no spec file)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The fields only a status knows.
fn add_status_fields(fields: &mut Fields, status: &ServerStatus) {
    fields.add_some("Message", status.message.clone());
    fields.add_some("Port", status.port.map(|p| p.to_string()));
    fields.add_some("PID", status.local_process().map(|p| p.pid.to_string()));
    if let Some(crate::status::InstanceRecord::Slurm(job)) = &status.instance {
        fields.add("SLURM JOB", job.job_id.to_string());
        fields.add_some("NODE", job.node.clone());
    }
    fields.add_some(
        "Started",
        status
            .started_at
            .as_ref()
            .map(|at| match status.uptime_seconds() {
                Some(up) => format!("{at} (up {})", seconds(up)),
                None => at.clone(),
            }),
    );
    fields.add_some(
        "Workspace",
        status
            .workspace_path
            .as_ref()
            .map(|p| p.display().to_string()),
    );
    fields.add(
        "Restarts",
        format!(
            "{} after crashes ({} crashes in a row)",
            status.restarts, status.consecutive_crashes
        ),
    );
    fields.add_some("Last exit", status.last_exit.clone());
    fields.add_some("Next retry", status.next_retry_at.clone());
}

/// The effective limits and where each comes from.
fn limits(spec: &Resources, config: &Config) -> String {
    let defaults = config.controller.default_resources;
    let effective = spec.or(defaults);
    if effective.is_empty() {
        return "none (spec.resources and controller.default_resources set none)".into();
    }
    let mut from = Vec::new();
    if !spec.is_empty() {
        from.push(format!("spec.resources: {spec}"));
    }
    let inherited = Resources {
        memory: spec.memory.is_none().then_some(defaults.memory).flatten(),
        cpus: spec.cpus.is_none().then_some(defaults.cpus).flatten(),
        pids: spec.pids.is_none().then_some(defaults.pids).flatten(),
    };
    if !inherited.is_empty() {
        from.push(format!("controller.default_resources: {inherited}"));
    }
    format!("{effective}\n({})", from.join("; "))
}

/// `Ready`: whether the server runs, and otherwise where it is.
fn ready(phase: Phase, message: Option<&str>) -> Condition {
    let reason = match message {
        Some(message) => format!("{}: {message}", phase.name()),
        None => phase.name().to_owned(),
    };
    ("Ready", phase == Phase::Running, reason)
}

fn extension_line(extension: &str, state: &str, error: Option<&str>) -> String {
    match error {
        Some(error) => format!("{extension}  {state}: {error}"),
        None => format!("{extension}  {state}"),
    }
}

fn pairs(map: &std::collections::BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An enum as spec files spell it (`on-failure`).
fn word(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(word)) => word,
        _ => "?".into(),
    }
}

fn seconds(secs: f64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs as u64)).to_string()
}

/// `devbox --server URL describe NAME`: what the API tells of the server.
pub fn remote(remote: &Remote, name: &str) -> anyhow::Result<ExitCode> {
    if !crate::spec::is_valid_name(name) {
        bail!("`{name}` is not a valid server name");
    }
    let view: Value = remote.call("GET", &format!("/servers/{name}"), None)?;
    let text = |key: &str| view[key].as_str().map(str::to_owned);
    let mut fields = Fields::default();
    fields.add("Name", text("slug").unwrap_or_else(|| name.to_owned()));
    fields.add_some("Display name", text("name"));
    fields.add_some("ID", text("id"));
    fields.add(
        "Owner",
        text("owner").unwrap_or_else(|| "- (the admin's)".into()),
    );
    fields.add_some("Template", text("template"));
    fields.add_some(
        "Pool",
        text("pool").map(|template| format!("{template} (unclaimed)")),
    );
    let phase = text("phase").unwrap_or_default();
    fields.add(
        "Status",
        format!("{} (phase {phase})", text("status").unwrap_or_default()),
    );
    fields.add_some("Message", text("message"));
    fields.add_some("Port", view["port"].as_u64().map(|p| p.to_string()));
    fields.add_some("PID", view["pid"].as_u64().map(|p| p.to_string()));
    fields.add_some(
        "Started",
        text("start_time").map(|at| match view["uptime"].as_f64() {
            Some(up) => format!("{at} (up {})", seconds(up)),
            None => at,
        }),
    );
    fields.add_some(
        "Usage",
        view["cpu_percent"].as_f64().map(|cpu| {
            format!(
                "CPU {cpu:.1} %, memory {:.1} MB",
                view["memory_mb"].as_f64().unwrap_or_default()
            )
        }),
    );
    fields.add_some("Workspace", text("workspace_path"));
    fields.add_some("Next retry", text("next_retry_at"));
    // A spec file that does not parse is what a describe is often for: say so, go on.
    let (spec, unreadable) =
        match remote.call_unless_missing::<DevServer>("GET", &format!("/specs/{name}"), None) {
            Ok(spec) => (spec, None),
            Err(err) => (None, Some(format!("{err:#}"))),
        };
    let spec_limits = spec.as_ref().and_then(|s| s.spec.resources);
    fields.add(
        "Limits",
        match spec_limits {
            Some(limits) if !limits.is_empty() => {
                format!(
                    "spec.resources: {limits} (the rest: the devbox's controller.default_resources)"
                )
            }
            _ => "the devbox's controller.default_resources".to_owned(),
        },
    );
    fields.print();

    let ok = phase == "running";
    let reason = match text("message") {
        Some(message) => format!("{phase}: {message}"),
        None => phase.clone(),
    };
    print_conditions(&[("Ready", ok, reason)]);

    let results: Vec<String> = view["extension_results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            extension_line(
                r["extension"].as_str().unwrap_or_default(),
                r["state"].as_str().unwrap_or_default(),
                r["error"].as_str(),
            )
        })
        .collect();
    print_list("Extension results", &results, "(none)");

    let spec_lines: Vec<String> = match spec.map(|s| s.to_yaml()).transpose()? {
        Some(text) => text.lines().map(str::to_owned).collect(),
        None => Vec::new(),
    };
    let none = match &unreadable {
        Some(why) => format!("(cannot be read: {why})"),
        None => "(no spec file)".to_owned(),
    };
    print_list("Spec", &spec_lines, &none);

    let logs: Value = remote.call("GET", &format!("/servers/{name}/logs?lines={RECENT}"), None)?;
    let lines: Vec<String> = logs["data"]["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str().map(str::to_owned))
        .collect();
    print_list(
        "Recent log lines (events and output, oldest first)",
        &lines,
        "(none)",
    );
    Ok(ExitCode::SUCCESS)
}
