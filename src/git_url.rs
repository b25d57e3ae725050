//! Where a git URL points: its scheme, its host, and the local-host rule.
//!
//! The rule: a git URL may not reach inside the host devbox runs on. Its host may not
//! be, or resolve to, a loopback, link-local (cloud metadata: 169.254.169.254) or
//! unspecified address, an IPv4-mapped or -compatible IPv6 form of one, an address of
//! one of the host's own interfaces, or a
//! `localhost` name, unless `ui.workspace.allow_local_git_hosts` is true. Otherwise
//! anyone who may create a server could make devbox fetch from the host's own
//! services, and the clone's error text would tell them what answered.
//!
//! The rule is checked twice: on the URL's text when a spec is checked ([`check_host`]:
//! IP literals in every spelling `inet_aton` accepts, and localhost names), and on
//! what its host name resolves to just before git connects ([`check_resolved`]). So
//! that devbox and libgit2 cannot read one URL as two different hosts, a host in any
//! but the plain spelling (percent escapes, several `@`, a zone id, non-ASCII) is
//! refused while the rule applies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

/// The setting that turns the rule off, named in every refusal.
const SETTING: &str = "ui.workspace.allow_local_git_hosts";

/// Why a git URL's host is refused.
#[derive(Debug, thiserror::Error)]
pub enum GitHostError {
    #[error(
        "git URL host `{host}` is not a plain host name ({why}); with the local-host rule \
         on, devbox accepts only plain names and IP addresses (set {SETTING}: true to allow any)"
    )]
    NotPlain { host: String, why: &'static str },
    #[error(
        "git URL host `{host}` is {what}: the local-host rule refuses git URLs that reach \
         inside this host (set {SETTING}: true to allow them)"
    )]
    Local { host: String, what: &'static str },
    #[error(
        "git URL host `{host}` resolves to {address}, an address of this host (loopback, \
         link-local, unspecified or one of its interfaces): the local-host rule refuses git URLs that reach inside this host (set \
         {SETTING}: true to allow them)"
    )]
    ResolvesLocal { host: String, address: IpAddr },
    #[error("cannot resolve git URL host `{host}`: {source}")]
    Unresolvable {
        host: String,
        #[source]
        source: std::io::Error,
    },
}

/// The scheme a git URL uses, as libgit2 would pick its transport: `https`, `ssh`
/// (also scp-like `[user@]host:path`), a remote helper's name (`ext::…`), or `file`
/// for a local path.
pub fn scheme(url: &str) -> String {
    if let Some((scheme, _)) = url.split_once("://") {
        return scheme.to_ascii_lowercase();
    }
    // git's `<transport>::<address>` (remote helpers).
    if let Some((helper, _)) = url.split_once("::")
        && is_scheme_word(helper)
    {
        return helper.to_ascii_lowercase();
    }
    if scp_like(url).is_some() {
        "ssh".into()
    } else {
        "file".into()
    }
}

fn is_scheme_word(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The `[user@]host` of an scp-like URL: a `:` before any `/`.
fn scp_like(url: &str) -> Option<&str> {
    let (before, _) = url.split_once(':')?;
    (!before.contains('/') && !before.is_empty()).then_some(before)
}

/// The host a git URL connects to, as written (`None` for a local path or `file://`).
fn host_of(url: &str) -> Result<Option<String>, GitHostError> {
    let not_plain = |host: &str, why| GitHostError::NotPlain {
        host: host.to_owned(),
        why,
    };
    let authority = match url.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("file") => return Ok(None),
        Some((_, rest)) => rest.split('/').next().unwrap_or_default(),
        None => match scp_like(url) {
            Some(user_host) if scheme(url) == "ssh" => user_host,
            _ => return Ok(None),
        },
    };
    if authority.contains(['?', '#', '\\', '%']) {
        return Err(not_plain(authority, "escapes or URL delimiters"));
    }
    let host_port = match authority.split('@').collect::<Vec<_>>()[..] {
        [host_port] | [_, host_port] => host_port,
        _ => return Err(not_plain(authority, "more than one `@`")),
    };
    let host = if let Some(inner) = host_port.strip_prefix('[') {
        let Some((inner, _)) = inner.split_once(']') else {
            return Err(not_plain(host_port, "an unclosed `[`"));
        };
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(not_plain(host_port, "not an IPv6 address in brackets"));
        }
        inner
    } else {
        match host_port.split_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return Err(not_plain(host_port, "a port that is not a number")),
            None => host_port,
        }
    };
    if host.is_empty() {
        return Err(not_plain(authority, "no host"));
    }
    if !host.contains(':')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(not_plain(
            host,
            "characters other than letters, digits, `-`, `.` and `_` (write an international name in its xn-- form)",
        ));
    }
    Ok(Some(host.to_owned()))
}

/// The address `host` stands for when it is an IP address in any spelling the
/// resolver accepts (`127.1`, `0x7f000001`, `::ffff:127.0.0.1`, …).
fn literal_ip(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    inet_aton(host.strip_suffix('.').unwrap_or(host)).map(IpAddr::V4)
}

/// IPv4 as `inet_aton` (and so `getaddrinfo`) reads it: one to four parts, each
/// decimal, octal (leading `0`) or hex (`0x`), the last filling the remaining bytes.
fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u32> = text
        .split('.')
        .map(|part| {
            if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                u32::from_str_radix(hex, 16).ok()
            } else if part.len() > 1 && part.starts_with('0') {
                u32::from_str_radix(&part[1..], 8).ok()
            } else if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|&p| p > 0xff) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if last_bits < 32 && *last >> last_bits != 0 {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &p)| acc | p << (24 - 8 * i as u32));
    Some(Ipv4Addr::from(high | last))
}

/// Whether `ip` reaches this host (or its cloud's metadata service): loopback,
/// link-local, unspecified or "this network" (0.0.0.0/8), directly or in an IPv6 form
/// that carries an IPv4 address, or an address of one of this host's interfaces (a
/// service bound to every address answers there too).
fn reaches_this_host(ip: IpAddr) -> bool {
    is_local(ip) || is_own_address(ip)
}

/// Whether `ip` is assigned to one of this host's network interfaces (or is an IPv6
/// form of such an IPv4 address). Read anew each time: addresses come and go.
fn is_own_address(ip: IpAddr) -> bool {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return false;
    };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    interfaces
        .filter_map(|interface| interface.address)
        .filter_map(|address| {
            address
                .as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .any(|own| own == ip)
}

/// Whether `ip` is a loopback, link-local, unspecified or "this network" address,
/// directly or in an IPv6 form that carries an IPv4 address.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.octets()[0] == 0,
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible).
                || v6.to_ipv4().is_some_and(|v4| is_local(IpAddr::V4(v4)))
        }
    }
}

/// Names that mean this host without asking DNS (`localhost`, `*.localhost`, and the
/// IPv6 loopback names of Debian's `/etc/hosts`).
fn is_local_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "ip6-localhost"
        || host == "ip6-loopback"
}

/// The rule on the URL's text: refuses a host that is a local address in any
/// spelling, or a localhost name. Host names are checked again when they are
/// resolved ([`check_resolved`]).
pub fn check_host(url: &str) -> Result<(), GitHostError> {
    let Some(host) = host_of(url)? else {
        return Ok(());
    };
    let local = |what| GitHostError::Local {
        host: host.clone(),
        what,
    };
    if is_local_name(&host) {
        return Err(local("a localhost name"));
    }
    match literal_ip(&host) {
        Some(ip) if is_local(ip) => Err(local(
            "a loopback, link-local or unspecified address (or an IPv6 form of one)",
        )),
        Some(ip) if is_own_address(ip) => Err(local("an address of this host's own interfaces")),
        _ => Ok(()),
    }
}

/// The rule on what the URL's host resolves to, just before git connects: every
/// address must be outside this host. Blocking (a DNS lookup).
///
/// libgit2 resolves the name again when it connects, so a name whose answers change
/// between the two lookups (DNS rebinding) is not caught here; redirects are not
/// followed while the rule applies, so at least a server cannot send git elsewhere.
pub fn check_resolved(url: &str) -> Result<(), GitHostError> {
    check_host(url)?;
    let Some(host) = host_of(url)? else {
        return Ok(());
    };
    if literal_ip(&host).is_some() {
        return Ok(());
    }
    let addresses =
        (host.as_str(), 0)
            .to_socket_addrs()
            .map_err(|source| GitHostError::Unresolvable {
                host: host.clone(),
                source,
            })?;
    for address in addresses {
        if reaches_this_host(address.ip()) {
            return Err(GitHostError::ResolvesLocal {
                host,
                address: address.ip(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_as_libgit2_picks_transports() {
        assert_eq!(scheme("https://github.com/a/b.git"), "https");
        assert_eq!(scheme("SSH://git@host/a"), "ssh");
        assert_eq!(scheme("git@github.com:a/b.git"), "ssh");
        assert_eq!(
            scheme("localhost:repo.git"),
            "ssh",
            "scp-like without a user"
        );
        assert_eq!(scheme("ext::sh -c touch"), "ext");
        assert_eq!(scheme("/tmp/repo"), "file");
        assert_eq!(scheme("./a:b"), "file");
        assert_eq!(scheme("file:///tmp/repo"), "file");
    }

    #[test]
    fn local_hosts_are_refused_in_every_spelling() {
        for url in [
            "https://127.0.0.1/r.git",
            "https://127.0.0.1:8443/r.git",
            "https://user@127.0.0.1/r.git",
            "https://127.1/r.git",
            "https://2130706433/r.git",
            "https://0x7f000001/r.git",
            "https://0177.0.0.1/r.git",
            "https://127.0.0.1./r.git",
            "https://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/r.git",
            "https://0/r.git",
            "https://[::1]/r.git",
            "https://[::]/r.git",
            "https://[fe80::1]/r.git",
            "https://[::ffff:127.0.0.1]/r.git",
            "https://[::ffff:169.254.169.254]/r.git",
            "https://[::127.0.0.1]/r.git",
            "https://localhost/r.git",
            "https://LOCALHOST./r.git",
            "https://evil.localhost/r.git",
            "https://ip6-localhost/r.git",
            "ssh://git@127.0.0.1/r.git",
            "ssh://[::1]:22/r.git",
            "git@127.0.0.1:r.git",
            "git@localhost:r.git",
            "localhost:r.git",
            "169.254.169.254:r.git",
        ] {
            let err = check_host(url).expect_err(url);
            let text = err.to_string();
            assert!(text.contains(SETTING), "{url}: {text}");
            assert!(matches!(err, GitHostError::Local { .. }), "{url}: {text}");
        }
    }

    #[test]
    fn the_hosts_own_interface_addresses_are_refused() {
        let own: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
            .expect("getifaddrs")
            .filter_map(|interface| interface.address)
            .filter_map(|address| address.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())))
            .filter(|ip| !ip.is_loopback())
            .collect();
        if own.is_empty() {
            eprintln!("this host has no address besides loopback: nothing to check");
        }
        for ip in own {
            for url in [
                format!("https://{ip}/r.git"),
                format!("https://[::ffff:{ip}]/r.git"),
            ] {
                let err = check_host(&url).expect_err(&url);
                assert!(err.to_string().contains("own interfaces"), "{url}: {err}");
            }
        }
    }

    #[test]
    fn hosts_in_unusual_spellings_are_refused() {
        for url in [
            "https://%31%32%37.0.0.1/r.git",
            "https://a@b@example.com/r.git",
            "https://[fe80::1%25eth0]/r.git",
            "https://example.com:http/r.git",
            "https://bücher.example/r.git",
            "https://[127.0.0.1]/r.git",
            "https:///r.git",
        ] {
            let err = check_host(url).expect_err(url);
            assert!(matches!(err, GitHostError::NotPlain { .. }), "{url}: {err}");
        }
    }

    #[test]
    fn other_hosts_and_local_paths_pass() {
        for url in [
            "https://github.com/a/b.git",
            "https://user@github.com:443/a/b.git",
            "https://10.0.0.5/r.git",
            "https://[2001:db8::1]/r.git",
            "https://127.0.0.1.example.com/r.git",
            "https://localhost.example.com/r.git",
            "git@github.com:a/b.git",
            "ssh://git@github.com/a/b.git",
            "file:///tmp/repo",
            "/tmp/repo",
        ] {
            check_host(url).unwrap_or_else(|err| panic!("{url}: {err}"));
        }
    }

    #[test]
    fn inet_aton_reads_what_the_resolver_reads() {
        assert_eq!(inet_aton("127.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(inet_aton("10.1.2"), Some(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(
            inet_aton("0xa9.0376.43518"),
            Some(Ipv4Addr::new(169, 254, 169, 254))
        );
        assert_eq!(inet_aton("256.0.0.1"), None);
        assert_eq!(inet_aton("1.2.3.4.5"), None);
        assert_eq!(inet_aton("1.2.65536"), None);
        assert_eq!(inet_aton("github"), None);
        assert_eq!(inet_aton(""), None);
    }

    #[test]
    fn names_that_resolve_inside_the_host_are_refused() {
        // `localhost` is caught on its text; a name the resolver maps to loopback
        // (Debian's /etc/hosts lists the machine's own name) only when resolved.
        let err = check_resolved("https://localhost/r.git").unwrap_err();
        assert!(matches!(err, GitHostError::Local { .. }), "{err}");
        let own_name = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let own_name = own_name.trim();
        let resolves_local = (own_name, 0)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.all(|a| is_local(a.ip())));
        if !own_name.is_empty() && resolves_local {
            let err = check_resolved(&format!("https://{own_name}/r.git")).unwrap_err();
            assert!(
                matches!(err, GitHostError::ResolvesLocal { .. }),
                "{own_name}: {err}"
            );
        }
        check_resolved("https://10.0.0.5/r.git").unwrap();
        check_resolved("file:///tmp/repo").unwrap();
    }
}
