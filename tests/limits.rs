//! Limits per server (`spec.resources`), enforced with a cgroup per instance: a real
//! code-server runs in its own cgroup with the limits written; a stop leaves no process
//! of the cgroup, not even one that left the process group (and dropped the instance
//! tag); an instance that allocates past its memory limit ends with "out of memory";
//! users may not set limits. Tests run as root, where devbox may create cgroups.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use common::cgroups::{cgroup_dirs, cgroup_file, processes_with, procs_of};
use common::procs::live_processes;
use common::seats::{open_seat, seat_link};
use common::{Devbox, Options, STARTUP, group_alive, wait_for};

fn fake_code_server() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_code_server.py")
}

#[test]
fn a_limited_server_runs_in_its_cgroup_and_a_stop_ends_all_of_it() {
    let fake_dir = tempfile::tempdir().expect("temp dir");
    // Like a terminal that daemonized: its own session, and an empty environment (so
    // not even the instance tag finds it; only the cgroup does).
    let needle = format!("sleep 7331.{}", std::process::id());
    let code_server = common::code_server_wrapper(
        fake_dir.path(),
        &format!("setsid env -i {needle} >/dev/null 2>&1 &"),
    );
    let devbox = Devbox::start_with(code_server, |_| {});
    devbox.write_spec(
        "fenced",
        "  state: running\n  resources: {memory: 256MiB, pids: 512}\n",
    );
    let (pid, _) = devbox.wait_running("fenced");
    let dirs = cgroup_dirs(&devbox, "fenced");
    assert!(
        !devbox.log().contains("limits are not enforced"),
        "{}",
        devbox.log_tail()
    );
    let memory_file = if dirs[0].0.is_empty() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(
        cgroup_file(&dirs, "memory", memory_file),
        (256u64 << 20).to_string()
    );
    assert_eq!(cgroup_file(&dirs, "pids", "pids.max"), "512");
    let status = devbox.server("fenced").expect("listed");
    assert!(
        status["message"].is_null(),
        "limits are enforced: nothing to say ({status})"
    );

    // Every process of the instance is in its cgroup, the escaped one too.
    let escaped = wait_for("the escaped process", Duration::from_secs(10), || {
        processes_with(&needle).first().copied()
    });
    let escaped_group = live_processes()
        .into_iter()
        .find(|p| p.pid == escaped)
        .and_then(|p| p.group);
    assert_ne!(escaped_group, Some(pid), "it left the launcher's group");
    for (controller, dir) in &dirs {
        let procs = procs_of(dir);
        assert!(procs.contains(&pid), "{controller}: {procs:?} lacks {pid}");
        assert!(
            procs.contains(&escaped),
            "{controller}: {procs:?} lacks {escaped}"
        );
    }
    // CPU and memory come from the cgroup (launcher, node child, and the sleeper): the
    // memory charged to it, which is what its limit counts (less than the processes'
    // summed RSS: pages of node and its libraries that another cgroup read first stay
    // charged there).
    wait_for(
        "fenced's memory to be sampled",
        Duration::from_secs(15),
        || {
            devbox
                .server("fenced")
                .filter(|s| s["memory_mb"].as_f64().unwrap_or(0.0) > 10.0)
        },
    );

    devbox.write_spec(
        "fenced",
        "  state: stopped\n  resources: {memory: 256MiB, pids: 512}\n",
    );
    devbox.wait_status("fenced", "stopped");
    assert!(!group_alive(pid));
    assert!(
        processes_with(&needle).is_empty(),
        "a process of the cgroup survived the stop"
    );
    for (_, dir) in &dirs {
        assert!(!dir.exists(), "{} is removed after the stop", dir.display());
    }
}

#[test]
fn a_server_past_its_memory_limit_shows_out_of_memory() {
    let devbox = Devbox::start_opts(
        Options {
            code_server: Some(fake_code_server()),
            ..Options::default()
        },
        |_| {},
    );
    devbox.write_spec(
        "hog",
        "  state: running\n  restart_policy: never\n  env: {FAKE_ALLOCATE_MB: '512'}\n  resources: {memory: 64MiB}\n",
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
    let events =
        std::fs::read_to_string(devbox.state().join("servers/hog/events.log")).unwrap_or_default();
    assert!(events.contains("out of memory"), "{events}");
}

#[test]
fn users_may_not_set_limits() {
    const TOKEN: &str = "limits-admin-T0ken";
    let devbox = Devbox::start_opts(
        Options {
            config: format!("server:\n  api_token: \"{TOKEN}\"\n"),
            ..Options::default()
        },
        |root| {
            std::fs::write(
                root.join("specs/ada.yaml"),
                "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: ada\nspec:\n  state: stopped\n",
            )
            .expect("spec");
        },
    );
    wait_for("ada to be known", STARTUP, || devbox.status("ada"));
    let (link, _) = seat_link(&devbox, TOKEN, "ada");
    let ada = open_seat(&devbox, &link, "ada");
    let before = common::list_dir(&devbox.specs());
    let body: Value = json!({
        "apiVersion": "devbox/v1",
        "kind": "DevServer",
        "metadata": {"name": "roomy"},
        "spec": {"resources": {"memory": "64GiB", "cpus": 2}},
    });
    ada.call("PUT", "/specs/roomy", Some(&body))
        .assert_error(403, "`resources`");
    assert_eq!(common::list_dir(&devbox.specs()), before, "nothing written");
}
