//! Authentication and CORS against a real `devbox serve`: with an API token (in the
//! config or in `DEVBOX_API_TOKEN`), every route but `/health` answers 401 without
//! `Authorization: Bearer <token>` and works with it; CORS preflights answer as the
//! seed's reference says, by default.

mod common;

use serde_json::{Value, json};

use common::{
    Devbox, Options, Part, Reply, assert_types, devbox_bin, free_ports, git_repo, list_dir,
    multipart,
};

const TOKEN: &str = "s3cret-T0ken";

/// Every route but `/health`, with a body it would accept, as
/// (method, path, content type, body). `{id}` is replaced by a server's id.
fn routes() -> Vec<(&'static str, &'static str, Option<&'static str>, Vec<u8>)> {
    let json = |value: Value| serde_json::to_vec(&value).expect("json");
    let app_json = Some("application/json");
    vec![
        ("GET", "/config", None, vec![]),
        ("GET", "/templates", None, vec![]),
        ("GET", "/openapi.json", None, vec![]),
        ("GET", "/servers", None, vec![]),
        (
            "POST",
            "/servers",
            app_json,
            json(json!({"name": "via-post"})),
        ),
        (
            "POST",
            "/servers/create-metadata",
            app_json,
            json(json!({"name": "via-metadata"})),
        ),
        (
            "POST",
            "/servers/create-from-template",
            app_json,
            json(
                json!({"name": "via-template", "template_id": "Databricks Workshop", "tab_name": "Workshops"}),
            ),
        ),
        ("POST", "/servers/refresh-all", None, vec![]),
        ("GET", "/servers/{id}", None, vec![]),
        ("GET", "/servers/{id}/health", None, vec![]),
        ("GET", "/servers/{id}/logs?lines=5", None, vec![]),
        ("POST", "/servers/{id}/refresh-status", None, vec![]),
        (
            "POST",
            "/servers/{id}/install-extensions",
            app_json,
            json(json!({"extensions": ["acme.tool"]})),
        ),
        (
            "POST",
            "/servers/{id}/install-extension",
            app_json,
            json(json!({"extension": "acme.other"})),
        ),
        (
            "POST",
            "/servers/{id}/apply-group-settings",
            app_json,
            json(json!({"groupName": "tools"})),
        ),
        ("POST", "/servers/{id}/start", None, vec![]),
        ("POST", "/servers/{id}/restart", None, vec![]),
        ("POST", "/servers/{id}/stop", None, vec![]),
        ("DELETE", "/servers/{id}", None, vec![]),
    ]
}

/// `method path` with an optional `Authorization` header.
fn send(
    devbox: &Devbox,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    authorization: Option<&str>,
) -> Reply {
    let mut headers = Vec::new();
    if let Some(t) = content_type {
        headers.push(("Content-Type", t));
    }
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    let body = (method != "GET" && method != "DELETE").then_some(body);
    devbox.call(method, path, &headers, body)
}

fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply}");
    let body = reply.json();
    assert_types(&body, &[("error", "string")]);
    assert!(!body["error"].as_str().unwrap_or_default().is_empty());
    assert!(
        !reply.text.contains(TOKEN),
        "the answer never echoes the token"
    );
}

/// Every route answers 401 without the token (or with a wrong one) and changes
/// nothing; `/health` needs none; with the token every route does its job.
fn check_token_is_required(devbox: &Devbox, token: &str, repo_url: &str) {
    let bearer = format!("Bearer {token}");
    let health = devbox.get("/health");
    assert_eq!(health.status, 200, "/health needs no token: {health}");

    // A server to aim the {id} routes at, created with the token.
    let created = send(
        devbox,
        "POST",
        "/servers",
        Some("application/json"),
        br#"{"name": "target"}"#,
        Some(&bearer),
    );
    assert_eq!(created.status, 201, "{created}");
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let specs_before = list_dir(&devbox.specs());

    let wrong = [
        None,
        Some("Bearer wrong-token".to_owned()),
        Some(format!("Bearer {token}x")),
        Some(format!("bearer{token}")),
        Some(format!("Basic {token}")),
        Some(token.to_owned()),
        Some("Bearer ".to_owned()),
    ];
    let (form_type, form) = multipart(&[
        ("name", Part::Text("via-form")),
        ("github_url", Part::Text(repo_url)),
    ]);
    let (clone_type, clone_form) = multipart(&[("github_url", Part::Text(repo_url))]);
    let mut all = routes();
    all.push((
        "POST",
        "/servers/create-with-workspace",
        Some(form_type.as_str()),
        form.clone(),
    ));
    all.push((
        "POST",
        "/servers/{id}/clone-workspace",
        Some(clone_type.as_str()),
        clone_form.clone(),
    ));
    for (method, path, content_type, body) in &all {
        let path = path.replace("{id}", &id);
        for authorization in &wrong {
            let reply = send(
                devbox,
                method,
                &path,
                *content_type,
                body,
                authorization.as_deref(),
            );
            assert_unauthorized(&reply, &format!("{method} {path} with {authorization:?}"));
        }
    }
    assert_eq!(
        list_dir(&devbox.specs()),
        specs_before,
        "refused calls changed nothing"
    );
    let target = std::fs::read_to_string(devbox.specs().join("target.yaml")).expect("spec");
    assert!(
        !target.contains("acme.tool") && !target.contains("running"),
        "{target}"
    );

    // With the token, every route does its job.
    let clone_target = send(
        devbox,
        "POST",
        "/servers/create-metadata",
        Some("application/json"),
        br#"{"name": "clone-target"}"#,
        Some(&bearer),
    );
    assert_eq!(clone_target.status, 201, "{clone_target}");
    let clone_id = clone_target.json()["id"].as_str().expect("id").to_owned();
    let reply = send(
        devbox,
        "POST",
        &format!("/servers/{clone_id}/clone-workspace"),
        Some(&clone_type),
        &clone_form,
        Some(&bearer),
    );
    assert_eq!(reply.status, 200, "clone-workspace: {reply}");
    let reply = send(
        devbox,
        "POST",
        "/servers/create-with-workspace",
        Some(&form_type),
        &form,
        Some(&bearer),
    );
    assert_eq!(reply.status, 201, "create-with-workspace: {reply}");
    for (method, path, content_type, body) in routes() {
        let path = path.replace("{id}", &id);
        let reply = send(devbox, method, &path, content_type, &body, Some(&bearer));
        let expected = if method == "POST" && !path.contains(&id) && path != "/servers/refresh-all"
        {
            201
        } else {
            200
        };
        assert_eq!(
            reply.status,
            expected,
            "{method} {path}: {reply}\n{}",
            devbox.log_tail()
        );
        if path.ends_with("/start") || path.ends_with("/restart") {
            assert_eq!(reply.json()["data"]["status"], "running", "{reply}");
        }
    }
    assert!(!devbox.specs().join("target.yaml").exists(), "deleted");
}

fn token_config(repo: &std::path::Path) -> String {
    format!(
        r#"server:
  api_token: "{TOKEN}"
packaged_assets:
  tabs:
    - name: Workshops
      items:
        - name: Databricks Workshop
          extensions_groups: [tools]
          github_url: "file://{}"
"#,
        repo.display()
    )
}

#[test]
fn api_token_in_the_config_is_required_on_every_route_but_health() {
    let repo = tempfile::tempdir().expect("temp dir");
    git_repo(repo.path(), &[("README.md", "x")]);
    let devbox = Devbox::start_opts(
        Options {
            config: token_config(repo.path()),
            ..Options::default()
        },
        |_| {},
    );
    check_token_is_required(&devbox, TOKEN, &format!("file://{}", repo.path().display()));
    // `GET /config` never shows the token.
    let config = send(
        &devbox,
        "GET",
        "/config",
        None,
        b"",
        Some(&format!("Bearer {TOKEN}")),
    );
    assert!(!config.text.contains(TOKEN), "{config}");
}

#[test]
fn api_token_from_the_environment_is_required_and_overrides_the_config() {
    let repo = tempfile::tempdir().expect("temp dir");
    git_repo(repo.path(), &[("README.md", "x")]);
    let env_token = "from-the-environment-42";
    let devbox = Devbox::start_opts(
        Options {
            config: token_config(repo.path()),
            env: vec![("DEVBOX_API_TOKEN".into(), env_token.into())],
            ..Options::default()
        },
        |_| {},
    );
    let old = send(
        &devbox,
        "GET",
        "/servers",
        None,
        b"",
        Some(&format!("Bearer {TOKEN}")),
    );
    assert_unauthorized(&old, "the config's token, overridden by the environment");
    check_token_is_required(
        &devbox,
        env_token,
        &format!("file://{}", repo.path().display()),
    );
}

#[test]
fn environment_token_alone_turns_authentication_on() {
    let devbox = Devbox::start_opts(
        Options {
            env: vec![("DEVBOX_API_TOKEN".into(), "only-env".into())],
            ..Options::default()
        },
        |_| {},
    );
    assert_unauthorized(&devbox.get("/servers"), "GET /servers without a token");
    let ok = send(
        &devbox,
        "GET",
        "/servers",
        None,
        b"",
        Some("Bearer only-env"),
    );
    assert_eq!(ok.status, 200, "{ok}");
    assert_eq!(ok.json(), json!([]));
}

/// The comma-separated values of header `name`, lower-cased and trimmed.
fn preflight(devbox: &Devbox, path: &str, method: &str) -> Reply {
    devbox.call(
        "OPTIONS",
        path,
        &[
            ("Origin", "http://ui.example.com"),
            ("Access-Control-Request-Method", method),
            (
                "Access-Control-Request-Headers",
                "content-type,authorization",
            ),
        ],
        None,
    )
}

fn assert_seed_preflight(reply: &Reply, what: &str) {
    reply.assert_preflight(what, "*", &["get", "post", "put", "delete", "options"]);
}

#[test]
fn cors_is_same_origin_only_by_default() {
    let devbox = Devbox::start();
    for (path, method) in [
        ("/servers", "POST"),
        ("/servers", "GET"),
        ("/servers/some-id", "DELETE"),
        ("/config", "GET"),
    ] {
        let reply = preflight(&devbox, path, method);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "preflight {method} {path}: {reply}"
        );
    }
    // A read from another origin's page gets its answer without a CORS header, so the
    // browser keeps it from that page.
    let listed = devbox.call(
        "GET",
        "/servers",
        &[("Origin", "http://ui.example.com")],
        None,
    );
    assert_eq!(listed.status, 200);
    assert_eq!(listed.header("access-control-allow-origin"), None);
}

/// The original tool's development setting: every origin, which is safe only with a
/// token (a page cannot send it without the user's help).
fn any_origin_with_token() -> Options {
    Options {
        config: format!("server:\n  api_token: \"{TOKEN}\"\n  cors_allowed_origins: ['*']\n"),
        ..Options::default()
    }
}

/// Runs `devbox serve` with `config` and `args` where it must refuse to start: its
/// stderr, once it has checked that devbox failed and started nothing.
fn refused_start(config_text: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("devbox.yaml");
    std::fs::write(&config, config_text).expect("config");
    let output = std::process::Command::new(devbox_bin())
        .args(["--specs", "specs", "--state-dir", "state", "--config"])
        .arg(&config)
        .args(["serve", "--port", &free_ports(1).to_string()])
        .args(args)
        .current_dir(dir.path())
        .env_remove("DEVBOX_API_TOKEN")
        .env_remove("DEVBOX_API_TOKEN_FILE")
        .output()
        .expect("devbox runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{config_text}: {stderr}");
    assert!(
        !dir.path().join("state").exists(),
        "{config_text}: nothing was started: {stderr}"
    );
    stderr
}

#[test]
fn cors_for_every_origin_without_a_token_refuses_to_start() {
    // `null` is every sandboxed frame's and every local file's origin: as open as `*`.
    for origins in ["['*']", "['null']", "[https://ok.example, 'NULL']"] {
        let stderr = refused_start(
            &format!("server:\n  cors_allowed_origins: {origins}\n"),
            &[],
        );
        assert!(
            stderr.contains("cors_allowed_origins") && stderr.contains("API token"),
            "{origins}: says why: {stderr}"
        );
    }
}

#[test]
fn serving_other_machines_without_a_token_refuses_to_start() {
    for (config, args) in [
        ("server:\n  bind_address: 0.0.0.0\n", &[][..]),
        ("{}\n", &["--bind", "0.0.0.0"][..]),
    ] {
        let stderr = refused_start(config, args);
        assert!(
            stderr.contains("without an API token") && stderr.contains("api_token_file"),
            "says why and what to set: {stderr}"
        );
    }
}

#[test]
fn cors_preflight_needs_no_token() {
    let devbox = Devbox::start_opts(any_origin_with_token(), |_| {});
    assert_seed_preflight(
        &preflight(&devbox, "/servers", "POST"),
        "preflight with a token configured",
    );
    let refused = devbox.call(
        "GET",
        "/servers",
        &[("Origin", "http://ui.example.com")],
        None,
    );
    assert_unauthorized(&refused, "GET /servers from a browser without a token");
}

#[test]
fn cors_headers_are_on_401_answers_too() {
    let devbox = Devbox::start_opts(any_origin_with_token(), |_| {});
    let refused = devbox.call(
        "GET",
        "/servers",
        &[("Origin", "http://ui.example.com")],
        None,
    );
    assert_unauthorized(&refused, "GET /servers from a browser without a token");
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("*"),
        "a browser can read the 401"
    );
}
