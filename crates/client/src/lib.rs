//! promsd's one HTTP/1 client to a configured server (the agent's gateway, the gateway's remote_write
//! upstream): TLS with the configured CA and client certificate ([`tls`]), idle keep-alive connections
//! ([`idle`]), TCP keep-alive so a NAT does not forget a held request, and an HTTP forward proxy when
//! `HTTPS_PROXY` (for an http server `HTTP_PROXY`) says so and `NO_PROXY` does not exempt it.

pub mod idle;
pub mod tls;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use idle::Idle;

/// Largest answer read (a poll's answer is one scrape request; a remote_write answer a line).
const MAX_ANSWER: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept for pushes.
const IDLE: usize = 8;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {to}: {source}")]
    Connect { to: String, source: std::io::Error },
    #[error("TLS with {to}: {source}")]
    Tls { to: String, source: std::io::Error },
    #[error("forward proxy {proxy}: {reason}")]
    Proxy { proxy: String, reason: String },
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Build(#[from] hyper::http::Error),
    #[error("the answer is larger than {MAX_ANSWER} bytes or could not be read")]
    Answer,
}

/// Why a server's settings cannot be used; found at start, not retried.
#[derive(Debug, Error)]
pub enum UrlError {
    #[error("{url:?} is not an http:// or https:// URL with a host")]
    Server { url: String },
    #[error("{var}={value:?}: {reason}")]
    Proxy { var: &'static str, value: String, reason: &'static str },
}

/// An HTTP forward proxy on the way to the server.
#[derive(Debug, Clone)]
pub struct ForwardProxy {
    pub host: String,
    pub port: u16,
    /// `Proxy-Authorization` from the proxy URL's user and password.
    pub authorization: Option<HeaderValue>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub struct Client {
    host: String,
    port: u16,
    /// The URL's path: requests go to it, or to a path below it (`poll` and `push` of a gateway, as
    /// PushProx's client resolves them).
    base_path: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    via: Option<ForwardProxy>,
    /// Sent with every request (the token's two headers).
    headers: Vec<(HeaderName, HeaderValue)>,
    idle: Idle<Full<Bytes>>,
}

/// A server URL's parts: https or not, host, port, path.
pub fn parse_url(url: &str) -> Result<(bool, String, u16, String), UrlError> {
    let bad = || UrlError::Server { url: url.to_string() };
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad()),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok((https, host, port, uri.path().to_string()))
}

/// The forward proxy the environment names for this server, as Go's `ProxyFromEnvironment` reads it.
pub fn proxy_from_env(
    https: bool,
    host: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<ForwardProxy>, UrlError> {
    let names: [&'static str; 2] = if https { ["HTTPS_PROXY", "https_proxy"] } else { ["HTTP_PROXY", "http_proxy"] };
    let Some((var, value)) = names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()).map(|v| (*n, v))) else {
        return Ok(None);
    };
    let no_proxy = env("NO_PROXY").or_else(|| env("no_proxy")).unwrap_or_default();
    if exempt(&no_proxy, host) {
        return Ok(None);
    }
    let bad = |reason| UrlError::Proxy { var, value: value.clone(), reason };
    let with_scheme = if value.contains("://") { value.clone() } else { format!("http://{value}") };
    let uri: Uri = with_scheme.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// forward proxies are supported"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?.as_str();
    let (userinfo, _) = authority.rsplit_once('@').unzip();
    let authorization = userinfo.map(|userinfo| {
        use base64::Engine;
        let decoded = percent_decode(userinfo);
        let token = base64::engine::general_purpose::STANDARD.encode(decoded);
        let mut value = HeaderValue::from_str(&format!("Basic {token}")).unwrap_or(HeaderValue::from_static(""));
        value.set_sensitive(true);
        value
    });
    let host = uri.host().ok_or_else(|| bad("no host"))?.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok(Some(ForwardProxy { host, port: uri.port_u16().unwrap_or(80), authorization }))
}

/// `%XX` escapes of a URL's user and password, decoded.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// `NO_PROXY`: `*`, or comma-separated names (`example.org` and `.example.org` both cover the name and every
/// name below it) and IP addresses.
fn exempt(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy.split(',').map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase()).filter(|e| !e.is_empty()).any(
        |entry| {
            let entry =
                entry.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()).map_or(entry.as_str(), |(h, _)| h);
            entry == "*" || host == entry || host.ends_with(&format!(".{entry}"))
        },
    )
}

/// How to reach a server given by URL: TLS files for an https one (no CA: the system's), and the name its
/// certificate is checked for (default: the URL's host).
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTls<'a> {
    pub ca: Option<&'a std::path::Path>,
    pub cert: Option<&'a std::path::Path>,
    pub key: Option<&'a std::path::Path>,
    pub server_name: Option<&'a str>,
}

/// Where Debian's ca-certificates puts the system's CAs.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a client for a URL cannot be built; found at start, not retried.
#[derive(Debug, Error)]
pub enum SetupError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("the client certificate and key go together")]
    CertWithoutKey,
    #[error("TLS files are set but {0} is not https")]
    TlsWithoutHttps(String),
}

/// A server's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Client {
    /// The one way a client for a configured URL is built: its parts, TLS from `tls` for https, the forward
    /// proxy the environment names, and `headers` sent with every request.
    pub fn for_url(url: &str, tls: ServerTls<'_>, headers: Vec<(HeaderName, HeaderValue)>) -> Result<Self, SetupError> {
        let (https, host, port, path) = parse_url(url)?;
        let tls = if https {
            let files = tls::TlsFiles {
                ca: Some(tls.ca.unwrap_or(std::path::Path::new(SYSTEM_CAS))),
                cert: tls.cert,
                key: tls.key,
                insecure_skip_verify: false,
            };
            if files.cert.is_some() != files.key.is_some() {
                return Err(SetupError::CertWithoutKey);
            }
            let name = tls.server_name.map_or_else(|| host.clone(), str::to_string);
            Some((tls::client(&files)?, tls::server_name(name)?))
        } else {
            if tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some() {
                return Err(SetupError::TlsWithoutHttps(url.to_string()));
            }
            None
        };
        let via = proxy_from_env(https, &host, |name| std::env::var(name).ok())?;
        Ok(Self::new(host, port, path, tls, via, headers))
    }

    /// The forward proxy requests go through, if any.
    pub fn forward_proxy(&self) -> Option<&ForwardProxy> {
        self.via.as_ref()
    }

    pub fn new(
        host: String,
        port: u16,
        base_path: String,
        tls: Option<(TlsConnector, ServerName<'static>)>,
        via: Option<ForwardProxy>,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Self {
        Self { host, port, base_path, tls, via, headers, idle: Idle::new(IDLE) }
    }

    /// `POST <url>/<path>` with `body`; the status and body of the answer.
    pub async fn post(
        &self,
        path: &str,
        body: Bytes,
        extra: Option<(HeaderName, HeaderValue)>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut headers = hyper::HeaderMap::new();
        if let Some((name, value)) = extra {
            headers.insert(name, value);
        }
        let answer = self.request(Method::POST, path, &headers, body).await?;
        Ok((answer.status, answer.body))
    }

    /// A request to the URL's path (`path` empty) or below it, with `headers` besides the client's own.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        extra: &hyper::HeaderMap,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let target = match path {
            "" if self.base_path.is_empty() => "/".to_string(),
            "" => self.base_path.clone(),
            _ => format!("{}/{path}", self.base_path.trim_end_matches('/')),
        };
        // Through a forward proxy without TLS, the request names the server in absolute form.
        let uri = match (&self.via, &self.tls) {
            (Some(_), None) => format!("http://{}{target}", self.authority()),
            _ => target,
        };
        self.send(method, uri, extra, body).await
    }

    /// A request whose target is `url` in absolute form, as a client of an HTTP proxy sends it (Prometheus's
    /// `proxy_url` scrapes of the gateway).
    pub async fn request_absolute(
        &self,
        method: Method,
        url: &str,
        extra: &hyper::HeaderMap,
    ) -> Result<Answer, ClientError> {
        self.send(method, url.to_string(), extra, Bytes::new()).await
    }

    async fn send(
        &self,
        method: Method,
        uri: String,
        extra: &hyper::HeaderMap,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let request = || -> Result<Request<Full<Bytes>>, ClientError> {
            let mut request = Request::builder().method(method.clone()).uri(&uri).body(Full::new(body.clone()))?;
            let headers = request.headers_mut();
            if let Ok(host) = HeaderValue::from_str(&self.authority()) {
                headers.insert(header::HOST, host);
            }
            for (name, value) in extra {
                headers.append(name, value.clone());
            }
            for (name, value) in &self.headers {
                headers.insert(name, value.clone());
            }
            if let (Some(proxy), None) = (&self.via, &self.tls)
                && let Some(authorization) = &proxy.authorization
            {
                headers.insert(header::PROXY_AUTHORIZATION, authorization.clone());
            }
            Ok(request)
        };
        let pooled = match self.idle.take() {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        let response = match pooled {
            // An idle connection the gateway closed meanwhile: once more on a new one.
            Some(mut sender) => match sender.send_request(request()?).await {
                Ok(response) => (sender, response),
                Err(_) => {
                    let mut sender = self.dial().await?;
                    let response = sender.send_request(request()?).await?;
                    (sender, response)
                }
            },
            None => {
                let mut sender = self.dial().await?;
                let response = sender.send_request(request()?).await?;
                (sender, response)
            }
        };
        let (sender, response) = response;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER).collect().await.map_err(|_| ClientError::Answer)?.to_bytes();
        self.idle.give_back(sender);
        Ok(Answer { status: parts.status, headers: parts.headers, body })
    }

    fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{host}:{}", self.port)
    }

    async fn dial(&self) -> Result<Sender, ClientError> {
        let (host, port) = match &self.via {
            Some(proxy) => (proxy.host.as_str(), proxy.port),
            None => (self.host.as_str(), self.port),
        };
        let to = format!("{host}:{port}");
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| ClientError::Connect { to: to.clone(), source: std::io::ErrorKind::TimedOut.into() })?
            .map_err(|source| ClientError::Connect { to: to.clone(), source })?;
        let _ = stream.set_nodelay(true);
        // Probes after 30 s idle, as PushProx's client sets them: a held poll keeps its NAT mapping, and a
        // dead path is noticed within a minute.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(5))
            .with_retries(3);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let mut stream = stream;
        if let (Some(proxy), Some(_)) = (&self.via, &self.tls) {
            self.connect_through(&mut stream, proxy, &to).await?;
        }
        match &self.tls {
            Some((connector, name)) => {
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), stream))
                    .await
                    .map_err(|_| ClientError::Tls {
                        to: self.authority(),
                        source: std::io::ErrorKind::TimedOut.into(),
                    })?
                    .map_err(|source| ClientError::Tls { to: self.authority(), source })?;
                let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(connection);
                Ok(sender)
            }
            None => {
                let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                Ok(sender)
            }
        }
    }

    /// `CONNECT host:port` through the forward proxy, for TLS end to end with the gateway.
    async fn connect_through(&self, stream: &mut TcpStream, proxy: &ForwardProxy, to: &str) -> Result<(), ClientError> {
        let failed = |reason: String| ClientError::Proxy { proxy: to.to_string(), reason };
        let authority = self.authority();
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(authorization) = proxy.authorization.as_ref().and_then(|v| v.to_str().ok()) {
            request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
        }
        request.push_str("\r\n");
        let exchange = async {
            stream.write_all(request.as_bytes()).await?;
            // The proxy's answer ends with an empty line; nothing of the tunnel follows before we speak.
            let mut answer = Vec::new();
            let mut byte = [0u8; 1];
            while !answer.ends_with(b"\r\n\r\n") && answer.len() < 8192 {
                if stream.read(&mut byte).await? == 0 {
                    break;
                }
                answer.push(byte[0]);
            }
            Ok::<_, std::io::Error>(answer)
        };
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, exchange)
            .await
            .map_err(|_| failed("no answer to CONNECT".into()))?
            .map_err(|e| failed(e.to_string()))?;
        let status_line = String::from_utf8_lossy(answer.split(|&b| b == b'\r').next().unwrap_or_default()).to_string();
        match status_line.split_whitespace().nth(1) {
            Some(code) if code.starts_with('2') => Ok(()),
            _ => Err(failed(format!("CONNECT {authority} answered {status_line:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            parse_url("https://gw.example.org:8443/pushprox").expect("url"),
            (true, "gw.example.org".into(), 8443, "/pushprox".into())
        );
        assert_eq!(parse_url("http://10.0.0.1:8080/").expect("url"), (false, "10.0.0.1".into(), 8080, "/".into()));
        assert_eq!(parse_url("http://[::1]").expect("url"), (false, "::1".into(), 80, "/".into()));
        for bad in ["gw:8080", "ftp://gw/", "http:///x", ""] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forward_proxies_from_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let proxy = proxy_from_env(true, "gw.example.org", env(&[("HTTPS_PROXY", "http://u:p@squid:3128")]))
            .expect("ok")
            .expect("a proxy");
        assert_eq!((proxy.host.as_str(), proxy.port), ("squid", 3128));
        assert_eq!(proxy.authorization.expect("credentials"), "Basic dTpw");
        assert_eq!(percent_decode("p%40ss%3Aw+d%zz"), b"p@ss:w+d%zz");
        assert!(
            proxy_from_env(false, "gw", env(&[("HTTPS_PROXY", "squid:3128")])).expect("ok").is_none(),
            "http uses HTTP_PROXY"
        );
        let lower = proxy_from_env(false, "gw", env(&[("http_proxy", "squid:3128")])).expect("ok").expect("proxy");
        assert_eq!((lower.port, lower.authorization.is_none()), (3128, true));
        for no_proxy in ["*", "example.org", ".example.org", "gw.example.org:8443, other"] {
            let vars: &'static [(&str, &str)] =
                Box::leak(vec![("HTTPS_PROXY", "squid:3128"), ("NO_PROXY", no_proxy)].into_boxed_slice());
            assert!(proxy_from_env(true, "gw.example.org", env(vars)).expect("ok").is_none(), "{no_proxy}");
        }
        assert!(
            proxy_from_env(true, "gw.example.org", env(&[("HTTPS_PROXY", "squid:3128"), ("NO_PROXY", "ample.org")]))
                .expect("ok")
                .is_some()
        );
        assert!(proxy_from_env(true, "gw", env(&[("HTTPS_PROXY", "https://squid:3128")])).is_err());
    }
}
