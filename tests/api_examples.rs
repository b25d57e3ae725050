//! The API reference's examples, run as written against a real `devbox serve` with real
//! code-server: its cURL commands (real `curl`, through a shell, with only host:port and
//! `<uuid>` substituted) and its Python example (`python3 -c`, `BASE_URL` pointed at the
//! test devbox). The create asks for `ms-python.python`: offline, the marketplace install
//! fails fast and must not block the start.

mod common;

use std::process::{Command, Output};

use serde_json::Value;

use common::{Devbox, pid_alive};

/// The reference's cURL section, verbatim.
const CURL_EXAMPLES: &str = r#"# List servers
curl http://localhost:8000/servers
# Create server
curl -X POST http://localhost:8000/servers \
-H "Content-Type: application/json" \
-d '{"name":"my-server","extensions":["ms-python.python"]}'
# Start server
curl -X POST http://localhost:8000/servers/<uuid>/start
# Get logs
curl http://localhost:8000/servers/<uuid>/logs?lines=100
"#;

/// The reference's Python section, verbatim.
const PYTHON_EXAMPLE: &str = r#"import requests
BASE_URL = "http://localhost:8000"
# List servers
response = requests.get(f"{BASE_URL}/servers")
servers = response.json()
# Create server
response = requests.post(
f"{BASE_URL}/servers",
json={"name": "my-server", "extensions": ["ms-python.python"]}
)
server = response.json()
# Start server
server_id = server["id"]
requests.post(f"{BASE_URL}/servers/{server_id}/start")
# Open in browser
print(f"http://localhost:8000/vscode/{server['port']}/")
"#;

/// The commands of the cURL section: (comment, command with its continuation lines).
fn curl_commands() -> Vec<(String, String)> {
    let mut commands: Vec<(String, String)> = Vec::new();
    let mut comment = String::new();
    let mut continuing = false;
    for line in CURL_EXAMPLES.lines() {
        if let Some(text) = line.strip_prefix("# ") {
            comment = text.to_owned();
        } else if continuing {
            if let Some((_, command)) = commands.last_mut() {
                command.push('\n');
                command.push_str(line);
            }
        } else {
            commands.push((comment.clone(), line.to_owned()));
        }
        continuing = line.ends_with('\\');
    }
    commands
}

/// Runs `command` with bash in an empty folder (so `?` in a URL globs nothing).
fn shell(command: &str, cwd: &std::path::Path) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .output()
        .expect("run bash")
}

fn stdout_json(output: &Output, what: &str) -> Value {
    assert!(
        output.status.success(),
        "{what}: exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "{what}: not JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn curl_examples_run_as_written() {
    let devbox = Devbox::start();
    let cwd = tempfile::tempdir().expect("temp dir");
    let host = format!("127.0.0.1:{}", devbox.http_port);
    let commands = curl_commands();
    assert_eq!(
        commands.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        ["List servers", "Create server", "Start server", "Get logs"]
    );
    let mut id = String::new();
    for (what, command) in &commands {
        let command = command
            .replace("localhost:8000", &host)
            .replace("<uuid>", &id);
        let output = shell(&command, cwd.path());
        let body = stdout_json(&output, what);
        match what.as_str() {
            "List servers" => assert_eq!(body, serde_json::json!([]), "{what}"),
            "Create server" => {
                assert_eq!(body["name"], "my-server", "{body}");
                assert_eq!(body["extensions"], serde_json::json!(["ms-python.python"]));
                assert_eq!(body["status"], "stopped", "{body}");
                assert!(body["pid"].is_null(), "{body}");
                id = common::assert_uuid(&body["id"]);
                assert!(devbox.specs().join("my-server.yaml").is_file());
            }
            "Start server" => {
                assert_eq!(body["status"], "success", "{body}");
                assert_eq!(body["message"], "Server started", "{body}");
                assert_eq!(body["data"]["id"], id.as_str());
                assert_eq!(body["data"]["status"], "running", "{body}");
                let pid = body["data"]["pid"].as_u64().expect("pid") as u32;
                assert!(pid_alive(pid));
                let server = devbox.server("my-server").expect("listed");
                assert!(server["port"].as_u64().is_some(), "{server}");
                assert!(devbox.healthz("my-server").is_some(), "code-server answers");
                // The marketplace id failed (offline) and did not block the start.
                assert_eq!(
                    server["extension_results"][0]["extension"], "ms-python.python",
                    "{server}"
                );
                assert_eq!(server["extension_results"][0]["state"], "failed");
            }
            "Get logs" => {
                assert_eq!(body["status"], "success", "{body}");
                let logs = body["data"]["logs"].as_array().expect("logs");
                assert!(!logs.is_empty() && logs.len() <= 100, "{body}");
                assert!(
                    logs.iter()
                        .any(|l| l.as_str().is_some_and(|l| l.contains("ms-python.python"))),
                    "the failed install is in the log: {body}"
                );
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn python_example_runs_as_written() {
    let devbox = Devbox::start();
    let base = format!("http://127.0.0.1:{}", devbox.http_port);
    let code = PYTHON_EXAMPLE.replace(
        r#"BASE_URL = "http://localhost:8000""#,
        &format!(r#"BASE_URL = "{base}""#),
    );
    assert_ne!(code, PYTHON_EXAMPLE, "BASE_URL was replaced");
    let cwd = tempfile::tempdir().expect("temp dir");
    let output = Command::new("python3")
        .arg("-c")
        .arg(&code)
        .current_dir(cwd.path())
        .output()
        .expect("run python3 (scripts/test.sh installs `requests`)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The example's own output, and what it did: a running, healthy my-server.
    let server = devbox.server("my-server").expect("my-server was created");
    let port = server["port"].as_u64().expect("port");
    assert_eq!(stdout, format!("http://localhost:8000/vscode/{port}/\n"));
    assert_eq!(server["status"], "running", "{server}");
    let pid = server["pid"].as_u64().expect("pid") as u32;
    assert!(pid_alive(pid));
    assert!(devbox.healthz("my-server").is_some());
    assert_eq!(devbox.servers().len(), 1);
    // The printed address (devbox's proxy) reaches that code-server.
    let opened = devbox.get(&format!("/vscode/{port}/"));
    assert!(
        opened.status < 400,
        "GET /vscode/{port}/ through devbox: {}",
        opened.status
    );
}
