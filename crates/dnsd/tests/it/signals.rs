//! Signals as operators send them: SIGHUP (`systemctl reload`, log rotation) never stops dnsd; it reads the
//! Corefile again and says whether it changed or is broken. SIGTERM stops it cleanly within 2 s.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use promsd_tests::{Etcd, Process, dig, eventually, free_port, require};

use crate::server::load_seed;

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
    let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut command = Command::new(env!("CARGO_BIN_EXE_dnsd"));
    command
        .arg("--corefile")
        .arg(&path)
        .args(["--dns.listen-address", &dns.to_string()])
        .args(["--web.listen-address", &format!("127.0.0.1:{}", free_port())])
        .env_remove("ETCDCTL_ENDPOINTS");
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
