//! `devbox serve`: the controller plus the HTTP server, until SIGINT or SIGTERM.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use tokio::sync::watch;

use crate::api::AppState;

use crate::config::Config;
use crate::controller::Controller;
use crate::runtime::backends::Backends;
use crate::runtime::process::ProcessRuntime;
use crate::runtime::slurm::{SlurmRuntime, SlurmSettings};
use crate::runtime::{Backend, Runtime};

/// How `devbox serve` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people; coloured only when stdout is a terminal.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's fields,
    /// and `span` (`server`, `owner`) for lines about a server.
    Json,
}

pub fn run(config: Config, bind: Option<IpAddr>, log_format: LogFormat) -> anyhow::Result<()> {
    init_tracing(log_format);
    raise_open_file_limit();
    configure_libgit2(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, bind))
}

async fn serve(mut config: Config, bind: Option<IpAddr>) -> anyhow::Result<()> {
    if let Some(bind) = bind {
        config.server.bind_address = bind;
    }
    config.read_metrics_token()?;
    let bind = config.server.bind_address;
    if !bind.is_loopback() && !config.auth_required() {
        anyhow::bail!(
            "devbox would serve other machines ({bind}) without an API token: anyone who can \
             reach port {} could run code on this host. Set a token (server.api_token_file, \
             --api-token-file or DEVBOX_API_TOKEN_FILE; `openssl rand -hex 32 > token`), or \
             bind to 127.0.0.1",
            config.server.default_port
        );
    }
    let address = SocketAddr::new(config.server.bind_address, config.server.default_port);
    // Read the certificate and bind first: a bad file or a taken port should fail
    // before any server is touched.
    let tls = config
        .server
        .tls
        .as_ref()
        .map(crate::http::Tls::load)
        .transpose()?;
    let listener = listen(address).with_context(|| format!("cannot listen on {address}"))?;
    match &config.source {
        Some(path) => tracing::info!(config = %path.display(), "configuration loaded"),
        None => tracing::info!("using the embedded default configuration"),
    }
    if config.auth_required() && !config.isolation.per_owner() {
        tracing::warn!(
            "instances run as devbox's own user: a participant's terminal can read what \
             devbox reads (its token file, its state), connect to the trusted proxy's socket \
             and to the other instances' sockets. Sign-in keeps honest participants apart; \
             it does not contain a hostile one: set isolation.run_as: owner (devbox as root; \
             see the README's Security section)"
        );
    } else if !config.auth_required() {
        tracing::warn!(
            "no API token is set: every local user of this host (and every participant's \
             terminal in an IDE) can drive devbox and open every IDE as devbox's own user; \
             fine for one person on a laptop, not for a shared host (set server.api_token_file)"
        );
    }
    let proxy_socket = match config
        .auth
        .trusted_header
        .as_ref()
        .and_then(|trusted| Some((trusted.socket.as_ref()?, trusted)))
    {
        Some((path, trusted)) => {
            let listener = crate::http::unix_listener(path, trusted.socket_group.as_deref())
                .with_context(|| {
                    format!(
                        "cannot listen on auth.trusted_header.socket {}",
                        path.display()
                    )
                })?;
            tracing::info!(socket = %path.display(), header = %trusted.name, "listening for the trusted proxy");
            Some(listener)
        }
        None => None,
    };
    let header_read_timeout = config.server.header_read_timeout.get();
    let runtime = backends(&config);
    let cgroups_owner = runtime.clone();
    let controller = Controller::new(config, runtime).inspect_err(|_| {
        // Refused before any instance ran: devbox's parent cgroup goes again.
        cgroups_owner.shut_down();
    })?;
    let ctx = controller.context();
    let app = crate::http::app(AppState::new(&ctx));
    let (stop_http, http_stopped) = watch::channel(false);
    let stopped = |mut receiver: watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut servers = vec![match tls {
        Some(tls) => tokio::spawn(crate::http::serve(
            listener,
            tls,
            app.clone(),
            header_read_timeout,
            stopped(http_stopped.clone()),
        )),
        None => tokio::spawn(crate::http::serve(
            listener,
            crate::http::Plain,
            app.clone(),
            header_read_timeout,
            stopped(http_stopped.clone()),
        )),
    }];
    if let Some(proxy_socket) = proxy_socket {
        servers.push(tokio::spawn(crate::http::serve(
            proxy_socket,
            crate::http::Plain,
            app,
            header_read_timeout,
            stopped(http_stopped),
        )));
    }
    tracing::info!(%address, scheme, "devbox listening");
    controller.run(shutdown_signal()).await?;
    let _ = stop_http.send(true);
    for server in servers {
        server.await.context("HTTP server task failed")?;
    }
    tracing::info!("devbox stopped");
    Ok(())
}

/// Connections the kernel may queue before devbox accepts them. The standard library's
/// 128 is too few for a classroom of browsers reconnecting at once: past it the kernel
/// drops their SYNs, and each dropped client (a `/health` probe included) waits a whole
/// second to retry. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `address` (reusing the address, like `TcpListener::bind`) with
/// [`LISTEN_BACKLOG`].
fn listen(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = tokio::signal::ctrl_c();
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
        }
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM; only SIGINT stops devbox");
            let _ = interrupt.await;
        }
    }
    tracing::info!("shutdown requested");
}

/// Every API client, log stream, proxied connection and code-server pipe is a file
/// descriptor, and many systems start processes with a soft limit of 1024 (a classroom's
/// browsers alone hold more). Out of descriptors, the listener accepts nothing, `/health`
/// included: axum's accept loop just waits a second and tries again, without a word in
/// the log. The hard limit is the administrator's ceiling; the soft one is ours to raise.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(err) => {
            tracing::warn!(%err, "cannot read the open file limit");
            return;
        }
    };
    // An unlimited hard limit is not a valid soft one: the kernel caps it at nr_open.
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map_or(hard, |nr_open| hard.min(nr_open));
    if soft >= ceiling {
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, ceiling, hard) {
        Ok(()) => tracing::debug!(from = soft, to = ceiling, "raised the open file limit"),
        Err(err) => tracing::warn!(%err, soft, "cannot raise the open file limit"),
    }
}

/// libgit2's process-wide settings.
///
/// - Network timeouts: a git server that accepts the connection and then stalls would
///   hang a clone forever, as the clone's own deadline only fires while data flows.
/// - No hash check of every object read: workspaces are checked out of devbox's own
///   mirrors, whose objects were hashed when they were fetched. The check on read
///   (which `git` itself does not do) was a tenth of devbox's CPU in a 30-seat
///   workshop (`benches/workshop.rs`, under `perf`). Nobody but devbox writes the
///   mirrors: without isolation, participants could change far more than an object
///   anyway (they run as devbox's user); with `isolation.run_as: owner`, the objects
///   hard-linked into workspaces stay devbox's, read-only to the instances' users.
fn configure_libgit2(config: &Config) {
    git2::opts::strict_hash_verification(false);
    let read_ms =
        i32::try_from(config.ui.workspace.git_timeout.get().as_millis()).unwrap_or(i32::MAX);
    // SAFETY: libgit2 keeps these in unsynchronised globals; this runs before the async
    // runtime (or any other thread) exists, so nothing can read them concurrently.
    let result = unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(30_000)
            .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(read_ms))
    };
    if let Err(err) = result {
        tracing::warn!(%err, "cannot set git network timeouts");
    }
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DEVBOX_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// The backends instances run on: local processes, and the config's Slurm cluster.
fn backends(config: &Config) -> Backends {
    let state_dir = &config.controller.state_dir;
    let slurm = &config.runtime.slurm;
    let settings = SlurmSettings {
        partition: slurm.partition.clone(),
        account: slurm.account.clone(),
        sbatch_args: slurm.sbatch_args.clone(),
        time_limit: slurm.time_limit.clone(),
    };
    Backends {
        local: ProcessRuntime::for_state_dir(state_dir),
        slurm: SlurmRuntime::new(settings, state_dir),
        slurm_in_use: config.runtime.default == Backend::Slurm
            || *slurm != crate::config::SlurmConfig::default(),
    }
}
