//! `isolation.run_as: owner` attacked from inside: a shell running as one owner's Unix
//! user (a terminal in their IDE, or in a second server of the same owner) plants
//! symbolic links, FIFOs and hard links in the folders devbox hands it, then has one
//! of its servers restarted, so that devbox (root) takes the folders back, provisions
//! into them and hands them over again. Every plant here is made as the owner's uid,
//! never by the test as root.
//!
//! A test that fails shows a hole (its message starts with `HOLE:` and names it); a
//! test that passes shows an attack refused, and that nothing happened.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::users::{code_server_for_others, ids_of, shell_as};
use crate::common::{Devbox, Options, STARTUP, wait_for, write_vsix};

const ALICE: &str = "atk-alice";
const BOB: &str = "atk-bob";

/// devbox as root with `isolation.run_as: owner`; `prepare` writes into its root first.
fn isolated(prepare: impl FnOnce(&Path)) -> Devbox {
    Devbox::start_opts(
        Options {
            code_server: Some(code_server_for_others()),
            config: "isolation:\n  run_as: owner\n".into(),
            ..Options::default()
        },
        |root| {
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711)).expect("chmod");
            prepare(root);
        },
    )
}

/// The ids of the user devbox created for `owner`.
fn user_of(owner: &str) -> (u32, u32) {
    ids_of(&format!("devbox-{owner}"))
}

/// [`shell_as`], which must succeed.
fn plant(ids: (u32, u32), script: &str) {
    let output = shell_as(ids, script);
    assert!(
        output.status.success(),
        "the owner's shell could not run `{script}`: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn owned_spec(name: &str, owner: &str, body: &str) -> String {
    format!(
        "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\n  owner: {owner}\nspec:\n  state: running\n{body}"
    )
}

fn write_owned(devbox: &Devbox, name: &str, owner: &str, body: &str) {
    devbox.write_spec_text(&format!("{name}.yaml"), &owned_spec(name, owner, body));
}

/// Restarts `name` (a new `env` in its spec) and waits until it runs again (as
/// another process) or has failed; returns its `GET /servers` entry.
fn restart(devbox: &Devbox, name: &str, owner: &str, body: &str) -> Value {
    let before = devbox.server(name).and_then(|s| s["pid"].as_u64());
    write_owned(
        devbox,
        name,
        owner,
        &format!("{body}  env: {{ATTACK_ROUND: '{}'}}\n", before.unwrap_or(0)),
    );
    wait_for(
        &format!("{name} to restart\n{}", devbox.log_tail()),
        STARTUP,
        || {
            devbox.server(name).filter(|s| {
                (s["status"] == "running" && s["pid"].as_u64() != before) || s["phase"] == "failed"
            })
        },
    )
}

/// A folder only root may enter, in the test's root, holding `file` with `text`.
fn root_only_file(devbox: &Devbox, file: &str, text: &str) -> PathBuf {
    let dir = devbox.path("root-only");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

fn user_dir(devbox: &Devbox, server: &str) -> PathBuf {
    devbox
        .state()
        .join("servers")
        .join(server)
        .join("user-data/User")
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// Hole: `apply_user_settings` reads `User/settings.json` by path, following a link
/// the owner planted, and `fs::copy`s what it read into `settings.json.bak` when it is
/// not JSON; the backup (root's, one link) is then handed over to the owner.
#[test]
fn a_linked_settings_file_is_copied_to_a_backup_the_owner_reads() {
    let devbox = isolated(|_| {});
    write_owned(&devbox, "alice-ws", ALICE, "");
    devbox.wait_running("alice-ws");
    let alice = user_of(ALICE);
    let secret = root_only_file(&devbox, "shadow", "ROOT-ONLY-SECRET\n");
    let tried = shell_as(alice, &format!("cat {}", quoted(&secret)));
    assert!(!tried.status.success(), "the premise: alice cannot read it");

    let user = user_dir(&devbox, "alice-ws");
    plant(
        alice,
        &format!(
            "ln -sfn {} {}",
            quoted(&secret),
            quoted(&user.join("settings.json"))
        ),
    );
    restart(&devbox, "alice-ws", ALICE, "");

    let read = shell_as(
        alice,
        &format!(
            "cat {} 2>/dev/null",
            quoted(&user.join("settings.json.bak"))
        ),
    );
    let leaked = String::from_utf8_lossy(&read.stdout);
    assert!(
        !leaked.contains("ROOT-ONLY-SECRET"),
        "HOLE: settings.json linked to a root-only file: devbox copied the file into \
         settings.json.bak and handed it to alice, who read: {leaked:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).expect("secret"),
        "ROOT-ONLY-SECRET\n"
    );
}

/// Hole: the backup is written with `fs::copy`, which opens `settings.json.bak` by path
/// with `O_CREAT|O_TRUNC` and follows a link there: root overwrites any file with bytes
/// of the owner's choosing (a cron file, `authorized_keys`, `/etc/passwd`).
#[test]
fn a_linked_settings_backup_makes_devbox_overwrite_a_root_file() {
    let devbox = isolated(|_| {});
    write_owned(&devbox, "alice-ws", ALICE, "");
    devbox.wait_running("alice-ws");
    let alice = user_of(ALICE);
    let target = root_only_file(&devbox, "crontab", "root's own file\n");

    let user = user_dir(&devbox, "alice-ws");
    plant(
        alice,
        &format!(
            "rm -f {settings} && printf '* * * * * root ATTACKER-BYTES\\n' > {settings} && ln -sfn {target} {backup}",
            settings = quoted(&user.join("settings.json")),
            target = quoted(&target),
            backup = quoted(&user.join("settings.json.bak")),
        ),
    );
    restart(&devbox, "alice-ws", ALICE, "");

    let now = std::fs::read_to_string(&target).expect("target");
    assert_eq!(
        now, "root's own file\n",
        "HOLE: settings.json.bak linked to a root-only file: devbox (root) overwrote the file \
         with the bytes alice put in settings.json"
    );
    assert_eq!(std::fs::metadata(&target).expect("stat").uid(), 0);
}

/// Hole: `apply_user_settings` works under `user-data/User` by path; the owner replaced
/// `User` (a folder of theirs, below the one devbox took back) with a link to another
/// owner's, and devbox (root) rewrote that owner's settings with this spec's.
#[test]
fn a_linked_user_folder_makes_devbox_write_another_owners_settings() {
    let devbox = isolated(|_| {});
    write_owned(&devbox, "bob-ws", BOB, "");
    let alice_body = "  user_settings: {attack.marker: written-for-alice}\n";
    write_owned(&devbox, "alice-ws", ALICE, alice_body);
    devbox.wait_running("bob-ws");
    devbox.wait_running("alice-ws");
    let alice = user_of(ALICE);
    let bob_user = user_dir(&devbox, "bob-ws");
    assert!(bob_user.is_dir(), "bob's User folder");
    let tried = shell_as(alice, &format!("ls {}", quoted(&bob_user)));
    assert!(
        !tried.status.success(),
        "the premise: alice cannot enter it"
    );

    let alice_user = user_dir(&devbox, "alice-ws");
    plant(
        alice,
        &format!(
            "rm -rf {mine} && ln -s {bobs} {mine}",
            mine = quoted(&alice_user),
            bobs = quoted(&bob_user)
        ),
    );
    restart(&devbox, "alice-ws", ALICE, alice_body);

    let bobs = std::fs::read_to_string(bob_user.join("settings.json")).unwrap_or_default();
    assert!(
        !bobs.contains("attack.marker"),
        "HOLE: alice's user-data/User linked to bob's: devbox (root) wrote alice's settings \
         into bob's settings.json: {bobs}"
    );
}

/// Hole: devbox connects to an instance's socket by path, as root, and the socket's
/// folder is the owner's: the owner renames a link over its own socket, and devbox's
/// health checks and proxy follow it to a socket the owner cannot open (another owner's
/// IDE here; any root-only socket, such as a container engine's, alike).
#[test]
fn a_linked_socket_makes_devbox_proxy_the_owner_into_another_owners_ide() {
    let devbox = isolated(|_| {});
    write_owned(&devbox, "bob-ws", BOB, "");
    write_owned(&devbox, "alice-ws", ALICE, "");
    devbox.wait_running("bob-ws");
    let (_, alice_port) = devbox.wait_running("alice-ws");
    let alice = user_of(ALICE);
    let socket = |name: &str| -> PathBuf {
        PathBuf::from(
            devbox.status(name).expect("status")["instance"]["socket"]
                .as_str()
                .expect("socket"),
        )
    };
    let (alice_socket, bob_socket) = (socket("alice-ws"), socket("bob-ws"));
    let tried = shell_as(
        alice,
        &format!(
            "curl -sf --max-time 5 --unix-socket {} http://x/healthz",
            quoted(&bob_socket)
        ),
    );
    assert!(
        !tried.status.success(),
        "the premise: alice cannot open bob's socket"
    );
    // What only bob's code-server can read; its resource door serves any such file.
    let notes = devbox.state().join("workspaces/bob-ws/notes.txt");
    std::fs::write(&notes, "BOB-PRIVATE-NOTES\n").expect("write");
    std::fs::set_permissions(&notes, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let resource = format!("vscode-remote-resource?path={}", notes.display());
    // Asked of alice's instance straight, as alice: devbox's proxy keeps idle
    // connections, and one to her instance opened now would outlive the swap below.
    let before = shell_as(
        alice,
        &format!(
            "curl -s --max-time 5 --unix-socket {} 'http://x/{resource}'",
            quoted(&alice_socket)
        ),
    );
    assert!(
        !String::from_utf8_lossy(&before.stdout).contains("BOB-PRIVATE-NOTES"),
        "the premise: alice's own instance cannot read bob's notes"
    );

    let swap = alice_socket.with_file_name(".swap");
    plant(
        alice,
        &format!(
            "ln -sfn {bob} {swap} && mv -f {swap} {mine}",
            bob = quoted(&bob_socket),
            swap = quoted(&swap),
            mine = quoted(&alice_socket)
        ),
    );
    let after = devbox.get(&format!("/vscode/{alice_port}/{resource}"));
    assert!(
        !after.text.contains("BOB-PRIVATE-NOTES"),
        "HOLE: alice's socket replaced by a link to bob's: devbox (root) followed it, and \
         alice's own IDE route served bob's private file: {} {}",
        after.status,
        after.text
    );
}

/// Hole: devbox (root) opens `User/settings.json` for reading by path, without
/// `O_NONBLOCK` nor a check of what it is: a FIFO there blocks the start (a blocking
/// thread of devbox's) for as long as the owner keeps its other end closed, and feeds
/// devbox whatever the owner writes (a link to `/dev/zero` reads without end).
#[test]
fn a_fifo_as_settings_file_blocks_devbox_until_the_owner_writes() {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;

    let devbox = isolated(|_| {});
    write_owned(&devbox, "alice-ws", ALICE, "");
    let (pid, _) = devbox.wait_running("alice-ws");
    let alice = user_of(ALICE);
    let fifo = user_dir(&devbox, "alice-ws").join("settings.json");
    plant(
        alice,
        &format!("rm -f {fifo} && mkfifo {fifo}", fifo = quoted(&fifo)),
    );
    write_owned(
        &devbox,
        "alice-ws",
        ALICE,
        "  env: {ATTACK_ROUND: 'fifo'}\n",
    );

    // A writer's non-blocking open succeeds only while someone holds the FIFO open
    // for reading (or waits in open(2) to): that is devbox.
    let mut reader_seen = false;
    wait_for(
        &format!("alice-ws to restart\n{}", devbox.log_tail()),
        STARTUP,
        || {
            if !reader_seen
                && let Ok(fd) = open(&fifo, OFlag::O_WRONLY | OFlag::O_NONBLOCK, Mode::empty())
            {
                reader_seen = true;
                // Let devbox go on: it reads `{}` and the end of the file.
                let _ = nix::unistd::write(&fd, b"{}");
                drop(fd);
            }
            devbox.server("alice-ws").filter(|s| {
                (s["status"] == "running" && s["pid"].as_u64() != Some(u64::from(pid)))
                    || s["phase"] == "failed"
            })
        },
    );
    assert!(
        !reader_seen,
        "HOLE: a FIFO alice put at user-data/User/settings.json: devbox (root) opened it \
         and waited for alice to write (the restart hung until the test wrote to it)"
    );
}

/// Hole (a read of limited reach): devbox reads `extensions/extensions.json` by path
/// (`record_copies`) and follows a link the owner planted there; what it read (a list
/// of JSON values: here bob's manifest) is written back into the owner's manifest,
/// which is then handed over.
#[test]
fn a_linked_extensions_manifest_copies_another_owners_into_the_owners() {
    let devbox = isolated(|root| {
        write_vsix(&root.join("vsix/alice-tool.vsix"), "acme", "alice-tool");
        write_vsix(
            &root.join("vsix/bob-secret-tool.vsix"),
            "acme",
            "bob-secret-tool",
        );
    });
    write_owned(
        &devbox,
        "bob-ws",
        BOB,
        "  extensions: [bob-secret-tool.vsix]\n",
    );
    let alice_body = "  extensions: [alice-tool.vsix]\n";
    write_owned(&devbox, "alice-ws", ALICE, alice_body);
    devbox.wait_running("bob-ws");
    devbox.wait_running("alice-ws");
    let alice = user_of(ALICE);
    let state = devbox.state();
    let bob_manifest = state.join("servers/bob-ws/extensions/extensions.json");
    assert!(
        std::fs::read_to_string(&bob_manifest)
            .unwrap_or_default()
            .contains("bob-secret-tool"),
        "bob's manifest\n{}",
        devbox.log_tail()
    );
    let alice_manifest = state.join("servers/alice-ws/extensions/extensions.json");
    plant(
        alice,
        &format!(
            "ln -sfn {} {}",
            quoted(&bob_manifest),
            quoted(&alice_manifest)
        ),
    );
    restart(&devbox, "alice-ws", ALICE, alice_body);

    let read = shell_as(
        alice,
        &format!("cat {} 2>/dev/null", quoted(&alice_manifest)),
    );
    let seen = String::from_utf8_lossy(&read.stdout);
    assert!(
        !seen.contains("bob-secret-tool"),
        "HOLE: alice's extensions.json linked to bob's: devbox read bob's manifest into \
         alice's, which she reads: {seen}"
    );
}

/// Refused: the hand-over after a restart follows no link the owner planted in its
/// workspace, and the owner cannot plant a hard link to a root file it may read
/// (`fs.protected_hardlinks`); the targets keep their owner and mode, devbox runs on.
#[test]
fn links_planted_in_a_workspace_are_never_given_to_the_owner() {
    let devbox = isolated(|_| {});
    write_owned(&devbox, "alice-ws", ALICE, "");
    devbox.wait_running("alice-ws");
    let alice = user_of(ALICE);
    let secret = root_only_file(&devbox, "secret", "root's\n");
    let secret_dir = secret.parent().expect("folder").to_owned();
    // A root file alice may read (0644 in a 0755 folder), but not write.
    let public_dir = devbox.path("public");
    std::fs::create_dir_all(&public_dir).expect("mkdir");
    std::fs::set_permissions(&public_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let public = public_dir.join("readable");
    std::fs::write(&public, "root's, readable\n").expect("write");
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let workspace = devbox.state().join("workspaces/alice-ws");
    plant(
        alice,
        &format!(
            "mkdir -p {ws}/deep/er && ln -s {dir} {ws}/deep/er/dir-link && ln -s {file} {ws}/file-link",
            ws = quoted(&workspace),
            dir = quoted(&secret_dir),
            file = quoted(&secret),
        ),
    );
    let hard = shell_as(
        alice,
        &format!("ln {} {}/hard", quoted(&public), quoted(&workspace)),
    );
    let server = restart(&devbox, "alice-ws", ALICE, "");
    assert_eq!(server["status"], "running", "{}", devbox.log_tail());

    let stat = |p: &Path| std::fs::metadata(p).expect("stat");
    for (what, path, mode) in [
        ("the linked folder", &secret_dir, 0o700),
        ("the linked file", &secret, 0o600),
        ("the readable root file", &public, 0o644),
    ] {
        assert_eq!(stat(path).uid(), 0, "{what} was given to alice");
        assert_eq!(stat(path).mode() & 0o7777, mode, "{what} changed mode");
    }
    if hard.status.success() {
        // Only where the host allows such links: it must still not become alice's.
        assert_eq!(stat(&workspace.join("hard")).uid(), 0, "the hard link");
    }
    let read = shell_as(alice, &format!("cat {}/file-link", quoted(&workspace)));
    assert!(!read.status.success(), "alice read the root-only file");
    assert_eq!(devbox.get("/health").status, 200);
}

/// Every file under `dir`, and every folder, but those `skip` accepts.
fn tree(dir: &Path, skip: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if skip(&path) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            out.push(path.clone());
            tree(&path, skip, out);
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

/// Refused: after starts, installs and a restart, alice's user reads or lists nothing
/// of devbox's state dir but her own folders (and code-server's config), reads
/// nothing of devbox's or bob's processes in `/proc`, signals neither, and can neither
/// leave nor loosen her instance's cgroup.
#[test]
fn an_owner_reaches_nothing_of_devbox_nor_of_another_owner() {
    let devbox = isolated(|root| {
        write_vsix(&root.join("vsix/tool.vsix"), "acme", "tool");
    });
    let body = "  extensions: [tool.vsix]\n  resources: {memory: 512MiB, pids: 1024}\n";
    write_owned(&devbox, "bob-ws", BOB, body);
    write_owned(&devbox, "alice-ws", ALICE, body);
    let (bob_pid, _) = devbox.wait_running("bob-ws");
    devbox.wait_running("alice-ws");
    let server = restart(&devbox, "alice-ws", ALICE, body);
    assert_eq!(server["status"], "running", "{}", devbox.log_tail());
    let alice_pid = server["pid"].as_u64().expect("pid");
    let alice = user_of(ALICE);
    let state = devbox.state();

    let own: Vec<PathBuf> = [
        "workspaces/alice-ws",
        "servers/alice-ws/user-data",
        "servers/alice-ws/extensions",
        "servers/alice-ws/xdg-data",
        "servers/alice-ws/xdg-config",
        &format!("sockets/devbox-{ALICE}"),
        &format!("homes/devbox-{ALICE}"),
    ]
    .iter()
    .map(|p| state.join(p))
    .collect();
    let skip = |p: &Path| {
        own.iter().any(|o| p == o.as_path())
            || p.file_name().is_some_and(|n| n == "code-server.yaml")
    };
    let mut paths = Vec::new();
    tree(&state, &skip, &mut paths);
    assert!(paths.len() > 10, "the state dir holds {paths:?}");
    let script = "for p in \"$@\"; do if [ -d \"$p\" ]; then ls \"$p\" >/dev/null 2>&1 && echo \"listed $p\"; \
                  else head -c1 \"$p\" >/dev/null 2>&1 && echo \"read $p\"; fi; done; true";
    let mut command = Command::new("sh");
    command
        .args(["-c", script, "sh"])
        .args(&paths)
        .uid(alice.0)
        .gid(alice.1)
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    let output = command.output().expect("sh");
    let reached = String::from_utf8_lossy(&output.stdout);
    assert!(
        reached.trim().is_empty(),
        "alice's user reached devbox's state:\n{reached}"
    );

    let devbox_pid = devbox.pid();
    for (what, script) in [
        (
            "read devbox's environment",
            format!("cat /proc/{devbox_pid}/environ"),
        ),
        (
            "read bob's instance's environment",
            format!("cat /proc/{bob_pid}/environ"),
        ),
        (
            "list devbox's descriptors",
            format!("ls /proc/{devbox_pid}/fd"),
        ),
        ("signal bob's instance", format!("kill -0 {bob_pid}")),
        ("signal devbox", format!("kill -0 {devbox_pid}")),
    ] {
        let output = shell_as(alice, &script);
        assert!(!output.status.success(), "alice's user could {what}");
    }

    // The instance's cgroup (v2: one folder; v1: one per controller).
    let status = devbox.status("alice-ws").expect("status");
    let cgroup = &status["instance"]["cgroup"];
    let dirs: Vec<PathBuf> = match cgroup["version"].as_str() {
        Some("v2") => vec![PathBuf::from(cgroup["dir"].as_str().expect("dir"))],
        Some("v1") => cgroup["dirs"]
            .as_object()
            .expect("dirs")
            .values()
            .map(|dir| PathBuf::from(dir.as_str().expect("dir")))
            .collect(),
        _ => Vec::new(),
    };
    for dir in &dirs {
        let parent = dir.parent().expect("parent").to_owned();
        let limit = ["memory.max", "memory.limit_in_bytes", "pids.max"]
            .into_iter()
            .map(|file| dir.join(file))
            .find(|file| file.exists());
        let before = limit
            .as_ref()
            .map(|file| std::fs::read_to_string(file).expect("limit"));
        let mut attempts = vec![
            (
                "move her instance out of its cgroup",
                format!(
                    "echo {alice_pid} > {}",
                    quoted(&parent.join("cgroup.procs"))
                ),
            ),
            (
                "move a process into her cgroup",
                format!("echo $$ > {}", quoted(&dir.join("cgroup.procs"))),
            ),
            (
                "make a cgroup of her own",
                format!("mkdir {}", quoted(&dir.join("escape"))),
            ),
        ];
        if let Some(file) = &limit {
            attempts.push(("raise her limit", format!("echo max > {}", quoted(file))));
        }
        for (what, script) in attempts {
            let output = shell_as(alice, &script);
            assert!(
                !output.status.success(),
                "alice's user could {what} ({})",
                dir.display()
            );
        }
        if let (Some(file), Some(before)) = (&limit, before) {
            assert_eq!(std::fs::read_to_string(file).expect("limit"), before);
        }
        assert!(!dir.join("escape").exists());
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("procs");
        assert!(
            procs.lines().any(|l| l.trim() == alice_pid.to_string()),
            "her instance is still in {}: {procs}",
            dir.display()
        );
    }
    assert!(
        !dirs.is_empty() || cgroup.is_null(),
        "an unknown cgroup record: {cgroup}"
    );
    assert_eq!(devbox.get("/health").status, 200);
}
