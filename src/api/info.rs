//! `GET /health`, `GET /config`, `GET /templates`.

use axum::Json;
use axum::extract::State;
use schemars::JsonSchema;
use serde::Serialize;

use super::AppState;
use super::views::Envelope;
use crate::config::{ExtensionGroup, PackagedAssets, ServerSettings, UiConfig};

#[derive(Serialize, JsonSchema)]
pub struct Health {
    /// `healthy`, or `degraded` while status files cannot be written (see `state_error`).
    pub status: String,
    pub service: String,
    pub version: String,
    /// Servers devbox knows.
    pub servers: usize,
    /// Why the state directory cannot be written (a full disk), while that lasts:
    /// devbox keeps serving from memory, but a restart would not see the latest status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
}

/// devbox itself answers (no authentication needed).
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let state_error = state.statuses.write_failure();
    Json(Health {
        status: if state_error.is_some() {
            "degraded"
        } else {
            "healthy"
        }
        .into(),
        service: "devbox".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        servers: state.statuses.count(),
        state_error,
    })
}

/// The parts of the config the original API shows (not code-server or controller internals).
#[derive(Serialize, JsonSchema)]
pub struct PublicConfig {
    pub extension_groups: std::collections::BTreeMap<String, ExtensionGroup>,
    pub server: PublicServerSettings,
    pub ui: UiConfig,
    pub packaged_assets: PackagedAssets,
}

#[derive(Serialize, JsonSchema)]
pub struct PublicServerSettings {
    pub default_port: u16,
    pub code_server_port_range: crate::config::PortRange,
}

impl From<&ServerSettings> for PublicServerSettings {
    fn from(server: &ServerSettings) -> Self {
        Self {
            default_port: server.default_port,
            code_server_port_range: server.code_server_port_range,
        }
    }
}

/// Extension groups, ports, UI settings and templates.
pub async fn config(State(state): State<AppState>) -> Json<Envelope<PublicConfig>> {
    let config = &state.config;
    Json(Envelope::new(
        None,
        PublicConfig {
            extension_groups: config.extension_groups.clone(),
            server: (&config.server).into(),
            ui: config.ui.clone(),
            packaged_assets: config.packaged_assets.clone(),
        },
    ))
}

/// The templates (`packaged_assets`): tabs of items.
pub async fn templates(State(state): State<AppState>) -> Json<Envelope<PackagedAssets>> {
    Json(Envelope::new(None, state.config.packaged_assets.clone()))
}
