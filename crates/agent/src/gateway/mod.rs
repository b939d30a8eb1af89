//! The agent as a PushProx client: it polls a gateway (promsd-gateway, or a PushProx proxy) for scrapes and
//! answers each through the same modules, verification and deadlines as a direct scrape. Unlike PushProx's
//! client it never fetches a URL the gateway names: a scrape reaches only a configured module (PushProx
//! issue 44). Scrapes run concurrently; a failed poll is retried with the shared backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{StatusCode, Uri};
use promsd_backoff::Backoff;
use promsd_pushprox::{Announce, AnnouncedModule, ScrapeRequest, ScrapeResponse};
use thiserror::Error;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, GatewaySection, Method};
use crate::module::Loaded;
use crate::proxy::Proxy;
use promsd_client::{Client, ServerTls, SetupError};

/// Cloudflare Access's service-token headers, as promsd-gateway expects them by default.
pub const DEFAULT_ID_HEADER: &str = "CF-Access-Client-Id";
pub const DEFAULT_SECRET_HEADER: &str = "CF-Access-Client-Secret";
/// The port of this agent's targets in the gateway's listing when it has no port of its own.
pub const DEFAULT_TARGET_PORT: u16 = 9998;
/// A scrape without Prometheus's timeout header gets PushProx's default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Scrapes answered at once; more are answered 503 at once rather than queued.
const CONCURRENT_SCRAPES: usize = 64;

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("gateway: {0}")]
    Client(#[from] SetupError),
    #[error("cannot read the token secret {path}: {source}")]
    Secret { path: std::path::PathBuf, source: std::io::Error },
    #[error("gateway: {0}")]
    Setting(String),
}

/// The gateway flags of `registrar agent`; each overrides the file's `gateway:` key of the same meaning.
#[derive(Debug, Clone, Default)]
pub struct GatewayFlags {
    pub url: Option<String>,
    pub fqdn: Option<String>,
    pub token_id: Option<String>,
    pub token_secret_file: Option<std::path::PathBuf>,
    pub cacert: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

impl GatewayFlags {
    /// The file's section with these flags applied over it.
    pub fn over(&self, file: &GatewaySection) -> GatewaySection {
        let mut section = file.clone();
        let set = |flag: &Option<String>, key: &mut Option<String>| {
            if flag.is_some() {
                key.clone_from(flag);
            }
        };
        set(&self.url, &mut section.url);
        set(&self.fqdn, &mut section.fqdn);
        set(&self.token_id, &mut section.token_id);
        for (flag, key) in [
            (&self.token_secret_file, &mut section.token_secret_file),
            (&self.cacert, &mut section.tls_ca_file),
            (&self.cert, &mut section.tls_cert_file),
            (&self.key, &mut section.tls_key_file),
        ] {
            if flag.is_some() {
                key.clone_from(flag);
            }
        }
        section
    }
}

/// Everything the poll loop needs, checked.
pub struct Tunnel {
    pub url: String,
    pub fqdn: String,
    client: Client,
    /// The port of this agent's targets as the gateway lists them.
    target_port: u16,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel").field("url", &self.url).field("fqdn", &self.fqdn).finish_non_exhaustive()
    }
}

impl Tunnel {
    /// The tunnel of `section` (flags applied), or none without a URL. What cannot work (a bad URL, an
    /// unreadable secret or CA, half a token) is an error now.
    pub fn new(section: &GatewaySection, target_port: u16) -> Result<Option<Self>, GatewayError> {
        let Some(url) = &section.url else {
            let stray = [("fqdn", section.fqdn.is_some()), ("token_id", section.token_id.is_some())];
            if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(GatewayError::Setting(format!("{key} is set but no gateway URL (--proxy-url) is")));
            }
            return Ok(None);
        };
        let server = ServerTls {
            ca: section.tls_ca_file.as_deref(),
            cert: section.tls_cert_file.as_deref(),
            key: section.tls_key_file.as_deref(),
            server_name: section.server_name.as_deref(),
        };
        let client = Client::for_url(url, server, credentials(section)?)?;
        if let Some(proxy) = client.forward_proxy() {
            tracing::info!(proxy = %format!("{}:{}", proxy.host, proxy.port), "reaching the gateway through a forward proxy");
        }
        let fqdn = match &section.fqdn {
            Some(fqdn) => fqdn.clone(),
            None => host_fqdn(),
        };
        let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
        promsd_common::name::validate_name("proxy.fqdn", &fqdn).map_err(|e| GatewayError::Setting(e.to_string()))?;
        Ok(Some(Self { url: url.clone(), fqdn, client, target_port }))
    }
}

/// The token's two headers, when a token is configured.
fn credentials(section: &GatewaySection) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
    let (id, file) = match (&section.token_id, &section.token_secret_file) {
        (None, None) => return Ok(Vec::new()),
        (Some(id), Some(file)) => (id, file),
        _ => return Err(GatewayError::Setting("the token id and its secret file go together".into())),
    };
    let secret = std::fs::read_to_string(file).map_err(|source| GatewayError::Secret { path: file.clone(), source })?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    let header = |name: &Option<String>, default: &str| {
        let name = name.as_deref().unwrap_or(default);
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| GatewayError::Setting(format!("{name:?} is not a header name")))
    };
    let value = |text: &str, what: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| GatewayError::Setting(format!("the token {what} is not a valid header value")))
    };
    let mut secret = value(secret, "secret")?;
    secret.set_sensitive(true);
    Ok(vec![
        (header(&section.token_id_header, DEFAULT_ID_HEADER)?, value(id, "id")?),
        (header(&section.token_secret_header, DEFAULT_SECRET_HEADER)?, secret),
    ])
}

/// The host's FQDN as PushProx's client finds it: the host name, or where it has no dot, the first name
/// with one on its line of /etc/hosts.
fn host_fqdn() -> String {
    let host = gethostname::gethostname().into_string().unwrap_or_default();
    if host.contains('.') {
        return host;
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter(|l| l.split_whitespace().skip(1).any(|n| n == host))
        .flat_map(|l| l.split_whitespace().skip(1))
        .find(|n| n.contains('.'))
        .map_or(host.clone(), str::to_string)
}

/// The agent's counters of its gateway connection.
#[derive(Debug, Default)]
pub struct TunnelCounts {
    pub polls: AtomicU64,
    pub poll_errors: AtomicU64,
    pub scrapes: AtomicU64,
    pub refused: AtomicU64,
    pub push_errors: AtomicU64,
}

/// What this agent tells the gateway it serves.
fn announce(config: &AgentConfig, port: u16) -> Announce {
    let modules = config
        .modules
        .iter()
        .map(|(name, module)| {
            let mut labels = config.labels.clone();
            labels.extend(module.labels.clone());
            (name.clone(), AnnouncedModule { labels, scheme: None })
        })
        .collect();
    Announce { port, modules }
}

/// Polls until `shutdown`, answering each scrape in its own task.
pub async fn run(tunnel: Arc<Tunnel>, proxy: Arc<Proxy>, counts: Arc<TunnelCounts>, shutdown: CancellationToken) {
    tracing::info!(gateway = %tunnel.url, fqdn = %tunnel.fqdn, "polling the gateway for scrapes");
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SCRAPES));
    let mut scrapes = tokio::task::JoinSet::new();
    // The failure last logged at warn: a new kind of failure is logged once, a repeat quietly.
    let mut failing: Option<String> = None;
    loop {
        while scrapes.try_join_next().is_some() {}
        let header = HeaderValue::from_str(&announce(&proxy.loaded.load().config, tunnel.target_port).to_header()).ok();
        let poll = tunnel.client.post(
            "poll",
            Bytes::from(tunnel.fqdn.clone()),
            header.map(|v| (promsd_pushprox::ANNOUNCE, v)),
        );
        let polled = tokio::select! {
            _ = shutdown.cancelled() => break,
            polled = poll => polled,
        };
        counts.polls.fetch_add(1, Ordering::Relaxed);
        let failure = match polled {
            Ok((StatusCode::OK, body)) => match ScrapeRequest::parse(&body) {
                Ok(request) => {
                    backoff.reset();
                    if failing.take().is_some() {
                        tracing::info!(gateway = %tunnel.url, "polling the gateway again");
                    }
                    let permit = permits.clone().try_acquire_owned().ok();
                    let (tunnel, proxy, counts) = (tunnel.clone(), proxy.clone(), counts.clone());
                    scrapes.spawn(async move {
                        answer(&tunnel, &proxy, &counts, request, permit.is_some()).await;
                        drop(permit);
                    });
                    continue;
                }
                Err(error) => {
                    format!("the gateway answered a poll with something that is not a scrape request: {error}")
                }
            },
            // A held poll ended without a scrape: poll again at once.
            Ok((StatusCode::REQUEST_TIMEOUT, _)) => {
                backoff.reset();
                continue;
            }
            Ok((status, body)) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string();
                format!("the gateway refused the poll: {status}: {text}")
            }
            Err(error) => format!("cannot poll the gateway: {error}"),
        };
        counts.poll_errors.fetch_add(1, Ordering::Relaxed);
        // One line when polling starts failing or fails differently, then quiet until it works again.
        if failing.as_deref() != Some(failure.as_str()) {
            tracing::warn!(gateway = %tunnel.url, error = %failure, "polling fails; retrying with backoff");
            failing = Some(failure);
        } else {
            tracing::debug!(gateway = %tunnel.url, error = %failure, "polling fails");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = backoff.wait() => {}
        }
    }
    scrapes.abort_all();
}

/// Answers one scrape request and pushes the answer, all within the scrape's deadline.
async fn answer(tunnel: &Tunnel, proxy: &Proxy, counts: &TunnelCounts, request: ScrapeRequest, admitted: bool) {
    let Some(id) = request.id().and_then(|id| HeaderValue::from_str(id).ok()) else {
        counts.refused.fetch_add(1, Ordering::Relaxed);
        return tracing::warn!("a scrape request without an Id: nothing to answer it with");
    };
    counts.scrapes.fetch_add(1, Ordering::Relaxed);
    let timeout = request.timeout().unwrap_or(DEFAULT_TIMEOUT).min(Duration::from_secs(3600));
    let deadline = Instant::now() + timeout;
    let loaded = proxy.loaded.load_full();
    let reply = match route(&request, &tunnel.fqdn, &loaded) {
        _ if !admitted => Err((StatusCode::SERVICE_UNAVAILABLE, "too many scrapes at once".to_string())),
        Ok(uri) => {
            let answered =
                tokio::time::timeout_at(deadline, proxy.answer(&request.method, &uri, &request.headers, None));
            match answered.await {
                Ok(reply) => Ok(reply),
                Err(_) => Err((StatusCode::GATEWAY_TIMEOUT, format!("no answer within {timeout:?}"))),
            }
        }
        Err(refusal) => {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(url = %request.uri, error = %refusal, "scrape refused");
            Err((refusal.status(), refusal.to_string()))
        }
    };
    let mut response = match reply {
        Ok(reply) => {
            let (parts, body) = reply.into_parts();
            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            ScrapeResponse { status: parts.status, headers: parts.headers, body }
        }
        Err((status, message)) => {
            ScrapeResponse { status, headers: hyper::HeaderMap::new(), body: Bytes::from(format!("{message}\n")) }
        }
    };
    response.headers.insert(promsd_pushprox::ID, id);
    let left = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
    if let Ok(value) = HeaderValue::from_str(&format!("{left:.6}")) {
        response.headers.insert(promsd_pushprox::TIME_LEFT, value);
    }
    let push = tunnel.client.post("push", Bytes::from(response.encode()), None);
    let error = match tokio::time::timeout_at(deadline, push).await {
        Ok(Ok((status, _))) if status.is_success() => return,
        Ok(Ok((status, body))) => format!("{status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]).trim()),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("not pushed within the scrape's {timeout:?}"),
    };
    counts.push_errors.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(gateway = %tunnel.url, %error, "cannot push a scrape's answer");
}

/// Why a scrape request is not answered with a module.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("scrape target {0} doesn't match client fqdn {1}")]
    OtherHost(String, String),
    #[error("no module serves port {0} path {1} (scrape /proxy?module=NAME, or a module's own port and path)")]
    NoModule(u16, String),
}

impl RouteError {
    fn status(&self) -> StatusCode {
        match self {
            RouteError::OtherHost(..) => StatusCode::FORBIDDEN,
            RouteError::NoModule(..) => StatusCode::NOT_FOUND,
        }
    }
}

/// The agent's own request for a scrape the gateway handed over: `/proxy?module=NAME` as it is (the way
/// promsd's listings name targets), or PushProx's `http://<fqdn>:<port>/<path>` when an http module's
/// backend has that port and path (so a PushProx job's targets keep working), or the agent's `/metrics` and
/// `/`. Anything else is refused: the request never chooses a host, port or path that is not configured.
pub fn route(request: &ScrapeRequest, fqdn: &str, loaded: &Loaded) -> Result<Uri, RouteError> {
    let host = request.uri.host().unwrap_or_default().trim_end_matches('.').to_ascii_lowercase();
    if host != fqdn {
        return Err(RouteError::OtherHost(host, fqdn.to_string()));
    }
    // PushProx's `_scheme=https` says how its client should reach the target; a module knows its own.
    let params: Vec<(String, String)> = form_urlencoded::parse(request.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .filter(|(name, _)| name != "_scheme")
        .collect();
    let path = request.uri.path();
    let port = request.uri.port_u16().unwrap_or(80);
    let with = |path: &str, first: Option<(&str, &str)>| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some((name, value)) = first {
            query.append_pair(name, value);
        }
        for (name, value) in &params {
            query.append_pair(name, value);
        }
        let query = query.finish();
        let uri = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
        uri.parse::<Uri>().map_err(|_| RouteError::NoModule(port, path.to_string()))
    };
    if path == "/proxy" {
        return with("/proxy", None);
    }
    let module = loaded.modules.iter().find(|(_, m)| {
        m.config.method == Method::Http
            && m.config.http.as_ref().is_some_and(|h| {
                let own = h.path.split('?').next().unwrap_or_default();
                h.port == port && own.trim_start_matches('/') == path.trim_start_matches('/')
            })
    });
    match module {
        Some((name, _)) => with("/proxy", Some(("module", name))),
        None if path == "/metrics" || path == "/" => with(path, None),
        None => Err(RouteError::NoModule(port, path.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FQDN: &str = "host1.site-a.example.org";

    fn loaded() -> Loaded {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.yml");
        std::fs::write(
            &path,
            "labels: {site: a}\nmodules:\n  node:\n    method: http\n    labels: {role: db}\n    http: {port: 9100}\n  \
             script:\n    method: exec\n    exec: {command: /bin/true}\n",
        )
        .expect("write");
        Loaded::new(AgentConfig::load(&path).expect("config")).expect("modules")
    }

    fn request(url: &str) -> ScrapeRequest {
        ScrapeRequest {
            method: hyper::Method::GET,
            uri: url.parse().expect("url"),
            headers: Default::default(),
            body: Bytes::new(),
        }
    }

    #[test]
    fn scrapes_reach_only_configured_modules() {
        let loaded = loaded();
        let route = |url: &str| route(&request(url), FQDN, &loaded).map(|u| u.to_string());
        assert_eq!(route(&format!("http://{FQDN}:9998/proxy?module=script")), Ok("/proxy?module=script".into()));
        assert_eq!(route(&format!("http://{FQDN}:9100/metrics")), Ok("/proxy?module=node".into()), "PushProx's target");
        assert_eq!(
            route(&format!("http://{FQDN}:9100/metrics?_scheme=https&collect[]=cpu")),
            Ok("/proxy?module=node&collect%5B%5D=cpu".into())
        );
        assert_eq!(route("http://HOST1.site-a.example.org.:9998/metrics"), Ok("/metrics".into()), "its own");
        assert_eq!(route(&format!("http://{FQDN}:22/")), Ok("/".into()));
        assert_eq!(route(&format!("http://{FQDN}:6379/info")), Err(RouteError::NoModule(6379, "/info".into())));
        assert_eq!(route(&format!("http://{FQDN}:9101/metrics")), Ok("/metrics".into()), "not node's port: its own");
        assert_eq!(
            route("http://169.254.169.254/latest/meta-data/"),
            Err(RouteError::OtherHost("169.254.169.254".into(), FQDN.into())),
            "PushProx issue 44: never a URL the gateway names"
        );
    }

    #[test]
    fn the_announcement_has_every_module_with_its_labels() {
        let announce = announce(&loaded().config, 9998);
        assert_eq!(announce.port, 9998);
        assert_eq!(announce.modules.keys().collect::<Vec<_>>(), ["node", "script"]);
        assert_eq!(announce.modules["node"].labels.get("role").map(String::as_str), Some("db"));
        assert_eq!(announce.modules["script"].labels.get("site").map(String::as_str), Some("a"));
    }

    #[test]
    fn settings_that_cannot_work_fail_at_once() {
        let section = |text: &str| serde_norway::from_str::<GatewaySection>(text).expect("yaml");
        let tunnel =
            |text: &str| Tunnel::new(&section(text), 9998).map(|t| t.map(|t| t.fqdn)).map_err(|e| e.to_string());
        assert_eq!(tunnel("{}"), Ok(None));
        assert_eq!(tunnel(&format!("{{url: 'http://gw:8080', fqdn: {FQDN}}}")), Ok(Some(FQDN.into())));
        assert!(tunnel("{fqdn: x.example.org}").is_err_and(|e| e.contains("no gateway URL")));
        assert!(tunnel("{url: 'gw:8080'}").is_err_and(|e| e.contains("not an http:// or https:// URL")));
        assert!(tunnel("{url: 'http://gw', token_id: a}").is_err_and(|e| e.contains("go together")));
        assert!(
            tunnel("{url: 'http://gw', token_id: a, token_secret_file: /nonexistent}")
                .is_err_and(|e| e.contains("/nonexistent"))
        );
        assert!(tunnel("{url: 'https://gw', tls_ca_file: /nonexistent}").is_err_and(|e| e.contains("/nonexistent")));
        assert!(
            tunnel("{url: 'http://gw', tls_ca_file: /etc/ssl/certs/ca-certificates.crt}")
                .is_err_and(|e| e.contains("not https"))
        );
        assert!(tunnel("{url: 'http://gw', fqdn: 'a b'}").is_err());
        let unknown = serde_norway::from_str::<GatewaySection>("{url: 'http://gw', bogus: 1}");
        assert!(unknown.is_err_and(|e| e.to_string().contains("unknown field `bogus`")));
    }
}
