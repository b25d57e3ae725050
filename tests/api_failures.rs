//! Failure paths of the API against a real `devbox serve`: a start that fails answers
//! 500 with `{"error", "detail"}` naming the phase and the reason (a fake code-server
//! that exits at once, for fault injection); CORS restricted to a list of origins, and
//! turned off by an empty list; and the API token on `PUT /specs/{name}` and on the
//! `/ws/logs` WebSocket.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite;

use common::{Devbox, Options, Reply, wait_for, ws_connect};

const TOKEN: &str = "failures-T0ken";

/// A code-server that complains on stderr and exits 3 at once.
fn crashing_code_server(dir: &std::path::Path) -> std::path::PathBuf {
    let fake = dir.join("code-server");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'fake code-server: cannot start (boom)' >&2\nexit 3\n",
    )
    .expect("write fake");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    fake
}

#[test]
fn a_start_that_fails_answers_500_naming_the_phase_and_the_reason() {
    let fake_dir = tempfile::tempdir().expect("temp dir");
    let devbox = Devbox::start_with(crashing_code_server(fake_dir.path()), |_| {});
    let created = devbox.create(&json!({"name": "doomed"}));
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["status"], "stopped", "{created}");

    let reply = devbox.post(&format!("/servers/{id}/start"));
    let error = reply.assert_error(500, "failed");
    // `wait::running`: "`doomed` failed to start (failed: code-server exited (exit code
    // 3); last output: …)": the server, the phase and code-server's own words.
    for needle in [
        "`doomed` failed to start",
        "(failed: ",
        "exit code 3",
        "boom",
    ] {
        assert!(
            error.contains(needle),
            "the error should mention {needle:?}: {reply}\n{}",
            devbox.log_tail()
        );
    }
    assert!(!error.contains("timed out"), "{reply}");

    // The API's view agrees with the answer (polled: the controller keeps retrying
    // with backoff, so a retry may be under way at any one moment).
    wait_for(
        "GET /servers/{id} to show the failure",
        Duration::from_secs(30),
        || {
            let server = devbox.get(&format!("/servers/{id}")).json();
            (server["status"] == "failed"
                && server["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("exit code 3") && m.contains("boom")))
            .then_some(())
        },
    );
    // The spec asked for running: the controller keeps trying (that is not undone).
    let spec = std::fs::read_to_string(devbox.specs().join("doomed.yaml")).expect("spec");
    assert!(spec.contains("state: running"), "{spec}");
}

/// `OPTIONS path` as a browser sends it before a cross-origin `method`.
fn preflight(devbox: &Devbox, origin: &str, path: &str, method: &str) -> Reply {
    devbox.call(
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            (
                "Access-Control-Request-Headers",
                "content-type,authorization",
            ),
        ],
        None,
    )
}

/// The comma-separated values of header `name`, lower-cased and trimmed.
fn cors_headers(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-"))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect()
}

#[test]
fn cors_with_a_list_of_origins_allows_only_those() {
    let devbox = Devbox::start_opts(
        Options {
            config: "server:\n  cors_allowed_origins: ['http://a.test']\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    let allowed = devbox.call("GET", "/servers", &[("Origin", "http://a.test")], None);
    assert_eq!(allowed.status, 200, "{allowed}");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("http://a.test"),
        "the allowed origin is echoed, not `*`: {:?}",
        allowed.headers
    );
    // Error answers carry it too.
    let missing = devbox.call("GET", "/servers/nope", &[("Origin", "http://a.test")], None);
    assert_eq!(missing.status, 404, "{missing}");
    assert_eq!(
        missing.header("access-control-allow-origin"),
        Some("http://a.test")
    );

    for origin in [
        "http://evil.test",
        "http://a.test.evil.test",
        "https://a.test",
    ] {
        let other = devbox.call("GET", "/servers", &[("Origin", origin)], None);
        assert_eq!(other.status, 200, "{other}");
        assert_eq!(
            other.header("access-control-allow-origin"),
            None,
            "{origin} is not allowed: {:?}",
            other.headers
        );
        let refused = preflight(&devbox, origin, "/servers", "POST");
        assert_eq!(
            refused.header("access-control-allow-origin"),
            None,
            "preflight from {origin}: {:?}",
            refused.headers
        );
    }

    for (path, method) in [
        ("/servers", "POST"),
        ("/servers/some-id", "DELETE"),
        ("/specs/some-name", "PUT"),
    ] {
        let reply = preflight(&devbox, "http://a.test", path, method);
        reply.assert_preflight(
            &format!("preflight {method} {path}"),
            "http://a.test",
            &[method],
        );
    }
}

#[test]
fn cors_with_an_empty_list_sends_no_cors_headers() {
    let devbox = Devbox::start_opts(
        Options {
            config: "server:\n  cors_allowed_origins: []\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    let listed = devbox.call("GET", "/servers", &[("Origin", "http://a.test")], None);
    assert_eq!(listed.status, 200, "{listed}");
    assert_eq!(cors_headers(&listed), Vec::<String>::new());
    let missing = devbox.call("GET", "/servers/nope", &[("Origin", "http://a.test")], None);
    assert_eq!(missing.status, 404, "{missing}");
    assert_eq!(cors_headers(&missing), Vec::<String>::new());
    let reply = preflight(&devbox, "http://a.test", "/servers", "POST");
    assert_eq!(
        cors_headers(&reply),
        Vec::<String>::new(),
        "a preflight gets no CORS answer: {reply}"
    );
}

fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply}");
    reply.assert_error(401, "API token");
    assert!(
        !reply.text.contains(TOKEN),
        "{what}: never echoes the token"
    );
}

fn token_devbox() -> Devbox {
    Devbox::start_opts(
        Options {
            config: format!("server:\n  api_token: \"{TOKEN}\"\n"),
            ..Options::default()
        },
        |_| {},
    )
}

#[test]
fn put_spec_needs_the_token() {
    let devbox = token_devbox();
    let spec = |port: Option<u16>| {
        let mut spec = json!({
            "apiVersion": "devbox/v1",
            "kind": "DevServer",
            "metadata": {"name": "putme"},
            "spec": {"state": "stopped"},
        });
        if let Some(port) = port {
            spec["spec"]["port"] = json!(port);
        }
        serde_json::to_vec(&spec).expect("json")
    };
    let body = spec(None);
    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}x");
    for authorization in [None, Some("Bearer nope"), Some(wrong.as_str())] {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = authorization {
            headers.push(("Authorization", a));
        }
        let reply = devbox.call("PUT", "/specs/putme", &headers, Some(&body));
        assert_unauthorized(&reply, &format!("PUT /specs/putme with {authorization:?}"));
        assert!(
            !devbox.specs().join("putme.yaml").exists(),
            "a refused PUT writes nothing"
        );
    }

    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", bearer.as_str()),
    ];
    let created = devbox.call("PUT", "/specs/putme", &headers, Some(&body));
    assert_eq!(created.status, 200, "{created}\n{}", devbox.log_tail());
    assert_eq!(created.json()["message"], "created", "{created}");
    assert_eq!(created.json()["data"]["slug"], "putme", "{created}");
    assert!(devbox.specs().join("putme.yaml").exists());

    // A refused replacement leaves the file as it was.
    let before = std::fs::read_to_string(devbox.specs().join("putme.yaml")).expect("spec");
    let pinned = spec(Some(devbox.port_start));
    let refused = devbox.call(
        "PUT",
        "/specs/putme",
        &[("Content-Type", "application/json")],
        Some(&pinned),
    );
    assert_unauthorized(&refused, "PUT /specs/putme replacing without a token");
    assert_eq!(
        std::fs::read_to_string(devbox.specs().join("putme.yaml")).expect("spec"),
        before
    );
    let replaced = devbox.call("PUT", "/specs/putme", &headers, Some(&pinned));
    assert_eq!(replaced.status, 200, "{replaced}");
    assert_eq!(replaced.json()["message"], "configured", "{replaced}");
    let after = std::fs::read_to_string(devbox.specs().join("putme.yaml")).expect("spec");
    assert!(
        after.contains(&format!("port: {}", devbox.port_start)),
        "{after}"
    );
}

#[test]
fn the_log_websocket_needs_the_token() {
    let devbox = token_devbox();
    for (what, headers) in [
        ("no token", vec![]),
        (
            "a wrong token",
            vec![("Authorization", "Bearer wrong".to_owned())],
        ),
        (
            "a made-up session",
            vec![("Cookie", "devbox_session=wrong".to_owned())],
        ),
        (
            "the token as a cookie (what the old dashboard set from script)",
            vec![("Cookie", format!("devbox_token={TOKEN}"))],
        ),
    ] {
        for path in ["/ws/logs", "/ws/logs/anything"] {
            match ws_connect(&devbox, path, &headers) {
                Ok(_) => panic!("{path} with {what}: the upgrade should be refused"),
                Err(status) => assert_eq!(status, 401, "{path} with {what}"),
            }
        }
    }

    let mut socket = ws_connect(
        &devbox,
        "/ws/logs",
        &[("Authorization", format!("Bearer {TOKEN}"))],
    )
    .unwrap_or_else(|status| panic!("/ws/logs with the token: HTTP {status}"));
    // The dashboard's session cookie is accepted as well (browsers cannot set headers
    // on WebSockets): the token is exchanged for it once.
    let login = devbox.login(TOKEN);
    assert_eq!(login.status, 200, "{login}");
    let session = login
        .header("set-cookie")
        .and_then(|cookie| cookie.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let cookie = ws_connect(
        &devbox,
        "/ws/logs",
        &[("Cookie", format!("other=1; {session}"))],
    );
    assert!(
        cookie.is_ok(),
        "/ws/logs with the cookie: {:?}",
        cookie.err()
    );

    // The accepted stream is live: a server created now shows up in it.
    let created = devbox.call(
        "POST",
        "/servers",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {TOKEN}")),
        ],
        Some(br#"{"name": "streamed"}"#),
    );
    assert_eq!(created.status, 201, "{created}");
    let started = devbox.call(
        "POST",
        "/servers/streamed/start",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        Some(b""),
    );
    assert_eq!(started.status, 200, "{started}\n{}", devbox.log_tail());
    let line = wait_for(
        "a log line of `streamed` on /ws/logs",
        Duration::from_secs(60),
        || match socket.read().expect("read") {
            tungstenite::Message::Text(text) => {
                let value: serde_json::Value = serde_json::from_str(text.as_str()).expect("JSON");
                (value["server_name"] == "streamed").then_some(value)
            }
            tungstenite::Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => None,
        },
    );
    assert_eq!(line["type"], "log", "{line}");
}
