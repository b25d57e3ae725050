//! Live logs over WebSocket: a client connected to `/ws/logs/<id>` sees the server's
//! controller events and code-server's own output, in order, as the server starts.

mod common;

use std::time::{Duration, Instant};

use common::Devbox;
use serde_json::Value;
use tokio_tungstenite::tungstenite;

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn connect(devbox: &Devbox, path: &str) -> Socket {
    let url = format!("ws://127.0.0.1:{}{path}", devbox.http_port);
    let (socket, _) = tungstenite::connect(url).expect("connect");
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
    }
    socket
}

/// Reads messages until `done` says so (or the deadline passes); returns them all.
fn read_until(
    socket: &mut Socket,
    deadline: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    let mut messages = Vec::new();
    while !done(&messages) {
        assert!(start.elapsed() < deadline, "timed out; got {messages:#?}");
        match socket.read().expect("read") {
            tungstenite::Message::Text(text) => {
                messages.push(serde_json::from_str(text.as_str()).expect("JSON"))
            }
            tungstenite::Message::Close(frame) => panic!("closed: {frame:?}; got {messages:#?}"),
            _ => {}
        }
    }
    messages
}

fn index_of(messages: &[Value], source: &str, needle: &str) -> Option<usize> {
    messages.iter().position(|m| {
        m["source"] == source && m["message"].as_str().is_some_and(|t| t.contains(needle))
    })
}

#[test]
fn a_server_start_streams_events_and_output_in_order() {
    let devbox = Devbox::start();
    devbox.write_spec("talker", "  state: stopped\n");
    let server = common::wait_for("talker to be listed", Duration::from_secs(20), || {
        devbox.server("talker")
    });
    let id = server["id"].as_str().expect("id").to_owned();

    let mut socket = connect(&devbox, &format!("/ws/logs/{id}"));
    let starter = {
        let url = devbox.url(&format!("/servers/{id}/start"));
        std::thread::spawn(move || ureq::post(&url).send_empty().map(|r| r.status().as_u16()))
    };
    let messages = read_until(&mut socket, Duration::from_secs(60), |m| {
        index_of(m, "system", "started: pid").is_some()
            && index_of(m, "server", "HTTP server listening").is_some()
    });
    assert_eq!(starter.join().expect("join").expect("start"), 200);

    let provisioning = index_of(&messages, "system", "provisioning").expect("provisioning event");
    let listening =
        index_of(&messages, "server", "HTTP server listening").expect("code-server output");
    let started = index_of(&messages, "system", "started: pid").expect("started event");
    assert!(provisioning < listening, "{messages:#?}");
    assert!(provisioning < started, "{messages:#?}");
    for message in &messages {
        assert_eq!(message["type"], "log");
        assert_eq!(message["server_id"], id.as_str());
        assert_eq!(message["server_name"], "talker");
        assert!(
            ["INFO", "WARN", "ERROR"].contains(&message["level"].as_str().unwrap_or("")),
            "{message}"
        );
        let timestamp = message["timestamp"].as_str().unwrap_or_default();
        assert!(
            humantime::parse_rfc3339(timestamp).is_ok(),
            "RFC 3339 timestamp: {timestamp}"
        );
    }

    // A client that connects later first gets the recent lines.
    let mut late = connect(&devbox, &format!("/ws/logs/{id}?lines=5"));
    let backlog = read_until(&mut late, Duration::from_secs(10), |m| m.len() >= 5);
    let time = |m: &Value| {
        humantime::parse_rfc3339(m["timestamp"].as_str().unwrap_or_default()).expect("timestamp")
    };
    let first_event = time(&messages[0]);
    assert!(
        backlog.windows(2).all(|w| time(&w[0]) <= time(&w[1])),
        "oldest first: {backlog:#?}"
    );
    assert!(
        time(&backlog[0]) > first_event,
        "the newest lines, not the oldest: {backlog:#?}"
    );
    assert!(backlog.iter().all(|m| m["server_name"] == "talker"));
}

#[test]
fn the_all_servers_stream_mixes_servers_and_unknown_ids_close_with_a_reason() {
    let devbox = Devbox::start();
    let mut all = connect(&devbox, "/ws/logs");
    devbox.write_spec("one", "  state: running\n");
    devbox.write_spec("two", "  state: running\n");
    let messages = read_until(&mut all, Duration::from_secs(60), |m| {
        ["one", "two"].iter().all(|name| {
            m.iter().any(|x| {
                x["server_name"] == *name
                    && x["message"]
                        .as_str()
                        .is_some_and(|t| t.contains("started: pid"))
            })
        })
    });
    assert!(messages.iter().all(|m| m["type"] == "log"));

    let mut unknown = connect(&devbox, "/ws/logs/no-such-server");
    match unknown.read() {
        Ok(tungstenite::Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 4404);
            assert!(frame.reason.contains("no-such-server"), "{}", frame.reason);
        }
        other => panic!("expected a close frame with a reason, got {other:?}"),
    }
}
