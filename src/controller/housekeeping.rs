//! Clean-up of the host-wide caches: extension cache entries and git mirrors that no
//! server has used for `controller.cache_retention` are removed, once at start and then
//! every few hours (`0s` turns this off). Servers keep their own copies (hard links),
//! so nothing a server has is lost; the next server that wants a removed entry fills it
//! anew. The locks of removed entries stay in memory (a few bytes each): dropping one
//! while a clone or install waits on it would let two fill the same entry.

use std::sync::Arc;
use std::time::Duration;

use super::Context;
use crate::runtime::Runtime;

/// How often the caches are looked over.
const EVERY: Duration = Duration::from_secs(6 * 60 * 60);

/// Runs until the task is dropped with the runtime.
pub(super) async fn run<R: Runtime>(ctx: Arc<Context<R>>) {
    let retention = ctx.config.controller.cache_retention;
    if retention.get().is_zero() {
        return;
    }
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let extensions = ctx.extensions.prune_cache(retention.get()).await;
        let mirrors = Arc::clone(&ctx.git_mirrors);
        let git_mirrors = tokio::task::spawn_blocking(move || mirrors.prune(retention.get()))
            .await
            .unwrap_or_default();
        if extensions + git_mirrors > 0 {
            tracing::info!(
                extensions,
                git_mirrors,
                "removed cache entries unused for {retention}"
            );
        }
    }
}
