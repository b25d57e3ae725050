//! What must not happen: servers lost to a glitch of the specs directory, ports kept by
//! stopped servers or handed out although a spec pins them, processes that escape a
//! stop, instances nobody recorded, a delete that waits for a hanging extension
//! install, and a server left to the next devbox with its extensions half installed.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Devbox, Options, STARTUP, group_alive, healthz, wait_for};

/// A code-server wrapper for fault injection: runs `prelude` (shell), then the real one.
fn wrapper(dir: &Path, prelude: &str) -> PathBuf {
    common::code_server_wrapper(dir, prelude)
}

/// A wrapper whose installs hang as `sleep <seconds>` (a number unique to the test, by
/// which its installer is found in the process table); serving works.
fn hanging_installs(dir: &Path, seconds: u32) -> PathBuf {
    wrapper(
        dir,
        &format!("case \"$*\" in *--install-extension*) exec sleep {seconds} ;; esac"),
    )
}

/// Pids of live processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie
                && String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .contains(needle)
        })
        .collect()
}

#[test]
fn an_unreadable_specs_directory_changes_nothing() {
    let devbox = Devbox::start();
    devbox.write_spec("steady", "  state: running\n");
    let (pid, _) = devbox.wait_running("steady");
    let marker = devbox.state().join("servers/steady/user-data/keep.txt");
    std::fs::write(&marker, "precious").expect("marker");

    let away = devbox.path("specs.away");
    std::fs::rename(devbox.specs(), &away).expect("move specs away");
    wait_for(
        "devbox to notice the missing directory",
        Duration::from_secs(20),
        || {
            devbox
                .log()
                .contains("cannot read the specs directory")
                .then_some(())
        },
    );
    std::fs::rename(&away, devbox.specs()).expect("move specs back");
    // The next scans see the spec again; nothing was stopped or deleted meanwhile.
    wait_for(
        "a rescan after the directory is back",
        Duration::from_secs(20),
        || {
            devbox
                .server("steady")
                .filter(|s| s["status"] == "running")
                .map(|_| ())
        },
    );
    assert_eq!(
        devbox.server("steady").expect("steady")["pid"].as_u64(),
        Some(u64::from(pid))
    );
    assert!(marker.exists(), "user data kept");
}

#[test]
fn ports_return_to_the_pool_and_pinned_ports_stay_reserved() {
    let devbox = Devbox::start();
    let pinned = devbox.port_start;
    devbox.write_spec("pinner", &format!("  state: stopped\n  port: {pinned}\n"));
    devbox.write_spec("first", "  state: running\n");
    let (_, first_port) = devbox.wait_running("first");
    assert_ne!(
        first_port, pinned,
        "a port pinned by a stopped spec is not handed out"
    );

    devbox.write_spec("first", "  state: stopped\n");
    let stopped = devbox.wait_status("first", "stopped");
    assert!(stopped["port"].is_null(), "{stopped}");
    devbox.write_spec("second", "  state: running\n");
    let (_, second_port) = devbox.wait_running("second");
    assert_eq!(
        second_port, first_port,
        "the stopped server's port was given back"
    );

    devbox.write_spec("pinner", &format!("  state: running\n  port: {pinned}\n"));
    let (_, port) = devbox.wait_running("pinner");
    assert_eq!(port, pinned);
}

#[test]
fn a_create_right_after_a_restart_never_takes_a_port_a_spec_file_pins() {
    // Many spec files, so that reading them all takes a while after a restart (more
    // than the default `max_servers`, which is raised for them).
    let mut devbox = Devbox::start_opts(
        Options {
            ports: 2,
            config: "controller:\n  max_servers: 2000\n".into(),
            ..Options::default()
        },
        |root| {
            for n in 0..1000 {
                let spec = format!(
                    "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: filler-{n:04}\nspec:\n  state: stopped\n"
                );
                std::fs::write(root.join(format!("specs/filler-{n:04}.yaml")), spec)
                    .expect("write a spec");
            }
        },
    );
    let pinned = devbox.port_start;
    devbox.write_spec("pinner", &format!("  state: stopped\n  port: {pinned}\n"));
    devbox.wait_status("pinner", "stopped");
    devbox.kill9();
    devbox.restart();
    // At once: the API must know the pins of every spec file before it takes a port.
    let created = devbox.post_json("/servers", &serde_json::json!({"name": "fresh"}));
    assert_eq!(created.status, 201, "{}", created.text);
    let created: serde_json::Value = serde_json::from_str(&created.text).expect("json");
    let port = created["data"]["port"]
        .as_u64()
        .or_else(|| created["port"].as_u64())
        .unwrap_or_else(|| panic!("no port in {created}"));
    assert_eq!(
        port,
        u64::from(pinned) + 1,
        "the new server took the other port, not the pinned one"
    );
}

#[test]
fn processes_that_leave_the_group_are_stopped_too() {
    let fake_dir = tempfile::tempdir().expect("temp dir");
    // Like a VS Code terminal: a process in its own session, outside the launcher's group.
    let code_server = wrapper(fake_dir.path(), "setsid sleep 7777 &");
    let devbox = Devbox::start_with(code_server, |_| {});
    devbox.write_spec("escaper", "  state: running\n");
    let (pid, _) = devbox.wait_running("escaper");
    wait_for("the escaped process", Duration::from_secs(10), || {
        (!processes_with("sleep 7777").is_empty()).then_some(())
    });
    devbox.write_spec("escaper", "  state: stopped\n");
    devbox.wait_status("escaper", "stopped");
    assert!(!group_alive(pid));
    assert!(
        processes_with("sleep 7777").is_empty(),
        "a process outside the group survived the stop"
    );
}

#[test]
fn deleting_a_server_does_not_wait_for_a_hanging_extension_install() {
    let fake_dir = tempfile::tempdir().expect("temp dir");
    // Installs hang (like an offline .vsix with missing dependencies).
    let code_server = hanging_installs(fake_dir.path(), 8888);
    let devbox = Devbox::start_with(code_server, |_| {});
    devbox.write_spec("hangs", "  state: running\n  extensions: [acme.hangs]\n");
    wait_for("the install to start", STARTUP, || {
        let message = devbox.server("hangs")?["message"].as_str()?.to_owned();
        message
            .contains("installing extension acme.hangs")
            .then_some(())
    });
    // The status names the install just before the installer process starts.
    wait_for("the installer to run", Duration::from_secs(10), || {
        (!processes_with("sleep 8888").is_empty()).then_some(())
    });

    // The test config allows installs 60 s; the delete must not wait for that.
    devbox.remove_spec("hangs");
    wait_for("hangs to be forgotten", Duration::from_secs(15), || {
        devbox.server("hangs").is_none().then_some(())
    });
    wait_for(
        "the installer to be killed",
        Duration::from_secs(10),
        || processes_with("sleep 8888").is_empty().then_some(()),
    );
}

#[test]
fn code_server_boots_while_extensions_install_and_no_browser_gets_in_before_both() {
    let fake_dir = tempfile::tempdir().expect("temp dir");
    let code_server = hanging_installs(fake_dir.path(), 8889);
    let mut devbox = Devbox::start_opts(
        Options {
            code_server: Some(code_server),
            config: "controller:\n  on_shutdown: keep\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    devbox.write_spec("overlap", "  state: running\n  extensions: [acme.slow]\n");
    // code-server answers on its port while its extension is still being installed…
    let (port, direct) = wait_for("code-server to boot during the install", STARTUP, || {
        let server = devbox.server("overlap")?;
        let port = u16::try_from(server["port"].as_u64()?).ok()?;
        let direct = devbox.direct("overlap")?;
        healthz(&direct)?;
        (!processes_with("sleep 8889").is_empty()).then_some((port, direct))
    });
    let server = devbox.server("overlap").expect("overlap");
    assert_eq!(server["status"], "starting", "{server}");
    // …but is not running for devbox, and the proxy lets nobody in yet.
    assert_eq!(devbox.get(&format!("/vscode/{port}/")).status, 503);
    let pid = devbox.status("overlap").expect("status")["instance"]["pid"]
        .as_u64()
        .expect("the instance is recorded") as u32;

    // Stopped with `on_shutdown: keep`, devbox still stops an instance whose
    // extensions are not all in place: the next devbox starts it anew.
    devbox.interrupt();
    assert!(
        !group_alive(pid),
        "the half-provisioned instance was stopped"
    );
    assert!(healthz(&direct).is_none());
    wait_for(
        "the installer to be killed",
        Duration::from_secs(10),
        || processes_with("sleep 8889").is_empty().then_some(()),
    );
}

#[test]
fn an_instance_that_dies_while_its_extensions_install_fails_the_start() {
    let fake_dir = tempfile::tempdir().expect("temp dir");
    let code_server = hanging_installs(fake_dir.path(), 8887);
    let devbox = Devbox::start_with(code_server, |_| {});
    devbox.write_spec("dies", "  state: running\n  extensions: [acme.slow]\n");
    let direct = wait_for("code-server to boot during the install", STARTUP, || {
        let direct = devbox.direct("dies")?;
        healthz(&direct).map(|_| direct)
    });
    let pid = devbox.status("dies").expect("status")["instance"]["pid"]
        .as_u64()
        .expect("the instance is recorded") as i32;
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the instance");
    // The test config allows installs 60 s: the start must not wait for that to notice.
    wait_for("the start to fail", Duration::from_secs(10), || {
        devbox
            .log()
            .contains("code-server exited during start")
            .then_some(())
    });
    assert!(healthz(&direct).is_none());
}

#[test]
fn instances_no_status_recorded_are_killed_at_start() {
    // What a devbox killed right after starting an instance leaves: processes marked
    // as its instances, in no status file; marked as today's devbox marks them, and as
    // an older one did (`DEVBOX_INSTANCE`), so that an upgrade finds those too. Another
    // devbox's instances must survive.
    const MARKERS: [(&str, &str); 2] = [
        ("DEVSERVER_INSTANCE", "DEVSERVER_INSTANCE_OF"),
        ("DEVBOX_INSTANCE", "DEVBOX_INSTANCE_OF"),
    ];
    let strays = std::sync::Mutex::new(Vec::new());
    let devbox = Devbox::start_opts(common::Options::default(), |root| {
        let state = root.join("state");
        for owner in [state.clone(), root.join("elsewhere")] {
            for (tag_var, owner_var) in MARKERS {
                let child = std::process::Command::new("sleep")
                    .arg("1000")
                    .env(tag_var, format!("stray-{tag_var}-{}", owner.display()))
                    .env(owner_var, &owner)
                    .spawn()
                    .expect("start a stray");
                strays.lock().expect("strays").push(child);
            }
        }
    });
    let mut strays = strays.into_inner().expect("strays");
    for (i, (tag_var, _)) in MARKERS.iter().enumerate() {
        wait_for(
            &format!("the unrecorded instance marked {tag_var} to be killed"),
            Duration::from_secs(10),
            || strays[i].try_wait().ok().flatten(),
        );
    }
    for other in &mut strays[MARKERS.len()..] {
        assert_eq!(
            other.try_wait().expect("wait"),
            None,
            "another devbox's instance is left alone"
        );
    }
    assert!(
        devbox
            .log()
            .contains("killed an instance no status recorded"),
        "{}",
        devbox.log_tail()
    );
    for other in &mut strays[MARKERS.len()..] {
        let _ = other.kill();
        let _ = other.wait();
    }
}
