//! remote_write through promsd-gateway: a site's real Prometheus writes with its token as `basic_auth` (id
//! and secret; Debian's Prometheus 2.42 does not send `remote_write.headers`), the gateway adds the token's tenant label and forwards to a real receiving
//! Prometheus. A wrong token gets 401 and nothing of it is stored (and the sender does not retry it); the
//! gateway down for 30 s loses nothing, as the sender's own retries deliver every sample afterwards.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promsd_tests::{Netns, Process, eventually, require, workspace_bin};

/// A value from Prometheus's query API at `port` inside `netns` (the first series'), at `time` if given.
fn query(netns: &Netns, port: u16, expr: &str, time: Option<f64>) -> Option<(String, f64)> {
    let mut url = format!("http://127.0.0.1:{port}/api/v1/query?query={}", encode(expr));
    if let Some(time) = time {
        url.push_str(&format!("&time={time:.3}"));
    }
    let output = netns.command("curl").args(["-sf", "--max-time", "5", &url]).output().ok()?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let first = json["data"]["result"].as_array()?.first()?.clone();
    Some((first["metric"].to_string(), first["value"][1].as_str()?.parse().ok()?))
}

fn encode(expr: &str) -> String {
    expr.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64()
}

fn sender(netns: &Netns, dir: &Path, name: &str, port: u16, secret: &str) -> Process {
    let config = format!(
        "global: {{scrape_interval: 1s, external_labels: {{sender: {name}}}}}\nscrape_configs:\n  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\nremote_write:\n  - url: http://127.0.0.1:8080/api/v1/write\n    basic_auth: {{username: site-a, password: {secret}}}\n    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}\n"
    );
    let path = dir.join(format!("{name}.yml"));
    std::fs::write(&path, config).expect("write config");
    let mut command = netns.command("prometheus");
    command.arg(format!("--config.file={}", path.display()));
    command.arg(format!("--storage.tsdb.path={}", dir.join(format!("{name}-tsdb")).display()));
    command.arg(format!("--web.listen-address=127.0.0.1:{port}"));
    Process::spawn(name, command, &dir.join(format!("{name}.log")))
}

fn gateway(netns: &Netns, dir: &Path) -> Process {
    let mut command = netns.command(workspace_bin("promsd-gateway").to_str().expect("path"));
    command.args(["--web.listen-address", "127.0.0.1:8080", "--token.file"]).arg(dir.join("tokens.yml"));
    command.args(["--remote-write.upstream", "http://127.0.0.1:9091/api/v1/write"]);
    let process = Process::spawn("gateway", command, &dir.join("gateway.log"));
    process.wait_for_log("starting promsd-gateway", Duration::from_secs(10));
    process
}

#[test]
fn remote_write_through_the_gateway_carries_the_tenant_refuses_bad_tokens_and_survives_an_outage() {
    require("prometheus");
    require("curl");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let netns = Netns::new("127.0.0.1");
    let hash: String = ring::digest::digest(&ring::digest::SHA256, b"site-a-secret")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        d.join("tokens.yml"),
        format!("tokens:\n  - id: site-a\n    secret_sha256: {hash}\n    expires: 2999-01-01T00:00:00Z\n    tenant: site-a\n"),
    )
    .expect("write tokens");
    let mut receiver = netns.command("prometheus");
    receiver.arg(format!("--config.file={}", {
        std::fs::write(d.join("receiver.yml"), "global: {}\n").expect("write");
        d.join("receiver.yml").display().to_string()
    }));
    receiver.arg(format!("--storage.tsdb.path={}", d.join("receiver-tsdb").display()));
    receiver.args(["--web.listen-address=127.0.0.1:9091", "--web.enable-remote-write-receiver"]);
    let _receiver = Process::spawn("receiver", receiver, &d.join("receiver.log"));
    let mut gateway = gateway(&netns, d);
    let _good = sender(&netns, d, "a", 9090, "site-a-secret");
    let _bad = sender(&netns, d, "b", 9092, "not-the-secret");

    // Samples arrive with the tenant label; none of the wrong token's.
    let (labels, _) = eventually("site-a's samples at the receiver", Duration::from_secs(60), || {
        query(&netns, 9091, "up{job=\"self\"}", None)
    });
    assert!(labels.contains("\"tenant\":\"site-a\"") && labels.contains("\"sender\":\"a\""), "{labels}");
    eventually("the wrong token's samples to be dropped by its sender", Duration::from_secs(60), || {
        let (_, failed) = query(&netns, 9092, "prometheus_remote_storage_samples_failed_total", None)?;
        (failed > 0.0).then_some(())
    });
    assert_eq!(query(&netns, 9091, "count(up{sender=\"b\"})", None), None, "nothing of the wrong token is stored");
    assert!(gateway.log().contains("starting") && !gateway.log().contains("site-a-secret"));
    let metrics = netns.run("curl", &["-sf", "http://127.0.0.1:8080/metrics"]);
    assert!(metrics.contains("promsd_gateway_token_refusals_total{reason=\"wrong_secret\"}"), "{metrics}");
    assert!(!metrics.contains("promsd_gateway_token_refusals_total{reason=\"wrong_secret\"} 0"), "{metrics}");

    // The gateway down for 30 s: the sender retries (5xx and refused connections are retried), and once
    // it is back every sample scraped meanwhile arrives.
    let before = now() - 5.0;
    let stopped = Instant::now();
    gateway.kill();
    eventually("the sender to retry against the stopped gateway", Duration::from_secs(30), || {
        let (_, retried) = query(&netns, 9090, "prometheus_remote_storage_samples_retried_total", None)?;
        (retried > 0.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed()));
    let _gateway = self::gateway(&netns, d);
    let restarted = now();
    let at = restarted + 5.0;
    eventually("the evaluation time to pass", Duration::from_secs(30), || (now() > at + 2.0).then_some(()));
    let window = format!("{}s", (at - before).ceil() as u64);
    let scraped = query(&netns, 9090, &format!("count_over_time(up{{job=\"self\"}}[{window}])"), Some(at))
        .expect("sender's count")
        .1;
    let stored = eventually("every sample of the outage at the receiver", Duration::from_secs(60), || {
        let (_, stored) =
            query(&netns, 9091, &format!("count_over_time(up{{job=\"self\",sender=\"a\"}}[{window}])"), Some(at))?;
        (stored >= scraped).then_some(stored)
    });
    assert_eq!(stored, scraped, "samples scraped over the outage window and stored upstream");
    assert!(scraped >= 35.0, "the window spans the outage: {scraped} samples");
    let (_, failed) =
        query(&netns, 9090, "prometheus_remote_storage_samples_failed_total", None).expect("sender metrics");
    assert_eq!(failed, 0.0, "the sender dropped nothing");
}
