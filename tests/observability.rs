//! What an operator watches: `GET /metrics` on a live devbox with a running server
//! (checked by Prometheus' own `promtool`, and read for the figures a dashboard would
//! plot), who may read it, and the log as JSON lines or plain text without colour codes
//! when written to a file. Real devbox, real code-server, real HTTP.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::seats::{open_seat, seat_link};
use common::{Devbox, Options, Reply};

const TOKEN: &str = "observability-admin-T0ken";
const METRICS_TOKEN: &str = "prometheus-scrape-T0ken";

fn with_bearer(devbox: &Devbox, method: &str, path: &str, token: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    devbox.call(method, path, &[("Authorization", bearer.as_str())], None)
}

/// The value of the sample `series` (name and labels as the text writes them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// `promtool check metrics` on `text`: its complaints, or None when it has none.
fn promtool_complaints(text: &str) -> Option<String> {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool");
    (!output.status.success()).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn metrics_of_a_live_devbox_pass_promtool_and_show_its_servers_to_admins_only() {
    let devbox = Devbox::start_opts(
        Options {
            config: format!(
                "server:\n  api_token: \"{TOKEN}\"\n  metrics_token: {{env: TEST_METRICS_TOKEN}}\n"
            ),
            env: vec![
                ("TEST_METRICS_TOKEN".into(), METRICS_TOKEN.into()),
                ("DEVBOX_LOG_FORMAT".into(), "json".into()),
            ],
            ..Options::default()
        },
        |root| {
            std::fs::write(
                root.join("specs/ada.yaml"),
                "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: ada\n  owner: ada\nspec:\n  state: running\n",
            )
            .expect("spec");
        },
    );
    let port = common::wait_for(
        &format!("ada to run\n{}", devbox.log_tail()),
        common::STARTUP,
        || {
            let server = with_bearer(&devbox, "GET", "/servers/ada", TOKEN).json();
            (server["status"] == "running").then(|| server["port"].as_u64())?
        },
    );
    let page = with_bearer(&devbox, "GET", &format!("/vscode/{port}/healthz"), TOKEN);
    assert_eq!(page.status, 200, "{page}");

    // Who may read them: admins and the metrics token; nobody else, and the metrics
    // token opens nothing else.
    devbox
        .get("/metrics")
        .assert_error(401, "missing API token");
    with_bearer(&devbox, "GET", "/metrics", "wrong").assert_error(401, "invalid API token");
    with_bearer(&devbox, "GET", "/servers", METRICS_TOKEN).assert_error(401, "invalid API token");
    let (link, _) = seat_link(&devbox, TOKEN, "ada");
    let participant = open_seat(&devbox, &link, "ada");
    participant
        .call("GET", "/metrics", None)
        .assert_error(403, "only admins");
    let scraped = with_bearer(&devbox, "GET", "/metrics", METRICS_TOKEN);
    assert_eq!(scraped.status, 200, "{scraped}");
    assert_eq!(
        scraped.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );

    // Per-server figures come from the usage sampler, a few seconds behind.
    let memory = "devbox_server_memory_bytes{owner=\"ada\",server=\"ada\"}";
    let text = common::wait_for(
        "ada's memory in the metrics",
        Duration::from_secs(30),
        || {
            let text = with_bearer(&devbox, "GET", "/metrics", TOKEN).text;
            sample(&text, memory).filter(|bytes| *bytes > 0.0)?;
            Some(text)
        },
    );
    if let Some(complaints) = promtool_complaints(&text) {
        panic!("promtool check metrics refused the metrics:\n{complaints}\n{text}");
    }
    for (series, at_least) in [
        ("devbox_servers{phase=\"running\"}", 1.0),
        ("devbox_server_starts_total", 1.0),
        ("devbox_server_ready_seconds_count", 1.0),
        (
            "devbox_workspace_prepare_seconds_count{outcome=\"ok\",source=\"empty\"}",
            1.0,
        ),
        ("devbox_proxy_requests_total{class=\"2xx\"}", 1.0),
        ("devbox_proxy_bytes_total{direction=\"to_client\"}", 1.0),
        (memory, 1_000_000.0),
    ] {
        let value = sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(value >= at_least, "{series} = {value}\n{text}");
    }
    assert!(
        sample(
            &text,
            "devbox_server_cpu_seconds_total{owner=\"ada\",server=\"ada\"}"
        )
        .is_some_and(|seconds| seconds > 0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "devbox_servers{phase=\"stopped\"}"),
        Some(0.0)
    );

    // Stopped, the server leaves its per-server series and counts as stopped.
    let stopped = with_bearer(&devbox, "POST", "/servers/ada/stop", TOKEN);
    assert_eq!(stopped.status, 200, "{stopped}");
    let text = common::wait_for(
        "ada stopped in the metrics",
        Duration::from_secs(30),
        || {
            let text = with_bearer(&devbox, "GET", "/metrics", TOKEN).text;
            (sample(&text, "devbox_servers{phase=\"stopped\"}") == Some(1.0)).then_some(text)
        },
    );
    assert_eq!(sample(&text, memory), None, "{text}");
    assert_eq!(
        sample(&text, "devbox_servers{phase=\"running\"}"),
        Some(0.0)
    );

    // The log: one JSON object per line, and lines about a server carry its name and
    // its owner as fields.
    let log = devbox.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    for line in &lines {
        for field in ["timestamp", "level", "message"] {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
    }
    let started = lines
        .iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("started: pid"))
        })
        .unwrap_or_else(|| panic!("no start line in\n{log}"));
    assert_eq!(started["span"]["server"], "ada", "{started}");
    assert_eq!(started["span"]["owner"], "ada", "{started}");
    assert_eq!(started["level"], "INFO", "{started}");
}

#[test]
fn a_text_log_written_to_a_file_has_no_colour_codes() {
    let devbox = Devbox::start_opts(Options::default(), |root| {
        std::fs::write(
            root.join("specs/plain.yaml"),
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: plain\nspec:\n  state: stopped\n",
        )
        .expect("spec");
    });
    devbox.wait_status("plain", "stopped");
    let log = devbox.log();
    assert!(log.contains("devbox listening"), "{log}");
    assert!(log.contains("server=plain"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log file:\n{log}"
    );
}
