//! The one exposition path of promsd: every `/metrics` (dnsd's, `registrar run`'s, the agent's) is a
//! `prometheus_client` [`Registry`] written by prometheus-client in the format the client asked for.
//!
//! - [`Format::negotiate`]: OpenMetrics for clients that ask for it (Prometheus), the classic text format
//!   (0.0.4) for everyone else, because `promtool check metrics` only reads that one.
//! - [`encode`] and [`reply`]: the registry as a body, or as the whole HTTP reply.
//! - [`counter`] and [`gauge`]: one sample read from an atomic at scrape time, for [`Collector`]s.
//! - [`WebCollector`]: the web stack's own refusals ([`WebMetrics`]) as `<daemon>_web_*_total`.
//! - [`ProcessCollector`]: `process_*` as Prometheus's client libraries write them; [`build_info`]:
//!   `<daemon>_build_info` from [`promsd_buildinfo`].
//!
//! Counters are declared without `_total` (OpenMetrics' family name); the encoders append it to the sample.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::StatusCode;
use hyper::header::{ACCEPT, HeaderMap};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

pub use crate::process::ProcessCollector;
use crate::response;
use crate::server::{Reply, WebMetrics};

/// OpenMetrics 1.0 text, what Prometheus asks for first in its `Accept` header.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format 0.0.4, for every other client.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The exposition formats, both written by prometheus-client from the same registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The classic text format: what curl, `promtool check metrics` and older scrapers read. The sample
    /// lines are the same as OpenMetrics'; counters' `# TYPE` lines name the `_total` sample.
    Text,
}

impl Format {
    /// OpenMetrics when the request's `Accept` header lists it (as Prometheus's does), else the text format:
    /// the negotiation Prometheus's own client libraries do.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                parts.next().is_some_and(|media| media.eq_ignore_ascii_case("application/openmetrics-text"))
                    && !parts.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f64>().ok()) == Some(0.0))
            })
        });
        if wants_openmetrics { Self::OpenMetrics } else { Self::Text }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::Text => TEXT_CONTENT_TYPE,
        }
    }
}

/// Everything in `registry` in `format` (OpenMetrics ends in `# EOF`).
pub fn encode(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry)?,
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?,
    }
    Ok(out)
}

/// The `/metrics` reply for a request with `headers`: `registry` in the format its `Accept` asks for.
pub fn reply(registry: &Registry, headers: &HeaderMap) -> Reply {
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|a| a.to_str().ok()));
    match encode(registry, format) {
        Ok(body) => response::with_type(StatusCode::OK, format.content_type(), body),
        // Only a collector's own error gets here; the registry's types write into a String infallibly.
        Err(_) => response::text(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed\n"),
    }
}

/// One unlabelled counter; `name` without `_total`, which the encoder appends to the sample.
pub fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// One counter with a sample per label set, e.g. `promsd_gateway_scrapes_total{result="timeout"}`.
pub fn labelled_counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(&[(&str, &str)], u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// One unlabelled counter with a fractional value (seconds), e.g. `process_cpu_seconds_total`.
pub fn counter_f64(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// One unlabelled gauge.
pub fn gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// One gauge with a sample per label set, e.g. `dnsd_etcd_endpoint_up{endpoint="..."}`.
pub fn labelled_gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(&[(&str, &str)], i64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// `<daemon>_build_info{version,revision,branch,rustversion} 1`, as Prometheus's binaries export it (Go's
/// `goversion` is `rustversion`), from [`promsd_buildinfo`]. A gauge, not OpenMetrics' info type: that would
/// rename it to `<daemon>_build_info_info`.
pub fn build_info(encoder: &mut DescriptorEncoder, daemon: &str) -> Result<(), std::fmt::Error> {
    let (name, help) = (
        format!("{daemon}_build_info"),
        format!(
            "A metric with a constant '1' value labeled by version, revision, branch, and rustversion from which \
             {daemon} was built."
        ),
    );
    let labels = promsd_buildinfo::labels();
    ConstGauge::new(1_i64)
        .encode(encoder.encode_descriptor(&name, &help, None, MetricType::Gauge)?.encode_family(&labels)?)
}

/// The web stack's refusals on a daemon's port: `<prefix>_web_unauthorized_total` (basic auth 401s and client
/// certificates naming no allowed SAN) and `<prefix>_web_tls_handshake_failures_total`.
#[derive(Debug)]
pub struct WebCollector {
    prefix: &'static str,
    metrics: Arc<WebMetrics>,
}

impl WebCollector {
    /// `prefix` is the daemon's metric prefix: `dnsd`, `registrar`, `registrar_agent`.
    pub fn new(prefix: &'static str, metrics: Arc<WebMetrics>) -> Self {
        Self { prefix, metrics }
    }
}

impl Collector for WebCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let prefix = self.prefix;
        counter(
            &mut encoder,
            &format!("{prefix}_web_unauthorized"),
            "Requests the web stack refused: no valid basic-auth credentials, or a client certificate for no allowed name.",
            self.metrics.unauthorized.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            &format!("{prefix}_web_tls_handshake_failures"),
            "TLS handshakes on the web port that failed or timed out.",
            self.metrics.tls_handshake_failures.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;\
                          q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("Application/OpenMetrics-Text")), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text, "curl sends no Accept");
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4")), Format::Text);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0,text/plain")), Format::Text);
        assert_eq!(Format::OpenMetrics.content_type(), "application/openmetrics-text; version=1.0.0; charset=utf-8");
        assert_eq!(Format::Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    }

    fn web_registry() -> Registry {
        let metrics = Arc::new(WebMetrics::default());
        metrics.unauthorized.fetch_add(2, Ordering::Relaxed);
        metrics.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(WebCollector::new("dnsd", metrics)));
        registry
    }

    #[test]
    fn the_reply_follows_the_accept_header() {
        let registry = web_registry();
        let mut headers = HeaderMap::new();
        let text = reply(&registry, &headers);
        assert_eq!(text.status(), StatusCode::OK);
        assert_eq!(text.headers()[hyper::header::CONTENT_TYPE], TEXT_CONTENT_TYPE);
        headers.insert(ACCEPT, "application/openmetrics-text;version=1.0.0".parse().expect("header"));
        let openmetrics = reply(&registry, &headers);
        assert_eq!(openmetrics.headers()[hyper::header::CONTENT_TYPE], OPENMETRICS_CONTENT_TYPE);
    }

    #[test]
    fn web_counters_are_named_after_the_daemon() {
        let body = encode(&web_registry(), Format::Text).expect("encode");
        assert!(body.contains("\ndnsd_web_unauthorized_total 2\n"), "{body}");
        assert!(body.contains("\ndnsd_web_tls_handshake_failures_total 1\n"), "{body}");
        assert!(body.contains("# TYPE dnsd_web_tls_handshake_failures_total counter\n"), "{body}");
        let openmetrics = encode(&web_registry(), Format::OpenMetrics).expect("encode");
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    }
}
