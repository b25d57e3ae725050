//! Passwords of instances that must ask for one: an instance on another machine (a
//! Slurm job's node) listens where anyone on that network reaches it, so it runs with
//! code-server's password auth and a random password per instance that only devbox
//! holds. The controller records each here when it starts or adopts such an instance;
//! the proxy signs in with it on the user's behalf and keeps code-server's session to
//! itself (the browser never sees the password or that cookie).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::config::Secret;

/// One instance's password, with the instance it belongs to (its tag): a restarted
/// instance has a new one, and a sign-in made for the old one is no longer good.
#[derive(Debug, Clone)]
pub struct InstancePassword {
    pub instance: String,
    pub password: Secret,
}

/// The passwords of the running instances that need one, by server name. Cloning
/// shares them.
#[derive(Clone, Default)]
pub struct InstancePasswords {
    by_server: Arc<RwLock<HashMap<String, InstancePassword>>>,
}

impl InstancePasswords {
    pub fn set(&self, server: &str, password: InstancePassword) {
        self.write().insert(server.to_owned(), password);
    }

    pub fn get(&self, server: &str) -> Option<InstancePassword> {
        self.by_server
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(server)
            .cloned()
    }

    pub fn remove(&self, server: &str) {
        self.write().remove(server);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, InstancePassword>> {
        // Whole entries go in and out: nothing a panicking holder could leave half-made.
        self.by_server
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A new password nobody can guess.
pub fn new_password() -> Secret {
    Secret::new(crate::sessions::secret_id())
}
