//! `GET /servers` and `GET /servers/{id}`.

use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use super::extract::JsonBytes;
use super::extract::ServerId;
use super::views::ServerView;
use crate::http::ApiError;

/// Every server, as a bare array (the seed API's shape).
pub async fn list(State(state): State<AppState>) -> JsonBytes<Vec<ServerView>> {
    state.listing.get(&state)
}

/// One server, by id or by name.
pub async fn one(
    State(state): State<AppState>,
    Path(ServerId { id }): Path<ServerId>,
) -> Result<Json<ServerView>, ApiError> {
    let status = state.find(&id)?;
    Ok(Json(ServerView::new(&status, &state)))
}
