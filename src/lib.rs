//! devbox runs many code-server (VS Code in the browser) instances on one host and
//! keeps them where their spec files say they should be.
//!
//! # Layout
//!
//! - [`config`]: the global `devbox.yaml` (extension groups, ports, UI, templates,
//!   code-server and controller settings), embedded default and overrides.
//! - [`spec`]: the `DevServer` spec file, its checks, and resolution against the config.
//! - [`resources`]: an instance's limits (memory, cpus, pids) as specs write them.
//! - [`spec_files`]: writing and editing spec files (how the API changes desired state),
//!   and settling their port pins under its lock; [`spec_ports`]: the pins it reads.
//! - [`spec_actions`]: start, stop and restart as edits of a spec (for the API and CLI).
//! - [`identity`]: who is calling (the admin or a named user) and whose a server is.
//! - [`git_url`]: a git URL's scheme and host, and the rule that keeps git URLs from
//!   reaching inside the host.
//! - [`yaml`]: every YAML read and write (the YAML library, serde-saphyr, stays behind
//!   this one module).
//! - [`diagnostic`]: one located problem in a file, worded the same everywhere.
//! - [`controller`]: watches `specs/`, scans it, and runs one reconciler task per server.
//! - [`pool`]: templates' pools of prebuilt servers, kept full by a task of the
//!   controller and claimed by `create-from-template`.
//! - [`runtime`]: starting, stopping, observing and adopting instances, behind a trait,
//!   per backend ([`runtime::Backend`]): local processes, each in a cgroup of its own
//!   where the host allows ([`runtime::cgroup`]), or Slurm jobs.
//!   In unit tests, `runtime::fake` pretends to run servers, and `controller::tests`
//!   drives whole reconcilers with it under Tokio's paused clock.
//! - [`isolation`]: each owner's instances under a Unix user of their own
//!   (`isolation.run_as: owner`): the users, the state dir's layout, handing
//!   directories over.
//! - [`provision`]: workspace (git, zip, folder), user settings and extensions.
//! - [`status`]: observed status per server, persisted atomically in the state dir.
//! - [`data_dirs`]: where servers keep their data, and which names still have some.
//! - [`logs`]: per-server log files and in-memory rings; controller events.
//! - [`endpoint`]: where an instance listens (a private Unix socket, a loopback port,
//!   or a port on a cluster node) and connecting to it; [`instance_auth`]: the
//!   passwords of instances reachable by others, which the proxy signs in with.
//! - [`health`]: code-server's `/healthz`.  [`usage`]: CPU and memory per server.
//! - [`metrics`]: devbox's Prometheus metrics (`GET /metrics`).
//! - [`http`]: the front every request passes (host and origin guards, sign-in) and
//!   the server that accepts connections, plain or TLS (`server.tls`).
//! - [`api`]: the HTTP API (axum).  [`proxy`]: `/vscode/<port>/…` to the instances.
//! - [`ui`]: the embedded web dashboard.  [`cli`]: the command line.
//! - [`sessions`]: signed-in browsers.  [`seats`]: seat links, one per server.
//! - [`fsutil`]: atomic file writes.  [`duration`]: `30s`-style durations.
//! - [`digest`]: short SHA-256 hex digests as stable names.

pub mod api;
pub mod cli;
pub mod config;
pub mod controller;
pub mod data_dirs;
pub mod diagnostic;
pub mod digest;
pub mod duration;
pub mod endpoint;
mod fake_instance;
pub mod fsutil;
pub mod git_url;
pub mod health;
pub mod http;
pub mod identity;
pub mod instance_auth;
pub mod isolation;
pub mod logs;
pub mod metrics;
pub mod pool;
pub mod provision;
pub mod proxy;
pub mod resources;
pub mod runtime;
pub mod seats;
pub mod sessions;
pub mod spec;
pub mod spec_actions;
pub mod spec_files;
pub mod spec_ports;
pub mod status;
pub mod ui;
pub mod usage;
pub mod yaml;
