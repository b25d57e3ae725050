//! Who devbox is on the web: the host names it answers to and the origins whose pages
//! count as its own. Both guards (`Host` and `Origin`) ask this one place, and every
//! decision is a plain function of the configuration and the request's headers.
//!
//! devbox's names are the loopback names, the bind address when it is a specific one,
//! the host of `server.public_url`, and `server.allowed_hosts`. A page's origin is
//! devbox's own when its host and port are the ones the request was sent to (which
//! the host guard has already checked; over devbox's own TLS, with `https`) or those
//! of `public_url`; the origins in `server.cors_allowed_origins` are let in besides.

use std::net::IpAddr;

use axum::http::uri::Authority;

use super::Transport;
use crate::config::Config;

/// Where a request that carries an `Origin` comes from, as far as devbox is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// No `Origin` and no `Sec-Fetch-Site: cross-site`: a script, curl, the CLI, or a
    /// browser's own navigation.
    NoOrigin,
    /// A page of devbox itself.
    Own,
    /// A page of an origin listed in `server.cors_allowed_origins` (or any, with `*`).
    Listed,
    /// Any other page.
    Foreign,
}

/// devbox's names and origins, from the configuration.
#[derive(Debug, Clone)]
pub struct Site {
    /// `server.allowed_hosts` holds `*`: the host check is off.
    any_host: bool,
    /// Host names (lower case, IPv6 in brackets) with the port they must come with;
    /// `None` = any port.
    names: Vec<(String, Option<u16>)>,
    /// The scheme and authority of `public_url` (lower case), if one is set.
    public_origin: Option<(String, String)>,
    /// `server.cors_allowed_origins` as written, lower case.
    listed_origins: Vec<String>,
    /// `.<public host>` when IDEs have origins of their own (`server.ide_subdomains`):
    /// each IDE is served at `<name>.<public host>`.
    ide_suffix: Option<String>,
}

/// Names of this machine that no DNS rebinding can produce: a page's `Host` is the
/// name in its own URL, which is the attacker's. Any port: an SSH tunnel from a laptop
/// (`ssh -L 9000:localhost:8000`) makes the browser send `localhost:9000`.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl Site {
    pub fn new(config: &Config) -> Self {
        let server = &config.server;
        let mut names: Vec<(String, Option<u16>)> = LOOPBACK_NAMES
            .iter()
            .map(|name| ((*name).to_owned(), None))
            .collect();
        if !server.bind_address.is_unspecified() && !server.bind_address.is_loopback() {
            names.push((host_of_ip(server.bind_address), Some(server.default_port)));
        }
        let public_uri = server
            .public_url
            .as_deref()
            .and_then(|url| url.parse::<axum::http::Uri>().ok());
        let public_authority = public_uri.as_ref().and_then(|uri| uri.authority().cloned());
        if let Some(authority) = &public_authority {
            // Behind a TLS proxy the port the browser used is the proxy's.
            names.push((authority.host().to_ascii_lowercase(), None));
        }
        let mut any_host = false;
        for entry in &server.allowed_hosts {
            if entry == "*" {
                any_host = true;
            } else if let Ok(authority) = entry.parse::<Authority>() {
                names.push((authority.host().to_ascii_lowercase(), authority.port_u16()));
            }
        }
        Self {
            any_host,
            names,
            public_origin: public_uri.as_ref().and_then(|uri| {
                Some((
                    uri.scheme_str()?.to_ascii_lowercase(),
                    uri.authority()?.as_str().to_ascii_lowercase(),
                ))
            }),
            listed_origins: server
                .cors_allowed_origins
                .iter()
                .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            ide_suffix: public_authority
                .as_ref()
                .filter(|_| server.ide_subdomains)
                .map(|authority| format!(".{}", authority.host().to_ascii_lowercase())),
        }
    }

    /// Whether devbox answers to `host` (the request's `Host`, or the authority of an
    /// absolute request target).
    pub fn allows_host(&self, host: &str) -> bool {
        if self.any_host || self.ide_server(host).is_some() {
            return true;
        }
        let Ok(authority) = host.parse::<Authority>() else {
            return false;
        };
        let name = authority.host().to_ascii_lowercase();
        let port = authority.port_u16();
        self.names.iter().any(|(allowed, allowed_port)| {
            *allowed == name && allowed_port.is_none_or(|p| Some(p) == port)
        })
    }

    /// The server whose IDE `host` is (`<name>.<public host>`, any port), when IDEs
    /// have origins of their own.
    pub fn ide_server(&self, host: &str) -> Option<String> {
        let suffix = self.ide_suffix.as_deref()?;
        let authority = host.parse::<Authority>().ok()?;
        let name = authority
            .host()
            .to_ascii_lowercase()
            .strip_suffix(suffix)?
            .to_owned();
        crate::spec::is_valid_name(&name).then_some(name)
    }

    /// The URL of `path` on server `name`'s IDE origin.
    pub fn ide_url(&self, name: &str, path: &str) -> Option<String> {
        let (scheme, public) = self.public_origin.as_ref()?;
        Some(format!("{scheme}://{name}.{public}{path}"))
    }

    /// The URL of `path` on devbox's own (public) origin.
    pub fn own_url(&self, path: &str) -> Option<String> {
        let (scheme, public) = self.public_origin.as_ref()?;
        Some(format!("{scheme}://{public}{path}"))
    }

    /// Where a request comes from: `origin` is its `Origin` header, `host` the `Host`
    /// it was sent to, `other_page` whether the browser said the request comes from a
    /// page of another origin (`Sec-Fetch-Site: cross-site` or `same-site`: a page on
    /// another port of this host is "same-site", and no more devbox's than any other),
    /// `transport` what the request came over.
    pub fn provenance(
        &self,
        origin: Option<&str>,
        host: Option<&str>,
        other_page: bool,
        transport: Transport,
    ) -> Provenance {
        let Some(origin) = origin else {
            return if other_page {
                Provenance::Foreign
            } else {
                Provenance::NoOrigin
            };
        };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self
            .listed_origins
            .iter()
            .any(|listed| *listed == origin || listed == "*")
        {
            return Provenance::Listed;
        }
        if other_page {
            return Provenance::Foreign;
        }
        // `null` (a sandboxed frame, a file, a redirect across origins) parses as no URI.
        let Some((scheme, authority)) = origin_authority(&origin) else {
            return Provenance::Foreign;
        };
        if let Some((public_scheme, public)) = &self.public_origin
            && same_authority(&authority, public)
        {
            // The public name over another scheme (plain http beside https) is another
            // origin, whoever answers there.
            return if scheme == *public_scheme {
                Provenance::Own
            } else {
                Provenance::Foreign
            };
        }
        // Over devbox's own TLS, devbox's pages are https pages: an http page on the
        // same name (and port 80 or 443, which a `Host` without a port may mean) is
        // someone else's. Over plain HTTP either scheme may be devbox's, as a TLS
        // proxy in front passes the `Host` on.
        let scheme_fits = transport == Transport::Plain || scheme == "https" || scheme == "wss";
        if scheme_fits && host.is_some_and(|host| same_authority(&authority, host)) {
            Provenance::Own
        } else {
            Provenance::Foreign
        }
    }

    /// What an operator would set to let `host` in, for the 403's message.
    pub fn remedy(&self, host: &str) -> String {
        let name = host
            .parse::<Authority>()
            .map(|a| a.host().to_owned())
            .unwrap_or_else(|_| host.to_owned());
        format!(
            "add `{name}` to server.allowed_hosts (or set server.public_url to the URL people open devbox at)"
        )
    }
}

/// `http://host:port` → (`http`, `host:port`), with the scheme's default port written
/// out, so that `https://a` and a `Host: a:443` compare equal.
fn origin_authority(origin: &str) -> Option<(String, String)> {
    let uri = origin.parse::<axum::http::Uri>().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let port = authority.port_u16().or(match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    })?;
    Some((scheme, format!("{}:{port}", authority.host())))
}

/// Whether `origin` (`host:port`, from [`origin_authority`]) names `host` (a `Host`
/// header, whose port may be left out when it is the scheme's default).
fn same_authority(origin: &str, host: &str) -> bool {
    let Ok(host) = host.parse::<Authority>() else {
        return false;
    };
    let name = host.host().to_ascii_lowercase();
    match host.port_u16() {
        Some(port) => origin == format!("{name}:{port}"),
        None => origin == format!("{name}:80") || origin == format!("{name}:443"),
    }
}

fn host_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(yaml: &str) -> Site {
        let config = Config::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
        Site::new(&config)
    }

    #[test]
    fn loopback_names_are_devbox_and_a_rebinding_name_is_not() {
        let site = site("{}");
        for host in [
            "127.0.0.1:8000",
            "localhost:8000",
            "LOCALHOST:9000",
            "[::1]:8000",
            "localhost",
        ] {
            assert!(site.allows_host(host), "{host}");
        }
        for host in [
            "rebind.attacker.example:8000",
            "127.0.0.1.nip.io:8000",
            "10.0.0.5:8000",
            "",
            "a b",
        ] {
            assert!(!site.allows_host(host), "{host}");
        }
    }

    #[test]
    fn configured_names_are_devbox() {
        let site = site(
            "server:\n  bind_address: 10.0.0.5\n  public_url: https://ide.example.org\n  allowed_hosts: [box.lan, 'other.lan:9000']\n",
        );
        assert!(site.allows_host("10.0.0.5:8000"));
        assert!(!site.allows_host("10.0.0.5:8001"));
        assert!(site.allows_host("ide.example.org"));
        assert!(site.allows_host("box.lan:1234"));
        assert!(site.allows_host("other.lan:9000"));
        assert!(!site.allows_host("other.lan:9001"));
        assert!(
            site.remedy("x.lan:8000")
                .contains("`x.lan` to server.allowed_hosts")
        );
    }

    #[test]
    fn unspecified_bind_address_is_no_name_and_star_turns_the_check_off() {
        assert!(!site("server:\n  bind_address: 0.0.0.0\n").allows_host("0.0.0.0:8000"));
        assert!(site("server:\n  allowed_hosts: ['*']\n").allows_host("anything.example:1"));
    }

    #[test]
    fn ide_hosts_are_server_names_under_the_public_host() {
        let on =
            site("server:\n  public_url: http://devbox.localhost:8000\n  ide_subdomains: true\n");
        assert_eq!(
            on.ide_server("ada.devbox.localhost:8000").as_deref(),
            Some("ada")
        );
        assert_eq!(
            on.ide_server("Ada.DEVBOX.localhost").as_deref(),
            Some("ada")
        );
        assert!(on.allows_host("ada.devbox.localhost:8000"));
        for other in [
            "devbox.localhost:8000",
            "a.b.evil.example",
            "-x.devbox.localhost",
            "xdevbox.localhost",
        ] {
            assert_eq!(on.ide_server(other), None, "{other}");
        }
        assert!(!on.allows_host("ada.evil.example:8000"));
        assert_eq!(
            on.ide_url("ada", "/x?y").as_deref(),
            Some("http://ada.devbox.localhost:8000/x?y")
        );
        assert_eq!(
            on.own_url("/s/ada/").as_deref(),
            Some("http://devbox.localhost:8000/s/ada/")
        );
        let off = site("server:\n  public_url: http://devbox.localhost:8000\n");
        assert_eq!(off.ide_server("ada.devbox.localhost:8000"), None);
        assert!(!off.allows_host("ada.devbox.localhost:8000"));
    }

    #[test]
    fn origins() {
        let site = site(
            "server:\n  cors_allowed_origins: ['http://tool.example:3000']\n  public_url: https://ide.example.org/\n",
        );
        use Provenance::{Foreign, Listed, NoOrigin, Own};
        let local = Some("127.0.0.1:8000");
        let public = Some("ide.example.org");
        // (Origin, Host, Sec-Fetch-Site: cross-site, what the request is)
        let cases = [
            (None, local, false, NoOrigin),
            (None, local, true, Foreign),
            (Some("http://127.0.0.1:8000"), local, false, Own),
            (Some("http://localhost:8000"), local, false, Foreign),
            (Some("http://127.0.0.1:9999"), local, false, Foreign),
            (Some("https://evil.example"), local, false, Foreign),
            (Some("null"), local, false, Foreign),
            (Some("http://tool.example:3000"), local, true, Listed),
            (Some("https://ide.example.org"), public, false, Own),
            (Some("https://ide.example.org"), local, false, Own),
            (Some("http://ide.example.org"), public, false, Foreign),
            (Some("http://ide.example.org"), local, false, Foreign),
            (None, local, false, NoOrigin),
        ];
        for (origin, host, cross, expected) in cases {
            assert_eq!(
                site.provenance(origin, host, cross, Transport::Plain),
                expected,
                "{origin:?} to {host:?}, cross-site: {cross}"
            );
        }
    }

    #[test]
    fn over_tls_only_https_pages_of_the_host_are_devbox() {
        let site = site("server:\n  tls: {cert: c.pem, key: k.pem}\n");
        let tls = |origin: &str, host: &str| {
            site.provenance(Some(origin), Some(host), false, Transport::Tls)
        };
        assert_eq!(
            tls("https://localhost:8443", "localhost:8443"),
            Provenance::Own
        );
        assert_eq!(tls("https://box.lan", "box.lan"), Provenance::Own);
        assert_eq!(tls("http://box.lan", "box.lan"), Provenance::Foreign);
        assert_eq!(
            tls("http://localhost:8443", "localhost:8443"),
            Provenance::Foreign
        );
        assert_eq!(
            tls("https://localhost:9999", "localhost:8443"),
            Provenance::Foreign
        );
        // Behind a TLS proxy (plain to devbox), the proxy's https pages are devbox's.
        assert_eq!(
            site.provenance(
                Some("https://box.lan"),
                Some("box.lan"),
                false,
                Transport::Plain
            ),
            Provenance::Own
        );
    }
}
