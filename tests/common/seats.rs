//! Participants signed in through seat links: a browser's session cookie, and the
//! calls it makes (tenancy, and every test of what users may not do).

use serde_json::Value;

use super::{Devbox, Reply};

/// A browser signed in through a seat link: its session cookie.
pub struct Participant<'a> {
    pub devbox: &'a Devbox,
    pub cookie: String,
}

impl Participant<'_> {
    /// A call with the session cookie, following redirects the way a browser does
    /// (with the cookie).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.send(method, path, &[], body)
    }

    /// A call without a body, with `extra` headers besides the cookie.
    pub fn call_with(&self, method: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
        self.send(method, path, extra, None)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let body = body.map(|b| serde_json::to_vec(b).expect("json"));
        let mut headers = vec![
            ("Cookie", self.cookie.as_str()),
            ("Content-Type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        let mut url = self.devbox.url(path);
        let agent = self.devbox.agent(0);
        let mut reply = super::request_with(&agent, method, &url, &headers, body.as_deref());
        for _ in 0..5 {
            let Some(location) = reply.header("location").filter(|_| reply.status / 100 == 3)
            else {
                break;
            };
            url = if location.starts_with("http") {
                location.to_owned()
            } else if location.starts_with('/') {
                self.devbox.url(location)
            } else {
                // Relative to the folder of the current URL, as code-server's `./?folder=`.
                let folder = url.split('?').next().unwrap_or_default();
                let folder = &folder[..=folder.rfind('/').unwrap_or_default()];
                format!("{folder}{}", location.trim_start_matches("./"))
            };
            reply = super::request_with(&agent, "GET", &url, &headers, None);
        }
        reply
    }

    pub fn listed(&self) -> Vec<String> {
        self.call("GET", "/servers", None).slugs()
    }
}

/// Asks for `server`'s seat link as the admin (bearer `token`); returns its path
/// (`/seat/<ticket>`) and the whole answer. A spec written just now is known once the
/// controller has read it: until then the link is asked for again.
pub fn seat_link(devbox: &Devbox, token: &str, server: &str) -> (String, Value) {
    let bearer = format!("Bearer {token}");
    let reply = super::wait_for(&format!("a seat link for {server}"), super::STARTUP, || {
        let reply = devbox.call(
            "POST",
            &format!("/servers/{server}/seat-link"),
            &[("Authorization", bearer.as_str())],
            None,
        );
        (reply.status != 404).then_some(reply)
    });
    assert_eq!(reply.status, 200, "{reply}");
    let answer = reply.json();
    let url = answer["url"].as_str().expect("url").to_owned();
    // On this devbox's port, whatever host name `public_url` gives it.
    let port = format!(":{}/seat/", devbox.http_port);
    let at = url
        .find(&port)
        .unwrap_or_else(|| panic!("{url} is no seat link of this devbox"));
    let path = url[at + port.len() - "/seat/".len()..].to_owned();
    (path, answer)
}

/// Opens a seat link as a browser would (no cookie yet): the participant it signs in.
pub fn open_seat<'a>(devbox: &'a Devbox, path: &str, server: &str) -> Participant<'a> {
    let page = devbox.call("GET", path, &[("Sec-Fetch-Site", "cross-site")], None);
    assert_eq!(page.status, 200, "{page}");
    assert!(
        page.text.contains(&format!("url=/s/{server}/")),
        "the page moves on to the IDE: {}",
        page.text
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let set_cookie = page.header("set-cookie").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().expect("cookie").to_owned();
    Participant { devbox, cookie }
}
