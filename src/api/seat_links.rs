//! `POST /servers/{id}/seat-link` and `DELETE /servers/{id}/seat-link` (admins): a link
//! per server that signs its participant in (see [`crate::seats`]), and revoking it.
//!
//! A server without an owner gets one first, `seat-<name>`, written into its spec: the
//! link signs in as the owner, so a seat is always someone's. A template's pool server
//! given a seat link this way leaves the pool (it is claimed by its seat).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header::HOST;
use schemars::JsonSchema;
use serde::Serialize;

use super::AppState;
use super::access;
use super::extract::ServerId;
use super::wait::{self, Verdict};
use crate::http::{ApiError, SEAT_PATH};
use crate::identity::{Caller, MAX_USER_NAME, UserName};

#[derive(Debug, Serialize, JsonSchema)]
pub struct SeatLink {
    /// Opening it signs the browser in as the server's owner and lands in the IDE.
    pub url: String,
    /// RFC 3339.
    pub expires_at: String,
    pub server: String,
    pub owner: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Revoked {
    pub message: String,
    /// Links of the server that could still be opened and no longer can.
    pub revoked: usize,
}

/// Makes a seat link for a server (giving it the owner `seat-<name>` when it had none).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
    headers: HeaderMap,
) -> Result<Json<SeatLink>, ApiError> {
    let status = state.find(&caller, &id)?;
    access::admin_only(&caller, "make seat links")?;
    if !state.config.auth_required() {
        return Err(ApiError::Conflict(
            "seat links sign people in, and devbox has no sign-in configured: set an admin \
             token (server.api_token_file or auth.admin_tokens) first"
                .into(),
        ));
    }
    let owner = status
        .owner
        .clone()
        .unwrap_or_else(|| seat_owner(&status.name));
    if state.config.auth.admins.iter().any(|a| a == owner.as_str()) {
        return Err(ApiError::Conflict(format!(
            "`{}` belongs to `{owner}`, an admin (auth.admins): seat links sign people in as \
             users, never as admins; give the server to a participant first",
            status.name
        )));
    }
    if status.owner.is_none() {
        let name = owner.to_string();
        let spec = state
            .edit(&status.name, move |server| {
                // An unclaimed pool server is claimed by its seat: out of the pool.
                crate::pool::members::release(server);
                server.metadata.owner.get_or_insert(name);
            })
            .await?;
        // Given to someone else since the status was read (a pool server claimed in
        // that moment): a link for them is not what was asked for.
        if spec.owner.as_ref() != Some(&owner) {
            return Err(ApiError::Conflict(format!(
                "`{}` was just given to someone else; ask for a link again",
                status.name
            )));
        }
        // The link opens the IDE as soon as it is handed out: the proxy must know the
        // owner by then.
        wait::converge(
            &state,
            &status.name,
            "to take its owner",
            |seen| match seen {
                Some(seen) if wait::observed(&state, seen, &spec.revision) => Verdict::Done(()),
                _ => Verdict::Wait,
            },
        )
        .await?;
    }
    let link = state
        .seats
        .issue(&status.name, &owner, state.config.auth.seat_link_ttl.get())
        .map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok(Json(SeatLink {
        url: format!("{}{SEAT_PATH}{}", base_url(&state, &headers), link.ticket),
        expires_at: humantime::format_rfc3339_seconds(link.expires_at).to_string(),
        server: status.name,
        owner: owner.to_string(),
    }))
}

/// Revokes every link of a server and signs its owner's browsers out.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(ServerId { id }): Path<ServerId>,
) -> Result<Json<Revoked>, ApiError> {
    let status = state.find(&caller, &id)?;
    access::admin_only(&caller, "revoke seat links")?;
    let revoked = state
        .seats
        .revoke_server(&status.name)
        .map_err(|err| ApiError::Internal(err.to_string()))?;
    if let Some(owner) = &status.owner {
        state.sessions.close_user(owner);
    }
    Ok(Json(Revoked {
        message: format!("seat links of `{}` revoked", status.name),
        revoked,
    }))
}

/// The owner a seat link gives an unowned server: `seat-<name>`, or for a name too
/// long for a user name, its start and a hash of the whole (so two long names that
/// start alike still get two owners).
pub fn seat_owner(server: &str) -> UserName {
    let plain = format!("seat-{server}");
    let name = if plain.len() <= MAX_USER_NAME {
        plain
    } else {
        let hash = crate::digest::sha256_hex(server.as_bytes(), 4);
        format!("seat-{}-{hash}", &server[..MAX_USER_NAME - 14])
    };
    // Server names are letters, digits, `-`, `_`, `.`: always a valid user name.
    UserName::parse(&name).unwrap_or_else(|_| UserName::parse("seat").expect("valid"))
}

/// Where people open devbox: `server.public_url`, else the address this request came
/// to (the host check has made sure it is one of devbox's names), over https when
/// devbox serves it (`server.tls`).
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.server.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("127.0.0.1:{}", state.config.server.default_port));
    let scheme = if state.config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_owners_are_valid_user_names_and_distinct() {
        assert_eq!(seat_owner("ada").as_str(), "seat-ada");
        let long_a = format!("{}a", "x".repeat(62));
        let long_b = format!("{}b", "x".repeat(62));
        let (a, b) = (seat_owner(&long_a), seat_owner(&long_b));
        assert!(a.as_str().len() <= MAX_USER_NAME, "{a}");
        assert_ne!(a, b);
    }
}
