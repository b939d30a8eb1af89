//! dnsd and registrar against a real 3-member etcd cluster: a leader killed under load, every member down
//! for 30 seconds, and compaction during churn. Each test is bounded in count and time.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use promsd_tests::{Dig, EtcdCluster, Process, dig, eventually, free_port, http_get, workspace_bin};

struct Dnsd {
    process: Process,
    dns: SocketAddr,
    web: SocketAddr,
    _dir: tempfile::TempDir,
}

fn start_dnsd(endpoints: &str) -> Dnsd {
    let dir = tempfile::tempdir().expect("temp dir");
    let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut command = Command::new(workspace_bin("dnsd"));
    command
        .args(["--endpoints", endpoints, "--zone", "prom.local"])
        .args(["--dns.listen-address", &dns.to_string(), "--web.listen-address", &web.to_string()])
        .env_remove("ETCDCTL_ENDPOINTS");
    let process = Process::spawn("dnsd", command, &dir.path().join("dnsd.log"));
    eventually("dnsd to be ready", Duration::from_secs(20), || {
        matches!(http_get(web, "/-/ready"), Ok((200, _))).then_some(())
    });
    Dnsd { process, dns, web, _dir: dir }
}

fn metric(dnsd: &Dnsd, name: &str) -> Option<f64> {
    let (_, body) = http_get(dnsd.web, "/metrics").ok()?;
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.parse().ok()))
}

fn put_seed(cluster: &EtcdCluster) {
    for i in 1..=3 {
        cluster.etcdctl(&[
            "put",
            &format!("/skydns/local/prom/node/base{i}"),
            &format!(r#"{{"host":"10.0.0.{i}","port":9100}}"#),
        ]);
    }
}

fn three_targets(answer: &Dig) -> bool {
    answer.status == "NOERROR" && answer.answer.len() == 3 && answer.additional.len() == 3
}

#[test]
fn killing_the_leader_loses_no_answers_and_no_registrations() {
    let mut cluster = EtcdCluster::start(3);
    put_seed(&cluster);
    let dnsd = start_dnsd(&cluster.endpoints());
    eventually("the seed records", Duration::from_secs(10), || {
        three_targets(&dig(dnsd.dns, &["SRV", "node.prom.local"])).then_some(())
    });

    let stop = Arc::new(AtomicBool::new(false));
    // How many answers and registrations have completed so far, for the test to wait on.
    let (answers, registered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let queries = {
        let (stop, dns, answers) = (stop.clone(), dnsd.dns, answers.clone());
        std::thread::spawn(move || {
            let (mut answered, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let answer = dig(dns, &["SRV", "node.prom.local"]);
                if three_targets(&answer) {
                    answered += 1
                } else {
                    failed.push(answer.raw)
                }
                answers.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            (answered, failed)
        })
    };
    let registrations = {
        let (stop, endpoints, registered) = (stop.clone(), cluster.endpoints(), registered.clone());
        std::thread::spawn(move || {
            let mut results = Vec::new();
            while !stop.load(Ordering::Relaxed) && results.len() < 200 {
                let instance = format!("i{}", results.len());
                let out = Command::new(workspace_bin("registrar"))
                    .args(["set", "--endpoints", &endpoints, "--zone", "prom.local", "--service", "reg"])
                    .args(["--instance", &instance, "--address", "10.1.0.1", "--port", "9100", "--timeout", "10s"])
                    .env_remove("ETCDCTL_ENDPOINTS")
                    .output()
                    .expect("registrar");
                results.push((out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()));
                registered.store(results.len(), Ordering::Relaxed);
            }
            results
        })
    };
    let count = |n: &AtomicUsize| n.load(Ordering::Relaxed);
    eventually("queries and registrations under way", Duration::from_secs(20), || {
        (count(&answers) >= 20 && count(&registered) >= 2).then_some(())
    });
    let leader = cluster.leader();
    cluster.kill(leader);
    let (answers_at_kill, registered_at_kill) = (count(&answers), count(&registered));
    // Load through the failover: until the survivors have elected a new leader, and registrations made
    // after the kill (at most one was in flight at it) and queries after it have completed.
    eventually("a new leader", Duration::from_secs(30), || cluster.try_leader().filter(|&new| new != leader));
    eventually("registrations and answers after the failover", Duration::from_secs(30), || {
        (count(&registered) >= (registered_at_kill + 2).min(200) && count(&answers) >= (answers_at_kill + 20).max(51))
            .then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let (answered, failed) = queries.join().expect("query thread");
    let results = registrations.join().expect("registrar thread");

    assert!(
        failed.is_empty(),
        "{} of {} DNS answers failed, first: {}",
        failed.len(),
        answered + failed.len(),
        failed[0]
    );
    assert!(answered > 50, "the query loop ran ({answered})");
    let refused: Vec<&String> = results.iter().filter(|(ok, _)| !ok).map(|(_, err)| err).collect();
    assert!(refused.is_empty(), "registrations failed after the leader died: {refused:?}");
    // dnsd followed every write made through the failover.
    eventually("every registration in DNS", Duration::from_secs(20), || {
        (dig(dnsd.dns, &["+tcp", "SRV", "reg.prom.local"]).answer.len() == results.len()).then_some(())
    });
}

#[test]
fn every_member_down_for_30_seconds() {
    let mut cluster = EtcdCluster::start(3);
    put_seed(&cluster);
    let dnsd = start_dnsd(&cluster.endpoints());
    let before = eventually("the seed records", Duration::from_secs(10), || {
        let answer = dig(dnsd.dns, &["SRV", "node.prom.local"]);
        three_targets(&answer).then_some(answer)
    });
    for i in 0..3 {
        cluster.kill(i);
    }
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(30) {
        let answer = dig(dnsd.dns, &["SRV", "node.prom.local"]);
        assert_eq!(answer.answer_sorted(), before.answer_sorted(), "answers while etcd is down");
        assert_eq!(dig(dnsd.dns, &["A", "base1.node.prom.local"]).answer, ["base1.node.prom.local. 300 IN A 10.0.0.1"]);
        assert_eq!(dig(dnsd.dns, &["SRV", "gone.prom.local"]).status, "NXDOMAIN");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(metric(&dnsd, "dnsd_etcd_connected"), Some(0.0), "the outage shows in /metrics");
    assert!(metric(&dnsd, "dnsd_view_age_seconds").is_some_and(|age| age >= 15.0), "the view's age grows");
    assert_eq!(http_get(dnsd.web, "/-/ready").expect("ready").0, 200, "still ready: it answers from its view");

    for i in 0..3 {
        cluster.restart(i);
    }
    eventually("etcd back", Duration::from_secs(30), || {
        cluster.try_etcdctl(&["put", "/skydns/local/prom/node/new", r#"{"host":"10.0.0.9","port":9100}"#]).ok()
    });
    cluster.etcdctl(&["del", "/skydns/local/prom/node/base1"]);
    let after = eventually("the changes in DNS", Duration::from_secs(30), || {
        let answer = dig(dnsd.dns, &["SRV", "node.prom.local"]);
        (answer.answer.len() == 3 && answer.answer.iter().any(|r| r.contains("new.node"))).then_some(answer)
    });
    assert!(!after.answer.iter().any(|r| r.contains("base1")), "{}", after.raw);
    eventually("reconnected", Duration::from_secs(10), || {
        (metric(&dnsd, "dnsd_etcd_connected") == Some(1.0)).then_some(())
    });
}

/// Thousands of random puts and deletes with compactions in between, once while dnsd follows and once while
/// its member is down (so it comes back to a compacted revision and must reload). Afterwards every name
/// answers exactly what etcd holds.
#[test]
fn compaction_during_churn_leaves_dnsd_equal_to_etcd() {
    let mut cluster = EtcdCluster::start(3);
    let dnsd = start_dnsd(&cluster.endpoint(0));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut seed = 0x2545_f491_4f6c_dd1du64;

    churn(&runtime, &cluster.endpoint(1), &mut seed);
    verify(&runtime, &cluster, &dnsd);

    cluster.kill(0);
    churn(&runtime, &cluster.endpoint(1), &mut seed);
    cluster.restart(0);
    verify(&runtime, &cluster, &dnsd);
    assert!(metric(&dnsd, "dnsd_resyncs_total").is_some_and(|n| n >= 1.0), "the compacted watch was reloaded");
}

const NAMES: u64 = 100;

fn churn(runtime: &tokio::runtime::Runtime, endpoint: &str, seed: &mut u64) {
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect([endpoint], None).await.expect("connect");
        for _round in 0..5 {
            for _ in 0..400 {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                let key = format!("/skydns/local/prom/churn/n{}", *seed % NAMES);
                let delete = (*seed >> 20).is_multiple_of(3);
                let value = format!(r#"{{"host":"10.2.{}.{}"}}"#, (*seed >> 8) % 250, (*seed >> 16) % 250 + 1);
                // A loaded machine can make etcd time out a request; retry it rather than fail the test.
                for attempt in 0.. {
                    let done = if delete {
                        client.delete(key.as_str(), None).await.map(|_| ())
                    } else {
                        client.put(key.as_str(), value.as_str(), None).await.map(|_| ())
                    };
                    match done {
                        Ok(()) => break,
                        Err(e) if attempt < 50 => {
                            eprintln!("retrying after {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => panic!("etcd kept failing: {e}"),
                    }
                }
            }
            let revision = client.get("/", None).await.expect("get").header().expect("header").revision();
            client.compact(revision, None).await.expect("compact");
        }
    });
}

fn verify(runtime: &tokio::runtime::Runtime, cluster: &EtcdCluster, dnsd: &Dnsd) {
    let (expected, revision) = runtime.block_on(async {
        let mut client = etcd_client::Client::connect([cluster.endpoint(1)], None).await.expect("connect");
        let response = client
            .get("/skydns/local/prom/churn/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await
            .expect("get");
        let held: std::collections::HashMap<String, String> = response
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().expect("key").to_string(), kv.value_str().expect("value").to_string()))
            .collect();
        (held, response.header().expect("header").revision())
    });
    eventually("dnsd to reach etcd's revision", Duration::from_secs(30), || {
        metric(dnsd, "dnsd_view_revision").is_some_and(|r| r >= revision as f64).then_some(())
    });
    for i in 0..NAMES {
        let answer = dig(dnsd.dns, &["A", &format!("n{i}.churn.prom.local")]);
        match expected.get(&format!("/skydns/local/prom/churn/n{i}")) {
            Some(value) => {
                let host: serde_json::Value = serde_json::from_str(value).expect("json");
                let want = format!("n{i}.churn.prom.local. 300 IN A {}", host["host"].as_str().expect("host"));
                assert_eq!(answer.answer, [want], "n{i}");
            }
            None => assert_eq!(answer.status, "NXDOMAIN", "n{i} was deleted: {}", answer.raw),
        }
    }
}

/// A member that freezes (SIGSTOP) keeps its TCP connections open and never errors: dnsd must notice the
/// silence by itself, say so, and catch up once the member answers again.
#[test]
fn a_frozen_member_is_noticed_without_any_stream_error() {
    let cluster = EtcdCluster::start(3);
    put_seed(&cluster);
    let dnsd = start_dnsd(&cluster.endpoint(0));
    eventually("connected", Duration::from_secs(10), || {
        (metric(&dnsd, "dnsd_etcd_connected") == Some(1.0)).then_some(())
    });
    cluster.signal(0, "STOP");
    eventually("the silence to be noticed", Duration::from_secs(40), || {
        (metric(&dnsd, "dnsd_etcd_connected") == Some(0.0)).then_some(())
    });
    assert!(three_targets(&dig(dnsd.dns, &["SRV", "node.prom.local"])), "still answering from the view");
    cluster.etcdctl(&["put", "/skydns/local/prom/node/during", r#"{"host":"10.0.0.8","port":9100}"#]);
    cluster.signal(0, "CONT");
    eventually("the change made while frozen", Duration::from_secs(30), || {
        (dig(dnsd.dns, &["SRV", "node.prom.local"]).answer.len() == 4).then_some(())
    });
}

/// `name{label="value"} N` from dnsd's metrics.
fn labelled_metric(dnsd: &Dnsd, name: &str, label: &str, value: &str) -> Option<f64> {
    let (_, body) = http_get(dnsd.web, "/metrics").ok()?;
    let prefix = format!("{name}{{{label}=\"{value}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
}

/// One of three members dies: the watch (through another member) goes on, but the loss (one failure from
/// losing quorum) is logged once, naming the endpoint, and shows in `dnsd_etcd_endpoint_up`; so does its
/// return. Meanwhile etcd confirms the view every few seconds: `dnsd_view_age_seconds` stays small.
#[test]
fn a_dead_member_of_three_is_reported_and_the_view_age_stays_small() {
    let mut cluster = EtcdCluster::start(3);
    put_seed(&cluster);
    let dnsd = start_dnsd(&cluster.endpoints());
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    let up = |i: usize| labelled_metric(&dnsd, "dnsd_etcd_endpoint_up", "endpoint", &endpoints[i]);
    eventually("every endpoint up", Duration::from_secs(15), || (0..3).all(|i| up(i) == Some(1.0)).then_some(()));
    // Progress notifications confirm an idle view: its age stays below PROGRESS_AFTER (2 s) plus a tick,
    // where it used to cycle up to 10 s.
    promsd_tests::holds_for(Duration::from_secs(8), || {
        let age = metric(&dnsd, "dnsd_view_age_seconds").expect("dnsd_view_age_seconds");
        assert!(age < 4.5, "view age {age} s on a healthy idle etcd");
    });

    let victim = (cluster.leader() + 1) % 3;
    let endpoint = &endpoints[victim];
    cluster.kill(victim);
    let logged = |text: &str| dnsd.process.log().lines().any(|l| l.contains(text) && l.contains(endpoint.as_str()));
    eventually("the dead member reported", Duration::from_secs(20), || {
        (up(victim) == Some(0.0) && logged("etcd member does not answer")).then_some(())
    });
    let down_lines = dnsd.process.log().matches("etcd member does not answer").count();
    assert!(three_targets(&dig(dnsd.dns, &["SRV", "node.prom.local"])), "answers go on");
    cluster.etcdctl(&["put", "/skydns/local/prom/node/during", r#"{"host":"10.0.0.8","port":9100}"#]);
    eventually("a change while the member is dead", Duration::from_secs(15), || {
        (dig(dnsd.dns, &["SRV", "node.prom.local"]).answer.len() == 4).then_some(())
    });

    cluster.restart(victim);
    eventually("the member back", Duration::from_secs(30), || {
        (up(victim) == Some(1.0) && logged("etcd member answers again")).then_some(())
    });
    assert_eq!(dnsd.process.log().matches("etcd member does not answer").count(), down_lines, "logged once");
}
