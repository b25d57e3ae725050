//! Clean-up of the host-wide caches: extension cache entries and git mirrors that no
//! server has used for `controller.cache_retention` are removed, once at start and then
//! every few hours (`0s` turns this off). Servers keep their own copies (hard links),
//! so nothing a server has is lost; the next server that wants a removed entry fills it
//! anew. The locks of removed entries stay in memory (a few bytes each): dropping one
//! while a clone or install waits on it would let two fill the same entry.
//!
//! At start, before the API serves, the uploads folder is emptied: it holds only
//! uploads in flight, so whatever is there was cut off by a devbox that died (`kill -9`)
//! mid-upload and would otherwise stay forever.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Context;
use crate::runtime::Runtime;

/// How often the caches are looked over.
const EVERY: Duration = Duration::from_secs(6 * 60 * 60);

/// Where the API streams uploads while they arrive (under the state dir); an upload
/// that is kept moves to its server's folder.
pub const UPLOADS_DIR: &str = "uploads";

/// Removes every upload left in `state_dir`'s uploads folder; returns how many. Call it
/// only while no upload can be in flight (before the API serves).
pub(super) fn remove_leftover_uploads(state_dir: &Path) -> usize {
    let dir = state_dir.join(UPLOADS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(err) => {
            tracing::warn!(%err, dir = %dir.display(), "cannot look for leftover uploads");
            return 0;
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let result = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        match result {
            Ok(()) => removed += 1,
            Err(err) => {
                tracing::warn!(%err, path = %path.display(), "cannot remove a leftover upload")
            }
        }
    }
    removed
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_uploads_are_removed_and_nothing_else() {
        let state = tempfile::tempdir().unwrap();
        assert_eq!(remove_leftover_uploads(state.path()), 0, "no folder yet");
        let uploads = state.path().join(UPLOADS_DIR);
        std::fs::create_dir_all(uploads.join("odd-folder")).unwrap();
        std::fs::write(uploads.join(".upload-abc.zip"), b"half an archive").unwrap();
        std::fs::write(uploads.join("odd-folder/x"), b"x").unwrap();
        std::fs::write(state.path().join("keep.json"), b"{}").unwrap();
        assert_eq!(remove_leftover_uploads(state.path()), 2);
        assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
        assert!(state.path().join("keep.json").exists());
    }
}
