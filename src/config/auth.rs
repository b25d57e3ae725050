//! The `auth` section: who may sign in and how, and what a user may have. With nothing
//! set here and no `server.api_token`, devbox needs no credentials (one person on a
//! loopback address) and every caller is the admin.

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::identity::UserName;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Admin tokens besides `server.api_token`, each read once at start from a file
    /// (its first line) or an environment variable, never written in this file.
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub admin_tokens: Vec<TokenSource>,
    /// Users who are admins when they sign in (through a trusted proxy).
    #[serde(deserialize_with = "crate::yaml::null_as_default")]
    pub admins: Vec<String>,
    /// Servers a user may own; a create past it answers 409.
    pub max_servers_per_user: usize,
    /// How long a dashboard or seat-link session lasts.
    pub session_ttl: HumanDuration,
    /// How long a seat link can be opened after it was made.
    pub seat_link_ttl: HumanDuration,
    /// A reverse proxy that signs people in (oauth2-proxy, an institution's SSO) and
    /// names the user in a header devbox believes on the proxy's connections only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_header: Option<TrustedHeader>,
    /// The admin tokens read from `admin_tokens` (and `server.api_token`), at load.
    #[serde(skip)]
    #[schemars(skip)]
    pub resolved_admin_tokens: Vec<Secret>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            admin_tokens: Vec::new(),
            admins: Vec::new(),
            max_servers_per_user: 2,
            session_ttl: HumanDuration::from_secs(12 * 60 * 60),
            seat_link_ttl: HumanDuration::from_secs(7 * 24 * 60 * 60),
            trusted_header: None,
            resolved_admin_tokens: Vec::new(),
        }
    }
}

/// A reverse proxy's identity header, and the connections that may carry it. On any
/// other connection the header is ignored (and logged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustedHeader {
    /// The header that names the user, e.g. `X-Forwarded-User`.
    pub name: String,
    /// A Unix socket devbox listens on for a proxy on this host (mode 0660).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// The group of the socket: the proxy's (default: devbox's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<String>,
    /// For a proxy on another machine: the addresses whose TCP connections may carry
    /// the header. Never a loopback address: every terminal on this host connects from
    /// loopback too.
    #[serde(
        default,
        deserialize_with = "crate::yaml::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub from: Vec<std::net::IpAddr>,
}

impl TrustedHeader {
    /// Problems of this setting, as (field, message).
    fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if axum::http::HeaderName::from_bytes(self.name.as_bytes()).is_err() {
            problems.push((
                "auth.trusted_header.name".into(),
                format!("`{}` is not a header name", self.name),
            ));
        }
        if self.socket.is_none() && self.from.is_empty() {
            problems.push((
                "auth.trusted_header".into(),
                "set `socket` (a proxy on this host) or `from` (the addresses of a proxy on \
                 another machine): the header is believed on no other connection"
                    .into(),
            ));
        }
        for (i, address) in self.from.iter().enumerate() {
            if address.is_loopback() || address.is_unspecified() {
                problems.push((
                    format!("auth.trusted_header.from[{i}]"),
                    format!(
                        "{address} is refused: every participant's terminal on this host \
                         connects from loopback too and could claim to be anyone; a proxy on \
                         this host connects through `socket`"
                    ),
                ));
            }
        }
        problems
    }
}

/// Where a token is read from: `{file: PATH}` or `{env: VARIABLE}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    rename_all = "snake_case",
    try_from = "TokenSourceFields",
    into = "TokenSourceFields"
)]
pub enum TokenSource {
    /// A file; its first line is the token.
    File(PathBuf),
    /// An environment variable of devbox's.
    Env(String),
}

/// [`TokenSource`] as written: a mapping with one key. (YAML libraries read an enum
/// from a mapping, or only from a `!file` tag, as they please; this reads the same in
/// every one.)
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
struct TokenSourceFields {
    /// A file; its first line is the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<PathBuf>,
    /// An environment variable of devbox's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<String>,
}

impl TryFrom<TokenSourceFields> for TokenSource {
    type Error = &'static str;

    fn try_from(fields: TokenSourceFields) -> Result<Self, Self::Error> {
        match (fields.file, fields.env) {
            (Some(file), None) => Ok(Self::File(file)),
            (None, Some(env)) => Ok(Self::Env(env)),
            _ => Err("a token source is either {file: PATH} or {env: VARIABLE}"),
        }
    }
}

impl From<TokenSource> for TokenSourceFields {
    fn from(source: TokenSource) -> Self {
        match source {
            TokenSource::File(file) => Self {
                file: Some(file),
                env: None,
            },
            TokenSource::Env(env) => Self {
                file: None,
                env: Some(env),
            },
        }
    }
}

/// A credential: compared in constant time, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, to send where it is due (a sign-in form, a file only its
    /// user reads).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, in time that does not depend on where they differ.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenSourceError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {0} is empty")]
    EmptyFile(PathBuf),
    #[error("the environment variable {0} named as a token's source is not set or empty")]
    EmptyEnv(String),
    #[error(
        "server.api_token is empty: an empty token would let anyone in who sends none; \
         remove the setting to run without a token, or set a long random one"
    )]
    EmptyToken,
}

impl TokenSource {
    /// Reads the token.
    pub fn read(&self) -> Result<Secret, TokenSourceError> {
        match self {
            TokenSource::File(path) => read_token_file(path).map(Secret),
            TokenSource::Env(name) => std::env::var(name)
                .ok()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .map(Secret)
                .ok_or_else(|| TokenSourceError::EmptyEnv(name.clone())),
        }
    }
}

/// The first line of `path`, trimmed; an empty one is an error.
pub fn read_token_file(path: &std::path::Path) -> Result<String, TokenSourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenSourceError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(TokenSourceError::EmptyFile(path.to_owned()));
    }
    Ok(token.to_owned())
}

impl AuthSettings {
    /// Problems of this section, as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (i, name) in self.admins.iter().enumerate() {
            if let Err(err) = UserName::parse(name) {
                problems.push((format!("auth.admins[{i}]"), err.to_string()));
            }
        }
        if self.session_ttl.get().is_zero() {
            problems.push(("auth.session_ttl".into(), "must be longer than 0s".into()));
        }
        if self.seat_link_ttl.get().is_zero() {
            problems.push(("auth.seat_link_ttl".into(), "must be longer than 0s".into()));
        }
        if let Some(trusted) = &self.trusted_header {
            problems.extend(trusted.problems());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole_and_never_print() {
        let secret = Secret::new("s3cret");
        assert!(secret.matches("s3cret"));
        assert!(!secret.matches("s3cre"));
        assert!(!secret.matches("s3cret "));
        assert!(!secret.matches(""));
        assert_eq!(format!("{secret:?}"), "Secret(…)");
    }

    #[test]
    fn tokens_come_from_files_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  abc  \nignored\n").unwrap();
        assert!(
            TokenSource::File(file.clone())
                .read()
                .unwrap()
                .matches("abc")
        );
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            TokenSource::File(file).read(),
            Err(TokenSourceError::EmptyFile(_))
        ));
        assert!(matches!(
            TokenSource::Env("DEVBOX_TEST_SURELY_UNSET_VARIABLE".into()).read(),
            Err(TokenSourceError::EmptyEnv(_))
        ));
    }

    #[test]
    fn token_sources_are_written_as_one_key_mappings() {
        let sources: Vec<TokenSource> =
            crate::yaml::from_str("[{file: /etc/devbox/token}, {env: TOKEN}]").unwrap();
        assert_eq!(
            sources,
            [
                TokenSource::File("/etc/devbox/token".into()),
                TokenSource::Env("TOKEN".into())
            ]
        );
        for refused in ["[{file: a, env: B}]", "[{}]", "[{path: a}]"] {
            assert!(
                crate::yaml::from_str::<Vec<TokenSource>>(refused).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn admins_must_be_user_names() {
        let settings = AuthSettings {
            admins: vec!["ok".into(), "not ok".into()],
            ..AuthSettings::default()
        };
        let problems = settings.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "auth.admins[1]");
    }
}
