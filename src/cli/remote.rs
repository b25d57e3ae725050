//! `--server URL`: the commands that drive a running devbox over its HTTP API instead
//! of reading the state directory and writing the specs directory themselves.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::OutputFormat;
use crate::spec::DevServer;

/// Longest any single call may take (a start waits for a healthy code-server).
const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// A devbox API at `base` (e.g. `http://127.0.0.1:8000`).
pub struct Remote {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Remote {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!("--server must be an http:// URL, got `{base}`");
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_TIMEOUT))
            .build()
            .new_agent();
        Ok(Self { base, token, agent })
    }

    /// The devbox that `config` describes, on this host: its port on loopback (or on
    /// its bind address when that is a specific one), with its own admin token.
    pub fn for_local(config: &crate::config::Config) -> anyhow::Result<Self> {
        let server = &config.server;
        let ip = if server.bind_address.is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            server.bind_address
        };
        let address = std::net::SocketAddr::new(ip, server.default_port);
        Self::new(&format!("http://{address}"), server.api_token.clone())
    }

    /// The URL of the devbox this client talks to.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub(super) fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<T> {
        self.send(method, path, body, false)?
            .with_context(|| format!("{method} {path}: no answer"))
    }

    /// [`Remote::call`], with `None` for a 404 (what is asked for does not exist).
    pub(super) fn call_unless_missing<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Option<T>> {
        self.send(method, path, body, true)
    }

    fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        missing_is_none: bool,
    ) -> anyhow::Result<Option<T>> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET", _) => with_auth(self.agent.get(&url), auth.as_deref()).call(),
            ("DELETE", _) => with_auth(self.agent.delete(&url), auth.as_deref()).call(),
            ("POST", None) => with_auth(self.agent.post(&url), auth.as_deref()).send_empty(),
            ("PUT", Some(body)) => with_auth(self.agent.put(&url), auth.as_deref()).send_json(body),
            _ => bail!("unsupported call {method} {path}"),
        };
        let mut response =
            response.with_context(|| format!("cannot reach devbox at {}", self.base))?;
        let status = response.status();
        let value: Value = response
            .body_mut()
            .read_json()
            .with_context(|| format!("{method} {path}: answer is not JSON (HTTP {status})"))?;
        if missing_is_none && status == ureq::http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let message = value["error"].as_str().unwrap_or("(no error message)");
            bail!("{method} {path}: HTTP {}: {message}", status.as_u16());
        }
        serde_json::from_value(value)
            .map(Some)
            .with_context(|| format!("{method} {path}: unexpected answer"))
    }
}

fn with_auth<B>(request: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(value) => request.header("Authorization", value),
        None => request,
    }
}

/// `devbox --server URL get [NAME]`.
pub fn get(remote: &Remote, name: Option<&str>, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let mut servers: Vec<Value> = remote.call("GET", "/servers", None)?;
    if let Some(name) = name {
        servers.retain(|s| s["slug"] == name || s["name"] == name || s["id"] == name);
        if servers.is_empty() {
            bail!("no server `{name}` on {}", remote.base);
        }
    }
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&servers)?),
        OutputFormat::Yaml => print!("{}", crate::yaml::to_string(&servers)?),
        OutputFormat::Table | OutputFormat::Wide => {
            let wide = output == OutputFormat::Wide;
            let rows: Vec<Vec<String>> = servers
                .iter()
                .map(|s| {
                    let mut cells = vec![
                        text(&s["slug"]),
                        text(&s["status"]),
                        text(&s["port"]),
                        text(&s["pid"]),
                        text(&s["uptime"]),
                        text(&s["message"])
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    ];
                    if wide {
                        cells.splice(1..1, [text(&s["owner"]), text(&s["template"])]);
                    }
                    cells
                })
                .collect();
            let mut header = vec!["NAME", "STATUS", "PORT", "PID", "UPTIME", "MESSAGE"];
            if wide {
                header.splice(1..1, ["OWNER", "TEMPLATE"]);
            }
            super::print_table(&header, &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON value as a table cell: `-` for none.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `devbox --server URL apply -f FILE…|-`: each spec is sent whole; the devbox checks it.
pub fn apply(remote: &Remote, inputs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (inputs, mut problems) = super::inputs::read(inputs)?;
    let mut servers = Vec::new();
    for input in &inputs {
        match DevServer::from_yaml(&input.name, &input.text) {
            Ok(server) => servers.push(server),
            Err(diag) => problems.push(diag),
        }
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        eprintln!("nothing applied: {} problem(s)", problems.len());
        return Ok(ExitCode::FAILURE);
    }
    let mut failed = false;
    for server in servers {
        let name = server.metadata.name.clone();
        let body = serde_json::to_value(&server)?;
        match remote.call::<Value>("PUT", &format!("/specs/{name}"), Some(&body)) {
            Ok(answer) => println!("{} {name}", answer["message"].as_str().unwrap_or("applied")),
            Err(err) => {
                eprintln!("{name}: {err:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `devbox --server URL delete NAME`.
pub fn delete(remote: &Remote, name: &str) -> anyhow::Result<ExitCode> {
    let _: Value = remote.call("DELETE", &format!("/servers/{name}"), None)?;
    println!("deleted {name}");
    Ok(ExitCode::SUCCESS)
}

/// `devbox --server URL logs NAME [-n N] [-f]`.
pub fn logs(remote: &Remote, name: &str, lines: usize, follow: bool) -> anyhow::Result<ExitCode> {
    if !follow {
        let answer: Value =
            remote.call("GET", &format!("/servers/{name}/logs?lines={lines}"), None)?;
        for line in answer["data"]["logs"].as_array().into_iter().flatten() {
            println!("{}", line.as_str().unwrap_or_default());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let url = format!(
        "ws{}/ws/logs/{name}?lines={lines}",
        remote.base.trim_start_matches("http")
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(follow_ws(&url, remote.token.as_deref()))
}

async fn follow_ws(url: &str, token: Option<&str>) -> anyhow::Result<ExitCode> {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().context("bad WebSocket URL")?;
    if let Some(token) = token {
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {token}").parse().context("bad token")?,
        );
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    while let Some(message) = socket.next().await {
        match message.context("log stream broken")? {
            Message::Text(text) => {
                let line: Value = serde_json::from_str(&text).unwrap_or_default();
                match line["type"].as_str() {
                    Some("log") => println!(
                        "[{}] {} {}: {}",
                        line["timestamp"].as_str().unwrap_or_default(),
                        line["level"].as_str().unwrap_or_default(),
                        line["source"].as_str().unwrap_or_default(),
                        line["message"].as_str().unwrap_or_default()
                    ),
                    _ => eprintln!("{}", line["message"].as_str().unwrap_or(&text)),
                }
            }
            Message::Close(frame) => {
                if let Some(frame) = frame.filter(|f| u16::from(f.code) >= 4000) {
                    bail!("{}", frame.reason);
                }
                break;
            }
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
