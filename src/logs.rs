//! Per-server logs: code-server's own output and the controller's events.
//!
//! code-server writes its stdout and stderr straight into `<server dir>/code-server.log`
//! (not through a pipe), so it survives devbox being killed and keeps logging after
//! adoption. A tailer task follows that file into an in-memory ring per server, which
//! the API reads; controller events (created, provisioning, started, exited, …) go to the
//! same ring, to tracing, and to `<server dir>/events.log`. Both files are size-capped:
//! past the cap the file is copied to `*.1` and truncated (code-server keeps appending).

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// code-server's own output.
    Server,
    /// devbox's controller.
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// One line of a server's log.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub server_id: Uuid,
    pub server_name: String,
    pub level: Level,
    pub source: LogSource,
    pub message: String,
    #[serde(serialize_with = "serialize_time")]
    pub timestamp: SystemTime,
}

fn serialize_time<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*at))
}

impl LogLine {
    /// `[2025-01-15 10:00:00] INFO: message`, the seed API's log line format.
    pub fn display(&self) -> String {
        let stamp = humantime::format_rfc3339_seconds(self.timestamp).to_string();
        let stamp = stamp.trim_end_matches('Z').replacen('T', " ", 1);
        let level = match self.level {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        };
        format!("[{stamp}] {level}: {}", self.message)
    }
}

/// Who a log line belongs to.
#[derive(Debug, Clone)]
pub struct ServerIdent {
    pub id: Uuid,
    pub name: String,
}

/// The in-memory rings of every server plus the live feed.
///
/// Cloning is cheap (an `Arc`). A `std::sync::Mutex` guards the rings: pushes and reads
/// are short copies, never held across an `.await`.
#[derive(Clone)]
pub struct LogHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    rings: Mutex<HashMap<String, VecDeque<LogLine>>>,
    capacity: usize,
    max_file_bytes: u64,
    live: broadcast::Sender<LogLine>,
}

impl LogHub {
    pub fn new(capacity: usize, max_file_bytes: u64) -> Self {
        Self {
            inner: Arc::new(HubInner {
                rings: Mutex::new(HashMap::new()),
                capacity: capacity.max(1),
                max_file_bytes,
                live: broadcast::channel(1024).0,
            }),
        }
    }

    /// Adds a line to its server's ring and the live feed.
    pub fn push(&self, line: LogLine) {
        {
            let mut rings = self.rings();
            let ring = rings.entry(line.server_name.clone()).or_default();
            if ring.len() == self.inner.capacity {
                ring.pop_front();
            }
            ring.push_back(line.clone());
        }
        // No subscriber is fine: nobody is watching live.
        let _ = self.inner.live.send(line);
    }

    /// Records a controller event: to tracing, the ring, and `events.log` in `server_dir`.
    pub fn event(
        &self,
        server: &ServerIdent,
        server_dir: &Path,
        level: Level,
        message: impl Into<String>,
    ) {
        let message = message.into();
        match level {
            // The reconciler's span carries the server name.
            Level::Info => tracing::info!("{message}"),
            Level::Warn => tracing::warn!("{message}"),
            Level::Error => tracing::error!("{message}"),
        }
        let line = LogLine {
            server_id: server.id,
            server_name: server.name.clone(),
            level,
            source: LogSource::System,
            message,
            timestamp: SystemTime::now(),
        };
        if let Err(err) = append_capped(
            &server_dir.join("events.log"),
            &line.display(),
            self.inner.max_file_bytes,
        ) {
            tracing::warn!(server = %server.name, %err, "cannot write events.log");
        }
        self.push(line);
    }

    /// The last `n` lines of a server, oldest first.
    pub fn recent(&self, name: &str, n: usize) -> Vec<LogLine> {
        self.rings()
            .get(name)
            .map(|ring| {
                ring.iter()
                    .skip(ring.len().saturating_sub(n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Live lines of all servers from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.inner.live.subscribe()
    }

    /// Drops a deleted server's ring.
    pub fn forget(&self, name: &str) {
        self.rings().remove(name);
    }

    /// Follows `path` (code-server's output) from its current end into this hub until
    /// the returned follower is stopped. Truncation by someone else restarts from the top.
    pub fn follow(&self, server: ServerIdent, path: PathBuf) -> Follower {
        let hub = self.clone();
        let start = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            let mut tail = Tail {
                path,
                offset: start,
                partial: Vec::new(),
            };
            let mut tick = tokio::time::interval(TAIL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stopped.wait_for(|stop| *stop) => true,
                };
                match tail.read_new(hub.inner.max_file_bytes) {
                    Ok(lines) => {
                        for text in lines {
                            hub.push(LogLine {
                                server_id: server.id,
                                server_name: server.name.clone(),
                                level: guess_level(&text),
                                source: LogSource::Server,
                                message: text,
                                timestamp: SystemTime::now(),
                            });
                        }
                    }
                    Err(err) => tracing::debug!(server = %server.name, %err, "log tail"),
                }
                if last {
                    return;
                }
            }
        });
        Follower { stop }
    }

    fn rings(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<LogLine>>> {
        self.inner
            .rings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running [`LogHub::follow`]; stopping it reads what is left once more, then ends.
pub struct Follower {
    stop: watch::Sender<bool>,
}

impl Follower {
    pub fn stop(self) {
        let _ = self.stop.send(true);
    }
}

/// How often a followed log file is checked for new output.
const TAIL_INTERVAL: Duration = Duration::from_millis(200);

/// Reading position in a followed file.
struct Tail {
    path: PathBuf,
    offset: u64,
    /// Bytes of a line whose newline has not arrived yet.
    partial: Vec<u8>,
}

impl Tail {
    fn read_new(&mut self, max_bytes: u64) -> std::io::Result<Vec<String>> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        Read::by_ref(&mut file)
            .take(len - self.offset)
            .read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        let mut lines = self.complete_lines(&buf);
        if self.offset > max_bytes {
            let rotated = rotate(&self.path)?;
            // What was written between the read above and the copy is in the copy only.
            let mut copy = std::fs::File::open(rotated)?;
            copy.seek(SeekFrom::Start(self.offset))?;
            let mut rest = Vec::new();
            copy.read_to_end(&mut rest)?;
            lines.extend(self.complete_lines(&rest));
            self.offset = 0;
        }
        Ok(lines)
    }

    /// The lines `bytes` completes, after what an earlier read left unfinished.
    fn complete_lines(&mut self, bytes: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            if !text.is_empty() {
                lines.push(text);
            }
        }
        lines
    }
}

/// Copies `path` to `path.1` and truncates it; returns the copy's path. The writer holds
/// the file with O_APPEND, so it simply continues at the new end. (A line written in the
/// instant between the copy and the truncation is lost: the price of a log file that
/// outlives devbox, which adoption needs.)
fn rotate(path: &Path) -> std::io::Result<PathBuf> {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    let rotated = PathBuf::from(rotated);
    std::fs::copy(path, &rotated)?;
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(rotated)
}

/// Appends one line to `path`, rotating first when the file is over `max_bytes`.
fn append_capped(path: &Path, line: &str, max_bytes: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > max_bytes) {
        rotate(path)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}

fn guess_level(line: &str) -> Level {
    let lower = line.to_ascii_lowercase();
    if lower.contains("] error") || lower.starts_with("error") {
        Level::Error
    } else if lower.contains("] warn") || lower.starts_with("warn") {
        Level::Warn
    } else {
        Level::Info
    }
}

/// The last `n` non-empty lines of a file (for `devbox logs` offline).
pub fn last_lines(path: &Path, n: usize) -> Vec<String> {
    last_lines_after(path, 0, n)
}

/// The last `n` non-empty lines of a file written after byte `offset` (a failure reason
/// quotes only what the failed attempt printed, not the attempts before it).
pub fn last_lines_after(path: &Path, offset: u64, n: usize) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A file shorter than `offset` was truncated (size cap) since: read its tail.
    let offset = if offset > len { 0 } else { offset };
    let from = len.saturating_sub(64 * 1024).max(offset);
    if file.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_after_an_offset_skip_earlier_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("code-server.log");
        std::fs::write(&path, "first attempt\n").unwrap();
        let offset = std::fs::metadata(&path).unwrap().len();
        std::fs::write(&path, "first attempt\nsecond attempt\n\n").unwrap();
        assert_eq!(last_lines_after(&path, offset, 10), ["second attempt"]);
        assert_eq!(last_lines(&path, 10), ["first attempt", "second attempt"]);
        assert_eq!(
            last_lines_after(&path, 1 << 20, 10),
            ["first attempt", "second attempt"],
            "an offset past the end (a truncated file) reads the whole tail"
        );
    }

    fn ident() -> ServerIdent {
        ServerIdent {
            id: Uuid::nil(),
            name: "a".into(),
        }
    }

    #[test]
    fn ring_keeps_the_newest_lines() {
        let hub = LogHub::new(3, 1024);
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            hub.event(&ident(), dir.path(), Level::Info, format!("line {i}"));
        }
        let recent: Vec<_> = hub.recent("a", 10).into_iter().map(|l| l.message).collect();
        assert_eq!(recent, ["line 2", "line 3", "line 4"]);
        assert_eq!(hub.recent("a", 1)[0].message, "line 4");
        assert!(
            std::fs::read_to_string(dir.path().join("events.log"))
                .unwrap()
                .contains("INFO: line 4")
        );
    }

    #[test]
    fn tail_reads_whole_lines_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut tail = Tail {
            path: path.clone(),
            offset: 4,
            partial: Vec::new(),
        };
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"one\ntw").unwrap();
        assert_eq!(tail.read_new(1000).unwrap(), ["one"]);
        f.write_all(b"o\n").unwrap();
        assert_eq!(tail.read_new(1000).unwrap(), ["two"]);
        f.write_all(&[b'x'; 50]).unwrap();
        f.write_all(b"\n").unwrap();
        assert_eq!(tail.read_new(20).unwrap().len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "rotated");
        assert!(dir.path().join("out.log.1").exists());
        f.write_all(b"after\n").unwrap();
        assert_eq!(tail.read_new(1000).unwrap(), ["after"]);
    }

    #[test]
    fn display_matches_seed_format() {
        let line = LogLine {
            server_id: Uuid::nil(),
            server_name: "a".into(),
            level: Level::Info,
            source: LogSource::System,
            message: "Server started".into(),
            timestamp: humantime::parse_rfc3339("2025-01-15T10:00:00Z").unwrap(),
        };
        assert_eq!(line.display(), "[2025-01-15 10:00:00] INFO: Server started");
    }
}
