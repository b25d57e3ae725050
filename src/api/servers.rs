//! `GET /servers` and `GET /servers/:id`: servers in the seed API's shape.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::status::{Phase, ServerStatus};

/// One server as the seed API lists it (plus `phase` and `message`, which old clients ignore).
#[derive(Debug, Serialize)]
pub struct ServerView {
    pub id: Uuid,
    pub name: String,
    pub port: Option<u16>,
    pub workspace_path: Option<String>,
    pub extensions: Vec<String>,
    /// `running`, `stopped`, `failed` or `starting`.
    pub status: &'static str,
    pub pid: Option<u32>,
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<f64>,
    /// devbox's finer-grained phase (`provisioning`, `invalid`, …).
    pub phase: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ServerView {
    pub fn new(status: &ServerStatus, state: &AppState) -> Self {
        let running = status.phase == Phase::Running;
        let usage = running.then(|| state.metrics.get(&status.name)).flatten();
        Self {
            id: status.id,
            name: status.display_name.clone(),
            port: status.port,
            workspace_path: status
                .workspace_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            extensions: status.extensions.clone(),
            status: status.phase.api_word(),
            pid: status.process.as_ref().map(|p| p.pid),
            start_time: status.started_at.clone(),
            uptime: running
                .then(|| status.uptime_seconds())
                .flatten()
                .map(round1),
            cpu_percent: running.then(|| usage.map_or(0.0, |u| u.cpu_percent)),
            memory_mb: running.then(|| usage.map_or(0.0, |u| u.memory_mb)),
            phase: status.phase,
            message: status
                .message
                .clone()
                .or_else(|| status.spec_errors.first().map(ToString::to_string)),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub async fn list(State(state): State<AppState>) -> Json<Vec<ServerView>> {
    Json(
        state
            .statuses
            .list()
            .iter()
            .map(|s| ServerView::new(s, &state))
            .collect(),
    )
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    let status = state.find(&id)?;
    Ok(Json(ServerView::new(&status, &state)))
}
