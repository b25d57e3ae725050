//! Who is who through a trusted reverse proxy (oauth2-proxy, an institution's SSO): the
//! proxy names the user in `X-Forwarded-User` on devbox's proxy socket, and two users
//! each see, drive and open only their own servers. The same header over TCP (any
//! local process could send it) is ignored, and loopback addresses are refused as a
//! trusted TCP source. Real devbox, real code-server, HTTP over the real socket.

mod common;

use std::path::{Path, PathBuf};

use serde_json::json;

use common::{Devbox, Options, Reply};

use common::trusted_proxy::{HEADER, via_proxy};

fn listed(socket: &Path, user: &str) -> Vec<String> {
    via_proxy(socket, user, "GET", "/servers", None).slugs()
}

/// `user` creates server `name` through the proxy: the answer.
fn create(socket: &Path, user: &str, name: &str) -> Reply {
    via_proxy(
        socket,
        user,
        "POST",
        "/servers",
        Some(&json!({ "name": name })),
    )
}

fn proxied_devbox() -> (Devbox, PathBuf) {
    let dir = tempfile::tempdir().expect("socket dir");
    let socket = dir.keep().join("proxy.sock");
    let devbox = Devbox::start_opts(
        Options {
            config: format!(
                "auth:\n  max_servers_per_user: 2\n  admins: [boss]\n  trusted_header:\n    name: {HEADER}\n    socket: {}\n",
                socket.display()
            ),
            ..Options::default()
        },
        |_| {},
    );
    (devbox, socket)
}

#[test]
fn users_named_by_the_proxy_reach_only_their_own_servers() {
    let (devbox, socket) = proxied_devbox();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket).expect("socket").permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o660, "the proxy's group may connect, nobody else");

    let session = via_proxy(&socket, "alice", "GET", "/auth/session", None).json();
    assert_eq!(session["user"], "alice", "{session}");
    assert_eq!(session["logged_in"], true, "{session}");

    for (user, name) in [("alice", "alice-box"), ("bob", "bob-box")] {
        let created = create(&socket, user, name);
        assert_eq!(created.status, 201, "{created}");
        assert_eq!(created.json()["owner"], user);
    }
    assert_eq!(listed(&socket, "alice"), ["alice-box"]);
    assert_eq!(listed(&socket, "bob"), ["bob-box"]);
    assert_eq!(
        listed(&socket, "boss"),
        ["alice-box", "bob-box"],
        "a user named in auth.admins is an admin"
    );

    // alice starts and opens hers; bob can neither open, drive nor stream it.
    let started = via_proxy(&socket, "alice", "POST", "/servers/alice-box/start", None);
    assert_eq!(started.status, 200, "{started}\n{}", devbox.log_tail());
    let port = started.json()["data"]["port"]
        .as_u64()
        .or_else(|| {
            via_proxy(&socket, "alice", "GET", "/servers/alice-box", None).json()["port"].as_u64()
        })
        .expect("a port");
    let ide = via_proxy(&socket, "alice", "GET", "/s/alice-box/healthz", None);
    assert_eq!(ide.status, 200, "{ide}");
    for (method, path) in [
        ("GET", "/s/alice-box/healthz".to_owned()),
        ("GET", format!("/vscode/{port}/healthz")),
        ("GET", "/servers/alice-box".to_owned()),
        ("GET", "/servers/alice-box/logs".to_owned()),
        ("POST", "/servers/alice-box/stop".to_owned()),
        ("DELETE", "/servers/alice-box".to_owned()),
    ] {
        let reply = via_proxy(&socket, "bob", method, &path, None);
        assert_eq!(reply.status, 404, "bob {method} {path}: {reply}");
    }
    // What reaches into the host is the admin's; the quota holds.
    let reply = via_proxy(
        &socket,
        "bob",
        "PUT",
        "/specs/bob-box",
        Some(
            &json!({"apiVersion": "devbox/v1", "kind": "DevServer", "metadata": {"name": "bob-box"}, "spec": {"env": {"LD_PRELOAD": "/tmp/x.so"}}}),
        ),
    );
    reply.assert_error(403, "`env`");
    let second = create(&socket, "bob", "bob-two");
    assert_eq!(second.status, 201, "{second}");
    via_proxy(
        &socket,
        "bob",
        "POST",
        "/servers/create-metadata",
        Some(&json!({"name": "bob-three"})),
    )
    .assert_error(409, "auth.max_servers_per_user");
    assert!(!devbox.specs().join("bob-three.yaml").exists());
    assert_eq!(
        via_proxy(&socket, "alice", "GET", "/servers/alice-box", None).json()["status"],
        "running",
        "alice's server was not disturbed"
    );
    // A name that is no user name is no identity.
    via_proxy(&socket, "not a name", "GET", "/servers", None).assert_error(401, HEADER);
}

#[test]
fn the_header_over_tcp_is_ignored_and_logged() {
    let (devbox, socket) = proxied_devbox();
    let created = create(&socket, "alice", "alice-box");
    assert_eq!(created.status, 201, "{created}");
    // Any local process (a participant's terminal) can connect over TCP and send the
    // header: it counts for nothing there.
    for path in ["/servers", "/servers/alice-box"] {
        let reply = devbox.call("GET", path, &[(HEADER, "alice")], None);
        reply.assert_error(401, "API token");
        assert!(!reply.text.contains("alice-box"), "{reply}");
    }
    let deleted = devbox.call("DELETE", "/servers/alice-box", &[(HEADER, "alice")], None);
    assert_eq!(deleted.status, 401, "{deleted}");
    assert!(devbox.specs().join("alice-box.yaml").exists());
    assert!(
        devbox.log().contains("ignored an identity header"),
        "{}",
        devbox.log_tail()
    );
}

#[test]
fn loopback_is_refused_as_a_trusted_proxy_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("devbox.yaml");
    std::fs::write(
        &config,
        format!("auth:\n  trusted_header:\n    name: {HEADER}\n    from: [10.0.0.7, 127.0.0.1]\n"),
    )
    .expect("config");
    let output = std::process::Command::new(common::devbox_bin())
        .args(["--specs", "specs", "--state-dir", "state", "--config"])
        .arg(&config)
        .args(["serve", "--port", &common::free_ports(1).to_string()])
        .current_dir(dir.path())
        .output()
        .expect("devbox runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("auth.trusted_header.from[1]") && stderr.contains("terminal"),
        "says which entry and why: {stderr}"
    );
    assert!(!dir.path().join("state").exists(), "nothing started");
}
