//! Instances a backend places itself (a queued Slurm job): the server shows why it
//! waits and is not probed meanwhile, runs once placed, fails at once and stays down
//! until its spec changes when it can never be placed, and a delete while it waits leaves nothing behind.

use std::time::Duration;

use super::Harness;
use crate::status::Phase;

#[tokio::test(start_paused = true)]
async fn a_queued_instance_shows_why_it_waits_and_runs_once_placed() {
    let mut h = Harness::new().await;
    h.fake
        .behave("qia", |b| b.queued = Some("Resources".into()));
    h.apply("qia", "state: running");
    let waiting = h
        .wait_for("qia", "waiting in the queue", |s| {
            s.message.as_deref() == Some("waiting for the cluster: Resources")
        })
        .await;
    assert_eq!(waiting.phase, Phase::Starting);
    // An hour in the queue: still waiting, never probed, no start timeout.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let still = h.must_status("qia");
    assert_eq!(still.phase, Phase::Starting, "{still:?}");
    assert_eq!(h.fake.live("qia")[0].probes, 0);
    assert_eq!(h.fake.starts("qia"), 1);

    h.fake.place("qia");
    let running = h
        .wait_for("qia", "running once placed", |s| s.phase == Phase::Running)
        .await;
    assert_eq!(running.local_process(), Some(&h.fake.live("qia")[0].record));
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_can_never_be_placed_fails_at_once() {
    let mut h = Harness::new().await;
    h.fake.behave("qib", |b| b.queued = Some("Priority".into()));
    h.apply("qib", "state: running");
    h.wait_for("qib", "queued", |s| {
        s.message.is_some() && s.phase == Phase::Starting
    })
    .await;
    h.fake
        .never_place("qib", "Slurm cannot ever run job 7: PartitionConfig");
    let failed = h
        .wait_for("qib", "failed", |s| s.phase == Phase::Failed)
        .await;
    assert_eq!(
        failed.message.as_deref(),
        Some("Slurm cannot ever run job 7: PartitionConfig; tried again when the spec changes")
    );
    assert!(h.fake.live("qib").is_empty(), "withdrawn");
    assert_eq!(h.fake.stops("qib"), 1);
    // Asking again would be refused again: it stays down, however long, until an edit.
    assert_eq!(failed.next_retry_at, None);
    assert!(failed.halted_revision.is_some());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(h.fake.starts("qib"), 1);
    h.fake.behave("qib", |b| b.queued = None);
    h.apply("qib", "state: running\nresources: {memory: 1GiB}");
    h.wait_for("qib", "running the edit", |s| s.phase == Phase::Running)
        .await;
    assert_eq!(h.fake.starts("qib"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_delete_while_queued_leaves_nothing() {
    let mut h = Harness::new().await;
    h.fake
        .behave("qic", |b| b.queued = Some("Resources".into()));
    h.apply("qic", "state: running");
    h.wait_for("qic", "queued", |s| {
        s.message.is_some() && s.phase == Phase::Starting
    })
    .await;
    h.delete("qic");
    h.wait_until("forgotten", || h.task_ended("qic")).await;
    assert!(h.status("qic").is_none());
    assert!(h.fake.live("qic").is_empty());
}
