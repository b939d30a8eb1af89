//! One Prometheus job with `http_sd_configs` scrapes every module of every host's agent, with their labels,
//! from dnsd's `/sd/v1/<zone>`: one host serves TLS with basic auth, the other plain HTTP, and each target
//! carries its own scheme, path and module.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use promsd_tests::{Process, eventually, require};

use crate::stack::{ETCD, Stack};

/// bcrypt of "s3cret" (cost 6).
const S3CRET_HASH: &str = "$2b$06$BwgOp0jG/QPWrr.VFBZb5uQEWELPNFrfSvzGSdBR1Mmhfl4SSbQ0a";

/// How often Prometheus asks dnsd, in the job below.
const REFRESH: Duration = Duration::from_secs(1);

/// Prometheus 2.42 passes discovered targets on at most every 5 s (its discovery manager's update
/// throttle), and its scrape manager applies them on a 5 s tick: what it adds to `refresh_interval`.
const PROMETHEUS_BATCHING: Duration = Duration::from_secs(10);

/// One active target as Prometheus's API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    health: String,
    scrape_url: String,
    labels: BTreeMap<String, String>,
}

/// Prometheus's active targets by instance.
fn targets(stack: &Stack) -> Option<BTreeMap<String, Target>> {
    let body = stack.curl("http://127.0.0.1:9090/api/v1/targets?state=active")?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut out = BTreeMap::new();
    for target in json["data"]["activeTargets"].as_array()? {
        let labels: BTreeMap<String, String> = target["labels"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let target = Target {
            health: target["health"].as_str()?.to_string(),
            scrape_url: target["scrapeUrl"].as_str()?.to_string(),
            labels,
        };
        out.insert(target.labels.get("instance")?.clone(), target);
    }
    Some(out)
}

/// An agent config for `host` at `address`: modules `node` (the node exporter at `node_port`) and `app` (a
/// file), labelled by site and team.
fn agent_config(dir: &std::path::Path, host: &str, address: &str, node_port: u16) -> std::path::PathBuf {
    let metrics = dir.join(format!("{host}-app.prom"));
    std::fs::write(&metrics, "# TYPE app_ready gauge\napp_ready 1\n").expect("write");
    let config = format!(
        "etcd:\n  endpoints: [{ETCD}]\nzone: prom.local\naddress: {address}\ninstance: {host}\nlabels:\n  site: {host}-site\n  team: infra\nmodules:\n  node:\n    method: http\n    http:\n      port: {node_port}\n  app:\n    method: file\n    file:\n      path: {}\n    labels:\n      team: app\n",
        metrics.display()
    );
    let path = dir.join(format!("{host}.yml"));
    std::fs::write(&path, config).expect("write");
    path
}

#[test]
fn one_http_sd_job_scrapes_every_module_of_every_host_with_its_labels() {
    require("prometheus");
    require("prometheus-node-exporter");
    let stack = Stack::start();
    let d = stack.dir.path();
    let node_exporter = |port: u16| {
        let mut command = stack.netns.command("prometheus-node-exporter");
        command.arg(format!("--web.listen-address=127.0.0.1:{port}"));
        command.args(["--collector.disable-defaults", "--collector.loadavg"]);
        Process::spawn(&format!("node{port}"), command, &stack.log_path(&format!("node{port}")))
    };
    let _nodes = [node_exporter(9100), node_exporter(9101)];

    // host01 serves TLS and basic auth; host02 plain HTTP. One job scrapes both.
    promsd_tests::tls::make_certificates_for(d, "DNS:*.node.prom.local,DNS:*.app.prom.local", &[]);
    std::fs::write(
        d.join("web.yml"),
        format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {S3CRET_HASH}\n"),
    )
    .expect("web config");
    let agent = |host: &str, address: &str, node_port: u16, tls: bool| {
        let mut command = stack.registrar();
        command.arg("agent").arg("--config").arg(agent_config(d, host, address, node_port));
        command.args(["--web.listen-address", &format!("{address}:9998")]);
        if tls {
            command.arg("--web.config.file").arg(d.join("web.yml"));
        }
        Process::spawn(host, command, &stack.log_path(host))
    };
    let _host01 = agent("host01", "127.0.0.1", 9100, true);
    let mut host02 = agent("host02", "127.0.0.2", 9101, false);

    let _prometheus = stack.prometheus(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: promsd\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: prometheus\n      password: s3cret\n    http_sd_configs:\n      - url: http://127.0.0.1:9153/sd/v1/prom.local\n        refresh_interval: {}s\n",
        d.join("ca.pem").display(),
        REFRESH.as_secs()
    ));

    let expected = |host: &str, module: &str, scheme: &str| {
        let team = if module == "app" { "app" } else { "infra" };
        let instance = format!("{host}.{module}.prom.local:9998");
        let labels = BTreeMap::from([
            ("instance".to_string(), instance.clone()),
            ("job".to_string(), "promsd".to_string()),
            ("site".to_string(), format!("{host}-site")),
            ("team".to_string(), team.to_string()),
        ]);
        let scrape_url = format!("{scheme}://{instance}/proxy?module={module}");
        (instance, Target { health: "up".into(), scrape_url, labels })
    };
    let all_four = BTreeMap::from([
        expected("host01", "node", "https"),
        expected("host01", "app", "https"),
        expected("host02", "node", "http"),
        expected("host02", "app", "http"),
    ]);
    eventually("every module of both hosts up in Prometheus", Duration::from_secs(90), || {
        let now = targets(&stack)?;
        (now == all_four).then_some(())
    });

    // A registration appears, from dnsd's listing at once and in Prometheus after its refresh interval (and
    // its own batching); measured from the moment `registrar set` has written it.
    let set = stack
        .registrar()
        .args(["set", "--endpoints", ETCD, "--zone", "prom.local", "--service", "node", "--instance", "host03"])
        .args(["--address", "127.0.0.1", "--port", "9101", "--label", "site=host03-site", "--label", "team=infra"])
        .output()
        .expect("registrar set");
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let written = Instant::now();
    eventually("dnsd to list the new registration", Duration::from_secs(1), || {
        stack.curl("http://127.0.0.1:9153/sd/v1/prom.local?service=node")?.contains("host03.node").then_some(())
    });
    let in_dnsd = written.elapsed();
    eventually(
        "Prometheus to scrape the new registration",
        REFRESH + PROMETHEUS_BATCHING + Duration::from_secs(1),
        || {
            let now = targets(&stack)?;
            (now.get("host03.node.prom.local:9101")?.health == "up").then_some(())
        },
    );
    let in_prometheus = written.elapsed();
    eprintln!("new registration: in dnsd's listing after {in_dnsd:?}, up in Prometheus after {in_prometheus:?}");
    let host03 = &targets(&stack).expect("targets")["host03.node.prom.local:9101"];
    assert_eq!(host03.scrape_url, "http://host03.node.prom.local:9101/metrics", "no scrape settings: the job's");
    assert_eq!(host03.labels["site"], "host03-site");

    // An agent that stops removes its registrations; Prometheus drops their targets.
    host02.signal("TERM");
    host02.wait_timeout(Duration::from_secs(15)).expect("the agent stops");
    eventually("host02's targets to go", REFRESH + PROMETHEUS_BATCHING + Duration::from_secs(5), || {
        let now = targets(&stack)?;
        let instances: Vec<&String> = now.keys().collect();
        (instances
            == ["host01.app.prom.local:9998", "host01.node.prom.local:9998", "host03.node.prom.local:9101"]
                .iter()
                .collect::<Vec<_>>())
        .then_some(())
    });
}
