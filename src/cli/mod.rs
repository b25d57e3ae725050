//! The command line: argument parsing and one module per subcommand.
//!
//! This is the binary's edge, so errors are `anyhow` here; everything below returns
//! typed errors.

mod apply;
mod doctor;
mod get;
mod schema;
mod serve;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, Overrides};

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
    /// The code-server executable.
    #[arg(long, global = true, env = "DEVBOX_CODE_SERVER")]
    pub code_server: Option<PathBuf>,
    /// Bearer token: required from API clients by `serve`, sent by `--server` commands.
    #[arg(long, global = true, env = "DEVBOX_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
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
    /// Validate spec files, then write them into the specs directory.
    Apply {
        /// A spec file or a directory of them.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Delete a server's spec file (the controller stops and forgets the server).
    Delete { name: String },
    /// Check that everything devbox needs is in place.
    Doctor,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
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
        }
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
    match &cli.command {
        Command::Serve { port, bind } => {
            let config = cli.load_config(*port)?;
            serve::run(config, *bind)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { paths } => validate::run(&cli, paths),
        Command::Schema { out } => {
            schema::run(out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { name, output } => {
            get::run(&cli.load_config(None)?, name.as_deref(), *output)
        }
        Command::Apply { files } => apply::apply(&cli.load_config(None)?, files),
        Command::Delete { name } => apply::delete(&cli.load_config(None)?, name),
        Command::Doctor => doctor::run(&cli.load_config(None)?),
    }
}
