//! The command line: argument parsing and one module per subcommand.
//!
//! This is the binary's edge, so errors are `anyhow` here; everything below returns
//! typed errors.

mod apply;
mod completion;
mod describe;
mod diff;
mod doctor;
mod get;
mod inputs;
mod lifecycle;
mod local_server;
mod logs;
mod remote;
mod schema;
mod seat_links;
mod serve;
mod validate;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, Overrides};
use lifecycle::Verb;

#[derive(Debug, Parser)]
#[command(
    name = "devbox",
    version,
    about = "Run many code-server instances, declared as spec files"
)]
pub struct Cli {
    /// Config file (default: the embedded config/devbox.yaml).
    #[arg(long, global = true, env = "DEVBOX_CONFIG_PATH")]
    pub config: Option<PathBuf>,
    /// Directory of spec files.
    #[arg(long, global = true, env = "DEVBOX_SPECS_DIR")]
    pub specs: Option<PathBuf>,
    /// State directory (status, per-server data, workspaces, logs).
    #[arg(long, global = true, env = "DEVBOX_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The code-server executable (default: code_server.binary of the config; when that
    /// is the bare `code-server`, the project's .tools install, else PATH).
    #[arg(long, global = true, env = "DEVBOX_CODE_SERVER")]
    pub code_server: Option<PathBuf>,
    /// Drive the devbox API at this URL (for get, describe, apply, diff, delete, start,
    /// stop, restart, wait, logs, seat-links) instead of the local state and specs
    /// directories.
    #[arg(long, global = true, env = "DEVBOX_SERVER")]
    pub server: Option<String>,
    /// With an https:// --server: trust only the CA certificates in this PEM file (a
    /// private CA), instead of the public CAs.
    #[arg(long, global = true, env = "DEVBOX_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Bearer token: required from API clients by `serve`, sent by `--server` commands.
    #[arg(long, global = true, env = "DEVBOX_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// A file holding the bearer token (its first line), so that the token never shows
    /// on a command line or in an environment.
    #[arg(long, global = true, env = "DEVBOX_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller and the HTTP server.
    Serve {
        /// HTTP port (default: server.default_port of the config).
        #[arg(long, env = "DEVBOX_SERVER_PORT")]
        port: Option<u16>,
        /// Address to listen on (default: server.bind_address of the config).
        #[arg(long)]
        bind: Option<std::net::IpAddr>,
        /// How log lines are written to stdout: `text` for people, `json` (one object
        /// per line) for log collectors.
        #[arg(long, value_enum, env = "DEVBOX_LOG_FORMAT", default_value_t = serve::LogFormat::Text)]
        log_format: serve::LogFormat,
    },
    /// Check spec and config files (default: the config and the specs directory).
    Validate {
        /// Files or directories (searched recursively).
        paths: Vec<PathBuf>,
    },
    /// Write the JSON Schemas of the spec and the config.
    Schema {
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Show servers (read from the state directory; no running devbox needed).
    Get {
        name: Option<String>,
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Everything about one server, readable: spec, status, conditions, limits,
    /// extension results, recent events.
    Describe { name: String },
    /// Validate spec files, then write them into the specs directory.
    Apply {
        /// A spec file, a directory of them, or `-` for standard input.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Show what `apply` would change (exit 0: nothing, 1: something, 2: error).
    Diff {
        /// A spec file, a directory of them, or `-` for standard input.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Delete a server's spec file (the controller stops and forgets the server).
    Delete { name: String },
    /// Set a server's spec to running (with --server: answers once it is healthy).
    Start { name: String },
    /// Set a server's spec to stopped (with --server: answers once it has stopped).
    Stop { name: String },
    /// Restart a server, even when nothing changed (with --server: answers once healthy).
    Restart { name: String },
    /// Wait until a server is running, stopped or deleted (exit 1 on timeout, or when
    /// it fails while waited for to run).
    Wait {
        name: String,
        #[arg(long = "for", value_enum)]
        condition: wait::Condition,
        /// How long to wait at most (`90s`, `2m`, …).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Show a server's logs (code-server's output; with --server, also devbox's events).
    Logs {
        name: String,
        /// How many of the newest lines.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// Without --server: devbox's events about the server instead of its output.
        #[arg(long)]
        events: bool,
    },
    /// Check that everything devbox needs is in place.
    Doctor,
    /// Print the shell completion script (`source <(devbox completion bash)`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Internal: one git fetch or checkout, run by `serve` in a child it can kill.
    #[command(name = "__git-fetch", hide = true)]
    GitFetch,
    /// Ask the running devbox for a seat link per server, to hand to participants
    /// (with --server, or the devbox of this config on this host).
    SeatLinks {
        /// Only the servers made from this template item.
        #[arg(long)]
        template: Option<String>,
        #[arg(short, long, value_enum, default_value_t = seat_links::Format::Table)]
        output: seat_links::Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    /// The table with each server's owner and template.
    Wide,
    Json,
    Yaml,
}

impl Cli {
    fn overrides(&self, port: Option<u16>) -> Overrides {
        Overrides {
            port,
            specs_dir: self.specs.clone(),
            state_dir: self.state_dir.clone(),
            code_server: self.code_server.clone(),
            api_token: self.api_token.clone(),
            api_token_file: self.api_token_file.clone(),
        }
    }

    /// The token `--server` commands send: from `--api-token-file`, else `--api-token`.
    fn client_token(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.api_token_file else {
            return Ok(self.api_token.clone());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the API token file {}", path.display()))?;
        let token = text.lines().next().unwrap_or_default().trim();
        anyhow::ensure!(
            !token.is_empty(),
            "the API token file {} is empty",
            path.display()
        );
        Ok(Some(token.to_owned()))
    }

    /// A client of the devbox API at `url`, with the token and CA of the command line.
    fn remote(&self, url: &str) -> anyhow::Result<remote::Remote> {
        remote::Remote::new(url, self.client_token()?, self.cacert.as_deref())
    }

    fn load_config(&self, port: Option<u16>) -> anyhow::Result<Config> {
        Ok(Config::load(self.config.as_deref(), &self.overrides(port))?)
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::Serve { .. }) {
        restore_default_sigpipe();
    }
    let remote = match (&cli.server, &cli.command) {
        (
            Some(url),
            Command::Get { .. }
            | Command::Describe { .. }
            | Command::Apply { .. }
            | Command::Delete { .. }
            | Command::Start { .. }
            | Command::Stop { .. }
            | Command::Restart { .. }
            | Command::Wait { .. }
            | Command::Logs { .. },
        ) => Some(cli.remote(url)?),
        _ => None,
    };
    match (&cli.command, remote) {
        (
            Command::Serve {
                port,
                bind,
                log_format,
            },
            _,
        ) => {
            let config = cli.load_config(*port)?;
            serve::run(config, *bind, *log_format)?;
            Ok(ExitCode::SUCCESS)
        }
        (Command::Validate { paths }, _) => validate::run(&cli, paths),
        (Command::Schema { out }, _) => {
            schema::run(out)?;
            Ok(ExitCode::SUCCESS)
        }
        (Command::Get { name, output }, Some(remote)) => {
            remote::get(&remote, name.as_deref(), *output)
        }
        (Command::Get { name, output }, None) => {
            get::run(&cli.load_config(None)?, name.as_deref(), *output)
        }
        (Command::Describe { name }, Some(remote)) => describe::remote(&remote, name),
        (Command::Describe { name }, None) => describe::local(&cli.load_config(None)?, name),
        (Command::Apply { files }, Some(remote)) => remote::apply(&remote, files),
        (Command::Apply { files }, None) => apply::apply(&cli.load_config(None)?, files),
        // diff's errors are exit 2 (1 means "changes"), a devbox out of reach included.
        (Command::Diff { files }, _) if let Some(url) = &cli.server => match cli.remote(url) {
            Ok(remote) => Ok(diff::run_remote(&remote, files)),
            Err(err) => {
                eprintln!("error: {err:#}");
                Ok(ExitCode::from(2))
            }
        },
        (Command::Diff { files }, _) => match cli.load_config(None) {
            Ok(config) => Ok(diff::run(&config, files)),
            Err(err) => {
                eprintln!("error: {err:#}");
                Ok(ExitCode::from(2))
            }
        },
        (Command::Delete { name }, Some(remote)) => remote::delete(&remote, name),
        (Command::Delete { name }, None) => apply::delete(&cli.load_config(None)?, name),
        (Command::Start { name }, remote) => lifecycle_verb(&cli, remote, name, Verb::Start),
        (Command::Stop { name }, remote) => lifecycle_verb(&cli, remote, name, Verb::Stop),
        (Command::Restart { name }, remote) => lifecycle_verb(&cli, remote, name, Verb::Restart),
        (
            Command::Wait {
                name,
                condition,
                timeout,
            },
            Some(remote),
        ) => wait::remote(&remote, name, *condition, *timeout),
        (
            Command::Wait {
                name,
                condition,
                timeout,
            },
            None,
        ) => wait::local(&cli.load_config(None)?, name, *condition, *timeout),
        (
            Command::Logs {
                name,
                lines,
                follow,
                ..
            },
            Some(remote),
        ) => remote::logs(&remote, name, *lines, *follow),
        (
            Command::Logs {
                name,
                lines,
                follow,
                events,
            },
            None,
        ) => logs::run(&cli.load_config(None)?, name, *lines, *follow, *events),
        (Command::Doctor, _) => doctor::run(&cli.load_config(None)?),
        (Command::Completion { shell }, _) => Ok(completion::run(*shell)),
        (Command::GitFetch, _) => Ok(crate::provision::workspace::git_fetch_main()),
        (Command::SeatLinks { template, output }, _) => {
            let remote = match &cli.server {
                Some(url) => cli.remote(url)?,
                None => remote::Remote::for_local(&cli.load_config(None)?, cli.cacert.as_deref())?,
            };
            seat_links::run(&remote, template.as_deref(), *output)
        }
    }
}

/// Lets `devbox logs … | head` end quietly: with Rust's default (SIGPIPE ignored) the
/// next print would fail with EPIPE. Not for `serve`, where a client closing its socket
/// must be an error on that socket, not the end of devbox.
fn restore_default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called before any other thread exists; SIG_DFL involves no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// `start`, `stop` or `restart`: through the API with `--server`, else on the spec file.
fn lifecycle_verb(
    cli: &Cli,
    remote: Option<remote::Remote>,
    name: &str,
    verb: Verb,
) -> anyhow::Result<ExitCode> {
    match remote {
        Some(remote) => lifecycle::remote(&remote, name, verb),
        None => lifecycle::local(&cli.load_config(None)?, name, verb),
    }
}

/// Prints rows under a header, in columns as wide as their widest cell.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let render = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    render(header.to_vec());
    for row in rows {
        render(row.iter().map(String::as_str).collect());
    }
}
