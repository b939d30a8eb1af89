//! A stop is bounded whatever etcd does: the agent with many modules and `registrar run` exit within 5 s of
//! SIGTERM while etcd does not answer (systemd would SIGKILL them otherwise, and a leased record expires
//! by itself).

use std::time::{Duration, Instant};

use promsd_tests::{Etcd, eventually, require};

use crate::agent::start_agent;

/// The bound a stop must keep, as systemd units and the issue expect.
const STOP_WITHIN: Duration = Duration::from_secs(5);

#[test]
fn the_agent_stops_within_5s_with_nine_modules_and_etcd_gone() {
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("up.prom"), "up 1\n").expect("write");
    let modules: String = (1..=9)
        .map(|i| format!("  m{i}:\n    method: file\n    file:\n      path: {}\n", d.join("up.prom").display()))
        .collect();
    let config = format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\ninstance: host1\nlease_ttl: 30s\nmodules:\n{modules}",
        etcd.endpoint
    );
    let (mut agent, _addr) = start_agent(d, &config);
    eventually("all nine modules registered", Duration::from_secs(15), || {
        (1..=9).all(|i| etcd.get(&format!("/skydns/local/prom/m{i}/host1")).is_some()).then_some(())
    });
    etcd.stop();
    let stopping = Instant::now();
    agent.signal("TERM");
    let status = agent.wait_timeout(Duration::from_secs(20)).expect("the agent exits");
    let took = stopping.elapsed();
    assert!(took < STOP_WITHIN, "stopping took {took:?}:\n{}", agent.log());
    assert!(status.success(), "{status:?}:\n{}", agent.log());
}

#[test]
fn registrar_run_stops_within_5s_with_etcd_gone() {
    require("prometheus-node-exporter");
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = promsd_tests::free_port();
    let mut command = crate::registrar();
    command
        .args(["run", "--endpoints", &etcd.endpoint, "--zone", "prom.local", "--service", "node"])
        .args(["--instance", "stop", "--address", "127.0.0.1", "--port", &port.to_string(), "--lease-ttl", "30s"])
        .args(["--", "prometheus-node-exporter", &format!("--web.listen-address=127.0.0.1:{port}")])
        .args(["--collector.disable-defaults", "--collector.loadavg"]);
    let mut registrar = promsd_tests::Process::spawn("registrar", command, &dir.path().join("run.log"));
    eventually("the record", Duration::from_secs(15), || etcd.get("/skydns/local/prom/node/stop"));
    etcd.stop();
    let stopping = Instant::now();
    registrar.signal("TERM");
    registrar.wait_timeout(Duration::from_secs(20)).expect("registrar exits");
    let took = stopping.elapsed();
    assert!(took < STOP_WITHIN, "stopping took {took:?}:\n{}", registrar.log());
}
