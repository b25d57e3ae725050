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
//! `--prebuilt N` compares a seat by claim with a seat by start in one run. The local
//! flow runs first as above, with N seats and two rounds (cold, then warm cache) unless
//! `--servers` / `--rounds` say otherwise; then a devbox of its own runs (release build,
//! local processes, log filter `info` unless `WORKSHOP_POOL_LOG` gives another) whose
//! template, the same one, has `prebuilt: N` (`controller.prebuilt_parallelism` is
//! devbox's default, or `--parallelism P`; the run prints which). It prints, in order:
//! - the initial fill: from starting devbox to `GET /pools` saying ready N of N;
//! - N claims at once (`POST /servers/create-from-template`, one thread each, released
//!   together, as a class arriving), each timed from request to answer; a claim counts as
//!   failed unless it answers 201 with `status: running`, hands out a seat no other
//!   claim got, and its IDE answers `/vscode/<port>/healthz` 200 through devbox on the
//!   first try right after (each failure is printed);
//! - the refill: from the last claim's answer to ready N of N again;
//! - claims under load: claimed IDEs open at once in headless Chromium
//!   (`tests/browser/bench_load.mjs`: playwright-core from `DEVBOX_PLAYWRIGHT_NODE_PATH`,
//!   `/usr/bin/chromium`, a browser context per page, each waiting for
//!   `.monaco-workbench` and then for its explorer to show `README.md`), and one more
//!   claim is timed at each of four moments of that load: 2 s in (the pages fetch the
//!   workbench), at the first workbench shown, at half of them, at the last (each IDE
//!   connection starts its extension host then); with the workbenches shown by then, how
//!   busy the CPUs were during the claim, and how long devbox's threads waited for a CPU
//!   meanwhile (their run-queue wait, summed over threads, so it may exceed the claim). The pages are the other N − 1 claimants'
//!   IDEs, at most 5 per CPU (29 pages on 2 CPUs took 90 s to the workbench, p50, and
//!   some got none in 4 minutes), or `--pages K`; fewer if the memory available then
//!   holds fewer at 400 MiB a page. The run prints how many and why, and how long the
//!   pages took.
//!
//! After the tables above comes one more: per-seat latency, p50 / p90 / p99 / max, of
//! the local rounds (first create → healthy, and own start call → healthy), of one seat
//! started alone, of the N claims (request → 201 running, and the `/healthz` after it),
//! and of the claims under load; then every claim's latency, fastest first (how far the
//! claims of a class wait on each other), the claims' p50 and p99 against the issue's
//! targets (p50 ≤ 100 ms, p99 ≤ 250 ms; printed as met or missed, never failing the
//! run), the loaded claims beside the unloaded p50, the fill and the refill (with the
//! mean of `devbox_pool_refill_seconds`, spec written → ready, over the fill's and the
//! refill's members), and the claim and fallback counters.
//!
//! Run: `cargo bench --bench workshop` (or `-- --servers 5 --rounds 2`, `-- --runtime
//! slurm --rounds 2`, `-- --prebuilt 30`; `WORKSHOP_LOG=FILE` appends devbox's log lines
//! of each round, and of the pool's devbox, to FILE). Build once with `cargo bench
//! --bench workshop --no-run` (release, `lto = "fat"`: minutes the first time). Needs
//! code-server (`scripts/install-code-server.sh`, or `DEVBOX_CODE_SERVER`), for
//! `--runtime slurm` root (slurm-dev.sh installs and starts the cluster), and for the
//! claims under load Node.js, playwright-core and Chromium (`scripts/install-browser.sh`;
//! without them that step is skipped and says why). About a minute and a half with the
//! extension cache (the bare floor included); without one, 30 seats took 2.5 minutes
//! here.

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
    let pool = PoolOptions::from_args();
    // With a pool, the bursts start as many seats as the pool holds, cold and warm.
    let default_servers = match &pool {
        Some(pool) => pool.size as u64,
        None if on_slurm => SLURM_BURST,
        None => 30,
    };
    let servers = common::arg_number("--servers", default_servers).max(1) as usize;
    let default_rounds = if pool.is_some() { 2 } else { 1 };
    let rounds = common::arg_number("--rounds", default_rounds).max(1) as usize;
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
    if let Some(pool) = &pool {
        println!(
            "then a pool of {} prebuilt seats of the same template (local processes): fill, {} claims at once, refill, claims while {} IDEs load in Chromium ({})",
            pool.size, pool.size, pool.pages, pool.pages_why
        );
    }
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
    let pooled = pool.map(|options| run_pool(&options, &code_server));
    let (install_cost, floor) = baseline.expect("at least one flow");
    report(servers, &flows, install_cost, floor);
    if let Some(pooled) = &pooled {
        pool_report(pooled, &flows[0]);
    }
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
// The pool (`--prebuilt N`)

/// Longest a pool may take to fill (or refill) before the bench says so and goes on.
const FILL_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How often `GET /pools` is read while a pool fills.
const POOLS_POLL: Duration = Duration::from_millis(50);
/// Memory one page of the Chromium load is reckoned to cost: its renderer, and the
/// extension host its IDE connection starts in code-server.
const PAGE_MIB: u64 = 400;
/// Memory left to everything else while the Chromium load runs.
const RESERVE_MIB: u64 = 3 * 1024;
/// From the start of the Chromium load to the first claim under load: the pages are
/// fetching the workbench then.
const LOADED_CLAIM_DELAY: Duration = Duration::from_secs(2);
/// Pages of the Chromium load per CPU unless `--pages` says: with 29 pages on 2 CPUs
/// the workbenches took 90 s (p50) and some pages none within 4 minutes.
const PAGES_PER_CPU: usize = 5;
/// Longest the Chromium load may run (its script gives up a little earlier).
const LOAD_LIMIT: Duration = Duration::from_secs(6 * 60);
/// Longest the refill histogram may lag `GET /pools`.
const METRIC_WAIT: Duration = Duration::from_secs(10);
/// A file of the template's repository, which each loaded IDE's explorer shows.
const LOAD_FILE: &str = "README.md";

/// What `--prebuilt N` (with `--parallelism P`, `--pages K`) asks for.
struct PoolOptions {
    size: usize,
    /// `controller.prebuilt_parallelism`; devbox's default when `None`.
    parallelism: Option<u64>,
    /// Chromium pages to load while claiming (at most N − 1; fewer if the memory
    /// available when the load starts holds fewer).
    pages: usize,
    /// Why that many.
    pages_why: String,
}

impl PoolOptions {
    fn from_args() -> Option<Self> {
        let size = common::arg_number("--prebuilt", 0) as usize;
        if size == 0 {
            return None;
        }
        let others = size - 1;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (pages, pages_why) = match common::arg_text("--pages") {
            Some(_) => {
                let pages = (common::arg_number("--pages", 0) as usize).min(others);
                (pages, format!("--pages {pages}"))
            }
            None if others > PAGES_PER_CPU * cpus => (
                PAGES_PER_CPU * cpus,
                format!(
                    "not the other {others} claimants': {PAGES_PER_CPU} per CPU on {cpus} CPUs"
                ),
            ),
            None => (others, format!("the other {others} claimants")),
        };
        Some(Self {
            size,
            parallelism: common::arg_text("--parallelism")
                .map(|_| common::arg_number("--parallelism", 0).max(1)),
            pages,
            pages_why,
        })
    }

    /// `controller.prebuilt_parallelism` as the run has it, and where it came from.
    fn parallelism_text(&self) -> String {
        match self.parallelism {
            Some(p) => format!("prebuilt_parallelism {p}, from --parallelism"),
            None => format!(
                "prebuilt_parallelism {}, devbox's default",
                devbox::config::ControllerSettings::default().prebuilt_parallelism
            ),
        }
    }
}

/// One `POST /servers/create-from-template` answered by a claim (or not).
struct Claim {
    /// Request sent → answer read.
    took: Duration,
    answered: Instant,
    slug: Option<String>,
    port: Option<u16>,
    /// `GET /vscode/<port>/healthz` through devbox right after the answer, when it
    /// answered 200.
    healthz: Option<Duration>,
    /// What was wrong: not 201, not `running`, a seat handed out twice, the IDE not
    /// answering at once.
    problem: Option<String>,
}

/// A claim timed while the Chromium pages loaded.
struct LoadedClaim {
    claim: Claim,
    /// Which [`Moment`] of the load it was sent at.
    moment: String,
    /// Since the load began.
    at: Duration,
    /// Workbenches shown by then.
    workbenches: usize,
    /// Share of the machine's CPUs busy during the claim.
    busy: Option<f64>,
    /// How long devbox's threads waited for a CPU during the claim, all together.
    devbox_waited: Duration,
}

#[derive(Default)]
struct Load {
    /// Pages loaded, and why not N − 1.
    pages: usize,
    limit: String,
    claims: Vec<LoadedClaim>,
    /// Per page, since the load began.
    workbench: Vec<Duration>,
    explorer: Vec<Duration>,
    failures: Vec<String>,
    /// Share of the machine's CPUs busy from the load's start to its end.
    busy: Option<f64>,
    /// The load's whole length.
    took: Duration,
    /// Why there was no load, or how its script ended badly.
    error: Option<String>,
}

struct PoolRun {
    size: usize,
    parallelism: String,
    /// devbox started → `/health` answered.
    devbox_up: Duration,
    /// devbox started → `GET /pools` says ready N of N.
    fill: Option<Duration>,
    claims: Vec<Claim>,
    /// The last claim answered → ready N of N again.
    refill: Option<Duration>,
    /// `devbox_pool_refill_seconds`: (count, sum).
    refill_metric: Option<(f64, f64)>,
    claims_total: f64,
    fallbacks_total: f64,
    load: Load,
    rss: f64,
}

/// The pool flow: a devbox of its own whose template keeps `size` seats prebuilt; the
/// initial fill, a class claiming at once, the refill, and claims under a browser load.
fn run_pool(options: &PoolOptions, code_server: &Path) -> PoolRun {
    let mut config = format!(
        "{}{TEMPLATE_CONFIG}          prebuilt: {}\n",
        common::INSTANCE_CONFIG,
        options.size
    );
    if let Some(parallelism) = options.parallelism {
        config += &format!("controller:\n  prebuilt_parallelism: {parallelism}\n");
    }
    let (root, http_port) = common::Devbox::prepare(&config);
    let fixture = Fixture::build(root.path(), code_server);
    let size = options.size;
    let parallelism = options.parallelism_text();
    println!("-- pool of {size} --");
    let api = agent(Duration::from_secs(60));

    print!("pool of {size} ({parallelism}): starting devbox, filling…");
    let _ = std::io::stdout().flush();
    let began = Instant::now();
    // `info`: devbox's debug log has a line per proxied request, which the browser
    // load would multiply.
    let log_filter = std::env::var("WORKSHOP_POOL_LOG").unwrap_or_else(|_| "info".into());
    let devbox = ServingDevbox::start(root, http_port, &fixture.wrapper, &log_filter);
    let devbox_up = began.elapsed();
    let fill = wait_pool(&api, &devbox, size, began);
    match fill {
        Some(fill) => println!(" {size} of {size} ready after {}", secs(fill)),
        None => println!(" not full after {}", secs(FILL_LIMIT)),
    }

    print!("claiming {size} at once…");
    let _ = std::io::stdout().flush();
    let claims = claim_at_once(&api, &devbox, "class", size);
    let failed = claims.iter().filter(|c| c.problem.is_some()).count();
    let wall = claims.iter().map(|c| c.took).max().unwrap_or_default();
    println!(
        " all answered after {}; {} of {size} running with their IDE answering /vscode/<port>/healthz at once",
        secs(wall),
        size - failed
    );
    for claim in claims.iter().filter(|c| c.problem.is_some()) {
        println!(
            "  claim failed: {}",
            truncate(claim.problem.as_deref().unwrap_or(""), 300)
        );
    }

    print!("refilling…");
    let _ = std::io::stdout().flush();
    let last = claims
        .iter()
        .map(|c| c.answered)
        .max()
        .unwrap_or_else(Instant::now);
    let refill = wait_pool(&api, &devbox, size, last);
    match refill {
        Some(refill) => println!(
            " {size} of {size} ready again {} after the last claim",
            secs(refill)
        ),
        None => println!(" not full again after {}", secs(FILL_LIMIT)),
    }

    let ports: Vec<u16> = claims
        .iter()
        .filter(|c| c.problem.is_none())
        .filter_map(|c| c.port)
        .collect();
    let refill_metric = refill_histogram(&api, &devbox, 2 * size);
    let load = claims_under_load(&api, &devbox, &ports, options);

    let metrics = read_metrics(&api, &devbox);
    // A counter of a template is written once it counted something.
    let counter = |name: &str| metric_value(&metrics, name).unwrap_or(0.0);
    let rss = common::rss_mib(devbox.pid());
    // Drained, so that `WORKSHOP_LOG` gets the pool's log too.
    let _ = read_log(&devbox);
    print!("stopping devbox and its servers…");
    let _ = std::io::stdout().flush();
    let stopping = Instant::now();
    drop(devbox);
    println!(" {}", secs(stopping.elapsed()));
    PoolRun {
        size,
        parallelism,
        devbox_up,
        fill,
        claims,
        refill,
        refill_metric,
        claims_total: counter("devbox_pool_claims_total"),
        fallbacks_total: counter("devbox_pool_fallbacks_total"),
        load,
        rss,
    }
}

/// Polls `GET /pools` until the template's pool is ready `size` of `size`; gives the
/// time since `since`, or `None` after [`FILL_LIMIT`].
fn wait_pool(
    api: &ureq::Agent,
    devbox: &ServingDevbox,
    size: usize,
    since: Instant,
) -> Option<Duration> {
    let url = devbox.url("/pools");
    loop {
        let entry = api
            .get(&url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
            .and_then(|body| {
                body["data"]
                    .as_array()?
                    .iter()
                    .find(|p| p["template"] == TEMPLATE)
                    .cloned()
            });
        if let Some(entry) = &entry
            && entry["ready"] == size
            && entry["size"] == size
        {
            return Some(since.elapsed());
        }
        if since.elapsed() > FILL_LIMIT {
            println!(
                "\n  GET /pools gives {}",
                entry.map_or("no pool of the template".into(), |e| e.to_string())
            );
            return None;
        }
        std::thread::sleep(POOLS_POLL);
    }
}

/// `n` claims sent at one moment (one thread each, released together), as a class
/// arriving; each checked as [`claim`] does, and no seat handed out twice.
fn claim_at_once(api: &ureq::Agent, devbox: &ServingDevbox, prefix: &str, n: usize) -> Vec<Claim> {
    let base = devbox.url("");
    let barrier = std::sync::Barrier::new(n);
    let mut claims: Vec<Claim> = std::thread::scope(|scope| {
        let threads: Vec<_> = (1..=n)
            .map(|i| {
                let (base, barrier) = (base.as_str(), &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    claim(api, base, &format!("{prefix}-{i:02}"))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("claim thread"))
            .collect()
    });
    let mut seen = HashSet::new();
    for claim in &mut claims {
        if let Some(slug) = &claim.slug
            && !seen.insert(slug.clone())
            && claim.problem.is_none()
        {
            claim.problem = Some(format!("{slug} was handed out twice"));
        }
    }
    claims
}

/// One `POST /servers/create-from-template` named `name`, timed from request to answer;
/// a claim is right when it answers 201 with a `running` pool server whose IDE answers
/// `/vscode/<port>/healthz` through devbox on the first try, right after.
fn claim(api: &ureq::Agent, base: &str, name: &str) -> Claim {
    let url = format!("{base}/servers/create-from-template");
    let sent = Instant::now();
    let answer = api
        .post(&url)
        .send_json(json!({"name": name, "template_id": TEMPLATE, "tab_name": TAB}))
        .map(|mut r| {
            let status = r.status().as_u16();
            (status, r.body_mut().read_to_string().unwrap_or_default())
        });
    let answered = Instant::now();
    let mut claim = Claim {
        took: answered - sent,
        answered,
        slug: None,
        port: None,
        healthz: None,
        problem: None,
    };
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(err) => {
            claim.problem = Some(format!("{name}: POST {url}: {err}"));
            return claim;
        }
    };
    let view: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    claim.slug = view["slug"].as_str().map(str::to_owned);
    claim.port = view["port"].as_u64().and_then(|p| u16::try_from(p).ok());
    let problem = if status != 201 {
        Some(format!("answered {status}: {body}"))
    } else if view["status"] != "running" {
        Some(format!(
            "answered 201 with status {} (not a pool server): {body}",
            view["status"]
        ))
    } else if let Some(port) = claim.port {
        let healthz = format!("{base}/vscode/{port}/healthz");
        let asked = Instant::now();
        match api.get(&healthz).call() {
            Ok(r) if r.status() == 200 => {
                claim.healthz = Some(asked.elapsed());
                None
            }
            Ok(r) => Some(format!(
                "{} of {:?}: GET {healthz}: {}",
                name,
                claim.slug,
                r.status()
            )),
            Err(err) => Some(format!(
                "{} of {:?}: GET {healthz}: {err}",
                name, claim.slug
            )),
        }
    } else {
        Some(format!("answered 201 without a port: {body}"))
    };
    claim.problem = problem.map(|p| format!("{name}: {p}"));
    claim
}

/// The `node_modules` holding playwright-core (`DEVBOX_PLAYWRIGHT_NODE_PATH`, else the
/// worktree's `.tools/playwright/node_modules`), and Chromium; why not when missing.
fn playwright() -> Result<PathBuf, String> {
    let path = std::env::var_os("DEVBOX_PLAYWRIGHT_NODE_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/playwright/node_modules")
        });
    let chromium = Path::new("/usr/bin/chromium");
    if path.join("playwright-core").is_dir() && chromium.exists() {
        Ok(path)
    } else {
        Err(format!(
            "no playwright-core in {} or no {} (run scripts/install-browser.sh)",
            path.display(),
            chromium.display()
        ))
    }
}

/// How many pages the load opens: `asked` (for the reason `why`), unless the memory
/// available now holds fewer; and why.
fn feasible_pages(asked: usize, why: &str) -> (usize, String) {
    let available = common::mem_available_mib();
    let fit = (available.saturating_sub(RESERVE_MIB) / PAGE_MIB) as usize;
    if fit < asked {
        (
            fit,
            format!("{why}; then {available} MiB available holds {fit} at {PAGE_MIB} MiB a page"),
        )
    } else {
        (asked, format!("{why}; {available} MiB available"))
    }
}

/// A moment of the Chromium load at which a claim is timed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Moment {
    /// This long after the pages were sent to their IDEs (fetching the workbench).
    After(Duration),
    /// Once this many pages have shown the workbench (or failed): their IDE connections
    /// are starting extension hosts and reading workspaces.
    Shown(usize),
}

impl Moment {
    /// The moments of a load of `pages`: early, at the first workbench, at half of
    /// them, and at the last (each once).
    fn of_load(pages: usize) -> Vec<Moment> {
        let mut moments = vec![Moment::After(LOADED_CLAIM_DELAY)];
        for shown in [1, pages.div_ceil(2), pages] {
            if shown > 0 && !moments.contains(&Moment::Shown(shown)) {
                moments.push(Moment::Shown(shown));
            }
        }
        moments
    }

    fn reached(self, elapsed: Duration, shown: usize) -> bool {
        match self {
            Moment::After(delay) => elapsed >= delay,
            Moment::Shown(n) => shown >= n,
        }
    }

    fn describe(self, pages: usize) -> String {
        match self {
            Moment::After(delay) => format!("{} s in", delay.as_secs()),
            Moment::Shown(1) => "at the first workbench".to_owned(),
            Moment::Shown(n) if n == pages => "at the last workbench".to_owned(),
            Moment::Shown(n) => format!("at workbench {n} of {pages}"),
        }
    }
}

/// Opens the IDEs on `ports` (through devbox) in headless Chromium at once and, while
/// they load, times a claim at each [`Moment::of_load`].
fn claims_under_load(
    api: &ureq::Agent,
    devbox: &ServingDevbox,
    ports: &[u16],
    options: &PoolOptions,
) -> Load {
    let node_path = match playwright() {
        Ok(path) => path,
        Err(why) => {
            println!("claims under load: skipped, {why}");
            return Load {
                error: Some(why),
                ..Load::default()
            };
        }
    };
    let (pages, limit) = feasible_pages(options.pages.min(ports.len()), &options.pages_why);
    let mut load = Load {
        pages,
        limit,
        ..Load::default()
    };
    let moments = Moment::of_load(pages);
    print!(
        "claims under load: {pages} IDE(s) loading in Chromium ({}), a claim at each of {} moments…",
        load.limit,
        moments.len()
    );
    let _ = std::io::stdout().flush();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/bench_load.mjs");
    let mut command = Command::new("node");
    command
        .arg(&script)
        .arg(LOAD_FILE)
        .args(
            ports[..pages]
                .iter()
                .map(|p| devbox.url(&format!("/vscode/{p}/"))),
        )
        .env("NODE_PATH", node_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut browser = GroupGuard::spawn("node bench_load.mjs", &mut command);
    let lines = read_lines(browser.take_stdout().expect("piped stdout"));

    let base = devbox.url("");
    let mut started: Option<(Instant, (u64, u64))> = None;
    let mut next = moments.iter().copied().peekable();
    let (mut done, mut ended) = (false, false);
    let launched = Instant::now();
    while !done && !ended && launched.elapsed() < LOAD_LIMIT {
        let shown = load.workbench.len() + load.failures.len();
        if let Some((since, _)) = started
            && let Some(moment) = next.next_if(|m| m.reached(since.elapsed(), shown))
        {
            let at = since.elapsed();
            let (before, waited_before) = (common::cpu_ticks(), common::cpu_wait(devbox.pid()));
            let claim = claim(api, &base, &format!("loaded-{:02}", load.claims.len() + 1));
            let busy = common::busy_share(before, common::cpu_ticks());
            load.claims.push(LoadedClaim {
                claim,
                moment: moment.describe(pages),
                at,
                workbenches: load.workbench.len(),
                busy,
                devbox_waited: common::cpu_wait(devbox.pid()).saturating_sub(waited_before),
            });
            continue;
        }
        let line = match lines.recv_timeout(POOLS_POLL) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                ended = true;
                continue;
            }
        };
        let words: Vec<&str> = line.splitn(3, ' ').collect();
        let ms = |w: &str| w.parse::<u64>().ok().map(Duration::from_millis);
        match words.as_slice() {
            ["navigating", ..] => started = Some((Instant::now(), common::cpu_ticks())),
            ["workbench", _, t] => load.workbench.extend(ms(t)),
            ["explorer", _, t] => load.explorer.extend(ms(t)),
            ["failed", page, why] => load.failures.push(format!("page {page}: {why}")),
            ["done"] => done = true,
            _ => {}
        }
    }
    // Moments the load never reached get no claim: it would not be under load.
    if let Some((at, ticks)) = started {
        load.took = at.elapsed();
        load.busy = common::busy_share(ticks, common::cpu_ticks());
    }
    let exited = browser.exited();
    browser.stop(Duration::from_secs(10));
    load.error = match (started, done, ended) {
        (None, _, _) => Some(format!(
            "the browser load never started (node: {})",
            exited.map_or("still running".into(), |s| s.to_string())
        )),
        (_, true, _) => None,
        (_, false, true) => Some(format!(
            "bench_load.mjs ended before every page was done ({})",
            exited.map_or("still running".into(), |s| s.to_string())
        )),
        (_, false, false) => Some(format!(
            "the load did not finish within {}",
            secs(LOAD_LIMIT)
        )),
    };
    match &load.error {
        Some(why) => println!(" {why}"),
        None => println!(
            " {} of {pages} workbenches after {}",
            load.workbench.len(),
            secs(load.took)
        ),
    }
    for failure in &load.failures {
        println!("  {}", truncate(failure, 300));
    }
    for loaded in &load.claims {
        if let Some(problem) = &loaded.claim.problem {
            println!("  claim failed: {}", truncate(problem, 300));
        }
    }
    load
}

/// The lines `from` writes, as they come.
fn read_lines(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `devbox_pool_refill_seconds` (count, sum) once it has counted `members` (the
/// keeper times a member at its first round that sees it ready, a moment after
/// `GET /pools` does), or as it is after [`METRIC_WAIT`].
fn refill_histogram(
    api: &ureq::Agent,
    devbox: &ServingDevbox,
    members: usize,
) -> Option<(f64, f64)> {
    let since = Instant::now();
    loop {
        let metrics = read_metrics(api, devbox);
        let metric = |name: &str| metric_value(&metrics, name);
        let histogram = metric("devbox_pool_refill_seconds_count")
            .zip(metric("devbox_pool_refill_seconds_sum"));
        if histogram.is_some_and(|(count, _)| count >= members as f64)
            || since.elapsed() > METRIC_WAIT
        {
            return histogram;
        }
        std::thread::sleep(POOLS_POLL);
    }
}

fn read_metrics(api: &ureq::Agent, devbox: &ServingDevbox) -> String {
    api.get(&devbox.url("/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default()
}

/// The value of metric `name` for the bench's template in Prometheus text `metrics`.
fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    let label = format!("template=\"{TEMPLATE}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(&label))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

/// A duration in ms below 10 s, else in seconds.
fn short(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.0} ms", common::millis(d))
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// "Seat by claim" beside "seat by start": one table of per-seat latencies (p50 / p90 /
/// p99 / max) of the local flow's rounds and single starts and of the pool's claims,
/// then the claims against the issue's targets, the fill and the refill.
fn pool_report(pool: &PoolRun, local: &Flow) {
    let four = |samples: &[Duration]| -> Vec<String> {
        if samples.is_empty() {
            return vec!["-".to_owned(); 4];
        }
        [50.0, 90.0, 99.0, 100.0]
            .iter()
            .map(|q| short(percentile(samples, *q)))
            .collect()
    };
    let with_missing = |mut cells: Vec<String>, missing: usize, what: &str| {
        if missing > 0
            && let Some(last) = cells.last_mut()
        {
            *last = format!("{last} ({missing} {what})");
        }
        cells
    };
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for (i, round) in local.rounds.iter().enumerate() {
        let cache = if i == 0 { "cold cache" } else { "warm cache" };
        let seats = round.ready.len() + round.never_ready;
        rows.push((
            format!(
                "start {seats} at once, round {} ({cache}): first create → healthy",
                i + 1
            ),
            with_missing(four(&round.ready), round.never_ready, "never ready"),
        ));
        rows.push((
            "  its own start call → healthy".to_owned(),
            with_missing(
                four(&round.start_to_ready),
                round.never_ready,
                "never ready",
            ),
        ));
    }
    if !local.singles.is_empty() {
        let ready: Vec<Duration> = local.singles.iter().flat_map(|r| r.ready.clone()).collect();
        let never: usize = local.singles.iter().map(|r| r.never_ready).sum();
        rows.push((
            format!(
                "one seat alone ({} in turn, warm cache): create → healthy",
                local.singles.len()
            ),
            with_missing(four(&ready), never, "never ready"),
        ));
    }
    let good: Vec<&Claim> = pool.claims.iter().filter(|c| c.problem.is_none()).collect();
    let failed = pool.claims.len() - good.len();
    let took: Vec<Duration> = good.iter().map(|c| c.took).collect();
    rows.push((
        format!(
            "claim {} at once from the pool: request → 201 running",
            pool.size
        ),
        with_missing(four(&took), failed, "failed"),
    ));
    let healthz: Vec<Duration> = good.iter().filter_map(|c| c.healthz).collect();
    rows.push((
        "  then /vscode/<port>/healthz through devbox".to_owned(),
        four(&healthz),
    ));
    let loaded: Vec<Duration> = pool
        .load
        .claims
        .iter()
        .filter(|l| l.claim.problem.is_none())
        .map(|l| l.claim.took)
        .collect();
    let loaded_failed = pool.load.claims.len() - loaded.len();
    rows.push((
        format!(
            "claim while {} IDEs load in Chromium ({} moments)",
            pool.load.pages,
            pool.load.claims.len()
        ),
        with_missing(four(&loaded), loaded_failed, "failed"),
    ));
    let headers: Vec<String> = ["p50", "p90", "p99", "max"].map(String::from).to_vec();
    print_table(
        &rows,
        &headers,
        9,
        "(per seat: seat by start vs seat by claim)",
    );

    println!();
    let target = |d: Duration, ms: u64| {
        if d <= Duration::from_millis(ms) {
            "met"
        } else {
            "missed"
        }
    };
    if took.is_empty() {
        println!("claim latency: no claim succeeded");
    } else {
        let (p50, p90, p99, max) = (
            percentile(&took, 50.0),
            percentile(&took, 90.0),
            percentile(&took, 99.0),
            percentile(&took, 100.0),
        );
        println!(
            "claim latency, {} at once: p50 {:.0} ms (issue's target ≤ 100 ms: {}), p90 {:.0} ms, p99 {:.0} ms (target ≤ 250 ms: {}), max {:.0} ms",
            pool.claims.len(),
            common::millis(p50),
            target(p50, 100),
            common::millis(p90),
            common::millis(p99),
            target(p99, 250),
            common::millis(max)
        );
    }
    let mut sorted = took.clone();
    sorted.sort();
    println!(
        "each claim, fastest first (ms): {}",
        sorted
            .iter()
            .map(|d| format!("{:.0}", common::millis(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "claims failed (not 201, not running, handed out twice, or the IDE not answering /vscode/<port>/healthz at once): {failed} of {}",
        pool.claims.len()
    );
    for claim in pool.claims.iter().filter_map(|c| c.problem.as_deref()) {
        println!("  {}", truncate(claim, 300));
    }
    if !pool.load.claims.is_empty() {
        let unloaded = (!took.is_empty()).then(|| percentile(&took, 50.0));
        println!(
            "claims under load, {} IDEs loading in Chromium ({}), vs {} unloaded p50:",
            pool.load.pages,
            pool.load.limit,
            unloaded.map_or("-".into(), short)
        );
        for l in &pool.load.claims {
            println!(
                "  {:<24}{:>8}{}: {:.1} s into the load, {} of {} workbenches shown; during the claim the CPUs were {} busy and devbox's threads waited {} for one",
                l.moment,
                short(l.claim.took),
                if l.claim.problem.is_some() {
                    " (failed)"
                } else {
                    ""
                },
                l.at.as_secs_f64(),
                l.workbenches,
                pool.load.pages,
                l.busy.map_or("?".into(), |b| format!("{:.0} %", b * 100.0)),
                short(l.devbox_waited),
            );
        }
    }
    if let Some(error) = &pool.load.error {
        println!("  the Chromium load: {error}");
    }
    if pool.load.pages > 0 {
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
        println!(
            "  the Chromium load: {} of {} pages showed the workbench (p50 / max {}), {} their explorer (p50 / max {}), {} failed; {} long, CPUs {} busy",
            pool.load.workbench.len(),
            pool.load.pages,
            median_max(&pool.load.workbench),
            pool.load.explorer.len(),
            median_max(&pool.load.explorer),
            pool.load.failures.len(),
            secs(pool.load.took),
            pool.load
                .busy
                .map_or("?".into(), |b| format!("{:.0} %", b * 100.0))
        );
    }
    match pool.fill {
        Some(fill) => println!(
            "pool fill: {} of {} ready {} after devbox started (it answered after {}; {}): {:.1} seats per minute",
            pool.size,
            pool.size,
            secs(fill),
            secs(pool.devbox_up),
            pool.parallelism,
            pool.size as f64 * 60.0 / fill.as_secs_f64()
        ),
        None => println!("pool fill: not full within {}", secs(FILL_LIMIT)),
    }
    let refill_metric = pool.refill_metric.map_or(String::new(), |(count, sum)| {
        if count > 0.0 {
            format!(
                "; devbox_pool_refill_seconds: {count:.0} of the fill's and the refill's {} members timed (the keeper leaves out one claimed before its round saw it ready), mean {:.1} s from spec written to ready",
                2 * pool.size,
                sum / count
            )
        } else {
            String::new()
        }
    });
    match pool.refill {
        Some(refill) => println!(
            "refill after the class: {} of {} ready again {} after the last claim{refill_metric}",
            pool.size,
            pool.size,
            secs(refill)
        ),
        None => println!(
            "refill after the class: not full again within {}",
            secs(FILL_LIMIT)
        ),
    }
    println!(
        "devbox_pool_claims_total {:.0}, devbox_pool_fallbacks_total {:.0}; devbox RSS at the end {:.1} MiB ({} seats claimed, the pool's {} beside them)",
        pool.claims_total,
        pool.fallbacks_total,
        pool.rss,
        pool.claims.len() + pool.load.claims.len(),
        pool.size
    );
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
