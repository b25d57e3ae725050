//! Per-server logs: code-server's own output and the controller's events.
//!
//! code-server writes its stdout and stderr straight into `<server dir>/code-server.log`
//! (not through a pipe), so it survives devbox being killed and keeps logging after
//! adoption. A tailer task follows that file into an in-memory ring per server, which
//! the API reads; controller events (created, provisioning, started, exited, …) go to the
//! same ring, to tracing, and to `<server dir>/events.log`. Both files are size-capped:
//! past the cap the file is copied to `*.1` and truncated (code-server keeps appending).
//!
//! Everything held or answered is bounded in bytes, whatever a program prints: a line
//! is cut at [`line::MAX_LINE_BYTES`] (and marked), each server's ring holds at most
//! `log_buffer_lines` lines and `log_buffer_bytes` bytes, and every read of the rings
//! or the files returns at most that much.

mod line;
mod tail;

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use line::{MAX_LINE_BYTES, MAX_MARKED_LINE_BYTES};
use tail::Tail;

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

impl LogLine {
    /// What this line costs in a ring: its text and a fixed share for the rest.
    fn cost(&self) -> usize {
        self.message.len() + self.server_name.len() + std::mem::size_of::<Self>()
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

/// How much a [`LogHub`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// Lines kept in memory per server.
    pub lines: usize,
    /// Bytes kept in memory per server (see [`LogLine::cost`]); also the most one read
    /// of the rings returns.
    pub bytes: usize,
    /// Size at which a log file is rotated.
    pub file_bytes: u64,
}

struct HubInner {
    rings: Mutex<HashMap<String, Ring>>,
    limits: LogLimits,
    live: broadcast::Sender<LogLine>,
}

/// One server's newest lines, and what they cost.
#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

impl LogHub {
    pub fn new(limits: LogLimits) -> Self {
        Self {
            inner: Arc::new(HubInner {
                rings: Mutex::new(HashMap::new()),
                limits: LogLimits {
                    lines: limits.lines.max(1),
                    ..limits
                },
                live: broadcast::channel(1024).0,
            }),
        }
    }

    /// Adds a line (cut to [`MAX_LINE_BYTES`]) to its server's ring and the live feed;
    /// the ring drops its oldest lines to stay within both limits (the newest line is
    /// always kept).
    pub fn push(&self, mut line: LogLine) {
        line.message = line::cut_text(line.message);
        {
            let limits = self.inner.limits;
            let mut rings = self.rings();
            let ring = rings.entry(line.server_name.clone()).or_default();
            let cost = line.cost();
            while !ring.lines.is_empty()
                && (ring.lines.len() >= limits.lines || ring.bytes + cost > limits.bytes)
            {
                if let Some(old) = ring.lines.pop_front() {
                    ring.bytes -= old.cost();
                }
            }
            ring.bytes += cost;
            ring.lines.push_back(line.clone());
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
        // Cut once, before it goes anywhere: tracing, the ring and events.log alike.
        let message = line::cut_text(message.into());
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
            self.inner.limits.file_bytes,
        ) {
            tracing::warn!(server = %server.name, %err, "cannot write events.log");
        }
        self.push(line);
    }

    /// The last `n` lines of a server, oldest first (at most the ring's bytes).
    pub fn recent(&self, name: &str, n: usize) -> Vec<LogLine> {
        self.rings()
            .get(name)
            .map(|ring| {
                ring.lines
                    .iter()
                    .skip(ring.lines.len().saturating_sub(n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The last `n` lines of all servers together, oldest first, and no more than one
    /// ring's bytes in all (however many servers there are).
    pub fn recent_all(&self, n: usize) -> Vec<LogLine> {
        let rings = self.rings();
        // Only references are sorted; the chosen lines alone are copied.
        let mut all: Vec<&LogLine> = rings.values().flat_map(|ring| &ring.lines).collect();
        all.sort_by_key(|line| line.timestamp);
        let mut budget = self.inner.limits.bytes;
        let mut chosen: Vec<LogLine> = all
            .into_iter()
            .rev()
            .take(n)
            .take_while(|line| {
                let cost = line.cost();
                let fits = cost <= budget;
                budget = budget.saturating_sub(cost);
                fits
            })
            .cloned()
            .collect();
        chosen.reverse();
        chosen
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
            let mut tail = Some(Tail::new(path, start));
            let mut tick = tokio::time::interval(TAIL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stopped.wait_for(|stop| *stop) => true,
                };
                let Some(mut current) = tail.take() else {
                    return;
                };
                if !current.has_news() && !last {
                    tail = Some(current);
                    continue;
                }
                // A burst of output is read off the async workers (it may be large).
                let (reader_hub, reader_server) = (hub.clone(), server.clone());
                let read = tokio::task::spawn_blocking(move || {
                    let mut emit = |text: String| reader_hub.push_output(&reader_server, text);
                    let max_file_bytes = reader_hub.inner.limits.file_bytes;
                    let result = current.read_new(max_file_bytes, &mut emit);
                    if last {
                        current.flush(&mut emit);
                    }
                    (current, result)
                })
                .await;
                match read {
                    Ok((current, result)) => {
                        if let Err(err) = result {
                            tracing::debug!(server = %server.name, %err, "log tail");
                        }
                        tail = Some(current);
                    }
                    Err(err) => {
                        tracing::warn!(server = %server.name, %err, "log tail stopped");
                        return;
                    }
                }
                if last {
                    return;
                }
            }
        });
        Follower { stop }
    }

    /// Adds a line code-server printed.
    fn push_output(&self, server: &ServerIdent, text: String) {
        self.push(LogLine {
            server_id: server.id,
            server_name: server.name.clone(),
            level: guess_level(&text),
            source: LogSource::Server,
            message: text,
            timestamp: SystemTime::now(),
        });
    }

    fn rings(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ring>> {
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

/// Copies `path` to `path.1` and truncates it; returns the copy's path. The writer holds
/// the file with O_APPEND, so it simply continues at the new end. The copy goes on until
/// it has caught up with the writer, so what is lost is only what the writer appends in
/// the instant between the last read and the truncation: the price of a log file that
/// outlives devbox, which adoption needs.
fn rotate(path: &Path) -> std::io::Result<PathBuf> {
    /// Rounds of catching up with a writer that keeps appending during the copy.
    const CATCH_UP_ROUNDS: usize = 4;
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    let rotated = PathBuf::from(rotated);
    let mut source = std::fs::File::open(path)?;
    let mut copy = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&rotated)?;
    for _ in 0..CATCH_UP_ROUNDS {
        if std::io::copy(&mut source, &mut copy)? == 0 {
            break;
        }
    }
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

/// How much of a file's end [`last_lines`] reads: a bounded answer, however large the
/// file or its lines.
const TAIL_WINDOW_BYTES: u64 = 64 * 1024;

/// The last `n` non-empty lines of a file (for `devbox logs` offline), from its last
/// 64 KiB at most, each cut like a line of the ring.
pub fn last_lines(path: &Path, n: usize) -> Vec<String> {
    last_lines_after(path, 0, n)
}

/// The last `n` non-empty lines of a file written after byte `offset` (a failure reason
/// quotes only what the failed attempt printed, not the attempts before it). A line
/// whose start lies before what is read is marked as cut.
pub fn last_lines_after(path: &Path, offset: u64, n: usize) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A file shorter than `offset` was truncated (size cap) since: read its tail.
    let offset = if offset > len { 0 } else { offset };
    let from = len.saturating_sub(TAIL_WINDOW_BYTES).max(offset);
    // Whether the window begins inside a line: look at the byte before it.
    let mut starts_mid_line = false;
    if from > offset {
        let mut before = [0u8; 1];
        starts_mid_line = file.seek(SeekFrom::Start(from - 1)).is_ok()
            && file.read_exact(&mut before).is_ok()
            && before[0] != b'\n';
    }
    if file.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if file.take(len - from).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let mut lines: Vec<String> = Vec::new();
    for (i, raw) in buf.split(|&b| b == b'\n').enumerate() {
        let length = if i == 0 && starts_mid_line {
            line::Length::MoreThan(raw.len() as u64)
        } else {
            line::Length::Exactly(raw.len() as u64)
        };
        let text = line::cut(raw, length);
        let text = text.trim_end();
        if !text.is_empty() {
            lines.push(text.to_owned());
        }
    }
    lines.split_off(lines.len().saturating_sub(n))
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

    fn limits(lines: usize, bytes: usize) -> LogLimits {
        LogLimits {
            lines,
            bytes,
            file_bytes: 1024,
        }
    }

    #[test]
    fn ring_keeps_the_newest_lines() {
        let hub = LogHub::new(limits(3, 1 << 20));
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

    fn output(server: &str, message: String) -> LogLine {
        LogLine {
            server_id: Uuid::nil(),
            server_name: server.into(),
            level: Level::Info,
            source: LogSource::Server,
            message,
            timestamp: SystemTime::now(),
        }
    }

    fn bytes_of(lines: &[LogLine]) -> usize {
        lines.iter().map(LogLine::cost).sum()
    }

    #[test]
    fn ring_is_bounded_in_bytes_and_cuts_long_lines() {
        let budget = 100 * 1024;
        let hub = LogHub::new(limits(1000, budget));
        for _ in 0..50 {
            hub.push(output("a", "x".repeat(20 << 20 >> 4)));
        }
        let recent = hub.recent("a", 1000);
        assert!(bytes_of(&recent) <= budget, "{}", bytes_of(&recent));
        assert!((5..=6).contains(&recent.len()), "{}", recent.len());
        assert!(recent[0].message.ends_with("[cut: 1310720 bytes in all]"));
        // Small lines after big ones: the big ones go first, the newest line stays.
        for i in 0..10 {
            hub.push(output("a", format!("small {i}")));
        }
        assert_eq!(hub.recent("a", 1)[0].message, "small 9");
        assert!(bytes_of(&hub.recent("a", 1000)) <= budget);

        // An event quoting a long text is cut once, in the ring and in events.log.
        let dir = tempfile::tempdir().unwrap();
        hub.event(&ident(), dir.path(), Level::Error, "z".repeat(1 << 20));
        let last = &hub.recent("a", 1)[0].message;
        assert_eq!(
            last.matches("[cut:").count(),
            1,
            "{}",
            &last[MAX_LINE_BYTES..]
        );
        let file = std::fs::read_to_string(dir.path().join("events.log")).unwrap();
        assert!(file.len() <= MAX_MARKED_LINE_BYTES + 64, "{}", file.len());
    }

    #[test]
    fn reading_all_servers_is_bounded_like_one() {
        let budget = 64 * 1024;
        let hub = LogHub::new(limits(1000, budget));
        for server in ["a", "b", "c", "d"] {
            for i in 0..100 {
                hub.push(output(server, format!("{server} {i} {}", "y".repeat(1000))));
            }
        }
        let all = hub.recent_all(1000);
        assert!(bytes_of(&all) <= budget);
        assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert_eq!(all.last().unwrap().message, hub.recent("d", 1)[0].message);
        assert_eq!(hub.recent_all(3).len(), 3);
    }

    #[test]
    fn last_lines_of_a_file_are_bounded_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("code-server.log");
        let mut text = "x".repeat(1 << 20);
        text.push_str("\nshort\n");
        text.push_str(&"y".repeat(30 * 1024));
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        let lines = last_lines(&path, 10);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].ends_with("[cut: more than 34808 bytes]"),
            "{}",
            &lines[0][MAX_LINE_BYTES..]
        );
        assert_eq!(lines[1], "short");
        assert!(lines[2].ends_with("[cut: 30720 bytes in all]"));
        assert!(lines.iter().all(|l| l.len() <= MAX_MARKED_LINE_BYTES));
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
