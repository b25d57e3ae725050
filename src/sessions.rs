//! Browser sessions: what a browser gets in exchange for an admin token (so that no
//! script of any page ever holds the token itself) or for a seat link. A session is a
//! random id in an `HttpOnly` cookie, known to devbox only in memory together with who
//! it signs in: it expires after `auth.session_ttl`, ends at logout or when its user's
//! access is revoked, and a devbox restart ends them all (the dashboard then asks for
//! the token again; a seat link can be opened again while it is valid).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::identity::{Caller, UserName};

/// Sessions at once; past it the oldest go first. A login costs a few bytes, so this
/// only bounds what a client holding the token could make devbox keep.
const MAX_SESSIONS: usize = 10_000;

/// The live sessions. Cloning shares them. A `std` mutex: every critical section is a
/// map lookup or insert, never held across an `.await`.
#[derive(Clone)]
pub struct Sessions {
    ttl: Duration,
    live: Arc<Mutex<HashMap<String, Session>>>,
}

/// One live session.
struct Session {
    caller: Caller,
    expires: Instant,
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

    /// A new session for `caller`; its id holds 244 random bits from the OS, as two
    /// v4 UUIDs.
    pub fn open(&self, caller: Caller) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let mut live = self.lock();
        if live.len() >= MAX_SESSIONS {
            live.retain(|_, session| session.expires > now);
        }
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(id, _)| id.clone())
        {
            live.remove(&oldest);
        }
        live.insert(
            id.clone(),
            Session {
                caller,
                expires: now + self.ttl,
            },
        );
        id
    }

    /// Who session `id` signs in, while it lives.
    pub fn caller(&self, id: &str) -> Option<Caller> {
        let mut live = self.lock();
        match live.get(id) {
            Some(session) if session.expires > Instant::now() => Some(session.caller.clone()),
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends every session of `user` (their access was revoked).
    pub fn close_user(&self, user: &UserName) {
        self.lock()
            .retain(|_, session| session.caller != Caller::User(user.clone()));
    }

    /// Ends session `id` (logout).
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
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
        let id = sessions.open(Caller::Admin);
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.caller(&id), Some(Caller::Admin));
        assert_eq!(sessions.caller("guess"), None);
        sessions.close(&id);
        assert_eq!(sessions.caller(&id), None);
        let brief = Sessions::new(Duration::ZERO);
        let gone = brief.open(Caller::Admin);
        assert_eq!(brief.caller(&gone), None);
    }

    #[test]
    fn revoking_a_user_ends_their_sessions_only() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let ada = UserName::parse("ada").unwrap();
        let bob = UserName::parse("bob").unwrap();
        let first = sessions.open(Caller::User(ada.clone()));
        let second = sessions.open(Caller::User(ada.clone()));
        let other = sessions.open(Caller::User(bob.clone()));
        sessions.close_user(&ada);
        assert_eq!(sessions.caller(&first), None);
        assert_eq!(sessions.caller(&second), None);
        assert_eq!(sessions.caller(&other), Some(Caller::User(bob)));
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let first = sessions.open(Caller::Admin);
        for _ in 0..MAX_SESSIONS {
            sessions.open(Caller::Admin);
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert_eq!(sessions.caller(&first), None);
    }
}
