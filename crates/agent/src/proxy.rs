//! The agent's endpoints: `/proxy?module=NAME` (other parameters and the request's headers passed on, and
//! `args=` appended to an exec module's command, as exporter_exporter does), `/` (the modules, HTML or JSON,
//! as exporter_exporter lists them), `/metrics` (its own). Only configured modules are reachable: the
//! request never chooses a backend host, port, command or file.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use promsd_web::Reply;
use promsd_web::metrics::{ProcessCollector, WebCollector, build_info, counter, gauge};
use promsd_web::response::{self, text};

use crate::backend::BackendError;
use crate::backend::http::Forward;
use crate::module::{Loaded, ScrapeError};

/// Without a module timeout or Prometheus's header, a scrape may take this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct ProxyMetrics {
    pub scrapes: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub malformed: AtomicU64,
    /// Requests refused for a missing or wrong token (basic auth refusals are the web stack's).
    pub unauthorized: AtomicU64,
}

pub struct Proxy {
    /// Swapped whole on SIGHUP; a scrape keeps the generation it started with.
    pub loaded: arc_swap::ArcSwap<Loaded>,
    pub metrics: ProxyMetrics,
    pub web: Arc<promsd_web::WebMetrics>,
    /// The gateway poll loop's counters (zero without a gateway).
    pub tunnel: Arc<crate::gateway::TunnelCounts>,
}

impl promsd_web::Handler for Proxy {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Reply {
        self.answer(request.method(), request.uri(), request.headers(), Some(peer.ip())).await
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

impl Proxy {
    /// One request, from the agent's own port or through a gateway (`peer` none): only configured modules
    /// are reachable, whichever way it came.
    pub async fn answer(&self, method: &Method, uri: &Uri, headers: &HeaderMap, peer: Option<IpAddr>) -> Reply {
        if method != Method::GET && method != Method::HEAD {
            return response::method_not_allowed();
        }
        let loaded = self.loaded.load_full();
        if let Some(token) = &loaded.config.token {
            let given = headers.get(token.header.as_str()).map(|v| v.as_bytes()).unwrap_or_default();
            if !constant_time_eq(given, token.value.expose().as_bytes()) {
                self.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
                return text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            }
        }
        match uri.path() {
            "/proxy" => self.scrape(uri, headers, peer, &loaded).await,
            "/metrics" => self.render_metrics(headers, &loaded),
            "/" => index(headers, &loaded),
            _ => response::not_found(),
        }
    }

    async fn scrape(&self, uri: &Uri, headers: &HeaderMap, peer: Option<IpAddr>, loaded: &Loaded) -> Reply {
        let query = uri.query().unwrap_or_default();
        // Decoded as exporter_exporter (Go's url.ParseQuery) decodes it; the first `module` names the module,
        // everything else goes to the backend.
        let mut modules = Vec::new();
        let mut params = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == "module" {
                modules.push(value.to_string());
            }
            if name != "module" || modules.len() > 1 {
                params.push((name.into_owned(), value.into_owned()));
            }
        }
        // exporter_exporter's answers, word for word (Go prints the `module` values as a list, and `http.Error`
        // adds a newline).
        let Some(name) = modules.first() else {
            return text(StatusCode::BAD_REQUEST, "require parameter module is missing[]\n\n");
        };
        let Some(module) = loaded.modules.get(name) else {
            return text(StatusCode::NOT_FOUND, format!("unknown module [{}]\n\n", modules.join(" ")));
        };
        let deadline = deadline(headers, module.config.timeout);
        self.metrics.scrapes.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        // For an exec module, each `args=` is one more argument after the configured ones, as
        // exporter_exporter passes them: whoever may scrape may choose them.
        let args: Vec<&str> = params.iter().filter(|(n, _)| n == "args").map(|(_, v)| v.as_str()).collect();
        let forward = Forward { params: &params, args: &args, headers, peer, consumed: &loaded.consumed };
        match module.scrape(&forward, deadline).await {
            Ok(scrape) => {
                let mut response = Response::new(promsd_web::response::full(scrape.body));
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
                    ScrapeError::Backend(BackendError::Timeout(_)) => {
                        self.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
                        StatusCode::GATEWAY_TIMEOUT
                    }
                    ScrapeError::Malformed(_) => {
                        self.metrics.malformed.fetch_add(1, Ordering::Relaxed);
                        StatusCode::BAD_GATEWAY
                    }
                    ScrapeError::Backend(_) => StatusCode::BAD_GATEWAY,
                };
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(module = %name, took = ?started.elapsed(), %error, "scrape failed");
                text(status, format!("module {name}: {error}\n"))
            }
        }
    }

    fn render_metrics(&self, headers: &HeaderMap, loaded: &Loaded) -> Reply {
        let m = &self.metrics;
        let counts = AgentCounts {
            scrapes: m.scrapes.load(Ordering::Relaxed),
            errors: m.errors.load(Ordering::Relaxed),
            timeouts: m.timeouts.load(Ordering::Relaxed),
            malformed: m.malformed.load(Ordering::Relaxed),
            unauthorized: m.unauthorized.load(Ordering::Relaxed),
            modules: loaded.modules.len(),
            gateway: [
                self.tunnel.polls.load(Ordering::Relaxed),
                self.tunnel.poll_errors.load(Ordering::Relaxed),
                self.tunnel.scrapes.load(Ordering::Relaxed),
                self.tunnel.refused.load(Ordering::Relaxed),
                self.tunnel.push_errors.load(Ordering::Relaxed),
            ],
        };
        promsd_web::metrics::reply(&agent_registry(counts, self.web.clone()), headers)
    }
}

/// The proxy's counters and the module count, read once per scrape.
#[derive(Debug, Clone, Copy, Default)]
struct AgentCounts {
    scrapes: u64,
    errors: u64,
    timeouts: u64,
    malformed: u64,
    unauthorized: u64,
    modules: usize,
    /// Polls, poll errors, scrapes, refused scrapes, push errors of the gateway loop.
    gateway: [u64; 5],
}

/// Everything the agent exports: its own metrics (names unchanged) and the web stack's
/// `registrar_agent_web_*_total`.
fn agent_registry(counts: AgentCounts, web: Arc<promsd_web::WebMetrics>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AgentCollector { counts, web: web.clone() }));
    registry.register_collector(Box::new(WebCollector::new("registrar_agent", web)));
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

#[derive(Debug)]
struct AgentCollector {
    counts: AgentCounts,
    web: Arc<promsd_web::WebMetrics>,
}

impl Collector for AgentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (c, e) = (&self.counts, &mut encoder);
        // Token refusals and the web stack's basic-auth ones, as the agent has always counted them.
        let unauthorized = c.unauthorized + self.web.unauthorized.load(Ordering::Relaxed);
        counter(e, "registrar_agent_scrapes", "Scrapes through the proxy.", c.scrapes)?;
        counter(e, "registrar_agent_scrape_errors", "Scrapes that failed (502 or 504).", c.errors)?;
        counter(e, "registrar_agent_scrape_timeouts", "Scrapes that hit their deadline (504).", c.timeouts)?;
        counter(
            e,
            "registrar_agent_malformed_content",
            "Backend outputs that are not valid exposition format.",
            c.malformed,
        )?;
        counter(e, "registrar_agent_unauthorized", "Requests refused for missing or wrong credentials.", unauthorized)?;
        gauge(e, "registrar_agent_modules", "Modules configured.", i64::try_from(c.modules).unwrap_or(i64::MAX))?;
        let [polls, poll_errors, scrapes, refused, push_errors] = c.gateway;
        counter(e, "registrar_agent_gateway_polls", "Polls of the gateway (--proxy-url) answered or failed.", polls)?;
        counter(
            e,
            "registrar_agent_gateway_poll_errors",
            "Polls of the gateway that failed or were refused.",
            poll_errors,
        )?;
        counter(e, "registrar_agent_gateway_scrapes", "Scrape requests received from the gateway.", scrapes)?;
        counter(
            e,
            "registrar_agent_gateway_scrapes_refused",
            "Scrape requests from the gateway for no configured module or another host.",
            refused,
        )?;
        counter(e, "registrar_agent_gateway_push_errors", "Scrape answers that could not be pushed.", push_errors)?;
        build_info(e, "registrar_agent")
    }
}

/// The module's timeout, shortened to Prometheus's scrape timeout (less a margin to answer in) when given.
fn deadline(headers: &HeaderMap, module_timeout: Option<Duration>) -> Duration {
    let prometheus = headers
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

/// The module list as exporter_exporter 0.4 gives it: its HTML, byte for byte, or with exactly
/// `Accept: application/json` its JSON (Go's field names and values; a module's `File` for file modules).
/// Header and environment values are not shown (they often carry credentials); nor are the agent's own
/// settings (basic auth, `server_name`, the token).
fn index(headers: &HeaderMap, loaded: &Loaded) -> Reply {
    if headers.get(ACCEPT).is_some_and(|v| v.as_bytes() == b"application/json") {
        let modules: serde_json::Map<String, serde_json::Value> =
            loaded.modules.iter().map(|(name, m)| (name.clone(), module_json(&m.config))).collect();
        return response::with_type(
            StatusCode::OK,
            "application/json",
            Bytes::from(serde_json::Value::Object(modules).to_string()),
        );
    }
    let links: String = loaded
        .modules
        .keys()
        .map(|name| format!("\n\t\t\t\t\t\t<li><a href=\"/proxy?module={name}\">{name}</a></li>\n\t\t\t\t\t"))
        .collect();
    response::with_type(
        StatusCode::OK,
        "text/html; charset=utf-8",
        format!("\n\t\t\t<h2>Exporters:</h2>\n\t\t\t\t<ul>\n\t\t\t\t\t{links}\n\t\t\t\t</ul>"),
    )
}

/// One module as exporter_exporter's `json.Marshal` of its module configuration writes it.
fn module_json(config: &crate::config::ModuleConfig) -> serde_json::Value {
    use serde_json::{Value, json};
    let hidden = |map: &std::collections::BTreeMap<String, String>| -> Value {
        if map.is_empty() {
            return Value::Null;
        }
        map.keys().map(|k| (k.clone(), Value::from("<hidden>"))).collect::<serde_json::Map<_, _>>().into()
    };
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let exec = match &config.exec {
        Some(e) => json!({
            "Command": e.command,
            "Args": if e.args.is_empty() { Value::Null } else { json!(e.args) },
            "Env": hidden(&e.env),
            "XXX": null,
        }),
        None => json!({ "Command": "", "Args": null, "Env": null, "XXX": null }),
    };
    let http = match &config.http {
        Some(h) => json!({
            "Verify": h.verify.unwrap_or(true),
            "TLSInsecureSkipVerify": h.tls_insecure_skip_verify,
            "TLSCertFile": path(&h.tls_cert_file),
            "TLSKeyFile": path(&h.tls_key_file),
            "TLSCACertFile": path(&h.tls_ca_file),
            "Port": h.port,
            "Path": h.path,
            "Scheme": h.scheme,
            "Address": h.address,
            "Headers": hidden(&h.headers),
            "XXX": null,
        }),
        None => json!({
            "Verify": null, "TLSInsecureSkipVerify": false, "TLSCertFile": null, "TLSKeyFile": null,
            "TLSCACertFile": null, "Port": 0, "Path": "", "Scheme": "", "Address": "", "Headers": null, "XXX": null,
        }),
    };
    let mut module = json!({
        "Method": format!("{:?}", config.method).to_lowercase(),
        "Timeout": config.timeout.map_or(0, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
        "XXX": null,
        "Exec": exec,
        "HTTP": http,
    });
    if let (Some(file), Some(object)) = (&config.file, module.as_object_mut()) {
        object.insert("File".into(), json!({ "Path": file.path.display().to_string() }));
    }
    module
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use promsd_web::metrics::{Format, encode};

    use super::{AgentCounts, agent_registry, constant_time_eq};

    fn promtool(body: &str) -> (Option<i32>, String) {
        promsd_tests::promtool(&["check", "metrics"], body.as_bytes())
    }

    #[test]
    fn agent_metrics_keep_their_names_and_pass_promtool() {
        let web = Arc::new(promsd_web::WebMetrics::default());
        web.unauthorized.fetch_add(2, Ordering::Relaxed);
        web.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
        let counts = AgentCounts {
            scrapes: 5,
            errors: 3,
            timeouts: 2,
            malformed: 1,
            unauthorized: 1,
            modules: 4,
            gateway: [6, 1, 5, 1, 0],
        };
        let text = encode(&agent_registry(counts, web.clone()), Format::Text).expect("encode");
        for line in [
            "registrar_agent_scrapes_total 5",
            "registrar_agent_scrape_errors_total 3",
            "registrar_agent_scrape_timeouts_total 2",
            "registrar_agent_malformed_content_total 1",
            "registrar_agent_unauthorized_total 3",
            "registrar_agent_modules 4",
            "registrar_agent_gateway_polls_total 6",
            "registrar_agent_gateway_scrapes_refused_total 1",
            "registrar_agent_web_unauthorized_total 2",
            "registrar_agent_web_tls_handshake_failures_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
        promsd_tests::assert_exporter_basics(&text, "registrar_agent");
        assert_eq!(promtool(&text), (Some(0), String::new()), "{text}");
        let openmetrics = encode(&agent_registry(counts, web), Format::OpenMetrics).expect("encode");
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    }

    #[test]
    fn compares_secrets() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3cretx", b"s3cret"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
