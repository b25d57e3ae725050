//! Chaos: 20 servers run; for a while (60 s; `DEVBOX_CHAOS_SECS` changes it) random
//! code-server processes are killed with SIGKILL, and devbox itself twice, while an API
//! client creates, starts, stops and deletes servers of its own. Afterwards the system
//! must converge to the spec files: every spec with `state: running` healthy, every
//! other one stopped, no code-server process without a running spec (checked against
//! the process table), no port used twice, every spec file valid, no status lost.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Devbox, Options};

const SEATS: usize = 20;

#[test]
fn converges_after_kills_of_instances_and_of_devbox_under_api_load() {
    let chaos = Duration::from_secs(
        std::env::var("DEVBOX_CHAOS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let mut devbox = Devbox::start_opts(
        Options {
            ports: 80,
            ..Options::default()
        },
        |_| {},
    );
    for seat in 0..SEATS {
        devbox.write_spec(&format!("seat-{seat:02}"), "  state: running\n");
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let servers = devbox.servers();
        let waiting: Vec<String> = servers
            .iter()
            .filter(|s| s["status"] != "running")
            .map(|s| format!("{}: {} {}", s["slug"], s["phase"], s["message"]))
            .collect();
        if servers.len() == SEATS && waiting.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seats not running: {waiting:#?}\n{}",
            devbox.log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("chaos seed {seed}, {} s", chaos.as_secs());
    let stop = AtomicBool::new(false);
    let kills = AtomicU64::new(0);
    let base = devbox.url("");
    let servers_dir = devbox.state().join("servers");
    let outcomes = std::thread::scope(|scope| {
        let client = scope.spawn(|| api_client(&base, &stop));
        scope.spawn(|| {
            let mut random = Random(seed);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300 + random.below(700)));
                let victims = instance_processes(&servers_dir);
                if victims.is_empty() {
                    continue;
                }
                let (pid, pgid) = victims[random.below(victims.len() as u64) as usize];
                // Mostly one process (the launcher or a child), sometimes the group.
                let target = if random.below(3) == 0 {
                    nix::sys::signal::killpg(pid_of(pgid), nix::sys::signal::Signal::SIGKILL)
                } else {
                    nix::sys::signal::kill(pid_of(pid), nix::sys::signal::Signal::SIGKILL)
                };
                if target.is_ok() {
                    kills.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        // devbox itself dies twice, at a third and at two thirds of the run.
        let began = Instant::now();
        for third in 1..=2 {
            std::thread::sleep((chaos * third / 3).saturating_sub(began.elapsed()));
            devbox.kill9();
            std::thread::sleep(Duration::from_millis(500));
            devbox.restart();
        }
        std::thread::sleep(chaos.saturating_sub(began.elapsed()));
        stop.store(true, Ordering::SeqCst);
        client.join().expect("API client")
    });
    println!(
        "chaos: {} processes killed; API calls: {outcomes:?}",
        kills.load(Ordering::SeqCst)
    );
    assert!(
        outcomes.get("POST /servers 201").copied().unwrap_or(0) > 0,
        "the API client got work done: {outcomes:?}"
    );

    let converged = wait_until_converged(&devbox, Duration::from_secs(240));
    if let Err(why) = converged {
        // The server the mismatch names (`name`), with everything devbox logged of it.
        let named: Vec<String> = why
            .split('`')
            .nth(1)
            .map(|name| {
                // Not a longer name that starts with it (`api-02` in `api-025`).
                let names_it = |line: &str| {
                    line.match_indices(name).any(|(at, _)| {
                        !line[at + name.len()..]
                            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
                    })
                };
                devbox
                    .log()
                    .lines()
                    .filter(|line| names_it(line) && !line.contains("idle connection"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        panic!(
            "not converged: {why}\n{}\n--- its log lines:\n{}",
            devbox.log_tail(),
            named.join("\n")
        );
    }
    devbox.assert_specs_valid();
}

/// Creates, starts, stops and deletes servers through the API until `stop`; counts
/// each answer by call and status (`refused` while devbox is down).
fn api_client(base: &str, stop: &AtomicBool) -> BTreeMap<String, u64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(90)))
        .build()
        .into();
    let mut outcomes = BTreeMap::new();
    let mut count = |call: &str, answer: Result<(u16, Value), ureq::Error>| {
        let key = match &answer {
            Ok((status, _)) => format!("{call} {status}"),
            Err(_) => format!("{call} refused"),
        };
        *outcomes.entry(key).or_insert(0) += 1;
        answer
            .ok()
            .filter(|(status, _)| *status < 300)
            .map(|(_, body)| body)
    };
    let call = |method: &str, path: &str, body: Option<Value>| {
        let url = format!("{base}{path}");
        let mut response = match (method, body) {
            ("POST", Some(body)) => agent.post(&url).send_json(body)?,
            ("POST", None) => agent.post(&url).send_empty()?,
            _ => agent.delete(&url).call()?,
        };
        let status = response.status().as_u16();
        let body = response.body_mut().read_json().unwrap_or(Value::Null);
        Ok((status, body))
    };
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let name = format!("api-{round:03}");
        let created = count(
            "POST /servers",
            call("POST", "/servers", Some(json!({"name": name}))),
        );
        let Some(id) = created.and_then(|c| c["id"].as_str().map(str::to_owned)) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        count("start", call("POST", &format!("/servers/{id}/start"), None));
        if round % 3 != 0 {
            count("stop", call("POST", &format!("/servers/{id}/stop"), None));
        }
        if round % 2 == 0 {
            count("DELETE", call("DELETE", &format!("/servers/{id}"), None));
        }
    }
    outcomes
}

/// Polls until the servers match the spec files, or gives the last mismatch.
fn wait_until_converged(devbox: &Devbox, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let why = match mismatch(devbox) {
            None => return Ok(()),
            Some(why) => why,
        };
        if Instant::now() > deadline {
            return Err(why);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What, if anything, differs between the specs and what runs.
fn mismatch(devbox: &Devbox) -> Option<String> {
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(devbox.specs())
        .expect("specs dir")
        .flatten()
    {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("spec file");
        let spec: serde_json::Value = match devbox::yaml::from_str(&text) {
            Ok(spec) => spec,
            Err(err) => return Some(format!("{} does not parse: {err}", path.display())),
        };
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let state = spec["spec"]["state"].as_str().unwrap_or("running");
        wanted.insert(name.to_owned(), state.to_owned());
    }
    let servers: BTreeMap<String, Value> = devbox
        .servers()
        .into_iter()
        .map(|s| (s["slug"].as_str().unwrap_or_default().to_owned(), s))
        .collect();
    if let Some(extra) = servers.keys().find(|name| !wanted.contains_key(*name)) {
        return Some(format!("`{extra}` is listed without a spec"));
    }
    let mut ports = BTreeSet::new();
    let mut running_pids = BTreeSet::new();
    for (name, state) in &wanted {
        let Some(server) = servers.get(name) else {
            return Some(format!("`{name}` has a spec but no status"));
        };
        let status = server["status"].as_str().unwrap_or_default();
        let expected = if state == "running" {
            "running"
        } else {
            "stopped"
        };
        if status != expected {
            return Some(format!("`{name}` is {status}, its spec says {state}"));
        }
        if expected == "running" {
            let port = server["port"].as_u64().unwrap_or(0) as u16;
            if !ports.insert(port) {
                return Some(format!("port {port} is used twice"));
            }
            if devbox.healthz(name).is_none() {
                return Some(format!("`{name}` on {port} does not answer /healthz"));
            }
            running_pids.insert(server["pid"].as_u64().unwrap_or(0) as u32);
        }
    }
    let groups: BTreeSet<u32> = instance_processes(&devbox.state().join("servers"))
        .into_iter()
        .map(|(_, pgid)| pgid)
        .collect();
    if groups != running_pids {
        return Some(format!(
            "code-server process groups {groups:?} differ from running servers' pids {running_pids:?}"
        ));
    }
    None
}

/// (pid, pgid) of every live process started for a server under `servers_dir` (its
/// command line names its user-data dir there).
fn instance_processes(servers_dir: &Path) -> Vec<(u32, u32)> {
    let needle = servers_dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            if !String::from_utf8_lossy(&cmdline).contains(&needle) {
                return None;
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            if fields.first() == Some(&"Z") {
                return None;
            }
            Some((pid, fields.get(2)?.parse().ok()?))
        })
        .collect()
}

fn pid_of(pid: u32) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(pid as i32)
}

/// A small xorshift generator: the run prints its seed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}
