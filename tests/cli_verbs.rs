//! The CLI's kubectl habits against a live `devbox serve` and real code-server: `start`,
//! `stop`, `restart`, `wait` and `describe`, each locally (on the spec file and the
//! state directory) and with `--server` (through the API), on one server; `wait`
//! failing at once for a server that fails to start (a fake code-server that exits).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Devbox, devbox_bin, exit_and_output, stdout};

/// A `devbox` command with this devbox's config and directories (local mode).
fn local(devbox: &Devbox, args: &[&str]) -> Output {
    devbox.command().args(args).output().expect("run devbox")
}

/// A bare `devbox --server <devbox's URL>` run in `cwd`, with no config, specs or
/// state dir of its own.
fn remote(devbox: &Devbox, cwd: &Path, args: &[&str]) -> Output {
    Command::new(devbox_bin())
        .current_dir(cwd)
        .arg("--server")
        .arg(devbox.url(""))
        .args(args)
        .env_remove("DEVBOX_CONFIG_PATH")
        .env_remove("DEVBOX_SPECS_DIR")
        .env_remove("DEVBOX_STATE_DIR")
        .env_remove("DEVBOX_CODE_SERVER")
        .env_remove("DEVBOX_SERVER")
        .env_remove("DEVBOX_API_TOKEN")
        .output()
        .expect("run devbox")
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}",
        exit_and_output(output)
    );
}

/// The value of `Label:` in `describe`'s output (one line, trimmed).
fn field(described: &str, label: &str) -> Option<String> {
    described
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{label}:")))
        .map(|value| value.trim().to_owned())
}

/// The STATUS of condition `kind` in `describe`'s output.
fn condition(described: &str, kind: &str) -> Option<String> {
    described.lines().find_map(|line| {
        let mut cells = line.split_whitespace();
        (cells.next() == Some(kind)).then(|| cells.next().unwrap_or_default().to_owned())
    })
}

/// The pid the API reports for `name`.
fn api_pid(devbox: &Devbox, name: &str) -> u64 {
    let server = devbox.server(name).expect("listed");
    assert_eq!(server["status"], "running", "{server}");
    server["pid"].as_u64().expect("pid")
}

const SPEC: &str = "apiVersion: devbox/v1
kind: DevServer
metadata:
  name: verbs
  owner: ada
  labels: {team: cli}
spec:
  state: stopped
  resources: {pids: 4096}
";

#[test]
fn start_stop_restart_wait_and_describe_locally_and_through_the_api() {
    let devbox = Devbox::start();
    let cwd = tempfile::tempdir().expect("temp dir");

    // apply -f - against a running devbox: the spec comes from stdin.
    let mut apply = devbox
        .command()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply");
    std::io::Write::write_all(&mut apply.stdin.take().expect("stdin"), SPEC.as_bytes())
        .expect("write stdin");
    let out = apply.wait_with_output().expect("apply");
    assert_ok(&out, "apply -f -");
    assert_eq!(stdout(&out).trim(), "created verbs");

    // Local: wait for the stopped server, describe it.
    let out = local(
        &devbox,
        &["wait", "verbs", "--for", "stopped", "--timeout", "60s"],
    );
    assert_ok(&out, "wait --for stopped");
    assert_eq!(stdout(&out).trim(), "verbs is stopped");
    let out = local(&devbox, &["describe", "verbs"]);
    assert_ok(&out, "describe");
    let described = stdout(&out);
    assert_eq!(
        field(&described, "Name").as_deref(),
        Some("verbs"),
        "{described}"
    );
    assert_eq!(
        field(&described, "Owner").as_deref(),
        Some("ada"),
        "{described}"
    );
    assert_eq!(
        field(&described, "Labels").as_deref(),
        Some("team=cli"),
        "{described}"
    );
    assert_eq!(
        field(&described, "Desired state").as_deref(),
        Some("stopped"),
        "{described}"
    );
    assert_eq!(
        field(&described, "Phase").as_deref(),
        Some("stopped"),
        "{described}"
    );
    assert_eq!(
        field(&described, "Limits").as_deref(),
        Some("pids 4096"),
        "{described}"
    );
    assert!(
        described.contains("(spec.resources: pids 4096)"),
        "{described}"
    );
    assert_eq!(
        condition(&described, "SpecValid").as_deref(),
        Some("True"),
        "{described}"
    );
    assert_eq!(
        condition(&described, "SpecObserved").as_deref(),
        Some("True"),
        "{described}"
    );
    assert_eq!(
        condition(&described, "Ready").as_deref(),
        Some("False"),
        "{described}"
    );
    assert!(
        described.contains("INFO: created"),
        "the events: {described}"
    );
    assert!(
        described.contains("\n    resources: {pids: 4096}\n"),
        "the spec: {described}"
    );

    // -o wide shows the owner, locally and over the API.
    for out in [
        local(&devbox, &["get", "-o", "wide"]),
        remote(&devbox, cwd.path(), &["get", "-o", "wide"]),
    ] {
        assert_ok(&out, "get -o wide");
        let rows: Vec<Vec<String>> = stdout(&out)
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect();
        assert_eq!(rows[0][..2], ["NAME", "OWNER"], "{}", exit_and_output(&out));
        assert_eq!(rows[1][..2], ["verbs", "ada"], "{}", exit_and_output(&out));
    }

    // Local start: the spec file says running (as the API's start writes it), and
    // wait returns once devbox runs it.
    let out = local(&devbox, &["start", "verbs"]);
    assert_ok(&out, "start");
    assert!(
        stdout(&out).starts_with("start requested for verbs"),
        "{}",
        exit_and_output(&out)
    );
    let spec = std::fs::read_to_string(devbox.specs().join("verbs.yaml")).expect("spec");
    assert!(spec.contains("state: running"), "{spec}");
    assert!(
        spec.contains("devbox/restarted-at:"),
        "a fresh attempt: {spec}"
    );
    let out = local(
        &devbox,
        &["wait", "verbs", "--for", "running", "--timeout", "120s"],
    );
    assert_ok(&out, "wait --for running");
    assert_eq!(stdout(&out).trim(), "verbs is running");
    let first_pid = api_pid(&devbox, "verbs");

    let out = local(&devbox, &["describe", "verbs"]);
    assert_ok(&out, "describe running");
    let described = stdout(&out);
    assert_eq!(
        field(&described, "Phase").as_deref(),
        Some("running"),
        "{described}"
    );
    assert_eq!(
        field(&described, "PID"),
        Some(first_pid.to_string()),
        "{described}"
    );
    assert_eq!(
        condition(&described, "Ready").as_deref(),
        Some("True"),
        "{described}"
    );

    // Local restart: wait does not end on the old process.
    let out = local(&devbox, &["restart", "verbs"]);
    assert_ok(&out, "restart");
    let out = local(
        &devbox,
        &["wait", "verbs", "--for", "running", "--timeout", "120s"],
    );
    assert_ok(&out, "wait after restart");
    let second_pid = api_pid(&devbox, "verbs");
    assert_ne!(second_pid, first_pid, "a new process");

    // A wait that cannot be met in time: exit 1, saying where the server is.
    let out = local(
        &devbox,
        &["wait", "verbs", "--for", "stopped", "--timeout", "1s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", exit_and_output(&out));
    assert!(
        exit_and_output(&out)
            .contains("timed out after 1s waiting for `verbs` to be stopped; now: running"),
        "{}",
        exit_and_output(&out)
    );

    // Through the API: restart, stop, start answer once done; wait and describe read it.
    let out = remote(&devbox, cwd.path(), &["restart", "verbs"]);
    assert_ok(&out, "--server restart");
    let third_pid = api_pid(&devbox, "verbs");
    assert_ne!(third_pid, second_pid, "a new process");
    assert_eq!(
        stdout(&out).trim(),
        format!("Server restarted: verbs (pid {third_pid})")
    );
    let out = remote(&devbox, cwd.path(), &["describe", "verbs"]);
    assert_ok(&out, "--server describe");
    let described = stdout(&out);
    assert_eq!(
        field(&described, "Name").as_deref(),
        Some("verbs"),
        "{described}"
    );
    assert_eq!(
        field(&described, "Owner").as_deref(),
        Some("ada"),
        "{described}"
    );
    assert_eq!(
        field(&described, "Status").as_deref(),
        Some("running (phase running)"),
        "{described}"
    );
    assert_eq!(
        field(&described, "PID"),
        Some(third_pid.to_string()),
        "{described}"
    );
    assert_eq!(
        condition(&described, "Ready").as_deref(),
        Some("True"),
        "{described}"
    );
    assert!(
        described.contains(&format!("started: pid {third_pid}")),
        "recent log lines: {described}"
    );
    assert!(
        field(&described, "Limits").is_some_and(|v| v.contains("spec.resources: pids 4096")),
        "{described}"
    );
    assert!(
        described.contains("    resources:"),
        "the spec: {described}"
    );

    // diff --server compares with the spec the devbox holds: as it is, nothing; with
    // another state, that line.
    let held = std::fs::read_to_string(devbox.specs().join("verbs.yaml")).expect("spec");
    let inputs = tempfile::tempdir().expect("temp dir");
    let same = inputs.path().join("verbs.yaml");
    let same_arg = same.to_str().unwrap_or_default();
    std::fs::write(&same, &held).expect("write");
    let out = remote(&devbox, cwd.path(), &["diff", "-f", same_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", exit_and_output(&out));
    assert_eq!(stdout(&out).trim(), "unchanged verbs");
    std::fs::write(&same, held.replace("state: running", "state: stopped")).expect("write");
    let out = remote(&devbox, cwd.path(), &["diff", "-f", same_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", exit_and_output(&out));
    assert!(
        stdout(&out).starts_with("changed verbs\n"),
        "{}",
        exit_and_output(&out)
    );
    assert!(
        stdout(&out).contains("\n-  state: running\n+  state: stopped\n"),
        "{}",
        exit_and_output(&out)
    );
    std::fs::write(&same, held.replace("name: verbs", "name: other")).expect("write");
    let out = remote(&devbox, cwd.path(), &["diff", "-f", same_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", exit_and_output(&out));
    assert!(
        stdout(&out).starts_with("created other\n"),
        "{}",
        exit_and_output(&out)
    );

    let out = remote(&devbox, cwd.path(), &["stop", "verbs"]);
    assert_ok(&out, "--server stop");
    assert_eq!(stdout(&out).trim(), "Server stopped: verbs");
    assert_eq!(devbox.server("verbs").expect("listed")["status"], "stopped");
    assert!(
        std::fs::read_to_string(devbox.specs().join("verbs.yaml"))
            .expect("spec")
            .contains("state: stopped")
    );
    let out = remote(&devbox, cwd.path(), &["wait", "verbs", "--for", "stopped"]);
    assert_ok(&out, "--server wait --for stopped");
    let out = remote(
        &devbox,
        cwd.path(),
        &["wait", "verbs", "--for", "running", "--timeout", "1s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", exit_and_output(&out));
    assert!(
        exit_and_output(&out)
            .contains("timed out after 1s waiting for `verbs` to be running; now: stopped"),
        "{}",
        exit_and_output(&out)
    );
    let out = remote(&devbox, cwd.path(), &["start", "verbs"]);
    assert_ok(&out, "--server start");
    let out = remote(&devbox, cwd.path(), &["wait", "verbs", "--for", "running"]);
    assert_ok(&out, "--server wait --for running");
    assert_eq!(stdout(&out).trim(), "verbs is running");
    let out = remote(&devbox, cwd.path(), &["wait", "ghost", "--for", "running"]);
    assert_eq!(out.status.code(), Some(1), "{}", exit_and_output(&out));
    assert!(
        exit_and_output(&out).contains("there is no server `ghost`"),
        "{}",
        exit_and_output(&out)
    );

    // Local stop, then delete: wait sees both through.
    let out = local(&devbox, &["stop", "verbs"]);
    assert_ok(&out, "stop");
    let out = local(
        &devbox,
        &["wait", "verbs", "--for", "stopped", "--timeout", "60s"],
    );
    assert_ok(&out, "wait after stop");
    assert_eq!(devbox.server("verbs").expect("listed")["status"], "stopped");
    let out = local(&devbox, &["delete", "verbs"]);
    assert_ok(&out, "delete");
    let out = local(
        &devbox,
        &["wait", "verbs", "--for", "deleted", "--timeout", "60s"],
    );
    assert_ok(&out, "wait --for deleted");
    assert!(devbox.server("verbs").is_none(), "forgotten");
    let out = remote(&devbox, cwd.path(), &["wait", "verbs", "--for", "deleted"]);
    assert_ok(&out, "--server wait --for deleted");
    assert_eq!(
        common::list_dir(cwd.path()),
        Vec::<String>::new(),
        "--server writes nothing locally"
    );
}

#[test]
fn wait_for_running_fails_at_once_when_the_server_fails() {
    let fake_dir = tempfile::tempdir().expect("temp dir");
    let fake = fake_dir.path().join("code-server");
    std::fs::write(&fake, "#!/bin/sh\necho 'cannot start (boom)' >&2\nexit 3\n").expect("fake");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let devbox = Devbox::start_with(fake, |_| {});
    devbox.write_spec("crashy", "  state: running\n");
    let cwd = tempfile::tempdir().expect("temp dir");

    // The timeout is far away: the failure, not the clock, ends both waits.
    for (how, out) in [
        (
            "locally",
            local(
                &devbox,
                &["wait", "crashy", "--for", "running", "--timeout", "10m"],
            ),
        ),
        (
            "through the API",
            remote(
                &devbox,
                cwd.path(),
                &["wait", "crashy", "--for", "running", "--timeout", "10m"],
            ),
        ),
    ] {
        assert_eq!(
            out.status.code(),
            Some(1),
            "{how}: {}",
            exit_and_output(&out)
        );
        let said = exit_and_output(&out);
        assert!(
            said.contains("`crashy` will not be running: failed:") && said.contains("exit code 3"),
            "{how}: {said}"
        );
    }
}
