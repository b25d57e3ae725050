//! Concurrent API calls against a real `devbox serve`: parallel creates get distinct
//! ports and one spec file each; two creators racing for one name (or one slug) get
//! exactly one 201 and one 409; parallel edits of one server lose nothing.

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
fn fifty_parallel_creates_get_fifty_ports_and_fifty_spec_files() {
    let devbox = Devbox::start_opts(
        Options {
            ports: 60,
            ..Options::default()
        },
        |_| {},
    );
    let replies = parallel(50, |i| {
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
    assert_eq!(ports.len(), 50, "50 distinct ports: {ports:?}");
    assert_eq!(ids.len(), 50, "50 distinct ids");
    assert_eq!(list_dir(&devbox.specs()).len(), 50, "50 spec files");
    let listed = devbox.servers();
    assert_eq!(listed.len(), 50);
    let listed_ports: BTreeSet<u16> = listed
        .iter()
        .filter_map(|s| s["port"].as_u64())
        .map(|p| p as u16)
        .collect();
    assert_eq!(listed_ports, ports);
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
