//! The `runtime` section: which backend runs servers unless their spec says
//! (`runtime.default`), and the Slurm cluster servers with `spec.runtime: slurm` are
//! submitted to (`runtime.slurm`).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::runtime::Backend;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// The backend of a spec without `spec.runtime`: `local` (processes on this host,
    /// the default) or `slurm`.
    #[serde(default)]
    pub default: Backend,
    /// The Slurm cluster; needed only when some server runs on it.
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub slurm: SlurmConfig,
}

/// Where and how servers are submitted to Slurm. devbox runs `sbatch`, `squeue`,
/// `scontrol`, `scancel` and `sstat` from its PATH, as a cluster's users do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// `sbatch --partition`; the cluster's default partition when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `sbatch --account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// More `sbatch` arguments, as given (`--qos=interactive`, `--constraint=…`).
    #[serde(
        default,
        deserialize_with = "crate::yaml::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sbatch_args: Vec<String>,
    /// Where workspaces, user data, extensions and logs of Slurm servers live: a shared
    /// filesystem mounted at the same path on every node (default: the state dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_dir: Option<PathBuf>,
    /// `sbatch --time` (`8:00:00`, `1-00:00:00`); the partition's limit when absent. A
    /// job ended by it restarts as its restart policy says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<String>,
}

impl RuntimeSettings {
    /// Problems of this section, as (field, message).
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let slurm = &self.slurm;
        if slurm
            .shared_dir
            .as_ref()
            .is_some_and(|dir| !dir.is_absolute())
        {
            problems.push((
                "runtime.slurm.shared_dir".into(),
                "must be an absolute path (the same on every node)".into(),
            ));
        }
        for (field, value) in [
            ("partition", &slurm.partition),
            ("account", &slurm.account),
            ("time_limit", &slurm.time_limit),
        ] {
            if value.as_deref().is_some_and(|v| {
                v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control())
            }) {
                problems.push((format!("runtime.slurm.{field}"), "must be one word".into()));
            }
        }
        if let Some(arg) = slurm.sbatch_args.iter().find(|a| !a.starts_with('-')) {
            problems.push((
                "runtime.slurm.sbatch_args".into(),
                format!("`{arg}` is not an option: a job script is devbox's own"),
            ));
        }
        problems
    }
}
