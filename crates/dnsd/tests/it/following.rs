//! dnsd follows etcd: puts and deletes show up in answers, it waits for the first load before answering,
//! and it keeps answering from memory while etcd is gone.

use std::time::Duration;

use promsd_tests::{Etcd, eventually, free_port, http_get};

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
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = http_get(dnsd.web, "/-/ready").expect("ready endpoint");
    assert_eq!(status, 503, "{body}");
    let early = dnsd.dig(&["SRV", "node.prom.local"]);
    assert_eq!(early.status, "", "no answer before the first load: {}", early.raw);

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
    etcd.stop();
    for _ in 0..5 {
        let answer = dnsd.dig(&["SRV", "node.prom.local"]);
        assert_eq!(answer.answer, ["node.prom.local. 300 IN SRV 10 100 9100 a.node.prom.local."], "{}", answer.raw);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http_get(dnsd.web, "/-/healthy").expect("healthy").0, 200);
}
