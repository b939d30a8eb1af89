//! Fetching one module's metrics: from a local HTTP exporter, a command, or a file; bounded by the scrape's
//! deadline, and checked (when `verify` is on) before anything reaches Prometheus.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use thiserror::Error;

use super::backend_tls::TlsError;
use super::config::{ExecModule, FileModule, HttpModule, Method, ModuleConfig};
use super::exposition::{self, FormatError};

#[derive(Debug, Error)]
pub enum ScrapeError {
    #[error("module did not answer within {0:?}")]
    Timeout(Duration),
    #[error("backend failed: {0}")]
    Backend(String),
    #[error("backend output is not valid exposition format: {0}")]
    Malformed(#[from] Malformed),
}

/// Why `verify` rejected a backend's output (a 502, counted as malformed content).
#[derive(Debug, Error)]
pub enum Malformed {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("cannot verify content encoding {0:?}")]
    Encoding(String),
    #[error("invalid gzip: {0}")]
    Gzip(#[source] std::io::Error),
}

/// Why no connection to an http backend could be made; the scrape fails with it, after the backend's address.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("{0}")]
    Tcp(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{0}")]
    ServerName(#[source] rustls::pki_types::InvalidDnsNameError),
    #[error("{0}")]
    TlsHandshake(#[source] std::io::Error),
    #[error("{0}")]
    Http(#[source] hyper::Error),
}

/// What the proxy passes on.
pub struct Scrape {
    pub content_type: String,
    pub content_encoding: Option<String>,
    pub body: Bytes,
}

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `accept_gzip`: the client takes gzip, so an http backend may send it compressed (passed on as it is).
pub async fn scrape(
    module: &ModuleConfig,
    query: &str,
    deadline: Duration,
    accept_gzip: bool,
) -> Result<Scrape, ScrapeError> {
    let fetched = match module.method {
        Method::Http => {
            let http = module.http.as_ref().ok_or_else(|| ScrapeError::Backend("no http section".into()))?;
            tokio::time::timeout(deadline, fetch_http(http, query, accept_gzip))
                .await
                .map_err(|_| ScrapeError::Timeout(deadline))?
        }
        Method::Exec => {
            let exec = module.exec.as_ref().ok_or_else(|| ScrapeError::Backend("no exec section".into()))?;
            run_exec(exec, deadline).await
        }
        Method::File => {
            let file = module.file.as_ref().ok_or_else(|| ScrapeError::Backend("no file section".into()))?;
            read_file(file).await
        }
    }?;
    if module.verify {
        let openmetrics = fetched.content_type.starts_with("application/openmetrics-text");
        let plain = match fetched.content_encoding.as_deref() {
            Some("gzip") => gunzip(&fetched.body)?,
            Some(other) => return Err(Malformed::Encoding(other.to_string()).into()),
            None => fetched.body.to_vec(),
        };
        exposition::verify(&plain, openmetrics).map_err(Malformed::from)?;
    }
    Ok(fetched)
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>, ScrapeError> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body).take(256 * 1024 * 1024).read_to_end(&mut plain).map_err(Malformed::Gzip)?;
    Ok(plain)
}

async fn fetch_http(http: &HttpModule, query: &str, accept_gzip: bool) -> Result<Scrape, ScrapeError> {
    let backend = |e: &dyn std::fmt::Display| ScrapeError::Backend(format!("{}:{}: {e}", http.address, http.port));
    let pool_key = format!("{}://{}:{}", http.scheme, http.address, http.port);
    let reused = pooled(&pool_key);
    let from_pool = reused.is_some();
    let mut sender = match reused {
        Some(mut sender) => match sender.ready().await {
            Ok(()) => sender,
            Err(_) => connect(http).await.map_err(|e| backend(&e))?,
        },
        None => connect(http).await.map_err(|e| backend(&e))?,
    };
    let uri = if query.is_empty() { http.path.clone() } else { format!("{}?{query}", http.path) };
    let mut request = Request::get(uri).header(hyper::header::HOST, format!("{}:{}", http.address, http.port));
    for (name, value) in &http.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if accept_gzip {
        request = request.header(hyper::header::ACCEPT_ENCODING, "gzip");
    }
    if let Some(user) = &http.basic_auth_username {
        use base64::Engine;
        let password = http.basic_auth_password.as_deref().unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header(hyper::header::AUTHORIZATION, format!("Basic {token}"));
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|e| backend(&e))?;
    let retry = from_pool.then(|| clone_request(&request));
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        // An idle connection the backend closed meanwhile: once more on a new one.
        Err(_) if retry.is_some() => {
            sender = connect(http).await.map_err(|e| backend(&e))?;
            let request = retry.ok_or_else(|| backend(&"no request to retry"))?;
            sender.send_request(request).await.map_err(|e| backend(&e))?
        }
        Err(e) => return Err(backend(&e)),
    };
    if !response.status().is_success() {
        return Err(ScrapeError::Backend(format!("{}:{} answered {}", http.address, http.port, response.status())));
    }
    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let content_type = header(hyper::header::CONTENT_TYPE).unwrap_or_else(|| TEXT_FORMAT.into());
    let content_encoding = header(hyper::header::CONTENT_ENCODING);
    let body = response.into_body().collect().await.map_err(|e| backend(&e))?.to_bytes();
    give_back(pool_key, sender);
    Ok(Scrape { content_type, content_encoding, body })
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// Idle keep-alive connections to backends, so a scrape does not pay for a TCP (and TLS) handshake.
static POOL: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Vec<Sender>>>> =
    std::sync::LazyLock::new(Default::default);
const IDLE_PER_BACKEND: usize = 16;

fn pooled(key: &str) -> Option<Sender> {
    let mut pool = POOL.lock().ok()?;
    let idle = pool.get_mut(key)?;
    // Not `is_ready()`: right after a response the connection task may not have signalled readiness yet;
    // the caller waits for it with `ready()`.
    while let Some(sender) = idle.pop() {
        if !sender.is_closed() {
            return Some(sender);
        }
    }
    None
}

fn give_back(key: String, sender: Sender) {
    if let Ok(mut pool) = POOL.lock() {
        let idle = pool.entry(key).or_default();
        if idle.len() < IDLE_PER_BACKEND && !sender.is_closed() {
            idle.push(sender);
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

async fn connect(http: &HttpModule) -> Result<Sender, ConnectError> {
    tracing::debug!(address = %http.address, port = http.port, "new backend connection");
    let stream = match promsd_common::localhost::loopback_for(&http.address) {
        Some(loopback) => tokio::net::TcpStream::connect(&loopback.map(|ip| SocketAddr::new(ip, http.port))[..]).await,
        None => tokio::net::TcpStream::connect((http.address.as_str(), http.port)).await,
    }
    .map_err(ConnectError::Tcp)?;
    let _ = stream.set_nodelay(true);
    if http.scheme == "https" {
        let connector = super::backend_tls::connector(http)?;
        let name = http.server_name.clone().unwrap_or_else(|| http.address.clone());
        let name = rustls::pki_types::ServerName::try_from(name).map_err(ConnectError::ServerName)?;
        let tls = connector.connect(name, stream).await.map_err(ConnectError::TlsHandshake)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(ConnectError::Http)?;
        tokio::spawn(connection);
        Ok(sender)
    } else {
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(ConnectError::Http)?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// Runs the command in its own process group, and kills the whole group at the deadline.
async fn run_exec(exec: &ExecModule, deadline: Duration) -> Result<Scrape, ScrapeError> {
    let mut command = tokio::process::Command::new(&exec.command);
    command
        .args(&exec.args)
        .envs(&exec.env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn().map_err(|e| ScrapeError::Backend(format!("cannot run {}: {e}", exec.command)))?;
    let pid = child.id();
    match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(Ok(output)) if output.status.success() => {
            Ok(Scrape { content_type: TEXT_FORMAT.into(), content_encoding: None, body: Bytes::from(output.stdout) })
        }
        Ok(Ok(output)) => {
            let stderr: String = String::from_utf8_lossy(&output.stderr).chars().take(500).collect();
            Err(ScrapeError::Backend(format!("{} exited with {}: {stderr}", exec.command, output.status)))
        }
        Ok(Err(e)) => Err(ScrapeError::Backend(format!("{}: {e}", exec.command))),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            Err(ScrapeError::Timeout(deadline))
        }
    }
}

async fn read_file(file: &FileModule) -> Result<Scrape, ScrapeError> {
    let body = tokio::fs::read(&file.path)
        .await
        .map_err(|e| ScrapeError::Backend(format!("cannot read {}: {e}", file.path.display())))?;
    Ok(Scrape { content_type: TEXT_FORMAT.into(), content_encoding: None, body: Bytes::from(body) })
}
