//! File events on the specs directory, reduced to "look again".
//!
//! Events carry no meaning beyond waking the controller: it re-reads the whole
//! directory (level-triggered), so coalescing many events into one wake-up is safe.

use std::path::Path;
use std::sync::Arc;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// Watches `dir` and calls `wake.notify_one()` on every change. Dropping the returned
/// watcher stops watching.
pub fn watch(dir: &Path, wake: Arc<Notify>) -> notify::Result<RecommendedWatcher> {
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(_) => wake.notify_one(),
            // An overflowed or failed watch: a wake-up makes the controller re-read everything.
            Err(err) => {
                tracing::warn!(%err, "file watcher error; re-reading specs");
                wake.notify_one();
            }
        })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
