//! Service tokens: who may register which names, and what happens when a token goes.

use std::time::Duration;

use promsd_tests::eventually;

use crate::{Gateway, token_entry, write_tokens};

const FQDN: &str = "host1.site-a.example.org";
const SITE_A: [&str; 2] = ["CF-Access-Client-Id: site-a", "CF-Access-Client-Secret: s3cret"];

fn entries() -> Vec<String> {
    vec![
        token_entry("site-a", "s3cret", "2999-01-01T00:00:00Z", &["*.site-a.example.org"], &[]),
        token_entry("old", "s3cret", "2001-01-01T00:00:00Z", &["*"], &[]),
        token_entry("prometheus", "scrape-secret", "2999-01-01T00:00:00Z", &[], &["*.site-a.example.org"]),
    ]
}

#[test]
fn polls_need_a_valid_token_whose_scope_names_the_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens.yml");
    write_tokens(&file, &entries());
    let gateway = Gateway::start(&["--token.file", file.to_str().expect("path")]);
    let refused: [(&[&str], &str, u16); 5] = [
        (&[], FQDN, 401),
        (&["CF-Access-Client-Id: site-a", "CF-Access-Client-Secret: guessed-secret"], FQDN, 401),
        (&["CF-Access-Client-Id: old", "CF-Access-Client-Secret: s3cret"], FQDN, 401),
        (&["CF-Access-Client-Id: nobody", "CF-Access-Client-Secret: s3cret"], FQDN, 401),
        (&SITE_A, "host1.site-b.example.org", 403),
    ];
    for (headers, name, status) in refused {
        let reply = gateway.poll(name, headers);
        assert_eq!(reply.status, status, "{headers:?} {name}: {reply:?}");
        assert!(!reply.body.contains("s3cret") && !reply.body.contains("guessed"), "{}", reply.body);
    }
    assert_eq!(gateway.clients(), serde_json::json!([]), "no refused client is listed");
    let metrics = gateway.metrics();
    for line in [
        "promsd_gateway_token_refusals_total{reason=\"missing\"} 1",
        "promsd_gateway_token_refusals_total{reason=\"wrong_secret\"} 1",
        "promsd_gateway_token_refusals_total{reason=\"expired\"} 1",
        "promsd_gateway_token_refusals_total{reason=\"unknown\"} 1",
        "promsd_gateway_forbidden_total 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(!metrics.contains("s3cret") && !metrics.contains("site-a"), "no token in the metrics:\n{metrics}");
    // The right token: registered; then no other token may take the name, nor answer its scrapes.
    let poll = gateway.poll_in_background(FQDN, &SITE_A);
    eventually("the client to be listed", Duration::from_secs(10), || {
        (gateway.clients()[0]["targets"][0] == FQDN).then_some(())
    });
    let other = token_entry("site-a2", "other", "2999-01-01T00:00:00Z", &["*.example.org"], &[]);
    let mut with_other = entries();
    with_other.push(other);
    write_tokens(&file, &with_other);
    let taken = eventually("the new token to be read", Duration::from_secs(10), || {
        let reply = gateway.poll(FQDN, &["CF-Access-Client-Id: site-a2", "CF-Access-Client-Secret: other"]);
        (reply.status != 401).then_some(reply)
    });
    assert_eq!(taken.status, 409, "another token cannot take a registered name: {taken:?}");
    let scrape = gateway.scrape_in_background(&format!("http://{FQDN}:9100/metrics"), &[]);
    let polled = poll.join().expect("poll");
    assert_eq!(polled.status, 200, "{polled:?}");
    let foreign = gateway.push(
        &polled.body,
        200,
        "evil 1\n",
        &["CF-Access-Client-Id: site-a2", "CF-Access-Client-Secret: other"],
    );
    assert_eq!(foreign.status, 403, "{foreign:?}");
    assert_eq!(gateway.push(&polled.body, 200, "up 1\n", &SITE_A).status, 200);
    assert_eq!(scrape.join().expect("scrape").body, "up 1\n");
}

#[test]
fn a_revoked_token_ends_its_clients_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens.yml");
    write_tokens(&file, &entries());
    let gateway = Gateway::start(&["--token.file", file.to_str().expect("path")]);
    let poll = gateway.poll_in_background(FQDN, &SITE_A);
    eventually("the client to be listed", Duration::from_secs(10), || {
        (gateway.clients()[0]["targets"][0] == FQDN).then_some(())
    });
    write_tokens(&file, &entries()[1..]);
    let ended = poll.join().expect("poll");
    assert_eq!(ended.status, 401, "the waiting poll ends when its token goes: {ended:?}");
    assert_eq!(gateway.clients(), serde_json::json!([]));
    assert_eq!(gateway.scrape(&format!("http://{FQDN}:9100/metrics"), &[]).status, 502);
    assert_eq!(gateway.poll(FQDN, &SITE_A).status, 401, "and it cannot poll again");
    // A broken file keeps the tokens in force.
    std::fs::write(&file, "tokens: [oops").expect("write");
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(gateway.poll(FQDN, &SITE_A).status, 401);
}

#[test]
fn scrapes_can_require_a_token_with_a_scrape_scope() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens.yml");
    write_tokens(&file, &entries());
    let gateway = Gateway::start(&["--token.file", file.to_str().expect("path"), "--scrape.require-token"]);
    let url = format!("http://{FQDN}:9100/metrics");
    let none = gateway.scrape(&url, &[]);
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(none.header("proxy-authenticate"), Some("Basic"));
    let client_token = gateway.scrape(&url, &SITE_A);
    assert_eq!(client_token.status, 403, "a client's token may not scrape: {client_token:?}");
    // Prometheus's proxy_url: http://prometheus:scrape-secret@gateway:8080 sends Proxy-Authorization.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("prometheus:scrape-secret");
    let authorization = format!("Proxy-Authorization: Basic {basic}");
    let poll = gateway.poll_in_background(FQDN, &SITE_A);
    eventually("the client to be listed", Duration::from_secs(10), || {
        let reply =
            promsd_tests::http_request(gateway.addr, "/clients", &[&format!("Authorization: Basic {basic}")]).ok()?;
        reply.body.contains(FQDN).then_some(())
    });
    assert_eq!(promsd_tests::http_request(gateway.addr, "/clients", &[]).expect("GET").status, 401);
    let scrape = gateway.scrape_in_background(&url, &[&authorization]);
    let polled = poll.join().expect("poll");
    assert!(
        !polled.body.to_ascii_lowercase().contains("proxy-authorization"),
        "credentials stay at the gateway: {}",
        polled.body
    );
    gateway.push(&polled.body, 200, "up 1\n", &SITE_A);
    assert_eq!(scrape.join().expect("scrape").status, 200);
    let outside = gateway.scrape("http://host1.site-b.example.org:9100/metrics", &[&authorization]);
    assert_eq!(outside.status, 403, "{outside:?}");
}

/// `--token.etcd-key`: the same YAML in one etcd key, followed with a watch: a new version applies at once,
/// a broken one keeps the tokens in force, a deleted key revokes them all.
#[test]
fn tokens_can_live_in_etcd() {
    let etcd = promsd_tests::Etcd::start();
    let key = "/promsd/gateway/tokens";
    let yaml = |entries: &[String]| format!("tokens:\n{}", entries.concat());
    let gateway = Gateway::start(&["--token.etcd-key", key, "--endpoints", &etcd.endpoint]);
    assert_eq!(gateway.poll(FQDN, &SITE_A).status, 401, "no token until the key is read");
    etcd.put(key, &yaml(&entries()));
    eventually("the tokens from etcd", Duration::from_secs(10), || {
        gateway.metrics().contains("promsd_gateway_tokens 3\n").then_some(())
    });
    let poll = gateway.poll_in_background(FQDN, &SITE_A);
    eventually("the client to be listed", Duration::from_secs(10), || {
        (gateway.clients()[0]["targets"][0] == FQDN).then_some(())
    });
    etcd.put(key, "tokens: [broken");
    promsd_tests::holds_for(Duration::from_millis(500), || {
        assert_eq!(gateway.clients()[0]["targets"][0], FQDN, "a broken value keeps the tokens in force");
    });
    etcd.del(key);
    let ended = poll.join().expect("poll");
    assert_eq!(ended.status, 401, "the waiting poll ends when the key goes: {ended:?}");
    assert_eq!(gateway.poll(FQDN, &SITE_A).status, 401);
}
