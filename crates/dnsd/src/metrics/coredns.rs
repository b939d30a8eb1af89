//! The metrics of CoreDNS's `prometheus` plugin, under its names and labels, so the dashboards and alerts
//! written for CoreDNS keep working on dnsd: `coredns_dns_requests_total`, `coredns_dns_responses_total`,
//! `coredns_dns_do_requests_total`, the `coredns_dns_request_duration_seconds`,
//! `coredns_dns_request_size_bytes` and `coredns_dns_response_size_bytes` histograms (CoreDNS's buckets),
//! `coredns_build_info` and `coredns_panics_total`.
//!
//! Labels are CoreDNS's: `server` (`dns://:53`, or `dns://ADDR:PORT` for a specific address, as with
//! `bind`), `zone` (the zone that answered, with its trailing dot; `dropped` for queries in none of the
//! zones, which CoreDNS refuses before any plugin), `view` (always empty: dnsd has no views), `proto`,
//! `family` (`1` IPv4, `2` IPv6), `type` (CoreDNS's list, `other` beyond it), `rcode`, and `plugin`
//! (`etcd`, or empty for what the server itself answered).
//!
//! Recording is as cheap as dnsd's own counters: relaxed increments of fixed atomic arrays, indexed by
//! zone, chosen once when dnsd starts; series are written only for what happened.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use super::{RCODES, rcode_index};
use crate::wire::{Outcome, Transport};

/// CoreDNS's `type` values (plugin/metrics/vars/monitor.go), then `other`.
const TYPES: [&str; 20] = [
    "A", "AAAA", "CNAME", "DNSKEY", "DS", "MX", "NSEC3", "NSEC", "NS", "PTR", "RRSIG", "SOA", "SRV", "TXT", "HTTPS",
    "SVCB", "IXFR", "AXFR", "ANY", "other",
];
const PROTOS: [&str; 2] = ["udp", "tcp"];
const FAMILIES: [&str; 2] = ["1", "2"];
/// CoreDNS's request duration buckets: 0.25 ms doubling to 8 s (`plugin.TimeBuckets`).
const DURATION_BUCKETS: [f64; 16] =
    [0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];
/// CoreDNS's request and response size buckets, in bytes.
const SIZE_BUCKETS: [f64; 14] =
    [0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3];

fn type_index(qtype: Option<RecordType>) -> usize {
    match qtype {
        Some(RecordType::A) => 0,
        Some(RecordType::AAAA) => 1,
        Some(RecordType::CNAME) => 2,
        Some(RecordType::DNSKEY) => 3,
        Some(RecordType::DS) => 4,
        Some(RecordType::MX) => 5,
        Some(RecordType::NSEC3) => 6,
        Some(RecordType::NSEC) => 7,
        Some(RecordType::NS) => 8,
        Some(RecordType::PTR) => 9,
        Some(RecordType::RRSIG) => 10,
        Some(RecordType::SOA) => 11,
        Some(RecordType::SRV) => 12,
        Some(RecordType::TXT) => 13,
        Some(RecordType::HTTPS) => 14,
        Some(RecordType::SVCB) => 15,
        Some(RecordType::IXFR) => 16,
        Some(RecordType::AXFR) => 17,
        Some(RecordType::ANY) => 18,
        _ => 19,
    }
}

/// Histograms of one metric, one per series, as per-bucket (not cumulative) counts with an overflow bucket,
/// and a sum in integer units (nanoseconds, bytes).
#[derive(Debug)]
struct Histograms {
    bounds: &'static [f64],
    /// [series][bound], then the overflow bucket: the count is their sum.
    buckets: Vec<AtomicU64>,
    sums: Vec<AtomicU64>,
    /// What one unit of the sums is in the metric's unit (1e-9 for nanoseconds as seconds).
    unit: f64,
}

impl Histograms {
    fn new(bounds: &'static [f64], series: usize, unit: f64) -> Self {
        let atomics = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Self { bounds, buckets: atomics(series * (bounds.len() + 1)), sums: atomics(series), unit }
    }

    fn observe(&self, series: usize, value: f64, units: u64) {
        let bucket = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.buckets[series * (self.bounds.len() + 1) + bucket].fetch_add(1, Ordering::Relaxed);
        self.sums[series].fetch_add(units, Ordering::Relaxed);
    }

    /// Writes the series' histogram with `labels`, unless nothing was observed in it.
    fn encode(
        &self,
        family: &mut prometheus_client::encoding::MetricEncoder<'_>,
        series: usize,
        labels: &[(&str, &str)],
    ) -> Result<(), std::fmt::Error> {
        let width = self.bounds.len() + 1;
        let counts: Vec<u64> =
            self.buckets[series * width..(series + 1) * width].iter().map(|n| n.load(Ordering::Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return Ok(());
        }
        // Per bucket: the encoder accumulates them.
        let buckets: Vec<(f64, u64)> = self.bounds.iter().chain(&[f64::INFINITY]).copied().zip(counts).collect();
        let sum = self.sums[series].load(Ordering::Relaxed) as f64 * self.unit;
        family
            .encode_family(&labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }
}

/// Where the count of one `coredns_dns_requests_total` series is in the flat [zone][proto][family][type]
/// array: one layout for recording and for encoding.
fn request_index(zone: usize, proto: usize, family: usize, qtype: usize) -> usize {
    ((zone * PROTOS.len() + proto) * FAMILIES.len() + family) * TYPES.len() + qtype
}

/// The CoreDNS families' counts.
#[derive(Debug)]
pub struct CorednsMetrics {
    server: String,
    /// The zones' names with their trailing dots, in the catalog's order, then `dropped`.
    zones: Vec<String>,
    /// [zone][proto][family][type]
    requests: Vec<AtomicU64>,
    /// [zone][rcode]
    responses: Vec<AtomicU64>,
    /// [zone]
    dnssec_ok: Vec<AtomicU64>,
    /// [zone]
    duration: Histograms,
    /// [zone][proto]
    request_size: Histograms,
    response_size: Histograms,
}

/// `dns://:53` for a wildcard address, `dns://127.0.0.1:53` or `dns://[::1]:53` for a specific one: the
/// `server` label CoreDNS gives its server blocks.
pub fn server_label(dns: SocketAddr) -> String {
    if dns.ip().is_unspecified() { format!("dns://:{}", dns.port()) } else { format!("dns://{dns}") }
}

impl CorednsMetrics {
    /// For a server on `server` (see [`server_label`]) answering for `zones` (as the catalog orders them).
    pub fn new(server: String, zones: &[&str]) -> Self {
        let zones: Vec<String> =
            zones.iter().map(|z| format!("{}.", z.trim_end_matches('.'))).chain(["dropped".to_owned()]).collect();
        let n = zones.len();
        let atomics = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            server,
            requests: atomics(n * PROTOS.len() * FAMILIES.len() * TYPES.len()),
            responses: atomics(n * RCODES.len()),
            dnssec_ok: atomics(n),
            duration: Histograms::new(&DURATION_BUCKETS, n, 1e-9),
            request_size: Histograms::new(&SIZE_BUCKETS, n * PROTOS.len(), 1.0),
            response_size: Histograms::new(&SIZE_BUCKETS, n * PROTOS.len(), 1.0),
            zones,
        }
    }

    /// One answered request (dropped ones are not CoreDNS's to count).
    pub fn record(&self, transport: Transport, ipv6: bool, outcome: &Outcome, sizes: (usize, usize), took: Duration) {
        let Some(rcode) = outcome.rcode else { return };
        let zone = outcome.zone.filter(|z| *z < self.zones.len() - 1).unwrap_or(self.zones.len() - 1);
        let proto = usize::from(transport == Transport::Tcp);
        self.requests[request_index(zone, proto, usize::from(ipv6), type_index(outcome.qtype))]
            .fetch_add(1, Ordering::Relaxed);
        self.responses[zone * RCODES.len() + rcode_index(rcode)].fetch_add(1, Ordering::Relaxed);
        if outcome.dnssec_ok {
            self.dnssec_ok[zone].fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.duration.observe(zone, took.as_secs_f64(), nanos);
        let (request_size, response_size) = sizes;
        self.request_size.observe(zone * PROTOS.len() + proto, request_size as f64, request_size as u64);
        self.response_size.observe(zone * PROTOS.len() + proto, response_size as f64, response_size as u64);
    }

    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let server = self.server.as_str();
        let mut family = encoder.encode_descriptor(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            None,
            MetricType::Counter,
        )?;
        for (z, zone) in self.zones.iter().enumerate() {
            for (p, proto) in PROTOS.iter().enumerate() {
                for (f, family_label) in FAMILIES.iter().enumerate() {
                    for (t, qtype) in TYPES.iter().enumerate() {
                        let value = self.requests[request_index(z, p, f, t)].load(Ordering::Relaxed);
                        if value > 0 {
                            let labels = [
                                ("server", server),
                                ("zone", zone.as_str()),
                                ("view", ""),
                                ("proto", *proto),
                                ("family", *family_label),
                                ("type", *qtype),
                            ];
                            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                        }
                    }
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "coredns_dns_responses",
            "Counter of response status codes.",
            None,
            MetricType::Counter,
        )?;
        for (z, zone) in self.zones.iter().enumerate() {
            let plugin = if z + 1 == self.zones.len() { "" } else { "etcd" };
            for (r, rcode) in RCODES.iter().enumerate() {
                let value = self.responses[z * RCODES.len() + r].load(Ordering::Relaxed);
                if value > 0 {
                    let labels = [
                        ("server", server),
                        ("zone", zone.as_str()),
                        ("view", ""),
                        ("rcode", *rcode),
                        ("plugin", plugin),
                    ];
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "coredns_dns_do_requests",
            "Counter of DNS requests with DO bit set per zone.",
            None,
            MetricType::Counter,
        )?;
        for (z, zone) in self.zones.iter().enumerate() {
            let value = self.dnssec_ok[z].load(Ordering::Relaxed);
            if value > 0 {
                let labels = [("server", server), ("zone", zone.as_str()), ("view", "")];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            None,
            MetricType::Histogram,
        )?;
        for (z, zone) in self.zones.iter().enumerate() {
            self.duration.encode(&mut family, z, &[("server", server), ("zone", zone.as_str()), ("view", "")])?;
        }
        for (name, help, histograms) in [
            (
                "coredns_dns_request_size_bytes",
                "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
                &self.request_size,
            ),
            ("coredns_dns_response_size_bytes", "Size of the returned response in bytes.", &self.response_size),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (z, zone) in self.zones.iter().enumerate() {
                for (p, proto) in PROTOS.iter().enumerate() {
                    let labels = [("server", server), ("zone", zone.as_str()), ("view", ""), ("proto", *proto)];
                    histograms.encode(&mut family, z * PROTOS.len() + p, &labels)?;
                }
            }
        }
        Ok(())
    }
}
