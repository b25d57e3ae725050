//! devbox's Slurm backend end to end: the real `devbox serve` with `runtime.slurm` in its
//! config runs specs saying `runtime: slurm` as jobs of the real single-node Slurm on
//! loopback (`scripts/slurm-dev.sh up`, brought up before the first test), each running
//! the real code-server with password auth. Each test asserts what a user sees (the
//! API, the proxy, `devbox describe`, a browser) and what Slurm says (`squeue`,
//! `scontrol`):
//!
//! - a spec becomes a RUNNING job with the spec's allocation, served through devbox
//!   (which signs in for the browser) and refusing anyone who goes to the job directly;
//! - stop ends the job and every process in it, a double-forked one too;
//! - an edit restarts it as a new job; delete and devbox's shutdown leave no job;
//! - a devbox killed and started again adopts the same job;
//! - a job cancelled from outside restarts per restart policy;
//! - a `slurmctld` restart changes nothing for a running server;
//! - a spec asking for more than the node has fails with Slurm's reason;
//! - a real Chromium renders the workbench of a job (`tests/browser/slurm_ide.mjs`).
//!
//! The tests run one at a time (they share the one node and two restart its
//! controller or start a browser). Every failure message ends with devbox's log and
//! Slurm's queue; whatever a failed test leaves running is cancelled by its job names.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::slurm::{
    dev_script, http_get, is_live, job_pids, job_state, live_jobs, partition, processes_with,
    squeue_all,
};
use common::{Devbox, Options, Reply, request_once};

/// How long any one wait may take: a job's code-server answers within seconds here.
const WAIT: Duration = Duration::from_secs(60);
/// A Slurm server with the allocation of the task.
const SPEC: &str = "  runtime: slurm\n  state: running\n  resources: {memory: 1GiB, cpus: 1}\n";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Held for a whole test (see the module's doc); a test that failed holding it does
/// not stop the next one.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The first part of every job name of the devbox with this state dir (the backend
/// names jobs `devbox-<digest of the state dir>-<server>.<tag>`).
fn job_prefix(state: &Path) -> String {
    let absolute = std::path::absolute(state).unwrap();
    let digest = devbox::digest::sha256_hex(absolute.to_string_lossy().as_bytes(), 5);
    format!("devbox-{digest}-")
}

/// Cancels every live job whose name starts with `prefix` when dropped: what a failed
/// test (or a devbox killed for good) leaves behind.
struct CancelLeftovers {
    prefix: String,
}

impl Drop for CancelLeftovers {
    fn drop(&mut self) {
        for (id, name) in live_jobs() {
            if name.starts_with(&self.prefix) {
                let _ = Command::new("scancel").arg(id.to_string()).status();
            }
        }
    }
}

/// A devbox whose config points at the dev cluster's partition.
struct SlurmDevbox {
    devbox: Devbox,
    /// Dropped after `devbox`, whose own drop stops its servers first.
    leftovers: CancelLeftovers,
}

impl std::ops::Deref for SlurmDevbox {
    type Target = Devbox;
    fn deref(&self) -> &Devbox {
        &self.devbox
    }
}

impl std::ops::DerefMut for SlurmDevbox {
    fn deref_mut(&mut self) -> &mut Devbox {
        &mut self.devbox
    }
}

/// A server's job as devbox recorded it once the server ran.
#[derive(Debug, Clone)]
struct Job {
    id: u64,
    node: String,
    /// Where the job's code-server listens, as the job reported it.
    host: String,
    job_port: u16,
    /// The server's port in devbox's proxy (`/vscode/<port>/`).
    port: u16,
}

impl SlurmDevbox {
    fn start() -> Self {
        Self::start_with("")
    }

    /// With `extra` YAML appended to the config (top-level keys other than `runtime`).
    fn start_with(extra: &str) -> Self {
        Self::start_opts(extra, Options::default(), |_| {})
    }

    /// With `extra` YAML appended to the config, other options and a preparation of the
    /// test's root as [`Devbox::start_opts`] takes them.
    fn start_opts(extra: &str, options: Options, prepare: impl FnOnce(&Path)) -> Self {
        let config = format!(
            "runtime:\n  slurm:\n    partition: {}\n{extra}",
            partition()
        );
        let devbox = Devbox::start_opts(Options { config, ..options }, prepare);
        let prefix = job_prefix(&devbox.state());
        SlurmDevbox {
            devbox,
            leftovers: CancelLeftovers { prefix },
        }
    }

    fn prefix(&self) -> &str {
        &self.leftovers.prefix
    }

    /// devbox's log tail and Slurm's queue, for failure messages.
    fn context(&self) -> String {
        format!(
            "--- devbox log (tail) ---\n{}\n--- squeue -t all (id name state reason comment) ---\n{}",
            self.log_tail(),
            squeue_all()
        )
    }

    /// Polls `probe` until it gives `Some`; after [`WAIT`] panics naming `what`, with
    /// the context of that moment.
    fn wait<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(value) = probe() {
                return value;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}\n{}",
                    self.context()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The live jobs of this devbox (by name), as (id, name).
    fn live_jobs(&self) -> Vec<(u64, String)> {
        live_jobs()
            .into_iter()
            .filter(|(_, name)| name.starts_with(self.prefix()))
            .collect()
    }

    /// The live jobs of server `name`.
    fn live_jobs_of(&self, name: &str) -> Vec<u64> {
        let start = format!("{}{name}.", self.prefix());
        self.live_jobs()
            .into_iter()
            .filter(|(_, job)| job.starts_with(&start))
            .map(|(id, _)| id)
            .collect()
    }

    /// Waits until the API lists `name` as running and its status file records a
    /// running Slurm job other than `not`.
    fn wait_job(&self, name: &str, not: Option<u64>) -> Job {
        let job = self.wait(
            &format!("{name} to run as a Slurm job (not {not:?})"),
            || {
                let server = self.server(name)?;
                let status = self.status(name)?;
                if server["status"] != "running" || status["phase"] != "running" {
                    return None;
                }
                let instance = &status["instance"];
                assert_eq!(
                    instance["backend"],
                    "slurm",
                    "{name} runs, but not as a Slurm job: {status}\n{}",
                    self.context()
                );
                let id = instance["job_id"].as_u64()?;
                if Some(id) == not {
                    return None;
                }
                Some(Job {
                    id,
                    node: instance["node"].as_str()?.to_owned(),
                    host: instance["address"][0].as_str()?.to_owned(),
                    job_port: u16::try_from(instance["address"][1].as_u64()?).ok()?,
                    port: u16::try_from(server["port"].as_u64()?).ok()?,
                })
            },
        );
        assert_eq!(
            job_state(job.id).as_deref(),
            Some("RUNNING"),
            "{name} runs as job {}, which Slurm does not run\n{}",
            job.id,
            self.context()
        );
        job
    }

    /// Waits until the API lists `name` with `status` (the API word); returns it.
    fn wait_status(&self, name: &str, status: &str) -> Value {
        self.wait(&format!("{name} to be {status}"), || {
            self.server(name).filter(|s| s["status"] == status)
        })
    }

    /// Asserts that job `id` is over (ended, or forgotten by Slurm).
    fn assert_over(&self, id: u64, what: &str) {
        let state = job_state(id);
        assert!(
            state.as_deref().is_none_or(|s| !is_live(s)),
            "{what}: job {id} is still {state:?}\n{}",
            self.context()
        );
    }

    /// Opens `/vscode/<port>/` through devbox the way a browser does (the redirect to
    /// the workspace folder, then the page) and asserts it is VS Code's workbench and
    /// that no answer sets code-server's session cookie. Returns the page.
    fn assert_workbench(&self, port: u16, when: &str) -> Reply {
        let root = request_once("GET", &self.url(&format!("/vscode/{port}/")), &[], None);
        let location = root.header("location").unwrap_or_default().to_owned();
        assert!(
            root.status == 302 && location.starts_with("./?folder="),
            "{when}: /vscode/{port}/ through devbox should redirect to the workspace folder, \
             answered {} (location {location:?}): {}\n{}",
            root.status,
            excerpt(&root.text),
            self.context()
        );
        let page = request_once(
            "GET",
            &self.url(&format!("/vscode/{port}/{}", &location[2..])),
            &[],
            None,
        );
        assert!(
            page.status == 200 && page.text.contains("workbench.css"),
            "{when}: the workbench page through devbox answered {}: {}\n{}",
            page.status,
            excerpt(&page.text),
            self.context()
        );
        for reply in [&root, &page] {
            let cookies: Vec<&str> = reply
                .headers
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
                .map(|(_, value)| value.as_str())
                .collect();
            assert!(
                !cookies.iter().any(|c| c.starts_with("code-server-session")),
                "{when}: devbox passed code-server's session cookie on: {cookies:?}"
            );
        }
        page
    }

    /// `devbox describe <name>`'s output (it reads the state dir).
    fn describe(&self, name: &str) -> String {
        let output = self.command().args(["describe", name]).output().unwrap();
        assert!(
            output.status.success(),
            "devbox describe {name}: {}",
            common::exit_and_output(&output)
        );
        common::stdout(&output)
    }
}

/// The start of a page, for failure messages.
fn excerpt(text: &str) -> String {
    text.chars().take(400).collect()
}

/// The value of `label:` in `devbox describe`'s output.
fn described<'a>(describe: &'a str, label: &str) -> Option<&'a str> {
    describe
        .lines()
        .find_map(|line| line.strip_prefix(label)?.strip_prefix(':').map(str::trim))
}

/// `scancel ID`, as an admin outside devbox would.
fn scancel(id: u64) {
    let status = Command::new("scancel")
        .arg(id.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "scancel {id}: {status}");
}

/// The cgroup directories of process `pid` other than the root ones: where the job's
/// processes are tracked (cgroup v1: a directory per controller).
fn cgroup_dirs(pid: u32) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let relative = path.trim_start_matches('/');
            if relative.is_empty() {
                return None;
            }
            Some(if controllers.is_empty() {
                let unified = root.join("unified");
                if unified.is_dir() {
                    unified
                } else {
                    root.to_owned()
                }
                .join(relative)
            } else {
                root.join(controllers.trim_start_matches("name="))
                    .join(relative)
            })
        })
        .collect()
}

/// The session a process belongs to.
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(3)?.parse().ok()
}

#[test]
fn a_slurm_spec_runs_as_a_job_served_through_devbox_and_closed_to_direct_visitors() {
    let _serial = one_at_a_time();
    let devbox = SlurmDevbox::start();
    devbox.write_spec("ide", SPEC);
    let job = devbox.wait_job("ide", None);

    let jobs = devbox.live_jobs();
    assert!(
        jobs.len() == 1
            && jobs[0].0 == job.id
            && jobs[0].1.starts_with(&format!("{}ide.", devbox.prefix())),
        "one live job named after this devbox and the server: {jobs:?}\n{}",
        devbox.context()
    );
    assert_eq!(job.node, "localhost", "{job:?}");
    let listed = devbox.server("ide").expect("listed");
    assert_eq!(
        listed["slurm_job"]["id"], job.id,
        "the API shows the job: {listed}"
    );
    assert_eq!(listed["slurm_job"]["node"], "localhost", "{listed}");
    let allocation = Command::new("squeue")
        .args(["-h", "-j", &job.id.to_string(), "-o", "%m %C"])
        .output()
        .unwrap();
    assert_eq!(
        common::stdout(&allocation).trim(),
        "1G 1",
        "the job's memory and CPUs are the spec's resources"
    );

    let page = devbox.assert_workbench(job.port, "a Slurm server");
    let password = std::fs::read_to_string(devbox.state().join("servers/ide/instance-password"))
        .expect("devbox keeps the instance's password");
    let password = password.trim();
    assert!(password.len() >= 16, "a real password: {password:?}");
    assert!(
        !page.text.contains(password) && !page.headers.iter().any(|(_, v)| v.contains(password)),
        "the page the browser gets holds the instance's password"
    );
    let auth = std::fs::read_to_string(
        devbox
            .state()
            .join("servers/ide/xdg-config/code-server-auth.yaml"),
    )
    .expect("the instance's code-server config");
    assert!(
        !auth.contains(password),
        "the instance's config holds the plain password: {auth}"
    );

    // Straight to the job, without devbox: code-server's login, not the IDE.
    let direct = http_get(&job.host, job.job_port, "/").unwrap_or_else(|| {
        panic!(
            "nothing answers at {}:{}, where job {} says it listens\n{}",
            job.host,
            job.job_port,
            job.id,
            devbox.context()
        )
    });
    assert!(
        direct.status == 302
            && direct
                .header("location")
                .is_some_and(|to| to.starts_with("./login")),
        "a direct request should get code-server's login redirect: {direct:?}"
    );
    let login = http_get(&job.host, job.job_port, "/login").expect("the login page");
    let login = String::from_utf8_lossy(&login.body);
    assert!(
        login.contains("type=\"password\"") && !login.contains("workbench.css"),
        "{}",
        excerpt(&login)
    );

    let describe = devbox.describe("ide");
    assert_eq!(
        described(&describe, "SLURM JOB"),
        Some(job.id.to_string().as_str()),
        "devbox describe shows the job id:\n{describe}"
    );
    assert_eq!(
        described(&describe, "NODE"),
        Some("localhost"),
        "devbox describe shows the node:\n{describe}"
    );
}

#[test]
fn stop_ends_the_job_and_every_process_in_it_a_double_forked_one_too() {
    let _serial = one_at_a_time();
    let devbox = SlurmDevbox::start();
    devbox.write_spec("ide", SPEC);
    let job = devbox.wait_job("ide", None);

    // A process of the job's batch step that leaves it twice, as VS Code's terminals
    // do: joins the step's cgroups, forks a new session and exits.
    let batch = job_pids(job.id)
        .into_iter()
        .find(|(_, step, local)| step == "batch" && local == "0")
        .map(|(pid, ..)| pid)
        .unwrap_or_else(|| panic!("job {} has no batch script process", job.id));
    let dirs = cgroup_dirs(batch);
    assert!(
        !dirs.is_empty(),
        "job {}'s script has no cgroup of its own",
        job.id
    );
    let marker = format!("devbox-slurm-test-{}-{}", std::process::id(), job.id);
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for dir; do echo $$ > \"$dir/cgroup.procs\" || exit 1; done; \
             setsid bash -c 'exec -a {marker} sleep 10000' </dev/null >/dev/null 2>&1 &"
        ))
        .arg("sh")
        .args(&dirs)
        .status()
        .unwrap();
    assert!(spawned.success(), "joining {dirs:?}: {spawned}");
    let forked = devbox.wait("the double-forked process", || {
        processes_with(&marker).first().copied()
    });
    assert!(
        job_pids(job.id).iter().any(|(pid, ..)| *pid == forked),
        "Slurm does not count the double-forked process {forked} as job {}'s: {:?}",
        job.id,
        job_pids(job.id)
    );
    assert_ne!(
        session_of(forked),
        session_of(batch),
        "a session of its own"
    );

    devbox.write_spec("ide", &SPEC.replace("state: running", "state: stopped"));
    devbox.wait_status("ide", "stopped");
    devbox.wait("no process of the job to be left", || {
        processes_with(&marker).is_empty().then_some(())
    });
    devbox.assert_over(job.id, "after state: stopped");
    assert_eq!(devbox.live_jobs(), [], "no job left\n{}", devbox.context());
}

#[test]
fn an_edit_restarts_the_server_as_a_new_job() {
    let _serial = one_at_a_time();
    let devbox = SlurmDevbox::start();
    devbox.write_spec("ide", SPEC);
    let first = devbox.wait_job("ide", None);

    devbox.write_spec("ide", &format!("{SPEC}  env: {{A: \"1\"}}\n"));
    let second = devbox.wait_job("ide", Some(first.id));
    devbox.assert_over(first.id, "the job of the spec before the edit");
    assert_eq!(
        devbox.live_jobs_of("ide"),
        [second.id],
        "{}",
        devbox.context()
    );
    let with_variable = job_pids(second.id).iter().any(|(pid, ..)| {
        common::procs::environ(*pid)
            .iter()
            .any(|entry| entry == b"A=1")
    });
    assert!(
        with_variable,
        "no process of job {} has the edited spec's A=1",
        second.id
    );
    devbox.assert_workbench(second.port, "after the edit");
}

#[test]
fn a_devbox_killed_and_started_again_adopts_the_same_job_and_cancels_unrecorded_ones() {
    let _serial = one_at_a_time();
    let mut devbox = SlurmDevbox::start();
    devbox.write_spec("ide", SPEC);
    let job = devbox.wait_job("ide", None);
    devbox.assert_workbench(job.port, "before the kill");

    devbox.kill9();
    assert_eq!(
        job_state(job.id).as_deref(),
        Some("RUNNING"),
        "the job outlives devbox"
    );
    // A job of this devbox that no status records, as one killed between `sbatch` and
    // writing the status leaves behind.
    let orphan_name = format!("{}ide.0123456789abcdef0123456789abcdef", devbox.prefix());
    let submitted = Command::new("sbatch")
        .args(["--parsable", "--mem=50M", "--job-name", &orphan_name])
        .args(["--partition", partition(), "--wrap", "sleep 1000"])
        .output()
        .expect("sbatch");
    let orphan: u64 = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .split(';')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("sbatch's answer: {submitted:?}"));
    devbox.restart();
    devbox.wait("the unrecorded job to be cancelled", || {
        job_state(orphan).is_none_or(|s| !is_live(&s)).then_some(())
    });
    assert!(
        devbox
            .log()
            .contains("killed an instance no status recorded"),
        "{}",
        devbox.context()
    );
    let adopted = devbox.wait_job("ide", None);
    assert_eq!(
        adopted.id,
        job.id,
        "a new job instead of the running one\n{}",
        devbox.context()
    );
    assert_eq!(devbox.live_jobs_of("ide"), [job.id], "{}", devbox.context());
    // The new devbox signs in again with its copy of the password.
    devbox.assert_workbench(adopted.port, "after the restart of devbox");
}

#[test]
fn a_job_cancelled_from_outside_restarts_per_restart_policy() {
    let _serial = one_at_a_time();
    let devbox = SlurmDevbox::start();
    devbox.write_spec("again", SPEC);
    devbox.write_spec("once", &format!("{SPEC}  restart_policy: never\n"));
    let again = devbox.wait_job("again", None);
    let once = devbox.wait_job("once", None);

    scancel(again.id);
    scancel(once.id);
    let down = devbox.wait("once to stay down", || {
        devbox
            .server("once")
            .filter(|s| s["status"] == "failed" || s["status"] == "stopped")
    });
    let message = down["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("CANCELLED") && message.contains(&once.id.to_string()),
        "the message names Slurm's end of job {}: {down}",
        once.id
    );

    let restarted = devbox.wait_job("again", Some(again.id));
    devbox.assert_over(again.id, "the cancelled job");
    devbox.assert_workbench(restarted.port, "after the restart");
    let live: Vec<u64> = devbox.live_jobs().into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        live,
        [restarted.id],
        "only again's new job runs; once stays down\n{}",
        devbox.context()
    );
    let still = devbox.server("once").expect("once is listed");
    assert_eq!(
        still["status"], down["status"],
        "once changed while again restarted: {still}"
    );
}

/// Brings the cluster's daemons up again when dropped during a panic (a test that
/// stopped `slurmctld` and failed must not leave the cluster down).
struct ClusterBackUp;

impl Drop for ClusterBackUp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new(dev_script()).arg("up").status();
        }
    }
}

#[test]
fn a_slurmctld_restart_leaves_the_server_running() {
    let _serial = one_at_a_time();
    let devbox = SlurmDevbox::start();
    devbox.write_spec("ide", SPEC);
    let job = devbox.wait_job("ide", None);

    let _back_up = ClusterBackUp;
    let pid: i32 = std::fs::read_to_string("/run/slurmctld.pid")
        .expect("slurmctld's pid file")
        .trim()
        .parse()
        .expect("a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("stop slurmctld");
    devbox.wait("slurmctld to exit", || {
        (!common::pid_alive(pid as u32)).then_some(())
    });
    // devbox has noticed: its watcher could not ask about the job.
    devbox.wait("devbox to find the job's state unknown", || {
        devbox.log().contains("job state unknown").then_some(())
    });
    let server = devbox.server("ide").expect("ide is listed");
    assert_eq!(
        server["status"], "running",
        "while slurmctld is down: {server}"
    );
    devbox.assert_workbench(job.port, "while slurmctld is down");

    common::slurm::up();
    devbox.wait("Slurm to answer for the job again", || {
        (job_state(job.id).as_deref() == Some("RUNNING")).then_some(())
    });
    let after = devbox.wait_job("ide", None);
    assert_eq!(after.id, job.id, "{}", devbox.context());
    devbox.assert_workbench(job.port, "after slurmctld's restart");
    assert_eq!(devbox.live_jobs_of("ide"), [job.id], "{}", devbox.context());
}

#[test]
fn a_spec_asking_for_more_than_the_node_has_fails_with_slurms_reason() {
    let _serial = one_at_a_time();
    // Such a server is not retried until its spec changes (each retry would submit,
    // and be refused, again): a short backoff shows that nothing is submitted again.
    let devbox =
        SlurmDevbox::start_with("controller:\n  restart_backoff: {initial: 1s, max: 1s}\n");
    devbox.write_spec(
        "bigmem",
        "  runtime: slurm\n  state: running\n  resources: {memory: 1TiB}\n",
    );
    devbox.write_spec(
        "bigcpu",
        "  runtime: slurm\n  state: running\n  resources: {cpus: 64}\n",
    );

    let bigmem = devbox.wait_status("bigmem", "failed");
    let message = bigmem["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Memory specification can not be satisfied"),
        "the message quotes sbatch's refusal: {bigmem}"
    );

    let bigcpu = devbox.wait_status("bigcpu", "failed");
    let message = bigcpu["message"].as_str().unwrap_or_default();
    let job: u64 = message
        .strip_prefix("Slurm cannot ever run job ")
        .and_then(|rest| rest.strip_suffix(": PartitionConfig; tried again when the spec changes"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("the message names the job and Slurm's reason: {bigcpu}"));
    devbox.assert_over(job, "the job that can never run");

    for name in ["bigmem", "bigcpu"] {
        let status = devbox.status(name).expect("a status");
        assert!(
            status["instance"].is_null(),
            "{name} records no instance: {status}"
        );
    }
    assert_eq!(devbox.live_jobs(), [], "no job left\n{}", devbox.context());
    // Seconds past many backoffs: neither was submitted again.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let bigcpu_now = devbox.status("bigcpu").expect("a status");
    assert_eq!(bigcpu_now["phase"], "failed", "{bigcpu_now}");
    assert_eq!(bigcpu_now["restarts"], 0, "not retried: {bigcpu_now}");
    let bigmem_now = devbox.status("bigmem").expect("a status");
    assert_eq!(bigmem_now["restarts"], 0, "not retried: {bigmem_now}");
}

#[test]
fn delete_and_shutdown_leave_no_job() {
    let _serial = one_at_a_time();
    let mut devbox = SlurmDevbox::start();
    devbox.write_spec("gone", SPEC);
    devbox.write_spec("kept", SPEC);
    let gone = devbox.wait_job("gone", None);
    let kept = devbox.wait_job("kept", None);

    devbox.remove_spec("gone");
    devbox.wait("gone to be forgotten", || {
        (devbox.server("gone").is_none() && devbox.status("gone").is_none()).then_some(())
    });
    devbox.assert_over(gone.id, "the deleted server's job");
    assert_eq!(
        devbox.live_jobs_of("gone"),
        Vec::<u64>::new(),
        "{}",
        devbox.context()
    );
    assert_eq!(devbox.wait_job("kept", None).id, kept.id);

    // devbox's shutdown (on_shutdown: stop, the default) cancels the rest.
    devbox.terminate();
    devbox.assert_over(kept.id, "after devbox's shutdown");
    assert_eq!(devbox.live_jobs(), [], "{}", devbox.context());
}

/// The `node_modules` directory holding playwright-core.
fn playwright_node_path() -> PathBuf {
    let path = std::env::var_os("DEVBOX_PLAYWRIGHT_NODE_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/playwright/node_modules")
        });
    assert!(
        path.join("playwright-core").is_dir() && Path::new(CHROMIUM).exists(),
        "playwright-core in {} and {CHROMIUM}: run scripts/install-browser.sh",
        path.display()
    );
    path
}

#[test]
fn a_browser_renders_the_workbench_of_a_slurm_job() {
    let _serial = one_at_a_time();
    let node_path = playwright_node_path();
    let devbox = SlurmDevbox::start();
    devbox.write_spec("ide", SPEC);
    let job = devbox.wait_job("ide", None);
    let file = "HELLO-FROM-A-SLURM-JOB.md";
    let workspace = devbox.server("ide").expect("ide")["workspace_path"]
        .as_str()
        .expect("a workspace")
        .to_owned();
    std::fs::write(Path::new(&workspace).join(file), "# Hello\n").unwrap();

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let artifacts = root.join("target/browser-artifacts/slurm");
    let _ = std::fs::remove_dir_all(&artifacts);
    let args: [OsString; 3] = [
        devbox.url(&format!("/vscode/{}/", job.port)).into(),
        artifacts.clone().into(),
        file.into(),
    ];
    let output = Command::new("node")
        .arg(root.join("tests/browser/slurm_ide.mjs"))
        .args(args)
        .env("NODE_PATH", node_path)
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("run node (is Node.js installed?)");
    assert!(
        output.status.success(),
        "slurm_ide.mjs failed; screenshots in {}\n{}\n{}",
        artifacts.display(),
        common::exit_and_output(&output),
        devbox.context()
    );
    assert!(
        artifacts.join("slurm-ide.png").is_file(),
        "the script saved its screenshot"
    );
}

#[test]
fn an_owners_job_runs_under_the_owners_user_and_writes_its_own_log() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let _serial = one_at_a_time();
    let code_server = common::users::runnable_by_others(&common::code_server(), 2);
    let devbox = SlurmDevbox::start_opts(
        "isolation:\n  run_as: owner\n",
        Options {
            code_server: Some(code_server),
            ..Options::default()
        },
        // The state dir is in the test's root: the owner's user passes through it.
        |root| std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711)).unwrap(),
    );
    devbox.write_spec_text(
        "mine.yaml",
        &format!(
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: mine\n  owner: slurm-ann\nspec:\n{SPEC}"
        ),
    );
    let job = devbox.wait_job("mine", None);
    let user = "devbox-slurm-ann";
    let (uid, _) = common::users::ids_of(user);
    let queued_as = Command::new("squeue")
        .args(["-h", "-j", &job.id.to_string(), "-o", "%u"])
        .output()
        .expect("squeue");
    assert_eq!(
        String::from_utf8_lossy(&queued_as.stdout).trim(),
        user,
        "the job is the owner's user's\n{}",
        devbox.context()
    );
    let pids = job_pids(job.id);
    assert!(
        !pids.is_empty(),
        "the job's processes: {}",
        devbox.context()
    );
    for (pid, _, _) in &pids {
        let owner = std::fs::metadata(format!("/proc/{pid}")).map(|m| m.uid());
        if let Ok(owner) = owner {
            assert_eq!(owner, uid, "process {pid} of the job runs as {user}");
        }
    }
    let log = devbox.state().join("servers/mine/code-server.log");
    let log_meta = std::fs::metadata(&log).expect("the job's log");
    assert_eq!(
        log_meta.uid(),
        uid,
        "the log is the owner's user's, who writes it"
    );
    assert!(log_meta.len() > 0, "the job wrote its output there");
    devbox.assert_workbench(job.port, "an owner's job");
}
