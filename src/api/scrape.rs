//! `GET /metrics`: devbox's Prometheus metrics ([`crate::metrics`]), for admins and for
//! the holder of `server.metrics_token` (a Prometheus that may read nothing else).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::AppState;
use crate::http::{ApiError, MetricsReader};
use crate::identity::Caller;
use crate::metrics::{METRICS, ServerFigures};

/// Where the metrics are served.
pub const METRICS_PATH: &str = "/metrics";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics))
        .with_state(state)
}

async fn metrics(
    State(state): State<AppState>,
    reader: Option<Extension<MetricsReader>>,
    caller: Option<Extension<Caller>>,
) -> Result<Response, ApiError> {
    let admin = caller.is_some_and(|Extension(caller)| caller.is_admin());
    if reader.is_none() && !admin {
        return Err(ApiError::Forbidden(
            "only admins (or server.metrics_token) may read the metrics".into(),
        ));
    }
    for figures in state.pools.figures(&state.statuses) {
        METRICS
            .pools
            .set(&figures.pool.template.name, figures.size, figures.ready);
    }
    let statuses = state.statuses.list();
    let usage = state.usage.all();
    let servers = statuses.iter().map(|status| ServerFigures {
        name: &status.name,
        owner: status.owner.as_ref().map_or("", |owner| owner.as_str()),
        phase: status.phase,
        usage: status
            .instance
            .is_some()
            .then(|| usage.get(&status.name).copied())
            .flatten(),
    });
    let text = METRICS
        .render(servers)
        .map_err(|err| ApiError::Internal(format!("cannot encode the metrics: {err}")))?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    Ok(response)
}
