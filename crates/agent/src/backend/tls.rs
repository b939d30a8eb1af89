//! TLS to an exporter that serves https itself (`scheme: https` in an http module): each module builds its
//! own client from its own settings, once per load of the configuration, with promsd-client's one TLS path.

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

pub use promsd_client::tls::{TlsError, TlsFiles};

use crate::config::HttpModule;

/// The name the exporter's certificate is checked for: `server_name`, else the address.
pub fn server_name(http: &HttpModule) -> Result<ServerName<'static>, TlsError> {
    promsd_client::tls::server_name(http.server_name.clone().unwrap_or_else(|| http.address.clone()))
}

pub fn connector(http: &HttpModule) -> Result<TlsConnector, TlsError> {
    promsd_client::tls::client(&TlsFiles {
        ca: http.tls_ca_file.as_deref(),
        cert: http.tls_cert_file.as_deref(),
        key: http.tls_key_file.as_deref(),
        insecure_skip_verify: http.tls_insecure_skip_verify,
    })
}
