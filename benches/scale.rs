//! Scale of the controller: N spec files of stopped servers (default 1,000).
//!
//! Measures, against the release binary: the first load (N new servers, a status file
//! each), the duration of a full resync as the controller itself logs it, `GET /servers`
//! latency (p50/p99, one keep-alive client, sequential), devbox's RSS, and its CPU use
//! while idle. Prints each figure beside its target and the original Go tool's figure
//! measured on the same kind of machine (1,001 servers).
//!
//! Run: `cargo bench --bench scale` (or `-- --servers 5000`).

mod common;

use std::time::{Duration, Instant};

use common::{Devbox, millis, percentile};

const CONFIG: &str = "extension_groups:
  python:
    name: Python
    description: the group every seat uses
    extensions: [ms-python.python]
    user_settings: {python.defaultInterpreterPath: /usr/bin/python3}
server:
  default_port: {http_port}
  code_server_port_range: {start: 41000, end: 42999}
";

/// Resyncs every second while they are being timed; the idle figures are taken after a
/// restart on the default interval (30 s).
const FAST_RESYNC: &str = "controller:
  resync_interval: 1s
";

fn main() {
    let servers = servers_arg();
    println!("scale: {servers} stopped servers");
    // More servers than the default `max_servers` (500) need the cap raised.
    let (root, http_port) =
        Devbox::prepare(&format!("{CONFIG}{FAST_RESYNC}  max_servers: {servers}\n"));
    let specs = root.path().join("specs");
    for i in 0..servers {
        let name = format!("seat-{i:05}");
        common::write_file(
            &specs,
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\n  labels: {{workshop: scale}}\nspec:\n  state: stopped\n  extension_groups: [python]\n"
            ),
        );
    }

    let began = Instant::now();
    let devbox = Devbox::start(root, http_port);
    let agent = ureq::Agent::new_with_defaults();
    let list_len = || -> usize {
        agent
            .get(&devbox.url("/servers"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Vec<serde_json::Value>>().ok())
            .map_or(0, |list| {
                list.iter().filter(|s| s["status"] == "stopped").count()
            })
    };
    common::wait_for("every server listed", Duration::from_secs(300), || {
        (list_len() == servers).then_some(())
    });
    let first_load = began.elapsed();

    let resyncs = resync_times(&devbox, servers, 5);

    let mut latencies = Vec::with_capacity(1000);
    let mut body_bytes = 0;
    for _ in 0..1000 {
        let start = Instant::now();
        let mut response = agent
            .get(&devbox.url("/servers"))
            .call()
            .expect("GET /servers");
        body_bytes = response.body_mut().read_to_vec().expect("body").len();
        latencies.push(start.elapsed());
    }

    let (root, http_port) = devbox.stop();
    std::fs::write(
        root.path().join("config.yaml"),
        format!(
            "{}controller:\n  max_servers: {servers}\n",
            CONFIG.replace("{http_port}", &http_port.to_string())
        ),
    )
    .expect("rewrite config");
    let began = Instant::now();
    let devbox = Devbox::start(root, http_port);
    let restart_resync = resync_times(&devbox, servers, 1);
    let restart = began.elapsed();
    let rss = common::rss_mib(devbox.pid());
    // One resync interval, so the window holds one periodic resync.
    let idle_window = Duration::from_secs(30);
    let cpu_before = common::cpu_time(devbox.pid());
    std::thread::sleep(idle_window);
    let idle_cpu =
        (common::cpu_time(devbox.pid()) - cpu_before).as_secs_f64() / idle_window.as_secs_f64();

    let rows = [
        Row::ms("first load (N new servers listed)", first_load, None, None),
        Row::ms(
            "full resync, median of 5",
            percentile(&resyncs, 50.0),
            Some(200.0),
            None,
        ),
        Row::ms(
            "full resync, max of 5",
            percentile(&resyncs, 100.0),
            Some(200.0),
            None,
        ),
        Row::ms("restart to first full resync", restart, None, None),
        Row::ms(
            "  of which the resync",
            restart_resync[0],
            Some(200.0),
            None,
        ),
        Row::ms(
            "GET /servers p50",
            percentile(&latencies, 50.0),
            None,
            Some(0.6),
        ),
        Row::ms(
            "GET /servers p99",
            percentile(&latencies, 99.0),
            Some(2.0),
            Some(6.4),
        ),
        Row {
            what: "RSS",
            unit: "MiB",
            value: rss,
            target: Some(40.0),
            peer: Some(44.0),
        },
        Row {
            what: "idle CPU over 30 s (one resync)",
            unit: "%",
            value: idle_cpu * 100.0,
            target: Some(0.1),
            peer: Some(1.0),
        },
    ];
    println!("GET /servers answers {body_bytes} bytes");
    println!(
        "{:<38} {:>10} {:>10} {:>12}",
        "", "devbox", "target", "Go (1,001)"
    );
    for row in rows {
        row.print();
    }
}

/// The durations of the next `count` full resyncs of `servers` specs, as devbox logs
/// them (`resync done specs=N elapsed_us=…` at debug level).
fn resync_times(devbox: &Devbox, servers: usize, count: usize) -> Vec<Duration> {
    let specs_field = format!("specs={servers} ");
    let mut times = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while times.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = devbox.log.recv_timeout(left).expect("a resync log line");
        if line.contains("resync done") && line.contains(&specs_field) {
            times.push(Duration::from_micros(field_number(&line, "elapsed_us")));
        }
    }
    times
}

/// The number in `key=123` of a log line.
fn field_number(line: &str, key: &str) -> u64 {
    line.split_once(&format!("{key}="))
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

fn servers_arg() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|pair| pair[0] == "--servers")
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or(1000)
}

struct Row {
    what: &'static str,
    unit: &'static str,
    value: f64,
    target: Option<f64>,
    peer: Option<f64>,
}

impl Row {
    fn ms(what: &'static str, value: Duration, target: Option<f64>, peer: Option<f64>) -> Self {
        Self {
            what,
            unit: "ms",
            value: millis(value),
            target,
            peer,
        }
    }

    fn print(&self) {
        let unit = self.unit;
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} {unit}"));
        let verdict = match self.target {
            Some(target) if self.value <= target => "  meets target",
            Some(_) => "  MISSES target",
            None => "",
        };
        println!(
            "{:<38} {:>10} {:>10} {:>12}{verdict}",
            self.what,
            format!("{:.2} {unit}", self.value),
            opt(self.target),
            opt(self.peer),
        );
    }
}
