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

/// The real code-server, installed by `scripts/install-code-server.sh`.
pub fn code_server() -> PathBuf {
    if let Some(path) = std::env::var_os("DEVBOX_CODE_SERVER") {
        return PathBuf::from(path);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/code-server/bin/code-server");
    assert!(
        local.exists(),
        "code-server not found: run scripts/test.sh (it installs code-server) or set DEVBOX_CODE_SERVER"
    );
    local
}

pub fn devbox_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_devbox"))
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// `n` consecutive free ports. Test processes run in parallel, so the search starts at
/// a place derived from the pid and the clock.
pub fn free_ports(n: u16) -> u16 {
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    for attempt in 0..500u64 {
        let start = 20000 + ((seed + attempt * 211) % 35000) as u16;
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
    child: Option<Child>,
}

impl Devbox {
    /// Starts devbox with the test config and the real code-server.
    pub fn start() -> Self {
        Self::start_with(code_server(), |_| {})
    }

    /// Starts devbox with `code_server` as the code-server binary, after `prepare` has
    /// had a chance to write files (specs, config edits) into the new root.
    pub fn start_with(code_server: PathBuf, prepare: impl FnOnce(&Path)) -> Self {
        let root = tempfile::Builder::new()
            .prefix("devbox-test-")
            .tempdir()
            .expect("temp dir");
        let base = free_ports(12);
        let (http_port, port_start, port_end) = (base, base + 1, base + 11);
        for dir in ["specs", "state", "vsix"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
        }
        std::fs::write(
            root.path().join("config.yaml"),
            test_config(port_start, port_end, http_port, &root.path().join("vsix")),
        )
        .expect("write config");
        prepare(root.path());
        let mut devbox = Self {
            root,
            http_port,
            port_start,
            port_end,
            code_server,
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
            .env_remove("DEVBOX_SERVER_PORT");
        command
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("devbox.log"))
            .expect("log file");
        let child = self
            .command()
            .arg("serve")
            .arg("--port")
            .arg(self.http_port.to_string())
            .env("DEVBOX_LOG", "debug")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start devbox");
        self.child = Some(child);
        wait_for("devbox to answer /health", Duration::from_secs(20), || {
            ureq::get(&self.url("/health")).call().ok().map(|_| ())
        });
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
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
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("devbox did not exit within 30 s of SIGTERM");
        }
    }

    /// Starts devbox again on the same directories.
    pub fn restart(&mut self) {
        self.spawn();
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
        ureq::get(&self.url("/servers"))
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

    fn log_tail(&self) -> String {
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
        if let Some(pgid) = status["process"]["pgid"].as_i64() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
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

/// `GET /healthz` straight to a code-server port.
pub fn healthz(port: u16) -> Option<Value> {
    ureq::get(&format!("http://127.0.0.1:{port}/healthz"))
        .call()
        .ok()?
        .body_mut()
        .read_json()
        .ok()
}
