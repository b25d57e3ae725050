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
        let mut child = Command::new(env!("CARGO_BIN_EXE_devbox"))
            .arg("--config")
            .arg(root.path().join("config.yaml"))
            .arg("--specs")
            .arg(root.path().join("specs"))
            .arg("--state-dir")
            .arg(root.path().join("state"))
            .arg("serve")
            .arg("--port")
            .arg(http_port.to_string())
            .env("DEVBOX_LOG", "debug")
            .env_remove("DEVBOX_API_TOKEN")
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
        let devbox = Self {
            root,
            http_port,
            child,
            log,
        };
        wait_for("devbox to answer /health", Duration::from_secs(30), || {
            ureq::get(&devbox.url("/health")).call().ok().map(|_| ())
        });
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

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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
