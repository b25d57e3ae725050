//! What a local user or a participant could do to an instance directly, around devbox.
//! Seen to work before: code-server listened with `--auth none` on `127.0.0.1:<port>`,
//! open to every local user, and every instance's environment held devbox's API token.
//! Now an instance listens on a Unix socket only devbox's user can open, holds no TCP
//! port, and inherits nothing named `DEVBOX_…`; `listen: tcp` still works for operators
//! who want the old way.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::procs::{self, environ};
use crate::common::{self, Devbox, Direct, Options, STARTUP, wait_for};

/// The pgid and tag of `name`'s running instance, from its status file.
fn recorded_instance(devbox: &Devbox, name: &str) -> (u32, String) {
    let status = devbox.status(name).expect("a status file");
    let process = &status["instance"];
    let pgid = process["pgid"].as_u64().expect("a recorded process group") as u32;
    let tag = process["instance"]
        .as_str()
        .expect("a recorded tag")
        .to_owned();
    (pgid, tag)
}

/// Every live process of an instance: its process group, and every process carrying
/// its tag (those that left the group, like VS Code's terminals).
fn instance_processes(pgid: u32, tag: &str) -> Vec<u32> {
    procs::live_processes()
        .into_iter()
        .filter(|process| process.group == Some(pgid) || process.has_instance_tag(tag))
        .map(|process| process.pid)
        .collect()
}

/// The inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The inodes of every TCP socket in LISTEN state, IPv4 and IPv6.
fn tcp_listeners() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // `sl local rem st … uid timeout inode`: state 0A is LISTEN.
            if fields.get(3) == Some(&"0A")
                && let Some(inode) = fields.get(9).and_then(|i| i.parse().ok())
            {
                inodes.insert(inode);
            }
        }
    }
    inodes
}

/// What an unprivileged local user (nobody) gets connecting to `target`: `connected`,
/// or the error's name and errno. `target` is a socket path or `tcp:<port>`.
fn connect_as_nobody(target: &str) -> String {
    const PROBE: &str = r#"
import socket, sys
target = sys.argv[1]
if target.startswith("tcp:"):
    s, address = socket.socket(), ("127.0.0.1", int(target[4:]))
else:
    s, address = socket.socket(socket.AF_UNIX), target
try:
    s.connect(address)
    print("connected")
except OSError as e:
    print(type(e).__name__, e.errno)
"#;
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/usr/bin/python3", "-c", PROBE, target])
        .output()
        .expect("setpriv (util-linux) and /usr/bin/python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn a_running_instance_listens_on_no_tcp_port_and_only_devbox_can_open_its_socket() {
    let devbox = Devbox::start_opts(Options::default(), |root| {
        // Every folder on the way is open, as a state dir in a shared place would be.
        for dir in [root.to_owned(), root.join("state")] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    });
    devbox.write_spec("ide", "  state: running\n");
    let (_, port) = devbox.wait_running("ide");

    // No process of the instance holds a listening TCP socket.
    let (pgid, tag) = recorded_instance(&devbox, "ide");
    let processes = instance_processes(pgid, &tag);
    assert!(processes.len() >= 2, "launcher and child: {processes:?}");
    let listeners = tcp_listeners();
    let held: HashSet<u64> = processes.iter().flat_map(|&p| socket_inodes(p)).collect();
    assert!(!held.is_empty(), "the instance holds sockets (its own)");
    let listening: Vec<&u64> = held.intersection(&listeners).collect();
    assert!(
        listening.is_empty(),
        "processes {processes:?} listen on TCP (socket inodes {listening:?})"
    );
    // The same reading finds devbox's own listener: it would find an instance's.
    assert!(
        !socket_inodes(devbox.pid()).is_disjoint(&listeners),
        "devbox's own TCP listener is seen"
    );

    // Its socket is srw------- in a directory only devbox's user may enter.
    let Some(Direct::Unix(socket)) = devbox.direct("ide") else {
        panic!("ide's status records no socket: {:?}", devbox.status("ide"));
    };
    assert_eq!(socket, devbox.state().join("sockets/ide.sock"));
    let kind = std::fs::symlink_metadata(&socket)
        .expect("socket")
        .file_type();
    assert!(kind.is_socket(), "{kind:?}");
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&devbox.state().join("sockets")), 0o700);

    // devbox closed the state folder it found open: nobody else looks into it.
    let nowhere = devbox.state().join("no.sock");
    assert_eq!(mode(&devbox.state()), 0o700);
    assert_eq!(
        connect_as_nobody(&nowhere.to_string_lossy()),
        "PermissionError 13",
        "nobody may look into the state folder"
    );
    // Opened again by hand, the socket folder alone keeps others out: another local
    // user reaches the instance neither way; devbox's proxy does.
    std::fs::set_permissions(devbox.state(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    assert_eq!(
        connect_as_nobody(&nowhere.to_string_lossy()),
        "FileNotFoundError 2",
        "nobody may look into the opened state folder"
    );
    assert_eq!(
        connect_as_nobody(&socket.to_string_lossy()),
        "PermissionError 13",
        "another user connects to the socket"
    );
    assert_eq!(
        connect_as_nobody(&format!("tcp:{port}")),
        "ConnectionRefusedError 111",
        "something listens on the route port {port}"
    );
    let health = devbox.get(&format!("/vscode/{port}/healthz"));
    assert_eq!(health.status, 200, "{health}");
    assert!(health.json()["status"].is_string(), "{health}");
}

/// A code-server wrapper that copies the environment of every
/// `--install-extension` run to `<dir>/install-env.<pid>`, then runs the real one.
fn recording_installs(dir: &Path) -> PathBuf {
    let path = dir.join("code-server");
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in *--install-extension*) cat /proc/$$/environ > '{}/install-env.'$$ ;; esac\nexec '{}' \"$@\"\n",
        dir.display(),
        common::code_server().display()
    );
    std::fs::write(&path, script).expect("write wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Entries of an environment (NUL-separated) that are devbox's or hold `secret`.
fn leaks(environ: &[Vec<u8>], secret: &str) -> Vec<String> {
    environ
        .iter()
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .filter(|e| e.starts_with("DEVBOX_") || e.contains(secret))
        .collect()
}

#[test]
fn neither_instances_nor_extension_installs_inherit_devboxs_variables() {
    let secret = format!("tok-{}", uuid_like());
    let wrapper_dir = tempfile::tempdir().expect("temp dir");
    let code_server = recording_installs(wrapper_dir.path());
    let devbox = Devbox::start_opts(
        Options {
            code_server: Some(code_server),
            env: vec![
                ("DEVBOX_API_TOKEN".into(), secret.clone()),
                ("DEVBOX_SOMETHING_ELSE".into(), format!("x{secret}x")),
                // Not devbox's own, but a secret all the same: only what a shell,
                // git and Node need is inherited.
                ("AWS_SECRET_ACCESS_KEY".into(), format!("y{secret}y")),
            ],
            ..Options::default()
        },
        |root| common::write_vsix(&root.join("vsix/tool.vsix"), "devbox-test", "tool"),
    );
    // With a token the API wants it: the status file tells the same without one. A
    // server runs once its extensions are installed.
    devbox.write_spec("ide", "  state: running\n  extensions: [tool.vsix]\n");
    let status = wait_for(
        &format!("ide to run\n{}", devbox.log_tail()),
        STARTUP,
        || devbox.status("ide").filter(|s| s["phase"] == "running"),
    );
    assert_eq!(
        status["extension_results"][0]["state"], "installed",
        "{status}"
    );

    let (pgid, tag) = recorded_instance(&devbox, "ide");
    let processes = instance_processes(pgid, &tag);
    assert!(!processes.is_empty());
    for pid in &processes {
        let environ = environ(*pid);
        assert!(
            environ
                .iter()
                .any(|e| e.starts_with(b"DEVSERVER_INSTANCE=")),
            "process {pid} is an instance's (its environ is readable)"
        );
        let leaked = leaks(&environ, &secret);
        assert!(leaked.is_empty(), "process {pid} inherited {leaked:?}");
    }

    let installs: Vec<PathBuf> = std::fs::read_dir(wrapper_dir.path())
        .expect("wrapper dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("install-env."))
        .collect();
    assert!(
        !installs.is_empty(),
        "the extension was installed by code-server"
    );
    for install in installs {
        let environ: Vec<Vec<u8>> = std::fs::read(&install)
            .expect("recorded environment")
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        assert!(
            environ.iter().any(|e| e.starts_with(b"PATH=")),
            "{install:?}"
        );
        let leaked = leaks(&environ, &secret);
        assert!(
            leaked.is_empty(),
            "an extension install inherited {leaked:?}"
        );
    }
}

/// A value nobody else's environment holds by chance.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", std::process::id())
}

#[test]
fn with_listen_tcp_an_instance_serves_on_its_port_as_before() {
    let devbox = Devbox::start_opts(
        Options {
            config: "code_server:\n  listen: tcp\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    assert!(
        devbox.log().contains("code_server.listen is tcp"),
        "devbox warns at start that instances are open to local users\n{}",
        devbox.log_tail()
    );
    devbox.write_spec("ide", "  state: running\n");
    let (_, port) = devbox.wait_running("ide");
    assert_eq!(devbox.direct("ide"), Some(Direct::Tcp(port)));
    let status: Value = devbox.status("ide").expect("status");
    assert!(status["instance"].get("socket").is_none(), "{status}");
    assert!(common::healthz(&Direct::Tcp(port)).is_some());
    let health = devbox.get(&format!("/vscode/{port}/healthz"));
    assert_eq!(health.status, 200, "{health}");
    let page = devbox.get(&format!("/vscode/{port}/"));
    assert_eq!(page.status, 200, "{page}");
    assert!(page.text.contains("workbench"), "the IDE's page: {page}");
}
