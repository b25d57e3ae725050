//! The HTTP API (axum): routes, shared state, and the error type.
//!
//! Handlers never touch processes: they read the status store (and, for the routes of
//! the next milestone, write spec files and wait for the controller to converge).

mod error;
mod servers;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

pub use error::ApiError;
pub use servers::ServerView;

use crate::config::Config;
use crate::logs::LogHub;
use crate::metrics::Metrics;
use crate::status::{ServerStatus, StatusStore};

/// What handlers share; cloning is cheap (every field is a handle).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub statuses: StatusStore,
    pub logs: LogHub,
    pub metrics: Metrics,
}

impl AppState {
    /// A server by id (uuid) or by name.
    pub fn find(&self, id_or_name: &str) -> Result<ServerStatus, ApiError> {
        let statuses = self.statuses.list();
        statuses
            .into_iter()
            .find(|s| s.id.to_string() == id_or_name || s.name == id_or_name)
            .ok_or_else(|| ApiError::NotFound(format!("server `{id_or_name}` not found")))
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/servers", get(servers::list))
        .route("/servers/{id}", get(servers::get))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "service": "devbox",
        "version": env!("CARGO_PKG_VERSION"),
        "servers": state.statuses.names().len(),
    }))
}
