//! The agent's HTTP endpoints: `/proxy?module=NAME` (other parameters forwarded, as exporter_exporter does),
//! `/` (the modules, HTML or JSON), `/metrics` (its own). Only configured modules are reachable: the
//! request never chooses a backend host, port, command or file.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::config::AgentConfig;
use super::module::{self, ScrapeError};
use super::webconfig::{Web, WebConfigError};

/// Without a module timeout or Prometheus's header, a scrape may take this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct ProxyMetrics {
    pub scrapes: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub malformed: AtomicU64,
    pub unauthorized: AtomicU64,
}

pub struct Proxy {
    /// Swapped whole on SIGHUP; a scrape keeps the configuration it started with.
    pub config: arc_swap::ArcSwap<AgentConfig>,
    pub metrics: ProxyMetrics,
    /// `--web.config.file`, read again when it changes.
    pub web: Option<WebSource>,
}

/// The web configuration file and what was last read from it.
pub struct WebSource {
    path: PathBuf,
    current: Mutex<(Option<SystemTime>, Arc<Web>)>,
}

impl WebSource {
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let web = Web::load(path)?;
        Ok(Self { path: path.to_path_buf(), current: Mutex::new((modified(path), Arc::new(web))) })
    }

    /// The configuration in force: read again when the file changed; a broken new version keeps the old.
    fn get(&self) -> Option<Arc<Web>> {
        let mut current = self.current.lock().ok()?;
        let stamp = modified(&self.path);
        if stamp != current.0 {
            match Web::load(&self.path) {
                Ok(web) => *current = (stamp, Arc::new(web)),
                Err(e) => tracing::warn!(error = %e, "cannot reload the web config; keeping the previous one"),
            }
            current.0 = stamp;
        }
        Some(current.1.clone())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

type Reply = Response<Full<Bytes>>;

pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let web = proxy.web.as_ref().and_then(WebSource::get);
            match web.as_ref().and_then(|w| w.tls.clone()) {
                Some(acceptor) => {
                    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
                    if web.as_ref().is_some_and(|w| !w.san_allowed(peer.as_ref())) {
                        proxy.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
                        return; // a certificate for a name that is not allowed: no HTTP at all
                    }
                    connection(TokioIo::new(tls), proxy, web).await;
                }
                None => connection(TokioIo::new(stream), proxy, web).await,
            }
        });
    }
}

async fn connection<I>(io: I, proxy: Arc<Proxy>, web: Option<Arc<Web>>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let (proxy, web) = (proxy.clone(), web.clone());
        async move {
            let mut response = match &web {
                Some(web) if !web.authorized(request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok())) => {
                    proxy.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
                    let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized.\n");
                    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                    response
                }
                _ => route(request, &proxy).await,
            };
            if let Some(web) = &web {
                for (name, value) in &web.config.http_server_config.headers {
                    if let (Ok(name), Ok(value)) =
                        (hyper::header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
                    {
                        response.headers_mut().insert(name, value);
                    }
                }
            }
            Ok::<_, Infallible>(response)
        }
    });
    let _ = http1::Builder::new().serve_connection(io, service).await;
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

async fn route(request: Request<Incoming>, proxy: &Proxy) -> Reply {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Only GET is supported.\n");
    }
    let config = proxy.config.load_full();
    if let Some(token) = &config.token {
        let given = request.headers().get(token.header.as_str()).map(|v| v.as_bytes()).unwrap_or_default();
        if !constant_time_eq(given, token.value.as_bytes()) {
            proxy.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
            return text(StatusCode::UNAUTHORIZED, "Unauthorized.\n");
        }
    }
    match request.uri().path() {
        "/proxy" => scrape(&request, &config, proxy).await,
        "/metrics" => text(StatusCode::OK, render_metrics(&config, proxy)),
        "/" => index(&request, &config),
        _ => text(StatusCode::NOT_FOUND, "Not found.\n"),
    }
}

/// Compares secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}

async fn scrape(request: &Request<Incoming>, config: &AgentConfig, proxy: &Proxy) -> Reply {
    let query = request.uri().query().unwrap_or_default();
    // The first `module` names the module; everything else goes to the backend as it came.
    let mut module_name = None;
    let mut forwarded = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("module", value)) if module_name.is_none() => module_name = Some(value.to_string()),
            _ => forwarded.push(pair),
        }
    }
    let Some(name) = module_name else { return text(StatusCode::BAD_REQUEST, "missing ?module=NAME\n") };
    let Some(module) = config.modules.get(&name) else {
        return text(StatusCode::NOT_FOUND, format!("unknown module {name:?}\n"));
    };
    let deadline = deadline(request, module.timeout);
    proxy.metrics.scrapes.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let accept_gzip = request
        .headers()
        .get(hyper::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    match module::scrape(module, &forwarded.join("&"), deadline, accept_gzip).await {
        Ok(scrape) => {
            let mut response = Response::new(Full::new(scrape.body));
            if let Ok(value) = HeaderValue::from_str(&scrape.content_type) {
                response.headers_mut().insert(CONTENT_TYPE, value);
            }
            if let Some(value) = scrape.content_encoding.and_then(|e| HeaderValue::from_str(&e).ok()) {
                response.headers_mut().insert(CONTENT_ENCODING, value);
            }
            response
        }
        Err(error) => {
            let status = match &error {
                ScrapeError::Timeout(_) => {
                    proxy.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
                    StatusCode::GATEWAY_TIMEOUT
                }
                ScrapeError::Malformed(_) => {
                    proxy.metrics.malformed.fetch_add(1, Ordering::Relaxed);
                    StatusCode::BAD_GATEWAY
                }
                ScrapeError::Backend(_) => StatusCode::BAD_GATEWAY,
            };
            proxy.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(module = %name, took = ?started.elapsed(), error = %error, "scrape failed");
            text(status, format!("module {name}: {error}\n"))
        }
    }
}

/// The module's timeout, shortened to Prometheus's scrape timeout (less a margin to answer in) when given.
fn deadline(request: &Request<Incoming>, module_timeout: Option<Duration>) -> Duration {
    let prometheus = request
        .headers()
        .get("X-Prometheus-Scrape-Timeout-Seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64((s - 0.5).max(s * 0.9).min(3600.0)));
    match (module_timeout, prometheus) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => DEFAULT_TIMEOUT,
    }
}

fn index(request: &Request<Incoming>, config: &AgentConfig) -> Reply {
    let wants_json =
        request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"));
    if wants_json {
        let modules: serde_json::Map<String, serde_json::Value> = config
            .modules
            .iter()
            .map(|(name, m)| (name.clone(), serde_json::json!({ "method": format!("{:?}", m.method).to_lowercase() })))
            .collect();
        let mut response = text(StatusCode::OK, serde_json::Value::Object(modules).to_string());
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return response;
    }
    let links: String =
        config.modules.keys().map(|name| format!("<li><a href=\"/proxy?module={name}\">{name}</a></li>")).collect();
    let mut response = text(
        StatusCode::OK,
        format!(
            "<!DOCTYPE html><html><head><title>registrar agent</title></head><body><h1>Modules</h1><ul>{links}</ul><p><a href=\"/metrics\">metrics</a></p></body></html>\n"
        ),
    );
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

fn render_metrics(config: &AgentConfig, proxy: &Proxy) -> String {
    let m = &proxy.metrics;
    let mut out = String::new();
    for (name, help, value) in [
        ("registrar_agent_scrapes_total", "Scrapes through the proxy.", &m.scrapes),
        ("registrar_agent_scrape_errors_total", "Scrapes that failed (502 or 504).", &m.errors),
        ("registrar_agent_scrape_timeouts_total", "Scrapes that hit their deadline (504).", &m.timeouts),
        (
            "registrar_agent_malformed_content_total",
            "Backend outputs that are not valid exposition format.",
            &m.malformed,
        ),
        ("registrar_agent_unauthorized_total", "Requests refused for a missing or wrong token.", &m.unauthorized),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            value.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "# HELP registrar_agent_modules Modules configured.\n# TYPE registrar_agent_modules gauge\nregistrar_agent_modules {}\n",
        config.modules.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_secrets() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3cretx", b"s3cret"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
