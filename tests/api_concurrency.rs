//! Concurrent API calls against a real `devbox serve`: parallel creates get distinct
//! ports and one spec file each; a spec pinning another file's port is refused; two
//! creators racing for one name (or one slug) get exactly one 201 and one 409; parallel
//! edits of one server lose nothing.

mod common;

use std::collections::BTreeSet;
use std::sync::Barrier;

use serde_json::json;

use common::{Devbox, Options, Reply, list_dir};

/// Runs `count` calls of `call(i)` at once (released together by a barrier).
fn parallel(count: usize, call: impl Fn(usize) -> Reply + Sync) -> Vec<Reply> {
    let barrier = Barrier::new(count);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let (barrier, call) = (&barrier, &call);
                scope.spawn(move || {
                    barrier.wait();
                    call(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    })
}

#[test]
fn thirty_parallel_creates_get_thirty_ports_and_thirty_spec_files() {
    // 31 ports, one pinned by a hand-written file the controller may not have read yet:
    // exactly enough for the 30 creates.
    let devbox = Devbox::start_opts(
        Options {
            ports: 31,
            ..Options::default()
        },
        |_| {},
    );
    let hand_pinned = devbox.port_start + 7;
    devbox.write_spec(
        "handmade",
        &format!("  state: stopped\n  port: {hand_pinned}\n"),
    );
    let replies = parallel(30, |i| {
        devbox.post_json("/servers", &json!({"name": format!("seat-{i:02}")}))
    });
    let mut ports = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, 201, "seat-{i:02}: {reply}");
        let server = reply.json();
        assert_eq!(server["name"], format!("seat-{i:02}"));
        assert_eq!(server["status"], "stopped");
        let port = server["port"].as_u64().expect("port") as u16;
        assert!((devbox.port_start..=devbox.port_end).contains(&port));
        assert_ne!(
            port, hand_pinned,
            "seat-{i:02} got the hand-written file's port"
        );
        ports.insert(port);
        ids.insert(server["id"].as_str().expect("id").to_owned());
        // Each spec file pins the port its answer named.
        let spec: serde_json::Value = devbox::yaml::from_str(
            &std::fs::read_to_string(devbox.specs().join(format!("seat-{i:02}.yaml")))
                .expect("spec file"),
        )
        .expect("YAML");
        assert_eq!(spec["spec"]["port"].as_u64(), Some(u64::from(port)));
        assert_eq!(spec["metadata"]["id"], server["id"].as_str().expect("id"));
    }
    assert_eq!(ports.len(), 30, "30 distinct ports: {ports:?}");
    assert_eq!(ids.len(), 30, "30 distinct ids");
    assert_eq!(
        list_dir(&devbox.specs()).len(),
        31,
        "30 spec files and the hand-written one"
    );
    let listed = devbox.servers();
    assert_eq!(listed.len(), 31);
    let listed_ports: BTreeSet<u16> = listed
        .iter()
        .filter(|s| s["slug"] != "handmade")
        .filter_map(|s| s["port"].as_u64())
        .map(|p| p as u16)
        .collect();
    assert_eq!(listed_ports, ports);
    // The range is full now: one more is refused, and nothing is written.
    devbox
        .post_json("/servers", &json!({"name": "one-too-many"}))
        .assert_error(409, "no free port");
    assert!(!devbox.specs().join("one-too-many.yaml").exists());
}

/// `PUT /specs/{name}` of `spec` (JSON).
fn put_spec(devbox: &Devbox, name: &str, spec: &serde_json::Value) -> Reply {
    devbox.call(
        "PUT",
        &format!("/specs/{name}"),
        &[("Content-Type", "application/json")],
        Some(&serde_json::to_vec(spec).expect("json")),
    )
}

fn spec_pinning(name: &str, port: Option<u16>) -> serde_json::Value {
    let mut spec = json!({
        "apiVersion": "devbox/v1",
        "kind": "DevServer",
        "metadata": {"name": name},
        "spec": {"state": "stopped"},
    });
    if let Some(port) = port {
        spec["spec"]["port"] = json!(port);
    }
    spec
}

#[test]
fn a_spec_pinning_another_spec_files_port_is_409_and_writes_nothing() {
    let devbox = Devbox::start();
    let first = devbox.create(&json!({"name": "first"}));
    let taken = first["port"].as_u64().expect("port") as u16;

    // A new spec.
    put_spec(&devbox, "second", &spec_pinning("second", Some(taken))).assert_error(
        409,
        &format!("port {taken} is pinned by the spec of server `first`"),
    );
    assert!(!devbox.specs().join("second.yaml").exists());

    // A replacement.
    let reply = put_spec(&devbox, "second", &spec_pinning("second", None));
    assert_eq!(reply.status, 200, "{reply}");
    let before = std::fs::read_to_string(devbox.specs().join("second.yaml")).expect("spec");
    put_spec(&devbox, "second", &spec_pinning("second", Some(taken))).assert_error(409, "`first`");
    assert_eq!(
        std::fs::read_to_string(devbox.specs().join("second.yaml")).expect("spec"),
        before
    );

    // A file written by hand a moment ago speaks for itself, scanned or not.
    let hand = devbox.port_end;
    devbox.write_spec("handmade", &format!("  state: stopped\n  port: {hand}\n"));
    put_spec(&devbox, "second", &spec_pinning("second", Some(hand)))
        .assert_error(409, "`handmade`");
    assert_eq!(
        std::fs::read_to_string(devbox.specs().join("second.yaml")).expect("spec"),
        before
    );
    assert_eq!(
        list_dir(&devbox.specs()),
        ["first.yaml", "handmade.yaml", "second.yaml"]
    );
}

#[test]
fn two_creators_racing_for_one_name_get_one_201_and_one_409() {
    let devbox = Devbox::start_opts(
        Options {
            ports: 40,
            ..Options::default()
        },
        |_| {},
    );
    for round in 0..8 {
        // The same name, or two names with one slug; through two different routes.
        let names = if round % 2 == 0 {
            [format!("Race {round}"), format!("Race {round}")]
        } else {
            [format!("Race {round}"), format!("Race-{round}")]
        };
        let paths = if round % 4 < 2 {
            ["/servers", "/servers"]
        } else {
            ["/servers", "/servers/create-metadata"]
        };
        let replies = parallel(2, |i| {
            devbox.post_json(paths[i], &json!({"name": names[i]}))
        });
        let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [201, 409],
            "round {round}: {} / {}",
            replies[0],
            replies[1]
        );
        let loser = replies.iter().find(|r| r.status == 409).expect("a 409");
        loser.assert_error(409, "already exists");
        let winner = replies
            .iter()
            .find(|r| r.status == 201)
            .expect("a 201")
            .json();

        let slug = format!("Race-{round}");
        let files: Vec<String> = list_dir(&devbox.specs())
            .into_iter()
            .filter(|f| f.starts_with(&format!("{slug}.")))
            .collect();
        assert_eq!(
            files,
            [format!("{slug}.yaml")],
            "round {round}: one spec file"
        );
        let listed: Vec<_> = devbox
            .servers()
            .into_iter()
            .filter(|s| s["slug"] == slug.as_str() || s["id"] == winner["id"])
            .collect();
        assert_eq!(listed.len(), 1, "round {round}: one server {listed:?}");
        assert_eq!(listed[0]["id"], winner["id"]);
    }
    assert_eq!(list_dir(&devbox.specs()).len(), 8);
}

/// A devbox whose API calls give up after `timeout` (so a call that waits for a
/// revision the controller never acts on fails fast instead of after 5 minutes).
fn devbox_with_request_timeout(timeout: &str) -> Devbox {
    Devbox::start_opts(
        Options {
            config: format!("server:\n  request_timeout: {timeout}\n"),
            ..Options::default()
        },
        |_| {},
    )
}

/// Twelve parallel `install-extension` calls on one server.
fn install_twelve(devbox: &Devbox, id: &str) -> (Vec<Reply>, BTreeSet<String>) {
    let replies = parallel(12, |i| {
        devbox.post_json(
            &format!("/servers/{id}/install-extension"),
            &json!({"extension": format!("acme.tool-{i:02}")}),
        )
    });
    let expected = (0..12).map(|i| format!("acme.tool-{i:02}")).collect();
    (replies, expected)
}

#[test]
fn parallel_edits_of_one_server_lose_nothing() {
    let devbox = devbox_with_request_timeout("3s");
    let server = devbox.create(&json!({"name": "shared"}));
    let id = server["id"].as_str().expect("id");
    let (replies, expected) = install_twelve(&devbox, id);
    for reply in &replies {
        assert_eq!(reply.status, 200, "{reply}");
    }
    let listed: BTreeSet<String> =
        serde_json::from_value(devbox.get(&format!("/servers/{id}")).json()["extensions"].clone())
            .expect("extensions");
    assert_eq!(listed, expected, "every extension is in the spec");
    let spec: serde_json::Value = devbox::yaml::from_str(
        &std::fs::read_to_string(devbox.specs().join("shared.yaml")).expect("spec"),
    )
    .expect("YAML");
    let in_file: BTreeSet<String> =
        serde_json::from_value(spec["spec"]["extensions"].clone()).expect("list");
    assert_eq!(in_file, expected);
}

#[test]
fn parallel_edits_of_one_server_all_answer_200() {
    let devbox = devbox_with_request_timeout("10s");
    let server = devbox.create(&json!({"name": "shared"}));
    let id = server["id"].as_str().expect("id");
    let (replies, _) = install_twelve(&devbox, id);
    for reply in &replies {
        assert_eq!(reply.status, 200, "{reply}");
    }
}

#[test]
fn two_parallel_starts_both_answer_running() {
    let devbox = devbox_with_request_timeout("10s");
    let server = devbox.create(&json!({"name": "shared"}));
    let id = server["id"].as_str().expect("id");
    let replies = parallel(2, |_| devbox.post(&format!("/servers/{id}/start")));
    for reply in &replies {
        assert_eq!(reply.status, 200, "{reply}");
        assert_eq!(reply.json()["data"]["status"], "running", "{reply}");
    }
    let pids: BTreeSet<String> = replies
        .iter()
        .map(|r| r.json()["data"]["pid"].to_string())
        .collect();
    assert_eq!(pids.len(), 1, "one process: {pids:?}");
}
