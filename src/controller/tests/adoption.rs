//! devbox starts again over a state dir an earlier devbox left: recorded instances that
//! still run are adopted, ended ones are cleaned up after and started anew, and
//! instances no status records are swept.

use std::time::Duration;

use super::{Setup, spec};
use crate::runtime::ExitInfo;
use crate::status::{InstanceRecord, Phase, ProcessRecord, ServerStatus, SlurmJobRecord};

const PORT: u16 = 8042;

fn record(setup: &Setup, pid: u32) -> ProcessRecord {
    ProcessRecord {
        pid,
        pgid: pid,
        start_ticks: 777,
        instance: format!("earlier-{pid}"),
        socket: Some(
            setup
                .state_dir()
                .join("sockets")
                .join(format!("{pid}.sock")),
        ),
        cgroup: None,
    }
}

/// The status an earlier devbox wrote for `name` running `record` from `body`.
fn running_status(setup: &Setup, name: &str, body: &str, record: ProcessRecord) -> ServerStatus {
    let spec = spec(&setup.config, name, body);
    let mut status = ServerStatus::new(name, spec.id, &spec.display_name);
    status.phase = Phase::Running;
    status.port = Some(PORT);
    status.instance = Some(InstanceRecord::Local(record));
    status.applied_hash = Some(spec.hash.clone());
    status.observed_revision = Some(spec.revision.clone());
    status.started_at = Some("2025-01-15T10:00:00Z".into());
    status
}

#[tokio::test(start_paused = true)]
async fn a_recorded_instance_that_still_runs_is_adopted() {
    let body = "state: running";
    let setup = Setup::new();
    let record = record(&setup, 4242);
    setup.fake.seed_live("tom", record.clone());
    let status = running_status(&setup, "tom", body, record.clone());
    let mut h = setup.recorded(&status).start().await;
    assert!(h.fake.killed_unrecorded().is_empty());

    h.apply("tom", body);
    h.wait_until("adopted", || {
        h.has_event(
            "tom",
            &format!("adopted running process 4242 on port {PORT}"),
        )
    })
    .await;
    // Watched like one of its own for a while: health checks, no new start.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let adopted = h.must_status("tom");
    assert_eq!(adopted.phase, Phase::Running);
    assert_eq!(adopted.local_process(), Some(&record));
    assert_eq!(adopted.port, Some(PORT));
    assert_eq!(h.ctx.ports.owner(PORT).as_deref(), Some("tom"));
    assert_eq!(h.fake.starts("tom"), 0);
    let instance = &h.fake.live("tom")[0];
    assert!(instance.adopted);
    assert!(instance.probes > 0);
    assert!(!h.has_event("tom", "created"));

    // Its exit is handled as any other: a crash restarts it per the spec's policy.
    h.fake.crash("tom", ExitInfo::Signal(9));
    h.wait_for("tom", "restarted", |s| {
        s.phase == Phase::Running && s.restarts == 1
    })
    .await;
    assert_eq!(h.fake.starts("tom"), 1);
    assert!(h.fake.cleaned_up().contains(&record.instance));
    assert_eq!(h.fake.live("tom").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_adopted_instance_of_an_older_spec_is_restarted_with_the_current_one() {
    let setup = Setup::new();
    let record = record(&setup, 4343);
    setup.fake.seed_live("uma", record.clone());
    let status = running_status(&setup, "uma", "state: running", record.clone());
    let mut h = setup.recorded(&status).start().await;

    let current = h.apply(
        "uma",
        "state: running\nenv: {EDITED: \"while devbox was away\"}",
    );
    let running = h
        .wait_for("uma", "running the current spec", |s| {
            s.phase == Phase::Running && s.applied_hash.as_deref() == Some(current.hash.as_str())
        })
        .await;
    assert!(h.has_event("uma", "adopted running process 4343"));
    assert!(h.has_event("uma", "spec changed; restarting to apply it"));
    let adopted = &h.fake.instances("uma")[0];
    assert!(adopted.adopted && adopted.stopped);
    assert_eq!(h.fake.starts("uma"), 1);
    assert_eq!(h.fake.live("uma").len(), 1);
    assert_eq!(running.restarts, 0);
}

#[tokio::test(start_paused = true)]
async fn a_recorded_instance_that_ended_is_cleaned_up_and_started_again() {
    let body = "state: running";
    let setup = Setup::new();
    let record = record(&setup, 4444);
    // Nothing seeded: the instance is gone.
    let status = running_status(&setup, "vic", body, record.clone());
    let mut h = setup.recorded(&status).start().await;

    h.apply("vic", body);
    let running = h
        .wait_for("vic", "running a new instance", |s| {
            s.phase == Phase::Running
                && s.local_process()
                    .is_some_and(|p| p.instance != record.instance)
        })
        .await;
    assert!(h.has_event("vic", "process 4444 ended while devbox was away"));
    assert!(h.fake.cleaned_up().contains(&record.instance));
    assert_eq!(h.fake.starts("vic"), 1);
    // It wants its old port back, and gets it.
    assert_eq!(running.port, Some(PORT));
}

#[tokio::test(start_paused = true)]
async fn a_recorded_instance_that_ended_stays_down_when_its_spec_says_stopped() {
    let setup = Setup::new();
    let record = record(&setup, 4545);
    let status = running_status(&setup, "wes", "state: running", record.clone());
    let mut h = setup.recorded(&status).start().await;

    h.apply("wes", "state: stopped");
    let stopped = h
        .wait_for("wes", "stopped", |s| {
            s.phase == Phase::Stopped && s.instance.is_none()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.fake.starts("wes"), 0);
    assert_eq!(stopped.port, None);
    assert!(h.fake.cleaned_up().contains(&record.instance));
}

#[tokio::test(start_paused = true)]
async fn instances_no_status_records_are_killed_when_devbox_starts() {
    let setup = Setup::new();
    let recorded = record(&setup, 4646);
    let orphan = record(&setup, 4747);
    setup.fake.seed_live("xen", recorded.clone());
    setup.fake.seed_live("yul", orphan.clone());
    let status = running_status(&setup, "xen", "state: running", recorded.clone());
    let h = setup.recorded(&status).start().await;

    assert_eq!(h.fake.killed_unrecorded(), vec![orphan.instance.clone()]);
    assert!(h.fake.live("yul").is_empty());
    assert_eq!(h.fake.live("xen").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_port_of_a_recorded_instance_that_ended_is_free_for_others() {
    let setup = Setup::new();
    let record = record(&setup, 4848);
    let status = running_status(&setup, "abe", "state: running", record);
    let mut h = setup.recorded(&status).start().await;
    h.apply("abe", "state: stopped");
    h.wait_for("abe", "stopped", |s| {
        s.phase == Phase::Stopped && s.instance.is_none()
    })
    .await;
    // Its old port is no longer its own: a spec that pins it runs.
    h.apply("bea", &format!("state: running\nport: {PORT}"));
    let other = h
        .wait_for("bea", "started or failed", |s| {
            matches!(s.phase, Phase::Running | Phase::Failed)
        })
        .await;
    assert_eq!(other.phase, Phase::Running, "{:?}", other.message);
    assert_eq!(h.ctx.ports.owner(PORT).as_deref(), Some("bea"));
}

#[tokio::test(start_paused = true)]
async fn the_password_of_a_recorded_job_is_the_proxys_before_any_task_runs() {
    let setup = Setup::new();
    let spec = spec(&setup.config, "job", "state: running");
    let mut status = ServerStatus::new("job", spec.id, &spec.display_name);
    status.phase = Phase::Running;
    status.port = Some(PORT);
    status.instance = Some(InstanceRecord::Slurm(SlurmJobRecord {
        job_id: 17,
        tag: "earlier-job".into(),
        node: Some("n1".into()),
        address: Some(("n1".into(), 41234)),
    }));
    let setup = setup.recorded(&status);
    let dir = crate::status::server_dir(setup.state_dir(), "job");
    std::fs::write(dir.join("instance-password"), "s3cret-of-the-job\n").unwrap();
    let h = setup.start().await;

    // The proxy serves from the start, before the task adopts the job: it must be
    // able to sign in from its first request.
    let password = h
        .ctx
        .passwords
        .get("job")
        .expect("the recorded job's password");
    assert_eq!(password.instance, "earlier-job");
    assert_eq!(password.password.expose(), "s3cret-of-the-job");
}
