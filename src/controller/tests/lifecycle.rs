//! A server's ordinary life: started from its spec, stopped by it, and a runtime that
//! refuses to start it.

use std::sync::Arc;
use std::time::Duration;

use super::{Harness, between};
use crate::runtime::ExitInfo;
use crate::status::{Phase, server_dir};

#[tokio::test(start_paused = true)]
async fn a_running_spec_is_started_once_and_runs() {
    let mut h = Harness::new().await;
    h.apply("alice", "state: running\nenv: {GREETING: hello}");
    let status = h
        .wait_for("alice", "running", |s| s.phase == Phase::Running)
        .await;

    assert_eq!(h.fake.starts("alice"), 1);
    let instance = &h.fake.started("alice")[0];
    let plan = instance.plan.as_ref().unwrap();
    assert_eq!(status.local_process(), Some(&instance.record));
    assert_eq!(status.message, None);
    assert_eq!((status.restarts, status.consecutive_crashes), (0, 0));
    assert!(status.started_at.is_some());

    // It listens on a socket in devbox's state dir, and says so on its command line.
    let state_dir = &h.ctx.config.controller.state_dir;
    let socket = instance.record.socket.clone().expect("a socket");
    assert!(socket.starts_with(state_dir), "{}", socket.display());
    let socket_arg = ["--socket".to_owned(), socket.display().to_string()];
    assert!(
        plan.args.windows(2).any(|w| w == socket_arg),
        "{:?}",
        plan.args
    );
    assert!(plan.args.windows(2).any(|w| w == ["--auth", "none"]));
    // It opens the workspace the status names, and keeps its data in the server's folder.
    let workspace = status.workspace_path.clone().expect("a workspace");
    assert_eq!(plan.args.last(), Some(&workspace.display().to_string()));
    assert!(workspace.is_dir());
    let dir = server_dir(state_dir, "alice");
    assert_eq!(plan.log_file, dir.join("code-server.log"));
    let env = |key: &str| {
        plan.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(env("GREETING").as_deref(), Some("hello"));
    assert_eq!(
        env("XDG_DATA_HOME").as_deref(),
        Some(dir.join("xdg-data").to_str().unwrap())
    );

    // Its route holds a port of the configured range.
    let port = status.port.expect("a port");
    let range = h.ctx.config.server.code_server_port_range;
    assert!((range.start..=range.end).contains(&port), "{port}");
    assert_eq!(h.ctx.ports.owner(port).as_deref(), Some("alice"));

    let events = h.events("alice");
    assert_eq!(events.first().map(String::as_str), Some("created"));
    assert!(h.has_event("alice", &format!("provisioning on port {port}")));
    assert!(h.has_event("alice", &format!("started: pid {}", instance.record.pid)));

    // A rescan that finds the same file, and health checks for an hour, change nothing.
    h.apply("alice", "state: running\nenv: {GREETING: hello}");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(h.fake.starts("alice"), 1);
    assert_eq!(h.must_status("alice").phase, Phase::Running);
    assert!(h.fake.live("alice")[0].probes > 100);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_spec_stops_the_instance_and_frees_its_port() {
    let mut h = Harness::new().await;
    h.apply("bob", "state: running");
    let running = h
        .wait_for("bob", "running", |s| s.phase == Phase::Running)
        .await;
    let port = running.port.unwrap();
    let pid = running.local_process().unwrap().pid;

    h.apply("bob", "state: stopped");
    let stopped = h
        .wait_for("bob", "stopped", |s| s.phase == Phase::Stopped)
        .await;
    assert_eq!(h.fake.stops("bob"), 1);
    assert!(h.fake.live("bob").is_empty());
    assert_eq!(stopped.instance, None);
    assert_eq!(stopped.message, None);
    assert_eq!(stopped.port, None);
    assert_eq!(h.ctx.ports.owner(port), None);
    assert!(h.has_event("bob", &format!("stopped: process {pid} ended")));

    // It stays stopped, and starts again when the spec says running.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.fake.starts("bob"), 1);
    h.apply("bob", "state: running");
    h.wait_for("bob", "running again", |s| s.phase == Phase::Running)
        .await;
    assert_eq!(h.fake.starts("bob"), 2);
    assert_eq!(h.fake.live("bob").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_server_keeps_its_pinned_port() {
    let mut h = Harness::new().await;
    h.apply("pinned", "state: running\nport: 8050");
    let running = h
        .wait_for("pinned", "running", |s| s.phase == Phase::Running)
        .await;
    assert_eq!(running.port, Some(8050));
    h.apply("pinned", "state: stopped\nport: 8050");
    let stopped = h
        .wait_for("pinned", "stopped", |s| s.phase == Phase::Stopped)
        .await;
    assert_eq!(stopped.port, Some(8050));
    assert!(h.fake.live("pinned").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_runtime_that_refuses_to_start_fails_the_server_and_is_retried_with_backoff() {
    let mut h = Harness::new().await;
    h.fake.behave("carol", |b| b.refuse_start = true);
    h.apply("carol", "state: running");
    let failed = h
        .wait_for("carol", "failed", |s| s.phase == Phase::Failed)
        .await;
    let message = failed.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("cannot start code-server: entity not found"),
        "{message}"
    );
    assert!(message.contains("code_server.binary"), "{message}");
    assert!(failed.next_retry_at.is_some());
    assert_eq!(failed.instance, None);
    assert_eq!(failed.port, None);
    assert!(h.has_event("carol", "cannot start code-server"));
    assert!(h.has_event("carol", "retry in 1s"));

    // Each attempt comes after the backoff for its number, and none leaves an instance.
    h.wait_until("refused four times", || h.fake.refused("carol").len() == 4)
        .await;
    let backoff = h.ctx.config.controller.restart_backoff.clone();
    let attempts = h.fake.refused("carol");
    for (n, pair) in attempts.windows(2).enumerate() {
        let attempt = n as u32 + 1;
        assert_eq!(
            between(pair[0], pair[1]),
            backoff.delay(attempt),
            "before attempt {}",
            attempt + 1
        );
    }
    assert!(h.fake.live_all().is_empty());
    assert_eq!(h.must_status("carol").consecutive_crashes, 4);

    // Once the runtime starts it again, the next retry runs it.
    h.fake.behave("carol", |b| b.refuse_start = false);
    let running = h
        .wait_for("carol", "running", |s| s.phase == Phase::Running)
        .await;
    assert_eq!(h.fake.starts("carol"), 1);
    assert_eq!(running.message, None);
    assert_eq!(running.next_retry_at, None);
    assert_eq!(
        between(attempts[3], h.fake.started("carol")[0].started_at),
        backoff.delay(4)
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_the_backoff_cancels_the_retry() {
    let mut h = Harness::new().await;
    h.apply("ben", "state: running");
    h.wait_for("ben", "running", |s| s.phase == Phase::Running)
        .await;
    h.fake.crash("ben", ExitInfo::Code(1));
    h.wait_for("ben", "waiting to restart", |s| s.next_retry_at.is_some())
        .await;
    h.apply("ben", "state: stopped");
    let stopped = h
        .wait_for("ben", "stopped", |s| s.phase == Phase::Stopped)
        .await;
    assert_eq!(stopped.next_retry_at, None);
    assert_eq!(stopped.message, None);
    assert_eq!(stopped.consecutive_crashes, 0);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.fake.starts("ben"), 1);
    assert!(h.fake.live_all().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_invalid_edit_leaves_the_server_running_its_last_spec() {
    let mut h = Harness::new().await;
    let applied = h.apply("cy", "state: running");
    h.wait_for("cy", "running", |s| s.phase == Phase::Running)
        .await;
    let errors = h.apply_invalid("cy", "state: sideways");
    let status = h
        .wait_for("cy", "showing the error", |s| !s.spec_errors.is_empty())
        .await;
    assert_eq!(status.phase, Phase::Running);
    assert_eq!(status.applied_hash.as_deref(), Some(applied.hash.as_str()));
    assert!(h.has_event("cy", &format!("spec not applied: {}", errors[0])));
    // It keeps being looked after under its last spec: a crash restarts it.
    h.fake.crash("cy", ExitInfo::Code(1));
    h.wait_for("cy", "restarted", |s| {
        s.phase == Phase::Running && s.restarts == 1
    })
    .await;
    assert_eq!(h.fake.starts("cy"), 2);
    // The fixed file clears the error without a restart.
    h.apply("cy", "state: running");
    h.wait_for("cy", "without errors", |s| s.spec_errors.is_empty())
        .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.fake.starts("cy"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_spec_that_was_never_valid_starts_nothing() {
    let mut h = Harness::new().await;
    let errors = h.apply_invalid("dot", "state: sideways");
    let invalid = h
        .wait_for("dot", "invalid", |s| s.phase == Phase::Invalid)
        .await;
    assert_eq!(invalid.message.as_deref(), Some(errors[0].as_str()));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.fake.starts("dot"), 0);
    h.apply("dot", "state: running");
    h.wait_for("dot", "running once valid", |s| s.phase == Phase::Running)
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_deleted_pool_server_leaves_no_workspace_and_anyone_elses_stays() {
    let mut h = Harness::new().await;
    let mut member = (*h.spec("pool-lab-1", "state: running")).clone();
    member.pool = Some("Lab".into());
    h.send(
        "pool-lab-1",
        crate::controller::scan::Desired::Spec(Arc::new(member)),
    );
    h.apply("alice", "state: running");
    let mut workspaces = Vec::new();
    for name in ["pool-lab-1", "alice"] {
        let status = h
            .wait_for(name, "running", |s| s.phase == Phase::Running)
            .await;
        assert_eq!(status.pool.is_some(), name == "pool-lab-1");
        workspaces.push(status.workspace_path.clone().expect("a workspace"));
    }
    for name in ["pool-lab-1", "alice"] {
        h.delete(name);
        h.wait_until(&format!("{name} forgotten"), || h.task_ended(name))
            .await;
    }
    // A later member of that name starts from the template as it is then, not from
    // what an earlier member cloned.
    assert!(!workspaces[0].exists(), "{}", workspaces[0].display());
    assert!(
        workspaces[1].is_dir(),
        "controller.purge_workspace_on_delete is off"
    );
}
