//! Provisioning: everything the reconciler does for a server before it starts its
//! code-server process — prepare the workspace folder (empty, git clone, zip archive or an
//! existing path), install the server's extensions, and write its managed user settings.
//!
//! `workspace` and `settings` are blocking (run them in `spawn_blocking`); `extensions` is
//! async, installs each distinct extension once into a host-wide cache and bounds the
//! installer processes running at once.

pub mod extensions;
pub mod settings;
pub mod workspace;

pub use extensions::{
    ExtensionOutcome, ExtensionRef, Extensions, InstallerSettings, is_valid_extension_id,
};
pub use settings::{SettingsError, apply_user_settings};
pub use workspace::{
    GitPolicy, WorkspaceError, WorkspaceSource, ZipLayout, ZipLimits, check_zip, prepare,
};
