//! Registrations outlive what happens to etcd and to the registrar itself: on an etcd wiped and recreated on
//! the same URL (a new cluster: no keys, no leases) `run` and the agent write their records again, under new
//! leases; an agent paused for longer than its lease (SIGSTOP, a frozen VM) registers again when it resumes
//! instead of keeping a lease etcd no longer has.

use std::time::Duration;

use promsd_tests::{Etcd, Process, eventually, free_port, holds_for, require};

use crate::agent::start_agent;

/// The lease the record at `key` is under (0: none), read with etcdctl.
fn lease_of(etcd: &Etcd, key: &str) -> Option<i64> {
    let out = etcd.try_etcdctl(&["get", key, "-w", "json"]).ok()?;
    let json: serde_json::Value = serde_json::from_str(&out).ok()?;
    let kv = json["kvs"].as_array()?.first()?;
    Some(kv["lease"].as_i64().unwrap_or(0))
}

/// Whether etcd holds lease `id` with time left.
fn lease_alive(etcd: &Etcd, id: i64) -> bool {
    let out = etcd.try_etcdctl(&["lease", "timetolive", &format!("{id:x}")]).unwrap_or_default();
    out.contains("remaining") && !out.contains("already expired")
}

fn run(etcd: &Etcd, dir: &std::path::Path, instance: &str, extra: &[&str]) -> Process {
    require("prometheus-node-exporter");
    let port = free_port();
    let mut command = crate::registrar();
    command
        .args(["run", "--endpoints", &etcd.endpoint, "--zone", "prom.local", "--service", "node"])
        .args(["--instance", instance, "--address", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .args(["--", "prometheus-node-exporter", &format!("--web.listen-address=127.0.0.1:{port}")])
        .args(["--collector.disable-defaults", "--collector.loadavg"]);
    Process::spawn(instance, command, &dir.join(format!("{instance}.log")))
}

#[test]
fn run_and_the_agent_register_again_on_a_replaced_etcd() {
    let port = free_port();
    let old = Etcd::start_on_port(port);
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let _plain = run(&old, d, "plain", &[]);
    let _leased = run(&old, d, "leased", &["--lease-ttl", "30s"]);
    std::fs::write(d.join("up.prom"), "up 1\n").expect("write");
    let config = format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\ninstance: host1\nlease_ttl: 30s\nmodules:\n  files:\n    method: file\n    file:\n      path: {}\n",
        old.endpoint,
        d.join("up.prom").display()
    );
    let (_agent, _) = start_agent(d, &config);
    let keys = ["/skydns/local/prom/node/plain", "/skydns/local/prom/node/leased", "/skydns/local/prom/files/host1"];
    eventually("three records", Duration::from_secs(20), || keys.iter().all(|k| old.get(k).is_some()).then_some(()));
    drop(old); // stopped, its data directory gone

    let new = Etcd::start_on_port(port);
    eventually("the records on the new cluster", Duration::from_secs(20), || {
        keys.iter().all(|k| new.get(k).is_some()).then_some(())
    });
    for key in &keys[1..] {
        let lease = lease_of(&new, key).expect("the record");
        assert!(lease != 0 && lease_alive(&new, lease), "{key} under a lease of the new cluster ({lease:x})");
    }
    assert_eq!(lease_of(&new, keys[0]), Some(0), "a plain record stays plain");
}

#[test]
fn an_agent_paused_longer_than_its_lease_registers_again() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("up.prom"), "up 1\n").expect("write");
    let config = format!(
        "etcd:\n  endpoints: [{}]\nzone: prom.local\naddress: 127.0.0.1\ninstance: host1\nlease_ttl: 3s\nmodules:\n  files:\n    method: file\n    file:\n      path: {}\n",
        etcd.endpoint,
        d.join("up.prom").display()
    );
    let key = "/skydns/local/prom/files/host1";
    let (agent, _) = start_agent(d, &config);
    eventually("the record", Duration::from_secs(20), || etcd.get(key));
    let first = lease_of(&etcd, key).expect("the record");
    agent.signal("STOP");
    // The lease runs out while the agent cannot keep it alive: etcd deletes the record.
    eventually("the record to expire with its lease", Duration::from_secs(20), || {
        etcd.get(key).is_none().then_some(())
    });
    agent.signal("CONT");
    eventually("the record again", Duration::from_secs(15), || etcd.get(key));
    let second = lease_of(&etcd, key).expect("the record");
    assert_ne!(second, first, "a new lease");
    // Kept, not a one-off write: a lease nobody keeps alive is gone within one TTL (3 s).
    holds_for(Duration::from_secs(7), || {
        assert!(etcd.get(key).is_some(), "the record must stay while the agent runs:\n{}", agent.log());
    });
}
