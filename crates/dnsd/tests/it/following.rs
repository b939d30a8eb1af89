//! dnsd follows etcd: puts and deletes show up in answers, it waits for the first load before answering,
//! and it keeps answering from memory while etcd is gone.

use std::time::Duration;

use promsd_tests::{Etcd, eventually, free_port, holds_for, http_get};

use crate::server::{Dnsd, ZONE};

#[test]
fn follows_puts_and_deletes() {
    let etcd = Etcd::start();
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    assert_eq!(dnsd.dig(&["SRV", "node.prom.local"]).status, "NXDOMAIN");

    etcd.put("/skydns/local/prom/node/server01", r#"{"host":"10.0.0.5","port":9100}"#);
    dnsd.dig_until(&["SRV", "node.prom.local"], |d| {
        d.answer == ["node.prom.local. 300 IN SRV 10 100 9100 server01.node.prom.local."]
    });
    etcd.put("/skydns/local/prom/node/server01", r#"{"host":"10.0.0.5","port":9200}"#);
    dnsd.dig_until(&["SRV", "node.prom.local"], |d| d.answer.iter().any(|r| r.contains(" 9200 ")));
    etcd.put("/skydns/local/prom/node/server02", r#"{"host":"10.0.0.6","port":9100}"#);
    dnsd.dig_until(&["SRV", "node.prom.local"], |d| d.answer.len() == 2);
    etcd.del("/skydns/local/prom/node/server01");
    dnsd.dig_until(&["SRV", "node.prom.local"], |d| {
        d.answer == ["node.prom.local. 300 IN SRV 10 100 9100 server02.node.prom.local."]
    });
    etcd.del("/skydns/local/prom/node/server02");
    dnsd.dig_until(&["SRV", "node.prom.local"], |d| d.status == "NXDOMAIN");
}

#[test]
fn answers_only_after_the_first_load() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dnsd = Dnsd::start_unready(&endpoint, &[ZONE]);
    eventually("/-/healthy", Duration::from_secs(5), || {
        matches!(http_get(dnsd.web, "/-/healthy"), Ok((200, _))).then_some(())
    });
    // Without etcd nothing may change: checked throughout a period in which dnsd keeps trying to connect
    // (dnsd shows no count of failed attempts that the test could wait for instead).
    holds_for(Duration::from_millis(500), || {
        let (status, body) = http_get(dnsd.web, "/-/ready").expect("ready endpoint");
        assert_eq!(status, 503, "{body}");
        let early = dnsd.dig(&["SRV", "node.prom.local"]);
        assert_eq!(early.status, "", "no answer before the first load: {}", early.raw);
    });

    let etcd = Etcd::start_on_port(port);
    etcd.put("/skydns/local/prom/node/a", r#"{"host":"10.0.0.5","port":9100}"#);
    dnsd.wait_ready();
    dnsd.dig_until(&["SRV", "node.prom.local"], |d| d.answer.len() == 1);
}

#[test]
fn keeps_answering_while_etcd_is_down() {
    let mut etcd = Etcd::start();
    etcd.put("/skydns/local/prom/node/a", r#"{"host":"10.0.0.5","port":9100}"#);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    dnsd.dig_until(&["SRV", "node.prom.local"], |d| d.answer.len() == 1);
    let connected = |value: &str| {
        let (_, metrics) = http_get(dnsd.web, "/metrics").ok()?;
        metrics.lines().any(|l| l.strip_prefix("dnsd_etcd_connected ") == Some(value)).then_some(())
    };
    eventually("dnsd to watch etcd", Duration::from_secs(10), || connected("1"));
    etcd.stop();
    let answers = || {
        let answer = dnsd.dig(&["SRV", "node.prom.local"]);
        assert_eq!(answer.answer, ["node.prom.local. 300 IN SRV 10 100 9100 a.node.prom.local."], "{}", answer.raw);
    };
    // Answering all along until dnsd has noticed that etcd is gone, and after.
    eventually("dnsd to notice etcd is gone", Duration::from_secs(10), || {
        answers();
        connected("0")
    });
    answers();
    assert_eq!(http_get(dnsd.web, "/-/healthy").expect("healthy").0, 200);
}

#[test]
fn loads_a_prefix_larger_than_one_page() {
    let etcd = Etcd::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // dnsd reads 50,000 keys per page: 60,000 keys in 70 services and 10,000 in one, by 8 writers at once.
    runtime.block_on(async {
        let client = etcd_client::Client::connect([etcd.endpoint.as_str()], None).await.expect("connect");
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..8 {
            let mut client = client.clone();
            writers.spawn(async move {
                for chunk in (writer..700).step_by(8) {
                    let ops: Vec<etcd_client::TxnOp> = (0..100)
                        .map(|i| {
                            let n = chunk * 100 + i;
                            let value =
                                format!(r#"{{"host":"10.{}.{}.{}","port":9100}}"#, n / 65536, (n / 256) % 256, n % 256);
                            // The last 10,000 all in one name.
                            let service = if n < 60_000 { format!("s{}", n % 70) } else { "huge".to_string() };
                            etcd_client::TxnOp::put(format!("/skydns/local/prom/{service}/h{n}"), value, None)
                        })
                        .collect();
                    client.txn(etcd_client::Txn::new().and_then(ops)).await.expect("txn");
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.expect("writer");
        }
    });
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let (_, metrics) = http_get(dnsd.web, "/metrics").expect("metrics");
    assert!(metrics.contains("dnsd_view_keys 70000\n"), "every page loaded");
    assert!(metrics.contains("dnsd_view_names 71\n"), "names counted: {metrics}");
    assert_eq!(dnsd.dig(&["A", "h59999.s9.prom.local"]).answer, ["h59999.s9.prom.local. 300 IN A 10.0.234.95"]);
    assert_eq!(dnsd.dig(&["A", "h0.s0.prom.local"]).answer, ["h0.s0.prom.local. 300 IN A 10.0.0.0"]);
    // 858 SRV targets: the whole answer over TCP (names compressed throughout, not only the first 120).
    let srv = dnsd.dig(&["+tcp", "SRV", "s0.prom.local"]);
    assert_eq!(srv.answer.len(), 858, "{}", srv.raw.lines().take(5).collect::<Vec<_>>().join("\n"));
    assert!(!srv.has_flag("tc"));
    // 10,000 targets cannot fit in one DNS message: over TCP as many as fit, with TC set (RFC 2181 9), rather
    // than nothing; over UDP the usual empty truncated answer.
    let huge = dnsd.dig(&["+tcp", "+ignore", "+stats", "SRV", "huge.prom.local"]);
    assert!(huge.has_flag("tc"), "{}", huge.raw.lines().take(8).collect::<Vec<_>>().join("\n"));
    assert!(huge.answer.len() > 1000, "{} targets", huge.answer.len());
    assert!(huge.answer.iter().all(|r| r.contains(" IN SRV 10 1 9100 h")), "whole records only");
    let size: usize = huge.raw.split("MSG SIZE  rcvd: ").nth(1).and_then(|s| s.trim().parse().ok()).expect("size");
    assert!(size <= 65535, "{size} bytes");
    let udp = dnsd.dig(&["+ignore", "SRV", "huge.prom.local"]);
    assert!(udp.has_flag("tc") && udp.answer.is_empty());
}
