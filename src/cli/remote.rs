//! `--server URL`: the commands that drive a running devbox over its HTTP API instead
//! of reading the state directory and writing the specs directory themselves.
//!
//! An `https://` devbox is checked against Mozilla's root certificates, or, with
//! `--cacert FILE`, against the CA certificates in that file only (as `curl --cacert`
//! does), for API calls and the log stream's WebSocket alike.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::OutputFormat;

/// Longest any single call may take (a start waits for a healthy code-server).
const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// A devbox API at `base` (e.g. `http://127.0.0.1:8000`).
pub struct Remote {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// `--cacert`: the file, and a TLS client trusting only its CAs (for the log
    /// stream; the agent has its own copy).
    private_ca: Option<(PathBuf, Arc<rustls::ClientConfig>)>,
}

impl Remote {
    /// A client of the devbox at `base`, sending `token`; over https, trusting only
    /// the CA certificates in `ca_file` when one is given.
    pub fn new(base: &str, token: Option<String>, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--server must be an http:// or https:// URL, got `{base}`");
        }
        let mut tls = ureq::tls::TlsConfig::builder();
        let mut private_ca = None;
        if let Some(path) = ca_file {
            let certificates = read_ca_file(path)?;
            private_ca = Some((path.to_owned(), ws_tls_config(&certificates)?));
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certificates));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_TIMEOUT))
            .tls_config(tls.build())
            .build()
            .new_agent();
        Ok(Self {
            base,
            token,
            agent,
            private_ca,
        })
    }

    /// The devbox that `config` describes, on this host: its port on loopback (or on
    /// its bind address when that is a specific one), with its own admin token. With
    /// `server.tls`, its https `public_url` when it has one (the name its certificate
    /// is for), else `https://localhost:<port>`.
    pub fn for_local(
        config: &crate::config::Config,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let server = &config.server;
        let token = server.api_token.clone();
        if server.tls.is_some() {
            if let Some(public) = server.public_url.as_deref() {
                return Self::new(public, token, ca_file);
            }
            let host = match server.bind_address {
                ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
                std::net::IpAddr::V4(ip) => ip.to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            };
            return Self::new(
                &format!("https://{host}:{}", server.default_port),
                token,
                ca_file,
            );
        }
        let ip = if server.bind_address.is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            server.bind_address
        };
        let address = std::net::SocketAddr::new(ip, server.default_port);
        Self::new(&format!("http://{address}"), token, ca_file)
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
        let mut response = response.map_err(|err| self.unreachable(err))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("{method} {path}: cannot read the answer (HTTP {status})"))?;
        // A plain-text answer (such as devbox's to http:// on its https port) is shown.
        let value: Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "{method} {path}: answer is not JSON (HTTP {status}): {}",
                text.lines().next().unwrap_or_default()
            )
        })?;
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

impl Remote {
    /// Why a call did not get an answer, saying what to do about a certificate this
    /// client does not trust.
    fn unreachable(&self, err: ureq::Error) -> anyhow::Error {
        use rustls::{CertificateError, Error as TlsError};
        let base = &self.base;
        // rustls's verdict comes as its own error, or inside the I/O error of the read
        // that met it.
        let tls = match &err {
            ureq::Error::Rustls(tls) => Some(tls),
            ureq::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref()),
            _ => None,
        };
        match tls {
            Some(
                tls @ TlsError::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ),
            ) => match &self.private_ca {
                Some((ca_file, _)) => anyhow::anyhow!(
                    "the TLS certificate of {base} is not trusted: no CA in --cacert {} signed it ({tls})",
                    ca_file.display()
                ),
                None => anyhow::anyhow!(
                    "the TLS certificate of {base} is not trusted: it is not signed by a public CA \
                     ({tls}); if a private CA signed it, pass its certificate with --cacert FILE \
                     (or DEVBOX_CACERT=FILE)"
                ),
            },
            Some(tls @ TlsError::InvalidCertificate(_)) => {
                anyhow::anyhow!("the TLS certificate of {base} is not valid: {tls}")
            }
            _ => anyhow::Error::new(err).context(format!("cannot reach devbox at {base}")),
        }
    }
}

/// The CA certificates of the PEM file `path` (`--cacert`).
fn read_ca_file(path: &Path) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read --cacert {}", path.display()))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        let item =
            item.with_context(|| format!("--cacert {} is not a PEM file", path.display()))?;
        if let ureq::tls::PemItem::Certificate(certificate) = item {
            certificates.push(certificate);
        }
    }
    anyhow::ensure!(
        !certificates.is_empty(),
        "--cacert {} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
        path.display()
    );
    Ok(certificates)
}

/// A TLS client for the log stream's WebSocket that trusts `certificates` only.
fn ws_tls_config(
    certificates: &[ureq::tls::Certificate<'static>],
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(rustls::pki_types::CertificateDer::from(
                certificate.der().to_vec(),
            ))
            .context("--cacert holds a certificate that is not a usable CA certificate")?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(crate::http::ring_provider()))
            .with_safe_default_protocol_versions()
            .context("cannot set up TLS")?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
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
    let servers = match super::inputs::read_servers(inputs)? {
        Ok(servers) => servers,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("nothing applied: {} problem(s)", problems.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut failed = false;
    for (_, server) in servers {
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
    let tls = remote
        .private_ca
        .as_ref()
        .map(|(_, config)| tokio_tungstenite::Connector::Rustls(config.clone()));
    runtime.block_on(follow_ws(&url, remote.token.as_deref(), tls))
}

async fn follow_ws(
    url: &str,
    token: Option<&str>,
    tls: Option<tokio_tungstenite::Connector>,
) -> anyhow::Result<ExitCode> {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().context("bad WebSocket URL")?;
    if let Some(token) = token {
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {token}").parse().context("bad token")?,
        );
    }
    let (mut socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, tls)
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
