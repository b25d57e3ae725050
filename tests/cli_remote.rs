//! The command line's `--server URL` mode against a live `devbox serve`: `apply -f`
//! sends specs over the API (the file appears in the specs directory, the server is
//! listed), `get` lists (table and JSON), `logs` prints lines (and `-f` follows),
//! `delete` removes; and with an API token, the CLI is refused (exit 1, HTTP 401)
//! without it and works with `--api-token` or `DEVBOX_API_TOKEN`.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use common::{Devbox, Options, devbox_bin, exit_and_output, stdout, wait_for};

const TOKEN: &str = "cli-remote-T0ken";

/// A bare `devbox --server <devbox's URL>`: no config, specs or state dir of its own
/// (it runs in an empty directory with devbox's environment variables removed).
fn remote(devbox: &Devbox, cwd: &Path) -> Command {
    let mut command = Command::new(devbox_bin());
    command
        .current_dir(cwd)
        .arg("--server")
        .arg(devbox.url(""))
        .env_remove("DEVBOX_CONFIG_PATH")
        .env_remove("DEVBOX_SPECS_DIR")
        .env_remove("DEVBOX_STATE_DIR")
        .env_remove("DEVBOX_CODE_SERVER")
        .env_remove("DEVBOX_SERVER")
        .env_remove("DEVBOX_SERVER_PORT")
        .env_remove("DEVBOX_API_TOKEN");
    command
}

fn run(mut command: Command, args: &[&str]) -> Output {
    command.args(args).output().expect("run devbox")
}

/// Writes `<dir>/<file>` holding a spec named `name`; returns its path.
fn spec_file(dir: &Path, file: &str, name: &str, body: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!("apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n{body}"),
    )
    .expect("write spec");
    path
}

fn slugs(devbox: &Devbox, authorization: Option<&str>) -> Vec<String> {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let reply = devbox.call("GET", "/servers", &headers, None);
    assert_eq!(reply.status, 200, "{reply}");
    let mut slugs: Vec<String> = reply
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["slug"].as_str().unwrap_or_default().to_owned())
        .collect();
    slugs.sort();
    slugs
}

/// The rows of a `get` table (header first), split into cells.
fn table(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn apply_get_logs_and_delete_through_the_api() {
    let devbox = Devbox::start();
    let cwd = tempfile::tempdir().expect("temp dir");
    let input = tempfile::tempdir().expect("temp dir");
    // The file name does not matter; the spec's name does.
    let file = spec_file(
        input.path(),
        "any-name.yaml",
        "remote-box",
        "  state: running\n",
    );

    let out = run(
        remote(&devbox, cwd.path()),
        &["apply", "-f", file.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", exit_and_output(&out));
    assert_eq!(
        stdout(&out).trim(),
        "created remote-box",
        "{}",
        exit_and_output(&out)
    );
    assert!(
        devbox.specs().join("remote-box.yaml").exists(),
        "the spec was written into devbox's specs dir"
    );
    assert_eq!(slugs(&devbox, None), ["remote-box"]);
    assert_eq!(
        common::list_dir(cwd.path()),
        Vec::<String>::new(),
        "--server writes nothing locally"
    );
    let (pid, port) = devbox.wait_running("remote-box");

    // Applying the same file again replaces the spec.
    let out = run(
        remote(&devbox, cwd.path()),
        &["apply", "-f", file.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", exit_and_output(&out));
    assert_eq!(
        stdout(&out).trim(),
        "configured remote-box",
        "{}",
        exit_and_output(&out)
    );

    // A spec the devbox refuses: exit 1, the API's reason, nothing written.
    let bad = spec_file(
        input.path(),
        "bad.yaml",
        "bad-port",
        "  state: stopped\n  port: 1\n",
    );
    let out = run(
        remote(&devbox, cwd.path()),
        &["apply", "-f", bad.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", exit_and_output(&out));
    assert!(
        exit_and_output(&out).contains("HTTP 400"),
        "{}",
        exit_and_output(&out)
    );
    assert!(
        exit_and_output(&out).contains("port 1"),
        "{}",
        exit_and_output(&out)
    );
    assert!(!devbox.specs().join("bad-port.yaml").exists());

    // get: the table.
    let out = run(remote(&devbox, cwd.path()), &["get"]);
    assert!(out.status.success(), "{}", exit_and_output(&out));
    let rows = table(&stdout(&out));
    assert_eq!(
        rows.first().map(|r| r[..5].join(" ")),
        Some("NAME STATUS PORT PID UPTIME".to_owned()),
        "{}",
        exit_and_output(&out)
    );
    assert_eq!(rows.len(), 2, "one server: {}", exit_and_output(&out));
    assert_eq!(
        rows[1][..4],
        [
            "remote-box".to_owned(),
            "running".to_owned(),
            port.to_string(),
            pid.to_string()
        ],
        "{}",
        exit_and_output(&out)
    );

    // get: JSON, all and by name.
    for args in [
        &["get", "-o", "json"][..],
        &["get", "remote-box", "-o", "json"],
    ] {
        let out = run(remote(&devbox, cwd.path()), args);
        assert!(out.status.success(), "{args:?}: {}", exit_and_output(&out));
        let servers: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|err| panic!("{args:?}: not JSON ({err}): {}", exit_and_output(&out)));
        let servers = servers.as_array().expect("array");
        assert_eq!(servers.len(), 1, "{args:?}: {}", exit_and_output(&out));
        assert_eq!(servers[0]["slug"], "remote-box");
        assert_eq!(servers[0]["status"], "running");
        assert_eq!(servers[0]["port"], port);
        assert_eq!(servers[0]["pid"], pid);
    }
    let out = run(remote(&devbox, cwd.path()), &["get", "ghost"]);
    assert_eq!(out.status.code(), Some(1), "{}", exit_and_output(&out));
    assert!(
        exit_and_output(&out).contains("no server `ghost`"),
        "{}",
        exit_and_output(&out)
    );

    // logs: devbox's events and code-server's output, in the seed's format.
    // devbox reads code-server's output as it comes: the startup lines may trail the
    // healthy status by a moment.
    let out = wait_for(
        "code-server's startup lines in the logs",
        Duration::from_secs(10),
        || {
            let out = run(
                remote(&devbox, cwd.path()),
                &["logs", "remote-box", "-n", "1000"],
            );
            stdout(&out)
                .contains("HTTP server listening")
                .then_some(out)
        },
    );
    assert!(out.status.success(), "{}", exit_and_output(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("started: pid {pid}"))),
        "{}",
        exit_and_output(&out)
    );
    assert!(
        lines.iter().any(|l| l.contains("HTTP server listening")),
        "code-server's own output: {}",
        exit_and_output(&out)
    );
    assert!(
        lines.iter().all(|l| l.starts_with('[') && l.contains("] ")),
        "{}",
        exit_and_output(&out)
    );
    let out = run(
        remote(&devbox, cwd.path()),
        &["logs", "remote-box", "-n", "2"],
    );
    assert!(out.status.success(), "{}", exit_and_output(&out));
    assert_eq!(stdout(&out).lines().count(), 2, "{}", exit_and_output(&out));
    let out = run(remote(&devbox, cwd.path()), &["logs", "ghost"]);
    assert_eq!(out.status.code(), Some(1), "{}", exit_and_output(&out));
    assert!(
        exit_and_output(&out).contains("HTTP 404"),
        "{}",
        exit_and_output(&out)
    );

    // delete: the spec is gone, the server is not listed, its process is gone.
    let out = run(remote(&devbox, cwd.path()), &["delete", "remote-box"]);
    assert!(out.status.success(), "{}", exit_and_output(&out));
    assert_eq!(
        stdout(&out).trim(),
        "deleted remote-box",
        "{}",
        exit_and_output(&out)
    );
    assert!(!devbox.specs().join("remote-box.yaml").exists());
    assert_eq!(slugs(&devbox, None), Vec::<String>::new());
    wait_for(
        "remote-box's process to be gone",
        Duration::from_secs(10),
        || (!common::pid_alive(pid)).then_some(()),
    );
    let out = run(remote(&devbox, cwd.path()), &["get"]);
    assert!(out.status.success(), "{}", exit_and_output(&out));
    assert_eq!(
        table(&stdout(&out)).len(),
        1,
        "header only: {}",
        exit_and_output(&out)
    );
    let out = run(remote(&devbox, cwd.path()), &["delete", "remote-box"]);
    assert_eq!(out.status.code(), Some(1), "{}", exit_and_output(&out));
    assert!(
        exit_and_output(&out).contains("HTTP 404"),
        "{}",
        exit_and_output(&out)
    );
}

/// Asserts that `out` is a refusal for want of the right token.
fn assert_refused(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: {}",
        exit_and_output(out)
    );
    let all = exit_and_output(out).to_lowercase();
    assert!(
        all.contains("401") && (all.contains("api token") || all.contains("unauthorized")),
        "{what}: the message names the refusal: {}",
        exit_and_output(out)
    );
    assert!(
        !exit_and_output(out).contains(TOKEN),
        "{what}: never prints the token: {}",
        exit_and_output(out)
    );
}

/// Runs `devbox --server … logs NAME -f` and returns its first stdout line (or None
/// when it exits first), then kills it; also returns its stderr.
fn follow_first_line(mut command: Command, name: &str) -> (Option<String>, String) {
    let mut child = command
        .args(["logs", name, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if sender.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let first = receiver.recv_timeout(Duration::from_secs(30)).ok();
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    (first, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn with_an_api_token_the_cli_needs_it() {
    let devbox = Devbox::start_opts(
        Options {
            config: format!("server:\n  api_token: \"{TOKEN}\"\n"),
            ..Options::default()
        },
        |_| {},
    );
    let bearer = format!("Bearer {TOKEN}");
    let cwd = tempfile::tempdir().expect("temp dir");
    let input = tempfile::tempdir().expect("temp dir");
    let file = spec_file(
        input.path(),
        "guarded.yaml",
        "guarded",
        "  state: stopped\n",
    );
    let file_arg = file.to_str().expect("utf-8");

    // Without the token (or with a wrong one) every command is refused.
    let wrong_flag = || {
        let mut c = remote(&devbox, cwd.path());
        c.args(["--api-token", "wrong"]);
        c
    };
    let wrong_env = || {
        let mut c = remote(&devbox, cwd.path());
        c.env("DEVBOX_API_TOKEN", "wrong");
        c
    };
    for (what, command) in [
        ("no token", remote(&devbox, cwd.path())),
        ("a wrong --api-token", wrong_flag()),
        ("a wrong DEVBOX_API_TOKEN", wrong_env()),
    ] {
        let out = run(command, &["apply", "-f", file_arg]);
        assert_refused(&out, &format!("apply with {what}"));
        assert!(!devbox.specs().join("guarded.yaml").exists(), "{what}");
    }
    let out = run(remote(&devbox, cwd.path()), &["get"]);
    assert_refused(&out, "get without a token");
    assert_eq!(stdout(&out), "", "no table without the token");

    // With the token as a flag: apply works.
    let with_flag = || {
        let mut c = remote(&devbox, cwd.path());
        c.args(["--api-token", TOKEN]);
        c
    };
    let with_env = || {
        let mut c = remote(&devbox, cwd.path());
        c.env("DEVBOX_API_TOKEN", TOKEN);
        c
    };
    let out = run(with_flag(), &["apply", "-f", file_arg]);
    assert!(out.status.success(), "{}", exit_and_output(&out));
    assert_eq!(
        stdout(&out).trim(),
        "created guarded",
        "{}",
        exit_and_output(&out)
    );
    assert!(devbox.specs().join("guarded.yaml").exists());
    assert_eq!(slugs(&devbox, Some(&bearer)), ["guarded"]);

    // With the token in the environment: get and logs work; without, they do not.
    let out = run(with_env(), &["get", "-o", "json"]);
    assert!(out.status.success(), "{}", exit_and_output(&out));
    let servers: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(servers[0]["slug"], "guarded", "{servers}");
    assert_eq!(servers[0]["status"], "stopped", "{servers}");
    let out = run(with_env(), &["get"]);
    assert!(out.status.success(), "{}", exit_and_output(&out));
    assert!(
        table(&stdout(&out))
            .iter()
            .any(|row| row.first().map(String::as_str) == Some("guarded")),
        "{}",
        exit_and_output(&out)
    );

    let out = run(remote(&devbox, cwd.path()), &["logs", "guarded"]);
    assert_refused(&out, "logs without a token");
    let out = run(with_env(), &["logs", "guarded"]);
    assert!(out.status.success(), "{}", exit_and_output(&out));
    assert!(
        stdout(&out).lines().any(|l| l.ends_with("INFO: created")),
        "{}",
        exit_and_output(&out)
    );

    // `logs -f` sends the token on the WebSocket.
    let (first, stderr) = follow_first_line(remote(&devbox, cwd.path()), "guarded");
    assert_eq!(first, None, "nothing streamed without a token");
    assert!(stderr.contains("401"), "{stderr}");
    let (first, stderr) = follow_first_line(with_env(), "guarded");
    let first = first.unwrap_or_else(|| panic!("logs -f printed nothing: {stderr}"));
    assert!(first.contains("system: created"), "{first}\n{stderr}");

    // delete: refused without the token (the spec stays), done with it.
    let out = run(remote(&devbox, cwd.path()), &["delete", "guarded"]);
    assert_refused(&out, "delete without a token");
    assert!(devbox.specs().join("guarded.yaml").exists());
    let out = run(with_flag(), &["delete", "guarded"]);
    assert!(out.status.success(), "{}", exit_and_output(&out));
    assert!(!devbox.specs().join("guarded.yaml").exists());
    assert_eq!(slugs(&devbox, Some(&bearer)), Vec::<String>::new());
}
