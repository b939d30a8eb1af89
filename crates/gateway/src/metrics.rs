//! The gateway's `/metrics`: its own counters, read once per scrape, and the web stack's and process's.
//! No label carries a client's token or secret.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::header::HeaderMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use promsd_web::Reply;
use promsd_web::metrics::{ProcessCollector, WebCollector, build_info, counter, gauge, labelled_counters};

use crate::handler::Gateway;
use crate::tokens::Refusal;

/// Everything read for one exposition.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub clients: usize,
    pub pending: usize,
    pub polls: u64,
    pub polls_held: u64,
    pub scrapes: u64,
    pub scrape_timeouts: u64,
    pub scrape_failures: u64,
    pub pushes: u64,
    pub pushes_unknown: u64,
    pub revoked: u64,
    pub refusals: [u64; 4],
    pub forbidden: u64,
    pub bad_requests: u64,
    pub too_large: u64,
    pub tokens: Option<usize>,
    /// Forwarded, rejected, upstream errors, upstream unreachable, and series: with --remote-write.upstream.
    pub writes: Option<([u64; 4], u64)>,
    /// The same for Loki pushes, with streams.
    pub pushes_loki: Option<([u64; 4], u64)>,
}

pub fn snapshot(gateway: &Gateway) -> Snapshot {
    let (c, h) = (&gateway.coordinator.counts, &gateway.counts);
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Snapshot {
        clients: gateway.coordinator.known_count(),
        pending: gateway.coordinator.pending(),
        polls: load(&c.polls),
        polls_held: load(&c.polls_held),
        scrapes: load(&c.scrapes),
        scrape_timeouts: load(&c.scrape_timeouts),
        scrape_failures: load(&c.scrape_failures),
        pushes: load(&c.pushes),
        pushes_unknown: load(&c.pushes_unknown),
        revoked: load(&c.revoked),
        refusals: std::array::from_fn(|i| load(&h.refusals[i])),
        forbidden: load(&h.forbidden),
        bad_requests: load(&h.bad_requests),
        too_large: load(&h.too_large),
        tokens: gateway.tokens.as_ref().map(|t| t.current().len()),
        writes: gateway.remote_write.as_ref().map(|w| (w.upstream.counts.load(), load(&w.series))),
        pushes_loki: gateway.loki.as_ref().map(|l| (l.upstream.counts.load(), load(&l.streams))),
    }
}

pub fn reply(gateway: &Gateway, headers: &HeaderMap) -> Reply {
    promsd_web::metrics::reply(&registry(snapshot(gateway), gateway.web.clone()), headers)
}

pub fn registry(snapshot: Snapshot, web: Arc<promsd_web::WebMetrics>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(GatewayCollector(snapshot)));
    registry.register_collector(Box::new(WebCollector::new("promsd_gateway", web)));
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

#[derive(Debug)]
struct GatewayCollector(Snapshot);

impl Collector for GatewayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (s, e) = (&self.0, &mut encoder);
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauge(
            e,
            "promsd_gateway_clients",
            "Clients known now (polling, or polled within --registration.timeout).",
            count(s.clients),
        )?;
        gauge(e, "promsd_gateway_scrapes_pending", "Scrapes waiting for a client's push now.", count(s.pending))?;
        counter(e, "promsd_gateway_polls", "Polls received from clients.", s.polls)?;
        counter(
            e,
            "promsd_gateway_polls_held",
            "Polls answered 408 after waiting the longest a poll is held.",
            s.polls_held,
        )?;
        labelled_counters(
            e,
            "promsd_gateway_scrapes",
            "Scrapes through the gateway, by result.",
            &[
                (&[("result", "answered")], s.pushes),
                (&[("result", "timeout")], s.scrape_timeouts),
                (&[("result", "failed")], s.scrape_failures),
            ],
        )?;
        counter(
            e,
            "promsd_gateway_pushes_unknown",
            "Pushes for no waiting scrape (unknown id, or too late).",
            s.pushes_unknown,
        )?;
        counter(
            e,
            "promsd_gateway_clients_revoked",
            "Clients dropped because their token was revoked, changed or expired.",
            s.revoked,
        )?;
        let labels = Refusal::ALL.map(|r| [("reason", r.as_str())]);
        let refusals: Vec<(&[(&str, &str)], u64)> = labels.iter().zip(s.refusals).map(|(l, v)| (&l[..], v)).collect();
        labelled_counters(
            e,
            "promsd_gateway_token_refusals",
            "Requests refused for their token (401), by reason.",
            &refusals,
        )?;
        counter(
            e,
            "promsd_gateway_forbidden",
            "Requests whose valid token does not cover what they asked for (403).",
            s.forbidden,
        )?;
        counter(e, "promsd_gateway_bad_requests", "Malformed polls and pushes (400).", s.bad_requests)?;
        counter(e, "promsd_gateway_too_large", "Requests whose body was over --web.max-body-size (413).", s.too_large)?;
        if let Some(tokens) = s.tokens {
            gauge(e, "promsd_gateway_tokens", "Tokens in the token file in force.", count(tokens))?;
        }
        for (family, count, what, of) in [
            ("promsd_gateway_remote_writes", "promsd_gateway_remote_write_series", "remote_write requests", s.writes),
            ("promsd_gateway_loki_pushes", "promsd_gateway_loki_streams", "Loki pushes", s.pushes_loki),
        ] {
            let Some(([forwarded, rejected, upstream_errors, unreachable], units)) = of else { continue };
            labelled_counters(
                e,
                family,
                &format!(
                    "{what}, by result: forwarded, rejected (a bad body or another tenant's data), upstream_error \
                     (the upstream's non-2xx), unreachable (no answer from the upstream)."
                ),
                &[
                    (&[("result", "forwarded")], forwarded),
                    (&[("result", "rejected")], rejected),
                    (&[("result", "upstream_error")], upstream_errors),
                    (&[("result", "unreachable")], unreachable),
                ],
            )?;
            counter(e, count, "Series (or streams) checked for their tenant and forwarded.", units)?;
        }
        build_info(e, "promsd_gateway")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promsd_web::metrics::{Format, encode};

    #[test]
    fn metrics_pass_promtool() {
        let snapshot = Snapshot {
            clients: 3,
            pushes: 7,
            refusals: [1, 2, 3, 4],
            tokens: Some(2),
            writes: Some(([5, 1, 0, 2], 50)),
            pushes_loki: Some(([1, 0, 0, 0], 3)),
            ..Snapshot::default()
        };
        let text =
            encode(&registry(snapshot, Arc::new(promsd_web::WebMetrics::default())), Format::Text).expect("encode");
        for line in [
            "promsd_gateway_clients 3",
            "promsd_gateway_scrapes_total{result=\"answered\"} 7",
            "promsd_gateway_token_refusals_total{reason=\"wrong_secret\"} 3",
            "promsd_gateway_tokens 2",
            "promsd_gateway_remote_writes_total{result=\"unreachable\"} 2",
            "promsd_gateway_loki_streams_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
        promsd_tests::assert_exporter_basics(&text, "promsd_gateway");
        let (code, stderr) = promsd_tests::promtool(&["check", "metrics"], text.as_bytes());
        assert_eq!((code, stderr), (Some(0), String::new()), "{text}");
    }
}
