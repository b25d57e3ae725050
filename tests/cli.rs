//! The command line: validate, schema, apply, delete, get (offline) and doctor.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Devbox, devbox_bin};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn devbox(args: &[&str]) -> Output {
    Command::new(devbox_bin())
        .args(args)
        .env_remove("DEVBOX_CONFIG_PATH")
        .env_remove("DEVBOX_SPECS_DIR")
        .env_remove("DEVBOX_STATE_DIR")
        .output()
        .expect("run devbox")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn shipped_config_and_examples_are_valid() {
    let out = devbox(&[
        "validate",
        repo("config/devbox.yaml").to_str().unwrap_or_default(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let config = repo("examples/config/devbox.yaml");
    let out = devbox(&[
        "--config",
        config.to_str().unwrap_or_default(),
        "validate",
        repo("examples").to_str().unwrap_or_default(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok: 8 file(s) valid"), "{}", text(&out));

    // Without --config, the config among the examples checks the specs beside it (its
    // templates and extension groups), and validate says so.
    let out = Command::new(devbox_bin())
        .current_dir(repo(""))
        .args(["validate", "examples/"])
        .env_remove("DEVBOX_CONFIG_PATH")
        .env_remove("DEVBOX_SPECS_DIR")
        .env_remove("DEVBOX_STATE_DIR")
        .output()
        .expect("run devbox");
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains("config: examples/config/devbox.yaml for 5 spec file(s)"),
        "{report}"
    );
    assert!(report.contains("ok: 7 file(s) valid"), "{report}");
}

#[test]
fn validate_checks_each_spec_against_the_config_beside_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seat = |group: &str| {
        format!(
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: seat\nspec:\n  extension_groups: [{group}]\n"
        )
    };
    for (folder, group) in [("one", "alpha"), ("two", "beta")] {
        let folder = dir.path().join(folder);
        std::fs::create_dir_all(folder.join("specs")).expect("mkdir");
        std::fs::write(
            folder.join("devbox.yaml"),
            format!("extension_groups:\n  {group}:\n    name: {group}\n"),
        )
        .expect("write config");
        std::fs::write(folder.join("specs/seat.yaml"), seat(group)).expect("write spec");
    }
    let out = devbox(&["validate", dir.path().to_str().unwrap_or_default()]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    for folder in ["one", "two"] {
        let config = dir.path().join(folder).join("devbox.yaml");
        assert!(
            report.contains(&format!("config: {} for 1 spec file(s)", config.display())),
            "{report}"
        );
    }

    // Of two configs as near to a spec, the one that accepts it checks it; when none
    // does, the first says why.
    std::fs::write(dir.path().join("seat.yaml"), seat("beta")).expect("write spec");
    let out = devbox(&["validate", dir.path().to_str().unwrap_or_default()]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    let two = dir.path().join("two").join("devbox.yaml");
    assert!(
        report.contains(&format!("config: {} for 2 spec file(s)", two.display())),
        "{report}"
    );
    std::fs::write(dir.path().join("seat.yaml"), seat("gamma")).expect("write spec");
    let out = devbox(&["validate", dir.path().to_str().unwrap_or_default()]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("gamma"), "{report}");
}

#[test]
fn validate_reports_every_problem_of_every_file_with_its_location() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nested = dir.path().join("nested");
    std::fs::create_dir(&nested).expect("mkdir");
    let spec = |name: &str, body: &str| {
        format!("apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n{body}")
    };
    std::fs::write(
        dir.path().join("a.yaml"),
        spec("a", "  port: 1\n  extension_groups: [python, ghost]\n"),
    )
    .expect("write");
    std::fs::write(nested.join("b.yaml"), spec("b", "  state: paused\n")).expect("write");
    std::fs::write(nested.join("c.yml"), spec("c", "  port: 8050\n")).expect("write");
    std::fs::write(nested.join("d.yml"), spec("d", "  port: 8050\n")).expect("write");
    std::fs::write(
        dir.path().join("config.yaml"),
        "server:\n  code_server_port_range: {start: 9000, end: 8000}\n",
    )
    .expect("write");

    let out = devbox(&["validate", dir.path().to_str().unwrap_or_default()]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let a = dir.path().join("a.yaml");
    let b = nested.join("b.yaml");
    let d = nested.join("d.yml");
    let c = dir.path().join("config.yaml");
    for expected in [
        format!(
            "{}:6:3: spec.port: port 1 is outside the range 8010-8100",
            a.display()
        ),
        format!(
            "{}:7:3: spec.extension_groups[1]: unknown extension group `ghost`",
            a.display()
        ),
        format!("{}:6:10: spec.state: unknown variant `paused`", b.display()),
        format!(
            "{}:6:3: spec.port: port 8050 is already claimed by server `c`",
            d.display()
        ),
        format!(
            "{}:2:3: server.code_server_port_range: start (9000) must be below end (8000)",
            c.display()
        ),
    ] {
        assert!(
            report.contains(&expected),
            "missing {expected:?} in:\n{report}"
        );
    }
    assert!(report.contains("5 problem(s) in 5 file(s)"), "{report}");
}

#[test]
fn committed_schemas_match_the_binary() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = devbox(&[
        "schema",
        "--out",
        out_dir.path().to_str().unwrap_or_default(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for file in [
        "devserver.schema.json",
        "config.schema.json",
        "openapi.json",
    ] {
        let generated = std::fs::read_to_string(out_dir.path().join(file)).expect("generated");
        let committed = std::fs::read_to_string(repo("schemas").join(file)).unwrap_or_default();
        assert!(
            generated == committed,
            "schemas/{file} is stale: run `cargo run -- schema --out schemas` and commit the result"
        );
    }
}

#[test]
fn apply_checks_everything_before_writing_and_delete_removes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let specs = dir.path().join("specs");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("mkdir");
    let spec = |name: &str, body: &str| {
        format!("apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n{body}")
    };
    // The file name does not matter; the spec's name does.
    std::fs::write(
        input.join("first.yaml"),
        spec("web-1", "  state: stopped\n  port: 8030\n"),
    )
    .expect("write");
    std::fs::write(input.join("second.yaml"), spec("web-2", "  port: 8030\n")).expect("write");
    let specs_arg = specs.to_str().unwrap_or_default();
    let input_arg = input.to_str().unwrap_or_default();

    let out = devbox(&["--specs", specs_arg, "apply", "-f", input_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("port 8030 is already claimed by server `web-1`"),
        "{}",
        text(&out)
    );
    assert!(
        !specs.join("web-1.yaml").exists(),
        "nothing is written when one file is bad"
    );

    std::fs::write(input.join("second.yaml"), spec("web-2", "  port: 8031\n")).expect("write");
    let out = devbox(&["--specs", specs_arg, "apply", "-f", input_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(specs.join("web-1.yaml")).expect("applied"),
        std::fs::read_to_string(input.join("first.yaml")).expect("input"),
        "the text is kept as written"
    );
    assert!(specs.join("web-2.yaml").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&specs)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");

    let out = devbox(&["--specs", specs_arg, "delete", "web-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!specs.join("web-1.yaml").exists());
    let out = devbox(&["--specs", specs_arg, "delete", "web-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no spec for `web-1`"), "{}", text(&out));
    let out = devbox(&["--specs", specs_arg, "delete", "../etc/passwd"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn get_reads_the_state_dir_without_a_running_devbox() {
    let mut devbox = Devbox::start();
    devbox.write_spec("offline", "  state: running\n");
    devbox.wait_running("offline");
    devbox.terminate();

    let out = devbox
        .command()
        .args(["get", "-o", "json"])
        .output()
        .expect("get");
    assert!(out.status.success(), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows[0]["name"], "offline");
    assert_eq!(rows[0]["desired"], "running");
    assert_eq!(rows[0]["phase"], "stopped");
    assert!(
        rows[0]["port"].is_null(),
        "an unpinned port returns to the pool: {rows}"
    );
    assert!(
        rows[0]["last_exit"].is_null() && rows[0]["instance"].is_null(),
        "{rows}"
    );

    let out = devbox
        .command()
        .args(["get", "offline"])
        .output()
        .expect("get");
    let table = text(&out);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("offline") && table.contains("stopped"),
        "{table}"
    );
    let out = devbox
        .command()
        .args(["get", "offline", "-o", "yaml"])
        .output()
        .expect("get");
    assert!(text(&out).contains("phase: stopped"), "{}", text(&out));
    let out = devbox
        .command()
        .args(["get", "nobody"])
        .output()
        .expect("get");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn doctor_finds_code_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(devbox_bin())
        .args(["--specs", dir.path().join("s").to_str().unwrap_or_default()])
        .args([
            "--state-dir",
            dir.path().join("st").to_str().unwrap_or_default(),
        ])
        .arg("doctor")
        .env("DEVBOX_CODE_SERVER", common::code_server())
        .output()
        .expect("doctor");
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("ok   code-server 4."), "{report}");
    assert!(report.contains("is writable"), "{report}");
}

#[test]
fn serve_takes_its_config_port_and_directories_from_the_environment() {
    let root = tempfile::tempdir().expect("temp dir");
    let base = common::free_ports(3);
    let config = root.path().join("my-config.yaml");
    std::fs::write(
        &config,
        common::test_config(base + 1, base + 2, base + 100, &root.path().join("vsix")),
    )
    .expect("write config");
    let (specs, state) = (root.path().join("my-specs"), root.path().join("my-state"));
    std::fs::create_dir_all(&specs).expect("specs dir");
    std::fs::write(
        specs.join("envy.yaml"),
        "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: envy\nspec:\n  state: stopped\n",
    )
    .expect("write spec");
    let serve = Command::new(devbox_bin())
        .arg("serve")
        .env("DEVBOX_CONFIG_PATH", &config)
        .env("DEVBOX_SPECS_DIR", &specs)
        .env("DEVBOX_STATE_DIR", &state)
        .env("DEVBOX_SERVER_PORT", base.to_string())
        .env_remove("DEVBOX_API_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start devbox");
    let _serve = KillOnDrop(serve);
    // The port from DEVBOX_SERVER_PORT wins over the config's default_port; the spec
    // comes from DEVBOX_SPECS_DIR and its status lands in DEVBOX_STATE_DIR.
    common::wait_for(
        "devbox on DEVBOX_SERVER_PORT to list the spec",
        std::time::Duration::from_secs(20),
        || {
            let servers: serde_json::Value = ureq::get(&format!("http://127.0.0.1:{base}/servers"))
                .call()
                .ok()?
                .body_mut()
                .read_json()
                .ok()?;
            (servers[0]["slug"] == "envy" && servers[0]["status"] == "stopped").then_some(())
        },
    );
    let status_file = state.join("servers/envy/status.json");
    common::wait_for(
        "the status file",
        std::time::Duration::from_secs(10),
        || status_file.exists().then_some(()),
    );
}

/// A child process killed (and reaped) when the test ends, also when it fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    /// SIGTERM first, so that devbox removes its cgroups (they outlive the temp dir);
    /// SIGKILL when it has not stopped within 10 s.
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `devbox` on `args` with `stdin` as its standard input.
fn devbox_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(devbox_bin())
        .args(args)
        .env_remove("DEVBOX_CONFIG_PATH")
        .env_remove("DEVBOX_SPECS_DIR")
        .env_remove("DEVBOX_STATE_DIR")
        .env_remove("DEVBOX_SERVER")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run devbox");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for devbox")
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn apply_reads_stdin_and_diff_tells_what_apply_would_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let specs = dir.path().join("specs");
    let specs_arg = specs.to_str().unwrap_or_default();
    let spec = |name: &str, body: &str| {
        format!("apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n{body}")
    };
    let web = spec("web", "  state: stopped\n  port: 8020\n");

    // A bad spec on stdin is reported as `<stdin>` with its line, column and field.
    let bad = spec("web", "  state: stopped\n  port: 1\n");
    let out = devbox_with_stdin(&["--specs", specs_arg, "apply", "-f", "-"], &bad);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("<stdin>:7:3: spec.port: port 1 is outside the range 8010-8100"),
        "{}",
        text(&out)
    );
    assert!(!specs.join("web.yaml").exists(), "nothing applied");
    let out = devbox_with_stdin(&["--specs", specs_arg, "diff", "-f", "-"], &bad);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an invalid input is an error: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("<stdin>:7:3: spec.port"),
        "{}",
        text(&out)
    );

    // diff of a new server: created, the whole file added; exit 1.
    let out = devbox_with_stdin(&["--specs", specs_arg, "diff", "-f", "-"], &web);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = stdout_of(&out);
    assert!(shown.starts_with("created web\n"), "{shown}");
    assert!(
        shown.contains("--- /dev/null\n+++ <stdin>\n") && shown.contains("\n+  port: 8020\n"),
        "{shown}"
    );
    assert!(!specs.join("web.yaml").exists(), "diff writes nothing");

    // apply -f - writes the text as given.
    let out = devbox_with_stdin(&["--specs", specs_arg, "apply", "-f", "-"], &web);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout_of(&out).trim(), "created web", "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(specs.join("web.yaml")).expect("applied"),
        web
    );

    // Nothing would change: exit 0.
    let out = devbox_with_stdin(&["--specs", specs_arg, "diff", "-f", "-"], &web);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout_of(&out), "unchanged web\n");

    // A changed file and a new one in a directory: both named, the change as a
    // unified diff against the spec in place.
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(
        input.join("web.yaml"),
        spec("web", "  state: running\n  port: 8020\n"),
    )
    .expect("write");
    std::fs::write(input.join("api.yaml"), spec("api", "  state: stopped\n")).expect("write");
    let out = devbox(&[
        "--specs",
        specs_arg,
        "diff",
        "-f",
        input.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = stdout_of(&out);
    assert!(shown.contains("created api\n"), "{shown}");
    assert!(shown.contains("changed web\n"), "{shown}");
    assert!(
        shown.contains(&format!(
            "--- {}\n+++ {}\n",
            specs.join("web.yaml").display(),
            input.join("web.yaml").display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("\n-  state: stopped\n+  state: running\n"),
        "{shown}"
    );
    assert_eq!(
        std::fs::read_to_string(specs.join("web.yaml")).expect("in place"),
        web,
        "diff writes nothing"
    );

    // Over --server, a devbox that cannot be reached is an error, not "unchanged".
    let out = devbox(&[
        "--server",
        "http://127.0.0.1:9",
        "diff",
        "-f",
        input.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cannot reach devbox at http://127.0.0.1:9"),
        "{}",
        text(&out)
    );
    // So is a client that cannot even be set up (a CA file that is not there).
    let out = devbox(&[
        "--server",
        "https://127.0.0.1:9",
        "--cacert",
        "/nonexistent/ca.pem",
        "diff",
        "-f",
        input.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn completion_scripts_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = devbox(&["completion", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = stdout_of(&out);
        for subcommand in ["apply", "describe", "diff", "wait", "restart", "completion"] {
            assert!(
                script.contains(subcommand),
                "{shell}: `{subcommand}` missing from:\n{script}"
            );
        }
    }
    let bash = stdout_of(&devbox(&["completion", "bash"]));
    assert!(bash.contains("complete -F _devbox"), "{bash}");
}

/// `devbox` placed at `path` (a hard link where possible), as an install beside a
/// checkout would be.
fn place_devbox(path: &Path) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    if std::fs::hard_link(devbox_bin(), path).is_err() {
        std::fs::copy(devbox_bin(), path).expect("copy devbox");
    }
}

/// A checkout at `dir` with code-server installed under `.tools/` as
/// scripts/install-code-server.sh leaves it (the real code-server, linked).
fn checkout_with_tools(dir: &Path) -> PathBuf {
    let prefix = dir.join(".tools/code-server");
    std::fs::create_dir_all(prefix.join("bin")).expect("mkdir");
    let binary = prefix.join("bin/code-server");
    std::os::unix::fs::symlink(common::code_server(), &binary).expect("link code-server");
    std::fs::write(prefix.join(".devbox-installed-version"), "4.100.3\n").expect("marker");
    binary
}

#[test]
fn doctor_finds_the_projects_code_server_without_being_told() {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let config = root.path().join("config.yaml");
    std::fs::write(&config, "code_server:\n  start_timeout: 30s\n").expect("config");
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let doctor = |exe: &Path, cwd: &Path, path_var: Option<&Path>| {
        let mut command = Command::new(exe);
        command
            .current_dir(cwd)
            .arg("--config")
            .arg(&config)
            .arg("--specs")
            .arg(root.path().join("specs"))
            .arg("--state-dir")
            .arg(root.path().join("state"))
            .arg("doctor")
            .env_remove("DEVBOX_CODE_SERVER")
            .env_remove("DEVBOX_CONFIG_PATH");
        if let Some(path_var) = path_var {
            command.env("PATH", path_var);
        }
        command.output().expect("doctor")
    };

    // target/release/devbox of a checkout finds its ../../.tools, from anywhere.
    let checkout = root.path().join("checkout");
    let exe = checkout.join("target/release/devbox");
    place_devbox(&exe);
    let binary = checkout_with_tools(&checkout);
    let out = doctor(&exe, &elsewhere, None);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("ok   code-server 4."), "{report}");
    assert!(
        report.contains(&format!(
            "at {} (the project's .tools install",
            binary.display()
        )),
        "{report}"
    );

    // A devbox elsewhere finds the .tools of the directory it is run in.
    let loose = root.path().join("bin/devbox");
    place_devbox(&loose);
    let out = doctor(&loose, &checkout, None);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains(&format!(
            "at {} (the project's .tools install",
            binary.display()
        )),
        "{report}"
    );

    // Neither .tools nor PATH has one: the doctor fails and says where it looked.
    let empty_path = root.path().join("empty-path");
    std::fs::create_dir_all(&empty_path).expect("mkdir");
    let out = doctor(&loose, &elsewhere, Some(&empty_path));
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("FAIL code-server not found"), "{report}");
    assert!(
        report.contains(
            &elsewhere
                .join(".tools/code-server/bin/code-server")
                .display()
                .to_string()
        ),
        "{report}"
    );
}
