//! `/metrics`: query counters by transport, type and rcode, the duration histogram, and the view's state.

use promsd_tests::{Etcd, http_get};

use crate::server::{Dnsd, ZONE, load_seed};

fn scrape(dnsd: &Dnsd) -> String {
    let (status, body) = http_get(dnsd.web, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    body
}

fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

#[test]
fn queries_and_view_state_are_counted() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    for _ in 0..3 {
        dnsd.dig(&["SRV", "node.prom.local"]);
    }
    dnsd.dig(&["A", "missing.prom.local"]);
    dnsd.dig(&["A", "example.org"]);
    dnsd.dig(&["+tcp", "SRV", "node.prom.local"]);
    let body = scrape(&dnsd);
    let count = |series: &str| value(&body, series);
    assert_eq!(count(r#"dnsd_queries_total{transport="udp",type="SRV",rcode="NOERROR"}"#), Some(3.0), "{body}");
    assert_eq!(count(r#"dnsd_queries_total{transport="udp",type="A",rcode="NXDOMAIN"}"#), Some(1.0));
    assert_eq!(count(r#"dnsd_queries_total{transport="udp",type="A",rcode="REFUSED"}"#), Some(1.0));
    assert_eq!(count(r#"dnsd_queries_total{transport="tcp",type="SRV",rcode="NOERROR"}"#), Some(1.0));
    assert_eq!(count("dnsd_request_duration_seconds_count"), Some(6.0));
    assert_eq!(count(r#"dnsd_request_duration_seconds_bucket{le="+Inf"}"#), Some(6.0));
    assert_eq!(count(r#"dnsd_build_info{version="0.1.0"}"#), Some(1.0));
    assert_eq!(count("dnsd_view_keys"), Some(8.0), "the seed has 8 keys");
    assert_eq!(count("dnsd_view_names"), Some(3.0), "ns, _etcd-client and node");
    assert_eq!(count("dnsd_ready"), Some(1.0));
    assert_eq!(count("dnsd_etcd_connected"), Some(1.0));
    assert!(count("dnsd_view_age_seconds").is_some_and(|age| age < 10.0));
    assert!(count("dnsd_view_revision").is_some_and(|rev| rev >= 9.0));
    assert_eq!(count("dnsd_resyncs_total"), Some(0.0));
    assert!(count("dnsd_last_load_duration_seconds").is_some_and(|s| s > 0.0 && s < 10.0));
    assert_eq!(count("dnsd_malformed_entries_skipped_total"), Some(0.0));
    // Every line is valid exposition: a comment or `name{labels} value`.
    for line in body.lines() {
        assert!(
            line.starts_with("# HELP ")
                || line.starts_with("# TYPE ")
                || line.rsplit_once(' ').is_some_and(|(_, v)| v.parse::<f64>().is_ok() || v == "NaN"),
            "{line}"
        );
    }
}

/// The Grafana dashboard in contrib/ only uses metrics dnsd exports.
#[test]
fn the_dashboard_uses_real_metrics() {
    let etcd = Etcd::start();
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    dnsd.dig(&["A", "x.prom.local"]);
    let exported = scrape(&dnsd);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/grafana/dnsd.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut used = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("dnsd_"))
            {
                let family = word.trim_end_matches("_bucket");
                assert!(exported.contains(&format!("# TYPE {family} ")), "{word} in {expr:?} is not exported");
                used += 1;
            }
        }
    }
    assert!(used >= 10, "the dashboard shows dnsd's metrics ({used})");
}
