//! `GET /servers` and `GET /servers/{id}`.

use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use schemars::JsonSchema;
use serde::Deserialize;

use super::extract::ServerId;
use super::extract::{JsonBytes, QueryParams};
use super::views::ServerView;
use crate::http::ApiError;
use crate::identity::Caller;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListQuery {
    /// Also list the templates' pool servers waiting to be claimed (admins).
    #[serde(default)]
    pub include_pool: bool,
}

/// Every server the caller may see (an admin: all but unclaimed pool servers, unless
/// asked), as a bare array (the seed API's shape).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> JsonBytes<Vec<ServerView>> {
    match caller {
        Caller::Admin => state.listing.get(&state, query.include_pool),
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
