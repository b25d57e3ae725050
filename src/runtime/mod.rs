//! The runtime: how a server's instance is started, stopped, observed and adopted.
//!
//! The reconciler only talks to the [`Runtime`] trait. Two backends implement it:
//! [`process::ProcessRuntime`] runs code-server as local processes, and
//! [`slurm::SlurmRuntime`] as Slurm jobs; [`backends::Backends`] hands each instance
//! to the backend its spec names (`spec.runtime`) or its record is tagged with.

pub mod backends;
pub mod cgroup;
#[cfg(test)]
pub mod fake;
pub mod process;
pub mod procfs;
pub mod slurm;

use std::collections::HashSet;
use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use crate::endpoint::{Endpoint, EndpointError};
use crate::health::{HealthClient, HealthError, Healthz};
use crate::isolation::Account;
use crate::resources::Resources;
use crate::status::InstanceRecord;

/// The variables of devbox's own environment an instance or an extension install
/// inherits: what a shell, git, Node and the marketplace need (the user, the locale,
/// the time zone, proxies and CA certificates). Everything else stays with devbox:
/// whoever uses an IDE can read its environment, and devbox's may hold secrets (its
/// API token, a cloud's credentials); some would even change code-server
/// (`VSCODE_IPC_HOOK_CLI` hands the folder to another instance, see design.md;
/// `PASSWORD`, `PORT`, `CODE_SERVER_CONFIG`).
const INHERITED_ENV: [&str; 17] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "NODE_EXTRA_CA_CERTS",
];

/// Families of inherited variables, by prefix: the locale's categories and the CA
/// certificate paths OpenSSL reads.
const INHERITED_ENV_PREFIXES: [&str; 2] = ["LC_", "SSL_CERT_"];

fn is_inherited(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    INHERITED_ENV.iter().any(|kept| name == kept.as_bytes())
        || INHERITED_ENV_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix.as_bytes()))
}

/// The variables of devbox's environment a process it starts may see, with their
/// values ([`INHERITED_ENV`]), for a command whose environment starts empty.
pub fn inherited_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| is_inherited(name))
        .collect()
}

/// The variables of devbox's environment an instance or an extension install must not
/// see: all but [`INHERITED_ENV`]. Variables the config or a spec sets explicitly are
/// added after this removal, so they still reach the instance.
pub fn scrubbed_env() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| !is_inherited(name))
        .collect()
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn only_what_a_shell_and_node_need_is_inherited() {
        for kept in [
            "PATH",
            "HOME",
            "LANG",
            "LC_ALL",
            "https_proxy",
            "SSL_CERT_FILE",
        ] {
            assert!(is_inherited(kept.as_ref()), "{kept}");
        }
        for dropped in [
            "DEVBOX_API_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "VSCODE_IPC_HOOK_CLI",
            "PASSWORD",
            "PORT",
            "CODE_SERVER_CONFIG",
            "PATHX",
        ] {
            assert!(!is_inherited(dropped.as_ref()), "{dropped}");
        }
    }
}

/// Which backend runs a server.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Processes on devbox's own host.
    #[default]
    Local,
    /// A Slurm job per server, on the cluster of `runtime.slurm`.
    Slurm,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Slurm => "slurm",
        }
    }
}

/// Everything needed to launch one instance.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    /// Which backend is to run it (the spec's `runtime`).
    pub backend: Backend,
    pub server: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Inherited variables to remove.
    pub env_remove: Vec<OsString>,
    /// Where the instance listens (its arguments say so too); recorded in its
    /// [`InstanceRecord`], so that a restarted devbox connects to it the same way. A
    /// backend that places instances on other machines picks the port there and says
    /// where through [`Instance::placement`].
    pub endpoint: Endpoint,
    pub working_dir: PathBuf,
    /// stdout and stderr are appended here.
    pub log_file: PathBuf,
    /// Which devbox the instance belongs to (its state dir): every process of the
    /// instance is marked with it, so that a devbox killed before it could record an
    /// instance finds it again (see [`Runtime::sweep_unrecorded`]).
    pub owner: String,
    /// Limits of the instance (the spec's, else the config's defaults).
    pub resources: Resources,
    /// The Unix user the instance runs as (`isolation.run_as: owner`); `None`:
    /// devbox's own.
    pub run_as: Option<Account>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    Code(i32),
    Signal(i32),
    /// An adopted process (not our child) vanished; its exit status is unknowable.
    Unknown,
}

impl ExitInfo {
    pub fn is_success(self) -> bool {
        self == ExitInfo::Code(0)
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitInfo::Code(code) => write!(f, "exit code {code}"),
            ExitInfo::Signal(signal) => write!(f, "signal {signal}"),
            ExitInfo::Unknown => f.write_str("unknown exit status"),
        }
    }
}

/// A running instance: its identity and a receiver that turns `Some` when it exits.
#[derive(Debug, Clone)]
pub struct Instance {
    pub record: InstanceRecord,
    pub exited: watch::Receiver<Option<ExitInfo>>,
    /// What the backend learns after the start (a queued job: why it waits, then
    /// where it runs); `None` from a backend that knows everything at the start.
    pub placement: Option<watch::Receiver<Placement>>,
}

/// Where a started instance is, for backends that place it themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Not running yet, for this reason (Slurm's pending reason: `Resources`,
    /// `Priority`…).
    Waiting(String),
    /// Running; its record now says where (node, address).
    Placed(InstanceRecord),
    /// It can never run as asked (more memory than any node has, say); the backend
    /// has withdrawn it.
    Impossible(String),
}

impl Instance {
    pub fn exit_status(&self) -> Option<ExitInfo> {
        *self.exited.borrow()
    }

    /// Resolves when the instance has exited.
    pub async fn wait(&mut self) -> ExitInfo {
        wait_exit(&mut self.exited).await
    }
}

/// Resolves when `exited` reports an exit.
pub async fn wait_exit(exited: &mut watch::Receiver<Option<ExitInfo>>) -> ExitInfo {
    match exited.wait_for(Option::is_some).await {
        Ok(status) => status.unwrap_or(ExitInfo::Unknown),
        // The watcher task is gone; so is anything it could tell us.
        Err(_) => ExitInfo::Unknown,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot open log file {path}: {source}")]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}{}", spawn_hint(.source))]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("processes of group {pgid} still alive after SIGKILL")]
    Unkillable { pgid: u32 },
    #[error(transparent)]
    Socket(#[from] EndpointError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Slurm(#[from] slurm::SlurmError),
}

impl RuntimeError {
    /// Whether the same start would fail the same way: the backend refused what the
    /// spec asks (Slurm: more memory than any node has).
    pub fn is_permanent(&self) -> bool {
        matches!(self, RuntimeError::Slurm(slurm::SlurmError::Refused { .. }))
    }
}

fn spawn_hint(err: &std::io::Error) -> &'static str {
    if err.kind() == std::io::ErrorKind::NotFound {
        " (set code_server.binary in the config or DEVBOX_CODE_SERVER; scripts/install-code-server.sh installs one)"
    } else {
        ""
    }
}

/// The narrow interface between the reconciler and whatever runs servers.
pub trait Runtime: Send + Sync + 'static {
    /// Starts an instance; returns once the process exists (not yet healthy).
    fn start(
        &self,
        plan: &LaunchPlan,
    ) -> impl Future<Output = Result<Instance, RuntimeError>> + Send;

    /// Stops an instance and everything it spawned: a polite signal, `grace` to exit,
    /// then force. Returns once nothing of it is left.
    fn stop(
        &self,
        record: &InstanceRecord,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Takes over an instance recorded by an earlier devbox, if it still runs.
    fn adopt(&self, record: &InstanceRecord) -> impl Future<Output = Option<Instance>> + Send;

    /// Kills what is left of an instance after its launcher is gone (children can hold
    /// the port for seconds). Never touches anything that is not that instance's, even
    /// if the process group id has been reused.
    fn clean_up(&self, record: &InstanceRecord) -> impl Future<Output = ()> + Send;

    /// Ends every instance of `owner` whose tag is not in `recorded`: an earlier devbox
    /// started them and was killed before it could record them, so no spec can claim
    /// them. Returns the tags of the instances ended. For the start of devbox, before
    /// any instance is started.
    fn sweep_unrecorded(
        &self,
        owner: &str,
        recorded: &HashSet<String>,
    ) -> impl Future<Output = Vec<String>> + Send;

    /// Why resource limits cannot be enforced on instances of `backend`; `None` when
    /// they are.
    fn limits_unenforced(&self, backend: Backend) -> Option<&str>;

    /// What ended an instance that exited with `exit`, when the runtime knows more than
    /// the exit status: `out of memory (limit 2 GiB)` when the kernel killed it for
    /// memory. Ask before [`Runtime::clean_up`], which forgets the instance.
    fn exit_reason(&self, record: &InstanceRecord, exit: ExitInfo) -> Option<String>;

    /// devbox stops: gives back what the runtime holds on the host (its parent cgroup,
    /// once no instance is left in it). Blocking.
    fn shut_down(&self);

    /// Asks the instance at `endpoint` for its health: code-server's `/healthz` over
    /// `client`, unless the runtime knows better (a test's in-memory instances do).
    fn probe(
        &self,
        client: &HealthClient,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> impl Future<Output = Result<Healthz, HealthError>> + Send {
        client.check(endpoint, timeout)
    }
}
