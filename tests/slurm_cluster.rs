//! The Slurm command layer (`devbox::runtime::slurm`) against a real single-node Slurm
//! on loopback, which `scripts/slurm-dev.sh up` brings up (idempotently) before the
//! first test. Jobs run the real job script; one runs the real code-server.
//!
//! The tests run one at a time: a job left pending (the too-many-CPUs test) can hold
//! back the jobs queued after it until Slurm's next backfill pass. Every job a test
//! submits is cancelled when the test ends, also when it fails.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::slurm::{http_get, partition, processes_with};
use devbox::runtime::slurm::{
    JobId, JobInfo, JobRequest, JobScript, JobState, NamedJob, Slurm, SlurmError, SlurmSettings,
    job_script, reported_endpoint,
};

const MIB: u64 = 1024 * 1024;

/// One test at a time (see the module's doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn slurm() -> Slurm {
    Slurm::new(SlurmSettings {
        partition: Some(partition().to_owned()),
        ..SlurmSettings::default()
    })
}

/// A name no other test or run uses: `devbox-test-PID-N`.
fn unique(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "devbox-test-{}-{}-{test}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Cancels its job when dropped, so no failed test leaves a job behind.
struct CancelOnDrop(JobId);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(self.0.to_string()).status();
    }
}

/// A job in a temp dir of its own: its log there, run by `job_script`.
struct TestJob {
    dir: tempfile::TempDir,
    name: String,
}

impl TestJob {
    fn new(test: &str) -> Self {
        let marker = unique(test);
        TestJob {
            dir: tempfile::tempdir().unwrap(),
            name: format!("{marker}:ide"),
        }
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("job.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// The marker in the job's name, which the test puts in its processes' command
    /// lines too.
    fn marker(&self) -> &str {
        self.name.trim_end_matches(":ide")
    }

    fn request(&self, script: JobScript, memory_bytes: u64) -> JobRequest {
        JobRequest {
            name: self.name.clone(),
            script: job_script(&JobScript {
                log_file: self.log_file(),
                ..script
            })
            .unwrap(),
            log_file: self.log_file(),
            working_dir: self.dir.path().to_owned(),
            memory_bytes: Some(memory_bytes),
            cpus: Some(1.0),
            uid_gid: None,
        }
    }

    fn bash(&self, program: &str, env: Vec<(String, String)>) -> JobScript {
        JobScript {
            program: PathBuf::from("/bin/bash"),
            args: vec!["-c".to_owned(), program.to_owned()],
            env,
            ..JobScript::default()
        }
    }
}

/// Polls `probe` every 100 ms until it gives `Some`; panics after `timeout`.
async fn poll<T, F>(what: &str, timeout: Duration, mut probe: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until the job is Running and has reported where it listens.
async fn wait_reported(slurm: &Slurm, id: JobId, job: &TestJob) -> (String, JobInfo) {
    poll(
        "the job to report its endpoint",
        Duration::from_secs(90),
        || async {
            let info = slurm.query(id).await.unwrap();
            match &info.state {
                JobState::Running {
                    comment: Some(comment),
                    ..
                } => Some((comment.clone(), info)),
                JobState::Pending { .. } | JobState::Running { .. } => None,
                other => panic!("job {id} is {other:?}; log:\n{}", job.log()),
            }
        },
    )
    .await
}

/// The machine's name as the job script's default `$(hostname)` gives it.
fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn proc_stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The session a process belongs to.
fn session_of(pid: u32) -> Option<u32> {
    proc_stat_fields(pid).get(3)?.parse().ok()
}

/// The node's memory in MiB (`RealMemory=` of `scontrol show node localhost -o`).
fn node_memory_mib() -> u64 {
    let out = Command::new("scontrol")
        .args(["show", "node", "localhost", "-o"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace()
        .find_map(|field| field.strip_prefix("RealMemory="))
        .unwrap_or_else(|| panic!("no RealMemory in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_job_reports_its_endpoint_and_usage_is_listed_and_leaves_nothing_when_cancelled() {
    let _serial = SERIAL.lock().await;
    let slurm = slurm();
    let job = TestJob::new("endpoint");
    let marker = job.marker().to_owned();
    // The program prints code-server's line with a port of its own, and starts a
    // process in a session of its own (a double fork, as VS Code's terminals do).
    let program = format!(
        "echo HTTP server listening on http://0.0.0.0:45678/; printf 'greeting=%s\\n' \"$GREETING\"; \
         setsid sh -c 'sleep 1000; : {marker}' & sleep 1000; : {marker}"
    );
    let greeting = "it's \"quoted\" $HOME `id`";
    let script = job.bash(&program, vec![("GREETING".to_owned(), greeting.to_owned())]);
    let id = slurm.submit(&job.request(script, 64 * MIB)).await.unwrap();
    let _cancel = CancelOnDrop(id);

    let (comment, info) = wait_reported(&slurm, id, &job).await;
    assert_eq!(comment, format!("{}:45678", hostname()));
    assert_eq!(
        reported_endpoint(&comment),
        Some((hostname(), 45678)),
        "{comment}"
    );
    assert_eq!(info.name.as_deref(), Some(job.name.as_str()));
    assert!(
        matches!(&info.state, JobState::Running { node, .. } if node == "localhost"),
        "{info:?}"
    );
    assert!(
        job.log().contains(&format!("greeting={greeting}\n")),
        "the variable did not reach the program unchanged; log:\n{}",
        job.log()
    );

    let pids = processes_with(&marker);
    let sessions: std::collections::HashSet<_> =
        pids.iter().filter_map(|pid| session_of(*pid)).collect();
    assert!(
        pids.len() >= 2 && sessions.len() >= 2,
        "expected the program and its setsid child in two sessions: pids {pids:?}, sessions {sessions:?}"
    );

    let usage = poll("sstat figures", Duration::from_secs(90), || async {
        slurm.usage(id).await.unwrap()
    })
    .await;
    assert!(usage.memory_bytes > 0, "{usage:?}");
    assert!(usage.cpu_seconds >= 0.0, "{usage:?}");

    let prefix = job.name.trim_end_matches("ide");
    let listed = slurm.jobs_named_with_prefix(prefix).await.unwrap();
    assert_eq!(
        listed,
        [NamedJob {
            id,
            name: job.name.clone()
        }]
    );
    assert!(
        !slurm
            .jobs_named_with_prefix(&format!("{prefix}other"))
            .await
            .unwrap()
            .iter()
            .any(|named| named.id == id)
    );

    slurm.cancel(id).await.unwrap();
    let ended = slurm.wait_ended(id, Duration::from_secs(60)).await.unwrap();
    assert!(
        matches!(&ended, JobState::Ended { state, .. } if state == "CANCELLED")
            || ended == JobState::Gone,
        "{ended:?}"
    );
    let left = poll(
        "the job's processes to be gone",
        Duration::from_secs(30),
        || async {
            let left = processes_with(&marker);
            left.is_empty().then_some(left)
        },
    )
    .await;
    assert!(left.is_empty());
    assert!(
        slurm
            .jobs_named_with_prefix(prefix)
            .await
            .unwrap()
            .is_empty(),
        "a cancelled job is still listed as live"
    );
}

#[tokio::test]
async fn a_program_that_fails_before_listening_ends_the_job_with_its_exit_code() {
    let _serial = SERIAL.lock().await;
    let slurm = slurm();
    let job = TestJob::new("fails");
    let script = job.bash("echo starting; exit 3", vec![]);
    let id = slurm.submit(&job.request(script, 64 * MIB)).await.unwrap();
    let _cancel = CancelOnDrop(id);

    let ended = slurm.wait_ended(id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        ended,
        JobState::Ended {
            state: "FAILED".to_owned(),
            reason: "NonZeroExitCode".to_owned(),
            exit: Some((3, 0)),
        },
        "log:\n{}",
        job.log()
    );
    assert!(
        job.log()
            .contains("devbox: the program exited with status 3 before it listened"),
        "{}",
        job.log()
    );
}

#[tokio::test]
async fn more_memory_than_the_node_has_is_refused_at_submit() {
    let _serial = SERIAL.lock().await;
    let slurm = slurm();
    let job = TestJob::new("bigmem");
    let script = job.bash("sleep 1000", vec![]);
    let memory = 10 * node_memory_mib() * MIB;
    let err = slurm
        .submit(&job.request(script, memory))
        .await
        .unwrap_err();
    let SlurmError::Refused { message } = &err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert_eq!(
        message,
        "Memory specification can not be satisfied; Batch job submission failed: Requested node configuration is not available"
    );
    assert!(
        err.to_string().starts_with("Slurm refused the job: "),
        "{err}"
    );
    assert!(
        slurm
            .jobs_named_with_prefix(&job.name)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn more_cpus_than_the_node_has_stays_pending_with_slurms_reason() {
    let _serial = SERIAL.lock().await;
    let slurm = slurm();
    let job = TestJob::new("bigcpu");
    let request = JobRequest {
        cpus: Some(64.0),
        ..job.request(job.bash("sleep 1000", vec![]), 64 * MIB)
    };
    let id = slurm.submit(&request).await.unwrap();
    let _cancel = CancelOnDrop(id);

    let info = poll("Slurm's reason", Duration::from_secs(30), || async {
        let info = slurm.query(id).await.unwrap();
        match &info.state {
            JobState::Pending { reason } if reason == "None" => None,
            _ => Some(info),
        }
    })
    .await;
    assert_eq!(
        info.state,
        JobState::Pending {
            reason: "PartitionConfig".to_owned()
        }
    );
    slurm.cancel(id).await.unwrap();
    let ended = slurm.wait_ended(id, Duration::from_secs(30)).await.unwrap();
    assert!(
        matches!(&ended, JobState::Ended { state, .. } if state == "CANCELLED")
            || ended == JobState::Gone,
        "{ended:?}"
    );
}

#[tokio::test]
async fn a_real_code_server_reports_its_port_and_direct_requests_get_the_login_page() {
    let _serial = SERIAL.lock().await;
    let slurm = slurm();
    let job = TestJob::new("code-server");
    let marker = job.marker().to_owned();
    let data = job.dir.path().join(&marker);
    std::fs::create_dir_all(data.join("home")).unwrap();
    let path = |name: &str| data.join(name).to_str().unwrap().to_owned();
    let script = JobScript {
        program: common::code_server(),
        args: vec![
            "--bind-addr".to_owned(),
            "0.0.0.0:0".to_owned(),
            "--auth".to_owned(),
            "password".to_owned(),
            "--user-data-dir".to_owned(),
            path("user-data"),
            "--extensions-dir".to_owned(),
            path("extensions"),
            "--disable-telemetry".to_owned(),
            "--disable-update-check".to_owned(),
        ],
        env: vec![
            ("PASSWORD".to_owned(), format!("pw-{marker}")),
            ("HOME".to_owned(), path("home")),
        ],
        ..JobScript::default()
    };
    let submitted = Instant::now();
    let id = slurm
        .submit(&job.request(script, 1024 * MIB))
        .await
        .unwrap();
    let _cancel = CancelOnDrop(id);

    let (comment, _) = wait_reported(&slurm, id, &job).await;
    let reported_after = submitted.elapsed();
    let (host, port) = reported_endpoint(&comment).unwrap();
    assert_eq!(host, hostname());
    let healthz = poll("/healthz", Duration::from_secs(60), || {
        let host = host.clone();
        async move {
            tokio::task::spawn_blocking(move || http_get(&host, port, "/healthz"))
                .await
                .unwrap()
                .filter(|reply| reply.status == 200)
        }
    })
    .await;
    eprintln!(
        "code-server as Slurm job {id}: submit to its comment {comment} in {reported_after:?}, to /healthz 200 in {:?}",
        submitted.elapsed()
    );
    let healthz = String::from_utf8_lossy(&healthz.body).into_owned();
    assert!(healthz.contains("\"status\""), "{healthz}");

    let (host_, port_) = (host.clone(), port);
    let (root, login) = tokio::task::spawn_blocking(move || {
        (
            http_get(&host_, port_, "/").unwrap(),
            http_get(&host_, port_, "/login").unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(root.status, 302, "{root:?}");
    assert!(
        root.header("location")
            .is_some_and(|to| to.starts_with("./login")),
        "{root:?}"
    );
    assert_eq!(login.status, 200);
    let login = String::from_utf8_lossy(&login.body);
    assert!(
        login.contains("<title>code-server login</title>") && login.contains("type=\"password\""),
        "{login}"
    );

    slurm.cancel(id).await.unwrap();
    let ended = slurm.wait_ended(id, Duration::from_secs(60)).await.unwrap();
    assert!(
        matches!(&ended, JobState::Ended { state, .. } if state == "CANCELLED")
            || ended == JobState::Gone,
        "{ended:?}"
    );
    poll(
        "code-server's processes to be gone",
        Duration::from_secs(30),
        || async { processes_with(&marker).is_empty().then_some(()) },
    )
    .await;
    assert!(
        http_get(&host, port, "/healthz").is_none(),
        "code-server still answers after the job ended"
    );
}
