//! Browser sessions: what a browser gets in exchange for an admin token (so that no
//! script of any page ever holds the token itself) or for a seat link. A session is a
//! random id in an `HttpOnly` cookie, known to devbox only in memory together with who
//! it signs in and what it opens ([`Scope`]): it expires after `auth.session_ttl`,
//! ends at logout or when its user's access is revoked, and a devbox restart ends them
//! all (the dashboard then asks for the token again; a seat link can be opened again
//! while it is valid).
//!
//! With IDEs on origins of their own, a dashboard session gets a one-time ticket for
//! one IDE (a minute to use it), which that IDE's origin trades for a session of its
//! own: a cookie of that host only, which opens that IDE and nothing else.
//!
//! A revocation also ends what a user has open already: IDE tunnels and log streams
//! wait on [`Sessions::until_revoked`] beside their traffic.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::identity::{Caller, UserName};

/// Sessions at once; past it the oldest go first. A login costs a few bytes, so this
/// only bounds what a client holding the token could make devbox keep.
const MAX_SESSIONS: usize = 10_000;
/// Sessions (and tickets) of one caller at once; past it that caller's oldest go
/// first. A participant who opens their seat link in a loop signs nobody else out.
const MAX_SESSIONS_PER_CALLER: usize = 32;

/// The live sessions. Cloning shares them. A `std` mutex: every critical section is a
/// map lookup or insert, never held across an `.await`.
#[derive(Clone)]
pub struct Sessions {
    ttl: Duration,
    live: Arc<Mutex<HashMap<String, Session>>>,
    /// How many times each user's access was revoked: a connection opened before the
    /// count changed ends when it does.
    revocations: Arc<watch::Sender<HashMap<UserName, u64>>>,
}

/// How long an IDE ticket may take from the dashboard's origin to the IDE's.
const TICKET_TTL: Duration = Duration::from_secs(60);

/// What a session opens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// The dashboard and the API.
    Dashboard,
    /// Server `0`'s IDE on its own origin, never the API.
    Ide(String),
    /// Once: an IDE session for `server`, whose browser then goes on to `next` (a
    /// path of the IDE).
    Ticket { server: String, next: String },
}

/// One live session.
struct Session {
    caller: Caller,
    scope: Scope,
    expires: Instant,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            live: Arc::default(),
            revocations: Arc::new(watch::Sender::new(HashMap::new())),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new dashboard session for `caller`.
    pub fn open(&self, caller: Caller) -> String {
        self.open_scoped(caller, Scope::Dashboard, self.ttl)
    }

    /// A one-time ticket, valid for a minute, that opens an IDE session for server
    /// `server` and then the IDE's path `next` ([`Sessions::redeem_ticket`]).
    pub fn open_ide_ticket(&self, caller: Caller, server: &str, next: &str) -> String {
        let scope = Scope::Ticket {
            server: server.to_owned(),
            next: next.to_owned(),
        };
        self.open_scoped(caller, scope, TICKET_TTL)
    }

    /// Trades ticket `id` for server `server`'s IDE for an IDE session: its id, and the
    /// path the browser goes on to. A ticket is good once.
    pub fn redeem_ticket(&self, id: &str, server: &str) -> Option<(String, String)> {
        let ticket = {
            let mut live = self.lock();
            // Only a ticket is used up: any other session named here stays as it is.
            if !matches!(live.get(id)?.scope, Scope::Ticket { .. }) {
                return None;
            }
            live.remove(id)?
        };
        let Scope::Ticket {
            server: for_server,
            next,
        } = ticket.scope
        else {
            return None;
        };
        (for_server == server && ticket.expires > Instant::now()).then(|| {
            let session = self.open_scoped(ticket.caller, Scope::Ide(server.to_owned()), self.ttl);
            (session, next)
        })
    }

    /// Who IDE session `id` signs in to server `server`'s IDE, while it lives.
    pub fn ide_caller(&self, id: &str, server: &str) -> Option<Caller> {
        self.lookup(id, &Scope::Ide(server.to_owned()))
    }

    /// A new session.
    fn open_scoped(&self, caller: Caller, scope: Scope, ttl: Duration) -> String {
        let id = secret_id();
        let now = Instant::now();
        let mut live = self.lock();
        let theirs: Vec<(&String, Instant)> = live
            .iter()
            .filter(|(_, session)| session.caller == caller)
            .map(|(id, session)| (id, session.expires))
            .collect();
        if theirs.len() >= MAX_SESSIONS_PER_CALLER
            && let Some(oldest) = theirs
                .iter()
                .min_by_key(|(_, expires)| *expires)
                .map(|(id, _)| (*id).clone())
        {
            live.remove(&oldest);
        }
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
                scope,
                expires: now + ttl,
            },
        );
        id
    }

    /// Who dashboard session `id` signs in, while it lives.
    pub fn caller(&self, id: &str) -> Option<Caller> {
        self.lookup(id, &Scope::Dashboard)
    }

    /// Who session `id` signs in, if it opens `scope` and lives.
    fn lookup(&self, id: &str, scope: &Scope) -> Option<Caller> {
        let mut live = self.lock();
        match live.get(id) {
            Some(session) if session.scope != *scope => None,
            Some(session) if session.expires > Instant::now() => Some(session.caller.clone()),
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends every session of `user` (their access was revoked), and every connection
    /// of theirs waiting on [`Sessions::until_revoked`].
    pub fn close_user(&self, user: &UserName) {
        self.lock()
            .retain(|_, session| session.caller != Caller::User(user.clone()));
        self.revocations.send_modify(|counts| {
            *counts.entry(user.clone()).or_default() += 1;
        });
    }

    /// Resolves when `caller`'s access is revoked after this call (never for the
    /// admin): what a long-lived connection of theirs (an IDE tunnel, a log stream)
    /// waits on beside its traffic, to end with their sessions.
    pub fn until_revoked(&self, caller: &Caller) -> impl Future<Output = ()> + Send + use<> {
        let user = caller.owner().cloned();
        let mut counts = self.revocations.subscribe();
        let seen = user
            .as_ref()
            .and_then(|user| counts.borrow().get(user).copied())
            .unwrap_or(0);
        async move {
            let Some(user) = user else {
                return std::future::pending().await;
            };
            let revoked = counts
                .wait_for(|counts| counts.get(&user).copied().unwrap_or(0) != seen)
                .await
                .is_ok();
            if !revoked {
                // Sessions gone: devbox stops, and ends its connections its own way.
                std::future::pending::<()>().await;
            }
        }
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

/// An id nobody can guess (a session's, a seat link's ticket): 244 random bits from
/// the OS, as two v4 UUIDs in 64 hex digits.
pub fn secret_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ide_tickets_are_good_once_for_their_ide_and_open_nothing_else() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let ada = Caller::User(UserName::parse("ada").expect("name"));
        let ticket = sessions.open_ide_ticket(ada.clone(), "box", "/");
        assert_eq!(
            sessions.caller(&ticket),
            None,
            "a ticket is no dashboard session"
        );
        assert_eq!(
            sessions.redeem_ticket(&ticket, "other"),
            None,
            "for its IDE only"
        );
        let dashboard = sessions.open(ada.clone());
        assert_eq!(sessions.redeem_ticket(&dashboard, "box"), None, "no ticket");
        assert_eq!(
            sessions.caller(&dashboard),
            Some(ada.clone()),
            "and not used up"
        );
        let ticket = sessions.open_ide_ticket(ada.clone(), "box", "/?folder=/w");
        let (ide, next) = sessions.redeem_ticket(&ticket, "box").expect("redeemed");
        assert_eq!(next, "/?folder=/w");
        assert_eq!(sessions.redeem_ticket(&ticket, "box"), None, "good once");
        assert_eq!(sessions.ide_caller(&ide, "box"), Some(ada.clone()));
        assert_eq!(sessions.ide_caller(&ide, "other"), None);
        assert_eq!(sessions.caller(&ide), None, "an IDE session opens no API");
        let dashboard = sessions.open(ada.clone());
        assert_eq!(sessions.ide_caller(&dashboard, "box"), None);
        sessions.close_user(&UserName::parse("ada").expect("name"));
        assert_eq!(
            sessions.ide_caller(&ide, "box"),
            None,
            "revoked with its user"
        );
    }

    #[test]
    fn one_caller_cannot_crowd_out_the_others() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let admin = sessions.open(Caller::Admin);
        let bob = Caller::User(UserName::parse("bob").expect("name"));
        let first = sessions.open(bob.clone());
        for _ in 0..(MAX_SESSIONS_PER_CALLER * 3) {
            sessions.open(bob.clone());
        }
        assert_eq!(
            sessions.caller(&admin),
            Some(Caller::Admin),
            "the admin stays"
        );
        assert_eq!(sessions.caller(&first), None, "bob's oldest went first");
        let bobs = sessions.lock().values().filter(|s| s.caller == bob).count();
        assert_eq!(bobs, MAX_SESSIONS_PER_CALLER);
    }

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

    #[tokio::test]
    async fn a_revocation_ends_the_waits_of_that_user_only() {
        use std::pin::pin;
        use std::task::Poll;
        let sessions = Sessions::new(Duration::from_secs(60));
        let ada = Caller::User(UserName::parse("ada").expect("name"));
        let bob = UserName::parse("bob").expect("name");
        let mut ada_tunnel = pin!(sessions.until_revoked(&ada));
        let mut bob_tunnel = pin!(sessions.until_revoked(&Caller::User(bob.clone())));
        let mut admin_tunnel = pin!(sessions.until_revoked(&Caller::Admin));
        let pending = |future: std::pin::Pin<&mut _>| {
            let waker = std::task::Waker::noop();
            matches!(
                std::future::Future::poll(future, &mut std::task::Context::from_waker(waker)),
                Poll::Pending
            )
        };
        assert!(pending(ada_tunnel.as_mut()));
        sessions.close_user(&bob);
        assert!(pending(ada_tunnel.as_mut()), "another user's revocation");
        assert!(!pending(bob_tunnel.as_mut()), "bob's own revocation");
        assert!(pending(admin_tunnel.as_mut()), "the admin is never revoked");
        // A connection opened after a revocation waits for the next one.
        let mut bob_again = pin!(sessions.until_revoked(&Caller::User(bob.clone())));
        assert!(pending(bob_again.as_mut()));
        sessions.close_user(&bob);
        assert!(!pending(bob_again.as_mut()));
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let first = sessions.open(Caller::Admin);
        // Many callers, each within their own bound.
        let users: Vec<Caller> = (0..1000)
            .map(|i| Caller::User(UserName::parse(&format!("u{i}")).expect("name")))
            .collect();
        for i in 0..MAX_SESSIONS {
            sessions.open(users[i % users.len()].clone());
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert_eq!(sessions.caller(&first), None);
    }
}
