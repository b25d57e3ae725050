//! Dashboard sessions: what a browser gets in exchange for the API token, so that no
//! script of any page ever holds the token itself. A session is a random id in an
//! `HttpOnly` cookie, known to devbox only in memory: it expires after
//! `server.session_ttl`, ends at logout, and a devbox restart ends them all (the
//! dashboard then asks for the token again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sessions at once; past it the oldest go first. A login costs a few bytes, so this
/// only bounds what a client holding the token could make devbox keep.
const MAX_SESSIONS: usize = 10_000;

/// The live sessions. Cloning shares them. A `std` mutex: every critical section is a
/// map lookup or insert, never held across an `.await`.
#[derive(Clone)]
pub struct Sessions {
    ttl: Duration,
    live: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            live: Arc::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session's id: 244 random bits from the OS, as two v4 UUIDs.
    pub fn open(&self) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let mut live = self.lock();
        if live.len() >= MAX_SESSIONS {
            live.retain(|_, expires| *expires > now);
        }
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(id, _)| id.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), now + self.ttl);
        id
    }

    /// Whether `id` is a live session.
    pub fn is_live(&self, id: &str) -> bool {
        let mut live = self.lock();
        match live.get(id) {
            Some(expires) if *expires > Instant::now() => true,
            Some(_) => {
                live.remove(id);
                false
            }
            None => false,
        }
    }

    /// Ends session `id` (logout).
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A panic while holding the lock left a map that is still a valid map.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_expire_and_close() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let id = sessions.open();
        assert_eq!(id.len(), 64);
        assert!(sessions.is_live(&id));
        assert!(!sessions.is_live("guess"));
        sessions.close(&id);
        assert!(!sessions.is_live(&id));
        let brief = Sessions::new(Duration::ZERO);
        let gone = brief.open();
        assert!(!brief.is_live(&gone));
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let first = sessions.open();
        for _ in 0..MAX_SESSIONS {
            sessions.open();
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert!(!sessions.is_live(&first));
    }
}
