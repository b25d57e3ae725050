//! `GET /pools`: each template's pool of prebuilt servers, as the dashboard shows it
//! ("ready: 3 of 3"), with how many are on their way and how many are down.

use axum::Json;
use axum::extract::State;
use schemars::JsonSchema;
use serde::Serialize;

use super::AppState;
use super::views::Envelope;

/// One template's pool.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PoolView {
    /// The template item's name.
    pub template: String,
    pub tab: String,
    /// Servers the pool keeps now (`prebuilt`, or its schedule's count).
    pub size: u32,
    /// Running and healthy, ready to be claimed.
    pub ready: usize,
    /// Being provisioned or started.
    pub coming: usize,
    /// Failed (and tried again after a delay: see the server's `message`) or stopped.
    pub down: usize,
}

/// Every template's pool.
pub async fn list(State(state): State<AppState>) -> Json<Envelope<Vec<PoolView>>> {
    let views = state
        .pools
        .figures(&state.statuses)
        .into_iter()
        .map(|figures| PoolView {
            template: figures.pool.template.name.clone(),
            tab: figures.pool.template.tab.clone(),
            size: figures.size,
            ready: figures.ready,
            coming: figures.coming,
            down: figures.down,
        })
        .collect();
    Json(Envelope::new(None, views))
}
