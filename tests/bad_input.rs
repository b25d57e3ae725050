//! Bad input against a real `devbox serve`: dangerous zip uploads (symbolic links, zip
//! bombs, archives that lie about their size), a thousand WebSocket clients at once,
//! clients that never read, and requests with huge headers. Each must get a clear answer,
//! leave nothing behind, and leave devbox responsive with bounded memory.
//!
//! The tests here load devbox on purpose and check that it stays responsive, so they run
//! one at a time (see [`one_at_a_time`]): they must not load each other's devbox.

mod common;

use std::io::{Cursor, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use common::{Devbox, Options, Part, big_zip, form, list_tree, rejected, upload_routes, wait_for};

/// How long anything that should happen "at once" may take before the test fails: a
/// liveness deadline, never a measurement.
const LIVENESS: Duration = Duration::from_secs(30);

/// The most memory devbox may hold while it is being abused (it idles at about 30 MiB).
const RSS_BOUND_MIB: u64 = 200;

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fake_code_server() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_code_server.py")
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib / 1024
}

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

/// How long `/health` may take while devbox is being abused: a liveness bound (a stalled
/// accept loop or a blocked runtime takes many seconds), loose enough for a loaded CI.
const HEALTH_BOUND: Duration = Duration::from_secs(3);

/// Asserts that `GET /health` answers 200 within [`HEALTH_BOUND`] (`when` names the moment).
fn assert_health_answers(devbox: &Devbox, when: &str) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(HEALTH_BOUND))
        .build()
        .into();
    let started = Instant::now();
    match agent.get(&devbox.url("/health")).call() {
        Ok(response) => assert_eq!(response.status(), 200, "/health {when}"),
        Err(err) => panic!(
            "/health did not answer within {HEALTH_BOUND:?} {when} ({err} after {:?}); devbox's log ends with:\n{}",
            started.elapsed(),
            devbox.log_tail()
        ),
    }
}

/// Every file and folder below the devbox root but its own log and the (empty) uploads
/// folder that the first upload makes.
fn root_tree(devbox: &Devbox) -> Vec<String> {
    let mut tree = list_tree(devbox.root.path());
    tree.retain(|path| path != "devbox.log" && path != "state/uploads");
    tree
}

// ---------------------------------------------------------------------------------------
// Zip uploads

/// A deflated zip of `(name, size)` entries of zero bytes (about 1000:1 each).
fn zeros_zip(entries: &[(String, usize)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let zeros = vec![0u8; 1 << 20];
    for (name, size) in entries {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .expect("entry");
        let mut left = *size;
        while left > 0 {
            let n = left.min(zeros.len());
            zip.write_all(&zeros[..n]).expect("write");
            left -= n;
        }
    }
    zip.finish().expect("finish").into_inner()
}

/// A zip holding a file and a symbolic link `passwd` to /etc/passwd.
fn symlink_zip() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("readme.txt", options).expect("entry");
    zip.write_all(b"hello").expect("write");
    zip.add_symlink("passwd", "/etc/passwd", options)
        .expect("link");
    zip.finish().expect("finish").into_inner()
}

/// `archive` (one entry) with the entry's uncompressed size rewritten to `size` in its
/// local header and in the central directory: an archive that lies about its size.
fn with_declared_size(mut archive: Vec<u8>, size: u32) -> Vec<u8> {
    let size = size.to_le_bytes();
    assert_eq!(&archive[..4], b"PK\x03\x04", "a local header first");
    archive[22..26].copy_from_slice(&size);
    let central = archive
        .windows(4)
        .rposition(|w| w == b"PK\x01\x02")
        .expect("a central directory header");
    archive[central + 24..central + 28].copy_from_slice(&size);
    archive
}

/// `POST /servers/create-with-workspace` of a server `name` with `archive`.
fn create_with_zip(devbox: &Devbox, name: &str, archive: &[u8]) -> common::Reply {
    let file = Part::File {
        filename: "workspace.zip",
        bytes: archive,
    };
    let parts = [("name", Part::Text(name)), ("zip_file", file)];
    devbox.post_multipart("/servers/create-with-workspace", &parts)
}

/// Small limits, so that bombs are cheap to build: 8 MiB expanded, 50 entries.
const ZIP_LIMITS: &str =
    "ui:\n  workspace:\n    max_extracted_size_mb: 8\n    max_zip_entries: 50\n";

#[test]
fn symlinks_and_zip_bombs_are_refused_at_upload_and_leave_nothing() {
    let _serial = one_at_a_time();
    let devbox = Devbox::start_opts(
        Options {
            config: ZIP_LIMITS.into(),
            ..Options::default()
        },
        |_| {},
    );
    let existing = devbox.post_json("/servers/create-metadata", &json!({"name": "existing"}));
    assert_eq!(existing.status, 201, "{existing}");
    let id = existing.json()["id"].as_str().expect("id").to_owned();

    let symlink = symlink_zip();
    // One entry of 50 MiB of zeros: about 50 KiB on the wire.
    let ratio_bomb = zeros_zip(&[("zeros.bin".into(), 50 << 20)]);
    assert!(ratio_bomb.len() < 1 << 20, "{} bytes", ratio_bomb.len());
    // Ten entries of 1 MiB of zeros: each small enough to be exempt from the ratio
    // check, together over the 8 MiB limit.
    let parts: Vec<(String, usize)> = (0..10).map(|i| (format!("part{i}.bin"), 1 << 20)).collect();
    let total_bomb = zeros_zip(&parts);
    assert!(total_bomb.len() < 1 << 20, "{} bytes", total_bomb.len());
    // 9 MiB of incompressible bytes in one entry: over the total, under any ratio.
    let too_big = big_zip(9 << 20);
    let names: Vec<String> = (0..51).map(|i| format!("f{i}.txt")).collect();
    let entries: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    let too_many = common::zip_bytes(&entries);

    let tree_before = root_tree(&devbox);
    for (route, path) in upload_routes(&id) {
        for (label, bytes, needle) in [
            (
                "symlink",
                &symlink,
                "zip entry \"passwd\" is a symbolic link",
            ),
            (
                "ratio bomb",
                &ratio_bomb,
                "to 52428800 bytes, a compression ratio above the limit of 200 (possible zip bomb)",
            ),
            (
                "many small entries over the total",
                &total_bomb,
                "would expand to 10485760 bytes, more than the limit of 8388608 bytes",
            ),
            (
                "one incompressible entry over the total",
                &too_big,
                "more than the limit of 8388608 bytes",
            ),
            (
                "too many entries",
                &too_many,
                "has 51 entries, more than the limit of 50",
            ),
        ] {
            rejected(&devbox, &format!("{route}: {label}"), 400, needle, || {
                devbox.post_multipart(
                    &path,
                    &form(
                        route,
                        vec![(
                            "zip_file",
                            Part::File {
                                filename: "w.zip",
                                bytes,
                            },
                        )],
                    ),
                )
            });
        }
    }
    assert_eq!(
        root_tree(&devbox),
        tree_before,
        "nothing anywhere under the root"
    );
    assert!(list_tree(&devbox.state().join("uploads")).is_empty());
    assert!(list_tree(&devbox.state().join("workspaces")).is_empty());
    assert_eq!(common::list_dir(&devbox.specs()), ["existing.yaml"]);

    // At the limits exactly, the same kind of archive is accepted.
    let at_limit: Vec<(String, usize)> =
        (0..8).map(|i| (format!("part{i}.bin"), 1 << 20)).collect();
    let reply = create_with_zip(&devbox, "at-the-limit", &zeros_zip(&at_limit));
    assert_eq!(reply.status, 201, "{reply}");
}

#[test]
fn an_archive_that_lies_about_its_size_is_refused_at_upload() {
    let _serial = one_at_a_time();
    let devbox = Devbox::start();
    // 50 MiB of zeros that claims to be 100 bytes: no ratio or size check on the
    // declared sizes can see it.
    let liar = with_declared_size(zeros_zip(&[("liar.bin".into(), 50 << 20)]), 100);
    let reply = create_with_zip(&devbox, "liar", &liar);
    // The upload check decompresses the data: the lie is refused at once.
    reply.assert_error(400, "holds more data than its declared size of 100 bytes");
    assert!(common::list_dir(&devbox.specs()).is_empty());
    let workspaces = list_tree(&devbox.state().join("workspaces"));
    assert!(
        workspaces.is_empty(),
        "no workspace, not even a partial one: {workspaces:?}"
    );
    assert!(list_tree(&devbox.state().join("uploads")).is_empty());
}

// ---------------------------------------------------------------------------------------
// A thousand WebSocket clients

/// Restarts `devbox` (stopped) with a soft open-file limit of `soft_nofile`, as a shell
/// or a service manager may hand it.
fn restart_with_soft_nofile(devbox: &mut Devbox, soft_nofile: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    use std::os::unix::process::CommandExt;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    devbox.restart_with(|command| {
        // SAFETY: setrlimit is a plain system call, which is safe between fork and exec.
        unsafe {
            command.pre_exec(move || {
                setrlimit(Resource::RLIMIT_NOFILE, soft_nofile, hard).map_err(std::io::Error::from)
            });
        }
    });
}

/// The soft and hard "Max open files" of process `pid`.
fn nofile_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("Max open files");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

/// Counts a step of a crowd member once: when done, or when the member gives up.
struct Step<'a> {
    counter: &'a AtomicUsize,
    done: bool,
}

impl Step<'_> {
    fn done(&mut self) {
        if !self.done {
            self.done = true;
            self.counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

type AsyncSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_message(socket: &mut AsyncSocket) -> Result<tungstenite::Message, String> {
    match tokio::time::timeout(LIVENESS, socket.next()).await {
        Err(_) => Err("no message before the deadline".into()),
        Ok(None) => Err("the connection ended".into()),
        Ok(Some(Err(err))) => Err(format!("reading: {err}")),
        Ok(Some(Ok(message))) => Ok(message),
    }
}

fn log_line(message: &tungstenite::Message) -> Option<Value> {
    match message {
        tungstenite::Message::Text(text) => serde_json::from_str(text.as_str()).ok(),
        _ => None,
    }
}

fn is_event(line: &Value, server: &str, message: &str) -> bool {
    line["type"] == "log" && line["server_name"] == server && line["message"] == message
}

/// How a crowd member's connection went.
#[derive(Debug)]
enum Outcome {
    /// It got the backlog and the live line (or, on one server's stream, an answer to a
    /// ping), and closed cleanly.
    Streamed,
    /// devbox refused it, with this answer.
    Refused(String),
}

/// Where the crowd stands: members that got the backlog (or gave up), that got the live
/// part (or gave up), and whether to leave.
struct Crowd {
    arrived: AtomicUsize,
    heard: AtomicUsize,
    leave: tokio::sync::watch::Receiver<bool>,
}

/// One client of `/ws/logs` (or, with `one_server`, of `/ws/logs/<id>` of `quiet`):
/// gets the backlog (`quiet` was created), then the live line of `second`'s creation (a
/// pong on the one-server stream, which must not see `second`), and leaves when told.
async fn crowd_member(url: String, one_server: bool, crowd: Arc<Crowd>) -> Result<Outcome, String> {
    let mut arrived = Step {
        counter: &crowd.arrived,
        done: false,
    };
    let mut heard = Step {
        counter: &crowd.heard,
        done: false,
    };
    let connecting = tokio::time::timeout(LIVENESS, tokio_tungstenite::connect_async(url)).await;
    let (mut socket, _) = match connecting {
        Err(_) => return Err("connecting timed out".into()),
        Ok(Err(tungstenite::Error::Http(response))) => {
            return Ok(Outcome::Refused(format!("HTTP {}", response.status())));
        }
        Ok(Err(err)) => return Err(format!("connecting: {err}")),
        Ok(Ok(pair)) => pair,
    };
    loop {
        let message = next_message(&mut socket).await?;
        if let tungstenite::Message::Close(frame) = message {
            return Ok(Outcome::Refused(format!("closed: {frame:?}")));
        }
        if log_line(&message).is_some_and(|line| is_event(&line, "quiet", "created")) {
            break;
        }
    }
    arrived.done();
    if one_server {
        let ping = tungstenite::Message::Ping(b"still there?".to_vec().into());
        socket.send(ping).await.map_err(|e| format!("ping: {e}"))?;
        while !matches!(
            next_message(&mut socket).await?,
            tungstenite::Message::Pong(_)
        ) {}
    } else {
        loop {
            let message = next_message(&mut socket).await?;
            if log_line(&message).is_some_and(|line| is_event(&line, "second", "created")) {
                break;
            }
        }
    }
    heard.done();
    let mut leave = crowd.leave.clone();
    let _ = leave.wait_for(|leave| *leave).await;
    socket
        .send(tungstenite::Message::Close(None))
        .await
        .map_err(|e| format!("closing: {e}"))?;
    loop {
        match next_message(&mut socket).await {
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(message) => {
                if one_server
                    && log_line(&message).is_some_and(|line| line["server_name"] != "quiet")
                {
                    return Err(format!(
                        "a line of another server on quiet's stream: {message}"
                    ));
                }
            }
        }
    }
    Ok(Outcome::Streamed)
}

/// Raises this process's soft open-file limit to its hard limit (a thousand sockets).
fn raise_own_nofile_limit(needed: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard >= needed,
        "this test needs {needed} open files and the hard limit is {hard}"
    );
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
}

#[test]
fn a_thousand_websocket_clients_at_once_all_stream_and_devbox_stays_responsive() {
    const CLIENTS: usize = 1000;
    /// Of them, on `/ws/logs/<id>` of one server.
    const ONE_SERVER: usize = 10;
    let _serial = one_at_a_time();
    raise_own_nofile_limit(CLIENTS as u64 + 200);
    let mut devbox = Devbox::start();
    devbox.terminate();
    // A soft limit of 512, below the crowd: devbox must raise it itself.
    restart_with_soft_nofile(&mut devbox, 512);
    let pid = devbox.pid();
    // To the hard limit, or the kernel's ceiling when that is unlimited.
    let (soft, hard) = nofile_limits(pid);
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap_or_default();
    assert!(
        soft == hard || (hard == "unlimited" && soft == nr_open.trim()),
        "devbox raises its soft open-file limit from 512 at start: soft {soft}, hard {hard}"
    );
    let quiet = devbox.create(&json!({"name": "quiet"}));
    let id = quiet["id"].as_str().expect("id").to_owned();
    let idle_fds = open_fds(pid);

    // One thread drives the whole crowd: with two, this test process alone would take
    // both cores of a small machine from devbox.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (leave, leave_rx) = tokio::sync::watch::channel(false);
    let crowd = Arc::new(Crowd {
        arrived: AtomicUsize::new(0),
        heard: AtomicUsize::new(0),
        leave: leave_rx,
    });
    let ws = |path: &str| format!("ws://127.0.0.1:{}{path}", devbox.http_port);
    let members: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let one_server = i % (CLIENTS / ONE_SERVER) == 0;
            let url = if one_server {
                ws(&format!("/ws/logs/{id}"))
            } else {
                ws("/ws/logs")
            };
            runtime.spawn(crowd_member(url, one_server, crowd.clone()))
        })
        .collect();

    let peak_rss = std::cell::Cell::new(0);
    let check = |when: &str| {
        assert_health_answers(&devbox, when);
        peak_rss.set(peak_rss.get().max(rss_mib(pid)));
    };
    wait_for("every client to get the backlog", LIVENESS, || {
        check("while a thousand clients connect");
        (crowd.arrived.load(Ordering::SeqCst) == CLIENTS).then_some(())
    });
    let crowded_fds = open_fds(pid);
    // A live line reaches every client of the all-servers stream.
    devbox.create(&json!({"name": "second"}));
    wait_for("every client to get the live line", LIVENESS, || {
        check("while a line goes to a thousand clients");
        (crowd.heard.load(Ordering::SeqCst) == CLIENTS).then_some(())
    });
    leave.send(true).expect("the crowd listens");
    let outcomes: Vec<Result<Outcome, String>> = runtime.block_on(async {
        let mut outcomes = Vec::new();
        for member in members {
            outcomes.push(member.await.expect("crowd member task"));
        }
        outcomes
    });
    let failed: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    let refused: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Ok(Outcome::Refused(answer)) => Some(answer),
            _ => None,
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} clients got neither the stream nor a clear refusal, e.g. {:?}\n{}",
        failed.len(),
        &failed[..failed.len().min(5)],
        devbox.log_tail()
    );
    assert!(
        refused.is_empty(),
        "devbox has no client limit, so none is refused: {} refused, e.g. {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    assert!(
        crowded_fds >= CLIENTS,
        "devbox held every connection at once: {crowded_fds} descriptors, {idle_fds} idle"
    );
    check("after the crowd left");
    assert!(
        peak_rss.get() < RSS_BOUND_MIB,
        "devbox used {} MiB with {CLIENTS} clients",
        peak_rss.get()
    );
    // Every connection is let go.
    wait_for("devbox to close the crowd's connections", LIVENESS, || {
        (open_fds(pid) <= idle_fds + 10).then_some(())
    });

    // A new client still gets the backlog, then live lines.
    let (mut socket, _) = tungstenite::connect(ws("/ws/logs")).expect("connect");
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream.set_read_timeout(Some(LIVENESS)).expect("timeout");
    }
    let mut read_until = |server: &str| loop {
        let message = socket.read().expect("read");
        if log_line(&message).is_some_and(|line| is_event(&line, server, "created")) {
            break;
        }
    };
    read_until("second");
    devbox.create(&json!({"name": "third"}));
    read_until("third");
    check("at the end");
}

// ---------------------------------------------------------------------------------------
// Clients that never read

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn connect(devbox: &Devbox, path: &str) -> Socket {
    let url = format!("ws://127.0.0.1:{}{path}", devbox.http_port);
    let (socket, _) = tungstenite::connect(url).expect("connect");
    socket
}

fn set_read_timeout(socket: &Socket, timeout: Duration) {
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream.set_read_timeout(Some(timeout)).expect("timeout");
    }
}

/// The number of a fake code-server's chatty line (`chatty <n> xxx…`).
fn chatty_number(line: &Value) -> Option<u64> {
    let text = line["message"].as_str()?.strip_prefix("chatty ")?;
    text.split_whitespace().next()?.parse().ok()
}

/// What a log stream client has seen of the numbered chatty lines.
#[derive(Debug, Default)]
struct Tally {
    lines: u64,
    last: Option<u64>,
    /// Lines the last `skipped` notices announced, not yet seen missing.
    announced: u64,
    /// Lines missing without a notice before them.
    unannounced: u64,
    notices: Vec<Value>,
}

impl Tally {
    fn take(&mut self, message: &Value) {
        if message["type"] == "skipped" {
            self.announced += message["skipped"].as_u64().unwrap_or(0);
            self.notices.push(message.clone());
        } else if let Some(number) = chatty_number(message) {
            if let Some(last) = self.last {
                let missing = number.saturating_sub(last + 1);
                self.unannounced += missing.saturating_sub(self.announced);
                self.announced = 0;
            }
            self.last = Some(number);
            self.lines += 1;
        }
    }
}

/// A client of `path` that reads everything, in a thread, until `stop`.
fn reader(
    devbox: &Devbox,
    path: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Tally>>, std::thread::JoinHandle<()>) {
    let mut socket = connect(devbox, path);
    set_read_timeout(&socket, Duration::from_millis(200));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let shared = tally.clone();
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match socket.read() {
                Ok(message) => {
                    if let Some(line) = log_line(&message) {
                        shared.lock().expect("tally").take(&line);
                    }
                }
                Err(tungstenite::Error::Io(err))
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(err) => panic!("the reading client lost its stream: {err}"),
            }
        }
    });
    (tally, thread)
}

#[test]
fn a_log_client_that_never_reads_is_dropped_or_told_how_many_lines_it_skipped() {
    let _serial = one_at_a_time();
    let devbox = Devbox::start_opts(
        Options {
            code_server: Some(fake_code_server()),
            // No rotation during the test: every numbered line reaches the stream.
            config: "controller:\n  log_max_bytes: 1073741824\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    // About 4 MB of log a second, in lines of 4 KiB.
    devbox.write_spec(
        "chatty",
        "  state: running\n  env:\n    FAKE_LOG_LINES_PER_SECOND: '1000'\n    FAKE_LOG_LINE_BYTES: '4096'\n",
    );
    devbox.wait_running("chatty");
    let id = devbox.server("chatty").expect("chatty")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let pid = devbox.pid();
    let path = format!("/ws/logs/{id}?lines=0");
    let idle_fds = open_fds(pid);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (fast, fast_thread) = reader(&devbox, &path, stop.clone());
    let mut slow = connect(&devbox, &path);
    let lines_then = fast.lock().expect("tally").lines;
    // Far more than any socket buffers hold (8,000 lines of 4 KiB), and well past the
    // 1,024 lines the live feed keeps for a client that lags.
    let mut peak_rss = 0;
    let mut last_seen = (lines_then, Instant::now());
    wait_for(
        "the reading client to get 8,000 lines",
        Duration::from_secs(60),
        || {
            assert_health_answers(&devbox, "while a client does not read");
            peak_rss = peak_rss.max(rss_mib(pid));
            let lines = fast.lock().expect("tally").lines;
            if lines > last_seen.0 {
                last_seen = (lines, Instant::now());
            }
            assert!(
                last_seen.1.elapsed() < Duration::from_secs(5),
                "the reading client got no line for 5 s: {:?}\n{}",
                fast.lock().expect("tally"),
                devbox.log_tail()
            );
            (lines >= lines_then + 8000).then_some(())
        },
    );

    // The slow client finally reads: what is buffered, then a notice of how many lines
    // it skipped (and lines again), or the end of a stream devbox dropped.
    set_read_timeout(&slow, LIVENESS);
    let mut tally = Tally::default();
    let started = Instant::now();
    let ending = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the slow client neither skipped nor was dropped: {tally:?}"
        );
        match slow.read() {
            Ok(tungstenite::Message::Close(frame)) => break format!("closed: {frame:?}"),
            Ok(message) => {
                let Some(line) = log_line(&message) else {
                    continue;
                };
                tally.take(&line);
                if !tally.notices.is_empty() && chatty_number(&line).is_some() {
                    break "skipped".to_owned();
                }
            }
            // Dropped while it did not read: the connection simply ends.
            Err(err) => break format!("dropped: {err}"),
        }
    };
    assert_eq!(
        tally.unannounced, 0,
        "the slow client missed lines without a notice ({ending}): {tally:?}"
    );
    for notice in &tally.notices {
        let skipped = notice["skipped"].as_u64().expect("a count");
        let text = notice["message"].as_str().unwrap_or_default();
        assert!(
            skipped > 0 && text.starts_with(&format!("skipped {skipped} lines")),
            "{notice}"
        );
    }
    assert!(
        tally.lines < 8000,
        "devbox held {} lines for a client that did not read ({ending})",
        tally.lines
    );
    drop(slow);

    // The reading client never lost a line silently, and goes on getting new ones.
    let lines = fast.lock().expect("tally").lines;
    wait_for("the reading client to get more lines", LIVENESS, || {
        (fast.lock().expect("tally").lines > lines + 100).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    fast_thread.join().expect("reading client");
    let fast = fast.lock().expect("tally");
    assert_eq!(fast.unannounced, 0, "{fast:?}");
    assert_health_answers(&devbox, "after the slow client");
    assert!(
        peak_rss < RSS_BOUND_MIB,
        "devbox used {peak_rss} MiB while a client did not read"
    );
    wait_for("devbox to let both connections go", LIVENESS, || {
        (open_fds(pid) <= idle_fds).then_some(())
    });
}

#[test]
fn http_clients_that_never_read_a_large_response_do_not_hold_up_others() {
    const SLOW: usize = 4;
    let _serial = one_at_a_time();
    let devbox = Devbox::start_with(fake_code_server(), |_| {});
    devbox.write_spec("big", "  state: running\n");
    let (_, port) = devbox.wait_running("big");
    let pid = devbox.pid();
    let small = devbox.get(&format!("/vscode/{port}/bytes/1000"));
    assert_eq!(small.status, 200, "{small}");
    let idle_fds = open_fds(pid);

    // Four clients ask for 1 GiB each through the proxy and never read a byte.
    let request = format!(
        "GET /vscode/{port}/stream/{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        1u64 << 30
    );
    let slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", devbox.http_port)).expect("connect");
            stream.write_all(request.as_bytes()).expect("request");
            stream
        })
        .collect();
    // The backpressure reaches code-server: each of its streams stalls, a few socket
    // buffers in, rather than devbox reading the whole GiB into memory.
    let log = devbox.state().join("servers/big/code-server.log");
    let stalled = wait_for("every stream to stall", LIVENESS, || {
        let rss = rss_mib(pid);
        assert!(
            rss < RSS_BOUND_MIB,
            "devbox holds {rss} MiB of unread answers"
        );
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let sent: Vec<u64> = text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("stream: blocked after ")?;
                rest.strip_suffix(" bytes")?.parse().ok()
            })
            .collect();
        (sent.len() >= SLOW).then_some(sent)
    });
    for sent in stalled {
        assert!(sent < 128 << 20, "a stream stalled only after {sent} bytes");
    }

    // Everyone else is served, the proxied server included.
    for _ in 0..3 {
        assert_health_answers(&devbox, "while clients do not read");
        let servers = devbox.get("/servers");
        assert_eq!(servers.status, 200, "{servers}");
        let bytes = devbox.get(&format!("/vscode/{port}/bytes/100000"));
        assert_eq!((bytes.status, bytes.text.len()), (200, 100_000));
        let health = devbox.get(&format!("/vscode/{port}/healthz"));
        assert_eq!(health.status, 200, "{health}");
        let rss = rss_mib(pid);
        assert!(
            rss < RSS_BOUND_MIB,
            "devbox holds {rss} MiB of unread answers"
        );
    }

    // Gone, they leave nothing open behind (idle upstream connections may stay pooled).
    drop(slow);
    wait_for(
        "devbox to close the slow clients' connections",
        LIVENESS,
        || (open_fds(pid) <= idle_fds + 2).then_some(()),
    );
    assert_health_answers(&devbox, "after the slow clients left");
}

// ---------------------------------------------------------------------------------------
// Huge headers

/// Sends `request` on a new connection (from another thread: the server may answer before
/// it has read it all) and reads until the server closes the connection. Returns the
/// answer, and how the connection ended: `closed`, or the kind of the read error.
fn exchange(port: u16, request: Vec<u8>) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(LIVENESS)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    // The server may close before it has read everything: writing may fail.
    let sender = std::thread::spawn(move || writer.write_all(&request).is_ok());
    let mut answer = Vec::new();
    let ending = match stream.read_to_end(&mut answer) {
        Ok(_) => "closed".to_owned(),
        Err(err) => format!("{:?}", err.kind()),
    };
    sender.join().expect("sender");
    (String::from_utf8_lossy(&answer).into_owned(), ending)
}

/// A `GET /health` with `headers` (each a whole `Name: value` line).
fn health_request(headers: Vec<String>) -> Vec<u8> {
    let mut request =
        String::from("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(&header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

#[test]
fn huge_headers_get_431_and_devbox_serves_the_next_request() {
    let _serial = one_at_a_time();
    let devbox = Devbox::start();
    let pid = devbox.pid();
    devbox.create(&json!({"name": "existing"}));
    let before = devbox.snapshot();

    let one_header = |bytes: usize| vec![format!("X-Big: {}", "a".repeat(bytes))];
    let numbered = |count: usize| (0..count).map(|i| format!("X-Header-{i}: {i}")).collect();
    for (what, headers) in [
        ("a 1 MiB header", one_header(1 << 20)),
        ("10,000 headers", numbered(10_000)),
    ] {
        let request = health_request(headers);
        let (answer, ending) = exchange(devbox.http_port, request);
        // hyper's own answer: no body, and the connection is closed after it (the
        // rest of the request may be unread, so the close can come as a reset).
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let mut lines = head.lines();
        assert_eq!(
            lines.next(),
            Some("HTTP/1.1 431 Request Header Fields Too Large"),
            "{what}: {answer:?} ({ending})"
        );
        let headers: Vec<String> = lines.map(str::to_ascii_lowercase).collect();
        for expected in ["connection: close", "content-length: 0"] {
            assert!(headers.iter().any(|h| h == expected), "{what}: {headers:?}");
        }
        assert_eq!(body, "", "{what}");
        assert!(
            ending == "closed" || ending == "ConnectionReset",
            "{what}: the connection should end after the answer, it ended: {ending}"
        );
        assert!(
            common::pid_alive(pid),
            "devbox is still running after {what}"
        );
        assert_health_answers(&devbox, &format!("after {what}"));
    }

    // Large but sane headers pass: 64 KiB in one value, 90 headers.
    for (what, headers) in [
        ("a 64 KiB header", one_header(64 << 10)),
        ("90 headers", numbered(90)),
    ] {
        let (answer, ending) = exchange(devbox.http_port, health_request(headers));
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{what}: {answer:?}"
        );
        assert!(answer.contains("\"healthy\""), "{what}: {answer:?}");
        assert_eq!(ending, "closed", "{what}");
    }
    assert_eq!(devbox.snapshot(), before, "huge headers changed nothing");
    let rss = rss_mib(pid);
    assert!(
        rss < RSS_BOUND_MIB,
        "devbox holds {rss} MiB after huge headers"
    );
}
