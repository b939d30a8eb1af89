//! `registrar agent`: a real node exporter behind the proxy, exec and file modules, errors and deadlines,
//! the modules registered in etcd while it runs and removed when it stops.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use promsd_tests::{Etcd, Process, eventually, free_port, require};

use crate::registrar;

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut curl = Command::new("curl");
    curl.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]);
    for (name, value) in headers {
        curl.args(["-H", &format!("{name}: {value}")]);
    }
    let out = curl.arg(format!("http://{addr}{path}")).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("status"), body.to_string())
}

fn start_agent(dir: &std::path::Path, config: &str) -> (Process, SocketAddr) {
    let path = dir.join("agent.yml");
    std::fs::write(&path, config).expect("write config");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut command = registrar();
    command.arg("agent").arg("--config").arg(&path).args(["--web.listen-address", &addr.to_string()]);
    let process = Process::spawn("agent", command, &dir.join("agent.log"));
    eventually("the agent to listen", Duration::from_secs(10), || std::net::TcpStream::connect(addr).ok());
    (process, addr)
}

#[test]
fn proxies_modules_and_registers_them() {
    require("prometheus-node-exporter");
    require("curl");
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let node_port = free_port();
    let mut exporter = Command::new("prometheus-node-exporter");
    exporter.args([
        format!("--web.listen-address=127.0.0.1:{node_port}"),
        "--collector.disable-defaults".into(),
        "--collector.loadavg".into(),
    ]);
    let _exporter = Process::spawn("node", exporter, &dir.path().join("node.log"));
    std::fs::write(dir.path().join("text.prom"), "# TYPE batch_last_success gauge\nbatch_last_success 1.7e9\n")
        .expect("write");
    let config = format!(
        r#"etcd:
  endpoints: [{endpoint}]
zone: prom.local
address: 127.0.0.1
instance: host1
modules:
  node:
    method: http
    http:
      port: {node_port}
  broken:
    method: exec
    exec:
      command: sh
      args: ["-c", "echo '<html>not metrics</html>'"]
  hang:
    method: exec
    timeout: 1s
    exec:
      command: sh
      args: ["-c", "sleep 31; echo up 1"]
  slow:
    method: exec
    exec:
      command: sh
      args: ["-c", "sleep 32; echo up 1"]
  text:
    method: file
    file:
      path: {text}
"#,
        endpoint = etcd.endpoint,
        text = dir.path().join("text.prom").display()
    );
    let (mut agent, addr) = start_agent(dir.path(), &config);
    let expected = format!(r#"{{"host":"127.0.0.1","port":{}}}"#, addr.port());
    for module in ["node", "broken", "hang", "slow", "text"] {
        let key = format!("/skydns/local/prom/{module}/host1");
        let value = eventually("the module registered", Duration::from_secs(10), || etcd.get(&key));
        assert_eq!(value, expected, "{module}");
    }

    let (status, body) = get(addr, "/proxy?module=node", &[]);
    assert_eq!(status, 200);
    assert!(body.contains("node_load1"), "{body}");
    assert_eq!(
        get(addr, "/proxy?module=text", &[]),
        (200, "# TYPE batch_last_success gauge\nbatch_last_success 1.7e9\n".into())
    );
    assert_eq!(get(addr, "/proxy?module=nope", &[]).0, 404);
    assert_eq!(get(addr, "/proxy", &[]).0, 400);
    let (status, body) = get(addr, "/proxy?module=broken", &[]);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("not valid exposition format"), "{body}");

    // The module's timeout: 504, and the command's whole process group is gone.
    let started = Instant::now();
    assert_eq!(get(addr, "/proxy?module=hang", &[]).0, 504);
    assert!(started.elapsed() < Duration::from_secs(10));
    eventually("the hung command to be killed", Duration::from_secs(5), || {
        let running = Command::new("pgrep").args(["-f", "sleep 31"]).output().expect("pgrep").status.success();
        (!running).then_some(())
    });
    // Prometheus's scrape timeout bounds a module without one.
    assert_eq!(get(addr, "/proxy?module=slow", &[("X-Prometheus-Scrape-Timeout-Seconds", "1.5")]).0, 504);

    let (_, index) = get(addr, "/", &[("Accept", "application/json")]);
    let modules: serde_json::Value = serde_json::from_str(&index).expect("JSON");
    assert_eq!(modules["node"]["method"], "http");
    let (_, html) = get(addr, "/", &[]);
    assert!(html.contains("/proxy?module=text"));
    let (_, metrics) = get(addr, "/metrics", &[]);
    for line in [
        "registrar_agent_scrapes_total 5",
        "registrar_agent_malformed_content_total 1",
        "registrar_agent_scrape_timeouts_total 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }

    agent.signal("TERM");
    agent.wait_timeout(Duration::from_secs(15)).expect("agent stops");
    for module in ["node", "broken", "hang", "slow", "text"] {
        assert_eq!(etcd.get(&format!("/skydns/local/prom/{module}/host1")), None, "{module} deregistered");
    }
}

#[test]
fn a_configured_token_is_required() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("up.prom"), "up 1\n").expect("write");
    let config = format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\ntoken:\n  header: CF-Access-Client-Secret\n  value: s3cret\nmodules:\n  up:\n    method: file\n    file:\n      path: {}\n",
        etcd.endpoint,
        dir.path().join("up.prom").display()
    );
    let (_agent, addr) = start_agent(dir.path(), &config);
    assert_eq!(get(addr, "/proxy?module=up", &[("CF-Access-Client-Secret", "s3cret")]), (200, "up 1\n".into()));
    assert_eq!(get(addr, "/proxy?module=up", &[("CF-Access-Client-Secret", "wrong")]).0, 401);
    assert_eq!(get(addr, "/proxy?module=up", &[]).0, 401);
}

#[test]
fn a_bad_config_names_the_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.yml");
    std::fs::write(&path, "address: 127.0.0.1\nmodules:\n  node:\n    method: http\n    htp: {}\n").expect("write");
    let out = registrar().arg("agent").arg("--config").arg(&path).output().expect("registrar");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("agent.yml") && err.contains("unknown field `htp`") && err.contains("line 5"), "{err}");
}
