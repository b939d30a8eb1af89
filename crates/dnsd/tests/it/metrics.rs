//! `/metrics`: query counters by transport, type and rcode, the duration histogram, and the view's state.

use std::io::{Read, Write};

use std::time::Duration;

use promsd_tests::Etcd;

use crate::server::{Dnsd, ZONE, load_seed};

/// The `Accept` header Prometheus (2.42) sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `/metrics` as Prometheus gets it.
fn scrape(dnsd: &Dnsd) -> String {
    let (content_type, body) = scrape_as(dnsd, Some(PROMETHEUS_ACCEPT));
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    body
}

/// The response to a GET of `/metrics` with `accept` (None: no header, as curl sends it): its
/// `Content-Type` and body.
fn scrape_as(dnsd: &Dnsd, accept: Option<&str>) -> (String, String) {
    let mut stream = std::net::TcpStream::connect_timeout(&dnsd.web, Duration::from_secs(2)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {}\r\n{accept}Connection: close\r\n\r\n", dnsd.web).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")))
        .map(|(_, v)| v.trim().to_string())
        .expect("a Content-Type");
    (content_type, body.to_string())
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
    promsd_tests::assert_exporter_basics(&body, "dnsd");
    // The same queries under CoreDNS's names and labels (dig asks over IPv4: family 1).
    let server = format!("server=\"dns://{}\"", dnsd.dns);
    let zone = r#"zone="prom.local.",view="""#;
    let requests = |labels: &str| count(&format!("coredns_dns_requests_total{{{server},{labels}}}"));
    assert_eq!(requests(&format!(r#"{zone},proto="udp",family="1",type="SRV""#)), Some(3.0), "{body}");
    assert_eq!(requests(&format!(r#"{zone},proto="udp",family="1",type="A""#)), Some(1.0));
    assert_eq!(requests(&format!(r#"{zone},proto="tcp",family="1",type="SRV""#)), Some(1.0));
    assert_eq!(requests(r#"zone="dropped",view="",proto="udp",family="1",type="A""#), Some(1.0), "example.org");
    let responses = |labels: &str| count(&format!("coredns_dns_responses_total{{{server},{labels}}}"));
    assert_eq!(responses(&format!(r#"{zone},rcode="NOERROR",plugin="etcd""#)), Some(4.0));
    assert_eq!(responses(&format!(r#"{zone},rcode="NXDOMAIN",plugin="etcd""#)), Some(1.0));
    assert_eq!(responses(r#"zone="dropped",view="",rcode="REFUSED",plugin="""#), Some(1.0));
    assert_eq!(count(&format!("coredns_dns_request_duration_seconds_count{{{server},{zone}}}")), Some(5.0));
    assert_eq!(
        count(&format!(r#"coredns_dns_request_duration_seconds_bucket{{le="8.192",{server},{zone}}}"#)),
        Some(5.0)
    );
    assert_eq!(count(&format!(r#"coredns_dns_request_size_bytes_count{{{server},{zone},proto="udp"}}"#)), Some(4.0));
    assert_eq!(count(&format!(r#"coredns_dns_response_size_bytes_count{{{server},{zone},proto="tcp"}}"#)), Some(1.0));
    // dig sets no DO bit, and a request is over 0 bytes.
    assert!(!body.contains("coredns_dns_do_requests_total{"), "{body}");
    assert_eq!(
        count(&format!(r#"coredns_dns_request_size_bytes_bucket{{le="0.0",{server},{zone},proto="udp"}}"#)),
        Some(0.0)
    );
    assert_eq!(count("coredns_panics_total"), Some(0.0));
    assert!(body.lines().any(|l| l.starts_with(r#"coredns_build_info{version="0.1.0",revision=""#)), "{body}");
    assert_eq!(count("dnsd_view_keys"), Some(8.0), "the seed has 8 keys");
    assert_eq!(count("dnsd_view_names"), Some(3.0), "ns, _etcd-client and node");
    assert_eq!(count("dnsd_ready"), Some(1.0));
    assert_eq!(count("dnsd_etcd_connected"), Some(1.0));
    assert!(count("dnsd_view_age_seconds").is_some_and(|age| age < 10.0));
    assert!(count("dnsd_view_revision").is_some_and(|rev| rev >= 9.0));
    assert_eq!(count("dnsd_resyncs_total"), Some(0.0));
    assert!(count("dnsd_last_load_duration_seconds").is_some_and(|s| s > 0.0 && s < 10.0));
    assert_eq!(count("dnsd_malformed_entries_skipped_total"), Some(0.0));
    // Every line is valid exposition: a comment or `name{labels} value`, and OpenMetrics' closing `# EOF`.
    assert!(body.ends_with("\n# EOF\n"), "{body}");
    for line in body.lines() {
        assert!(
            line.starts_with("# HELP ")
                || line.starts_with("# TYPE ")
                || line == "# EOF"
                || line.rsplit_once(' ').is_some_and(|(_, v)| v.parse::<f64>().is_ok() || v == "NaN"),
            "{line}"
        );
    }
}

/// `--no-metrics.coredns` leaves CoreDNS's names out; dnsd's own and the process metrics stay.
#[test]
fn coredns_names_can_be_left_out() {
    let etcd = Etcd::start();
    let dnsd = Dnsd::start_args(&["--endpoints", &etcd.endpoint, "--zone", ZONE, "--no-metrics.coredns"]);
    dnsd.dig(&["A", "x.prom.local"]);
    let body = scrape(&dnsd);
    assert!(!body.contains("coredns_"), "{body}");
    assert_eq!(value(&body, r#"dnsd_queries_total{transport="udp",type="A",rcode="NXDOMAIN"}"#), Some(1.0), "{body}");
    promsd_tests::assert_exporter_basics(&body, "dnsd");
}

/// The Grafana dashboard in contrib/ is valid JSON and only uses metrics dnsd exports: its own names and, in
/// each query's `or` alternative (what CoreDNS exports), the CoreDNS names dnsd exports too.
#[test]
fn the_dashboard_uses_real_metrics() {
    let etcd = Etcd::start();
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    dnsd.dig(&["A", "x.prom.local"]);
    let exported = scrape(&dnsd);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/grafana/dnsd.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut queries: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["query"].as_str().filter(|_| v["type"] == "query").map(str::to_owned))
        .collect();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    let (mut own, mut coredns) = (0, 0);
    for expr in &queries {
        let words = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        for word in words.filter(|w| w.starts_with("dnsd_") || w.starts_with("coredns_")) {
            // A sample name, as queries use them (OpenMetrics families drop `_total` and `_bucket`).
            assert!(
                exported.lines().any(|l| l.strip_prefix(word).is_some_and(|r| r.starts_with([' ', '{']))),
                "{word} in {expr:?} is not exported"
            );
            if word.starts_with("coredns_") {
                coredns += 1;
            } else {
                own += 1;
            }
        }
    }
    assert!(own >= 10, "the dashboard shows dnsd's metrics ({own})");
    assert!(coredns >= 5, "the query panels and the instance list work on CoreDNS too ({coredns})");
}

fn promtool(args: &[&str], body: &str) -> (Option<i32>, String) {
    promsd_tests::promtool(args, body.as_bytes())
}

/// The sample lines without their values, sorted, in the form both formats give alike: what series a body has.
fn series(body: &str) -> Vec<String> {
    let mut series: Vec<String> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| promsd_tests::normalize_sample(s)))
        .collect();
    series.sort();
    series
}

/// dnsd's real `/metrics`, with queries counted and the histogram filled, passes `promtool check metrics`
/// with no problem reported. promtool must be installed: a missing one fails the test, it does not skip it.
///
/// promtool (2.42 here) has no OpenMetrics mode and no flag for one: `check metrics` reads stdin with the
/// Prometheus text (0.0.4) parser only. That parser takes OpenMetrics' `# EOF` as a comment, but files a
/// counter's `dnsd_x_total` samples under an untyped family of that name, apart from the `dnsd_x` counter
/// OpenMetrics declares, and then reports "dnsd_x_total no help text". So the lint runs on the text format,
/// which dnsd serves to clients that do not ask for OpenMetrics (curl, `curl | promtool check metrics`),
/// and the test checks that it has the very series of the OpenMetrics body Prometheus gets, and that
/// promtool's only complaints about that body are those format mismatches.
#[test]
fn promtool_accepts_the_metrics() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    for args in [&["SRV", "node.prom.local"][..], &["A", "missing.prom.local"], &["+tcp", "SRV", "node.prom.local"]] {
        dnsd.dig(args);
    }
    let (content_type, text) = scrape_as(&dnsd, None);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8", "curl gets the text format");
    assert!(text.contains("\ndnsd_queries_total{"), "the query counters have samples: {text}");
    assert!(text.contains("\ndnsd_request_duration_seconds_count 3\n"), "the histogram has samples: {text}");
    assert!(text.contains("# TYPE dnsd_queries_total counter\n"), "{text}");
    assert_eq!(promtool(&["check", "metrics"], &text), (Some(0), String::new()), "{text}");

    let openmetrics = scrape(&dnsd);
    assert_eq!(series(&openmetrics), series(&text), "both formats have the same series");
    let (code, printed) = promtool(&["check", "metrics"], &openmetrics);
    assert_eq!(code, Some(3), "promtool parses OpenMetrics and finds lint problems (1 is a parse error): {printed}");
    for problem in printed.lines() {
        let family = problem.strip_suffix("_total no help text").unwrap_or_else(|| panic!("{problem}"));
        assert!(openmetrics.contains(&format!("\n# TYPE {family} counter\n")), "{problem}");
    }
}
