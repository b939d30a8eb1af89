//! Records are kept true while their owner runs: deleted or overwritten in etcd, they are written again at
//! once; taken by another host's registrar (a clone, a duplicate instance name) the earlier one yields and
//! says so instead of fighting, and a registrar that stops never removes a record it no longer holds.

use std::time::Duration;

use promsd_tests::{Etcd, Process, eventually, free_port, holds_for, require};

use crate::registrar;

const KEY: &str = "/skydns/local/prom/node/dup";

/// `registrar run` of a node exporter on a free port as instance `dup`, with owner `owner` and `extra` flags.
fn run(etcd: &Etcd, dir: &std::path::Path, owner: &str, address: &str, extra: &[&str]) -> Process {
    require("prometheus-node-exporter");
    let port = free_port();
    let mut command = registrar();
    command
        .env("PROMSD_OWNER", owner)
        .args(["run", "--endpoints", &etcd.endpoint, "--zone", "prom.local", "--service", "node"])
        .args(["--instance", "dup", "--address", address, "--port", &port.to_string()])
        .args(extra)
        .args(["--", "prometheus-node-exporter", &format!("--web.listen-address={address}:{port}")])
        .args(["--collector.disable-defaults", "--collector.loadavg"]);
    Process::spawn(owner, command, &dir.join(format!("{owner}.log")))
}

/// The address in the record at KEY, when there is one.
fn address(etcd: &Etcd) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(&etcd.get(KEY)?).ok()?;
    value["host"].as_str().map(str::to_string)
}

fn restored_after_delete_and_overwrite(extra: &[&str]) {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let host = run(&etcd, dir.path(), "host-a", "127.0.0.1", extra);
    eventually("the record", Duration::from_secs(20), || address(&etcd));
    etcd.del(KEY);
    eventually("the deleted record written again", Duration::from_secs(10), || address(&etcd));
    etcd.put(KEY, r#"{"host":"10.9.9.9","port":1}"#);
    eventually("the overwritten record written again", Duration::from_secs(10), || {
        (address(&etcd).as_deref() == Some("127.0.0.1")).then_some(())
    });
    let log = host.log();
    assert!(log.contains("was deleted in etcd; written again") && log.contains("was overwritten"), "{log}");
}

#[test]
fn a_deleted_or_overwritten_record_is_written_again() {
    restored_after_delete_and_overwrite(&[]);
}

#[test]
fn a_deleted_or_overwritten_leased_record_is_written_again() {
    restored_after_delete_and_overwrite(&["--lease-ttl", "30s"]);
}

#[test]
fn two_hosts_with_one_name_do_not_fight_and_the_earlier_takes_over_when_the_other_goes() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let a = run(&etcd, dir.path(), "host-a", "127.0.0.1", &[]);
    eventually("host-a's record", Duration::from_secs(20), || {
        (address(&etcd).as_deref() == Some("127.0.0.1")).then_some(())
    });
    let mut b = run(&etcd, dir.path(), "host-b", "127.0.0.2", &[]);
    eventually("host-b's record", Duration::from_secs(20), || {
        (address(&etcd).as_deref() == Some("127.0.0.2")).then_some(())
    });
    eventually("host-a to report the conflict", Duration::from_secs(10), || {
        a.log().contains("another registrar wrote this record").then_some(())
    });
    // No fight: the record stays host-b's.
    holds_for(Duration::from_secs(3), || {
        assert_eq!(address(&etcd).as_deref(), Some("127.0.0.2"), "{}", a.log());
    });
    assert_eq!(a.log().matches("another registrar wrote this record").count(), 1, "reported once: {}", a.log());
    // host-b stops and removes its record; host-a, still running, writes its own again.
    b.signal("TERM");
    b.wait_timeout(Duration::from_secs(10)).expect("host-b stops");
    eventually("host-a's record back", Duration::from_secs(10), || {
        (address(&etcd).as_deref() == Some("127.0.0.1")).then_some(())
    });
}

#[test]
fn a_registrar_that_stops_leaves_a_record_another_host_took() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = run(&etcd, dir.path(), "host-a", "127.0.0.1", &[]);
    eventually("host-a's record", Duration::from_secs(20), || {
        (address(&etcd).as_deref() == Some("127.0.0.1")).then_some(())
    });
    let _b = run(&etcd, dir.path(), "host-b", "127.0.0.2", &[]);
    eventually("host-b's record", Duration::from_secs(20), || {
        (address(&etcd).as_deref() == Some("127.0.0.2")).then_some(())
    });
    eventually("host-a to yield", Duration::from_secs(10), || {
        a.log().contains("another registrar wrote this record").then_some(())
    });
    a.signal("TERM");
    a.wait_timeout(Duration::from_secs(10)).expect("host-a stops");
    assert_eq!(address(&etcd).as_deref(), Some("127.0.0.2"), "host-a removed host-b's record:\n{}", a.log());
}
