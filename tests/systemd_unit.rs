//! The systemd unit shipped in `examples/systemd/`: `systemd-analyze verify` accepts it
//! (with the devbox just built as its binary, the only change from the shipped file),
//! and what it says agrees with the example config beside it: the KillMode with
//! `controller.on_shutdown`, delegation for the per-instance cgroups, the stop timeout
//! with `code_server.stop_timeout`, root with `isolation.run_as: owner`, and the state
//! dir on its command line with the config's.

use std::path::{Path, PathBuf};
use std::process::Command;

use devbox::config::{Config, RunAs, ShutdownPolicy};
use devbox::duration::HumanDuration;

const UNIT_FILE: &str = "examples/systemd/devbox.service";
const UNIT: &str = include_str!("../examples/systemd/devbox.service");
const CONFIG_FILE: &str = "examples/systemd/devbox.yaml";
const CONFIG: &str = include_str!("../examples/systemd/devbox.yaml");
/// Where the unit expects devbox (its install note puts it there).
const SHIPPED_BINARY: &str = "/usr/local/bin/devbox";
/// Where the unit's command line points devbox's config.
const CONFIG_PATH: &str = "/etc/devbox/devbox.yaml";

/// A unit file's directives as (section, key, value), in order.
struct Unit {
    directives: Vec<(String, String, String)>,
}

impl Unit {
    /// Reads the plain `Key=Value` lines the shipped unit uses (no line continuations).
    fn parse(text: &str) -> Self {
        let mut section = String::new();
        let mut directives = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            assert!(
                !line.ends_with('\\'),
                "{UNIT_FILE}: this parser reads no continued lines: {line}"
            );
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{UNIT_FILE}: not a directive: {line}"));
            directives.push((section.clone(), key.trim().into(), value.trim().into()));
        }
        Self { directives }
    }

    /// The value that counts: the last one given.
    fn value(&self, section: &str, key: &str) -> Option<&str> {
        self.directives
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
    }

    fn service(&self, key: &str) -> Option<&str> {
        self.value("Service", key)
    }
}

fn config() -> Config {
    Config::parse(Path::new(CONFIG_FILE), CONFIG).unwrap_or_else(|problems| {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        panic!("{CONFIG_FILE} is invalid:\n{}", text.join("\n"))
    })
}

/// systemd's booleans.
fn is_true(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v, "yes" | "true" | "on" | "1"))
}

/// What is wrong with running devbox with `on_shutdown` under a unit with `kill_mode`
/// (None: systemd's default, control-group) and `delegate`.
fn pairing_problems(
    on_shutdown: ShutdownPolicy,
    kill_mode: Option<&str>,
    delegate: Option<&str>,
) -> Vec<String> {
    let kill_mode = kill_mode.unwrap_or("control-group");
    let delegated = is_true(delegate);
    let mut problems = Vec::new();
    if !delegated {
        problems.push(
            "Delegate=yes is needed: devbox puts each instance in a cgroup of its own below \
             the unit's"
                .to_owned(),
        );
    }
    match on_shutdown {
        ShutdownPolicy::Stop if !matches!(kill_mode, "mixed" | "control-group") => {
            problems.push(format!(
                "on_shutdown: stop with KillMode={kill_mode}: the instances of a devbox that \
                 crashed would outlive it in the unit's cgroup; use KillMode=mixed"
            ));
        }
        ShutdownPolicy::Stop => {}
        ShutdownPolicy::Keep if kill_mode != "process" => {
            problems.push(format!(
                "on_shutdown: keep with KillMode={kill_mode}: systemd would kill the instances \
                 devbox leaves for the next devbox; keep needs KillMode=process"
            ));
        }
        ShutdownPolicy::Keep if delegated => {
            problems.push(
                "on_shutdown: keep (KillMode=process) with Delegate=yes: on cgroup v2, systemd \
                 cannot start devbox again while kept instances run in cgroups below the \
                 unit's (status=219/CGROUP); ship on_shutdown: stop with KillMode=mixed"
                    .to_owned(),
            );
        }
        ShutdownPolicy::Keep => {}
    }
    problems
}

#[test]
fn the_pairing_rules_refuse_what_would_break() {
    use ShutdownPolicy::{Keep, Stop};
    // (on_shutdown, KillMode, Delegate, a word the problem must hold; None: fine)
    let cases = [
        (Stop, Some("mixed"), Some("yes"), None),
        (Stop, None, Some("true"), None),
        (Stop, Some("process"), Some("yes"), Some("outlive")),
        (Stop, Some("none"), Some("yes"), Some("outlive")),
        (Stop, Some("mixed"), None, Some("Delegate=yes is needed")),
        (Keep, Some("mixed"), Some("yes"), Some("would kill")),
        (Keep, None, Some("yes"), Some("would kill")),
        (Keep, Some("process"), Some("yes"), Some("219/CGROUP")),
    ];
    for (on_shutdown, kill_mode, delegate, expected) in cases {
        let problems = pairing_problems(on_shutdown, kill_mode, delegate);
        let what = format!("{on_shutdown:?}, KillMode={kill_mode:?}, Delegate={delegate:?}");
        match expected {
            None => assert!(problems.is_empty(), "{what}: {problems:?}"),
            Some(word) => assert!(
                problems.iter().any(|p| p.contains(word)),
                "{what}: {problems:?}"
            ),
        }
    }
}

#[test]
fn the_unit_agrees_with_the_example_config() {
    let unit = Unit::parse(UNIT);
    let config = config();

    let problems = pairing_problems(
        config.controller.on_shutdown,
        unit.service("KillMode"),
        unit.service("Delegate"),
    );
    assert!(
        problems.is_empty(),
        "{UNIT_FILE} and {CONFIG_FILE}:\n{}",
        problems.join("\n")
    );

    let timeout: HumanDuration = unit
        .service("TimeoutStopSec")
        .expect("TimeoutStopSec: systemd's default may change under devbox")
        .parse()
        .expect("TimeoutStopSec is a duration");
    let stop_timeout = config.code_server.stop_timeout.get();
    assert!(
        timeout.get() > stop_timeout,
        "TimeoutStopSec ({timeout}) must leave devbox time to stop its instances \
         (code_server.stop_timeout: {})",
        config.code_server.stop_timeout
    );

    assert_eq!(unit.service("User"), None, "devbox runs as root");
    assert_eq!(
        config.isolation.run_as,
        RunAs::Owner,
        "devbox runs as root under the unit: instances must not (isolation.run_as: owner)"
    );

    let command: Vec<&str> = unit
        .service("ExecStart")
        .expect("ExecStart")
        .split_whitespace()
        .collect();
    assert_eq!(
        command,
        [
            SHIPPED_BINARY,
            "--config",
            CONFIG_PATH,
            "--state-dir",
            &config.controller.state_dir.to_string_lossy(),
            "serve"
        ],
        "the unit runs `devbox serve` with this config and its state dir"
    );
    assert!(config.controller.specs_dir.is_absolute());
    assert_eq!(unit.service("Restart"), Some("on-failure"));
    assert_eq!(unit.value("Install", "WantedBy"), Some("multi-user.target"));
}

/// `name` on the PATH (or in /usr/bin), when it is there.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Some(tool) = find_tool("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed here, so the unit is not verified");
        return;
    };
    // `verify` checks that ExecStart's binary exists: the copy runs the devbox just built.
    let built = env!("CARGO_BIN_EXE_devbox");
    assert!(
        !built.contains(char::is_whitespace),
        "the unit's ExecStart cannot name {built:?} unquoted"
    );
    let shipped_start = format!("ExecStart={SHIPPED_BINARY} ");
    let built_start = format!("ExecStart={built} ");
    let lines: Vec<&str> = UNIT.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("ExecStart="))
        .collect();
    assert_eq!(starts.len(), 1, "{UNIT_FILE} has one ExecStart");
    assert!(
        lines[starts[0]].starts_with(&shipped_start),
        "{UNIT_FILE} runs {SHIPPED_BINARY}: {}",
        lines[starts[0]]
    );
    let copy = UNIT.replacen(&shipped_start, &built_start, 1);

    let dir = tempfile::tempdir().expect("temp dir");
    let unit_path = dir.path().join("devbox.service");
    std::fs::write(&unit_path, &copy).expect("write the copy");
    let written = std::fs::read_to_string(&unit_path).expect("read the copy");
    let differing: Vec<(&str, &str)> = UNIT
        .lines()
        .zip(written.lines())
        .filter(|(shipped, copied)| shipped != copied)
        .collect();
    assert_eq!(
        (UNIT.lines().count(), written.lines().count()),
        (lines.len(), lines.len())
    );
    assert_eq!(
        differing,
        [(
            lines[starts[0]],
            format!("{built_start}{}", &lines[starts[0]][shipped_start.len()..]).as_str()
        )],
        "the verified copy differs from {UNIT_FILE} in ExecStart's binary only"
    );

    let output = Command::new(&tool)
        .arg("verify")
        .arg(&unit_path)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", tool.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Warnings (an unknown or misspelt key, say) leave the exit status 0: any word about
    // the unit is a failure too. Other units' complaints are the host's.
    let about_the_unit: Vec<&str> = said
        .lines()
        .filter(|line| {
            line.contains("devbox.service") || line.contains(&*dir.path().to_string_lossy())
        })
        .collect();
    assert!(
        output.status.success() && about_the_unit.is_empty(),
        "systemd-analyze verify {UNIT_FILE} ({}):\n{said}",
        output.status
    );
    if !said.trim().is_empty() {
        eprintln!("systemd-analyze said of other units:\n{said}");
    }
}
