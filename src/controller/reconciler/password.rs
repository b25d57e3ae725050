//! The password of an instance that must ask for one: a Slurm job listens on its
//! node, where anyone on the cluster network reaches it (see [`crate::instance_auth`]).
//! Each start makes a new one; code-server reads it from a config file in a folder
//! only the instance's user enters, devbox keeps its own copy in the server's folder
//! (only devbox reads it there), so that a restarted devbox signs in to the instances it
//! adopts, and the proxy gets it through [`crate::instance_auth::InstancePasswords`].
//! Local instances listen where only devbox connects and run without one.

use std::path::Path;

use super::ServerTask;
use crate::config::Secret;
use crate::fsutil;
use crate::instance_auth::{InstancePassword, new_password};
use crate::isolation::layout::CODE_SERVER_CONFIG;
use crate::runtime::{Backend, Runtime};
use crate::status::InstanceRecord;

/// devbox's copy, in the server's folder.
const PASSWORD_FILE: &str = "instance-password";
/// code-server's config with the password, in the instance's own `xdg-config`.
const AUTH_CONFIG: &str = "code-server-auth.yaml";

/// How the instance of one start authenticates.
pub(super) struct InstanceAuth {
    /// code-server's `--auth` and `--config` arguments.
    pub args: Vec<String>,
    pub password: Option<Secret>,
}

impl<R: Runtime> ServerTask<R> {
    /// Writes code-server's config for this start: `auth: none` for a local instance,
    /// a new password for one on another machine.
    pub(super) async fn prepare_auth(&self, backend: Backend) -> Result<InstanceAuth, String> {
        if backend == Backend::Local {
            let config_file = self.dir.join(CODE_SERVER_CONFIG);
            // code-server reads (and would otherwise create) a shared ~/.config file.
            // Not secret, and readable by the instance's user (see `isolation::layout`).
            fsutil::write_atomic_mode(&config_file, b"auth: none\ncert: false\n", 0o644)
                .map_err(|err| format!("cannot write {}: {err}", config_file.display()))?;
            return Ok(InstanceAuth {
                args: auth_args("none", &config_file),
                password: None,
            });
        }
        let password = new_password();
        let own_copy = self.dir.join(PASSWORD_FILE);
        // The SHA-256 form: code-server compares a session cookie with it directly,
        // where a plain password costs an argon2 check (~280 ms of CPU) per request.
        let hashed = crate::digest::sha256_hex(password.expose().as_bytes(), 32);
        let config = format!("auth: password\nhashed-password: {hashed}\ncert: false\n");
        let instance_config = self.instance_dir("xdg-config");
        let config_file = instance_config.path.join(AUTH_CONFIG);
        let secret = password.clone();
        let written = tokio::task::spawn_blocking(move || {
            fsutil::write_atomic_mode(&own_copy, secret.expose().as_bytes(), 0o600)
                .map_err(|err| format!("cannot write {}: {err}", own_copy.display()))?;
            // With the instance user's rights: the file is theirs, and no one else's.
            instance_config
                .run(|dir| {
                    fsutil::write_atomic_mode(&dir.join(AUTH_CONFIG), config.as_bytes(), 0o600)
                })
                .map_err(|err| err.to_string())?
                .map_err(|err| format!("cannot write code-server's password file: {err}"))
        })
        .await
        .map_err(|err| err.to_string())?;
        written?;
        Ok(InstanceAuth {
            args: auth_args("password", &config_file),
            password: Some(password),
        })
    }

    /// Hands the password of the instance `record` to the proxy.
    pub(super) fn publish_password(&self, record: &InstanceRecord, password: Option<Secret>) {
        match password {
            Some(password) => self.ctx.passwords.set(
                self.name(),
                InstancePassword {
                    instance: record.tag().to_owned(),
                    password,
                },
            ),
            None => self.ctx.passwords.remove(self.name()),
        }
    }

    /// The password of an instance an earlier devbox started, from devbox's copy.
    pub(super) fn recall_password(&self, record: &InstanceRecord) {
        self.publish_password(record, recorded_password(&self.dir, record));
    }
}

/// devbox's copy of the password of `record`, an instance of the server whose folder
/// is `dir`; `None` for an instance that runs without one.
pub(super) fn recorded_password(dir: &Path, record: &InstanceRecord) -> Option<Secret> {
    match record {
        InstanceRecord::Local(_) => None,
        InstanceRecord::Slurm(_) => read_password(&dir.join(PASSWORD_FILE)),
    }
}

fn auth_args(mode: &str, config_file: &Path) -> Vec<String> {
    vec![
        "--auth".into(),
        mode.into(),
        "--config".into(),
        config_file.to_string_lossy().into_owned(),
    ]
}

fn read_password(path: &Path) -> Option<Secret> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Some(Secret::new(text.trim())),
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(file = %path.display(), %err, "cannot read the instance's password: the proxy cannot sign in to it");
            None
        }
    }
}
