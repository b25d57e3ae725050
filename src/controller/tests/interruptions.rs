//! The spec changes while a start is under way: an edit gives up the old start for the
//! new spec, a delete leaves nothing behind.

use std::time::Duration;

use super::Harness;
use crate::runtime::fake::FakeInstance;
use crate::status::{Phase, server_dir};

fn env_of(instance: &FakeInstance, key: &str) -> Option<String> {
    let plan = instance.plan.as_ref()?;
    plan.env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Edits `name`'s spec while its start is slow in the way `slow` sets up, and checks that
/// the edit, and nothing else, ends up running.
async fn edit_during_start(name: &str, slow: impl FnOnce(&mut crate::runtime::fake::Behaviour)) {
    let mut h = Harness::new().await;
    h.fake.behave(name, slow);
    h.apply(name, "state: running\nenv: {VERSION: one}");
    h.wait_for(name, "starting", |s| s.phase == Phase::Starting)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.must_status(name).phase, Phase::Starting);

    let edited = h.apply(name, "state: running\nenv: {VERSION: two}");
    let running = h
        .wait_for(name, "running the edit", |s| s.phase == Phase::Running)
        .await;
    let live = h.fake.live(name);
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(env_of(&live[0], "VERSION").as_deref(), Some("two"));
    assert_eq!(running.local_process(), Some(&live[0].record));
    assert_eq!(running.applied_hash.as_deref(), Some(edited.hash.as_str()));
    // The old start's instance was stopped, not left to run beside the new one.
    let started = h.fake.started(name);
    assert_eq!(started.len(), 2, "{started:#?}");
    assert_eq!(env_of(&started[0], "VERSION").as_deref(), Some("one"));
    assert!(started[0].stopped);
    assert!(h.has_event(name, "start interrupted"));
    // An abandoned start is not a failure.
    assert_eq!((running.restarts, running.consecutive_crashes), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_edit_while_the_runtime_is_starting_the_instance_starts_the_edit() {
    edit_during_start("jay", |b| b.start_delay = Duration::from_secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn an_edit_while_the_instance_boots_starts_the_edit() {
    edit_during_start("kim", |b| b.boot_time = Duration::from_secs(20)).await;
}

/// Deletes `name`'s spec while its start is slow as `slow` sets up, and checks that
/// nothing of it is left.
async fn delete_during_start(name: &str, slow: impl FnOnce(&mut crate::runtime::fake::Behaviour)) {
    let mut h = Harness::new().await;
    h.fake.behave(name, slow);
    h.apply(name, "state: running");
    let starting = h
        .wait_for(name, "starting", |s| s.phase == Phase::Starting)
        .await;
    let port = starting.port.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    h.delete(name);
    h.wait_until(&format!("{name} forgotten"), || {
        h.status(name).is_none() && h.task_ended(name)
    })
    .await;
    assert!(
        h.fake.live_all().is_empty(),
        "{:#?}",
        h.fake.instances(name)
    );
    assert_eq!(h.ctx.ports.owner(port), None);
    assert!(h.ctx.logs.recent(name, 10).is_empty());
    assert!(!server_dir(&h.ctx.config.controller.state_dir, name).exists());
    // Whatever the runtime had started was stopped.
    for instance in h.fake.started(name) {
        assert!(instance.stopped, "{instance:#?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_delete_while_the_runtime_is_starting_the_instance_leaves_nothing() {
    delete_during_start("lou", |b| b.start_delay = Duration::from_secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn a_delete_while_the_instance_boots_leaves_nothing() {
    delete_during_start("max", |b| b.boot_time = Duration::from_secs(20)).await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_while_the_instance_boots_stops_it() {
    let mut h = Harness::new().await;
    h.fake
        .behave("ned", |b| b.boot_time = Duration::from_secs(20));
    h.apply("ned", "state: running");
    h.wait_until("started", || h.fake.starts("ned") == 1).await;
    h.apply("ned", "state: stopped");
    let stopped = h
        .wait_for("ned", "stopped", |s| s.phase == Phase::Stopped)
        .await;
    assert!(h.fake.live_all().is_empty());
    assert_eq!(stopped.instance, None);
    assert_eq!(stopped.message, None);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.fake.starts("ned"), 1);
}
