//! TLS clients from files: the CA to trust (or none checked, where asked for), the client certificate. An
//! https module of the agent and its gateway connection build theirs here, each from its own settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use thiserror::Error;
use tokio_rustls::TlsConnector;

/// Why a TLS client cannot be built from its settings.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{0}")]
    Protocols(#[source] rustls::Error),
    #[error("https needs a CA file")]
    NoCaFile,
    /// A PEM file (`tls_ca_file`, `tls_cert_file` or `tls_key_file`) cannot be read or parsed.
    #[error("{path}: {source}")]
    Pem { path: PathBuf, source: pem::Error },
    #[error("{0}")]
    CaCertificate(#[source] rustls::Error),
    #[error("{0}")]
    ClientCertificate(#[source] rustls::Error),
    #[error("server_name {name:?}: {source}")]
    ServerName { name: String, source: rustls::pki_types::InvalidDnsNameError },
}

/// `name` as the name a server's certificate is checked for.
pub fn server_name(name: String) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.clone()).map_err(|source| TlsError::ServerName { name, source })
}

/// The TLS settings of one client: an https module's, or the gateway connection's.
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// Certificates to trust; required unless `insecure_skip_verify`.
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub insecure_skip_verify: bool,
}

/// The one way the agent builds a TLS client.
pub fn client(files: &TlsFiles<'_>) -> Result<TlsConnector, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?;
    let builder = if files.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        let path = files.ca.ok_or(TlsError::NoCaFile)?;
        let pem = |source| TlsError::Pem { path: path.to_path_buf(), source };
        for cert in CertificateDer::pem_file_iter(path).map_err(pem)? {
            roots.add(cert.map_err(pem)?).map_err(TlsError::CaCertificate)?;
        }
        builder.with_root_certificates(roots)
    };
    let config = match (files.cert, files.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|source| TlsError::Pem { path: cert.to_path_buf(), source })?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|source| TlsError::Pem { path: key.to_path_buf(), source })?;
            builder.with_client_auth_cert(chain, key).map_err(TlsError::ClientCertificate)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `tls_insecure_skip_verify`: accept any certificate, still checking the handshake's signatures.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
