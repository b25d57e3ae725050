//! `GET /servers` from a serialized copy. Dashboards poll the list of every server, and
//! building it means a view and JSON for each one; so the bytes are kept and served
//! again until something they show changes: a status, the CPU and memory figures, or
//! (while a server runs) its uptime, which the list shows to a tenth of a second.

use std::marker::PhantomData;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{Operation, Response, StatusCode as DocStatus};
use axum::Json;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response as HttpResponse};
use schemars::JsonSchema;

use super::AppState;
use super::views::ServerView;

/// What a serialized list depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inputs {
    statuses: u64,
    metrics: u64,
    /// Tenths of a second since the epoch, when the list shows a running server.
    uptime_tick: Option<u128>,
}

struct Listing {
    inputs: Inputs,
    body: Bytes,
}

#[derive(Default)]
pub struct ListingCache {
    latest: Mutex<Option<Listing>>,
}

impl ListingCache {
    /// The list of every server, as JSON; built again only when its inputs changed.
    pub fn get(&self, state: &AppState) -> JsonBytes<Vec<ServerView>> {
        // Read before building: a change during the build then misses the next lookup
        // instead of hiding behind an up-to-date key.
        let tick = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            / 100;
        let mut inputs = Inputs {
            statuses: state.statuses.generation(),
            metrics: state.metrics.generation(),
            uptime_tick: None,
        };
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(listing) = latest.as_ref() {
            let wanted = Inputs {
                uptime_tick: listing.inputs.uptime_tick.map(|_| tick),
                ..inputs
            };
            if listing.inputs == wanted {
                return JsonBytes::new(listing.body.clone());
            }
        }
        let views = state.statuses.map_all(|s| ServerView::new(s, state));
        if views.iter().any(|v| v.uptime.is_some()) {
            inputs.uptime_tick = Some(tick);
        }
        // Serializing plain views (strings, numbers, options) cannot fail.
        let body = Bytes::from(serde_json::to_vec(&views).unwrap_or_default());
        *latest = Some(Listing {
            inputs,
            body: body.clone(),
        });
        JsonBytes::new(body)
    }
}

/// A JSON body serialized beforehand; documented as `T`.
pub struct JsonBytes<T> {
    body: Bytes,
    shape: PhantomData<T>,
}

impl<T> JsonBytes<T> {
    fn new(body: Bytes) -> Self {
        Self {
            body,
            shape: PhantomData,
        }
    }
}

impl<T> IntoResponse for JsonBytes<T> {
    fn into_response(self) -> HttpResponse {
        ([(header::CONTENT_TYPE, "application/json")], self.body).into_response()
    }
}

impl<T: JsonSchema> OperationOutput for JsonBytes<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<Response> {
        Json::<T>::operation_response(ctx, operation)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, Response)> {
        Json::<T>::inferred_responses(ctx, operation)
    }
}
