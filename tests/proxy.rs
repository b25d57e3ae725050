//! The reverse proxy: bytes through it equal bytes direct, code-server's static files
//! come from the shared cache after the first answer, WebSockets pass through,
//! unmanaged ports are refused without a connection, stopped servers get a 503 page,
//! redirects and cookies keep the prefix. Beside it, the dashboard's own files: an
//! `ETag` and a `304`, compressed when asked, while proxied answers pass uncompressed.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use common::Devbox;
use tokio_tungstenite::tungstenite;

fn fake_code_server() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_code_server.py")
}

/// A GET (redirects not followed): status, body and `Location`.
fn get(url: &str) -> (u16, Vec<u8>, String) {
    let (status, headers, body) = get_with(url, &[]);
    let location = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, body, location)
}

/// A GET with `headers` (redirects not followed): status, headers and body.
fn get_with(url: &str, headers: &[(&str, &str)]) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().expect("request");
    let body = response
        .body_mut()
        .with_config()
        .limit(50 * 1024 * 1024)
        .read_to_vec()
        .expect("body");
    (response.status().as_u16(), response.headers().clone(), body)
}

/// A GET with `headers`: status, the `Age` header (set only by a cache) and the body.
fn get_cached(url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Vec<u8>) {
    let (status, headers, body) = get_with(url, headers);
    let age = headers
        .get("age")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, age, body)
}

#[test]
fn static_asset_bytes_through_the_proxy_equal_direct() {
    let devbox = Devbox::start();
    devbox.write_spec("ide", "  state: running\n");
    let (_, port) = devbox.wait_running("ide");

    let (status, _, location) = get(&devbox.url(&format!("/vscode/{port}/")));
    assert_eq!(status, 302);
    assert!(
        location.starts_with("./?folder="),
        "code-server's relative redirect passes unchanged: {location}"
    );
    let (status, page, _) = get(&devbox.url(&format!("/vscode/{port}/{}", &location[2..])));
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&page);
    let css = page
        .split('"')
        .find(|s| s.ends_with("workbench.css"))
        .expect("the workbench page links its stylesheet")
        .trim_start_matches("./")
        .to_owned();
    let (status, proxied, _) = get(&devbox.url(&format!("/vscode/{port}/{css}")));
    assert_eq!(status, 200);
    let direct = devbox
        .direct("ide")
        .expect("where ide listens")
        .get(&format!("/{css}"), &[])
        .expect("a direct answer")
        .body;
    assert!(
        direct.len() > 100_000,
        "a large asset: {} bytes",
        direct.len()
    );
    assert!(
        proxied == direct,
        "proxied {} bytes differ from direct {} bytes",
        proxied.len(),
        direct.len()
    );

    // By name too, and the slash-less form redirects keeping the query.
    let (status, by_name, _) = get(&devbox.url(&format!("/s/ide/{css}")));
    assert_eq!(status, 200);
    assert!(by_name == direct);
    let (status, _, location) = get(&devbox.url(&format!("/vscode/{port}?folder=/x")));
    assert_eq!(
        (status, location.as_str()),
        (308, format!("/vscode/{port}/?folder=/x").as_str())
    );
}

#[test]
fn static_files_come_from_the_cache_after_each_servers_first_answer() {
    let devbox = Devbox::start();
    devbox.write_spec("ide-a", "  state: running\n");
    devbox.write_spec("ide-b", "  state: running\n");
    let (_, port_a) = devbox.wait_running("ide-a");
    let (_, port_b) = devbox.wait_running("ide-b");
    let direct_a = devbox.direct("ide-a").expect("where ide-a listens");
    let page = direct_a
        .get("/?folder=/tmp", &[])
        .expect("a direct answer")
        .body;
    let page = String::from_utf8_lossy(&page);
    let script = page
        .split('"')
        .find(|s| s.ends_with("workbench.js") && s.contains("/static/"))
        .expect("the workbench page links its script")
        .trim_start_matches("./")
        .to_owned();
    let brotli = [("accept-encoding", "gzip, deflate, br")];
    let reply = direct_a
        .get(&format!("/{script}"), &brotli)
        .expect("a direct answer");
    assert_eq!(reply.status, 200);
    let direct = reply.body;

    // The first answer comes from the instance; every later one for that server,
    // through either of its prefixes, from devbox's memory (with an `Age`), byte for
    // byte the same. Another server's first answer is its own instance's: what one
    // instance answers is never given to another server's users.
    let first = get_cached(&devbox.url(&format!("/vscode/{port_a}/{script}")), &brotli);
    assert_eq!((first.0, first.1.as_deref()), (200, None), "first answer");
    assert!(
        first.2 == direct,
        "the proxied answer equals the direct one"
    );
    let other = get_cached(&devbox.url(&format!("/vscode/{port_b}/{script}")), &brotli);
    assert_eq!(
        (other.0, other.1.as_deref()),
        (200, None),
        "another server's first answer comes from its own instance"
    );
    for url in [
        devbox.url(&format!("/vscode/{port_a}/{script}")),
        devbox.url(&format!("/vscode/{port_b}/{script}")),
        devbox.url(&format!("/s/ide-b/{script}")),
    ] {
        let (status, age, body) = get_cached(&url, &brotli);
        assert_eq!(status, 200, "{url}");
        assert!(age.is_some(), "{url} is answered from the cache");
        assert!(
            body == direct,
            "{url}: the cached answer equals the direct one"
        );
    }

    // Another encoding is another answer; a hard reload goes to the instance.
    let (_, age, plain) = get_cached(&devbox.url(&format!("/vscode/{port_b}/{script}")), &[]);
    assert_eq!(age, None, "an uncompressed answer is not the brotli one");
    assert!(
        plain.len() > direct.len(),
        "uncompressed: {} bytes",
        plain.len()
    );
    let reload = [
        ("accept-encoding", "gzip, deflate, br"),
        ("cache-control", "no-cache"),
    ];
    let (_, age, body) = get_cached(&devbox.url(&format!("/vscode/{port_b}/{script}")), &reload);
    assert_eq!(age, None, "a hard reload is not answered from the cache");
    assert!(body == direct);

    // Answers that are not build-addressed static files are never kept.
    let health = devbox.url(&format!("/vscode/{port_a}/healthz"));
    assert_eq!(get_cached(&health, &[]).1, None);
    assert_eq!(get_cached(&health, &[]).1, None);
}

#[test]
fn websocket_messages_pass_through_the_proxy() {
    let devbox = Devbox::start_with(fake_code_server(), |_| {});
    devbox.write_spec("echo", "  state: running\n");
    let (_, port) = devbox.wait_running("echo");
    let url = format!(
        "ws://127.0.0.1:{}/vscode/{port}/any/path?x=1",
        devbox.http_port
    );
    let (mut socket, response) = tungstenite::connect(url).expect("WebSocket through the proxy");
    assert_eq!(response.status(), 101);
    for text in ["hello", "second message", &"long ".repeat(20_000)] {
        socket.send(tungstenite::Message::text(text)).expect("send");
        match socket.read().expect("echo") {
            tungstenite::Message::Text(echoed) => assert_eq!(echoed.as_str(), text),
            other => panic!("unexpected message {other:?}"),
        }
    }
    socket
        .send(tungstenite::Message::binary(vec![0u8, 1, 2, 255]))
        .expect("send binary");
    assert_eq!(
        socket.read().expect("echo").into_data().as_ref(),
        [0u8, 1, 2, 255]
    );
    socket.close(None).expect("close");

    // The proxy sets X-Forwarded-* and keeps the browser's Host.
    let (status, headers, _) = get(&devbox.url(&format!("/vscode/{port}/echo-headers")));
    assert_eq!(status, 200);
    let headers: serde_json::Value = serde_json::from_slice(&headers).expect("JSON");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(
        headers["x-forwarded-host"],
        format!("127.0.0.1:{}", devbox.http_port)
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["host"], format!("127.0.0.1:{}", devbox.http_port));
}

#[test]
fn unmanaged_ports_are_refused_without_a_connection_and_stopped_servers_get_503() {
    let devbox = Devbox::start_with(fake_code_server(), |_| {});
    // Something else listens on this host; the proxy must not reach it.
    let bystander = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    bystander.set_nonblocking(true).expect("nonblocking");
    let port = bystander.local_addr().expect("addr").port();
    let (status, body, _) = get(&devbox.url(&format!("/vscode/{port}/")));
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&port.to_string()),
        "{body}"
    );
    match bystander.accept() {
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the proxy connected to an unmanaged port: {other:?}"),
    }
    let (status, _, _) = get(&devbox.url("/s/nobody/"));
    assert_eq!(status, 404);

    let pinned = devbox.port_start + 3;
    devbox.write_spec("sleeper", &format!("  state: stopped\n  port: {pinned}\n"));
    devbox.wait_status("sleeper", "stopped");
    assert_stopped_page(&devbox, pinned, "sleeper");

    // A server without a pinned port gives its port up when it stops; a tab still open
    // on it is told the same.
    devbox.write_spec("napper", "  state: running\n");
    let (_, given_up) = devbox.wait_running("napper");
    devbox.write_spec("napper", "  state: stopped\n");
    devbox.wait_status("napper", "stopped");
    assert_stopped_page(&devbox, given_up, "napper");
}

fn assert_stopped_page(devbox: &Devbox, port: u16, name: &str) {
    let (status, page, _) = get(&devbox.url(&format!("/vscode/{port}/")));
    assert_eq!(status, 503);
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains(&format!("{name} is stopped")) && page.contains("href=\"/\""),
        "{page}"
    );
}

#[test]
fn a_proxied_request_body_streams_to_the_instance() {
    let devbox = Devbox::start_with(fake_code_server(), |_| {});
    devbox.write_spec("sink", "  state: running\n");
    let (_, port) = devbox.wait_running("sink");
    // A raw HTTP/1.1 POST with a chunked body, and a keep-alive second request on the
    // same client connection.
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", devbox.http_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "POST /vscode/{port}/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
         GET /vscode/{port}/bytes/3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).ends_with("xxx") {
        let n = stream.read(&mut buffer).expect("read");
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buffer[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    assert!(answer.contains("fake code-server"), "{answer}");
}

#[test]
fn redirects_and_cookies_work_behind_the_prefix() {
    let devbox = Devbox::start_with(fake_code_server(), |_| {});
    devbox.write_spec("jar", "  state: running\n");
    let (_, port) = devbox.wait_running("jar");
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let response = agent
        .get(&devbox.url(&format!("/vscode/{port}/login")))
        .call()
        .expect("login");
    assert_eq!(response.status().as_u16(), 302);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("location"), format!("/vscode/{port}/home"));
    assert_eq!(
        header("set-cookie"),
        format!("session=abc; Path=/vscode/{port}/; HttpOnly")
    );
    // The browser sends the cookie back on requests under the prefix; it reaches the
    // instance.
    let echoed: serde_json::Value = agent
        .get(&devbox.url(&format!("/vscode/{port}/echo-headers")))
        .header("Cookie", "session=abc")
        .call()
        .expect("echo")
        .body_mut()
        .read_json()
        .expect("json");
    assert_eq!(echoed["cookie"], "session=abc", "{echoed}");
}

/// The value of header `name`, or "" when it is absent.
fn header(headers: &ureq::http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut plain)
        .expect("a gzip stream");
    plain
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut plain)
        .expect("a brotli stream");
    plain
}

#[test]
fn dashboard_files_are_tagged_and_compressed_and_proxied_answers_are_not() {
    let devbox = Devbox::start_with(fake_code_server(), |_| {});
    let ui = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ui");
    for (path, file) in [
        ("/", "index.html"),
        ("/ui/app.js", "app.js"),
        ("/ui/style.css", "style.css"),
        ("/ui/theme.js", "theme.js"),
    ] {
        let source = std::fs::read(ui.join(file)).expect("the dashboard's file");
        let url = devbox.url(path);

        // Without `Accept-Encoding`: the file as it is, tagged, with the site's policy.
        let (status, plain_headers, plain) = get_with(&url, &[]);
        assert_eq!(status, 200, "{path}");
        assert!(plain == source, "{path}: the body is ui/{file}");
        assert_eq!(header(&plain_headers, "content-encoding"), "", "{path}");
        let etag = header(&plain_headers, "etag");
        assert!(
            etag.starts_with("W/\"") && etag.len() > 10,
            "{path}: a weak tag: {etag:?}"
        );
        assert!(
            header(&plain_headers, "content-security-policy").contains("frame-ancestors 'none'"),
            "{path}: {plain_headers:?}"
        );
        assert_eq!(header(&plain_headers, "x-content-type-options"), "nosniff");

        // Compressed as asked, the same file once decoded, under the same tag.
        for (encoding, decode) in [("gzip", gunzip as fn(&[u8]) -> Vec<u8>), ("br", unbrotli)] {
            let (status, headers, body) = get_with(&url, &[("accept-encoding", encoding)]);
            assert_eq!(status, 200, "{path} {encoding}");
            assert_eq!(header(&headers, "content-encoding"), encoding, "{path}");
            assert!(
                header(&headers, "vary")
                    .to_ascii_lowercase()
                    .contains("accept-encoding"),
                "{path}: {headers:?}"
            );
            assert_eq!(header(&headers, "etag"), etag, "{path} {encoding}");
            assert!(
                header(&headers, "content-security-policy").contains("script-src 'self'"),
                "{path} {encoding}: {headers:?}"
            );
            assert!(body.len() < plain.len(), "{path}: {encoding} is smaller");
            assert!(
                decode(&body) == plain,
                "{path}: {encoding} decodes to the file"
            );
        }

        // The browser's copy is current: a 304 without a body, whatever the encoding.
        for extra in [None, Some(("accept-encoding", "gzip, br"))] {
            let mut request = vec![("if-none-match", etag.as_str())];
            request.extend(extra);
            let (status, headers, body) = get_with(&url, &request);
            assert_eq!(status, 304, "{path} {request:?}");
            assert!(body.is_empty(), "{path}: a 304 has no body");
            assert_eq!(header(&headers, "etag"), etag);
        }
        let (status, _, body) = get_with(&url, &[("if-none-match", "W/\"an-older-one\"")]);
        assert_eq!(status, 200, "{path}: another tag gets the file");
        assert!(body == source);
    }

    // devbox compresses its dashboard only: not the API, nor what an instance answers.
    let (status, headers, _) = get_with(&devbox.url("/servers"), &[("accept-encoding", "gzip")]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-encoding"),
        "",
        "the API is not compressed"
    );
    devbox.write_spec("ide", "  state: running\n");
    let (_, port) = devbox.wait_running("ide");
    let (status, headers, body) = get_with(
        &devbox.url(&format!("/vscode/{port}/bytes/100000")),
        &[("accept-encoding", "gzip, br")],
    );
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-encoding"),
        "",
        "a proxied answer passes as the instance sent it: {headers:?}"
    );
    assert!(
        body == vec![b'x'; 100_000],
        "the instance's bytes, unchanged"
    );
}
