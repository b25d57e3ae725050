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
    /// Always `healthy` when devbox answers.
    pub status: String,
    pub service: String,
    pub version: String,
    /// Servers devbox knows.
    pub servers: usize,
}

/// devbox itself answers (no authentication needed).
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "healthy".into(),
        service: "devbox".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        servers: state.statuses.names().len(),
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
