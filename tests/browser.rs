//! devbox in a real browser: scripts in `tests/browser/` drive Debian's Chromium
//! (through playwright-core) against a real devbox and real code-server. Screenshots
//! land in `target/browser-artifacts/<test>/`.
//!
//! - `dashboard.mjs`: create a server with a git workspace through the form, start it,
//!   open the IDE through the proxy and see the workspace's file in VS Code's explorer,
//!   read its logs, stop it, start it again from its IDE's stopped page, delete it. The
//!   test builds the fixture repository, runs the script, and checks what the run
//!   leaves behind (no spec, no status, no process of the server).
//! - `seats.mjs`: two participants, each in a browser context of their own, open their
//!   seat links on a devbox with an origin per IDE (`server.ide_subdomains`) and each
//!   lands in their own IDE on its own origin, showing their own workspace only; one
//!   cannot open the other's IDE; an app served through an IDE (code-server's
//!   `/proxy/<port>/`) can neither read nor use the dashboard's session. The test sets
//!   up the two servers and their links, runs the script, and checks that nothing was
//!   created.
//! - `theme.mjs`: the dashboard in two browser contexts, one whose system prefers a dark
//!   scheme and one light, each in its system's theme; a user's pick overrides it and
//!   survives a reload, and choosing "system" again follows the system.
//! - `tls.mjs`: devbox serving HTTPS itself (`server.tls`, with a certificate of a
//!   private CA made by the test): Chromium refuses it until told to accept that
//!   certificate's key (and nothing else), then logs in on the dashboard (a `Secure`
//!   session cookie), opens an IDE through the proxy whose WebSocket is `wss://`,
//!   streams logs over `wss://`, and opens a seat link in a second context.
//! - `pool.mjs`: a template whose pool keeps two prebuilt servers, on a devbox behind a
//!   single sign-on proxy (the script's, naming user `ada` on devbox's trusted-header
//!   socket): the template's card says "ready: 2 of 2" (and one whose member cannot
//!   come up "ready: 0 of 1", "1 starting"), a server created from it through
//!   the dialog is in the list running at once, the card counts one fewer ready and then
//!   two again once the pool has refilled, and the claimed server's IDE shows the
//!   template repository's file. Screenshots in the light and the dark theme. The test
//!   sets up the template and waits for the pool to be full, runs the script, and checks
//!   what the run leaves behind: one server, `ada`'s, made of a former pool member, and
//!   a full pool of two other members.
//!
//! The tests take turns: each runs a Chromium and code-server instances, and two at
//! once on a small machine would make every step's timeout a matter of luck.
//!
//! Needs `scripts/install-browser.sh` (run by `scripts/test.sh`, which exports
//! `DEVBOX_PLAYWRIGHT_NODE_PATH`).

mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::pki::Pki;
use common::{Devbox, Options, Reply, git_repo, group_alive, list_dir, wait_for};

/// The file the IDE's explorer must show.
const FILE: &str = "WELCOME-TO-THE-WORKSHOP.md";
/// The API token of the devbox under test.
const TOKEN: &str = "browser-T0ken-e2e";
/// The spec file stem of the script's display name `Browser Test`.
const SLUG: &str = "Browser-Test";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The scripts have their own step timeouts; this only stops a hung `node`.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
const SCREENSHOTS: [&str; 5] = [
    "dashboard-created.png",
    "dashboard-running.png",
    "dashboard-narrow.png",
    "ide-explorer.png",
    "dashboard-stopped.png",
];

fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Held for a whole test: one browser test runs at a time. A test that failed while
/// holding it does not stop the next one.
fn one_browser_at_a_time() -> MutexGuard<'static, ()> {
    static BROWSER: Mutex<()> = Mutex::new(());
    BROWSER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `node_modules` directory holding playwright-core.
fn playwright_node_path() -> PathBuf {
    let path = std::env::var_os("DEVBOX_PLAYWRIGHT_NODE_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join(".tools/playwright/node_modules"));
    assert!(
        path.join("playwright-core").is_dir(),
        "playwright-core not found in {}: run scripts/install-browser.sh (scripts/test.sh runs it \
         and exports DEVBOX_PLAYWRIGHT_NODE_PATH)",
        path.display()
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} not found: run scripts/install-browser.sh"
    );
    path
}

/// An empty `target/browser-artifacts/<test>/` (no screenshot of an earlier run survives).
fn artifacts_dir(test: &str) -> PathBuf {
    let dir = repo_dir().join("target/browser-artifacts").join(test);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|err| panic!("clear {}: {err}", dir.display()));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    dir
}

/// Copies `reader` line by line to our output (visible with `--nocapture`) and `sink`.
fn forward(
    reader: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            println!("browser: {line}");
            let mut sink = sink.lock().expect("output lock");
            sink.push_str(&line);
            sink.push('\n');
        }
    })
}

/// Runs `node tests/browser/<script> <args>` to its end (or [`SCRIPT_TIMEOUT`]),
/// calling `meanwhile` every 100 ms while it runs. Returns the exit status and the
/// output (stdout and stderr as they came).
fn run_script(
    script: &str,
    args: &[OsString],
    mut meanwhile: impl FnMut(),
) -> (ExitStatus, String) {
    let mut child = Command::new("node")
        .arg(repo_dir().join("tests/browser").join(script))
        .args(args)
        .env("NODE_PATH", playwright_node_path())
        .current_dir(repo_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (is Node.js installed?)");
    let output = Arc::new(Mutex::new(String::new()));
    let readers = [
        forward(child.stdout.take().expect("stdout"), output.clone()),
        forward(child.stderr.take().expect("stderr"), output.clone()),
    ];
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        meanwhile();
        if Instant::now() > deadline {
            // SIGTERM first: playwright then closes Chromium (SIGKILL would orphan it).
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{script} did not finish within {SCRIPT_TIMEOUT:?}\n{}",
                output.lock().expect("output lock")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for reader in readers {
        reader.join().expect("output reader");
    }
    let output = output.lock().expect("output lock").clone();
    (status, output)
}

/// Asserts that the script passed; else panics with its output and devbox's log.
fn assert_passed(
    script: &str,
    (status, output): &(ExitStatus, String),
    elapsed: Duration,
    devbox: &Devbox,
    artifacts: &Path,
) {
    assert!(
        status.success(),
        "{script} failed ({status}) after {elapsed:.1?}; screenshots in {}\n\
         --- script output ---\n{output}--- devbox log (tail) ---\n{}",
        artifacts.display(),
        devbox_log_tail(devbox)
    );
    println!("{script} passed in {elapsed:.1?}");
    assert!(
        !artifacts.join("failure.png").exists(),
        "a passing run leaves no failure.png"
    );
}

/// What the script's run recorded of the server's code-server instance.
struct Instance {
    pgid: u32,
    tag: String,
}

/// Live processes carrying `tag` (every process of one code-server instance inherits
/// it) or naming `marker` (the server's state folder) in their command line.
fn processes_of(tag: &str, marker: &str) -> Vec<String> {
    common::procs::live_processes()
        .into_iter()
        .filter_map(|process| {
            let cmdline = process.cmdline();
            (process.has_instance_tag(tag) || cmdline.contains(marker))
                .then(|| format!("{}: {cmdline}", process.pid))
        })
        .collect()
}

/// The end of devbox's log without the proxy's connection-pool chatter.
fn devbox_log_tail(devbox: &Devbox) -> String {
    let log = devbox.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| !line.contains("idle connection"))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The width and height of a PNG file; panics when it is not a non-empty PNG.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes =
        std::fs::read(path).unwrap_or_else(|err| panic!("screenshot {}: {err}", path.display()));
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "{} is not a non-empty PNG ({} bytes)",
        path.display(),
        bytes.len()
    );
    let number = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    (number(16), number(20))
}

#[test]
fn dashboard_drives_a_server_from_create_to_delete_in_a_real_browser() {
    let _browser = one_browser_at_a_time();
    let node_path = playwright_node_path();
    let artifacts = artifacts_dir("dashboard");
    let fixture = tempfile::Builder::new()
        .prefix("devbox-browser-repo-")
        .tempdir()
        .expect("temp dir");
    git_repo(
        fixture.path(),
        &[
            (
                FILE,
                "# Welcome to the workshop\n\nThis file comes from the test repository.\n",
            ),
            ("src/hello.py", "print('hello from the workshop')\n"),
        ],
    );
    let git_url = format!("file://{}", fixture.path().display());
    // With a token, as on a shared host: the dashboard logs in, and the page never
    // holds the token (the script checks).
    let devbox = Devbox::start_opts(
        Options {
            config: format!("server:\n  api_token: \"{TOKEN}\"\n"),
            ..Options::default()
        },
        |_| {},
    );
    println!(
        "devbox at {}, NODE_PATH={}",
        devbox.url("/"),
        node_path.display()
    );

    let begin = Instant::now();
    let mut instance = None;
    let run = run_script(
        "dashboard.mjs",
        &[
            devbox.url("/").into(),
            git_url.into(),
            artifacts.clone().into(),
            FILE.into(),
            TOKEN.into(),
        ],
        // The server's process record, from its status file while it runs.
        || {
            if let Some(status) = devbox.status(SLUG)
                && let (Some(pgid), Some(tag)) = (
                    status["instance"]["pgid"].as_u64(),
                    status["instance"]["instance"].as_str(),
                )
            {
                instance = Some(Instance {
                    pgid: pgid as u32,
                    tag: tag.to_owned(),
                });
            }
        },
    );
    assert_passed("dashboard.mjs", &run, begin.elapsed(), &devbox, &artifacts);

    for name in SCREENSHOTS {
        png_size(&artifacts.join(name));
    }
    assert_eq!(
        png_size(&artifacts.join("dashboard-narrow.png")),
        (390, 844),
        "the narrow screenshot is one 390×844 viewport"
    );

    // The server existed and ran under devbox (the script saw it too): its workspace is
    // the clone of the fixture, and it is kept after the delete.
    let instance = instance.expect("the server's status recorded a running code-server process");
    assert!(
        devbox
            .state()
            .join("workspaces")
            .join(SLUG)
            .join(FILE)
            .is_file(),
        "the workspace holds the clone of the test repository"
    );

    // Deleted: no spec, not listed, its state folder gone, and none of its processes left.
    assert!(
        !devbox.specs().join(format!("{SLUG}.yaml")).exists(),
        "the spec file is gone"
    );
    assert_eq!(list_dir(&devbox.specs()), Vec::<String>::new());
    let listed = devbox.call(
        "GET",
        "/servers",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        None,
    );
    assert_eq!(
        listed.json(),
        serde_json::json!([]),
        "GET /servers lists nothing"
    );
    let server_dir = devbox.state().join("servers").join(SLUG);
    wait_for(
        "the deleted server's state folder to be removed",
        Duration::from_secs(10),
        || (!server_dir.exists()).then_some(()),
    );
    assert!(
        !group_alive(instance.pgid),
        "the process group {} of the deleted server is gone",
        instance.pgid
    );
    let left = processes_of(&instance.tag, &server_dir.to_string_lossy());
    assert!(
        left.is_empty(),
        "no process of the deleted server remains: {left:#?}"
    );
}

/// The admin token of the seats test's devbox.
const SEATS_TOKEN: &str = "seats-admin-T0ken";
/// The two participants' servers and the file only their workspace holds.
const SEATS: [(&str, &str); 2] = [("ada", "ADA-NOTES.md"), ("bob", "BOB-NOTES.md")];
const SEATS_SCREENSHOTS: [&str; 3] = ["seat-ada-ide.png", "seat-bob-ide.png", "seat-ada-app.png"];

/// A call to devbox as its admin (the bearer token).
fn as_seats_admin(devbox: &Devbox, method: &str, path: &str) -> Reply {
    let bearer = format!("Bearer {SEATS_TOKEN}");
    devbox.call(method, path, &[("Authorization", bearer.as_str())], None)
}

/// The names of the servers `GET /servers` lists to the admin.
fn listed_to_admin(devbox: &Devbox) -> Vec<String> {
    let reply = as_seats_admin(devbox, "GET", "/servers");
    assert_eq!(reply.status, 200, "{reply}");
    let mut names: Vec<String> = reply
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|server| server["slug"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn seat_links_open_each_participants_own_ide_on_an_origin_of_its_own_in_a_real_browser() {
    let _browser = one_browser_at_a_time();
    playwright_node_path();
    let artifacts = artifacts_dir("seats");
    let fixtures: Vec<(&str, &str, tempfile::TempDir)> = SEATS
        .iter()
        .map(|&(name, file)| {
            let dir = tempfile::Builder::new()
                .prefix(&format!("devbox-browser-{name}-"))
                .tempdir()
                .expect("temp dir");
            git_repo(
                dir.path(),
                &[(
                    file,
                    &format!("# Notes of {name}\n\nOnly {name}'s seat has them.\n"),
                )],
            );
            (name, file, dir)
        })
        .collect();
    let devbox = Devbox::start_opts(
        Options {
            config: format!(
                "server:\n  api_token: \"{SEATS_TOKEN}\"\n  \
                 public_url: \"http://devbox.localhost:{}\"\n  ide_subdomains: true\n",
                common::HTTP_PORT
            ),
            ..Options::default()
        },
        |root| {
            for (name, _, repo) in &fixtures {
                std::fs::write(
                    root.join(format!("specs/{name}.yaml")),
                    format!(
                        "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\n\
                         spec:\n  state: running\n  workspace:\n    git: {{url: 'file://{}'}}\n",
                        repo.path().display()
                    ),
                )
                .expect("write spec");
            }
        },
    );
    let base = format!("http://devbox.localhost:{}/", devbox.http_port);

    let mut args: Vec<OsString> = vec![base.clone().into(), artifacts.clone().into()];
    for (name, file, _) in &fixtures {
        wait_for(
            &format!("{name} to run\n{}", devbox.log_tail()),
            common::STARTUP,
            || {
                let server = as_seats_admin(&devbox, "GET", &format!("/servers/{name}")).json();
                (server["status"] == "running").then_some(())
            },
        );
        let reply = as_seats_admin(&devbox, "POST", &format!("/servers/{name}/seat-link"));
        assert_eq!(reply.status, 200, "{reply}");
        let link: Value = reply.json();
        let url = link["url"].as_str().expect("the link's url");
        assert!(
            url.starts_with(&format!("{base}seat/")),
            "the link opens on the public URL: {url}"
        );
        args.extend([(*name).into(), (*file).into(), url.into()]);
    }

    let begin = Instant::now();
    let run = run_script("seats.mjs", &args, || {});
    assert_passed("seats.mjs", &run, begin.elapsed(), &devbox, &artifacts);
    for name in SEATS_SCREENSHOTS {
        png_size(&artifacts.join(name));
    }

    // Nothing the app's page sent created a server: only the two seats' specs exist.
    assert_eq!(list_dir(&devbox.specs()), ["ada.yaml", "bob.yaml"]);
    assert_eq!(listed_to_admin(&devbox), ["ada", "bob"]);
}

const THEME_SCREENSHOTS: [&str; 3] = [
    "theme-system-dark.png",
    "theme-system-light.png",
    "theme-picked-dark.png",
];

#[test]
fn dashboard_follows_the_systems_color_scheme_until_the_user_picks_a_theme_in_a_real_browser() {
    let _browser = one_browser_at_a_time();
    playwright_node_path();
    let artifacts = artifacts_dir("theme");
    let devbox = Devbox::start();
    let begin = Instant::now();
    let run = run_script(
        "theme.mjs",
        &[devbox.url("/").into(), artifacts.clone().into()],
        || {},
    );
    assert_passed("theme.mjs", &run, begin.elapsed(), &devbox, &artifacts);
    for name in THEME_SCREENSHOTS {
        png_size(&artifacts.join(name));
    }
}

/// The admin token and the server of the HTTPS test.
const TLS_TOKEN: &str = "tls-browser-T0ken";
const TLS_SERVER: &str = "secure-ide";
const TLS_SCREENSHOTS: [&str; 3] = ["tls-dashboard.png", "tls-ide.png", "tls-seat-ide.png"];

#[test]
fn dashboard_ide_and_seat_link_work_over_https_in_a_real_browser() {
    let _browser = one_browser_at_a_time();
    playwright_node_path();
    let artifacts = artifacts_dir("tls");
    let pki = Pki::new();
    let fixture = tempfile::Builder::new()
        .prefix("devbox-browser-tls-")
        .tempdir()
        .expect("temp dir");
    git_repo(fixture.path(), &[(FILE, "# Served over HTTPS\n")]);
    let devbox = Devbox::start_opts(
        Options {
            config: format!(
                "server:\n  api_token: \"{TLS_TOKEN}\"\n  tls: {}\n",
                pki.tls_yaml()
            ),
            tls_ca: Some(pki.ca()),
            ..Options::default()
        },
        |root| {
            std::fs::write(
                root.join(format!("specs/{TLS_SERVER}.yaml")),
                format!(
                    "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {TLS_SERVER}\n\
                     spec:\n  state: running\n  workspace:\n    git: {{url: 'file://{}'}}\n",
                    fixture.path().display()
                ),
            )
            .expect("write spec");
        },
    );
    let bearer = format!("Bearer {TLS_TOKEN}");
    let admin = [("Authorization", bearer.as_str())];
    wait_for(
        &format!("{TLS_SERVER} to run\n{}", devbox.log_tail()),
        common::STARTUP,
        || {
            let server = devbox
                .call("GET", &format!("/servers/{TLS_SERVER}"), &admin, None)
                .json();
            (server["status"] == "running").then_some(())
        },
    );
    let (_, link) = common::seats::seat_link(&devbox, TLS_TOKEN, TLS_SERVER);
    let seat_url = link["url"].as_str().expect("the link's url").to_owned();
    let base = devbox.url("/");
    assert!(
        seat_url.starts_with(&format!("{base}seat/")),
        "the link is an https one: {seat_url}"
    );

    let begin = Instant::now();
    let run = run_script(
        "tls.mjs",
        &[
            base.into(),
            pki.cert().into(),
            artifacts.clone().into(),
            TLS_TOKEN.into(),
            TLS_SERVER.into(),
            FILE.into(),
            seat_url.into(),
        ],
        || {},
    );
    assert_passed("tls.mjs", &run, begin.elapsed(), &devbox, &artifacts);
    for name in TLS_SCREENSHOTS {
        png_size(&artifacts.join(name));
    }
}

/// The admin token of the pool test's devbox (the script is `ada`, through the proxy).
const POOL_TOKEN: &str = "pool-admin-T0ken";
const POOL_USER: &str = "ada";
const POOL_TAB: &str = "Workshops";
const POOL_TEMPLATE: &str = "Rust Class";
const POOL_SIZE: u64 = 2;
/// A template whose repository is not there: its pool's one member never comes up.
const POOL_STUCK: &str = "Rust Week 2";
/// What `ada` names the server she creates from the template.
const POOL_SERVER: &str = "Ada Seat";
/// The file of the template's repository that the claimed IDE's explorer must show.
const POOL_FILE: &str = "WEEK-1-NOTES.md";
const POOL_SCREENSHOTS: [&str; 10] = [
    "pool-ready-light.png",
    "pool-ready-dark.png",
    "pool-dialog-stuck.png",
    "pool-dialog.png",
    "pool-claimed-light.png",
    "pool-claimed-dark.png",
    "pool-refilled-light.png",
    "pool-refilled-dark.png",
    "pool-narrow.png",
    "pool-ide.png",
];

/// A call to the pool test's devbox as its admin (the bearer token): the JSON answer.
fn as_pool_admin(devbox: &Devbox, path: &str) -> Value {
    let bearer = format!("Bearer {POOL_TOKEN}");
    let reply = devbox.call("GET", path, &[("Authorization", bearer.as_str())], None);
    assert_eq!(reply.status, 200, "GET {path}: {reply}");
    reply.json()
}

/// `GET /pools`' entry for `template`: (size, ready, coming, down).
fn pool_figures(devbox: &Devbox, template: &str) -> (u64, u64, u64, u64) {
    let pools = as_pool_admin(devbox, "/pools")["data"].clone();
    let pool = pools
        .as_array()
        .and_then(|pools| pools.iter().find(|p| p["template"] == template).cloned())
        .unwrap_or_else(|| panic!("no pool of {template} in {pools}"));
    let figure = |name: &str| {
        pool[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {pool}"))
    };
    (
        figure("size"),
        figure("ready"),
        figure("coming"),
        figure("down"),
    )
}

/// Waits until `template`'s pool shows `figures` (size, ready, coming, down).
fn wait_pool(devbox: &Devbox, template: &str, figures: (u64, u64, u64, u64)) {
    wait_for(
        &format!(
            "the pool of {template} to be {figures:?}\n{}",
            devbox.log_tail()
        ),
        common::STARTUP * 2,
        || (pool_figures(devbox, template) == figures).then_some(()),
    );
}

/// The servers `GET /servers?include_pool=true` lists to the admin.
fn all_servers(devbox: &Devbox) -> Vec<Value> {
    as_pool_admin(devbox, "/servers?include_pool=true")
        .as_array()
        .expect("a list")
        .clone()
}

#[test]
fn dashboard_shows_a_templates_pool_and_hands_out_a_running_server_in_a_real_browser() {
    let _browser = one_browser_at_a_time();
    playwright_node_path();
    let artifacts = artifacts_dir("pool");
    let devbox = Devbox::start_opts(
        Options {
            config: format!(
                r#"
server:
  api_token: "{POOL_TOKEN}"
auth:
  trusted_header:
    name: X-Forwarded-User
    socket: "{{root}}/proxy.sock"
ui:
  workspace:
    allow_local_git_hosts: true
packaged_assets:
  tabs:
    - name: {POOL_TAB}
      items:
        - name: {POOL_TEMPLATE}
          description: Week 1 of the Rust class
          extensions_groups: [tools]
          github_url: "file://{{root}}/class-repo"
          prebuilt: {POOL_SIZE}
        - name: {POOL_STUCK}
          description: Not published yet
          github_url: "file://{{root}}/week-2-repo"
          prebuilt: 1
"#
            ),
            ..Options::default()
        },
        |root| {
            git_repo(
                &root.join("class-repo"),
                &[(POOL_FILE, "# Week 1\n\nOwnership and borrowing.\n")],
            );
            // The config names the repository and the socket by absolute paths.
            let config = root.join("config.yaml");
            let text = std::fs::read_to_string(&config).expect("config");
            std::fs::write(&config, text.replace("{root}", &root.display().to_string()))
                .expect("config");
        },
    );
    wait_pool(&devbox, POOL_TEMPLATE, (POOL_SIZE, POOL_SIZE, 0, 0));
    wait_pool(&devbox, POOL_STUCK, (1, 0, 0, 1));
    for server in all_servers(&devbox) {
        if server["pool"] == POOL_STUCK {
            println!(
                "{POOL_STUCK}'s member {}: phase {}, {}",
                server["slug"], server["phase"], server["message"]
            );
        }
    }
    let members: Vec<String> = all_servers(&devbox)
        .iter()
        .filter(|server| server["pool"] == POOL_TEMPLATE)
        .filter_map(|server| server["slug"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(members.len(), 2, "{members:?}");

    let begin = Instant::now();
    let run = run_script(
        "pool.mjs",
        &[
            devbox.path("proxy.sock").into(),
            POOL_USER.into(),
            POOL_TAB.into(),
            POOL_TEMPLATE.into(),
            POOL_SIZE.to_string().into(),
            POOL_STUCK.into(),
            POOL_SERVER.into(),
            POOL_FILE.into(),
            artifacts.clone().into(),
        ],
        || {},
    );
    assert_passed("pool.mjs", &run, begin.elapsed(), &devbox, &artifacts);
    for name in POOL_SCREENSHOTS {
        png_size(&artifacts.join(name));
    }
    let slug = run
        .1
        .lines()
        .find_map(|line| line.strip_prefix("claimed "))
        .expect("the script names the server it claimed")
        .to_owned();

    // Exactly one server has left the pools: ada's, the one the script claimed, a
    // member of the pool before, running, made from the template.
    let servers = all_servers(&devbox);
    let (claimed, pool): (Vec<&Value>, Vec<&Value>) =
        servers.iter().partition(|server| server["pool"].is_null());
    assert_eq!(claimed.len(), 1, "one server is claimed: {servers:#?}");
    let seat = claimed[0];
    assert_eq!(seat["slug"], slug.as_str(), "{seat}");
    assert!(members.contains(&slug), "{slug} was one of {members:?}");
    assert_eq!(seat["name"], POOL_SERVER, "{seat}");
    assert_eq!(seat["owner"], POOL_USER, "{seat}");
    assert_eq!(seat["status"], "running", "{seat}");
    assert_eq!(seat["template"], POOL_TEMPLATE, "{seat}");
    let spec = std::fs::read_to_string(devbox.specs().join(format!("{slug}.yaml"))).expect("spec");
    assert!(spec.contains(&format!("owner: {POOL_USER}")), "{spec}");
    assert!(!spec.contains("devbox/pool"), "{spec}");
    assert!(
        devbox
            .state()
            .join("workspaces")
            .join(&slug)
            .join(POOL_FILE)
            .is_file(),
        "the claimed server's workspace holds the template's repository"
    );

    // The pool is full again, of two other servers, nobody's; the stuck one still has
    // its one member, and ada's visit took nothing from it.
    let members_of = |template: &str| -> Vec<&str> {
        pool.iter()
            .filter(|server| server["pool"] == template)
            .filter_map(|server| server["slug"].as_str())
            .collect()
    };
    let refilled = members_of(POOL_TEMPLATE);
    assert_eq!(refilled.len(), 2, "{servers:#?}");
    assert!(!refilled.contains(&slug.as_str()), "{refilled:?}");
    assert_eq!(members_of(POOL_STUCK).len(), 1, "{servers:#?}");
    assert_eq!(pool.len(), 3, "no other server: {servers:#?}");
    for server in &pool {
        assert!(server["owner"].is_null(), "{server}");
    }
    assert_eq!(
        pool_figures(&devbox, POOL_TEMPLATE),
        (POOL_SIZE, POOL_SIZE, 0, 0)
    );
    assert_eq!(pool_figures(&devbox, POOL_STUCK), (1, 0, 0, 1));
    let mut specs = list_dir(&devbox.specs());
    specs.sort();
    let mut expected: Vec<String> = servers
        .iter()
        .filter_map(|server| server["slug"].as_str())
        .map(|slug| format!("{slug}.yaml"))
        .collect();
    expected.sort();
    assert_eq!(specs, expected, "no spec file besides the four servers'");
}
