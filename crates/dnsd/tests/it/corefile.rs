//! dnsd run from a CoreDNS Corefile: the file's settings, flags overriding them, the query log, and clear
//! errors for what dnsd does not implement. (The seed's Corefile, unchanged on port 53: tests/it/corefile.rs.)

use std::process::Command;
use std::time::Duration;

use promsd_tests::{Etcd, Process, dig, eventually, free_port, http_get};

use crate::server::Dnsd;

#[test]
fn flags_override_the_corefile() {
    let etcd = Etcd::start();
    etcd.put("/skydns/ka2/local/other/a", r#"{"host":"10.0.0.1"}"#);
    let dir = tempfile::tempdir().expect("temp dir");
    let corefile = dir.path().join("Corefile");
    // The endpoint in the file is dead; the flag's is the real one. The zone comes from the flag too.
    std::fs::write(
        &corefile,
        "prom.local {\n  etcd {\n    path /skydns/ka2\n    endpoint http://127.0.0.1:1\n  }\n}\n",
    )
    .expect("write Corefile");
    let dnsd = Dnsd::start_args(&[
        "--corefile",
        corefile.to_str().expect("path"),
        "--endpoints",
        &etcd.endpoint,
        "--zone",
        "other.local",
    ]);
    assert_eq!(dnsd.dig(&["A", "a.other.local"]).answer, ["a.other.local. 300 IN A 10.0.0.1"]);
    assert_eq!(dnsd.dig(&["A", "a.prom.local"]).status, "REFUSED");
}

#[test]
fn corefile_addresses_and_query_log() {
    let etcd = Etcd::start();
    etcd.put("/skydns/local/prom/node/a", r#"{"host":"10.0.0.1","port":9100}"#);
    let dir = tempfile::tempdir().expect("temp dir");
    let (dns_port, metrics_port, health_port, ready_port) = (free_port(), free_port(), free_port(), free_port());
    let text = format!(
        "prom.local:{dns_port} {{\n  etcd {{\n    endpoint {}\n  }}\n  errors\n  log\n  prometheus 127.0.0.1:{metrics_port}\n  health 127.0.0.1:{health_port}\n  ready 127.0.0.1:{ready_port}\n}}\n",
        etcd.endpoint
    );
    let corefile = dir.path().join("Corefile");
    std::fs::write(&corefile, text).expect("write Corefile");
    let mut command = Command::new(env!("CARGO_BIN_EXE_dnsd"));
    command.arg("--corefile").arg(&corefile).env_remove("ETCDCTL_ENDPOINTS");
    let process = Process::spawn("dnsd", command, &dir.path().join("dnsd.log"));
    let ready: std::net::SocketAddr = ([127, 0, 0, 1], ready_port).into();
    eventually("/ready", Duration::from_secs(20), || matches!(http_get(ready, "/ready"), Ok((200, _))).then_some(()));
    let health: std::net::SocketAddr = ([127, 0, 0, 1], health_port).into();
    assert_eq!(http_get(health, "/health").expect("health").0, 200);
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    assert!(http_get(metrics, "/metrics").expect("metrics").1.contains("dnsd_view_keys 1"));
    // dnsd listens on 0.0.0.0:<port> as CoreDNS would; ask on loopback.
    let server: std::net::SocketAddr = ([127, 0, 0, 1], dns_port).into();
    assert_eq!(dig(server, &["SRV", "node.prom.local"]).answer.len(), 1);
    let line = eventually("the query log line", Duration::from_secs(5), || {
        process.log().lines().find(|l| l.contains("\"SRV IN node.prom.local. udp ")).map(str::to_string)
    });
    assert!(line.contains(" NOERROR qr,aa,rd "), "{line}");
}

#[test]
fn unsupported_directives_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corefile = dir.path().join("Corefile");
    std::fs::write(&corefile, "prom.local {\n  etcd\n  cache 30\n}\n").expect("write Corefile");
    let out = Command::new(env!("CARGO_BIN_EXE_dnsd")).arg("--corefile").arg(&corefile).output().expect("dnsd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3: directive \"cache\" is not supported by dnsd", corefile.display())), "{err}");
}
