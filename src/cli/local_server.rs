//! One server as the CLI sees it without a running devbox: its spec file (as written,
//! and as this config resolves it) and the status the controller last wrote into the
//! state directory. `describe` and `wait` read servers through this.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::bail;

use crate::config::Config;
use crate::diagnostic::Diagnostic;
use crate::spec::{self, DevServer, ServerSpec, is_valid_name};
use crate::status::{self, ServerStatus};

/// A server's spec file, read.
pub struct SpecFile {
    pub path: PathBuf,
    pub text: String,
    /// The file as written; `None` when it does not even parse.
    pub parsed: Option<DevServer>,
    /// The file resolved against this config.
    pub resolved: Result<ServerSpec, Vec<Diagnostic>>,
    pub modified: Option<SystemTime>,
}

/// What the CLI knows of server `name`.
pub struct LocalServer {
    pub name: String,
    pub spec: Option<SpecFile>,
    pub status: Option<ServerStatus>,
}

impl LocalServer {
    /// Reads server `name`'s spec file and status (either may be missing).
    pub fn read(config: &Config, name: &str) -> anyhow::Result<Self> {
        if !is_valid_name(name) {
            bail!("`{name}` is not a valid server name");
        }
        let dir = &config.controller.specs_dir;
        let spec = ["yaml", "yml"]
            .iter()
            .map(|ext| dir.join(format!("{name}.{ext}")))
            .find_map(|path| {
                let text = std::fs::read_to_string(&path).ok()?;
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                Some(SpecFile {
                    parsed: DevServer::from_yaml(&path, &text).ok(),
                    resolved: spec::load(&path, &text, config),
                    path,
                    text,
                    modified,
                })
            });
        Ok(Self {
            name: name.to_owned(),
            spec,
            status: status::load(&config.controller.state_dir, name),
        })
    }

    /// Whether neither a spec nor a status exists.
    pub fn is_unknown(&self) -> bool {
        self.spec.is_none() && self.status.is_none()
    }

    /// Whether the status already answers for the current spec file: the controller
    /// recorded acting on its revision ([`Self::revision_observed`]), or wrote the
    /// status after the file last changed (the revision this config computes differs
    /// from the running devbox's when the two read different configs). `true` without
    /// a spec file.
    pub fn spec_observed(&self) -> bool {
        if self.spec.is_none() {
            return true;
        }
        self.revision_observed() || self.status_newer_than_spec()
    }

    /// Whether the controller recorded acting on the revision of the spec file as this
    /// config resolves it.
    pub fn revision_observed(&self) -> bool {
        let (Some(spec), Some(status)) = (&self.spec, &self.status) else {
            return false;
        };
        spec.resolved.as_ref().is_ok_and(|resolved| {
            status.observed_revision.as_deref() == Some(resolved.revision.as_str())
        })
    }

    /// Whether the status was written after the spec file last changed.
    fn status_newer_than_spec(&self) -> bool {
        let (Some(spec), Some(status)) = (&self.spec, &self.status) else {
            return false;
        };
        match (
            spec.modified,
            humantime::parse_rfc3339(&status.updated_at).ok(),
        ) {
            (Some(modified), Some(updated)) => updated >= modified,
            _ => false,
        }
    }

    /// The revision the controller last recorded acting on.
    pub fn observed_revision(&self) -> Option<&str> {
        self.status.as_ref()?.observed_revision.as_deref()
    }
}
