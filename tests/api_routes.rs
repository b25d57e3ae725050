//! One test per route of the REST API, against a real `devbox serve` with real
//! code-server, asserting the response shapes of the seed's API reference (field names,
//! JSON types, status codes) and what a user sees happen: processes that run or are
//! gone, `/healthz` straight to the server's instance, spec files, workspaces, installed extensions.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use common::{
    Devbox, Options, Part, STARTUP, assert_types, assert_uuid, git_repo, group_alive, healthz,
    list_dir, pid_alive, wait_for, write_vsix, zip_bytes,
};

/// A template in the seed's names ("Databricks Workshop" in tab "Workshops"), whose
/// repository is the local git repository at `repo` (the test config allows `file`).
fn template_config(repo: &std::path::Path) -> String {
    format!(
        r#"packaged_assets:
  tabs:
    - name: Workshops
      items:
        - name: Databricks Workshop
          description: The workshop
          extensions_groups: [tools]
          thumbnail_url: ""
          github_url: "file://{}"
          icon_links:
            - lucide_icon: github
              url: https://example.com/workshop
"#,
        repo.display()
    )
}

/// The fields of a server in `GET /servers` (seed: every one present, these types).
const SERVER_FIELDS: &[(&str, &str)] = &[
    ("id", "string"),
    ("name", "string"),
    ("port", "integer"),
    ("workspace_path", "string"),
    ("extensions", "array"),
    ("status", "string"),
    ("pid", "integer|null"),
    ("start_time", "string|null"),
];

/// The fields only running servers carry.
const RUNNING_FIELDS: &[(&str, &str)] = &[
    ("pid", "integer"),
    ("start_time", "string"),
    ("uptime", "number"),
    ("cpu_percent", "number"),
    ("memory_mb", "number"),
];

/// The fields of the `refresh-status` answer and of each `refresh-all` entry.
const REFRESH_FIELDS: &[(&str, &str)] = &[
    ("status", "string"),
    ("id", "string"),
    ("name", "string"),
    ("port", "integer"),
    ("old_status", "string"),
    ("new_status", "string"),
    ("pid_status", "string"),
    ("healthz_status", "string"),
    ("updated", "boolean"),
];

fn assert_in_range(devbox: &Devbox, port: &Value) -> u16 {
    let port = port.as_u64().expect("port is a number") as u16;
    assert!(
        (devbox.port_start..=devbox.port_end).contains(&port),
        "port {port} outside {}-{}",
        devbox.port_start,
        devbox.port_end
    );
    port
}

/// Asserts the `{"status": "success", "message": …, "data": {id, status, pid}}` answer
/// of start, stop and restart; returns `data`.
fn assert_action(
    devbox: &Devbox,
    reply: &common::Reply,
    message: &str,
    id: &str,
    status: &str,
) -> Value {
    assert_eq!(reply.status, 200, "{reply}\n{}", devbox.log_tail());
    let body = reply.json();
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["message"], message, "{body}");
    let data = &body["data"];
    assert_types(data, &[("id", "string"), ("status", "string")]);
    assert_eq!(data["id"], id, "{body}");
    assert_eq!(data["status"], status, "{body}");
    data.clone()
}

/// Creates a stopped server and starts it through the API; returns (id, pid, port).
fn create_and_start(devbox: &Devbox, name: &str) -> (String, u32, u16) {
    let created = devbox.create(&json!({ "name": name }));
    let id = assert_uuid(&created["id"]);
    let port = assert_in_range(devbox, &created["port"]);
    let reply = devbox.post(&format!("/servers/{id}/start"));
    let data = assert_action(devbox, &reply, "Server started", &id, "running");
    let pid = data["pid"].as_u64().expect("pid") as u32;
    (id, pid, port)
}

fn read_yaml(path: &std::path::Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    devbox::yaml::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn settings(devbox: &Devbox, slug: &str) -> Value {
    let path = devbox
        .state()
        .join("servers")
        .join(slug)
        .join("user-data/User/settings.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("settings.json is JSON"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(err) => panic!("{}: {err}", path.display()),
    }
}

/// `[2025-01-15 10:00:00] INFO: message`
fn is_seed_log_line(line: &str) -> bool {
    let bytes = line.as_bytes();
    let stamp_ok = bytes.len() > 22
        && bytes[0] == b'['
        && bytes[20] == b']'
        && bytes[21] == b' '
        && line[1..20].chars().enumerate().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == ' ',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        });
    stamp_ok
        && line[22..].split_once(": ").is_some_and(|(level, _)| {
            !level.is_empty() && level.chars().all(|c| c.is_ascii_uppercase())
        })
}

#[test]
fn get_health() {
    let devbox = Devbox::start();
    let reply = devbox.get("/health");
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_types(&body, &[("status", "string"), ("service", "string")]);
    assert_eq!(body["status"], "healthy");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
}

#[test]
fn get_config() {
    let devbox = Devbox::start_opts(
        Options {
            config: "ui:\n  workspace:\n    max_upload_size_mb: 7\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    let reply = devbox.get("/config");
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(body["status"], "success", "{body}");
    let data = &body["data"];
    assert_types(
        data,
        &[
            ("extension_groups", "object"),
            ("server", "object"),
            ("ui", "object"),
            ("packaged_assets", "object"),
        ],
    );
    // What the config file says, not built-in defaults.
    assert_eq!(data["extension_groups"]["tools"]["name"], "Tools", "{data}");
    assert_eq!(
        data["extension_groups"]["tools"]["user_settings"]["editor.tabSize"], 7,
        "{data}"
    );
    assert_eq!(data["server"]["default_port"], devbox.http_port, "{data}");
    assert_eq!(
        data["server"]["code_server_port_range"],
        json!({"start": devbox.port_start, "end": devbox.port_end})
    );
    assert_eq!(data["ui"]["default_extension_groups"], json!(["tools"]));
    assert_eq!(data["ui"]["workspace"]["max_upload_size_mb"], 7, "{data}");
    assert_types(&data["packaged_assets"], &[("tabs", "array")]);
    // Secrets and internals stay out.
    assert!(data["server"].get("api_token").is_none(), "{data}");
    assert!(data.get("controller").is_none() && data.get("code_server").is_none());
}

#[test]
fn get_templates() {
    let repo = tempfile::tempdir().expect("temp dir");
    let devbox = Devbox::start_opts(
        Options {
            config: template_config(repo.path()),
            ..Options::default()
        },
        |_| {},
    );
    let reply = devbox.get("/templates");
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(body["status"], "success", "{body}");
    let tabs = body["data"]["tabs"]
        .as_array()
        .expect("data.tabs is an array");
    assert_eq!(tabs.len(), 1, "{body}");
    assert_eq!(tabs[0]["name"], "Workshops");
    let item = &tabs[0]["items"][0];
    assert_types(
        item,
        &[
            ("name", "string"),
            ("description", "string"),
            ("extensions_groups", "array"),
            ("thumbnail_url", "string"),
            ("github_url", "string"),
            ("icon_links", "array"),
        ],
    );
    assert_eq!(item["name"], "Databricks Workshop");
    assert_eq!(item["extensions_groups"], json!(["tools"]));
    assert_eq!(item["icon_links"][0]["lucide_icon"], "github");
}

#[test]
fn get_servers_lists_a_bare_array_with_usage_for_running_servers() {
    let devbox = Devbox::start();
    let empty = devbox.get("/servers");
    assert_eq!(empty.status, 200, "{empty}");
    assert_eq!(empty.json(), json!([]));

    // A spec written by hand shows up like any other server.
    devbox.write_spec("handmade", "  state: running\n");
    let stopped = devbox.create(&json!({"name": "made by api"}));
    devbox.wait_running("handmade");

    let reply = devbox.get("/servers");
    assert_eq!(reply.status, 200, "{reply}");
    let list = reply.json();
    let servers = list.as_array().expect("a bare JSON array");
    assert_eq!(servers.len(), 2, "{list}");
    for server in servers {
        assert_types(server, SERVER_FIELDS);
        assert_uuid(&server["id"]);
        assert_in_range(&devbox, &server["port"]);
        assert!(
            server["extensions"]
                .as_array()
                .expect("array")
                .iter()
                .all(Value::is_string),
            "{server}"
        );
    }
    let running = servers
        .iter()
        .find(|s| s["name"] == "handmade")
        .expect("the hand-written spec is listed");
    assert_eq!(running["status"], "running");
    assert_types(running, RUNNING_FIELDS);
    assert!(pid_alive(running["pid"].as_u64().expect("pid") as u32));
    let start_time = running["start_time"].as_str().expect("start_time");
    humantime::parse_rfc3339(start_time)
        .unwrap_or_else(|err| panic!("start_time {start_time:?} is not RFC 3339: {err}"));
    assert_eq!(
        running["workspace_path"],
        devbox
            .state()
            .join("workspaces/handmade")
            .display()
            .to_string()
    );
    let api = servers
        .iter()
        .find(|s| s["id"] == stopped["id"])
        .expect("the API's server is listed");
    assert_eq!(api["name"], "made by api");
    assert_eq!(api["status"], "stopped");
    assert!(api["pid"].is_null(), "{api}");

    // The list is served from a cache: it must still follow what changes.
    let uptime = running["uptime"].as_f64().expect("uptime");
    wait_for("the listed uptime to grow", Duration::from_secs(5), || {
        let list = devbox.get("/servers").json();
        let now = list.as_array()?.iter().find(|s| s["name"] == "handmade")?["uptime"].as_f64()?;
        (now > uptime).then_some(())
    });
    devbox.write_spec("handmade", "  state: stopped\n");
    wait_for("the list to show the stop", STARTUP, || {
        let list = devbox.get("/servers").json();
        let server = list
            .as_array()?
            .iter()
            .find(|s| s["name"] == "handmade")?
            .clone();
        (server["status"] == "stopped" && server["pid"].is_null() && server.get("uptime").is_none())
            .then_some(())
    });
}

#[test]
fn post_servers_creates_a_stopped_server_as_an_ordinary_spec_file() {
    let devbox = Devbox::start();
    let reply = devbox.post_json(
        "/servers",
        &json!({"name": "My Devbox Instance", "extensions": ["ms-python.python", "ms-toolsai.jupyter"]}),
    );
    assert_eq!(reply.status, 201, "{reply}");
    let server = reply.json();
    assert_types(
        &server,
        &[
            ("id", "string"),
            ("name", "string"),
            ("port", "integer"),
            ("workspace_path", "string"),
            ("extensions", "array"),
            ("status", "string"),
            ("pid", "null"),
        ],
    );
    let id = assert_uuid(&server["id"]);
    assert_eq!(server["name"], "My Devbox Instance");
    assert_eq!(server["status"], "stopped");
    assert_eq!(
        server["extensions"],
        json!(["ms-python.python", "ms-toolsai.jupyter"])
    );
    let port = assert_in_range(&devbox, &server["port"]);

    // The spec file is named by the slug and carries the display name and the uuid.
    assert_eq!(list_dir(&devbox.specs()), ["My-Devbox-Instance.yaml"]);
    let spec = read_yaml(&devbox.specs().join("My-Devbox-Instance.yaml"));
    assert_eq!(spec["apiVersion"].as_str(), Some("devbox/v1"));
    assert_eq!(
        spec["metadata"]["name"].as_str(),
        Some("My-Devbox-Instance")
    );
    assert_eq!(
        spec["metadata"]["display_name"].as_str(),
        Some("My Devbox Instance")
    );
    assert_eq!(spec["metadata"]["id"].as_str(), Some(id.as_str()));
    assert_eq!(spec["spec"]["state"].as_str(), Some("stopped"));
    assert_eq!(spec["spec"]["port"].as_u64(), Some(u64::from(port)));
    // `devbox validate` accepts what the API wrote.
    devbox.assert_specs_valid();

    // GET /servers shows the display name; nothing runs.
    let listed = devbox.server("My Devbox Instance").expect("listed");
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["status"], "stopped");
    assert!(listed["pid"].is_null());
    assert!(
        healthz(&devbox.socket_of("My-Devbox-Instance")).is_none(),
        "a created server is not started"
    );

    // A second server gets a different port.
    let other = devbox.create(&json!({"name": "second"}));
    assert_ne!(other["port"], server["port"]);
    assert_in_range(&devbox, &other["port"]);
    // A port asked for is the port given.
    let free = (devbox.port_start..=devbox.port_end)
        .rev()
        .find(|p| json!(p) != server["port"] && json!(p) != other["port"])
        .expect("a free port");
    let pinned = devbox.create(&json!({"name": "pinned", "port": free}));
    assert_eq!(pinned["port"], free);
}

#[test]
fn post_create_with_workspace_from_a_git_url() {
    let repo = tempfile::tempdir().expect("temp dir");
    git_repo(repo.path(), &[("README.md", "# from git\n")]);
    let url = format!("file://{}", repo.path().display());
    let devbox = Devbox::start();
    let reply = devbox.post_multipart(
        "/servers/create-with-workspace",
        &[
            ("name", Part::Text("git box")),
            ("extensions", Part::Text(r#"["ms-python.python"]"#)),
            ("github_url", Part::Text(&url)),
        ],
    );
    assert_eq!(reply.status, 201, "{reply}");
    let server = reply.json();
    assert_types(
        &server,
        &[
            ("id", "string"),
            ("name", "string"),
            ("port", "integer"),
            ("workspace_path", "string"),
            ("status", "string"),
        ],
    );
    let id = assert_uuid(&server["id"]);
    assert_eq!(server["name"], "git box");
    assert_eq!(server["status"], "stopped");
    assert_eq!(server["extensions"], json!(["ms-python.python"]));
    assert_in_range(&devbox, &server["port"]);
    let spec = read_yaml(&devbox.specs().join("git-box.yaml"));
    assert_eq!(
        spec["spec"]["workspace"]["git"]["url"].as_str(),
        Some(url.as_str())
    );

    // Started, the workspace is the clone.
    let started = devbox.post(&format!("/servers/{id}/start"));
    assert_action(&devbox, &started, "Server started", &id, "running");
    let workspace = server["workspace_path"].as_str().expect("workspace_path");
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(workspace).join("README.md"))
            .expect("cloned README"),
        "# from git\n"
    );
}

#[test]
fn post_create_with_workspace_from_a_zip_upload() {
    let devbox = Devbox::start();
    let archive = zip_bytes(&[("project/src/main.py", "print('hi')\n")]);
    let reply = devbox.post_multipart(
        "/servers/create-with-workspace",
        &[
            ("name", Part::Text("zip box")),
            ("zip_strip_top_level", Part::Text("true")),
            (
                "zip_file",
                Part::File {
                    filename: "project.zip",
                    bytes: &archive,
                },
            ),
        ],
    );
    assert_eq!(reply.status, 201, "{reply}");
    let server = reply.json();
    assert_types(
        &server,
        &[
            ("id", "string"),
            ("name", "string"),
            ("port", "integer"),
            ("workspace_path", "string"),
            ("status", "string"),
        ],
    );
    let id = assert_uuid(&server["id"]);
    assert_eq!(server["status"], "stopped");
    assert!(
        common::list_tree(&devbox.state().join("uploads")).is_empty(),
        "the upload was moved, not copied"
    );

    let started = devbox.post(&format!("/servers/{id}/start"));
    assert_action(&devbox, &started, "Server started", &id, "running");
    let workspace = std::path::PathBuf::from(server["workspace_path"].as_str().expect("path"));
    assert_eq!(
        std::fs::read_to_string(workspace.join("src/main.py")).expect("extracted"),
        "print('hi')\n"
    );
}

/// What a server's workspace folder holds once started through the API: its files and
/// folders, relative and sorted.
fn started_workspace(devbox: &Devbox, id: &str, workspace_path: &str) -> Vec<String> {
    let started = devbox.post(&format!("/servers/{id}/start"));
    assert_action(devbox, &started, "Server started", id, "running");
    common::list_tree(std::path::Path::new(workspace_path))
}

#[test]
fn upload_forms_keep_the_zip_layout_unless_zip_strip_top_level_is_set() {
    let devbox = Devbox::start();
    let archive = zip_bytes(&[("project/src/main.py", "print('hi')\n")]);
    let file = Part::File {
        filename: "project.zip",
        bytes: &archive,
    };

    // Without the field: the archive's layout, its folder included.
    let reply = devbox.post_multipart(
        "/servers/create-with-workspace",
        &[("name", Part::Text("kept")), ("zip_file", file)],
    );
    assert_eq!(reply.status, 201, "{reply}");
    let kept = reply.json();
    let spec = read_yaml(&devbox.specs().join("kept.yaml"));
    assert!(
        spec["spec"]["workspace"]["zip"].is_string()
            && spec["spec"]["workspace"]
                .get("zip_strip_top_level")
                .is_none(),
        "{spec:?}"
    );
    assert_eq!(
        started_workspace(
            &devbox,
            kept["id"].as_str().expect("id"),
            kept["workspace_path"].as_str().expect("path")
        ),
        ["project", "project/src", "project/src/main.py"]
    );

    // `clone-workspace` with the field (as an HTML checkbox sends it): the folder's
    // content, as the spec file now says.
    let later = devbox.post_json("/servers/create-metadata", &json!({"name": "stripped"}));
    let id = later.json()["id"].as_str().expect("id").to_owned();
    let reply = devbox.post_multipart(
        &format!("/servers/{id}/clone-workspace"),
        &[
            ("zip_strip_top_level", Part::Text("on")),
            (
                "zip_file",
                Part::File {
                    filename: "project.zip",
                    bytes: &archive,
                },
            ),
        ],
    );
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    let spec = read_yaml(&devbox.specs().join("stripped.yaml"));
    assert_eq!(
        spec["spec"]["workspace"]["zip_strip_top_level"].as_bool(),
        Some(true),
        "{spec:?}"
    );
    assert_eq!(
        started_workspace(
            &devbox,
            &id,
            body["data"]["workspace_path"].as_str().expect("path")
        ),
        ["src", "src/main.py"]
    );
}

#[test]
fn post_create_from_template() {
    let repo = tempfile::tempdir().expect("temp dir");
    git_repo(repo.path(), &[("lesson-1.md", "lesson one\n")]);
    let devbox = Devbox::start_opts(
        Options {
            config: template_config(repo.path()),
            ..Options::default()
        },
        |_| {},
    );
    // The seed's request, as written.
    let reply = devbox.post_json(
        "/servers/create-from-template",
        &json!({"name": "workshop-server", "template_id": "Databricks Workshop", "tab_name": "Workshops"}),
    );
    assert_eq!(reply.status, 201, "{reply}");
    let server = reply.json();
    assert_types(
        &server,
        &[
            ("id", "string"),
            ("name", "string"),
            ("port", "integer"),
            ("status", "string"),
        ],
    );
    let id = assert_uuid(&server["id"]);
    assert_eq!(server["name"], "workshop-server");
    assert_eq!(server["status"], "stopped");
    assert_in_range(&devbox, &server["port"]);
    let spec = read_yaml(&devbox.specs().join("workshop-server.yaml"));
    assert_eq!(
        spec["spec"]["template"]["name"].as_str(),
        Some("Databricks Workshop")
    );
    assert_eq!(spec["spec"]["template"]["tab"].as_str(), Some("Workshops"));

    // Started, it has the template's repository and its groups' settings.
    let started = devbox.post(&format!("/servers/{id}/start"));
    assert_action(&devbox, &started, "Server started", &id, "running");
    assert!(
        devbox
            .state()
            .join("workspaces/workshop-server/lesson-1.md")
            .is_file(),
        "the template's repository is the workspace"
    );
    assert_eq!(settings(&devbox, "workshop-server")["editor.tabSize"], 7);
}

#[test]
fn post_create_metadata() {
    let devbox = Devbox::start();
    let reply = devbox.post_json("/servers/create-metadata", &json!({"name": "my-server"}));
    assert_eq!(reply.status, 201, "{reply}");
    let server = reply.json();
    assert_types(
        &server,
        &[
            ("id", "string"),
            ("name", "string"),
            ("port", "integer"),
            ("workspace_path", "string"),
            ("extensions", "array"),
            ("status", "string"),
        ],
    );
    assert_uuid(&server["id"]);
    assert_eq!(server["name"], "my-server");
    assert_eq!(server["extensions"], json!([]));
    assert_eq!(server["status"], "stopped");
    assert_in_range(&devbox, &server["port"]);
    assert!(devbox.specs().join("my-server.yaml").is_file());
    assert_eq!(
        devbox.server("my-server").expect("listed")["id"],
        server["id"]
    );
}

#[test]
fn post_start_answers_once_the_server_is_healthy() {
    let devbox = Devbox::start();
    let (id, pid, _) = create_and_start(&devbox, "starter");
    // No waiting: at the answer, the process runs and code-server answers.
    assert!(pid_alive(pid), "the returned pid {pid} is alive");
    let health = devbox
        .healthz("starter")
        .expect("/healthz answers when start answers");
    assert!(health.get("status").is_some(), "{health}");
    let listed = devbox.get(&format!("/servers/{id}")).json();
    assert_eq!(listed["status"], "running", "{listed}");
    assert_eq!(listed["pid"], pid);

    // Starting a running server changes nothing.
    let again = devbox.post(&format!("/servers/{id}/start"));
    let data = assert_action(&devbox, &again, "Server started", &id, "running");
    assert_eq!(data["pid"], pid, "the same process");
    let spec = read_yaml(&devbox.specs().join("starter.yaml"));
    assert_eq!(spec["spec"]["state"].as_str(), Some("running"));
}

#[test]
fn post_stop_answers_once_the_processes_are_gone() {
    let devbox = Devbox::start();
    let (id, pid, _) = create_and_start(&devbox, "stopper");
    let direct = devbox.direct("stopper").expect("where stopper listens");
    assert!(healthz(&direct).is_some());
    let reply = devbox.post(&format!("/servers/{id}/stop"));
    let data = assert_action(&devbox, &reply, "Server stopped", &id, "stopped");
    assert_types(&data, &[("pid", "null")]);
    assert!(!group_alive(pid), "code-server's process group is gone");
    assert!(healthz(&direct).is_none(), "nothing answers at {direct:?}");
    let listed = devbox.get(&format!("/servers/{id}")).json();
    assert_eq!(listed["status"], "stopped", "{listed}");
    assert!(listed["pid"].is_null());
    let spec = read_yaml(&devbox.specs().join("stopper.yaml"));
    assert_eq!(spec["spec"]["state"].as_str(), Some("stopped"));
}

#[test]
fn post_restart_answers_with_a_new_healthy_process() {
    let devbox = Devbox::start();
    let (id, pid, _) = create_and_start(&devbox, "restarter");
    let reply = devbox.post(&format!("/servers/{id}/restart"));
    let data = assert_action(&devbox, &reply, "Server restarted", &id, "running");
    let new_pid = data["pid"].as_u64().expect("pid") as u32;
    assert_ne!(new_pid, pid, "a new process");
    assert!(!group_alive(pid), "the old process group is gone");
    assert!(pid_alive(new_pid));
    assert!(
        devbox.healthz("restarter").is_some(),
        "the new process answers"
    );
    assert_eq!(devbox.get(&format!("/servers/{id}")).json()["pid"], new_pid);
}

#[test]
fn delete_server_removes_its_spec_and_stops_it() {
    let devbox = Devbox::start();
    let keep = devbox.create(&json!({"name": "keeper"}));
    let (id, pid, _) = create_and_start(&devbox, "Doomed Box");
    let direct = devbox
        .direct("Doomed-Box")
        .expect("where Doomed Box listens");
    let reply = devbox.delete(&format!("/servers/{id}"));
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(
        reply.json(),
        json!({"status": "success", "message": "Server deleted"})
    );
    assert!(!devbox.specs().join("Doomed-Box.yaml").exists());
    assert_eq!(list_dir(&devbox.specs()), ["keeper.yaml"]);
    assert!(!group_alive(pid), "its processes are gone");
    assert!(healthz(&direct).is_none());
    let ids: Vec<Value> = devbox.servers().iter().map(|s| s["id"].clone()).collect();
    assert_eq!(ids, [keep["id"].clone()], "only the other server is left");
    assert_eq!(devbox.get(&format!("/servers/{id}")).status, 404);
}

#[test]
fn get_server_by_id() {
    let devbox = Devbox::start();
    let first = devbox.create(&json!({"name": "first", "extensions": ["acme.tool"]}));
    let second = devbox.create(&json!({"name": "second"}));
    for created in [&first, &second] {
        let id = created["id"].as_str().expect("id");
        let reply = devbox.get(&format!("/servers/{id}"));
        assert_eq!(reply.status, 200, "{reply}");
        let one = reply.json();
        assert_types(&one, SERVER_FIELDS);
        for field in [
            "id",
            "name",
            "port",
            "workspace_path",
            "extensions",
            "status",
        ] {
            assert_eq!(one[field], created[field], "{field}: {one} vs {created}");
        }
        let listed = devbox
            .servers()
            .into_iter()
            .find(|s| s["id"] == id)
            .expect("listed");
        assert_eq!(one, listed, "GET /servers/{{id}} is the list's entry");
    }
}

#[test]
fn get_server_health() {
    let devbox = Devbox::start();
    let (id, pid, _) = create_and_start(&devbox, "healthy");
    let stopped = devbox.create(&json!({"name": "resting"}));
    let health_fields = [
        ("status", "string"),
        ("http_healthy", "boolean"),
        ("cpu_percent", "number"),
        ("memory_mb", "number"),
        ("uptime_seconds", "number"),
        ("process_exists", "boolean"),
    ];

    let reply = devbox.get(&format!("/servers/{id}/health"));
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(body["status"], "success", "{body}");
    assert_types(&body["data"], &health_fields);
    assert_eq!(body["data"]["status"], "running");
    assert_eq!(body["data"]["http_healthy"], true, "{body}");
    assert_eq!(body["data"]["process_exists"], true, "{body}");
    // Memory is sampled over the process group within a few health intervals.
    wait_for("memory to be reported", Duration::from_secs(15), || {
        let body = devbox.get(&format!("/servers/{id}/health")).json();
        (body["data"]["memory_mb"].as_f64().unwrap_or(0.0) > 10.0).then_some(())
    });

    // A stopped server: nothing runs, nothing answers.
    let other = devbox.get(&format!(
        "/servers/{}/health",
        stopped["id"].as_str().expect("id")
    ));
    let data = &other.json()["data"];
    assert_types(data, &health_fields);
    assert_eq!(data["status"], "stopped");
    assert_eq!(data["http_healthy"], false);
    assert_eq!(data["process_exists"], false);
    assert!(pid_alive(pid));
}

#[test]
fn get_server_logs_honours_lines() {
    let devbox = Devbox::start();
    let (id, _, _) = create_and_start(&devbox, "chatty");
    let all = |devbox: &Devbox| -> Vec<String> {
        let body = devbox
            .get(&format!("/servers/{id}/logs?lines=10000"))
            .json();
        serde_json::from_value(body["data"]["logs"].clone()).expect("logs are strings")
    };
    // Enough lines for the default of 50 to matter: restart until there are more.
    // (code-server's output reaches the log a moment after it is written, so poll.)
    let everything = wait_for("more than 60 log lines", Duration::from_secs(60), || {
        let lines = all(&devbox);
        if lines.len() > 60 {
            return Some(lines);
        }
        assert_eq!(devbox.post(&format!("/servers/{id}/restart")).status, 200);
        None
    });

    let reply = devbox.get(&format!("/servers/{id}/logs"));
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(body["status"], "success", "{body}");
    let default: Vec<String> =
        serde_json::from_value(body["data"]["logs"].clone()).expect("data.logs: strings");
    assert_eq!(default.len(), 50, "the default is 50 lines");
    for line in &default {
        assert!(
            is_seed_log_line(line),
            "not `[date time] LEVEL: text`: {line:?}"
        );
    }
    // The newest lines, oldest first: a window of the whole log that ends no earlier
    // than the log did before the call (lines only ever get added).
    let newer = all(&devbox);
    let at = newer
        .windows(50)
        .rposition(|w| w == default.as_slice())
        .expect("the 50 lines are consecutive lines of the log");
    assert!(at + 50 >= everything.len(), "they are the newest 50");

    for n in [1usize, 7, 60] {
        let body = devbox.get(&format!("/servers/{id}/logs?lines={n}")).json();
        let logs = body["data"]["logs"].as_array().expect("logs");
        assert_eq!(logs.len(), n, "lines={n}");
    }
    assert!(
        everything.iter().any(|l| l.contains("started")),
        "devbox's own events are in the log"
    );
}

#[test]
fn post_refresh_status() {
    let devbox = Devbox::start();
    let (id, pid, port) = create_and_start(&devbox, "fresh");
    let reply = devbox.post(&format!("/servers/{id}/refresh-status"));
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_types(&body, REFRESH_FIELDS);
    assert_eq!(body["status"], "success");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["name"], "fresh");
    assert_eq!(body["port"], port);
    assert_eq!(body["old_status"], "running");
    assert_eq!(body["new_status"], "running");
    assert_eq!(body["pid_status"], format!("PID {pid} exists"));
    assert_eq!(
        body["healthz_status"],
        format!("Health endpoint responding on port {port}")
    );
    assert_eq!(body["updated"], false);

    let stopped = devbox.create(&json!({"name": "still"}));
    let body = devbox
        .post(&format!(
            "/servers/{}/refresh-status",
            stopped["id"].as_str().expect("id")
        ))
        .json();
    assert_types(&body, REFRESH_FIELDS);
    assert_eq!(body["old_status"], "stopped");
    assert_eq!(body["new_status"], "stopped");
    assert_eq!(body["updated"], false);
    assert!(
        body["healthz_status"]
            .as_str()
            .is_some_and(|s| s.contains("not responding")),
        "{body}"
    );
}

#[test]
fn post_refresh_all() {
    let devbox = Devbox::start();
    let (running_id, _, _) = create_and_start(&devbox, "one");
    let stopped = devbox.create(&json!({"name": "two"}));
    let reply = devbox.post("/servers/refresh-all");
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_types(
        &body,
        &[
            ("status", "string"),
            ("total_servers", "integer"),
            ("updated", "integer"),
            ("message", "string"),
            ("servers", "array"),
        ],
    );
    assert_eq!(body["status"], "success");
    assert_eq!(body["total_servers"], 2);
    assert_eq!(body["updated"], 0);
    assert_eq!(body["message"], "Updated 0 out of 2 servers");
    let servers = body["servers"].as_array().expect("servers");
    for server in servers {
        assert_types(server, REFRESH_FIELDS);
    }
    let ids: BTreeSet<&str> = servers.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([running_id.as_str(), stopped["id"].as_str().expect("id")])
    );
    let one = servers
        .iter()
        .find(|s| s["id"] == running_id.as_str())
        .expect("one");
    assert_eq!(one["new_status"], "running");
}

#[test]
fn post_install_extensions_on_a_stopped_server_installs_at_start() {
    let devbox = Devbox::start();
    write_vsix(
        &devbox.path("vsix/local-tool.vsix"),
        "devbox-test",
        "local-tool",
    );
    let created = devbox.create(&json!({"name": "stepper"}));
    let id = created["id"].as_str().expect("id");
    let reply = devbox.post_json(
        &format!("/servers/{id}/install-extensions"),
        &json!({"extensions": ["local-tool.vsix", "ms-toolsai.jupyter"]}),
    );
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(body["status"], "success", "{body}");
    assert_types(
        &body["data"],
        &[("extensions", "array"), ("applied", "boolean")],
    );
    assert_eq!(
        body["data"]["extensions"],
        json!(["local-tool.vsix", "ms-toolsai.jupyter"])
    );
    assert_eq!(
        body["data"]["applied"], false,
        "a stopped server installs at start"
    );
    let spec = read_yaml(&devbox.specs().join("stepper.yaml"));
    assert_eq!(
        serde_json::to_value(&spec["spec"]["extensions"]).expect("json"),
        json!(["local-tool.vsix", "ms-toolsai.jupyter"])
    );
    assert_eq!(
        devbox.get(&format!("/servers/{id}")).json()["extensions"],
        json!(["local-tool.vsix", "ms-toolsai.jupyter"])
    );

    // Started: the .vsix is installed, the marketplace id failed (offline) without
    // blocking the start.
    let started = devbox.post(&format!("/servers/{id}/start"));
    assert_action(&devbox, &started, "Server started", id, "running");
    let server = devbox.get(&format!("/servers/{id}")).json();
    let results = server["extension_results"].as_array().expect("results");
    assert_eq!(results[0]["extension"], "local-tool.vsix", "{server}");
    assert_eq!(results[0]["state"], "installed", "{server}");
    assert_eq!(results[1]["state"], "failed", "{server}");
    assert!(
        list_dir(&devbox.state().join("servers/stepper/extensions"))
            .iter()
            .any(|e| e.starts_with("devbox-test.local-tool")),
        "installed into the server's extensions folder"
    );
}

#[test]
fn post_install_extension_on_a_running_server_restarts_it_with_the_extension() {
    let devbox = Devbox::start();
    write_vsix(
        &devbox.path("vsix/one-tool.vsix"),
        "devbox-test",
        "one-tool",
    );
    let (id, pid, _) = create_and_start(&devbox, "single");
    let reply = devbox.post_json(
        &format!("/servers/{id}/install-extension"),
        &json!({"extension": "one-tool.vsix"}),
    );
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["data"]["extensions"], json!(["one-tool.vsix"]));
    assert_eq!(body["data"]["applied"], true, "{body}");
    assert_eq!(
        body["data"]["results"],
        json!([{"extension": "one-tool.vsix", "state": "installed"}]),
        "{body}"
    );
    // Answered once restarted with it.
    let server = devbox.get(&format!("/servers/{id}")).json();
    assert_eq!(server["status"], "running");
    assert_ne!(server["pid"], pid, "restarted");
    assert!(devbox.healthz("single").is_some());
    assert!(
        list_dir(&devbox.state().join("servers/single/extensions"))
            .iter()
            .any(|e| e.starts_with("devbox-test.one-tool"))
    );
}

#[test]
fn post_apply_group_settings() {
    let devbox = Devbox::start();
    let (id, pid, _) = create_and_start(&devbox, "grouped");
    assert!(settings(&devbox, "grouped").get("editor.tabSize").is_none());
    let reply = devbox.post_json(
        &format!("/servers/{id}/apply-group-settings"),
        &json!({"groupName": "tools"}),
    );
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["data"]["group"], "tools");
    assert_eq!(body["data"]["extensions"], json!([]));
    assert_eq!(body["data"]["user_settings"], json!({"editor.tabSize": 7}));
    let spec = read_yaml(&devbox.specs().join("grouped.yaml"));
    assert_eq!(
        serde_json::to_value(&spec["spec"]["extension_groups"]).expect("json"),
        json!(["tools"])
    );
    // In effect when the call answers: restarted with the group's settings.
    assert_eq!(settings(&devbox, "grouped")["editor.tabSize"], 7);
    let server = devbox.get(&format!("/servers/{id}")).json();
    assert_eq!(server["status"], "running");
    assert_ne!(server["pid"], pid);
    assert!(devbox.healthz("grouped").is_some());
}

#[test]
fn post_clone_workspace_from_git_and_from_zip() {
    let repo = tempfile::tempdir().expect("temp dir");
    git_repo(repo.path(), &[("notes/README.md", "cloned later\n")]);
    let url = format!("file://{}", repo.path().display());
    let devbox = Devbox::start();

    let git = devbox.post_json("/servers/create-metadata", &json!({"name": "later-git"}));
    let git_id = git.json()["id"].as_str().expect("id").to_owned();
    let reply = devbox.post_multipart(
        &format!("/servers/{git_id}/clone-workspace"),
        &[("github_url", Part::Text(&url))],
    );
    assert_eq!(reply.status, 200, "{reply}");
    let body = reply.json();
    assert_eq!(body["status"], "success", "{body}");
    assert_types(
        &body["data"],
        &[("workspace_path", "string"), ("source", "string")],
    );
    assert_eq!(body["data"]["source"], "git");
    let spec = read_yaml(&devbox.specs().join("later-git.yaml"));
    assert_eq!(
        spec["spec"]["workspace"]["git"]["url"].as_str(),
        Some(url.as_str())
    );

    let zip = devbox.post_json("/servers/create-metadata", &json!({"name": "later-zip"}));
    let zip_id = zip.json()["id"].as_str().expect("id").to_owned();
    let archive = zip_bytes(&[("data.csv", "a,b\n1,2\n")]);
    let reply = devbox.post_multipart(
        &format!("/servers/{zip_id}/clone-workspace"),
        &[(
            "zip_file",
            Part::File {
                filename: "data.zip",
                bytes: &archive,
            },
        )],
    );
    assert_eq!(reply.status, 200, "{reply}");
    let zip_body = reply.json();
    assert_eq!(zip_body["data"]["source"], "zip", "{zip_body}");

    for (id, body, file, text) in [
        (&git_id, &body, "notes/README.md", "cloned later\n"),
        (&zip_id, &zip_body, "data.csv", "a,b\n1,2\n"),
    ] {
        let started = devbox.post(&format!("/servers/{id}/start"));
        assert_action(&devbox, &started, "Server started", id, "running");
        let workspace =
            std::path::PathBuf::from(body["data"]["workspace_path"].as_str().expect("path"));
        assert_eq!(
            std::fs::read_to_string(workspace.join(file)).expect("workspace file"),
            text
        );
    }
}

#[test]
fn get_openapi_json_lists_every_route_and_matches_the_committed_schema() {
    let devbox = Devbox::start();
    let reply = devbox.get("/openapi.json");
    assert_eq!(reply.status, 200, "{reply}");
    let live = reply.json();
    let paths = live["paths"].as_object().expect("paths");
    let routes = [
        ("/health", "get"),
        ("/config", "get"),
        ("/templates", "get"),
        ("/servers", "get"),
        ("/servers", "post"),
        ("/servers/create-with-workspace", "post"),
        ("/servers/create-from-template", "post"),
        ("/servers/create-metadata", "post"),
        ("/servers/refresh-all", "post"),
        ("/servers/{id}", "get"),
        ("/servers/{id}", "delete"),
        ("/servers/{id}/start", "post"),
        ("/servers/{id}/stop", "post"),
        ("/servers/{id}/restart", "post"),
        ("/servers/{id}/health", "get"),
        ("/servers/{id}/logs", "get"),
        ("/servers/{id}/refresh-status", "post"),
        ("/servers/{id}/install-extensions", "post"),
        ("/servers/{id}/install-extension", "post"),
        ("/servers/{id}/apply-group-settings", "post"),
        ("/servers/{id}/clone-workspace", "post"),
    ];
    for (path, method) in routes {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    let committed_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/openapi.json");
    let committed: Value =
        serde_json::from_slice(&std::fs::read(&committed_path).expect("schemas/openapi.json"))
            .expect("committed openapi.json is JSON");
    assert!(
        live == committed,
        "GET /openapi.json differs from schemas/openapi.json (run `devbox schema --out schemas`)"
    );
}

/// The status codes `method path` documents, as numbers.
fn documented_codes(document: &Value, path: &str, method: &str) -> BTreeSet<u16> {
    document["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} has responses"))
        .keys()
        .map(|code| code.parse().expect("a numeric status code"))
        .collect()
}

#[test]
fn openapi_document_says_how_to_sign_in_and_which_errors_each_route_answers() {
    const TOKEN: &str = "openapi-T0ken";
    let devbox = Devbox::start_opts(
        Options {
            config: format!("server:\n  api_token: \"{TOKEN}\"\n"),
            ..Options::default()
        },
        |_| {},
    );
    let bearer = format!("Bearer {TOKEN}");
    let as_admin = |method: &str, path: &str| {
        devbox.call(method, path, &[("Authorization", bearer.as_str())], None)
    };
    let reply = as_admin("GET", "/openapi.json");
    assert_eq!(reply.status, 200, "{reply}");
    let document = reply.json();

    // How to sign in: the admin token as a bearer header, or the dashboard's cookie.
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http", "{schemes}");
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["session"]["type"], "apiKey", "{schemes}");
    assert_eq!(schemes["session"]["in"], "cookie", "{schemes}");
    assert_eq!(schemes["session"]["name"], "devbox_session", "{schemes}");

    // Every operation: a unique id, a tag the document lists, and either no security
    // requirement (public) or "a bearer token or a session".
    let tags: BTreeSet<&str> = document["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|tag| tag["name"].as_str().expect("a tag's name"))
        .collect();
    let either = json!([{"bearer": []}, {"session": []}]);
    let mut ids = BTreeSet::new();
    let mut public = BTreeSet::new();
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            let what = format!("{method} {path}");
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{what} has an operationId"));
            assert!(
                ids.insert(id.to_owned()),
                "{what}: operationId {id} is unique"
            );
            let own_tags = operation["tags"].as_array().cloned().unwrap_or_default();
            assert!(!own_tags.is_empty(), "{what} has a tag");
            for tag in own_tags {
                assert!(
                    tags.contains(tag.as_str().unwrap_or_default()),
                    "{what}: tag {tag} is listed"
                );
            }
            match operation.get("security") {
                None => _ = public.insert(what.clone()),
                Some(security) => assert_eq!(security, &either, "{what}"),
            }
            let codes = documented_codes(&document, path, method);
            for never in [415, 422, 503] {
                assert!(
                    !codes.contains(&never),
                    "{what} answers no {never}: {codes:?}"
                );
            }
            for code in codes.iter().filter(|code| **code >= 400) {
                let schema = &operation["responses"][code.to_string()]["content"]["application/json"]
                    ["schema"]["$ref"];
                assert!(
                    schema.as_str().is_some_and(|r| r.ends_with("/ErrorBody")),
                    "{what} {code}: the error body: {schema}"
                );
            }
        }
    }
    assert_eq!(
        public,
        BTreeSet::from(
            [
                "get /health",
                "post /auth/login",
                "post /auth/logout",
                "get /auth/session"
            ]
            .map(String::from)
        ),
        "the operations without a security requirement"
    );

    // What a few routes can answer, and nothing more.
    let expect = [
        ("/health", "get", vec![200, 403]),
        ("/servers", "get", vec![200, 401, 403]),
        ("/servers", "post", vec![201, 400, 401, 403, 409, 413, 500]),
        ("/servers/{id}", "get", vec![200, 401, 403, 404]),
        ("/servers/{id}", "delete", vec![200, 401, 403, 404, 500]),
        ("/servers/{id}/logs", "get", vec![200, 400, 401, 403, 404]),
        ("/auth/login", "post", vec![200, 400, 401, 403]),
    ];
    for (path, method, codes) in expect {
        assert_eq!(
            documented_codes(&document, path, method),
            BTreeSet::from_iter(codes),
            "{method} {path}"
        );
    }

    // The document agrees with devbox: without credentials, a public route answers
    // and every other one is a 401; the documented 404s and 400s come back.
    for (path, item) in paths {
        let Some(get) = item.get("get") else { continue };
        if path.contains('{') || path.starts_with("/ws/") {
            continue;
        }
        let reply = devbox.get(path);
        if get.get("security").is_some() {
            reply.assert_error(401, "token");
        } else {
            assert_eq!(reply.status, 200, "GET {path} is public: {reply}");
        }
    }
    as_admin("GET", "/servers/nobody").assert_error(404, "nobody");
    as_admin("DELETE", "/servers/nobody").assert_error(404, "nobody");
    as_admin("GET", "/servers/nobody/logs?lines=100000").assert_error(400, "lines");
}
