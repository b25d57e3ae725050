//! Memory, disk and servers without bounds, and git URLs into the host (issue 11, items 7
//! and 8), each tried as it was seen to work and shown refused, with proof that nothing
//! happened: devbox's memory stays bounded, no workspace or upload is left on disk, no
//! spec file is written, and nothing connects to the listener a URL points at.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{
    Devbox, Options, Part, STARTUP, form, git_repo, list_dir, rejected, upload_routes, wait_for,
};

/// devbox's resident memory, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn devbox_with(config: &str) -> Devbox {
    Devbox::start_opts(
        Options {
            config: config.to_owned(),
            ..Options::default()
        },
        |_| {},
    )
}

/// The server whose spec file is `slug`, from `GET /servers`.
fn server_by_slug(devbox: &Devbox, slug: &str) -> Option<Value> {
    devbox.servers().into_iter().find(|s| s["slug"] == slug)
}

/// Waits until the server of `slug` is in devbox's `phase`; returns it.
fn wait_phase(devbox: &Devbox, slug: &str, phase: &str) -> Value {
    wait_for(
        &format!("{slug} to be {phase}\n{}", devbox.log_tail()),
        STARTUP,
        || server_by_slug(devbox, slug).filter(|s| s["phase"] == phase),
    )
}

const MIB: usize = 1024 * 1024;

#[test]
fn huge_log_lines_keep_memory_and_answers_bounded() {
    // The file is not rotated during the test: rotation copies and truncates a file
    // code-server keeps appending to, and a line appended in between is lost (see
    // `logs::rotate`), which would make the count of lines below a matter of timing.
    let devbox = devbox_with("controller:\n  log_max_bytes: 1073741824\n");
    devbox.write_spec("chatty", "  state: running\n");
    devbox.wait_running("chatty");
    let id = devbox.server("chatty").expect("listed")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let before = rss_bytes(devbox.pid());

    // What a participant (or a misbehaving extension) can make code-server print: eight
    // lines of 20 MB, then one 20 MB line that never ends.
    let log = devbox.state().join("servers/chatty/code-server.log");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("code-server.log");
    let line = vec![b'A'; 20 * MIB];
    for _ in 0..8 {
        file.write_all(&line).expect("append");
        file.write_all(b"\n").expect("append");
    }
    file.write_all(&line).expect("append");
    file.flush().expect("flush");

    let marked = format!("[cut: {} bytes in all]", 20 * MIB);
    let reply = wait_for("the eight lines in the logs", STARTUP, || {
        let reply = devbox.get(&format!("/servers/{id}/logs?lines=8"));
        let cut = reply.json()["data"]["logs"]
            .as_array()?
            .iter()
            .filter(|l| l.as_str().is_some_and(|l| l.ends_with(&marked)))
            .count();
        (cut == 8).then_some(reply)
    });
    // Eight lines of 16 KiB and their marks; today's answer was 167 MB.
    assert!(
        reply.text.len() < 8 * (16 * 1024 + 256),
        "the answer holds {} bytes",
        reply.text.len()
    );
    // Give the tail time to read the unfinished line too, then look at memory.
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_bytes(devbox.pid());
    assert!(
        after < before + 64 * MIB as u64,
        "devbox grew from {} to {} MB",
        before / MIB as u64,
        after / MIB as u64
    );
    // The unfinished line is not in the answer (its newline never came), and all of
    // /ws/logs' backlog is bounded the same way.
    let reply = devbox.get(&format!("/servers/{id}/logs?lines=10000"));
    assert!(reply.text.len() < 2 * MIB, "{} bytes", reply.text.len());
}

#[test]
fn a_git_workspace_past_max_workspace_mb_fails_and_leaves_nothing() {
    let devbox = devbox_with("ui:\n  workspace:\n    max_workspace_mb: 5\n");
    // 20 MB of zeros compress to a few kilobytes: a small repository, a large checkout.
    let repo = tempfile::tempdir().expect("tempdir");
    let zeros = "\0".repeat(20 * MIB);
    git_repo(
        repo.path(),
        &[("zeros.bin", zeros.as_str()), ("README.md", "hi\n")],
    );
    let packed: u64 = walk_bytes(&repo.path().join(".git"));
    assert!(
        packed < MIB as u64,
        "the repository is small: {packed} bytes"
    );

    devbox.write_spec(
        "bomb",
        &format!(
            "  state: running\n  workspace:\n    git: {{url: \"file://{}\"}}\n",
            repo.path().display()
        ),
    );
    let failed = wait_phase(&devbox, "bomb", "failed");
    let reason = failed["message"].as_str().unwrap_or_default();
    assert!(
        reason.contains("ui.workspace.max_workspace_mb (5 MB)"),
        "{failed}"
    );
    // Stopped, so that no retry is under way: no workspace, no temporary folder.
    devbox.write_spec(
        "bomb",
        &format!(
            "  state: stopped\n  workspace:\n    git: {{url: \"file://{}\"}}\n",
            repo.path().display()
        ),
    );
    devbox.wait_status("bomb", "stopped");
    let workspaces = devbox.state().join("workspaces");
    wait_for("no workspace left", Duration::from_secs(10), || {
        list_dir(&workspaces)
            .iter()
            .all(|name| !name.contains("bomb"))
            .then_some(())
    });
    assert!(walk_bytes(&workspaces) < MIB as u64);
}

/// Bytes of the files under `dir`.
fn walk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[test]
fn an_upload_cut_off_by_kill_9_is_gone_after_a_restart() {
    let mut devbox = Devbox::start();
    let uploads = devbox.state().join("uploads");
    // An upload that stops half way: the body promises 50 MB and sends one.
    let boundary = "cut-off-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nhalf\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"zip_file\"; filename=\"w.zip\"\r\n\
         Content-Type: application/zip\r\n\r\n"
    );
    let mut stream = TcpStream::connect(("127.0.0.1", devbox.http_port)).expect("connect");
    write!(
        stream,
        "POST /servers/create-with-workspace HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
        devbox.http_port,
        50 * MIB
    )
    .expect("send");
    stream.write_all(&vec![7u8; MIB]).expect("send");
    stream.flush().expect("flush");
    wait_for("the upload on disk", Duration::from_secs(20), || {
        (walk_bytes(&uploads) >= MIB as u64).then_some(())
    });
    devbox.kill9();
    drop(stream);
    assert!(
        !list_dir(&uploads).is_empty(),
        "the cut-off upload is left behind by the dead devbox"
    );

    devbox.restart();
    assert_eq!(list_dir(&uploads), Vec::<String>::new(), "removed at start");
}

#[test]
fn max_servers_caps_the_api_and_the_spec_files() {
    let devbox = devbox_with("controller:\n  max_servers: 3\n");
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(
            devbox.create(&json!({"name": name}))["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let started = devbox.post(&format!("/servers/{}/start", ids[0]));
    assert_eq!(started.status, 200, "{started}");
    let (pid, _) = devbox.wait_running("a");
    let specs_before: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(devbox.specs().join(format!("{n}.yaml")));
            ((*n).to_owned(), text.expect("spec"))
        })
        .collect();

    // The fourth through every creation route: 409, naming the limit; nothing written.
    rejected(
        &devbox,
        "POST /servers",
        409,
        "controller.max_servers",
        || devbox.post_json("/servers", &json!({"name": "d"})),
    );
    rejected(
        &devbox,
        "create-metadata",
        409,
        "controller.max_servers",
        || devbox.post_json("/servers/create-metadata", &json!({"name": "d"})),
    );
    let zip = crate::common::zip_bytes(&[("f.txt", "x")]);
    rejected(
        &devbox,
        "create-with-workspace",
        409,
        "controller.max_servers",
        || {
            devbox.post_multipart(
                "/servers/create-with-workspace",
                &[
                    ("name", Part::Text("d")),
                    (
                        "zip_file",
                        Part::File {
                            filename: "w.zip",
                            bytes: &zip,
                        },
                    ),
                ],
            )
        },
    );
    let spec = json!({
        "apiVersion": "devbox/v1", "kind": "DevServer",
        "metadata": {"name": "d"}, "spec": {"state": "stopped"}
    });
    let body = serde_json::to_vec(&spec).expect("json");
    rejected(
        &devbox,
        "PUT /specs/d",
        409,
        "controller.max_servers",
        || {
            devbox.call(
                "PUT",
                "/specs/d",
                &[("Content-Type", "application/json")],
                Some(&body),
            )
        },
    );
    // Replacing an existing spec is not a new server.
    let replaced = json!({
        "apiVersion": "devbox/v1", "kind": "DevServer",
        "metadata": {"name": "c"}, "spec": {"state": "stopped"}
    });
    let reply = devbox.call(
        "PUT",
        "/specs/c",
        &[("Content-Type", "application/json")],
        Some(&serde_json::to_vec(&replaced).expect("json")),
    );
    assert_eq!(reply.status, 200, "{reply}");

    // Files written by hand past the cap, one of them sorting before the others: both
    // invalid with the reason, and the three keep their place.
    devbox.write_spec("0-first", "  state: running\n");
    devbox.write_spec("d", "  state: running\n");
    for slug in ["0-first", "d"] {
        let server = wait_phase(&devbox, slug, "invalid");
        let message = server["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("at most 3 servers (controller.max_servers)"),
            "{server}"
        );
        assert_eq!(server["pid"], Value::Null, "{server}");
    }
    assert_eq!(devbox.wait_running("a").0, pid, "a still runs, untouched");
    for name in ["b", "c"] {
        assert_eq!(devbox.server(name).expect("listed")["status"], "stopped");
    }
    for (name, text) in &specs_before[..2] {
        let now = std::fs::read_to_string(devbox.specs().join(format!("{name}.yaml")));
        assert_eq!(&now.expect("spec"), text, "{name}'s spec is untouched");
    }
}

/// A listener that must never see a connection.
struct Trap {
    listener: TcpListener,
    port: u16,
}

impl Trap {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        Self { listener, port }
    }

    fn assert_untouched(&self) {
        match self.listener.accept() {
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("accept: {err}"),
            Ok((_, from)) => panic!("something connected to the trap from {from}"),
        }
    }
}

#[test]
fn git_urls_into_the_host_are_refused_everywhere() {
    let trap = Trap::new();
    let devbox = Devbox::start();
    let urls = [
        format!("https://127.0.0.1:{}/r.git", trap.port),
        format!("https://localhost:{}/r.git", trap.port),
        format!("https://[::ffff:127.0.0.1]:{}/r.git", trap.port),
        format!("ssh://git@127.0.0.1:{}/r.git", trap.port),
        "git@127.0.0.1:r.git".to_owned(),
        "https://169.254.169.254/latest/meta-data".to_owned(),
    ];
    let target = devbox.create(&json!({"name": "target"}));
    let target_id = target["id"].as_str().expect("id");
    for url in &urls {
        for (what, path) in upload_routes(target_id) {
            rejected(
                &devbox,
                &format!("{what} {url}"),
                400,
                "ui.workspace.allow_local_git_hosts",
                || devbox.post_multipart(&path, &form(what, vec![("github_url", Part::Text(url))])),
            );
        }
        let spec = json!({
            "apiVersion": "devbox/v1", "kind": "DevServer",
            "metadata": {"name": "putme"},
            "spec": {"state": "running", "workspace": {"git": {"url": url}}}
        });
        let body = serde_json::to_vec(&spec).expect("json");
        rejected(
            &devbox,
            &format!("PUT /specs {url}"),
            400,
            "ui.workspace.allow_local_git_hosts",
            || {
                devbox.call(
                    "PUT",
                    "/specs/putme",
                    &[("Content-Type", "application/json")],
                    Some(&body),
                )
            },
        );
    }

    // A spec file with such a URL is invalid; the error names the rule and the setting.
    devbox.write_spec(
        "by-hand",
        &format!(
            "  state: running\n  workspace:\n    git: {{url: \"{}\"}}\n",
            urls[0]
        ),
    );
    let server = wait_phase(&devbox, "by-hand", "invalid");
    let message = server["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("local-host rule") && message.contains("allow_local_git_hosts"),
        "{server}"
    );

    // A name that resolves to this host is caught when the server starts, before git
    // connects (Debian's /etc/hosts maps the machine's own name to a loopback address).
    let own_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned();
    let resolves_here = std::net::ToSocketAddrs::to_socket_addrs(&(own_name.as_str(), 0))
        .is_ok_and(|mut addrs| addrs.all(|a| a.ip().is_loopback()));
    if resolves_here {
        devbox.write_spec(
            "by-name",
            &format!(
                "  state: running\n  workspace:\n    git: {{url: \"https://{own_name}:{}/r.git\"}}\n",
                trap.port
            ),
        );
        let server = wait_phase(&devbox, "by-name", "failed");
        let message = server["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`{own_name}` resolves to"))
                && message.contains("allow_local_git_hosts"),
            "{server}"
        );
        assert!(
            !message.contains("TLS") && !message.contains("SSL"),
            "{server}"
        );
    } else {
        eprintln!("skipped the resolved-name case: `{own_name}` is not a loopback name here");
    }
    // Give any clone attempt time to have connected, had it been allowed to.
    std::thread::sleep(Duration::from_secs(1));
    trap.assert_untouched();

    // A template with such a URL makes the config itself invalid.
    let config = std::fs::read_to_string(devbox.path("config.yaml")).expect("config");
    let with_template = format!(
        "{config}packaged_assets:\n  tabs:\n  - name: T\n    items:\n    - name: local\n      github_url: \"{}\"\n",
        urls[0]
    );
    let bad = devbox.path("local-template.yaml");
    std::fs::write(&bad, with_template).expect("write");
    let output = std::process::Command::new(crate::common::devbox_bin())
        .arg("--config")
        .arg(&bad)
        .arg("--state-dir")
        .arg(devbox.state())
        .arg("get")
        .env_remove("DEVBOX_SERVER")
        .output()
        .expect("devbox get");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("github_url") && stderr.contains("allow_local_git_hosts"),
        "{stderr}"
    );
    trap.assert_untouched();
}

#[test]
fn allow_local_git_hosts_lets_local_urls_through() {
    let trap = Trap::new();
    let devbox =
        devbox_with("ui:\n  workspace:\n    allow_local_git_hosts: true\n    git_timeout: 5s\n");
    let url = format!("https://127.0.0.1:{}/r.git", trap.port);
    let reply = devbox.post_multipart(
        "/servers/create-with-workspace",
        &[
            ("name", Part::Text("local")),
            ("github_url", Part::Text(&url)),
        ],
    );
    assert_eq!(reply.status, 201, "{reply}");
    let id = reply.json()["id"].as_str().expect("id").to_owned();
    let start = devbox.post(&format!("/servers/{id}/start"));
    // The clone does reach the listener (which hangs up): the setting is what allowed it.
    let deadline = Instant::now() + STARTUP;
    loop {
        match trap.listener.accept() {
            Ok(_) => break,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no connection: {start}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(err) => panic!("accept: {err}"),
        }
    }
}
