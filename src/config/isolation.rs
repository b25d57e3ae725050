//! The `isolation` section: which Unix user each owner's instances run as. By default
//! (`run_as: none`) every instance runs as devbox's own user, as a single person on a
//! laptop wants; `run_as: owner` (devbox running as root) gives every owner a uid of
//! their own. How that is done lives in [`crate::isolation`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::identity::UserName;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IsolationSettings {
    /// Who an instance runs as: `none` (devbox's own user) or `owner` (a Unix user per
    /// owner; needs devbox to run as root).
    pub run_as: RunAs,
    /// Existing Unix users for some owners (`alice: alice`). Owners not named here get
    /// a system user devbox creates, `devbox-<owner>`; servers without an owner (the
    /// admin's) run as the system user `devbox`. Never root.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub users: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunAs {
    /// Every instance runs as devbox's own user.
    #[default]
    None,
    /// Every owner's instances run as a Unix user of their own.
    Owner,
}

impl IsolationSettings {
    /// Whether instances run as their owners' users.
    pub fn per_owner(&self) -> bool {
        self.run_as == RunAs::Owner
    }

    /// Problems of this section, as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (owner, user) in &self.users {
            if let Err(err) = UserName::parse(owner) {
                problems.push((format!("isolation.users.{owner}"), err.to_string()));
            }
            if user == "root" || user.is_empty() {
                problems.push((
                    format!("isolation.users.{owner}"),
                    format!("`{user}` is refused: instances never run as root"),
                ));
            }
        }
        problems
    }
}
