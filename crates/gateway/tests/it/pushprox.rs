//! PushProx's protocol on the open gateway (no token file): what a PushProx client and a PushProx job see.

use std::time::Duration;

use promsd_tests::{eventually, http_post, http_raw};

use crate::Gateway;

const FQDN: &str = "host1.example.org";

#[test]
fn a_pushprox_client_is_scraped_through_the_proxy() {
    let gateway = Gateway::start(&[]);
    let poll = gateway.poll_in_background(FQDN, &[]);
    eventually("the client to be listed", Duration::from_secs(10), || {
        (gateway.clients() == serde_json::json!([{"targets": [FQDN], "labels": null}])).then_some(())
    });
    let scrape = gateway.scrape_in_background(
        &format!("http://{FQDN}:9100/metrics?collect=cpu"),
        &["X-Prometheus-Scrape-Timeout-Seconds: 7", "User-Agent: Prometheus/2.42.0"],
    );
    let polled = poll.join().expect("poll");
    assert_eq!(polled.status, 200, "{polled:?}");
    assert!(
        polled.body.starts_with(&format!("GET http://{FQDN}:9100/metrics?collect=cpu HTTP/1.1\r\n")),
        "{}",
        polled.body
    );
    for line in [
        "Id: ",
        "X-Prometheus-Scrape-Timeout-Seconds: 7.000\r\n",
        "User-Agent: Prometheus/2.42.0\r\n",
        "X-Forwarded-For: 127.0.0.1\r\n",
    ] {
        assert!(polled.body.contains(line), "{line:?} missing from {}", polled.body);
    }
    let pushed = gateway.push(&polled.body, 200, "up 1\n", &[]);
    assert_eq!(pushed.status, 200, "{pushed:?}");
    let scraped = scrape.join().expect("scrape");
    assert_eq!((scraped.status, scraped.body.as_str()), (200, "up 1\n"), "{scraped:?}");
    assert_eq!(scraped.header("content-type"), Some("text/plain; version=0.0.4"));
    assert!(scraped.header("id").is_none(), "the gateway's own headers are not passed on");
    // The client's failure reaches Prometheus as PushProx's does: the status and text it pushed.
    let poll = gateway.poll_in_background(FQDN, &[]);
    let scrape = gateway.scrape_in_background(&format!("http://{FQDN}:9100/metrics"), &[]);
    let polled = poll.join().expect("poll");
    gateway.push(&polled.body, 500, "failed to scrape", &[]);
    let scraped = scrape.join().expect("scrape");
    assert_eq!((scraped.status, scraped.body.as_str()), (500, "failed to scrape"));
    // And as PushProx 0.2's client really writes a failed scrape (seen on the wire): `HTTP/0.0`, no length.
    let poll = gateway.poll_in_background(FQDN, &[]);
    let scrape = gateway.scrape_in_background(&format!("http://{FQDN}:9999/metrics"), &[]);
    let polled = poll.join().expect("poll");
    let id =
        promsd_pushprox::ScrapeRequest::parse(polled.body.as_bytes()).expect("request").id().expect("id").to_string();
    let raw = format!(
        "HTTP/0.0 500 Internal Server Error\r\nId: {id}\r\nX-Prometheus-Scrape-Timeout: 2.999829\r\n\r\nfailed to scrape: connection refused"
    );
    assert_eq!(http_post(gateway.addr, "/push", &[], raw.as_bytes()).expect("push").status, 200);
    let scraped = scrape.join().expect("scrape");
    assert_eq!((scraped.status, scraped.body.as_str()), (500, "failed to scrape: connection refused"));
    let metrics = gateway.metrics();
    assert!(metrics.contains("promsd_gateway_scrapes_total{result=\"answered\"} 3"), "{metrics}");
}

#[test]
fn scrapes_without_a_client_or_an_answer_fail_clearly() {
    let gateway = Gateway::start(&["--scrape.default-timeout=1s"]);
    let unknown = gateway.scrape("http://nobody.example.org:9100/metrics", &[]);
    assert_eq!(unknown.status, 502, "{unknown:?}");
    assert!(unknown.body.contains("no client nobody.example.org is polling"), "{}", unknown.body);
    // Known (it polled) but it never answers: the scrape's own timeout, then 504.
    let poll = gateway.poll_in_background(FQDN, &[]);
    eventually("the client to be listed", Duration::from_secs(10), || {
        (gateway.clients()[0]["targets"][0] == FQDN).then_some(())
    });
    let silent = gateway.scrape(&format!("http://{FQDN}:9100/metrics"), &[]);
    assert_eq!(silent.status, 504, "{silent:?}");
    let polled = poll.join().expect("poll");
    let late = gateway.push(&polled.body, 200, "up 1\n", &[]);
    assert_eq!(late.status, 404, "a push after the scrape gave up: {late:?}");
    assert!(late.body.contains("no scrape"), "{}", late.body);
}

#[test]
fn a_newer_poll_ends_the_older_as_pushprox_does() {
    let gateway = Gateway::start(&[]);
    let older = gateway.poll_in_background(FQDN, &[]);
    eventually("the first poll to wait", Duration::from_secs(10), || {
        (gateway.clients()[0]["targets"][0] == FQDN).then_some(())
    });
    let newer = gateway.poll_in_background(FQDN, &[]);
    let ended = older.join().expect("older poll");
    assert_eq!(ended.status, 408, "{ended:?}");
    assert!(ended.body.contains("request is expired"), "{}", ended.body);
    let scrape = gateway.scrape_in_background(&format!("http://{FQDN}:9100/metrics"), &[]);
    let polled = newer.join().expect("newer poll");
    gateway.push(&polled.body, 200, "up 1\n", &[]);
    assert_eq!(scrape.join().expect("scrape").status, 200);
}

#[test]
fn bad_input_gets_a_clear_4xx_and_affects_nothing_else() {
    let gateway = Gateway::start(&["--web.max-body-size=1KB"]);
    let cases: [(&str, &[u8], u16, &str); 5] = [
        ("/push", b"not http at all", 400, "Error pushing"),
        ("/push", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 400, "no Id header"),
        ("/push", b"HTTP/1.1 200 OK\r\nId: 00000000-0000-4000-8000-000000000000\r\n\r\nup 1\n", 404, "no scrape"),
        ("/poll", b"not a name!", 400, "the client's FQDN"),
        ("/poll", b"", 400, "the client's FQDN"),
    ];
    for (path, body, status, text) in cases {
        let reply = http_post(gateway.addr, path, &[], body).expect("POST");
        assert_eq!(reply.status, status, "{path} {body:?}: {reply:?}");
        assert!(reply.body.contains(text), "{path} {body:?}: {}", reply.body);
    }
    let big = http_post(gateway.addr, "/push", &[], &vec![b'x'; 4096]).expect("POST");
    assert_eq!(big.status, 413, "{big:?}");
    // A client that sends half a request and stalls holds one connection, not the gateway.
    let mut stalled = std::net::TcpStream::connect(gateway.addr).expect("connect");
    std::io::Write::write_all(&mut stalled, b"POST /poll HTTP/1.1\r\nHost: x\r\nContent-Le").expect("half a request");
    let poll = gateway.poll_in_background(FQDN, &[]);
    eventually("the client to be listed", Duration::from_secs(10), || {
        (gateway.clients()[0]["targets"][0] == FQDN).then_some(())
    });
    let scrape = gateway.scrape_in_background(&format!("http://{FQDN}:9100/metrics"), &[]);
    let polled = poll.join().expect("poll");
    gateway.push(&polled.body, 200, "up 1\n", &[]);
    assert_eq!(scrape.join().expect("scrape").status, 200, "others are served meanwhile");
    // CONNECT (a scrape with scheme https through proxy_url) is refused plainly.
    let connect = http_raw(
        gateway.addr,
        format!("CONNECT {FQDN}:443 HTTP/1.1\r\nHost: {FQDN}:443\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("CONNECT");
    assert_eq!(connect.status, 405, "{connect:?}");
    let metrics = gateway.metrics();
    assert!(metrics.contains("promsd_gateway_too_large_total 1"), "{metrics}");
    assert!(metrics.contains("promsd_gateway_bad_requests_total 4"), "{metrics}");
}
