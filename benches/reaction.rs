//! Reaction: how long from "I want this server running" to code-server answering.
//!
//! Each round (default 10, after one untimed warm-up round) measures both, in an order
//! that alternates from round to round:
//! - bare: real code-server started by hand with the flags and environment devbox uses
//!   (`launch_plan` in `src/controller/reconciler/start.rs`; a Unix socket, as devbox's
//!   default `listen: socket`), from spawn to the first 200 from its `/healthz`; then
//!   its process group is stopped;
//! - devbox: one running release `devbox serve`; `specs/r<i>.yaml` is written (through a
//!   temp file and a rename) with `state: running` and a pinned port, and timed until
//!   `/healthz` straight on the instance's socket answers 200 (and, after that, until the
//!   same answer comes through devbox's proxy at `/vscode/<port>/healthz`); then `state:
//!   stopped` and a wait until devbox reports the server stopped.
//!
//! Prints both medians, p90, the difference and the ratio beside the target (devbox adds
//! at most 100 ms at the median) and the original Go tool's figure (about 0.59 s from its
//! start call to a proxied answer), plus where devbox's time goes, from its own log.
//!
//! Run: `cargo bench --bench reaction` (or `-- --rounds 20`, and `--debounce-ms N` to
//! try another `controller.debounce` than devbox's default); about 30 s. Needs
//! code-server (`scripts/install-code-server.sh`, or `DEVBOX_CODE_SERVER`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::{Direct, GroupGuard, ServingDevbox, millis, percentile};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(5);

/// One devbox round.
struct DevboxRound {
    /// Spec written → `/healthz` on the instance's socket answers 200.
    healthz: Duration,
    /// Spec written → `/vscode/<port>/healthz` through devbox answers 200.
    proxied: Duration,
    /// Spec written → devbox logs `provisioning on port …` (file event, debounce, reconcile).
    seen: Option<Duration>,
    /// Spec written → devbox logs `started: …` (its own health poll saw the instance).
    running: Option<Duration>,
    /// CPU devbox itself used from the spec's write to `/healthz` 200 (10 ms ticks).
    cpu: Duration,
}

fn main() {
    let rounds = common::arg_number("--rounds", 10) as usize;
    let code_server = common::code_server();
    println!(
        "reaction: {rounds} rounds (+1 warm-up), {}",
        code_server.display()
    );
    println!("load average: {}", common::load_average());

    // `--debounce-ms N` tries another `controller.debounce` (default: devbox's, 25 ms).
    let debounce = std::env::args()
        .any(|arg| arg == "--debounce-ms")
        .then(|| common::arg_number("--debounce-ms", 100));
    let config = match debounce {
        Some(ms) => {
            println!("controller.debounce: {ms} ms");
            format!(
                "{}controller:\n  debounce: {ms}ms\n",
                common::INSTANCE_CONFIG
            )
        }
        None => common::INSTANCE_CONFIG.to_owned(),
    };
    let (root, http_port) = common::Devbox::prepare(&config);
    let bare_dir = root.path().join("bare");
    let devbox = ServingDevbox::start(root, http_port, &code_server, "info");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .into();

    let mut bare = Vec::new();
    let mut managed = Vec::new();
    let mut used_ports = Vec::new();
    for round in 0..=rounds {
        let devbox_port = common::free_port_in(common::INSTANCE_PORTS, &used_ports);
        used_ports.push(devbox_port);
        let bare_instance = bare_dir.join(round.to_string());
        let run_bare = || bare_round(&code_server, &bare_instance);
        let run_devbox = || devbox_round(&agent, &devbox, round, devbox_port);
        // Which goes first alternates, so neither always follows the other's stop.
        let (b, d) = if round % 2 == 0 {
            let b = run_bare();
            (b, run_devbox())
        } else {
            let d = run_devbox();
            (run_bare(), d)
        };
        let label = if round == 0 {
            "warm-up".to_owned()
        } else {
            format!("round {round:>2}")
        };
        println!(
            "  {label}: bare {:>6.0} ms   devbox {:>6.0} ms (proxied {:>6.0} ms)",
            millis(b),
            millis(d.healthz),
            millis(d.proxied)
        );
        if round > 0 {
            bare.push(b);
            managed.push(d);
        }
    }
    drop(devbox);
    report(&bare, &managed);
    println!("load average: {}", common::load_average());
}

/// Starts code-server by hand as devbox would, times spawn → `/healthz` 200, stops it.
fn bare_round(code_server: &Path, dir: &Path) -> Duration {
    let (mut command, direct) = common::bare_code_server(code_server, dir);
    let began = Instant::now();
    let mut instance = GroupGuard::spawn("code-server", &mut command);
    loop {
        if direct.healthz().is_some() {
            break;
        }
        if let Some(status) = instance.exited() {
            let log = std::fs::read_to_string(dir.join("code-server.log")).unwrap_or_default();
            panic!("code-server exited during start ({status}):\n{log}");
        }
        assert!(
            began.elapsed() < START_TIMEOUT,
            "code-server did not answer /healthz at {direct:?} within {START_TIMEOUT:?}"
        );
        std::thread::sleep(POLL);
    }
    let elapsed = began.elapsed();
    instance.stop(Duration::from_secs(10));
    elapsed
}

/// Writes a running spec, times it to `/healthz` (direct, then proxied), then stops it.
fn devbox_round(
    agent: &ureq::Agent,
    devbox: &ServingDevbox,
    round: usize,
    port: u16,
) -> DevboxRound {
    let name = format!("r{round}");
    let spec = |state: &str| {
        format!(
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n  state: {state}\n  port: {port}\n"
        )
    };
    let specs = devbox.path("specs");
    let direct = Direct::Unix(devbox.path(&format!("state/sockets/{name}.sock")));
    let proxied = devbox.url(&format!("/vscode/{port}/healthz"));
    // Lines of earlier rounds are of no interest.
    while devbox.log.try_recv().is_ok() {}

    let cpu_before = common::cpu_time(devbox.pid());
    let wall = SystemTime::now();
    let began = Instant::now();
    common::write_file(&specs, &format!("{name}.yaml"), &spec("running"));
    let wait = |what: &str, healthy: &dyn Fn() -> bool| loop {
        if healthy() {
            return began.elapsed();
        }
        if began.elapsed() > START_TIMEOUT {
            let status = agent
                .get(&devbox.url(&format!("/servers/{name}")))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .unwrap_or_default();
            panic!("{what} did not answer within {START_TIMEOUT:?}; status: {status}");
        }
        std::thread::sleep(POLL);
    };
    let healthz = wait(&format!("{direct:?}"), &|| direct.healthz().is_some());
    let cpu = common::cpu_time(devbox.pid()).saturating_sub(cpu_before);
    let proxied = wait(&proxied, &|| healthy(agent, &proxied));

    // devbox's own view, from the timestamps of its log lines.
    let wall_secs = common::epoch_secs(wall);
    let (mut seen, mut running) = (None, None);
    let provisioning = format!("provisioning on port {port}");
    let started = format!("/vscode/{port}/");
    let deadline = Instant::now() + Duration::from_secs(2);
    while running.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = devbox.log.recv_timeout(left) else {
            break;
        };
        let at = || {
            common::log_line_time(&line).map(|t| Duration::from_secs_f64((t - wall_secs).max(0.0)))
        };
        if line.contains(&provisioning) {
            seen = at();
        } else if line.contains("started: pid") && line.contains(&started) {
            running = at();
        }
    }

    common::write_file(&specs, &format!("{name}.yaml"), &spec("stopped"));
    common::wait_for(&format!("{name} to stop"), Duration::from_secs(30), || {
        let status: serde_json::Value = agent
            .get(&devbox.url(&format!("/servers/{name}")))
            .call()
            .ok()?
            .body_mut()
            .read_json()
            .ok()?;
        (status["status"] == "stopped").then_some(())
    });
    DevboxRound {
        healthz,
        proxied,
        seen,
        running,
        cpu,
    }
}

fn healthy(agent: &ureq::Agent, url: &str) -> bool {
    agent
        .get(url)
        .call()
        .is_ok_and(|r| r.status() == ureq::http::StatusCode::OK)
}

fn report(bare: &[Duration], managed: &[DevboxRound]) {
    let healthz: Vec<Duration> = managed.iter().map(|r| r.healthz).collect();
    let proxied: Vec<Duration> = managed.iter().map(|r| r.proxied).collect();
    let seen: Vec<Duration> = managed.iter().filter_map(|r| r.seen).collect();
    let running: Vec<Duration> = managed.iter().filter_map(|r| r.running).collect();
    let after_healthy: Vec<Duration> = managed
        .iter()
        .filter_map(|r| r.running.map(|t| t.saturating_sub(r.healthz)))
        .collect();

    println!();
    println!(
        "{:<48} {:>9} {:>9} {:>9} {:>9}",
        "", "median", "p90", "min", "max"
    );
    let row = |what: &str, samples: &[Duration]| {
        if samples.is_empty() {
            println!("{what:<48} {:>9}", "-");
            return;
        }
        let cell = |p: f64| format!("{:.0} ms", millis(percentile(samples, p)));
        println!(
            "{what:<48} {:>9} {:>9} {:>9} {:>9}",
            cell(50.0),
            cell(90.0),
            cell(0.0),
            cell(100.0)
        );
    };
    row("bare: spawn → /healthz 200", bare);
    row("devbox: spec written → /healthz 200", &healthz);
    row("  spec written → devbox acts (log)", &seen);
    row("  spec written → devbox reports running (log)", &running);
    row("  /healthz 200 → devbox reports running", &after_healthy);
    row("devbox: spec written → proxied /healthz 200", &proxied);
    let cpu: Vec<Duration> = managed.iter().map(|r| r.cpu).collect();
    row("devbox's own CPU, spec written → /healthz 200", &cpu);

    let (bare_median, devbox_median) = (percentile(bare, 50.0), percentile(&healthz, 50.0));
    let added = millis(devbox_median) - millis(bare_median);
    let verdict = if added <= 100.0 {
        "meets target"
    } else {
        "MISSES target"
    };
    println!();
    println!(
        "devbox − bare, medians: {added:+.0} ms (target ≤ +100 ms: {verdict}); devbox / bare: {:.2}×",
        devbox_median.as_secs_f64() / bare_median.as_secs_f64()
    );
    // The two runs of a round are seconds apart, so their difference is less touched
    // by the machine's changing load than the difference of the medians.
    let mut paired: Vec<f64> = bare
        .iter()
        .zip(&healthz)
        .map(|(bare, devbox)| millis(*devbox) - millis(*bare))
        .collect();
    paired.sort_by(f64::total_cmp);
    println!(
        "devbox − bare within each round: median {:+.0} ms, from {:+.0} to {:+.0} ms",
        paired[(paired.len() - 1) / 2],
        paired[0],
        paired[paired.len() - 1]
    );
    println!(
        "proxied answer, median: {:.0} ms (Go tool, start call → proxied answer: ~590 ms; bare code-server in the issue: ~450 ms)",
        millis(percentile(&proxied, 50.0))
    );
}
