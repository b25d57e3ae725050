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

#[tokio::test(start_paused = true)]
async fn an_edit_while_the_workspace_is_prepared_starts_the_edit() {
    let mut h = Harness::new().await;
    // An archive nobody writes: reading it blocks, so the workspace step stays under
    // way until the test lets it go.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("lesson.zip");
    nix::unistd::mkfifo(&archive, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // Should the start never give way, the reader is let go after a while in real
    // time (the paused clock stands still while it blocks), and the test fails on
    // what it finds instead of hanging.
    let watchdog = archive.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(30));
        let _ = open_writer(&watchdog);
    });
    h.apply(
        "lia",
        &format!("state: running\nworkspace: {{zip: {}}}", archive.display()),
    );
    h.wait_for("lia", "provisioning", |s| s.phase == Phase::Provisioning)
        .await;
    h.apply("lia", "state: running\nenv: {VERSION: two}");
    h.wait_until("the start to give way", || {
        h.has_event("lia", "start interrupted")
    })
    .await;
    // The abandoned reader gets an empty archive and ends.
    drop(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&archive)
            .unwrap(),
    );
    let running = h
        .wait_for("lia", "running the edit", |s| s.phase == Phase::Running)
        .await;
    let started = h.fake.started("lia");
    assert_eq!(
        started.len(),
        1,
        "the first start never launched: {started:#?}"
    );
    assert_eq!(env_of(&started[0], "VERSION").as_deref(), Some("two"));
    assert_eq!(running.local_process(), Some(&started[0].record));
    assert_eq!((running.restarts, running.consecutive_crashes), (0, 0));
}

/// Opens a FIFO's writing end without waiting for a reader.
fn open_writer(fifo: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(fifo)
}
