//! The `server.tls` section: the certificate and key devbox serves HTTPS (and WSS) with
//! on its TCP port. The files are named here and read when `serve` starts
//! ([`crate::http::tls`]), where a missing or unreadable one stops devbox with the
//! field and file it came from.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// PEM files for HTTPS. Unset (the default), devbox speaks plain HTTP, as behind a TLS
/// proxy or on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain: the server's certificate first, then any intermediate
    /// CA certificates (a `fullchain.pem`). It must name every host people open devbox
    /// at (and `*.<host>` with `server.ide_subdomains`).
    pub cert: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1), readable by devbox only.
    pub key: PathBuf,
}

impl TlsSettings {
    /// Problems of this setting beside `public_url`, as (field, message).
    pub(super) fn problems(&self, public_url: Option<&str>) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (field, path) in [("cert", &self.cert), ("key", &self.key)] {
            if path.as_os_str().is_empty() {
                problems.push((format!("server.tls.{field}"), "must name a file".into()));
            }
        }
        if let Some(url) = public_url
            && !url
                .get(..8)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        {
            problems.push((
                "server.public_url".into(),
                format!(
                    "`{url}` is not an https:// URL, but server.tls makes devbox serve HTTPS: \
                     browsers would not send its Secure session cookies back over http"
                ),
            ));
        }
        problems
    }
}
