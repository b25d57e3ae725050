//! The global configuration (`config/devbox.yaml`): its types, defaults, loading and checks.
//!
//! The file keeps every key of the original tool's `devbox.yaml` (extension groups, server
//! ports, UI settings, packaged templates) with the same defaults, and adds the
//! `code_server` and `controller` sections. A copy of the default file is embedded in the
//! binary and used when no file is given. Command-line flags (which clap also fills from
//! `DEVBOX_*` environment variables) override what the file says, through [`Overrides`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostic;
use crate::duration::HumanDuration;
use crate::resources::Resources;
use crate::yaml;

mod auth;
pub mod code_server_binary;
mod isolation;
mod runtime;
mod tls;
pub use auth::{AuthSettings, Secret, TokenSource, TokenSourceError, TrustedHeader};
pub use isolation::{IsolationSettings, RunAs};
pub use runtime::{RuntimeSettings, SlurmConfig};
pub use tls::TlsSettings;

/// The default configuration, as shipped in `config/devbox.yaml`.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../config/devbox.yaml");

/// Settings JSON objects as VS Code reads them (`"editor.fontSize": 14`).
pub type SettingsMap = serde_json::Map<String, serde_json::Value>;

/// The whole `devbox.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "devbox configuration")]
pub struct Config {
    /// Reusable sets of extensions and user settings, by id (`python`, `jupyter`, …).
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub extension_groups: BTreeMap<String, ExtensionGroup>,
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub server: ServerSettings,
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub ui: UiConfig,
    /// Templates shown in the UI and used by `spec.template`.
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub packaged_assets: PackagedAssets,
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub code_server: CodeServerSettings,
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub controller: ControllerSettings,
    /// Who may sign in and how; what a user may have.
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub auth: AuthSettings,
    /// Which Unix user instances run as.
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub isolation: IsolationSettings,
    /// Which backend runs servers, and the Slurm cluster.
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub runtime: RuntimeSettings,
    /// The file this was read from; `None` for the embedded default.
    #[serde(skip)]
    #[schemars(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionGroup {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Marketplace ids (`publisher.name`, optionally `@version`) or `.vsix` files in the vsix folder.
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub extensions: Vec<String>,
    #[serde(
        default,
        deserialize_with = "crate::yaml::null_as_default",
        skip_serializing_if = "serde_json::Map::is_empty"
    )]
    pub user_settings: SettingsMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Port of devbox's own HTTP server (API, UI, proxy).
    pub default_port: u16,
    /// Address devbox listens on; `0.0.0.0` to serve other machines (set an API token then).
    pub bind_address: std::net::IpAddr,
    /// Ports handed to code-server instances (both ends included).
    pub code_server_port_range: PortRange,
    /// How long an API call that changes a server (start, stop, …) waits for the
    /// controller to report the outcome.
    pub request_timeout: HumanDuration,
    /// Bearer token required by every API route but `/health`; unset = no auth.
    /// `DEVBOX_API_TOKEN` overrides it. Prefer `api_token_file`: a config file is
    /// often readable by more people than a secret should be.
    pub api_token: Option<String>,
    /// A file holding the API token (its first line); read once at start.
    /// `--api-token-file` / `DEVBOX_API_TOKEN_FILE` override it.
    pub api_token_file: Option<PathBuf>,
    /// Other origins whose pages may call devbox (CORS, and the cross-site check on
    /// every request that changes something). Empty (the default) = devbox's own pages
    /// only. `*` allows every origin and is refused unless an API token is set.
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub cors_allowed_origins: Vec<String>,
    /// Host names (with an optional `:port`) devbox answers to besides its own
    /// (loopback names, the bind address, the host of `public_url`). Requests for any
    /// other `Host` are refused, which defeats DNS rebinding. `*` turns the check off
    /// (unsafe: any web page can then reach devbox through a rebinding name).
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub allowed_hosts: Vec<String>,
    /// The URL people open devbox at, when it is not `http://127.0.0.1:<port>` (behind
    /// a TLS proxy, or on the machine's name): its host is allowed, and its origin is
    /// devbox's own.
    pub public_url: Option<String>,
    /// Serve each IDE on an origin of its own, `<name>.<public_url's host>` (needs
    /// `public_url`, and a DNS wildcard for `*.<host>`): a page of one IDE or of an app
    /// behind it is then another origin than the dashboard and every other IDE.
    pub ide_subdomains: bool,
    /// A token that may read `GET /metrics` and nothing else (for Prometheus):
    /// `{file: /etc/devbox/metrics-token}` or `{env: VARIABLE}`. Admins may always
    /// read the metrics; without auth, everyone may.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<TokenSource>,
    /// `metrics_token` as read at load.
    #[serde(skip)]
    #[schemars(skip)]
    pub resolved_metrics_token: Option<Secret>,
    /// Serve HTTPS and WSS on `default_port` with this certificate, rather than plain
    /// HTTP. Session cookies are then `Secure`. The trusted proxy's Unix socket
    /// (`auth.trusted_header.socket`) stays plain.
    pub tls: Option<TlsSettings>,
    /// Longest a client may take to send a request's headers (and, over TLS, to
    /// complete the handshake); also how long an idle keep-alive connection stays open.
    pub header_read_timeout: HumanDuration,
    /// Memory for the proxy's shared cache of code-server's static files (the
    /// workbench's scripts, styles and fonts, which every browser loads), in MiB;
    /// 0 turns the cache off.
    pub static_cache_mb: u64,
    /// Moved to `auth.session_ttl`; still read from here (a config written for an
    /// earlier devbox), when `auth.session_ttl` is not set otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub session_ttl: Option<HumanDuration>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            default_port: 8000,
            bind_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            code_server_port_range: PortRange {
                start: 8010,
                end: 8100,
            },
            request_timeout: HumanDuration::from_secs(300),
            api_token: None,
            api_token_file: None,
            cors_allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            public_url: None,
            ide_subdomains: false,
            metrics_token: None,
            resolved_metrics_token: None,
            tls: None,
            header_read_timeout: HumanDuration::from_secs(30),
            static_cache_mb: 64,
            session_ttl: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Groups preselected in the UI's create form (none unless the file names some).
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub default_extension_groups: Vec<String>,
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub settings: UiSettings,
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub workspace: WorkspaceSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UiSettings {
    /// Milliseconds between refreshes of the server list.
    pub auto_refresh_interval: u64,
    pub show_advanced_options: bool,
    /// The dashboard's theme until a user picks one: the system's dark or light scheme
    /// (`true`), or light (`false`).
    pub enable_dark_mode: bool,
}

impl Default for UiSettings {
    fn default() -> Self {
        Self {
            auto_refresh_interval: 5000,
            show_advanced_options: false,
            enable_dark_mode: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceSettings {
    /// What the UI's create form starts with: `empty`, `github` or `zip`.
    pub default_type: String,
    pub max_upload_size_mb: u64,
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub supported_archive_types: Vec<String>,
    /// URL schemes a git workspace may use; anything else is rejected.
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub allowed_git_schemes: Vec<String>,
    /// Largest total uncompressed size of a zip workspace.
    pub max_extracted_size_mb: u64,
    /// Most entries a zip workspace may hold.
    pub max_zip_entries: usize,
    /// Longest a git clone may take, checkout included.
    pub git_timeout: HumanDuration,
    /// Largest git workspace on disk (the checkout and its `.git`); a clone that grows
    /// past it fails and leaves no workspace behind.
    pub max_workspace_mb: u64,
    /// Allow git URLs whose host is (or resolves to) a loopback, link-local or
    /// unspecified address. Off by default: such a URL reaches services inside the
    /// host (or a cloud's metadata service) on devbox's behalf.
    pub allow_local_git_hosts: bool,
}

impl Default for WorkspaceSettings {
    fn default() -> Self {
        Self {
            default_type: "empty".into(),
            max_upload_size_mb: 100,
            supported_archive_types: vec![".zip".into()],
            allowed_git_schemes: vec!["https".into(), "ssh".into()],
            max_extracted_size_mb: 1024,
            max_zip_entries: 100_000,
            git_timeout: HumanDuration::from_secs(300),
            max_workspace_mb: 1024,
            allow_local_git_hosts: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PackagedAssets {
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub tabs: Vec<TemplateTab>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateTab {
    pub name: String,
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub items: Vec<TemplateItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateItem {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Extension groups this template installs (the original tool's spelling).
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub extensions_groups: Vec<String>,
    #[serde(default)]
    pub thumbnail_url: String,
    /// Repository cloned as the workspace; empty for none.
    #[serde(default)]
    pub github_url: String,
    /// Branch, tag or commit of `github_url` to check out; the remote's default branch
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_ref: Option<String>,
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub icon_links: Vec<IconLink>,
    /// Servers of this template kept provisioned, running and unclaimed, so that
    /// `create-from-template` hands one out at once (see [`crate::pool`]).
    #[serde(default)]
    pub prebuilt: u32,
    /// The pool's size over the week, ahead of a class: the entry whose `cron` fired
    /// last sets it. A cron expression repeats, so some entry has always fired: with a
    /// schedule, `prebuilt` is not used.
    #[serde(default, deserialize_with = "crate::yaml::null_as_default")]
    pub prebuilt_schedule: Vec<PoolScale>,
}

/// One entry of a template's `prebuilt_schedule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolScale {
    /// When the size changes: five cron fields (minute hour day-of-month month
    /// day-of-week) in the host's local time, e.g. `30 8 * * MON-FRI`.
    pub cron: String,
    /// The pool's size from then on.
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IconLink {
    pub lucide_icon: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CodeServerSettings {
    /// The code-server executable: a path, or a name looked up on PATH. The default,
    /// `code-server`, runs the project's own install under `.tools/` (what
    /// scripts/install-code-server.sh makes) when there is one, else `code-server` on PATH.
    pub binary: PathBuf,
    /// Extra command-line arguments for every instance.
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub extra_args: Vec<String>,
    /// Extra environment for every instance and extension install.
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub env: BTreeMap<String, String>,
    /// JSON for code-server's `EXTENSIONS_GALLERY` (marketplace to install from); unset = Open VSX.
    pub extension_gallery: Option<String>,
    /// How long a start may take until `/healthz` answers.
    pub start_timeout: HumanDuration,
    /// How long a stop waits after SIGTERM before SIGKILL.
    pub stop_timeout: HumanDuration,
    /// How long one extension install may take.
    pub extension_install_timeout: HumanDuration,
    /// Extension installs running at once across all servers.
    pub extension_install_concurrency: usize,
    /// How instances listen: `socket` (a Unix socket only devbox can open; the
    /// default) or `tcp` (a loopback port anyone on the host can connect to).
    pub listen: ListenMode,
    /// How `binary` was decided (see [`code_server_binary::locate`]).
    #[serde(skip)]
    #[schemars(skip)]
    pub binary_source: code_server_binary::BinarySource,
}

/// How a code-server instance listens for devbox's proxy and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ListenMode {
    /// `--socket FILE --socket-mode 600` in a directory only devbox's user may enter:
    /// no TCP port, so no other local user or participant reaches the IDE directly.
    #[default]
    Socket,
    /// `--bind-addr 127.0.0.1:PORT` (the original tool's way): every local user and
    /// every participant's terminal can open any instance on its port.
    Tcp,
}

impl Default for CodeServerSettings {
    fn default() -> Self {
        Self {
            binary: PathBuf::from(code_server_binary::DEFAULT_BINARY),
            extra_args: Vec::new(),
            env: BTreeMap::new(),
            extension_gallery: None,
            start_timeout: HumanDuration::from_secs(60),
            stop_timeout: HumanDuration::from_secs(10),
            extension_install_timeout: HumanDuration::from_secs(120),
            extension_install_concurrency: 4,
            listen: ListenMode::Socket,
            binary_source: code_server_binary::BinarySource::default(),
        }
    }
}

/// What happens to running servers when devbox itself is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownPolicy {
    /// Stop every server (no code-server outlives devbox).
    #[default]
    Stop,
    /// Leave servers running; the next devbox adopts them.
    Keep,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerSettings {
    /// Directory of spec files (relative paths are from the working directory).
    pub specs_dir: PathBuf,
    /// Where devbox keeps status, per-server data, workspaces and logs.
    pub state_dir: PathBuf,
    /// Where `.vsix` extension references resolve; default `vsix/` beside the config file.
    pub vsix_dir: Option<PathBuf>,
    /// Full re-read of the specs directory, in case the file watcher missed something.
    pub resync_interval: HumanDuration,
    /// Pause after a file event before the specs are re-read, so that the events of one
    /// save or `git pull` are read together. Devbox's own writes are read at once.
    pub debounce: HumanDuration,
    /// How often a running server's health is checked.
    pub health_interval: HumanDuration,
    pub restart_backoff: Backoff,
    /// Crashes in a row (without a healthy minute between) that mark a server `failed`.
    pub crash_loop_threshold: u32,
    pub on_shutdown: ShutdownPolicy,
    /// Delete a server's workspace when its spec is deleted.
    pub purge_workspace_on_delete: bool,
    /// Size at which a server's log file is rotated (one old file is kept).
    pub log_max_bytes: u64,
    /// Log lines kept in memory per server.
    pub log_buffer_lines: usize,
    /// Bytes of log lines kept in memory per server (whichever of the two limits is
    /// reached first); a longer line is cut and marked.
    pub log_buffer_bytes: u64,
    /// Most servers devbox manages; more spec files are invalid, and the API answers 409.
    pub max_servers: usize,
    /// Extensions in the extension cache and git mirrors that no server has used for
    /// this long are removed (servers keep their own copies); `0s` keeps them forever.
    pub cache_retention: HumanDuration,
    /// A visit to a stopped (or culled, or failed) IDE by its owner or an admin starts
    /// it, rather than offering a Start button.
    pub start_on_visit: bool,
    /// Limits of every instance whose spec leaves them out (`spec.resources` has the
    /// same shape); none by default: unlimited.
    pub default_resources: Resources,
    /// Pool servers (templates' `prebuilt`) being provisioned at once, all pools
    /// together; servers users start come first and take from the same number.
    pub prebuilt_parallelism: usize,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            specs_dir: PathBuf::from("specs"),
            state_dir: PathBuf::from(".devbox"),
            vsix_dir: None,
            resync_interval: HumanDuration::from_secs(30),
            debounce: HumanDuration::from_millis(25),
            health_interval: HumanDuration::from_secs(5),
            restart_backoff: Backoff::default(),
            crash_loop_threshold: 5,
            on_shutdown: ShutdownPolicy::Stop,
            purge_workspace_on_delete: false,
            log_max_bytes: 10 * 1024 * 1024,
            log_buffer_lines: 1000,
            log_buffer_bytes: 1024 * 1024,
            max_servers: 500,
            cache_retention: HumanDuration::from_secs(30 * 24 * 60 * 60),
            start_on_visit: false,
            default_resources: Resources::default(),
            prebuilt_parallelism: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    pub initial: HumanDuration,
    pub max: HumanDuration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: HumanDuration::from_secs(1),
            max: HumanDuration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Delay before restart number `attempt` (1-based): initial · 2^(attempt-1), capped.
    pub fn delay(&self, attempt: u32) -> std::time::Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.initial
            .get()
            .saturating_mul(factor)
            .min(self.max.get())
    }
}

/// Values from the command line (or `DEVBOX_*` variables) that beat the config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub port: Option<u16>,
    pub specs_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub code_server: Option<PathBuf>,
    pub api_token: Option<String>,
    pub api_token_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config:\n{}", crate::diagnostic::join(.0))]
    Invalid(Vec<Diagnostic>),
    #[error(transparent)]
    Token(#[from] TokenSourceError),
    /// A combination that would let any web page drive devbox.
    #[error("{0}")]
    Unsafe(String),
}

impl Config {
    /// Loads `path` (or the embedded default when `None`), applies `overrides`, validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(path, &text).map_err(ConfigError::Invalid)?
            }
            None => Self::embedded_default(),
        };
        config.apply(overrides);
        if let Some(ttl) = config.server.session_ttl.take()
            && config.auth.session_ttl == AuthSettings::default().session_ttl
        {
            tracing::warn!("server.session_ttl has moved to auth.session_ttl");
            config.auth.session_ttl = ttl;
        }
        config.read_tokens()?;
        config.check_safety()?;
        // Status records and log lines name these directories; make them independent of
        // the working directory of whoever reads them later.
        for dir in [
            &mut config.controller.specs_dir,
            &mut config.controller.state_dir,
        ] {
            if let Ok(absolute) = std::path::absolute(&*dir) {
                *dir = absolute;
            }
        }
        if let Some(tls) = config.server.tls.as_mut() {
            for file in [&mut tls.cert, &mut tls.key] {
                if let Ok(absolute) = std::path::absolute(&*file) {
                    *file = absolute;
                }
            }
        }
        if let Some(source) = config.source.as_mut()
            && let Ok(absolute) = std::path::absolute(&*source)
        {
            *source = absolute;
        }
        let (binary, source) =
            code_server_binary::locate(&config.code_server.binary, overrides.code_server.is_some());
        config.code_server.binary = binary;
        config.code_server.binary_source = source;
        Ok(config)
    }

    /// The default configuration embedded in the binary.
    pub fn embedded_default() -> Self {
        // The embedded file is checked by a unit test, so failing here is a build defect.
        let mut config = Self::parse(
            Path::new("<embedded config/devbox.yaml>"),
            DEFAULT_CONFIG_YAML,
        )
        .unwrap_or_else(|diags| {
            panic!(
                "embedded default config is invalid: {}",
                crate::diagnostic::join(&diags)
            )
        });
        config.source = None;
        config
    }

    /// Parses and validates the text of a config file; every problem found is returned.
    pub fn parse(file: &Path, text: &str) -> Result<Self, Vec<Diagnostic>> {
        let mut config: Config =
            yaml::from_str(text).map_err(|err| vec![Diagnostic::from_yaml(file, err)])?;
        let problems: Vec<Diagnostic> = config
            .problems()
            .into_iter()
            .map(|(field, message)| Diagnostic::field(file, text, field, message))
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        config.source = Some(file.to_owned());
        Ok(config)
    }

    fn apply(&mut self, overrides: &Overrides) {
        if let Some(port) = overrides.port {
            self.server.default_port = port;
        }
        if let Some(dir) = &overrides.specs_dir {
            self.controller.specs_dir = dir.clone();
        }
        if let Some(dir) = &overrides.state_dir {
            self.controller.state_dir = dir.clone();
        }
        if let Some(binary) = &overrides.code_server {
            self.code_server.binary = binary.clone();
        }
        if let Some(token) = overrides.api_token.as_ref().filter(|t| !t.is_empty()) {
            self.server.api_token = Some(token.clone());
        }
        if let Some(file) = &overrides.api_token_file {
            self.server.api_token_file = Some(file.clone());
        }
    }

    /// Takes the API token from `server.api_token_file` when one is named (it beats a
    /// token written in the config or given in the environment), then reads every
    /// admin token.
    fn read_tokens(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = &self.server.api_token_file {
            self.server.api_token = Some(auth::read_token_file(path)?);
        }
        if let Some(token) = &self.server.api_token {
            let token = token.trim();
            if token.is_empty() {
                return Err(TokenSourceError::EmptyToken.into());
            }
            self.server.api_token = Some(token.to_owned());
        }
        let mut tokens: Vec<Secret> = self.server.api_token.iter().map(Secret::new).collect();
        for source in &self.auth.admin_tokens {
            tokens.push(source.read()?);
        }
        self.auth.resolved_admin_tokens = tokens;
        Ok(())
    }

    /// Reads `server.metrics_token`, for `devbox serve` only: the CLI's other commands
    /// never use it, and its variable may be set only in the service's environment.
    pub fn read_metrics_token(&mut self) -> Result<(), ConfigError> {
        self.server.resolved_metrics_token = match &self.server.metrics_token {
            Some(source) => Some(source.read()?),
            None => None,
        };
        Ok(())
    }

    /// Whether callers must identify themselves: an admin token or a trusted proxy is
    /// set. Without either, every caller is the admin.
    pub fn auth_required(&self) -> bool {
        !self.auth.resolved_admin_tokens.is_empty() || self.auth.trusted_header.is_some()
    }

    /// Refuses settings under which any web page could drive devbox.
    fn check_safety(&self) -> Result<(), ConfigError> {
        // `null` is the origin of every sandboxed frame and local file: as good as any.
        let any_origin = self
            .server
            .cors_allowed_origins
            .iter()
            .find(|o| *o == "*" || o.eq_ignore_ascii_case("null"));
        if let Some(origin) = any_origin
            && !self.auth_required()
        {
            return Err(ConfigError::Unsafe(format!(
                "server.cors_allowed_origins allows every origin (\"{origin}\") but no API token is set: \
                 any web page you visit could then create servers and run code on this host. \
                 Set server.api_token_file (or DEVBOX_API_TOKEN), or list the origins you trust"
            )));
        }
        Ok(())
    }

    /// The folder `.vsix` references resolve in.
    pub fn vsix_dir(&self) -> PathBuf {
        let base = self
            .source
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_owned)
            .unwrap_or_default();
        match &self.controller.vsix_dir {
            Some(dir) if dir.is_absolute() => dir.clone(),
            Some(dir) => base.join(dir),
            None => base.join("vsix"),
        }
    }

    /// The template item `name` in tab `tab`.
    pub fn template(&self, tab: &str, name: &str) -> Option<&TemplateItem> {
        self.packaged_assets
            .tabs
            .iter()
            .filter(|t| t.name == tab)
            .flat_map(|t| &t.items)
            .find(|item| item.name == name)
    }

    /// Whether `url` uses one of the allowed git schemes (and cannot be read as an
    /// option), and, unless `ui.workspace.allow_local_git_hosts`, whether its host is
    /// outside this host as far as its text tells (see [`crate::git_url`]).
    pub fn check_git_url(&self, url: &str) -> Result<(), String> {
        check_git_url(url, &self.ui.workspace.allowed_git_schemes)?;
        if self.ui.workspace.allow_local_git_hosts {
            return Ok(());
        }
        crate::git_url::check_host(url).map_err(|err| err.to_string())
    }

    /// Semantic checks, as (field, message) pairs.
    fn problems(&self) -> Vec<(String, String)> {
        let mut problems = self.auth.problems();
        problems.extend(self.isolation.problems());
        problems.extend(self.runtime.problems());
        if self.isolation.per_owner() && self.code_server.listen == ListenMode::Tcp {
            problems.push((
                "isolation.run_as".into(),
                "`owner` needs code_server.listen: socket: on a TCP port every user of this \
                 host could open every other owner's instance"
                    .into(),
            ));
        }
        if let Some(tls) = &self.server.tls {
            problems.extend(tls.problems(self.server.public_url.as_deref()));
        }
        if self.server.ide_subdomains && self.server.public_url.is_none() {
            problems.push((
                "server.ide_subdomains".into(),
                "needs server.public_url: each IDE is served at <name>.<its host>".into(),
            ));
        }
        let range = self.server.code_server_port_range;
        if range.start >= range.end {
            problems.push((
                "server.code_server_port_range".into(),
                format!("start ({}) must be below end ({})", range.start, range.end),
            ));
        }
        if range.start == 0 {
            problems.push((
                "server.code_server_port_range.start".into(),
                "port 0 is not allowed".into(),
            ));
        }
        if range.contains(self.server.default_port) {
            problems.push((
                "server.default_port".into(),
                format!(
                    "{} lies inside code_server_port_range {}-{}",
                    self.server.default_port, range.start, range.end
                ),
            ));
        }
        for (i, group) in self.ui.default_extension_groups.iter().enumerate() {
            if !self.extension_groups.contains_key(group) {
                problems.push((
                    format!("ui.default_extension_groups[{i}]"),
                    format!("unknown extension group `{group}`"),
                ));
            }
        }
        for (id, group) in &self.extension_groups {
            for (i, ext) in group.extensions.iter().enumerate() {
                if !is_extension_reference(ext) {
                    problems.push((
                        format!("extension_groups.{id}.extensions[{i}]"),
                        format!(
                            "`{ext}` is neither an extension id (publisher.name) nor a .vsix file"
                        ),
                    ));
                }
            }
        }
        let mut tab_names = BTreeSet::new();
        let mut pool_names = BTreeMap::new();
        for (t, tab) in self.packaged_assets.tabs.iter().enumerate() {
            if !tab_names.insert(&tab.name) {
                problems.push((
                    format!("packaged_assets.tabs[{t}].name"),
                    format!("duplicate tab `{}`", tab.name),
                ));
            }
            let mut item_names = BTreeSet::new();
            for (i, item) in tab.items.iter().enumerate() {
                let at = format!("packaged_assets.tabs[{t}].items[{i}]");
                if !item_names.insert(&item.name) {
                    problems.push((
                        format!("{at}.name"),
                        format!("duplicate template `{}` in tab `{}`", item.name, tab.name),
                    ));
                }
                for (g, group) in item.extensions_groups.iter().enumerate() {
                    if !self.extension_groups.contains_key(group) {
                        problems.push((
                            format!("{at}.extensions_groups[{g}]"),
                            format!("unknown extension group `{group}`"),
                        ));
                    }
                }
                if !item.github_url.is_empty()
                    && let Err(message) = self.check_git_url(&item.github_url)
                {
                    problems.push((format!("{at}.github_url"), message));
                }
                if let Some(reference) = &item.github_ref
                    && !crate::spec::is_valid_git_reference(reference)
                {
                    problems.push((
                        format!("{at}.github_ref"),
                        "not a valid git reference".into(),
                    ));
                }
                for (e, entry) in item.prebuilt_schedule.iter().enumerate() {
                    if let Err(err) = crate::pool::schedule::parse(&entry.cron) {
                        problems
                            .push((format!("{at}.prebuilt_schedule[{e}].cron"), err.to_string()));
                    }
                }
                if item.prebuilt > 0 || !item.prebuilt_schedule.is_empty() {
                    let pool = crate::pool::members::pool_name(&item.name);
                    if let Some(other) = pool_names.insert(pool.clone(), &item.name) {
                        problems.push((
                            format!("{at}.name"),
                            format!(
                                "its pool `{pool}` is also the pool of template `{other}`: \
                                 rename one of them"
                            ),
                        ));
                    }
                }
            }
        }
        // The most servers the pools may ever keep at once (each at its largest size).
        let pooled: u64 = self
            .packaged_assets
            .tabs
            .iter()
            .flat_map(|tab| &tab.items)
            .map(|item| {
                let scheduled = item.prebuilt_schedule.iter().map(|entry| entry.count);
                u64::from(scheduled.chain([item.prebuilt]).max().unwrap_or(0))
            })
            .sum();
        let ports = u64::from(range.end.saturating_sub(range.start)) + 1;
        if pooled > ports {
            problems.push((
                "packaged_assets".into(),
                format!(
                    "the templates' pools (prebuilt, prebuilt_schedule) keep up to {pooled} \
                     servers, more than code_server_port_range has ports ({ports})"
                ),
            ));
        }
        if pooled > self.controller.max_servers as u64 {
            problems.push((
                "packaged_assets".into(),
                format!(
                    "the templates' pools (prebuilt, prebuilt_schedule) keep up to {pooled} \
                     servers, more than controller.max_servers ({})",
                    self.controller.max_servers
                ),
            ));
        }
        if self.controller.prebuilt_parallelism == 0 {
            problems.push((
                "controller.prebuilt_parallelism".into(),
                "must be at least 1".into(),
            ));
        }
        if self.code_server.extension_install_concurrency == 0 {
            problems.push((
                "code_server.extension_install_concurrency".into(),
                "must be at least 1".into(),
            ));
        }
        problems.extend(
            self.controller
                .default_resources
                .problems("controller.default_resources"),
        );
        if self.controller.restart_backoff.initial > self.controller.restart_backoff.max {
            problems.push((
                "controller.restart_backoff".into(),
                "initial must not exceed max".into(),
            ));
        }
        problems
    }
}

/// `publisher.name`, `publisher.name@1.2.3`, or a file name ending in `.vsix`.
pub fn is_extension_reference(reference: &str) -> bool {
    reference.ends_with(".vsix") || crate::provision::extensions::is_valid_extension_id(reference)
}

/// Checks a git URL against a scheme allow-list. scp-like `[user@]host:path` counts as
/// `ssh`, `helper::address` as `helper`, and local paths as `file`.
pub fn check_git_url(url: &str, allowed: &[String]) -> Result<(), String> {
    if url.starts_with('-') {
        return Err(format!("git URL `{url}` looks like a command-line option"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("git URL contains whitespace or control characters".into());
    }
    let scheme = crate::git_url::scheme(url);
    if allowed.iter().any(|s| s.eq_ignore_ascii_case(&scheme)) {
        Ok(())
    } else {
        Err(format!(
            "git URL scheme `{scheme}` is not allowed (allowed: {})",
            allowed.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sections_and_lists_read_as_none() {
        // Every entry of a section commented out leaves the key with nothing after it.
        let text = "server:\n  # default_port: 9000\nauth:\n  admins:\nextension_groups:\n  py:\n    name: Python\n    extensions:\n    user_settings:\nui:\n  workspace:\n";
        let config = Config::parse(Path::new("devbox.yaml"), text).expect("valid");
        assert_eq!(config.server.default_port, 8000);
        assert!(config.auth.admins.is_empty());
        assert!(config.extension_groups["py"].extensions.is_empty());
        // Not everything null is empty: a port is a number.
        let refused = Config::parse(Path::new("devbox.yaml"), "server:\n  default_port:\n");
        assert!(refused.is_err());
    }

    #[test]
    fn the_session_ttl_of_an_earlier_config_is_still_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("devbox.yaml");
        std::fs::write(&path, "server:\n  session_ttl: 1h\n").expect("write");
        let config = Config::load(Some(&path), &Overrides::default()).expect("valid");
        assert_eq!(config.auth.session_ttl, HumanDuration::from_secs(3600));
    }

    #[test]
    fn an_empty_token_is_refused_and_a_padded_one_trimmed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("devbox.yaml");
        for empty in ["\"\"", "\"   \""] {
            std::fs::write(&path, format!("server:\n  api_token: {empty}\n")).expect("write");
            let err = Config::load(Some(&path), &Overrides::default())
                .expect_err("an empty token is no token");
            assert!(
                err.to_string().contains("server.api_token is empty"),
                "{err}"
            );
        }
        std::fs::write(&path, "server:\n  api_token: \" s3cret \"\n").expect("write");
        let config = Config::load(Some(&path), &Overrides::default()).expect("valid");
        assert!(config.auth_required());
        assert_eq!(config.server.api_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn pools_with_bad_schedules_or_one_name_are_refused_by_field() {
        let text = "packaged_assets:\n  tabs:\n    - name: A\n      items:\n        \
                    - {name: Rust Class, prebuilt: 2, github_ref: -x, \
                    prebuilt_schedule: [{cron: '0 8 * *', count: 3}]}\n    - name: B\n      \
                    items:\n        - {name: rust class, prebuilt: 1}\n";
        let problems = Config::parse(Path::new("devbox.yaml"), text).expect_err("refused");
        let said = crate::diagnostic::join(&problems);
        let too_many = "controller: {max_servers: 50}\npackaged_assets:\n  tabs:\n    - name: A\n      \
                        items:\n        - {name: Big, prebuilt: 2, prebuilt_schedule: \
                        [{cron: '0 8 * * *', count: 95}]}\n";
        let refused = Config::parse(Path::new("devbox.yaml"), too_many).expect_err("refused");
        let refused = crate::diagnostic::join(&refused);
        assert!(
            refused.contains("up to 95 servers, more than code_server_port_range has ports (91)"),
            "{refused}"
        );
        assert!(
            refused.contains("more than controller.max_servers (50)"),
            "{refused}"
        );
        for needle in [
            "packaged_assets.tabs[0].items[0].prebuilt_schedule[0].cron",
            "five fields",
            "packaged_assets.tabs[0].items[0].github_ref",
            "packaged_assets.tabs[1].items[0].name",
            "pool `pool-rust-class`",
        ] {
            assert!(said.contains(needle), "{needle} in {said}");
        }
    }

    #[test]
    fn run_as_owner_refuses_tcp_instances_and_root_users() {
        let text =
            "isolation:\n  run_as: owner\n  users: {ada: root}\ncode_server:\n  listen: tcp\n";
        let problems = Config::parse(Path::new("devbox.yaml"), text).expect_err("refused");
        let said = crate::diagnostic::join(&problems);
        assert!(
            said.contains("isolation.run_as") && said.contains("listen: socket"),
            "{said}"
        );
        assert!(
            said.contains("isolation.users.ada") && said.contains("never run as root"),
            "{said}"
        );
        let fine = "isolation:\n  run_as: owner\n  users: {ada: ada}\n";
        assert!(Config::parse(Path::new("devbox.yaml"), fine).is_ok());
    }

    #[test]
    fn embedded_default_is_valid_and_matches_rust_defaults() {
        let config = Config::embedded_default();
        assert_eq!(config.server, ServerSettings::default());
        assert_eq!(config.ui.default_extension_groups, ["python", "jupyter"]);
        assert_eq!(
            config.ui,
            UiConfig {
                default_extension_groups: config.ui.default_extension_groups.clone(),
                ..UiConfig::default()
            }
        );
        assert_eq!(config.code_server, CodeServerSettings::default());
        assert_eq!(config.controller, ControllerSettings::default());
        assert_eq!(config.isolation, IsolationSettings::default());
        assert!(config.extension_groups.contains_key("python"));
        assert!(!config.packaged_assets.tabs.is_empty());
    }

    #[test]
    fn overrides_win() {
        let config = Config::load(
            None,
            &Overrides {
                port: Some(9100),
                specs_dir: Some("s".into()),
                state_dir: Some("st".into()),
                code_server: Some("/x/code-server".into()),
                api_token: Some("secret".into()),
                api_token_file: None,
            },
        )
        .unwrap();
        assert_eq!(config.server.default_port, 9100);
        assert_eq!(
            config.controller.specs_dir,
            std::env::current_dir().unwrap().join("s")
        );
        assert_eq!(
            config.controller.state_dir,
            std::env::current_dir().unwrap().join("st")
        );
        assert_eq!(config.code_server.binary, PathBuf::from("/x/code-server"));
        assert_eq!(config.server.api_token.as_deref(), Some("secret"));
    }

    #[test]
    fn relative_binary_paths_become_absolute_and_bare_names_stay_path_lookups() {
        let load = |binary: &str| {
            Config::load(
                None,
                &Overrides {
                    code_server: Some(binary.into()),
                    ..Overrides::default()
                },
            )
            .unwrap()
            .code_server
            .binary
        };
        assert_eq!(
            load(".tools/code-server/bin/code-server"),
            std::env::current_dir()
                .unwrap()
                .join(".tools/code-server/bin/code-server")
        );
        assert_eq!(load("code-server"), PathBuf::from("code-server"));
    }

    #[test]
    fn reports_every_problem_with_location() {
        let text = "server:\n  default_port: 8050\n  code_server_port_range:\n    start: 8100\n    end: 8010\nui:\n  default_extension_groups: [nope]\n";
        let errs = Config::parse(Path::new("c.yaml"), text).unwrap_err();
        let fields: Vec<_> = errs.iter().filter_map(|d| d.field.as_deref()).collect();
        assert!(
            fields.contains(&"server.code_server_port_range"),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"ui.default_extension_groups[0]"),
            "{fields:?}"
        );
        let range = errs
            .iter()
            .find(|d| d.field.as_deref() == Some("server.code_server_port_range"))
            .unwrap();
        assert_eq!(range.line, Some(3));
    }

    #[test]
    fn unknown_key_is_rejected() {
        let errs = Config::parse(Path::new("c.yaml"), "server:\n  defualt_port: 1\n").unwrap_err();
        assert!(errs[0].message.contains("defualt_port"), "{}", errs[0]);
        assert_eq!(errs[0].line, Some(2));
    }

    #[test]
    fn git_url_policy() {
        let allowed = vec!["https".to_owned(), "ssh".to_owned()];
        assert!(check_git_url("https://github.com/a/b.git", &allowed).is_ok());
        assert!(check_git_url("git@github.com:a/b.git", &allowed).is_ok());
        assert!(check_git_url("file:///tmp/repo", &allowed).is_err());
        assert!(check_git_url("/tmp/repo", &allowed).is_err());
        assert!(check_git_url("--upload-pack=touch /tmp/x", &allowed).is_err());
        assert!(check_git_url("ext::sh -c touch", &allowed).is_err());
        // scp-like without a user is ssh to libgit2, not a local path.
        let with_file = vec!["file".to_owned()];
        assert!(check_git_url("localhost:repo.git", &with_file).is_err());
        assert!(check_git_url("ext::ssh host", &allowed).is_err());
    }

    #[test]
    fn local_git_hosts_are_refused_unless_allowed() {
        let mut config = Config::embedded_default();
        let err = config
            .check_git_url("https://127.0.0.1:9/r.git")
            .unwrap_err();
        assert!(err.contains("ui.workspace.allow_local_git_hosts"), "{err}");
        assert!(config.check_git_url("https://github.com/a/b.git").is_ok());
        config.ui.workspace.allow_local_git_hosts = true;
        assert!(config.check_git_url("https://127.0.0.1:9/r.git").is_ok());
        assert!(
            config.check_git_url("ftp://127.0.0.1/r.git").is_err(),
            "schemes still apply"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            initial: HumanDuration::from_millis(100),
            max: HumanDuration::from_millis(500),
        };
        assert_eq!(b.delay(1).as_millis(), 100);
        assert_eq!(b.delay(2).as_millis(), 200);
        assert_eq!(b.delay(3).as_millis(), 400);
        assert_eq!(b.delay(4).as_millis(), 500);
        assert_eq!(b.delay(100).as_millis(), 500);
    }
}
