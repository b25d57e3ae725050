//! The proxy signs in to an instance that asks for a password (an instance on another
//! machine, `Endpoint::Remote`) on the user's behalf: a real code-server started with
//! `--auth password`, reached through devbox's real proxy router (driven at the library
//! level: the controller that fills the passwords is not part of this test). The
//! browser gets the workbench, its WebSocket and static files, and never the password,
//! code-server's session cookie or its login page; a request straight to the instance
//! still gets the login page; a wrong password is a 502 after one sign-in attempt.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use common::{Direct, free_ports, request_once, wait_for};
use devbox::config::Secret;
use devbox::identity::Caller;
use devbox::instance_auth::{InstancePassword, InstancePasswords};
use devbox::proxy::{Forwarder, ProxyState};
use devbox::sessions::Sessions;
use devbox::status::{InstanceRecord, Phase, ServerStatus, SlurmJobRecord, StatusStore};
use tokio_tungstenite::tungstenite;

const SERVER: &str = "remote";
/// The instance's tag, as the controller records it.
const TAG: &str = "t";
/// What code-server writes for each refused sign-in (`src/node/routes/login.ts`).
const FAILED_LOGIN: &str = "Failed login attempt";
/// code-server's sign-in is rate-limited; a session it refuses right after a sign-in is
/// not renewed before this (`proxy::sign_in`).
const RENEW_AFTER: Duration = Duration::from_millis(2100);

/// A real code-server with password auth on a loopback port, its folders in `dir`.
struct Instance {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Instance {
    fn start(dir: &Path, port: u16, password: &str) -> Self {
        let sub = |name: &str| dir.join(name);
        for name in [
            "user-data",
            "extensions",
            "xdg-data",
            "xdg-config",
            "workspace",
        ] {
            std::fs::create_dir_all(sub(name)).unwrap();
        }
        std::fs::write(sub("code-server.yaml"), "cert: false\n").unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sub("code-server.log"))
            .unwrap();
        let child = Command::new(common::code_server())
            .args(["--auth", "password", "--bind-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--disable-telemetry", "--disable-update-check"])
            .arg("--user-data-dir")
            .arg(sub("user-data"))
            .arg("--extensions-dir")
            .arg(sub("extensions"))
            .arg("--config")
            .arg(sub("code-server.yaml"))
            .arg(sub("workspace"))
            .current_dir(sub("workspace"))
            .env("PASSWORD", password)
            .env("XDG_DATA_HOME", sub("xdg-data"))
            .env("XDG_CONFIG_HOME", sub("xdg-config"))
            .env("EXTENSIONS_GALLERY", "{}")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start code-server");
        let instance = Self {
            child,
            port,
            dir: dir.to_owned(),
        };
        wait_for("code-server to listen", Duration::from_secs(60), || {
            Direct::Tcp(port).healthz()
        });
        instance
    }

    fn workspace(&self) -> String {
        self.dir.join("workspace").display().to_string()
    }

    /// How many sign-ins code-server refused, from its log.
    fn failed_logins(&self) -> usize {
        std::fs::read_to_string(self.dir.join("code-server.log"))
            .unwrap_or_default()
            .matches(FAILED_LOGIN)
            .count()
    }

    /// Ends code-server's whole process group, and waits until its port is free.
    fn stop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        let port = self.port;
        wait_for(
            "code-server's port to be free",
            Duration::from_secs(30),
            || {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .is_err()
                    .then_some(())
            },
        );
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// devbox's proxy router on a loopback port, over a status store that says server
/// `remote` runs as a Slurm job listening at `127.0.0.1:<instance port>`, for callers
/// who are all the admin (the sign-in in front of the proxy is not under test).
struct Proxy {
    http_port: u16,
    /// The route number of `/vscode/<route>/` (not where the instance listens).
    route: u16,
    passwords: InstancePasswords,
    forwarder: Forwarder,
    _state: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(instance_port: u16) -> Self {
        let state = tempfile::tempdir().unwrap();
        let statuses = StatusStore::open(state.path()).unwrap();
        let route = free_ports(1);
        let mut status = ServerStatus::new(SERVER, uuid::Uuid::new_v4(), SERVER);
        status.phase = Phase::Running;
        status.port = Some(route);
        status.instance = Some(InstanceRecord::Slurm(SlurmJobRecord {
            job_id: 1,
            tag: TAG.into(),
            node: Some("n".into()),
            address: Some(("127.0.0.1".into(), instance_port)),
        }));
        statuses.put(status);
        let passwords = InstancePasswords::default();
        let forwarder = Forwarder::new(8 << 20);
        let router = devbox::proxy::router(ProxyState {
            statuses,
            forwarder: forwarder.clone(),
            start_on_visit: None,
            ide_origins: None,
            sessions: Sessions::new(Duration::from_secs(3600)),
            passwords: passwords.clone(),
        })
        .layer(axum::middleware::from_fn(
            |mut request: Request, next: Next| async move {
                request.extensions_mut().insert(Caller::Admin);
                next.run(request).await
            },
        ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let http_port = listener.local_addr().unwrap().port();
        runtime.spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Self {
            http_port,
            route,
            passwords,
            forwarder,
            _state: state,
            _runtime: runtime,
        }
    }

    fn set_password(&self, password: &str) {
        self.passwords.set(
            SERVER,
            InstancePassword {
                instance: TAG.into(),
                password: Secret::new(password),
            },
        );
    }

    fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/vscode/{}{path}",
            self.http_port, self.route
        )
    }

    /// A WebSocket handshake through the proxy to the instance (code-server lets VS
    /// Code's server take any signed-in upgrade; signed out, it answers 401).
    fn websocket(&self) -> Result<u16, tungstenite::Error> {
        let url = format!(
            "ws://127.0.0.1:{}/vscode/{}/?reconnectionToken={}&reconnection=false&skipWebSocketFrames=false",
            self.http_port,
            self.route,
            uuid::Uuid::new_v4()
        );
        let (mut socket, response) = tungstenite::connect(url)?;
        let _ = socket.close(None);
        Ok(response.status().as_u16())
    }
}

/// The workbench's page (not code-server's login page).
fn assert_workbench(reply: &common::Reply) {
    assert_eq!(reply.status, 200, "{reply}");
    assert!(
        reply.text.contains("vscode-workbench-web-configuration"),
        "not the workbench: {reply}"
    );
    assert!(!reply.text.contains("type=\"password\""), "{reply}");
}

fn assert_no_session_cookie(reply: &common::Reply, what: &str) {
    for (name, value) in &reply.headers {
        assert!(
            !(name.eq_ignore_ascii_case("set-cookie") && value.contains("code-server-session")),
            "{what}: the instance's session cookie reached the browser: {value}"
        );
    }
}

#[test]
fn an_instance_that_asks_for_a_password_opens_signed_in_through_the_proxy_only() {
    let dir = tempfile::tempdir().unwrap();
    let instance = Instance::start(dir.path(), free_ports(1), "correct horse");
    let proxy = Proxy::start(instance.port);
    let workbench = format!("/?folder={}", instance.workspace());

    // Straight to the instance, without devbox: its login page.
    let direct = Direct::Tcp(instance.port).get("/", &[]).expect("an answer");
    assert_eq!(direct.status, 302);
    assert_eq!(direct.header("location"), Some("./login"));

    // Without an entry in the passwords, the proxy signs in to nothing (as for every
    // local instance) and code-server asks the browser to sign in.
    let unsigned = request_once("GET", &proxy.url("/"), &[], None);
    assert_eq!(unsigned.status, 302, "{unsigned}");
    assert!(
        unsigned
            .header("location")
            .unwrap_or_default()
            .ends_with("login"),
        "{:?}",
        unsigned.headers
    );
    assert!(proxy.websocket().is_err(), "a WebSocket signed out");
    assert_eq!(proxy.forwarder.sign_in_attempts(), 0);

    // With the password: first requests at once sign in once, and each gets the
    // workbench.
    proxy.set_password("correct horse");
    let replies: Vec<common::Reply> = std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| request_once("GET", &proxy.url(&workbench), &[], None)))
            .collect();
        tasks.into_iter().map(|task| task.join().unwrap()).collect()
    });
    for reply in &replies {
        assert_workbench(reply);
        assert_no_session_cookie(reply, "the workbench");
    }
    assert_eq!(proxy.forwarder.sign_in_attempts(), 1);

    // A session cookie the browser brings is not used.
    let forged = request_once(
        "GET",
        &proxy.url(&workbench),
        &[("cookie", "code-server-session=forged; other=1")],
        None,
    );
    assert_workbench(&forged);

    // The workbench's own static files and its WebSocket, signed in.
    let commit_at = replies[0].text.find("stable-").expect("a build path");
    let build: String = replies[0].text[commit_at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let styles = format!("/{build}/static/out/vs/code/browser/workbench/workbench.css");
    let signed_in = request_once("GET", &proxy.url(&styles), &[], None);
    assert_eq!(signed_in.status, 200, "{}", signed_in.status);
    assert!(signed_in.text.contains(".monaco-workbench"));
    let direct = Direct::Tcp(instance.port)
        .get(&styles, &[])
        .expect("an answer");
    assert_eq!(direct.status, 401, "signed out, the same file");
    assert_eq!(proxy.websocket().expect("a WebSocket signed in"), 101);

    // code-server's sign-out clears its cookie: that Set-Cookie never reaches the
    // browser, and its login page, asked for, sends a signed-in browser on.
    let logout = request_once("GET", &proxy.url("/logout"), &[], None);
    assert_eq!(logout.status, 302, "{logout}");
    assert_no_session_cookie(&logout, "the sign-out");
    let login = request_once("GET", &proxy.url("/login"), &[], None);
    assert_eq!(login.status, 302, "{login}");
    assert!(!login.text.contains("type=\"password\""), "{login}");
    assert_no_session_cookie(&login, "the login page");
    assert_workbench(&request_once("GET", &proxy.url(&workbench), &[], None));
    assert_eq!(
        proxy.forwarder.sign_in_attempts(),
        1,
        "one session throughout"
    );

    // Nothing of this opened the instance to requests that come without devbox.
    let direct = Direct::Tcp(instance.port)
        .get(&workbench, &[])
        .expect("an answer");
    assert_eq!(direct.status, 302);
    assert!(
        direct
            .header("location")
            .unwrap_or_default()
            .contains("login"),
        "{:?}",
        direct.headers
    );
    assert_eq!(instance.failed_logins(), 0);
}

#[test]
fn a_wrong_password_is_a_502_after_one_attempt_and_a_changed_one_signs_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut instance = Instance::start(dir.path(), free_ports(1), "first password");
    let proxy = Proxy::start(instance.port);
    let workbench = format!("/?folder={}", instance.workspace());

    proxy.set_password("not the password");
    for path in [&workbench, "/", "/some/api"] {
        let reply = request_once("GET", &proxy.url(path), &[], None);
        let error = reply.assert_error(502, "devbox could not sign in to the instance");
        assert!(error.contains("Incorrect password"), "{error}");
        assert!(!error.contains("not the password"), "{error}");
    }
    match proxy.websocket() {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 502),
        other => panic!("a WebSocket without a session: {other:?}"),
    }
    assert_eq!(proxy.forwarder.sign_in_attempts(), 1, "never tried again");
    assert_eq!(instance.failed_logins(), 1);

    // The right password is tried at once, whatever was refused before.
    proxy.set_password("first password");
    assert_workbench(&request_once("GET", &proxy.url(&workbench), &[], None));
    assert_eq!(proxy.forwarder.sign_in_attempts(), 2);

    // The same instance with another password: the session devbox holds is refused,
    // devbox signs in once more and the request is answered as if nothing happened.
    std::thread::sleep(RENEW_AFTER);
    instance.stop();
    let instance = Instance::start(dir.path(), instance.port, "second password");
    proxy.set_password("second password");
    assert_workbench(&request_once("GET", &proxy.url(&workbench), &[], None));
    assert_eq!(proxy.websocket().expect("a WebSocket signed in"), 101);
    assert_eq!(proxy.forwarder.sign_in_attempts(), 3);
    assert_eq!(instance.failed_logins(), 1, "the first instance's only");
}
