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

    let prometheus = stack.prometheus(CONFIG);

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

/// bcrypt of "s3cret" (cost 6).
const S3CRET_HASH: &str = "$2b$06$BwgOp0jG/QPWrr.VFBZb5uQEWELPNFrfSvzGSdBR1Mmhfl4SSbQ0a";

/// The exporter proxy end to end: `registrar agent` registers its `node` module, Prometheus finds it through
/// dnsd and scrapes the node exporter through the proxy over TLS with basic auth.
#[test]
fn prometheus_scrapes_a_module_through_the_agent_over_tls() {
    require("prometheus");
    require("prometheus-node-exporter");
    let stack = Stack::start();
    let d = stack.dir.path();
    promsd_tests::tls::make_certificates_for(d, "DNS:*.node.prom.local,IP:127.0.0.1", &[]);
    let mut exporter = stack.netns.command("prometheus-node-exporter");
    exporter.args(["--web.listen-address=127.0.0.1:9100", "--collector.disable-defaults", "--collector.loadavg"]);
    let _exporter = Process::spawn("node", exporter, &stack.log_path("node"));
    std::fs::write(
        d.join("web.yml"),
        format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {S3CRET_HASH}\n"),
    )
    .expect("web config");
    std::fs::write(
        d.join("agent.yml"),
        format!("etcd:\n  endpoints: [{ETCD}]\nzone: prom.local\naddress: 127.0.0.1\ninstance: host1\nmodules:\n  node:\n    method: http\n    http:\n      port: 9100\n"),
    )
    .expect("agent config");
    let mut agent = stack.registrar();
    agent.arg("agent").arg("--config").arg(d.join("agent.yml")).arg("--web.config.file").arg(d.join("web.yml"));
    agent.args(["--web.listen-address", "127.0.0.1:9998"]);
    let _agent = Process::spawn("agent", agent, &stack.log_path("agent"));

    let _prometheus = stack.prometheus(&format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: node\n    scheme: https\n    metrics_path: /proxy\n    params:\n      module: [node]\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: prometheus\n      password: s3cret\n    dns_sd_configs:\n      - names: [node.prom.local]\n        refresh_interval: 1s\n",
            d.join("ca.pem").display()
        ));
    let up = BTreeMap::from([("host1.node.prom.local:9998".to_string(), "up".to_string())]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while targets(&stack).as_ref() != Some(&up) {
        assert!(
            std::time::Instant::now() < deadline,
            "the module is not up in Prometheus: {:?}\nagent log:\n{}",
            stack.curl("http://127.0.0.1:9090/api/v1/targets?state=active"),
            std::fs::read_to_string(stack.log_path("agent")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
