//! A spec file's life with real code-server: create → running → stopped → edited →
//! restarted with new settings → deleted; and devbox's own restarts (adoption).

mod common;

use std::time::Duration;

use common::{Devbox, Options, STARTUP, group_alive, healthz, wait_for};

fn read_settings(devbox: &Devbox, name: &str) -> serde_json::Value {
    let path = devbox
        .state()
        .join("servers")
        .join(name)
        .join("user-data/User/settings.json");
    serde_json::from_slice(&std::fs::read(path).expect("settings.json")).expect("settings JSON")
}

#[test]
fn spec_file_drives_the_whole_life_of_a_server() {
    let devbox = Devbox::start();
    devbox.write_spec(
        "alice",
        "  state: running\n  extension_groups: [tools]\n  user_settings:\n    editor.fontSize: 15\n",
    );

    // Running: real code-server answers on its own port with its own directories.
    let (pid, port) = devbox.wait_running("alice");
    assert!((devbox.port_start..=devbox.port_end).contains(&port));
    let direct = devbox.direct("alice").expect("where alice listens");
    assert_eq!(
        direct,
        devbox.socket_of("alice"),
        "on its socket, by default"
    );
    let health = healthz(&direct).expect("code-server /healthz");
    assert!(
        ["alive", "expired"].contains(&health["status"].as_str().unwrap_or("")),
        "{health}"
    );
    let server_dir = devbox.state().join("servers/alice");
    assert!(server_dir.join("user-data").is_dir());
    assert!(server_dir.join("extensions").is_dir());
    let settings = read_settings(&devbox, "alice");
    assert_eq!(settings["editor.fontSize"], 15);
    assert_eq!(
        settings["editor.tabSize"], 7,
        "group settings are merged in"
    );
    let listed = devbox.server("alice").expect("listed");
    assert_eq!(
        listed["workspace_path"],
        devbox
            .state()
            .join("workspaces/alice")
            .display()
            .to_string()
    );
    // CPU and memory are sampled over the whole process group (launcher and child).
    let sampled = wait_for(
        "alice's memory to be sampled",
        Duration::from_secs(15),
        || {
            devbox
                .server("alice")
                .filter(|s| s["memory_mb"].as_f64().unwrap_or(0.0) > 50.0)
        },
    );
    assert!(
        sampled["cpu_percent"].as_f64().is_some_and(|c| c >= 0.0),
        "{sampled}"
    );
    assert!(
        sampled["uptime"].as_f64().is_some_and(|u| u > 0.0),
        "{sampled}"
    );
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .expect("cmdline")
        .replace('\0', " ");
    assert!(
        cmdline.contains(&format!(
            "--user-data-dir {}",
            server_dir.join("user-data").display()
        )),
        "{cmdline}"
    );

    // Stopped: the process and all its children are gone.
    devbox.write_spec("alice", "  state: stopped\n  extension_groups: [tools]\n  user_settings:\n    editor.fontSize: 15\n");
    let stopped = devbox.wait_status("alice", "stopped");
    assert!(stopped["pid"].is_null());
    wait_for(
        "alice's process group to vanish",
        Duration::from_secs(10),
        || (!group_alive(pid)).then_some(()),
    );
    assert!(
        healthz(&direct).is_none(),
        "nothing answers on the socket any more"
    );

    // Running again, then an edit of the settings restarts it with the new value.
    devbox.write_spec("alice", "  state: running\n  extension_groups: [tools]\n  user_settings:\n    editor.fontSize: 15\n");
    let (pid2, port2) = devbox.wait_running("alice");
    assert_eq!(port2, port, "a server keeps its port");
    devbox.write_spec("alice", "  state: running\n  extension_groups: [tools]\n  user_settings:\n    editor.fontSize: 21\n");
    let pid3 = wait_for("alice to restart with new settings", STARTUP, || {
        let s = devbox.server("alice")?;
        let pid = s["pid"].as_u64()? as u32;
        (s["status"] == "running" && pid != pid2).then_some(pid)
    });
    assert!(!group_alive(pid2), "the old instance is gone");
    assert_eq!(read_settings(&devbox, "alice")["editor.fontSize"], 21);

    // Deleted: stopped and forgotten; the workspace stays.
    std::fs::write(devbox.state().join("workspaces/alice/notes.txt"), "keep me")
        .expect("write into workspace");
    devbox.remove_spec("alice");
    wait_for("alice to be forgotten", STARTUP, || {
        devbox.server("alice").is_none().then_some(())
    });
    wait_for(
        "alice's process group to vanish",
        Duration::from_secs(10),
        || (!group_alive(pid3)).then_some(()),
    );
    wait_for(
        "alice's status file to be removed",
        Duration::from_secs(10),
        || devbox.status("alice").is_none().then_some(()),
    );
    assert!(
        devbox.state().join("workspaces/alice/notes.txt").exists(),
        "workspace kept"
    );
}

#[test]
fn only_the_edited_server_restarts() {
    let devbox = Devbox::start();
    devbox.write_spec("one", "  state: running\n");
    devbox.write_spec("two", "  state: running\n");
    let (one_pid, _) = devbox.wait_running("one");
    let (two_pid, _) = devbox.wait_running("two");
    devbox.write_spec(
        "one",
        "  state: running\n  user_settings: {editor.wordWrap: 'on'}\n",
    );
    wait_for("one to restart", STARTUP, || {
        let s = devbox.server("one")?;
        (s["status"] == "running" && s["pid"].as_u64()? as u32 != one_pid).then_some(())
    });
    assert_eq!(
        devbox.server("two").expect("two")["pid"].as_u64(),
        Some(u64::from(two_pid))
    );
}

#[test]
fn killed_devbox_adopts_running_servers_and_restarts_dead_ones() {
    let mut devbox = Devbox::start();
    devbox.write_spec("keep", "  state: running\n");
    devbox.write_spec("lost", "  state: running\n");
    let (keep_pid, keep_port) = devbox.wait_running("keep");
    let (lost_pid, _) = devbox.wait_running("lost");

    devbox.kill9();
    // While devbox is down, one instance dies.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(lost_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill lost");
    wait_for("lost to die", Duration::from_secs(10), || {
        (!group_alive(lost_pid)).then_some(())
    });
    assert!(
        devbox.healthz("keep").is_some(),
        "keep survives devbox's death"
    );

    devbox.restart();
    let (pid_after, port_after) = devbox.wait_running("keep");
    assert_eq!(
        (pid_after, port_after),
        (keep_pid, keep_port),
        "adopted, not restarted"
    );
    // Right after the restart the recorded status may still name the dead pid, until
    // the reconciler has looked at it: wait for a new process.
    wait_for("the dead one to be started again", STARTUP, || {
        let s = devbox.server("lost")?;
        (s["status"] == "running" && s["pid"].as_u64()? as u32 != lost_pid).then_some(())
    });
    assert!(
        devbox.log().contains("adopted running process"),
        "adoption is logged"
    );
}

#[test]
fn sigterm_stops_every_server() {
    let mut devbox = Devbox::start();
    devbox.write_spec("a", "  state: running\n");
    let (pid, _) = devbox.wait_running("a");
    devbox.terminate();
    assert!(
        !group_alive(pid),
        "no code-server outlives a devbox shutdown"
    );
    assert_eq!(devbox.status("a").expect("status kept")["phase"], "stopped");
}

#[test]
fn with_on_shutdown_keep_servers_outlive_sigint_and_are_adopted() {
    let mut devbox = Devbox::start_opts(
        Options {
            config: "controller:\n  on_shutdown: keep\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    devbox.write_spec("kept", "  state: running\n");
    let (pid, port) = devbox.wait_running("kept");
    devbox.interrupt();
    assert!(group_alive(pid), "the server outlives devbox");
    assert!(devbox.healthz("kept").is_some(), "and keeps serving");
    devbox.restart();
    let (pid_after, port_after) = devbox.wait_running("kept");
    assert_eq!(
        (pid_after, port_after),
        (pid, port),
        "adopted, not restarted"
    );
}

#[test]
fn deleting_with_purge_removes_the_workspace() {
    let devbox = Devbox::start_opts(
        Options {
            config: "controller:\n  purge_workspace_on_delete: true\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    devbox.write_spec("gone", "  state: running\n");
    let (pid, _) = devbox.wait_running("gone");
    let workspace = devbox.state().join("workspaces/gone");
    std::fs::write(workspace.join("notes.txt"), "scratch").expect("write into workspace");
    devbox.remove_spec("gone");
    wait_for("gone to be forgotten", STARTUP, || {
        devbox.server("gone").is_none().then_some(())
    });
    wait_for(
        "its workspace to be purged",
        Duration::from_secs(10),
        || (!workspace.exists()).then_some(()),
    );
    assert!(!group_alive(pid), "its processes are gone");
}

#[test]
fn idle_server_is_stopped_and_starts_again_when_its_spec_changes() {
    let devbox = Devbox::start();
    devbox.write_spec("sleepy", "  state: running\n  idle_timeout: 2s\n");
    let (pid, _) = devbox.wait_running("sleepy");
    // No browser ever connects: code-server reports `expired`, and after 2 s devbox culls it.
    let stopped = devbox.wait_status("sleepy", "stopped");
    let message = stopped["message"].as_str().unwrap_or_default();
    assert!(message.contains("without a connected browser"), "{message}");
    wait_for("sleepy's processes to end", Duration::from_secs(10), || {
        (!group_alive(pid)).then_some(())
    });

    devbox.write_spec("sleepy", "  state: running\n  idle_timeout: 1h\n");
    let (pid2, _) = devbox.wait_running("sleepy");
    assert_ne!(pid2, pid);
}
