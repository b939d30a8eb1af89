//! `--web.config.file` in exporter-toolkit's format, so a host reuses the file its other exporters use:
//! `tls_server_config` (certificate and key, client certificate checks, allowed SANs, TLS versions, cipher
//! suites, curves), `http_server_config.headers`, and bcrypt `basic_auth_users`. Like exporter-toolkit, the
//! file and the certificates are read again when they change, so renewed certificates need no restart.
//!
//! What exporter-toolkit refuses when it loads the file is refused here too (a hash that is not bcrypt, an
//! unknown cipher suite, curve or TLS version, a client CA without `client_auth_type`, a header or header
//! value it does not allow, an unknown key). A setting it accepts but promsd cannot honor is refused with a
//! message saying so, rather than dropped: Go cipher suites and curves that rustls does not implement, TLS
//! 1.0 and 1.1, and `rate_limit`. Where exporter-toolkit accepts something that cannot work (client
//! certificate verification without a CA, which Go checks against the system roots; `client_allowed_sans`
//! without a client certificate being asked for, which Go then ignores; TLS settings without a
//! certificate, which Go serves as plain HTTP; min_version above max_version), promsd refuses it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{CipherSuite, NamedGroup, RootCertStore, ServerConfig, SupportedCipherSuite};
use serde::Deserialize;
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

/// Response headers exporter-toolkit allows to be set (names compared exactly, as it does), with the values
/// it allows where it restricts them.
const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Content-Security-Policy", &[]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-XSS-Protection", &[]),
    ("Strict-Transport-Security", &[]),
];

/// The cipher suites exporter-toolkit accepts: Go's `tls.CipherSuites()` (its insecure list is refused as
/// unknown), with the rustls suite when rustls (ring) implements it.
const GO_CIPHER_SUITES: [(&str, Option<CipherSuite>); 17] = [
    ("TLS_AES_128_GCM_SHA256", Some(CipherSuite::TLS13_AES_128_GCM_SHA256)),
    ("TLS_AES_256_GCM_SHA384", Some(CipherSuite::TLS13_AES_256_GCM_SHA384)),
    ("TLS_CHACHA20_POLY1305_SHA256", Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256)),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", Some(CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", None),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", None),
];

/// The curves exporter-toolkit accepts, with the rustls group when rustls (ring) implements it.
const GO_CURVES: [(&str, Option<NamedGroup>); 4] = [
    ("X25519", Some(NamedGroup::X25519)),
    ("CurveP256", Some(NamedGroup::secp256r1)),
    ("CurveP384", Some(NamedGroup::secp384r1)),
    ("CurveP521", None),
];

/// Why a web config file cannot be used. At startup the agent does not start; on a reload the previous
/// configuration stays in force.
#[derive(Debug, Error)]
pub enum WebConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: serde_norway::Error },
    #[error(
        "{path}: HTTP header {name:?} can not be configured (allowed: {})",
        ALLOWED_HEADERS.map(|(h, _)| h).join(", ")
    )]
    Header { path: PathBuf, name: String },
    #[error("{path}: invalid value {value:?} for header {name} (allowed: {})", allowed.join(", "))]
    HeaderValue { path: PathBuf, name: String, value: String, allowed: &'static [&'static str] },
    #[error("{path}: basic_auth_users: the password of {user:?} {source}")]
    User { path: PathBuf, user: String, source: HashError },
    #[error("{path}: rate_limit (interval {interval}) is not supported by promsd; remove it from the file")]
    RateLimit { path: PathBuf, interval: String },
    #[error("{path}: {source}")]
    Tls { path: PathBuf, source: TlsConfigError },
    #[error("{0}")]
    DummyHash(#[source] bcrypt::BcryptError),
}

/// Why a `basic_auth_users` value is refused. The first five are the checks exporter-toolkit makes at load
/// (Go's `bcrypt.Cost`), in its order; the last is a hash those accept but the bcrypt crate cannot read, which
/// could never match a password.
#[derive(Debug, Error)]
pub enum HashError {
    #[error("is not a bcrypt hash: {len} bytes is too short (a bcrypt hash has 60)")]
    TooShort { len: usize },
    #[error("is not a bcrypt hash: it must start with '$', not {0:?}")]
    Prefix(char),
    #[error("is not a bcrypt hash: version '{0}' is newer than '2'")]
    Version(char),
    #[error("is not a bcrypt hash: cost {0:?} is not a number")]
    CostSyntax(String),
    #[error("is a bcrypt hash whose cost {0} is outside the allowed range (4,31)")]
    Cost(i64),
    #[error("is a bcrypt hash promsd cannot read: {0}")]
    Unreadable(#[source] bcrypt::BcryptError),
}

/// What is wrong with `tls_server_config`, or with the certificate and key it names (also when they are read
/// again after a change, which keeps the previous certificate).
#[derive(Debug, Error)]
pub enum TlsConfigError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("tls_server_config needs {what}_file (or {what})")]
    Missing { what: &'static str },
    #[error("tls_server_config sets {setting} but no certificate (cert_file and key_file); set them, or remove it")]
    NoCertificate { setting: &'static str },
    #[error(
        "client_ca_file (or client_ca) is set but client_auth_type is not: client CAs have been configured without a client auth policy"
    )]
    CaWithoutPolicy,
    #[error(
        "client_auth_type {0:?} verifies client certificates and needs client_ca_file (or client_ca); promsd does not fall back to the system roots as Go does"
    )]
    VerifyWithoutCa(ClientAuth),
    #[error(
        "client_allowed_sans needs client_auth_type to ask for a client certificate (it is {0:?}, with which exporter-toolkit ignores the SANs)"
    )]
    SansWithoutClientCert(ClientAuth),
    #[error("unknown curve {0:?} (X25519, CurveP256, CurveP384)")]
    Curve(String),
    #[error("curve {0} is not supported by promsd (rustls implements X25519, CurveP256, CurveP384)")]
    UnsupportedCurve(String),
    #[error("unknown TLS version {0:?} for {1} (TLS12, TLS13)")]
    Version(String, &'static str),
    #[error("{1} {0} is not supported by promsd: rustls implements TLS 1.2 and 1.3 only (use TLS12 or TLS13)")]
    OldVersion(String, &'static str),
    #[error("min_version TLS1{min} is above max_version TLS1{max}")]
    VersionRange { min: u8, max: u8 },
    #[error("unknown cipher suite {0:?} (Go's crypto/tls names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")]
    Cipher(String),
    #[error(
        "cipher suite {0} is not supported by promsd (rustls implements ECDHE with AES-GCM or ChaCha20-Poly1305 only)"
    )]
    UnsupportedCipher(String),
    #[error(
        "cipher_suites names no TLS 1.2 suite, so TLS 1.2 (allowed by min_version) would fail; add one, or set min_version: TLS13"
    )]
    NoTls12Cipher,
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
    /// exporter-toolkit 0.15's request rate limit: accepted only when it limits nothing (promsd has none).
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub burst: Option<i64>,
    /// A Go duration (a string such as "1s", or nanoseconds); zero means no limit.
    pub interval: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// The file wins when both a file and inline PEM are given, as in exporter-toolkit.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_auth_type: Option<ClientAuth>,
    pub client_ca_file: Option<PathBuf>,
    pub client_ca: Option<String>,
    /// Matched exactly against the client certificate's DNS, IP and URI SANs (not e-mail ones).
    #[serde(default)]
    pub client_allowed_sans: Vec<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// Go's names; like Go, the list governs TLS 1.2 only (TLS 1.3 suites are always on) and its order is
    /// not a preference.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    /// Ignored, as Go (since 1.17) ignores it.
    pub prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    #[default]
    #[serde(alias = "")]
    NoClientCert,
    RequestClientCert,
    /// exporter-toolkit still reads the old name `RequireClientCert`.
    #[serde(alias = "RequireClientCert")]
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for exporter-toolkit's files, but the agent serves HTTP/1.1 only (its ALPN offers no h2),
    /// so `http2: true` (exporter-toolkit's default) still gives HTTP/1.1; `false` is honored as is.
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
        for (name, value) in &config.http_server_config.headers {
            let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(h, _)| h == name) else {
                return Err(WebConfigError::Header { path: path.into(), name: name.clone() });
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(WebConfigError::HeaderValue {
                    path: path.into(),
                    name: name.clone(),
                    value: value.clone(),
                    allowed,
                });
            }
        }
        for (user, hash) in &config.basic_auth_users {
            check_hash(hash).map_err(|source| WebConfigError::User {
                path: path.into(),
                user: user.clone(),
                source,
            })?;
        }
        if let Some(interval) = config.rate_limit.as_ref().and_then(|r| r.interval.as_ref())
            && !is_zero_duration(interval)
        {
            let interval = serde_norway::to_string(interval).unwrap_or_default().trim().to_string();
            return Err(WebConfigError::RateLimit { path: path.into(), interval });
        }
        let tls = match &mut config.tls_server_config {
            Some(tls) => {
                // Relative paths are relative to the web config file, as in exporter-toolkit.
                for file in [&mut tls.cert_file, &mut tls.key_file, &mut tls.client_ca_file].into_iter().flatten() {
                    if file.is_relative() {
                        *file = dir.join(&*file);
                    }
                }
                acceptor(tls).map_err(|source| WebConfigError::Tls { path: path.into(), source })?
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
        let digest = ring::digest::digest(&ring::digest::SHA256, &password).as_ref().to_vec();
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

    /// Whether a client certificate has one of `client_allowed_sans`. Like exporter-toolkit, a SAN is
    /// compared as a string, so an allowed `a.example` does not match a certificate for `*.example`.
    pub fn san_allowed(&self, peer: Option<&CertificateDer<'_>>) -> bool {
        let Some(tls) = &self.config.tls_server_config else { return true };
        if tls.client_allowed_sans.is_empty() {
            return true;
        }
        let Some(cert) = peer.and_then(|der| webpki::EndEntityCert::try_from(der).ok()) else { return false };
        tls.client_allowed_sans.iter().any(|san| {
            cert.valid_dns_names().any(|name| name == san)
                || cert.valid_uri_names().any(|uri| uri == san)
                // An IP address matches only its own IP SAN, so the webpki check is an exact one.
                || san.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                    cert.verify_is_valid_for_subject_name(&ServerName::IpAddress(ip.into())).is_ok()
                })
        })
    }
}

/// exporter-toolkit's check of a password hash at load (Go's `bcrypt.Cost`: length, `$`, version, a
/// two-digit cost from 4 to 31), then whether the bcrypt crate can read it.
fn check_hash(hash: &str) -> Result<(), HashError> {
    let bytes = hash.as_bytes();
    // Go's minimum hash size: "$2a$10$" and 52 characters of salt and hash.
    if bytes.len() < 59 {
        return Err(HashError::TooShort { len: bytes.len() });
    }
    if bytes[0] != b'$' {
        return Err(HashError::Prefix(char::from(bytes[0])));
    }
    if bytes[1] > b'2' {
        return Err(HashError::Version(char::from(bytes[1])));
    }
    let cost_at = if bytes[2] == b'$' { 3 } else { 4 };
    let cost = String::from_utf8_lossy(&bytes[cost_at..cost_at + 2]).into_owned();
    // Go's strconv.Atoi, which takes a sign.
    let cost_value: i64 = cost.parse().map_err(|_| HashError::CostSyntax(cost.clone()))?;
    if !(4..=31).contains(&cost_value) {
        return Err(HashError::Cost(cost_value));
    }
    hash.parse::<bcrypt::HashParts>().map_err(HashError::Unreadable)?;
    Ok(())
}

/// Whether a Go duration from YAML is zero, which turns exporter-toolkit's rate limit off.
fn is_zero_duration(value: &serde_norway::Value) -> bool {
    match value {
        serde_norway::Value::Null => true,
        serde_norway::Value::Number(n) => n.as_f64() == Some(0.0),
        serde_norway::Value::String(s) => {
            let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == 'µ');
            !digits.is_empty() && digits.chars().all(|c| c == '0' || c == '.')
        }
        _ => false,
    }
}

/// The user and password of an `Authorization: Basic` header; the scheme is case-insensitive, as in Go's
/// net/http (RFC 7617).
fn parse_basic(header: &str) -> Option<(String, Vec<u8>)> {
    use base64::Engine;
    let (scheme, encoded) = header.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// PEM from a file or inline; the file wins when both are given, as in exporter-toolkit.
fn pem_or_file(inline: &Option<String>, file: &Option<PathBuf>, what: &'static str) -> Result<Vec<u8>, TlsConfigError> {
    match (file, inline) {
        (Some(path), _) => {
            std::fs::read(path).map_err(|source| TlsConfigError::Read { what, path: path.clone(), source })
        }
        (None, Some(text)) => Ok(text.clone().into_bytes()),
        (None, None) => Err(TlsConfigError::Missing { what }),
    }
}

/// A TLS version name from the file: 12 or 13.
fn version(name: &Option<String>, field: &'static str, default: u8) -> Result<u8, TlsConfigError> {
    match name.as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(old @ ("TLS10" | "TLS11")) => Err(TlsConfigError::OldVersion(old.to_string(), field)),
        Some(other) => Err(TlsConfigError::Version(other.to_string(), field)),
    }
}

/// The TLS acceptor, or None when the section configures no TLS at all (exporter-toolkit then serves plain
/// HTTP).
fn acceptor(tls: &TlsServerConfig) -> Result<Option<TlsAcceptor>, TlsConfigError> {
    let enabled = tls.cert_file.is_some()
        || tls.cert.is_some()
        || tls.key_file.is_some()
        || tls.key.is_some()
        || tls.client_ca_file.is_some()
        || tls.client_ca.is_some()
        || tls.client_auth_type.is_some();
    if !enabled {
        // Go would serve plain HTTP and drop these silently; promsd says so instead.
        let settings = [
            ("min_version", tls.min_version.is_some()),
            ("max_version", tls.max_version.is_some()),
            ("cipher_suites", !tls.cipher_suites.is_empty()),
            ("curve_preferences", !tls.curve_preferences.is_empty()),
            ("client_allowed_sans", !tls.client_allowed_sans.is_empty()),
        ];
        return match settings.iter().find(|(_, set)| *set) {
            Some((setting, _)) => Err(TlsConfigError::NoCertificate { setting }),
            None => Ok(None),
        };
    }
    // exporter-toolkit's order: certificate, then key.
    if tls.cert_file.is_none() && tls.cert.is_none() {
        return Err(TlsConfigError::Missing { what: "cert" });
    }
    if tls.key_file.is_none() && tls.key.is_none() {
        return Err(TlsConfigError::Missing { what: "key" });
    }
    let client_auth = tls.client_auth_type.unwrap_or_default();
    let has_ca = tls.client_ca_file.is_some() || tls.client_ca.is_some();
    if has_ca && client_auth == ClientAuth::NoClientCert {
        return Err(TlsConfigError::CaWithoutPolicy);
    }
    if !tls.client_allowed_sans.is_empty() && client_auth == ClientAuth::NoClientCert {
        return Err(TlsConfigError::SansWithoutClientCert(client_auth));
    }

    let (min, max) = (version(&tls.min_version, "min_version", 12)?, version(&tls.max_version, "max_version", 13)?);
    if min > max {
        return Err(TlsConfigError::VersionRange { min: min - 10, max: max - 10 });
    }
    let mut provider = rustls::crypto::ring::default_provider();
    if !tls.cipher_suites.is_empty() {
        let mut wanted = Vec::new();
        for name in &tls.cipher_suites {
            match GO_CIPHER_SUITES.iter().find(|(go, _)| go == name) {
                Some((_, Some(suite))) => wanted.push(*suite),
                Some((_, None)) => return Err(TlsConfigError::UnsupportedCipher(name.clone())),
                None => return Err(TlsConfigError::Cipher(name.clone())),
            }
        }
        provider.cipher_suites.retain(|s| matches!(s, SupportedCipherSuite::Tls13(_)) || wanted.contains(&s.suite()));
        let tls12 = provider.cipher_suites.iter().any(|s| matches!(s, SupportedCipherSuite::Tls12(_)));
        if min <= 12 && !tls12 {
            return Err(TlsConfigError::NoTls12Cipher);
        }
    }
    if !tls.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for curve in &tls.curve_preferences {
            let group = match GO_CURVES.iter().find(|(go, _)| go == curve) {
                Some((_, Some(group))) => *group,
                Some((_, None)) => return Err(TlsConfigError::UnsupportedCurve(curve.clone())),
                None => return Err(TlsConfigError::Curve(curve.clone())),
            };
            groups.extend(provider.kx_groups.iter().filter(|g| g.name() == group).copied());
        }
        provider.kx_groups = groups;
    }
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
    let builder = match client_auth {
        ClientAuth::NoClientCert => builder.with_no_client_auth(),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            if !has_ca {
                return Err(TlsConfigError::VerifyWithoutCa(client_auth));
            }
            let ca = pem_or_file(&tls.client_ca, &tls.client_ca_file, "client_ca")?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca) {
                roots.add(cert.map_err(TlsConfigError::ClientCaPem)?).map_err(TlsConfigError::ClientCa)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if client_auth == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(TlsConfigError::ClientVerifier)?)
        }
        // Go's RequestClientCert / RequireAnyClientCert: a certificate is asked for (or required) but not
        // checked against a CA; client_allowed_sans can still restrict it. A CA file named is still read, as
        // exporter-toolkit reads it, so a missing one is an error.
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            if has_ca {
                pem_or_file(&tls.client_ca, &tls.client_ca_file, "client_ca")?;
            }
            builder.with_client_cert_verifier(Arc::new(AnyClientCert {
                provider: provider.clone(),
                required: client_auth == ClientAuth::RequireAnyClientCert,
            }))
        }
    };
    let resolver = ReloadingCert::new(tls.clone(), provider)?;
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
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

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use base64::Engine;

    use super::*;

    /// Certificates for every test: a CA, a server certificate, and client certificates with a wildcard DNS
    /// SAN, a plain DNS SAN and an IP SAN.
    fn certs() -> &'static Path {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        DIR.get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            promsd_tests::tls::make_certificates(
                dir.path(),
                &[("wild", "DNS:*.b.example"), ("plain", "DNS:a.example,URI:spiffe://a/b"), ("ip", "IP:10.0.0.1")],
            );
            dir
        })
        .path()
    }

    /// Loads `yaml` written as a web config file next to the test certificates.
    fn load(yaml: &str) -> Result<Web, WebConfigError> {
        let dir = tempfile::tempdir_in(certs()).expect("temp dir");
        let path = dir.path().join("web.yml");
        std::fs::write(&path, yaml).expect("write");
        Web::load(&path)
    }

    fn tls(extra: &str) -> String {
        let d = certs().display();
        format!("tls_server_config:\n  cert_file: {d}/server.pem\n  key_file: {d}/server.key\n{extra}")
    }

    fn refused(yaml: &str) -> String {
        match load(yaml) {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(e) => {
                let message = e.to_string();
                assert!(message.contains("web.yml"), "{message} does not name the file");
                message
            }
        }
    }

    fn user(hash: &str) -> String {
        format!("basic_auth_users:\n  alice: '{hash}'\n")
    }

    #[test]
    fn basic_auth_users_must_be_bcrypt_hashes_go_can_read() {
        let tail = "a".repeat(53);
        for (hash, expect) in [
            ("doe".to_string(), "too short"),
            (format!("x2y$10${tail}"), "must start with '$'"),
            (format!("$3y$10${tail}"), "version '3' is newer"),
            (format!("$2y$1x${tail}"), "cost \"1x\" is not a number"),
            (format!("$2y$03${tail}"), "cost 3 is outside the allowed range (4,31)"),
            (format!("$2y$32${tail}"), "cost 32 is outside"),
            // Go's check at load passes (it reads only the version and cost), but it is no bcrypt hash.
            (format!("$2y$10$!{}", "a".repeat(52)), "promsd cannot read"),
        ] {
            let message = refused(&user(&hash));
            assert!(message.contains("\"alice\"") && message.contains(expect), "{hash}: {message}");
        }
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        load(&user(&hash)).expect("a bcrypt hash");
        load(&user(&hash.replacen("$2b$", "$2y$", 1))).expect("htpasswd's $2y$");
    }

    #[test]
    fn the_basic_scheme_is_case_insensitive() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let web = load(&user(&hash)).expect("load");
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            assert!(web.authorized(Some(&format!("{scheme} {}", encode("alice:s3cret")))), "{scheme}");
        }
        assert!(!web.authorized(Some(&format!("Basic {}", encode("alice:wrong")))));
        assert!(!web.authorized(Some(&format!("Basic {}", encode("bob:s3cret")))));
        assert!(!web.authorized(Some(&format!("Bearer {}", encode("alice:s3cret")))));
        assert!(!web.authorized(Some("Basic")));
        assert!(!web.authorized(None));
    }

    #[test]
    fn cipher_suites_are_go_names_rustls_implements() {
        for (suites, expect) in [
            ("[TLS_FOO]", "unknown cipher suite \"TLS_FOO\""),
            // Go's old alias is a constant but not a name tls.CipherSuites() gives.
            ("[TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305]", "unknown cipher suite"),
            // Go's insecure list, which exporter-toolkit refuses as unknown.
            ("[TLS_RSA_WITH_RC4_128_SHA]", "unknown cipher suite"),
            (
                "[TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_GCM_SHA256]",
                "cipher suite TLS_RSA_WITH_AES_128_GCM_SHA256 is not supported by promsd",
            ),
            ("[TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not supported by promsd"),
            ("[TLS_AES_128_GCM_SHA256]", "no TLS 1.2 suite"),
        ] {
            let message = refused(&tls(&format!("  cipher_suites: {suites}\n")));
            assert!(message.contains(expect), "{suites}: {message}");
        }
        load(&tls("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n  min_version: TLS13\n")).expect("TLS 1.3 only");
        load(&tls("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256]\n"))
            .expect("supported suites");
    }

    #[test]
    fn versions_and_curves_are_exporter_toolkit_names_rustls_implements() {
        for (extra, expect) in [
            ("  min_version: TLS10\n", "min_version TLS10 is not supported by promsd: rustls implements TLS 1.2"),
            ("  max_version: TLS11\n", "max_version TLS11 is not supported by promsd"),
            ("  min_version: TLS14\n", "unknown TLS version \"TLS14\""),
            ("  min_version: tls12\n", "unknown TLS version"),
            ("  min_version: TLS13\n  max_version: TLS12\n", "min_version TLS13 is above max_version TLS12"),
            ("  curve_preferences: [CurveP521]\n", "curve CurveP521 is not supported by promsd"),
            ("  curve_preferences: [P256]\n", "unknown curve \"P256\""),
        ] {
            let message = refused(&tls(extra));
            assert!(message.contains(expect), "{extra}: {message}");
        }
        load(&tls("  min_version: TLS12\n  max_version: TLS13\n  curve_preferences: [X25519, CurveP384]\n"))
            .expect("supported versions and curves");
    }

    #[test]
    fn client_certificate_settings_must_fit_together() {
        let d = certs().display();
        let ca = std::fs::read_to_string(certs().join("ca.pem")).expect("ca");
        let inline_ca = format!("  client_ca: |\n{}", ca.lines().map(|l| format!("    {l}\n")).collect::<String>());
        for (yaml, expect) in [
            (tls(&format!("  client_ca_file: {d}/ca.pem\n")), "without a client auth policy"),
            (tls(&inline_ca), "without a client auth policy"),
            (tls(&format!("  client_ca_file: {d}/ca.pem\n  client_auth_type: NoClientCert\n")), "client auth policy"),
            (tls("  client_auth_type: RequireAndVerifyClientCert\n"), "needs client_ca_file"),
            (tls("  client_auth_type: VerifyClientCertIfGiven\n"), "needs client_ca_file"),
            (tls("  client_auth_type: Bogus\n"), "unknown variant"),
            (tls("  client_allowed_sans: [a.example]\n"), "client_allowed_sans needs client_auth_type"),
            (tls("  client_auth_type: RequestClientCert\n  client_ca_file: missing.pem\n"), "cannot read client_ca"),
            (format!("tls_server_config:\n  cert_file: {d}/server.pem\n"), "needs key_file"),
            (format!("tls_server_config:\n  key_file: {d}/server.key\n"), "needs cert_file"),
            (format!("tls_server_config:\n  client_ca_file: {d}/ca.pem\n"), "needs cert_file"),
            ("tls_server_config:\n  min_version: TLS13\n".to_string(), "sets min_version but no certificate"),
        ] {
            let message = refused(&yaml);
            assert!(message.contains(expect), "{yaml}: {message}");
        }
        for extra in [
            format!("  client_ca_file: {d}/ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n"),
            format!("  client_ca_file: {d}/ca.pem\n  client_auth_type: VerifyClientCertIfGiven\n"),
            format!("{inline_ca}  client_auth_type: RequireAndVerifyClientCert\n  client_allowed_sans: [a.example]\n"),
            "  client_auth_type: RequireClientCert\n".to_string(),
            "  client_auth_type: RequestClientCert\n  client_allowed_sans: [a.example]\n".to_string(),
            // The file wins over inline PEM, as in exporter-toolkit.
            "  cert: not pem\n  key: not pem\n".to_string(),
        ] {
            let web = load(&tls(&extra)).unwrap_or_else(|e| panic!("{extra}: {e}"));
            assert!(web.tls.is_some());
        }
        let plain = load("tls_server_config: {}\n").expect("an empty TLS section");
        assert!(plain.tls.is_none(), "no TLS settings: plain HTTP, as exporter-toolkit serves");
    }

    #[test]
    fn client_allowed_sans_are_compared_exactly() {
        let der = |name: &str| {
            let pem = std::fs::read(certs().join(format!("{name}.pem"))).expect("pem");
            CertificateDer::from_pem_slice(&pem).expect("certificate")
        };
        let sans = |sans: &str| {
            load(&tls(&format!("  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: {sans}\n")))
                .expect("load")
        };
        let (wild, plain, ip) = (der("wild"), der("plain"), der("ip"));
        assert!(!sans("[c.b.example]").san_allowed(Some(&wild)), "a wildcard certificate is not c.b.example");
        assert!(sans("['*.b.example']").san_allowed(Some(&wild)));
        assert!(sans("[a.example]").san_allowed(Some(&plain)));
        assert!(sans("['spiffe://a/b']").san_allowed(Some(&plain)));
        assert!(!sans("[b.example]").san_allowed(Some(&plain)));
        assert!(sans("[10.0.0.1]").san_allowed(Some(&ip)));
        assert!(!sans("[10.0.0.2]").san_allowed(Some(&ip)));
        assert!(!sans("[a.example]").san_allowed(None));
    }

    #[test]
    fn keys_and_headers_are_exporter_toolkit_s() {
        for (yaml, expect) in [
            ("bogus: 1\n".to_string(), "unknown field `bogus`"),
            (tls("  bogus: 1\n"), "unknown field `bogus`"),
            ("http_server_config:\n  bogus: 1\n".to_string(), "unknown field `bogus`"),
            ("rate_limit:\n  burst: 5\n  interval: 1s\n".to_string(), "rate_limit (interval 1s) is not supported"),
            ("http_server_config:\n  headers:\n    x-frame-options: deny\n".to_string(), "can not be configured"),
            ("http_server_config:\n  headers:\n    Server: x\n".to_string(), "can not be configured"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: DENY\n".to_string(), "invalid value \"DENY\""),
            ("http_server_config:\n  headers:\n    X-Content-Type-Options: x\n".to_string(), "nosniff"),
        ] {
            let message = refused(&yaml);
            assert!(message.contains(expect), "{yaml}: {message}");
        }
        for yaml in [
            tls("  prefer_server_cipher_suites: false\n"),
            "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: sameorigin\n    X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000\n".to_string(),
            "rate_limit:\n  burst: 0\n  interval: 0s\n".to_string(),
            "rate_limit:\n  burst: 0\n".to_string(),
            "{}\n".to_string(),
        ] {
            load(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        }
    }
}
