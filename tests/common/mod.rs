//! Test harness: a real `devbox serve` on free loopback ports, with its own config,
//! specs directory and state directory in a temp dir, driven through real files and
//! real HTTP. Every wait polls with a deadline; nothing sleeps a fixed time to wait
//! for state.

#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite;

#[allow(dead_code)]
pub mod cgroups;
mod code_server;
mod direct;
pub mod pki;
pub mod procs;
pub mod seats;
#[allow(dead_code)]
pub mod slurm;
pub mod trusted_proxy;
pub mod users;
// Not every bench or test binary starts code-server.
#[allow(unused_imports)]
pub use code_server::code_server;
#[allow(unused_imports)]
pub use direct::{Direct, DirectReply};

pub fn devbox_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_devbox"))
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Where the kernel picks source ports for outgoing connections: a port in that range
/// can be taken by any connection while a devbox under test is down, and then devbox
/// cannot listen on it again when it restarts.
fn ephemeral_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// `n` consecutive free ports, all below the kernel's ephemeral range.
pub fn free_ports(n: u16) -> u16 {
    // Tests of one binary run in parallel threads: hand each call its own window after
    // the previous one (never overlapping), starting at a place derived from the pid so
    // that test binaries run one after another rarely meet either.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    const LOWEST: u16 = 10000;
    let span = u64::from(ephemeral_port_start().saturating_sub(LOWEST).max(2 * n + 2));
    let base = u64::from(std::process::id()) * 7919 % span;
    for _ in 0..500 {
        let offset = NEXT.fetch_add(u64::from(n) + 1, std::sync::atomic::Ordering::Relaxed);
        let start = LOWEST + ((base + offset) % (span - u64::from(n))) as u16;
        if (start..start + n).all(bindable) {
            return start;
        }
    }
    panic!("no {n} free consecutive ports");
}

/// Polls `probe` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub const STARTUP: Duration = Duration::from_secs(60);

/// Test settings: fast backoff, short intervals, no marketplace (ids fail at once),
/// `file` git URLs allowed (tests clone local repositories).
pub fn test_config(port_start: u16, port_end: u16, http_port: u16, vsix_dir: &Path) -> String {
    format!(
        r#"extension_groups:
  tools:
    name: Tools
    description: test group
    extensions: []
    user_settings:
      editor.tabSize: 7
server:
  default_port: {http_port}
  code_server_port_range: {{start: {port_start}, end: {port_end}}}
ui:
  default_extension_groups: [tools]
  workspace:
    allowed_git_schemes: [https, ssh, file]
code_server:
  extension_gallery: '{{}}'
  start_timeout: 30s
  stop_timeout: 5s
  extension_install_timeout: 60s
controller:
  vsix_dir: {vsix}
  resync_interval: 2s
  debounce: 50ms
  health_interval: 1s
  restart_backoff: {{initial: 200ms, max: 1s}}
  crash_loop_threshold: 3
"#,
        vsix = vsix_dir.display()
    )
}

/// A running `devbox serve` and its directories.
pub struct Devbox {
    pub root: tempfile::TempDir,
    pub http_port: u16,
    pub port_start: u16,
    pub port_end: u16,
    pub code_server: PathBuf,
    /// Extra environment of `devbox` commands (and so of `devbox serve`).
    env: Vec<(String, String)>,
    /// [`Options::tls_ca`].
    pub tls_ca: Option<PathBuf>,
    child: Option<Child>,
}

/// Stands for devbox's HTTP port in [`Options::config`] (known only once ports are picked).
pub const HTTP_PORT: &str = "{http_port}";

/// How [`Devbox::start_opts`] sets up a devbox.
pub struct Options {
    /// How many ports the code-server range holds.
    pub ports: u16,
    /// YAML merged over the test config (maps key by key, anything else replaced);
    /// [`HTTP_PORT`] in it stands for devbox's HTTP port.
    pub config: String,
    /// Extra environment of `devbox serve`.
    pub env: Vec<(String, String)>,
    /// The code-server binary (default: the real one).
    pub code_server: Option<PathBuf>,
    /// devbox serves HTTPS (`server.tls` in `config`) with a certificate for
    /// `localhost` that the CA certificate in this PEM file signed: the harness then
    /// speaks to `https://localhost:<port>`, trusting that CA only.
    pub tls_ca: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ports: 11,
            config: String::new(),
            env: Vec::new(),
            code_server: None,
            tls_ca: None,
        }
    }
}

/// Merges `extra` into `base`: mappings key by key, anything else replaced.
fn merge_yaml(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                match base.get_mut(&key) {
                    Some(slot) => merge_yaml(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

impl Devbox {
    /// Starts devbox with the test config and the real code-server.
    pub fn start() -> Self {
        Self::start_with(code_server(), |_| {})
    }

    /// Starts devbox with `code_server` as the code-server binary, after `prepare` has
    /// had a chance to write files (specs, config edits) into the new root.
    pub fn start_with(code_server: PathBuf, prepare: impl FnOnce(&Path)) -> Self {
        Self::start_opts(
            Options {
                code_server: Some(code_server),
                ..Options::default()
            },
            prepare,
        )
    }

    /// Starts devbox with `options` (port range size, config overrides, environment).
    pub fn start_opts(options: Options, prepare: impl FnOnce(&Path)) -> Self {
        let root = tempfile::Builder::new()
            .prefix("devbox-test-")
            .tempdir()
            .expect("temp dir");
        let ports = options.ports.max(2);
        let base = free_ports(ports + 1);
        let (http_port, port_start, port_end) = (base, base + 1, base + ports);
        for dir in ["specs", "state", "vsix"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
        }
        let mut config: Value = devbox::yaml::from_str(&test_config(
            port_start,
            port_end,
            http_port,
            &root.path().join("vsix"),
        ))
        .expect("test config is YAML");
        if !options.config.is_empty() {
            let text = options.config.replace(HTTP_PORT, &http_port.to_string());
            let extra: Value = devbox::yaml::from_str(&text).expect("Options::config is YAML");
            merge_yaml(&mut config, extra);
        }
        std::fs::write(
            root.path().join("config.yaml"),
            devbox::yaml::to_string(&config).expect("render config"),
        )
        .expect("write config");
        prepare(root.path());
        let mut devbox = Self {
            root,
            http_port,
            port_start,
            port_end,
            code_server: options.code_server.unwrap_or_else(code_server),
            env: options.env,
            tls_ca: options.tls_ca,
            child: None,
        };
        devbox.spawn();
        devbox
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    pub fn specs(&self) -> PathBuf {
        self.path("specs")
    }

    pub fn state(&self) -> PathBuf {
        self.path("state")
    }

    /// A `devbox` command with this instance's config and directories.
    pub fn command(&self) -> Command {
        let mut command = Command::new(devbox_bin());
        command
            .arg("--config")
            .arg(self.path("config.yaml"))
            .arg("--specs")
            .arg(self.specs())
            .arg("--state-dir")
            .arg(self.state())
            .env("DEVBOX_CODE_SERVER", &self.code_server)
            .env_remove("DEVBOX_CONFIG_PATH")
            .env_remove("DEVBOX_SERVER_PORT")
            .env_remove("DEVBOX_API_TOKEN")
            .env_remove("DEVBOX_SERVER")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    fn spawn(&mut self) {
        self.spawn_with(|_| {});
    }

    /// Starts `devbox serve` (its command changed by `configure` first) and waits until
    /// it answers `/health`.
    fn spawn_with(&mut self, configure: impl FnOnce(&mut Command)) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("devbox.log"))
            .expect("log file");
        let mut command = self.command();
        command
            .arg("serve")
            .arg("--port")
            .arg(self.http_port.to_string())
            .env("DEVBOX_LOG", "debug")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log));
        configure(&mut command);
        let child = command.spawn().expect("start devbox");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let agent = agent(self.tls_ca.as_deref(), 10);
        while agent.get(&self.url("/health")).call().is_err() {
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "devbox did not answer /health ({}); its log ends with:\n{}",
                    exited.map_or("timed out after 20 s".to_string(), |status| status
                        .to_string()),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An agent for this devbox (trusting its CA over https) that follows `redirects`.
    pub fn agent(&self, redirects: u32) -> ureq::Agent {
        agent(self.tls_ca.as_deref(), redirects)
    }

    /// The pid of the running `devbox serve`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("devbox is running").id()
    }

    pub fn url(&self, path: &str) -> String {
        match self.tls_ca {
            Some(_) => format!("https://localhost:{}{path}", self.http_port),
            None => format!("http://127.0.0.1:{}{path}", self.http_port),
        }
    }

    /// `method path` with `headers` and `body`, whatever the answer's status.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        request_with(&self.agent(10), method, &self.url(path), headers, body)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[], None)
    }

    /// `POST` with no body.
    pub fn post(&self, path: &str) -> Reply {
        self.call("POST", path, &[], Some(b""))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        let body = serde_json::to_vec(body).expect("serialize");
        self.call(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(&body),
        )
    }

    /// `POST /auth/login` with `token`: the answer, which carries the session cookie.
    pub fn login(&self, token: &str) -> Reply {
        self.call(
            "POST",
            "/auth/login",
            &[("Content-Type", "application/json")],
            Some(serde_json::json!({ "token": token }).to_string().as_bytes()),
        )
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, &[], None)
    }

    /// `POST` of a `multipart/form-data` body made of `parts`.
    pub fn post_multipart(&self, path: &str, parts: &[(&str, Part<'_>)]) -> Reply {
        let (content_type, body) = multipart(parts);
        self.call(
            "POST",
            path,
            &[("Content-Type", content_type.as_str())],
            Some(&body),
        )
    }

    /// Creates a stopped server through `POST /servers`; returns its JSON.
    pub fn create(&self, body: &Value) -> Value {
        let reply = self.post_json("/servers", body);
        assert_eq!(reply.status, 201, "POST /servers {body}: {reply}");
        reply.json()
    }

    /// What a failed request must leave unchanged: spec files (names and contents), the
    /// folders under state/servers and state/workspaces, every file under
    /// state/uploads, and the servers `GET /servers` lists.
    pub fn snapshot(&self) -> Snapshot {
        let specs = list_dir(&self.specs())
            .into_iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.specs().join(&name)).unwrap_or_default();
                (name, text)
            })
            .collect();
        let mut servers: Vec<String> = self
            .servers()
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} {} {} {}",
                    s["id"], s["name"], s["port"], s["status"], s["pid"], s["extensions"]
                )
            })
            .collect();
        servers.sort();
        Snapshot {
            specs,
            server_dirs: list_dir(&self.state().join("servers")),
            workspace_dirs: list_dir(&self.state().join("workspaces")),
            uploads: list_tree(&self.state().join("uploads")),
            servers,
        }
    }

    /// `kill -9` devbox itself (its code-server processes live on).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 devbox");
            child.wait().expect("reap devbox");
        }
    }

    /// SIGTERM devbox and wait for it to exit.
    pub fn terminate(&mut self) {
        self.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    }

    /// SIGINT (Ctrl-C) devbox and wait for it to exit.
    pub fn interrupt(&mut self) {
        self.signal_and_wait(nix::sys::signal::Signal::SIGINT);
    }

    fn signal_and_wait(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, signal);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("devbox did not exit within 30 s of {signal}");
        }
    }

    /// Starts devbox again on the same directories.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// [`Self::restart`] with `configure` applied to the command first (limits, env).
    pub fn restart_with(&mut self, configure: impl FnOnce(&mut Command)) {
        self.spawn_with(configure);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("devbox.log")).unwrap_or_default()
    }

    pub fn write_spec(&self, name: &str, spec_body: &str) {
        let text = format!(
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n{spec_body}"
        );
        self.write_spec_text(&format!("{name}.yaml"), &text);
    }

    /// Writes a spec file the way an editor or `git pull` might: in place.
    pub fn write_spec_text(&self, file: &str, text: &str) {
        std::fs::write(self.specs().join(file), text).expect("write spec");
    }

    pub fn remove_spec(&self, name: &str) {
        std::fs::remove_file(self.specs().join(format!("{name}.yaml"))).expect("remove spec");
    }

    pub fn servers(&self) -> Vec<Value> {
        self.agent(10)
            .get(&self.url("/servers"))
            .call()
            .expect("GET /servers")
            .body_mut()
            .read_json()
            .expect("JSON")
    }

    /// The server named `name` in `GET /servers` (the API's `name` is the display name).
    pub fn server(&self, name: &str) -> Option<Value> {
        self.servers().into_iter().find(|s| s["name"] == name)
    }

    /// The persisted status of `name`.
    pub fn status(&self, name: &str) -> Option<Value> {
        let text =
            std::fs::read(self.state().join("servers").join(name).join("status.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Where server `name`'s instance listens, from its status file (so also while
    /// devbox is down): the socket its process record names, else its port (`listen:
    /// tcp`). `None` without a status or a port.
    pub fn direct(&self, name: &str) -> Option<Direct> {
        let status = self.status(name)?;
        if let Some(socket) = status["instance"]["socket"].as_str() {
            return Some(Direct::Unix(PathBuf::from(socket)));
        }
        Some(Direct::Tcp(u16::try_from(status["port"].as_u64()?).ok()?))
    }

    /// Where server `name`'s instance listens by default (`listen: socket`), whether
    /// or not it runs.
    pub fn socket_of(&self, name: &str) -> Direct {
        Direct::Unix(self.state().join("sockets").join(format!("{name}.sock")))
    }

    /// `GET /healthz` straight to server `name`'s instance, not through devbox.
    pub fn healthz(&self, name: &str) -> Option<Value> {
        self.direct(name)?.healthz()
    }

    /// Waits until `name` is running and healthy; returns (pid, port).
    pub fn wait_running(&self, name: &str) -> (u32, u16) {
        let server = wait_for(
            &format!("{name} to run\n{}", self.log_tail()),
            STARTUP,
            || self.server(name).filter(|s| s["status"] == "running"),
        );
        let pid = server["pid"].as_u64().expect("pid") as u32;
        let port = server["port"].as_u64().expect("port") as u16;
        (pid, port)
    }

    /// Waits until `name` reports `status` (the API word).
    pub fn wait_status(&self, name: &str, status: &str) -> Value {
        wait_for(
            &format!("{name} to be {status}\n{}", self.log_tail()),
            STARTUP,
            || self.server(name).filter(|s| s["status"] == status),
        )
    }

    /// `devbox validate` on the specs directory passes.
    pub fn assert_specs_valid(&self) {
        let output = self
            .command()
            .arg("validate")
            .arg(self.specs())
            .output()
            .expect("devbox validate");
        assert!(
            output.status.success(),
            "devbox validate: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Devbox {
    fn drop(&mut self) {
        // A clean stop stops every server; if devbox is already gone (kill -9 tests),
        // start it once more so that it adopts and then stops what is left.
        if self.child.is_none() && std::thread::panicking() {
            kill_recorded_groups(&self.state());
            return;
        }
        if self.child.is_none() {
            self.spawn();
        }
        self.terminate();
        kill_recorded_groups(&self.state());
    }
}

/// Safety net: kills every process group recorded in the state dir.
fn kill_recorded_groups(state: &Path) {
    let Ok(entries) = std::fs::read_dir(state.join("servers")) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read(entry.path().join("status.json")) else {
            continue;
        };
        let Ok(status) = serde_json::from_slice::<Value>(&text) else {
            continue;
        };
        if let Some(pgid) = status["instance"]["pgid"].as_i64() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        remove_recorded_cgroup(&status["instance"]["cgroup"]);
    }
}

/// Safety net: kills what is left in a recorded instance cgroup (`{"version": "v2",
/// "dir"}` or `{"version": "v1", "dirs": {controller: dir}}`) and removes it, and
/// devbox's parent cgroup above it once empty: cgroups outlive the test's temp dir.
fn remove_recorded_cgroup(cgroup: &Value) {
    let dirs: Vec<PathBuf> = match (cgroup["dir"].as_str(), cgroup["dirs"].as_object()) {
        (Some(dir), _) => vec![PathBuf::from(dir)],
        (None, Some(dirs)) => dirs
            .values()
            .filter_map(|d| d.as_str().map(PathBuf::from))
            .collect(),
        _ => return,
    };
    for dir in &dirs {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for dir in &dirs {
        let deadline = Instant::now() + Duration::from_secs(2);
        while dir.exists() && std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// A code-server wrapper for fault injection, written into `dir`: runs `prelude`
/// (shell), then execs the real code-server with devbox's arguments.
pub fn code_server_wrapper(dir: &Path, prelude: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("code-server");
    let script = format!(
        "#!/bin/sh\n{prelude}\nexec '{}' \"$@\"\n",
        code_server().display()
    );
    std::fs::write(&path, script).expect("write wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Live (non-zombie) processes in group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z")
            && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
    })
}

/// `GET /healthz` straight to an instance, not through devbox.
pub fn healthz(direct: &Direct) -> Option<Value> {
    direct.healthz()
}

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Reply {
    /// The comma-separated values of header `name`, trimmed and lowercased.
    pub fn header_list(&self, name: &str) -> Vec<String> {
        self.header(name)
            .unwrap_or_default()
            .split(',')
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// A CORS preflight answer (`what` names it in failures): 2xx, `origin` allowed,
    /// each of `methods` allowed, and the `content-type` and `authorization` headers.
    pub fn assert_preflight(&self, what: &str, origin: &str, methods: &[&str]) {
        assert!(
            (200..300).contains(&self.status),
            "{what}: preflight answers 2xx: {self}"
        );
        assert_eq!(
            self.header("access-control-allow-origin"),
            Some(origin),
            "{what}: {:?}",
            self.headers
        );
        let allowed = self.header_list("access-control-allow-methods");
        for method in methods {
            assert!(
                allowed.iter().any(|m| m.eq_ignore_ascii_case(method)),
                "{what}: {method} allowed: {allowed:?}"
            );
        }
        let headers = self.header_list("access-control-allow-headers");
        for header in ["content-type", "authorization"] {
            assert!(
                headers.iter().any(|h| h == header),
                "{what}: {header} allowed: {headers:?}"
            );
        }
    }

    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {} {}", self.status, self.text))
    }

    /// The slugs of a `GET /servers` answer (which must be a 200).
    pub fn slugs(&self) -> Vec<String> {
        assert_eq!(self.status, 200, "{self}");
        self.json()
            .as_array()
            .expect("a list of servers")
            .iter()
            .map(|s| s["slug"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an error answer: `status`, a JSON body `{"error": …, "detail": …}`
    /// with the same non-empty text in both, containing `needle`. Returns the text.
    pub fn assert_error(&self, status: u16, needle: &str) -> String {
        assert_eq!(self.status, status, "{self}");
        let body = self.json();
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no string `error`: {self}"));
        assert!(!error.is_empty(), "{self}");
        assert_eq!(body["detail"].as_str(), Some(error), "{self}");
        assert!(
            error.contains(needle),
            "the error should mention {needle:?}: {self}"
        );
        error.to_owned()
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.text)
    }
}

/// One request with a fresh agent that treats every status as an answer.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    request_following(10, method, url, headers, body)
}

/// One request, answered as it is: a redirect is returned, not followed (ureq drops
/// a `Cookie` header when it follows one, where a browser would send its cookie).
pub fn request_once(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    request_following(0, method, url, headers, body)
}

fn request_following(
    redirects: u32,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    request_with(&agent(None, redirects), method, url, headers, body)
}

/// A fresh agent that treats every status as an answer and follows `redirects`; over
/// https it trusts the CA certificates in the PEM file `ca` only (else the public CAs).
pub fn agent(ca: Option<&Path>, redirects: u32) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap_or_else(|err| panic!("{}: {err}", ca.display()));
        let certificates: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item.expect("PEM") {
                ureq::tls::PemItem::Certificate(certificate) => Some(certificate),
                _ => None,
            })
            .collect();
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certificates));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(redirects)
        .timeout_global(Some(Duration::from_secs(120)))
        .tls_config(tls.build())
        .build()
        .into()
}

/// One request with `agent`, whatever the answer's status.
pub fn request_with(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(body.unwrap_or_default().to_vec())
        .expect("request");
    let mut response = agent
        .run(request)
        .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let text = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|err| panic!("{method} {url}: reading the body: {err}"));
    Reply {
        status: response.status().as_u16(),
        headers,
        text,
    }
}

/// A part of a multipart form.
pub enum Part<'a> {
    Text(&'a str),
    File { filename: &'a str, bytes: &'a [u8] },
}

/// A `multipart/form-data` body: (Content-Type, body).
pub fn multipart(parts: &[(&str, Part<'_>)]) -> (String, Vec<u8>) {
    let boundary = "----devbox-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, part) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Text(text) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(text.as_bytes());
            }
            Part::File { filename, bytes } => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/zip\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// See [`Devbox::snapshot`].
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub specs: std::collections::BTreeMap<String, String>,
    pub server_dirs: Vec<String>,
    pub workspace_dirs: Vec<String>,
    pub uploads: Vec<String>,
    pub servers: Vec<String>,
}

/// Names in `dir`, sorted (none when it does not exist).
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every file and folder below `dir`, as paths relative to it, sorted.
pub fn list_tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(relative) = path.strip_prefix(dir) {
                found.push(relative.to_string_lossy().into_owned());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z")
}

/// A minimal VS Code extension package (`publisher.name`, version 0.0.1).
pub fn write_vsix(path: &Path, publisher: &str, name: &str) {
    let manifest = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<PackageManifest Version="2.0.0" xmlns="http://schemas.microsoft.com/developer/vsx-schema/2011">
  <Metadata><Identity Language="en-US" Id="{name}" Version="0.0.1" Publisher="{publisher}"/>
  <DisplayName>{name}</DisplayName><Description xml:space="preserve">test</Description>
  <Properties><Property Id="Microsoft.VisualStudio.Code.Engine" Value="^1.60.0"/></Properties></Metadata>
  <Installation><InstallationTarget Id="Microsoft.VisualStudio.Code"/></Installation>
  <Dependencies/>
  <Assets><Asset Type="Microsoft.VisualStudio.Code.Manifest" Path="extension/package.json" Addressable="true"/></Assets>
</PackageManifest>"#
    );
    let content_types = r#"<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension=".json" ContentType="application/json"/><Default Extension=".vsixmanifest" ContentType="text/xml"/></Types>"#;
    let package = format!(
        r#"{{"name":"{name}","publisher":"{publisher}","version":"0.0.1","engines":{{"vscode":"^1.60.0"}}}}"#
    );
    write_zip(
        path,
        &[
            ("extension.vsixmanifest", manifest.as_str()),
            ("[Content_Types].xml", content_types),
            ("extension/package.json", package.as_str()),
        ],
    );
}

/// A zip archive of `(entry, text)` pairs.
pub fn write_zip(path: &Path, entries: &[(&str, &str)]) {
    std::fs::write(path, zip_bytes(entries)).expect("write zip");
}

/// The bytes of a zip archive of `(entry, text)` pairs (entry names taken as given,
/// `../evil` included).
pub fn zip_bytes(entries: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (entry, text) in entries {
        zip.start_file(*entry, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        zip.write_all(text.as_bytes()).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

/// A real zip archive of about `bytes` bytes (stored, not compressed).
pub fn big_zip(bytes: usize) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("big.bin", options).expect("entry");
    let chunk: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    let mut written = 0;
    while written < bytes {
        zip.write_all(&chunk).expect("write");
        written += chunk.len();
    }
    zip.finish().expect("finish").into_inner()
}

/// Sends a request that must fail with `status` and an error mentioning `needle`, and
/// checks that it changed nothing (see [`Devbox::snapshot`]).
pub fn rejected(
    devbox: &Devbox,
    what: &str,
    status: u16,
    needle: &str,
    send: impl FnOnce() -> Reply,
) {
    let before = devbox.snapshot();
    let reply = send();
    assert_eq!(reply.status, status, "{what}: {reply}");
    reply.assert_error(status, needle);
    let after = devbox.snapshot();
    assert_eq!(before, after, "{what} left something behind");
}

/// The multipart routes, as (what, path): creation, and setting the workspace of an
/// existing server `id`.
pub fn upload_routes(id: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "create-with-workspace",
            "/servers/create-with-workspace".into(),
        ),
        ("clone-workspace", format!("/servers/{id}/clone-workspace")),
    ]
}

/// A form for the upload route `what` (see [`upload_routes`]): a `name` for creation,
/// plus `parts`.
pub fn form<'a>(what: &str, parts: Vec<(&'a str, Part<'a>)>) -> Vec<(&'a str, Part<'a>)> {
    let mut all = Vec::new();
    if what == "create-with-workspace" {
        all.push(("name", Part::Text("uploaded")));
    }
    all.extend(parts);
    all
}

/// A git repository at `dir` with one commit on `main` holding `files`.
pub fn git_repo(dir: &Path, files: &[(&str, &str)]) {
    let repo = git2::Repository::init(dir).expect("git init");
    let mut index = repo.index().expect("index");
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        index.add_path(Path::new(file)).expect("git add");
    }
    index.write().expect("write index");
    let tree = repo
        .find_tree(index.write_tree().expect("tree"))
        .expect("find tree");
    let signature = git2::Signature::now("Test", "test@example.com").expect("signature");
    let oid = repo
        .commit(None, &signature, &signature, "initial", &tree, &[])
        .expect("commit");
    let commit = repo.find_commit(oid).expect("find commit");
    repo.branch("main", &commit, true).expect("main");
    repo.set_head("refs/heads/main").expect("head");
}

/// The JSON type of `value` as [`assert_types`] names it.
pub fn json_type(value: Option<&Value>) -> &'static str {
    match value {
        None => "missing",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => "integer",
        Some(Value::Number(_)) => "float",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
    }
}

/// Asserts that each field of `value` is present with one of the JSON types named
/// (`string`, `integer`, `number` = integer or float, `boolean`, `array`, `object`,
/// `null`; alternatives joined by `|`).
pub fn assert_types(value: &Value, fields: &[(&str, &str)]) {
    for (field, expected) in fields {
        let actual = json_type(value.get(*field));
        let ok = expected
            .split('|')
            .any(|e| e == actual || (e == "number" && (actual == "integer" || actual == "float")));
        assert!(ok, "`{field}` should be {expected}, is {actual}: {value}");
    }
}

/// Asserts that `value` is a string holding a uuid; returns it.
pub fn assert_uuid(value: &Value) -> String {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    uuid::Uuid::parse_str(text).unwrap_or_else(|err| panic!("{text:?} is not a uuid: {err}"));
    text.to_owned()
}

/// What a command printed on stdout.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command's exit code and both of its outputs, for assertion messages.
pub fn exit_and_output(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A blocking WebSocket client of a test.
pub type WsClient =
    tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Opens `path` as a WebSocket with `headers`: the socket, or the HTTP status of the
/// refused upgrade.
pub fn ws_connect(
    devbox: &Devbox,
    path: &str,
    headers: &[(&'static str, String)],
) -> Result<WsClient, u16> {
    let url = format!("ws://127.0.0.1:{}{path}", devbox.http_port);
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(url).expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, value.parse().expect("header value"));
    }
    match tungstenite::connect(request) {
        Ok((socket, response)) => {
            assert_eq!(response.status().as_u16(), 101);
            if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
            }
            Ok(socket)
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(err) => panic!("WebSocket {path}: {err}"),
    }
}
