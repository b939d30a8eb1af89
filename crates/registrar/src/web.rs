//! `registrar run --web.listen-address`: `/metrics` and `/-/healthy`, as the official exporters serve them,
//! on promsd's one web stack (so `--web.config.file` applies) and its one exposition path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use promsd_registration::Status;
use promsd_web::Reply;
use promsd_web::WebMetrics;
use promsd_web::metrics::{ProcessCollector, WebCollector, build_info, counter, gauge};
use promsd_web::prometheus_client::collector::Collector;
use promsd_web::prometheus_client::encoding::DescriptorEncoder;
use promsd_web::prometheus_client::registry::Registry;
use promsd_web::response::{self, text};

pub struct StatusPage {
    pub status: Arc<Status>,
    pub web: Arc<WebMetrics>,
}

impl promsd_web::Handler for StatusPage {
    async fn handle(&self, request: Request<Incoming>, _peer: SocketAddr) -> Reply {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return response::method_not_allowed();
        }
        match request.uri().path() {
            "/metrics" => {
                let mut registry = registry(self.status.clone());
                registry.register_collector(Box::new(WebCollector::new("registrar", self.web.clone())));
                promsd_web::metrics::reply(&registry, request.headers())
            }
            "/-/healthy" => text(StatusCode::OK, "registrar is Healthy.\n"),
            _ => response::not_found(),
        }
    }
}

/// Everything `registrar run` exports; built per scrape, the collector reads [`Status`] when encoded.
pub fn registry(status: Arc<Status>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StatusCollector(status)));
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

/// [`Status`]'s atomics as the metrics `registrar run` has always exported (names unchanged).
#[derive(Debug)]
struct StatusCollector(Arc<Status>);

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let e = &mut encoder;
        let flag = |b: &AtomicBool| i64::from(b.load(Ordering::Relaxed));
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        gauge(
            e,
            "registrar_exporter_up",
            "Whether the exporter accepts connections on its port.",
            flag(&s.exporter_up),
        )?;
        gauge(e, "registrar_registered", "Whether the exporter's record is written in etcd.", flag(&s.registered))?;
        counter(e, "registrar_registrations", "Writes of the record to etcd.", count(&s.registrations))?;
        counter(e, "registrar_etcd_errors", "Failed attempts to register or keep the lease.", count(&s.etcd_errors))?;
        counter(e, "registrar_lease_grants", "etcd leases granted for the record.", count(&s.lease_grants))?;
        let ttl = s.lease_ttl_seconds.load(Ordering::Relaxed);
        gauge(e, "registrar_lease_ttl_seconds", "TTL of the lease the record is bound to (0: no lease).", ttl)?;
        let held = s.lease.lock().ok().and_then(|l| *l).is_some();
        gauge(e, "registrar_lease_held", "Whether a lease is held for the record.", i64::from(held))?;
        gauge(
            e,
            "registrar_record_yielded",
            "Whether another host's registrar holds the record's key (a clone or a duplicate instance name).",
            flag(&s.yielded),
        )?;
        counter(
            e,
            "registrar_record_conflicts",
            "Times another host's registrar took the record's key.",
            count(&s.conflicts),
        )?;
        counter(
            e,
            "registrar_record_restores",
            "Times the record was found deleted or overwritten in etcd and written again.",
            count(&s.restores),
        )?;
        build_info(e, "registrar")
    }
}

#[cfg(test)]
mod tests {

    use promsd_web::metrics::{Format, encode};

    use super::*;

    fn promtool(body: &str) -> (Option<i32>, String) {
        promsd_tests::promtool(&["check", "metrics"], body.as_bytes())
    }

    #[test]
    fn status_metrics_keep_their_names_and_pass_promtool() {
        let status = Arc::new(Status::default());
        status.exporter_up.store(true, Ordering::Relaxed);
        status.wrote();
        status.granted(7, 5);
        let text = encode(&registry(status.clone()), Format::Text).expect("encode");
        for line in [
            "registrar_exporter_up 1",
            "registrar_registered 1",
            "registrar_registrations_total 1",
            "registrar_etcd_errors_total 0",
            "registrar_lease_grants_total 1",
            "registrar_lease_ttl_seconds 5",
            "registrar_lease_held 1",
            "registrar_record_yielded 0",
            "registrar_record_conflicts_total 0",
            "registrar_record_restores_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
        assert!(text.contains("# TYPE registrar_registrations_total counter\n"), "{text}");
        promsd_tests::assert_exporter_basics(&text, "registrar");
        assert_eq!(promtool(&text), (Some(0), String::new()), "{text}");
        let openmetrics = encode(&registry(status), Format::OpenMetrics).expect("encode");
        assert!(openmetrics.contains("\nregistrar_registrations_total 1\n"), "{openmetrics}");
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    }
}
