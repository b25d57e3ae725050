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
use crate::identity::{Caller, UserName};
use crate::logs::LogLine;
use crate::metrics::METRICS;

/// Recent lines sent when a client connects.
const BACKLOG_LINES: usize = 200;
/// A send that takes longer than this means the client stopped reading: it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients have nothing to say on a log stream; what they send is read and dropped,
/// so it may not be large.
const CLIENT_MESSAGE_LIMIT: usize = 4096;
/// Close code for an unknown server (application-defined range, like HTTP 404).
const CLOSE_UNKNOWN_SERVER: u16 = 4404;
/// Close code of a stream whose user's access was revoked (RFC 6455's "policy
/// violation").
const CLOSE_POLICY: u16 = 1008;

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
    caller: Caller,
    QueryParams(query): QueryParams<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let revoked = state.sessions.until_revoked(&caller);
    let scope = match caller {
        Caller::Admin => Scope::Everything,
        Caller::User(user) => Scope::OwnedBy(user),
    };
    upgrade
        .max_message_size(CLIENT_MESSAGE_LIMIT)
        .on_upgrade(move |socket| stream(socket, state, scope, query.lines, revoked))
}

/// Streams the logs of one server; an unknown id closes with code 4404 and a reason.
pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
    QueryParams(query): QueryParams<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    match state.find(&caller, &id) {
        Ok(status) => upgrade
            .max_message_size(CLIENT_MESSAGE_LIMIT)
            .on_upgrade(move |socket| {
                let revoked = state.sessions.until_revoked(&caller);
                let scope = Scope::One(status.name, caller.owner().cloned());
                stream(socket, state, scope, query.lines, revoked)
            }),
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

/// Whose lines a stream carries.
enum Scope {
    /// One server; for a user, only while it is still theirs (a server deleted and
    /// made again under the same name for someone else is not).
    One(String, Option<UserName>),
    Everything,
    /// Every server of one user (a user's `/ws/logs`).
    OwnedBy(UserName),
}

impl Scope {
    fn includes(&self, state: &AppState, line: &LogLine) -> bool {
        match self {
            Scope::One(name, user) => {
                *name == line.server_name
                    && user.as_ref().is_none_or(|user| owns(state, user, name))
            }
            Scope::Everything => true,
            Scope::OwnedBy(user) => owns(state, user, &line.server_name),
        }
    }
}

/// Whether server `name` belongs to `user` now.
fn owns(state: &AppState, user: &UserName, name: &str) -> bool {
    state
        .statuses
        .get(name)
        .is_some_and(|status| status.owner.as_ref() == Some(user))
}

/// Sends the backlog, then every new line of `scope`, until the client goes or its
/// access is `revoked` (then with a close frame saying so).
async fn stream(
    mut socket: WebSocket,
    state: AppState,
    scope: Scope,
    lines: usize,
    revoked: impl std::future::Future<Output = ()>,
) {
    let mut revoked = std::pin::pin!(revoked);
    let _client = METRICS.log_streams.client_connected();
    // Subscribe before reading the backlog, so no line falls between the two.
    let mut live = state.logs.subscribe();
    let mut sent_up_to = None;
    for line in backlog(&state, &scope, lines.min(BACKLOG_LINES)) {
        if !send_line(&mut socket, &line).await {
            return;
        }
        sent_up_to = Some(line.timestamp);
    }
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(line) => {
                    let other_server = !scope.includes(&state, &line);
                    // Lines that arrived between subscribing and reading the backlog
                    // were in the backlog already.
                    let already_sent = sent_up_to.is_some_and(|upto| line.timestamp <= upto);
                    if !other_server && !already_sent && !send_line(&mut socket, &line).await {
                        return;
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    METRICS.log_streams.dropped_lines.inc_by(skipped);
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
            () = &mut revoked => {
                let frame = CloseFrame {
                    code: CLOSE_POLICY,
                    reason: Utf8Bytes::from_static("access revoked"),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
        }
    }
}

async fn send_line(socket: &mut WebSocket, line: &LogLine) -> bool {
    send(socket, &LogMessage { kind: "log", line }).await
}

/// The newest lines, oldest first: of one server, of all servers merged by time
/// (bounded in bytes like one server's, however many servers there are), or of one
/// user's servers merged by time.
fn backlog(state: &AppState, scope: &Scope, count: usize) -> Vec<LogLine> {
    match scope {
        Scope::One(name, _) => state.logs.recent(name, count),
        Scope::Everything => state.logs.recent_all(count),
        Scope::OwnedBy(user) => {
            let owned = state
                .statuses
                .filter_map_all(|s| (s.owner.as_ref() == Some(user)).then(|| s.name.clone()));
            let mut lines: Vec<LogLine> = owned
                .iter()
                .flat_map(|name| state.logs.recent(name, count))
                .collect();
            lines.sort_by_key(|line| line.timestamp);
            lines.split_off(lines.len().saturating_sub(count))
        }
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
