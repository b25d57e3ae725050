//! The single-node Slurm cluster of the Slurm tests (`scripts/slurm-dev.sh up`, brought
//! up once per test binary), and what tests ask Slurm directly: a job's state as
//! `squeue` shows it, the live jobs and their names, a job's processes, and a plain
//! HTTP GET to the `host:port` a job reported.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::DirectReply;

/// `scripts/slurm-dev.sh`.
pub fn dev_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-dev.sh")
}

/// Runs `scripts/slurm-dev.sh up` (idempotent); panics with its output when it fails.
/// Returns the partition it prints last.
pub fn up() -> String {
    let script = dev_script();
    let out = Command::new(&script).arg("up").output().unwrap();
    assert!(
        out.status.success(),
        "{} up failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().unwrap().trim().to_owned()
}

/// The partition of the dev cluster, brought up once for all tests of a binary.
pub fn partition() -> &'static str {
    static PARTITION: OnceLock<String> = OnceLock::new();
    PARTITION.get_or_init(up)
}

/// Slurm's word for job `id`'s state (`RUNNING`, `PENDING`, `CANCELLED`…) from
/// `squeue -h -t all -j ID -o %T`; `None` once Slurm has forgotten the job (or when
/// the controller does not answer).
pub fn job_state(id: u64) -> Option<String> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-j", &id.to_string(), "-o", "%T"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Whether a job in Slurm state `state` still holds (or waits for) an allocation.
pub fn is_live(state: &str) -> bool {
    matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "SUSPENDED"
            | "COMPLETING"
            | "CONFIGURING"
            | "REQUEUED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "STOPPED"
    )
}

/// The live jobs (`squeue -h -o '%i %j'`, which lists pending and running jobs) as
/// (id, name).
pub fn live_jobs() -> Vec<(u64, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i %j"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (id, name) = line.trim().split_once(' ')?;
            Some((id.parse().ok()?, name.to_owned()))
        })
        .collect()
}

/// Every job Slurm still knows, one per line (id, name, state, reason, comment), for
/// failure messages.
pub fn squeue_all() -> String {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%i %j %T %r %k"])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The pids Slurm counts as job `id`'s (`scontrol listpids ID`), as (pid, step, local
/// id): the batch script is step `batch` with local id `0`.
pub fn job_pids(id: u64) -> Vec<(u32, String, String)> {
    let out = Command::new("scontrol")
        .args(["listpids", &id.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((
                fields.first()?.parse().ok()?,
                fields.get(2)?.to_string(),
                fields.get(3)?.to_string(),
            ))
        })
        .collect()
}

/// Pids of the live processes whose command line holds `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    super::procs::live_processes()
        .into_iter()
        .filter(|process| process.cmdline().contains(marker))
        .map(|process| process.pid)
        .collect()
}

/// `GET path` at `host:port` over HTTP/1.0 (the host as a job reported it, where
/// `common::Direct` speaks to loopback only); `None` when nothing answers.
pub fn http_get(host: &str, port: u16, path: &str) -> Option<DirectReply> {
    let mut stream = TcpStream::connect((host, port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n").ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).ok()?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some(DirectReply {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    })
}
