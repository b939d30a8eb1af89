//! Real Prometheus finds node exporters started through `registrar run` with dns_sd_configs, scrapes them
//! by their SRV target names, and drops a target when its exporter stops.

use std::collections::BTreeMap;
use std::time::Duration;

use promsd_tests::{Process, eventually, require};

use crate::stack::{ETCD, Stack};

const CONFIG: &str = r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: node
    dns_sd_configs:
      - names: [node.prom.local]
        refresh_interval: 1s
"#;

/// instance -> health of Prometheus's active targets.
fn targets(stack: &Stack) -> Option<BTreeMap<String, String>> {
    let body = stack.curl("http://127.0.0.1:9090/api/v1/targets?state=active")?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let active = json["data"]["activeTargets"].as_array()?;
    Some(
        active
            .iter()
            .map(|t| {
                let instance = t["labels"]["instance"].as_str().unwrap_or_default().to_string();
                (instance, t["health"].as_str().unwrap_or_default().to_string())
            })
            .collect(),
    )
}

#[test]
fn prometheus_scrapes_exporters_registered_by_registrar_run() {
    require("prometheus");
    require("prometheus-node-exporter");
    let stack = Stack::start();
    let exporter = |instance: &str, port: u16| {
        let mut command = stack.registrar();
        command
            .args(["run", "--endpoints", ETCD, "--zone", "prom.local", "--service", "node", "--instance", instance])
            .args(["--address", "127.0.0.1", "--port", &port.to_string(), "--"])
            .args(["prometheus-node-exporter", &format!("--web.listen-address=127.0.0.1:{port}")])
            .args(["--collector.disable-defaults", "--collector.loadavg"]);
        Process::spawn(instance, command, &stack.log_path(instance))
    };
    let server01 = exporter("server01", 9100);
    let mut server02 = exporter("server02", 9101);

    let config = stack.dir.path().join("prometheus.yml");
    std::fs::write(&config, CONFIG).expect("write prometheus.yml");
    let mut command = stack.netns.command("prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", stack.dir.path().join("tsdb").display()))
        .arg("--web.listen-address=127.0.0.1:9090");
    let prometheus = Process::spawn("prometheus", command, &stack.log_path("prometheus"));

    let both_up = BTreeMap::from([
        ("server01.node.prom.local:9100".to_string(), "up".to_string()),
        ("server02.node.prom.local:9101".to_string(), "up".to_string()),
    ]);
    eventually("both exporters up in Prometheus", Duration::from_secs(60), || {
        (targets(&stack)? == both_up).then_some(())
    });

    server02.signal("TERM");
    let status = server02.wait_timeout(Duration::from_secs(15)).expect("registrar run exits");
    assert!(status.code().is_some(), "exited with the exporter's status");
    let one_up = BTreeMap::from([("server01.node.prom.local:9100".to_string(), "up".to_string())]);
    eventually("the stopped exporter's target to go away", Duration::from_secs(30), || {
        (targets(&stack)? == one_up).then_some(())
    });
    drop(prometheus);
    drop(server01);
}
