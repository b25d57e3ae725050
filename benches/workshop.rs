//! Workshop: N servers (default 30) from one template, from the first create call to the
//! last instance answering `/healthz`.
//!
//! The scenario, built in a temp dir each run (deterministic contents):
//! - the template's repository: a git repository (git2) of 300 files in nested folders
//!   (Python packages, tests, notebooks, docs, a few larger CSV files and binary
//!   images; about 4 MB), one commit; the template's `github_url` is its `file://` URL,
//!   so the config allows the `file` scheme;
//! - three `.vsix` files in the config's vsix folder (`vsix/` beside the config), each a
//!   realistic extension of 100–300 files (`out/**/*.js`, source maps, README,
//!   CHANGELOG, icon, snippets; a few hundred KB), different `publisher.name` ids;
//! - an extension group with the three `.vsix` files and a `packaged_assets` tab
//!   (`Workshops`) whose one item (`Bench Workshop`) uses that group and repository.
//!
//! First, for comparison, each `.vsix` is installed once by hand with the real
//! code-server (`--install-extension` into a fresh extensions folder, after one untimed
//! warm-up install): the mean is the cost of one installer run, which estimates what
//! N × 3 installs cost without an extension cache.
//!
//! Then one release `devbox serve` runs, and each round does what a workshop operator
//! does through the API: `POST /servers/create-from-template` for every seat, one after
//! another (each answers 201 once the controller lists the server), then "start all":
//! every `POST /servers/{id}/start` at once, one thread per seat (each call answers
//! when its server runs). Meanwhile one thread probes every seat's `/healthz` directly
//! on its instance's Unix socket (every 20 ms) and samples devbox's RSS. Per round it prints: the wall
//! time from the first create call to the last healthy instance, servers per minute,
//! the first healthy instance, p50/p99 of the per-server ready times (from the first
//! create, and from the server's own start call), the start calls' answers, devbox's
//! RSS and CPU, the extension results `GET /servers/{id}` reports, the extension files
//! on disk (hard links counted once), how many `code-server --install-extension`
//! processes ran, and what devbox logged about installs and a cache. Where each start's
//! time went comes from the timestamps of devbox's own events per server (`provisioning
//! on port`, `user settings written` right after the clone, the last `extension …`,
//! `started`): start call → provisioning, the git clone, the extensions, and code-server's
//! launch until devbox saw it healthy (p50 / max); for a Slurm job, that launch is split
//! at `running as Slurm job …` (the job said where it listens: `sbatch`, the queue, the
//! job's start and code-server's boot lie before it). Then every seat is deleted (all
//! `DELETE` calls at once) and the teardown timed. A second round (`--rounds 2`) runs on
//! the same devbox, so whatever it keeps between rounds (a cache) is warm.
//!
//! devbox's code-server is the real one behind a two-line `sh` wrapper that `exec`s it
//! (same pid, so nothing else changes) after appending a line to a file when its
//! arguments hold `--install-extension`: that file counts the installer runs, however
//! devbox decides to run them.
//!
//! Before the rounds, N bare code-servers (as devbox starts them, with an empty folder
//! and no extensions) are started at once and timed until all answer `/healthz`: the
//! floor the machine sets for the instances alone; each round is also reported as a
//! multiple of it.
//!
//! The issue's target: 30 servers ready in ≤ 20 s on a 2-core machine. Nothing here
//! fails on a timing; a seat that never gets healthy is reported, not hidden.
//!
//! `--runtime slurm` runs the same flow twice, first with devbox's local processes,
//! then with every server a Slurm job (a devbox of its own whose config says
//! `runtime: {default: slurm, slurm: {partition: P}}`, P being the partition
//! `scripts/slurm-dev.sh up` prints, run first: a single-node cluster on loopback), and
//! prints the two side by side: a summary of create → healthy (p50 / p95 / max) for a
//! burst and for one seat alone, then every figure above per runtime and round. Each
//! Slurm job gets `controller.default_resources: {memory: 512MiB, cpus: 1}` as its
//! allocation (without `--mem` a job takes the node's whole memory, and one CPU is
//! Slurm's smallest); the run prints how many such jobs the partition holds at once
//! (its CPUs × its `OverSubscribe=FORCE:n`), and seats beyond that wait in the queue:
//! their wait is part of the figures, and the reasons Slurm gave are counted. A Slurm
//! seat is probed on the `host:port` its status file records once its job has said
//! where it listens (on this one-node cluster, the host is this machine). The default
//! burst there is 8 seats (the dev partition's 2 CPUs × FORCE:4), both runtimes alike.
//! After the bursts, `--singles K` (default 3) seats are started one at a time, each
//! alone on the machine (warm cache): the latency of one start without contention.
//!
//! Run: `cargo bench --bench workshop` (or `-- --servers 5 --rounds 2`, `-- --runtime
//! slurm --rounds 2`; `WORKSHOP_LOG=FILE` appends devbox's log lines of each round to
//! FILE). Needs code-server (`scripts/install-code-server.sh`, or `DEVBOX_CODE_SERVER`),
//! and for `--runtime slurm` root (slurm-dev.sh installs and starts the cluster). About a
//! minute and a half with the extension cache (the bare floor included); without one,
//! 30 seats took 2.5 minutes here.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Direct, GroupGuard, ServingDevbox, percentile};
use serde_json::{Value, json};

const TAB: &str = "Workshops";
const TEMPLATE: &str = "Bench Workshop";
/// Appended to [`common::INSTANCE_CONFIG`]; `{vsix_files}` and `{repo_url}` are filled
/// in once the fixture exists.
const TEMPLATE_CONFIG: &str = "extension_groups:
  workshop-tools:
    name: Workshop tools
    description: the three extensions every seat of the workshop gets
    extensions: [{vsix_files}]
    user_settings: {editor.fontSize: 14, files.autoSave: afterDelay}
ui:
  workspace:
    allowed_git_schemes: [https, ssh, file]
packaged_assets:
  tabs:
    - name: Workshops
      items:
        - name: Bench Workshop
          description: a few hundred files of workshop material and three local extensions
          extensions_groups: [workshop-tools]
          github_url: '{repo_url}'
";

/// Probe interval of the readiness watcher.
const POLL: Duration = Duration::from_millis(20);
/// Longest a round may take before the watcher gives up on the seats not yet healthy.
const ROUND_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How long the watcher keeps probing after every start call has answered.
const AFTER_STARTS: Duration = Duration::from_secs(30);
const INSTALL_LIMIT: Duration = Duration::from_secs(120);

/// One extension of the template.
struct ExtensionFixture {
    publisher: &'static str,
    name: &'static str,
    version: &'static str,
    display: &'static str,
    /// Modules under `out/` (a fifth of them with a source map).
    modules: usize,
}

const EXTENSIONS: [ExtensionFixture; 3] = [
    ExtensionFixture {
        publisher: "acme",
        name: "sql-notebook-tools",
        version: "1.4.2",
        display: "SQL Notebook Tools",
        modules: 230,
    },
    ExtensionFixture {
        publisher: "contoso",
        name: "data-lint",
        version: "0.9.17",
        display: "Data Lint",
        modules: 150,
    },
    ExtensionFixture {
        publisher: "northwind",
        name: "workshop-guide",
        version: "2.0.1",
        display: "Workshop Guide",
        modules: 85,
    },
];

/// Where a flow's servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuntimeKind {
    Local,
    Slurm,
}

impl RuntimeKind {
    fn name(self) -> &'static str {
        match self {
            RuntimeKind::Local => "local",
            RuntimeKind::Slurm => "slurm",
        }
    }
}

/// What each Slurm job is given: under `CR_Core_Memory` a job without `--mem` takes
/// the node's whole memory, and one CPU is the least a job gets.
const SLURM_RESOURCES: &str = "{memory: 512MiB, cpus: 1}";
/// The seats of a burst on Slurm unless `--servers` says: what the dev partition holds
/// at once (2 CPUs × `OverSubscribe=FORCE:4`, one CPU per job).
const SLURM_BURST: u64 = 8;

/// One runtime's rounds and single starts.
struct Flow {
    runtime: RuntimeKind,
    rounds: Vec<RoundResult>,
    singles: Vec<RoundResult>,
}

fn main() {
    let runtimes = match common::arg_text("--runtime").as_deref() {
        None | Some("local") => vec![RuntimeKind::Local],
        Some("slurm") => vec![RuntimeKind::Local, RuntimeKind::Slurm],
        Some(other) => panic!("--runtime wants `local` or `slurm`, not `{other}`"),
    };
    let on_slurm = runtimes.contains(&RuntimeKind::Slurm);
    let default_servers = if on_slurm { SLURM_BURST } else { 30 };
    let servers = common::arg_number("--servers", default_servers).max(1) as usize;
    let rounds = common::arg_number("--rounds", 1).max(1) as usize;
    let singles = common::arg_number("--singles", 3) as usize;
    let code_server = common::code_server();
    println!(
        "workshop: {servers} servers from one template, {rounds} round(s), {singles} single start(s), on {}; {}",
        runtimes
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(" then "),
        code_server.display()
    );
    println!("load average: {}", common::load_average());
    let partition = on_slurm.then(|| {
        let partition = slurm_up();
        describe_partition(&partition, servers);
        partition
    });

    let mut baseline = None;
    let mut flows = Vec::new();
    for runtime in runtimes {
        let mut config = format!("{}{TEMPLATE_CONFIG}", common::INSTANCE_CONFIG);
        if let (RuntimeKind::Slurm, Some(partition)) = (runtime, &partition) {
            config += &format!(
                "runtime:\n  default: slurm\n  slurm:\n    partition: {partition}\ncontroller:\n  default_resources: {SLURM_RESOURCES}\n"
            );
        }
        let (root, http_port) = common::Devbox::prepare(&config);
        let fixture = Fixture::build(root.path(), &code_server);
        if baseline.is_none() {
            baseline = Some(measure_baseline(
                &code_server,
                &fixture,
                root.path(),
                servers,
            ));
        }

        println!("-- {} --", runtime.name());
        // Dropped after the devbox (declared first): cancels any job it left behind.
        let jobs = SlurmJobs::default();
        let devbox = ServingDevbox::start(root, http_port, &fixture.wrapper, "info,devbox=debug");
        let mut flow = Flow {
            runtime,
            rounds: Vec::new(),
            singles: Vec::new(),
        };
        for round in 1..=rounds {
            let label = format!("round {round}");
            let prefix = format!("w{round}-seat");
            flow.rounds.push(run_round(
                &devbox,
                runtime,
                &label,
                &prefix,
                servers,
                &fixture.runs_file,
                &jobs,
            ));
        }
        for single in 1..=singles {
            let label = format!("one seat alone ({single})");
            let prefix = format!("one{single}-seat");
            flow.singles.push(run_round(
                &devbox,
                runtime,
                &label,
                &prefix,
                1,
                &fixture.runs_file,
                &jobs,
            ));
        }
        drop(devbox);
        drop(jobs);
        flows.push(flow);
    }
    let (install_cost, floor) = baseline.expect("at least one flow");
    report(servers, &flows, install_cost, floor);
    println!("load average: {}", common::load_average());
}

/// The fixture's sizes, one install of each `.vsix` by hand, and the bare floor of
/// `servers` code-servers: printed once, for every flow.
fn measure_baseline(
    code_server: &Path,
    fixture: &Fixture,
    root: &Path,
    servers: usize,
) -> (Duration, Duration) {
    println!(
        "template repository: {} files, {:.1} MB; extensions: {}",
        fixture.repo_files,
        fixture.repo_bytes as f64 / 1e6,
        fixture
            .vsix
            .iter()
            .map(|v| format!(
                "{} ({} files, {:.0} KB unpacked)",
                v.file_name,
                v.files,
                v.bytes as f64 / 1e3
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let installs = bare_installs(code_server, &fixture.vsix, &root.join("bare"));
    let install_cost = installs.iter().sum::<Duration>() / installs.len() as u32;
    println!(
        "bare `code-server --install-extension`, one run each: {} (mean {})",
        fixture
            .vsix
            .iter()
            .zip(&installs)
            .map(|(v, d)| format!("{} {}", v.file_name, secs(*d)))
            .collect::<Vec<_>>()
            .join(", "),
        secs(install_cost)
    );

    let floor = bare_floor(code_server, servers, &root.join("bare-floor"));
    println!(
        "bare floor: {servers} bare code-servers (empty folder, no extensions) started at once, all answering /healthz after {}",
        secs(floor)
    );
    (install_cost, floor)
}

/// Brings the dev cluster up (`scripts/slurm-dev.sh up`, idempotent) and gives the
/// partition it prints last.
fn slurm_up() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-dev.sh");
    let out = Command::new(&script)
        .arg("up")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(
        out.status.success(),
        "{} up failed ({}):\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .expect("slurm-dev.sh up prints the partition last")
        .to_owned()
}

/// Prints how many one-CPU jobs `partition` runs at once (its CPUs × the jobs a CPU
/// may hold, `OverSubscribe=FORCE:n`), and how many of `servers` will wait.
fn describe_partition(partition: &str, servers: usize) {
    let shown = Command::new("scontrol")
        .args(["show", "partition", partition])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let field = |name: &str| {
        shown
            .split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let cpus: Option<usize> = field("TotalCPUs").and_then(|v| v.parse().ok());
    let oversubscribe = field("OverSubscribe").unwrap_or_else(|| "?".into());
    let per_cpu = match oversubscribe.split_once(':') {
        Some(("FORCE" | "YES", n)) => n.parse().ok(),
        _ if oversubscribe == "NO" || oversubscribe == "EXCLUSIVE" => Some(1),
        _ => None,
    };
    let Some((cpus, per_cpu)) = cpus.zip(per_cpu) else {
        println!("Slurm partition {partition}: OverSubscribe={oversubscribe} (capacity unknown)");
        return;
    };
    let capacity = cpus * per_cpu;
    let waiting = servers.saturating_sub(capacity);
    println!(
        "Slurm partition {partition}: {cpus} CPUs, OverSubscribe={oversubscribe}: {capacity} jobs of {SLURM_RESOURCES} at once{}",
        if waiting > 0 {
            format!("; {waiting} of the {servers} seats stay queued while the others run")
        } else {
            format!("; the {servers} seats fit")
        }
    );
}

// ---------------------------------------------------------------------------------
// The rounds

/// One seat of the workshop, as its create call answered.
struct Seat {
    id: String,
    slug: String,
    /// Its status file, where a Slurm seat's job id and address show up.
    status_file: PathBuf,
    /// Where a local instance listens (devbox's default, `listen: socket`); `None` for
    /// a Slurm job, which says where once it runs.
    socket: Option<Direct>,
}

/// What one `POST /servers/{id}/start` did.
struct StartCall {
    sent: Instant,
    /// `sent`, in seconds since the Unix epoch (to compare with devbox's log).
    sent_epoch: f64,
    took: Duration,
    /// None when it answered 200 with `running`; else what it answered.
    error: Option<String>,
}

#[derive(Default)]
struct LogCounts {
    /// devbox's `extension <label> …` events, by what follows the label (`installed`,
    /// `failed`, or whatever else it says).
    extension_events: BTreeMap<String, usize>,
    /// Lines that mention a cache.
    cache_lines: usize,
    cache_sample: Option<String>,
    /// When devbox logged each step of a start, per server.
    steps: BTreeMap<String, Steps>,
}

/// When devbox logged the steps of one server's start (seconds since the Unix epoch).
#[derive(Default)]
struct Steps {
    /// `provisioning on port …`: the reconciler took the start up.
    provisioning: Option<f64>,
    /// `user settings written`: the workspace (the clone) is ready.
    settings: Option<f64>,
    /// The last `extension …` event.
    extensions: Option<f64>,
    /// `running as Slurm job …`: the job said where it listens (Slurm only).
    placed: Option<f64>,
    /// `started: …`: devbox saw the instance healthy.
    started: Option<f64>,
    /// The reasons Slurm gave while the job waited (`queued (Resources)`).
    queue_reasons: HashSet<String>,
}

/// Per-server durations of the steps of a start, from devbox's log.
#[derive(Default)]
struct Phases {
    /// Start call sent → provisioning.
    react: Vec<Duration>,
    /// Provisioning → user settings written.
    workspace: Vec<Duration>,
    /// User settings written → last extension event (code-server boots meanwhile).
    extensions: Vec<Duration>,
    /// User settings written (code-server is launched right after) → started.
    launch: Vec<Duration>,
    /// User settings written → the job said where it listens (Slurm: `sbatch`, the
    /// queue, the job's start, code-server's boot until it prints its port).
    placement: Vec<Duration>,
    /// The job said where it listens → started (`/healthz` answered, extensions in
    /// place).
    after_placement: Vec<Duration>,
}

#[derive(Default)]
struct DiskUse {
    files: u64,
    apparent: u64,
    /// Bytes of distinct inodes (hard links counted once).
    distinct: u64,
}

struct RoundResult {
    /// First create sent → last create answered.
    creates: Duration,
    /// From the first create call, per seat that got healthy.
    ready: Vec<Duration>,
    /// From the seat's own start call, per seat that got healthy.
    start_to_ready: Vec<Duration>,
    starts: Vec<StartCall>,
    never_ready: usize,
    installer_runs: usize,
    extensions: BTreeMap<String, usize>,
    extension_error: Option<String>,
    disk: DiskUse,
    rss_end: f64,
    rss_peak: f64,
    cpu: Duration,
    log: LogCounts,
    phases: Phases,
    teardown: Duration,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

fn run_round(
    devbox: &ServingDevbox,
    runtime: RuntimeKind,
    label: &str,
    seat_prefix: &str,
    servers: usize,
    runs_file: &Path,
    jobs: &SlurmJobs,
) -> RoundResult {
    let api = agent(Duration::from_secs(30));
    // Start calls wait for the instance (up to devbox's request timeout, 5 minutes).
    let slow_api = agent(Duration::from_secs(600));
    while devbox.log.try_recv().is_ok() {}
    let runs_before = count_lines(runs_file);
    let cpu_before = common::cpu_time(devbox.pid());

    print!("{label}: creating {servers} server(s)…");
    let _ = std::io::stdout().flush();
    let began = Instant::now();
    let seats: Vec<Seat> = (1..=servers)
        .map(|i| create_seat(&api, devbox, &format!("{seat_prefix}-{i:02}"), runtime))
        .collect();
    let creates = began.elapsed();
    print!(" {}; starting all…", secs(creates));
    let _ = std::io::stdout().flush();

    // devbox's own handle stays on this thread (its log receiver is not `Sync`).
    let (base, pid) = (devbox.url(""), devbox.pid());
    let answered = AtomicUsize::new(0);
    let (starts, (healthy, rss_peak)) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_ready(&seats, began, &answered, pid, jobs));
        let calls: Vec<_> = seats
            .iter()
            .map(|seat| {
                let (slow_api, answered, base) = (&slow_api, &answered, base.as_str());
                scope.spawn(move || {
                    let call = start_seat(slow_api, base, seat);
                    answered.fetch_add(1, Ordering::SeqCst);
                    call
                })
            })
            .collect();
        let starts: Vec<StartCall> = calls
            .into_iter()
            .map(|call| call.join().expect("start thread"))
            .collect();
        (starts, watcher.join().expect("readiness watcher"))
    });
    let rss_end = common::rss_mib(devbox.pid());
    let cpu = common::cpu_time(devbox.pid()).saturating_sub(cpu_before);
    let ready: Vec<Duration> = healthy.iter().flatten().map(|t| *t - began).collect();
    let start_to_ready: Vec<Duration> = healthy
        .iter()
        .zip(&starts)
        .filter_map(|(t, call)| t.map(|t| t.saturating_duration_since(call.sent)))
        .collect();
    let never_ready = healthy.iter().filter(|t| t.is_none()).count();
    match ready.iter().max() {
        Some(last) if never_ready == 0 => println!(" all healthy after {}", secs(*last)),
        _ => println!(" {never_ready} of {servers} never answered /healthz"),
    }

    let (extensions, extension_error) = extension_results(&api, devbox, &seats);
    let disk = disk_use(
        seats
            .iter()
            .map(|s| devbox.path(&format!("state/servers/{}/extensions", s.slug))),
    );
    let installer_runs = count_lines(runs_file) - runs_before;
    let log = read_log(devbox);
    let phases = phases(&seats, &starts, &log);

    let began = Instant::now();
    std::thread::scope(|scope| {
        for seat in &seats {
            let (api, base) = (&slow_api, base.as_str());
            scope.spawn(move || {
                let url = format!("{base}/servers/{}", seat.id);
                match api.delete(&url).call() {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => eprintln!("DELETE {url}: {}", r.status()),
                    Err(err) => eprintln!("DELETE {url}: {err}"),
                }
            });
        }
    });
    let teardown = began.elapsed();

    RoundResult {
        creates,
        ready,
        start_to_ready,
        starts,
        never_ready,
        installer_runs,
        extensions,
        extension_error,
        disk,
        rss_end,
        rss_peak,
        cpu,
        log,
        phases,
        teardown,
    }
}

fn create_seat(
    api: &ureq::Agent,
    devbox: &ServingDevbox,
    name: &str,
    runtime: RuntimeKind,
) -> Seat {
    let url = devbox.url("/servers/create-from-template");
    let mut response = api
        .post(&url)
        .send_json(json!({"name": name, "template_id": TEMPLATE, "tab_name": TAB}))
        .unwrap_or_else(|err| panic!("POST {url}: {err}"));
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 201, "create {name}: {body}");
    let view: Value = serde_json::from_str(&body).expect("create answers JSON");
    let slug = view["slug"].as_str().unwrap_or(name).to_owned();
    let socket = devbox.path(&format!("state/sockets/{slug}.sock"));
    Seat {
        id: view["id"].as_str().expect("id").to_owned(),
        status_file: devbox.path(&format!("state/servers/{slug}/status.json")),
        socket: (runtime == RuntimeKind::Local).then_some(Direct::Unix(socket)),
        slug,
    }
}

fn start_seat(api: &ureq::Agent, base: &str, seat: &Seat) -> StartCall {
    let url = format!("{base}/servers/{}/start", seat.id);
    let sent_epoch = common::epoch_secs(std::time::SystemTime::now());
    let sent = Instant::now();
    let answer = api.post(&url).send_empty();
    let took = sent.elapsed();
    let error = match answer {
        Ok(mut response) => {
            let status = response.status();
            let body = response.body_mut().read_to_string().unwrap_or_default();
            let running = serde_json::from_str::<Value>(&body)
                .is_ok_and(|v| v["data"]["status"] == "running");
            (status != 200 || !running).then(|| format!("{status}: {body}"))
        }
        Err(err) => Some(err.to_string()),
    };
    StartCall {
        sent,
        sent_epoch,
        took,
        error,
    }
}

/// Probes every seat's `/healthz` until all answer 200 (or the round gives up); gives
/// when each first did, and the highest RSS of devbox seen meanwhile. A Slurm seat is
/// probed once its status file says where its job listens; its job id goes to `jobs`.
fn watch_ready(
    seats: &[Seat],
    began: Instant,
    answered: &AtomicUsize,
    devbox_pid: u32,
    jobs: &SlurmJobs,
) -> (Vec<Option<Instant>>, f64) {
    let mut healthy: Vec<Option<Instant>> = vec![None; seats.len()];
    let mut reach: Vec<Option<Direct>> = seats.iter().map(|s| s.socket.clone()).collect();
    let mut rss_peak: f64 = 0.0;
    let mut all_answered_at = None;
    loop {
        for ((seat, healthy), reach) in seats.iter().zip(healthy.iter_mut()).zip(&mut reach) {
            if reach.is_none() {
                *reach = job_address(&seat.status_file, jobs);
            }
            if healthy.is_none() && reach.as_ref().is_some_and(|d| d.healthz().is_some()) {
                *healthy = Some(Instant::now());
            }
        }
        rss_peak = rss_peak.max(common::rss_mib(devbox_pid));
        if healthy.iter().all(Option::is_some) || began.elapsed() > ROUND_LIMIT {
            break;
        }
        if answered.load(Ordering::SeqCst) == seats.len() {
            let since = *all_answered_at.get_or_insert_with(Instant::now);
            if since.elapsed() > AFTER_STARTS {
                break;
            }
        }
        std::thread::sleep(POLL);
    }
    (healthy, rss_peak)
}

/// Where the Slurm job of the status file at `path` listens, once it has said so: on
/// the dev cluster's one node (this machine) its port on loopback (the job binds every
/// address). The job's id, once recorded, goes to `jobs`.
fn job_address(path: &Path, jobs: &SlurmJobs) -> Option<Direct> {
    let status: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let instance = &status["instance"];
    if instance["backend"] != "slurm" {
        return None;
    }
    jobs.saw(instance["job_id"].as_u64()?);
    let port = instance["address"][1].as_u64()?;
    Some(Direct::Tcp(u16::try_from(port).ok()?))
}

/// The Slurm jobs the bench saw: any still queued or running when this is dropped
/// (devbox was killed, or did not stop them) are cancelled, so that none outlives the
/// run.
#[derive(Default)]
struct SlurmJobs(std::sync::Mutex<std::collections::BTreeSet<u64>>);

impl SlurmJobs {
    fn saw(&self, id: u64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
    }
}

impl Drop for SlurmJobs {
    fn drop(&mut self) {
        let ids = self.0.get_mut().unwrap_or_else(|p| p.into_inner());
        if ids.is_empty() {
            return;
        }
        let listed = Command::new("squeue")
            .args(["-h", "-o", "%i", "-j"])
            .arg(ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
            .output();
        let left: Vec<String> = listed
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if !left.is_empty() {
            eprintln!(
                "Slurm jobs left after devbox stopped: {}; cancelling them",
                left.join(" ")
            );
            let _ = Command::new("scancel").args(&left).status();
        }
    }
}

/// The `extension_results` states of every seat (counted), and the first error.
fn extension_results(
    api: &ureq::Agent,
    devbox: &ServingDevbox,
    seats: &[Seat],
) -> (BTreeMap<String, usize>, Option<String>) {
    let mut states = BTreeMap::new();
    let mut first_error = None;
    for seat in seats {
        let url = devbox.url(&format!("/servers/{}", seat.id));
        let Some(view) = api
            .get(&url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
        else {
            *states.entry("(no answer)".to_owned()).or_default() += 1;
            continue;
        };
        for result in view["extension_results"].as_array().into_iter().flatten() {
            let state = result["state"].as_str().unwrap_or("?").to_owned();
            if first_error.is_none()
                && let Some(error) = result["error"].as_str()
            {
                first_error = Some(format!("{}: {error}", result["extension"]));
            }
            *states.entry(state).or_default() += 1;
        }
    }
    (states, first_error)
}

/// What devbox logged since the last drain about extension installs and a cache.
fn read_log(devbox: &ServingDevbox) -> LogCounts {
    let mut counts = LogCounts::default();
    let mut copy = std::env::var_os("WORKSHOP_LOG").map(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open WORKSHOP_LOG")
    });
    while let Ok(line) = devbox.log.try_recv() {
        if let Some(file) = copy.as_mut() {
            let _ = writeln!(file, "{line}");
        }
        if line.to_ascii_lowercase().contains("cache") {
            counts.cache_lines += 1;
            if counts.cache_sample.is_none() {
                counts.cache_sample = Some(line.chars().take(200).collect());
            }
        }
        // `… INFO server{server=NAME}: message`
        let Some((_, rest)) = line.split_once("server{server=") else {
            continue;
        };
        let Some((server, message)) = rest.split_once("}: ") else {
            continue;
        };
        let at = common::log_line_time(&line);
        let steps = counts.steps.entry(server.to_owned()).or_default();
        if message.starts_with("provisioning on port") {
            steps.provisioning = steps.provisioning.or(at);
        } else if message == "user settings written" {
            steps.settings = steps.settings.or(at);
        } else if message.starts_with("started: ") {
            steps.started = steps.started.or(at);
        } else if message.starts_with("running as ") {
            steps.placed = steps.placed.or(at);
        } else if let Some(reason) = message
            .strip_prefix("waiting for the cluster: queued (")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            steps.queue_reasons.insert(reason.to_owned());
        } else if let Some(event) = message
            .strip_prefix("extension ")
            // Not a debug line of structured fields (`extension extension=… outcome=…`).
            .filter(|event| !event.contains('='))
        {
            let what = event.split_once(' ').map_or("", |(_, what)| what);
            let what = what.split(':').next().unwrap_or(what).trim();
            *counts.extension_events.entry(what.to_owned()).or_default() += 1;
            steps.extensions = at;
        }
    }
    counts
}

/// Files under `dirs` (symbolic links not followed), their size, and the size of their
/// distinct inodes.
fn disk_use(dirs: impl Iterator<Item = PathBuf>) -> DiskUse {
    let mut usage = DiskUse::default();
    let mut seen = HashSet::new();
    let mut stack: Vec<PathBuf> = dirs.collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                usage.files += 1;
                usage.apparent += meta.len();
                if seen.insert((meta.dev(), meta.ino())) {
                    usage.distinct += meta.len();
                }
            }
        }
    }
    usage
}

/// The steps of each seat's start, from devbox's log (a step it did not log is left out).
fn phases(seats: &[Seat], starts: &[StartCall], log: &LogCounts) -> Phases {
    let mut phases = Phases::default();
    let span =
        |from: Option<f64>, to: Option<f64>| Some(Duration::from_secs_f64((to? - from?).max(0.0)));
    for (seat, call) in seats.iter().zip(starts) {
        let Some(steps) = log.steps.get(&seat.slug) else {
            continue;
        };
        let pairs = [
            (&mut phases.react, Some(call.sent_epoch), steps.provisioning),
            (&mut phases.workspace, steps.provisioning, steps.settings),
            (&mut phases.extensions, steps.settings, steps.extensions),
            (&mut phases.launch, steps.settings, steps.started),
            (&mut phases.placement, steps.settings, steps.placed),
            (&mut phases.after_placement, steps.placed, steps.started),
        ];
        for (samples, from, to) in pairs {
            samples.extend(span(from, to));
        }
    }
    phases
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

// ---------------------------------------------------------------------------------
// The report

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn report(servers: usize, flows: &[Flow], install_cost: Duration, floor: Duration) {
    summary(servers, flows);
    // One column per runtime and round, then the single starts of each runtime.
    let mut columns: Vec<(String, &RoundResult)> = Vec::new();
    for flow in flows {
        let runtime = flow.runtime.name();
        for (i, round) in flow.rounds.iter().enumerate() {
            columns.push((format!("{runtime}, round {}", i + 1), round));
        }
    }
    let results: Vec<&RoundResult> = columns.iter().map(|(_, r)| *r).collect();
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, cell: &dyn Fn(&RoundResult) -> String| {
        rows.push((label.to_owned(), results.iter().map(|r| cell(r)).collect()));
    };
    let p = |samples: &[Duration], q: f64| {
        if samples.is_empty() {
            "-".to_owned()
        } else {
            secs(percentile(samples, q))
        }
    };
    row("wall: first create → last healthy", &|r| {
        if r.never_ready > 0 {
            format!("{} never ready", r.never_ready)
        } else {
            p(&r.ready, 100.0)
        }
    });
    row("  × the bare floor", &|r| {
        if r.ready.is_empty() {
            "-".to_owned()
        } else {
            let wall = percentile(&r.ready, 100.0).as_secs_f64();
            format!("{:.2}×", wall / floor.as_secs_f64())
        }
    });
    row("servers per minute", &|r| {
        let wall = percentile(&r.ready, 100.0).as_secs_f64();
        if r.ready.is_empty() || wall == 0.0 {
            "-".to_owned()
        } else {
            format!("{:.1}", r.ready.len() as f64 * 60.0 / wall)
        }
    });
    row("creates (one after another)", &|r| secs(r.creates));
    row("first server healthy", &|r| p(&r.ready, 0.0));
    row("ready since first create, p50", &|r| p(&r.ready, 50.0));
    row("ready since first create, p99", &|r| p(&r.ready, 99.0));
    row("own start call → healthy, p50", &|r| {
        p(&r.start_to_ready, 50.0)
    });
    row("own start call → healthy, p99", &|r| {
        p(&r.start_to_ready, 99.0)
    });
    let median_max = |samples: &[Duration]| {
        if samples.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{} / {}",
                secs(percentile(samples, 50.0)),
                secs(percentile(samples, 100.0))
            )
        }
    };
    row("steps (devbox log), p50 / max:", &|_| String::new());
    row("  start call → provisioning", &|r| {
        median_max(&r.phases.react)
    });
    row("  workspace (git clone)", &|r| {
        median_max(&r.phases.workspace)
    });
    row("  extensions (while code-server boots)", &|r| {
        median_max(&r.phases.extensions)
    });
    row("  code-server launch → running", &|r| {
        median_max(&r.phases.launch)
    });
    row("    of which sbatch → job says host:port", &|r| {
        median_max(&r.phases.placement)
    });
    row("    then → running (/healthz, extensions)", &|r| {
        median_max(&r.phases.after_placement)
    });
    row("seats that waited in the queue, by reason", &|r| {
        queue_reasons(r)
    });
    row("start call answered, p50", &|r| {
        let took: Vec<Duration> = r.starts.iter().map(|s| s.took).collect();
        p(&took, 50.0)
    });
    row("start calls not answering running", &|r| {
        r.starts
            .iter()
            .filter(|s| s.error.is_some())
            .count()
            .to_string()
    });
    row("code-server installer runs", &|r| {
        r.installer_runs.to_string()
    });
    row("installer runs avoided (of N × 3)", &|r| {
        let without = servers * EXTENSIONS.len();
        without.saturating_sub(r.installer_runs).to_string()
    });
    row("extension results (GET /servers/{id})", &|r| {
        r.extensions
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    row("devbox log: lines mentioning a cache", &|r| {
        r.log.cache_lines.to_string()
    });
    row("extension files of the seats", &|r| {
        format!(
            "{} files, {:.1} MB",
            r.disk.files,
            r.disk.apparent as f64 / 1e6
        )
    });
    row("  distinct inodes (hard links once)", &|r| {
        format!("{:.1} MB", r.disk.distinct as f64 / 1e6)
    });
    row("devbox RSS: all healthy / peak", &|r| {
        format!("{:.1} / {:.1} MiB", r.rss_end, r.rss_peak)
    });
    row("devbox CPU, create → all healthy", &|r| secs(r.cpu));
    row("teardown (every DELETE at once)", &|r| secs(r.teardown));

    let headers: Vec<String> = columns.iter().map(|(label, _)| label.to_string()).collect();
    print_table(&rows, &headers, 9, &format!("({servers} servers)"));

    println!();
    println!(
        "target (issue): 30 servers ready in ≤ 20 s on 2 cores; the bare floor (code-server's own start, nothing provisioned): {}",
        secs(floor)
    );
    let without = servers * EXTENSIONS.len();
    println!(
        "without a cache: {servers} × {} = {without} installer runs × {} (one bare install) ≈ {:.0} s of installer time",
        EXTENSIONS.len(),
        secs(install_cost),
        (install_cost * without as u32).as_secs_f64()
    );
    for (label, r) in &columns {
        let avoided = without.saturating_sub(r.installer_runs);
        println!(
            "{label}: {avoided} installer runs avoided × {} ≈ {:.0} s of installer time saved",
            secs(install_cost),
            (install_cost * avoided as u32).as_secs_f64()
        );
        if let Some(error) = r.starts.iter().find_map(|s| s.error.as_deref()) {
            println!("  first failed start call: {}", truncate(error, 300));
        }
        if let Some(error) = &r.extension_error {
            println!("  first extension error: {}", truncate(error, 300));
        }
        if !r.log.extension_events.is_empty() {
            let events: Vec<String> = r
                .log
                .extension_events
                .iter()
                .map(|(what, n)| format!("{n} {what}"))
                .collect();
            println!("  devbox's extension events: {}", events.join(", "));
        }
        if let Some(sample) = &r.log.cache_sample {
            println!("  first cache line: {sample}");
        }
    }
}

/// The table the README quotes: create → healthy (and start call → healthy) as p50 /
/// p95 / max, for a burst and for one seat alone, one column per runtime.
fn summary(servers: usize, flows: &[Flow]) {
    let three = |samples: &[Duration]| {
        if samples.is_empty() {
            return "-".to_owned();
        }
        format!(
            "{:.2} / {:.2} / {:.2} s",
            percentile(samples, 50.0).as_secs_f64(),
            percentile(samples, 95.0).as_secs_f64(),
            percentile(samples, 100.0).as_secs_f64()
        )
    };
    let never = |results: &[&RoundResult]| -> usize { results.iter().map(|r| r.never_ready).sum() };
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let rounds = flows.iter().map(|f| f.rounds.len()).max().unwrap_or(0);
    for round in 0..rounds {
        let cache = if round == 0 {
            "cold cache"
        } else {
            "warm cache"
        };
        let picked: Vec<Option<&RoundResult>> = flows.iter().map(|f| f.rounds.get(round)).collect();
        let cells = |samples: &dyn Fn(&RoundResult) -> &[Duration]| -> Vec<String> {
            picked
                .iter()
                .map(|r| match r {
                    Some(r) if r.never_ready > 0 => {
                        format!("{} ({} never ready)", three(samples(r)), r.never_ready)
                    }
                    Some(r) => three(samples(r)),
                    None => "-".to_owned(),
                })
                .collect()
        };
        rows.push((
            format!(
                "burst of {servers}, round {} ({cache}): first create → healthy",
                round + 1
            ),
            cells(&|r| &r.ready),
        ));
        rows.push((
            "  its own start call → healthy".to_owned(),
            cells(&|r| &r.start_to_ready),
        ));
    }
    let singles = flows.iter().map(|f| f.singles.len()).max().unwrap_or(0);
    if singles > 0 {
        let gather = |pick: &dyn Fn(&RoundResult) -> &[Duration]| -> Vec<String> {
            flows
                .iter()
                .map(|f| {
                    let samples: Vec<Duration> = f
                        .singles
                        .iter()
                        .flat_map(|r| pick(r).iter().copied())
                        .collect();
                    let results: Vec<&RoundResult> = f.singles.iter().collect();
                    match never(&results) {
                        0 => three(&samples),
                        n => format!("{} ({n} never ready)", three(&samples)),
                    }
                })
                .collect()
        };
        rows.push((
            format!("one seat alone ({singles} in turn, warm cache): create → healthy"),
            gather(&|r| &r.ready),
        ));
        rows.push((
            "  its start call → healthy".to_owned(),
            gather(&|r| &r.start_to_ready),
        ));
    }

    let headers: Vec<String> = flows.iter().map(|f| f.runtime.name().to_owned()).collect();
    print_table(&rows, &headers, 24, "(p50 / p95 / max)");
}

/// Prints labelled rows of cells under `headers`, each column at least `min_cell` wide,
/// with `note` after the header line.
fn print_table(rows: &[(String, Vec<String>)], headers: &[String], min_cell: usize, note: &str) {
    println!();
    let width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let cell_width = rows
        .iter()
        .flat_map(|(_, cells)| cells.iter().map(|c| c.chars().count()))
        .chain([min_cell])
        .max()
        .unwrap_or(min_cell);
    let header: String = headers
        .iter()
        .map(|label| format!("  {label:>cell_width$}"))
        .collect();
    println!("{:<width$}{header}   {note}", "");
    for (label, cells) in rows {
        let cells: String = cells
            .iter()
            .map(|c| format!("  {c:>cell_width$}"))
            .collect();
        println!("{label:<width$}{cells}");
    }
}

/// How many seats of the round waited in Slurm's queue for each reason it gave
/// (`None`: queued, about to be scheduled).
fn queue_reasons(round: &RoundResult) -> String {
    let mut seats: BTreeMap<&str, usize> = BTreeMap::new();
    for steps in round.log.steps.values() {
        for reason in &steps.queue_reasons {
            *seats.entry(reason.as_str()).or_default() += 1;
        }
    }
    if seats.is_empty() {
        return "-".to_owned();
    }
    seats
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Starts `n` bare code-servers at once (as devbox would start them, each with an empty
/// folder and no extensions) and times them until every one answers `/healthz`: what
/// the machine needs for the instances alone, before any provisioning.
fn bare_floor(code_server: &Path, n: usize, dir: &Path) -> Duration {
    let began = Instant::now();
    let (mut instances, mut waiting): (Vec<GroupGuard>, Vec<Direct>) = (0..n)
        .map(|i| {
            let (mut command, direct) =
                common::bare_code_server(code_server, &dir.join(i.to_string()));
            (GroupGuard::spawn("code-server", &mut command), direct)
        })
        .unzip();
    while !waiting.is_empty() {
        waiting.retain(|direct| direct.healthz().is_none());
        assert!(
            began.elapsed() < Duration::from_secs(300),
            "bare code-servers on {waiting:?} never answered"
        );
        if instances.iter_mut().any(|i| i.exited().is_some()) {
            panic!(
                "a bare code-server exited during start (logs in {})",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let floor = began.elapsed();
    std::thread::scope(|scope| {
        for instance in &mut instances {
            scope.spawn(move || instance.stop(Duration::from_secs(10)));
        }
    });
    floor
}

fn truncate(text: &str, max: usize) -> String {
    let mut short: String = text.chars().take(max).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

// ---------------------------------------------------------------------------------
// The bare installs

/// Installs each `.vsix` once with the real code-server into a fresh extensions folder
/// (after one untimed warm-up install) and gives how long each took.
fn bare_installs(code_server: &Path, vsix: &[VsixFile], dir: &Path) -> Vec<Duration> {
    let largest = vsix.iter().max_by_key(|v| v.bytes).expect("a vsix");
    bare_install(code_server, &largest.path, &dir.join("warm-up"));
    vsix.iter()
        .map(|v| bare_install(code_server, &v.path, &dir.join("timed")))
        .collect()
}

/// One `code-server --install-extension`, with the flags and environment devbox gives
/// its installs; panics with the installer's output unless it installed the extension.
fn bare_install(code_server: &Path, vsix: &Path, dir: &Path) -> Duration {
    let sub = |name: &str| dir.join(name);
    for name in ["extensions", "user-data", "xdg-data", "xdg-config"] {
        std::fs::create_dir_all(sub(name)).expect("mkdir");
    }
    let log_path = sub("install.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut command = Command::new(code_server);
    command
        .arg("--extensions-dir")
        .arg(sub("extensions"))
        .arg("--user-data-dir")
        .arg(sub("user-data"))
        .arg("--install-extension")
        .arg(vsix)
        .env("XDG_DATA_HOME", sub("xdg-data"))
        .env("XDG_CONFIG_HOME", sub("xdg-config"))
        .env("EXTENSIONS_GALLERY", "{}")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    for key in devbox::runtime::scrubbed_env() {
        command.env_remove(key);
    }
    let began = Instant::now();
    let mut installer = GroupGuard::spawn("code-server --install-extension", &mut command);
    let status = loop {
        if let Some(status) = installer.exited() {
            break status;
        }
        assert!(
            began.elapsed() < INSTALL_LIMIT,
            "installing {} took over {INSTALL_LIMIT:?}",
            vsix.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = began.elapsed();
    installer.stop(Duration::from_secs(5));
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success() && output.contains("successfully installed"),
        "installing {} failed ({status}):\n{output}",
        vsix.display()
    );
    took
}

// ---------------------------------------------------------------------------------
// The fixture

struct VsixFile {
    path: PathBuf,
    file_name: String,
    /// Files under `extension/`.
    files: usize,
    /// Their size, unpacked.
    bytes: u64,
}

struct Fixture {
    repo_files: usize,
    repo_bytes: u64,
    vsix: Vec<VsixFile>,
    /// The code-server devbox runs: a wrapper that counts installer runs.
    wrapper: PathBuf,
    /// One line per installer run.
    runs_file: PathBuf,
}

impl Fixture {
    /// Writes the repository, the `.vsix` files and the wrapper into `root` (from
    /// [`common::Devbox::prepare`]) and fills the config's placeholders.
    fn build(root: &Path, code_server: &Path) -> Self {
        let repo = root.join("template-repo");
        let (repo_files, repo_bytes) = write_repository(&repo);
        let vsix_dir = root.join("vsix");
        std::fs::create_dir_all(&vsix_dir).expect("mkdir vsix");
        let mut rng = Rng(0x7653_6978);
        let vsix: Vec<VsixFile> = EXTENSIONS
            .iter()
            .map(|ext| {
                let file_name = format!("{}.{}-{}.vsix", ext.publisher, ext.name, ext.version);
                let path = vsix_dir.join(&file_name);
                let (files, bytes) = write_vsix(&path, ext, &mut rng);
                VsixFile {
                    path,
                    file_name,
                    files,
                    bytes,
                }
            })
            .collect();

        let config_path = root.join("config.yaml");
        let config = std::fs::read_to_string(&config_path).expect("read config");
        let names: Vec<&str> = vsix.iter().map(|v| v.file_name.as_str()).collect();
        let config = config
            .replace("{vsix_files}", &names.join(", "))
            .replace("{repo_url}", &format!("file://{}", repo.display()));
        std::fs::write(&config_path, config).expect("write config");

        let runs_file = root.join("installer-runs.log");
        let wrapper = root.join("bin/code-server");
        std::fs::create_dir_all(root.join("bin")).expect("mkdir bin");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n\
                 case \" $* \" in *\" --install-extension \"*) echo \"$$\" >> '{runs}' ;; esac\n\
                 exec '{real}' \"$@\"\n",
                runs = runs_file.display(),
                real = code_server.display()
            ),
        )
        .expect("write wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
        Self {
            repo_files,
            repo_bytes,
            vsix,
            wrapper,
            runs_file,
        }
    }
}

/// A small deterministic generator (xorshift64*): every run builds the same files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const VERBS: [&str; 12] = [
    "load",
    "clean",
    "join",
    "score",
    "filter",
    "aggregate",
    "plot",
    "train",
    "split",
    "validate",
    "export",
    "rank",
];
const NOUNS: [&str; 10] = [
    "orders",
    "customers",
    "events",
    "sessions",
    "features",
    "metrics",
    "labels",
    "regions",
    "products",
    "invoices",
];
const WORDS: [&str; 24] = [
    "the", "data", "pipeline", "reads", "each", "table", "and", "writes", "a", "clean", "copy",
    "with", "its", "schema", "so", "that", "every", "step", "can", "be", "checked", "by", "the",
    "notebook",
];

fn sentence(rng: &mut Rng) -> String {
    let words: Vec<&str> = (0..rng.range(6, 16)).map(|_| rng.pick(&WORDS)).collect();
    let mut text = words.join(" ");
    text[..1].make_ascii_uppercase();
    text.push('.');
    text
}

fn markdown(rng: &mut Rng, title: &str, size: usize) -> String {
    let mut text = format!("# {title}\n\n");
    let mut section = 1;
    while text.len() < size {
        text += &format!("## {section}. {}\n\n", sentence(rng).trim_end_matches('.'));
        for _ in 0..rng.range(2, 5) {
            let lines: Vec<String> = (0..rng.range(2, 5)).map(|_| sentence(rng)).collect();
            text += &lines.join(" ");
            text += "\n\n";
        }
        section += 1;
    }
    text
}

fn python(rng: &mut Rng, module: &str, size: usize) -> String {
    let mut text = format!(
        "\"\"\"{module}: {}\"\"\"\n\nfrom __future__ import annotations\n\nimport logging\nfrom dataclasses import dataclass\n\nlog = logging.getLogger(__name__)\n\n",
        sentence(rng)
    );
    let mut n = 0;
    while text.len() < size {
        let (verb, noun) = (rng.pick(&VERBS), rng.pick(&NOUNS));
        text += &format!(
            "\ndef {verb}_{noun}_{n}(rows: list[dict], limit: int = {limit}) -> list[dict]:\n    \"\"\"{doc}\"\"\"\n    out = []\n    for row in rows[:limit]:\n        if row.get(\"{noun}\") is None:\n            continue\n        out.append({{**row, \"{verb}ed\": True, \"weight\": row.get(\"weight\", 0) * {factor}}})\n    log.debug(\"{verb} {noun}: %d rows\", len(out))\n    return out\n",
            limit = rng.range(10, 10_000),
            doc = sentence(rng),
            factor = rng.range(2, 99),
        );
        n += 1;
    }
    text
}

fn javascript(rng: &mut Rng, module: &str, size: usize) -> String {
    let mut text = format!(
        "\"use strict\";\n// {module}\nObject.defineProperty(exports, \"__esModule\", {{ value: true }});\nconst vscode = require(\"vscode\");\n"
    );
    let mut n = 0;
    while text.len() < size {
        let (verb, noun) = (rng.pick(&VERBS), rng.pick(&NOUNS));
        text += &format!(
            "/** {doc} */\nfunction {verb}{n}(items, options = {{}}) {{\n    const limit = options.limit ?? {limit};\n    const result = [];\n    for (const item of items.slice(0, limit)) {{\n        if (item.{noun} === undefined) {{ continue; }}\n        result.push({{ ...item, {verb}: true, score: (item.score || 0) * {factor} }});\n    }}\n    return result;\n}}\nexports.{verb}{n} = {verb}{n};\n",
            doc = sentence(rng),
            limit = rng.range(10, 5000),
            factor = rng.range(2, 99),
        );
        n += 1;
    }
    text
}

fn csv(rng: &mut Rng, size: usize) -> String {
    let mut text = String::from("id,region,product,quantity,price,discount,timestamp\n");
    let mut id = 0;
    while text.len() < size {
        text += &format!(
            "{id},{},{},{},{}.{:02},0.{:02},2026-{:02}-{:02}T{:02}:{:02}:{:02}Z\n",
            rng.pick(&NOUNS),
            rng.pick(&VERBS),
            rng.range(1, 500),
            rng.range(1, 9999),
            rng.below(100),
            rng.below(100),
            rng.range(1, 12),
            rng.range(1, 28),
            rng.below(24),
            rng.below(60),
            rng.below(60)
        );
        id += 1;
    }
    text
}

fn notebook(rng: &mut Rng, title: &str, cells: usize) -> String {
    let cells: Vec<Value> = (0..cells)
        .map(|i| {
            if i % 3 == 0 {
                json!({"cell_type": "markdown", "metadata": {}, "source": [markdown(rng, title, 400)]})
            } else {
                json!({
                    "cell_type": "code",
                    "execution_count": i,
                    "metadata": {},
                    "outputs": [{"name": "stdout", "output_type": "stream", "text": [sentence(rng)]}],
                    "source": [python(rng, title, 900)],
                })
            }
        })
        .collect();
    serde_json::to_string_pretty(&json!({
        "cells": cells,
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }))
    .expect("notebook JSON")
}

/// A file of random bytes behind a PNG signature (images do not compress).
fn image(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(rng.bytes(size));
    bytes
}

/// The template's repository: 300 files, one commit. Gives (files, bytes).
fn write_repository(dir: &Path) -> (usize, u64) {
    let mut rng = Rng(0x5eed_0001);
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "README.md".into(),
            markdown(&mut rng, "Data engineering workshop", 6_000).into(),
        ),
        (
            "LICENSE".into(),
            markdown(&mut rng, "License", 1_000).into(),
        ),
        (
            ".gitignore".into(),
            b"__pycache__/\n*.pyc\n.venv/\n.ipynb_checkpoints/\n".to_vec(),
        ),
        (
            "pyproject.toml".into(),
            b"[project]\nname = \"workshop\"\nversion = \"0.3.0\"\nrequires-python = \">=3.10\"\ndependencies = [\"pandas>=2\", \"pyarrow>=15\"]\n".to_vec(),
        ),
        (
            "requirements.txt".into(),
            b"pandas>=2\npyarrow>=15\nmatplotlib>=3.8\npytest>=8\n".to_vec(),
        ),
    ];
    let packages = [
        "ingest", "quality", "features", "models", "reports", "serving", "storage", "util",
    ];
    for (p, package) in packages.iter().enumerate() {
        files.push((
            format!("src/workshop/{package}/__init__.py"),
            format!("\"\"\"The {package} step of the workshop pipeline.\"\"\"\n").into(),
        ));
        for m in 0..24 {
            let module = format!(
                "{}_{}",
                VERBS[m % 12],
                NOUNS[(m / 12 + 2 * p) % NOUNS.len()]
            );
            let size = rng.range(1_000, 6_000);
            files.push((
                format!("src/workshop/{package}/{module}.py"),
                python(&mut rng, &module, size).into(),
            ));
        }
    }
    for t in 0..40 {
        let module = format!("test_{}_{}", VERBS[t % 12], NOUNS[t % NOUNS.len()]);
        let size = rng.range(1_000, 4_000);
        files.push((
            format!("tests/{}/{module}.py", packages[t % packages.len()]),
            python(&mut rng, &module, size).into(),
        ));
    }
    for n in 0..12 {
        let title = format!("{:02} {} the {}", n + 1, VERBS[n], NOUNS[n % NOUNS.len()]);
        let cells = rng.range(12, 30);
        files.push((
            format!(
                "notebooks/{:02}-{}-{}.ipynb",
                n + 1,
                VERBS[n],
                NOUNS[n % NOUNS.len()]
            ),
            notebook(&mut rng, &title, cells).into(),
        ));
    }
    for d in 0..30 {
        let size = rng.range(2_000, 8_000);
        let folder = ["guide", "reference", "exercises"][d % 3];
        files.push((
            format!("docs/{folder}/{:02}-{}.md", d + 1, NOUNS[d % NOUNS.len()]),
            markdown(&mut rng, NOUNS[d % NOUNS.len()], size).into(),
        ));
    }
    for noun in &NOUNS[..6] {
        let size = rng.range(250_000, 500_000);
        files.push((format!("data/raw/{noun}.csv"), csv(&mut rng, size).into()));
    }
    for i in 0..7 {
        let size = rng.range(20_000, 80_000);
        files.push((
            format!("docs/images/figure-{:02}.png", i + 1),
            image(&mut rng, size),
        ));
    }

    let repo = git2::Repository::init(dir).expect("git init");
    let mut bytes = 0;
    for (name, contents) in &files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, contents).expect("write");
        bytes += contents.len() as u64;
    }
    let mut index = repo.index().expect("index");
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .expect("git add");
    index.write().expect("write index");
    let tree = repo
        .find_tree(index.write_tree().expect("write tree"))
        .expect("find tree");
    let author = git2::Signature::now("Workshop Team", "workshop@example.com").expect("signature");
    repo.commit(
        Some("HEAD"),
        &author,
        &author,
        "Workshop material",
        &tree,
        &[],
    )
    .expect("commit");
    assert_eq!(index.len(), files.len(), "every file committed");
    (files.len(), bytes)
}

/// A `.vsix` of `ext` with a realistic layout. Gives (files under `extension/`, their
/// unpacked size).
fn write_vsix(path: &Path, ext: &ExtensionFixture, rng: &mut Rng) -> (usize, u64) {
    let ExtensionFixture {
        publisher,
        name,
        version,
        display,
        modules,
    } = *ext;
    let id = format!("{publisher}.{name}");
    let commands: Vec<Value> = VERBS[..6]
        .iter()
        .map(|verb| json!({"command": format!("{name}.{verb}"), "title": format!("{display}: {verb}")}))
        .collect();
    let package = json!({
        "name": name,
        "displayName": display,
        "description": format!("{display} for the data engineering workshop"),
        "version": version,
        "publisher": publisher,
        "license": "MIT",
        "icon": "media/icon.png",
        "repository": {"type": "git", "url": format!("https://example.com/{publisher}/{name}.git")},
        "engines": {"vscode": "^1.80.0"},
        "categories": ["Data Science", "Linters", "Snippets"],
        "keywords": ["sql", "notebook", "workshop"],
        "main": "./out/extension.js",
        "activationEvents": ["onLanguage:python"],
        "contributes": {
            "commands": commands,
            "configuration": {
                "title": display,
                "properties": {
                    format!("{name}.enable"): {"type": "boolean", "default": true, "description": "%config.enable%"},
                    format!("{name}.maxRows"): {"type": "number", "default": 1000, "description": "%config.maxRows%"},
                    format!("{name}.style"): {"type": "string", "enum": ["compact", "full"], "default": "compact"},
                },
            },
            "snippets": [{"language": "python", "path": "./snippets/python.json"}],
        },
    });
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "extension/package.json".into(),
            serde_json::to_vec_pretty(&package).expect("package.json"),
        ),
        (
            "extension/package.nls.json".into(),
            serde_json::to_vec_pretty(&json!({
                "config.enable": format!("Enable {display}."),
                "config.maxRows": "Most rows shown in a preview.",
            }))
            .expect("nls"),
        ),
        (
            "extension/README.md".into(),
            markdown(rng, display, 6_000).into(),
        ),
        (
            "extension/CHANGELOG.md".into(),
            markdown(rng, "Change log", 3_000).into(),
        ),
        (
            "extension/LICENSE.txt".into(),
            markdown(rng, "MIT License", 1_100).into(),
        ),
        ("extension/media/icon.png".into(), image(rng, 12_000)),
        (
            "extension/snippets/python.json".into(),
            serde_json::to_vec_pretty(&json!({
                "Load a table": {"prefix": "load", "body": ["df = spark.read.table(\"${1:name}\")", "$0"]},
                "Clean rows": {"prefix": "clean", "body": ["df = df.dropna(subset=[\"${1:column}\"])"]},
            }))
            .expect("snippets"),
        ),
        (
            "extension/out/extension.js".into(),
            format!(
                "\"use strict\";\nObject.defineProperty(exports, \"__esModule\", {{ value: true }});\nexports.activate = activate;\nexports.deactivate = deactivate;\nconst vscode = require(\"vscode\");\nfunction activate(context) {{\n    for (const verb of [\"load\", \"clean\", \"join\", \"score\", \"filter\", \"aggregate\"]) {{\n        context.subscriptions.push(vscode.commands.registerCommand(`{name}.${{verb}}`, () => vscode.window.showInformationMessage(`{display}: ${{verb}}`)));\n    }}\n}}\nfunction deactivate() {{}}\n"
            )
            .into(),
        ),
    ];
    for icon in ["run", "refresh", "filter"] {
        files.push((
            format!("extension/media/{icon}.svg"),
            format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"16\" height=\"16\" viewBox=\"0 0 16 16\"><path d=\"M{} {}l{} {}-{} {}z\" fill=\"currentColor\"/></svg>\n",
                rng.range(1, 8),
                rng.range(1, 8),
                rng.range(2, 8),
                rng.range(2, 8),
                rng.range(2, 8),
                rng.range(2, 8)
            )
            .into(),
        ));
    }
    let areas = [
        "commands",
        "providers",
        "views",
        "model",
        "services",
        "util",
    ];
    for m in 0..modules {
        let module = format!(
            "{}/{}{}{m}",
            areas[m % areas.len()],
            VERBS[m % VERBS.len()],
            NOUNS[m % NOUNS.len()]
        );
        let size = rng.range(800, 3_000);
        files.push((
            format!("extension/out/{module}.js"),
            javascript(rng, &module, size).into(),
        ));
        if m % 5 == 0 {
            let mappings: String = (0..rng.range(500, 2_000))
                .map(|_| rng.pick(&["AAAA", "CAAC", "EAAE", "GAAG", ";", ","]))
                .collect();
            files.push((
                format!("extension/out/{module}.js.map"),
                serde_json::to_vec(&json!({
                    "version": 3,
                    "file": format!("{module}.js"),
                    "sourceRoot": "",
                    "sources": [format!("../../src/{module}.ts")],
                    "names": [],
                    "mappings": mappings,
                }))
                .expect("source map"),
            ));
        }
    }

    let manifest = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<PackageManifest Version="2.0.0" xmlns="http://schemas.microsoft.com/developer/vsx-schema/2011" xmlns:d="http://schemas.microsoft.com/developer/vsx-schema-design/2011">
  <Metadata>
    <Identity Language="en-US" Id="{name}" Version="{version}" Publisher="{publisher}" />
    <DisplayName>{display}</DisplayName>
    <Description xml:space="preserve">{display} for the data engineering workshop</Description>
    <Tags>sql,notebook,workshop,snippet</Tags>
    <Categories>Data Science,Linters,Snippets</Categories>
    <GalleryFlags>Public</GalleryFlags>
    <Properties>
      <Property Id="Microsoft.VisualStudio.Code.Engine" Value="^1.80.0" />
      <Property Id="Microsoft.VisualStudio.Code.ExtensionDependencies" Value="" />
      <Property Id="Microsoft.VisualStudio.Code.ExtensionPack" Value="" />
      <Property Id="Microsoft.VisualStudio.Code.ExtensionKind" Value="workspace" />
    </Properties>
    <License>extension/LICENSE.txt</License>
    <Icon>extension/media/icon.png</Icon>
  </Metadata>
  <Installation>
    <InstallationTarget Id="Microsoft.VisualStudio.Code"/>
  </Installation>
  <Dependencies/>
  <Assets>
    <Asset Type="Microsoft.VisualStudio.Code.Manifest" Path="extension/package.json" Addressable="true" />
    <Asset Type="Microsoft.VisualStudio.Services.Content.Details" Path="extension/README.md" Addressable="true" />
    <Asset Type="Microsoft.VisualStudio.Services.Content.Changelog" Path="extension/CHANGELOG.md" Addressable="true" />
    <Asset Type="Microsoft.VisualStudio.Services.Content.License" Path="extension/LICENSE.txt" Addressable="true" />
    <Asset Type="Microsoft.VisualStudio.Services.Icons.Default" Path="extension/media/icon.png" Addressable="true" />
  </Assets>
</PackageManifest>
"#
    );
    let content_types = r#"<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension=".json" ContentType="application/json"/><Default Extension=".js" ContentType="application/javascript"/><Default Extension=".map" ContentType="application/json"/><Default Extension=".md" ContentType="text/markdown"/><Default Extension=".txt" ContentType="text/plain"/><Default Extension=".png" ContentType="image/png"/><Default Extension=".svg" ContentType="image/svg+xml"/><Default Extension=".vsixmanifest" ContentType="text/xml"/></Types>
"#;

    let file = std::fs::File::create(path).expect("create vsix");
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (entry, contents) in [
        ("extension.vsixmanifest", manifest.as_bytes()),
        ("[Content_Types].xml", content_types.as_bytes()),
    ]
    .into_iter()
    .chain(files.iter().map(|(e, c)| (e.as_str(), c.as_slice())))
    {
        zip.start_file(entry, options).expect("zip entry");
        zip.write_all(contents).expect("zip write");
    }
    zip.finish().expect("zip finish");
    let bytes = files.iter().map(|(_, c)| c.len() as u64).sum();
    assert!(
        files.iter().all(|(e, _)| e.starts_with("extension/")),
        "{id}: every file under extension/"
    );
    (files.len(), bytes)
}
