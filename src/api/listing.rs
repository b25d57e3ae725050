//! `GET /servers` from a serialized copy. Dashboards poll the list of every server, and
//! building it means a view and JSON for each one; so the bytes are kept and served
//! again until something they show changes: a status, the CPU and memory figures, or
//! (while a server runs) its uptime, which the list shows to a tenth of a second.

use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;

use super::AppState;
use super::extract::JsonBytes;
use super::views::ServerView;

/// What a serialized list depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inputs {
    statuses: u64,
    usage: u64,
    /// Tenths of a second since the epoch, when the list shows a running server.
    uptime_tick: Option<u128>,
}

struct Listing {
    inputs: Inputs,
    body: Bytes,
}

/// The two lists: without the unclaimed pool servers (`[0]`) and with them (`[1]`).
#[derive(Default)]
pub struct ListingCache {
    latest: [Mutex<Option<Listing>>; 2],
}

impl ListingCache {
    /// The list of every server (unclaimed pool servers only with `include_pool`), as
    /// JSON; built again only when its inputs changed.
    pub fn get(&self, state: &AppState, include_pool: bool) -> JsonBytes<Vec<ServerView>> {
        // Read before building: a change during the build then misses the next lookup
        // instead of hiding behind an up-to-date key.
        let tick = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            / 100;
        let mut inputs = Inputs {
            statuses: state.statuses.generation(),
            usage: state.usage.generation(),
            uptime_tick: None,
        };
        let mut latest = self.latest[usize::from(include_pool)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(listing) = latest.as_ref() {
            let wanted = Inputs {
                uptime_tick: listing.inputs.uptime_tick.map(|_| tick),
                ..inputs
            };
            if listing.inputs == wanted {
                return JsonBytes::new(listing.body.clone());
            }
        }
        let views = state.statuses.filter_map_all(|s| {
            (include_pool || s.pool.is_none()).then(|| ServerView::new(s, state))
        });
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
