//! Signals as operators send them: SIGHUP (`systemctl reload`, log rotation) never stops dnsd; it reads the
//! Corefile again, applies the log level (`debug`), the query log (`log`) and the lease TTL bounds at once,
//! and names what else changed (a restart applies it) or that the file is broken. SIGTERM stops it cleanly
//! within 2 s.

use std::time::{Duration, Instant};

use promsd_tests::{Etcd, Process, dig, eventually, require};

use crate::server::{dnsd_binary, load_seed};

/// A Corefile for `zone` with `plugins` (e.g. `log`, `debug`) beside etcd.
fn corefile(etcd: &Etcd, zone: &str, min_lease_ttl: &str, plugins: &str) -> String {
    format!(
        "{zone} {{\n    {plugins}\n    etcd {{\n        path /skydns\n        endpoint {}\n        min-lease-ttl {min_lease_ttl}\n    }}\n}}\n",
        etcd.endpoint
    )
}

#[test]
fn sighup_applies_what_it_can_never_stops_dnsd_and_sigterm_stops_it_within_2s() {
    require("dig");
    let etcd = Etcd::start();
    load_seed(&etcd);
    // A leased record: its TTL is the lease's remaining time clamped to min-lease-ttl, so the bound shows.
    let out = etcd.etcdctl(&["lease", "grant", "20"]);
    let id = out.split_whitespace().nth(1).expect("lease id").to_string();
    etcd.etcdctl(&["put", "--lease", &id, "/skydns/local/prom/kept/a", r#"{"host":"10.0.0.1"}"#]);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut keep_alive = std::process::Command::new("etcdctl");
    keep_alive.env("ETCDCTL_API", "3").args(["--endpoints", &etcd.endpoint, "lease", "keep-alive", &id]);
    let _keeper = Process::spawn("etcdctl keep-alive", keep_alive, &dir.path().join("keep.log"));

    let path = dir.path().join("Corefile");
    std::fs::write(&path, corefile(&etcd, "prom.local", "5s", "errors")).expect("write");
    let corefile_path = path.display().to_string();
    let (command, dns, _) = dnsd_binary(&["--corefile", &corefile_path]);
    let mut process = Process::spawn("dnsd", command, &dir.path().join("dnsd.log"));
    eventually("dnsd to serve", Duration::from_secs(20), || process.log().contains("serving DNS").then_some(()));
    let answers = || dig(dns, &["SRV", "node.prom.local"]).answer.len();
    let before = answers();
    assert!(before > 0, "the seed's SRV records");
    let ttl = || -> Option<u32> {
        let answer = dig(dns, &["A", "a.kept.prom.local"]).answer;
        answer.first().and_then(|r| r.split(' ').nth(1)).and_then(|t| t.parse().ok())
    };
    eventually("the leased record's TTL below 20 s", Duration::from_secs(10), || {
        ttl().is_some_and(|t| (5..=20).contains(&t)).then_some(())
    });
    let count = |process: &Process, needle: &str| process.log().matches(needle).count();
    let hup = |process: &mut Process, text: String, expected: &str| {
        std::fs::write(&path, text).expect("rewrite Corefile");
        let seen = count(process, expected);
        process.signal("HUP");
        eventually(expected, Duration::from_secs(10), || (count(process, expected) > seen).then_some(()));
        assert!(process.is_running(), "SIGHUP stopped dnsd:\n{}", process.log());
        assert_eq!(answers(), before, "answers after SIGHUP");
    };

    hup(&mut process, corefile(&etcd, "prom.local", "5s", "errors"), "configuration unchanged");

    // The lease bound, applied: the leased record is answered with the new minimum at once (no cached TTL).
    hup(&mut process, corefile(&etcd, "prom.local", "45s", "errors"), "min-lease-ttl: 5s -> 45s");
    assert_eq!(ttl(), Some(45), "the new min-lease-ttl:\n{}", process.log());

    // The query log, on and off.
    assert!(!process.log().contains("a.kept.prom.local"), "no query log yet");
    hup(&mut process, corefile(&etcd, "prom.local", "45s", "log"), "query log: false -> true");
    let _ = ttl();
    eventually("the query logged", Duration::from_secs(5), || {
        process.log().contains("a.kept.prom.local").then_some(())
    });
    hup(&mut process, corefile(&etcd, "prom.local", "45s", "errors"), "query log: true -> false");
    let logged = count(&process, "a.kept.prom.local");
    let _ = ttl();

    // The log level: `debug` shows the changes dnsd applies from etcd.
    assert!(!process.log().contains("applied changes from etcd"), "no debug lines at info");
    hup(&mut process, corefile(&etcd, "prom.local", "45s", "debug"), "log level: INFO -> DEBUG");
    etcd.put("/skydns/local/prom/other/b", r#"{"host":"10.0.0.2"}"#);
    eventually("a debug line", Duration::from_secs(5), || {
        process.log().contains("applied changes from etcd").then_some(())
    });
    assert_eq!(count(&process, "a.kept.prom.local"), logged, "the query log stayed off");

    // What only a restart applies is named, and not applied.
    hup(&mut process, corefile(&etcd, "other.zone", "45s", "debug"), "restart dnsd to apply them");
    assert!(process.log().contains(r#"settings="zones and SOA""#), "{}", process.log());
    hup(&mut process, "prom.local {\n    etcd {\n".to_string(), "the configuration is invalid; the running one stays");

    let stopping = Instant::now();
    process.signal("TERM");
    let status = process.wait_timeout(Duration::from_secs(10)).expect("dnsd stops");
    let took = stopping.elapsed();
    assert!(status.success(), "{status:?}:\n{}", process.log());
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}:\n{}", process.log());
}
