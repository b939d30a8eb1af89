//! `method: http`: an exporter on this host (or next to it), reached the way exporter_exporter reaches it:
//! the client's query and headers passed on, the module's own path query, headers and credentials added.
//!
//! Each module builds one [`HttpBackend`] when the configuration is loaded: its TLS client from its own
//! settings, and its own idle keep-alive connections. A connection made under one module's TLS policy is
//! never handed to another module, whatever the order or concurrency of scrapes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio_rustls::TlsConnector;

use super::tls::{self, TlsError};
use super::{BackendError, Fetched, TEXT_FORMAT};
use crate::config::HttpModule;
use promsd_client::Idle;

/// Why no connection to the backend could be made.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("{0}")]
    Tcp(#[source] std::io::Error),
    #[error("TLS: {0}")]
    TlsHandshake(#[source] std::io::Error),
    #[error("{0}")]
    Http(#[source] hyper::Error),
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// Idle keep-alive connections kept per module.
const IDLE_PER_BACKEND: usize = 16;

/// Request headers not passed on: hop-by-hop ones (RFC 9110 section 7.6.1), those the proxy sets itself, and
/// the client's credentials for the agent (they are not the backend's).
const NOT_FORWARDED: [&str; 12] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "content-length",
];

/// What the client's request contributes.
pub struct Forward<'a> {
    /// Query parameters (decoded), without the `module` that chose the module.
    pub params: &'a [(String, String)],
    /// The `args` parameters, in order: an exec module's extra arguments.
    pub args: &'a [&'a str],
    pub headers: &'a HeaderMap,
    /// The client's address, appended to `X-Forwarded-For`; none for a scrape through a gateway (which
    /// appended Prometheus's address itself).
    pub peer: Option<IpAddr>,
    /// Headers the agent consumes itself (its token) and so never passes on.
    pub consumed: &'a [HeaderName],
}

pub struct HttpBackend {
    /// `address:port`, for messages and the default Host.
    backend: String,
    address: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    path: String,
    /// The module path's own `?query`, merged with the client's.
    own_params: Vec<(String, String)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    idle: Idle<Empty<Bytes>>,
}

impl HttpBackend {
    /// Builds the module's client; a CA or key file that cannot be used is an error now, not per scrape.
    pub fn new(http: &HttpModule) -> Result<Self, TlsError> {
        let tls = match http.scheme.as_str() {
            "https" => Some((tls::connector(http)?, tls::server_name(http)?)),
            _ => None,
        };
        let backend = format!("{}:{}", http.address, http.port);
        let (path, query) = http.path.split_once('?').unwrap_or((http.path.as_str(), ""));
        let own_params = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let mut host = HeaderValue::from_str(&backend).ok();
        let mut headers = Vec::new();
        // Checked when the configuration was parsed; anything unusable here is skipped rather than sent.
        for (name, value) in &http.headers {
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) else {
                continue;
            };
            if name == header::HOST {
                host = Some(value);
            } else {
                headers.push((name, value));
            }
        }
        let authorization = http.basic_auth_username.as_ref().and_then(|user| {
            use base64::Engine;
            let password = http.basic_auth_password.as_ref().map(|p| p.expose()).unwrap_or_default();
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut value = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Ok(Self {
            host: host.unwrap_or_else(|| HeaderValue::from_static("localhost")),
            backend,
            address: http.address.clone(),
            port: http.port,
            tls,
            path: path.to_string(),
            own_params,
            headers,
            authorization,
            idle: Idle::new(IDLE_PER_BACKEND),
        })
    }

    /// The request's target: the module's path, with the client's parameters and the module's own merged
    /// into one query, sorted by name as exporter_exporter (Go's `url.Values.Encode`) sends it.
    fn uri(&self, params: &[(String, String)]) -> Result<Uri, hyper::http::Error> {
        let mut merged: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, value) in params.iter().chain(&self.own_params) {
            merged.entry(name).or_default().push(value);
        }
        if merged.is_empty() {
            return Ok(Uri::try_from(self.path.as_str())?);
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, values) in &merged {
            for value in values {
                query.append_pair(name, value);
            }
        }
        Ok(Uri::try_from(format!("{}?{}", self.path, query.finish()))?)
    }

    fn request(&self, forward: &Forward<'_>) -> Result<Request<Empty<Bytes>>, hyper::http::Error> {
        let mut request = Request::get(self.uri(forward.params)?).body(Empty::new())?;
        let headers = request.headers_mut();
        // Headers the client's Connection header names are hop-by-hop too.
        let connection_named: Vec<String> = forward
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|n| n.trim().to_ascii_lowercase()))
            .collect();
        let mut forwarded_for = Vec::new();
        for (name, value) in forward.headers {
            let lower = name.as_str();
            if name == header::ACCEPT_ENCODING {
                // Only gzip, the one encoding verification can read; passed on only if the client takes it.
                if value.to_str().is_ok_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip"))) {
                    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
                }
                continue;
            }
            if lower == "x-forwarded-for" {
                forwarded_for.extend(value.to_str().ok().map(str::to_string));
                continue;
            }
            if NOT_FORWARDED.contains(&lower)
                || forward.consumed.contains(name)
                || connection_named.iter().any(|n| n == lower)
            {
                continue;
            }
            headers.append(name, value.clone());
        }
        forwarded_for.extend(forward.peer.map(|ip| ip.to_string()));
        if !forwarded_for.is_empty()
            && let Ok(value) = HeaderValue::from_str(&forwarded_for.join(", "))
        {
            headers.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        headers.insert(header::HOST, self.host.clone());
        if let Some(authorization) = &self.authorization {
            headers.insert(header::AUTHORIZATION, authorization.clone());
        }
        Ok(request)
    }

    pub async fn fetch(&self, forward: &Forward<'_>) -> Result<Fetched, BackendError> {
        let backend = || self.backend.clone();
        let request = self.request(forward).map_err(|source| BackendError::Build { backend: backend(), source })?;
        let reused = self.idle.take();
        let from_pool = reused.is_some();
        let mut sender = match reused {
            Some(mut sender) => match sender.ready().await {
                Ok(()) => sender,
                Err(_) => self.connect().await?,
            },
            None => self.connect().await?,
        };
        let retry = from_pool.then(|| clone_request(&request));
        let response = match (sender.send_request(request).await, retry) {
            (Ok(response), _) => response,
            // An idle connection the backend closed meanwhile: once more on a new one.
            (Err(_), Some(request)) => {
                sender = self.connect().await?;
                sender
                    .send_request(request)
                    .await
                    .map_err(|source| BackendError::Request { backend: backend(), source })?
            }
            (Err(source), None) => return Err(BackendError::Request { backend: backend(), source }),
        };
        if !response.status().is_success() {
            return Err(BackendError::Status { backend: backend(), status: response.status() });
        }
        let header =
            |name| response.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
        let content_type = header(header::CONTENT_TYPE).unwrap_or_else(|| TEXT_FORMAT.into());
        let content_encoding = header(header::CONTENT_ENCODING);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| BackendError::Request { backend: backend(), source })?
            .to_bytes();
        self.idle.give_back(sender);
        Ok(Fetched { content_type, content_encoding, body })
    }

    async fn connect(&self) -> Result<Sender, BackendError> {
        self.dial().await.map_err(|source| BackendError::Connect { backend: self.backend.clone(), source })
    }

    async fn dial(&self) -> Result<Sender, ConnectError> {
        tracing::debug!(backend = %self.backend, "new backend connection");
        let stream = match promsd_common::localhost::loopback_for(&self.address) {
            Some(loopback) => {
                tokio::net::TcpStream::connect(&loopback.map(|ip| SocketAddr::new(ip, self.port))[..]).await
            }
            None => tokio::net::TcpStream::connect((self.address.as_str(), self.port)).await,
        }
        .map_err(ConnectError::Tcp)?;
        let _ = stream.set_nodelay(true);
        match &self.tls {
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), stream).await.map_err(ConnectError::TlsHandshake)?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(ConnectError::Http)?;
                tokio::spawn(connection);
                Ok(sender)
            }
            None => {
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(ConnectError::Http)?;
                tokio::spawn(connection);
                Ok(sender)
            }
        }
    }
}

fn clone_request(request: &Request<Empty<Bytes>>) -> Request<Empty<Bytes>> {
    let mut copy = Request::new(Empty::new());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}
