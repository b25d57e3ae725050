//! A running instance watched: restarted after failed health checks, stopped when no
//! browser has used it for its spec's `idle_timeout`.

use std::time::{Duration, SystemTime};

use super::{Harness, between};
use crate::runtime::fake::Health;
use crate::status::Phase;

/// Milliseconds since the epoch, `ago` before now (wall clock: code-server's heartbeat is
/// a wall-clock time).
fn heartbeat(ago: Duration) -> u64 {
    (SystemTime::now() - ago)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(start_paused = true)]
async fn three_failed_health_checks_restart_the_instance() {
    let mut h = Harness::new().await;
    h.apply("oly", "state: running");
    h.wait_for("oly", "running", |s| s.phase == Phase::Running)
        .await;
    let first = h.fake.live("oly")[0].clone();
    h.fake.set_health("oly", Health::Failing);

    let restarted = h
        .wait_for("oly", "restarted", |s| {
            s.phase == Phase::Running && s.restarts == 1
        })
        .await;
    let interval = h.ctx.config.controller.health_interval.get();
    let backoff = h.ctx.config.controller.restart_backoff.clone();
    let started = h.fake.started("oly");
    assert_eq!(started.len(), 2);
    let first = started.iter().find(|i| i.record == first.record).unwrap();
    assert!(first.stopped);
    // Checked every health interval; stopped at the third failure, restarted after the
    // first backoff delay.
    let stopped_at = first.ended_at.unwrap();
    assert_eq!(between(first.started_at, stopped_at), interval * 3);
    assert_eq!(between(stopped_at, started[1].started_at), backoff.delay(1));
    assert_eq!(restarted.consecutive_crashes, 1);

    let events = h.events("oly");
    let failures: Vec<&String> = events
        .iter()
        .filter(|e| e.starts_with("health check failed"))
        .collect();
    assert_eq!(failures.len(), 3, "{events:#?}");
    for (n, failure) in failures.iter().enumerate() {
        assert!(
            failure.starts_with(&format!("health check failed ({}/3): ", n + 1)),
            "{failure}"
        );
        assert!(failure.contains("connection reset by peer"), "{failure}");
    }
    assert!(h.has_event(
        "oly",
        &format!("unhealthy: process {} ended", first.record.pid)
    ));
    assert!(h.has_event("oly", "restarted after 3 failed health checks"));
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_answers_again_in_time_is_kept() {
    let mut h = Harness::new().await;
    h.apply("pam", "state: running");
    h.wait_for("pam", "running", |s| s.phase == Phase::Running)
        .await;
    let interval = h.ctx.config.controller.health_interval.get();
    h.fake.set_health("pam", Health::Failing);
    h.wait_until("two failed checks", || {
        h.has_event("pam", "health check failed (2/3)")
    })
    .await;
    h.fake.set_health("pam", Health::Alive);
    tokio::time::sleep(interval * 10).await;
    assert!(h.has_event("pam", "health check passes again"));
    assert!(!h.has_event("pam", "health check failed (3/3)"));
    assert_eq!(h.fake.starts("pam"), 1);
    assert_eq!(h.fake.stops("pam"), 0);
    assert_eq!(h.must_status("pam").phase, Phase::Running);
}

#[tokio::test(start_paused = true)]
async fn an_idle_instance_is_stopped_and_stays_down_until_its_spec_changes() {
    let mut h = Harness::new().await;
    let body = "state: running\nidle_timeout: 30m";
    let spec = h.apply("quin", body);
    h.wait_for("quin", "running", |s| s.phase == Phase::Running)
        .await;
    let pid = h.fake.live("quin")[0].record.pid;
    h.fake.set_health(
        "quin",
        Health::Expired {
            last_heartbeat: heartbeat(Duration::from_secs(2 * 3600)),
        },
    );
    let culled = h
        .wait_for("quin", "culled", |s| s.phase == Phase::Stopped)
        .await;
    let message =
        "stopped after 30m without a connected browser; it starts again when its spec changes";
    assert_eq!(culled.message.as_deref(), Some(message));
    assert_eq!(culled.halted_revision.as_ref(), Some(&spec.revision));
    assert_eq!(culled.instance, None);
    assert_eq!(h.fake.stops("quin"), 1);
    assert!(h.fake.live("quin").is_empty());
    assert!(h.has_event("quin", message));
    assert!(h.has_event("quin", &format!("idle: process {pid} ended")));

    // Neither time nor a rescan of the same file brings it back.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    h.apply("quin", body);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.fake.starts("quin"), 1);
    assert_eq!(h.must_status("quin").phase, Phase::Stopped);

    // An edit does.
    h.apply("quin", "state: running\nidle_timeout: 45m");
    let running = h
        .wait_for("quin", "running after the edit", |s| {
            s.phase == Phase::Running
        })
        .await;
    assert_eq!(running.halted_revision, None);
    assert_eq!(running.message, None);
    assert_eq!(h.fake.starts("quin"), 2);
}

#[tokio::test(start_paused = true)]
async fn an_instance_no_browser_ever_opened_is_idle_from_its_start() {
    let mut h = Harness::new().await;
    h.apply("ray", "state: running\nidle_timeout: 10m");
    h.wait_for("ray", "running", |s| s.phase == Phase::Running)
        .await;
    let instance = h.fake.live("ray")[0].clone();
    h.fake
        .set_health("ray", Health::Expired { last_heartbeat: 0 });
    h.wait_for("ray", "culled", |s| s.phase == Phase::Stopped)
        .await;
    let ran = between(
        instance.started_at,
        h.fake.instances("ray")[0].ended_at.unwrap(),
    );
    let limit = Duration::from_secs(600);
    let interval = h.ctx.config.controller.health_interval.get();
    // Culled at the first health check past the limit.
    assert!(ran > limit && ran <= limit + interval, "{ran:?}");
}

#[tokio::test(start_paused = true)]
async fn without_idle_timeout_an_unused_instance_keeps_running() {
    let mut h = Harness::new().await;
    h.apply("sam", "state: running");
    h.wait_for("sam", "running", |s| s.phase == Phase::Running)
        .await;
    h.fake.set_health(
        "sam",
        Health::Expired {
            last_heartbeat: heartbeat(Duration::from_secs(7 * 24 * 3600)),
        },
    );
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(h.must_status("sam").phase, Phase::Running);
    assert_eq!(h.fake.stops("sam"), 0);
}
