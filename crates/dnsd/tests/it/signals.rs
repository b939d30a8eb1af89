//! Signals as operators send them: SIGHUP (`systemctl reload`, log rotation) never stops dnsd; it reads the
//! Corefile again and says whether it changed or is broken. SIGTERM stops it cleanly within 2 s.

use std::time::{Duration, Instant};

use promsd_tests::{Etcd, Process, dig, eventually, require};

use crate::server::{dnsd_binary, load_seed};

fn corefile(etcd: &Etcd, min_lease_ttl: &str) -> String {
    format!(
        "prom.local {{\n    etcd {{\n        path /skydns\n        endpoint {}\n        min-lease-ttl {min_lease_ttl}\n    }}\n}}\n",
        etcd.endpoint
    )
}

#[test]
fn sighup_never_stops_dnsd_and_sigterm_stops_it_within_2s() {
    require("dig");
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("Corefile");
    std::fs::write(&path, corefile(&etcd, "30s")).expect("write");
    let corefile_path = path.display().to_string();
    let (command, dns, _) = dnsd_binary(&["--corefile", &corefile_path]);
    let mut process = Process::spawn("dnsd", command, &dir.path().join("dnsd.log"));
    eventually("dnsd to serve", Duration::from_secs(20), || process.log().contains("serving DNS").then_some(()));
    let answers = || dig(dns, &["SRV", "node.prom.local"]).answer.len();
    let before = answers();
    assert!(before > 0, "the seed's SRV records");
    let count = |process: &Process, needle: &str| process.log().matches(needle).count();

    for (corefile_text, expected) in [
        (corefile(&etcd, "30s"), "configuration unchanged"),
        (corefile(&etcd, "45s"), "the configuration changed; restart dnsd"),
        ("prom.local {\n    etcd {\n".to_string(), "the configuration is invalid; the running one stays"),
    ] {
        std::fs::write(&path, corefile_text).expect("rewrite Corefile");
        let seen = count(&process, expected);
        process.signal("HUP");
        eventually(expected, Duration::from_secs(10), || (count(&process, expected) > seen).then_some(()));
        assert!(process.is_running(), "SIGHUP stopped dnsd:\n{}", process.log());
        assert_eq!(answers(), before, "answers after SIGHUP");
    }

    let stopping = Instant::now();
    process.signal("TERM");
    let status = process.wait_timeout(Duration::from_secs(10)).expect("dnsd stops");
    let took = stopping.elapsed();
    assert!(status.success(), "{status:?}:\n{}", process.log());
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}:\n{}", process.log());
}
