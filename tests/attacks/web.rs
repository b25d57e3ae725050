//! What a web page the operator visits could do to devbox (items 1, 2, 3, 5 and 6 of
//! the issue, and the oversized spec of 7): drive the API across origins, with or
//! without CORS, through a DNS-rebinding name, read the token, or hold connections.
//! Requests are written by hand where a client library would fix the `Host` up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Devbox, Options, Part, list_dir, multipart, wait_for, zip_bytes};

const EVIL: &str = "https://evil.example";
const TOKEN: &str = "web-attacks-T0ken";

/// Sends `head` (request line and headers, without the blank line) and `body` on a
/// fresh connection; answers the status and the whole answer as text.
fn raw(devbox: &Devbox, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", devbox.http_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).expect("send");
    let mut answer = Vec::new();
    // An upgraded connection stays open: the status line and headers are enough.
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.starts_with(b"HTTP/1.1 101") && answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

fn websocket_head(path: &str, host: &str, origin: Option<&str>) -> String {
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
    );
    if let Some(origin) = origin {
        head.push_str(&format!("\r\nOrigin: {origin}"));
    }
    head
}

fn assert_forbidden(status: u16, text: &str, needle: &str) {
    assert_eq!(status, 403, "{text}");
    assert!(text.contains(needle), "names {needle:?}: {text}");
}

/// The payload of item 1: a `NODE_OPTIONS` that writes `marker` when any Node starts.
fn payload_spec(name: &str, marker: &Path) -> String {
    let code = format!("require('fs').writeFileSync('{}','ran')", marker.display());
    serde_json::json!({
        "apiVersion": "devbox/v1",
        "kind": "DevServer",
        "metadata": {"name": name},
        "spec": {"state": "running", "env": {"NODE_OPTIONS": format!("--import=data:text/javascript,{code}")}},
    })
    .to_string()
}

#[test]
fn a_foreign_page_cannot_put_a_spec_that_runs_code() {
    let devbox = Devbox::start();
    let marker = devbox.path("payload-ran");
    let host = format!("127.0.0.1:{}", devbox.http_port);
    // The preflight no longer invites the page in.
    let (status, preflight) = raw(
        &devbox,
        &format!(
            "OPTIONS /specs/x HTTP/1.1\r\nHost: {host}\r\nOrigin: {EVIL}\r\n\
             Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type"
        ),
        b"",
    );
    assert!(
        !preflight
            .to_ascii_lowercase()
            .contains("access-control-allow"),
        "HTTP {status}: {preflight}"
    );
    // And the PUT itself, sent anyway (a page can, with `mode: no-cors`), is refused.
    let body = payload_spec("x", &marker);
    let (status, text) = raw(
        &devbox,
        &format!(
            "PUT /specs/x HTTP/1.1\r\nHost: {host}\r\nOrigin: {EVIL}\r\nContent-Type: application/json"
        ),
        body.as_bytes(),
    );
    assert_forbidden(status, &text, "cross-site request refused");
    assert!(list_dir(&devbox.specs()).is_empty(), "no spec file written");

    // The same PUT from devbox's own page is carried out (a harmless spec).
    let own = format!("http://{host}");
    let harmless = r#"{"apiVersion":"devbox/v1","kind":"DevServer","metadata":{"name":"mine"},"spec":{"state":"stopped"}}"#;
    let (status, text) = raw(
        &devbox,
        &format!(
            "PUT /specs/mine HTTP/1.1\r\nHost: {host}\r\nOrigin: {own}\r\nContent-Type: application/json"
        ),
        harmless.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    assert!(devbox.specs().join("mine.yaml").exists());
    // The controller has seen the specs folder since the refused PUT (it answered for
    // `mine`), and found nothing of it.
    devbox.wait_status("mine", "stopped");
    assert!(devbox.status("x").is_none(), "no server");
    assert!(!marker.exists(), "the payload did not run");
}

#[test]
fn simple_cross_site_requests_change_nothing() {
    let devbox = Devbox::start();
    let created = devbox.create(&serde_json::json!({"name": "target"}));
    let id = created["id"].as_str().expect("id").to_owned();
    let specs_before = list_dir(&devbox.specs());
    let zip = zip_bytes(&[("README.md", "hello")]);
    let (form_type, form) = multipart(&[
        ("name", Part::Text("via-form")),
        (
            "zip_file",
            Part::File {
                filename: "w.zip",
                bytes: &zip,
            },
        ),
    ]);
    for (origin, sec_fetch_site) in [
        (Some(EVIL), None),
        // Another origin of the same site: another loopback port.
        (Some("http://127.0.0.1:9"), Some("same-site")),
        (Some("null"), None),
        (None, Some("cross-site")),
    ] {
        let mut headers = Vec::new();
        if let Some(origin) = origin {
            headers.push(("Origin", origin));
        }
        if let Some(site) = sec_fetch_site {
            headers.push(("Sec-Fetch-Site", site));
        }
        let mut with_type = headers.clone();
        with_type.push(("Content-Type", form_type.as_str()));
        let reply = devbox.call(
            "POST",
            "/servers/create-with-workspace",
            &with_type,
            Some(&form),
        );
        reply.assert_error(403, "cross-site request refused");
        let mut text_plain = headers.clone();
        text_plain.push(("Content-Type", "text/plain"));
        let reply = devbox.call(
            "POST",
            &format!("/servers/{id}/start"),
            &text_plain,
            Some(b"x"),
        );
        reply.assert_error(403, "cross-site request refused");
        let reply = devbox.call("DELETE", &format!("/servers/{id}"), &headers, None);
        reply.assert_error(403, "cross-site request refused");
    }
    assert_eq!(
        list_dir(&devbox.specs()),
        specs_before,
        "nothing created or deleted"
    );
    let spec = std::fs::read_to_string(devbox.specs().join("target.yaml")).expect("spec");
    assert!(spec.contains("state: stopped"), "not started: {spec}");
    assert_eq!(
        devbox.server("target").expect("listed")["status"],
        "stopped"
    );

    // Scripts, the CLI and devbox's own pages keep working.
    let reply = devbox.call(
        "POST",
        "/servers/create-with-workspace",
        &[("Content-Type", &form_type)],
        Some(&form),
    );
    assert_eq!(reply.status, 201, "{reply}");
    let own = format!("http://127.0.0.1:{}", devbox.http_port);
    let reply = devbox.call(
        "DELETE",
        &format!("/servers/{id}"),
        &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")],
        None,
    );
    assert_eq!(reply.status, 200, "{reply}");
}

#[test]
fn dns_rebinding_names_reach_neither_the_api_nor_an_ide() {
    let devbox = Devbox::start();
    devbox.write_spec("ide", "  state: running\n");
    let (_, port) = devbox.wait_running("ide");
    let rebound = format!("rebind.attacker.example:{}", devbox.http_port);
    for path in [
        "/servers",
        "/",
        "/config",
        &format!("/vscode/{port}/healthz"),
    ] {
        let (status, text) = raw(
            &devbox,
            &format!("GET {path} HTTP/1.1\r\nHost: {rebound}"),
            b"",
        );
        assert_forbidden(status, &text, &format!("`{rebound}`"));
        assert!(
            text.contains("server.allowed_hosts"),
            "names the setting: {text}"
        );
    }
    // The IDE's WebSocket with a rebinding Host and a matching Origin: refused, not 101.
    let origin = format!("http://{rebound}");
    let (status, text) = raw(
        &devbox,
        &websocket_head(
            &format!("/vscode/{port}/stable-x/"),
            &rebound,
            Some(&origin),
        ),
        b"",
    );
    assert_forbidden(status, &text, "does not answer to the host");
    // The log stream, and the IDE's socket from a foreign page on devbox's own name.
    let host = format!("127.0.0.1:{}", devbox.http_port);
    for path in ["/ws/logs".to_owned(), format!("/vscode/{port}/stable-x/")] {
        let (status, text) = raw(&devbox, &websocket_head(&path, &host, Some(EVIL)), b"");
        assert_forbidden(status, &text, "may not open a WebSocket");
    }
    // devbox's own names and pages still work.
    let (status, text) = raw(
        &devbox,
        &websocket_head("/ws/logs", &host, Some(&format!("http://{host}"))),
        b"",
    );
    assert_eq!(status, 101, "{text}");
    for name in ["localhost", "127.0.0.1", "LocalHost"] {
        let (status, text) = raw(
            &devbox,
            &format!(
                "GET /vscode/{port}/healthz HTTP/1.1\r\nHost: {name}:{}",
                devbox.http_port
            ),
            b"",
        );
        assert_eq!(status, 200, "{name}: {text}");
    }
}

#[test]
fn configured_names_are_allowed_and_star_turns_the_check_off() {
    let devbox = Devbox::start_opts(
        Options {
            config:
                "server:\n  allowed_hosts: [devbox.lan]\n  public_url: https://ide.example.org\n"
                    .into(),
            ..Options::default()
        },
        |_| {},
    );
    for host in ["devbox.lan:1234", "ide.example.org"] {
        let (status, text) = raw(
            &devbox,
            &format!("GET /servers HTTP/1.1\r\nHost: {host}"),
            b"",
        );
        assert_eq!(status, 200, "{host}: {text}");
    }
    // public_url's origin is devbox's own: its pages may change things.
    let (status, text) = raw(
        &devbox,
        "POST /servers HTTP/1.1\r\nHost: ide.example.org\r\nOrigin: https://ide.example.org\r\nContent-Type: application/json",
        br#"{"name": "from-public"}"#,
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = raw(&devbox, "GET /servers HTTP/1.1\r\nHost: other.lan", b"");
    assert_forbidden(status, &text, "`other.lan`");

    let open = Devbox::start_opts(
        Options {
            config: "server:\n  allowed_hosts: ['*']\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    let (status, text) = raw(
        &open,
        "GET /servers HTTP/1.1\r\nHost: anything.example",
        b"",
    );
    assert_eq!(status, 200, "{text}");
}

fn token_file_devbox() -> Devbox {
    Devbox::start_opts(
        Options {
            config: "auth:\n  session_ttl: 1h\n".into(),
            ..Options::default()
        },
        |root| {
            std::fs::write(root.join("token"), format!("{TOKEN}\n")).expect("token file");
            let config = root.join("config.yaml");
            let text = std::fs::read_to_string(&config).expect("config");
            // The top-level `server:` line (not `code_server:`).
            let text = text.replacen(
                "\nserver:\n",
                &format!(
                    "\nserver:\n  api_token_file: {}\n",
                    root.join("token").display()
                ),
                1,
            );
            std::fs::write(config, text).expect("config");
        },
    )
}

#[test]
fn the_token_comes_from_a_file_and_the_browser_gets_only_an_http_only_session() {
    let devbox = token_file_devbox();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", devbox.pid())).expect("cmdline");
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(TOKEN),
        "the token is on no command line"
    );
    devbox.get("/servers").assert_error(401, "API token");
    let bearer = format!("Bearer {TOKEN}");
    // The scheme's name is case-insensitive (RFC 9110 §11.1); a wrong token is not.
    for bearer in [bearer.clone(), format!("bearer {TOKEN}")] {
        assert_eq!(
            devbox
                .call("GET", "/servers", &[("Authorization", &bearer)], None)
                .status,
            200,
            "{bearer}"
        );
    }
    devbox
        .call(
            "GET",
            "/servers",
            &[("Authorization", "bearer guess")],
            None,
        )
        .assert_error(401, "invalid API token");

    // The old dashboard's script-set cookie holding the token is no credential.
    let old = devbox.call(
        "GET",
        "/servers",
        &[("Cookie", &format!("devbox_token={TOKEN}"))],
        None,
    );
    old.assert_error(401, "API token");

    let wrong = devbox.call(
        "POST",
        "/auth/login",
        &[("Content-Type", "application/json")],
        Some(br#"{"token": "guess"}"#),
    );
    wrong.assert_error(401, "invalid API token");
    assert!(wrong.header("set-cookie").is_none());
    // A foreign page cannot log a browser in (login CSRF).
    let foreign = devbox.call(
        "POST",
        "/auth/login",
        &[("Content-Type", "application/json"), ("Origin", EVIL)],
        Some(format!(r#"{{"token": "{TOKEN}"}}"#).as_bytes()),
    );
    foreign.assert_error(403, "cross-site");

    let login = devbox.login(TOKEN);
    assert_eq!(login.status, 200, "{login}");
    assert!(!login.text.contains(TOKEN), "{login}");
    let set_cookie = login
        .header("set-cookie")
        .expect("a session cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    assert!(!set_cookie.contains(TOKEN), "{set_cookie}");
    let session = set_cookie.split(';').next().expect("name=value").to_owned();
    let own = format!("http://127.0.0.1:{}", devbox.http_port);
    let with_session = |extra: &[(&str, &str)]| {
        let mut headers = vec![("Cookie", session.as_str())];
        headers.extend_from_slice(extra);
        devbox.call("GET", "/servers", &headers, None)
    };
    assert_eq!(with_session(&[]).status, 200);
    assert_eq!(with_session(&[("Origin", &own)]).status, 200);
    // Sent along by a page of another origin (a same-site page gets SameSite=Strict
    // cookies too), the session is no credential.
    with_session(&[("Origin", "http://127.0.0.1:9")]).assert_error(401, "API token");
    // Nor from a page of another port, which sends no Origin on a GET but tells
    // `Sec-Fetch-Site: same-site`; devbox's own pages and a typed URL do count.
    with_session(&[("Sec-Fetch-Site", "same-site")]).assert_error(401, "API token");
    with_session(&[("Sec-Fetch-Site", "cross-site")]).assert_error(401, "API token");
    for own_or_typed in ["same-origin", "none"] {
        assert_eq!(
            with_session(&[("Sec-Fetch-Site", own_or_typed)]).status,
            200,
            "{own_or_typed}"
        );
    }
    let session_state = devbox.call("GET", "/auth/session", &[("Cookie", &session)], None);
    assert_eq!(session_state.json()["logged_in"], true, "{session_state}");

    let logout = devbox.call("POST", "/auth/logout", &[("Cookie", &session)], None);
    assert_eq!(logout.status, 200, "{logout}");
    assert!(
        logout
            .header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    assert_eq!(
        logout.header("clear-site-data"),
        Some("\"storage\""),
        "what pages left on devbox's origin goes too"
    );
    with_session(&[]).assert_error(401, "API token");
}

#[test]
fn devbox_pages_forbid_inline_script_framing_and_sniffing() {
    let devbox = Devbox::start();
    for path in ["/", "/ui/app.js", "/ui/theme.js", "/ui/style.css"] {
        let reply = devbox.get(path);
        assert_eq!(reply.status, 200, "{path}");
        let policy = reply.header("content-security-policy").unwrap_or_default();
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    // Framed by a page of another origin (another port of this host is same-site),
    // nothing of devbox's loads: neither the dashboard nor an IDE nor a file.
    for (site, expected) in [
        ("same-site", 403),
        ("cross-site", 403),
        ("same-origin", 200),
    ] {
        for dest in ["iframe", "frame", "object", "embed"] {
            let reply = devbox.call(
                "GET",
                "/",
                &[("Sec-Fetch-Dest", dest), ("Sec-Fetch-Site", site)],
                None,
            );
            assert_eq!(reply.status, expected, "{dest} from {site}: {reply}");
        }
    }
    devbox
        .call(
            "GET",
            "/vscode/1/vscode-remote-resource?path=/etc/passwd",
            &[
                ("Sec-Fetch-Dest", "iframe"),
                ("Sec-Fetch-Site", "same-site"),
            ],
            None,
        )
        .assert_error(403, "another site's page");
    let page = devbox.get("/").text;
    assert!(
        !page.contains("<script>"),
        "no inline script in the dashboard"
    );
    assert_eq!(
        devbox.get("/servers").header("x-content-type-options"),
        Some("nosniff")
    );
}

#[test]
fn slow_and_silent_clients_are_cut_off() {
    let devbox = Devbox::start_opts(
        Options {
            config: "server:\n  header_read_timeout: 2s\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    let connect = || {
        let stream = TcpStream::connect(("127.0.0.1", devbox.http_port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream
    };
    let closed_within = |mut stream: TcpStream| {
        let started = Instant::now();
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    };
    // Silent connections, many of them.
    let silent: Vec<TcpStream> = (0..300).map(|_| connect()).collect();
    // Half a header, a byte every half second (each byte would reset a per-read timer).
    let mut slow = connect();
    let dripping = std::thread::spawn(move || {
        let _ = slow.write_all(b"GET /servers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if slow.write_all(b"a").is_err() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        started.elapsed()
    });
    for stream in silent {
        let waited = closed_within(stream);
        assert!(
            waited < Duration::from_secs(15),
            "a silent connection stayed {waited:?}"
        );
    }
    let dripped = dripping.join().expect("slow client");
    assert!(
        dripped < Duration::from_secs(15),
        "the slow header was cut off ({dripped:?})"
    );
    // Headers sent at once, then a body a byte every half second: a JSON route and the
    // login each answer (an error) once the body's time is up, and write nothing.
    for (head, length) in [
        ("PUT /specs/slow HTTP/1.1", 300),
        ("POST /auth/login HTTP/1.1", 300),
        ("POST /servers/create-metadata HTTP/1.1", 300),
    ] {
        let mut stream = connect();
        stream
            .write_all(
                format!(
                    "{head}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .expect("send headers");
        let mut writer = stream.try_clone().expect("clone");
        let dripping = std::thread::spawn(move || {
            for _ in 1..length {
                std::thread::sleep(Duration::from_millis(500));
                if writer.write_all(b" ").is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let mut answer = [0u8; 512];
        let read = stream.read(&mut answer).unwrap_or(0);
        let waited = started.elapsed();
        let text = String::from_utf8_lossy(&answer[..read]).into_owned();
        assert!(
            waited < Duration::from_secs(15),
            "{head}: a dripping body held on {waited:?}"
        );
        assert!(
            text.starts_with("HTTP/1.1 4") || read == 0,
            "{head}: {text}"
        );
        drop(stream);
        let _ = dripping.join();
    }
    assert!(
        !devbox.specs().join("slow.yaml").exists(),
        "nothing written"
    );
    // A kept-alive connection that goes quiet after an answer is closed too.
    let mut idle = connect();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send");
    let mut first = [0u8; 512];
    assert!(idle.read(&mut first).expect("answer") > 0);
    let waited = closed_within(idle);
    assert!(
        waited < Duration::from_secs(15),
        "idle keep-alive stayed {waited:?}"
    );
    // And devbox still answers everyone else.
    assert_eq!(devbox.get("/health").status, 200);
}

#[test]
fn an_oversized_spec_is_refused_whole_and_at_once() {
    let devbox = Devbox::start();
    let filler = "x".repeat(1_500_000);
    let body = serde_json::json!({
        "apiVersion": "devbox/v1",
        "kind": "DevServer",
        "metadata": {"name": "big"},
        "spec": {"state": "stopped", "env": {"FILLER": filler}},
    })
    .to_string();
    // As curl sends a large body: the headers first, with `Expect: 100-continue`;
    // devbox answers before a byte of the body is sent.
    for (method, path) in [("PUT", "/specs/big"), ("POST", "/servers")] {
        let started = Instant::now();
        let mut stream = TcpStream::connect(("127.0.0.1", devbox.http_port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("send");
        let mut answer = [0u8; 2048];
        let n = stream.read(&mut answer).expect("an answer");
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{method} {path}: {answer}"
        );
        assert!(answer.contains("\"error\""), "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "answered at once"
        );
    }
    wait_for(
        "the specs directory to stay empty",
        Duration::from_secs(5),
        || (!devbox.specs().join("big.yaml").exists()).then_some(()),
    );
    assert!(devbox.status("big").is_none());
}

#[test]
fn a_participants_app_cannot_widen_a_service_worker_to_devbox() {
    // An app behind an IDE (code-server's /proxy/<port>/) that answers its worker's
    // script with `Service-Worker-Allowed: /` would get a worker for all of devbox's
    // origin, acting as devbox on every later visit.
    let app = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind the app");
    let app_port = app.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in app.incoming().flatten().take(4) {
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\nService-Worker-Allowed: /\r\nContent-Length: 2\r\nConnection: close\r\n\r\n//",
            );
        }
    });
    let devbox = Devbox::start();
    devbox.write_spec("ide", "  state: running\n");
    let (_, port) = devbox.wait_running("ide");
    let script = devbox.call(
        "GET",
        &format!("/vscode/{port}/proxy/{app_port}/sw.js"),
        &[("Service-Worker", "script")],
        None,
    );
    assert_eq!(script.status, 200, "{script}");
    assert_eq!(
        script.header("service-worker-allowed").map(str::to_owned),
        Some(format!("/vscode/{port}/")),
        "at most the IDE's own prefix"
    );
}
