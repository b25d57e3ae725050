//! devbox serving HTTPS itself (`server.tls`), with a private CA and a server
//! certificate made by the test (`common::pki`): what curl, the CLI and WebSocket
//! clients that trust the CA get (the API, the dashboard, the IDE through the proxy and
//! its WebSocket, the log stream, seat links and IDE origins, `Secure` cookies), what
//! clients that do not trust it get (a clear refusal), what plain-HTTP and silent
//! clients get (a clear 400; nothing held), and what `serve` says of certificate files
//! it cannot use. The browser's view is in tests/browser.rs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite;

use common::pki::{Pki, tls_yaml};
use common::seats::{Participant, seat_link};
use common::{Devbox, Options, WsClient, wait_for};

const TOKEN: &str = "tls-T0ken-for-tests";

fn fake_code_server() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_code_server.py")
}

/// A devbox serving HTTPS with `pki`'s certificate; `server` is YAML merged into its
/// `server` section (indented by four spaces), `specs` its servers (name, spec body).
fn https_devbox(
    pki: &Pki,
    server: &str,
    code_server: Option<PathBuf>,
    specs: &[(&str, &str)],
) -> Devbox {
    let devbox = Devbox::start_opts(
        Options {
            config: format!("server:\n  tls: {}\n{server}", pki.tls_yaml()),
            code_server,
            tls_ca: Some(pki.ca()),
            ..Options::default()
        },
        |_| {},
    );
    for (name, body) in specs {
        devbox.write_spec(name, body);
    }
    devbox
}

/// Waits until server `name` runs, asking as the admin; its port.
fn wait_running_as_admin(devbox: &Devbox, name: &str) -> u16 {
    let bearer = format!("Bearer {TOKEN}");
    wait_for(
        &format!("{name} to run\n{}", devbox.log_tail()),
        common::STARTUP,
        || {
            let reply = devbox.call(
                "GET",
                &format!("/servers/{name}"),
                &[("Authorization", bearer.as_str())],
                None,
            );
            let server = (reply.status == 200).then(|| reply.json())?;
            let port = server["port"]
                .as_u64()
                .filter(|_| server["status"] == "running")?;
            u16::try_from(port).ok()
        },
    )
}

/// `curl -sS ARGS`: its output, with `-w` given by the caller when it wants the status.
fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .expect("run curl")
}

/// `curl --cacert CA -sS -w '\n%{http_code}' ARGS`: (status, body).
fn curl_trusting(ca: &Path, args: &[&str]) -> (u16, String) {
    let ca = ca.to_str().expect("UTF-8 path");
    let output = curl(&[&["--cacert", ca, "-w", "\n%{http_code}"], args].concat());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl {args:?}: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (body, status) = stdout.rsplit_once('\n').expect("status line");
    (status.parse().expect("status"), body.to_owned())
}

/// A TLS client configuration trusting the CA certificates in `ca` only.
fn client_tls(ca: &Path) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ca).expect("CA file");
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            &pem,
        )
    {
        roots
            .add(certificate.expect("PEM"))
            .expect("CA certificate");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(devbox::http::ring_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Opens `url` (`wss://host:port/path`, connecting to 127.0.0.1 whatever the host)
/// as a WebSocket with `headers`, trusting `ca`: the socket, or the status of the
/// refused upgrade.
fn wss(ca: &Path, url: &str, headers: &[(&str, &str)]) -> Result<WsClient, u16> {
    let port = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .expect("a port in the URL");
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(url).expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    let connector = tungstenite::Connector::Rustls(client_tls(ca));
    match tungstenite::client_tls_with_config(request, stream, None, Some(connector)) {
        Ok((socket, response)) => {
            assert_eq!(response.status().as_u16(), 101);
            Ok(socket)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(err) => panic!("WebSocket {url}: {err}"),
    }
}

/// Whether `socket` is still open after `quiet` without a message: neither closed nor
/// broken.
fn still_open(socket: &mut WsClient, quiet: Duration) -> bool {
    if let tungstenite::stream::MaybeTlsStream::Rustls(tls) = socket.get_ref() {
        tls.get_ref()
            .set_read_timeout(Some(quiet))
            .expect("timeout");
    }
    match socket.read() {
        Ok(tungstenite::Message::Close(_)) => false,
        Ok(_) => true,
        Err(tungstenite::Error::Io(err)) => matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        Err(_) => false,
    }
}

/// The `Set-Cookie` of devbox's session in `reply`, which must be `Secure`.
fn secure_session_cookie(set_cookie: Option<&str>) -> String {
    let set_cookie = set_cookie.expect("a session cookie");
    for attribute in ["Secure", "HttpOnly", "Path=/"] {
        assert!(
            set_cookie.split("; ").any(|part| part == attribute),
            "the session cookie has {attribute}: {set_cookie}"
        );
    }
    set_cookie.split(';').next().expect("cookie").to_owned()
}

#[test]
fn over_https_the_api_the_dashboard_the_ide_and_the_log_stream_answer_clients_that_trust_the_ca() {
    let pki = Pki::new();
    let devbox = https_devbox(
        &pki,
        &format!("  api_token: \"{TOKEN}\"\n"),
        None,
        &[("ada", "  state: running\n")],
    );
    let base = format!("https://localhost:{}", devbox.http_port);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let port = wait_running_as_admin(&devbox, "ada");

    // curl with the CA: the dashboard, /health, the API.
    let (status, page) = curl_trusting(&pki.ca(), &[&format!("{base}/")]);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<title>devbox</title>"), "{page}");
    let (status, health) = curl_trusting(&pki.ca(), &[&format!("{base}/health")]);
    assert_eq!(status, 200, "{health}");
    let (status, listed) = curl_trusting(&pki.ca(), &["-H", &bearer, &format!("{base}/servers")]);
    assert_eq!(status, 200, "{listed}");
    let listed: Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed[0]["slug"], "ada", "{listed}");
    // 127.0.0.1 is in the certificate too.
    let (status, _) = curl_trusting(
        &pki.ca(),
        &[&format!("https://127.0.0.1:{}/health", devbox.http_port)],
    );
    assert_eq!(status, 200);

    // curl without the CA refuses the certificate (60: peer certificate cannot be
    // authenticated with known CA certificates).
    let untrusting = curl(&[&format!("{base}/health")]);
    assert_eq!(untrusting.status.code(), Some(60), "{untrusting:?}");

    // Signing in over https gives a Secure cookie, which opens the IDE through the
    // proxy: code-server's workbench page.
    let login = devbox.login(TOKEN);
    assert_eq!(login.status, 200, "{login}");
    let cookie = secure_session_cookie(login.header("set-cookie"));
    let admin = Participant {
        devbox: &devbox,
        cookie: cookie.clone(),
    };
    let ide = admin.call("GET", &format!("/vscode/{port}/"), None);
    assert_eq!(ide.status, 200, "{ide}");
    assert!(ide.text.contains("workbench"), "{}", ide.text);

    // The IDE's WebSocket (to the real code-server through the proxy) and the log
    // stream, over WSS.
    let ide_socket = format!(
        "wss://localhost:{}/vscode/{port}/?reconnectionToken={}&reconnection=false&skipWebSocketFrames=false",
        devbox.http_port,
        uuid::Uuid::new_v4()
    );
    let mut ide_socket =
        wss(&pki.ca(), &ide_socket, &[("Cookie", &cookie)]).expect("the IDE's WebSocket over WSS");
    assert!(
        still_open(&mut ide_socket, Duration::from_millis(500)),
        "the IDE's WebSocket stays open"
    );
    let logs_url = format!("wss://localhost:{}/ws/logs/ada?lines=5", devbox.http_port);
    let mut logs = wss(&pki.ca(), &logs_url, &[("Cookie", &cookie)]).expect("the log stream");
    let first = logs.read().expect("a log message");
    let first: Value = serde_json::from_str(first.to_text().expect("text")).expect("JSON");
    assert_eq!(first["type"], "log", "{first}");
    // Without credentials the WebSocket is refused, as over plain HTTP.
    assert_eq!(wss(&pki.ca(), &logs_url, &[]).err(), Some(401));

    // `devbox logs -f` over WSS, trusting the CA through --cacert.
    let mut follow = devbox
        .command()
        .args(["--server", &base, "--cacert"])
        .arg(pki.ca())
        .args(["--api-token", TOKEN, "logs", "ada", "-n", "3", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("devbox logs -f");
    let mut stdout = follow.stdout.take().expect("stdout");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = [0u8; 64];
        let read = stdout.read(&mut first).unwrap_or(0);
        let _ = sender.send(String::from_utf8_lossy(&first[..read]).into_owned());
    });
    let printed = lines.recv_timeout(Duration::from_secs(60));
    let _ = follow.kill();
    let output = follow.wait_with_output().expect("devbox logs -f ends");
    let printed = printed.unwrap_or_else(|_| {
        panic!(
            "devbox logs -f printed nothing: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(printed.starts_with('['), "a log line: {printed}");
}

#[test]
fn the_cli_trusts_a_private_ca_given_with_cacert_and_says_so_when_the_certificate_is_untrusted() {
    let pki = Pki::new();
    let devbox = https_devbox(
        &pki,
        &format!("  api_token: \"{TOKEN}\"\n"),
        Some(fake_code_server()),
        &[("ada", "  state: stopped\n")],
    );
    let bearer = format!("Bearer {TOKEN}");
    wait_for("ada to be listed", common::STARTUP, || {
        let reply = devbox.call(
            "GET",
            "/servers/ada",
            &[("Authorization", bearer.as_str())],
            None,
        );
        (reply.status == 200).then_some(())
    });
    let localhost = format!("https://localhost:{}", devbox.http_port);
    let run = |server: &str, extra: &[&str], env: &[(&str, &Path)]| {
        let output = devbox
            .command()
            .args(["--server", server, "--api-token", TOKEN])
            .args(extra)
            .env_remove("DEVBOX_CACERT")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("get")
            .output()
            .expect("devbox get");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let ca = pki.ca();
    let ca_arg = ca.to_str().expect("UTF-8 path");

    for (server, extra, env) in [
        (localhost.as_str(), vec!["--cacert", ca_arg], vec![]),
        (
            localhost.as_str(),
            vec![],
            vec![("DEVBOX_CACERT", ca.as_path())],
        ),
        (
            &format!("https://127.0.0.1:{}/", devbox.http_port),
            vec!["--cacert", ca_arg],
            vec![],
        ),
    ] {
        let (ok, stdout, stderr) = run(server, &extra, &env);
        assert!(ok, "devbox --server {server} {extra:?} get: {stderr}");
        assert!(
            stdout.lines().any(|line| line.starts_with("ada ")),
            "{stdout}"
        );
    }

    // Without the CA: the public CAs do not know it, and the message says what to do.
    let (ok, _, stderr) = run(&localhost, &[], &[]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "the TLS certificate of {localhost} is not trusted"
        )) && stderr.contains("--cacert FILE")
            && stderr.contains("DEVBOX_CACERT"),
        "{stderr}"
    );
    // With another CA: that CA is named.
    let other = pki.other_ca();
    let (ok, _, stderr) = run(
        &localhost,
        &["--cacert", other.to_str().expect("UTF-8 path")],
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains(&format!("no CA in --cacert {} signed it", other.display())),
        "{stderr}"
    );
    // A file that holds no certificate, and one that does not exist.
    let (ok, _, stderr) = run(
        &localhost,
        &["--cacert", pki.key().to_str().expect("UTF-8 path")],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
    let (ok, _, stderr) = run(&localhost, &["--cacert", "/nonexistent/ca.pem"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot read --cacert /nonexistent/ca.pem"),
        "{stderr}"
    );
    // http:// to the https port: devbox's plain-text answer is shown.
    let (ok, _, stderr) = run(&format!("http://localhost:{}", devbox.http_port), &[], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("HTTP 400") && stderr.contains("devbox speaks HTTPS on this port"),
        "{stderr}"
    );

    // `seat-links` without --server finds this devbox at https://localhost:<port>.
    let output = devbox
        .command()
        .arg("--cacert")
        .arg(&ca)
        .arg("seat-links")
        .output()
        .expect("devbox seat-links");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("{localhost}/seat/")), "{stdout}");
}

#[test]
fn plain_http_and_silent_clients_on_the_https_port_hold_nothing() {
    let pki = Pki::new();
    let mut devbox = https_devbox(
        &pki,
        "  header_read_timeout: 1s\n",
        Some(fake_code_server()),
        &[("echo", "  state: running\n")],
    );
    let (_, port) = devbox.wait_running("echo");
    let base = format!("https://localhost:{}", devbox.http_port);

    // Clients that connect and say nothing do not stop others from being served.
    let silent: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(("127.0.0.1", devbox.http_port)).expect("connect"))
        .collect();
    let (status, _) = curl_trusting(&pki.ca(), &[&format!("{base}/health")]);
    assert_eq!(status, 200);

    // Plain HTTP gets a plain answer saying what to do.
    let output = curl(&[
        "-w",
        "\n%{http_code}",
        &format!("http://localhost:{}/health", devbox.http_port),
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        text.starts_with(
            "devbox speaks HTTPS on this port: open the same address with https:// instead of http://"
        ) && text.ends_with("\n400"),
        "{text}"
    );
    // So does a request with a body, and one that never finishes its headers is cut off.
    let mut posting = TcpStream::connect(("127.0.0.1", devbox.http_port)).expect("connect");
    posting
        .write_all(b"POST /servers HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        .expect("send");
    let mut answer = String::new();
    posting.read_to_string(&mut answer).expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    // A broken TLS hello is dropped.
    let mut broken = TcpStream::connect(("127.0.0.1", devbox.http_port)).expect("connect");
    broken
        .write_all(b"\x16\x03\x01\x00\x05garbage")
        .expect("send");
    broken
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = broken.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1"),
        "no HTTP answer"
    );

    // Every silent client is let go (after server.header_read_timeout).
    for mut client in silent {
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        match client.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("a silent client was sent something"),
            Err(err) => assert!(
                err.kind() == std::io::ErrorKind::ConnectionReset,
                "a silent client is still connected: {err}"
            ),
        }
    }

    // The proxy tells the instance the page is https, and WebSockets pass over WSS.
    let echoed = devbox.get(&format!("/vscode/{port}/echo-headers"));
    assert_eq!(echoed.status, 200, "{echoed}");
    let headers = echoed.json();
    assert_eq!(headers["x-forwarded-proto"], "https", "{headers}");
    assert_eq!(
        headers["host"],
        format!("localhost:{}", devbox.http_port),
        "{headers}"
    );
    let mut socket = wss(
        &pki.ca(),
        &format!(
            "wss://localhost:{}/vscode/{port}/any/path",
            devbox.http_port
        ),
        &[],
    )
    .expect("a WebSocket through the proxy");
    socket
        .send(tungstenite::Message::text("over wss"))
        .expect("send");
    assert_eq!(
        socket.read().expect("echo").to_text().expect("text"),
        "over wss"
    );

    // An https page of devbox's own host may change things; an http page of it may
    // not (it is another origin than devbox's https one).
    let create = |origin: &str| {
        devbox.call(
            "POST",
            "/servers",
            &[("Origin", origin), ("Content-Type", "application/json")],
            Some(br#"{"name": "from-a-page"}"#),
        )
    };
    create(&format!("http://localhost:{}", devbox.http_port))
        .assert_error(403, "cross-site request refused");
    let created = create(&format!("https://localhost:{}", devbox.http_port));
    assert_eq!(created.status, 201, "{created}");

    // With silent clients connected, devbox still stops at once when asked.
    let _silent: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(("127.0.0.1", devbox.http_port)).expect("connect"))
        .collect();
    devbox.terminate();
    assert!(
        devbox.log().contains("devbox stopped"),
        "{}",
        devbox.log_tail()
    );
}

#[test]
fn ide_origins_and_seat_links_work_over_https_with_secure_cookies() {
    let pki = Pki::new();
    let devbox = https_devbox(
        &pki,
        &format!(
            "  api_token: \"{TOKEN}\"\n  public_url: \"https://devbox.localhost:{}\"\n  ide_subdomains: true\n",
            common::HTTP_PORT
        ),
        None,
        &[("ada", "  state: running\n")],
    );
    wait_running_as_admin(&devbox, "ada");
    let public = format!("https://devbox.localhost:{}", devbox.http_port);
    let (_, link) = seat_link(&devbox, TOKEN, "ada");
    let url = link["url"].as_str().expect("url");
    assert!(url.starts_with(&format!("{public}/seat/")), "{url}");

    // A browser's way, with curl's cookie jar: the link signs in, /s/ada/ sends on to
    // the IDE's own origin with a ticket, which sets the IDE's cookie and lands in
    // code-server's workbench.
    let jar = tempfile::NamedTempFile::new().expect("cookie jar");
    let jar = jar.path().to_str().expect("UTF-8 path");
    let (status, page) = curl_trusting(&pki.ca(), &["-c", jar, "-b", jar, url]);
    assert_eq!(status, 200, "{page}");
    let ca = pki.ca();
    let output = curl(&[
        "--cacert",
        ca.to_str().expect("UTF-8 path"),
        "-L",
        "-c",
        jar,
        "-b",
        jar,
        "-w",
        "\n%{http_code} %{url_effective}",
        &format!("{public}/s/ada/"),
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, last) = text.rsplit_once('\n').expect("status line");
    let ide_origin = format!("https://ada.devbox.localhost:{}/", devbox.http_port);
    assert!(
        last.starts_with(&format!("200 {ide_origin}")),
        "{last}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(body.contains("workbench"), "{body}");

    // Both cookies are Secure and HttpOnly, each of its own host (curl's jar:
    // `#HttpOnly_<domain> <subdomains> <path> <secure> <expiry> <name> <value>`).
    let jar_text = std::fs::read_to_string(jar).expect("cookie jar");
    let cookie = |name: &str| -> Vec<String> {
        jar_text
            .lines()
            .map(|line| line.split('\t').map(str::to_owned).collect::<Vec<_>>())
            .find(|fields| fields.len() == 7 && fields[5] == name)
            .unwrap_or_else(|| panic!("no {name} cookie in {jar_text}"))
    };
    let session = cookie("devbox_session");
    assert_eq!(session[0], "#HttpOnly_devbox.localhost", "{session:?}");
    assert_eq!(
        session[3], "TRUE",
        "the session cookie is Secure: {session:?}"
    );
    let ide_cookie = cookie("devbox_ide");
    assert_eq!(
        ide_cookie[0], "#HttpOnly_ada.devbox.localhost",
        "{ide_cookie:?}"
    );
    assert_eq!(
        ide_cookie[3], "TRUE",
        "the IDE's cookie is Secure: {ide_cookie:?}"
    );

    // The IDE's WebSocket on its own origin, over WSS with the IDE's cookie.
    let socket_url = format!(
        "wss://ada.devbox.localhost:{}/?reconnectionToken={}&reconnection=false&skipWebSocketFrames=false",
        devbox.http_port,
        uuid::Uuid::new_v4()
    );
    let ide_cookie = format!("devbox_ide={}", ide_cookie[6]);
    let mut socket = wss(&ca, &socket_url, &[("Cookie", &ide_cookie)])
        .expect("the IDE's WebSocket on its origin");
    assert!(still_open(&mut socket, Duration::from_millis(500)));
}

/// A `devbox` command with `config`, and specs and state in `dir`.
fn devbox_in(dir: &Path, config: &Path) -> Command {
    let mut command = Command::new(common::devbox_bin());
    command
        .arg("--config")
        .arg(config)
        .arg("--specs")
        .arg(dir.join("specs"))
        .arg("--state-dir")
        .arg(dir.join("state"));
    command
}

/// `devbox serve` with `server.tls` set to `tls` (and `extra` in `server`): what it
/// says as it refuses to start.
fn refused_start(tls: &str, extra: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("devbox.yaml");
    let port = common::free_ports(1);
    std::fs::write(
        &config,
        format!("server:\n  default_port: {port}\n  tls: {tls}\n{extra}"),
    )
    .expect("write config");
    let mut child = devbox_in(dir.path(), &config)
        .arg("serve")
        .env_remove("DEVBOX_SERVER_PORT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("devbox serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("devbox serve started with server.tls: {tls}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("devbox serve output");
    assert!(!output.status.success());
    assert!(
        !dir.path().join("state/servers").exists(),
        "nothing was started"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_refuses_certificate_files_it_cannot_use_naming_the_field_and_the_file() {
    let pki = Pki::new();
    let missing = pki.dir.path().join("missing.pem");
    let said = refused_start(&tls_yaml(&missing, &pki.key()), "");
    assert!(
        said.contains(&format!(
            "server.tls.cert: cannot read {}",
            missing.display()
        )),
        "{said}"
    );
    let said = refused_start(&tls_yaml(&pki.cert(), &missing), "");
    assert!(
        said.contains(&format!(
            "server.tls.key: cannot read {}",
            missing.display()
        )),
        "{said}"
    );
    // The key file in place of the certificate, and the certificate in place of the key.
    let said = refused_start(&tls_yaml(&pki.key(), &pki.key()), "");
    assert!(
        said.contains(&format!(
            "server.tls.cert: {} holds no PEM certificate",
            pki.key().display()
        )),
        "{said}"
    );
    let said = refused_start(&tls_yaml(&pki.cert(), &pki.cert()), "");
    assert!(
        said.contains(&format!(
            "server.tls.key: {} holds no usable PEM private key",
            pki.cert().display()
        )),
        "{said}"
    );
    let said = refused_start(&tls_yaml(&pki.cert(), &pki.stray_key()), "");
    assert!(
        said.contains(&format!(
            "server.tls.key: {} is not the key of the certificate in server.tls.cert ({})",
            pki.stray_key().display(),
            pki.cert().display()
        )),
        "{said}"
    );
    // doctor says the same before anyone starts devbox, and passes a pair that fits.
    let doctor = |tls: &str| {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("devbox.yaml");
        std::fs::write(&config, format!("server:\n  tls: {tls}\n")).expect("write config");
        let output = devbox_in(dir.path(), &config)
            .arg("doctor")
            .env("DEVBOX_CODE_SERVER", common::code_server())
            .output()
            .expect("devbox doctor");
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.success(), said)
    };
    let (passed, said) = doctor(&tls_yaml(&pki.cert(), &pki.stray_key()));
    assert!(!passed, "{said}");
    assert!(
        said.contains("FAIL TLS: server.tls.key:") && said.contains("is not the key of"),
        "{said}"
    );
    let (_, said) = doctor(&pki.tls_yaml());
    assert!(
        said.contains(&format!(
            "ok   TLS certificate {} and key {} belong together",
            pki.cert().display(),
            pki.key().display()
        )),
        "{said}"
    );
    // An http public URL cannot go with devbox's own https.
    let said = refused_start(
        &pki.tls_yaml(),
        "  public_url: \"http://devbox.example.org\"\n",
    );
    assert!(
        said.contains("server.public_url") && said.contains("is not an https:// URL"),
        "{said}"
    );
}
