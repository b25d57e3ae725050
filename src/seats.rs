//! Seat links: one URL per server that an instructor hands to the participant who
//! sits at it. Opening the link signs the browser in as the server's owner.
//!
//! A link holds a random ticket (244 bits); devbox keeps only the ticket's SHA-256, the
//! server, the owner and the expiry, in `<state_dir>/seat-links.json` (written
//! atomically), so links survive a devbox restart and a copy of the state folder holds
//! no usable link. A link can be revoked (every link of a server at once); expired and
//! revoked entries are dropped from the file a while after, so it stays small.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::identity::UserName;

/// The file, in the state directory.
pub const SEAT_LINKS_FILE: &str = "seat-links.json";
/// How long a revoked or expired link is still known (and said to be so) before it
/// is forgotten.
const KEEP_DEAD_FOR: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Links kept at once; a bound on the file whatever an admin's script does.
const MAX_LINKS: usize = 100_000;

/// One link, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredLink {
    /// Hex SHA-256 of the ticket.
    ticket_sha256: String,
    server: String,
    owner: UserName,
    /// Seconds since the Unix epoch.
    expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<u64>,
}

/// A link just made: the ticket (shown once) and when it expires.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub ticket: String,
    pub expires_at: SystemTime,
}

/// Whose seat an opened link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub server: String,
    pub owner: UserName,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedeemError {
    #[error("this seat link is not known: check that it was copied whole")]
    Unknown,
    #[error("this seat link expired: ask for a new one")]
    Expired,
    #[error("this seat link was revoked: ask for a new one")]
    Revoked,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct SeatStoreError {
    path: PathBuf,
    source: std::io::Error,
}

/// Every seat link. Cloning shares them.
#[derive(Clone)]
pub struct SeatLinks {
    file: PathBuf,
    links: Arc<Mutex<Vec<StoredLink>>>,
}

impl SeatLinks {
    /// Reads the links of `state_dir`; a missing or unreadable file is no links (and
    /// an unreadable one is logged: its links no longer open).
    pub fn load(state_dir: &Path) -> Self {
        let file = state_dir.join(SEAT_LINKS_FILE);
        let links = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(file = %file.display(), %err, "seat links unreadable; none are valid");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        Self {
            file,
            links: Arc::new(Mutex::new(links)),
        }
    }

    /// Makes a link to `server` for `owner`, valid for `ttl`.
    pub fn issue(
        &self,
        server: &str,
        owner: &UserName,
        ttl: Duration,
    ) -> Result<NewLink, SeatStoreError> {
        let ticket = crate::sessions::secret_id();
        let expires_at = SystemTime::now() + ttl;
        let mut links = self.lock();
        let mut next = prune(&links, now_secs());
        if next.len() >= MAX_LINKS {
            next.remove(0);
        }
        next.push(StoredLink {
            ticket_sha256: digest(&ticket),
            server: server.to_owned(),
            owner: owner.clone(),
            expires_at: secs(expires_at),
            revoked_at: None,
        });
        self.save(&next)?;
        *links = next;
        Ok(NewLink { ticket, expires_at })
    }

    /// The seat `ticket` opens, if it is valid now.
    pub fn redeem(&self, ticket: &str) -> Result<Seat, RedeemError> {
        let wanted = digest(ticket);
        let links = self.lock();
        let link = links
            .iter()
            .find(|link| link.ticket_sha256 == wanted)
            .ok_or(RedeemError::Unknown)?;
        if link.revoked_at.is_some() {
            return Err(RedeemError::Revoked);
        }
        if link.expires_at <= now_secs() {
            return Err(RedeemError::Expired);
        }
        Ok(Seat {
            server: link.server.clone(),
            owner: link.owner.clone(),
        })
    }

    /// Revokes every link of `server`; returns how many were live.
    pub fn revoke_server(&self, server: &str) -> Result<usize, SeatStoreError> {
        let now = now_secs();
        let mut links = self.lock();
        let mut next = prune(&links, now);
        let mut revoked = 0;
        for link in next.iter_mut().filter(|l| l.server == server) {
            if link.revoked_at.is_none() && link.expires_at > now {
                revoked += 1;
            }
            link.revoked_at.get_or_insert(now);
        }
        self.save(&next)?;
        *links = next;
        Ok(revoked)
    }

    fn save(&self, links: &[StoredLink]) -> Result<(), SeatStoreError> {
        let failed = |source| SeatStoreError {
            path: self.file.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(links).map_err(|err| failed(err.into()))?;
        fsutil::write_atomic(&self.file, &bytes).map_err(failed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StoredLink>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The links still worth keeping at `now`: live ones, and dead ones for a while.
fn prune(links: &[StoredLink], now: u64) -> Vec<StoredLink> {
    let keep = KEEP_DEAD_FOR.as_secs();
    links
        .iter()
        .filter(|link| {
            let died = link
                .revoked_at
                .unwrap_or(link.expires_at)
                .min(link.expires_at);
            died.saturating_add(keep) > now
        })
        .cloned()
        .collect()
}

fn digest(ticket: &str) -> String {
    crate::digest::sha256_hex(ticket.as_bytes(), 32)
}

fn secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn now_secs() -> u64 {
    secs(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> UserName {
        UserName::parse("seat-ada").unwrap()
    }

    #[test]
    fn a_link_opens_its_seat_survives_a_reload_and_stores_no_ticket() {
        let dir = tempfile::tempdir().unwrap();
        let seats = SeatLinks::load(dir.path());
        let link = seats.issue("ada", &ada(), Duration::from_secs(60)).unwrap();
        assert_eq!(link.ticket.len(), 64);
        let seat = Seat {
            server: "ada".into(),
            owner: ada(),
        };
        assert_eq!(seats.redeem(&link.ticket), Ok(seat.clone()));
        assert_eq!(seats.redeem("nope"), Err(RedeemError::Unknown));
        let file = std::fs::read_to_string(dir.path().join(SEAT_LINKS_FILE)).unwrap();
        assert!(!file.contains(&link.ticket), "only the digest is stored");
        let reloaded = SeatLinks::load(dir.path());
        assert_eq!(reloaded.redeem(&link.ticket), Ok(seat));
    }

    #[test]
    fn revoked_and_expired_links_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let seats = SeatLinks::load(dir.path());
        let first = seats.issue("ada", &ada(), Duration::from_secs(60)).unwrap();
        let other = seats.issue("bob", &ada(), Duration::from_secs(60)).unwrap();
        assert_eq!(seats.revoke_server("ada").unwrap(), 1);
        assert_eq!(seats.redeem(&first.ticket), Err(RedeemError::Revoked));
        assert!(seats.redeem(&other.ticket).is_ok(), "another server's link");
        let gone = seats.issue("ada", &ada(), Duration::ZERO).unwrap();
        assert_eq!(seats.redeem(&gone.ticket), Err(RedeemError::Expired));
    }

    #[test]
    fn long_dead_links_are_forgotten() {
        let link = |expires_at, revoked_at| StoredLink {
            ticket_sha256: String::new(),
            server: "s".into(),
            owner: ada(),
            expires_at,
            revoked_at,
        };
        let now = 1_000_000_000;
        let keep = KEEP_DEAD_FOR.as_secs();
        let links = [
            link(now + 10, None),
            link(now - 10, None),
            link(now - keep - 1, None),
            link(now + 10, Some(now - keep - 1)),
        ];
        assert_eq!(prune(&links, now), links[..2].to_vec());
    }
}
