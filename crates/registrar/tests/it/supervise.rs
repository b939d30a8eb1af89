//! `registrar run` with a real prometheus-node-exporter.

use std::process::Command;
use std::time::Duration;

use promsd_tests::{Etcd, EtcdCluster, Process, eventually, free_port, holds_for, require};

use crate::registrar;

struct Supervised {
    registrar: Process,
    key: String,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The exporter's command line; `{port}` is replaced by the port chosen in `start`.
fn node_exporter_args() -> Vec<String> {
    vec![
        "prometheus-node-exporter".into(),
        "--web.listen-address=127.0.0.1:{port}".into(),
        "--collector.disable-defaults".into(),
        "--collector.loadavg".into(),
    ]
}

fn start(etcd: &Etcd, instance: &str, extra: &[&str], command: Vec<String>) -> Supervised {
    start_on(&etcd.endpoint, instance, extra, command)
}

fn start_on(endpoints: &str, instance: &str, extra: &[&str], command: Vec<String>) -> Supervised {
    require("prometheus-node-exporter");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut cmd = registrar();
    cmd.args(["run", "--endpoints", endpoints, "--zone", "prom.local", "--service", "node"])
        .args(["--instance", instance, "--address", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .arg("--")
        .args(command.iter().map(|a| a.replace("{port}", &port.to_string())));
    let registrar = Process::spawn("registrar", cmd, &dir.path().join("registrar.log"));
    Supervised { registrar, key: format!("/skydns/local/prom/node/{instance}"), port, _dir: dir }
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Waits for the registration; whenever the record is there, the exporter must already accept connections.
fn wait_registered(etcd: &Etcd, s: &Supervised) -> String {
    eventually("the exporter to be registered", Duration::from_secs(20), || {
        let value = etcd.get(&s.key)?;
        assert!(listening(s.port), "registered before the exporter listened");
        Some(value)
    })
}

/// The exporter's pid, as the registrar the test started reports it when it starts the exporter (a process
/// known by its own pid, not searched for).
fn exporter_pid(s: &Supervised) -> u32 {
    let line = s.registrar.wait_for_log("started exporter", Duration::from_secs(10));
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("pid="))
        .and_then(|pid| pid.parse().ok())
        .filter(|&pid| pid > 0)
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

fn kill_pid(pid: u32) {
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "cannot kill {pid}");
}

#[test]
fn registers_when_listening_and_deregisters_when_the_exporter_dies() {
    let etcd = Etcd::start();
    // The exporter starts listening only after a second: the record must not appear before.
    let slow = format!("sleep 1; exec {}", node_exporter_args().join(" "));
    let mut s = start(&etcd, "slow", &[], vec!["sh".into(), "-c".into(), slow]);
    let value = wait_registered(&etcd, &s);
    // The record names its owner (this host's machine-id), so another host's registrar taking the name is
    // told apart from a deletion or an edit.
    assert_eq!(
        value,
        format!(r#"{{"host":"127.0.0.1","port":{},"owner":"{}"}}"#, s.port, promsd_registration::owner())
    );

    kill_pid(exporter_pid(&s));
    let status = s.registrar.wait_timeout(Duration::from_secs(15)).expect("registrar exits with the exporter");
    assert_eq!(status.code(), Some(137), "the exporter's status (killed by SIGKILL): {}", s.registrar.log());
    assert_eq!(etcd.get(&s.key), None, "record removed");
}

#[test]
fn sigterm_is_forwarded_and_the_record_removed() {
    let etcd = Etcd::start();
    let mut s = start(&etcd, "term", &[], node_exporter_args());
    wait_registered(&etcd, &s);
    s.registrar.signal("TERM");
    let status = s.registrar.wait_timeout(Duration::from_secs(15)).expect("registrar exits");
    assert_eq!(status.code(), Some(143), "node exporter dies of the forwarded SIGTERM: {}", s.registrar.log());
    assert!(!listening(s.port), "the exporter stopped");
    assert_eq!(etcd.get(&s.key), None);
}

#[test]
fn lease_outlives_a_killed_registrar_only_until_its_ttl() {
    let etcd = Etcd::start();
    let args = node_exporter_args();
    let s = start(&etcd, "leased", &["--lease-ttl", "5s"], args);
    wait_registered(&etcd, &s);
    let lease = etcd.etcdctl(&["get", &s.key, "-w", "json"]);
    assert!(lease.contains("\"lease\":"), "record bound to a lease: {lease}");
    // Kept alive past its TTL while the registrar runs: a period in which the record must not go away, so it
    // is checked throughout, for longer than the 5s TTL.
    holds_for(Duration::from_secs(6), || {
        assert!(etcd.get(&s.key).is_some(), "lease not kept alive: {}", s.registrar.log());
    });

    let exporter = exporter_pid(&s);
    s.registrar.signal("KILL");
    assert!(etcd.get(&s.key).is_some(), "still there right after the kill");
    eventually("the lease to expire", Duration::from_secs(15), || etcd.get(&s.key).is_none().then_some(()));
    kill_pid(exporter);
}

#[test]
fn exit_status_passes_through_without_registering() {
    let etcd = Etcd::start();
    let mut s = start(&etcd, "fails", &[], vec!["sh".into(), "-c".into(), "exit 3".into()]);
    let status = s.registrar.wait_timeout(Duration::from_secs(10)).expect("registrar exits");
    assert_eq!(status.code(), Some(3));
    assert_eq!(etcd.get(&s.key), None);
}

#[test]
fn registers_once_etcd_comes_back_after_a_boot_without_it() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut s = start_on(&endpoint, "late", &[], node_exporter_args());
    eventually("the exporter to listen", Duration::from_secs(10), || listening(s.port).then_some(()));
    // Two failed attempts to register: the registrar retries rather than giving up with the exporter.
    s.registrar.wait_for_log_count("cannot register in etcd; retrying", 2, Duration::from_secs(20));
    assert!(listening(s.port), "the exporter still listens: {}", s.registrar.log());
    assert!(s.registrar.is_running(), "the exporter keeps running while etcd is away: {}", s.registrar.log());
    let etcd = Etcd::start_on_port(port);
    wait_registered(&etcd, &s);
    s.registrar.signal("TERM");
    s.registrar.wait_timeout(Duration::from_secs(15)).expect("registrar exits");
    assert_eq!(etcd.get(&s.key), None);
}

#[test]
fn lease_mode_survives_an_outage_longer_than_the_ttl() {
    let mut cluster = EtcdCluster::start(1);
    let mut s = start_on(&cluster.endpoints(), "outage", &["--lease-ttl", "3s"], node_exporter_args());
    let get = |cluster: &EtcdCluster| cluster.etcdctl(&["get", "--print-value-only", &s.key]).trim().to_string();
    eventually("registered", Duration::from_secs(20), || (!get(&cluster).is_empty()).then_some(()));
    let retries_before = s.registrar.log().matches("cannot register in etcd; retrying").count();
    cluster.kill(0);
    // The registrar notices the outage, and the outage then outlasts the 3s TTL: a period that is the point of
    // the test, during which the registrar and its exporter must keep running.
    s.registrar.wait_for_log_count("cannot register in etcd; retrying", retries_before + 1, Duration::from_secs(10));
    let port = s.port;
    holds_for(Duration::from_secs(4), || {
        assert!(s.registrar.is_running() && listening(port), "the exporter supervised through the outage");
    });
    cluster.restart(0);
    eventually("etcd back", Duration::from_secs(20), || cluster.try_etcdctl(&["endpoint", "health"]).ok());
    eventually("registered again", Duration::from_secs(20), || (!get(&cluster).is_empty()).then_some(()));
    // Held, not a leftover: a record under a lease nobody keeps alive is gone one TTL (3s) after etcd is back,
    // so the record must stay throughout more than two TTLs.
    holds_for(Duration::from_secs(7), || {
        assert!(!get(&cluster).is_empty(), "the record must stay while the exporter runs: {}", s.registrar.log());
    });
}

#[test]
fn lease_mode_survives_a_leader_change() {
    let mut cluster = EtcdCluster::start(3);
    let s = start_on(&cluster.endpoints(), "leader", &["--lease-ttl", "3s"], node_exporter_args());
    let present = |cluster: &EtcdCluster| {
        cluster.try_etcdctl(&["get", "--print-value-only", &s.key]).map(|v| !v.trim().is_empty())
    };
    eventually("registered", Duration::from_secs(20), || present(&cluster).unwrap_or(false).then_some(()));
    let leader = cluster.leader();
    cluster.kill(leader);
    // The record must stay through the election and for more than two TTLs after it (a lease nobody kept alive
    // would be gone within one).
    let still_there = |cluster: &EtcdCluster| {
        // A failed read says nothing; a read that succeeds must find the record.
        let found = present(cluster).unwrap_or(true);
        assert!(found, "the record vanished after the leader died: {}", s.registrar.log());
    };
    eventually("a new leader", Duration::from_secs(20), || {
        still_there(&cluster);
        cluster.try_leader().filter(|&new| new != leader)
    });
    holds_for(Duration::from_secs(7), || still_there(&cluster));
    let found = present(&cluster).unwrap_or_else(|e| panic!("etcd after the election: {e}"));
    assert!(found, "the record is there: {}", s.registrar.log());
}

#[test]
fn run_serves_its_metrics() {
    let etcd = Etcd::start();
    let web = free_port();
    let listen = format!("127.0.0.1:{web}");
    let mut s = start(&etcd, "metrics", &["--lease-ttl", "5s", "--web.listen-address", &listen], node_exporter_args());
    wait_registered(&etcd, &s);
    let addr: std::net::SocketAddr = listen.parse().expect("addr");
    let (status, body) = promsd_tests::http_get(addr, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    for expected in [
        "registrar_exporter_up 1",
        "registrar_registered 1",
        "registrar_registrations_total 1",
        "registrar_etcd_errors_total 0",
        "registrar_lease_grants_total 1",
        "registrar_lease_ttl_seconds 5",
        "registrar_lease_held 1",
    ] {
        assert!(body.lines().any(|l| l == expected), "{expected} missing from:\n{body}");
    }
    promsd_tests::assert_exporter_basics(&body, "registrar");
    s.registrar.signal("TERM");
    s.registrar.wait_timeout(Duration::from_secs(15)).expect("exits");
}
