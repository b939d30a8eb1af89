//! `/sd/v1/<zone>`: Prometheus's http_sd from the view, the same targets as SRV answers, with labels.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use promsd_tests::{Etcd, eventually, http_get, http_request};
use serde_json::Value;

use crate::server::{Dnsd, ZONE, load_seed, put_many};

/// The target groups of a listing, parsed, as `target -> labels`.
fn groups(body: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let groups: Vec<Value> = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let mut out = BTreeMap::new();
    for group in groups {
        let targets = group["targets"].as_array().expect("targets");
        assert_eq!(targets.len(), 1, "one target per group: {group}");
        let labels = group["labels"].as_object().expect("labels");
        let labels = labels.iter().map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string())).collect();
        assert!(out.insert(targets[0].as_str().expect("target").to_string(), labels).is_none(), "{group}");
    }
    out
}

fn listing(dnsd: &Dnsd, path: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let reply = http_request(dnsd.web, path, &[]).expect("GET");
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    groups(&reply.body)
}

/// The targets an SRV question gives, as Prometheus's dns_sd makes them (`target:port`, no trailing dot),
/// but for those of port 0, where nothing can be scraped.
fn srv_targets(dnsd: &Dnsd, name: &str) -> BTreeSet<String> {
    let answer = dnsd.dig(&["+tcp", "SRV", name]);
    answer
        .answer
        .iter()
        .map(|record| {
            let fields: Vec<&str> = record.split_whitespace().collect();
            format!("{}:{}", fields[fields.len() - 1].trim_end_matches('.'), fields[fields.len() - 2])
        })
        .filter(|target| !target.ends_with(":0"))
        .collect()
}

#[test]
fn lists_the_srv_targets_with_their_labels_and_scrape_settings() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    etcd.put(
        "/skydns/local/prom/proxy/server03",
        r#"{"host":"192.168.1.3","port":9998,"text":"rack 4","labels":{"env":"prod","team":"db"},"scheme":"https","metrics_path":"/proxy","params":{"module":"proxy"}}"#,
    );
    etcd.put("/skydns/local/prom/web/a", r#"{"host":"web.example.org","port":443,"priority":5,"weight":20}"#);
    etcd.put("/skydns/local/prom/web/b", r#"{"host":"10 5 8443 lb.example.org."}"#); // external-dns's SRV form
    etcd.put("/skydns/local/prom/web/c", r#"{"host":"192.168.1.9","port":-1}"#); // no SRV record
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);

    let zone = listing(&dnsd, "/sd/v1/prom.local");
    let targets: BTreeSet<String> = zone.keys().cloned().collect();
    assert_eq!(targets, srv_targets(&dnsd, "prom.local"), "the zone's targets are its SRV records");
    assert!(targets.contains("server01.node.prom.local:9100"), "{targets:?}");
    assert!(targets.contains("lb.example.org:8443"), "{targets:?}");
    assert!(!targets.iter().any(|t| t.contains("ns.dns")), "name servers have no port: {targets:?}");
    assert_eq!(dnsd.dig(&["SRV", "ns.dns.prom.local"]).answer.len(), 3, "though SRV answers give port 0");

    // Weights are shares within the listed name's priority, as in its SRV answer: here, of 10 records.
    let mut labels = zone["server03.proxy.prom.local:9998"].clone();
    assert_eq!(labels.remove("__meta_promsd_weight").as_deref(), Some("10"));
    let proxy = listing(&dnsd, "/sd/v1/prom.local?service=proxy");
    assert_eq!(proxy["server03.proxy.prom.local:9998"]["__meta_promsd_weight"], "100");
    let expected: BTreeMap<String, String> = [
        ("__meta_promsd_zone", "prom.local"),
        ("__meta_promsd_name", "server03.proxy.prom.local"),
        ("__meta_promsd_service", "proxy"),
        ("__meta_promsd_instance", "server03"),
        ("__meta_promsd_host", "192.168.1.3"),
        ("__meta_promsd_port", "9998"),
        ("__meta_promsd_priority", "10"),
        ("__meta_promsd_text", "rack 4"),
        ("__meta_promsd_label_env", "prod"),
        ("__meta_promsd_label_team", "db"),
        ("env", "prod"),
        ("team", "db"),
        ("__scheme__", "https"),
        ("__metrics_path__", "/proxy"),
        ("__param_module", "proxy"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, expected);
    let web = &zone["web.example.org:443"];
    assert_eq!((web["__meta_promsd_priority"].as_str(), web["__meta_promsd_weight"].as_str()), ("5", "100"));
    let srv = dnsd.dig(&["SRV", "prom.local"]);
    assert!(srv.answer.iter().any(|r| r.ends_with("SRV 5 100 443 web.example.org.")), "{}", srv.raw);
    assert!(!web.contains_key("__scheme__") && !web.contains_key("env"), "{web:?}");

    let node = listing(&dnsd, "/sd/v1/prom.local.?service=node");
    assert_eq!(node.keys().cloned().collect::<BTreeSet<_>>(), srv_targets(&dnsd, "node.prom.local"));
    assert_eq!(node.len(), 2);
    let etcd_client = listing(&dnsd, "/sd/v1/PROM.local?service=_etcd-client._tcp");
    assert_eq!(etcd_client.len(), 3, "{etcd_client:?}");
    assert!(listing(&dnsd, "/sd/v1/prom.local?service=nothing").is_empty(), "an empty list, as Prometheus expects");
}

#[test]
fn bad_labels_are_dropped_counted_and_never_break_the_listing() {
    let etcd = Etcd::start();
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    etcd.put("/skydns/local/prom/node/a", r#"{"host":"10.0.0.1","port":9100,"labels":{"__address__":"x","ok":"1"}}"#);
    etcd.put("/skydns/local/prom/node/b", r#"{"host":"10.0.0.2","port":9100,"labels":["env=prod"]}"#);
    etcd.put("/skydns/local/prom/node/c", r#"{"host":"10.0.0.3","port":9100,"labels":{"1x":"y"},"scheme":"ftp"}"#);
    etcd.put("/skydns/local/prom/node/d", r#"{"host":"10.0.0.4","port":9100,"labels":{"env":"prod"}}"#);
    let zone = eventually("four targets", Duration::from_secs(10), || {
        let zone = listing(&dnsd, "/sd/v1/prom.local?service=node");
        (zone.len() == 4).then_some(zone)
    });
    for broken in ["a", "b", "c"] {
        let labels = &zone[&format!("{broken}.node.prom.local:9100")];
        assert!(labels.keys().all(|k| k.starts_with("__meta_promsd_") && !k.starts_with("__meta_promsd_label")));
    }
    assert_eq!(zone["d.node.prom.local:9100"]["env"], "prod");
    let (_, metrics) = http_get(dnsd.web, "/metrics").expect("metrics");
    assert!(metrics.lines().any(|l| l == "dnsd_invalid_labels_total 3"), "{metrics}");
    assert_eq!(dnsd.dig(&["A", "a.node.prom.local"]).answer, ["a.node.prom.local. 300 IN A 10.0.0.1"]);
}

#[test]
fn etag_follows_the_view_and_if_none_match_gets_304() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let first = http_request(dnsd.web, "/sd/v1/prom.local", &[]).expect("GET");
    let etag = first.header("etag").expect("ETag").to_string();
    assert!(first.header("last-modified").is_some_and(|d| d.ends_with(" GMT")), "{:?}", first.headers);
    let again = http_request(dnsd.web, "/sd/v1/prom.local", &[&format!("If-None-Match: {etag}")]).expect("GET");
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    let weak = http_request(dnsd.web, "/sd/v1/prom.local", &[&format!("If-None-Match: \"x\", W/{etag}")]);
    assert_eq!(weak.expect("GET").status, 304);

    etcd.put("/skydns/local/prom/node/server09", r#"{"host":"192.168.1.9","port":9100}"#);
    let changed = eventually("a new ETag", Duration::from_secs(10), || {
        let reply = http_request(dnsd.web, "/sd/v1/prom.local", &[&format!("If-None-Match: {etag}")]).ok()?;
        (reply.status == 200).then_some(reply)
    });
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    assert!(groups(&changed.body).contains_key("server09.node.prom.local:9100"));
}

#[test]
fn refuses_what_it_cannot_list() {
    let etcd = Etcd::start();
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let (status, body) = http_get(dnsd.web, "/sd/v1/example.org").expect("GET");
    assert_eq!((status, body.as_str()), (404, "dnsd serves no zone \"example.org\"\n"));
    let (status, body) = http_get(dnsd.web, "/sd/v1/prom.local?service=a%20b").expect("GET");
    assert_eq!((status, body.as_str()), (400, "service \"a b\" is not a valid name\n"));

    // Before the first load an empty list would remove every target: 503 keeps Prometheus's.
    let unready = Dnsd::start_unready(&format!("http://127.0.0.1:{}", promsd_tests::free_port()), &[ZONE]);
    let (status, _) = http_get(unready.web, "/sd/v1/prom.local").expect("GET");
    assert_eq!(status, 503);
}

/// A listing larger than many chunks is streamed whole and stays valid JSON; a client that leaves in the
/// middle frees its slot, so the next listings are still answered.
#[test]
fn a_large_zone_streams_whole() {
    let etcd = Etcd::start();
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let count = 20_000;
    let pairs = (0..count).map(|i| {
        let value = format!(r#"{{"host":"10.0.{}.{}","port":9100,"labels":{{"i":"{i}"}}}}"#, i >> 8, i & 255);
        (format!("/skydns/local/prom/node/h{i:05}"), value)
    });
    put_many(&etcd, pairs.collect());
    let zone = eventually("every record listed", Duration::from_secs(30), || {
        let zone = listing(&dnsd, "/sd/v1/prom.local");
        (zone.len() == count).then_some(zone)
    });
    assert_eq!(zone["h12345.node.prom.local:9100"]["i"], "12345");
    for _ in 0..6 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(dnsd.web).expect("connect");
        write!(stream, "GET /sd/v1/prom.local HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut start = [0u8; 1024];
        let _ = stream.read(&mut start).expect("the reply starts");
    }
    assert_eq!(listing(&dnsd, "/sd/v1/prom.local").len(), count);
}
