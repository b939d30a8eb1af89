//! dnsd's own metrics, exposed on `/metrics` through `prometheus-client`.
//!
//! The query path records into plain atomic arrays ([`QueryMetrics::record`]: no lock, no lookup, no
//! allocation), because prometheus-client's `Family` takes a lock per access. Those arrays and the view's
//! state are read only at scrape time, by [`prometheus_client::collector::Collector`]s, so prometheus-client
//! still writes every byte of the exposition, through promsd-web's one exposition path
//! ([`promsd_web::metrics`]), which also adds the web stack's `dnsd_web_*_total` counters.
//!
//! Names follow Prometheus conventions and are those dnsd has always exported: counters are declared without
//! `_total` (OpenMetrics' family name) and their samples carry it, e.g. `dnsd_queries_total`. Beside them, by
//! default, the same queries under CoreDNS's names and labels ([`coredns`]); `--no-metrics.coredns` leaves
//! those out. Every daemon's `process_*` and `dnsd_build_info` come from promsd-web.

pub mod coredns;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use promsd_web::WebMetrics;
use promsd_web::metrics::{ProcessCollector, WebCollector, build_info, counter, gauge, labelled_gauges};

pub use self::coredns::{CorednsMetrics, server_label};
use crate::store::Store;
use crate::transfer::{Refusal, Transfers};
use crate::wire::{Outcome, Transport};

/// Everything dnsd exports on `/metrics`. Cheap enough to build per scrape: it only holds the pointers,
/// and the collectors read the current values when encoded.
pub fn registry(
    store: Arc<Store>,
    queries: Arc<QueryMetrics>,
    transfers: Arc<Transfers>,
    web: Arc<WebMetrics>,
) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(queries));
    registry.register_collector(Box::new(StoreCollector(store)));
    registry.register_collector(Box::new(TransferCollector(transfers)));
    registry.register_collector(Box::new(WebCollector::new("dnsd", web)));
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

const TRANSPORTS: [&str; 2] = ["udp", "tcp"];
const TYPES: [&str; 12] = ["A", "AAAA", "SRV", "TXT", "CNAME", "PTR", "MX", "NS", "SOA", "ANY", "other", "none"];
/// Panics in dnsd, counted by the panic hook `main` installs: `coredns_panics_total`.
pub static PANICS: AtomicU64 = AtomicU64::new(0);

const RCODES: [&str; 8] = ["NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "NOTIMP", "SERVFAIL", "BADVERS", "other"];
/// Upper bounds of the request duration buckets, in seconds: answers from memory take microseconds.
const BUCKETS: [f64; 12] = [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1, 1.0];

#[derive(Debug)]
pub struct QueryMetrics {
    /// [transport][type][rcode]
    queries: Vec<AtomicU64>,
    /// Queries that got no response (runts, responses, unencodable).
    dropped: AtomicU64,
    /// Per bucket, not cumulative: one increment per request. Requests over the last bound only count.
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    /// The same queries under CoreDNS's names, unless `--no-metrics.coredns`.
    coredns: Option<CorednsMetrics>,
}

impl Default for QueryMetrics {
    /// dnsd's own metrics only.
    fn default() -> Self {
        Self {
            queries: (0..TRANSPORTS.len() * TYPES.len() * RCODES.len()).map(|_| AtomicU64::new(0)).collect(),
            dropped: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            coredns: None,
        }
    }
}

fn type_index(qtype: Option<RecordType>) -> usize {
    match qtype {
        Some(RecordType::A) => 0,
        Some(RecordType::AAAA) => 1,
        Some(RecordType::SRV) => 2,
        Some(RecordType::TXT) => 3,
        Some(RecordType::CNAME) => 4,
        Some(RecordType::PTR) => 5,
        Some(RecordType::MX) => 6,
        Some(RecordType::NS) => 7,
        Some(RecordType::SOA) => 8,
        Some(RecordType::ANY) => 9,
        Some(_) => 10,
        None => 11,
    }
}

fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::NXDomain => 1,
        ResponseCode::Refused => 2,
        ResponseCode::FormErr => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::ServFail => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
}

impl QueryMetrics {
    /// dnsd's metrics and CoreDNS's.
    pub fn with_coredns(coredns: CorednsMetrics) -> Self {
        Self { coredns: Some(coredns), ..Self::default() }
    }

    /// On the query path: relaxed atomic increments only. `sizes` are the request's and the response's in
    /// bytes (0 for none).
    pub fn record(
        &self,
        transport: Transport,
        peer: SocketAddr,
        outcome: Outcome,
        sizes: (usize, usize),
        took: Duration,
    ) {
        if let Some(coredns) = &self.coredns {
            coredns.record(transport, peer.is_ipv6(), &outcome, sizes, took);
        }
        match outcome.rcode {
            Some(rcode) => {
                let t = usize::from(transport == Transport::Tcp);
                let index = (t * TYPES.len() + type_index(outcome.qtype)) * RCODES.len() + rcode_index(rcode);
                self.queries[index].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let seconds = took.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl Collector for QueryMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "dnsd_queries",
            "DNS queries answered, by transport, question type and response code.",
            None,
            MetricType::Counter,
        )?;
        for (t, transport) in TRANSPORTS.iter().enumerate() {
            for (q, qtype) in TYPES.iter().enumerate() {
                for (r, rcode) in RCODES.iter().enumerate() {
                    let value = self.queries[(t * TYPES.len() + q) * RCODES.len() + r].load(Ordering::Relaxed);
                    // 192 combinations, most never seen: only those that happened are series.
                    if value > 0 {
                        let labels = [("transport", *transport), ("type", *qtype), ("rcode", *rcode)];
                        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        counter(
            &mut encoder,
            "dnsd_queries_dropped",
            "Requests that got no response (runts, responses).",
            self.dropped.load(Ordering::Relaxed),
        )?;

        // The loads are not one snapshot: a request recorded meanwhile may be in a bucket but not yet in
        // the count. Deriving the overflow bucket from both keeps `+Inf` equal to `_count` and the buckets
        // cumulative, as the format requires.
        let mut buckets: Vec<(f64, u64)> =
            BUCKETS.iter().zip(&self.buckets).map(|(bound, n)| (*bound, n.load(Ordering::Relaxed))).collect();
        let bounded: u64 = buckets.iter().map(|(_, n)| n).sum();
        let count = self.count.load(Ordering::Relaxed).max(bounded);
        buckets.push((f64::INFINITY, count - bounded));
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder
            .encode_descriptor(
                "dnsd_request_duration_seconds",
                "Time from a request's arrival to its response being ready.",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        if let Some(coredns) = &self.coredns {
            coredns.encode(&mut encoder)?;
            coredns_build_info(&mut encoder)?;
            counter(
                &mut encoder,
                "coredns_panics",
                "A metrics that counts the number of panics.",
                PANICS.load(Ordering::Relaxed),
            )?;
        }
        Ok(())
    }
}

/// `coredns_build_info{version,revision,goversion} 1` with dnsd's version and revision, and rustc's version
/// (`rustc1.88.0`, as Go's `go1.24.1`) for `goversion`.
fn coredns_build_info(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let rustc = format!("rustc{}", promsd_buildinfo::RUST_VERSION);
    let labels = [
        ("version", promsd_buildinfo::VERSION),
        ("revision", promsd_buildinfo::REVISION),
        ("goversion", rustc.as_str()),
    ];
    let mut family = encoder.encode_descriptor(
        "coredns_build_info",
        "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
        None,
        MetricType::Gauge,
    )?;
    prometheus_client::metrics::gauge::ConstGauge::new(1_i64).encode(family.encode_family(&labels)?)
}

/// The view's state and how following etcd goes, read from the [`Store`] at scrape time.
/// Zone transfers and NOTIFYs.
#[derive(Debug)]
struct TransferCollector(Arc<Transfers>);

impl Collector for TransferCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = &self.0;
        let mut family = encoder.encode_descriptor(
            "dnsd_transfers",
            "Zone transfers served, by type (an IXFR answered with the whole zone counts as ixfr).",
            None,
            MetricType::Counter,
        )?;
        for (kind, value) in [("axfr", &t.axfr), ("ixfr", &t.ixfr)] {
            ConstCounter::new(value.load(Ordering::Relaxed)).encode(family.encode_family(&[("type", kind)])?)?;
        }
        let full = t.ixfr_full.load(Ordering::Relaxed);
        counter(&mut encoder, "dnsd_transfer_ixfr_full", "IXFRs answered with the whole zone.", full)?;
        let mut family = encoder.encode_descriptor(
            "dnsd_transfers_refused",
            "Zone transfer requests refused, by reason.",
            None,
            MetricType::Counter,
        )?;
        for reason in Refusal::ALL {
            let labels = [("reason", reason.label())];
            ConstCounter::new(t.refused(reason)).encode(family.encode_family(&labels)?)?;
        }
        counter(
            &mut encoder,
            "dnsd_notifies_sent",
            "NOTIFY messages sent to secondaries.",
            t.notifies.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "dnsd_notify_failures",
            "NOTIFY messages a secondary did not answer in time.",
            t.notify_failures.load(Ordering::Relaxed),
        )
    }
}

struct StoreCollector(Arc<Store>);

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCollector")
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = &self.0;
        let view = store.snapshot();
        let health = &store.health;
        let e = &mut encoder;
        build_info(e, "dnsd")?;
        gauge(e, "dnsd_ready", "Whether the first load from etcd has completed.", i64::from(store.is_ready()))?;
        gauge(e, "dnsd_etcd_connected", "Whether a watch on etcd is established.", i64::from(health.is_connected()))?;
        // NaN before the first load: there is no age yet, and 0 would read as "just confirmed".
        let age = health.view_age().map_or(f64::NAN, |a| a.as_secs_f64());
        gauge(e, "dnsd_view_age_seconds", "Seconds since etcd last confirmed the view is current.", age)?;
        endpoints_up(e, &store.members.up())?;
        gauge(e, "dnsd_view_keys", "SkyDNS keys (records) in the view answers come from.", view.len())?;
        gauge(e, "dnsd_view_names", "Names with records directly below them (services).", view.names)?;
        gauge(e, "dnsd_view_revision", "etcd revision the view reflects.", view.revision)?;
        gauge(e, "dnsd_view_serial", "SOA serial of the zones (rises with every change).", view.serial)?;
        let load = health.last_load().as_secs_f64();
        gauge(e, "dnsd_last_load_duration_seconds", "How long the last full load of the view took.", load)?;
        counter(
            e,
            "dnsd_resyncs",
            "Full reloads of the view after the first (after compaction).",
            health.resyncs.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "dnsd_malformed_entries_skipped",
            "Values skipped because they do not parse or do not fit in DNS.",
            health.malformed_skipped(),
        )?;
        counter(
            e,
            "dnsd_invalid_labels",
            "Values served without their labels or scrape settings, which Prometheus would reject.",
            health.bad_labels.load(Ordering::Relaxed),
        )
    }
}

/// `dnsd_etcd_endpoint_up`: whether each etcd endpoint answered when last asked on its own.
fn endpoints_up(encoder: &mut DescriptorEncoder, up: &[(String, bool)]) -> Result<(), std::fmt::Error> {
    let labels: Vec<[(&str, &str); 1]> = up.iter().map(|(endpoint, _)| [("endpoint", endpoint.as_str())]).collect();
    let samples: Vec<(&[(&str, &str)], i64)> =
        labels.iter().zip(up).map(|(labels, (_, up))| (&labels[..], i64::from(*up))).collect();
    labelled_gauges(
        encoder,
        "dnsd_etcd_endpoint_up",
        "Whether the etcd endpoint answered a status request of its own (asked every 5 s).",
        &samples,
    )
}

#[cfg(test)]
mod tests {
    use promsd_web::metrics::{Format, encode};

    use super::*;

    const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5353);

    /// The sample lines, sorted, in the form both formats give alike.
    fn samples(body: &str) -> Vec<String> {
        let mut samples: Vec<String> =
            body.lines().filter(|l| !l.starts_with('#')).map(promsd_tests::normalize_sample).collect();
        samples.sort();
        samples
    }

    fn queries_only(queries: QueryMetrics) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(queries));
        let text = encode(&registry, Format::Text).expect("encode");
        let openmetrics = encode(&registry, Format::OpenMetrics).expect("encode");
        assert_eq!(samples(&text), samples(&openmetrics), "both formats have the same samples");
        assert!(text.contains("# TYPE dnsd_queries_total counter\n"), "{text}");
        openmetrics
    }

    #[test]
    fn counters_keep_their_total_names_and_labels() {
        let queries = QueryMetrics::default();
        let answered =
            Outcome { qtype: Some(RecordType::SRV), rcode: Some(ResponseCode::NoError), ..Outcome::default() };
        queries.record(Transport::Udp, PEER, answered, (40, 100), Duration::from_micros(3));
        queries.record(Transport::Tcp, PEER, answered, (40, 100), Duration::from_micros(30));
        queries.record(Transport::Udp, PEER, Outcome::default(), (3, 0), Duration::from_secs(2));
        let body = queries_only(queries);
        assert!(body.contains("\ndnsd_queries_total{transport=\"udp\",type=\"SRV\",rcode=\"NOERROR\"} 1\n"), "{body}");
        assert!(body.contains("\ndnsd_queries_total{transport=\"tcp\",type=\"SRV\",rcode=\"NOERROR\"} 1\n"), "{body}");
        assert!(body.contains("\ndnsd_queries_dropped_total 1\n"), "{body}");
        assert!(body.contains("# TYPE dnsd_queries counter\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[test]
    fn the_histogram_is_cumulative_and_ends_in_the_count() {
        let queries = QueryMetrics::default();
        let answered = Outcome { qtype: Some(RecordType::A), rcode: Some(ResponseCode::NoError), ..Outcome::default() };
        for took in [Duration::from_micros(3), Duration::from_micros(30), Duration::from_secs(2)] {
            queries.record(Transport::Udp, PEER, answered, (40, 100), took);
        }
        let body = queries_only(queries);
        let buckets: Vec<&str> =
            body.lines().filter(|l| l.starts_with("dnsd_request_duration_seconds_bucket")).collect();
        assert_eq!(buckets.len(), BUCKETS.len() + 1, "{body}");
        assert_eq!(buckets.first().copied(), Some("dnsd_request_duration_seconds_bucket{le=\"0.000005\"} 1"), "{body}");
        // The encoder writes bounds in canonical float form: the last one was `le="1"` before prometheus-client.
        assert_eq!(buckets[BUCKETS.len() - 1], "dnsd_request_duration_seconds_bucket{le=\"1.0\"} 2", "{body}");
        assert_eq!(buckets.last().copied(), Some("dnsd_request_duration_seconds_bucket{le=\"+Inf\"} 3"), "{body}");
        assert!(body.contains("\ndnsd_request_duration_seconds_count 3\n"), "{body}");
        assert!(body.contains("\ndnsd_request_duration_seconds_sum 2.000033\n"), "{body}");
    }

    #[test]
    fn coredns_families_have_coredns_labels_and_buckets() {
        let queries =
            QueryMetrics::with_coredns(CorednsMetrics::new(server_label(PEER), &["prom.local", "10.in-addr.arpa"]));
        let v6: SocketAddr = "[::1]:5353".parse().expect("addr");
        let in_zone = Outcome {
            qtype: Some(RecordType::SRV),
            rcode: Some(ResponseCode::NoError),
            zone: Some(0),
            dnssec_ok: true,
        };
        queries.record(Transport::Udp, PEER, in_zone, (40, 300), Duration::from_micros(300));
        queries.record(
            Transport::Tcp,
            v6,
            Outcome { qtype: Some(RecordType::HINFO), ..in_zone },
            (42, 90),
            Duration::from_secs(9),
        );
        let refused =
            Outcome { qtype: Some(RecordType::A), rcode: Some(ResponseCode::Refused), zone: None, dnssec_ok: false };
        queries.record(Transport::Udp, PEER, refused, (30, 30), Duration::from_micros(10));
        queries.record(Transport::Udp, PEER, Outcome::default(), (3, 0), Duration::from_micros(10));
        let body = queries_only(queries);
        let server = "server=\"dns://127.0.0.1:5353\"";
        for line in [
            format!(
                "coredns_dns_requests_total{{{server},zone=\"prom.local.\",view=\"\",proto=\"udp\",family=\"1\",type=\"SRV\"}} 1"
            ),
            format!(
                "coredns_dns_requests_total{{{server},zone=\"prom.local.\",view=\"\",proto=\"tcp\",family=\"2\",type=\"other\"}} 1"
            ),
            format!(
                "coredns_dns_requests_total{{{server},zone=\"dropped\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"}} 1"
            ),
            format!(
                "coredns_dns_responses_total{{{server},zone=\"prom.local.\",view=\"\",rcode=\"NOERROR\",plugin=\"etcd\"}} 2"
            ),
            format!(
                "coredns_dns_responses_total{{{server},zone=\"dropped\",view=\"\",rcode=\"REFUSED\",plugin=\"\"}} 1"
            ),
            format!("coredns_dns_do_requests_total{{{server},zone=\"prom.local.\",view=\"\"}} 2"),
            format!(
                "coredns_dns_request_duration_seconds_bucket{{le=\"0.00025\",{server},zone=\"prom.local.\",view=\"\"}} 0"
            ),
            format!(
                "coredns_dns_request_duration_seconds_bucket{{le=\"0.0005\",{server},zone=\"prom.local.\",view=\"\"}} 1"
            ),
            format!(
                "coredns_dns_request_duration_seconds_bucket{{le=\"8.192\",{server},zone=\"prom.local.\",view=\"\"}} 1"
            ),
            format!(
                "coredns_dns_request_duration_seconds_bucket{{le=\"+Inf\",{server},zone=\"prom.local.\",view=\"\"}} 2"
            ),
            format!("coredns_dns_request_duration_seconds_count{{{server},zone=\"prom.local.\",view=\"\"}} 2"),
            format!(
                "coredns_dns_request_size_bytes_bucket{{le=\"100.0\",{server},zone=\"prom.local.\",view=\"\",proto=\"udp\"}} 1"
            ),
            format!(
                "coredns_dns_response_size_bytes_bucket{{le=\"200.0\",{server},zone=\"prom.local.\",view=\"\",proto=\"udp\"}} 0"
            ),
            format!(
                "coredns_dns_response_size_bytes_bucket{{le=\"300.0\",{server},zone=\"prom.local.\",view=\"\",proto=\"udp\"}} 1"
            ),
            format!(
                "coredns_dns_response_size_bytes_sum{{{server},zone=\"prom.local.\",view=\"\",proto=\"tcp\"}} 90.0"
            ),
            "coredns_panics_total 0".to_owned(),
        ] {
            assert!(body.lines().any(|l| l == line), "{line} missing from:\n{body}");
        }
        assert!(!body.contains("10.in-addr.arpa."), "no series for a zone nobody asked: {body}");
        let sum = format!("coredns_dns_request_duration_seconds_sum{{{server},zone=\"prom.local.\",view=\"\"}} ");
        let sum: f64 = body.lines().find_map(|l| l.strip_prefix(&sum)).and_then(|v| v.parse().ok()).expect("a sum");
        assert!((sum - 9.0003).abs() < 1e-9, "{sum}");
        assert!(body.contains("coredns_build_info{version=\""), "{body}");
        let text = {
            let mut registry = Registry::default();
            let queries = QueryMetrics::with_coredns(CorednsMetrics::new(server_label(PEER), &["prom.local"]));
            queries.record(Transport::Udp, PEER, in_zone, (40, 300), Duration::from_micros(300));
            registry.register_collector(Box::new(queries));
            encode(&registry, Format::Text).expect("encode")
        };
        let (code, complaints) = promsd_tests::promtool(&["check", "metrics"], text.as_bytes());
        assert_eq!((code, complaints.as_str()), (Some(0), ""), "{text}");
    }

    #[test]
    fn the_server_label_is_coredns() {
        assert_eq!(server_label("0.0.0.0:53".parse().expect("addr")), "dns://:53");
        assert_eq!(server_label("[::]:1053".parse().expect("addr")), "dns://:1053");
        assert_eq!(server_label("127.0.0.1:53".parse().expect("addr")), "dns://127.0.0.1:53");
        assert_eq!(server_label("[::1]:53".parse().expect("addr")), "dns://[::1]:53");
    }
}
