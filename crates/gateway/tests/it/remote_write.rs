//! remote_write's answers where no receiver is needed: a write whose series name another tenant is refused
//! before anything is forwarded, and an upstream that is down is a 503 the sender retries. (The e2e test
//! runs real Prometheus on both sides.)

use promsd_tests::http_post;

use crate::{Gateway, token_entry, write_tokens};

fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push((number << 3) | 2);
    out.push(u8::try_from(bytes.len()).expect("short"));
    out.extend_from_slice(bytes);
}

/// A snappy WriteRequest with one series `up` with these extra labels and one sample.
fn write_request(labels: &[(&str, &str)]) -> Vec<u8> {
    let mut series = Vec::new();
    for (name, value) in std::iter::once(&("__name__", "up")).chain(labels) {
        let mut label = Vec::new();
        field(&mut label, 1, name.as_bytes());
        field(&mut label, 2, value.as_bytes());
        field(&mut series, 1, &label);
    }
    let mut sample = vec![0x09];
    sample.extend_from_slice(&1.0f64.to_le_bytes());
    sample.extend_from_slice(&[0x10, 0x01]);
    field(&mut series, 2, &sample);
    let mut request = Vec::new();
    field(&mut request, 1, &series);
    snap::raw::Encoder::new().compress_vec(&request).expect("snappy")
}

#[test]
fn writes_are_checked_for_their_tenant_and_a_dead_upstream_is_retryable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens.yml");
    write_tokens(&file, &[token_entry("site-a", "s3cret", "2999-01-01T00:00:00Z", &[], &[])]);
    let port = promsd_tests::free_port();
    let upstream = format!("http://127.0.0.1:{port}/api/v1/write");
    let gateway = Gateway::start(&["--token.file", file.to_str().expect("path"), "--remote-write.upstream", &upstream]);
    let headers = ["CF-Access-Client-Id: site-a", "CF-Access-Client-Secret: s3cret", "Content-Encoding: snappy"];
    let post = |headers: &[&str], body: &[u8]| http_post(gateway.addr, "/api/v1/write", headers, body).expect("POST");
    let other = post(&headers, &write_request(&[("tenant", "site-b")]));
    assert_eq!(other.status, 403, "{other:?}");
    assert!(other.body.contains("tenant=\"site-b\"") && other.body.contains("site-a"), "{}", other.body);
    let down = post(&headers, &write_request(&[("job", "node")]));
    assert_eq!(down.status, 503, "nothing listens upstream: retried by the sender: {down:?}");
    let garbage = post(&headers, b"not snappy");
    assert_eq!(garbage.status, 400, "{garbage:?}");
    let no_token = post(&["Content-Encoding: snappy"], &write_request(&[]));
    assert_eq!(no_token.status, 401, "{no_token:?}");
    let metrics = gateway.metrics();
    for line in [
        "promsd_gateway_remote_writes_total{result=\"rejected\"} 2",
        "promsd_gateway_remote_writes_total{result=\"unreachable\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

/// Loki's push API: the same token rules; a JSON stream of another tenant is refused, an unknown encoding
/// is 415, a dead upstream 503. (Debian has no Loki to forward to: what reaches it is checked in the unit
/// tests of the rewritten bodies.)
#[test]
fn loki_pushes_are_checked_for_their_tenant() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens.yml");
    write_tokens(&file, &[token_entry("site-a", "s3cret", "2999-01-01T00:00:00Z", &[], &[])]);
    let upstream = format!("http://127.0.0.1:{}/loki/api/v1/push", promsd_tests::free_port());
    let gateway = Gateway::start(&["--token.file", file.to_str().expect("path"), "--loki.upstream", &upstream]);
    let token = ["CF-Access-Client-Id: site-a", "CF-Access-Client-Secret: s3cret"];
    let post = |content_type: &str, body: &[u8]| {
        let headers = [token[0], token[1], content_type];
        http_post(gateway.addr, "/loki/api/v1/push", &headers, body).expect("POST")
    };
    let json = "Content-Type: application/json";
    let other = post(json, br#"{"streams":[{"stream":{"tenant":"site-b"},"values":[["1","x"]]}]}"#);
    assert_eq!(other.status, 403, "{other:?}");
    let down = post(json, br#"{"streams":[{"stream":{"job":"app"},"values":[["1","x"]]}]}"#);
    assert_eq!(down.status, 503, "{down:?}");
    assert_eq!(post("Content-Type: text/plain", b"x").status, 415);
    assert_eq!(post("Content-Type: application/x-protobuf", b"not snappy").status, 400);
    assert_eq!(http_post(gateway.addr, "/loki/api/v1/push", &[json], b"{}").expect("POST").status, 401);
    assert!(gateway.metrics().contains("promsd_gateway_loki_pushes_total{result=\"rejected\"} 3"));
}
