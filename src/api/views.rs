//! The JSON shapes the API answers with, in the seed API's field names (plus a few
//! fields of devbox's own, which old clients ignore).

use schemars::JsonSchema;
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use crate::status::{ExtensionStatus, InstanceRecord, Phase, ServerStatus};

/// One server, as `GET /servers` lists it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServerView {
    pub id: Uuid,
    /// The display name.
    pub name: String,
    pub port: Option<u16>,
    pub workspace_path: Option<String>,
    pub extensions: Vec<String>,
    /// `running`, `stopped`, `failed` or `starting`.
    pub status: String,
    pub pid: Option<u32>,
    pub start_time: Option<String>,
    /// Seconds since the instance became healthy (running servers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<f64>,
    /// CPU use of the whole process group, in percent of one core (running servers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Resident memory of the whole process group (running servers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<f64>,
    /// devbox's finer-grained phase (`provisioning`, `invalid`, …).
    pub phase: Phase,
    /// Why the server is in this phase: a failure, the provisioning step, a spec error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The file name of the server's spec (`specs/<slug>.yaml`).
    pub slug: String,
    /// The user the server belongs to; absent: the admin's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The template item it was made from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The template whose pool it waits in, unclaimed (`GET /servers?include_pool=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// When a failed server is tried again (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<String>,
    /// Outcome of each extension install of the last start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension_results: Vec<ExtensionStatus>,
    /// The Slurm job serving it (`spec.runtime: slurm`): its id, and its node once it
    /// runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<SlurmJobView>,
}

/// A server's Slurm job.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SlurmJobView {
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl ServerView {
    pub fn new(status: &ServerStatus, state: &AppState) -> Self {
        let running = status.phase == Phase::Running;
        let usage = running.then(|| state.usage.get(&status.name)).flatten();
        Self {
            id: status.id,
            name: status.display_name.clone(),
            port: status.port,
            workspace_path: status
                .workspace_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            extensions: status.extensions.clone(),
            status: status.phase.api_word().to_owned(),
            pid: status.local_process().map(|p| p.pid),
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
            slug: status.name.clone(),
            owner: status.owner.as_ref().map(ToString::to_string),
            template: status.template.clone(),
            pool: status.pool.clone(),
            next_retry_at: status.next_retry_at.clone(),
            extension_results: status.extension_results.clone(),
            slurm_job: match &status.instance {
                Some(InstanceRecord::Slurm(job)) => Some(SlurmJobView {
                    id: job.job_id,
                    node: job.node.clone(),
                }),
                _ => None,
            },
        }
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The word in `"status": "success"`.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SuccessWord {
    Success,
}

/// `{"status": "success", "message": …, "data": …}`: the seed API's envelope.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Envelope<T> {
    pub status: SuccessWord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub data: T,
}

impl<T> Envelope<T> {
    pub fn new(message: impl Into<Option<String>>, data: T) -> Self {
        Self {
            status: SuccessWord::Success,
            message: message.into(),
            data,
        }
    }
}

/// `{"status": "success", "message": …}` with no data (delete).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Done {
    pub status: SuccessWord,
    pub message: String,
}

impl Done {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            status: SuccessWord::Success,
            message: message.into(),
        }
    }
}

/// The `data` of start, stop and restart.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ActionData {
    pub id: Uuid,
    /// `running` or `stopped`.
    pub status: String,
    pub pid: Option<u32>,
}
