//! Hostile git servers (security review H3, M1, M4): a server that trickles one byte a
//! second, and one that sends refs without end. devbox fetches in a child process
//! (`devbox __git-fetch`) that it kills at `ui.workspace.git_timeout` and whose address
//! space is limited; each test shows the server failing with a message naming the
//! limit, devbox's own memory staying small, no child left behind, and clones of other
//! repositories still working.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::procs::{environ, live_processes};
use crate::common::{Devbox, Options, STARTUP, git_repo, pid_alive, wait_for};

/// What the hostile server sends after the start of its ref advertisement.
#[derive(Clone, Copy)]
enum Hostility {
    /// One byte a second, for ever: every read succeeds, none finishes.
    Trickle,
    /// Ref after ref, as fast as the client reads them, for ever.
    EndlessRefs,
}

/// A git "smart HTTP" server on loopback that answers every request hostilely.
struct Hostile {
    port: u16,
    /// Connections whose sender is still writing.
    open: Arc<AtomicUsize>,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
}

impl Hostile {
    fn start(hostility: Hostility) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (open2, accepted2) = (Arc::clone(&open), Arc::clone(&accepted));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                accepted2.fetch_add(1, Ordering::SeqCst);
                open2.fetch_add(1, Ordering::SeqCst);
                let open = Arc::clone(&open2);
                std::thread::spawn(move || {
                    let _ = serve(stream, hostility);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            open,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/r.git", self.port)
    }

    /// Waits until every connection has been hung up by its client.
    fn wait_all_closed(&self) {
        wait_for(
            "the hostile server's connections to be closed",
            Duration::from_secs(15),
            || (self.open.load(Ordering::SeqCst) == 0).then_some(()),
        );
    }
}

fn pkt(line: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", line.len() + 4).into_bytes();
    out.extend_from_slice(line);
    out
}

fn chunk(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    stream.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
    stream.write_all(data)?;
    stream.write_all(b"\r\n")
}

fn serve(mut stream: TcpStream, hostility: Hostility) -> std::io::Result<()> {
    // The request's head; its content does not matter.
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    stream.write_all(
        b"HTTP/1.1 200 OK\r\n\
          Content-Type: application/x-git-upload-pack-advertisement\r\n\
          Cache-Control: no-cache\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    )?;
    let sha = "a".repeat(40);
    let mut start = pkt(b"# service=git-upload-pack\n");
    start.extend_from_slice(b"0000");
    start.extend(pkt(format!(
        "{sha} HEAD\0multi_ack side-band-64k ofs-delta\n"
    )
    .as_bytes()));
    chunk(&mut stream, &start)?;
    match hostility {
        Hostility::Trickle => {
            // A packet line announced long, then its bytes one a second.
            chunk(&mut stream, b"fff0")?;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                chunk(&mut stream, &sha.as_bytes()[..1])?;
            }
        }
        Hostility::EndlessRefs => {
            let long = "x".repeat(900);
            let mut i = 0u64;
            loop {
                let mut refs = Vec::with_capacity(1 << 20);
                for _ in 0..1000 {
                    refs.extend(pkt(format!("{sha} refs/heads/{long}{i}\n").as_bytes()));
                    i += 1;
                }
                chunk(&mut stream, &refs)?;
            }
        }
    }
}

/// devbox's resident memory, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The parent pid in `/proc/<pid>/stat` (None once it has exited).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// devbox's live `__git-fetch` children.
fn git_children(devbox: &Devbox) -> Vec<u32> {
    live_processes()
        .into_iter()
        .filter(|p| parent_of(p.pid) == Some(devbox.pid()) && p.cmdline().contains("__git-fetch"))
        .map(|p| p.pid)
        .collect()
}

/// Config that lets git reach the hostile server: loopback, and plain `http` (libgit2
/// buffers and times the same over TLS; plain HTTP keeps the test free of certificates).
fn hostile_config(workspace: &str) -> String {
    format!(
        "ui:\n  workspace:\n    allow_local_git_hosts: true\n    \
         allowed_git_schemes: [https, ssh, file, http]\n    {workspace}\n"
    )
}

fn git_spec(url: &str, state: &str) -> String {
    format!("  state: {state}\n  workspace:\n    git: {{url: \"{url}\"}}\n")
}

/// Waits until `name` has failed; returns its message.
fn wait_failed(devbox: &Devbox, name: &str, within: Duration) -> String {
    let server: Value = wait_for(
        &format!("{name} to fail\n{}", devbox.log_tail()),
        within,
        || devbox.server(name).filter(|s| s["phase"] == "failed"),
    );
    server["message"].as_str().unwrap_or_default().to_owned()
}

/// Stops `names` (no retry under way) and checks no git child of devbox is left.
fn stop_and_check_no_child(devbox: &Devbox, names: &[&str], url: &str) {
    for name in names {
        devbox.write_spec(name, &git_spec(url, "stopped"));
    }
    for name in names {
        devbox.wait_status(name, "stopped");
    }
    // A retry that began before the stop ends at its own time limit at the latest.
    wait_for(
        "no __git-fetch child of devbox",
        Duration::from_secs(20),
        || git_children(devbox).is_empty().then_some(()),
    );
}

#[test]
fn a_git_server_that_trickles_is_cut_off_at_the_time_limit() {
    let hostile = Hostile::start(Hostility::Trickle);
    let devbox = Devbox::start_opts(
        Options {
            config: hostile_config("git_timeout: 5s"),
            ..Options::default()
        },
        |_| {},
    );
    let url = hostile.url();
    // Two servers of one repository: the second waits for the first's fetch (the
    // mirror's lock), which must be released when the first is cut off.
    let started = Instant::now();
    devbox.write_spec("slow-a", &git_spec(&url, "running"));
    devbox.write_spec("slow-b", &git_spec(&url, "running"));
    for name in ["slow-a", "slow-b"] {
        let message = wait_failed(&devbox, name, STARTUP);
        assert!(
            message.contains("ui.workspace.git_timeout (5s)"),
            "{name}: {message}"
        );
    }
    let took = started.elapsed();
    // Each clone has 5 s, counted from its start; generous slack for a loaded machine.
    assert!(took < Duration::from_secs(40), "failed only after {took:?}");
    assert!(hostile.accepted.load(Ordering::SeqCst) >= 1);

    stop_and_check_no_child(&devbox, &["slow-a", "slow-b"], &url);
    hostile.wait_all_closed();

    // Another repository still clones, through the same mirrors and children.
    let repo = tempfile::tempdir().expect("tempdir");
    git_repo(repo.path(), &[("README.md", "fine\n")]);
    devbox.write_spec(
        "normal",
        &git_spec(&format!("file://{}", repo.path().display()), "running"),
    );
    devbox.wait_running("normal");
    let readme = devbox.state().join("workspaces/normal/README.md");
    assert_eq!(
        std::fs::read_to_string(&readme).expect("README.md cloned"),
        "fine\n"
    );
    assert!(git_children(&devbox).is_empty());
}

#[test]
fn an_endless_ref_advertisement_ends_the_child_not_devbox() {
    const MIB: u64 = 1024 * 1024;
    let hostile = Hostile::start(Hostility::EndlessRefs);
    // A small workspace limit: the child's address space is 512 MB more than it.
    let devbox = Devbox::start_opts(
        Options {
            config: hostile_config("git_timeout: 120s\n    max_workspace_mb: 64"),
            ..Options::default()
        },
        |_| {},
    );
    let url = hostile.url();
    devbox.write_spec("refs", &git_spec(&url, "running"));
    let mut peak = 0;
    let server: Value = wait_for(
        &format!("refs to fail\n{}", devbox.log_tail()),
        STARTUP,
        || {
            peak = peak.max(rss_bytes(devbox.pid()));
            devbox.server("refs").filter(|s| s["phase"] == "failed")
        },
    );
    let message = server["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("more memory than its limit of 576 MB"),
        "{message}"
    );
    assert!(
        peak < 300 * MIB,
        "devbox grew to {} MB while the server sent refs",
        peak / MIB
    );
    stop_and_check_no_child(&devbox, &["refs"], &url);
    hostile.wait_all_closed();
}

#[test]
fn devbox_stops_promptly_in_the_middle_of_a_fetch_and_the_child_with_it() {
    let hostile = Hostile::start(Hostility::Trickle);
    let mut devbox = Devbox::start_opts(
        Options {
            config: hostile_config("git_timeout: 10m"),
            ..Options::default()
        },
        |_| {},
    );
    devbox.write_spec("slow", &git_spec(&hostile.url(), "running"));
    let child = wait_for("a __git-fetch child", STARTUP, || {
        git_children(&devbox).first().copied()
    });
    // Its environment is an allow-list: none of devbox's own settings (the harness
    // gives devbox DEVBOX_CODE_SERVER and DEVBOX_LOG; an API token would be one too).
    assert!(
        environ(devbox.pid())
            .iter()
            .any(|e| e.starts_with(b"DEVBOX_")),
        "devbox itself has DEVBOX_ variables"
    );
    let env = environ(child);
    assert!(!env.is_empty(), "the child's environment is readable");
    for entry in &env {
        assert!(
            !entry.starts_with(b"DEVBOX_"),
            "{}",
            String::from_utf8_lossy(entry)
        );
    }
    let asked = Instant::now();
    devbox.terminate();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "devbox took {took:?} to stop"
    );
    wait_for("the git child to be gone", Duration::from_secs(10), || {
        (!pid_alive(child)).then_some(())
    });
    hostile.wait_all_closed();
}
