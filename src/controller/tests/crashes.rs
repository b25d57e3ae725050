//! Exits of a running instance: restarts with backoff, the crash loop, recovery after a
//! stable minute, and the restart policies.

use std::time::Duration;

use tokio::time::Instant;

use super::{Harness, Setup, between};
use crate::runtime::ExitInfo;
use crate::status::{Phase, ServerStatus};

fn delay_text(delay: Duration) -> String {
    humantime::format_duration(delay).to_string()
}

/// Ends `name`'s instance with `exit` and waits until the reconciler has recorded it.
async fn crash(h: &Harness, name: &str, exit: ExitInfo) -> ServerStatus {
    h.fake.crash(name, exit);
    h.wait_for(name, "recording the exit", |s| {
        s.instance.is_none() && s.last_exit.as_deref() == Some(exit.to_string().as_str())
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn crashes_restart_after_growing_delays_until_the_server_shows_failed() {
    let mut h = Harness::new().await;
    h.fake.behave("dan", |b| {
        b.exit_reason = Some("out of memory (limit 2 GiB)".into())
    });
    h.apply("dan", "state: running");
    h.wait_for("dan", "running", |s| s.phase == Phase::Running)
        .await;
    let backoff = h.ctx.config.controller.restart_backoff.clone();
    let threshold = h.ctx.config.controller.crash_loop_threshold;

    for attempt in 1..=threshold {
        let pid = h.fake.live("dan")[0].record.pid;
        let crashed_at = Instant::now();
        let status = crash(&h, "dan", ExitInfo::Code(1)).await;
        let delay = backoff.delay(attempt);
        let reason = "out of memory (limit 2 GiB): code-server exited (exit code 1)";
        assert_eq!(status.consecutive_crashes, attempt);
        assert_eq!(status.restarts, attempt);
        assert!(status.next_retry_at.is_some());
        if attempt < threshold {
            assert_eq!(status.phase, Phase::Starting, "attempt {attempt}");
            assert_eq!(
                status.message.as_deref(),
                Some(
                    format!(
                        "restarting in {} (attempt {attempt}): {reason}",
                        delay_text(delay)
                    )
                    .as_str()
                )
            );
        } else {
            assert_eq!(status.phase, Phase::Failed, "attempt {attempt}");
            assert_eq!(status.message.as_deref(), Some(reason));
        }
        assert!(h.has_event(
            "dan",
            &format!("out of memory (limit 2 GiB): process {pid} exited (exit code 1)")
        ));
        assert!(h.has_event("dan", &format!("{reason}; retry in {}", delay_text(delay))));

        // Restarted exactly when the backoff for this attempt has passed (failed too).
        let starts = attempt as usize + 1;
        h.wait_until("restarted", || h.fake.starts("dan") == starts)
            .await;
        let restarted = h.fake.started("dan")[starts - 1].started_at;
        assert_eq!(between(crashed_at, restarted), delay, "attempt {attempt}");
        h.wait_for("dan", "running again", |s| s.phase == Phase::Running)
            .await;
    }
    assert_eq!(h.fake.live("dan").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_backoff_and_the_threshold_are_the_configs() {
    let mut h = Setup::new()
        .config(|config| {
            config.controller.restart_backoff.initial = "2s".parse().unwrap();
            config.controller.restart_backoff.max = "5s".parse().unwrap();
            config.controller.crash_loop_threshold = 2;
        })
        .start()
        .await;
    h.apply("dee", "state: running");
    h.wait_for("dee", "running", |s| s.phase == Phase::Running)
        .await;
    let mut delays = Vec::new();
    let mut phases = Vec::new();
    for _ in 0..4 {
        let crashed_at = Instant::now();
        let status = crash(&h, "dee", ExitInfo::Code(1)).await;
        phases.push(status.phase);
        let starts = h.fake.starts("dee") + 1;
        h.wait_until("restarted", || h.fake.starts("dee") == starts)
            .await;
        delays.push(between(
            crashed_at,
            h.fake.started("dee")[starts - 1].started_at,
        ));
        h.wait_for("dee", "running", |s| s.phase == Phase::Running)
            .await;
    }
    let secs = Duration::from_secs;
    assert_eq!(delays, [secs(2), secs(4), secs(5), secs(5)]);
    assert_eq!(
        phases,
        [Phase::Starting, Phase::Failed, Phase::Failed, Phase::Failed]
    );
}

#[tokio::test(start_paused = true)]
async fn an_edit_does_not_wait_out_the_backoff() {
    let mut h = Harness::new().await;
    h.apply("eve", "state: running");
    h.wait_for("eve", "running", |s| s.phase == Phase::Running)
        .await;
    for _ in 0..3 {
        crash(&h, "eve", ExitInfo::Signal(11)).await;
        h.wait_for("eve", "restarted", |s| s.phase == Phase::Running)
            .await;
    }
    // The fourth crash schedules a retry 8 s away; an edit starts the new spec at once.
    let status = crash(&h, "eve", ExitInfo::Signal(11)).await;
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("restarting in 8s (attempt 4)"),
        "{status:?}"
    );
    let edited_at = Instant::now();
    let edited = h.apply("eve", "state: running\nenv: {FIXED: \"1\"}");
    let running = h
        .wait_for("eve", "running the edit", |s| s.phase == Phase::Running)
        .await;
    let last = h.fake.started("eve").pop().unwrap();
    assert_eq!(between(edited_at, last.started_at), Duration::ZERO);
    assert_eq!(running.applied_hash.as_deref(), Some(edited.hash.as_str()));
    // Crashes of the old spec do not count against the new one.
    assert_eq!(running.consecutive_crashes, 0);
    assert_eq!(running.next_retry_at, None);
    // The retry of the old spec is not carried out on top of it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.fake.starts("eve"), 5);
}

#[tokio::test(start_paused = true)]
async fn a_minute_of_health_forgives_earlier_crashes() {
    let mut h = Harness::new().await;
    h.apply("fred", "state: running");
    h.wait_for("fred", "running", |s| s.phase == Phase::Running)
        .await;

    crash(&h, "fred", ExitInfo::Code(2)).await;
    h.wait_for("fred", "running", |s| s.phase == Phase::Running)
        .await;
    // Thirty seconds later it crashes again: the second crash in a row.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let second = crash(&h, "fred", ExitInfo::Code(2)).await;
    assert_eq!(second.consecutive_crashes, 2);
    h.wait_for("fred", "running", |s| s.phase == Phase::Running)
        .await;

    // Healthy for a minute, it has recovered: the count goes back to zero at the first
    // health check after that minute.
    let healthy_since = h.fake.live("fred")[0].started_at;
    let recovered = h
        .wait_for("fred", "recovered", |s| s.consecutive_crashes == 0)
        .await;
    assert_eq!(recovered.phase, Phase::Running);
    let took = between(healthy_since, Instant::now());
    let health_interval = h.ctx.config.controller.health_interval.get();
    assert!(
        took >= Duration::from_secs(60) && took <= Duration::from_secs(60) + health_interval,
        "{took:?}"
    );
    // The next crash is the first again, with the first delay.
    let third = crash(&h, "fred", ExitInfo::Code(2)).await;
    assert_eq!(third.consecutive_crashes, 1);
    assert!(
        third
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("restarting in 1s (attempt 1)"),
        "{third:?}"
    );
    assert_eq!(third.restarts, 3);
}

/// Runs `name` under `policy`, ends it with `exit`, and returns the harness and status
/// once the exit is recorded.
async fn exit_under(policy: &str, exit: ExitInfo) -> (Harness, ServerStatus) {
    let mut h = Harness::new().await;
    h.apply("gina", &format!("state: running\nrestart_policy: {policy}"));
    h.wait_for("gina", "running", |s| s.phase == Phase::Running)
        .await;
    let status = crash(&h, "gina", exit).await;
    (h, status)
}

/// `name` stays down for ten minutes and a rescan of the same spec.
async fn stays_down(h: &mut Harness, body: &str) {
    tokio::time::sleep(Duration::from_secs(600)).await;
    h.apply("gina", body);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.fake.starts("gina"), 1);
    assert!(h.fake.live("gina").is_empty());
}

#[tokio::test(start_paused = true)]
async fn restart_policy_never_keeps_any_exit_down_until_the_spec_changes() {
    for (exit, phase) in [
        (ExitInfo::Code(0), Phase::Stopped),
        (ExitInfo::Code(3), Phase::Failed),
    ] {
        let body = "state: running\nrestart_policy: never";
        let (mut h, status) = exit_under("never", exit).await;
        let spec = h.spec("gina", body);
        assert_eq!(status.phase, phase, "{exit}");
        assert_eq!(
            status.message.as_deref(),
            Some(
                format!(
                    "exited ({exit}); restart_policy never keeps it down until the spec changes"
                )
                .as_str()
            )
        );
        assert_eq!(status.halted_revision.as_ref(), Some(&spec.revision));
        assert_eq!(status.next_retry_at, None);
        assert_eq!(status.restarts, 0);
        stays_down(&mut h, body).await;

        // An edit lifts the halt.
        h.apply(
            "gina",
            "state: running\nrestart_policy: never\nenv: {AGAIN: \"1\"}",
        );
        let running = h
            .wait_for("gina", "running after the edit", |s| {
                s.phase == Phase::Running
            })
            .await;
        assert_eq!(running.halted_revision, None);
        assert_eq!(h.fake.starts("gina"), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn restart_policy_on_failure_restarts_a_crash_but_not_a_clean_exit() {
    let body = "state: running\nrestart_policy: on-failure";
    let (mut h, clean) = exit_under("on-failure", ExitInfo::Code(0)).await;
    assert_eq!(clean.phase, Phase::Stopped);
    assert_eq!(
        clean.message.as_deref(),
        Some(
            "exited (exit code 0); restart_policy on-failure keeps it down until the spec changes"
        )
    );
    assert_eq!(
        clean.halted_revision.as_ref(),
        Some(&h.spec("gina", body).revision)
    );
    stays_down(&mut h, body).await;

    let (h, crashed) = exit_under("on-failure", ExitInfo::Signal(9)).await;
    assert_eq!(crashed.phase, Phase::Starting);
    assert_eq!(crashed.halted_revision, None);
    assert!(
        crashed
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("restarting in 1s (attempt 1): code-server exited (signal 9)"),
        "{crashed:?}"
    );
    h.wait_for("gina", "restarted", |s| s.phase == Phase::Running)
        .await;
    assert_eq!(h.fake.starts("gina"), 2);
}

#[tokio::test(start_paused = true)]
async fn restart_policy_always_restarts_a_clean_exit() {
    let (h, status) = exit_under("always", ExitInfo::Code(0)).await;
    assert_eq!(status.phase, Phase::Starting);
    assert_eq!(status.halted_revision, None);
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("restarting in 1s (attempt 1): code-server exited (exit code 0)"),
        "{status:?}"
    );
    let running = h
        .wait_for("gina", "restarted", |s| s.phase == Phase::Running)
        .await;
    assert_eq!(h.fake.starts("gina"), 2);
    assert_eq!(running.restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn an_exit_before_the_first_answer_is_a_crash_of_the_start() {
    let mut h = Harness::new().await;
    h.fake
        .behave("hal", |b| b.boot_time = Duration::from_secs(30));
    h.apply("hal", "state: running");
    h.wait_until("started", || h.fake.starts("hal") == 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let crashed_at = Instant::now();
    h.fake.crash("hal", ExitInfo::Code(127));
    let status = h
        .wait_for("hal", "recording the crash", |s| s.consecutive_crashes == 1)
        .await;
    assert_eq!(status.phase, Phase::Starting);
    assert!(
        status.message.as_deref().unwrap_or_default().starts_with(
            "restarting in 1s (attempt 1): code-server exited during start (exit code 127)"
        ),
        "{status:?}"
    );
    assert_eq!(status.instance, None);
    // The crashed instance is cleaned up after, and the next start comes after the backoff.
    let first = h.fake.started("hal")[0].record.instance.clone();
    assert!(h.fake.cleaned_up().contains(&first));
    h.wait_until("restarted", || h.fake.starts("hal") == 2)
        .await;
    assert_eq!(
        between(crashed_at, h.fake.started("hal")[1].started_at),
        Duration::from_secs(1)
    );
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_never_answers_is_stopped_at_the_start_timeout() {
    let mut h = Harness::new().await;
    h.fake.behave("ida", |b| b.failing_probes = u32::MAX);
    h.apply("ida", "state: running");
    let status = h
        .wait_for("ida", "timed out", |s| s.consecutive_crashes == 1)
        .await;
    let first = h.fake.started("ida")[0].clone();
    let timeout = h.ctx.config.code_server.start_timeout;
    assert!(first.stopped);
    // Probes every 25 ms until the deadline; the one at the deadline is the last.
    let waited = between(first.started_at, first.ended_at.unwrap());
    assert!(
        waited >= timeout.get() && waited < timeout.get() + Duration::from_millis(100),
        "{waited:?}"
    );
    assert_eq!(status.phase, Phase::Starting);
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with(&format!(
                "restarting in 1s (attempt 1): code-server did not answer /healthz within {timeout}"
            )),
        "{status:?}"
    );
    assert!(h.has_event("ida", "start timed out: process"));
    assert!(h.fake.live("ida").len() <= 1);
}

#[tokio::test(start_paused = true)]
async fn an_exit_during_the_start_follows_the_restart_policy() {
    let mut h = Harness::new().await;
    h.fake
        .behave("ida", |b| b.boot_time = Duration::from_secs(30));
    h.apply("ida", "state: running\nrestart_policy: never");
    h.wait_until("started", || h.fake.starts("ida") == 1).await;
    h.fake.crash("ida", ExitInfo::Code(2));
    let status = h
        .wait_for("ida", "kept down", |s| s.phase == Phase::Failed)
        .await;
    assert_eq!(
        status.message.as_deref(),
        Some(
            "exited during start (exit code 2); restart_policy never keeps it down until the spec changes"
        )
    );
    assert!(status.halted_revision.is_some());
    assert_eq!(status.next_retry_at, None);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.fake.starts("ida"), 1, "never restarted");
}
