//! `--web.config.file` in exporter-toolkit's format, so a host reuses the file its other exporters use:
//! `tls_server_config` (certificate and key, client certificate checks, allowed SANs, TLS versions, cipher
//! suites, curves), `http_server_config.headers`, and bcrypt `basic_auth_users`. Like exporter-toolkit, the
//! file and the certificates are read again when they change, so renewed certificates need no restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

/// Response headers exporter-toolkit allows to be set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

/// Why a web config file cannot be used. At startup the agent does not start; on a reload the previous
/// configuration stays in force.
#[derive(Debug, Error)]
pub enum WebConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: serde_norway::Error },
    #[error("{path}: header {name:?} may not be set (allowed: {})", ALLOWED_HEADERS.join(", "))]
    Header { path: PathBuf, name: String },
    #[error("{path}: {source}")]
    Tls { path: PathBuf, source: TlsConfigError },
    #[error("{0}")]
    DummyHash(#[source] bcrypt::BcryptError),
}

/// What is wrong with `tls_server_config`, or with the certificate and key it names (also when they are read
/// again after a change, which keeps the previous certificate).
#[derive(Debug, Error)]
pub enum TlsConfigError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("tls_server_config needs {what}_file (or {what})")]
    Missing { what: &'static str },
    #[error("unsupported curve {0:?} (X25519, CurveP256, CurveP384)")]
    Curve(String),
    #[error("unsupported TLS version {0:?} (TLS12, TLS13)")]
    Version(String),
    #[error("TLS settings: {0}")]
    Settings(#[source] rustls::Error),
    #[error("client CA: {0}")]
    ClientCaPem(#[source] pem::Error),
    #[error("client CA: {0}")]
    ClientCa(#[source] rustls::Error),
    #[error("client CA: {0}")]
    ClientVerifier(#[source] VerifierBuilderError),
    #[error("certificate: {0}")]
    Certificate(#[source] pem::Error),
    #[error("key: {0}")]
    Key(#[source] pem::Error),
    #[error("certificate and key: {0}")]
    CertifiedKey(#[source] rustls::Error),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    pub tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    pub http_server_config: HttpServerConfig,
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub cert: Option<String>,
    pub key: Option<String>,
    #[serde(default)]
    pub client_auth_type: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub client_ca: Option<String>,
    #[serde(default)]
    pub client_allowed_sans: Vec<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    pub prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    #[default]
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    pub http2: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The web configuration in force, with what was built from it.
pub struct Web {
    pub config: WebConfig,
    pub tls: Option<TlsAcceptor>,
    dummy_hash: String,
    checked: Mutex<HashMap<(String, Vec<u8>), bool>>,
}

impl Web {
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| WebConfigError::Read { path: path.into(), source })?;
        let mut config: WebConfig =
            serde_norway::from_str(&text).map_err(|source| WebConfigError::Parse { path: path.into(), source })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for name in config.http_server_config.headers.keys() {
            if !ALLOWED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return Err(WebConfigError::Header { path: path.into(), name: name.clone() });
            }
        }
        let tls = match &mut config.tls_server_config {
            Some(tls) => {
                // Relative paths are relative to the web config file, as in exporter-toolkit.
                for file in [&mut tls.cert_file, &mut tls.key_file, &mut tls.client_ca_file].into_iter().flatten() {
                    if file.is_relative() {
                        *file = dir.join(&*file);
                    }
                }
                Some(acceptor(tls).map_err(|source| WebConfigError::Tls { path: path.into(), source })?)
            }
            None => None,
        };
        let dummy_hash = bcrypt::hash("promsd: no such user", 10).map_err(WebConfigError::DummyHash)?;
        Ok(Self { config, tls, dummy_hash, checked: Mutex::new(HashMap::new()) })
    }

    /// Whether `authorization` (the header's value) names a configured user with the right password. Unknown
    /// users are checked against a dummy hash, so the time taken does not tell whether a user exists.
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        let users = &self.config.basic_auth_users;
        if users.is_empty() {
            return true;
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else { return false };
        let digest = ring::digest::digest(&ring::digest::SHA256, password.as_bytes()).as_ref().to_vec();
        let key = (user.clone(), digest);
        if let Some(known) = self.checked.lock().ok().and_then(|c| c.get(&key).copied()) {
            return known;
        }
        let (hash, exists) = match users.get(&user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.dummy_hash.as_str(), false),
        };
        let ok = bcrypt::verify(&password, hash).unwrap_or(false) && exists;
        if let Ok(mut checked) = self.checked.lock() {
            if checked.len() > 10_000 {
                checked.clear();
            }
            checked.insert(key, ok);
        }
        ok
    }

    /// Whether a client certificate is one of `client_allowed_sans` (DNS names and IP addresses).
    pub fn san_allowed(&self, peer: Option<&CertificateDer<'_>>) -> bool {
        let Some(tls) = &self.config.tls_server_config else { return true };
        if tls.client_allowed_sans.is_empty() {
            return true;
        }
        let Some(cert) = peer.and_then(|der| webpki::EndEntityCert::try_from(der).ok()) else { return false };
        tls.client_allowed_sans.iter().any(|san| {
            ServerName::try_from(san.as_str()).is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
        })
    }
}

fn parse_basic(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn pem_or_file(inline: &Option<String>, file: &Option<PathBuf>, what: &'static str) -> Result<Vec<u8>, TlsConfigError> {
    match (inline, file) {
        (Some(text), _) => Ok(text.clone().into_bytes()),
        (None, Some(path)) => {
            std::fs::read(path).map_err(|source| TlsConfigError::Read { what, path: path.clone(), source })
        }
        (None, None) => Err(TlsConfigError::Missing { what }),
    }
}

fn acceptor(tls: &TlsServerConfig) -> Result<TlsAcceptor, TlsConfigError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !tls.cipher_suites.is_empty() {
        // Go's names; like Go, the list governs TLS 1.2 only (TLS 1.3 suites are always on).
        provider.cipher_suites.retain(|suite| {
            let name = format!("{:?}", suite.suite());
            name.starts_with("TLS13_") || tls.cipher_suites.contains(&name)
        });
    }
    if !tls.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for curve in &tls.curve_preferences {
            let wanted = match curve.as_str() {
                "X25519" => "X25519",
                "CurveP256" => "secp256r1",
                "CurveP384" => "secp384r1",
                other => return Err(TlsConfigError::Curve(other.to_string())),
            };
            groups.extend(provider.kx_groups.iter().filter(|g| format!("{:?}", g.name()) == wanted).copied());
        }
        provider.kx_groups = groups;
    }
    let version = |v: &Option<String>, default: u8| match v.as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err(TlsConfigError::Version(other.to_string())),
    };
    let (min, max) = (version(&tls.min_version, 12)?, version(&tls.max_version, 13)?);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(TlsConfigError::Settings)?;
    let builder = match tls.client_auth_type {
        ClientAuth::NoClientCert => builder.with_no_client_auth(),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let ca = pem_or_file(&tls.client_ca, &tls.client_ca_file, "client_ca")?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca) {
                roots.add(cert.map_err(TlsConfigError::ClientCaPem)?).map_err(TlsConfigError::ClientCa)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if tls.client_auth_type == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(TlsConfigError::ClientVerifier)?)
        }
        // Go's RequestClientCert / RequireAnyClientCert: a certificate is asked for (or required) but not
        // checked against a CA; client_allowed_sans can still restrict it.
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            builder.with_client_cert_verifier(Arc::new(AnyClientCert {
                provider: provider.clone(),
                required: tls.client_auth_type == ClientAuth::RequireAnyClientCert,
            }))
        }
    };
    let resolver = ReloadingCert::new(tls.clone(), provider)?;
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The server certificate, read again on a handshake after its files changed.
#[derive(Debug)]
struct ReloadingCert {
    tls: TlsServerConfig,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Option<SystemTime>, Arc<rustls::sign::CertifiedKey>)>,
}

impl ReloadingCert {
    fn new(tls: TlsServerConfig, provider: Arc<CryptoProvider>) -> Result<Self, TlsConfigError> {
        let key = certified_key(&tls, &provider)?;
        let stamp = stamp(&tls);
        Ok(Self { tls, provider, current: Mutex::new((stamp, Arc::new(key))) })
    }
}

fn stamp(tls: &TlsServerConfig) -> Option<SystemTime> {
    [&tls.cert_file, &tls.key_file]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

fn certified_key(
    tls: &TlsServerConfig,
    provider: &CryptoProvider,
) -> Result<rustls::sign::CertifiedKey, TlsConfigError> {
    let cert = pem_or_file(&tls.cert, &tls.cert_file, "cert")?;
    let key = pem_or_file(&tls.key, &tls.key_file, "key")?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert).collect::<Result<_, _>>().map_err(TlsConfigError::Certificate)?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(TlsConfigError::Key)?;
    rustls::sign::CertifiedKey::from_der(chain, key, provider).map_err(TlsConfigError::CertifiedKey)
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let mut current = self.current.lock().ok()?;
        let stamp = stamp(&self.tls);
        if stamp != current.0 {
            match certified_key(&self.tls, &self.provider) {
                Ok(key) => *current = (stamp, Arc::new(key)),
                Err(e) => tracing::warn!(error = %e, "cannot reload the TLS certificate; keeping the previous one"),
            }
        }
        Some(current.1.clone())
    }
}

/// Accepts any client certificate (still checking the handshake signature made with its key).
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
    required: bool,
}

impl rustls::server::danger::ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }
}
