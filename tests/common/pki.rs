//! Certificates made for a test: a private CA and a server certificate it signed for
//! `localhost`, `127.0.0.1`, `devbox.localhost` and `*.devbox.localhost`, as PEM files
//! in a folder of their own, with a second CA and a key of no certificate to test
//! refusals.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The names the server certificate is for.
pub const SERVER_NAMES: [&str; 4] = [
    "localhost",
    "127.0.0.1",
    "devbox.localhost",
    "*.devbox.localhost",
];

/// PEM files in a temporary folder.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("devbox-pki-")
            .tempdir()
            .expect("temp dir");
        let (ca_params, ca_key) = ca("devbox test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let mut server = CertificateParams::new(
            SERVER_NAMES
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .expect("server names");
        server
            .distinguished_name
            .push(DnType::CommonName, "devbox test server");
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        let (other_params, other_key) = ca("another CA");
        let other_ca = other_params.self_signed(&other_key).expect("other CA");
        let stray_key = KeyPair::generate().expect("stray key");
        for (file, pem) in [
            ("ca.pem", ca_cert.pem()),
            ("cert.pem", server_cert.pem()),
            ("key.pem", server_key.serialize_pem()),
            ("other-ca.pem", other_ca.pem()),
            ("stray-key.pem", stray_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(file), pem).expect("write PEM");
        }
        Self { dir }
    }

    /// The CA that signed the server certificate.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server certificate.
    pub fn cert(&self) -> PathBuf {
        self.path("cert.pem")
    }

    /// The server certificate's key.
    pub fn key(&self) -> PathBuf {
        self.path("key.pem")
    }

    /// A CA that signed nothing of devbox's.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    /// A key that belongs to no certificate here.
    pub fn stray_key(&self) -> PathBuf {
        self.path("stray-key.pem")
    }

    /// The `server.tls` section for the server certificate, as a YAML flow mapping.
    pub fn tls_yaml(&self) -> String {
        tls_yaml(&self.cert(), &self.key())
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

/// `{cert: …, key: …}` for `server.tls`.
pub fn tls_yaml(cert: &Path, key: &Path) -> String {
    format!("{{cert: '{}', key: '{}'}}", cert.display(), key.display())
}

/// A CA's parameters, named `name`, and its key.
fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, KeyPair::generate().expect("CA key"))
}
