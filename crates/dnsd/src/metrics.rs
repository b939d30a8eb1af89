//! dnsd's own metrics: lock-free counters on the query path, rendered in the Prometheus text format on
//! `/metrics` with the view's state. Names follow Prometheus conventions (`_total`, `_seconds`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::store::Store;
use crate::wire::{Outcome, Transport};

const TYPES: [&str; 12] = ["A", "AAAA", "SRV", "TXT", "CNAME", "PTR", "MX", "NS", "SOA", "ANY", "other", "none"];
const RCODES: [&str; 8] = ["NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "NOTIMP", "SERVFAIL", "BADVERS", "other"];
/// Upper bounds of the request duration buckets, in seconds: answers from memory take microseconds.
const BUCKETS: [f64; 12] = [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1, 1.0];

pub struct QueryMetrics {
    /// [transport][type][rcode]
    queries: Vec<AtomicU64>,
    /// Queries that got no response (runts, responses, unencodable).
    dropped: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        Self {
            queries: (0..2 * TYPES.len() * RCODES.len()).map(|_| AtomicU64::new(0)).collect(),
            dropped: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
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
    pub fn record(&self, transport: Transport, outcome: Outcome, took: Duration) {
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

    fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP dnsd_queries_total DNS queries answered, by transport, question type and response code.\n",
        );
        out.push_str("# TYPE dnsd_queries_total counter\n");
        for (t, transport) in ["udp", "tcp"].iter().enumerate() {
            for (q, qtype) in TYPES.iter().enumerate() {
                for (r, rcode) in RCODES.iter().enumerate() {
                    let value = self.queries[(t * TYPES.len() + q) * RCODES.len() + r].load(Ordering::Relaxed);
                    if value > 0 {
                        let _ = writeln!(
                            out,
                            "dnsd_queries_total{{transport=\"{transport}\",type=\"{qtype}\",rcode=\"{rcode}\"}} {value}"
                        );
                    }
                }
            }
        }
        metric(
            out,
            "dnsd_queries_dropped_total",
            "counter",
            "Requests that got no response (runts, responses).",
            self.dropped.load(Ordering::Relaxed),
        );
        out.push_str(
            "# HELP dnsd_request_duration_seconds Time from a request's arrival to its response being ready.\n",
        );
        out.push_str("# TYPE dnsd_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "dnsd_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "dnsd_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "dnsd_request_duration_seconds_sum {sum}\ndnsd_request_duration_seconds_count {count}");
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// Everything on `/metrics`.
pub fn render(store: &Store, queries: &QueryMetrics) -> String {
    let view = store.snapshot();
    let health = &store.health;
    let mut out = String::new();
    queries.render(&mut out);
    let version = env!("CARGO_PKG_VERSION");
    let _ = writeln!(
        out,
        "# HELP dnsd_build_info dnsd's version.\n# TYPE dnsd_build_info gauge\ndnsd_build_info{{version=\"{version}\"}} 1"
    );
    metric(
        &mut out,
        "dnsd_ready",
        "gauge",
        "Whether the first load from etcd has completed.",
        u8::from(store.is_ready()),
    );
    metric(
        &mut out,
        "dnsd_etcd_connected",
        "gauge",
        "Whether a watch on etcd is established.",
        u8::from(health.is_connected()),
    );
    let age = health.view_age().map(|a| format!("{:.3}", a.as_secs_f64())).unwrap_or_else(|| "NaN".into());
    metric(&mut out, "dnsd_view_age_seconds", "gauge", "Seconds since etcd last confirmed the view is current.", age);
    metric(&mut out, "dnsd_view_keys", "gauge", "SkyDNS keys (records) in the view answers come from.", view.len());
    metric(&mut out, "dnsd_view_names", "gauge", "Names with records directly below them (services).", view.names);
    metric(&mut out, "dnsd_view_revision", "gauge", "etcd revision the view reflects.", view.revision);
    metric(&mut out, "dnsd_view_serial", "gauge", "SOA serial of the zones (rises with every change).", view.serial);
    let load = format!("{:.6}", health.last_load().as_secs_f64());
    metric(&mut out, "dnsd_last_load_duration_seconds", "gauge", "How long the last full load of the view took.", load);
    metric(
        &mut out,
        "dnsd_resyncs_total",
        "counter",
        "Full reloads of the view after the first (after compaction).",
        health.resyncs.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "dnsd_malformed_entries_skipped_total",
        "counter",
        "Values skipped because they do not parse or do not fit in DNS.",
        health.malformed_skipped(),
    );
    out
}
