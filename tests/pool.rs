//! Pools of prebuilt servers with real code-server: a template's pool fills to its
//! size, a create from the template is handed a running member, and the pool refills;
//! the pool survives a `kill -9` of devbox, hands each member out once under a burst
//! of creates, hands out servers that are what a fresh server of the template is, is
//! remade when the template changes (its claimed servers left alone), and keeps users
//! away from members that are not theirs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Devbox, Options, Reply, STARTUP, wait_for};

const TEMPLATE: &str = "Rust Class";
const TAB: &str = "Workshops";
/// The trusted proxy's identity header, in the tests where users sign in.
use common::trusted_proxy::{HEADER, via_proxy};
/// The admin's name in the tests where users sign in (`auth.admins`).
const BOSS: &str = "boss";
/// The admin token of a devbox the CLI talks to.
const SEAT_TOKEN: &str = "pool-test-admin-token-0123456789";

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
    pool_config_with(size, reference, "[tools]", "")
}

/// The config of a pool of `size` servers of `Rust Class`: the class repository at
/// `reference`, the extension groups `groups` (a YAML list); `more` is YAML appended
/// at the top level (`{root}` in it stands for the devbox's folder, as in the
/// repository's URL).
fn pool_config_with(size: u32, reference: &str, groups: &str, more: &str) -> String {
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
          extensions_groups: {groups}
          github_url: file://{{root}}/class-repo
          github_ref: {reference}
          prebuilt: {size}
{more}"#
    )
}

/// The class repository at `root/class-repo`: `main` holds `README.md` and `main.md`;
/// branches `week-1` and `week-2` hold `README.md` and their own file (`week-1.md`,
/// `week-2.md`), so a workspace shows which ref it was cloned at. The config is
/// pointed at it.
fn class_repo(root: &Path) {
    let dir = root.join("class-repo");
    common::git_repo(&dir, &[("README.md", "# Week 1\n")]);
    let repo = git2::Repository::open(&dir).expect("open the class repository");
    let first = repo
        .head()
        .and_then(|head| head.peel_to_commit())
        .expect("first commit");
    // `main` moves on below: it may not be the checked-out branch meanwhile.
    repo.set_head_detached(first.id()).expect("detach");
    for (branch, file) in [
        ("week-1", "week-1.md"),
        ("week-2", "week-2.md"),
        ("main", "main.md"),
    ] {
        let commit = commit_file(&repo, &first, file);
        repo.branch(branch, &commit, true).expect("branch");
    }
    repo.set_head("refs/heads/main").expect("head");
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .expect("checkout main");
    // The config names the repository (and anything else under the root) by its
    // absolute path.
    let config = root.join("config.yaml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("{root}", &root.display().to_string())).expect("config");
}

/// A commit on top of `parent` that adds `file` (its text is its name), on no branch.
fn commit_file<'r>(
    repo: &'r git2::Repository,
    parent: &git2::Commit<'_>,
    file: &str,
) -> git2::Commit<'r> {
    let blob = repo.blob(file.as_bytes()).expect("blob");
    let mut tree = repo
        .treebuilder(Some(&parent.tree().expect("parent tree")))
        .expect("tree builder");
    tree.insert(file, blob, 0o100644).expect("tree entry");
    let tree = repo
        .find_tree(tree.write().expect("write tree"))
        .expect("tree");
    let signature = git2::Signature::now("Test", "test@example.com").expect("signature");
    let oid = repo
        .commit(None, &signature, &signature, file, &tree, &[parent])
        .expect("commit");
    repo.find_commit(oid).expect("find commit")
}

/// Who calls devbox: the admin over TCP (no token is configured), or a user whom the
/// trusted proxy names on its socket.
#[derive(Clone, Copy)]
struct Client<'a> {
    devbox: &'a Devbox,
    /// The proxy's socket and the user it names.
    via: Option<(&'a Path, &'a str)>,
}

impl<'a> Client<'a> {
    fn admin(devbox: &'a Devbox) -> Self {
        Self { devbox, via: None }
    }

    fn user(devbox: &'a Devbox, socket: &'a Path, user: &'a str) -> Self {
        Self {
            devbox,
            via: Some((socket, user)),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        match self.via {
            Some((socket, user)) => via_proxy(socket, user, method, path, body),
            None => {
                let body = body.map(|b| serde_json::to_vec(b).expect("json"));
                let headers: &[(&str, &str)] = match body {
                    Some(_) => &[("Content-Type", "application/json")],
                    None => &[],
                };
                let body = match (method, &body) {
                    ("POST", None) => Some(&b""[..]),
                    _ => body.as_deref(),
                };
                self.devbox.call(method, path, headers, body)
            }
        }
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None)
    }

    /// The servers `GET /servers` (with `query`) lists for this caller.
    fn servers(&self, query: &str) -> Vec<Value> {
        let reply = self.get(&format!("/servers{query}"));
        assert_eq!(reply.status, 200, "{reply}");
        reply.json().as_array().expect("a list").clone()
    }

    /// `POST /servers/create-from-template` of `Rust Class`, named `name`.
    fn create_from_template(&self, name: &str) -> Reply {
        self.call(
            "POST",
            "/servers/create-from-template",
            Some(&json!({"name": name, "template_id": TEMPLATE, "tab_name": TAB})),
        )
    }
}

/// A devbox with users: the trusted proxy names them on the socket `{root}/proxy.sock`
/// (`boss` is an admin), each may own `quota` servers; `Rust Class` keeps `size`
/// servers of the class repository at `reference`; `more` is YAML at the top level.
/// Returns the devbox and its socket.
fn devbox_with_users(size: u32, reference: &str, quota: u32, more: &str) -> (Devbox, PathBuf) {
    let devbox = Devbox::start_opts(
        Options {
            ports: 12,
            config: pool_config_with(
                size,
                reference,
                "[tools]",
                &format!(
                    "auth:\n  max_servers_per_user: {quota}\n  admins: [{BOSS}]\n  trusted_header:\n    name: {HEADER}\n    socket: '{{root}}/proxy.sock'\n{more}"
                ),
            ),
            ..Options::default()
        },
        class_repo,
    );
    let socket = devbox.path("proxy.sock");
    (devbox, socket)
}

/// `GET /pools`' entry for the template.
fn pool(client: &Client<'_>) -> Value {
    let reply = client.get("/pools");
    assert_eq!(reply.status, 200, "{reply}");
    let pools = reply.json()["data"].clone();
    pools
        .as_array()
        .and_then(|pools| pools.iter().find(|p| p["template"] == TEMPLATE).cloned())
        .unwrap_or_else(|| panic!("no pool of {TEMPLATE} in {pools}"))
}

fn wait_pool_ready(devbox: &Devbox, size: u64) -> Value {
    wait_client_pool_ready(&Client::admin(devbox), size)
}

fn wait_client_pool_ready(client: &Client<'_>, size: u64) -> Value {
    wait_for(
        &format!(
            "the pool to have {size} ready\n{}",
            client.devbox.log_tail()
        ),
        STARTUP * 2,
        || Some(pool(client)).filter(|p| p["ready"] == size && p["size"] == size),
    )
}

/// The unclaimed pool servers, by slug, from `GET /servers?include_pool=true`.
fn members(client: &Client<'_>) -> BTreeMap<String, Value> {
    client
        .servers("?include_pool=true")
        .into_iter()
        .filter(|s| s["pool"] == TEMPLATE)
        .map(|s| (s["slug"].as_str().expect("slug").to_owned(), s))
        .collect()
}

/// Slugs of the unclaimed pool servers.
fn pool_slugs(devbox: &Devbox) -> Vec<String> {
    members(&Client::admin(devbox)).into_keys().collect()
}

fn create_from_template(devbox: &Devbox, name: &str) -> Reply {
    Client::admin(devbox).create_from_template(name)
}

/// The spec files of pool members (named `pool-…`), by name, with their text.
fn pool_spec_files(devbox: &Devbox) -> BTreeMap<String, String> {
    common::list_dir(&devbox.specs())
        .into_iter()
        .filter(|name| name.starts_with("pool-"))
        .map(|name| {
            let text = std::fs::read_to_string(devbox.specs().join(&name)).unwrap_or_default();
            (name, text)
        })
        .collect()
}

/// The files of server `slug`'s workspace, but git's own.
fn workspace_files(devbox: &Devbox, slug: &str) -> Vec<String> {
    common::list_tree(&devbox.state().join("workspaces").join(slug))
        .into_iter()
        .filter(|path| path != ".git" && !path.starts_with(".git/"))
        .collect()
}

/// A code-server that waits, before it starts, for as long as a file `hold` exists in
/// `dir`: starts begun while it exists stay on their way up until the test removes it.
/// With it a test decides when refilled pool servers may become ready.
fn gated_code_server(dir: &Path) -> PathBuf {
    let hold = dir.join("hold");
    common::code_server_wrapper(
        dir,
        &format!("while [ -e '{}' ]; do sleep 0.1; done", hold.display()),
    )
}

/// The value of the metric `name{template="Rust Class"}` in `/metrics`, as `client`
/// reads it.
fn metric(client: &Client<'_>, name: &str) -> Option<f64> {
    let reply = client.get("/metrics");
    assert_eq!(reply.status, 200, "{reply}");
    let text = reply.text;
    let prefix = format!("{name}{{template=\"{TEMPLATE}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
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

/// (id, pid, port) of each unclaimed member, by slug.
fn member_facts(devbox: &Devbox) -> BTreeMap<String, (String, u64, u64)> {
    members(&Client::admin(devbox))
        .into_iter()
        .map(|(slug, s)| {
            let facts = (
                s["id"].as_str().expect("id").to_owned(),
                s["pid"].as_u64().expect("a running member has a pid"),
                s["port"].as_u64().expect("a running member has a port"),
            );
            (slug, facts)
        })
        .collect()
}

#[test]
fn a_pool_survives_a_kill_9_of_devbox() {
    let mut devbox = devbox_with_pool(3, 8);
    let figures = wait_pool_ready(&devbox, 3);
    assert_eq!(figures["tab"], TAB, "{figures}");
    assert_eq!(figures["coming"], 0, "{figures}");
    let before = member_facts(&devbox);
    assert_eq!(before.len(), 3, "{before:?}");
    let files_before = pool_spec_files(&devbox);

    devbox.kill9();
    for (slug, (_, pid, _)) in &before {
        assert!(
            common::pid_alive(*pid as u32),
            "{slug}'s code-server lives on"
        );
    }
    devbox.restart();

    // The same members come back ready: adopted (same processes), same ids and ports.
    wait_pool_ready(&devbox, 3);
    let after = wait_for(
        &format!("the members to be listed running\n{}", devbox.log_tail()),
        STARTUP,
        || {
            let facts = member_facts_if_running(&devbox)?;
            (facts.len() == 3).then_some(facts)
        },
    );
    assert_eq!(
        after, before,
        "adopted as they were, not remade or restarted"
    );
    let ports: BTreeSet<u64> = after.values().map(|(_, _, port)| *port).collect();
    assert_eq!(ports.len(), 3, "no port twice: {after:?}");

    // The keeper adds nothing: over more than one of its rounds (every 5 s, and on
    // each status change) the pool's files stay the three there were, unchanged.
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        assert_eq!(
            pool_spec_files(&devbox),
            files_before,
            "the pool's spec files after the restart\n{}",
            devbox.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(member_facts(&devbox), before);
    let figures = pool(&Client::admin(&devbox));
    assert_eq!(
        (figures["size"].as_u64(), figures["ready"].as_u64()),
        (Some(3), Some(3)),
        "{figures}"
    );
    assert_eq!(
        devbox.log().matches("pool server added").count(),
        3,
        "the keeper wrote the three members before the kill, and none since:\n{}",
        devbox.log()
    );
}

/// [`member_facts`], or `None` while a member has no pid or port yet.
fn member_facts_if_running(devbox: &Devbox) -> Option<BTreeMap<String, (String, u64, u64)>> {
    members(&Client::admin(devbox))
        .into_iter()
        .map(|(slug, s)| {
            Some((
                slug,
                (
                    s["id"].as_str()?.to_owned(),
                    s["pid"].as_u64()?,
                    s["port"].as_u64()?,
                ),
            ))
        })
        .collect()
}

#[test]
fn claims_are_exclusive_under_50_parallel_creates() {
    const SIZE: usize = 10;
    const CREATES: usize = 50;
    let gate = tempfile::tempdir().expect("gate dir");
    // Room for the pool, a fresh server per fallback, and the refills.
    let devbox = Devbox::start_opts(
        Options {
            ports: (SIZE * 2 + CREATES + 6) as u16,
            config: pool_config(SIZE as u32, "main"),
            code_server: Some(gated_code_server(gate.path())),
            ..Options::default()
        },
        class_repo,
    );
    wait_pool_ready(&devbox, SIZE as u64);
    let before = member_facts(&devbox);
    assert_eq!(before.len(), SIZE, "{before:?}");
    // Refills stay on their way up during the burst: exactly the ten members there are
    // can be claimed.
    std::fs::write(gate.path().join("hold"), "").expect("hold the refills");

    let start = std::sync::Barrier::new(CREATES);
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CREATES)
            .map(|n| {
                let (devbox, start) = (&devbox, &start);
                scope.spawn(move || {
                    start.wait();
                    create_from_template(devbox, &format!("seat {n}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a create thread"))
            .collect()
    });

    for reply in &replies {
        assert_eq!(reply.status, 201, "{reply}\n{}", devbox.log_tail());
    }
    let created: Vec<Value> = replies.iter().map(Reply::json).collect();
    let with_status = |status: &str| -> Vec<&Value> {
        created.iter().filter(|s| s["status"] == status).collect()
    };
    let (claimed, fresh) = (with_status("running"), with_status("stopped"));
    assert_eq!(
        (claimed.len(), fresh.len()),
        (SIZE, CREATES - SIZE),
        "ten claims, forty fresh servers: {created:?}"
    );
    let distinct = |field: &str| -> usize {
        created
            .iter()
            .map(|s| s[field].to_string())
            .collect::<BTreeSet<_>>()
            .len()
    };
    for field in ["id", "slug", "port", "name"] {
        assert_eq!(distinct(field), CREATES, "each `{field}` once: {created:?}");
    }
    // The claims are the ten members, each handed out once, each answering at once.
    let claimed_slugs: BTreeSet<String> = claimed
        .iter()
        .map(|s| s["slug"].as_str().expect("slug").to_owned())
        .collect();
    assert_eq!(
        claimed_slugs,
        before.keys().cloned().collect::<BTreeSet<_>>(),
        "the claimed servers are the members there were"
    );
    for seat in &claimed {
        let slug = seat["slug"].as_str().expect("slug");
        let (member_id, pid, port) = &before[slug];
        assert_ne!(
            seat["id"].as_str(),
            Some(member_id.as_str()),
            "a new id: {seat}"
        );
        assert_eq!(
            seat["pid"].as_u64(),
            Some(*pid),
            "the member's process: {seat}"
        );
        assert_eq!(seat["port"].as_u64(), Some(*port), "{seat}");
        let healthz = devbox.get(&format!("/vscode/{port}/healthz"));
        assert_eq!(healthz.status, 200, "{slug}: {healthz}");
        let spec = std::fs::read_to_string(devbox.specs().join(format!("{slug}.yaml")))
            .expect("the claimed spec");
        assert!(
            spec.contains(&format!(
                "display_name: {}",
                seat["name"].as_str().expect("name")
            )),
            "{spec}"
        );
        assert!(!spec.contains("devbox/pool"), "{spec}");
    }
    for seat in &fresh {
        let slug = seat["slug"].as_str().expect("slug");
        assert!(!slug.starts_with("pool-"), "a server of its own: {seat}");
        assert!(seat["pid"].is_null(), "{seat}");
    }
    // Everyone's server is listed once, with the id its create answered.
    let listed: BTreeSet<String> = devbox
        .servers()
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    let answered: BTreeSet<String> = created
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(listed, answered);

    assert_eq!(
        metric(&Client::admin(&devbox), "devbox_pool_claims_total"),
        Some(SIZE as f64)
    );
    assert_eq!(
        metric(&Client::admin(&devbox), "devbox_pool_fallbacks_total"),
        Some((CREATES - SIZE) as f64)
    );
    std::fs::remove_file(gate.path().join("hold")).expect("let the refills start");
}

/// What a server is made of, as its user would find it: its workspace's files, the
/// extensions `GET /servers` reports, its user settings, and the extensions installed
/// in its folder.
#[derive(Debug, PartialEq)]
struct Makeup {
    workspace: Vec<String>,
    extensions: Value,
    settings: Value,
    installed: Vec<String>,
}

fn makeup(devbox: &Devbox, server: &Value) -> Makeup {
    let slug = server["slug"].as_str().expect("slug");
    let folder = devbox.state().join("servers").join(slug);
    let settings = std::fs::read(folder.join("user-data/User/settings.json"))
        .unwrap_or_else(|err| panic!("{slug}'s settings.json: {err}"));
    Makeup {
        workspace: workspace_files(devbox, slug),
        extensions: server["extensions"].clone(),
        settings: serde_json::from_slice(&settings).expect("settings.json is JSON"),
        // Folders of installed extensions (code-server's own bookkeeping files aside).
        installed: common::list_dir(&folder.join("extensions"))
            .into_iter()
            .filter(|name| !name.starts_with('.') && !name.ends_with(".json"))
            .collect(),
    }
}

#[test]
fn a_claimed_server_matches_one_made_fresh() {
    let gate = tempfile::tempdir().expect("gate dir");
    let course = "extension_groups:\n  course:\n    name: Course\n    extensions: [course-tool.vsix]\n    user_settings:\n      files.autoSave: afterDelay\n";
    let devbox = Devbox::start_opts(
        Options {
            ports: 6,
            config: pool_config_with(1, "week-1", "[tools, course]", course),
            code_server: Some(gated_code_server(gate.path())),
            ..Options::default()
        },
        |root| {
            common::write_vsix(
                &root.join("vsix/course-tool.vsix"),
                "devbox-test",
                "course-tool",
            );
            class_repo(root);
        },
    );
    wait_pool_ready(&devbox, 1);
    let member = members(&Client::admin(&devbox))
        .into_values()
        .next()
        .expect("the member");
    // The refill stays on its way up: the second create finds no ready member.
    std::fs::write(gate.path().join("hold"), "").expect("hold the refill");

    let reply = create_from_template(&devbox, "claimed seat");
    assert_eq!(reply.status, 201, "{reply}");
    let claimed = reply.json();
    assert_eq!(claimed["status"], "running", "{claimed}");
    assert_eq!(claimed["slug"], member["slug"], "{claimed}");
    let reply = create_from_template(&devbox, "fresh seat");
    assert_eq!(reply.status, 201, "{reply}");
    let fresh = reply.json();
    assert_eq!(fresh["status"], "stopped", "{fresh}");
    assert_eq!(fresh["slug"], "fresh-seat", "{fresh}");
    std::fs::remove_file(gate.path().join("hold")).expect("release the gate");
    let id = fresh["id"].as_str().expect("id");
    let started = devbox.post(&format!("/servers/{id}/start"));
    assert_eq!(started.status, 200, "{started}\n{}", devbox.log_tail());
    devbox.wait_status("fresh seat", "running");

    // Nothing of the pool shows in the claimed server; it is the create's.
    let claimed_now = devbox.server("claimed seat").expect("listed");
    for view in [&claimed, &claimed_now] {
        assert_eq!(view.get("pool"), None, "{view}");
        assert_eq!(view.get("owner"), None, "the admin's: {view}");
        assert_eq!(view["name"], "claimed seat", "{view}");
        assert_eq!(view["template"], TEMPLATE, "{view}");
    }
    assert_eq!(claimed_now["id"], claimed["id"]);
    assert_ne!(claimed["id"], member["id"], "a new id, not the member's");
    assert_eq!(
        devbox
            .get(&format!("/servers/{}", member["id"].as_str().expect("id")))
            .status,
        404
    );

    // Both are what the template makes: the ref's workspace, the groups' extensions
    // and settings, the same installed extensions.
    let fresh_now = devbox.server("fresh seat").expect("listed");
    let (made_claimed, made_fresh) = (makeup(&devbox, &claimed_now), makeup(&devbox, &fresh_now));
    assert_eq!(
        made_claimed, made_fresh,
        "a claimed server is one made fresh"
    );
    let files = &made_claimed.workspace;
    assert!(files.contains(&"README.md".to_owned()), "{files:?}");
    assert!(
        files.contains(&"week-1.md".to_owned()),
        "the ref's file: {files:?}"
    );
    for other in ["main.md", "week-2.md"] {
        assert!(
            !files.contains(&other.to_owned()),
            "not at the ref: {files:?}"
        );
    }
    assert_eq!(
        made_claimed.settings["editor.tabSize"], 7,
        "{:?}",
        made_claimed.settings
    );
    assert_eq!(
        made_claimed.settings["files.autoSave"], "afterDelay",
        "{:?}",
        made_claimed.settings
    );
    assert!(
        made_claimed
            .installed
            .iter()
            .any(|name| name.starts_with("devbox-test.course-tool")),
        "{made_claimed:?}"
    );
    assert!(
        made_claimed.extensions.to_string().contains("course-tool"),
        "{made_claimed:?}"
    );
}

#[test]
fn a_template_edit_replaces_unclaimed_pool_servers_only() {
    let (mut devbox, socket) =
        devbox_with_users(2, "week-1", 2, "controller:\n  prebuilt_parallelism: 1\n");
    let boss = Client::user(&devbox, &socket, BOSS);
    let alice = Client::user(&devbox, &socket, "alice");
    wait_client_pool_ready(&boss, 2);
    let reply = alice.create_from_template("alice seat");
    assert_eq!(reply.status, 201, "{reply}");
    let seat = reply.json();
    assert_eq!(seat["status"], "running", "{seat}");
    assert_eq!(seat["owner"], "alice", "{seat}");
    let slug = seat["slug"].as_str().expect("slug").to_owned();
    let claimed_file = devbox.specs().join(format!("{slug}.yaml"));
    let claimed_spec = std::fs::read_to_string(&claimed_file).expect("the claimed spec");
    // The pool refills; then devbox goes down hard, its servers running on.
    wait_client_pool_ready(&boss, 2);
    let old = members(&boss);
    assert_eq!(old.len(), 2, "{old:?}");
    for member in old.values() {
        let files = workspace_files(&devbox, member["slug"].as_str().expect("slug"));
        assert!(files.contains(&"week-1.md".to_owned()), "{files:?}");
    }
    devbox.kill9();

    // The template now names another ref.
    let config = devbox.path("config.yaml");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains("github_ref: week-1"), "{text}");
    std::fs::write(
        &config,
        text.replace("github_ref: week-1", "github_ref: week-2"),
    )
    .expect("edit the config");
    devbox.restart();
    let boss = Client::user(&devbox, &socket, BOSS);
    let alice = Client::user(&devbox, &socket, "alice");

    // The old members go, processes and all; new ones are made from the new template.
    let new = wait_for(
        &format!("two new members ready\n{}", devbox.log_tail()),
        STARTUP * 2,
        || {
            let now = members(&boss);
            let fresh = now
                .values()
                .all(|m| m["status"] == "running" && !old.values().any(|o| o["id"] == m["id"]));
            (now.len() == 2 && fresh).then_some(now)
        },
    );
    for member in old.values() {
        let pid = member["pid"].as_u64().expect("pid") as u32;
        wait_for(
            &format!(
                "{} (pid {pid}) to be stopped\n{}",
                member["slug"],
                devbox.log_tail()
            ),
            STARTUP,
            || (!common::pid_alive(pid)).then_some(()),
        );
        // Its spec is gone; the name may serve a new member (whose data starts afresh:
        // the old member's went with it).
        let file = devbox
            .specs()
            .join(format!("{}.yaml", member["slug"].as_str().expect("slug")));
        if let Ok(text) = std::fs::read_to_string(&file) {
            let id = member["id"].as_str().expect("id");
            assert!(
                !text.contains(id),
                "the old member's spec is gone: {}\n{text}",
                file.display()
            );
        }
    }
    for member in new.values() {
        let slug = member["slug"].as_str().expect("slug");
        let files = workspace_files(&devbox, slug);
        assert!(
            files.contains(&"week-2.md".to_owned()) && !files.contains(&"week-1.md".to_owned()),
            "{slug} is made at the new ref: {files:?}"
        );
    }
    assert_eq!(pool(&boss)["ready"], 2);

    // alice's server is hers as it was: same file, id, name, owner.
    let spec = std::fs::read_to_string(&claimed_file).expect("the claimed spec is kept");
    assert_eq!(spec, claimed_spec, "the claimed spec is untouched");
    let listed = alice.servers("");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let mine = &listed[0];
    for field in ["id", "slug", "name", "owner", "port"] {
        assert_eq!(mine[field], seat[field], "{field}: {mine}");
    }
    let mine = wait_for(
        &format!("alice's server to run\n{}", devbox.log_tail()),
        STARTUP,
        || {
            let listed = alice.servers("");
            listed.into_iter().find(|s| s["status"] == "running")
        },
    );
    // It may restart (its spec names the template, whose edit changes what it is made
    // of), but alice's workspace stays as it was: nothing is cloned over her work.
    let files = workspace_files(&devbox, &slug);
    assert!(
        files.contains(&"week-1.md".to_owned()) && !files.contains(&"week-2.md".to_owned()),
        "{files:?}"
    );
    let port = mine["port"].as_u64().expect("port");
    let healthz = alice.get(&format!("/vscode/{port}/healthz"));
    assert_eq!(healthz.status, 200, "{healthz}");
}

#[test]
fn users_claim_only_for_themselves_and_never_see_the_pool() {
    let (devbox, socket) = devbox_with_users(2, "week-1", 1, "");
    let boss = Client::user(&devbox, &socket, BOSS);
    let alice = Client::user(&devbox, &socket, "alice");
    let bob = Client::user(&devbox, &socket, "bob");
    wait_client_pool_ready(&boss, 2);
    let waiting = members(&boss);
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    for member in waiting.values() {
        assert_eq!(member["pool"], TEMPLATE, "{member}");
        assert_eq!(member.get("owner"), None, "{member}");
    }
    assert!(boss.servers("").is_empty(), "hidden unless asked for");

    // Before a claim, no user sees or reaches a pool server, however they ask.
    assert_eq!(pool(&alice)["ready"], 2, "users see the pool's figures");
    for query in ["", "?include_pool=true"] {
        assert_eq!(
            alice.servers(query),
            Vec::<Value>::new(),
            "GET /servers{query}"
        );
    }
    for member in waiting.values() {
        let (slug, id, port) = (
            member["slug"].as_str().expect("slug"),
            member["id"].as_str().expect("id"),
            member["port"].as_u64().expect("port"),
        );
        for path in [
            format!("/servers/{slug}"),
            format!("/servers/{id}"),
            format!("/servers/{slug}/logs"),
            format!("/specs/{slug}"),
            format!("/s/{slug}/healthz"),
            format!("/vscode/{port}/healthz"),
        ] {
            let reply = alice.get(&path);
            assert_eq!(reply.status, 404, "alice GET {path}: {reply}");
        }
        for (method, path) in [
            ("POST", format!("/servers/{slug}/stop")),
            ("DELETE", format!("/servers/{slug}")),
        ] {
            let reply = alice.call(method, &path, None);
            assert_eq!(reply.status, 404, "alice {method} {path}: {reply}");
        }
    }
    assert_eq!(
        members(&boss).len(),
        2,
        "nothing a user did touched the pool"
    );

    // alice's create hands her a member: hers, listed for her, opened by her only.
    let reply = alice.create_from_template("alice seat");
    assert_eq!(reply.status, 201, "{reply}");
    let seat = reply.json();
    assert_eq!(seat["status"], "running", "{seat}");
    assert_eq!(seat["owner"], "alice", "{seat}");
    assert_eq!(seat.get("pool"), None, "{seat}");
    let slug = seat["slug"].as_str().expect("slug").to_owned();
    assert!(waiting.contains_key(&slug), "{slug} is one of {waiting:?}");
    let spec = std::fs::read_to_string(devbox.specs().join(format!("{slug}.yaml"))).expect("spec");
    assert!(spec.contains("owner: alice"), "{spec}");
    let listed = alice.servers("");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], seat["id"]);
    let port = seat["port"].as_u64().expect("port");
    let id = seat["id"].as_str().expect("id");
    for path in [
        format!("/vscode/{port}/healthz"),
        format!("/s/{slug}/healthz"),
    ] {
        let own = alice.get(&path);
        assert_eq!(own.status, 200, "alice GET {path}: {own}");
        let other = bob.get(&path);
        assert_eq!(other.status, 404, "bob GET {path}: {other}");
    }
    for path in [format!("/servers/{id}"), format!("/servers/{slug}")] {
        assert_eq!(bob.get(&path).status, 404, "bob GET {path}");
    }
    assert_eq!(bob.servers("?include_pool=true"), Vec::<Value>::new());

    // At her quota, alice's next create is refused and the pool keeps its members.
    wait_client_pool_ready(&boss, 2);
    let files = pool_spec_files(&devbox);
    let unclaimed: Vec<&String> = files
        .iter()
        .filter(|(_, text)| text.contains("devbox/pool"))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(unclaimed.len(), 2, "{files:?}");
    let refused = alice.create_from_template("alice two");
    refused.assert_error(409, "auth.max_servers_per_user");
    assert_eq!(pool_spec_files(&devbox), files, "no pool spec changed");
    assert!(!devbox.specs().join("alice-two.yaml").exists());
    assert_eq!(pool(&boss)["ready"], 2);
    assert_eq!(alice.servers("").len(), 1);
    assert_eq!(metric(&boss, "devbox_pool_claims_total"), Some(1.0));

    // bob is handed another member, his.
    let reply = bob.create_from_template("bob seat");
    assert_eq!(reply.status, 201, "{reply}");
    let bobs = reply.json();
    assert_eq!(
        (bobs["status"].as_str(), bobs["owner"].as_str()),
        (Some("running"), Some("bob"))
    );
    assert_ne!(bobs["slug"], seat["slug"]);
    assert_eq!(bob.servers("").len(), 1);
    assert_eq!(alice.servers("").len(), 1);
}

#[test]
fn seat_links_for_a_template_hand_out_its_ready_pool_servers() {
    let (devbox, socket) = devbox_with_users(
        2,
        "week-1",
        2,
        &format!("server:\n  api_token: \"{SEAT_TOKEN}\"\n"),
    );
    let boss = Client::user(&devbox, &socket, BOSS);
    wait_client_pool_ready(&boss, 2);
    let output = devbox
        .command()
        .args(["seat-links", "--template", TEMPLATE, "-o", "json"])
        .output()
        .expect("devbox seat-links");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let links: Value = serde_json::from_slice(&output.stdout).expect("json");
    let seated: BTreeSet<&str> = links
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|link| link["server"].as_str())
        .collect();
    let pool_now = members(&boss);
    assert_eq!(seated.len(), 2, "{links}");
    assert!(seated.iter().all(|s| s.starts_with("pool-")), "{links}");
    // Each linked server is its seat's now, out of the pool, and the pool refills.
    for link in links.as_array().expect("array") {
        let name = link["server"].as_str().expect("server");
        assert_eq!(link["owner"], format!("seat-{name}"), "{link}");
        assert!(!pool_now.contains_key(name), "{name} is still in the pool");
    }
    let refilled = wait_client_pool_ready(&boss, 2);
    assert_eq!(refilled["ready"], 2, "{refilled}");
    assert!(members(&boss).keys().all(|m| !seated.contains(m.as_str())));
}

#[test]
fn a_deleted_servers_workspace_never_goes_to_the_next_claimant() {
    let (devbox, socket) = devbox_with_users(1, "week-1", 2, "");
    let boss = Client::user(&devbox, &socket, BOSS);
    wait_client_pool_ready(&boss, 1);
    let claim = |user: &str| -> Value {
        let reply =
            Client::user(&devbox, &socket, user).create_from_template(&format!("{user} seat"));
        assert_eq!(reply.status, 201, "{reply}");
        let seat = reply.json();
        assert_eq!(seat["status"], "running", "{seat}");
        seat
    };

    // alice works in her server, then deletes it.
    let alice = claim("alice");
    let slug = alice["slug"].as_str().expect("slug");
    std::fs::write(
        devbox
            .state()
            .join("workspaces")
            .join(slug)
            .join("alice-notes.md"),
        "alice's own work\n",
    )
    .expect("alice writes in her workspace");
    wait_client_pool_ready(&boss, 1);
    let id = alice["id"].as_str().expect("id");
    let deleted =
        Client::user(&devbox, &socket, "alice").call("DELETE", &format!("/servers/{id}"), None);
    assert_eq!(deleted.status, 200, "{deleted}");

    // Nor does a server bob names after hers, by create or by spec: refused, nothing
    // written, her files where they were.
    let bob = Client::user(&devbox, &socket, "bob");
    let by_create = bob.call("POST", "/servers", Some(&json!({"name": slug})));
    let spec = json!({"apiVersion": "devbox/v1", "kind": "DevServer",
        "metadata": {"name": slug}, "spec": {}});
    let by_spec = bob.call("PUT", &format!("/specs/{slug}"), Some(&spec));
    for reply in [by_create, by_spec] {
        assert_eq!(reply.status, 409, "{reply}");
        assert!(
            reply.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("still kept")),
            "{reply}"
        );
    }
    assert!(!devbox.specs().join(format!("{slug}.yaml")).exists());
    let notes = devbox
        .state()
        .join("workspaces")
        .join(slug)
        .join("alice-notes.md");
    assert_eq!(
        std::fs::read_to_string(notes).ok().as_deref(),
        Some("alice's own work\n")
    );

    // Two claims later, each claimant's workspace is the template's, nobody else's.
    for user in ["bob", "carol"] {
        wait_client_pool_ready(&boss, 1);
        let seat = claim(user);
        let files = workspace_files(&devbox, seat["slug"].as_str().expect("slug"));
        assert_eq!(
            files,
            ["README.md", "week-1.md"],
            "{user}'s workspace ({seat})"
        );
    }
}
