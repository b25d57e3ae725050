//! Pools of prebuilt servers with real code-server: a template's pool fills to its
//! size, a create from the template is handed a running member, and the pool refills.

mod common;

use std::path::Path;

use serde_json::{Value, json};

use common::{Devbox, Options, STARTUP, wait_for};

const TEMPLATE: &str = "Rust Class";
const TAB: &str = "Workshops";

/// A devbox whose template `Rust Class` (a git workspace, the `tools` group) keeps
/// `size` servers ready.
fn devbox_with_pool(size: u32, ports: u16) -> Devbox {
    Devbox::start_opts(
        Options {
            ports,
            config: pool_config(size, "main"),
            ..Options::default()
        },
        class_repo,
    )
}

fn pool_config(size: u32, reference: &str) -> String {
    format!(
        r#"
ui:
  workspace:
    allow_local_git_hosts: true
packaged_assets:
  tabs:
    - name: {TAB}
      items:
        - name: {TEMPLATE}
          extensions_groups: [tools]
          github_url: file://{{root}}/class-repo
          github_ref: {reference}
          prebuilt: {size}
"#
    )
}

fn class_repo(root: &Path) {
    common::git_repo(&root.join("class-repo"), &[("README.md", "# Week 1\n")]);
    // The config names the repository by its absolute path.
    let config = root.join("config.yaml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("{root}", &root.display().to_string())).expect("config");
}

/// `GET /pools`' entry for the template.
fn pool(devbox: &Devbox) -> Value {
    let reply = devbox.get("/pools");
    assert_eq!(reply.status, 200, "{reply}");
    let pools = reply.json()["data"].clone();
    pools
        .as_array()
        .and_then(|pools| pools.iter().find(|p| p["template"] == TEMPLATE).cloned())
        .unwrap_or_else(|| panic!("no pool of {TEMPLATE} in {pools}"))
}

fn wait_pool_ready(devbox: &Devbox, size: u64) -> Value {
    wait_for(
        &format!("the pool to have {size} ready\n{}", devbox.log_tail()),
        STARTUP * 2,
        || Some(pool(devbox)).filter(|p| p["ready"] == size && p["size"] == size),
    )
}

/// Slugs of the unclaimed pool servers, from `GET /servers?include_pool=true`.
fn pool_slugs(devbox: &Devbox) -> Vec<String> {
    let mut slugs: Vec<String> = devbox
        .get("/servers?include_pool=true")
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .filter(|s| s["pool"] == TEMPLATE)
        .filter_map(|s| s["slug"].as_str().map(str::to_owned))
        .collect();
    slugs.sort();
    slugs
}

fn create_from_template(devbox: &Devbox, name: &str) -> common::Reply {
    devbox.post_json(
        "/servers/create-from-template",
        &json!({"name": name, "template_id": TEMPLATE, "tab_name": TAB}),
    )
}

#[test]
fn a_pool_fills_hands_out_a_running_server_and_refills() {
    let devbox = devbox_with_pool(2, 6);
    wait_pool_ready(&devbox, 2);
    assert!(
        devbox.servers().is_empty(),
        "pool servers are listed only when asked for: {:?}",
        devbox.servers()
    );
    let members = pool_slugs(&devbox);
    assert_eq!(members, ["pool-rust-class-1", "pool-rust-class-2"]);

    let reply = create_from_template(&devbox, "alice seat");
    assert_eq!(reply.status, 201, "{reply}");
    let seat = reply.json();
    assert_eq!(seat["status"], "running", "{seat}");
    assert_eq!(seat["name"], "alice seat");
    assert_eq!(seat["template"], TEMPLATE);
    let slug = seat["slug"].as_str().expect("slug").to_owned();
    assert!(members.contains(&slug), "{slug} is one of {members:?}");
    // Its IDE answers through devbox at once.
    let port = seat["port"].as_u64().expect("port");
    let healthz = devbox.get(&format!("/vscode/{port}/healthz"));
    assert_eq!(healthz.status, 200, "{healthz}");
    // It is an ordinary server now: listed, with the id the create answered, its spec
    // file without the pool's label.
    let listed = devbox.servers();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], seat["id"]);
    let spec = std::fs::read_to_string(devbox.specs().join(format!("{slug}.yaml"))).expect("spec");
    assert!(!spec.contains("devbox/pool"), "{spec}");
    assert!(spec.contains(seat["id"].as_str().expect("id")), "{spec}");
    assert!(spec.contains("display_name: alice seat"), "{spec}");

    // The pool refills with a new member; the claimed server is not disturbed.
    wait_pool_ready(&devbox, 2);
    let refilled = pool_slugs(&devbox);
    assert_eq!(refilled.len(), 2, "{refilled:?}");
    assert!(!refilled.contains(&slug), "{refilled:?}");
    assert!(
        refilled.contains(&"pool-rust-class-3".to_owned()),
        "{refilled:?}"
    );
    let after = devbox.server("alice seat").expect("the claimed server");
    assert_eq!(after["pid"], seat["pid"], "never restarted: {after}");

    let metrics = devbox.get("/metrics").text;
    for line in [
        "devbox_pool_claims_total{template=\"Rust Class\"} 1",
        "devbox_pool_size{template=\"Rust Class\"} 2",
        "devbox_pool_ready{template=\"Rust Class\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}
