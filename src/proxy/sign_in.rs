//! Signing in to instances that ask for a password ([`crate::instance_auth`]: an
//! instance on another machine), on the user's behalf, and keeping that session to the
//! proxy.
//!
//! code-server's password sign-in is `POST /login` with the form `password=…`; it
//! answers `302 Found` with `Set-Cookie: code-server-session=<value>` (a
//! `code-server-session-<suffix>` with `--cookie-suffix`), or `200` with the login
//! page and its error (`Incorrect password`, or its rate limit: two failed attempts a
//! minute and twelve an hour; a good password is never counted but is refused once the
//! limit is reached). Signed out, it answers the workbench's page and a port's root
//! with a redirect to its login page (`./login`, `./../login?to=…`), every other
//! request with `401`, and a WebSocket handshake with `401` too.
//!
//! The proxy signs in on the first request to an instance (concurrent first requests
//! wait for one sign-in), keeps the session per server and instance, adds its cookie to
//! every request it sends there, and signs in again once when the instance answers as
//! signed out, replaying the request when it has no body or a small one. The browser
//! never sees the password or the cookie: a `code-server-session*` cookie it sends is
//! dropped (nobody brings a session of their own), the instance's `Set-Cookie` of one
//! is removed, and its login page never reaches the browser (a 502 says why instead).
//! A refused sign-in is not tried again with the same password for [`REFUSAL_PAUSE`],
//! so the proxy never spends the instance's rate limit in a loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Request, Response, StatusCode, request};
use http_body::Body as _;
use http_body_util::{BodyExt as _, Limited};
use tokio::sync::Mutex as AsyncMutex;

use super::backend::{BackendError, Backends};
use crate::config::Secret;
use crate::endpoint::Endpoint;
use crate::instance_auth::InstancePassword;

/// The name of code-server's session cookie; with `--cookie-suffix`, this and `-<suffix>`.
pub const SESSION_COOKIE: &str = "code-server-session";
/// How long a refused password is not tried again. code-server's limit refills two
/// failed attempts a minute, so one a minute never locks devbox out, while a mistake
/// that mends itself (the instance not yet the one the password is for) is retried.
pub const REFUSAL_PAUSE: Duration = Duration::from_secs(60);
/// A session younger than this that the instance answers as signed out is not renewed:
/// a sign-in cannot mend it, and a participant's app behind code-server's port
/// forwarding that answers 401 does not cost a sign-in per request.
const RENEW_AFTER: Duration = Duration::from_secs(2);
/// The sign-in's whole exchange (code-server hashes the password with argon2 first).
const SIGN_IN_WITHIN: Duration = Duration::from_secs(30);
/// Request bodies up to this size are kept to send again after a new sign-in; larger
/// ones, and those of unknown length, stream through once.
const REPLAYABLE_BODY_MAX: u64 = 64 * 1024;
/// The login page is read up to this size for its error.
const LOGIN_PAGE_MAX: usize = 256 * 1024;
/// A server's sign-in state unused this long is forgotten (a new request signs in again).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// An instance devbox signs in to: its server and password (with the instance's tag).
#[derive(Debug, Clone)]
pub struct Account<'a> {
    pub server: &'a str,
    pub password: InstancePassword,
}

/// A session devbox holds with an instance: the cookie (`name=value`) to send.
#[derive(Clone)]
pub struct Session {
    cookie: HeaderValue,
    signed_in_at: Instant,
    /// Which sign-in made it: requests refused with one session renew it only once.
    number: u64,
}

impl Session {
    pub fn cookie(&self) -> &HeaderValue {
        &self.cookie
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SignInError {
    #[error(
        "devbox could not sign in to the instance of server `{server}`: it refused devbox's password ({said}); devbox tries again in {}s",
        REFUSAL_PAUSE.as_secs()
    )]
    Refused { server: String, said: String },
    #[error(
        "devbox could not sign in to the instance of server `{server}`: it answered {status} without a session"
    )]
    NoSession { server: String, status: StatusCode },
    #[error("devbox could not sign in to the instance of server `{server}`: {reason}")]
    Unreachable { server: String, reason: String },
    #[error(
        "devbox could not sign in to the instance of server `{server}`: no answer within {}s",
        SIGN_IN_WITHIN.as_secs()
    )]
    Timeout { server: String },
    #[error(
        "devbox signed in to the instance of server `{server}`, but the instance still asks to sign in"
    )]
    StillSignedOut { server: String },
    #[error(
        "the instance of server `{server}` had ended devbox's session and devbox signed in again: send the request again"
    )]
    SignedInAgain { server: String },
}

/// Why a request with a session did not get an answer to pass on.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    SignIn(#[from] SignInError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot read the request's body: {0}")]
    Body(String),
}

/// The sessions held with instances, by server. Cloning shares them (and the
/// connections they are made over).
#[derive(Clone)]
pub struct SignIns {
    backends: Backends,
    /// One slot per server, each behind its own async lock: a sign-in holds that lock
    /// over its request, so requests to that instance wait for it (and use its
    /// session), and other servers' requests do not. The map's own lock is held only
    /// to find or add a slot.
    slots: Arc<Mutex<HashMap<String, Arc<AsyncMutex<Slot>>>>>,
    next_number: Arc<AtomicU64>,
    attempts: Arc<AtomicU64>,
}

/// What is known of one server's instance.
struct Slot {
    /// The instance (its tag) and where it listens: another one starts afresh.
    instance: String,
    endpoint: Endpoint,
    session: Option<Session>,
    refusal: Option<Refusal>,
    last_used: Instant,
}

struct Refusal {
    password: Secret,
    at: Instant,
    error: SignInError,
}

impl Slot {
    fn new(account: &Account<'_>, endpoint: &Endpoint) -> Self {
        Self {
            instance: account.password.instance.clone(),
            endpoint: endpoint.clone(),
            session: None,
            refusal: None,
            last_used: Instant::now(),
        }
    }

    /// Forgets what was known of another instance than `account`'s at `endpoint`.
    fn align(&mut self, account: &Account<'_>, endpoint: &Endpoint) {
        if self.instance != account.password.instance || self.endpoint != *endpoint {
            *self = Slot::new(account, endpoint);
        }
        self.last_used = Instant::now();
    }

    /// The refusal that still stands for `password`.
    fn refused(&self, password: &Secret) -> Option<&SignInError> {
        self.refusal
            .as_ref()
            .filter(|refusal| refusal.password == *password)
            .filter(|refusal| refusal.at.elapsed() < REFUSAL_PAUSE)
            .map(|refusal| &refusal.error)
    }
}

impl SignIns {
    /// Sign-ins over `backends`' connections.
    pub fn new(backends: Backends) -> Self {
        Self {
            backends,
            slots: Arc::default(),
            next_number: Arc::new(AtomicU64::new(1)),
            attempts: Arc::default(),
        }
    }

    /// How many sign-ins have been sent to instances.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// The session with `account`'s instance at `endpoint`, signing in when there is
    /// none yet.
    pub async fn session(
        &self,
        account: &Account<'_>,
        endpoint: &Endpoint,
    ) -> Result<Session, SignInError> {
        let slot = self.slot(account, endpoint);
        let mut slot = slot.lock().await;
        slot.align(account, endpoint);
        match &slot.session {
            Some(session) => Ok(session.clone()),
            None => self.sign_in_into(&mut slot, account, endpoint).await,
        }
    }

    /// After the instance answered a request made with `refused` as signed out: a
    /// session to try once more with (signing in again, unless another request did
    /// already), or `None` when `refused` is too fresh for a new sign-in to mend.
    pub async fn renew(
        &self,
        account: &Account<'_>,
        endpoint: &Endpoint,
        refused: &Session,
    ) -> Result<Option<Session>, SignInError> {
        let slot = self.slot(account, endpoint);
        let mut slot = slot.lock().await;
        slot.align(account, endpoint);
        if let Some(current) = &slot.session
            && current.number != refused.number
        {
            return Ok(Some(current.clone()));
        }
        if refused.signed_in_at.elapsed() < RENEW_AFTER {
            return Ok(None);
        }
        slot.session = None;
        self.sign_in_into(&mut slot, account, endpoint)
            .await
            .map(Some)
    }

    async fn sign_in_into(
        &self,
        slot: &mut Slot,
        account: &Account<'_>,
        endpoint: &Endpoint,
    ) -> Result<Session, SignInError> {
        if let Some(error) = slot.refused(&account.password.password) {
            return Err(error.clone());
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let signed_in =
            tokio::time::timeout(SIGN_IN_WITHIN, sign_in(&self.backends, account, endpoint))
                .await
                .unwrap_or_else(|_| {
                    Err(SignInError::Timeout {
                        server: account.server.to_owned(),
                    })
                });
        match signed_in {
            Ok(cookie) => {
                let session = Session {
                    cookie,
                    signed_in_at: Instant::now(),
                    number: self.next_number.fetch_add(1, Ordering::Relaxed),
                };
                tracing::info!(server = account.server, "signed in to the instance");
                slot.session = Some(session.clone());
                slot.refusal = None;
                Ok(session)
            }
            Err(error) => {
                tracing::warn!(server = account.server, %error, "cannot sign in to the instance");
                if matches!(error, SignInError::Refused { .. }) {
                    slot.refusal = Some(Refusal {
                        password: account.password.password.clone(),
                        at: Instant::now(),
                        error: error.clone(),
                    });
                }
                Err(error)
            }
        }
    }

    /// The slot of `account`'s server (made when missing; slots unused for long go
    /// then).
    fn slot(&self, account: &Account<'_>, endpoint: &Endpoint) -> Arc<AsyncMutex<Slot>> {
        let mut slots = self.lock();
        if let Some(slot) = slots.get(account.server) {
            return slot.clone();
        }
        // A slot being used (locked) stays; the others are forgotten once idle.
        slots.retain(|_, slot| {
            slot.try_lock()
                .map_or(true, |slot| slot.last_used.elapsed() < FORGET_AFTER)
        });
        let slot = Arc::new(AsyncMutex::new(Slot::new(account, endpoint)));
        slots.insert(account.server.to_owned(), slot.clone());
        slot
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<AsyncMutex<Slot>>>> {
        // Whole slots go in and out: nothing a panicking holder could leave half-made.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends the request `parts` + `body` (retargeted at the instance) to `account`'s
    /// instance at `endpoint` with devbox's session, signing in first when needed and
    /// again once when the instance answers as signed out (then sending the request
    /// again when its body was small enough to keep). The answer carries no session
    /// cookie and is never the instance's login page.
    pub async fn send(
        &self,
        account: &Account<'_>,
        endpoint: &Endpoint,
        mut parts: request::Parts,
        body: Body,
    ) -> Result<Response<Body>, SendError> {
        let session = self.session(account, endpoint).await?;
        let (body, kept) = keep_if_small(body).await?;
        let again = kept.map(|bytes| (copy_head(&parts), bytes));
        let path = parts.uri.path().to_owned();
        with_session_cookie(&mut parts.headers, session.cookie());
        let mut response = self
            .backends
            .send(endpoint, Request::from_parts(parts, body))
            .await?;
        drop_session_cookies(response.headers_mut());
        let Some(signed_out_as) = signed_out(&path, response.status(), response.headers()) else {
            return Ok(response);
        };
        let server = || account.server.to_owned();
        match (self.renew(account, endpoint, &session).await?, again) {
            (Some(renewed), Some((mut parts, bytes))) => {
                with_session_cookie(&mut parts.headers, renewed.cookie());
                let mut retried = self
                    .backends
                    .send(endpoint, Request::from_parts(parts, Body::from(bytes)))
                    .await?;
                drop_session_cookies(retried.headers_mut());
                match signed_out(&path, retried.status(), retried.headers()) {
                    Some(SignedOut::LoginPage) => {
                        Err(SignInError::StillSignedOut { server: server() }.into())
                    }
                    _ => Ok(retried),
                }
            }
            // A 401 is no page to hide: it passes as it is.
            (_, _) if signed_out_as == SignedOut::Unauthorized => Ok(response),
            (Some(_), None) => Err(SignInError::SignedInAgain { server: server() }.into()),
            (None, _) => Err(SignInError::StillSignedOut { server: server() }.into()),
        }
    }
}

/// `POST /login` with `account`'s password to its instance at `endpoint`; the session
/// cookie (`name=value`) of its answer.
async fn sign_in(
    backends: &Backends,
    account: &Account<'_>,
    endpoint: &Endpoint,
) -> Result<HeaderValue, SignInError> {
    let server = || account.server.to_owned();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("password", account.password.password.expose())
        .finish();
    let request = Request::post("/login")
        .header(header::HOST, endpoint.default_host())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, form.len())
        .body(Body::from(form))
        .map_err(|err| SignInError::Unreachable {
            server: server(),
            reason: err.to_string(),
        })?;
    let response =
        backends
            .send(endpoint, request)
            .await
            .map_err(|err| SignInError::Unreachable {
                server: server(),
                reason: err.to_string(),
            })?;
    let status = response.status();
    if let Some(cookie) = session_cookie_set_by(response.headers()) {
        // Read to its end, the answer gives its connection back.
        let _ = response.into_body().collect().await;
        return Ok(cookie);
    }
    if status != StatusCode::OK {
        return Err(SignInError::NoSession {
            server: server(),
            status,
        });
    }
    let page = Limited::new(response.into_body(), LOGIN_PAGE_MAX)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    Err(SignInError::Refused {
        server: server(),
        said: login_page_error(&page),
    })
}

/// What the login page says went wrong (its `<div class="error">`).
fn login_page_error(page: &[u8]) -> String {
    const SAID_MAX: usize = 200;
    let page = String::from_utf8_lossy(page);
    let said = page
        .split_once("class=\"error\">")
        .and_then(|(_, rest)| rest.split_once('<'))
        .map(|(said, _)| said.trim())
        .filter(|said| !said.is_empty());
    match said {
        Some(said) => format!(
            "code-server said: {}",
            said.chars().take(SAID_MAX).collect::<String>()
        ),
        None => "its login page again, without a reason".to_owned(),
    }
}

/// How an instance says a request was not signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedOut {
    /// `401` (any request but a page).
    Unauthorized,
    /// A redirect to its login page, or the login page itself.
    LoginPage,
}

/// Whether the answer (`status`, `headers`) to a request for the instance's `path`
/// says it was not signed in.
pub fn signed_out(path: &str, status: StatusCode, headers: &HeaderMap) -> Option<SignedOut> {
    if status == StatusCode::UNAUTHORIZED {
        return Some(SignedOut::Unauthorized);
    }
    if status.is_redirection() {
        let location = headers.get(header::LOCATION)?.to_str().ok()?;
        return is_login_path(&resolve(path, location)?).then_some(SignedOut::LoginPage);
    }
    // Asked for the login page itself, a signed-in request is sent on elsewhere.
    (status == StatusCode::OK && is_login_path(path)).then_some(SignedOut::LoginPage)
}

/// code-server's login page: `/login` at its root (Express matches paths regardless of
/// case and a trailing slash).
fn is_login_path(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    path.eq_ignore_ascii_case("/login")
}

/// The path `location` leads to from the instance's `path` (code-server's redirects
/// are relative: `./../login?to=…` from `/vscode/`).
fn resolve(path: &str, location: &str) -> Option<String> {
    let base = url::Url::parse("http://instance").ok()?.join(path).ok()?;
    let target = base.join(location).ok()?;
    // Another origin is not the instance's login page.
    (target.origin() == base.origin()).then(|| target.path().to_owned())
}

/// Whether `name=value` names a session cookie of code-server.
fn is_session_pair(pair: &str) -> bool {
    pair.split_once('=')
        .map_or(pair, |(name, _)| name)
        .trim()
        .starts_with(SESSION_COOKIE)
}

/// The `Cookie` headers with devbox's session in place of any the browser sent:
/// one `Cookie` header, the browser's other cookies first (a value that is not text
/// is dropped with its header's session, as RFC 6265 cookies are text).
pub fn with_session_cookie(headers: &mut HeaderMap, session: &HeaderValue) {
    let mut cookies = String::new();
    for pair in headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !is_session_pair(pair))
    {
        cookies.push_str(pair);
        cookies.push_str("; ");
    }
    let cookie = if cookies.is_empty() {
        session.clone()
    } else {
        cookies.push_str(session.to_str().unwrap_or_default());
        HeaderValue::from_str(&cookies).unwrap_or_else(|_| session.clone())
    };
    headers.insert(header::COOKIE, cookie);
}

/// Removes every `Set-Cookie` of a code-server session (a sign-in's, a sign-out's).
pub fn drop_session_cookies(headers: &mut HeaderMap) {
    let sets_session = |value: &HeaderValue| {
        value.to_str().map_or(
            // Not text: no cookie of code-server's, but nothing to pass on either.
            true,
            |cookie| is_session_pair(cookie.split(';').next().unwrap_or_default()),
        )
    };
    if !headers.get_all(header::SET_COOKIE).iter().any(sets_session) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|value| !sets_session(value))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
}

/// The session cookie (`name=value`) a sign-in's answer sets, if it sets one.
fn session_cookie_set_by(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|cookie| cookie.split(';').next())
        .map(str::trim)
        .find(|pair| {
            is_session_pair(pair) && pair.split_once('=').is_some_and(|(_, v)| !v.is_empty())
        })
        .and_then(|pair| HeaderValue::from_str(pair).ok())
}

/// `body` and, when it is small enough to send again, a copy of it (read whole).
async fn keep_if_small(body: Body) -> Result<(Body, Option<Bytes>), SendError> {
    if body.is_end_stream() {
        return Ok((Body::empty(), Some(Bytes::new())));
    }
    if body
        .size_hint()
        .upper()
        .is_none_or(|upper| upper > REPLAYABLE_BODY_MAX)
    {
        return Ok((body, None));
    }
    let bytes = body
        .collect()
        .await
        .map_err(|err| SendError::Body(err.to_string()))?
        .to_bytes();
    Ok((Body::from(bytes.clone()), Some(bytes)))
}

/// The request line and headers of `parts`, to send again.
pub fn copy_head(parts: &request::Parts) -> request::Parts {
    let mut copy = Request::new(());
    *copy.method_mut() = parts.method.clone();
    *copy.uri_mut() = parts.uri.clone();
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    copy.into_parts().0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name.clone(), HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_browsers_session_cookies_give_way_to_devboxs_and_the_others_stay() {
        let mut sent = headers(
            header::COOKIE,
            &[
                "a=1; code-server-session=forged; b=2",
                "code-server-session-suffix=also-forged; c=3",
            ],
        );
        with_session_cookie(
            &mut sent,
            &HeaderValue::from_static("code-server-session=devbox"),
        );
        let cookies: Vec<_> = sent.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2; c=3; code-server-session=devbox"]);

        let mut none = HeaderMap::new();
        with_session_cookie(
            &mut none,
            &HeaderValue::from_static("code-server-session=devbox"),
        );
        assert_eq!(none[header::COOKIE], "code-server-session=devbox");
    }

    #[test]
    fn session_cookies_the_instance_sets_are_dropped_and_the_others_pass() {
        let mut answer = headers(
            header::SET_COOKIE,
            &[
                "code-server-session=%24argon2id%24v; Path=/; SameSite=Lax",
                "app=1; Path=/",
                "code-server-session-x=; Max-Age=0",
                "other=2",
            ],
        );
        drop_session_cookies(&mut answer);
        let cookies: Vec<_> = answer.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["app=1; Path=/", "other=2"]);

        let mut only_others = headers(header::SET_COOKIE, &["app=1"]);
        drop_session_cookies(&mut only_others);
        assert_eq!(only_others[header::SET_COOKIE], "app=1");
    }

    #[test]
    fn the_session_is_taken_from_a_sign_ins_answer() {
        let answer = headers(
            header::SET_COOKIE,
            &[
                "theme=dark",
                "code-server-session=%24argon2id%24v%3D19; Path=/; SameSite=Lax",
            ],
        );
        assert_eq!(
            session_cookie_set_by(&answer).unwrap(),
            "code-server-session=%24argon2id%24v%3D19"
        );
        let suffixed = headers(header::SET_COOKIE, &["code-server-session-a-b=v; Path=/"]);
        assert_eq!(
            session_cookie_set_by(&suffixed).unwrap(),
            "code-server-session-a-b=v"
        );
        let cleared = headers(header::SET_COOKIE, &["code-server-session=; Max-Age=0"]);
        assert!(session_cookie_set_by(&cleared).is_none());
    }

    #[test]
    fn code_servers_signed_out_answers_are_recognised_and_an_apps_are_not() {
        let redirect = |to: &'static str| headers(header::LOCATION, &[to]);
        let found = StatusCode::FOUND;
        // What code-server 4.100 answers signed out (see the module's doc).
        assert_eq!(
            signed_out("/", found, &redirect("./login")),
            Some(SignedOut::LoginPage)
        );
        assert_eq!(
            signed_out("/vscode/", found, &redirect("./../login?to=/vscode/")),
            Some(SignedOut::LoginPage)
        );
        assert_eq!(
            signed_out("/proxy/3000/", found, &redirect("./../../login")),
            Some(SignedOut::LoginPage)
        );
        assert_eq!(
            signed_out("/a.js", StatusCode::UNAUTHORIZED, &HeaderMap::new()),
            Some(SignedOut::Unauthorized)
        );
        assert_eq!(
            signed_out("/LOGIN/", StatusCode::OK, &HeaderMap::new()),
            Some(SignedOut::LoginPage)
        );
        // An app's own login behind code-server's port forwarding, the workbench's
        // redirects, and other sites are not code-server's login page.
        assert_eq!(
            signed_out("/proxy/3000/x", found, &redirect("./login")),
            None
        );
        assert_eq!(signed_out("/", found, &redirect("./?folder=/w")), None);
        assert_eq!(
            signed_out("/", found, &redirect("http://elsewhere/login")),
            None
        );
        assert_eq!(signed_out("/", StatusCode::OK, &HeaderMap::new()), None);
    }

    #[test]
    fn the_login_pages_error_is_quoted() {
        let page = br#"<form><div class="error">Incorrect password</div></form>"#;
        assert_eq!(
            login_page_error(page),
            "code-server said: Incorrect password"
        );
        assert_eq!(
            login_page_error(b"<html></html>"),
            "its login page again, without a reason"
        );
    }

    #[tokio::test]
    async fn small_bodies_are_kept_to_send_again_and_large_ones_stream() {
        let (_, kept) = keep_if_small(Body::empty()).await.unwrap();
        assert_eq!(kept.unwrap(), "");
        let (body, kept) = keep_if_small(Body::from("form=1")).await.unwrap();
        assert_eq!(kept.unwrap(), "form=1");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "form=1");
        let large = vec![b'x'; REPLAYABLE_BODY_MAX as usize + 1];
        let (body, kept) = keep_if_small(Body::from(large.clone())).await.unwrap();
        assert!(kept.is_none());
        assert_eq!(body.collect().await.unwrap().to_bytes(), large);
    }

    /// A stand-in for code-server that hands out a session on `POST /login` and answers
    /// every other request with a redirect to its login page, as if it never took that
    /// session; returns its endpoint and the number of sign-ins it saw.
    async fn instance_that_keeps_asking() -> (Endpoint, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let logins = Arc::new(AtomicU64::new(0));
        let counted = logins.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let logins = counted.clone();
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    let answer = if request.uri().path() == "/login" {
                        logins.fetch_add(1, Ordering::Relaxed);
                        Response::builder()
                            .status(StatusCode::FOUND)
                            .header(header::LOCATION, "./")
                            .header(header::SET_COOKIE, "code-server-session=s; Path=/")
                    } else {
                        Response::builder()
                            .status(StatusCode::FOUND)
                            .header(header::LOCATION, "./login")
                    };
                    async move { answer.body(Body::empty()) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        (Endpoint::Tcp(port), logins)
    }

    #[tokio::test]
    async fn an_instance_that_still_asks_after_a_sign_in_is_a_502_and_no_loop() {
        let (endpoint, logins) = instance_that_keeps_asking().await;
        let sign_ins = SignIns::new(Backends::default());
        let account = Account {
            server: "box",
            password: InstancePassword {
                instance: "t".into(),
                password: Secret::new("pw"),
            },
        };
        for _ in 0..3 {
            let (parts, body) = Request::get("/")
                .header(header::HOST, endpoint.default_host())
                .body(Body::empty())
                .unwrap()
                .into_parts();
            let err = sign_ins
                .send(&account, &endpoint, parts, body)
                .await
                .unwrap_err();
            assert!(
                matches!(err, SendError::SignIn(SignInError::StillSignedOut { .. })),
                "{err}"
            );
        }
        assert_eq!(logins.load(Ordering::Relaxed), 1);
        assert_eq!(sign_ins.attempts(), 1);
    }
}
