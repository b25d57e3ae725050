//! Who is who: seat links sign two participants in, each to their own server, and
//! each reaches only that one (the API, the IDE through the proxy, the log stream),
//! creates only what users may, within their quota; revoking a link and deleting a
//! server sign its participant out. Real devbox, real code-server, real HTTP and
//! WebSocket.

mod common;

use serde_json::{Value, json};

use common::seats::open_seat;
use common::{Devbox, Options, Reply, ws_connect};

const TOKEN: &str = "tenancy-admin-T0ken";

/// A call as the admin.
fn as_admin(devbox: &Devbox, method: &str, path: &str, body: Option<&Value>) -> Reply {
    let bearer = format!("Bearer {TOKEN}");
    let body = body.map(|b| serde_json::to_vec(b).expect("json"));
    devbox.call(
        method,
        path,
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.as_deref(),
    )
}

/// Asks for `server`'s seat link as the admin; returns its path (`/seat/<ticket>`)
/// and the whole answer.
fn seat_link(devbox: &Devbox, server: &str) -> (String, Value) {
    common::seats::seat_link(devbox, TOKEN, server)
}

fn tenancy_devbox() -> Devbox {
    tenancy_devbox_with("")
}

/// A devbox with an admin token, two unowned servers `ada` and `bob`, and `auth`
/// settings besides the quota (or other sections after them).
fn tenancy_devbox_with(auth: &str) -> Devbox {
    tenancy_devbox_configured("", auth)
}

/// [`tenancy_devbox_with`], with `server` settings besides the token; returns once the
/// controller knows both servers (a seat link for a server not scanned yet is a 404).
fn tenancy_devbox_configured(server: &str, auth: &str) -> Devbox {
    let devbox = Devbox::start_opts(
        Options {
            config: format!(
                "server:\n  api_token: \"{TOKEN}\"\n{server}auth:\n  max_servers_per_user: 2\n{auth}"
            ),
            ..Options::default()
        },
        |root| {
            for name in ["ada", "bob"] {
                std::fs::write(
                    root.join(format!("specs/{name}.yaml")),
                    format!(
                        "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n  state: running\n"
                    ),
                )
                .expect("spec");
            }
        },
    );
    for name in ["ada", "bob"] {
        common::wait_for(&format!("{name} to be known"), common::STARTUP, || {
            (as_admin(&devbox, "GET", &format!("/servers/{name}"), None).status == 200)
                .then_some(())
        });
    }
    devbox
}

fn wait_running_as_admin(devbox: &Devbox, name: &str) -> u16 {
    common::wait_for(
        &format!("{name} to run\n{}", devbox.log_tail()),
        common::STARTUP,
        || {
            let reply = as_admin(devbox, "GET", &format!("/servers/{name}"), None);
            let server = reply.json();
            (server["status"] == "running").then(|| server["port"].as_u64())?
        },
    ) as u16
}

#[test]
fn seat_link_participants_reach_only_their_own_server() {
    let devbox = tenancy_devbox();
    let ada_port = wait_running_as_admin(&devbox, "ada");
    let bob_port = wait_running_as_admin(&devbox, "bob");

    let (ada_link, answer) = seat_link(&devbox, "ada");
    assert_eq!(
        answer["owner"], "seat-ada",
        "an unowned server gets an owner"
    );
    assert!(answer["expires_at"].as_str().is_some(), "{answer}");
    let (bob_link, _) = seat_link(&devbox, "bob");
    let spec = std::fs::read_to_string(devbox.specs().join("ada.yaml")).expect("spec");
    assert!(
        spec.contains("owner: seat-ada"),
        "the owner is in the spec:\n{spec}"
    );

    let ada = open_seat(&devbox, &ada_link, "ada");
    let bob = open_seat(&devbox, &bob_link, "bob");

    // Each sees their own server only, and the other's is as if it did not exist.
    assert_eq!(ada.listed(), ["ada"]);
    assert_eq!(bob.listed(), ["bob"]);
    let session = ada.call("GET", "/auth/session", None).json();
    assert_eq!(session["user"], "seat-ada", "{session}");
    assert_eq!(session["admin"], false, "{session}");
    for (method, path) in [
        ("GET", "/servers/bob"),
        ("GET", "/servers/bob/health"),
        ("GET", "/servers/bob/logs"),
        ("POST", "/servers/bob/stop"),
        ("POST", "/servers/bob/restart"),
        ("DELETE", "/servers/bob"),
        ("POST", "/servers/bob/seat-link"),
        ("GET", "/specs/bob"),
    ] {
        let reply = ada.call(method, path, None);
        assert_eq!(reply.status, 404, "{method} {path}: {reply}");
        assert!(!reply.text.contains("seat-bob"), "{reply}");
    }
    assert_eq!(
        as_admin(&devbox, "GET", "/servers/bob", None).json()["status"],
        "running",
        "bob's server was not disturbed"
    );
    let own_spec = ada.call("GET", "/specs/ada", None);
    assert_eq!(own_spec.status, 200, "{own_spec}");
    assert_eq!(own_spec.json()["metadata"]["owner"], "seat-ada");
    // A name that would be a path is refused before it names a file.
    ada.call("GET", "/specs/..%2F..%2Fconfig", None)
        .assert_error(400, "invalid server name");
    as_admin(&devbox, "GET", "/specs/..%2Fconfig", None).assert_error(400, "invalid server name");

    // Each opens their own IDE through the proxy, never the other's.
    let own = ada.call("GET", "/s/ada/", None);
    assert_eq!(own.status, 200, "{own}");
    assert!(own.text.contains("<html"), "code-server's workbench");
    assert_eq!(
        ada.call("GET", &format!("/vscode/{ada_port}/"), None)
            .status,
        200
    );
    for path in ["/s/bob/".to_owned(), format!("/vscode/{bob_port}/")] {
        let reply = ada.call("GET", &path, None);
        assert_eq!(reply.status, 404, "{path}: {reply}");
    }
    assert_eq!(bob.call("GET", "/s/bob/", None).status, 200);

    // Their own logs stream; the other's do not.
    let cookie = [("Cookie", ada.cookie.clone())];
    assert!(ws_connect(&devbox, "/ws/logs/ada", &cookie).is_ok());
    let mut other = ws_connect(&devbox, "/ws/logs/bob", &cookie).expect("upgrade");
    match other.read() {
        Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 4404, "{frame:?}")
        }
        other => panic!("expected a close for an unknown server, got {other:?}"),
    }

    // Admin-only routes are refused, with the reason.
    let reply = ada.call(
        "POST",
        "/servers/ada/install-extension",
        Some(&json!({"extension": "a.b"})),
    );
    reply.assert_error(403, "admins");

    // Without a session the API answers 401, as before.
    assert_eq!(devbox.get("/servers").status, 401);
    assert_eq!(
        as_admin(&devbox, "GET", "/servers", None)
            .json()
            .as_array()
            .map(Vec::len),
        Some(2),
        "the admin sees everyone's"
    );
}

#[test]
fn users_create_only_what_users_may_and_within_their_quota() {
    let devbox = tenancy_devbox();
    let (link, _) = seat_link(&devbox, "ada");
    let ada = open_seat(&devbox, &link, "ada");
    let before = common::list_dir(&devbox.specs());

    // What reaches into the host is refused, naming the field; nothing is written.
    let spec = |name: &str, spec: Value| json!({"apiVersion": "devbox/v1", "kind": "DevServer", "metadata": {"name": name}, "spec": spec});
    for (field, body) in [
        (
            "env",
            spec(
                "mine",
                json!({"env": {"NODE_OPTIONS": "--require /tmp/x.js"}}),
            ),
        ),
        (
            "workspace.path",
            spec("mine", json!({"workspace": {"path": "/etc"}})),
        ),
        (
            "workspace.zip",
            spec("mine", json!({"workspace": {"zip": "/root/secret.zip"}})),
        ),
        ("port", spec("mine", json!({"port": devbox.port_start}))),
    ] {
        let reply = ada.call("PUT", "/specs/mine", Some(&body));
        reply.assert_error(403, &format!("`{field}`"));
    }
    let mut other = spec("mine", json!({}));
    other["metadata"]["owner"] = json!("bob");
    ada.call("PUT", "/specs/mine", Some(&other))
        .assert_error(403, "`owner`");
    let reply = ada.call(
        "POST",
        "/servers",
        Some(&json!({"name": "extra", "extensions": ["evil.payload"]})),
    );
    reply.assert_error(403, "`extensions`");
    // Someone else's spec cannot be replaced either (it does not exist, for ada).
    ada.call("PUT", "/specs/bob", Some(&spec("bob", json!({}))))
        .assert_error(404, "bob");
    assert_eq!(common::list_dir(&devbox.specs()), before, "nothing written");

    // What the config offers is fine, and the new server is hers.
    let created = ada.call(
        "POST",
        "/servers",
        Some(&json!({"name": "second", "extension_groups": ["tools"]})),
    );
    assert_eq!(created.status, 201, "{created}");
    assert_eq!(created.json()["owner"], "seat-ada");
    assert_eq!(ada.listed(), ["ada", "second"]);
    // The quota: two servers, the seat's and this one.
    let third = ada.call(
        "POST",
        "/servers/create-metadata",
        Some(&json!({"name": "third"})),
    );
    third.assert_error(409, "auth.max_servers_per_user");
    assert!(!devbox.specs().join("third.yaml").exists());
    // The admin is not bound by it.
    let as_root = as_admin(
        &devbox,
        "POST",
        "/servers/create-metadata",
        Some(&json!({"name": "third"})),
    );
    assert_eq!(as_root.status, 201, "{as_root}");
    assert_eq!(as_root.json().get("owner"), None, "the admin's own");
}

/// Whether `socket` is still open after `wait`: reading until then (whatever the
/// other side sends meanwhile, such as code-server's keep-alives) meets no close, end
/// or reset.
fn still_open(socket: &mut common::WsClient, wait: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        if let tokio_tungstenite::tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref()
        {
            tcp.set_read_timeout(Some(left)).expect("timeout");
        }
        match socket.read() {
            Ok(tokio_tungstenite::tungstenite::Message::Close(_)) => return false,
            // Anything else the other side sends: it is open; read on until quiet.
            Ok(_) => continue,
            Err(tokio_tungstenite::tungstenite::Error::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return true;
            }
            Err(_) => return false,
        }
    }
}

#[test]
fn revoked_links_and_deleted_servers_sign_their_participant_out() {
    let devbox = tenancy_devbox();
    let port = wait_running_as_admin(&devbox, "ada");
    let (link, _) = seat_link(&devbox, "ada");
    let ada = open_seat(&devbox, &link, "ada");
    assert_eq!(ada.listed(), ["ada"]);
    // What she has open when her link is revoked: her IDE's WebSocket (to the real
    // code-server, through devbox's tunnel) and her log stream.
    let cookie = [("Cookie", ada.cookie.clone())];
    let ide_socket = format!(
        "/vscode/{port}/?reconnectionToken={}&reconnection=false&skipWebSocketFrames=false",
        uuid::Uuid::new_v4()
    );
    let mut ide = ws_connect(&devbox, &ide_socket, &cookie).expect("her IDE's WebSocket");
    let mut logs = ws_connect(&devbox, "/ws/logs/ada?lines=0", &cookie).expect("her log stream");
    let quiet = std::time::Duration::from_millis(500);
    assert!(still_open(&mut ide, quiet), "the IDE tunnel is open");
    assert!(still_open(&mut logs, quiet), "the log stream is open");

    // An unknown link is a clear page, not a stack trace, and signs nobody in.
    let unknown = devbox.get("/seat/not-a-ticket");
    assert_eq!(unknown.status, 404, "{unknown}");
    assert!(unknown.text.contains("not known"), "{}", unknown.text);
    assert_eq!(unknown.header("set-cookie"), None);

    let revoked = as_admin(&devbox, "DELETE", "/servers/ada/seat-link", None);
    assert_eq!(revoked.status, 200, "{revoked}");
    assert_eq!(revoked.json()["revoked"], 1);
    assert_eq!(ada.call("GET", "/servers", None).status, 401, "signed out");
    let cut = std::time::Duration::from_secs(10);
    assert!(!still_open(&mut ide, cut), "her open IDE tunnel was cut");
    assert!(
        !still_open(&mut logs, cut),
        "her open log stream was closed"
    );
    let again = devbox.get(&link);
    assert_eq!(again.status, 410, "{again}");
    assert!(again.text.contains("revoked"), "{}", again.text);

    // A new link signs in again; deleting the owner's last server signs out.
    let (fresh, _) = seat_link(&devbox, "ada");
    let ada = open_seat(&devbox, &fresh, "ada");
    assert_eq!(ada.listed(), ["ada"]);
    let deleted = as_admin(&devbox, "DELETE", "/servers/ada", None);
    assert_eq!(deleted.status, 200, "{deleted}");
    assert_eq!(ada.call("GET", "/servers", None).status, 401);
    assert_eq!(devbox.get(&fresh).status, 410, "its links went with it");
}

#[test]
fn seat_links_need_sign_in_configured() {
    // On a laptop with no token, every caller is the admin: a seat link would sign
    // nobody in to anything less, so devbox says what to set instead.
    let devbox = Devbox::start();
    devbox.write_spec("solo", "  state: stopped\n");
    devbox.wait_status("solo", "stopped");
    devbox
        .post("/servers/solo/seat-link")
        .assert_error(409, "admin token");
}

#[test]
fn seat_links_never_hand_out_admin_rights() {
    // An admin's name (auth.admins) signs in as an admin through the trusted proxy
    // only: no seat link is made for a server of theirs.
    let devbox = tenancy_devbox_with("  admins: [seat-bob]\n");
    as_admin(&devbox, "POST", "/servers/bob/seat-link", None)
        .assert_error(409, "an admin (auth.admins)");
    let spec = std::fs::read_to_string(devbox.specs().join("bob.yaml")).expect("spec");
    assert!(
        !spec.contains("owner:"),
        "bob's server was left as it was:\n{spec}"
    );
    let (link, _) = seat_link(&devbox, "ada");
    let ada = open_seat(&devbox, &link, "ada");
    let session = ada.call("GET", "/auth/session", None).json();
    assert_eq!(session["admin"], false, "{session}");
    assert_eq!(ada.listed(), ["ada"]);
}

#[test]
fn the_cli_hands_out_seat_links_per_template_and_shows_owners() {
    let devbox = tenancy_devbox_with(
        "packaged_assets:\n  tabs:\n    - name: Workshops\n      items:\n        - name: Databricks Workshop\n          extensions_groups: [tools]\n",
    );
    let made = as_admin(
        &devbox,
        "POST",
        "/servers/create-from-template",
        Some(
            &json!({"name": "carol", "template_id": "Databricks Workshop", "tab_name": "Workshops"}),
        ),
    );
    assert_eq!(made.status, 201, "{made}");
    let token_file = devbox.root.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(common::devbox_bin())
            .arg("--server")
            .arg(devbox.url(""))
            .arg("--api-token-file")
            .arg(&token_file)
            .args(args)
            .output()
            .expect("devbox runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    };

    // One link per server of the template, as CSV for a mail merge.
    let (ok, csv, stderr) = cli(&[
        "seat-links",
        "--template",
        "Databricks Workshop",
        "-o",
        "csv",
    ]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "server,owner,url,expires_at", "{csv}");
    assert_eq!(
        lines.len(),
        2,
        "only carol was made from the template: {csv}"
    );
    assert!(lines[1].starts_with("carol,seat-carol,http://"), "{csv}");
    let url = lines[1].split(',').nth(2).expect("url");
    let path = url
        .strip_prefix(&devbox.url(""))
        .expect("a link to this devbox");
    open_seat(&devbox, path, "carol");

    // Without a template: every server; the owners show in `get -o wide`.
    let (ok, json_text, stderr) = cli(&["seat-links", "-o", "json"]);
    assert!(ok, "{stderr}");
    let links: Value = serde_json::from_str(&json_text).expect("json");
    let servers: Vec<&str> = links
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|l| l["server"].as_str())
        .collect();
    assert_eq!(servers, ["ada", "bob", "carol"]);
    let (ok, table, stderr) = cli(&["get", "-o", "wide"]);
    assert!(ok, "{stderr}");
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("OWNER") && header.contains("TEMPLATE"),
        "{table}"
    );
    let carol = table
        .lines()
        .find(|l| l.starts_with("carol"))
        .expect("carol's row");
    assert!(
        carol.contains("seat-carol") && carol.contains("Databricks Workshop"),
        "{table}"
    );

    // A template nothing was made from is an error that says so.
    let (ok, _, stderr) = cli(&["seat-links", "--template", "Nothing"]);
    assert!(!ok);
    assert!(stderr.contains("template `Nothing`"), "{stderr}");
}

#[test]
fn a_stopped_ide_offers_its_owner_a_start_and_starts_on_a_visit_when_asked() {
    let devbox = tenancy_devbox_with("controller:\n  start_on_visit: true\n");
    wait_running_as_admin(&devbox, "ada");
    let (link, _) = seat_link(&devbox, "ada");
    let ada = open_seat(&devbox, &link, "ada");
    let (bob_link, _) = seat_link(&devbox, "bob");
    let bob = open_seat(&devbox, &bob_link, "bob");
    let stopped = ada.call("POST", "/servers/ada/stop", None);
    assert_eq!(stopped.status, 200, "{stopped}");

    // A script's request (not a page visit) gets the page that offers Start, and
    // starts nothing.
    let fetched = ada.call_with("GET", "/s/ada/", &[("Sec-Fetch-Mode", "cors")]);
    assert_eq!(fetched.status, 503, "{fetched}");
    assert!(
        fetched.text.contains("data-mode=\"offer\""),
        "{}",
        fetched.text
    );
    assert!(
        fetched.text.contains("/ui/ide-start.js"),
        "{}",
        fetched.text
    );
    let policy = fetched
        .header("content-security-policy")
        .unwrap_or_default();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
        "{policy}"
    );
    assert_eq!(
        as_admin(&devbox, "GET", "/servers/ada", None).json()["status"],
        "stopped"
    );
    // Someone else's visit starts nothing and learns nothing.
    let other = bob.call_with("GET", "/s/ada/", &[("Sec-Fetch-Mode", "navigate")]);
    assert_eq!(other.status, 404, "{other}");
    assert_eq!(
        as_admin(&devbox, "GET", "/servers/ada", None).json()["status"],
        "stopped"
    );

    // The owner's visit starts it; the page waits for it; then the IDE answers.
    let visit = ada.call_with("GET", "/s/ada/", &[("Sec-Fetch-Mode", "navigate")]);
    assert_eq!(visit.status, 503, "{visit}");
    assert!(visit.text.contains("data-mode=\"wait\""), "{}", visit.text);
    wait_running_as_admin(&devbox, "ada");
    let ide = ada.call("GET", "/s/ada/", None);
    assert_eq!(ide.status, 200, "{ide}");
    assert_eq!(devbox.get("/ui/ide-start.js").status, 200);
}

/// A request to 127.0.0.1 for `host` (names under `*.localhost` resolve only in
/// browsers), answered as it is: redirects are not followed.
fn to_host(devbox: &Devbox, host: &str, path: &str, cookie: Option<&str>) -> Reply {
    let mut headers = vec![("Host", host)];
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    common::request_once("GET", &devbox.url(path), &headers, None)
}

#[test]
fn each_ide_has_an_origin_of_its_own_reached_through_a_one_time_ticket() {
    let devbox = tenancy_devbox_configured(
        &format!(
            "  public_url: http://devbox.localhost:{}\n  ide_subdomains: true\n",
            common::HTTP_PORT
        ),
        "",
    );
    wait_running_as_admin(&devbox, "ada");
    wait_running_as_admin(&devbox, "bob");
    let base = format!("devbox.localhost:{}", devbox.http_port);
    let ada_host = format!("ada.{base}");
    let (link, _) = seat_link(&devbox, "ada");
    let ada = open_seat(&devbox, &link, "ada");
    let (bob_link, _) = seat_link(&devbox, "bob");
    let bob = open_seat(&devbox, &bob_link, "bob");

    // On devbox's origin, the IDE's path sends the browser to the IDE's own origin,
    // with a ticket.
    let sent = to_host(&devbox, &base, "/s/ada/?folder=/x", Some(&ada.cookie));
    assert_eq!(sent.status, 303, "{sent}");
    let location = sent.header("location").expect("a redirect").to_owned();
    let prefix = format!("http://{ada_host}/__devbox/ide-ticket?t=");
    assert!(location.starts_with(&prefix), "{location}");
    let ticket_path = location
        .strip_prefix(&format!("http://{ada_host}"))
        .expect("path");

    // The ticket becomes that origin's cookie (its host only), once.
    let traded = to_host(&devbox, &ada_host, ticket_path, None);
    assert_eq!(traded.status, 303, "{traded}");
    assert_eq!(traded.header("location"), Some("/?folder=/x"));
    let set_cookie = traded
        .header("set-cookie")
        .expect("the IDE's cookie")
        .to_owned();
    assert!(set_cookie.starts_with("devbox_ide="), "{set_cookie}");
    assert!(
        set_cookie.contains("HttpOnly") && !set_cookie.contains("Domain"),
        "{set_cookie}"
    );
    let ide_cookie = set_cookie.split(';').next().expect("cookie").to_owned();
    let again = to_host(&devbox, &ada_host, ticket_path, None);
    assert_eq!(again.status, 403, "a ticket is good once: {again}");

    // The IDE answers at the root of its origin, to that cookie only.
    let workbench = to_host(&devbox, &ada_host, "/?folder=/tmp", Some(&ide_cookie));
    assert_eq!(workbench.status, 200, "{workbench}");
    assert!(workbench.text.contains("<html"), "code-server's workbench");
    let healthz = to_host(&devbox, &ada_host, "/healthz", Some(&ide_cookie));
    assert_eq!(healthz.status, 200, "{healthz}");
    // Without it the browser is sent to devbox's origin to sign in.
    let anonymous = to_host(&devbox, &ada_host, "/", None);
    assert_eq!(anonymous.status, 303, "{anonymous}");
    assert_eq!(
        anonymous.header("location").map(str::to_owned),
        Some(format!("http://{base}/s/ada/"))
    );
    // The IDE's cookie opens nothing else: not the API (on any host), not bob's IDE.
    assert_eq!(
        to_host(&devbox, &base, "/servers", Some(&ide_cookie)).status,
        401
    );
    let on_ide = to_host(&devbox, &ada_host, "/servers", Some(&ide_cookie));
    assert!(
        !on_ide.text.contains("\"slug\""),
        "no API on an IDE's origin: {on_ide}"
    );
    let bob_host = format!("bob.{base}");
    let crossed = to_host(&devbox, &bob_host, "/", Some(&ide_cookie));
    assert_eq!(crossed.status, 303, "{crossed}");
    // bob, signed in on devbox's origin, gets no ticket for ada's IDE.
    let refused = to_host(&devbox, &base, "/s/ada/", Some(&bob.cookie));
    assert_eq!(refused.status, 404, "{refused}");
    // A path that would read as another site in a `Location` stays a path of the IDE.
    let sent = to_host(&devbox, &base, "/s/ada//evil.example/x", Some(&ada.cookie));
    let location = sent.header("location").expect("a redirect").to_owned();
    let ticket_path = location
        .strip_prefix(&format!("http://{ada_host}"))
        .expect("path");
    let traded = to_host(&devbox, &ada_host, ticket_path, None);
    assert_eq!(
        traded.header("location"),
        Some("/evil.example/x"),
        "{traded}"
    );
    // A name that is no server's is a 404 too, whoever asks.
    let ghost = to_host(&devbox, &format!("ghost.{base}"), "/", Some(&ide_cookie));
    assert_eq!(
        ghost.status, 303,
        "sent to sign in, like any stranger: {ghost}"
    );
    assert_eq!(
        to_host(&devbox, &base, "/s/ghost/", Some(&ada.cookie)).status,
        404
    );
}

/// The `log` messages `stream` receives until it has been quiet for two seconds.
fn log_messages_until_quiet(stream: &mut common::WsClient) -> usize {
    if let tokio_tungstenite::tungstenite::stream::MaybeTlsStream::Plain(tcp) = stream.get_ref() {
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
    }
    let mut logs = 0;
    while let Ok(message) = stream.read() {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let line: Value = serde_json::from_str(&text).unwrap_or_default();
            if line["type"] == "log" {
                logs += 1;
            }
        }
    }
    logs
}

#[test]
fn a_users_log_stream_stops_when_the_server_is_no_longer_theirs() {
    let devbox = tenancy_devbox();
    wait_running_as_admin(&devbox, "ada");
    let (link, _) = seat_link(&devbox, "ada");
    let ada = open_seat(&devbox, &link, "ada");
    let cookie = [("Cookie", ada.cookie.clone())];
    let mut stream = ws_connect(&devbox, "/ws/logs/ada?lines=0", &cookie).expect("upgrade");
    // Her own server's lines reach her: a restart prints some.
    let restarted = as_admin(&devbox, "POST", "/servers/ada/restart", None);
    assert_eq!(restarted.status, 200, "{restarted}");
    assert!(
        log_messages_until_quiet(&mut stream) > 0,
        "a restart prints lines"
    );

    // The admin gives the server to bob: what it prints next is not ada's to read.
    std::fs::write(
        devbox.specs().join("ada.yaml"),
        "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: ada\n  owner: bob\nspec:\n  state: running\n",
    )
    .expect("spec");
    common::wait_for("the server to be bob's", common::STARTUP, || {
        let server = as_admin(&devbox, "GET", "/servers/ada", None).json();
        (server["owner"] == "bob").then_some(())
    });
    log_messages_until_quiet(&mut stream);
    let restarted = as_admin(&devbox, "POST", "/servers/ada/restart", None);
    assert_eq!(restarted.status, 200, "{restarted}");
    assert_eq!(
        log_messages_until_quiet(&mut stream),
        0,
        "no line of bob's server reaches ada"
    );
}
