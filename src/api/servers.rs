//! `GET /servers` and `GET /servers/{id}`.

use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use super::extract::JsonBytes;
use super::extract::ServerId;
use super::views::ServerView;
use crate::http::ApiError;
use crate::identity::Caller;

/// Every server the caller may see (an admin: all), as a bare array (the seed API's
/// shape).
pub async fn list(State(state): State<AppState>, caller: Caller) -> JsonBytes<Vec<ServerView>> {
    match caller {
        Caller::Admin => state.listing.get(&state),
        Caller::User(user) => {
            let views: Vec<ServerView> = state.statuses.filter_map_all(|s| {
                (s.owner.as_ref() == Some(&user)).then(|| ServerView::new(s, &state))
            });
            JsonBytes::new(serde_json::to_vec(&views).unwrap_or_default().into())
        }
    }
}

/// One server, by id or by name.
pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
) -> Result<Json<ServerView>, ApiError> {
    let status = state.find(&caller, &id)?;
    Ok(Json(ServerView::new(&status, &state)))
}
