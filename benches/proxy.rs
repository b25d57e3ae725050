//! Proxy: throughput and latency through devbox's `/vscode/<port>/` against the same
//! request sent directly to the backend and through nginx.
//!
//! Starts two release `devbox serve` instances, each with one running server on a
//! pinned port (with `code_server.listen: tcp`, so that devbox reaches its backend on a
//! loopback port as nginx and the direct requests do): one runs the real code-server, the other `tests/fixtures/fake_code_server.py`
//! (a trivially fast backend, so that the proxy itself is what is measured; the
//! code-server binary is per devbox, hence two). nginx (Debian's package) runs on
//! loopback as a plain reverse proxy to the same two backends (keep-alive upstreams,
//! HTTP/1.1, WebSocket upgrades; its config and temp files live in a temp dir).
//!
//! For each asset — a small static file of code-server (`media/code-icon.svg`, 516 B),
//! code-server's `workbench.css` (767 KB), the fake backend's `/bytes/482`, and
//! code-server's `workbench.js` asked for as browsers do (`Accept-Encoding: gzip,
//! deflate, br, zstd`: code-server compresses its 11 MB anew for every request) — and
//! each target (direct, nginx, devbox), `wrk -t2 -c16 --latency` (`-c4` for
//! `workbench.js`) runs as a separate process, after a 1 s warm-up, `--rounds` times
//! (default 2) for `--duration` seconds (default 5), the targets interleaved in a
//! rotating order so that the load of a shared machine touches them alike. devbox
//! answers code-server's static files from its cache after the first answer; for those
//! a fourth row, "no cache", sends the same requests with `Cache-Control: no-cache`
//! (a hard reload), which devbox forwards to code-server: the proxy path alone. Printed
//! per target: the means of requests/s (± half their range over the rounds), p50 and
//! p99 latency, the ratios to direct and to nginx, the proxy's CPU use (% of one core)
//! and wrk's error count; and the verdict against the target (devbox ≥ 1.0× nginx's
//! requests/s and ≤ its p99), beside the original Go
//! tool's figures. Then WebSocket messages per second to the fake backend's echo,
//! direct, through nginx and through devbox (one connection, one 64-byte message at a
//! time and 32 in flight), against the target (devbox ≥ 0.9× direct, judged with
//! messages in flight: one at a time, the rate is one over the round trip, which any
//! proxy lengthens by two sockets; that ratio is printed beside nginx's).
//!
//! Run: `cargo bench --bench proxy` (or `-- --rounds 3 --duration 10`; `-- --only TEXT`
//! runs only the parts whose title holds TEXT, e.g. `bytes` for the fast backend's
//! HTTP row or `websocket`); about four minutes with the defaults. Needs code-server
//! (`scripts/install-code-server.sh`, or `DEVBOX_CODE_SERVER`) and nginx and wrk
//! (`scripts/install-bench-deps.sh`).

mod common;

use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{GroupGuard, ServingDevbox, millis};
use tokio_tungstenite::tungstenite::{self, Message, stream::MaybeTlsStream};

const INSTALL_DEPS: &str = "scripts/install-bench-deps.sh";
const WARM_UP: Duration = Duration::from_secs(1);
const WS_DURATION: Duration = Duration::from_secs(3);
const WS_MESSAGE_BYTES: usize = 64;
const WS_WINDOW: usize = 32;
/// What a browser's request says it accepts (Chromium's list).
const BROWSER_ENCODINGS: &[&str] = &["Accept-Encoding: gzip, deflate, br, zstd"];
/// A hard reload's header: devbox forwards such a request instead of using its cache.
const NO_CACHE: &str = "Cache-Control: no-cache";

/// The original Go tool's proxy, from the issue: requests/s as a share of nginx's, p99.
struct GoFigure {
    ratio_to_nginx: f64,
    p99_ms: f64,
    nginx_p99_ms: f64,
}

/// One asset, reachable directly, through nginx and through devbox.
struct Asset {
    what: String,
    direct: String,
    nginx: String,
    devbox: String,
    /// The devbox serving `devbox`, whose CPU use is read.
    devbox_pid: u32,
    go: Option<GoFigure>,
    /// Request headers, the same for every target (`Accept-Encoding`, as browsers send it).
    headers: &'static [&'static str],
    /// wrk's connections (fewer where each answer costs the backend a lot of CPU).
    connections: u32,
    /// devbox answers it from its static cache: a fourth row sends the same requests
    /// with `Cache-Control: no-cache`, which devbox forwards to the instance.
    cached_by_devbox: bool,
}

/// One row of an asset's table: where wrk sends its load, and whose CPU is read.
struct Target<'a> {
    label: &'static str,
    url: &'a str,
    headers: Vec<&'static str>,
    cpu: Option<Cpu>,
}

/// What wrk reports for one run.
struct Load {
    requests_per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// Non-2xx/3xx responses plus socket errors.
    errors: u64,
    /// CPU the proxy used during the run, in % of one core.
    proxy_cpu: Option<f64>,
    /// Half the range of requests/s over the rounds, as a share of their mean.
    spread: f64,
}

impl Load {
    /// The means of several runs of one target (errors: their sum).
    fn mean(runs: &[Load]) -> Load {
        let n = runs.len() as f64;
        let mean = |f: &dyn Fn(&Load) -> f64| runs.iter().map(f).sum::<f64>() / n;
        let requests_per_sec = mean(&|l| l.requests_per_sec);
        let (low, high) = runs.iter().fold((f64::MAX, 0.0_f64), |(low, high), l| {
            (low.min(l.requests_per_sec), high.max(l.requests_per_sec))
        });
        Load {
            requests_per_sec,
            p50: Duration::from_secs_f64(mean(&|l| l.p50.as_secs_f64())),
            p99: Duration::from_secs_f64(mean(&|l| l.p99.as_secs_f64())),
            errors: runs.iter().map(|l| l.errors).sum(),
            proxy_cpu: runs
                .iter()
                .map(|l| l.proxy_cpu)
                .sum::<Option<f64>>()
                .map(|total| total / n),
            spread: (high - low) / 2.0 / requests_per_sec,
        }
    }
}

fn main() {
    let seconds = common::arg_number("--duration", 5);
    let rounds = common::arg_number("--rounds", 2).max(1) as usize;
    let wrk = common::require_program("wrk", INSTALL_DEPS);
    let nginx = common::require_program("nginx", INSTALL_DEPS);
    let code_server = common::code_server();
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_code_server.py");

    let cs_port = common::free_port_in(common::INSTANCE_PORTS, &[]);
    let fast_port = common::free_port_in(common::INSTANCE_PORTS, &[cs_port]);
    let real = devbox_with_server(&code_server, "cs", cs_port);
    let fast = devbox_with_server(&fake, "fast", fast_port);
    let nginx_dir = tempfile::Builder::new()
        .prefix("devbox-bench-nginx.")
        .tempdir()
        .expect("temp dir");
    let nginx_port = common::free_port();
    let nginx = start_nginx(&nginx, nginx_dir.path(), nginx_port, cs_port, fast_port);
    let nginx_pgid = nginx.pid();

    let static_prefix = code_server_static_prefix(cs_port);
    // `what` is labelled with the size of the answer to a request with `headers`.
    let code_server_asset =
        |what: &str, path: &str, headers: &'static [&'static str], go: Option<GoFigure>| {
            let direct = format!("http://127.0.0.1:{cs_port}/{path}");
            Asset {
                what: format!("{what} ({})", size_label(&direct, headers)),
                direct,
                nginx: format!("http://127.0.0.1:{nginx_port}/cs/{path}"),
                devbox: real.url(&format!("/vscode/{cs_port}/{path}")),
                devbox_pid: real.pid(),
                go,
                headers,
                connections: 16,
                cached_by_devbox: true,
            }
        };
    let brotli_js = Asset {
        connections: 4,
        ..code_server_asset(
            "code-server workbench.js as browsers ask for it, brotli",
            &format!("{static_prefix}vs/code/browser/workbench/workbench.js"),
            BROWSER_ENCODINGS,
            None,
        )
    };
    let assets = [
        code_server_asset(
            "code-server static file media/code-icon.svg",
            &format!("{static_prefix}media/code-icon.svg"),
            &[],
            Some(GoFigure {
                ratio_to_nginx: 0.3,
                p99_ms: 25.0,
                nginx_p99_ms: 9.0,
            }),
        ),
        code_server_asset(
            "code-server workbench.css",
            &format!("{static_prefix}vs/code/browser/workbench/workbench.css"),
            &[],
            Some(GoFigure {
                ratio_to_nginx: 0.19,
                p99_ms: 180.0,
                nginx_p99_ms: 38.0,
            }),
        ),
        Asset {
            what: "fast backend /bytes/482 (482 B)".into(),
            direct: format!("http://127.0.0.1:{fast_port}/bytes/482"),
            nginx: format!("http://127.0.0.1:{nginx_port}/fast/bytes/482"),
            devbox: fast.url(&format!("/vscode/{fast_port}/bytes/482")),
            devbox_pid: fast.pid(),
            go: None,
            headers: &[],
            connections: 16,
            cached_by_devbox: false,
        },
        brotli_js,
    ];

    println!(
        "proxy: wrk -t2 -c16 -d{seconds}s --latency (-c4 for workbench.js), {rounds} rounds per target interleaved (after a {}s warm-up), {} cores shared by load, proxy and backend",
        WARM_UP.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("nginx: worker_processes auto, keep-alive upstreams; devbox: release build");
    println!("load average: {}", common::load_average());
    let only = common::arg_text("--only").map(|text| text.to_lowercase());
    let chosen = |title: &str| {
        only.as_ref()
            .is_none_or(|text| title.to_lowercase().contains(text))
    };
    let mut verdicts = Vec::new();
    for asset in assets.iter().filter(|asset| chosen(&asset.what)) {
        // Rounds interleave the targets (in a rotating order), so that a change of the
        // machine's load in the middle of a run touches all of them alike.
        let target = |label, url, cpu| Target {
            label,
            url,
            headers: asset.headers.to_vec(),
            cpu,
        };
        let mut targets = vec![
            target("direct", &asset.direct, None),
            target("nginx", &asset.nginx, Some(Cpu::Group(nginx_pgid))),
            target("devbox", &asset.devbox, Some(Cpu::Pid(asset.devbox_pid))),
        ];
        if asset.cached_by_devbox {
            let mut uncached = target("no cache", &asset.devbox, Some(Cpu::Pid(asset.devbox_pid)));
            uncached.headers.push(NO_CACHE);
            targets.push(uncached);
        }
        for target in &targets {
            expect_ok(target.url, &target.headers);
        }
        println!();
        println!("{}", asset.what);
        println!(
            "  {:<8} {:>9} {:>6} {:>9} {:>9} {:>9} {:>8} {:>10} {:>7}",
            "", "req/s", "±", "p50", "p99", "× direct", "× nginx", "proxy CPU", "errors"
        );
        for target in &targets {
            wrk_once(&wrk, target, asset.connections, WARM_UP.as_secs());
        }
        let mut samples: Vec<Vec<Load>> = targets.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            for k in 0..targets.len() {
                let i = (k + round) % targets.len();
                samples[i].push(run_wrk(&wrk, &targets[i], asset.connections, seconds));
            }
        }
        let loads: Vec<Load> = samples.iter().map(|runs| Load::mean(runs)).collect();
        let (direct, via_nginx, via_devbox) = (&loads[0], &loads[1], &loads[2]);
        print_row("direct", direct, direct, None);
        for (target, load) in targets.iter().zip(&loads).skip(1) {
            print_row(target.label, load, direct, Some(via_nginx));
        }
        if asset.cached_by_devbox {
            println!(
                "  devbox answers it from its static cache (code-server's first answer kept); \"no cache\": the same requests with `{NO_CACHE}`, forwarded to code-server"
            );
        }
        let ratio = via_devbox.requests_per_sec / via_nginx.requests_per_sec;
        let meets = ratio >= 1.0 && via_devbox.p99 <= via_nginx.p99;
        println!(
            "  target: ≥ 1.00× nginx and p99 ≤ nginx's ({:.2} ms): {}",
            millis(via_nginx.p99),
            if meets {
                "meets target"
            } else {
                "MISSES target"
            }
        );
        if let Some(go) = &asset.go {
            println!(
                "  original Go tool (issue, its own small and large asset): {:.2}× nginx, p99 {:.0} ms against nginx's {:.0} ms",
                go.ratio_to_nginx, go.p99_ms, go.nginx_p99_ms
            );
        }
        verdicts.push((asset.what.clone(), meets));
    }

    let websocket_title = "WebSocket echo of the fast backend";
    let ws_meets = chosen(websocket_title).then(|| {
        let devbox_url = format!("ws://127.0.0.1:{}/vscode/{fast_port}/", fast.http_port);
        websocket_echo(websocket_title, fast_port, nginx_port, &devbox_url, rounds)
    });

    println!();
    println!("summary against the targets:");
    for (what, meets) in verdicts {
        println!("  {what}: {}", if meets { "meets" } else { "MISSES" });
    }
    if let Some(ws_meets) = ws_meets {
        println!(
            "  WebSocket messages/s: {}",
            if ws_meets { "meets" } else { "MISSES" }
        );
    }

    println!("load average: {}", common::load_average());
    drop(nginx);
    drop(fast);
    drop(real);
}

/// Messages per second of the WebSocket echo, direct, through nginx and through devbox
/// (`devbox_url`), one at a time and [`WS_WINDOW`] in flight; prints them and returns
/// whether devbox meets its target.
fn websocket_echo(
    title: &str,
    fast_port: u16,
    nginx_port: u16,
    devbox_url: &str,
    rounds: usize,
) -> bool {
    println!();
    println!(
        "{title}, {WS_MESSAGE_BYTES}-byte text messages, one connection, {} s per target and mode in {rounds} rounds",
        WS_DURATION.as_secs()
    );
    println!(
        "  {:<8} {:>18} {:>9} {:>24} {:>9}",
        "", "1 in flight msg/s", "× direct", "32 in flight msg/s", "× direct"
    );
    let ws_urls = [
        ("direct", format!("ws://127.0.0.1:{fast_port}/")),
        ("nginx", format!("ws://127.0.0.1:{nginx_port}/fast/")),
        ("devbox", devbox_url.to_owned()),
    ];
    // Interleaved like the HTTP runs: `rounds` rounds of a share of WS_DURATION each.
    let share = WS_DURATION / rounds as u32;
    let mut totals = [(0.0, 0.0); 3];
    for round in 0..rounds {
        for k in 0..ws_urls.len() {
            let i = (k + round) % ws_urls.len();
            totals[i].0 += ws_rate(&ws_urls[i].1, 1, share) / rounds as f64;
            totals[i].1 += ws_rate(&ws_urls[i].1, WS_WINDOW, share) / rounds as f64;
        }
    }
    let ws: Vec<(&str, f64, f64)> = ws_urls
        .iter()
        .zip(totals)
        .map(|((what, _), (sequential, pipelined))| (*what, sequential, pipelined))
        .collect();
    let (direct_seq, direct_pipe) = (ws[0].1, ws[0].2);
    for (what, sequential, pipelined) in &ws {
        println!(
            "  {what:<8} {sequential:>18.0} {:>8.2}× {pipelined:>24.0} {:>8.2}×",
            sequential / direct_seq,
            pipelined / direct_pipe
        );
    }
    // Messages per second is a throughput: with messages in flight. One at a time, a
    // message's rate is one over its round trip, which a proxy lengthens by two more
    // sockets; printed beside nginx's, not judged.
    let (devbox_seq, nginx_seq) = (ws[2].1 / direct_seq, ws[1].1 / direct_seq);
    let ws_meets = ws[2].2 / direct_pipe >= 0.9;
    println!(
        "  target: devbox ≥ 0.90× direct with {WS_WINDOW} in flight: {}; one at a time (round-trip bound) {devbox_seq:.2}× direct, nginx {nginx_seq:.2}×",
        if ws_meets {
            "meets target"
        } else {
            "MISSES target"
        }
    );
    ws_meets
}

/// A devbox running `code_server` with one running server `name` pinned to `port`;
/// waits until devbox reports it running.
fn devbox_with_server(code_server: &Path, name: &str, port: u16) -> ServingDevbox {
    // `listen: tcp`: the direct and nginx rows reach the backends on their ports, so
    // devbox does too, and the three rows differ by the proxy alone. (With devbox's
    // default, a Unix socket, its leg to the backend would be the cheaper one.)
    let config = format!("{}  listen: tcp\n", common::INSTANCE_CONFIG);
    let (root, http_port) = common::Devbox::prepare(&config);
    common::write_file(
        &root.path().join("specs"),
        &format!("{name}.yaml"),
        &format!(
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n  state: running\n  port: {port}\n"
        ),
    );
    // `info`: at `debug` devbox logs a line for every proxied request.
    let devbox = ServingDevbox::start(root, http_port, code_server, "info");
    common::wait_for(
        &format!("server {name} running"),
        Duration::from_secs(90),
        || {
            let status: serde_json::Value = ureq::get(&devbox.url(&format!("/servers/{name}")))
                .call()
                .ok()?
                .body_mut()
                .read_json()
                .ok()?;
            assert_ne!(status["status"], "failed", "{name} failed: {status}");
            (status["status"] == "running").then_some(())
        },
    );
    devbox
}

/// nginx in the foreground in its own process group, with everything it writes in `dir`.
fn start_nginx(nginx: &Path, dir: &Path, port: u16, cs_port: u16, fast_port: u16) -> GroupGuard {
    // As root, nginx's workers would switch to `nobody`, who cannot use temp files in a
    // temp dir that only root may enter; the directive is ignored otherwise.
    let running_as_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let user = if running_as_root { "user root;" } else { "" };
    let dir_text = dir.display();
    let config = format!(
        "daemon off;
master_process on;
worker_processes auto;
{user}
pid {dir_text}/nginx.pid;
error_log {dir_text}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir_text}/client_body;
    proxy_temp_path {dir_text}/proxy;
    fastcgi_temp_path {dir_text}/fastcgi;
    uwsgi_temp_path {dir_text}/uwsgi;
    scgi_temp_path {dir_text}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream code_server {{ server 127.0.0.1:{cs_port}; keepalive 32; }}
    upstream fast_backend {{ server 127.0.0.1:{fast_port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        location /cs/ {{ proxy_pass http://code_server/; }}
        location /fast/ {{ proxy_pass http://fast_backend/; }}
    }}
}}
"
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config).expect("write nginx.conf");
    let output = std::fs::File::create(dir.join("output.log")).expect("nginx output file");
    let mut guard = GroupGuard::spawn(
        "nginx",
        Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("nginx output file"))
            .stderr(output),
    );
    let url = format!("http://127.0.0.1:{port}/fast/healthz");
    common::wait_for("nginx to answer", Duration::from_secs(10), || {
        if let Some(status) = guard.exited() {
            let log = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            panic!(
                "nginx exited ({status}):\n{}{}",
                log("output.log"),
                log("error.log")
            );
        }
        ureq::get(&url).call().ok().map(|_| ())
    });
    guard
}

/// `stable-<commit>/static/out/`: where code-server serves its static files, as named
/// by the workbench page it serves at `/`.
fn code_server_static_prefix(port: u16) -> String {
    let page = ureq::get(&format!("http://127.0.0.1:{port}/"))
        .call()
        .expect("code-server's workbench page")
        .body_mut()
        .read_to_string()
        .expect("workbench page text");
    const CSS: &str = "vs/code/browser/workbench/workbench.css";
    page.split('"')
        .find_map(|value| value.strip_suffix(CSS))
        .map(|prefix| prefix.trim_start_matches("./").to_owned())
        .unwrap_or_else(|| panic!("no link to {CSS} in code-server's page:\n{page}"))
}

/// `516 B` / `767 KB`: the size of what `url` answers to a request with `headers`.
fn size_label(url: &str, headers: &[&str]) -> String {
    let bytes = get_with(url, headers)
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .expect("body")
        .len();
    if bytes >= 10_000 {
        format!("{:.0} KB", bytes as f64 / 1000.0)
    } else {
        format!("{bytes} B")
    }
}

/// A GET request for `url` with `headers` (`Name: value` lines, as wrk takes them).
fn get_with(url: &str, headers: &[&str]) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut request = ureq::get(url);
    for header in headers {
        if let Some((name, value)) = header.split_once(':') {
            request = request.header(name.trim(), value.trim());
        }
    }
    request.call()
}

/// Panics unless `url` answers 200 to a request with `headers`, read to its end (so
/// that devbox's cache has the answer before the runs).
fn expect_ok(url: &str, headers: &[&str]) {
    match get_with(url, headers) {
        Ok(mut response) if response.status() == 200 => {
            let body = response.body_mut().with_config().limit(64 * 1024 * 1024);
            if let Err(err) = body.read_to_vec() {
                panic!("GET {url}: {err}");
            }
        }
        Ok(response) => panic!("GET {url}: {}", response.status()),
        Err(err) => panic!("GET {url}: {err}"),
    }
}

/// Whose CPU use to read during a run.
enum Cpu {
    Pid(u32),
    /// Every process of a process group (nginx's master and workers).
    Group(u32),
}

impl Cpu {
    fn used(&self) -> Duration {
        match self {
            Cpu::Pid(pid) => common::cpu_time(*pid),
            Cpu::Group(pgid) => group_members(*pgid).into_iter().map(common::cpu_time).sum(),
        }
    }
}

/// The pids of the processes in group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // Fields after the command name: state, ppid, pgrp, …
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

/// Runs wrk against `url` for `seconds`, reading `cpu`'s use meanwhile, and reads its report.
fn run_wrk(wrk: &Path, target: &Target, connections: u32, seconds: u64) -> Load {
    let cpu = target.cpu.as_ref();
    let cpu_before = cpu.map(Cpu::used);
    let began = Instant::now();
    let report = wrk_once(wrk, target, connections, seconds);
    let elapsed = began.elapsed();
    let proxy_cpu = cpu.zip(cpu_before).map(|(cpu, before)| {
        (cpu.used().saturating_sub(before)).as_secs_f64() / elapsed.as_secs_f64() * 100.0
    });
    let mut load = parse_wrk(&report)
        .unwrap_or_else(|| panic!("cannot read wrk's report for {}:\n{report}", target.url));
    load.proxy_cpu = proxy_cpu;
    load
}

/// One wrk run, as a separate process; its standard output.
fn wrk_once(wrk: &Path, target: &Target, connections: u32, seconds: u64) -> String {
    let mut command = Command::new(wrk);
    command
        .args(["-t2", "--latency", "--timeout", "10s"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"));
    for header in &target.headers {
        command.args(["-H", header]);
    }
    let output = command
        .arg(target.url)
        .stdin(Stdio::null())
        .output()
        .expect("run wrk");
    assert!(
        output.status.success(),
        "wrk {}: {}\n{}",
        target.url,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Requests/s, p50, p99 and errors from wrk's `--latency` report.
fn parse_wrk(report: &str) -> Option<Load> {
    let mut requests_per_sec = None;
    let (mut p50, mut p99) = (None, None);
    let mut errors = 0;
    for line in report.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            requests_per_sec = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("50%") {
            p50 = parse_wrk_duration(value.trim());
        } else if let Some(value) = line.strip_prefix("99%") {
            p99 = parse_wrk_duration(value.trim());
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += value.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += counts
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(Load {
        requests_per_sec: requests_per_sec?,
        p50: p50?,
        p99: p99?,
        errors,
        proxy_cpu: None,
        spread: 0.0,
    })
}

/// `812.00us`, `1.23ms`, `2.01s`, `1.50m` as wrk prints them.
fn parse_wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

fn print_row(what: &str, load: &Load, direct: &Load, nginx: Option<&Load>) {
    let to_nginx = nginx.map_or_else(
        || "-".to_owned(),
        |nginx| format!("{:.2}×", load.requests_per_sec / nginx.requests_per_sec),
    );
    let cpu = load
        .proxy_cpu
        .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.0} %"));
    println!(
        "  {what:<8} {:>9.0} {:>6} {:>9} {:>9} {:>8.2}× {:>8} {:>10} {:>7}",
        load.requests_per_sec,
        format!("{:.0} %", load.spread * 100.0),
        format!("{:.2} ms", millis(load.p50)),
        format!("{:.2} ms", millis(load.p99)),
        load.requests_per_sec / direct.requests_per_sec,
        to_nginx,
        cpu,
        load.errors
    );
}

/// Echoed messages per second over one WebSocket connection to `url` during `duration`,
/// with `window` messages in flight (sent together, then their echoes awaited).
fn ws_rate(url: &str, window: usize, duration: Duration) -> f64 {
    let (mut socket, _) =
        tungstenite::connect(url).unwrap_or_else(|err| panic!("WebSocket {url}: {err}"));
    if let MaybeTlsStream::Plain(stream) = socket.get_mut() {
        configure(stream);
    }
    let payload = "x".repeat(WS_MESSAGE_BYTES);
    let round_trip = |socket: &mut tungstenite::WebSocket<MaybeTlsStream<TcpStream>>| {
        for _ in 0..window {
            socket
                .write(Message::text(payload.clone()))
                .expect("WebSocket write");
        }
        socket.flush().expect("WebSocket flush");
        for _ in 0..window {
            match socket.read().expect("WebSocket read") {
                Message::Text(echo) => assert_eq!(echo.len(), WS_MESSAGE_BYTES),
                other => panic!("unexpected WebSocket message {other:?}"),
            }
        }
    };
    // A short warm-up, then the timed run.
    for _ in 0..10 {
        round_trip(&mut socket);
    }
    let began = Instant::now();
    let mut messages = 0;
    while began.elapsed() < duration {
        round_trip(&mut socket);
        messages += window;
    }
    let rate = messages as f64 / began.elapsed().as_secs_f64();
    let _ = socket.close(None);
    let _ = socket.flush();
    rate
}

fn configure(stream: &TcpStream) {
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
}
