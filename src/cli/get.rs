//! `devbox get`: servers as the state directory records them, with the desired state
//! from their spec files; works whether or not devbox is running.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use serde::Serialize;

use super::OutputFormat;
use crate::config::Config;
use crate::controller::scan;
use crate::spec::{DesiredState, DevServer};
use crate::status::{self, ServerStatus};

#[derive(Serialize)]
struct Row {
    name: String,
    /// What the spec file asks for; `None` when there is no (readable) spec.
    desired: Option<DesiredState>,
    /// The spec's `metadata.owner` (absent: the admin's).
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// The spec's template item.
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<String>,
    #[serde(flatten)]
    status: Option<ServerStatus>,
}

pub fn run(config: &Config, name: Option<&str>, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let statuses = status::load_all(&config.controller.state_dir)?;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for file in scan::spec_files(&config.controller.specs_dir).unwrap_or_default() {
        let Some(stem) = file.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let spec = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| DevServer::from_yaml(&file, &text).ok());
        rows.insert(
            stem.to_owned(),
            Row {
                name: stem.to_owned(),
                desired: spec.as_ref().map(|s| s.spec.state),
                owner: spec.as_ref().and_then(|s| s.metadata.owner.clone()),
                template: spec.and_then(|s| s.spec.template.map(|t| t.name)),
                status: None,
            },
        );
    }
    for (server, status) in statuses {
        let row = rows.entry(server.clone()).or_insert_with(|| Row {
            name: server,
            desired: None,
            owner: status.owner.as_ref().map(ToString::to_string),
            template: status.template.clone(),
            status: None,
        });
        row.status = Some(status);
    }
    if let Some(name) = name {
        rows.retain(|key, _| key == name);
        if rows.is_empty() {
            bail!(
                "no server `{name}` (no spec in {} and no status in {})",
                config.controller.specs_dir.display(),
                config.controller.state_dir.display()
            );
        }
    }
    let rows: Vec<Row> = rows.into_values().collect();
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        OutputFormat::Yaml => print!("{}", crate::yaml::to_string(&rows)?),
        OutputFormat::Table => print_table(&rows, false),
        OutputFormat::Wide => print_table(&rows, true),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[Row], wide: bool) {
    let dash = || "-".to_owned();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let status = row.status.as_ref();
            let mut cells = vec![
                row.name.clone(),
                row.desired
                    .map_or_else(dash, |d| format!("{d:?}").to_lowercase()),
                status.map_or_else(|| "pending".to_owned(), |s| s.phase.name().to_owned()),
                status
                    .and_then(|s| s.port)
                    .map_or_else(dash, |p| p.to_string()),
                status
                    .and_then(|s| s.local_process())
                    .map_or_else(dash, |p| p.pid.to_string()),
                status
                    .and_then(ServerStatus::uptime_seconds)
                    .map_or_else(dash, |u| {
                        humantime::format_duration(std::time::Duration::from_secs(u as u64))
                            .to_string()
                    }),
                status
                    .and_then(|s| {
                        s.message
                            .clone()
                            .or_else(|| s.spec_errors.first().map(ToString::to_string))
                    })
                    .map_or_else(String::new, |m| {
                        m.lines().next().unwrap_or_default().to_owned()
                    }),
            ];
            if wide {
                let owner = row.owner.clone().unwrap_or_else(dash);
                let template = row.template.clone().unwrap_or_else(dash);
                cells.splice(1..1, [owner, template]);
            }
            cells
        })
        .collect();
    let mut header = vec![
        "NAME", "DESIRED", "PHASE", "PORT", "PID", "UPTIME", "MESSAGE",
    ];
    if wide {
        header.splice(1..1, ["OWNER", "TEMPLATE"]);
    }
    super::print_table(&header, &cells);
}
