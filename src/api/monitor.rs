//! `GET /servers/{id}/health`, `GET /servers/{id}/logs`, `POST /servers/{id}/refresh-status`
//! and `POST /servers/refresh-all`: what is observed right now, in the seed's shapes.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::extract::QueryParams;
use super::extract::ServerId;
use super::views::{Envelope, SuccessWord, round1};
use crate::http::ApiError;
use crate::identity::Caller;
use crate::runtime::procfs;
use crate::status::{InstanceRecord, Phase, ServerStatus};

/// How long a live `/healthz` probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most log lines one request returns.
const MAX_LOG_LINES: usize = 10_000;

#[derive(Debug, Serialize, JsonSchema)]
pub struct ServerHealth {
    /// The recorded status word.
    pub status: String,
    /// `/healthz` answered just now.
    pub http_healthy: bool,
    pub cpu_percent: f64,
    pub memory_mb: f64,
    pub uptime_seconds: f64,
    /// The recorded process exists just now.
    pub process_exists: bool,
}

/// Live health of one server.
pub async fn health(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
) -> Result<Json<Envelope<ServerHealth>>, ApiError> {
    let status = state.find(&caller, &id)?;
    let probe = probe(&state, &status).await;
    let usage = state
        .usage
        .get(&status.name)
        .filter(|_| probe.process_exists)
        .unwrap_or_default();
    Ok(Json(Envelope::new(
        None,
        ServerHealth {
            status: status.phase.api_word().into(),
            http_healthy: probe.healthz.is_ok(),
            cpu_percent: usage.cpu_percent,
            memory_mb: usage.memory_mb,
            uptime_seconds: status.uptime_seconds().map(round1).unwrap_or(0.0),
            process_exists: probe.process_exists,
        },
    )))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct LogsQuery {
    /// How many of the newest lines (default 50).
    #[serde(default = "default_lines")]
    pub lines: usize,
}

fn default_lines() -> usize {
    50
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Logs {
    /// `[2025-01-15 10:00:00] INFO: message`, oldest first.
    pub logs: Vec<String>,
}

/// The newest log lines of a server: code-server's output and devbox's events. The
/// answer is bounded in bytes: lines come cut to `logs::MAX_LINE_BYTES`, from a ring of
/// at most `controller.log_buffer_bytes`, or from the last 64 KiB of each log file.
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
    QueryParams(query): QueryParams<LogsQuery>,
) -> Result<Json<Envelope<Logs>>, ApiError> {
    if query.lines > MAX_LOG_LINES {
        return Err(ApiError::BadRequest(format!(
            "`lines` must be at most {MAX_LOG_LINES}"
        )));
    }
    let status = state.find(&caller, &id)?;
    let mut logs: Vec<String> = state
        .logs
        .recent(&status.name, query.lines)
        .iter()
        .map(|l| l.display())
        .collect();
    if logs.is_empty() {
        // Nothing in memory (devbox restarted since): read the files.
        let dir = crate::status::server_dir(state.statuses.state_dir(), &status.name);
        let lines = query.lines;
        logs = tokio::task::spawn_blocking(move || {
            let mut lines_read = crate::logs::last_lines(&dir.join("events.log"), lines);
            lines_read.extend(crate::logs::last_lines(&dir.join("code-server.log"), lines));
            let skip = lines_read.len().saturating_sub(lines);
            lines_read.split_off(skip)
        })
        .await
        .unwrap_or_default();
    }
    Ok(Json(Envelope::new(None, Logs { logs })))
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Refresh {
    pub status: SuccessWord,
    pub id: Uuid,
    pub name: String,
    pub port: Option<u16>,
    pub old_status: String,
    pub new_status: String,
    pub pid_status: String,
    pub healthz_status: String,
    /// The observation differs from the recorded status (devbox is asked to look again).
    pub updated: bool,
}

/// Observes one server now and compares with its recorded status.
pub async fn refresh_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
) -> Result<Json<Refresh>, ApiError> {
    let status = state.find(&caller, &id)?;
    let refresh = refresh(&state, &status).await;
    if refresh.updated {
        state.rescan.notify_one();
    }
    Ok(Json(refresh))
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RefreshAll {
    pub status: SuccessWord,
    pub total_servers: usize,
    pub updated: usize,
    pub message: String,
    pub servers: Vec<Refresh>,
}

/// Observes every server now.
pub async fn refresh_all(State(state): State<AppState>, caller: Caller) -> Json<RefreshAll> {
    let statuses = state
        .statuses
        .filter_map_all(|s| caller.may_use(s.owner.as_ref()).then(|| s.clone()));
    let servers = futures_util::future::join_all(statuses.iter().map(|s| refresh(&state, s))).await;
    let updated = servers.iter().filter(|r| r.updated).count();
    if updated > 0 {
        state.rescan.notify_one();
    }
    Json(RefreshAll {
        status: SuccessWord::Success,
        total_servers: servers.len(),
        updated,
        message: format!("Updated {updated} out of {} servers", servers.len()),
        servers,
    })
}

struct Probe {
    process_exists: bool,
    healthz: Result<(), String>,
}

async fn probe(state: &AppState, status: &ServerStatus) -> Probe {
    // A job on another machine is as alive as Slurm last said (the health check below
    // asks the instance itself).
    let process_exists = match &status.instance {
        Some(InstanceRecord::Local(p)) => procfs::is_same_process_alive(p.pid, p.start_ticks),
        Some(InstanceRecord::Slurm(_)) => true,
        None => false,
    };
    let healthz = match status.endpoint() {
        Some(endpoint) if process_exists => state
            .health
            .check(&endpoint, PROBE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Some(_) => Err("no process".into()),
        None => Err("no port assigned".into()),
    };
    Probe {
        process_exists,
        healthz,
    }
}

async fn refresh(state: &AppState, status: &ServerStatus) -> Refresh {
    let probe = probe(state, status).await;
    let old_status = status.phase.api_word().to_owned();
    let new_status = match (probe.process_exists, probe.healthz.is_ok(), status.phase) {
        (true, true, _) => "running",
        (true, false, _) => "starting",
        (false, _, Phase::Running) => "stopped",
        // Provisioning, waiting for a retry, stopped or failed: nothing runs, as recorded.
        (false, _, phase) => phase.api_word(),
    }
    .to_owned();
    let pid_status = match &status.instance {
        Some(InstanceRecord::Local(p)) if probe.process_exists => format!("PID {} exists", p.pid),
        Some(InstanceRecord::Local(p)) => format!("PID {} not found", p.pid),
        Some(InstanceRecord::Slurm(job)) => match &job.node {
            Some(node) => format!("Slurm job {} on {node}", job.job_id),
            None => format!("Slurm job {} (queued)", job.job_id),
        },
        None => "No PID recorded".to_owned(),
    };
    let healthz_status = match (status.port, &probe.healthz) {
        (Some(port), Ok(())) => format!("Health endpoint responding on port {port}"),
        (Some(port), Err(why)) => format!("Health endpoint not responding on port {port}: {why}"),
        (None, _) => "No port assigned".to_owned(),
    };
    Refresh {
        status: SuccessWord::Success,
        id: status.id,
        name: status.display_name.clone(),
        port: status.port,
        updated: new_status != old_status,
        old_status,
        new_status,
        pid_status,
        healthz_status,
    }
}
