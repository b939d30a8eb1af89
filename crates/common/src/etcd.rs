//! How both binaries reach etcd: the flags and `ETCDCTL_*` variables etcdctl uses, turned into a client.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use thiserror::Error;

use crate::discovery::{self, DiscoveryError};
use crate::duration::parse_duration;

/// The endpoint etcdctl uses when it is given none.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";

#[derive(Debug, Error)]
pub enum EtcdError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("cannot read {what} {path}: {source}")]
    ReadFile { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {path} is not usable PEM: {problem}")]
    BadPem { what: &'static str, path: PathBuf, problem: String },
    #[error("--cert and --key must be given together")]
    CertWithoutKey,
    #[error("--user {0:?} has no password: use --user NAME:PASSWORD or --password")]
    NoPassword(String),
    #[error("invalid endpoint {0:?}: expected a URL such as http://127.0.0.1:2379")]
    Endpoint(String),
    #[error("etcd at {endpoints}: {source}")]
    Client { endpoints: String, source: etcd_client::Error },
}

/// etcd connection flags, shared by `registrar` and `dnsd`; each also read from the variable etcdctl uses.
/// `Debug` leaves the password out (also one given as `--user NAME:PASSWORD`).
#[derive(Clone, Default, PartialEq, Eq, clap::Args)]
pub struct EtcdArgs {
    /// etcd client URLs, comma separated [default: http://127.0.0.1:2379]
    #[arg(long, env = "ETCDCTL_ENDPOINTS", value_delimiter = ',', value_name = "URLS")]
    pub endpoints: Vec<String>,
    /// Domain whose _etcd-client-ssl._tcp / _etcd-client._tcp SRV records name the etcd endpoints
    #[arg(long, env = "ETCDCTL_DISCOVERY_SRV", value_name = "DOMAIN", conflicts_with = "endpoints")]
    pub discovery_srv: Option<String>,
    /// Suffix for the SRV service names, as etcdctl's --discovery-srv-name
    #[arg(long, env = "ETCDCTL_DISCOVERY_SRV_NAME", value_name = "NAME")]
    pub discovery_srv_name: Option<String>,
    /// CA bundle that verifies etcd's server certificate
    #[arg(long, env = "ETCDCTL_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate for etcd
    #[arg(long, env = "ETCDCTL_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client key for etcd
    #[arg(long, env = "ETCDCTL_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// etcd user, NAME or NAME:PASSWORD
    #[arg(long, env = "ETCDCTL_USER", value_name = "NAME[:PASSWORD]", hide_env_values = true)]
    pub user: Option<String>,
    /// Password for --user when it holds only the name
    #[arg(long, env = "ETCDCTL_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// How long one connection attempt to an endpoint may take
    #[arg(long, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
}

impl std::fmt::Debug for EtcdArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.user.as_deref().map(|u| u.split_once(':').map_or(u, |(name, _)| name));
        f.debug_struct("EtcdArgs")
            .field("endpoints", &self.endpoints)
            .field("discovery_srv", &self.discovery_srv)
            .field("discovery_srv_name", &self.discovery_srv_name)
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &user)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("dial_timeout", &self.dial_timeout)
            .finish()
    }
}

impl EtcdArgs {
    /// The endpoints to use: the given ones, those found by `--discovery-srv`, or etcdctl's default.
    pub async fn resolve_endpoints(&self) -> Result<Vec<String>, EtcdError> {
        if let Some(domain) = &self.discovery_srv {
            return Ok(discovery::etcd_client_endpoints(domain, self.discovery_srv_name.as_deref()).await?);
        }
        self.given_endpoints()
    }

    /// `--endpoints`, checked: each an http(s) URL with a host (etcdctl's default when none is given).
    fn given_endpoints(&self) -> Result<Vec<String>, EtcdError> {
        let endpoints: Vec<String> =
            self.endpoints.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
        if endpoints.is_empty() {
            return Ok(vec![DEFAULT_ENDPOINT.to_string()]);
        }
        for endpoint in &endpoints {
            let uri = endpoint.parse::<http::Uri>().ok();
            let scheme_ok = uri.as_ref().and_then(|u| u.scheme_str()).is_some_and(|s| s == "http" || s == "https");
            let host_ok = uri.as_ref().and_then(|u| u.host()).is_some_and(|h| !h.is_empty());
            if !scheme_ok || !host_ok || endpoint.contains(' ') {
                return Err(EtcdError::Endpoint(endpoint.clone()));
            }
        }
        Ok(endpoints)
    }

    /// Checks what no retry can fix, so a daemon can refuse to start with one line instead of retrying
    /// forever: the endpoints' form, and the files and credentials a connection needs.
    pub fn check(&self) -> Result<(), EtcdError> {
        if self.discovery_srv.is_none() {
            self.given_endpoints()?;
        }
        self.connect_options().map(|_| ())
    }

    /// Client options: credentials, TLS, and keepalives so a dead connection is noticed.
    pub fn connect_options(&self) -> Result<ConnectOptions, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.dial_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some(user) = &self.user {
            let (name, password) = match user.split_once(':') {
                Some((name, password)) => (name.to_string(), password.to_string()),
                None => match &self.password {
                    Some(password) => (user.clone(), password.clone()),
                    None => return Err(EtcdError::NoPassword(user.clone())),
                },
            };
            options = options.with_user(name, password);
        }
        if self.cacert.is_some() || self.cert.is_some() || self.key.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(path) = &self.cacert {
                tls = tls.ca_certificate(Certificate::from_pem(read_certificates("CA certificate", path)?));
            }
            match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => {
                    let (cert, key) = (read_certificates("certificate", cert)?, read_key(key)?);
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => return Err(EtcdError::CertWithoutKey),
            }
            options = options.with_tls(tls);
        }
        Ok(options)
    }

    /// Resolves the endpoints and builds a client. The connection itself is made lazily by the first request.
    pub async fn connect(&self) -> Result<(Client, Vec<String>), EtcdError> {
        self.connect_attempt(0).await
    }

    /// [`EtcdArgs::connect`] for attempt `attempt` (from 0) of a retry loop: the first attempt goes to every
    /// endpoint at once, each later one to one endpoint in turn. A fresh client over several endpoints can
    /// send its request to a member that refuses connections (a dead leader) again and again; trying them one
    /// by one reaches a live member within as many attempts as there are endpoints. Returns every endpoint,
    /// for messages.
    pub async fn connect_attempt(&self, attempt: usize) -> Result<(Client, Vec<String>), EtcdError> {
        let endpoints = self.resolve_endpoints().await?;
        let options = self.connect_options()?;
        let chosen: &[String] = match attempt {
            0 => &endpoints,
            n => std::slice::from_ref(&endpoints[(n - 1) % endpoints.len()]),
        };
        let client = Self::dial(chosen, options)
            .await
            .map_err(|source| EtcdError::Client { endpoints: endpoints.join(","), source })?;
        Ok((client, endpoints))
    }

    /// A client of `endpoint` alone (one of [`EtcdArgs::resolve_endpoints`]), to ask one member how it is.
    pub async fn connect_one(&self, endpoint: &str) -> Result<Client, EtcdError> {
        let options = self.connect_options()?;
        Self::dial(&[endpoint.to_string()], options)
            .await
            .map_err(|source| EtcdError::Client { endpoints: endpoint.to_string(), source })
    }

    async fn dial(endpoints: &[String], options: ConnectOptions) -> Result<Client, etcd_client::Error> {
        let dialed: Vec<String> = endpoints.iter().map(|e| dialable(e)).collect();
        Client::connect(&dialed, Some(options)).await
    }
}

/// Whether etcd refused a request in a way another attempt cannot change: wrong credentials, a user
/// without the role for the key, authentication asked of a cluster that has none, a malformed request.
pub fn is_permanent(error: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    use tonic::Code;
    match error {
        Error::GRpcStatus(status) => match status.code() {
            Code::PermissionDenied | Code::InvalidArgument | Code::Unauthenticated => true,
            // Credentials given to a cluster without authentication: etcdctl refuses them too.
            Code::FailedPrecondition => status.message().contains("authentication is not enabled"),
            _ => false,
        },
        Error::InvalidArgs(_) | Error::InvalidUri(_) => true,
        _ => false,
    }
}

/// A plain-HTTP endpoint at `localhost` is dialed at 127.0.0.1, which needs no resolver (RFC 6761), as the
/// seed's `endpoint http://localhost:2379` must work on a machine without /etc/hosts. TLS endpoints keep their
/// name: it is what the server's certificate is checked against.
fn dialable(endpoint: &str) -> String {
    let Some(rest) = endpoint.strip_prefix("http://") else { return endpoint.to_string() };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // An IPv6 literal ([::1]:2379) has colons of its own, and is never a name.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !authority.starts_with('[') => (host, format!(":{port}")),
        _ => (authority, String::new()),
    };
    match crate::localhost::loopback_for(host) {
        Some(_) => format!("http://127.0.0.1{port}{path}"),
        None => endpoint.to_string(),
    }
}

fn read(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::ReadFile { what, path: path.clone(), source })
}

/// A PEM file that holds at least one certificate, all of them readable: a broken file is found at start,
/// not as a handshake that fails on every retry.
fn read_certificates(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = read(what, path)?;
    let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certificates {
        Ok(found) if !found.is_empty() => Ok(pem),
        Ok(_) => Err(EtcdError::BadPem { what, path: path.clone(), problem: "no certificate in it".into() }),
        Err(e) => Err(EtcdError::BadPem { what, path: path.clone(), problem: e.to_string() }),
    }
}

fn read_key(path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let pem = read("key", path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => Ok(pem),
        Err(e) => Err(EtcdError::BadPem { what: "key", path: path.clone(), problem: e.to_string() }),
    }
}

/// The end of the key range holding every key that starts with `prefix` (etcd's WithPrefix).
pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // the empty prefix: every key
}

/// The innermost cause of an etcd error, which is what a person needs ("Connection refused"), instead of
/// tonic's nested debug rendering.
pub fn describe(error: &etcd_client::Error) -> String {
    let (head, mut source): (String, Option<&(dyn std::error::Error + 'static)>) = match error {
        etcd_client::Error::GRpcStatus(status) => (status.message().to_string(), std::error::Error::source(status)),
        other => (other.to_string(), std::error::Error::source(other)),
    };
    let mut innermost = None;
    while let Some(cause) = source {
        innermost = Some(cause);
        source = cause.source();
    }
    match innermost {
        Some(cause) if !head.contains(&cause.to_string()) => format!("{head}: {cause}"),
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::dialable;

    #[test]
    fn plain_localhost_endpoints_are_dialed_at_loopback() {
        assert_eq!(dialable("http://localhost:2379"), "http://127.0.0.1:2379");
        assert_eq!(dialable("http://LOCALHOST"), "http://127.0.0.1");
        for kept in ["https://localhost:2379", "http://etcd1:2379", "http://[::1]:2379", "http://10.0.0.1:2379"] {
            assert_eq!(dialable(kept), kept);
        }
    }
}
