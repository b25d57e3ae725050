//! `isolation.run_as: owner` (devbox as root, which is how tests run): each owner's
//! instances run under a Unix user of their own, and a process of one owner's user
//! reaches nothing of another owner's instance (workspace, socket) nor devbox's state,
//! while it still uses everything of its own (its workspace, its git history hard-linked
//! from devbox's mirror, its IDE through devbox).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::cgroups::{cgroup_dirs, cgroup_file, processes_with, procs_of};
use common::users::{ids_of, run_as, runnable_by_others, shared_dir};
use common::{
    Devbox, Options, STARTUP, code_server, devbox_bin, free_ports, git_repo, wait_for, write_vsix,
};

fn succeeds(output: &Output) -> bool {
    output.status.success()
}

/// `uid` of process `pid`, from `/proc`.
fn uid_of(pid: u32) -> u32 {
    std::fs::metadata(format!("/proc/{pid}"))
        .expect("process alive")
        .uid()
}

fn owned_spec(name: &str, owner: &str, workspace: &str) -> String {
    format!(
        "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\n  owner: {owner}\nspec:\n  state: running\n{workspace}"
    )
}

#[test]
fn each_owner_runs_as_a_user_of_its_own_and_reaches_nothing_of_the_other() {
    let code_server = runnable_by_others(&code_server(), 2);
    let devbox = Devbox::start_opts(
        Options {
            code_server: Some(code_server),
            config: "isolation:\n  run_as: owner\n".into(),
            ..Options::default()
        },
        |root| {
            // The state dir is in the test's root: its users pass through it.
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711)).expect("chmod");
            git_repo(&root.join("repo"), &[("README.md", "alice's project\n")]);
            write_vsix(&root.join("vsix/local-tool.vsix"), "acme", "local-tool");
        },
    );
    let repo = format!("file://{}", devbox.path("repo").display());
    devbox.write_spec_text(
        "alice-ws.yaml",
        &owned_spec(
            "alice-ws",
            "iso-alice",
            &format!("  workspace: {{git: {{url: '{repo}', ref: main}}}}\n  extensions: [local-tool.vsix]\n"),
        ),
    );
    devbox.write_spec_text("bob-ws.yaml", &owned_spec("bob-ws", "iso-bob", ""));
    let (alice_pid, alice_port) = devbox.wait_running("alice-ws");
    let (bob_pid, _) = devbox.wait_running("bob-ws");

    // Two users of their own, neither root.
    let alice = ids_of("devbox-iso-alice");
    let bob = ids_of("devbox-iso-bob");
    assert_ne!(alice.0, bob.0);
    assert_eq!(
        uid_of(alice_pid),
        alice.0,
        "alice's instance runs as her user"
    );
    assert_eq!(uid_of(bob_pid), bob.0, "bob's instance runs as his user");
    assert!(alice.0 != 0 && bob.0 != 0);

    // What alice's user may do: read her workspace and its history (objects
    // hard-linked from devbox's mirror), open her own instance's socket.
    let state = devbox.state();
    let alice_ws = state.join("workspaces/alice-ws");
    let bob_ws = state.join("workspaces/bob-ws");
    let readme = alice_ws.join("README.md");
    let own = run_as(alice, "cat", &[&readme.to_string_lossy()]);
    assert!(succeeds(&own), "{own:?}");
    assert_eq!(String::from_utf8_lossy(&own.stdout), "alice's project\n");
    let log = run_as(
        alice,
        "git",
        &[
            "-c",
            "safe.directory=*",
            "-C",
            &alice_ws.to_string_lossy(),
            "log",
            "--oneline",
        ],
    );
    assert!(succeeds(&log), "git log as alice: {log:?}");
    let socket = |name: &str| -> String {
        devbox.status(name).expect("status")["instance"]["socket"]
            .as_str()
            .expect("socket")
            .to_owned()
    };
    let curl = |ids, socket: &str| {
        run_as(
            ids,
            "curl",
            &[
                "-sf",
                "--max-time",
                "5",
                "--unix-socket",
                socket,
                "http://x/healthz",
            ],
        )
    };
    assert!(
        succeeds(&curl(alice, &socket("alice-ws"))),
        "alice opens her own instance"
    );
    // Her extension, copied from devbox's cache, is hers to read.
    let extensions = state.join("servers/alice-ws/extensions");
    let listed = run_as(alice, "ls", &[&extensions.to_string_lossy()]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("acme.local-tool"),
        "{listed:?}\n{}",
        devbox.log_tail()
    );
    let manifest = run_as(
        alice,
        "sh",
        &[
            "-c",
            &format!(
                "cat '{}'/acme.local-tool*/package.json",
                extensions.display()
            ),
        ],
    );
    assert!(succeeds(&manifest), "{manifest:?}");

    // What it may not: bob's workspace and socket, devbox's state.
    let bob_file = bob_ws.join("notes.txt");
    std::fs::write(&bob_file, "bob's notes").expect("write");
    for (what, output) in [
        (
            "list bob's workspace",
            run_as(alice, "ls", &[&bob_ws.to_string_lossy()]),
        ),
        (
            "read bob's file",
            run_as(alice, "cat", &[&bob_file.to_string_lossy()]),
        ),
        ("open bob's socket", curl(alice, &socket("bob-ws"))),
        (
            "read bob's settings",
            run_as(
                alice,
                "ls",
                &[&state.join("servers/bob-ws/user-data").to_string_lossy()],
            ),
        ),
        (
            "list the state dir",
            run_as(alice, "ls", &[&state.to_string_lossy()]),
        ),
        (
            "read her own status file",
            run_as(
                alice,
                "cat",
                &[&state.join("servers/alice-ws/status.json").to_string_lossy()],
            ),
        ),
        (
            "read her own devbox log",
            run_as(
                alice,
                "cat",
                &[&state
                    .join("servers/alice-ws/code-server.log")
                    .to_string_lossy()],
            ),
        ),
        (
            "list the extension cache",
            run_as(
                alice,
                "ls",
                &[&state.join("extension-cache").to_string_lossy()],
            ),
        ),
        (
            "list the git mirrors",
            run_as(alice, "ls", &[&state.join("git-mirrors").to_string_lossy()]),
        ),
        (
            "list alice's extensions as bob",
            run_as(bob, "ls", &[&extensions.to_string_lossy()]),
        ),
        (
            "write into bob's workspace",
            run_as(alice, "touch", &[&bob_ws.join("planted").to_string_lossy()]),
        ),
    ] {
        assert!(!succeeds(&output), "alice's user could {what}: {output:?}");
    }
    assert!(!bob_ws.join("planted").exists());
    // The mirror's objects in her workspace are shared: she reads them, never writes.
    let objects = alice_ws.join(".git/objects");
    let shared = walk_files(&objects)
        .into_iter()
        .find(|file| std::fs::metadata(file).is_ok_and(|m| m.nlink() > 1))
        .expect("a hard-linked object");
    assert_eq!(
        std::fs::metadata(&shared).expect("stat").uid(),
        0,
        "shared objects stay devbox's"
    );
    let append = run_as(
        alice,
        "sh",
        &["-c", &format!("echo x >> '{}'", shared.display())],
    );
    assert!(
        !succeeds(&append),
        "alice's user wrote into a shared object"
    );

    // Her IDE answers through devbox, as ever.
    let through = devbox.get(&format!("/vscode/{alice_port}/healthz"));
    assert_eq!(through.status, 200, "{}", devbox.log_tail());

    // A restart gives the folders back and forth again; nothing of hers is lost.
    devbox.write_spec_text(
        "alice-ws.yaml",
        &owned_spec(
            "alice-ws",
            "iso-alice",
            &format!("  workspace: {{git: {{url: '{repo}', ref: main}}}}\n  extensions: [local-tool.vsix]\n  env: {{RESTARTED: '1'}}\n"),
        ),
    );
    let own_file = alice_ws.join("mine.txt");
    let wrote = run_as(
        alice,
        "sh",
        &["-c", &format!("echo kept > '{}'", own_file.display())],
    );
    assert!(succeeds(&wrote), "{wrote:?}");
    wait_for("alice-ws restarted", STARTUP, || {
        devbox
            .server("alice-ws")
            .filter(|s| s["status"] == "running" && s["pid"].as_u64() != Some(u64::from(alice_pid)))
    });
    assert_eq!(std::fs::read_to_string(&own_file).expect("kept"), "kept\n");
    assert_eq!(std::fs::metadata(&own_file).expect("stat").uid(), alice.0);
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn an_owners_instance_is_limited_and_stopped_whole_by_its_cgroup() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fake = runnable_by_others(&fixtures.join("fake_code_server.py"), 1);
    let wrapper_dir = tempfile::Builder::new()
        .prefix("wrapper-")
        .tempdir_in(shared_dir())
        .expect("tempdir");
    std::fs::set_permissions(wrapper_dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    // Like a terminal that daemonized: its own session and an empty environment, so
    // only the cgroup still finds it.
    let needle = format!("sleep 7332.{}", std::process::id());
    let wrapper = wrapper_dir.path().join("code-server");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nsetsid env -i {needle} >/dev/null 2>&1 &\nexec '{}' \"$@\"\n",
            fake.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let devbox = Devbox::start_opts(
        Options {
            code_server: Some(wrapper),
            config: "isolation:\n  run_as: owner\n".into(),
            ..Options::default()
        },
        |root| {
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        },
    );
    devbox.write_spec_text(
        "fenced.yaml",
        &owned_spec(
            "fenced",
            "iso-carol",
            "  resources: {memory: 256MiB, pids: 512}\n",
        ),
    );
    let (pid, _) = devbox.wait_running("fenced");
    let carol = ids_of("devbox-iso-carol");
    assert_eq!(uid_of(pid), carol.0);
    let escaped = wait_for("the escaped process", STARTUP, || {
        processes_with(&needle).first().copied()
    });
    assert_eq!(
        uid_of(escaped),
        carol.0,
        "the terminal runs as carol's user too"
    );
    let dirs = cgroup_dirs(&devbox, "fenced");
    let memory_file = if dirs[0].0.is_empty() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(
        cgroup_file(&dirs, "memory", memory_file),
        (256u64 << 20).to_string()
    );
    for (controller, dir) in &dirs {
        let procs = procs_of(dir);
        assert!(
            procs.contains(&pid) && procs.contains(&escaped),
            "{controller}: {procs:?} lacks {pid} or {escaped}"
        );
    }
    devbox.write_spec_text(
        "fenced.yaml",
        &owned_spec("fenced", "iso-carol", "  state: stopped\n").replace("  state: running\n", ""),
    );
    devbox.wait_status("fenced", "stopped");
    assert!(
        processes_with(&needle).is_empty(),
        "a process of carol's cgroup survived the stop"
    );

    devbox.write_spec_text(
        "hog.yaml",
        &owned_spec(
            "hog",
            "iso-carol",
            "  restart_policy: never\n  env: {FAKE_ALLOCATE_MB: '512'}\n  resources: {memory: 64MiB}\n",
        ),
    );
    let failed = wait_for(
        &format!("hog to fail for memory\n{}", devbox.log_tail()),
        STARTUP,
        || devbox.server("hog").filter(|s| s["phase"] == "failed"),
    );
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("out of memory (limit 64 MiB)"),
        "{failed}\n{}",
        devbox.log_tail()
    );
}

#[test]
fn devbox_not_root_refuses_run_as_owner_and_says_why() {
    let nobody = ids_of("nobody");
    let devbox = runnable_by_others(&devbox_bin(), 0);
    let root = tempfile::Builder::new()
        .prefix("not-root-")
        .tempdir_in(shared_dir())
        .expect("tempdir");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for dir in ["specs", "state"] {
        let dir = root.path().join(dir);
        std::fs::create_dir(&dir).expect("mkdir");
        nix::unistd::chown(
            &dir,
            Some(nix::unistd::Uid::from_raw(nobody.0)),
            Some(nix::unistd::Gid::from_raw(nobody.1)),
        )
        .expect("chown");
    }
    let config = root.path().join("devbox.yaml");
    std::fs::write(&config, "isolation:\n  run_as: owner\n").expect("write config");
    std::fs::write(
        root.path().join("specs/ws.yaml"),
        "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: ws\nspec:\n  state: running\n",
    )
    .expect("write spec");
    let port = free_ports(1).to_string();
    let output = run_as(
        nobody,
        &devbox.to_string_lossy(),
        &[
            "--config",
            &config.to_string_lossy(),
            "--specs",
            &root.path().join("specs").to_string_lossy(),
            "--state-dir",
            &root.path().join("state").to_string_lossy(),
            "serve",
            "--port",
            &port,
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "devbox ran: {stderr}");
    assert!(
        stderr.contains("isolation.run_as: owner needs devbox to run as root"),
        "{stderr}"
    );
    assert!(
        !root.path().join("state/servers/ws").exists(),
        "no server was started"
    );
}

/// A template's pool servers run as the admin's user while they wait; the one a
/// participant claims starts again as the participant's own user (a claim never leaves
/// a participant's IDE running as a user other servers share), and one a seat link is
/// made for leaves the pool for its seat's user in the same way.
#[test]
fn a_claimed_pool_server_runs_as_its_owners_user() {
    const TOKEN: &str = "iso-pool-T0ken";
    let code_server = runnable_by_others(&code_server(), 2);
    let devbox = Devbox::start_opts(
        Options {
            code_server: Some(code_server),
            config: format!(
                "isolation:\n  run_as: owner\nserver:\n  api_token: {TOKEN}\n\
                 packaged_assets:\n  tabs:\n    - name: Class\n      items:\n        \
                 - {{name: Lab, extensions_groups: [tools], prebuilt: 2}}\n"
            ),
            ..Options::default()
        },
        |root| {
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        },
    );
    // A participant, signed in through the seat link of a server of their own.
    devbox.write_spec_text("carol-ws.yaml", &owned_spec("carol-ws", "iso-carol", ""));
    let (path, _) = common::seats::seat_link(&devbox, TOKEN, "carol-ws");
    let carol = common::seats::open_seat(&devbox, &path, "carol-ws");
    let bearer = format!("Bearer {TOKEN}");
    let admin_get = |path: &str| {
        devbox
            .call("GET", path, &[("Authorization", bearer.as_str())], None)
            .json()
    };
    let ready_members = || -> Option<Vec<serde_json::Value>> {
        let members: Vec<_> = admin_get("/servers?include_pool=true")
            .as_array()?
            .iter()
            .filter(|s| s["pool"] == "Lab" && s["status"] == "running")
            .cloned()
            .collect();
        (members.len() == 2).then_some(members)
    };
    let members = wait_for(
        &format!("two ready pool servers\n{}", devbox.log_tail()),
        STARTUP * 2,
        ready_members,
    );
    let admins_user = ids_of("devbox");
    for member in &members {
        let pid = member["pid"].as_u64().expect("pid") as u32;
        assert_eq!(
            uid_of(pid),
            admins_user.0,
            "a waiting pool server: {member}"
        );
    }

    let reply = carol.call(
        "POST",
        "/servers/create-from-template",
        Some(&serde_json::json!({"name": "carol lab", "template_id": "Lab", "tab_name": "Class"})),
    );
    assert_eq!(reply.status, 201, "{reply}");
    let seat = reply.json();
    assert_eq!(seat["status"], "running", "{seat}");
    assert_eq!(seat["owner"], "iso-carol");
    let slug = seat["slug"].as_str().expect("slug");
    let before = members
        .iter()
        .find(|m| m["slug"] == slug)
        .expect("a member was claimed");
    let old_pid = before["pid"].as_u64().expect("pid") as u32;
    let new_pid = seat["pid"].as_u64().expect("pid") as u32;
    let carols_user = ids_of("devbox-iso-carol");
    assert_eq!(
        uid_of(new_pid),
        carols_user.0,
        "the claimed IDE is carol's user's"
    );
    assert!(
        !common::pid_alive(old_pid),
        "the admin user's instance is gone"
    );
    let workspace = devbox.state().join("workspaces").join(slug);
    assert_eq!(
        std::fs::metadata(&workspace).expect("workspace").uid(),
        carols_user.0,
        "her workspace is hers"
    );
    let own = carol.call("GET", &format!("/vscode/{}/healthz", seat["port"]), None);
    assert_eq!(own.status, 200, "{own}");

    // A seat link for the other (refilled pool aside) takes it out of the pool too.
    let other = members
        .iter()
        .find(|m| m["slug"] != slug)
        .expect("the other member");
    let other_slug = other["slug"].as_str().expect("slug");
    let (_, answer) = common::seats::seat_link(&devbox, TOKEN, other_slug);
    let seat_user = answer["owner"].as_str().expect("owner").to_owned();
    let seated = wait_for(
        &format!(
            "{other_slug} to run as its seat's user\n{}",
            devbox.log_tail()
        ),
        STARTUP,
        || {
            let view = admin_get(&format!("/servers/{other_slug}"));
            let pid = view["pid"].as_u64()? as u32;
            let uid = std::fs::metadata(format!("/proc/{pid}")).ok()?.uid();
            (view["status"] == "running" && view.get("pool").is_none() && uid != admins_user.0)
                .then_some(pid)
        },
    );
    assert_eq!(uid_of(seated), ids_of(&format!("devbox-{seat_user}")).0);

    // Any unowned server given to a seat in this way starts again as the seat's user:
    // the admin's user runs every unowned instance, and a participant's IDE must not.
    devbox.write_spec_text(
        "open-lab.yaml",
        "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: open-lab\nspec:\n  state: running\n",
    );
    let admins_pid = wait_for(
        &format!("open-lab to run\n{}", devbox.log_tail()),
        STARTUP,
        || {
            let view = admin_get("/servers/open-lab");
            (view["status"] == "running")
                .then(|| view["pid"].as_u64())
                .flatten()
        },
    ) as u32;
    assert_eq!(uid_of(admins_pid), admins_user.0);
    let (_, answer) = common::seats::seat_link(&devbox, TOKEN, "open-lab");
    assert_eq!(answer["owner"], "seat-open-lab");
    let seats_pid = wait_for(
        &format!("open-lab to run as its seat's user\n{}", devbox.log_tail()),
        STARTUP,
        || {
            let view = admin_get("/servers/open-lab");
            let pid = view["pid"].as_u64()? as u32;
            (view["status"] == "running" && pid != admins_pid).then_some(pid)
        },
    );
    assert_eq!(uid_of(seats_pid), ids_of("devbox-seat-open-lab").0);
    assert!(
        !common::pid_alive(admins_pid),
        "nothing of it runs as the admin's user"
    );
}
