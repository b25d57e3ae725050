//! HTTPS on devbox's TCP port (`server.tls`): the certificate and key, read once at
//! start into a rustls server configuration (a missing, unreadable or mismatched file
//! stops `serve` with the field and file it came from), and each connection's
//! handshake.
//!
//! The handshake runs in the connection's own task, never in the accept loop, so a
//! client that connects and says nothing holds only its own connection, and only for
//! as long as the caller's deadline. A client that speaks plain HTTP to this port gets
//! a plain-text 400 saying to use `https://`, rather than a reset it cannot explain.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsSettings;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Most of a plain-HTTP request read before it is answered.
const PLAIN_REQUEST_LIMIT: usize = 8 * 1024;
/// What a plain-HTTP request to the TLS port is told.
const PLAIN_HTTP_ANSWER: &str =
    "devbox speaks HTTPS on this port: open the same address with https:// instead of http://\n";

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls.{field}: cannot read {}: {source}", path.display())]
    Read {
        field: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("server.tls.cert: {} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("server.tls.cert: {} is not a usable PEM certificate chain: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("server.tls.key: {} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "server.tls.key: {} is not the key of the certificate in server.tls.cert ({})",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("server.tls: cannot set up TLS with {}: {source}", cert.display())]
    Setup {
        cert: PathBuf,
        source: rustls::Error,
    },
}

/// Accepts TLS connections with the configured certificate. Cloning is cheap (one
/// shared configuration).
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Reads and checks the certificate chain and key that `settings` name.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let chain = read_chain(&settings.cert)?;
        let key = read_key(&settings.key)?;
        let provider = Arc::new(ring_provider());
        check_pair(&provider, settings, &chain, &key)?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|source| TlsError::Setup {
                cert: settings.cert.clone(),
                source,
            })?;
        // devbox's server speaks HTTP/1.1 only (WebSockets upgrade from it).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The TLS stream of `stream`, once its handshake is done; `None` when the client
    /// spoke plain HTTP (and was told to use https), or the handshake failed. The
    /// caller bounds how long this may take.
    pub async fn handshake(&self, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) => return None,
            Ok(_) if first[0] == TLS_HANDSHAKE_RECORD => {}
            Ok(_) => {
                answer_plain_http(stream).await;
                return None;
            }
            Err(err) => {
                tracing::debug!(%err, "connection lost before its TLS handshake");
                return None;
            }
        }
        match self.acceptor.accept(stream).await {
            Ok(tls) => Some(tls),
            Err(err) => {
                // An untrusted certificate shows here as the client's alert.
                tracing::debug!(%err, "TLS handshake failed");
                None
            }
        }
    }
}

/// rustls's *ring* provider, which devbox uses on both ends (its CLI through ureq and
/// tungstenite too). rustls marks it deprecated for want of post-quantum key exchange;
/// aws-lc-rs, which has it, builds with cmake and minutes more of C. Classical
/// X25519/ECDHE key exchange stays sound against today's attackers.
#[allow(deprecated)]
pub fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificates of the PEM file `path`, the server's own first.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, "cert")?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::BadCertificate {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// The first private key of the PEM file `path`.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| TlsError::BadKey {
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

fn read(path: &Path, field: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        field,
        path: path.to_owned(),
        source,
    })
}

/// Refuses a key that `provider` cannot sign with, a first certificate that does not
/// parse, and a key that is not the certificate's: each with the file at fault.
fn check_pair(
    provider: &CryptoProvider,
    settings: &TlsSettings,
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), TlsError> {
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|err| TlsError::BadKey {
            path: settings.key.clone(),
            reason: err.to_string(),
        })?;
    match CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: settings.cert.clone(),
            key: settings.key.clone(),
        }),
        Err(err) => Err(TlsError::BadCertificate {
            path: settings.cert.clone(),
            reason: err.to_string(),
        }),
    }
}

/// Reads the start of a plain-HTTP request (its head, as far as it fits) and answers
/// 400 with [`PLAIN_HTTP_ANSWER`]. Reading first lets the answer arrive: a socket
/// closed with unread data sends a reset, which many clients show instead.
async fn answer_plain_http(mut stream: TcpStream) {
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while request.len() < PLAIN_REQUEST_LIMIT && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PLAIN_HTTP_ANSWER}",
        PLAIN_HTTP_ANSWER.len()
    );
    if stream.write_all(answer.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
    tracing::debug!("answered a plain-HTTP request on the HTTPS port");
}
