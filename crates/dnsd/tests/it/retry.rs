//! An unreachable etcd is retried with the shared backoff, one warning per step: before the first load
//! and after etcd died under a running dnsd (it used to retry about ten times a second).

use std::path::Path;
use std::time::{Duration, Instant};

use promsd_tests::{Etcd, Process, free_port};

use crate::server::{dnsd_binary, load_seed};

fn dnsd(endpoint: &str, log: &Path) -> Process {
    let (command, _, _) = dnsd_binary(&["--endpoints", endpoint, "--zone", "prom.local"]);
    Process::spawn("dnsd", command, log)
}

/// When each of the first `count` log lines containing `needle` appeared (polling the log).
fn arrivals(process: &Process, needle: &str, count: usize, timeout: Duration) -> Vec<Instant> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while seen.len() < count {
        let now = Instant::now();
        assert!(now < deadline, "only {} of {count} {needle:?} lines in {timeout:?}:\n{}", seen.len(), process.log());
        let lines = process.log().lines().filter(|l| l.contains(needle)).count();
        while seen.len() < lines.min(count) {
            seen.push(now);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    seen
}

/// Six attempts with delays doubling from 100 ms, each jittered to at least half: at least 1.55 s from the
/// first warning to the sixth. Ten attempts a second would take 0.5 s.
const SIX_STEPS_AT_LEAST: Duration = Duration::from_millis(1550);

#[test]
fn an_unreachable_etcd_is_retried_with_backoff_from_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let process = dnsd(&dead, &dir.path().join("dnsd.log"));
    let seen = arrivals(&process, "cannot", 6, Duration::from_secs(30));
    let span = seen[5] - seen[0];
    assert!(span >= SIX_STEPS_AT_LEAST, "six attempts in {span:?}:\n{}", process.log());
}

#[test]
fn etcd_dying_under_a_running_dnsd_is_retried_with_backoff() {
    let mut etcd = Etcd::start();
    load_seed(&etcd);
    let dir = tempfile::tempdir().expect("temp dir");
    let process = dnsd(&etcd.endpoint, &dir.path().join("dnsd.log"));
    promsd_tests::eventually("dnsd to load", Duration::from_secs(20), || {
        process.log().contains("serving DNS").then_some(())
    });
    let before = process.log().lines().filter(|l| l.contains("etcd")).count();
    etcd.stop();
    // The warnings after the watch broke: the first is immediate (a watch was established, so the backoff
    // started afresh), the rest back off.
    let seen = arrivals(&process, "etcd", before + 6, Duration::from_secs(30));
    let span = seen[before + 5] - seen[before];
    assert!(span >= SIX_STEPS_AT_LEAST, "six attempts in {span:?}:\n{}", process.log());
}

/// What no retry can fix stops dnsd at once with one line naming it, instead of a retry loop.
#[test]
fn settings_no_retry_can_fix_stop_dnsd_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Files that exist but hold no usable PEM: found at start, not as a handshake failing on every retry.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let garbage = garbage.display().to_string();
    for (args, expected) in [
        (vec!["--endpoints", "https://127.0.0.1:1", "--cacert", &garbage], "is not usable PEM: no certificate in it"),
        (vec!["--cert", &garbage, "--key", &garbage], "is not usable PEM"),
        (vec!["--endpoints", "127.0.0.1:2379"], "invalid endpoint \"127.0.0.1:2379\""),
        (vec!["--endpoints", "http://"], "invalid endpoint \"http://\""),
        (vec!["--cacert", "/nonexistent/ca.pem"], "/nonexistent/ca.pem"),
        (vec!["--cert", "/nonexistent/c.pem"], "--cert and --key must be given together"),
    ] {
        let mut zone_and = vec!["--zone", "prom.local"];
        zone_and.extend(&args);
        stops_at_once(dir.path(), &zone_and, &[expected]);
    }
}

/// Runs dnsd with `args` and expects it to exit non-zero within 10 s, its last line naming each of
/// `expected`. Returns its log.
fn stops_at_once(dir: &Path, args: &[&str], expected: &[&str]) -> String {
    let (command, _, _) = dnsd_binary(args);
    let mut process = Process::spawn("dnsd", command, &dir.join("dnsd.log"));
    let status = process.wait_timeout(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!("dnsd {args:?} still runs after 10 s:\n{}", process.log());
    });
    assert!(!status.success(), "dnsd {args:?} exited successfully");
    let log = process.log();
    let last = log.lines().last().unwrap_or_default();
    assert!(expected.iter().all(|e| last.contains(e)), "dnsd {args:?}: the last line names {expected:?}:\n{log}");
    std::fs::remove_file(dir.join("dnsd.log")).expect("rm log");
    log
}

/// Refusals no retry changes, before the first load: wrong password, a user on a cluster without
/// authentication, a user without permission for the prefix. dnsd exits 1 with one line naming the cause,
/// instead of waiting for a load that cannot come.
#[test]
fn a_refusal_by_etcd_before_the_first_load_stops_dnsd_at_once() {
    let etcd = Etcd::start();
    let plain = Etcd::start();
    etcd.etcdctl(&["user", "add", "root:rootpw"]);
    etcd.etcdctl(&["user", "add", "nobody:nobodypw"]);
    etcd.etcdctl(&["auth", "enable"]);
    let dir = tempfile::tempdir().expect("temp dir");
    for (endpoint, user, expected) in [
        (&etcd.endpoint, "root:wrong", "authentication failed, invalid user ID or password"),
        (&plain.endpoint, "root:rootpw", "authentication is not enabled"),
        (&etcd.endpoint, "nobody:nobodypw", "permission denied"),
    ] {
        let args = ["--zone", "prom.local", "--endpoints", endpoint, "--user", user];
        let log = stops_at_once(dir.path(), &args, &["refused dnsd", expected]);
        assert!(!log.contains("rootpw") && !log.contains("nobodypw"), "the password shows:\n{log}");
    }
}
