//! What the benchmarks share: a real `devbox serve` (the release binary cargo built for
//! this bench) on free loopback ports with its own config, specs and state directories
//! in a temp dir; statistics; and readings of a process from `/proc`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "../../tests/common/code_server.rs"]
mod code_server;
#[path = "../../tests/common/direct.rs"]
mod direct;
// Not every bench or test binary starts code-server.
#[allow(unused_imports)]
pub use code_server::code_server;
#[allow(unused_imports)]
pub use direct::Direct;

/// A config for benches that run instances: devbox's defaults but for the instance
/// ports ([`INSTANCE_PORTS`], a window away from the ephemeral ports devbox's own HTTP
/// port comes from) and no marketplace. `{http_port}` is filled in by [`Devbox::prepare`].
/// It ends inside `code_server:`, so a bench may append keys of that section.
pub const INSTANCE_CONFIG: &str = "server:
  default_port: {http_port}
  code_server_port_range: {start: 21000, end: 21999}
code_server:
  extension_gallery: '{}'
  stop_timeout: 5s
";
pub const INSTANCE_PORTS: std::ops::RangeInclusive<u16> = 21000..=21999;

/// A running `devbox serve`; killed (with its log reader) when dropped.
pub struct Devbox {
    pub root: tempfile::TempDir,
    pub http_port: u16,
    child: Child,
    /// Lines of devbox's log (tracing writes to stdout), as they come.
    pub log: mpsc::Receiver<String>,
}

impl Devbox {
    /// A temp dir with `config` (YAML; `{http_port}` is filled in) and empty
    /// `specs/` and `state/` folders, not started yet.
    pub fn prepare(config: &str) -> (tempfile::TempDir, u16) {
        let root = tempfile::Builder::new()
            .prefix("devbox-bench.")
            .tempdir()
            .expect("temp dir");
        let http_port = free_port();
        for dir in ["specs", "state"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
        }
        let config = config.replace("{http_port}", &http_port.to_string());
        std::fs::write(root.path().join("config.yaml"), config).expect("write config");
        (root, http_port)
    }

    /// Starts `devbox serve` in `root` (from [`Self::prepare`]) with `DEVBOX_LOG=debug`
    /// and waits until `/health` answers.
    pub fn start(root: tempfile::TempDir, http_port: u16) -> Self {
        Self::start_with(root, http_port, None, "debug")
    }

    /// [`Self::start`] with `code_server` as the code-server binary (`--code-server`,
    /// which wins over an inherited `DEVBOX_CODE_SERVER`) and `log_filter` as
    /// `DEVBOX_LOG` (`debug` logs a line per proxied request, so a proxy measurement
    /// wants `info`).
    pub fn start_with(
        root: tempfile::TempDir,
        http_port: u16,
        code_server: Option<&Path>,
        log_filter: &str,
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_devbox"));
        command
            .arg("--config")
            .arg(root.path().join("config.yaml"))
            .arg("--specs")
            .arg(root.path().join("specs"))
            .arg("--state-dir")
            .arg(root.path().join("state"));
        if let Some(code_server) = code_server {
            command.arg("--code-server").arg(code_server);
        }
        let mut child = command
            .arg("serve")
            .arg("--port")
            .arg(http_port.to_string())
            .env("DEVBOX_LOG", log_filter)
            .env_remove("DEVBOX_API_TOKEN")
            .env_remove("DEVBOX_CONFIG_PATH")
            .env_remove("DEVBOX_SERVER_PORT")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start devbox");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(strip_ansi(&line)).is_err() {
                    break;
                }
            }
        });
        let mut devbox = Self {
            root,
            http_port,
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&devbox.url("/health")).call().is_err() {
            if let Ok(Some(status)) = devbox.child.try_wait() {
                // The reader thread ends (and the channel closes) at the end of stdout.
                let mut log = Vec::new();
                while let Ok(line) = devbox.log.recv_timeout(Duration::from_secs(1)) {
                    log.push(line);
                }
                panic!("devbox exited during start ({status}):\n{}", log.join("\n"));
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for devbox to answer /health"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        devbox
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// Stops devbox with SIGTERM (as an operator would) and waits for it; gives back
    /// the temp dir so a new devbox can start on the same state.
    pub fn stop(mut self) -> (tempfile::TempDir, u16) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let root = tempfile::Builder::new()
            .prefix("devbox-bench.")
            .tempdir()
            .expect("temp dir");
        let root = std::mem::replace(&mut self.root, root);
        (root, self.http_port)
    }
}

impl Drop for Devbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` until it gives `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Where devbox's own HTTP port (and nginx's) comes from: below the kernel's ephemeral
/// ports (32768 and up), which the benches' own client connections cycle through, so
/// that none of them takes the port while devbox restarts on it.
pub const HTTP_PORTS: std::ops::RangeInclusive<u16> = 23000..=27999;

/// A loopback port in [`HTTP_PORTS`] nothing listens on right now.
pub fn free_port() -> u16 {
    free_port_in(HTTP_PORTS, &[])
}

/// The `p`-th percentile (0–100) of `samples`, by nearest rank.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Resident memory of process `pid` in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 11 and 12 after the name.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Writes `contents` to `dir/name` through a temp file and a rename, as editors and
/// the API do.
pub fn write_file(dir: &Path, name: &str, contents: &str) {
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, contents).expect("write temp");
    std::fs::rename(&temp, dir.join(name)).expect("rename");
}

/// `line` without ANSI colour sequences (`ESC [ … letter`).
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

// Shared by the reaction and proxy benchmarks: real code-server, a devbox with a chosen
// code-server binary and log filter, a graceful stop on drop, process-group guards.

/// A program from `PATH` (or `/usr/sbin`, `/sbin`, where Debian puts nginx), or a panic
/// that names the script that installs it.
pub fn require_program(name: &str, installer: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found: run {installer} (it installs it)"))
}

/// A `devbox serve` that, when dropped (also on panic), is stopped the way an operator
/// would stop it (SIGTERM: devbox stops every code-server it runs), after which any
/// instance it recorded and that still runs has its process group killed.
pub struct ServingDevbox(Option<Devbox>);

impl ServingDevbox {
    /// See [`Devbox::start_with`].
    pub fn start(
        root: tempfile::TempDir,
        http_port: u16,
        code_server: &Path,
        log_filter: &str,
    ) -> Self {
        Self(Some(Devbox::start_with(
            root,
            http_port,
            Some(code_server),
            log_filter,
        )))
    }
}

impl std::ops::Deref for ServingDevbox {
    type Target = Devbox;

    fn deref(&self) -> &Devbox {
        self.0.as_ref().expect("devbox")
    }
}

impl Drop for ServingDevbox {
    fn drop(&mut self) {
        let Some(devbox) = self.0.take() else { return };
        let (root, _) = devbox.stop();
        kill_recorded_instances(&root.path().join("state"));
    }
}

/// Kills the process group of every instance recorded in `state_dir` whose leader still
/// runs (checked by its kernel start time, so a reused pid is left alone).
fn kill_recorded_instances(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("servers")) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("status.json")) else {
            continue;
        };
        let Ok(status) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let process = &status["process"];
        let (Some(pgid), Some(ticks)) = (process["pgid"].as_u64(), process["start_ticks"].as_u64())
        else {
            continue;
        };
        if start_ticks(pgid as u32) == Some(ticks) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Kernel start time of process `pid` (field 22 of `/proc/<pid>/stat`).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A child process that leads its own process group (spawn its command through
/// [`GroupGuard::spawn`]); the whole group is ended when the guard is dropped.
pub struct GroupGuard {
    child: Child,
    what: String,
    /// Set once [`GroupGuard::stop`] ran: the group is gone and its id may be reused.
    stopped: bool,
}

impl GroupGuard {
    /// Spawns `command` as the leader of a new process group.
    pub fn spawn(what: &str, command: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {what}: {err}"));
        Self {
            child,
            what: what.to_owned(),
            stopped: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The leader's standard output, when it was spawned with `Stdio::piped()` (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Whether the leader has exited (and so was reaped).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM to the group, up to `grace` for it to empty, then SIGKILL to whatever is
    /// left. Returns how long the group took to go.
    pub fn stop(&mut self, grace: Duration) -> Duration {
        use nix::sys::signal::{Signal, killpg};
        if self.stopped {
            return Duration::ZERO;
        }
        let began = Instant::now();
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = began + grace;
        loop {
            let _ = self.child.try_wait();
            // Signal 0: fails (ESRCH) once no process of the group is left.
            if killpg(group, None).is_err() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("{} did not stop within {grace:?}: SIGKILL", self.what);
                let _ = killpg(group, Signal::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.wait();
        self.stopped = true;
        began.elapsed()
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.stopped {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// A port in `range` that nothing listens on right now and that is not in `taken`,
/// searched from a place derived from the pid (so two runs rarely meet).
pub fn free_port_in(range: std::ops::RangeInclusive<u16>, taken: &[u16]) -> u16 {
    let (start, len) = (*range.start(), u32::from(range.end() - range.start()) + 1);
    let offset = std::process::id() * 7919 % len;
    (0..len)
        .map(|i| start + ((offset + i) % len) as u16)
        .find(|port| {
            !taken.contains(port) && TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_ok()
        })
        .unwrap_or_else(|| panic!("no free port in {range:?}"))
}

/// The integer after `--name` on the command line, or `default`.
pub fn arg_number(name: &str, default: u64) -> u64 {
    arg_text(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} wants a number, not `{value}`"))
    })
}

/// The value after `name` on the command line (`--only websocket`), if given.
#[allow(dead_code)] // Not every bench takes a text argument.
pub fn arg_text(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|pair| pair[0] == name)
        .map(|pair| pair[1].clone())
}

/// The machine's load averages (1, 5, 15 minutes), as `/proc/loadavg` has them: the
/// figures of a run on a busy machine are worth less, and this says so beside them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The machine's CPU time so far, all CPUs together, as `/proc/stat` counts it (in
/// clock ticks): (busy, total). Two readings give how busy the machine was between them
/// ([`busy_share`]).
pub fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let total: u64 = fields.iter().sum();
    // idle and iowait (the 4th and 5th fields) are the time no task ran.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The share (0–1) of all CPUs' time that was busy between two [`cpu_ticks`]
/// readings; `None` when no tick passed between them.
pub fn busy_share(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.saturating_sub(before.1);
    (total > 0).then(|| after.0.saturating_sub(before.0) as f64 / total as f64)
}

/// How long the threads of process `pid` have waited, runnable, for a CPU so far (the
/// second field of each `/proc/<pid>/task/<tid>/schedstat`; a thread that has exited
/// takes its share with it).
pub fn cpu_wait(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Memory the kernel could give new processes without swapping (`MemAvailable`), in MiB.
pub fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// Seconds since the Unix epoch of `time`.
pub fn epoch_secs(time: std::time::SystemTime) -> f64 {
    time.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Seconds since the Unix epoch of the UTC timestamp a devbox log line starts with, as
/// tracing writes it (`2026-11-28T22:20:52.554891Z  INFO …`).
pub fn log_line_time(line: &str) -> Option<f64> {
    let stamp = humantime::parse_rfc3339(line.split_whitespace().next()?).ok()?;
    Some(epoch_secs(stamp))
}

/// code-server started by hand as devbox starts it (the same flags and environment),
/// with its folders, config file and log in `dir` (`code-server.log`), listening on
/// `dir/code-server.sock` as devbox's instances do by default (`listen: socket`): the
/// bare baseline the benches compare devbox with. Returns where it listens too.
pub fn bare_code_server(code_server: &Path, dir: &Path) -> (Command, Direct) {
    let sub = |name: &str| dir.join(name);
    for name in [
        "user-data",
        "extensions",
        "xdg-data",
        "xdg-config",
        "workspace",
    ] {
        std::fs::create_dir_all(sub(name)).expect("mkdir");
    }
    let config_file = sub("code-server.yaml");
    std::fs::write(&config_file, "auth: none\ncert: false\n").expect("write config");
    let log = std::fs::File::create(sub("code-server.log")).expect("log file");
    let socket = sub("code-server.sock");
    let mut command = Command::new(code_server);
    command
        .arg("--auth")
        .arg("none")
        .arg("--socket")
        .arg(&socket)
        .arg("--socket-mode")
        .arg("600")
        .arg("--disable-telemetry")
        .arg("--disable-update-check")
        .arg("--user-data-dir")
        .arg(sub("user-data"))
        .arg("--extensions-dir")
        .arg(sub("extensions"))
        .arg("--config")
        .arg(&config_file)
        .arg(sub("workspace"))
        .current_dir(sub("workspace"))
        .env("XDG_DATA_HOME", sub("xdg-data"))
        .env("XDG_CONFIG_HOME", sub("xdg-config"))
        .env("EXTENSIONS_GALLERY", "{}")
        .env("VSCODE_PROXY_URI", "./proxy/{{port}}")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    for key in devbox::runtime::scrubbed_env() {
        command.env_remove(key);
    }
    (command, Direct::Unix(socket))
}
