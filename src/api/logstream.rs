//! Live logs over WebSocket: `/ws/logs` (every server) and `/ws/logs/{id}` (one).
//!
//! A client first gets the recent lines (a bounded backlog), then live lines as they
//! happen, each as the seed's JSON (`type: "log"`, `server_id`, `server_name`, `level`,
//! `source`, `message`, `timestamp`). Live lines come from one bounded broadcast
//! channel: a client that reads too slowly skips lines (and is told how many) instead
//! of growing memory or slowing the controller, and one that stops reading altogether
//! is dropped.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::extract::{QueryParams, ServerId};
use crate::logs::LogLine;

/// Recent lines sent when a client connects.
const BACKLOG_LINES: usize = 200;
/// A send that takes longer than this means the client stopped reading: it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients have nothing to say on a log stream; what they send is read and dropped,
/// so it may not be large.
const CLIENT_MESSAGE_LIMIT: usize = 4096;
/// Close code for an unknown server (application-defined range, like HTTP 404).
const CLOSE_UNKNOWN_SERVER: u16 = 4404;

#[derive(Serialize)]
struct LogMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    line: &'a LogLine,
}

#[derive(Serialize)]
struct SkippedMessage {
    #[serde(rename = "type")]
    kind: &'static str,
    skipped: u64,
    message: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StreamQuery {
    /// Recent lines sent first (at most 200, the default).
    #[serde(default = "default_backlog")]
    pub lines: usize,
}

fn default_backlog() -> usize {
    BACKLOG_LINES
}

/// Streams the logs of every server.
pub async fn all(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(CLIENT_MESSAGE_LIMIT)
        .on_upgrade(move |socket| stream(socket, state, None, query.lines))
}

/// Streams the logs of one server; an unknown id closes with code 4404 and a reason.
pub async fn one(
    State(state): State<AppState>,
    Path(ServerId { id }): Path<ServerId>,
    QueryParams(query): QueryParams<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    match state.find(&id) {
        Ok(status) => upgrade
            .max_message_size(CLIENT_MESSAGE_LIMIT)
            .on_upgrade(move |socket| stream(socket, state, Some(status.name), query.lines)),
        Err(err) => upgrade.max_message_size(CLIENT_MESSAGE_LIMIT).on_upgrade(
            move |mut socket| async move {
                let frame = CloseFrame {
                    code: CLOSE_UNKNOWN_SERVER,
                    reason: Utf8Bytes::from(err.to_string()),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
            },
        ),
    }
}

async fn stream(mut socket: WebSocket, state: AppState, server: Option<String>, lines: usize) {
    // Subscribe before reading the backlog, so no line falls between the two.
    let mut live = state.logs.subscribe();
    let mut sent_up_to = None;
    for line in backlog(&state, server.as_deref(), lines.min(BACKLOG_LINES)) {
        if !send_line(&mut socket, &line).await {
            return;
        }
        sent_up_to = Some(line.timestamp);
    }
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(line) => {
                    let other_server = server.as_ref().is_some_and(|name| *name != line.server_name);
                    // Lines that arrived between subscribing and reading the backlog
                    // were in the backlog already.
                    let already_sent = sent_up_to.is_some_and(|upto| line.timestamp <= upto);
                    if !other_server && !already_sent && !send_line(&mut socket, &line).await {
                        return;
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    let notice = SkippedMessage {
                        kind: "skipped",
                        skipped,
                        message: format!("skipped {skipped} lines: the client read too slowly"),
                    };
                    if !send(&mut socket, &notice).await {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn send_line(socket: &mut WebSocket, line: &LogLine) -> bool {
    send(socket, &LogMessage { kind: "log", line }).await
}

/// The newest lines, oldest first: of one server, or of all servers merged by time
/// (bounded in bytes like one server's, however many servers there are).
fn backlog(state: &AppState, server: Option<&str>, count: usize) -> Vec<LogLine> {
    match server {
        Some(name) => state.logs.recent(name, count),
        None => state.logs.recent_all(count),
    }
}

/// Sends one JSON message; false when the client is gone or too slow.
async fn send(socket: &mut WebSocket, message: &impl Serialize) -> bool {
    let Ok(text) = serde_json::to_string(message) else {
        return false;
    };
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            // A close frame would wait behind the unread data: the client only sees the
            // connection end. Say why here.
            tracing::info!(
                timeout = ?SEND_TIMEOUT,
                "dropping a log stream client that stopped reading"
            );
            false
        }
    }
}
